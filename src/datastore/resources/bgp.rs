//! BGP resources: BGPPeer (Calico §1.6); BGPConfiguration is in `bgp_configuration.rs`.

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

/// Whether the nodes a `peerSelector` picks also peer back without a BGPPeer of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReversePeering {
    Auto,
    Manual,
}

/// The most seconds graceful restart can announce (RFC 4724: a 12-bit field).
pub const MAX_RESTART_SECONDS: u64 = (1 << 12) - 1;

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
    /// Deprecated spelling of `nextHopMode: Keep`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_original_next_hop: bool,
    /// GTSM (RFC 5082): the number of hops to the peer; 0 is off.
    #[serde(rename = "ttlSecurity", default, skip_serializing_if = "Option::is_none")]
    pub ttl_security: Option<i64>,
    /// How many times our own AS may appear in a received AS path (BIRD's `allow local as`).
    #[serde(rename = "numAllowedLocalASNumbers", default, skip_serializing_if = "Option::is_none")]
    pub num_allowed_local_as_numbers: Option<i64>,
    /// A gateway on the node's network through which `peerIP` is reached: the agent programs a
    /// host route to the peer through it, so the session does not depend on routes it learns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable_by: Option<String>,
    /// Peering with workloads on the node: refused (not supported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_workload_selector: Option<String>,
    /// `Manual` is refused: tortie has no per-direction peerings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_peering: Option<ReversePeering>,
    /// BGPFilter names, applied in this order to what the peer sends and is sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    /// tortie extension (Calico has no BFD): a BFD session beside the BGP session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<BgpPeerBfd>,
}

/// A BGPPeer's BFD session (RFC 5880); unset fields take the configuration
/// file's defaults (300ms, 300ms, 3, single hop).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BgpPeerBfd {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enabled: bool,
    /// Desired Min TX Interval (Go syntax: `300ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tx_interval: Option<GoDuration>,
    /// Required Min RX Interval (Go syntax: `300ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rx_interval: Option<GoDuration>,
    /// Detect Mult: packets missed before the session is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<u8>,
    /// RFC 5883 multihop (UDP 4784) instead of single hop.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub multihop: bool,
    /// Passive role (RFC 5880 6.1): send nothing until the peer's first packet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passive: bool,
    /// BFD down from a peer with a clear C bit that offered graceful restart keeps its routes
    /// stale for its restart time (RFC 5882 4.3.2) instead of removing them at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub graceful_restart: bool,
}

impl BgpPeerBfd {
    fn check(&self) -> Result<(), String> {
        let most = std::time::Duration::from_micros(u64::from(u32::MAX));
        for (field, value) in [("minTxInterval", &self.min_tx_interval), ("minRxInterval", &self.min_rx_interval)] {
            if let Some(d) = value
                && (d.get() < std::time::Duration::from_millis(1) || d.get() > most)
            {
                return Err(format!("bfd.{field}: {d} is not between 1ms and {}ms", most.as_millis()));
            }
        }
        if self.multiplier == Some(0) {
            return Err("bfd.multiplier: 0 would never detect a failure; 3 is usual".to_string());
        }
        Ok(())
    }
}

impl BgpPeer {
    /// The address of `peerIP` (given as an address or address:port).
    pub fn peer_address(&self) -> Option<IpAddr> {
        let ip = self.peer_ip.as_ref()?;
        ip.parse::<IpAddr>().ok().or_else(|| ip.parse::<SocketAddr>().ok().map(|a| a.ip()))
    }

