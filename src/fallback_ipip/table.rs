//! Which node to send an inner packet to: longest-prefix match of the
//! inner destination over the remote blocks reached through the tunnel.

use ipnetwork::Ipv4Network;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

/// One remote block and the node that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TunnelPeer {
    pub block: Ipv4Network,
    pub node: Ipv4Addr,
}

/// Block → node, and the set of node addresses allowed to send us
/// encapsulated packets.
#[derive(Debug, Default, Clone)]
pub struct TunnelTable {
    /// Per prefix length (longest first): masked network → node.
    by_len: Vec<(u8, HashMap<u32, Ipv4Addr>)>,
    nodes: HashSet<Ipv4Addr>,
}

impl TunnelTable {
    pub fn new(peers: &[TunnelPeer], extra_nodes: &[Ipv4Addr]) -> Self {
        let mut by_len: HashMap<u8, HashMap<u32, Ipv4Addr>> = HashMap::new();
        let mut nodes: HashSet<Ipv4Addr> = extra_nodes.iter().copied().collect();
        for p in peers {
            by_len.entry(p.block.prefix()).or_default().insert(u32::from(p.block.network()), p.node);
            nodes.insert(p.node);
        }
        let mut by_len: Vec<_> = by_len.into_iter().collect();
        by_len.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        TunnelTable { by_len, nodes }
    }

    /// The node owning the most specific block that contains `dst`.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let d = u32::from(dst);
        self.by_len.iter().find_map(|(len, map)| {
            let mask = if *len == 0 { 0 } else { u32::MAX << (32 - u32::from(*len)) };
            map.get(&(d & mask)).copied()
        })
    }

    /// True when `src` is a node we exchange tunnel traffic with.
    pub fn is_known_node(&self, src: Ipv4Addr) -> bool {
        self.nodes.contains(&src)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_unknown_sources_are_not_nodes() {
        let peers = [
            TunnelPeer { block: "10.244.2.0/26".parse().unwrap(), node: "10.2.0.2".parse().unwrap() },
            TunnelPeer { block: "10.244.2.7/32".parse().unwrap(), node: "10.3.0.3".parse().unwrap() },
        ];
        let t = TunnelTable::new(&peers, &[]);
        assert_eq!(t.lookup("10.244.2.9".parse().unwrap()), Some("10.2.0.2".parse().unwrap()));
        assert_eq!(t.lookup("10.244.2.7".parse().unwrap()), Some("10.3.0.3".parse().unwrap()), "a borrowed /32");
        assert_eq!(t.lookup("10.244.3.1".parse().unwrap()), None);
        assert!(t.is_known_node("10.3.0.3".parse().unwrap()));
        assert!(!t.is_known_node("10.9.9.9".parse().unwrap()));
    }
}
