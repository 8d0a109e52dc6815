//! tortie's configuration: one YAML file, overridden by `TORTIE_<FIELD>`
//! environment variables, validated as a whole.
//!
//! Precedence, highest first:
//! 1. command-line flags (e.g. `--log-level`, `--log-format`);
//! 2. environment variables `TORTIE_<PATH>` where `<PATH>` is the field path
//!    upper-cased with `.` replaced by `_` (`bgp.as_number` ← `TORTIE_BGP_AS_NUMBER`);
//!    the value is read as a YAML scalar or flow collection;
//! 3. the YAML file given with `--config`;
//! 4. built-in defaults ([`Config::default`]).
//!
//! Loading never stops at the first problem: [`load`] returns every problem
//! it found, each naming the field path and the offending value (secrets
//! are never echoed).

mod env;
mod error;
mod kubernetes;
mod load;
mod model;
mod types;
mod validate;

pub use error::{ConfigError, FieldError};
pub use kubernetes::KubernetesConfig;
pub use load::{ConfigSource, load, load_from_str};
pub use model::*;
pub use types::{AsNumber, HoldTime, Secret};
