//! This node's VXLAN tunnel endpoint in the datastore: the device's address, allocated from a
//! pool that uses VXLAN under Calico's handle (`vxlan-tunnel-addr-<node>`,
//! `vxlan-v6-tunnel-addr-<node>`), and its MAC, both on the Node record where the other nodes
//! read them (`vteps.rs`).

use super::node::{tunnel_pools, update_node};
use crate::datastore::Datastore;
use crate::datastore::resources::{IpPool, MacAddress, Node};
use crate::ipam::tunnel::TunnelDevice;
use crate::ipam::{Ipam, IpamOptions};
use std::net::IpAddr;

/// Allocates (or finds again) `node`'s VXLAN tunnel address of `family` (4 or 6) and records it
/// with the device's `mac` on the Node (`ipv4VXLANTunnelAddr` and `vxlanTunnelMACAddr`, or the
/// IPv6 fields). `None`, touching nothing, when no enabled pool of the family uses VXLAN and
/// allows tunnel addresses.
pub async fn publish_vtep(ds: &Datastore, node: &str, family: u8, mac: MacAddress) -> Result<Option<IpAddr>, String> {
    let device = match family {
        4 => TunnelDevice::Vxlan,
        6 => TunnelDevice::VxlanV6,
        other => return Err(format!("family: {other} is not 4 or 6")),
    };
    let pools = ds.list::<IpPool>().await.map_err(|e| format!("cannot list IP pools: {e}"))?;
    let pools: Vec<IpPool> = pools.items.into_iter().map(|p| p.spec).collect();
    let vxlan_pools = tunnel_pools(&pools, family, |p| p.vxlan_mode);
    if vxlan_pools.is_empty() {
        return Ok(None);
    }
    let ipam = Ipam::new(ds.clone(), IpamOptions { node: node.to_string(), ..IpamOptions::default() });
    let address = ipam
        .tunnel_address_for(device, &vxlan_pools)
        .await
        .map_err(|e| format!("cannot allocate the IPv{family} VXLAN tunnel address: {e}"))?
        .ip;
    update_node(ds, node, "the VXLAN tunnel endpoint", |spec| set_endpoint(spec, family, address, mac)).await?;
    Ok(Some(address))
}

