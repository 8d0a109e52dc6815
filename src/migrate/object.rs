//! tortie's resources as documents (`apiVersion: crd.tortie.io/v1`, `kind`, `metadata.name`,
//! `spec`), and the check of a spec against its resource type: decoded strictly, validated, and
//! the fields the type does not know listed rather than silently dropped.

use super::Document;
use crate::datastore::kubernetes::{GROUP, VERSION};
use crate::datastore::resources::kube_projection;
use crate::datastore::resources::{
    BgpConfiguration, BgpFilter, BgpPeer, BlockAffinity, EndpointSlice, GlobalNetworkPolicy, IpPool, IpReservation,
    IpamBlock, IpamConfig, IpamHandle, KubeNetworkPolicy, Lease, Namespace, NetworkPolicy, Node, NodeStatus, Secret,
    SecretValue, Service,
};
use crate::datastore::{Key, Kind, Resource};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// tortie's `apiVersion`.
pub fn api_version() -> String {
    format!("{GROUP}/{VERSION}")
}

/// One tortie resource: what `apply` writes and `get` prints.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub kind: Kind,
    pub name: String,
    pub spec: Value,
}

impl Object {
    pub fn key(&self) -> Key {
        Key::new(self.kind, self.name.clone())
    }

    /// The document form, as `apply -f` reads it (a namespaced one with `metadata.namespace`).
    pub fn to_document(&self) -> Value {
        let key = self.key();
        let metadata = match key.split_namespace() {
            (Some(namespace), name) => json!({"name": name, "namespace": namespace}),
            (None, name) => json!({"name": name}),
        };
        json!({"apiVersion": api_version(), "kind": self.kind.as_str(), "metadata": metadata, "spec": self.spec})
    }

    /// Reads a tortie document; the error names the document and the field.
    pub fn from_document(doc: &Document) -> Result<Object, String> {
        let at = &doc.position;
        let expected = api_version();
        if let Some(object) = Object::from_kubernetes_document(doc)? {
            return Ok(object);
        }
        match doc.text("apiVersion") {
            Some(v) if v == expected => {}
            other => {
                return Err(format!(
                    "{at}: apiVersion: {other:?} is not {expected:?} (Calico's resources: use `tortie migrate from-calico`)"
                ));
            }
        }
        let kind_text = doc.text("kind").ok_or_else(|| format!("{at}: kind: is required"))?;
        let kind =
            kind_named(kind_text).ok_or_else(|| format!("{at}: kind: {kind_text:?} is not a tortie resource"))?;
        let name = doc.name().ok_or_else(|| format!("{at} ({kind}): metadata.name: is required"))?;
        if let Some(problem) = Key::name_problem(name) {
            return Err(format!("{at} ({kind}): metadata.name: {problem}"));
        }
        let name = namespaced_name(doc, kind, name)?;
        if let Some(field) = doc
            .value
            .as_object()
            .and_then(|o| o.keys().find(|k| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "spec")))
        {
            return Err(format!("{at} ({kind}/{name}): {field}: unknown field"));
        }
        let spec = doc.value.get("spec").cloned().unwrap_or(json!({}));
        Ok(Object { kind, name, spec })
    }

    /// Reads Kubernetes' own documents tortie keeps: a `networking.k8s.io/v1` NetworkPolicy, a
    /// `v1` Namespace (its labels and Calico's pool annotations), a `v1` Secret (its `data` and
    /// `stringData`; the namespace is the agent's, whatever the document names), a `v1` Service
    /// and a `discovery.k8s.io/v1` EndpointSlice (the fields tortie reads: `kube_projection`).
    /// `None` for any other document.
    fn from_kubernetes_document(doc: &Document) -> Result<Option<Object>, String> {
        let at = &doc.position;
        let kind = match (doc.text("apiVersion"), doc.text("kind")) {
            (Some("networking.k8s.io/v1"), Some("NetworkPolicy")) => Kind::KubeNetworkPolicy,
            (Some("v1"), Some("Namespace")) => Kind::Namespace,
            (Some("v1"), Some("Secret")) => Kind::Secret,
            (Some("v1"), Some("Service")) => Kind::Service,
            (Some("discovery.k8s.io/v1"), Some("EndpointSlice")) => Kind::EndpointSlice,
            _ => return Ok(None),
        };
        let name = doc.name().ok_or_else(|| format!("{at} ({kind}): metadata.name: is required"))?;
        let name = namespaced_name(doc, kind, name)?;
        let spec = if kind == Kind::Namespace {
            let strings = |pointer: &str| -> BTreeMap<String, String> {
                doc.value.pointer(pointer).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
            };
            let record = Namespace::from_kubernetes(strings("/metadata/labels"), &strings("/metadata/annotations"));
            serde_json::to_value(record).map_err(|e| format!("{at} ({kind}): {e}"))?
        } else if kind == Kind::Secret {
            secret_spec(doc).map_err(|e| format!("{at} ({kind}/{name}): {e}"))?
        } else if let Some(record) = kube_projection::record_of(kind, &doc.value) {
            record
        } else {
            doc.value.get("spec").cloned().unwrap_or(json!({}))
        };
        Ok(Some(Object { kind, name, spec }))
    }

    /// [`check_spec`] for this object; an error names kind, name and field.
    pub fn check(&self) -> Result<Checked, String> {
        check_spec(self.kind, &self.spec).map_err(|e| format!("{}: {e}", self.key()))
    }
}

