//! A topology resolved into what to build: namespaces, links, bridges and
//! processes, with containerlab's names and inheritance applied and every
//! unsupported feature refused with the node or link it appears in.

use super::topology::{LinkSpec, NodeSpec, TopologyFile, expand_env};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Default veth MTU, as containerlab's.
pub const DEFAULT_MTU: u32 = 9500;

/// Why a topology cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a containerlab topology: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("node {node}: {message}")]
    Node { node: String, message: String },
    #[error("link {index} ({endpoints}): {message}")]
    Link { index: usize, endpoints: String, message: String },
}

/// What runs in a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A network namespace with the node's processes.
    Linux,
    /// A Linux bridge in the lab's host namespace.
    Bridge,
}

/// One node, ready to build.
#[derive(Debug, Clone)]
pub struct NodePlan {
    pub name: String,
    pub ns: String,
    pub kind: NodeKind,
    pub exec: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub sysctls: Vec<(String, String)>,
    /// Long-running processes (argv), each supervised with a pid file.
    pub processes: Vec<Vec<String>>,
    /// The node's directory in the lab directory (logs, pid files, sockets).
    pub dir: PathBuf,
}

/// One end of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub node: String,
    /// The namespace the interface lives in.
    pub ns: String,
    pub ifname: String,
    /// The bridge to enslave the interface to, for bridge nodes.
    pub bridge: Option<String>,
}

#[derive(Debug, Clone)]
pub struct LinkPlan {
    pub a: Endpoint,
    pub b: Endpoint,
    pub mtu: u32,
    /// Addresses (CIDR) for `a` and `b`, from the brief form's ipv4/ipv6 lists.
    pub addresses: Vec<(usize, String)>,
}

#[derive(Debug, Clone)]
pub struct LabPlan {
    pub name: String,
    /// `clab-<name>/` next to the topology file.
    pub dir: PathBuf,
    /// Stands in for the root namespace: `host:` endpoints and bridges live here,
    /// so a lab never changes the machine's own network.
    pub host_ns: String,
    pub nodes: Vec<NodePlan>,
    pub links: Vec<LinkPlan>,
}

impl LabPlan {
    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// Reads and resolves a topology file. `name_override` replaces `name:`
/// (tests run the same file under unique names); `tortie` is the binary
/// run for tortie nodes.
pub fn load(path: &Path, name_override: Option<&str>, tortie: &Path) -> Result<LabPlan, PlanError> {
    let raw = std::fs::read_to_string(path).map_err(|e| PlanError::Read { path: path.to_path_buf(), source: e })?;
    let text = expand_env(&raw, &|v| std::env::var(v).ok());
    let mut file: TopologyFile = serde_norway::from_str(&text)
        .map_err(|e| PlanError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
    if let Some(name) = name_override {
        file.name = name.to_string();
    }
    // Absolute, so pid files and binds mean the same from any directory.
    let path = path.canonicalize().map_err(|e| PlanError::Read { path: path.to_path_buf(), source: e })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    resolve(&file, &base, tortie)
}

fn ns_name(file: &TopologyFile, node: &str) -> String {
    match file.prefix.as_deref() {
        None => format!("clab-{}-{node}", file.name),
        Some("") => node.to_string(),
        Some("__lab-name") => format!("{}-{node}", file.name),
        Some(p) => format!("{p}-{}-{node}", file.name),
    }
}

/// Resolves inheritance, names, binds and processes.
pub fn resolve(file: &TopologyFile, base: &Path, tortie: &Path) -> Result<LabPlan, PlanError> {
    let lab_dir = base.join(format!("clab-{}", file.name));
    let host_ns = ns_name(file, "host");
    let t = &file.topology;
    let mut nodes = Vec::new();
    for (name, spec) in &t.nodes {
        let node_err = |message: String| PlanError::Node { node: name.clone(), message };
        let group = spec.group.as_ref().and_then(|g| t.groups.get(g)).cloned().unwrap_or_default();
        let with_group = spec.inherit(&group);
        let kind_name = with_group.kind.clone().or_else(|| t.defaults.kind.clone()).unwrap_or_else(|| "linux".into());
        let kind_spec = t.kinds.get(&kind_name).cloned().unwrap_or_default();
        let s = with_group.inherit(&kind_spec).inherit(&t.defaults);
        let kind = match kind_name.as_str() {
            "linux" => NodeKind::Linux,
            "bridge" => NodeKind::Bridge,
            other => return Err(node_err(format!("kind {other:?} is not supported (linux and bridge are)"))),
        };
        if let Some(mode) = &s.network_mode {
            return Err(node_err(format!("network-mode {mode:?} is not supported")));
        }
        let dir = lab_dir.join(name);
        let magic = |text: &str| {
            text.replace("__clabNodeName__", name)
                .replace("__clabLabName__", &file.name)
                .replace("__clabDir__", &lab_dir.display().to_string())
                .replace("__clabNodeDir__", &dir.display().to_string())
        };
        let env: BTreeMap<String, String> =
            s.env.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, magic(&v))).collect();
        let binds = parse_binds(&s, base, &magic).map_err(node_err)?;
        let processes =
            if kind == NodeKind::Linux { processes(&s, &binds, &dir, tortie).map_err(node_err)? } else { Vec::new() };
        let sysctls = s
            .sysctls
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, serde_norway::to_string(&v).unwrap_or_default().trim().to_string()))
            .collect();
        let mut env = env;
        if s.image.as_deref().is_some_and(|i| i.contains("tortie")) {
            // Lab defaults for tortie nodes: their name, a socket of their
            // own, and one datastore shared by the whole lab.
            env.entry("TORTIE_NODE_NAME".into()).or_insert_with(|| name.clone());
            env.entry("TORTIE_API_SOCKET".into()).or_insert_with(|| dir.join("tortie.sock").display().to_string());
            // A directory bound where the image keeps its SQLite file is the
            // shared datastore, as under containerlab.
            let (data_dir, db_file) = image_datastore();
            let shared = binds.iter().find(|b| Path::new(&b.target) == data_dir).map(|b| b.source.clone());
            env.entry("TORTIE_DATASTORE_SQLITE_PATH".into())
                .or_insert_with(|| shared.unwrap_or_else(|| lab_dir.clone()).join(&db_file).display().to_string());
        }
        nodes.push(NodePlan {
            name: name.clone(),
            ns: if kind == NodeKind::Bridge { host_ns.clone() } else { ns_name(file, name) },
            kind,
            exec: s.exec.clone().unwrap_or_default().iter().map(|c| magic(c)).collect(),
            env,
            sysctls,
            processes,
            dir,
        });
    }
    let mut links = Vec::new();
    for (index, l) in t.links.iter().enumerate() {
        links.push(resolve_link(index, l, file, &nodes, &host_ns)?);
    }
    Ok(LabPlan { name: file.name.clone(), dir: lab_dir, host_ns, nodes, links })
}

