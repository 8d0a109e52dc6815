//! `tortie policy trace`: the verdict of each direction for one packet between two endpoints,
//! with the policy and rule that decide — egress at the source, ingress at the destination —
//! computed by compiling the policies for those two endpoints (the compiler the agent programs
//! with) and running the [`interpret`](super::interpret) interpreter over the program.

use super::model::{Direction, Endpoint, Namespaces, Packet, Policy, Verdict};
use super::{Local, compile, interpret};
use crate::datastore::resources::Action;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// The source port of a traced packet (rules on source ports see this one).
pub const SOURCE_PORT: u16 = 40000;

/// Where a traced packet goes: a pod (`namespace/name`) or an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Pod(String),
    Address(IpAddr),
}

/// The decision of one direction at one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The endpoint (`namespace/name`) whose policy decides.
    pub endpoint: String,
    /// `allow` or `deny`.
    pub verdict: String,
    /// The model name of the deciding policy; absent when none decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The index of the deciding rule among the policy's rules of the direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    /// Why, in words.
    pub reason: String,
}

/// A traced packet and the decision of each direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    pub from: String,
    pub from_address: IpAddr,
    /// The destination pod, absent for an address that is no pod's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub to_address: IpAddr,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub port: u16,
    /// At the source.
    pub egress: Decision,
    /// At the destination; absent when it is no pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Decision>,
    /// Both directions allow it.
    pub allowed: bool,
}

/// Why a trace cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("no pod {0} in the cluster")]
    UnknownPod(String),
    #[error("{0}")]
    Invalid(String),
}

/// The IANA number of `tcp`, `udp` or `sctp` (any case).
pub fn protocol_number(name: &str) -> Result<u8, String> {
    use crate::datastore::resources::policy_rule::{SCTP, TCP, UDP};
    match name.to_ascii_lowercase().as_str() {
        "tcp" => Ok(TCP),
        "udp" => Ok(UDP),
        "sctp" => Ok(SCTP),
        other => Err(format!("protocol {other:?}: use tcp, udp or sctp")),
    }
}

fn decision(endpoint: &str, verdict: Verdict) -> Decision {
    let (allow, policy, rule, reason) = match verdict {
        Verdict::Unselected => (true, None, None, "no policy selects it for this direction".to_string()),
        Verdict::EndOfTier => (false, None, None, "selected by a policy, and no rule matched".to_string()),
        Verdict::Rule { policy, rule, action } => {
            let reason = match action {
                Action::Pass => "Pass: leaves the tier, and the default allows",
                Action::Deny => "Deny",
                _ => "Allow",
            };
            (matches!(action, Action::Allow | Action::Pass), Some(policy), Some(rule), reason.to_string())
        }
    };
    Decision {
        endpoint: endpoint.to_string(),
        verdict: if allow { "allow" } else { "deny" }.into(),
        policy,
        rule,
        reason,
    }
}

/// Traces a packet of `protocol` to `port` from pod `from` to `to`. The error names an
/// unknown pod, a bad protocol, or a pod without an address of the destination's family.
pub fn trace<E: std::borrow::Borrow<Endpoint>>(
    policies: &[Policy],
    endpoints: &[E],
    namespaces: &Namespaces,
    from: &str,
    to: &Target,
    protocol: &str,
    port: u16,
) -> Result<Trace, TraceError> {
    let number = protocol_number(protocol).map_err(TraceError::Invalid)?;
    let pod = |name: &str| {
        endpoints.iter().map(|e| e.borrow()).find(|e| e.name == name).ok_or(TraceError::UnknownPod(name.to_string()))
    };
    let source = pod(from)?;
    let (destination, to_address) = match to {
        Target::Pod(name) => {
            let d = pod(name)?;
            let family = |a: &&IpAddr| source.addresses.iter().any(|s| s.is_ipv4() == a.is_ipv4());
            let address = d
                .addresses
                .iter()
                .find(family)
                .ok_or_else(|| TraceError::Invalid(format!("pod {name} has no address of {from}'s family")))?;
            (Some(d), *address)
        }
        Target::Address(a) => (endpoints.iter().map(|e| e.borrow()).find(|e| e.addresses.contains(a)), *a),
    };
    let from_address = *source
        .addresses
        .iter()
        .find(|a| a.is_ipv4() == to_address.is_ipv4())
        .ok_or_else(|| TraceError::Invalid(format!("pod {from} has no address of {to_address}'s family")))?;
    let mut local = vec![Local { endpoint: source.name.clone(), interface: "trace-from".into() }];
    local.extend(destination.map(|d| Local { endpoint: d.name.clone(), interface: "trace-to".into() }));
    let program = compile(policies, endpoints, namespaces, &local);
    let packet = Packet {
        source: from_address,
        destination: to_address,
        protocol: number,
        source_port: SOURCE_PORT,
        destination_port: port,
        icmp: None,
    };
    let egress = decision(&source.name, interpret::verdict(&program, &source.name, Direction::Egress, &packet));
    let ingress =
        destination.map(|d| decision(&d.name, interpret::verdict(&program, &d.name, Direction::Ingress, &packet)));
    let allowed = egress.verdict == "allow" && ingress.as_ref().is_none_or(|i| i.verdict == "allow");
    Ok(Trace {
        from: source.name.clone(),
        from_address,
        to: destination.map(|d| d.name.clone()),
        to_address,
        protocol: protocol.to_ascii_lowercase(),
        port,
        egress,
        ingress,
        allowed,
    })
}

#[cfg(test)]
#[path = "trace_tests.rs"]
mod tests;
