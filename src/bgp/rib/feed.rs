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
//! A prefix is read once per change after a peer's position: a change to a
//! prefix the peer has not read yet moves it, so the peer reads it once; a
//! change to one it has read puts it ahead of it again. Entries every reading
//! peer has passed are dropped ([`Changes::trim`]), so the log is empty when
//! all peers are in step, whatever the size of the table.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use ipnetwork::IpNetwork;

use super::net::family;
use crate::bgp::packet::Family;
use crate::prefix_map::PrefixMap;

/// A position in the log: the number of the next change to read.
pub type Seq = u64;

/// Changes before a snapshot's that a new dump may still read from the log
/// instead of taking a new snapshot, as a share of the snapshot's size: a
/// dump of an older snapshot recomputes its changed prefixes twice.
const REUSE_SHARE: usize = 4;
/// A snapshot is reused for at least this many changes, whatever its size.
const REUSE_MIN: u64 = 1024;
/// Stale entries the log keeps beyond as many as it has live ones before it
/// drops them.
const STALE_SLACK: usize = 4096;

/// The changed prefixes, in the order of their latest change.
///
/// A change appends the prefix with its number and records that number as
/// the prefix's latest; the entry of an earlier change of it stays in place,
/// stale, and readers skip it. Stale entries go with the trim, or when they
/// outnumber the live ones (a peer far behind while a prefix flaps): a
/// change costs 26 octets in the log and a prefix a [`PrefixMap`] entry (12
/// octets for IPv4), and the log is at most about twice the prefixes in it.
#[derive(Debug, Default)]
pub struct ChangeLog {
    /// Each entry's change number, ascending.
    seqs: VecDeque<Seq>,
    nets: VecDeque<IpNetwork>,
    /// The number of each prefix's latest change, the entry that counts.
    at: PrefixMap,
    /// The next change's number.
    head: Seq,
    /// Changes before this number are dropped.
    base: Seq,
}

impl ChangeLog {
    /// The position after every change so far.
    pub fn head(&self) -> Seq {
        self.head
    }

    fn push(&mut self, net: IpNetwork) {
        self.at.insert(net, self.head);
        self.seqs.push_back(self.head);
        self.nets.push_back(net);
        self.head += 1;
        if self.seqs.len() > 2 * self.at.len() + STALE_SLACK {
            self.drop_stale();
        }
    }

    /// Keeps the live entries only, with their numbers (readers' positions stay valid).
    fn drop_stale(&mut self) {
        let at = &self.at;
        let live: Vec<(Seq, IpNetwork)> =
            self.seqs.iter().copied().zip(self.nets.iter().copied()).filter(|(s, n)| at.get(n) == Some(*s)).collect();
        (self.seqs, self.nets) = live.into_iter().unzip();
    }

    /// The first prefix at or after `cursor`, moving `cursor` past it.
    pub fn next(&self, cursor: &mut Seq) -> Option<IpNetwork> {
        debug_assert!(*cursor >= self.base, "a reader behind the log's start");
        let start = self.seqs.partition_point(|s| s < cursor);
        for (&seq, &net) in self.seqs.range(start..).zip(self.nets.range(start..)) {
            if self.at.get(&net) == Some(seq) {
                *cursor = seq + 1;
                return Some(net);
            }
        }
        *cursor = self.head;
        None
    }

    /// True when `cursor` has read every change (the newest entry is never
    /// stale, so any entry at or after `cursor` means one to read).
    pub fn caught_up(&self, cursor: Seq) -> bool {
        cursor >= self.head
    }

    fn trim(&mut self, oldest: Seq) {
        let oldest = oldest.min(self.head);
        while self.seqs.front().is_some_and(|&s| s < oldest) {
            let (Some(seq), Some(net)) = (self.seqs.pop_front(), self.nets.pop_front()) else { break };
            if self.at.get(&net) == Some(seq) {
                self.at.remove(&net);
            }
        }
        self.base = self.base.max(oldest);
        if self.seqs.is_empty() {
            // Everyone is in step: hold no memory.
            self.seqs = VecDeque::new();
            self.nets = VecDeque::new();
            self.at = PrefixMap::default();
        }
    }

    /// True when every change from `seq` on is still in the log.
    fn holds_from(&self, seq: Seq) -> bool {
        seq >= self.base
    }
}

/// A peer's position in the table dump it is sending.
#[derive(Debug)]
struct Dump {
    nets: Arc<[IpNetwork]>,
    next: usize,
    /// The family dumped (a route refresh's), or all.
    only: Option<Family>,
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
            while let Some(&net) = dump.nets.get(dump.next) {
                dump.next += 1;
                if dump.only.is_none_or(|f| f == family(&net)) {
                    return Some(net);
                }
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

    /// Forgets everything left (the session went down): the next dump starts afresh.
    pub fn clear(&mut self, log: &ChangeLog) {
        self.dump = None;
        self.cursor = log.head();
    }
}

/// The log and the latest table snapshot, which dumps share while the log
/// holds every change since it.
#[derive(Debug, Default)]
pub struct Changes {
    log: ChangeLog,
    latest: Option<(Weak<[IpNetwork]>, Seq)>,
}

impl Changes {
    pub fn log(&self) -> &ChangeLog {
        &self.log
    }

