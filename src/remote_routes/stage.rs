//! The remote-routes task: RIB best-path changes (or, without BGP, the
//! datastore's block routes) in, kernel routes out. Per change it
//! classifies the prefix by the current pools ([`Classifier`]), chooses the
//! path of a remote block (direct, or through the pool's encapsulation as
//! its mode, the subnet and the liveness probe say) and sends the route to
//! the programmer, replacing a prefix's route in one step, never
//! withdrawing it first.
//!
//! It works on changes: a batch costs its own prefixes only (a million
//! learned routes arrive as many batches). It keeps a copy only of the
//! blocks whose path can change ([`Blocks`]); when the pools or this node's
//! own blocks change, it asks the source to send every learned set again
//! ([`LearnedSource::resend_learned`]) and reclassifies them as they come.
//! A liveness verdict or a changed remote node (its VTEP) re-routes the
//! kept blocks of the nodes it moved.

use super::classify::{Classifier, LocalPrefixes, Remote};
use super::encap::{Encapsulations, PathKind, RemoteNodes, SLOTS};
use super::outbox::{Outbox, TURN_MAX};
use super::path::{self, Path};
use super::state::{Blocks, Kept};
use crate::bgp::rib::{Addrs, BestPathChange};
use crate::dataplane::{DesiredRoute, NextHop, Programmer, Route, RouteKind, RouteTarget};
use crate::datastore::resources::{EncapMode, IpPool};
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use rustc_hash::FxHashSet;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The kinds the stage owns at the programmer.
pub(super) const KINDS: [RouteKind; 3] = [RouteKind::RemoteDirect, RouteKind::RemoteIpip, RouteKind::RemoteVxlan];

/// Where the stage's routes go: the route programmer (a fake in tests).
pub trait RouteSink: Clone + Send + Sync + 'static {
    /// See [`Programmer::update_kinds`].
    fn update_kinds(
        &self,
        kinds: Vec<RouteKind>,
        changes: Vec<(IpNetwork, Option<DesiredRoute>)>,
    ) -> impl Future<Output = ()> + Send;
    /// Returns once everything sent before is in the kernel ([`Programmer::applied`]).
    fn applied(&self) -> impl Future<Output = ()> + Send;
}

impl RouteSink for Programmer {
    async fn update_kinds(&self, kinds: Vec<RouteKind>, changes: Vec<(IpNetwork, Option<DesiredRoute>)>) {
        Programmer::update_kinds(self, kinds, changes).await
    }
    async fn applied(&self) {
        Programmer::applied(self).await
    }
}

/// Where the learned routes come from (the RIB, or the datastore's block
/// routes without BGP): asked to send every learned set again when the
/// classification changes, since the stage keeps no copy of the table.
pub trait LearnedSource: Send + Sync + 'static {
    fn resend_learned(&self) -> impl Future<Output = ()> + Send;
}

impl LearnedSource for crate::bgp::rib::Rib {
    async fn resend_learned(&self) {
        crate::bgp::rib::Rib::resend_learned(self).await
    }
}

/// What the stage knows of this node.
#[derive(Clone)]
pub struct StageConfig {
    /// The node's IPv4 address with its prefix length ("same subnet").
    pub local_v4: Ipv4Network,
    pub local_v6: Option<Ipv6Network>,
    /// The underlay interface that holds `local_v4`.
    pub underlay_ifindex: u32,
    pub encaps: Encapsulations,
}

/// What the stage follows.
pub struct StageInputs<L> {
    pub learned: mpsc::Receiver<Vec<BestPathChange>>,
    pub source: L,
    pub pools: watch::Receiver<Vec<IpPool>>,
    pub local: watch::Receiver<LocalPrefixes>,
    /// The other nodes' VTEPs; `None` until read (learned routes wait for
    /// them when an encapsulation needs them: see
    /// [`Encapsulations::need_remote_nodes`]).
    pub remotes: watch::Receiver<Option<RemoteNodes>>,
    /// The liveness probe's verdicts: is the direct path to a node alive.
    pub verdicts: watch::Receiver<HashMap<Ipv4Addr, bool>>,
    pub stop: watch::Receiver<bool>,
}

