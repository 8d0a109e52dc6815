//! Changes to one block in memory: assign, release, count. The caller writes the result back
//! with one compare-and-swap, so many assignments can share a single write (group commit).

use super::block_math::{ip_at, ordinal_of};
use crate::datastore::resources::PackedMap;
use crate::datastore::resources::{AllocationAttribute, IpamBlock};
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// One address handed out from a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assigned {
    pub ip: IpAddr,
    pub ordinal: usize,
    /// The block's sequence number at allocation; a release naming another one is stale.
    pub sequence: u64,
}

/// Whether `ordinal` of `block` falls in a reserved range (never handed out).
fn reserved(block: &IpamBlock, ordinal: u32, reservations: &[IpNetwork]) -> bool {
    let ip = ip_at(&block.cidr, ordinal as usize);
    reservations.iter().any(|r| r.contains(ip))
}

/// Free addresses that may be handed out (reservations excluded).
pub fn free_count(block: &IpamBlock, reservations: &[IpNetwork]) -> usize {
    block.unallocated.iter().filter(|o| !reserved(block, **o, reservations)).count()
}

/// Addresses allocated.
pub fn in_use(block: &IpamBlock) -> usize {
    block.allocations.iter().filter(|a| a.is_some()).count()
}

/// The handle holding `ordinal`, if it is allocated.
pub fn handle_at(block: &IpamBlock, ordinal: usize) -> Option<&str> {
    let index = (*block.allocations.get(ordinal)?)? as usize;
    block.attributes.get(index)?.handle_id.as_deref()
}

/// How many addresses of the block `handle` holds.
pub fn count_of(block: &IpamBlock, handle: &str) -> u32 {
    (0..block.allocations.len()).filter(|o| handle_at(block, *o) == Some(handle)).count() as u32
}

/// Hands out the free address that has been free longest (the head of Calico's `unallocated`
/// FIFO), skipping reservations, so a just-released address is not reused at once.
pub fn assign(
    block: &mut IpamBlock,
    handle: &str,
    secondary: &BTreeMap<String, String>,
    reservations: &[IpNetwork],
) -> Option<Assigned> {
    let position = block.unallocated.iter().position(|o| !reserved(block, *o, reservations))?;
    Some(take(block, position, handle, secondary))
}

/// Hands out the address at `ordinal`, if it is free (re-claiming an address known in use).
pub fn assign_ordinal(
    block: &mut IpamBlock,
    ordinal: usize,
    handle: &str,
    secondary: &BTreeMap<String, String>,
) -> Option<Assigned> {
    let position = block.unallocated.iter().position(|o| *o as usize == ordinal)?;
    Some(take(block, position, handle, secondary))
}

/// Allocates the free ordinal at `position` of `unallocated` to `handle`.
fn take(block: &mut IpamBlock, position: usize, handle: &str, secondary: &BTreeMap<String, String>) -> Assigned {
    let ordinal = block.unallocated.remove(position);
    block.attributes.push(AllocationAttribute {
        handle_id: Some(handle.to_string()),
        secondary: PackedMap::from(secondary),
        ..AllocationAttribute::default()
    });
    block.allocations[ordinal as usize] = Some((block.attributes.len() - 1) as u32);
    block.sequence_number += 1;
    block.sequence_number_for_allocation.insert(ordinal.to_string(), block.sequence_number);
    Assigned { ip: ip_at(&block.cidr, ordinal as usize), ordinal: ordinal as usize, sequence: block.sequence_number }
}

/// What releasing one address found.
#[derive(Debug, PartialEq, Eq)]
pub enum Released {
    /// Freed; it belonged to this handle.
    Freed(Option<String>),
    /// Already free: nothing to do (releases are idempotent).
    AlreadyFree,
    /// The address was handed out again since the caller's sequence number.
    Stale { current: Option<u64> },
}

/// Frees the address `ip`, unless `expected` names a sequence number it no longer has.
pub fn release_ip(block: &mut IpamBlock, ip: IpAddr, expected: Option<u64>) -> Released {
    let Some(ordinal) = ordinal_of(&block.cidr, ip) else { return Released::AlreadyFree };
    if block.allocations.get(ordinal).copied().flatten().is_none() {
        return Released::AlreadyFree;
    }
    let current = block.sequence_number_for_allocation.get(&ordinal.to_string());
    if let Some(given) = expected
        && current != Some(given)
    {
        return Released::Stale { current };
    }
    let handle = handle_at(block, ordinal).map(str::to_string);
    free(block, ordinal);
    compact_attributes(block);
    Released::Freed(handle)
}

