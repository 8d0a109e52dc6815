//! The agent's side of the CNI plugin (`docs/cni.md`): allocation by handle through the node's
//! IPAM allocator, the pod's host route `<pod>/32 dev <veth>` through the route programmer (the
//! agent is the only writer of routes with tortie's protocol), release, GC, and the restore of
//! pod routes after a restart.
//!
//! The datastore is the record of workloads: each address carries its pod's attributes (host
//! interface included), so nothing here needs to survive a restart. The only memory is which
//! handles' routes were handed to the programmer, for the `route_programmed` flag.

use super::blocks::KnownBlocks;
use super::pod_ipam;
use super::pod_lock::PodLocks;
use crate::api::workloads::{AllocateRequest, GcAnswer, GcRequest, Released, Workload, WorkloadError, WorkloadService};
use crate::dataplane::{DesiredRoute, Programmer, Route, RouteKind, RouteTarget};
use crate::datastore::DatastoreError;
use crate::datastore::Stored;
use crate::datastore::resources::PackedMap;
use crate::datastore::resources::{AssignmentMode, IpPool, IpamBlock, Namespace, PoolUse};
use crate::ipam::block_math::ip_at;
use crate::ipam::block_ops::handle_at;
use crate::ipam::claim::host_affinity;
use crate::ipam::handles;
use crate::ipam::pools::namespace_selector_matches;
use crate::ipam::routes::NODE_ATTRIBUTE;
use crate::ipam::{Allocator, IpamError, Request};
use async_trait::async_trait;
use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Allocation attribute names (besides `pod`, `namespace` and `node` set by the IPAM request).
const ATTR_CONTAINER: &str = "container_id";
const ATTR_NETNS: &str = "netns";
const ATTR_IFNAME: &str = "ifname";
pub(crate) const ATTR_HOST_INTERFACE: &str = "host_interface";
pub(crate) const ATTR_ALLOCATED_AT: &str = "allocated_at";

/// Handles younger than this are never garbage (the runtime may not list a pod it is creating).
pub const GC_GRACE: Duration = Duration::from_secs(60);
/// How long an ADD waits for its pod's network policy to be in the kernel before the plugin is
/// told to try again (a third of the plugin's own timeout, so the agent's answer, naming the
/// workload, reaches the runtime first).
pub const POLICY_WAIT: Duration = Duration::from_secs(crate::cni::ops::DEFAULT_TIMEOUT.as_secs() / 3);
/// How often the agent looks for workloads whose host veth has gone.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);
/// The workload service of one node.
pub struct Workloads {
    allocator: Allocator,
    programmer: Programmer,
    links: rtnetlink::Handle,
    node: String,
    interface_prefix: String,
    configured_mtu: Option<u32>,
    underlay_mtu: u32,
    /// Handles whose routes the programmer was given (std mutex: held for a set operation only).
    programmed: Mutex<HashSet<String>>,
    /// Why the last datastore write failed; `None` once one succeeded (readiness shows it).
    datastore_unwritable: tokio::sync::watch::Sender<Option<String>>,
    /// Serialises the requests of one pod (by host interface): sandboxes of a recreated pod
    /// share it, and a late DEL of the old one must not interleave with the new one's ADD.
    pods: PodLocks,
    /// Kubernetes mode: where the Pod's IPAM annotations are read.
    kube: Option<kube::Client>,
    /// What network policy has in place (`None`: no policy follower, nothing to wait for).
    policy: Option<tokio::sync::watch::Receiver<super::policy::PolicyState>>,
}

