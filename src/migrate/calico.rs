//! Calico's resources → tortie's. Reads `crd.projectcalico.org/v1` objects (kubectl exports of
//! the Kubernetes datastore), `projectcalico.org/v3` objects (calicoctl exports), calicoctl's old
//! `v1` pools, and Kubernetes Secrets. Each object's spec goes through the renames and reshapes
//! Calico's history needs, then through [`check_spec`]: fields tortie's type does not have are
//! reported, one line each, and never dropped silently. Kinds tortie does not have are reported
//! as a whole.

use super::asn::parse_as_number;
use super::object::kind_named;
use super::{Document, Object, check_spec};
use crate::datastore::Kind;
use crate::datastore::resources::cidr_name;
use ipnetwork::IpNetwork;
use serde_json::{Map, Value, json};

/// The Kubernetes datastore's custom resources.
pub const CRD_API_VERSION: &str = "crd.projectcalico.org/v1";
/// calicoctl's (and the aggregated API server's) resources.
pub const V3_API_VERSION: &str = "projectcalico.org/v3";
/// Where Calico's Kubernetes datastore keeps a resource's v3 metadata on the v1 object.
const METADATA_ANNOTATION: &str = "projectcalico.org/metadata";
/// Metadata a copy must not carry over: it belongs to the old object's store.
const STORE_METADATA: [&str; 8] =
    ["name", "uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink", "namespace"];
/// Annotations with no meaning outside the old store (`kube-labels` mirrors the Kubernetes
/// Node's labels, which the Node's own labels carry).
const STORE_ANNOTATIONS: [&str; 3] =
    [METADATA_ANNOTATION, "projectcalico.org/kube-labels", "kubectl.kubernetes.io/last-applied-configuration"];
/// The namespaces Calico's Secrets (BGP passwords) live in.
const CALICO_NAMESPACES: [&str; 2] = ["calico-system", "kube-system"];

/// The converted objects and what the user must know: every field changed or not carried.
#[derive(Debug, Default)]
pub struct Migration {
    pub objects: Vec<Object>,
    pub report: Vec<String>,
}

/// Converts every document; all errors at once (each naming document, object and field).
pub fn convert(documents: &[Document]) -> Result<Migration, Vec<String>> {
    let mut migration = Migration::default();
    let mut errors = Vec::new();
    for doc in documents {
        if let Err(e) = convert_document(doc, &mut migration) {
            errors.push(e);
        }
    }
    let (objects, repeats) = super::write::without_repeats(std::mem::take(&mut migration.objects));
    migration.objects = objects;
    errors.extend(repeats);
    super::tunnels::check_tunnel_handles(&migration.objects, &mut migration.report);
    if errors.is_empty() { Ok(migration) } else { Err(errors) }
}

fn convert_document(doc: &Document, out: &mut Migration) -> Result<(), String> {
    let at = &doc.position;
    let api = doc.text("apiVersion").unwrap_or_default();
    let kind = doc.text("kind").unwrap_or_default();
    match (api, kind) {
        ("v1", "Secret") => {
            secret(doc, &mut out.report);
            Ok(())
        }
        ("v1", "ipPool") => old_v1_pool(doc, out),
        ("v1", "Node") => kubernetes_node(doc, out),
        (CRD_API_VERSION | V3_API_VERSION, _) => {
            let name = doc.name().ok_or_else(|| format!("{at} ({kind}): metadata.name: is required"))?;
            let tortie_kind = if kind == "IPAMConfiguration" { "IPAMConfig" } else { kind };
            let Some(tortie_kind) = kind_named(tortie_kind).filter(|k| k.as_str() == tortie_kind) else {
                out.report.push(format!("{kind}/{name}: not carried: kind {kind} unknown to tortie"));
                return Ok(());
            };
            let spec = doc.value.get("spec").cloned().unwrap_or_else(|| json!({}));
            let labels = metadata(doc, tortie_kind.as_str(), name, tortie_kind == Kind::Node, &mut out.report);
            let name = match doc.value.pointer("/metadata/namespace").and_then(Value::as_str) {
                Some(namespace) if tortie_kind.namespaced() => format!("{namespace}/{name}"),
                _ => name.to_string(),
            };
            let mut c = Converting { kind: tortie_kind, name, spec, report: &mut out.report };
            if let Some(status) = doc.value.get("status").filter(|s| !is_empty(s)) {
                c.not_carried("status", &format!("tortie keeps no status ({status})"));
            }
            c.reshape(labels).map_err(|e| format!("{at} ({}/{}): {e}", c.kind, c.name))?;
            c.finish(at, &mut out.objects)
        }
        _ => Err(format!(
            "{at}: apiVersion {api:?} kind {kind:?} is not a Calico resource ({CRD_API_VERSION} or {V3_API_VERSION})"
        )),
    }
}

