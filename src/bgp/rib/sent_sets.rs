//! The ADD-PATH Adj-RIB-Out of all peers, stored once: what a peer was sent
//! for a prefix is a list of paths (our identifier, the Loc-RIB path, the
//! attributes). Peers sent the same list share one copy — a reflector's
//! clients are all sent a client's route under the same identifier with the
//! same attributes — so a peer keeps only a compact prefix → list-id map
//! (12 octets an IPv4 prefix), not a list per prefix: with a thousand
//! clients, a million lists became a thousand.
//!
//! What each peer is sent does not change: every peer's list is still
//! computed for it alone ([`addpath::diff`](super::addpath::diff)); only its
//! storage is shared.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use ipnetwork::IpNetwork;

use super::addpath::SentPath;
use super::adj_out::{PeerSent, PrefixIndex};
use super::net::family;
use crate::bgp::packet::Family;

/// A list's id, as a peer's map stores it.
pub type SentId = u32;

/// A list compared and hashed field by field, the attributes by identity
/// (they are interned).
#[derive(Debug, Clone)]
struct Key(Arc<[SentPath]>);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(other.0.iter()).all(|(a, b)| {
                a.id == b.id
                    && a.source == b.source
                    && a.source_id == b.source_id
                    && match (&a.attrs, &b.attrs) {
                        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
                        (None, None) => true,
                        _ => false,
                    }
            })
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for path in self.0.iter() {
            path.id.hash(state);
            path.source.hash(state);
            path.source_id.hash(state);
            path.attrs.as_ref().map(Arc::as_ptr).hash(state);
        }
    }
}

/// The distinct lists, each with the number of (peer, prefix) entries using
/// it, and the numbers of the prefixes the peers hold.
#[derive(Debug, Default)]
pub struct SentSets {
    ids: FxHashMap<Key, SentId>,
    lists: Vec<Option<(Key, u64)>>,
    free: Vec<SentId>,
    prefixes: PrefixIndex,
}

impl SentSets {
    /// The list `id` stands for (empty for an unknown id).
    pub fn get(&self, id: SentId) -> &[SentPath] {
        match self.lists.get(id as usize) {
            Some(Some((key, _))) => &key.0,
            _ => &[],
        }
    }

    /// The id of `paths` for one more user.
    pub fn acquire(&mut self, paths: Vec<SentPath>) -> SentId {
        let key = Key(paths.into());
        if let Some(&id) = self.ids.get(&key) {
            if let Some(Some((_, users))) = self.lists.get_mut(id as usize) {
                *users += 1;
            }
            return id;
        }
        // Below `SentId::MAX`: a peer's page stores an id plus one.
        let id = self.free.pop().unwrap_or_else(|| {
            SentId::try_from(self.lists.len()).ok().filter(|id| *id < SentId::MAX).expect("fewer than 2^32 - 1 lists")
        });
        let slot = Some((key.clone(), 1));
        match self.lists.get_mut(id as usize) {
            Some(free) => *free = slot,
            None => self.lists.push(slot),
        }
        self.ids.insert(key, id);
        id
    }

    /// One user less of `id`; the list goes with its last.
    pub fn release(&mut self, id: SentId) {
        let Some(entry) = self.lists.get_mut(id as usize) else { return };
        let Some((_, users)) = entry else { return };
        *users -= 1;
        if *users == 0
            && let Some((key, _)) = entry.take()
        {
            self.ids.remove(&key);
            self.free.push(id);
        }
    }

    /// What `peer` was sent for `net`.
    pub fn sent_to(&self, peer: &PeerSent, net: &IpNetwork) -> &[SentPath] {
        peer.get(&self.prefixes, net).map(|id| self.get(id)).unwrap_or_default()
    }

    /// Records that `peer` now holds `paths` for `net` (none: forgets it).
    pub fn record(&mut self, peer: &mut PeerSent, net: IpNetwork, paths: Vec<SentPath>) {
        let replaced = if paths.is_empty() {
            peer.remove(&mut self.prefixes, &net)
        } else {
            let id = self.acquire(paths);
            peer.insert(&mut self.prefixes, net, id)
        };
        if let Some(old) = replaced {
            self.release(old);
        }
    }

    /// Marks every path `peer` holds of `family` as to be sent again under its id (a route refresh).
    pub fn unsend(&mut self, peer: &mut PeerSent, refreshed: Family) {
        let held: Vec<(u32, SentId)> =
            peer.iter().filter(|(number, _)| family(&self.prefixes.net(*number)) == refreshed).collect();
        for (number, id) in held {
            let unsent = self.get(id).iter().map(|p| SentPath { attrs: None, ..p.clone() }).collect();
            let again = self.acquire(unsent);
            self.release(id);
            peer.replace(number, again);
        }
    }

    /// Forgets everything `peer` holds.
    pub fn forget(&mut self, peer: &mut PeerSent) {
        for (_, id) in peer.iter() {
            self.release(id);
        }
        peer.clear(&mut self.prefixes);
    }

    /// Distinct lists in use.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::rib::attrs::PathAttrs;
    use std::net::IpAddr;

    fn path(id: u32, attrs: &super::super::attrs::Attrs) -> SentPath {
        SentPath { id, source: Some(IpAddr::from([192, 0, 2, 9])), source_id: 0, attrs: Some(attrs.clone()) }
    }

    #[test]
    fn equal_lists_share_one_id_until_their_last_user_releases_it() {
        let a = Arc::new(PathAttrs::local());
        let b = Arc::new(PathAttrs::local());
        let mut sets = SentSets::default();
        let first = sets.acquire(vec![path(1, &a)]);
        assert_eq!(sets.acquire(vec![path(1, &a)]), first, "the same list");
        assert_ne!(sets.acquire(vec![path(1, &b)]), first, "equal attributes, another set: not interned alike");
        assert_ne!(sets.acquire(vec![path(2, &a)]), first, "another id");
        let unsent = SentPath { attrs: None, ..path(1, &a) };
        assert_ne!(sets.acquire(vec![unsent]), first, "to be sent again after a refresh");
        assert_eq!(sets.len(), 4);
        sets.release(first);
        assert_eq!(sets.get(first)[0].id, 1, "one user left");
        sets.release(first);
        assert!(sets.get(first).is_empty());
        assert_eq!(sets.len(), 3);
        // A freed id is given out again, to whatever list comes next.
        let again = sets.acquire(vec![path(7, &a), path(8, &b)]);
        assert_eq!(again, first);
        assert_eq!(sets.get(again).iter().map(|p| p.id).collect::<Vec<_>>(), vec![7, 8]);
    }
}