/// What [`Workloads::start`] needs from the agent.
pub struct WorkloadsConfig {
    pub node: String,
    /// The underlay interface's MTU (see `dataplane::underlay`).
    pub underlay_mtu: u32,
    pub interface_prefix: String,
    pub mtu: Option<u32>,
    /// Kubernetes mode: the client the Pods' annotations are read with.
    pub kube: Option<kube::Client>,
    /// What the policy follower has in place; an ADD returns once its pod's policy is.
    pub policy: Option<tokio::sync::watch::Receiver<super::policy::PolicyState>>,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Workloads {
    /// Opens a netlink connection (in the agent's namespace) and restores the host routes
    /// of this node's workloads whose host interface exists — before the programmer's first
    /// full reconcile, so an agent restart never removes a pod route.
    pub async fn start(
        config: WorkloadsConfig,
        allocator: Allocator,
        programmer: Programmer,
    ) -> std::io::Result<std::sync::Arc<Workloads>> {
        let (connection, links, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        let service = std::sync::Arc::new(Workloads {
            allocator,
            programmer,
            links,
            node: config.node,
            interface_prefix: config.interface_prefix,
            configured_mtu: config.mtu,
            underlay_mtu: config.underlay_mtu,
            programmed: Mutex::new(HashSet::new()),
            pods: PodLocks::default(),
            kube: config.kube,
            policy: config.policy,
            datastore_unwritable: tokio::sync::watch::Sender::new(None),
        });
        match service.restore().await {
            Ok(n) if n > 0 => tracing::info!(subsys = "cni", workloads = n, "restored pod routes"),
            Ok(_) => {}
            Err(e) => tracing::warn!(subsys = "cni", error = %e, "cannot restore pod routes"),
        }
        Ok(service)
    }

    /// Why the last datastore write of this service failed, `None` after one succeeded.
    pub fn datastore_unwritable(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.datastore_unwritable.subscribe()
    }

    /// Notes the outcome of a datastore write for readiness: a datastore failure (also of a read
    /// the write needs) sets the reason, a successful write clears it; other failures (no pool,
    /// a full pool) say nothing about the datastore.
    fn record_write(&self, failure: Option<&IpamError>) {
        let reason = match failure {
            Some(IpamError::Datastore(e)) => Some(e.to_string()),
            Some(_) => return,
            None => None,
        };
        self.datastore_unwritable.send_if_modified(|current| {
            let changed = *current != reason;
            if changed {
                match &reason {
                    Some(r) => tracing::warn!(subsys = "cni", reason = %r, "datastore unwritable"),
                    None => tracing::info!(subsys = "cni", "datastore writable again"),
                }
            }
            *current = reason;
            changed
        });
    }

    /// A datastore failure reading `what`: try again later when the datastore may come back
    /// (and readiness says so: the write this read is for cannot happen either).
    fn store_error(&self, what: &str, e: crate::datastore::DatastoreError) -> WorkloadError {
        if e.is_retryable() {
            let message = format!("{what}: {e}");
            self.record_write(Some(&IpamError::Datastore(e)));
            WorkloadError::Unavailable(message)
        } else {
            WorkloadError::Internal(format!("{what}: {e}"))
        }
    }

    /// Waits until the policy follower has programmed `w`'s interface with its addresses;
    /// after [`POLICY_WAIT`] the runtime is told to try again, naming the workload.
    async fn wait_for_policy(&self, w: &Workload) -> Result<(), WorkloadError> {
        let Some(policy) = &self.policy else { return Ok(()) };
        let mut policy = policy.clone();
        let programmed = |s: &super::policy::PolicyState| {
            s.programmed.get(&w.host_interface).is_some_and(|have| w.addresses.iter().all(|a| have.contains(&a.ip())))
        };
        let name = format!("{}/{} (handle {}, interface {})", w.namespace, w.pod, w.handle, w.host_interface);
        match tokio::time::timeout(POLICY_WAIT, policy.wait_for(programmed)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(WorkloadError::Unavailable(format!(
                "network policy for workload {name} cannot be programmed: the policy follower has stopped"
            ))),
            Err(_) => Err(WorkloadError::Unavailable(format!(
                "network policy for workload {name} is not in the kernel after {POLICY_WAIT:?}; try again"
            ))),
        }
    }

    async fn restore(&self) -> Result<usize, WorkloadError> {
        let mut restored = 0;
        for w in self.list_node().await? {
            if let Some(ifindex) = self.link_index(&w.host_interface).await? {
                self.set_routes(&w, ifindex).await;
                restored += 1;
            }
        }
        Ok(restored)
    }

    /// The MTU pods get (`remote_routes::encap::pod_mtu`).
    fn mtu(&self, pools: &[IpPool]) -> u32 {
        crate::remote_routes::encap::pod_mtu(self.configured_mtu, self.underlay_mtu, pools)
    }

    async fn pools(&self) -> Result<Vec<IpPool>, WorkloadError> {
        Ok(self.stored_pools().await?.into_iter().map(|p| p.spec).collect())
    }

    async fn stored_pools(&self) -> Result<Vec<Stored<IpPool>>, WorkloadError> {
        let store = self.allocator.ipam().store();
        Ok(store.list::<IpPool>().await.map_err(|e| self.store_error("IP pools", e))?.items)
    }

    /// The pod's Namespace record: its labels choose among pools with a namespace selector, its
    /// pool annotations the pools of a pod that names none. A namespace without a record has
    /// neither, as Calico evaluates a missing namespace; a pod without a namespace likewise.
    async fn namespace(&self, name: &str) -> Result<Namespace, WorkloadError> {
        if name.is_empty() {
            return Ok(Namespace::default());
        }
        match self.allocator.ipam().store().get::<Namespace>(name).await {
            Ok(ns) => Ok(ns.spec),
            Err(DatastoreError::NotFound { .. }) => Ok(Namespace::default()),
            Err(e) => Err(self.store_error("the pod's namespace", e)),
        }
    }

    /// A family served from the automatic pools (the pod named none) is served from those that
    /// select the pod's namespace by its `labels`. Untouched when no automatic pool of the family
    /// has a namespace selector.
    fn select_by_namespace(
        namespace: &str,
        labels: &BTreeMap<String, String>,
        families: Vec<(u8, Vec<IpNetwork>)>,
        pools: &[IpPool],
    ) -> Result<Vec<(u8, Vec<IpNetwork>)>, WorkloadError> {
        let automatic = |p: &IpPool, family: u8| {
            !p.disabled
                && p.cidr.is_ipv4() == (family == 4)
                && p.allowed_uses.contains(&PoolUse::Workload)
                && p.assignment_mode == AssignmentMode::Automatic
        };
        let selective = |family: u8| pools.iter().any(|p| automatic(p, family) && !p.namespace_selector.is_empty());
        if !families.iter().any(|(family, named)| named.is_empty() && selective(*family)) {
            return Ok(families);
        }
        let mut out = Vec::new();
        for (family, named) in families {
            if !named.is_empty() || !selective(family) {
                out.push((family, named));
                continue;
            }
            let chosen: Vec<IpNetwork> = pools
                .iter()
                .filter(|p| automatic(p, family) && namespace_selector_matches(p, labels))
                .map(|p| p.cidr)
                .collect();
            if chosen.is_empty() {
                return Err(WorkloadError::BadRequest(format!(
                    "no IPv{family} pool for namespace {namespace:?}: the namespaceSelector of every automatic pool leaves out its labels {labels:?}"
                )));
            }
            out.push((family, chosen));
        }
        Ok(out)
    }

    /// Calico's IPAM annotations of the pod `r` is for: the Pod's own in Kubernetes mode (over
    /// those the runtime passed), else the runtime's.
    async fn annotations(&self, r: &AllocateRequest) -> Result<BTreeMap<String, String>, WorkloadError> {
        let mut annotations = r.annotations.clone();
        if let Some(kube) = self.kube.as_ref().filter(|_| !r.pod.is_empty()) {
            use super::kubernetes::pod_annotations::{PodReadError, pod_annotations};
            match pod_annotations(kube, &r.namespace, &r.pod).await {
                Ok(pod) => annotations.extend(pod),
                Err(e @ PodReadError::NotFound { .. }) => return Err(WorkloadError::NotFound(e.to_string())),
                Err(e @ PodReadError::Api { .. }) => return Err(WorkloadError::Unavailable(e.to_string())),
            }
        }
        Ok(annotations)
    }

    async fn link_index(&self, name: &str) -> Result<Option<u32>, WorkloadError> {
        let mut links = self.links.link().get().match_name(name.to_string()).execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(Some(link.header.index)),
            Ok(None) => Ok(None),
            Err(rtnetlink::Error::NetlinkError(e)) if e.code.map(|c| c.get()) == Some(-libc::ENODEV) => Ok(None),
            Err(e) => Err(WorkloadError::Internal(format!("cannot look up interface {name}: {e}"))),
        }
    }

    async fn set_routes(&self, w: &Workload, ifindex: u32) {
        for dst in &w.addresses {
            let route = Route { dst: *dst, target: RouteTarget::Device { ifindex }, mtu: None };
            self.programmer.set(DesiredRoute { route, kind: RouteKind::LocalWorkload }).await;
        }
        self.programmed.lock().expect("not poisoned").insert(w.handle.clone());
    }

    async fn remove_routes(&self, w: &Workload) {
        for dst in &w.addresses {
            self.programmer.remove(*dst, RouteKind::LocalWorkload).await;
        }
        self.programmed.lock().expect("not poisoned").remove(&w.handle);
    }

    /// The workload holding `handle`, read from its handle record and blocks.
    async fn read(&self, handle: &str, pools: &[IpPool]) -> Result<Option<Workload>, WorkloadError> {
        let store = self.allocator.ipam().store();
        let Some(record) = handles::get(store, handle).await.map_err(|e| match e {
            IpamError::Datastore(d) => self.store_error("IPAM handle", d),
            other => WorkloadError::Internal(format!("IPAM handle: {other}")),
        })?
        else {
            return Ok(None);
        };
        let mut found = Vec::new();
        for cidr in record.spec.block.keys() {
            let name = cidr.replace(['.', ':', '/'], "-");
            let block = match store.get::<IpamBlock>(&name).await {
                Ok(b) => b.spec,
                Err(crate::datastore::DatastoreError::NotFound { .. }) => continue,
                Err(e) => return Err(self.store_error(&format!("IPAM block {cidr}"), e)),
            };
            let held = addresses_of(&block, |h| h == handle);
            for (_, ip, attrs) in &held {
                self.check_own(handle, *ip, attrs, &block)?;
            }
            found.extend(held);
        }
        Ok(self.assemble(handle, found, pools))
    }

    /// Refuses an address that is not a pod's of this node: the node that allocated it (its
    /// `node` attribute, else the block's affinity) must be this one, and it must be a pod's
    /// (a tunnel address has no host interface). One node's API never frees another's.
    fn check_own(&self, handle: &str, ip: IpAddr, attrs: &PackedMap, block: &IpamBlock) -> Result<(), WorkloadError> {
        // Who allocated it; without the attribute, whose block it is (`host:<node>`).
        let (owner, mine) = match attrs.get(NODE_ATTRIBUTE) {
            Some(node) => (node.to_string(), node == self.node),
            None => {
                let affinity = block.affinity.clone().unwrap_or_default();
                let mine = affinity == host_affinity(&self.node);
                (affinity, mine)
            }
        };
        if !mine {
            return Err(WorkloadError::Forbidden(format!(
                "handle {handle:?} holds {ip}, an address of node {owner:?}: this agent serves node {} only",
                self.node
            )));
        }
        if !attrs.contains_key(ATTR_HOST_INTERFACE) {
            let kind = attrs.get("type").unwrap_or("no host_interface");
            return Err(WorkloadError::Forbidden(format!(
                "handle {handle:?} holds {ip}, which is not a pod's address ({kind}) of node {}",
                self.node
            )));
        }
        Ok(())
    }

    /// Every workload of this node, from the blocks' allocation attributes as stored now.
    async fn list_node(&self) -> Result<Vec<Workload>, WorkloadError> {
        let store = self.allocator.ipam().store();
        let blocks = store.list::<IpamBlock>().await.map_err(|e| self.store_error("IPAM blocks", e))?;
        let pools = self.pools().await?;
        Ok(self.node_workloads(blocks.items.iter().map(|b| &b.spec), &pools))
    }

    /// Every workload of this node in `blocks`.
    fn node_workloads<'a>(&self, blocks: impl IntoIterator<Item = &'a IpamBlock>, pools: &[IpPool]) -> Vec<Workload> {
        let mut by_handle: BTreeMap<String, Vec<Found>> = BTreeMap::new();
        for block in blocks {
            for (handle, ip, attrs) in addresses_of(block, |_| true) {
                if attrs.get("node") == Some(self.node.as_str()) && attrs.contains_key(ATTR_HOST_INTERFACE) {
                    by_handle.entry(handle.clone()).or_default().push((handle, ip, attrs));
                }
            }
        }
        by_handle.into_iter().filter_map(|(h, found)| self.assemble(&h, found, pools)).collect()
    }

