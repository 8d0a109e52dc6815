//! Network policy across lab nodes: pods on two tortie nodes (made from `TORTIE_LAB_PODS`
//! entries with namespaces, labels and a named port), policies of all three kinds written to
//! the lab's shared datastore, and real TCP connections from node1's pods to node2's `db`.

mod support;

use serde_json::json;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;
use support::lab::Lab;
use tortie::datastore::Datastore;
use tortie::datastore::resources::{GlobalNetworkPolicy, KubeNetworkPolicy, Namespace};
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::testing::wait_until;

const WAIT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

fn write(lab: &Lab, f: impl AsyncFnOnce(&Datastore)) {
    let db = lab.dir().join("tortie.db");
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let ds = Datastore::new(SqliteBackend::open(&db, SqliteOptions::default()).await.unwrap());
        f(&ds).await
    })
}

fn connects(lab: &Lab, node: &str, pod: &str, to: IpAddr, port: u16) -> bool {
    let target = SocketAddr::new(to, port);
    tortie::netns::run_in_namespace(&lab.pod_ns(node, pod), move || {
        TcpStream::connect_timeout(&target, CONNECT_TIMEOUT).is_ok()
    })
    .unwrap()
}

#[test]
fn policies_of_every_kind_hold_across_nodes() {
    let lab = Lab::prepare("policy", "tpol", |_| {});
    lab.up();
    let db = IpAddr::V4(lab.pod_ip("node2", "db"));
    let _listeners: Vec<TcpListener> = [80, 8080]
        .into_iter()
        .map(|port| {
            let l = tortie::netns::run_in_namespace(&lab.pod_ns("node2", "db"), move || TcpListener::bind((db, port)))
                .unwrap()
                .unwrap();
            l.set_nonblocking(true).unwrap();
            l
        })
        .collect();
    let check = |what: &str, cases: &[(&str, u16, bool)]| {
        let holds = || cases.iter().all(|(pod, port, ok)| connects(&lab, "node1", pod, db, *port) == *ok).then_some(());
        if wait_until(what, WAIT, holds).is_err() {
            panic!("{what}: {cases:?}\nnode2 log:\n{}", lab.agent_log("node2"));
        }
    };
    check("no policy: everyone reaches db", &[("web", 80, true), ("dev", 8080, true)]);

    // A Kubernetes policy on node2's db naming node1's pods: web of prod, on the named port.
    write(&lab, async |ds| {
        let p: KubeNetworkPolicy = serde_json::from_value(json!({"podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "http"}]}]}))
        .unwrap();
        ds.create("prod/db-from-web", &p).await.unwrap();
    });
    check("pod selector and named port", &[("web", 8080, true), ("web", 80, false), ("dev", 8080, false)]);

    // The dev namespace labelled (by the lab's command, inside a node) and let in on any port
    // by a namespace selector.
    let labelled =
        lab.exec("node1", &[env!("CARGO_BIN_EXE_tortie"), "lab", "namespace", "add", "dev", "--label", "env=dev"]);
    assert!(labelled.status.success(), "{}", String::from_utf8_lossy(&labelled.stderr));
    write(&lab, async |ds| {
        assert_eq!(ds.get::<Namespace>("dev").await.unwrap().spec.labels["env"], "dev");
        let p: KubeNetworkPolicy = serde_json::from_value(json!({"podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "dev"}}}]}]}))
        .unwrap();
        ds.create("prod/db-from-dev", &p).await.unwrap();
    });
    check("namespace selector", &[("dev", 80, true), ("web", 80, false)]);

    // A global Deny ordered before the Kubernetes policies shuts dev out again.
    write(&lab, async |ds| {
        let p: GlobalNetworkPolicy = serde_json::from_value(json!({"order": 10, "selector": "app == 'db'",
            "ingress": [{"action": "Deny", "source": {"namespaceSelector": "env == 'dev'"}}]}))
        .unwrap();
        ds.create("no-dev", &p).await.unwrap();
    });
    check("global deny first", &[("dev", 80, false), ("web", 8080, true)]);

    // Egress: web may talk to nobody.
    write(&lab, async |ds| {
        let p: KubeNetworkPolicy =
            serde_json::from_value(json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"]}))
                .unwrap();
        ds.create("prod/web-no-egress", &p).await.unwrap();
    });
    check("egress deny", &[("web", 8080, false)]);
}
