use super::*;
use crate::remote_routes::encap::{EncapKind, Encapsulation, PoolEncap, RemoteNode};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

const TUNL: u32 = 99;
const VXLAN: u32 = 98;
const VXLAN6: u32 = 97;
const UNDERLAY: u32 = 2;

/// An encapsulation that records what it was told. `needs_vtep`: like
/// VXLAN, it routes only toward nodes with a published tunnel address.
struct Fake {
    ifindex: u32,
    path: PathKind,
    kind: RouteKind,
    needs_vtep: bool,
    peers: Mutex<Vec<(IpNetwork, IpAddr)>>,
}

impl Fake {
    fn ipip() -> Arc<Fake> {
        Arc::new(Fake {
            ifindex: TUNL,
            path: PathKind::Ipip,
            kind: RouteKind::RemoteIpip,
            needs_vtep: false,
            peers: Mutex::default(),
        })
    }
    fn vxlan(ifindex: u32) -> Arc<Fake> {
        Arc::new(Fake {
            ifindex,
            path: PathKind::Vxlan,
            kind: RouteKind::RemoteVxlan,
            needs_vtep: true,
            peers: Mutex::default(),
        })
    }
}

impl Encapsulation for Fake {
    fn path(&self) -> PathKind {
        self.path
    }
    fn route_kind(&self) -> RouteKind {
        self.kind
    }
    fn target(&self, node: IpAddr, remote: Option<&RemoteNode>) -> Option<RouteTarget> {
        let gateway = if self.needs_vtep { remote?.vxlan_tunnel? } else { node };
        Some(RouteTarget::Via(NextHop { gateway, ifindex: Some(self.ifindex), onlink: true }))
    }
    fn set_peers(&self, tunnelled: &[(IpNetwork, IpAddr)], _senders: &[IpAddr], _remotes: &RemoteNodes) {
        *self.peers.lock().unwrap() = tunnelled.to_vec();
    }
}

fn config(ipip: bool) -> StageConfig {
    let mut encaps = Encapsulations::default();
    if ipip {
        encaps.set(EncapKind::Ipip, false, Fake::ipip());
    }
    StageConfig {
        local_v4: "10.0.0.5/24".parse().unwrap(),
        local_v6: Some("fd00::5/64".parse().unwrap()),
        underlay_ifindex: UNDERLAY,
        encaps,
    }
}

fn block(node: &str, kind: EncapKind, mode: EncapMode) -> Option<Remote> {
    let encap = (mode != EncapMode::Never).then_some(PoolEncap { kind, mode });
    Some(Remote::Block { node: node.parse().unwrap(), encap })
}

fn ipip(node: &str, mode: EncapMode) -> Option<Remote> {
    block(node, EncapKind::Ipip, mode)
}

struct Fixture {
    config: StageConfig,
    alive: HashMap<Ipv4Addr, bool>,
    remotes: RemoteNodes,
    stage: Stage,
}

impl Fixture {
    fn new(config: StageConfig) -> Fixture {
        Fixture { config, alive: HashMap::new(), remotes: RemoteNodes::new(), stage: Stage::default() }
    }
    fn view(&self) -> View<'_> {
        View { config: &self.config, alive: &self.alive, remotes: &self.remotes }
    }
    fn apply(&mut self, changes: Vec<(&str, Option<Remote>)>) -> Turn {
        let mut turn = Turn::default();
        let view = View { config: &self.config, alive: &self.alive, remotes: &self.remotes };
        for (dst, r) in changes {
            self.stage.apply(&view, dst.parse().unwrap(), r, &mut turn);
        }
        turn
    }
    /// The verdicts become `now`: the moved nodes' blocks are re-routed.
    fn verdicts(&mut self, now: HashMap<Ipv4Addr, bool>) -> Turn {
        let mut turn = Turn::default();
        let after = View { config: &self.config, alive: &now, remotes: &self.remotes };
        let moved = self.stage.moved(&self.view(), &after);
        self.stage.reroute(&after, &moved, &mut turn);
        self.alive = now;
        turn
    }
    fn remotes(&mut self, now: RemoteNodes) -> Turn {
        let mut turn = Turn::default();
        let after = View { config: &self.config, alive: &self.alive, remotes: &now };
        let moved = self.stage.moved(&self.view(), &after);
        self.stage.reroute(&after, &moved, &mut turn);
        self.remotes = now;
        turn
    }
}

