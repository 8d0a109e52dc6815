//! The Loc-RIB: per prefix the candidate paths (post-policy Adj-RIB-In
//! entries of every peer, and our own origination), kept ordered so that
//! the multipath set comes first and its head is the best path. The paths
//! of a peer are its Adj-RIB-In: there is no second copy per peer.
//!
//! Storage is compact because a table may hold a million prefixes: a prefix
//! with one path (nearly all of them) is one 12-byte [`PrefixMap`] entry —
//!
//! ```text
//!  bits  0..32  attribute id (AttrTable)   | or: index of a `Many` entry
//!  bits 32..48  peer slot (0 = our own)    |
//!  bits 48..56  flags: SELECTED STALE QUEUED MANY
//! ```
//!
//! — and a prefix with several paths, or an ADD-PATH path id, points to a
//! `Many` entry. Callers work on [`Dest`], a decoded copy, and store it back.
//!
//! The table also holds the dataplane's change queue: a prefix whose learned
//! next hops changed is queued once (QUEUED), and its current state is read
//! when the consumer takes it, so changes coalesce for free. A prefix whose
//! last path went while queued stays as an empty, queued entry until then.

use std::net::IpAddr;
use std::sync::Arc;

use ipnetwork::IpNetwork;
use rustc_hash::FxHashMap;

use super::Addrs;
use super::attr_table::{AttrId, AttrTable};
use super::attrs::Attrs;
use super::best::{Candidate, Decision, decide};
use crate::prefix_map::{PREFETCH_AHEAD, PrefixMap, PrefixQueue};

/// A peer's number in the table (0: our own origination).
pub type Slot = u16;
/// The slot of our own origination.
pub const LOCAL: Slot = 0;
/// No path at all (an empty entry kept while queued).
const EMPTY: Slot = Slot::MAX;

const SELECTED: u8 = 1;
const STALE: u8 = 2;
const QUEUED: u8 = 4;
const MANY: u8 = 8;

fn pack(low: u32, slot: Slot, flags: u8) -> u64 {
    u64::from(low) | u64::from(slot) << 32 | u64::from(flags) << 48
}

fn unpack(value: u64) -> (u32, Slot, u8) {
    (value as u32, (value >> 32) as Slot, (value >> 48) as u8)
}

/// One candidate path of a prefix.
#[derive(Debug, Clone)]
pub struct Path {
    /// The peer it came from; `None` for our own origination.
    pub source: Option<IpAddr>,
    /// ADD-PATH path identifier (0 without ADD-PATH).
    pub path_id: u32,
    /// The attributes, and their id in the table's [`AttrTable`].
    pub attrs: Attrs,
    pub attr: AttrId,
    /// Kept for a restarting peer until it re-announces it (RFC 4724).
    pub stale: bool,
}

impl Path {
    fn same_key(&self, source: Option<IpAddr>, path_id: u32) -> bool {
        self.source == source && self.path_id == path_id
    }
}

/// The paths of one prefix; `paths[..selected]` is the multipath set.
#[derive(Debug, Clone, Default)]
pub struct Dest {
    pub paths: Vec<Path>,
    pub selected: usize,
}

impl Dest {
    /// The multipath set, best first.
    pub fn multipath(&self) -> &[Path] {
        self.paths.get(..self.selected).unwrap_or_default()
    }

    pub fn best(&self) -> Option<&Path> {
        self.multipath().first()
    }

    /// Inserts or replaces the path with the same source and path id;
    /// false when nothing changed.
    pub fn upsert(&mut self, path: Path) -> bool {
        match self.paths.iter_mut().find(|p| p.same_key(path.source, path.path_id)) {
            Some(existing) => {
                if existing.attr == path.attr && existing.stale == path.stale {
                    return false;
                }
                *existing = path;
            }
            None => self.paths.push(path),
        }
        true
    }

    /// Removes a path; the removed one if it was there.
    pub fn remove(&mut self, source: Option<IpAddr>, path_id: u32) -> Option<Path> {
        let index = self.paths.iter().position(|p| p.same_key(source, path_id))?;
        if index < self.selected {
            self.selected -= 1;
        }
        Some(self.paths.remove(index))
    }

