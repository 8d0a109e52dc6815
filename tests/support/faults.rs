//! Instruments for fault-injection tests (`tests/faults_*.rs`): what a
//! fault must not disturb, watched while it happens.
//!
//! - [`RouteMonitor`]: `ip monitor route` in a namespace, synchronised with
//!   a canary route so nothing before the fault is missed; reports the
//!   routes of tortie's protocol that were deleted.
//! - [`Pinger`]: a continuous ping from a namespace, stopped with SIGINT so
//!   ping prints its own summary.
//! - [`kill9`], [`signal_and_wait`]: a signal to one pid (never by name), waiting until it is gone.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tortie::testing::wait_until;

/// tortie's route protocol in the lab and the default config.
pub const TORTIE_PROTOCOL: &str = "116";

/// `ip monitor route` (and other objects) in one namespace, collecting every line it prints.
pub struct RouteMonitor {
    ns: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl RouteMonitor {
    /// Starts the monitor and returns once it is seen to report (a canary
    /// route of another protocol is added, seen and removed).
    pub fn start(ns: &str) -> RouteMonitor {
        Self::start_objects(ns, &["route"])
    }

    /// [`RouteMonitor::start`] for more objects of `ip monitor` (`route`
    /// must be one: the canary is a route), e.g. `neigh` (also FDB entries).
    pub fn start_objects(ns: &str, objects: &[&str]) -> RouteMonitor {
        // ip's stdout is block-buffered into a pipe: line-buffer it, or events wait for 4 KB.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "ip", "-ts", "-n", ns, "monitor"])
            .args(objects)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ip monitor");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let monitor = RouteMonitor { ns: ns.to_string(), child, lines };
        // TEST-NET-1, protocol 254 is nobody's: the canary cannot clash with the lab's routes.
        let canary = "192.0.2.254";
        wait_until(&format!("ip monitor in {ns} to report"), Duration::from_secs(10), || {
            // Removed and added on every try: a route already there makes no event,
            // and the first add may come before the monitor listens.
            let _ = Command::new("ip").args(["-n", ns, "route", "del", "blackhole", canary, "proto", "254"]).status();
            let _ = Command::new("ip").args(["-n", ns, "route", "add", "blackhole", canary, "proto", "254"]).status();
            monitor.lines.lock().unwrap().iter().any(|l| l.contains(canary)).then_some(())
        })
        .unwrap();
        let _ = Command::new("ip").args(["-n", ns, "route", "del", "blackhole", canary, "proto", "254"]).status();
        monitor
    }

    /// The deletions of routes carrying tortie's protocol seen so far.
    pub fn deleted_ours(&self) -> Vec<String> {
        let proto = format!("proto {TORTIE_PROTOCOL}");
        self.lines.lock().unwrap().iter().filter(|l| l.contains("Deleted ") && l.contains(&proto)).cloned().collect()
    }

    /// Everything the monitor printed (timestamped), for failure messages.
    pub fn all(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn namespace(&self) -> &str {
        &self.ns
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What ping said of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingSummary {
    pub transmitted: u64,
    pub received: u64,
}

/// A continuous ping (`interval` apart) from a namespace.
pub struct Pinger {
    child: Option<Child>,
    label: String,
}

impl Pinger {
    pub fn start(ns: &str, dst: std::net::IpAddr, interval: Duration, label: &str) -> Pinger {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-n", "-W", "1", "-i"])
            .arg(format!("{:.3}", interval.as_secs_f64()))
            .arg(dst.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ping");
        Pinger { child: Some(child), label: label.to_string() }
    }

    /// Stops the ping (SIGINT: it prints its summary) and returns the counts.
    pub fn stop(mut self) -> PingSummary {
        let child = self.child.take().unwrap();
        // `ip netns exec` execs ping, so the pid is ping's own.
        let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let summary = text.lines().find(|l| l.contains("packets transmitted")).unwrap_or_default();
        let nums: Vec<u64> = summary.split(|c: char| !c.is_ascii_digit()).filter_map(|s| s.parse().ok()).collect();
        assert!(nums.len() >= 2, "{}: no ping summary in {text}", self.label);
        eprintln!("{}: {summary}", self.label);
        PingSummary { transmitted: nums[0], received: nums[1] }
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// SIGKILL to `pid`, then waits until the process is gone (or a zombie).
pub fn kill9(pid: u32) {
    signal_and_wait(pid, "KILL", Duration::from_secs(10));
}

/// Sends `signal` (`KILL`, `TERM`, …) to `pid`, then waits up to `limit` until the process is
/// gone (or a zombie).
pub fn signal_and_wait(pid: u32, signal: &str, limit: Duration) {
    let sent = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
    wait_until(&format!("process {pid} to be gone after SIG{signal}"), limit, || {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"));
        cmdline.map(|c| c.is_empty()).unwrap_or(true).then_some(())
    })
    .unwrap();
}