/// (prefix, kind, "gateway dev ifindex") per route of the turn, sorted; `None` for a removal.
fn routes(turn: &Turn) -> Vec<(String, Option<(RouteKind, String)>)> {
    let mut r: Vec<_> = turn
        .routes
        .iter()
        .map(|(dst, r)| {
            let r = r.as_ref().map(|d| {
                let via = match &d.route.target {
                    RouteTarget::Via(h) => format!("{} dev {:?}", h.gateway, h.ifindex),
                    other => format!("{other:?}"),
                };
                (d.kind, via)
            });
            (dst.to_string(), r)
        })
        .collect();
    r.sort();
    r
}

fn direct(gw: &str) -> Option<(RouteKind, String)> {
    Some((RouteKind::RemoteDirect, format!("{gw} dev Some({UNDERLAY})")))
}

fn tunnel(gw: &str) -> Option<(RouteKind, String)> {
    Some((RouteKind::RemoteIpip, format!("{gw} dev Some({TUNL})")))
}

fn vxlan(gw: &str, ifindex: u32) -> Option<(RouteKind, String)> {
    Some((RouteKind::RemoteVxlan, format!("{gw} dev Some({ifindex})")))
}

fn addr(a: &str) -> IpAddr {
    a.parse().unwrap()
}

#[test]
fn never_blocks_go_direct_and_blocks_without_an_encapsulation_leave_no_state() {
    let mut f = Fixture::new(config(true));
    let hops: Addrs = [addr("10.0.0.1")].into_iter().collect();
    let turn = f.apply(vec![
        ("10.244.1.0/26", ipip("10.0.0.6", EncapMode::Never)),
        ("192.0.2.0/24", Some(Remote::Direct(hops))),
    ]);
    assert_eq!(
        routes(&turn),
        [
            ("10.244.1.0/26".into(), direct("10.0.0.6")),
            ("192.0.2.0/24".into(), Some((RouteKind::RemoteDirect, "10.0.0.1 dev None".into()))),
        ]
    );
    assert!(f.stage.blocks.map.is_empty());
    // The node may send to us from now on (its side may encapsulate) ...
    assert!(turn.peers_changed, "a new node for the encapsulations");
    assert!(f.stage.blocks.seen.contains(&addr("10.0.0.6")));
    // ... and another of its blocks changes nothing there.
    let turn = f.apply(vec![("10.244.3.0/26", ipip("10.0.0.6", EncapMode::Never))]);
    assert!(!turn.peers_changed, "nothing to publish");
    assert!(f.stage.blocks.map.is_empty(), "still no per-prefix state");

    // Without the encapsulation even Always blocks have one possible path.
    let mut f = Fixture::new(config(false));
    let turn = f.apply(vec![("10.244.2.0/26", ipip("10.9.0.7", EncapMode::Always))]);
    assert_eq!(routes(&turn), [("10.244.2.0/26".into(), direct("10.9.0.7"))]);
    assert!(f.stage.blocks.map.is_empty());
}

