//! `tortie lab inspect`: what of a lab exists right now — each node's namespace, its
//! interfaces' addresses, its processes (pid, alive) and its pods — read from the kernel and
//! the lab directory, as `containerlab inspect` reads Docker.

use super::plan::{LabPlan, NodeKind, NodePlan};
use super::runner::{pid_alive, read_pid};
use crate::netns::run_output;
use serde::Serialize;

/// The lab as found.
#[derive(Debug, Clone, Serialize)]
pub struct LabInspection {
    pub lab: String,
    /// The lab directory (logs, pid files, sockets).
    pub dir: String,
    pub nodes: Vec<NodeInspection>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeInspection {
    pub name: String,
    /// `linux` or `bridge`.
    pub kind: String,
    /// The node's network namespace (a bridge's is the lab's host namespace).
    pub namespace: String,
    /// Whether that namespace (for a bridge: the bridge device) exists.
    pub exists: bool,
    /// `ifname address/len` of each global address on the node's interfaces.
    pub addresses: Vec<String>,
    pub processes: Vec<ProcessInspection>,
    pub pods: Vec<PodInspection>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessInspection {
    /// The program (first word of its command line).
    pub program: String,
    /// From its pid file; none when it was never started (or the lab is down).
    pub pid: Option<u32>,
    pub alive: bool,
    pub log: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PodInspection {
    pub name: String,
    pub namespace: String,
    pub addresses: Vec<String>,
}

impl LabInspection {
    /// Whether any of the lab's namespaces exists.
    pub fn running(&self) -> bool {
        self.nodes.iter().any(|n| n.kind == "linux" && n.exists)
    }

    /// The node owning `address` (an interface address, without its length), if any.
    pub fn node_with_address(&self, address: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| {
                n.addresses
                    .iter()
                    .any(|a| a.split_whitespace().nth(1).and_then(|c| c.split('/').next()) == Some(address))
            })
            .map(|n| n.name.as_str())
    }
}

/// Reads what exists of `plan`.
pub fn inspect(plan: &LabPlan) -> LabInspection {
    let existing = super::runner::namespaces();
    let nodes = plan.nodes.iter().map(|n| inspect_node(plan, n, &existing)).collect();
    LabInspection { lab: plan.name.clone(), dir: plan.dir.display().to_string(), nodes }
}

fn inspect_node(plan: &LabPlan, n: &NodePlan, existing: &[String]) -> NodeInspection {
    let ns_exists = existing.contains(&n.ns);
    let (kind, exists, addresses) = match n.kind {
        NodeKind::Linux => ("linux", ns_exists, if ns_exists { addresses_in(&n.ns, None) } else { Vec::new() }),
        NodeKind::Bridge => {
            let exists = ns_exists && run_output(&["ip", "-n", &plan.host_ns, "link", "show", "dev", &n.name]).is_ok();
            ("bridge", exists, if exists { addresses_in(&plan.host_ns, Some(&n.name)) } else { Vec::new() })
        }
    };
    let processes = n
        .processes
        .iter()
        .enumerate()
        .map(|(i, argv)| {
            let pid = read_pid(&n.dir.join(format!("process-{i}.pid")));
            ProcessInspection {
                program: argv.first().cloned().unwrap_or_default(),
                pid,
                alive: pid.is_some_and(pid_alive),
                log: n.dir.join(format!("process-{i}.log")).display().to_string(),
            }
        })
        .collect();
    // Pods' namespaces are `<node namespace>-<pod>` (see lab::pod).
    let prefix = format!("{}-", n.ns);
    let pods = match n.kind {
        NodeKind::Linux => existing
            .iter()
            .filter_map(|e| {
                let pod = e.strip_prefix(&prefix)?;
                // Another node's namespace can share the prefix (`n1` and `n1-b`).
                if plan.nodes.iter().any(|other| other.ns == *e) {
                    return None;
                }
                Some(PodInspection { name: pod.to_string(), namespace: e.clone(), addresses: addresses_in(e, None) })
            })
            .collect(),
        NodeKind::Bridge => Vec::new(),
    };
    NodeInspection {
        name: n.name.clone(),
        kind: kind.into(),
        namespace: n.ns.clone(),
        exists,
        addresses,
        processes,
        pods,
    }
}

/// Global addresses in `ns` (of `dev` only, if given) as `ifname address/len`.
fn addresses_in(ns: &str, dev: Option<&str>) -> Vec<String> {
    let mut argv = vec!["ip", "-j", "-n", ns, "addr", "show"];
    if let Some(dev) = dev {
        argv.extend(["dev", dev]);
    }
    let Ok(out) = run_output(&argv) else { return Vec::new() };
    parse_addresses(&String::from_utf8_lossy(&out.stdout))
}

/// `ip -j addr show`'s output as `ifname address/len`, global scope only (no loopback, no
/// link-local).
pub fn parse_addresses(json: &str) -> Vec<String> {
    let links: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    let mut found = Vec::new();
    for link in &links {
        let ifname = link["ifname"].as_str().unwrap_or("?");
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if a["scope"] != "global" {
                continue;
            }
            if let (Some(local), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64()) {
                found.push(format!("{ifname} {local}/{len}"));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_global_addresses_are_listed_with_their_interface() {
        let json = r#"[{"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host"}]},
            {"ifname":"eth1","addr_info":[{"family":"inet","local":"10.10.0.11","prefixlen":24,"scope":"global"},
            {"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"}]}]"#;
        assert_eq!(parse_addresses(json), vec!["eth1 10.10.0.11/24".to_string()]);
        assert!(parse_addresses("not json").is_empty());
    }
}
