//! interpret(compile(x)) = reference(x), for random endpoints, namespaces, policies of all
//! three kinds and packets: the verdict (deciding policy, rule and action) of each direction
//! at each endpoint.

use super::model::{Direction, Endpoint, NamedPort, Namespaces, Packet, Policy};
use super::reference::World;
use super::{Local, calico, compile, interpret, kube};
use crate::datastore::resources::{GlobalNetworkPolicy, KubeNetworkPolicy, NetworkPolicy, Resource};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Picks from option lists with the random numbers proptest gives (and shrinks).
pub(super) struct Pick {
    pub(super) numbers: Vec<u64>,
    pub(super) at: usize,
}

impl Pick {
    pub(super) fn n(&mut self, below: usize) -> usize {
        let n = self.numbers.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        (n % below as u64) as usize
    }

    pub(super) fn one<T: Clone>(&mut self, options: &[T]) -> T {
        options[self.n(options.len())].clone()
    }
}

const SELECTORS: &[&str] = &["all()", "app == 'web'", "has(tier)", "app != 'db'", "app in {'web', 'db'}", "!has(app)"];
const NS_SELECTORS: &[&str] = &["team == 'x'", "all()", "global()", "projectcalico.org/name == 'b'"];
const NETS: &[&str] = &["10.0.0.0/30", "10.0.0.4/32", "fd00::/64", "10.0.0.0/8", "192.168.1.0/24"];
const PORTS: &[&str] = &["80", "8000:8100", "http", "dns", "53"];

fn endpoints(p: &mut Pick) -> Vec<Endpoint> {
    let count = 1 + p.n(5);
    (0..count)
        .map(|i| {
            let mut labels = BTreeMap::new();
            if let Some(app) = p.one(&[Some("web"), Some("db"), None]) {
                labels.insert("app".to_string(), app.to_string());
            }
            if p.n(2) == 0 {
                labels.insert("tier".to_string(), "1".to_string());
            }
            let mut addresses: Vec<IpAddr> = vec![format!("10.0.0.{}", i + 1).parse().unwrap()];
            if p.n(2) == 0 {
                addresses.push(format!("fd00::{}", i + 1).parse().unwrap());
            }
            let mut ports = Vec::new();
            if p.n(2) == 0 {
                ports.push(NamedPort { name: "http".into(), protocol: 6, port: p.one(&[80, 8080]) });
            }
            if p.n(3) == 0 {
                ports.push(NamedPort { name: "dns".into(), protocol: 17, port: 53 });
            }
            let namespace = p.one(&["a", "b"]).to_string();
            Endpoint {
                name: format!("{namespace}/pod{i}"),
                namespace,
                labels,
                service_account: p.one(&[None, Some("sa1".to_string())]),
                addresses,
                ports,
            }
        })
        .collect()
}

fn entity(p: &mut Pick, protocol: Option<&str>) -> Value {
    let mut e = serde_json::Map::new();
    if p.n(2) == 0 {
        e.insert("selector".into(), json!(p.one(SELECTORS)));
    }
    if p.n(3) == 0 {
        e.insert("namespaceSelector".into(), json!(p.one(NS_SELECTORS)));
    }
    if p.n(3) == 0 {
        e.insert("notSelector".into(), json!(p.one(SELECTORS)));
    }
    if p.n(3) == 0 {
        e.insert("nets".into(), json!([p.one(NETS), p.one(NETS)]));
    }
    if p.n(4) == 0 {
        e.insert("notNets".into(), json!([p.one(NETS)]));
    }
    if matches!(protocol, Some("TCP" | "UDP")) {
        if p.n(2) == 0 {
            e.insert("ports".into(), json!([p.one(PORTS), p.one(PORTS)]));
        }
        if p.n(4) == 0 {
            e.insert("notPorts".into(), json!([p.one(&["80", "8000:8100", "53"])]));
        }
    }
    Value::Object(e)
}

fn calico_spec(p: &mut Pick, global: bool) -> Value {
    let mut spec = serde_json::Map::new();
    spec.insert("selector".into(), json!(p.one(SELECTORS)));
    if let Some(order) = p.one(&[None, Some(100.0), Some(1000.0), Some(2000.0)]) {
        spec.insert("order".into(), json!(order));
    }
    if global && p.n(3) == 0 {
        spec.insert("namespaceSelector".into(), json!(p.one(NS_SELECTORS)));
    }
    if p.n(4) == 0 {
        spec.insert("serviceAccountSelector".into(), json!("projectcalico.org/name == 'sa1'"));
    }
    if p.n(3) == 0 {
        spec.insert("types".into(), json!(p.one(&[vec!["Ingress"], vec!["Egress"], vec!["Ingress", "Egress"]])));
    }
    for direction in ["ingress", "egress"] {
        let rules: Vec<Value> = (0..p.n(3))
            .map(|_| {
                let protocol = p.one(&[None, Some("TCP"), Some("UDP"), Some("ICMP")]);
                let mut rule = json!({"action": p.one(&["Allow", "Deny", "Pass", "Log"])});
                if let Some(proto) = protocol {
                    rule["protocol"] = json!(proto);
                    if proto == "ICMP" && p.n(2) == 0 {
                        rule["icmp"] = json!({"type": 8});
                    }
                } else if p.n(4) == 0 {
                    rule["notProtocol"] = json!("UDP");
                }
                if p.n(5) == 0 {
                    rule["ipVersion"] = json!(p.one(&[4, 6]));
                }
                rule["source"] = entity(p, protocol);
                rule["destination"] = entity(p, protocol);
                rule
            })
            .collect();
        if !rules.is_empty() {
            spec.insert(direction.into(), json!(rules));
        }
    }
    Value::Object(spec)
}

