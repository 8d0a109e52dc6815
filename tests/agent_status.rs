//! `tortie node` serves its state on the local socket; `tortie status` reads it.

use std::process::{Command, Stdio};
use std::time::Duration;
use tortie::testing::{json_subset, wait_until};

#[test]
fn status_reads_the_running_agent_and_sigterm_stops_it_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let config = dir.path().join("tortie.yaml");
    std::fs::write(
        &config,
        format!("node:\n  name: node-status-test\napi:\n  socket: {}\nmetrics:\n  enabled: false\n", socket.display()),
    )
    .unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_tortie"))
        .args(["node", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct KillOnDrop<'a>(&'a mut std::process::Child);
    impl Drop for KillOnDrop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = KillOnDrop(&mut agent);

    let status = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tortie"))
            .arg("status")
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap()
    };
    let out = wait_until("the agent to answer", Duration::from_secs(20), || {
        let out = status(&["-o", "json"]);
        out.status.success().then_some(out)
    })
    .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json_subset(
        &serde_json::json!({"node": "node-status-test", "version": tortie::VERSION, "ready": true, "peers": [], "started_at": "*"}),
        &json,
    )
    .unwrap();

    let table = status(&[]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("tortie process is running (node node-status-test"), "{text}");
    assert!(text.contains("No IPv4 peers found."), "{text}");

    Command::new("kill").args(["-TERM", &guard.0.id().to_string()]).status().unwrap();
    let exit = wait_until("the agent to exit", Duration::from_secs(10), || guard.0.try_wait().unwrap()).unwrap();
    assert!(exit.success(), "agent exit status {exit}");
    assert!(!socket.exists(), "the socket file is removed on exit");
}

#[test]
fn status_without_an_agent_says_where_it_looked() {
    let out = Command::new(env!("CARGO_BIN_EXE_tortie"))
        .args(["status", "--socket", "/nonexistent/tortie.sock"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the tortie agent at /nonexistent/tortie.sock"), "{err}");
}
