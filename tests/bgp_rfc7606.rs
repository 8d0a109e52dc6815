//! RFC 7606 (and the RFC 4271 section 6.3 rules it revises): one test per
//! clause of sections 3, 4, 5 and 7 that applies to the attributes this
//! codec knows, named after the behaviour.

use bytes::Bytes;
use tortie::bgp::packet::*;

fn update(withdrawn: &[u8], attributes: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&u16::try_from(withdrawn.len()).unwrap().to_be_bytes());
    body.extend_from_slice(withdrawn);
    body.extend_from_slice(&u16::try_from(attributes.len()).unwrap().to_be_bytes());
    body.extend_from_slice(attributes);
    body.extend_from_slice(nlri);
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
    out.push(2);
    out.extend_from_slice(&body);
    out
}

fn attr(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![flags, code, u8::try_from(value.len()).unwrap()];
    out.extend_from_slice(value);
    out
}

const ORIGIN: [u8; 4] = [0x40, 1, 1, 0];
const AS_PATH: [u8; 3] = [0x40, 2, 0];
const NEXT_HOP: [u8; 7] = [0x40, 3, 4, 10, 0, 0, 1];
const NLRI: [u8; 4] = [24, 10, 1, 2];

/// The mandatory attributes followed by `extra`.
fn with_mandatory(extra: &[u8]) -> Vec<u8> {
    [&ORIGIN[..], &AS_PATH, &NEXT_HOP, extra].concat()
}

fn ebgp() -> DecodeContext {
    DecodeContext::default()
}

fn ibgp() -> DecodeContext {
    DecodeContext { ibgp: true, ..DecodeContext::default() }
}

/// Decodes an UPDATE that must not reset the session; checks that the
/// whole message was consumed and that it re-encodes to the same octets.
fn outcome(wire: &[u8], ctx: &DecodeContext) -> (UpdateMessage, UpdateOutcome) {
    let (decoded, used) = Message::decode(wire, ctx).expect("no session reset");
    assert_eq!(used, wire.len());
    assert_eq!(decoded.message.to_bytes(&EncodeContext::from(ctx)).unwrap().as_ref(), wire, "lossless");
    let Message::Update(update) = decoded.message else { panic!("not an update") };
    (update, decoded.outcome)
}

fn action(wire: &[u8], ctx: &DecodeContext) -> Rfc7606Action {
    outcome(wire, ctx).1.action()
}

fn session_reset(wire: &[u8], ctx: &DecodeContext) -> NotificationMessage {
    match Message::decode(wire, ctx) {
        Err(DecodeError::SessionReset(reset)) => reset.notification(),
        other => panic!("expected a session reset, got {other:?}"),
    }
}

// ---- Section 3 ----

#[test]
fn s3b_withdrawn_routes_length_beyond_the_message_resets_with_malformed_attribute_list() {
    let mut wire = update(&[], &[], &[]);
    wire[19] = 0;
    wire[20] = 9;
    let notification = session_reset(&wire, &ebgp());
    assert_eq!((notification.code, notification.subcode), (3, 1));
    assert!(notification.data.is_empty());
}

#[test]
fn s3b_total_attribute_length_beyond_the_message_resets_with_malformed_attribute_list() {
    let mut wire = update(&[], &ORIGIN, &[]);
    wire[22] = 200;
    let notification = session_reset(&wire, &ebgp());
    assert_eq!((notification.code, notification.subcode), (3, 1));
}

#[test]
fn s3c_well_known_attribute_with_optional_bit_is_treat_as_withdraw() {
    let attributes = [&[0xc0, 1, 1, 0][..], &AS_PATH, &NEXT_HOP].concat();
    let (update, outcome) = outcome(&update(&[], &attributes, &NLRI), &ebgp());
    assert_eq!(outcome.action(), Rfc7606Action::TreatAsWithdraw);
    assert!(matches!(outcome.faults[0].error, UpdateError::AttributeFlags { .. }));
    assert_eq!(update.withdrawals_under(&outcome).len(), 1, "the announced prefix becomes a withdrawal");
}

