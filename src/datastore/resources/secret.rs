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

/// A secret record: named values, each base64 in JSON as a Kubernetes Secret's `data` holds them
/// (on the Kubernetes backend it *is* a Secret in the agent's namespace). No `Debug`, `Display`
/// or log line ever shows a value.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Secret {
    #[serde(default)]
    pub data: std::collections::BTreeMap<String, SecretValue>,
}

impl Secret {
    pub(super) fn check(&self) -> Result<(), String> {
        match self.data.keys().find(|k| k.is_empty()) {
            Some(_) => Err("data: a key must not be empty".to_string()),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret").field("keys", &self.data.keys().collect::<Vec<_>>()).finish()
    }
}

/// One secret value: raw bytes, base64 on the wire (Kubernetes' `[]byte`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretValue(pub Vec<u8>);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for SecretValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        k8s_openapi::ByteString(self.0.clone()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SecretValue, D::Error> {
        k8s_openapi::ByteString::deserialize(d).map(|b| SecretValue(b.0))
    }
}

impl JsonSchema for SecretValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SecretValue".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "byte"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_base64_on_the_wire_and_never_in_debug() {
        let secret: Secret = serde_json::from_str(r#"{"data": {"password": "czNjcjN0"}}"#).unwrap();
        assert_eq!(secret.data["password"].0, b"s3cr3t");
        assert_eq!(serde_json::to_string(&secret).unwrap(), r#"{"data":{"password":"czNjcjN0"}}"#);
        let shown = format!("{secret:?} {:?}", secret.data["password"]);
        assert!(!shown.contains("s3cr3t") && !shown.contains("czNjcjN0"), "{shown}");
        assert!(shown.contains("password"), "{shown}");
    }
}
