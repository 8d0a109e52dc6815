//! A Node's fields as annotations on the Kubernetes Node (as Calico does with
//! `projectcalico.org/IPv4Address` …): tortie never creates or deletes Kubernetes Nodes (the
//! kubelet does); "create" adds the annotations, "delete" removes them. The Kubernetes Node's
//! resourceVersion guards every change, so a kubelet status update in between is a `Conflict`.
//!
//! The Node's `labels` are the Kubernetes Node's own labels. An update sets them as given (the
//! writer read them, and the resourceVersion guard proves nobody changed them since); a
//! registration adds the given ones to those the Node has, so the kubelet's and the operator's
//! labels survive the agent registering.

use super::{ANNOTATION_PREFIX, api_error, revision_of};
use crate::datastore::backend::{RawList, RawObject};
use crate::datastore::{DatastoreError, Key, Kind, Result, Revision};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Marks a Kubernetes Node as registered with tortie, whatever else is set.
const REGISTERED: &str = "tortie.io/registered";

/// (annotation suffix, field of the Node document as `section/field` or `field`, whether the
/// value is a number). Calico's annotation names, under our prefix.
const FIELDS: [(&str, &str, bool); 9] = [
    ("IPv4Address", "bgp/ipv4Address", false),
    ("IPv6Address", "bgp/ipv6Address", false),
    ("ASNumber", "bgp/asNumber", true),
    ("RouteReflectorClusterID", "bgp/routeReflectorClusterID", false),
    ("IPv4IPIPTunnelAddr", "bgp/ipv4IPIPTunnelAddr", false),
    ("IPv4VXLANTunnelAddr", "ipv4VXLANTunnelAddr", false),
    ("VXLANTunnelMACAddr", "vxlanTunnelMACAddr", false),
    ("IPv6VXLANTunnelAddr", "ipv6VXLANTunnelAddr", false),
    ("VXLANTunnelMACAddrV6", "vxlanTunnelMACAddrV6", false),
];

fn node_resource() -> ApiResource {
    ApiResource::erase::<k8s_openapi::api::core::v1::Node>(&())
}

pub(super) fn api(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &node_resource())
}

/// The Node document held in a Kubernetes Node's annotations, if it is registered. A malformed
/// annotation is passed through as a string, so decoding fails naming the field.
pub(super) fn value_of(annotations: &BTreeMap<String, String>) -> Option<Vec<u8>> {
    annotations.get(REGISTERED)?;
    let mut document = Map::new();
    for (suffix, field, numeric) in FIELDS {
        if let Some(text) = annotations.get(&format!("{ANNOTATION_PREFIX}{suffix}")) {
            let value = match text.parse::<u64>() {
                Ok(n) if numeric => json!(n),
                _ => json!(text),
            };
            let (section, name) = match field.split_once('/') {
                Some((section, name)) => (Some(section), name),
                None => (None, field),
            };
            let map = match section {
                Some(section) => match document.entry(section).or_insert_with(|| json!({})) {
                    Value::Object(map) => map,
                    _ => continue,
                },
                None => &mut document,
            };
            map.insert(name.to_string(), value);
        }
    }
    serde_json::to_vec(&Value::Object(document)).ok()
}

/// Replaces the tortie annotations with those for `value` (`None` removes them).
fn set_annotations(key: &Key, object: &mut DynamicObject, value: Option<&[u8]>) -> Result<()> {
    let annotations = object.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.retain(|k, _| !k.starts_with(ANNOTATION_PREFIX));
    let Some(value) = value else { return Ok(()) };
    let document: Value = serde_json::from_slice(value).map_err(|e| DatastoreError::invalid(key, e.to_string()))?;
    annotations.insert(REGISTERED.to_string(), "true".to_string());
    for (suffix, field, _) in FIELDS {
        match document.pointer(&format!("/{field}")) {
            Some(Value::String(s)) => annotations.insert(format!("{ANNOTATION_PREFIX}{suffix}"), s.clone()),
            Some(Value::Null) | None => None,
            Some(other) => annotations.insert(format!("{ANNOTATION_PREFIX}{suffix}"), other.to_string()),
        };
    }
    Ok(())
}

