//! What the peers still have to recompute, held once for all of them: a log
//! of the Loc-RIB's changed prefixes that each peer reads from its own
//! position, and dumps of the whole table (a session's start, a route
//! refresh, new export settings) that peers starting together share.
//!
//! A peer only keeps a position in the log and, while it dumps, a position in
//! a shared snapshot. Per-peer dirty sets were mostly the same prefixes once
//! per peer: a reflector with a thousand clients held a million entries at
//! its peak, where the log holds a thousand.
//!
//! A prefix is in the log once, at its latest change: a change to a prefix
//! a peer has not read yet moves it, so the peer reads it once; a change to
//! one it has read puts it ahead of it again. Entries every reading peer has
//! passed are dropped ([`ChangeLog::trim`]), so the log is empty when all
//! peers are in step, whatever the size of the table.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use ipnetwork::IpNetwork;

use crate::prefix_map::PrefixMap;

/// A position in the log: the sequence number of the next change to read.
pub type Seq = u64;

/// Changes before a snapshot's that a new dump may still read from the log
/// instead of taking a new snapshot, as a share of the snapshot's size: a
/// dump of an older snapshot recomputes its changed prefixes twice.
const REUSE_SHARE: usize = 4;
/// A snapshot is reused for at least this many changes, whatever its size.
const REUSE_MIN: u64 = 1024;

/// The changed prefixes, each once, in the order of their latest change.
///
/// A change appends the prefix and records its position; the entry of an
/// earlier change of it is left in place, stale, and skipped by readers
/// (it is the recorded position that says which entry counts). Stale
/// entries go with the trim like the others. A change costs an 18-octet
/// entry, and a prefix in the log a [`PrefixMap`] entry (12 octets for IPv4);
/// the log holds changes only while some peer is behind.
#[derive(Debug, Default)]
pub struct ChangeLog {
    /// The change numbered `base + i` at `i`.
    entries: VecDeque<IpNetwork>,
    /// The position of each prefix's latest change in the log.
    at: PrefixMap,
    /// The number of the first entry.
    base: Seq,
}

impl ChangeLog {
    /// The position after every change so far.
    pub fn head(&self) -> Seq {
        self.base + self.entries.len() as Seq
    }

    /// Prefixes in the log.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// Records a change of `net`.
    pub fn push(&mut self, net: IpNetwork) {
        self.at.insert(net, self.head());
        self.entries.push_back(net);
    }

    /// The first prefix at or after `cursor`, moving `cursor` past it.
    pub fn next(&self, cursor: &mut Seq) -> Option<IpNetwork> {
        debug_assert!(*cursor >= self.base, "a reader behind the log's start");
        let start = cursor.saturating_sub(self.base);
        for (seq, &net) in (start..).zip(self.entries.range(start as usize..)) {
            let seq = self.base + seq;
            if self.at.get(&net) == Some(seq) {
                *cursor = seq + 1;
                return Some(net);
            }
        }
        *cursor = self.head();
        None
    }

    /// True when `cursor` has read every change (the newest entry is never
    /// stale, so any entry at or after `cursor` means one to read).
    pub fn caught_up(&self, cursor: Seq) -> bool {
        cursor >= self.head()
    }

    /// Drops the changes before `oldest`, the position of the slowest reader
    /// ([`Self::head`] when nobody reads).
    pub fn trim(&mut self, oldest: Seq) {
        let oldest = oldest.min(self.head());
        while self.base < oldest {
            let Some(net) = self.entries.pop_front() else { break };
            if self.at.get(&net) == Some(self.base) {
                self.at.remove(&net);
            }
            self.base += 1;
        }
        if self.entries.is_empty() {
            // Everyone is in step: hold no memory.
            self.entries = VecDeque::new();
            self.at = PrefixMap::default();
        }
    }

    /// True when every change from `seq` on is still in the log.
    pub fn holds_from(&self, seq: Seq) -> bool {
        seq >= self.base
    }
}

