//! The stage's only per-prefix state: the blocks whose path can change
//! (blocks of pools that encapsulate, on a node that has that
//! encapsulation), each packed into a [`PrefixMap`] value with its node
//! (interned) and its pool's mode; per node, how many such blocks it has by
//! encapsulation slot and mode, so a verdict or a changed VTEP finds the
//! affected nodes without walking every block. Every other learned prefix
//! has one possible route and is not kept: the programmer holds its only copy.

use super::encap::SLOTS;
use crate::datastore::resources::EncapMode;
use crate::prefix_map::PrefixMap;
use ipnetwork::IpNetwork;
use rustc_hash::{FxHashMap, FxHashSet};
use std::net::IpAddr;

/// The modes of stateful blocks, by index.
pub(super) const MODES: [EncapMode; 2] = [EncapMode::Always, EncapMode::CrossSubnet];

fn mode_index(mode: EncapMode) -> usize {
    match mode {
        EncapMode::CrossSubnet => 1,
        _ => 0,
    }
}

/// A stateful block: its node (an index into [`Blocks::nodes`]), the slot
/// of its encapsulation and its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Kept {
    pub node: u32,
    pub slot: usize,
    pub mode: EncapMode,
}

const SLOT_SHIFT: u32 = 32;
const SLOT_BITS: u32 = usize::BITS - (SLOTS - 1).leading_zeros();
const MODE_SHIFT: u32 = SLOT_SHIFT + SLOT_BITS;

impl Kept {
    pub fn pack(self) -> u64 {
        u64::from(self.node) | (self.slot as u64) << SLOT_SHIFT | (mode_index(self.mode) as u64) << MODE_SHIFT
    }

    pub fn unpack(value: u64) -> Kept {
        Kept {
            node: value as u32,
            slot: ((value >> SLOT_SHIFT) & ((1 << SLOT_BITS) - 1)) as usize,
            mode: MODES[((value >> MODE_SHIFT) & 1) as usize],
        }
    }
}

/// A node with stateful blocks: its address and its blocks by slot and mode.
#[derive(Debug, Clone)]
pub(super) struct NodeBlocks {
    pub address: IpAddr,
    pub counts: [[u32; 2]; SLOTS],
}

impl NodeBlocks {
    pub fn is_empty(&self) -> bool {
        self.counts.iter().flatten().all(|n| *n == 0)
    }

    /// The (slot, mode) pairs it has blocks of.
    pub fn kinds(&self) -> impl Iterator<Item = (usize, EncapMode)> + '_ {
        self.counts.iter().enumerate().flat_map(|(slot, by_mode)| {
            by_mode.iter().zip(MODES).filter(|(n, _)| **n > 0).map(move |(_, mode)| (slot, mode))
        })
    }
}

#[derive(Default)]
pub(super) struct Blocks {
    /// Block → [`Kept::pack`].
    pub map: PrefixMap,
    /// Interned nodes; an index stays valid (and the entry stays, empty)
    /// once its blocks are gone: there are few nodes.
    pub nodes: Vec<NodeBlocks>,
    index: FxHashMap<IpAddr, u32>,
    /// Every node that announced a pool block of any mode: encapsulations
    /// accept packets from them (a node whose own blocks never encapsulate
    /// may still encapsulate to ours). Never pruned: a removed node's
    /// address stays accepted until the agent restarts.
    pub seen: FxHashSet<IpAddr>,
}

impl Blocks {
    pub fn intern(&mut self, address: IpAddr) -> u32 {
        if let Some(i) = self.index.get(&address) {
            return *i;
        }
        let i = self.nodes.len() as u32;
        self.nodes.push(NodeBlocks { address, counts: [[0; 2]; SLOTS] });
        self.index.insert(address, i);
        i
    }

    fn count(&mut self, kept: Kept, add: bool) {
        let n = &mut self.nodes[kept.node as usize].counts[kept.slot][mode_index(kept.mode)];
        if add {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
        }
    }

    /// Records `dst`'s new state (`None`: not kept); returns the old one.
    pub fn set(&mut self, dst: IpNetwork, kept: Option<Kept>) -> Option<Kept> {
        let old = match kept {
            Some(k) => self.map.insert(dst, k.pack()),
            // Cheap when nothing is kept (no encapsulation in use).
            None if self.map.is_empty() => None,
            None => self.map.remove(&dst),
        }
        .map(Kept::unpack);
        if old != kept {
            if let Some(o) = old {
                self.count(o, false);
            }
            if let Some(k) = kept {
                self.count(k, true);
            }
        }
        old
    }

    /// Every kept block with its state.
    pub fn iter(&self) -> impl Iterator<Item = (IpNetwork, Kept)> + '_ {
        self.map.iter().map(|(dst, v)| (dst, Kept::unpack(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocks_node_slot_and_mode_fit_the_prefix_maps_value() {
        for kept in [
            Kept { node: u32::MAX, slot: SLOTS - 1, mode: EncapMode::CrossSubnet },
            Kept { node: 0, slot: 0, mode: EncapMode::Always },
            Kept { node: 7, slot: 1, mode: EncapMode::CrossSubnet },
        ] {
            assert_eq!(Kept::unpack(kept.pack()), kept);
            assert!(kept.pack() <= crate::prefix_map::VALUE_MAX);
        }
    }

    #[test]
    fn counts_follow_blocks_coming_moving_and_going() {
        let mut b = Blocks::default();
        let n = b.intern("10.0.0.6".parse().unwrap());
        let dst: IpNetwork = "10.244.1.0/26".parse().unwrap();
        let always = Kept { node: n, slot: 0, mode: EncapMode::Always };
        assert_eq!(b.set(dst, Some(always)), None);
        assert_eq!(b.set(dst, Some(always)), Some(always), "unchanged");
        assert_eq!(b.nodes[n as usize].counts[0], [1, 0]);
        let cross = Kept { mode: EncapMode::CrossSubnet, ..always };
        b.set(dst, Some(cross));
        assert_eq!(b.nodes[n as usize].kinds().collect::<Vec<_>>(), [(0, EncapMode::CrossSubnet)]);
        b.set(dst, None);
        assert!(b.nodes[n as usize].is_empty() && b.map.is_empty());
        assert_eq!(b.intern("10.0.0.6".parse().unwrap()), n, "the index stays");
    }
}
