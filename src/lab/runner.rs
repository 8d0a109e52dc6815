//! `tortie lab up | down | exec`: builds a resolved topology out of
//! network namespaces, veth pairs and bridges, starts the nodes'
//! processes detached (pid files in the lab directory), and removes all
//! of it again. `up` is idempotent: what exists is kept, what is missing
//! is made, `exec` commands run once per node.

use super::plan::{LabPlan, LinkPlan, NodeKind, NodePlan};
use crate::netns::{CommandError, remove_namespace, run_output};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("node {node}: exec {command:?} failed: {detail}")]
    Exec { node: String, command: String, detail: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("no node {0:?} in the lab")]
    NoNode(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io { path: path.display().to_string(), source }
}

/// The names of the machine's network namespaces.
pub(super) fn namespaces() -> Vec<String> {
    run_output(&["ip", "netns", "list"])
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn link_exists(ns: &str, ifname: &str) -> bool {
    run_output(&["ip", "-n", ns, "link", "show", "dev", ifname]).is_ok()
}

/// How many steps of one phase run at once (namespaces, links, node start-up: each a few
/// short `ip` commands, so more than the cores, to overlap their process start-ups).
const STEPS_AT_ONCE: usize = 8;

/// How many pods are made at once: each mostly waits for its node's agent to answer.
const PODS_AT_ONCE: usize = 32;

/// Builds the lab; `progress` hears one line per step. Each phase (namespaces, links, node
/// start-up, pods) runs its steps concurrently, a bounded number at once; the phases run in
/// order.
pub fn up(plan: &LabPlan, progress: &mut dyn FnMut(String)) -> Result<(), LabError> {
    fs::create_dir_all(&plan.dir).map_err(io_err(&plan.dir))?;
    let existing = namespaces();
    let make_namespace = |ns: &&str, progress: &mut dyn FnMut(String)| -> Result<(), LabError> {
        if existing.iter().any(|e| e == ns) {
            progress(format!("namespace {ns}: exists"));
        } else {
            run_output(&["ip", "netns", "add", ns])?;
            run_output(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            progress(format!("namespace {ns}: created"));
        }
        Ok(())
    };
    // The host namespace alone first: the first `ip netns add` on a machine also makes
    // /run/netns a shared mount, which concurrent first calls would race on.
    make_namespace(&plan.host_ns.as_str(), progress)?;
    let nodes: Vec<&str> = plan.nodes.iter().filter(|n| n.kind == NodeKind::Linux).map(|n| n.ns.as_str()).collect();
    each(&nodes, STEPS_AT_ONCE, progress, make_namespace)?;
    for n in plan.nodes.iter().filter(|n| n.kind == NodeKind::Bridge) {
        if !link_exists(&plan.host_ns, &n.name) {
            run_output(&["ip", "-n", &plan.host_ns, "link", "add", &n.name, "type", "bridge"])?;
            progress(format!("bridge {}: created", n.name));
        }
        run_output(&["ip", "-n", &plan.host_ns, "link", "set", &n.name, "up"])?;
    }
    each(&plan.links, STEPS_AT_ONCE, progress, make_link)?;
    let linux: Vec<&NodePlan> = plan.nodes.iter().filter(|n| n.kind == NodeKind::Linux).collect();
    each(&linux, STEPS_AT_ONCE, progress, |n, progress| {
        configure(n, progress)?;
        start_processes(n, progress)
    })?;
    each(&linux, PODS_AT_ONCE, progress, |n, progress| add_pods(n, progress))?;
    progress(format!("lab {}: up ({} nodes, {} links)", plan.name, plan.nodes.len(), plan.links.len()));
    Ok(())
}

/// Runs `step` for every item, up to `limit` at once, and hands the lines they report to
/// `progress` as they come. After a failure no further item starts; the error returned is
/// that of the first failed item in `items`' order.
fn each<T: Sync>(
    items: &[T],
    limit: usize,
    progress: &mut dyn FnMut(String),
    step: impl Fn(&T, &mut dyn FnMut(String)) -> Result<(), LabError> + Sync,
) -> Result<(), LabError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let errors = Mutex::new(Vec::new());
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::scope(|scope| {
        for _ in 0..limit.clamp(1, items.len().max(1)) {
            let (tx, next, failed, errors, step) = (tx.clone(), &next, &failed, &errors, &step);
            scope.spawn(move || {
                let mut say = |line: String| {
                    let _ = tx.send(line);
                };
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if let Err(e) = step(item, &mut say) {
                        failed.store(true, Ordering::Relaxed);
                        errors.lock().unwrap_or_else(|p| p.into_inner()).push((i, e));
                    }
                }
            });
        }
        drop(tx);
        for line in rx {
            progress(line);
        }
    });
    let errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    errors.into_iter().min_by_key(|(i, _)| *i).map_or(Ok(()), |(_, e)| Err(e))
}

