//! The desired table as data, and the `nft` JSON batches that write it:
//! pure, so every batch is testable without a kernel.

use ipnetwork::IpNetwork;
use nftables::batch::Batch;
use nftables::expr::{Expression, NamedExpression, Prefix};
use nftables::schema::{Chain, Element, NfListObject, Nftables, Rule, Set, SetFlag, SetType, SetTypeValue, Table};
use nftables::stmt::Statement;
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// One user's part of the table: its sets and chains. Names are the
/// user's to choose and must not collide with another user's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Section {
    pub sets: Vec<AddressSet>,
    pub chains: Vec<ChainSpec>,
}

/// A named set of IPv4 or IPv6 networks (an interval set: prefixes and
/// single addresses).
#[derive(Clone, Debug, PartialEq)]
pub struct AddressSet {
    pub name: String,
    pub ipv6: bool,
    pub elements: Vec<IpNetwork>,
}

/// A chain and its rules, each rule a list of statements.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainSpec {
    pub name: String,
    /// Present for a chain the kernel calls from a hook.
    pub base: Option<BaseChain>,
    pub rules: Vec<Vec<Statement<'static>>>,
}

/// Where a base chain hooks in.
#[derive(Clone, Debug, PartialEq)]
pub struct BaseChain {
    pub kind: NfChainType,
    pub hook: NfHook,
    pub priority: i32,
    pub policy: NfChainPolicy,
}

/// Every user's section, by user.
pub type Desired = BTreeMap<&'static str, Section>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the nftables {kind} {name:?} is used by both the {first} and the {second} section")]
    DuplicateName { kind: &'static str, name: String, first: &'static str, second: &'static str },
    #[error("the nftables set {set:?} holds {element}, not of its family")]
    WrongFamily { set: String, element: IpNetwork },
}

fn table(name: &str) -> Table<'static> {
    Table { family: NfFamily::INet, name: name.to_string().into(), handle: None }
}

/// Checks that no two sections name the same set or chain and that every
/// element matches its set's family.
pub fn check(desired: &Desired) -> Result<(), RenderError> {
    let mut sets: BTreeMap<&str, &'static str> = BTreeMap::new();
    let mut chains: BTreeMap<&str, &'static str> = BTreeMap::new();
    for (user, section) in desired {
        for set in &section.sets {
            if let Some(first) = sets.insert(&set.name, user) {
                return Err(RenderError::DuplicateName { kind: "set", name: set.name.clone(), first, second: user });
            }
            if let Some(e) = set.elements.iter().find(|e| e.is_ipv6() != set.ipv6) {
                return Err(RenderError::WrongFamily { set: set.name.clone(), element: *e });
            }
        }
        for chain in &section.chains {
            if let Some(first) = chains.insert(&chain.name, user) {
                return Err(RenderError::DuplicateName {
                    kind: "chain",
                    name: chain.name.clone(),
                    first,
                    second: user,
                });
            }
        }
    }
    Ok(())
}

/// The batch that replaces table `name` whole by `desired` in one
/// transaction: created if missing (so the delete cannot fail), deleted
/// with everything in it, created again and filled.
pub fn replace_table(name: &str, desired: &Desired) -> Result<Nftables<'static>, RenderError> {
    check(desired)?;
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table(name)));
    batch.delete(NfListObject::Table(table(name)));
    batch.add(NfListObject::Table(table(name)));
    for section in desired.values() {
        for set in &section.sets {
            batch.add(NfListObject::Set(Box::new(set_object(name, set))));
            if let Some(elements) = elements(name, set) {
                batch.add(NfListObject::Element(elements));
            }
        }
    }
    for section in desired.values() {
        for chain in &section.chains {
            batch.add(NfListObject::Chain(chain_object(name, chain)));
        }
    }
    for section in desired.values() {
        for chain in &section.chains {
            for statements in &chain.rules {
                batch.add(NfListObject::Rule(Rule {
                    family: NfFamily::INet,
                    table: name.to_string().into(),
                    chain: chain.name.clone().into(),
                    expr: statements.clone().into(),
                    handle: None,
                    index: None,
                    comment: None,
                }));
            }
        }
    }
    Ok(batch.to_nftables())
}

/// The batch that turns `old` (in the kernel) into `new` by refilling the
/// sets whose elements changed, when that is the only difference (same
/// chains and rules, same sets by name and family); `None` otherwise. An
/// empty batch means nothing changed.
pub fn update_sets(name: &str, old: &Desired, new: &Desired) -> Result<Option<Nftables<'static>>, RenderError> {
    check(new)?;
    // Everything but the sets' elements.
    type Shape<'d> = Vec<(&'static str, Vec<(&'d str, bool)>, &'d [ChainSpec])>;
    fn shape(d: &Desired) -> Shape<'_> {
        d.iter()
            .map(|(user, s)| (*user, s.sets.iter().map(|set| (set.name.as_str(), set.ipv6)).collect(), &s.chains[..]))
            .collect()
    }
    if shape(old) != shape(new) {
        return Ok(None);
    }
    let mut batch = Batch::new();
    for (old_section, new_section) in old.values().zip(new.values()) {
        for (old_set, new_set) in old_section.sets.iter().zip(&new_section.sets) {
            let (before, after) = (collapse(&old_set.elements), collapse(&new_set.elements));
            if before == after {
                continue;
            }
            // The elements that go, then those that come: the set never holds two that
            // overlap (an interval set refuses that), and one element's change costs one
            // element however large the set.
            let gone: Vec<IpNetwork> = before.iter().filter(|n| after.binary_search(n).is_err()).copied().collect();
            let come: Vec<IpNetwork> = after.iter().filter(|n| before.binary_search(n).is_err()).copied().collect();
            if let Some(elements) = element_list(name, &new_set.name, &gone) {
                batch.delete(NfListObject::Element(elements));
            }
            if let Some(elements) = element_list(name, &new_set.name, &come) {
                batch.add(NfListObject::Element(elements));
            }
        }
    }
    Ok(Some(batch.to_nftables()))
}

