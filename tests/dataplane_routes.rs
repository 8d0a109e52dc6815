//! The route programmer against a real kernel, in a namespace of its own:
//! it writes exactly the desired routes, leaves other protocols' routes
//! alone, repairs drift, and restarts without touching anything.

use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tortie::dataplane::{DesiredRoute, NextHop, Programmer, ProgrammerConfig, Route, RouteKind, RouteTarget};
use tortie::netns::{Topology, run_in_namespace};
use tortie::testing::{json_subset, wait_until_async};

const PROTO: u8 = 116;

fn topology(label: &str) -> Topology {
    let mut t = Topology::new(label).unwrap();
    t.add_namespace("node").unwrap();
    t.add_namespace("peer").unwrap();
    t.add_veth(("node", "eth1", Some("192.168.7.1/24")), ("peer", "eth1", Some("192.168.7.2/24"))).unwrap();
    t
}

fn ifindex(t: &Topology, ns: &str, dev: &str) -> u32 {
    let v = t.exec_json(ns, &["ip", "-j", "link", "show", dev]).unwrap();
    v[0]["ifindex"].as_u64().unwrap() as u32
}

fn routes(t: &Topology) -> serde_json::Value {
    t.exec_json("node", &["ip", "-j", "route", "show", "proto", &PROTO.to_string()]).unwrap()
}

fn desired(dst: &str, target: RouteTarget, kind: RouteKind) -> DesiredRoute {
    DesiredRoute { route: Route { dst: dst.parse().unwrap(), target, mtu: None }, kind }
}

fn via(gw: &str, ifindex: u32, onlink: bool) -> NextHop {
    NextHop { gateway: gw.parse().unwrap(), ifindex: Some(ifindex), onlink }
}

fn config() -> ProgrammerConfig {
    ProgrammerConfig { protocol: PROTO, ..ProgrammerConfig::default() }
}

fn in_node<T: Send>(t: &Topology, f: impl std::future::Future<Output = T> + Send) -> T {
    run_in_namespace(&t.ns("node"), || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    })
    .unwrap()
}

fn the_routes(eth1: u32) -> Vec<DesiredRoute> {
    vec![
        desired("10.244.0.0/26", RouteTarget::Blackhole, RouteKind::Blackhole),
        desired("10.244.0.5/32", RouteTarget::Device { ifindex: eth1 }, RouteKind::LocalWorkload),
        desired("10.244.1.0/26", RouteTarget::Via(via("192.168.7.2", eth1, false)), RouteKind::RemoteDirect),
        desired("10.244.2.0/26", RouteTarget::Via(via("172.31.9.9", eth1, true)), RouteKind::RemoteIpip),
        desired(
            "10.244.3.0/26",
            RouteTarget::from_next_hops(vec![via("192.168.7.2", eth1, false), via("192.168.7.3", eth1, false)])
                .unwrap(),
            RouteKind::RemoteDirect,
        ),
    ]
}

