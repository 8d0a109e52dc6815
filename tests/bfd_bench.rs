//! Long runs, not in CI (`#[ignore]`; run by bench/bfd_soak.sh and
//! bench/bfd_cut.sh, which print their results):
//!
//! - soak: a tortie agent's BFD session to FRR's bfdd at 300 ms × 3 for
//!   `BFD_SOAK_SECONDS` (300) while the script saturates the CPUs;
//!   reports the state changes on both sides after the first Up.
//! - cut: a ToR (`tor`, FRR bgpd + bfdd) announces a route to a tortie node
//!   (`n`) and to an FRR node (`z`: zebra, bfdd, bgpd with `neighbor … bfd`);
//!   BFD is cut on both nodes at once (nft drops UDP 3784 arriving) and the
//!   time until the route leaves each node's kernel is measured,
//!   `BFD_CUTS` (50) times, at `BFD_MS` × 3.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::daemons::{spawn_frr, start_bfdd, vtysh_json};
use tortie::netns::Topology;
use tortie::testing::wait_until;

const LEARNED: &str = "198.51.100.0/24";
const MULTIPLIER: u64 = 3;
const UP: Duration = Duration::from_secs(60);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The agent's configuration in `dir`, peering with `tor` with BFD at `ms` × 3.
fn agent_config(dir: &std::path::Path, tor: &str, ms: u64, metrics: &str) -> PathBuf {
    let config = dir.join("tortie.yaml");
    std::fs::write(
        &config,
        format!(
            "node: {{name: n1, address_autodetection: interface=eth1}}\n\
             datastore: {{sqlite_path: {db}}}\napi: {{socket: {sock}}}\nmetrics: {{listen: \"{metrics}\"}}\n\
             bgp: {{as_number: 64512, hold_time_seconds: 9, node_to_node_mesh: false, \
                    peers: [{{address: {tor}, as_number: 65001, \
                              bfd: {{enabled: true, min_tx_ms: {ms}, min_rx_ms: {ms}, multiplier: {MULTIPLIER}}}}}]}}\n\
             ipam: {{default_ipv4_pool_cidr: 10.251.0.0/16}}\n",
            db = dir.join("tortie.db").display(),
            sock = dir.join("api.sock").display(),
        ),
    )
    .unwrap();
    config
}

fn bfdd_peer(peer: &str, local: &str, ms: u64) -> String {
    format!(
        " peer {peer} local-address {local}\n  receive-interval {ms}\n  transmit-interval {ms}\n  \
         detect-multiplier {MULTIPLIER}\n !\n"
    )
}

/// The ToR's bgpd, announcing [`LEARNED`] to `neighbors` (address, AS).
fn tor_bgpd(neighbors: &[(&str, u32)]) -> String {
    let mut config = "frr defaults traditional\nhostname tor\nrouter bgp 65001\n bgp router-id 10.128.0.1\n \
                      no bgp ebgp-requires-policy\n no bgp network import-check\n"
        .to_string();
    for (addr, asn) in neighbors {
        config += &format!(
            " neighbor {addr} remote-as {asn}\n neighbor {addr} timers 3 9\n neighbor {addr} timers connect 1\n"
        );
    }
    config + &format!(" address-family ipv4 unicast\n  network {LEARNED}\n exit-address-family\n")
}

fn kernel_has(t: &Topology, ns: &str, prefix: &str) -> bool {
    let out = Command::new("ip").args(["-n", &t.ns(ns), "-j", "route", "show", prefix]).output().unwrap();
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().map(|a| !a.is_empty()))
        .unwrap_or(false)
}