    /// Runs best path and reorders the paths: multipath set first.
    pub fn select(&mut self, max_paths: usize, candidate: impl Fn(&Path) -> Candidate) -> Decision {
        let candidates: Vec<Candidate> = self.paths.iter().map(&candidate).collect();
        let decision = decide(&candidates, max_paths);
        let mut order: Vec<usize> = decision.multipath.clone();
        order.extend((0..self.paths.len()).filter(|i| !decision.multipath.contains(i)));
        if order.iter().enumerate().any(|(at, &i)| at != i) {
            let mut old: Vec<Option<Path>> = std::mem::take(&mut self.paths).into_iter().map(Some).collect();
            self.paths = order.iter().filter_map(|&i| old.get_mut(i).and_then(Option::take)).collect();
        }
        self.selected = decision.multipath.len();
        decision
    }
}

/// A path of a `Many` entry.
#[derive(Debug, Clone, Copy)]
struct Stored {
    attr: AttrId,
    path_id: u32,
    slot: Slot,
    stale: bool,
}

#[derive(Debug, Default)]
struct Many {
    paths: Vec<Stored>,
    selected: usize,
}

/// What a single-path fast update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fast {
    /// Same path as before: nothing to do.
    Unchanged,
    /// Stored. `best`: the peer's path was / is selected (before, after);
    /// `best_changed`: the selected path is another one (or none now);
    /// `hops_changed`: the learned next hop changed (the dataplane's business).
    Stored { best: (bool, bool), best_changed: bool, hops_changed: bool },
    /// The prefix has other paths: use the general way.
    NotApplicable,
}

/// Every prefix we know a path for.
#[derive(Debug, Default)]
pub struct LocRib {
    map: PrefixMap,
    many: Vec<Many>,
    many_free: Vec<u32>,
    pub attrs: AttrTable,
    slot_addrs: Vec<Option<IpAddr>>,
    slots: FxHashMap<IpAddr, Slot>,
    /// Paths per slot (a peer's accepted routes).
    per_slot: Vec<u64>,
    prefixes: usize,
    paths: usize,
    changes: PrefixQueue,
}

impl LocRib {
    pub fn new() -> Self {
        LocRib { slot_addrs: vec![None], per_slot: vec![0], ..LocRib::default() }
    }

    /// Prefixes with at least one path.
    pub fn len(&self) -> usize {
        self.prefixes
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes == 0
    }

    pub fn paths(&self) -> usize {
        self.paths
    }

    /// The slot of a peer, allocated on first use.
    pub fn slot(&mut self, addr: IpAddr) -> Slot {
        if let Some(slot) = self.slots.get(&addr) {
            return *slot;
        }
        let slot = match self.slot_addrs.iter().skip(1).position(Option::is_none) {
            Some(free) => free as Slot + 1,
            None => {
                self.slot_addrs.push(None);
                self.per_slot.push(0);
                (self.slot_addrs.len() - 1) as Slot
            }
        };
        assert!(slot < EMPTY, "more than 65534 peers");
        self.slot_addrs[slot as usize] = Some(addr);
        self.slots.insert(addr, slot);
        slot
    }

    /// The slot of a peer that has one.
    pub fn slot_of_peer(&self, addr: &IpAddr) -> Option<Slot> {
        self.slots.get(addr).copied()
    }

    /// Frees a peer's slot; its paths must be gone.
    pub fn release_slot(&mut self, addr: IpAddr) {
        if let Some(slot) = self.slots.remove(&addr) {
            debug_assert_eq!(self.per_slot[slot as usize], 0, "a released peer still has paths");
            self.slot_addrs[slot as usize] = None;
        }
    }

    /// The paths stored for a peer.
    pub fn count(&self, addr: &IpAddr) -> u64 {
        self.slots.get(addr).map_or(0, |s| self.per_slot[*s as usize])
    }

    fn source(&self, slot: Slot) -> Option<IpAddr> {
        if slot == LOCAL { None } else { self.slot_addrs.get(slot as usize).copied().flatten() }
    }

    fn slot_of(&self, source: Option<IpAddr>) -> Slot {
        match source {
            None => LOCAL,
            Some(addr) => *self.slots.get(&addr).expect("a path's peer has a slot"),
        }
    }

