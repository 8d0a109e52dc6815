//! The NAT-outgoing section, as Calico's Felix writes it: traffic from a
//! pool with `natOutgoing` to a destination in no pool (any pool, NAT or
//! not) and on no node of the cluster is masqueraded with
//! `fully-random` ports, in postrouting. Felix's `masq-ipam-pools` and
//! `all-ipam-pools` sets become ours per family, plus the nodes' addresses
//! (traffic to another node, e.g. through a tunnel, keeps the pod's
//! source). A pool or node change changes set elements, not rules.

use super::render::{AddressSet, BaseChain, ChainSpec, Section, address_field, set_ref};
use ipnetwork::IpNetwork;
use nftables::stmt::{Match, NAT, NATFlag, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfHook};
use std::collections::HashSet;
use std::net::IpAddr;

/// The user name of this section.
pub const USER: &str = "nat";
/// The postrouting chain.
pub const CHAIN: &str = "nat-outgoing";
/// The priority of source NAT (`srcnat`).
const SRCNAT_PRIORITY: i32 = 100;

/// The set names of one family: pools with NAT, every pool, every node.
pub fn set_names(ipv6: bool) -> [String; 3] {
    let family = if ipv6 { "v6" } else { "v4" };
    ["masq-ipam-pools", "all-ipam-pools", "all-hosts"].map(|s| format!("nat-{s}-{family}"))
}

/// What NAT outgoing needs to know: every pool with its flag, every node's address.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NatInput {
    /// Every pool's CIDR and whether it has `natOutgoing`.
    pub pools: Vec<(IpNetwork, bool)>,
    /// The addresses of every node (this one included).
    pub hosts: Vec<IpAddr>,
}

/// The section for `input`: the sets of both families and one postrouting
/// chain with one rule per family.
pub fn section(input: &NatInput) -> Section {
    let mut sets = Vec::new();
    let mut rules = Vec::new();
    for ipv6 in [false, true] {
        let [masq, all, hosts] = set_names(ipv6);
        let of_family = |n: &IpNetwork| n.is_ipv6() == ipv6;
        let masq_pools = input.pools.iter().filter(|(c, nat)| *nat && of_family(c)).map(|(c, _)| *c).collect();
        let all_pools = input.pools.iter().filter(|(c, _)| of_family(c)).map(|(c, _)| *c).collect();
        let host_addrs = input.hosts.iter().map(|a| IpNetwork::from(*a)).filter(of_family).collect();
        sets.push(AddressSet { name: masq.clone(), ipv6, elements: masq_pools });
        sets.push(AddressSet { name: all.clone(), ipv6, elements: all_pools });
        sets.push(AddressSet { name: hosts.clone(), ipv6, elements: host_addrs });
        let lookup = |field, op, set: &str| {
            Statement::Match(Match { left: address_field(ipv6, field), right: set_ref(set), op })
        };
        rules.push(vec![
            lookup("saddr", Operator::EQ, &masq),
            lookup("daddr", Operator::NEQ, &all),
            lookup("daddr", Operator::NEQ, &hosts),
            Statement::Masquerade(Some(NAT {
                addr: None,
                family: None,
                port: None,
                flags: Some(HashSet::from([NATFlag::FullyRandom])),
            })),
        ]);
    }
    let base = BaseChain {
        kind: NfChainType::NAT,
        hook: NfHook::Postrouting,
        priority: SRCNAT_PRIORITY,
        policy: NfChainPolicy::Accept,
    };
    let chains = vec![ChainSpec { name: CHAIN.to_string(), base: Some(base), rules: rules.into() }].into();
    Section { sets, chains, ..Section::default() }
}

/// The pools with NAT outgoing, for status.
pub fn nat_pools(input: &NatInput) -> Vec<String> {
    input.pools.iter().filter(|(_, nat)| *nat).map(|(c, _)| c.to_string()).collect()
}
