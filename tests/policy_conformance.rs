//! Network policy conformance on real traffic, in the spirit of the Kubernetes e2e
//! network-policy tests and Cyclonus: a three-node lab (containerlab/policy-matrix.clab.yml)
//! with namespaces x, y, z and pods a, b, c (one per node) serving TCP and UDP on 80 and 81.
//! Each case applies policies with `tortie apply` (or relabels, or adds a pod), then probes all
//! 81 pairs × {TCP, UDP} × {80, 81} at once until the verdicts equal those of the reference
//! model in `policy_conformance/model.rs` (independent of `src/policy`), or prints the grids.
//! The same lab then carries IPv6 traffic under policy and an agent killed under traffic.

mod support;

#[path = "policy_conformance/bad_input.rs"]
mod bad_input;
#[path = "policy_conformance/cases.rs"]
mod cases;
#[path = "policy_conformance/ipv6.rs"]
mod ipv6;
#[path = "policy_conformance/model.rs"]
mod model;
#[path = "policy_conformance/probe.rs"]
mod probe;
#[path = "policy_conformance/restart.rs"]
mod restart;
#[path = "policy_conformance/selector.rs"]
mod selector;

use cases::{Case, Change};
use model::{Conn, Pod, Proto, World};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use support::lab::Lab;
use tortie::datastore::Datastore;
use tortie::datastore::resources::IpamBlock;
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};

/// How long a change may take to be enforced on every node.
const ENFORCED_WITHIN: Duration = Duration::from_secs(30);
/// The matrix's nodes and the pod each has in every namespace.
const NODES: [(&str, &str); 3] = [("node1", "a"), ("node2", "b"), ("node3", "c")];
const NAMESPACES: [&str; 3] = ["x", "y", "z"];

/// The lab, its pods as the model sees them, and the files `tortie apply` reads.
struct Matrix {
    lab: Lab,
    world: World,
    base: World,
}

impl Matrix {
    fn up() -> Matrix {
        let lab = Lab::prepare("policy-matrix", "tpm", |_| {});
        lab.up();
        let mut world = World::default();
        for (node, letter) in NODES {
            for ns in NAMESPACES {
                let name = format!("{ns}{letter}");
                let mut labels = vec![("pod", letter)];
                let mut ports = vec![("dns".to_string(), Proto::Udp, 81)];
                match letter {
                    "a" => {
                        labels.push(("tier", "front"));
                        ports.push(("web".into(), Proto::Tcp, 80));
                    }
                    "b" => {
                        labels.push(("tier", "back"));
                        ports.push(("web".into(), Proto::Tcp, 81));
                    }
                    _ => {}
                }
                world.pods.push(pod(&lab, node, &name, ns, &labels, ports));
            }
        }
        let mut m = Matrix { lab, base: World::default(), world };
        fn labels(ns: &str) -> Vec<(&str, &str)> {
            match ns {
                "z" => vec![("ns", "z")],
                _ => vec![("ns", ns), ("env", "prod")],
            }
        }
        let docs = NAMESPACES.iter().map(|ns| cases::namespace(ns, &labels(ns))).collect();
        m.tortie_f("apply", docs);
        for ns in NAMESPACES {
            m.world.namespaces.insert(ns.into(), to_labels(&labels(ns)));
        }
        for p in &m.world.pods {
            probe::serve(&m.lab.pod_ns(&p.node, &p.name));
        }
        m.base = m.world.clone();
        m
    }