/// How a write treats the labels already on the Kubernetes Node.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Labels {
    /// Registration: the given labels are added to the Node's.
    Add,
    /// Update: the Node's labels become the given ones.
    Replace,
}

/// Sets the Kubernetes Node's labels from the Node document `value`.
fn set_labels(key: &Key, object: &mut DynamicObject, value: &[u8], how: Labels) -> Result<()> {
    let document: Value = serde_json::from_slice(value).map_err(|e| DatastoreError::invalid(key, e.to_string()))?;
    let given: BTreeMap<String, String> = match document.get("labels") {
        Some(labels) => {
            serde_json::from_value(labels.clone()).map_err(|e| DatastoreError::invalid(key, format!("labels: {e}")))?
        }
        None => BTreeMap::new(),
    };
    let labels = object.metadata.labels.get_or_insert_with(BTreeMap::new);
    if how == Labels::Replace {
        labels.clear();
    }
    labels.extend(given);
    Ok(())
}

/// The Node document of a registered Kubernetes Node: its annotations and its labels.
fn registered(object: &DynamicObject) -> Option<Vec<u8>> {
    let value = value_of(object.metadata.annotations.as_ref()?)?;
    let labels = object.metadata.labels.as_ref().filter(|l| !l.is_empty());
    let Some(labels) = labels else { return Some(value) };
    let mut document: Map<String, Value> = serde_json::from_slice(&value).ok()?;
    document.insert("labels".to_string(), json!(labels));
    serde_json::to_vec(&Value::Object(document)).ok()
}

pub(super) fn object_of(object: &DynamicObject) -> Result<Option<RawObject>> {
    let Some(value) = registered(object) else { return Ok(None) };
    let key = Key::new(Kind::Node, object.metadata.name.clone().unwrap_or_default());
    let revision = revision_of(&key, object.metadata.resource_version.as_deref())?;
    Ok(Some(RawObject { key, revision, value }))
}

async fn fetch(client: &kube::Client, key: &Key) -> Result<DynamicObject> {
    api(client).get(&key.name).await.map_err(|e| api_error(key, Revision(0), e))
}

async fn replace(client: &kube::Client, key: &Key, object: &DynamicObject, expected: Revision) -> Result<Revision> {
    let replaced = api(client)
        .replace(&key.name, &PostParams::default(), object)
        .await
        .map_err(|e| api_error(key, expected, e))?;
    revision_of(key, replaced.metadata.resource_version.as_deref())
}

pub(super) async fn get(client: &kube::Client, key: &Key) -> Result<RawObject> {
    object_of(&fetch(client, key).await?)?.ok_or_else(|| DatastoreError::NotFound { key: key.clone() })
}

pub(super) async fn list(client: &kube::Client) -> Result<RawList> {
    let key = Key::new(Kind::Node, "");
    let list = api(client).list(&ListParams::default()).await.map_err(|e| api_error(&key, Revision(0), e))?;
    let revision = revision_of(&key, list.metadata.resource_version.as_deref())?;
    let mut objects = Vec::new();
    for node in &list.items {
        objects.extend(object_of(node)?);
    }
    Ok(RawList { objects, revision })
}

/// Registers the node: `NotFound` without a Kubernetes Node, `AlreadyExists` if registered.
pub(super) async fn create(client: &kube::Client, key: &Key, value: &[u8]) -> Result<Revision> {
    // The kubelet updates its Node often; a conflict here is not about our fields, so retry.
    let mut last = None;
    for _ in 0..5 {
        let mut object = fetch(client, key).await?;
        if registered(&object).is_some() {
            return Err(DatastoreError::AlreadyExists { key: key.clone() });
        }
        let current = revision_of(key, object.metadata.resource_version.as_deref())?;
        set_annotations(key, &mut object, Some(value))?;
        set_labels(key, &mut object, value, Labels::Add)?;
        match replace(client, key, &object, current).await {
            Err(e @ DatastoreError::Conflict { .. }) => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| DatastoreError::unavailable("node registration kept conflicting")))
}

