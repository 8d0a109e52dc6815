//! The model's semantics on hand-written cases, each checked on the reference and on the
//! compiled program.

use super::model::{Direction, Endpoint, NamedPort, Namespaces, Packet, Policy, Verdict};
use super::reference::World;
use super::{Local, calico, compile, interpret, kube};
use crate::datastore::resources::{Action, GlobalNetworkPolicy, KubeNetworkPolicy, NetworkPolicy, Resource};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn pod(namespace: &str, name: &str, labels: &[(&str, &str)], address: &str) -> Endpoint {
    Endpoint {
        name: format!("{namespace}/{name}"),
        namespace: namespace.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        service_account: None,
        addresses: vec![address.parse().unwrap()],
        ports: vec![NamedPort { name: "http".into(), protocol: 6, port: 8080 }],
    }
}

fn knp(namespace: &str, name: &str, spec: Value) -> Policy {
    let r: KubeNetworkPolicy = serde_json::from_value(spec).unwrap();
    r.validate().unwrap();
    kube::policy(namespace, name, &r).unwrap()
}

fn cnp(namespace: &str, name: &str, spec: Value) -> Policy {
    let r: NetworkPolicy = serde_json::from_value(spec).unwrap();
    r.validate().unwrap();
    calico::namespaced(namespace, name, &r).unwrap()
}

fn gnp(name: &str, spec: Value) -> Policy {
    let r: GlobalNetworkPolicy = serde_json::from_value(spec).unwrap();
    r.validate().unwrap();
    calico::global(name, &r).unwrap()
}

fn tcp(from: &Endpoint, to: &Endpoint, port: u16) -> Packet {
    Packet {
        source: from.addresses[0],
        destination: to.addresses[0],
        protocol: 6,
        source_port: 40000,
        destination_port: port,
        icmp: None,
    }
}

struct Case {
    endpoints: Vec<Endpoint>,
    namespaces: Namespaces,
}

impl Case {
    fn new() -> Case {
        let mut ns = BTreeMap::new();
        ns.insert("prod".to_string(), [("env".to_string(), "prod".to_string())].into());
        ns.insert("dev".to_string(), BTreeMap::new());
        Case {
            endpoints: vec![
                pod("prod", "web", &[("app", "web")], "10.0.0.1"),
                pod("prod", "db", &[("app", "db")], "10.0.0.2"),
                pod("dev", "web", &[("app", "web")], "10.0.1.1"),
            ],
            namespaces: Namespaces(ns),
        }
    }

    /// Reference and compiled program agree; the result.
    fn allows(&self, policies: &[Policy], packet: &Packet) -> bool {
        let world = World { endpoints: &self.endpoints, namespaces: &self.namespaces, policies };
        let local: Vec<Local> = self
            .endpoints
            .iter()
            .map(|e| Local { endpoint: e.name.clone(), interface: e.name.replace('/', "-") })
            .collect();
        let program = compile(policies, &self.endpoints, &self.namespaces, &local);
        let reference = world.allows(packet);
        assert_eq!(interpret::allows(&program, packet), reference, "{packet:?}");
        reference
    }
}

#[test]
fn default_deny_ingress_denies_selected_pods_only() {
    let c = Case::new();
    let [web, db, dev] = [&c.endpoints[0], &c.endpoints[1], &c.endpoints[2]];
    let deny = knp("prod", "deny", json!({"podSelector": {}}));
    assert!(!c.allows(std::slice::from_ref(&deny), &tcp(web, db, 80)));
    assert!(!c.allows(std::slice::from_ref(&deny), &tcp(dev, web, 80)));
    // Egress is not selected: prod pods still reach dev.
    assert!(c.allows(std::slice::from_ref(&deny), &tcp(web, dev, 80)));
    let world = World { endpoints: &c.endpoints, namespaces: &c.namespaces, policies: std::slice::from_ref(&deny) };
    assert_eq!(world.verdict(db, Direction::Ingress, &tcp(web, db, 80)), Verdict::EndOfTier);
    assert_eq!(world.verdict(dev, Direction::Ingress, &tcp(web, dev, 80)), Verdict::Unselected);
}

