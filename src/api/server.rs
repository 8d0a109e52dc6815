//! Serves the local API on a unix socket.

use super::status::StatusReport;
use crate::bgp::rib::{Rib, RibSnapshot, RibStats, RouteQuery};
use crate::config::ApiConfig;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
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
    #[error("api.socket_group {group:?}: {reason}")]
    Group { group: String, reason: String },
    #[error("cannot set the mode or group of api.socket {path}: {source}")]
    Mode { path: PathBuf, source: std::io::Error },
}

/// The socket's mode: the agent's user and the socket's group may connect, nobody else.
pub const SOCKET_MODE: u32 = 0o660;
/// The mode of a directory the agent creates for the socket.
const DIR_MODE: u32 = 0o755;

/// The services behind the API besides status, one field each; a `None` service's routes are
/// not served (404).
#[derive(Default)]
pub struct ApiServices {
    /// `/v1/workloads…`, for the CNI plugin.
    pub workloads: Option<std::sync::Arc<dyn super::workloads::WorkloadService>>,
    /// `/v1/bgp/routes[?prefix=P[&longer=true]][&peer=A]`, for `tortie bgp routes` (absent when
    /// BGP is off).
    pub rib: Option<Rib>,
    /// The service prefixes this node advertises: their routes' origin in `/v1/bgp/routes`.
    pub service_prefixes: Option<watch::Receiver<crate::services::Advertisements>>,
    /// `/v1/policies…`, for `tortie policy`: the network-policy follower's state.
    pub policy: Option<watch::Receiver<crate::agent::policy::PolicyState>>,
    /// `/v1/ipam…`, for `tortie ipam`.
    pub ipam: Option<crate::ipam::admin::Admin>,
}

/// What `/v1/bgp/routes` reads.
#[derive(Clone)]
struct RoutesState {
    rib: Option<Rib>,
    service_prefixes: Option<watch::Receiver<crate::services::Advertisements>>,
}

/// A bound API socket; dropping it removes the socket file.
pub struct ApiListener {
    listener: Option<UnixListener>,
    path: PathBuf,
}

impl ApiListener {
    /// Binds the socket `config.socket` with mode [`SOCKET_MODE`] and group
    /// `config.socket_group` whatever the umask, replacing a stale socket file left by a dead
    /// agent but refusing to steal one that a live agent still answers on.
    pub async fn bind(config: &ApiConfig) -> Result<Self, ServeError> {
        let path = config.socket.as_path();
        let gid = config.socket_group.as_deref().map(group_id).transpose()?;
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(|e| ServeError::Dir { path: path.to_path_buf(), source: e })?;
        }
        if path.exists() {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(ServeError::InUse(path.to_path_buf()));
            }
            let _ = std::fs::remove_file(path);
        }
        // Bound under a name of its own, given its mode and group, then renamed into place: no
        // client ever finds the socket with the umask's mode.
        let mut staging = path.as_os_str().to_owned();
        staging.push(format!(".{}.new", std::process::id()));
        let staging = PathBuf::from(staging);
        let _ = std::fs::remove_file(&staging);
        let listener =
            UnixListener::bind(&staging).map_err(|e| ServeError::Bind { path: path.to_path_buf(), source: e })?;
        let secured = std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(SOCKET_MODE))
            .and_then(|()| std::os::unix::fs::chown(&staging, None, gid))
            .and_then(|()| std::fs::rename(&staging, path));
        if let Err(e) = secured {
            let _ = std::fs::remove_file(&staging);
            return Err(ServeError::Mode { path: path.to_path_buf(), source: e });
        }
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
                    .with_state(RoutesState { rib: services.rib, service_prefixes: services.service_prefixes }),
            );
        if let Some(workloads) = services.workloads {
            app = app.merge(super::workloads::router(workloads));
        }
        if let Some(policy) = services.policy {
            app = app.merge(super::policy::router(policy));
        }
        if let Some(ipam) = services.ipam {
            app = app.merge(super::ipam::router(ipam));
        }
        let listener = self.listener.take().expect("serve is called once");
        super::connections::serve(listener, app, shutdown).await
    }
}

/// The id of group `group`: a number as is, else looked up by name.
fn group_id(group: &str) -> Result<u32, ServeError> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(ServeError::Group { group: group.to_string(), reason: "no such group on this host".into() }),
        Err(e) => Err(ServeError::Group { group: group.to_string(), reason: format!("cannot look it up: {e}") }),
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

/// The routes the query string selects ([`RouteQuery`]; all without one), 400 naming a bad
/// parameter.
async fn get_routes(
    State(state): State<RoutesState>,
    RawQuery(query): RawQuery,
) -> Result<Json<RibSnapshot>, (StatusCode, String)> {
    let query = RouteQuery::from_query_string(query.as_deref().unwrap_or_default())
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}\n")))?;
    match state.rib {
        Some(rib) => {
            let mut snapshot = rib.snapshot_matching(query).await;
            if let Some(services) = &state.service_prefixes {
                let services = services.borrow();
                for route in snapshot.routes.iter_mut().filter(|r| r.peer.is_none()) {
                    if let Some(advertised) = services.prefixes.get(&route.prefix) {
                        let origins: Vec<String> = advertised.origins.iter().map(ToString::to_string).collect();
                        route.origin_of_own = Some(origins.join("; "));
                    }
                }
            }
            Ok(Json(snapshot))
        }
        None => Err((StatusCode::NOT_FOUND, BGP_DISABLED.to_string())),
    }
}

/// The answer of `/v1/bgp/…` when BGP is off.
const BGP_DISABLED: &str = "BGP is disabled on this node (bgp.enabled: false)\n";

/// The RIB's counters alone: no route is walked, so pollers (benchmarks,
/// scripts waiting for a table) do not slow the RIB down.
async fn get_stats(State(state): State<RoutesState>) -> Result<Json<RibStats>, (StatusCode, &'static str)> {
    match state.rib {
        Some(rib) => Ok(Json(rib.stats().await)),
        None => Err((StatusCode::NOT_FOUND, BGP_DISABLED)),
    }
}
