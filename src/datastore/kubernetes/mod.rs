//! The Kubernetes backend: each kind but Node is a cluster-scoped custom resource in the
//! `crd.tortie.io/v1` group (CRDs generated from the Rust types, see [`crds_yaml`]); a Node's BGP
//! fields are annotations on the Kubernetes Node (see `node.rs`); a Secret is a Kubernetes Secret
//! in the agent's namespace (see `secret.rs`); a KubernetesNetworkPolicy is the API server's
//! `networking.k8s.io/v1` NetworkPolicy and a Namespace record the Kubernetes Namespace's labels
//! (see `native.rs`). Namespaced kinds (NetworkPolicy, KubernetesNetworkPolicy) live in the
//! namespace their record's `namespace/name` names. Compare-and-swap is
//! Kubernetes' own: `metadata.resourceVersion` on replace, preconditions on delete, 409 on a
//! mismatch. Revisions are resourceVersions read as numbers (what every etcd-backed API server
//! hands out); a non-numeric one is `InvalidData`.

mod crds;
mod native;
mod node;
mod secret;
mod watch;

pub use crds::{crds, crds_yaml};

use super::backend::{Backend, RawList, RawObject, RawWatch, RawWrite, check_transaction};
use super::{DatastoreError, Key, Kind, Result, Revision};
use async_trait::async_trait;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, Preconditions,
};
use kube::core::GroupVersionKind;

/// The API group of tortie's custom resources.
pub const GROUP: &str = "crd.tortie.io";
/// Their version.
pub const VERSION: &str = "v1";
/// Prefix of the annotations carrying a Node's fields on the Kubernetes Node.
pub const ANNOTATION_PREFIX: &str = "tortie.io/";

/// The custom resource of `kind` (Node is not one).
pub fn api_resource(kind: Kind) -> ApiResource {
    let gvk = GroupVersionKind::gvk(GROUP, VERSION, kind.as_str());
    ApiResource::from_gvk_with_plural(&gvk, kind.plural())
}

/// A datastore in a Kubernetes API server.
pub struct KubeBackend {
    client: kube::Client,
}

impl KubeBackend {
    pub fn new(client: kube::Client) -> KubeBackend {
        KubeBackend { client }
    }

    /// Connects with the usual inference: in-cluster service account, else `KUBECONFIG`.
    pub async fn try_default() -> Result<KubeBackend> {
        Ok(KubeBackend { client: kube::Client::try_default().await.map_err(DatastoreError::unavailable)? })
    }

    /// The API over every object of `kind` (for lists and watches).
    fn api(&self, kind: Kind) -> Api<DynamicObject> {
        if kind == Kind::Secret {
            return secret::api(&self.client);
        }
        Api::all_with(self.client.clone(), &resource_of(kind))
    }

    /// The API holding `key`'s object, and the object's name in it.
    fn api_for<'k>(&self, key: &'k Key) -> (Api<DynamicObject>, &'k str) {
        match key.split_namespace() {
            (Some(namespace), name) => {
                (Api::namespaced_with(self.client.clone(), namespace, &resource_of(key.kind)), name)
            }
            (None, name) => (self.api(key.kind), name),
        }
    }
}

impl KubeBackend {
    /// A Service is the API server's object, of which the record holds only a projection: an
    /// update writes only its `status.loadBalancer` (the load-balancer controller's part), to the
    /// status subresource, guarded by the revision; the spec and the rest stay as they are.
    async fn update_service_status(&self, key: &Key, value: &[u8], expected: Revision) -> Result<Revision> {
        let record: serde_json::Value =
            serde_json::from_slice(value).map_err(|e| DatastoreError::invalid(key, e.to_string()))?;
        let ingress = record.pointer("/status/loadBalancer/ingress").cloned().unwrap_or(serde_json::Value::Null);
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": expected.to_string()},
            "status": {"loadBalancer": {"ingress": ingress}},
        });
        let (api, name) = self.api_for(key);
        let patched = api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| api_error(key, expected, e))?;
        revision_of(key, patched.metadata.resource_version.as_deref())
    }
}

