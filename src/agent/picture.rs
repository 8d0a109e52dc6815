//! A picture of one kind of record, kept current from one watch and shared by every task of the
//! agent that computes from all of them (a `watch` channel, so a slow consumer reads the latest
//! picture and never a queue of changes).
//!
//! The picture is read from the datastore only when the watch starts and when the watch lost its
//! place — every backend's watch then sends a `Resync` of the whole state — never on a timer: at
//! 1 000 nodes a listing of the IPAM blocks is about 3 MB, so one listing per agent every 30 s
//! is about 100 MB/s for etcd to serve while nothing changes.

use crate::datastore::{Datastore, Resource, Stored, WatchEvent, WatchStream};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;

/// How long after a watch could not be opened, or ended, or a read failed, the next attempt
/// is made.
pub const RETRY: Duration = Duration::from_secs(5);

/// The timer of a follower that reads on events and retries, every [`RETRY`], only while a
/// watch is missing or a read failed. Its first tick is a period away; it is not polled while
/// all is well, so it delays rather than bursts the ticks it missed meanwhile (a first failure
/// after a long healthy run is one retry, not one per period since the start).
pub fn retry_timer() -> tokio::time::Interval {
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + RETRY, RETRY);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer
}

/// Opens `w` again if it is missing (it starts with its listing).
pub async fn reopen<R: Resource>(ds: &Datastore, w: &mut Option<WatchStream<R>>) {
    if w.is_none() {
        match ds.watch::<R>(None).await {
            Ok(stream) => *w = Some(stream),
            Err(e) => tracing::warn!(kind = %R::KIND, error = %e, "cannot watch; trying again later"),
        }
    }
}

/// The records by name, each at the revision last seen.
#[derive(Clone, Debug)]
pub struct Known<R> {
    records: BTreeMap<String, Stored<R>>,
}

impl<R> Default for Known<R> {
    fn default() -> Self {
        Known { records: BTreeMap::new() }
    }
}

impl<R> Known<R> {
    pub fn from_listing(items: Vec<Stored<R>>) -> Known<R> {
        Known { records: items.into_iter().map(|r| (r.name.clone(), r)).collect() }
    }

    /// Applies a watch event; one older than what is known (a listing read after it was
    /// queued) is skipped. Whether the picture changed.
    pub fn apply(&mut self, event: WatchEvent<R>) -> bool {
        let newer = |known: Option<&Stored<R>>, revision| known.is_none_or(|k| k.revision < revision);
        match event {
            WatchEvent::Added(r) | WatchEvent::Modified(r) => {
                let apply = newer(self.records.get(&r.name), r.revision);
                if apply {
                    self.records.insert(r.name.clone(), r);
                }
                apply
            }
            WatchEvent::Deleted { name, revision } => {
                let known = self.records.contains_key(&name);
                let apply = known && newer(self.records.get(&name), revision);
                if apply {
                    self.records.remove(&name);
                }
                apply
            }
            WatchEvent::Resync(listing) => {
                *self = Known::from_listing(listing.items);
                true
            }
            WatchEvent::Bookmark(_) => false,
        }
    }

    /// The records with their names and revisions, in name order.
    pub fn stored(&self) -> impl Iterator<Item = &Stored<R>> + Clone {
        self.records.values()
    }

    pub fn get(&self, name: &str) -> Option<&Stored<R>> {
        self.records.get(name)
    }

    pub fn specs(&self) -> impl Iterator<Item = &R> + Clone {
        self.records.values().map(|r| &r.spec)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Keeps `out` equal to the datastore's records of kind `R` until `stop` changes: `None` until
/// the watch's first listing. After a record that does not decode, the watch is opened anew a
/// [`RETRY`] later and its listing replaces the picture.
pub async fn follow<R: Resource>(ds: Datastore, out: watch::Sender<Option<Known<R>>>, mut stop: watch::Receiver<bool>) {
    let mut records: Option<WatchStream<R>> = None;
    // The first attempt at once; a watch that cannot be opened, or that ended, is tried again
    // one period after the last attempt.
    let mut retry = tokio::time::interval(RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            // Its first event is its listing.
            _ = retry.tick(), if records.is_none() => reopen(&ds, &mut records).await,
            ev = super::routes::next_event(&mut records) => match ev {
                None => records = None,
                Some(Ok(WatchEvent::Resync(listing))) => {
                    out.send_replace(Some(Known::from_listing(listing.items)));
                }
                Some(Ok(event)) => {
                    out.send_if_modified(|known| known.as_mut().is_some_and(|known| known.apply(event)));
                }
                // The store is unreachable: the watch goes on and retries on its own (with its
                // backoff), and its resync replaces the picture once it could list again.
                Some(Err(e)) if e.is_retryable() => {
                    tracing::debug!(kind = %R::KIND, error = %e, "the watch cannot read the store; it retries");
                }
                // A record that does not decode: the picture would keep its old version. A new
                // watch, one retry period later (so a record rewritten badly again and again is
                // not a listing each time), lists every record again, without it.
                Some(Err(e)) => {
                    tracing::warn!(kind = %R::KIND, error = %e, "a watch event does not decode; listing again");
                    records = None;
                    retry.reset();
                }
            }
        }
    }
}
