//! tortie against BIRD 2 in network namespaces: tortie runs in-process in
//! namespace `t` (192.0.2.1, AS 65001), BIRD in `b` (192.0.2.2, AS 65002).

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::bgp::{TortieNode, ipv4_update, ipv6_update};
use tortie::bgp::session::{DownReason, PeerConfig, State};
use tortie::netns::Topology;
use tortie::testing::wait_until;

const UP: Duration = Duration::from_secs(30);

struct Bird {
    passive: bool,
    password: Option<&'static str>,
    /// The AS BIRD expects tortie to have.
    tortie_as: u32,
    hold: u16,
}

impl Default for Bird {
    fn default() -> Self {
        Bird { passive: false, password: None, tortie_as: 65001, hold: 9 }
    }
}

fn lab(label: &str) -> Topology {
    let mut topo = Topology::new(label).unwrap();
    topo.add_namespace("t").unwrap();
    topo.add_namespace("b").unwrap();
    topo.add_veth(("t", "eth1", Some("192.0.2.1/24")), ("b", "eth1", Some("192.0.2.2/24"))).unwrap();
    topo.exec("t", &["ip", "addr", "add", "2001:db8:ff::1/64", "dev", "eth1", "nodad"]).unwrap();
    topo.exec("b", &["ip", "addr", "add", "2001:db8:ff::2/64", "dev", "eth1", "nodad"]).unwrap();
    topo
}

fn start_bird(topo: &mut Topology, bird: &Bird) -> (PathBuf, u32) {
    let dir = topo.dir().to_path_buf();
    let ctl = dir.join("bird.ctl");
    let conf = dir.join("bird.conf");
    let password = bird.password.map(|p| format!("password \"{p}\";")).unwrap_or_default();
    let passive = if bird.passive { "passive on;" } else { "" };
    std::fs::write(
        &conf,
        format!(
            r#"router id 192.0.2.2;
protocol device {{}}
protocol static s4 {{ ipv4; route 10.20.0.0/16 blackhole; }}
protocol static s6 {{ ipv6; route 2001:db8:20::/48 blackhole; }}
protocol bgp tortie {{
    local 192.0.2.2 as 65002;
    neighbor 192.0.2.1 as {tortie_as};
    hold time {hold};
    connect retry time 1;
    error wait time 1, 2;
    {passive}
    {password}
    ipv4 {{ import all; export all; }};
    ipv6 {{ import all; export all; next hop address 2001:db8:ff::2; }};
}}
"#,
            tortie_as = bird.tortie_as,
            hold = bird.hold,
        ),
    )
    .unwrap();
    let pid =
        topo.spawn("b", &["bird", "-f", "-c", conf.to_str().unwrap(), "-s", ctl.to_str().unwrap()]).unwrap().pid();
    (ctl, pid)
}

fn birdc(topo: &Topology, ctl: &Path, args: &[&str]) -> String {
    let mut argv = vec!["birdc", "-s", ctl.to_str().unwrap()];
    argv.extend_from_slice(args);
    topo.exec("b", &argv).map(|out| String::from_utf8_lossy(&out.stdout).into_owned()).unwrap_or_default()
}

fn tortie_config() -> PeerConfig {
    let mut config = PeerConfig::new([192, 0, 2, 2].into(), 65002, 65001, Ipv4Addr::new(192, 0, 2, 1));
    config.hold_time = 9;
    config.connect_retry = Duration::from_secs(2);
    config.local_addr = Some([192, 0, 2, 1].into());
    config
}

fn listen() -> Option<SocketAddr> {
    Some("192.0.2.1:179".parse().unwrap())
}

fn routes_flow_both_ways(topo: &Topology, ctl: &Path, node: &TortieNode) {
    node.wait_received("10.20.0.0/16", UP).unwrap();
    node.wait_received("2001:db8:20::/48", UP).unwrap();
    assert_eq!(node.as_path_of("10.20.0.0/16"), Some(vec![65002]));
    node.send(ipv4_update("10.30.0.0/16", Ipv4Addr::new(192, 0, 2, 1), vec![65001], true));
    node.send(ipv6_update("2001:db8:30::/48", "2001:db8:ff::1".parse().unwrap(), vec![65001], true));
    for prefix in ["10.30.0.0/16", "2001:db8:30::/48"] {
        wait_until(&format!("BIRD to have {prefix}"), UP, || {
            birdc(topo, ctl, &["show", "route", prefix]).contains(prefix).then_some(())
        })
        .unwrap();
    }
}

