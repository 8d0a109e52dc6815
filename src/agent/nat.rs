//! NAT outgoing: follows the pools (their `natOutgoing`) and the Node
//! records (every node's addresses) and gives the nftables table owner
//! the NAT section whenever either changes; publishes the pools with NAT
//! for status. Until the Nodes are first read nothing is sent (the table
//! owner keeps the previous run's table meanwhile).

use super::picture::Known;
use crate::dataplane::nftables::NftTable;
use crate::dataplane::nftables::nat::{self, NatInput};
use crate::datastore::resources::{IpPool, Node};
use std::net::IpAddr;
use tokio::sync::watch;

/// Every address of a node that traffic to it can carry: its underlay
/// addresses and its tunnel devices' addresses.
pub fn node_addresses(node: &Node) -> Vec<IpAddr> {
    let bgp = node.bgp.as_ref();
    let underlay = bgp.into_iter().flat_map(|b| [b.ipv4_address.map(|a| a.ip()), b.ipv6_address.map(|a| a.ip())]);
    let tunnels = [bgp.and_then(|b| b.ipv4_ipip_tunnel_addr), node.ipv4_vxlan_tunnel_addr, node.ipv6_vxlan_tunnel_addr];
    underlay.chain(tunnels).flatten().collect()
}

/// What NAT outgoing needs from the pools and the nodes.
pub fn nat_input<'a>(pools: &[IpPool], nodes: impl IntoIterator<Item = &'a Node>) -> NatInput {
    let mut hosts: Vec<IpAddr> = nodes.into_iter().flat_map(node_addresses).collect();
    hosts.sort();
    hosts.dedup();
    NatInput { pools: pools.iter().map(|p| (p.cidr, p.nat_outgoing)).collect(), hosts }
}

/// Keeps the table's NAT section equal to [`nat::section`] of the current
/// pools and nodes (the agent's picture of them) until `stop` changes; `nat_pools` gets the
/// CIDRs of the pools with NAT.
pub async fn follow(
    mut nodes: watch::Receiver<Option<Known<Node>>>,
    mut pools: watch::Receiver<Vec<IpPool>>,
    table: NftTable,
    nat_pools: watch::Sender<Vec<String>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut sent: Option<NatInput> = None;
    loop {
        // `None` while the Nodes are being read: the last section stays. Both are marked seen
        // on every pass, so a change of the pools meanwhile does not wake this again and again.
        let pool_list = pools.borrow_and_update().clone();
        let input = nodes.borrow_and_update().as_ref().map(|known| nat_input(&pool_list, known.specs()));
        if let Some(input) = input
            && sent.as_ref() != Some(&input)
        {
            let pools = nat::nat_pools(&input);
            tracing::info!(subsys = "nat", pools = ?pools, hosts = input.hosts.len(), "NAT outgoing sets changed");
            nat_pools.send_replace(pools);
            table.set_section(nat::USER, nat::section(&input)).await;
            sent = Some(input);
        }
        tokio::select! {
            _ = stop.changed() => return,
            changed = pools.changed() => if changed.is_err() { return },
            changed = nodes.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::resources::NodeBgp;

    #[test]
    fn every_pool_and_every_node_address_once() {
        let node = |v4: &str, ipip: Option<&str>| Node {
            bgp: Some(NodeBgp {
                ipv4_address: v4.parse().ok(),
                ipv6_address: "fd00::1/64".parse().ok().filter(|_| ipip.is_none()),
                ipv4_ipip_tunnel_addr: ipip.map(|a| a.parse().unwrap()),
                ..NodeBgp::default()
            }),
            ipv4_vxlan_tunnel_addr: None,
            ..Node::default()
        };
        let mut pool = IpPool::new("10.244.0.0/16".parse().unwrap());
        pool.nat_outgoing = true;
        let other = IpPool::new("10.99.0.0/16".parse().unwrap());
        let nodes = [node("192.0.2.1/24", None), node("192.0.2.2/24", Some("10.244.7.1")), node("192.0.2.1/24", None)];
        let input = nat_input(&[pool, other], &nodes);
        assert_eq!(
            input.pools,
            vec![("10.244.0.0/16".parse().unwrap(), true), ("10.99.0.0/16".parse().unwrap(), false)]
        );
        let hosts: Vec<String> = input.hosts.iter().map(|h| h.to_string()).collect();
        assert_eq!(hosts, ["10.244.7.1", "192.0.2.1", "192.0.2.2", "fd00::1"]);
    }
}
