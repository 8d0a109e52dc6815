//! The network-policy section: [`Program`] as nftables objects in `inet tortie`.
//!
//! - one forward base chain: established and related traffic accepted (return traffic); a
//!   packet from a local workload's veth jumps to that workload's egress chain, one to a
//!   local workload's veth to its ingress chain (anonymous verdict maps keyed by `iifname` /
//!   `oifname`); a workload no policy selects has no entry, so its traffic goes on;
//! - per workload and direction a chain that clears the allow bit, jumps to each applying
//!   policy's chain in order, returns as soon as one set the bit, and drops at the end (the
//!   endpoint is selected and nothing allowed it);
//! - per policy and direction a chain of its rules: Allow and Pass set the bit and return,
//!   Deny drops, Log logs with a prefix naming the policy and goes on; each rule counts;
//! - per set of the program two address sets (`<name>-v4`, `<name>-v6`), so a pod
//!   appearing or relabelled changes set elements only;
//! - a rule that reads addresses is written once per family, except in a family where a set
//!   it must match (not negated) is empty: that copy could never match. In a cluster without
//!   IPv6 pods that is half the rules; a set gaining its first address of a family brings the
//!   copies back (the follower renders the chains again when a set's families change).
//!
//! The node's own traffic to its pods never passes the forward hook, so probes are allowed.

use super::render::{AddressSet, BaseChain, ChainSpec, PortSet, Section, port_range};
use crate::datastore::resources::Action;
use crate::policy::ir::{IrRule, Match, PolicyChains, Program, Side};
use ipnetwork::IpNetwork;
use nftables::stmt::Statement;
use nftables::types::{NfChainPolicy, NfChainType, NfHook};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// The user name of this section.
pub const USER: &str = "policy";
/// The forward base chain.
pub const CHAIN: &str = "policy-forward";
/// The packet mark bit a policy chain sets to say "allowed in this direction" (in the upper
/// half, which Calico also keeps for itself, clear of kube-proxy's 0x4000 and 0x8000).
pub const ALLOW_MARK: u32 = 0x0010_0000;
/// The filter priority.
const FILTER_PRIORITY: i32 = 0;
/// The longest log prefix the kernel keeps.
const MAX_LOG_PREFIX: usize = 127;

/// The chain of a workload's interface and direction (`wi-` ingress, `we-` egress).
pub fn endpoint_chain(interface: &str, ingress: bool) -> String {
    format!("{}-{interface}", if ingress { "wi" } else { "we" })
}

/// The chain of a policy id and direction.
pub fn policy_chain(id: &str, ingress: bool) -> String {
    format!("{}-{id}", if ingress { "pi" } else { "pe" })
}

/// The longest port set name made of its ports; longer lists are named by a digest.
const MAX_PORT_SET_NAME: usize = 64;

