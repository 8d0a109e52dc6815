//! The task keeping the device's VTEP entries equal to the desired set:
//! a reconcile on every change of it, and every `resync` to repair drift
//! (an entry deleted by hand comes back).

use super::vteps::Vtep;
use super::vteps_kernel::reconcile;
use crate::dataplane::netlink::RouteSocket;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Starts the task for device `ifindex` in the caller's network namespace
/// (its socket is opened here). While `desired` is `None` (the remote nodes
/// are not read yet) it touches nothing: entries left by a previous run
/// stay until it is known which are still wanted. It ends when `stop` turns
/// true or either sender is dropped (the entries stay, for the next run to
/// adopt); failures are logged and retried at the next change or resync.
pub fn spawn(
    ifindex: u32,
    desired: watch::Receiver<Option<Vec<Vtep>>>,
    resync: Duration,
    stop: watch::Receiver<bool>,
) -> std::io::Result<JoinHandle<()>> {
    let socket = RouteSocket::open()?;
    Ok(tokio::spawn(run(socket, ifindex, desired, resync, stop)))
}

async fn run(
    mut socket: RouteSocket,
    ifindex: u32,
    mut desired: watch::Receiver<Option<Vec<Vtep>>>,
    resync: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut timer = tokio::time::interval(resync);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // The first tick is immediate: the first reconcile runs at start.
        tokio::select! {
            changed = desired.changed() => if changed.is_err() {
                tracing::debug!(subsys = "vxlan", ifindex, "the desired VTEPs are gone; stopping");
                return;
            },
            _ = timer.tick() => {}
            // The sender of `desired` lives as long as the encapsulation, which
            // outlives the agent's tasks: stopping must not wait for it.
            _ = stop.wait_for(|stop| *stop) => {
                tracing::debug!(subsys = "vxlan", ifindex, "stopping");
                return;
            }
        }
        let Some(vteps) = desired.borrow_and_update().clone() else { continue };
        let worked = tokio::task::spawn_blocking(move || {
            let result = reconcile(&mut socket, ifindex, &vteps);
            (socket, result, vteps.len())
        })
        .await;
        let (back, result, wanted) = match worked {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(subsys = "vxlan", ifindex, error = %e, "the VTEP reconcile failed outright; stopping");
                return;
            }
        };
        socket = back;
        match result {
            Ok(stats) if stats.total() > 0 => tracing::info!(
                subsys = "vxlan",
                ifindex,
                vteps = wanted,
                added = stats.added,
                replaced = stats.replaced,
                deleted = stats.deleted,
                "VTEP entries reconciled"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(subsys = "vxlan", ifindex, error = %e, "VTEP entries not all written; retrying at the next change or resync")
            }
        }
    }
}