#[test]
fn programs_desired_routes_and_leaves_other_protocols_alone() {
    let t = topology("dproutes");
    let eth1 = ifindex(&t, "node", "eth1");
    // A foreign route (static) and a stale route of ours from an earlier run.
    t.exec("node", &["ip", "route", "add", "10.50.0.0/24", "via", "192.168.7.2", "proto", "static"]).unwrap();
    t.exec("node", &["ip", "route", "add", "10.60.0.0/24", "via", "192.168.7.2", "proto", "116"]).unwrap();

    let stats = in_node(&t, async {
        let p = Programmer::start(config()).await.unwrap();
        for r in the_routes(eth1) {
            p.set(r).await;
        }
        p.flush().await;
        p.stats.clone()
    });
    assert_eq!(stats.adds.load(Ordering::Relaxed), 5);
    assert_eq!(stats.deletes.load(Ordering::Relaxed), 1, "the stale route of ours is removed");
    assert_eq!(stats.failures.load(Ordering::Relaxed), 0);

    let ours = routes(&t);
    json_subset(
        &json!([
            {"type": "blackhole", "dst": "10.244.0.0/26"},
            {"dst": "10.244.0.5", "dev": "eth1", "scope": "link"},
            {"dst": "10.244.1.0/26", "gateway": "192.168.7.2", "dev": "eth1"},
            {"dst": "10.244.2.0/26", "gateway": "172.31.9.9", "dev": "eth1", "flags": ["onlink"]},
            {"dst": "10.244.3.0/26", "nexthops": [{"gateway": "192.168.7.2"}, {"gateway": "192.168.7.3"}]},
        ]),
        &ours,
    )
    .unwrap();
    assert_eq!(ours.as_array().unwrap().len(), 5, "exactly our five routes: {ours}");
    let foreign = t.exec_json("node", &["ip", "-j", "route", "show", "proto", "static"]).unwrap();
    json_subset(&json!([{"dst": "10.50.0.0/24", "gateway": "192.168.7.2"}]), &foreign).unwrap();
}

#[test]
fn a_deleted_or_changed_route_of_ours_comes_back() {
    let t = topology("dpdrift");
    let eth1 = ifindex(&t, "node", "eth1");
    in_node(&t, async {
        let p = Programmer::start(config()).await.unwrap();
        for r in the_routes(eth1) {
            p.set(r).await;
        }
        p.flush().await;

        t.exec("node", &["ip", "route", "del", "10.244.1.0/26"]).unwrap();
        wait_until_async("the deleted route to be restored", Duration::from_secs(10), || async {
            json_subset(&json!([{"dst": "10.244.1.0/26", "gateway": "192.168.7.2"}]), &routes(&t)).ok()
        })
        .await
        .unwrap();
        assert!(p.stats.drift_repairs.load(Ordering::Relaxed) >= 1);

        // Someone points our route elsewhere (keeping our protocol): repaired too.
        t.exec(
            "node",
            &["ip", "route", "replace", "10.244.0.5/32", "via", "192.168.7.9", "dev", "eth1", "proto", "116"],
        )
        .unwrap();
        wait_until_async("the changed route to be restored", Duration::from_secs(10), || async {
            json_subset(&json!([{"dst": "10.244.0.5", "dev": "eth1", "scope": "link", "gateway": null}]), &routes(&t))
                .ok()
        })
        .await
        .unwrap();
    });
}

#[test]
fn restarting_changes_nothing_when_nothing_changed() {
    let t = topology("dprestart");
    let eth1 = ifindex(&t, "node", "eth1");
    in_node(&t, async {
        let p = Programmer::start(config()).await.unwrap();
        for r in the_routes(eth1) {
            p.set(r).await;
        }
        p.flush().await;
    });
    let before = routes(&t);
    let stats = in_node(&t, async {
        let p = Programmer::start(config()).await.unwrap();
        p.replace_kind(RouteKind::Blackhole, vec![the_routes(eth1)[0].clone()]).await;
        for r in the_routes(eth1).into_iter().skip(1) {
            p.set(r).await;
        }
        p.flush().await;
        p.stats.clone()
    });
    for (name, c) in [("adds", &stats.adds), ("replaces", &stats.replaces), ("deletes", &stats.deletes)] {
        assert_eq!(c.load(Ordering::Relaxed), 0, "{name}: a restart with the same desired state writes nothing");
    }
    assert_eq!(routes(&t), before);
}