#[test]
fn s3c_optional_attribute_without_optional_bit_is_treat_as_withdraw() {
    let wire = update(&[], &with_mandatory(&attr(0x40, 4, &[0, 0, 0, 1])), &NLRI);
    assert_eq!(action(&wire, &ebgp()), Rfc7606Action::TreatAsWithdraw);
}

#[test]
fn s3c_and_s3f_aggregator_with_wrong_flags_is_attribute_discard() {
    let wire = update(&[], &with_mandatory(&attr(0x80, 7, &[0, 0, 0, 1, 10, 0, 0, 1])), &NLRI);
    let (_, outcome) = outcome(&wire, &ebgp());
    assert_eq!(outcome.action(), Rfc7606Action::AttributeDiscard);
    assert!(outcome.is_discarded(3));
}

#[test]
fn s3c_mp_reach_with_wrong_flags_is_treat_as_withdraw() {
    let attributes = [&ORIGIN[..], &AS_PATH, &attr(0xc0, 14, &[0, 1, 1, 4, 10, 0, 0, 1, 0, 8, 10])].concat();
    assert_eq!(action(&update(&[], &attributes, &[]), &ebgp()), Rfc7606Action::TreatAsWithdraw);
}

#[test]
fn s3d_missing_origin_is_treat_as_withdraw() {
    let attributes = [&AS_PATH[..], &NEXT_HOP].concat();
    let (_, outcome) = outcome(&update(&[], &attributes, &NLRI), &ebgp());
    assert_eq!(outcome.action(), Rfc7606Action::TreatAsWithdraw);
    assert_eq!(outcome.faults[0].error, UpdateError::MissingWellKnownAttribute { type_code: 1 });
}

#[test]
fn s3d_missing_as_path_is_treat_as_withdraw() {
    let attributes = [&ORIGIN[..], &NEXT_HOP].concat();
    assert_eq!(action(&update(&[], &attributes, &NLRI), &ebgp()), Rfc7606Action::TreatAsWithdraw);
}

#[test]
fn s3d_missing_next_hop_with_nlri_is_treat_as_withdraw() {
    let attributes = [&ORIGIN[..], &AS_PATH].concat();
    let (_, outcome) = outcome(&update(&[], &attributes, &NLRI), &ebgp());
    assert_eq!(outcome.faults[0].error, UpdateError::MissingWellKnownAttribute { type_code: 3 });
}

#[test]
fn s3d_mp_reach_only_update_needs_no_next_hop_attribute() {
    let attributes = [&ORIGIN[..], &AS_PATH, &attr(0x80, 14, &[0, 1, 1, 4, 10, 0, 0, 1, 0, 8, 10])].concat();
    assert_eq!(action(&update(&[], &attributes, &[]), &ebgp()), Rfc7606Action::Ok);
}

#[test]
fn s3d_withdraw_only_update_without_any_attribute_is_ok() {
    assert_eq!(action(&update(&[8, 10], &[], &[]), &ebgp()), Rfc7606Action::Ok);
    let mp_unreach = attr(0x80, 15, &[0, 2, 1, 32, 0x20, 1, 0x0d, 0xb8]);
    assert_eq!(action(&update(&[], &mp_unreach, &[]), &ebgp()), Rfc7606Action::Ok);
}

#[test]
fn s3g_duplicate_mp_reach_resets_with_malformed_attribute_list() {
    let reach = attr(0x80, 14, &[0, 1, 1, 4, 10, 0, 0, 1, 0]);
    let attributes = [&ORIGIN[..], &AS_PATH, &reach, &reach].concat();
    let notification = session_reset(&update(&[], &attributes, &[]), &ebgp());
    assert_eq!((notification.code, notification.subcode), (3, 1));
}

#[test]
fn s3g_duplicate_mp_unreach_resets_with_malformed_attribute_list() {
    let unreach = attr(0x80, 15, &[0, 2, 1]);
    let notification = session_reset(&update(&[], &[unreach.clone(), unreach].concat(), &[]), &ebgp());
    assert_eq!((notification.code, notification.subcode), (3, 1));
}