    fn assemble(&self, handle: &str, mut found: Vec<Found>, pools: &[IpPool]) -> Option<Workload> {
        found.sort_by_key(|(_, ip, _)| (ip.is_ipv6(), *ip));
        let attrs = found.first()?.2.clone();
        let attr = |k: &str| attrs.get(k).unwrap_or_default().to_string();
        let programmed = self.programmed.lock().expect("not poisoned").contains(handle);
        let (labels, service_account, ports) = super::endpoint_attrs::read(&attrs);
        Some(Workload {
            labels,
            service_account,
            ports,
            handle: handle.to_string(),
            container_id: attr(ATTR_CONTAINER),
            pod: attr("pod"),
            namespace: attr("namespace"),
            netns: attr(ATTR_NETNS),
            ifname: attr(ATTR_IFNAME),
            host_interface: attr(ATTR_HOST_INTERFACE),
            addresses: found.iter().map(|(_, ip, _)| host_network(*ip)).collect(),
            mtu: self.mtu(pools),
            allocated_at: attr(ATTR_ALLOCATED_AT).parse().unwrap_or(0),
            route_programmed: programmed,
        })
    }

    fn check_request(&self, r: &AllocateRequest) -> Result<(), WorkloadError> {
        let bad =
            |field: &str, value: &str, why: &str| Err(WorkloadError::BadRequest(format!("{field} {value:?}: {why}")));
        if r.handle.is_empty() || r.handle.len() > 253 || r.handle.contains(['/', ' ']) {
            return bad("handle", &r.handle, "must be 1 to 253 characters without '/' or spaces");
        }
        if r.container_id.is_empty() {
            return bad("container_id", &r.container_id, "is required");
        }
        check_interface("host_interface", &r.host_interface)?;
        if !r.host_interface.starts_with(&self.interface_prefix) {
            return bad(
                "host_interface",
                &r.host_interface,
                &format!("does not start with dataplane.workload_interface_prefix {:?}", self.interface_prefix),
            );
        }
        check_interface("ifname", &r.ifname)?;
        super::endpoint_attrs::check(r).map_err(WorkloadError::BadRequest)?;
        if r.netns.is_empty() {
            return bad("netns", &r.netns, "is required");
        }
        Ok(())
    }
}