/// A peer's position in the table dump it is sending.
#[derive(Debug)]
pub struct Dump {
    nets: Arc<[IpNetwork]>,
    next: usize,
}

/// What a peer has left to recompute: the rest of its dump, then the log from `cursor`.
#[derive(Debug, Default)]
pub struct PeerFeed {
    pub cursor: Seq,
    dump: Option<Dump>,
}

impl PeerFeed {
    /// The next prefix to recompute, from the dump first.
    pub fn next(&mut self, log: &ChangeLog) -> Option<IpNetwork> {
        if let Some(dump) = &mut self.dump {
            if let Some(&net) = dump.nets.get(dump.next) {
                dump.next += 1;
                return Some(net);
            }
            // Done: let the snapshot go with its last reader.
            self.dump = None;
        }
        log.next(&mut self.cursor)
    }

    /// True when nothing is left to recompute.
    pub fn caught_up(&self, log: &ChangeLog) -> bool {
        self.dump.as_ref().is_none_or(|d| d.next >= d.nets.len()) && log.caught_up(self.cursor)
    }

    /// Forgets everything left (the session went down).
    pub fn clear(&mut self, log: &ChangeLog) {
        self.dump = None;
        self.cursor = log.head();
    }

    /// Prefixes left in the dump.
    pub fn dump_left(&self) -> usize {
        self.dump.as_ref().map_or(0, |d| d.nets.len().saturating_sub(d.next))
    }
}

/// The latest table snapshot, shared by the dumps that start before the log
/// has moved far past it.
#[derive(Debug, Default)]
pub struct Snapshots {
    latest: Option<(Weak<[IpNetwork]>, Seq)>,
}

