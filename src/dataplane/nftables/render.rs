//! The desired table as data, and the `nft` JSON batches that write it:
//! pure, so every batch is testable without a kernel.

use super::elements::ElementChange;
use ipnetwork::IpNetwork;
use nftables::batch::Batch;
use nftables::expr::{Expression, NamedExpression, Prefix};
use nftables::schema::{Chain, Element, NfListObject, Nftables, Rule, Set, SetFlag, SetType, SetTypeValue, Table};
use nftables::stmt::Statement;
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// One user's part of the table: its sets and chains. Names are the
/// user's to choose and must not collide with another user's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Section {
    pub sets: Vec<AddressSet>,
    /// Port sets the rules name (they change only with the rules).
    pub port_sets: Vec<PortSet>,
    pub chains: Chains,
}

/// A value shared by the copies of a section the users and the owner keep, compared by
/// pointer first: a pod's change touches a few sets among thousands, and copying and comparing
/// every rule and every set's networks was most of the cost of writing it.
#[derive(Clone, Debug, Default)]
pub struct Shared<T>(Arc<T>);

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Shared<T>) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Shared<T> {
    fn from(value: T) -> Shared<T> {
        Shared(Arc::new(value))
    }
}

impl<T: Clone> Shared<T> {
    /// The value to change (copied first if another copy shares it).
    pub fn make_mut(&mut self) -> &mut T {
        Arc::make_mut(&mut self.0)
    }
}

impl<'a, T> IntoIterator for &'a Shared<Vec<T>> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T> FromIterator<T> for Shared<Vec<T>> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Shared<Vec<T>> {
        Shared(Arc::new(iter.into_iter().collect()))
    }
}

/// A section's chains.
pub type Chains = Shared<Vec<ChainSpec>>;

/// A named set of ports (an interval set of `inet_service`): rules that match several ports
/// name one, shared by every rule with the same ports, instead of each carrying an anonymous
/// set. `nft` handles each set of a table one by one and each anonymous set is one, so
/// thousands of them make every run of `nft` take seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct PortSet {
    pub name: String,
    /// Sorted, disjoint, inclusive.
    pub ranges: Vec<(u16, u16)>,
}

/// A named set of IPv4 or IPv6 networks (an interval set: prefixes and
/// single addresses).
#[derive(Clone, Debug, PartialEq)]
pub struct AddressSet {
    pub name: String,
    pub ipv6: bool,
    pub elements: Networks,
}

/// A set's networks.
pub type Networks = Shared<Vec<IpNetwork>>;

/// A chain and its rules, each rule a list of statements.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainSpec {
    pub name: String,
    /// Present for a chain the kernel calls from a hook.
    pub base: Option<BaseChain>,
    pub rules: Rules,
}

/// A chain's rules, shared: a policy chain rendered once is handed to every section after it
/// (and compared with the last one written) without copying its statements.
pub type Rules = Shared<Vec<Vec<Statement<'static>>>>;

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

pub(super) fn table(name: &str) -> Table<'static> {
    Table { family: NfFamily::INet, name: name.to_string().into(), handle: None }
}

/// Checks that no two sections name the same set or chain and that every
/// element matches its set's family.
pub fn check(desired: &Desired) -> Result<(), RenderError> {
    let mut sets: HashMap<&str, &'static str> = HashMap::new();
    let mut chains: HashMap<&str, &'static str> = HashMap::new();
    for (user, section) in desired {
        for name in section.port_sets.iter().map(|p| &p.name) {
            if let Some(first) = sets.insert(name, user) {
                return Err(RenderError::DuplicateName { kind: "set", name: name.clone(), first, second: user });
            }
        }
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
        for set in &section.port_sets {
            batch.add(NfListObject::Set(Box::new(port_set_object(name, set))));
            if let Some(elements) = port_elements(name, set) {
                batch.add(NfListObject::Element(elements));
            }
        }
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
                batch.add(NfListObject::Rule(rule_object(name, &chain.name, statements)));
            }
        }
    }
    Ok(batch.to_nftables())
}

