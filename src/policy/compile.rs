//! The compiler: model policies, every endpoint of the cluster and this node's endpoints →
//! [`Program`]. Selectors become address sets of the endpoints they select; `nets` sets of
//! networks; a named port one address set per (protocol, number) it stands for, holding the
//! endpoints that give the name that number (so a rule needs no per-endpoint copy).

use super::ir::{EndpointChains, IrRule, Match, PolicyChains, Program, Side, stable_id};
use super::model::{Direction, Endpoint, EndpointSelector, Entity, Namespaces, Policy, Rule, sorted};
use crate::datastore::resources::policy_rule::PortMatch;
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, BTreeSet};

/// A local endpoint: its name (`namespace/pod`) and the host side of its veth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    pub endpoint: String,
    pub interface: String,
}

struct Compiler<'a> {
    endpoints: &'a [Endpoint],
    namespaces: &'a Namespaces,
    sets: BTreeMap<String, Vec<IpNetwork>>,
}

/// Compiles `policies` for the `local` endpoints. Named ports in `notPorts` are refused by
/// the resource check and skipped here.
pub fn compile(policies: &[Policy], endpoints: &[Endpoint], namespaces: &Namespaces, local: &[Local]) -> Program {
    let mut c = Compiler { endpoints, namespaces, sets: BTreeMap::new() };
    let ordered = sorted(policies);
    let chains: Vec<PolicyChains> = ordered
        .iter()
        .map(|p| PolicyChains {
            name: p.name.clone(),
            id: stable_id(&p.name),
            ingress: c.rules(p.rules(Direction::Ingress).unwrap_or_default()),
            egress: c.rules(p.rules(Direction::Egress).unwrap_or_default()),
        })
        .collect();
    let mut out_endpoints = Vec::new();
    for l in local {
        let Some(endpoint) = endpoints.iter().find(|e| e.name == l.endpoint) else { continue };
        let applying = |direction: Direction| {
            let list: Vec<usize> = ordered
                .iter()
                .enumerate()
                .filter(|(_, p)| p.rules(direction).is_some() && p.selects(endpoint, namespaces))
                .map(|(i, _)| i)
                .collect();
            (!list.is_empty()).then_some(list)
        };
        out_endpoints.push(EndpointChains {
            endpoint: endpoint.name.clone(),
            interface: l.interface.clone(),
            addresses: endpoint.addresses.clone(),
            ingress: applying(Direction::Ingress),
            egress: applying(Direction::Egress),
        });
    }
    Program { sets: c.sets, policies: chains, endpoints: out_endpoints }
}

