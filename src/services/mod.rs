//! Service addresses over BGP: which prefixes a node advertises for the cluster's Services
//! (`advertise.rs`, pure), from the BGPConfiguration's service CIDRs, the Services and their
//! EndpointSlices ([docs/services.md](../../docs/services.md)).

pub mod advertise;

pub use advertise::{Advertised, Advertisements, COMMUNITIES_ANNOTATION, Origin, ServiceCidrs, advertisements};