fn make_link(l: &LinkPlan, progress: &mut dyn FnMut(String)) -> Result<(), LabError> {
    let name = format!("{}:{} <-> {}:{}", l.a.node, l.a.ifname, l.b.node, l.b.ifname);
    if link_exists(&l.a.ns, &l.a.ifname) && link_exists(&l.b.ns, &l.b.ifname) {
        progress(format!("link {name}: exists"));
        return Ok(());
    }
    let mtu = l.mtu.to_string();
    run_output(&[
        "ip",
        "-n",
        &l.a.ns,
        "link",
        "add",
        &l.a.ifname,
        "mtu",
        &mtu,
        "type",
        "veth",
        "peer",
        "name",
        &l.b.ifname,
        "mtu",
        &mtu,
        "netns",
        &l.b.ns,
    ])?;
    for (i, end) in [&l.a, &l.b].into_iter().enumerate() {
        if let Some(bridge) = &end.bridge {
            run_output(&["ip", "-n", &end.ns, "link", "set", &end.ifname, "master", bridge])?;
        }
        for (_, addr) in l.addresses.iter().filter(|(which, _)| *which == i) {
            run_output(&["ip", "-n", &end.ns, "addr", "add", addr, "dev", &end.ifname])?;
        }
        run_output(&["ip", "-n", &end.ns, "link", "set", &end.ifname, "up"])?;
    }
    progress(format!("link {name}: created"));
    Ok(())
}

/// Sysctls every time (cheap, idempotent); `exec` commands once.
fn configure(n: &NodePlan, progress: &mut dyn FnMut(String)) -> Result<(), LabError> {
    fs::create_dir_all(&n.dir).map_err(io_err(&n.dir))?;
    // A bound datastore directory may not exist yet (containerlab creates bind sources too).
    if let Some(dir) = n.env.get("TORTIE_DATASTORE_SQLITE_PATH").and_then(|p| Path::new(p).parent()) {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    for (k, v) in &n.sysctls {
        run_output(&["ip", "netns", "exec", &n.ns, "sysctl", "-qw", &format!("{k}={v}")])?;
    }
    let marker = n.dir.join("configured");
    if marker.exists() {
        return Ok(());
    }
    for cmd in &n.exec {
        let out = Command::new("ip")
            .args(["netns", "exec", &n.ns, "sh", "-c", cmd])
            .envs(&n.env)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| LabError::Exec { node: n.name.clone(), command: cmd.clone(), detail: e.to_string() })?;
        if !out.status.success() {
            return Err(LabError::Exec {
                node: n.name.clone(),
                command: cmd.clone(),
                detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
            });
        }
        progress(format!("node {}: exec {cmd}", n.name));
    }
    fs::write(&marker, "").map_err(io_err(&marker))
}

pub(super) fn pid_alive(pid: u32) -> bool {
    // A zombie is not alive; /proc/<pid>/stat's third field is the state.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().and_then(|r| r.split_whitespace().next()).is_some_and(|st| st != "Z"))
        .unwrap_or(false)
}

