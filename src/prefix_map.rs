//! Compact per-prefix tables for the route path (RIB, route programmer),
//! where a table may hold a million prefixes and every byte per entry is a
//! megabyte.
//!
//! A [`PrefixMap`] maps a prefix to a 56-bit value the caller packs itself
//! (an attribute id and a peer slot, a route-form id and flags). An IPv4
//! entry is 12 bytes — address, prefix length and value in three `u32`s —
//! where `HashMap<IpNetwork, u64>` takes 32; IPv6 prefixes are rarer and
//! live in an ordinary map. The IPv4 entries are spread over [`SHARDS`]
//! tables by hash: a table that grows is rehashed into one twice its size,
//! and with one table that doubles the peak memory of the whole map for a
//! moment; with sixteen, of a sixteenth of it. A [`PrefixQueue`] is a FIFO of prefixes at 8
//! bytes per IPv4 entry.

mod probe;

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use probe::Probe;
use rustc_hash::{FxBuildHasher, FxHashMap};

/// How many prefixes ahead a loop over known prefixes prefetches
/// ([`PrefixMap::prefetch`]): enough misses in flight to cover one's
/// latency, few enough that the first is still cached when it is used.
pub const PREFETCH_AHEAD: usize = 8;

/// IPv4 tables of a map (a power of two).
pub const SHARDS: usize = 16;

/// Values hold at most this many bits.
pub const VALUE_BITS: u32 = 56;
/// The largest value.
pub const VALUE_MAX: u64 = (1 << VALUE_BITS) - 1;

/// One IPv4 entry: `meta` = value bits 32..56 above the prefix length.
#[derive(Clone, Copy, Debug)]
struct V4Entry {
    addr: u32,
    meta: u32,
    low: u32,
}

impl V4Entry {
    fn new(addr: u32, len: u8, value: u64) -> Self {
        debug_assert!(value <= VALUE_MAX, "value {value:#x} wider than {VALUE_BITS} bits");
        V4Entry { addr, meta: ((value >> 32) as u32) << 8 | u32::from(len), low: value as u32 }
    }

    fn len(&self) -> u8 {
        self.meta as u8
    }

    fn value(&self) -> u64 {
        u64::from(self.meta >> 8) << 32 | u64::from(self.low)
    }

    fn set_value(&mut self, value: u64) {
        *self = V4Entry::new(self.addr, self.len(), value);
    }

    fn key(&self) -> u64 {
        v4_key(self.addr, self.len())
    }

    fn network(&self) -> IpNetwork {
        IpNetwork::V4(Ipv4Network::new(Ipv4Addr::from(self.addr), self.len()).expect("length checked on insert"))
    }
}

fn v4_key(addr: u32, len: u8) -> u64 {
    u64::from(addr) << 8 | u64::from(len)
}

fn hash_v4(key: u64) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// The shard of a hash: bits 20..24. FxHash ends by rotating its product
/// left by 26, so these are the product's well-mixed top bits; a shard
/// takes its slot from the lowest bits (below 2^20 slots a shard, about
/// 14 million prefixes in the map, independent of these). (Bits 40..44,
/// the product's low bits, left /24s — whose address ends in zero bits —
/// in four shards of sixteen.)
fn shard(hash: u64) -> usize {
    (hash >> 20) as usize % SHARDS
}

fn v4_parts(net: &Ipv4Network) -> (u32, u8) {
    (u32::from(net.network()), net.prefix())
}

/// The key of an IPv6 prefix (network address, length).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct V6Key(u128, u8);

impl V6Key {
    fn of(net: &Ipv6Network) -> Self {
        V6Key(u128::from(net.network()), net.prefix())
    }

    fn network(&self) -> IpNetwork {
        IpNetwork::V6(Ipv6Network::new(Ipv6Addr::from(self.0), self.1).expect("length checked on insert"))
    }
}

