//! The node's IPAM: repair of half-made claims and the per-node allocator task the workload API
//! allocates through. (The default pools are created before, by `agent::pools`.)

use crate::datastore::Datastore;
use crate::ipam::{Allocator, Ipam, IpamOptions};

/// Repairs this node's claims and starts the allocator. With no pool anywhere the allocator
/// idles; allocations then fail with an error naming the missing pool.
pub async fn start(ds: &Datastore, node: &str) -> Result<Allocator, String> {
    let ipam = Ipam::new(ds.clone(), IpamOptions { node: node.to_string(), ..Default::default() });
    let repaired = ipam.repair().await.map_err(|e| format!("cannot repair this node's IPAM records: {e}"))?;
    if repaired.claims > 0 {
        tracing::info!(subsys = "ipam", repaired = repaired.claims, "finished half-made block claims");
    }
    if !repaired.handles_rebuilt.is_empty() {
        tracing::info!(subsys = "ipam", handles = ?repaired.handles_rebuilt, "rebuilt handle records a crash left short");
    }
    Ok(Allocator::spawn(ipam))
}
