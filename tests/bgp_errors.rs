//! Message header, OPEN, NOTIFICATION, KEEPALIVE and ROUTE-REFRESH errors
//! (RFC 4271 sections 6.1 and 6.2, RFC 7313 section 5): each resets the
//! session with the exact NOTIFICATION code, subcode and data.

use tortie::bgp::packet::*;

fn message(message_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
    out.push(message_type);
    out.extend_from_slice(body);
    out
}

fn reset(wire: &[u8]) -> SessionReset {
    match Message::decode(wire, &DecodeContext::default()) {
        Err(DecodeError::SessionReset(reset)) => reset,
        other => panic!("expected a session reset, got {other:?}"),
    }
}

fn notification(wire: &[u8]) -> (u8, u8, Vec<u8>) {
    let notification = reset(wire).notification();
    (notification.code, notification.subcode, notification.data.to_vec())
}

fn open_body(version: u8, hold_time: u16, identifier: [u8; 4], parameters: &[u8]) -> Vec<u8> {
    let mut body = vec![version, 0xfd, 0xe8];
    body.extend_from_slice(&hold_time.to_be_bytes());
    body.extend_from_slice(&identifier);
    body.push(u8::try_from(parameters.len()).unwrap());
    body.extend_from_slice(parameters);
    body
}

#[test]
fn marker_not_all_ones_is_connection_not_synchronized() {
    let mut wire = message(4, &[]);
    wire[3] = 0;
    assert_eq!(notification(&wire), (1, 1, vec![]));
    assert_eq!(reset(&wire).length, None, "the stream can no longer be framed");
}

#[test]
fn length_below_nineteen_is_bad_message_length_with_the_length_as_data() {
    let mut wire = message(4, &[]);
    wire[17] = 18;
    assert_eq!(notification(&wire), (1, 2, vec![0, 18]));
}

#[test]
fn length_above_4096_is_bad_message_length() {
    let mut wire = message(2, &[0, 0, 0, 0]);
    wire[16] = 0x10;
    wire[17] = 0x01;
    assert_eq!(notification(&wire), (1, 2, vec![0x10, 0x01]));
}

#[test]
fn unknown_type_is_bad_message_type_with_the_type_as_data() {
    assert_eq!(notification(&message(9, &[])), (1, 3, vec![9]));
}

#[test]
fn keepalive_with_a_body_is_bad_message_length() {
    assert_eq!(notification(&message(4, &[0])), (1, 2, vec![0, 20]));
}

#[test]
fn update_shorter_than_23_is_bad_message_length() {
    assert_eq!(notification(&message(2, &[0, 0])), (1, 2, vec![0, 21]));
}

#[test]
fn open_shorter_than_29_is_bad_message_length() {
    assert_eq!(notification(&message(1, &[4, 0, 1, 0, 90])), (1, 2, vec![0, 24]));
}

#[test]
fn notification_shorter_than_21_is_bad_message_length() {
    assert_eq!(notification(&message(3, &[6])), (1, 2, vec![0, 20]));
}

#[test]
fn open_with_version_three_is_unsupported_version_with_version_four_as_data() {
    assert_eq!(notification(&message(1, &open_body(3, 90, [1, 1, 1, 1], &[]))), (2, 1, vec![0, 4]));
}

#[test]
fn open_with_hold_time_one_or_two_is_unacceptable_hold_time() {
    for hold_time in [1, 2] {
        assert_eq!(notification(&message(1, &open_body(4, hold_time, [1, 1, 1, 1], &[]))), (2, 6, vec![]));
    }
}

#[test]
fn open_with_hold_time_zero_or_three_is_accepted() {
    for hold_time in [0, 3] {
        let wire = message(1, &open_body(4, hold_time, [1, 1, 1, 1], &[]));
        assert!(Message::decode(&wire, &DecodeContext::default()).is_ok());
    }
}

#[test]
fn open_with_zero_bgp_identifier_is_bad_bgp_identifier() {
    assert_eq!(notification(&message(1, &open_body(4, 90, [0, 0, 0, 0], &[]))), (2, 3, vec![]));
}

#[test]
fn open_with_unknown_optional_parameter_is_unsupported_optional_parameter() {
    assert_eq!(notification(&message(1, &open_body(4, 90, [1, 1, 1, 1], &[1, 1, 0]))), (2, 4, vec![]));
}

#[test]
fn open_with_capability_overrunning_its_parameter_is_open_message_error_unspecific() {
    assert_eq!(notification(&message(1, &open_body(4, 90, [1, 1, 1, 1], &[2, 2, 65, 4]))), (2, 0, vec![]));
}

#[test]
fn open_with_parameter_overrunning_the_parameters_is_open_message_error_unspecific() {
    let mut body = open_body(4, 90, [1, 1, 1, 1], &[2, 9, 2, 0]);
    body[9] = 4;
    assert_eq!(notification(&message(1, &body)), (2, 0, vec![]));
}

#[test]
fn enhanced_route_refresh_of_wrong_length_is_invalid_message_length_with_the_message_as_data() {
    let wire = message(5, &[0, 1, 1, 1, 0]);
    assert_eq!(notification(&wire), (7, 1, wire.clone()));
}

#[test]
fn route_refresh_request_of_wrong_length_is_bad_message_length() {
    assert_eq!(notification(&message(5, &[0, 1, 0, 1, 0])), (1, 2, vec![0, 24]));
}

#[test]
fn route_refresh_with_unknown_subtype_is_kept_for_the_session_to_ignore() {
    let (decoded, _) = Message::decode(&message(5, &[0, 1, 9, 1]), &DecodeContext::default()).unwrap();
    assert_eq!(
        decoded.message,
        Message::RouteRefresh(RouteRefreshMessage { family: Family::IPV4_UNICAST, subtype: 9 })
    );
}

#[test]
fn session_reset_converts_to_the_notification_message_to_send() {
    let reset = reset(&message(9, &[]));
    let wire = Message::from(&reset).to_bytes(&EncodeContext::default()).unwrap();
    assert_eq!(wire.as_ref(), &message(3, &[1, 3, 9])[..]);
}

#[test]
fn open_with_extended_format_marker_but_non_ext_length_not_255_is_open_message_error_unspecific() {
    // Found while reviewing losslessness: a Non-Ext OP Len other than 255 would
    // otherwise be re-encoded as 255.
    let mut body = open_body(4, 90, [1, 1, 1, 1], &[]);
    body.pop();
    body.extend_from_slice(&[4, 255, 0, 0]);
    assert_eq!(notification(&message(1, &body)), (2, 0, vec![]));
}

#[test]
fn open_with_my_as_zero_is_bad_peer_as() {
    // RFC 7607 section 2: AS 0 in an OPEN is Bad Peer AS, whatever the configuration.
    let mut body = open_body(4, 90, [1, 1, 1, 1], &[]);
    body[1..3].copy_from_slice(&[0, 0]);
    assert_eq!(notification(&message(1, &body)), (2, 2, vec![]));
}

#[test]
fn open_with_four_octet_as_zero_is_bad_peer_as() {
    let mut body = open_body(4, 90, [1, 1, 1, 1], &[2, 6, 65, 4, 0, 0, 0, 0]);
    body[1..3].copy_from_slice(&23456u16.to_be_bytes());
    assert_eq!(notification(&message(1, &body)), (2, 2, vec![]));
}
