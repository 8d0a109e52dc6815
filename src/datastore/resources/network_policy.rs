//! Calico's NetworkPolicy (namespaced; its record's name is `namespace/name`) and
//! GlobalNetworkPolicy (`projectcalico.org/v3`), with Calico's field names. The agent compiles
//! them with the Kubernetes NetworkPolicies into one model (`crate::policy`).
//!
//! Only the `default` tier exists (tortie has no Tier resource): `tier` other than `default` is
//! refused. `doNotTrack`, `preDNAT` and `applyOnForward` (host endpoint policy) are refused when
//! true; `performanceHints` is accepted and has no effect.

use super::policy_rule::{PolicyType, Rule};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only tier.
pub const DEFAULT_TIER: &str = "default";

/// A namespaced Calico policy: applies to the endpoints of its namespace its selector selects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<String>,
}

/// A cluster-wide Calico policy: applies to the endpoints of every namespace its
/// `namespaceSelector` selects that its selector selects.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalNetworkPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub do_not_track: bool,
    #[serde(rename = "preDNAT", default, skip_serializing_if = "std::ops::Not::not")]
    pub pre_dnat: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub apply_on_forward: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<String>,
}

/// The directions a policy applies to: `types` as given, else Calico's default (Ingress, plus
/// Egress when there are egress rules; Egress alone when there are only egress rules).
pub fn effective_types(types: &[PolicyType], ingress: &[Rule], egress: &[Rule]) -> Vec<PolicyType> {
    if !types.is_empty() {
        let mut t = types.to_vec();
        t.sort();
        t.dedup();
        return t;
    }
    match (ingress.is_empty(), egress.is_empty()) {
        (true, false) => vec![PolicyType::Egress],
        (false, false) => vec![PolicyType::Ingress, PolicyType::Egress],
        _ => vec![PolicyType::Ingress],
    }
}

/// The checks both kinds share.
fn check_common(
    tier: &Option<String>,
    order: Option<f64>,
    selectors: &[(&str, &Option<String>)],
    types: &[PolicyType],
    ingress: &[Rule],
    egress: &[Rule],
) -> Result<(), String> {
    if let Some(tier) = tier.as_deref().filter(|t| *t != DEFAULT_TIER) {
        return Err(format!("tier: {tier:?} is not supported: only the {DEFAULT_TIER:?} tier exists"));
    }
    if let Some(order) = order.filter(|o| !o.is_finite()) {
        return Err(format!("order: {order} is not a finite number"));
    }
    for (field, text) in selectors {
        if let Some(text) = text {
            crate::selector::check_field(field, text)?;
        }
    }
    if let Some(dup) = types.iter().enumerate().find(|(i, t)| types[..*i].contains(t)) {
        return Err(format!("types[{}]: {:?} is listed twice", dup.0, dup.1));
    }
    for (field, rules) in [("ingress", ingress), ("egress", egress)] {
        for (i, rule) in rules.iter().enumerate() {
            rule.check().map_err(|e| format!("{field}[{i}].{e}"))?;
        }
    }
    Ok(())
}

impl NetworkPolicy {
    pub fn effective_types(&self) -> Vec<PolicyType> {
        effective_types(&self.types, &self.ingress, &self.egress)
    }

    pub(super) fn check(&self) -> Result<(), String> {
        check_common(
            &self.tier,
            self.order,
            &[("selector", &self.selector), ("serviceAccountSelector", &self.service_account_selector)],
            &self.types,
            &self.ingress,
            &self.egress,
        )
    }
}

impl GlobalNetworkPolicy {
    pub fn effective_types(&self) -> Vec<PolicyType> {
        effective_types(&self.types, &self.ingress, &self.egress)
    }

    pub(super) fn check(&self) -> Result<(), String> {
        for (field, set) in
            [("doNotTrack", self.do_not_track), ("preDNAT", self.pre_dnat), ("applyOnForward", self.apply_on_forward)]
        {
            if set {
                return Err(format!("{field}: true is not supported: tortie has no host endpoints"));
            }
        }
        check_common(
            &self.tier,
            self.order,
            &[
                ("selector", &self.selector),
                ("namespaceSelector", &self.namespace_selector),
                ("serviceAccountSelector", &self.service_account_selector),
            ],
            &self.types,
            &self.ingress,
            &self.egress,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(spec: serde_json::Value) -> Result<(), String> {
        let policy: NetworkPolicy = serde_json::from_value(spec).map_err(|e| e.to_string())?;
        policy.check()
    }

    #[test]
    fn bad_values_are_refused_naming_field_and_value() {
        let cases = [
            (json!({"selector": "a =="}), "selector: \"a ==\" is not a valid selector: column"),
            (json!({"tier": "security"}), "tier: \"security\" is not supported"),
            (
                json!({"ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": ["90:80"]}}]}),
                "ingress[0].destination.ports[0]: \"90:80\" is a reversed port range: 90 > 80",
            ),
            (
                json!({"ingress": [{"action": "Allow", "destination": {"ports": [80]}}]}),
                "ingress[0].destination.ports: needs protocol TCP, UDP, SCTP or UDPLite",
            ),
            (
                json!({"egress": [{"action": "Allow", "protocol": "TCPX"}]}),
                "egress[0].protocol: \"TCPX\" is not a protocol",
            ),
            (
                json!({"egress": [{"action": "Allow", "protocol": 300}]}),
                "egress[0].protocol: 300 is not a protocol number (0-255)",
            ),
            (
                json!({"ingress": [{"action": "Allow", "source": {"nets": ["10.0.0.0/33"]}}]}),
                "ingress[0].source.nets[0]: \"10.0.0.0/33\" is not a CIDR or an address",
            ),
            (
                json!({"ingress": [{"action": "Allow", "protocol": "ICMP", "icmp": {"type": 300}}]}),
                "ingress[0].icmp.type: 300 is not an ICMP type (0-254)",
            ),
            (
                json!({"ingress": [{"action": "Allow", "protocol": "TCP", "icmp": {"type": 8}}]}),
                "ingress[0].icmp: needs protocol ICMP or ICMPv6",
            ),
            (
                json!({"ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": ["Bad_Name"]}}]}),
                "ingress[0].destination.ports[0]: \"Bad_Name\" is not a port",
            ),
            (json!({"ingress": [{"action": "Allow", "ipVersion": 5}]}), "ingress[0].ipVersion: 5 is not 4 or 6"),
            (json!({"types": ["Ingress", "Ingress"]}), "types[1]: Ingress is listed twice"),
        ];
        for (spec, expected) in cases {
            let err = check(spec.clone()).expect_err(&spec.to_string());
            assert!(err.starts_with(expected), "{spec}: {err}");
        }
        assert!(serde_json::from_value::<NetworkPolicy>(json!({"ingress": [{"action": "Drop"}]})).is_err());
    }

    #[test]
    fn types_default_as_calico_does() {
        let allow = || serde_json::from_value::<Rule>(json!({"action": "Allow"})).unwrap();
        assert_eq!(effective_types(&[], &[], &[]), vec![PolicyType::Ingress]);
        assert_eq!(effective_types(&[], &[], &[allow()]), vec![PolicyType::Egress]);
        assert_eq!(effective_types(&[], &[allow()], &[allow()]), vec![PolicyType::Ingress, PolicyType::Egress]);
    }

    #[test]
    fn a_global_policy_refuses_host_endpoint_switches() {
        let gnp: GlobalNetworkPolicy = serde_json::from_value(json!({"preDNAT": true})).unwrap();
        assert_eq!(gnp.check().unwrap_err(), "preDNAT: true is not supported: tortie has no host endpoints");
    }
}