async fn guarded(client: &kube::Client, key: &Key, value: Option<&[u8]>, expected: Revision) -> Result<Revision> {
    let mut object = fetch(client, key).await?;
    if registered(&object).is_none() {
        return Err(DatastoreError::NotFound { key: key.clone() });
    }
    if revision_of(key, object.metadata.resource_version.as_deref())? != expected {
        return Err(DatastoreError::Conflict { key: key.clone(), expected });
    }
    set_annotations(key, &mut object, value)?;
    if let Some(value) = value {
        set_labels(key, &mut object, value, Labels::Replace)?;
    }
    replace(client, key, &object, expected).await
}

pub(super) async fn update(client: &kube::Client, key: &Key, value: &[u8], expected: Revision) -> Result<Revision> {
    guarded(client, key, Some(value), expected).await
}

pub(super) async fn delete(client: &kube::Client, key: &Key, expected: Revision) -> Result<()> {
    guarded(client, key, None, expected).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_field_survives_the_annotations() {
        let key = Key::new(Kind::Node, "n1");
        let document = json!({
            "bgp": {"ipv4Address": "10.0.0.5/24", "asNumber": 64512, "ipv4IPIPTunnelAddr": "192.168.0.1"},
            "ipv4VXLANTunnelAddr": "192.168.0.7", "vxlanTunnelMACAddr": "66:0a:bb:00:ee:ff",
            "ipv6VXLANTunnelAddr": "fd00::7", "vxlanTunnelMACAddrV6": "66:0a:bb:00:ee:01",
        });
        let mut object = DynamicObject::new("n1", &node_resource());
        set_annotations(&key, &mut object, Some(&serde_json::to_vec(&document).unwrap())).unwrap();
        let annotations = object.metadata.annotations.clone().unwrap();
        assert_eq!(annotations[&format!("{ANNOTATION_PREFIX}VXLANTunnelMACAddr")], "66:0a:bb:00:ee:ff");
        let back: Value = serde_json::from_slice(&value_of(&annotations).unwrap()).unwrap();
        assert_eq!(back, document);
    }

    #[test]
    fn labels_are_the_kubernetes_nodes_and_registration_keeps_the_ones_it_did_not_set() {
        let key = Key::new(Kind::Node, "n1");
        let mut object = DynamicObject::new("n1", &node_resource());
        let kubelet = BTreeMap::from([("kubernetes.io/hostname".to_string(), "n1".to_string())]);
        object.metadata.labels = Some(kubelet);
        let registration = serde_json::to_vec(&json!({"bgp": {"asNumber": 64512}, "labels": {"rr": "true"}})).unwrap();
        set_annotations(&key, &mut object, Some(&registration)).unwrap();
        set_labels(&key, &mut object, &registration, Labels::Add).unwrap();
        let read: Value = serde_json::from_slice(&registered(&object).unwrap()).unwrap();
        assert_eq!(read["labels"], json!({"kubernetes.io/hostname": "n1", "rr": "true"}));
        // An update carries the labels it read; one it dropped is removed.
        let update = serde_json::to_vec(&json!({"bgp": {"asNumber": 64512}, "labels": {"rr": "true"}})).unwrap();
        set_labels(&key, &mut object, &update, Labels::Replace).unwrap();
        let read: Value = serde_json::from_slice(&registered(&object).unwrap()).unwrap();
        assert_eq!(read["labels"], json!({"rr": "true"}));
        // Unregistering leaves the labels alone.
        set_annotations(&key, &mut object, None).unwrap();
        assert_eq!(object.metadata.labels.as_ref().map(BTreeMap::len), Some(1));
        assert!(registered(&object).is_none());
    }
}
