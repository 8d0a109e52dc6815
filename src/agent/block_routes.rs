//! The remote routes when BGP is off (Calico's VXLAN-only mode): computed from the agent's
//! pictures of the blocks and the Nodes instead of learned. Every block affine to another node
//! is routed via that node's underlay address of the block's family, every address another node
//! borrowed from a block not its own via that node as a /32 (/128); nothing for this node's own
//! blocks or addresses. They leave
//! as the RIB's best-path changes do, so the same remote-routes stage takes either.

use super::blocks::KnownBlocks;
use super::picture::Known;
use crate::bgp::rib::{Addrs, BEST_PATH_BATCH, BestPathChange};
use crate::datastore::resources::{IpamBlock, Node};
use crate::ipam::block_math::ip_at;
use crate::ipam::block_ops::handle_at;
use crate::ipam::claim::HOST_AFFINITY_PREFIX;
use crate::ipam::routes::NODE_ATTRIBUTE;
use crate::remote_routes::LearnedSource;
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use tokio::sync::{mpsc, watch};

/// Asks the block-routes task to send its whole current set again.
#[derive(Clone)]
pub struct BlockRoutesHandle {
    resend: mpsc::Sender<()>,
}

impl LearnedSource for BlockRoutesHandle {
    async fn resend_learned(&self) {
        // Full: a resend is pending already, and it will send the set as it is then.
        let _ = self.resend.try_send(());
    }
}

/// The task computing the routes for `node` from the agent's pictures of the blocks and the
/// Nodes and sending their changes on `out` until `stop` changes or `out` is closed, and the
/// handle to ask it for the whole set again.
pub fn block_routes(
    blocks: watch::Receiver<Option<KnownBlocks>>,
    nodes: watch::Receiver<Option<Known<Node>>>,
    node: String,
    out: mpsc::Sender<Vec<BestPathChange>>,
    stop: watch::Receiver<bool>,
) -> (BlockRoutesHandle, impl Future<Output = ()> + Send + 'static) {
    let (resend_tx, resend_rx) = mpsc::channel(1);
    (BlockRoutesHandle { resend: resend_tx }, follow(blocks, nodes, node, out, resend_rx, stop))
}

/// Reads nothing from the datastore: the pictures are kept by their own watches, and a burst
/// of changes (pods starting everywhere) is one recomputation, of the pictures as they are then.
async fn follow(
    mut blocks: watch::Receiver<Option<KnownBlocks>>,
    mut nodes: watch::Receiver<Option<Known<Node>>>,
    node: String,
    out: mpsc::Sender<Vec<BestPathChange>>,
    mut resend: mpsc::Receiver<()>,
    mut stop: watch::Receiver<bool>,
) {
    let mut routes = Routes::new(node);
    let mut send_all = false;
    loop {
        // Both are marked seen on every pass, so one changing while the other is being read
        // does not wake this again and again; while either is being read the routes stay.
        let changes = {
            let (blocks, nodes) = (blocks.borrow_and_update(), nodes.borrow_and_update());
            match (blocks.as_ref(), nodes.as_ref()) {
                (Some(blocks), Some(nodes)) => {
                    let named = nodes.stored().map(|n| (n.name.as_str(), &n.spec));
                    routes.update(blocks.specs(), named, std::mem::take(&mut send_all))
                }
                _ if std::mem::take(&mut send_all) => routes.all(),
                _ => Vec::new(),
            }
        };
        for chunk in changes.chunks(BEST_PATH_BATCH) {
            if out.send(chunk.to_vec()).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            asked = resend.recv() => if asked.is_some() { send_all = true },
            changed = blocks.changed() => if changed.is_err() { return },
            changed = nodes.changed() => if changed.is_err() { return },
        }
    }
}

/// The routes last sent, and which nodes were reported as lacking an address of a family.
struct Routes {
    me: String,
    sent: BTreeMap<IpNetwork, IpAddr>,
    unroutable: BTreeSet<(String, u8)>,
}

impl Routes {
    fn new(me: String) -> Routes {
        Routes { me, sent: BTreeMap::new(), unroutable: BTreeSet::new() }
    }