    /// A change of `net`'s best path or ECMP set; `wanted` when a peer with a
    /// session may see a difference. An unwanted change is not logged, so a
    /// snapshot taken before it no longer tells a new dump the whole table.
    pub fn record(&mut self, net: IpNetwork, wanted: bool) {
        if wanted {
            self.log.push(net);
        } else {
            self.latest = None;
        }
    }

    /// Starts a dump of the whole table (of family `only`, if given) for
    /// `feed`: `table` gives the table's prefixes when a new snapshot is
    /// needed. A peer with a session keeps its place in the log if that is
    /// earlier: changes before the snapshot may be withdrawals it was not
    /// sent yet, of prefixes the snapshot no longer has. (Its place is in the
    /// log: the trim waits for every peer with a session, and a peer coming
    /// up was cleared to the head.)
    pub fn start(&mut self, feed: &mut PeerFeed, only: Option<Family>, table: impl FnOnce() -> Vec<IpNetwork>) {
        let log = &self.log;
        let reuse = self.latest.as_ref().and_then(|(weak, seq)| {
            // Alive only in a dump not finished, whose reader's cursor is still
            // at or before the snapshot: the log holds every change since.
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
        debug_assert!(log.holds_from(feed.cursor), "a reader behind the log's start");
        // Every change since the snapshot is read from the log after it.
        feed.cursor = feed.cursor.min(seq);
        // A dump under way of another family goes on in the new one.
        let only = match &feed.dump {
            Some(d) if d.next < d.nets.len() && d.only != only => None,
            _ => only,
        };
        feed.dump = (!nets.is_empty()).then_some(Dump { nets, next: 0, only });
    }

    /// Drops the changes before `oldest`, the position of the slowest peer
    /// with a session ([`ChangeLog::head`] when there is none).
    pub fn trim(&mut self, oldest: Seq) {
        self.log.trim(oldest);
    }
}

#[cfg(test)]
impl ChangeLog {
    fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    /// Entries held, stale ones included.
    fn entries(&self) -> usize {
        self.seqs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    /// IPv4 below 8, IPv6 from 8.
    fn net(i: u8) -> IpNetwork {
        if i < 8 {
            IpNetwork::V4(ipnetwork::Ipv4Network::new([10, 0, i, 0].into(), 24).unwrap())
        } else {
            IpNetwork::V6(ipnetwork::Ipv6Network::new([0x2001, 0xdb8, u16::from(i), 0, 0, 0, 0, 0].into(), 64).unwrap())
        }
    }

    #[test]
    fn a_prefix_changed_again_before_a_reader_gets_to_it_is_read_once() {
        let mut changes = Changes::default();
        let (mut slow, mut fast) = (0, 0);
        changes.record(net(1), true);
        assert_eq!(changes.log().next(&mut fast), Some(net(1)));
        changes.record(net(2), true);
        changes.record(net(1), true);
        let log = changes.log();
        let read: Vec<_> = std::iter::from_fn(|| log.next(&mut slow)).collect();
        assert_eq!(read, vec![net(2), net(1)], "the slow reader sees each once");
        let read: Vec<_> = std::iter::from_fn(|| log.next(&mut fast)).collect();
        assert_eq!(read, vec![net(2), net(1)], "the fast reader sees 10.0.1.0/24 again");
        changes.trim(slow.min(fast));
        assert!(changes.log().is_empty() && changes.log().caught_up(slow));
    }

    #[test]
    fn a_prefix_flapping_behind_a_stuck_reader_keeps_the_log_bounded() {
        let mut changes = Changes::default();
        let mut stuck = 0;
        for _ in 0..100_000 {
            changes.record(net(1), true);
            changes.record(net(2), true);
        }
        assert!(changes.log().entries() <= 2 * 2 + STALE_SLACK + 1, "{} entries", changes.log().entries());
        let log = changes.log();
        let read: Vec<_> = std::iter::from_fn(|| log.next(&mut stuck)).collect();
        assert_eq!(read, vec![net(1), net(2)]);
    }

    #[test]
    fn dumps_starting_together_share_one_snapshot_and_a_moved_log_takes_a_new_one() {
        let mut changes = Changes::default();
        let (mut a, mut b, mut c) = (PeerFeed::default(), PeerFeed::default(), PeerFeed::default());
        let taken = std::cell::Cell::new(0);
        let table = |n: u8| {
            taken.set(taken.get() + 1);
            (0..n).map(net).collect::<Vec<_>>()
        };
        changes.start(&mut a, None, || table(3));
        changes.record(net(9), true);
        b.clear(changes.log());
        changes.start(&mut b, None, || table(4));
        assert_eq!(taken.get(), 1, "b reads the change from the log");
        let read: Vec<_> = std::iter::from_fn(|| b.next(changes.log())).collect();
        assert_eq!(read, vec![net(0), net(1), net(2), net(9)]);
        // Everyone past the change: the log drops it, and a snapshot from before it is of no use.
        while a.next(changes.log()).is_some() {}
        changes.trim(a.cursor.min(b.cursor));
        c.clear(changes.log());
        changes.start(&mut c, None, || table(4));
        assert_eq!(taken.get(), 2, "the log no longer holds what the old snapshot misses");
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A prefix appears or changes; logged when a peer wants it.
        Change(u8, bool),
        /// A prefix leaves the table.
        Remove(u8),
        Read(usize, u8),
        /// A session comes up: the whole table.
        Up(usize),
        /// A peer with a session gets the whole table again (new settings), or a
        /// family of it (a route refresh).
        Again(usize, Option<bool>),
        Down(usize),
        Trim,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..12, any::<bool>()).prop_map(|(i, logged)| Op::Change(i, logged)),
            2 => (0u8..12).prop_map(Op::Remove),
            4 => (0usize..3, 1u8..6).prop_map(|(p, k)| Op::Read(p, k)),
            1 => (0usize..3).prop_map(Op::Up),
            1 => (0usize..3, prop::option::of(any::<bool>())).prop_map(|(p, v6)| Op::Again(p, v6)),
            1 => (0usize..3).prop_map(Op::Down),
            2 => Just(Op::Trim),
        ]
    }

    proptest! {
        /// Against per-peer dirty sets (the plain model): whenever a peer has
        /// read everything, it has read every prefix the model marked for it
        /// since it was last in step, and nothing that was never in the table.
        /// An unlogged change is one no peer with a session needed.
        #[test]
        fn each_peer_reads_what_its_own_dirty_set_would_hold(ops in proptest::collection::vec(op(), 1..200)) {
            let mut changes = Changes::default();
            let mut feeds: Vec<PeerFeed> = (0..3).map(|_| PeerFeed::default()).collect();
            let mut up = [false; 3];
            // The model: the table, every prefix it ever had, and per peer a dirty set.
            let mut table: BTreeSet<IpNetwork> = BTreeSet::new();
            let mut ever: BTreeSet<IpNetwork> = BTreeSet::new();
            let mut dirty: Vec<BTreeSet<IpNetwork>> = vec![BTreeSet::new(); 3];
            let mut read: Vec<HashMap<IpNetwork, usize>> = vec![HashMap::new(); 3];
            for op in ops {
                match op {
                    Op::Change(i, logged) => {
                        table.insert(net(i));
                        ever.insert(net(i));
                        changes.record(net(i), logged);
                        for p in (0..3).filter(|&p| up[p] && logged) {
                            dirty[p].insert(net(i));
                        }
                    }
                    Op::Remove(i) => {
                        if table.remove(&net(i)) {
                            changes.record(net(i), true);
                            for p in (0..3).filter(|&p| up[p]) {
                                dirty[p].insert(net(i));
                            }
                        }
                    }
                    Op::Up(p) | Op::Again(p, _) => {
                        let only = match op {
                            Op::Again(_, Some(v6)) => Some(if v6 { Family::IPV6_UNICAST } else { Family::IPV4_UNICAST }),
                            _ => None,
                        };
                        if matches!(op, Op::Up(_)) {
                            // As the RIB does at a session's start: it begins with nothing.
                            feeds[p].clear(changes.log());
                            dirty[p].clear();
                            read[p].clear();
                            up[p] = true;
                        } else if !up[p] {
                            continue;
                        }
                        changes.start(&mut feeds[p], only, || table.iter().copied().collect());
                        dirty[p].extend(table.iter().copied().filter(|n| only.is_none_or(|f| f == family(n))));
                    }
                    Op::Down(p) => {
                        up[p] = false;
                        feeds[p].clear(changes.log());
                        dirty[p].clear();
                        read[p].clear();
                    }
                    Op::Read(p, k) => {
                        if !up[p] {
                            continue;
                        }
                        for _ in 0..k {
                            let Some(n) = feeds[p].next(changes.log()) else { break };
                            *read[p].entry(n).or_default() += 1;
                        }
                        if feeds[p].caught_up(changes.log()) {
                            let seen: BTreeSet<IpNetwork> = read[p].keys().copied().collect();
                            prop_assert!(seen.is_superset(&dirty[p]), "peer {} missed {:?}", p, dirty[p].difference(&seen).collect::<Vec<_>>());
                            prop_assert!(seen.is_subset(&ever), "peer {} read a prefix never in the table", p);
                            dirty[p].clear();
                            read[p].clear();
                        }
                    }
                    Op::Trim => {
                        let oldest = (0..3).filter(|&p| up[p]).map(|p| feeds[p].cursor).min().unwrap_or(changes.log().head());
                        changes.trim(oldest);
                    }
                }
            }
        }
    }
}
