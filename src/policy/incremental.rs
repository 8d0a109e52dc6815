//! The compiled program kept up to date one endpoint or one policy at a time. A pod
//! appearing, leaving or relabelled changes the members of the sets whose definition it
//! meets, and, for a pod of this node, its own dispatch; rules are compiled again only when a
//! change alters them (a named port gaining a number no pod gave it, or losing its last pod).
//! A policy added, changed or removed compiles that policy alone: its chains, the sets it
//! makes, the sets no policy uses any more dropped, and the local endpoints' dispatch.
//! [`compile`] of [`Incremental::inputs`] is the reference: `incremental_tests` checks that
//! both agree after any sequence of changes.

use super::compile::{Compiler, LabelMap, Local, SetDef, SetIndex, compile_indexed, endpoint_chains};
use super::ir::Program;
use super::matcher::Matcher;
use super::model::{Endpoint, Namespaces, Policy, sorted};
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// An endpoint and, for one of this node's, the host side of its veth. The endpoint is shared:
/// the compiler's inputs are handed on after each pod's change (for `policy trace`), and
/// copying ten thousand endpoints for that cost more than programming the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub endpoint: Arc<Endpoint>,
    pub interface: Option<String>,
}

/// What one update changed in the program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Sets whose elements changed.
    pub sets: BTreeSet<String>,
    /// The local endpoints' dispatch changed (chains, not only set elements).
    pub endpoints: bool,
    /// Everything was compiled again (rules may differ).
    pub recompiled: bool,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty() && !self.endpoints && !self.recompiled
    }
}

/// Policies, namespaces and endpoints (by a unique key: the IPAM handle), and their program.
pub struct Incremental {
    policies: Vec<Policy>,
    namespaces: Namespaces,
    entries: BTreeMap<String, Entry>,
    /// Each entry's `selector_labels()`, under the same keys.
    labels: BTreeMap<String, LabelMap>,
    program: Program,
    index: SetIndex,
    matcher: Matcher,
}