fn metric(t: &Topology, ns: &str, listen: &str, series: &str) -> Option<f64> {
    let out = t.exec(ns, &["curl", "-s", &format!("http://{listen}/metrics")]).ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

#[test]
#[ignore = "5 minutes; run by bench/bfd_soak.sh under CPU load"]
fn soak_bfd_at_300ms_x3_with_frr() {
    const METRICS: &str = "127.0.0.1:19492";
    let seconds = env_u64("BFD_SOAK_SECONDS", 300);
    let mut t = Topology::new("bfdsoak").unwrap();
    t.add_namespace("n").unwrap();
    t.add_namespace("tor").unwrap();
    t.add_veth(("n", "eth1", Some("10.128.0.5/24")), ("tor", "eth1", Some("10.128.0.1/24"))).unwrap();
    spawn_frr(&mut t, "tor", "10.128.0.1", &tor_bgpd(&[("10.128.0.5", 64512)]));
    let bfdd = start_bfdd(&mut t, "tor", &format!("bfd\n{}!\n", bfdd_peer("10.128.0.5", "10.128.0.1", 300)));
    let dir = t.dir().to_path_buf();
    let config = agent_config(&dir, "10.128.0.1", 300, METRICS);
    let log = t.spawn("n", &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]).unwrap();
    let log = log.log_path().to_path_buf();
    wait_until("the learned route in the kernel", UP, || kernel_has(&t, "n", LEARNED).then_some(())).unwrap();

    let series = "tortie_bfd_session_transitions_total{peer=\"10.128.0.1\"}";
    let frr_downs = |t: &Topology| {
        let counters = vtysh_json(t, "tor", &bfdd, "show bfd peers counters json");
        let peer = counters.as_array().and_then(|a| a.first()).cloned().unwrap_or_default();
        peer["session-down"].as_u64().or(peer["session-down-event"].as_u64()).expect("bfdd's counters")
    };
    let (tortie_before, frr_before) = (metric(&t, "n", METRICS, series).unwrap(), frr_downs(&t));
    let start = Instant::now();
    let mut route_lost = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        // Not a sync: the run's length is the measurement.
        std::thread::sleep(Duration::from_secs(5));
        route_lost += u64::from(!kernel_has(&t, "n", LEARNED));
    }
    let tortie_changes = (metric(&t, "n", METRICS, series).unwrap() - tortie_before) as u64;
    let frr_downs = frr_downs(&t) - frr_before;
    for line in std::fs::read_to_string(&log).unwrap_or_default().lines().filter(|l| l.contains("BFD session")) {
        println!("agent: {line}");
    }
    println!(
        "SOAK {seconds}s at 300ms x {MULTIPLIER}: tortie BFD state changes {tortie_changes}, bfdd session-down events \
         {frr_downs}, route missing at {route_lost} of the 5 s checks"
    );
    assert_eq!((tortie_changes, frr_downs, route_lost), (0, 0, 0), "false detections under load");
}

/// p50 and p99 (nearest rank) of `samples`, in ms.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let rank = |p: f64| samples[((p * samples.len() as f64).ceil() as usize).max(1) - 1].as_secs_f64() * 1000.0;
    (rank(0.50), rank(0.99))
}

#[test]
#[ignore = "minutes; run by bench/bfd_cut.sh"]
fn cut_to_kernel_route_removed_tortie_beside_frr() {
    const METRICS: &str = "127.0.0.1:19493";
    let ms = env_u64("BFD_MS", 300);
    let cuts = env_u64("BFD_CUTS", 50);
    let mut t = Topology::new("bfdcut").unwrap();
    for ns in ["n", "z", "tor"] {
        t.add_namespace(ns).unwrap();
    }
    t.add_veth(("n", "eth1", Some("10.128.0.5/24")), ("tor", "eth1", Some("10.128.0.1/24"))).unwrap();
    t.add_veth(("z", "eth1", Some("10.129.0.6/24")), ("tor", "eth2", Some("10.129.0.1/24"))).unwrap();
    spawn_frr(&mut t, "tor", "10.128.0.1", &tor_bgpd(&[("10.128.0.5", 64512), ("10.129.0.6", 64513)]));
    let tor_bfd =
        format!("bfd\n{}{}!\n", bfdd_peer("10.128.0.5", "10.128.0.1", ms), bfdd_peer("10.129.0.6", "10.129.0.1", ms));
    start_bfdd(&mut t, "tor", &tor_bfd);
    let z = start_frr_node(&mut t, ms);
    let dir = t.dir().to_path_buf();
    let config = agent_config(&dir, "10.128.0.1", ms, METRICS);
    t.spawn("n", &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]).unwrap();

    let cut_rule = "add table inet cut; add chain inet cut input { type filter hook input priority 0; }; \
                    add rule inet cut input udp dport 3784 drop";
    let (mut tortie, mut frr) = (Vec::new(), Vec::new());
    for i in 0..cuts {
        wait_until("the route in both nodes' kernels", UP, || {
            (kernel_has(&t, "n", LEARNED) && kernel_has(&t, "z", LEARNED)).then_some(())
        })
        .unwrap_or_else(|e| {
            panic!(
                "cut {i}: {e}; tortie has it: {}, FRR has it: {}; FRR: {} {}",
                kernel_has(&t, "n", LEARNED),
                kernel_has(&t, "z", LEARNED),
                vtysh_json(&t, "z", &z, "show bgp summary json"),
                vtysh_json(&t, "z", &z, "show bfd peers json")
            )
        });
        // Both BFD sessions are Up at the configured intervals (the slow start is over).
        wait_until("BFD Up at its configured interval on both nodes", UP, || {
            let detection = metric(&t, "n", METRICS, "tortie_bfd_detection_time_seconds{peer=\"10.128.0.1\"}");
            let frr = vtysh_json(&t, "z", &z, "show bfd peers json");
            let frr_up = frr
                .as_array()
                .is_some_and(|a| a.iter().any(|p| p["status"] == "up" && p["receive-interval"].as_u64() == Some(ms)));
            (detection == Some((ms * MULTIPLIER) as f64 / 1000.0) && frr_up).then_some(())
        })
        .unwrap_or_else(|e| panic!("cut {i}: {e}; bfdd: {}", vtysh_json(&t, "z", &z, "show bfd peers json")));
        let start_n = Instant::now();
        t.exec("n", &["nft", cut_rule]).unwrap();
        let start_z = Instant::now();
        t.exec("z", &["nft", cut_rule]).unwrap();
        let (mut gone_n, mut gone_z) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while (gone_n.is_none() || gone_z.is_none()) && Instant::now() < deadline {
            if gone_n.is_none() && !kernel_has(&t, "n", LEARNED) {
                gone_n = Some(start_n.elapsed());
            }
            if gone_z.is_none() && !kernel_has(&t, "z", LEARNED) {
                gone_z = Some(start_z.elapsed());
            }
        }
        let (n, z) = (gone_n.expect("tortie removed the route"), gone_z.expect("FRR removed the route"));
        eprintln!("cut {i}: tortie {:.0} ms, FRR {:.0} ms", n.as_secs_f64() * 1e3, z.as_secs_f64() * 1e3);
        tortie.push(n);
        frr.push(z);
        t.exec("n", &["nft", "delete table inet cut"]).unwrap();
        t.exec("z", &["nft", "delete table inet cut"]).unwrap();
    }
    let ((tp50, tp99), (fp50, fp99)) = (percentiles(&mut tortie), percentiles(&mut frr));
    let detection = ms * MULTIPLIER;
    println!(
        "CUT {ms}ms x {MULTIPLIER} (detection {detection} ms), {cuts} cuts: tortie p50 {tp50:.0} ms p99 {tp99:.0} ms; \
         FRR bgpd+bfdd+zebra p50 {fp50:.0} ms p99 {fp99:.0} ms"
    );
}

