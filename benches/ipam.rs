//! IPAM throughput: allocations per second and p99 latency for one node under 100 concurrent
//! requests (through the per-node `Allocator`, so group commit applies), on sqlite and on etcd,
//! and three and ten nodes (each its own client and allocator, as agents have) contending for one
//! pool. Run with `cargo bench --bench ipam`; prints one line per case. `TORTIE_BENCH_IPAM=etcd`
//! (or `sqlite`) runs one backend only; `TORTIE_BENCH_IPAM_NODES=3` (a comma-separated list) only
//! those node counts.

#[path = "../tests/datastore_support/etcd_process.rs"]
#[allow(dead_code)] // the benchmark never restarts etcd
mod etcd_process;

use etcd_process::EtcdProcess;
use futures::StreamExt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tortie::datastore::Datastore;
use tortie::datastore::etcd::{EtcdBackend, EtcdOptions};
use tortie::datastore::resources::IpPool;
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::ipam::{Allocator, Ipam, IpamOptions, Request, create_pool};

/// Allocations per node per case.
const PER_NODE: usize = 3000;
/// Requests in flight per node.
const CONCURRENCY: usize = 100;

type Connect = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Datastore>>>>;

struct Figures {
    allocations: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    /// The slowest node's own rate: its allocations over the time it took.
    slowest_node: f64,
}

async fn node_run(store: Datastore, node: String) -> (Vec<Duration>, Duration) {
    let start = Instant::now();
    let allocator = Allocator::spawn(Ipam::new(store, IpamOptions { node: node.clone(), ..Default::default() }));
    let latencies = futures::stream::iter(0..PER_NODE)
        .map(|i| {
            let allocator = allocator.clone();
            let handle = format!("{node}-{i}");
            async move {
                let start = Instant::now();
                allocator.allocate(Request::workload(&handle, 4, &handle, "bench", "n")).await.expect("allocate");
                start.elapsed()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    (latencies, start.elapsed())
}

async fn run_case(connect: &Connect, nodes: usize, tag: &str) -> Figures {
    let admin = connect().await;
    let mut pool = IpPool::new(format!("10.{}.0.0/14", 64 + nodes * 4 + tag.len() % 4 * 16).parse().unwrap());
    pool.block_size = 24;
    create_pool(&admin, &format!("bench-{tag}-{nodes}"), &pool).await.expect("pool");
    let mut stores = Vec::new();
    for _ in 0..nodes {
        stores.push(connect().await);
    }
    let start = Instant::now();
    let runs = stores
        .into_iter()
        .enumerate()
        .map(|(n, store)| tokio::spawn(node_run(store, format!("{tag}-{nodes}-node-{n}"))));
    let mut latencies: Vec<Duration> = Vec::new();
    let mut slowest = Duration::ZERO;
    for run in futures::future::join_all(runs).await {
        let (node_latencies, node_elapsed) = run.expect("node run");
        latencies.extend(node_latencies);
        slowest = slowest.max(node_elapsed);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let slowest_node = PER_NODE as f64 / slowest.as_secs_f64();
    Figures { allocations: latencies.len(), elapsed, p50: at(0.50), p99: at(0.99), slowest_node }
}

fn print(label: &str, nodes: usize, f: &Figures) {
    let total = f.allocations as f64 / f.elapsed.as_secs_f64();
    println!(
        "{label:<8} {nodes:>2} node(s) x{CONCURRENCY:>4}: {:>6} allocations in {:>6.2}s = {:>8.0}/s total, {:>8.0}/s per node (slowest node {:>6.0}/s), p50 {:>7.2} ms, p99 {:>7.2} ms, load {}",
        f.allocations,
        f.elapsed.as_secs_f64(),
        total,
        total / nodes as f64,
        f.slowest_node,
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        load_average(),
    );
}

/// The machine's 1-minute load average, as `/proc/loadavg` gives it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent; do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let etcd = EtcdProcess::start().await;
        let endpoint = etcd.endpoint();
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("bench.db");
        let sqlite: Connect = Box::new(move || {
            let path = path.clone();
            Box::pin(async move {
                Datastore::new(SqliteBackend::open(path, SqliteOptions::default()).await.expect("sqlite"))
            })
        });
        let etcd_connect: Connect = Box::new(move || {
            let endpoint = endpoint.clone();
            Box::pin(async move {
                Datastore::new(EtcdBackend::connect(EtcdOptions::new(vec![endpoint])).await.expect("etcd backend"))
            })
        });
        let only = std::env::var("TORTIE_BENCH_IPAM").ok();
        let node_counts: Vec<usize> = match std::env::var("TORTIE_BENCH_IPAM_NODES") {
            Ok(list) => {
                list.split(',').map(|n| n.trim().parse().expect("TORTIE_BENCH_IPAM_NODES: a list of numbers")).collect()
            }
            Err(_) => vec![1, 3, 10],
        };
        println!();
        for (label, connect) in [("sqlite", &sqlite), ("etcd", &etcd_connect)] {
            if only.as_deref().is_some_and(|o| o != label) {
                continue;
            }
            for &nodes in &node_counts {
                let figures = run_case(connect, nodes, label).await;
                print(label, nodes, &figures);
            }
        }
        drop(etcd);
    });
}
