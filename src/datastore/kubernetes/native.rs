//! Kubernetes' own objects that are tortie records: a `networking.k8s.io/v1` NetworkPolicy is a
//! KubernetesNetworkPolicy record (its `spec`), a Namespace a Namespace record (its labels; a
//! write replaces the labels, the API server keeps the rest of the Namespace as it defaults it).

use crate::datastore::Kind;
use kube::api::{ApiResource, DynamicObject};
use serde_json::{Value, json};

pub(super) fn resource(kind: Kind) -> ApiResource {
    if kind == Kind::Namespace {
        ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&())
    } else {
        ApiResource::erase::<k8s_openapi::api::networking::v1::NetworkPolicy>(&())
    }
}

/// The record of a Namespace: `{"labels": …}`.
pub(super) fn namespace_value(object: &DynamicObject) -> Value {
    json!({ "labels": object.metadata.labels.clone().unwrap_or_default() })
}

/// The Namespace holding `record`.
pub(super) fn namespace_document(name: &str, record: &Value) -> DynamicObject {
    let mut object = DynamicObject::new(name, &resource(Kind::Namespace));
    object.metadata.labels = record
        .get("labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .filter(|l: &std::collections::BTreeMap<String, String>| !l.is_empty());
    object
}