    fn path(&self, s: Stored) -> Path {
        Path {
            source: self.source(s.slot),
            path_id: s.path_id,
            attrs: self.attrs.get(s.attr).clone(),
            attr: s.attr,
            stale: s.stale,
        }
    }

    /// The stored paths of an entry, and how many are selected.
    fn stored(&self, value: u64) -> (Vec<Stored>, usize) {
        let (low, slot, flags) = unpack(value);
        if flags & MANY != 0 {
            let many = &self.many[low as usize];
            (many.paths.clone(), many.selected)
        } else if slot == EMPTY {
            (Vec::new(), 0)
        } else {
            let one = Stored { attr: low, path_id: 0, slot, stale: flags & STALE != 0 };
            (vec![one], usize::from(flags & SELECTED != 0))
        }
    }

    /// A decoded copy of a prefix's paths.
    pub fn get(&self, net: &IpNetwork) -> Option<Dest> {
        let (stored, selected) = self.stored(self.map.get(net)?);
        if stored.is_empty() {
            return None;
        }
        Some(Dest { paths: stored.into_iter().map(|s| self.path(s)).collect(), selected })
    }

    /// Every prefix with paths, in no particular order.
    pub fn keys(&self) -> Vec<IpNetwork> {
        self.map.iter().filter(|(_, v)| unpack(*v).1 != EMPTY || unpack(*v).2 & MANY != 0).map(|(n, _)| n).collect()
    }

    /// The (prefix, path id) of every path of a peer.
    pub fn paths_of(&self, addr: IpAddr) -> Vec<(IpNetwork, u32)> {
        let Some(&slot) = self.slots.get(&addr) else { return Vec::new() };
        let mut out = Vec::new();
        for (net, value) in self.map.iter() {
            let (low, s, flags) = unpack(value);
            if flags & MANY != 0 {
                out.extend(self.many[low as usize].paths.iter().filter(|p| p.slot == slot).map(|p| (net, p.path_id)));
            } else if s == slot {
                out.push((net, 0));
            }
        }
        out
    }

    /// Whether a peer's path is stored, and stale.
    pub fn path_state(&self, net: &IpNetwork, addr: IpAddr, path_id: u32) -> Option<bool> {
        let slot = *self.slots.get(&addr)?;
        let (stored, _) = self.stored(self.map.get(net)?);
        stored.iter().find(|p| p.slot == slot && p.path_id == path_id).map(|p| p.stale)
    }

    /// Marks a stored path stale (no best-path consequence: stale routes
    /// stay usable while the peer restarts).
    pub fn set_stale(&mut self, net: &IpNetwork, addr: IpAddr, path_id: u32) {
        let Some(&slot) = self.slots.get(&addr) else { return };
        let Some(value) = self.map.get(net) else { return };
        let (low, s, flags) = unpack(value);
        if flags & MANY != 0 {
            if let Some(p) = self.many[low as usize].paths.iter_mut().find(|p| p.slot == slot && p.path_id == path_id) {
                p.stale = true;
            }
        } else if s == slot && path_id == 0 {
            self.map.insert(*net, pack(low, s, flags | STALE));
        }
    }

    /// See [`PrefixMap::prefetch`].
    pub fn prefetch(&self, net: &IpNetwork) {
        self.map.prefetch(net);
    }

