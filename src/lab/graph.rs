//! `tortie lab graph`: the topology as a Graphviz DOT graph — nodes, links with their
//! interfaces and, while the lab runs, the BGP sessions its tortie agents report, coloured by
//! state. Drawing it as SVG or PNG is Graphviz's `dot`.

use super::inspect::LabInspection;
use super::plan::{LabPlan, NodeKind};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// One BGP session as one of the lab's agents reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The reporting node.
    pub node: String,
    pub peer_address: String,
    /// The state as the agent words it (`established`, `active`, …).
    pub state: String,
}

/// The colour of links and nodes of a lab that is not running.
const DOWN: &str = "grey60";

fn state_colour(state: &str) -> &'static str {
    match state.to_ascii_lowercase().as_str() {
        "established" => "forestgreen",
        "opensent" | "openconfirm" | "connect" => "orange",
        _ => "red",
    }
}

/// DOT's double-quoted string.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The program a node runs, for its label (`tortie`, `bird`, `frr`, or its command).
fn program(argv0: &str) -> &str {
    match argv0.rsplit('/').next().unwrap_or(argv0) {
        "zebra" | "bgpd" => "frr",
        "sh" => "cmd",
        name => name,
    }
}

/// The DOT text of `plan`; `found` is what runs (None: not inspected), `sessions` what the
/// agents report. A lab that is not running is drawn grey.
pub fn dot(plan: &LabPlan, found: Option<&LabInspection>, sessions: &[Session]) -> String {
    let running = found.is_some_and(LabInspection::running);
    let mut out = format!("graph {} {{\n", quoted(&plan.name));
    let title = if running { plan.name.clone() } else { format!("{} (not running)", plan.name) };
    out.push_str(&format!("  label={}; labelloc=t; fontname=\"Helvetica\";\n", quoted(&title)));
    out.push_str("  node [fontname=\"Helvetica\", fontsize=11]; edge [fontname=\"Helvetica\", fontsize=9];\n");
    for n in &plan.nodes {
        let inspected = found.and_then(|f| f.nodes.iter().find(|i| i.name == n.name));
        let mut label = n.name.clone();
        if let Some(argv) = n.processes.first() {
            label.push_str(&format!("\\n{}", program(&argv[0])));
        }
        let shape = match n.kind {
            NodeKind::Linux => "box, style=rounded",
            NodeKind::Bridge => "ellipse, style=dashed",
        };
        let alive = inspected.is_some_and(|i| i.exists && i.processes.iter().all(|p| p.alive));
        let colour = if running && alive { "black" } else { DOWN };
        out.push_str(&format!(
            "  {} [label={}, shape={shape}, color={colour}, fontcolor={colour}];\n",
            quoted(&n.name),
            quoted(&label).replace("\\\\n", "\\n")
        ));
    }
    if plan.links.iter().any(|l| l.a.node == "host" || l.b.node == "host") {
        out.push_str(&format!("  \"host\" [shape=ellipse, color={DOWN}];\n"));
    }
    let link_colour = if running { "black" } else { DOWN };
    for l in &plan.links {
        out.push_str(&format!(
            "  {} -- {} [taillabel={}, headlabel={}, color={link_colour}];\n",
            quoted(&l.a.node),
            quoted(&l.b.node),
            quoted(&l.a.ifname),
            quoted(&l.b.ifname)
        ));
    }
    if running {
        out.push_str(&session_edges(found.expect("running implies inspected"), sessions));
    }
    out.push_str("}\n");
    out
}

/// One dashed edge per pair of ends: green when both ends (or the only reporting end) see the
/// session Established, else the colour of the worse end, labelled with each end's state when
/// they differ. A peer outside the lab is drawn as its address.
fn session_edges(found: &LabInspection, sessions: &[Session]) -> String {
    let mut pairs: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    for s in sessions {
        let peer = found.node_with_address(&s.peer_address).map_or_else(|| s.peer_address.clone(), str::to_string);
        let key = if s.node <= peer { (s.node.clone(), peer) } else { (peer, s.node.clone()) };
        pairs.entry(key).or_default().insert(s.node.clone(), s.state.clone());
    }
    let mut out = String::new();
    for ((a, b), states) in &pairs {
        let all_up = states.values().all(|s| s.eq_ignore_ascii_case("established"));
        let colour = if all_up {
            "forestgreen"
        } else {
            states.values().map(|s| state_colour(s)).find(|c| *c == "red").unwrap_or("orange")
        };
        let label = if all_up {
            "BGP".to_string()
        } else {
            states.iter().map(|(node, state)| format!("{node}: {state}")).collect::<Vec<_>>().join("\\n")
        };
        out.push_str(&format!(
            "  {} -- {} [style=dashed, penwidth=2, constraint=false, color={colour}, fontcolor={colour}, label={}];\n",
            quoted(a),
            quoted(b),
            quoted(&label).replace("\\\\n", "\\n")
        ));
    }
    out
}

