//! `tortie apply|get|delete` and `tortie migrate from-calico`, run as a user runs them against a
//! sqlite datastore named by a configuration file; the Calico exports in `tests/data/calico/` are
//! written as kubectl and calicoctl write them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tortie::datastore::Datastore;
use tortie::datastore::kube_standin::StandIn;
use tortie::datastore::resources::{IpamBlock, IpamHandle};
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};

const KDD_EXPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/calico/kdd-ipam-export.yaml");
const CALICOCTL_EXPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/calico/calicoctl-export.yaml");

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
        Site::with_datastore(|dir| format!("type: sqlite\n  sqlite_path: {}", dir.join("tortie.db").display()))
    }

    /// A configuration whose `datastore` section is `section(dir)` (indented by two).
    fn with_datastore(section: impl FnOnce(&Path) -> String) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("tortie.db");
        let config = dir.path().join("tortie.yaml");
        std::fs::write(&config, format!("datastore:\n  {}\n", section(dir.path()))).unwrap();
        Site { config: config.display().to_string(), db, _dir: dir }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut all = args.to_vec();
        all.extend(["--config", &self.config]);
        tortie(&all, stdin)
    }

    async fn store(&self) -> Datastore {
        Datastore::new(SqliteBackend::open(&self.db, SqliteOptions::default()).await.unwrap())
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

/// Every allocated address of the Calico export: (address, handle as the block names it).
fn exported_allocations() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(KDD_EXPORT).unwrap();
    let list: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let mut found = Vec::new();
    for block in list["items"].as_array().unwrap().iter().filter(|i| i["kind"] == "IPAMBlock") {
        let cidr: ipnetwork::IpNetwork = block["spec"]["cidr"].as_str().unwrap().parse().unwrap();
        for (ordinal, index) in block["spec"]["allocations"].as_array().unwrap().iter().enumerate() {
            let Some(index) = index.as_u64() else { continue };
            let handle = block["spec"]["attributes"][index as usize]["handle_id"].as_str().unwrap();
            found.push((tortie::ipam::block_math::ip_at(&cidr, ordinal).to_string(), handle.to_string()));
        }
    }
    found
}

