//! `tortie apply|get|delete`, run as a user runs them against a sqlite datastore named by a
//! configuration file.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

struct Run {
    code: i32,
    out: String,
    err: String,
}

fn tortie(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tortie"))
        .args(args)
        .env_remove("TORTIE_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tortie runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default().as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A configuration naming a sqlite file that does not exist yet.
struct Site {
    _dir: tempfile::TempDir,
    config: String,
    db: PathBuf,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("tortie.db");
        let config = dir.path().join("tortie.yaml");
        std::fs::write(&config, format!("datastore:\n  type: sqlite\n  sqlite_path: {}\n", db.display())).unwrap();
        Site { config: config.display().to_string(), db, _dir: dir }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut all = args.to_vec();
        all.extend(["--config", &self.config]);
        tortie(&all, stdin)
    }
}

const TORTIE_DOCUMENTS: &str = "\
apiVersion: crd.tortie.io/v1
kind: List
items:
- kind: IPPool
  metadata: {name: pool-a}
  spec: {cidr: 10.60.0.0/16, blockSize: 26, natOutgoing: true}
- kind: BGPPeer
  metadata: {name: rr}
  spec: {peerSelector: route-reflector == 'true'}
---
apiVersion: crd.tortie.io/v1
kind: Node
metadata: {name: n1}
spec: {bgp: {ipv4Address: 192.0.2.10/24, asNumber: 65001}}
";

#[test]
fn apply_get_and_delete_tortie_documents() {
    let site = Site::new();
    let r = site.run(&["apply", "-f", "-"], Some("apiVersion: projectcalico.org/v3\nkind: IPPool\n"));
    assert_eq!(r.code, 2);
    assert!(r.err.contains("document 1: apiVersion"), "{}", r.err);
    assert!(!site.db.exists(), "refused input does not even open the datastore");

    let r = site.run(&["apply", "-f", "-"], Some(TORTIE_DOCUMENTS));
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    for line in ["IPPool/pool-a created", "BGPPeer/rr created", "Node/n1 created"] {
        assert!(r.out.contains(line), "{line} missing:\n{}", r.out);
    }

    let r = site.run(&["get", "ippool", "pool-a", "-o", "json"], None);
    assert_eq!(r.code, 0, "{}", r.err);
    let pool: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    assert_eq!(pool["spec"]["cidr"], "10.60.0.0/16");
    assert_eq!(pool["spec"]["natOutgoing"], true);
    assert_eq!(pool["kind"], "IPPool");

    // What `get` prints, `apply` takes back unchanged.
    let r = site.run(&["get", "bgppeers"], None);
    assert_eq!(r.code, 0, "{}", r.err);
    let listed: serde_json::Value = serde_norway::from_str(&r.out).unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{}", r.out);
    let r = site.run(&["apply", "-f", "-"], Some(&r.out));
    assert_eq!((r.code, r.out.trim()), (0, "BGPPeer/rr unchanged"), "{}", r.err);

    // One bad object refuses the whole input, naming kind, name, field and value.
    let bad = "apiVersion: crd.tortie.io/v1\nkind: IPPoolList\nitems:\n\
               - metadata: {name: pool-b}\n  spec: {cidr: 10.61.0.0/16, blockSize: 26}\n\
               - metadata: {name: pool-c}\n  spec: {cidr: 10.62.0.0/16, blockSize: 40}\n\
               - metadata: {name: pool-d}\n  spec: {cidr: 10.63.0.0/16, blockSize: 26, colour: red}\n";
    let r = site.run(&["apply", "-f", "-"], Some(bad));
    assert_eq!(r.code, 2, "{}{}", r.out, r.err);
    assert!(r.err.contains("IPPool/pool-c: spec.blockSize: 40 is outside 20..=32"), "{}", r.err);
    assert!(r.err.contains("IPPool/pool-d: spec.colour: unknown field"), "{}", r.err);
    assert!(r.err.contains("nothing was written"), "{}", r.err);
    let r = site.run(&["get", "ippool", "pool-b"], None);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("IPPool/pool-b not found"), "{}", r.err);

    let r = site.run(&["delete", "-f", "-"], Some(TORTIE_DOCUMENTS));
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(r.out.contains("IPPool/pool-a deleted") && r.out.contains("Node/n1 deleted"), "{}", r.out);
    let r = site.run(&["get", "ippools", "-o", "json"], None);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&r.out).unwrap()["items"], serde_json::json!([]));
    let r = site.run(&["delete", "ippool", "pool-a"], None);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("IPPool/pool-a not found"), "{}", r.err);
}
