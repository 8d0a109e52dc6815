//! The remote routes when BGP is off (Calico's VXLAN-only mode): computed from the datastore
//! instead of learned. Every block affine to another node is routed via that node's underlay
//! address of the block's family, every address another node borrowed from a block not its own
//! via that node as a /32 (/128); nothing for this node's own blocks or addresses. They leave
//! as the RIB's best-path changes do, so the same remote-routes stage takes either.

use super::routes::next_event;
use crate::bgp::rib::{Addrs, BEST_PATH_BATCH, BestPathChange};
use crate::datastore::resources::{IpamBlock, Node};
use crate::datastore::{Datastore, Resource, WatchStream};
use crate::ipam::block_math::ip_at;
use crate::ipam::block_ops::handle_at;
use crate::ipam::claim::HOST_AFFINITY_PREFIX;
use crate::ipam::routes::NODE_ATTRIBUTE;
use crate::remote_routes::LearnedSource;
use futures::FutureExt;
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

/// The task following blocks and Nodes for `node` and sending route changes on `out` until
/// `stop` changes or `out` is closed, and the handle to ask it for the whole set again.
pub fn block_routes(
    ds: Datastore,
    node: String,
    out: mpsc::Sender<Vec<BestPathChange>>,
    stop: watch::Receiver<bool>,
) -> (BlockRoutesHandle, impl Future<Output = ()> + Send + 'static) {
    let (resend_tx, resend_rx) = mpsc::channel(1);
    (BlockRoutesHandle { resend: resend_tx }, follow(ds, node, out, resend_rx, stop))
}

async fn follow(
    ds: Datastore,
    node: String,
    out: mpsc::Sender<Vec<BestPathChange>>,
    mut resend: mpsc::Receiver<()>,
    mut stop: watch::Receiver<bool>,
) {
    let mut blocks_watch = ds.watch::<IpamBlock>(None).await.ok();
    let mut nodes_watch = ds.watch::<Node>(None).await.ok();
    // Only while a watch is missing or the last listing failed: the watch is opened again and
    // everything listed. While both hold, nothing is read but on their events.
    let mut tick = super::picture::retry_timer();
    let mut routes = Routes::new(node);
    let mut send_all = false;
    loop {
        let mut failed = false;
        let changes = match read(&ds).await {
            Ok((blocks, nodes)) => routes.update(&blocks, &nodes, std::mem::take(&mut send_all)),
            Err(e) => {
                failed = true;
                tracing::warn!(subsys = "routes", error = %e, "cannot list blocks or nodes; keeping the last routes");
                if std::mem::take(&mut send_all) { routes.all() } else { Vec::new() }
            }
        };
        for chunk in changes.chunks(BEST_PATH_BATCH) {
            if out.send(chunk.to_vec()).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick(), if failed || blocks_watch.is_none() || nodes_watch.is_none() => {
                super::picture::reopen(&ds, &mut blocks_watch).await;
                super::picture::reopen(&ds, &mut nodes_watch).await;
            }
            asked = resend.recv() => if asked.is_some() { send_all = true },
            ev = next_event(&mut blocks_watch) => if ev.is_none() { blocks_watch = None },
            ev = next_event(&mut nodes_watch) => if ev.is_none() { nodes_watch = None },
        }
        // A burst of writes (pods starting everywhere) is one list, not one per event.
        drain(&mut blocks_watch);
        drain(&mut nodes_watch);
    }
}

/// Takes every event `w` has ready without waiting; an ended stream becomes `None`.
fn drain<T: Resource>(w: &mut Option<WatchStream<T>>) {
    loop {
        match next_event(w).now_or_never() {
            None => return,
            Some(None) => {
                *w = None;
                return;
            }
            Some(Some(_)) => {}
        }
    }
}

async fn read(ds: &Datastore) -> crate::datastore::Result<(Vec<IpamBlock>, Vec<(String, Node)>)> {
    let blocks = ds.list::<IpamBlock>().await?.items.into_iter().map(|s| s.spec).collect();
    let nodes = ds.list::<Node>().await?.items.into_iter().map(|s| (s.name, s.spec)).collect();
    Ok((blocks, nodes))
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
    fn update(&mut self, blocks: &[IpamBlock], nodes: &[(String, Node)], all: bool) -> Vec<BestPathChange> {
        let wanted = self.wanted(blocks, nodes);
        self.apply(wanted, all)
    }

    /// Prefix → the underlay address of the node it is routed to.
    fn wanted(&mut self, blocks: &[IpamBlock], nodes: &[(String, Node)]) -> BTreeMap<IpNetwork, IpAddr> {
        let underlay: BTreeMap<&str, (Option<IpAddr>, Option<IpAddr>)> = nodes
            .iter()
            .map(|(name, node)| {
                let bgp = node.bgp.as_ref();
                let v4 = bgp.and_then(|b| b.ipv4_address).map(|a| a.ip()).filter(IpAddr::is_ipv4);
                let v6 = bgp.and_then(|b| b.ipv6_address).map(|a| a.ip()).filter(IpAddr::is_ipv6);
                (name.as_str(), (v4, v6))
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
                if *by == self.me || Some(by.as_str()) == affine || handle_at(block, ordinal).is_none() {
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
