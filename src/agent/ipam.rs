//! The node's IPAM at start: repair of half-made claims and handle records, the re-claim of
//! addresses the kernel shows in use that the datastore does not hold (it was lost or
//! replaced), and the per-node allocator task the workload API allocates through. (The default
//! pools are created before, by `agent::pools`.)

use super::workloads::{ATTR_ALLOCATED_AT, ATTR_HOST_INTERFACE};
use crate::config::Config;
use crate::dataplane::netlink::{RouteScopeSel, RouteSocket};
use crate::dataplane::{Route, RouteTarget};
use crate::datastore::Datastore;
use crate::ipam::{Allocator, Ipam, IpamOptions, Reclaim};
use futures::TryStreamExt;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Handles of re-claimed addresses: `reclaimed.<host interface>` (the pod's own handle is not
/// recoverable from the kernel; the interface names the workload, and the sweep releases the
/// address once the interface is gone).
pub const RECLAIMED_HANDLE_PREFIX: &str = "reclaimed.";

/// Repairs this node's IPAM records, re-claims the addresses of its workloads (host routes of
/// tortie's protocol to workload interfaces) that the datastore does not hold, and starts the
/// allocator — all before the API serves, so the node takes no pod until IPAM is consistent
/// with the kernel. With no pool anywhere the allocator idles; allocations then fail with an
/// error naming the missing pool.
pub async fn start(ds: &Datastore, node: &str, config: &Config) -> Result<Allocator, String> {
    let ipam = Ipam::new(ds.clone(), IpamOptions { node: node.to_string(), ..Default::default() });
    let repaired =
        repair(&ipam, REPAIR_RETRY).await.map_err(|e| format!("cannot repair this node's IPAM records: {e}"))?;
    if repaired.claims > 0 {
        tracing::info!(subsys = "ipam", repaired = repaired.claims, "finished half-made block claims");
    }
    if !repaired.handles_rebuilt.is_empty() {
        tracing::info!(subsys = "ipam", handles = ?repaired.handles_rebuilt, "rebuilt handle records a crash left short");
    }
    reclaim_workloads(&ipam, config).await?;
    Ok(Allocator::spawn(ipam))
}

/// The wait before the second try of the start-up repair while the datastore is unavailable;
/// each further wait doubles.
const REPAIR_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// How many times the repair is tried before the start fails (about a minute of waiting).
const REPAIR_ATTEMPTS: u32 = 7;

/// The start-up repair, tried again while the datastore is unavailable (a sqlite file another
/// process holds locked past its busy timeout, as 100 agents starting on one file do; etcd not
/// answering): see [`retry_unavailable`].
async fn repair(ipam: &Ipam, first_wait: std::time::Duration) -> crate::ipam::Result<crate::ipam::Repaired> {
    retry_unavailable("repair this node's IPAM records", first_wait, REPAIR_ATTEMPTS, || ipam.repair()).await
}

/// Runs `step` again while it fails with an unavailable datastore, waiting `first_wait`, then
/// twice as long each time, up to `attempts` tries; other errors, and the last try's, are
/// returned. Each retry is logged, naming `what`.
async fn retry_unavailable<T, F: std::future::Future<Output = crate::ipam::Result<T>>>(
    what: &str,
    first_wait: std::time::Duration,
    attempts: u32,
    mut step: impl FnMut() -> F,
) -> crate::ipam::Result<T> {
    let mut wait = first_wait;
    let mut attempt = 1;
    loop {
        match step().await {
            Err(crate::ipam::IpamError::Datastore(e)) if e.is_retryable() && attempt < attempts => {
                tracing::warn!(subsys = "ipam", attempt, retry_in = ?wait, error = %e, "cannot {what} yet; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// How often the datastore is checked for having been replaced under the agent.
const STORE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Returns when the datastore stops being the one opened (a deleted or replaced sqlite
/// file): its writes fail from then on, and only a start re-claims, from the kernel, what the
/// new one lacks — so the agent, which supervises this task, stops and is restarted (kernel
/// routes stay). Runs until then or until `stop`.
pub async fn watch_store(ds: Datastore, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(STORE_CHECK_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = ds.backend().check() {
            tracing::error!(
                subsys = "ipam",
                error = %e,
                "the datastore was lost under the agent: stopping, so that a restart re-claims this node's addresses"
            );
            return;
        }
    }
}

/// Re-claims every workload address the kernel shows that the datastore does not hold.
async fn reclaim_workloads(ipam: &Ipam, config: &Config) -> Result<(), String> {
    let in_use = workload_addresses(config).await?;
    let mut reclaimed = Vec::new();
    for (ip, interface) in &in_use {
        let handle = reclaimed_handle(interface);
        let attributes = BTreeMap::from([
            (ATTR_HOST_INTERFACE.to_string(), interface.clone()),
            (ATTR_ALLOCATED_AT.to_string(), super::unix_now().to_string()),
        ]);
        match ipam.reclaim(*ip, &handle, &attributes).await {
            Ok(Reclaim::Claimed) => reclaimed.push(*ip),
            Ok(Reclaim::Held(_)) => {}
            Ok(Reclaim::NotInPool) => {
                tracing::warn!(subsys = "ipam", ip = %ip, interface = %interface, "a workload address is in no IP pool")
            }
            // Without the datastore nothing can be made consistent: the start fails (and is retried).
            Err(crate::ipam::IpamError::Datastore(e)) if e.is_retryable() => {
                return Err(format!("cannot re-claim {ip} (in use on {interface}) in IPAM: {e}"));
            }
            // One address that cannot be re-claimed (a damaged block, endless conflicts) must not
            // keep the node from starting on every try: it is named, and the rest go on.
            Err(e) => {
                tracing::error!(subsys = "ipam", ip = %ip, interface = %interface, error = %e, "cannot re-claim a workload address in use on this node")
            }
        }
    }
    if !reclaimed.is_empty() {
        tracing::warn!(
            subsys = "ipam",
            addresses = ?reclaimed,
            "re-claimed addresses in use on this node that the datastore did not hold (was it lost or replaced?)"
        );
    }
    Ok(())
}

/// The handle of an address re-claimed from `interface`, as a valid record name.
fn reclaimed_handle(interface: &str) -> String {
    let clean: String =
        interface.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    format!("{RECLAIMED_HANDLE_PREFIX}{}", clean.trim_matches('-'))
}

/// Host routes of tortie's protocol (`<ip>/32` or `/128 dev <workload interface>`) in the kernel:
/// the addresses of this node's workloads, each with its interface.
async fn workload_addresses(config: &Config) -> Result<Vec<(IpAddr, String)>, String> {
    let sel = RouteScopeSel { table: config.dataplane.route_table, protocol: config.dataplane.route_protocol };
    let routes: Vec<Route> = tokio::task::spawn_blocking(move || RouteSocket::open()?.dump(sel))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|e| format!("cannot read the kernel's workload routes: {e}"))?;
    let (connection, links, _) = rtnetlink::new_connection().map_err(|e| format!("cannot open rtnetlink: {e}"))?;
    let connection = tokio::spawn(connection);
    // One dump of the interfaces, not a lookup per route: a failed dump fails the start, since
    // a skipped interface could hide an address in use.
    let mut names = std::collections::HashMap::new();
    let mut dump = links.link().get().execute();
    while let Some(link) = dump.try_next().await.map_err(|e| format!("cannot list the interfaces: {e}"))? {
        let name = link.attributes.iter().find_map(|a| match a {
            netlink_packet_route::link::LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        });
        if let Some(name) = name.filter(|n| n.starts_with(&config.dataplane.workload_interface_prefix)) {
            names.insert(link.header.index, name);
        }
    }
    let mut found = Vec::new();
    for route in routes {
        let RouteTarget::Device { ifindex } = route.target else { continue };
        if route.dst.prefix() != if route.dst.is_ipv4() { 32 } else { 128 } {
            continue;
        }
        if let Some(name) = names.get(&ifindex) {
            found.push((route.dst.ip(), name.clone()));
        }
    }
    connection.abort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::DatastoreError;
    use crate::ipam::IpamError;
    use std::time::Duration;

    #[tokio::test]
    async fn a_start_up_step_is_retried_while_the_datastore_is_unavailable_and_no_longer() {
        let tries = std::cell::Cell::new(0);
        let locked_twice = || {
            tries.set(tries.get() + 1);
            let result = if tries.get() <= 2 {
                Err(IpamError::Datastore(DatastoreError::unavailable("database is locked")))
            } else {
                Ok(tries.get())
            };
            std::future::ready(result)
        };
        let wait = Duration::from_millis(1);
        assert_eq!(retry_unavailable("test", wait, 5, locked_twice).await.unwrap(), 3);

        tries.set(0);
        let always_locked = || {
            tries.set(tries.get() + 1);
            std::future::ready(Err::<(), _>(IpamError::Datastore(DatastoreError::unavailable("database is locked"))))
        };
        let err = retry_unavailable("test", wait, 4, always_locked).await.unwrap_err();
        assert!(err.to_string().contains("database is locked"), "{err}");
        assert_eq!(tries.get(), 4);

        // An error a retry cannot fix is returned at once.
        tries.set(0);
        let stopped = || {
            tries.set(tries.get() + 1);
            std::future::ready(Err::<(), _>(IpamError::Stopped))
        };
        assert!(retry_unavailable("test", wait, 4, stopped).await.is_err());
        assert_eq!(tries.get(), 1);
    }
}
