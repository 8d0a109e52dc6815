//! The node's IPAM: the default pools of the configuration (created only when the datastore holds
//! no pool, as Calico's `CALICO_IPV4POOL_CIDR`), repair of half-made claims, and the per-node
//! allocator task the workload API allocates through.

use crate::config::{Config, IpipMode};
use crate::datastore::Datastore;
use crate::datastore::resources::{EncapMode, IpPool};
use crate::ipam::{Allocator, Ipam, IpamOptions, create_pool};
use ipnetwork::IpNetwork;

/// Creates the configured default pools if the datastore has none, repairs this node's claims
/// and starts the allocator. With no pool anywhere the allocator idles; allocations then fail
/// with an error naming the missing pool.
pub async fn start(config: &Config, ds: &Datastore, node: &str) -> Result<Allocator, String> {
    let existing = ds.list::<IpPool>().await.map_err(|e| format!("cannot list IP pools: {e}"))?.items;
    if existing.is_empty() {
        for (name, pool) in default_pools(config) {
            match create_pool(ds, name, &pool).await {
                Ok(_) => tracing::info!(subsys = "ipam", pool = name, cidr = %pool.cidr, "created the default pool"),
                // Another node created it first.
                Err(crate::ipam::IpamError::Datastore(crate::datastore::DatastoreError::AlreadyExists { .. })) => {}
                Err(e) => return Err(format!("cannot create the default pool {name} ({}): {e}", pool.cidr)),
            }
        }
    }
    let ipam = Ipam::new(ds.clone(), IpamOptions { node: node.to_string(), ..Default::default() });
    let repaired = ipam.repair().await.map_err(|e| format!("cannot repair this node's IPAM claims: {e}"))?;
    if repaired > 0 {
        tracing::info!(subsys = "ipam", repaired, "finished half-made block claims");
    }
    Ok(Allocator::spawn(ipam))
}

/// The pools `ipam.default_ipv4_pool_cidr` / `default_ipv6_pool_cidr` ask for.
fn default_pools(config: &Config) -> Vec<(&'static str, IpPool)> {
    let c = &config.ipam;
    let mut pools = Vec::new();
    if let Some(cidr) = c.default_ipv4_pool_cidr {
        let mut pool = IpPool::new(IpNetwork::V4(cidr));
        pool.block_size = c.default_ipv4_block_size;
        pool.ipip_mode = match c.default_ipv4_ipip_mode {
            IpipMode::Always => EncapMode::Always,
            IpipMode::CrossSubnet => EncapMode::CrossSubnet,
            IpipMode::Never => EncapMode::Never,
        };
        pools.push(("default-ipv4-ippool", pool));
    }
    if let Some(cidr) = c.default_ipv6_pool_cidr {
        let mut pool = IpPool::new(IpNetwork::V6(cidr));
        pool.block_size = c.default_ipv6_block_size;
        pools.push(("default-ipv6-ippool", pool));
    }
    pools
}
