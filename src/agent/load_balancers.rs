//! The load-balancer controller as the agent runs it: a pass of
//! `crate::services::lb_controller::reconcile` whenever a Service changes and every
//! [`RESYNC`] (pools and nodes change too), on the one node whose name sorts first among the
//! registered Node records. One controller, because allocation by handle is not idempotent:
//! two agents passing at once would each give a new Service an address. While two nodes both
//! think they are first (a node registering), the IPAM's compare-and-swap still gives no address
//! twice, and the next pass releases a Service's extra one.

use crate::datastore::resources::{Node, Service};
use crate::datastore::{Datastore, WatchStream};
use crate::services::lb_controller::reconcile;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::watch;

/// How often a pass runs without a Service change, and a lost watch is opened again.
pub const RESYNC: Duration = Duration::from_secs(5);

/// Whether `node` sorts first among the registered nodes (and so runs the controller).
pub async fn is_first_node(ds: &Datastore, node: &str) -> bool {
    match ds.list::<Node>().await {
        Ok(nodes) => nodes.items.iter().map(|n| n.name.as_str()).min() == Some(node),
        Err(e) => {
            tracing::debug!(subsys = "load-balancer", error = %e, "cannot list nodes");
            false
        }
    }
}

/// Runs passes until `stop`.
pub async fn follow(ds: Datastore, node: String, mut stop: watch::Receiver<bool>) {
    let mut services: Option<WatchStream<Service>> = None;
    let mut resync = tokio::time::interval(RESYNC);
    let mut reported: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = resync.tick() => {
                if services.is_none() {
                    services = ds.watch::<Service>(None).await.ok();
                }
            }
            event = next(&mut services) => {
                if event.is_none() {
                    services = None;
                }
            }
        }
        if !is_first_node(&ds, &node).await {
            continue;
        }
        match reconcile(&ds).await {
            Ok(outcome) => {
                for warning in outcome.warnings.iter().filter(|w| !reported.contains(*w)) {
                    tracing::warn!(subsys = "load-balancer", problem = %warning, "Service has no load-balancer address");
                }
                reported = outcome.warnings.into_iter().collect();
                if outcome.assigned + outcome.released + outcome.statuses_written > 0 {
                    tracing::info!(
                        subsys = "load-balancer",
                        assigned = outcome.assigned,
                        released = outcome.released,
                        statuses = outcome.statuses_written,
                        "load-balancer addresses"
                    );
                }
            }
            Err(e) => tracing::warn!(subsys = "load-balancer", error = %e, "load-balancer pass failed; retrying"),
        }
    }
}

async fn next(watch: &mut Option<WatchStream<Service>>) -> Option<()> {
    match watch {
        Some(w) => w.next().await.map(|_| ()),
        None => std::future::pending().await,
    }
}
