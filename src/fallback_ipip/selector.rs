//! The path selector task: turns the learned routes (pool blocks of other
//! nodes with the pool's ipipMode, and plain learned prefixes) and the
//! liveness verdicts into routes — direct on the underlay or through the
//! tunnel — and keeps the userspace tunnel's block table in step.
//!
//! It works on changes: a batch of changed prefixes costs those prefixes
//! only (a million learned routes arrive as many batches; recomputing the
//! whole table per batch made convergence quadratic). Each prefix's direct
//! and tunnel routes are replaced in one step, so a block moving between
//! paths is replaced in place, never withdrawn.
//!
//! It keeps state only for the blocks whose path can change: blocks of
//! Always and CrossSubnet pools when this node has a tunnel (12 bytes each,
//! in a [`PrefixMap`]). Everything else — Never blocks, every block without
//! a tunnel, prefixes outside the pools, ECMP — is routed direct and goes
//! straight to the programmer, which holds the only copy. A liveness
//! verdict recomputes the stateful CrossSubnet blocks of the nodes whose
//! path it moved.
//!
//! Back-pressure: once 4096 routes are queued at the programmer unconfirmed,
//! the selector asks [`RouteSink::applied`]; once the open requests cover
//! two of the programmer's chunks it waits for the oldest before it queues
//! more, so the programmer always has its next chunk and at most a few turns
//! of routes wait for it; the backlog stays upstream, in the RIB's change
//! queue that coalesces per prefix.

use super::path::{self, Path};
use super::table::TunnelPeer;
use super::userspace::UserspaceTunnel;
use crate::config::IpipMode;
use crate::dataplane::{DesiredRoute, NextHop, Programmer, Route, RouteKind, RouteTarget};
use crate::prefix_map::PrefixMap;
use ipnetwork::{IpNetwork, Ipv4Network};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// A block of another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteBlock {
    pub block: Ipv4Network,
    pub node: Ipv4Addr,
    pub mode: IpipMode,
}

/// Everything learned from other nodes and routers: pool blocks, whose path
/// the selector chooses, and other prefixes (or prefixes with several next
/// hops, ECMP), which always go direct on the underlay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteRoutes {
    pub blocks: Vec<RemoteBlock>,
    pub direct: Vec<(IpNetwork, Vec<IpAddr>)>,
}

impl From<Vec<RemoteBlock>> for RemoteRoutes {
    fn from(blocks: Vec<RemoteBlock>) -> Self {
        RemoteRoutes { blocks, direct: Vec::new() }
    }
}

/// One learned prefix as the selector routes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// A pool block of another node: its path follows the pool's ipipMode.
    Block(RemoteBlock),
    /// Any other learned prefix: direct via its next hops (ECMP when several).
    Direct(Vec<IpAddr>),
}

/// Changed learned prefixes, for [`run`].
#[derive(Debug, Default)]
pub struct RemoteBatch {
    /// In order; `None`: the prefix is no longer learned.
    pub changes: Vec<(IpNetwork, Option<Remote>)>,
    /// Told once the resulting routes are queued at the programmer, so a
    /// following [`Programmer::applied`] covers them (latency measurement).
    pub queued: Option<oneshot::Sender<()>>,
}

impl From<RemoteRoutes> for RemoteBatch {
    /// Every route of `routes` as a change (e.g. the first batch).
    fn from(routes: RemoteRoutes) -> Self {
        let blocks = routes.blocks.into_iter().map(|b| (IpNetwork::V4(b.block), Some(Remote::Block(b))));
        let direct = routes.direct.into_iter().map(|(dst, hops)| (dst, Some(Remote::Direct(hops))));
        RemoteBatch { changes: blocks.chain(direct).collect(), queued: None }
    }
}

/// Where the selector's routes go: the route programmer (a fake in tests).
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

/// How packets enter the tunnel on this node.
#[derive(Clone)]
pub enum TunnelHandle {
    /// `<block> via <node> dev tunl0 onlink`.
    Kernel { ifindex: u32 },
    /// `<block> dev <tun>`, the node looked up by the encapsulator.
    Userspace(Arc<UserspaceTunnel>),
}

/// What the selector needs to know about this node.
#[derive(Clone)]
pub struct SelectorConfig {
    /// The node's address with its prefix length.
    pub local: Ipv4Network,
    /// The underlay interface that holds `local`.
    pub underlay_ifindex: u32,
    /// Absent when no pool uses IP-in-IP.
    pub tunnel: Option<TunnelHandle>,
}

