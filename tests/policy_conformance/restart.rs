//! An agent killed with SIGKILL under traffic: while it is down its rules stay in the kernel
//! (a denied pair stays denied, an open allowed connection keeps working, new allowed ones
//! connect), and the restarted agent adopts the table without touching it: `nft monitor`
//! sees nothing, the rules keep their handles, and it makes no nftables transaction.

use super::Matrix;
use super::cases::{Change, knp};
use super::model::Proto;
use super::probe;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;
use tortie::testing::wait_until;

/// The node whose agent is killed, and the pod of namespace x on it.
const NODE: &str = "node2";
/// How many times each check repeats while the agent is down.
const ROUNDS_WHILE_DOWN: usize = 5;

fn echo(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4];
    stream.write_all(b"ping").is_ok() && stream.read_exact(&mut buf).is_ok() && &buf == b"ping"
}

/// `nft -a list table inet tortie` in the node, with handles and without counter values.
fn ruleset(m: &Matrix) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &m.lab.ns(NODE), "nft", "-a", "list", "table", "inet", "tortie"])
        .output()
        .unwrap();
    assert!(out.status.success(), "nft list: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    regex::Regex::new(r"packets \d+ bytes \d+").unwrap().replace_all(&text, "packets - bytes -").into_owned()
}

fn connects(m: &Matrix, from: &str, to: SocketAddr, proto: Proto) -> bool {
    let pod = m.world.pods.iter().find(|p| p.id() == from).unwrap();
    tortie::netns::run_in_namespace(&m.lab.pod_ns(&pod.node, &pod.name), || probe::probe(to, proto)).unwrap()
}

pub fn run(m: &mut Matrix) {
    // x/b admits x/a only.
    m.change(&Change::Apply(vec![knp(
        "x",
        "b-from-a",
        json!({"podSelector": {"matchLabels": {"pod": "b"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
    )]));
    m.check(4).unwrap_or_else(|d| panic!("before the restart:{d}"));
    let b = m.world.pods.iter().find(|p| p.id() == "x/b").unwrap();
    let b80 = SocketAddr::new(b.ips[0], 80);
    let a = m.world.pods.iter().find(|p| p.id() == "x/a").unwrap();
    let mut open = tortie::netns::run_in_namespace(&m.lab.pod_ns(&a.node, &a.name), || {
        TcpStream::connect_timeout(&b80, Duration::from_secs(2))
    })
    .unwrap()
    .expect("x/a connects to x/b");
    open.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert!(echo(&mut open), "the open connection echoes");

    let before = ruleset(m);
    let mut monitor = Command::new("ip")
        .args(["netns", "exec", &m.lab.ns(NODE), "nft", "monitor"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let pid = m.lab.agent_pid(NODE);
    assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
    wait_until(&format!("{NODE}'s agent ({pid}) to die"), Duration::from_secs(10), || {
        std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| c.is_empty()).unwrap_or(true).then_some(())
    })
    .unwrap();
    for round in 0..ROUNDS_WHILE_DOWN {
        assert!(echo(&mut open), "round {round} with the agent down: the open connection stopped");
        assert!(connects(m, "x/a", b80, Proto::Tcp), "round {round} with the agent down: x/a cannot connect anew");
        for proto in [Proto::Tcp, Proto::Udp] {
            assert!(!connects(m, "x/c", b80, proto), "round {round} with the agent down: x/c got in over {proto:?}");
        }
    }

    m.lab.up();
    let synced = "tortie_nftables_synced";
    wait_until("the restarted agent's nftables table to be synced", Duration::from_secs(60), || {
        (m.lab.metric(NODE, synced)? == 1.0).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", m.lab.agent_log(NODE)));
    assert_eq!(m.lab.metric(NODE, "tortie_nftables_applies_total"), Some(0.0), "the restarted agent wrote the table");
    assert_eq!(ruleset(m), before, "the restarted agent changed the table");
    let _ = monitor.kill();
    let mut events = String::new();
    monitor.stdout.take().unwrap().read_to_string(&mut events).unwrap();
    let _ = monitor.wait();
    assert_eq!(events.trim(), "", "nft monitor saw the restarted agent change the ruleset");
    assert!(echo(&mut open), "the open connection after the restart");
    m.check(4).unwrap_or_else(|d| panic!("after the restart:{d}"));
    m.reset();
}
