//! Every pod's policy endpoint, read from the IPAM blocks' allocations and kept per block, so
//! that one block's change yields the pods it touched (the follower then updates the compiled
//! program for those alone) and a full read gives the same endpoints in the same order.

use super::endpoint_attrs;
use super::workloads::{ATTR_HOST_INTERFACE, addresses_of};
use crate::datastore::Revision;
use crate::datastore::resources::IpamBlock;
use crate::ipam::routes::NODE_ATTRIBUTE;
use crate::policy::incremental::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// A block's workload allocations: handle, address, attributes.
type Allocations = Vec<(String, IpAddr, BTreeMap<String, String>)>;

pub struct Pods {
    node: String,
    /// By block name: the revision read and the allocations.
    blocks: BTreeMap<String, (Revision, Allocations)>,
}

fn allocations(block: &IpamBlock) -> Allocations {
    addresses_of(block, |_| true).into_iter().filter(|(_, _, attrs)| attrs.contains_key(ATTR_HOST_INTERFACE)).collect()
}

impl Pods {
    pub fn new(node: &str) -> Pods {
        Pods { node: node.to_string(), blocks: BTreeMap::new() }
    }

    /// Sets block `name` as of `revision` (`None`: deleted); the handles whose allocations it
    /// touched. A change older than what is held is ignored (a watch event replayed after a
    /// listing that already had it).
    pub fn set_block(&mut self, name: &str, revision: Revision, block: Option<&IpamBlock>) -> BTreeSet<String> {
        if self.blocks.get(name).is_some_and(|(held, _)| *held >= revision) {
            return BTreeSet::new();
        }
        let new = block.map(allocations).unwrap_or_default();
        let old = match block {
            Some(_) => self.blocks.insert(name.to_string(), (revision, new.clone())),
            None => self.blocks.remove(name),
        };
        let old = old.map(|(_, a)| a).unwrap_or_default();
        if old == new {
            return BTreeSet::new();
        }
        old.iter().chain(&new).map(|(handle, _, _)| handle.clone()).collect()
    }

    /// The endpoint of `handle` (`None` when no block holds it): its addresses from every block
    /// in name order, its identity from the first.
    pub fn entry(&self, handle: &str) -> Option<Entry> {
        let mut addresses = Vec::new();
        let mut first = None;
        for (_, allocations) in self.blocks.values() {
            for (h, ip, attrs) in allocations {
                if h == handle {
                    addresses.push(*ip);
                    first.get_or_insert(attrs);
                }
            }
        }
        first.map(|attrs| self.to_entry(addresses, attrs))
    }

    fn to_entry(&self, addresses: Vec<IpAddr>, attrs: &BTreeMap<String, String>) -> Entry {
        let endpoint = endpoint_attrs::endpoint(addresses, attrs);
        let local = attrs.get(NODE_ATTRIBUTE).map(String::as_str) == Some(self.node.as_str());
        Entry { endpoint: endpoint.into(), interface: local.then(|| attrs[ATTR_HOST_INTERFACE].clone()) }
    }

    /// Every endpoint, by handle.
    pub fn entries(&self) -> BTreeMap<String, Entry> {
        let mut by_handle: BTreeMap<&str, (Vec<IpAddr>, &BTreeMap<String, String>)> = BTreeMap::new();
        for (_, allocations) in self.blocks.values() {
            for (handle, ip, attrs) in allocations {
                by_handle.entry(handle).or_insert_with(|| (Vec::new(), attrs)).0.push(*ip);
            }
        }
        by_handle.into_iter().map(|(h, (addresses, attrs))| (h.to_string(), self.to_entry(addresses, attrs))).collect()
    }
}
