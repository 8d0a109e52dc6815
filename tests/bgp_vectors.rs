//! Byte vectors, tested both ways: decoding must consume the whole input and
//! give the expected model; encoding the model must give the exact bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use tortie::bgp::packet::*;

fn message(message_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
    out.push(message_type);
    out.extend_from_slice(body);
    out
}

fn update(withdrawn: &[u8], attributes: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&u16::try_from(withdrawn.len()).unwrap().to_be_bytes());
    body.extend_from_slice(withdrawn);
    body.extend_from_slice(&u16::try_from(attributes.len()).unwrap().to_be_bytes());
    body.extend_from_slice(attributes);
    body.extend_from_slice(nlri);
    message(2, &body)
}

fn attr(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![flags, code];
    if flags & 0x10 != 0 {
        out.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
    } else {
        out.push(u8::try_from(value.len()).unwrap());
    }
    out.extend_from_slice(value);
    out
}

fn prefix(text: &str) -> Prefix {
    text.parse().unwrap()
}

/// Decodes `wire` (asserting the whole input is consumed and no fault is
/// found), compares with `expected`, and encodes `expected` back to `wire`.
fn assert_both_ways(wire: &[u8], ctx: &DecodeContext, expected: &Message) {
    let (decoded, used) = Message::decode(wire, ctx).expect("decodes");
    assert_eq!(used, wire.len(), "the whole input is consumed");
    assert_eq!(decoded.outcome, UpdateOutcome::default(), "no RFC 7606 fault");
    assert_eq!(&decoded.message, expected);
    let encoded = expected.to_bytes(&EncodeContext::from(ctx)).expect("encodes");
    assert_eq!(encoded.as_ref(), wire, "encoding gives the same octets");
}

fn ibgp() -> DecodeContext {
    DecodeContext { ibgp: true, ..DecodeContext::default() }
}

#[test]
fn keepalive_both_ways() {
    assert_both_ways(&message(4, &[]), &DecodeContext::default(), &Message::Keepalive);
}

#[test]
fn open_with_every_typed_capability_both_ways() {
    let caps: Vec<u8> = [
        &[1, 4, 0, 1, 0, 1][..],
        &[1, 4, 0, 2, 0, 1],
        &[2, 0],
        &[70, 0],
        &[65, 4, 0, 0, 0xfd, 0xe9],
        &[64, 10, 0x80, 120, 0, 1, 1, 0x80, 0, 2, 1, 0],
        &[69, 8, 0, 1, 1, 3, 0, 2, 1, 1],
        &[5, 6, 0, 1, 0, 1, 0, 2],
        &[6, 0],
        &[73, 9, 5, b'r', b'o', b'u', b't', b'e', 2, b'l', b'n'],
        &[128, 0],
    ]
    .concat();
    let mut body = vec![4, 0xfd, 0xe9, 0, 90, 192, 0, 2, 1, u8::try_from(caps.len() + 2).unwrap(), 2];
    body.push(u8::try_from(caps.len()).unwrap());
    body.extend_from_slice(&caps);
    let expected = Message::Open(OpenMessage {
        version: 4,
        my_as: 65001,
        hold_time: 90,
        bgp_identifier: Ipv4Addr::new(192, 0, 2, 1),
        extended_parameters: false,
        parameters: vec![OptionalParameter::Capabilities(vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::EnhancedRouteRefresh,
            Capability::FourOctetAs(65001),
            Capability::GracefulRestart {
                restart_flags: 8,
                restart_time: 120,
                families: vec![
                    GracefulRestartFamily { family: Family::IPV4_UNICAST, flags: 0x80 },
                    GracefulRestartFamily { family: Family::IPV6_UNICAST, flags: 0 },
                ],
            },
            Capability::AddPath(vec![
                AddPathFamily { family: Family::IPV4_UNICAST, send_receive: 3 },
                AddPathFamily { family: Family::IPV6_UNICAST, send_receive: 1 },
            ]),
            Capability::ExtendedNextHop(vec![ExtendedNextHopEncoding {
                nlri_afi: Afi::IPV4,
                nlri_safi: 1,
                next_hop_afi: Afi::IPV6,
            }]),
            Capability::ExtendedMessage,
            Capability::Fqdn { hostname: "route".into(), domain: "ln".into() },
            Capability::Unknown { code: 128, data: Bytes::new() },
        ])],
    });
    assert_both_ways(&message(1, &body), &DecodeContext::default(), &expected);
    let Message::Open(open) = expected else { unreachable!() };
    assert_eq!(open.asn(), 65001);
}

