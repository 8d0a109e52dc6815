//! The stand-in's store: objects, the store-wide resourceVersion, the change history watches
//! resume from, and the broadcast that feeds live watches. One mutex guards it all, held only
//! for short synchronous sections (never across an await), like etcd's single apply loop.

use super::audit::ApiCall;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Changes kept for watches to resume from.
const HISTORY: usize = 10_000;
/// Changes a live watch may fall behind by before it is ended with 410 Gone.
const LIVE_BACKLOG: usize = 1024;

/// One change, as a watch event.
#[derive(Clone, Debug)]
pub(super) struct Change {
    pub revision: u64,
    pub collection: String,
    pub kind: &'static str,
    pub object: Value,
}

struct Store {
    revision: u64,
    objects: BTreeMap<(String, String), Value>,
    history: VecDeque<Change>,
    /// Watches from a resourceVersion below this get 410 Gone.
    oldest: u64,
}

pub(super) struct Shared {
    store: Mutex<Store>,
    calls: Mutex<Vec<ApiCall>>,
    live: broadcast::Sender<Change>,
    cut: watch::Sender<u64>,
    pub bookmark_interval: Duration,
}

/// Why a request failed: HTTP code, reason, message.
pub(super) type Failure = (u16, &'static str, String);

/// How a watch starts: the changes it missed, and a receiver for live ones.
pub(super) struct WatchStart {
    pub backlog: Vec<Change>,
    pub live: broadcast::Receiver<Change>,
    pub cut: watch::Receiver<u64>,
}

fn rv_of(object: &Value) -> Option<&str> {
    object.pointer("/metadata/resourceVersion").and_then(Value::as_str)
}

impl Shared {
    pub fn new(bookmark_interval: Duration) -> Shared {
        Shared {
            store: Mutex::new(Store { revision: 1, objects: BTreeMap::new(), history: VecDeque::new(), oldest: 1 }),
            calls: Mutex::new(Vec::new()),
            live: broadcast::channel(LIVE_BACKLOG).0,
            cut: watch::channel(0).0,
            bookmark_interval,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one change under the lock: bump the revision, stamp it on the object, record it.
    fn commit(&self, store: &mut Store, collection: &str, name: &str, kind: &'static str, mut object: Value) -> Value {
        store.revision += 1;
        object["metadata"]["resourceVersion"] = json!(store.revision.to_string());
        let key = (collection.to_string(), name.to_string());
        if kind == "DELETED" {
            store.objects.remove(&key);
        } else {
            store.objects.insert(key, object.clone());
        }
        let change =
            Change { revision: store.revision, collection: collection.to_string(), kind, object: object.clone() };
        store.history.push_back(change.clone());
        while store.history.len() > HISTORY {
            if let Some(dropped) = store.history.pop_front() {
                store.oldest = dropped.revision;
            }
        }
        // No live watch is not an error.
        let _ = self.live.send(change);
        object
    }

    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.lock().objects.get(&(collection.to_string(), name.to_string())).cloned()
    }

    pub fn list(&self, collection: &str) -> (Vec<Value>, u64) {
        let store = self.lock();
        let items = store.objects.iter().filter(|((c, _), _)| c == collection).map(|(_, o)| o.clone()).collect();
        (items, store.revision)
    }

    pub fn create(&self, collection: &str, name: &str, mut object: Value) -> Result<Value, Failure> {
        let mut store = self.lock();
        if store.objects.contains_key(&(collection.to_string(), name.to_string())) {
            return Err((409, "AlreadyExists", format!("{collection} \"{name}\" already exists")));
        }
        object["metadata"]["uid"] = json!(format!("uid-{}-{name}", store.revision + 1));
        Ok(self.commit(&mut store, collection, name, "ADDED", object))
    }

    pub fn replace(&self, collection: &str, name: &str, mut object: Value) -> Result<Value, Failure> {
        let mut store = self.lock();
        let Some(current) = store.objects.get(&(collection.to_string(), name.to_string())) else {
            return Err((404, "NotFound", format!("{collection} \"{name}\" not found")));
        };
        match rv_of(&object) {
            None => {
                return Err((422, "Invalid", "metadata.resourceVersion: must be specified for an update".into()));
            }
            Some(rv) if Some(rv) != rv_of(current) => {
                return Err((
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {collection} \"{name}\": the object has been modified; \
                         please apply your changes to the latest version and try again"
                    ),
                ));
            }
            Some(_) => {}
        }
        object["metadata"]["uid"] = current["metadata"]["uid"].clone();
        Ok(self.commit(&mut store, collection, name, "MODIFIED", object))
    }

    pub fn delete(&self, collection: &str, name: &str, precondition: Option<String>) -> Result<Value, Failure> {
        let mut store = self.lock();
        let Some(current) = store.objects.get(&(collection.to_string(), name.to_string())).cloned() else {
            return Err((404, "NotFound", format!("{collection} \"{name}\" not found")));
        };
        if let Some(rv) = precondition
            && Some(rv.as_str()) != rv_of(&current)
        {
            return Err((
                409,
                "Conflict",
                format!("Precondition failed: ResourceVersion in precondition: {rv}, in object: {:?}", rv_of(&current)),
            ));
        }
        Ok(self.commit(&mut store, collection, name, "DELETED", current))
    }

    /// Starts a watch after `from`; `Err` (410) if history no longer reaches back to it.
    pub fn watch(&self, collection: &str, from: u64) -> Result<WatchStart, Failure> {
        let store = self.lock();
        if from < store.oldest {
            return Err((410, "Expired", format!("too old resource version: {from} ({})", store.oldest)));
        }
        let backlog =
            store.history.iter().filter(|c| c.revision > from && c.collection == collection).cloned().collect();
        // Subscribing under the lock: no change can fall between the backlog and the live feed.
        Ok(WatchStart { backlog, live: self.live.subscribe(), cut: self.cut.subscribe() })
    }

    pub fn compact(&self) {
        let mut store = self.lock();
        store.history.clear();
        store.oldest = store.revision;
    }

    pub fn cut_watches(&self) {
        self.cut.send_modify(|generation| *generation += 1);
    }

    pub fn put_raw(&self, collection: &str, name: &str, object: Value) {
        let mut store = self.lock();
        let kind =
            if store.objects.contains_key(&(collection.to_string(), name.to_string())) { "MODIFIED" } else { "ADDED" };
        self.commit(&mut store, collection, name, kind, object);
    }

    pub fn modify_raw(&self, collection: &str, name: &str, change: impl FnOnce(&mut Value)) {
        let mut store = self.lock();
        if let Some(mut object) = store.objects.get(&(collection.to_string(), name.to_string())).cloned() {
            change(&mut object);
            self.commit(&mut store, collection, name, "MODIFIED", object);
        }
    }

    pub fn get_raw(&self, collection: &str, name: &str) -> Option<Value> {
        self.get(collection, name)
    }

    pub fn record(&self, call: ApiCall) {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push(call);
    }

    pub fn calls(&self) -> Vec<ApiCall> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn delete_raw(&self, collection: &str, name: &str) -> bool {
        let mut store = self.lock();
        match store.objects.get(&(collection.to_string(), name.to_string())).cloned() {
            Some(current) => {
                self.commit(&mut store, collection, name, "DELETED", current);
                true
            }
            None => false,
        }
    }

    /// Merges `status` into the object's status (see `routes::patch_status` for the rules).
    pub fn patch_status(
        &self,
        collection: &str,
        name: &str,
        status: &Value,
        strategic: bool,
    ) -> Result<Value, Failure> {
        let mut store = self.lock();
        let Some(mut object) = store.objects.get(&(collection.to_string(), name.to_string())).cloned() else {
            return Err((404, "NotFound", format!("{collection} \"{name}\" not found")));
        };
        if !object["status"].is_object() {
            object["status"] = json!({});
        }
        merge(&mut object["status"], status, strategic);
        Ok(self.commit(&mut store, collection, name, "MODIFIED", object))
    }
}

impl Shared {
    /// A merge patch of the whole object (metadata's name and namespace excepted): what
    /// `kubectl patch --type merge` and an event recorder's count update send.
    pub fn patch(&self, collection: &str, name: &str, patch: &Value, strategic: bool) -> Result<Value, Failure> {
        let mut store = self.lock();
        let Some(mut object) = store.objects.get(&(collection.to_string(), name.to_string())).cloned() else {
            return Err((404, "NotFound", format!("{collection} \"{name}\" not found")));
        };
        let (kept_name, kept_namespace) = (object["metadata"]["name"].clone(), object["metadata"]["namespace"].clone());
        merge(&mut object, patch, strategic);
        object["metadata"]["name"] = kept_name;
        if !kept_namespace.is_null() {
            object["metadata"]["namespace"] = kept_namespace;
        }
        Ok(self.commit(&mut store, collection, name, "MODIFIED", object))
    }
}

/// JSON merge patch (RFC 7386) of `patch` into `target`; with `strategic`, lists named
/// `conditions` merge their entries by `type` instead of being replaced.
fn merge(target: &mut Value, patch: &Value, strategic: bool) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (key, value) in fields {
        if value.is_null() {
            if let Some(map) = target.as_object_mut() {
                map.remove(key);
            }
            continue;
        }
        let slot = &mut target[key.as_str()];
        match (key.as_str(), value) {
            ("conditions", Value::Array(entries)) if strategic => {
                if !slot.is_array() {
                    *slot = json!([]);
                }
                let Some(list) = slot.as_array_mut() else { continue };
                for entry in entries {
                    match list.iter_mut().find(|c| c.get("type").is_some() && c.get("type") == entry.get("type")) {
                        Some(existing) => merge(existing, entry, strategic),
                        None => list.push(entry.clone()),
                    }
                }
            }
            (_, Value::Object(_)) => merge(slot, value, strategic),
            _ => *slot = value.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategic_merge_keeps_other_conditions_and_replaces_the_same_type() {
        let mut status = json!({"conditions": [{"type": "Ready", "status": "True"},
                                               {"type": "NetworkUnavailable", "status": "True", "reason": "NoRouteCreated"}],
                                "capacity": {"cpu": "2"}});
        let patch = json!({"conditions": [{"type": "NetworkUnavailable", "status": "False", "reason": "TortieIsUp"}]});
        merge(&mut status, &patch, true);
        assert_eq!(
            status,
            json!({"conditions": [{"type": "Ready", "status": "True"},
                                  {"type": "NetworkUnavailable", "status": "False", "reason": "TortieIsUp"}],
                   "capacity": {"cpu": "2"}})
        );
        merge(&mut status, &patch, false);
        assert_eq!(status["conditions"].as_array().map(Vec::len), Some(1), "a merge patch replaces lists");
    }
}