/// The name of the port set holding `ranges`: the ports themselves (`ports-80_443_8000-8080`),
/// so every rule with the same ports shares it and the name is the same in every run.
pub fn port_set_name(ranges: &[(u16, u16)]) -> String {
    let text: Vec<String> =
        ranges.iter().map(|(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") }).collect();
    let name = format!("ports-{}", text.join("_"));
    if name.len() <= MAX_PORT_SET_NAME {
        return name;
    }
    // FNV-1a: stable across builds, unlike the standard library's hasher.
    let digest = ranges
        .iter()
        .flat_map(|(lo, hi)| [lo.to_be_bytes(), hi.to_be_bytes()])
        .flatten()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("ports-{digest:016x}")
}

/// Sorted and with overlapping ranges merged: an interval set refuses overlaps.
fn disjoint(ranges: &[(u16, u16)]) -> Vec<(u16, u16)> {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::with_capacity(sorted.len());
    for (lo, hi) in sorted {
        match out.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The address set of a program set and family.
pub fn family_set(name: &str, ipv6: bool) -> String {
    format!("{name}-{}", if ipv6 { "v6" } else { "v4" })
}

fn statement(value: Value) -> Result<Statement<'static>, String> {
    serde_json::from_value(value.clone()).map_err(|e| format!("nftables statement {value}: {e}"))
}

fn mark() -> Value {
    json!({"meta": {"key": "mark"}})
}

/// The section for `program`.
pub fn section(program: &Program) -> Result<Section, String> {
    Renderer::default().section(program)
}

/// Which families each set of a program has an address of: (IPv4, IPv6).
pub type Present<'p> = HashMap<&'p str, (bool, bool)>;

/// The families of addresses each set of `program` holds.
pub fn present(program: &Program) -> Present<'_> {
    program
        .sets
        .iter()
        .map(|(name, elements)| {
            let v6 = elements.iter().any(|n| n.is_ipv6());
            (name.as_str(), (elements.iter().any(|n| !n.is_ipv6()), v6))
        })
        .collect()
}

/// Whether giving the sets named in `changed` the elements `program` has changes which
/// families one of them has an address of, against `section` (rendered earlier): then rules
/// come or go, and set elements alone ([`refill_sets`]) do not say it.
pub fn families_change(section: &Section, program: &Program, changed: &std::collections::BTreeSet<String>) -> bool {
    section.sets.iter().any(|set| {
        let Some(name) = set.name.strip_suffix(if set.ipv6 { "-v6" } else { "-v4" }) else { return false };
        // Empty before and holding one now, or the other way round.
        changed.contains(name)
            && set.elements.is_empty()
                == program.sets.get(name).is_some_and(|e| e.iter().any(|n| n.is_ipv6() == set.ipv6))
    })
}

/// One policy chain as last rendered, and what it was rendered from.
struct Rendered {
    policy: Arc<PolicyChains>,
    refused: bool,
    /// The families each rule was written for.
    written: Vec<Vec<Option<bool>>>,
    chain: ChainSpec,
    /// The port sets its rules name.
    ports: Vec<Vec<(u16, u16)>>,
}

/// A local endpoint's chain of one direction as last rendered, and the policies it jumps to.
struct RenderedEndpoint {
    policies: Vec<String>,
    chain: ChainSpec,
}

/// A program set's two address sets as last rendered, and the elements they came from.
struct RenderedSet {
    elements: Vec<IpNetwork>,
    families: [AddressSet; 2],
}

/// Renders sections, keeping what did not change since the last one: each policy chain while
/// its policy's compiled rules stay the same, each local endpoint's chain while the policies
/// it jumps to do, each set's elements, and the dispatch. A pod appearing on this node or
/// relabelled changes the dispatch and its own chains; rendering a thousand policies' chains,
/// a hundred endpoint chains and every set again for that cost more than writing the change.
#[derive(Default)]
pub struct Renderer {
    chains: HashMap<(String, bool), Rendered>,
    endpoints: HashMap<(String, bool), RenderedEndpoint>,
    sets: HashMap<String, RenderedSet>,
    /// The forward base chain and the dispatch entries it was rendered from.
    base: Option<(Vec<DispatchEntry>, ChainSpec)>,
    /// Every policy chain as last rendered.
    policies: Option<RenderedPolicies>,
}

/// Every policy's chains and port sets as last rendered, and what they were rendered from.
struct RenderedPolicies {
    policies: Vec<Arc<PolicyChains>>,
    set_names: Vec<String>,
    /// Per set (in name order), whether it holds an IPv4 and an IPv6 address.
    families: Vec<(bool, bool)>,
    chains: Vec<ChainSpec>,
    port_sets: Vec<PortSet>,
}

/// One local endpoint in the dispatch: its interface and whether it has an ingress and an
/// egress chain.
type DispatchEntry = (String, bool, bool);

impl Renderer {
    /// The section for `program`.
    pub fn section(&mut self, program: &Program) -> Result<Section, String> {
        let present = present(program);
        let families: Vec<(bool, bool)> = program.sets.keys().map(|name| present[name.as_str()]).collect();
        let (policy_chains, port_sets) = match &self.policies {
            // The same policies (by pointer: a pod's change leaves them alone) and every set
            // holding the same families of addresses: the same chains.
            Some(last)
                if last.policies.len() == program.policies.len()
                    && last.policies.iter().zip(&program.policies).all(|(a, b)| Arc::ptr_eq(a, b))
                    && last.families == families
                    && program.sets.keys().eq(&last.set_names) =>
            {
                (last.chains.clone(), last.port_sets.clone())
            }
            _ => {
                let (chains, port_sets) = self.policy_chains(program, &present)?;
                self.policies = Some(RenderedPolicies {
                    policies: program.policies.clone(),
                    set_names: program.sets.keys().cloned().collect(),
                    families,
                    chains: chains.clone(),
                    port_sets: port_sets.clone(),
                });
                (chains, port_sets)
            }
        };
        let sets = self.address_sets(program);
        let mut chains = Vec::with_capacity(1 + program.endpoints.len() * 2 + policy_chains.len());
        chains.push(self.base_chain(program)?);
        self.endpoint_chains(program, &mut chains)?;
        chains.extend(policy_chains);
        Ok(Section { sets, port_sets, chains: chains.into() })
    }

    /// Every policy's chains, each from the cache while its rules and their families stay the
    /// same, and the port sets they name.
    fn policy_chains(
        &mut self,
        program: &Program,
        present: &Present,
    ) -> Result<(Vec<ChainSpec>, Vec<PortSet>), String> {
        let mut port_sets = BTreeMap::new();
        let mut policy_chains = Vec::with_capacity(program.policies.len() * 2);
        let mut seen = HashSet::new();
        for policy in program.policies.iter() {
            for (ingress, ir) in [(true, &policy.ingress), (false, &policy.egress)] {
                let key = (policy.id.clone(), ingress);
                policy_chains.push(self.policy_chain(policy, ingress, ir, present, &mut port_sets)?);
                seen.insert(key);
            }
        }
        self.chains.retain(|key, _| seen.contains(key));
        let port_sets = port_sets.into_iter().map(|(ranges, name)| PortSet { name, ranges }).collect();
        Ok((policy_chains, port_sets))
    }

    /// Each program set as an IPv4 and an IPv6 address set, the ones whose elements did not
    /// change as rendered before (shared, so the owner compares them by pointer).
    fn address_sets(&mut self, program: &Program) -> Vec<AddressSet> {
        let mut out = Vec::with_capacity(program.sets.len() * 2);
        for (name, elements) in &program.sets {
            let cached = self.sets.get(name).filter(|r| r.elements == *elements);
            let families = match cached {
                Some(r) => r.families.clone(),
                None => {
                    let family = |ipv6: bool| AddressSet {
                        name: family_set(name, ipv6),
                        ipv6,
                        elements: elements.iter().filter(|n| n.is_ipv6() == ipv6).copied().collect(),
                    };
                    let families = [family(false), family(true)];
                    let rendered = RenderedSet { elements: elements.clone(), families: families.clone() };
                    self.sets.insert(name.clone(), rendered);
                    families
                }
            };
            out.extend(families);
        }
        if self.sets.len() > program.sets.len() {
            self.sets.retain(|name, _| program.sets.contains_key(name));
        }
        out
    }

    /// The forward base chain: return traffic accepted, then the dispatch to the local
    /// endpoints' chains.
    fn base_chain(&mut self, program: &Program) -> Result<ChainSpec, String> {
        let entries: Vec<DispatchEntry> =
            program.endpoints.iter().map(|e| (e.interface.clone(), e.ingress.is_some(), e.egress.is_some())).collect();
        if let Some((cached, chain)) = &self.base
            && *cached == entries
        {
            return Ok(chain.clone());
        }
        let chain = base_chain(&entries)?;
        self.base = Some((entries, chain.clone()));
        Ok(chain)
    }

    /// Each local endpoint's chains, in the program's order, onto `chains`.
    fn endpoint_chains(&mut self, program: &Program, chains: &mut Vec<ChainSpec>) -> Result<(), String> {
        let mut seen = HashSet::new();
        for endpoint in &program.endpoints {
            for (ingress, list) in [(true, &endpoint.ingress), (false, &endpoint.egress)] {
                let Some(list) = list else { continue };
                let policies: Vec<String> = list.iter().map(|&i| program.policies[i].id.clone()).collect();
                let key = (endpoint.interface.clone(), ingress);
                let chain = match self.endpoints.get(&key) {
                    Some(r) if r.policies == policies => r.chain.clone(),
                    _ => {
                        let chain = endpoint_chain_spec(&endpoint.interface, ingress, &policies)?;
                        self.endpoints.insert(key.clone(), RenderedEndpoint { policies, chain: chain.clone() });
                        chain
                    }
                };
                chains.push(chain);
                seen.insert(key);
            }
        }
        self.endpoints.retain(|key, _| seen.contains(key));
        Ok(())
    }

    fn policy_chain(
        &mut self,
        policy: &Arc<PolicyChains>,
        ingress: bool,
        ir: &[IrRule],
        present: &Present,
        port_sets: &mut BTreeMap<Vec<(u16, u16)>, String>,
    ) -> Result<ChainSpec, String> {
        let refused = crate::faults::refuses(&format!("nft-policy:{}", policy.name));
        let key = (policy.id.clone(), ingress);
        let written: Vec<Vec<Option<bool>>> = ir.iter().map(|rule| live_families(rule, present)).collect();
        // The same policy object, or one with the same name and rules (compiled again).
        let same_rules = |r: &Rendered| {
            let before = if ingress { &r.policy.ingress } else { &r.policy.egress };
            Arc::ptr_eq(&r.policy, policy) || r.policy.name == policy.name && before[..] == *ir
        };
        if let Some(r) = self.chains.get_mut(&key)
            && r.refused == refused
            && r.written == written
            && same_rules(r)
        {
            r.policy = policy.clone();
            for ranges in &r.ports {
                port_sets.entry(ranges.clone()).or_insert_with_key(|r| port_set_name(r));
            }
            return Ok(r.chain.clone());
        }
        let mut rules = Vec::new();
        if refused {
            // A jump to a chain that does not exist: nft refuses the batch.
            rules.push(vec![statement(json!({"jump": {"target": "tortie-fault-no-such-chain"}}))?]);
        }
        let mut ports = BTreeMap::new();
        for (rule, families) in ir.iter().zip(&written) {
            for family in families {
                rules.push(rule_statements(rule, *family, &policy.name, &mut ports)?);
            }
        }
        let chain = ChainSpec { name: policy_chain(&policy.id, ingress), base: None, rules: rules.into() };
        for (ranges, name) in &ports {
            port_sets.entry(ranges.clone()).or_insert_with(|| name.clone());
        }
        let rendered = Rendered {
            policy: policy.clone(),
            refused,
            written,
            chain: chain.clone(),
            ports: ports.into_keys().collect(),
        };
        self.chains.insert(key, rendered);
        Ok(chain)
    }
}

/// The forward base chain for a dispatch of `entries`.
fn base_chain(entries: &[DispatchEntry]) -> Result<ChainSpec, String> {
    let dispatch = |key: &str, ingress: bool| -> Result<Option<Vec<Statement<'static>>>, String> {
        let entries: Vec<Value> = entries
            .iter()
            .filter(|(_, has_ingress, has_egress)| if ingress { *has_ingress } else { *has_egress })
            .map(|(interface, _, _)| json!([interface, {"jump": {"target": endpoint_chain(interface, ingress)}}]))
            .collect();
        if entries.is_empty() {
            return Ok(None);
        }
        Ok(Some(vec![statement(json!({"vmap": {"key": {"meta": {"key": key}}, "data": {"set": entries}}}))?]))
    };
    let mut rules = vec![vec![
        statement(
            json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}),
        )?,
        statement(json!({"accept": null}))?,
    ]];
    rules.extend(dispatch("iifname", false)?);
    rules.extend(dispatch("oifname", true)?);
    // The bit means nothing beyond this chain: later hooks see the packet's own mark.
    rules.push(vec![statement(json!({"mangle": {"key": mark(), "value": {"&": [mark(), !ALLOW_MARK]}}}))?]);
    Ok(ChainSpec {
        name: CHAIN.to_string(),
        base: Some(BaseChain {
            kind: NfChainType::Filter,
            hook: NfHook::Forward,
            priority: FILTER_PRIORITY,
            policy: NfChainPolicy::Accept,
        }),
        rules: rules.into(),
    })
}

