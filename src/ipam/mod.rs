//! IP address management (Calico reference §2): IP pools carved into per-node blocks, addresses
//! handed out by handle, all coordinated through the datastore with compare-and-swap, so several
//! nodes (processes) can allocate from one store at once without duplicates.
//!
//! - [`pools`]: pool rules (overlap refused, selectors, allowed uses).
//! - [`block_math`], [`block_ops`]: address arithmetic and in-memory block changes.
//! - [`claim`]: the two-step block claim and its repair after a crash; `repair`: handle records
//!   rebuilt from the node's allocations.
//! - [`Ipam`]: allocate / release for one node; [`tunnel`]: its tunnel addresses by device.
//! - [`Allocator`]: the per-node task that batches concurrent requests (group commit).
//! - [`check`] and [`gc`]: consistency report, leak and empty-block collection; [`liveness`]:
//!   which allocations a live workload holds; [`admin`]: the operator's show, check and release.
//! - `reclaim`: addresses found in use that the datastore lost, allocated again.
//! - [`routes`]: own blocks and borrowed /32s, for the speaker to announce.
//!
//! See `docs/ipam.md`.

pub mod admin;
pub mod allocator;
pub mod block_math;
pub mod block_ops;
pub mod check;
pub mod claim;
mod client;
mod error;
pub mod gc;
pub mod handles;
pub mod liveness;
pub mod pools;
mod reclaim;
mod repair;
pub mod routes;
pub mod tunnel;

pub use allocator::Allocator;
pub use check::{CheckReport, check};
pub use client::{Allocation, DEFAULT_MAX_BLOCKS_PER_HOST, Ipam, IpamOptions, Repaired, Request, family_of};
pub use error::{IpamError, Result};
pub use pools::create_pool;
pub use reclaim::Reclaim;
