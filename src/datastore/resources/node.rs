//! The Node resource: a node's BGP identity (Calico `NodeBGPSpec`, §5.2), its VXLAN tunnel
//! endpoint (Calico `NodeSpec`'s `ipv4VXLANTunnelAddr`, `vxlanTunnelMACAddr` and their IPv6 twins)
//! and its labels (Calico Node's `metadata.labels`; on the Kubernetes backend the Kubernetes Node's
//! own labels), which pools' and BGP peers' selectors match.

use super::MacAddress;
use ipnetwork::IpNetwork;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// Longest label key Kubernetes accepts: a DNS subdomain prefix (253), `/`, a name (63).
pub const MAX_LABEL_KEY_LEN: usize = 253 + 1 + 63;

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
    /// The node's labels, for `nodeSelector` and `peerSelector`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
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
        check_labels(&self.labels).map_err(|e| format!("labels: {e}"))?;
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

/// Label keys a selector can name (Kubernetes' keys all are); values are free text, as a
/// selector's quoted strings are.
pub fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    for key in labels.keys() {
        let named = !key.is_empty() && key.bytes().all(crate::selector::is_label_byte);
        if !named || key.len() > MAX_LABEL_KEY_LEN {
            return Err(format!("{key:?} is not a label key (1 to {MAX_LABEL_KEY_LEN} of A-Z a-z 0-9 _ . / -)"));
        }
    }
    Ok(())
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
    fn labels_are_a_map_and_keys_a_selector_cannot_name_are_refused() {
        let wire = json!({"labels": {"route-reflector": "true", "topology.kubernetes.io/zone": "a"}});
        let node: Node = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(node.labels["route-reflector"], "true");
        assert_eq!(serde_json::to_value(&node).unwrap(), wire);
        assert_eq!(node.check(), Ok(()));
        let bad: Node = serde_json::from_value(json!({"labels": {"rack 1": "a"}})).unwrap();
        assert_eq!(
            bad.check(),
            Err("labels: \"rack 1\" is not a label key (1 to 317 of A-Z a-z 0-9 _ . / -)".to_string())
        );
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
