//! The shared datastore: typed resources (IP pools, IPAM blocks, affinities, handles, the IPAM
//! configuration, nodes, BGP peers, the BGP configuration) behind one async, compare-and-swap
//! interface, with three backends: sqlite (embedded, the default), etcd, and Kubernetes CRDs.
//!
//! Layers:
//! - [`Backend`] is the object-safe, untyped interface every backend implements: JSON bytes under a
//!   [`Key`], guarded by a [`Revision`].
//! - [`Datastore`] is what callers use: it encodes and decodes the [`Resource`] types, validates
//!   them, and turns undecodable records into [`DatastoreError::InvalidData`] naming the key.
//!
//! See `docs/datastore.md` for the semantics every backend keeps.

mod backend;
mod error;
mod key;
pub mod reads;
mod revision;
mod store;
pub mod unsupported;
mod watch;

pub mod etcd;
pub mod kube_standin;
pub mod kubernetes;
pub mod resources;
pub mod sqlite;

pub use backend::{
    Backend, MAX_TRANSACTION_WRITES, RawEvent, RawList, RawObject, RawWatch, RawWrite, WATCH_CHANNEL_CAPACITY,
    check_transaction,
};
pub use error::{DatastoreError, Result};
pub use key::{Key, Kind};
pub use kubernetes::crds_yaml;
pub use resources::Resource;
pub use revision::Revision;
pub use store::{Datastore, Listing, Stored, Transaction};
pub use watch::{WatchEvent, WatchStream};