#[test]
fn a_cross_subnet_block_is_encapsulated_on_a_dead_verdict_and_back() {
    let mut f = Fixture::new(config(true));
    let turn = f.apply(vec![
        ("10.244.1.0/26", ipip("10.0.0.6", EncapMode::CrossSubnet)),
        ("10.244.1.64/26", ipip("10.0.0.6", EncapMode::CrossSubnet)),
        ("10.244.2.0/26", ipip("10.0.0.7", EncapMode::CrossSubnet)),
        ("10.244.3.0/26", ipip("10.0.0.6", EncapMode::Always)),
        ("10.244.4.0/26", ipip("10.9.0.8", EncapMode::CrossSubnet)),
    ]);
    assert_eq!(
        routes(&turn),
        [
            ("10.244.1.0/26".into(), direct("10.0.0.6")),
            ("10.244.1.64/26".into(), direct("10.0.0.6")),
            ("10.244.2.0/26".into(), direct("10.0.0.7")),
            ("10.244.3.0/26".into(), tunnel("10.0.0.6")),
            ("10.244.4.0/26".into(), tunnel("10.9.0.8")),
        ]
    );
    assert_eq!(f.stage.blocks.map.len(), 5);

    // 10.0.0.6's direct path dies: its blocks are re-routed, the CrossSubnet ones moved.
    let turn = f.verdicts([("10.0.0.6".parse().unwrap(), false)].into());
    let moved = routes(&turn);
    assert!(moved.contains(&("10.244.1.0/26".into(), tunnel("10.0.0.6"))), "{moved:?}");
    assert!(moved.contains(&("10.244.1.64/26".into(), tunnel("10.0.0.6"))), "{moved:?}");
    assert!(moved.iter().all(|(dst, _)| dst.starts_with("10.244.1.") || dst.starts_with("10.244.3.")), "{moved:?}");
    assert!(turn.peers_changed);

    // A verdict that moves no path costs nothing.
    let turn = f.verdicts([("10.0.0.6".parse().unwrap(), false), ("10.0.0.7".parse().unwrap(), true)].into());
    assert!(turn.routes.is_empty() && !turn.peers_changed);

    // It answers again: back to direct.
    let turn = f.verdicts([("10.0.0.6".parse().unwrap(), true)].into());
    let moved = routes(&turn);
    assert!(moved.contains(&("10.244.1.0/26".into(), direct("10.0.0.6"))), "{moved:?}");
}

#[test]
fn a_host_route_node_address_is_never_in_the_same_subnet() {
    // Calico #1584: without the prefix length every peer looks remote.
    let mut c = config(true);
    c.local_v4 = "10.0.0.5/32".parse().unwrap();
    let mut f = Fixture::new(c);
    let turn = f.apply(vec![("10.244.1.0/26", ipip("10.0.0.6", EncapMode::CrossSubnet))]);
    assert_eq!(routes(&turn), [("10.244.1.0/26".into(), tunnel("10.0.0.6"))]);
}

#[test]
fn a_block_whose_pool_turns_never_loses_its_state_and_is_replaced_not_deleted() {
    let mut f = Fixture::new(config(true));
    f.alive = [("10.0.0.6".parse().unwrap(), false)].into();
    let turn = f.apply(vec![("10.244.1.0/26", ipip("10.0.0.6", EncapMode::CrossSubnet))]);
    assert_eq!(routes(&turn), [("10.244.1.0/26".into(), tunnel("10.0.0.6"))]);

    // The same set again (the source resending everything): nothing to do.
    let turn = f.apply(vec![("10.244.1.0/26", ipip("10.0.0.6", EncapMode::CrossSubnet))]);
    assert!(turn.routes.is_empty() && !turn.peers_changed);

    let turn = f.apply(vec![("10.244.1.0/26", ipip("10.0.0.6", EncapMode::Never))]);
    assert_eq!(routes(&turn), [("10.244.1.0/26".into(), direct("10.0.0.6"))], "replaced by the direct route");
    assert!(turn.peers_changed, "the node's path is republished");
    assert!(f.stage.blocks.map.is_empty() && f.stage.blocks.nodes.iter().all(|n| n.is_empty()));
}

#[test]
fn a_withdrawn_or_ecmp_block_frees_its_state() {
    let mut f = Fixture::new(config(true));
    f.apply(vec![
        ("10.244.1.0/26", ipip("10.0.0.6", EncapMode::Always)),
        ("10.244.2.0/26", ipip("10.0.0.7", EncapMode::CrossSubnet)),
    ]);
    let turn = f.apply(vec![("10.244.1.0/26", None)]);
    assert_eq!(routes(&turn), [("10.244.1.0/26".into(), None)]);
    assert!(turn.peers_changed);

    let hops: Addrs = [addr("10.0.0.7"), addr("10.0.0.8")].into_iter().collect();
    let turn = f.apply(vec![("10.244.2.0/26", Some(Remote::Direct(hops)))]);
    assert!(matches!(turn.routes[0].1.as_ref().unwrap().route.target, RouteTarget::Multipath(_)));
    assert!(f.stage.blocks.map.is_empty() && f.stage.blocks.nodes.iter().all(|n| n.is_empty()));

    // Withdrawing what was never kept still reaches the programmer.
    let turn = f.apply(vec![("192.0.2.0/24", None)]);
    assert_eq!(routes(&turn), [("192.0.2.0/24".into(), None)]);
    assert!(!turn.peers_changed);
}