/// Where the selector publishes.
pub struct SelectorOutputs {
    /// The path chosen per node with blocks whose path can change (Always
    /// and CrossSubnet blocks, with a tunnel): tunnel when any of its blocks
    /// is tunnelled. A node absent is reached directly.
    pub paths: watch::Sender<HashMap<Ipv4Addr, Path>>,
    /// The nodes worth probing (see [`probe_targets`]).
    pub targets: watch::Sender<Vec<Ipv4Addr>>,
}

/// The nodes worth probing: same-subnet peers of CrossSubnet pools.
pub fn probe_targets(local: Ipv4Network, blocks: &[RemoteBlock]) -> Vec<Ipv4Addr> {
    let mut t: Vec<Ipv4Addr> =
        blocks.iter().filter(|b| b.mode == IpipMode::CrossSubnet && local.contains(b.node)).map(|b| b.node).collect();
    t.sort();
    t.dedup();
    t
}

/// The kinds the selector owns at the programmer.
const KINDS: [RouteKind; 2] = [RouteKind::RemoteDirect, RouteKind::RemoteTunnel];

/// Changes collected in one turn: at most this many prefixes (give or take
/// a batch), so routes stream into the kernel while more are still being
/// learned. Also the most routes one `update_kinds` carries.
const TURN_MAX: usize = 32_768;

/// Routes queued at the programmer without confirmation before the selector
/// asks for one ([`RouteSink::applied`]).
const ACK_EVERY: usize = 4096;
/// Routes covered by open confirmation requests before the selector waits
/// for the oldest: two of the programmer's chunks (32 768 operations each),
/// one being written and the next built meanwhile. Counted in routes, not
/// requests: two requests open allowed as few as two turns, the programmer
/// wrote both in one chunk, and the kernel then idled for every round trip
/// (2-10 ms between chunks of 20-60 ms in a 100k-route table).
const IN_FLIGHT_ROUTES: usize = 65_536;

/// Runs until `updates` closes; publishes the path chosen per node and the
/// probe targets on `out`.
pub async fn run<S: RouteSink>(
    config: SelectorConfig,
    programmer: S,
    mut updates: mpsc::Receiver<RemoteBatch>,
    mut liveness: watch::Receiver<HashMap<Ipv4Addr, bool>>,
    out: SelectorOutputs,
) {
    let mut state = State::default();
    let mut outbox = Outbox { sink: programmer, confirming: Default::default(), unconfirmed: 0, in_flight: 0 };
    let mut alive = liveness.borrow_and_update().clone();
    let mut liveness_open = true;
    loop {
        let mut turn = Turn::default();
        tokio::select! {
            batch = updates.recv() => {
                let Some(batch) = batch else { return };
                let mut next = Some(batch);
                while let Some(batch) = next {
                    state.apply(&config, batch, &alive, &mut turn);
                    next = if turn.routes.len() < TURN_MAX { updates.try_recv().ok() } else { None };
                }
                state.blocks.maybe_shrink();
            }
            changed = liveness.changed(), if liveness_open => {
                if changed.is_err() {
                    // No prober (any more): keep following the learned routes alone.
                    liveness_open = false;
                    continue;
                }
                let now = liveness.borrow_and_update().clone();
                state.verdict(&config, &alive, &now, &mut turn);
                alive = now;
            }
        }
        // The encapsulator's table first, then the routes that point at it.
        if turn.blocks_changed
            && let Some(TunnelHandle::Userspace(t)) = &config.tunnel
        {
            let (peers, known) = state.tunnel_peers(&config, &alive);
            t.set_peers(&peers, &known);
        }
        outbox.send(turn.routes).await;
        for queued in turn.queued {
            let _ = queued.send(());
        }
        if turn.blocks_changed {
            state.publish(&config, &alive, &out);
        }
    }
}

/// The selector's side of the programmer's command channel: routes go out
/// at most [`TURN_MAX`] at a time, a confirmation is asked for once
/// [`ACK_EVERY`] are unconfirmed, and once the open requests cover
/// [`IN_FLIGHT_ROUTES`] the next send waits for the oldest. So at most about
/// `IN_FLIGHT_ROUTES + TURN_MAX + ACK_EVERY` routes of ours wait at the
/// programmer, and a slow kernel slows the selector, the follower and then
/// the RIB's coalescing queue rather than filling channels.
struct Outbox<S> {
    sink: S,
    /// Confirmation requests in flight, oldest first, with the routes each
    /// covers; each resolves once the routes sent before it are written.
    confirming: std::collections::VecDeque<(JoinHandle<()>, usize)>,
    /// Routes sent since the last confirmation request.
    unconfirmed: usize,
    /// Routes covered by the requests in `confirming`.
    in_flight: usize,
}

