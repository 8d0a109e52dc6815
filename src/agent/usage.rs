//! Pool usage for the metrics: recomputed from the agent's picture of the blocks
//! (`agent::blocks`) and its pools (`routes::follow_pools`) when either changes, at most every
//! few seconds. It reads nothing from the datastore itself.

use super::blocks::KnownBlocks;
use crate::datastore::resources::{IpPool, IpamBlock};
use crate::metrics::ipam::{PoolUsage, usage};
use std::time::Duration;
use tokio::sync::watch;

/// A burst of allocations costs one recomputation per this interval.
const AT_MOST_EVERY: Duration = Duration::from_secs(2);

pub async fn follow(
    mut blocks: watch::Receiver<Option<KnownBlocks>>,
    mut pools: watch::Receiver<Vec<IpPool>>,
    out: watch::Sender<Vec<PoolUsage>>,
    mut stop: watch::Receiver<bool>,
) {
    // A closed channel keeps its last value; it is only no longer waited on.
    let (mut blocks_open, mut pools_open) = (true, true);
    loop {
        let pools_now = pools.borrow_and_update().clone();
        let computed = blocks.borrow_and_update().as_ref().map(|known| {
            let specs: Vec<&IpamBlock> = known.specs().collect();
            usage(&pools_now, &specs)
        });
        if let Some(computed) = computed {
            out.send_replace(computed);
        }
        tokio::select! {
            _ = stop.changed() => return,
            c = blocks.changed(), if blocks_open => blocks_open = c.is_ok(),
            c = pools.changed(), if pools_open => pools_open = c.is_ok(),
        }
        if !blocks_open && !pools_open {
            // Nothing will change any more.
            let _ = stop.changed().await;
            return;
        }
        // Rate limit: wait, then compute from the state the burst left.
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(AT_MOST_EVERY) => {}
        }
    }
}
