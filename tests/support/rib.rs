//! A tortie speaker with its RIB (Speaker + Rib in-process, in a namespace
//! thread), driven from the synchronous test thread. It keeps every
//! best-path change it reported, so a test can tell that a route never
//! disappeared, not only that it is there now.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnetwork::IpNetwork;
use tokio::sync::{mpsc, oneshot};
use tortie::bgp::rib::{BestPathChange, PeerSetup, Rib, RibConfig, RibSnapshot, RouteView};
use tortie::bgp::session::{PeerConfig, PeerStatus, Speaker, State};
use tortie::netns::{NamespaceThread, spawn_in_namespace};
use tortie::testing::wait_until;

enum Control {
    Originate(IpNetwork),
    Withdraw(IpNetwork),
    Snapshot(oneshot::Sender<RibSnapshot>),
    Status(IpAddr, oneshot::Sender<Option<PeerStatus>>),
    Abandon(oneshot::Sender<()>),
}

/// One speaker and RIB in a namespace.
pub struct RibNode {
    _thread: NamespaceThread,
    control: mpsc::Sender<Control>,
    history: Arc<Mutex<Vec<BestPathChange>>>,
}

/// Session settings for tests: short hold and retry times, bound to `me`.
pub fn session(me: Ipv4Addr, peer: Ipv4Addr, local_as: u32, peer_as: u32) -> PeerConfig {
    let mut c = PeerConfig::new(peer.into(), peer_as, local_as, me);
    c.local_addr = Some(me.into());
    c.hold_time = 9;
    c.connect_retry = Duration::from_secs(1);
    c.idle_hold = Duration::from_millis(200);
    c
}

impl RibNode {
    /// Starts a speaker listening on `me`:179 with `config` and `peers`.
    pub fn start(ns: &str, me: Ipv4Addr, config: RibConfig, peers: Vec<(PeerConfig, PeerSetup)>) -> RibNode {
        let history = Arc::new(Mutex::new(Vec::new()));
        let (control, mut control_rx) = mpsc::channel(16);
        let out = history.clone();
        let thread = spawn_in_namespace(ns, move |mut stop| async move {
            let (tx, rx) = mpsc::channel(1024);
            let mut speaker = Speaker::new(Some((IpAddr::from(me), 179).into()), tx).expect("listen");
            let (rib, mut changes) = Rib::spawn(config, rx);
            for (session, setup) in peers {
                let addr = session.remote_addr;
                speaker.add_peer(session).await.expect("peer added");
                rib.add_peer(addr, setup, speaker.outbound(addr).expect("its channel")).await;
            }
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    Some(batch) = changes.recv() => out.lock().unwrap().extend(batch),
                    Some(control) = control_rx.recv() => match control {
                        Control::Originate(net) => rib.originate(net).await,
                        Control::Withdraw(net) => rib.withdraw(net).await,
                        Control::Snapshot(reply) => {
                            let _ = reply.send(rib.snapshot().await);
                        }
                        Control::Status(addr, reply) => {
                            let _ = reply.send(speaker.status(addr).map(|s| s.borrow().clone()));
                        }
                        Control::Abandon(reply) => {
                            speaker.abandon_all().await;
                            let _ = reply.send(());
                        }
                    },
                }
            }
        })
        .expect("a thread in the namespace");
        RibNode { _thread: thread, control, history }
    }

    fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Control) -> T {
        let (tx, rx) = oneshot::channel();
        self.control.blocking_send(make(tx)).expect("the node runs");
        rx.blocking_recv().expect("an answer")
    }

    pub fn originate(&self, net: IpNetwork) {
        self.control.blocking_send(Control::Originate(net)).expect("the node runs");
    }

    pub fn withdraw(&self, net: IpNetwork) {
        self.control.blocking_send(Control::Withdraw(net)).expect("the node runs");
    }

    pub fn snapshot(&self) -> RibSnapshot {
        self.ask(Control::Snapshot)
    }

    /// The paths of `net` in the RIB.
    pub fn paths(&self, net: IpNetwork) -> Vec<RouteView> {
        self.snapshot().routes.into_iter().filter(|r| r.prefix == net).collect()
    }

    pub fn status(&self, peer: Ipv4Addr) -> PeerStatus {
        self.ask(|tx| Control::Status(peer.into(), tx)).expect("a configured peer")
    }

    pub fn wait_state(&self, peer: Ipv4Addr, state: State, timeout: Duration) -> PeerStatus {
        wait_until(&format!("session with {peer} {state:?}"), timeout, || {
            Some(self.status(peer)).filter(|s| s.state == state)
        })
        .unwrap()
    }

    /// Ends every session without a NOTIFICATION (the agent's stop path).
    pub fn abandon(&self) {
        self.ask(Control::Abandon)
    }

    /// The current learned next hops of `net` (empty: no learned route).
    pub fn best(&self, net: IpNetwork) -> Vec<IpAddr> {
        let history = self.history.lock().unwrap();
        let mut hops = history.iter().rev().find(|c| c.prefix == net).map(|c| c.next_hops.to_vec()).unwrap_or_default();
        hops.sort();
        hops
    }

    /// Every best-path change of `net` so far, oldest first.
    pub fn changes(&self, net: IpNetwork) -> Vec<Vec<IpAddr>> {
        self.history.lock().unwrap().iter().filter(|c| c.prefix == net).map(|c| c.next_hops.to_vec()).collect()
    }

    /// Waits until the learned next hops of `net` are `hops` (empty: none).
    pub fn wait_best(&self, net: IpNetwork, hops: &[Ipv4Addr], timeout: Duration) {
        let mut want: Vec<IpAddr> = hops.iter().map(|&h| h.into()).collect();
        want.sort();
        wait_until(&format!("{net} via {want:?}"), timeout, || (self.best(net) == want).then_some(()))
            .unwrap_or_else(|e| panic!("{e}; RIB: {:#?}", self.snapshot().routes));
    }
}

/// The addresses of a bridge LAN: `(namespace, address/len)` per member.
pub fn lan(topo: &mut tortie::netns::Topology, members: &[(&str, &str)]) {
    topo.add_namespace("sw").unwrap();
    topo.add_bridge("sw", "br0").unwrap();
    for (i, (name, addr)) in members.iter().enumerate() {
        topo.add_namespace(name).unwrap();
        let port = format!("p{i}");
        topo.add_veth((name, "eth0", Some(addr)), ("sw", &port, None)).unwrap();
        topo.exec("sw", &["ip", "link", "set", &port, "master", "br0"]).unwrap();
    }
}

/// Parses a prefix literal.
pub fn net(text: &str) -> IpNetwork {
    text.parse().unwrap()
}
