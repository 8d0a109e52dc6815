//! The path selector task: turns the learned routes (pool blocks of other
//! nodes with the pool's ipipMode, and plain learned prefixes) and the
//! liveness verdicts into routes — direct on the underlay or through the
//! tunnel — and keeps the userspace tunnel's block table in step.
//!
//! It works on changes: a batch of changed prefixes costs those prefixes
//! only (a million learned routes arrive as many batches; recomputing the
//! whole table per batch made convergence quadratic). A liveness verdict,
//! which may move every block of a node, recomputes all. Each prefix's
//! direct and tunnel routes are replaced in one step, so a block moving
//! between paths is replaced in place, never withdrawn.

use super::path::{self, Path};
use super::table::TunnelPeer;
use super::userspace::UserspaceTunnel;
use crate::config::IpipMode;
use crate::dataplane::{DesiredRoute, NextHop, Programmer, Route, RouteKind, RouteTarget};
use ipnetwork::{IpNetwork, Ipv4Network};
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

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
    /// Forget every prefix before applying `changes` (start, pools changed).
    pub reset: bool,
    /// In order; `None`: the prefix is no longer learned.
    pub changes: Vec<(IpNetwork, Option<Remote>)>,
    /// Told once the resulting routes are queued at the programmer, so a
    /// following [`Programmer::applied`] covers them (latency measurement).
    pub queued: Option<oneshot::Sender<()>>,
}

impl From<RemoteRoutes> for RemoteBatch {
    /// The whole learned set, replacing whatever the selector had.
    fn from(routes: RemoteRoutes) -> Self {
        let blocks = routes.blocks.into_iter().map(|b| (IpNetwork::V4(b.block), Some(Remote::Block(b))));
        let direct = routes.direct.into_iter().map(|(dst, hops)| (dst, Some(Remote::Direct(hops))));
        RemoteBatch { reset: true, changes: blocks.chain(direct).collect(), queued: None }
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
    /// The path chosen per node (tunnel when any of its blocks is tunnelled).
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

/// Changes collected in one turn: at most this many prefixes, so routes
/// stream into the kernel while more are still being learned.
const TURN_MAX: usize = 32_768;

/// Runs until `updates` closes; publishes the path chosen per node and the
/// probe targets on `out`.
pub async fn run(
    config: SelectorConfig,
    programmer: Programmer,
    mut updates: mpsc::Receiver<RemoteBatch>,
    mut liveness: watch::Receiver<HashMap<Ipv4Addr, bool>>,
    out: SelectorOutputs,
) {
    let mut state = State::default();
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
            }
            changed = liveness.changed(), if liveness_open => {
                if changed.is_err() {
                    // No prober (any more): keep following the learned routes alone.
                    liveness_open = false;
                    continue;
                }
                alive = liveness.borrow_and_update().clone();
                turn.routes = state.remote.iter().map(|(dst, r)| (*dst, route(&config, *dst, r, &alive))).collect();
                turn.blocks_changed = true;
            }
        }
        // The encapsulator's table first, then the routes that point at it.
        if turn.blocks_changed
            && let Some(TunnelHandle::Userspace(t)) = &config.tunnel
        {
            let (peers, known) = state.tunnel_peers(&config, &alive);
            t.set_peers(&peers, &known);
        }
        programmer.update_kinds(KINDS.to_vec(), turn.routes).await;
        for queued in turn.queued {
            let _ = queued.send(());
        }
        if turn.blocks_changed || turn.reset {
            state.publish(&config, &alive, &out);
        }
    }
}

/// What one turn of [`run`] collected.
#[derive(Default)]
struct Turn {
    routes: Vec<(IpNetwork, Option<DesiredRoute>)>,
    blocks_changed: bool,
    reset: bool,
    queued: Vec<oneshot::Sender<()>>,
}

/// The learned prefixes and, per node, how many blocks it has by ipipMode
/// (for the path per node and the probe targets without walking every block).
#[derive(Default)]
struct State {
    remote: FxHashMap<IpNetwork, Remote>,
    nodes: FxHashMap<Ipv4Addr, [usize; 3]>,
}

const MODES: [IpipMode; 3] = [IpipMode::Always, IpipMode::CrossSubnet, IpipMode::Never];

fn mode_index(mode: IpipMode) -> usize {
    match mode {
        IpipMode::Always => 0,
        IpipMode::CrossSubnet => 1,
        IpipMode::Never => 2,
    }
}

