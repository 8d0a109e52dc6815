//! A reference to a secret value, as Calico's BGPPeer `password` and BGPConfiguration
//! `nodeMeshPassword` write it: `{secretKeyRef: {name, key}}`. The value itself lives in a
//! Kubernetes Secret (Kubernetes datastore) or the datastore's own secret records; it is never
//! stored in the referring resource, printed or logged.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a password is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretSource {
    pub secret_key_ref: SecretKeyRef,
}

/// One key of one secret (Kubernetes `SecretKeySelector`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyRef {
    /// The secret's name (in the agent's namespace on Kubernetes).
    pub name: String,
    /// The key within the secret.
    pub key: String,
    /// When true, a missing secret or key means no password instead of an error.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl SecretKeyRef {
    /// `field` is where the reference sits (`password`), for the message.
    pub fn check(&self, field: &str) -> Result<(), String> {
        if self.name.is_empty() {
            return Err(format!("{field}.secretKeyRef.name: must not be empty"));
        }
        if self.key.is_empty() {
            return Err(format!("{field}.secretKeyRef.key: must not be empty"));
        }
        Ok(())
    }
}
