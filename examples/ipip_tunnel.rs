//! A standalone userspace IP-in-IP tunnel, for `bench/tunnel.sh`: run it
//! inside a node's namespace as
//! `ipip_tunnel DEVICE TUNNEL_ADDR REMOTE_BLOCK REMOTE_NODE [LOCAL_NODE [UNDERLAY_DEV]]`
//! and it carries REMOTE_BLOCK through DEVICE until killed; a route
//! `REMOTE_BLOCK dev DEVICE` is written with protocol 116. With LOCAL_NODE
//! (this node's underlay address) the route carries the in-kernel transmit
//! program as the agent writes it (`encap bpf xmit tipip<node>`); with
//! UNDERLAY_DEV too, the in-kernel receive program is attached to that
//! device's ingress, as the agent does.

use tortie::dataplane::{DesiredRoute, Programmer, ProgrammerConfig, Route, RouteKind, RouteTarget};
use tortie::fallback_ipip::lwt_xmit::BpfTransmit;
use tortie::fallback_ipip::tc_decap::BpfReceive;
use tortie::fallback_ipip::{TunnelPeer, UserspaceConfig, UserspaceTunnel};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: ipip_tunnel DEVICE TUNNEL_ADDR REMOTE_BLOCK REMOTE_NODE [LOCAL_NODE [UNDERLAY_DEV]]";
    let device = args.get(1).expect(usage).clone();
    let address = args.get(2).and_then(|a| a.parse().ok()).expect(usage);
    let block: ipnetwork::Ipv4Network = args.get(3).and_then(|a| a.parse().ok()).expect(usage);
    let node = args.get(4).and_then(|a| a.parse().ok()).expect(usage);
    let local = args.get(5).map(|a| a.parse().expect(usage));
    // `ip netns exec` mounts the namespace's own sysfs.
    let underlay: Option<u32> = args.get(6).map(|dev| {
        let path = format!("/sys/class/net/{dev}/ifindex");
        std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse().ok()).expect("UNDERLAY_DEV exists")
    });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let tunnel = UserspaceTunnel::start(&UserspaceConfig { device, underlay_mtu: 1500, address: Some(address) })
            .expect("tunnel starts");
        tunnel.set_peers(&[TunnelPeer { block, node }], &[]);
        let ifindex = tunnel.ifindex();
        let _receive = match (local, underlay) {
            (Some(local), Some(underlay)) => {
                let r = BpfReceive::start(local, underlay, ifindex).expect("receive program attaches");
                r.set_nodes(&[node].into_iter().collect());
                Some(r)
            }
            _ => None,
        };
        let target = match local {
            Some(local) => RouteTarget::BpfXmit {
                ifindex,
                program: BpfTransmit::probe(local).and_then(|t| t.program(node)).expect("transmit program loads"),
            },
            None => RouteTarget::Device { ifindex },
        };
        let p = Programmer::start(ProgrammerConfig::default()).await.expect("programmer starts");
        p.set(DesiredRoute { route: Route { dst: block.into(), target, mtu: None }, kind: RouteKind::RemoteIpip })
            .await;
        p.flush().await;
        println!("ready");
        let _ = tokio::signal::ctrl_c().await;
    });
}
