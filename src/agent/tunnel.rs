//! The remote-route side of the dataplane: the path selector (direct or
//! IP-in-IP per pool `ipipMode` and per the liveness probe), the prober,
//! and — when a pool uses IP-in-IP — the tunnel itself: the kernel's `tunl0`
//! where the kernel has ipip, else the userspace encapsulator.
//!
//! The tunnel is set up once at start from the pools that exist then; a pool
//! that starts using IP-in-IP later takes effect at the next agent start
//! (until then its blocks are routed direct, as with `ipipMode: Never`).

use crate::config::Config;
use crate::dataplane::Programmer;
use crate::dataplane::netlink::RouteSocket;
use crate::datastore::Datastore;
use crate::datastore::resources::{EncapMode, IpPool};
use crate::fallback_ipip::liveness::{self, ProbeConfig};
use crate::fallback_ipip::selector::{self, RemoteBatch, SelectorConfig, SelectorOutputs, TunnelHandle};
use crate::fallback_ipip::{TunnelCounters, TunnelMode, UserspaceConfig, UserspaceTunnel, choose_mode};
use ipnetwork::Ipv4Network;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// What the rest of the agent keeps of the tunnel and the selector.
pub struct RemotePaths {
    /// Where changes of the learned routes go.
    pub routes: mpsc::Sender<RemoteBatch>,
    /// `ipip-kernel`, `ipip-userspace`, or `none` when no pool uses IP-in-IP.
    pub mode: &'static str,
    /// The path chosen per node (for status: the tunnel mode toward a peer).
    pub paths: watch::Receiver<HashMap<Ipv4Addr, crate::fallback_ipip::path::Path>>,
    pub counters: Option<Arc<TunnelCounters>>,
    /// The userspace tunnel's persistent TUN device, which outlives the
    /// agent unless `dataplane.cleanup_on_exit` removes it.
    pub persistent_device: Option<String>,
    /// Keeps the userspace tunnel's device and tasks alive.
    _tunnel: Option<Arc<UserspaceTunnel>>,
}

fn underlay_mtu(ifname: &str) -> u32 {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/mtu"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1500)
}

/// Sets up the tunnel (if a pool needs it), the prober and the selector.
pub async fn start(
    config: &Config,
    ds: &Datastore,
    node: &str,
    local: Ipv4Network,
    programmer: Programmer,
    pools: &[IpPool],
) -> Result<RemotePaths, String> {
    let mut socket = RouteSocket::open().map_err(|e| format!("cannot open a netlink socket: {e}"))?;
    let underlay = socket
        .ipv4_addresses()
        .map_err(|e| format!("cannot list interface addresses: {e}"))?
        .into_iter()
        .find(|a| a.address.ip() == local.ip())
        .ok_or_else(|| format!("node address {local} is on no interface"))?;
    let mtu = config.dataplane.mtu.unwrap_or_else(|| underlay_mtu(&underlay.ifname));
    let wants_ipip = pools.iter().any(|p| p.cidr.is_ipv4() && !p.disabled && p.ipip_mode != EncapMode::Never);

    let (mut tunnel, mut counters, mut mode, mut tunnel_address) = (None, None, "none", None);
    let mut handle = None;
    if wants_ipip {
        // Allocated once (Calico's handle name) and recorded in the node's record.
        tunnel_address = match super::node::publish_tunnel_address(ds, node).await {
            Ok(Some(IpAddr::V4(v4))) => Some(v4),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(subsys = "ipip", error = %e, "no tunnel address; tunnelled traffic from this node itself has the node address as source");
                None
            }
        };
        match choose_mode(config.ipip.implementation, &mut socket, mtu.saturating_sub(20), tunnel_address)
            .map_err(|e| e.to_string())?
        {
            TunnelMode::Kernel { ifindex } => {
                mode = "ipip-kernel";
                handle = Some(TunnelHandle::Kernel { ifindex });
            }
            TunnelMode::Userspace => {
                let t = Arc::new(
                    UserspaceTunnel::start(&UserspaceConfig {
                        device: config.ipip.userspace_device.clone(),
                        underlay_mtu: u16::try_from(mtu).unwrap_or(u16::MAX),
                        address: tunnel_address,
                    })
                    .map_err(|e| format!("cannot start the userspace IP-in-IP tunnel: {e}"))?,
                );
                mode = "ipip-userspace";
                counters = Some(t.counters.clone());
                handle = Some(TunnelHandle::Userspace(t.clone()));
                tunnel = Some(t);
            }
        }
    }

    // Two batches (each at most 16 384 changes): a busy selector or
    // programmer slows the learned-route follower, whose input (the RIB's
    // change queue) coalesces per prefix, instead of a table piling up here.
    let (routes_tx, routes_rx) = mpsc::channel(2);
    // Probe targets (same-subnet nodes of CrossSubnet pools) come from the selector.
    let (targets_tx, targets_rx) = watch::channel(Vec::new());
    let (verdict_tx, verdict_rx) = watch::channel(HashMap::new());
    let (paths_tx, paths_rx) = watch::channel(HashMap::new());
    if handle.is_some() {
        let source = tunnel_address.unwrap_or(local.ip());
        tokio::spawn(async move {
            if let Err(e) = liveness::run(source, ProbeConfig::default(), targets_rx, verdict_tx).await {
                tracing::warn!(subsys = "ipip", error = %e, "the liveness prober stopped; CrossSubnet stays direct");
            }
        });
    }
    let selector_config = SelectorConfig { local, underlay_ifindex: underlay.ifindex, tunnel: handle };
    let outputs = SelectorOutputs { paths: paths_tx, targets: targets_tx };
    tokio::spawn(selector::run(selector_config, programmer, routes_rx, verdict_rx, outputs));
    tracing::info!(subsys = "ipip", mode, tunnel_address = ?tunnel_address, underlay = %underlay.ifname, mtu, "remote paths ready");
    let persistent_device = tunnel.as_ref().map(|_| config.ipip.userspace_device.clone());
    Ok(RemotePaths { routes: routes_tx, mode, paths: paths_rx, counters, persistent_device, _tunnel: tunnel })
}
