//! A running agent with BFD to a ToR of FRR (bgpd beside bfdd, without
//! zebra): the route it learns from the ToR is in the kernel, and leaves the
//! kernel within the detection time once BFD alone is cut. A passive BFD
//! session sends nothing until bfdd (active) speaks, then comes up. The
//! metrics count the session's packets, and those from the ToR's address
//! that were discarded, by reason. A ToR that offered graceful restart and
//! sends BFD with the C bit clear may be restarting when BFD goes down
//! (RFC 5882 4.3.2): its route stays for its restart time.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::daemons::{spawn_frr, start_bfdd};
use tortie::netns::Topology;
use tortie::testing::wait_until;

const UP: Duration = Duration::from_secs(40);
const INTERVAL_MS: u64 = 300;
const MULTIPLIER: u64 = 3;
const DETECTION: Duration = Duration::from_millis(INTERVAL_MS * MULTIPLIER);
/// Beyond the detection time: the RIB, the programmer, the test's polling
/// and a machine shared with builds.
const MARGIN: Duration = Duration::from_secs(1);
const LEARNED: &str = "198.51.100.0/24";

/// The agent in `n` (10.128.0.5, AS 64512), FRR in `tor` (10.128.0.1, AS 65001).
struct Site {
    t: Topology,
    socket: PathBuf,
}

/// The agent's metrics, inside its namespace.
const METRICS: &str = "127.0.0.1:19491";

fn agent_config(dir: &Path, bfd: &str) -> PathBuf {
    let config = dir.join("tortie.yaml");
    std::fs::write(
        &config,
        format!(
            "node: {{name: n1, address_autodetection: interface=eth1}}\n\
             datastore: {{sqlite_path: {db}}}\napi: {{socket: {sock}}}\nmetrics: {{listen: \"{METRICS}\"}}\n\
             bgp: {{as_number: 64512, hold_time_seconds: 9, node_to_node_mesh: false, \
                    peers: [{{address: 10.128.0.1, as_number: 65001, bfd: {bfd}}}]}}\n\
             ipam: {{default_ipv4_pool_cidr: 10.251.0.0/16}}\n",
            db = dir.join("tortie.db").display(),
            sock = dir.join("api.sock").display(),
        ),
    )
    .unwrap();
    config
}

/// bfdd in `tor`, active (its default), at the test's intervals.
fn start_bfdd_active(t: &mut Topology) {
    let bfdd = format!(
        "bfd\n peer 10.128.0.5 local-address 10.128.0.1\n  receive-interval {INTERVAL_MS}\n  \
         transmit-interval {INTERVAL_MS}\n  detect-multiplier {MULTIPLIER}\n !\n!\n"
    );
    start_bfdd(t, "tor", &bfdd);
}

