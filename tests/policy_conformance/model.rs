//! The reference model of the conformance suite: what Kubernetes' NetworkPolicy and Calico's
//! NetworkPolicy and GlobalNetworkPolicy documents mean for one connection, read straight
//! from the documents `tortie apply` is given. Written from the two projects' documentation,
//! independently of `src/policy`:
//! - Kubernetes: a pod selected by a policy of a direction is isolated in it; a connection is
//!   allowed if some rule of some selecting policy allows it (rules add up).
//! - Calico: policies in ascending `order` (none: last), then by name; the first Allow or Deny
//!   of a selecting policy decides, Pass skips the remaining policies (to the namespace's
//!   profile, which allows); an endpoint selected by some policy and matched by no rule is
//!   denied. Kubernetes policies take part at order 1000.
//! - A connection needs the source pod's egress and the destination pod's ingress; a pod's
//!   connection to itself never leaves its network namespace and is always allowed (as in
//!   Calico and Cyclonus' matrix).

use super::selector::{Labels, matches};
use ipnetwork::IpNetwork;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Pod {
    pub namespace: String,
    /// The pod's name in its node (`xa`: pod a of namespace x).
    pub name: String,
    pub node: String,
    pub labels: Labels,
    /// Named ports: name, protocol, number.
    pub ports: Vec<(String, Proto, u16)>,
    pub ips: Vec<IpAddr>,
}

impl Pod {
    /// `x/a`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, &self.name[1..])
    }
}

/// One connection attempt.
#[derive(Clone, Copy, Debug)]
pub struct Conn<'a> {
    pub from: &'a Pod,
    pub to: &'a Pod,
    pub proto: Proto,
    pub port: u16,
    /// The addresses used (one family).
    pub from_ip: IpAddr,
    pub to_ip: IpAddr,
}

#[derive(Clone, Debug, Default)]
pub struct World {
    pub pods: Vec<Pod>,
    pub namespaces: BTreeMap<String, Labels>,
    /// The policy documents in force (apiVersion, kind, metadata, spec).
    pub policies: Vec<Value>,
}

#[derive(Clone, Copy, PartialEq)]
enum Dir {
    Ingress,
    Egress,
}

impl Dir {
    fn key(self) -> &'static str {
        match self {
            Dir::Ingress => "ingress",
            Dir::Egress => "egress",
        }
    }
}

/// What one direction's policies decide.
enum Decision {
    Unselected,
    Allow,
    Deny,
    Pass,
    EndOfTier,
}

fn is_kube(doc: &Value) -> bool {
    doc["apiVersion"] == "networking.k8s.io/v1"
}

fn labels_of(value: &Value) -> Labels {
    value
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect())
        .unwrap_or_default()
}

fn str_list(value: &Value) -> Vec<&str> {
    value.as_array().map(|a| a.iter().map(|v| v.as_str().unwrap()).collect()).unwrap_or_default()
}

impl World {
    pub fn allowed(&self, c: &Conn) -> bool {
        if std::ptr::eq(c.from, c.to) {
            return true;
        }
        let egress = self.decide(c.from, Dir::Egress, c);
        let ingress = self.decide(c.to, Dir::Ingress, c);
        let passes = |d: Decision| matches!(d, Decision::Unselected | Decision::Allow | Decision::Pass);
        passes(egress) && passes(ingress)
    }

    fn namespace_labels(&self, ns: &str) -> Labels {
        self.namespaces.get(ns).cloned().unwrap_or_default()
    }

    fn pod_at(&self, ip: IpAddr) -> Option<&Pod> {
        self.pods.iter().find(|p| p.ips.contains(&ip))
    }

    /// Every policy, in the order Calico evaluates them.
    fn ordered(&self) -> Vec<(f64, String, &Value)> {
        let mut all: Vec<(f64, String, &Value)> = self
            .policies
            .iter()
            .map(|doc| {
                let name = doc["metadata"]["name"].as_str().unwrap();
                if is_kube(doc) {
                    (1000.0, format!("knp.default.{name}"), doc)
                } else {
                    (doc["spec"]["order"].as_f64().unwrap_or(f64::INFINITY), name.to_string(), doc)
                }
            })
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        all
    }

    fn decide(&self, at: &Pod, dir: Dir, c: &Conn) -> Decision {
        let mut selected = false;
        for (_, _, doc) in self.ordered() {
            let verdict =
                if is_kube(doc) { self.kube_verdict(doc, at, dir, c) } else { self.calico_verdict(doc, at, dir, c) };
            match verdict {
                None => continue,
                Some(None) => selected = true,
                Some(Some(d)) => return d,
            }
        }
        if selected { Decision::EndOfTier } else { Decision::Unselected }
    }

