//! `tortie bgp decode` and `tortie bgp encode`, run as a person would.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn tortie(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tortie"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn capture(name: &str) -> (Vec<u8>, Vec<String>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/bgp");
    let wire = std::fs::read(dir.join(format!("{name}.bin"))).unwrap();
    let args = std::fs::read_to_string(dir.join(format!("{name}.bin.args"))).unwrap();
    (wire, args.split_whitespace().map(String::from).collect())
}

fn lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(output.stdout.clone()).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

fn message(message_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
    out.push(message_type);
    out.extend_from_slice(body);
    out
}

#[test]
fn decode_then_encode_reproduces_every_capture_byte_for_byte() {
    for name in ["bird", "frr", "gobgp", "exabgp"] {
        let (wire, flags) = capture(name);
        let mut args = vec!["bgp", "decode", "-"];
        args.extend(flags.iter().map(String::as_str));
        let decoded = tortie(&args, &wire);
        assert!(decoded.status.success(), "{name}: {}", String::from_utf8_lossy(&decoded.stderr));
        for line in lines(&decoded) {
            assert!(line["type"].is_string(), "{name}: {line}");
            assert_eq!(line["action"], "ok", "{name}: {line}");
        }
        let encoded = tortie(&["bgp", "encode"], &decoded.stdout);
        assert!(encoded.status.success(), "{name}: {}", String::from_utf8_lossy(&encoded.stderr));
        assert_eq!(encoded.stdout, wire, "{name}");
    }
}

#[test]
fn decode_prints_type_and_action_for_every_kind_of_message() {
    let wire = [
        message(4, &[]),
        message(5, &[0, 1, 0, 1]),
        message(3, &[6, 2, 0]),
        message(2, &[0, 0, 0, 4, 0x40, 1, 1, 9, 24, 10, 0, 0]),
    ]
    .concat();
    let output = tortie(&["bgp", "decode"], &wire);
    assert!(output.status.success());
    let lines = lines(&output);
    let kinds: Vec<_> = lines.iter().map(|line| (line["type"].clone(), line["action"].clone())).collect();
    assert_eq!(
        kinds,
        vec![
            ("keepalive".into(), "ok".into()),
            ("route-refresh".into(), "ok".into()),
            ("notification".into(), "ok".into()),
            ("update".into(), "treat-as-withdraw".into()),
        ]
    );
}

#[test]
fn session_reset_prints_the_notification_and_exits_one() {
    let wire = [message(9, &[]), message(4, &[])].concat();
    let output = tortie(&["bgp", "decode"], &wire);
    assert_eq!(output.status.code(), Some(1));
    let lines = lines(&output);
    assert_eq!(lines[0]["action"], "session-reset");
    assert_eq!(lines[0]["notification"]["code"], 1);
    assert_eq!(lines[0]["notification"]["subcode"], 3);
    assert_eq!(lines[0]["notification"]["data"], "09");
    assert_eq!(lines[1]["type"], "keepalive", "decoding goes on after a message it could frame");
    let encoded = tortie(&["bgp", "encode"], &output.stdout);
    assert_eq!(encoded.stdout, wire, "a reset message is kept as raw octets");
}

#[test]
fn an_open_from_as_zero_is_reported_as_bad_peer_as() {
    let body = [4, 0, 0, 0, 90, 1, 1, 1, 1, 0];
    let output = tortie(&["bgp", "decode"], &message(1, &body));
    assert_eq!(output.status.code(), Some(1));
    let lines = lines(&output);
    assert_eq!(lines[0]["action"], "session-reset");
    assert_eq!(
        (lines[0]["notification"]["code"].as_u64(), lines[0]["notification"]["subcode"].as_u64()),
        (Some(2), Some(2))
    );
}

#[test]
fn truncated_stream_is_reported_on_stderr_with_exit_two() {
    let wire = [message(4, &[]), message(4, &[])[..10].to_vec()].concat();
    let output = tortie(&["bgp", "decode"], &wire);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(lines(&output).len(), 1);
    assert!(String::from_utf8_lossy(&output.stderr).contains("truncated"));
}

#[test]
fn decode_flags_set_the_context() {
    // One 2-octet AS: malformed under 4-octet AS, fine with --no-as4.
    let attributes = [0x40, 1, 1, 0, 0x40, 2, 4, 2, 1, 0xfd, 0xe8, 0x40, 3, 4, 10, 0, 0, 1];
    let mut body = vec![0, 0, 0, u8::try_from(attributes.len()).unwrap()];
    body.extend_from_slice(&attributes);
    body.extend_from_slice(&[0, 0, 0, 1, 8, 10]);
    let wire = message(2, &body);
    let old = tortie(&["bgp", "decode", "--no-as4", "--add-path", "ipv4-unicast"], &wire);
    assert_eq!(lines(&old)[0]["action"], "ok");
    assert_eq!(lines(&old)[0]["nlri"][0]["path_id"], 1);
    let new = tortie(&["bgp", "decode"], &wire);
    assert_eq!(lines(&new)[0]["action"], "session-reset", "without ADD-PATH the NLRI do not parse");
}

#[test]
fn encode_rejects_a_line_that_is_not_a_message() {
    let output = tortie(&["bgp", "encode"], b"{\"type\":\"update\",\"attributes\":7}\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("line 1"));
}
