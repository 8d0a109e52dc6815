//! The path selector task: turns the remote blocks learned (block → node,
//! with the pool's ipipMode) and the liveness verdicts into routes — direct
//! on the underlay or through the tunnel — and keeps the userspace
//! tunnel's block table in step. One replace per change, so a block moving
//! between paths is replaced in place, never withdrawn.

use super::path::{self, Path};
use super::table::TunnelPeer;
use super::userspace::UserspaceTunnel;
use crate::config::IpipMode;
use crate::dataplane::{DesiredRoute, NextHop, Programmer, Route, RouteKind, RouteTarget};
use ipnetwork::{IpNetwork, Ipv4Network};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use tokio::sync::watch;

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

/// The nodes worth probing: same-subnet peers of CrossSubnet pools.
pub fn probe_targets(local: Ipv4Network, blocks: &[RemoteBlock]) -> Vec<Ipv4Addr> {
    let mut t: Vec<Ipv4Addr> =
        blocks.iter().filter(|b| b.mode == IpipMode::CrossSubnet && local.contains(b.node)).map(|b| b.node).collect();
    t.sort();
    t.dedup();
    t
}

/// Runs until `blocks` closes; publishes the path chosen per node on `paths`.
pub async fn run(
    config: SelectorConfig,
    programmer: Programmer,
    mut blocks: watch::Receiver<RemoteRoutes>,
    mut liveness: watch::Receiver<HashMap<Ipv4Addr, bool>>,
    paths: watch::Sender<HashMap<Ipv4Addr, Path>>,
) {
    loop {
        let current = blocks.borrow_and_update().clone();
        let alive = liveness.borrow_and_update().clone();
        // compute() updates the encapsulator's table before the routes point at it.
        let (mut direct, tunnel, chosen) = compute(&config, &current.blocks, &alive);
        direct.extend(current.direct.iter().filter_map(|(dst, hops)| plain_direct(*dst, hops)));
        programmer.replace_kinds(vec![(RouteKind::RemoteDirect, direct), (RouteKind::RemoteTunnel, tunnel)]).await;
        let before = paths.borrow().clone();
        for (node, path) in &chosen {
            if before.get(node) != Some(path) {
                tracing::info!(subsys = "ipip", node = %node, path = ?path, "path to node chosen");
            }
        }
        paths.send_replace(chosen);
        tokio::select! {
            changed = blocks.changed() => if changed.is_err() { return },
            changed = liveness.changed() => if changed.is_err() {
                // No prober (any more): keep following the blocks alone.
                if blocks.changed().await.is_err() { return }
            },
        }
    }
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

type Computed = (Vec<DesiredRoute>, Vec<DesiredRoute>, HashMap<Ipv4Addr, Path>);

fn compute(config: &SelectorConfig, blocks: &[RemoteBlock], alive: &HashMap<Ipv4Addr, bool>) -> Computed {
    let (mut direct, mut tunnel, mut peers, mut chosen) = (Vec::new(), Vec::new(), Vec::new(), HashMap::new());
    for b in blocks {
        let mut path = path::choose(b.mode, config.local, b.node, alive.get(&b.node).copied());
        if path == Path::Tunnel && config.tunnel.is_none() {
            path = Path::Direct;
        }
        chosen.insert(b.node, path);
        let dst = b.block.into();
        match (path, &config.tunnel) {
            (Path::Tunnel, Some(TunnelHandle::Kernel { ifindex })) => tunnel.push(DesiredRoute {
                route: Route {
                    dst,
                    target: RouteTarget::Via(NextHop {
                        gateway: IpAddr::V4(b.node),
                        ifindex: Some(*ifindex),
                        onlink: true,
                    }),
                    mtu: None,
                },
                kind: RouteKind::RemoteTunnel,
            }),
            (Path::Tunnel, Some(TunnelHandle::Userspace(t))) => {
                peers.push(TunnelPeer { block: b.block, node: b.node });
                tunnel.push(DesiredRoute {
                    route: Route { dst, target: RouteTarget::Device { ifindex: t.ifindex() }, mtu: None },
                    kind: RouteKind::RemoteTunnel,
                });
            }
            _ => direct.push(DesiredRoute {
                route: Route {
                    dst,
                    target: RouteTarget::Via(NextHop {
                        gateway: IpAddr::V4(b.node),
                        ifindex: Some(config.underlay_ifindex),
                        onlink: false,
                    }),
                    mtu: None,
                },
                kind: RouteKind::RemoteDirect,
            }),
        }
    }
    // Keep accepting encapsulated packets from every node we know, also
    // those we currently reach directly: their side may be tunnelling to us.
    let known: Vec<Ipv4Addr> = blocks.iter().map(|b| b.node).collect();
    if let Some(TunnelHandle::Userspace(t)) = &config.tunnel {
        t.set_peers(&peers, &known);
    }
    (direct, tunnel, chosen)
}
