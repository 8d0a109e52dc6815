//! Graceful restart (RFC 4724) of a real `tortie node` process, as its peers
//! see it: a BIRD top-of-rack router and another tortie speaker.
//!
//! ```text
//!  n1  192.0.2.11 ─┐   `tortie node` (sqlite datastore), AS 65000, owns three blocks
//!  n2  192.0.2.12 ─┼─ br0 (sw)   tortie speaker + RIB in-process, iBGP with n1
//!  tor 192.0.2.1  ─┘   BIRD, AS 65100, eBGP with n1
//! ```
//!
//! n1 is killed (SIGKILL: no NOTIFICATION), its blackholes stay in its
//! namespace, one of its blocks is released meanwhile, and it starts again:
//! having adopted its previous routes it announces the restart with the
//! forwarding bit. Then it stops on SIGTERM, which leaves the sessions
//! without a NOTIFICATION too (`Speaker::abandon_all`).

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnetwork::IpNetwork;
use support::daemons::{birdc, start_bird};
use support::rib::{RibNode, lan, net, session};
use tortie::bgp::rib::{PeerRole, PeerSetup, RibConfig};
use tortie::bgp::session::State;
use tortie::datastore::Datastore;
use tortie::datastore::resources::{IpPool, IpamBlock};
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::netns::Topology;
use tortie::testing::wait_until;

const UP: Duration = Duration::from_secs(60);
const N1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const N2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 12);
const BLOCKS: [&str; 3] = ["10.244.0.0/26", "10.244.0.64/26", "10.244.0.128/26"];

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

async fn open(db: &Path) -> Datastore {
    Datastore::new(SqliteBackend::open(db, SqliteOptions::default()).await.unwrap())
}

/// The pool and n1's three blocks, as IPAM would have claimed them.
fn seed(db: &Path) {
    block_on(async {
        let ds = open(db).await;
        tortie::ipam::create_pool(&ds, "default-ipv4-ippool", &IpPool::new(net("10.244.0.0/16"))).await.unwrap();
        for block in BLOCKS {
            tortie::ipam::claim::claim(&ds, "n1", net(block)).await.unwrap().expect("the block is n1's");
        }
    })
}

/// Releases one of n1's blocks (its affinity and the empty block).
fn release(db: &Path, cidr: IpNetwork) {
    block_on(async {
        let ds = open(db).await;
        tortie::ipam::claim::delete_affinity(&ds, "n1", cidr).await.unwrap();
        let block = ds.list::<IpamBlock>().await.unwrap().items.into_iter().find(|b| b.spec.cidr == cidr).unwrap();
        ds.delete::<IpamBlock>(&block.name, block.revision).await.unwrap();
    })
}

fn agent_config(dir: &Path, db: &Path) -> PathBuf {
    let path = dir.join("n1.yaml");
    std::fs::write(
        &path,
        format!(
            "node: {{name: n1, address: 192.0.2.11/24}}
datastore: {{sqlite_path: {db}}}
api: {{socket: {dir}/n1.sock}}
metrics: {{enabled: false}}
bgp:
  as_number: 65000
  hold_time_seconds: 9
  connect_retry_seconds: 1
  graceful_restart_seconds: 60
  peers:
    - {{address: 192.0.2.1, as_number: 65100}}
    - {{address: 192.0.2.12, as_number: 65000}}
",
            db = db.display(),
            dir = dir.display()
        ),
    )
    .unwrap();
    path
}

const BIRD_CONFIG: &str = "router id 192.0.2.1;
protocol device {}
protocol bgp n1 {
  local 192.0.2.1 as 65100; neighbor 192.0.2.11 as 65000;
  hold time 9; connect retry time 1; error wait time 1, 2;
  graceful restart on; graceful restart time 60;
  ipv4 { import all; export none; };
}
";

fn bird_has(topo: &Topology, ctl: &Path, prefix: &str) -> bool {
    birdc(topo, "tor", ctl, &["show", "route", prefix]).contains(&format!("{prefix} "))
}

/// Is BIRD's session with n1 Established?
fn bird_established(topo: &Topology, ctl: &Path) -> bool {
    birdc(topo, "tor", ctl, &["show", "protocols", "n1"]).contains("Established")
}

/// Does BIRD keep n1's routes for a graceful restart now?
fn bird_restart_active(topo: &Topology, ctl: &Path) -> bool {
    birdc(topo, "tor", ctl, &["show", "protocols", "all", "n1"]).contains("Neighbor graceful restart active")
}

struct Lab {
    topo: Topology,
    ctl: PathBuf,
    config: PathBuf,
    n2: RibNode,
}

