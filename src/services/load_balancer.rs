//! Load-balancer address assignment, pure: from the Services, the addresses the IPAM holds for
//! load balancers and the LoadBalancer pools, what to allocate, release and write to each
//! Service's `status.loadBalancer.ingress`. The IPAM is the record of who holds what (one handle
//! per Service, [`handle_of`]), so an address is never given twice and one whose Service is gone
//! is released (`crate::services::lb_controller` carries the plan out).

use crate::datastore::resources::Service;
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The annotation listing the addresses a Service asks for (a JSON list), as Calico's.
pub const LOAD_BALANCER_IPS_ANNOTATION: &str = "projectcalico.org/loadBalancerIPs";
pub use crate::ipam::handles::{LOAD_BALANCER_PREFIX as HANDLE_PREFIX, is_load_balancer_handle};

/// The IPAM handle of the Service recorded as `namespace/name`: `lb.<namespace>.<name>` (a
/// namespace is a DNS label, without dots, so no two Services share one).
pub fn handle_of(service: &str) -> String {
    format!("{HANDLE_PREFIX}{}", service.replacen('/', ".", 1))
}

/// What a Service wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// Any address of this family from a LoadBalancer pool.
    Any(u8),
    /// These addresses (each checked to be in a LoadBalancer pool and free).
    These(Vec<IpAddr>),
}

/// One allocation to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub service: String,
    pub handle: String,
    pub want: Want,
}

/// What to do, in order: release, assign, then write the statuses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Handles to release wholly (Service gone, no longer LoadBalancer, or asking for others).
    pub release: Vec<String>,
    /// Addresses held beyond what their Service wants (two controllers raced): released singly.
    pub release_extra: Vec<IpAddr>,
    pub assign: Vec<Assignment>,
    /// Services whose ingress addresses must become these (sorted).
    pub status: BTreeMap<String, Vec<IpAddr>>,
    /// Services that get no address, each with why (naming the Service and the value).
    pub warnings: Vec<String>,
}

/// The addresses a Service asks for: the annotation, else `spec.loadBalancerIP`; empty when it
/// asks for none; an error naming the field and value when unreadable.
pub fn requested(service: &Service) -> Result<Vec<IpAddr>, String> {
    if let Some(text) = service.annotations.get(LOAD_BALANCER_IPS_ANNOTATION) {
        let listed: Vec<String> = serde_json::from_str(text).map_err(|_| {
            format!("annotation {LOAD_BALANCER_IPS_ANNOTATION}: {text:?} is not a JSON list of addresses")
        })?;
        return listed
            .iter()
            .map(|ip| {
                ip.parse()
                    .map_err(|_| format!("annotation {LOAD_BALANCER_IPS_ANNOTATION}: {ip:?} is not an IP address"))
            })
            .collect();
    }
    match service.spec.load_balancer_ip.as_deref().filter(|ip| !ip.is_empty()) {
        Some(ip) => {
            ip.parse().map(|ip| vec![ip]).map_err(|_| format!("spec.loadBalancerIP: {ip:?} is not an IP address"))
        }
        None => Ok(Vec::new()),
    }
}

/// The plan. `services`: every Service by `namespace/name`; `held`: every address allocated in a
/// LoadBalancer pool with its handle; `pools`: the enabled LoadBalancer pools' CIDRs.
pub fn plan(services: &BTreeMap<String, Service>, held: &BTreeMap<IpAddr, String>, pools: &[IpNetwork]) -> Plan {
    let mut out = Plan::default();
    let mut by_handle: BTreeMap<&str, BTreeSet<IpAddr>> = BTreeMap::new();
    for (ip, handle) in held {
        by_handle.entry(handle.as_str()).or_default().insert(*ip);
    }
    let wanted: BTreeMap<String, &String> = services
        .iter()
        .filter(|(_, s)| s.takes_tortie_load_balancer())
        .map(|(name, _)| (handle_of(name), name))
        .collect();
    // Services that stay but are no longer LoadBalancer. Not those of another controller's
    // class: their status is that controller's to write.
    let no_longer: BTreeMap<String, (&String, &Service)> = services
        .iter()
        .filter(|(_, s)| s.service_type() != "LoadBalancer")
        .map(|(name, s)| (handle_of(name), (name, s)))
        .collect();
    for handle in by_handle.keys().filter(|h| is_load_balancer_handle(h) && !wanted.contains_key(**h)) {
        out.release.push(handle.to_string());
        if let Some((name, service)) = no_longer.get(*handle) {
            set_status(&mut out, name, service, Vec::new());
        }
    }
    for (handle, name) in wanted {
        let service = &services[name];
        let has: Vec<IpAddr> = by_handle.get(handle.as_str()).map(|s| s.iter().copied().collect()).unwrap_or_default();
        let asks = match requested(service) {
            Ok(asks) => asks,
            Err(e) => {
                out.warnings.push(format!("Service {name}: {e}"));
                continue;
            }
        };
        let keep: Vec<IpAddr> = if asks.is_empty() {
            // Any address will do: keep the lowest held one, release the others.
            has.first().copied().into_iter().collect()
        } else if has.iter().copied().collect::<BTreeSet<_>>() == asks.iter().copied().collect() {
            has.clone()
        } else {
            if !has.is_empty() {
                out.release.push(handle.clone());
            }
            Vec::new()
        };
        if !keep.is_empty() {
            out.release_extra.extend(has.iter().filter(|ip| !keep.contains(ip)));
            set_status(&mut out, name, service, keep);
            continue;
        }
        if asks.is_empty() {
            match pools.iter().map(|p| if p.is_ipv4() { 4 } else { 6 }).min() {
                Some(family) => out.assign.push(Assignment { service: name.clone(), handle, want: Want::Any(family) }),
                None => out.warnings.push(format!("Service {name}: no enabled LoadBalancer pool")),
            }
            continue;
        }
        let problem = asks.iter().find_map(|ip| match held.get(ip) {
            Some(holder) if *holder != handle => Some(format!("{ip} is already held by {holder}")),
            _ if !pools.iter().any(|p| p.contains(*ip)) => Some(format!("{ip} is in no enabled LoadBalancer pool")),
            _ => None,
        });
        match problem {
            Some(why) => {
                out.warnings.push(format!("Service {name}: requested address {why}; it gets none"));
                set_status(&mut out, name, service, Vec::new());
            }
            None => out.assign.push(Assignment { service: name.clone(), handle, want: Want::These(asks) }),
        }
    }
    out
}

/// Records a status write when the Service's ingress addresses are not `ips` already.
fn set_status(plan: &mut Plan, name: &str, service: &Service, mut ips: Vec<IpAddr>) {
    ips.sort();
    let mut now: Vec<IpAddr> =
        service.status.load_balancer.ingress.iter().filter_map(|i| i.ip.as_deref()?.parse().ok()).collect();
    now.sort();
    if now != ips {
        plan.status.insert(name.to_string(), ips);
    }
}

#[cfg(test)]
#[path = "load_balancer_tests.rs"]
mod tests;
