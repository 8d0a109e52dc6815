//! Reading the value a `secretKeyRef` points to (BGPPeer `password`, BGPConfiguration
//! `nodeMeshPassword`): a Secret record of the datastore — on Kubernetes a Secret in the agent's
//! namespace, on sqlite and etcd the datastore's own Secret records. Errors name the secret and
//! key, never the value.

use crate::datastore::resources::{Secret, SecretKeyRef};
use crate::datastore::{Datastore, DatastoreError};

/// Why a referenced secret value cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SecretError {
    #[error("secret {name:?} does not exist")]
    NoSecret { name: String },
    #[error("secret {name:?} has no key {key:?}")]
    NoKey { name: String, key: String },
    #[error("secret {name:?} cannot be read: {reason}")]
    Unreadable { name: String, reason: String },
}

impl SecretError {
    /// True when reading again later may succeed without anyone changing the secret.
    pub fn is_transient(&self) -> bool {
        matches!(self, SecretError::Unreadable { .. })
    }
}

/// The value `reference` points to; `Ok(None)` when it is missing and the reference is `optional`.
pub async fn read(ds: &Datastore, reference: &SecretKeyRef) -> Result<Option<Vec<u8>>, SecretError> {
    let name = reference.name.clone();
    let missing = |e: SecretError| if reference.optional { Ok(None) } else { Err(e) };
    match ds.get::<Secret>(&reference.name).await {
        Ok(stored) => match stored.spec.data.get(&reference.key) {
            Some(value) => Ok(Some(value.0.clone())),
            None => missing(SecretError::NoKey { name, key: reference.key.clone() }),
        },
        Err(DatastoreError::NotFound { .. }) => missing(SecretError::NoSecret { name }),
        Err(e) => Err(SecretError::Unreadable { name, reason: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::resources::SecretValue;
    use crate::datastore::sqlite::{SqliteBackend, SqliteOptions};

    fn reference(name: &str, key: &str, optional: bool) -> SecretKeyRef {
        SecretKeyRef { name: name.into(), key: key.into(), optional }
    }

    #[tokio::test]
    async fn a_value_is_read_and_a_missing_one_is_an_error_unless_optional() {
        let dir = tempfile::tempdir().unwrap();
        let ds = Datastore::new(SqliteBackend::open(dir.path().join("ds.db"), SqliteOptions::default()).await.unwrap());
        let secret = Secret { data: [("password".to_string(), SecretValue(b"s3cr3t".to_vec()))].into() };
        ds.create("bgp-secrets", &secret).await.unwrap();
        assert_eq!(read(&ds, &reference("bgp-secrets", "password", false)).await, Ok(Some(b"s3cr3t".to_vec())));
        let no_key = read(&ds, &reference("bgp-secrets", "other", false)).await.unwrap_err();
        assert_eq!(no_key.to_string(), r#"secret "bgp-secrets" has no key "other""#);
        let no_secret = read(&ds, &reference("gone", "password", false)).await.unwrap_err();
        assert_eq!(no_secret.to_string(), r#"secret "gone" does not exist"#);
        assert_eq!(read(&ds, &reference("gone", "password", true)).await, Ok(None));
        assert_eq!(read(&ds, &reference("bgp-secrets", "other", true)).await, Ok(None));
    }
}