    /// `tortie apply|delete -f` of `docs`, run inside node1.
    fn tortie_f(&self, verb: &str, docs: Vec<serde_json::Value>) {
        let text: String = docs.iter().map(|d| format!("---\n{d}\n")).collect();
        let file = self.lab.dir().join("case.yaml");
        std::fs::write(&file, text).unwrap();
        let out = self.lab.exec("node1", &[env!("CARGO_BIN_EXE_tortie"), verb, "-f", file.to_str().unwrap()]);
        assert!(out.status.success(), "tortie {verb}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn datastore<T>(&self, f: impl AsyncFnOnce(&Datastore) -> T) -> T {
        let db = self.lab.dir().join("tortie.db");
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
            let ds = Datastore::new(SqliteBackend::open(&db, SqliteOptions::default()).await.unwrap());
            f(&ds).await
        })
    }

    fn change(&mut self, change: &Change) {
        match change {
            Change::Apply(docs) => {
                self.tortie_f("apply", docs.clone());
                for doc in docs {
                    let same = |p: &serde_json::Value| p["kind"] == doc["kind"] && p["metadata"] == doc["metadata"];
                    if doc["kind"] == "Namespace" {
                        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
                        let labels = serde_json::from_value(doc["metadata"]["labels"].clone()).unwrap();
                        self.world.namespaces.insert(name, labels);
                    } else {
                        self.world.policies.retain(|p| !same(p));
                        self.world.policies.push(doc.clone());
                    }
                }
            }
            Change::Delete(docs) => {
                self.tortie_f("delete", docs.clone());
                self.world
                    .policies
                    .retain(|p| !docs.iter().any(|d| d["kind"] == p["kind"] && d["metadata"] == p["metadata"]));
            }
            Change::LabelPod(name, labels) => {
                let labels = to_labels(labels);
                let pod = self.world.pods.iter_mut().find(|p| p.name == *name).unwrap();
                pod.labels = labels.clone();
                let (ns, name) = (pod.namespace.clone(), name.to_string());
                self.datastore(async |ds| relabel(ds, &ns, &name, &labels).await);
            }
            Change::LabelNamespace(ns, labels) => self.change(&Change::Apply(vec![cases::namespace(ns, labels)])),
            Change::AddPod(node, name, ns, labels) => {
                let mut entry = format!("{name},namespace={ns}");
                labels.iter().for_each(|(k, v)| entry.push_str(&format!(",label={k}={v}")));
                let out = self.lab.exec(node, &[env!("CARGO_BIN_EXE_tortie"), "lab", "pod", "add", &entry]);
                assert!(out.status.success(), "pod add: {}", String::from_utf8_lossy(&out.stderr));
                let pod = pod(&self.lab, node, name, ns, labels, vec![]);
                probe::serve(&self.lab.pod_ns(node, name));
                self.world.pods.push(pod);
            }
        }
    }

    /// Back to no policies and the original labels (new pods stay).
    fn reset(&mut self) {
        if !self.world.policies.is_empty() {
            self.change(&Change::Delete(self.world.policies.clone()));
        }
        let changed: Vec<(String, Vec<(String, String)>)> = self
            .base
            .namespaces
            .iter()
            .filter(|(ns, labels)| self.world.namespaces.get(*ns) != Some(labels))
            .map(|(ns, labels)| (ns.clone(), labels.clone().into_iter().collect()))
            .collect();
        for (ns, labels) in changed {
            let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            self.tortie_f("apply", vec![cases::namespace(&ns, &pairs)]);
            self.world.namespaces.insert(ns, labels.into_iter().collect());
        }
        for base in &self.base.pods {
            let pod = self.world.pods.iter_mut().find(|p| p.name == base.name).unwrap();
            if pod.labels != base.labels {
                pod.labels = base.labels.clone();
                let (ns, name, labels) = (pod.namespace.clone(), pod.name.clone(), pod.labels.clone());
                self.datastore(async |ds| relabel(ds, &ns, &name, &labels).await);
            }
        }
    }

    /// Probes until the matrix over `family` (4 or 6) is what the model says, or the deadline;
    /// the error is the grids of the last round.
    fn check(&self, family: u8) -> Result<u32, String> {
        let ip = |p: &Pod| *p.ips.iter().find(|a| a.is_ipv4() == (family == 4)).unwrap();
        let pods = &self.world.pods;
        let expected: Vec<(probe::Probe, bool)> = pods
            .iter()
            .enumerate()
            .flat_map(|(i, from)| {
                pods.iter().enumerate().flat_map(move |(j, to)| {
                    probe::PROTOS.into_iter().flat_map(move |proto| {
                        probe::PORTS.into_iter().map(move |port| {
                            let conn = Conn { from, to, proto, port, from_ip: ip(from), to_ip: ip(to) };
                            ((i, j, proto, port), self.world.allowed(&conn))
                        })
                    })
                })
            })
            .collect();
        let deadline = Instant::now() + ENFORCED_WITHIN;
        let mut rounds = 0;
        loop {
            let mut observed = probe::run(pods, |p| self.lab.pod_ns(&p.node, &p.name), ip);
            observed.sort_by_key(|(p, _)| *p);
            rounds += 1;
            let diff = probe::diff(pods, &expected, &observed);
            if diff.is_empty() {
                return Ok(rounds);
            }
            if Instant::now() > deadline {
                return Err(diff);
            }
        }
    }
}

fn to_labels(pairs: &[(impl ToString, impl ToString)]) -> selector::Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn pod(lab: &Lab, node: &str, name: &str, ns: &str, labels: &[(&str, &str)], ports: Vec<(String, Proto, u16)>) -> Pod {
    let ips = vec![IpAddr::V4(lab.pod_ip(node, name)), IpAddr::V6(lab.pod_ip6(node, name))];
    Pod { namespace: ns.into(), name: name.into(), node: node.into(), labels: to_labels(labels), ports, ips }
}

/// Replaces a pod's labels where every node reads them: its allocation's attributes.
async fn relabel(ds: &Datastore, ns: &str, pod: &str, labels: &selector::Labels) {
    for (name, stored) in ds.list::<IpamBlock>().await.unwrap().items.into_iter().map(|s| (s.name.clone(), s)) {
        let mut block = stored.spec.clone();
        let mut touched = false;
        for attr in &mut block.attributes {
            if attr.secondary.get("namespace") == Some(ns) && attr.secondary.get("pod") == Some(pod) {
                attr.secondary.insert("labels", serde_json::to_string(labels).unwrap());
                touched = true;
            }
        }
        if touched {
            ds.update(&name, &block, stored.revision).await.unwrap();
        }
    }
}

/// One lab for the whole matrix (bringing one up is the slow part): the cases over IPv4, then
/// IPv6, then an agent killed under traffic.
#[test]
fn a_three_node_lab_enforces_policy_as_the_reference_model_says_over_ipv4_ipv6_and_a_restart() {
    let mut m = Matrix::up();
    m.check(4).unwrap_or_else(|d| panic!("without policy every pair connects:{d}"));
    let cases: Vec<Case> = cases::all(&m.world);
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    let started = Instant::now();
    for case in &cases {
        let t = Instant::now();
        for (i, step) in case.steps.iter().enumerate() {
            step.iter().for_each(|c| m.change(c));
            match m.check(4) {
                Ok(rounds) => eprintln!("{}: step {i} enforced after {rounds} rounds", case.name),
                Err(d) => {
                    eprintln!("{}: step {i} FAILED{d}", case.name);
                    failures.push(format!("{} (step {i}):{d}", case.name));
                }
            }
        }
        m.reset();
        if let Err(d) = m.check(4) {
            failures.push(format!("{}: after deleting its policies:{d}", case.name));
        }
        eprintln!("{}: {:?}", case.name, t.elapsed());
    }
    eprintln!("{} cases in {:?}", cases.len(), started.elapsed());
    ipv6::run(&mut m);
    restart::run(&mut m);
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
