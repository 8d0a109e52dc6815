//! Every pod's policy endpoint, read from the IPAM blocks' allocations and kept per block, so
//! that one block's change yields the pods it touched (the follower then updates the compiled
//! program for those alone) and a full read gives the same endpoints in the same order.

use super::blocks::KnownBlocks;
use super::endpoint_attrs;
use super::workloads::{ATTR_HOST_INTERFACE, addresses_of};
use crate::datastore::Revision;
use crate::datastore::resources::{IpamBlock, PackedMap};
use crate::ipam::routes::NODE_ATTRIBUTE;
use crate::policy::incremental::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// A block's workload allocations: handle, address, attributes.
type Allocations = Vec<(String, IpAddr, PackedMap)>;

#[derive(Clone)]
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

    /// Brings every block to the agent's picture of them; the handles whose allocations changed.
    /// A block of the picture older than what is held is left (as [`Pods::set_block`] does).
    pub fn sync(&mut self, known: &KnownBlocks) -> BTreeSet<String> {
        let gone: Vec<String> = self.blocks.keys().filter(|name| known.get(name).is_none()).cloned().collect();
        let mut handles = BTreeSet::new();
        for name in gone {
            if let Some((_, old)) = self.blocks.remove(&name) {
                handles.extend(old.into_iter().map(|(handle, _, _)| handle));
            }
        }
        for block in known.stored() {
            handles.extend(self.set_block(&block.name, block.revision, Some(&block.spec)));
        }
        handles
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

    fn to_entry(&self, addresses: Vec<IpAddr>, attrs: &PackedMap) -> Entry {
        let endpoint = endpoint_attrs::endpoint(addresses, attrs);
        let local = attrs.get(NODE_ATTRIBUTE) == Some(self.node.as_str());
        Entry {
            endpoint: endpoint.into(),
            interface: local.then(|| attrs.get(ATTR_HOST_INTERFACE).unwrap_or_default().to_string()),
        }
    }

    /// Every endpoint, by handle.
    pub fn entries(&self) -> BTreeMap<String, Entry> {
        let mut by_handle: BTreeMap<&str, (Vec<IpAddr>, &PackedMap)> = BTreeMap::new();
        for (_, allocations) in self.blocks.values() {
            for (handle, ip, attrs) in allocations {
                by_handle.entry(handle).or_insert_with(|| (Vec::new(), attrs)).0.push(*ip);
            }
        }
        by_handle.into_iter().map(|(h, (addresses, attrs))| (h.to_string(), self.to_entry(addresses, attrs))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::Stored;
    use crate::datastore::resources::AllocationAttribute;

    /// A block of node `node` with pods `pods` (ordinal, pod name), each with a host interface.
    fn block(cidr: &str, revision: u64, pods: &[(usize, &str)]) -> Stored<IpamBlock> {
        let cidr: ipnetwork::IpNetwork = cidr.parse().unwrap();
        let mut b = IpamBlock::empty(cidr, None);
        for (i, (ordinal, pod)) in pods.iter().enumerate() {
            b.allocations[*ordinal] = Some(i as u32);
            b.unallocated.retain(|o| *o as usize != *ordinal);
            b.attributes.push(AllocationAttribute {
                handle_id: Some(format!("k8s-pod-network.{pod}")),
                secondary: PackedMap::from([
                    (ATTR_HOST_INTERFACE.to_string(), format!("cali{pod}")),
                    ("namespace".to_string(), "default".to_string()),
                    ("pod".to_string(), pod.to_string()),
                    (NODE_ATTRIBUTE.to_string(), "n1".to_string()),
                ]),
                ..Default::default()
            });
        }
        let name = crate::datastore::resources::cidr_name(&cidr);
        Stored { name, revision: Revision(revision), spec: b }
    }

    fn handles(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| format!("k8s-pod-network.{n}")).collect()
    }

    /// Syncing to a picture gives the pods and the touched handles that the picture's changes,
    /// applied one block at a time, give: a block changed, one added, one gone, one unchanged,
    /// and a picture older than what is held.
    #[test]
    fn a_sync_to_the_picture_touches_what_the_block_changes_touch() {
        let (a1, b1, c1) = (
            block("10.0.0.0/26", 1, &[(0, "a")]),
            block("10.0.1.0/26", 2, &[(0, "b")]),
            block("10.0.2.0/26", 3, &[(1, "c")]),
        );
        let mut pods = Pods::new("n1");
        let first = pods.sync(&KnownBlocks::from_listing(vec![a1.clone(), b1.clone(), c1.clone()]));
        assert_eq!(first, handles(&["a", "b", "c"]));

        let a2 = block("10.0.0.0/26", 4, &[(0, "a"), (1, "a2")]);
        let d = block("10.0.3.0/26", 5, &[(2, "d")]);
        let mut by_event = pods.clone();
        let mut want = by_event.set_block(&a2.name, a2.revision, Some(&a2.spec));
        want.extend(by_event.set_block(&b1.name, Revision(6), None));
        want.extend(by_event.set_block(&d.name, d.revision, Some(&d.spec)));
        let touched = pods.sync(&KnownBlocks::from_listing(vec![a2.clone(), c1.clone(), d.clone()]));
        assert_eq!(touched, want);
        assert_eq!(touched, handles(&["a", "a2", "b", "d"]));
        assert_eq!(pods.entries(), by_event.entries());
        assert_eq!(pods.entries().len(), 4);

        // A picture with an older revision of a held block leaves it.
        assert!(pods.sync(&KnownBlocks::from_listing(vec![a1, c1, d])).is_empty());
        assert_eq!(pods.entries(), by_event.entries());
    }
}
