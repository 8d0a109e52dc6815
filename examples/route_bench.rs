//! Route programming throughput of tortie's dataplane, for `bench/fib.sh`.
//!
//! Run inside a namespace that has `dev` with a route to `gw` (the script
//! sets it up): `route_bench N dev gw [nhid|plain]`. Adds N routes
//! `100.64.x.y/32 via gw dev dev proto 116` (written by nexthop object
//! unless `plain`, as the agent does by default) through the programmer as one
//! desired-state change, waits until the kernel has them all, then removes
//! them all; prints `route_bench op=add|del n=N secs=S rate=R`, then the
//! process's memory: `route_bench op=memory n=N base_kib=… rss_kib=… hwm_kib=…`
//! (VmRSS before the routes were built, VmRSS at the end, VmHWM = peak;
//! `op=verify-add` also shows VmRSS while the programmer holds all N).

use std::time::{Duration, Instant};
use tortie::dataplane::{DesiredRoute, NextHop, Programmer, ProgrammerConfig, Route, RouteKind, RouteTarget};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u32 = args.get(1).and_then(|s| s.parse().ok()).expect("usage: route_bench N DEV GW");
    let dev = args.get(2).expect("usage: route_bench N DEV GW");
    let gw: std::net::IpAddr = args.get(3).and_then(|s| s.parse().ok()).expect("usage: route_bench N DEV GW");
    let ifindex = std::fs::read_to_string(format!("/sys/class/net/{dev}/ifindex"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("DEV must exist in this namespace");
    let base_kib = vm_kib("VmRSS");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let routes: Vec<DesiredRoute> = (0..n)
            .map(|i| {
                let addr = std::net::Ipv4Addr::from((100u32 << 24) | (64 << 16) | i);
                DesiredRoute {
                    route: Route {
                        dst: ipnetwork::IpNetwork::new(addr.into(), 32).unwrap(),
                        target: RouteTarget::Via(NextHop { gateway: gw, ifindex: Some(ifindex), onlink: false }),
                        mtu: None,
                    },
                    kind: RouteKind::RemoteDirect,
                }
            })
            .collect();
        let nexthop_objects = args.get(4).map(String::as_str) != Some("plain");
        let config =
            ProgrammerConfig { table: 254, protocol: 116, resync_interval: Duration::from_secs(3600), nexthop_objects };
        let p = Programmer::start(config).await.expect("programmer starts");
        p.flush().await;
        let t0 = Instant::now();
        p.replace_kind(RouteKind::RemoteDirect, routes).await;
        p.flush().await;
        report("add", n, t0.elapsed(), &p);
        // Outside the timing: the kernel really holds them.
        let sel = tortie::dataplane::netlink::RouteScopeSel { table: 254, protocol: 116 };
        // Counted as they stream in: holding the dump would weigh on the peak RSS reported below.
        let count = || {
            let mut n = 0usize;
            tortie::dataplane::netlink::RouteSocket::open()
                .and_then(|mut s| s.dump_each(sel, |_| n += 1))
                .map_or(0, |()| n)
        };
        // The routes are held by the programmer alone now (the input was consumed).
        println!("route_bench op=verify-add n={n} kernel_routes={} rss_kib={}", count(), vm_kib("VmRSS"));
        let t0 = Instant::now();
        p.replace_kind(RouteKind::RemoteDirect, Vec::new()).await;
        p.flush().await;
        report("del", n, t0.elapsed(), &p);
        println!("route_bench op=verify-del n={n} kernel_routes={}", count());
    });
    println!("route_bench op=memory n={n} base_kib={base_kib} rss_kib={} hwm_kib={}", vm_kib("VmRSS"), vm_kib("VmHWM"));
}

/// A `/proc/self/status` figure in KiB (0 when unavailable).
fn vm_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn report(op: &str, n: u32, elapsed: Duration, p: &Programmer) {
    let failures = p.stats.failures.load(std::sync::atomic::Ordering::Relaxed);
    let secs = elapsed.as_secs_f64();
    println!("route_bench op={op} n={n} secs={secs:.3} rate={:.0} failures={failures}", f64::from(n) / secs);
}