#[test]
fn open_with_malformed_known_capability_keeps_it_opaque() {
    // A 4-octet AS capability of 3 octets and a multiprotocol one with a
    // non-zero reserved octet: kept as unknown octets, never an error.
    let body = [4, 0, 1, 0, 90, 1, 1, 1, 1, 13, 2, 11, 65, 3, 1, 2, 3, 1, 4, 0, 1, 7, 1];
    let expected = Message::Open(OpenMessage {
        version: 4,
        my_as: 1,
        hold_time: 90,
        bgp_identifier: Ipv4Addr::new(1, 1, 1, 1),
        extended_parameters: false,
        parameters: vec![OptionalParameter::Capabilities(vec![
            Capability::Unknown { code: 65, data: Bytes::from_static(&[1, 2, 3]) },
            Capability::Unknown { code: 1, data: Bytes::from_static(&[0, 1, 7, 1]) },
        ])],
    });
    assert_both_ways(&message(1, &body), &DecodeContext::default(), &expected);
}

#[test]
fn open_with_rfc9072_extended_parameters_both_ways() {
    // Non-Ext OP Len 255, Non-Ext OP Type 255, Extended Opt. Parm. Length 2
    // octets, then one parameter with a 2-octet length.
    let body = [4, 0, 1, 0, 0, 10, 0, 0, 1, 255, 255, 0, 5, 2, 0, 2, 2, 0];
    let expected = Message::Open(OpenMessage {
        version: 4,
        my_as: 1,
        hold_time: 0,
        bgp_identifier: Ipv4Addr::new(10, 0, 0, 1),
        extended_parameters: true,
        parameters: vec![OptionalParameter::Capabilities(vec![Capability::RouteRefresh])],
    });
    assert_both_ways(&message(1, &body), &DecodeContext::default(), &expected);
}

#[test]
fn open_with_several_capability_parameters_keeps_the_grouping() {
    let body = [4, 0, 1, 0, 90, 10, 0, 0, 1, 8, 2, 2, 2, 0, 2, 2, 70, 0];
    let expected = Message::Open(OpenMessage {
        version: 4,
        my_as: 1,
        hold_time: 90,
        bgp_identifier: Ipv4Addr::new(10, 0, 0, 1),
        extended_parameters: false,
        parameters: vec![
            OptionalParameter::Capabilities(vec![Capability::RouteRefresh]),
            OptionalParameter::Capabilities(vec![Capability::EnhancedRouteRefresh]),
        ],
    });
    assert_both_ways(&message(1, &body), &DecodeContext::default(), &expected);
}

#[test]
fn notification_with_shutdown_communication_both_ways() {
    let wire = message(3, &[6, 2, 7, b'b', b'y', b'e', b' ', 0xe2, 0x9c, 0x93]);
    let notification = NotificationMessage::cease_with_communication(2, "bye ✓");
    assert_both_ways(&wire, &DecodeContext::default(), &Message::Notification(notification.clone()));
    assert_eq!(notification.shutdown_communication(), Some(Ok("bye ✓")));
    assert_eq!(notification.code_name(), "Cease");
    assert_eq!(notification.subcode_name(), "Administrative Shutdown");
}

