//! The client commands' output as a user's pipeline sees it: every data-printing command takes
//! `-o table|wide|json|yaml`, and a reader that stops reading (`tortie … | head -1`) ends the
//! command quietly. The agent is a stand-in answering canned JSON on a unix socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use tortie::api::StatusReport;
use tortie::api::status::PeerStatus;

/// The exit status of a command whose standard output's reader went away: 128 + SIGPIPE, as a
/// shell reports coreutils and kubectl killed by SIGPIPE.
const EXIT_BROKEN_PIPE: i32 = 141;

/// A stand-in agent: answers each request by its path from `answers` (404 for another path).
struct FakeAgent {
    _dir: tempfile::TempDir,
    socket: PathBuf,
}

impl FakeAgent {
    fn start(answers: Vec<(&'static str, String)>) -> FakeAgent {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split_whitespace().nth(1).unwrap_or_default().to_string();
                let path = target.split('?').next().unwrap_or_default();
                let (status, body) = match answers.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => ("200 OK", body.clone()),
                    None => ("404 Not Found", "no such path\n".to_string()),
                };
                let answer =
                    format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        FakeAgent { _dir: dir, socket }
    }

    /// An agent with two peers, one route and one policy.
    fn typical() -> FakeAgent {
        let peer = |address: &str, state: &str| PeerStatus {
            address: address.into(),
            as_number: 64512,
            peer_type: "node-to-node mesh".into(),
            state: state.into(),
            since: 1_000,
            info: String::new(),
            prefixes_received: 1,
            prefixes_advertised: 1,
            tunnel_mode: "direct".into(),
            hold_time: None,
            keepalive: None,
            established_at: Some(1_000),
            flaps: 0,
            bfd: None,
        };
        let status = StatusReport {
            node: "node-a".into(),
            version: "0.1.0".into(),
            started_at: 1_000,
            ready: true,
            not_ready_reasons: vec![],
            ipip_mode: "ipip-userspace".into(),
            peers: vec![peer("10.0.0.2", "established"), peer("10.0.0.3", "active")],
            paths: vec![],
            unsupported_fields: vec![],
            nat_outgoing_pools: vec![],
            nftables_error: None,
            invalid_policies: vec![],
        };
        let routes = serde_json::json!({
            "routes": [{"prefix": "10.244.1.0/26", "peer": "10.0.0.2", "next_hop": "10.0.0.2", "best": true,
                        "multipath": true, "reason": null, "as_path": "", "origin": "igp", "local_pref": 100,
                        "med": null, "stale": false}],
            "stats": {"loc_rib_prefixes": 1, "paths": 1, "per_peer": {}},
        });
        let policies = serde_json::json!([{"kind": "NetworkPolicy", "name": "prod/web", "order": 100.0,
            "selector": "app == 'web'", "types": ["Ingress"], "ingress_rules": 1, "egress_rules": 0,
            "status": "valid"}]);
        FakeAgent::start(vec![
            ("/v1/status", serde_json::to_string(&status).unwrap()),
            ("/v1/bgp/routes", routes.to_string()),
            ("/v1/policies", policies.to_string()),
        ])
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--socket", self.socket.to_str().unwrap()]);
        tortie(&all).output().unwrap()
    }
}

fn tortie(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tortie"));
    command.args(args).env_remove("TORTIE_CONFIG").env_remove("TORTIE_API_SOCKET").stdin(Stdio::null());
    command
}

/// A configuration naming a sqlite datastore in `dir`.
fn sqlite_config(dir: &Path) -> String {
    let config = dir.join("tortie.yaml");
    let db = dir.join("tortie.db");
    std::fs::write(&config, format!("datastore:\n  type: sqlite\n  sqlite_path: {}\n", db.display())).unwrap();
    config.display().to_string()
}

/// Runs `command` with standard output a pipe whose read end is already closed: its first
/// write fails with EPIPE, as when `head -1` has read its line and gone.
fn run_into_closed_pipe(mut command: Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    command.stdout(writer).stderr(Stdio::piped()).output().unwrap()
}

#[test]
fn a_reader_that_went_away_ends_every_command_quietly() {
    let agent = FakeAgent::typical();
    let dir = tempfile::tempdir().unwrap();
    let config = sqlite_config(dir.path());
    let capture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/bgp/bird.bin");
    let socket = agent.socket.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["get", "ippools", "--config", &config],
        vec!["get", "ippools", "-o", "json", "--config", &config],
        vec!["crds"],
        vec!["completion", "bash"],
        vec!["version"],
        vec!["bgp", "decode", capture, "--add-path", "ipv4-unicast,ipv6-unicast", "--extended-message"],
        vec!["status", "--socket", socket],
        vec!["status", "-o", "json", "--socket", socket],
        vec!["bgp", "peers", "--socket", socket],
        vec!["bgp", "routes", "-o", "json", "--socket", socket],
        vec!["policy", "list", "--socket", socket],
    ];
    for args in commands {
        let out = run_into_closed_pipe(tortie(&args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "tortie {}: nothing on stderr, got:\n{stderr}", args.join(" "));
        assert_eq!(out.status.code(), Some(EXIT_BROKEN_PIPE), "tortie {}", args.join(" "));
    }
    // A reader that is there gets the output, and exit 0.
    let out = agent.run(&["bgp", "peers"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.0.0.2"));
}

#[test]
fn every_command_that_prints_data_takes_every_format() {
    let agent = FakeAgent::typical();
    let dir = tempfile::tempdir().unwrap();
    let config = sqlite_config(dir.path());
    let commands: Vec<Vec<&str>> = vec![
        vec!["status", "--socket", agent.socket.to_str().unwrap()],
        vec!["bgp", "peers", "--socket", agent.socket.to_str().unwrap()],
        vec!["bgp", "routes", "--socket", agent.socket.to_str().unwrap()],
        vec!["policy", "list", "--socket", agent.socket.to_str().unwrap()],
        vec!["get", "ippools", "--config", &config],
    ];
    for args in commands {
        let run = |format: &str| {
            let mut all = args.clone();
            all.extend(["-o", format]);
            let out = tortie(&all).output().unwrap();
            let what = format!("tortie {}", all.join(" "));
            assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        };
        let (table, wide) = (run("table"), run("wide"));
        assert!(!table.is_empty(), "{args:?}: a table");
        let width = |t: &str| t.lines().map(str::len).max().unwrap_or(0);
        assert!(width(&wide) >= width(&table), "{args:?}: wide is no narrower:\n{table}{wide}");
        let json: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
        let yaml: serde_json::Value = serde_norway::from_str(&run("yaml")).unwrap();
        assert_eq!(json, yaml, "{args:?}: the same data in JSON and YAML");
    }
    let bad = tortie(&["bgp", "peers", "-o", "xml"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("xml"));
}
