//! Route forms: everything about a route except its prefix, interned to
//! small ids so the route table can hold a million prefixes at a few bytes
//! each. A million BGP routes share a handful of forms (`via <node> dev
//! <underlay>`); local workloads have one each (`dev <veth>`), so forms
//! are reference-counted and their ids reused once no prefix points at
//! them.

use super::route::{Route, RouteKind, RouteTarget};
use hashbrown::HashTable;
use ipnetwork::IpNetwork;
use rustc_hash::FxBuildHasher;
use std::hash::{BuildHasher, Hash};

/// Ids fit in this many bits (the route table packs two of them per prefix).
pub const ID_BITS: u32 = 24;
const ID_LIMIT: usize = 1 << ID_BITS;

/// A wanted route without its prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DesiredForm {
    pub kind: RouteKind,
    pub target: RouteTarget,
    pub mtu: Option<u32>,
}

/// A route the kernel holds (or we wrote), without its prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KernelForm {
    pub target: RouteTarget,
    pub mtu: Option<u32>,
}

impl KernelForm {
    pub fn route(&self, dst: IpNetwork) -> Route {
        Route { dst, target: self.target.clone(), mtu: self.mtu }
    }
}

struct Slot<T> {
    value: Option<T>,
    refs: u32,
}

/// The value of a slot the index names (every such slot is live).
fn live<T>(slot: &Slot<T>) -> &T {
    slot.value.as_ref().expect("the index names live slots only")
}

/// Values ↔ dense ids with reference counts: a slab of values and a hash
/// table of ids (hashed by the value they name, so each value is stored once).
pub struct Interner<T> {
    slots: Vec<Slot<T>>,
    index: HashTable<u32>,
    free: Vec<u32>,
    /// The id acquired last: a large table's routes mostly share one form,
    /// and comparing with it costs less than hashing. Only a hint: its slot
    /// is compared by value, so a released or reused id is simply a miss.
    last: u32,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Interner { slots: Vec::new(), index: HashTable::new(), free: Vec::new(), last: 0 }
    }
}

impl<T: Hash + Eq> Interner<T> {
    /// The id of `value`, taking one reference to it; true when it is new.
    pub fn acquire(&mut self, value: T) -> (u32, bool) {
        if let Some(slot) = self.slots.get_mut(self.last as usize)
            && slot.value.as_ref() == Some(&value)
        {
            slot.refs += 1;
            return (self.last, false);
        }
        let hash = FxBuildHasher.hash_one(&value);
        let slots = &mut self.slots;
        if let Some(&id) = self.index.find(hash, |&id| slots[id as usize].value.as_ref() == Some(&value)) {
            slots[id as usize].refs += 1;
            self.last = id;
            return (id, false);
        }
        let id = match self.free.pop() {
            Some(id) => {
                slots[id as usize] = Slot { value: Some(value), refs: 1 };
                id
            }
            None => {
                assert!(slots.len() < ID_LIMIT, "more than {ID_LIMIT} distinct route forms");
                slots.push(Slot { value: Some(value), refs: 1 });
                (slots.len() - 1) as u32
            }
        };
        self.index.insert_unique(hash, id, |&id| FxBuildHasher.hash_one(live(&slots[id as usize])));
        self.last = id;
        (id, true)
    }

    /// One more reference to a live id.
    pub fn retain(&mut self, id: u32) {
        self.slots[id as usize].refs += 1;
    }

    /// Drops one reference; the value once the last is gone (its id is then free).
    pub fn release(&mut self, id: u32) -> Option<T> {
        let slot = &mut self.slots[id as usize];
        debug_assert!(slot.refs > 0, "release of a dead form {id}");
        slot.refs -= 1;
        if slot.refs > 0 {
            return None;
        }
        let value = slot.value.take().expect("live slot has a value");
        let hash = FxBuildHasher.hash_one(&value);
        if let Ok(entry) = self.index.find_entry(hash, |&x| x == id) {
            entry.remove();
        }
        self.free.push(id);
        Some(value)
    }

    pub fn get(&self, id: u32) -> &T {
        live(&self.slots[id as usize])
    }

    /// How many distinct values are referenced.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    #[cfg(test)]
    pub fn refs(&self, id: u32) -> u32 {
        self.slots[id as usize].refs
    }
}

/// The desired and kernel forms of one route table. Each desired form holds
/// a reference to its kernel twin (the same target and MTU), so writing a
/// route records what the kernel now holds without hashing anything.
#[derive(Default)]
pub struct Forms {
    pub desired: Interner<DesiredForm>,
    pub kernel: Interner<KernelForm>,
    /// Desired id → the kernel id of the same target and MTU.
    twin: Vec<u32>,
}

impl Forms {
    pub fn acquire_desired(&mut self, form: DesiredForm) -> u32 {
        let (id, new) = self.desired.acquire(form);
        if new {
            let f = self.desired.get(id);
            let (k, _) = self.kernel.acquire(KernelForm { target: f.target.clone(), mtu: f.mtu });
            if self.twin.len() <= id as usize {
                self.twin.resize(id as usize + 1, 0);
            }
            self.twin[id as usize] = k;
        }
        id
    }

    pub fn release_desired(&mut self, id: u32) {
        if self.desired.release(id).is_some() {
            self.kernel.release(self.twin[id as usize]);
        }
    }

    pub fn acquire_kernel(&mut self, form: KernelForm) -> u32 {
        self.kernel.acquire(form).0
    }

