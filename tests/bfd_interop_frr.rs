//! tortie's BFD against FRR 8.4's bfdd in network namespaces: tortie runs
//! in-process in namespace `t` (192.0.2.1, 2001:db8:ff::1), bfdd in `f`
//! (192.0.2.2, 2001:db8:ff::2).

mod support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::bfd::TortieBfd;
use tortie::bfd::{Hops, Intervals, SessionSpec, SessionState};
use tortie::netns::Topology;
use tortie::testing::wait_until;

/// The slow start (1 s × 3 until Up) and bfdd's own start fit in this.
const UP: Duration = Duration::from_secs(20);
/// Beyond the detection time: the test thread's polling and a busy machine.
const DETECTION_MARGIN: Duration = Duration::from_secs(1);

fn lab(label: &str) -> Topology {
    let mut topo = Topology::new(label).unwrap();
    topo.add_namespace("t").unwrap();
    topo.add_namespace("f").unwrap();
    topo.add_veth(("t", "eth1", Some("192.0.2.1/24")), ("f", "eth1", Some("192.0.2.2/24"))).unwrap();
    topo.exec("t", &["ip", "addr", "add", "2001:db8:ff::1/64", "dev", "eth1", "nodad"]).unwrap();
    topo.exec("f", &["ip", "addr", "add", "2001:db8:ff::2/64", "dev", "eth1", "nodad"]).unwrap();
    topo
}

/// bfdd with one peer block per `(peer, local, extra lines)`, 300 ms × 3.
fn start_bfdd(topo: &mut Topology, peers: &[(&str, &str, &str)]) -> PathBuf {
    let mut config = String::from("log stdout debugging\ndebug bfd peer\nbfd\n");
    for (peer, local, extra) in peers {
        config.push_str(&format!(
            " peer {peer} {extra} local-address {local}\n  receive-interval 300\n  transmit-interval 300\n  detect-multiplier 3\n !\n"
        ));
    }
    config.push_str("!\n");
    support::daemons::start_bfdd(topo, "f", &config)
}

/// bfdd's view of its session to `peer`.
fn frr_peer(topo: &Topology, dir: &Path, peer: &str) -> Option<serde_json::Value> {
    let out = topo.exec("f", &["vtysh", "--vty_socket", dir.to_str().unwrap(), "-c", "show bfd peers json"]).ok()?;
    let peers: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    peers.as_array()?.iter().find(|p| p["peer"] == peer).cloned()
}

