//! An etcd watch task: streams one kind's key range from its place, resumes there after the
//! stream or etcd itself goes away, and resyncs when etcd has compacted the place away.

use crate::datastore::backend::{RawEvent, RawList, RawObject, RawWatch, WATCH_CHANNEL_CAPACITY};
use crate::datastore::{DatastoreError, Key, Kind, Result, Revision};
use etcd_client::{EventType, GetOptions, KeyValue, KvClient, WatchClient, WatchOptions};
use std::time::Duration;
use tokio::sync::mpsc;

/// The record in `kv`, a key under `dir`.
pub(super) fn object_of(dir: &str, kind: Kind, kv: &KeyValue) -> Result<RawObject> {
    let key = key_of(dir, kind, kv.key())?;
    Ok(RawObject { key, revision: Revision(kv.mod_revision().max(0) as u64), value: kv.value().to_vec() })
}

pub(super) fn key_of(dir: &str, kind: Kind, raw: &[u8]) -> Result<Key> {
    let text = String::from_utf8_lossy(raw);
    match text.strip_prefix(dir) {
        Some(name) if std::str::from_utf8(raw).is_ok() => Ok(Key::new(kind, name)),
        _ => Err(DatastoreError::invalid(text, format!("not a {kind} key (expected a key under {dir})"))),
    }
}

/// The clients a watch task reads its listings and its watch stream with.
type Clients = (KvClient, WatchClient);

pub(super) fn spawn(clients: Clients, dir: String, kind: Kind, from: Option<Revision>) -> RawWatch {
    let (tx, rx) = mpsc::channel(WATCH_CHANNEL_CAPACITY);
    tokio::spawn(run(clients, dir, kind, from, tx));
    rx
}

type Events = mpsc::Sender<Result<RawEvent>>;

/// Waits before the next attempt, unless the consumer went away (then `false`).
async fn pause(tx: &Events, delay: Duration) -> bool {
    tokio::select! {
        _ = tx.closed() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

async fn list(client: &mut KvClient, dir: &str, kind: Kind) -> Result<RawList> {
    let response = client.get(dir, Some(GetOptions::new().with_prefix())).await.map_err(DatastoreError::unavailable)?;
    let revision = response.header().map(|h| h.revision()).unwrap_or_default().max(0) as u64;
    let objects = response.kvs().iter().map(|kv| object_of(dir, kind, kv)).collect::<Result<Vec<_>>>()?;
    Ok(RawList { objects, revision: Revision(revision) })
}

async fn run((mut kv, mut watches): Clients, dir: String, kind: Kind, from: Option<Revision>, tx: Events) {
    // The last revision delivered; `None` means the next step is a resync.
    let mut place = from.map(|r| r.0);
    let mut delay = Duration::from_millis(50);
    loop {
        let Some(after) = place else {
            match list(&mut kv, &dir, kind).await {
                Ok(listing) => {
                    place = Some(listing.revision.0);
                    if tx.send(Ok(RawEvent::Resync(listing))).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let retryable = e.is_retryable();
                    if tx.send(Err(e)).await.is_err() || (retryable && !pause(&tx, delay).await) {
                        return;
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
            continue;
        };
        let options = WatchOptions::new().with_prefix().with_start_revision(after as i64 + 1).with_progress_notify();
        let mut stream = match watches.watch(dir.as_bytes(), Some(options)).await {
            Ok(stream) => stream,
            Err(_) => {
                // etcd is down or restarting; the client reconnects by itself.
                if !pause(&tx, delay).await {
                    return;
                }
                delay = (delay * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        loop {
            let message = tokio::select! {
                _ = tx.closed() => return,
                message = stream.message() => message,
            };
            let Ok(Some(response)) = message else { break };
            delay = Duration::from_millis(50);
            if response.compact_revision() > 0 || response.canceled() {
                place = None;
                break;
            }
            let header = response.header().map(|h| h.revision()).unwrap_or_default().max(0) as u64;
            if response.events().is_empty() {
                if !response.created() && header > after && place.is_some_and(|p| header > p) {
                    place = Some(header);
                    if tx.send(Ok(RawEvent::Bookmark(Revision(header)))).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let revision = kv.mod_revision().max(0) as u64;
                place = Some(revision);
                let raw = match event.event_type() {
                    EventType::Delete => {
                        key_of(&dir, kind, kv.key()).map(|key| RawEvent::Deleted { key, revision: Revision(revision) })
                    }
                    EventType::Put if kv.create_revision() == kv.mod_revision() => {
                        object_of(&dir, kind, kv).map(RawEvent::Added)
                    }
                    EventType::Put => object_of(&dir, kind, kv).map(RawEvent::Modified),
                };
                if tx.send(raw).await.is_err() {
                    return;
                }
            }
        }
        if place.is_some() && !pause(&tx, delay).await {
            return;
        }
    }
}