/// Where the stage publishes.
pub struct StageOutputs {
    /// The path per node with blocks whose path can change; a node absent
    /// is reached directly.
    pub paths: watch::Sender<HashMap<IpAddr, PathKind>>,
    /// The nodes worth probing: same-subnet IPv4 nodes with CrossSubnet blocks.
    pub targets: watch::Sender<Vec<Ipv4Addr>>,
    /// Counts the turns of learned changes (the first reconcile waits for them to settle).
    pub generation: watch::Sender<u64>,
    /// True while learned routes wait for the remote nodes' records: the
    /// first full reconcile must not take their silence for settled routes.
    pub holding: watch::Sender<bool>,
    pub latency: Option<Latency>,
}

/// Measures the time from a best-path change reaching the stage to its
/// kernel route written ([`Programmer::applied`]).
pub struct Latency {
    pub programmer: Programmer,
    pub histogram: prometheus_client::metrics::histogram::Histogram,
}

impl Latency {
    fn start(self) -> mpsc::Sender<Instant> {
        // Bounded: when measurements pile up, some turns go unmeasured.
        let (tx, mut rx) = mpsc::channel::<Instant>(64);
        tokio::spawn(async move {
            while let Some(since) = rx.recv().await {
                self.programmer.applied().await;
                self.histogram.observe(since.elapsed().as_secs_f64());
            }
        });
        tx
    }
}

/// What one turn collected.
#[derive(Default)]
struct Turn {
    routes: Vec<(IpNetwork, Option<DesiredRoute>)>,
    /// A kept block came, went or moved, or a node appeared: the
    /// encapsulations' peers, the paths and the probe targets are renewed.
    peers_changed: bool,
}

/// The inputs every route computation reads.
struct View<'a> {
    config: &'a StageConfig,
    alive: &'a HashMap<Ipv4Addr, bool>,
    remotes: &'a RemoteNodes,
}

impl View<'_> {
    fn same_subnet(&self, node: IpAddr) -> bool {
        match node {
            IpAddr::V4(a) => self.config.local_v4.contains(a),
            IpAddr::V6(a) => self.config.local_v6.is_some_and(|l| l.contains(a)),
        }
    }

    fn alive(&self, node: IpAddr) -> Option<bool> {
        match node {
            IpAddr::V4(a) => self.alive.get(&a).copied(),
            IpAddr::V6(_) => None,
        }
    }

    /// The route target through the encapsulation of `slot`, when the
    /// mode says encapsulate and the node has what it needs.
    fn encapsulated(&self, slot: usize, mode: EncapMode, node: IpAddr) -> Option<(RouteTarget, RouteKind, PathKind)> {
        let encap = self.config.encaps.get(slot)?;
        if path::choose(mode, self.same_subnet(node), self.alive(node)) != Path::Encapsulated {
            return None;
        }
        let target = encap.target(node, self.remotes.get(&node))?;
        Some((target, encap.route_kind(), encap.path()))
    }

    /// A block's route: through its encapsulation when the mode says so and
    /// the node has what it needs, else direct — except toward a node in
    /// another subnet whose encapsulation is not ready yet (no VTEP): no
    /// direct route can reach it (the kernel refuses the gateway), so it
    /// gets none until it is ready.
    fn block_route(&self, dst: IpNetwork, node: IpAddr, kept: Option<Kept>) -> Option<DesiredRoute> {
        if let Some(k) = kept {
            if let Some((target, kind, _)) = self.encapsulated(k.slot, k.mode, node) {
                return Some(DesiredRoute { route: Route { dst, target, mtu: None }, kind });
            }
            let wanted = path::choose(k.mode, self.same_subnet(node), self.alive(node)) == Path::Encapsulated;
            if wanted && !self.same_subnet(node) {
                return None;
            }
        }
        // IPv4 nodes on the underlay interface; IPv6 next hops resolved by the kernel.
        let ifindex = node.is_ipv4().then_some(self.config.underlay_ifindex);
        let target = RouteTarget::Via(NextHop { gateway: node, ifindex, onlink: false });
        Some(DesiredRoute { route: Route { dst, target, mtu: None }, kind: RouteKind::RemoteDirect })
    }

    fn node_path(&self, node: &super::state::NodeBlocks) -> PathKind {
        node.kinds()
            .find_map(|(slot, mode)| self.encapsulated(slot, mode, node.address).map(|(_, _, p)| p))
            .unwrap_or(PathKind::Direct)
    }
}

