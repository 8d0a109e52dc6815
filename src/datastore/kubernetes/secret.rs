//! Secret records as Kubernetes Secrets in the agent's namespace (the client's default namespace:
//! in a pod, its service account's), as Calico's BGPPeer `password.secretKeyRef` reads them. The
//! record is the Secret's `data`; other Secret fields are left to Kubernetes.

use kube::api::{Api, ApiResource, DynamicObject};
use serde_json::{Value, json};

pub(super) fn resource() -> ApiResource {
    ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&())
}

pub(super) fn api(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), client.default_namespace(), &resource())
}

/// The record of a Secret: `{"data": …}`.
pub(super) fn value_of(object: &DynamicObject) -> Value {
    json!({ "data": object.data.get("data").cloned().unwrap_or_else(|| json!({})) })
}

/// The Secret holding `record`.
pub(super) fn document(name: &str, record: Value) -> DynamicObject {
    let data = record.get("data").cloned().unwrap_or_else(|| json!({}));
    DynamicObject::new(name, &resource()).data(json!({ "type": "Opaque", "data": data }))
}