    // Kubernetes: None when the policy does not select `at` for `dir`; Some(Some(Allow)) when a
    // rule allows; Some(None) when it selects and allows nothing of this connection.
    fn kube_verdict(&self, doc: &Value, at: &Pod, dir: Dir, c: &Conn) -> Option<Option<Decision>> {
        let spec = &doc["spec"];
        if doc["metadata"]["namespace"].as_str().unwrap() != at.namespace
            || !label_selector(&spec["podSelector"], &at.labels)
        {
            return None;
        }
        let types = match spec.get("policyTypes") {
            Some(t) => str_list(t).into_iter().map(str::to_lowercase).collect(),
            None if spec.get("egress").is_some() => vec!["ingress".to_string(), "egress".to_string()],
            None => vec!["ingress".to_string()],
        };
        if !types.iter().any(|t| t == dir.key()) {
            return None;
        }
        let (peer_field, peer, peer_ip) =
            if dir == Dir::Ingress { ("from", c.from, c.from_ip) } else { ("to", c.to, c.to_ip) };
        let policy_ns = &at.namespace;
        let allows = spec[dir.key()].as_array().into_iter().flatten().any(|rule| {
            let peers = rule[peer_field].as_array().cloned().unwrap_or_default();
            let peer_ok = peers.is_empty() || peers.iter().any(|p| self.kube_peer(p, policy_ns, peer, peer_ip));
            let ports = rule["ports"].as_array().cloned().unwrap_or_default();
            let port_ok = ports.is_empty() || ports.iter().any(|p| kube_port(p, c));
            peer_ok && port_ok
        });
        Some(allows.then_some(Decision::Allow))
    }

    fn kube_peer(&self, peer: &Value, policy_ns: &str, pod: &Pod, ip: IpAddr) -> bool {
        if let Some(block) = peer.get("ipBlock") {
            let cidr: IpNetwork = block["cidr"].as_str().unwrap().parse().unwrap();
            let except = str_list(&block["except"]).into_iter().any(|e| e.parse::<IpNetwork>().unwrap().contains(ip));
            return cidr.contains(ip) && !except;
        }
        let ns_ok = match peer.get("namespaceSelector") {
            Some(sel) => label_selector(sel, &self.namespace_labels(&pod.namespace)),
            None => pod.namespace == policy_ns,
        };
        let pod_ok = peer.get("podSelector").is_none_or(|sel| label_selector(sel, &pod.labels));
        ns_ok && pod_ok
    }

    // Calico: None when the policy does not apply to `at` for `dir`, else the first deciding
    // rule's action (None when no rule matches).
    fn calico_verdict(&self, doc: &Value, at: &Pod, dir: Dir, c: &Conn) -> Option<Option<Decision>> {
        let spec = &doc["spec"];
        let global = doc["kind"] == "GlobalNetworkPolicy";
        let in_scope = if global {
            spec.get("namespaceSelector")
                .is_none_or(|s| matches(s.as_str().unwrap(), &self.namespace_labels(&at.namespace)))
        } else {
            doc["metadata"]["namespace"].as_str().unwrap_or("default") == at.namespace
        };
        if !in_scope || !matches(spec["selector"].as_str().unwrap_or(""), &at.labels) {
            return None;
        }
        // Calico's default types: Egress alone when only egress rules are given.
        let has = |d: &str| spec[d].as_array().is_some_and(|r| !r.is_empty());
        let types: Vec<String> = match spec.get("types") {
            Some(t) => str_list(t).into_iter().map(str::to_lowercase).collect(),
            None if has("egress") && has("ingress") => vec!["ingress".into(), "egress".into()],
            None if has("egress") => vec!["egress".into()],
            None => vec!["ingress".into()],
        };
        if !types.iter().any(|t| t == dir.key()) {
            return None;
        }
        let own_ns = (!global).then_some(at.namespace.as_str());
        for rule in spec[dir.key()].as_array().into_iter().flatten() {
            if self.calico_rule(rule, own_ns, c) {
                return Some(Some(match rule["action"].as_str().unwrap() {
                    // Logs and goes on to the next rule.
                    "Log" => continue,
                    "Allow" => Decision::Allow,
                    "Deny" => Decision::Deny,
                    "Pass" => Decision::Pass,
                    other => panic!("action {other} is not in the model"),
                }));
            }
        }
        Some(None)
    }

