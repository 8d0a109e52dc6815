//! BGP resources: BGPPeer and BGPConfiguration (Calico §1.6).

use super::{GoDuration, SecretSource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// Which next hop a peer is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NextHopMode {
    Auto,
    #[serde(rename = "Self")]
    SelfHop,
    Keep,
}

/// Which source address the session uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SourceAddress {
    #[serde(rename = "UseNodeIP")]
    UseNodeIp,
    None,
}

/// A BGP peering: which nodes (`node` or `nodeSelector`, or all when neither) peer with whom
/// (`peerIP` or the nodes matching `peerSelector`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BgpPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// `ip` or `ip:port` (`[v6]:port`).
    #[serde(rename = "peerIP", default, skip_serializing_if = "Option::is_none")]
    pub peer_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_selector: Option<String>,
    /// The remote AS; with `peerSelector` it comes from the remote Node instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u32>,
    #[serde(rename = "localASNumber", default, skip_serializing_if = "Option::is_none")]
    pub local_as_number: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_mode: Option<NextHopMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<SourceAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time: Option<GoDuration>,
    /// The session's TCP MD5 key (RFC 2385), from a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretSource>,
}

impl BgpPeer {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.node.is_some() && self.node_selector.is_some() {
            return Err("nodeSelector: cannot be combined with node".to_string());
        }
        match (&self.peer_ip, &self.peer_selector) {
            (Some(_), Some(_)) => return Err("peerSelector: cannot be combined with peerIP".to_string()),
            (None, None) => return Err("peerIP: one of peerIP or peerSelector is required".to_string()),
            (Some(ip), None) => {
                if ip.parse::<IpAddr>().is_err() && ip.parse::<SocketAddr>().is_err() {
                    return Err(format!("peerIP: {ip:?} is not an address or address:port"));
                }
                if self.as_number.is_none() {
                    return Err("asNumber: is required with peerIP".to_string());
                }
            }
            (None, Some(_)) => {}
        }
        if self.as_number == Some(0) || self.local_as_number == Some(0) {
            return Err("asNumber: 0 is not a valid AS number".to_string());
        }
        if let Some(password) = &self.password {
            password.secret_key_ref.check("password")?;
        }
        Ok(())
    }
}

/// A CIDR advertised for services.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceIpBlock {
    pub cidr: String,
}

/// Cluster-wide BGP settings; `default` applies to every node, `node.<name>` overrides for one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BgpConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// Full mesh between nodes; true when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// The cluster's default AS; 64512 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u32>,
    /// 179 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    #[serde(rename = "serviceClusterIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub service_cluster_ips: Vec<ServiceIpBlock>,
    #[serde(rename = "serviceExternalIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub service_external_ips: Vec<ServiceIpBlock>,
    #[serde(rename = "serviceLoadBalancerIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub service_load_balancer_ips: Vec<ServiceIpBlock>,
}

impl BgpConfiguration {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.as_number == Some(0) {
            return Err("asNumber: 0 is not a valid AS number".to_string());
        }
        if self.listen_port == Some(0) {
            return Err("listenPort: 0 is not a port".to_string());
        }
        Ok(())
    }
}