/// The API resource of `kind` (Node's is the Kubernetes Node, handled in `node.rs`).
fn resource_of(kind: Kind) -> ApiResource {
    match kind {
        Kind::Secret => secret::resource(),
        Kind::KubeNetworkPolicy | Kind::Namespace | Kind::Service | Kind::EndpointSlice => native::resource(kind),
        _ => api_resource(kind),
    }
}

/// The revision in an object's metadata.
pub(crate) fn revision_of(key: &dyn std::fmt::Display, rv: Option<&str>) -> Result<Revision> {
    let rv = rv.unwrap_or_default();
    rv.parse::<u64>()
        .map(Revision)
        .map_err(|_| DatastoreError::invalid(key, format!("resourceVersion {rv:?} is not a number")))
}

/// The stored form of a custom resource: its `spec`, as JSON bytes (a Secret: its `data`).
pub(crate) fn object_of(kind: Kind, object: &DynamicObject) -> Result<RawObject> {
    let key = key_of(kind, object);
    let revision = revision_of(&key, object.metadata.resource_version.as_deref())?;
    let value = if kind == Kind::Secret {
        serde_json::to_vec(&secret::value_of(object))
    } else if kind == Kind::Namespace {
        serde_json::to_vec(&native::namespace_value(object))
    } else if matches!(kind, Kind::Service | Kind::EndpointSlice) {
        serde_json::to_vec(&native::projected_value(kind, object))
    } else {
        serde_json::to_vec(object.data.get("spec").unwrap_or(&serde_json::Value::Null))
    };
    let value = value.map_err(|e| DatastoreError::invalid(&key, e.to_string()))?;
    Ok(RawObject { key, revision, value })
}

/// The key of a Kubernetes object of `kind`: `namespace/name` for a namespaced kind.
pub(crate) fn key_of(kind: Kind, object: &DynamicObject) -> Key {
    let name = object.metadata.name.clone().unwrap_or_default();
    match object.metadata.namespace.as_deref() {
        Some(namespace) if kind.namespaced() => Key::new(kind, format!("{namespace}/{name}")),
        _ => Key::new(kind, name),
    }
}

/// Maps an API error to the datastore's; `expected` is the revision a write was guarded by.
pub(crate) fn api_error(key: &Key, expected: Revision, e: kube::Error) -> DatastoreError {
    match e {
        kube::Error::Api(status) if status.code == 404 => DatastoreError::NotFound { key: key.clone() },
        kube::Error::Api(status) if status.code == 409 && status.reason == "AlreadyExists" => {
            DatastoreError::AlreadyExists { key: key.clone() }
        }
        kube::Error::Api(status) if status.code == 409 => DatastoreError::Conflict { key: key.clone(), expected },
        kube::Error::Api(status) if status.code == 400 || status.code == 422 => {
            DatastoreError::invalid(key, format!("refused by the API server: {}", status.message))
        }
        other => DatastoreError::unavailable(other),
    }
}

fn document(key: &Key, value: &[u8], revision: Option<Revision>) -> Result<DynamicObject> {
    let kind = key.kind;
    let (namespace, name) = key.split_namespace();
    let spec: serde_json::Value =
        serde_json::from_slice(value).map_err(|e| DatastoreError::invalid(key, e.to_string()))?;
    let mut object = match kind {
        Kind::Secret => secret::document(name, spec),
        Kind::Namespace => native::namespace_document(name, &spec),
        Kind::Service | Kind::EndpointSlice => native::projected_document(kind, name, &spec),
        _ => DynamicObject::new(name, &resource_of(kind)).data(serde_json::json!({ "spec": spec })),
    };
    object.metadata.namespace = namespace.map(str::to_string);
    object.metadata.resource_version = revision.map(|r| r.to_string());
    Ok(object)
}

#[async_trait]
impl Backend for KubeBackend {
    async fn get(&self, key: &Key) -> Result<RawObject> {
        if key.kind == Kind::Node {
            return node::get(&self.client, key).await;
        }
        let (api, name) = self.api_for(key);
        let object = api.get(name).await.map_err(|e| api_error(key, Revision(0), e))?;
        object_of(key.kind, &object)
    }

