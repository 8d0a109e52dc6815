//! tortie against FRR 8.4 bgpd in network namespaces: tortie runs in-process
//! in namespace `t` (192.0.2.1, AS 65001), bgpd (without zebra) in `f`
//! (192.0.2.2, AS 65002).

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::bgp::{TortieNode, ipv4_update, ipv6_update};
use tortie::bgp::session::{DownReason, PeerConfig, State};
use tortie::netns::Topology;
use tortie::testing::wait_until;

const UP: Duration = Duration::from_secs(40);

#[derive(Default)]
struct Frr {
    passive: bool,
    password: Option<&'static str>,
    /// The AS FRR expects tortie to have (65001 when 0).
    tortie_as: u32,
}

fn lab(label: &str) -> Topology {
    let mut topo = Topology::new(label).unwrap();
    topo.add_namespace("t").unwrap();
    topo.add_namespace("f").unwrap();
    topo.add_veth(("t", "eth1", Some("192.0.2.1/24")), ("f", "eth1", Some("192.0.2.2/24"))).unwrap();
    topo.exec("t", &["ip", "addr", "add", "2001:db8:ff::1/64", "dev", "eth1", "nodad"]).unwrap();
    topo.exec("f", &["ip", "addr", "add", "2001:db8:ff::2/64", "dev", "eth1", "nodad"]).unwrap();
    topo
}

fn start_frr(topo: &mut Topology, frr: &Frr) -> (PathBuf, u32) {
    let tortie_as = if frr.tortie_as == 0 { 65001 } else { frr.tortie_as };
    let passive = if frr.passive { " neighbor 192.0.2.1 passive\n" } else { "" };
    let password = frr.password.map(|p| format!(" neighbor 192.0.2.1 password {p}\n")).unwrap_or_default();
    let config = format!(
        "frr defaults traditional
hostname frr
router bgp 65002
 bgp router-id 192.0.2.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 192.0.2.1 remote-as {tortie_as}
 neighbor 192.0.2.1 timers 3 9
 neighbor 192.0.2.1 timers connect 1
{passive}{password} address-family ipv4 unicast
  network 10.20.0.0/16
 exit-address-family
 address-family ipv6 unicast
  network 2001:db8:20::/48
  neighbor 192.0.2.1 activate
 exit-address-family
"
    );
    support::daemons::spawn_frr(topo, "f", "192.0.2.2", &config)
}

fn vtysh(topo: &Topology, dir: &Path, command: &str) -> String {
    topo.exec("f", &["vtysh", "--vty_socket", dir.to_str().unwrap(), "-c", command])
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

fn tortie_config() -> PeerConfig {
    let mut config = PeerConfig::new([192, 0, 2, 2].into(), 65002, 65001, Ipv4Addr::new(192, 0, 2, 1));
    config.hold_time = 9;
    config.connect_retry = Duration::from_secs(2);
    config
}

fn listen() -> Option<SocketAddr> {
    Some("192.0.2.1:179".parse().unwrap())
}

fn routes_flow_both_ways(topo: &Topology, dir: &Path, node: &TortieNode) {
    node.wait_received("10.20.0.0/16", UP).unwrap();
    node.wait_received("2001:db8:20::/48", UP).unwrap();
    node.send(ipv6_update("2001:db8:30::/48", "2001:db8:ff::1".parse().unwrap(), vec![65001], true));
    wait_until("FRR to have 2001:db8:30::/48", UP, || {
        vtysh(topo, dir, "show bgp ipv6 unicast 2001:db8:30::/48")
            .contains("routing table entry for 2001:db8:30::/48")
            .then_some(())
    })
    .unwrap();
    assert_eq!(node.as_path_of("10.20.0.0/16"), Some(vec![65002]));
    node.send(ipv4_update("10.30.0.0/16", Ipv4Addr::new(192, 0, 2, 1), vec![65001], true));
    wait_until("FRR to have 10.30.0.0/16", UP, || {
        vtysh(topo, dir, "show bgp ipv4 unicast 10.30.0.0/16")
            .contains("routing table entry for 10.30.0.0/16")
            .then_some(())
    })
    .unwrap();
}

#[test]
fn tortie_connects_to_a_passive_frr_and_routes_flow_both_ways() {
    let mut topo = lab("frract");
    let (dir, _) = start_frr(&mut topo, &Frr { passive: true, ..Frr::default() });
    let node = TortieNode::start(&topo.ns("t"), None, tortie_config());
    node.wait_state(State::Established, UP).unwrap();
    routes_flow_both_ways(&topo, &dir, &node);
}

#[test]
fn frr_connects_to_a_passive_tortie_and_routes_flow_both_ways() {
    let mut topo = lab("frrpas");
    let mut config = tortie_config();
    config.passive = true;
    let node = TortieNode::start(&topo.ns("t"), listen(), config);
    let (dir, _) = start_frr(&mut topo, &Frr::default());
    node.wait_state(State::Established, UP).unwrap();
    routes_flow_both_ways(&topo, &dir, &node);
}

#[test]
fn md5_with_frr_comes_up_with_the_right_key_only() {
    {
        let mut topo = lab("frrmd5");
        let mut config = tortie_config();
        config.md5_key = Some(b"s3cret".to_vec());
        start_frr(&mut topo, &Frr { passive: true, password: Some("s3cret"), ..Frr::default() });
        let node = TortieNode::start(&topo.ns("t"), None, config);
        node.wait_state(State::Established, UP).unwrap();
    }
    let mut topo = lab("frrmd5w");
    let mut config = tortie_config();
    config.md5_key = Some(b"wrong".to_vec());
    start_frr(&mut topo, &Frr { passive: true, password: Some("s3cret"), ..Frr::default() });
    let node = TortieNode::start(&topo.ns("t"), None, config);
    node.assert_never_up(Duration::from_secs(7), "a session with a wrong TCP-MD5 key");
}

#[test]
fn a_frozen_frr_is_noticed_by_the_hold_timer() {
    let mut topo = lab("frrhold");
    let (_dir, pid) = start_frr(&mut topo, &Frr { passive: true, ..Frr::default() });
    let node = TortieNode::start(&topo.ns("t"), None, tortie_config());
    node.wait_state(State::Established, UP).unwrap();
    topo.exec("t", &["kill", "-STOP", &pid.to_string()]).unwrap();
    let status = node.wait_down(UP).unwrap();
    assert!(matches!(status.last_error, Some(DownReason::NotificationSent { code: 4, .. })), "{:?}", status.last_error);
}

#[test]
fn a_bad_peer_as_is_refused_both_ways_with_bad_peer_as() {
    {
        let mut topo = lab("frras");
        let mut config = tortie_config();
        config.peer_as = 65009;
        start_frr(&mut topo, &Frr { passive: true, ..Frr::default() });
        let node = TortieNode::start(&topo.ns("t"), None, config);
        let sent = wait_until("tortie's NOTIFICATION", UP, || node.status().last_notification_sent).unwrap();
        assert_eq!((sent.code, sent.subcode), (2, 2), "{sent:?}");
    }
    let mut topo = lab("frras2");
    start_frr(&mut topo, &Frr { passive: true, tortie_as: 65005, ..Frr::default() });
    let node = TortieNode::start(&topo.ns("t"), None, tortie_config());
    let received = wait_until("FRR's NOTIFICATION", UP, || node.status().last_notification_received).unwrap();
    assert_eq!((received.code, received.subcode), (2, 2), "{received:?}");
}
