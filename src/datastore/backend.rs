//! The untyped interface each backend implements: JSON documents under a [`Key`], each with the
//! [`Revision`] of its last write. Typing, validation and decoding live in [`super::Datastore`].

use super::{Key, Kind, Result, Revision};
use async_trait::async_trait;
use tokio::sync::mpsc;

/// How many watch events a backend buffers for a consumer before it stops reading its source. A
/// consumer slower than that makes the backend fall behind, which ends in a resync, never in
/// unbounded memory.
pub const WATCH_CHANNEL_CAPACITY: usize = 256;

/// One stored record. `value` is the resource's JSON as stored; it is decoded (and may turn out to
/// be corrupt) only in the typed layer, so that a bad record fails with its key.
#[derive(Clone, Debug, PartialEq)]
pub struct RawObject {
    pub key: Key,
    pub revision: Revision,
    pub value: Vec<u8>,
}

/// The records of one kind as of `revision`: a watch from `revision` sees every later change.
#[derive(Clone, Debug, PartialEq)]
pub struct RawList {
    pub objects: Vec<RawObject>,
    pub revision: Revision,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq)]
pub enum RawEvent {
    Added(RawObject),
    Modified(RawObject),
    Deleted {
        key: Key,
        revision: Revision,
    },
    /// The watch lost its place (it fell behind, or its history was compacted): this is the whole
    /// state as of the revision, replacing whatever the consumer had; events after it follow.
    Resync(RawList),
    /// Nothing of this kind changed up to this revision.
    Bookmark(Revision),
}

/// The receiving end of a watch; dropping it stops the backend's watch task.
pub type RawWatch = mpsc::Receiver<Result<RawEvent>>;

/// A datastore backend. Every write is compare-and-swap: `create` fails if the key exists,
/// `update` and `delete` fail with `Conflict` unless the record is still at `expected`.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The record at `key`, or `NotFound`.
    async fn get(&self, key: &Key) -> Result<RawObject>;
    /// Every record of `kind`, with the revision the listing is consistent at.
    async fn list(&self, kind: Kind) -> Result<RawList>;
    /// Stores a new record; `AlreadyExists` if present. Returns the new revision.
    async fn create(&self, key: &Key, value: Vec<u8>) -> Result<Revision>;
    /// Replaces the record if it is still at `expected`. Returns the new revision.
    async fn update(&self, key: &Key, value: Vec<u8>, expected: Revision) -> Result<Revision>;
    /// Deletes the record if it is still at `expected`.
    async fn delete(&self, key: &Key, expected: Revision) -> Result<()>;
    /// Changes to records of `kind` after `from`, in revision order. Without `from` (or when the
    /// history after `from` is gone) the stream starts with a [`RawEvent::Resync`]. The watch
    /// survives connection loss by resuming, or resyncing when resuming is impossible.
    async fn watch(&self, kind: Kind, from: Option<Revision>) -> Result<RawWatch>;
}
