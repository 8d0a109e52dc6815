//! The workload API the CNI plugin talks to (`docs/cni.md`): allocate a pod's addresses, program
//! its host route once the veth exists, release it, list, and collect garbage.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `POST /v1/workloads` | [`AllocateRequest`] | [`Workload`] (the existing one for a known handle) |
//! | `PUT /v1/workloads/{handle}/route` | — | [`Workload`] with `route_programmed` |
//! | `DELETE /v1/workloads/{handle}` | — | [`Released`] (also for an unknown handle) |
//! | `GET /v1/workloads` | — | `[Workload]`, this node's |
//! | `POST /v1/workloads/gc` | [`GcRequest`] | [`GcAnswer`] |
//!
//! Handles are case-insensitive: the API lower-cases them ([`handle_key`]).
//!
//! Every request acts on this node's pods only: a handle holding another node's address or a
//! tunnel address is refused with 403.
//!
//! Errors are `{"error": "..."}` with 400 (bad request), 403 (not this node's pod), 404 (unknown handle),
//! 409 (the address asked for is in use), 503 (no pool,
//! IPAM stopped, datastore unreachable: try again later) or 500; the agent logs each 5xx.

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the plugin asks for at ADD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocateRequest {
    /// The IPAM handle: `<network name>.<container id>`.
    pub handle: String,
    pub container_id: String,
    /// From CNI_ARGS `K8S_POD_NAME` / `K8S_POD_NAMESPACE`; empty outside Kubernetes.
    #[serde(default)]
    pub pod: String,
    #[serde(default)]
    pub namespace: String,
    pub netns: String,
    pub ifname: String,
    /// The host side of the pod's veth pair (which the plugin creates after this answer).
    pub host_interface: String,
    /// Calico's pod IPAM annotations (`cni.projectcalico.org/ipAddrs`, `ipv4pools`, `ipv6pools`)
    /// as the runtime passed them in CNI_ARGS; in Kubernetes mode the Pod's own win.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The pod's labels, service account and named ports, which network policy matches
    /// (from CNI_ARGS `TORTIE_LABELS`, `TORTIE_SERVICE_ACCOUNT`, `TORTIE_PORTS`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<WorkloadPort>,
}

/// A pod's labels, service account and named ports.
pub type PodIdentity = (BTreeMap<String, String>, String, Vec<WorkloadPort>);

/// A port the pod names (a container port), as `name:protocol:number` on command lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadPort {
    pub name: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    pub port: u16,
}

impl WorkloadPort {
    /// Reads `name:protocol:number` (protocol in any case); the error names the text.
    pub fn parse(text: &str) -> Result<WorkloadPort, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let [name, protocol, number] = parts[..] else {
            return Err(format!("port {text:?}: write name:protocol:number, as http:tcp:80"));
        };
        let port = WorkloadPort {
            name: name.to_string(),
            protocol: protocol.to_ascii_uppercase(),
            port: number.parse().map_err(|_| format!("port {text:?}: {number:?} is not a port number"))?,
        };
        port.check().map(|()| port)
    }

    /// Whether the port can be named in a policy; the error names the field and value.
    pub fn check(&self) -> Result<(), String> {
        use crate::datastore::resources::policy_rule::is_port_name;
        if !is_port_name(&self.name) {
            return Err(format!("port name {:?}: use 1-15 of a-z, 0-9 and '-', with a letter", self.name));
        }
        if !matches!(self.protocol.as_str(), "TCP" | "UDP" | "SCTP") {
            return Err(format!("port {:?}: protocol {:?} is not TCP, UDP or SCTP", self.name, self.protocol));
        }
        if self.port == 0 {
            return Err(format!("port {:?}: 0 is not a port number", self.name));
        }
        Ok(())
    }

    /// The IANA protocol number (checked by [`WorkloadPort::check`]).
    pub fn protocol_number(&self) -> u8 {
        use crate::datastore::resources::policy_rule::{SCTP, TCP, UDP};
        match self.protocol.as_str() {
            "UDP" => UDP,
            "SCTP" => SCTP,
            _ => TCP,
        }
    }
}

/// A pod's addresses and where they are routed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    pub handle: String,
    pub container_id: String,
    pub pod: String,
    pub namespace: String,
    pub netns: String,
    pub ifname: String,
    pub host_interface: String,
    /// One /32 and/or one /128.
    pub addresses: Vec<IpNetwork>,
    /// The MTU the pod's interface must use (tunnel overhead included).
    pub mtu: u32,
    /// Unix seconds of the allocation.
    pub allocated_at: u64,
    /// The host routes are in the kernel (through the route programmer).
    pub route_programmed: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<WorkloadPort>,
}

/// The answer to a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Released {
    pub handle: String,
    /// Addresses freed by this call (0 when it was released already).
    pub released: usize,
}

/// CNI 1.1 GC: every attachment of network `network` not listed is garbage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GcRequest {
    /// The network name: only handles `<network>.<…>` are considered.
    pub network: String,
    /// The live handles (`<network>.<container id>`).
    pub valid_handles: Vec<String>,
}

