//! The RIB end to end in network namespaces: three tortie speakers (a
//! Speaker and a Rib in-process, one namespace each) in an iBGP full mesh,
//! with BIRD top-of-rack routers on a shared LAN (bridge in namespace `sw`):
//!
//! ```text
//!  n1 192.0.2.11 ─┐
//!  n2 192.0.2.12 ─┤
//!  n3 192.0.2.13 ─┼─ br0 (sw)      tortie: AS 65000, pool 10.244.0.0/16
//!  tor1 192.0.2.1 ┤                BIRD:   AS 65100, both announce 172.16.0.0/24
//!  tor2 192.0.2.2 ┘                (tor1 peers with every node, tor2 with n1)
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnetwork::IpNetwork;
use tokio::sync::mpsc;
use tortie::bgp::rib::{PeerRole, PeerSetup, Policy, Rib, RibConfig, RibSnapshot};
use tortie::bgp::session::{PeerConfig, Speaker};
use tortie::netns::{NamespaceThread, Topology, spawn_in_namespace};
use tortie::testing::wait_until;

const UP: Duration = Duration::from_secs(60);

fn node_addr(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 10 + i)
}

fn block(i: u8) -> IpNetwork {
    format!("10.244.{i}.0/26").parse().unwrap()
}

enum Control {
    Originate(IpNetwork),
    Withdraw(IpNetwork),
    Snapshot(std::sync::mpsc::Sender<RibSnapshot>),
}

/// One tortie speaker with its RIB in a namespace; the latest best-path
/// state per prefix as the dataplane would see it.
struct Node {
    _thread: NamespaceThread,
    control: mpsc::Sender<Control>,
    best: Arc<Mutex<BTreeMap<IpNetwork, Vec<IpAddr>>>>,
}

fn session(me: Ipv4Addr, peer: Ipv4Addr, peer_as: u32) -> PeerConfig {
    let mut c = PeerConfig::new(peer.into(), peer_as, 65000, me);
    c.local_addr = Some(me.into());
    c.hold_time = 9;
    c.connect_retry = Duration::from_secs(1);
    c.idle_hold = Duration::from_millis(200);
    c
}