#[test]
fn a_new_next_hop_replaces_the_route_in_place() {
    let t = topology("dpreplace");
    let eth1 = ifindex(&t, "node", "eth1");
    let stats = in_node(&t, async {
        let p = Programmer::start(config()).await.unwrap();
        p.set(desired("10.244.1.0/26", RouteTarget::Via(via("192.168.7.2", eth1, false)), RouteKind::RemoteDirect))
            .await;
        p.flush().await;
        p.set(desired("10.244.1.0/26", RouteTarget::Via(via("192.168.7.3", eth1, false)), RouteKind::RemoteDirect))
            .await;
        p.flush().await;
        p.remove("10.244.1.0/26".parse().unwrap(), RouteKind::RemoteDirect).await;
        p.set(desired("10.244.9.0/26", RouteTarget::Blackhole, RouteKind::Blackhole)).await;
        p.flush().await;
        p.stats.clone()
    });
    assert_eq!(stats.replaces.load(Ordering::Relaxed), 1);
    assert_eq!(stats.deletes.load(Ordering::Relaxed), 1);
    json_subset(&json!([{"dst": "10.244.9.0/26", "type": "blackhole"}]), &routes(&t)).unwrap();
    let dsts: Vec<String> =
        routes(&t).as_array().unwrap().iter().map(|r| r["dst"].as_str().unwrap().to_string()).collect();
    assert!(!dsts.contains(&"10.244.1.0/26".to_string()), "the removed route is gone: {dsts:?}");
}

#[test]
fn a_bulk_batch_lands_whole_and_drift_is_still_repaired_after_it() {
    let t = topology("dpbulk");
    let eth1 = ifindex(&t, "node", "eth1");
    in_node(&t, async {
        let p = Programmer::start(config()).await.unwrap();
        let bulk: Vec<DesiredRoute> = (0..20_000u32)
            .map(|i| {
                let dst = std::net::Ipv4Addr::from((100u32 << 24) | (64 << 16) | i);
                desired(
                    &format!("{dst}/32"),
                    RouteTarget::Via(via("192.168.7.2", eth1, false)),
                    RouteKind::RemoteDirect,
                )
            })
            .collect();
        p.replace_kind(RouteKind::RemoteDirect, bulk).await;
        p.flush().await;
        assert_eq!(p.stats.adds.load(Ordering::Relaxed), 20_000);
        assert_eq!(routes(&t).as_array().unwrap().len(), 20_000);

        // The monitor listens again after the bulk write.
        t.exec("node", &["ip", "route", "del", "100.64.0.7/32"]).unwrap();
        wait_until_async("the deleted route to be restored after a bulk batch", Duration::from_secs(10), || async {
            json_subset(&json!([{"dst": "100.64.0.7", "gateway": "192.168.7.2"}]), &routes(&t)).ok()
        })
        .await
        .unwrap();
    });
}

/// Routes streamed in as changes: small batches (the monitor listening, its
/// echo of our own writes overfilling the programmer's event queue) followed
/// at once by bulk batches (the monitor asked to pause). The programmer
/// waits for the pause while the monitor waits for queue space unless the
/// monitor keeps obeying: this hung a million-route convergence run.
#[test]
fn streamed_changes_mixing_small_and_bulk_batches_all_land() {
    let t = topology("dpstream");
    let eth1 = ifindex(&t, "node", "eth1");
    in_node(&t, async {
        let p = Programmer::start(config()).await.unwrap();
        let route = |i: u32| {
            let dst = std::net::Ipv4Addr::from((100u32 << 24) | (64 << 16) | i);
            let d = desired(
                &format!("{dst}/32"),
                RouteTarget::Via(via("192.168.7.2", eth1, false)),
                RouteKind::RemoteDirect,
            );
            (d.route.dst, Some(d))
        };
        let kinds = vec![RouteKind::RemoteDirect, RouteKind::RemoteIpip];
        let mut next = 0u32;
        for _ in 0..4 {
            let small: Vec<_> = (next..next + 8_000).map(route).collect();
            next += 8_000;
            p.update_kinds(kinds.clone(), small).await;
            p.applied().await;
            let bulk: Vec<_> = (next..next + 20_000).map(route).collect();
            next += 20_000;
            p.update_kinds(kinds.clone(), bulk).await;
        }
        tokio::time::timeout(Duration::from_secs(60), p.flush()).await.expect("the programmer keeps going");
        assert_eq!(p.stats.adds.load(Ordering::Relaxed), u64::from(next));
        // Half of them go again: the removals are incremental too.
        let gone: Vec<_> = (0..next / 2).map(|i| (route(i).0, None)).collect();
        p.update_kinds(kinds, gone).await;
        tokio::time::timeout(Duration::from_secs(60), p.flush()).await.expect("the programmer keeps going");
        assert_eq!(p.stats.deletes.load(Ordering::Relaxed), u64::from(next / 2));
        assert_eq!(p.state.borrow().routes_by_kind.get(&RouteKind::RemoteDirect), Some(&(next as usize / 2)));
    });
    let count = t.exec("node", &["sh", "-c", &format!("ip route show proto {PROTO} | wc -l")]).unwrap();
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "56000");
}