impl<S: RouteSink> Outbox<S> {
    async fn send(&mut self, mut routes: Vec<(IpNetwork, Option<DesiredRoute>)>) {
        while !routes.is_empty() {
            let rest = if routes.len() > TURN_MAX { routes.split_off(TURN_MAX) } else { Vec::new() };
            while self.in_flight >= IN_FLIGHT_ROUTES
                && let Some((oldest, covered)) = self.confirming.pop_front()
            {
                let _ = oldest.await;
                self.in_flight -= covered;
            }
            self.unconfirmed += routes.len();
            self.sink.update_kinds(KINDS.to_vec(), routes).await;
            if self.unconfirmed >= ACK_EVERY {
                let sink = self.sink.clone();
                self.confirming.push_back((tokio::spawn(async move { sink.applied().await }), self.unconfirmed));
                self.in_flight += self.unconfirmed;
                self.unconfirmed = 0;
            }
            routes = rest;
        }
    }
}

/// What one turn of [`run`] collected.
#[derive(Default)]
struct Turn {
    routes: Vec<(IpNetwork, Option<DesiredRoute>)>,
    /// A stateful block came, went or moved: republish paths, probe targets
    /// and the tunnel's table.
    blocks_changed: bool,
    queued: Vec<oneshot::Sender<()>>,
}

/// The blocks whose path can change and, per node, how many it has by
/// ipipMode (for the path per node and the probe targets without walking
/// every block). Only blocks of Always and CrossSubnet pools, and only with
/// a tunnel: every other learned prefix has one possible route.
#[derive(Default)]
struct State {
    /// Block → [`pack`]ed node and mode.
    blocks: PrefixMap,
    /// Per node: its stateful blocks by [`mode_index`].
    nodes: FxHashMap<Ipv4Addr, [u32; 2]>,
    /// Every node that announced a pool block of any mode: the userspace
    /// tunnel accepts encapsulated packets from them (a node whose own
    /// blocks are in a Never pool still tunnels to ours in an Always pool).
    /// One entry per node, never pruned: a removed node's address stays
    /// accepted until the agent restarts.
    seen: FxHashSet<Ipv4Addr>,
}

/// The ipipModes of stateful blocks, by index.
const MODES: [IpipMode; 2] = [IpipMode::Always, IpipMode::CrossSubnet];
const CROSS_SUBNET: usize = 1;

fn mode_index(mode: IpipMode) -> usize {
    match mode {
        IpipMode::CrossSubnet => CROSS_SUBNET,
        _ => 0,
    }
}

/// A stateful block's value: the node's address, its mode's index above.
fn pack(node: Ipv4Addr, mode: IpipMode) -> u64 {
    u64::from(u32::from(node)) | (mode_index(mode) as u64) << 32
}

fn unpack(value: u64) -> (Ipv4Addr, IpipMode) {
    (Ipv4Addr::from(value as u32), MODES[((value >> 32) & 1) as usize])
}

/// True when a block's path may change (and so the selector keeps it).
fn stateful(config: &SelectorConfig, mode: IpipMode) -> bool {
    config.tunnel.is_some() && mode != IpipMode::Never
}

impl State {
    fn count(&mut self, value: u64, add: bool) {
        let (node, mode) = unpack(value);
        let counts = self.nodes.entry(node).or_default();
        let i = mode_index(mode);
        if add {
            counts[i] += 1;
        } else {
            counts[i] = counts[i].saturating_sub(1);
            if *counts == [0; 2] {
                self.nodes.remove(&node);
            }
        }
    }

    /// Records the batch's changes and collects their routes into `turn`.
    fn apply(&mut self, config: &SelectorConfig, batch: RemoteBatch, alive: &HashMap<Ipv4Addr, bool>, turn: &mut Turn) {
        turn.routes.reserve(batch.changes.len());
        for (dst, r) in batch.changes {
            if let Some(Remote::Block(b)) = &r
                && self.seen.insert(b.node)
            {
                turn.blocks_changed = true;
            }
            let kept = match &r {
                Some(Remote::Block(b)) if stateful(config, b.mode) => Some(pack(b.node, b.mode)),
                _ => None,
            };
            let old = match kept {
                Some(value) => self.blocks.insert(dst, value),
                // Cheap when nothing is kept (every block direct).
                None if self.blocks.is_empty() => None,
                None => self.blocks.remove(&dst),
            };
            if kept.is_some() && old == kept {
                // Unchanged (e.g. the RIB resending every set after a pool change).
                continue;
            }
            if let Some(old) = old {
                self.count(old, false);
            }
            if let Some(new) = kept {
                self.count(new, true);
            }
            turn.blocks_changed |= old.is_some() || kept.is_some();
            // Stateless prefixes always go on: the programmer, which has
            // their only copy, drops what does not change anything.
            let wanted = r.and_then(|r| route(config, dst, r, alive));
            turn.routes.push((dst, wanted));
        }
        turn.queued.extend(batch.queued);
    }

