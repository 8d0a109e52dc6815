//! The node's identity: its address (configured or detected, with the
//! prefix length) and its registration in the datastore.

use crate::config::Config;
use crate::config::NO_IPV6_ADDRESS;
use crate::dataplane::address::{DetectError, Family, KUBERNETES_INTERNAL_IP, Sources, kernel_route_source, select};
use crate::dataplane::netlink::RouteSocket;
use crate::datastore::resources::{EncapMode, IpPool, Node, NodeBgp, PoolUse};
use crate::datastore::{Datastore, DatastoreError};
use crate::ipam::{Ipam, IpamOptions};
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use std::net::IpAddr;

/// The node's addresses: `node.address` or detected by `node.address_autodetection`, and
/// `node.ipv6_address` or detected by `node.ipv6_address_autodetection` (none by default).
/// `kubernetes_internal_ips` are the Kubernetes Node's InternalIP addresses, `None` outside
/// Kubernetes.
pub fn addresses(
    config: &Config,
    kubernetes_internal_ips: Option<&[IpAddr]>,
) -> Result<(Ipv4Network, Option<Ipv6Network>), String> {
    let sources = Sources { route_source: &kernel_route_source, kubernetes_internal_ips };
    let detect = |method: &str, family: Family| -> Result<IpNetwork, String> {
        let mut socket = RouteSocket::open().map_err(|e| format!("cannot open a netlink socket: {e}"))?;
        let listed = match family {
            Family::V4 => socket.ipv4_addresses(),
            Family::V6 => socket.ipv6_addresses(),
        };
        let listed = listed.map_err(|e| format!("cannot list interface addresses: {e}"))?;
        select(method, family, &listed, &sources).map_err(|e: DetectError| e.to_string())
    };
    let v4 = match config.node.address {
        Some(a) => a,
        None => match detect(&config.node.address_autodetection, Family::V4)? {
            IpNetwork::V4(a) => a,
            IpNetwork::V6(a) => return Err(format!("node.address_autodetection found IPv6 address {a}")),
        },
    };
    let v6 = match config.node.ipv6_address {
        Some(a) => Some(a),
        None if config.node.ipv6_address_autodetection == NO_IPV6_ADDRESS => None,
        None => match detect(&config.node.ipv6_address_autodetection, Family::V6)? {
            IpNetwork::V6(a) => Some(a),
            IpNetwork::V4(a) => return Err(format!("node.ipv6_address_autodetection found IPv4 address {a}")),
        },
    };
    Ok((v4, v6))
}

/// Whether either family's address comes from the Kubernetes Node's InternalIP addresses.
pub fn wants_kubernetes_internal_ips(config: &Config) -> bool {
    let node = &config.node;
    (node.address.is_none() && node.address_autodetection == KUBERNETES_INTERNAL_IP)
        || (node.ipv6_address.is_none() && node.ipv6_address_autodetection == KUBERNETES_INTERNAL_IP)
}

/// The wait before registration is tried again while the datastore is unavailable; each
/// further wait doubles.
const REGISTER_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// How many times registration is tried while the datastore is unavailable.
const REGISTER_ATTEMPTS: u32 = 7;