    /// The single-path case of an update, without decoding: `attr` from the
    /// peer in `slot` (path id 0, not stale) replaces that peer's path when
    /// the prefix has no other one. `usable`: the path may be selected.
    pub fn fast_upsert(&mut self, net: IpNetwork, slot: Slot, attr: AttrId, usable: bool) -> Fast {
        let old = self.map.get(&net);
        let old_parts = old.map(unpack);
        let before = match old_parts {
            None => None,
            Some((_, _, flags)) if flags & MANY != 0 => return Fast::NotApplicable,
            Some((_, EMPTY, _)) => None,
            Some((_, s, _)) if s != slot => return Fast::NotApplicable,
            Some((low, s, flags)) => {
                if low == attr && flags & STALE == 0 && (flags & SELECTED != 0) == usable {
                    return Fast::Unchanged;
                }
                Some((s, low, flags & SELECTED != 0))
            }
        };
        let queued = old_parts.map_or(0, |(_, _, f)| f & QUEUED);
        let hop = |attrs: &AttrTable, a: AttrId| attrs.get(a).next_hop;
        let old_best = before.and_then(|(_, a, selected)| selected.then_some(a));
        let new_best = usable.then_some(attr);
        let hops_changed = old_best.map(|a| hop(&self.attrs, a)) != new_best.map(|a| hop(&self.attrs, a));
        self.attrs.retain(attr);
        match before {
            Some((_, old_attr, _)) => self.attrs.release(old_attr),
            None => {
                self.prefixes += 1;
                self.paths += 1;
                self.per_slot[slot as usize] += 1;
            }
        }
        let selected = if usable { SELECTED } else { 0 };
        self.map.insert(net, pack(attr, slot, selected | queued));
        Fast::Stored {
            best: (old_best.is_some(), new_best.is_some()),
            best_changed: old_best != new_best,
            hops_changed,
        }
    }

    /// The single-path case of a withdrawal: removes the peer's path when it
    /// is the prefix's only one. `None` when the prefix has other paths (use
    /// the general way); `Some(Unchanged)` when the peer had no path there.
    pub fn fast_remove(&mut self, net: IpNetwork, slot: Slot, path_id: u32) -> Option<Fast> {
        let Some(value) = self.map.get(&net) else { return Some(Fast::Unchanged) };
        let (low, s, flags) = unpack(value);
        if flags & MANY != 0 || path_id != 0 {
            return None;
        }
        if s != slot {
            return Some(Fast::Unchanged);
        }
        let was_best = flags & SELECTED != 0;
        let queued = flags & QUEUED;
        if queued != 0 {
            self.map.insert(net, pack(0, EMPTY, queued));
        } else {
            self.map.remove(&net);
        }
        self.attrs.release(low);
        self.prefixes -= 1;
        self.paths -= 1;
        self.per_slot[slot as usize] -= 1;
        Some(Fast::Stored { best: (was_best, false), best_changed: was_best, hops_changed: was_best })
    }

    /// Stores `dest` as the prefix's paths (empty: none), keeping the
    /// queued mark and the reference counts and totals right.
    pub fn store(&mut self, net: IpNetwork, dest: Dest) {
        let old = self.map.get(&net);
        let mut queued = 0;
        let mut released = Vec::new();
        if let Some(value) = old {
            let (low, _, flags) = unpack(value);
            queued = flags & QUEUED;
            let (stored, _) = self.stored(value);
            for p in &stored {
                self.per_slot[p.slot as usize] -= 1;
            }
            self.paths -= stored.len();
            if !stored.is_empty() {
                self.prefixes -= 1;
            }
            if flags & MANY != 0 {
                self.many[low as usize] = Many::default();
                self.many_free.push(low);
            }
            released = stored;
        }
        let stored: Vec<Stored> = dest
            .paths
            .iter()
            .map(|p| Stored { attr: p.attr, path_id: p.path_id, slot: self.slot_of(p.source), stale: p.stale })
            .collect();
        // New references first, so a set kept by the prefix is never freed in between.
        for p in &stored {
            self.attrs.retain(p.attr);
            self.per_slot[p.slot as usize] += 1;
        }
        for p in released {
            self.attrs.release(p.attr);
        }
        self.paths += stored.len();
        let value = match stored.as_slice() {
            [] if queued != 0 => Some(pack(0, EMPTY, queued)),
            [] => None,
            [one] if one.path_id == 0 => {
                let mut flags = queued | if dest.selected > 0 { SELECTED } else { 0 };
                if one.stale {
                    flags |= STALE;
                }
                Some(pack(one.attr, one.slot, flags))
            }
            _ => {
                let many = Many { paths: stored.clone(), selected: dest.selected };
                let index = match self.many_free.pop() {
                    Some(i) => {
                        self.many[i as usize] = many;
                        i
                    }
                    None => {
                        self.many.push(many);
                        (self.many.len() - 1) as u32
                    }
                };
                Some(pack(index, 0, queued | MANY))
            }
        };
        if !stored.is_empty() {
            self.prefixes += 1;
        }
        match value {
            Some(v) => {
                self.map.insert(net, v);
            }
            None => {
                self.map.remove(&net);
            }
        }
    }

