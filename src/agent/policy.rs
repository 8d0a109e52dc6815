//! Network policy on this node: follows the policies of all three kinds, the namespaces'
//! labels and every pod's identity (the IPAM blocks' allocation attributes, cluster-wide),
//! compiles them for this node's pods and gives the nftables owner the policy section
//! whenever it changes. When only set membership changed (a pod appeared, left or was
//! relabelled) the owner refills those sets and rewrites nothing else.
//!
//! A policy that does not decode or convert is skipped and the others apply; so is one whose
//! rules nft refuses (`policy_refused`: when a write fails, each policy is checked alone and
//! the refused ones are left out until they change). Each skipped policy is logged once
//! and listed in [`PolicyState::invalid`] (status, `tortie_policy_invalid`). Until the first
//! complete read nothing is sent (the owner keeps the previous run's table).
//!
//! After each pass it publishes [`PolicyState`]: which local workloads (host interface and
//! addresses) have their chains and set memberships in the kernel. The CNI ADD waits on it,
//! so a pod is never reachable before its policy is in place.

use super::policy_refused::{self, Refused};
use super::routes::next_event;
use super::workloads::{ATTR_HOST_INTERFACE, addresses_of};
use crate::api::status::InvalidPolicy;
use crate::dataplane::nftables::NftTable;
use crate::dataplane::nftables::policy as nft_policy;
use crate::dataplane::nftables::render::Section;
use crate::datastore::resources::{GlobalNetworkPolicy, IpamBlock, KubeNetworkPolicy, Namespace, NetworkPolicy};
use crate::datastore::{Datastore, Key, Kind, Listing, Resource};
use crate::ipam::routes::NODE_ATTRIBUTE;
use crate::policy::{Endpoint, Local, Namespaces, Policy, calico, compile, kube};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::watch;

/// What the follower has put in place, for the CNI ADD, status and metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyState {
    /// The local workloads whose policy is in the kernel, as of the last pass the nftables
    /// table was written: host interface → the addresses it was programmed with (a pod
    /// recreated under the same interface name with new addresses is not yet programmed).
    pub programmed: BTreeMap<String, Vec<IpAddr>>,
    /// The policies skipped, sorted.
    pub invalid: Vec<InvalidPolicy>,
    /// What the last pass compiled (without the skipped policies): the cluster as this agent
    /// sees it, for `tortie policy list` and `trace`.
    pub inputs: std::sync::Arc<Inputs>,
    /// The program last given to the nftables owner (for the counters).
    pub program: std::sync::Arc<crate::policy::Program>,
}

/// How often everything is read again without a watch event.
const RESYNC: Duration = Duration::from_secs(30);

/// Everything the compiler needs, as read from the datastore.
#[derive(Debug, Default, PartialEq)]
pub struct Inputs {
    pub policies: Vec<Policy>,
    pub endpoints: Vec<Endpoint>,
    pub namespaces: Namespaces,
    pub local: Vec<Local>,
    /// Each policy's kind and datastore name, by its model name.
    pub origins: BTreeMap<String, (Kind, String)>,
    /// The policies that do not decode or convert.
    pub invalid: Vec<InvalidPolicy>,
}

/// The items of a listing; those that do not decode go to `invalid`.
async fn listed<R: Resource>(ds: &Datastore, invalid: &mut Vec<InvalidPolicy>) -> Result<Vec<(String, R)>, String> {
    let Listing { items, invalid: bad, .. } = ds.list::<R>().await.map_err(|e| format!("listing {}: {e}", R::KIND))?;
    for e in bad {
        let (name, reason) = match &e {
            crate::datastore::DatastoreError::InvalidData { key, reason } => {
                let prefix = format!("{}/", R::KIND);
                (key.strip_prefix(&prefix).unwrap_or(key).to_string(), reason.clone())
            }
            other => (String::new(), other.to_string()),
        };
        invalid.push(InvalidPolicy { kind: R::KIND.as_str().to_string(), name, reason });
    }
    Ok(items.into_iter().map(|s| (s.name, s.spec)).collect())
}