pub(super) fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn start_processes(n: &NodePlan, progress: &mut dyn FnMut(String)) -> Result<(), LabError> {
    for (i, argv) in n.processes.iter().enumerate() {
        let pid_file = n.dir.join(format!("process-{i}.pid"));
        if read_pid(&pid_file).is_some_and(pid_alive) {
            progress(format!("node {}: {} running", n.name, argv[0]));
            continue;
        }
        let log_path = n.dir.join(format!("process-{i}.log"));
        let log = fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io_err(&log_path))?;
        let err = log.try_clone().map_err(io_err(&log_path))?;
        // Its own process group: the lab outlives the `tortie lab up` that started it.
        let child = Command::new("ip")
            .args(["netns", "exec", &n.ns])
            .args(argv)
            .envs(&n.env)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(io_err(&log_path))?;
        fs::write(&pid_file, child.id().to_string()).map_err(io_err(&pid_file))?;
        progress(format!(
            "node {}: started {} (pid {}, log {})",
            n.name,
            argv.join(" "),
            child.id(),
            log_path.display()
        ));
    }
    Ok(())
}

/// The pods a node's `TORTIE_LAB_PODS` (space-separated entries: a name, then optional
/// `,namespace=`, `,label=k=v`, `,port=name:proto:number` items) asks for,
/// made by `tortie lab pod add` inside the node once its agent answers;
/// the tortie image's entrypoint does the same under containerlab.
fn add_pods(n: &NodePlan, progress: &mut dyn FnMut(String)) -> Result<(), LabError> {
    let Some(pods) = n.env.get("TORTIE_LAB_PODS") else { return Ok(()) };
    let tortie = std::env::current_exe().map_err(|e| LabError::Io { path: "tortie".into(), source: e })?;
    for entry in pods.split_whitespace() {
        let pod = entry.split(',').next().unwrap_or_default();
        // `up` keeps what exists: a pod made by an earlier `up` is left alone (a second
        // CNI ADD would rewire a pod whose traffic is flowing).
        if Path::new("/run/netns").join(format!("{}-{pod}", n.ns)).exists() {
            progress(format!("node {}: pod {pod} exists", n.name));
            continue;
        }
        let out = node_command(&n.ns)
            .arg(&tortie)
            .args(["lab", "pod", "add", entry])
            .envs(&n.env)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| LabError::Exec {
                node: n.name.clone(),
                command: format!("pod add {pod}"),
                detail: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(LabError::Exec {
                node: n.name.clone(),
                command: format!("tortie lab pod add {pod}"),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let ip = result["ips"][0]["address"].as_str().unwrap_or("?").to_string();
        progress(format!("node {}: pod {pod} up ({ip})", n.name));
    }
    Ok(())
}

/// Stops every process and removes every namespace, link and bridge of the lab. The lab's
/// directory goes too with `cleanup`; else only its processes' logs stay (containerlab's
/// `destroy` without `--cleanup` keeps the lab directory likewise), so a failed run can be read
/// after it is taken down. A later `up` appends to them.
pub fn down(plan: &LabPlan, cleanup: bool, progress: &mut dyn FnMut(String)) -> Result<(), LabError> {
    for n in &plan.nodes {
        for i in 0..n.processes.len() {
            let pid_file = n.dir.join(format!("process-{i}.pid"));
            if let Some(pid) = read_pid(&pid_file).filter(|p| pid_alive(*p)) {
                let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
                let deadline = Instant::now() + Duration::from_secs(5);
                while pid_alive(pid) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                progress(format!("node {}: stopped pid {pid}", n.name));
            }
        }
    }
    let existing = namespaces();
    let mut ours: Vec<&str> = plan.nodes.iter().filter(|n| n.kind == NodeKind::Linux).map(|n| n.ns.as_str()).collect();
    ours.push(&plan.host_ns);
    // Pods first: `<node namespace>-<pod>` (see lab::pod).
    let pods: Vec<&str> = existing
        .iter()
        .filter(|e| plan.nodes.iter().any(|n| n.kind == NodeKind::Linux && e.starts_with(&format!("{}-", n.ns))))
        .map(String::as_str)
        .collect();
    for ns in pods.into_iter().chain(ours) {
        if existing.iter().any(|e| e == ns) {
            // Also kills what is still running inside (only our own namespaces).
            remove_namespace(ns);
            progress(format!("namespace {ns}: removed"));
        }
    }
    if plan.dir.exists() {
        if cleanup {
            fs::remove_dir_all(&plan.dir).map_err(io_err(&plan.dir))?;
        } else if !keep_only_logs(&plan.dir)? {
            fs::remove_dir(&plan.dir).map_err(io_err(&plan.dir))?;
        } else {
            progress(format!("lab {}: logs kept in {} (--cleanup removes them)", plan.name, plan.dir.display()));
        }
    }
    progress(format!("lab {}: down", plan.name));
    Ok(())
}

/// Removes everything under `dir` but `*.log` files (and the directories holding them): the
/// datastore, pid files and sockets of a lab that is down mean nothing to its next `up`.
fn keep_only_logs(dir: &Path) -> Result<bool, LabError> {
    let mut kept = false;
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let is_dir = fs::symlink_metadata(&path).map_err(io_err(&path))?.is_dir();
        if is_dir && keep_only_logs(&path)? {
            kept = true;
        } else if is_dir {
            fs::remove_dir(&path).map_err(io_err(&path))?;
        } else if path.extension().is_some_and(|e| e == "log") {
            kept = true;
        } else {
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    Ok(kept)
}

/// A command to run in a node's network namespace — and only that: unlike
/// `ip netns exec` it keeps the machine's mount namespace, so what it mounts
/// (a pod's network namespace made by `tortie lab pod add`) is seen outside
/// the node too. (`/sys` is the machine's; `/proc/sys/net` is the node's.)
fn node_command(ns: &str) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{ns}")).arg("--");
    cmd
}

/// Runs `argv` inside `node` with the node's environment; returns its exit code.
pub fn exec(plan: &LabPlan, node: &str, argv: &[String]) -> Result<i32, LabError> {
    let n = plan.node(node).ok_or_else(|| LabError::NoNode(node.to_string()))?;
    let status = node_command(&n.ns).args(argv).envs(&n.env).status().map_err(|e| LabError::Exec {
        node: node.to_string(),
        command: argv.join(" "),
        detail: e.to_string(),
    })?;
    Ok(status.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn each_runs_every_step_once_a_bounded_number_at_once_and_forwards_their_lines() {
        let (running, most) = (AtomicU32::new(0), AtomicU32::new(0));
        let items: Vec<u32> = (0..20).collect();
        let mut lines = Vec::new();
        each(&items, 3, &mut |l| lines.push(l), |i, progress| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            progress(format!("step {i}"));
            Ok(())
        })
        .unwrap();
        lines.sort_by_key(|l| l[5..].parse::<u32>().unwrap());
        assert_eq!(lines, items.iter().map(|i| format!("step {i}")).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 3, "{} at once", most.load(Ordering::SeqCst));
    }

    #[test]
    fn each_reports_the_first_failed_item_and_starts_nothing_after_a_failure() {
        let started = AtomicU32::new(0);
        let items: Vec<u32> = (0..50).collect();
        let err = each(&items, 2, &mut |_| {}, |i, _| {
            started.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(2));
            if *i == 3 || *i == 4 { Err(LabError::NoNode(format!("n{i}"))) } else { Ok(()) }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "no node \"n3\" in the lab");
        assert!(started.load(Ordering::SeqCst) < 10, "{} started", started.load(Ordering::SeqCst));
        assert!(each(&[] as &[u32], 8, &mut |_| {}, |_, _| Ok(())).is_ok());
    }
}