impl Snapshots {
    /// Starts a dump of the whole table for `feed`: `table` gives the
    /// table's prefixes when a new snapshot is needed.
    pub fn start(&mut self, feed: &mut PeerFeed, log: &ChangeLog, table: impl FnOnce() -> Vec<IpNetwork>) {
        let reuse = self.latest.as_ref().and_then(|(weak, seq)| {
            // Alive only in a dump not finished, whose reader's cursor is still
            // at the snapshot: the log holds every change since.
            let nets = weak.upgrade()?;
            debug_assert!(log.holds_from(*seq), "a snapshot outlived its changes");
            let moved = log.head() - seq;
            (moved <= REUSE_MIN.max((nets.len() / REUSE_SHARE) as u64)).then_some((nets, *seq))
        });
        let (nets, seq) = reuse.unwrap_or_else(|| {
            let nets: Arc<[IpNetwork]> = table().into();
            self.latest = Some((Arc::downgrade(&nets), log.head()));
            (nets, log.head())
        });
        // Every change since the snapshot is read from the log after it.
        feed.cursor = seq;
        feed.dump = (!nets.is_empty()).then_some(Dump { nets, next: 0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    fn net(i: u8) -> IpNetwork {
        IpNetwork::V4(ipnetwork::Ipv4Network::new([10, 0, i, 0].into(), 24).unwrap())
    }

    #[test]
    fn a_prefix_changed_again_before_a_reader_gets_to_it_is_read_once() {
        let mut log = ChangeLog::default();
        let (mut slow, mut fast) = (0, 0);
        log.push(net(1));
        assert_eq!(log.next(&mut fast), Some(net(1)));
        log.push(net(2));
        log.push(net(1));
        let read: Vec<_> = std::iter::from_fn(|| log.next(&mut slow)).collect();
        assert_eq!(read, vec![net(2), net(1)], "the slow reader sees each once");
        let read: Vec<_> = std::iter::from_fn(|| log.next(&mut fast)).collect();
        assert_eq!(read, vec![net(2), net(1)], "the fast reader sees 10.0.1.0/24 again");
        log.trim(slow.min(fast));
        assert!(log.is_empty() && log.caught_up(slow));
    }

    #[test]
    fn dumps_starting_together_share_one_snapshot_and_a_moved_log_takes_a_new_one() {
        let mut log = ChangeLog::default();
        let mut snapshots = Snapshots::default();
        let (mut a, mut b, mut c) = (PeerFeed::default(), PeerFeed::default(), PeerFeed::default());
        let taken = std::cell::Cell::new(0);
        let table = |n: u8| {
            taken.set(taken.get() + 1);
            (0..n).map(net).collect::<Vec<_>>()
        };
        snapshots.start(&mut a, &log, || table(3));
        log.push(net(9));
        snapshots.start(&mut b, &log, || table(4));
        assert_eq!(taken.get(), 1, "b reads the change from the log");
        let read: Vec<_> = std::iter::from_fn(|| b.next(&log)).collect();
        assert_eq!(read, vec![net(0), net(1), net(2), net(9)]);
        // Everyone past the change: the log drops it, and a snapshot from before it is of no use.
        while a.next(&log).is_some() {}
        log.trim(a.cursor.min(b.cursor));
        snapshots.start(&mut c, &log, || table(4));
        assert_eq!(taken.get(), 2, "the log no longer holds what the old snapshot misses");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Change(u8),
        Read(usize, u8),
        Dump(usize),
        Down(usize),
        Trim,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..12).prop_map(Op::Change),
            4 => (0usize..3, 1u8..6).prop_map(|(p, k)| Op::Read(p, k)),
            1 => (0usize..3).prop_map(Op::Dump),
            1 => (0usize..3).prop_map(Op::Down),
            2 => Just(Op::Trim),
        ]
    }

    proptest! {
        /// Against per-peer dirty sets (the plain model): whenever a peer has
        /// read everything, it has read every prefix the model marked for it
        /// since it was last in step, and nothing else.
        #[test]
        fn each_peer_reads_what_its_own_dirty_set_would_hold(ops in proptest::collection::vec(op(), 1..200)) {
            let mut log = ChangeLog::default();
            let mut snapshots = Snapshots::default();
            let mut feeds: Vec<PeerFeed> = (0..3).map(|_| PeerFeed::default()).collect();
            let mut up = [false; 3];
            // The model: the table, and per peer a dirty set.
            let mut table: BTreeSet<IpNetwork> = BTreeSet::new();
            let mut dirty: Vec<BTreeSet<IpNetwork>> = vec![BTreeSet::new(); 3];
            let mut read: Vec<HashMap<IpNetwork, usize>> = vec![HashMap::new(); 3];
            for op in ops {
                match op {
                    Op::Change(i) => {
                        table.insert(net(i));
                        log.push(net(i));
                        for p in 0..3 {
                            if up[p] {
                                dirty[p].insert(net(i));
                            }
                        }
                    }
                    Op::Dump(p) => {
                        up[p] = true;
                        snapshots.start(&mut feeds[p], &log, || table.iter().copied().collect());
                        dirty[p].extend(table.iter().copied());
                    }
                    Op::Down(p) => {
                        up[p] = false;
                        feeds[p].clear(&log);
                        dirty[p].clear();
                        read[p].clear();
                    }
                    Op::Read(p, k) => {
                        if !up[p] {
                            continue;
                        }
                        for _ in 0..k {
                            let Some(n) = feeds[p].next(&log) else { break };
                            *read[p].entry(n).or_default() += 1;
                        }
                        if feeds[p].caught_up(&log) {
                            let seen: BTreeSet<IpNetwork> = read[p].keys().copied().collect();
                            prop_assert_eq!(&seen, &dirty[p], "peer {} read other prefixes than marked", p);
                            dirty[p].clear();
                            read[p].clear();
                        }
                    }
                    Op::Trim => {
                        let oldest = (0..3).filter(|&p| up[p]).map(|p| feeds[p].cursor).min().unwrap_or(log.head());
                        log.trim(oldest);
                    }
                }
            }
        }
    }
}