fn resolve_link(
    index: usize,
    l: &LinkSpec,
    file: &TopologyFile,
    nodes: &[NodePlan],
    host_ns: &str,
) -> Result<LinkPlan, PlanError> {
    let err = |message: String| PlanError::Link { index, endpoints: l.endpoints.join(", "), message };
    if let Some(t) = l.link_type.as_deref().filter(|t| *t != "veth") {
        return Err(err(format!("link type {t:?} is not supported (veth is)")));
    }
    if l.endpoints.len() != 2 {
        return Err(err("a link needs exactly two endpoints".into()));
    }
    let mut ends = Vec::new();
    for ep in &l.endpoints {
        let (node, ifname) = ep.split_once(':').ok_or_else(|| err(format!("endpoint {ep:?} is not node:interface")))?;
        if ifname.is_empty() || ifname.len() > 15 || ifname.contains(['/', ' ']) {
            return Err(err(format!("interface name {ifname:?} is not a valid Linux name (1 to 15 characters)")));
        }
        let end = if node == "host" {
            Endpoint { node: node.into(), ns: host_ns.to_string(), ifname: ifname.into(), bridge: None }
        } else {
            let n =
                nodes.iter().find(|n| n.name == node).ok_or_else(|| err(format!("node {node:?} is not defined")))?;
            match n.kind {
                NodeKind::Bridge => Endpoint {
                    node: node.into(),
                    ns: host_ns.to_string(),
                    ifname: ifname.into(),
                    bridge: Some(node.into()),
                },
                NodeKind::Linux => {
                    Endpoint { node: node.into(), ns: ns_name(file, node), ifname: ifname.into(), bridge: None }
                }
            }
        };
        ends.push(end);
    }
    let b = ends.pop().expect("two endpoints");
    let a = ends.pop().expect("two endpoints");
    if a.ns == b.ns && a.ifname == b.ifname {
        return Err(err("both ends name the same interface".into()));
    }
    let mut addresses = Vec::new();
    for list in [&l.ipv4, &l.ipv6].into_iter().flatten() {
        for (i, addr) in list.iter().enumerate().take(2) {
            if !addr.is_empty() {
                addr.parse::<ipnetwork::IpNetwork>().map_err(|_| err(format!("address {addr:?} is not a CIDR")))?;
                addresses.push((i, addr.clone()));
            }
        }
    }
    Ok(LinkPlan { a, b, mtu: l.mtu.unwrap_or(DEFAULT_MTU), addresses })
}

