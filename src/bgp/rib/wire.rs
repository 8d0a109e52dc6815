//! A batch of UPDATEs for one peer, encoded straight into one buffer: the
//! session writes it as it is. IPv4 unicast announcements take their path
//! attributes from [`AttrBytes`], encoded once per attribute set and reused
//! for every peer that gets the same set (a reflector's clients all get a
//! client's route with the same attributes). Other families and
//! withdrawals go through [`pack`](super::pack) and the message encoder.
//! The octets are the same as encoding [`pack`](super::pack)'s UPDATEs one
//! by one (tested below).

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use rustc_hash::FxHashMap;

use super::attrs::Attrs;
use super::net::prefix;
use super::pack::{self, MAX_MESSAGE, OutNlri};
use crate::bgp::packet::header::MARKER;
use crate::bgp::packet::{EncodeContext, Family, Message, MessageType, Nlri, UpdateMessage};

/// Header (19) plus the two length fields of an UPDATE.
const FIXED: usize = 19 + 2 + 2;

/// The encoded IPv4 unicast path attributes of interned attribute sets, by
/// set and AS number width. An entry holds its set, so the pointer stays
/// that set's; sets only the cache and the intern table hold are dropped
/// when the cache has doubled since it was last trimmed.
#[derive(Debug, Default)]
pub struct AttrBytes {
    map: FxHashMap<(usize, bool), (Attrs, Bytes)>,
    trimmed_at: usize,
}