/// The record of a Kubernetes Secret document: `data` (base64) and `stringData` (text, winning
/// over `data` for a key in both, as the API server merges them).
fn secret_spec(doc: &Document) -> Result<Value, String> {
    let mut data: BTreeMap<String, SecretValue> = match doc.value.get("data") {
        Some(d) => serde_json::from_value(d.clone()).map_err(|e| format!("data: {e}"))?,
        None => BTreeMap::new(),
    };
    if let Some(text) = doc.value.get("stringData") {
        let text: BTreeMap<String, String> =
            serde_json::from_value(text.clone()).map_err(|e| format!("stringData: {e}"))?;
        data.extend(text.into_iter().map(|(k, v)| (k, SecretValue(v.into_bytes()))));
    }
    serde_json::to_value(Secret { data }).map_err(|e| e.to_string())
}

/// The record name of a document: `namespace/name` for a namespaced kind (namespace `default`
/// when not given), else the name.
fn namespaced_name(doc: &Document, kind: Kind, name: &str) -> Result<String, String> {
    let at = &doc.position;
    let full = if kind.namespaced() {
        format!("{}/{name}", doc.value.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default"))
    } else {
        name.to_string()
    };
    match Key::problem_of(kind, &full) {
        Some(problem) => Err(format!("{at} ({kind}): metadata: {problem}")),
        None => Ok(full),
    }
}

/// The tortie kind spelled `text` (its Calico spelling, any case; or its plural).
pub fn kind_named(text: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(text) || k.plural().eq_ignore_ascii_case(text))
}

/// A spec that decodes and validates as its resource type.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// The spec as tortie stores it (defaults filled in, fields in tortie's spelling).
    pub spec: Value,
    /// Paths (`spec.foo`, `spec.bgp.bar`) of input fields the type does not have.
    pub unknown_fields: Vec<String>,
}

/// Decodes `spec` as `kind`'s type, validates it and lists the fields the type ignored. The
/// error starts with the path of the offending field (`spec.blockSize: …`).
pub fn check_spec(kind: Kind, spec: &Value) -> Result<Checked, String> {
    match kind {
        Kind::IpPool => check_as::<IpPool>(spec),
        Kind::IpamBlock => check_as::<IpamBlock>(spec),
        Kind::BlockAffinity => check_as::<BlockAffinity>(spec),
        Kind::IpamHandle => check_as::<IpamHandle>(spec),
        Kind::IpamConfig => check_as::<IpamConfig>(spec),
        Kind::IpReservation => check_as::<IpReservation>(spec),
        Kind::Node => check_as::<Node>(spec),
        Kind::BgpPeer => check_as::<BgpPeer>(spec),
        Kind::BgpConfiguration => check_as::<BgpConfiguration>(spec),
        Kind::BgpFilter => check_as::<BgpFilter>(spec),
        Kind::Secret => check_as::<Secret>(spec),
        Kind::NetworkPolicy => check_as::<NetworkPolicy>(spec),
        Kind::GlobalNetworkPolicy => check_as::<GlobalNetworkPolicy>(spec),
        Kind::KubeNetworkPolicy => check_as::<KubeNetworkPolicy>(spec),
        Kind::Namespace => check_as::<Namespace>(spec),
        Kind::NodeStatus => check_as::<NodeStatus>(spec),
        // Their records are projections of the whole object: paths start at its root.
        Kind::Service => check_rooted::<Service>(spec, ""),
        Kind::EndpointSlice => check_rooted::<EndpointSlice>(spec, ""),
        Kind::Lease => check_as::<Lease>(spec),
    }
}

