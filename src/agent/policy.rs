//! Network policy on this node: follows the policies of all three kinds, the namespaces'
//! labels and every pod's identity (the IPAM blocks' allocation attributes, cluster-wide),
//! compiles them for this node's pods and gives the nftables owner the policy section
//! whenever it changes. Changes are applied to the compiled program in place
//! (`policy::incremental`): an IPAM block's change applies only the pods it touched
//! (`policy_pods`): set members, and a local pod's dispatch, so the owner deletes and adds
//! those set elements and rewrites nothing else; one policy object's change compiles that
//! policy alone, and the owner rewrites its chains and the dispatch. A namespace change, a
//! watch that lost its place, or several changes queued at once (a burst) read and compile
//! everything, once. The pods come from the agent's picture of the blocks
//! ([`blocks`](super::blocks)): this follower neither lists the blocks nor has a watch of its
//! own on them. Nothing is read on a timer: a watch that could not be opened, or ended, is
//! opened again, and its listing read, every [`picture::RETRY`].
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

use super::blocks::KnownBlocks;
use super::picture;
use super::policy_pods::Pods;
use super::policy_refused::{self, Refused};
use super::routes::next_event;
use crate::api::status::InvalidPolicy;
use crate::dataplane::nftables::NftTable;
use crate::dataplane::nftables::policy as nft_policy;
use crate::dataplane::nftables::render::Section;
use crate::datastore::resources::{GlobalNetworkPolicy, KubeNetworkPolicy, Namespace, NetworkPolicy};
use crate::datastore::{Datastore, Key, Kind, Listing, Resource, Revision, WatchEvent};
use crate::policy::incremental::{Change, Entry, Incremental};
use crate::policy::model::sorted;
use crate::policy::{Endpoint, Local, Namespaces, Policy, calico, kube};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
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
    pub inputs: Arc<Inputs>,
    /// The program last given to the nftables owner (for the counters).
    pub program: Arc<crate::policy::Program>,
    /// How many times every policy was compiled (a pod's block or one policy changing is
    /// applied in place instead; a read that finds what is compiled compiles nothing).
    pub full_passes: u64,
}

/// Everything the compiler needs, as read from the datastore.
#[derive(Debug, Default, PartialEq)]
pub struct Inputs {
    pub policies: Vec<Policy>,
    /// Shared with the compiled program's entries: handing them on after a pod's change costs
    /// a pointer each.
    pub endpoints: Vec<Arc<Endpoint>>,
    pub namespaces: Namespaces,
    pub local: Vec<Local>,
    /// Each policy's kind and datastore name, by its model name.
    pub origins: BTreeMap<String, (Kind, String)>,
    /// The policies that do not decode or convert.
    pub invalid: Vec<InvalidPolicy>,
    /// The revision each policy kind was listed at: a watch event no newer is in the listing.
    pub listed: BTreeMap<Kind, Revision>,
}

/// The items of a listing and its revision; those that do not decode go to `invalid`.
async fn listed<R: Resource>(
    ds: &Datastore,
    invalid: &mut Vec<InvalidPolicy>,
) -> Result<(Vec<(String, R)>, Revision), String> {
    let Listing { items, invalid: bad, revision } =
        ds.list::<R>().await.map_err(|e| format!("listing {}: {e}", R::KIND))?;
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
    Ok((items.into_iter().map(|s| (s.name, s.spec)).collect(), revision))
}

/// A Calico NetworkPolicy (datastore name `namespace/name`) in the model.
fn calico_policy(name: &str, p: &NetworkPolicy) -> Result<Policy, String> {
    let key = Key::new(Kind::NetworkPolicy, name);
    let (namespace, short) = key.split_namespace();
    calico::namespaced(namespace.unwrap_or_default(), short, p)
}

/// A GlobalNetworkPolicy in the model.
fn global_policy(name: &str, p: &GlobalNetworkPolicy) -> Result<Policy, String> {
    calico::global(name, p)
}

