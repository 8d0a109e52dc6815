//! The simulated cluster: namespaces, pods spread over nodes, and a mix of Kubernetes and
//! Calico policies with pod and namespace selectors, ports (numbers, ranges, named) and nets.
//! Deterministic: the same figures describe the same world on every run.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use tortie::datastore::resources::{GlobalNetworkPolicy, KubeNetworkPolicy, NetworkPolicy, Resource};
use tortie::policy::incremental::Entry;
use tortie::policy::{Endpoint, Local, NamedPort, Namespaces, Policy, calico, kube};

pub const NODES: usize = 200;
pub const PODS_PER_NODE: usize = 50;
pub const PODS: usize = NODES * PODS_PER_NODE;
pub const NAMESPACES: usize = 100;
/// Apps per namespace: each namespace holds PODS / NAMESPACES pods.
pub const APPS: usize = 20;
pub const TEAMS: usize = 20;
const TIERS: [&str; 3] = ["web", "api", "db"];
const ENVS: [&str; 3] = ["prod", "dev", "stage"];
pub const POLICIES: usize = 1000;
/// Of the policies: Kubernetes first, then Calico namespaced, the rest global.
pub const KUBERNETES: usize = POLICIES * 6 / 10;
pub const CALICO: usize = POLICIES * 3 / 10;

pub struct World {
    pub endpoints: Vec<Endpoint>,
    pub namespaces: Namespaces,
    pub policies: Vec<Policy>,
    /// The pods of node 0, the node the benchmark programs.
    pub local: Vec<Local>,
}

pub fn namespace(i: usize) -> String {
    format!("ns-{}", i % NAMESPACES)
}

pub fn app(i: usize) -> String {
    format!("app-{}", i % APPS)
}

/// Pod `i`'s address: 10.0.0.1 upwards.
pub fn address(i: usize) -> IpAddr {
    let base = u32::from(Ipv4Addr::new(10, 0, 0, 1));
    IpAddr::V4(Ipv4Addr::from(base + u32::try_from(i).expect("few pods")))
}

/// Pod `i` lives on node `i / PODS_PER_NODE`, in namespace `i % NAMESPACES`.
pub fn pod(i: usize) -> Endpoint {
    let namespace = namespace(i);
    let labels = BTreeMap::from([
        ("app".to_string(), app(i / NAMESPACES)),
        ("tier".to_string(), TIERS[i % TIERS.len()].to_string()),
        ("pod-template-hash".to_string(), format!("h{}", i % 7)),
    ]);
    Endpoint {
        name: format!("{namespace}/pod-{i}"),
        namespace,
        labels,
        service_account: Some(format!("sa-{}", i % 4)),
        addresses: vec![address(i)],
        ports: vec![NamedPort {
            name: "http".into(),
            protocol: 6,
            port: if i.is_multiple_of(2) { 8080 } else { 8081 },
        }],
    }
}

pub fn interface(i: usize) -> String {
    format!("cali{i:08}")
}