fn check_as<R: Resource>(spec: &Value) -> Result<Checked, String> {
    check_rooted::<R>(spec, "spec")
}

/// [`check_as`] for a record found at `root` in its document (`""`: the document itself).
fn check_rooted<R: Resource>(spec: &Value, root: &str) -> Result<Checked, String> {
    let under = |path: &str| if root.is_empty() { path.to_string() } else { format!("{root}.{path}") };
    let at_root = if root.is_empty() { "record" } else { root };
    let typed: R = serde_path_to_error::deserialize(spec.clone()).map_err(|e| {
        let path = e.path().to_string();
        if path == "." { format!("{at_root}: {}", e.inner()) } else { format!("{}: {}", under(&path), e.inner()) }
    })?;
    typed.validate().map_err(|reason| under(&reason))?;
    let mut unknown_fields = Vec::new();
    let _: R = serde_ignored::deserialize(spec.clone(), |path| {
        let path = field_path(&path);
        unknown_fields.push(if root.is_empty() {
            path.trim_start_matches("spec").trim_start_matches('.').to_string()
        } else {
            path
        });
    })
    .map_err(|e| format!("{at_root}: {e}"))?;
    let spec = serde_json::to_value(&typed).map_err(|e| format!("{at_root}: {e}"))?;
    Ok(Checked { spec, unknown_fields })
}

