//! The agent's local-prefix producer and the waits around the RIB:
//!
//! - **local prefixes**: the node's own IPAM blocks and the /32s it borrowed
//!   from other nodes' blocks are originated in BGP; its own blocks also get
//!   a blackhole route, so traffic to an unallocated address dies here
//!   instead of looping back to the default route (Calico does the same).
//!   They are recomputed from the agent's picture of the blocks
//!   (`agent::blocks`) whenever it changes.
//! - **the pools**, followed for the remote-routes stage.
//! - **the first full reconcile**, held until BGP has settled.
//!
//! Learned routes go through the remote-routes stage (`crate::remote_routes`).

use super::blocks::KnownBlocks;
use crate::dataplane::{DesiredRoute, Programmer, Route, RouteKind, RouteTarget};
use crate::datastore::resources::IpPool;
use crate::datastore::{Datastore, WatchEvent};
use ipnetwork::IpNetwork;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;

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
    holding: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let settled = tokio::select! {
        _ = stop.changed() => return,
        r = tokio::time::timeout(INITIAL_SYNC_MAX, bgp_settled(peers, peer_set_known, learned, holding)) => r.is_ok(),
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
/// in it is Established, the remote-routes stage is not holding learned
/// routes back (it waits for the remote nodes' VTEPs when VXLAN is in use),
/// and the learned routes have been unchanged for [`INITIAL_QUIET`]. An empty peer list counts only once it is known to be
/// the peer set: before the first read it means nothing, and taking it for
/// "all peers up" would delete the previous run's learned routes while no
/// session is up yet.
async fn bgp_settled(
    mut peers: watch::Receiver<Vec<crate::api::PeerStatus>>,
    mut peer_set_known: watch::Receiver<bool>,
    mut learned: watch::Receiver<u64>,
    mut holding: watch::Receiver<bool>,
) {
    if peer_set_known.wait_for(|known| *known).await.is_err() {
        // The peer set will never be known: only the time limit ends the wait.
        return std::future::pending().await;
    }
    if peers.wait_for(|p| p.iter().all(|p| p.state == "established")).await.is_err() {
        return std::future::pending().await;
    }
    // A closed channel: no stage (nothing is learned), nothing held.
    let _ = holding.wait_for(|held| !*held).await;
    learned.borrow_and_update();
    while let Ok(Ok(())) = tokio::time::timeout(INITIAL_QUIET, learned.changed()).await {}
}

pub use crate::remote_routes::LocalPrefixes;

/// What `node` originates of `known`: its own blocks and the addresses it borrowed.
fn local_prefixes(known: &KnownBlocks, node: &str) -> LocalPrefixes {
    LocalPrefixes {
        blocks: crate::ipam::routes::own_blocks_in(known.specs(), node).into_iter().collect(),
        borrowed: crate::ipam::routes::borrowed_addresses_in(known.specs(), node).into_iter().collect(),
        services: Default::default(),
    }
}

fn blackhole(dst: IpNetwork) -> DesiredRoute {
    DesiredRoute { route: Route { dst, target: RouteTarget::Blackhole, mtu: None }, kind: RouteKind::Blackhole }
}

/// Keeps the originated prefixes and the blackholes in step with IPAM;
/// publishes the current set on `published` (status, tests), with the service CIDRs of
/// `services` (`agent::services`) for the remote-routes stage. Runs until `stop`.
pub async fn follow_local_prefixes<O: Originator>(
    mut blocks: watch::Receiver<Option<KnownBlocks>>,
    node: String,
    programmer: Programmer,
    originator: O,
    (published, mut services): (watch::Sender<LocalPrefixes>, watch::Receiver<BTreeSet<IpNetwork>>),
    mut stop: watch::Receiver<bool>,
) {
    let mut announced = LocalPrefixes::default();
    let mut first = true;
    // A closed channel keeps its last value; it is only no longer waited on.
    let mut services_open = true;
    let mut blocks_open = true;
    loop {
        crate::faults::point("local-prefixes");
        // `None`: the blocks are not known yet (or cannot be read): the announced set stays.
        let wanted = blocks.borrow_and_update().as_ref().map(|known| local_prefixes(known, &node));
        if let Some(mut wanted) = wanted {
            wanted.services = services.borrow_and_update().clone();
            if wanted != announced || first {
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
        }
        tokio::select! {
            _ = stop.changed() => return,
            c = services.changed(), if services_open => services_open = c.is_ok(),
            c = blocks.changed(), if blocks_open => blocks_open = c.is_ok(),
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
    // Only while the watch is missing or the last listing failed: the watch is opened again and
    // the pools listed. While it holds, nothing is read but on its events.
    let mut tick = super::picture::retry_timer();
    loop {
        let mut failed = false;
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
            Err(e) => {
                failed = true;
                tracing::warn!(subsys = "routes", error = %e, "cannot list IP pools; keeping the last ones")
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick(), if pools_watch.is_none() || failed => super::picture::reopen(&ds, &mut pools_watch).await,
            ev = next_event(&mut pools_watch) => if ev.is_none() { pools_watch = None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::resources::{AllocationAttribute, IpamBlock};
    use crate::datastore::{Revision, Stored};

    fn block(cidr: &str, owner: &str, revision: u64) -> Stored<IpamBlock> {
        let cidr: IpNetwork = cidr.parse().unwrap();
        Stored {
            name: cidr.to_string().replace('/', "-"),
            revision: Revision(revision),
            spec: IpamBlock::empty(cidr, Some(crate::ipam::claim::host_affinity(owner))),
        }
    }

    /// `block` with its first address allocated by `node`.
    fn lending(mut b: Stored<IpamBlock>, node: &str) -> Stored<IpamBlock> {
        b.spec.allocations[0] = Some(0);
        b.spec.unallocated.retain(|o| *o != 0);
        b.spec.attributes.push(AllocationAttribute {
            handle_id: Some("h".into()),
            secondary: crate::datastore::resources::PackedMap::from([(
                crate::ipam::routes::NODE_ATTRIBUTE.to_string(),
                node.to_string(),
            )]),
            ..Default::default()
        });
        b
    }

    fn set(prefixes: &[&str]) -> BTreeSet<IpNetwork> {
        prefixes.iter().map(|p| p.parse().unwrap()).collect()
    }

    #[test]
    fn the_local_prefixes_follow_the_known_blocks_and_skip_events_older_than_what_they_know() {
        let mut known = KnownBlocks::from_listing(vec![block("10.244.1.0/26", "a", 5)]);
        assert_eq!(local_prefixes(&known, "a").blocks, set(&["10.244.1.0/26"]));
        known.apply(WatchEvent::Added(block("10.244.2.0/26", "b", 6)));
        known.apply(WatchEvent::Modified(lending(block("10.244.2.0/26", "b", 7), "a")));
        let local = local_prefixes(&known, "a");
        assert_eq!((local.blocks, local.borrowed), (set(&["10.244.1.0/26"]), set(&["10.244.2.0/32"])));
        // Queued before a listing that already holds revision 7: not applied.
        known.apply(WatchEvent::Modified(block("10.244.2.0/26", "b", 6)));
        known.apply(WatchEvent::Deleted { name: "10.244.1.0-26".into(), revision: Revision(4) });
        let local = local_prefixes(&known, "a");
        assert_eq!((local.blocks, local.borrowed), (set(&["10.244.1.0/26"]), set(&["10.244.2.0/32"])));
        known.apply(WatchEvent::Deleted { name: "10.244.1.0-26".into(), revision: Revision(8) });
        assert_eq!(local_prefixes(&known, "a").blocks, set(&[]));
        assert_eq!(local_prefixes(&known, "b").blocks, set(&["10.244.2.0/26"]));
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
            bfd: None,
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
        assert!(!settled_within(bgp_settled(peers, known, learned, watch::channel(false).1), INITIAL_SYNC_MAX).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_known_empty_peer_set_settles_after_the_quiet_time() {
        let (_peers_tx, peers) = watch::channel(Vec::new());
        let (_known_tx, known) = watch::channel(true);
        let (_learned_tx, learned) = watch::channel(0u64);
        assert!(settled_within(bgp_settled(peers, known, learned, watch::channel(false).1), INITIAL_QUIET * 2).await);
    }

    #[tokio::test(start_paused = true)]
    async fn routes_held_for_the_vteps_are_not_settled_routes() {
        let (_peers_tx, peers) = watch::channel(Vec::new());
        let (_known_tx, known) = watch::channel(true);
        let (_learned_tx, learned) = watch::channel(0u64);
        let (holding_tx, holding) = watch::channel(true);
        let settled = tokio::spawn(bgp_settled(peers, known, learned, holding));
        tokio::time::sleep(INITIAL_SYNC_MAX).await;
        assert!(!settled.is_finished(), "the stage still holds the learned routes");
        holding_tx.send_replace(false);
        tokio::time::timeout(INITIAL_QUIET * 2, settled).await.expect("settled once released").unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn settles_only_once_every_peer_is_up_and_the_routes_are_quiet() {
        let (peers_tx, peers) = watch::channel(vec![peer("active"), peer("established")]);
        let (_known_tx, known) = watch::channel(true);
        let (learned_tx, learned) = watch::channel(0u64);
        let settled = tokio::spawn(bgp_settled(peers, known, learned, watch::channel(false).1));
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

#[cfg(test)]
mod pools_tests {
    use super::*;
    use crate::datastore::Kind;
    use crate::testing::CountingBackend;

    /// After a long healthy run, a listing that fails is retried once per retry period: the
    /// retry timer is not polled while all is well, and must not then fire once for every period
    /// it missed (here 120, each a failing listing of a store already in trouble).
    #[tokio::test(start_paused = true)]
    async fn a_failed_listing_after_a_long_healthy_run_is_retried_once_per_period() {
        let dir = tempfile::tempdir().unwrap();
        let (backend, listings) = CountingBackend::sqlite(dir.path()).await;
        let ds = Datastore::new(backend);
        let (stop_tx, stop) = watch::channel(false);
        let (pools_tx, mut pools) = watch::channel(Vec::new());
        tokio::spawn(follow_pools(ds.clone(), pools_tx, stop));
        let first = IpPool::new("10.244.0.0/16".parse().unwrap());
        ds.create("a", &first).await.unwrap();
        let wait = pools.wait_for(|p| p.len() == 1);
        tokio::time::timeout(Duration::from_secs(3600), wait).await.expect("in time").expect("open");
        tokio::time::sleep(crate::agent::picture::RETRY * 120).await;
        listings.fail_listings(true);
        let before = listings.of(Kind::IpPool);
        // A pool event makes it list, which fails.
        ds.create("b", &IpPool::new("10.245.0.0/16".parse().unwrap())).await.unwrap();
        tokio::time::sleep(crate::agent::picture::RETRY * 2 + crate::agent::picture::RETRY / 2).await;
        let attempts = listings.of(Kind::IpPool) - before;
        assert!((1..=4).contains(&attempts), "{attempts} listings in two and a half retry periods");
        listings.fail_listings(false);
        let wait = pools.wait_for(|p| p.len() == 2);
        tokio::time::timeout(Duration::from_secs(3600), wait).await.expect("in time").expect("open");
        stop_tx.send_replace(true);
    }
}