fn knp(i: usize) -> Policy {
    let spec = json!({
        "podSelector": {"matchLabels": {"app": app(i)}},
        "policyTypes": if i.is_multiple_of(3) { json!(["Ingress", "Egress"]) } else { json!(["Ingress"]) },
        "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"tier": "web"}}}],
             "ports": [{"port": 80, "protocol": "TCP"}, {"port": "http"}]},
            {"from": [{"namespaceSelector": {"matchLabels": {"team": format!("t{}", i % TEAMS)}},
                       "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["api", "web"]}]}}],
             "ports": [{"port": 8000, "endPort": 8100, "protocol": "TCP"}]},
            {"from": [{"ipBlock": {"cidr": format!("172.{}.0.0/16", 16 + i % 16), "except": [format!("172.{}.1.0/24", 16 + i % 16)]}}]}
        ],
        "egress": [
            {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.255.0.0/16"]}}],
             "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
            {"to": [{"podSelector": {"matchLabels": {"tier": "db"}}}], "ports": [{"port": 5432}]}
        ]
    });
    let r: KubeNetworkPolicy = serde_json::from_value(spec).expect("a Kubernetes policy");
    r.validate().expect("valid");
    kube::policy(&namespace(i), &format!("knp-{i}"), &r).expect("converts")
}

fn cnp(i: usize) -> Policy {
    let spec = json!({
        "order": (i % 50) as f64,
        "selector": format!("app == '{}' && tier in {{'api', 'db'}}", app(i)),
        "types": ["Ingress", "Egress"],
        "ingress": [
            {"action": "Deny", "source": {"nets": [format!("192.168.{}.0/24", i % 256)]}},
            {"action": "Allow", "protocol": "TCP",
             "source": {"selector": "tier == 'web'", "namespaceSelector": format!("env == '{}'", ENVS[i % 3])},
             "destination": {"ports": ["443", "9000:9100"]}},
            {"action": "Log", "protocol": "TCP", "source": {"selector": "has(app) && tier != 'db'"}},
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["http"]}}
        ],
        "egress": [
            {"action": "Allow", "protocol": "UDP", "destination": {"ports": ["53"]}},
            {"action": "Allow", "destination": {"selector": format!("app == '{}'", app(i + 1))}},
            {"action": "Deny", "destination": {"notNets": ["10.0.0.0/8"]}}
        ]
    });
    let r: NetworkPolicy = serde_json::from_value(spec).expect("a Calico policy");
    r.validate().expect("valid");
    calico::namespaced(&namespace(i), &format!("cnp-{i}"), &r).expect("converts")
}

fn gnp(i: usize) -> Policy {
    let spec: Value = json!({
        "order": (i % 100) as f64,
        "selector": format!("tier == '{}' && app in {{'{}', '{}'}}", TIERS[i % 3], app(i), app(i + 7)),
        "namespaceSelector": format!("team == 't{}' || env == 'prod'", i % TEAMS),
        "types": ["Ingress"],
        "ingress": [
            {"action": "Pass", "source": {"namespaceSelector": "env == 'prod'", "selector": "tier == 'web'"}},
            {"action": "Deny", "protocol": "TCP", "source": {"nets": ["0.0.0.0/0"], "notNets": ["10.0.0.0/8"]}},
            {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8}}
        ]
    });
    let r: GlobalNetworkPolicy = serde_json::from_value(spec).expect("a global policy");
    r.validate().expect("valid");
    calico::global(&format!("gnp-{i}"), &r).expect("converts")
}

pub fn policy(i: usize) -> Policy {
    if i < KUBERNETES {
        knp(i)
    } else if i < KUBERNETES + CALICO {
        cnp(i)
    } else {
        gnp(i)
    }
}

/// Pod `i`'s key (its IPAM handle in the agent).
pub fn key(i: usize) -> String {
    format!("h{i:05}")
}

/// The world's pods as the incremental compiler holds them.
pub fn entries(w: &World) -> BTreeMap<String, Entry> {
    w.endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let interface = (i < PODS_PER_NODE).then(|| interface(i));
            (key(i), Entry { endpoint: e.clone().into(), interface })
        })
        .collect()
}

pub fn world() -> World {
    let namespaces = Namespaces(
        (0..NAMESPACES)
            .map(|n| {
                let labels = BTreeMap::from([
                    ("team".to_string(), format!("t{}", n % TEAMS)),
                    ("env".to_string(), ENVS[n % ENVS.len()].to_string()),
                ]);
                (namespace(n), labels)
            })
            .collect(),
    );
    let endpoints = (0..PODS).map(pod).collect();
    let local = (0..PODS_PER_NODE).map(|i| Local { endpoint: pod(i).name, interface: interface(i) }).collect();
    World { endpoints, namespaces, policies: (0..POLICIES).map(policy).collect(), local }
}
