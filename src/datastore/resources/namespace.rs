//! A namespace's labels, which policies' and pools' namespace selectors match, and Calico's
//! pool annotations, which choose the pools of its pods that name none (on the kubernetes
//! datastore, the Kubernetes Namespace's own labels and those annotations).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Calico's `cni.projectcalico.org/ipv4pools` annotation: a JSON list of pool names or CIDRs.
pub const IPV4_POOLS: &str = "cni.projectcalico.org/ipv4pools";
/// The same for IPv6.
pub const IPV6_POOLS: &str = "cni.projectcalico.org/ipv6pools";
/// The namespace annotations that have an effect; a record holds no others.
pub const POOL_ANNOTATIONS: [&str; 2] = [IPV4_POOLS, IPV6_POOLS];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Only [`POOL_ANNOTATIONS`]; each a JSON list of pool names or CIDRs, checked against the
    /// pools when a pod of the namespace is given its address.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Namespace {
    pub(super) fn check(&self) -> Result<(), String> {
        super::check_labels(&self.labels).map_err(|e| format!("labels: {e}"))?;
        for (key, value) in &self.annotations {
            if !POOL_ANNOTATIONS.contains(&key.as_str()) {
                return Err(format!(
                    "annotations: {key:?} has no effect on a namespace; only {IPV4_POOLS} and {IPV6_POOLS} are read"
                ));
            }
            if !matches!(serde_json::from_str::<Vec<String>>(value), Ok(list) if !list.is_empty()) {
                return Err(format!(
                    "annotations: {key}: {value:?} is not a non-empty JSON list of pool names or CIDRs"
                ));
            }
        }
        Ok(())
    }

    /// The record of a namespace with these Kubernetes labels and annotations: the annotations
    /// tortie reads are kept, the rest (kubectl's, other controllers') left out.
    pub fn from_kubernetes(labels: BTreeMap<String, String>, annotations: &BTreeMap<String, String>) -> Namespace {
        let annotations = annotations
            .iter()
            .filter(|(k, _)| POOL_ANNOTATIONS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Namespace { labels, annotations }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pool_annotations_are_held_and_their_values_are_lists() {
        let ns = |key: &str, value: &str| Namespace {
            annotations: [(key.into(), value.into())].into(),
            ..Namespace::default()
        };
        assert_eq!(ns(IPV4_POOLS, r#"["blue", "10.9.0.0/16"]"#).check(), Ok(()));
        let err = ns("cni.projectcalico.org/ipAddrs", r#"["10.0.0.1"]"#).check().unwrap_err();
        assert!(err.contains("\"cni.projectcalico.org/ipAddrs\" has no effect on a namespace"), "{err}");
        let err = ns(IPV6_POOLS, "blue").check().unwrap_err();
        assert!(err.contains("cni.projectcalico.org/ipv6pools: \"blue\" is not a non-empty JSON list"), "{err}");
        let kube: BTreeMap<String, String> = [
            (IPV4_POOLS.into(), r#"["blue"]"#.into()),
            ("kubectl.kubernetes.io/last-applied-configuration".into(), "{}".into()),
        ]
        .into();
        assert_eq!(
            Namespace::from_kubernetes(BTreeMap::new(), &kube).annotations.keys().collect::<Vec<_>>(),
            [IPV4_POOLS]
        );
    }
}
