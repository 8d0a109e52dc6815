//! The compiler: model policies, every endpoint of the cluster and this node's endpoints →
//! [`Program`]. Selectors become address sets of the endpoints they select; `nets` sets of
//! networks; a named port one address set per (protocol, number) it stands for, holding the
//! endpoints that give the name that number (so a rule needs no per-endpoint copy).

use super::ir::{EndpointChains, IrRule, Match, PolicyChains, Program, Side, stable_id};
use super::matcher::Matcher;
use super::model::{Direction, Endpoint, EndpointSelector, Entity, Namespaces, Policy, Rule, sorted};
use crate::datastore::resources::policy_rule::PortMatch;
use ipnetwork::IpNetwork;
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// An endpoint's labels as selectors see them (`Endpoint::selector_labels`).
pub type LabelMap = BTreeMap<String, String>;

/// A local endpoint: its name (`namespace/pod`) and the host side of its veth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Local {
    pub endpoint: String,
    pub interface: String,
}

/// What a set of the program holds, so that one endpoint's change can be applied to the sets
/// alone (`incremental`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetDef {
    /// The addresses of the endpoints the selector selects.
    Selector(EndpointSelector),
    /// The addresses of the endpoints (those `selector` selects, if any) that give port `name`
    /// of `protocol` the number `port`.
    NamedPort { selector: Option<EndpointSelector>, name: String, protocol: u8, port: u16 },
    /// Fixed networks.
    Nets,
}

impl SetDef {
    /// Whether `endpoint` (whose `selector_labels()` are `labels`) belongs to the set.
    pub fn holds(
        &self,
        endpoint: &Endpoint,
        labels: &BTreeMap<String, String>,
        namespaces: &Namespaces,
        m: &mut Matcher,
    ) -> bool {
        match self {
            SetDef::Selector(s) => m.matches(s, endpoint, labels, namespaces),
            SetDef::NamedPort { selector, name, protocol, port } => {
                endpoint.ports.iter().any(|p| p.name == *name && p.protocol == *protocol && p.port == *port)
                    && selector.as_ref().is_none_or(|s| m.matches(s, endpoint, labels, namespaces))
            }
            SetDef::Nets => false,
        }
    }
}

/// A named port as a rule uses it: the side's selector, the port's name and protocol.
pub type NamedPortUse = (Option<EndpointSelector>, String, u8);

/// What one policy's chains need: the sets it made or shared, and the named ports its rules
/// use (whether or not any endpoint gives them a number).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uses {
    pub sets: BTreeSet<String>,
    pub named_ports: BTreeSet<NamedPortUse>,
}

impl Uses {
    fn extend(&mut self, other: Uses) {
        self.sets.extend(other.sets);
        self.named_ports.extend(other.named_ports);
    }
}

/// What the sets of a program hold, and which named ports its rules use.
#[derive(Clone, Debug, Default)]
pub struct SetIndex {
    pub defs: BTreeMap<String, SetDef>,
    /// Every named port a rule uses: the union of `uses`' named ports.
    pub named_ports: BTreeSet<NamedPortUse>,
    /// By policy name, so that one policy can be compiled again alone (`incremental`).
    pub uses: BTreeMap<String, Uses>,
}

impl SetIndex {
    /// Forgets the sets and named ports no policy uses any more; the names of the sets gone.
    pub fn collect_unused(&mut self) -> Vec<String> {
        let used: BTreeSet<&String> = self.uses.values().flat_map(|u| &u.sets).collect();
        let gone: Vec<String> = self.defs.keys().filter(|n| !used.contains(n)).cloned().collect();
        for name in &gone {
            self.defs.remove(name);
        }
        self.named_ports = self.uses.values().flat_map(|u| u.named_ports.iter().cloned()).collect();
        gone
    }
}

/// Compiles policies one at a time into shared sets: the whole program at once
/// ([`compile_indexed`]) or one changed policy into a program kept up to date
/// (`incremental`).
pub(super) struct Compiler<'a> {
    /// Every endpoint with its `selector_labels()`.
    endpoints: Vec<(&'a Endpoint, &'a LabelMap)>,
    namespaces: &'a Namespaces,
    matcher: &'a mut Matcher,
    sets: &'a mut BTreeMap<String, Vec<IpNetwork>>,
    index: &'a mut SetIndex,
    /// What the policy being compiled uses.
    uses: Uses,
}

/// Compiles `policies` for the `local` endpoints. Named ports in `notPorts` are refused by
/// the resource check and skipped here.
pub fn compile<E: Borrow<Endpoint>>(
    policies: &[Policy],
    endpoints: &[E],
    namespaces: &Namespaces,
    local: &[Local],
) -> Program {
    compile_indexed(policies, endpoints, namespaces, local).0
}