    /// Queues the prefix for the dataplane (once until taken).
    pub fn queue_change(&mut self, net: IpNetwork) {
        let mut newly = false;
        self.map.update(net, |old| {
            Some(match old {
                Some(v) => {
                    let (low, slot, flags) = unpack(v);
                    newly = flags & QUEUED == 0;
                    pack(low, slot, flags | QUEUED)
                }
                None => {
                    newly = true;
                    pack(0, EMPTY, QUEUED)
                }
            })
        });
        if newly {
            self.changes.push(net);
        }
    }

    /// The oldest queued prefix and its learned multipath set now (next
    /// hops and peers, empty when the best path is ours or there is none).
    pub fn take_change(&mut self) -> Option<(IpNetwork, Addrs, Addrs)> {
        let net = self.changes.pop()?;
        if let Some(next) = self.changes.ahead_v4(PREFETCH_AHEAD) {
            self.map.prefetch(&next);
        }
        self.changes.maybe_shrink();
        let Some(value) = self.map.get(&net) else { return Some((net, Addrs::new(), Addrs::new())) };
        let (low, slot, flags) = unpack(value);
        if slot == EMPTY && flags & MANY == 0 {
            self.map.remove(&net);
            return Some((net, Addrs::new(), Addrs::new()));
        }
        self.map.insert(net, pack(low, slot, flags & !QUEUED));
        if flags & MANY == 0 {
            // One path: no decoding.
            let learned = flags & SELECTED != 0 && slot != LOCAL;
            let hop = self.attrs.get(low).next_hop.filter(|_| learned);
            return Some((net, hop.into_iter().collect(), self.source(slot).filter(|_| learned).into_iter().collect()));
        }
        let (hops, peers) = self.get(&net).map(|d| learned(d.multipath())).unwrap_or_default();
        Some((net, hops, peers))
    }

    pub fn changes_pending(&self) -> usize {
        self.changes.len()
    }

    /// Gives memory back after a large withdrawal.
    pub fn maybe_shrink(&mut self) {
        self.map.maybe_shrink();
    }

    /// Interned attribute sets referenced by paths.
    pub fn attribute_sets(&self) -> usize {
        self.attrs.len()
    }
}

/// The learned multipath set as the dataplane sees it: empty when the best
/// path is ours or there is none.
pub fn learned(paths: &[Path]) -> (Addrs, Addrs) {
    let (mut hops, mut peers) = (Addrs::new(), Addrs::new());
    if paths.first().is_some_and(|p| p.source.is_some()) {
        for p in paths {
            if let Some(nh) = p.attrs.next_hop
                && !hops.contains(&nh)
            {
                hops.push(nh);
            }
            if let Some(s) = p.source
                && !peers.contains(&s)
            {
                peers.push(s);
            }
        }
    }
    (hops, peers)
}

