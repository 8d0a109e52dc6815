//! [`Topology`]: a set of namespaces and links owned by one test or lab.

use super::NETNS_PREFIX;
use super::process::Process;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);
static REAP: Once = Once::new();

/// A command that failed, with what it printed.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed ({status}): {stderr}")]
pub struct CommandError {
    pub command: String,
    pub status: String,
    pub stderr: String,
}

/// Network namespaces, links and processes, removed on drop.
pub struct Topology {
    /// `tt-<pid>-<seq>`: the prefix of every namespace of this topology.
    id: String,
    namespaces: Vec<String>,
    processes: Vec<Process>,
    /// Per-topology directory for process logs and scratch files.
    dir: PathBuf,
}

impl Topology {
    /// Starts an empty topology; `label` (a few letters) only helps a human
    /// reading `ip netns list`.
    pub fn new(label: &str) -> std::io::Result<Self> {
        REAP.call_once(reap_stale_namespaces);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let label: String = label.chars().filter(|c| c.is_ascii_alphanumeric()).take(8).collect();
        let id = format!("{NETNS_PREFIX}{}-{seq}-{label}", std::process::id());
        let dir = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&dir)?;
        Ok(Topology { id, namespaces: Vec::new(), processes: Vec::new(), dir })
    }

    /// The directory for logs and scratch files of this topology.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The full namespace name of node `short` in this topology.
    pub fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.id)
    }

    /// Creates namespace `short` with `lo` up; returns its full name.
    pub fn add_namespace(&mut self, short: &str) -> Result<String, CommandError> {
        let name = self.ns(short);
        run(&["ip", "netns", "add", &name])?;
        self.namespaces.push(name.clone());
        run(&["ip", "-n", &name, "link", "set", "lo", "up"])?;
        Ok(name)
    }

    /// Creates a veth pair `a_if` in namespace `a` and `b_if` in `b` (short
    /// names), both up, with optional addresses in CIDR form.
    pub fn add_veth(
        &mut self,
        (a, a_if, a_addr): (&str, &str, Option<&str>),
        (b, b_if, b_addr): (&str, &str, Option<&str>),
    ) -> Result<(), CommandError> {
        let (na, nb) = (self.ns(a), self.ns(b));
        run(&["ip", "-n", &na, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", &nb])?;
        for (ns, ifname, addr) in [(&na, a_if, a_addr), (&nb, b_if, b_addr)] {
            if let Some(addr) = addr {
                run(&["ip", "-n", ns, "addr", "add", addr, "dev", ifname])?;
            }
            run(&["ip", "-n", ns, "link", "set", ifname, "up"])?;
        }
        Ok(())
    }

    /// Creates a Linux bridge `name` inside namespace `short`, up.
    pub fn add_bridge(&mut self, short: &str, name: &str) -> Result<(), CommandError> {
        let ns = self.ns(short);
        run(&["ip", "-n", &ns, "link", "add", name, "type", "bridge"])?;
        run(&["ip", "-n", &ns, "link", "set", name, "up"])
    }

    /// Runs a command inside namespace `short` and waits for it.
    pub fn exec(&self, short: &str, argv: &[&str]) -> Result<Output, CommandError> {
        let ns = self.ns(short);
        let mut full = vec!["ip", "netns", "exec", ns.as_str()];
        full.extend_from_slice(argv);
        run_output(&full)
    }

    /// Runs a command in namespace `short` and parses its standard output as
    /// JSON (e.g. `ip -j route`).
    pub fn exec_json(&self, short: &str, argv: &[&str]) -> Result<serde_json::Value, CommandError> {
        let out = self.exec(short, argv)?;
        serde_json::from_slice(&out.stdout).map_err(|e| CommandError {
            command: argv.join(" "),
            status: "exit 0".into(),
            stderr: format!("output is not JSON: {e}"),
        })
    }

    /// True when one ping from namespace `short` to `addr` is answered within a second.
    pub fn ping(&self, short: &str, addr: &str) -> bool {
        self.exec(short, &["ping", "-c", "1", "-W", "1", "-q", addr]).is_ok()
    }

    /// Starts a long-running process in namespace `short`; its output goes to
    /// `<dir>/<short>-<program>.log`. It is killed when the topology is dropped.
    pub fn spawn(&mut self, short: &str, argv: &[&str]) -> std::io::Result<&mut Process> {
        let ns = self.ns(short);
        let program = argv.first().map(|p| Path::new(p).file_name().map(|f| f.to_string_lossy().into_owned()));
        let log = self.dir.join(format!("{short}-{}.log", program.flatten().unwrap_or_default()));
        let process = Process::spawn(&ns, argv, &log)?;
        self.processes.push(process);
        Ok(self.processes.last_mut().expect("just pushed"))
    }

    /// Sends SIGTERM to the process `pid` started by [`Topology::spawn`] and
    /// waits up to `grace` for its exit status (then kills it: `None`).
    pub fn terminate(&mut self, pid: u32, grace: std::time::Duration) -> Option<std::process::ExitStatus> {
        self.processes.iter_mut().find(|p| p.pid() == pid)?.terminate(grace)
    }

    /// The process `pid` started by [`Topology::spawn`].
    pub fn process(&mut self, pid: u32) -> Option<&mut Process> {
        self.processes.iter_mut().find(|p| p.pid() == pid)
    }

    /// Full names of the namespaces created so far.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for p in &mut self.processes {
            p.stop();
            if panicking {
                p.print_log_tail(20);
            }
        }
        for ns in self.namespaces.iter().rev() {
            remove_namespace(ns);
        }
        if !panicking {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Kills whatever still runs in `ns` (only processes inside a namespace we
/// created, found by PID) and deletes it; its interfaces go with it.
pub fn remove_namespace(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", pid]).stderr(Stdio::null()).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
}

/// Deletes namespaces of ours whose creating process no longer exists.
fn reap_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            remove_namespace(name);
        }
    }
}

fn run(argv: &[&str]) -> Result<(), CommandError> {
    run_output(argv).map(|_| ())
}

/// Runs a command to completion; an error carries what it printed.
pub fn run_output(argv: &[&str]) -> Result<Output, CommandError> {
    let (program, args) = argv.split_first().expect("a command");
    let out = Command::new(program).args(args).stdin(Stdio::null()).output().map_err(|e| CommandError {
        command: argv.join(" "),
        status: "not started".into(),
        stderr: e.to_string(),
    })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(CommandError {
            command: argv.join(" "),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}
