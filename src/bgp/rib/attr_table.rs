//! Received attribute sets by number: the Loc-RIB stores a 32-bit id per
//! path instead of a pointer, so that a path fits in the 56 bits of a
//! compact table entry. Ids are reference counted by the Loc-RIB (one
//! reference per stored path) and reused once free.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::attrs::{Attrs, PathAttrs};

/// The number of an interned attribute set.
pub type AttrId = u32;

#[derive(Debug)]
struct Slot {
    attrs: Attrs,
    refs: u32,
}

/// Interned attribute sets with reference counts.
#[derive(Debug, Default)]
pub struct AttrTable {
    slots: Vec<Option<Slot>>,
    free: Vec<AttrId>,
    index: FxHashMap<Attrs, AttrId>,
    /// Live sets after the last collection of unreferenced ones.
    collected_at: usize,
}

impl AttrTable {
    /// The id of `attrs`, adding it if new. The set is not referenced yet:
    /// it lives until the next collection unless a path refers to it.
    pub fn intern(&mut self, attrs: PathAttrs) -> (AttrId, Attrs) {
        if let Some((shared, id)) = self.index.get_key_value(&attrs) {
            return (*id, shared.clone());
        }
        if self.index.len() > 2 * self.collected_at + 1024 {
            self.collect();
        }
        let attrs = Arc::new(attrs);
        let slot = Some(Slot { attrs: attrs.clone(), refs: 0 });
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = slot;
                id
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as AttrId
            }
        };
        self.index.insert(attrs.clone(), id);
        (id, attrs)
    }

    /// The set behind a live id.
    pub fn get(&self, id: AttrId) -> &Attrs {
        &self.slots[id as usize].as_ref().expect("a live attribute id").attrs
    }

    /// One more path refers to `id`.
    pub fn retain(&mut self, id: AttrId) {
        if let Some(slot) = self.slots[id as usize].as_mut() {
            slot.refs += 1;
        }
    }

    /// One path fewer refers to `id`; the set goes with its last path.
    pub fn release(&mut self, id: AttrId) {
        let Some(slot) = self.slots[id as usize].as_mut() else { return };
        slot.refs = slot.refs.saturating_sub(1);
        if slot.refs == 0 {
            self.drop_slot(id);
        }
    }

    fn drop_slot(&mut self, id: AttrId) {
        if let Some(slot) = self.slots[id as usize].take() {
            self.index.remove(&slot.attrs);
            self.free.push(id);
        }
    }

    /// Drops the sets interned but never referenced (an UPDATE whose routes
    /// were all rejected or replaced).
    pub fn collect(&mut self) {
        let unused: Vec<AttrId> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(id, s)| s.as_ref().filter(|s| s.refs == 0).map(|_| id as AttrId))
            .collect();
        for id in unused {
            self.drop_slot(id);
        }
        self.collected_at = self.index.len();
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_sets_share_an_id_which_is_freed_with_its_last_reference() {
        let mut t = AttrTable::default();
        let mut a = PathAttrs::local();
        a.med = Some(1);
        let (id, shared) = t.intern(a.clone());
        let (again, shared_again) = t.intern(a.clone());
        assert_eq!(id, again);
        assert!(Arc::ptr_eq(&shared, &shared_again));
        t.retain(id);
        t.retain(id);
        t.release(id);
        assert_eq!(t.get(id).med, Some(1));
        t.release(id);
        assert!(t.is_empty());
        let mut b = a.clone();
        b.med = Some(2);
        let (reused, _) = t.intern(b);
        assert_eq!(reused, id, "a free id is reused");
        assert_eq!(t.get(reused).med, Some(2));
    }

    #[test]
    fn sets_never_referenced_are_collected() {
        let mut t = AttrTable::default();
        let (kept, _) = t.intern(PathAttrs::local());
        t.retain(kept);
        let mut other = PathAttrs::local();
        other.med = Some(9);
        t.intern(other);
        assert_eq!(t.len(), 2);
        t.collect();
        assert_eq!(t.len(), 1);
        assert!(t.get(kept).med.is_none());
    }
}