/// Creates or updates this node's record (with its AS, `local_as`); retries a stale revision a
/// few times, and an unavailable datastore up to [`REGISTER_ATTEMPTS`] times with growing waits.
/// `bgp.route_reflector_cluster_id`, when configured, replaces the record's
/// `routeReflectorClusterID`; else the record keeps its own.
pub async fn register(
    ds: &Datastore,
    name: &str,
    config: &Config,
    address: Ipv4Network,
    local_as: u32,
) -> Result<(), String> {
    let bgp = NodeBgp {
        ipv4_address: Some(IpNetwork::V4(address)),
        ipv6_address: config.node.ipv6_address.map(IpNetwork::V6),
        as_number: Some(local_as),
        route_reflector_cluster_id: config.bgp.route_reflector_cluster_id,
        ipv4_ipip_tunnel_addr: None,
    };
    let (mut conflicts, mut unavailable, mut wait) = (0, 1, REGISTER_RETRY);
    while conflicts < 5 {
        let result = match ds.get::<Node>(name).await {
            Ok(current) => {
                let mut node = current.spec.clone();
                let mut merged = node.bgp.clone().unwrap_or_default();
                merged.ipv4_address = bgp.ipv4_address;
                merged.ipv6_address = bgp.ipv6_address;
                merged.as_number = bgp.as_number;
                // The configured cluster id is written; without one, the record's stays: an
                // operator makes a node a reflector on its Node record, as with Calico.
                merged.route_reflector_cluster_id =
                    bgp.route_reflector_cluster_id.or(merged.route_reflector_cluster_id);
                // The configured labels are set; labels set by others (an operator, the kubelet)
                // stay.
                let mut labels = node.labels.clone();
                labels.extend(config.node.labels.clone());
                if node.bgp.as_ref() == Some(&merged) && node.labels == labels {
                    return Ok(());
                }
                node.bgp = Some(merged);
                node.labels = labels;
                ds.update(name, &node, current.revision).await.map(|_| ())
            }
            Err(DatastoreError::NotFound { .. }) => {
                let node = Node { bgp: Some(bgp.clone()), labels: config.node.labels.clone(), ..Node::default() };
                ds.create(name, &node).await.map(|_| ())
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(DatastoreError::Conflict { .. } | DatastoreError::AlreadyExists { .. }) => conflicts += 1,
            // A sqlite file other processes hold locked past the busy timeout (a hundred agents
            // starting on one file), etcd not answering: wait and try again, as opening does.
            Err(e) if e.is_retryable() && unavailable < REGISTER_ATTEMPTS => {
                tracing::warn!(subsys = "agent", node = %name, attempt = unavailable, retry_in = ?wait, error = %e, "cannot register the node yet; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
                unavailable += 1;
            }
            Err(e) => return Err(format!("cannot register node {name}: {e}")),
        }
    }
    Err(format!("cannot register node {name}: the record kept changing under us"))
}

/// Allocates this node's IP-in-IP tunnel address when a pool uses IP-in-IP and records it in the
/// node's `bgp.ipv4IPIPTunnelAddr` (the `tortie.io/IPv4IPIPTunnelAddr` annotation). `None` when
/// no pool needs one.
pub async fn publish_tunnel_address(ds: &Datastore, node: &str) -> Result<Option<std::net::IpAddr>, String> {
    let pools = ds.list::<IpPool>().await.map_err(|e| format!("cannot list IP pools: {e}"))?;
    let pools: Vec<IpPool> = pools.items.into_iter().map(|p| p.spec).collect();
    if tunnel_pools(&pools, 4, |p| p.ipip_mode).is_empty() {
        return Ok(None);
    }
    let ipam = Ipam::new(ds.clone(), IpamOptions { node: node.to_string(), ..IpamOptions::default() });
    let address = ipam.tunnel_address(4).await.map_err(|e| format!("cannot allocate the tunnel address: {e}"))?.ip;
    update_node(ds, node, "the tunnel address", |spec| {
        let bgp = spec.bgp.get_or_insert_with(Default::default);
        let changed = bgp.ipv4_ipip_tunnel_addr != Some(address);
        bgp.ipv4_ipip_tunnel_addr = Some(address);
        changed
    })
    .await?;
    Ok(Some(address))
}

/// The enabled pools of `family` (4 or 6) whose encapsulation `mode` is on and that allow tunnel
/// addresses: where a tunnel device's address comes from.
pub(super) fn tunnel_pools(pools: &[IpPool], family: u8, mode: impl Fn(&IpPool) -> EncapMode) -> Vec<IpNetwork> {
    pools
        .iter()
        .filter(|p| p.cidr.is_ipv4() == (family == 4) && !p.disabled && mode(p) != EncapMode::Never)
        .filter(|p| p.allowed_uses.contains(&PoolUse::Tunnel))
        .map(|p| p.cidr)
        .collect()
}

/// Applies `change` to node `name`'s record by compare-and-swap, re-read and retried when the
/// record changed under us; writes only when `change` reports a difference. `what` names the
/// change in errors.
pub(super) async fn update_node(
    ds: &Datastore,
    name: &str,
    what: &str,
    mut change: impl FnMut(&mut Node) -> bool,
) -> Result<(), String> {
    for _ in 0..5 {
        let current = ds.get::<Node>(name).await.map_err(|e| format!("cannot read node {name}: {e}"))?;
        let mut spec = current.spec.clone();
        if !change(&mut spec) {
            return Ok(());
        }
        match ds.update(name, &spec, current.revision).await {
            Ok(_) => return Ok(()),
            Err(DatastoreError::Conflict { .. }) => continue,
            Err(e) => return Err(format!("cannot record {what} on node {name}: {e}")),
        }
    }
    Err(format!("cannot record {what} on node {name}: the record kept changing"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::sqlite::{SqliteBackend, SqliteOptions};
    use std::net::Ipv4Addr;

    fn cluster_id(ds_node: &crate::datastore::Stored<Node>) -> Option<Ipv4Addr> {
        ds_node.spec.bgp.as_ref().and_then(|b| b.route_reflector_cluster_id)
    }

    #[tokio::test]
    async fn registration_keeps_the_records_reflector_cluster_id_unless_one_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let ds = Datastore::new(SqliteBackend::open(dir.path().join("ds.db"), SqliteOptions::default()).await.unwrap());
        let address: Ipv4Network = "10.10.0.2/16".parse().unwrap();
        let set_by_operator = Ipv4Addr::new(244, 0, 0, 1);
        let record = Node {
            bgp: Some(NodeBgp { route_reflector_cluster_id: Some(set_by_operator), ..NodeBgp::default() }),
            ..Node::default()
        };
        ds.create("rr1", &record).await.unwrap();

        register(&ds, "rr1", &Config::default(), address, 64512).await.unwrap();
        let stored = ds.get::<Node>("rr1").await.unwrap();
        assert_eq!(cluster_id(&stored), Some(set_by_operator), "{stored:?}");
        assert_eq!(stored.spec.bgp.as_ref().and_then(|b| b.ipv4_address), Some(IpNetwork::V4(address)));

        let mut config = Config::default();
        let configured = Ipv4Addr::new(244, 0, 0, 2);
        config.bgp.route_reflector_cluster_id = Some(configured);
        register(&ds, "rr1", &config, address, 64512).await.unwrap();
        assert_eq!(cluster_id(&ds.get::<Node>("rr1").await.unwrap()), Some(configured));

        register(&ds, "client", &Config::default(), "10.10.0.3/16".parse().unwrap(), 64512).await.unwrap();
        assert_eq!(cluster_id(&ds.get::<Node>("client").await.unwrap()), None);
    }

    #[tokio::test]
    async fn registration_waits_out_a_datastore_another_process_holds_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ds.db");
        let options = SqliteOptions { busy_timeout: std::time::Duration::from_millis(50), ..SqliteOptions::default() };
        let ds = Datastore::new(SqliteBackend::open(&path, options).await.unwrap());
        // Another process's write lock, held past the busy timeout.
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(600));
            conn.execute_batch("COMMIT").unwrap();
        });
        locked_rx.recv().unwrap();
        let address: Ipv4Network = "10.10.0.2/16".parse().unwrap();
        register(&ds, "n1", &Config::default(), address, 64512).await.unwrap();
        holder.join().unwrap();
        let stored = ds.get::<Node>("n1").await.unwrap();
        assert_eq!(stored.spec.bgp.and_then(|b| b.ipv4_address), Some(IpNetwork::V4(address)));
    }
}