impl Site {
    /// FRR's bgpd with `bgpd_extra` lines, bfdd unless `with_bfdd` is false, and the agent.
    fn start(name: &str, bfd: &str, bgpd_extra: &str, with_bfdd: bool) -> Site {
        let mut t = Topology::new(name).unwrap();
        t.add_namespace("n").unwrap();
        t.add_namespace("tor").unwrap();
        t.add_veth(("n", "eth1", Some("10.128.0.5/24")), ("tor", "eth1", Some("10.128.0.1/24"))).unwrap();
        let bgpd = format!(
            "frr defaults traditional
hostname tor
router bgp 65001
 bgp router-id 10.128.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
{bgpd_extra} neighbor 10.128.0.5 remote-as 64512
 neighbor 10.128.0.5 timers 3 9
 neighbor 10.128.0.5 timers connect 1
 address-family ipv4 unicast
  network {LEARNED}
 exit-address-family
"
        );
        spawn_frr(&mut t, "tor", "10.128.0.1", &bgpd);
        if with_bfdd {
            start_bfdd_active(&mut t);
        }
        let dir = t.dir().to_path_buf();
        let config = agent_config(&dir, bfd);
        t.spawn("n", &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]).unwrap();
        Site { t, socket: dir.join("api.sock") }
    }

    fn kernel_has(&self, prefix: &str) -> bool {
        let routes = self.t.exec_json("n", &["ip", "-j", "route", "show", prefix, "proto", "116"]);
        routes.ok().and_then(|v| v.as_array().map(|a| !a.is_empty())).unwrap_or(false)
    }

    fn status(&self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(["status", "-o", "json", "--socket"])
            .arg(&self.socket)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// BFD packets (UDP 3784) that reached `tor` so far, counted by an nft rule of the test's.
    fn bfd_packets_at_tor(&self) -> u64 {
        let out = self.t.exec("tor", &["nft", "-j", "list", "chain", "inet", "watch", "input"]).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        json["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o["rule"]["expr"].as_array())
            .flatten()
            .filter_map(|e| e["counter"]["packets"].as_u64())
            .sum()
    }

    fn count_bfd_at_tor(&self) {
        self.t
            .exec(
                "tor",
                &["nft", "add table inet watch; add chain inet watch input { type filter hook input priority 0; }; add rule inet watch input udp dport 3784 counter"],
            )
            .unwrap();
    }

    fn metrics(&self) -> String {
        let url = format!("http://{METRICS}/metrics");
        let out = self.t.exec("n", &["curl", "-s", &url]).unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Drops BFD (UDP 3784) arriving at the agent; BGP's TCP stays.
    fn cut_bfd(&self) {
        self.t
            .exec(
                "n",
                &["nft", "add table inet cut; add chain inet cut input { type filter hook input priority 0; }; add rule inet cut input udp dport 3784 drop"],
            )
            .unwrap();
    }
}

fn bfd_config(passive: bool, graceful_restart: bool) -> String {
    format!(
        "{{enabled: true, min_tx_ms: {INTERVAL_MS}, min_rx_ms: {INTERVAL_MS}, multiplier: {MULTIPLIER}, passive: {passive}, graceful_restart: {graceful_restart}}}"
    )
}

/// bgpd's lines that make it offer graceful restart for its families, with `restart` seconds.
fn bgpd_graceful_restart(restart: Duration) -> String {
    format!(" bgp graceful-restart\n bgp graceful-restart restart-time {}\n", restart.as_secs())
}

#[test]
fn the_learned_route_leaves_the_kernel_within_the_detection_time_after_a_bfd_cut() {
    // bgpd offers graceful restart and bfdd's C bit is clear, but the session did not opt in to
    // treating BFD down as a restart: BFD down is a failure.
    let gr = bgpd_graceful_restart(Duration::from_secs(60));
    let site = Site::start("bfdroute", &bfd_config(false, false), &gr, true);
    wait_until("the learned route in the kernel", UP, || site.kernel_has(LEARNED).then_some(()))
        .unwrap_or_else(|e| panic!("{e}; status: {}", site.status()));

    let cut = Instant::now();
    site.cut_bfd();
    wait_until("the learned route to leave the kernel", DETECTION + MARGIN, || {
        (!site.kernel_has(LEARNED)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; status: {}", site.status()));
    eprintln!("the route left the kernel {:?} after the cut", cut.elapsed());
}

#[test]
fn a_passive_session_is_silent_until_bfdd_speaks_then_brings_bgp_up() {
    let mut site = Site::start("bfdpassive", &bfd_config(true, false), "", false);
    site.count_bfd_at_tor();
    wait_until("the agent's BFD session to the ToR", UP, || site.status().contains("\"bfd\"").then_some(()))
        .unwrap_or_else(|e| panic!("{e}; status: {}", site.status()));
    // An active session sends once a second while Down (RFC 5880 6.8.3).
    let spoke = wait_until("a packet from the passive session", Duration::from_secs(3), || {
        (site.bfd_packets_at_tor() > 0).then_some(())
    });
    assert!(spoke.is_err(), "the passive session sent {} packets to a silent peer", site.bfd_packets_at_tor());

    start_bfdd_active(&mut site.t);
    wait_until("the learned route in the kernel", UP, || site.kernel_has(LEARNED).then_some(()))
        .unwrap_or_else(|e| panic!("{e}; status: {}", site.status()));
    assert!(site.bfd_packets_at_tor() > 0, "the session is up, so it answered bfdd");
}

/// Sends BFD datagrams from `tor` to the agent: with TTL 64, malformed, and
/// well-formed (TTL 255) naming a discriminator nobody has.
const BAD_PACKETS: &str = r#"
import socket, struct
def control(your):
    # Version 1, state Down, detect mult 3, length 24, my discriminator 7.
    return struct.pack("!BBBBIIIII", 0x20, 0x40, 3, 24, 7, your, 300000, 300000, 0)
def send(data, ttl):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.128.0.1", 0))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    s.sendto(data, ("10.128.0.5", 3784))
for _ in range(3):
    send(control(0), 64)
for _ in range(2):
    send(b"\x20\x40\x03", 255)
send(control(0xdeadbeef), 255)
"#;

#[test]
fn bfd_packets_are_counted_per_peer_in_the_metrics_with_the_discarded_by_reason() {
    let site = Site::start("bfdmetrics", &bfd_config(false, false), "", true);
    wait_until("the learned route in the kernel", UP, || site.kernel_has(LEARNED).then_some(()))
        .unwrap_or_else(|e| panic!("{e}; status: {}", site.status()));
    site.t.exec("tor", &["python3", "-c", BAD_PACKETS]).unwrap();

    let metric = |text: &str, series: &str| -> Option<u64> {
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
    };
    let peer = "peer=\"10.128.0.1\"";
    let expected = [
        (format!("tortie_bfd_packets_dropped_total{{{peer},reason=\"wrong_ttl\"}}"), 3),
        (format!("tortie_bfd_packets_dropped_total{{{peer},reason=\"malformed\"}}"), 2),
        (format!("tortie_bfd_packets_dropped_total{{{peer},reason=\"discriminator\"}}"), 1),
    ];
    let mut last = String::new();
    wait_until("the discarded packets in the metrics", UP, || {
        last = site.metrics();
        expected.iter().all(|(series, n)| metric(&last, series) == Some(*n)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; metrics: {last}"));
    for series in ["tortie_bfd_packets_sent_total", "tortie_bfd_packets_received_total"] {
        let n = metric(&last, &format!("{series}{{{peer}}}"));
        assert!(n.is_some_and(|n| n > 0), "{series}: {n:?}");
    }
}

#[test]
fn after_a_bfd_cut_a_graceful_restart_peer_with_a_clear_c_bit_keeps_its_route_for_its_restart_time() {
    const RESTART_TIME: Duration = Duration::from_secs(6);
    let gr = bgpd_graceful_restart(RESTART_TIME);
    let site = Site::start("bfdgr", &bfd_config(false, true), &gr, true);
    wait_until("the learned route in the kernel", UP, || site.kernel_has(LEARNED).then_some(()))
        .unwrap_or_else(|e| panic!("{e}; status: {}", site.status()));

    // Timed from the cut, which comes before the agent's down: seeing the down late (a loaded
    // machine answers status slowly) must not shorten the hold measured below.
    let cut = Instant::now();
    site.cut_bfd();
    let state = || {
        let status: serde_json::Value = serde_json::from_str(&site.status()).unwrap_or_default();
        status["peers"][0]["state"].as_str().unwrap_or_default().to_string()
    };
    wait_until("the BGP session to go down with BFD", DETECTION + MARGIN, || (state() != "established").then_some(()))
        .unwrap_or_else(|e| panic!("{e}; status: {}", site.status()));
    // bfdd's packets carry C = 0, bgpd offered graceful restart and the session opted in: helper
    // mode.
    let gone = wait_until("the route to leave while the peer may be restarting", RESTART_TIME / 2, || {
        (!site.kernel_has(LEARNED)).then_some(())
    });
    assert!(gone.is_err(), "the route left at once; status: {}", site.status());
    // The peer does not come back (BFD stays cut): the stale route goes with the restart time.
    wait_until("the stale route to leave", RESTART_TIME + MARGIN, || (!site.kernel_has(LEARNED)).then_some(()))
        .unwrap_or_else(|e| panic!("{e}; status: {}", site.status()));
    let after = cut.elapsed();
    assert!(after >= RESTART_TIME - MARGIN, "the stale route left {after:?} after the cut");
}
