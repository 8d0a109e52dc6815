//! The operator's IPAM commands (`tortie ipam show|check|release`) as operations on the
//! datastore: the agent runs them behind `/v1/ipam/…` (it is its node's one writer), and the
//! CLI runs them itself only when no agent answers.
//!
//! Release follows calicoctl: an address a live workload holds ([`super::liveness`]) is refused
//! unless forced; a dry run says what would go and writes nothing; a report of `ipam check` is
//! released address by address with the sequence number it recorded, and refused whole when
//! the datastore changed since (an address of another handle or sequence number now, or a live
//! workload's) unless forced, when only the unchanged addresses go.

use super::block_math::{block_of, ordinal_of};
use super::block_ops;
use super::check::{AddressProblem, CheckInput, CheckReport, check};
use super::liveness::{Holder, Liveness};
use super::{DEFAULT_MAX_BLOCKS_PER_HOST, Ipam, IpamError, IpamOptions};
use crate::datastore::resources::{IpPool, IpamBlock, IpamConfig, Node, cidr_name};
use crate::datastore::{Datastore, DatastoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The node name the operator's releases write under (in no block's affinity).
const OPERATOR: &str = "tortie-cli";

/// What `ipam release` asks: exactly one of `ip`, `handle` and `leaked`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    /// The leaked addresses of an `ipam check` report (`--from-report`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaked: Option<Vec<AddressProblem>>,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub dry_run: bool,
}

/// One address released, or to be released in a dry run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReleasedAddress {
    pub ip: IpAddr,
    pub handle: Option<String>,
    pub holder: Holder,
}

/// An address of a report left allocated, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub ip: IpAddr,
    pub why: String,
}

/// What `ipam release` did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReleaseAnswer {
    pub dry_run: bool,
    pub released: Vec<ReleasedAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

/// The IPAM configuration the allocator follows (`ipam show --show-configuration`): the
/// datastore's IPAMConfig `default`, or Calico's defaults without one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationView {
    pub strict_affinity: bool,
    pub auto_allocate_blocks: bool,
    /// As stored: 0 means the default.
    pub max_blocks_per_host: u32,
    /// The limit in force.
    pub effective_max_blocks_per_host: u32,
    /// `IPAMConfig default` or `defaults (no IPAMConfig)`.
    pub source: String,
}

/// Who holds one address (`ipam show --ip`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressView {
    pub ip: IpAddr,
    pub pool: String,
    pub block: String,
    pub affinity: Option<String>,
    pub allocated: bool,
    pub handle: Option<String>,
    pub attributes: Option<BTreeMap<String, String>>,
    pub sequence_number: Option<u64>,
    pub holder: Option<Holder>,
    /// Addresses in use in the block, and its size.
    pub block_in_use: usize,
    pub block_size: usize,
}

/// Why an operation failed: refused (the operator may force it), a bad request, or the
/// datastore.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error("cannot list the Kubernetes Nodes or Pods: {0}")]
    Pods(String),
}

impl From<DatastoreError> for AdminError {
    fn from(e: DatastoreError) -> Self {
        AdminError::Ipam(e.into())
    }
}

/// One allocated address as read now.
#[derive(Clone, Debug)]
struct Allocated {
    ip: IpAddr,
    handle: Option<String>,
    sequence: Option<u64>,
    holder: Holder,
}

/// The operations over one datastore (and, on Kubernetes, its Pods).
#[derive(Clone)]
pub struct Admin {
    store: Datastore,
    kube: Option<kube::Client>,
}

impl Admin {
    /// `kube`: the cluster's client when the datastore is Kubernetes (Pods decide liveness).
    pub fn new(store: Datastore, kube: Option<kube::Client>) -> Admin {
        Admin { store, kube }
    }

