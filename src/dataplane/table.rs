//! The route programmer's one table: per prefix, what we want and what the
//! kernel holds, packed into a [`PrefixMap`] value (12 bytes per IPv4
//! prefix in all), plus the queue of prefixes to look at again.
//!
//! A value is `desired form id (24 bits) | kernel form id (24) | flags (8)`;
//! the forms themselves are interned in [`Forms`]. The rare prefix that more
//! than one kind wants at once keeps its full routes in a side map and the
//! table holds the winner's form. Nothing here does I/O: the task in
//! `programmer.rs` pops chunks of operations, writes them, and reports back.

use super::forms::{DesiredForm, Forms, ID_BITS, KernelForm};
use super::route::{DesiredRoute, Route, RouteKind, RouteOp};
use super::snapshot::Snapshot;
use crate::prefix_map::{PREFETCH_AHEAD, PrefixMap, PrefixQueue};
use ipnetwork::IpNetwork;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

const ID_MASK: u64 = (1 << ID_BITS) - 1;

/// Somebody wants the prefix (`desired` is the winning form).
const DESIRED: u8 = 1;
/// The kernel holds a route of ours for it (`kernel` is its form).
const IN_KERNEL: u8 = 2;
/// In the queue (each prefix is queued once).
const QUEUED: u8 = 4;
/// Wanted by several kinds: the routes are in the side map.
const MULTI: u8 = 8;
/// Seen by the sweep in progress (a dump, or a kind's replacement set).
const MARK: u8 = 16;
/// An operation for it is being written.
const IN_FLIGHT: u8 = 32;
/// The kernel's route was found by a dump, not written by this run (a
/// previous run's): kept until the first full reconcile even when unwanted.
/// Routes this run wrote and no longer wants go at once.
const ADOPTED: u8 = 64;

/// Tags an operation's kernel form id: the delete of a duplicate copy, which
/// says nothing about the copy the table tracks.
pub const DUPLICATE: u32 = 1 << 31;

/// One prefix's state, unpacked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    pub desired: u32,
    pub kernel: u32,
    flags: u8,
}

impl Entry {
    fn pack(self) -> u64 {
        debug_assert!(u64::from(self.desired) <= ID_MASK && u64::from(self.kernel) <= ID_MASK);
        u64::from(self.desired) | u64::from(self.kernel) << ID_BITS | u64::from(self.flags) << (2 * ID_BITS)
    }

    fn unpack(v: u64) -> Self {
        Entry {
            desired: (v & ID_MASK) as u32,
            kernel: (v >> ID_BITS & ID_MASK) as u32,
            flags: (v >> (2 * ID_BITS)) as u8,
        }
    }

    fn has(self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Nothing left to remember: the prefix can leave the table.
    fn removable(self) -> bool {
        self.flags & (DESIRED | IN_KERNEL | QUEUED | IN_FLIGHT) == 0
    }

    fn keep(self) -> Option<u64> {
        (!self.removable()).then(|| self.pack())
    }
}

/// Everything but the map itself, so the map's `update`/`retain` closures
/// can change it.
#[derive(Default)]
struct State {
    forms: Forms,
    /// Prefixes wanted by several kinds: their routes sorted by kind (the first wins).
    multi: FxHashMap<IpNetwork, Vec<DesiredRoute>>,
    queue: PrefixQueue,
    /// Queue pushes and pops ever (progress marks for waiters).
    pushed: u64,
    popped: u64,
    /// Prefixes per winning kind.
    by_kind: BTreeMap<RouteKind, usize>,
    /// Deletes of duplicate kernel copies a dump found (rare), written first.
    extras: Vec<(RouteOp, u32)>,
}

/// Prefix → wanted and kernel routes; see the module comment.
#[derive(Default)]
pub struct Table {
    map: PrefixMap,
    st: State,
}

/// The prefix as the map keys it (host bits cleared), for the side map too.
fn canonical(net: IpNetwork) -> IpNetwork {
    IpNetwork::new(net.network(), net.prefix()).unwrap_or(net)
}

fn form(d: DesiredRoute) -> DesiredForm {
    DesiredForm { kind: d.kind, target: d.route.target, mtu: d.route.mtu }
}

impl State {
    fn queue(&mut self, dst: IpNetwork, e: &mut Entry) {
        if !e.has(QUEUED) {
            e.flags |= QUEUED;
            self.queue.push(dst);
            self.pushed += 1;
        }
    }

    fn winner_kind(&self, e: Entry) -> Option<RouteKind> {
        e.has(DESIRED).then(|| self.forms.kind(e.desired))
    }

    fn count(&mut self, before: Option<RouteKind>, after: Option<RouteKind>) {
        if before == after {
            return;
        }
        if let Some(k) = before
            && let Some(n) = self.by_kind.get_mut(&k)
        {
            *n -= 1;
            if *n == 0 {
                self.by_kind.remove(&k);
            }
        }
        if let Some(k) = after {
            *self.by_kind.entry(k).or_insert(0) += 1;
        }
    }

