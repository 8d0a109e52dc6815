//! A workload's policy identity — labels, service account, named ports — kept in its address
//! allocations' attributes next to `namespace` and `pod`, so every node reads every pod's
//! identity from the IPAM blocks it already watches.

use crate::api::workloads::{AllocateRequest, PodIdentity};
use crate::datastore::resources::PackedMap;
use crate::policy::{Endpoint, NamedPort};

use std::net::IpAddr;

/// The attribute holding the labels, as a JSON object.
pub const ATTR_LABELS: &str = "labels";
/// The attribute holding the service account's name.
pub const ATTR_SERVICE_ACCOUNT: &str = "service_account";
/// The attribute holding the named ports, as a JSON list.
pub const ATTR_PORTS: &str = "ports";

/// Checks a request's identity; the error names the field and value.
pub fn check(r: &AllocateRequest) -> Result<(), String> {
    crate::datastore::resources::check_labels(&r.labels).map_err(|e| format!("labels: {e}"))?;
    for port in &r.ports {
        port.check()?;
    }
    Ok(())
}

/// The attributes that record a request's identity (none for what it does not give).
pub fn attributes(r: &AllocateRequest) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !r.labels.is_empty() {
        out.push((ATTR_LABELS, serde_json::to_string(&r.labels).unwrap_or_default()));
    }
    if !r.service_account.is_empty() {
        out.push((ATTR_SERVICE_ACCOUNT, r.service_account.clone()));
    }
    if !r.ports.is_empty() {
        out.push((ATTR_PORTS, serde_json::to_string(&r.ports).unwrap_or_default()));
    }
    out
}

/// The identity in `attrs` (an unreadable attribute reads as absent: another writer's).
pub fn read(attrs: &PackedMap) -> PodIdentity {
    let labels = attrs.get(ATTR_LABELS).and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
    let ports = attrs.get(ATTR_PORTS).and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
    (labels, attrs.get(ATTR_SERVICE_ACCOUNT).unwrap_or_default().to_string(), ports)
}

/// The policy endpoint of a pod with `addresses` and allocation attributes `attrs`.
pub fn endpoint(addresses: Vec<IpAddr>, attrs: &PackedMap) -> Endpoint {
    let (labels, service_account, ports) = read(attrs);
    let namespace = attrs.get("namespace").unwrap_or_default().to_string();
    let pod = attrs.get("pod").unwrap_or_default().to_string();
    Endpoint {
        name: format!("{namespace}/{pod}"),
        namespace,
        labels,
        service_account: (!service_account.is_empty()).then_some(service_account),
        addresses,
        ports: ports
            .iter()
            .map(|p| NamedPort { name: p.name.clone(), protocol: p.protocol_number(), port: p.port })
            .collect(),
    }
}
