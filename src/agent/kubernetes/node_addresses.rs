//! The Kubernetes Node's `InternalIP` addresses, for the `kubernetes-internal-ip` address
//! detection method: one GET of the Node at start, as calico-node does.

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use std::net::IpAddr;

/// The `InternalIP` addresses of Kubernetes Node `name`, in the Node's order. Addresses that do
/// not parse are skipped: the kubelet writes them, and the caller reports the family missing.
pub async fn internal_ips(client: &kube::Client, name: &str) -> Result<Vec<IpAddr>, String> {
    let api: Api<Node> = Api::all(client.clone());
    let node = api.get(name).await.map_err(|e| format!("cannot read the Kubernetes Node {name}: {e}"))?;
    let addresses = node.status.and_then(|s| s.addresses).unwrap_or_default();
    Ok(addresses.into_iter().filter(|a| a.type_ == "InternalIP").filter_map(|a| a.address.parse().ok()).collect())
}