    /// `reachableBy` as an address, when it is one.
    pub fn reachable_by(&self) -> Option<IpAddr> {
        self.reachable_by.as_ref()?.parse().ok()
    }

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
        if self.keep_original_next_hop && matches!(self.next_hop_mode, Some(NextHopMode::Auto | NextHopMode::SelfHop)) {
            return Err(format!(
                "keepOriginalNextHop: true conflicts with nextHopMode: {:?} (keepOriginalNextHop is the deprecated spelling of nextHopMode: Keep)",
                self.next_hop_mode
            ));
        }
        if let Some(hops) = self.ttl_security
            && !(0..=254).contains(&hops)
        {
            return Err(format!("ttlSecurity: {hops} is not a hop count from 0 (off) to 254"));
        }
        if let Some(n) = self.num_allowed_local_as_numbers
            && u8::try_from(n).is_err()
        {
            return Err(format!("numAllowedLocalASNumbers: {n} is not a count from 0 to 255"));
        }
        if let Some(d) = &self.max_restart_time
            && d.get().as_secs() > MAX_RESTART_SECONDS
        {
            return Err(format!(
                "maxRestartTime: {d} is more than the {MAX_RESTART_SECONDS}s graceful restart can announce"
            ));
        }
        if let Some(d) = &self.keepalive_time
            && d.get().as_secs() > u64::from(u16::MAX)
        {
            return Err(format!("keepaliveTime: {d} is more than the {}s a BGP timer holds", u16::MAX));
        }
        if let Some(bfd) = &self.bfd {
            bfd.check()?;
        }
        if let Some(gateway) = &self.reachable_by {
            let Ok(gw) = gateway.parse::<IpAddr>() else {
                return Err(format!("reachableBy: {gateway:?} is not an IP address"));
            };
            let Some(peer) = self.peer_address() else {
                return Err(format!(
                    "reachableBy: {gateway:?} needs peerIP (a route to each node a peerSelector picks is not programmed)"
                ));
            };
            if peer.is_ipv4() != gw.is_ipv4() {
                return Err(format!("reachableBy: {gateway:?} is not of peerIP {peer}'s family"));
            }
        }
        if let Some(selector) = &self.local_workload_selector {
            return Err(format!(
                "localWorkloadSelector: {selector:?} is not supported: tortie does not peer with workloads"
            ));
        }
        if let Some(problem) = self.filters.iter().find_map(|f| crate::datastore::Key::name_problem(f)) {
            return Err(format!("filters: {problem}"));
        }
        if self.reverse_peering == Some(ReversePeering::Manual) {
            return Err("reversePeering: Manual is not supported (only Auto)".to_string());
        }
        for (field, selector) in [("nodeSelector", &self.node_selector), ("peerSelector", &self.peer_selector)] {
            if let Some(text) = selector {
                crate::selector::check_field(field, text)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(extra: serde_json::Value) -> Result<BgpPeer, String> {
        let mut doc = serde_json::json!({"peerIP": "10.0.0.1", "asNumber": 65001});
        doc.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let peer: BgpPeer = serde_json::from_value(doc).map_err(|e| e.to_string())?;
        peer.check().map(|()| peer)
    }

    #[test]
    fn every_bad_bgppeer_field_is_refused_naming_field_and_value() {
        let cases = [
            (
                serde_json::json!({"keepOriginalNextHop": true, "nextHopMode": "Self"}),
                "keepOriginalNextHop: true conflicts",
            ),
            (serde_json::json!({"ttlSecurity": 255}), "ttlSecurity: 255"),
            (serde_json::json!({"ttlSecurity": -1}), "ttlSecurity: -1"),
            (serde_json::json!({"numAllowedLocalASNumbers": 256}), "numAllowedLocalASNumbers: 256"),
            (serde_json::json!({"maxRestartTime": "2h"}), "maxRestartTime: 2h"),
            (serde_json::json!({"keepaliveTime": "19h"}), "keepaliveTime: 19h"),
            (serde_json::json!({"reachableBy": "gw"}), "reachableBy: \"gw\" is not an IP address"),
            (
                serde_json::json!({"reachableBy": "fd00::1"}),
                "reachableBy: \"fd00::1\" is not of peerIP 10.0.0.1's family",
            ),
            (
                serde_json::json!({"localWorkloadSelector": "all()"}),
                "localWorkloadSelector: \"all()\" is not supported",
            ),
            (serde_json::json!({"reversePeering": "Manual"}), "reversePeering: Manual is not supported"),
            (serde_json::json!({"password": {"secretKeyRef": {"name": "", "key": "k"}}}), "password.secretKeyRef.name"),
        ];
        for (extra, expected) in cases {
            let err = peer(extra.clone()).unwrap_err();
            assert!(err.contains(expected), "{extra}: {err}");
        }
    }

    #[test]
    fn calico_values_that_mean_something_are_accepted() {
        let ok = peer(serde_json::json!({"keepOriginalNextHop": true, "nextHopMode": "Keep", "ttlSecurity": 1,
            "numAllowedLocalASNumbers": 1, "maxRestartTime": "1.5m", "keepaliveTime": "500ms",
            "reversePeering": "Auto", "sourceAddress": "None"}));
        assert!(ok.is_ok(), "{ok:?}");
    }
}