/// One object on its way from Calico's spelling to tortie's.
struct Converting<'a> {
    kind: Kind,
    name: String,
    spec: Value,
    report: &'a mut Vec<String>,
}

impl Converting<'_> {
    fn changed(&mut self, field: &str, from: &Value, to: &Value, why: &str) {
        self.report.push(format!("{}/{}: field {field} changed: {from} → {to} ({why})", self.kind, self.name));
    }

    fn not_carried(&mut self, field: &str, why: &str) {
        self.report.push(format!("{}/{}: field {field} not carried: {why}", self.kind, self.name));
    }

    fn field(&mut self, path: &[&str]) -> Option<&mut Value> {
        path.iter().try_fold(&mut self.spec, |v, key| v.get_mut(*key))
    }

    /// Rewrites an AS number given as a string or in asdot as a number.
    fn as_number(&mut self, path: &[&str]) -> Result<(), String> {
        let field = format!("spec.{}", path.join("."));
        let Some(value) = self.field(path) else { return Ok(()) };
        let number = parse_as_number(value).map_err(|e| format!("{field}: {e}"))?;
        let old = std::mem::replace(value, json!(number));
        if !old.is_number() {
            self.changed(&field, &old, &json!(number), "AS numbers are numbers in tortie");
        }
        Ok(())
    }

    /// Reports a secret reference the user must make available to tortie.
    fn secret_ref(&mut self, field: &str) {
        let Some(reference) = self.spec.get(field).and_then(|p| p.get("secretKeyRef")).cloned() else { return };
        let name = reference.get("name").and_then(Value::as_str).unwrap_or("?");
        let key = reference.get("key").and_then(Value::as_str).unwrap_or("?");
        self.report.push(format!(
            "{}/{}: spec.{field} refers to key {key:?} of Secret {name:?}: copy that Secret from Calico's namespace ({}) into tortie's",
            self.kind,
            self.name,
            CALICO_NAMESPACES.join(" or ")
        ));
    }

    fn reshape(&mut self, labels: Option<Value>) -> Result<(), String> {
        match self.kind {
            Kind::IpPool => self.pool(),
            Kind::BgpPeer => {
                self.as_number(&["asNumber"])?;
                self.as_number(&["localASNumber"])?;
                self.secret_ref("password");
                if self.spec.get("keepOriginalNextHop") == Some(&json!(true)) && self.spec.get("nextHopMode").is_none()
                {
                    self.spec["nextHopMode"] = json!("Keep");
                    self.changed(
                        "spec.keepOriginalNextHop",
                        &json!(true),
                        &json!({"nextHopMode": "Keep"}),
                        "Calico's replacement for the deprecated field",
                    );
                }
                if let Some(map) = self.spec.as_object_mut() {
                    map.remove("keepOriginalNextHop");
                }
            }
            Kind::BgpConfiguration => {
                self.as_number(&["asNumber"])?;
                self.secret_ref("nodeMeshPassword");
            }
            Kind::Node => {
                self.as_number(&["bgp", "asNumber"])?;
                if let Some(labels) = labels {
                    self.spec["labels"] = labels;
                }
            }
            Kind::BlockAffinity => {
                if let Some(Value::String(text)) = self.field(&["deleted"]) {
                    let flag = match text.as_str() {
                        "true" => true,
                        "false" | "" => false,
                        _ => return Err(format!("spec.deleted: {text:?} is not \"true\" or \"false\"")),
                    };
                    self.spec["deleted"] = json!(flag);
                }
            }
            Kind::IpamHandle => {
                if let Some(Value::String(id)) = self.field(&["handleID"])
                    && *id != id.to_lowercase()
                {
                    let old = json!(id.clone());
                    *id = id.to_lowercase();
                    let new = json!(id.clone());
                    self.changed("spec.handleID", &old, &new, "tortie finds a handle by its ID, the record's name, which is lower-case; the blocks' handle_id are lower-cased with it");
                }
                self.name = self.name.to_lowercase();
            }
            Kind::IpamBlock => {
                let Some(Value::Array(attributes)) = self.field(&["attributes"]) else { return Ok(()) };
                for attribute in attributes {
                    if let Some(Value::String(id)) = attribute.get_mut("handle_id") {
                        *id = id.to_lowercase();
                    }
                }
            }
            // BGPFilter carries over as it is; Secrets are Kubernetes objects, not Calico's.
            // Policies, namespaces and Kubernetes' service objects carry over as they are; a
            // lease is the agents' own state.
            Kind::IpamConfig
            | Kind::IpReservation
            | Kind::BgpFilter
            | Kind::Secret
            | Kind::NetworkPolicy
            | Kind::GlobalNetworkPolicy
            | Kind::KubeNetworkPolicy
            | Kind::Namespace
            | Kind::Service
            | Kind::EndpointSlice
            | Kind::Lease
            | Kind::NodeStatus => {}
        }
        Ok(())
    }

    /// Old spellings: `ipip: {enabled, mode}` and `nat-outgoing`; a missing block size.
    fn pool(&mut self) {
        if let Some(ipip) = self.spec.as_object_mut().and_then(|m| m.remove("ipip")) {
            let enabled = ipip.get("enabled").and_then(Value::as_bool).unwrap_or(false);
            let mode = match ipip.get("mode").and_then(Value::as_str).unwrap_or_default() {
                _ if !enabled => "Never",
                "cross-subnet" | "CrossSubnet" => "CrossSubnet",
                _ => "Always",
            };
            if self.spec.get("ipipMode").is_none() {
                self.spec["ipipMode"] = json!(mode);
                self.changed("spec.ipip", &ipip, &json!({"ipipMode": mode}), "the old spelling of ipipMode");
            } else {
                self.not_carried("spec.ipip", "ipipMode is set and takes precedence, as in Calico");
            }
        }
        if let Some(nat) = self.spec.as_object_mut().and_then(|m| m.remove("nat-outgoing")) {
            if self.spec.get("natOutgoing").is_none() {
                self.spec["natOutgoing"] = nat.clone();
                self.changed(
                    "spec.nat-outgoing",
                    &nat,
                    &json!({"natOutgoing": nat}),
                    "the old spelling of natOutgoing",
                );
            } else {
                self.not_carried("spec.nat-outgoing", "natOutgoing is set and takes precedence, as in Calico");
            }
        }
        if self.spec.get("blockSize").is_none()
            && let Some(cidr) = self.spec.get("cidr").and_then(Value::as_str).and_then(|c| c.parse::<IpNetwork>().ok())
        {
            self.spec["blockSize"] = json!(if cidr.is_ipv4() { 26 } else { 122 });
        }
    }

    /// Checks the result against tortie's type and reports the fields it does not have.
    fn finish(self, at: &str, objects: &mut Vec<Object>) -> Result<(), String> {
        let (kind, name) = (self.kind, self.name);
        if let Some(problem) = crate::datastore::Key::problem_of(kind, &name) {
            return Err(format!("{at} ({kind}/{name}): metadata.name: {problem}"));
        }
        let checked = check_spec(kind, &self.spec).map_err(|e| format!("{at} ({kind}/{name}): {e}"))?;
        for field in &checked.unknown_fields {
            self.report.push(format!("{kind}/{name}: field {field} not carried: tortie's {kind} has no such field"));
        }
        objects.push(Object { kind, name, spec: checked.spec });
        Ok(())
    }
}