#[test]
fn s3g_duplicate_attribute_keeps_the_first_and_discards_the_rest() {
    let attributes = with_mandatory(&[0x40, 1, 1, 2]);
    let (update, outcome) = outcome(&update(&[], &attributes, &NLRI), &ebgp());
    assert_eq!(outcome.action(), Rfc7606Action::AttributeDiscard);
    assert!(outcome.is_discarded(3) && !outcome.is_discarded(0));
    assert_eq!(update.origin(), Some(Origin::Igp), "the first ORIGIN stands");
}

#[test]
fn s3g_duplicate_unknown_attribute_is_discarded() {
    let unknown = attr(0xc0, 99, &[1]);
    let attributes = with_mandatory(&[unknown.clone(), unknown].concat());
    let (_, outcome) = outcome(&update(&[], &attributes, &NLRI), &ebgp());
    assert_eq!(outcome.action(), Rfc7606Action::AttributeDiscard);
    assert!(outcome.is_discarded(4));
}

#[test]
fn s3h_multiple_errors_take_the_strongest_action() {
    // A malformed ATOMIC_AGGREGATE (discard) and a malformed MED (withdraw).
    let attributes = with_mandatory(&[attr(0x40, 6, &[1]), attr(0x80, 4, &[1])].concat());
    let (_, outcome) = outcome(&update(&[], &attributes, &NLRI), &ebgp());
    assert_eq!(outcome.faults.len(), 2);
    assert_eq!(outcome.action(), Rfc7606Action::TreatAsWithdraw);
}

#[test]
fn s3h_multiple_discards_stay_attribute_discard() {
    let attributes = with_mandatory(&[attr(0x40, 6, &[1]), attr(0xc0, 7, &[1])].concat());
    assert_eq!(action(&update(&[], &attributes, &NLRI), &ebgp()), Rfc7606Action::AttributeDiscard);
}

#[test]
fn s3i_malformed_withdrawn_routes_reset_with_invalid_network_field() {
    let notification = session_reset(&update(&[24, 10, 1], &[], &[]), &ebgp());
    assert_eq!((notification.code, notification.subcode), (3, 10));
}

#[test]
fn s3j_unparseable_nlri_field_resets_the_session() {
    let notification = session_reset(&update(&[], &with_mandatory(&[]), &[24, 10]), &ebgp());
    assert_eq!((notification.code, notification.subcode), (3, 10));
}

#[test]
fn s3j_unparseable_mp_reach_nlri_resets_the_session() {
    let reach = attr(0x80, 14, &[0, 2, 1, 16, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 64, 0x20]);
    let notification = session_reset(&update(&[], &[&ORIGIN[..], &AS_PATH, &reach].concat(), &[]), &ebgp());
    assert_eq!((notification.code, notification.subcode), (3, 9));
    assert_eq!(notification.data.as_ref(), &reach[..], "the data is the attribute");
}

#[test]
fn s3j_unparseable_mp_unreach_nlri_resets_the_session() {
    let unreach = attr(0x80, 15, &[0, 1, 1, 33, 10, 0, 0, 0, 0]);
    let notification = session_reset(&update(&[], &unreach, &[]), &ebgp());
    assert_eq!((notification.code, notification.subcode), (3, 9));
}

#[test]
fn rfc4271_unrecognized_well_known_attribute_resets_with_the_attribute_as_data() {
    let unknown = attr(0x40, 99, &[1, 2]);
    let notification = session_reset(&update(&[], &with_mandatory(&unknown), &NLRI), &ebgp());
    assert_eq!((notification.code, notification.subcode), (3, 2));
    assert_eq!(notification.data.as_ref(), &unknown[..]);
}

#[test]
fn unknown_optional_attribute_is_kept_with_its_flags() {
    let unknown = attr(0xe0, 99, &[1, 2]);
    let (update, outcome) = outcome(&update(&[], &with_mandatory(&unknown), &NLRI), &ebgp());
    assert_eq!(outcome.action(), Rfc7606Action::Ok);
    assert_eq!(
        update.attributes[3],
        PathAttribute { flags: 0xe0, value: AttributeValue::Raw { type_code: 99, data: Bytes::from_static(&[1, 2]) } }
    );
}

