//! IP-in-IP toward peers that cannot be reached directly.
//!
//! The kernel's `tunl0` when the kernel has ipip ([`kernel`]); otherwise —
//! creating the device fails with EOPNOTSUPP, as on kernels built without
//! ipip and without modules — a userspace encapsulator ([`userspace`]) on
//! the same wire format. [`choose_mode`] decides once at start and says why.

pub mod gro;
pub mod gso;
pub mod kernel;
pub mod liveness;
pub mod packet;
pub mod path;
pub mod selector;
mod sys;
pub mod table;
#[cfg(test)]
mod test_packets;
pub mod userspace;
pub mod virtio;

pub use table::TunnelPeer;
pub use userspace::{TunnelCounters, UserspaceConfig, UserspaceTunnel};

use crate::config::IpipImplementation;
use crate::dataplane::netlink::RouteSocket;
use std::net::Ipv4Addr;

/// How this node encapsulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelMode {
    /// `tunl0` with the given interface index.
    Kernel { ifindex: u32 },
    /// The userspace encapsulator.
    Userspace,
}

impl TunnelMode {
    /// The value shown in status (`tunnel_mode`) and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelMode::Kernel { .. } => "ipip-kernel",
            TunnelMode::Userspace => "ipip-userspace",
        }
    }
}

/// The mode `implementation` would get on this kernel, found without
/// changing anything: where the kernel has ipip, every network namespace
/// has the `tunl0` fallback device.
pub fn detect_mode(implementation: IpipImplementation, socket: &mut RouteSocket) -> Result<&'static str, String> {
    let kernel_has_ipip = socket.link_index(kernel::TUNL0).is_ok();
    match (implementation, kernel_has_ipip) {
        (IpipImplementation::Userspace, _) | (IpipImplementation::Auto, false) => Ok("ipip-userspace"),
        (_, true) => Ok("ipip-kernel"),
        (IpipImplementation::Kernel, false) => {
            Err("ipip.implementation is kernel, but the kernel has no ipip (no tunl0 device)".to_string())
        }
    }
}

/// Why no tunnel could be set up.
#[derive(Debug, thiserror::Error)]
pub enum ChooseError {
    #[error("ipip.implementation is kernel, but {0}")]
    KernelRequired(kernel::KernelIpipError),
    #[error(transparent)]
    Kernel(kernel::KernelIpipError),
}

/// Picks kernel or userspace IP-in-IP as `implementation` asks, trying
/// the kernel first under `auto`. Logs the choice and the reason.
pub fn choose_mode(
    implementation: IpipImplementation,
    socket: &mut RouteSocket,
    tunnel_mtu: u32,
    address: Option<Ipv4Addr>,
) -> Result<TunnelMode, ChooseError> {
    if implementation == IpipImplementation::Userspace {
        tracing::info!(
            subsys = "ipip",
            mode = "ipip-userspace",
            reason = "ipip.implementation is userspace",
            "tunnel mode chosen"
        );
        return Ok(TunnelMode::Userspace);
    }
    match kernel::ensure_tunl0(socket, tunnel_mtu, address) {
        Ok(ifindex) => {
            tracing::info!(subsys = "ipip", mode = "ipip-kernel", ifindex, "tunnel mode chosen");
            Ok(TunnelMode::Kernel { ifindex })
        }
        Err(e @ kernel::KernelIpipError::Unsupported(_)) if implementation == IpipImplementation::Auto => {
            tracing::info!(subsys = "ipip", mode = "ipip-userspace", reason = %e, "tunnel mode chosen: falling back to userspace");
            Ok(TunnelMode::Userspace)
        }
        Err(e) if implementation == IpipImplementation::Kernel => Err(ChooseError::KernelRequired(e)),
        Err(e) => Err(ChooseError::Kernel(e)),
    }
}