    async fn list(&self, kind: Kind) -> Result<RawList> {
        if kind == Kind::Node {
            return node::list(&self.client).await;
        }
        let key = Key::new(kind, "");
        let list = self.api(kind).list(&ListParams::default()).await.map_err(|e| api_error(&key, Revision(0), e))?;
        let revision = revision_of(&key, list.metadata.resource_version.as_deref())?;
        let objects = list.items.iter().map(|o| object_of(kind, o)).collect::<Result<Vec<_>>>()?;
        Ok(RawList { objects, revision })
    }

    async fn create(&self, key: &Key, value: Vec<u8>) -> Result<Revision> {
        if key.kind == Kind::Node {
            return node::create(&self.client, key, &value).await;
        }
        let object = document(key, &value, None)?;
        let created = self
            .api_for(key)
            .0
            .create(&PostParams::default(), &object)
            .await
            .map_err(|e| api_error(key, Revision(0), e))?;
        revision_of(key, created.metadata.resource_version.as_deref())
    }

    async fn update(&self, key: &Key, value: Vec<u8>, expected: Revision) -> Result<Revision> {
        if key.kind == Kind::Node {
            return node::update(&self.client, key, &value, expected).await;
        }
        if key.kind == Kind::Service {
            return self.update_service_status(key, &value, expected).await;
        }
        let object = document(key, &value, Some(expected))?;
        let (api, name) = self.api_for(key);
        let replaced =
            api.replace(name, &PostParams::default(), &object).await.map_err(|e| api_error(key, expected, e))?;
        revision_of(key, replaced.metadata.resource_version.as_deref())
    }

    async fn delete(&self, key: &Key, expected: Revision) -> Result<()> {
        if key.kind == Kind::Node {
            return node::delete(&self.client, key, expected).await;
        }
        let params = DeleteParams::default()
            .preconditions(Preconditions { resource_version: Some(expected.to_string()), uid: None });
        let (api, name) = self.api_for(key);
        api.delete(name, &params).await.map_err(|e| api_error(key, expected, e))?;
        Ok(())
    }

    /// The API has no multi-object transactions: every write's condition is checked first (so a
    /// stale transaction usually changes nothing), then the writes are applied in order, each a
    /// compare-and-swap, stopping at the first that fails. A concurrent writer or a crash can
    /// leave a prefix applied.
    async fn transact(&self, writes: Vec<RawWrite>) -> Result<Vec<Revision>> {
        check_transaction(&writes)?;
        for write in &writes {
            let found = match self.get(write.key()).await {
                Ok(object) => Some(object.revision),
                Err(DatastoreError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            let key = write.key().clone();
            match (write, found) {
                (RawWrite::Create { .. }, Some(_)) => return Err(DatastoreError::AlreadyExists { key }),
                (RawWrite::Update { .. } | RawWrite::Delete { .. }, None) => {
                    return Err(DatastoreError::NotFound { key });
                }
                (RawWrite::Update { expected, .. } | RawWrite::Delete { expected, .. }, Some(actual))
                    if actual != *expected =>
                {
                    return Err(DatastoreError::Conflict { key, expected: *expected });
                }
                _ => {}
            }
        }
        let mut revisions = Vec::with_capacity(writes.len());
        for write in writes {
            revisions.push(match write {
                RawWrite::Create { key, value } => self.create(&key, value).await?,
                RawWrite::Update { key, value, expected } => self.update(&key, value, expected).await?,
                RawWrite::Delete { key, expected } => {
                    self.delete(&key, expected).await?;
                    expected
                }
            });
        }
        Ok(revisions)
    }

    fn atomic_transactions(&self) -> bool {
        false
    }

    async fn watch(&self, kind: Kind, from: Option<Revision>) -> Result<RawWatch> {
        let (api, from) = if kind == Kind::Node {
            // Node annotations carry no history of their own: a node watch always starts with the
            // current state (a resync), then follows changes.
            (node::api(&self.client), None)
        } else {
            (self.api(kind), from)
        };
        Ok(watch::spawn(api, kind, from))
    }
}