// ---- Section 4 ----

#[test]
fn s4_attribute_overrunning_total_attribute_length_is_treat_as_withdraw_and_nlri_still_found() {
    let attributes = [&ORIGIN[..], &AS_PATH, &NEXT_HOP, &[0xc0, 8, 8, 0, 0]].concat();
    let (update, outcome) = outcome(&update(&[], &attributes, &NLRI), &ebgp());
    assert_eq!(outcome.action(), Rfc7606Action::TreatAsWithdraw);
    assert_eq!(outcome.faults[0].error, UpdateError::AttributeListOverrun);
    assert_eq!(update.nlri.len(), 1, "the Total Attribute Length locates the NLRI");
    assert_eq!(update.unparsed_attributes.as_ref(), &[0xc0, 8, 8, 0, 0]);
}

#[test]
fn s4_fewer_than_three_octets_left_for_an_attribute_is_treat_as_withdraw() {
    let attributes = [&ORIGIN[..], &AS_PATH, &NEXT_HOP, &[0x40, 1]].concat();
    assert_eq!(action(&update(&[], &attributes, &NLRI), &ebgp()), Rfc7606Action::TreatAsWithdraw);
}

#[test]
fn s4_fewer_than_four_octets_left_for_an_extended_length_attribute_is_treat_as_withdraw() {
    let attributes = [&ORIGIN[..], &AS_PATH, &NEXT_HOP, &[0xd0, 8, 0]].concat();
    assert_eq!(action(&update(&[], &attributes, &NLRI), &ebgp()), Rfc7606Action::TreatAsWithdraw);
}

// ---- Section 5 ----

#[test]
fn s5_3_nlri_longer_than_the_family_maximum_resets_with_invalid_network_field() {
    let notification = session_reset(&update(&[], &with_mandatory(&[]), &[33, 10, 0, 0, 0, 0]), &ebgp());
    assert_eq!((notification.code, notification.subcode), (3, 10));
}

#[test]
fn s5_3_ipv6_nlri_longer_than_128_resets_the_session() {
    let mut value = vec![0, 2, 1, 16];
    value.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 129]);
    value.extend_from_slice(&[0; 17]);
    let reach = attr(0x80, 14, &value);
    let notification = session_reset(&update(&[], &[&ORIGIN[..], &AS_PATH, &reach].concat(), &[]), &ebgp());
    assert_eq!(notification.code, 3);
}

// ---- Section 7 ----

#[test]
fn s7_1_origin_of_length_two_is_treat_as_withdraw() {
    let attributes = [&[0x40, 1, 2, 0, 0][..], &AS_PATH, &NEXT_HOP].concat();
    let (_, outcome) = outcome(&update(&[], &attributes, &NLRI), &ebgp());
    assert_eq!(outcome.action(), Rfc7606Action::TreatAsWithdraw);
    assert!(matches!(outcome.faults[0].error, UpdateError::AttributeLength { .. }));
}

#[test]
fn s7_1_origin_with_undefined_value_is_treat_as_withdraw() {
    let attributes = [&[0x40, 1, 1, 3][..], &AS_PATH, &NEXT_HOP].concat();
    let (_, outcome) = outcome(&update(&[], &attributes, &NLRI), &ebgp());
    assert_eq!(outcome.action(), Rfc7606Action::TreatAsWithdraw);
    assert!(matches!(outcome.faults[0].error, UpdateError::InvalidOrigin { .. }));
}

fn with_as_path(value: &[u8]) -> Vec<u8> {
    [&ORIGIN[..], &attr(0x40, 2, value), &NEXT_HOP].concat()
}

#[test]
fn s7_2_as_path_with_unrecognized_segment_type_is_treat_as_withdraw() {
    let wire = update(&[], &with_as_path(&[5, 1, 0, 0, 0, 1]), &NLRI);
    let (_, outcome) = outcome(&wire, &ebgp());
    assert_eq!(outcome.action(), Rfc7606Action::TreatAsWithdraw);
    assert_eq!(outcome.faults[0].error, UpdateError::MalformedAsPath);
}

