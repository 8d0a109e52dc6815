//! The reference evaluator: the model's meaning, written as plainly as possible (every selector
//! evaluated against every endpoint for every packet). The compiler's output must agree with it
//! (the differential test); `tortie policy trace` can use it to explain a verdict.

use super::model::{
    Direction, Endpoint, EndpointSelector, Entity, Icmp, Namespaces, Packet, Policy, Rule, Verdict, sorted,
};
use crate::datastore::resources::Action;
use crate::datastore::resources::policy_rule::PortMatch;
use std::net::IpAddr;

/// The world a packet is judged in.
pub struct World<'a> {
    pub endpoints: &'a [Endpoint],
    pub namespaces: &'a Namespaces,
    pub policies: &'a [Policy],
}

impl World<'_> {
    fn owner(&self, address: IpAddr) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.addresses.contains(&address))
    }

    /// The verdict of `direction` at `endpoint` for `packet`.
    pub fn verdict(&self, endpoint: &Endpoint, direction: Direction, packet: &Packet) -> Verdict {
        let mut selected = false;
        for policy in sorted(self.policies) {
            let Some(rules) = policy.rules(direction) else { continue };
            if !policy.selects(endpoint, self.namespaces) {
                continue;
            }
            selected = true;
            for (i, rule) in rules.iter().enumerate() {
                if !self.rule_matches(rule, packet) {
                    continue;
                }
                match rule.action {
                    Action::Log => {}
                    action => return Verdict::Rule { policy: policy.name.clone(), rule: i, action },
                }
            }
        }
        if selected { Verdict::EndOfTier } else { Verdict::Unselected }
    }

    /// Whether `packet` gets through: the source endpoint's egress, then the destination
    /// endpoint's ingress (an address of no endpoint has no policy).
    pub fn allows(&self, packet: &Packet) -> bool {
        let egress = self.owner(packet.source).is_none_or(|e| self.verdict(e, Direction::Egress, packet).allows());
        let ingress =
            self.owner(packet.destination).is_none_or(|e| self.verdict(e, Direction::Ingress, packet).allows());
        egress && ingress
    }

    pub fn rule_matches(&self, rule: &Rule, packet: &Packet) -> bool {
        let version = if packet.source.is_ipv4() { 4 } else { 6 };
        let icmp_matches = |icmp: &Icmp| {
            packet.icmp.is_some_and(|(t, c)| t == icmp.icmp_type && icmp.code.is_none_or(|code| code == c))
        };
        rule.ip_version.is_none_or(|v| v == version)
            && rule.protocol.is_none_or(|p| p == packet.protocol)
            && rule.not_protocol.is_none_or(|p| p != packet.protocol)
            && rule.icmp.as_ref().is_none_or(icmp_matches)
            && !rule.not_icmp.as_ref().is_some_and(icmp_matches)
            && self.entity_matches(&rule.source, packet.source, packet.source_port, packet.protocol)
            && self.entity_matches(&rule.destination, packet.destination, packet.destination_port, packet.protocol)
    }

    fn selected(&self, selector: &EndpointSelector, address: IpAddr) -> bool {
        self.owner(address).is_some_and(|e| selector.matches(e, self.namespaces))
    }

    fn port_matches(&self, entity: &Entity, port_match: &PortMatch, address: IpAddr, port: u16, protocol: u8) -> bool {
        match port_match {
            PortMatch::Range(lo, hi) => (*lo..=*hi).contains(&port),
            PortMatch::Named(name) => self.endpoints.iter().any(|e| {
                e.addresses.contains(&address)
                    && entity.selector.as_ref().is_none_or(|s| s.matches(e, self.namespaces))
                    && e.ports.iter().any(|p| p.name == *name && p.protocol == protocol && p.port == port)
            }),
        }
    }

    fn entity_matches(&self, entity: &Entity, address: IpAddr, port: u16, protocol: u8) -> bool {
        (entity.nets.is_empty() || entity.nets.iter().any(|n| n.contains(address)))
            && !entity.not_nets.iter().any(|n| n.contains(address))
            && entity.selector.as_ref().is_none_or(|s| self.selected(s, address))
            && !entity.not_selector.as_ref().is_some_and(|s| self.selected(s, address))
            && (entity.ports.is_empty()
                || entity.ports.iter().any(|p| self.port_matches(entity, p, address, port, protocol)))
            && !entity.not_ports.iter().any(|p| self.port_matches(entity, p, address, port, protocol))
    }
}
