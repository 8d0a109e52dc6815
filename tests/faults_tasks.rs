//! Fault injection into the agent's tasks (armed with `TORTIE_FAULTS`, see
//! `src/faults.rs`): a task that panics ends the agent with a non-zero status
//! and a log line naming it, leaving the kernel routes of tortie's protocol
//! in place for the next run to adopt; a task that hangs fails `/livez`; a
//! datastore deleted under the agent ends it so the restart re-claims.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;
use tortie::netns::Topology;
use tortie::testing::wait_until;

/// A route a previous run left: it must survive a crash.
const LEFT_ROUTE: &str = "10.99.0.0/26";

/// One agent in a namespace of its own, with a neighbour at `.1`.
struct Agent {
    t: Topology,
    pid: u32,
    db: PathBuf,
    socket: PathBuf,
}

impl Agent {
    /// Starts `tortie node` on `10.124.0.5/24` with `extra` YAML lines and `faults` armed.
    fn start(label: &str, extra: &str, faults: Option<&str>) -> Agent {
        let mut t = Topology::new(label).unwrap();
        t.add_namespace("n").unwrap();
        t.add_namespace("peer").unwrap();
        t.add_veth(("n", "eth1", Some("10.124.0.5/24")), ("peer", "eth1", Some("10.124.0.1/24"))).unwrap();
        let out = t.exec("n", &["ip", "route", "add", LEFT_ROUTE, "via", "10.124.0.1", "proto", "116"]).unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let dir = t.dir().to_path_buf();
        let (db, socket, config) = (dir.join("tortie.db"), dir.join("api.sock"), dir.join("tortie.yaml"));
        let yaml = format!(
            "node: {{name: node-{label}}}\ndatastore: {{sqlite_path: {}}}\napi: {{socket: {}}}\n{extra}",
            db.display(),
            socket.display()
        );
        std::fs::write(&config, yaml).unwrap();
        let fault = faults.map(|f| format!("{}={f}", tortie::faults::VARIABLE));
        let mut argv = vec!["env"];
        argv.extend(fault.as_deref());
        argv.extend([env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]);
        let pid = t.spawn("n", &argv).unwrap().pid();
        Agent { t, pid, db, socket }
    }

    fn process(&mut self) -> &mut tortie::netns::Process {
        self.t.process(self.pid).expect("the agent")
    }

    fn log(&mut self) -> String {
        std::fs::read_to_string(self.process().log_path()).unwrap_or_default()
    }

    /// Waits for the agent to exit; its status and log.
    fn exit(&mut self, why: &str) -> (ExitStatus, String) {
        let status = wait_until(why, Duration::from_secs(30), || self.process().exit_status());
        let log = self.log();
        (status.unwrap_or_else(|e| panic!("{e}\n{log}")), log)
    }

    fn routes(&self) -> String {
        String::from_utf8_lossy(&self.t.exec("n", &["ip", "route", "show", "proto", "116"]).unwrap().stdout)
            .into_owned()
    }

    /// GET `path` on the metrics port from inside the namespace: (status, body).
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let script = format!(
            "import urllib.request, urllib.error\ntry:\n r = urllib.request.urlopen('http://{METRICS}{path}', timeout=2); print(r.status); print(r.read().decode(), end='')\nexcept urllib.error.HTTPError as e:\n print(e.code); print(e.read().decode(), end='')"
        );
        let out = self.t.exec("n", &["python3", "-c", &script]).ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (code, body) = text.split_once('\n')?;
        Some((code.trim().parse().ok()?, body.to_string()))
    }
}

const METRICS: &str = "127.0.0.1:19480";

/// A peer that never answers: the first full reconcile (which would delete
/// the left route as unwanted) waits for it, so only a crash path could remove the route.
const SILENT_PEER: &str = "metrics: {enabled: false}\nbgp: {peers: [{address: 10.124.0.1, as_number: 64512}]}\n";

fn agent_with_panic(point: &str, task: &str) {
    let mut agent = Agent::start("fault", SILENT_PEER, Some(&format!("panic:{point}")));
    let (status, log) = agent.exit(&format!("the agent to exit after the {point} fault"));
    assert!(!status.success(), "a panicking task ends the agent non-zero ({status}):\n{log}");
    let named = format!("the {task} task panicked: fault injected at {point}");
    assert!(log.contains(&named), "the log names the task ({named}):\n{log}");
    assert!(agent.routes().contains(LEFT_ROUTE), "kernel routes stay after the crash:\n{}", agent.routes());
}

#[test]
fn a_panicking_rib_ends_the_agent_naming_it() {
    agent_with_panic("rib", "RIB");
}

#[test]
fn a_panicking_route_programmer_ends_the_agent_naming_it() {
    agent_with_panic("programmer", "route programmer");
}

#[test]
fn a_panicking_local_prefix_follower_ends_the_agent_naming_it() {
    agent_with_panic("local-prefixes", "local prefixes");
}

#[test]
fn a_hung_rib_fails_livez_naming_it() {
    let extra = format!("metrics: {{listen: \"{METRICS}\"}}\n");
    let mut agent = Agent::start("hang", &extra, Some("stall:rib"));
    let limit = Duration::from_secs(30);
    let (code, body) = wait_until("/livez to fail", limit * 2, || agent.get("/livez").filter(|(c, _)| *c != 200))
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log()));
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("RIB: no answer for"), "/livez names the hung component: {body}");
    assert!(agent.process().exit_status().is_none(), "a hung task is not an ended one: the agent still runs");
}

#[test]
fn a_datastore_deleted_under_the_agent_ends_it() {
    let mut agent = Agent::start("dslost", "metrics: {enabled: false}\n", None);
    let socket = agent.socket.clone();
    wait_until("the agent to be ready", Duration::from_secs(30), || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(["status", "--socket", socket.to_str().unwrap()])
            .output()
            .ok()?;
        out.status.success().then_some(())
    })
    .unwrap();
    std::fs::remove_file(&agent.db).unwrap();
    let (status, log) = agent.exit("the agent to exit once its datastore is gone");
    assert!(!status.success(), "{status}\n{log}");
    assert!(log.contains("the datastore was lost under the agent"), "{log}");
    assert!(log.contains("the datastore check task returned"), "{log}");
}