#[test]
fn a_vxlan_block_waits_for_its_nodes_vtep_then_goes_through_vxlan() {
    let mut c = config(true);
    let vx = Fake::vxlan(VXLAN);
    c.encaps.set(EncapKind::Vxlan, false, vx.clone());
    let mut f = Fixture::new(c);
    let turn = f.apply(vec![
        ("10.245.1.0/26", block("10.9.0.6", EncapKind::Vxlan, EncapMode::Always)),
        ("10.244.1.0/26", ipip("10.9.0.6", EncapMode::Always)),
    ]);
    assert_eq!(
        routes(&turn),
        [("10.244.1.0/26".into(), tunnel("10.9.0.6")), ("10.245.1.0/26".into(), None)],
        "one pool per encapsulation; no VTEP yet, and no direct route reaches another subnet"
    );
    // In our subnet a node without a VTEP is reached directly meanwhile.
    let turn = f.apply(vec![("10.245.2.0/26", block("10.0.0.7", EncapKind::Vxlan, EncapMode::Always))]);
    assert_eq!(routes(&turn), [("10.245.2.0/26".into(), direct("10.0.0.7"))]);
    let node = RemoteNode { vxlan_tunnel: Some(addr("10.245.1.0")), vxlan_mac: Some([2, 0, 0, 0, 0, 6]) };
    let turn = f.remotes([(addr("10.9.0.6"), node)].into());
    let r = routes(&turn);
    assert!(r.contains(&("10.245.1.0/26".into(), vxlan("10.245.1.0", VXLAN))), "{r:?}");
    assert!(turn.peers_changed);
    f.stage.set_peers(&f.view());
    assert_eq!(*vx.peers.lock().unwrap(), [("10.245.1.0/26".parse().unwrap(), addr("10.9.0.6"))]);
}

#[test]
fn ipv6_blocks_take_the_ipv6_vxlan_device_and_cross_subnet_reads_the_ipv6_prefix() {
    let mut c = config(false);
    c.encaps.set(EncapKind::Vxlan, true, Fake::vxlan(VXLAN6));
    let mut f = Fixture::new(c);
    f.remotes = [
        (addr("fd00::6"), RemoteNode { vxlan_tunnel: Some(addr("fd00:245::1")), vxlan_mac: None }),
        (addr("fd01::7"), RemoteNode { vxlan_tunnel: Some(addr("fd00:245:0:1::1")), vxlan_mac: None }),
    ]
    .into();
    let turn = f.apply(vec![
        ("fd00:245::/122", block("fd00::6", EncapKind::Vxlan, EncapMode::CrossSubnet)),
        ("fd00:245:0:1::/122", block("fd01::7", EncapKind::Vxlan, EncapMode::CrossSubnet)),
        ("10.245.1.0/26", block("10.0.0.6", EncapKind::Vxlan, EncapMode::Always)),
    ]);
    assert_eq!(
        routes(&turn),
        [
            ("10.245.1.0/26".into(), direct("10.0.0.6")),
            ("fd00:245:0:1::/122".into(), vxlan("fd00:245:0:1::1", VXLAN6)),
            ("fd00:245::/122".into(), Some((RouteKind::RemoteDirect, "fd00::6 dev None".into()))),
        ],
        "no IPv4 VXLAN device on this node; fd00::6 shares our /64"
    );
}

