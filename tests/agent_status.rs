//! `tortie node` in a namespace of its own: it registers the node with its
//! detected address, serves its state on the local socket (`tortie status`)
//! and metrics that promtool accepts, and stops cleanly on SIGTERM.

use std::process::Command;
use std::time::Duration;
use tortie::datastore::Datastore;
use tortie::datastore::resources::Node;
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::netns::Topology;
use tortie::testing::{json_subset, wait_until};

const METRICS: &str = "127.0.0.1:19478";

fn fetch(t: &Topology, path: &str) -> Option<String> {
    let script = format!(
        "import urllib.request; print(urllib.request.urlopen('http://{METRICS}{path}', timeout=2).read().decode(), end='')"
    );
    let out = t.exec("n", &["python3", "-c", &script]).ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_agent_registers_serves_status_and_metrics_and_stops_on_sigterm() {
    let mut t = Topology::new("agent").unwrap();
    t.add_namespace("n").unwrap();
    t.add_namespace("peer").unwrap();
    t.add_veth(("n", "eth1", Some("10.123.0.5/24")), ("peer", "eth1", Some("10.123.0.1/24"))).unwrap();
    let dir = t.dir().to_path_buf();
    let socket = dir.join("api.sock");
    let db = dir.join("tortie.db");
    let config = dir.join("tortie.yaml");
    std::fs::write(
        &config,
        format!(
            "node: {{name: node-status-test}}\ndatastore: {{sqlite_path: {}}}\napi: {{socket: {}}}\nmetrics: {{listen: \"{METRICS}\"}}\nbgp: {{as_number: 64600}}\n",
            db.display(),
            socket.display()
        ),
    )
    .unwrap();
    // Records as a Calico cluster may hold them: a pool with a field tortie does not know, and a
    // block with Calico's deprecated strictAffinity. Neither may pass unnoticed.
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        use tortie::datastore::resources::IpamBlock;
        use tortie::datastore::{Backend, Key, Kind};
        let backend = SqliteBackend::open(&db, SqliteOptions::default()).await.unwrap();
        let pool = br#"{"cidr": "10.250.0.0/16", "blockSize": 26, "awsSubnetID": "subnet-0abc"}"#.to_vec();
        backend.create(&Key::new(Kind::IpPool, "legacy"), pool).await.unwrap();
        let block = IpamBlock::empty("10.250.3.0/26".parse().unwrap(), Some("host:elsewhere".into()));
        let mut block = serde_json::to_value(block).unwrap();
        block["strictAffinity"] = serde_json::json!(true);
        let key = Key::new(Kind::IpamBlock, "10-250-3-0-26");
        backend.create(&key, serde_json::to_vec(&block).unwrap()).await.unwrap();
    });
    let agent = t.spawn("n", &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]).unwrap();
    let pid = agent.pid();

    let status = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tortie"))
            .arg("status")
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap()
    };
    let out = wait_until("the agent to be ready", Duration::from_secs(30), || {
        let out = status(&["-o", "json"]);
        out.status.success().then_some(out)
    })
    .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json_subset(
        &serde_json::json!({"node": "node-status-test", "version": tortie::VERSION, "ready": true, "peers": [], "started_at": "*", "ipip_mode": "ipip-userspace"}),
        &json,
    )
    .unwrap();
    let text = String::from_utf8_lossy(&status(&[]).stdout).into_owned();
    assert!(text.starts_with("tortie process is running (node node-status-test"), "{text}");
    assert!(text.contains("No IPv4 peers found."), "{text}");
    // Fields without effect: in the status (JSON and table), and (below) in the metrics.
    let unsupported = serde_json::json!({"unsupported_fields": [
        {"kind": "IPPool", "name": "legacy", "field": "awsSubnetID", "reason": "not a field tortie knows; it has no effect"},
        {"kind": "IPAMBlock", "name": "10-250-3-0-26", "field": "strictAffinity", "reason": "*"},
    ]});
    wait_until("the fields without effect in the status", Duration::from_secs(10), || {
        let json: serde_json::Value = serde_json::from_slice(&status(&["-o", "json"]).stdout).ok()?;
        json_subset(&unsupported, &json).ok()
    })
    .unwrap();
    let text = String::from_utf8_lossy(&status(&[]).stdout).into_owned();
    assert!(text.contains("| IPPool/legacy") && text.contains("| awsSubnetID"), "{text}");

    // Registered with the detected address and its prefix length.
    let node = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let ds = Datastore::new(SqliteBackend::open(&db, SqliteOptions::default()).await.unwrap());
        ds.get::<Node>("node-status-test").await.unwrap().spec
    });
    let bgp = node.bgp.unwrap();
    assert_eq!(bgp.ipv4_address, Some("10.123.0.5/24".parse().unwrap()));
    assert_eq!(bgp.as_number, Some(64600));

    // The RIB's counters alone (what pollers use while a table comes in): nothing learned, no peer.
    let stats: tortie::bgp::rib::RibStats = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(tortie::api::client::get_json(&socket, "/v1/bgp/stats"))
        .unwrap();
    assert_eq!((stats.loc_rib_prefixes, stats.paths, stats.per_peer.len()), (0, 0, 0), "{stats:?}");

    // Metrics from the running agent pass promtool; readiness says ready.
    let metrics = wait_until("metrics", Duration::from_secs(10), || fetch(&t, "/metrics")).unwrap();
    assert!(metrics.contains("tortie_dataplane_synced 1"), "{metrics}");
    assert!(metrics.contains(r#"tortie_unsupported_fields{kind="IPPool",field="awsSubnetID"} 1"#), "{metrics}");
    tortie::testing::promtool_check_metrics(&metrics).unwrap();
    assert_eq!(fetch(&t, "/readyz").as_deref(), Some("ready\n"));

    let exit = t.terminate(pid, Duration::from_secs(10));
    assert!(exit.is_some_and(|s| s.success()), "SIGTERM stops the agent cleanly: {exit:?}");
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

/// Runs `tortie status` with `args`; its exit code and stderr, or `None` if it did not exit
/// within `deadline` (then it is killed).
fn status_within(socket: &std::path::Path, args: &[&str], deadline: Duration) -> Option<(Option<i32>, String)> {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tortie"))
        .arg("status")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_until("tortie status to exit", deadline, || child.try_wait().unwrap());
    if exited.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    Some((exited.unwrap().code(), err))
}

#[test]
fn status_against_an_agent_that_never_answers_exits_1_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // Accepts and holds every connection, never answering (a stopped or wedged agent).
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().map_while(Result::ok).collect();
        drop(held);
    });
    let timeout = tortie::api::client::DEFAULT_TIMEOUT;
    let outcome = status_within(&socket, &[], timeout * 3);
    let (code, err) = outcome.expect("tortie status exits by itself");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("did not answer within"), "{err}");
}