fn check_interface(field: &str, name: &str) -> Result<(), WorkloadError> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) || name == "." || name == ".." {
        return Err(WorkloadError::BadRequest(format!(
            "{field} {name:?}: not a valid interface name (1 to 15 characters, no '/', ':' or spaces)"
        )));
    }
    Ok(())
}

/// One allocated address: its handle, the address and the allocation's attributes.
type Found = (String, IpAddr, PackedMap);

/// `ip` as a host prefix (/32 or /128).
fn host_network(ip: IpAddr) -> IpNetwork {
    IpNetwork::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("a host prefix is valid")
}

/// The allocated addresses of `block` whose handle passes `keep`, with their attributes.
pub(crate) fn addresses_of(block: &IpamBlock, keep: impl Fn(&str) -> bool) -> Vec<(String, IpAddr, PackedMap)> {
    let mut out = Vec::new();
    for (ordinal, slot) in block.allocations.iter().enumerate() {
        let Some(index) = slot else { continue };
        let Some(handle) = handle_at(block, ordinal) else { continue };
        if !keep(handle) {
            continue;
        }
        let attrs = block.attributes.get(*index as usize).map(|a| a.secondary.clone()).unwrap_or_default();
        out.push((handle.to_string(), ip_at(&block.cidr, ordinal), attrs));
    }
    out
}

