//! Typed datastore errors: each says what went wrong and with which record.

use super::Key;
use super::Revision;

pub type Result<T, E = DatastoreError> = std::result::Result<T, E>;

/// Why a datastore operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    /// The record does not exist.
    #[error("{key} not found")]
    NotFound { key: Key },
    /// The record changed since `expected` was read (compare-and-swap failed): re-read and retry.
    #[error("{key} was changed by someone else: the write expected revision {expected}")]
    Conflict { key: Key, expected: Revision },
    /// A create found the record already present.
    #[error("{key} already exists")]
    AlreadyExists { key: Key },
    /// The datastore could not be reached or did not answer; the operation may be retried. A
    /// write that failed this way may or may not have been applied: re-read before retrying.
    #[error("datastore unavailable: {cause}")]
    Unavailable { cause: Box<dyn std::error::Error + Send + Sync> },
    /// A record (read, or about to be written) does not decode or break the resource's rules.
    /// `key` is the backend's own name for the record (`IPPool/default`, an etcd key, …).
    #[error("invalid data at {key}: {reason}")]
    InvalidData { key: String, reason: String },
}

impl DatastoreError {
    /// An [`DatastoreError::Unavailable`] with `cause`.
    pub fn unavailable(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        DatastoreError::Unavailable { cause: cause.into() }
    }

    /// An [`DatastoreError::InvalidData`] about `key`.
    pub fn invalid(key: impl ToString, reason: impl Into<String>) -> Self {
        DatastoreError::InvalidData { key: key.to_string(), reason: reason.into() }
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DatastoreError::Unavailable { .. })
    }
}
