//! Routes written by kernel nexthop object (`nhid`), against a real kernel
//! in a namespace of its own: one object of ours per next hop, shared by
//! its routes; deleted only when no route of ours uses it; an object
//! deleted behind our back (which silently takes its routes with it) is
//! noticed and everything comes back; somebody else's ids are left alone;
//! and switched off, routes name their next hop as before.

use serde_json::{Value, json};
use std::time::Duration;
use tortie::dataplane::{DesiredRoute, NextHop, Programmer, ProgrammerConfig, Route, RouteKind, RouteTarget};
use tortie::netns::{Topology, run_in_namespace};
use tortie::testing::{json_subset, wait_until_async};

const PROTO: u8 = 116;
/// The first id tortie picks (`dataplane::nexthops::FIRST_ID`).
const FIRST_ID: u64 = 0x7454_0000;

fn topology(label: &str) -> Topology {
    let mut t = Topology::new(label).unwrap();
    t.add_namespace("node").unwrap();
    t.add_namespace("peer").unwrap();
    t.add_veth(("node", "eth1", Some("192.168.7.1/24")), ("peer", "eth1", Some("192.168.7.2/24"))).unwrap();
    t
}

fn ifindex(t: &Topology, dev: &str) -> u32 {
    let v = t.exec_json("node", &["ip", "-j", "link", "show", dev]).unwrap();
    v[0]["ifindex"].as_u64().unwrap() as u32
}

fn routes(t: &Topology) -> Value {
    t.exec_json("node", &["ip", "-j", "route", "show", "proto", &PROTO.to_string()]).unwrap()
}

/// Our nexthop objects (`ip -j nexthop` prints the protocol number).
fn our_nexthops(t: &Topology) -> Vec<Value> {
    let all = t.exec_json("node", &["ip", "-j", "nexthop", "show"]).unwrap();
    all.as_array().unwrap().iter().filter(|o| o["protocol"] == json!(PROTO.to_string())).cloned().collect()
}

fn route_to(dst: &str, target: RouteTarget, kind: RouteKind) -> DesiredRoute {
    DesiredRoute { route: Route { dst: dst.parse().unwrap(), target, mtu: None }, kind }
}

fn via(gw: &str, ifindex: u32, onlink: bool) -> RouteTarget {
    RouteTarget::Via(NextHop { gateway: gw.parse().unwrap(), ifindex: Some(ifindex), onlink })
}

fn config(nexthop_objects: bool) -> ProgrammerConfig {
    ProgrammerConfig { table: 254, protocol: PROTO, resync_interval: Duration::from_secs(90), nexthop_objects }
}

fn in_node<T: Send>(t: &Topology, f: impl std::future::Future<Output = T> + Send) -> T {
    run_in_namespace(&t.ns("node"), || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    })
    .unwrap()
}

/// Three routes via 192.168.7.2, one onlink via 172.31.9.9, and shapes
/// that name no single gateway (device, blackhole, ECMP).
fn the_routes(eth1: u32) -> Vec<DesiredRoute> {
    let mut r: Vec<DesiredRoute> = (1..=3)
        .map(|i| route_to(&format!("10.244.{i}.0/26"), via("192.168.7.2", eth1, false), RouteKind::RemoteDirect))
        .collect();
    r.push(route_to("10.244.9.0/26", via("172.31.9.9", eth1, true), RouteKind::RemoteTunnel));
    r.push(route_to("10.244.0.5/32", RouteTarget::Device { ifindex: eth1 }, RouteKind::LocalWorkload));
    r.push(route_to("10.244.0.0/26", RouteTarget::Blackhole, RouteKind::Blackhole));
    let hop = |gw: &str| NextHop { gateway: gw.parse().unwrap(), ifindex: Some(eth1), onlink: false };
    r.push(route_to(
        "10.244.4.0/26",
        RouteTarget::from_next_hops(vec![hop("192.168.7.2"), hop("192.168.7.3")]).unwrap(),
        RouteKind::RemoteDirect,
    ));
    r
}

fn nhid_of(routes: &Value, dst: &str) -> Option<u64> {
    routes.as_array().unwrap().iter().find(|r| r["dst"] == json!(dst)).and_then(|r| r["nhid"].as_u64())
}

