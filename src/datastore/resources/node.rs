//! The Node resource: a node's BGP identity (Calico `NodeBGPSpec`, §5.2) and its VXLAN tunnel
//! endpoint (Calico `NodeSpec`'s `ipv4VXLANTunnelAddr`, `vxlanTunnelMACAddr` and their IPv6 twins).

use super::MacAddress;
use ipnetwork::IpNetwork;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

/// A node as the datastore knows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Node {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBgp>,
    /// The address of this node's IPv4 VXLAN device.
    #[serde(rename = "ipv4VXLANTunnelAddr", default, skip_serializing_if = "Option::is_none")]
    pub ipv4_vxlan_tunnel_addr: Option<IpAddr>,
    /// The MAC address of this node's IPv4 VXLAN device.
    #[serde(rename = "vxlanTunnelMACAddr", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub vxlan_tunnel_mac_addr: Option<MacAddress>,
    /// The address of this node's IPv6 VXLAN device.
    #[serde(rename = "ipv6VXLANTunnelAddr", default, skip_serializing_if = "Option::is_none")]
    pub ipv6_vxlan_tunnel_addr: Option<IpAddr>,
    /// The MAC address of this node's IPv6 VXLAN device.
    #[serde(rename = "vxlanTunnelMACAddrV6", default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub vxlan_tunnel_mac_addr_v6: Option<MacAddress>,
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
        if let Some(a) = self.ipv4_vxlan_tunnel_addr.filter(|a| !a.is_ipv4()) {
            return Err(format!("ipv4VXLANTunnelAddr: {a} is not an IPv4 address"));
        }
        if let Some(a) = self.ipv6_vxlan_tunnel_addr.filter(|a| !a.is_ipv6()) {
            return Err(format!("ipv6VXLANTunnelAddr: {a} is not an IPv6 address"));
        }
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

    #[test]
    fn vxlan_fields_use_calico_names_and_typed_values() {
        let wire = json!({"ipv4VXLANTunnelAddr": "192.168.0.7", "vxlanTunnelMACAddr": "66:0a:bb:00:ee:ff",
            "ipv6VXLANTunnelAddr": "fd00::7", "vxlanTunnelMACAddrV6": "66:0a:bb:00:ee:01"});
        let node: Node = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(node.ipv4_vxlan_tunnel_addr, Some("192.168.0.7".parse().unwrap()));
        assert_eq!(node.vxlan_tunnel_mac_addr.unwrap().octets(), [0x66, 0x0a, 0xbb, 0, 0xee, 0xff]);
        assert_eq!(node.vxlan_tunnel_mac_addr_v6.unwrap().octets(), [0x66, 0x0a, 0xbb, 0, 0xee, 0x01]);
        assert_eq!(serde_json::to_value(&node).unwrap(), wire);
        assert_eq!(node.check(), Ok(()));
    }

    #[test]
    fn vxlan_address_of_the_wrong_family_is_refused_naming_field_and_value() {
        let v6_in_v4: Node = serde_json::from_value(json!({"ipv4VXLANTunnelAddr": "fd00::7"})).unwrap();
        assert_eq!(v6_in_v4.check(), Err("ipv4VXLANTunnelAddr: fd00::7 is not an IPv4 address".to_string()));
        let v4_in_v6: Node = serde_json::from_value(json!({"ipv6VXLANTunnelAddr": "10.0.0.1"})).unwrap();
        assert_eq!(v4_in_v6.check(), Err("ipv6VXLANTunnelAddr: 10.0.0.1 is not an IPv6 address".to_string()));
    }

    #[test]
    fn malformed_mac_is_invalid_data_naming_field_and_value() {
        let raw = crate::datastore::RawObject {
            key: crate::datastore::Key::new(crate::datastore::Kind::Node, "n1"),
            revision: crate::datastore::Revision(1),
            value: br#"{"vxlanTunnelMACAddr": "66:0a:bb"}"#.to_vec(),
        };
        let err = crate::datastore::store::decode::<Node>(raw).unwrap_err().to_string();
        assert!(err.contains(r#"vxlanTunnelMACAddr: "66:0a:bb" is not a MAC address"#), "{err}");
    }
}