/// Reports metadata that is not the store's own; returns the labels when the kind keeps them.
fn metadata(doc: &Document, kind: &str, name: &str, keeps_labels: bool, report: &mut Vec<String>) -> Option<Value> {
    let empty = Map::new();
    let meta = doc.value.get("metadata").and_then(Value::as_object).unwrap_or(&empty);
    let mut labels = meta.get("labels").and_then(Value::as_object).cloned().unwrap_or_default();
    let annotations = meta.get("annotations").and_then(Value::as_object).cloned().unwrap_or_default();
    // The v1 object's annotation holds the v3 object's own labels and annotations.
    let v3_meta: Value = annotations
        .get(METADATA_ANNOTATION)
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    if let Some(more) = v3_meta.get("labels").and_then(Value::as_object) {
        labels.extend(more.clone());
    }
    let mut all_annotations = annotations;
    if let Some(more) = v3_meta.get("annotations").and_then(Value::as_object) {
        all_annotations.extend(more.clone());
    }
    for (key, _) in all_annotations.iter().filter(|(k, _)| !STORE_ANNOTATIONS.contains(&k.as_str())) {
        report
            .push(format!("{kind}/{name}: field metadata.annotations.{key} not carried: tortie keeps no annotations"));
    }
    for (key, value) in meta.iter().filter(|(k, _)| !STORE_METADATA.contains(&k.as_str())) {
        if !matches!(key.as_str(), "labels" | "annotations") && !is_empty(value) {
            report.push(format!("{kind}/{name}: field metadata.{key} not carried: tortie keeps no {key}"));
        }
    }
    if labels.is_empty() {
        return None;
    }
    if keeps_labels {
        return Some(Value::Object(labels));
    }
    for key in labels.keys() {
        report.push(format!("{kind}/{name}: field metadata.labels.{key} not carried: tortie's {kind} has no labels"));
    }
    None
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// calicoctl v1's `ipPool`: the CIDR in the metadata, `ipip` and `nat-outgoing` in the spec.
fn old_v1_pool(doc: &Document, out: &mut Migration) -> Result<(), String> {
    let at = &doc.position;
    let cidr = doc
        .value
        .pointer("/metadata/cidr")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at} (ipPool): metadata.cidr: is required"))?;
    let network: IpNetwork = cidr.parse().map_err(|e| format!("{at} (ipPool): metadata.cidr: {cidr:?}: {e}"))?;
    let mut spec = doc.value.get("spec").cloned().unwrap_or_else(|| json!({}));
    spec["cidr"] = json!(cidr);
    let mut c = Converting { kind: Kind::IpPool, name: cidr_name(&network), spec, report: &mut out.report };
    c.reshape(None).map_err(|e| format!("{at} (ipPool {cidr}): {e}"))?;
    c.finish(at, &mut out.objects)
}

