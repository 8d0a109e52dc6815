//! tortie's BFD against BIRD 2's bfd protocol in network namespaces: tortie
//! runs in-process in namespace `t` (192.0.2.1, 2001:db8:ff::1), BIRD in `b`
//! (192.0.2.2, 2001:db8:ff::2).

mod support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::bfd::TortieBfd;
use tortie::bfd::{Hops, Intervals, SessionSpec, SessionState};
use tortie::netns::Topology;
use tortie::testing::wait_until;

const UP: Duration = Duration::from_secs(20);
/// Beyond the detection time: the test thread's polling and a busy machine.
const DETECTION_MARGIN: Duration = Duration::from_secs(1);

fn lab(label: &str) -> Topology {
    let mut topo = Topology::new(label).unwrap();
    topo.add_namespace("t").unwrap();
    topo.add_namespace("b").unwrap();
    topo.add_veth(("t", "eth1", Some("192.0.2.1/24")), ("b", "eth1", Some("192.0.2.2/24"))).unwrap();
    topo.exec("t", &["ip", "addr", "add", "2001:db8:ff::1/64", "dev", "eth1", "nodad"]).unwrap();
    topo.exec("b", &["ip", "addr", "add", "2001:db8:ff::2/64", "dev", "eth1", "nodad"]).unwrap();
    topo
}

fn start_bird(topo: &mut Topology) -> PathBuf {
    let config = r#"router id 192.0.2.2;
protocol device { }
protocol bfd {
  interface "eth1" { min rx interval 300 ms; min tx interval 300 ms; multiplier 3; };
  neighbor 192.0.2.1 dev "eth1";
  neighbor 2001:db8:ff::1 dev "eth1";
}
"#;
    support::daemons::start_bird(topo, "b", config)
}

/// BIRD's state of its session to `peer` ("Up", "Down", "Init"), from `show bfd sessions`.
fn bird_state(topo: &Topology, ctl: &Path, peer: &str) -> Option<String> {
    let out = support::daemons::birdc(topo, "b", ctl, &["show", "bfd", "sessions"]);
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(peer))
        .and_then(|l| l.split_whitespace().nth(2))
        .map(String::from)
}

fn wait_bird(topo: &Topology, ctl: &Path, peer: &str, state: &str) {
    wait_until(&format!("BIRD's session to {peer} {state}"), UP, || {
        (bird_state(topo, ctl, peer).as_deref() == Some(state)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {}", support::daemons::birdc(topo, "b", ctl, &["show", "bfd", "sessions"])));
}

fn spec(peer: &str) -> SessionSpec {
    SessionSpec {
        peer: peer.parse::<IpAddr>().unwrap(),
        local: None,
        hops: Hops::Single,
        intervals: Intervals::new(Duration::from_millis(300), Duration::from_millis(300), 3),
        passive: false,
    }
}

#[test]
fn sessions_come_up_over_ipv4_and_ipv6_and_a_cut_is_detected() {
    let mut topo = lab("bfdbird");
    let ctl = start_bird(&mut topo);
    let tortie = TortieBfd::start(&topo.ns("t"), vec![spec("192.0.2.2"), spec("2001:db8:ff::2")]);
    for (session, peer) in [(0, "192.0.2.1"), (1, "2001:db8:ff::1")] {
        tortie.wait_state(session, SessionState::Up, UP).unwrap();
        wait_bird(&topo, &ctl, peer, "Up");
    }
    let detection = wait_until("the 300 ms intervals in effect", UP, || {
        let s = tortie.status(0);
        (s.detection_time_ms == 900.0).then_some(Duration::from_secs_f64(s.detection_time_ms / 1000.0))
    })
    .unwrap();
    let start = Instant::now();
    topo.exec("t", &["nft", "add table inet cut; add chain inet cut input { type filter hook input priority 0; }; add rule inet cut input ip saddr 192.0.2.2 udp dport 3784 drop"])
        .unwrap();
    let down = tortie.wait_state(0, SessionState::Down, detection + DETECTION_MARGIN).unwrap();
    eprintln!("tortie noticed the cut after {:?} (detection time {detection:?})", start.elapsed());
    assert_eq!(down.diagnostic, "control detection time expired");
    wait_bird(&topo, &ctl, "192.0.2.1", "Down");
    // The IPv6 session, not cut, stays Up.
    assert_eq!(tortie.status(1).state, SessionState::Up);
    topo.exec("t", &["nft", "delete table inet cut"]).unwrap();
    tortie.wait_state(0, SessionState::Up, UP).unwrap();
    wait_bird(&topo, &ctl, "192.0.2.1", "Up");
}
