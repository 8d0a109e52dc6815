//! Service addresses over BGP: which prefixes a node advertises for the cluster's Services
//! (`advertise.rs`, pure), from the BGPConfiguration's service CIDRs, the Services and their
//! EndpointSlices ([docs/services.md](../../docs/services.md)); and the addresses of
//! LoadBalancer Services, from LoadBalancer pools (`load_balancer.rs` plans, pure;
//! `lb_controller.rs` carries the plan out through the IPAM).

pub mod advertise;
pub mod lb_controller;
pub mod load_balancer;

pub use advertise::{Advertised, Advertisements, COMMUNITIES_ANNOTATION, Origin, ServiceCidrs, advertisements};
