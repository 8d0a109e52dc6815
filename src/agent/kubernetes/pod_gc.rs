//! Leaked pod addresses: this node's IPAM allocations carry their pod's namespace and name (the
//! CNI side stores them, as Calico's `k8s-pod-network` handles do); an allocation whose Pod no
//! longer exists on this node is a leak — the CNI DEL never came (node crash, runtime bug). A
//! handle is released only when its pod was missing at two observations at least the grace
//! period apart, so a pod just created, or a list racing a CNI ADD, is never collected.

use crate::datastore::resources::IpamBlock;
use crate::ipam::Ipam;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The collector of one node's agent.
pub struct PodGc {
    grace: Duration,
    /// Handle → when its pod was first seen missing.
    missing_since: BTreeMap<String, Instant>,
}

/// Handle → (namespace, pod) of this node's pod allocations in `blocks`.
pub fn pod_handles<'a>(blocks: impl Iterator<Item = &'a IpamBlock>, node: &str) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for block in blocks {
        for attribute in &block.attributes {
            let s = &attribute.secondary;
            if let (Some(handle), Some(namespace), Some(pod), Some(owner)) =
                (&attribute.handle_id, s.get("namespace"), s.get("pod"), s.get("node"))
                && owner == node
            {
                out.insert(handle.clone(), (namespace.to_string(), pod.to_string()));
            }
        }
    }
    out
}

/// (namespace, name) of every Pod scheduled to `node`.
pub async fn pods_on(client: &kube::Client, node: &str) -> Result<BTreeSet<(String, String)>, kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::erase::<Pod>(&()));
    let list = api.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))).await?;
    Ok(list
        .items
        .into_iter()
        .map(|p| (p.metadata.namespace.unwrap_or_default(), p.metadata.name.unwrap_or_default()))
        .collect())
}

impl PodGc {
    pub fn new(grace: Duration) -> PodGc {
        PodGc { grace, missing_since: BTreeMap::new() }
    }

    /// One round at time `now`: reads the blocks, then the pods (in that order, so every
    /// allocation seen belongs to a pod that existed before the list), and releases the handles
    /// whose pod has been missing long enough. Returns the handles released.
    pub async fn run_once(&mut self, client: &kube::Client, ipam: &Ipam, now: Instant) -> Result<Vec<String>, String> {
        let node = ipam.node().to_string();
        let blocks = ipam.store().list::<IpamBlock>().await.map_err(|e| format!("cannot list IPAM blocks: {e}"))?.items;
        let handles = pod_handles(blocks.iter().map(|b| &b.spec), &node);
        let pods = pods_on(client, &node).await.map_err(|e| format!("cannot list the pods on {node}: {e}"))?;
        let missing: BTreeSet<&String> =
            handles.iter().filter(|(_, pod)| !pods.contains(pod)).map(|(handle, _)| handle).collect();
        self.missing_since.retain(|h, _| missing.contains(h));
        let mut released = Vec::new();
        for handle in missing {
            let first = *self.missing_since.entry(handle.clone()).or_insert(now);
            if now > first && now.duration_since(first) >= self.grace {
                let (namespace, pod) = &handles[handle];
                let freed = ipam.release_handle(handle).await.map_err(|e| format!("cannot release {handle}: {e}"))?;
                tracing::info!(subsys = "ipam", handle = %handle, pod = %format!("{namespace}/{pod}"), addresses = freed, "released the addresses of a deleted pod");
                self.missing_since.remove(handle);
                released.push(handle.clone());
            }
        }
        Ok(released)
    }
}