/// Prefix → 56-bit value. Prefixes are taken with their host bits cleared
/// (`10.0.0.1/24` is `10.0.0.0/24`).
#[derive(Default, Clone)]
pub struct PrefixMap {
    v4: [Probe; SHARDS],
    v6: FxHashMap<V6Key, u64>,
}

impl std::fmt::Debug for PrefixMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl PrefixMap {
    pub fn new() -> Self {
        PrefixMap::default()
    }

    pub fn len(&self) -> usize {
        self.v4.iter().map(Probe::len).sum::<usize>() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, net: &IpNetwork) -> Option<u64> {
        match net {
            IpNetwork::V4(n) => {
                let (addr, len) = v4_parts(n);
                let key = v4_key(addr, len);
                let hash = hash_v4(key);
                self.v4[shard(hash)].get(hash, key).map(V4Entry::value)
            }
            IpNetwork::V6(n) => self.v6.get(&V6Key::of(n)).copied(),
        }
    }

    /// Starts loading where `net` would be, for a lookup of it soon: run
    /// it a few prefixes ahead of a loop over known prefixes, so their
    /// cache misses overlap. (IPv4 only; IPv6 prefixes are few.)
    pub fn prefetch(&self, net: &IpNetwork) {
        if let IpNetwork::V4(n) = net {
            let (addr, len) = v4_parts(n);
            let hash = hash_v4(v4_key(addr, len));
            self.v4[shard(hash)].prefetch(hash);
        }
    }

    pub fn contains(&self, net: &IpNetwork) -> bool {
        self.get(net).is_some()
    }

    /// Sets the value; the previous one if there was one.
    pub fn insert(&mut self, net: IpNetwork, value: u64) -> Option<u64> {
        self.update(net, |_| Some(value))
    }

    pub fn remove(&mut self, net: &IpNetwork) -> Option<u64> {
        self.update(*net, |_| None)
    }

    /// Reads and writes one entry in one lookup: `f` gets the current value
    /// and returns the new one (`None` removes). Returns the old value.
    pub fn update(&mut self, net: IpNetwork, f: impl FnOnce(Option<u64>) -> Option<u64>) -> Option<u64> {
        match net {
            IpNetwork::V4(n) => {
                let (addr, len) = v4_parts(&n);
                let key = v4_key(addr, len);
                let hash = hash_v4(key);
                self.v4[shard(hash)].update(hash, key, |value| V4Entry::new(addr, len, value), |e| hash_v4(e.key()), f)
            }
            IpNetwork::V6(n) => {
                let key = V6Key::of(&n);
                let old = self.v6.get(&key).copied();
                match f(old) {
                    Some(value) => {
                        debug_assert!(value <= VALUE_MAX);
                        self.v6.insert(key, value);
                    }
                    None => {
                        self.v6.remove(&key);
                    }
                }
                old
            }
        }
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (IpNetwork, u64)> + '_ {
        let v4 = self.v4.iter().flat_map(|t| t.iter()).map(|e| (e.network(), e.value()));
        let v6 = self.v6.iter().map(|(k, v)| (k.network(), *v));
        v4.chain(v6)
    }

    /// Every prefix, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = IpNetwork> + '_ {
        self.iter().map(|(net, _)| net)
    }

    /// Keeps the entries for which `f` returns a value (rewriting them), removes the others.
    pub fn retain(&mut self, mut f: impl FnMut(IpNetwork, u64) -> Option<u64>) {
        for table in &mut self.v4 {
            table.retain(|e| f(e.network(), e.value()), |e| hash_v4(e.key()));
        }
        self.v6.retain(|k, v| match f(k.network(), *v) {
            Some(value) => {
                *v = value;
                true
            }
            None => false,
        });
    }

    pub fn clear(&mut self) {
        self.v4.iter_mut().for_each(Probe::clear);
        self.v6.clear();
    }

    /// Gives memory back once a table is at most a quarter full (after a
    /// large withdrawal); cheap to call after every batch.
    pub fn maybe_shrink(&mut self) {
        for table in &mut self.v4 {
            table.maybe_shrink(|e| hash_v4(e.key()));
        }
        if self.v6.capacity() > 4096 && self.v6.len() < self.v6.capacity() / 4 {
            self.v6.shrink_to(self.v6.len() * 2);
        }
    }
}

