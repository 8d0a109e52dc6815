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
    let blocks = store.list::<IpamBlock>().await?.items;
    Ok(own_blocks_in(blocks.iter().map(|b| &b.spec), node))
}

/// Addresses `node` allocated in blocks affine to someone else, as host routes.
pub async fn borrowed_addresses(store: &Datastore, node: &str) -> Result<Vec<IpNetwork>> {
    let blocks = store.list::<IpamBlock>().await?.items;
    Ok(borrowed_addresses_in(blocks.iter().map(|b| &b.spec), node))
}

/// [`own_blocks`] of the blocks given (a listing or a watch's picture of them).
pub fn own_blocks_in<'a>(blocks: impl IntoIterator<Item = &'a IpamBlock>, node: &str) -> Vec<IpNetwork> {
    let me = host_affinity(node);
    blocks.into_iter().filter(|b| b.affinity.as_deref() == Some(me.as_str())).map(|b| b.cidr).collect()
}

/// [`borrowed_addresses`] of the blocks given.
pub fn borrowed_addresses_in<'a>(blocks: impl IntoIterator<Item = &'a IpamBlock>, node: &str) -> Vec<IpNetwork> {
    let me = host_affinity(node);
    let mut out = Vec::new();
    for block in blocks {
        if block.affinity.as_deref() == Some(me.as_str()) {
            continue;
        }
        for (ordinal, slot) in block.allocations.iter().enumerate() {
            let Some(index) = slot else { continue };
            let by = block.attributes.get(*index as usize).and_then(|a| a.secondary.get(NODE_ATTRIBUTE));
            if by == Some(node) && handle_at(block, ordinal).is_some() {
                let ip = ip_at(&block.cidr, ordinal);
                let host = if ip.is_ipv4() { 32 } else { 128 };
                out.extend(IpNetwork::new(ip, host).ok());
            }
        }
    }
    out
}