/// A local endpoint's chain of one direction, jumping to the chains of `policies` (ids) in
/// order.
fn endpoint_chain_spec(interface: &str, ingress: bool, policies: &[String]) -> Result<ChainSpec, String> {
    let clear = json!({"mangle": {"key": mark(), "value": {"&": [mark(), !ALLOW_MARK]}}});
    let mut rules = vec![vec![statement(clear)?]];
    for id in policies {
        rules.push(vec![statement(json!({"jump": {"target": policy_chain(id, ingress)}}))?]);
        rules.push(vec![
            statement(json!({"match": {"op": "==", "left": {"&": [mark(), ALLOW_MARK]}, "right": ALLOW_MARK}}))?,
            statement(json!({"return": null}))?,
        ]);
    }
    rules.push(vec![statement(json!({"counter": null}))?, statement(json!({"drop": null}))?]);
    Ok(ChainSpec { name: endpoint_chain(interface, ingress), base: None, rules: rules.into() })
}

/// Gives `section` (of an earlier program with the same sets and rules) the elements
/// `program` has for the sets named in `changed`: a pod appearing, leaving or relabelled,
/// without rendering every rule again.
pub fn refill_sets(section: &mut Section, program: &Program, changed: &std::collections::BTreeSet<String>) {
    for set in &mut section.sets {
        let Some(name) = set.name.strip_suffix(if set.ipv6 { "-v6" } else { "-v4" }) else { continue };
        if !changed.contains(name) {
            continue;
        }
        let ipv6 = set.ipv6;
        set.elements = program.sets.get(name).into_iter().flatten().filter(|n| n.is_ipv6() == ipv6).copied().collect();
    }
}

