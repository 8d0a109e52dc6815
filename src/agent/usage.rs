//! Pool usage for the metrics: recomputed from the datastore when blocks
//! change (at most every few seconds) and on a timer.

use crate::datastore::resources::{IpPool, IpamBlock};
use crate::datastore::{Datastore, WatchStream};
use crate::metrics::ipam::{PoolUsage, usage};
use std::time::Duration;
use tokio::sync::watch;

const EVERY: Duration = Duration::from_secs(30);
/// A burst of allocations costs one recomputation per this interval.
const AT_MOST_EVERY: Duration = Duration::from_secs(2);

pub async fn follow(ds: Datastore, out: watch::Sender<Vec<PoolUsage>>, mut stop: watch::Receiver<bool>) {
    let mut blocks_watch: Option<WatchStream<IpamBlock>> = ds.watch::<IpamBlock>(None).await.ok();
    loop {
        match (ds.list::<IpPool>().await, ds.list::<IpamBlock>().await) {
            (Ok(pools), Ok(blocks)) => {
                let pools: Vec<IpPool> = pools.items.into_iter().map(|s| s.spec).collect();
                let blocks: Vec<IpamBlock> = blocks.items.into_iter().map(|s| s.spec).collect();
                out.send_replace(usage(&pools, &blocks));
            }
            (Err(e), _) | (_, Err(e)) => tracing::debug!(subsys = "ipam", error = %e, "cannot read pool usage"),
        }
        let next = tokio::time::sleep(EVERY);
        tokio::select! {
            _ = stop.changed() => return,
            _ = next => {}
            ev = super::routes::next_event(&mut blocks_watch) => {
                if ev.is_none() {
                    blocks_watch = None;
                }
                // Rate limit: wait, then read the state the burst left.
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(AT_MOST_EVERY) => {}
                }
            }
        }
    }
}
