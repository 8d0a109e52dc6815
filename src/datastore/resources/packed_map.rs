//! A small string → string map kept in two allocations: its keys and values end to end in one
//! string, and where each ends. An IPAM block holds one per allocated address (the owner's pod,
//! namespace, node and time), and every agent holds every block: a `BTreeMap<String, String>` of
//! four entries is a node and eight strings, by their layout about 750 octets, where this is
//! about 170 (measured whole in docs/scale.md: an agent's decoded blocks). Lookups walk the
//! entries: a map here has a handful.
//!
//! It reads and writes as a JSON object, keys in ascending order, as a `BTreeMap` does.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct PackedMap {
    /// Key, value, key, value … with keys in ascending order, each key once.
    text: Box<str>,
    /// Where each key and value ends in `text`.
    ends: Box<[u32]>,
}

impl PackedMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The entries in ascending key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        (0..self.len()).map(move |i| (self.part(2 * i), self.part(2 * i + 1)))
    }

    /// The `n`th key or value.
    fn part(&self, n: usize) -> &str {
        let start = n.checked_sub(1).map_or(0, |before| self.ends[before] as usize);
        self.text.get(start..self.ends[n] as usize).unwrap_or("")
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`: the entries are copied once into a new packing, in order.
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) {
        let (key, value) = (key.as_ref(), value.as_ref());
        let before = self.iter().take_while(|(k, _)| *k < key);
        let after = self.iter().skip_while(|(k, _)| *k <= key);
        *self = pack(before.chain(std::iter::once((key, value))).chain(after));
    }

    /// Removes `key`; its value if it was there.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let old = self.get(key)?.to_string();
        *self = pack(self.iter().filter(|(k, _)| *k != key));
        Some(old)
    }

    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
}

impl From<BTreeMap<String, String>> for PackedMap {
    fn from(map: BTreeMap<String, String>) -> Self {
        PackedMap::from(&map)
    }
}

impl From<&BTreeMap<String, String>> for PackedMap {
    fn from(map: &BTreeMap<String, String>) -> Self {
        pack(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// Packs `entries`, which come in ascending key order, each key once.
fn pack<'a>(entries: impl Iterator<Item = (&'a str, &'a str)>) -> PackedMap {
    let mut text = String::new();
    let mut ends = Vec::new();
    for (k, v) in entries {
        for part in [k, v] {
            text.push_str(part);
            // Beyond 4 GiB of attributes an end would wrap; such a record is not kept whole.
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        }
    }
    PackedMap { text: text.into(), ends: ends.into() }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for PackedMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let map: BTreeMap<String, String> = iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        PackedMap::from(map)
    }
}

impl<K: Into<String>, V: Into<String>, const N: usize> From<[(K, V); N]> for PackedMap {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl fmt::Debug for PackedMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for PackedMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for PackedMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, String>::deserialize(deserializer).map(PackedMap::from)
    }
}

/// A small string → count map packed the same way, the counts kept as their decimal text. An
/// IPAM block holds one entry per allocated address (the block's sequence number when it was
/// allocated): by their layout about 15 octets here where a `BTreeMap<String, u64>` takes about
/// 70. It reads and writes a JSON object of numbers, keys in ascending order.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct PackedCounts(PackedMap);

impl PackedCounts {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries in ascending key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        // Only what `count` wrote is stored, so every value parses.
        self.0.iter().map(|(k, v)| (k, v.parse().unwrap_or(0)))
    }

    pub fn get(&self, key: &str) -> Option<u64> {
        self.0.get(key).map(|v| v.parse().unwrap_or(0))
    }

    pub fn insert(&mut self, key: impl AsRef<str>, count: u64) {
        self.0.insert(key, count.to_string());
    }

    pub fn remove(&mut self, key: &str) -> Option<u64> {
        self.0.remove(key).map(|v| v.parse().unwrap_or(0))
    }

    pub fn to_map(&self) -> BTreeMap<String, u64> {
        self.iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

impl From<&BTreeMap<String, u64>> for PackedCounts {
    fn from(map: &BTreeMap<String, u64>) -> Self {
        PackedCounts(map.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
    }
}

impl From<BTreeMap<String, u64>> for PackedCounts {
    fn from(map: BTreeMap<String, u64>) -> Self {
        PackedCounts::from(&map)
    }
}

impl fmt::Debug for PackedCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for PackedCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for PackedCounts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, u64>::deserialize(deserializer).map(PackedCounts::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a `BTreeMap` holds, the packed map gives back the same, and both read and
        /// write the same JSON.
        #[test]
        fn a_packed_map_is_a_btree_map(entries in prop::collection::btree_map(".{0,12}", ".{0,20}", 0..8), probe in ".{0,12}") {
            let packed = PackedMap::from(&entries);
            prop_assert_eq!(packed.len(), entries.len());
            prop_assert_eq!(packed.to_map(), entries.clone());
            prop_assert_eq!(packed.get(&probe), entries.get(&probe).map(String::as_str));
            let json = serde_json::to_string(&packed).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&entries).unwrap());
            prop_assert_eq!(serde_json::from_str::<PackedMap>(&json).unwrap(), packed.clone());
            let mut grown = packed;
            let mut model = entries;
            grown.insert(probe.clone(), "x");
            model.insert(probe, "x".to_string());
            prop_assert_eq!(grown.to_map(), model.clone());
            let gone = grown.remove("x-not-there");
            prop_assert_eq!(gone, model.remove("x-not-there"));
            if let Some(key) = model.keys().next().cloned() {
                prop_assert_eq!(grown.remove(&key), model.remove(&key));
                prop_assert_eq!(grown.to_map(), model);
            }
        }

        /// The same for counts, whose JSON is numbers.
        #[test]
        fn packed_counts_are_a_btree_map(entries in prop::collection::btree_map("[0-9]{1,3}", any::<u64>(), 0..70), probe in "[0-9]{1,3}", count in any::<u64>()) {
            let packed = PackedCounts::from(&entries);
            prop_assert_eq!(packed.to_map(), entries.clone());
            prop_assert_eq!(packed.get(&probe), entries.get(&probe).copied());
            let json = serde_json::to_string(&packed).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&entries).unwrap());
            prop_assert_eq!(serde_json::from_str::<PackedCounts>(&json).unwrap(), packed.clone());
            let (mut grown, mut model) = (packed, entries);
            grown.insert(probe.clone(), count);
            model.insert(probe.clone(), count);
            prop_assert_eq!(grown.to_map(), model.clone());
            prop_assert_eq!(grown.remove(&probe), model.remove(&probe));
            prop_assert_eq!(grown.to_map(), model);
        }
    }
}