#[test]
fn notification_shutdown_communication_with_bad_length_is_reported() {
    let notification = NotificationMessage::new(6, 4, Bytes::from_static(&[9, b'x']));
    assert!(matches!(notification.shutdown_communication(), Some(Err(_))));
    assert_eq!(NotificationMessage::new(6, 3, Bytes::new()).shutdown_communication(), None);
}

#[test]
fn notification_names_cover_the_registries() {
    assert_eq!(NotificationMessage::new(1, 1, Bytes::new()).subcode_name(), "Connection Not Synchronized");
    assert_eq!(NotificationMessage::new(2, 11, Bytes::new()).subcode_name(), "Role Mismatch");
    assert_eq!(NotificationMessage::new(3, 11, Bytes::new()).subcode_name(), "Malformed AS_PATH");
    assert_eq!(
        NotificationMessage::new(5, 3, Bytes::new()).subcode_name(),
        "Receive Unexpected Message in Established State"
    );
    assert_eq!(NotificationMessage::new(6, 9, Bytes::new()).subcode_name(), "Hard Reset");
    assert_eq!(NotificationMessage::new(6, 10, Bytes::new()).subcode_name(), "BFD Down");
    assert_eq!(NotificationMessage::new(7, 1, Bytes::new()).subcode_name(), "Invalid Message Length");
    assert_eq!(NotificationMessage::new(8, 0, Bytes::new()).code_name(), "Send Hold Timer Expired");
    assert_eq!(NotificationMessage::new(4, 0, Bytes::new()).code_name(), "Hold Timer Expired");
}

#[test]
fn route_refresh_and_enhanced_subtypes_both_ways() {
    for (subtype, safi) in [(0u8, 1u8), (1, 1), (2, 1)] {
        let wire = message(5, &[0, 2, subtype, safi]);
        let expected = Message::RouteRefresh(RouteRefreshMessage { family: Family::IPV6_UNICAST, subtype });
        assert_both_ways(&wire, &DecodeContext::default(), &expected);
    }
}