    /// Points the entry at the first of its several routes.
    fn rewin(&mut self, dst: IpNetwork, e: &mut Entry) {
        let winner = self.multi[&dst][0].clone();
        let id = self.forms.acquire_desired(form(winner));
        self.forms.release_desired(e.desired);
        e.desired = id;
    }

    /// Wants `d` for `dst` besides other kinds' routes.
    fn set(&mut self, dst: IpNetwork, e: &mut Entry, d: DesiredRoute) {
        let before = self.winner_kind(*e);
        if !e.has(DESIRED) {
            e.desired = self.forms.acquire_desired(form(d));
            e.flags |= DESIRED;
        } else if e.has(MULTI) {
            insert_kind(self.multi.get_mut(&dst).expect("multi entry has routes"), d);
            self.rewin(dst, e);
        } else if self.forms.kind(e.desired) == d.kind {
            let id = self.forms.acquire_desired(form(d));
            self.forms.release_desired(e.desired);
            e.desired = id;
        } else {
            // A second kind: keep both in full on the side.
            let old =
                DesiredRoute { route: self.forms.desired_route(dst, e.desired), kind: self.forms.kind(e.desired) };
            let mut kinds = vec![old];
            insert_kind(&mut kinds, d);
            self.multi.insert(dst, kinds);
            e.flags |= MULTI;
            self.rewin(dst, e);
        }
        let after = self.winner_kind(*e);
        self.count(before, after);
        self.queue(dst, e);
    }

    /// No longer wants the routes of `kinds` for `dst`.
    fn remove(&mut self, dst: IpNetwork, e: &mut Entry, kinds: &[RouteKind]) {
        if !e.has(DESIRED) {
            return;
        }
        let before = self.winner_kind(*e);
        if e.has(MULTI) {
            let routes = self.multi.get_mut(&dst).expect("multi entry has routes");
            routes.retain(|d| !kinds.contains(&d.kind));
            match routes.len() {
                0 => {
                    self.multi.remove(&dst);
                    self.forms.release_desired(e.desired);
                    e.flags &= !(DESIRED | MULTI);
                }
                1 => {
                    let last = self.multi.remove(&dst).and_then(|mut v| v.pop()).expect("one left");
                    let id = self.forms.acquire_desired(form(last));
                    self.forms.release_desired(e.desired);
                    e.desired = id;
                    e.flags &= !MULTI;
                }
                _ => self.rewin(dst, e),
            }
        } else if kinds.contains(&self.forms.kind(e.desired)) {
            self.forms.release_desired(e.desired);
            e.flags &= !DESIRED;
        }
        let after = self.winner_kind(*e);
        self.count(before, after);
        self.queue(dst, e);
    }

    fn wants_kind(&self, dst: IpNetwork, e: Entry, kind: RouteKind) -> bool {
        if e.has(MULTI) {
            self.multi[&dst].iter().any(|d| d.kind == kind)
        } else {
            e.has(DESIRED) && self.forms.kind(e.desired) == kind
        }
    }

    fn clear_desired(&mut self, e: &mut Entry) {
        if e.has(DESIRED) {
            self.forms.release_desired(e.desired);
            e.flags &= !(DESIRED | MULTI);
        }
    }

    fn set_kernel(&mut self, e: &mut Entry, k: u32) {
        if e.has(IN_KERNEL) {
            self.forms.kernel.release(e.kernel);
        }
        e.kernel = k;
        e.flags |= IN_KERNEL;
    }

    fn clear_kernel(&mut self, e: &mut Entry) {
        if e.has(IN_KERNEL) {
            self.forms.kernel.release(e.kernel);
            e.flags &= !(IN_KERNEL | ADOPTED);
        }
    }

    /// True when the kernel side has to change for the entry to be right.
    fn needs_op(&self, e: Entry, may_delete: bool) -> bool {
        match (e.has(DESIRED), e.has(IN_KERNEL)) {
            (true, false) => true,
            (true, true) => !self.forms.satisfied(e.desired, e.kernel),
            (false, true) => may_delete || !e.has(ADOPTED),
            (false, false) => false,
        }
    }
}

impl Table {
    /// Prefixes known (wanted, in the kernel, or both).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Prefixes per winning kind.
    pub fn by_kind(&self) -> &BTreeMap<RouteKind, usize> {
        &self.st.by_kind
    }

    /// Prefixes waiting to be looked at, plus pending duplicate deletes.
    pub fn queued(&self) -> usize {
        self.st.queue.len() + self.st.extras.len()
    }

    pub fn has_extras(&self) -> bool {
        !self.st.extras.is_empty()
    }

    pub fn pushed(&self) -> u64 {
        self.st.pushed
    }

    pub fn popped(&self) -> u64 {
        self.st.popped
    }

    pub fn has_desired(&self, dst: &IpNetwork) -> bool {
        self.map.get(dst).is_some_and(|v| Entry::unpack(v).has(DESIRED))
    }

