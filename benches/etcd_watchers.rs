//! The datastore at cluster size: many agents' watches of IPAM blocks on one etcd, simulated in
//! one process. Each simulated agent is what `tortie node` has on the etcd datastore: its own
//! `EtcdBackend` (one etcd client, one HTTP/2 connection) and its block watches through
//! `Datastore::watch::<IpamBlock>`, each its own gRPC watch stream on that connection. The store
//! holds one /26 block per agent, 10 addresses of each allocated.
//!
//! Per case (a fresh etcd each): the agents connect and open their watches (each starting with
//! the resync listing, as the agent's do), sit idle for a while, then one block record is updated
//! `writes` times, one write at a time. For each write: the time from just before the write to
//! every watch having the event (`seen`), and with `react` to every agent having done what the
//! agent does on a block event (`reacted`): its first watch is the agent's picture of the blocks
//! (`agent::blocks`), which applies the event, computes the node's local prefixes from the
//! picture at once (`agent::routes`) and its pool usage after the 2 s rate limit from the
//! pools it read at start (`agent::usage`, from the agent's pools picture); any other watch (a consumer with a stream of its own, as the
//! policy follower had) uses the event as it is. Also etcd's CPU seconds and RSS (from /proc)
//! while idle and over the writes, this process's CPU, and the 1-minute load average.
//!
//! `cargo bench --bench etcd_watchers`; `TORTIE_BENCH_WATCH_CASES` picks the cases, each
//! `AGENTSxWATCHES[r]` (`r`: the agents react), default `1x1,1000x1,1000x2,250x1r` (an agent with
//! BGP has one block watch, its picture, which every consumer of the blocks computes from; a
//! second watch stands for one more consumer with a stream of its own, as the policy follower
//! had; each reacting agent's picture holds every block decoded, up to about 12 MB here, so 250
//! of them share this process, not 1 000).

#[path = "../tests/datastore_support/etcd_process.rs"]
#[allow(dead_code)] // the benchmark never restarts etcd
mod etcd_process;

use etcd_process::EtcdProcess;
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tortie::agent::blocks::KnownBlocks;
use tortie::datastore::etcd::{EtcdBackend, EtcdOptions};
use tortie::datastore::resources::{AllocationAttribute, IpPool, IpamBlock, cidr_name};
use tortie::datastore::{Datastore, Revision, Transaction, WatchEvent};
use tortie::ipam::claim::host_affinity;

/// Blocks in the store: one per simulated node.
const BLOCKS: usize = 1000;
/// Allocated addresses per block.
const ALLOCATED: usize = 10;
/// Writes per case; fewer when the agents react (each write waits out the usage rate limit).
const WRITES: usize = 100;
const REACT_WRITES: usize = 10;
/// How long the agents sit idle with their watches open before the writes.
const IDLE: Duration = Duration::from_secs(20);
/// How long one write may take to reach (and be handled by) everyone.
const DEADLINE: Duration = Duration::from_secs(120);
/// Agents connecting and opening their watches at once.
const OPENING: usize = 32;
/// The pool-usage task's rate limit (`agent::usage`).
const USAGE_RATE_LIMIT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug)]
struct Case {
    agents: usize,
    watches: usize,
    react: bool,
}

impl Case {
    fn parse(text: &str) -> Option<Case> {
        let (agents, rest) = text.split_once('x')?;
        let (watches, react) = match rest.strip_suffix('r') {
            Some(w) => (w, true),
            None => (rest, false),
        };
        let case = Case { agents: agents.parse().ok()?, watches: watches.parse().ok()?, react };
        (case.agents > 0 && case.watches > 0 && case.agents <= BLOCKS).then_some(case)
    }
}

/// What one watch of one agent does with a block event, by its index among the agent's watches.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    /// `agent::blocks`: the picture of the blocks, kept from the events; the local prefixes
    /// computed from it at once, the pool usage after its rate limit.
    Picture,
    /// A consumer with a watch of its own (as `agent::policy::follow` had): uses the event itself.
    EventOnly,
}

