//! Per-peer protections and requests with real daemons, tortie (speaker +
//! RIB in-process) in namespace `t` (192.0.2.1, AS 65001) against one
//! daemon in `d` (192.0.2.2, AS 65002):
//!
//! - maximum-prefix: a flooding ExaBGP peer gets Cease/1 and the session
//!   comes back after the configured restart time;
//! - route refresh: FRR's `clear bgp … soft in` makes tortie send its table
//!   again, between BoRR and EoRR (RFC 7313).

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use support::daemons::{start_frr, vtysh, vtysh_json};
use support::rib::{RibNode, net, session};
use tortie::bgp::rib::{PeerRole, PeerSetup, Policy, RibConfig};
use tortie::bgp::session::State;
use tortie::netns::Topology;
use tortie::testing::wait_until;

const UP: Duration = Duration::from_secs(60);
const ME: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

fn pair(label: &str) -> Topology {
    let mut topo = Topology::new(label).unwrap();
    topo.add_namespace("t").unwrap();
    topo.add_namespace("d").unwrap();
    topo.add_veth(("t", "eth1", Some("192.0.2.1/24")), ("d", "eth1", Some("192.0.2.2/24"))).unwrap();
    topo
}

fn external() -> PeerSetup {
    let mut setup = PeerSetup::new(PeerRole::External, 65002);
    setup.import = Some(Policy::accept_all());
    setup
}

fn rib_config() -> RibConfig {
    let mut config = RibConfig::new(65001, ME);
    config.pools = vec![net("10.244.0.0/16")];
    config
}

/// ExaBGP (passive) announcing `count` /24s under 10.20.0.0/16.
fn start_flooding_exabgp(topo: &mut Topology, count: u8) {
    let conf = topo.dir().join("exabgp.conf");
    let routes: String = (0..count).map(|i| format!("        route 10.20.{i}.0/24 next-hop 192.0.2.2;\n")).collect();
    std::fs::write(
        &conf,
        format!(
            "neighbor 192.0.2.1 {{
    router-id 192.0.2.2;
    local-address 192.0.2.2;
    local-as 65002;
    peer-as 65001;
    hold-time 9;
    passive true;
    family {{ ipv4 unicast; }}
    static {{
{routes}    }}
}}
"
        ),
    )
    .unwrap();
    topo.spawn(
        "d",
        &[
            "env",
            "exabgp.daemon.user=root",
            "exabgp.tcp.bind=192.0.2.2",
            "exabgp.api.cli=false",
            "exabgp.log.destination=stderr",
            "exabgp.log.level=INFO",
            "exabgp",
            conf.to_str().unwrap(),
        ],
    )
    .unwrap();
}

#[test]
fn a_flooding_exabgp_peer_is_torn_down_with_cease_one_and_comes_back() {
    let mut topo = pair("ribmaxp");
    start_flooding_exabgp(&mut topo, 20);
    let mut config = session(ME, PEER, 65001, 65002);
    config.max_prefixes = Some((10, Duration::from_secs(2)));
    let node = RibNode::start(&topo.ns("t"), ME, rib_config(), vec![(config, external())]);
    // 20 prefixes against a limit of 10: Cease / Maximum Number of Prefixes Reached.
    let sent = wait_until("tortie's Cease", UP, || node.status(PEER).last_notification_sent).unwrap();
    assert_eq!((sent.code, sent.subcode), (6, 1), "{sent:?}");
    // The session does not come straight back: the peer stays Idle for the
    // restart time, then connects, comes up and (still flooding) is torn
    // down again — two OPENs received and two flaps prove it came back.
    let status = wait_until("the session to come back and fall again", UP, || {
        Some(node.status(PEER)).filter(|s| s.flaps >= 2 && s.messages_in.open >= 2)
    })
    .unwrap();
    assert!(status.notifications.iter().any(|n| n.direction == "sent" && n.code == 6 && n.subcode == 1), "{status:?}");
    // Routes of a session torn down with a NOTIFICATION do not stay.
    wait_until("the flooded routes to go", UP, || {
        let rib = node.snapshot();
        (node.status(PEER).state != State::Established && rib.routes.is_empty()).then_some(())
    })
    .unwrap();
}

