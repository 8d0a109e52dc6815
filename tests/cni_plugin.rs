//! The CNI plugin run exactly as a container runtime runs it — `tortie cni` with CNI_* variables
//! and the network configuration on stdin, inside the node's namespace — against a real
//! `tortie node` agent (sqlite datastore) in that namespace, with real pod namespaces.

use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use tortie::netns::Topology;
use tortie::testing::{json_subset, wait_until};

const NODE_ADDR: &str = "10.77.0.5";
const POOL: &str = "10.244.0.0/16";

/// A node namespace `n` with an uplink (and a default route through it, which proxy ARP needs
/// to answer for 169.254.1.1) and a running agent.
struct Node {
    t: Topology,
    socket: PathBuf,
    config: PathBuf,
    db: PathBuf,
    agent: u32,
}

impl Node {
    fn new(label: &str) -> Node {
        Node::with_pool(label, Some(POOL))
    }

    fn with_pool(label: &str, pool: Option<&str>) -> Node {
        let mut node = Node::unstarted(label, pool, None);
        node.start_agent();
        node
    }

    /// The node's namespaces and configuration, with no agent yet; `datastore` replaces the
    /// sqlite datastore section.
    fn unstarted(label: &str, pool: Option<&str>, datastore: Option<&str>) -> Node {
        let mut t = Topology::new(label).unwrap();
        t.add_namespace("n").unwrap();
        t.add_namespace("up").unwrap();
        t.add_veth(("n", "eth1", Some(&format!("{NODE_ADDR}/24"))), ("up", "eth1", Some("10.77.0.1/24"))).unwrap();
        t.exec("n", &["ip", "route", "add", "default", "via", "10.77.0.1"]).unwrap();
        let dir = t.dir().to_path_buf();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tortie"), dir.join("bin/tortie-cni")).unwrap();
        let (socket, db, config) = (dir.join("api.sock"), dir.join("tortie.db"), dir.join("tortie.yaml"));
        let ipam = pool.map(|p| format!("ipam: {{default_ipv4_pool_cidr: \"{p}\"}}\n")).unwrap_or_default();
        let datastore = datastore.map(str::to_string).unwrap_or_else(|| format!("{{sqlite_path: {}}}", db.display()));
        std::fs::write(
            &config,
            format!(
                "node: {{name: cni-node, address: \"{NODE_ADDR}/24\"}}\ndatastore: {datastore}\napi: {{socket: {}}}\nmetrics: {{enabled: false}}\nbgp: {{enabled: false}}\n{ipam}",
                socket.display()
            ),
        )
        .unwrap();
        Node { t, socket, config, db, agent: 0 }
    }

    fn start_agent(&mut self) {
        self.spawn_agent();
        wait_until("the agent to be ready", Duration::from_secs(30), || {
            self.status().filter(|s| s["ready"] == json!(true)).map(|_| ())
        })
        .unwrap();
    }

    fn spawn_agent(&mut self) {
        let argv = [env!("CARGO_BIN_EXE_tortie"), "node", "--config", self.config.to_str().unwrap()];
        self.agent = self.t.spawn("n", &argv).unwrap().pid();
    }