fn wait_frr(topo: &Topology, dir: &Path, peer: &str, status: &str, timeout: Duration) -> serde_json::Value {
    wait_until(&format!("bfdd's session to {peer} {status}"), timeout, || {
        frr_peer(topo, dir, peer).filter(|p| p["status"] == status)
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", frr_peer(topo, dir, peer)))
}

fn spec(peer: &str, hops: Hops, passive: bool) -> SessionSpec {
    SessionSpec {
        peer: peer.parse::<IpAddr>().unwrap(),
        local: None,
        hops,
        intervals: Intervals::new(Duration::from_millis(300), Duration::from_millis(300), 3),
        passive,
    }
}

/// Drops every BFD packet arriving in namespace `ns` (a cut the links do not see).
fn cut(topo: &Topology, ns: &str) {
    topo.exec(ns, &["nft", "add table inet cut; add chain inet cut input { type filter hook input priority 0; }; add rule inet cut input udp dport { 3784, 4784 } drop"])
        .unwrap();
}

fn mend(topo: &Topology, ns: &str) {
    topo.exec(ns, &["nft", "delete table inet cut"]).unwrap();
}

#[test]
fn sessions_come_up_over_ipv4_and_ipv6_at_the_configured_intervals() {
    let mut topo = lab("bfdfrr");
    let dir = start_bfdd(&mut topo, &[("192.0.2.1", "192.0.2.2", ""), ("2001:db8:ff::1", "2001:db8:ff::2", "")]);
    let tortie = TortieBfd::start(
        &topo.ns("t"),
        vec![spec("192.0.2.2", Hops::Single, false), spec("2001:db8:ff::2", Hops::Single, false)],
    );
    for (session, peer) in [(0, "192.0.2.1"), (1, "2001:db8:ff::1")] {
        tortie.wait_state(session, SessionState::Up, UP).unwrap();
        wait_frr(&topo, &dir, peer, "up", UP);
        // The Poll Sequence after Up moved both sides from 1 s to 300 ms.
        wait_until("bfdd sees tortie's 300 ms", UP, || {
            frr_peer(&topo, &dir, peer)
                .filter(|p| p["remote-transmit-interval"] == 300 && p["remote-receive-interval"] == 300)
        })
        .unwrap();
        wait_until("tortie sends every 300 ms", UP, || {
            (tortie.status(session).transmit_interval_ms == 300.0).then_some(())
        })
        .unwrap();
        let status = tortie.status(session);
        assert_eq!(status.detection_time_ms, 900.0, "{status:?}");
        assert!((1..=2).contains(&status.transitions), "Down → Init → Up, or Down → Up: {status:?}");
    }
}

#[test]
fn a_cut_is_detected_within_the_detection_time_and_the_session_comes_back() {
    let mut topo = lab("bfdcut");
    let dir = start_bfdd(&mut topo, &[("192.0.2.1", "192.0.2.2", "")]);
    let tortie = TortieBfd::start(&topo.ns("t"), vec![spec("192.0.2.2", Hops::Single, false)]);
    tortie.wait_state(0, SessionState::Up, UP).unwrap();
    let detection = wait_until("the 300 ms intervals in effect", UP, || {
        let s = tortie.status(0);
        (s.detection_time_ms == 900.0).then_some(Duration::from_secs_f64(s.detection_time_ms / 1000.0))
    })
    .unwrap();
    let start = Instant::now();
    cut(&topo, "t");
    let down = tortie.wait_state(0, SessionState::Down, detection + DETECTION_MARGIN).unwrap();
    eprintln!("tortie noticed the cut after {:?} (detection time {detection:?})", start.elapsed());
    assert_eq!(down.diagnostic, "control detection time expired");
    // bfdd goes down too: by its own detection time, as tortie's Down
    // carries Your Discriminator 0 once the detection time has passed
    // (RFC 5880 6.8.1), which bfdd ignores while Up.
    wait_frr(&topo, &dir, "192.0.2.1", "down", UP);
    mend(&topo, "t");
    tortie.wait_state(0, SessionState::Up, UP).unwrap();
    wait_frr(&topo, &dir, "192.0.2.1", "up", UP);
}

#[test]
fn a_passive_tortie_comes_up_with_an_active_bfdd_and_the_reverse() {
    let mut topo = lab("bfdpass");
    let dir = start_bfdd(&mut topo, &[("192.0.2.1", "192.0.2.2", ""), ("2001:db8:ff::1", "2001:db8:ff::2", "")]);
    let tortie = TortieBfd::start(
        &topo.ns("t"),
        vec![spec("192.0.2.2", Hops::Single, true), spec("2001:db8:ff::2", Hops::Single, false)],
    );
    tortie.wait_state(0, SessionState::Up, UP).unwrap();
    wait_frr(&topo, &dir, "192.0.2.1", "up", UP);
    tortie.wait_state(1, SessionState::Up, UP).unwrap();
    wait_frr(&topo, &dir, "2001:db8:ff::1", "up", UP);
}

#[test]
fn a_multihop_session_comes_up_on_port_4784() {
    let mut topo = lab("bfdmh");
    let dir = start_bfdd(&mut topo, &[("192.0.2.1", "192.0.2.2", "multihop")]);
    let tortie = TortieBfd::start(&topo.ns("t"), vec![spec("192.0.2.2", Hops::Multi, false)]);
    tortie.wait_state(0, SessionState::Up, UP).unwrap();
    let frr = wait_frr(&topo, &dir, "192.0.2.1", "up", UP);
    assert_eq!(frr["multihop"], true);
}

#[test]
fn new_intervals_are_negotiated_by_a_poll_sequence_without_a_flap() {
    let mut topo = lab("bfdpoll");
    let dir = start_bfdd(&mut topo, &[("192.0.2.1", "192.0.2.2", "")]);
    let tortie = TortieBfd::start(&topo.ns("t"), vec![spec("192.0.2.2", Hops::Single, false)]);
    tortie.wait_state(0, SessionState::Up, UP).unwrap();
    wait_until("300 ms in effect", UP, || (tortie.status(0).transmit_interval_ms == 300.0).then_some(())).unwrap();
    let before = tortie.status(0).transitions;
    let slower = Intervals::new(Duration::from_millis(600), Duration::from_millis(500), 3);
    tortie.command(0, tortie::bfd::SessionCommand::SetIntervals(slower));
    wait_until("bfdd sees tortie's new intervals", UP, || {
        frr_peer(&topo, &dir, "192.0.2.1")
            .filter(|p| p["remote-transmit-interval"] == 600 && p["remote-receive-interval"] == 500)
    })
    .unwrap();
    let status = wait_until("tortie's Poll Sequence ended", UP, || {
        let s = tortie.status(0);
        (s.transmit_interval_ms == 600.0 && s.detection_time_ms == 1500.0).then_some(s)
    })
    .unwrap();
    assert_eq!((status.state, status.transitions), (SessionState::Up, before), "no flap: {status:?}");
    assert_eq!(frr_peer(&topo, &dir, "192.0.2.1").unwrap()["status"], "up");
}
