//! UPDATE packing: many prefixes sharing one attribute set in one UPDATE,
//! withdrawals packed too, none over 4096 octets. IPv4 unicast uses the
//! NLRI and Withdrawn Routes fields, other families MP_REACH/MP_UNREACH.
//! Toward an ADD-PATH peer each prefix carries our path identifier (RFC 7911).

use bytes::BytesMut;
use ipnetwork::IpNetwork;

use super::attrs::PathAttrs;
use super::net::prefix;
use crate::bgp::packet::{
    Aggregator, AttributeValue, Family, MpNlri, MpReachNlri, MpUnreachNlri, NextHop, Nlri, PathAttribute, UpdateMessage,
};
use crate::bgp::session::as4::outbound_as_path;

/// A prefix to send, with its ADD-PATH path identifier toward a peer that
/// receives them (`None` otherwise).
pub type OutNlri = (IpNetwork, Option<u32>);

/// RFC 4271 maximum message size.
pub const MAX_MESSAGE: usize = 4096;
/// Header (19) plus the two length fields of an UPDATE.
const FIXED: usize = 19 + 2 + 2;
/// An MP_REACH/MP_UNREACH attribute header with extended length, AFI, SAFI.
const MP_HEADER: usize = 4 + 3;

/// The path attributes for `attrs`, without NLRI: NEXT_HOP for IPv4
/// unicast; for other families the caller adds MP_REACH_NLRI.
pub fn wire_attributes(attrs: &PathAttrs, family: Family, four_octet: bool) -> Vec<PathAttribute> {
    let mut out = Vec::with_capacity(8);
    out.push(PathAttribute::new(AttributeValue::Origin(attrs.origin)));
    out.extend(outbound_as_path(&attrs.as_path, four_octet).into_iter().map(PathAttribute::new));
    if family == Family::IPV4_UNICAST
        && let Some(std::net::IpAddr::V4(nh)) = attrs.next_hop
    {
        out.push(PathAttribute::new(AttributeValue::NextHop(nh)));
    }
    if let Some(med) = attrs.med {
        out.push(PathAttribute::new(AttributeValue::MultiExitDisc(med)));
    }
    if let Some(lp) = attrs.local_pref {
        out.push(PathAttribute::new(AttributeValue::LocalPref(lp)));
    }
    if attrs.atomic_aggregate {
        out.push(PathAttribute::new(AttributeValue::AtomicAggregate));
    }
    if let Some(agg) = attrs.aggregator {
        out.push(PathAttribute::new(AttributeValue::Aggregator(Aggregator {
            four_octet,
            asn: if four_octet || agg.asn <= 0xffff { agg.asn } else { 23456 },
            address: agg.address,
        })));
        if !four_octet && agg.asn > 0xffff {
            out.push(PathAttribute::new(AttributeValue::As4Aggregator(Aggregator { four_octet: true, ..agg })));
        }
    }
    if !attrs.communities.is_empty() {
        out.push(PathAttribute::new(AttributeValue::Communities(attrs.communities.clone())));
    }
    if let Some(id) = attrs.originator_id {
        out.push(PathAttribute::new(AttributeValue::OriginatorId(id)));
    }
    if !attrs.cluster_list.is_empty() {
        out.push(PathAttribute::new(AttributeValue::ClusterList(attrs.cluster_list.clone())));
    }
    if !attrs.ext_communities.is_empty() {
        out.push(PathAttribute::new(AttributeValue::ExtendedCommunities(attrs.ext_communities.clone())));
    }
    if !attrs.large_communities.is_empty() {
        out.push(PathAttribute::new(AttributeValue::LargeCommunities(attrs.large_communities.clone())));
    }
    for (flags, code, data) in &attrs.unknown {
        out.push(PathAttribute { flags: *flags, value: AttributeValue::Raw { type_code: *code, data: data.clone() } });
    }
    out
}

fn encoded_len(attributes: &[PathAttribute]) -> usize {
    let mut buf = BytesMut::new();
    for a in attributes {
        // Attributes built above always encode.
        let _ = a.encode(&mut buf);
    }
    buf.len()
}

fn nlri_of(nets: &[OutNlri]) -> impl Iterator<Item = Nlri> + '_ {
    nets.iter().filter_map(|(n, id)| prefix(*n).map(|p| Nlri { path_id: *id, prefix: p }))
}

