//! The untyped interface each backend implements: JSON documents under a [`Key`], each with the
//! [`Revision`] of its last write. Typing, validation and decoding live in [`super::Datastore`].

use super::{DatastoreError, Key, Kind, Result, Revision};
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

/// One compare-and-swap write of a [`Backend::transact`].
#[derive(Clone, Debug, PartialEq)]
pub enum RawWrite {
    /// A new record; fails with `AlreadyExists` if `key` is present.
    Create { key: Key, value: Vec<u8> },
    /// Replaces the record if it is still at `expected`.
    Update { key: Key, value: Vec<u8>, expected: Revision },
    /// Deletes the record if it is still at `expected`.
    Delete { key: Key, expected: Revision },
}

impl RawWrite {
    pub fn key(&self) -> &Key {
        match self {
            RawWrite::Create { key, .. } | RawWrite::Update { key, .. } | RawWrite::Delete { key, .. } => key,
        }
    }
}

/// The most writes one transaction may hold: etcd's default `--max-txn-ops`.
pub const MAX_TRANSACTION_WRITES: usize = 128;

/// Refuses a transaction no backend can apply: a key written twice, or more than
/// [`MAX_TRANSACTION_WRITES`] writes.
pub fn check_transaction(writes: &[RawWrite]) -> Result<()> {
    if writes.len() > MAX_TRANSACTION_WRITES {
        let first = writes.first().map(|w| w.key().to_string()).unwrap_or_default();
        return Err(DatastoreError::invalid(
            first,
            format!("a transaction holds {} writes, more than {MAX_TRANSACTION_WRITES}", writes.len()),
        ));
    }
    for (i, w) in writes.iter().enumerate() {
        if writes[..i].iter().any(|earlier| earlier.key() == w.key()) {
            return Err(DatastoreError::invalid(w.key(), "written twice in one transaction"));
        }
    }
    Ok(())
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
    /// The records of `kind` whose names start with `prefix` (the records one node names after
    /// itself), with the revision the listing is consistent at. Backends that can range over
    /// names override it; the default lists every record and keeps those.
    async fn list_prefix(&self, kind: Kind, prefix: &str) -> Result<RawList> {
        let mut listing = self.list(kind).await?;
        listing.objects.retain(|o| o.key.name.starts_with(prefix));
        Ok(listing)
    }
    /// The names of every record of `kind`, without their values: for callers that need only
    /// which records exist (a free-block search), so a listing of large records moves and
    /// decodes nothing it does not need. Backends that can read keys alone override it.
    async fn list_names(&self, kind: Kind) -> Result<Vec<String>> {
        Ok(self.list(kind).await?.objects.into_iter().map(|o| o.key.name).collect())
    }
    /// Stores a new record; `AlreadyExists` if present. Returns the new revision.
    async fn create(&self, key: &Key, value: Vec<u8>) -> Result<Revision>;
    /// Replaces the record if it is still at `expected`. Returns the new revision.
    async fn update(&self, key: &Key, value: Vec<u8>, expected: Revision) -> Result<Revision>;
    /// Deletes the record if it is still at `expected`.
    async fn delete(&self, key: &Key, expected: Revision) -> Result<()>;
    /// Applies `writes` (each a compare-and-swap, at most one per key) together and returns each
    /// write's new revision, in order. On failure the error is the first write whose condition
    /// does not hold (`Conflict`, `NotFound`, `AlreadyExists` naming its key), and — where
    /// [`Backend::atomic_transactions`] — nothing was applied. A backend without atomic
    /// transactions applies the writes in order and stops at the first failure (a crash may
    /// stop it anywhere), so callers order writes so that every prefix is a state they can
    /// repair.
    async fn transact(&self, writes: Vec<RawWrite>) -> Result<Vec<Revision>>;
    /// Whether [`Backend::transact`] is all-or-nothing, also across a crash.
    fn atomic_transactions(&self) -> bool;
    /// Whether the store this backend opened is still the one it writes to (the sqlite file not
    /// deleted or replaced); an `Unavailable` error saying what happened if not. Cheap: callers
    /// poll it.
    fn check(&self) -> Result<()> {
        Ok(())
    }
    /// Changes to records of `kind` after `from`, in revision order. Without `from` (or when the
    /// history after `from` is gone) the stream starts with a [`RawEvent::Resync`]. The watch
    /// survives connection loss by resuming, or resyncing when resuming is impossible.
    async fn watch(&self, kind: Kind, from: Option<Revision>) -> Result<RawWatch>;
}
