//! The incremental program equals the full compile of the same inputs after any sequence of
//! endpoint changes, and a change it reports as set elements only leaves the rules as they were.
//! One renderer kept across the changes (it reuses what did not change) renders each program
//! as a renderer from scratch does.

use super::compile::compile;
use super::differential_tests::{Pick, policies};
use super::incremental::{Entry, Incremental};
use super::model::{Endpoint, NamedPort, Namespaces};
use crate::dataplane::nftables::policy::{Renderer, section};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// An endpoint from small pools of names, addresses and labels, so that changes collide:
/// two keys with the same pod name or address, a named port's number changing.
fn entry(p: &mut Pick) -> Entry {
    let mut labels = BTreeMap::new();
    if let Some(app) = p.one(&[Some("web"), Some("db"), None]) {
        labels.insert("app".to_string(), app.to_string());
    }
    if p.n(2) == 0 {
        labels.insert("tier".to_string(), "1".to_string());
    }
    let mut addresses: Vec<IpAddr> = vec![format!("10.0.0.{}", 1 + p.n(6)).parse().unwrap()];
    if p.n(3) == 0 {
        addresses.push(format!("fd00::{}", 1 + p.n(6)).parse().unwrap());
    }
    let mut ports = Vec::new();
    if p.n(2) == 0 {
        ports.push(NamedPort { name: "http".into(), protocol: 6, port: p.one(&[80, 8080, 9090]) });
    }
    if p.n(3) == 0 {
        ports.push(NamedPort { name: "dns".into(), protocol: 17, port: 53 });
    }
    let namespace = p.one(&["a", "b"]).to_string();
    let endpoint = Endpoint {
        name: format!("{namespace}/pod{}", p.n(3)),
        namespace,
        labels,
        service_account: p.one(&[None, Some("sa1".to_string())]),
        addresses,
        ports,
    };
    let interface = p.one(&[None, None, Some("cali1"), Some("cali2"), Some("cali3")]).map(String::from);
    Entry { endpoint: endpoint.into(), interface }
}

fn full(inc: &Incremental) -> super::Program {
    let (endpoints, local) = inc.inputs();
    compile(inc.policies(), &endpoints, inc.namespaces(), &local)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn incremental_updates_equal_the_full_compile(numbers in proptest::collection::vec(any::<u64>(), 600)) {
        let mut p = Pick { numbers, at: 0 };
        let policies = policies(&mut p);
        let namespaces = Namespaces(BTreeMap::from([
            ("a".to_string(), BTreeMap::from([("team".to_string(), "x".to_string())])),
            ("b".to_string(), BTreeMap::new()),
        ]));
        let mut entries = BTreeMap::new();
        for _ in 0..p.n(5) {
            entries.insert(format!("h{}", p.n(6)), entry(&mut p));
        }
        let mut inc = Incremental::new(policies, namespaces, entries);
        prop_assert_eq!(inc.program(), &full(&inc));
        let mut renderer = Renderer::default();
        for step in 0..12 {
            let key = format!("h{}", p.n(6));
            let new = if p.n(4) == 0 { None } else { Some(entry(&mut p)) };
            let before = inc.program().clone();
            let change = inc.update(&key, new.clone());
            let expected = full(&inc);
            prop_assert_eq!(inc.program(), &expected, "step {}: {} := {:?}", step, key, new);
            prop_assert_eq!(renderer.section(inc.program()), section(&expected), "step {}: rendered", step);
            if !change.recompiled {
                prop_assert_eq!(&before.policies, &expected.policies, "rules changed without a recompile");
                prop_assert_eq!(change.endpoints, before.endpoints != expected.endpoints);
                let changed: Vec<&String> =
                    expected.sets.iter().filter(|(n, e)| before.sets.get(*n) != Some(e)).map(|(n, _)| n).collect();
                prop_assert_eq!(change.sets.iter().collect::<Vec<_>>(), changed);
            }
        }
    }
}

/// A policy change: one of a freshly generated set (its name often one already held, so a
/// replacement), or the removal of a held name or a name nobody holds.
fn policy_change(p: &mut Pick, inc: &Incremental) -> (String, Option<super::Policy>) {
    let fresh = policies(p);
    if p.n(3) == 0 || fresh.is_empty() {
        let mut names: Vec<String> = inc.policies().iter().map(|q| q.name.clone()).collect();
        names.push("global/nobody".to_string());
        return (p.one(&names), None);
    }
    let policy = p.one(&fresh);
    (policy.name.clone(), Some(policy))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn policy_and_endpoint_changes_equal_the_full_compile(numbers in proptest::collection::vec(any::<u64>(), 1500)) {
        let mut p = Pick { numbers, at: 0 };
        let policies = policies(&mut p);
        let team = |t: &str| BTreeMap::from([("team".to_string(), t.to_string())]);
        let namespaces = Namespaces(BTreeMap::from([("a".to_string(), team("x")), ("b".to_string(), BTreeMap::new())]));
        let mut entries = BTreeMap::new();
        for _ in 0..p.n(5) {
            entries.insert(format!("h{}", p.n(6)), entry(&mut p));
        }
        let mut inc = Incremental::new(policies, namespaces, entries);
        let mut renderer = Renderer::default();
        for step in 0..12 {
            let before = inc.program().clone();
            let (what, change) = match p.n(5) {
                0 | 1 => {
                    let (name, policy) = policy_change(&mut p, &inc);
                    (format!("policy {name} := {policy:?}"), inc.set_policy(&name, policy))
                }
                2 => {
                    let labels = if p.n(2) == 0 { team("x") } else { team("y") };
                    let namespaces = Namespaces(BTreeMap::from([("b".to_string(), labels)]));
                    (format!("namespaces := {namespaces:?}"), inc.set_namespaces(namespaces))
                }
                _ => {
                    let key = format!("h{}", p.n(6));
                    let new = if p.n(4) == 0 { None } else { Some(entry(&mut p)) };
                    (format!("{key} := {new:?}"), inc.update(&key, new))
                }
            };
            let expected = full(&inc);
            prop_assert_eq!(inc.program(), &expected, "step {}: {}", step, what);
            prop_assert_eq!(renderer.section(inc.program()), section(&expected), "step {}: rendered", step);
            if change.is_empty() {
                prop_assert_eq!(&before, &expected, "step {}: reported no change: {}", step, what);
            }
        }
    }
}