/// The element changes that turn `old` (in the kernel) into `new`, when the address sets'
/// elements are the only difference (same chains and rules, same sets by name and family, same
/// port sets); `None` otherwise. Per set the networks that go and those that come, so one
/// pod's change costs one element however large the set.
pub fn element_changes(old: &Desired, new: &Desired) -> Result<Option<Vec<ElementChange>>, RenderError> {
    check(new)?;
    // Everything but the address sets' elements.
    type Shape<'d> = Vec<(&'static str, Vec<(&'d str, bool)>, &'d [PortSet], &'d Chains)>;
    fn shape(d: &Desired) -> Shape<'_> {
        d.iter()
            .map(|(user, s)| {
                let sets = s.sets.iter().map(|set| (set.name.as_str(), set.ipv6)).collect();
                (*user, sets, &s.port_sets[..], &s.chains)
            })
            .collect()
    }
    if shape(old) != shape(new) {
        return Ok(None);
    }
    let mut changes = Vec::new();
    for (old_section, new_section) in old.values().zip(new.values()) {
        for (old_set, new_set) in old_section.sets.iter().zip(&new_section.sets) {
            if old_set.elements == new_set.elements {
                continue;
            }
            let (before, after) = (collapse(&old_set.elements), collapse(&new_set.elements));
            if before == after {
                continue;
            }
            let gone = before.iter().filter(|n| after.binary_search(n).is_err()).copied().collect();
            let come = after.iter().filter(|n| before.binary_search(n).is_err()).copied().collect();
            changes.push(ElementChange { set: new_set.name.clone(), gone, come });
        }
    }
    Ok(Some(changes))
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
/// each set with the elements desired: a cheap check that what was read
/// back after a write is that write and not already someone's change.
pub fn shape_matches(desired: &Desired, listing: &serde_json::Value) -> bool {
    structure_matches(desired, listing) && listed_elements(listing) == desired_elements(desired)
}

/// [`shape_matches`] but for the sets' elements: the chains with their number of rules and
/// the sets by name.
pub fn structure_matches(desired: &Desired, listing: &serde_json::Value) -> bool {
    let objects = listing.get("nftables").and_then(|o| o.as_array()).map(Vec::as_slice).unwrap_or_default();
    fn of_kind<'v>(
        objects: &'v [serde_json::Value],
        kind: &'static str,
    ) -> impl Iterator<Item = &'v serde_json::Value> {
        objects.iter().filter_map(move |o| o.get(kind))
    }
    let mut want_chains: BTreeMap<&str, usize> = BTreeMap::new();
    let mut want_sets: BTreeSet<&str> = BTreeSet::new();
    for section in desired.values() {
        for chain in &section.chains {
            want_chains.insert(&chain.name, chain.rules.len());
        }
        want_sets.extend(section.sets.iter().map(|s| s.name.as_str()));
        want_sets.extend(section.port_sets.iter().map(|s| s.name.as_str()));
    }
    let mut chains: BTreeMap<&str, usize> =
        of_kind(objects, "chain").filter_map(|c| c.get("name")?.as_str()).map(|name| (name, 0)).collect();
    for rule in of_kind(objects, "rule") {
        if let Some(n) = rule.get("chain").and_then(|c| c.as_str()).and_then(|c| chains.get_mut(c)) {
            *n += 1;
        }
    }
    let sets: BTreeSet<&str> = of_kind(objects, "set").filter_map(|s| s.get("name")?.as_str()).collect();
    chains == want_chains && sets == want_sets
}

/// Values as sorted, merged inclusive ranges: how a set's content compares whatever the
/// elements it was written or listed as (addresses, prefixes, ranges, ports).
type Ranges = Vec<(u128, u128)>;

