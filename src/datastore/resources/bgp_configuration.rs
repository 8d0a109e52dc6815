//! BGPConfiguration (Calico's `projectcalico.org/v3` BGPConfigurationSpec): the `default` one
//! applies to every node, `node.<name>` ones to one node. Which fields the agent reads from which,
//! and how they combine with the configuration file, is `agent::bgp_config`'s business; this file
//! holds the schema and the rules a record must keep (Calico's validator and CEL rules).

use super::{GoDuration, SecretSource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Calico's limits on the community lists.
const MAX_COMMUNITIES: usize = 500;
const MAX_PREFIX_ADVERTISEMENTS: usize = 500;
const MAX_COMMUNITIES_PER_PREFIX: usize = 50;
/// Calico's bounds of `ipv4/6NormalRoutePriority` (a kernel route metric).
const ROUTE_PRIORITY_MAX: u32 = 2_147_483_646;
/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// Where the BGP listener binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum BindMode {
    /// Every address.
    None,
    /// The node's own address only.
    #[serde(rename = "NodeIP")]
    NodeIp,
}

/// A CIDR advertised for services.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceIpBlock {
    pub cidr: String,
}

/// A named community value: `aa:nn` (standard) or `aa:nn:mm` (large).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommunityName {
    pub name: String,
    pub value: String,
}

/// Communities attached to the node's advertised prefixes within `cidr`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrefixAdvertisement {
    pub cidr: String,
    /// Values (`aa:nn`, `aa:nn:mm`) or names from `communities`.
    pub communities: Vec<String>,
}

/// A parsed community value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CommunityValue {
    /// RFC 1997: two 16-bit halves.
    Standard(u16, u16),
    /// RFC 8092: three 32-bit parts.
    Large(u32, u32, u32),
}

/// `aa:nn` (16-bit parts) or `aa:nn:mm` (32-bit parts), as Calico's pattern and validator.
pub fn parse_community(text: &str) -> Option<CommunityValue> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    match parts.as_slice() {
        [a, n] => Some(CommunityValue::Standard(a.parse().ok()?, n.parse().ok()?)),
        [a, n, m] => Some(CommunityValue::Large(a.parse().ok()?, n.parse().ok()?, m.parse().ok()?)),
        _ => None,
    }
}

/// Cluster-wide BGP settings (`default`) and per-node ones (`node.<name>`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpConfiguration {
    /// `Trace`, `Debug`, `Info`, `Warning`, `Error` or `Fatal` (any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// Full mesh between nodes; true when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// The cluster's AS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u32>,
    /// 179 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<BindMode>,
    /// TCP MD5 password of the mesh sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<SecretSource>,
    /// Graceful restart time of the mesh sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_max_restart_time: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<CommunityName>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    /// Interfaces whose addresses BIRD's direct protocol skips.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_interfaces: Vec<String>,
    #[serde(rename = "serviceClusterIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub service_cluster_ips: Vec<ServiceIpBlock>,
    #[serde(rename = "serviceExternalIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub service_external_ips: Vec<ServiceIpBlock>,
    #[serde(rename = "serviceLoadBalancerIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub service_load_balancer_ips: Vec<ServiceIpBlock>,
    /// `Enabled` or `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_load_balancer_aggregation: Option<String>,
    #[serde(rename = "localWorkloadPeeringIPV4", default, skip_serializing_if = "Option::is_none")]
    pub local_workload_peering_ipv4: Option<String>,
    #[serde(rename = "localWorkloadPeeringIPV6", default, skip_serializing_if = "Option::is_none")]
    pub local_workload_peering_ipv6: Option<String>,
    /// `Enabled`, `Disabled`, `EnabledIPIPOnly` or `EnabledNoEncapOnly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program_cluster_routes: Option<String>,
    #[serde(rename = "ipv4NormalRoutePriority", default, skip_serializing_if = "Option::is_none")]
    pub ipv4_normal_route_priority: Option<u32>,
    #[serde(rename = "ipv6NormalRoutePriority", default, skip_serializing_if = "Option::is_none")]
    pub ipv6_normal_route_priority: Option<u32>,
}

/// Calico's `logSeverityScreen` values, lower-cased.
pub const LOG_SEVERITIES: [&str; 6] = ["trace", "debug", "info", "warning", "error", "fatal"];

fn one_of(field: &str, value: &Option<String>, allowed: &[&str]) -> Result<(), String> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => {
            Err(format!("{field}: {v:?} is not one of {}", allowed.join(", ")))
        }
        _ => Ok(()),
    }
}

fn cidr(field: &str, text: &str) -> Result<(), String> {
    text.parse::<ipnetwork::IpNetwork>().map(|_| ()).map_err(|_| format!("{field}: {text:?} is not a CIDR"))
}

