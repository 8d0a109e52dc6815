//! Datastore throughput: get, compare-and-swap update and watch delivery per backend, with etcd
//! itself as the reference in the same run (`etcdctl`, and the bare etcd-client library without
//! tortie's layer). Run with `cargo bench --bench datastore`; prints a table and the ratios.

#[path = "../tests/datastore_support/etcd_process.rs"]
#[allow(dead_code)] // the benchmark never restarts etcd
mod etcd_process;

use etcd_client::{Compare, CompareOp, Txn, TxnOp, WatchOptions};
use etcd_process::EtcdProcess;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tortie::datastore::etcd::{EtcdBackend, EtcdOptions};
use tortie::datastore::kube_standin::StandIn;
use tortie::datastore::kubernetes::KubeBackend;
use tortie::datastore::resources::IpamHandle;
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::datastore::{Datastore, WatchEvent};

const GETS: u32 = 2000;
const UPDATES: u32 = 1000;
const EVENTS: u32 = 1000;
/// etcdctl starts a process per operation, so fewer of those.
const ETCDCTL_OPS: u32 = 100;

struct Figures {
    get: f64,
    cas: f64,
    watch: f64,
}

fn rate(n: u32, elapsed: Duration) -> f64 {
    f64::from(n) / elapsed.as_secs_f64()
}

fn handle(n: u32) -> IpamHandle {
    IpamHandle { handle_id: "bench".into(), block: BTreeMap::from([("count".into(), n)]), deleted: false }
}

async fn measure(store: &Datastore) -> Figures {
    let created = store.create("bench", &handle(0)).await.expect("create");
    let start = Instant::now();
    for _ in 0..GETS {
        store.get::<IpamHandle>("bench").await.expect("get");
    }
    let get = rate(GETS, start.elapsed());

    let mut revision = created.revision;
    let start = Instant::now();
    for n in 1..=UPDATES {
        revision = store.update("bench", &handle(n), revision).await.expect("update").revision;
    }
    let cas = rate(UPDATES, start.elapsed());

    // Delivery alone: the changes are written first, then a watch from before them reads them all.
    let before = revision;
    for n in 0..EVENTS {
        revision = store.update("bench", &handle(n), revision).await.expect("update").revision;
    }
    let start = Instant::now();
    let mut watch = store.watch::<IpamHandle>(Some(before)).await.expect("watch");
    let mut seen = 0;
    while seen < EVENTS {
        match watch.next().await.expect("watch open").expect("event") {
            WatchEvent::Modified(_) => seen += 1,
            WatchEvent::Resync(_) => panic!("the benchmark's watch should not need a resync"),
            _ => {}
        }
    }
    let watch = rate(EVENTS, start.elapsed());
    Figures { get, cas, watch }
}

async fn bare_etcd_client(endpoint: &str) -> Figures {
    let mut client = etcd_client::Client::connect([endpoint], None).await.expect("connect");
    let key = "/bare/bench";
    let put = client.put(key, serde_json::to_vec(&handle(0)).unwrap(), None).await.expect("put");
    let mut revision = put.header().unwrap().revision();
    let start = Instant::now();
    for _ in 0..GETS {
        client.get(key, None).await.expect("get");
    }
    let get = rate(GETS, start.elapsed());
    let start = Instant::now();
    for n in 1..=UPDATES {
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(key, CompareOp::Equal, revision)])
            .and_then(vec![TxnOp::put(key, serde_json::to_vec(&handle(n)).unwrap(), None)]);
        let response = client.txn(txn).await.expect("txn");
        assert!(response.succeeded());
        revision = response.header().unwrap().revision();
    }
    let cas = rate(UPDATES, start.elapsed());
    let before = revision;
    for n in 0..EVENTS {
        client.put(key, serde_json::to_vec(&handle(n)).unwrap(), None).await.expect("put");
    }
    let start = Instant::now();
    let mut stream = client.watch(key, Some(WatchOptions::new().with_start_revision(before + 1))).await.expect("watch");
    let mut seen = 0;
    while seen < EVENTS {
        let message = stream.message().await.expect("watch").expect("open");
        seen += message.events().len() as u32;
    }
    let watch = rate(EVENTS, start.elapsed());
    Figures { get, cas, watch }
}

fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run etcdctl");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).expect("etcdctl stdin");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("etcdctl output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn etcdctl_reference(endpoint: &str) -> Figures {
    let key = "/ctl/bench";
    let mut client = etcd_client::Client::connect([endpoint], None).await.expect("connect");
    let value = serde_json::to_string(&handle(0)).unwrap();
    let mut revision = client.put(key, value.clone(), None).await.unwrap().header().unwrap().revision();

    let start = Instant::now();
    for _ in 0..ETCDCTL_OPS {
        etcdctl(endpoint, &["get", key], None);
    }
    let get = rate(ETCDCTL_OPS, start.elapsed());

    let start = Instant::now();
    for _ in 0..ETCDCTL_OPS {
        let script = format!("mod(\"{key}\") = \"{revision}\"\n\nput {key} '{value}'\n\n\n");
        let out = etcdctl(endpoint, &["txn", "-w", "json"], Some(&script));
        let parsed: serde_json::Value = serde_json::from_str(&out).expect("etcdctl txn json");
        assert_eq!(parsed["succeeded"], true, "etcdctl txn failed: {out}");
        revision = parsed["header"]["revision"].as_i64().expect("revision");
    }
    let cas = rate(ETCDCTL_OPS, start.elapsed());

    let before = revision;
    for n in 0..EVENTS {
        client.put(key, serde_json::to_string(&handle(n)).unwrap(), None).await.expect("put");
    }
    let start = Instant::now();
    let mut child = Command::new("etcdctl")
        .arg(format!("--endpoints={endpoint}"))
        .args(["watch", key, &format!("--rev={}", before + 1)])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcdctl watch");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = 0;
    while seen < EVENTS {
        if lines.next().expect("etcdctl watch output").expect("line") == "PUT" {
            seen += 1;
        }
    }
    let watch = rate(EVENTS, start.elapsed());
    let _ = child.kill();
    let _ = child.wait();
    Figures { get, cas, watch }
}

fn row(name: &str, f: &Figures) {
    println!("{name:<28} {:>12.0} {:>12.0} {:>14.0}", f.get, f.cas, f.watch);
}

fn ratio(name: &str, a: &Figures, b: &Figures) {
    println!("{name:<28} {:>12.2} {:>12.2} {:>14.2}", a.get / b.get, a.cas / b.cas, a.watch / b.watch);
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
        let sqlite = Datastore::new(
            SqliteBackend::open(dir.path().join("bench.db"), SqliteOptions::default()).await.expect("sqlite"),
        );
        let etcd_store =
            Datastore::new(EtcdBackend::connect(EtcdOptions::new(vec![endpoint.clone()])).await.expect("etcd backend"));
        let standin = StandIn::start(Duration::from_secs(60)).await.expect("stand-in");
        let kube = Datastore::new(KubeBackend::new(standin.client()));

        let sqlite_f = measure(&sqlite).await;
        let etcd_f = measure(&etcd_store).await;
        let kube_f = measure(&kube).await;
        let bare_f = bare_etcd_client(&endpoint).await;
        let ctl_f = etcdctl_reference(&endpoint).await;

        println!("\noperations per second        {:>12} {:>12} {:>14}", "get", "CAS update", "watch events");
        row("tortie sqlite", &sqlite_f);
        row("tortie etcd", &etcd_f);
        row("tortie kubernetes (stand-in)", &kube_f);
        row("etcd-client, bare", &bare_f);
        row("etcdctl (process per op)", &ctl_f);
        println!("\nratios");
        ratio("tortie etcd / bare client", &etcd_f, &bare_f);
        ratio("tortie etcd / etcdctl", &etcd_f, &ctl_f);
        ratio("tortie sqlite / etcdctl", &sqlite_f, &ctl_f);
    });
}
