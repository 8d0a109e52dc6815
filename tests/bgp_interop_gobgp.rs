//! tortie against GoBGP 3 in network namespaces: tortie runs in-process in
//! namespace `t` (192.0.2.1, AS 65001), gobgpd in `g` (192.0.2.2, AS 65002).

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::bgp::{TortieNode, ipv4_update, ipv6_update};
use tortie::bgp::session::{DownReason, PeerConfig, State};
use tortie::netns::Topology;
use tortie::testing::wait_until;

const UP: Duration = Duration::from_secs(40);

#[derive(Default)]
struct Gobgp {
    passive: bool,
    password: Option<&'static str>,
    /// The AS GoBGP expects tortie to have (65001 when 0).
    tortie_as: u32,
}

fn lab(label: &str) -> Topology {
    let mut topo = Topology::new(label).unwrap();
    topo.add_namespace("t").unwrap();
    topo.add_namespace("g").unwrap();
    topo.add_veth(("t", "eth1", Some("192.0.2.1/24")), ("g", "eth1", Some("192.0.2.2/24"))).unwrap();
    topo.exec("t", &["ip", "addr", "add", "2001:db8:ff::1/64", "dev", "eth1", "nodad"]).unwrap();
    topo.exec("g", &["ip", "addr", "add", "2001:db8:ff::2/64", "dev", "eth1", "nodad"]).unwrap();
    topo
}