/// A running stage with a fake programmer, and the ends of its channels.
struct Harness {
    sink: FakeSink,
    pools: watch::Sender<Vec<IpPool>>,
    verdicts: watch::Sender<HashMap<Ipv4Addr, bool>>,
    paths: watch::Receiver<HashMap<IpAddr, PathKind>>,
    targets: watch::Receiver<Vec<Ipv4Addr>>,
    generation: watch::Receiver<u64>,
    _keep: (watch::Sender<LocalPrefixes>, watch::Sender<Option<RemoteNodes>>, watch::Sender<bool>),
}

/// A source whose routes are fixed: nothing to send again.
struct NoSource;

impl LearnedSource for NoSource {
    async fn resend_learned(&self) {}
}

/// Starts the stage (with IP-in-IP) on `learned` from `source` under `pools`.
fn spawn_stage<L: LearnedSource>(
    learned: mpsc::Receiver<Vec<BestPathChange>>,
    source: L,
    pools: Vec<IpPool>,
) -> Harness {
    let sink = FakeSink::default();
    let (pools_tx, pools) = watch::channel(pools);
    let (local_tx, local) = watch::channel(LocalPrefixes::default());
    let (remotes_tx, remotes) = watch::channel(None);
    let (verdicts_tx, verdicts) = watch::channel(HashMap::new());
    let (stop_tx, stop) = watch::channel(false);
    let (paths, paths_rx) = watch::channel(HashMap::new());
    let (targets, targets_rx) = watch::channel(Vec::new());
    let (generation, generation_rx) = watch::channel(0);
    let inputs = StageInputs { learned, source, pools, local, remotes, verdicts, stop };
    let outputs = StageOutputs { paths, targets, generation, holding: watch::channel(false).0, latency: None };
    tokio::spawn(run(config(true), sink.clone(), inputs, outputs));
    Harness {
        sink,
        pools: pools_tx,
        verdicts: verdicts_tx,
        paths: paths_rx,
        targets: targets_rx,
        generation: generation_rx,
        _keep: (local_tx, remotes_tx, stop_tx),
    }
}