#[test]
fn tortie_connects_to_a_passive_bird_and_routes_flow_both_ways() {
    let mut topo = lab("birdact");
    let (ctl, _) = start_bird(&mut topo, &Bird { passive: true, ..Bird::default() });
    let node = TortieNode::start(&topo.ns("t"), None, tortie_config());
    let status = node.wait_state(State::Established, UP).unwrap();
    let negotiated = status.negotiated.unwrap();
    assert!(negotiated.four_octet_as && negotiated.route_refresh);
    assert_eq!(negotiated.hold_time, 9);
    routes_flow_both_ways(&topo, &ctl, &node);
}

#[test]
fn bird_connects_to_a_passive_tortie_and_routes_flow_both_ways() {
    let mut topo = lab("birdpas");
    let mut config = tortie_config();
    config.passive = true;
    let node = TortieNode::start(&topo.ns("t"), listen(), config);
    let (ctl, _) = start_bird(&mut topo, &Bird::default());
    node.wait_state(State::Established, UP).unwrap();
    routes_flow_both_ways(&topo, &ctl, &node);
}

#[test]
fn md5_with_the_right_key_comes_up_and_with_a_wrong_key_does_not() {
    {
        let mut topo = lab("birdmd5");
        let mut config = tortie_config();
        config.md5_key = Some(b"s3cret".to_vec());
        start_bird(&mut topo, &Bird { passive: true, password: Some("s3cret"), ..Bird::default() });
        let node = TortieNode::start(&topo.ns("t"), None, config);
        node.wait_state(State::Established, UP).unwrap();
    }
    let mut topo = lab("birdmd5w");
    let mut config = tortie_config();
    config.md5_key = Some(b"wrong".to_vec());
    start_bird(&mut topo, &Bird { passive: true, password: Some("s3cret"), ..Bird::default() });
    let node = TortieNode::start(&topo.ns("t"), None, config);
    // With a wrong key the SYNs are dropped: several connect attempts (2 s
    // each) must pass without a single message arriving.
    node.assert_never_up(Duration::from_secs(7), "a session with a wrong TCP-MD5 key");
}

#[test]
fn a_frozen_bird_is_noticed_by_the_hold_timer() {
    let mut topo = lab("birdhold");
    let mut config = tortie_config();
    config.hold_time = 6;
    let (_ctl, pid) = start_bird(&mut topo, &Bird { passive: true, hold: 6, ..Bird::default() });
    let node = TortieNode::start(&topo.ns("t"), None, config);
    node.wait_state(State::Established, UP).unwrap();
    // SIGSTOP keeps the kernel's TCP alive but silences BIRD: only the hold timer can tell.
    topo.exec("t", &["kill", "-STOP", &pid.to_string()]).unwrap();
    let status = node.wait_down(UP).unwrap();
    assert!(
        matches!(status.last_error, Some(DownReason::NotificationSent { code: 4, subcode: 0, .. })),
        "{:?}",
        status.last_error
    );
}

#[test]
fn a_bad_peer_as_is_refused_both_ways_with_bad_peer_as() {
    // BIRD has AS 65002 but tortie expects 65009: tortie refuses BIRD's OPEN.
    let mut topo = lab("birdas");
    let mut config = tortie_config();
    config.peer_as = 65009;
    let (ctl, _) = start_bird(&mut topo, &Bird { passive: true, ..Bird::default() });
    let node = TortieNode::start(&topo.ns("t"), None, config);
    let sent = wait_until("tortie to send a NOTIFICATION", UP, || node.status().last_notification_sent).unwrap();
    assert_eq!((sent.code, sent.subcode), (2, 2), "{sent:?}");
    wait_until("BIRD to report Bad peer AS", UP, || {
        birdc(&topo, &ctl, &["show", "protocols", "all", "tortie"]).contains("Bad peer AS").then_some(())
    })
    .unwrap();

    // BIRD expects 65005 but tortie is 65001: BIRD refuses tortie's OPEN.
    let mut topo = lab("birdas2");
    let (_ctl, _) = start_bird(&mut topo, &Bird { passive: true, tortie_as: 65005, ..Bird::default() });
    let node = TortieNode::start(&topo.ns("t"), None, tortie_config());
    let received = wait_until("BIRD's NOTIFICATION", UP, || node.status().last_notification_received).unwrap();
    assert_eq!((received.code, received.subcode), (2, 2), "{received:?}");
}

#[test]
fn administrative_shutdown_reaches_bird_with_its_message() {
    let mut topo = lab("birdshut");
    let (ctl, _) = start_bird(&mut topo, &Bird { passive: true, ..Bird::default() });
    let node = TortieNode::start(&topo.ns("t"), None, tortie_config());
    node.wait_state(State::Established, UP).unwrap();
    node.shutdown("maintenance window");
    node.wait_state(State::Idle, UP).unwrap();
    wait_until("BIRD to show the shutdown message", UP, || {
        birdc(&topo, &ctl, &["show", "protocols", "all", "tortie"]).contains("maintenance window").then_some(())
    })
    .unwrap();
}