/// Where Calico's Kubernetes datastore keeps a Node's fields: annotations on the Kubernetes
/// Node, each the JSON pointer of the tortie Node field it becomes.
const NODE_ANNOTATIONS: [(&str, &str); 9] = [
    ("projectcalico.org/IPv4Address", "/bgp/ipv4Address"),
    ("projectcalico.org/IPv6Address", "/bgp/ipv6Address"),
    ("projectcalico.org/ASNumber", "/bgp/asNumber"),
    ("projectcalico.org/RouteReflectorClusterID", "/bgp/routeReflectorClusterID"),
    ("projectcalico.org/IPv4IPIPTunnelAddr", "/bgp/ipv4IPIPTunnelAddr"),
    ("projectcalico.org/IPv4VXLANTunnelAddr", "/ipv4VXLANTunnelAddr"),
    ("projectcalico.org/VXLANTunnelMACAddr", "/vxlanTunnelMACAddr"),
    ("projectcalico.org/IPv6VXLANTunnelAddr", "/ipv6VXLANTunnelAddr"),
    ("projectcalico.org/VXLANTunnelMACAddrV6", "/vxlanTunnelMACAddrV6"),
];

/// A Kubernetes Node (`kubectl get nodes -o yaml`): its Calico annotations and labels make the
/// tortie Node; the rest is Kubernetes' own and stays with the Kubernetes Node.
fn kubernetes_node(doc: &Document, out: &mut Migration) -> Result<(), String> {
    let at = &doc.position;
    let name = doc.name().ok_or_else(|| format!("{at} (Node): metadata.name: is required"))?;
    let empty = Map::new();
    let annotations = doc.value.pointer("/metadata/annotations").and_then(Value::as_object).unwrap_or(&empty);
    let mut spec = json!({});
    for (key, value) in annotations.iter().filter(|(k, _)| k.starts_with("projectcalico.org/")) {
        match NODE_ANNOTATIONS.iter().find(|(a, _)| a == key) {
            Some((_, pointer)) => match pointer[1..].split_once('/') {
                Some((parent, field)) => spec[parent][field] = value.clone(),
                None => spec[&pointer[1..]] = value.clone(),
            },
            None => out.report.push(format!(
                "Node/{name}: field metadata.annotations.{key} not carried: tortie keeps no annotations"
            )),
        }
    }
    if let Some(labels) = doc.value.pointer("/metadata/labels").filter(|l| !is_empty(l)) {
        spec["labels"] = labels.clone();
    }
    let mut c = Converting { kind: Kind::Node, name: name.to_string(), spec, report: &mut out.report };
    c.reshape(None).map_err(|e| format!("{at} (Node/{name}): {e}"))?;
    c.finish(at, &mut out.objects)
}