#[test]
fn kubernetes_peers_pod_and_namespace_selectors_and_named_ports() {
    let c = Case::new();
    let [web, db, dev] = [&c.endpoints[0], &c.endpoints[1], &c.endpoints[2]];
    let from_web_same_ns = knp(
        "prod",
        "db",
        json!({"podSelector": {"matchLabels": {"app": "db"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "http"}]}]}),
    );
    let p = std::slice::from_ref(&from_web_same_ns);
    assert!(c.allows(p, &tcp(web, db, 8080)), "the named port is db's 8080");
    assert!(!c.allows(p, &tcp(web, db, 80)));
    assert!(!c.allows(p, &tcp(dev, db, 8080)), "a pod selector alone looks in the policy's namespace");
    let from_any_ns = knp(
        "prod",
        "db",
        json!({"podSelector": {"matchLabels": {"app": "db"}},
               "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}],
                            "ports": [{"port": 8000, "endPort": 8100}]}]}),
    );
    let p = std::slice::from_ref(&from_any_ns);
    assert!(c.allows(p, &tcp(dev, db, 8080)));
    assert!(!c.allows(p, &tcp(dev, db, 8101)));
    let from_prod_ns = knp(
        "prod",
        "db",
        json!({"podSelector": {"matchLabels": {"app": "db"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}]}]}),
    );
    let p = std::slice::from_ref(&from_prod_ns);
    assert!(c.allows(p, &tcp(web, db, 1)));
    assert!(!c.allows(p, &tcp(dev, db, 1)));
}

#[test]
fn ip_block_except_and_egress() {
    let c = Case::new();
    let [web, db, dev] = [&c.endpoints[0], &c.endpoints[1], &c.endpoints[2]];
    let egress = knp(
        "prod",
        "out",
        json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}}]}]}),
    );
    let p = std::slice::from_ref(&egress);
    assert!(c.allows(p, &tcp(web, db, 80)));
    assert!(!c.allows(p, &tcp(web, dev, 80)));
    assert!(c.allows(p, &tcp(db, dev, 80)), "db is not selected");
}

#[test]
fn a_global_deny_ordered_first_beats_a_kubernetes_allow_and_pass_skips_the_rest() {
    let c = Case::new();
    let [web, db, dev] = [&c.endpoints[0], &c.endpoints[1], &c.endpoints[2]];
    let allow_all = knp("prod", "all", json!({"podSelector": {}, "ingress": [{}]}));
    let deny_dev = gnp(
        "no-dev",
        json!({"order": 10, "selector": "all()",
               "ingress": [{"action": "Deny", "source": {"namespaceSelector": "projectcalico.org/name == 'dev'"}}]}),
    );
    let both = [allow_all.clone(), deny_dev.clone()];
    assert!(!c.allows(&both, &tcp(dev, db, 80)));
    assert!(c.allows(&both, &tcp(web, db, 80)));
    let world = World { endpoints: &c.endpoints, namespaces: &c.namespaces, policies: &both };
    assert_eq!(
        world.verdict(db, Direction::Ingress, &tcp(dev, db, 80)),
        Verdict::Rule { policy: "global/no-dev".into(), rule: 0, action: Action::Deny }
    );
    // Pass at order 5 skips the deny, and the Kubernetes allow too: the tier is left.
    let pass = cnp(
        "prod",
        "pass-dev",
        json!({"order": 5, "ingress": [{"action": "Pass", "source": {"namespaceSelector": "all()", "selector": "app == 'web'"}}]}),
    );
    let deny_everything = gnp("deny", json!({"order": 20, "ingress": [{"action": "Deny"}]}));
    let three = [pass, deny_dev, deny_everything];
    assert!(c.allows(&three, &tcp(dev, db, 80)));
    assert!(!c.allows(&three, &tcp(db, web, 80)));
}

#[test]
fn kubernetes_policies_become_calico_policies_at_order_1000() {
    let p = knp("prod", "x", json!({"podSelector": {"matchLabels": {"app": "db"}}}));
    assert_eq!(p.name, "prod/knp.default.x");
    assert_eq!(p.order, Some(1000.0));
    assert_eq!(p.applies.selector.selector, "app == \"db\"");
    assert!(p.egress.is_none());
    assert_eq!(p.ingress.as_deref(), Some(&[][..]));
}