fn role(index: usize) -> Role {
    match index {
        0 => Role::Picture,
        _ => Role::EventOnly,
    }
}

enum Report {
    Seen(u64, Instant),
    Done(u64, Instant),
    Resync,
    Error,
}

fn block(i: usize) -> (String, IpamBlock) {
    let base = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0)) + 64 * i as u32;
    let cidr: ipnetwork::IpNetwork = format!("{}/26", std::net::Ipv4Addr::from(base)).parse().unwrap();
    let node = format!("node-{i}");
    let mut b = IpamBlock::empty(cidr, Some(host_affinity(&node)));
    for ordinal in 0..ALLOCATED {
        let handle = format!("k8s-pod-network.{i:04}{ordinal:02}0123456789abcdef0123456789abcdef0123456789abcdef");
        b.allocations[ordinal] = Some(ordinal as u32);
        b.attributes.push(AllocationAttribute {
            handle_id: Some(handle),
            secondary: tortie::datastore::resources::PackedMap::from([
                ("namespace".to_string(), "default".to_string()),
                ("node".to_string(), node.clone()),
                ("pod".to_string(), format!("web-{i}-{ordinal}-7d9f8c6b5-x2k4q")),
                ("timestamp".to_string(), "2026-12-07 06:00:00.000000000 +0000 UTC".to_string()),
            ]),
            ..Default::default()
        });
        b.sequence_number_for_allocation.insert(ordinal.to_string(), ordinal as u64);
    }
    b.unallocated.retain(|o| *o as usize >= ALLOCATED);
    b.sequence_number = ALLOCATED as u64;
    (cidr_name(&cidr), b)
}

/// CPU seconds (user + system) and RSS / peak RSS in MiB of a process.
#[derive(Clone, Copy, Default)]
struct Usage {
    cpu: f64,
    rss: f64,
    hwm: f64,
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn usage(pid: &str, ticks: f64) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: state is the first, utime the 12th.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Usage { cpu: (tick(11) + tick(12)) / ticks, rss: kib("VmRSS:") / 1024.0, hwm: kib("VmHWM:") / 1024.0 }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

/// The local ports of this machine's TCP connections to `port` (the clients' connections to etcd).
fn client_ports(port: u16) -> HashSet<String> {
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let remote = format!(":{port:04X}");
    tcp.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let local = f.nth(1)?;
            let peer = f.next()?;
            // State 01: established.
            (peer.ends_with(&remote) && f.next() == Some("01")).then(|| local.to_string())
        })
        .collect()
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// One agent's watches: each task reports what it saw and did.
async fn agent(
    endpoint: String,
    node: String,
    case: Case,
    reports: mpsc::UnboundedSender<Report>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let ds = Datastore::new(EtcdBackend::connect(EtcdOptions::new(vec![endpoint])).await.expect("etcd backend"));
    let target = block(0).0;
    let mut opened = Vec::new();
    for index in 0..case.watches {
        let mut watch = ds.watch::<IpamBlock>(None).await.expect("watch");
        // The first event is the resync listing, as for the agent's own watches.
        let known = match watch.next().await {
            // Only the picture keeps what it listed (a decoded block is several times its JSON).
            Some(Ok(WatchEvent::Resync(listing))) if case.react && role(index) == Role::Picture => {
                KnownBlocks::from_listing(listing.items)
            }
            Some(Ok(WatchEvent::Resync(_))) => KnownBlocks::default(),
            _ => panic!("a watch without a revision starts with a resync"),
        };
        opened.push((index, watch, known));
    }
    // The agent's pools picture (`routes::follow_pools`): read once here, kept from its own
    // watch in the agent, so a block event reads nothing.
    let pools: Vec<IpPool> = ds.list::<IpPool>().await.expect("pools").items.into_iter().map(|p| p.spec).collect();
    let mut tasks = Vec::new();
    for (index, mut watch, mut known) in opened {
        let (node, reports, target, pools) = (node.clone(), reports.clone(), target.clone(), pools.clone());
        let role = if case.react { role(index) } else { Role::EventOnly };
        tasks.push(tokio::spawn(async move {
            while let Some(event) = watch.next().await {
                let revision = match &event {
                    Ok(WatchEvent::Modified(b)) if b.name == target => Some(b.revision.0),
                    Ok(WatchEvent::Resync(_)) => {
                        let _ = reports.send(Report::Resync);
                        None
                    }
                    Err(_) => {
                        let _ = reports.send(Report::Error);
                        continue;
                    }
                    Ok(_) => None,
                };
                if role == Role::Picture {
                    known.apply(event.expect("an event"));
                }
                let Some(revision) = revision else { continue };
                let _ = reports.send(Report::Seen(revision, Instant::now()));
                if role == Role::Picture {
                    let own = tortie::ipam::routes::own_blocks_in(known.specs(), &node);
                    let borrowed = tortie::ipam::routes::borrowed_addresses_in(known.specs(), &node);
                    std::hint::black_box((own, borrowed));
                    tokio::time::sleep(USAGE_RATE_LIMIT).await;
                    let specs: Vec<&IpamBlock> = known.specs().collect();
                    std::hint::black_box(tortie::metrics::ipam::usage(&pools, &specs));
                }
                let _ = reports.send(Report::Done(revision, Instant::now()));
            }
        }));
    }
    tasks
}