    /// Wants `d` (in addition to other kinds' routes for its prefix).
    pub fn set(&mut self, d: DesiredRoute) {
        let dst = canonical(d.route.dst);
        let st = &mut self.st;
        self.map.update(dst, |old| {
            let mut e = old.map(Entry::unpack).unwrap_or_default();
            st.set(dst, &mut e, d);
            e.keep()
        });
    }

    /// No longer wants the `kind` route for `dst`.
    pub fn remove(&mut self, dst: IpNetwork, kind: RouteKind) {
        self.update(&[kind], dst, None);
    }

    /// See [`PrefixMap::prefetch`].
    pub fn prefetch(&self, dst: &IpNetwork) {
        self.map.prefetch(dst);
    }

    /// The routes of `kinds` for `dst` are replaced by `route` (none when
    /// `None`) in one step.
    pub fn update(&mut self, kinds: &[RouteKind], dst: IpNetwork, route: Option<DesiredRoute>) {
        let dst = canonical(dst);
        if route.is_none() && !self.has_desired(&dst) {
            return;
        }
        let st = &mut self.st;
        self.map.update(dst, |old| {
            let mut e = old.map(Entry::unpack).unwrap_or_default();
            st.remove(dst, &mut e, kinds);
            if let Some(d) = route {
                st.set(dst, &mut e, d);
            }
            e.keep()
        });
    }

    /// The whole set of `kind` routes becomes `routes`: set them all
    /// (marking their prefixes), then drop `kind` from every unmarked prefix.
    pub fn replace_kind(&mut self, kind: RouteKind, routes: Vec<DesiredRoute>) {
        let st = &mut self.st;
        for d in routes {
            let dst = canonical(d.route.dst);
            self.map.update(dst, |old| {
                let mut e = old.map(Entry::unpack).unwrap_or_default();
                st.set(dst, &mut e, d);
                e.flags |= MARK;
                Some(e.pack())
            });
        }
        self.map.retain(|dst, v| {
            let mut e = Entry::unpack(v);
            if e.has(MARK) {
                e.flags &= !MARK;
            } else if st.wants_kind(dst, e, kind) {
                st.remove(dst, &mut e, &[kind]);
            }
            e.keep()
        });
    }

    /// Wants nothing any more (the kernel side is left to a resync).
    pub fn clear_desired(&mut self) {
        let st = &mut self.st;
        self.map.retain(|_, v| {
            let mut e = Entry::unpack(v);
            st.clear_desired(&mut e);
            e.keep()
        });
        st.multi.clear();
        st.by_kind.clear();
    }

    /// The kernel reports our route for `dst` gone; true when it was wanted
    /// (drift: it is queued to come back).
    pub fn kernel_deleted(&mut self, dst: IpNetwork) -> bool {
        let dst = canonical(dst);
        let st = &mut self.st;
        let mut drift = false;
        self.map.update(dst, |old| {
            let mut e = Entry::unpack(old?);
            st.clear_kernel(&mut e);
            if e.has(DESIRED) {
                drift = true;
                st.queue(dst, &mut e);
            }
            e.keep()
        });
        drift
    }

    /// The kernel reports our route for its prefix as `route`; true when
    /// that is not what we want (drift: it is queued to be put right).
    pub fn kernel_changed(&mut self, route: Route) -> bool {
        let dst = canonical(route.dst);
        let st = &mut self.st;
        let k = st.forms.acquire_kernel(KernelForm { target: route.target, mtu: route.mtu });
        let mut drift = false;
        self.map.update(dst, |old| {
            let mut e = old.map(Entry::unpack).unwrap_or_default();
            st.set_kernel(&mut e, k);
            if !(e.has(DESIRED) && st.forms.satisfied(e.desired, e.kernel)) {
                drift = true;
                st.queue(dst, &mut e);
            }
            e.keep()
        });
        drift
    }

    /// Takes a dump as the kernel's state: every prefix's kernel form is
    /// replaced by the dump's (or none), and every prefix that then differs
    /// from what we want is queued. Unwanted routes are queued for deletion
    /// only when `may_delete`, as are extra copies of one prefix.
    pub fn apply_snapshot(&mut self, mut snapshot: Snapshot, may_delete: bool) {
        let st = &mut self.st;
        // Global ids of the dump's forms, each held once while we work.
        let ids: Vec<u32> =
            std::mem::take(&mut snapshot.forms).into_iter().map(|f| st.forms.acquire_kernel(f)).collect();
        {
            let mut ahead = snapshot.routes().skip(PREFETCH_AHEAD);
            for (dst, local) in snapshot.routes() {
                if let Some((next, _)) = ahead.next() {
                    self.map.prefetch(&next);
                }
                let k = ids[local as usize];
                self.map.update(dst, |old| {
                    let mut e = old.map(Entry::unpack).unwrap_or_default();
                    if !e.has(MARK) {
                        e.flags |= MARK;
                        if !e.has(IN_KERNEL) {
                            e.flags |= ADOPTED;
                        }
                        st.forms.kernel.retain(k);
                        st.set_kernel(&mut e, k);
                    } else if may_delete {
                        // Another copy of a prefix already seen: only one stays.
                        st.forms.kernel.retain(k);
                        st.extras.push((RouteOp::Delete(st.forms.kernel_route(dst, k)), k | DUPLICATE));
                    }
                    Some(e.pack())
                });
            }
        }
        drop(snapshot);
        for k in ids {
            st.forms.kernel.release(k);
        }
        self.map.retain(|dst, v| {
            let mut e = Entry::unpack(v);
            if e.has(MARK) {
                e.flags &= !MARK;
            } else {
                st.clear_kernel(&mut e);
            }
            if st.needs_op(e, may_delete) {
                st.queue(dst, &mut e);
            }
            e.keep()
        });
    }