    /// `tortie status -o json`, if the agent answers (ready or not).
    fn status(&self) -> Option<Value> {
        let out = Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(["status", "--socket", self.socket.to_str().unwrap(), "-o", "json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).ok()
    }

    fn stop_agent(&mut self) {
        let exit = self.t.terminate(self.agent, Duration::from_secs(10));
        assert!(exit.is_some_and(|s| s.success()), "the agent stops cleanly: {exit:?}");
    }

    fn conf(&self) -> Value {
        json!({"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "tortie-cni", "api_socket": self.socket})
    }

    /// Runs the plugin in the node namespace as a runtime does: the file named by the
    /// configuration's `type` in CNI_PATH (here a symlink `tortie-cni` to the binary); (exit
    /// code, stdout as JSON or Null).
    fn cni(&self, command: &str, id: &str, pod: Option<&str>, conf: &Value) -> (i32, Value) {
        self.cni_sandbox(command, id, id, pod, conf)
    }

    /// As [`Node::cni`], for sandbox `id` (in namespace `sandbox`) of the Kubernetes pod
    /// `default/pod_name`: a recreated pod has a new sandbox under the same pod name.
    fn cni_sandbox(
        &self,
        command: &str,
        id: &str,
        pod_name: &str,
        sandbox: Option<&str>,
        conf: &Value,
    ) -> (i32, Value) {
        self.cni_args(command, id, pod_name, sandbox, "", conf)
    }

    /// As [`Node::cni_sandbox`], with `extra` (`;KEY=VALUE…`) appended to CNI_ARGS.
    fn cni_args(
        &self,
        command: &str,
        id: &str,
        pod_name: &str,
        sandbox: Option<&str>,
        extra: &str,
        conf: &Value,
    ) -> (i32, Value) {
        let netns = sandbox.map(|p| format!("/run/netns/{}", self.t.ns(p))).unwrap_or_default();
        let env = [
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", id.to_string()),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_ARGS", format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod_name}{extra}")),
            ("CNI_PATH", format!("{}:/usr/lib/cni", self.plugin_dir().display())),
        ];
        let ns = self.t.ns("n");
        let plugin = self.plugin_dir().join(conf["type"].as_str().unwrap());
        run(&["ip", "netns", "exec", &ns, plugin.to_str().unwrap()], &env, conf)
    }

    /// The plugin directory, holding `tortie-cni`: a symlink to the binary.
    fn plugin_dir(&self) -> PathBuf {
        self.t.dir().join("bin")
    }

    fn exec_json(&self, argv: &[&str]) -> Value {
        self.t.exec_json("n", argv).unwrap()
    }

    fn workloads(&self) -> Value {
        let out = Command::new("curl")
            .args(["-s", "--unix-socket", self.socket.to_str().unwrap(), "http://tortie/v1/workloads"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// `method path` with `body` on the agent's socket: (HTTP status, JSON answer).
    fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut curl = Command::new("curl");
        curl.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, "--unix-socket"]);
        curl.arg(&self.socket).arg(format!("http://tortie{path}"));
        if let Some(body) = body {
            curl.args(["-H", "Content-Type: application/json", "-d", &body.to_string()]);
        }
        let out = String::from_utf8(curl.output().unwrap().stdout).unwrap();
        let (answer, status) = out.rsplit_once('\n').unwrap();
        (status.parse().unwrap(), serde_json::from_str(answer).unwrap_or(Value::Null))
    }

    /// An IPAM client of node `node` on this node's datastore (as that node's agent would have).
    fn ipam_of<T>(&self, node: &str, f: impl AsyncFnOnce(tortie::ipam::Ipam) -> T) -> T {
        use tortie::datastore::Datastore;
        use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
        use tortie::ipam::{Ipam, IpamOptions};
        let (db, node) = (self.db.clone(), node.to_string());
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async move {
            let ds = Datastore::new(SqliteBackend::open(&db, SqliteOptions::default()).await.unwrap());
            f(Ipam::new(ds, IpamOptions { node, ..Default::default() })).await
        })
    }

    fn links(&self) -> Vec<String> {
        let links = self.exec_json(&["ip", "-j", "link", "show"]);
        links.as_array().unwrap().iter().map(|l| l["ifname"].as_str().unwrap().to_string()).collect()
    }

    fn ipam_handles(&self) -> usize {
        use tortie::datastore::Datastore;
        use tortie::datastore::resources::IpamHandle;
        use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
        let db = self.db.clone();
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async move {
            let ds = Datastore::new(SqliteBackend::open(&db, SqliteOptions::default()).await.unwrap());
            ds.list::<IpamHandle>().await.unwrap().items.len()
        })
    }
}

/// Runs `argv` with `env` and `stdin`; (exit code, stdout parsed as JSON, or Null when empty).
fn run(argv: &[&str], env: &[(&str, String)], stdin: &Value) -> (i32, Value) {
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let json = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (out.status.code().unwrap_or(-1), json)
}

fn pod_ip(result: &Value) -> String {
    result["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string()
}

fn host_interface(result: &Value) -> String {
    result["interfaces"][0]["name"].as_str().unwrap().to_string()
}

#[test]
fn add_wires_a_pod_that_reaches_the_node_and_another_pod_and_del_removes_every_trace() {
    let mut node = Node::new("cniadd");
    node.t.add_namespace("p1").unwrap();
    node.t.add_namespace("p2").unwrap();
    let conf = node.conf();

    let (code, r1) = node.cni("ADD", "c1", Some("p1"), &conf);
    assert_eq!(code, 0, "{r1}");
    json_subset(
        &json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "*", "mac": "ee:ee:ee:ee:ee:ee"}, {"name": "eth0", "mac": "*", "sandbox": "*"}],
            "ips": [{"address": "*", "gateway": "169.254.1.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
            "dns": {}
        }),
        &r1,
    )
    .unwrap();
    let (ip1, veth1) = (pod_ip(&r1), host_interface(&r1));
    assert!(veth1.starts_with("tt") && veth1.len() == 15, "{veth1}");
    assert!(r1["ips"][0]["address"].as_str().unwrap().ends_with("/32"));
    let (code, r2) = node.cni("ADD", "c2", Some("p2"), &conf);
    assert_eq!(code, 0, "{r2}");
    let ip2 = pod_ip(&r2);
    assert_ne!(ip1, ip2);

    // The host route is the agent's, with tortie's protocol.
    let routes = node.exec_json(&["ip", "-j", "route", "show", &format!("{ip1}/32")]);
    json_subset(&json!([{"dst": ip1, "dev": veth1, "protocol": "116", "scope": "link"}]), &routes).unwrap();
    // Inside the pod: the /32, the on-link gateway and the default route through it.
    let pod_routes = node.t.exec_json("p1", &["ip", "-j", "route", "show"]).unwrap();
    json_subset(
        &json!([{"dst": "default", "gateway": "169.254.1.1", "dev": "eth0"}, {"dst": "169.254.1.1", "dev": "eth0", "scope": "link"}]),
        &pod_routes,
    )
    .unwrap();

    assert!(node.t.ping("p1", NODE_ADDR), "pod 1 reaches the node");
    assert!(node.t.ping("p1", &ip2), "pod 1 reaches pod 2");
    assert!(node.t.ping("p2", &ip1), "pod 2 reaches pod 1");

