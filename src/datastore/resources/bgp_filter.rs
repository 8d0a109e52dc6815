//! BGPFilter (Calico `projectcalico.org/v3`): ordered import and export rules per family that a
//! BGPPeer names in `filters`. Calico's semantics: the peer's filters in the listed order, in each
//! the rules in order; the first rule that matches decides (`Accept` or `Reject`); a route no rule
//! matched goes on to the usual defaults. The agent compiles them to the RIB's typed policy
//! (`agent::bgp_filters`).
//!
//! Only the match fields Calico's BIRD configuration acts on for a node's routes are accepted:
//! `cidr`, `prefixLength`, `matchOperator`, `source`. `interface` matches routes BIRD reads from
//! the kernel, which tortie never exports, so it is refused; any other field is refused by name.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a route's prefix is compared with `cidr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MatchOperator {
    Equal,
    NotEqual,
    In,
    NotIn,
}

/// What a matching rule does with the route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FilterAction {
    Accept,
    Reject,
}

/// Where the route comes from: `RemotePeers` are routes learned from BGP peers (on export, not
/// the node's own blocks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MatchSource {
    RemotePeers,
}

/// The range of prefix lengths `In` / `NotIn` match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrefixLength {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
}

/// One rule: every match given holds → `action`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<PrefixLength>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_operator: Option<MatchOperator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<MatchSource>,
    /// Refused: see the module documentation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    pub action: FilterAction,
}

/// A BGPFilter's rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpFilter {
    #[serde(rename = "exportV4", default, skip_serializing_if = "Vec::is_empty")]
    pub export_v4: Vec<FilterRule>,
    #[serde(rename = "importV4", default, skip_serializing_if = "Vec::is_empty")]
    pub import_v4: Vec<FilterRule>,
    #[serde(rename = "exportV6", default, skip_serializing_if = "Vec::is_empty")]
    pub export_v6: Vec<FilterRule>,
    #[serde(rename = "importV6", default, skip_serializing_if = "Vec::is_empty")]
    pub import_v6: Vec<FilterRule>,
}

impl BgpFilter {
    /// The rule lists with their field names and address lengths.
    pub fn lists(&self) -> [(&'static str, &[FilterRule], u8); 4] {
        [
            ("exportV4", &self.export_v4, 32),
            ("importV4", &self.import_v4, 32),
            ("exportV6", &self.export_v6, 128),
            ("importV6", &self.import_v6, 128),
        ]
    }

    pub(super) fn check(&self) -> Result<(), String> {
        for (field, rules, bits) in self.lists() {
            for (i, rule) in rules.iter().enumerate() {
                rule.check(bits).map_err(|e| format!("{field}[{i}].{e}"))?;
            }
        }
        Ok(())
    }
}

impl FilterRule {
    /// The rule's CIDR, parsed (checked by [`FilterRule::check`]).
    pub fn network(&self) -> Option<ipnetwork::IpNetwork> {
        self.cidr.as_deref().and_then(|c| c.parse().ok())
    }

    fn check(&self, bits: u8) -> Result<(), String> {
        if let Some(interface) = &self.interface {
            return Err(format!(
                "interface: {interface:?} is not supported: it matches routes read from the kernel, which tortie does not export"
            ));
        }
        let Some(cidr) = &self.cidr else {
            if let Some(op) = self.match_operator {
                return Err(format!("matchOperator: {op:?} needs a cidr"));
            }
            if self.prefix_length.is_some() {
                return Err("prefixLength: needs a cidr".to_string());
            }
            return Ok(());
        };
        let net: ipnetwork::IpNetwork = cidr.parse().map_err(|_| format!("cidr: {cidr:?} is not a CIDR"))?;
        if net.prefix() != 0 && net.network() != net.ip() || (bits == 32) != net.is_ipv4() {
            return Err(format!("cidr: {cidr:?} is not a masked IPv{} CIDR", if bits == 32 { 4 } else { 6 }));
        }
        let Some(op) = self.match_operator else {
            return Err(format!("matchOperator: is required with cidr {cidr:?} (Equal, NotEqual, In or NotIn)"));
        };
        if let Some(range) = self.prefix_length {
            if matches!(op, MatchOperator::Equal | MatchOperator::NotEqual) {
                return Err(format!("prefixLength: only with matchOperator In or NotIn, not {op:?}"));
            }
            for (name, value) in [("min", range.min), ("max", range.max)] {
                if let Some(v) = value
                    && !(i64::from(net.prefix())..=i64::from(bits)).contains(&v)
                {
                    return Err(format!("prefixLength.{name}: {v} is not between {} and {bits}", net.prefix()));
                }
            }
            if let (Some(min), Some(max)) = (range.min, range.max)
                && min > max
            {
                return Err(format!("prefixLength: min {min} is more than max {max}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(doc: serde_json::Value) -> Result<BgpFilter, String> {
        let filter: BgpFilter = serde_json::from_value(doc).map_err(|e| e.to_string())?;
        filter.check().map(|()| filter)
    }

    #[test]
    fn calicos_example_is_accepted() {
        let ok = check(serde_json::json!({
            "exportV4": [{"action": "Accept", "matchOperator": "In", "cidr": "77.0.0.0/16", "source": "RemotePeers"},
                         {"action": "Reject", "matchOperator": "NotIn", "cidr": "88.0.0.0/16",
                          "prefixLength": {"min": 24, "max": 28}}],
            "importV6": [{"action": "Reject", "matchOperator": "Equal", "cidr": "9000::0/64"}, {"action": "Accept"}],
        }));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn bad_rules_are_refused_naming_the_field_and_value() {
        let cases = [
            (
                serde_json::json!({"exportV4": [{"action": "Accept", "interface": "eth0"}]}),
                "exportV4[0].interface: \"eth0\" is not supported",
            ),
            (
                serde_json::json!({"importV4": [{"action": "Accept", "cidr": "10.0.0.0/8"}]}),
                "importV4[0].matchOperator: is required",
            ),
            (
                serde_json::json!({"importV4": [{"action": "Accept", "cidr": "10.0.0.1/8", "matchOperator": "In"}]}),
                "cidr: \"10.0.0.1/8\" is not a masked IPv4",
            ),
            (
                serde_json::json!({"importV6": [{"action": "Accept", "cidr": "10.0.0.0/8", "matchOperator": "In"}]}),
                "importV6[0].cidr: \"10.0.0.0/8\" is not a masked IPv6",
            ),
            (
                serde_json::json!({"exportV4": [{"action": "Accept", "cidr": "10.0.0.0/8", "matchOperator": "In", "prefixLength": {"min": 4}}]}),
                "prefixLength.min: 4",
            ),
            (
                serde_json::json!({"exportV4": [{"action": "Accept", "cidr": "10.0.0.0/8", "matchOperator": "Equal", "prefixLength": {"max": 24}}]}),
                "prefixLength: only with matchOperator In or NotIn",
            ),
            (
                serde_json::json!({"exportV4": [{"action": "Accept", "matchOperator": "In"}]}),
                "matchOperator: In needs a cidr",
            ),
            (
                serde_json::json!({"exportV4": [{"action": "Accept", "communities": {"values": ["1:2"]}}]}),
                "unknown field `communities`",
            ),
            (serde_json::json!({"exportV4": [{"action": "Drop"}]}), "unknown variant `Drop`"),
        ];
        for (doc, expected) in cases {
            let err = check(doc.clone()).unwrap_err();
            assert!(err.contains(expected), "{doc}: {err}");
        }
    }
}