#[test]
fn s7_2_as_path_segment_overrunning_the_attribute_is_treat_as_withdraw() {
    let wire = update(&[], &with_as_path(&[2, 2, 0, 0, 0, 1]), &NLRI);
    assert_eq!(action(&wire, &ebgp()), Rfc7606Action::TreatAsWithdraw);
}

#[test]
fn s7_2_as_path_underrun_leaving_a_partial_segment_header_is_treat_as_withdraw() {
    let wire = update(&[], &with_as_path(&[2, 1, 0, 0, 0, 1, 2]), &NLRI);
    assert_eq!(action(&wire, &ebgp()), Rfc7606Action::TreatAsWithdraw);
}

#[test]
fn s7_2_as_path_segment_of_length_zero_is_treat_as_withdraw() {
    let wire = update(&[], &with_as_path(&[2, 0]), &NLRI);
    assert_eq!(action(&wire, &ebgp()), Rfc7606Action::TreatAsWithdraw);
}

#[test]
fn s7_2_two_octet_as_path_decoded_with_four_octet_context_mismatch_is_treat_as_withdraw() {
    // One 2-octet AS read as 4-octet overruns the segment.
    let wire = update(&[], &with_as_path(&[2, 1, 0xfd, 0xe8]), &NLRI);
    assert_eq!(action(&wire, &ebgp()), Rfc7606Action::TreatAsWithdraw);
    let old = DecodeContext { four_octet_as: false, ..ebgp() };
    assert_eq!(action(&wire, &old), Rfc7606Action::Ok);
}

#[test]
fn s7_3_next_hop_of_length_five_is_treat_as_withdraw() {
    let attributes = [&ORIGIN[..], &AS_PATH, &attr(0x40, 3, &[10, 0, 0, 1, 0])].concat();
    assert_eq!(action(&update(&[], &attributes, &NLRI), &ebgp()), Rfc7606Action::TreatAsWithdraw);
}

#[test]
fn s7_3_and_s3e_next_hop_that_is_not_a_host_address_is_treat_as_withdraw() {
    for address in [[0, 0, 0, 0], [224, 0, 0, 5], [255, 255, 255, 255]] {
        let attributes = [&ORIGIN[..], &AS_PATH, &attr(0x40, 3, &address)].concat();
        let (_, outcome) = outcome(&update(&[], &attributes, &NLRI), &ebgp());
        assert_eq!(outcome.action(), Rfc7606Action::TreatAsWithdraw, "{address:?}");
        assert!(matches!(outcome.faults[0].error, UpdateError::InvalidNextHop { .. }));
    }
}

#[test]
fn s7_4_multi_exit_disc_of_length_three_is_treat_as_withdraw() {
    let wire = update(&[], &with_mandatory(&attr(0x80, 4, &[0, 0, 1])), &NLRI);
    assert_eq!(action(&wire, &ebgp()), Rfc7606Action::TreatAsWithdraw);
}

#[test]
fn s7_5_local_pref_from_external_peer_is_attribute_discard() {
    let wire = update(&[], &with_mandatory(&attr(0x40, 5, &[0, 0, 0, 100])), &NLRI);
    let (_, outcome) = outcome(&wire, &ebgp());
    assert_eq!(outcome.action(), Rfc7606Action::AttributeDiscard);
    assert!(outcome.is_discarded(3));
    assert_eq!(action(&wire, &ibgp()), Rfc7606Action::Ok);
}

#[test]
fn s7_5_malformed_local_pref_from_external_peer_is_still_only_discarded() {
    let wire = update(&[], &with_mandatory(&attr(0x40, 5, &[0, 100])), &NLRI);
    assert_eq!(action(&wire, &ebgp()), Rfc7606Action::AttributeDiscard);
}