#[tokio::test]
async fn a_pool_change_asks_the_source_for_everything_again_and_reclassifies_it() {
    #[derive(Clone)]
    struct Source {
        learned: Vec<BestPathChange>,
        changes: mpsc::Sender<Vec<BestPathChange>>,
        resends: Arc<std::sync::atomic::AtomicUsize>,
    }
    impl LearnedSource for Source {
        async fn resend_learned(&self) {
            self.resends.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.changes.send(self.learned.clone()).await.unwrap();
        }
    }
    let change = |p: &str, hop: &str| BestPathChange {
        prefix: p.parse().unwrap(),
        next_hops: [addr(hop)].into_iter().collect(),
        peers: [addr(hop)].into_iter().collect(),
    };
    let learned = vec![change("10.244.1.0/26", "10.9.0.2"), change("192.0.2.0/24", "10.0.0.1")];
    let (changes_tx, changes_rx) = mpsc::channel(16);
    let source = Source { learned: learned.clone(), changes: changes_tx.clone(), resends: Default::default() };
    let resends = source.resends.clone();
    let pool = |mode| {
        let mut p = IpPool::new("10.244.0.0/16".parse().unwrap());
        p.ipip_mode = mode;
        p
    };
    let h = spawn_stage(changes_rx, source, vec![pool(EncapMode::Always)]);
    let (sink, pools_tx, paths_rx, generation_rx) = (&h.sink, &h.pools, h.paths.clone(), &h.generation);

    changes_tx.send(learned).await.unwrap();
    sent_at_least(sink, 2).await;
    assert_eq!(*paths_rx.borrow(), HashMap::from([(addr("10.9.0.2"), PathKind::Ipip)]));
    assert!(*generation_rx.borrow() >= 1, "turns are counted");
    assert_eq!(sink.kinds_of("10.244.1.0/26"), [RouteKind::RemoteIpip]);

    // The pool turns Never: the stage has no copy, so it asks the source
    // for every learned set, and each comes back under the new mode.
    pools_tx.send_replace(vec![pool(EncapMode::Never)]);
    sent_at_least(sink, 4).await;
    assert_eq!(resends.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(sink.kinds_of("10.244.1.0/26"), [RouteKind::RemoteIpip, RouteKind::RemoteDirect]);
    let mut paths_rx = paths_rx;
    tokio::time::timeout(Duration::from_secs(5), paths_rx.wait_for(|p| p.is_empty())).await.unwrap().unwrap();

    // The same pools again (a resync listing): nothing is asked for.
    pools_tx.send_replace(vec![pool(EncapMode::Never)]);
    changes_tx.send(vec![change("10.244.1.0/26", "10.9.0.2")]).await.unwrap();
    changes_tx
        .send(vec![BestPathChange { next_hops: Addrs::new(), ..change("10.244.1.0/26", "10.9.0.2") }])
        .await
        .unwrap();
    sent_at_least(sink, 6).await;
    assert_eq!(resends.load(std::sync::atomic::Ordering::SeqCst), 1);
}

type Changes = Vec<(IpNetwork, Option<DesiredRoute>)>;

/// Records the routes of each `update_kinds`; `applied` waits for a permit.
#[derive(Clone)]
struct FakeSink {
    sent: Arc<Mutex<Vec<Changes>>>,
    permits: Arc<Semaphore>,
}

impl Default for FakeSink {
    fn default() -> Self {
        FakeSink { sent: Arc::default(), permits: Arc::new(Semaphore::new(0)) }
    }
}

impl FakeSink {
    fn counts(&self) -> Vec<usize> {
        self.sent.lock().unwrap().iter().map(Vec::len).collect()
    }
    /// The kinds `dst` was sent with, in order.
    fn kinds_of(&self, dst: &str) -> Vec<RouteKind> {
        let dst: IpNetwork = dst.parse().unwrap();
        let sent = self.sent.lock().unwrap();
        sent.iter().flatten().filter(|(d, _)| *d == dst).filter_map(|(_, r)| r.as_ref().map(|r| r.kind)).collect()
    }
}

impl RouteSink for FakeSink {
    async fn update_kinds(&self, _kinds: Vec<RouteKind>, changes: Vec<(IpNetwork, Option<DesiredRoute>)>) {
        self.sent.lock().unwrap().push(changes);
    }
    async fn applied(&self) {
        self.permits.acquire().await.unwrap().forget();
    }
}

fn direct_batch(from: u32, n: u32) -> Vec<BestPathChange> {
    (from..from + n)
        .map(|i| BestPathChange {
            prefix: IpNetwork::V4(Ipv4Network::new(Ipv4Addr::from(0x6440_0000 + i), 32).unwrap()),
            next_hops: [addr("10.0.0.1")].into_iter().collect(),
            peers: [addr("10.0.0.1")].into_iter().collect(),
        })
        .collect()
}

/// The route counts of every `update_kinds` once at least `total` routes went (polled, with a deadline).
async fn sent_at_least(sink: &FakeSink, total: usize) -> Vec<usize> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let sent = sink.counts();
        if sent.iter().sum::<usize>() >= total || tokio::time::Instant::now() > deadline {
            return sent;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The route counts after a moment: only for checking that nothing more
/// goes (there is no event to wait for when something is held back).
async fn sent_after_a_while(sink: &FakeSink) -> Vec<usize> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    sink.counts()
}

#[tokio::test]
async fn the_stage_waits_for_the_programmer_once_two_chunks_are_unconfirmed() {
    use super::super::outbox::{ACK_EVERY, IN_FLIGHT_ROUTES};
    let (tx, learned) = mpsc::channel(4);
    let h = spawn_stage(learned, NoSource, Vec::new());
    let (sink, paths_rx) = (&h.sink, &h.paths);

    // Small turns go on without confirmation.
    tx.send(direct_batch(0, 10)).await.unwrap();
    tx.send(direct_batch(10, 10)).await.unwrap();
    let sent = sent_at_least(sink, 20).await;
    assert_eq!(sent.iter().sum::<usize>(), 20, "{sent:?}");

    // Larger ones ask for confirmation each; the budget is in routes, so
    // three requests open hold nothing back.
    let mut total = 20;
    for k in 0..3 {
        tx.send(direct_batch(1000 + k * 10_000, ACK_EVERY as u32 + 1000)).await.unwrap();
        total += ACK_EVERY + 1000;
        assert_eq!(sent_at_least(sink, total).await.iter().sum::<usize>(), total, "request {k} open");
    }
    // They go on until the open requests cover two chunks' worth...
    let half = (IN_FLIGHT_ROUTES / 2) as u32;
    for k in 0..2 {
        tx.send(direct_batch(100_000 + k * 100_000, half)).await.unwrap();
        total += half as usize;
        assert_eq!(sent_at_least(sink, total).await.iter().sum::<usize>(), total);
    }
    // ...then nothing more until enough of the oldest are answered.
    tx.send(direct_batch(300_000, 7)).await.unwrap();
    assert_eq!(sent_after_a_while(sink).await.iter().sum::<usize>(), total, "held back");
    sink.permits.add_permits(1);
    assert_eq!(sent_after_a_while(sink).await.iter().sum::<usize>(), total, "still over the budget");
    sink.permits.add_permits(3);
    total += 7;
    assert_eq!(sent_at_least(sink, total).await.iter().sum::<usize>(), total);

    // A turn beyond TURN_MAX goes out in pieces, each waiting its turn:
    // the first brings the open requests to two chunks again.
    tx.send(direct_batch(400_000, TURN_MAX as u32 + 1000)).await.unwrap();
    let sent = sent_after_a_while(sink).await;
    assert!(sent.iter().all(|n| *n <= TURN_MAX), "{sent:?}");
    sink.permits.add_permits(8);
    total += TURN_MAX + 1000;
    assert_eq!(sent_at_least(sink, total).await.iter().sum::<usize>(), total);
    assert!(paths_rx.borrow().is_empty(), "no node has blocks whose path can change");
}

#[tokio::test]
async fn only_nodes_with_blocks_whose_path_can_change_get_a_published_path_and_probe() {
    let (tx, learned) = mpsc::channel(4);
    let mut pool_a = IpPool::new("10.244.0.0/16".parse().unwrap());
    pool_a.ipip_mode = EncapMode::CrossSubnet;
    let pool_b = IpPool::new("10.246.0.0/16".parse().unwrap());
    let h = spawn_stage(learned, NoSource, vec![pool_a, pool_b]);
    let (mut paths_rx, mut targets_rx, verdicts_tx) = (h.paths.clone(), h.targets.clone(), &h.verdicts);
    let change = |p: &str, hop: &str| BestPathChange {
        prefix: p.parse().unwrap(),
        next_hops: [addr(hop)].into_iter().collect(),
        peers: [addr(hop)].into_iter().collect(),
    };
    tx.send(vec![
        change("10.244.1.0/26", "10.0.0.6"),
        change("10.244.2.0/26", "10.9.0.7"),
        change("10.246.3.0/26", "10.0.0.8"),
    ])
    .await
    .unwrap();
    let wait = Duration::from_secs(5);
    tokio::time::timeout(wait, paths_rx.wait_for(|p| p.len() == 2)).await.unwrap().unwrap();
    let want: HashMap<IpAddr, PathKind> =
        [(addr("10.0.0.6"), PathKind::Direct), (addr("10.9.0.7"), PathKind::Ipip)].into();
    assert_eq!(*paths_rx.borrow(), want, "10.0.0.8 (a pool that never encapsulates) is absent: reached directly");
    let targets = tokio::time::timeout(wait, targets_rx.wait_for(|t| !t.is_empty())).await.unwrap().unwrap().clone();
    assert_eq!(targets, ["10.0.0.6".parse::<Ipv4Addr>().unwrap()]);

    verdicts_tx.send_replace([("10.0.0.6".parse().unwrap(), false)].into());
    tokio::time::timeout(wait, paths_rx.wait_for(|p| p.get(&addr("10.0.0.6")) == Some(&PathKind::Ipip)))
        .await
        .unwrap()
        .unwrap();
}
