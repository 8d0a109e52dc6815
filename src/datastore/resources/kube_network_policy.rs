//! Kubernetes' `networking.k8s.io/v1` NetworkPolicy spec (its record's name is
//! `namespace/name`; on the kubernetes datastore it is the API server's own object). The policy
//! compiler converts it to a Calico policy at order 1000, as Calico does (`crate::policy`).

use super::IntOrString;
use super::policy_rule::{is_port_name, parse_net};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A label selector requirement's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LabelOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelRequirement {
    pub key: String,
    pub operator: LabelOperator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Kubernetes' label selector; empty selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelRequirement>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpBlock {
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

/// A peer: pods (by pod and/or namespace selector) or an address block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyPort {
    /// TCP when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngressRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<PolicyPeer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PolicyPort>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EgressRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<PolicyPeer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PolicyPort>,
}

/// The spec of a Kubernetes NetworkPolicy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeNetworkPolicy {
    #[serde(default)]
    pub pod_selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_types: Vec<KubePolicyType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<IngressRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<EgressRule>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum KubePolicyType {
    Ingress,
    Egress,
}

impl KubeNetworkPolicy {
    /// `policyTypes` as given, else Kubernetes' default: Ingress, plus Egress when there are
    /// egress rules.
    pub fn effective_types(&self) -> Vec<KubePolicyType> {
        if !self.policy_types.is_empty() {
            let mut t = self.policy_types.clone();
            t.sort();
            t.dedup();
            return t;
        }
        let mut t = vec![KubePolicyType::Ingress];
        if !self.egress.is_empty() {
            t.push(KubePolicyType::Egress);
        }
        t
    }

    pub(super) fn check(&self) -> Result<(), String> {
        self.pod_selector.check().map_err(|e| format!("podSelector.{e}"))?;
        for (i, rule) in self.ingress.iter().enumerate() {
            check_rule(&rule.from, &rule.ports).map_err(|e| format!("ingress[{i}].{}", e.replace("PEERS", "from")))?;
        }
        for (i, rule) in self.egress.iter().enumerate() {
            check_rule(&rule.to, &rule.ports).map_err(|e| format!("egress[{i}].{}", e.replace("PEERS", "to")))?;
        }
        Ok(())
    }
}

fn check_rule(peers: &[PolicyPeer], ports: &[PolicyPort]) -> Result<(), String> {
    for (i, peer) in peers.iter().enumerate() {
        peer.check().map_err(|e| format!("PEERS[{i}].{e}"))?;
    }
    for (i, port) in ports.iter().enumerate() {
        port.check().map_err(|e| format!("ports[{i}].{e}"))?;
    }
    Ok(())
}

