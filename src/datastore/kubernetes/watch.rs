//! A Kubernetes watch task: list, then watch from the list's resourceVersion; resume from the
//! last resourceVersion seen when the stream ends, and relist (a resync) on 410 Gone. This is the
//! loop of kube's `watcher`, written out because that one merges added and modified events and
//! always starts with a list, where tortie's watches start from a revision.

use super::{key_of, node, object_of, revision_of};
use crate::datastore::backend::{RawEvent, RawList, RawObject, RawWatch, WATCH_CHANNEL_CAPACITY};
use crate::datastore::{DatastoreError, Key, Kind, Result, Revision};
use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams, WatchEvent, WatchParams};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;

type Events = mpsc::Sender<Result<RawEvent>>;

pub(super) fn spawn(api: Api<DynamicObject>, kind: Kind, from: Option<Revision>) -> RawWatch {
    let (tx, rx) = mpsc::channel(WATCH_CHANNEL_CAPACITY);
    tokio::spawn(run(api, kind, from, tx));
    rx
}

/// Turns Kubernetes objects into records: custom resources one to one; Kubernetes Nodes into
/// tortie Nodes, remembering which are registered to tell additions from changes and removals.
struct Projection {
    kind: Kind,
    nodes: HashMap<String, Vec<u8>>,
}

impl Projection {
    fn record(&self, object: &DynamicObject) -> Result<Option<RawObject>> {
        if self.kind == Kind::Node { node::object_of(object) } else { object_of(self.kind, object).map(Some) }
    }

    fn listed(&mut self, objects: &[DynamicObject], revision: Revision) -> Result<RawList> {
        let mut records = Vec::new();
        for object in objects {
            records.extend(self.record(object)?);
        }
        self.nodes = records.iter().map(|r| (r.key.name.clone(), r.value.clone())).collect();
        Ok(RawList { objects: records, revision })
    }

    /// The event for a change, if it changes a record (a Node's status heartbeat does not).
    fn changed(&mut self, object: &DynamicObject, deleted: bool, added: bool) -> Result<Option<RawEvent>> {
        let key = key_of(self.kind, object);
        let name = key.name.clone();
        let revision = revision_of(&key, object.metadata.resource_version.as_deref())?;
        if self.kind != Kind::Node {
            return Ok(Some(match (deleted, added) {
                (true, _) => RawEvent::Deleted { key, revision },
                (false, true) => RawEvent::Added(object_of(self.kind, object)?),
                (false, false) => RawEvent::Modified(object_of(self.kind, object)?),
            }));
        }
        let now = if deleted { None } else { node::object_of(object)? };
        let before = self.nodes.remove(&name);
        Ok(match (before, now) {
            (None, None) => None,
            (Some(_), None) => Some(RawEvent::Deleted { key, revision }),
            (None, Some(record)) => {
                self.nodes.insert(name, record.value.clone());
                Some(RawEvent::Added(record))
            }
            (Some(old), Some(record)) => {
                self.nodes.insert(name, record.value.clone());
                (old != record.value).then_some(RawEvent::Modified(record))
            }
        })
    }
}

async fn pause(tx: &Events, delay: Duration) -> bool {
    tokio::select! {
        _ = tx.closed() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

async fn run(api: Api<DynamicObject>, kind: Kind, from: Option<Revision>, tx: Events) {
    let mut projection = Projection { kind, nodes: HashMap::new() };
    // The last resourceVersion delivered; `None`: relist next.
    let mut place = from;
    let mut delay = Duration::from_millis(50);
    loop {
        let Some(after) = place else {
            let key = Key::new(kind, "");
            let listed = match api.list(&ListParams::default()).await {
                Ok(list) => revision_of(&key, list.metadata.resource_version.as_deref())
                    .and_then(|revision| projection.listed(&list.items, revision)),
                Err(e) => Err(DatastoreError::unavailable(e)),
            };
            match listed {
                Ok(list) => {
                    place = Some(list.revision);
                    delay = Duration::from_millis(50);
                    if tx.send(Ok(RawEvent::Resync(list))).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    if tx.send(Err(e)).await.is_err() || !pause(&tx, delay).await {
                        return;
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
            continue;
        };
        // The server ends a watch after its timeout; then it is resumed from `place`.
        let params = WatchParams::default().timeout(290);
        let stream = match api.watch(&params, &after.to_string()).await {
            Ok(stream) => stream,
            Err(_) => {
                if !pause(&tx, delay).await {
                    return;
                }
                delay = (delay * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let mut stream = std::pin::pin!(stream);
        loop {
            let item = tokio::select! {
                _ = tx.closed() => return,
                item = stream.next() => item,
            };
            let Some(Ok(event)) = item else { break };
            delay = Duration::from_millis(50);
            let (object, deleted, added) = match &event {
                WatchEvent::Added(o) => (o, false, true),
                WatchEvent::Modified(o) => (o, false, false),
                WatchEvent::Deleted(o) => (o, true, false),
                WatchEvent::Bookmark(b) => {
                    let revision = revision_of(&Key::new(kind, ""), Some(&b.metadata.resource_version));
                    if let Ok(revision) = revision {
                        place = Some(revision);
                    }
                    if tx.send(revision.map(RawEvent::Bookmark)).await.is_err() {
                        return;
                    }
                    continue;
                }
                WatchEvent::Error(status) => {
                    if status.code == 410 {
                        // Too old: the history after `place` is gone.
                        place = None;
                    }
                    break;
                }
            };
            let revision = revision_of(&Key::new(kind, ""), object.metadata.resource_version.as_deref());
            if let Ok(revision) = revision {
                place = Some(revision);
            }
            match projection.changed(object, deleted, added) {
                Ok(None) => {}
                Ok(Some(raw)) => {
                    if tx.send(Ok(raw)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                }
            }
        }
        if place.is_some() && !pause(&tx, delay).await {
            return;
        }
    }
}
