//! Garbage collection, as Calico's node controller (reference §2.4): an address whose handle is
//! no longer alive is a leak candidate, released once it has stayed dead for the grace period;
//! a node's empty block is released once seen empty twice across the grace period — never the
//! node's last block. The collector keeps only its observations; time is passed in, so callers
//! (and tests) decide the clock.

use super::block_ops;
use super::claim;
use super::client::Ipam;
use super::error::Result;
use crate::datastore::resources::{AffinityState, BlockAffinity, IpamBlock, IpamHandle, cidr_name};
use crate::datastore::{DatastoreError, Stored};
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Handles of Services' load-balancer addresses: validated against Services, not workloads.
pub use super::handles::is_load_balancer_handle;
/// Handles of node tunnel addresses: validated against node existence, not workloads.
pub use super::tunnel::is_tunnel_handle;

/// The collector of one node's agent (or of a cluster-wide controller for leaks).
pub struct Gc {
    grace: Duration,
    leak_candidates: BTreeMap<String, Instant>,
    empty_since: BTreeMap<IpNetwork, Instant>,
}

impl Gc {
    pub fn new(grace: Duration) -> Gc {
        Gc { grace, leak_candidates: BTreeMap::new(), empty_since: BTreeMap::new() }
    }

    /// Releases the addresses of handles not in `alive` that were already missing from it at
    /// least `grace` ago. `alive` is what the CNI side and the agent report as running
    /// workloads; tunnel and load-balancer handles are never leaks here. Returns the handles released.
    pub async fn collect_leaks(&mut self, ipam: &Ipam, alive: &BTreeSet<String>, now: Instant) -> Result<Vec<String>> {
        let handles = ipam.store().list::<IpamHandle>().await?;
        let dead: BTreeSet<String> = handles
            .items
            .into_iter()
            .map(|h| h.name)
            .filter(|h| !alive.contains(h) && !is_tunnel_handle(h) && !is_load_balancer_handle(h))
            .collect();
        self.leak_candidates.retain(|h, _| dead.contains(h));
        let mut released = Vec::new();
        for handle in dead {
            let first = *self.leak_candidates.entry(handle.clone()).or_insert(now);
            // Two observations spanning the grace period, as Calico confirms a leak.
            if now > first && now.duration_since(first) >= self.grace {
                ipam.release_handle(&handle).await?;
                self.leak_candidates.remove(&handle);
                released.push(handle);
            }
        }
        Ok(released)
    }

    /// Releases `ipam`'s node's blocks that were empty at an earlier call at least `grace` ago
    /// and still are, keeping at least one block. Returns the blocks released.
    pub async fn release_empty_blocks(&mut self, ipam: &Ipam, now: Instant) -> Result<Vec<IpNetwork>> {
        let store = ipam.store();
        let node = ipam.node();
        let mine: Vec<IpNetwork> = store
            .list::<BlockAffinity>()
            .await?
            .items
            .into_iter()
            .filter(|a| a.spec.node == node && a.spec.state == AffinityState::Confirmed)
            .map(|a| a.spec.cidr)
            .collect();
        let mut remaining = mine.len();
        let mut released = Vec::new();
        self.empty_since.retain(|c, _| mine.contains(c));
        for cidr in mine {
            let block: Stored<IpamBlock> = match store.get(&cidr_name(&cidr)).await {
                Err(DatastoreError::NotFound { .. }) => continue,
                other => other?,
            };
            if block_ops::in_use(&block.spec) > 0 {
                self.empty_since.remove(&cidr);
                continue;
            }
            let first = *self.empty_since.entry(cidr).or_insert(now);
            let due = now > first && now.duration_since(first) >= self.grace;
            // Calico never releases a node's last block.
            if due && remaining > 1 && release_block(ipam, &block).await? {
                remaining -= 1;
                self.empty_since.remove(&cidr);
                released.push(cidr);
            }
        }
        Ok(released)
    }
}

/// pendingDeletion, delete the block if it is unchanged (still empty), delete the affinity.
/// If the block changed in between (an allocation landed), the affinity is confirmed again.
async fn release_block(ipam: &Ipam, block: &Stored<IpamBlock>) -> Result<bool> {
    let (store, node, cidr) = (ipam.store(), ipam.node(), block.spec.cidr);
    let name = claim::affinity_name(node, &cidr);
    let mut affinity: Stored<BlockAffinity> = store.get(&name).await?;
    affinity.spec.state = AffinityState::PendingDeletion;
    match store.update(&name, &affinity.spec, affinity.revision).await {
        Ok(_) => {}
        Err(DatastoreError::Conflict { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    match store.delete::<IpamBlock>(&block.name, block.revision).await {
        Ok(()) | Err(DatastoreError::NotFound { .. }) => {
            claim::delete_affinity(store, node, cidr).await?;
            Ok(true)
        }
        Err(DatastoreError::Conflict { .. }) => {
            claim::confirm(store, node, cidr).await?;
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tunnel_handle_is_a_tunnel_not_a_leak() {
        for handle in ["ipip-tunnel-addr-n1", "ipv6-tunnel-addr-n1", "vxlan-tunnel-addr-n1", "vxlan-v6-tunnel-addr-n1"]
        {
            assert!(is_tunnel_handle(handle), "{handle}");
        }
        assert!(!is_tunnel_handle("k8s-pod-network.0123"));
    }
}
