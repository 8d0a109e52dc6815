//! Start-up repair of a node's allocations: every address the node allocated is counted in its
//! handle record, so it can be released by handle. Allocations and their handle records are
//! written in one transaction (see `client.rs`), so this finds work only where a backend
//! without atomic transactions (Kubernetes) was stopped between the two writes — or on data
//! written by a version that wrote them separately.

use super::block_ops;
use super::claim::RETRIES;
use super::error::{IpamError, Result};
use super::routes::NODE_ATTRIBUTE;
use crate::datastore::resources::{IpamBlock, IpamHandle};
use crate::datastore::{Datastore, DatastoreError, Stored, Transaction};
use std::collections::BTreeMap;

/// Rebuilds the handle records of `node`'s allocations where they count fewer addresses than
/// the blocks hold (or are missing). Returns the handles rebuilt.
pub async fn rebuild_handles(store: &Datastore, node: &str) -> Result<Vec<String>> {
    let mut rebuilt = Vec::new();
    for _ in 0..RETRIES {
        match rebuild_pass(store, node).await? {
            Pass::Done(handles) => {
                rebuilt.extend(handles);
                rebuilt.sort();
                rebuilt.dedup();
                return Ok(rebuilt);
            }
            Pass::Raced(handles) => rebuilt.extend(handles),
        }
    }
    Err(IpamError::RetriesExhausted { key: format!("IPAMHandle records of node {node}"), retries: RETRIES })
}

enum Pass {
    Done(Vec<String>),
    /// A write conflicted with someone else's: another pass reads again.
    Raced(Vec<String>),
}

async fn rebuild_pass(store: &Datastore, node: &str) -> Result<Pass> {
    // Blocks before handle records: an allocation made in between shows in the records, never
    // only in the blocks, so it cannot look like a missing record.
    let blocks = store.list::<IpamBlock>().await?.items;
    let records: BTreeMap<String, Stored<IpamHandle>> =
        store.list::<IpamHandle>().await?.items.into_iter().map(|h| (h.name.clone(), h)).collect();
    // Handle → the blocks holding more of its addresses than its record counts.
    let mut short: BTreeMap<String, Vec<(&Stored<IpamBlock>, u32)>> = BTreeMap::new();
    for block in &blocks {
        for (handle, count) in node_handles(&block.spec, node) {
            let recorded =
                records.get(&handle).and_then(|r| r.spec.block.get(&block.spec.cidr.to_string()).copied()).unwrap_or(0);
            if recorded < count {
                short.entry(handle).or_default().push((block, count));
            }
        }
    }
    let mut rebuilt = Vec::new();
    let mut raced = false;
    for (handle, blocks) in short {
        // The blocks are written unchanged: their revisions guard the rebuilt counts.
        let mut txn = Transaction::new();
        let mut spec = match records.get(&handle) {
            Some(record) => record.spec.clone(),
            None => IpamHandle { handle_id: handle.clone(), ..IpamHandle::default() },
        };
        for (block, count) in &blocks {
            txn.update(&block.name, &block.spec, block.revision);
            spec.block.insert(block.spec.cidr.to_string(), *count);
        }
        match records.get(&handle) {
            Some(record) => txn.update(&handle, &spec, record.revision),
            None => txn.create(&handle, &spec),
        };
        match store.commit(txn).await {
            Ok(_) => {
                tracing::warn!(subsys = "ipam", handle = %handle, blocks = ?spec.block, "rebuilt a handle record a crash left short");
                rebuilt.push(handle);
            }
            Err(
                DatastoreError::Conflict { .. }
                | DatastoreError::NotFound { .. }
                | DatastoreError::AlreadyExists { .. },
            ) => {
                raced = true;
            }
            // A handle id no record can be named by: `ipam check` reports the allocation.
            Err(e @ DatastoreError::InvalidData { .. }) => {
                tracing::warn!(subsys = "ipam", handle = %handle, error = %e, "cannot rebuild a handle record");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(if raced { Pass::Raced(rebuilt) } else { Pass::Done(rebuilt) })
}

/// The handles of `block`'s allocations made by `node`, each with how many addresses the
/// handle holds in the block.
fn node_handles(block: &IpamBlock, node: &str) -> BTreeMap<String, u32> {
    let mut mine = BTreeMap::new();
    for ordinal in 0..block.allocations.len() {
        let Some(Some(index)) = block.allocations.get(ordinal) else { continue };
        let by_node = block.attributes.get(*index as usize).and_then(|a| a.secondary.get(NODE_ATTRIBUTE));
        if by_node == Some(node)
            && let Some(handle) = block_ops::handle_at(block, ordinal)
        {
            mine.insert(handle.to_string(), 0);
        }
    }
    for ordinal in 0..block.allocations.len() {
        if let Some(handle) = block_ops::handle_at(block, ordinal)
            && let Some(n) = mine.get_mut(handle)
        {
            *n += 1;
        }
    }
    mine
}