#[test]
fn ipv4_update_with_every_attribute_both_ways() {
    let attributes = [
        attr(0x40, 1, &[0]),
        attr(0x40, 2, &[1, 2, 0, 0, 0, 1, 0, 0, 0, 2, 2, 1, 0, 0, 0xfd, 0xe8, 3, 1, 0, 0, 0, 9, 4, 1, 0, 0, 0, 10]),
        attr(0x40, 3, &[192, 0, 2, 1]),
        attr(0x80, 4, &[0, 0, 0, 50]),
        attr(0x40, 5, &[0, 0, 0, 200]),
        attr(0x40, 6, &[]),
        attr(0xc0, 7, &[0, 0, 0xfd, 0xe8, 10, 0, 0, 1]),
        attr(0xc0, 8, &[0xfd, 0xe8, 0, 1, 0xff, 0xff, 0xff, 0x01]),
        attr(0x80, 9, &[10, 0, 0, 9]),
        attr(0x80, 10, &[10, 0, 0, 10, 10, 0, 0, 11]),
        attr(0xc0, 16, &[0, 2, 0xfd, 0xe8, 0, 0, 0, 100]),
        attr(0xc0, 32, &[0, 0, 0xfd, 0xe8, 0, 0, 0, 1, 0, 0, 0, 2]),
        attr(0xe0, 99, &[1, 2, 3]),
    ]
    .concat();
    let wire = update(&[16, 10, 2], &attributes, &[24, 10, 1, 2, 0]);
    let expected = Message::Update(UpdateMessage {
        withdrawn: vec![Nlri::new(prefix("10.2.0.0/16"))],
        attributes: vec![
            PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
            PathAttribute::new(AttributeValue::AsPath(AsPath {
                four_octet: true,
                segments: vec![
                    AsSegment { segment_type: SegmentType::AsSet, asns: vec![1, 2] },
                    AsSegment { segment_type: SegmentType::AsSequence, asns: vec![65000] },
                    AsSegment { segment_type: SegmentType::AsConfedSequence, asns: vec![9] },
                    AsSegment { segment_type: SegmentType::AsConfedSet, asns: vec![10] },
                ],
            })),
            PathAttribute::new(AttributeValue::NextHop(Ipv4Addr::new(192, 0, 2, 1))),
            PathAttribute::new(AttributeValue::MultiExitDisc(50)),
            PathAttribute::new(AttributeValue::LocalPref(200)),
            PathAttribute::new(AttributeValue::AtomicAggregate),
            PathAttribute::new(AttributeValue::Aggregator(Aggregator {
                four_octet: true,
                asn: 65000,
                address: Ipv4Addr::new(10, 0, 0, 1),
            })),
            PathAttribute::new(AttributeValue::Communities(vec!["65000:1".parse().unwrap(), Community::NO_EXPORT])),
            PathAttribute::new(AttributeValue::OriginatorId(Ipv4Addr::new(10, 0, 0, 9))),
            PathAttribute::new(AttributeValue::ClusterList(vec![
                Ipv4Addr::new(10, 0, 0, 10),
                Ipv4Addr::new(10, 0, 0, 11),
            ])),
            PathAttribute::new(AttributeValue::ExtendedCommunities(vec![ExtendedCommunity([
                0, 2, 0xfd, 0xe8, 0, 0, 0, 100,
            ])])),
            PathAttribute::new(AttributeValue::LargeCommunities(vec!["65000:1:2".parse().unwrap()])),
            PathAttribute {
                flags: 0xe0,
                value: AttributeValue::Raw { type_code: 99, data: Bytes::from_static(&[1, 2, 3]) },
            },
        ],
        unparsed_attributes: Bytes::new(),
        nlri: vec![Nlri::new(prefix("10.1.2.0/24")), Nlri::new(prefix("0.0.0.0/0"))],
    });
    assert_both_ways(&wire, &ibgp(), &expected);
    let Message::Update(update) = expected else { unreachable!() };
    assert_eq!(update.origin(), Some(Origin::Igp));
    assert_eq!(update.next_hop(), Some(Ipv4Addr::new(192, 0, 2, 1)));
    assert_eq!(update.local_pref(), Some(200));
    assert_eq!(update.multi_exit_disc(), Some(50));
    assert_eq!(update.as_path().and_then(AsPath::first_asn), None, "the path starts with an AS_SET");
    assert_eq!(update.communities().len(), 2);
    assert_eq!(update.large_communities().len(), 1);
    assert_eq!(update.extended_communities().len(), 1);
    assert_eq!(update.announced().count(), 2);
    assert_eq!(update.withdrawn_routes().count(), 1);
}

#[test]
fn two_octet_as_update_with_as4_attributes_both_ways() {
    let ctx = DecodeContext { four_octet_as: false, ..DecodeContext::default() };
    let attributes = [
        attr(0x40, 1, &[2]),
        attr(0x40, 2, &[2, 2, 0x5b, 0xa0, 0xfd, 0xe8]),
        attr(0x40, 3, &[192, 0, 2, 1]),
        attr(0xc0, 7, &[0x5b, 0xa0, 10, 0, 0, 1]),
        attr(0xc0, 17, &[2, 2, 0, 1, 0, 0, 0, 0, 0xfd, 0xe8]),
        attr(0xc0, 18, &[0, 1, 0, 0, 10, 0, 0, 1]),
    ]
    .concat();
    let wire = update(&[], &attributes, &[8, 10]);
    let expected = Message::Update(UpdateMessage {
        withdrawn: vec![],
        attributes: vec![
            PathAttribute::new(AttributeValue::Origin(Origin::Incomplete)),
            PathAttribute::new(AttributeValue::AsPath(AsPath::sequence(false, vec![23456, 65000]))),
            PathAttribute::new(AttributeValue::NextHop(Ipv4Addr::new(192, 0, 2, 1))),
            PathAttribute::new(AttributeValue::Aggregator(Aggregator {
                four_octet: false,
                asn: 23456,
                address: Ipv4Addr::new(10, 0, 0, 1),
            })),
            PathAttribute::new(AttributeValue::As4Path(AsPath::sequence(true, vec![65536, 65000]))),
            PathAttribute::new(AttributeValue::As4Aggregator(Aggregator {
                four_octet: true,
                asn: 65536,
                address: Ipv4Addr::new(10, 0, 0, 1),
            })),
        ],
        unparsed_attributes: Bytes::new(),
        nlri: vec![Nlri::new(prefix("10.0.0.0/8"))],
    });
    assert_both_ways(&wire, &ctx, &expected);
}

