//! Typed watch events and the stream that decodes them from a backend's [`RawWatch`].

use super::backend::{RawEvent, RawWatch};
use super::reads::Reads;
use super::resources::Resource;
use super::store::{Listing, Stored, decode, decode_list};
use super::{Result, Revision};
use std::marker::PhantomData;
use std::sync::Arc;

/// One change to resources of type `R`.
#[derive(Debug)]
pub enum WatchEvent<R> {
    Added(Stored<R>),
    Modified(Stored<R>),
    Deleted {
        name: String,
        revision: Revision,
    },
    /// The whole state at `Listing::revision`, replacing what the consumer knew: sent first when a
    /// watch starts without a revision, and whenever the watch lost its place.
    Resync(Listing<R>),
    /// No change of this kind up to this revision.
    Bookmark(Revision),
}

/// A watch on one kind of resource. Dropping it ends the backend's watch.
pub struct WatchStream<R> {
    raw: RawWatch,
    /// Where its resyncs (each a listing) are counted.
    reads: Arc<Reads>,
    _kind: PhantomData<fn() -> R>,
}

impl<R: Resource> WatchStream<R> {
    pub(crate) fn new(raw: RawWatch, reads: Arc<Reads>) -> Self {
        WatchStream { raw, reads, _kind: PhantomData }
    }

    /// The next event; `None` only if the backend's watch task ended. A record that does not
    /// decode is an `Err(InvalidData)` item, and the stream goes on after it.
    pub async fn next(&mut self) -> Option<Result<WatchEvent<R>>> {
        let event = match self.raw.recv().await? {
            Ok(event) => event,
            Err(e) => return Some(Err(e)),
        };
        Some(match event {
            RawEvent::Added(raw) => decode(raw).map(WatchEvent::Added),
            RawEvent::Modified(raw) => decode(raw).map(WatchEvent::Modified),
            RawEvent::Deleted { key, revision } => {
                super::unsupported::forget(key.kind, &key.name);
                Ok(WatchEvent::Deleted { name: key.name, revision })
            }
            RawEvent::Resync(list) => {
                self.reads.note(R::KIND, list.objects.len());
                Ok(WatchEvent::Resync(decode_list(list)))
            }
            RawEvent::Bookmark(revision) => Ok(WatchEvent::Bookmark(revision)),
        })
    }
}