/// A FIFO of prefixes: 8 bytes per IPv4 entry.
#[derive(Default, Debug, Clone)]
pub struct PrefixQueue {
    v4: VecDeque<u64>,
    v6: VecDeque<Ipv6Network>,
    /// Take from v4 next (alternating keeps both families moving).
    turn_v6: bool,
}

impl PrefixQueue {
    pub fn push(&mut self, net: IpNetwork) {
        match net {
            IpNetwork::V4(n) => {
                let (addr, len) = v4_parts(&n);
                self.v4.push_back(v4_key(addr, len));
            }
            IpNetwork::V6(n) => self.v6.push_back(n),
        }
    }

    /// Puts a prefix just taken by [`PrefixQueue::pop`] back in front of
    /// its family (a consumer that cannot handle it yet keeps its place).
    pub fn push_front(&mut self, net: IpNetwork) {
        match net {
            IpNetwork::V4(n) => {
                let (addr, len) = v4_parts(&n);
                self.v4.push_front(v4_key(addr, len));
            }
            IpNetwork::V6(n) => self.v6.push_front(n),
        }
    }

    /// The IPv4 prefix `k` places behind the next one, to prefetch.
    pub fn ahead_v4(&self, k: usize) -> Option<IpNetwork> {
        let key = *self.v4.get(k)?;
        Ipv4Network::new(Ipv4Addr::from((key >> 8) as u32), key as u8).ok().map(IpNetwork::V4)
    }

