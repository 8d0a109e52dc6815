//! Carries out the load-balancer plan (`super::load_balancer`) against a datastore: reads the
//! Services, the LoadBalancer pools and their blocks' allocations, releases, allocates through
//! the IPAM (compare-and-swap, so a racing second controller cannot give an address twice) and
//! writes each Service's `status.loadBalancer.ingress`.
//!
//! Load-balancer blocks are claimed for the pseudo-node [`IPAM_NODE`], not for the node running
//! the controller: a load-balancer address is announced by every node (the services stage, from
//! `serviceLoadBalancerIPs`), never as one node's block route.

use super::load_balancer::{Assignment, Plan, Want, plan};
use crate::datastore::resources::{IpPool, IpamBlock, LoadBalancerIngress, PoolUse, Service};
use crate::datastore::{Datastore, DatastoreError};
use crate::ipam::block_math::ip_at;
use crate::ipam::block_ops::handle_at;
use crate::ipam::{Ipam, IpamError, IpamOptions, Request, Result};
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The node name load-balancer blocks are affine to (`host:tortie-load-balancer`).
pub const IPAM_NODE: &str = crate::ipam::handles::LOAD_BALANCER_NODE;
/// The allocation attribute naming the Service (`namespace/name`) an address is for.
pub const SERVICE_ATTRIBUTE: &str = "service";

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub assigned: usize,
    pub released: usize,
    pub statuses_written: usize,
    /// Services left without an address, each naming why.
    pub warnings: Vec<String>,
}

/// One pass: everything the datastore holds now brought to the plan.
pub async fn reconcile(store: &Datastore) -> Result<Outcome> {
    let services: BTreeMap<String, Service> =
        store.list::<Service>().await?.items.into_iter().map(|s| (s.name, s.spec)).collect();
    let lb_pools: Vec<IpPool> = store
        .list::<IpPool>()
        .await?
        .items
        .into_iter()
        .map(|p| p.spec)
        .filter(|p| p.allowed_uses.contains(&PoolUse::LoadBalancer))
        .collect();
    let all: Vec<IpNetwork> = lb_pools.iter().map(|p| p.cidr).collect();
    let enabled: Vec<IpNetwork> = lb_pools.iter().filter(|p| !p.disabled).map(|p| p.cidr).collect();
    let held = held_addresses(store, &all).await?;
    let plan = plan(&services, &held, &enabled);
    carry_out(store, &services, plan).await
}

/// Every address allocated in `pools`, with its handle.
async fn held_addresses(store: &Datastore, pools: &[IpNetwork]) -> Result<BTreeMap<IpAddr, String>> {
    let mut held = BTreeMap::new();
    // Without a load-balancer pool no block can hold one (and every block is a large read).
    if pools.is_empty() {
        return Ok(held);
    }
    for block in store.list::<IpamBlock>().await?.items {
        if !pools.iter().any(|p| p.contains(block.spec.cidr.network())) {
            continue;
        }
        for ordinal in 0..block.spec.allocations.len() {
            if let Some(handle) = handle_at(&block.spec, ordinal) {
                held.insert(ip_at(&block.spec.cidr, ordinal), handle.to_string());
            }
        }
    }
    Ok(held)
}

async fn carry_out(store: &Datastore, services: &BTreeMap<String, Service>, plan: Plan) -> Result<Outcome> {
    let ipam = Ipam::new(store.clone(), IpamOptions { node: IPAM_NODE.to_string(), ..IpamOptions::default() });
    let mut out = Outcome { warnings: plan.warnings, ..Outcome::default() };
    out.released += ipam.release_handles(&plan.release).await?;
    for ip in &plan.release_extra {
        out.released += usize::from(ipam.release_ip(*ip, None).await?);
    }
    let mut statuses = plan.status;
    let (any, these): (Vec<Assignment>, Vec<Assignment>) =
        plan.assign.into_iter().partition(|a| matches!(a.want, Want::Any(_)));
    let requests: Vec<Request> = any.iter().map(request).collect();
    for (a, result) in any.iter().zip(ipam.allocate_batch(requests).await) {
        match result {
            Ok(allocation) => {
                out.assigned += 1;
                statuses.insert(a.service.clone(), vec![allocation.ip]);
            }
            Err(e) => out.warnings.push(format!("Service {}: no load-balancer address: {e}", a.service)),
        }
    }
    for a in &these {
        let Want::These(ips) = &a.want else { continue };
        match assign_these(&ipam, a, ips).await? {
            Ok(()) => {
                out.assigned += ips.len();
                statuses.insert(a.service.clone(), ips.clone());
            }
            Err(why) => out.warnings.push(format!("Service {}: requested address {why}; it gets none", a.service)),
        }
    }
    for (name, ips) in statuses {
        if services.contains_key(&name) && write_status(store, &name, &ips).await? {
            out.statuses_written += 1;
        }
    }
    Ok(out)
}

fn request(a: &Assignment) -> Request {
    let family = match a.want {
        Want::Any(family) => family,
        Want::These(_) => 4,
    };
    let attributes = BTreeMap::from([(SERVICE_ATTRIBUTE.to_string(), a.service.clone())]);
    Request { handle: a.handle.clone(), family, purpose: PoolUse::LoadBalancer, attributes, pools: Vec::new() }
}

/// Takes every requested address, or none: when one is taken meanwhile, those already taken
/// for the Service are released again. The inner error says why, for the warning.
async fn assign_these(ipam: &Ipam, a: &Assignment, ips: &[IpAddr]) -> Result<std::result::Result<(), String>> {
    let attributes = request(a).attributes;
    for ip in ips {
        match ipam.assign_ip(*ip, &a.handle, &attributes).await {
            Ok(_) => {}
            Err(e @ (IpamError::InUse { .. } | IpamError::NotInEnabledPool { .. })) => {
                ipam.release_handle(&a.handle).await?;
                return Ok(Err(e.to_string()));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Ok(()))
}

/// Sets the Service's ingress addresses to `ips` (kept when they are so already); `false` when
/// the Service went or changed meanwhile (the next pass sees it anew).
async fn write_status(store: &Datastore, name: &str, ips: &[IpAddr]) -> Result<bool> {
    let stored = match store.get::<Service>(name).await {
        Ok(s) => s,
        Err(DatastoreError::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let mut spec = stored.spec;
    spec.status.load_balancer.ingress = ips.iter().map(|ip| LoadBalancerIngress { ip: Some(ip.to_string()) }).collect();
    match store.update(name, &spec, stored.revision).await {
        Ok(_) => Ok(true),
        Err(DatastoreError::Conflict { .. } | DatastoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[path = "lb_controller_tests.rs"]
mod tests;
