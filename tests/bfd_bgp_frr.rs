//! A BGP session that follows its BFD session, against FRR 8.4 (bgpd and
//! bfdd, without zebra) in network namespaces: tortie in `t` (192.0.2.1,
//! AS 65001), FRR in `f` (192.0.2.2, AS 65002).

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use support::bgp::TortieNode;
use tortie::bfd::{Intervals, SessionState};
use tortie::bgp::session::config::PeerBfd;
use tortie::bgp::session::{DownReason, PeerConfig, State};
use tortie::netns::Topology;
use tortie::testing::wait_until;

const UP: Duration = Duration::from_secs(40);
/// Beyond the detection time: the test thread's polling and a busy machine.
const DETECTION_MARGIN: Duration = Duration::from_secs(1);
/// Cease / BFD Down (RFC 9384).
const CEASE: u8 = 6;
const BFD_DOWN: u8 = 10;

fn lab(label: &str) -> Topology {
    let mut topo = Topology::new(label).unwrap();
    topo.add_namespace("t").unwrap();
    topo.add_namespace("f").unwrap();
    topo.add_veth(("t", "eth1", Some("192.0.2.1/24")), ("f", "eth1", Some("192.0.2.2/24"))).unwrap();
    topo
}

fn start_bgpd(topo: &mut Topology) {
    let config = "frr defaults traditional
hostname frr
router bgp 65002
 bgp router-id 192.0.2.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 192.0.2.1 remote-as 65001
 neighbor 192.0.2.1 timers 3 9
 neighbor 192.0.2.1 timers connect 1
 address-family ipv4 unicast
  network 10.20.0.0/16
 exit-address-family
";
    support::daemons::spawn_frr(topo, "f", "192.0.2.2", config);
}

fn start_bfdd(topo: &mut Topology) {
    let config = "bfd
 peer 192.0.2.1 local-address 192.0.2.2
  receive-interval 300
  transmit-interval 300
  detect-multiplier 3
 !
!
";
    support::daemons::start_bfdd(topo, "f", config);
}

fn tortie_config() -> PeerConfig {
    let mut config = PeerConfig::new([192, 0, 2, 2].into(), 65002, 65001, Ipv4Addr::new(192, 0, 2, 1));
    config.hold_time = 9;
    config.connect_retry = Duration::from_secs(1);
    config.bfd = Some(PeerBfd {
        intervals: Intervals::new(Duration::from_millis(300), Duration::from_millis(300), 3),
        multihop: false,
        passive: false,
        graceful_restart: false,
    });
    config
}

#[test]
fn bgp_waits_for_bfd_and_goes_down_with_cease_bfd_down_when_bfd_does() {
    let mut topo = lab("bfdbgp");
    start_bgpd(&mut topo);
    let node = TortieNode::start(&topo.ns("t"), Some("192.0.2.1:179".parse().unwrap()), tortie_config());

    // bgpd connects and is answered by tortie, but no bfdd answers BFD.
    node.assert_never_up(Duration::from_secs(4), "BGP without BFD Up");
    let held = node.status();
    assert_eq!(held.state, State::Idle);
    let why = held.bfd.as_ref().and_then(|b| b.holding()).expect("the status says why");
    assert!(why.starts_with("BFD session Down"), "{why}");

    start_bfdd(&mut topo);
    node.wait_state(State::Established, UP).unwrap();
    node.wait_received("10.20.0.0/16", UP).unwrap();
    assert_eq!(node.status().bfd.map(|b| b.state), Some(SessionState::Up));

    // Only BFD is cut: the TCP connection still carries the NOTIFICATION.
    let start = Instant::now();
    topo.exec("t", &["nft", "add table inet cut; add chain inet cut input { type filter hook input priority 0; }; add rule inet cut input udp dport 3784 drop"])
        .unwrap();
    let down = node.wait_down(Duration::from_millis(900) + DETECTION_MARGIN).unwrap();
    eprintln!("BGP went down {:?} after the cut", start.elapsed());
    assert!(
        matches!(down.last_error, Some(DownReason::NotificationSent { code: CEASE, subcode: BFD_DOWN, .. })),
        "{:?}",
        down.last_error
    );
    wait_until("bgpd to hear of it", UP, || {
        let out = topo
            .exec(
                "f",
                &[
                    "vtysh",
                    "--vty_socket",
                    &format!("{}/f-frr", topo.dir().display()),
                    "-c",
                    "show bgp neighbors 192.0.2.1",
                ],
            )
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("BFD Down").then_some(())
    })
    .unwrap();
    // It stays down while BFD is: bgpd keeps trying to connect.
    let back = wait_until("BGP while BFD is down", Duration::from_secs(3), || {
        (node.status().state == State::Established).then_some(())
    });
    assert!(back.is_err(), "the session came back while BFD is down");
    assert!(node.status().bfd.and_then(|b| b.holding()).is_some());

    topo.exec("t", &["nft", "delete table inet cut"]).unwrap();
    node.wait_state(State::Established, UP).unwrap();
}