/// What each rule of a policy chain counts, by its position in the chain: the index of the
/// policy rule it comes from (`None` for a rule no policy rule made). `ingress` picks the chain;
/// `present` is what the program's sets hold ([`present`]), which decides the families written.
pub fn rule_origins(policy: &PolicyChains, ingress: bool, present: &Present) -> Vec<Option<usize>> {
    let ir = if ingress { &policy.ingress } else { &policy.egress };
    let mut out = Vec::new();
    if crate::faults::refuses(&format!("nft-policy:{}", policy.name)) {
        out.push(None);
    }
    for rule in ir {
        out.extend(live_families(rule, present).iter().map(|_| Some(rule.origin)));
    }
    out
}

/// [`families`] less those in which a set the rule must match (not negated) has no address:
/// that copy of the rule could never match.
fn live_families(rule: &IrRule, present: &Present) -> Vec<Option<bool>> {
    let mut out = families(rule);
    out.retain(|family| {
        let Some(ipv6) = *family else { return true };
        rule.matches.iter().all(|m| match m {
            Match::Address { set, negated: false, .. } => {
                present.get(set.as_str()).is_some_and(|(v4, v6)| if ipv6 { *v6 } else { *v4 })
            }
            _ => true,
        })
    });
    out
}

/// The families a rule is written for: one when it names one (by version or ICMP kind) or
/// reads no address; else both, each with its family's sets.
fn families(rule: &IrRule) -> Vec<Option<bool>> {
    let fixed = rule.matches.iter().find_map(|m| match m {
        Match::Family(v) => Some(*v == 6),
        Match::Protocol(1) => Some(false),
        Match::Protocol(58) => Some(true),
        _ => None,
    });
    if let Some(ipv6) = fixed {
        return vec![Some(ipv6)];
    }
    if rule.matches.iter().any(|m| matches!(m, Match::Address { .. })) {
        vec![Some(false), Some(true)]
    } else {
        vec![None]
    }
}

