//! tortie's BFD against itself: namespaces `a` (192.0.2.1, 2001:db8:ff::1)
//! and `b` (192.0.2.2, 2001:db8:ff::2), one in-process service in each.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use support::bfd::TortieBfd;
use tortie::bfd::{Hops, Intervals, SessionSpec, SessionState};
use tortie::netns::Topology;

const UP: Duration = Duration::from_secs(20);
/// Beyond the detection time: the test thread's polling and a busy machine.
const DETECTION_MARGIN: Duration = Duration::from_secs(1);

fn spec(peer: &str, passive: bool) -> SessionSpec {
    SessionSpec {
        peer: peer.parse::<IpAddr>().unwrap(),
        local: None,
        hops: Hops::Single,
        intervals: Intervals::new(Duration::from_millis(100), Duration::from_millis(100), 3),
        passive,
    }
}

#[test]
fn two_torties_come_up_over_both_families_and_each_detects_a_cut() {
    let mut topo = Topology::new("bfdpair").unwrap();
    topo.add_namespace("a").unwrap();
    topo.add_namespace("b").unwrap();
    topo.add_veth(("a", "eth1", Some("192.0.2.1/24")), ("b", "eth1", Some("192.0.2.2/24"))).unwrap();
    topo.exec("a", &["ip", "addr", "add", "2001:db8:ff::1/64", "dev", "eth1", "nodad"]).unwrap();
    topo.exec("b", &["ip", "addr", "add", "2001:db8:ff::2/64", "dev", "eth1", "nodad"]).unwrap();
    // b's IPv6 session is passive: a speaks first there.
    let a = TortieBfd::start(&topo.ns("a"), vec![spec("192.0.2.2", false), spec("2001:db8:ff::2", false)]);
    let b = TortieBfd::start(&topo.ns("b"), vec![spec("192.0.2.1", false), spec("2001:db8:ff::1", true)]);
    for session in [0, 1] {
        a.wait_state(session, SessionState::Up, UP).unwrap();
        b.wait_state(session, SessionState::Up, UP).unwrap();
    }
    let detection = tortie::testing::wait_until("100 ms × 3 in effect", UP, || {
        let s = a.status(0);
        (s.detection_time_ms == 300.0).then_some(Duration::from_millis(300))
    })
    .unwrap();
    // BFD cut both ways in b (a link down would flush b's IPv6 address):
    // both ends notice within the detection time.
    topo.exec("b", &["nft", "add table inet cut; add chain inet cut input { type filter hook input priority 0; }; add chain inet cut output { type filter hook output priority 0; }; add rule inet cut input udp dport 3784 drop; add rule inet cut output udp dport 3784 drop"])
        .unwrap();
    for session in [0, 1] {
        let down = a.wait_state(session, SessionState::Down, detection + DETECTION_MARGIN).unwrap();
        assert_eq!(down.diagnostic, "control detection time expired");
        b.wait_state(session, SessionState::Down, detection + DETECTION_MARGIN).unwrap();
    }
    topo.exec("b", &["nft", "delete table inet cut"]).unwrap();
    for session in [0, 1] {
        a.wait_state(session, SessionState::Up, UP).unwrap();
        b.wait_state(session, SessionState::Up, UP).unwrap();
    }
}

#[test]
fn a_session_dropped_and_added_again_at_once_is_taken() {
    let topo = {
        let mut topo = Topology::new("bfdreadd").unwrap();
        topo.add_namespace("a").unwrap();
        topo
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let _thread = tortie::netns::spawn_in_namespace(&topo.ns("a"), move |_stop| async move {
        let bfd = tortie::bfd::Bfd::start().expect("BFD listens");
        let first = bfd.add(spec("127.0.0.2", false)).await.expect("the first session");
        drop(first);
        // As the speaker does when a peer's BFD settings change.
        let again = bfd.add(spec("127.0.0.2", false)).await.map(|_| ()).map_err(|e| e.to_string());
        tx.send(again).unwrap();
    })
    .unwrap();
    let again = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(again, Ok(()));
}