/// What a CNI GC does with this node's handles of `network`: release those not in `valid` that
/// are older than `grace` at `now` (unix seconds); keep the younger ones.
pub fn gc_decision(
    workloads: &[Workload],
    network: &str,
    valid: &BTreeSet<String>,
    now: u64,
    grace: Duration,
) -> (Vec<String>, Vec<String>) {
    let prefix = format!("{network}.");
    let (mut release, mut young) = (Vec::new(), Vec::new());
    for w in workloads.iter().filter(|w| w.handle.starts_with(&prefix) && !valid.contains(&w.handle)) {
        if now.saturating_sub(w.allocated_at) < grace.as_secs() {
            young.push(w.handle.clone());
        } else {
            release.push(w.handle.clone());
        }
    }
    (release, young)
}

fn ipam_error(e: IpamError) -> WorkloadError {
    match e {
        IpamError::Datastore(d) if d.is_retryable() => WorkloadError::Unavailable(d.to_string()),
        IpamError::NoPool { .. }
        | IpamError::PoolsExhausted { .. }
        | IpamError::BlockLimit { .. }
        | IpamError::Stopped
        | IpamError::RetriesExhausted { .. } => WorkloadError::Unavailable(e.to_string()),
        other => WorkloadError::Internal(other.to_string()),
    }
}

