//! An in-process stand-in for the part of the Kubernetes API server the Kubernetes backend uses,
//! with the real semantics: create/get/replace/delete on cluster-scoped resources, a store-wide
//! resourceVersion, 409 Conflict on a stale resourceVersion (replace, delete preconditions), 409
//! AlreadyExists, list with the list's resourceVersion, watch from a resourceVersion as a stream
//! of JSON lines, 410 Gone (an ERROR event) when that version was compacted or the watch fell
//! behind, and bookmarks; namespaced objects (Pods) with lists filtered by simple field selectors,
//! PATCH of the status subresource (strategic merge of `conditions` by `type`) and merge PATCH of
//! namespaced objects (Events). Every request
//! is kept in an audit log ([`StandIn::calls`]) for RBAC checks. For tests and benchmarks, where
//! no API server is to be had; see `docs/datastore.md` for what it does not prove — it does no
//! authentication, authorisation, admission or schema validation.

mod audit;
mod routes;
mod state;

pub use audit::{ApiCall, attributes};

use serde_json::Value;
use state::Shared;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// A running stand-in API server on a loopback port; stopped on drop.
pub struct StandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: oneshot::Sender<()>,
}

impl StandIn {
    /// Starts on 127.0.0.1 at a free port, sending watch bookmarks every `bookmark_interval`.
    pub async fn start(bookmark_interval: Duration) -> std::io::Result<StandIn> {
        StandIn::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), bookmark_interval).await
    }

    /// Starts on `address` (port 0: a free one), e.g. a test namespace's veth address so agents
    /// in other namespaces reach it.
    pub async fn start_on(address: SocketAddr, bookmark_interval: Duration) -> std::io::Result<StandIn> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(bookmark_interval));
        let app = routes::router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "kube stand-in stopped");
            }
        });
        Ok(StandIn { addr, shared, _stop: stop })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        self.client_in("default")
    }

    /// A client whose default namespace is `namespace`, as a pod's service account has its own.
    pub fn client_in(&self, namespace: &str) -> kube::Client {
        // The URL is ours and well-formed, and building a plain-HTTP client cannot fail.
        let url = self.url().parse().expect("loopback URL");
        let mut config = kube::Config::new(url);
        config.default_namespace = namespace.to_string();
        kube::Client::try_from(config).expect("kube client for the stand-in")
    }

    /// Forgets all history up to now: watches from older resourceVersions get 410 Gone.
    pub fn compact(&self) {
        self.shared.compact();
    }

    /// Ends every open watch (as an API server restart would).
    pub fn cut_watches(&self) {
        self.shared.cut_watches();
    }

    /// Creates a bare Kubernetes Node, as the kubelet would.
    pub fn add_node(&self, name: &str) {
        let node = serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {}});
        self.shared.put_raw("core/nodes", name, node);
    }

    /// Updates a Node's status, as the kubelet's heartbeat does.
    pub fn heartbeat(&self, name: &str) {
        self.shared.modify_raw("core/nodes", name, |o| o["status"]["heartbeat"] = serde_json::json!(rand_like()));
    }

    /// Stores `object` as is under `collection` (`<group>/<plural>`), bypassing every check.
    pub fn put_raw(&self, collection: &str, name: &str, object: Value) {
        self.shared.put_raw(collection, name, object);
    }

    /// The stored object, if any (namespaced objects are named `<namespace>/<name>`).
    pub fn get_raw(&self, collection: &str, name: &str) -> Option<Value> {
        self.shared.get_raw(collection, name)
    }

    /// Every stored object of `collection` (`<group>/<plural>`, `core` for the core group).
    pub fn list_raw(&self, collection: &str) -> Vec<Value> {
        self.shared.list(collection).0
    }

    /// Creates a Pod scheduled to `node`, as the scheduler's binding would leave it.
    pub fn add_pod(&self, namespace: &str, name: &str, node: &str) {
        self.add_annotated_pod(namespace, name, node, &BTreeMap::new());
    }

    /// As [`StandIn::add_pod`], with `annotations`.
    pub fn add_annotated_pod(&self, namespace: &str, name: &str, node: &str, annotations: &BTreeMap<String, String>) {
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
                "annotations": annotations},
            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "pause"}]}, "status": {}});
        self.shared.put_raw("core/pods", &format!("{namespace}/{name}"), pod);
    }

    /// Deletes a Pod at once (no graceful deletion); `false` when there was none.
    pub fn delete_pod(&self, namespace: &str, name: &str) -> bool {
        self.shared.delete_raw("core/pods", &format!("{namespace}/{name}"))
    }

    /// Every request served so far, in order, as an authoriser sees it.
    pub fn calls(&self) -> Vec<ApiCall> {
        self.shared.calls()
    }
}

/// A value that differs between calls, so each heartbeat is a real change.
fn rand_like() -> String {
    format!("{:?}", std::time::SystemTime::now())
}