impl Inputs {
    /// Adds a converted policy, or its error to `invalid`.
    fn add(&mut self, kind: Kind, name: &str, result: Result<Policy, String>) {
        match result {
            Ok(policy) => {
                self.origins.insert(policy.name.clone(), (kind, name.to_string()));
                self.policies.push(policy);
            }
            Err(reason) => {
                self.invalid.push(InvalidPolicy { kind: kind.as_str().to_string(), name: name.to_string(), reason })
            }
        }
    }

    /// The kind and datastore name of the model policy named `model_name`.
    pub fn origin(&self, model_name: &str) -> (String, String) {
        match self.origins.get(model_name) {
            Some((kind, name)) => (kind.as_str().to_string(), name.clone()),
            None => (Kind::NetworkPolicy.as_str().to_string(), model_name.to_string()),
        }
    }

    /// The report of a model policy (named by its kind and datastore name).
    pub fn invalid(&self, policy: &Policy, reason: String) -> InvalidPolicy {
        let (kind, name) = self.origin(&policy.name);
        InvalidPolicy { kind, name, reason }
    }
}

/// Reads the inputs for node `node`.
pub async fn read(ds: &Datastore, node: &str) -> Result<Inputs, String> {
    let mut inputs = Inputs::default();
    let mut invalid = Vec::new();
    for (name, p) in listed::<NetworkPolicy>(ds, &mut invalid).await? {
        let key = Key::new(Kind::NetworkPolicy, name.clone());
        let (namespace, short) = key.split_namespace();
        inputs.add(key.kind, &name, calico::namespaced(namespace.unwrap_or_default(), short, &p));
    }
    for (name, p) in listed::<GlobalNetworkPolicy>(ds, &mut invalid).await? {
        inputs.add(Kind::GlobalNetworkPolicy, &name, calico::global(&name, &p));
    }
    for (name, p) in listed::<KubeNetworkPolicy>(ds, &mut invalid).await? {
        let key = Key::new(Kind::KubeNetworkPolicy, name.clone());
        let (namespace, short) = key.split_namespace();
        inputs.add(key.kind, &name, kube::policy(namespace.unwrap_or_default(), short, &p));
    }
    inputs.invalid.extend(invalid);
    let mut ignored = Vec::new();
    let namespaces = listed::<Namespace>(ds, &mut ignored).await?;
    inputs.namespaces = Namespaces(namespaces.into_iter().map(|(name, n)| (name, n.labels)).collect());
    let mut pods: BTreeMap<String, (Vec<IpAddr>, BTreeMap<String, String>)> = BTreeMap::new();
    for (_, block) in listed::<IpamBlock>(ds, &mut ignored).await? {
        for (handle, ip, attrs) in addresses_of(&block, |_| true) {
            if !attrs.contains_key(ATTR_HOST_INTERFACE) {
                continue;
            }
            let entry = pods.entry(handle).or_insert_with(|| (Vec::new(), attrs));
            entry.0.push(ip);
        }
    }
    for e in ignored {
        tracing::warn!(subsys = "policy", kind = %e.kind, name = %e.name, reason = %e.reason, "skipping an invalid object");
    }
    // This node's pods first. Pods on different nodes can share `namespace/name` outside
    // Kubernetes (each lab node has a `default/pod1`), and the lookups of a local pod by name
    // (its chains, whether it is programmed) must find this node's.
    let mut others = Vec::new();
    for (addresses, attrs) in pods.into_values() {
        let endpoint = super::endpoint_attrs::endpoint(addresses, &attrs);
        if attrs.get(NODE_ATTRIBUTE).map(String::as_str) == Some(node) {
            inputs.local.push(Local { endpoint: endpoint.name.clone(), interface: attrs[ATTR_HOST_INTERFACE].clone() });
            inputs.endpoints.push(endpoint);
        } else {
            others.push(endpoint);
        }
    }
    inputs.endpoints.extend(others);
    Ok(inputs)
}

impl Inputs {
    /// This node's workloads: host interface → addresses.
    fn local_addresses(&self) -> BTreeMap<String, Vec<IpAddr>> {
        self.local
            .iter()
            .filter_map(|l| {
                let e = self.endpoints.iter().find(|e| e.name == l.endpoint)?;
                Some((l.interface.clone(), e.addresses.clone()))
            })
            .collect()
    }
}