/// A learned route that bypasses path selection: `<dst> via <hops>` (ECMP
/// when several), the kernel resolving the interfaces.
fn plain_direct(dst: IpNetwork, hops: &Addrs) -> Option<DesiredRoute> {
    let hop = |gateway| NextHop { gateway, ifindex: None, onlink: false };
    let target = match hops.as_slice() {
        // The common case, without a vector.
        [one] => RouteTarget::Via(hop(*one)),
        _ => RouteTarget::from_next_hops(hops.iter().map(|g| hop(*g)).collect())?,
    };
    Some(DesiredRoute { route: Route { dst, target, mtu: None }, kind: RouteKind::RemoteDirect })
}

/// The stage's state between turns.
#[derive(Default)]
struct Stage {
    classifier: Classifier,
    blocks: Blocks,
}

impl Stage {
    /// One learned change: its route into `turn`, its state into `blocks`.
    fn apply(&mut self, view: &View, dst: IpNetwork, remote: Option<Remote>, turn: &mut Turn) {
        let kept = match &remote {
            Some(Remote::Block { node, encap }) => {
                if self.blocks.seen.insert(*node) {
                    turn.peers_changed = true;
                }
                encap.and_then(|e| {
                    let slot = super::encap::slot(e.kind, dst.is_ipv6())?;
                    view.config.encaps.get(slot)?;
                    Some(Kept { node: self.blocks.intern(*node), slot, mode: e.mode })
                })
            }
            _ => None,
        };
        let old = self.blocks.set(dst, kept);
        if kept.is_some() && old == kept {
            // Unchanged (e.g. the source resending every set after a pool change).
            return;
        }
        turn.peers_changed |= old.is_some() || kept.is_some();
        // Stateless prefixes always go on: the programmer, which has their
        // only copy, drops what does not change anything.
        let wanted = match remote {
            None => None,
            Some(Remote::Direct(hops)) => plain_direct(dst, &hops),
            Some(Remote::Block { node, .. }) => view.block_route(dst, node, kept),
        };
        turn.routes.push((dst, wanted));
    }

    /// Re-routes the kept blocks of `nodes` (their path may have moved).
    fn reroute(&self, view: &View, nodes: &FxHashSet<u32>, turn: &mut Turn) {
        if nodes.is_empty() {
            return;
        }
        turn.peers_changed = true;
        for (dst, kept) in self.blocks.iter() {
            if nodes.contains(&kept.node) {
                let node = self.blocks.nodes[kept.node as usize].address;
                turn.routes.push((dst, view.block_route(dst, node, Some(kept))));
            }
        }
    }

    /// The nodes whose path differs between two views.
    fn moved(&self, before: &View, after: &View) -> FxHashSet<u32> {
        (0..self.blocks.nodes.len() as u32)
            .filter(|i| {
                let node = &self.blocks.nodes[*i as usize];
                node.kinds().any(|(slot, mode)| {
                    let path = |v: &View| v.encapsulated(slot, mode, node.address).map(|(t, _, _)| t);
                    path(before) != path(after)
                })
            })
            .collect()
    }

