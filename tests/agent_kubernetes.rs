//! `tortie node` with the kubernetes datastore, through a kubeconfig file,
//! against the in-process stand-in API server: the node registers itself
//! as annotations on its Kubernetes Node.

use std::time::Duration;
use tortie::datastore::kube_standin::StandIn;
use tortie::netns::{Topology, spawn_in_namespace};

type Annotations = serde_json::Map<String, serde_json::Value>;

/// Runs `tortie node` in namespace `n` of `t` against a stand-in holding Kubernetes Node
/// `node-k8s` as `node` (with its name set), the agent configured by the YAML flow map `node_yaml`
/// for its `node` section; returns the Node's annotations once `done` holds for them or after
/// 30 s.
fn registered_annotations(
    t: &mut Topology,
    node: serde_json::Value,
    node_yaml: &str,
    done: impl Fn(&Annotations) -> bool + Send + 'static,
) -> Annotations {
    let dir = t.dir().to_path_buf();
    // The stand-in listens on the namespace's loopback, where the agent runs.
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let _server = spawn_in_namespace(&t.ns("n"), move |stop| async move {
        let standin = StandIn::start(Duration::from_millis(200)).await.unwrap();
        let mut node = node;
        node["apiVersion"] = "v1".into();
        node["kind"] = "Node".into();
        node["metadata"]["name"] = "node-k8s".into();
        standin.put_raw("core/nodes", "node-k8s", node);
        url_tx.send(standin.url()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut stop = std::pin::pin!(stop);
        loop {
            let node = standin.get_raw("core/nodes", "node-k8s");
            let annotations = node.and_then(|n| n["metadata"]["annotations"].as_object().cloned()).unwrap_or_default();
            if done(&annotations) || tokio::time::Instant::now() > deadline {
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
            "node: {node_yaml}\ndatastore: {{type: kubernetes, kubeconfig: {}}}\napi: {{socket: {}}}\nmetrics: {{enabled: false}}\nbgp: {{as_number: 64700}}\n",
            kubeconfig.display(),
            dir.join("api.sock").display()
        ),
    )
    .unwrap();
    t.spawn("n", &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]).unwrap();
    seen_rx.recv_timeout(Duration::from_secs(40)).unwrap()
}

#[test]
fn the_agent_registers_on_its_kubernetes_node() {
    let mut t = Topology::new("agentk8s").unwrap();
    t.add_namespace("n").unwrap();
    t.add_namespace("peer").unwrap();
    t.add_veth(("n", "eth1", Some("10.124.0.5/24")), ("peer", "eth1", Some("10.124.0.1/24"))).unwrap();

    let annotations = registered_annotations(&mut t, serde_json::json!({"status": {}}), "{name: node-k8s}", |a| {
        a.values().any(|v| v == "10.124.0.5/24")
    });
    assert!(annotations.values().any(|v| v == "10.124.0.5/24"), "address annotation: {annotations:?}");
    assert!(annotations.values().any(|v| v == "64700"), "AS annotation: {annotations:?}");
}

#[test]
fn both_addresses_come_from_the_kubernetes_nodes_internal_ips() {
    let mut t = Topology::new("agentk8sip").unwrap();
    t.add_namespace("n").unwrap();
    t.add_namespace("peer").unwrap();
    // first-found would take eth1's addresses; the Node names eth2's.
    t.add_veth(("n", "eth1", Some("10.124.1.5/24")), ("peer", "eth1", Some("10.124.1.1/24"))).unwrap();
    t.add_veth(("n", "eth2", Some("10.125.0.7/24")), ("peer", "eth2", Some("10.125.0.1/24"))).unwrap();
    t.exec("n", &["ip", "-6", "addr", "add", "fd41::5/64", "dev", "eth1", "nodad"]).unwrap();
    t.exec("n", &["ip", "-6", "addr", "add", "fd42::7/64", "dev", "eth2", "nodad"]).unwrap();
    let node = serde_json::json!({"status": {"addresses": [
        {"type": "Hostname", "address": "node-k8s"},
        {"type": "ExternalIP", "address": "10.124.1.5"},
        {"type": "InternalIP", "address": "10.125.0.7"},
        {"type": "InternalIP", "address": "fd42::7"},
    ]}});
    let yaml = "{name: node-k8s, address_autodetection: kubernetes-internal-ip, ipv6_address_autodetection: kubernetes-internal-ip}";
    let annotations = registered_annotations(&mut t, node, yaml, |a| a.values().any(|v| v == "fd42::7/64"));
    let get = |suffix: &str| annotations.iter().find(|(k, _)| k.ends_with(suffix)).map(|(_, v)| v.clone());
    assert_eq!(get("/IPv4Address"), Some("10.125.0.7/24".into()), "{annotations:?}");
    assert_eq!(get("/IPv6Address"), Some("fd42::7/64".into()), "{annotations:?}");
}

mod deploy_support;

/// A kubeconfig for the stand-in at `url`, without credentials (the stand-in checks none), in the
/// agent's namespace as its service account would be.
fn kubeconfig(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let namespace = deploy_support::agent_namespace();
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: s, cluster: {{server: \"{url}\"}}}}]\ncontexts: [{{name: s, context: {{cluster: s, user: u, namespace: {namespace}}}}}]\ncurrent-context: s\nusers: [{{name: u, user: {{}}}}]\n"
        ),
    )
    .unwrap();
    path
}

/// Debian's portmap plugin (containernetworking-plugins, installed by .ci/setup).
const PORTMAP: &str = "/usr/lib/cni/portmap";

/// The agent configuration of one lab node in Kubernetes mode, with the CNI directories and a
/// fast pod collector.
fn node_config(dir: &std::path::Path, name: &str, address: &str, kubeconfig: &std::path::Path) -> std::path::PathBuf {
    let own = dir.join(name);
    for sub in ["bin", "net.d"] {
        std::fs::create_dir_all(own.join(sub)).unwrap();
    }
    // The plugin the conflist chains after tortie's, as a node's CNI directory holds it.
    std::fs::copy(PORTMAP, own.join("bin/portmap")).unwrap();
    let path = own.join("tortie.yaml");
    std::fs::write(
        &path,
        format!(
            "node: {{name: {name}, address: {address}}}\n\
             datastore: {{type: kubernetes, kubeconfig: {kubeconfig}}}\n\
             api: {{socket: {socket}}}\n\
             metrics: {{enabled: false}}\n\
             bgp: {{as_number: 64512, connect_retry_seconds: 1}}\n\
             kubernetes: {{cni_bin_dir: {bin}, cni_net_dir: {net}, pod_gc_interval_seconds: 1, pod_gc_grace_seconds: 1}}\n",
            kubeconfig = kubeconfig.display(),
            socket = own.join("api.sock").display(),
            bin = own.join("bin").display(),
            net = own.join("net.d").display(),
        ),
    )
    .unwrap();
    path
}

fn status(socket: &std::path::Path) -> Option<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tortie"))
        .args(["status", "-o", "json", "--socket"])
        .arg(socket)
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// Two agents in two namespaces share one stand-in API server: each registers its node
/// (annotations), the first creates the default pool from TORTIE_IPV4POOL_*, both publish a
/// tunnel address, peer with each other from the Kubernetes Nodes, clear NetworkUnavailable,
/// install the CNI plugin once ready, and node-a releases the address of a deleted pod. Every
/// API call they made is allowed by the shipped ClusterRole.
#[test]
fn two_agents_in_kubernetes_mode_register_peer_and_collect_leaked_addresses() {
    use tortie::datastore::Datastore;
    use tortie::datastore::kubernetes::KubeBackend;
    use tortie::ipam::{Ipam, IpamOptions, Request};
    use tortie::testing::wait_until;

    let mut t = Topology::new("k8smode").unwrap();
    t.add_namespace("a").unwrap();
    t.add_namespace("b").unwrap();
    t.add_veth(("a", "eth1", Some("10.124.1.1/24")), ("b", "eth1", Some("10.124.1.2/24"))).unwrap();
    let dir = t.dir().to_path_buf();

    // The stand-in listens on node-a's veth address, so both namespaces reach it.
    let (tx, rx) = std::sync::mpsc::channel();
    let _server = spawn_in_namespace(&t.ns("a"), move |stop| async move {
        let listen = "10.124.1.1:0".parse().unwrap();
        let standin = StandIn::start_on(listen, Duration::from_millis(200)).await.unwrap();
        standin.add_node("node-a");
        standin.add_node("node-b");
        tx.send(standin).unwrap();
        let _ = stop.await;
    })
    .unwrap();
    let standin = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let kubeconfig = kubeconfig(&dir, &standin.url());
    let config_a = node_config(&dir, "node-a", "10.124.1.1/24", &kubeconfig);
    let config_b = node_config(&dir, "node-b", "10.124.1.2/24", &kubeconfig);
    // node-a's host lacks portmap at first: not ready, saying so, and no conflist written.
    std::fs::remove_file(dir.join("node-a/bin/portmap")).unwrap();
    let tortie = env!("CARGO_BIN_EXE_tortie");
    t.spawn(
        "a",
        &[
            "/usr/bin/env",
            "TORTIE_IPV4POOL_CIDR=10.250.0.0/16",
            "TORTIE_IPV4POOL_IPIP=CrossSubnet",
            tortie,
            "node",
            "--config",
            config_a.to_str().unwrap(),
        ],
    )
    .unwrap();
    t.spawn("b", &[tortie, "node", "--config", config_b.to_str().unwrap()]).unwrap();
    let deadline = Duration::from_secs(60);

    // The default pool, from node-a's environment.
    let pool =
        wait_until("the default pool", deadline, || standin.get_raw("crd.tortie.io/ippools", "default-ipv4-ippool"))
            .unwrap();
    assert_eq!(
        (pool["spec"]["cidr"].as_str(), pool["spec"]["ipipMode"].as_str()),
        (Some("10.250.0.0/16"), Some("CrossSubnet"))
    );

    // Registration: address, AS and tunnel address as annotations on each Kubernetes Node.
    for (node, address) in [("node-a", "10.124.1.1/24"), ("node-b", "10.124.1.2/24")] {
        let annotations = wait_until(&format!("{node}'s annotations"), deadline, || {
            let a = standin.get_raw("core/nodes", node)?["metadata"]["annotations"].clone();
            a.get("tortie.io/IPv4IPIPTunnelAddr").is_some().then_some(a)
        })
        .unwrap();
        assert_eq!(annotations["tortie.io/IPv4Address"], address, "{annotations}");
        assert_eq!(annotations["tortie.io/ASNumber"], "64512", "{annotations}");
        let tunnel: std::net::Ipv4Addr = annotations["tortie.io/IPv4IPIPTunnelAddr"].as_str().unwrap().parse().unwrap();
        assert!(tunnel.octets()[..2] == [10, 250], "tunnel address {tunnel} from the pool");
    }

    let socket_a = dir.join("node-a/api.sock");
    // Once its peer is up and its routes synced, portmap is the one reason left.
    wait_until("node-a not ready for lack of portmap alone", deadline, || {
        let s = status(&socket_a)?;
        let reasons = s["not_ready_reasons"].as_array()?;
        (s["peers"][0]["state"] == "established"
            && reasons.len() == 1
            && reasons[0].as_str()?.contains("node-a/bin/portmap"))
        .then_some(())
    })
    .unwrap();
    assert!(!dir.join("node-a/net.d/10-tortie.conflist").exists(), "no conflist chaining a missing plugin");
    std::fs::copy(PORTMAP, dir.join("node-a/bin/portmap")).unwrap();

    // The mesh, from the Kubernetes Nodes: each agent has the other Established.
    for (node, peer) in [("node-a", "10.124.1.2"), ("node-b", "10.124.1.1")] {
        let socket = dir.join(node).join("api.sock");
        let expected =
            serde_json::json!({"node": node, "ready": true, "peers": [{"address": peer, "state": "established"}]});
        wait_until(&format!("{node} established with {peer}"), deadline, || {
            tortie::testing::json_subset(&expected, &status(&socket)?).ok()
        })
        .unwrap();
    }

    // Each agent's NodeStatus shows its session up, and an Event on its Node says it came up.
    for (node, peer) in [("node-a", "10.124.1.2"), ("node-b", "10.124.1.1")] {
        let expected = serde_json::json!({"spec": {"sessions": [{"peer": peer, "state": "established"}]}});
        wait_until(&format!("{node}'s NodeStatus"), deadline, || {
            tortie::testing::json_subset(&expected, &standin.get_raw("crd.tortie.io/nodestatuses", node)?).ok()
        })
        .unwrap();
        let event = wait_until(&format!("{node}'s BGPSessionUp Event"), deadline, || {
            standin.list_raw("core/events").into_iter().find(|e| {
                e["involvedObject"]["kind"] == "Node"
                    && e["involvedObject"]["name"] == node
                    && e["reason"] == "BGPSessionUp"
            })
        })
        .unwrap();
        assert!(event["message"].as_str().unwrap_or_default().contains(peer), "{event}");
        assert_eq!((event["type"].as_str(), event["count"].as_u64()), (Some("Normal"), Some(1)), "{event}");
    }

    // NetworkUnavailable cleared, next to whatever else the Node's status holds.
    for node in ["node-a", "node-b"] {
        let condition = wait_until(&format!("{node}'s NetworkUnavailable condition"), deadline, || {
            let n = standin.get_raw("core/nodes", node)?;
            n["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "NetworkUnavailable").cloned()
        })
        .unwrap();
        assert_eq!((condition["status"].as_str(), condition["reason"].as_str()), (Some("False"), Some("TortieIsUp")));
    }

    // The CNI plugin, installed once ready: this binary and the conflist.
    let conflist =
        wait_until("node-a's conflist", deadline, || std::fs::read(dir.join("node-a/net.d/10-tortie.conflist")).ok())
            .unwrap();
    let conflist: serde_json::Value = serde_json::from_slice(&conflist).unwrap();
    // Debian 12's portmap speaks CNI up to 1.0.0, so the chain does too.
    assert_eq!(conflist["cniVersion"], "1.0.0");
    assert_eq!(
        (conflist["plugins"][0]["type"].as_str(), conflist["plugins"][1]["type"].as_str()),
        (Some("tortie"), Some("portmap"))
    );
    assert_eq!(std::fs::read(dir.join("node-a/bin/tortie")).unwrap(), std::fs::read(tortie).unwrap());

    // Two pods on node-a get addresses (as the CNI side does, through IPAM); one is deleted.
    standin.add_pod("default", "web", "node-a");
    standin.add_pod("default", "gone", "node-a");
    let url = standin.url();
    tortie::netns::run_in_namespace(&t.ns("a"), move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
            let ipam = Ipam::new(
                Datastore::new(KubeBackend::new(client)),
                IpamOptions { node: "node-a".into(), ..Default::default() },
            );
            for pod in ["web", "gone"] {
                ipam.allocate(Request::workload(&format!("h-{pod}"), 4, pod, "default", "node-a")).await.unwrap();
            }
        })
    })
    .unwrap();
    assert!(standin.get_raw("crd.tortie.io/ipamhandles", "h-gone").is_some());
    assert!(standin.delete_pod("default", "gone"));
    wait_until("the deleted pod's handle to be released", deadline, || {
        standin.get_raw("crd.tortie.io/ipamhandles", "h-gone").is_none().then_some(())
    })
    .unwrap();
    assert!(standin.get_raw("crd.tortie.io/ipamhandles", "h-web").is_some(), "the live pod keeps its address");

    // A pod annotated with Calico's ipAddrs gets that address: the agent reads its Pod at ADD
    // (here the workload API call the CNI plugin makes, with no annotation in the request).
    let annotations = std::collections::BTreeMap::from([(
        "cni.projectcalico.org/ipAddrs".to_string(),
        "[\"10.250.77.7\"]".to_string(),
    )]);
    standin.add_annotated_pod("default", "fixed", "node-a", &annotations);
    let request = serde_json::json!({"handle": "k8s-pod-network.fixed", "container_id": "fixed", "pod": "fixed",
        "namespace": "default", "netns": "/proc/1/ns/net", "ifname": "eth0", "host_interface": "tt0000000000f1x"});
    let answer = std::process::Command::new("curl")
        .args(["-s", "--unix-socket", socket_a.to_str().unwrap(), "-H", "Content-Type: application/json"])
        .args(["-d", &request.to_string(), "http://tortie/v1/workloads"])
        .output()
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&answer.stdout).unwrap_or_default();
    assert_eq!(answer["addresses"], serde_json::json!(["10.250.77.7/32"]), "{answer}");

    let calls = standin.calls();
    let denied = deploy_support::denied(&deploy_support::cluster_role(), &deploy_support::roles(), &calls);
    assert!(denied.is_empty(), "calls the shipped ClusterRole does not allow: {denied:#?}");
}
