//! Property tests: for generated messages, `decode(encode(x)) == x` with no
//! RFC 7606 fault, the whole input consumed, and the JSON form round-trips.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use tortie::bgp::packet::json::{decoded_to_json, json_to_wire};
use tortie::bgp::packet::*;

fn prefix_v4() -> impl Strategy<Value = Prefix> {
    (any::<u32>(), 0u8..=32).prop_map(|(bits, len)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        Prefix::new(IpAddr::V4(Ipv4Addr::from(bits & mask)), len).unwrap()
    })
}

fn prefix_v6() -> impl Strategy<Value = Prefix> {
    (any::<u128>(), 0u8..=128).prop_map(|(bits, len)| {
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        Prefix::new(IpAddr::V6(Ipv6Addr::from(bits & mask)), len).unwrap()
    })
}

fn nlri_list(prefix: BoxedStrategy<Prefix>, add_path: bool) -> impl Strategy<Value = Vec<Nlri>> {
    vec((any::<u32>(), prefix), 0..6).prop_map(move |entries| {
        entries.into_iter().map(|(path_id, prefix)| Nlri { path_id: add_path.then_some(path_id), prefix }).collect()
    })
}

fn as_path(four_octet: bool) -> impl Strategy<Value = AsPath> {
    let asn = if four_octet { any::<u32>().boxed() } else { any::<u16>().prop_map(u32::from).boxed() };
    let segment_type = prop_oneof![
        Just(SegmentType::AsSet),
        Just(SegmentType::AsSequence),
        Just(SegmentType::AsConfedSequence),
        Just(SegmentType::AsConfedSet),
    ];
    vec((segment_type, vec(asn, 1..5)), 0..4).prop_map(move |segments| AsPath {
        four_octet,
        segments: segments.into_iter().map(|(segment_type, asns)| AsSegment { segment_type, asns }).collect(),
    })
}

fn host_v4() -> impl Strategy<Value = Ipv4Addr> {
    (1u8..=223, any::<[u8; 3]>()).prop_map(|(first, rest)| Ipv4Addr::new(first, rest[0], rest[1], rest[2]))
}

/// Optional attributes that are valid from an internal peer with 4-octet AS.
fn optional_attribute(add_path: bool) -> impl Strategy<Value = AttributeValue> {
    prop_oneof![
        any::<u32>().prop_map(AttributeValue::MultiExitDisc),
        any::<u32>().prop_map(AttributeValue::LocalPref),
        Just(AttributeValue::AtomicAggregate),
        (any::<u32>(), any::<u32>()).prop_map(|(asn, address)| AttributeValue::Aggregator(Aggregator {
            four_octet: true,
            asn,
            address: Ipv4Addr::from(address),
        })),
        vec(any::<u32>().prop_map(Community), 1..5).prop_map(AttributeValue::Communities),
        any::<u32>().prop_map(|id| AttributeValue::OriginatorId(Ipv4Addr::from(id))),
        vec(any::<u32>().prop_map(Ipv4Addr::from), 1..4).prop_map(AttributeValue::ClusterList),
        vec(any::<[u8; 8]>().prop_map(ExtendedCommunity), 1..4).prop_map(AttributeValue::ExtendedCommunities),
        vec(
            any::<(u32, u32, u32)>().prop_map(|(a, b, c)| LargeCommunity {
                global_admin: a,
                local_data_1: b,
                local_data_2: c,
            }),
            1..4
        )
        .prop_map(AttributeValue::LargeCommunities),
        (100u8..=200, vec(any::<u8>(), 0..20))
            .prop_map(|(type_code, data)| AttributeValue::Raw { type_code, data: Bytes::from(data) }),
        (any::<[u8; 16]>(), nlri_list(prefix_v6().boxed(), add_path)).prop_map(|(global, nlri)| {
            AttributeValue::MpReachNlri(MpReachNlri {
                family: Family::IPV6_UNICAST,
                next_hop: NextHop::Ipv6WithLinkLocal {
                    global: Ipv6Addr::from(global),
                    link_local: "fe80::1".parse().unwrap(),
                },
                reserved: 0,
                nlri: MpNlri::Prefixes(nlri),
            })
        }),
        nlri_list(prefix_v6().boxed(), add_path).prop_map(|withdrawn| AttributeValue::MpUnreachNlri(MpUnreachNlri {
            family: Family::IPV6_UNICAST,
            withdrawn: MpNlri::Prefixes(withdrawn),
        })),
    ]
}

fn update_message() -> impl Strategy<Value = (UpdateMessage, bool)> {
    any::<bool>().prop_flat_map(|add_path| {
        (
            nlri_list(prefix_v4().boxed(), add_path),
            prop_oneof![Just(Origin::Igp), Just(Origin::Egp), Just(Origin::Incomplete)],
            as_path(true),
            host_v4(),
            vec(optional_attribute(add_path), 0..6),
            nlri_list(prefix_v4().boxed(), add_path),
            any::<bool>(),
        )
            .prop_map(move |(withdrawn, origin, path, next_hop, optional, nlri, extended_bit)| {
                let mut attributes = vec![
                    PathAttribute::new(AttributeValue::Origin(origin)),
                    PathAttribute::new(AttributeValue::AsPath(path)),
                    PathAttribute::new(AttributeValue::NextHop(next_hop)),
                ];
                // One of each type: RFC 7606 discards repeats.
                let mut seen = std::collections::HashSet::new();
                for value in optional {
                    if seen.insert(value.type_code()) {
                        attributes.push(PathAttribute::new(value));
                    }
                }
                if extended_bit {
                    attributes[0].flags |= 0x10;
                }
                (UpdateMessage { withdrawn, attributes, unparsed_attributes: Bytes::new(), nlri }, add_path)
            })
    })
}