    /// The kernel form a write of desired form `d` leaves (a new reference to it).
    pub fn acquire_twin(&mut self, d: u32) -> u32 {
        let k = self.twin[d as usize];
        self.kernel.retain(k);
        k
    }

    pub fn kind(&self, d: u32) -> RouteKind {
        self.desired.get(d).kind
    }

    /// True when the kernel's form `k` already does what desired form `d`
    /// asks ([`Route::satisfied_by`]: an unset interface matches any).
    pub fn satisfied(&self, d: u32, k: u32) -> bool {
        if self.twin[d as usize] == k {
            return true;
        }
        let (want, have) = (self.desired.get(d), self.kernel.get(k));
        want.mtu == have.mtu && want.target.satisfied_by(&have.target)
    }

    pub fn desired_route(&self, dst: IpNetwork, d: u32) -> Route {
        let f = self.desired.get(d);
        Route { dst, target: f.target.clone(), mtu: f.mtu }
    }

    pub fn kernel_route(&self, dst: IpNetwork, k: u32) -> Route {
        self.kernel.get(k).route(dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::route::NextHop;

    fn via(gw: &str, ifindex: Option<u32>) -> RouteTarget {
        RouteTarget::Via(NextHop { gateway: gw.parse().unwrap(), ifindex, onlink: false })
    }

    fn form(kind: RouteKind, target: RouteTarget) -> DesiredForm {
        DesiredForm { kind, target, mtu: None }
    }

    #[test]
    fn equal_forms_share_an_id_and_dead_ids_are_reused() {
        let mut i = Interner::default();
        let (a, new) = i.acquire("a".to_string());
        assert!(new);
        assert_eq!(i.acquire("a".to_string()), (a, false));
        let (b, _) = i.acquire("b".to_string());
        assert_ne!(a, b);
        assert_eq!(i.refs(a), 2);
        assert_eq!(i.release(a), None, "one reference left");
        assert_eq!(i.release(a).as_deref(), Some("a"), "the last one frees it");
        assert_eq!(i.len(), 1);
        let (c, new) = i.acquire("c".to_string());
        assert!(new);
        assert_eq!(c, a, "the freed id is reused");
        assert_eq!(i.get(c), "c");
        assert_eq!(i.acquire("b".to_string()), (b, false), "others are still found after reuse");
    }

    #[test]
    fn the_last_form_hint_is_checked_by_value() {
        let mut i = Interner::default();
        let (a, _) = i.acquire("a".to_string());
        assert_eq!(i.release(a).as_deref(), Some("a"));
        // The hint still names the freed id: a different value takes it...
        let (b, new) = i.acquire("b".to_string());
        assert!(new && b == a, "the freed id is reused");
        // ...and the old value is not found through it.
        let (a2, new) = i.acquire("a".to_string());
        assert!(new && a2 != b, "a freed value is new again");
        assert_eq!(i.acquire("b".to_string()), (b, false));
        assert_eq!((i.refs(a2), i.refs(b)), (1, 2));
    }

    #[test]
    fn forms_are_found_and_collected_after_the_index_grows() {
        let mut i = Interner::default();
        let ids: Vec<u32> = (0..1000).map(|n| i.acquire(n).0).collect();
        for (n, id) in ids.iter().enumerate() {
            assert_eq!(i.acquire(n as i32), (*id, false), "found again after growing");
        }
        for id in ids {
            i.release(id);
            assert!(i.release(id).is_some());
        }
        assert_eq!(i.len(), 0, "every entry of the index is removed");
    }

    #[test]
    fn a_desired_form_keeps_its_kernel_twin_alive_until_collected() {
        let mut f = Forms::default();
        let d1 = f.acquire_desired(form(RouteKind::RemoteDirect, via("192.168.0.2", Some(3))));
        let d2 = f.acquire_desired(form(RouteKind::RemoteIpip, via("192.168.0.2", Some(3))));
        assert_ne!(d1, d2, "the kind is part of the desired form");
        assert_eq!(f.kernel.len(), 1, "but both write the same kernel form");
        let k = f.acquire_twin(d1);
        assert!(f.satisfied(d1, k) && f.satisfied(d2, k));
        f.release_desired(d1);
        f.release_desired(d2);
        assert_eq!(f.desired.len(), 0);
        assert_eq!(f.kernel.len(), 1, "the written route still references it");
        f.kernel.release(k);
        assert_eq!(f.kernel.len(), 0, "every form is collected once unreferenced");
    }

    #[test]
    fn an_unset_interface_is_satisfied_by_whichever_the_kernel_resolved() {
        let mut f = Forms::default();
        let d = f.acquire_desired(form(RouteKind::RemoteDirect, via("192.168.0.2", None)));
        let resolved = f.acquire_kernel(KernelForm { target: via("192.168.0.2", Some(7)), mtu: None });
        let elsewhere = f.acquire_kernel(KernelForm { target: via("192.168.0.3", Some(7)), mtu: None });
        let other_mtu = f.acquire_kernel(KernelForm { target: via("192.168.0.2", Some(7)), mtu: Some(1400) });
        assert!(f.satisfied(d, resolved));
        assert!(!f.satisfied(d, elsewhere));
        assert!(!f.satisfied(d, other_mtu));
        let pinned = f.acquire_desired(form(RouteKind::RemoteDirect, via("192.168.0.2", Some(3))));
        assert!(!f.satisfied(pinned, resolved), "a set interface must match");
        let dst: IpNetwork = "10.0.0.0/24".parse().unwrap();
        assert!(f.desired_route(dst, d).satisfied_by(&f.kernel_route(dst, resolved)), "same answer as Route");
    }
}