    /// The next prefix. FIFO within a family; the families alternate.
    pub fn pop(&mut self) -> Option<IpNetwork> {
        self.turn_v6 = !self.turn_v6;
        let v4 = |q: &mut VecDeque<u64>| {
            q.pop_front().map(|k| {
                IpNetwork::V4(Ipv4Network::new(Ipv4Addr::from((k >> 8) as u32), k as u8).expect("pushed valid"))
            })
        };
        if self.turn_v6 {
            self.v6.pop_front().map(IpNetwork::V6).or_else(|| v4(&mut self.v4))
        } else {
            v4(&mut self.v4).or_else(|| self.v6.pop_front().map(IpNetwork::V6))
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
    }

    /// Gives memory back once drained below a quarter of the capacity.
    pub fn maybe_shrink(&mut self) {
        if self.v4.capacity() > 4096 && self.v4.len() < self.v4.capacity() / 4 {
            self.v4.shrink_to(self.v4.len() * 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn an_ipv4_entry_is_twelve_bytes() {
        assert_eq!(std::mem::size_of::<V4Entry>(), 12);
    }

    #[test]
    fn values_of_56_bits_survive_and_host_bits_are_cleared() {
        let mut m = PrefixMap::new();
        assert_eq!(m.insert(net("10.0.0.1/24"), VALUE_MAX), None);
        assert_eq!(m.get(&net("10.0.0.0/24")), Some(VALUE_MAX));
        assert_eq!(m.insert(net("10.0.0.0/24"), 7), Some(VALUE_MAX));
        assert_eq!(m.get(&net("10.0.0.0/25")), None, "the length is part of the key");
        m.insert(net("fd00::1/64"), 1 << 55);
        assert_eq!(m.get(&net("fd00::/64")), Some(1 << 55));
        let mut all: Vec<_> = m.iter().map(|(n, v)| (n.to_string(), v)).collect();
        all.sort();
        assert_eq!(all, vec![("10.0.0.0/24".to_string(), 7), ("fd00::/64".to_string(), 1 << 55)]);
        assert_eq!(m.remove(&net("10.0.0.0/24")), Some(7));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn consecutive_hosts_whole_table_slash_24s_and_sparse_hosts_spread_evenly_over_the_shards() {
        fn v4(addr: u32, len: u8) -> IpNetwork {
            IpNetwork::V4(Ipv4Network::new(Ipv4Addr::from(addr), len).unwrap())
        }
        /// A name and the i-th prefix of the pattern.
        type Pattern = (&'static str, fn(u32) -> IpNetwork);
        let patterns: [Pattern; 3] = [
            ("consecutive /32s", |i| v4(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i, 32)),
            // An Internet table is mostly /24s: addresses ending in eight zero bits.
            ("/24s", |i| v4((i * 13) << 8, 24)),
            ("/32s 4096 apart", |i| v4(i << 12, 32)),
        ];
        for (what, prefix) in patterns {
            let mut m = PrefixMap::new();
            for i in 0..160_000 {
                m.insert(prefix(i), 1);
            }
            assert_eq!(m.len(), 160_000, "{what}");
            let mean = 160_000 / SHARDS;
            for (i, t) in m.v4.iter().enumerate() {
                assert!(t.len().abs_diff(mean) < mean / 10, "{what}: shard {i} has {} entries, mean {mean}", t.len());
            }
        }
    }

    #[test]
    fn a_table_emptied_to_a_tenth_shrinks_and_keeps_the_rest() {
        let v4 = |i: u32| IpNetwork::V4(Ipv4Network::new(Ipv4Addr::from(0x0a00_0000 + i), 32).unwrap());
        let mut m = PrefixMap::new();
        for i in 0..100_000 {
            m.insert(v4(i), u64::from(i));
        }
        let full: usize = m.v4.iter().map(|t| t.slots_len()).sum();
        for i in 0..100_000 {
            m.prefetch(&v4(i));
            if i % 10 != 0 {
                assert_eq!(m.remove(&v4(i)), Some(u64::from(i)));
            }
        }
        m.maybe_shrink();
        let shrunk: usize = m.v4.iter().map(|t| t.slots_len()).sum();
        assert!(shrunk * 4 <= full, "{full} slots became {shrunk}");
        assert_eq!(m.len(), 10_000);
        for i in (0..100_000).step_by(10) {
            assert_eq!(m.get(&v4(i)), Some(u64::from(i)), "{i}");
        }
    }

    #[test]
    fn update_reads_writes_and_removes_in_one_lookup() {
        let mut m = PrefixMap::new();
        assert_eq!(m.update(net("10.1.0.0/16"), |old| old.map_or(Some(1), |v| Some(v + 1))), None);
        assert_eq!(m.update(net("10.1.0.0/16"), |old| old.map(|v| v + 1)), Some(1));
        assert_eq!(m.get(&net("10.1.0.0/16")), Some(2));
        assert_eq!(m.update(net("10.1.0.0/16"), |_| None), Some(2));
        assert!(m.is_empty());
        assert_eq!(m.update(net("10.2.0.0/16"), |_| None), None);
        assert!(m.is_empty(), "removing an absent prefix adds nothing");
    }

    #[test]
    fn the_queue_is_fifo_per_family_and_keeps_both_families_moving() {
        let mut q = PrefixQueue::default();
        for s in ["10.0.0.0/8", "fd00::/8", "10.0.0.1/32", "fd01::/16", "0.0.0.0/0"] {
            q.push(net(s));
        }
        let mut out = Vec::new();
        while let Some(n) = q.pop() {
            out.push(n.to_string());
        }
        let v4: Vec<_> = out.iter().filter(|s| !s.contains(':')).cloned().collect();
        let v6: Vec<_> = out.iter().filter(|s| s.contains(':')).cloned().collect();
        assert_eq!(v4, ["10.0.0.0/8", "10.0.0.1/32", "0.0.0.0/0"]);
        assert_eq!(v6, ["fd00::/8", "fd01::/16"]);
        assert!(out[..2].iter().any(|s| s.contains(':')), "v6 is not starved: {out:?}");
    }

    #[test]
    fn a_prefix_put_back_comes_out_first_again() {
        let mut q = PrefixQueue::default();
        for s in ["10.0.0.0/8", "10.1.0.0/16", "fd00::/8"] {
            q.push(net(s));
        }
        let first = q.pop().unwrap();
        q.push_front(first);
        let mut out = Vec::new();
        while let Some(n) = q.pop() {
            out.push(n);
        }
        assert_eq!(
            out.iter().filter(|n| n.is_ipv4()).copied().collect::<Vec<_>>(),
            [net("10.0.0.0/8"), net("10.1.0.0/16")]
        );
        assert_eq!(out.len(), 3);
    }

    fn any_net() -> impl Strategy<Value = IpNetwork> {
        prop_oneof![
            (any::<u32>(), 0u8..=32).prop_map(|(a, l)| IpNetwork::V4(Ipv4Network::new(Ipv4Addr::from(a), l).unwrap())),
            (0u8..4, 0u8..=128)
                .prop_map(|(a, l)| IpNetwork::V6(Ipv6Network::new(Ipv6Addr::from(u128::from(a) << 100), l).unwrap())),
        ]
    }

    /// Few distinct keys in a small table: long probe runs, removals in
    /// their middle, growth and shrinking.
    fn crowded_net() -> impl Strategy<Value = IpNetwork> {
        (0u32..48, 30u8..=32).prop_map(|(a, l)| IpNetwork::V4(Ipv4Network::new(Ipv4Addr::from(a << 2), l).unwrap()))
    }

    /// Applies `ops` (a value sets, `None` removes) to a map and to a
    /// `HashMap`, checking they agree after each (every entry, when
    /// `every_entry`); returns both.
    fn against_a_hash_map(
        ops: Vec<(IpNetwork, Option<u64>)>,
        every_entry: bool,
    ) -> Result<(PrefixMap, HashMap<IpNetwork, u64>), TestCaseError> {
        let mut m = PrefixMap::new();
        let mut model: HashMap<IpNetwork, u64> = HashMap::new();
        for (net, value) in ops {
            let net = IpNetwork::new(net.network(), net.prefix()).unwrap();
            match value {
                Some(v) => prop_assert_eq!(m.insert(net, v), model.insert(net, v)),
                None => prop_assert_eq!(m.remove(&net), model.remove(&net)),
            }
            if every_entry {
                for (n, v) in &model {
                    prop_assert_eq!(m.get(n), Some(*v), "{} lost", n);
                }
            }
            prop_assert_eq!(m.len(), model.len());
        }
        Ok((m, model))
    }

    proptest! {
        #[test]
        fn crowded_tables_behave_like_a_hash_map(ops in proptest::collection::vec((crowded_net(), proptest::option::of(0..=VALUE_MAX)), 0..400)) {
            let (mut m, mut model) = against_a_hash_map(ops, true)?;
            m.retain(|_, v| (v % 3 != 0).then_some(v));
            model.retain(|_, v| *v % 3 != 0);
            for (n, v) in &model {
                prop_assert_eq!(m.get(n), Some(*v), "{} lost by retain", n);
            }
            prop_assert_eq!(m.len(), model.len());
        }

        #[test]
        fn behaves_like_a_hash_map(ops in proptest::collection::vec((any_net(), proptest::option::of(0..=VALUE_MAX)), 0..300)) {
            let (mut m, model) = against_a_hash_map(ops, false)?;
            let mut got: Vec<_> = m.iter().collect();
            let mut want: Vec<_> = model.into_iter().collect();
            got.sort_by_key(|(n, _)| (n.is_ipv6(), n.network(), n.prefix()));
            want.sort_by_key(|(n, _)| (n.is_ipv6(), n.network(), n.prefix()));
            prop_assert_eq!(got, want);
            m.retain(|_, v| (v % 2 == 0).then_some(v | 1));
            prop_assert!(m.iter().all(|(_, v)| v % 2 == 1));
        }
    }
}