impl Lab {
    fn start_agent(&mut self) -> u32 {
        let argv = [env!("CARGO_BIN_EXE_tortie"), "node", "--config", self.config.to_str().unwrap()];
        self.topo.spawn("n1", &argv).unwrap().pid()
    }

    /// Every prefix in `present` at both peers (n2 via n1); `absent` at neither.
    fn wait_routes(&self, present: &[&str], absent: &[&str]) {
        for prefix in present {
            self.n2.wait_best(net(prefix), &[N1], UP);
            wait_until(&format!("BIRD to have {prefix}"), UP, || bird_has(&self.topo, &self.ctl, prefix).then_some(()))
                .unwrap();
        }
        for prefix in absent {
            self.n2.wait_best(net(prefix), &[], UP);
            wait_until(&format!("BIRD to lose {prefix}"), UP, || {
                (!bird_has(&self.topo, &self.ctl, prefix)).then_some(())
            })
            .unwrap();
        }
    }

    /// n1's sessions are gone and both peers keep `prefixes`, marked stale.
    fn wait_stale(&self, prefixes: &[&str]) {
        wait_until("n2's session with n1 down", UP, || (self.n2.status(N1).state != State::Established).then_some(()))
            .unwrap();
        wait_until("BIRD's session with n1 down", UP, || (!bird_established(&self.topo, &self.ctl)).then_some(()))
            .unwrap();
        for prefix in prefixes {
            let paths = self.n2.paths(net(prefix));
            assert!(paths.len() == 1 && paths[0].stale && paths[0].best, "{prefix} at n2: {paths:#?}");
            // BIRD shows staleness per neighbour: routes kept while its
            // graceful restart is active.
            assert!(bird_has(&self.topo, &self.ctl, prefix), "{prefix} at BIRD");
            assert!(bird_restart_active(&self.topo, &self.ctl), "BIRD helps n1 restart");
        }
    }
}

#[test]
fn a_killed_and_restarted_tortie_keeps_its_routes_at_bird_and_tortie_and_sweeps_the_one_it_lost() {
    let mut topo = Topology::new("ribgr").unwrap();
    lan(&mut topo, &[("n1", "192.0.2.11/24"), ("n2", "192.0.2.12/24"), ("tor", "192.0.2.1/24")]);
    let dir = topo.dir().to_path_buf();
    let db = dir.join("tortie.db");
    seed(&db);
    let ctl = start_bird(&mut topo, "tor", BIRD_CONFIG);
    let mut rib = RibConfig::new(65000, N2);
    rib.pools = vec![net("10.244.0.0/16")];
    let n2 = RibNode::start(
        &topo.ns("n2"),
        N2,
        rib,
        vec![(session(N2, N1, 65000, 65000), PeerSetup::new(PeerRole::Mesh, 65000))],
    );
    let mut lab = Lab { topo, ctl, config: agent_config(&dir, &db), n2 };

    let pid = lab.start_agent();
    lab.wait_routes(&BLOCKS, &[]);

    // SIGKILL: the sockets close without a NOTIFICATION.
    let killed = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
    lab.wait_stale(&BLOCKS);

    // Meanwhile the last block is released; n1 comes back owning two.
    let (kept, lost) = (&BLOCKS[..2], BLOCKS[2]);
    release(&db, net(lost));
    let pid = lab.start_agent();
    wait_until("n1 to come back at n2", UP, || (lab.n2.status(N1).state == State::Established).then_some(())).unwrap();
    lab.wait_routes(kept, &[lost]);
    for prefix in kept {
        // The kept blocks never left n2's best paths: one change only, from the first run.
        assert_eq!(lab.n2.changes(net(prefix)), vec![vec![IpAddr::from(N1)]], "{prefix}");
        assert!(lab.n2.paths(net(prefix)).iter().all(|p| !p.stale), "{prefix} is fresh again");
    }
    wait_until("BIRD's restart helper to finish", UP, || {
        (!bird_restart_active(&lab.topo, &lab.ctl) && bird_established(&lab.topo, &lab.ctl)).then_some(())
    })
    .unwrap();
    // The restarted agent said so: Restart State and Forwarding State bits.
    let negotiated = lab.n2.status(N1).negotiated.expect("negotiated");
    let (_, families) = negotiated.peer_graceful_restart.expect("n1 offers graceful restart");
    assert!(!families.is_empty() && families.iter().all(|f| f.flags & 0x80 != 0), "forwarding preserved: {families:?}");

    // SIGTERM: the agent abandons its sessions; the peers keep its routes.
    let exit = lab.topo.terminate(pid, Duration::from_secs(20)).expect("the agent stops on SIGTERM");
    assert!(exit.success(), "{exit:?}");
    lab.wait_stale(kept);
}
