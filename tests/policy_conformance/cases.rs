//! The cases: policies of the three kinds (and changes of labels and pods), each checked
//! against the reference model after every step.

use super::model::World;
use serde_json::{Value, json};

/// One change to the cluster.
pub enum Change {
    /// `tortie apply` of these documents.
    Apply(Vec<Value>),
    /// `tortie delete` of these documents.
    Delete(Vec<Value>),
    /// A pod's labels replaced (its node-local name, as `xb`).
    LabelPod(&'static str, Vec<(&'static str, &'static str)>),
    /// A namespace's labels replaced.
    LabelNamespace(&'static str, Vec<(&'static str, &'static str)>),
    /// A pod made by `tortie lab pod add` on a node: node, pod, namespace, labels.
    AddPod(&'static str, &'static str, &'static str, Vec<(&'static str, &'static str)>),
}

pub struct Case {
    pub name: &'static str,
    /// The matrix is checked after each step.
    pub steps: Vec<Vec<Change>>,
}

fn case(name: &'static str, policies: Vec<Value>) -> Case {
    Case { name, steps: vec![vec![Change::Apply(policies)]] }
}

/// A Kubernetes NetworkPolicy.
pub fn knp(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// A Calico NetworkPolicy (namespaced).
pub fn cnp(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": tortie::migrate::object::api_version(), "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// A Calico GlobalNetworkPolicy.
pub fn gnp(name: &str, spec: Value) -> Value {
    json!({"apiVersion": tortie::migrate::object::api_version(), "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name}, "spec": spec})
}

/// A namespace document with labels.
pub fn namespace(name: &str, labels: &[(&str, &str)]) -> Value {
    let labels: serde_json::Map<String, Value> = labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn deny_all_ingress(ns: &str) -> Value {
    knp(ns, "deny-ingress", json!({"podSelector": {}, "policyTypes": ["Ingress"]}))
}

pub fn all(world: &World) -> Vec<Case> {
    let ip = |id: &str| {
        let pod = world.pods.iter().find(|p| p.id() == id).unwrap();
        format!("{}/32", pod.ips.iter().find(|a| a.is_ipv4()).unwrap())
    };
    let pods_a = json!([ip("x/a"), ip("y/a"), ip("z/a")]);
    vec![
        // Kubernetes NetworkPolicy.
        case("default deny ingress", vec![deny_all_ingress("x")]),
        case(
            "default deny egress",
            vec![knp("x", "deny-egress", json!({"podSelector": {}, "policyTypes": ["Egress"]}))],
        ),
        case(
            "default deny both directions",
            vec![knp("y", "deny-both", json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}))],
        ),
        case(
            "deny ingress to one pod",
            vec![knp("x", "deny-a", json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"]}))],
        ),
        case(
            "allow all ingress adds to default deny",
            vec![deny_all_ingress("x"), knp("x", "allow-all", json!({"podSelector": {}, "ingress": [{}]}))],
        ),
        case(
            "allow all egress (implicit Egress type)",
            vec![knp("z", "allow-egress", json!({"podSelector": {}, "egress": [{}]}))],
        ),
        case(
            "allow from own namespace",
            vec![knp("x", "same-ns", json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}))],
        ),
        case(
            "allow from namespaces by label",
            vec![knp(
                "x",
                "from-prod",
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}]}]}),
            )],
        ),
        case(
            "pod and namespace selector in one peer",
            vec![knp(
                "x",
                "one-peer",
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}},
                    "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
            )],
        ),
        case(
            "pod and namespace selector as two peers",
            vec![knp(
                "x",
                "two-peers",
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                    {"podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
            )],
        ),
        case(
            "ipBlock with except",
            vec![knp(
                "x",
                "block",
                json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.247.0.0/16",
                    "except": [ip("y/b"), ip("z/c")]}}]}]}),
            )],
        ),
        case(
            "egress ipBlock with except",
            vec![knp(
                "y",
                "egress-block",
                json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [ip("x/b"), ip("x/c")]}}]}]}),
            )],
        ),
        case(
            "named port (a different number per pod)",
            vec![knp("x", "named", json!({"podSelector": {}, "ingress": [{"ports": [{"port": "web"}]}]}))],
        ),
        case(
            "named UDP port",
            vec![knp(
                "y",
                "named-udp",
                json!({"podSelector": {}, "ingress": [{"ports": [{"port": "dns", "protocol": "UDP"}]}]}),
            )],
        ),
        case(
            "endPort",
            vec![knp(
                "x",
                "range",
                json!({"podSelector": {}, "ingress": [{"ports": [{"port": 70, "endPort": 80, "protocol": "TCP"}]}]}),
            )],
        ),
        case(
            "endPort over both ports, UDP",
            vec![knp(
                "z",
                "range-udp",
                json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "endPort": 81, "protocol": "UDP"}]}]}),
            )],
        ),
        case(
            "ports by protocol: UDP only",
            vec![knp("x", "udp-only", json!({"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP"}]}]}))],
        ),
        case(
            "one numbered port, default protocol TCP",
            vec![knp("x", "port-81", json!({"podSelector": {}, "ingress": [{"ports": [{"port": 81}]}]}))],
        ),
        case(
            "egress to DNS only",
            vec![knp(
                "x",
                "dns-only",
                json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 81, "protocol": "UDP"}]}]}),
            )],
        ),
        case(
            "egress to one pod of another namespace",
            vec![knp(
                "x",
                "to-y-b",
                json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
            )],
        ),
        case(
            "multiple policies add up",
            vec![
                knp(
                    "x",
                    "from-b",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}},
                    "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
                ),
                knp(
                    "x",
                    "from-c-81",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}},
                    "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "c"}}}], "ports": [{"port": 81, "protocol": "UDP"}]}]}),
                ),
            ],
        ),
        case(
            "ingress here and egress there",
            vec![
                knp("x", "deny-egress", json!({"podSelector": {}, "policyTypes": ["Egress"]})),
                knp(
                    "y",
                    "from-z",
                    json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]}),
                ),
            ],
        ),
        case(
            "matchExpressions In and DoesNotExist",
            vec![knp(
                "y",
                "expr",
                json!({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "c"]}]},
                    "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}}]}]}),
            )],
        ),
        case(
            "matchExpressions NotIn and Exists",
            vec![knp(
                "z",
                "expr",
                json!({"podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
                    "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}]}}]}]}),
            )],
        ),
        Case {
            name: "policy deleted",
            steps: vec![
                vec![Change::Apply(vec![deny_all_ingress("x"), deny_all_ingress("y")])],
                vec![Change::Delete(vec![deny_all_ingress("x")])],
            ],
        },
        Case {
            name: "policy changed in place",
            steps: vec![
                vec![Change::Apply(vec![knp(
                    "z",
                    "p",
                    json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"]}),
                )])],
                vec![Change::Apply(vec![knp(
                    "z",
                    "p",
                    json!({"podSelector": {"matchLabels": {"pod": "b"}}, "policyTypes": ["Ingress"]}),
                )])],
            ],
        },
        Case {
            name: "pod relabelled",
            steps: vec![
                vec![Change::Apply(vec![knp(
                    "x",
                    "from-a",
                    json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
                )])],
                vec![Change::LabelPod("yc", vec![("pod", "a")]), Change::LabelPod("xa", vec![("pod", "z")])],
            ],
        },
        Case {
            name: "namespace relabelled",
            steps: vec![
                vec![Change::Apply(vec![knp(
                    "x",
                    "from-prod",
                    json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}]}]}),
                )])],
                vec![
                    Change::LabelNamespace("z", vec![("ns", "z"), ("env", "prod")]),
                    Change::LabelNamespace("y", vec![("ns", "y")]),
                ],
            ],
        },
        // Calico NetworkPolicy and GlobalNetworkPolicy.
        case(
            "Calico order: Deny before Allow",
            vec![
                cnp(
                    "x",
                    "deny-a",
                    json!({"order": 10, "ingress": [{"action": "Deny", "source": {"namespaceSelector": "all()", "selector": "pod == 'a'"}}]}),
                ),
                cnp("x", "allow", json!({"order": 20, "ingress": [{"action": "Allow"}]})),
            ],
        ),
        case(
            "Calico order: Allow before Deny",
            vec![
                cnp(
                    "x",
                    "allow-a",
                    json!({"order": 5, "ingress": [{"action": "Allow", "source": {"namespaceSelector": "all()", "selector": "pod == 'a'"}}]}),
                ),
                cnp("x", "deny", json!({"order": 20, "ingress": [{"action": "Deny"}]})),
            ],
        ),
        case(
            "global Deny before a Kubernetes allow",
            vec![
                gnp(
                    "no-z",
                    json!({"order": 10, "selector": "pod == 'b'", "ingress": [{"action": "Deny", "source": {"namespaceSelector": "ns == 'z'"}}]}),
                ),
                knp("x", "allow-all", json!({"podSelector": {}, "ingress": [{}]})),
            ],
        ),
        case(
            "Pass skips the Kubernetes policies",
            vec![
                gnp(
                    "pass-x",
                    json!({"order": 10, "ingress": [{"action": "Pass", "source": {"namespaceSelector": "ns == 'x'"}}]}),
                ),
                deny_all_ingress("y"),
                deny_all_ingress("z"),
            ],
        ),
        case(
            "Pass then Deny in later Calico policy",
            vec![
                cnp(
                    "y",
                    "pass",
                    json!({"order": 1, "selector": "pod == 'a'", "ingress": [{"action": "Pass", "protocol": "UDP"}]}),
                ),
                cnp("y", "deny", json!({"order": 2, "ingress": [{"action": "Deny"}]})),
            ],
        ),
        case(
            "Calico policy without order comes after Kubernetes'",
            vec![
                cnp("x", "deny-last", json!({"ingress": [{"action": "Deny"}]})),
                knp(
                    "x",
                    "allow-y",
                    json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
                ),
            ],
        ),
        case(
            "GlobalNetworkPolicy with a namespace selector",
            vec![gnp(
                "prod-c",
                json!({"order": 10, "namespaceSelector": "env == 'prod'", "selector": "pod == 'c'", "types": ["Ingress"]}),
            )],
        ),
        case(
            "global egress Deny of UDP 80",
            vec![gnp(
                "no-udp-80",
                json!({"order": 10, "egress": [{"action": "Deny", "protocol": "UDP", "destination": {"ports": [80]}}, {"action": "Allow"}]}),
            )],
        ),
        case(
            "Log goes on to the next rule",
            vec![gnp(
                "log-then-deny",
                json!({"order": 10, "selector": "pod == 'b'", "ingress": [{"action": "Log"}, {"action": "Deny", "protocol": "TCP"}, {"action": "Allow"}]}),
            )],
        ),
        case(
            "notNets",
            vec![cnp(
                "x",
                "not-a",
                json!({"order": 10, "ingress": [{"action": "Allow", "source": {"notNets": pods_a}}]}),
            )],
        ),
        case(
            "nets",
            vec![gnp(
                "only-from-x-a",
                json!({"order": 10, "selector": "pod == 'c'", "ingress": [{"action": "Allow", "source": {"nets": [ip("x/a"), ip("y/b")]}}]}),
            )],
        ),
        case(
            "notPorts",
            vec![cnp(
                "y",
                "not-80",
                json!({"order": 10, "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"notPorts": [80]}}]}),
            )],
        ),
        case(
            "notProtocol",
            vec![cnp("z", "no-udp", json!({"order": 10, "ingress": [{"action": "Allow", "notProtocol": "UDP"}]}))],
        ),
        case(
            "Calico port range and named port",
            vec![cnp(
                "x",
                "ranges",
                json!({"order": 10, "ingress": [{"action": "Allow", "protocol": "UDP", "destination": {"ports": ["81:90"]}},
                    {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["web"]}}]}),
            )],
        ),
        case(
            "selector in",
            vec![gnp(
                "in",
                json!({"order": 10, "selector": "pod in {'a', 'b'}", "ingress": [{"action": "Allow", "source": {"selector": "pod in {'a'}"}}]}),
            )],
        ),
        case(
            "selector not in",
            vec![gnp(
                "not-in",
                json!({"order": 10, "selector": "pod not in {'a', 'b'}", "ingress": [{"action": "Allow", "source": {"selector": "pod not in {'c'}"}}]}),
            )],
        ),
        case(
            "selector has",
            vec![gnp(
                "has",
                json!({"order": 10, "selector": "has(tier)", "ingress": [{"action": "Allow", "source": {"selector": "has(tier)"}}]}),
            )],
        ),
        case(
            "selector !has on egress",
            vec![gnp(
                "not-has",
                json!({"order": 10, "selector": "!has(tier)", "types": ["Egress"], "egress": [{"action": "Allow", "destination": {"selector": "!has(tier)"}}]}),
            )],
        ),
        case(
            "selector ||",
            vec![gnp(
                "or",
                json!({"order": 10, "selector": "pod == 'a' || tier == 'back'", "ingress": [{"action": "Allow", "source": {"selector": "pod == 'c' || pod == 'a'"}}]}),
            )],
        ),
        case(
            "notSelector",
            vec![gnp(
                "not-b",
                json!({"order": 10, "selector": "pod == 'c'", "ingress": [{"action": "Allow", "source": {"notSelector": "pod == 'b'"}}]}),
            )],
        ),
        case(
            "namespaced Calico rule selector stays in its namespace",
            vec![cnp(
                "y",
                "own-a",
                json!({"order": 10, "ingress": [{"action": "Allow", "source": {"selector": "pod == 'a'"}}]}),
            )],
        ),
        case(
            "namespaced Calico rule with a namespace selector",
            vec![cnp(
                "z",
                "from-x",
                json!({"order": 10, "ingress": [{"action": "Allow", "source": {"namespaceSelector": "ns == 'x'", "selector": "has(tier)"}}]}),
            )],
        ),
        case(
            "Calico egress-only policy with no rules",
            vec![cnp("z", "no-egress", json!({"order": 10, "selector": "pod == 'b'", "types": ["Egress"]}))],
        ),
        // Last: it leaves its pod in place.
        Case {
            name: "a new pod appears in a selected set",
            steps: vec![
                vec![Change::Apply(vec![knp(
                    "x",
                    "from-a",
                    json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
                )])],
                vec![Change::AddPod("node3", "yd", "y", vec![("pod", "a")])],
            ],
        },
    ]
}