    // CHECK passes with the ADD result, and fails once the host veth is gone.
    let mut check_conf = conf.clone();
    check_conf["prevResult"] = r1.clone();
    let (code, out) = node.cni("CHECK", "c1", Some("p1"), &check_conf);
    assert_eq!((code, &out), (0, &Value::Null));
    node.t.exec("n", &["ip", "link", "del", &host_interface(&r2)]).unwrap();
    let mut check2 = conf.clone();
    check2["prevResult"] = r2.clone();
    let (code, err) = node.cni("CHECK", "c2", Some("p2"), &check2);
    assert_eq!(code, 1);
    json_subset(&json!({"code": 103, "msg": "*"}), &err).unwrap();
    assert!(err["msg"].as_str().unwrap().contains("is missing"), "{err}");

    // GC keeps handles younger than the grace period even when not listed.
    let mut gc =
        json!({"cniVersion": "1.1.0", "name": "k8s-pod-network", "type": "tortie-cni", "api_socket": node.socket});
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    let (code, out) = node.cni("GC", "", None, &gc);
    assert_eq!((code, &out), (0, &Value::Null));
    assert_eq!(node.workloads().as_array().unwrap().len(), 2);
    let (code, _) = node.cni("STATUS", "", None, &gc);
    assert_eq!(code, 0);

    // DEL removes the veth, the host route and the allocation; twice is fine.
    for _ in 0..2 {
        for (id, pod) in [("c1", "p1"), ("c2", "p2")] {
            let (code, out) = node.cni("DEL", id, Some(pod), &conf);
            assert_eq!((code, &out), (0, &Value::Null));
        }
    }
    assert!(!node.links().iter().any(|l| l.starts_with("tt")), "{:?}", node.links());
    // Only the node's block stays, blackholed (it stays affine to the node, as in Calico).
    let routes = node.exec_json(&["ip", "-j", "route", "show", "proto", "116"]);
    let routes = routes.as_array().unwrap();
    assert!(routes.iter().all(|r| r["type"] == "blackhole"), "{routes:?}");
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(node.workloads(), json!([]));
    assert_eq!(node.ipam_handles(), 0);
    // DEL of a pod whose namespace is already gone is success too.
    let (code, _) = node.cni("DEL", "c3", None, &conf);
    assert_eq!(code, 0);
    node.stop_agent();
}

#[test]
fn a_conflist_chaining_portmap_adds_and_deletes() {
    let mut t = Node::new("cnipm");
    t.t.add_namespace("p").unwrap();
    let conf = t.conf();
    let (code, result) = t.cni("ADD", "pm1", Some("p"), &conf);
    assert_eq!(code, 0, "{result}");
    let portmap = |command: &str, prev: &Value| {
        let conf = json!({
            "cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "portmap",
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]},
            "prevResult": prev,
        });
        let env = [
            ("CNI_COMMAND", command.to_string()),
            ("CNI_CONTAINERID", "pm1".to_string()),
            ("CNI_NETNS", format!("/run/netns/{}", t.t.ns("p"))),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_PATH", "/usr/lib/cni".to_string()),
        ];
        let ns = t.t.ns("n");
        run(&["ip", "netns", "exec", &ns, "/usr/lib/cni/portmap"], &env, &conf)
    };
    let (code, chained) = portmap("ADD", &result);
    assert_eq!(code, 0, "{chained}");
    json_subset(&json!({"ips": [{"address": result["ips"][0]["address"]}]}), &chained).unwrap();
    let nat = t.t.exec("n", &["iptables", "-t", "nat", "-S"]).unwrap();
    assert!(String::from_utf8_lossy(&nat.stdout).contains("18080"), "portmap's DNAT rule is there");
    // DEL runs the list in reverse: portmap, then tortie.
    let (code, out) = portmap("DEL", &chained);
    assert_eq!(code, 0, "{out}");
    let mut del_conf = conf.clone();
    del_conf["prevResult"] = chained;
    let (code, out) = t.cni("DEL", "pm1", Some("p"), &del_conf);
    assert_eq!((code, &out), (0, &Value::Null));
    assert_eq!(t.workloads(), json!([]));
}

