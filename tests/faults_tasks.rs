//! Fault injection: a task of the agent that panics (armed with
//! `TORTIE_FAULTS=panic:POINT`, see `src/faults.rs`) ends the agent with a
//! non-zero status and a log line naming the task, and leaves the kernel
//! routes of tortie's protocol in place for the next run to adopt.

use std::time::Duration;
use tortie::netns::Topology;
use tortie::testing::wait_until;

/// A route a previous run left: it must survive the crash.
const LEFT_ROUTE: &str = "10.99.0.0/26";

fn agent_with_fault(point: &str, task: &str) {
    let mut t = Topology::new("fault").unwrap();
    t.add_namespace("n").unwrap();
    t.add_namespace("peer").unwrap();
    t.add_veth(("n", "eth1", Some("10.124.0.5/24")), ("peer", "eth1", Some("10.124.0.1/24"))).unwrap();
    let out = t.exec("n", &["ip", "route", "add", LEFT_ROUTE, "via", "10.124.0.1", "proto", "116"]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = t.dir().to_path_buf();
    let config = dir.join("tortie.yaml");
    std::fs::write(
        &config,
        format!(
            // A peer that never answers: the first full reconcile (which would
            // delete the left route as unwanted) waits for it, so only the crash
            // path could remove the route.
            "node: {{name: node-fault}}\ndatastore: {{sqlite_path: {}}}\napi: {{socket: {}}}\nmetrics: {{enabled: false}}\nbgp: {{peers: [{{address: 10.124.0.1, as_number: 64512}}]}}\n",
            dir.join("tortie.db").display(),
            dir.join("api.sock").display()
        ),
    )
    .unwrap();
    let fault = format!("{}=panic:{point}", tortie::faults::VARIABLE);
    let agent = t
        .spawn("n", &["env", &fault, env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()])
        .unwrap();
    let status = wait_until(&format!("the agent to exit after the {point} fault"), Duration::from_secs(30), || {
        agent.exit_status()
    });
    let log = std::fs::read_to_string(agent.log_path()).unwrap_or_default();
    let status = status.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(!status.success(), "a panicking task ends the agent non-zero ({status}):\n{log}");
    let named = format!("the {task} task panicked: fault injected at {point}");
    assert!(log.contains(&named), "the log names the task ({named}):\n{log}");
    let routes = t.exec("n", &["ip", "route", "show", "proto", "116"]).unwrap();
    assert!(
        String::from_utf8_lossy(&routes.stdout).contains(LEFT_ROUTE),
        "kernel routes stay after the crash:\n{}",
        String::from_utf8_lossy(&routes.stdout)
    );
}

#[test]
fn a_panicking_rib_ends_the_agent_naming_it() {
    agent_with_fault("rib", "RIB");
}

#[test]
fn a_panicking_route_programmer_ends_the_agent_naming_it() {
    agent_with_fault("programmer", "route programmer");
}

#[test]
fn a_panicking_local_prefix_follower_ends_the_agent_naming_it() {
    agent_with_fault("local-prefixes", "local prefixes");
}

#[test]
fn a_datastore_deleted_under_the_agent_ends_it() {
    let mut t = Topology::new("dslost").unwrap();
    t.add_namespace("n").unwrap();
    t.add_namespace("peer").unwrap();
    t.add_veth(("n", "eth1", Some("10.125.0.5/24")), ("peer", "eth1", Some("10.125.0.1/24"))).unwrap();
    let dir = t.dir().to_path_buf();
    let (db, socket, config) = (dir.join("tortie.db"), dir.join("api.sock"), dir.join("tortie.yaml"));
    std::fs::write(
        &config,
        format!(
            "node: {{name: node-dslost}}\ndatastore: {{sqlite_path: {}}}\napi: {{socket: {}}}\nmetrics: {{enabled: false}}\n",
            db.display(),
            socket.display()
        ),
    )
    .unwrap();
    let agent = t.spawn("n", &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]).unwrap();
    wait_until("the agent to be ready", Duration::from_secs(30), || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(["status", "--socket", socket.to_str().unwrap()])
            .output()
            .ok()?;
        out.status.success().then_some(())
    })
    .unwrap();
    std::fs::remove_file(&db).unwrap();
    let status =
        wait_until("the agent to exit once its datastore is gone", Duration::from_secs(30), || agent.exit_status());
    let log = std::fs::read_to_string(agent.log_path()).unwrap_or_default();
    let status = status.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(!status.success(), "{status}\n{log}");
    assert!(log.contains("the datastore was lost under the agent"), "{log}");
    assert!(log.contains("the datastore check task returned"), "{log}");
}