impl AttrBytes {
    /// The attributes of `attrs` as they go on the wire in an IPv4 unicast UPDATE.
    pub fn get(&mut self, attrs: &Attrs, four_octet: bool) -> Bytes {
        let key = (Arc::as_ptr(attrs) as usize, four_octet);
        if let Some((_, bytes)) = self.map.get(&key) {
            return bytes.clone();
        }
        let bytes = encode_attributes(attrs, four_octet);
        self.map.insert(key, (attrs.clone(), bytes.clone()));
        if self.map.len() > 2 * self.trimmed_at + 1024 {
            // Held elsewhere than here and in the intern table: still in use.
            self.map.retain(|_, (attrs, _)| Arc::strong_count(attrs) > 2);
            self.trimmed_at = self.map.len();
        }
        bytes
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn encode_attributes(attrs: &Attrs, four_octet: bool) -> Bytes {
    let mut out = BytesMut::new();
    for attribute in pack::wire_attributes(attrs, Family::IPV4_UNICAST, four_octet) {
        // The attributes built from a stored set always encode.
        let _ = attribute.encode(&mut out);
    }
    out.freeze()
}

/// UPDATEs appended to one buffer, counted.
#[derive(Debug, Default)]
pub struct Batch {
    pub out: BytesMut,
    pub updates: u64,
}

/// Spare room a finished batch may keep; more is given back by a copy.
const SPARE_SHARE: usize = 4;

impl Batch {
    /// The octets, in a buffer no larger than a quarter over them: a batch
    /// waits in a queue per peer (a reflector holds one to three per client),
    /// and a buffer grown by doubling is on average a third unused.
    pub fn into_bytes(self) -> Bytes {
        if self.out.capacity() - self.out.len() > self.out.len() / SPARE_SHARE {
            Bytes::copy_from_slice(&self.out)
        } else {
            self.out.freeze()
        }
    }

    /// UPDATEs announcing `nets` (IPv4 unicast) with the encoded `attributes`,
    /// as many prefixes in each as fit in 4 096 octets.
    pub fn announce_ipv4(&mut self, attributes: &[u8], nets: &[OutNlri]) {
        let budget = MAX_MESSAGE - FIXED - attributes.len();
        let mut start = None;
        let mut used = 0;
        for nlri in nets.iter().filter_map(|(n, id)| prefix(*n).map(|p| Nlri { path_id: *id, prefix: p })) {
            let len = nlri.encoded_len();
            if start.is_some() && used + len > budget {
                self.finish(start.take());
            }
            if start.is_none() {
                start = Some(self.begin(attributes));
                used = 0;
            }
            used += len;
            nlri.encode(&mut self.out);
        }
        self.finish(start);
    }

    /// Appends decoded UPDATEs (withdrawals, other families); one that does
    /// not encode is left out.
    pub fn push(&mut self, updates: impl IntoIterator<Item = UpdateMessage>, ctx: &EncodeContext) {
        for update in updates {
            if Message::Update(update).encode(&mut self.out, ctx).is_ok() {
                self.updates += 1;
            } else {
                tracing::warn!(subsys = "rib", "an outbound UPDATE does not encode; dropped");
            }
        }
    }

    /// Header, no withdrawn routes, the attributes; NLRI follow. Where it starts.
    fn begin(&mut self, attributes: &[u8]) -> usize {
        let start = self.out.len();
        self.out.put_slice(&MARKER);
        self.out.put_u16(0);
        self.out.put_u8(MessageType::Update.code());
        self.out.put_u16(0);
        self.out.put_u16(attributes.len() as u16);
        self.out.put_slice(attributes);
        start
    }

    /// Writes the length of the message begun at `start`.
    fn finish(&mut self, start: Option<usize>) {
        let Some(start) = start else { return };
        let length = (self.out.len() - start) as u16;
        if let Some(slot) = self.out.get_mut(start + 16..start + 18) {
            slot.copy_from_slice(&length.to_be_bytes());
        }
        self.updates += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::rib::attrs::PathAttrs;
    use ipnetwork::IpNetwork;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn attrs(next_hop: u32, as_path: &[u32], communities: usize, cluster: usize) -> Attrs {
        let mut a = PathAttrs::local();
        a.next_hop = Some(Ipv4Addr::from(next_hop).into());
        a.local_pref = Some(100);
        for asn in as_path.iter().rev() {
            a.prepend(*asn, 1);
        }
        a.communities = (0..communities as u32).map(crate::bgp::packet::Community).collect();
        if cluster > 0 {
            a.originator_id = Some(Ipv4Addr::from(next_hop));
            a.cluster_list = (0..cluster as u32).map(Ipv4Addr::from).collect();
        }
        Arc::new(a)
    }

    /// The reference: `pack`'s UPDATEs, each encoded alone.
    fn reference(a: &PathAttrs, nets: &[OutNlri], four_octet: bool) -> Vec<u8> {
        let mut out = BytesMut::new();
        for update in pack::announce(Family::IPV4_UNICAST, a, nets, four_octet) {
            Message::Update(update).encode(&mut out, &EncodeContext::default()).unwrap();
        }
        out.to_vec()
    }

    proptest! {
        #[test]
        fn a_batch_encodes_the_octets_of_packed_updates_one_by_one(
            next_hop in any::<u32>(),
            as_path in prop::collection::vec(any::<u32>(), 0..4),
            communities in 0usize..300,
            cluster in 0usize..3,
            four_octet in any::<bool>(),
            with_ids in any::<bool>(),
            prefixes in prop::collection::vec((any::<u32>(), 0u8..=32, 1u32..9), 0..3000),
        ) {
            let a = attrs(next_hop, &as_path, communities, cluster);
            let nets: Vec<OutNlri> = prefixes
                .iter()
                .map(|(addr, len, id)| {
                    let net = IpNetwork::new(Ipv4Addr::from(*addr).into(), *len).unwrap();
                    (crate::bgp::rib::net::normalize(net), with_ids.then_some(*id))
                })
                .collect();
            let mut cache = AttrBytes::default();
            let mut batch = Batch::default();
            batch.announce_ipv4(&cache.get(&a, four_octet), &nets);
            let expected = reference(&a, &nets, four_octet);
            prop_assert_eq!(batch.out.to_vec(), expected.clone());
            let packed = pack::announce(Family::IPV4_UNICAST, &a, &nets, four_octet).len() as u64;
            prop_assert_eq!(batch.updates, packed);
            prop_assert_eq!(batch.into_bytes().to_vec(), expected, "the octets survive trimming the buffer");
        }
    }

    #[test]
    fn a_finished_batch_keeps_at_most_a_quarter_spare() {
        let a = attrs(0x0a00_0001, &[65001], 0, 1);
        let nets: Vec<OutNlri> = (0..200u32)
            .map(|i| (IpNetwork::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)).into(), 24).unwrap(), None))
            .collect();
        for n in [1, 7, 64, 200] {
            let mut cache = AttrBytes::default();
            let mut batch = Batch::default();
            for net in &nets[..n] {
                batch.announce_ipv4(&cache.get(&attrs(0x0a00_0002, &[65002], 0, 1), true), std::slice::from_ref(net));
            }
            batch.announce_ipv4(&cache.get(&a, true), &nets[..n]);
            let len = batch.out.len();
            let bytes = batch.into_bytes();
            assert_eq!(bytes.len(), len);
            // `Bytes` shows its buffer's size once it is unique and mutable again.
            let kept = bytes.try_into_mut().expect("the only reference").capacity();
            assert!(kept <= len + len / SPARE_SHARE, "{n} prefixes: {kept} octets kept for {len}");
        }
    }

    #[test]
    fn the_cache_encodes_a_set_once_and_forgets_unused_sets() {
        let mut cache = AttrBytes::default();
        let a = attrs(0x0a00_0001, &[65001], 0, 1);
        let _interned = a.clone();
        let first = cache.get(&a, true);
        let again = cache.get(&a, true);
        assert_eq!(first.as_ptr(), again.as_ptr(), "encoded once");
        assert_ne!(cache.get(&a, false), first, "2-octet AS numbers are encoded apart");
        // Sets nobody else holds go when the cache has grown enough.
        for i in 0..2000 {
            cache.get(&attrs(i, &[], 0, 0), true);
        }
        assert!(cache.len() < 1100, "{} entries kept", cache.len());
        let kept = cache.map.values().filter(|(s, _)| Arc::ptr_eq(s, &a)).count();
        assert_eq!(kept, 2, "a set still in use stays");
    }
}
