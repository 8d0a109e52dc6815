//! The agent's two route producers around the RIB:
//!
//! - **local prefixes**: the node's own IPAM blocks and the /32s it borrowed
//!   from other nodes' blocks are originated in BGP; its own blocks also get
//!   a blackhole route, so traffic to an unallocated address dies here
//!   instead of looping back to the default route (Calico does the same).
//! - **learned prefixes**: every best-path change from the RIB becomes either
//!   a pool block of another node, whose path (direct or IP-in-IP) the path
//!   selector chooses by the pool's `ipipMode`, or a plain direct route
//!   (prefixes outside the pools, or with several next hops: ECMP).
//!
//! Local prefixes are recomputed from the whole state on every event, so a
//! missed event is repaired by the next one or by the periodic resync.
//! Learned prefixes are passed on as changes: a table of a million routes
//! arrives in many bursts, and each burst costs only its own prefixes. The
//! follower keeps no copy of them: when the pools change, the RIB sends
//! every learned set again.

use crate::bgp::rib::{Addrs, BestPathChange};
use crate::config::IpipMode;
use crate::dataplane::{DesiredRoute, Programmer, Route, RouteKind, RouteTarget};
use crate::datastore::resources::{EncapMode, IpPool, IpamBlock};
use crate::datastore::{Datastore, WatchEvent};
use crate::fallback_ipip::selector::{Remote, RemoteBatch, RemoteBlock};
use ipnetwork::IpNetwork;
use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// How often the local prefixes are recomputed even without a datastore event.
const LOCAL_RESYNC: Duration = Duration::from_secs(30);

/// Where locally owned prefixes are announced (the RIB).
pub trait Originator: Send + Sync + 'static {
    fn originate(&self, prefix: IpNetwork) -> impl Future<Output = ()> + Send;
    fn withdraw(&self, prefix: IpNetwork) -> impl Future<Output = ()> + Send;
    /// Every local prefix is originated: End-of-RIB may go to the peers.
    fn loaded(&self) -> impl Future<Output = ()> + Send;
}

impl Originator for crate::bgp::rib::Rib {
    async fn originate(&self, prefix: IpNetwork) {
        crate::bgp::rib::Rib::originate(self, prefix).await
    }
    async fn withdraw(&self, prefix: IpNetwork) {
        crate::bgp::rib::Rib::withdraw(self, prefix).await
    }
    async fn loaded(&self) {
        crate::bgp::rib::Rib::local_prefixes_loaded(self).await
    }
}

/// Without BGP nothing is announced; blackholes are still written.
impl<O: Originator> Originator for Option<O> {
    async fn originate(&self, prefix: IpNetwork) {
        if let Some(o) = self {
            o.originate(prefix).await
        }
    }
    async fn withdraw(&self, prefix: IpNetwork) {
        if let Some(o) = self {
            o.withdraw(prefix).await
        }
    }
    async fn loaded(&self) {
        if let Some(o) = self {
            o.loaded().await
        }
    }
}

/// The longest the first reconcile waits for BGP (the graceful-restart time
/// peers give us is longer; kernel routes stay until then anyway).
const INITIAL_SYNC_MAX: Duration = Duration::from_secs(30);
/// Learned routes unchanged this long after every peer is up: the tables are in.
const INITIAL_QUIET: Duration = Duration::from_secs(2);

/// Completes the route programmer's first full reconcile — which deletes
/// routes of ours nobody wants any more — only once BGP has settled (see
/// [`bgp_settled`]), or after [`INITIAL_SYNC_MAX`]. After a restart the
/// routes of the previous run stay in the kernel until then, so pod traffic
/// does not stop while the tables are relearned.
pub async fn initial_sync(
    programmer: Programmer,
    peers: watch::Receiver<Vec<crate::api::PeerStatus>>,
    peer_set_known: watch::Receiver<bool>,
    learned: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let settled = tokio::select! {
        _ = stop.changed() => return,
        r = tokio::time::timeout(INITIAL_SYNC_MAX, bgp_settled(peers, peer_set_known, learned)) => r.is_ok(),
    };
    programmer.flush().await;
    if settled {
        tracing::info!(subsys = "dataplane", "first full route reconcile done: BGP settled");
    } else {
        tracing::info!(
            subsys = "dataplane",
            waited_s = INITIAL_SYNC_MAX.as_secs(),
            "first full route reconcile done: not every peer came up in time"
        );
    }
}