#[test]
fn fifty_concurrent_adds_get_distinct_addresses_and_fifty_dels_empty_ipam() {
    let mut node = Node::new("cni50");
    let ids: Vec<String> = (0..50).map(|i| format!("pod{i}")).collect();
    for id in &ids {
        node.t.add_namespace(id).unwrap();
    }
    let conf = node.conf();
    let results: Vec<(i32, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = ids.iter().map(|id| s.spawn(|| node.cni("ADD", id, Some(id), &conf))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut addresses: Vec<String> = results
        .iter()
        .map(|(code, r)| {
            assert_eq!(*code, 0, "{r}");
            pod_ip(r)
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 50, "50 distinct addresses");
    assert_eq!(node.workloads().as_array().unwrap().len(), 50);
    let routes = node.exec_json(&["ip", "-j", "route", "show", "proto", "116"]);
    let pod_routes = routes.as_array().unwrap().iter().filter(|r| r["type"] != "blackhole").count();
    assert_eq!(pod_routes, 50, "{routes}");

    std::thread::scope(|s| {
        for id in &ids {
            let (node, conf) = (&node, &conf);
            s.spawn(move || assert_eq!(node.cni("DEL", id, Some(id), conf).0, 0));
        }
    });
    assert_eq!(node.workloads(), json!([]));
    assert_eq!(node.ipam_handles(), 0);
    let routes = node.exec_json(&["ip", "-j", "route", "show", "proto", "116"]);
    assert!(routes.as_array().unwrap().iter().all(|r| r["type"] == "blackhole"), "only the blocks stay: {routes}");
    node.stop_agent();
}

/// A kubelet recreating a sandbox: ADD of the new sandbox before the DEL of the old one, for
/// the same pod (so the same host interface name). The late DEL removes only what the old
/// container owned.
#[test]
fn a_late_del_of_an_old_sandbox_leaves_the_new_sandbox_wired() {
    let mut node = Node::new("cnilate");
    node.t.add_namespace("old").unwrap();
    node.t.add_namespace("new").unwrap();
    let conf = node.conf();
    let (code, r_old) = node.cni_sandbox("ADD", "sandbox-old", "web", Some("old"), &conf);
    assert_eq!(code, 0, "{r_old}");
    let (code, r_new) = node.cni_sandbox("ADD", "sandbox-new", "web", Some("new"), &conf);
    assert_eq!(code, 0, "{r_new}");
    let (ip_new, veth) = (pod_ip(&r_new), host_interface(&r_new));
    assert_eq!(veth, host_interface(&r_old), "one pod, one host interface name");
    assert_ne!(ip_new, pod_ip(&r_old));

    let (code, out) = node.cni_sandbox("DEL", "sandbox-old", "web", Some("old"), &conf);
    assert_eq!((code, &out), (0, &Value::Null), "the late DEL succeeds");

    let pod_links = node.t.exec_json("new", &["ip", "-j", "addr", "show", "dev", "eth0"]).unwrap();
    json_subset(&json!([{"ifname": "eth0", "addr_info": [{"local": ip_new, "prefixlen": 32}]}]), &pod_links).unwrap();
    let routes = node.exec_json(&["ip", "-j", "route", "show", &format!("{ip_new}/32")]);
    json_subset(&json!([{"dst": ip_new, "dev": veth, "protocol": "116"}]), &routes).unwrap();
    let held: Vec<Value> = node.workloads().as_array().unwrap().iter().map(|w| w["handle"].clone()).collect();
    assert_eq!(held, vec![json!("k8s-pod-network.sandbox-new")], "only the old sandbox's address is released");
    assert!(node.t.ping("new", NODE_ADDR), "the new sandbox still reaches the node");

    // The new sandbox's own DEL removes everything.
    let (code, _) = node.cni_sandbox("DEL", "sandbox-new", "web", Some("new"), &conf);
    assert_eq!(code, 0);
    assert!(!node.links().contains(&veth), "{:?}", node.links());
    assert_eq!(node.workloads(), json!([]));
    node.stop_agent();
}

/// The workload API of one node acts on that node's addresses only: another node's tunnel
/// address or pod cannot be released, routed or taken over through it.
#[test]
fn the_workload_api_refuses_another_nodes_addresses() {
    let node = Node::new("cniscope");
    let (tunnel, pod) = node.ipam_of("node2", async |ipam| {
        let tunnel = ipam.tunnel_address(4).await.unwrap();
        let mut request = tortie::ipam::Request::workload("k8s-pod-network.far", 4, "far", "default", "node2");
        request.attributes.insert("host_interface".into(), "tt0000000000001".into());
        (tunnel.ip, ipam.allocate(request).await.unwrap().ip)
    });
    let handles = node.ipam_handles();
    let attempts = [
        ("DELETE", "/v1/workloads/ipip-tunnel-addr-node2", None, tunnel),
        ("DELETE", "/v1/workloads/k8s-pod-network.far", None, pod),
        ("PUT", "/v1/workloads/k8s-pod-network.far/route", None, pod),
        (
            "POST",
            "/v1/workloads",
            Some(json!({"handle": "k8s-pod-network.far", "container_id": "far", "netns": "/proc/1/ns/net",
                        "ifname": "eth0", "host_interface": "tt0000000000001"})),
            pod,
        ),
    ];
    for (method, path, body, ip) in attempts {
        let (status, answer) = node.api(method, path, body);
        assert_eq!(status, 403, "{method} {path}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains(&ip.to_string()) && message.contains("node2"), "{method} {path}: {answer}");
    }
    assert_eq!(node.ipam_handles(), handles, "nothing was released");
    let still = node.ipam_of("node2", async |ipam| ipam.tunnel_address(4).await.unwrap().ip);
    assert_eq!(still, tunnel);
}

#[test]
fn an_add_failing_half_way_leaves_no_address_and_no_veth() {
    let mut t = Node::new("cnihalf");
    t.t.add_namespace("p").unwrap();
    // CNI_IFNAME is taken in the pod's namespace.
    let ns = t.t.ns("p");
    tortie::netns::run_output(&["ip", "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", "other"])
        .unwrap();
    let (code, err) = t.cni("ADD", "half", Some("p"), &t.conf());
    assert_eq!(code, 1);
    json_subset(&json!({"cniVersion": "1.0.0", "code": 102, "msg": "*"}), &err).unwrap();
    assert!(err["msg"].as_str().unwrap().contains("CNI_IFNAME eth0 already exists"), "{err}");
    assert_eq!(t.workloads(), json!([]));
    assert_eq!(t.ipam_handles(), 0);
    assert!(!t.links().iter().any(|l| l.starts_with("tt")), "{:?}", t.links());
}

#[test]
fn an_agent_restart_keeps_pod_routes() {
    let mut node = Node::new("cnirest");
    node.t.add_namespace("p").unwrap();
    let (code, r) = node.cni("ADD", "keep", Some("p"), &node.conf());
    assert_eq!(code, 0, "{r}");
    let (ip, veth) = (pod_ip(&r), host_interface(&r));
    let expected = json!([{"dst": ip, "dev": veth, "protocol": "116"}]);
    node.stop_agent();
    json_subset(&expected, &node.exec_json(&["ip", "-j", "route", "show", &format!("{ip}/32")])).unwrap();
    node.start_agent();
    // The restored route is the programmer's again, and stays through its first reconcile.
    wait_until("the route to be restored", Duration::from_secs(10), || {
        let list = node.workloads();
        (list[0]["route_programmed"] == json!(true)).then_some(())
    })
    .unwrap();
    json_subset(&expected, &node.exec_json(&["ip", "-j", "route", "show", &format!("{ip}/32")])).unwrap();
    assert!(node.t.ping("p", NODE_ADDR));
    node.stop_agent();
}

#[test]
fn without_a_pool_add_names_the_missing_pool() {
    let mut t = Node::with_pool("cninopool", None);
    t.t.add_namespace("p").unwrap();
    let (code, err) = t.cni("ADD", "np", Some("p"), &t.conf());
    assert_eq!(code, 1);
    json_subset(&json!({"code": 11}), &err).unwrap();
    assert!(err["msg"].as_str().unwrap().contains("ipam.default_ipv4_pool_cidr is not set"), "{err}");
    assert!(!t.links().iter().any(|l| l.starts_with("tt")));
}

/// Calico's pod IPAM annotations, given as CNI_ARGS outside Kubernetes: a fixed address is
/// that pod's; one outside every pool, one in use or a malformed one is refused (code 100, the
/// annotation and value named) and leaves nothing behind; a pool named by name or CIDR (here a
/// Manual pool, which only serves pods naming it) is where the address comes from.
#[test]
fn calico_ipam_annotations_choose_the_address_or_the_pool() {
    const FIXED: &str = "10.244.3.7";
    const BLUE: &str = "10.245.0.0/24";
    let mut node = Node::new("cniannot");
    node.ipam_of("cni-node", async |ipam| {
        let mut blue = tortie::datastore::resources::IpPool::new(BLUE.parse().unwrap());
        blue.assignment_mode = tortie::datastore::resources::AssignmentMode::Manual;
        tortie::ipam::create_pool(ipam.store(), "blue", &blue).await.unwrap();
    });
    for pod in ["fixed", "byname", "bycidr", "plain", "taken", "outside", "badjson", "nopool", "noipam", "again"] {
        node.t.add_namespace(pod).unwrap();
    }
    let conf = node.conf();
    let add = |pod: &str, annotation: &str, value: &str| {
        node.cni_args("ADD", pod, pod, Some(pod), &format!(";cni.projectcalico.org/{annotation}={value}"), &conf)
    };
    let (code, fixed) = add("fixed", "ipAddrs", &format!("[\"{FIXED}\"]"));
    assert_eq!((code, pod_ip(&fixed).as_str()), (0, FIXED), "{fixed}");
    assert!(node.t.ping("fixed", NODE_ADDR), "the pod with the fixed address reaches the node");

    let blue: ipnetwork::IpNetwork = BLUE.parse().unwrap();
    for (pod, value) in [("byname", "[\"blue\"]"), ("bycidr", &format!("[\"{BLUE}\"]"))] {
        let (code, r) = add(pod, "ipv4pools", value);
        assert_eq!(code, 0, "{r}");
        assert!(blue.contains(pod_ip(&r).parse().unwrap()), "{pod}: {r}");
    }
    let (code, plain) = add("plain", "unrelated", "x");
    assert_eq!(code, 0, "{plain}");
    assert!(!blue.contains(pod_ip(&plain).parse().unwrap()), "a Manual pool serves only pods naming it: {plain}");

    let workloads = node.workloads().as_array().unwrap().len();
    for (pod, annotation, value, why) in [
        ("taken", "ipAddrs", format!("[\"{FIXED}\"]"), "in use"),
        ("outside", "ipAddrs", "[\"10.99.0.1\"]".to_string(), "in no enabled IP pool"),
        ("badjson", "ipAddrs", "10.244.3.8".to_string(), "not a JSON list"),
        ("nopool", "ipv4pools", "[\"red\"]".to_string(), "does not exist"),
        ("noipam", "ipAddrsNoIpam", "[\"10.99.0.2\"]".to_string(), "not supported"),
    ] {
        let (code, err) = add(pod, annotation, &value);
        assert_eq!(code, 1, "{pod}: {err}");
        let msg = err["msg"].as_str().unwrap_or_default();
        assert!(err["code"] == 100 && msg.contains(annotation) && msg.contains(why), "{pod}: {err}");
    }
    assert_eq!(node.workloads().as_array().unwrap().len(), workloads, "refused pods hold nothing");
    assert!(!node.links().iter().any(|l| l == &host_interface_of("taken")), "{:?}", node.links());

    // Released by DEL, the fixed address is free for the next pod asking for it.
    let (code, _) = node.cni_sandbox("DEL", "fixed", "fixed", Some("fixed"), &conf);
    assert_eq!(code, 0);
    let (code, again) = add("again", "ipAddrs", &format!("[\"{FIXED}\"]"));
    assert_eq!((code, pod_ip(&again).as_str()), (0, FIXED), "{again}");
    node.stop_agent();
}

/// Calico's IPPool `namespaceSelector`: a pod gets its automatic address from the pools that
/// select its namespace's labels; a namespace no pool selects is refused, naming it.
#[test]
fn a_pools_namespace_selector_serves_the_pods_of_the_namespaces_it_selects() {
    use tortie::datastore::resources::{IpPool, Namespace};
    const PROD: &str = "10.246.0.0/24";
    let mut node = Node::new("cnins");
    node.ipam_of("cni-node", async |ipam| {
        let store = ipam.store();
        for pool in store.list::<IpPool>().await.unwrap().items {
            let mut spec = pool.spec.clone();
            spec.namespace_selector = "env == 'dev'".into();
            store.update(&pool.name, &spec, pool.revision).await.unwrap();
        }
        let prod = IpPool { namespace_selector: "env == 'prod'".into(), ..IpPool::new(PROD.parse().unwrap()) };
        tortie::ipam::create_pool(store, "prod", &prod).await.unwrap();
        for (name, env) in [("prod", "prod"), ("dev", "dev")] {
            let labels = [("env".to_string(), env.to_string())].into();
            store.create(name, &Namespace { labels, ..Namespace::default() }).await.unwrap();
        }
    });
    for pod in ["inprod", "indev", "inother"] {
        node.t.add_namespace(pod).unwrap();
    }
    let conf = node.conf();
    let add = |pod: &str, namespace: &str| {
        node.cni_args("ADD", pod, pod, Some(pod), &format!(";K8S_POD_NAMESPACE={namespace}"), &conf)
    };
    let (prod, default): (ipnetwork::IpNetwork, ipnetwork::IpNetwork) = (PROD.parse().unwrap(), POOL.parse().unwrap());
    let (code, r) = add("inprod", "prod");
    assert_eq!(code, 0, "{r}");
    assert!(prod.contains(pod_ip(&r).parse().unwrap()), "a pod in prod gets prod's pool: {r}");
    let (code, r) = add("indev", "dev");
    assert_eq!(code, 0, "{r}");
    assert!(default.contains(pod_ip(&r).parse().unwrap()), "a pod in dev gets the default pool: {r}");
    let (code, err) = add("inother", "other");
    let msg = err["msg"].as_str().unwrap_or_default();
    assert!(code == 1 && msg.contains("namespace \"other\"") && msg.contains("namespaceSelector"), "{err}");
    node.stop_agent();
}

/// Calico's namespace annotation `cni.projectcalico.org/ipv4pools` chooses the pool of the pods
/// of the namespace that name none; a pod's own annotation wins; a namespace naming a pool that
/// does not exist fails its pods' ADD, naming the namespace's annotation.
#[test]
fn a_namespaces_pool_annotation_chooses_the_pool_of_its_pods() {
    use tortie::datastore::resources::namespace::IPV4_POOLS;
    use tortie::datastore::resources::{IpPool, Namespace};
    const GREEN: &str = "10.247.0.0/24";
    let mut node = Node::new("cninsann");
    node.ipam_of("cni-node", async |ipam| {
        let store = ipam.store();
        tortie::ipam::create_pool(store, "green", &IpPool::new(GREEN.parse().unwrap())).await.unwrap();
        for (name, pools) in [("pinned", r#"["green"]"#), ("broken", r#"["red"]"#)] {
            let annotations = [(IPV4_POOLS.to_string(), pools.to_string())].into();
            store.create(name, &Namespace { annotations, ..Namespace::default() }).await.unwrap();
        }
    });
    for pod in ["first", "own", "lost"] {
        node.t.add_namespace(pod).unwrap();
    }
    let conf = node.conf();
    let add = |pod: &str, args: &str| node.cni_args("ADD", pod, pod, Some(pod), args, &conf);
    let (green, default): (ipnetwork::IpNetwork, ipnetwork::IpNetwork) =
        (GREEN.parse().unwrap(), POOL.parse().unwrap());
    let (code, r) = add("first", ";K8S_POD_NAMESPACE=pinned");
    assert_eq!(code, 0, "{r}");
    assert!(green.contains(pod_ip(&r).parse().unwrap()), "the namespace's pool: {r}");
    let (code, r) = add("own", &format!(";K8S_POD_NAMESPACE=pinned;{IPV4_POOLS}=[\"{POOL}\"]"));
    assert_eq!(code, 0, "{r}");
    assert!(default.contains(pod_ip(&r).parse().unwrap()), "the pod's own annotation wins: {r}");
    let (code, err) = add("lost", ";K8S_POD_NAMESPACE=broken");
    let msg = err["msg"].as_str().unwrap_or_default();
    assert!(
        code == 1 && msg.contains("namespace annotation cni.projectcalico.org/ipv4pools") && msg.contains("\"red\""),
        "{err}"
    );
    node.stop_agent();
}

/// Container ids name handles whatever their case, as Calico's handles (whose records it names
/// in lower case): an upper-case id gets its address, and a DEL naming it in another case
/// releases it and removes its veth.
#[test]
fn a_del_naming_the_container_in_another_case_releases_it() {
    let mut node = Node::new("cnicase");
    node.t.add_namespace("p").unwrap();
    let conf = node.conf();
    let (code, r) = node.cni_sandbox("ADD", "CafeBABE01", "web", Some("p"), &conf);
    assert_eq!(code, 0, "{r}");
    let held: Vec<Value> = node.workloads().as_array().unwrap().iter().map(|w| w["handle"].clone()).collect();
    assert_eq!(held, vec![json!("k8s-pod-network.cafebabe01")]);
    let (code, out) = node.cni_sandbox("DEL", "cafebabe01", "web", Some("p"), &conf);
    assert_eq!((code, &out), (0, &Value::Null));
    assert_eq!(node.workloads(), json!([]));
    assert_eq!(node.ipam_handles(), 0);
    assert!(!node.links().contains(&host_interface(&r)), "{:?}", node.links());
    node.stop_agent();
}

/// The host interface name the plugin gives pod `default/<pod>`.
fn host_interface_of(pod: &str) -> String {
    tortie::cni::spec::host_interface_name("tt", &format!("default.{pod}"))
}

/// etcd inside the node's namespace (the agent's loopback), on fixed ports there.
const ETCD: &str = "http://127.0.0.1:23790";

fn start_etcd(node: &mut Node) -> u32 {
    let data = node.t.dir().join("etcd");
    let peer = "http://127.0.0.1:23800";
    let argv = [
        "etcd",
        "--name",
        "cni",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen-client-urls",
        ETCD,
        "--advertise-client-urls",
        ETCD,
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        &format!("cni={peer}"),
    ];
    node.t.spawn("n", &argv).unwrap().pid()
}

/// The datastore failing under a running agent: an agent started before etcd waits for it and
/// becomes ready; with etcd gone, ADD is code 11 and the agent says it is not ready and why;
/// with etcd back, ADD works and the agent is ready again.
#[test]
fn the_agent_waits_for_etcd_and_an_unwritable_datastore_is_try_again_later_and_not_ready() {
    let mut node =
        Node::unstarted("cnietcd", Some(POOL), Some(&format!("{{type: etcd, etcd_endpoints: [\"{ETCD}\"]}}")));
    node.t.add_namespace("p1").unwrap();
    node.t.add_namespace("p2").unwrap();
    node.spawn_agent();
    let log = node.t.dir().join("n-tortie.log");
    wait_until("the agent to retry the datastore twice", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).ok()?;
        (text.matches("datastore unreachable; retrying").count() >= 2).then_some(())
    })
    .unwrap();
    let etcd = start_etcd(&mut node);
    let ready = |node: &Node| node.status().filter(|s| s["ready"] == json!(true));
    wait_until("the agent to become ready once etcd is up", Duration::from_secs(60), || ready(&node)).unwrap();
    let conf = node.conf();
    let (code, r) = node.cni("ADD", "e1", Some("p1"), &conf);
    assert_eq!(code, 0, "{r}");

    assert!(node.t.terminate(etcd, Duration::from_secs(10)).is_some(), "etcd stops");
    let mut short = conf.clone();
    short["timeout_seconds"] = json!(20);
    let (code, err) = node.cni("ADD", "e2", Some("p2"), &short);
    assert_eq!((code, &err["code"]), (1, &json!(11)), "{err}");
    let status = wait_until("the agent to say why it is not ready", Duration::from_secs(30), || {
        node.status().filter(|s| s["ready"] == json!(false))
    })
    .unwrap();
    let reasons = status["not_ready_reasons"].to_string();
    assert!(reasons.contains("datastore unwritable"), "{status}");
    assert!(!node.links().iter().any(|l| l.starts_with("tt") && l != &host_interface(&r)), "{:?}", node.links());

    start_etcd(&mut node);
    wait_until("ADD to succeed with etcd back", Duration::from_secs(60), || {
        let (code, _) = node.cni("ADD", "e2", Some("p2"), &conf);
        (code == 0).then_some(())
    })
    .unwrap();
    wait_until("the agent to be ready again", Duration::from_secs(30), || ready(&node)).unwrap();
    node.stop_agent();
}

/// A stand-in agent on a socket of its own: each connection gets `answer` (given the request
/// read so far) and is closed. Returns the socket path.
fn fake_agent(dir: &std::path::Path, answer: fn(&[u8]) -> Vec<u8>) -> PathBuf {
    use std::io::Read;
    let path = dir.join("fake-agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut request = vec![0u8; 4096];
            let n = stream.read(&mut request).unwrap_or(0);
            let _ = stream.write_all(&answer(&request[..n]));
        }
    });
    path
}

/// ADD, run by hand (no namespace: CNI_NETNS is the test's own), against the agent at `socket`.
fn add_against(socket: &std::path::Path) -> (i32, Value) {
    let env = [
        ("CNI_COMMAND", "ADD".to_string()),
        ("CNI_CONTAINERID", "retry1".to_string()),
        ("CNI_NETNS", "/proc/self/ns/net".to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_PATH", "/usr/lib/cni".to_string()),
    ];
    let conf = json!({"cniVersion": "1.0.0", "name": "net", "type": "tortie", "api_socket": socket});
    run(&[env!("CARGO_BIN_EXE_tortie"), "cni"], &env, &conf)
}

/// Failures that may pass are code 11 (try again later), so the runtime retries the ADD: an
/// agent that is not there, one that dies mid-answer, one whose datastore fails (500).
#[test]
fn an_agent_failing_mid_request_or_internally_is_try_again_later() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = add_against(&dir.path().join("nobody.sock"));
    assert_eq!((code, &err["code"]), (1, &json!(11)), "{err}");

    let cut = fake_agent(dir.path(), |_| b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n{\"handle\"".to_vec());
    let (code, err) = add_against(&cut);
    assert_eq!((code, &err["code"]), (1, &json!(11)), "cut off mid-answer: {err}");
    assert!(err["msg"].as_str().unwrap().contains("cannot reach the tortie agent"), "{err}");
    std::fs::remove_file(&cut).unwrap();

    let failing = fake_agent(dir.path(), |_| {
        let body = r#"{"error":"IPAM block 10.244.0.0/26: datastore unavailable: connection refused"}"#;
        format!("HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
    });
    let (code, err) = add_against(&failing);
    assert_eq!((code, &err["code"]), (1, &json!(11)), "an internal failure: {err}");
    assert!(err["msg"].as_str().unwrap().contains("datastore unavailable"), "{err}");
}

/// What is wrong, the environment, stdin, the error code expected and a part of its message.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, u64, &'a str);

/// The plugin alone, no agent: each malformed input gets a CNI error with the spec's code.
#[test]
fn malformed_inputs_get_cni_errors_with_the_right_code() {
    let plugin = |env: &[(&str, &str)], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tortie"))
            .arg("cni")
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap(), json)
    };
    let conf = r#"{"cniVersion":"0.4.0","name":"net","type":"tortie","api_socket":"/nonexistent/tortie.sock"}"#;
    let full = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "x1"),
        ("CNI_NETNS", "/proc/self/ns/net"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    let cases: Vec<Case> = vec![
        ("bad JSON", full.to_vec(), "{not json", 6, "cannot decode the network configuration"),
        (
            "missing env var",
            full[..1].iter().chain(&full[2..]).copied().collect(),
            conf,
            4,
            "CNI_CONTAINERID is not set",
        ),
        ("wrong cniVersion", full.to_vec(), r#"{"cniVersion":"0.2.0","name":"n"}"#, 1, "cniVersion \"0.2.0\""),
        ("no name", full.to_vec(), r#"{"cniVersion":"1.0.0"}"#, 7, "name"),
        (
            "wrong type",
            full.to_vec(),
            r#"{"cniVersion":"1.0.0","name":"n","timeout_seconds":"soon"}"#,
            7,
            "timeout_seconds",
        ),
        ("unknown command", vec![("CNI_COMMAND", "FROB")], conf, 4, "CNI_COMMAND=\"FROB\""),
        ("no command", vec![], conf, 4, "CNI_COMMAND is not set"),
        ("unreachable agent", full.to_vec(), conf, 11, "cannot reach the tortie agent at /nonexistent/tortie.sock"),
        ("bad CNI_ARGS", [&full[..], &[("CNI_ARGS", "K8S_POD_NAME")]].concat(), conf, 4, "CNI_ARGS: \"K8S_POD_NAME\""),
        ("GC before 1.1", [("CNI_COMMAND", "GC")].to_vec(), conf, 1, "GC needs cniVersion 1.1.0"),
    ];
    for (what, env, stdin, code, msg) in cases {
        let (exit, out) = plugin(&env, stdin);
        assert_eq!(exit, 1, "{what}: {out}");
        assert_eq!(out["code"], json!(code), "{what}: {out}");
        assert!(out["msg"].as_str().unwrap_or_default().contains(msg), "{what}: {out}");
    }
    // The error is in the version the configuration asked for.
    let (_, out) = plugin(&full, conf);
    assert_eq!(out["cniVersion"], "0.4.0");
    let (exit, out) = plugin(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"0.3.1"}"#);
    assert_eq!(exit, 0);
    json_subset(
        &json!({"cniVersion": "0.3.1", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}),
        &out,
    )
    .unwrap();
}

#[test]
fn a_lost_datastore_never_hands_out_a_live_address_again() {
    let mut node = Node::new("cnilost");
    let mut live = Vec::new();
    for pod in ["p1", "p2", "p3"] {
        node.t.add_namespace(pod).unwrap();
        let (code, r) = node.cni("ADD", pod, Some(pod), &node.conf());
        assert_eq!(code, 0, "{r}");
        live.push(pod_ip(&r));
    }
    node.stop_agent();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", node.db.display()));
    }
    node.start_agent();
    node.t.add_namespace("new").unwrap();
    let (code, r) = node.cni("ADD", "new", Some("new"), &node.conf());
    assert_eq!(code, 0, "{r}");
    assert!(!live.contains(&pod_ip(&r)), "{} is already pod p1, p2 or p3's: {live:?}", pod_ip(&r));
    let log = std::fs::read_to_string(node.t.dir().join("n-tortie.log")).unwrap();
    let reclaimed =
        log.lines().find(|l| l.contains("re-claimed")).unwrap_or_else(|| panic!("no re-claim logged:\n{log}"));
    for ip in &live {
        assert!(reclaimed.contains(ip.as_str()), "{ip} not named in: {reclaimed}");
    }
    node.stop_agent();
}