    /// Hands each encapsulation the blocks it carries now and the nodes
    /// that may send to us.
    fn set_peers(&self, view: &View) {
        let mut tunnelled: [Vec<(IpNetwork, IpAddr)>; SLOTS] = Default::default();
        for (dst, kept) in self.blocks.iter() {
            let node = self.blocks.nodes[kept.node as usize].address;
            if view.encapsulated(kept.slot, kept.mode, node).is_some() {
                tunnelled[kept.slot].push((dst, node));
            }
        }
        let senders: Vec<IpAddr> = self.blocks.seen.iter().copied().collect();
        for (slot, list) in tunnelled.iter().enumerate() {
            if let Some(encap) = view.config.encaps.get(slot) {
                encap.set_peers(list, &senders, view.remotes);
            }
        }
    }

    fn publish(&self, view: &View, out: &StageOutputs) {
        let chosen: HashMap<IpAddr, PathKind> =
            self.blocks.nodes.iter().filter(|n| !n.is_empty()).map(|n| (n.address, view.node_path(n))).collect();
        let before = out.paths.borrow().clone();
        for (node, path) in &chosen {
            if before.get(node) != Some(path) {
                tracing::info!(subsys = "routes", node = %node, path = path.as_str(), "path to node chosen");
            }
        }
        send_if_changed(&out.paths, chosen);
        let mut targets: Vec<Ipv4Addr> = self
            .blocks
            .nodes
            .iter()
            .filter(|n| n.kinds().any(|(_, mode)| mode == EncapMode::CrossSubnet))
            .filter_map(|n| match n.address {
                IpAddr::V4(a) if view.config.local_v4.contains(a) => Some(a),
                _ => None,
            })
            .collect();
        targets.sort();
        send_if_changed(&out.targets, targets);
    }
}

fn send_if_changed<T: PartialEq>(tx: &watch::Sender<T>, value: T) {
    tx.send_if_modified(|old| {
        let changed = *old != value;
        if changed {
            *old = value;
        }
        changed
    });
}

/// An input watch: `None` once its sender is gone (then it is not polled again).
async fn changed<T>(rx: &mut Option<watch::Receiver<T>>) -> Option<()> {
    match rx {
        Some(r) => r.changed().await.ok(),
        None => std::future::pending().await,
    }
}

