//! What the speaker announces for IPAM: the node's own blocks (aggregates), and each address it
//! borrowed from another node's block as a /32 (/128), as Calico's BIRD config does for
//! borrowed addresses, so traffic for them comes to this node and not the block's owner.

use super::block_math::ip_at;
use super::block_ops::handle_at;
use super::claim::host_affinity;
use super::error::Result;
use crate::datastore::Datastore;
use crate::datastore::resources::IpamBlock;
use ipnetwork::IpNetwork;

/// The attribute naming the node that allocated an address (set on every allocation).
pub const NODE_ATTRIBUTE: &str = "node";

/// Blocks affine to `node`.
pub async fn own_blocks(store: &Datastore, node: &str) -> Result<Vec<IpNetwork>> {
    let me = host_affinity(node);
    let blocks = store.list::<IpamBlock>().await?.items;
    Ok(blocks.into_iter().filter(|b| b.spec.affinity.as_deref() == Some(me.as_str())).map(|b| b.spec.cidr).collect())
}

/// Addresses `node` allocated in blocks affine to someone else, as host routes.
pub async fn borrowed_addresses(store: &Datastore, node: &str) -> Result<Vec<IpNetwork>> {
    let me = host_affinity(node);
    let mut out = Vec::new();
    for block in store.list::<IpamBlock>().await?.items {
        if block.spec.affinity.as_deref() == Some(me.as_str()) {
            continue;
        }
        for (ordinal, slot) in block.spec.allocations.iter().enumerate() {
            let Some(index) = slot else { continue };
            let by = block.spec.attributes.get(*index as usize).and_then(|a| a.secondary.get(NODE_ATTRIBUTE));
            if by.map(String::as_str) == Some(node) && handle_at(&block.spec, ordinal).is_some() {
                let ip = ip_at(&block.spec.cidr, ordinal);
                let host = if ip.is_ipv4() { 32 } else { 128 };
                out.extend(IpNetwork::new(ip, host).ok());
            }
        }
    }
    Ok(out)
}
