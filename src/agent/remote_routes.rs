//! The agent's side of the remote-routes stage: the encapsulations the
//! pools ask for, set up once at start — IP-in-IP (the kernel's `tunl0`
//! where the kernel has ipip, else the userspace encapsulator) and VXLAN
//! (a kernel device per underlay family, its VTEP published on the Node) —
//! the liveness prober, and the stage task itself.
//!
//! An encapsulation is set up from the pools that exist at start; a pool
//! that starts using one later takes effect at the next agent start (until
//! then its blocks are routed direct, and the stage logs a warning).

use crate::bgp::rib::BestPathChange;
use crate::config::Config;
use crate::dataplane::Programmer;
use crate::dataplane::netlink::RouteSocket;
use crate::dataplane::underlay::Underlay;
use crate::datastore::Datastore;
use crate::datastore::resources::IpPool;
use crate::fallback_ipip::encap::{KernelIpip, UserspaceIpip};
use crate::fallback_ipip::{TunnelCounters, TunnelMode, UserspaceConfig, UserspaceTunnel, choose_mode};
use crate::fallback_ipip::{lwt_xmit, tc_decap};
use crate::remote_routes::liveness::{self, ProbeConfig};
use crate::remote_routes::stage::{self, Latency, StageConfig, StageInputs, StageOutputs};
use crate::remote_routes::{EncapKind, Encapsulations, LearnedSource, LocalPrefixes, PathKind, PoolEncap, RemoteNodes};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The encapsulations of this node.
pub struct Encaps {
    pub encaps: Encapsulations,
    /// The IP-in-IP implementation in use; `None` when no pool uses IP-in-IP.
    pub ipip: Option<PathKind>,
    pub counters: Option<Arc<TunnelCounters>>,
    /// Devices that outlive the agent unless `dataplane.cleanup_on_exit`
    /// removes them (the userspace tunnel's persistent TUN device).
    pub persistent_devices: Vec<String>,
    /// Where liveness probes come from: a tunnel address (a pod-range
    /// source, filtered as pod traffic is), else the node's address.
    pub probe_source: Ipv4Addr,
    /// The VXLAN devices' VTEP tasks (supervised: one ending ends the agent).
    pub vtep_tasks: Vec<JoinHandle<()>>,
}

/// How often the VXLAN devices' neighbour and FDB entries are compared
/// with the kernel even without a change (drift repair).
const VTEP_RESYNC: std::time::Duration = std::time::Duration::from_secs(10);

/// Which encapsulations the pools ask for: (kind, IPv6 blocks).
fn wanted(pools: &[IpPool]) -> Vec<(EncapKind, bool)> {
    let mut w: Vec<(EncapKind, bool)> = pools
        .iter()
        .filter(|p| !p.disabled)
        .filter_map(|p| PoolEncap::of(p).map(|e| (e.kind, p.cidr.is_ipv6())))
        .collect();
    w.sort_by_key(|(k, v6)| (*k as u8, *v6));
    w.dedup();
    w
}

/// Sets up the encapsulations the pools ask for.
pub async fn setup(
    config: &Config,
    ds: &Datastore,
    node: &str,
    underlay: &Underlay,
    pools: &[IpPool],
    stop: &watch::Receiver<bool>,
) -> Result<Encaps, String> {
    let mut socket = RouteSocket::open().map_err(|e| format!("cannot open a netlink socket: {e}"))?;
    let mut out = Encaps {
        encaps: Encapsulations::default(),
        ipip: None,
        counters: None,
        persistent_devices: Vec::new(),
        probe_source: underlay.v4.ip(),
        vtep_tasks: Vec::new(),
    };
    let site = Site { config, ds, node, underlay, stop };
    for (kind, ipv6) in wanted(pools) {
        match (kind, ipv6) {
            (EncapKind::Ipip, false) => setup_ipip(&site, &mut socket, &mut out).await?,
            (EncapKind::Ipip, true) => {}
            (EncapKind::Vxlan, ipv6) => setup_vxlan(&site, &mut socket, ipv6, &mut out).await?,
        }
    }
    tracing::info!(
        subsys = "routes",
        encapsulations = ?out.encaps.paths().iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        underlay = %underlay.ifname,
        mtu = underlay.mtu,
        "encapsulations ready"
    );
    Ok(out)
}

/// What the encapsulations are set up for: this node, its underlay, and the
/// agent's stop for the tasks they start.
struct Site<'a> {
    config: &'a Config,
    ds: &'a Datastore,
    node: &'a str,
    underlay: &'a Underlay,
    stop: &'a watch::Receiver<bool>,
}

async fn setup_ipip(site: &Site<'_>, socket: &mut RouteSocket, out: &mut Encaps) -> Result<(), String> {
    let Site { config, ds, node, underlay, .. } = *site;
    // Allocated once (Calico's handle name) and recorded in the node's record.
    let tunnel_address = match super::node::publish_tunnel_address(ds, node).await {
        Ok(Some(IpAddr::V4(v4))) => Some(v4),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(subsys = "ipip", error = %e, "no tunnel address; tunnelled traffic from this node itself has the node address as source");
            None
        }
    };
    match choose_mode(config.ipip.implementation, socket, underlay, tunnel_address).map_err(|e| e.to_string())? {
        TunnelMode::Kernel { ifindex } => {
            out.encaps.set(EncapKind::Ipip, false, Arc::new(KernelIpip { ifindex }));
            out.ipip = Some(PathKind::Ipip);
        }
        TunnelMode::Userspace => {
            let t = Arc::new(
                UserspaceTunnel::start(&UserspaceConfig {
                    device: config.ipip.userspace_device.clone(),
                    underlay_mtu: u16::try_from(underlay.mtu).unwrap_or(u16::MAX),
                    address: tunnel_address,
                })
                .map_err(|e| format!("cannot start the userspace IP-in-IP tunnel: {e}"))?,
            );
            out.counters = Some(t.counters.clone());
            out.persistent_devices.push(config.ipip.userspace_device.clone());
            let transmit = lwt_xmit::choose(config.ipip.userspace_bpf, underlay.v4.ip());
            let receive = tc_decap::choose(config.ipip.userspace_bpf, underlay.v4.ip(), underlay.ifindex, t.ifindex());
            out.encaps.set(EncapKind::Ipip, false, Arc::new(UserspaceIpip::new(t, transmit, receive)));
            out.ipip = Some(PathKind::IpipUserspace);
        }
    }
    if let Some(a) = tunnel_address {
        out.probe_source = a;
    }
    Ok(())
}