/// The statements of one rule; a match on several ports names a port set, added to `port_sets`
/// (ranges → name) when new.
fn rule_statements(
    rule: &IrRule,
    family: Option<bool>,
    policy: &str,
    port_sets: &mut BTreeMap<Vec<(u16, u16)>, String>,
) -> Result<Vec<Statement<'static>>, String> {
    let mut out = Vec::new();
    let icmp_protocol = if family == Some(true) { "icmpv6" } else { "icmp" };
    if let Some(ipv6) = family {
        out.push(statement(json!({"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": if ipv6 { "ipv6" } else { "ipv4" }}}))?);
    }
    for m in &rule.matches {
        let value = match m {
            Match::Family(_) => continue,
            Match::Protocol(p) => json!({"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": p}}),
            Match::NotProtocol(p) => json!({"match": {"op": "!=", "left": {"meta": {"key": "l4proto"}}, "right": p}}),
            Match::Icmp { icmp_type, code } | Match::NotIcmp { icmp_type, code } => {
                let negated = matches!(m, Match::NotIcmp { .. });
                let field = |f: &str| json!({"payload": {"protocol": icmp_protocol, "field": f}});
                match (code, negated) {
                    (None, _) => {
                        json!({"match": {"op": if negated { "!=" } else { "==" }, "left": field("type"), "right": icmp_type}})
                    }
                    (Some(code), false) => {
                        out.push(statement(json!({"match": {"op": "==", "left": field("type"), "right": icmp_type}}))?);
                        json!({"match": {"op": "==", "left": field("code"), "right": code}})
                    }
                    // Not (type and code): the pair against a set of one concatenation.
                    (Some(code), true) => json!({"match": {"op": "!=",
                        "left": {"concat": [field("type"), field("code")]},
                        "right": {"set": [{"concat": [icmp_type, code]}]}}}),
                }
            }
            Match::Address { side, set, negated } => {
                let ipv6 = family.unwrap_or(false);
                let field = if *side == Side::Source { "saddr" } else { "daddr" };
                json!({"match": {"op": if *negated { "!=" } else { "==" },
                    "left": {"payload": {"protocol": if ipv6 { "ip6" } else { "ip" }, "field": field}},
                    "right": format!("@{}", family_set(set, ipv6))}})
            }
            Match::Port { side, ranges, negated } => {
                let field = if *side == Side::Source { "sport" } else { "dport" };
                let ranges = disjoint(ranges);
                let right = match ranges[..] {
                    [(lo, hi)] => serde_json::to_value(port_range(lo, hi)).map_err(|e| e.to_string())?,
                    _ => {
                        let name = port_sets.entry(ranges).or_insert_with_key(|r| port_set_name(r));
                        json!(format!("@{name}"))
                    }
                };
                json!({"match": {"op": if *negated { "!=" } else { "==" },
                    "left": {"payload": {"protocol": "th", "field": field}}, "right": right}})
            }
        };
        out.push(statement(value)?);
    }
    out.push(statement(json!({"counter": null}))?);
    match rule.action {
        Action::Allow | Action::Pass => {
            out.push(statement(json!({"mangle": {"key": mark(), "value": {"|": [mark(), ALLOW_MARK]}}}))?);
            out.push(statement(json!({"return": null}))?);
        }
        Action::Deny => out.push(statement(json!({"drop": null}))?),
        Action::Log => {
            let mut prefix = format!("tortie {policy} rule {} ", rule.origin);
            prefix.truncate(MAX_LOG_PREFIX);
            out.push(statement(json!({"log": {"prefix": prefix}}))?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rules_with_the_same_ports_share_one_named_set_and_one_port_needs_none() {
        use crate::policy::ir::{IrRule, Match, Side};
        let rule = |ranges: Vec<(u16, u16)>| IrRule {
            matches: vec![Match::Port { side: Side::Destination, ranges, negated: false }],
            action: Action::Allow,
            origin: 0,
        };
        let mut sets = BTreeMap::new();
        let json = |r: IrRule, sets: &mut BTreeMap<_, _>| {
            serde_json::to_value(rule_statements(&r, None, "p", sets).unwrap()).unwrap()[0]["match"]["right"].clone()
        };
        assert_eq!(json(rule(vec![(80, 80)]), &mut sets), serde_json::json!(80));
        assert_eq!(json(rule(vec![(8000, 8080)]), &mut sets), serde_json::json!({"range": [8000, 8080]}));
        assert!(sets.is_empty(), "a single port or range is matched inline");
        let a = json(rule(vec![(443, 443), (80, 80), (8000, 8080)]), &mut sets);
        let b = json(rule(vec![(80, 80), (443, 443), (8000, 8080), (8001, 8002)]), &mut sets);
        assert_eq!(a, serde_json::json!("@ports-80_443_8000-8080"));
        assert_eq!(a, b, "the same ports, sorted and merged, share a set");
        assert_eq!(sets.len(), 1);
        let many: Vec<(u16, u16)> = (1..=40).map(|p| (p * 10, p * 10)).collect();
        let name = port_set_name(&many);
        assert!(name.len() <= MAX_PORT_SET_NAME && name.starts_with("ports-"), "{name}");
        assert_eq!(name, port_set_name(&many), "stable");
    }

    use super::*;
    use crate::dataplane::nftables::render::{Desired, element_changes};
    use crate::datastore::resources::{KubeNetworkPolicy, Resource};
    use crate::policy::{Endpoint, Local, Namespaces, compile, kube};

    fn section_with(web_labels: &[(&str, &str)]) -> Section {
        section(&program_with(web_labels)).unwrap()
    }

    fn program_with(web_labels: &[(&str, &str)]) -> Program {
        let spec = serde_json::json!({"podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]});
        let r: KubeNetworkPolicy = serde_json::from_value(spec).unwrap();
        r.validate().unwrap();
        let policy = kube::policy("prod", "db", &r).unwrap();
        let pod = |name: &str, labels: &[(&str, &str)], address: &str| Endpoint {
            name: format!("prod/{name}"),
            namespace: "prod".into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            addresses: vec![address.parse().unwrap()],
            ..Endpoint::default()
        };
        let endpoints = [
            pod("db", &[("app", "db")], "10.0.0.1"),
            pod("web", web_labels, "10.0.0.2"),
            pod("web2", &[("app", "web")], "10.0.0.3"),
        ];
        let local = [Local { endpoint: "prod/db".into(), interface: "cali-db".into() }];
        compile(&[policy], &endpoints, &Namespaces::default(), &local)
    }

    /// The rules of the db policy's ingress chain in `section`.
    fn ingress_rules(section: &Section) -> usize {
        section.chains.iter().find(|c| c.name.starts_with("pi-")).map_or(0, |c| c.rules.len())
    }

    #[test]
    fn a_rule_is_written_only_for_the_families_its_sets_have_addresses_of() {
        // "from web" in an IPv4-only cluster: the IPv4 copy alone.
        let v4 = program_with(&[("app", "web")]);
        let policy = &v4.policies[0];
        assert_eq!(policy.ingress.len(), 1);
        let section_v4 = section(&v4).unwrap();
        assert_eq!(ingress_rules(&section_v4), 1, "no IPv6 copy of a rule whose set has no IPv6 address");
        assert_eq!(rule_origins(policy, true, &present(&v4)), vec![Some(0)]);
        // Its set gains an IPv6 address: both copies, and the change is more than elements.
        let mut dual = v4.clone();
        for elements in dual.sets.values_mut().filter(|e| !e.is_empty()) {
            elements.push("fd00::2/128".parse().unwrap());
        }
        let changed = dual.sets.keys().cloned().collect();
        assert!(families_change(&section_v4, &dual, &changed));
        assert!(!families_change(&section_v4, &v4, &changed));
        assert_eq!(ingress_rules(&section(&dual).unwrap()), 2);
        assert_eq!(rule_origins(&dual.policies[0], true, &present(&dual)), vec![Some(0), Some(0)]);
        // Its set emptied: no copy can match, none is written.
        let mut empty = v4.clone();
        for elements in empty.sets.values_mut() {
            elements.clear();
        }
        assert_eq!(ingress_rules(&section(&empty).unwrap()), 0);
        assert!(rule_origins(&empty.policies[0], true, &present(&empty)).is_empty());
        // The renderer's cache follows the families: the same as from scratch each time.
        let mut renderer = Renderer::default();
        for program in [&v4, &dual, &empty, &v4] {
            assert_eq!(renderer.section(program).unwrap(), section(program).unwrap());
        }
    }

    #[test]
    fn the_renderer_keeps_unchanged_policy_chains_and_renders_as_from_scratch() {
        let mut renderer = Renderer::default();
        let web = program_with(&[("app", "web")]);
        assert_eq!(renderer.section(&web).unwrap(), section(&web).unwrap());
        assert_eq!(renderer.chains.len(), 2, "ingress and egress of the one policy");
        // Another pod's labels: the policy's chains come from the cache, the result is the same.
        let other = program_with(&[("app", "other")]);
        assert_eq!(renderer.section(&other).unwrap(), section(&other).unwrap());
        // A changed policy is rendered again; a policy gone leaves the cache.
        let mut changed = other.clone();
        Arc::make_mut(&mut changed.policies[0]).ingress.clear();
        assert_eq!(renderer.section(&changed).unwrap(), section(&changed).unwrap());
        assert!(renderer.chains.values().all(|r| r.policy.ingress.is_empty()), "the new rules kept");
        let mut none = changed.clone();
        none.policies.clear();
        none.endpoints.clear();
        assert_eq!(renderer.section(&none).unwrap(), section(&none).unwrap());
        assert!(renderer.chains.is_empty());
    }

    #[test]
    fn a_relabelled_pod_changes_set_elements_only() {
        let before = section_with(&[("app", "web")]);
        let after = section_with(&[("app", "other")]);
        assert_ne!(before, after);
        assert_eq!(before.chains, after.chains);
        let desired = |s: Section| Desired::from([(USER, s.clone())]);
        let changes = element_changes(&desired(before.clone()), &desired(after.clone())).unwrap();
        assert!(changes.is_some_and(|c| !c.is_empty()), "set elements, not a table rewrite");

        // The follower refills the changed sets of the section it sent instead of rendering again.
        let program = |labels: &[(&str, &str)]| {
            let s = section_with(labels);
            (s, program_with(labels))
        };
        let ((_, old), (_, new)) = (program(&[("app", "web")]), program(&[("app", "other")]));
        let changed = new.sets.iter().filter(|(n, e)| old.sets.get(*n) != Some(e)).map(|(n, _)| n.clone()).collect();
        let mut refilled = before;
        refill_sets(&mut refilled, &new, &changed);
        assert_eq!(refilled, after);
    }
}