async fn run_case(case: Case, ticks: f64) {
    let etcd = EtcdProcess::start().await;
    let pid = etcd.pid().to_string();
    let endpoint = etcd.endpoint();
    let port: u16 = endpoint.rsplit(':').next().and_then(|p| p.parse().ok()).expect("etcd port");
    let admin = Datastore::new(EtcdBackend::connect(EtcdOptions::new(vec![endpoint.clone()])).await.expect("etcd"));
    for chunk in (0..BLOCKS).collect::<Vec<_>>().chunks(100) {
        let mut txn = Transaction::new();
        for i in chunk {
            let (name, b) = block(*i);
            txn.create(&name, &b);
        }
        admin.commit(txn).await.expect("create blocks");
    }
    let (target, mut spec) = block(0);
    let mut revision: Revision = admin.get::<IpamBlock>(&target).await.expect("target block").revision;
    let block_bytes = serde_json::to_vec(&spec).unwrap().len();

    let watches = case.agents * case.watches;
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let before_open = usage(&pid, ticks);
    let self_before_open = usage("self", ticks);
    let start = Instant::now();
    let tasks: Vec<_> = futures::stream::iter(0..case.agents)
        .map(|i| agent(endpoint.clone(), format!("node-{i}"), case, reports_tx.clone()))
        .buffer_unordered(OPENING)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect();
    let open_time = start.elapsed();
    let opened = usage(&pid, ticks);
    let self_opened = usage("self", ticks);

    let ports = client_ports(port);
    tokio::time::sleep(IDLE).await;
    let idle = usage(&pid, ticks);
    let ports_after = client_ports(port);
    let closed = ports.difference(&ports_after).count();

    let writes = if case.react { REACT_WRITES } else { WRITES };
    let mut seen: HashMap<u64, (usize, Instant)> = HashMap::new();
    let mut done: HashMap<u64, (usize, Instant)> = HashMap::new();
    let (mut resyncs, mut errors) = (0usize, 0usize);
    let mut seen_all = Vec::new();
    let mut done_all = Vec::new();
    let mut write_acks = Vec::new();
    let mut missed = 0;
    let before_writes = usage(&pid, ticks);
    let self_before_writes = usage("self", ticks);
    let writes_start = Instant::now();
    for _ in 0..writes {
        spec.sequence_number += 1;
        let t0 = Instant::now();
        revision = admin.update(&target, &spec, revision).await.expect("update the block").revision;
        write_acks.push(t0.elapsed());
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let complete = |seen: &HashMap<u64, (usize, Instant)>, done: &HashMap<u64, (usize, Instant)>| {
            seen.get(&revision.0).is_some_and(|s| s.0 == watches)
                && done.get(&revision.0).is_some_and(|d| d.0 == watches)
        };
        while !complete(&seen, &done) {
            let report = match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some(report)) => report,
                _ => break,
            };
            let (map, r, at) = match report {
                Report::Seen(r, at) => (&mut seen, r, at),
                Report::Done(r, at) => (&mut done, r, at),
                Report::Resync => {
                    resyncs += 1;
                    continue;
                }
                Report::Error => {
                    errors += 1;
                    continue;
                }
            };
            let entry = map.entry(r).or_insert((0, at));
            entry.0 += 1;
            entry.1 = entry.1.max(at);
        }
        match (seen.get(&revision.0), done.get(&revision.0)) {
            (Some((s, s_at)), Some((d, d_at))) if *s == watches && *d == watches => {
                seen_all.push(s_at.duration_since(t0));
                done_all.push(d_at.duration_since(t0));
            }
            _ => missed += 1,
        }
    }
    let writes_time = writes_start.elapsed();
    let after = usage(&pid, ticks);
    let self_after = usage("self", ticks);
    seen_all.sort();
    done_all.sort();
    write_acks.sort();

    let label = format!("{}x{}{}", case.agents, case.watches, if case.react { "r" } else { "" });
    println!(
        "case={label} agents={} watches_per_agent={} react={} blocks={BLOCKS} block_bytes={block_bytes} load={}",
        case.agents,
        case.watches,
        case.react,
        load_average()
    );
    println!(
        "  open: {:.2} s for {} watches; etcd cpu {:.2} s, rss {:.1} MiB (before {:.1}); bench cpu {:.2} s",
        open_time.as_secs_f64(),
        watches,
        opened.cpu - before_open.cpu,
        opened.rss,
        before_open.rss,
        self_opened.cpu - self_before_open.cpu,
    );
    println!(
        "  idle {} s: etcd cpu {:.2} s, rss {:.1} MiB; {} of {} client connections closed",
        IDLE.as_secs(),
        idle.cpu - opened.cpu,
        idle.rss,
        closed,
        ports.len()
    );
    println!(
        "  writes: {} in {:.2} s (missed {missed}, resyncs {resyncs}, errors {errors}); write ack p50 {:.2} ms",
        writes,
        writes_time.as_secs_f64(),
        quantile(&write_acks, 0.5),
    );
    println!(
        "  seen by every watch: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        quantile(&seen_all, 0.5),
        quantile(&seen_all, 0.99),
        seen_all.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    );
    if case.react {
        println!(
            "  reacted (every agent's reaction done): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            quantile(&done_all, 0.5),
            quantile(&done_all, 0.99),
            done_all.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
        );
    }
    let per_write = (after.cpu - before_writes.cpu) / writes as f64;
    println!(
        "  etcd over the writes: cpu {:.2} s ({:.1} ms per write), rss {:.1} MiB, peak rss {:.1} MiB; bench cpu {:.2} s",
        after.cpu - before_writes.cpu,
        per_write * 1e3,
        after.rss,
        after.hwm,
        self_after.cpu - self_before_writes.cpu,
    );
    // The agents go (their watches and clients with them) before their etcd does.
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    drop(etcd);
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent; do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let cases = std::env::var("TORTIE_BENCH_WATCH_CASES").unwrap_or_else(|_| "1x1,1000x1,1000x2,250x1r".to_string());
    let cases: Vec<Case> = cases
        .split(',')
        .map(|c| {
            Case::parse(c.trim()).unwrap_or_else(|| panic!("TORTIE_BENCH_WATCH_CASES: {c:?} is not AGENTSxWATCHES[r]"))
        })
        .collect();
    let ticks = clock_ticks();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!();
        for case in cases {
            run_case(case, ticks).await;
        }
    });
}