/// A failure to give the address an `ipAddrs` annotation (of `value`) asks for: the request's
/// own fault (in no enabled pool: 400; in use: 409) names the annotation and its value.
fn annotation_error(value: &str, e: IpamError) -> WorkloadError {
    let named = |e: &IpamError| format!("annotation {} {value:?}: {e}", pod_ipam::IP_ADDRS);
    match e {
        IpamError::NotInEnabledPool { .. } => WorkloadError::BadRequest(named(&e)),
        IpamError::InUse { .. } => WorkloadError::Conflict(named(&e)),
        other => ipam_error(other),
    }
}

#[async_trait]
impl WorkloadService for Workloads {
    async fn allocate(&self, r: AllocateRequest) -> Result<Workload, WorkloadError> {
        self.check_request(&r)?;
        let _pod = self.pods.lock(&r.host_interface).await;
        let stored = self.stored_pools().await?;
        let pools: Vec<IpPool> = stored.iter().map(|p| p.spec.clone()).collect();
        if let Some(existing) = self.read(&r.handle, &pools).await? {
            return Ok(existing);
        }
        let annotations = self.annotations(&r).await?;
        let namespace = self.namespace(&r.namespace).await?;
        let wanted =
            pod_ipam::parse(&annotations, &namespace.annotations, &stored).map_err(WorkloadError::BadRequest)?;
        let usable = |v6: bool| {
            pools.iter().any(|p| {
                !p.disabled
                    && p.cidr.is_ipv6() == v6
                    && p.allowed_uses.contains(&PoolUse::Workload)
                    && p.assignment_mode == AssignmentMode::Automatic
            })
        };
        // A family is served from the pools the pod names, else from every automatic pool.
        let families: Vec<(u8, Vec<IpNetwork>)> =
            [(4, wanted.ipv4_pools.clone(), usable(false)), (6, wanted.ipv6_pools.clone(), usable(true))]
                .into_iter()
                .filter(|(_, named, usable)| !named.is_empty() || *usable)
                .map(|(family, named, _)| (family, named))
                .collect();
        let families = Self::select_by_namespace(&r.namespace, &namespace.labels, families, &pools)?;
        if families.is_empty() && wanted.addresses.is_empty() {
            return Err(WorkloadError::Unavailable(
                "no IP pool to allocate pod addresses from: the datastore holds no enabled IPPool allowing Workload use and ipam.default_ipv4_pool_cidr is not set".into(),
            ));
        }
        let request_for = |family: u8| {
            let mut request = Request::workload(&r.handle, family, &r.pod, &r.namespace, &self.node);
            for (k, v) in [
                (ATTR_CONTAINER, r.container_id.clone()),
                (ATTR_NETNS, r.netns.clone()),
                (ATTR_IFNAME, r.ifname.clone()),
                (ATTR_HOST_INTERFACE, r.host_interface.clone()),
                (ATTR_ALLOCATED_AT, now_secs().to_string()),
            ]
            .into_iter()
            .chain(super::endpoint_attrs::attributes(&r))
            {
                request.attributes.insert(k.to_string(), v);
            }
            request
        };
        // Exactly the addresses asked for (`ipAddrs`: no other family is added), else one per
        // family from its pools.
        let results: Vec<Result<IpAddr, WorkloadError>> = if wanted.addresses.is_empty() {
            let requests = families.iter().map(|(family, named)| {
                let mut request = request_for(*family);
                request.pools = named.clone();
                self.allocator.allocate(request)
            });
            let results = futures::future::join_all(requests).await;
            self.record_write(results.iter().find_map(|r| r.as_ref().err()));
            for result in &results {
                if let Err(IpamError::PoolsExhausted { pools }) = result {
                    tracing::warn!(subsys = "ipam", pools = ?pools, pod = %r.pod, namespace = %r.namespace, "IP pool exhausted: no free address for the pod");
                }
            }
            results.into_iter().map(|r| r.map(|a| a.ip).map_err(ipam_error)).collect()
        } else {
            let ipam = self.allocator.ipam();
            let value = annotations.get(pod_ipam::IP_ADDRS).cloned().unwrap_or_default();
            let requests = wanted.addresses.iter().map(|ip| {
                let request = request_for(if ip.is_ipv4() { 4 } else { 6 });
                async move { ipam.assign_ip(*ip, &request.handle, &request.attributes).await }
            });
            let results = futures::future::join_all(requests).await;
            self.record_write(results.iter().find_map(|r| r.as_ref().err()));
            results.into_iter().map(|r| r.map(|a| a.ip).map_err(|e| annotation_error(&value, e))).collect()
        };
        let mut addresses = Vec::new();
        for result in results {
            match result {
                Ok(ip) => addresses.push(host_network(ip)),
                Err(e) => {
                    // A pod with one family of two is a failed pod (Calico's dual-stack rule).
                    if let Err(undo) = self.allocator.release_handle(&r.handle).await {
                        tracing::warn!(subsys = "cni", handle = %r.handle, error = %undo, "cannot release a half allocation");
                    }
                    return Err(e);
                }
            }
        }
        addresses.sort_by_key(|a| (a.is_ipv6(), a.ip()));
        tracing::info!(subsys = "cni", handle = %r.handle, pod = %r.pod, namespace = %r.namespace, addresses = ?addresses, "allocated");
        Ok(Workload {
            handle: r.handle,
            container_id: r.container_id,
            pod: r.pod,
            namespace: r.namespace,
            netns: r.netns,
            ifname: r.ifname,
            host_interface: r.host_interface,
            addresses,
            mtu: self.mtu(&pools),
            allocated_at: now_secs(),
            route_programmed: false,
            labels: r.labels,
            service_account: r.service_account,
            ports: r.ports,
        })
    }

