//! Which allocations a live workload holds: `ipam release` refuses those unless forced, and
//! `ipam check` reports the others as leaked.
//!
//! tortie keeps no workload record apart from the allocation: the CNI side stores each pod's
//! attributes on its address (`pod`, `namespace`, `node`, and `host_interface`, `container_id`
//! when the agent allocated it), so the allocation is its workload's record. That workload is
//! live while the node named in it exists (its Node record; on Kubernetes its Kubernetes Node)
//! and, on Kubernetes, while its Pod exists. Tunnel and load-balancer addresses belong to no workload; their own collectors judge
//! them.

use super::gc::{is_load_balancer_handle, is_tunnel_handle};
use crate::datastore::resources::PackedMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The allocation attributes naming the workload.
const ATTR_POD: &str = "pod";
const ATTR_NAMESPACE: &str = "namespace";
const ATTR_NODE: &str = "node";
const ATTR_HOST_INTERFACE: &str = "host_interface";
const ATTR_CONTAINER: &str = "container_id";

/// What exists now, read once.
#[derive(Clone, Debug, Default)]
pub struct Liveness {
    /// The names of the nodes that exist (Kubernetes Nodes on Kubernetes, else Node records).
    pub nodes: BTreeSet<String>,
    /// (namespace, name) of every Pod, on Kubernetes; `None` elsewhere (no Pods to ask).
    pub pods: Option<BTreeSet<(String, String)>>,
}

/// Who holds an allocated address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum Holder {
    /// A workload that exists: `namespace/pod`, or its host interface or container without a pod.
    Live { workload: String },
    /// A workload that no longer exists, and why it is taken as gone.
    Gone { workload: String, why: String },
    /// A node's tunnel address or a Service's load-balancer address.
    Infrastructure,
    /// No workload's attributes at all.
    Unowned,
}

impl Holder {
    /// A workload exists that holds the address, or it is infrastructure: not a leak.
    pub fn in_use(&self) -> bool {
        matches!(self, Holder::Live { .. } | Holder::Infrastructure)
    }
}

impl Liveness {
    /// Who holds an address allocated to `handle` with `attributes`.
    pub fn holder(&self, handle: Option<&str>, attributes: &PackedMap) -> Holder {
        if handle.is_some_and(|h| is_tunnel_handle(h) || is_load_balancer_handle(h)) {
            return Holder::Infrastructure;
        }
        let attr = |k: &str| attributes.get(k).filter(|v| !v.is_empty());
        let workload = match (attr(ATTR_NAMESPACE), attr(ATTR_POD)) {
            (Some(ns), Some(pod)) => format!("{ns}/{pod}"),
            (None, Some(pod)) => pod.to_string(),
            _ => match attr(ATTR_HOST_INTERFACE).or(attr(ATTR_CONTAINER)) {
                Some(name) => name.to_string(),
                None => return Holder::Unowned,
            },
        };
        if let Some(node) = attr(ATTR_NODE)
            && !self.nodes.contains(node)
        {
            return Holder::Gone { workload, why: format!("node {node} no longer exists") };
        }
        if let (Some(pods), Some(pod)) = (&self.pods, attr(ATTR_POD)) {
            let namespace = attr(ATTR_NAMESPACE).unwrap_or("default");
            if !pods.contains(&(namespace.to_string(), pod.to_string())) {
                return Holder::Gone { workload, why: format!("pod {namespace}/{pod} no longer exists") };
            }
        }
        Holder::Live { workload }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> PackedMap {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn liveness(pods: Option<&[(&str, &str)]>) -> Liveness {
        Liveness {
            nodes: BTreeSet::from(["n1".to_string()]),
            pods: pods.map(|p| p.iter().map(|(ns, n)| (ns.to_string(), n.to_string())).collect()),
        }
    }

    #[test]
    fn a_pod_on_an_existing_node_is_live_and_gone_with_its_node() {
        let l = liveness(None);
        let pod = attrs(&[("pod", "web-0"), ("namespace", "shop"), ("node", "n1")]);
        assert_eq!(l.holder(Some("k8s-pod-network.a"), &pod), Holder::Live { workload: "shop/web-0".into() });
        let elsewhere = attrs(&[("pod", "web-0"), ("namespace", "shop"), ("node", "n9")]);
        assert_eq!(
            l.holder(Some("k8s-pod-network.a"), &elsewhere),
            Holder::Gone { workload: "shop/web-0".into(), why: "node n9 no longer exists".into() }
        );
    }

    #[test]
    fn on_kubernetes_the_pod_must_exist_too() {
        let l = liveness(Some(&[("shop", "web-0")]));
        let live = attrs(&[("pod", "web-0"), ("namespace", "shop"), ("node", "n1")]);
        assert!(l.holder(Some("h"), &live).in_use());
        let gone = attrs(&[("pod", "web-1"), ("namespace", "shop"), ("node", "n1")]);
        assert_eq!(
            l.holder(Some("h"), &gone),
            Holder::Gone { workload: "shop/web-1".into(), why: "pod shop/web-1 no longer exists".into() }
        );
    }

    #[test]
    fn a_workload_without_a_pod_is_named_by_its_interface_and_tunnels_are_not_workloads() {
        let l = liveness(None);
        let lab = attrs(&[("host_interface", "tt1234"), ("node", "n1")]);
        assert_eq!(l.holder(Some("net.c"), &lab), Holder::Live { workload: "tt1234".into() });
        assert_eq!(l.holder(Some("net.c"), &PackedMap::new()), Holder::Unowned);
        assert!(!Holder::Unowned.in_use());
        assert_eq!(l.holder(Some("ipip-tunnel-addr-n9"), &PackedMap::new()), Holder::Infrastructure);
    }
}
