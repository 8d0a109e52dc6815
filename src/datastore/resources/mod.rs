//! The resource types, with Calico's field names and meanings (see
//! `shared/reference/calico.md` §1.6, §2 and §5). On the wire they are JSON in camelCase,
//! spelled as Calico spells them (`disableBGPExport`, `routeReflectorClusterID`, `handle_id`).

mod bgp;
mod bgp_configuration;
mod bgp_filter;
pub mod coverage;
mod duration;
mod endpoint_slice;
mod int_or_string;
mod ipam;
mod kube_network_policy;
pub mod kube_projection;
pub mod lease;
mod mac;
pub mod namespace;
mod network_policy;
mod node;
mod node_status;
mod packed_map;
pub mod policy_rule;
mod secret;
mod service;

pub use bgp::{BgpPeer, BgpPeerBfd, MAX_RESTART_SECONDS, NextHopMode, ReversePeering, SourceAddress};
pub use bgp_configuration::{
    BgpConfiguration, BindMode, CommunityName, CommunityValue, PrefixAdvertisement, ServiceIpBlock, parse_community,
};
pub use bgp_filter::{BgpFilter, FilterAction, FilterRule, MatchOperator, MatchSource, PrefixLength};
pub use duration::GoDuration;
pub use endpoint_slice::{Endpoint, EndpointConditions, EndpointSlice, SERVICE_NAME_LABEL};
pub use int_or_string::IntOrString;
pub use ipam::{
    AffinityState, AllocationAttribute, AssignmentMode, BlockAffinity, EncapMode, IpPool, IpReservation, IpamBlock,
    IpamConfig, IpamHandle, PoolUse, cidr_name, cidr_of_name,
};
pub use kube_network_policy::{
    EgressRule, IngressRule, IpBlock, KubeNetworkPolicy, KubePolicyType, LabelOperator, LabelRequirement,
    LabelSelector, PolicyPeer, PolicyPort,
};
pub use lease::Lease;
pub use mac::MacAddress;
pub use namespace::Namespace;
pub use network_policy::{DEFAULT_TIER, GlobalNetworkPolicy, NetworkPolicy, effective_types};
pub use node::{Node, NodeBgp, check_labels};
pub use node_status::{BgpSessionStatus, NodeStatus, STALE_PERIODS};
pub use packed_map::{PackedCounts, PackedMap};
pub use policy_rule::{Action, EntityRule, IcmpFields, PolicyType, Rule};
pub use secret::{Secret, SecretKeyRef, SecretSource, SecretValue};
pub use service::{LoadBalancerIngress, LoadBalancerStatus, Service, ServiceSpec, ServiceStatus};

use super::Kind;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// A type stored in the datastore.
pub trait Resource:
    Serialize + DeserializeOwned + JsonSchema + Clone + Debug + PartialEq + Send + Sync + 'static
{
    const KIND: Kind;

    /// The rules serde cannot express; checked before a write and after a read, so a record that
    /// breaks them is `InvalidData`. The message names the field.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

macro_rules! resource {
    ($ty:ty, $kind:expr) => {
        impl Resource for $ty {
            const KIND: Kind = $kind;
            fn validate(&self) -> Result<(), String> {
                <$ty>::check(self)
            }
        }
    };
}

resource!(IpPool, Kind::IpPool);
resource!(IpamBlock, Kind::IpamBlock);
resource!(BlockAffinity, Kind::BlockAffinity);
resource!(IpamHandle, Kind::IpamHandle);
resource!(IpamConfig, Kind::IpamConfig);
resource!(IpReservation, Kind::IpReservation);
resource!(Node, Kind::Node);
resource!(BgpPeer, Kind::BgpPeer);
resource!(BgpConfiguration, Kind::BgpConfiguration);
resource!(Secret, Kind::Secret);
resource!(BgpFilter, Kind::BgpFilter);
resource!(NetworkPolicy, Kind::NetworkPolicy);
resource!(GlobalNetworkPolicy, Kind::GlobalNetworkPolicy);
resource!(KubeNetworkPolicy, Kind::KubeNetworkPolicy);
resource!(Namespace, Kind::Namespace);
resource!(Service, Kind::Service);
resource!(EndpointSlice, Kind::EndpointSlice);
resource!(Lease, Kind::Lease);
resource!(NodeStatus, Kind::NodeStatus);
