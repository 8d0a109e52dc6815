//! `tortie ipam show|check|release`, run as a user runs them, against a sqlite datastore named
//! by a configuration file and filled through the library.

#[allow(dead_code)] // kill and restart are for the crash tests
#[path = "datastore_support/etcd_process.rs"]
mod etcd_process;

use std::process::Command;
use tortie::datastore::Datastore;
use tortie::datastore::resources::{IpPool, Node};
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::ipam::{Ipam, IpamOptions, Request, create_pool};

fn tortie(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tortie"))
        .args(args)
        .env_remove("TORTIE_CONFIG")
        // No agent answers here: the commands act on the datastore themselves.
        .env("TORTIE_API_SOCKET", "/nonexistent/tortie-cli-ipam.sock")
        .output()
        .expect("tortie runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_check_and_release_against_the_configured_datastore() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tortie.db");
    let config = dir.path().join("tortie.yaml");
    std::fs::write(&config, format!("datastore:\n  type: sqlite\n  sqlite_path: {}\n", db.display())).unwrap();
    let config = config.display().to_string();
    let store = Datastore::new(SqliteBackend::open(&db, SqliteOptions::default()).await.unwrap());
    create_pool(&store, "default-ipv4", &IpPool::new("10.50.0.0/24".parse().unwrap())).await.unwrap();
    store.create("n1", &Node::default()).await.unwrap();
    let ipam = Ipam::new(store.clone(), IpamOptions { node: "n1".into(), ..Default::default() });
    let first = ipam.allocate(Request::workload("k8s-pod-network.abc", 4, "web-0", "shop", "n1")).await.unwrap();
    ipam.allocate(Request::workload("k8s-pod-network.def", 4, "web-1", "shop", "n1")).await.unwrap();

    let (code, out, err) = tortie(&["ipam", "show", "--config", &config, "--show-blocks"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for expected in ["GROUPING", "IPS TOTAL", "IPS IN USE", "IPS RESERVED", "IPS FREE"] {
        assert!(out.contains(expected), "{expected} missing:\n{out}");
    }
    let pool_row = out.lines().find(|l| l.contains("IP Pool")).expect("a pool row");
    assert!(pool_row.contains("10.50.0.0/24") && pool_row.contains("256") && pool_row.contains("2 (0%)"), "{pool_row}");
    assert!(out.lines().any(|l| l.contains("Block") && l.contains(&first.block.to_string())), "{out}");

    let (code, out, _) = tortie(&["ipam", "show", "--config", &config, "-o", "json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["pools"][0]["in_use"], 2);

    let (code, out, _) = tortie(&["ipam", "show", "--config", &config, "--ip", &first.ip.to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains("k8s-pod-network.abc") && out.contains("web-0"), "{out}");

    let (code, out, err) = tortie(&["ipam", "check", "--config", &config]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("No problems found"), "{out}");

    let (code, out, _) =
        tortie(&["ipam", "release", "--config", &config, "--handle", "k8s-pod-network.abc", "-o", "json", "--force"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["released"].as_array().unwrap().len(), 1);
    let (_, out, _) = tortie(&["ipam", "show", "--config", &config, "-o", "json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["pools"][0]["in_use"], 1);

    // A block whose handle record is gone is reported, and check exits 1.
    store
        .delete::<tortie::datastore::resources::IpamHandle>(
            "k8s-pod-network.def",
            store.get::<tortie::datastore::resources::IpamHandle>("k8s-pod-network.def").await.unwrap().revision,
        )
        .await
        .unwrap();
    let (code, out, _) = tortie(&["ipam", "check", "--config", &config]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("allocation without handle"), "{out}");
}

/// A sqlite datastore named by a configuration file in `dir`, with a pool and node `n1`.
async fn sqlite_store(dir: &std::path::Path) -> (Datastore, String) {
    let db = dir.join("tortie.db");
    let config = dir.join("tortie.yaml");
    std::fs::write(&config, format!("datastore:\n  type: sqlite\n  sqlite_path: {}\n", db.display())).unwrap();
    let store = Datastore::new(SqliteBackend::open(&db, SqliteOptions::default()).await.unwrap());
    create_pool(&store, "default-ipv4", &IpPool::new("10.50.0.0/24".parse().unwrap())).await.unwrap();
    store.create("n1", &Node::default()).await.unwrap();
    (store, config.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_refuses_a_live_workloads_address_unless_forced_and_dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, config) = sqlite_store(dir.path()).await;
    let ipam = Ipam::new(store.clone(), IpamOptions { node: "n1".into(), ..Default::default() });
    let live = ipam.allocate(Request::workload("k8s-pod-network.abc", 4, "web-0", "shop", "n1")).await.unwrap();
    let ip = live.ip.to_string();

    let (code, out, err) = tortie(&["ipam", "release", "--config", &config, "--ip", &ip]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("shop/web-0") && err.contains("k8s-pod-network.abc") && err.contains("--force"), "{err}");
    let in_use = |s: &Datastore| {
        let s = s.clone();
        async move { tortie::ipam::check::check(&s, &Default::default()).await.unwrap().pools[0].in_use }
    };
    assert_eq!(in_use(&store).await, 1, "a refused release writes nothing");

    let (code, out, err) = tortie(&["ipam", "release", "--config", &config, "--ip", &ip, "--force", "--dry-run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&ip) && out.contains("k8s-pod-network.abc") && out.contains("Would release"), "{out}");
    assert_eq!(in_use(&store).await, 1, "a dry run writes nothing");

    let (code, out, err) = tortie(&["ipam", "release", "--config", &config, "--ip", &ip, "--force"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(in_use(&store).await, 0);

    // An address whose node is gone holds no live workload: released without --force.
    let elsewhere = Ipam::new(store.clone(), IpamOptions { node: "n9".into(), ..Default::default() });
    let gone = elsewhere.allocate(Request::workload("k8s-pod-network.old", 4, "web-1", "shop", "n9")).await.unwrap();
    let (code, out, err) = tortie(&["ipam", "release", "--config", &config, "--ip", &gone.ip.to_string()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(in_use(&store).await, 0);
}

fn in_use(report: &tortie::ipam::CheckReport) -> u128 {
    report.pools.iter().map(|p| p.in_use).sum()
}

/// `check -o FILE` writes the leaked addresses; `release --from-report` frees exactly those,
/// refuses the whole report once one of them changed hands, and with `--force` frees only the
/// unchanged ones.
async fn report_flow(store: &Datastore, config: &str, dir: &std::path::Path) {
    let n1 = Ipam::new(store.clone(), IpamOptions { node: "n1".into(), ..Default::default() });
    let n9 = Ipam::new(store.clone(), IpamOptions { node: "n9".into(), ..Default::default() });
    n1.allocate(Request::workload("k8s-pod-network.live", 4, "web-0", "shop", "n1")).await.unwrap();
    let old = n9.allocate(Request::workload("k8s-pod-network.old", 4, "web-1", "shop", "n9")).await.unwrap();
    let old2 = n9.allocate(Request::workload("k8s-pod-network.old2", 4, "web-2", "shop", "n9")).await.unwrap();
    let report = dir.join("report.json");
    let report_arg = report.display().to_string();

    let (code, out, err) = tortie(&["ipam", "check", "--config", config, "-o", &report_arg]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("leaked") && out.contains("node n9 no longer exists"), "{out}");
    assert!(out.contains("affinity of a missing node"), "{out}");
    let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let leaked: Vec<&str> = written["leaked"].as_array().unwrap().iter().map(|l| l["ip"].as_str().unwrap()).collect();
    assert_eq!(leaked.len(), 2, "{written}");

    let (code, out, err) = tortie(&["ipam", "release", "--config", config, "--from-report", &report_arg, "--dry-run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("Would release 2 address(es)"), "{out}");
    let check = || async { tortie::ipam::check::check(store, &Default::default()).await.unwrap() };
    assert_eq!(in_use(&check().await), 3);

    // old2's address changes hands after the report: the report is stale.
    n9.release_ip(old2.ip, None).await.unwrap();
    n9.assign_ip(old2.ip, "k8s-pod-network.new", &Default::default()).await.unwrap();
    let (code, out, err) = tortie(&["ipam", "release", "--config", config, "--from-report", &report_arg]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("older than the datastore") && err.contains("k8s-pod-network.new"), "{err}");
    assert_eq!(in_use(&check().await), 3, "a refused report releases nothing");

    let (code, out, err) = tortie(&["ipam", "release", "--config", config, "--from-report", &report_arg, "--force"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("Released {} (handle k8s-pod-network.old", old.ip)), "{out}");
    assert!(out.contains(&format!("Skipped {}: changed since the report", old2.ip)), "{out}");
    assert_eq!(in_use(&check().await), 2);

    let (code, out, err) = tortie(&["ipam", "show", "--config", config, "--show-configuration", "-o", "yaml"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        out,
        "strictAffinity: false\nautoAllocateBlocks: true\nmaxBlocksPerHost: 0\neffectiveMaxBlocksPerHost: 20\nsource: defaults (no IPAMConfig)\n"
    );
    let (code, out, err) = tortie(&["ipam", "show", "--config", config, "--show-blocks", "-o", "wide"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("AFFINITY") && out.contains("host:n1") && out.contains("host:n9"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_report_and_release_from_report_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (store, config) = sqlite_store(dir.path()).await;
    report_flow(&store, &config, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_report_and_release_from_report_on_etcd() {
    use tortie::datastore::etcd::{EtcdBackend, EtcdOptions};
    let etcd = etcd_process::EtcdProcess::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tortie.yaml");
    let prefix = "/tortie-cli-ipam";
    std::fs::write(
        &config,
        format!("datastore:\n  type: etcd\n  etcd_endpoints: [\"{}\"]\n  etcd_prefix: {prefix}\n", etcd.endpoint()),
    )
    .unwrap();
    let options = EtcdOptions { prefix: prefix.into(), ..EtcdOptions::new(vec![etcd.endpoint()]) };
    let store = Datastore::new(EtcdBackend::connect(options).await.unwrap());
    create_pool(&store, "default-ipv4", &IpPool::new("10.50.0.0/24".parse().unwrap())).await.unwrap();
    store.create("n1", &Node::default()).await.unwrap();
    report_flow(&store, &config.display().to_string(), dir.path()).await;
}

/// With an agent answering on `--socket`, the commands go through its API: a live workload's
/// address is refused there, and a forced release is written by the agent.
#[test]
fn the_commands_go_through_a_running_agents_socket() {
    use std::time::Duration;
    use tortie::netns::Topology;
    let mut t = Topology::new("ipamcli").unwrap();
    t.add_namespace("n").unwrap();
    t.add_namespace("peer").unwrap();
    t.add_veth(("n", "eth1", Some("10.124.0.5/24")), ("peer", "eth1", Some("10.124.0.1/24"))).unwrap();
    let dir = t.dir().to_path_buf();
    let socket = dir.join("api.sock");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (store, _) = runtime.block_on(sqlite_store(&dir));
    let live = runtime.block_on(async {
        let ipam = Ipam::new(store.clone(), IpamOptions { node: "n1".into(), ..Default::default() });
        ipam.allocate(Request::workload("k8s-pod-network.abc", 4, "web-0", "shop", "n1")).await.unwrap()
    });
    let agent_config = dir.join("agent.yaml");
    std::fs::write(
        &agent_config,
        format!(
            "node: {{name: ipam-agent-test}}\ndatastore: {{sqlite_path: {}}}\napi: {{socket: {}}}\nbgp: {{as_number: 64600}}\n",
            dir.join("tortie.db").display(),
            socket.display()
        ),
    )
    .unwrap();
    let agent = t.spawn("n", &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", agent_config.to_str().unwrap()]);
    let pid = agent.unwrap().pid();
    let socket_arg = socket.display().to_string();
    // Through the socket only: the configuration names a datastore that does not exist.
    let via_agent = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--socket", &socket_arg, "--config", "/nonexistent/tortie.yaml"]);
        tortie(&all)
    };
    let out = tortie::testing::wait_until("the agent to answer ipam check", Duration::from_secs(30), || {
        let (code, out, err) = via_agent(&["ipam", "check", "-o", "json"]);
        (code == 0).then_some((out, err))
    })
    .unwrap();
    assert!(!out.1.contains("directly"), "{}", out.1);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out.0).unwrap()["allocations"], 1, "{}", out.0);

    let ip = live.ip.to_string();
    let (code, out, err) = via_agent(&["ipam", "release", "--ip", &ip]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("held by live workload shop/web-0 (handle k8s-pod-network.abc)"), "{err}");
    let (code, out, err) = via_agent(&["ipam", "release", "--ip", &ip, "--force"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("Released 1 address(es)"), "{out}");
    let left = runtime.block_on(tortie::ipam::check::check(&store, &Default::default())).unwrap();
    assert_eq!(in_use(&left), 0);
    t.terminate(pid, Duration::from_secs(10));
}

/// On Kubernetes a workload is live only while its Pod exists (the stand-in API server's Pods).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kubernetes_an_address_is_leaked_once_its_pod_is_gone() {
    use tortie::datastore::kube_standin::StandIn;
    use tortie::datastore::kubernetes::KubeBackend;
    use tortie::ipam::admin::{Admin, AdminError, ReleaseRequest};
    let standin = StandIn::start(std::time::Duration::from_millis(200)).await.unwrap();
    let store = Datastore::new(KubeBackend::new(standin.client()));
    create_pool(&store, "default-ipv4", &IpPool::new("10.50.0.0/24".parse().unwrap())).await.unwrap();
    standin.add_node("n1");
    let ipam = Ipam::new(store.clone(), IpamOptions { node: "n1".into(), ..Default::default() });
    let live = ipam.allocate(Request::workload("k8s-pod-network.a", 4, "web-0", "shop", "n1")).await.unwrap();
    let gone = ipam.allocate(Request::workload("k8s-pod-network.b", 4, "web-1", "shop", "n1")).await.unwrap();
    standin.add_pod("shop", "web-0", "n1");

    let admin = Admin::new(store.clone(), Some(standin.client()));
    let report = admin.check().await.unwrap();
    assert_eq!(report.leaked.len(), 1, "{:?}", report.leaked);
    assert_eq!(report.leaked[0].ip, gone.ip);
    assert_eq!(report.leaked[0].why.as_deref(), Some("pod shop/web-1 no longer exists"));

    let refused = admin.release(&ReleaseRequest { ip: Some(live.ip), ..Default::default() }).await;
    assert!(matches!(&refused, Err(AdminError::Refused(m)) if m.contains("shop/web-0")), "{refused:?}");
    let released = admin.release(&ReleaseRequest { ip: Some(gone.ip), ..Default::default() }).await.unwrap();
    assert_eq!(released.released.len(), 1);
}

/// `show --show-borrowed` names the block's owner and the node using its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_borrowed_names_both_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, config) = sqlite_store(dir.path()).await;
    store.create("n2", &Node::default()).await.unwrap();
    let n1 = Ipam::new(store.clone(), IpamOptions { node: "n1".into(), ..Default::default() });
    let n2 = Ipam::new(store.clone(), IpamOptions { node: "n2".into(), ..Default::default() });
    let own = n1.allocate(Request::workload("k8s-pod-network.a", 4, "web-0", "shop", "n1")).await.unwrap();
    let attributes = std::collections::BTreeMap::from([("node".to_string(), "n2".to_string())]);
    n2.assign_ip("10.50.0.9".parse().unwrap(), "k8s-pod-network.b", &attributes).await.unwrap();

    let (code, out, err) = tortie(&["ipam", "show", "--config", &config, "--show-borrowed"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let row = format!("| {} | n1          | n2             | 1         |", own.block);
    assert!(out.contains(&row), "{row}\n{out}");
}