#[test]
fn routes_with_one_next_hop_share_an_object_of_ours_and_unused_objects_go() {
    let t = topology("nhshare");
    let eth1 = ifindex(&t, "eth1");
    in_node(&t, async {
        let p = Programmer::start(config(true)).await.unwrap();
        for r in the_routes(eth1) {
            p.set(r).await;
        }
        p.flush().await;
    });
    let objects = our_nexthops(&t);
    json_subset(
        &json!([
            {"gateway": "192.168.7.2", "dev": "eth1", "flags": []},
            {"gateway": "172.31.9.9", "dev": "eth1", "flags": ["onlink"]},
        ]),
        &json!(objects),
    )
    .unwrap();
    assert_eq!(objects.len(), 2, "one object per next hop: {objects:?}");
    let ours = routes(&t);
    json_subset(
        &json!([
            {"dst": "10.244.1.0/26", "gateway": "192.168.7.2", "dev": "eth1"},
            {"dst": "10.244.9.0/26", "gateway": "172.31.9.9", "flags": ["onlink"]},
            {"dst": "10.244.4.0/26", "nexthops": [{"gateway": "192.168.7.2"}, {"gateway": "192.168.7.3"}]},
        ]),
        &ours,
    )
    .unwrap();
    let shared = nhid_of(&ours, "10.244.1.0/26").expect("written by nexthop id");
    assert!(shared >= FIRST_ID);
    for dst in ["10.244.2.0/26", "10.244.3.0/26"] {
        assert_eq!(nhid_of(&ours, dst), Some(shared), "{dst} shares the object");
    }
    for dst in ["10.244.0.5", "10.244.0.0/26", "10.244.4.0/26"] {
        assert_eq!(nhid_of(&ours, dst), None, "{dst} names no single gateway");
    }

    // A restart adopts the objects and rewrites nothing; once the onlink
    // route is no longer wanted, its object goes at the next full dump.
    let adds = in_node(&t, async {
        let p = Programmer::start(config(true)).await.unwrap();
        for r in the_routes(eth1).into_iter().filter(|r| r.route.dst.to_string() != "10.244.9.0/26") {
            p.set(r).await;
        }
        p.flush().await;
        let adds = p.stats.adds.load(std::sync::atomic::Ordering::Relaxed);
        // The next full dump (the remove_all below ends with one) collects it.
        p.set(route_to("10.244.5.0/26", via("192.168.7.2", eth1, false), RouteKind::RemoteDirect)).await;
        p.flush().await;
        adds
    });
    assert_eq!(adds, 0, "a restart with the same routes writes nothing");
    assert_eq!(nhid_of(&routes(&t), "10.244.5.0/26"), Some(shared), "a new route uses the adopted object");
    in_node(&t, async {
        let p = Programmer::start(config(true)).await.unwrap();
        p.remove("10.244.5.0/26".parse().unwrap(), RouteKind::RemoteDirect).await;
        p.flush().await;
    });
    let objects = our_nexthops(&t);
    assert_eq!(objects.len(), 1, "the onlink object is gone, the shared one stays: {objects:?}");
    assert_eq!(objects[0]["id"].as_u64(), Some(shared));
    // Cleanup takes the routes, then the objects.
    in_node(&t, async {
        Programmer::start(config(true)).await.unwrap().remove_all().await;
    });
    assert_eq!(routes(&t).as_array().unwrap().len(), 0);
    assert_eq!(our_nexthops(&t), Vec::<Value>::new(), "no object of ours is left");
}

#[test]
fn an_object_deleted_behind_our_back_and_its_routes_come_back() {
    let t = topology("nhgone");
    let eth1 = ifindex(&t, "eth1");
    in_node(&t, async {
        let p = Programmer::start(config(true)).await.unwrap();
        for r in the_routes(eth1) {
            p.set(r).await;
        }
        p.flush().await;
        let id = nhid_of(&routes(&t), "10.244.1.0/26").expect("written by nexthop id");
        // The kernel takes the three routes using it along, and says so
        // only about the object.
        t.exec("node", &["ip", "nexthop", "del", "id", &id.to_string()]).unwrap();
        wait_until_async("the three routes back on a new object", Duration::from_secs(10), || async {
            let now = routes(&t);
            let ids: Vec<Option<u64>> = (1..=3).map(|i| nhid_of(&now, &format!("10.244.{i}.0/26"))).collect();
            (ids.iter().all(|n| n.is_some_and(|n| n != id)) && ids.windows(2).all(|w| w[0] == w[1])).then_some(())
        })
        .await
        .unwrap();
    });
    json_subset(&json!([{"gateway": "192.168.7.2", "dev": "eth1"}]), &json!(our_nexthops(&t))).unwrap();
}

#[test]
fn somebody_elses_nexthop_ids_are_left_alone() {
    let t = topology("nhforeign");
    let eth1 = ifindex(&t, "eth1");
    // An object at the id tortie would pick first, pointing elsewhere.
    t.exec("node", &["ip", "nexthop", "add", "id", &FIRST_ID.to_string(), "via", "192.168.7.3", "dev", "eth1"])
        .unwrap();
    in_node(&t, async {
        let p = Programmer::start(config(true)).await.unwrap();
        p.set(route_to("10.244.1.0/26", via("192.168.7.2", eth1, false), RouteKind::RemoteDirect)).await;
        p.flush().await;
        p.remove_all().await;
    });
    let all = t.exec_json("node", &["ip", "-j", "nexthop", "show"]).unwrap();
    json_subset(&json!([{"id": FIRST_ID, "gateway": "192.168.7.3"}]), &all).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 1, "ours came and went, theirs stays: {all}");
}

#[test]
fn switched_off_routes_name_their_next_hop() {
    let t = topology("nhoff");
    let eth1 = ifindex(&t, "eth1");
    in_node(&t, async {
        let p = Programmer::start(config(false)).await.unwrap();
        for r in the_routes(eth1) {
            p.set(r).await;
        }
        p.flush().await;
    });
    let ours = routes(&t);
    json_subset(&json!([{"dst": "10.244.1.0/26", "gateway": "192.168.7.2", "dev": "eth1"}]), &ours).unwrap();
    assert!(ours.as_array().unwrap().iter().all(|r| r.get("nhid").is_none()), "{ours}");
    assert_eq!(our_nexthops(&t), Vec::<Value>::new());
}