/// Why a picture could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum DrawError {
    #[error("{0}: write *.svg or *.png (or leave out -o for the DOT text)")]
    Format(String),
    #[error("cannot run Graphviz's dot ({0}); install it (Debian: apt-get install graphviz)")]
    NoDot(std::io::Error),
    #[error("dot failed: {0}")]
    Dot(String),
}

/// Draws `dot_text` into `path` (`*.svg` or `*.png`) with Graphviz's `dot`.
pub fn draw(dot_text: &str, path: &Path) -> Result<(), DrawError> {
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => "-Tsvg",
        Some("png") => "-Tpng",
        _ => return Err(DrawError::Format(path.display().to_string())),
    };
    let mut child = Command::new("dot")
        .arg(format)
        .arg("-o")
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(DrawError::NoDot)?;
    let written = child.stdin.take().expect("piped stdin").write_all(dot_text.as_bytes());
    let out = child.wait_with_output().map_err(DrawError::NoDot)?;
    if !out.status.success() || written.is_err() {
        return Err(DrawError::Dot(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::inspect::{NodeInspection, ProcessInspection};
    use crate::lab::topology::TopologyFile;

    fn plan() -> LabPlan {
        let yaml = "name: g\ntopology:\n  nodes:\n    a: {image: tortie}\n    b: {image: tortie}\n    lan: {kind: bridge}\n  links:\n    - endpoints: [a:eth1, lan:a]\n    - endpoints: [b:eth1, lan:b]\n";
        let file: TopologyFile = serde_norway::from_str(yaml).unwrap();
        crate::lab::plan::resolve(&file, Path::new("/labs"), Path::new("/bin/tortie")).unwrap()
    }

    fn running(p: &LabPlan) -> LabInspection {
        let node = |name: &str, addr: &str| NodeInspection {
            name: name.into(),
            kind: "linux".into(),
            namespace: format!("clab-g-{name}"),
            exists: true,
            addresses: vec![format!("eth1 {addr}/24")],
            processes: vec![ProcessInspection {
                program: "/bin/tortie".into(),
                pid: Some(1),
                alive: true,
                log: "".into(),
            }],
            pods: vec![],
        };
        LabInspection {
            lab: p.name.clone(),
            dir: "/labs/clab-g".into(),
            nodes: vec![node("a", "10.0.0.1"), node("b", "10.0.0.2")],
        }
    }

    #[test]
    fn a_lab_that_is_not_running_is_grey_without_sessions() {
        let text = dot(&plan(), None, &[]);
        assert!(text.starts_with("graph \"g\" {"), "{text}");
        assert!(text.contains("label=\"g (not running)\""), "{text}");
        assert!(text.contains("\"a\" [label=\"a\\ntortie\", shape=box, style=rounded, color=grey60"), "{text}");
        assert!(text.contains("\"a\" -- \"lan\" [taillabel=\"eth1\", headlabel=\"a\", color=grey60]"), "{text}");
        assert!(!text.contains("dashed, penwidth"), "{text}");
    }

    #[test]
    fn sessions_are_one_edge_per_pair_coloured_by_the_worse_end() {
        let p = plan();
        let found = running(&p);
        let s = |node: &str, peer: &str, state: &str| Session {
            node: node.into(),
            peer_address: peer.into(),
            state: state.into(),
        };
        let up = dot(&p, Some(&found), &[s("a", "10.0.0.2", "established"), s("b", "10.0.0.1", "established")]);
        assert_eq!(up.matches("style=dashed, penwidth").count(), 1, "{up}");
        assert!(up.contains("\"a\" -- \"b\" [style=dashed, penwidth=2, constraint=false, color=forestgreen"), "{up}");
        let half = dot(&p, Some(&found), &[s("a", "10.0.0.2", "established"), s("b", "10.0.0.1", "active")]);
        assert!(half.contains("color=red, fontcolor=red, label=\"a: established\\nb: active\""), "{half}");
        let outside = dot(&p, Some(&found), &[s("a", "192.0.2.9", "connect")]);
        assert!(
            outside.contains("\"192.0.2.9\" -- \"a\" [style=dashed, penwidth=2, constraint=false, color=orange"),
            "{outside}"
        );
    }
}