    /// The liveness verdicts went from `before` to `after`: the CrossSubnet
    /// blocks of the nodes whose path moved are routed again.
    fn verdict(
        &self,
        config: &SelectorConfig,
        before: &HashMap<Ipv4Addr, bool>,
        after: &HashMap<Ipv4Addr, bool>,
        turn: &mut Turn,
    ) {
        let moved: FxHashSet<Ipv4Addr> = self
            .nodes
            .iter()
            .filter(|(node, counts)| {
                counts[CROSS_SUBNET] > 0
                    && block_path(config, IpipMode::CrossSubnet, **node, before)
                        != block_path(config, IpipMode::CrossSubnet, **node, after)
            })
            .map(|(node, _)| *node)
            .collect();
        if moved.is_empty() {
            return;
        }
        turn.blocks_changed = true;
        for (dst, value) in self.blocks.iter() {
            let (node, mode) = unpack(value);
            if let IpNetwork::V4(block) = dst
                && mode == IpipMode::CrossSubnet
                && moved.contains(&node)
            {
                turn.routes.push((dst, Some(block_route(config, block, node, mode, after))));
            }
        }
    }

    fn path_of(&self, config: &SelectorConfig, node: Ipv4Addr, alive: &HashMap<Ipv4Addr, bool>) -> Path {
        let counts = self.nodes.get(&node).copied().unwrap_or_default();
        let tunnel =
            MODES.iter().zip(counts).any(|(mode, n)| n > 0 && block_path(config, *mode, node, alive) == Path::Tunnel);
        if tunnel { Path::Tunnel } else { Path::Direct }
    }

    /// The userspace encapsulator's table: tunnelled blocks, and every node
    /// that announced a block (also those reached directly now: their side
    /// may be tunnelling to us).
    fn tunnel_peers(
        &self,
        config: &SelectorConfig,
        alive: &HashMap<Ipv4Addr, bool>,
    ) -> (Vec<TunnelPeer>, Vec<Ipv4Addr>) {
        let peers = self
            .blocks
            .iter()
            .filter_map(|(dst, value)| {
                let (node, mode) = unpack(value);
                match dst {
                    IpNetwork::V4(block) if block_path(config, mode, node, alive) == Path::Tunnel => {
                        Some(TunnelPeer { block, node })
                    }
                    _ => None,
                }
            })
            .collect();
        (peers, self.seen.iter().copied().collect())
    }

    fn publish(&self, config: &SelectorConfig, alive: &HashMap<Ipv4Addr, bool>, out: &SelectorOutputs) {
        let chosen: HashMap<Ipv4Addr, Path> =
            self.nodes.keys().map(|node| (*node, self.path_of(config, *node, alive))).collect();
        let before = out.paths.borrow().clone();
        for (node, path) in &chosen {
            if before.get(node) != Some(path) {
                tracing::info!(subsys = "ipip", node = %node, path = ?path, "path to node chosen");
            }
        }
        out.paths.send_if_modified(|old| {
            let changed = *old != chosen;
            if changed {
                *old = chosen;
            }
            changed
        });
        let mut targets: Vec<Ipv4Addr> = self
            .nodes
            .iter()
            .filter(|(node, counts)| counts[CROSS_SUBNET] > 0 && config.local.contains(**node))
            .map(|(node, _)| *node)
            .collect();
        targets.sort();
        out.targets.send_if_modified(|old| {
            let changed = *old != targets;
            if changed {
                *old = targets;
            }
            changed
        });
    }
}

fn block_path(config: &SelectorConfig, mode: IpipMode, node: Ipv4Addr, alive: &HashMap<Ipv4Addr, bool>) -> Path {
    match path::choose(mode, config.local, node, alive.get(&node).copied()) {
        Path::Tunnel if config.tunnel.is_none() => Path::Direct,
        p => p,
    }
}

/// The route a learned prefix gets now.
fn route(config: &SelectorConfig, dst: IpNetwork, r: Remote, alive: &HashMap<Ipv4Addr, bool>) -> Option<DesiredRoute> {
    match r {
        Remote::Direct(hops) => plain_direct(dst, &hops),
        Remote::Block(b) => Some(block_route(config, b.block, b.node, b.mode, alive)),
    }
}

