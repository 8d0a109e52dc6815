//! Kubernetes' own objects that are tortie records: a `networking.k8s.io/v1` NetworkPolicy is a
//! KubernetesNetworkPolicy record (its `spec`), a Namespace a Namespace record (its labels and
//! Calico's pool annotations; a write replaces the labels and annotations); a Service or
//! EndpointSlice a record of the fields tortie reads.

use crate::datastore::Kind;
use crate::datastore::resources::{Namespace, kube_projection};
use kube::api::{ApiResource, DynamicObject};
use serde_json::{Value, json};

pub(super) fn resource(kind: Kind) -> ApiResource {
    match kind {
        Kind::Namespace => ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&()),
        Kind::Service => ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
        Kind::EndpointSlice => ApiResource::erase::<k8s_openapi::api::discovery::v1::EndpointSlice>(&()),
        _ => ApiResource::erase::<k8s_openapi::api::networking::v1::NetworkPolicy>(&()),
    }
}

/// The record of a Service or EndpointSlice: the fields tortie reads (`kube_projection`).
pub(super) fn projected_value(kind: Kind, object: &DynamicObject) -> Value {
    let whole = serde_json::to_value(object).unwrap_or(Value::Null);
    kube_projection::record_of(kind, &whole).unwrap_or(Value::Null)
}

/// The Service or EndpointSlice holding `record`: its annotations or labels in the metadata, the
/// rest as the body (a write replaces the object: fields tortie does not read are not kept).
pub(super) fn projected_document(kind: Kind, name: &str, record: &Value) -> DynamicObject {
    let (metadata, body) = kube_projection::object_parts(kind, record);
    let mut object = DynamicObject::new(name, &resource(kind)).data(Value::Object(body));
    let map = |field: &str| metadata.get(field).and_then(|v| serde_json::from_value(v.clone()).ok());
    object.metadata.annotations = map("annotations");
    object.metadata.labels = map("labels");
    object
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