fn merged(mut ranges: Ranges) -> Ranges {
    ranges.sort_unstable();
    let mut out: Ranges = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// A network's first and last address as numbers (IPv4 in the low 32 bits).
pub(super) fn network_range(n: &IpNetwork) -> (u128, u128) {
    match n {
        IpNetwork::V4(n) => (u128::from(u32::from(n.network())), u128::from(u32::from(n.broadcast()))),
        IpNetwork::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// Every set's content as `desired` has it, by set name.
pub fn desired_elements(desired: &Desired) -> BTreeMap<String, Ranges> {
    let mut out = BTreeMap::new();
    for section in desired.values() {
        for set in &section.sets {
            out.insert(set.name.clone(), merged(set.elements.iter().map(network_range).collect()));
        }
        for set in &section.port_sets {
            out.insert(
                set.name.clone(),
                merged(set.ranges.iter().map(|(a, b)| (u128::from(*a), u128::from(*b))).collect()),
            );
        }
    }
    out
}

/// Every set's content as a listing shows it, by set name; an element it cannot read makes
/// the set compare unequal.
pub fn listed_elements(listing: &serde_json::Value) -> BTreeMap<String, Ranges> {
    use serde_json::Value;
    fn value(v: &Value) -> Option<u128> {
        match v {
            Value::Number(n) => n.as_u64().map(u128::from),
            Value::String(s) => match s.parse::<std::net::IpAddr>().ok()? {
                std::net::IpAddr::V4(a) => Some(u128::from(u32::from(a))),
                std::net::IpAddr::V6(a) => Some(u128::from(a)),
            },
            _ => None,
        }
    }
    fn element(v: &Value) -> Option<(u128, u128)> {
        if let Some(p) = v.get("prefix") {
            let addr: std::net::IpAddr = p.get("addr")?.as_str()?.parse().ok()?;
            let len = u8::try_from(p.get("len")?.as_u64()?).ok()?;
            return Some(network_range(&IpNetwork::new(addr, len).ok()?));
        }
        if let Some(r) = v.get("range").and_then(Value::as_array) {
            return Some((value(r.first()?)?, value(r.get(1)?)?));
        }
        if let Some(inner) = v.get("elem").and_then(|e| e.get("val")) {
            return element(inner);
        }
        value(v).map(|x| (x, x))
    }
    let objects = listing.get("nftables").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    objects
        .iter()
        .filter_map(|o| o.get("set"))
        .filter_map(|s| {
            let name = s.get("name")?.as_str()?.to_string();
            let elems = s.get("elem").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            // An unreadable element: a range no desired set has, so the sets differ.
            let ranges = elems.iter().map(|e| element(e).unwrap_or((u128::MAX, 0))).collect();
            Some((name, merged(ranges)))
        })
        .collect()
}

/// A listing without its sets' elements (normalized as [`super::command::normalize`]): the
/// table's rules, chains and sets, which only a whole write changes.
pub fn skeleton(listing: &serde_json::Value) -> serde_json::Value {
    let mut normal = super::command::normalize(listing);
    if let Some(objects) = normal.as_array_mut() {
        for set in objects.iter_mut().filter_map(|o| o.get_mut("set")).filter_map(|s| s.as_object_mut()) {
            set.remove("elem");
        }
    }
    normal
}

/// True when a batch writes nothing.
pub fn is_empty(batch: &Nftables) -> bool {
    batch.objects.is_empty()
}

pub(super) fn set_object(table: &str, set: &AddressSet) -> Set<'static> {
    interval_set(table, &set.name, if set.ipv6 { SetType::Ipv6Addr } else { SetType::Ipv4Addr })
}

pub(super) fn port_set_object(table: &str, set: &PortSet) -> Set<'static> {
    interval_set(table, &set.name, SetType::InetService)
}

/// A named interval set of `kind` (every set of the table is one).
fn interval_set(table: &str, name: &str, kind: SetType) -> Set<'static> {
    Set {
        family: NfFamily::INet,
        table: table.to_string().into(),
        name: name.to_string().into(),
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

pub(super) fn port_elements(table: &str, set: &PortSet) -> Option<Element<'static>> {
    let elem: Vec<Expression<'static>> = set.ranges.iter().map(|&(lo, hi)| port_range(lo, hi)).collect();
    (!elem.is_empty()).then(|| Element {
        family: NfFamily::INet,
        table: table.to_string().into(),
        name: set.name.clone().into(),
        elem: elem.into(),
    })
}

/// A port, or an inclusive range of ports.
pub fn port_range(lo: u16, hi: u16) -> Expression<'static> {
    if lo == hi {
        Expression::Number(u32::from(lo))
    } else {
        Expression::Range(Box::new(nftables::expr::Range {
            range: [Expression::Number(u32::from(lo)), Expression::Number(u32::from(hi))],
        }))
    }
}

pub(super) fn chain_object(table: &str, chain: &ChainSpec) -> Chain<'static> {
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

pub(super) fn rule_object(table: &str, chain: &str, statements: &[Statement<'static>]) -> Rule<'static> {
    Rule {
        family: NfFamily::INet,
        table: table.to_string().into(),
        chain: chain.to_string().into(),
        expr: statements.to_vec().into(),
        handle: None,
        index: None,
        comment: None,
    }
}

/// The set's elements for an `add element`, `None` when there are none
/// (nft refuses an empty element list).
pub(super) fn elements(table: &str, set: &AddressSet) -> Option<Element<'static>> {
    element_list(table, &set.name, &collapse(&set.elements))
}

/// `networks` (collapsed) as the elements of set `set`, `None` when there are none.
pub(super) fn element_list(table: &str, set: &str, networks: &[IpNetwork]) -> Option<Element<'static>> {
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
/// inside another: an interval set refuses overlapping elements. Sorted by
/// address and then prefix length, a network inside another comes after it
/// and before any network past it, so one pass keeps the outermost.
pub fn collapse(networks: &[IpNetwork]) -> Vec<IpNetwork> {
    let masked: BTreeSet<IpNetwork> =
        networks.iter().filter_map(|n| IpNetwork::new(n.network(), n.prefix()).ok()).collect();
    let mut out = Vec::with_capacity(masked.len());
    let mut covered: Option<(bool, u128)> = None;
    for n in masked {
        let (start, end) = network_range(&n);
        if covered.is_some_and(|(ipv6, last)| ipv6 == n.is_ipv6() && start <= last) {
            continue;
        }
        out.push(n);
        covered = Some((n.is_ipv6(), end));
    }
    out
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