impl Node {
    /// Node `i` with mesh peers `mesh` and BIRD peers `tors` (AS 65100).
    fn start(topo: &Topology, i: u8, mesh: Vec<u8>, tors: Vec<Ipv4Addr>) -> Node {
        let me = node_addr(i);
        let best = Arc::new(Mutex::new(BTreeMap::new()));
        let (control, mut control_rx) = mpsc::channel(16);
        let best_out = best.clone();
        let thread = spawn_in_namespace(&topo.ns(&format!("n{i}")), move |mut stop| async move {
            let (tx, rx) = mpsc::channel(1024);
            let mut speaker = Speaker::new(Some((IpAddr::from(me), 179).into()), tx).expect("listen");
            let mut config = RibConfig::new(65000, me);
            config.pools = vec!["10.244.0.0/16".parse().unwrap()];
            let (rib, mut changes) = Rib::spawn(config, rx);
            let peers = mesh.iter().map(|&j| (node_addr(j), 65000, PeerSetup::new(PeerRole::Mesh, 65000))).chain(
                tors.iter().map(|&tor| {
                    let mut setup = PeerSetup::new(PeerRole::External, 65100);
                    setup.import = Some(Policy::accept_all());
                    (tor, 65100, setup)
                }),
            );
            for (addr, peer_as, setup) in peers {
                speaker.add_peer(session(me, addr, peer_as)).await.expect("peer added");
                rib.add_peer(addr.into(), setup, speaker.outbound(addr.into()).unwrap()).await;
            }
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    Some(batch) = changes.recv() => {
                        let mut best = best_out.lock().unwrap();
                        for change in batch {
                            best.insert(change.prefix, change.next_hops.to_vec());
                        }
                    }
                    Some(control) = control_rx.recv() => match control {
                        Control::Originate(net) => rib.originate(net).await,
                        Control::Withdraw(net) => rib.withdraw(net).await,
                        Control::Snapshot(reply) => {
                            let _ = reply.send(rib.snapshot().await);
                        }
                    },
                }
            }
        })
        .expect("a thread in the namespace");
        Node { _thread: thread, control, best }
    }

    fn originate(&self, net: IpNetwork) {
        self.control.blocking_send(Control::Originate(net)).unwrap();
    }

    fn withdraw(&self, net: IpNetwork) {
        self.control.blocking_send(Control::Withdraw(net)).unwrap();
    }

    fn snapshot(&self) -> RibSnapshot {
        let (tx, rx) = std::sync::mpsc::channel();
        self.control.blocking_send(Control::Snapshot(tx)).unwrap();
        rx.recv().unwrap()
    }

    /// Waits until the best-path set of `net` is `hops` (empty: no route).
    fn wait_best(&self, net: IpNetwork, hops: &[Ipv4Addr]) {
        let want: Vec<IpAddr> = hops.iter().map(|&h| h.into()).collect();
        wait_until(&format!("{net} via {want:?}"), UP, || {
            let best = self.best.lock().unwrap();
            let mut got = best.get(&net).cloned().unwrap_or_default();
            got.sort();
            (got == want).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}; snapshot: {:#?}", self.snapshot().routes));
    }
}

fn lan(label: &str) -> Topology {
    let mut topo = Topology::new(label).unwrap();
    topo.add_namespace("sw").unwrap();
    topo.add_bridge("sw", "br0").unwrap();
    let members = [
        ("n1", "192.0.2.11/24"),
        ("n2", "192.0.2.12/24"),
        ("n3", "192.0.2.13/24"),
        ("tor1", "192.0.2.1/24"),
        ("tor2", "192.0.2.2/24"),
    ];
    for (i, (name, addr)) in members.iter().enumerate() {
        topo.add_namespace(name).unwrap();
        let port = format!("p{i}");
        topo.add_veth((name, "eth0", Some(addr)), ("sw", &port, None)).unwrap();
        topo.exec("sw", &["ip", "link", "set", &port, "master", "br0"]).unwrap();
    }
    topo
}

fn start_bird(topo: &mut Topology, name: &str, me: Ipv4Addr, nodes: &[u8]) -> PathBuf {
    let dir = topo.dir().to_path_buf();
    let ctl = dir.join(format!("{name}.ctl"));
    let conf = dir.join(format!("{name}.conf"));
    let peers: String = nodes
        .iter()
        .map(|&i| {
            format!(
                "protocol bgp n{i} {{ local {me} as 65100; neighbor {} as 65000; hold time 9; connect retry time 1; \
                 error wait time 1, 2; ipv4 {{ import all; export all; }}; }}\n",
                node_addr(i)
            )
        })
        .collect();
    std::fs::write(
        &conf,
        format!(
            "router id {me};\nprotocol device {{}}\nprotocol static s4 {{ ipv4; route 172.16.0.0/24 blackhole; }}\n{peers}"
        ),
    )
    .unwrap();
    topo.spawn(name, &["bird", "-f", "-c", conf.to_str().unwrap(), "-s", ctl.to_str().unwrap()]).unwrap();
    ctl
}

fn birdc(topo: &Topology, name: &str, ctl: &std::path::Path, args: &[&str]) -> String {
    let mut argv = vec!["birdc", "-s", ctl.to_str().unwrap()];
    argv.extend_from_slice(args);
    topo.exec(name, &argv).map(|out| String::from_utf8_lossy(&out.stdout).into_owned()).unwrap_or_default()
}

#[test]
fn a_full_mesh_with_two_tors_learns_blocks_withdraws_and_uses_ecmp() {
    let mut topo = lan("ribmesh");
    let tor1 = Ipv4Addr::new(192, 0, 2, 1);
    let tor2 = Ipv4Addr::new(192, 0, 2, 2);
    let ctl1 = start_bird(&mut topo, "tor1", tor1, &[1, 2, 3]);
    let _ctl2 = start_bird(&mut topo, "tor2", tor2, &[1]);
    let nodes = [
        Node::start(&topo, 1, vec![2, 3], vec![tor1, tor2]),
        Node::start(&topo, 2, vec![1, 3], vec![tor1]),
        Node::start(&topo, 3, vec![1, 2], vec![tor1]),
    ];
    for (i, node) in (1u8..).zip(&nodes) {
        node.originate(block(i));
    }
    // Every node learns every other node's block, next hop the owner.
    for (i, node) in (1u8..).zip(&nodes) {
        for j in (1u8..=3).filter(|j| *j != i) {
            node.wait_best(block(j), &[node_addr(j)]);
        }
    }
    // The ToR learns all three blocks from the nodes themselves.
    for i in 1u8..=3 {
        let prefix = block(i).to_string();
        wait_until(&format!("tor1 to have {prefix}"), UP, || {
            birdc(&topo, "tor1", &ctl1, &["show", "route", &prefix]).contains(&prefix).then_some(())
        })
        .unwrap();
    }
    // ECMP: n1 hears 172.16.0.0/24 from both ToRs; n2 from tor1 only.
    let external: IpNetwork = "172.16.0.0/24".parse().unwrap();
    nodes[0].wait_best(external, &[tor1, tor2]);
    nodes[1].wait_best(external, &[tor1]);
    let snapshot = nodes[0].snapshot();
    let paths: Vec<_> = snapshot.routes.iter().filter(|r| r.prefix == external).collect();
    assert!(paths.iter().filter(|r| r.multipath).count() == 2, "{paths:#?}");
    // Nothing outside the pools goes to the ToR: it never hears 172.16.0.0/24 back.
    let back = birdc(&topo, "tor1", &ctl1, &["show", "route", "172.16.0.0/24", "all"]);
    assert!(!back.contains("BGP.as_path: 65000"), "{back}");
    // A withdrawal reaches the other nodes and the ToR.
    nodes[1].withdraw(block(2));
    nodes[0].wait_best(block(2), &[]);
    nodes[2].wait_best(block(2), &[]);
    let prefix = block(2).to_string();
    wait_until("tor1 to lose the block", UP, || {
        (!birdc(&topo, "tor1", &ctl1, &["show", "route", &prefix]).contains(&prefix)).then_some(())
    })
    .unwrap();
}
