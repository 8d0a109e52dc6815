//! The batch that turns one desired table into another object by object: new sets and chains
//! added, changed chains flushed and filled again, gone ones flushed and deleted, set elements
//! added and deleted — one `nft` transaction, as atomic as a whole write, but it leaves every
//! unchanged chain, rule, counter and set in place and costs `nft` what changed, not the
//! table. A local pod appearing, leaving or relabelled changes its own chains and the
//! dispatch; this writes just those.
//!
//! Whether the result equals a whole write of the new desired state is checked against the
//! kernel by a differential test (`tests/nftables_table.rs`).

use super::render::{
    self, AddressSet, ChainSpec, Desired, PortSet, RenderError, chain_object, collapse, element_list, elements,
    port_elements, port_set_object, rule_object, set_object,
};
use nftables::batch::Batch;
use nftables::schema::{FlushObject, NfCmd, NfListObject, Nftables};
use std::collections::{HashMap, HashSet};

#[derive(Clone, Copy)]
enum SetRef<'d> {
    Address(&'d AddressSet),
    Port(&'d PortSet),
}

/// Every set of `d`, in section order.
fn sets(d: &Desired) -> Vec<(&str, SetRef<'_>)> {
    let mut out = Vec::new();
    for section in d.values() {
        out.extend(section.sets.iter().map(|s| (s.name.as_str(), SetRef::Address(s))));
        out.extend(section.port_sets.iter().map(|s| (s.name.as_str(), SetRef::Port(s))));
    }
    out
}

/// Every chain of `d`, in section order.
fn chains(d: &Desired) -> Vec<&ChainSpec> {
    d.values().flat_map(|s| &s.chains).collect()
}

/// The batch from `old` (in the kernel) to `new`; `None` when a change needs the whole table (a
/// set's type or a base chain's hook changed). An empty batch means nothing changed. Objects
/// are looked up by name in hash maps and written in the sections' order: a table of thousands
/// of chains and sets is compared in well under a millisecond when one pod's chains change.
pub fn update_table(name: &str, old: &Desired, new: &Desired) -> Result<Option<Nftables<'static>>, RenderError> {
    render::check(new)?;
    let (old_sets, new_sets) = (sets(old), sets(new));
    let (old_chains, new_chains) = (chains(old), chains(new));
    let old_set_by_name: HashMap<&str, SetRef> = old_sets.iter().copied().collect();
    let new_set_names: HashSet<&str> = new_sets.iter().map(|(n, _)| *n).collect();
    let old_chain_by_name: HashMap<&str, &ChainSpec> = old_chains.iter().map(|c| (c.name.as_str(), *c)).collect();
    let new_chain_names: HashSet<&str> = new_chains.iter().map(|c| c.name.as_str()).collect();
    let mut batch = Batch::new();
    // New sets with their elements, and new chains, empty: rules below may name them.
    for (set_name, set) in &new_sets {
        match (old_set_by_name.get(set_name), set) {
            (None, SetRef::Address(s)) => {
                batch.add(NfListObject::Set(Box::new(set_object(name, s))));
                if let Some(e) = elements(name, s) {
                    batch.add(NfListObject::Element(e));
                }
            }
            (None, SetRef::Port(s)) => {
                batch.add(NfListObject::Set(Box::new(port_set_object(name, s))));
                if let Some(e) = port_elements(name, s) {
                    batch.add(NfListObject::Element(e));
                }
            }
            (Some(SetRef::Address(a)), SetRef::Address(b)) if a.ipv6 == b.ipv6 => {}
            (Some(SetRef::Port(a)), SetRef::Port(b)) if a.ranges == b.ranges => {}
            (Some(_), _) => return Ok(None),
        }
    }
    for chain in &new_chains {
        match old_chain_by_name.get(chain.name.as_str()) {
            None => batch.add(NfListObject::Chain(chain_object(name, chain))),
            Some(before) if before.base != chain.base => return Ok(None),
            Some(_) => {}
        }
    }
    // Rules: flushed where they change or go, then written where they change or come.
    let changed = |c: &ChainSpec| old_chain_by_name.get(c.name.as_str()).is_some_and(|before| before.rules != c.rules);
    let gone = old_chains.iter().filter(|c| !new_chain_names.contains(c.name.as_str()));
    for chain in new_chains.iter().filter(|c| changed(c)).chain(gone) {
        batch.add_cmd(NfCmd::Flush(FlushObject::Chain(chain_object(name, old_chain_by_name[chain.name.as_str()]))));
    }
    for chain in &new_chains {
        if !old_chain_by_name.contains_key(chain.name.as_str()) || changed(chain) {
            for statements in &chain.rules {
                batch.add(NfListObject::Rule(rule_object(name, &chain.name, statements)));
            }
        }
    }
    // Gone chains and sets, now that no rule names them.
    for chain in &old_chains {
        if !new_chain_names.contains(chain.name.as_str()) {
            batch.delete(NfListObject::Chain(chain_object(name, chain)));
        }
    }
    for (set_name, set) in &old_sets {
        if new_set_names.contains(set_name) {
            continue;
        }
        let object = match set {
            SetRef::Address(s) => set_object(name, s),
            SetRef::Port(s) => port_set_object(name, s),
        };
        batch.delete(NfListObject::Set(Box::new(object)));
    }
    // Elements of the sets both have: those that go, then those that come.
    for (set_name, set) in &new_sets {
        let (Some(SetRef::Address(before)), SetRef::Address(after)) = (old_set_by_name.get(set_name), set) else {
            continue;
        };
        if before.elements == after.elements {
            continue;
        }
        let (before, after) = (collapse(&before.elements), collapse(&after.elements));
        let gone: Vec<_> = before.iter().filter(|n| after.binary_search(n).is_err()).copied().collect();
        let come: Vec<_> = after.iter().filter(|n| before.binary_search(n).is_err()).copied().collect();
        if let Some(e) = element_list(name, set_name, &gone) {
            batch.delete(NfListObject::Element(e));
        }
        if let Some(e) = element_list(name, set_name, &come) {
            batch.add(NfListObject::Element(e));
        }
    }
    Ok(Some(batch.to_nftables()))
}
