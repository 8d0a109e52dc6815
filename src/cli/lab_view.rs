//! `tortie lab inspect`'s table: one row per node, in the layout `containerlab inspect` uses
//! (pure, so its golden test needs no lab).

use super::table;
use crate::lab::inspect::{LabInspection, NodeInspection};

/// The node's state: running, partly running (a process died), or down.
fn state(n: &NodeInspection) -> &'static str {
    let alive = n.processes.iter().filter(|p| p.alive).count();
    match (n.exists, n.processes.len()) {
        (false, _) => "down",
        (true, 0) => "up",
        (true, total) if alive == total => "running",
        (true, _) if alive == 0 => "stopped",
        (true, _) => "degraded",
    }
}

fn processes(n: &NodeInspection, wide: bool) -> String {
    let cells: Vec<String> = n
        .processes
        .iter()
        .map(|p| {
            let program = p.program.rsplit('/').next().unwrap_or_default();
            let pid = p.pid.map_or("-".to_string(), |pid| pid.to_string());
            let dead = if p.pid.is_some() && !p.alive { " (dead)" } else { "" };
            let log = if wide { format!(" {}", p.log) } else { String::new() };
            format!("{program}[{pid}]{dead}{log}")
        })
        .collect();
    cells.join(", ")
}

fn pods(n: &NodeInspection) -> String {
    let cells: Vec<String> = n
        .pods
        .iter()
        .map(|p| {
            let addrs: Vec<&str> = p.addresses.iter().filter_map(|a| a.split_whitespace().nth(1)).collect();
            if addrs.is_empty() { p.name.clone() } else { format!("{} {}", p.name, addrs.join(" ")) }
        })
        .collect();
    cells.join(", ")
}

/// The table (`wide` adds each process's log file).
pub fn render(lab: &LabInspection, wide: bool) -> String {
    let rows: Vec<Vec<String>> = lab
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                n.kind.clone(),
                n.namespace.clone(),
                state(n).to_string(),
                n.addresses.join(", "),
                processes(n, wide),
                pods(n),
            ]
        })
        .collect();
    format!(
        "lab {} ({})\n{}",
        lab.lab,
        lab.dir,
        table::render(&["NODE", "KIND", "NAMESPACE", "STATE", "ADDRESSES", "PROCESSES", "PODS"], &rows)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::inspect::{PodInspection, ProcessInspection};

    fn node(name: &str, exists: bool, alive: &[bool]) -> NodeInspection {
        NodeInspection {
            name: name.into(),
            kind: "linux".into(),
            namespace: format!("clab-q-{name}"),
            exists,
            addresses: if exists { vec!["eth1 10.10.0.11/24".into()] } else { vec![] },
            processes: alive
                .iter()
                .enumerate()
                .map(|(i, a)| ProcessInspection {
                    program: "/usr/bin/tortie".into(),
                    pid: exists.then_some(100 + i as u32),
                    alive: *a,
                    log: format!("/l/clab-q/{name}/process-{i}.log"),
                })
                .collect(),
            pods: if exists {
                vec![PodInspection {
                    name: "pod1".into(),
                    namespace: format!("clab-q-{name}-pod1"),
                    addresses: vec!["eth0 10.244.0.5/32".into()],
                }]
            } else {
                vec![]
            },
        }
    }

    #[test]
    fn one_row_per_node_with_state_processes_and_pods() {
        let lab = LabInspection {
            lab: "q".into(),
            dir: "/l/clab-q".into(),
            nodes: vec![node("node1", true, &[true]), node("node2", true, &[false]), node("node3", false, &[false])],
        };
        let expected = "\
lab q (/l/clab-q)
+-------+-------+--------------+---------+--------------------+--------------------+--------------------+
| NODE  | KIND  |  NAMESPACE   |  STATE  |     ADDRESSES      |     PROCESSES      |        PODS        |
+-------+-------+--------------+---------+--------------------+--------------------+--------------------+
| node1 | linux | clab-q-node1 | running | eth1 10.10.0.11/24 | tortie[100]        | pod1 10.244.0.5/32 |
| node2 | linux | clab-q-node2 | stopped | eth1 10.10.0.11/24 | tortie[100] (dead) | pod1 10.244.0.5/32 |
| node3 | linux | clab-q-node3 | down    |                    | tortie[-]          |                    |
+-------+-------+--------------+---------+--------------------+--------------------+--------------------+
";
        assert_eq!(render(&lab, false), expected);
        assert!(render(&lab, true).contains("tortie[100] /l/clab-q/node1/process-0.log"));
    }
}