fn capability() -> impl Strategy<Value = Capability> {
    let family = prop_oneof![Just(Family::IPV4_UNICAST), Just(Family::IPV6_UNICAST)];
    prop_oneof![
        family.clone().prop_map(Capability::Multiprotocol),
        Just(Capability::RouteRefresh),
        Just(Capability::EnhancedRouteRefresh),
        Just(Capability::ExtendedMessage),
        // AS 0 is Bad Peer AS (RFC 7607), never a valid OPEN.
        (1u32..).prop_map(Capability::FourOctetAs),
        (0u8..16, 0u16..4096, vec((family.clone(), any::<u8>()), 0..3)).prop_map(
            |(restart_flags, restart_time, families)| {
                Capability::GracefulRestart {
                    restart_flags,
                    restart_time,
                    families: families
                        .into_iter()
                        .map(|(family, flags)| GracefulRestartFamily { family, flags })
                        .collect(),
                }
            }
        ),
        vec((family, 1u8..=3), 1..3).prop_map(|families| Capability::AddPath(
            families.into_iter().map(|(family, send_receive)| AddPathFamily { family, send_receive }).collect()
        )),
        ("[a-z0-9-]{0,20}", "[a-z.]{0,20}").prop_map(|(hostname, domain)| Capability::Fqdn { hostname, domain }),
        (100u8..=200, vec(any::<u8>(), 0..10))
            .prop_map(|(code, data)| Capability::Unknown { code, data: Bytes::from(data) }),
    ]
}

fn open_message() -> impl Strategy<Value = OpenMessage> {
    (1u16.., prop_oneof![Just(0u16), 3u16..=u16::MAX], 1u32.., any::<bool>(), vec(vec(capability(), 0..5), 0..3))
        .prop_map(|(my_as, hold_time, identifier, extended_parameters, parameters)| OpenMessage {
            version: 4,
            my_as,
            hold_time,
            bgp_identifier: Ipv4Addr::from(identifier),
            extended_parameters,
            parameters: parameters.into_iter().map(OptionalParameter::Capabilities).collect(),
        })
}

fn message() -> impl Strategy<Value = (Message, DecodeContext)> {
    let ctx = |add_path: bool| DecodeContext {
        add_path: if add_path { AddPathFamilies::ALL } else { AddPathFamilies::default() },
        ibgp: true,
        extended_message: true,
        ..DecodeContext::default()
    };
    prop_oneof![
        update_message().prop_map(move |(update, add_path)| (Message::Update(update), ctx(add_path))),
        open_message().prop_map(move |open| (Message::Open(open), ctx(false))),
        (any::<u8>(), any::<u8>(), vec(any::<u8>(), 0..40)).prop_map(move |(code, subcode, data)| {
            (Message::Notification(NotificationMessage::new(code, subcode, data)), ctx(false))
        }),
        Just((Message::Keepalive, ctx(false))),
        (any::<u16>(), any::<u8>(), 0u8..=2).prop_map(move |(afi, safi, subtype)| {
            (
                Message::RouteRefresh(RouteRefreshMessage { family: Family::new(Afi(afi), Safi(safi)), subtype }),
                ctx(false),
            )
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_of_encode_is_identity((message, ctx) in message()) {
        let wire = message.to_bytes(&EncodeContext::from(&ctx)).unwrap();
        let (decoded, used) = Message::decode(&wire, &ctx).unwrap();
        prop_assert_eq!(used, wire.len());
        prop_assert_eq!(decoded.outcome.action(), Rfc7606Action::Ok, "{:?}", decoded.outcome);
        prop_assert_eq!(&decoded.message, &message);
    }

    #[test]
    fn json_round_trip_reproduces_the_wire((message, ctx) in message()) {
        let wire = message.to_bytes(&EncodeContext::from(&ctx)).unwrap();
        let (decoded, _) = Message::decode(&wire, &ctx).unwrap();
        let line = decoded_to_json(&decoded).to_string();
        let back = json_to_wire(&serde_json::from_str(&line).unwrap()).unwrap();
        prop_assert_eq!(back, wire);
    }

    #[test]
    fn arbitrary_input_never_panics(data in vec(any::<u8>(), 0..300), as4: bool, add_path: bool, ibgp: bool) {
        let mut wire = vec![0xff; 16];
        wire.extend_from_slice(&u16::try_from(19 + data.len()).unwrap().to_be_bytes());
        wire.push(2);
        wire.extend_from_slice(&data);
        let ctx = DecodeContext {
            four_octet_as: as4,
            add_path: if add_path { AddPathFamilies::ALL } else { AddPathFamilies::default() },
            ibgp,
            extended_message: false,
        };
        if let Ok((decoded, used)) = Message::decode(&wire, &ctx) {
            prop_assert_eq!(used, wire.len());
            // Whatever decodes, even with faults, re-encodes to the same octets.
            let encoded = decoded.message.to_bytes(&EncodeContext::from(&ctx)).unwrap();
            prop_assert_eq!(encoded.as_ref(), &wire[..]);
        }
    }
}