fn mp_reach_v6(next_hop: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut value = vec![0, 2, 1, u8::try_from(next_hop.len()).unwrap()];
    value.extend_from_slice(next_hop);
    value.push(0);
    value.extend_from_slice(nlri);
    attr(0x80, 14, &value)
}

#[test]
fn ipv6_mp_reach_with_link_local_next_hop_both_ways() {
    let global: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let link_local: Ipv6Addr = "fe80::1".parse().unwrap();
    let next_hop = [global.octets(), link_local.octets()].concat();
    let attributes = [
        attr(0x40, 1, &[0]),
        attr(0x40, 2, &[2, 1, 0, 0, 0xfd, 0xe8]),
        mp_reach_v6(
            &next_hop,
            &[64, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 128, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
        ),
    ]
    .concat();
    let wire = update(&[], &attributes, &[]);
    let expected = Message::Update(UpdateMessage {
        attributes: vec![
            PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
            PathAttribute::new(AttributeValue::AsPath(AsPath::sequence(true, vec![65000]))),
            PathAttribute::new(AttributeValue::MpReachNlri(MpReachNlri {
                family: Family::IPV6_UNICAST,
                next_hop: NextHop::Ipv6WithLinkLocal { global, link_local },
                reserved: 0,
                nlri: MpNlri::Prefixes(vec![
                    Nlri::new(prefix("2001:db8:1::/64")),
                    Nlri::new(prefix("2001:db8::9/128")),
                ]),
            })),
        ],
        ..UpdateMessage::default()
    });
    assert_both_ways(&wire, &DecodeContext::default(), &expected);
    let Message::Update(update) = expected else { unreachable!() };
    let announced: Vec<_> = update.announced().map(|(family, nlri)| (family, nlri.prefix)).collect();
    assert_eq!(
        announced,
        vec![(Family::IPV6_UNICAST, prefix("2001:db8:1::/64")), (Family::IPV6_UNICAST, prefix("2001:db8::9/128")),]
    );
}

#[test]
fn ipv4_nlri_with_ipv6_next_hop_rfc8950_both_ways() {
    let global: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mut value = vec![0, 1, 1, 16];
    value.extend_from_slice(&global.octets());
    value.extend_from_slice(&[0, 24, 10, 0, 1]);
    let attributes = [attr(0x40, 1, &[0]), attr(0x40, 2, &[]), attr(0x80, 14, &value)].concat();
    let wire = update(&[], &attributes, &[]);
    let expected = Message::Update(UpdateMessage {
        attributes: vec![
            PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
            PathAttribute::new(AttributeValue::AsPath(AsPath::sequence(true, vec![]))),
            PathAttribute::new(AttributeValue::MpReachNlri(MpReachNlri {
                family: Family::IPV4_UNICAST,
                next_hop: NextHop::Ipv6(global),
                reserved: 0,
                nlri: MpNlri::Prefixes(vec![Nlri::new(prefix("10.0.1.0/24"))]),
            })),
        ],
        ..UpdateMessage::default()
    });
    assert_both_ways(&wire, &DecodeContext::default(), &expected);
}

#[test]
fn mp_unreach_ipv6_both_ways() {
    let attributes = attr(0x80, 15, &[0, 2, 1, 48, 0x20, 0x01, 0x0d, 0xb8, 0, 7]);
    let wire = update(&[], &attributes, &[]);
    let expected = Message::Update(UpdateMessage {
        attributes: vec![PathAttribute::new(AttributeValue::MpUnreachNlri(MpUnreachNlri {
            family: Family::IPV6_UNICAST,
            withdrawn: MpNlri::Prefixes(vec![Nlri::new(prefix("2001:db8:7::/48"))]),
        }))],
        ..UpdateMessage::default()
    });
    assert_both_ways(&wire, &DecodeContext::default(), &expected);
}

#[test]
fn add_path_ipv4_and_ipv6_both_ways() {
    let ctx = DecodeContext { add_path: AddPathFamilies::ALL, ..DecodeContext::default() };
    let global: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let attributes = [
        attr(0x40, 1, &[0]),
        attr(0x40, 2, &[]),
        attr(0x40, 3, &[10, 0, 0, 1]),
        mp_reach_v6(&global.octets(), &[0, 0, 0, 7, 32, 0x20, 0x01, 0x0d, 0xb8]),
    ]
    .concat();
    let wire = update(&[0, 0, 0, 5, 8, 11], &attributes, &[0, 0, 0, 1, 24, 10, 1, 1, 0, 0, 0, 2, 24, 10, 1, 1]);
    let expected = Message::Update(UpdateMessage {
        withdrawn: vec![Nlri::with_path_id(5, prefix("11.0.0.0/8"))],
        attributes: vec![
            PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
            PathAttribute::new(AttributeValue::AsPath(AsPath::sequence(true, vec![]))),
            PathAttribute::new(AttributeValue::NextHop(Ipv4Addr::new(10, 0, 0, 1))),
            PathAttribute::new(AttributeValue::MpReachNlri(MpReachNlri {
                family: Family::IPV6_UNICAST,
                next_hop: NextHop::Ipv6(global),
                reserved: 0,
                nlri: MpNlri::Prefixes(vec![Nlri::with_path_id(7, prefix("2001:db8::/32"))]),
            })),
        ],
        unparsed_attributes: Bytes::new(),
        nlri: vec![Nlri::with_path_id(1, prefix("10.1.1.0/24")), Nlri::with_path_id(2, prefix("10.1.1.0/24"))],
    });
    assert_both_ways(&wire, &ctx, &expected);
}

#[test]
fn end_of_rib_markers_for_both_families() {
    let v4 = update(&[], &[], &[]);
    assert_both_ways(&v4, &DecodeContext::default(), &Message::Update(UpdateMessage::end_of_rib(Family::IPV4_UNICAST)));
    let v6 = update(&[], &attr(0x80, 15, &[0, 2, 1]), &[]);
    assert_both_ways(&v6, &DecodeContext::default(), &Message::Update(UpdateMessage::end_of_rib(Family::IPV6_UNICAST)));
    for (wire, family) in [(v4, Family::IPV4_UNICAST), (v6, Family::IPV6_UNICAST)] {
        let (decoded, _) = Message::decode(&wire, &DecodeContext::default()).unwrap();
        let Message::Update(update) = decoded.message else { panic!("not an update") };
        assert_eq!(update.as_end_of_rib(), Some(family));
    }
}

#[test]
fn update_with_routes_is_not_end_of_rib() {
    let wire = update(&[8, 10], &[], &[]);
    let (decoded, _) = Message::decode(&wire, &DecodeContext::default()).unwrap();
    let Message::Update(update) = decoded.message else { panic!("not an update") };
    assert_eq!(update.as_end_of_rib(), None);
}

#[test]
fn extended_length_bit_on_short_attribute_survives() {
    let attributes = [attr(0x50, 1, &[0]), attr(0x50, 2, &[]), attr(0x40, 3, &[10, 0, 0, 1])].concat();
    let wire = update(&[], &attributes, &[8, 10]);
    let (decoded, used) = Message::decode(&wire, &DecodeContext::default()).unwrap();
    assert_eq!(used, wire.len());
    let Message::Update(update) = &decoded.message else { panic!("not an update") };
    assert_eq!(update.attributes[0].flags, 0x50);
    assert!(update.attributes[0].has_extended_length());
    assert_eq!(decoded.message.to_bytes(&EncodeContext::default()).unwrap().as_ref(), &wire[..]);
}

#[test]
fn host_bits_inside_the_last_prefix_octet_survive() {
    // 10.1.3.0/23: the /23 keeps a set bit in its third octet.
    let attributes = [attr(0x40, 1, &[0]), attr(0x40, 2, &[]), attr(0x40, 3, &[10, 0, 0, 1])].concat();
    let wire = update(&[], &attributes, &[23, 10, 1, 3]);
    let (decoded, _) = Message::decode(&wire, &DecodeContext::default()).unwrap();
    let Message::Update(update) = &decoded.message else { panic!("not an update") };
    assert_eq!(update.nlri[0].prefix.to_string(), "10.1.3.0/23");
    assert_eq!(update.nlri[0].prefix.network().to_string(), "10.1.2.0");
    assert_eq!(decoded.message.to_bytes(&EncodeContext::default()).unwrap().as_ref(), &wire[..]);
}

#[test]
fn long_attribute_gets_extended_length_when_encoded() {
    let communities: Vec<Community> = (0..100).map(Community).collect();
    let update = UpdateMessage {
        attributes: vec![PathAttribute::new(AttributeValue::Communities(communities))],
        ..UpdateMessage::default()
    };
    let wire = Message::Update(update).to_bytes(&EncodeContext::default()).unwrap();
    assert_eq!(wire[23], 0xd0, "optional, transitive, extended length");
    let (decoded, used) = Message::decode(&wire, &DecodeContext::default()).unwrap();
    assert_eq!(used, wire.len());
    let Message::Update(update) = decoded.message else { panic!("not an update") };
    assert_eq!(update.communities().len(), 100);
}

#[test]
fn extended_message_allows_long_updates_only_when_negotiated() {
    let nlri: Vec<Nlri> = (0..2000u32)
        .map(|i| Nlri::new(Prefix::new(Ipv4Addr::from(0x0a00_0000 | (i << 8)).into(), 24).unwrap()))
        .collect();
    let message = Message::Update(UpdateMessage {
        attributes: vec![
            PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
            PathAttribute::new(AttributeValue::AsPath(AsPath::sequence(true, vec![]))),
            PathAttribute::new(AttributeValue::NextHop(Ipv4Addr::new(10, 0, 0, 1))),
        ],
        nlri,
        ..UpdateMessage::default()
    });
    assert!(matches!(message.to_bytes(&EncodeContext::default()), Err(EncodeError::MessageTooLong { max: 4096, .. })));
    let wire = message.to_bytes(&EncodeContext { extended_message: true }).unwrap();
    let extended = DecodeContext { extended_message: true, ..DecodeContext::default() };
    assert_both_ways(&wire, &extended, &message);
    let Err(DecodeError::SessionReset(reset)) = Message::decode(&wire, &DecodeContext::default()) else {
        panic!("a long UPDATE without extended messages must reset the session");
    };
    assert_eq!((reset.notification().code, reset.notification().subcode), (1, 2));
    assert_eq!(reset.notification().data.as_ref(), &u16::try_from(wire.len()).unwrap().to_be_bytes());
}

#[test]
fn framing_asks_for_more_until_the_message_is_whole() {
    let wire = message(4, &[]);
    for cut in 0..wire.len() {
        assert!(matches!(
            Message::decode(&wire[..cut], &DecodeContext::default()),
            Err(DecodeError::Incomplete { .. })
        ));
    }
    let two = [wire.clone(), wire.clone()].concat();
    let (_, used) = Message::decode(&two, &DecodeContext::default()).unwrap();
    assert_eq!(used, 19, "only the first message is consumed");
}
