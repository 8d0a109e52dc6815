//! Kernel VXLAN, as Calico's Felix sets up `vxlan.calico`: the device
//! (`vxlan.tortie` over an IPv4 underlay, `vxlan-v6.tortie` over IPv6) and,
//! for every remote node, its VTEP — a permanent neighbour entry (tunnel
//! address → MAC) and an FDB entry (MAC → underlay address) on the device.
//! Routes through it (`<block> via <tunnel address> dev vxlan.tortie
//! onlink`) are the route programmer's.
//!
//! The device is ours: entries on it that nobody wants are deleted, while
//! entries on any other device are never touched. Entries already as
//! wanted are never rewritten.

mod device;
pub mod encap;
mod task;
mod vteps;
mod vteps_kernel;

pub use device::{Device, DeviceConfig, ensure_device, remove_device};
pub use task::spawn;
pub use vteps::{Entry, KernelEntries, KernelFdb, KernelNeighbour, NeighbourState, Op, Vtep, plan};
pub use vteps_kernel::{ReconcileStats, read_entries, reconcile};

/// The device over an IPv4 underlay.
pub const DEVICE_V4: &str = "vxlan.tortie";
/// The device over an IPv6 underlay.
pub const DEVICE_V6: &str = "vxlan-v6.tortie";
/// Calico's defaults.
pub const DEFAULT_VNI: u32 = 4096;
pub const DEFAULT_PORT: u16 = 4789;

const IPV4_HEADER: u32 = 20;
const IPV6_HEADER: u32 = 40;
const UDP_HEADER: u32 = 8;
const VXLAN_HEADER: u32 = 8;
const INNER_ETHERNET_HEADER: u32 = 14;

/// Bytes VXLAN adds to every packet over an IPv4 underlay (outer IP, UDP,
/// VXLAN header, the inner frame's Ethernet header): 50.
pub const OVERHEAD_V4: u32 = IPV4_HEADER + UDP_HEADER + VXLAN_HEADER + INNER_ETHERNET_HEADER;
/// The same over an IPv6 underlay: 70.
pub const OVERHEAD_V6: u32 = IPV6_HEADER + UDP_HEADER + VXLAN_HEADER + INNER_ETHERNET_HEADER;

/// The overhead for an underlay whose local address is `local`.
pub fn overhead(local: &std::net::IpAddr) -> u32 {
    if local.is_ipv4() { OVERHEAD_V4 } else { OVERHEAD_V6 }
}

/// Why the VXLAN device cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum VxlanError {
    /// A configuration value the kernel would refuse, named with its value.
    #[error("vxlan: {field} = {value}: {reason}")]
    Invalid { field: &'static str, value: String, reason: &'static str },
    /// EOPNOTSUPP: this kernel has no vxlan.
    #[error("the kernel has no vxlan support ({0})")]
    Unsupported(std::io::Error),
    #[error("cannot {what} vxlan device {device}: {source}")]
    Netlink { what: &'static str, device: String, source: std::io::Error },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overheads_are_calicos() {
        assert_eq!((OVERHEAD_V4, OVERHEAD_V6), (50, 70));
        assert_eq!(overhead(&"10.0.0.1".parse().unwrap()), 50);
        assert_eq!(overhead(&"fd00::1".parse().unwrap()), 70);
    }
}
