//! Reading the manifests in `deploy/` and checking API calls against their ClusterRole.
#![allow(dead_code)]

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use tortie::datastore::kube_standin::ApiCall;

/// `deploy/` in the source tree.
pub fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// The parts, in file-name order (the order `scripts/gen-deploy.sh` concatenates them in).
pub fn parts() -> Vec<PathBuf> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join("parts"))
        .expect("deploy/parts")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    parts.sort();
    parts
}

/// Every document of a multi-document YAML text, as JSON values.
pub fn documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("a YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Every document of every part.
pub fn all_documents() -> Vec<(PathBuf, Value)> {
    parts()
        .into_iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(&p).expect("a readable part");
            documents(&text).into_iter().map(move |d| (p.clone(), d))
        })
        .collect()
}

/// The agent's ClusterRole.
pub fn cluster_role() -> ClusterRole {
    let doc = all_documents()
        .into_iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == "ClusterRole")
        .expect("a ClusterRole in deploy/parts");
    serde_json::from_value(doc).expect("a ClusterRole")
}

fn has(list: &Option<Vec<String>>, wanted: &str) -> bool {
    list.as_deref().unwrap_or_default().iter().any(|x| x == wanted || x == "*")
}

/// The resource as RBAC names it: `nodes` or `nodes/status`.
pub fn rbac_resource(call: &ApiCall) -> String {
    if call.subresource.is_empty() { call.resource.clone() } else { format!("{}/{}", call.resource, call.subresource) }
}

/// Whether `rule` allows `call`, by Kubernetes' RBAC rule matching.
pub fn rule_allows(rule: &PolicyRule, call: &ApiCall) -> bool {
    let names = rule.resource_names.as_deref().unwrap_or_default();
    has(&rule.api_groups, &call.group)
        && has(&rule.resources, &rbac_resource(call))
        && rule.verbs.iter().any(|v| *v == call.verb || v == "*")
        && (names.is_empty() || names.contains(&call.name))
}

/// The namespace of the agent's ServiceAccount: in a pod, its client's default namespace.
pub fn agent_namespace() -> String {
    let account = all_documents().into_iter().map(|(_, d)| d).find(|d| d["kind"] == "ServiceAccount");
    account
        .and_then(|a| a["metadata"]["namespace"].as_str().map(str::to_string))
        .expect("the ServiceAccount's namespace")
}

/// The agent's namespaced Roles (each grants only within its own namespace).
pub fn roles() -> Vec<Role> {
    all_documents()
        .into_iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"] == "Role")
        .map(|d| serde_json::from_value(d).expect("a Role"))
        .collect()
}

/// Whether one of `roles` allows `call` in the call's namespace.
fn roles_allow(roles: &[Role], call: &ApiCall) -> bool {
    roles.iter().any(|role| {
        role.metadata.namespace.as_deref() == Some(call.namespace.as_str())
            && role.rules.as_deref().unwrap_or_default().iter().any(|r| rule_allows(r, call))
    })
}

/// The calls no rule of `role` (nor of `roles`, in their namespaces) allows.
pub fn denied(role: &ClusterRole, roles: &[Role], calls: &[ApiCall]) -> Vec<ApiCall> {
    let rules = role.rules.as_deref().unwrap_or_default();
    let mut out: Vec<ApiCall> =
        calls.iter().filter(|c| !rules.iter().any(|r| rule_allows(r, c)) && !roles_allow(roles, c)).cloned().collect();
    out.sort();
    out.dedup();
    out
}

/// Every (group, resource, verb) `role` and `roles` grant.
pub fn grants(role: &ClusterRole, roles: &[Role]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let rules = role.rules.iter().chain(roles.iter().flat_map(|r| r.rules.iter())).flatten();
    for rule in rules {
        for group in rule.api_groups.as_deref().unwrap_or_default() {
            for resource in rule.resources.as_deref().unwrap_or_default() {
                for verb in &rule.verbs {
                    out.push((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    out
}
