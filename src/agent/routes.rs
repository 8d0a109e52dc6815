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
//! Both follow their inputs (datastore watches, the RIB's change stream)
//! and recompute from the whole state, so a missed event is repaired by the
//! next one or by the periodic resync.

use crate::bgp::rib::BestPathChange;
use crate::config::IpipMode;
use crate::dataplane::{DesiredRoute, Programmer, Route, RouteKind, RouteTarget};
use crate::datastore::resources::{EncapMode, IpPool, IpamBlock};
use crate::datastore::{Datastore, WatchEvent};
use crate::fallback_ipip::selector::{RemoteBlock, RemoteRoutes};
use ipnetwork::IpNetwork;
use std::collections::HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
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
/// routes of ours nobody wants any more — only once every configured peer is
/// Established and the learned routes have settled, or after
/// [`INITIAL_SYNC_MAX`]. After a restart the routes of the previous run stay
/// in the kernel until then, so pod traffic does not stop while the tables
/// are relearned.
pub async fn initial_sync(
    programmer: Programmer,
    mut peers: watch::Receiver<Vec<crate::api::PeerStatus>>,
    mut remote: watch::Receiver<RemoteRoutes>,
    mut stop: watch::Receiver<bool>,
) {
    let settled = async {
        let all_up = peers.wait_for(|p| p.iter().all(|p| p.state == "established")).await.is_ok();
        if all_up {
            remote.borrow_and_update();
            while let Ok(Ok(())) = tokio::time::timeout(INITIAL_QUIET, remote.changed()).await {}
        }
    };
    tokio::select! {
        _ = stop.changed() => return,
        _ = tokio::time::timeout(INITIAL_SYNC_MAX, settled) => {}
    }
    programmer.flush().await;
    tracing::info!(subsys = "dataplane", "first full route reconcile done");
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

/// Splits the learned routes into pool blocks (path chosen by the selector)
/// and plain direct routes. A prefix inside a pool with exactly one IPv4 next
/// hop is a remote block; ECMP, IPv6 and prefixes outside every pool go direct.
pub fn remote_routes(learned: &BTreeMap<IpNetwork, Vec<IpAddr>>, pools: &[IpPool]) -> RemoteRoutes {
    let mut out = RemoteRoutes::default();
    for (prefix, hops) in learned {
        if hops.is_empty() {
            continue;
        }
        let pool = pools.iter().find(|p| p.cidr.contains(prefix.network()) && p.cidr.prefix() <= prefix.prefix());
        match (prefix, hops.as_slice(), pool) {
            (IpNetwork::V4(block), [IpAddr::V4(node)], Some(pool)) => {
                out.blocks.push(RemoteBlock { block: *block, node: *node, mode: mode(pool.ipip_mode) })
            }
            _ => out.direct.push((*prefix, hops.clone())),
        }
    }
    out
}

/// Follows the RIB's best-path changes and the pools; publishes the remote
/// routes for the path selector. Changes that arrive together are applied
/// as one update (the selector replaces the kernel routes in one step).
pub async fn follow_learned(
    mut changes: mpsc::Receiver<BestPathChange>,
    mut pools: watch::Receiver<Vec<IpPool>>,
    out: watch::Sender<RemoteRoutes>,
    mut latency: Option<Latency>,
    mut stop: watch::Receiver<bool>,
) {
    let mut learned: BTreeMap<IpNetwork, Vec<IpAddr>> = BTreeMap::new();
    let mut arrived: Option<Instant> = None;
    loop {
        let current = remote_routes(&learned, &pools.borrow_and_update());
        if let Some(l) = &mut latency {
            l.paths.borrow_and_update();
        }
        let changed = out.send_if_modified(|old| {
            let changed = *old != current;
            if changed {
                *old = current;
            }
            changed
        });
        if let (true, Some(t0), Some(l)) = (changed, arrived.take(), &mut latency) {
            l.observe(t0).await;
        }
        tokio::select! {
            _ = stop.changed() => return,
            changed = pools.changed() => if changed.is_err() { return },
            change = changes.recv() => {
                let Some(first) = change else { return };
                arrived = Some(Instant::now());
                apply(&mut learned, first);
                // Drain what is already queued, so a burst becomes one kernel update.
                while let Ok(more) = changes.try_recv() {
                    apply(&mut learned, more);
                }
            }
        }
    }
}

/// Measures the time from a best-path change reaching the agent to its
/// kernel route written: the selector has run once it publishes its paths,
/// and [`Programmer::applied`] returns once the programmer wrote them.
pub struct Latency {
    pub programmer: Programmer,
    pub paths: watch::Receiver<HashMap<std::net::Ipv4Addr, crate::fallback_ipip::path::Path>>,
    pub histogram: prometheus_client::metrics::histogram::Histogram,
}

impl Latency {
    async fn observe(&mut self, since: Instant) {
        let selected = tokio::time::timeout(Duration::from_secs(5), self.paths.changed()).await;
        if matches!(selected, Ok(Ok(()))) {
            self.programmer.applied().await;
            self.histogram.observe(since.elapsed().as_secs_f64());
        }
    }
}

fn apply(learned: &mut BTreeMap<IpNetwork, Vec<IpAddr>>, change: BestPathChange) {
    if change.next_hops.is_empty() {
        learned.remove(&change.prefix);
    } else {
        learned.insert(change.prefix, change.next_hops);
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

    fn learned(entries: &[(&str, &[&str])]) -> BTreeMap<IpNetwork, Vec<IpAddr>> {
        entries
            .iter()
            .map(|(p, hops)| (p.parse().unwrap(), hops.iter().map(|h| h.parse().unwrap()).collect()))
            .collect()
    }

    #[test]
    fn a_pool_block_with_one_next_hop_is_a_remote_block_with_the_pools_mode() {
        let pools = [pool("10.244.0.0/16", EncapMode::CrossSubnet)];
        let r = remote_routes(&learned(&[("10.244.1.0/26", &["10.0.0.2"])]), &pools);
        assert_eq!(
            r.blocks,
            vec![RemoteBlock {
                block: "10.244.1.0/26".parse().unwrap(),
                node: "10.0.0.2".parse().unwrap(),
                mode: IpipMode::CrossSubnet
            }]
        );
        assert!(r.direct.is_empty());
    }

    #[test]
    fn ecmp_outside_pools_and_ipv6_go_direct() {
        let pools = [pool("10.244.0.0/16", EncapMode::Always)];
        let r = remote_routes(
            &learned(&[
                ("10.244.2.0/26", &["10.0.0.2", "10.0.0.3"]),
                ("192.0.2.0/24", &["10.0.0.1"]),
                ("fd00::/64", &["fe80::1"]),
            ]),
            &pools,
        );
        assert!(r.blocks.is_empty());
        assert_eq!(r.direct.len(), 3);
    }

    #[test]
    fn a_prefix_wider_than_the_pool_is_not_a_block_of_it() {
        let pools = [pool("10.244.0.0/16", EncapMode::Always)];
        let r = remote_routes(&learned(&[("10.0.0.0/8", &["10.0.0.1"])]), &pools);
        assert!(r.blocks.is_empty());
        assert_eq!(r.direct.len(), 1);
    }

    #[test]
    fn a_withdrawal_removes_the_prefix() {
        let mut l = BTreeMap::new();
        let prefix: IpNetwork = "10.244.1.0/26".parse().unwrap();
        let peers = vec!["10.0.0.2".parse().unwrap()];
        apply(&mut l, BestPathChange { prefix, next_hops: peers.clone(), peers: peers.clone() });
        assert_eq!(l.len(), 1);
        apply(&mut l, BestPathChange { prefix, next_hops: vec![], peers });
        assert!(l.is_empty());
    }
}