/// A block's route: direct via its node on the underlay, or into the tunnel.
fn block_route(
    config: &SelectorConfig,
    block: Ipv4Network,
    node: Ipv4Addr,
    mode: IpipMode,
    alive: &HashMap<Ipv4Addr, bool>,
) -> DesiredRoute {
    let gateway = IpAddr::V4(node);
    let (target, kind) = match (block_path(config, mode, node, alive), &config.tunnel) {
        (Path::Tunnel, Some(TunnelHandle::Kernel { ifindex })) => {
            (RouteTarget::Via(NextHop { gateway, ifindex: Some(*ifindex), onlink: true }), RouteKind::RemoteTunnel)
        }
        (Path::Tunnel, Some(TunnelHandle::Userspace(t))) => {
            (RouteTarget::Device { ifindex: t.ifindex() }, RouteKind::RemoteTunnel)
        }
        _ => (
            RouteTarget::Via(NextHop { gateway, ifindex: Some(config.underlay_ifindex), onlink: false }),
            RouteKind::RemoteDirect,
        ),
    };
    DesiredRoute { route: Route { dst: block.into(), target, mtu: None }, kind }
}

/// A learned route that bypasses path selection: `<dst> via <hops>` (ECMP
/// when several), the kernel resolving the interfaces.
fn plain_direct(dst: IpNetwork, hops: &[IpAddr]) -> Option<DesiredRoute> {
    let hop = |gateway| NextHop { gateway, ifindex: None, onlink: false };
    let target = match hops {
        // The common case, without a vector.
        [one] => RouteTarget::Via(hop(*one)),
        _ => RouteTarget::from_next_hops(hops.iter().map(|g| hop(*g)).collect())?,
    };
    Some(DesiredRoute { route: Route { dst, target, mtu: None }, kind: RouteKind::RemoteDirect })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::sync::Semaphore;

    const TUNL: u32 = 99;
    const UNDERLAY: u32 = 2;

    fn config(tunnel: bool) -> SelectorConfig {
        SelectorConfig {
            local: "10.0.0.5/24".parse().unwrap(),
            underlay_ifindex: UNDERLAY,
            tunnel: tunnel.then_some(TunnelHandle::Kernel { ifindex: TUNL }),
        }
    }

    fn block(prefix: &str, node: &str, mode: IpipMode) -> (IpNetwork, Option<Remote>) {
        let block: Ipv4Network = prefix.parse().unwrap();
        (block.into(), Some(Remote::Block(RemoteBlock { block, node: node.parse().unwrap(), mode })))
    }

    fn apply(
        state: &mut State,
        config: &SelectorConfig,
        changes: Vec<(IpNetwork, Option<Remote>)>,
        alive: &HashMap<Ipv4Addr, bool>,
    ) -> Turn {
        let mut turn = Turn::default();
        state.apply(config, RemoteBatch { changes, queued: None }, alive, &mut turn);
        turn
    }

    /// (prefix, kind, gateway, ifindex) per route of the turn; `None` for a removal.
    fn routes(turn: &Turn) -> Vec<(String, Option<(RouteKind, String)>)> {
        turn.routes
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
            .collect()
    }

    fn direct(gw: &str) -> Option<(RouteKind, String)> {
        Some((RouteKind::RemoteDirect, format!("{gw} dev Some({UNDERLAY})")))
    }

    fn tunnel(gw: &str) -> Option<(RouteKind, String)> {
        Some((RouteKind::RemoteTunnel, format!("{gw} dev Some({TUNL})")))
    }

    #[test]
    fn never_blocks_direct_routes_and_blocks_without_a_tunnel_leave_no_state() {
        let alive = HashMap::new();
        let mut state = State::default();
        let turn = apply(
            &mut state,
            &config(true),
            vec![
                block("10.244.1.0/26", "10.0.0.6", IpipMode::Never),
                ("192.0.2.0/24".parse().unwrap(), Some(Remote::Direct(vec!["10.0.0.1".parse().unwrap()]))),
            ],
            &alive,
        );
        assert_eq!(
            routes(&turn),
            [
                ("10.244.1.0/26".into(), direct("10.0.0.6")),
                ("192.0.2.0/24".into(), Some((RouteKind::RemoteDirect, "10.0.0.1 dev None".into()))),
            ]
        );
        assert!(state.blocks.is_empty() && state.nodes.is_empty());
        // The node is a tunnel source from now on (its side may tunnel to our blocks) ...
        assert!(turn.blocks_changed, "a new node for the tunnel table");
        assert_eq!(state.tunnel_peers(&config(true), &alive).1, ["10.0.0.6".parse::<Ipv4Addr>().unwrap()]);
        // ... and another of its blocks changes nothing there.
        let turn = apply(&mut state, &config(true), vec![block("10.244.3.0/26", "10.0.0.6", IpipMode::Never)], &alive);
        assert!(!turn.blocks_changed, "nothing to publish");
        assert!(state.blocks.is_empty(), "still no per-prefix state");

        // Without a tunnel even Always blocks have one possible path.
        let mut state = State::default();
        let turn =
            apply(&mut state, &config(false), vec![block("10.244.2.0/26", "10.9.0.7", IpipMode::Always)], &alive);
        assert_eq!(routes(&turn), [("10.244.2.0/26".into(), direct("10.9.0.7"))]);
        assert!(state.blocks.is_empty() && state.nodes.is_empty());
    }

    #[test]
    fn a_cross_subnet_block_moves_to_the_tunnel_on_a_dead_verdict_and_back() {
        let config = config(true);
        let mut alive = HashMap::new();
        let mut state = State::default();
        let turn = apply(
            &mut state,
            &config,
            vec![
                block("10.244.1.0/26", "10.0.0.6", IpipMode::CrossSubnet),
                block("10.244.1.64/26", "10.0.0.6", IpipMode::CrossSubnet),
                block("10.244.2.0/26", "10.0.0.7", IpipMode::CrossSubnet),
                block("10.244.3.0/26", "10.0.0.6", IpipMode::Always),
                block("10.244.4.0/26", "10.9.0.8", IpipMode::CrossSubnet),
            ],
            &alive,
        );
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
        assert!(turn.blocks_changed);
        assert_eq!(state.blocks.len(), 5);
        assert_eq!(state.nodes.get(&"10.0.0.6".parse().unwrap()), Some(&[1, 2]));

        // 10.0.0.6's direct path dies: its CrossSubnet blocks move, nothing else is touched.
        let dead: HashMap<Ipv4Addr, bool> = [("10.0.0.6".parse().unwrap(), false)].into();
        let mut turn = Turn::default();
        state.verdict(&config, &alive, &dead, &mut turn);
        let mut moved = routes(&turn);
        moved.sort();
        assert_eq!(
            moved,
            [("10.244.1.0/26".into(), tunnel("10.0.0.6")), ("10.244.1.64/26".into(), tunnel("10.0.0.6"))]
        );
        assert!(turn.blocks_changed);
        alive = dead;
        assert_eq!(state.path_of(&config, "10.0.0.6".parse().unwrap(), &alive), Path::Tunnel);

        // A verdict that moves no path costs nothing.
        let same: HashMap<Ipv4Addr, bool> =
            [("10.0.0.6".parse().unwrap(), false), ("10.0.0.7".parse().unwrap(), true)].into();
        let mut turn = Turn::default();
        state.verdict(&config, &alive, &same, &mut turn);
        assert!(turn.routes.is_empty() && !turn.blocks_changed);

        // It answers again: back to direct.
        let up: HashMap<Ipv4Addr, bool> = [("10.0.0.6".parse().unwrap(), true)].into();
        let mut turn = Turn::default();
        state.verdict(&config, &alive, &up, &mut turn);
        let mut moved = routes(&turn);
        moved.sort();
        assert_eq!(
            moved,
            [("10.244.1.0/26".into(), direct("10.0.0.6")), ("10.244.1.64/26".into(), direct("10.0.0.6"))]
        );
    }

    #[test]
    fn a_block_whose_pool_turns_never_loses_its_state_and_is_replaced_not_deleted() {
        let config = config(true);
        let alive: HashMap<Ipv4Addr, bool> = [("10.0.0.6".parse().unwrap(), false)].into();
        let mut state = State::default();
        let turn = apply(&mut state, &config, vec![block("10.244.1.0/26", "10.0.0.6", IpipMode::CrossSubnet)], &alive);
        assert_eq!(routes(&turn), [("10.244.1.0/26".into(), tunnel("10.0.0.6"))]);

        // The same set again (the RIB resending everything): nothing to do.
        let turn = apply(&mut state, &config, vec![block("10.244.1.0/26", "10.0.0.6", IpipMode::CrossSubnet)], &alive);
        assert!(turn.routes.is_empty() && !turn.blocks_changed);

        let turn = apply(&mut state, &config, vec![block("10.244.1.0/26", "10.0.0.6", IpipMode::Never)], &alive);
        assert_eq!(routes(&turn), [("10.244.1.0/26".into(), direct("10.0.0.6"))], "replaced by the direct route");
        assert!(turn.blocks_changed, "the node's path is republished");
        assert!(state.blocks.is_empty() && state.nodes.is_empty());
    }

    #[test]
    fn a_withdrawn_or_reclassified_block_frees_its_state_and_its_nodes_count() {
        let config = config(true);
        let alive = HashMap::new();
        let mut state = State::default();
        apply(
            &mut state,
            &config,
            vec![
                block("10.244.1.0/26", "10.0.0.6", IpipMode::Always),
                block("10.244.2.0/26", "10.0.0.7", IpipMode::CrossSubnet),
            ],
            &alive,
        );
        assert_eq!(state.nodes.len(), 2);
        let turn = apply(&mut state, &config, vec![("10.244.1.0/26".parse().unwrap(), None)], &alive);
        assert_eq!(routes(&turn), [("10.244.1.0/26".into(), None)]);
        assert!(turn.blocks_changed);
        assert!(!state.nodes.contains_key(&"10.0.0.6".parse().unwrap()));

        // ECMP now: a plain direct route, and the node is gone.
        let hops = vec!["10.0.0.7".parse().unwrap(), "10.0.0.8".parse().unwrap()];
        let turn =
            apply(&mut state, &config, vec![("10.244.2.0/26".parse().unwrap(), Some(Remote::Direct(hops)))], &alive);
        assert!(matches!(turn.routes[0].1.as_ref().unwrap().route.target, RouteTarget::Multipath(_)));
        assert!(state.blocks.is_empty() && state.nodes.is_empty());

        // Withdrawing what was never stateful still reaches the programmer.
        let turn = apply(&mut state, &config, vec![("192.0.2.0/24".parse().unwrap(), None)], &alive);
        assert_eq!(routes(&turn), [("192.0.2.0/24".into(), None)]);
        assert!(!turn.blocks_changed);
    }

    #[test]
    fn a_blocks_node_and_mode_fit_the_prefix_maps_value() {
        assert_eq!(
            unpack(pack("10.0.0.6".parse().unwrap(), IpipMode::CrossSubnet)),
            ("10.0.0.6".parse().unwrap(), IpipMode::CrossSubnet)
        );
        assert_eq!(
            unpack(pack("255.255.255.255".parse().unwrap(), IpipMode::Always)),
            ("255.255.255.255".parse().unwrap(), IpipMode::Always)
        );
        assert!(pack(Ipv4Addr::BROADCAST, IpipMode::CrossSubnet) <= crate::prefix_map::VALUE_MAX);
    }

    /// Records the routes of each `update_kinds`; `applied` waits for a permit.
    #[derive(Clone)]
    struct FakeSink {
        sent: Arc<Mutex<Vec<usize>>>,
        permits: Arc<Semaphore>,
    }

    impl Default for FakeSink {
        fn default() -> Self {
            FakeSink { sent: Arc::default(), permits: Arc::new(Semaphore::new(0)) }
        }
    }

    impl RouteSink for FakeSink {
        async fn update_kinds(&self, _kinds: Vec<RouteKind>, changes: Vec<(IpNetwork, Option<DesiredRoute>)>) {
            self.sent.lock().unwrap().push(changes.len());
        }
        async fn applied(&self) {
            self.permits.acquire().await.unwrap().forget();
        }
    }

    fn direct_batch(from: u32, n: u32) -> RemoteBatch {
        let changes = (from..from + n)
            .map(|i| {
                let dst = IpNetwork::V4(Ipv4Network::new(Ipv4Addr::from(0x6440_0000 + i), 32).unwrap());
                (dst, Some(Remote::Direct(vec!["10.0.0.1".parse().unwrap()])))
            })
            .collect();
        RemoteBatch { changes, queued: None }
    }

    /// The route counts of every `update_kinds` once at least `total` routes went (polled, with a deadline).
    async fn sent_at_least(sink: &FakeSink, total: usize) -> Vec<usize> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let sent = sink.sent.lock().unwrap().clone();
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
        sink.sent.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn the_selector_waits_for_the_programmer_once_two_chunks_are_unconfirmed() {
        let sink = FakeSink::default();
        let (tx, rx) = mpsc::channel(4);
        let (_verdicts_tx, verdicts_rx) = watch::channel(HashMap::new());
        let (paths_tx, paths_rx) = watch::channel(HashMap::new());
        let (targets_tx, _targets_rx) = watch::channel(Vec::new());
        let outputs = SelectorOutputs { paths: paths_tx, targets: targets_tx };
        tokio::spawn(run(config(true), sink.clone(), rx, verdicts_rx, outputs));

        // Small turns go on without confirmation.
        tx.send(direct_batch(0, 10)).await.unwrap();
        tx.send(direct_batch(10, 10)).await.unwrap();
        let sent = sent_at_least(&sink, 20).await;
        assert_eq!(sent.iter().sum::<usize>(), 20, "{sent:?}");

        // Larger ones ask for confirmation each; the budget is in routes, so
        // three requests open hold nothing back (two requests once did, and
        // the kernel idled between turns this small).
        let mut total = 20;
        for k in 0..3 {
            tx.send(direct_batch(1000 + k * 10_000, ACK_EVERY as u32 + 1000)).await.unwrap();
            total += ACK_EVERY + 1000;
            assert_eq!(sent_at_least(&sink, total).await.iter().sum::<usize>(), total, "request {k} open");
        }
        // They go on until the open requests cover two chunks' worth...
        let half = (IN_FLIGHT_ROUTES / 2) as u32;
        for k in 0..2 {
            tx.send(direct_batch(100_000 + k * 100_000, half)).await.unwrap();
            total += half as usize;
            assert_eq!(sent_at_least(&sink, total).await.iter().sum::<usize>(), total);
        }
        // ...then nothing more until enough of the oldest are answered.
        tx.send(direct_batch(300_000, 7)).await.unwrap();
        assert_eq!(sent_after_a_while(&sink).await.iter().sum::<usize>(), total, "held back");
        sink.permits.add_permits(1);
        assert_eq!(sent_after_a_while(&sink).await.iter().sum::<usize>(), total, "still over the budget");
        sink.permits.add_permits(3);
        total += 7;
        assert_eq!(sent_at_least(&sink, total).await.iter().sum::<usize>(), total);

        // A turn beyond TURN_MAX goes out in pieces, each waiting its turn:
        // the first brings the open requests to two chunks again.
        tx.send(direct_batch(400_000, TURN_MAX as u32 + 1000)).await.unwrap();
        let sent = sent_after_a_while(&sink).await;
        assert!(sent.iter().all(|n| *n <= TURN_MAX), "{sent:?}");
        assert_eq!(sent.iter().sum::<usize>(), total + TURN_MAX, "the second piece is held back: {sent:?}");
        sink.permits.add_permits(8);
        total += TURN_MAX + 1000;
        assert_eq!(sent_at_least(&sink, total).await.iter().sum::<usize>(), total);
        assert!(paths_rx.borrow().is_empty(), "no node has blocks whose path can change");
    }

    #[tokio::test]
    async fn only_nodes_with_blocks_whose_path_can_change_get_a_published_path() {
        let sink = FakeSink::default();
        let (tx, rx) = mpsc::channel(4);
        let (verdicts_tx, verdicts_rx) = watch::channel(HashMap::new());
        let (paths_tx, mut paths_rx) = watch::channel(HashMap::new());
        let (targets_tx, mut targets_rx) = watch::channel(Vec::new());
        let outputs = SelectorOutputs { paths: paths_tx, targets: targets_tx };
        tokio::spawn(run(config(true), sink.clone(), rx, verdicts_rx, outputs));
        let changes = vec![
            block("10.244.1.0/26", "10.0.0.6", IpipMode::CrossSubnet),
            block("10.244.2.0/26", "10.9.0.7", IpipMode::CrossSubnet),
            block("10.244.3.0/26", "10.0.0.8", IpipMode::Never),
        ];
        tx.send(RemoteBatch { changes, queued: None }).await.unwrap();
        let wait = Duration::from_secs(5);
        tokio::time::timeout(wait, paths_rx.wait_for(|p| p.len() == 2)).await.unwrap().unwrap();
        let want: HashMap<Ipv4Addr, Path> =
            [("10.0.0.6".parse().unwrap(), Path::Direct), ("10.9.0.7".parse().unwrap(), Path::Tunnel)].into();
        assert_eq!(*paths_rx.borrow(), want, "10.0.0.8 (Never) is absent: reached directly");
        let targets =
            tokio::time::timeout(wait, targets_rx.wait_for(|t| !t.is_empty())).await.unwrap().unwrap().clone();
        assert_eq!(targets, ["10.0.0.6".parse::<Ipv4Addr>().unwrap()]);

        verdicts_tx.send_replace([("10.0.0.6".parse().unwrap(), false)].into());
        tokio::time::timeout(wait, paths_rx.wait_for(|p| p.get(&"10.0.0.6".parse().unwrap()) == Some(&Path::Tunnel)))
            .await
            .unwrap()
            .unwrap();
    }
}