    /// Pops queued prefixes into at most `max_ops` operations (looking at
    /// no more than four times as many prefixes, to stay responsive).
    /// `meta[i]` is the kernel form id `ops[i]` leaves or deletes (a
    /// reference held until [`Table::acknowledge`]).
    ///
    /// May run while an earlier chunk is being written: it stops at a
    /// prefix of that chunk (what the kernel holds for it is not known
    /// yet), which keeps its place at the head of the queue.
    pub fn next_chunk(&mut self, may_delete: bool, max_ops: usize, ops: &mut Vec<RouteOp>, meta: &mut Vec<u32>) {
        let st = &mut self.st;
        while ops.len() < max_ops
            && let Some((op, m)) = st.extras.pop()
        {
            ops.push(op);
            meta.push(m);
        }
        let mut looked = 0;
        while ops.len() < max_ops && looked < 4 * max_ops {
            let Some(dst) = st.queue.pop() else { break };
            if let Some(next) = st.queue.ahead_v4(PREFETCH_AHEAD) {
                self.map.prefetch(&next);
            }
            let mut busy = false;
            self.map.update(dst, |old| {
                let mut e = Entry::unpack(old?);
                if e.has(IN_FLIGHT) {
                    busy = true;
                    return Some(e.pack());
                }
                e.flags &= !QUEUED;
                let op = match (e.has(DESIRED), e.has(IN_KERNEL)) {
                    (true, false) => Some((RouteOp::Add(st.forms.desired_route(dst, e.desired)), e.desired)),
                    (true, true) if !st.forms.satisfied(e.desired, e.kernel) => {
                        Some((RouteOp::Replace(st.forms.desired_route(dst, e.desired)), e.desired))
                    }
                    (false, true) if may_delete || !e.has(ADOPTED) => {
                        st.forms.kernel.retain(e.kernel);
                        ops.push(RouteOp::Delete(st.forms.kernel_route(dst, e.kernel)));
                        meta.push(e.kernel);
                        e.flags |= IN_FLIGHT;
                        None
                    }
                    _ => None,
                };
                if let Some((op, d)) = op {
                    ops.push(op);
                    meta.push(st.forms.acquire_twin(d));
                    e.flags |= IN_FLIGHT;
                }
                e.keep()
            });
            if busy {
                st.queue.push_front(dst);
                break;
            }
            st.popped += 1;
            looked += 1;
        }
    }

    /// Records the outcome of an operation from [`Table::next_chunk`].
    pub fn acknowledge(&mut self, op: &RouteOp, meta: u32, ok: bool) {
        let st = &mut self.st;
        let k = meta & !DUPLICATE;
        if meta & DUPLICATE != 0 {
            st.forms.kernel.release(k);
            return;
        }
        let dst = op.route().dst;
        self.map.update(dst, |old| {
            let mut e = old.map(Entry::unpack).unwrap_or_default();
            e.flags &= !IN_FLIGHT;
            match (op, ok) {
                (RouteOp::Add(_) | RouteOp::Replace(_), true) => {
                    // The operation's reference becomes the entry's.
                    st.set_kernel(&mut e, k);
                    e.flags &= !ADOPTED;
                    if old.is_none() {
                        // Not expected (an entry in flight stays): look again.
                        st.queue(dst, &mut e);
                    }
                }
                (RouteOp::Delete(_), true) => {
                    if e.has(IN_KERNEL) && e.kernel == k {
                        st.clear_kernel(&mut e);
                    }
                    st.forms.kernel.release(k);
                }
                (_, false) => {
                    st.forms.kernel.release(k);
                }
            }
            e.keep()
        });
    }

    /// Forgets the queue (when nothing can be written any more).
    pub fn discard_queue(&mut self) {
        let st = &mut self.st;
        while let Some(dst) = st.queue.pop() {
            st.popped += 1;
            self.map.update(dst, |old| {
                let mut e = Entry::unpack(old?);
                e.flags &= !QUEUED;
                e.keep()
            });
        }
        for (_, m) in std::mem::take(&mut st.extras) {
            st.forms.kernel.release(m & !DUPLICATE);
        }
    }