/// Writes the endpoint of `family` into `spec`; `true` when that changed it.
fn set_endpoint(spec: &mut Node, family: u8, address: IpAddr, mac: MacAddress) -> bool {
    let (addr_field, mac_field) = if family == 4 {
        (&mut spec.ipv4_vxlan_tunnel_addr, &mut spec.vxlan_tunnel_mac_addr)
    } else {
        (&mut spec.ipv6_vxlan_tunnel_addr, &mut spec.vxlan_tunnel_mac_addr_v6)
    };
    let changed = *addr_field != Some(address) || *mac_field != Some(mac);
    *addr_field = Some(address);
    *mac_field = Some(mac);
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::resources::{EncapMode, IpamHandle};
    use crate::datastore::sqlite::{SqliteBackend, SqliteOptions};
    use ipnetwork::IpNetwork;

    const MAC: MacAddress = MacAddress([0x66, 0x0a, 0xbb, 0, 0xee, 0xff]);

    async fn store(dir: &tempfile::TempDir) -> Datastore {
        let backend = SqliteBackend::open(dir.path().join("ds.db"), SqliteOptions::default()).await.unwrap();
        let ds = Datastore::new(backend);
        ds.create("n1", &Node::default()).await.unwrap();
        ds
    }

    async fn add_pool(ds: &Datastore, name: &str, cidr: &str, ipip: EncapMode, vxlan: EncapMode) {
        let mut pool = IpPool::new(cidr.parse::<IpNetwork>().unwrap());
        (pool.ipip_mode, pool.vxlan_mode) = (ipip, vxlan);
        crate::ipam::create_pool(ds, name, &pool).await.unwrap();
    }

    #[tokio::test]
    async fn the_address_comes_from_a_vxlan_pool_and_is_recorded_with_the_mac() {
        let dir = tempfile::tempdir().unwrap();
        let ds = store(&dir).await;
        add_pool(&ds, "ipip", "10.10.0.0/16", EncapMode::Always, EncapMode::Never).await;
        add_pool(&ds, "vxlan", "10.20.0.0/16", EncapMode::Never, EncapMode::CrossSubnet).await;
        let address = publish_vtep(&ds, "n1", 4, MAC).await.unwrap().unwrap();
        assert!("10.20.0.0/16".parse::<IpNetwork>().unwrap().contains(address), "{address}");
        let node = ds.get::<Node>("n1").await.unwrap();
        assert_eq!((node.spec.ipv4_vxlan_tunnel_addr, node.spec.vxlan_tunnel_mac_addr), (Some(address), Some(MAC)));
        assert!(ds.get::<IpamHandle>("vxlan-tunnel-addr-n1").await.is_ok());
    }

    #[tokio::test]
    async fn publishing_again_reuses_the_handles_address_and_writes_nothing_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let ds = store(&dir).await;
        add_pool(&ds, "vxlan", "10.20.0.0/16", EncapMode::Never, EncapMode::Always).await;
        let first = publish_vtep(&ds, "n1", 4, MAC).await.unwrap();
        let revision = ds.get::<Node>("n1").await.unwrap().revision;
        assert_eq!(publish_vtep(&ds, "n1", 4, MAC).await.unwrap(), first);
        assert_eq!(ds.get::<Node>("n1").await.unwrap().revision, revision, "an unchanged endpoint is not rewritten");

        // The record lost (an operator edit): the handle's address comes back, not a new one.
        let current = ds.get::<Node>("n1").await.unwrap();
        ds.update("n1", &Node::default(), current.revision).await.unwrap();
        let other_mac = MacAddress([0x66, 0, 0, 0, 0, 1]);
        assert_eq!(publish_vtep(&ds, "n1", 4, other_mac).await.unwrap(), first);
        let node = ds.get::<Node>("n1").await.unwrap().spec;
        assert_eq!((node.ipv4_vxlan_tunnel_addr, node.vxlan_tunnel_mac_addr), (first, Some(other_mac)));
    }

    #[tokio::test]
    async fn ipv6_uses_its_own_handle_and_fields() {
        let dir = tempfile::tempdir().unwrap();
        let ds = store(&dir).await;
        add_pool(&ds, "v6", "fd00:20::/64", EncapMode::Never, EncapMode::Always).await;
        let address = publish_vtep(&ds, "n1", 6, MAC).await.unwrap().unwrap();
        assert!(address.is_ipv6());
        let node = ds.get::<Node>("n1").await.unwrap().spec;
        assert_eq!((node.ipv6_vxlan_tunnel_addr, node.vxlan_tunnel_mac_addr_v6), (Some(address), Some(MAC)));
        assert_eq!(node.ipv4_vxlan_tunnel_addr, None);
        assert!(ds.get::<IpamHandle>("vxlan-v6-tunnel-addr-n1").await.is_ok());
    }

    #[tokio::test]
    async fn without_a_usable_vxlan_pool_nothing_is_allocated_or_written() {
        let dir = tempfile::tempdir().unwrap();
        let ds = store(&dir).await;
        add_pool(&ds, "ipip", "10.10.0.0/16", EncapMode::Always, EncapMode::Never).await;
        let mut workload_only = IpPool::new("10.30.0.0/16".parse().unwrap());
        workload_only.vxlan_mode = EncapMode::Always;
        workload_only.allowed_uses = vec![crate::datastore::resources::PoolUse::Workload];
        crate::ipam::create_pool(&ds, "workload-only", &workload_only).await.unwrap();
        let mut disabled = IpPool::new("10.40.0.0/16".parse().unwrap());
        (disabled.vxlan_mode, disabled.disabled) = (EncapMode::Always, true);
        crate::ipam::create_pool(&ds, "disabled", &disabled).await.unwrap();
        let revision = ds.get::<Node>("n1").await.unwrap().revision;
        assert_eq!(publish_vtep(&ds, "n1", 4, MAC).await, Ok(None));
        assert_eq!(ds.get::<Node>("n1").await.unwrap().revision, revision);
        assert!(ds.get::<IpamHandle>("vxlan-tunnel-addr-n1").await.is_err());
        assert_eq!(publish_vtep(&ds, "n1", 5, MAC).await, Err("family: 5 is not 4 or 6".to_string()));
    }
}
