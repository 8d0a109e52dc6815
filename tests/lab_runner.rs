//! `tortie lab` builds a containerlab topology from namespaces, links and
//! bridges, starts the nodes' programs, is idempotent, and removes it all.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tortie::testing::wait_until;

const TOPOLOGY: &str = r#"
name: placeholder
topology:
  defaults:
    env: {LAB_GREETING: hello}
  nodes:
    n1:
      kind: linux
      exec:
        - ip addr add 10.77.0.1/24 dev eth2
    n2:
      kind: linux
      cmd: sleep 600
    n3:
      kind: linux
      exec:
        - ip addr add 10.77.0.3/24 dev eth1
    rr:
      kind: linux
      image: bird:2
      binds: [bird.conf:/etc/bird/bird.conf]
    br1:
      kind: bridge
  links:
    - endpoints: [n1:eth1, n2:eth1]
      ipv4: [10.66.0.1/30, 10.66.0.2/30]
    - endpoints: [n1:eth2, br1:n1p]
    - endpoints: [n3:eth1, br1:n3p]
    - endpoints: [rr:eth1, n2:eth2]
      ipv4: [10.88.0.1/30, 10.88.0.2/30]
"#;

struct Lab {
    file: PathBuf,
    name: String,
    _dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("test.clab.yml");
        std::fs::write(&file, TOPOLOGY).unwrap();
        std::fs::write(dir.path().join("bird.conf"), "router id 10.88.0.1;\nprotocol device {}\n").unwrap();
        Lab { file, name: format!("ttl{}", std::process::id()), _dir: dir }
    }
    fn tortie(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tortie"));
        cmd.arg("lab").arg(args[0]).arg(&self.file).arg("--name").arg(&self.name);
        cmd.args(&args[1..]);
        cmd.output().unwrap()
    }
    fn ns(&self, node: &str) -> String {
        format!("clab-{}-{node}", self.name)
    }
    fn lab_dir(&self) -> PathBuf {
        self.file.parent().unwrap().join(format!("clab-{}", self.name))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.tortie(&["down", "--cleanup"]);
    }
}

fn netns_exists(name: &str) -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.split_whitespace().next() == Some(name))
}

fn ping(ns: &str, addr: &str) -> bool {
    Command::new("ip").args(["netns", "exec", ns, "ping", "-c1", "-W1", "-q", addr]).output().unwrap().status.success()
}