    /// Gives memory back after a large withdrawal.
    pub fn maybe_shrink(&mut self) {
        self.map.maybe_shrink();
        self.st.queue.maybe_shrink();
        if self.st.multi.capacity() > 64 && self.st.multi.len() < self.st.multi.capacity() / 4 {
            self.st.multi.shrink_to(self.st.multi.len() * 2);
        }
        if self.st.extras.is_empty() {
            self.st.extras = Vec::new();
        }
    }
}

/// Puts `d` among `kinds`, replacing a route of the same kind, keeping kind order.
fn insert_kind(kinds: &mut Vec<DesiredRoute>, d: DesiredRoute) {
    match kinds.binary_search_by_key(&d.kind, |k| k.kind) {
        Ok(i) => kinds[i] = d,
        Err(i) => kinds.insert(i, d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::route::{NextHop, RouteTarget};

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    fn via(gw: &str) -> RouteTarget {
        RouteTarget::Via(NextHop { gateway: gw.parse().unwrap(), ifindex: Some(2), onlink: false })
    }

    fn want(dst: &str, target: RouteTarget, kind: RouteKind) -> DesiredRoute {
        DesiredRoute { route: Route { dst: net(dst), target, mtu: None }, kind }
    }

    /// Pops everything queued and reports every operation as done (or
    /// refused); the operations, for checking.
    fn write(t: &mut Table, may_delete: bool, ok: bool) -> Vec<RouteOp> {
        let mut all = Vec::new();
        while t.queued() > 0 {
            let (mut ops, mut meta) = (Vec::new(), Vec::new());
            t.next_chunk(may_delete, 3, &mut ops, &mut meta);
            for (op, m) in ops.iter().zip(&meta) {
                t.acknowledge(op, *m, ok);
            }
            all.extend(ops);
        }
        all
    }

    fn entry(t: &Table, dst: &str) -> Option<Entry> {
        t.map.get(&net(dst)).map(Entry::unpack)
    }

    #[test]
    fn an_entry_packs_into_56_bits_and_back() {
        let max = (1 << ID_BITS) - 1;
        for e in [
            Entry { desired: max, kernel: max, flags: u8::MAX },
            Entry { desired: 0, kernel: max, flags: IN_KERNEL },
            Entry { desired: 12345, kernel: 0, flags: DESIRED | QUEUED },
            Entry::default(),
        ] {
            assert!(e.pack() <= crate::prefix_map::VALUE_MAX);
            assert_eq!(Entry::unpack(e.pack()), e);
        }
    }

    #[test]
    fn a_route_is_added_once_then_left_alone_and_its_forms_collected_when_gone() {
        let mut t = Table::default();
        t.set(want("10.0.1.0/26", via("192.168.0.2"), RouteKind::RemoteDirect));
        t.set(want("10.0.2.0/26", via("192.168.0.2"), RouteKind::RemoteDirect));
        assert_eq!(t.st.forms.desired.len(), 1, "two prefixes, one form");
        let ops = write(&mut t, true, true);
        assert_eq!(ops.len(), 2);
        assert!(ops.iter().all(|op| matches!(op, RouteOp::Add(_))));
        // Wanting the same again queues it but writes nothing.
        t.set(want("10.0.1.0/26", via("192.168.0.2"), RouteKind::RemoteDirect));
        assert_eq!(t.queued(), 1);
        assert!(write(&mut t, true, true).is_empty());
        assert_eq!(t.by_kind().get(&RouteKind::RemoteDirect), Some(&2));

        t.replace_kind(RouteKind::RemoteDirect, Vec::new());
        assert!(t.by_kind().is_empty());
        let ops = write(&mut t, true, true);
        assert_eq!(ops.len(), 2);
        assert!(ops.iter().all(|op| matches!(op, RouteOp::Delete(_))));
        assert_eq!(t.len(), 0, "nothing left to remember");
        assert_eq!((t.st.forms.desired.len(), t.st.forms.kernel.len()), (0, 0), "every form collected");
    }

    #[test]
    fn several_kinds_on_one_prefix_the_lowest_wins_and_moves_are_replaces() {
        let mut t = Table::default();
        let p = "10.0.1.0/26";
        t.set(want(p, via("192.168.0.2"), RouteKind::RemoteIpip));
        write(&mut t, true, true);
        t.set(want(p, RouteTarget::Device { ifindex: 9 }, RouteKind::LocalWorkload));
        assert!(entry(&t, p).unwrap().has(MULTI));
        assert_eq!(t.by_kind(), &BTreeMap::from([(RouteKind::LocalWorkload, 1)]));
        let ops = write(&mut t, true, true);
        assert_eq!(
            ops,
            vec![RouteOp::Replace(Route { dst: net(p), target: RouteTarget::Device { ifindex: 9 }, mtu: None })]
        );

        // The winner goes: the other kind's route takes over, in place.
        t.remove(net(p), RouteKind::LocalWorkload);
        assert!(!entry(&t, p).unwrap().has(MULTI), "one kind left: back in the table alone");
        assert!(t.st.multi.is_empty());
        assert_eq!(t.by_kind(), &BTreeMap::from([(RouteKind::RemoteIpip, 1)]));
        assert_eq!(
            write(&mut t, true, true),
            vec![RouteOp::Replace(want(p, via("192.168.0.2"), RouteKind::RemoteIpip).route)]
        );

        // Moving between two kinds in one update never deletes.
        t.update(
            &[RouteKind::RemoteDirect, RouteKind::RemoteIpip],
            net(p),
            Some(want(p, via("192.168.0.3"), RouteKind::RemoteDirect)),
        );
        assert_eq!(t.by_kind(), &BTreeMap::from([(RouteKind::RemoteDirect, 1)]));
        assert_eq!(
            write(&mut t, true, true),
            vec![RouteOp::Replace(want(p, via("192.168.0.3"), RouteKind::RemoteDirect).route)]
        );

        // A kind's replacement set drops it only where it is not listed.
        t.set(want(p, RouteTarget::Blackhole, RouteKind::Blackhole));
        t.set(want("10.0.9.0/26", RouteTarget::Blackhole, RouteKind::Blackhole));
        t.replace_kind(RouteKind::RemoteDirect, vec![want("10.0.5.0/26", via("192.168.0.5"), RouteKind::RemoteDirect)]);
        assert_eq!(t.by_kind(), &BTreeMap::from([(RouteKind::RemoteDirect, 1), (RouteKind::Blackhole, 2)]));
        assert!(t.st.multi.is_empty());
        let mut ops = write(&mut t, true, true);
        ops.sort_by_key(|op| op.route().dst.to_string());
        assert_eq!(
            ops,
            vec![
                RouteOp::Replace(want(p, RouteTarget::Blackhole, RouteKind::Blackhole).route),
                RouteOp::Add(want("10.0.5.0/26", via("192.168.0.5"), RouteKind::RemoteDirect).route),
                RouteOp::Add(want("10.0.9.0/26", RouteTarget::Blackhole, RouteKind::Blackhole).route),
            ]
        );
        t.clear_desired();
        assert!(t.by_kind().is_empty());
        write(&mut t, true, true);
        assert_eq!(t.st.forms.desired.len(), 0);

        // Host bits are ignored, in the side map too.
        t.set(want("10.0.7.1/24", via("192.168.0.2"), RouteKind::RemoteIpip));
        t.set(want("10.0.7.0/24", RouteTarget::Blackhole, RouteKind::Blackhole));
        t.replace_kind(RouteKind::RemoteIpip, Vec::new());
        assert_eq!(t.by_kind(), &BTreeMap::from([(RouteKind::Blackhole, 1)]));
        assert!(t.st.multi.is_empty());
    }

    #[test]
    fn changes_while_an_operation_is_in_flight_are_written_after_it() {
        let mut t = Table::default();
        let p = "10.0.1.0/26";
        t.set(want(p, via("192.168.0.2"), RouteKind::RemoteDirect));
        let (mut ops, mut meta) = (Vec::new(), Vec::new());
        t.next_chunk(true, 10, &mut ops, &mut meta);
        assert_eq!(ops.len(), 1);
        // Withdrawn while its add is being written: the entry stays until the add is known.
        t.remove(net(p), RouteKind::RemoteDirect);
        assert!(entry(&t, p).is_some());
        t.acknowledge(&ops[0], meta[0], true);
        assert!(matches!(write(&mut t, true, true)[..], [RouteOp::Delete(_)]));
        assert_eq!(t.len(), 0);
        // A refused add leaves nothing behind in the kernel view.
        t.set(want(p, via("192.168.0.2"), RouteKind::RemoteDirect));
        write(&mut t, true, false);
        assert!(!entry(&t, p).unwrap().has(IN_KERNEL));
        assert_eq!(t.st.forms.kernel.len(), 1, "only the desired form's twin is left");
    }

    #[test]
    fn the_next_chunk_stops_at_a_prefix_still_in_flight_and_keeps_its_place() {
        let mut t = Table::default();
        let (a, b, c) = ("10.0.1.0/26", "10.0.2.0/26", "10.0.3.0/26");
        t.set(want(a, via("192.168.0.2"), RouteKind::RemoteDirect));
        let (mut first, mut first_meta) = (Vec::new(), Vec::new());
        t.next_chunk(true, 10, &mut first, &mut first_meta);
        // While `a` is written: it changes again, and others arrive behind it.
        t.set(want(a, via("192.168.0.3"), RouteKind::RemoteDirect));
        t.set(want(b, via("192.168.0.2"), RouteKind::RemoteDirect));
        let pushed = t.pushed();
        let (mut second, mut second_meta) = (Vec::new(), Vec::new());
        t.next_chunk(true, 10, &mut second, &mut second_meta);
        assert!(second.is_empty(), "nothing may overtake `a`: {second:?}");
        assert_eq!(t.popped(), 1, "the prefix put back is not counted as taken");
        t.acknowledge(&first[0], first_meta[0], true);
        t.set(want(c, via("192.168.0.2"), RouteKind::RemoteDirect));
        let (mut third, mut third_meta) = (Vec::new(), Vec::new());
        t.next_chunk(true, 10, &mut third, &mut third_meta);
        assert_eq!(
            third.iter().map(|op| op.route().dst.to_string()).collect::<Vec<_>>(),
            [a, b, c],
            "in the order they were queued"
        );
        assert!(matches!(third[0], RouteOp::Replace(_)), "a's add is known: the change is a replace");
        assert_eq!(t.popped(), pushed + 1);
    }

    #[test]
    fn before_the_first_reconcile_only_a_previous_runs_routes_are_kept() {
        let mut t = Table::default();
        let kernel = |dst: &str| Route { dst: net(dst), target: via("192.168.0.2"), mtu: None };
        // Found at start: a previous run's route.
        let mut found = Snapshot::default();
        found.push(kernel("10.0.9.0/26"));
        t.apply_snapshot(found, false);
        // Written by this run, then no longer wanted (a withdrawn BGP route).
        t.set(want("10.0.1.0/26", via("192.168.0.2"), RouteKind::RemoteDirect));
        assert_eq!(write(&mut t, false, true), vec![RouteOp::Add(kernel("10.0.1.0/26"))]);
        t.update(&[RouteKind::RemoteDirect], net("10.0.1.0/26"), None);
        // The unwanted adopted route is queued too (wanted once, then not).
        t.set(want("10.0.9.0/26", via("192.168.0.2"), RouteKind::RemoteDirect));
        t.update(&[RouteKind::RemoteDirect], net("10.0.9.0/26"), None);
        assert_eq!(
            write(&mut t, false, true),
            vec![RouteOp::Delete(kernel("10.0.1.0/26"))],
            "ours goes at once, the previous run's waits for the first full reconcile"
        );
        assert!(entry(&t, "10.0.9.0/26").unwrap().has(IN_KERNEL));
        // Rewritten by this run, a route is no longer the previous run's.
        t.set(want("10.0.9.0/26", via("192.168.0.3"), RouteKind::RemoteDirect));
        assert!(matches!(write(&mut t, false, true)[..], [RouteOp::Replace(_)]));
        t.update(&[RouteKind::RemoteDirect], net("10.0.9.0/26"), None);
        assert!(matches!(write(&mut t, false, true)[..], [RouteOp::Delete(_)]));
    }

    #[test]
    fn a_dump_replaces_the_kernel_view_and_queues_the_differences() {
        let mut t = Table::default();
        t.set(want("10.0.1.0/26", via("192.168.0.2"), RouteKind::RemoteDirect));
        t.set(want("10.0.2.0/26", via("192.168.0.2"), RouteKind::RemoteDirect));
        t.set(want("10.0.3.0/26", via("192.168.0.2"), RouteKind::RemoteDirect));
        write(&mut t, true, true);
        let kernel = |dst: &str, target| Route { dst: net(dst), target, mtu: None };
        let mut s = Snapshot::default();
        s.push(kernel("10.0.1.0/26", via("192.168.0.2"))); // right
        s.push(kernel("10.0.1.0/26", via("192.168.0.7"))); // a second copy
        s.push(kernel("10.0.2.0/26", via("192.168.0.9"))); // changed behind our back
        s.push(kernel("10.0.8.0/26", via("192.168.0.2"))); // not wanted
        // 10.0.3.0/26 is missing.
        let mut before_sync = Snapshot::default();
        for (dst, id) in s.routes() {
            before_sync.push(s.forms[id as usize].route(dst));
        }
        t.apply_snapshot(before_sync, false);
        let mut ops = write(&mut t, false, true);
        ops.sort_by_key(|op| op.route().dst.to_string());
        assert_eq!(
            ops,
            vec![
                RouteOp::Replace(kernel("10.0.2.0/26", via("192.168.0.2"))),
                RouteOp::Add(kernel("10.0.3.0/26", via("192.168.0.2")))
            ],
            "before the first complete reconcile nothing is deleted"
        );
        t.apply_snapshot(s, true);
        let mut ops = write(&mut t, true, true);
        ops.sort_by_key(|op| op.route().dst.to_string());
        assert_eq!(
            ops,
            vec![
                RouteOp::Delete(kernel("10.0.1.0/26", via("192.168.0.7"))),
                RouteOp::Replace(kernel("10.0.2.0/26", via("192.168.0.2"))),
                RouteOp::Add(kernel("10.0.3.0/26", via("192.168.0.2"))),
                RouteOp::Delete(kernel("10.0.8.0/26", via("192.168.0.2"))),
            ]
        );
        assert!(entry(&t, "10.0.1.0/26").unwrap().has(IN_KERNEL), "deleting the copy keeps the one we track");
        assert_eq!(t.len(), 3);
        assert_eq!(t.st.forms.kernel.len(), 1, "the dump's other forms are collected");
    }

    mod against_the_reference {
        use super::*;
        use crate::dataplane::reconcile::diff;
        use proptest::prelude::*;

        fn target(i: u8) -> RouteTarget {
            match i % 4 {
                0 => RouteTarget::Blackhole,
                1 => RouteTarget::Device { ifindex: 9 },
                2 => via("192.168.0.2"),
                _ => RouteTarget::from_next_hops(vec![
                    NextHop { gateway: "192.168.0.2".parse().unwrap(), ifindex: None, onlink: false },
                    NextHop { gateway: "192.168.0.3".parse().unwrap(), ifindex: Some(2), onlink: false },
                ])
                .unwrap(),
            }
        }

        fn route(p: u8, t: u8, v6: bool) -> Route {
            let dst = if v6 { format!("fd00:{p}::/64") } else { format!("10.0.{p}.0/24") };
            Route { dst: net(&dst), target: target(t), mtu: (t >= 4).then_some(1400) }
        }

        fn sorted(mut ops: Vec<RouteOp>) -> Vec<String> {
            ops.sort_by_key(|op| format!("{op:?}"));
            ops.iter().map(|op| format!("{op:?}")).collect()
        }

        proptest! {
            /// A resync through the table writes exactly what the pure
            /// `reconcile::diff` says, whatever the dump holds
            /// (duplicates included) and whatever was written before.
            #[test]
            fn a_resync_writes_what_reconcile_diff_says(
                want in proptest::collection::vec((0u8..12, 0u8..8, any::<bool>()), 0..20),
                before in proptest::collection::vec((0u8..12, 0u8..8, any::<bool>()), 0..20),
                dump in proptest::collection::vec((0u8..12, 0u8..8, any::<bool>()), 0..20),
            ) {
                let mut t = Table::default();
                // Some history: another desired set, written, then replaced.
                for (p, tg, v6) in before {
                    t.set(DesiredRoute { route: route(p, tg, v6), kind: RouteKind::RemoteIpip });
                }
                write(&mut t, true, true);
                let mut reference = FxHashMap::default();
                let desired: Vec<DesiredRoute> = want
                    .into_iter()
                    .map(|(p, tg, v6)| DesiredRoute { route: route(p, tg, v6), kind: RouteKind::RemoteDirect })
                    .collect();
                for d in &desired {
                    reference.insert(d.route.dst, d.clone());
                }
                t.replace_kind(RouteKind::RemoteIpip, Vec::new());
                t.replace_kind(RouteKind::RemoteDirect, desired);
                let kernel: Vec<Route> = dump.into_iter().map(|(p, tg, v6)| route(p, tg, v6)).collect();
                // The dump lists IPv4 first; so does the snapshot, keeping order within a family.
                let mut in_order: Vec<Route> = kernel.iter().filter(|r| r.dst.is_ipv4()).cloned().collect();
                in_order.extend(kernel.iter().filter(|r| r.dst.is_ipv6()).cloned());
                let mut s = Snapshot::default();
                for r in &in_order {
                    s.push(r.clone());
                }
                t.apply_snapshot(s, true);
                prop_assert_eq!(sorted(write(&mut t, true, true)), sorted(diff(&reference, &in_order)));
                // Afterwards the table is what it wants, and holds only the forms it uses.
                prop_assert_eq!(t.len(), reference.len());
                prop_assert_eq!(t.queued(), 0);
                t.clear_desired();
                t.apply_snapshot(Snapshot::default(), true);
                prop_assert_eq!(t.len(), 0);
                prop_assert_eq!((t.st.forms.desired.len(), t.st.forms.kernel.len()), (0, 0));
            }
        }
    }

    #[test]
    fn kernel_events_update_the_view_and_queue_drift() {
        let mut t = Table::default();
        let r = want("10.0.1.0/26", via("192.168.0.2"), RouteKind::RemoteDirect);
        t.set(r.clone());
        write(&mut t, true, true);
        assert!(!t.kernel_changed(r.route.clone()), "our own write coming back is no drift");
        assert_eq!(t.queued(), 0);
        assert!(t.kernel_deleted(r.route.dst));
        assert_eq!(write(&mut t, true, true), vec![RouteOp::Add(r.route.clone())]);
        let elsewhere = Route { target: via("192.168.0.9"), ..r.route.clone() };
        assert!(t.kernel_changed(elsewhere));
        assert_eq!(write(&mut t, true, true), vec![RouteOp::Replace(r.route.clone())]);
        assert!(!t.kernel_deleted(net("10.9.9.0/24")), "unknown prefixes are ignored");
        assert_eq!(t.len(), 1);
    }
}
