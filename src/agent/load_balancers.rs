//! The load-balancer controller as the agent runs it: a pass of
//! `crate::services::lb_controller::reconcile` whenever a Service changes and every
//! [`RESYNC`] (pools and nodes change too), on the one node holding the [`LEASE`]. One
//! controller, because allocation by handle is not idempotent: two agents passing at once would
//! each give a new Service an address. The lease moves to another node when its holder stops
//! renewing it (dead, cut off, or stopped); should two ever act at once, the IPAM's
//! compare-and-swap still gives no address twice, and the next pass releases a Service's extra
//! one.

use super::lease::Elector;
use crate::datastore::resources::Service;
use crate::datastore::{Datastore, WatchStream};
use crate::services::lb_controller::reconcile;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the lease is renewed and a pass runs without a Service change; a lost watch is
/// opened again at the same pace.
pub const RESYNC: Duration = Duration::from_secs(5);
/// The lease's name.
pub const LEASE: &str = "load-balancer-controller";
/// How long the lease lasts unrenewed: three renewals, so one slow or lost write does not move it.
pub const LEASE_DURATION: Duration = Duration::from_secs(3 * RESYNC.as_secs());

/// Runs passes while this node holds the lease, until `stop`. `resync` is [`RESYNC`] and
/// `lease` [`LEASE_DURATION`] in the agent (shorter in tests). The lease is renewed beside the
/// passes, not between them: a pass over a thousand Services outlasts the lease.
pub async fn follow(ds: Datastore, node: String, resync: Duration, lease: Duration, stop: watch::Receiver<bool>) {
    let (until_tx, until_rx) = watch::channel(None);
    tokio::join!(
        hold_lease(&ds, &node, resync, lease, until_tx, stop.clone()),
        run_passes(&ds, resync, until_rx, stop)
    );
}

/// Renews (or waits for) the lease every `every`, publishing until when this node holds it.
async fn hold_lease(
    ds: &Datastore,
    node: &str,
    every: Duration,
    lease: Duration,
    until: watch::Sender<Option<Instant>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut elector = Elector::new(LEASE, node, lease);
    let mut ticks = tokio::time::interval(every);
    let mut held = false;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = ticks.tick() => {}
        }
        let holds = elector.step(ds).await;
        // A renewal moves the end of the lease without waking the passes: only winning or
        // losing it does (a pass every renewal read everything twice per period).
        until.send_if_modified(|held_until| {
            let now = elector.holding_until();
            let woken = held_until.is_some() != now.is_some();
            *held_until = now;
            woken
        });
        if holds != held {
            held = holds;
            let what = if holds {
                "this node now assigns load-balancer addresses"
            } else {
                "this node no longer assigns load-balancer addresses"
            };
            tracing::info!(subsys = "load-balancer", lease = LEASE, "{what}");
        }
    }
}

/// A pass on every Service change, every `resync`, and when the lease is won, while held.
async fn run_passes(
    ds: &Datastore,
    resync: Duration,
    mut until: watch::Receiver<Option<Instant>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut services: Option<WatchStream<Service>> = None;
    let mut ticks = tokio::time::interval(resync);
    let mut reported: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = ticks.tick() => {
                if services.is_none() {
                    services = ds.watch::<Service>(None).await.ok();
                }
            }
            _ = until.changed() => {}
            event = next(&mut services) => {
                if event.is_none() {
                    services = None;
                }
                // One pass for every change that is in: a pass reads everything anyway, and a
                // pass per event fell ever further behind a thousand deletions.
                drain_ready(&mut services);
            }
        }
        let holds = until.borrow_and_update().is_some_and(|until| Instant::now() < until);
        if !holds {
            continue;
        }
        match reconcile(ds).await {
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

/// Takes every event that is ready now, without waiting.
fn drain_ready(watch: &mut Option<WatchStream<Service>>) {
    use futures::FutureExt;
    while let Some(w) = watch {
        match w.next().now_or_never() {
            Some(Some(_)) => {}
            Some(None) => *watch = None,
            None => return,
        }
    }
}

async fn next(watch: &mut Option<WatchStream<Service>>) -> Option<()> {
    match watch {
        Some(w) => w.next().await.map(|_| ()),
        None => std::future::pending().await,
    }
}