impl Incremental {
    /// Compiles everything.
    pub fn new(policies: Vec<Policy>, namespaces: Namespaces, entries: BTreeMap<String, Entry>) -> Incremental {
        let labels = entries.iter().map(|(k, e)| (k.clone(), e.endpoint.selector_labels())).collect();
        let mut me = Incremental {
            policies,
            namespaces,
            entries,
            labels,
            program: Program::default(),
            index: SetIndex::default(),
            matcher: Matcher::default(),
        };
        me.recompile();
        me
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    pub fn namespaces(&self) -> &Namespaces {
        &self.namespaces
    }

    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    /// The compiler's inputs: endpoints with this node's first (a lookup of a local pod by
    /// name finds this node's even when another node has a pod of the same name), each group
    /// in key order; and the local endpoints.
    pub fn inputs(&self) -> (Vec<Arc<Endpoint>>, Vec<Local>) {
        let local = self.entries.values().filter(|e| e.interface.is_some());
        let remote = self.entries.values().filter(|e| e.interface.is_none());
        let endpoints = local.clone().chain(remote).map(|e| e.endpoint.clone()).collect();
        let locals = local
            .map(|e| Local { endpoint: e.endpoint.name.clone(), interface: e.interface.clone().unwrap_or_default() })
            .collect();
        (endpoints, locals)
    }

    fn recompile(&mut self) {
        let (endpoints, local) = self.inputs();
        (self.program, self.index) = compile_indexed(&self.policies, &endpoints, &self.namespaces, &local);
        self.matcher = Matcher::default();
    }

    /// Replaces the endpoint under `key` (`None` removes it).
    pub fn update(&mut self, key: &str, entry: Option<Entry>) -> Change {
        let old = match &entry {
            Some(e) => self.entries.insert(key.to_string(), e.clone()),
            None => self.entries.remove(key),
        };
        if old == entry {
            return Change::default();
        }
        let mut change = Change::default();
        let new_labels = entry.as_ref().map(|e| e.endpoint.selector_labels());
        let old_labels = match &new_labels {
            Some(l) => self.labels.insert(key.to_string(), l.clone()),
            None => self.labels.remove(key),
        };
        // A named port given a number no endpoint gave it needs a rule of its own.
        if let (Some(new), Some(labels)) = (&entry, &new_labels)
            && self.new_named_port(&new.endpoint, labels)
        {
            self.recompile();
            return Change { recompiled: true, ..Change::default() };
        }
        // Addresses the old endpoint shares with another one stay where that one is a member.
        let old_addresses: Vec<IpNetwork> =
            old.iter().flat_map(|o| o.endpoint.addresses.iter().map(|a| IpNetwork::from(*a))).collect();
        let sharing: Vec<(&Entry, BTreeMap<String, String>)> = self
            .entries
            .iter()
            .filter(|(k, e)| {
                k.as_str() != key && e.endpoint.addresses.iter().any(|a| old_addresses.contains(&IpNetwork::from(*a)))
            })
            .map(|(_, e)| (e, e.endpoint.selector_labels()))
            .collect();
        let mut emptied_named_port = false;
        for (name, def) in &self.index.defs {
            let was = match (&old, &old_labels) {
                (Some(o), Some(l)) => def.holds(&o.endpoint, l, &self.namespaces, &mut self.matcher),
                _ => false,
            };
            let is = match (&entry, &new_labels) {
                (Some(n), Some(l)) => def.holds(&n.endpoint, l, &self.namespaces, &mut self.matcher),
                _ => false,
            };
            let addresses_changed =
                old.as_ref().map(|o| &o.endpoint.addresses) != entry.as_ref().map(|n| &n.endpoint.addresses);
            if !was && !is || was && is && !addresses_changed {
                continue;
            }
            let Some(elements) = self.program.sets.get_mut(name) else { continue };
            let before = elements.clone();
            if was && let Some(o) = &old {
                for a in &o.endpoint.addresses {
                    let kept = sharing.iter().any(|(s, l)| {
                        s.endpoint.addresses.contains(a)
                            && def.holds(&s.endpoint, l, &self.namespaces, &mut self.matcher)
                    });
                    if !kept && let Ok(i) = elements.binary_search(&IpNetwork::from(*a)) {
                        elements.remove(i);
                    }
                }
            }
            if is && let Some(n) = &entry {
                for a in &n.endpoint.addresses {
                    if let Err(i) = elements.binary_search(&IpNetwork::from(*a)) {
                        elements.insert(i, IpNetwork::from(*a));
                    }
                }
            }
            if *elements != before {
                // A named port's last endpoint gone: its rule goes too.
                if elements.is_empty() && matches!(def, SetDef::NamedPort { .. }) {
                    emptied_named_port = true;
                    break;
                }
                change.sets.insert(name.clone());
            }
        }
        if emptied_named_port {
            self.recompile();
            return Change { recompiled: true, ..Change::default() };
        }
        if old.as_ref().is_some_and(|o| o.interface.is_some()) || entry.as_ref().is_some_and(|n| n.interface.is_some())
        {
            let names: Vec<String> = old.iter().chain(&entry).map(|e| e.endpoint.name.clone()).collect();
            change.endpoints = self.redispatch(key, &names);
        }
        change
    }

    /// Replaces the policy named `name` (`None` removes it). Only that policy is compiled;
    /// the change is `recompiled` (its rules and the dispatch may differ).
    pub fn set_policy(&mut self, name: &str, policy: Option<Policy>) -> Change {
        let held: Vec<usize> =
            self.policies.iter().enumerate().filter(|(_, p)| p.name == name).map(|(i, _)| i).collect();
        match (held.as_slice(), &policy) {
            ([], None) => return Change::default(),
            ([i], Some(p)) if self.policies[*i] == *p => return Change::default(),
            _ => {}
        }
        for i in held.iter().rev() {
            self.policies.remove(*i);
        }
        self.program.policies.retain(|c| c.name != name);
        self.index.uses.remove(name);
        if let Some(p) = policy {
            if p.name != name || held.len() > 1 {
                // Not one policy under one name: the whole program is the only safe answer.
                self.policies.push(p);
                self.recompile();
                return Change { recompiled: true, ..Change::default() };
            }
            let endpoints = self.entries.values().map(|e| &*e.endpoint).zip(self.labels.values()).collect();
            let mut compiler =
                Compiler::new(endpoints, &self.namespaces, &mut self.matcher, &mut self.program.sets, &mut self.index);
            let chains = compiler.policy(&p);
            self.policies.push(p);
            let at = sorted(&self.policies).iter().position(|q| q.name == name).unwrap_or_default();
            let policies = &mut self.program.policies;
            policies.insert(at.min(policies.len()), std::sync::Arc::new(chains));
        }
        for gone in self.index.collect_unused() {
            self.program.sets.remove(&gone);
        }
        self.redispatch_all();
        Change { recompiled: true, ..Change::default() }
    }

    /// Replaces every namespace's labels; everything is compiled again if they changed.
    pub fn set_namespaces(&mut self, namespaces: Namespaces) -> Change {
        if namespaces == self.namespaces {
            return Change::default();
        }
        self.namespaces = namespaces;
        self.recompile();
        Change { recompiled: true, ..Change::default() }
    }

    /// Every local endpoint's dispatch, as the compiler makes it: a local pod is found by
    /// name, the first local entry of that name.
    fn redispatch_all(&mut self) {
        let ordered = sorted(&self.policies);
        let locals: Vec<(&String, &Entry)> = self.entries.iter().filter(|(_, e)| e.interface.is_some()).collect();
        let mut out = Vec::with_capacity(locals.len());
        for (_, l) in &locals {
            let Some((first_key, first)) = locals.iter().find(|(_, e)| e.endpoint.name == l.endpoint.name) else {
                continue;
            };
            let Some(labels) = self.labels.get(*first_key) else { continue };
            let interface = l.interface.as_deref().unwrap_or_default();
            out.push(endpoint_chains(
                &ordered,
                &first.endpoint,
                labels,
                interface,
                &self.namespaces,
                &mut self.matcher,
            ));
        }
        self.program.endpoints = out;
    }

    /// Whether `endpoint` gives a named port that a rule uses a number for which there is no
    /// set yet.
    fn new_named_port(&mut self, endpoint: &Endpoint, labels: &BTreeMap<String, String>) -> bool {
        let SetIndex { defs, named_ports, .. } = &self.index;
        named_ports.iter().any(|(selector, name, protocol)| {
            let has_set = |port: u16| {
                defs.values().any(|d| {
                    matches!(d, SetDef::NamedPort { selector: s, name: n, protocol: p, port: q }
                        if s == selector && n == name && p == protocol && *q == port)
                })
            };
            endpoint.ports.iter().any(|p| p.name == *name && p.protocol == *protocol && !has_set(p.port))
                && selector.as_ref().is_none_or(|s| self.matcher.matches(s, endpoint, labels, &self.namespaces))
        })
    }

    /// Computes the local endpoints' dispatch again after the endpoint under `key`, named
    /// `names` before and after, changed; whether it changed. The others' dispatch is kept,
    /// except where a name or interface is shared: the compiler finds a local pod by name, so
    /// two of the same name both get the first one's.
    fn redispatch(&mut self, key: &str, names: &[String]) -> bool {
        let ordered = sorted(&self.policies);
        // This node's entries in key order, as the compiler's local endpoints are.
        let locals: Vec<(&String, &Entry)> = self.entries.iter().filter(|(_, e)| e.interface.is_some()).collect();
        let interface_of = |e: &Entry| e.interface.clone().unwrap_or_default();
        let mut interfaces: BTreeMap<String, usize> = BTreeMap::new();
        for c in self
            .program
            .endpoints
            .iter()
            .map(|c| c.interface.clone())
            .chain(locals.iter().map(|(_, e)| interface_of(e)))
        {
            *interfaces.entry(c).or_default() += 1;
        }
        let kept: BTreeMap<&str, &super::ir::EndpointChains> =
            self.program.endpoints.iter().map(|c| (c.interface.as_str(), c)).collect();
        let mut out = Vec::new();
        for (k, l) in &locals {
            let (interface, name) = (interface_of(l), &l.endpoint.name);
            let unique = interfaces.get(&interface) == Some(&2);
            if k.as_str() != key
                && unique
                && !names.contains(name)
                && let Some(chains) = kept.get(interface.as_str())
                && chains.endpoint == *name
            {
                out.push((*chains).clone());
                continue;
            }
            // The compiler finds a local pod by name: the first local entry of that name.
            let Some((first_key, first)) = locals.iter().find(|(_, e)| e.endpoint.name == *name) else { continue };
            let Some(labels) = self.labels.get(*first_key) else { continue };
            out.push(endpoint_chains(
                &ordered,
                &first.endpoint,
                labels,
                &interface,
                &self.namespaces,
                &mut self.matcher,
            ));
        }
        let changed = out != self.program.endpoints;
        self.program.endpoints = out;
        changed
    }
}