/// More idle and half-sent (slowloris) connections than the API serves at once, and more than
/// the agent has file descriptors: `tortie status` and `/readyz` still answer.
#[test]
fn idle_and_slow_connections_beyond_the_cap_do_not_starve_status() {
    use std::io::Write;
    const FD_LIMIT: usize = 256;
    const METRICS_HERE: &str = "127.0.0.1:19479";
    let held = (FD_LIMIT + 44).max(tortie::api::connections::MAX_CONNECTIONS + 1);
    let mut t = Topology::new("apicap").unwrap();
    t.add_namespace("n").unwrap();
    t.add_namespace("peer").unwrap();
    t.add_veth(("n", "eth1", Some("10.124.0.5/24")), ("peer", "eth1", Some("10.124.0.1/24"))).unwrap();
    let dir = t.dir().to_path_buf();
    let (socket, config) = (dir.join("api.sock"), dir.join("tortie.yaml"));
    std::fs::write(
        &config,
        format!(
            "node: {{name: node-cap}}\ndatastore: {{sqlite_path: {}}}\napi: {{socket: {}}}\nmetrics: {{listen: \"{METRICS_HERE}\"}}\nbgp: {{enabled: false}}\n",
            dir.join("tortie.db").display(),
            socket.display()
        ),
    )
    .unwrap();
    let agent =
        format!("ulimit -n {FD_LIMIT} && exec {} node --config {}", env!("CARGO_BIN_EXE_tortie"), config.display());
    let pid = t.spawn("n", &["sh", "-c", &agent]).unwrap().pid();
    wait_until("the agent to answer", Duration::from_secs(30), || {
        status_within(&socket, &["-o", "json"], Duration::from_secs(20)).filter(|(c, _)| *c == Some(0))
    })
    .unwrap();

    let mut connections = Vec::new();
    for i in 0..held {
        let mut c = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        if i % 2 == 1 {
            c.write_all(b"GET /v1/status HTTP/1.1\r\nHost: tortie\r\nX-Slow: ").unwrap();
        }
        connections.push(c);
    }
    let deadline = Duration::from_secs(60);
    let outcome = status_within(&socket, &["--timeout", "60"], deadline);
    let (code, err) = outcome.unwrap_or_else(|| panic!("tortie status did not answer within {deadline:?}"));
    assert_eq!(code, Some(0), "{err}");
    let readyz = |t: &Topology| {
        let script = format!(
            "import urllib.request; print(urllib.request.urlopen('http://{METRICS_HERE}/readyz', timeout=5).read().decode(), end='')"
        );
        t.exec("n", &["python3", "-c", &script]).ok().map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    assert_eq!(readyz(&t).as_deref(), Some("ready\n"));
    drop(connections);
    let exit = t.terminate(pid, Duration::from_secs(10));
    assert!(exit.is_some_and(|s| s.success()), "the agent stops cleanly: {exit:?}");
}

/// Under umask 000 the socket is still 0660 (with the configured group) and the sqlite files
/// 0600: no other local user may call the API or read the datastore.
#[test]
fn the_socket_and_the_sqlite_files_have_their_modes_whatever_the_umask() {
    use std::os::unix::fs::MetadataExt;
    let mut t = Topology::new("modes").unwrap();
    t.add_namespace("n").unwrap();
    t.add_namespace("peer").unwrap();
    t.add_veth(("n", "eth1", Some("10.125.0.5/24")), ("peer", "eth1", Some("10.125.0.1/24"))).unwrap();
    let dir = t.dir().to_path_buf();
    let (socket, db, config) = (dir.join("run/api.sock"), dir.join("lib/tortie.db"), dir.join("tortie.yaml"));
    let daemon = nix::unistd::Group::from_name("daemon").unwrap().expect("Debian has group daemon");
    let write_config = |group: &str| {
        std::fs::write(
            &config,
            format!(
                "node: {{name: node-modes}}\ndatastore: {{sqlite_path: {}}}\napi: {{socket: {}, socket_group: {group}}}\nmetrics: {{enabled: false}}\nbgp: {{enabled: false}}\n",
                db.display(),
                socket.display()
            ),
        )
        .unwrap()
    };
    write_config("\"bad group!\"");
    let check = Command::new(env!("CARGO_BIN_EXE_tortie")).args(["config", "check"]).arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success() && err.contains("api.socket_group") && err.contains("bad group!"), "{err}");

    write_config("daemon");
    let agent = format!("umask 000 && exec {} node --config {}", env!("CARGO_BIN_EXE_tortie"), config.display());
    let pid = t.spawn("n", &["sh", "-c", &agent]).unwrap().pid();
    wait_until("the agent to answer", Duration::from_secs(30), || {
        let out =
            Command::new(env!("CARGO_BIN_EXE_tortie")).arg("status").arg("--socket").arg(&socket).output().unwrap();
        out.status.success().then_some(())
    })
    .unwrap();
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, daemon.gid.as_raw()), "the socket's mode and group");
    for file in ["tortie.db", "tortie.db-wal", "tortie.db-shm"] {
        let mode = std::fs::metadata(dir.join("lib").join(file)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}: {mode:o}");
    }
    for created in ["run", "lib"] {
        let mode = std::fs::metadata(dir.join(created)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o755, "{created}: {mode:o}");
    }
    let exit = t.terminate(pid, Duration::from_secs(10));
    assert!(exit.is_some_and(|s| s.success()), "the agent stops cleanly: {exit:?}");
}

