//! Network policy end to end on one node: `tortie node` in a namespace with the sqlite
//! datastore, pods made by `tortie lab pod add` (the CNI plugin, with namespace, labels and a
//! named port), policies and namespace labels written to the datastore, and real TCP
//! connections between the pods that get through or not as the policies say.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;
use tortie::datastore::Datastore;
use tortie::datastore::resources::{IpPool, KubeNetworkPolicy, Namespace};
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::netns::Topology;
use tortie::testing::wait_until;

const WAIT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn with_store<T>(db: &Path, f: impl AsyncFnOnce(&Datastore) -> T) -> T {
    runtime().block_on(async {
        let ds = Datastore::new(SqliteBackend::open(db, SqliteOptions::default()).await.unwrap());
        f(&ds).await
    })
}

/// A pod the plugin made; its namespace (named after the node's, so unique) goes on drop,
/// also on panic.
struct Pod {
    ns: String,
    ip: IpAddr,
    _listeners: Vec<TcpListener>,
}

impl Drop for Pod {
    fn drop(&mut self) {
        tortie::netns::remove_namespace(&self.ns);
    }
}

fn add_pod(t: &Topology, socket: &Path, name: &str, args: &[&str]) -> Pod {
    // nsenter enters the network namespace only: the pod's namespace file, mounted by the
    // plugin's runtime, stays visible here (`ip netns exec` would keep the mount private).
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", t.ns("n")))
        .args(["--", env!("CARGO_BIN_EXE_tortie"), "lab", "pod", "add", name])
        .args(args)
        .env("TORTIE_API_SOCKET", socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "pod {name}: {}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let address = result["ips"][0]["address"].as_str().unwrap_or_else(|| panic!("{result}"));
    let ip: IpAddr = address.split('/').next().unwrap().parse().unwrap();
    let ns = format!("{}-{name}", t.ns("n"));
    let listeners = [80, 8080]
        .into_iter()
        .map(|port| {
            let l = tortie::netns::run_in_namespace(&ns, move || TcpListener::bind((ip, port))).unwrap().unwrap();
            l.set_nonblocking(true).unwrap();
            l
        })
        .collect();
    Pod { ns, ip, _listeners: listeners }
}

fn connects(from: &Pod, to: &Pod, port: u16) -> bool {
    let target = SocketAddr::new(to.ip, port);
    tortie::netns::run_in_namespace(&from.ns, move || TcpStream::connect_timeout(&target, CONNECT_TIMEOUT).is_ok())
        .unwrap()
}

fn kube_policy(spec: serde_json::Value) -> KubeNetworkPolicy {
    serde_json::from_value(spec).unwrap()
}

#[test]
fn policies_and_namespace_labels_in_the_datastore_isolate_pods_the_cni_plugin_made() {
    let mut t = Topology::new("apol").unwrap();
    t.add_namespace("n").unwrap();
    // The node's own address, on its uplink.
    t.add_namespace("ext").unwrap();
    t.add_veth(("n", "eth1", Some("192.0.2.1/24")), ("ext", "eth1", Some("192.0.2.2/24"))).unwrap();
    let dir = t.dir().to_path_buf();
    let db = dir.join("tortie.db");
    with_store(&db, async |ds| {
        tortie::ipam::create_pool(ds, "v4", &IpPool::new("10.244.0.0/16".parse().unwrap())).await.unwrap();
    });
    let config = dir.join("tortie.yaml");
    let socket = dir.join("api.sock");
    std::fs::write(
        &config,
        format!(
            "node: {{name: policy-test}}\ndatastore: {{sqlite_path: {}}}\napi: {{socket: {}}}\nmetrics: {{enabled: false}}\nbgp: {{enabled: false}}\ndataplane: {{cleanup_on_exit: true, resync_interval_seconds: 1}}\n",
            db.display(),
            socket.display()
        ),
    )
    .unwrap();
    let agent = t.spawn("n", &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]).unwrap();
    let pid = agent.pid();
    let log = agent.log_path().to_path_buf();
    let fail = |what: &str| -> ! {
        let table = t
            .exec("n", &["nft", "list", "table", "inet", "tortie"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("{what}; table {table:?}; agent log:\n{log}");
    };

    let web = add_pod(&t, &socket, "web", &["--namespace", "prod", "--label", "app=web"]);
    let db_pod = add_pod(&t, &socket, "db", &["--namespace", "prod", "--label", "app=db", "--port", "http:tcp:8080"]);
    let dev = add_pod(&t, &socket, "dev", &["--namespace", "dev", "--label", "app=web"]);
    if wait_until("pods reaching each other", WAIT, || connects(&web, &db_pod, 80).then_some(())).is_err() {
        fail("web cannot reach db without any policy");
    }

    // Only app=web of prod, only on db's named port http.
    with_store(&db, async |ds| {
        let policy = kube_policy(serde_json::json!({"podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "http"}]}]}));
        ds.create("prod/db-from-web", &policy).await.unwrap();
    });
    let enforced = || {
        (!connects(&web, &db_pod, 80) && connects(&web, &db_pod, 8080) && !connects(&dev, &db_pod, 8080)).then_some(())
    };
    if wait_until("the Kubernetes policy enforced", WAIT, enforced).is_err() {
        fail("the policy is not enforced");
    }

    // The dev namespace labelled and let in by a namespace selector.
    with_store(&db, async |ds| {
        let labels = [("env".to_string(), "dev".to_string())].into();
        ds.create("dev", &Namespace { labels, ..Namespace::default() }).await.unwrap();
        let policy = kube_policy(serde_json::json!({"podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "dev"}}}]}]}));
        ds.create("prod/db-from-dev", &policy).await.unwrap();
    });
    if wait_until("dev let in", WAIT, || connects(&dev, &db_pod, 80).then_some(())).is_err() {
        fail("the namespace selector does not let dev in");
    }
    assert!(!connects(&web, &db_pod, 80), "web still only on http");

    let exit = t.terminate(pid, Duration::from_secs(10));
    assert!(exit.is_some_and(|s| s.success()), "SIGTERM stops the agent cleanly: {exit:?}");
}
