//! Network policy end to end on one node: `tortie node` in a namespace with the sqlite
//! datastore, pods made by `tortie lab pod add` (the CNI plugin, with namespace, labels and a
//! named port), policies and namespace labels written to the datastore, and real TCP
//! connections between the pods that get through or not as the policies say.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;
use tortie::datastore::Datastore;
use tortie::datastore::resources::{IpPool, KubeNetworkPolicy, Namespace};
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::netns::Topology;
use tortie::testing::wait_until;

const WAIT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn with_store<T>(db: &Path, f: impl AsyncFnOnce(&Datastore) -> T) -> T {
    runtime().block_on(async {
        let ds = Datastore::new(SqliteBackend::open(db, SqliteOptions::default()).await.unwrap());
        f(&ds).await
    })
}

/// A pod the plugin made; its namespace (named after the node's, so unique) goes on drop,
/// also on panic.
struct Pod {
    ns: String,
    ip: IpAddr,
    listeners: Vec<TcpListener>,
}

impl Drop for Pod {
    fn drop(&mut self) {
        tortie::netns::remove_namespace(&self.ns);
    }
}

fn add_pod(t: &Topology, socket: &Path, name: &str, args: &[&str]) -> Pod {
    // nsenter enters the network namespace only: the pod's namespace file, mounted by the
    // plugin's runtime, stays visible here (`ip netns exec` would keep the mount private).
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", t.ns("n")))
        .args(["--", env!("CARGO_BIN_EXE_tortie"), "lab", "pod", "add", name])
        .args(args)
        .env("TORTIE_API_SOCKET", socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "pod {name}: {}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let address = result["ips"][0]["address"].as_str().unwrap_or_else(|| panic!("{result}"));
    let ip: IpAddr = address.split('/').next().unwrap().parse().unwrap();
    let ns = format!("{}-{name}", t.ns("n"));
    let listeners = [80, 8080]
        .into_iter()
        .map(|port| {
            let l = tortie::netns::run_in_namespace(&ns, move || TcpListener::bind((ip, port))).unwrap().unwrap();
            l.set_nonblocking(true).unwrap();
            l
        })
        .collect();
    Pod { ns, ip, listeners }
}

fn connects(from: &Pod, to: &Pod, port: u16) -> bool {
    let target = SocketAddr::new(to.ip, port);
    let connected =
        tortie::netns::run_in_namespace(&from.ns, move || TcpStream::connect_timeout(&target, CONNECT_TIMEOUT).is_ok())
            .unwrap();
    // Accepted and closed: a full accept queue would make later connections fail as if denied.
    for listener in &to.listeners {
        while listener.accept().is_ok() {}
    }
    connected
}

fn kube_policy(spec: serde_json::Value) -> KubeNetworkPolicy {
    serde_json::from_value(spec).unwrap()
}

/// `tortie node` in namespace `n` of a fresh topology (sqlite datastore, a /16 pool),
/// with `TORTIE_FAULTS` set to `faults` when given.
struct Node {
    t: Topology,
    db: std::path::PathBuf,
    socket: std::path::PathBuf,
    pid: u32,
    log: std::path::PathBuf,
}

impl Node {
    fn start(label: &str, faults: Option<&str>) -> Node {
        let mut t = Topology::new(label).unwrap();
        t.add_namespace("n").unwrap();
        // The node's own address, on its uplink.
        t.add_namespace("ext").unwrap();
        t.add_veth(("n", "eth1", Some("192.0.2.1/24")), ("ext", "eth1", Some("192.0.2.2/24"))).unwrap();
        let dir = t.dir().to_path_buf();
        let db = dir.join("tortie.db");
        with_store(&db, async |ds| {
            tortie::ipam::create_pool(ds, "v4", &IpPool::new("10.244.0.0/16".parse().unwrap())).await.unwrap();
        });
        let config = dir.join("tortie.yaml");
        let socket = dir.join("api.sock");
        std::fs::write(
            &config,
            format!(
                "node: {{name: policy-test}}\ndatastore: {{sqlite_path: {}}}\napi: {{socket: {}}}\nmetrics: {{enabled: true}}\nbgp: {{enabled: false}}\ndataplane: {{cleanup_on_exit: true, resync_interval_seconds: 1}}\n",
                db.display(),
                socket.display()
            ),
        )
        .unwrap();
        let fault = faults.map(|f| format!("{}={f}", tortie::faults::VARIABLE));
        let mut argv = vec!["env"];
        argv.extend(fault.as_deref());
        argv.extend([env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]);
        let agent = t.spawn("n", &argv).unwrap();
        let (pid, log) = (agent.pid(), agent.log_path().to_path_buf());
        Node { t, db, socket, pid, log }
    }

    fn add_pod(&self, name: &str, args: &[&str]) -> Pod {
        add_pod(&self.t, &self.socket, name, args)
    }

    /// Panics with `what`, the table and the agent's log.
    fn fail(&self, what: &str) -> ! {
        let table = self
            .t
            .exec("n", &["nft", "list", "table", "inet", "tortie"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        panic!("{what}; table {table:?}; agent log:\n{log}");
    }

    /// `tortie <args> --socket <the agent's>`: its stdout (panics when it prints nothing;
    /// `status` exits 3 while the agent is not ready).
    fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .unwrap();
        if out.stdout.is_empty() {
            self.fail(&format!("tortie {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The agent's `/metrics` text (empty when it does not answer).
    fn metrics(&self) -> String {
        use std::io::{Read, Write};
        tortie::netns::run_in_namespace(&self.t.ns("n"), || {
            let mut stream = TcpStream::connect_timeout(&"127.0.0.1:9478".parse().unwrap(), CONNECT_TIMEOUT).ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
            let mut text = String::new();
            stream.read_to_string(&mut text).ok()?;
            Some(text)
        })
        .ok()
        .flatten()
        .unwrap_or_default()
    }

    fn stop(mut self) {
        let exit = self.t.terminate(self.pid, Duration::from_secs(10));
        assert!(exit.is_some_and(|s| s.success()), "SIGTERM stops the agent cleanly: {exit:?}");
    }
}

#[test]
fn policies_and_namespace_labels_in_the_datastore_isolate_pods_the_cni_plugin_made() {
    let node = Node::start("apol", None);
    let db = node.db.clone();
    let fail = |what: &str| node.fail(what);

    let web = node.add_pod("web", &["--namespace", "prod", "--label", "app=web"]);
    let db_pod = node.add_pod("db", &["--namespace", "prod", "--label", "app=db", "--port", "http:tcp:8080"]);
    let dev = node.add_pod("dev", &["--namespace", "dev", "--label", "app=web"]);
    if wait_until("pods reaching each other", WAIT, || connects(&web, &db_pod, 80).then_some(())).is_err() {
        fail("web cannot reach db without any policy");
    }

    // Only app=web of prod, only on db's named port http.
    with_store(&db, async |ds| {
        let policy = kube_policy(serde_json::json!({"podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "http"}]}]}));
        ds.create("prod/db-from-web", &policy).await.unwrap();
    });
    let enforced = || {
        (!connects(&web, &db_pod, 80) && connects(&web, &db_pod, 8080) && !connects(&dev, &db_pod, 8080)).then_some(())
    };
    if wait_until("the Kubernetes policy enforced", WAIT, enforced).is_err() {
        fail("the policy is not enforced");
    }

    // Counters from the kernel: the allowing rule's packets and bytes, db's denied packets.
    let counted = || {
        let metrics = node.metrics();
        let value = |series: &str| -> f64 {
            metrics.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0.0)
        };
        let rule = "{policy=\"prod/knp.default.db-from-web\",rule=\"0\",direction=\"ingress\"}";
        let packets = value(&format!("tortie_policy_rule_packets_total{rule}"));
        let bytes = value(&format!("tortie_policy_rule_bytes_total{rule}"));
        let denied = value("tortie_policy_denied_packets_total{namespace=\"prod\",pod=\"db\"}");
        (packets > 0.0 && bytes > packets && denied > 0.0).then_some(())
    };
    if wait_until("the policy counters counting", WAIT, counted).is_err() {
        fail(&format!("the policy counters do not count:\n{}", node.metrics()));
    }

    // The agent's view: the policy listed, and traces that agree with the connections above.
    let list: serde_json::Value = serde_json::from_str(&node.cli(&["policy", "list", "-o", "json"])).unwrap();
    assert_eq!(
        list,
        serde_json::json!([{"kind": "KubernetesNetworkPolicy", "name": "prod/db-from-web", "order": 1000.0,
            "selector": "app == \"db\"", "types": ["Ingress"], "ingress_rules": 1, "egress_rules": 0,
            "status": "valid"}])
    );
    let trace = |from: &str, to: &str, port: &str| -> serde_json::Value {
        let out = node.cli(&["policy", "trace", "--from", from, "--to", to, "--port", port, "-o", "json"]);
        serde_json::from_str(&out).unwrap()
    };
    let allowed = trace("prod/web", "prod/db", "8080/tcp");
    assert_eq!(allowed["allowed"], true, "{allowed}");
    assert_eq!(allowed["ingress"]["policy"], "prod/knp.default.db-from-web", "{allowed}");
    assert_eq!(allowed["ingress"]["rule"], 0, "{allowed}");
    assert_eq!(allowed["egress"]["verdict"], "allow", "{allowed}");
    let denied = trace("prod/web", &db_pod.ip.to_string(), "80/tcp");
    assert_eq!(
        (&denied["allowed"], &denied["to"]),
        (&serde_json::json!(false), &serde_json::json!("prod/db")),
        "{denied}"
    );
    assert_eq!(denied["ingress"]["reason"], "selected by a policy, and no rule matched", "{denied}");
    let table = node.cli(&["policy", "trace", "--from", "dev/dev", "--to", "prod/db", "--port", "8080/tcp"]);
    assert!(table.ends_with("denied\n"), "{table}");
    let unknown = std::process::Command::new(env!("CARGO_BIN_EXE_tortie"))
        .args(["policy", "trace", "--from", "prod/nope", "--to", "prod/db", "--port", "80/tcp", "--socket"])
        .arg(&node.socket)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(!unknown.status.success() && stderr.contains("no pod prod/nope in the cluster"), "{stderr}");

    // The dev namespace labelled and let in by a namespace selector.
    with_store(&db, async |ds| {
        let labels = [("env".to_string(), "dev".to_string())].into();
        ds.create("dev", &Namespace { labels, ..Namespace::default() }).await.unwrap();
        let policy = kube_policy(serde_json::json!({"podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "dev"}}}]}]}));
        ds.create("prod/db-from-dev", &policy).await.unwrap();
    });
    if wait_until("dev let in", WAIT, || connects(&dev, &db_pod, 80).then_some(())).is_err() {
        fail("the namespace selector does not let dev in");
    }
    assert!(!connects(&web, &db_pod, 80), "web still only on http");

    node.stop();
}

/// Each policy change reaches nftables this late (`delay-MS:policy`): without the ADD waiting
/// for its pod's policy, a new pod would be reachable for that long.
const POLICY_DELAY_MS: u64 = 3000;

#[test]
fn a_pod_added_under_a_deny_policy_is_denied_as_soon_as_its_add_returns() {
    let node = Node::start("apolw", Some(&format!("delay-{POLICY_DELAY_MS}:policy")));
    // Ingress to app=target denied, before any such pod exists.
    with_store(&node.db, async |ds| {
        let policy = kube_policy(serde_json::json!({"podSelector": {"matchLabels": {"app": "target"}},
            "policyTypes": ["Ingress"]}));
        ds.create("prod/deny-target", &policy).await.unwrap();
    });
    let client = node.add_pod("client", &["--namespace", "prod", "--label", "app=client"]);
    let open = node.add_pod("open", &["--namespace", "prod", "--label", "app=open"]);
    // A pod no policy selects is reachable as soon as its ADD returns: its route is in place.
    if !connects(&client, &open, 80) {
        node.fail("an unselected pod is not reachable right after its ADD returned");
    }
    let target = node.add_pod("target", &["--namespace", "prod", "--label", "app=target"]);
    if connects(&client, &target, 80) {
        node.fail("the target pod was reachable right after its ADD returned: its policy was not in place");
    }
    node.stop();
}

#[test]
fn an_add_whose_policy_is_not_programmed_in_time_is_told_to_try_again_naming_the_pod() {
    // Longer than the agent's wait (a third of the plugin's 30 s): the ADD cannot succeed.
    let node = Node::start("apolt", Some("delay-15000:policy"));
    let listening = || std::os::unix::net::UnixStream::connect(&node.socket).ok().map(drop);
    if wait_until("the agent's API", WAIT, listening).is_err() {
        node.fail("the agent's API does not answer");
    }
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", node.t.ns("n")))
        .args(["--", env!("CARGO_BIN_EXE_tortie"), "lab", "pod", "add", "late", "--namespace", "prod"])
        .args(["--wait-seconds", "0"])
        .env("TORTIE_API_SOCKET", &node.socket)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the ADD must not succeed: {}", String::from_utf8_lossy(&out.stdout));
    if !(stderr.contains("code 11") && stderr.contains("prod/late") && stderr.contains("network policy")) {
        node.fail(&format!("the ADD's error is not code 11 naming the pod: {stderr}"));
    }
    node.stop();
}

#[test]
fn a_policy_nftables_refuses_is_reported_and_skipped_while_the_others_apply() {
    // nft refuses the rules of prod/refused (a jump to a chain that does not exist).
    let node = Node::start("apolr", Some("refuse:nft-policy:prod/knp.default.refused"));
    let web = node.add_pod("web", &["--namespace", "prod", "--label", "app=web"]);
    let db = node.add_pod("db", &["--namespace", "prod", "--label", "app=db"]);
    if wait_until("pods reaching each other", WAIT, || connects(&web, &db, 80).then_some(())).is_err() {
        node.fail("web cannot reach db without any policy");
    }
    with_store(&node.db, async |ds| {
        let deny = |app: &str| {
            kube_policy(serde_json::json!({"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Ingress"]}))
        };
        ds.create("prod/refused", &deny("web")).await.unwrap();
        ds.create("prod/db-closed", &deny("db")).await.unwrap();
    });
    // The refused policy is skipped: web stays open.
    let applied = || (!connects(&web, &db, 80) && connects(&db, &web, 80)).then_some(());
    if wait_until("the valid policy enforced", WAIT, applied).is_err() {
        node.fail("the valid policy is not enforced beside the one nftables refuses");
    }
    let status: serde_json::Value = serde_json::from_str(&node.cli(&["status", "-o", "json"])).unwrap();
    let invalid = status["invalid_policies"].as_array().cloned().unwrap_or_default();
    let reported = invalid.iter().any(|p| {
        p["kind"] == "KubernetesNetworkPolicy"
            && p["name"] == "prod/refused"
            && p["reason"].as_str().is_some_and(|r| r.contains("nftables refuses its rules"))
    });
    if !reported || invalid.len() != 1 {
        node.fail(&format!("status does not report prod/refused alone as invalid: {invalid:?}"));
    }
    let series = "tortie_policy_invalid{kind=\"KubernetesNetworkPolicy\",name=\"prod/refused\"} 1";
    let metrics = node.metrics();
    if !metrics.contains(series) {
        node.fail(&format!("no {series} in the metrics:\n{metrics}"));
    }
    node.stop();
}

/// The value of an unlabelled series in a metrics text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A burst of policy changes is a few whole reads, not one per object: the follower takes
/// every change already queued before it reads the inputs again. (Each read compiles every
/// policy: with a thousand policies, one read per queued object kept an agent busy for
/// minutes after `tortie apply` and took the data path's CPU.)
#[test]
fn a_burst_of_policies_is_compiled_a_few_times_not_once_per_policy() {
    const POLICIES: usize = 400;
    let node = Node::start("apolb", None);
    let passes = || metric(&node.metrics(), "tortie_policy_full_passes_total");
    let Ok(before) = wait_until("the first pass", WAIT, || passes().filter(|p| *p >= 1.0)) else {
        node.fail("no tortie_policy_full_passes_total")
    };
    with_store(&node.db, async |ds| {
        for i in 0..POLICIES {
            let policy = kube_policy(serde_json::json!({"podSelector": {"matchLabels": {"app": format!("a{i}")}},
                "ingress": [{"ports": [{"port": 80 + i % 100}]}]}));
            ds.create(&format!("prod/p{i}"), &policy).await.unwrap();
        }
    });
    let listed = || {
        let list: serde_json::Value = serde_json::from_str(&node.cli(&["policy", "list", "-o", "json"])).ok()?;
        (list.as_array()?.len() == POLICIES).then_some(())
    };
    if wait_until("every policy compiled", Duration::from_secs(120), listed).is_err() {
        node.fail("the policies were not all compiled");
    }
    // Every queued change handled: the count stays the same for a while (the resync is 30 s).
    let mut last = (f64::MAX, std::time::Instant::now());
    let settled = wait_until("the follower idle", Duration::from_secs(180), || {
        let now = passes()?;
        if now != last.0 {
            last = (now, std::time::Instant::now());
        }
        (last.1.elapsed() >= Duration::from_secs(3)).then_some(now)
    });
    let Ok(after) = settled else { node.fail("the follower never went idle") };
    assert!(
        after - before < (POLICIES / 4) as f64,
        "{} whole reads for {POLICIES} policies written one by one",
        after - before
    );
    node.stop();
}

/// One policy object created, changed or deleted compiles that policy alone: each change is
/// enforced while the count of whole compiles stays where it was. (Compiling every policy for
/// each change took about a second per change with a thousand policies loaded.)
#[test]
fn a_policy_changed_alone_is_compiled_alone() {
    let node = Node::start("apol1", None);
    let web = node.add_pod("web", &["--namespace", "prod", "--label", "app=web"]);
    let db = node.add_pod("db", &["--namespace", "prod", "--label", "app=db"]);
    if wait_until("pods reaching each other", WAIT, || connects(&web, &db, 80).then_some(())).is_err() {
        node.fail("web cannot reach db without any policy");
    }
    let passes = || metric(&node.metrics(), "tortie_policy_full_passes_total");
    // The start-up passes done: the count stays the same for a while.
    let mut last = (f64::MAX, std::time::Instant::now());
    let settled = wait_until("the follower idle", WAIT, || {
        let now = passes()?;
        if now != last.0 {
            last = (now, std::time::Instant::now());
        }
        (last.1.elapsed() >= Duration::from_secs(2)).then_some(now)
    });
    let Ok(before) = settled else { node.fail("the follower never went idle") };
    let deny = |app: &str| {
        kube_policy(serde_json::json!({"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Ingress"]}))
    };
    let created = with_store(&node.db, async |ds| ds.create("prod/closed", &deny("db")).await.unwrap());
    if wait_until("db closed", WAIT, || (!connects(&web, &db, 80) && connects(&db, &web, 80)).then_some(())).is_err() {
        node.fail("the created policy is not enforced");
    }
    let updated =
        with_store(&node.db, async |ds| ds.update("prod/closed", &deny("web"), created.revision).await.unwrap());
    if wait_until("web closed instead", WAIT, || (connects(&web, &db, 80) && !connects(&db, &web, 80)).then_some(()))
        .is_err()
    {
        node.fail("the changed policy is not enforced");
    }
    with_store(&node.db, async |ds| ds.delete::<KubeNetworkPolicy>("prod/closed", updated.revision).await.unwrap());
    if wait_until("both open", WAIT, || (connects(&web, &db, 80) && connects(&db, &web, 80)).then_some(())).is_err() {
        node.fail("the deleted policy is still enforced");
    }
    let after = passes();
    if after != Some(before) {
        node.fail(&format!(
            "every policy was compiled for one policy's changes: {before} passes before, {after:?} after"
        ));
    }
    node.stop();
}