fn start_gobgp(topo: &mut Topology, gobgp: &Gobgp) -> u32 {
    let conf = topo.dir().join("gobgpd.toml");
    let password = gobgp.password.map(|p| format!("    auth-password = \"{p}\"\n")).unwrap_or_default();
    std::fs::write(
        &conf,
        format!(
            r#"[global.config]
  as = 65002
  router-id = "192.0.2.2"
  port = 179
  local-address-list = ["192.0.2.2"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "192.0.2.1"
    peer-as = {tortie_as}
{password}  [neighbors.timers.config]
    hold-time = 9
    keepalive-interval = 3
    connect-retry = 1
  [neighbors.transport.config]
    passive-mode = {passive}
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#,
            passive = gobgp.passive,
            tortie_as = if gobgp.tortie_as == 0 { 65001 } else { gobgp.tortie_as },
        ),
    )
    .unwrap();
    let pid = topo
        .spawn("g", &["gobgpd", "-f", conf.to_str().unwrap(), "-l", "warn", "--api-hosts", "127.0.0.1:50051"])
        .unwrap()
        .pid();
    wait_until("GoBGP's API", UP, || {
        topo.exec(
            "g",
            &["gobgp", "-u", "127.0.0.1", "-p", "50051", "global", "rib", "-a", "ipv4", "add", "10.20.0.0/16"],
        )
        .ok()
    })
    .unwrap();
    cli(topo, &["global", "rib", "-a", "ipv6", "add", "2001:db8:20::/48", "nexthop", "2001:db8:ff::2"]);
    pid
}

fn cli(topo: &Topology, args: &[&str]) -> String {
    let mut argv = vec!["gobgp", "-u", "127.0.0.1", "-p", "50051"];
    argv.extend_from_slice(args);
    topo.exec("g", &argv).map(|out| String::from_utf8_lossy(&out.stdout).into_owned()).unwrap_or_default()
}

fn tortie_config() -> PeerConfig {
    let mut config = PeerConfig::new([192, 0, 2, 2].into(), 65002, 65001, Ipv4Addr::new(192, 0, 2, 1));
    config.hold_time = 9;
    config.connect_retry = Duration::from_secs(2);
    config
}

fn routes_flow_both_ways(topo: &Topology, node: &TortieNode) {
    node.wait_received("10.20.0.0/16", UP).unwrap();
    node.wait_received("2001:db8:20::/48", UP).unwrap();
    node.send(ipv4_update("10.30.0.0/16", Ipv4Addr::new(192, 0, 2, 1), vec![65001], true));
    node.send(ipv6_update("2001:db8:30::/48", "2001:db8:ff::1".parse().unwrap(), vec![65001], true));
    for (family, prefix) in [("ipv4", "10.30.0.0/16"), ("ipv6", "2001:db8:30::/48")] {
        wait_until(&format!("GoBGP to have {prefix}"), UP, || {
            cli(topo, &["global", "rib", "-a", family]).contains(prefix).then_some(())
        })
        .unwrap();
    }
}

#[test]
fn tortie_connects_to_a_passive_gobgp_and_routes_flow_both_ways() {
    let mut topo = lab("gobact");
    start_gobgp(&mut topo, &Gobgp { passive: true, ..Gobgp::default() });
    let node = TortieNode::start(&topo.ns("t"), None, tortie_config());
    node.wait_state(State::Established, UP).unwrap();
    routes_flow_both_ways(&topo, &node);
}

#[test]
fn gobgp_connects_to_a_passive_tortie_and_routes_flow_both_ways() {
    let mut topo = lab("gobpas");
    let mut config = tortie_config();
    config.passive = true;
    let listen: SocketAddr = "192.0.2.1:179".parse().unwrap();
    let node = TortieNode::start(&topo.ns("t"), Some(listen), config);
    start_gobgp(&mut topo, &Gobgp::default());
    node.wait_state(State::Established, UP).unwrap();
    routes_flow_both_ways(&topo, &node);
}

#[test]
fn md5_with_gobgp_comes_up_with_the_right_key_only() {
    {
        let mut topo = lab("gobmd5");
        let mut config = tortie_config();
        config.md5_key = Some(b"s3cret".to_vec());
        start_gobgp(&mut topo, &Gobgp { passive: true, password: Some("s3cret"), ..Gobgp::default() });
        let node = TortieNode::start(&topo.ns("t"), None, config);
        node.wait_state(State::Established, UP).unwrap();
    }
    let mut topo = lab("gobmd5w");
    let mut config = tortie_config();
    config.md5_key = Some(b"wrong".to_vec());
    start_gobgp(&mut topo, &Gobgp { passive: true, password: Some("s3cret"), ..Gobgp::default() });
    let node = TortieNode::start(&topo.ns("t"), None, config);
    node.assert_never_up(Duration::from_secs(7), "a session with a wrong TCP-MD5 key");
}

#[test]
fn a_frozen_gobgp_is_noticed_by_the_hold_timer() {
    let mut topo = lab("gobhold");
    let pid = start_gobgp(&mut topo, &Gobgp { passive: true, ..Gobgp::default() });
    let node = TortieNode::start(&topo.ns("t"), None, tortie_config());
    node.wait_state(State::Established, UP).unwrap();
    topo.exec("t", &["kill", "-STOP", &pid.to_string()]).unwrap();
    let status = node.wait_down(UP).unwrap();
    assert!(matches!(status.last_error, Some(DownReason::NotificationSent { code: 4, .. })), "{:?}", status.last_error);
}

#[test]
fn a_bad_peer_as_is_refused_both_ways_with_bad_peer_as() {
    {
        let mut topo = lab("gobas");
        let mut config = tortie_config();
        config.peer_as = 65009;
        start_gobgp(&mut topo, &Gobgp { passive: true, ..Gobgp::default() });
        let node = TortieNode::start(&topo.ns("t"), None, config);
        let sent = wait_until("tortie's NOTIFICATION", UP, || node.status().last_notification_sent).unwrap();
        assert_eq!((sent.code, sent.subcode), (2, 2), "{sent:?}");
    }
    let mut topo = lab("gobas2");
    start_gobgp(&mut topo, &Gobgp { passive: true, tortie_as: 65005, ..Gobgp::default() });
    let node = TortieNode::start(&topo.ns("t"), None, tortie_config());
    let received = wait_until("GoBGP's NOTIFICATION", UP, || node.status().last_notification_received).unwrap();
    assert_eq!((received.code, received.subcode), (2, 2), "{received:?}");
}