/// The report lines of fields and kinds tortie does not carry today; each new field a resource
/// learns takes its line off this list.
const NOT_CARRIED: &[&str] = &[
    "Node/node-a: field status not carried: tortie keeps no status ({\"podCIDRs\":[\"10.244.10.0/24\"]})",
    "Node/node-a: field spec.addresses not carried: tortie's Node has no such field",
    "Node/node-a: field spec.orchRefs not carried: tortie's Node has no such field",
    "Node/node-b: field spec.addresses not carried: tortie's Node has no such field",
    "Node/node-b: field spec.orchRefs not carried: tortie's Node has no such field",
    "Secret calico-system/bgp-passwords: not carried: secret values are never copied; copy the Secret from Calico's namespace into tortie's namespace yourself (keys: tor-rack-1)",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calico_exports_migrate_with_every_address_kept_and_ipam_check_clean() {
    let site = Site::new();
    let migrate = ["migrate", "from-calico", KDD_EXPORT, CALICOCTL_EXPORT];

    let dry = site.run(&[&migrate[..], &["--dry-run"]].concat(), None);
    assert_eq!(dry.code, 0, "{}", dry.err);
    assert!(!Path::new(&site.db).exists(), "a dry run opened the datastore");
    let printed: Vec<serde_json::Value> =
        dry.out.split("---\n").filter(|d| !d.trim().is_empty()).map(|d| serde_norway::from_str(d).unwrap()).collect();
    assert!(printed.iter().all(|d| d["apiVersion"] == "crd.tortie.io/v1"), "{}", dry.out);
    let kinds: Vec<&str> = printed.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        &kinds[..5],
        ["IPAMConfig", "IPReservation", "IPPool", "IPPool", "IPAMBlock"],
        "reservations, then pools, before blocks"
    );

    let run = site.run(&migrate, None);
    assert_eq!(run.code, 0, "{}{}", run.out, run.err);
    let not_carried: Vec<&str> = run.err.lines().filter(|l| l.contains("not carried")).collect();
    assert_eq!(not_carried, NOT_CARRIED, "{}", run.err);
    let v6 = site.run(&["get", "ippool", "default-ipv6-ippool", "-o", "json"], None);
    let v6: serde_json::Value = serde_json::from_str(&v6.out).unwrap();
    assert_eq!(v6["spec"]["namespaceSelector"], "projectcalico.org/name != 'legacy'", "carried: {v6}");
    for changed in [
        "IPAMHandle/k8s-pod-network.7d4c1e0b9a8f: field spec.handleID changed: \"k8s-pod-network.7D4C1E0B9A8F\" → \"k8s-pod-network.7d4c1e0b9a8f\"",
        "BGPConfiguration/default: field spec.asNumber changed: \"1.10\" → 65546",
        "BGPPeer/tor-rack-1: field spec.keepOriginalNextHop changed: true → {\"nextHopMode\":\"Keep\"}",
        "BGPPeer/tor-rack-1: spec.password refers to key \"tor-rack-1\" of Secret \"bgp-passwords\"",
    ] {
        assert!(run.err.contains(changed), "{changed} missing:\n{}", run.err);
    }
    assert!(!run.err.contains("c2VjcmV0"), "a secret value was printed");
    assert!(!run.err.contains("tunnel"), "the tunnel addresses agree with the blocks:\n{}", run.err);

    let check = site.run(&["ipam", "check"], None);
    assert_eq!(check.code, 0, "{}{}", check.out, check.err);
    assert!(check.out.contains("Found 2 IP pools, 2 blocks, 8 allocations."), "{}", check.out);
    assert!(check.out.contains("No problems found"), "{}", check.out);

    // Every address is still held by its handle, whose record the handle ID finds.
    let store = site.store().await;
    let blocks = store.list::<IpamBlock>().await.unwrap().items;
    let handles = store.list::<IpamHandle>().await.unwrap().items;
    for (ip, handle) in exported_allocations() {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let block = blocks.iter().find(|b| b.spec.cidr.contains(ip)).expect("the block is kept");
        let ordinal = tortie::ipam::block_math::ordinal_of(&block.spec.cidr, ip).unwrap();
        let held = tortie::ipam::block_ops::handle_at(&block.spec, ordinal);
        assert_eq!(held, Some(handle.to_lowercase().as_str()), "{ip}");
        assert!(handles.iter().any(|h| h.name == handle.to_lowercase() && h.spec.handle_id == h.name), "{handle}");
    }

    // Again: nothing differs, nothing is written.
    let again = site.run(&migrate, None);
    assert_eq!(again.code, 0, "{}", again.err);
    assert!(again.out.lines().all(|l| l.ends_with(" unchanged")), "{}", again.out);

    // A differing pool is refused with the whole input unless --force.
    let extra_pool =
        "---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: extra}\nspec: {cidr: 10.250.0.0/16}\n";
    let changed =
        std::fs::read_to_string(CALICOCTL_EXPORT).unwrap().replacen("natOutgoing: true", "natOutgoing: false", 1)
            + extra_pool;
    let refused = site.run(&["migrate", "from-calico", "-"], Some(&changed));
    assert_eq!(refused.code, 2, "{}{}", refused.out, refused.err);
    assert!(
        refused.err.contains("IPPool/default-ipv4-ippool: exists with a different spec (--force replaces it)"),
        "{}",
        refused.err
    );
    assert_eq!(site.run(&["get", "ippool", "extra"], None).code, 1, "nothing is written when one object is refused");
    let forced = site.run(&["migrate", "from-calico", "-", "--force"], Some(&changed));
    assert_eq!(forced.code, 0, "{}", forced.err);
    assert!(
        forced.out.contains("IPPool/default-ipv4-ippool replaced") && forced.out.contains("IPPool/extra created"),
        "{}",
        forced.out
    );
}