/// FRR as a node in `z`: zebra (which writes the kernel routes), bfdd and
/// bgpd with BFD on its session to the ToR, at `ms` × 3.
/// Returns the vty directory.
fn start_frr_node(t: &mut Topology, ms: u64) -> PathBuf {
    let dir = t.dir().join("z-frr");
    std::fs::create_dir_all(&dir).unwrap();
    let frr = nix::unistd::User::from_name("frr").unwrap().expect("the frr user exists");
    let own = |path: &std::path::Path| {
        std::os::unix::fs::chown(path, Some(frr.uid.as_raw()), Some(frr.gid.as_raw())).unwrap();
    };
    own(&dir);
    let file = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).unwrap();
        own(&dir.join(name));
    };
    write("zebra.conf", "hostname z\n");
    write(
        "bfdd.conf",
        &format!(
            "bfd\n profile node\n  receive-interval {ms}\n  transmit-interval {ms}\n  detect-multiplier {MULTIPLIER}\n !\n!\n"
        ),
    );
    write(
        "bgpd.conf",
        "frr defaults traditional\nhostname z\nrouter bgp 64513\n bgp router-id 10.129.0.6\n no bgp ebgp-requires-policy\n \
         neighbor 10.129.0.1 remote-as 65001\n neighbor 10.129.0.1 timers 3 9\n neighbor 10.129.0.1 timers connect 1\n \
         neighbor 10.129.0.1 bfd\n neighbor 10.129.0.1 bfd profile node\n",
    );
    let zserv = file("zserv.api");
    let vty = dir.to_str().unwrap().to_string();
    let common = |daemon: &str| {
        vec![
            format!("/usr/lib/frr/{daemon}"),
            "-f".into(),
            file(&format!("{daemon}.conf")),
            "-i".into(),
            file(&format!("{daemon}.pid")),
            "--vty_socket".into(),
            vty.clone(),
            "-z".into(),
            zserv.clone(),
            "-P".into(),
            "0".into(),
        ]
    };
    let mut bfdd = common("bfdd");
    bfdd.extend(["--bfdctl".to_string(), file("bfdd.sock")]);
    let mut bgpd = common("bgpd");
    bgpd.extend(["-S".to_string(), "-l".into(), "10.129.0.6".into()]);
    for argv in [common("zebra"), bfdd, bgpd] {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        t.spawn("z", &argv).unwrap();
        // zebra's socket must exist before its clients start.
        let _ = wait_until("zserv.api", Duration::from_secs(10), || dir.join("zserv.api").exists().then_some(()));
    }
    dir
}
