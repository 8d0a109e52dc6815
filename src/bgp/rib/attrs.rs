//! Path attributes as the RIB keeps them: one typed, hashable set per route,
//! interned so that routes sharing attributes share one allocation.

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use bytes::Bytes;
use rustc_hash::FxHashSet;

use crate::bgp::packet::{
    Aggregator, AsPath, AsSegment, Community, ExtendedCommunity, LargeCommunity, Origin, SegmentType,
};

/// LOCAL_PREF assumed for a route that has none (eBGP-learned, local).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// The attributes of one path. `next_hop: None` means "this speaker" (a
/// locally originated route), filled in per peer on export.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathAttrs {
    pub origin: Origin,
    /// Always in 4-octet form (AS4_PATH already merged for 2-octet peers).
    pub as_path: AsPath,
    pub next_hop: Option<IpAddr>,
    /// The IPv6 link-local next hop that came with a global one, if any.
    pub link_local: Option<Ipv6Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<Aggregator>,
    pub communities: Vec<Community>,
    pub ext_communities: Vec<ExtendedCommunity>,
    pub large_communities: Vec<LargeCommunity>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    /// Unknown optional transitive attributes: (flags, type code, value).
    pub unknown: Vec<(u8, u8, Bytes)>,
}

impl PathAttrs {
    /// The attributes of a route this speaker originates.
    pub fn local() -> Self {
        PathAttrs {
            origin: Origin::Igp,
            as_path: AsPath { four_octet: true, segments: Vec::new() },
            next_hop: None,
            link_local: None,
            med: None,
            local_pref: None,
            atomic_aggregate: false,
            aggregator: None,
            communities: Vec::new(),
            ext_communities: Vec::new(),
            large_communities: Vec::new(),
            originator_id: None,
            cluster_list: Vec::new(),
            unknown: Vec::new(),
        }
    }

    /// The AS number the path came from (first of the path), or `local_as` for an empty path.
    pub fn neighbor_as(&self, local_as: u32) -> u32 {
        self.as_path
            .segments
            .iter()
            .find(|s| matches!(s.segment_type, SegmentType::AsSequence | SegmentType::AsSet))
            .and_then(|s| s.asns.first().copied())
            .unwrap_or(local_as)
    }

    /// How many times `asn` appears in the AS path.
    pub fn count_as(&self, asn: u32) -> usize {
        self.as_path.segments.iter().flat_map(|s| &s.asns).filter(|&&a| a == asn).count()
    }

    /// Prepends `asn` `count` times to the leading AS_SEQUENCE (a new one if needed).
    pub fn prepend(&mut self, asn: u32, count: usize) {
        if count == 0 {
            return;
        }
        match self.as_path.segments.first_mut() {
            // An AS_SEQUENCE holds at most 255 numbers on the wire.
            Some(first) if first.segment_type == SegmentType::AsSequence && first.asns.len() + count <= 255 => {
                first.asns.splice(0..0, std::iter::repeat_n(asn, count));
            }
            _ => self.as_path.segments.insert(
                0,
                AsSegment { segment_type: SegmentType::AsSequence, asns: std::iter::repeat_n(asn, count).collect() },
            ),
        }
    }

    /// The AS path as numbers in order, sets flattened ("65001 65002 {65003}").
    pub fn as_path_text(&self) -> String {
        let mut parts = Vec::new();
        for segment in &self.as_path.segments {
            let asns: Vec<String> = segment.asns.iter().map(u32::to_string).collect();
            match segment.segment_type {
                SegmentType::AsSequence | SegmentType::AsConfedSequence => parts.extend(asns),
                SegmentType::AsSet | SegmentType::AsConfedSet => parts.push(format!("{{{}}}", asns.join(","))),
            }
        }
        parts.join(" ")
    }
}

/// A shared, interned attribute set.
pub type Attrs = Arc<PathAttrs>;

/// The intern table: equal attribute sets come back as the same `Arc`, so
/// pointer equality is value equality for interned sets.
#[derive(Debug, Default)]
pub struct Interner {
    set: FxHashSet<Arc<PathAttrs>>,
    /// Size after the last collection; the next one runs when the table doubles.
    collected_at: usize,
}

impl Interner {
    pub fn intern(&mut self, attrs: PathAttrs) -> Attrs {
        if let Some(existing) = self.set.get(&attrs) {
            return existing.clone();
        }
        let attrs = Arc::new(attrs);
        self.set.insert(attrs.clone());
        if self.set.len() > 2 * self.collected_at + 1024 {
            self.collect();
        }
        attrs
    }

    /// Drops the sets no route refers to any more.
    pub fn collect(&mut self) {
        self.set.retain(|attrs| Arc::strong_count(attrs) > 1);
        self.collected_at = self.set.len();
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_sets_share_one_allocation_and_unused_ones_are_collected() {
        let mut interner = Interner::default();
        let mut attrs = PathAttrs::local();
        attrs.next_hop = Some("192.0.2.1".parse().unwrap());
        let a = interner.intern(attrs.clone());
        let b = interner.intern(attrs.clone());
        assert!(Arc::ptr_eq(&a, &b));
        attrs.med = Some(5);
        let c = interner.intern(attrs);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(interner.len(), 2);
        drop(c);
        interner.collect();
        assert_eq!(interner.len(), 1);
    }

    #[test]
    fn prepend_extends_the_leading_sequence() {
        let mut attrs = PathAttrs::local();
        attrs.prepend(65001, 1);
        attrs.prepend(65000, 2);
        assert_eq!(attrs.as_path_text(), "65000 65000 65001");
        assert_eq!(attrs.neighbor_as(1), 65000);
        assert_eq!(attrs.count_as(65000), 2);
    }
}
