//! The network-policy API `tortie policy` uses, answered from the policy follower's state
//! (the policies the agent programs, its view of every pod and namespace):
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /v1/policies` | — | `[PolicyEntry]`: the valid ones in the order they apply, then the invalid |
//! | `POST /v1/policies/trace` | [`TraceRequest`] | [`Trace`](crate::policy::trace::Trace); 404 naming an unknown pod, 400 for a bad request |

use crate::agent::policy::PolicyState;
use crate::policy::model::sorted;
use crate::policy::trace::{Target, Trace, TraceError, trace};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// One policy as `tortie policy list` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyEntry {
    /// `NetworkPolicy`, `GlobalNetworkPolicy` or `KubernetesNetworkPolicy`.
    pub kind: String,
    /// `namespace/name` for the namespaced kinds.
    pub name: String,
    /// Absent: after every number (and for an invalid policy).
    #[serde(default)]
    pub order: Option<f64>,
    /// The canonical selector of the endpoints it applies to (empty for an invalid policy).
    pub selector: String,
    /// `Ingress`, `Egress` or both.
    pub types: Vec<String>,
    pub ingress_rules: usize,
    pub egress_rules: usize,
    /// `valid` or `invalid`.
    pub status: String,
    /// Why it is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What `tortie policy trace` asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRequest {
    /// `namespace/pod`.
    pub from: String,
    /// `namespace/pod` or an address.
    pub to: String,
    pub port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

/// The policies of `state`: the valid ones in the order they apply, then the invalid.
pub fn entries(state: &PolicyState) -> Vec<PolicyEntry> {
    let inputs = &state.inputs;
    let mut out: Vec<PolicyEntry> = sorted(&inputs.policies)
        .into_iter()
        .map(|p| {
            let (kind, name) = inputs.origin(&p.name);
            let mut types = Vec::new();
            types.extend(p.ingress.as_ref().map(|_| "Ingress".to_string()));
            types.extend(p.egress.as_ref().map(|_| "Egress".to_string()));
            PolicyEntry {
                kind,
                name,
                order: p.order,
                selector: p.applies.selector.selector.clone(),
                types,
                ingress_rules: p.ingress.as_ref().map_or(0, Vec::len),
                egress_rules: p.egress.as_ref().map_or(0, Vec::len),
                status: "valid".into(),
                reason: None,
            }
        })
        .collect();
    out.extend(state.invalid.iter().map(|i| PolicyEntry {
        kind: i.kind.clone(),
        name: i.name.clone(),
        order: None,
        selector: String::new(),
        types: Vec::new(),
        ingress_rules: 0,
        egress_rules: 0,
        status: "invalid".into(),
        reason: Some(i.reason.clone()),
    }));
    out
}

type Failure = (StatusCode, Json<serde_json::Value>);

fn failure(status: StatusCode, message: String) -> Failure {
    (status, Json(serde_json::json!({"error": message})))
}

/// The policy routes, answered from `state`.
pub fn router(state: watch::Receiver<PolicyState>) -> Router {
    Router::new().route("/v1/policies", get(list)).route("/v1/policies/trace", post(trace_request)).with_state(state)
}

async fn list(State(state): State<watch::Receiver<PolicyState>>) -> Json<Vec<PolicyEntry>> {
    Json(entries(&state.borrow()))
}

async fn trace_request(
    State(state): State<watch::Receiver<PolicyState>>,
    Json(request): Json<TraceRequest>,
) -> Result<Json<Trace>, Failure> {
    let inputs = state.borrow().inputs.clone();
    let to = match request.to.parse() {
        Ok(address) => Target::Address(address),
        Err(_) => Target::Pod(request.to.clone()),
    };
    let traced = trace(
        &inputs.policies,
        &inputs.endpoints,
        &inputs.namespaces,
        &request.from,
        &to,
        &request.protocol,
        request.port,
    );
    traced.map(Json).map_err(|e| match e {
        TraceError::UnknownPod(_) => failure(StatusCode::NOT_FOUND, e.to_string()),
        TraceError::Invalid(_) => failure(StatusCode::BAD_REQUEST, e.to_string()),
    })
}
