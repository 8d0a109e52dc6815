//! A small interpreter of [`Program`]: what the rendered nftables rules do, without a kernel.
//! The differential test checks it against the reference evaluator.

use super::ir::{IrRule, Match, Program, Side};
use super::model::{Direction, Packet, Verdict};
use crate::datastore::resources::Action;

/// The verdict of `direction` at the local endpoint named `endpoint`.
pub fn verdict(program: &Program, endpoint: &str, direction: Direction, packet: &Packet) -> Verdict {
    let Some(chains) = program.endpoints.iter().find(|e| e.endpoint == endpoint) else {
        return Verdict::Unselected;
    };
    let list = match direction {
        Direction::Ingress => &chains.ingress,
        Direction::Egress => &chains.egress,
    };
    let Some(list) = list else { return Verdict::Unselected };
    for &index in list {
        let policy = &program.policies[index];
        let rules = match direction {
            Direction::Ingress => &policy.ingress,
            Direction::Egress => &policy.egress,
        };
        for rule in rules.iter().filter(|r| matches(program, r, packet)) {
            match rule.action {
                Action::Log => {}
                action => return Verdict::Rule { policy: policy.name.clone(), rule: rule.origin, action },
            }
        }
    }
    Verdict::EndOfTier
}

/// Whether `packet` gets through: the source's egress, then the destination's ingress, for
/// the local endpoints that own the addresses.
pub fn allows(program: &Program, packet: &Packet) -> bool {
    let owner = |a| program.endpoints.iter().find(|e| e.addresses.contains(&a)).map(|e| e.endpoint.as_str());
    let egress = owner(packet.source).is_none_or(|e| verdict(program, e, Direction::Egress, packet).allows());
    let ingress = owner(packet.destination).is_none_or(|e| verdict(program, e, Direction::Ingress, packet).allows());
    egress && ingress
}

fn matches(program: &Program, rule: &IrRule, packet: &Packet) -> bool {
    let address = |side| if side == Side::Source { packet.source } else { packet.destination };
    let port = |side| if side == Side::Source { packet.source_port } else { packet.destination_port };
    let icmp = |t: u8, c: Option<u8>| packet.icmp.is_some_and(|(pt, pc)| pt == t && c.is_none_or(|c| c == pc));
    rule.matches.iter().all(|m| match m {
        Match::Family(v) => (*v == 4) == packet.source.is_ipv4(),
        Match::Protocol(p) => *p == packet.protocol,
        Match::NotProtocol(p) => *p != packet.protocol,
        Match::Icmp { icmp_type, code } => icmp(*icmp_type, *code),
        Match::NotIcmp { icmp_type, code } => !icmp(*icmp_type, *code),
        Match::Address { side, set, negated } => {
            let a = address(*side);
            let found = program.sets.get(set).is_some_and(|s| s.iter().any(|n| n.contains(a)));
            found != *negated
        }
        Match::Port { side, ranges, negated } => {
            let p = port(*side);
            ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&p)) != *negated
        }
    })
}