    /// The nodes and Pods that exist, and the pods' addresses inside `pools`. On Kubernetes the
    /// nodes are the Kubernetes Nodes (a tortie Node record is only a registered one's
    /// annotations), elsewhere the Node records.
    async fn liveness(&self, pools: &[IpPool]) -> Result<(Liveness, Vec<IpAddr>), AdminError> {
        use k8s_openapi::api::core::v1::{Node as KubeNode, Pod};
        let Some(client) = &self.kube else {
            let nodes = self.store.list::<Node>().await?.items.into_iter().map(|n| n.name).collect();
            return Ok((Liveness { nodes, pods: None }, Vec::new()));
        };
        let kube_nodes: kube::Api<KubeNode> = kube::Api::all(client.clone());
        let listed = kube_nodes.list(&Default::default()).await.map_err(|e| AdminError::Pods(e.to_string()))?;
        let nodes: BTreeSet<String> = listed.items.into_iter().filter_map(|n| n.metadata.name).collect();
        let api: kube::Api<Pod> = kube::Api::all(client.clone());
        let list = api.list(&Default::default()).await.map_err(|e| AdminError::Pods(e.to_string()))?;
        let mut pods = BTreeSet::new();
        let mut addresses = Vec::new();
        for pod in list.items {
            let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
            pods.insert((pod.metadata.namespace.unwrap_or_default(), pod.metadata.name.unwrap_or_default()));
            let ips = pod.status.and_then(|s| s.pod_ips).unwrap_or_default();
            addresses.extend(
                ips.iter()
                    .filter(|_| !host_network)
                    .filter_map(|ip| ip.ip.parse::<IpAddr>().ok())
                    .filter(|ip| pools.iter().any(|p| p.cidr.contains(*ip))),
            );
        }
        Ok((Liveness { nodes, pods: Some(pods) }, addresses))
    }

    /// `ipam check`: the consistency report with leaks judged against live workloads.
    pub async fn check(&self) -> Result<CheckReport, AdminError> {
        let pools: Vec<IpPool> = self.store.list::<IpPool>().await?.items.into_iter().map(|p| p.spec).collect();
        let (liveness, in_use) = self.liveness(&pools).await?;
        Ok(check(&self.store, &CheckInput { liveness: Some(liveness), in_use, ..Default::default() }).await?)
    }

    /// `ipam show --show-configuration`.
    pub async fn configuration(&self) -> Result<ConfigurationView, AdminError> {
        let (config, source) = match self.store.get::<IpamConfig>("default").await {
            Ok(stored) => (stored.spec, "IPAMConfig default"),
            Err(DatastoreError::NotFound { .. }) => (IpamConfig::default(), "defaults (no IPAMConfig)"),
            Err(e) => return Err(e.into()),
        };
        Ok(ConfigurationView {
            strict_affinity: config.strict_affinity,
            auto_allocate_blocks: config.auto_allocate_blocks,
            max_blocks_per_host: config.max_blocks_per_host,
            effective_max_blocks_per_host: match config.max_blocks_per_host {
                0 => DEFAULT_MAX_BLOCKS_PER_HOST,
                n => n,
            },
            source: source.to_string(),
        })
    }

    /// `ipam show --ip`.
    pub async fn address(&self, ip: IpAddr) -> Result<AddressView, AdminError> {
        let pools = self.store.list::<IpPool>().await?.items;
        let Some(pool) = pools.iter().find(|p| p.spec.cidr.contains(ip)) else {
            return Err(AdminError::BadRequest(format!("{ip} is in no IP pool")));
        };
        let cidr =
            block_of(ip, pool.spec.block_size).ok_or_else(|| AdminError::BadRequest(format!("{ip}: no block")))?;
        let block = self.block(&cidr_name(&cidr)).await?;
        let ordinal = ordinal_of(&cidr, ip).unwrap_or(0);
        let attrs = block
            .as_ref()
            .and_then(|b| b.allocations.get(ordinal).copied().flatten().and_then(|i| b.attributes.get(i as usize)));
        let holder = match attrs {
            Some(a) => {
                let specs: Vec<IpPool> = pools.iter().map(|p| p.spec.clone()).collect();
                Some(self.liveness(&specs).await?.0.holder(a.handle_id.as_deref(), &a.secondary))
            }
            None => None,
        };
        Ok(AddressView {
            ip,
            pool: pool.name.clone(),
            block: cidr.to_string(),
            affinity: block.as_ref().and_then(|b| b.affinity.clone()),
            allocated: attrs.is_some(),
            handle: attrs.and_then(|a| a.handle_id.clone()),
            attributes: attrs.map(|a| a.secondary.to_map()),
            sequence_number: block.as_ref().and_then(|b| b.sequence_number_for_allocation.get(&ordinal.to_string())),
            holder,
            block_in_use: block.as_ref().map_or(0, block_ops::in_use),
            block_size: block.as_ref().map_or(0, |b| b.allocations.len()),
        })
    }

