//! Tunnel addresses after a migration: a Node's tunnel address fields and the IPAM allocations
//! held by its tunnel handles (`ipip-tunnel-addr-<node>`, `vxlan-tunnel-addr-<node>`, …) must
//! name the same addresses, or the agent replaces the node's tunnel address on start.

use super::Object;
use crate::datastore::Kind;
use crate::datastore::resources::IpamBlock;
use crate::ipam::block_math::ordinal_of;
use crate::ipam::block_ops::handle_at;
use crate::ipam::tunnel::TunnelDevice;
use std::net::IpAddr;

/// The Node field holding each device's address (a JSON pointer into the spec).
fn node_field(device: TunnelDevice) -> Option<&'static str> {
    match device {
        TunnelDevice::Ipip => Some("/bgp/ipv4IPIPTunnelAddr"),
        TunnelDevice::Vxlan => Some("/ipv4VXLANTunnelAddr"),
        TunnelDevice::VxlanV6 => Some("/ipv6VXLANTunnelAddr"),
        TunnelDevice::Ipv6 => None,
    }
}

/// Reports each disagreement between Nodes and blocks, when the input has blocks.
pub fn check_tunnel_handles(objects: &[Object], report: &mut Vec<String>) {
    let blocks: Vec<(&str, IpamBlock)> = objects
        .iter()
        .filter(|o| o.kind == Kind::IpamBlock)
        .filter_map(|o| Some((o.name.as_str(), serde_json::from_value(o.spec.clone()).ok()?)))
        .collect();
    if blocks.is_empty() {
        return;
    }
    let holder = |ip: IpAddr| {
        blocks.iter().find_map(|(_, b)| ordinal_of(&b.cidr, ip).map(|o| handle_at(b, o).map(str::to_string)))
    };
    let nodes: Vec<&Object> = objects.iter().filter(|o| o.kind == Kind::Node).collect();
    for node in &nodes {
        for device in TunnelDevice::ALL {
            let Some(pointer) = node_field(device) else { continue };
            let Some(ip) = node.spec.pointer(pointer).and_then(|v| v.as_str()).and_then(|t| t.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let field = format!("spec{}", pointer.replace('/', "."));
            let expected = device.handle(&node.name);
            match holder(ip).flatten() {
                Some(h) if h == expected => {}
                Some(h) => report.push(format!(
                    "Node/{}: {field} {ip} is held by handle {h:?}, not {expected:?}: the agent will allocate the node a new tunnel address",
                    node.name
                )),
                None => report.push(format!(
                    "Node/{}: {field} {ip} is not allocated in the exported IPAM blocks: the agent will allocate the node a new tunnel address",
                    node.name
                )),
            }
        }
    }
    for (name, block) in &blocks {
        for ordinal in 0..block.allocations.len() {
            let Some(handle) = handle_at(block, ordinal) else { continue };
            for device in TunnelDevice::ALL {
                let Some(node_name) = handle.strip_prefix(device.handle_prefix()) else { continue };
                let Some(node) = nodes.iter().find(|n| n.name == node_name) else { continue };
                let ip = crate::ipam::block_math::ip_at(&block.cidr, ordinal);
                let recorded = node_field(device).and_then(|p| node.spec.pointer(p)).and_then(|v| v.as_str());
                if recorded.and_then(|t| t.parse::<IpAddr>().ok()) != Some(ip) {
                    report.push(format!(
                        "IPAMBlock/{name}: {ip} is held by {handle:?} but Node/{node_name} names another tunnel address: one of the two is stale"
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn block_with(handles: &[&str]) -> Object {
        let mut block = IpamBlock::empty("10.0.0.0/30".parse().unwrap(), Some("host:n1".into()));
        for (i, h) in handles.iter().enumerate() {
            block.allocations[i] = Some(i as u32);
            block.unallocated.retain(|o| *o != i as u32);
            block.attributes.push(crate::datastore::resources::AllocationAttribute {
                handle_id: Some(h.to_string()),
                ..Default::default()
            });
        }
        Object { kind: Kind::IpamBlock, name: "10-0-0-0-30".into(), spec: serde_json::to_value(block).unwrap() }
    }

    fn node(name: &str, ipip: &str) -> Object {
        Object { kind: Kind::Node, name: name.into(), spec: json!({"bgp": {"ipv4IPIPTunnelAddr": ipip}}) }
    }

    #[test]
    fn agreeing_nodes_and_blocks_report_nothing() {
        let mut report = Vec::new();
        check_tunnel_handles(&[block_with(&["ipip-tunnel-addr-n1"]), node("n1", "10.0.0.0")], &mut report);
        assert_eq!(report, Vec::<String>::new());
    }

    #[test]
    fn each_disagreement_is_reported() {
        let mut report = Vec::new();
        let objects =
            [block_with(&["ipip-tunnel-addr-n1", "k8s-pod-network.x"]), node("n1", "10.0.0.1"), node("n2", "10.0.0.3")];
        check_tunnel_handles(&objects, &mut report);
        assert_eq!(
            report,
            vec![
                "Node/n1: spec.bgp.ipv4IPIPTunnelAddr 10.0.0.1 is held by handle \"k8s-pod-network.x\", not \"ipip-tunnel-addr-n1\": the agent will allocate the node a new tunnel address",
                "Node/n2: spec.bgp.ipv4IPIPTunnelAddr 10.0.0.3 is not allocated in the exported IPAM blocks: the agent will allocate the node a new tunnel address",
                "IPAMBlock/10-0-0-0-30: 10.0.0.0 is held by \"ipip-tunnel-addr-n1\" but Node/n1 names another tunnel address: one of the two is stale",
            ]
        );
    }
}