fn label_selector(p: &mut Pick) -> Value {
    p.one(&[
        json!({}),
        json!({"matchLabels": {"app": "web"}}),
        json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]}),
        json!({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}),
        json!({"matchLabels": {"team": "x"}}),
    ])
}

fn kube_spec(p: &mut Pick) -> Value {
    let peer = |p: &mut Pick| match p.n(4) {
        0 => json!({"podSelector": label_selector(p)}),
        1 => json!({"namespaceSelector": label_selector(p)}),
        2 => json!({"podSelector": label_selector(p), "namespaceSelector": label_selector(p)}),
        _ => json!({"ipBlock": {"cidr": "10.0.0.0/29", "except": ["10.0.0.2/32"]}}),
    };
    let port = |p: &mut Pick| {
        p.one(&[
            json!({"port": 80}),
            json!({"port": "http"}),
            json!({"protocol": "UDP", "port": 53}),
            json!({"port": 8000, "endPort": 8100}),
            json!({"protocol": "UDP"}),
        ])
    };
    let mut spec = json!({"podSelector": label_selector(p)});
    if p.n(3) == 0 {
        spec["policyTypes"] = json!(p.one(&[vec!["Ingress"], vec!["Egress"], vec!["Ingress", "Egress"]]));
    }
    for (direction, peers) in [("ingress", "from"), ("egress", "to")] {
        let rules: Vec<Value> = (0..p.n(3))
            .map(|_| {
                let mut r = json!({});
                if p.n(3) != 0 {
                    r[peers] = json!((0..1 + p.n(2)).map(|_| peer(p)).collect::<Vec<_>>());
                }
                if p.n(2) == 0 {
                    r["ports"] = json!((0..1 + p.n(2)).map(|_| port(p)).collect::<Vec<_>>());
                }
                r
            })
            .collect();
        if !rules.is_empty() {
            spec[direction] = json!(rules);
        }
    }
    spec
}

fn decoded<R: Resource>(spec: Value) -> Option<R> {
    let r: R = serde_json::from_value(spec).ok()?;
    r.validate().ok()?;
    Some(r)
}

pub(super) fn policies(p: &mut Pick) -> Vec<Policy> {
    let mut out = Vec::new();
    for i in 0..p.n(4) {
        let namespace = p.one(&["a", "b"]);
        let name = format!("p{i}");
        let policy = match p.n(3) {
            0 => decoded::<NetworkPolicy>(calico_spec(p, false)).map(|r| calico::namespaced(namespace, &name, &r)),
            1 => decoded::<GlobalNetworkPolicy>(calico_spec(p, true)).map(|r| calico::global(&name, &r)),
            _ => decoded::<KubeNetworkPolicy>(kube_spec(p)).map(|r| kube::policy(namespace, &name, &r)),
        };
        if let Some(policy) = policy {
            out.push(policy.expect("a checked resource converts"));
        }
    }
    out
}

fn packets(p: &mut Pick, endpoints: &[Endpoint]) -> Vec<Packet> {
    let mut addresses: Vec<IpAddr> = endpoints.iter().flat_map(|e| e.addresses.clone()).collect();
    addresses.push("192.168.1.1".parse().unwrap());
    addresses.push("fd00::99".parse().unwrap());
    (0..12)
        .filter_map(|_| {
            let source = p.one(&addresses);
            let destination = p.one(&addresses);
            if source.is_ipv4() != destination.is_ipv4() {
                return None;
            }
            let protocol = p.one(&[6u8, 17, 1]);
            let (source_port, destination_port, icmp) = if protocol == 1 {
                (0, 0, Some(p.one(&[(8u8, 0u8), (0, 0)])))
            } else {
                (p.one(&[53u16, 80, 40000]), p.one(&[53u16, 80, 8080, 8050, 443]), None)
            };
            Some(Packet { source, destination, protocol, source_port, destination_port, icmp })
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
    #[test]
    fn compiled_programs_decide_as_the_reference(numbers in proptest::collection::vec(any::<u64>(), 400)) {
        let mut p = Pick { numbers, at: 0 };
        let endpoints = endpoints(&mut p);
        let mut labels = BTreeMap::new();
        labels.insert("a".to_string(), [("team".to_string(), "x".to_string())].into());
        labels.insert("b".to_string(), [("team".to_string(), p.one(&["x", "y"]).to_string())].into());
        let namespaces = Namespaces(labels);
        let policies = policies(&mut p);
        let local: Vec<Local> = endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| Local { endpoint: e.name.clone(), interface: format!("tt{i}") })
            .collect();
        let program = compile(&policies, &endpoints, &namespaces, &local);
        let world = World { endpoints: &endpoints, namespaces: &namespaces, policies: &policies };
        for packet in packets(&mut p, &endpoints) {
            for endpoint in &endpoints {
                for direction in [Direction::Ingress, Direction::Egress] {
                    prop_assert_eq!(
                        interpret::verdict(&program, &endpoint.name, direction, &packet),
                        world.verdict(endpoint, direction, &packet),
                        "{:?} at {} {:?}\npolicies {:#?}\nprogram {:#?}", packet, endpoint.name, direction, policies, program
                    );
                }
            }
            prop_assert_eq!(interpret::allows(&program, &packet), world.allows(&packet));
        }
    }
}