impl LabelSelector {
    pub(super) fn check(&self) -> Result<(), String> {
        super::check_labels(&self.match_labels).map_err(|e| format!("matchLabels: {e}"))?;
        for (i, r) in self.match_expressions.iter().enumerate() {
            let at = format!("matchExpressions[{i}]");
            let mut key = BTreeMap::new();
            key.insert(r.key.clone(), String::new());
            super::check_labels(&key).map_err(|e| format!("{at}.key: {e}"))?;
            match r.operator {
                LabelOperator::In | LabelOperator::NotIn if r.values.is_empty() => {
                    return Err(format!("{at}.values: {:?} needs at least one value", r.operator));
                }
                LabelOperator::Exists | LabelOperator::DoesNotExist if !r.values.is_empty() => {
                    return Err(format!("{at}.values: {:?} takes no values", r.operator));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl PolicyPeer {
    fn check(&self) -> Result<(), String> {
        match (&self.pod_selector, &self.namespace_selector, &self.ip_block) {
            (None, None, None) => return Err("needs podSelector, namespaceSelector or ipBlock".into()),
            (Some(_) | None, Some(_) | None, Some(_))
                if self.pod_selector.is_some() || self.namespace_selector.is_some() =>
            {
                return Err("ipBlock: cannot be given with podSelector or namespaceSelector".into());
            }
            _ => {}
        }
        if let Some(s) = &self.pod_selector {
            s.check().map_err(|e| format!("podSelector.{e}"))?;
        }
        if let Some(s) = &self.namespace_selector {
            s.check().map_err(|e| format!("namespaceSelector.{e}"))?;
        }
        if let Some(block) = &self.ip_block {
            let cidr = block
                .cidr
                .parse::<ipnetwork::IpNetwork>()
                .map_err(|_| format!("ipBlock.cidr: {:?} is not a CIDR", block.cidr))?;
            for (i, except) in block.except.iter().enumerate() {
                let net = parse_net(except).map_err(|e| format!("ipBlock.except[{i}]: {e}"))?;
                if net.is_ipv4() != cidr.is_ipv4() || !cidr.contains(net.network()) || net.prefix() < cidr.prefix() {
                    return Err(format!("ipBlock.except[{i}]: {except:?} is not inside cidr {:?}", block.cidr));
                }
            }
        }
        Ok(())
    }
}

impl PolicyPort {
    /// The protocol number (TCP when not given; checked by `check`).
    pub fn protocol_number(&self) -> u8 {
        use super::policy_rule::{SCTP, TCP, UDP};
        match self.protocol.as_deref() {
            Some("UDP") => UDP,
            Some("SCTP") => SCTP,
            _ => TCP,
        }
    }

    fn check(&self) -> Result<(), String> {
        if let Some(p) = self.protocol.as_deref().filter(|p| !matches!(*p, "TCP" | "UDP" | "SCTP")) {
            return Err(format!("protocol: {p:?} is not TCP, UDP or SCTP"));
        }
        match (&self.port, self.end_port) {
            (None, Some(end)) => return Err(format!("endPort: {end} needs a numeric port")),
            (Some(IntOrString::String(name)), end) => {
                if let Some(end) = end {
                    return Err(format!("endPort: {end} needs a numeric port, not the named port {name:?}"));
                }
                if !is_port_name(name) {
                    return Err(format!("port: {name:?} is not a port name (1-15 of a-z 0-9 -)"));
                }
            }
            (Some(IntOrString::Int(n)), end) => {
                if !(1..=65535).contains(n) {
                    return Err(format!("port: {n} is not a port (1-65535)"));
                }
                if let Some(end) = end {
                    if !(1..=65535).contains(&end) {
                        return Err(format!("endPort: {end} is not a port (1-65535)"));
                    }
                    if end < *n {
                        return Err(format!("endPort: {end} is below port {n}"));
                    }
                }
            }
            (None, None) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bad_values_are_refused_naming_field_and_value() {
        let cases = [
            (
                json!({"ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}),
                "ingress[0].ports[0].endPort: 80 is below port 90",
            ),
            (
                json!({"ingress": [{"ports": [{"port": "http", "endPort": 80}]}]}),
                "ingress[0].ports[0].endPort: 80 needs a numeric port",
            ),
            (
                json!({"egress": [{"ports": [{"protocol": "ICMP"}]}]}),
                "egress[0].ports[0].protocol: \"ICMP\" is not TCP, UDP or SCTP",
            ),
            (
                json!({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]}),
                "egress[0].to[0].ipBlock.except[0]: \"11.0.0.0/16\" is not inside cidr",
            ),
            (
                json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/40"}}]}]}),
                "ingress[0].from[0].ipBlock.cidr: \"10.0.0.0/40\" is not a CIDR",
            ),
            (json!({"ingress": [{"from": [{}]}]}), "ingress[0].from[0].needs podSelector"),
            (
                json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
                "podSelector.matchExpressions[0].values: In needs at least one value",
            ),
        ];
        for (spec, expected) in cases {
            let policy: KubeNetworkPolicy = serde_json::from_value(spec.clone()).unwrap();
            let err = policy.check().expect_err(&spec.to_string());
            assert!(err.starts_with(expected), "{spec}: {err}");
        }
    }

    #[test]
    fn policy_types_default_as_kubernetes_does() {
        let p: KubeNetworkPolicy = serde_json::from_value(json!({"egress": [{}]})).unwrap();
        assert_eq!(p.effective_types(), vec![KubePolicyType::Ingress, KubePolicyType::Egress]);
        let p: KubeNetworkPolicy = serde_json::from_value(json!({})).unwrap();
        assert_eq!(p.effective_types(), vec![KubePolicyType::Ingress]);
    }
}