    async fn block(&self, name: &str) -> Result<Option<IpamBlock>, AdminError> {
        match self.store.get::<IpamBlock>(name).await {
            Ok(b) => Ok(Some(b.spec)),
            Err(DatastoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every allocated address with its holder, read now.
    async fn allocated(&self) -> Result<BTreeMap<IpAddr, Allocated>, AdminError> {
        let pools: Vec<IpPool> = self.store.list::<IpPool>().await?.items.into_iter().map(|p| p.spec).collect();
        let blocks = self.store.list::<IpamBlock>().await?.items;
        let (liveness, _) = self.liveness(&pools).await?;
        let mut out = BTreeMap::new();
        for b in blocks.iter().map(|b| &b.spec) {
            for (ordinal, slot) in b.allocations.iter().enumerate() {
                let Some(index) = slot else { continue };
                let ip = super::block_math::ip_at(&b.cidr, ordinal);
                let handle = block_ops::handle_at(b, ordinal).map(str::to_string);
                let attributes = b.attributes.get(*index as usize).map(|a| a.secondary.clone()).unwrap_or_default();
                let holder = liveness.holder(handle.as_deref(), &attributes);
                let sequence = b.sequence_number_for_allocation.get(&ordinal.to_string());
                out.insert(ip, Allocated { ip, handle, sequence, holder });
            }
        }
        Ok(out)
    }

    /// `ipam release`.
    pub async fn release(&self, request: &ReleaseRequest) -> Result<ReleaseAnswer, AdminError> {
        let given = [request.ip.is_some(), request.handle.is_some(), request.leaked.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(AdminError::BadRequest(
                "name exactly one of ip, handle and a report's leaked addresses".into(),
            ));
        }
        let allocated = self.allocated().await?;
        let mut answer = ReleaseAnswer { dry_run: request.dry_run, ..Default::default() };
        // (address, the sequence number it must still have).
        let mut targets: Vec<(Allocated, Option<u64>)> = Vec::new();
        if let Some(ip) = request.ip {
            targets.extend(allocated.get(&ip).map(|a| (a.clone(), a.sequence)));
        } else if let Some(handle) = &request.handle {
            targets.extend(allocated.values().filter(|a| a.handle.as_ref() == Some(handle)).map(|a| (a.clone(), None)));
        } else if let Some(leaked) = &request.leaked {
            let mut changed = Vec::new();
            for entry in leaked {
                let Some(now) = allocated.get(&entry.ip) else {
                    answer.skipped.push(Skipped { ip: entry.ip, why: "already free".into() });
                    continue;
                };
                if now.handle != entry.handle || now.sequence != entry.sequence_number {
                    changed.push(format!(
                        "{} now has handle {} (sequence number {}), the report says {} ({})",
                        entry.ip,
                        now.handle.as_deref().unwrap_or("<none>"),
                        now.sequence.map_or("-".into(), |s| s.to_string()),
                        entry.handle.as_deref().unwrap_or("<none>"),
                        entry.sequence_number.map_or("-".into(), |s| s.to_string()),
                    ));
                    answer.skipped.push(Skipped { ip: entry.ip, why: "changed since the report".into() });
                    continue;
                }
                targets.push((now.clone(), entry.sequence_number));
            }
            if !changed.is_empty() && !request.force {
                return Err(AdminError::Refused(format!(
                    "the report is older than the datastore: {}; run `tortie ipam check -o FILE` again, or --force to release only the addresses unchanged since",
                    changed.join("; ")
                )));
            }
        }
        let live: Vec<String> = targets
            .iter()
            .filter_map(|(a, _)| match &a.holder {
                Holder::Live { workload } => Some(format!(
                    "{} is held by live workload {workload} (handle {})",
                    a.ip,
                    a.handle.as_deref().unwrap_or("<none>")
                )),
                _ => None,
            })
            .collect();
        if !live.is_empty() && !request.force {
            return Err(AdminError::Refused(format!("{}; --force releases it anyway", live.join("; "))));
        }
        let ipam = Ipam::new(self.store.clone(), IpamOptions { node: OPERATOR.into(), ..Default::default() });
        if let Some(handle) = request.handle.as_ref().filter(|_| !request.dry_run) {
            // The whole handle, its record too (also one that holds nothing any more).
            ipam.release_handle(handle).await?;
            answer.released.extend(targets.into_iter().map(|(a, _)| ReleasedAddress {
                ip: a.ip,
                handle: a.handle,
                holder: a.holder,
            }));
            return Ok(answer);
        }
        for (a, sequence) in targets {
            if !request.dry_run {
                match ipam.release_ip(a.ip, sequence).await {
                    Ok(true) => {}
                    Ok(false) => {
                        answer.skipped.push(Skipped { ip: a.ip, why: "already free".into() });
                        continue;
                    }
                    Err(IpamError::StaleSequence { .. }) => {
                        answer.skipped.push(Skipped { ip: a.ip, why: "handed out again meanwhile".into() });
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            answer.released.push(ReleasedAddress { ip: a.ip, handle: a.handle, holder: a.holder });
        }
        Ok(answer)
    }
}