    /// The changes that make the routes of `blocks` and `nodes` the sent set (every route, not
    /// only the changed ones, with `all`).
    fn update<'a>(
        &mut self,
        blocks: impl IntoIterator<Item = &'a IpamBlock>,
        nodes: impl IntoIterator<Item = (&'a str, &'a Node)>,
        all: bool,
    ) -> Vec<BestPathChange> {
        let wanted = self.wanted(blocks, nodes);
        self.apply(wanted, all)
    }

    /// Prefix → the underlay address of the node it is routed to.
    fn wanted<'a>(
        &mut self,
        blocks: impl IntoIterator<Item = &'a IpamBlock>,
        nodes: impl IntoIterator<Item = (&'a str, &'a Node)>,
    ) -> BTreeMap<IpNetwork, IpAddr> {
        let underlay: BTreeMap<&str, (Option<IpAddr>, Option<IpAddr>)> = nodes
            .into_iter()
            .map(|(name, node)| {
                let bgp = node.bgp.as_ref();
                let v4 = bgp.and_then(|b| b.ipv4_address).map(|a| a.ip()).filter(IpAddr::is_ipv4);
                let v6 = bgp.and_then(|b| b.ipv6_address).map(|a| a.ip()).filter(IpAddr::is_ipv6);
                (name, (v4, v6))
            })
            .collect();
        let mut missing = BTreeSet::new();
        let mut via = |node: &str, v4: bool| {
            let found = underlay.get(node).and_then(|(a4, a6)| if v4 { *a4 } else { *a6 });
            if found.is_none() {
                missing.insert((node.to_string(), if v4 { 4 } else { 6 }));
            }
            found
        };
        let mut wanted = BTreeMap::new();
        // Load-balancer blocks hold service addresses every node advertises: no owner to route to.
        let load_balancer = crate::services::lb_controller::IPAM_NODE;
        for block in blocks {
            let affine = block.affinity.as_deref().and_then(|a| a.strip_prefix(HOST_AFFINITY_PREFIX));
            if affine == Some(load_balancer) {
                continue;
            }
            let v4 = block.cidr.is_ipv4();
            if let Some(owner) = affine.filter(|owner| *owner != self.me)
                && let Some(hop) = via(owner, v4)
            {
                wanted.insert(block.cidr, hop);
            }
            for (ordinal, slot) in block.allocations.iter().enumerate() {
                let Some(index) = slot else { continue };
                let Some(by) = block.attributes.get(*index as usize).and_then(|a| a.secondary.get(NODE_ATTRIBUTE))
                else {
                    continue;
                };
                if by == self.me || Some(by) == affine || handle_at(block, ordinal).is_none() {
                    continue;
                }
                let ip = ip_at(&block.cidr, ordinal);
                if let Some(hop) = via(by, v4)
                    && let Ok(host) = IpNetwork::new(ip, if v4 { 32 } else { 128 })
                {
                    wanted.insert(host, hop);
                }
            }
        }
        for (node, family) in missing.difference(&self.unroutable) {
            tracing::warn!(
                subsys = "routes",
                node,
                family,
                "node has no underlay address of this family; its blocks are not routed"
            );
        }
        self.unroutable = missing;
        wanted
    }

    /// Makes `wanted` the sent set; the changes to get there (all of `wanted` with `all`).
    fn apply(&mut self, wanted: BTreeMap<IpNetwork, IpAddr>, all: bool) -> Vec<BestPathChange> {
        let mut changes: Vec<BestPathChange> = wanted
            .iter()
            .filter(|(prefix, hop)| all || self.sent.get(prefix) != Some(hop))
            .map(|(prefix, hop)| change(*prefix, Some(*hop)))
            .collect();
        changes.extend(self.sent.keys().filter(|p| !wanted.contains_key(p)).map(|p| change(*p, None)));
        self.sent = wanted;
        changes
    }

    /// The whole sent set as changes.
    fn all(&self) -> Vec<BestPathChange> {
        self.sent.iter().map(|(prefix, hop)| change(*prefix, Some(*hop))).collect()
    }
}

/// A route to `prefix` via `hop`, or its withdrawal.
fn change(prefix: IpNetwork, hop: Option<IpAddr>) -> BestPathChange {
    let next_hops: Addrs = hop.into_iter().collect();
    BestPathChange { prefix, peers: next_hops.clone(), next_hops }
}

#[cfg(test)]
mod tests;