/// `spec.bgp.foo`, `spec.attributes[2].bar`: where an ignored field was.
fn field_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => "spec".to_string(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => format!("{}.{key}", field_path(parent)),
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::read_documents;

    fn object(text: &str) -> Result<Object, String> {
        Object::from_document(&read_documents(text).unwrap()[0])
    }

    #[test]
    fn kubernetes_policies_and_namespaces_are_read_with_their_namespace() {
        let obj = object("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: prod}\nspec: {podSelector: {}}\n").unwrap();
        assert_eq!((obj.kind, obj.name.as_str()), (Kind::KubeNetworkPolicy, "prod/deny"));
        assert_eq!(obj.to_document()["metadata"], json!({"name": "deny", "namespace": "prod"}));
        let obj = object("apiVersion: v1\nkind: Namespace\nmetadata: {name: prod, labels: {env: prod}}\n").unwrap();
        assert_eq!((obj.kind, obj.spec.clone()), (Kind::Namespace, json!({"labels": {"env": "prod"}})));
        let obj = object("apiVersion: crd.tortie.io/v1\nkind: NetworkPolicy\nmetadata: {name: x}\nspec: {ingress: [{action: Allow, protocol: TCP, destination: {ports: ['90:80']}}]}\n").unwrap();
        assert_eq!(obj.name, "default/x");
        assert_eq!(
            obj.check().unwrap_err(),
            "NetworkPolicy/default/x: spec.ingress[0].destination.ports[0]: \"90:80\" is a reversed port range: 90 > 80"
        );
    }

    #[test]
    fn a_kubernetes_secret_and_a_namespaces_pool_annotation_are_read() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: bgp, namespace: calico-system}\n\
                    data: {a: czNjcjN0, b: b2xk}\nstringData: {b: new}\n";
        let obj = object(text).unwrap();
        assert_eq!((obj.kind, obj.name.as_str()), (Kind::Secret, "bgp"));
        // stringData wins over data, as the API server merges them.
        assert_eq!(obj.spec, json!({"data": {"a": "czNjcjN0", "b": "bmV3"}}));
        let err = object("apiVersion: v1\nkind: Secret\nmetadata: {name: bgp}\ndata: {a: '!!'}\n").unwrap_err();
        assert!(err.starts_with("document 1 (Secret/bgp): data:"), "{err}");
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod, annotations: \
                    {cni.projectcalico.org/ipv4pools: '[\"blue\"]', kubectl.kubernetes.io/last-applied-configuration: '{}'}}\n";
        let obj = object(text).unwrap();
        assert_eq!(obj.spec, json!({"annotations": {"cni.projectcalico.org/ipv4pools": "[\"blue\"]"}}));
    }

    #[test]
    fn kubernetes_services_and_endpoint_slices_are_read_as_what_tortie_uses() {
        let obj = object("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: prod, annotations: {a: b}}\nspec: {type: LoadBalancer, clusterIP: 10.96.0.10, ports: [{port: 80}], selector: {app: web}, externalTrafficPolicy: Local}\n").unwrap();
        assert_eq!((obj.kind, obj.name.as_str()), (Kind::Service, "prod/web"));
        assert_eq!(
            obj.check().unwrap().spec,
            json!({"annotations": {"a": "b"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "externalTrafficPolicy": "Local"}})
        );
        let obj =
            object("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {externalTrafficPolicy: Sometimes}\n")
                .unwrap();
        assert_eq!(
            obj.check().unwrap_err(),
            "Service/default/web: spec.externalTrafficPolicy: \"Sometimes\" is not one of Cluster, Local"
        );
        let obj = object("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: IPv4\nmetadata: {name: web-1, namespace: prod, labels: {kubernetes.io/service-name: web}}\nendpoints: [{addresses: [10.244.1.5], nodeName: n2, conditions: {ready: true, serving: true}}]\nports: [{port: 80}]\n").unwrap();
        assert_eq!((obj.kind, obj.name.as_str()), (Kind::EndpointSlice, "prod/web-1"));
        assert!(obj.check().is_ok());
    }

    #[test]
    fn a_tortie_document_is_read_and_written_back() {
        let obj = object("apiVersion: crd.tortie.io/v1\nkind: ippool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, blockSize: 26}\n").unwrap();
        assert_eq!(obj.kind, Kind::IpPool);
        let checked = obj.check().unwrap();
        assert_eq!(checked.spec["ipipMode"], "Never");
        assert!(checked.unknown_fields.is_empty());
        let again = Object::from_document(&Document { position: "x".into(), value: obj.to_document() }).unwrap();
        assert_eq!(again, obj);
    }

    #[test]
    fn errors_name_document_kind_name_field_and_value() {
        let err = object("apiVersion: projectcalico.org/v3\nkind: IPPool\n").unwrap_err();
        assert!(err.starts_with("document 1: apiVersion: Some(\"projectcalico.org/v3\")"), "{err}");
        let err = object("apiVersion: crd.tortie.io/v1\nkind: Pod\n").unwrap_err();
        assert!(err.contains("kind: \"Pod\" is not a tortie resource"), "{err}");
        let bad = object("apiVersion: crd.tortie.io/v1\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, blockSize: 40}\n").unwrap();
        let err = bad.check().unwrap_err();
        assert!(err.starts_with("IPPool/p: spec.blockSize: 40 is outside"), "{err}");
        let bad = object("apiVersion: crd.tortie.io/v1\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, blockSize: x}\n").unwrap();
        assert!(bad.check().unwrap_err().starts_with("IPPool/p: spec.blockSize: invalid type: string \"x\""));
    }

    #[test]
    fn fields_the_type_does_not_have_are_listed_with_their_path() {
        let spec = json!({"bgp": {"asNumber": 65001, "colour": "red"}, "size": 3});
        let checked = check_spec(Kind::Node, &spec).unwrap();
        assert_eq!(checked.unknown_fields, vec!["spec.bgp.colour", "spec.size"]);
        let block = json!({"cidr": "10.0.0.0/31", "allocations": [0, null], "unallocated": [1],
            "attributes": [{"handle_id": "h", "releasedAt": "2026-01-01T00:00:00Z", "colour": "red"}]});
        let checked = check_spec(Kind::IpamBlock, &block).unwrap();
        assert_eq!(checked.unknown_fields, vec!["spec.attributes[0].colour"]);
    }
}
