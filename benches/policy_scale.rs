//! Network policy at scale: 10 000 pods on 200 nodes (50 on the node programmed here) and
//! 1 000 policies of all three kinds. In a network namespace of its own it measures
//! (a) compiling from scratch and writing the table through the nftables owner,
//! (b) one pod relabelled, remote and local, and one policy changed, until the owner has
//! written the change, and
//! (c) the rules in the kernel against the same policy as kube-router-style per-pod iptables
//! rules (`iptables-nft-restore` in the same namespace, timed too).
//! Run as root: `cargo bench --bench policy_scale`; prints a table.

#[path = "policy_scale/iptables.rs"]
mod iptables;
#[path = "policy_scale/world.rs"]
mod world;

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tortie::dataplane::nftables::policy as nft_policy;
use tortie::dataplane::nftables::{NftCommand, NftTable, NftTableConfig, TABLE_NAME};
use tortie::netns::{Topology, run_in_namespace};
use tortie::policy::incremental::Incremental;
use tortie::policy::{Program, compile};
use world::World;

/// Relabels measured per case (alternating two values), for the median and the worst.
const RELABELS: usize = 7;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Rules and set elements in a listing of one table.
fn count(listing: &Value) -> (usize, usize, usize) {
    let objects = listing["nftables"].as_array().cloned().unwrap_or_default();
    let rules = objects.iter().filter(|o| o.get("rule").is_some()).count();
    let chains = objects.iter().filter(|o| o.get("chain").is_some()).count();
    let elements = objects.iter().filter_map(|o| o.get("set")?.get("elem")?.as_array().map(Vec::len)).sum();
    (rules, chains, elements)
}

/// CPU seconds used so far by this process (user and system: the kernel's work on its
/// netlink batches included) and by its finished children (`nft`, `iptables-nft-restore`): a
/// figure a loaded machine does not inflate, unlike the wall times.
fn cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    // After the command: state, ppid, … utime (11), stime (12), cutime (13), cstime (14).
    let at = |i: usize| fields.get(i).copied().unwrap_or(0.0) / tick;
    (at(11) + at(12), at(13) + at(14))
}

fn compile_world(w: &World) -> Program {
    compile(&w.policies, &w.endpoints, &w.namespaces, &w.local)
}

/// Compiles, renders and hands the section to the owner; returns once it is written.
async fn program(table: &NftTable, w: &World) -> (Duration, Duration) {
    let start = Instant::now();
    let program = compile_world(w);
    let section = nft_policy::section(&program).expect("renders");
    let compiled = start.elapsed();
    table.set_section(nft_policy::USER, section).await;
    assert!(table.probe().await, "the owner runs");
    let state = table.state.borrow().clone();
    assert!(state.synced, "written: {:?}", state.last_error);
    (compiled, start.elapsed())
}

/// The app label of pod `pod` at relabel `n`: alternately another app's and its own.
fn relabel(pod: usize, n: usize) -> usize {
    if n.is_multiple_of(2) { pod / world::NAMESPACES + 1 } else { pod / world::NAMESPACES }
}

/// An ingress rule allowing TCP 9999 from pods labelled `extra=N`, which no other rule uses.
fn extra_rule(n: usize) -> tortie::policy::model::Rule {
    use tortie::policy::model::{EndpointSelector, Entity, NamespaceScope, Rule};
    let selector = EndpointSelector { selector: format!("extra == \"{n}\""), namespaces: NamespaceScope::Any };
    Rule {
        action: tortie::datastore::resources::Action::Allow,
        ip_version: None,
        protocol: Some(6),
        not_protocol: None,
        icmp: None,
        not_icmp: None,
        source: Entity { selector: Some(selector), ..Entity::default() },
        destination: Entity {
            ports: vec![tortie::datastore::resources::policy_rule::PortMatch::Range(9999, 9999)],
            ..Entity::default()
        },
    }
}

struct Relabel {
    name: &'static str,
    pod: usize,
}

