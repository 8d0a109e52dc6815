//! The same compiled policy written the way kube-router writes it, as the comparison: per
//! local pod and direction a chain that jumps to one chain per (pod, applying policy), whose
//! rules name the peers' addresses one by one (no ipset binary here, so per-address rules,
//! kube-router's layout without its ipsets). IPv4 only (the world has no IPv6). Negations are
//! written one `!` rule per element: the rule count is the point, not exact semantics.

use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;
use tortie::datastore::resources::Action;
use tortie::policy::Program;
use tortie::policy::ir::{IrRule, Match, Side};

/// `iptables-restore` input for the filter table.
pub fn restore_input(program: &Program) -> String {
    let mut chains = Vec::new();
    let mut rules = Vec::new();
    for (p, endpoint) in program.endpoints.iter().enumerate() {
        let Some(address) = endpoint.addresses.first().copied() else { continue };
        for (ingress, list) in [(true, &endpoint.ingress), (false, &endpoint.egress)] {
            let Some(list) = list else { continue };
            let pod_chain = format!("KR-POD-{p}-{}", if ingress { "I" } else { "E" });
            chains.push(pod_chain.clone());
            let device = if ingress { "-o" } else { "-i" };
            rules.push(format!("-A FORWARD {device} {} -j {pod_chain}", endpoint.interface));
            for &index in list {
                let policy = &program.policies[index];
                let chain = format!("KR-POL-{p}-{index}-{}", if ingress { "I" } else { "E" });
                chains.push(chain.clone());
                rules.push(format!("-A {pod_chain} -j {chain}"));
                rules.push(format!("-A {pod_chain} -m mark --mark 0x10000/0x10000 -j RETURN"));
                for rule in if ingress { &policy.ingress } else { &policy.egress } {
                    rules.extend(expand(rule, &program.sets, address, ingress, &chain));
                }
            }
            rules.push(format!("-A {pod_chain} -j DROP"));
        }
    }
    let mut out = String::from("*filter\n:FORWARD ACCEPT [0:0]\n");
    for chain in chains {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    for rule in rules {
        let _ = writeln!(out, "{rule}");
    }
    out.push_str("COMMIT\n");
    out
}

fn protocol_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        other => other.to_string(),
    }
}

fn contains(set: &[IpNetwork], address: IpAddr) -> bool {
    set.iter().any(|n| n.contains(address))
}

/// One policy rule at one pod: the pod's own side checked here, the peer side one rule per
/// peer address (those in every positive set of that side).
fn expand(
    rule: &IrRule,
    sets: &BTreeMap<String, Vec<IpNetwork>>,
    own: IpAddr,
    ingress: bool,
    chain: &str,
) -> Vec<String> {
    let peer_side = if ingress { Side::Source } else { Side::Destination };
    let mut peers: Option<Vec<IpNetwork>> = None;
    let mut negated = Vec::new();
    let mut rest = String::new();
    for m in &rule.matches {
        match m {
            Match::Family(6) => return Vec::new(),
            Match::Family(_) => {}
            Match::Address { side, set, negated: not } => {
                let elements = sets.get(set).map(Vec::as_slice).unwrap_or_default();
                if *side != peer_side {
                    if contains(elements, own) == *not {
                        return Vec::new();
                    }
                } else if *not {
                    negated.extend(elements.iter().copied());
                } else {
                    peers = Some(match peers {
                        None => elements.to_vec(),
                        Some(p) => p.into_iter().filter(|n| contains(elements, n.ip())).collect(),
                    });
                }
            }
            Match::Protocol(p) => {
                let _ = write!(rest, " -p {}", protocol_name(*p));
            }
            Match::NotProtocol(p) => {
                let _ = write!(rest, " ! -p {p}");
            }
            Match::Icmp { icmp_type, .. } | Match::NotIcmp { icmp_type, .. } => {
                if !rest.contains(" -p ") {
                    rest.push_str(" -p icmp");
                }
                let not = if matches!(m, Match::NotIcmp { .. }) { "! " } else { "" };
                let _ = write!(rest, " -m icmp {not}--icmp-type {icmp_type}");
            }
            Match::Port { side, ranges, negated } => {
                if !rest.contains(" -p ") {
                    rest.push_str(" -p tcp");
                }
                let list: Vec<String> = ranges
                    .iter()
                    .map(|(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}:{hi}") })
                    .collect();
                let flag = if *side == Side::Source { "--sports" } else { "--dports" };
                let not = if *negated { "! " } else { "" };
                let _ = write!(rest, " -m multiport {not}{flag} {}", list.join(","));
            }
        }
    }
    let target = match rule.action {
        Action::Allow | Action::Pass => " -j MARK --set-xmark 0x10000/0x10000".to_string(),
        Action::Deny => " -j DROP".to_string(),
        Action::Log => format!(" -j LOG --log-prefix \"{}\"", &chain[..chain.len().min(28)]),
    };
    let flag = if ingress { "-s" } else { "-d" };
    // iptables takes one address per side: each excluded network skips the rule's copies
    // through a RETURN ahead of them (kube-router does this with an ipset `nomatch`).
    let mut out: Vec<String> = negated.iter().map(|n| format!("-A {chain} {flag} {n}{rest} -j RETURN")).collect();
    match peers {
        None => out.push(format!("-A {chain}{rest}{target}")),
        Some(peers) => out.extend(peers.iter().map(|n| format!("-A {chain} {flag} {n}{rest}{target}"))),
    }
    out
}
