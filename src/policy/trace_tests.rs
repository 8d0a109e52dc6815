use super::*;
use crate::datastore::resources::{KubeNetworkPolicy, Resource};
use crate::policy::kube;
use serde_json::json;

fn pod(name: &str, labels: &[(&str, &str)], address: &str) -> Endpoint {
    Endpoint {
        name: format!("prod/{name}"),
        namespace: "prod".into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        addresses: vec![address.parse().unwrap()],
        ..Endpoint::default()
    }
}

fn db_from_web_on_8080() -> Policy {
    let spec = json!({"podSelector": {"matchLabels": {"app": "db"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "other"}}}]},
                    {"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 8080}]}]});
    let r: KubeNetworkPolicy = serde_json::from_value(spec).unwrap();
    r.validate().unwrap();
    kube::policy("prod", "db", &r).unwrap()
}

fn run(to: Target, port: u16) -> Result<serde_json::Value, TraceError> {
    let endpoints = [pod("web", &[("app", "web")], "10.0.0.2"), pod("db", &[("app", "db")], "10.0.0.1")];
    let t = trace(&[db_from_web_on_8080()], &endpoints, &Namespaces::default(), "prod/web", &to, "TCP", port)?;
    Ok(serde_json::to_value(t).unwrap())
}

#[test]
fn a_trace_names_the_deciding_policy_and_rule_per_direction() {
    assert_eq!(
        run(Target::Pod("prod/db".into()), 8080).unwrap(),
        json!({"from": "prod/web", "from_address": "10.0.0.2", "to": "prod/db", "to_address": "10.0.0.1",
            "protocol": "tcp", "port": 8080,
            "egress": {"endpoint": "prod/web", "verdict": "allow", "reason": "no policy selects it for this direction"},
            "ingress": {"endpoint": "prod/db", "verdict": "allow", "policy": "prod/knp.default.db", "rule": 1,
                "reason": "Allow"},
            "allowed": true})
    );
    assert_eq!(
        run(Target::Pod("prod/db".into()), 80).unwrap()["ingress"],
        json!({"endpoint": "prod/db", "verdict": "deny", "reason": "selected by a policy, and no rule matched"})
    );
}

#[test]
fn a_trace_to_an_address_that_is_no_pod_has_no_ingress() {
    let t = run(Target::Address("192.0.2.9".parse().unwrap()), 443).unwrap();
    assert_eq!(t["to_address"], "192.0.2.9");
    assert!(t.get("to").is_none() && t.get("ingress").is_none(), "{t}");
    assert_eq!(t["allowed"], true);
    // An address of a pod is that pod.
    assert_eq!(run(Target::Address("10.0.0.1".parse().unwrap()), 80).unwrap()["to"], "prod/db");
}

#[test]
fn a_trace_names_an_unknown_pod_and_a_bad_protocol() {
    let e = run(Target::Pod("prod/nope".into()), 80).unwrap_err();
    assert_eq!(e.to_string(), "no pod prod/nope in the cluster");
    let endpoints = [pod("web", &[("app", "web")], "10.0.0.2")];
    let to = Target::Pod("prod/web".into());
    let e = trace(&[], &endpoints, &Namespaces::default(), "prod/web", &to, "icmp", 80).unwrap_err();
    assert_eq!(e, TraceError::Invalid("protocol \"icmp\": use tcp, udp or sctp".into()));
}