/// Pointer identity of a path, for "did the best path change".
pub fn same_path(a: &Path, b: &Path) -> bool {
    a.source == b.source && a.path_id == b.path_id && Arc::ptr_eq(&a.attrs, &b.attrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::rib::attrs::PathAttrs;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn attrs(rib: &mut LocRib, med: u32) -> AttrId {
        let mut a = PathAttrs::local();
        a.med = Some(med);
        a.next_hop = Some("192.0.2.9".parse().unwrap());
        rib.attrs.intern(a).0
    }

    fn path(rib: &LocRib, source: Option<IpAddr>, path_id: u32, attr: AttrId) -> Path {
        Path { source, path_id, attrs: rib.attrs.get(attr).clone(), attr, stale: false }
    }

    #[test]
    fn one_path_round_trips_through_a_compact_entry_and_many_through_the_side_table() {
        let mut rib = LocRib::new();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        rib.slot(a);
        rib.slot(b);
        let x = attrs(&mut rib, 1);
        let y = attrs(&mut rib, 2);
        let one = Dest { paths: vec![path(&rib, Some(a), 0, x)], selected: 1 };
        rib.store(net("10.0.0.0/24"), one);
        let got = rib.get(&net("10.0.0.0/24")).unwrap();
        assert_eq!((got.paths.len(), got.selected, got.paths[0].source, got.paths[0].attr), (1, 1, Some(a), x));
        let two = Dest { paths: vec![path(&rib, Some(b), 0, y), path(&rib, Some(a), 7, x)], selected: 2 };
        rib.store(net("10.0.0.0/24"), two);
        let got = rib.get(&net("10.0.0.0/24")).unwrap();
        assert_eq!(got.paths.iter().map(|p| (p.source, p.path_id)).collect::<Vec<_>>(), [(Some(b), 0), (Some(a), 7)]);
        assert_eq!((rib.len(), rib.paths(), rib.count(&a), rib.count(&b)), (1, 2, 1, 1));
        rib.store(net("10.0.0.0/24"), Dest::default());
        assert!(rib.is_empty());
        assert_eq!((rib.paths(), rib.count(&a), rib.attribute_sets()), (0, 0, 0), "the sets went with their paths");
    }

    #[test]
    fn a_queued_prefix_is_queued_once_and_read_when_taken() {
        let mut rib = LocRib::new();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let slot = rib.slot(a);
        let x = attrs(&mut rib, 1);
        assert!(matches!(rib.fast_upsert(net("10.0.0.0/24"), slot, x, true), Fast::Stored { best: (false, true), .. }));
        rib.queue_change(net("10.0.0.0/24"));
        rib.queue_change(net("10.0.0.0/24"));
        assert_eq!(rib.changes_pending(), 1);
        // The path goes while queued: the entry stays, empty, until taken.
        rib.store(net("10.0.0.0/24"), Dest::default());
        assert!(rib.is_empty());
        rib.queue_change(net("10.0.0.0/24"));
        assert_eq!(rib.changes_pending(), 1);
        let (taken, hops, peers) = rib.take_change().unwrap();
        assert_eq!((taken, hops.is_empty(), peers.is_empty()), (net("10.0.0.0/24"), true, true));
        assert!(rib.take_change().is_none());
        assert!(rib.keys().is_empty(), "the empty entry went when taken");
    }

    #[test]
    fn the_fast_path_replaces_a_peers_own_path_only() {
        let mut rib = LocRib::new();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let (sa, sb) = (rib.slot(a), rib.slot(b));
        let x = attrs(&mut rib, 1);
        let y = attrs(&mut rib, 2);
        let n = net("10.0.0.0/24");
        let stored = |best, best_changed, hops_changed| Fast::Stored { best, best_changed, hops_changed };
        assert_eq!(rib.fast_upsert(n, sa, x, true), stored((false, true), true, true));
        assert_eq!(rib.fast_upsert(n, sa, x, true), Fast::Unchanged);
        assert_eq!(rib.fast_upsert(n, sa, y, true), stored((true, true), true, false), "same next hop");
        assert_eq!(rib.fast_upsert(n, sa, y, false), stored((true, false), true, true), "unusable now");
        assert_eq!(rib.fast_upsert(n, sb, y, true), Fast::NotApplicable);
        assert_eq!((rib.paths(), rib.attribute_sets()), (1, 1));
        rib.set_stale(&n, a, 0);
        assert_eq!(rib.path_state(&n, a, 0), Some(true));
        assert!(matches!(rib.fast_upsert(n, sa, y, true), Fast::Stored { .. }), "re-announced: no longer stale");
        assert_eq!(rib.path_state(&n, a, 0), Some(false));
        assert_eq!(rib.paths_of(a), vec![(n, 0)]);
        assert!(rib.paths_of(b).is_empty());
        assert_eq!(rib.fast_remove(n, sb, 0), Some(Fast::Unchanged), "not b's path");
        assert_eq!(rib.fast_remove(n, sa, 5), None, "a path id: the general way");
        assert_eq!(rib.fast_remove(n, sa, 0), Some(stored((true, false), true, true)));
        assert_eq!((rib.len(), rib.paths(), rib.attribute_sets(), rib.count(&a)), (0, 0, 0, 0));
    }
}
