//! A running agent with BFD to a ToR of FRR (bgpd beside bfdd, without
//! zebra): the route it learns from the ToR is in the kernel, and leaves the
//! kernel within the detection time once BFD alone is cut.

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

fn agent_config(dir: &Path, bfd: &str) -> PathBuf {
    let config = dir.join("tortie.yaml");
    std::fs::write(
        &config,
        format!(
            "node: {{name: n1, address_autodetection: interface=eth1}}\n\
             datastore: {{sqlite_path: {db}}}\napi: {{socket: {sock}}}\nmetrics: {{enabled: false}}\n\
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

impl Site {
    fn start(name: &str, bfd: &str, bgpd_extra: &str) -> Site {
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
        let bfdd = format!(
            "bfd\n peer 10.128.0.5 local-address 10.128.0.1\n  receive-interval {INTERVAL_MS}\n  \
             transmit-interval {INTERVAL_MS}\n  detect-multiplier {MULTIPLIER}\n !\n!\n"
        );
        start_bfdd(&mut t, "tor", &bfdd);
        let dir = t.dir().to_path_buf();
        let config = agent_config(&dir, bfd);
        t.spawn("n", &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]).unwrap();
        Site { t, socket: dir.join("api.sock") }
    }

    fn kernel_has(&self, prefix: &str) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.t.ns("n"), "-j", "route", "show", prefix, "proto", "116"])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().map(|a| !a.is_empty()))
            .unwrap_or(false)
    }

    fn status(&self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_tortie"))
            .args(["status", "-o", "json", "--socket"])
            .arg(&self.socket)
            .output()
            .unwrap();
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

#[test]
fn the_learned_route_leaves_the_kernel_within_the_detection_time_after_a_bfd_cut() {
    let site = Site::start(
        "bfdroute",
        &format!("{{enabled: true, min_tx_ms: {INTERVAL_MS}, min_rx_ms: {INTERVAL_MS}, multiplier: {MULTIPLIER}}}"),
        "",
    );
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
