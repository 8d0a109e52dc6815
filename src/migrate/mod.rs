//! Moving resources in and out of the datastore as documents: `tortie apply|get|delete -f` for
//! tortie's own resources ([`object`], [`write`]) and `tortie migrate from-calico` for Calico's
//! exports ([`calico`]), which are converted to tortie's resources and written by the same code.
//!
//! Reading is all-or-nothing: every document is parsed, converted and checked against its
//! resource type before the first write, so bad input never leaves a partial import.

pub mod asn;
pub mod calico;
pub mod documents;
pub mod object;
pub mod tunnels;
pub mod write;

pub use documents::{Document, read_documents};
pub use object::{Checked, Object, check_spec, kind_named};
pub use write::{Outcome, Plan, PlanError, execute, in_write_order, plan_writes};
