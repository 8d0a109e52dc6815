//! `tortie ipam show|check|release`, run as a user runs them, against a sqlite datastore named
//! by a configuration file and filled through the library.

use std::process::Command;
use tortie::datastore::Datastore;
use tortie::datastore::resources::IpPool;
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::ipam::{Ipam, IpamOptions, Request, create_pool};

fn tortie(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tortie"))
        .args(args)
        .env_remove("TORTIE_CONFIG")
        .output()
        .expect("tortie runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_check_and_release_against_the_configured_datastore() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tortie.db");
    let config = dir.path().join("tortie.yaml");
    std::fs::write(&config, format!("datastore:\n  type: sqlite\n  sqlite_path: {}\n", db.display())).unwrap();
    let config = config.display().to_string();
    let store = Datastore::new(SqliteBackend::open(&db, SqliteOptions::default()).await.unwrap());
    create_pool(&store, "default-ipv4", &IpPool::new("10.50.0.0/24".parse().unwrap())).await.unwrap();
    let ipam = Ipam::new(store.clone(), IpamOptions { node: "n1".into(), ..Default::default() });
    let first = ipam.allocate(Request::workload("k8s-pod-network.abc", 4, "web-0", "shop", "n1")).await.unwrap();
    ipam.allocate(Request::workload("k8s-pod-network.def", 4, "web-1", "shop", "n1")).await.unwrap();

    let (code, out, err) = tortie(&["ipam", "show", "--config", &config, "--show-blocks"]);
    assert_eq!(code, 0, "{out}\n{err}");
    for expected in ["GROUPING", "IPS TOTAL", "IPS IN USE", "IPS RESERVED", "IPS FREE"] {
        assert!(out.contains(expected), "{expected} missing:\n{out}");
    }
    let pool_row = out.lines().find(|l| l.contains("IP Pool")).expect("a pool row");
    assert!(pool_row.contains("10.50.0.0/24") && pool_row.contains("256") && pool_row.contains("2 (0%)"), "{pool_row}");
    assert!(out.lines().any(|l| l.contains("Block") && l.contains(&first.block.to_string())), "{out}");

    let (code, out, _) = tortie(&["ipam", "show", "--config", &config, "-o", "json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["pools"][0]["in_use"], 2);

    let (code, out, _) = tortie(&["ipam", "show", "--config", &config, "--ip", &first.ip.to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains("k8s-pod-network.abc") && out.contains("web-0"), "{out}");

    let (code, out, err) = tortie(&["ipam", "check", "--config", &config]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("No problems found"), "{out}");

    let (code, out, _) =
        tortie(&["ipam", "release", "--config", &config, "--handle", "k8s-pod-network.abc", "-o", "json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["released"], 1);
    let (_, out, _) = tortie(&["ipam", "show", "--config", &config, "-o", "json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["pools"][0]["in_use"], 1);

    // A block whose handle record is gone is reported, and check exits 1.
    store
        .delete::<tortie::datastore::resources::IpamHandle>(
            "k8s-pod-network.def",
            store.get::<tortie::datastore::resources::IpamHandle>("k8s-pod-network.def").await.unwrap().revision,
        )
        .await
        .unwrap();
    let (code, out, _) = tortie(&["ipam", "check", "--config", &config]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("allocation without handle"), "{out}");
}
