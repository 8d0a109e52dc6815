//! Nodes running the remote-routes stage in namespaces, without the agent:
//! the encapsulations a test asks for (the userspace IP-in-IP tunnel, the
//! kernel VXLAN devices with their VTEP tasks), a route programmer, the
//! liveness prober (fast) and the stage over a fixed set of learned routes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tortie::bgp::rib::BestPathChange;
use tortie::dataplane::netlink::RouteSocket;
use tortie::dataplane::{Programmer, ProgrammerConfig};
use tortie::datastore::resources::{EncapMode, IpPool};
use tortie::fallback_ipip::encap::UserspaceIpip;
use tortie::fallback_ipip::{TunnelCounters, UserspaceConfig, UserspaceTunnel};
use tortie::netns::{NamespaceThread, Topology, spawn_in_namespace};
use tortie::remote_routes::liveness::{self, ProbeConfig};
use tortie::remote_routes::stage::{self, StageConfig, StageInputs, StageOutputs};
use tortie::remote_routes::{EncapKind, Encapsulations, LearnedSource, RemoteNodes};
use tortie::vxlan::encap::VxlanEncap;
use tortie::vxlan::{DEFAULT_PORT, DEFAULT_VNI, DEVICE_V4, DEVICE_V6, DeviceConfig, OVERHEAD_V4, OVERHEAD_V6};

/// The learned routes are fixed: nothing to send again.
pub struct Fixed;

impl LearnedSource for Fixed {
    async fn resend_learned(&self) {}
}

pub fn pool(cidr: &str, ipip: EncapMode, vxlan: EncapMode) -> IpPool {
    let mut p = IpPool::new(cidr.parse().unwrap());
    p.ipip_mode = ipip;
    p.vxlan_mode = vxlan;
    p
}

pub fn learned(prefix: &str, node: &str) -> BestPathChange {
    let hop: IpAddr = node.parse().unwrap();
    BestPathChange {
        prefix: prefix.parse().unwrap(),
        next_hops: [hop].into_iter().collect(),
        peers: [hop].into_iter().collect(),
    }
}

/// One node's encapsulations and what it learned.
pub struct NodeSpec {
    pub ns: &'static str,
    pub local_v4: &'static str,
    pub local_v6: Option<&'static str>,
    /// The userspace IP-in-IP tunnel's address, when the node has one.
    pub ipip: Option<&'static str>,
    pub vxlan_v4: Option<&'static str>,
    /// (underlay address, tunnel address) of the IPv6 VXLAN device.
    pub vxlan_v6: Option<(&'static str, &'static str)>,
    pub pools: Vec<IpPool>,
    pub learned: Vec<BestPathChange>,
}

pub struct Running {
    _thread: NamespaceThread,
    /// The MACs of its IPv4 and IPv6 VXLAN devices.
    pub macs: (Option<[u8; 6]>, Option<[u8; 6]>),
    /// The userspace IP-in-IP tunnel's counters, when it has one.
    pub counters: Option<Arc<TunnelCounters>>,
}

pub fn ifindex(t: &Topology, ns: &str, dev: &str) -> u32 {
    t.exec_json(ns, &["ip", "-j", "link", "show", dev]).unwrap()[0]["ifindex"].as_u64().unwrap() as u32
}

