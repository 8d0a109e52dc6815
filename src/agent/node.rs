//! The node's identity: its address (configured or detected, with the
//! prefix length) and its registration in the datastore.

use crate::config::Config;
use crate::dataplane::address::{DetectError, kernel_route_source, select};
use crate::dataplane::netlink::RouteSocket;
use crate::datastore::resources::{EncapMode, IpPool, Node, NodeBgp};
use crate::datastore::{Datastore, DatastoreError};
use crate::ipam::{Ipam, IpamOptions};
use ipnetwork::{IpNetwork, Ipv4Network};

/// The node's IPv4 address: `node.address` or autodetected.
pub fn address(config: &Config) -> Result<Ipv4Network, String> {
    if let Some(a) = config.node.address {
        return Ok(a);
    }
    let addresses = RouteSocket::open()
        .and_then(|mut s| s.ipv4_addresses())
        .map_err(|e| format!("cannot list interface addresses: {e}"))?;
    select(&config.node.address_autodetection, &addresses, kernel_route_source).map_err(|e: DetectError| e.to_string())
}

/// Creates or updates this node's record; retries a stale revision a few times.
pub async fn register(ds: &Datastore, name: &str, config: &Config, address: Ipv4Network) -> Result<(), String> {
    let bgp = NodeBgp {
        ipv4_address: Some(IpNetwork::V4(address)),
        ipv6_address: config.node.ipv6_address.map(IpNetwork::V6),
        as_number: Some(config.bgp.as_number.0),
        route_reflector_cluster_id: config.bgp.route_reflector_cluster_id,
        ipv4_ipip_tunnel_addr: None,
    };
    for _ in 0..5 {
        let result = match ds.get::<Node>(name).await {
            Ok(current) => {
                let mut node = current.spec.clone();
                let mut merged = node.bgp.clone().unwrap_or_default();
                merged.ipv4_address = bgp.ipv4_address;
                merged.ipv6_address = bgp.ipv6_address;
                merged.as_number = bgp.as_number;
                merged.route_reflector_cluster_id = bgp.route_reflector_cluster_id;
                if node.bgp.as_ref() == Some(&merged) {
                    return Ok(());
                }
                node.bgp = Some(merged);
                ds.update(name, &node, current.revision).await.map(|_| ())
            }
            Err(DatastoreError::NotFound { .. }) => {
                ds.create(name, &Node { bgp: Some(bgp.clone()), ..Node::default() }).await.map(|_| ())
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(DatastoreError::Conflict { .. } | DatastoreError::AlreadyExists { .. }) => continue,
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
    if !pools.items.iter().any(|p| p.spec.cidr.is_ipv4() && p.spec.ipip_mode != EncapMode::Never && !p.spec.disabled) {
        return Ok(None);
    }
    let ipam = Ipam::new(ds.clone(), IpamOptions { node: node.to_string(), ..IpamOptions::default() });
    let address = ipam.tunnel_address(4).await.map_err(|e| format!("cannot allocate the tunnel address: {e}"))?.ip;
    for _ in 0..5 {
        let current = ds.get::<Node>(node).await.map_err(|e| format!("cannot read node {node}: {e}"))?;
        let mut spec = current.spec.clone();
        let bgp = spec.bgp.get_or_insert_with(Default::default);
        if bgp.ipv4_ipip_tunnel_addr == Some(address) {
            return Ok(Some(address));
        }
        bgp.ipv4_ipip_tunnel_addr = Some(address);
        match ds.update(node, &spec, current.revision).await {
            Ok(_) => return Ok(Some(address)),
            Err(DatastoreError::Conflict { .. }) => continue,
            Err(e) => return Err(format!("cannot record the tunnel address on node {node}: {e}")),
        }
    }
    Err(format!("cannot record the tunnel address on node {node}: the record kept changing"))
}
