//! `tortie node` with the kubernetes datastore, through a kubeconfig file,
//! against the in-process stand-in API server: the node registers itself
//! as annotations on its Kubernetes Node.

use std::time::Duration;
use tortie::datastore::kube_standin::StandIn;
use tortie::netns::{Topology, spawn_in_namespace};

#[test]
fn the_agent_registers_on_its_kubernetes_node() {
    let mut t = Topology::new("agentk8s").unwrap();
    t.add_namespace("n").unwrap();
    t.add_namespace("peer").unwrap();
    t.add_veth(("n", "eth1", Some("10.124.0.5/24")), ("peer", "eth1", Some("10.124.0.1/24"))).unwrap();
    let dir = t.dir().to_path_buf();

    // The stand-in listens on the namespace's loopback, where the agent runs.
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let _server = spawn_in_namespace(&t.ns("n"), move |stop| async move {
        let standin = StandIn::start(Duration::from_millis(200)).await.unwrap();
        standin.add_node("node-k8s");
        url_tx.send(standin.url()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut stop = std::pin::pin!(stop);
        loop {
            let node = standin.get_raw("core/nodes", "node-k8s");
            let annotations = node.and_then(|n| n["metadata"]["annotations"].as_object().cloned()).unwrap_or_default();
            if annotations.values().any(|v| v == "10.124.0.5/24") || tokio::time::Instant::now() > deadline {
                let _ = seen_tx.send(annotations);
                break;
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        let _ = stop.await;
    })
    .unwrap();
    let url = url_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: s, cluster: {{server: \"{url}\"}}}}]\ncontexts: [{{name: s, context: {{cluster: s, user: u}}}}]\ncurrent-context: s\nusers: [{{name: u, user: {{}}}}]\n"
        ),
    )
    .unwrap();
    let config = dir.join("tortie.yaml");
    std::fs::write(
        &config,
        format!(
            "node: {{name: node-k8s}}\ndatastore: {{type: kubernetes, kubeconfig: {}}}\napi: {{socket: {}}}\nmetrics: {{enabled: false}}\nbgp: {{as_number: 64700}}\n",
            kubeconfig.display(),
            dir.join("api.sock").display()
        ),
    )
    .unwrap();
    t.spawn("n", &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]).unwrap();

    let annotations = seen_rx.recv_timeout(Duration::from_secs(40)).unwrap();
    assert!(annotations.values().any(|v| v == "10.124.0.5/24"), "address annotation: {annotations:?}");
    assert!(annotations.values().any(|v| v == "64700"), "AS annotation: {annotations:?}");
}