async fn bench() {
    let mut w = world::world();
    println!(
        "world: {} pods on {} nodes ({} local), {} namespaces, {} policies ({} Kubernetes, {} Calico, {} global)",
        world::PODS,
        world::NODES,
        world::PODS_PER_NODE,
        world::NAMESPACES,
        world::POLICIES,
        world::KUBERNETES,
        world::CALICO,
        world::POLICIES - world::KUBERNETES - world::CALICO
    );
    let config = NftTableConfig {
        name: TABLE_NAME.to_string(),
        users: vec![nft_policy::USER],
        resync_interval: Duration::from_secs(3600),
        command: NftCommand::default(),
        fingerprint: None,
    };
    let (table, _owner) = NftTable::start(config);

    // (a) From scratch.
    let cpu_before = cpu();
    let (compiled, total) = program(&table, &w).await;
    let cpu_after = cpu();
    println!(
        "(a) from scratch: compile+render {:.1} ms, written {:.1} ms in all; CPU {:.2} s (children {:.2} s)",
        ms(compiled),
        ms(total),
        cpu_after.0 - cpu_before.0,
        cpu_after.1 - cpu_before.1
    );
    // The same whole-table batch written again both ways, side by side.
    let desired = std::collections::BTreeMap::from([(
        nft_policy::USER,
        nft_policy::section(&compile_world(&w)).expect("renders"),
    )]);
    let batch = tortie::dataplane::nftables::render::replace_table(TABLE_NAME, &desired).expect("renders");
    for way in ["nfnetlink", "nft -j -f"] {
        let (c0, start) = (cpu(), Instant::now());
        match way {
            "nfnetlink" => NftCommand::default().apply_netlink(&batch).await.expect("written"),
            _ => NftCommand::default().apply_nft(&batch).await.expect("written"),
        }
        let (wall, c1) = (start.elapsed(), cpu());
        println!(
            "    the whole table written by {way}: {:.1} ms, CPU {:.2} s (this process) + {:.2} s (nft)",
            ms(wall),
            c1.0 - c0.0,
            c1.1 - c0.1
        );
    }
    let listing = NftCommand::default().list_table(TABLE_NAME).await.expect("lists").expect("exists");
    let (nft_rules, nft_chains, nft_elements) = count(&listing);

    kube_router(&w, (nft_rules, nft_chains, nft_elements), total);

    // (b) One pod relabelled: the follower's incremental path, and the full recompute it
    // replaced as the reference.
    let mut incremental = Incremental::new(w.policies.clone(), w.namespaces.clone(), world::entries(&w));
    let mut renderer = nft_policy::Renderer::default();
    let mut sent = renderer.section(incremental.program()).expect("renders");
    // The owner takes the incremental path's section (equal to the one written in (a)), as an
    // agent's owner has only its follower's sections: the relabels below share its sets.
    table.set_section(nft_policy::USER, sent.clone()).await;
    assert!(table.probe().await && table.state.borrow().synced, "written");
    let cases = [Relabel { name: "remote pod", pod: world::PODS - 1 }, Relabel { name: "local pod", pod: 0 }];
    for case in &cases {
        let mut times = Vec::new();
        let mut compute = Vec::new();
        let mut kinds = Vec::new();
        let stats = |t: &NftTable| {
            use std::sync::atomic::Ordering::Relaxed;
            let s = &t.stats;
            (s.applies.load(Relaxed), s.element_writes.load(Relaxed), s.partial_writes.load(Relaxed))
        };
        let before = stats(&table);
        for n in 0..RELABELS {
            let start = Instant::now();
            let mut entry = incremental.entries()[&world::key(case.pod)].clone();
            std::sync::Arc::make_mut(&mut entry.endpoint).labels.insert("app".into(), world::app(relabel(case.pod, n)));
            let change = incremental.update(&world::key(case.pod), Some(entry));
            if change.endpoints || change.recompiled {
                sent = renderer.section(incremental.program()).expect("renders");
            } else {
                nft_policy::refill_sets(&mut sent, incremental.program(), &change.sets);
            }
            compute.push(start.elapsed());
            kinds.push(if change.recompiled {
                "recompiled"
            } else if change.endpoints {
                "dispatch"
            } else {
                "sets"
            });
            table.set_section(nft_policy::USER, sent.clone()).await;
            assert!(table.probe().await && table.state.borrow().synced, "written");
            times.push(start.elapsed());
        }
        kinds.dedup();
        let worst = times.iter().max().copied().unwrap_or_default();
        let after = stats(&table);
        let (elements, partial) = (after.1 - before.1, after.2 - before.2);
        let whole = after.0 - before.0 - elements - partial;
        println!(
            "(b) {} relabelled (incremental, {}; written: {elements} as elements, {partial} in part, {whole} whole): median {:.2} ms (computed in {:.2} ms), worst {:.2} ms",
            case.name,
            kinds.join("/"),
            ms(median(times)),
            ms(median(compute)),
            ms(worst)
        );
    }
    // (b) One policy changed: alternately given an extra ingress rule from a selector no
    // policy uses yet (a set filled from every pod) and back.
    let changed = world::policy(world::POLICIES - 1);
    let (mut times, mut compute, mut compiled) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..RELABELS {
        let mut policy = changed.clone();
        if n.is_multiple_of(2) {
            policy.ingress.get_or_insert_default().push(extra_rule(n));
        }
        let start = Instant::now();
        incremental.set_policy(&changed.name, Some(policy));
        compiled.push(start.elapsed());
        sent = renderer.section(incremental.program()).expect("renders");
        compute.push(start.elapsed());
        table.set_section(nft_policy::USER, sent.clone()).await;
        assert!(table.probe().await && table.state.borrow().synced, "written");
        times.push(start.elapsed());
    }
    println!(
        "(b) one policy changed (compiled alone): median {:.2} ms (computed in {:.2} ms, compiled in {:.2} ms), worst {:.2} ms",
        ms(median(times.clone())),
        ms(median(compute)),
        ms(median(compiled)),
        ms(times.iter().max().copied().unwrap_or_default())
    );
    for case in &cases {
        let mut times = Vec::new();
        let mut compile_times = Vec::new();
        for n in 0..1 {
            let endpoint = w.endpoints.iter_mut().find(|e| e.name == world::pod(case.pod).name).expect("the pod");
            endpoint.labels.insert("app".into(), world::app(relabel(case.pod, n + 1)));
            let (compiled, total) = program(&table, &w).await;
            times.push(total);
            compile_times.push(compiled);
        }
        println!(
            "    {} relabelled (full recompute, the reference): median {:.1} ms (compile+render {:.1} ms)",
            case.name,
            ms(median(times)),
            ms(median(compile_times)),
        );
    }

    // Where the owner's time goes: reading the table back after each write.
    let start = Instant::now();
    NftCommand::default().list_table(TABLE_NAME).await.expect("lists");
    println!("    reading the table back (nft -j list table): {:.1} ms", ms(start.elapsed()));
    let (c0, start) = (cpu(), Instant::now());
    let counters = NftCommand::default().rule_counters(TABLE_NAME).await.expect("dumps");
    let (wall, c1) = (start.elapsed(), cpu());
    println!(
        "    reading the rules' counters (netlink dump, {} rules): {:.1} ms, CPU {:.3} s",
        counters.values().map(Vec::len).sum::<usize>(),
        ms(wall),
        c1.0 - c0.0
    );
}

