//! Kubernetes' discovery.k8s.io/v1 EndpointSlice as a tortie record (named `namespace/name`; on
//! the kubernetes datastore the API server's own object). A projection like [`super::Service`]:
//! the Service it belongs to (label `kubernetes.io/service-name`), and per endpoint its
//! addresses, node and conditions; ports, hints and zones are the service proxy's.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The label naming the Service (in the slice's namespace) a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointSlice {
    /// The slice's `metadata.labels`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub conditions: EndpointConditions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

/// Kubernetes' endpoint conditions; an absent `ready` means true (unknown state is taken as
/// ready, as Kubernetes documents), an absent `terminating` false. `serving` is not kept: a
/// serving but terminating endpoint takes no new connections, and `ready` is already "serving
/// and not terminating".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointConditions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminating: Option<bool>,
}

impl Endpoint {
    /// Ready and not terminating: the endpoint takes new connections.
    pub fn usable(&self) -> bool {
        let c = &self.conditions;
        c.ready.unwrap_or(true) && !c.terminating.unwrap_or(false)
    }
}

impl EndpointSlice {
    pub(super) fn check(&self) -> Result<(), String> {
        for (i, e) in self.endpoints.iter().enumerate() {
            if e.addresses.is_empty() {
                return Err(format!("endpoints[{i}].addresses: must not be empty"));
            }
        }
        Ok(())
    }

    /// The name of the Service the slice belongs to (in its own namespace).
    pub fn service_name(&self) -> Option<&str> {
        self.labels.get(SERVICE_NAME_LABEL).map(String::as_str)
    }
}
