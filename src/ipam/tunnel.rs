//! Node tunnel addresses: one per tunnel device and node, allocated once under Calico's handle
//! name for that device and returned as is on later calls. Garbage collection knows them by
//! these names and checks them against node existence, not against workloads.

use super::block_ops;
use super::claim;
use super::client::{Allocation, Ipam, Request};
use super::error::Result;
use super::handles;
use crate::datastore::resources::{IpamBlock, PoolUse, cidr_name};
use crate::datastore::{DatastoreError, Stored};
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;

/// The device a node's tunnel address is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelDevice {
    /// `tunl0` (or the userspace IP-in-IP device).
    Ipip,
    /// The IPv6 tunnel address of the IP-in-IP code path.
    Ipv6,
    /// The IPv4 VXLAN device.
    Vxlan,
    /// The IPv6 VXLAN device.
    VxlanV6,
}

impl TunnelDevice {
    pub const ALL: [TunnelDevice; 4] =
        [TunnelDevice::Ipip, TunnelDevice::Ipv6, TunnelDevice::Vxlan, TunnelDevice::VxlanV6];

    /// What the handle name starts with; the node name follows (Calico's names).
    pub fn handle_prefix(self) -> &'static str {
        match self {
            TunnelDevice::Ipip => "ipip-tunnel-addr-",
            TunnelDevice::Ipv6 => "ipv6-tunnel-addr-",
            TunnelDevice::Vxlan => "vxlan-tunnel-addr-",
            TunnelDevice::VxlanV6 => "vxlan-v6-tunnel-addr-",
        }
    }

    /// The handle of `node`'s address for this device.
    pub fn handle(self, node: &str) -> String {
        format!("{}{node}", self.handle_prefix())
    }

    /// The `type` attribute stored with the address (Calico's).
    fn allocation_type(self) -> &'static str {
        match self {
            TunnelDevice::Ipip => "ipipTunnelAddress",
            TunnelDevice::Ipv6 => "ipv6TunnelAddress",
            TunnelDevice::Vxlan => "vxlanTunnelAddress",
            TunnelDevice::VxlanV6 => "vxlanV6TunnelAddress",
        }
    }

    /// 4 or 6.
    pub fn family(self) -> u8 {
        match self {
            TunnelDevice::Ipip | TunnelDevice::Vxlan => 4,
            TunnelDevice::Ipv6 | TunnelDevice::VxlanV6 => 6,
        }
    }
}

/// Whether `handle` holds a node's tunnel address.
pub fn is_tunnel_handle(handle: &str) -> bool {
    TunnelDevice::ALL.iter().any(|d| handle.starts_with(d.handle_prefix()))
}

impl Ipam {
    /// This node's address for `device`, from a pool allowing tunnel use and, unless `pools` is
    /// empty, among `pools`: the one its handle already holds, else a new one.
    pub async fn tunnel_address_for(&self, device: TunnelDevice, pools: &[IpNetwork]) -> Result<Allocation> {
        let node = self.node();
        let handle = device.handle(node);
        if let Some(found) = self.held_by(&handle).await? {
            return Ok(found);
        }
        let attributes = BTreeMap::from([
            ("type".to_string(), device.allocation_type().to_string()),
            ("node".to_string(), node.to_string()),
        ]);
        let family = device.family();
        self.allocate(Request { handle, family, purpose: PoolUse::Tunnel, attributes, pools: pools.to_vec() }).await
    }

    /// The address `handle` holds, if any.
    async fn held_by(&self, handle: &str) -> Result<Option<Allocation>> {
        let Some(record) = handles::get(self.store(), handle).await? else { return Ok(None) };
        for cidr in record.spec.block.keys().filter_map(|c| c.parse::<IpNetwork>().ok()) {
            let block: Stored<IpamBlock> = match self.store().get(&cidr_name(&cidr)).await {
                Err(DatastoreError::NotFound { .. }) => continue,
                other => other?,
            };
            let Some(ordinal) =
                (0..block.spec.allocations.len()).find(|o| block_ops::handle_at(&block.spec, *o) == Some(handle))
            else {
                continue;
            };
            let sequence = block.spec.sequence_number_for_allocation.get(&ordinal.to_string()).unwrap_or(0);
            let borrowed = block.spec.affinity.as_deref() != Some(claim::host_affinity(self.node()).as_str());
            let ip = super::block_math::ip_at(&cidr, ordinal);
            return Ok(Some(Allocation { handle: handle.to_string(), ip, block: cidr, sequence, borrowed }));
        }
        Ok(None)
    }
}