#[test]
fn up_builds_the_lab_idempotently_and_down_removes_everything_but_the_logs() {
    let lab = Lab::new();
    let out = lab.tortie(&["up"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until("n1 to reach n2 over the veth link (addresses from the ipv4 list)", Duration::from_secs(10), || {
        ping(&lab.ns("n1"), "10.66.0.2").then_some(())
    })
    .unwrap();
    wait_until("n1 to reach n3 across the bridge (addressed by exec)", Duration::from_secs(10), || {
        ping(&lab.ns("n1"), "10.77.0.3").then_some(())
    })
    .unwrap();

    // The programs run: BIRD answers on its control socket, sleep runs in n2.
    let ctl = lab.lab_dir().join("rr/bird.ctl");
    wait_until("BIRD to answer", Duration::from_secs(10), || {
        let out = Command::new("birdc").args(["-s"]).arg(&ctl).args(["show", "status"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).contains("Daemon is up and running").then_some(())
    })
    .unwrap();
    let pids = Command::new("ip").args(["netns", "pids", &lab.ns("n2")]).output().unwrap();
    assert!(!String::from_utf8_lossy(&pids.stdout).trim().is_empty(), "n2's cmd runs inside n2");

    // Again: nothing is created twice, exec does not run twice, processes are not duplicated.
    let again = lab.tortie(&["up"]);
    let text = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{text}");
    assert!(text.contains("link n1:eth1 <-> n2:eth1: exists") && text.contains("running"), "{text}");
    assert!(!text.contains("exec ip addr"), "{text}");

    // exec runs inside the node with its environment and passes the exit code through.
    let out = lab.tortie(&["exec", "n1", "--", "sh", "-c", "ip -o addr show eth1; echo $LAB_GREETING; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("10.66.0.1/30") && stdout.contains("hello"), "{stdout}");

    let bird_pid: u32 =
        std::fs::read_to_string(lab.lab_dir().join("rr/process-0.pid")).unwrap().trim().parse().unwrap();

    // inspect: every node's namespace, addresses and processes, as found.
    let out = lab.tortie(&["inspect", "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    tortie::testing::json_subset(
        &serde_json::json!({"lab": lab.name, "nodes": [
            {"name": "br1", "kind": "bridge", "namespace": lab.ns("host"), "exists": true},
            {"name": "n1", "kind": "linux", "namespace": lab.ns("n1"), "exists": true,
             "addresses": ["eth1 10.66.0.1/30", "eth2 10.77.0.1/24"], "processes": [], "pods": []},
            {"name": "n2", "processes": [{"program": "sh", "alive": true}]},
            {"name": "n3"},
            {"name": "rr", "addresses": ["eth1 10.88.0.1/30"], "processes": [{"program": "bird", "pid": bird_pid, "alive": true}]},
        ]}),
        &found,
    )
    .unwrap_or_else(|e| panic!("{e}: {found:#}"));
    let table = lab.tortie(&["inspect"]);
    let table = String::from_utf8_lossy(&table.stdout);
    let rr = row(&table, "rr");
    for cell in [lab.ns("rr").as_str(), "running", "eth1 10.88.0.1/30", &format!("bird[{bird_pid}]")] {
        assert!(rr.contains(&format!(" {cell} ")), "{cell}: {table}");
    }

    let down = lab.tortie(&["down"]);
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    for node in ["n1", "n2", "n3", "rr", "host"] {
        assert!(!netns_exists(&lab.ns(node)), "{node} removed");
    }
    assert!(!Path::new(&format!("/proc/{bird_pid}")).exists() || zombie(bird_pid), "BIRD stopped");
    // The logs stay to be read; pid files, sockets and the rest go.
    let left = files_under(&lab.lab_dir());
    assert!(left.iter().any(|f| f.ends_with("rr/process-0.log")), "{left:?}");
    assert!(left.iter().all(|f| f.extension().is_some_and(|e| e == "log")), "only logs stay: {left:?}");
    assert!(String::from_utf8_lossy(&down.stderr).contains("logs kept in"));
    let after = lab.tortie(&["inspect"]);
    let after = String::from_utf8_lossy(&after.stdout);
    assert!(row(&after, "rr").contains(" down "), "{after}");
    let cleanup = lab.tortie(&["down", "--cleanup"]);
    assert!(cleanup.status.success(), "{}", String::from_utf8_lossy(&cleanup.stderr));
    assert!(!lab.lab_dir().exists(), "lab directory removed with --cleanup");
}

/// The line of an `inspect` table for `node`.
fn row<'a>(table: &'a str, node: &str) -> &'a str {
    table.lines().find(|l| l.starts_with(&format!("| {node} "))).unwrap_or_else(|| panic!("no row {node}: {table}"))
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { out.extend(files_under(&path)) } else { out.push(path) }
    }
    out
}

fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
}

#[test]
fn a_broken_topology_is_refused_with_the_place_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.clab.yml");
    std::fs::write(
        &file,
        "name: bad\ntopology:\n  nodes:\n    a: {kind: linux}\n  links:\n    - endpoints: [a:eth1, ghost:eth1]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tortie")).args(["lab", "up"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("link 0 (a:eth1, ghost:eth1): node \"ghost\" is not defined"), "{err}");
    assert!(!netns_exists("clab-bad-a"), "nothing was built");
}

/// `lab graph` draws every topology of the repo (not running: grey, without sessions) as an
/// SVG and a PNG that are images.
#[test]
fn every_topology_in_the_repo_is_drawn_as_svg_and_png() {
    let dir = tempfile::tempdir().unwrap();
    let labs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("containerlab");
    let mut drawn = 0;
    for entry in std::fs::read_dir(&labs).unwrap().flatten() {
        let file = entry.path();
        let Some(stem) = file.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".clab.yml")) else {
            continue;
        };
        let svg = dir.path().join(format!("{stem}.svg"));
        let png = dir.path().join(format!("{stem}.png"));
        for picture in [&svg, &png] {
            let out = Command::new(env!("CARGO_BIN_EXE_tortie"))
                .args(["lab", "graph"])
                .arg(&file)
                .args(["--name", &format!("ttg{}", std::process::id()), "-o"])
                .arg(picture)
                .output()
                .unwrap();
            assert!(out.status.success(), "{stem}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("<svg") && text.trim_end().ends_with("</svg>"), "{stem}: {text}");
        assert!(text.contains("(not running)"), "{stem}: a lab that is not up says so");
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{stem}: PNG magic bytes");
        let kind = Command::new("file").arg("-b").arg(&png).output().unwrap();
        assert!(String::from_utf8_lossy(&kind.stdout).starts_with("PNG image data"), "{stem}");
        drawn += 1;
    }
    assert!(drawn >= 5, "the repo's topologies were found ({drawn})");
}