#[test]
fn bad_calico_input_is_refused_naming_document_and_field_before_any_write() {
    let site = Site::new();
    let input = "apiVersion: projectcalico.org/v3\nkind: BGPPeerList\nitems:\n\
                 - apiVersion: projectcalico.org/v3\n  kind: BGPPeer\n  metadata: {name: good}\n  spec: {peerIP: 192.0.2.1, asNumber: 65001}\n\
                 - apiVersion: projectcalico.org/v3\n  kind: BGPPeer\n  metadata: {name: bad}\n  spec: {peerIP: 192.0.2.2, asNumber: 'sixty'}\n\
                 ---\napiVersion: crd.projectcalico.org/v1\nkind: BlockAffinity\nmetadata: {name: n-10-0-0-0-26}\n\
                 spec: {cidr: 10.0.0.0/26, node: n, state: confirmed, deleted: 'maybe'}\n";
    for args in [&["migrate", "from-calico", "-"][..], &["migrate", "from-calico", "-", "--dry-run"]] {
        let r = site.run(args, Some(input));
        assert_eq!(r.code, 2, "{}{}", r.out, r.err);
        assert!(
            r.err.contains("document 1, item 2 (BGPPeer/bad): spec.asNumber: \"sixty\" is not an AS number"),
            "{}",
            r.err
        );
        assert!(r.err.contains("document 2 (BlockAffinity/n-10-0-0-0-26): spec.deleted: \"maybe\""), "{}", r.err);
        assert!(r.out.is_empty(), "{}", r.out);
        assert!(!site.db.exists(), "nothing may be written");
    }
    let r =
        site.run(&["migrate", "from-calico", "-"], Some("apiVersion: projectcalico.org/v3\nkind: IPPool\nspec: [\n"));
    assert_eq!(r.code, 2);
    assert!(r.err.contains("-: document 1: not valid YAML or JSON"), "{}", r.err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calico_exports_migrate_into_the_kubernetes_datastore() {
    let standin = StandIn::start(Duration::from_millis(200)).await.unwrap();
    for node in ["node-a", "node-b"] {
        standin.add_node(node);
    }
    let url = standin.url();
    let site = Site::with_datastore(|dir| {
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: s, cluster: {{server: \"{url}\"}}}}]\n\
                 contexts: [{{name: s, context: {{cluster: s, user: u}}}}]\ncurrent-context: s\nusers: [{{name: u, user: {{}}}}]\n"
            ),
        )
        .unwrap();
        format!("type: kubernetes\n  kubeconfig: {}", kubeconfig.display())
    });
    // The CLI blocks this worker; the stand-in serves from the other.
    let run = |args: &[&str]| tokio::task::block_in_place(|| site.run(args, None));

    let migrated = run(&["migrate", "from-calico", KDD_EXPORT, CALICOCTL_EXPORT]);
    assert_eq!(migrated.code, 0, "{}{}", migrated.out, migrated.err);
    assert!(migrated.out.contains("IPAMBlock/10-244-10-0-26 created"), "{}", migrated.out);
    let check = run(&["ipam", "check"]);
    assert!(check.out.contains("Found 2 IP pools, 2 blocks, 8 allocations."), "{}{}", check.out, check.err);
    // The migrated records agree with each other. The stand-in API server holds none of the
    // exported cluster's Pods, so their addresses are the only problems: leaked, as
    // `calicoctl ipam check` would report them against this cluster.
    let problems: Vec<&str> = check.out.lines().filter(|l| l.starts_with("| ") && !l.contains("PROBLEM")).collect();
    assert!(!problems.is_empty(), "{}", check.out);
    for row in problems {
        assert!(row.starts_with("| leaked") && row.contains("no longer exists"), "{}", check.out);
    }

    let node = run(&["get", "node", "node-a", "-o", "json"]);
    assert_eq!(node.code, 0, "{}", node.err);
    let node: serde_json::Value = serde_json::from_str(&node.out).unwrap();
    assert_eq!(node["spec"]["bgp"]["ipv4IPIPTunnelAddr"], "10.244.10.0");

    let again = run(&["migrate", "from-calico", KDD_EXPORT, CALICOCTL_EXPORT]);
    assert_eq!(again.code, 0, "{}", again.err);
    assert!(again.out.lines().all(|l| l.ends_with(" unchanged")), "{}", again.out);
}
