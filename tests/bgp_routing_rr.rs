//! A tortie route reflector (RFC 4456) serving two tortie clients and an FRR
//! client on one LAN; the clients peer only with the reflector. Then the
//! same with ADD-PATH (RFC 7911): a prefix two clients originate reaches the
//! other clients with both paths.
//!
//! ```text
//!  rr  192.0.2.10 ─┐   tortie reflector, cluster id 10.255.0.1
//!  c1  192.0.2.11 ─┤   tortie client, originates 10.244.1.0/26
//!  c2  192.0.2.12 ─┼─ br0 (sw)   tortie client, originates 10.244.2.0/26
//!  frr 192.0.2.13 ─┘   FRR client, originates 10.244.3.0/26     all AS 65000
//! ```

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use support::daemons::{start_frr, vtysh_json};
use support::rib::{RibNode, lan, net, session};
use tortie::bgp::rib::{PeerRole, PeerSetup, RibConfig};
use tortie::netns::Topology;
use tortie::testing::{json_subset, wait_until};

const UP: Duration = Duration::from_secs(60);
const AS: u32 = 65000;
const CLUSTER: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);

fn addr(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, last)
}

fn rib_config(me: Ipv4Addr) -> RibConfig {
    let mut config = RibConfig::new(AS, me);
    config.pools = vec![net("10.244.0.0/16")];
    config
}

fn client(topo: &Topology, ns: &str, me: Ipv4Addr) -> RibNode {
    client_with(topo, ns, me, false)
}

/// A tortie client of the reflector at .10, offering ADD-PATH receive when `add_path`.
fn client_with(topo: &Topology, ns: &str, me: Ipv4Addr, add_path: bool) -> RibNode {
    let mut to_rr = session(me, addr(10), AS, AS);
    to_rr.add_path_receive = add_path;
    RibNode::start(&topo.ns(ns), me, rib_config(me), vec![(to_rr, PeerSetup::new(PeerRole::RrServer, AS))])
}

const FRR_CONFIG: &str = "frr defaults traditional
hostname frr
router bgp 65000
 bgp router-id 192.0.2.13
 no bgp network import-check
 neighbor 192.0.2.10 remote-as 65000
 neighbor 192.0.2.10 timers 3 9
 neighbor 192.0.2.10 timers connect 1
 address-family ipv4 unicast
  network 10.244.3.0/26
 exit-address-family
";

#[test]
fn a_tortie_reflector_reflects_between_tortie_and_frr_clients() {
    let mut topo = Topology::new("ribrr").unwrap();
    lan(
        &mut topo,
        &[("rr", "192.0.2.10/24"), ("c1", "192.0.2.11/24"), ("c2", "192.0.2.12/24"), ("frr", "192.0.2.13/24")],
    );
    let frr = start_frr(&mut topo, "frr", "192.0.2.13", FRR_CONFIG);
    let mut config = rib_config(addr(10));
    config.cluster_id = Some(CLUSTER);
    let clients = [11u8, 12, 13].map(|c| (session(addr(10), addr(c), AS, AS), PeerSetup::new(PeerRole::RrClient, AS)));
    let _rr = RibNode::start(&topo.ns("rr"), addr(10), config, clients.to_vec());
    let c1 = client(&topo, "c1", addr(11));
    let c2 = client(&topo, "c2", addr(12));
    c1.originate(net("10.244.1.0/26"));
    c2.originate(net("10.244.2.0/26"));

    // Each tortie client learns the others' blocks through the reflector,
    // with the originator's next hop (a reflector keeps it).
    for (node, other, other_block) in [(&c1, 12, "10.244.2.0/26"), (&c2, 11, "10.244.1.0/26")] {
        node.wait_best(net(other_block), &[addr(other)], UP);
        node.wait_best(net("10.244.3.0/26"), &[addr(13)], UP);
    }
    // ORIGINATOR_ID is the originating client's router id; CLUSTER_LIST ours.
    let from_frr = c1.paths(net("10.244.3.0/26"));
    assert_eq!(from_frr.len(), 1, "{from_frr:#?}");
    assert_eq!(from_frr[0].peer, Some(IpAddr::from(addr(10))), "{from_frr:#?}");
    assert_eq!(from_frr[0].originator_id, Some(addr(13)), "{from_frr:#?}");
    assert_eq!(from_frr[0].cluster_list, vec![CLUSTER], "{from_frr:#?}");
    let from_c2 = c1.paths(net("10.244.2.0/26"));
    assert_eq!((from_c2[0].originator_id, from_c2[0].cluster_list.clone()), (Some(addr(12)), vec![CLUSTER]));

    // FRR sees both tortie clients' blocks with the attributes tortie set.
    for (block, origin) in [("10.244.1.0/26", 11u8), ("10.244.2.0/26", 12)] {
        let expected = serde_json::json!({
            "prefix": block,
            "paths": [{
                "originatorId": addr(origin).to_string(),
                "clusterList": {"list": [CLUSTER.to_string()]},
                "nexthops": [{"ip": addr(origin).to_string()}],
                "peer": {"peerId": "192.0.2.10"},
            }],
        });
        wait_until(&format!("FRR to have {block} reflected"), UP, || {
            let got = vtysh_json(&topo, "frr", &frr, &format!("show bgp ipv4 unicast {block} json"));
            json_subset(&expected, &got).ok()
        })
        .unwrap_or_else(|e| {
            let got = vtysh_json(&topo, "frr", &frr, &format!("show bgp ipv4 unicast {block} json"));
            panic!("{e}: {got:#}")
        });
    }

    // A withdrawal at a client reaches the other clients through the reflector.
    c2.withdraw(net("10.244.2.0/26"));
    c1.wait_best(net("10.244.2.0/26"), &[], UP);
    wait_until("FRR to lose 10.244.2.0/26", UP, || {
        let got = vtysh_json(&topo, "frr", &frr, "show bgp ipv4 unicast 10.244.2.0/26 json");
        got.get("paths").is_none().then_some(())
    })
    .unwrap();
}

