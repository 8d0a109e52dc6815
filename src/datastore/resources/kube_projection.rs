//! Kubernetes' own objects kept as tortie records by projection (Service, EndpointSlice): a
//! record holds only the fields tortie reads, so the many fields Kubernetes and other components
//! own (ports, selectors, topology hints, managed fields …) are neither refused nor reported as
//! unsupported configuration; they are not tortie's (see `coverage::NOT_READ`).

use super::coverage::schema_of;
use super::{EndpointSlice, Service};
use crate::datastore::Kind;
use serde_json::{Map, Value, json};

/// The record of a Kubernetes object of a projected kind (`None` for the other kinds).
pub fn record_of(kind: Kind, object: &Value) -> Option<Value> {
    let metadata = |field: &str| object.pointer(&format!("/metadata/{field}")).cloned().unwrap_or(json!({}));
    let whole = match kind {
        Kind::Service => json!({
            "annotations": metadata("annotations"),
            "spec": object.get("spec").cloned().unwrap_or(json!({})),
            "status": object.get("status").cloned().unwrap_or(json!({})),
        }),
        Kind::EndpointSlice => json!({
            "labels": metadata("labels"),
            "endpoints": object.get("endpoints").cloned().unwrap_or(json!([])),
        }),
        _ => return None,
    };
    let schema = match kind {
        Kind::Service => schema_of::<Service>(),
        _ => schema_of::<EndpointSlice>(),
    };
    Some(keep_known(&whole, &schema))
}

/// The Kubernetes object's parts for a record of a projected kind: its metadata fields
/// (`annotations`, `labels`) and its top-level body fields.
pub fn object_parts(kind: Kind, record: &Value) -> (Map<String, Value>, Map<String, Value>) {
    let mut metadata = Map::new();
    let mut body = Map::new();
    for (field, value) in record.as_object().into_iter().flatten() {
        let in_metadata = matches!((kind, field.as_str()), (Kind::Service, "annotations") | (_, "labels"));
        if in_metadata { &mut metadata } else { &mut body }.insert(field.clone(), value.clone());
    }
    (metadata, body)
}

/// `value` with only the object fields `schema` names (nulls dropped), walking nested objects
/// and lists; a map with free keys (labels) is kept whole.
fn keep_known(value: &Value, schema: &Value) -> Value {
    let branches: Vec<&Value> =
        ["anyOf", "oneOf"].iter().filter_map(|k| schema.get(*k)?.as_array()).flatten().collect();
    if let Some(branch) = branches.iter().find(|b| b.get("properties").is_some() || b.get("items").is_some()) {
        return keep_known(value, branch);
    }
    match (value, schema.get("properties").and_then(Value::as_object), schema.get("items")) {
        (Value::Object(fields), Some(known), _) => Value::Object(
            fields
                .iter()
                .filter(|(k, v)| !v.is_null() && known.contains_key(*k))
                .map(|(k, v)| (k.clone(), keep_known(v, &known[k])))
                .collect(),
        ),
        (Value::Array(items), _, Some(item)) => Value::Array(items.iter().map(|v| keep_known(v, item)).collect()),
        _ => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubernetes_service_keeps_only_what_tortie_reads() {
        let object = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "prod", "annotations": {"a": "b"}, "uid": "x",
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "ports": [{"port": 80}],
                     "selector": {"app": "web"}, "externalTrafficPolicy": "Local", "ipFamilies": ["IPv4"],
                     "sessionAffinity": "None", "loadBalancerIP": null},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP", "ports": []}]},
                       "conditions": []}
        });
        let record = record_of(Kind::Service, &object).unwrap();
        assert_eq!(
            record,
            json!({"annotations": {"a": "b"},
                   "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "externalTrafficPolicy": "Local"},
                   "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}})
        );
        let service: Service = serde_json::from_value(record.clone()).unwrap();
        service.check().unwrap();
        let (metadata, body) = object_parts(Kind::Service, &record);
        assert_eq!(Value::Object(metadata), json!({"annotations": {"a": "b"}}));
        assert_eq!(body.keys().collect::<Vec<_>>(), ["spec", "status"]);
    }

    #[test]
    fn a_kubernetes_endpoint_slice_keeps_addresses_node_and_conditions() {
        let object = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": "web-x1", "labels": {"kubernetes.io/service-name": "web"}},
            "endpoints": [{"addresses": ["10.0.1.5"], "nodeName": "node2", "zone": "a",
                           "conditions": {"ready": true, "serving": true, "terminating": false},
                           "targetRef": {"kind": "Pod", "name": "web-1"}}],
            "ports": [{"port": 80}]
        });
        let record = record_of(Kind::EndpointSlice, &object).unwrap();
        let slice: EndpointSlice = serde_json::from_value(record).unwrap();
        slice.check().unwrap();
        assert_eq!(slice.service_name(), Some("web"));
        assert_eq!(slice.endpoints[0].node_name.as_deref(), Some("node2"));
        assert!(slice.endpoints[0].usable());
    }
}
