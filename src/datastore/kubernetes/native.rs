//! Kubernetes' own objects that are tortie records: a `networking.k8s.io/v1` NetworkPolicy is a
//! KubernetesNetworkPolicy record (its `spec`), a Namespace a Namespace record (its labels and
//! Calico's pool annotations; a write replaces the labels and annotations).

use crate::datastore::Kind;
use crate::datastore::resources::Namespace;
use kube::api::{ApiResource, DynamicObject};
use serde_json::{Value, json};

pub(super) fn resource(kind: Kind) -> ApiResource {
    if kind == Kind::Namespace {
        ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&())
    } else {
        ApiResource::erase::<k8s_openapi::api::networking::v1::NetworkPolicy>(&())
    }
}

/// The record of a Namespace: its labels and the annotations tortie reads.
pub(super) fn namespace_value(object: &DynamicObject) -> Value {
    let labels = object.metadata.labels.clone().unwrap_or_default();
    let record =
        Namespace::from_kubernetes(labels, object.metadata.annotations.as_ref().unwrap_or(&Default::default()));
    serde_json::to_value(record).unwrap_or_else(|_| json!({}))
}

/// The Namespace holding `record`.
pub(super) fn namespace_document(name: &str, record: &Value) -> DynamicObject {
    let mut object = DynamicObject::new(name, &resource(Kind::Namespace));
    object.metadata.labels = record
        .get("labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .filter(|l: &std::collections::BTreeMap<String, String>| !l.is_empty());
    object.metadata.annotations = record
        .get("annotations")
        .and_then(|a| serde_json::from_value(a.clone()).ok())
        .filter(|a: &std::collections::BTreeMap<String, String>| !a.is_empty());
    object
}