/// [`compile`], with what each set holds.
pub fn compile_indexed<E: Borrow<Endpoint>>(
    policies: &[Policy],
    endpoints: &[E],
    namespaces: &Namespaces,
    local: &[Local],
) -> (Program, SetIndex) {
    let mut matcher = Matcher::default();
    let mut sets = BTreeMap::new();
    let mut index = SetIndex::default();
    let ordered = sorted(policies);
    let endpoints: Vec<&Endpoint> = endpoints.iter().map(Borrow::borrow).collect();
    let labels: Vec<LabelMap> = endpoints.iter().map(|e| e.selector_labels()).collect();
    let mut c = Compiler::new(
        endpoints.iter().copied().zip(&labels).collect(),
        namespaces,
        &mut matcher,
        &mut sets,
        &mut index,
    );
    let chains: Vec<Arc<PolicyChains>> = ordered.iter().map(|p| Arc::new(c.policy(p))).collect();
    let mut out_endpoints = Vec::new();
    for l in local {
        let Some(index) = endpoints.iter().position(|e| e.name == l.endpoint) else { continue };
        let (endpoint, labels) = (endpoints[index], &labels[index]);
        out_endpoints.push(endpoint_chains(&ordered, endpoint, labels, &l.interface, namespaces, &mut matcher));
    }
    (Program { sets, policies: chains, endpoints: out_endpoints }, index)
}

/// The dispatch of local `endpoint` (`labels` its `selector_labels()`) over `ordered` policies.
pub(super) fn endpoint_chains(
    ordered: &[&Policy],
    endpoint: &Endpoint,
    labels: &BTreeMap<String, String>,
    interface: &str,
    namespaces: &Namespaces,
    m: &mut Matcher,
) -> EndpointChains {
    let selected: Vec<bool> = ordered.iter().map(|p| m.selects(p, endpoint, labels, namespaces)).collect();
    let applying = |direction: Direction| {
        let list: Vec<usize> = ordered
            .iter()
            .enumerate()
            .filter(|(i, p)| p.rules(direction).is_some() && selected[*i])
            .map(|(i, _)| i)
            .collect();
        (!list.is_empty()).then_some(list)
    };
    EndpointChains {
        endpoint: endpoint.name.clone(),
        interface: interface.to_string(),
        addresses: endpoint.addresses.clone(),
        ingress: applying(Direction::Ingress),
        egress: applying(Direction::Egress),
    }
}

impl<'a> Compiler<'a> {
    /// A compiler over `endpoints` (every endpoint of the cluster) that adds what it makes to
    /// `sets` and `index`.
    pub(super) fn new(
        endpoints: Vec<(&'a Endpoint, &'a LabelMap)>,
        namespaces: &'a Namespaces,
        matcher: &'a mut Matcher,
        sets: &'a mut BTreeMap<String, Vec<IpNetwork>>,
        index: &'a mut SetIndex,
    ) -> Compiler<'a> {
        Compiler { endpoints, namespaces, matcher, sets, index, uses: Uses::default() }
    }

    /// One policy's chains; what they use goes to the index under its name.
    pub(super) fn policy(&mut self, p: &Policy) -> PolicyChains {
        let chains = PolicyChains {
            name: p.name.clone(),
            id: stable_id(&p.name),
            ingress: self.rules(p.rules(Direction::Ingress).unwrap_or_default()),
            egress: self.rules(p.rules(Direction::Egress).unwrap_or_default()),
        };
        let uses = std::mem::take(&mut self.uses);
        self.index.uses.entry(p.name.clone()).or_default().extend(uses);
        chains
    }

    /// The set named for `key`, filled once (a selector or named port used by several rules
    /// is computed once).
    fn set(&mut self, key: &str, def: SetDef) -> String {
        let name = format!("pol-{}", stable_id(key));
        self.uses.sets.insert(name.clone());
        if self.index.defs.contains_key(&name) {
            return name;
        }
        let Compiler { endpoints, namespaces, matcher, .. } = self;
        let mut elements: Vec<IpNetwork> = match &def {
            SetDef::Nets => Vec::new(),
            _ => endpoints
                .iter()
                .filter(|(e, labels)| def.holds(e, labels, namespaces, matcher))
                .flat_map(|(e, _)| e.addresses.iter().map(|a| IpNetwork::from(*a)))
                .collect(),
        };
        elements.sort();
        elements.dedup();
        self.sets.insert(name.clone(), elements);
        self.index.defs.insert(name.clone(), def);
        name
    }

    fn selector_set(&mut self, selector: &EndpointSelector) -> String {
        self.set(&format!("sel {selector:?}"), SetDef::Selector(selector.clone()))
    }

    fn nets_set(&mut self, nets: &[IpNetwork]) -> String {
        let mut sorted = nets.to_vec();
        sorted.sort();
        let name = self.set(&format!("nets {sorted:?}"), SetDef::Nets);
        sorted.dedup();
        self.sets.insert(name.clone(), sorted);
        name
    }

    /// The (set, port) alternatives a named port stands for with `protocol`.
    fn named_port(&mut self, entity: &Entity, name: &str, protocol: u8) -> Vec<(String, u16)> {
        let used = (entity.selector.clone(), name.to_string(), protocol);
        self.index.named_ports.insert(used.clone());
        self.uses.named_ports.insert(used);
        let mut ports = BTreeSet::new();
        for (e, labels) in &self.endpoints {
            if !e.ports.iter().any(|p| p.name == name && p.protocol == protocol) {
                continue;
            }
            if entity.selector.as_ref().is_some_and(|s| !self.matcher.matches(s, e, labels, self.namespaces)) {
                continue;
            }
            ports.extend(e.ports.iter().filter(|p| p.name == name && p.protocol == protocol).map(|p| p.port));
        }
        ports
            .into_iter()
            .map(|port| {
                let key = format!("port {name} {protocol} {port} {:?}", entity.selector);
                let def =
                    SetDef::NamedPort { selector: entity.selector.clone(), name: name.to_string(), protocol, port };
                (self.set(&key, def), port)
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