#[test]
fn s7_5_local_pref_of_wrong_length_from_internal_peer_is_treat_as_withdraw() {
    let wire = update(&[], &with_mandatory(&attr(0x40, 5, &[0, 100])), &NLRI);
    assert_eq!(action(&wire, &ibgp()), Rfc7606Action::TreatAsWithdraw);
}

#[test]
fn s7_6_atomic_aggregate_with_a_value_is_attribute_discard() {
    let wire = update(&[], &with_mandatory(&attr(0x40, 6, &[1])), &NLRI);
    let (_, outcome) = outcome(&wire, &ebgp());
    assert_eq!(outcome.action(), Rfc7606Action::AttributeDiscard);
    assert!(outcome.is_discarded(3));
}

#[test]
fn s7_7_aggregator_of_length_eight_without_four_octet_as_is_attribute_discard() {
    let old = DecodeContext { four_octet_as: false, ..ebgp() };
    let attributes = [&ORIGIN[..], &AS_PATH, &NEXT_HOP, &attr(0xc0, 7, &[0, 0, 0, 1, 10, 0, 0, 1])].concat();
    assert_eq!(action(&update(&[], &attributes, &NLRI), &old), Rfc7606Action::AttributeDiscard);
}

#[test]
fn s7_7_aggregator_of_length_six_with_four_octet_as_is_attribute_discard() {
    let wire = update(&[], &with_mandatory(&attr(0xc0, 7, &[0, 1, 10, 0, 0, 1])), &NLRI);
    assert_eq!(action(&wire, &ebgp()), Rfc7606Action::AttributeDiscard);
}

#[test]
fn s7_8_empty_communities_is_treat_as_withdraw() {
    let wire = update(&[], &with_mandatory(&attr(0xc0, 8, &[])), &NLRI);
    assert_eq!(action(&wire, &ebgp()), Rfc7606Action::TreatAsWithdraw);
}

#[test]
fn s7_8_communities_not_a_multiple_of_four_is_treat_as_withdraw() {
    let wire = update(&[], &with_mandatory(&attr(0xc0, 8, &[0, 0, 0, 1, 2])), &NLRI);
    assert_eq!(action(&wire, &ebgp()), Rfc7606Action::TreatAsWithdraw);
}

#[test]
fn s7_9_originator_id_from_external_peer_is_attribute_discard() {
    let wire = update(&[], &with_mandatory(&attr(0x80, 9, &[10, 0, 0, 9])), &NLRI);
    assert_eq!(action(&wire, &ebgp()), Rfc7606Action::AttributeDiscard);
    assert_eq!(action(&wire, &ibgp()), Rfc7606Action::Ok);
}

#[test]
fn s7_9_originator_id_of_wrong_length_from_internal_peer_is_treat_as_withdraw() {
    let wire = update(&[], &with_mandatory(&attr(0x80, 9, &[10, 0, 0])), &NLRI);
    assert_eq!(action(&wire, &ibgp()), Rfc7606Action::TreatAsWithdraw);
    assert_eq!(action(&wire, &ebgp()), Rfc7606Action::AttributeDiscard);
}

#[test]
fn s7_10_cluster_list_from_external_peer_is_attribute_discard() {
    let wire = update(&[], &with_mandatory(&attr(0x80, 10, &[10, 0, 0, 9])), &NLRI);
    assert_eq!(action(&wire, &ebgp()), Rfc7606Action::AttributeDiscard);
    assert_eq!(action(&wire, &ibgp()), Rfc7606Action::Ok);
}

#[test]
fn s7_10_cluster_list_not_a_multiple_of_four_from_internal_peer_is_treat_as_withdraw() {
    let wire = update(&[], &with_mandatory(&attr(0x80, 10, &[10, 0, 0, 9, 1, 2])), &NLRI);
    assert_eq!(action(&wire, &ibgp()), Rfc7606Action::TreatAsWithdraw);
}

#[test]
fn s7_11_mp_reach_with_inconsistent_next_hop_length_resets_the_session() {
    let reach = attr(0x80, 14, &[0, 2, 1, 8, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 1, 0]);
    let notification = session_reset(&update(&[], &[&ORIGIN[..], &AS_PATH, &reach].concat(), &[]), &ebgp());
    assert_eq!((notification.code, notification.subcode), (3, 9));
}

