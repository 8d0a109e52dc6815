//! The rules of Calico's NetworkPolicy and GlobalNetworkPolicy (`projectcalico.org/v3`
//! `Rule`, `EntityRule`, `ICMPFields`), with Calico's field names, and the parsed forms of their
//! free-text values (protocols, ports, nets) that both the checks and the policy compiler use.
//!
//! Refused (named in the error): `http` and `services` matches and `serviceAccounts` (they need
//! an application layer or Services tortie does not have).

use super::IntOrString;
use ipnetwork::IpNetwork;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Action {
    Allow,
    Deny,
    /// Logs the packet and goes on to the next rule.
    Log,
    /// Leaves the tier: the remaining policies of the tier are skipped.
    Pass,
}

/// The direction a policy applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum PolicyType {
    Ingress,
    Egress,
}

/// An ICMP type and, with it, optionally a code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IcmpFields {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
}

/// Refused: matches on a Kubernetes Service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Refused: matches on service accounts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// One side of a rule: every match given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<IntOrString>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<IntOrString>,
    /// Refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountMatch>,
    /// Refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServiceMatch>,
}

/// Refused: HTTP matches need an application-layer proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<BTreeMap<String, String>>,
}

/// Free annotations on a rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One rule: every match given holds → `action`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub action: Action,
    #[serde(rename = "ipVersion", default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpFields>,
    #[serde(rename = "notICMP", default, skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpFields>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub source: EntityRule,
    #[serde(default, skip_serializing_if = "is_default")]
    pub destination: EntityRule,
    /// Refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

fn is_default(e: &EntityRule) -> bool {
    *e == EntityRule::default()
}

/// IANA protocol numbers of the names Calico accepts.
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;
pub const SCTP: u8 = 132;
pub const UDPLITE: u8 = 136;

/// The protocols that have ports.
pub fn has_ports(protocol: u8) -> bool {
    matches!(protocol, TCP | UDP | SCTP | UDPLITE)
}

/// The protocol number of a `protocol` value: a name Calico knows (any case) or 0-255.
pub fn protocol_number(value: &IntOrString) -> Result<u8, String> {
    match value {
        IntOrString::Int(n) => u8::try_from(*n).map_err(|_| format!("{n} is not a protocol number (0-255)")),
        IntOrString::String(s) => match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(TCP),
            "udp" => Ok(UDP),
            "icmp" => Ok(ICMP),
            "icmpv6" => Ok(ICMPV6),
            "sctp" => Ok(SCTP),
            "udplite" => Ok(UDPLITE),
            _ => s
                .parse::<u8>()
                .map_err(|_| format!("{s:?} is not a protocol (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 0-255)")),
        },
    }
}

/// A port match: a range of numbers (one number is a range of one) or a port named by the
/// endpoint (resolved per endpoint).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortMatch {
    Range(u16, u16),
    Named(String),
}

/// The longest port name (IANA service names, as Kubernetes' container ports).
pub const MAX_PORT_NAME_LEN: usize = 15;