/// The follower's memory between passes.
#[derive(Default)]
struct Follower {
    /// The section last given to the owner, and its program.
    sent: Option<Section>,
    program: std::sync::Arc<crate::policy::Program>,
    /// Policies nft refused, left out while unchanged.
    refused: Vec<Refused>,
    /// The invalid policies already logged.
    logged: BTreeSet<InvalidPolicy>,
}

impl Follower {
    /// One pass: compiles `inputs` without the refused policies, gives the owner the section
    /// if it changed, and when nft refuses it leaves out the policies nft refuses alone and
    /// gives it the rest. Publishes the state.
    async fn pass(&mut self, mut inputs: Inputs, table: &NftTable, state: &watch::Sender<PolicyState>) {
        self.refused.retain(|r| inputs.policies.contains(&r.policy));
        inputs.policies.retain(|p| !self.refused.iter().any(|r| r.policy == *p));
        let mut written = self.send(&inputs, table).await;
        // A write that failed (not one still waiting for the other users' sections).
        if written == Some(false) && table.state.borrow().last_error.is_some() {
            let found = policy_refused::find(&table.command, &inputs).await;
            if !found.is_empty() {
                inputs.policies.retain(|p| !found.iter().any(|r| r.policy == *p));
                self.refused.extend(found);
                written = self.send(&inputs, table).await;
            }
        }
        let mut invalid = inputs.invalid.clone();
        invalid.extend(self.refused.iter().map(|r| inputs.invalid(&r.policy, r.reason.clone())));
        invalid.sort();
        invalid.dedup();
        self.log(&invalid);
        let programmed = (written == Some(true)).then(|| inputs.local_addresses());
        let inputs = std::sync::Arc::new(inputs);
        state.send_if_modified(|s| {
            let changed =
                s.invalid != invalid || programmed.as_ref().is_some_and(|p| *p != s.programmed) || *s.inputs != *inputs;
            s.invalid = invalid;
            if let Some(programmed) = programmed {
                s.programmed = programmed;
            }
            s.inputs = inputs;
            s.program = self.program.clone();
            changed
        });
    }

    /// Compiles and sends the section if it changed; whether the table is written with it
    /// (`None`: it does not render).
    async fn send(&mut self, inputs: &Inputs, table: &NftTable) -> Option<bool> {
        let program = compile(&inputs.policies, &inputs.endpoints, &inputs.namespaces, &inputs.local);
        let section = match nft_policy::section(&program) {
            Ok(section) => section,
            Err(e) => {
                tracing::error!(subsys = "policy", error = %e, "cannot render the policy section");
                return None;
            }
        };
        if self.sent.as_ref() != Some(&section) {
            tracing::info!(
                subsys = "policy",
                policies = inputs.policies.len(),
                local = inputs.local.len(),
                "policy changed"
            );
            if let Some(delay) = crate::faults::delay("policy") {
                tokio::time::sleep(delay).await;
            }
            table.set_section(nft_policy::USER, section.clone()).await;
            self.sent = Some(section);
            self.program = std::sync::Arc::new(program);
        }
        // Written (or failed) once the owner has handled it.
        table.probe().await;
        Some(table.state.borrow().synced)
    }

    /// Logs each invalid policy once (again if it comes back after being fixed).
    fn log(&mut self, invalid: &[InvalidPolicy]) {
        for i in invalid {
            if !self.logged.contains(i) {
                tracing::warn!(subsys = "policy", kind = %i.kind, name = %i.name, reason = %i.reason, "skipping an invalid policy");
            }
        }
        self.logged = invalid.iter().cloned().collect();
    }
}

/// Keeps the table's policy section equal to the compiled inputs until `stop` changes, and
/// publishes what is in place through `state`.
pub async fn follow(
    ds: Datastore,
    node: String,
    table: NftTable,
    state: watch::Sender<PolicyState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut blocks = ds.watch::<IpamBlock>(None).await.ok();
    let mut namespaces = ds.watch::<Namespace>(None).await.ok();
    let mut calico = ds.watch::<NetworkPolicy>(None).await.ok();
    let mut global = ds.watch::<GlobalNetworkPolicy>(None).await.ok();
    let mut kube = ds.watch::<KubeNetworkPolicy>(None).await.ok();
    let mut tick = tokio::time::interval(RESYNC);
    let mut follower = Follower::default();
    loop {
        match read(&ds, &node).await {
            Ok(inputs) => follower.pass(inputs, &table, &state).await,
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