    async fn program_route(&self, handle: &str) -> Result<Workload, WorkloadError> {
        let pools = self.pools().await?;
        let Some(mut w) = self.read(handle, &pools).await? else {
            return Err(WorkloadError::NotFound(format!("no workload with handle {handle:?} on this node")));
        };
        let _pod = self.pods.lock(&w.host_interface).await;
        let Some(ifindex) = self.link_index(&w.host_interface).await? else {
            return Err(WorkloadError::BadRequest(format!(
                "host_interface {:?} of handle {handle:?} does not exist on this node",
                w.host_interface
            )));
        };
        // Nothing routes to the pod before its policy is in place.
        self.wait_for_policy(&w).await?;
        self.set_routes(&w, ifindex).await;
        // Answer once the route is in the kernel, so the pod's traffic flows when ADD returns.
        // (`applied`, not `flush`: a flush would complete the first full reconcile early, and
        // after a restart delete the learned routes BGP has not relearned yet.)
        self.programmer.applied().await;
        w.route_programmed = true;
        Ok(w)
    }

    async fn release(&self, handle: &str) -> Result<Released, WorkloadError> {
        let pools = self.pools().await?;
        let w = self.read(handle, &pools).await?;
        let _pod = match &w {
            Some(w) => Some(self.pods.lock(&w.host_interface).await),
            None => None,
        };
        if let Some(w) = &w {
            self.remove_routes(w).await;
            self.programmer.applied().await;
        }
        let released = self.allocator.release_handle(handle).await;
        self.record_write(released.as_ref().err());
        let released = released.map_err(ipam_error)?;
        if released > 0 {
            tracing::info!(subsys = "cni", handle, released, "released");
        }
        Ok(Released { handle: handle.to_string(), released })
    }