/// A bind `source:target[:ro]`; relative sources are relative to the topology file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: String,
}

fn parse_binds(s: &NodeSpec, base: &Path, magic: &dyn Fn(&str) -> String) -> Result<Vec<Bind>, String> {
    s.binds
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|b| {
            let b = magic(b);
            let mut parts = b.splitn(3, ':');
            let (Some(src), Some(target)) = (parts.next(), parts.next()) else {
                return Err(format!("bind {b:?} is not source:target[:ro]"));
            };
            let src = match src.strip_prefix("~/") {
                Some(rest) => PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(rest),
                None => PathBuf::from(src),
            };
            let source = if src.is_absolute() { src } else { base.join(src) };
            Ok(Bind { source, target: target.to_string() })
        })
        .collect()
}

/// The directory the tortie image keeps its SQLite datastore in (the
/// agent's default `datastore.sqlite_path`) and the file's name there.
fn image_datastore() -> (PathBuf, std::ffi::OsString) {
    let path = crate::config::Config::default().datastore.sqlite_path;
    let file = path.file_name().map(|f| f.to_os_string()).unwrap_or_else(|| "tortie.db".into());
    (path.parent().map(Path::to_path_buf).unwrap_or_default(), file)
}

/// Binds are mapped, not mounted (there is no container root file system
/// to mount into): the known images get the bound file's host path where
/// their program expects the container path. Any other bind is refused.
fn processes(s: &NodeSpec, binds: &[Bind], dir: &Path, tortie: &Path) -> Result<Vec<Vec<String>>, String> {
    let image = s.image.clone().unwrap_or_default();
    let bound = |target: &str| binds.iter().find(|b| b.target == target).map(|b| b.source.display().to_string());
    let data_dir = image_datastore().0.display().to_string();
    let tortie_binds = ["/etc/tortie/tortie.yaml", data_dir.as_str()];
    let known: &[&str] = if image.contains("tortie") {
        &tortie_binds
    } else if image.contains("frr") {
        &["/etc/frr/frr.conf", "/etc/frr/daemons"]
    } else if image.contains("bird") {
        &["/etc/bird/bird.conf", "/etc/bird.conf"]
    } else {
        &[]
    };
    if let Some(b) = binds.iter().find(|b| !known.contains(&b.target.as_str())) {
        return Err(format!(
            "bind to {:?} cannot be honoured without a container image; this runner maps only {known:?} for image {image:?}",
            b.target
        ));
    }
    let sh = |cmd: &str| vec!["sh".to_string(), "-c".to_string(), cmd.to_string()];
    if let Some(cmd) = s.cmd.as_deref().or(s.entrypoint.as_deref())
        && !image.contains("tortie")
    {
        return Ok(vec![sh(cmd)]);
    }
    let d = |f: &str| dir.join(f).display().to_string();
    if image.contains("tortie") {
        let mut argv = vec![tortie.display().to_string(), "node".to_string()];
        if let Some(conf) = bound("/etc/tortie/tortie.yaml") {
            argv.extend(["--config".to_string(), conf]);
        }
        return Ok(vec![argv]);
    }
    if image.contains("frr") {
        let conf = bound("/etc/frr/frr.conf").ok_or("an FRR node needs a bind to /etc/frr/frr.conf")?;
        let zsock = d("zserv.api");
        let common = |daemon: &str| {
            vec![
                format!("/usr/lib/frr/{daemon}"),
                "-f".into(),
                conf.clone(),
                "-i".into(),
                d(&format!("{daemon}.pid")),
                "--vty_socket".into(),
                dir.display().to_string(),
                "-z".into(),
                zsock.clone(),
                // Root, as in a container; the group is FRR's vty group, which the
                // daemons insist the run-as user belongs to.
                "-u".into(),
                "root".into(),
                "-g".into(),
                "frrvty".into(),
                "-P".into(),
                "0".into(),
            ]
        };
        return Ok(vec![common("zebra"), common("bgpd")]);
    }
    if image.contains("bird") {
        let conf = bound("/etc/bird/bird.conf")
            .or_else(|| bound("/etc/bird.conf"))
            .ok_or("a BIRD node needs a bind to /etc/bird/bird.conf")?;
        return Ok(vec![vec![
            "bird".into(),
            "-f".into(),
            "-c".into(),
            conf,
            "-s".into(),
            d("bird.ctl"),
            "-P".into(),
            d("bird.pid"),
        ]]);
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(yaml: &str) -> Result<LabPlan, PlanError> {
        let file: TopologyFile = serde_norway::from_str(yaml).unwrap();
        resolve(&file, Path::new("/labs"), Path::new("/usr/bin/tortie"))
    }

    #[test]
    fn names_inheritance_and_links_follow_containerlab() {
        let p = plan(
            "name: demo\ntopology:\n  defaults: {env: {A: x}}\n  kinds: {linux: {image: alpine}}\n  nodes:\n    n1: {kind: linux, exec: ['ip addr add 10.0.0.1/24 dev eth1 # __clabNodeName__']}\n    n2: {kind: linux}\n    br: {kind: bridge}\n  links:\n    - endpoints: [n1:eth1, n2:eth1]\n      ipv4: [10.0.0.1/24, 10.0.0.2/24]\n    - endpoints: [n1:eth2, br:n1p]\n",
        )
        .unwrap();
        assert_eq!(p.dir, PathBuf::from("/labs/clab-demo"));
        let n1 = p.node("n1").unwrap();
        assert_eq!(n1.ns, "clab-demo-n1");
        assert_eq!(n1.env["A"], "x");
        assert!(n1.exec[0].ends_with("# n1"));
        assert_eq!(p.links[0].mtu, DEFAULT_MTU);
        assert_eq!(p.links[0].addresses, vec![(0, "10.0.0.1/24".to_string()), (1, "10.0.0.2/24".to_string())]);
        assert_eq!(
            p.links[1].b,
            Endpoint {
                node: "br".into(),
                ns: "clab-demo-host".into(),
                ifname: "n1p".into(),
                bridge: Some("br".into())
            }
        );
    }

    #[test]
    fn tortie_nodes_get_their_name_socket_and_the_shared_datastore() {
        let p = plan("name: t\ntopology:\n  nodes:\n    node1: {kind: linux, image: ghcr.io/tortie/tortie:latest, binds: [node1.yaml:/etc/tortie/tortie.yaml]}\n").unwrap();
        let n = p.node("node1").unwrap();
        assert_eq!(
            n.processes,
            vec![vec!["/usr/bin/tortie".to_string(), "node".into(), "--config".into(), "/labs/node1.yaml".into()]]
        );
        assert_eq!(n.env["TORTIE_NODE_NAME"], "node1");
        assert_eq!(n.env["TORTIE_DATASTORE_SQLITE_PATH"], "/labs/clab-t/tortie.db");
    }

    /// The way a topology shares the datastore under containerlab too: a directory bound where
    /// the image keeps its SQLite file.
    #[test]
    fn a_directory_bound_at_the_images_datastore_holds_the_shared_datastore() {
        let p = plan(
            "name: t
topology:
  nodes:
    node1: {kind: linux, image: tortie:latest, binds: [node1.yaml:/etc/tortie/tortie.yaml, shared:/var/lib/tortie]}
",
        )
        .unwrap();
        assert_eq!(p.node("node1").unwrap().env["TORTIE_DATASTORE_SQLITE_PATH"], "/labs/shared/tortie.db");
        let other = plan(
            "name: t
topology:
  nodes:
    node1: {kind: linux, image: tortie:latest, binds: [x:/var/lib/other]}
",
        );
        assert!(other.is_err(), "any other bind is still refused");
    }

    #[test]
    fn unsupported_features_are_refused_naming_where() {
        let e = plan("name: x\ntopology:\n  nodes:\n    r1: {kind: nokia_srlinux}\n").unwrap_err();
        assert_eq!(e.to_string(), "node r1: kind \"nokia_srlinux\" is not supported (linux and bridge are)");
        let e =
            plan("name: x\ntopology:\n  nodes:\n    a: {}\n  links:\n    - endpoints: [a:eth1, b:eth1]\n").unwrap_err();
        assert!(e.to_string().contains("node \"b\" is not defined"), "{e}");
        let e = plan("name: x\ntopology:\n  nodes:\n    a: {binds: [x:/etc/passwd]}\n").unwrap_err();
        assert!(e.to_string().contains("bind to \"/etc/passwd\" cannot be honoured"), "{e}");
        let e = plan("name: x\ntopology:\n  nodes:\n    a: {}\n    b: {}\n  links:\n    - endpoints: [a:eth1, b:averyveryverylongname]\n").unwrap_err();
        assert!(e.to_string().contains("not a valid Linux name"), "{e}");
    }
}