impl BgpConfiguration {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.as_number == Some(0) {
            return Err("asNumber: 0 is not a valid AS number".to_string());
        }
        if self.listen_port == Some(0) {
            return Err("listenPort: 0 is not a port".to_string());
        }
        if let Some(level) = &self.log_severity_screen
            && !level.is_empty()
            && !LOG_SEVERITIES.contains(&level.to_ascii_lowercase().as_str())
        {
            return Err(format!(
                "logSeverityScreen: {level:?} is not one of Trace, Debug, Info, Warning, Error, Fatal"
            ));
        }
        // Calico's CEL rules: the mesh settings need the mesh.
        if self.node_to_node_mesh_enabled == Some(false) {
            if self.node_mesh_password.is_some() {
                return Err("nodeMeshPassword: cannot be set when nodeToNodeMeshEnabled is false".to_string());
            }
            if let Some(t) = &self.node_mesh_max_restart_time {
                return Err(format!("nodeMeshMaxRestartTime: {t} cannot be set when nodeToNodeMeshEnabled is false"));
            }
        }
        if let Some(password) = &self.node_mesh_password {
            password.secret_key_ref.check("nodeMeshPassword")?;
        }
        if let Some(t) = &self.node_mesh_max_restart_time
            && t.timer_seconds().is_none()
        {
            return Err(format!("nodeMeshMaxRestartTime: {t} is longer than 65535 s"));
        }
        self.check_communities()?;
        for (i, name) in self.ignored_interfaces.iter().enumerate() {
            let valid = !name.is_empty()
                && name.len() <= IFNAME_MAX
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-*".contains(&b));
            if !valid {
                return Err(format!("ignoredInterfaces[{i}]: {name:?} is not an interface name or pattern"));
            }
        }
        for (field, blocks) in [
            ("serviceClusterIPs", &self.service_cluster_ips),
            ("serviceExternalIPs", &self.service_external_ips),
            ("serviceLoadBalancerIPs", &self.service_load_balancer_ips),
        ] {
            for (i, block) in blocks.iter().enumerate() {
                cidr(&format!("{field}[{i}].cidr"), &block.cidr)?;
            }
        }
        one_of("serviceLoadBalancerAggregation", &self.service_load_balancer_aggregation, &["Enabled", "Disabled"])?;
        one_of(
            "programClusterRoutes",
            &self.program_cluster_routes,
            &["Enabled", "Disabled", "EnabledIPIPOnly", "EnabledNoEncapOnly"],
        )?;
        for (field, value, v4) in [
            ("localWorkloadPeeringIPV4", &self.local_workload_peering_ipv4, true),
            ("localWorkloadPeeringIPV6", &self.local_workload_peering_ipv6, false),
        ] {
            if let Some(text) = value
                && !text.parse::<IpAddr>().is_ok_and(|a| a.is_ipv4() == v4)
            {
                let family = if v4 { "IPv4" } else { "IPv6" };
                return Err(format!("{field}: {text:?} is not an {family} address"));
            }
        }
        for (field, value) in [
            ("ipv4NormalRoutePriority", self.ipv4_normal_route_priority),
            ("ipv6NormalRoutePriority", self.ipv6_normal_route_priority),
        ] {
            if let Some(v) = value
                && !(1..=ROUTE_PRIORITY_MAX).contains(&v)
            {
                return Err(format!("{field}: {v} is not within 1..={ROUTE_PRIORITY_MAX}"));
            }
        }
        Ok(())
    }

    fn check_communities(&self) -> Result<(), String> {
        if self.communities.len() > MAX_COMMUNITIES {
            return Err(format!("communities: {} entries, at most {MAX_COMMUNITIES}", self.communities.len()));
        }
        if self.prefix_advertisements.len() > MAX_PREFIX_ADVERTISEMENTS {
            let n = self.prefix_advertisements.len();
            return Err(format!("prefixAdvertisements: {n} entries, at most {MAX_PREFIX_ADVERTISEMENTS}"));
        }
        for (i, c) in self.communities.iter().enumerate() {
            if c.name.is_empty() {
                return Err(format!("communities[{i}].name: must not be empty"));
            }
            if parse_community(&c.value).is_none() {
                return Err(format!(
                    "communities[{i}].value: {:?} is not aa:nn (16-bit) or aa:nn:mm (32-bit)",
                    c.value
                ));
            }
        }
        // Calico's CEL rule: named communities exist to be used.
        if !self.communities.is_empty() && self.prefix_advertisements.is_empty() {
            return Err("communities: defined but not used in prefixAdvertisements".to_string());
        }
        for (i, p) in self.prefix_advertisements.iter().enumerate() {
            cidr(&format!("prefixAdvertisements[{i}].cidr"), &p.cidr)?;
            if p.communities.len() > MAX_COMMUNITIES_PER_PREFIX {
                let n = p.communities.len();
                return Err(format!(
                    "prefixAdvertisements[{i}].communities: {n} entries, at most {MAX_COMMUNITIES_PER_PREFIX}"
                ));
            }
            for (j, c) in p.communities.iter().enumerate() {
                if parse_community(c).is_none() && !self.communities.iter().any(|n| &n.name == c) {
                    return Err(format!(
                        "prefixAdvertisements[{i}].communities[{j}]: {c:?} is neither aa:nn, aa:nn:mm nor a name in communities"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The communities of `prefixAdvertisements[i]`, names resolved (valid records only).
    pub fn advertisement_values(&self, advertisement: &PrefixAdvertisement) -> Vec<CommunityValue> {
        advertisement
            .communities
            .iter()
            .filter_map(|c| {
                parse_community(c)
                    .or_else(|| self.communities.iter().find(|n| &n.name == c).and_then(|n| parse_community(&n.value)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<(), String> {
        serde_json::from_str::<BgpConfiguration>(json).map_err(|e| e.to_string())?.check()
    }

    #[test]
    fn community_values_are_standard_or_large_within_their_widths() {
        assert_eq!(parse_community("65001:100"), Some(CommunityValue::Standard(65001, 100)));
        assert_eq!(parse_community("4200000000:1:2"), Some(CommunityValue::Large(4_200_000_000, 1, 2)));
        for bad in ["65536:1", "1", "1:2:3:4", "a:b", "1:", ":1", "-1:2", "1:4294967296:1"] {
            assert_eq!(parse_community(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_values_name_their_field_and_value() {
        let cases = [
            (r#"{"asNumber": 0}"#, "asNumber: 0"),
            (r#"{"logSeverityScreen": "loud"}"#, "logSeverityScreen: \"loud\""),
            (
                r#"{"nodeToNodeMeshEnabled": false, "nodeMeshMaxRestartTime": "30s"}"#,
                "nodeMeshMaxRestartTime: 30s cannot be set when nodeToNodeMeshEnabled is false",
            ),
            (
                r#"{"nodeToNodeMeshEnabled": false, "nodeMeshPassword": {"secretKeyRef": {"name": "s", "key": "k"}}}"#,
                "nodeMeshPassword: cannot be set",
            ),
            (r#"{"communities": [{"name": "a", "value": "1:2"}]}"#, "communities: defined but not used"),
            (
                r#"{"prefixAdvertisements": [{"cidr": "10.0.0.0/8", "communities": ["nope"]}]}"#,
                "prefixAdvertisements[0].communities[0]: \"nope\"",
            ),
            (r#"{"prefixAdvertisements": [{"cidr": "10.0.0/8", "communities": []}]}"#, "prefixAdvertisements[0].cidr"),
            (r#"{"localWorkloadPeeringIPV4": "fe80::1"}"#, "localWorkloadPeeringIPV4: \"fe80::1\""),
            (r#"{"ipv6NormalRoutePriority": 0}"#, "ipv6NormalRoutePriority: 0"),
            (r#"{"programClusterRoutes": "Sometimes"}"#, "programClusterRoutes: \"Sometimes\""),
            (r#"{"ignoredInterfaces": ["a name with spaces"]}"#, "ignoredInterfaces[0]"),
            (r#"{"bindMode": "Everywhere"}"#, "Everywhere"),
            (r#"{"nodeMeshPassowrd": {}}"#, "nodeMeshPassowrd"),
        ];
        for (json, expected) in cases {
            let error = parse(json).expect_err(json);
            assert!(error.contains(expected), "{json}: {error}");
        }
    }

    #[test]
    fn calico_examples_are_accepted_and_names_resolve() {
        let json = r#"{"logSeverityScreen": "Info", "nodeToNodeMeshEnabled": true, "asNumber": 63400,
            "listenPort": 178, "bindMode": "NodeIP", "nodeMeshMaxRestartTime": "120s",
            "communities": [{"name": "bgp-large-community", "value": "63400:300:100"}],
            "prefixAdvertisements": [{"cidr": "172.218.4.0/26", "communities": ["bgp-large-community", "63400:120"]}],
            "ignoredInterfaces": ["iface-1", "iface-*"]}"#;
        parse(json).unwrap();
        let c: BgpConfiguration = serde_json::from_str(json).unwrap();
        assert_eq!(
            c.advertisement_values(&c.prefix_advertisements[0]),
            vec![CommunityValue::Large(63400, 300, 100), CommunityValue::Standard(63400, 120)]
        );
    }
}