/// A Kubernetes NetworkPolicy (datastore name `namespace/name`) in the model.
fn kube_policy(name: &str, p: &KubeNetworkPolicy) -> Result<Policy, String> {
    let key = Key::new(Kind::KubeNetworkPolicy, name);
    let (namespace, short) = key.split_namespace();
    kube::policy(namespace.unwrap_or_default(), short, p)
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

/// Reads the inputs for node `node`, and the pods by block they came from (from the picture of
/// the blocks, as it is when the policies have been read).
pub async fn read(
    ds: &Datastore,
    node: &str,
    blocks: &mut watch::Receiver<Option<KnownBlocks>>,
) -> Result<(Inputs, Pods), String> {
    let mut inputs = Inputs::default();
    let mut invalid = Vec::new();
    let (calico, at) = listed::<NetworkPolicy>(ds, &mut invalid).await?;
    inputs.listed.insert(Kind::NetworkPolicy, at);
    for (name, p) in calico {
        inputs.add(Kind::NetworkPolicy, &name, calico_policy(&name, &p));
    }
    let (global, at) = listed::<GlobalNetworkPolicy>(ds, &mut invalid).await?;
    inputs.listed.insert(Kind::GlobalNetworkPolicy, at);
    for (name, p) in global {
        inputs.add(Kind::GlobalNetworkPolicy, &name, global_policy(&name, &p));
    }
    let (kube, at) = listed::<KubeNetworkPolicy>(ds, &mut invalid).await?;
    inputs.listed.insert(Kind::KubeNetworkPolicy, at);
    for (name, p) in kube {
        inputs.add(Kind::KubeNetworkPolicy, &name, kube_policy(&name, &p));
    }
    inputs.invalid.extend(invalid);
    let mut ignored = Vec::new();
    let (namespaces, _) = listed::<Namespace>(ds, &mut ignored).await?;
    inputs.namespaces = Namespaces(namespaces.into_iter().map(|(name, n)| (name, n.labels)).collect());
    let mut pods = Pods::new(node);
    match &*blocks.borrow_and_update() {
        Some(known) => pods.sync(known),
        None => return Err(format!("the {} are not read yet", Kind::IpamBlock)),
    };
    for e in ignored {
        tracing::warn!(subsys = "policy", kind = %e.kind, name = %e.name, reason = %e.reason, "skipping an invalid object");
    }
    inputs.set_entries(&pods.entries());
    Ok((inputs, pods))
}

impl Inputs {
    /// The endpoints and local pods of `entries`, in the compiler's order
    /// ([`Incremental::inputs`]: this node's pods first, so that a lookup of a local pod by
    /// name finds this node's even when another node has a pod of the same name).
    fn set_entries(&mut self, entries: &BTreeMap<String, Entry>) {
        let local = entries.values().filter(|e| e.interface.is_some());
        let remote = entries.values().filter(|e| e.interface.is_none());
        self.endpoints = local.clone().chain(remote).map(|e| e.endpoint.clone()).collect();
        self.local = local
            .map(|e| Local { endpoint: e.endpoint.name.clone(), interface: e.interface.clone().unwrap_or_default() })
            .collect();
    }

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

/// One policy object's change, as its kind's watch delivered it.
struct PolicyEvent {
    kind: Kind,
    /// The datastore name.
    name: String,
    revision: Revision,
    /// The model policy or why the object does not convert; `None` when it was deleted.
    policy: Option<Result<Policy, String>>,
}

/// What a policy watch event asks of the follower.
enum PolicyUpdate {
    /// Apply one object's change.
    One(Box<PolicyEvent>),
    /// Nothing changed (a bookmark).
    Nothing,
    /// Read everything again (the watch lost its place).
    Whole,
}

/// A policy watch's `event` for `kind`, each object converted by `convert`.
fn policy_update<R>(kind: Kind, event: WatchEvent<R>, convert: fn(&str, &R) -> Result<Policy, String>) -> PolicyUpdate {
    let one =
        |name: String, revision, policy| PolicyUpdate::One(Box::new(PolicyEvent { kind, name, revision, policy }));
    match event {
        WatchEvent::Added(o) | WatchEvent::Modified(o) => {
            let policy = Some(convert(&o.name, &o.spec));
            one(o.name, o.revision, policy)
        }
        WatchEvent::Deleted { name, revision } => one(name, revision, None),
        WatchEvent::Bookmark(_) => PolicyUpdate::Nothing,
        WatchEvent::Resync(_) => PolicyUpdate::Whole,
    }
}

/// The follower's memory between passes.
#[derive(Default)]
struct Follower {
    /// The section last given to the owner, and its program.
    sent: Option<Section>,
    program: Arc<crate::policy::Program>,
    /// The compiled inputs of the last pass, kept up to date pod by pod between full passes.
    incremental: Option<Incremental>,
    /// Policies nft refused, left out while unchanged.
    refused: Vec<Refused>,
    /// The invalid policies already logged.
    logged: BTreeSet<InvalidPolicy>,
    /// Keeps each policy's rendered chains while the policy is unchanged.
    renderer: nft_policy::Renderer,
}

impl Follower {
    /// One pass: compiles `inputs` without the refused policies (unless they are what is
    /// compiled already), gives the owner the section if it changed, and when nft refuses it
    /// leaves out the policies nft refuses alone and gives it the rest. Publishes the state;
    /// whether every policy was compiled.
    async fn pass(
        &mut self,
        mut inputs: Inputs,
        pods: &Pods,
        table: &NftTable,
        state: &watch::Sender<PolicyState>,
    ) -> bool {
        self.refused.retain(|r| inputs.policies.contains(&r.policy));
        inputs.policies.retain(|p| !self.refused.iter().any(|r| r.policy == *p));
        let entries = pods.entries();
        let (mut compiled, mut whole) = match self.incremental.take() {
            // The read found what is compiled already (a resync, as a rule): nothing to compile.
            Some(held)
                if sorted(held.policies()) == sorted(&inputs.policies)
                    && *held.namespaces() == inputs.namespaces
                    && *held.entries() == entries =>
            {
                (held, false)
            }
            _ => (Incremental::new(inputs.policies.clone(), inputs.namespaces.clone(), entries.clone()), true),
        };
        let mut written = self.send(compiled.program(), table).await;
        // A write that failed (not one still waiting for the other users' sections).
        if written == Some(false) && table.state.borrow().last_error.is_some() {
            let found = policy_refused::find(&table.command, &inputs).await;
            if !found.is_empty() {
                inputs.policies.retain(|p| !found.iter().any(|r| r.policy == *p));
                self.refused.extend(found);
                compiled = Incremental::new(inputs.policies.clone(), inputs.namespaces.clone(), entries);
                whole = true;
                written = self.send(compiled.program(), table).await;
            }
        }
        self.incremental = Some(compiled);
        let mut invalid = inputs.invalid.clone();
        invalid.extend(self.refused.iter().map(|r| inputs.invalid(&r.policy, r.reason.clone())));
        invalid.sort();
        invalid.dedup();
        self.log(&invalid);
        self.publish(Arc::new(inputs), invalid, written, state);
        whole
    }

    /// Applies the pods of `handles` as `pods` now has them to the compiled program and gives
    /// the owner the change: new set elements only, unless a local pod's dispatch or a rule
    /// changed. False when there is no compiled program to update or the write failed (a full
    /// pass is then due).
    async fn pods_changed(
        &mut self,
        pods: &Pods,
        handles: BTreeSet<String>,
        table: &NftTable,
        state: &watch::Sender<PolicyState>,
    ) -> bool {
        let Some(mut compiled) = self.incremental.take() else { return false };
        let mut change = Change::default();
        for handle in &handles {
            let c = compiled.update(handle, pods.entry(handle));
            change.sets.extend(c.sets);
            change.endpoints |= c.endpoints;
            change.recompiled |= c.recompiled;
        }
        let program = compiled.program().clone();
        let (endpoints, local) = compiled.inputs();
        self.incremental = Some(compiled);
        if change.is_empty() {
            return true;
        }
        let written = match (&self.sent, change.endpoints || change.recompiled) {
            // Set elements alone, unless a set gains its first or loses its last address of a
            // family: rules of that family then come or go.
            (Some(sent), false) if !nft_policy::families_change(sent, &program, &change.sets) => {
                let mut section = sent.clone();
                nft_policy::refill_sets(&mut section, &program, &change.sets);
                self.send_section(section, program, table).await
            }
            _ => self.send(&program, table).await,
        };
        if written != Some(true) {
            return false;
        }
        let previous = state.borrow().inputs.clone();
        let inputs = Inputs {
            policies: previous.policies.clone(),
            endpoints,
            namespaces: previous.namespaces.clone(),
            local,
            origins: previous.origins.clone(),
            invalid: previous.invalid.clone(),
            listed: previous.listed.clone(),
        };
        let invalid = state.borrow().invalid.clone();
        self.publish(Arc::new(inputs), invalid, written, state);
        true
    }

    /// Applies one policy object's change to the compiled program alone and gives the owner
    /// the section. False when a full pass is due instead: nothing compiled yet, policies
    /// refused by nft held out (the full pass checks them), two objects under one model name,
    /// or the write failed.
    async fn policy_changed(
        &mut self,
        event: PolicyEvent,
        table: &NftTable,
        state: &watch::Sender<PolicyState>,
    ) -> bool {
        if !self.refused.is_empty() {
            return false;
        }
        let Some(mut compiled) = self.incremental.take() else { return false };
        let previous = state.borrow().inputs.clone();
        let mut inputs = Inputs {
            policies: previous.policies.clone(),
            endpoints: Vec::new(),
            namespaces: previous.namespaces.clone(),
            local: Vec::new(),
            origins: previous.origins.clone(),
            invalid: previous.invalid.clone(),
            listed: previous.listed.clone(),
        };
        let is_it = |(kind, name): &(Kind, String)| *kind == event.kind && *name == event.name;
        let held = inputs.origins.iter().find(|(_, o)| is_it(o)).map(|(model, _)| model.clone());
        let new_name = match &event.policy {
            Some(Ok(p)) => Some(p.name.clone()),
            _ => None,
        };
        // Another object already stands under the new model name: the full pass reports both.
        if new_name.as_ref().is_some_and(|n| inputs.origins.get(n).is_some_and(|o| !is_it(o))) {
            self.incremental = Some(compiled);
            return false;
        }
        if let Some(old) = held.filter(|old| Some(old) != new_name.as_ref()) {
            inputs.origins.remove(&old);
            inputs.policies.retain(|p| p.name != old);
            compiled.set_policy(&old, None);
        }
        let kind = event.kind.as_str().to_string();
        inputs.invalid.retain(|i| !(i.kind == kind && i.name == event.name));
        match event.policy {
            Some(Ok(policy)) => {
                let name = policy.name.clone();
                inputs.origins.insert(name.clone(), (event.kind, event.name));
                inputs.policies.retain(|p| p.name != name);
                inputs.policies.push(policy.clone());
                compiled.set_policy(&name, Some(policy));
            }
            Some(Err(reason)) => inputs.invalid.push(InvalidPolicy { kind, name: event.name, reason }),
            None => {}
        }
        let program = compiled.program().clone();
        (inputs.endpoints, inputs.local) = compiled.inputs();
        self.incremental = Some(compiled);
        let written = self.send(&program, table).await;
        if written != Some(true) {
            return false;
        }
        inputs.invalid.sort();
        inputs.invalid.dedup();
        let invalid = inputs.invalid.clone();
        self.log(&invalid);
        self.publish(Arc::new(inputs), invalid, written, state);
        true
    }

    fn publish(
        &self,
        inputs: Arc<Inputs>,
        invalid: Vec<InvalidPolicy>,
        written: Option<bool>,
        state: &watch::Sender<PolicyState>,
    ) {
        let programmed = (written == Some(true)).then(|| inputs.local_addresses());
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

    /// Renders `program` and sends the section if it changed; whether the table is written
    /// with it (`None`: it does not render).
    async fn send(&mut self, program: &crate::policy::Program, table: &NftTable) -> Option<bool> {
        let section = match self.renderer.section(program) {
            Ok(section) => section,
            Err(e) => {
                tracing::error!(subsys = "policy", error = %e, "cannot render the policy section");
                return None;
            }
        };
        self.send_section(section, program.clone(), table).await
    }

    /// Sends `section` (of `program`) if it changed; whether the table is written with it.
    async fn send_section(
        &mut self,
        section: Section,
        program: crate::policy::Program,
        table: &NftTable,
    ) -> Option<bool> {
        if self.sent.as_ref() != Some(&section) {
            tracing::info!(
                subsys = "policy",
                policies = program.policies.len(),
                local = program.endpoints.len(),
                "policy changed"
            );
            if let Some(delay) = crate::faults::delay("policy") {
                tokio::time::sleep(delay).await;
            }
            table.set_section(nft_policy::USER, section.clone()).await;
            self.sent = Some(section);
            self.program = Arc::new(program);
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

/// Takes every event `w` has ready without waiting (a watch that ended becomes `None`); how
/// many.
fn drain<T: crate::datastore::Resource>(w: &mut Option<crate::datastore::WatchStream<T>>) -> usize {
    use futures::FutureExt;
    let mut n = 0;
    while let Some(stream) = w {
        match stream.next().now_or_never() {
            Some(Some(_)) => n += 1,
            Some(None) => *w = None,
            None => break,
        }
    }
    n
}

/// Keeps the table's policy section equal to the compiled inputs until `stop` changes, and
/// publishes what is in place through `state`.
pub async fn follow(
    ds: Datastore,
    node: String,
    table: NftTable,
    state: watch::Sender<PolicyState>,
    mut blocks: watch::Receiver<Option<KnownBlocks>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut namespaces = ds.watch::<Namespace>(None).await.ok();
    let mut calico = ds.watch::<NetworkPolicy>(None).await.ok();
    let mut global = ds.watch::<GlobalNetworkPolicy>(None).await.ok();
    let mut kube = ds.watch::<KubeNetworkPolicy>(None).await.ok();
    // Only while a watch is missing or a read is owed: the watch is opened again (its listing
    // covered by the full read after it), and everything read.
    let mut retry = picture::retry_timer();
    let mut follower = Follower::default();
    let mut pods: Option<Pods> = None;
    let mut full = true;
    let mut update = PolicyUpdate::Whole;
    // A full read is owed: the picture of the blocks was not known, or a listing failed. It is
    // done when the picture comes, or at the next retry.
    let mut owed = false;
    loop {
        if full && blocks.borrow().is_none() {
            owed = true;
        } else if full {
            match read(&ds, &node, &mut blocks).await {
                Ok((inputs, read_pods)) => {
                    if follower.pass(inputs, &read_pods, &table, &state).await {
                        state.send_modify(|s| s.full_passes += 1);
                    }
                    pods = Some(read_pods);
                    owed = false;
                }
                Err(e) => {
                    owed = true;
                    tracing::warn!(subsys = "policy", error = %e, "cannot read policy inputs; keeping the last rules")
                }
            }
        }
        // Anything but a pod's block changing is read whole again.
        full = true;
        let missing = namespaces.is_none() || calico.is_none() || global.is_none() || kube.is_none();
        let trigger = tokio::select! {
            _ = stop.changed() => return,
            _ = retry.tick(), if missing || owed => {
                picture::reopen(&ds, &mut namespaces).await;
                picture::reopen(&ds, &mut calico).await;
                picture::reopen(&ds, &mut global).await;
                picture::reopen(&ds, &mut kube).await;
                "retry"
            }
            changed = blocks.changed() => {
                if changed.is_err() {
                    return;
                }
                let handles = match (&*blocks.borrow_and_update(), &mut pods) {
                    (Some(known), Some(pods)) => Some(pods.sync(known)),
                    _ => None,
                };
                match (handles, &mut pods) {
                    (Some(handles), Some(pods)) if !owed => {
                        full = !follower.pods_changed(pods, handles, &table, &state).await;
                        "blocks changed"
                    }
                    // The picture is being read again after a watch error: what is compiled
                    // stays until it is.
                    (None, Some(_)) if !owed => { full = false; "blocks being read again" }
                    (_, None) => "blocks before the first read",
                    (_, Some(_)) => "blocks after a read that was owed",
                }
            },
            ev = next_event(&mut namespaces) => if ev.is_none() { namespaces = None; "namespaces watch ended" } else { "namespaces" },
            ev = next_event(&mut calico) => match ev {
                None => { calico = None; "policies watch ended" }
                Some(Ok(event)) => { update = policy_update(Kind::NetworkPolicy, event, calico_policy); "policies" }
                Some(Err(_)) => "policies watch error",
            },
            ev = next_event(&mut global) => match ev {
                None => { global = None; "global policies watch ended" }
                Some(Ok(event)) => { update = policy_update(Kind::GlobalNetworkPolicy, event, global_policy); "global policies" }
                Some(Err(_)) => "global policies watch error",
            },
            ev = next_event(&mut kube) => match ev {
                None => { kube = None; "kubernetes policies watch ended" }
                Some(Ok(event)) => { update = policy_update(Kind::KubeNetworkPolicy, event, kube_policy); "kubernetes policies" }
                Some(Err(_)) => "kubernetes policies watch error",
            },
        };
        // One policy changed and nothing else is queued: compile that policy alone. When more
        // is queued (a burst), the full pass below takes it all at once.
        match std::mem::replace(&mut update, PolicyUpdate::Whole) {
            PolicyUpdate::Whole => {}
            PolicyUpdate::Nothing => full = false,
            PolicyUpdate::One(event) => {
                let queued = usize::from(blocks.has_changed().unwrap_or(false))
                    + drain(&mut namespaces)
                    + drain(&mut calico)
                    + drain(&mut global)
                    + drain(&mut kube);
                let listed = state.borrow().inputs.listed.get(&event.kind).copied();
                if queued == 0 && listed.is_some_and(|at| event.revision <= at) {
                    // Already in the last listing (queued before it was read).
                    full = false;
                } else if queued == 0 {
                    full = !follower.policy_changed(*event, &table, &state).await;
                }
            }
        }
        if full {
            // The read below sees every change already queued: take them now, so a burst (a
            // thousand policies applied at once) is one pass, not one pass per object.
            let drained = drain(&mut namespaces) + drain(&mut calico) + drain(&mut global) + drain(&mut kube);
            tracing::debug!(subsys = "policy", trigger, drained, "reading the policy inputs whole");
        }
    }
}