/// A batch larger than a chunk is written a chunk at a time while the
/// programmer keeps reading commands: thousands of single changes sent
/// during the write (more than the command channel holds) are taken at
/// once instead of queueing behind the batch, land after it, and
/// `applied` waits for all of them.
#[test]
fn commands_sent_while_a_large_batch_is_written_are_taken_at_once_and_land() {
    let t = topology("dpchunks");
    let eth1 = ifindex(&t, "node", "eth1");
    in_node(&t, async {
        let p = Programmer::start(config()).await.unwrap();
        p.flush().await;
        let host = |base: u32, i: u32| format!("{}/32", std::net::Ipv4Addr::from(base + i));
        let batch: Vec<DesiredRoute> = (0..100_000u32)
            .map(|i| {
                desired(
                    &host(0x6440_0000, i),
                    RouteTarget::Via(via("192.168.7.2", eth1, false)),
                    RouteKind::RemoteDirect,
                )
            })
            .collect();
        p.replace_kind(RouteKind::RemoteDirect, batch).await;
        for i in 0..6_000u32 {
            p.set(desired(
                &host(0x6450_0000, i),
                RouteTarget::Via(via("192.168.7.3", eth1, false)),
                RouteKind::RemoteIpip,
            ))
            .await;
        }
        let adds = p.stats.adds.load(Ordering::Relaxed);
        assert!(adds < 100_000, "all commands were taken while the batch was still being written ({adds} adds done)");
        p.applied().await;
        assert_eq!(p.stats.adds.load(Ordering::Relaxed), 106_000, "applied waits for everything sent before it");
        assert_eq!(p.stats.failures.load(Ordering::Relaxed), 0);
        let by_kind = p.state.borrow().routes_by_kind.clone();
        assert_eq!(by_kind.get(&RouteKind::RemoteDirect), Some(&100_000));
        assert_eq!(by_kind.get(&RouteKind::RemoteIpip), Some(&6_000));
    });
    let count = t.exec("node", &["sh", "-c", &format!("ip route show proto {PROTO} | wc -l")]).unwrap();
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), "106000");
}

#[test]
fn routes_stay_after_the_programmer_stops_unless_cleanup_is_asked() {
    let t = topology("dpcleanup");
    let eth1 = ifindex(&t, "node", "eth1");
    t.exec("node", &["ip", "route", "add", "10.50.0.0/24", "via", "192.168.7.2", "proto", "static"]).unwrap();
    in_node(&t, async {
        let p = Programmer::start(config()).await.unwrap();
        for r in the_routes(eth1) {
            p.set(r).await;
        }
        p.flush().await;
    });
    assert_eq!(routes(&t).as_array().unwrap().len(), 5, "dropping the programmer leaves the routes (graceful restart)");
    in_node(&t, async {
        let p = Programmer::start(config()).await.unwrap();
        p.remove_all().await;
    });
    assert_eq!(routes(&t).as_array().unwrap().len(), 0, "cleanup removes every route of ours");
    let foreign = t.exec_json("node", &["ip", "-j", "route", "show", "proto", "static"]).unwrap();
    assert_eq!(foreign.as_array().unwrap().len(), 1, "and nothing else");
}