/// Connections from an address that is no peer: every one counted in the metric, a bounded
/// number of log lines.
#[test]
fn refused_bgp_connections_are_counted_all_and_logged_sparingly() {
    const CONNECTS: usize = 300;
    const METRICS_HERE: &str = "127.0.0.1:19480";
    let mut t = Topology::new("refused").unwrap();
    t.add_namespace("n").unwrap();
    t.add_namespace("scan").unwrap();
    t.add_veth(("n", "eth1", Some("10.126.0.5/24")), ("scan", "eth1", Some("10.126.0.9/24"))).unwrap();
    let dir = t.dir().to_path_buf();
    let config = dir.join("tortie.yaml");
    std::fs::write(
        &config,
        format!(
            "node: {{name: node-refused}}\ndatastore: {{sqlite_path: {}}}\napi: {{socket: {}}}\nmetrics: {{listen: \"{METRICS_HERE}\"}}\nbgp: {{as_number: 64600}}\n",
            dir.join("tortie.db").display(),
            dir.join("api.sock").display()
        ),
    )
    .unwrap();
    let pid =
        t.spawn("n", &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]).unwrap().pid();
    let metrics = |t: &Topology| {
        let script = format!(
            "import urllib.request; print(urllib.request.urlopen('http://{METRICS_HERE}/metrics', timeout=2).read().decode(), end='')"
        );
        t.exec("n", &["python3", "-c", &script]).ok().map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    wait_until("metrics", Duration::from_secs(30), || metrics(&t)).unwrap();
    let scan = format!(
        "import socket\nfor _ in range({CONNECTS}):\n    s = socket.create_connection(('10.126.0.5', 179), timeout=5)\n    s.close()\n"
    );
    t.exec("scan", &["python3", "-c", &scan]).unwrap();
    let expected = format!("tortie_bgp_refused_connections_total{{reason=\"unknown_peer\"}} {CONNECTS}");
    let text =
        wait_until("every refusal counted", Duration::from_secs(30), || metrics(&t).filter(|m| m.contains(&expected)));
    assert!(text.is_ok(), "{}", metrics(&t).unwrap_or_default());
    let log = std::fs::read_to_string(dir.join("n-tortie.log")).unwrap();
    let lines = log.lines().filter(|l| l.contains("refused a BGP connection")).count();
    assert_eq!(lines, 1, "one line for one source within a minute:\n{log}");
    let exit = t.terminate(pid, Duration::from_secs(10));
    assert!(exit.is_some_and(|s| s.success()), "the agent stops cleanly: {exit:?}");
}
