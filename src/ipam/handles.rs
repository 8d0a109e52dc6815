//! IpamHandle records: per handle, how many addresses it holds in which block, so release by
//! handle visits only those blocks (Calico's O(1) handle index). A handle record is only ever
//! written in the same transaction as the block whose addresses it counts.

use super::error::Result;
use crate::datastore::resources::IpamHandle;
use crate::datastore::{Datastore, DatastoreError, Stored, Transaction};
use ipnetwork::IpNetwork;

/// What every load-balancer address's handle starts with (`lb.<namespace>.<name>`, one per
/// Service, `crate::services::load_balancer`).
pub const LOAD_BALANCER_PREFIX: &str = "lb.";
/// The pseudo-node load-balancer blocks are affine to (Calico's `virtual` affinity): no Node has
/// this name, and none is missing.
pub const LOAD_BALANCER_NODE: &str = "tortie-load-balancer";

/// Whether `handle` holds a Service's load-balancer address: checked against Services by the
/// load-balancer controller, not against workloads by the leak collector.
pub fn is_load_balancer_handle(handle: &str) -> bool {
    handle.starts_with(LOAD_BALANCER_PREFIX)
}

/// The handle record, if there is one.
pub async fn get(store: &Datastore, handle: &str) -> Result<Option<Stored<IpamHandle>>> {
    match store.get::<IpamHandle>(handle).await {
        Ok(h) => Ok(Some(h)),
        Err(DatastoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Adds to `txn` the write recording that `handle` holds `count` addresses in `block` (the
/// block's state in the same transaction): a creation when there is no record yet, an update of
/// `existing`, or its deletion when it then holds nothing. Setting the count the block shows,
/// rather than adding or subtracting, makes a retried write idempotent.
pub fn set(txn: &mut Transaction, handle: &str, existing: Option<&Stored<IpamHandle>>, block: &IpNetwork, count: u32) {
    let mut spec = match existing {
        Some(record) => record.spec.clone(),
        None => IpamHandle { handle_id: handle.to_string(), ..IpamHandle::default() },
    };
    if count > 0 {
        spec.block.insert(block.to_string(), count);
    } else {
        spec.block.remove(&block.to_string());
    }
    match existing {
        Some(record) if spec.block.is_empty() => {
            txn.delete::<IpamHandle>(handle, record.revision);
        }
        Some(record) => {
            txn.update(handle, &spec, record.revision);
        }
        None if count > 0 => {
            txn.create(handle, &spec);
        }
        None => {}
    }
}
