//! The quickstart topology through the lab runner: three tortie agents come
//! up, register in the lab's shared datastore, build a BGP full mesh from
//! it and show it in `tortie status`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use tortie::datastore::Datastore;
use tortie::datastore::resources::Node;
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::testing::wait_until;

struct Lab {
    file: PathBuf,
    name: String,
    _dir: tempfile::TempDir,
}

impl Lab {
    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tortie"));
        cmd.args(["lab", args[0]]).arg(&self.file).args(["--name", &self.name]).args(&args[1..]);
        cmd.output().unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
    }
}

#[test]
fn three_agents_come_up_register_and_report_ready() {
    // The topology and its binds, copied so the lab directory lands in a temp dir.
    let dir = tempfile::tempdir().unwrap();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("containerlab");
    std::fs::copy(src.join("quickstart.clab.yml"), dir.path().join("quickstart.clab.yml")).unwrap();
    std::fs::create_dir(dir.path().join("quickstart")).unwrap();
    std::fs::copy(src.join("quickstart/node.yaml"), dir.path().join("quickstart/node.yaml")).unwrap();
    let lab =
        Lab { file: dir.path().join("quickstart.clab.yml"), name: format!("ttq{}", std::process::id()), _dir: dir };

    let up = lab.run(&["up"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let addresses = [("node1", "10.10.0.11"), ("node2", "10.10.0.12"), ("node3", "10.10.0.13")];
    for (node, _) in addresses {
        let others: Vec<serde_json::Value> = addresses
            .iter()
            .filter(|(n, _)| *n != node)
            .map(|(_, a)| serde_json::json!({"address": a, "type": "node-to-node mesh", "state": "established", "as_number": 64512, "hold_time": 90, "keepalive": 30, "established_at": "*"}))
            .collect();
        let expected = serde_json::json!({"node": node, "ready": true, "peers": others});
        let status =
            wait_until(&format!("{node} to be ready with its mesh established"), Duration::from_secs(60), || {
                let out = lab.run(&["exec", node, "--", env!("CARGO_BIN_EXE_tortie"), "status", "-o", "json"]);
                let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
                tortie::testing::json_subset(&expected, &status).ok().map(|_| status)
            })
            .unwrap();
        assert_eq!(status["peers"].as_array().map(Vec::len), Some(2), "exactly the two other nodes: {status}");
    }
    let ping = lab.run(&["exec", "node1", "--", "ping", "-c1", "-W2", "10.10.0.13"]);
    assert!(ping.status.success(), "nodes reach each other across the lab bridge");

    let db = lab.file.parent().unwrap().join(format!("clab-{}/tortie.db", lab.name));
    let nodes = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let ds = Datastore::new(SqliteBackend::open(&db, SqliteOptions::default()).await.unwrap());
        ds.list::<Node>().await.unwrap()
    });
    let mut registered: Vec<(String, String)> = nodes
        .items
        .iter()
        .map(|n| {
            (
                n.name.clone(),
                n.spec.bgp.as_ref().and_then(|b| b.ipv4_address).map(|a| a.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    registered.sort();
    assert_eq!(
        registered,
        vec![
            ("node1".to_string(), "10.10.0.11/24".to_string()),
            ("node2".to_string(), "10.10.0.12/24".to_string()),
            ("node3".to_string(), "10.10.0.13/24".to_string()),
        ],
        "every node registered its address with the prefix length in the shared datastore"
    );
}