/// Starts the node's devices, programmer, prober and stage; its remote
/// nodes (the other node's VTEPs) come through `remotes` once known.
pub fn start(t: &Topology, spec: NodeSpec, remotes: watch::Receiver<Option<RemoteNodes>>) -> Running {
    let underlay = ifindex(t, spec.ns, "eth1");
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = spawn_in_namespace(&t.ns(spec.ns), move |stop| async move {
        let mut socket = RouteSocket::open().unwrap();
        let mut encaps = Encapsulations::default();
        let mut keep = Vec::new();
        let (_stop_tx, stop_rx) = watch::channel(false);
        let local_v4: ipnetwork::Ipv4Network = spec.local_v4.parse().unwrap();
        let mut probe_source = local_v4.ip();
        let mut counters = None;
        if let Some(addr) = spec.ipip {
            let tunnel = Arc::new(
                UserspaceTunnel::start(&UserspaceConfig {
                    device: "ttipip0".into(),
                    underlay_mtu: 1500,
                    address: Some(addr.parse().unwrap()),
                })
                .unwrap(),
            );
            counters = Some(tunnel.counters.clone());
            encaps.set(EncapKind::Ipip, false, Arc::new(UserspaceIpip::new(tunnel, None, None)));
            probe_source = addr.parse().unwrap();
        }
        let mut macs = (None, None);
        let mut device = |name: &str, local: IpAddr, tunnel: &str, overhead| {
            let cfg = DeviceConfig {
                name: name.into(),
                vni: DEFAULT_VNI,
                port: DEFAULT_PORT,
                parent_ifindex: underlay,
                local,
                mtu: 1500 - overhead,
                address: Some(tunnel.parse().unwrap()),
            };
            let d = tortie::vxlan::ensure_device(&mut socket, &cfg).unwrap();
            let (vteps_tx, vteps_rx) = watch::channel(None);
            keep.push(tortie::vxlan::spawn(d.ifindex, vteps_rx, Duration::from_secs(1), stop_rx.clone()).unwrap());
            (d, vteps_tx)
        };
        if let Some(tunnel) = spec.vxlan_v4 {
            // Probes come from a pod-range source, filtered as pod traffic is.
            probe_source = tunnel.parse().unwrap();
            let (d, vteps) = device(DEVICE_V4, IpAddr::V4(local_v4.ip()), tunnel, OVERHEAD_V4);
            encaps.set(EncapKind::Vxlan, false, Arc::new(VxlanEncap::new(d.ifindex, false, vteps)));
            macs.0 = Some(d.mac);
        }
        if let Some((local, tunnel)) = spec.vxlan_v6 {
            let (d, vteps) = device(DEVICE_V6, local.parse().unwrap(), tunnel, OVERHEAD_V6);
            encaps.set(EncapKind::Vxlan, true, Arc::new(VxlanEncap::new(d.ifindex, true, vteps)));
            macs.1 = Some(d.mac);
        }
        let programmer = Programmer::start(ProgrammerConfig::default()).await.expect("programmer");
        let (learned_tx, learned_rx) = tokio::sync::mpsc::channel(1);
        learned_tx.try_send(spec.learned).unwrap();
        let (_pools_tx, pools) = watch::channel(spec.pools);
        let (_local_tx, local) = watch::channel(Default::default());
        let (targets_tx, targets_rx) = watch::channel(Vec::new());
        let (verdict_tx, verdicts) = watch::channel(HashMap::new());
        let (paths, _paths_rx) = watch::channel(HashMap::new());
        let (generation, _generation_rx) = watch::channel(0);
        let fast = ProbeConfig { interval: Duration::from_millis(100), down_after: 3, up_after: 3 };
        tokio::spawn(liveness::run(probe_source, fast, targets_rx, verdict_tx));
        let config = StageConfig {
            local_v4,
            local_v6: spec.local_v6.map(|a| a.parse().unwrap()),
            underlay_ifindex: underlay,
            encaps,
        };
        let inputs = StageInputs { learned: learned_rx, source: Fixed, pools, local, remotes, verdicts, stop: stop_rx };
        let outputs =
            StageOutputs { paths, targets: targets_tx, generation, holding: watch::channel(false).0, latency: None };
        tokio::spawn(stage::run(config, programmer.clone(), inputs, outputs));
        tx.send((macs, counters)).unwrap();
        let _ = stop.await;
        drop((learned_tx, keep));
    })
    .unwrap();
    let (macs, counters) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    Running { _thread: thread, macs, counters }
}