/// The batch that deletes table `name` if it exists (and nothing else).
pub fn delete_table(name: &str) -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table(name)));
    batch.delete(NfListObject::Table(table(name)));
    batch.to_nftables()
}

/// Whether a listing of the table (`nft -j list table`) has the chains and
/// sets of `desired`, no others, each chain with its number of rules and
/// each set with its number of elements: a cheap check that what was read
/// back right after a write is that write and not already someone's change.
pub fn shape_matches(desired: &Desired, listing: &serde_json::Value) -> bool {
    let objects = listing.get("nftables").and_then(|o| o.as_array()).map(Vec::as_slice).unwrap_or_default();
    fn of_kind<'v>(
        objects: &'v [serde_json::Value],
        kind: &'static str,
    ) -> impl Iterator<Item = &'v serde_json::Value> {
        objects.iter().filter_map(move |o| o.get(kind))
    }
    let mut want_chains: BTreeMap<&str, usize> = BTreeMap::new();
    let mut want_sets: BTreeMap<&str, usize> = BTreeMap::new();
    for section in desired.values() {
        for chain in &section.chains {
            want_chains.insert(&chain.name, chain.rules.len());
        }
        for set in &section.sets {
            want_sets.insert(&set.name, collapse(&set.elements).len());
        }
    }
    let mut chains: BTreeMap<&str, usize> =
        of_kind(objects, "chain").filter_map(|c| c.get("name")?.as_str()).map(|name| (name, 0)).collect();
    for rule in of_kind(objects, "rule") {
        if let Some(n) = rule.get("chain").and_then(|c| c.as_str()).and_then(|c| chains.get_mut(c)) {
            *n += 1;
        }
    }
    let sets: BTreeMap<&str, usize> = of_kind(objects, "set")
        .filter_map(|s| Some((s.get("name")?.as_str()?, s.get("elem").and_then(|e| e.as_array()).map_or(0, Vec::len))))
        .collect();
    chains == want_chains && sets == want_sets
}

/// True when a batch writes nothing.
pub fn is_empty(batch: &Nftables) -> bool {
    batch.objects.is_empty()
}

fn set_object(table: &str, set: &AddressSet) -> Set<'static> {
    let kind = if set.ipv6 { SetType::Ipv6Addr } else { SetType::Ipv4Addr };
    Set {
        family: NfFamily::INet,
        table: table.to_string().into(),
        name: set.name.clone().into(),
        handle: None,
        set_type: SetTypeValue::Single(kind),
        policy: None,
        flags: Some(HashSet::from([SetFlag::Interval])),
        elem: None,
        timeout: None,
        gc_interval: None,
        size: None,
        comment: None,
    }
}

fn chain_object(table: &str, chain: &ChainSpec) -> Chain<'static> {
    let base = chain.base.as_ref();
    Chain {
        family: NfFamily::INet,
        table: table.to_string().into(),
        name: chain.name.clone().into(),
        newname: None,
        handle: None,
        _type: base.map(|b| b.kind),
        hook: base.map(|b| b.hook),
        prio: base.map(|b| b.priority),
        dev: None,
        policy: base.map(|b| b.policy),
    }
}

/// The set's elements for an `add element`, `None` when there are none
/// (nft refuses an empty element list).
fn elements(table: &str, set: &AddressSet) -> Option<Element<'static>> {
    element_list(table, &set.name, &collapse(&set.elements))
}

/// `networks` (collapsed) as the elements of set `set`, `None` when there are none.
fn element_list(table: &str, set: &str, networks: &[IpNetwork]) -> Option<Element<'static>> {
    let elem: Vec<Expression<'static>> = networks.iter().copied().map(network).collect();
    (!elem.is_empty()).then(|| Element {
        family: NfFamily::INet,
        table: table.to_string().into(),
        name: set.to_string().into(),
        elem: elem.into(),
    })
}

/// A network as an element: a single address for a host prefix, else a prefix.
fn network(n: IpNetwork) -> Expression<'static> {
    let host = n.prefix() == if n.is_ipv4() { 32 } else { 128 };
    let addr = Expression::String(n.network().to_string().into());
    if host {
        addr
    } else {
        Expression::Named(NamedExpression::Prefix(Prefix { addr: Box::new(addr), len: u32::from(n.prefix()) }))
    }
}

/// The networks masked, sorted, without duplicates and without those
/// inside another: an interval set refuses overlapping elements.
pub fn collapse(networks: &[IpNetwork]) -> Vec<IpNetwork> {
    let masked: BTreeSet<IpNetwork> =
        networks.iter().filter_map(|n| IpNetwork::new(n.network(), n.prefix()).ok()).collect();
    masked
        .iter()
        .filter(|n| !masked.iter().any(|outer| outer != *n && outer.prefix() < n.prefix() && outer.contains(n.ip())))
        .copied()
        .collect()
}

/// `ip saddr` / `ip6 daddr` …: a field of the network header of the family.
pub fn address_field(ipv6: bool, field: &'static str) -> Expression<'static> {
    use nftables::expr::{Payload, PayloadField};
    let protocol = if ipv6 { "ip6" } else { "ip" };
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(PayloadField {
        protocol: protocol.into(),
        field: field.into(),
    })))
}

/// A reference to a named set of the table (`@name`).
pub fn set_ref(name: &str) -> Expression<'static> {
    Expression::String(format!("@{name}").into())
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