/// Splits `nets` into runs whose encoded NLRI fit in `budget` octets.
fn chunks(nets: &[OutNlri], budget: usize) -> Vec<Vec<Nlri>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut used = 0;
    for nlri in nlri_of(nets) {
        let len = nlri.encoded_len();
        if used + len > budget && !current.is_empty() {
            out.push(std::mem::take(&mut current));
            used = 0;
        }
        used += len;
        current.push(nlri);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// UPDATEs announcing `nets` (all of `family`) with `attrs`.
pub fn announce(family: Family, attrs: &PathAttrs, nets: &[OutNlri], four_octet: bool) -> Vec<UpdateMessage> {
    let attributes = wire_attributes(attrs, family, four_octet);
    let base = encoded_len(&attributes);
    if family == Family::IPV4_UNICAST {
        return chunks(nets, MAX_MESSAGE - FIXED - base)
            .into_iter()
            .map(|nlri| UpdateMessage { attributes: attributes.clone(), nlri, ..UpdateMessage::default() })
            .collect();
    }
    let next_hop = match (attrs.next_hop, attrs.link_local) {
        (Some(std::net::IpAddr::V6(global)), Some(link_local)) => NextHop::Ipv6WithLinkLocal { global, link_local },
        (Some(std::net::IpAddr::V6(a)), None) => NextHop::Ipv6(a),
        (Some(std::net::IpAddr::V4(a)), _) => NextHop::Ipv4(a),
        (None, _) => return Vec::new(),
    };
    let nh_len = match next_hop {
        NextHop::Ipv4(_) => 4,
        NextHop::Ipv6(_) => 16,
        _ => 32,
    };
    let budget = MAX_MESSAGE - FIXED - base - MP_HEADER - 1 - nh_len - 1;
    chunks(nets, budget)
        .into_iter()
        .map(|nlri| {
            // MP_REACH_NLRI goes first, as most implementations send it.
            let mut all = Vec::with_capacity(attributes.len() + 1);
            all.push(PathAttribute::new(AttributeValue::MpReachNlri(MpReachNlri {
                family,
                next_hop: next_hop.clone(),
                reserved: 0,
                nlri: MpNlri::Prefixes(nlri),
            })));
            all.extend(attributes.iter().cloned());
            UpdateMessage { attributes: all, ..UpdateMessage::default() }
        })
        .collect()
}

/// UPDATEs withdrawing `nets` (all of `family`).
pub fn withdraw(family: Family, nets: &[OutNlri]) -> Vec<UpdateMessage> {
    if family == Family::IPV4_UNICAST {
        return chunks(nets, MAX_MESSAGE - FIXED)
            .into_iter()
            .map(|withdrawn| UpdateMessage { withdrawn, ..UpdateMessage::default() })
            .collect();
    }
    chunks(nets, MAX_MESSAGE - FIXED - MP_HEADER)
        .into_iter()
        .map(|prefixes| UpdateMessage {
            attributes: vec![PathAttribute::new(AttributeValue::MpUnreachNlri(MpUnreachNlri {
                family,
                withdrawn: MpNlri::Prefixes(prefixes),
            }))],
            ..UpdateMessage::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::packet::{AddPathFamilies, DecodeContext, EncodeContext, Message};

    fn decode_all(updates: &[UpdateMessage], four_octet_as: bool) -> (Vec<String>, Vec<String>) {
        decode_with(updates, DecodeContext { four_octet_as, ..DecodeContext::default() })
    }

    /// Encodes each UPDATE and decodes it back with `ctx`: every octet consumed,
    /// no fault; the prefixes announced and withdrawn (with `#id` under ADD-PATH).
    fn decode_with(updates: &[UpdateMessage], ctx: DecodeContext) -> (Vec<String>, Vec<String>) {
        let (mut announced, mut withdrawn) = (Vec::new(), Vec::new());
        let show = |n: &Nlri| match n.path_id {
            Some(id) => format!("{}#{id}", n.prefix),
            None => n.prefix.to_string(),
        };
        for update in updates {
            let bytes = Message::Update(update.clone()).to_bytes(&EncodeContext::from(&ctx)).unwrap();
            assert!(bytes.len() <= MAX_MESSAGE, "an UPDATE of {} octets", bytes.len());
            let (decoded, used) = Message::decode(&bytes, &ctx).unwrap();
            assert_eq!(used, bytes.len());
            assert!(decoded.outcome.faults.is_empty());
            let Message::Update(u) = decoded.message else { panic!("not an UPDATE") };
            announced.extend(u.announced().map(|(_, n)| show(n)));
            withdrawn.extend(u.withdrawn_routes().map(|(_, n)| show(n)));
        }
        (announced, withdrawn)
    }

    fn v4(n: usize) -> Vec<OutNlri> {
        (0..n)
            .map(|i| {
                (IpNetwork::new(std::net::Ipv4Addr::from(0x0a00_0000 + ((i as u32) << 8)).into(), 24).unwrap(), None)
            })
            .collect()
    }

    fn attrs(nh: &str) -> PathAttrs {
        let mut a = PathAttrs::local();
        a.prepend(65001, 1);
        a.next_hop = Some(nh.parse().unwrap());
        a
    }

    #[test]
    fn n_prefixes_with_one_attribute_set_fill_ceil_n_over_k_updates() {
        let nets = v4(5000);
        let a = attrs("192.0.2.1");
        let updates = announce(Family::IPV4_UNICAST, &a, &nets, true);
        // 4 octets per /24; the attributes (ORIGIN 4, AS_PATH 9, NEXT_HOP 7) leave 4096-23-20 octets.
        let k = (MAX_MESSAGE - FIXED - 20) / 4;
        assert_eq!(updates.len(), nets.len().div_ceil(k));
        let (announced, _) = decode_all(&updates, true);
        assert_eq!(announced.len(), 5000);
        assert_eq!(announced[4999], "10.19.135.0/24");
    }

    #[test]
    fn withdrawals_and_ipv6_pack_and_decode_completely() {
        let nets = v4(3000);
        let updates = withdraw(Family::IPV4_UNICAST, &nets);
        assert_eq!(updates.len(), 3000usize.div_ceil((MAX_MESSAGE - FIXED) / 4));
        assert_eq!(decode_all(&updates, true).1.len(), 3000);
        let v6: Vec<OutNlri> = (0..2000u128)
            .map(|i| {
                (
                    IpNetwork::new(std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) + (i << 64)).into(), 64).unwrap(),
                    None,
                )
            })
            .collect();
        let updates = announce(Family::IPV6_UNICAST, &attrs("2001:db8::1"), &v6, false);
        assert!(updates.len() > 1);
        assert_eq!(decode_all(&updates, false).0.len(), 2000);
        let updates = withdraw(Family::IPV6_UNICAST, &v6);
        assert_eq!(decode_all(&updates, true).1.len(), 2000);
    }

    #[test]
    fn path_ids_pack_and_decode_back_under_the_add_path_context() {
        let ctx = DecodeContext { add_path: AddPathFamilies::ALL, ..DecodeContext::default() };
        // 2000 prefixes, each under two ids: 8 octets per /24, more than one UPDATE.
        let nets: Vec<OutNlri> = v4(2000).into_iter().flat_map(|(n, _)| [(n, Some(1)), (n, Some(7))]).collect();
        let updates = announce(Family::IPV4_UNICAST, &attrs("192.0.2.1"), &nets, true);
        assert!(updates.len() > 1);
        let (announced, _) = decode_with(&updates, ctx);
        assert_eq!(announced.len(), 4000);
        assert_eq!(&announced[..2], ["10.0.0.0/24#1", "10.0.0.0/24#7"]);
        let (_, withdrawn) = decode_with(&withdraw(Family::IPV4_UNICAST, &nets[..3]), ctx);
        assert_eq!(withdrawn, ["10.0.0.0/24#1", "10.0.0.0/24#7", "10.0.1.0/24#1"]);
        let v6: Vec<OutNlri> =
            vec![("2001:db8::/64".parse().unwrap(), Some(2)), ("2001:db8::/64".parse().unwrap(), Some(3))];
        let (announced, _) = decode_with(&announce(Family::IPV6_UNICAST, &attrs("2001:db8::1"), &v6, true), ctx);
        assert_eq!(announced, ["2001:db8::/64#2", "2001:db8::/64#3"]);
        let (_, withdrawn) = decode_with(&withdraw(Family::IPV6_UNICAST, &v6[1..]), ctx);
        assert_eq!(withdrawn, ["2001:db8::/64#3"]);
    }
}
