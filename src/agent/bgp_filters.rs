//! BGPFilters compiled to a peer's import and export [`Policy`], with Calico's semantics: the
//! filters in the order the BGPPeer lists them, in each its rules in order (IPv4 rules only for
//! IPv4 routes, IPv6 rules for IPv6 ones); the first rule that matches accepts or rejects; a
//! route no rule matched gets the usual treatment (the policy's default accepts it, and the RIB's
//! built-in limits — pool prefixes only — still apply).

use crate::bgp::rib::Policy;
use crate::bgp::rib::policy::{Action, Match, Rule, Verdict};
use crate::datastore::resources::{BgpFilter, FilterAction, FilterRule, MatchOperator, MatchSource};
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Import or export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Import,
    Export,
}

/// The policy of `names` for `direction`; `None` without filters; `Err` with the first name that
/// `filters` lacks.
pub fn compile(
    names: &[String],
    filters: &BTreeMap<String, BgpFilter>,
    direction: Direction,
) -> Result<Option<Policy>, String> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut rules = Vec::new();
    for name in names {
        let filter = filters.get(name).ok_or_else(|| name.clone())?;
        let (v4, v6) = match direction {
            Direction::Import => (&filter.import_v4, &filter.import_v6),
            Direction::Export => (&filter.export_v4, &filter.export_v6),
        };
        rules.extend(v4.iter().map(|r| rule(r, false)));
        rules.extend(v6.iter().map(|r| rule(r, true)));
    }
    Ok(Some(Policy { rules, default: Verdict::Accept }))
}

fn rule(r: &FilterRule, ipv6: bool) -> Rule {
    let (any, bits): (IpNetwork, u8) = if ipv6 {
        (IpNetwork::new(Ipv6Addr::UNSPECIFIED.into(), 0).expect("::/0"), 128)
    } else {
        (IpNetwork::new(Ipv4Addr::UNSPECIFIED.into(), 0).expect("0.0.0.0/0"), 32)
    };
    let mut matches = vec![Match::Prefix { prefix: any, ge: Some(0), le: Some(bits) }];
    if let (Some(cidr), Some(op)) = (r.network(), r.match_operator) {
        let range = r.prefix_length.unwrap_or_default();
        let clamp = |v: Option<i64>, default: u8| v.and_then(|v| u8::try_from(v).ok()).unwrap_or(default);
        let within =
            Match::Prefix { prefix: cidr, ge: Some(clamp(range.min, cidr.prefix())), le: Some(clamp(range.max, bits)) };
        let exact = Match::Prefix { prefix: cidr, ge: None, le: None };
        matches.push(match op {
            MatchOperator::Equal => exact,
            MatchOperator::NotEqual => Match::Not(Box::new(exact)),
            MatchOperator::In => within,
            MatchOperator::NotIn => Match::Not(Box::new(within)),
        });
    }
    if r.source == Some(MatchSource::RemotePeers) {
        matches.push(Match::Learned);
    }
    let action = match r.action {
        FilterAction::Accept => Action::Accept,
        FilterAction::Reject => Action::Reject,
    };
    Rule { matches, actions: vec![action] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::rib::attrs::PathAttrs;
    use crate::bgp::rib::policy::PeerType;

    fn filter(doc: serde_json::Value) -> BgpFilter {
        serde_json::from_value(doc).unwrap()
    }

    fn accepted(policy: &Policy, prefix: &str, learned: bool) -> bool {
        policy.apply_to(&prefix.parse().unwrap(), PeerType::Ebgp, learned, PathAttrs::local()).is_some()
    }

    #[test]
    fn the_first_matching_rule_of_the_filters_in_order_decides() {
        let filters: BTreeMap<String, BgpFilter> = [
            (
                "first".to_string(),
                filter(serde_json::json!({"exportV4": [
                    {"action": "Accept", "cidr": "10.1.0.0/16", "matchOperator": "Equal"},
                    {"action": "Reject", "cidr": "10.0.0.0/8", "matchOperator": "In", "prefixLength": {"max": 24}},
                ]})),
            ),
            (
                "second".to_string(),
                filter(serde_json::json!({
                    "exportV4": [{"action": "Reject", "cidr": "10.0.0.0/8", "matchOperator": "NotIn"}],
                    "exportV6": [{"action": "Reject", "source": "RemotePeers"}],
                    "importV4": [{"action": "Reject", "cidr": "10.9.0.0/16", "matchOperator": "NotEqual"}],
                })),
            ),
        ]
        .into();
        let names = ["first".to_string(), "second".to_string()];
        let export = compile(&names, &filters, Direction::Export).unwrap().unwrap();
        assert!(accepted(&export, "10.1.0.0/16", false), "Equal accepts before the In rule rejects");
        assert!(!accepted(&export, "10.2.0.0/16", false), "In, /8 to /24");
        assert!(accepted(&export, "10.2.0.0/26", false), "longer than prefixLength.max: the next filter");
        assert!(!accepted(&export, "192.168.0.0/16", false), "NotIn in the second filter");
        assert!(accepted(&export, "fd00::/64", false), "originated IPv6: no rule, the default accepts");
        assert!(!accepted(&export, "fd00::/64", true), "learned IPv6: source RemotePeers");
        let import = compile(&names, &filters, Direction::Import).unwrap().unwrap();
        assert!(accepted(&import, "10.9.0.0/16", true) && !accepted(&import, "10.8.0.0/16", true));
        assert!(accepted(&import, "fd00::/64", true), "IPv4 rules leave IPv6 routes alone");
        assert_eq!(compile(&["gone".to_string()], &filters, Direction::Import), Err("gone".to_string()));
        assert_eq!(compile(&[], &filters, Direction::Import), Ok(None));
    }
}
