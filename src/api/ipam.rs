//! The IPAM API `tortie ipam` uses, so the operator's commands run in the agent, its node's one
//! writer (architecture invariant 5), answered by [`crate::ipam::admin::Admin`]:
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /v1/ipam/check` | — | [`CheckReport`], leaks judged against live workloads |
//! | `GET /v1/ipam/configuration` | — | [`ConfigurationView`] |
//! | `GET /v1/ipam/addresses/{ip}` | — | [`AddressView`]; 400 for an address in no pool |
//! | `POST /v1/ipam/release` | [`ReleaseRequest`] | [`ReleaseAnswer`]; 409 when refused (a live workload's address, a stale report) |
//!
//! Errors are `{"error": "..."}`; a datastore failure is 503.

use crate::ipam::admin::{AddressView, Admin, AdminError, ConfigurationView, ReleaseAnswer, ReleaseRequest};
use crate::ipam::check::CheckReport;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::net::IpAddr;

type Failure = (StatusCode, Json<serde_json::Value>);

fn failure(e: AdminError) -> Failure {
    let status = match &e {
        AdminError::Refused(_) => StatusCode::CONFLICT,
        AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
        AdminError::Ipam(_) | AdminError::Pods(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    if status.is_server_error() {
        tracing::warn!(subsys = "api", error = %e, "IPAM request failed");
    }
    (status, Json(serde_json::json!({"error": e.to_string()})))
}

/// The IPAM routes, answered by `admin`.
pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/v1/ipam/check", get(check))
        .route("/v1/ipam/configuration", get(configuration))
        .route("/v1/ipam/addresses/{ip}", get(address))
        .route("/v1/ipam/release", post(release))
        .with_state(admin)
}

async fn check(State(admin): State<Admin>) -> Result<Json<CheckReport>, Failure> {
    admin.check().await.map(Json).map_err(failure)
}

async fn configuration(State(admin): State<Admin>) -> Result<Json<ConfigurationView>, Failure> {
    admin.configuration().await.map(Json).map_err(failure)
}

async fn address(State(admin): State<Admin>, Path(ip): Path<IpAddr>) -> Result<Json<AddressView>, Failure> {
    admin.address(ip).await.map(Json).map_err(failure)
}

async fn release(
    State(admin): State<Admin>,
    Json(request): Json<ReleaseRequest>,
) -> Result<Json<ReleaseAnswer>, Failure> {
    admin.release(&request).await.map(Json).map_err(failure)
}
