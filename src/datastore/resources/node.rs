//! The Node resource: a node's BGP identity (Calico `NodeBGPSpec`, §5.2).

use ipnetwork::IpNetwork;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

/// A node as the datastore knows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Node {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBgp>,
}

/// A node's BGP fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeBgp {
    /// The node's IPv4 address in CIDR form: the prefix length decides what CrossSubnet means.
    #[serde(rename = "ipv4Address", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub ipv4_address: Option<IpNetwork>,
    #[serde(rename = "ipv6Address", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub ipv6_address: Option<IpNetwork>,
    /// The node's AS; the cluster default (BGPConfiguration `asNumber`) when absent.
    #[serde(rename = "asNumber", default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u32>,
    /// Set on route reflectors: the cluster id, an IPv4 address.
    #[serde(rename = "routeReflectorClusterID", default, skip_serializing_if = "Option::is_none")]
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
    /// The address of this node's IP-in-IP tunnel device.
    #[serde(rename = "ipv4IPIPTunnelAddr", default, skip_serializing_if = "Option::is_none")]
    pub ipv4_ipip_tunnel_addr: Option<IpAddr>,
}

impl Node {
    pub(super) fn check(&self) -> Result<(), String> {
        let Some(bgp) = &self.bgp else { return Ok(()) };
        if bgp.ipv4_address.is_some_and(|a| !a.is_ipv4()) {
            return Err("bgp.ipv4Address: is not an IPv4 address".to_string());
        }
        if bgp.ipv6_address.is_some_and(|a| !a.is_ipv6()) {
            return Err("bgp.ipv6Address: is not an IPv6 address".to_string());
        }
        if bgp.ipv4_ipip_tunnel_addr.is_some_and(|a| !a.is_ipv4()) {
            return Err("bgp.ipv4IPIPTunnelAddr: is not an IPv4 address".to_string());
        }
        if bgp.as_number == Some(0) {
            return Err("bgp.asNumber: 0 is not a valid AS number".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_bgp_uses_calico_field_names() {
        let wire = json!({"bgp": {"ipv4Address": "10.0.0.5/24", "asNumber": 64512,
            "routeReflectorClusterID": "224.0.0.1", "ipv4IPIPTunnelAddr": "192.168.0.1"}});
        let node: Node = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(node.bgp.as_ref().unwrap().ipv4_address.unwrap().prefix(), 24);
        assert_eq!(serde_json::to_value(&node).unwrap(), wire);
        assert_eq!(node.check(), Ok(()));
    }
}
