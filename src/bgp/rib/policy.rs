//! Import and export policy: small, typed, evaluated per route.
//!
//! A [`Policy`] is an ordered list of [`Rule`]s. A rule whose matches all
//! hold applies its actions in order; `Accept` or `Reject` ends the
//! evaluation, modifying actions go on to the next rule. A route that no
//! terminating action decided gets the policy's `default`.
//!
//! The built-in defaults (Calico's, see `docs/bgp-routing.md`) are applied
//! by the RIB around the configured policy, in [`crate::bgp::rib::export`]
//! and [`crate::bgp::rib::import`].

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use super::attrs::PathAttrs;
use super::net::within;
use crate::bgp::packet::{Community, LargeCommunity};

/// iBGP or eBGP, for [`Match::PeerType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerType {
    Ibgp,
    Ebgp,
}

/// One condition on a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// The prefix lies inside `prefix` with a length in `ge..=le` (default:
    /// exactly the length of `prefix` when both are absent, else up to /32 or /128).
    Prefix {
        prefix: IpNetwork,
        ge: Option<u8>,
        le: Option<u8>,
    },
    Community(Community),
    LargeCommunity(LargeCommunity),
    /// The AS path contains this AS anywhere.
    AsPathContains(u32),
    /// The peer the route comes from (import) or goes to (export).
    PeerType(PeerType),
    /// The route was learned from a BGP peer (not originated by this node): always on import.
    Learned,
    /// The inner match does not hold.
    Not(Box<Match>),
}

/// One action on a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Accept,
    Reject,
    AddCommunity(Community),
    AddLargeCommunity(LargeCommunity),
    /// Prepends `asn` `count` times.
    PrependAs {
        asn: u32,
        count: u8,
    },
    SetLocalPref(u32),
    SetMed(u32),
}

/// A rule: all matches, then the actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default)]
    pub matches: Vec<Match>,
    pub actions: Vec<Action>,
}

/// The verdict when no rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accept,
    #[default]
    Reject,
}

/// An ordered rule list with a default verdict.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Policy {
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub default: Verdict,
}

impl Policy {
    /// Accepts everything unchanged.
    pub fn accept_all() -> Self {
        Policy { rules: Vec::new(), default: Verdict::Accept }
    }

    /// Rejects everything.
    pub fn reject_all() -> Self {
        Policy { rules: Vec::new(), default: Verdict::Reject }
    }

    /// Evaluates the policy on a route; `Some` with the (possibly changed)
    /// attributes when accepted.
    pub fn apply(&self, prefix: &IpNetwork, peer_type: PeerType, attrs: PathAttrs) -> Option<PathAttrs> {
        self.apply_to(prefix, peer_type, true, attrs)
    }

    /// [`Policy::apply`] for a route that is `learned` from a peer or originated here (export).
    pub fn apply_to(
        &self,
        prefix: &IpNetwork,
        peer_type: PeerType,
        learned: bool,
        mut attrs: PathAttrs,
    ) -> Option<PathAttrs> {
        for rule in &self.rules {
            if !rule.matches.iter().all(|m| m.holds(prefix, peer_type, learned, &attrs)) {
                continue;
            }
            for action in &rule.actions {
                match action {
                    Action::Accept => return Some(attrs),
                    Action::Reject => return None,
                    Action::AddCommunity(c) => {
                        if !attrs.communities.contains(c) {
                            attrs.communities.push(*c);
                        }
                    }
                    Action::AddLargeCommunity(c) => {
                        if !attrs.large_communities.contains(c) {
                            attrs.large_communities.push(*c);
                        }
                    }
                    Action::PrependAs { asn, count } => attrs.prepend(*asn, usize::from(*count)),
                    Action::SetLocalPref(v) => attrs.local_pref = Some(*v),
                    Action::SetMed(v) => attrs.med = Some(*v),
                }
            }
        }
        match self.default {
            Verdict::Accept => Some(attrs),
            Verdict::Reject => None,
        }
    }
}