#[test]
fn s7_11_mp_reach_whose_next_hop_overruns_the_attribute_resets_the_session() {
    let reach = attr(0x80, 14, &[0, 2, 1, 16, 0x20, 1]);
    let notification = session_reset(&update(&[], &[&ORIGIN[..], &AS_PATH, &reach].concat(), &[]), &ebgp());
    assert_eq!(notification.code, 3);
}

#[test]
fn s7_14_extended_communities_not_a_multiple_of_eight_is_treat_as_withdraw() {
    let wire = update(&[], &with_mandatory(&attr(0xc0, 16, &[0; 12])), &NLRI);
    assert_eq!(action(&wire, &ebgp()), Rfc7606Action::TreatAsWithdraw);
}

#[test]
fn rfc8092_large_communities_not_a_multiple_of_twelve_is_treat_as_withdraw() {
    let wire = update(&[], &with_mandatory(&attr(0xc0, 32, &[0; 13])), &NLRI);
    assert_eq!(action(&wire, &ebgp()), Rfc7606Action::TreatAsWithdraw);
}

#[test]
fn rfc6793_malformed_as4_path_is_attribute_discard() {
    let old = DecodeContext { four_octet_as: false, ..ebgp() };
    let wire = update(&[], &with_mandatory(&attr(0xc0, 17, &[2, 0])), &NLRI);
    assert_eq!(action(&wire, &old), Rfc7606Action::AttributeDiscard);
}

#[test]
fn rfc6793_malformed_as4_aggregator_is_attribute_discard() {
    let old = DecodeContext { four_octet_as: false, ..ebgp() };
    let wire = update(&[], &with_mandatory(&attr(0xc0, 18, &[0, 1, 10, 0, 0, 1])), &NLRI);
    assert_eq!(action(&wire, &old), Rfc7606Action::AttributeDiscard);
}

#[test]
fn rfc6793_as4_path_between_four_octet_speakers_is_attribute_discard() {
    let wire = update(&[], &with_mandatory(&attr(0xc0, 17, &[2, 1, 0, 1, 0, 0])), &NLRI);
    assert_eq!(action(&wire, &ebgp()), Rfc7606Action::AttributeDiscard);
    let old = DecodeContext { four_octet_as: false, ..ebgp() };
    assert_eq!(action(&wire, &old), Rfc7606Action::Ok);
}

#[test]
fn treat_as_withdraw_turns_announcements_into_withdrawals_in_both_fields() {
    let reach = attr(0x80, 14, &[0, 1, 1, 4, 10, 0, 0, 1, 0, 8, 11]);
    let attributes = [&[0x40, 1, 1, 7][..], &AS_PATH, &NEXT_HOP, &reach].concat();
    let (update, outcome) = outcome(&update(&[16, 12, 0], &attributes, &NLRI), &ebgp());
    assert_eq!(outcome.action(), Rfc7606Action::TreatAsWithdraw);
    let withdrawn: Vec<String> =
        update.withdrawals_under(&outcome).iter().map(|(_, nlri)| nlri.prefix.to_string()).collect();
    assert_eq!(withdrawn, ["12.0.0.0/16", "10.1.2.0/24", "11.0.0.0/8"]);
}

#[test]
fn rfc9234_only_to_customer_of_a_length_other_than_four_is_treat_as_withdraw() {
    for value in [&[0u8, 0, 253][..], &[0, 0, 253, 233, 0], &[]] {
        let wire = update(&[], &with_mandatory(&attr(0xc0, 35, value)), &NLRI);
        assert_eq!(action(&wire, &ebgp()), Rfc7606Action::TreatAsWithdraw, "length {}", value.len());
    }
    let wire = update(&[], &with_mandatory(&attr(0xc0, 35, &[0, 0, 253, 233])), &NLRI);
    assert_eq!(action(&wire, &ebgp()), Rfc7606Action::Ok);
}