/// What a GC released.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GcAnswer {
    pub released: Vec<String>,
    /// Not listed but younger than the grace period: kept this time.
    pub kept_young: Vec<String>,
}

/// Why a workload request failed; the variant picks the HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// A field of the request is unusable (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such handle on this node (404).
    #[error("{0}")]
    NotFound(String),
    /// The handle holds addresses that are not this node's pods' (another node's, a tunnel
    /// address): the API of one node never changes them (403).
    #[error("{0}")]
    Forbidden(String),
    /// The address asked for is another pod's (409).
    #[error("{0}")]
    Conflict(String),
    /// Not possible now: no pool configured, IPAM stopped (503).
    #[error("{0}")]
    Unavailable(String),
    /// Datastore or kernel failure (500).
    #[error("{0}")]
    Internal(String),
}

impl WorkloadError {
    /// The HTTP status this error is sent with.
    pub fn status(&self) -> StatusCode {
        match self {
            WorkloadError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WorkloadError::NotFound(_) => StatusCode::NOT_FOUND,
            WorkloadError::Forbidden(_) => StatusCode::FORBIDDEN,
            WorkloadError::Conflict(_) => StatusCode::CONFLICT,
            WorkloadError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WorkloadError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for WorkloadError {
    fn into_response(self) -> Response {
        (self.status(), Json(serde_json::json!({"error": self.to_string()}))).into_response()
    }
}

/// What the agent implements behind the workload API.
#[async_trait]
pub trait WorkloadService: Send + Sync {
    async fn allocate(&self, request: AllocateRequest) -> Result<Workload, WorkloadError>;
    async fn program_route(&self, handle: &str) -> Result<Workload, WorkloadError>;
    async fn release(&self, handle: &str) -> Result<Released, WorkloadError>;
    async fn list(&self) -> Result<Vec<Workload>, WorkloadError>;
    async fn gc(&self, request: GcRequest) -> Result<GcAnswer, WorkloadError>;
}

type Service = Arc<dyn WorkloadService>;

/// The workload routes, served by `service`.
pub fn router(service: Service) -> Router {
    Router::new()
        .route("/v1/workloads", post(allocate).get(list))
        .route("/v1/workloads/gc", post(gc))
        .route("/v1/workloads/{handle}/route", put(route))
        .route("/v1/workloads/{handle}", get(show).delete(release))
        .with_state(service)
}

/// Logs a failure the plugin will retry (5xx: the runtime is told to try again later), so the
/// operator sees why pods wait; refusals (4xx) are the caller's to report.
fn logged<'a>(request: &'static str, handle: &'a str) -> impl FnOnce(WorkloadError) -> WorkloadError + 'a {
    move |e| {
        if e.status().is_server_error() {
            tracing::warn!(subsys = "cni", request, handle, status = e.status().as_u16(), error = %e, "workload request failed");
        }
        e
    }
}

/// The handle as stored: handles are case-insensitive, lower-cased as Calico names its handle
/// records, so a DEL naming the container in another case than its ADD finds its addresses.
pub fn handle_key(handle: &str) -> String {
    handle.to_ascii_lowercase()
}

async fn allocate(
    State(s): State<Service>,
    Json(mut request): Json<AllocateRequest>,
) -> Result<Json<Workload>, WorkloadError> {
    request.handle = handle_key(&request.handle);
    let handle = request.handle.clone();
    s.allocate(request).await.map(Json).map_err(logged("allocate", &handle))
}

async fn route(State(s): State<Service>, Path(handle): Path<String>) -> Result<Json<Workload>, WorkloadError> {
    let handle = handle_key(&handle);
    s.program_route(&handle).await.map(Json).map_err(logged("route", &handle))
}

async fn release(State(s): State<Service>, Path(handle): Path<String>) -> Result<Json<Released>, WorkloadError> {
    let handle = handle_key(&handle);
    s.release(&handle).await.map(Json).map_err(logged("release", &handle))
}

async fn show(State(s): State<Service>, Path(handle): Path<String>) -> Result<Json<Workload>, WorkloadError> {
    let handle = handle_key(&handle);
    let all = s.list().await?;
    all.into_iter()
        .find(|w| w.handle == handle)
        .map(Json)
        .ok_or_else(|| WorkloadError::NotFound(format!("no workload with handle {handle:?} on this node")))
}

async fn list(State(s): State<Service>) -> Result<Json<Vec<Workload>>, WorkloadError> {
    s.list().await.map(Json)
}

async fn gc(State(s): State<Service>, Json(mut request): Json<GcRequest>) -> Result<Json<GcAnswer>, WorkloadError> {
    request.network = handle_key(&request.network);
    request.valid_handles = request.valid_handles.iter().map(|h| handle_key(h)).collect();
    s.gc(request).await.map(Json).map_err(logged("gc", ""))
}
