//! Running a containerlab topology of the repo through `tortie lab` with a
//! unique lab name, and looking into its nodes and pods.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tortie::testing::wait_until;

/// A lab brought up from a copy of `containerlab/<topology>` (and its
/// directory of binds); taken down on drop, also when the test fails.
pub struct Lab {
    pub file: PathBuf,
    pub name: String,
    _dir: tempfile::TempDir,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

impl Lab {
    /// Copies the topology; `edit` may change the copied bind files before `up`.
    pub fn prepare(topology: &str, short: &str, edit: impl FnOnce(&Path)) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("containerlab");
        let file = format!("{topology}.clab.yml");
        std::fs::copy(src.join(&file), dir.path().join(&file)).unwrap();
        if src.join(topology).is_dir() {
            copy_dir(&src.join(topology), &dir.path().join(topology));
        }
        edit(dir.path());
        Lab { file: dir.path().join(file), name: format!("{short}{}", std::process::id()), _dir: dir }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tortie"));
        cmd.args(["lab", args[0]]).arg(&self.file).args(["--name", &self.name]).args(&args[1..]);
        cmd.output().unwrap()
    }

    pub fn up(&self) {
        let out = self.run(&["up"]);
        assert!(out.status.success(), "lab up: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The network namespace of a node.
    pub fn ns(&self, node: &str) -> String {
        format!("clab-{}-{node}", self.name)
    }

    /// The network namespace of a pod on a node.
    pub fn pod_ns(&self, node: &str, pod: &str) -> String {
        format!("{}-{pod}", self.ns(node))
    }

    pub fn dir(&self) -> PathBuf {
        self.file.parent().unwrap().join(format!("clab-{}", self.name))
    }

    /// The pid of a node's first process (the agent on a tortie node).
    pub fn agent_pid(&self, node: &str) -> u32 {
        std::fs::read_to_string(self.dir().join(node).join("process-0.pid")).unwrap().trim().parse().unwrap()
    }

    /// Sends SIGTERM to a node's agent and waits until it is gone; fails with
    /// the end of the agent's log (which names the tasks that did not stop) if
    /// it is not gone within `limit` or had to abort tasks.
    pub fn stop_agent(&self, node: &str, limit: Duration) {
        let pid = self.agent_pid(node);
        let sent = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let gone = wait_until(&format!("{node}'s agent ({pid}) to stop after SIGTERM"), limit, || {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"));
            cmdline.map(|c| c.is_empty()).unwrap_or(true).then_some(())
        });
        let log = self.agent_log(node);
        let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
        if let Err(e) = gone {
            panic!("{e}; the end of its log:\n{}", tail.join("\n"));
        }
        // A task that ignores the stop holds the agent for its whole shutdown grace.
        assert!(!log.contains("still running at shutdown"), "{node}'s agent stopped late:\n{}", tail.join("\n"));
    }

    /// Fails if an agent's log has a warning, an error or a terminal escape
    /// code: a lab as shipped has nothing to warn about.
    pub fn assert_agents_quiet(&self, nodes: &[&str]) {
        for node in nodes {
            let log = self.agent_log(node);
            assert!(!log.contains('\x1b'), "{node}'s log has terminal escape codes:\n{log}");
            let loud: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).collect();
            assert!(loud.is_empty(), "{node}'s agent warned:\n{}", loud.join("\n"));
        }
    }

    /// The value of `series` (name and labels as printed) in a node's agent's /metrics.
    pub fn metric(&self, node: &str, series: &str) -> Option<f64> {
        let script = "import urllib.request\nprint(urllib.request.urlopen('http://127.0.0.1:9478/metrics', timeout=2).read().decode())";
        let out = self.exec(node, &["python3", "-c", script]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// The log of a node's first process (the agent on a tortie node).
    pub fn agent_log(&self, node: &str) -> String {
        std::fs::read_to_string(self.dir().join(node).join("process-0.log")).unwrap_or_default()
    }

    /// Runs a command inside a node (with its environment).
    pub fn exec(&self, node: &str, argv: &[&str]) -> Output {
        let mut args = vec!["exec", node, "--"];
        args.extend_from_slice(argv);
        self.run(&args)
    }

    pub fn exec_json(&self, node: &str, argv: &[&str]) -> serde_json::Value {
        let out = self.exec(node, argv);
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// `tortie status -o json` of a node once the agent answers.
    pub fn status(&self, node: &str) -> serde_json::Value {
        self.exec_json(node, &[env!("CARGO_BIN_EXE_tortie"), "status", "-o", "json"])
    }

    /// The address of a pod's eth0.
    pub fn pod_ip(&self, node: &str, pod: &str) -> Ipv4Addr {
        self.pod_address(node, pod, "-4")
    }

    /// The global IPv6 address of a pod's eth0.
    pub fn pod_ip6(&self, node: &str, pod: &str) -> Ipv6Addr {
        self.pod_address(node, pod, "-6")
    }

    fn pod_address<A: std::str::FromStr>(&self, node: &str, pod: &str, family: &str) -> A {
        let ns = self.pod_ns(node, pod);
        let v = wait_until(&format!("{node}/{pod} to have an {family} address"), Duration::from_secs(30), || {
            let argv = ["-n", &ns, "-j", family, "addr", "show", "dev", "eth0", "scope", "global"];
            let out = Command::new("ip").args(argv).output().ok()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            v[0]["addr_info"][0]["local"].as_str()?.parse().ok()
        });
        v.unwrap()
    }

    /// Pings `dst` once from a pod; true when it answered.
    pub fn pod_ping(&self, node: &str, pod: &str, dst: impl Into<IpAddr>) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.pod_ns(node, pod), "ping", "-c1", "-W1", &dst.into().to_string()])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Every node's `pod1` pings and opens TCP to every other's IPv4 address (polled, a minute each).
    pub fn all_pods_reach_each_other(&self, nodes: &[&str]) {
        self.all_pods_reach_each_other_at(nodes, |n| self.pod_ip(n, "pod1").into())
    }

    /// As [`Lab::all_pods_reach_each_other`], over the pods' IPv6 addresses.
    pub fn all_pods_reach_each_other_v6(&self, nodes: &[&str]) {
        self.all_pods_reach_each_other_at(nodes, |n| self.pod_ip6(n, "pod1").into())
    }

    fn all_pods_reach_each_other_at(&self, nodes: &[&str], ip_of: impl Fn(&str) -> IpAddr) {
        let ips: Vec<_> = nodes.iter().map(|n| (*n, ip_of(n))).collect();
        for (a, _) in &ips {
            for (b, ip) in ips.iter().filter(|(b, _)| b != a) {
                tortie::testing::wait_until(
                    &format!("{a}/pod1 to ping {b}/pod1 ({ip})"),
                    Duration::from_secs(60),
                    || self.pod_ping(a, "pod1", *ip).then_some(()),
                )
                .unwrap();
                tcp_echo(&self.pod_ns(b, "pod1"), *ip, &self.pod_ns(a, "pod1"))
                    .unwrap_or_else(|e| panic!("TCP from {a}/pod1 to {b}/pod1 ({ip}): {e}"));
            }
        }
    }

    /// The block route (not a host route) on `on` whose destination holds `pod_ip`.
    pub fn route_to_pod(&self, on: &str, pod_ip: impl Into<IpAddr>) -> Option<serde_json::Value> {
        let pod_ip = pod_ip.into();
        let routes = if pod_ip.is_ipv4() { self.routes(on) } else { self.routes_v6(on) };
        routes.into_iter().find(|r| {
            r["dst"]
                .as_str()
                .and_then(|d| d.parse::<ipnetwork::IpNetwork>().ok())
                .is_some_and(|n| n.contains(pod_ip) && n.prefix() < if pod_ip.is_ipv4() { 32 } else { 128 })
        })
    }

    /// Kernel routes of tortie's protocol in a node, as `ip -j route` prints them.
    pub fn routes(&self, node: &str) -> Vec<serde_json::Value> {
        self.routes_of(node, "-4")
    }

    /// Kernel IPv6 routes of tortie's protocol in a node, as `ip -j -6 route` prints them.
    pub fn routes_v6(&self, node: &str) -> Vec<serde_json::Value> {
        self.routes_of(node, "-6")
    }

    fn routes_of(&self, node: &str, family: &str) -> Vec<serde_json::Value> {
        let argv = ["-n", &self.ns(node), "-j", family, "route", "show", "proto", "116"];
        let out = Command::new("ip").args(argv).output().unwrap();
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--cleanup"]);
    }
}

/// A TCP echo across pods: listens in `server_ns`, connects from `client_ns`.
pub fn tcp_echo(server_ns: &str, server_ip: IpAddr, client_ns: &str) -> Result<(), String> {
    let listener = tortie::netns::run_in_namespace(server_ns, || TcpListener::bind((server_ip, 0)))
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        // Accept with a deadline, so a client that never connects cannot hang the test.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let (mut s, _) = loop {
            match listener.accept() {
                Ok(c) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => return Err(e),
            }
        };
        s.set_nonblocking(false)?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf)?;
        s.write_all(&buf)
    });
    let reply = tortie::netns::run_in_namespace(client_ns, move || -> std::io::Result<[u8; 5]> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(b"hello")?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf)?;
        Ok(buf)
    })
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    server.join().map_err(|_| "server panicked".to_string())?.map_err(|e| e.to_string())?;
    (&reply == b"hello").then_some(()).ok_or_else(|| "wrong echo".to_string())
}
