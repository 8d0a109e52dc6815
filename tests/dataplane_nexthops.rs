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
    ProgrammerConfig { protocol: PROTO, nexthop_objects, ..ProgrammerConfig::default() }
}

fn in_node<T: Send>(t: &Topology, f: impl std::future::Future<Output = T> + Send) -> T {
    run_in_namespace(&t.ns("node"), || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    })
    .unwrap()
}

/// Starts a programmer, wants `routes` and waits until they are written.
fn program(t: &Topology, nexthop_objects: bool, routes: Vec<DesiredRoute>) {
    in_node(t, async {
        let p = Programmer::start(config(nexthop_objects)).await.unwrap();
        for r in routes {
            p.set(r).await;
        }
        p.flush().await;
    });
}

/// Three routes via 192.168.7.2, one onlink via 172.31.9.9, and shapes
/// that name no single gateway (device, blackhole, ECMP).
fn the_routes(eth1: u32) -> Vec<DesiredRoute> {
    let mut r: Vec<DesiredRoute> = (1..=3)
        .map(|i| route_to(&format!("10.244.{i}.0/26"), via("192.168.7.2", eth1, false), RouteKind::RemoteDirect))
        .collect();
    r.push(route_to("10.244.9.0/26", via("172.31.9.9", eth1, true), RouteKind::RemoteIpip));
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
    program(&t, true, the_routes(eth1));
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

    // A restart adopts the objects and writes nothing for the routes it
    // still wants; the onlink route it no longer wants is deleted.
    let written = in_node(&t, async {
        let p = Programmer::start(config(true)).await.unwrap();
        for r in the_routes(eth1).into_iter().filter(|r| r.route.dst.to_string() != "10.244.9.0/26") {
            p.set(r).await;
        }
        p.flush().await;
        let written =
            [&p.stats.adds, &p.stats.replaces, &p.stats.deletes].map(|c| c.load(std::sync::atomic::Ordering::Relaxed));
        p.set(route_to("10.244.5.0/26", via("192.168.7.2", eth1, false), RouteKind::RemoteDirect)).await;
        p.flush().await;
        written
    });
    assert_eq!(written, [0, 0, 1], "adds, replaces, deletes: only the unwanted onlink route goes");
    assert_eq!(nhid_of(&routes(&t), "10.244.5.0/26"), Some(shared), "a new route uses the adopted object");
    assert_eq!(our_nexthops(&t).len(), 2, "no dump ran since the onlink route went: its object is still there");
    // The next run's first dump finds the onlink object unused and deletes it.
    in_node(&t, async {
        let p = Programmer::start(config(true)).await.unwrap();
        for r in the_routes(eth1).into_iter().filter(|r| r.route.dst.to_string() != "10.244.9.0/26") {
            p.set(r).await;
        }
        p.flush().await;
    });
    let objects = our_nexthops(&t);
    assert_eq!(objects.len(), 1, "the onlink object is gone, the shared one stays: {objects:?}");
    assert_eq!(objects[0]["id"].as_u64(), Some(shared));
    // Cleanup takes the routes, then (one more dump: the routes still used
    // the object when this run started) the objects.
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
        assert_eq!(nhid_of(&routes(&t), "10.244.1.0/26"), Some(FIRST_ID + 1), "ours took the next id");
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
    program(&t, false, the_routes(eth1));
    let ours = routes(&t);
    json_subset(&json!([{"dst": "10.244.1.0/26", "gateway": "192.168.7.2", "dev": "eth1"}]), &ours).unwrap();
    assert!(ours.as_array().unwrap().iter().all(|r| r.get("nhid").is_none()), "{ours}");
    assert_eq!(our_nexthops(&t), Vec::<Value>::new());
}

/// Losing carrier makes the kernel delete the nexthop objects on that link
/// and, silently, every route using them, where a route naming its next
/// hop would stay (marked linkdown). The programmer notices the link and
/// writes the routes again, naming their next hop, since no object can be
/// made on a link without carrier; they keep working once carrier is back.
#[test]
fn routes_come_back_after_the_link_of_their_object_loses_carrier() {
    let t = topology("nhcarrier");
    let eth1 = ifindex(&t, "eth1");
    let dsts = (1..=3).map(|i| format!("10.244.{i}.0/26")).collect::<Vec<_>>();
    let present = |now: &Value| dsts.iter().all(|d| now.as_array().unwrap().iter().any(|r| r["dst"] == json!(d)));
    let carrier = |t: &Topology| {
        let link = t.exec_json("node", &["ip", "-j", "link", "show", "eth1"]).unwrap();
        !link[0]["flags"].as_array().unwrap().contains(&json!("NO-CARRIER"))
    };
    in_node(&t, async {
        let p = Programmer::start(config(true)).await.unwrap();
        for r in the_routes(eth1).into_iter().take(3) {
            p.set(r).await;
        }
        p.flush().await;
        let now = routes(&t);
        assert!(dsts.iter().all(|d| nhid_of(&now, d).is_some()), "written by nexthop id: {now}");
        // The peer's end going down takes our end's carrier.
        t.exec("peer", &["ip", "link", "set", "eth1", "down"]).unwrap();
        wait_until_async("eth1 to lose carrier", Duration::from_secs(10), || async { (!carrier(&t)).then_some(()) })
            .await
            .unwrap();
        wait_until_async("the routes rewritten with their next hop", Duration::from_secs(10), || async {
            let now = routes(&t);
            (present(&now) && dsts.iter().all(|d| nhid_of(&now, d).is_none())).then_some(())
        })
        .await
        .unwrap();
        assert_eq!(our_nexthops(&t), Vec::<Value>::new(), "the kernel deleted the object");
        t.exec("peer", &["ip", "link", "set", "eth1", "up"]).unwrap();
        wait_until_async("carrier back", Duration::from_secs(10), || async { carrier(&t).then_some(()) })
            .await
            .unwrap();
        p.applied().await;
    });
    json_subset(
        &json!([
            {"dst": "10.244.1.0/26", "gateway": "192.168.7.2", "dev": "eth1", "flags": []},
            {"dst": "10.244.2.0/26", "gateway": "192.168.7.2", "dev": "eth1", "flags": []},
            {"dst": "10.244.3.0/26", "gateway": "192.168.7.2", "dev": "eth1", "flags": []},
        ]),
        &routes(&t),
    )
    .unwrap();
}