/// Runs until the learned-route stream closes or `stop` is set.
pub async fn run<S: RouteSink, L: LearnedSource>(
    config: StageConfig,
    sink: S,
    inputs: StageInputs<L>,
    mut out: StageOutputs,
) {
    let StageInputs { mut learned, source, pools, local, remotes, verdicts, mut stop } = inputs;
    let (mut pools, mut local, mut remotes, mut verdicts) = (Some(pools), Some(local), Some(remotes), Some(verdicts));
    let classifier = |pools: &Option<watch::Receiver<Vec<IpPool>>>, local: &Option<watch::Receiver<LocalPrefixes>>| {
        let p = pools.as_ref().map(|p| p.borrow().clone()).unwrap_or_default();
        let l = local.as_ref().map(|l| l.borrow().clone()).unwrap_or_default();
        Classifier::new(&p, &l.blocks).without_services(&l.services)
    };
    let mut stage = Stage { classifier: classifier(&pools, &local), blocks: Blocks::default() };
    let mut warned = FxHashSet::default();
    if let Some(p) = &pools {
        warn_unserved(&config, &p.borrow(), &mut warned);
    }
    let mut alive = verdicts.as_mut().map(|v| v.borrow_and_update().clone()).unwrap_or_default();
    // Until the remote nodes are read, an encapsulation that needs them
    // would route their blocks direct and then move them: learned routes
    // wait (in the source's coalescing queue) instead.
    let wait_for_remotes = config.encaps.need_remote_nodes();
    let mut known = remotes.as_mut().and_then(|r| r.borrow_and_update().clone());
    let mut nodes = known.clone().unwrap_or_default();
    out.holding.send_replace(wait_for_remotes && known.is_none());
    let mut outbox = Outbox::new(sink);
    let latency = out.latency.take().map(Latency::start);
    loop {
        let mut turn = Turn::default();
        let mut arrived = None;
        tokio::select! {
            _ = stop.changed() => return,
            received = learned.recv(), if !wait_for_remotes || known.is_some() => {
                let Some(first) = received else { return };
                arrived = Some(Instant::now());
                let view = View { config: &config, alive: &alive, remotes: &nodes };
                let mut next = Some(first);
                while let Some(changes) = next {
                    for c in changes {
                        let remote = stage.classifier.classify(c.prefix, c.next_hops);
                        stage.apply(&view, c.prefix, remote, &mut turn);
                    }
                    next = if turn.routes.len() < TURN_MAX { learned.try_recv().ok() } else { None };
                }
                stage.blocks.map.maybe_shrink();
            }
            c = changed(&mut pools) => {
                if c.is_none() { pools = None; continue }
                if let Some(p) = &pools {
                    warn_unserved(&config, &p.borrow(), &mut warned);
                }
                reclassify(&mut stage, classifier(&pools, &local), &source).await;
                continue;
            }
            c = changed(&mut local) => {
                if c.is_none() { local = None; continue }
                reclassify(&mut stage, classifier(&pools, &local), &source).await;
                continue;
            }
            c = changed(&mut remotes) => {
                let Some(rx) = remotes.as_mut().filter(|_| c.is_some()) else { remotes = None; continue };
                known = rx.borrow_and_update().clone();
                out.holding.send_replace(wait_for_remotes && known.is_none());
                let now = known.clone().unwrap_or_default();
                let moved = stage.moved(
                    &View { config: &config, alive: &alive, remotes: &nodes },
                    &View { config: &config, alive: &alive, remotes: &now },
                );
                nodes = now;
                stage.reroute(&View { config: &config, alive: &alive, remotes: &nodes }, &moved, &mut turn);
                // A VTEP may have changed without moving a path.
                turn.peers_changed = true;
            }
            c = changed(&mut verdicts) => {
                // No prober (any more): keep following the learned routes alone.
                let Some(rx) = verdicts.as_mut().filter(|_| c.is_some()) else { verdicts = None; continue };
                let now = rx.borrow_and_update().clone();
                let moved = stage.moved(
                    &View { config: &config, alive: &alive, remotes: &nodes },
                    &View { config: &config, alive: &now, remotes: &nodes },
                );
                alive = now;
                stage.reroute(&View { config: &config, alive: &alive, remotes: &nodes }, &moved, &mut turn);
            }
        }
        let view = View { config: &config, alive: &alive, remotes: &nodes };
        // The encapsulations' own state first, then the routes that use it.
        if turn.peers_changed && (known.is_some() || !wait_for_remotes) {
            stage.set_peers(&view);
        }
        outbox.send(turn.routes).await;
        if let Some(since) = arrived {
            out.generation.send_modify(|g| *g += 1);
            if let Some(latency) = &latency {
                let _ = latency.try_send(since);
            }
        }
        if turn.peers_changed {
            stage.publish(&view, &out);
        }
    }
}

/// Logs, once per pool, a pool whose encapsulation this node does not have:
/// encapsulations are set up at start, so a pool that starts using one
/// later is routed direct until the agent restarts.
fn warn_unserved(config: &StageConfig, pools: &[IpPool], warned: &mut FxHashSet<IpNetwork>) {
    for pool in pools.iter().filter(|p| !p.disabled) {
        let Some(encap) = super::encap::PoolEncap::of(pool) else { continue };
        let served = super::encap::slot(encap.kind, pool.cidr.is_ipv6()).and_then(|s| config.encaps.get(s)).is_some();
        if !served && warned.insert(pool.cidr) {
            tracing::warn!(
                subsys = "routes",
                pool = %pool.cidr,
                encapsulation = ?encap.kind,
                mode = ?encap.mode,
                "this node has no such encapsulation (they are set up at start): the pool's blocks are routed direct until the agent restarts"
            );
        }
    }
}

/// The pools or own blocks changed: classify by the new ones from now on
/// and have the source send every learned set again.
async fn reclassify<L: LearnedSource>(stage: &mut Stage, now: Classifier, source: &L) {
    if now != stage.classifier {
        stage.classifier = now;
        source.resend_learned().await;
    }
}

#[cfg(test)]
#[path = "stage_tests.rs"]
mod tests;
