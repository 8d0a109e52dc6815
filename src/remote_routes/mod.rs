//! The remote-routes stage: the routes toward other nodes' pods and every
//! other learned prefix. Learned routes (from the RIB, or from the
//! datastore's block affinities when BGP is off) go through one task
//! ([`stage`]) that classifies each by the pools ([`classify`]), chooses
//! direct or encapsulated ([`path`], with the liveness probe of
//! [`liveness`]) and hands the routes to the programmer ([`outbox`]).
//! Encapsulations ([`encap::Encapsulation`]) are small specialisations:
//! IP-in-IP in `fallback_ipip`, VXLAN in `vxlan`.

pub mod classify;
pub mod encap;
pub mod liveness;
mod outbox;
pub mod path;
pub mod stage;
mod state;

pub use classify::{Classifier, LocalPrefixes, Remote};
pub use encap::{EncapKind, Encapsulation, Encapsulations, PathKind, PoolEncap, RemoteNode, RemoteNodes};
pub use stage::{LearnedSource, RouteSink, StageConfig, StageInputs, StageOutputs};
