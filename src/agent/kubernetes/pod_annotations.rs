//! A Pod's annotations, read at CNI ADD for Calico's pod IPAM annotations (`agent::pod_ipam`):
//! one GET of the Pod the runtime named.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject};
use std::collections::BTreeMap;

/// Why the Pod's annotations could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PodReadError {
    /// The Pod does not exist (deleted while its sandbox was made).
    #[error("pod {namespace}/{name} does not exist")]
    NotFound { namespace: String, name: String },
    /// The API server did not answer, or refused: may pass.
    #[error("cannot read pod {namespace}/{name}: {source}")]
    Api { namespace: String, name: String, source: kube::Error },
}

/// The annotations of Pod `namespace/name`.
pub async fn pod_annotations(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, String>, PodReadError> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ApiResource::erase::<Pod>(&()));
    match api.get(name).await {
        Ok(pod) => Ok(pod.metadata.annotations.unwrap_or_default()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            Err(PodReadError::NotFound { namespace: namespace.to_string(), name: name.to_string() })
        }
        Err(source) => Err(PodReadError::Api { namespace: namespace.to_string(), name: name.to_string(), source }),
    }
}