impl Match {
    fn holds(&self, prefix: &IpNetwork, peer_type: PeerType, learned: bool, attrs: &PathAttrs) -> bool {
        match self {
            Match::Prefix { prefix: outer, ge, le } => {
                let max = if prefix.is_ipv4() { 32 } else { 128 };
                let (lo, hi) = match (ge, le) {
                    (None, None) => (outer.prefix(), outer.prefix()),
                    _ => (ge.unwrap_or(outer.prefix()), le.unwrap_or(max)),
                };
                within(prefix, outer) && (lo..=hi).contains(&prefix.prefix())
            }
            Match::Community(c) => attrs.communities.contains(c),
            Match::LargeCommunity(c) => attrs.large_communities.contains(c),
            Match::AsPathContains(asn) => attrs.count_as(*asn) > 0,
            Match::PeerType(t) => *t == peer_type,
            Match::Learned => learned,
            Match::Not(inner) => !inner.holds(prefix, peer_type, learned, attrs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn route() -> PathAttrs {
        let mut attrs = PathAttrs::local();
        attrs.prepend(65002, 1);
        attrs.communities.push(Community(0xfde8_0001));
        attrs
    }

    fn accepts(policy: &Policy, prefix: &str) -> bool {
        policy.apply(&net(prefix), PeerType::Ebgp, route()).is_some()
    }

    #[test]
    fn prefix_match_with_length_range() {
        let rule = |ge, le| Policy {
            rules: vec![Rule {
                matches: vec![Match::Prefix { prefix: net("10.0.0.0/8"), ge, le }],
                actions: vec![Action::Accept],
            }],
            default: Verdict::Reject,
        };
        let exact = rule(None, None);
        assert!(accepts(&exact, "10.0.0.0/8"));
        assert!(!accepts(&exact, "10.1.0.0/16"));
        let range = rule(Some(16), Some(24));
        assert!(accepts(&range, "10.1.0.0/16") && accepts(&range, "10.1.2.0/24"));
        assert!(!accepts(&range, "10.1.2.0/26") && !accepts(&range, "10.0.0.0/8") && !accepts(&range, "11.0.0.0/16"));
        let le_only = rule(None, Some(32));
        assert!(accepts(&le_only, "10.0.0.0/8") && accepts(&le_only, "10.9.9.9/32"));
    }

    #[test]
    fn community_large_community_as_path_and_peer_type() {
        let only = |m: Match| Policy {
            rules: vec![Rule { matches: vec![m], actions: vec![Action::Accept] }],
            default: Verdict::Reject,
        };
        assert!(accepts(&only(Match::Community(Community(0xfde8_0001))), "10.0.0.0/8"));
        assert!(!accepts(&only(Match::Community(Community(1))), "10.0.0.0/8"));
        let large = LargeCommunity { global_admin: 1, local_data_1: 2, local_data_2: 3 };
        assert!(!accepts(&only(Match::LargeCommunity(large)), "10.0.0.0/8"));
        assert!(accepts(&only(Match::AsPathContains(65002)), "10.0.0.0/8"));
        assert!(!accepts(&only(Match::AsPathContains(65003)), "10.0.0.0/8"));
        assert!(accepts(&only(Match::PeerType(PeerType::Ebgp)), "10.0.0.0/8"));
        assert!(!accepts(&only(Match::PeerType(PeerType::Ibgp)), "10.0.0.0/8"));
    }

    #[test]
    fn negation_and_learned_routes() {
        let policy = Policy {
            rules: vec![Rule {
                matches: vec![
                    Match::Learned,
                    Match::Not(Box::new(Match::Prefix { prefix: net("10.0.0.0/8"), ge: Some(8), le: Some(32) })),
                ],
                actions: vec![Action::Reject],
            }],
            default: Verdict::Accept,
        };
        assert!(policy.apply_to(&net("11.0.0.0/8"), PeerType::Ebgp, true, route()).is_none());
        assert!(policy.apply_to(&net("11.0.0.0/8"), PeerType::Ebgp, false, route()).is_some(), "originated");
        assert!(policy.apply_to(&net("10.1.0.0/16"), PeerType::Ebgp, true, route()).is_some());
    }

    #[test]
    fn modifying_actions_apply_in_order_until_a_verdict() {
        let large = LargeCommunity { global_admin: 1, local_data_1: 2, local_data_2: 3 };
        let policy = Policy {
            rules: vec![
                Rule {
                    matches: vec![],
                    actions: vec![
                        Action::AddCommunity(Community(7)),
                        Action::AddLargeCommunity(large),
                        Action::PrependAs { asn: 65001, count: 2 },
                        Action::SetLocalPref(300),
                        Action::SetMed(20),
                    ],
                },
                Rule {
                    matches: vec![Match::Community(Community(7))],
                    actions: vec![Action::Accept, Action::SetMed(99)],
                },
            ],
            default: Verdict::Reject,
        };
        let out = policy.apply(&net("10.0.0.0/8"), PeerType::Ibgp, route()).unwrap();
        assert!(out.communities.contains(&Community(7)) && out.large_communities == vec![large]);
        assert_eq!(out.as_path_text(), "65001 65001 65002");
        assert_eq!((out.local_pref, out.med), (Some(300), Some(20)));
        assert!(Policy::reject_all().apply(&net("10.0.0.0/8"), PeerType::Ibgp, route()).is_none());
        assert!(Policy::accept_all().apply(&net("10.0.0.0/8"), PeerType::Ibgp, route()).is_some());
    }
}