    async fn list(&self) -> Result<Vec<Workload>, WorkloadError> {
        self.list_node().await
    }

    async fn gc(&self, request: GcRequest) -> Result<GcAnswer, WorkloadError> {
        if request.network.is_empty() {
            return Err(WorkloadError::BadRequest("network \"\": is required".into()));
        }
        let valid: BTreeSet<String> = request.valid_handles.into_iter().collect();
        let workloads = self.list_node().await?;
        let (release, kept_young) = gc_decision(&workloads, &request.network, &valid, now_secs(), GC_GRACE);
        let mut released = Vec::new();
        for handle in release {
            self.release(&handle).await?;
            released.push(handle);
        }
        if !released.is_empty() {
            tracing::info!(subsys = "cni", network = %request.network, released = ?released, "GC released stale handles");
        }
        Ok(GcAnswer { released, kept_young })
    }
}

/// Every [`SWEEP_INTERVAL`], releases this node's workloads (allocated at least [`GC_GRACE`]
/// ago) whose host interface has been gone for [`GC_GRACE`] (a runtime that never sent DEL, or
/// a veth deleted by hand), and drops their routes as soon as the interface is seen gone (the
/// kernel removed them with the link). The workloads come from the agent's pictures of the
/// blocks and pools: a sweep reads nothing from the datastore (every agent sweeps, and at
/// 1 000 nodes a listing of the blocks is about 3 MB).
pub async fn sweep(
    service: std::sync::Arc<Workloads>,
    blocks: tokio::sync::watch::Receiver<Option<KnownBlocks>>,
    pools: tokio::sync::watch::Receiver<Vec<IpPool>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut gone_since: BTreeMap<String, Instant> = BTreeMap::new();
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        // Not known (being read again after a watch error): the next sweep.
        let workloads = match &*blocks.borrow() {
            Some(known) => service.node_workloads(known.specs(), &pools.borrow()),
            None => continue,
        };
        let mut missing = BTreeSet::new();
        let now = now_secs();
        // A young workload may still be between allocation and its veth (ADD in progress):
        // dropping its routes here could race with the plugin's route request.
        let settled = |w: &Workload| now.saturating_sub(w.allocated_at) >= GC_GRACE.as_secs();
        for w in workloads.iter().filter(|w| settled(w)) {
            if matches!(service.link_index(&w.host_interface).await, Ok(None)) {
                missing.insert(w.handle.clone());
                if !gone_since.contains_key(&w.handle) {
                    gone_since.insert(w.handle.clone(), Instant::now());
                    service.remove_routes(w).await;
                }
            }
        }
        gone_since.retain(|h, _| missing.contains(h));
        for w in &workloads {
            if gone_since.get(&w.handle).is_some_and(|t| t.elapsed() >= GC_GRACE) {
                match service.release(&w.handle).await {
                    Ok(_) => {
                        tracing::info!(subsys = "cni", handle = %w.handle, host_interface = %w.host_interface, "released a workload whose host interface is gone");
                        gone_since.remove(&w.handle);
                    }
                    Err(e) => tracing::warn!(subsys = "cni", handle = %w.handle, error = %e, "cannot release"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(handle: &str, allocated_at: u64) -> Workload {
        Workload {
            handle: handle.into(),
            container_id: String::new(),
            pod: String::new(),
            namespace: String::new(),
            netns: String::new(),
            ifname: "eth0".into(),
            host_interface: "tt0".into(),
            addresses: vec![],
            mtu: 1500,
            allocated_at,
            route_programmed: true,
            labels: BTreeMap::new(),
            service_account: String::new(),
            ports: Vec::new(),
        }
    }

    #[test]
    fn gc_releases_old_unlisted_handles_of_its_network_only() {
        let all = [workload("net.a", 0), workload("net.b", 0), workload("net.c", 990), workload("other.d", 0)];
        let valid = BTreeSet::from(["net.a".to_string()]);
        let (release, young) = gc_decision(&all, "net", &valid, 1000, Duration::from_secs(60));
        assert_eq!(release, vec!["net.b".to_string()]);
        assert_eq!(young, vec!["net.c".to_string()]);
    }
}
