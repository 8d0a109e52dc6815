//! Serves the local API on a unix socket.

use super::status::StatusReport;
use crate::bgp::rib::{Rib, RibSnapshot, RibStats};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;
use tokio::sync::watch;

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create the directory of api.socket {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("another tortie agent is already answering on api.socket {0}")]
    InUse(PathBuf),
    #[error("cannot listen on api.socket {path}: {source}")]
    Bind { path: PathBuf, source: std::io::Error },
}

/// The services behind the API besides status, one field each; a `None` service's routes are
/// not served (404).
#[derive(Default)]
pub struct ApiServices {
    /// `/v1/workloads…`, for the CNI plugin.
    pub workloads: Option<std::sync::Arc<dyn super::workloads::WorkloadService>>,
    /// `/v1/bgp/routes`, for `tortie bgp routes` (absent when BGP is off).
    pub rib: Option<Rib>,
}

/// A bound API socket; dropping it removes the socket file.
pub struct ApiListener {
    listener: Option<UnixListener>,
    path: PathBuf,
}

impl ApiListener {
    /// Binds the socket, replacing a stale socket file left by a dead agent
    /// but refusing to steal one that a live agent still answers on.
    pub async fn bind(path: &Path) -> Result<Self, ServeError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ServeError::Dir { path: path.to_path_buf(), source: e })?;
        }
        if path.exists() {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(ServeError::InUse(path.to_path_buf()));
            }
            let _ = std::fs::remove_file(path);
        }
        let listener =
            UnixListener::bind(path).map_err(|e| ServeError::Bind { path: path.to_path_buf(), source: e })?;
        Ok(ApiListener { listener: Some(listener), path: path.to_path_buf() })
    }

    /// Serves until `shutdown` completes: the status report from its
    /// `watch`, and the RIB (when BGP runs) by asking its task —
    /// `/v1/bgp/routes` walks every route, `/v1/bgp/stats` only reads the
    /// counters (cheap enough to poll while a million routes come in).
    pub async fn serve(
        mut self,
        status: watch::Receiver<StatusReport>,
        services: ApiServices,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let mut app = Router::new()
            .route("/v1/status", get(get_status))
            .route("/livez", get(|| async { "ok\n" }))
            .with_state(status)
            .merge(
                Router::new()
                    .route("/v1/bgp/routes", get(get_routes))
                    .route("/v1/bgp/stats", get(get_stats))
                    .with_state(services.rib),
            );
        if let Some(workloads) = services.workloads {
            app = app.merge(super::workloads::router(workloads));
        }
        let listener = self.listener.take().expect("serve is called once");
        super::connections::serve(listener, app, shutdown).await
    }
}

impl Drop for ApiListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn get_status(State(status): State<watch::Receiver<StatusReport>>) -> Json<StatusReport> {
    Json(status.borrow().clone())
}

async fn get_routes(State(rib): State<Option<Rib>>) -> Result<Json<RibSnapshot>, (StatusCode, &'static str)> {
    match rib {
        Some(rib) => Ok(Json(rib.snapshot().await)),
        None => Err((StatusCode::NOT_FOUND, "BGP is disabled on this node (bgp.enabled: false)\n")),
    }
}

/// The RIB's counters alone: no route is walked, so pollers (benchmarks,
/// scripts waiting for a table) do not slow the RIB down.
async fn get_stats(State(rib): State<Option<Rib>>) -> Result<Json<RibStats>, (StatusCode, &'static str)> {
    match rib {
        Some(rib) => Ok(Json(rib.stats().await)),
        None => Err((StatusCode::NOT_FOUND, "BGP is disabled on this node (bgp.enabled: false)\n")),
    }
}