impl Compiler<'_> {
    fn set(&mut self, key: &str, elements: Vec<IpNetwork>) -> String {
        let name = format!("pol-{}", stable_id(key));
        let mut elements = elements;
        elements.sort();
        elements.dedup();
        self.sets.insert(name.clone(), elements);
        name
    }

    fn selector_set(&mut self, selector: &EndpointSelector) -> String {
        let members = self
            .endpoints
            .iter()
            .filter(|e| selector.matches(e, self.namespaces))
            .flat_map(|e| e.addresses.iter().map(|a| IpNetwork::from(*a)))
            .collect();
        self.set(&format!("sel {selector:?}"), members)
    }

    fn nets_set(&mut self, nets: &[IpNetwork]) -> String {
        let mut sorted = nets.to_vec();
        sorted.sort();
        self.set(&format!("nets {sorted:?}"), nets.to_vec())
    }

    /// The (set, port) alternatives a named port stands for with `protocol`.
    fn named_port(&mut self, entity: &Entity, name: &str, protocol: u8) -> Vec<(String, u16)> {
        let mut by_port: BTreeMap<u16, Vec<IpNetwork>> = BTreeMap::new();
        for e in self.endpoints {
            if entity.selector.as_ref().is_some_and(|s| !s.matches(e, self.namespaces)) {
                continue;
            }
            for p in e.ports.iter().filter(|p| p.name == name && p.protocol == protocol) {
                by_port.entry(p.port).or_default().extend(e.addresses.iter().map(|a| IpNetwork::from(*a)));
            }
        }
        by_port
            .into_iter()
            .map(|(port, members)| {
                let key = format!("port {name} {protocol} {port} {:?}", entity.selector);
                (self.set(&key, members), port)
            })
            .collect()
    }

    fn rules(&mut self, rules: &[Rule]) -> Vec<IrRule> {
        let mut out = Vec::new();
        for (origin, rule) in rules.iter().enumerate() {
            let mut common = Vec::new();
            if let Some(v) = rule.ip_version {
                common.push(Match::Family(v));
            }
            if let Some(p) = rule.protocol {
                common.push(Match::Protocol(p));
            }
            if let Some(p) = rule.not_protocol {
                common.push(Match::NotProtocol(p));
            }
            if let Some(i) = rule.icmp {
                common.push(Match::Icmp { icmp_type: i.icmp_type, code: i.code });
            }
            if let Some(i) = rule.not_icmp {
                common.push(Match::NotIcmp { icmp_type: i.icmp_type, code: i.code });
            }
            let sources = self.entity(&rule.source, Side::Source, rule.protocol);
            let destinations = self.entity(&rule.destination, Side::Destination, rule.protocol);
            let mut seen = BTreeSet::new();
            for s in &sources {
                for d in &destinations {
                    let matches: Vec<Match> = common.iter().chain(s).chain(d).cloned().collect();
                    if seen.insert(format!("{matches:?}")) {
                        out.push(IrRule { matches, action: rule.action, origin });
                    }
                }
            }
        }
        out
    }

    /// The alternatives (any may hold) of one side, each a list of matches (all must hold);
    /// none when the side can match nothing (named ports no endpoint has).
    fn entity(&mut self, entity: &Entity, side: Side, protocol: Option<u8>) -> Vec<Vec<Match>> {
        let mut common = Vec::new();
        if !entity.nets.is_empty() {
            common.push(Match::Address { side, set: self.nets_set(&entity.nets), negated: false });
        }
        if !entity.not_nets.is_empty() {
            common.push(Match::Address { side, set: self.nets_set(&entity.not_nets), negated: true });
        }
        if let Some(s) = &entity.selector {
            common.push(Match::Address { side, set: self.selector_set(s), negated: false });
        }
        if let Some(s) = &entity.not_selector {
            common.push(Match::Address { side, set: self.selector_set(s), negated: true });
        }
        let not_ranges: Vec<(u16, u16)> = entity
            .not_ports
            .iter()
            .filter_map(|p| match p {
                PortMatch::Range(lo, hi) => Some((*lo, *hi)),
                PortMatch::Named(_) => None,
            })
            .collect();
        if !not_ranges.is_empty() {
            common.push(Match::Port { side, ranges: not_ranges, negated: true });
        }
        if entity.ports.is_empty() {
            return vec![common];
        }
        let mut alternatives = Vec::new();
        let ranges: Vec<(u16, u16)> = entity
            .ports
            .iter()
            .filter_map(|p| match p {
                PortMatch::Range(lo, hi) => Some((*lo, *hi)),
                PortMatch::Named(_) => None,
            })
            .collect();
        if !ranges.is_empty() {
            let mut alt = common.clone();
            alt.push(Match::Port { side, ranges, negated: false });
            alternatives.push(alt);
        }
        let Some(protocol) = protocol else { return alternatives };
        for name in entity.ports.iter().filter_map(|p| match p {
            PortMatch::Named(n) => Some(n),
            PortMatch::Range(..) => None,
        }) {
            for (set, port) in self.named_port(entity, name, protocol) {
                let mut alt = common.clone();
                alt.push(Match::Address { side, set, negated: false });
                alt.push(Match::Port { side, ranges: vec![(port, port)], negated: false });
                alternatives.push(alt);
            }
        }
        alternatives
    }
}