/// Resolves once the peer set has been read from the datastore, every peer
/// in it is Established, and the learned routes have been unchanged for
/// [`INITIAL_QUIET`]. An empty peer list counts only once it is known to be
/// the peer set: before the first read it means nothing, and taking it for
/// "all peers up" would delete the previous run's learned routes while no
/// session is up yet.
async fn bgp_settled(
    mut peers: watch::Receiver<Vec<crate::api::PeerStatus>>,
    mut peer_set_known: watch::Receiver<bool>,
    mut learned: watch::Receiver<u64>,
) {
    if peer_set_known.wait_for(|known| *known).await.is_err() {
        // The peer set will never be known: only the time limit ends the wait.
        return std::future::pending().await;
    }
    if peers.wait_for(|p| p.iter().all(|p| p.state == "established")).await.is_err() {
        return std::future::pending().await;
    }
    learned.borrow_and_update();
    while let Ok(Ok(())) = tokio::time::timeout(INITIAL_QUIET, learned.changed()).await {}
}

/// What this node announces: its blocks and its borrowed addresses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LocalPrefixes {
    pub blocks: BTreeSet<IpNetwork>,
    pub borrowed: BTreeSet<IpNetwork>,
}

impl LocalPrefixes {
    fn all(&self) -> BTreeSet<IpNetwork> {
        self.blocks.union(&self.borrowed).copied().collect()
    }
}

async fn read_local(ds: &Datastore, node: &str) -> crate::ipam::Result<LocalPrefixes> {
    let blocks = crate::ipam::routes::own_blocks(ds, node).await?.into_iter().collect();
    let borrowed = crate::ipam::routes::borrowed_addresses(ds, node).await?.into_iter().collect();
    Ok(LocalPrefixes { blocks, borrowed })
}

fn blackhole(dst: IpNetwork) -> DesiredRoute {
    DesiredRoute { route: Route { dst, target: RouteTarget::Blackhole, mtu: None }, kind: RouteKind::Blackhole }
}

