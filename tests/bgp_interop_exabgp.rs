//! tortie against ExaBGP 4.2 in network namespaces: tortie runs in-process
//! in namespace `t` (192.0.2.1, AS 65001), exabgp in `x` (192.0.2.2, AS 65002).

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use std::path::PathBuf;
use support::bgp::{TortieNode, ipv4_update, ipv6_update};
use tortie::bgp::packet::{AsPath, PathAttribute, UpdateMessage};
use tortie::bgp::session::as4::outbound_as_path;
use tortie::bgp::session::{DownReason, PeerConfig, State};

use tortie::netns::Topology;
use tortie::testing::wait_until;

const UP: Duration = Duration::from_secs(40);

fn lab(label: &str) -> Topology {
    let mut topo = Topology::new(label).unwrap();
    topo.add_namespace("t").unwrap();
    topo.add_namespace("x").unwrap();
    topo.add_veth(("t", "eth1", Some("192.0.2.1/24")), ("x", "eth1", Some("192.0.2.2/24"))).unwrap();
    topo.exec("t", &["ip", "addr", "add", "2001:db8:ff::1/64", "dev", "eth1", "nodad"]).unwrap();
    topo.exec("x", &["ip", "addr", "add", "2001:db8:ff::2/64", "dev", "eth1", "nodad"]).unwrap();
    topo
}

/// Starts exabgp; an API process writes the UPDATEs it receives (JSON) to
/// the returned file, which is how the test sees them.
#[derive(Default)]
struct Exabgp {
    passive: bool,
    password: Option<&'static str>,
    /// The AS ExaBGP expects tortie to have (65001 when 0).
    tortie_as: u32,
    /// More lines for the neighbor block.
    extra: &'static str,
}

fn start_exabgp(topo: &mut Topology, exabgp: &Exabgp) -> (PathBuf, u32) {
    let passive = exabgp.passive;
    let tortie_as = if exabgp.tortie_as == 0 { 65001 } else { exabgp.tortie_as };
    let password = exabgp.password.map(|p| format!("md5-password \"{p}\";")).unwrap_or_default();
    let conf = topo.dir().join("exabgp.conf");
    let received = topo.dir().join("received.json");
    std::fs::write(
        &conf,
        format!(
            "process receiver {{
    run /bin/sh -c 'cat > {received}';
    encoder json;
}}
neighbor 192.0.2.1 {{
    router-id 192.0.2.2;
    local-address 192.0.2.2;
    local-as 65002;
    peer-as {tortie_as};
    hold-time 9;
    passive {passive};
    {password}
    {extra}
    family {{ ipv4 unicast; ipv6 unicast; }}
    static {{
        route 10.20.0.0/16 next-hop 192.0.2.2;
        route 2001:db8:20::/48 next-hop 2001:db8:ff::2;
    }}
    api {{ processes [ receiver ]; receive {{ parsed; update; }} }}
}}
",
            received = received.display(),
            extra = exabgp.extra
        ),
    )
    .unwrap();
    let bind = if passive { "exabgp.tcp.bind=192.0.2.2" } else { "exabgp.tcp.bind=" };
    let pid = topo
        .spawn(
            "x",
            &[
                "env",
                "exabgp.daemon.user=root",
                bind,
                "exabgp.api.cli=false",
                "exabgp.log.destination=stderr",
                "exabgp.log.level=INFO",
                "exabgp",
                conf.to_str().unwrap(),
            ],
        )
        .unwrap()
        .pid();
    (received, pid)
}

fn tortie_config() -> PeerConfig {
    let mut config = PeerConfig::new([192, 0, 2, 2].into(), 65002, 65001, Ipv4Addr::new(192, 0, 2, 1));
    config.hold_time = 9;
    config.connect_retry = Duration::from_secs(2);
    config
}

fn routes_flow_both_ways(log: &std::path::Path, node: &TortieNode) {
    node.wait_received("10.20.0.0/16", UP).unwrap();
    node.wait_received("2001:db8:20::/48", UP).unwrap();
    node.send(ipv4_update("10.30.0.0/16", Ipv4Addr::new(192, 0, 2, 1), vec![65001], true));
    node.send(ipv6_update("2001:db8:30::/48", "2001:db8:ff::1".parse().unwrap(), vec![65001], true));
    for prefix in ["10.30.0.0/16", "2001:db8:30::/48"] {
        wait_until(&format!("ExaBGP to receive {prefix}"), UP, || {
            std::fs::read_to_string(log).unwrap_or_default().contains(prefix).then_some(())
        })
        .unwrap();
    }
}

#[test]
fn tortie_connects_to_a_passive_exabgp_and_routes_flow_both_ways() {
    let mut topo = lab("exaact");
    let (log, _) = start_exabgp(&mut topo, &Exabgp { passive: true, ..Exabgp::default() });
    let node = TortieNode::start(&topo.ns("t"), None, tortie_config());
    node.wait_state(State::Established, UP).unwrap();
    routes_flow_both_ways(&log, &node);
}

#[test]
fn exabgp_connects_to_a_passive_tortie_and_routes_flow_both_ways() {
    let mut topo = lab("exapas");
    let mut config = tortie_config();
    config.passive = true;
    let listen: SocketAddr = "192.0.2.1:179".parse().unwrap();
    let node = TortieNode::start(&topo.ns("t"), Some(listen), config);
    let (log, _) = start_exabgp(&mut topo, &Exabgp::default());
    node.wait_state(State::Established, UP).unwrap();
    routes_flow_both_ways(&log, &node);
}