fn main() {
    // `cargo bench` passes --bench; a plain run of the binary as a test does nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let mut topology = Topology::new("polscale").expect("a topology");
    let namespace = topology.add_namespace("n").expect("a namespace");
    run_in_namespace(&namespace, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(bench());
    })
    .expect("enters the namespace");
}

/// (c) kube-router's layout, against tortie's table as written in (a).
fn kube_router(w: &World, nft: (usize, usize, usize), total: Duration) {
    let (nft_rules, nft_chains, nft_elements) = nft;
    let program = compile_world(w);
    let input = iptables::restore_input(&program);
    let written = input.lines().filter(|l| l.starts_with("-A ")).count();
    let start = Instant::now();
    let mut child = Command::new("iptables-nft-restore")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("iptables-nft-restore runs");
    // It stops reading at its first error; that error is what matters then.
    let _ = child.stdin.take().expect("stdin").write_all(input.as_bytes());
    let out = child.wait_with_output().expect("waits");
    let restore = start.elapsed();
    assert!(out.status.success(), "iptables-nft-restore: {}", String::from_utf8_lossy(&out.stderr));
    let listing = Command::new("nft").args(["-j", "list", "table", "ip", "filter"]).output().expect("nft runs");
    let listing: Value = serde_json::from_slice(&listing.stdout).expect("nft JSON");
    let (ipt_rules, ipt_chains, _) = count(&listing);
    println!("(c) in the kernel:");
    println!("    {:<34} {:>8} {:>8} {:>12} {:>12}", "", "rules", "chains", "set elements", "written in");
    println!(
        "    {:<34} {:>8} {:>8} {:>12} {:>9.1} ms",
        "tortie (inet tortie)",
        nft_rules,
        nft_chains,
        nft_elements,
        ms(total)
    );
    println!(
        "    {:<34} {:>8} {:>8} {:>12} {:>9.1} ms",
        "kube-router style (ip filter)",
        ipt_rules,
        ipt_chains,
        0,
        ms(restore)
    );
    println!("    iptables rules written: {written}; ratio {:.1}x", ipt_rules as f64 / nft_rules.max(1) as f64);
}