const FRR_CONFIG: &str = "frr defaults traditional
hostname frr
router bgp 65002
 bgp router-id 192.0.2.2
 no bgp ebgp-requires-policy
 neighbor 192.0.2.1 remote-as 65001
 neighbor 192.0.2.1 timers 3 9
 neighbor 192.0.2.1 timers connect 1
";

fn frr_counters(topo: &Topology, dir: &std::path::Path) -> Option<(u64, u64)> {
    let json = vtysh_json(topo, "d", dir, "show bgp neighbors 192.0.2.1 json");
    let stats = json.get("192.0.2.1")?.get("messageStats")?;
    Some((stats.get("updatesRecv")?.as_u64()?, stats.get("routeRefreshSent")?.as_u64()?))
}

#[test]
fn frr_soft_in_makes_tortie_resend_its_table_between_borr_and_eorr() {
    let mut topo = pair("ribrefr");
    let frr = start_frr(&mut topo, "d", "192.0.2.2", FRR_CONFIG);
    let node = RibNode::start(&topo.ns("t"), ME, rib_config(), vec![(session(ME, PEER, 65001, 65002), external())]);
    node.originate(net("10.244.1.0/26"));
    node.originate(net("10.244.2.0/26"));
    for block in ["10.244.1.0/26", "10.244.2.0/26"] {
        wait_until(&format!("FRR to have {block}"), UP, || {
            vtysh(&topo, "d", &frr, &format!("show bgp ipv4 unicast {block}"))
                .contains(&format!("routing table entry for {block}"))
                .then_some(())
        })
        .unwrap();
    }
    let status = node.wait_state(PEER, State::Established, UP);
    let negotiated = status.negotiated.clone().expect("negotiated");
    assert!(negotiated.route_refresh, "{negotiated:?}");
    let (updates_before, refresh_before) = wait_until("FRR's counters", UP, || frr_counters(&topo, &frr)).unwrap();
    let out_before = node.status(PEER).messages_out;

    vtysh(&topo, "d", &frr, "clear bgp ipv4 unicast 192.0.2.1 soft in");

    // FRR asked (ROUTE-REFRESH) and received the table again: one UPDATE,
    // both blocks share their attributes.
    let (updates_after, refresh_after) = wait_until("FRR to receive the table again", UP, || {
        frr_counters(&topo, &frr).filter(|(updates, _)| *updates > updates_before)
    })
    .unwrap();
    assert!(refresh_after > refresh_before, "FRR sent no ROUTE-REFRESH: {refresh_before} → {refresh_after}");
    let status = wait_until("tortie's re-announcement", UP, || {
        Some(node.status(PEER)).filter(|s| s.messages_out.update > out_before.update)
    })
    .unwrap();
    assert!(status.messages_in.route_refresh >= 1, "{status:?}");
    // FRR 8.4 offers enhanced route refresh; RFC 7313: BoRR before the
    // table, EoRR after it (in place of End-of-RIB), so one UPDATE between.
    assert!(negotiated.enhanced_route_refresh, "{negotiated:?}");
    let status = wait_until("BoRR and EoRR", UP, || {
        Some(node.status(PEER)).filter(|s| s.messages_out.route_refresh >= out_before.route_refresh + 2)
    })
    .unwrap();
    assert_eq!(status.messages_out.update, out_before.update + 1, "{status:?}");
    assert!(updates_after > updates_before);
    // The routes never left FRR.
    for block in ["10.244.1.0/26", "10.244.2.0/26"] {
        let text = vtysh(&topo, "d", &frr, &format!("show bgp ipv4 unicast {block}"));
        assert!(text.contains(&format!("routing table entry for {block}")), "{text}");
    }
}