/// Frees every address of `handle` in the block; returns how many.
pub fn release_handle(block: &mut IpamBlock, handle: &str) -> usize {
    let ordinals: Vec<usize> = (0..block.allocations.len()).filter(|o| handle_at(block, *o) == Some(handle)).collect();
    for ordinal in &ordinals {
        free(block, *ordinal);
    }
    compact_attributes(block);
    ordinals.len()
}

fn free(block: &mut IpamBlock, ordinal: usize) {
    block.allocations[ordinal] = None;
    block.unallocated.push(ordinal as u32);
    block.sequence_number_for_allocation.remove(&ordinal.to_string());
}

/// Drops attributes no allocation points at any more and renumbers the rest, so the block does
/// not grow with every allocation.
fn compact_attributes(block: &mut IpamBlock) {
    let mut renumber = BTreeMap::new();
    let mut kept = Vec::new();
    for slot in block.allocations.iter_mut().flatten() {
        let old = *slot;
        let new = *renumber.entry(old).or_insert_with(|| {
            kept.push(block.attributes.get(old as usize).cloned().unwrap_or_default());
            (kept.len() - 1) as u32
        });
        *slot = new;
    }
    block.attributes = kept;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::resources::Resource;

    fn block() -> IpamBlock {
        IpamBlock::empty("10.0.0.0/29".parse().unwrap(), Some("host:n1".into()))
    }

    #[test]
    fn assignment_takes_the_head_and_release_goes_to_the_tail() {
        let mut b = block();
        let none = BTreeMap::new();
        let a = assign(&mut b, "h1", &none, &[]).unwrap();
        assert_eq!(a.ip, "10.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(release_ip(&mut b, a.ip, None), Released::Freed(Some("h1".into())));
        // The just-freed address is last in line: the next one is .1, not .0 again.
        let next = assign(&mut b, "h2", &none, &[]).unwrap();
        assert_eq!(next.ip, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(*b.unallocated.last().unwrap(), 0);
        assert_eq!(b.validate(), Ok(()));
    }

    #[test]
    fn reservations_are_never_handed_out() {
        let mut b = block();
        let reservations = vec!["10.0.0.0/30".parse().unwrap()];
        let none = BTreeMap::new();
        let got: Vec<_> = std::iter::from_fn(|| assign(&mut b, "h", &none, &reservations)).collect();
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|a| a.ordinal >= 4));
        assert_eq!(free_count(&b, &reservations), 0);
    }

    #[test]
    fn stale_sequence_number_frees_nothing() {
        let mut b = IpamBlock::empty("10.0.0.0/30".parse().unwrap(), None);
        let none = BTreeMap::new();
        let first = assign(&mut b, "old", &none, &[]).unwrap();
        assert_eq!(release_ip(&mut b, first.ip, Some(first.sequence)), Released::Freed(Some("old".into())));
        // Four more allocations of a four-address block wrap around to the first address again.
        let again = (0..4).map(|_| assign(&mut b, "new", &none, &[]).unwrap()).last().unwrap();
        assert_eq!(again.ip, first.ip);
        assert_eq!(
            release_ip(&mut b, first.ip, Some(first.sequence)),
            Released::Stale { current: Some(again.sequence) }
        );
        assert_eq!(handle_at(&b, again.ordinal), Some("new"));
    }

    #[test]
    fn release_by_handle_is_idempotent_and_compacts() {
        let mut b = block();
        let attrs = BTreeMap::from([("pod".to_string(), "p".to_string())]);
        assign(&mut b, "a", &attrs, &[]).unwrap();
        assign(&mut b, "b", &attrs, &[]).unwrap();
        assign(&mut b, "a", &attrs, &[]).unwrap();
        assert_eq!(release_handle(&mut b, "a"), 2);
        assert_eq!(release_handle(&mut b, "a"), 0);
        assert_eq!(in_use(&b), 1);
        assert_eq!(b.attributes.len(), 1);
        assert_eq!(handle_at(&b, 1), Some("b"));
        assert_eq!(b.validate(), Ok(()));
    }
}
