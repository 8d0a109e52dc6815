//! IP-in-IP, one of the remote-routes stage's encapsulations ([`encap`]).
//!
//! The kernel's `tunl0` when the kernel has ipip ([`kernel`]); otherwise —
//! creating the device fails with EOPNOTSUPP, as on kernels built without
//! ipip and without modules — a userspace encapsulator ([`userspace`]) on
//! the same wire format. [`choose_mode`] decides once at start and says why.

pub mod bpf_asm;
pub mod bpf_load;
pub mod encap;
pub mod gro;
pub mod gso;
pub mod kernel;
pub mod lwt_xmit;
pub mod packet;
mod sys;
pub mod table;
pub mod tc_decap;
#[cfg(test)]
mod test_packets;
pub mod userspace;
pub mod virtio;

pub use table::TunnelPeer;
pub use userspace::{TunnelCounters, UserspaceConfig, UserspaceTunnel};

use crate::config::IpipImplementation;
use crate::dataplane::netlink::RouteSocket;
use crate::dataplane::underlay::Underlay;
use crate::remote_routes::PathKind;
use std::net::Ipv4Addr;

/// How this node encapsulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelMode {
    /// `tunl0` with the given interface index.
    Kernel { ifindex: u32 },
    /// The userspace encapsulator.
    Userspace,
}

/// The IP-in-IP implementation as status (`ipip_mode`) and metrics name
/// it: `ipip-kernel`, `ipip-userspace`, or `none`.
pub fn implementation_label(path: Option<PathKind>) -> &'static str {
    match path {
        Some(PathKind::Ipip) => "ipip-kernel",
        Some(PathKind::IpipUserspace) => "ipip-userspace",
        _ => "none",
    }
}

/// The mode `implementation` would get on this kernel, found without
/// changing anything: where the kernel has ipip, every network namespace
/// has the `tunl0` fallback device.
pub fn detect_mode(implementation: IpipImplementation, socket: &mut RouteSocket) -> Result<PathKind, String> {
    let kernel_has_ipip = socket.link_index(kernel::TUNL0).is_ok();
    match (implementation, kernel_has_ipip) {
        (IpipImplementation::Userspace, _) | (IpipImplementation::Auto, false) => Ok(PathKind::IpipUserspace),
        (_, true) => Ok(PathKind::Ipip),
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
    underlay: &Underlay,
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
    match kernel::ensure_tunl0(socket, underlay.inner_mtu(packet::OVERHEAD as u32), address) {
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
