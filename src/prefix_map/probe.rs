//! One IPv4 shard of a [`super::PrefixMap`]: an open-addressing table with
//! linear probing over 12-byte entries, and nothing else.
//!
//! Why not hashbrown: at a million prefixes nearly every lookup misses the
//! cache, and the route path looks prefixes up in long runs it knows in
//! advance (an UPDATE's NLRI, a queue, a chunk of operations). Here the
//! slot a key starts at is a function of its hash alone, so a caller can
//! prefetch it a few keys ahead ([`Probe::prefetch`]) and the misses overlap
//! instead of queueing one behind the other. hashbrown keeps its bucket
//! addresses to itself. A slot is free when its length byte says 0xFF (a
//! prefix is at most /32); removal shifts the rest of a run back, so no
//! tombstones build up.

use super::V4Entry;

const FREE: u32 = 0xFF;
/// Grow past 7/8 full: linear probing with a multiplicative hash stays
/// short at that load, and it keeps the bytes per prefix low.
const MAX_LOAD_NUM: usize = 7;
const MAX_LOAD_DEN: usize = 8;
const MIN_SLOTS: usize = 16;

#[derive(Clone, Default)]
pub struct Probe {
    slots: Vec<V4Entry>,
    len: usize,
}

const FREE_SLOT: V4Entry = V4Entry { addr: 0, meta: FREE, low: 0 };

impl Probe {
    pub fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub fn slots_len(&self) -> usize {
        self.slots.len()
    }

    fn home(&self, hash: u64) -> usize {
        // The hash's low bits: FxHash's well-mixed product bits (see `shard`).
        hash as usize & (self.slots.len() - 1)
    }

    /// The slot holding `key`, if any.
    fn find(&self, hash: u64, key: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        loop {
            let e = &self.slots[i];
            if e.meta == FREE {
                return None;
            }
            if e.key() == key {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    pub fn get(&self, hash: u64, key: u64) -> Option<&V4Entry> {
        self.find(hash, key).map(|i| &self.slots[i])
    }

    /// Prefetches the cache line of the slot `hash` starts at, so that a
    /// lookup of it soon finds it in the cache; several overlap.
    pub fn prefetch(&self, hash: u64) {
        if !self.slots.is_empty() {
            // A prefetch instruction, not a load: a load that misses holds
            // up retirement behind it (perf showed 60-94 % of each lookup
            // loop's time on the touching load), a prefetch retires at once.
            prefetch_index::prefetch_index(&self.slots, self.home(hash));
        }
    }

    /// Reads and writes the entry for `key` in one lookup, as
    /// [`super::PrefixMap::update`]. `make` builds a new entry from a value.
    pub fn update(
        &mut self,
        hash: u64,
        key: u64,
        make: impl FnOnce(u64) -> V4Entry,
        hash_of: impl Fn(&V4Entry) -> u64,
        f: impl FnOnce(Option<u64>) -> Option<u64>,
    ) -> Option<u64> {
        match self.find(hash, key) {
            Some(i) => {
                let old = self.slots[i].value();
                match f(Some(old)) {
                    Some(value) => self.slots[i].set_value(value),
                    None => self.remove_at(i, &hash_of),
                }
                Some(old)
            }
            None => {
                if let Some(value) = f(None) {
                    if (self.len + 1) * MAX_LOAD_DEN > self.slots.len() * MAX_LOAD_NUM {
                        let slots = (self.slots.len() * 2).max(MIN_SLOTS);
                        self.resize(slots, &hash_of);
                    }
                    let mask = self.slots.len() - 1;
                    let mut i = self.home(hash);
                    while self.slots[i].meta != FREE {
                        i = (i + 1) & mask;
                    }
                    self.slots[i] = make(value);
                    self.len += 1;
                }
                None
            }
        }
    }

    /// Empties slot `i` and moves back every later entry of its run that
    /// may now sit closer to its home (backward-shift deletion).
    fn remove_at(&mut self, mut i: usize, hash_of: &impl Fn(&V4Entry) -> u64) {
        let mask = self.slots.len() - 1;
        self.slots[i] = FREE_SLOT;
        self.len -= 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            if self.slots[j].meta == FREE {
                return;
            }
            let home = self.home(hash_of(&self.slots[j]));
            // Entry j may move to the hole at i unless its home lies
            // cyclically in (i, j]: then it would be before its home.
            let stays = if i <= j { i < home && home <= j } else { i < home || home <= j };
            if !stays {
                self.slots[i] = self.slots[j];
                self.slots[j] = FREE_SLOT;
                i = j;
            }
        }
    }

    fn resize(&mut self, slots: usize, hash_of: &impl Fn(&V4Entry) -> u64) {
        debug_assert!(slots.is_power_of_two() && slots * MAX_LOAD_NUM >= self.len * MAX_LOAD_DEN);
        let old = std::mem::replace(&mut self.slots, vec![FREE_SLOT; slots]);
        let mask = slots - 1;
        for e in old.into_iter().filter(|e| e.meta != FREE) {
            let mut i = hash_of(&e) as usize & mask;
            while self.slots[i].meta != FREE {
                i = (i + 1) & mask;
            }
            self.slots[i] = e;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &V4Entry> {
        self.slots.iter().filter(|e| e.meta != FREE)
    }

    /// Keeps the entries `f` returns a value for (rewritten), drops the rest.
    pub fn retain(&mut self, mut f: impl FnMut(&V4Entry) -> Option<u64>, hash_of: impl Fn(&V4Entry) -> u64) {
        let mut removed = false;
        for e in self.slots.iter_mut().filter(|e| e.meta != FREE) {
            match f(e) {
                Some(value) => e.set_value(value),
                None => {
                    *e = FREE_SLOT;
                    self.len -= 1;
                    removed = true;
                }
            }
        }
        if removed {
            // Holes break runs: place the survivors again.
            let slots = self.slots.len();
            self.resize(slots, &hash_of);
        }
    }

    pub fn clear(&mut self) {
        self.slots = Vec::new();
        self.len = 0;
    }

    /// Gives memory back once at most a quarter full.
    pub fn maybe_shrink(&mut self, hash_of: impl Fn(&V4Entry) -> u64) {
        if self.slots.len() > 4096 && self.len < self.slots.len() / 4 {
            let slots = (self.len * 2).next_power_of_two().max(MIN_SLOTS);
            self.resize(slots, &hash_of);
        }
    }
}