/// A Secret is not copied (tortie never handles secret values); the user is told what to copy.
fn secret(doc: &Document, report: &mut Vec<String>) {
    let name = doc.name().unwrap_or("?");
    let namespace = doc.value.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
    let keys: Vec<&str> = doc
        .value
        .get("data")
        .and_then(Value::as_object)
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let from = if CALICO_NAMESPACES.contains(&namespace) { " from Calico's namespace" } else { "" };
    report.push(format!(
        "Secret {namespace}/{name}: not carried: secret values are never copied; copy the Secret{from} into tortie's namespace yourself (keys: {})",
        keys.join(", ")
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::read_documents;

    fn migrate(text: &str) -> Result<Migration, Vec<String>> {
        convert(&read_documents(text).unwrap())
    }

    #[test]
    fn old_pool_spellings_become_ipip_mode_and_nat_outgoing() {
        let old = "apiVersion: v1\nkind: ipPool\nmetadata: {cidr: 10.1.0.0/16}\n\
                   spec: {ipip: {enabled: true, mode: cross-subnet}, nat-outgoing: true}\n";
        let m = migrate(old).unwrap();
        assert_eq!(m.objects[0].name, "10-1-0-0-16");
        assert_eq!(m.objects[0].spec["ipipMode"], "CrossSubnet");
        assert_eq!(m.objects[0].spec["natOutgoing"], true);
        assert_eq!(m.objects[0].spec["blockSize"], 26);
        assert_eq!(m.report.len(), 2, "{:?}", m.report);
        assert!(m.report[0].starts_with("IPPool/10-1-0-0-16: field spec.ipip changed"), "{:?}", m.report);
        let crd = "apiVersion: crd.projectcalico.org/v1\nkind: IPPool\nmetadata: {name: p}\n\
                   spec: {cidr: 'fd00::/48', ipip: {enabled: false}}\n";
        let m = migrate(crd).unwrap();
        assert_eq!(m.objects[0].spec["ipipMode"], "Never");
        assert_eq!(m.objects[0].spec["blockSize"], 122);
    }

    #[test]
    fn string_deleted_and_mixed_case_handles_are_carried() {
        let text = "apiVersion: crd.projectcalico.org/v1\nkind: BlockAffinity\nmetadata: {name: n-10-0-0-0-30}\n\
                    spec: {cidr: 10.0.0.0/30, deleted: 'true', node: n, state: confirmed}\n---\n\
                    apiVersion: crd.projectcalico.org/v1\nkind: IPAMHandle\nmetadata: {name: k8s-pod-network.ab}\n\
                    spec: {handleID: k8s-pod-network.AB, block: {10.0.0.0/30: 1}}\n---\n\
                    apiVersion: crd.projectcalico.org/v1\nkind: IPAMBlock\nmetadata: {name: 10-0-0-0-30}\n\
                    spec: {cidr: 10.0.0.0/30, allocations: [0, null, null, null], unallocated: [1, 2, 3],\n\
                    attributes: [{handle_id: k8s-pod-network.AB}]}\n";
        let m = migrate(text).unwrap();
        assert_eq!(m.objects[0].spec["deleted"], true);
        assert_eq!(m.objects[0].spec["type"], "host");
        assert_eq!(m.objects[1].spec["handleID"], "k8s-pod-network.ab");
        assert_eq!(m.objects[2].spec["attributes"][0]["handle_id"], "k8s-pod-network.ab");
        let bad = text.replace("deleted: 'true'", "deleted: 'maybe'");
        let errors = migrate(&bad).unwrap_err();
        assert_eq!(
            errors,
            vec!["document 1 (BlockAffinity/n-10-0-0-0-30): spec.deleted: \"maybe\" is not \"true\" or \"false\""]
        );
    }

    #[test]
    fn bad_values_and_foreign_documents_are_errors_naming_document_and_field() {
        let text = "apiVersion: projectcalico.org/v3\nkind: BGPPeerList\nitems:\n\
                    - metadata: {name: ok}\n  spec: {peerIP: 192.0.2.1, asNumber: 65001}\n\
                    - metadata: {name: bad}\n  spec: {peerIP: 192.0.2.2, asNumber: 'sixty'}\n---\n\
                    apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n---\n\
                    apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.0.0.0/16, blockSize: 8}\n";
        let errors = migrate(text).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].starts_with("document 1, item 2 (BGPPeer/bad): spec.asNumber: \"sixty\" is not an AS number"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].starts_with("document 2: apiVersion \"apps/v1\" kind \"Deployment\" is not a Calico resource"),
            "{}",
            errors[1]
        );
        assert!(errors[2].starts_with("document 3 (IPPool/p): spec.blockSize: 8 is outside"), "{}", errors[2]);
    }

    #[test]
    fn a_kubernetes_node_gives_its_calico_annotations_and_labels() {
        let text = "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  labels: {rack: r1}\n  annotations:\n\
                    \x20   projectcalico.org/IPv4Address: 192.0.2.10/24\n    projectcalico.org/ASNumber: '65001'\n\
                    \x20   projectcalico.org/IPv4VXLANTunnelAddr: 10.0.0.1\n    projectcalico.org/WireguardPublicKey: abc\n\
                    \x20   node.alpha.kubernetes.io/ttl: '0'\nspec: {podCIDR: 10.0.0.0/24}\n";
        let m = migrate(text).unwrap();
        assert_eq!(m.objects[0].kind, Kind::Node);
        assert_eq!(m.objects[0].spec["bgp"], json!({"ipv4Address": "192.0.2.10/24", "asNumber": 65001}));
        assert_eq!(m.objects[0].spec["ipv4VXLANTunnelAddr"], "10.0.0.1");
        assert!(m.report.contains(&"Node/n1: field metadata.annotations.projectcalico.org/WireguardPublicKey not carried: tortie keeps no annotations".to_string()), "{:?}", m.report);
        assert!(m.report.iter().all(|l| !l.contains("ttl") && !l.contains("podCIDR")), "{:?}", m.report);
    }

    #[test]
    fn unknown_kinds_labels_and_annotations_are_reported() {
        let text = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\n---\n\
                    apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\n\
                    metadata: {name: default, labels: {team: net}, annotations: {note: x}}\nspec: {strictAffinity: true}\n";
        let m = migrate(text).unwrap();
        assert_eq!(m.objects.len(), 1);
        assert_eq!(m.objects[0].kind, Kind::IpamConfig);
        assert_eq!(
            m.report,
            vec![
                "FelixConfiguration/default: not carried: kind FelixConfiguration unknown to tortie",
                "IPAMConfig/default: field metadata.annotations.note not carried: tortie keeps no annotations",
                "IPAMConfig/default: field metadata.labels.team not carried: tortie's IPAMConfig has no labels",
            ]
        );
    }
}
