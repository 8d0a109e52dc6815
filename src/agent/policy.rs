//! Network policy on this node: follows the policies of all three kinds, the namespaces'
//! labels and every pod's identity (the IPAM blocks' allocation attributes, cluster-wide),
//! compiles them for this node's pods and gives the nftables owner the policy section
//! whenever it changes. When only set membership changed (a pod appeared, left or was
//! relabelled) the owner refills those sets and rewrites nothing else.
//!
//! An object that does not decode or convert is logged and skipped; the others apply.
//! Until the first complete read nothing is sent (the owner keeps the previous run's table).

use super::routes::next_event;
use super::workloads::{ATTR_HOST_INTERFACE, addresses_of};
use crate::dataplane::nftables::NftTable;
use crate::dataplane::nftables::policy as nft_policy;
use crate::datastore::resources::{GlobalNetworkPolicy, IpamBlock, KubeNetworkPolicy, Namespace, NetworkPolicy};
use crate::datastore::{Datastore, Key, Kind, Listing, Resource};
use crate::ipam::routes::NODE_ATTRIBUTE;
use crate::policy::{Endpoint, Local, Namespaces, Policy, calico, compile, kube};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::watch;

/// How often everything is read again without a watch event.
const RESYNC: Duration = Duration::from_secs(30);

/// Everything the compiler needs, as read from the datastore.
#[derive(Debug, Default, PartialEq)]
pub struct Inputs {
    pub policies: Vec<Policy>,
    pub endpoints: Vec<Endpoint>,
    pub namespaces: Namespaces,
    pub local: Vec<Local>,
}

async fn listed<R: Resource>(ds: &Datastore) -> Result<Vec<(String, R)>, String> {
    let Listing { items, invalid, .. } = ds.list::<R>().await.map_err(|e| format!("listing {}: {e}", R::KIND))?;
    for e in invalid {
        tracing::warn!(subsys = "policy", error = %e, "skipping an invalid object");
    }
    Ok(items.into_iter().map(|s| (s.name, s.spec)).collect())
}

/// Converts one policy; an error is logged and the policy skipped.
fn converted(kind: Kind, name: &str, result: Result<Policy, String>) -> Option<Policy> {
    result
        .map_err(|e| tracing::warn!(subsys = "policy", policy = %Key::new(kind, name), error = %e, "skipping a policy"))
        .ok()
}

/// Reads the inputs for node `node`.
pub async fn read(ds: &Datastore, node: &str) -> Result<Inputs, String> {
    let mut policies = Vec::new();
    for (name, p) in listed::<NetworkPolicy>(ds).await? {
        let key = Key::new(Kind::NetworkPolicy, name.clone());
        let (namespace, short) = key.split_namespace();
        policies.extend(converted(key.kind, &name, calico::namespaced(namespace.unwrap_or_default(), short, &p)));
    }
    for (name, p) in listed::<GlobalNetworkPolicy>(ds).await? {
        policies.extend(converted(Kind::GlobalNetworkPolicy, &name, calico::global(&name, &p)));
    }
    for (name, p) in listed::<KubeNetworkPolicy>(ds).await? {
        let key = Key::new(Kind::KubeNetworkPolicy, name.clone());
        let (namespace, short) = key.split_namespace();
        policies.extend(converted(key.kind, &name, kube::policy(namespace.unwrap_or_default(), short, &p)));
    }
    let namespaces = Namespaces(listed::<Namespace>(ds).await?.into_iter().map(|(name, n)| (name, n.labels)).collect());
    let mut pods: BTreeMap<String, (Vec<IpAddr>, BTreeMap<String, String>)> = BTreeMap::new();
    for (_, block) in listed::<IpamBlock>(ds).await? {
        for (handle, ip, attrs) in addresses_of(&block, |_| true) {
            if !attrs.contains_key(ATTR_HOST_INTERFACE) {
                continue;
            }
            let entry = pods.entry(handle).or_insert_with(|| (Vec::new(), attrs));
            entry.0.push(ip);
        }
    }
    let mut endpoints = Vec::new();
    let mut local = Vec::new();
    for (addresses, attrs) in pods.into_values() {
        let endpoint = super::endpoint_attrs::endpoint(addresses, &attrs);
        if attrs.get(NODE_ATTRIBUTE).map(String::as_str) == Some(node) {
            local.push(Local { endpoint: endpoint.name.clone(), interface: attrs[ATTR_HOST_INTERFACE].clone() });
        }
        endpoints.push(endpoint);
    }
    Ok(Inputs { policies, endpoints, namespaces, local })
}

/// Keeps the table's policy section equal to the compiled inputs until `stop` changes.
pub async fn follow(ds: Datastore, node: String, table: NftTable, mut stop: watch::Receiver<bool>) {
    let mut blocks = ds.watch::<IpamBlock>(None).await.ok();
    let mut namespaces = ds.watch::<Namespace>(None).await.ok();
    let mut calico = ds.watch::<NetworkPolicy>(None).await.ok();
    let mut global = ds.watch::<GlobalNetworkPolicy>(None).await.ok();
    let mut kube = ds.watch::<KubeNetworkPolicy>(None).await.ok();
    let mut tick = tokio::time::interval(RESYNC);
    let mut sent = None;
    loop {
        match read(&ds, &node).await {
            Ok(inputs) => {
                let program = compile(&inputs.policies, &inputs.endpoints, &inputs.namespaces, &inputs.local);
                match nft_policy::section(&program) {
                    Ok(section) if sent.as_ref() != Some(&section) => {
                        tracing::info!(
                            subsys = "policy",
                            policies = inputs.policies.len(),
                            local = inputs.local.len(),
                            "policy changed"
                        );
                        table.set_section(nft_policy::USER, section.clone()).await;
                        sent = Some(section);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(subsys = "policy", error = %e, "cannot render the policy section"),
                }
            }
            Err(e) => {
                tracing::warn!(subsys = "policy", error = %e, "cannot read policy inputs; keeping the last rules")
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
            ev = next_event(&mut blocks) => if ev.is_none() { blocks = None },
            ev = next_event(&mut namespaces) => if ev.is_none() { namespaces = None },
            ev = next_event(&mut calico) => if ev.is_none() { calico = None },
            ev = next_event(&mut global) => if ev.is_none() { global = None },
            ev = next_event(&mut kube) => if ev.is_none() { kube = None },
        }
    }
}