    fn calico_rule(&self, rule: &Value, own_ns: Option<&str>, c: &Conn) -> bool {
        let proto_ok = |field: &str, want: bool| {
            rule.get(field).is_none_or(|p| (p.as_str().unwrap().eq_ignore_ascii_case(c.proto.name())) == want)
        };
        proto_ok("protocol", true)
            && proto_ok("notProtocol", false)
            && self.calico_entity(&rule["source"], own_ns, c.from_ip, None, c)
            && self.calico_entity(&rule["destination"], own_ns, c.to_ip, Some(c.port), c)
    }

    /// One side of a rule; `port` is given for the destination (source ports are not used).
    fn calico_entity(&self, e: &Value, own_ns: Option<&str>, ip: IpAddr, port: Option<u16>, c: &Conn) -> bool {
        let nets = |f: &str| str_list(&e[f]).into_iter().map(|n| n.parse::<IpNetwork>().unwrap()).collect::<Vec<_>>();
        let (in_nets, not_nets) = (nets("nets"), nets("notNets"));
        if !in_nets.is_empty() && !in_nets.iter().any(|n| n.contains(ip)) {
            return false;
        }
        if not_nets.iter().any(|n| n.contains(ip)) {
            return false;
        }
        let selector = e.get("selector").and_then(Value::as_str);
        let ns_selector = e.get("namespaceSelector").and_then(Value::as_str);
        if selector.is_some() || ns_selector.is_some() {
            let Some(pod) = self.pod_at(ip) else { return false };
            let ns_ok = match (ns_selector, own_ns) {
                (Some(s), _) => matches(s, &self.namespace_labels(&pod.namespace)),
                (None, Some(own)) => pod.namespace == own,
                (None, None) => true,
            };
            if !ns_ok || !matches(selector.unwrap_or(""), &pod.labels) {
                return false;
            }
        }
        if let Some(s) = e.get("notSelector").and_then(Value::as_str)
            && self.pod_at(ip).is_some_and(|p| matches(s, &p.labels))
        {
            return false;
        }
        let Some(port) = port else { return true };
        let port_in = |list: &Value| list.as_array().into_iter().flatten().any(|p| calico_port(p, c, port));
        (e.get("ports").is_none() || port_in(&e["ports"])) && !port_in(&e["notPorts"])
    }
}

/// A Kubernetes label selector (`{}`: everything).
fn label_selector(sel: &Value, labels: &Labels) -> bool {
    let by_labels = labels_of(&sel["matchLabels"]).iter().all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = sel["matchExpressions"].as_array().into_iter().flatten().all(|x| {
        let value = labels.get(x["key"].as_str().unwrap());
        let values = str_list(&x["values"]);
        match x["operator"].as_str().unwrap() {
            "In" => value.is_some_and(|v| values.contains(&v.as_str())),
            "NotIn" => !value.is_some_and(|v| values.contains(&v.as_str())),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => panic!("operator {other} is not in the model"),
        }
    });
    by_labels && by_expressions
}

/// A Kubernetes port entry: protocol (default TCP), number or the destination's named port,
/// `endPort`.
fn kube_port(p: &Value, c: &Conn) -> bool {
    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
    if !proto.eq_ignore_ascii_case(c.proto.name()) {
        return false;
    }
    match &p["port"] {
        Value::Null => true,
        Value::Number(n) => {
            let lo = n.as_u64().unwrap();
            let hi = p.get("endPort").and_then(Value::as_u64).unwrap_or(lo);
            (lo..=hi).contains(&u64::from(c.port))
        }
        Value::String(name) => named(c, name, c.port),
        other => panic!("port {other} is not in the model"),
    }
}

/// A Calico port: a number, `lo:hi`, or the destination's named port.
fn calico_port(p: &Value, c: &Conn, port: u16) -> bool {
    match p {
        Value::Number(n) => n.as_u64() == Some(u64::from(port)),
        Value::String(s) => match s.split_once(':') {
            Some((lo, hi)) => (lo.parse().unwrap()..=hi.parse().unwrap()).contains(&port),
            None => named(c, s, port),
        },
        other => panic!("port {other} is not in the model"),
    }
}

fn named(c: &Conn, name: &str, port: u16) -> bool {
    c.to.ports.iter().any(|(n, proto, number)| n == name && *proto == c.proto && *number == port)
}
