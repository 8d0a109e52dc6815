//! Pool usage for the metrics: recomputed from the agent's picture of the blocks
//! (`agent::blocks`) when it changes (at most every few seconds) and on a timer.

use super::blocks::KnownBlocks;
use crate::datastore::Datastore;
use crate::datastore::resources::{IpPool, IpamBlock};
use crate::metrics::ipam::{PoolUsage, usage};
use std::time::Duration;
use tokio::sync::watch;

const EVERY: Duration = Duration::from_secs(30);
/// A burst of allocations costs one recomputation per this interval.
const AT_MOST_EVERY: Duration = Duration::from_secs(2);

pub async fn follow(
    ds: Datastore,
    mut blocks: watch::Receiver<Option<KnownBlocks>>,
    out: watch::Sender<Vec<PoolUsage>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut blocks_open = true;
    loop {
        // The pools are few and small: listed each time.
        match ds.list::<IpPool>().await {
            Ok(pools) => {
                let pools: Vec<IpPool> = pools.items.into_iter().map(|s| s.spec).collect();
                let computed = blocks.borrow_and_update().as_ref().map(|known| {
                    let specs: Vec<&IpamBlock> = known.specs().collect();
                    usage(&pools, &specs)
                });
                if let Some(computed) = computed {
                    out.send_replace(computed);
                }
            }
            Err(e) => tracing::debug!(subsys = "ipam", error = %e, "cannot read pool usage"),
        }
        let next = tokio::time::sleep(EVERY);
        tokio::select! {
            _ = stop.changed() => return,
            _ = next => {}
            c = blocks.changed(), if blocks_open => {
                blocks_open = c.is_ok();
                // Rate limit: wait, then compute from the state the burst left.
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(AT_MOST_EVERY) => {}
                }
            }
        }
    }
}