/// The next hops and peers of FRR's paths for `prefix` (sorted; empty: none).
fn frr_paths(topo: &Topology, frr: &std::path::Path, prefix: &str) -> Vec<(String, String)> {
    let got = vtysh_json(topo, "frr", frr, &format!("show bgp ipv4 unicast {prefix} json"));
    let mut paths: Vec<(String, String)> = got
        .get("paths")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .map(|p| {
            let hop = p.pointer("/nexthops/0/ip").and_then(|v| v.as_str()).unwrap_or_default();
            let peer = p.pointer("/peer/peerId").and_then(|v| v.as_str()).unwrap_or_default();
            (hop.to_string(), peer.to_string())
        })
        .collect();
    paths.sort();
    paths
}

#[test]
fn a_tortie_reflector_sends_every_ecmp_path_with_add_path() {
    //  rr 192.0.2.10 (ADD-PATH send to its clients); c1 .11 and c2 .12 both
    //  originate 10.244.9.0/26; c3 .14 (tortie, ADD-PATH receive) and
    //  frr .13 (FRR offers ADD-PATH receive by default) learn it.
    let mut topo = Topology::new("ribap").unwrap();
    lan(
        &mut topo,
        &[
            ("rr", "192.0.2.10/24"),
            ("c1", "192.0.2.11/24"),
            ("c2", "192.0.2.12/24"),
            ("frr", "192.0.2.13/24"),
            ("c3", "192.0.2.14/24"),
        ],
    );
    let frr = start_frr(&mut topo, "frr", "192.0.2.13", FRR_CONFIG);
    let mut config = rib_config(addr(10));
    config.cluster_id = Some(CLUSTER);
    let clients = [11u8, 12, 13, 14].map(|c| {
        let mut s = session(addr(10), addr(c), AS, AS);
        s.add_path_send = true;
        (s, PeerSetup::new(PeerRole::RrClient, AS))
    });
    let rr = RibNode::start(&topo.ns("rr"), addr(10), config, clients.to_vec());
    let c1 = client_with(&topo, "c1", addr(11), true);
    let c2 = client_with(&topo, "c2", addr(12), true);
    let c3 = client_with(&topo, "c3", addr(14), true);
    let shared = net("10.244.9.0/26");
    c1.originate(shared);
    c2.originate(shared);

    // The reflector's own ECMP set: both clients.
    rr.wait_best(shared, &[addr(11), addr(12)], UP);
    // c3 learns both paths from the one reflector session: a two-next-hop set.
    c3.wait_best(shared, &[addr(11), addr(12)], UP);
    let paths = c3.paths(shared);
    assert_eq!(paths.len(), 2, "{paths:#?}");
    assert!(paths.iter().all(|p| p.peer == Some(IpAddr::from(addr(10))) && p.multipath), "{paths:#?}");
    let mut originators: Vec<_> = paths.iter().map(|p| p.originator_id).collect();
    originators.sort();
    assert_eq!(originators, vec![Some(addr(11)), Some(addr(12))]);
    // FRR too has both paths, both from the reflector.
    let both = vec![("192.0.2.11".to_string(), "192.0.2.10".to_string()), ("192.0.2.12".into(), "192.0.2.10".into())];
    wait_until("FRR to have both paths of 10.244.9.0/26", UP, || {
        (frr_paths(&topo, &frr, "10.244.9.0/26") == both).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", frr_paths(&topo, &frr, "10.244.9.0/26")));

    // One client stops: only its path goes, at c3 and at FRR.
    c2.withdraw(shared);
    c3.wait_best(shared, &[addr(11)], UP);
    let one = vec![("192.0.2.11".to_string(), "192.0.2.10".to_string())];
    wait_until("FRR to keep only c1's path", UP, || (frr_paths(&topo, &frr, "10.244.9.0/26") == one).then_some(()))
        .unwrap_or_else(|e| panic!("{e}: {:?}", frr_paths(&topo, &frr, "10.244.9.0/26")));
    // c3 never lost the prefix on the way: the remaining path was not withdrawn.
    assert!(c3.changes(shared).iter().all(|hops| !hops.is_empty()), "{:?}", c3.changes(shared));
}