impl State {
    fn count(&mut self, r: &Remote, add: bool) {
        let Remote::Block(b) = r else { return };
        let counts = self.nodes.entry(b.node).or_default();
        let i = mode_index(b.mode);
        if add {
            counts[i] += 1;
        } else {
            counts[i] = counts[i].saturating_sub(1);
            if *counts == [0; 3] {
                self.nodes.remove(&b.node);
            }
        }
    }

    /// Records one prefix; false when nothing changed.
    fn set(&mut self, dst: IpNetwork, r: Option<Remote>, turn: &mut Turn) -> bool {
        if self.remote.get(&dst) == r.as_ref() {
            return false;
        }
        let block = matches!(r, Some(Remote::Block(_)));
        let old = match r {
            Some(r) => {
                self.count(&r, true);
                self.remote.insert(dst, r)
            }
            None => self.remote.remove(&dst),
        };
        if let Some(old) = old {
            turn.blocks_changed |= matches!(old, Remote::Block(_));
            self.count(&old, false);
        }
        turn.blocks_changed |= block;
        true
    }

    fn apply(&mut self, config: &SelectorConfig, batch: RemoteBatch, alive: &HashMap<Ipv4Addr, bool>, turn: &mut Turn) {
        if batch.reset {
            let before = std::mem::take(&mut self.remote);
            self.nodes.clear();
            turn.reset = true;
            turn.blocks_changed = true;
            for (dst, r) in batch.changes.into_iter().filter_map(|(dst, r)| Some((dst, r?))) {
                let wanted = route(config, dst, &r, alive);
                if before.get(&dst) != Some(&r) {
                    turn.routes.push((dst, wanted));
                }
                self.count(&r, true);
                self.remote.insert(dst, r);
            }
            turn.routes.extend(before.into_keys().filter(|dst| !self.remote.contains_key(dst)).map(|dst| (dst, None)));
        } else {
            for (dst, r) in batch.changes {
                let wanted = r.as_ref().and_then(|r| route(config, dst, r, alive));
                if self.set(dst, r, turn) {
                    turn.routes.push((dst, wanted));
                }
            }
        }
        turn.queued.extend(batch.queued);
    }

    fn path_of(&self, config: &SelectorConfig, node: Ipv4Addr, alive: &HashMap<Ipv4Addr, bool>) -> Path {
        let counts = self.nodes.get(&node).copied().unwrap_or_default();
        let tunnel =
            MODES.iter().zip(counts).any(|(mode, n)| n > 0 && block_path(config, *mode, node, alive) == Path::Tunnel);
        if tunnel { Path::Tunnel } else { Path::Direct }
    }

    /// The userspace encapsulator's table: tunnelled blocks, and every known
    /// node (also those reached directly: their side may be tunnelling to us).
    fn tunnel_peers(
        &self,
        config: &SelectorConfig,
        alive: &HashMap<Ipv4Addr, bool>,
    ) -> (Vec<TunnelPeer>, Vec<Ipv4Addr>) {
        let peers = self
            .remote
            .values()
            .filter_map(|r| match r {
                Remote::Block(b) if block_path(config, b.mode, b.node, alive) == Path::Tunnel => {
                    Some(TunnelPeer { block: b.block, node: b.node })
                }
                _ => None,
            })
            .collect();
        (peers, self.nodes.keys().copied().collect())
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
            .filter(|(node, counts)| counts[mode_index(IpipMode::CrossSubnet)] > 0 && config.local.contains(**node))
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
fn route(config: &SelectorConfig, dst: IpNetwork, r: &Remote, alive: &HashMap<Ipv4Addr, bool>) -> Option<DesiredRoute> {
    let b = match r {
        Remote::Direct(hops) => return plain_direct(dst, hops),
        Remote::Block(b) => b,
    };
    let gateway = IpAddr::V4(b.node);
    let (target, kind) = match (block_path(config, b.mode, b.node, alive), &config.tunnel) {
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
    Some(DesiredRoute { route: Route { dst: b.block.into(), target, mtu: None }, kind })
}

/// A learned route that bypasses path selection: `<dst> via <hops>` (ECMP
/// when several), the kernel resolving the interfaces.
fn plain_direct(dst: IpNetwork, hops: &[IpAddr]) -> Option<DesiredRoute> {
    let hops = hops.iter().map(|&gateway| NextHop { gateway, ifindex: None, onlink: false }).collect();
    Some(DesiredRoute {
        route: Route { dst, target: RouteTarget::from_next_hops(hops)?, mtu: None },
        kind: RouteKind::RemoteDirect,
    })
}
