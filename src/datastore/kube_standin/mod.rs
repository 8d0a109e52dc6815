//! An in-process stand-in for the part of the Kubernetes API server the Kubernetes backend uses,
//! with the real semantics: create/get/replace/delete on cluster-scoped resources, a store-wide
//! resourceVersion, 409 Conflict on a stale resourceVersion (replace, delete preconditions), 409
//! AlreadyExists, list with the list's resourceVersion, watch from a resourceVersion as a stream
//! of JSON lines, 410 Gone (an ERROR event) when that version was compacted or the watch fell
//! behind, and bookmarks. For tests and benchmarks, where no API server is to be had; see
//! `docs/datastore.md` for what it does not prove.

mod routes;
mod state;

use serde_json::Value;
use state::Shared;
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
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
        // The URL is ours and well-formed, and building a plain-HTTP client cannot fail.
        let url = self.url().parse().expect("loopback URL");
        kube::Client::try_from(kube::Config::new(url)).expect("kube client for the stand-in")
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

    /// The stored object, if any.
    pub fn get_raw(&self, collection: &str, name: &str) -> Option<Value> {
        self.shared.get_raw(collection, name)
    }
}

/// A value that differs between calls, so each heartbeat is a real change.
fn rand_like() -> String {
    format!("{:?}", std::time::SystemTime::now())
}
