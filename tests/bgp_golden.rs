//! Golden vectors from independent implementations (BIRD, FRR, GoBGP,
//! ExaBGP), captured by tests/data/bgp/capture.sh: every message decodes
//! without any RFC 7606 fault and re-encodes to the same octets.

use std::path::PathBuf;

use tortie::bgp::packet::*;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/bgp")
}

/// The decode context from the `.args` file written at capture time.
fn context(name: &str) -> DecodeContext {
    let args = std::fs::read_to_string(data_dir().join(format!("{name}.bin.args"))).unwrap();
    let mut ctx = DecodeContext::default();
    let mut words = args.split_whitespace();
    while let Some(word) = words.next() {
        match word {
            "--no-as4" => ctx.four_octet_as = false,
            "--ibgp" => ctx.ibgp = true,
            "--extended-message" => ctx.extended_message = true,
            "--add-path" => {
                for family in words.next().unwrap().split(',') {
                    ctx.add_path.insert(family.parse().unwrap());
                }
            }
            other => panic!("unknown flag {other} in {name}.bin.args"),
        }
    }
    ctx
}

/// Decodes the whole capture, checking each message round-trips.
fn decode_capture(name: &str) -> Vec<Message> {
    let wire = std::fs::read(data_dir().join(format!("{name}.bin"))).unwrap();
    let ctx = context(name);
    let mut messages = Vec::new();
    let mut offset = 0;
    while offset < wire.len() {
        let (decoded, used) = Message::decode(&wire[offset..], &ctx)
            .unwrap_or_else(|error| panic!("{name}: message at offset {offset}: {error}"));
        assert_eq!(decoded.outcome, UpdateOutcome::default(), "{name}: message at offset {offset}");
        let encoded = decoded.message.to_bytes(&EncodeContext::from(&ctx)).unwrap();
        assert_eq!(encoded.as_ref(), &wire[offset..offset + used], "{name}: message at offset {offset}");
        messages.push(decoded.message);
        offset += used;
    }
    assert_eq!(offset, wire.len());
    messages
}

fn updates(messages: &[Message]) -> impl Iterator<Item = &UpdateMessage> {
    messages.iter().filter_map(|message| match message {
        Message::Update(update) => Some(update),
        _ => None,
    })
}

fn open(messages: &[Message]) -> &OpenMessage {
    match messages.first() {
        Some(Message::Open(open)) => open,
        other => panic!("the first message is not an OPEN: {other:?}"),
    }
}

fn end_of_ribs(messages: &[Message]) -> Vec<Family> {
    updates(messages).filter_map(UpdateMessage::as_end_of_rib).collect()
}

fn route_refresh_subtypes(messages: &[Message]) -> Vec<u8> {
    messages
        .iter()
        .filter_map(|message| match message {
            Message::RouteRefresh(refresh) => Some(refresh.subtype),
            _ => None,
        })
        .collect()
}

#[test]
fn bird_capture_decodes_with_link_local_next_hop_and_shutdown_communication() {
    let messages = decode_capture("bird");
    assert_eq!(open(&messages).asn(), 65001);
    let link_local = updates(&messages).filter_map(UpdateMessage::mp_reach).any(|reach| {
        matches!(reach.next_hop, NextHop::Ipv6WithLinkLocal { link_local, .. } if link_local.is_unicast_link_local())
    });
    assert!(link_local, "BIRD sends a global + link-local IPv6 next hop");
    assert!(updates(&messages).any(|update| !update.large_communities().is_empty()));
    assert!(updates(&messages).any(|update| update.announced().any(|(_, nlri)| nlri.path_id.is_some())));
    assert!(end_of_ribs(&messages).contains(&Family::IPV4_UNICAST));
    assert!(end_of_ribs(&messages).contains(&Family::IPV6_UNICAST));
    assert!(route_refresh_subtypes(&messages).contains(&1) && route_refresh_subtypes(&messages).contains(&2));
    let Some(Message::Notification(notification)) = messages.last() else { panic!("no NOTIFICATION at the end") };
    assert_eq!(notification.shutdown_communication(), Some(Ok("captured by tortie")));
}

#[test]
fn frr_capture_decodes_with_fqdn_and_four_octet_as() {
    let messages = decode_capture("frr");
    let open = open(&messages);
    assert_eq!(open.my_as, 23456, "AS_TRANS");
    assert_eq!(open.asn(), 4_200_000_002);
    assert!(open.capabilities().any(|c| matches!(c, Capability::Fqdn { hostname, .. } if hostname == "ttcap-frr")));
    assert!(open.capabilities().any(|c| matches!(c, Capability::EnhancedRouteRefresh)));
    assert!(updates(&messages).any(|update| update.communities().contains(&Community::NO_EXPORT)));
    assert!(updates(&messages).any(|update| update.mp_reach().is_some()));
    assert!(route_refresh_subtypes(&messages).contains(&2));
}

#[test]
fn gobgp_capture_decodes_with_fqdn_and_add_path() {
    let messages = decode_capture("gobgp");
    assert!(open(&messages).capabilities().any(|c| matches!(c, Capability::Fqdn { .. })));
    assert!(updates(&messages).any(|update| update.nlri.iter().any(|nlri| nlri.path_id.is_some())));
    assert!(updates(&messages).any(|update| update.origin() == Some(Origin::Incomplete)));
    assert!(end_of_ribs(&messages).contains(&Family::IPV6_UNICAST));
}

#[test]
fn exabgp_capture_decodes_with_as_set_aggregator_and_path_identifier() {
    let messages = decode_capture("exabgp");
    assert!(updates(&messages).any(|update| {
        update.as_path().is_some_and(|path| path.segments.iter().any(|s| s.segment_type == SegmentType::AsSet))
    }));
    assert!(updates(&messages).any(|update| update.attribute(attribute::type_code::AGGREGATOR).is_some()));
    assert!(updates(&messages).any(|update| update.attribute(attribute::type_code::ATOMIC_AGGREGATE).is_some()));
    assert!(updates(&messages).any(|update| update.nlri.iter().any(|nlri| nlri.path_id == Some(7))));
    assert!(updates(&messages).any(|update| !update.extended_communities().is_empty()));
}