#[test]
fn an_exabgp_that_only_dials_is_taken_while_tortie_cannot_connect() {
    // ExaBGP in its default mode dials and never listens, so every connect of
    // tortie's is refused; the session must still come up from ExaBGP's side.
    let mut topo = lab("exadial");
    let listen: SocketAddr = "192.0.2.1:179".parse().unwrap();
    let node = TortieNode::start(&topo.ns("t"), Some(listen), tortie_config());
    wait_until("tortie's connects to fail", UP, || (node.status().connect_retry_counter > 0).then_some(())).unwrap();
    let (log, _) = start_exabgp(&mut topo, &Exabgp::default());
    // ExaBGP dials about once a second; tortie takes the first connection.
    node.wait_state(State::Established, Duration::from_secs(10)).unwrap();
    routes_flow_both_ways(&log, &node);
}

#[test]
fn md5_with_exabgp_comes_up_with_the_right_key_only() {
    {
        let mut topo = lab("examd5");
        let mut config = tortie_config();
        config.md5_key = Some(b"s3cret".to_vec());
        start_exabgp(&mut topo, &Exabgp { passive: true, password: Some("s3cret"), ..Exabgp::default() });
        let node = TortieNode::start(&topo.ns("t"), None, config);
        node.wait_state(State::Established, UP).unwrap();
    }
    let mut topo = lab("examd5w");
    let mut config = tortie_config();
    config.md5_key = Some(b"wrong".to_vec());
    start_exabgp(&mut topo, &Exabgp { passive: true, password: Some("s3cret"), ..Exabgp::default() });
    let node = TortieNode::start(&topo.ns("t"), None, config);
    node.assert_never_up(Duration::from_secs(7), "a session with a wrong TCP-MD5 key");
}

#[test]
fn a_frozen_exabgp_is_noticed_by_the_hold_timer() {
    let mut topo = lab("exahold");
    let (_, pid) = start_exabgp(&mut topo, &Exabgp { passive: true, ..Exabgp::default() });
    let node = TortieNode::start(&topo.ns("t"), None, tortie_config());
    node.wait_state(State::Established, UP).unwrap();
    topo.exec("t", &["kill", "-STOP", &pid.to_string()]).unwrap();
    let status = node.wait_down(UP).unwrap();
    assert!(matches!(status.last_error, Some(DownReason::NotificationSent { code: 4, .. })), "{:?}", status.last_error);
}

#[test]
fn a_bad_peer_as_is_refused_both_ways_with_bad_peer_as() {
    {
        let mut topo = lab("exaas");
        let mut config = tortie_config();
        config.peer_as = 65009;
        start_exabgp(&mut topo, &Exabgp { passive: true, ..Exabgp::default() });
        let node = TortieNode::start(&topo.ns("t"), None, config);
        let sent = wait_until("tortie's NOTIFICATION", UP, || node.status().last_notification_sent).unwrap();
        assert_eq!((sent.code, sent.subcode), (2, 2), "{sent:?}");
    }
    let mut topo = lab("exaas2");
    start_exabgp(&mut topo, &Exabgp { passive: true, tortie_as: 65005, ..Exabgp::default() });
    let node = TortieNode::start(&topo.ns("t"), None, tortie_config());
    let received = wait_until("ExaBGP's NOTIFICATION", UP, || node.status().last_notification_received).unwrap();
    assert_eq!((received.code, received.subcode), (2, 2), "{received:?}");
}

#[test]
fn a_two_octet_session_carries_correct_as_paths() {
    // ExaBGP without the 4-octet AS capability makes a 2-octet session (RFC
    // 6793): it knows tortie's AS only as AS_TRANS, and the AS_PATH on the
    // wire has AS_TRANS in place of 4200000001.
    let mut topo = lab("exa2oct");
    let (log, _) = start_exabgp(
        &mut topo,
        &Exabgp { passive: true, tortie_as: 23456, extra: "capability { asn4 disable; }", ..Exabgp::default() },
    );
    let mut config = tortie_config();
    config.local_as = 4_200_000_001;
    let node = TortieNode::start(&topo.ns("t"), None, config);
    let status = node.wait_state(State::Established, UP).unwrap();
    assert!(!status.negotiated.unwrap().four_octet_as);
    node.wait_received("10.20.0.0/16", UP).unwrap();
    assert_eq!(node.as_path_of("10.20.0.0/16"), Some(vec![65002]));

    let template = ipv4_update("10.31.0.0/16", Ipv4Addr::new(192, 0, 2, 1), vec![], false);
    let path = AsPath::sequence(true, vec![4_200_000_001, 65010]);
    let mut attributes: Vec<PathAttribute> = template.attributes.into_iter().filter(|a| a.type_code() != 2).collect();
    attributes.extend(outbound_as_path(&path, false).into_iter().map(PathAttribute::new));
    node.send(UpdateMessage { attributes, ..template });
    let seen = wait_until("ExaBGP to receive 10.31.0.0/16", UP, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().find(|l| l.contains("10.31.0.0/16")).map(str::to_string)
    })
    .unwrap();
    let compact: String = seen.chars().filter(|c| !c.is_whitespace()).collect();
    // ExaBGP rebuilds the real path from AS_PATH and AS4_PATH (RFC 6793
    // 4.2.3), which is only possible if tortie sent both correctly.
    assert!(compact.contains("\"as-path\":[4200000001,65010]"), "{seen}");
}