/// Keeps the originated prefixes and the blackholes in step with IPAM;
/// publishes the current set on `published` (status, tests). Runs until `stop`.
pub async fn follow_local_prefixes<O: Originator>(
    ds: Datastore,
    node: String,
    programmer: Programmer,
    originator: O,
    published: watch::Sender<LocalPrefixes>,
    mut stop: watch::Receiver<bool>,
) {
    let mut blocks_watch = ds.watch::<IpamBlock>(None).await.ok();
    let mut announced = LocalPrefixes::default();
    let mut first = true;
    let mut tick = tokio::time::interval(LOCAL_RESYNC);
    loop {
        crate::faults::point("local-prefixes");
        match read_local(&ds, &node).await {
            Ok(wanted) if wanted != announced || first => {
                let (before, after) = (announced.all(), wanted.all());
                for p in after.difference(&before) {
                    originator.originate(*p).await;
                }
                for p in before.difference(&after) {
                    originator.withdraw(*p).await;
                }
                if first {
                    // Only now may peers get End-of-RIB: after a restart they
                    // sweep whatever of ours is missing from the table by then.
                    originator.loaded().await;
                }
                first = false;
                programmer
                    .replace_kind(RouteKind::Blackhole, wanted.blocks.iter().map(|b| blackhole(*b)).collect())
                    .await;
                tracing::info!(
                    subsys = "routes",
                    blocks = wanted.blocks.len(),
                    borrowed = wanted.borrowed.len(),
                    "local prefixes announced"
                );
                announced = wanted;
                published.send_replace(announced.clone());
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(subsys = "routes", error = %e, "cannot read this node's blocks; keeping the announced set")
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
            ev = next_event(&mut blocks_watch) => {
                if ev.is_none() {
                    blocks_watch = None;
                }
            }
        }
    }
}

pub(super) async fn next_event<T: crate::datastore::Resource>(
    w: &mut Option<crate::datastore::WatchStream<T>>,
) -> Option<crate::datastore::Result<WatchEvent<T>>> {
    match w {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

/// The pools as the remote-route computation needs them.
pub async fn follow_pools(ds: Datastore, out: watch::Sender<Vec<IpPool>>, mut stop: watch::Receiver<bool>) {
    let mut pools_watch = ds.watch::<IpPool>(None).await.ok();
    let mut tick = tokio::time::interval(LOCAL_RESYNC);
    loop {
        match ds.list::<IpPool>().await {
            Ok(listing) => {
                let pools: Vec<IpPool> = listing.items.into_iter().map(|s| s.spec).collect();
                out.send_if_modified(|old| {
                    let changed = *old != pools;
                    if changed {
                        *old = pools;
                    }
                    changed
                });
            }
            Err(e) => tracing::warn!(subsys = "routes", error = %e, "cannot list IP pools; keeping the last ones"),
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
            ev = next_event(&mut pools_watch) => if ev.is_none() { pools_watch = None },
        }
    }
}

fn mode(encap: EncapMode) -> IpipMode {
    match encap {
        EncapMode::Never => IpipMode::Never,
        EncapMode::Always => IpipMode::Always,
        EncapMode::CrossSubnet => IpipMode::CrossSubnet,
    }
}

/// How a learned prefix is routed: a prefix inside a pool with exactly one
/// IPv4 next hop is a remote block (its path chosen by the selector); ECMP,
/// IPv6 and prefixes outside every pool go direct. `None` without next hops.
/// Takes the next hops by value: a direct route keeps them.
pub fn classify(prefix: IpNetwork, hops: Addrs, pools: &[IpPool]) -> Option<Remote> {
    if hops.is_empty() {
        return None;
    }
    let pool = pools.iter().find(|p| p.cidr.contains(prefix.network()) && p.cidr.prefix() <= prefix.prefix());
    Some(match (prefix, hops.as_slice(), pool) {
        (IpNetwork::V4(block), [IpAddr::V4(node)], Some(pool)) => {
            Remote::Block(RemoteBlock { block, node: *node, mode: mode(pool.ipip_mode) })
        }
        _ => Remote::Direct(hops.into_vec()),
    })
}

/// Where the learned routes come from (the RIB): asked to send every
/// learned best-path set again when the pools change, since the follower
/// keeps no copy of the table.
pub trait LearnedSource: Send + Sync + 'static {
    fn resend_learned(&self) -> impl Future<Output = ()> + Send;
}

impl LearnedSource for crate::bgp::rib::Rib {
    async fn resend_learned(&self) {
        crate::bgp::rib::Rib::resend_learned(self).await
    }
}

/// Without BGP nothing is learned.
impl<S: LearnedSource> LearnedSource for Option<S> {
    async fn resend_learned(&self) {
        if let Some(s) = self {
            s.resend_learned().await
        }
    }
}

/// Best-path changes handed on about this many at a time (whole batches from
/// the RIB, so up to 255 more), so the first routes reach the kernel while
/// the rest of a large table is still coming.
const BURST_MAX: usize = 16_384;

/// Follows the RIB's best-path changes and the pools; sends the selector
/// the changed prefixes, classified by the current pools, and counts the
/// bursts on `generation` (for [`initial_sync`]). Changes already queued
/// when a burst starts go in one batch. It keeps no per-prefix state: when
/// the pools change it asks `source` to send every learned set again, and
/// those come back as ordinary changes, classified by the new pools. The
/// selector's channel is bounded, so while the selector or the kernel is
/// busy this waits and the RIB's change queue coalesces per prefix.
pub async fn follow_learned<S: LearnedSource>(
    mut changes: mpsc::Receiver<Vec<BestPathChange>>,
    source: S,
    mut pools: watch::Receiver<Vec<IpPool>>,
    out: mpsc::Sender<RemoteBatch>,
    generation: watch::Sender<u64>,
    latency: Option<Latency>,
    mut stop: watch::Receiver<bool>,
) {
    let mut current_pools = pools.borrow_and_update().clone();
    let observer = latency.map(|l| {
        // Bounded: when measurements pile up, some bursts go unmeasured.
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(l.run(rx));
        tx
    });
    loop {
        let mut batch = RemoteBatch::default();
        let arrived;
        tokio::select! {
            _ = stop.changed() => return,
            changed = pools.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = pools.borrow_and_update().clone();
                if now != current_pools {
                    current_pools = now;
                    // Whatever arrives from here on is classified by the new pools.
                    source.resend_learned().await;
                }
                continue;
            }
            received = changes.recv() => {
                let Some(first) = received else { return };
                arrived = Instant::now();
                let mut next = Some(first);
                while let Some(received) = next {
                    batch.changes.extend(
                        received.into_iter().map(|c| (c.prefix, classify(c.prefix, c.next_hops, &current_pools))),
                    );
                    next = if batch.changes.len() < BURST_MAX { changes.try_recv().ok() } else { None };
                }
            }
        }
        let measured = observer.as_ref().map(|observer| {
            let (tx, rx) = oneshot::channel();
            batch.queued = Some(tx);
            (observer, rx)
        });
        if out.send(batch).await.is_err() {
            return;
        }
        generation.send_modify(|g| *g += 1);
        if let Some((observer, rx)) = measured {
            let _ = observer.try_send((arrived, rx));
        }
    }
}

/// Measures the time from a best-path change reaching the agent to its
/// kernel route written: the selector says when it has queued the routes
/// at the programmer, and [`Programmer::applied`] returns once the
/// programmer wrote them.
pub struct Latency {
    pub programmer: Programmer,
    pub histogram: prometheus_client::metrics::histogram::Histogram,
}

impl Latency {
    async fn run(self, mut bursts: mpsc::Receiver<(Instant, oneshot::Receiver<()>)>) {
        while let Some((since, queued)) = bursts.recv().await {
            if queued.await.is_ok() {
                self.programmer.applied().await;
                self.histogram.observe(since.elapsed().as_secs_f64());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(cidr: &str, ipip: EncapMode) -> IpPool {
        let mut p = IpPool::new(cidr.parse().unwrap());
        p.ipip_mode = ipip;
        p
    }

    fn classified(prefix: &str, hops: &[&str], pools: &[IpPool]) -> Option<Remote> {
        let hops: Addrs = hops.iter().map(|h| h.parse().unwrap()).collect();
        classify(prefix.parse().unwrap(), hops, pools)
    }

    #[test]
    fn a_pool_block_with_one_next_hop_is_a_remote_block_with_the_pools_mode() {
        let pools = [pool("10.244.0.0/16", EncapMode::CrossSubnet)];
        assert_eq!(
            classified("10.244.1.0/26", &["10.0.0.2"], &pools),
            Some(Remote::Block(RemoteBlock {
                block: "10.244.1.0/26".parse().unwrap(),
                node: "10.0.0.2".parse().unwrap(),
                mode: IpipMode::CrossSubnet
            }))
        );
    }

    #[test]
    fn ecmp_outside_pools_and_ipv6_go_direct() {
        let pools = [pool("10.244.0.0/16", EncapMode::Always)];
        for (prefix, hops) in [
            ("10.244.2.0/26", &["10.0.0.2", "10.0.0.3"][..]),
            ("192.0.2.0/24", &["10.0.0.1"]),
            ("fd00::/64", &["fe80::1"]),
        ] {
            let hops_ip: Vec<IpAddr> = hops.iter().map(|h| h.parse().unwrap()).collect();
            assert_eq!(classified(prefix, hops, &pools), Some(Remote::Direct(hops_ip)), "{prefix}");
        }
    }

    #[test]
    fn a_prefix_wider_than_the_pool_is_not_a_block_of_it() {
        let pools = [pool("10.244.0.0/16", EncapMode::Always)];
        assert!(matches!(classified("10.0.0.0/8", &["10.0.0.1"], &pools), Some(Remote::Direct(_))));
    }

    #[test]
    fn no_next_hop_is_no_route() {
        let pools = [pool("10.244.0.0/16", EncapMode::Always)];
        assert_eq!(classified("10.244.1.0/26", &[], &pools), None);
    }

    /// A RIB stand-in: its learned sets, sent again on the change stream on request.
    #[derive(Clone)]
    struct FakeRib {
        learned: Vec<BestPathChange>,
        changes: mpsc::Sender<Vec<BestPathChange>>,
        resends: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl LearnedSource for FakeRib {
        async fn resend_learned(&self) {
            self.resends.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.changes.send(self.learned.clone()).await.unwrap();
        }
    }

    fn change(prefix: &str, hops: &[&str]) -> BestPathChange {
        let hops: Addrs = hops.iter().map(|h| h.parse().unwrap()).collect();
        BestPathChange { prefix: prefix.parse().unwrap(), next_hops: hops.clone(), peers: hops }
    }

    async fn next_changes(rx: &mut mpsc::Receiver<RemoteBatch>, n: usize) -> Vec<(IpNetwork, Option<Remote>)> {
        let mut got = Vec::new();
        while got.len() < n {
            let batch = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("a batch").expect("open");
            got.extend(batch.changes);
        }
        got
    }

    #[tokio::test]
    async fn changes_pass_classified_and_a_pool_change_asks_the_rib_for_everything_again() {
        let (changes_tx, changes_rx) = mpsc::channel(16);
        let (pools_tx, pools_rx) = watch::channel(vec![pool("10.244.0.0/16", EncapMode::CrossSubnet)]);
        let (out_tx, mut out_rx) = mpsc::channel(2);
        let (generation_tx, generation_rx) = watch::channel(0u64);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let learned = vec![
            change("10.244.1.0/26", &["10.0.0.2"]),
            change("10.244.2.0/26", &["10.0.0.3"]),
            change("192.0.2.0/24", &["10.0.0.1"]),
        ];
        let rib = FakeRib { learned: learned.clone(), changes: changes_tx.clone(), resends: Default::default() };
        let resends = rib.resends.clone();
        tokio::spawn(follow_learned(changes_rx, rib, pools_rx, out_tx, generation_tx, None, stop_rx));

        for c in &learned {
            changes_tx.send(vec![c.clone()]).await.unwrap();
        }
        let got = next_changes(&mut out_rx, 3).await;
        let modes = |got: &[(IpNetwork, Option<Remote>)]| -> Vec<(String, Option<IpipMode>)> {
            got.iter()
                .map(|(p, r)| {
                    let mode = match r {
                        Some(Remote::Block(b)) => Some(b.mode),
                        _ => None,
                    };
                    (p.to_string(), mode)
                })
                .collect()
        };
        assert_eq!(
            modes(&got),
            [
                ("10.244.1.0/26".to_string(), Some(IpipMode::CrossSubnet)),
                ("10.244.2.0/26".to_string(), Some(IpipMode::CrossSubnet)),
                ("192.0.2.0/24".to_string(), None),
            ]
        );
        assert!(*generation_rx.borrow() >= 1, "bursts are counted");
        assert_eq!(resends.load(std::sync::atomic::Ordering::SeqCst), 0);

        // The pool turns Never: the follower has no copy, so it asks the RIB
        // for every learned set, and each comes back under the new mode.
        pools_tx.send_replace(vec![pool("10.244.0.0/16", EncapMode::Never)]);
        let got = next_changes(&mut out_rx, 3).await;
        assert_eq!(resends.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(
            modes(&got),
            [
                ("10.244.1.0/26".to_string(), Some(IpipMode::Never)),
                ("10.244.2.0/26".to_string(), Some(IpipMode::Never)),
                ("192.0.2.0/24".to_string(), None),
            ]
        );

        // The same pools again (a resync listing): nothing is asked for.
        pools_tx.send_replace(vec![pool("10.244.0.0/16", EncapMode::Never)]);
        changes_tx.send(vec![change("10.244.1.0/26", &[])]).await.unwrap();
        assert_eq!(next_changes(&mut out_rx, 1).await, [("10.244.1.0/26".parse().unwrap(), None)], "a withdrawal");
        assert_eq!(resends.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    fn peer(state: &str) -> crate::api::PeerStatus {
        crate::api::PeerStatus {
            address: "10.0.0.2".to_string(),
            as_number: 64512,
            peer_type: "node-to-node mesh".to_string(),
            state: state.to_string(),
            since: 0,
            info: String::new(),
            prefixes_received: 0,
            prefixes_advertised: 0,
            tunnel_mode: "direct".to_string(),
            hold_time: None,
            keepalive: None,
            established_at: None,
            flaps: 0,
        }
    }

    /// Whether `bgp_settled` has resolved after `after` of (paused) time.
    async fn settled_within(settled: impl Future<Output = ()>, after: Duration) -> bool {
        tokio::time::timeout(after, settled).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_peer_list_before_the_peer_set_is_read_is_not_settled() {
        let (_peers_tx, peers) = watch::channel(Vec::new());
        let (_known_tx, known) = watch::channel(false);
        let (_learned_tx, learned) = watch::channel(0u64);
        assert!(!settled_within(bgp_settled(peers, known, learned), INITIAL_SYNC_MAX).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_known_empty_peer_set_settles_after_the_quiet_time() {
        let (_peers_tx, peers) = watch::channel(Vec::new());
        let (_known_tx, known) = watch::channel(true);
        let (_learned_tx, learned) = watch::channel(0u64);
        assert!(settled_within(bgp_settled(peers, known, learned), INITIAL_QUIET * 2).await);
    }

    #[tokio::test(start_paused = true)]
    async fn settles_only_once_every_peer_is_up_and_the_routes_are_quiet() {
        let (peers_tx, peers) = watch::channel(vec![peer("active"), peer("established")]);
        let (_known_tx, known) = watch::channel(true);
        let (learned_tx, learned) = watch::channel(0u64);
        let settled = tokio::spawn(bgp_settled(peers, known, learned));
        tokio::time::sleep(INITIAL_SYNC_MAX).await;
        assert!(!settled.is_finished(), "a peer is still down");
        peers_tx.send_replace(vec![peer("established"), peer("established")]);
        // Routes keep arriving: not settled while they do.
        for generation in 1..10 {
            tokio::time::sleep(INITIAL_QUIET / 2).await;
            learned_tx.send_replace(generation);
            assert!(!settled.is_finished(), "routes are still arriving");
        }
        tokio::time::timeout(INITIAL_QUIET * 2, settled).await.expect("settled once quiet").unwrap();
    }
}