async fn setup_vxlan(site: &Site<'_>, socket: &mut RouteSocket, ipv6: bool, out: &mut Encaps) -> Result<(), String> {
    let Site { config, ds, node, underlay, stop } = *site;
    let (name, local, family) = match (ipv6, underlay.v6) {
        (false, _) => (&config.vxlan.device, IpAddr::V4(underlay.v4.ip()), 4),
        (true, Some(v6)) => (&config.vxlan.device_v6, IpAddr::V6(v6.ip()), 6),
        (true, None) => {
            tracing::warn!(
                subsys = "vxlan",
                "an IPv6 pool uses VXLAN but node.ipv6_address is not set: its blocks are routed direct"
            );
            return Ok(());
        }
    };
    let mut device = crate::vxlan::DeviceConfig {
        name: name.clone(),
        vni: config.vxlan.vni,
        port: config.vxlan.port,
        parent_ifindex: underlay.ifindex,
        local,
        mtu: underlay.inner_mtu(crate::vxlan::overhead(&local)),
        address: None,
    };
    // The MAC first (an adopted device keeps its own), then the address
    // published with it, then the address on the device.
    let created = crate::vxlan::ensure_device(socket, &device).map_err(|e| e.to_string())?;
    let mac = crate::datastore::resources::MacAddress(created.mac);
    let address = super::vtep::publish_vtep(ds, node, family, mac).await?;
    device.address = address;
    let ready = crate::vxlan::ensure_device(socket, &device).map_err(|e| e.to_string())?;
    let (vteps_tx, vteps_rx) = watch::channel(None);
    let task = crate::vxlan::spawn(ready.ifindex, vteps_rx, VTEP_RESYNC, stop.clone())
        .map_err(|e| format!("cannot start the VTEP task of {name}: {e}"))?;
    out.vtep_tasks.push(task);
    out.encaps.set(
        EncapKind::Vxlan,
        ipv6,
        Arc::new(crate::vxlan::encap::VxlanEncap::new(ready.ifindex, ipv6, vteps_tx)),
    );
    out.persistent_devices.push(name.clone());
    if let Some(IpAddr::V4(a)) = address {
        out.probe_source = a;
    }
    tracing::info!(subsys = "vxlan", device = %name, ifindex = ready.ifindex, tunnel_address = ?address, mtu = device.mtu, "VXLAN ready");
    Ok(())
}

/// What the stage follows besides the learned routes, and where it publishes.
pub struct StageWiring {
    pub pools: watch::Receiver<Vec<IpPool>>,
    pub local: watch::Receiver<LocalPrefixes>,
    pub remotes: watch::Receiver<Option<RemoteNodes>>,
    pub paths: watch::Sender<HashMap<IpAddr, PathKind>>,
    pub generation: watch::Sender<u64>,
    pub holding: watch::Sender<bool>,
    pub latency: Option<Latency>,
    pub stop: watch::Receiver<bool>,
}

/// The running stage and its prober.
pub struct Running {
    pub stage: JoinHandle<()>,
    /// Present when an encapsulation is: a CrossSubnet node whose direct
    /// path dies is reached encapsulated.
    pub prober: Option<JoinHandle<()>>,
}

/// Starts the liveness prober (when there is an encapsulation to fall back
/// to) and the stage.
pub fn start<L: LearnedSource>(
    encaps: &Encaps,
    underlay: &Underlay,
    programmer: Programmer,
    (learned, source): (mpsc::Receiver<Vec<BestPathChange>>, L),
    wiring: StageWiring,
) -> Running {
    let (targets_tx, targets_rx) = watch::channel(Vec::new());
    let (verdict_tx, verdict_rx) = watch::channel(HashMap::new());
    let prober = (!encaps.encaps.is_empty()).then(|| {
        let source = encaps.probe_source;
        tokio::spawn(async move {
            if let Err(e) = liveness::run(source, ProbeConfig::default(), targets_rx, verdict_tx).await {
                tracing::warn!(subsys = "routes", error = %e, "the liveness prober stopped; CrossSubnet stays direct");
            }
        })
    });
    let config = StageConfig {
        local_v4: underlay.v4,
        local_v6: underlay.v6,
        underlay_ifindex: underlay.ifindex,
        encaps: encaps.encaps.clone(),
    };
    let inputs = StageInputs {
        learned,
        source,
        pools: wiring.pools,
        local: wiring.local,
        remotes: wiring.remotes,
        verdicts: verdict_rx,
        stop: wiring.stop,
    };
    let outputs = StageOutputs {
        paths: wiring.paths,
        targets: targets_tx,
        generation: wiring.generation,
        holding: wiring.holding,
        latency: wiring.latency,
    };
    Running { stage: tokio::spawn(stage::run(config, programmer, inputs, outputs)), prober }
}