/// Whether `name` can name a container port: 1-15 of a-z 0-9 '-', with a letter.
pub fn is_port_name(name: &str) -> bool {
    (1..=MAX_PORT_NAME_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
}

/// A Calico port value: 1-65535, `"lo:hi"` with lo ≤ hi, or a port name.
pub fn port_match(value: &IntOrString) -> Result<PortMatch, String> {
    let number =
        |n: i64| u16::try_from(n).ok().filter(|p| *p > 0).ok_or_else(|| format!("{n} is not a port (1-65535)"));
    match value {
        IntOrString::Int(n) => number(*n).map(|p| PortMatch::Range(p, p)),
        IntOrString::String(s) => {
            if let Some((lo, hi)) = s.split_once(':') {
                let part = |t: &str| t.parse::<i64>().map_err(|_| format!("{s:?} is not a port range (lo:hi)"));
                let (lo, hi) = (number(part(lo)?)?, number(part(hi)?)?);
                if lo > hi {
                    return Err(format!("{s:?} is a reversed port range: {lo} > {hi}"));
                }
                Ok(PortMatch::Range(lo, hi))
            } else if let Ok(n) = s.parse::<i64>() {
                number(n).map(|p| PortMatch::Range(p, p))
            } else if is_port_name(s) {
                Ok(PortMatch::Named(s.clone()))
            } else {
                Err(format!("{s:?} is not a port, a range lo:hi or a port name (1-15 of a-z 0-9 -)"))
            }
        }
    }
}

/// A net of `nets`/`notNets`: a CIDR, or an address meaning its host route.
pub fn parse_net(text: &str) -> Result<IpNetwork, String> {
    if let Ok(net) = text.parse::<IpNetwork>() {
        return Ok(net);
    }
    text.parse::<std::net::IpAddr>().map(IpNetwork::from).map_err(|_| format!("{text:?} is not a CIDR or an address"))
}

impl EntityRule {
    fn check(&self, protocol: Option<u8>) -> Result<(), String> {
        for (field, nets) in [("nets", &self.nets), ("notNets", &self.not_nets)] {
            for (i, net) in nets.iter().enumerate() {
                parse_net(net).map_err(|e| format!("{field}[{i}]: {e}"))?;
            }
        }
        for (field, text) in [
            ("selector", &self.selector),
            ("notSelector", &self.not_selector),
            ("namespaceSelector", &self.namespace_selector),
        ] {
            if let Some(text) = text {
                crate::selector::check_field(field, text)?;
            }
        }
        for (field, ports) in [("ports", &self.ports), ("notPorts", &self.not_ports)] {
            if ports.is_empty() {
                continue;
            }
            if !protocol.is_some_and(has_ports) {
                return Err(format!("{field}: needs protocol TCP, UDP, SCTP or UDPLite"));
            }
            for (i, port) in ports.iter().enumerate() {
                if let PortMatch::Named(name) = port_match(port).map_err(|e| format!("{field}[{i}]: {e}"))?
                    && field == "notPorts"
                {
                    return Err(format!("{field}[{i}]: the named port {name:?} is not supported in notPorts"));
                }
            }
        }
        if self.service_accounts.is_some() {
            return Err("serviceAccounts: is not supported: tortie matches endpoints by labels and namespaces".into());
        }
        if self.services.is_some() {
            return Err("services: is not supported: tortie does not follow Services".into());
        }
        Ok(())
    }
}

impl Rule {
    /// The rule's protocol number, if it names one (checked by [`Rule::check`]).
    pub fn protocol_number(&self) -> Option<u8> {
        self.protocol.as_ref().and_then(|p| protocol_number(p).ok())
    }

    pub(super) fn check(&self) -> Result<(), String> {
        if let Some(v) = self.ip_version.filter(|v| *v != 4 && *v != 6) {
            return Err(format!("ipVersion: {v} is not 4 or 6"));
        }
        let protocol = match &self.protocol {
            Some(p) => Some(protocol_number(p).map_err(|e| format!("protocol: {e}"))?),
            None => None,
        };
        if let Some(p) = &self.not_protocol {
            protocol_number(p).map_err(|e| format!("notProtocol: {e}"))?;
        }
        for (field, icmp) in [("icmp", &self.icmp), ("notICMP", &self.not_icmp)] {
            let Some(icmp) = icmp else { continue };
            if !matches!(protocol, Some(ICMP | ICMPV6)) {
                return Err(format!("{field}: needs protocol ICMP or ICMPv6"));
            }
            if let Some(t) = icmp.icmp_type.filter(|t| !(0..=254).contains(t)) {
                return Err(format!("{field}.type: {t} is not an ICMP type (0-254)"));
            }
            if let Some(c) = icmp.code.filter(|c| !(0..=255).contains(c)) {
                return Err(format!("{field}.code: {c} is not an ICMP code (0-255)"));
            }
            if icmp.code.is_some() && icmp.icmp_type.is_none() {
                return Err(format!("{field}.code: needs a type"));
            }
        }
        if let (Some(ICMP), Some(6)) | (Some(ICMPV6), Some(4)) = (protocol, self.ip_version) {
            return Err(format!(
                "protocol: {} does not go with ipVersion {}",
                self.protocol.as_ref().map(|p| p.to_string()).unwrap_or_default(),
                self.ip_version.unwrap_or_default()
            ));
        }
        self.source.check(protocol).map_err(|e| format!("source.{e}"))?;
        self.destination.check(protocol).map_err(|e| format!("destination.{e}"))?;
        if self.http.is_some() {
            return Err("http: is not supported: HTTP matches need an application-layer proxy".into());
        }
        Ok(())
    }
}
