//! `/metrics` (OpenMetrics text), `/livez` and `/readyz` over HTTP on the
//! metrics port.

use super::readiness::{HealthInput, readiness};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// The OpenMetrics content type, what Prometheus asks for.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic text format, for clients that do not ask for OpenMetrics
/// (curl, promtool, older scrapers).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Components that have not answered a liveness probe, and for how long.
pub type Stalled = std::collections::BTreeMap<&'static str, std::time::Duration>;

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    health: watch::Receiver<HealthInput>,
    stalled: watch::Receiver<Stalled>,
    started: Instant,
}

/// The router; serve it with `axum::serve` on the metrics listener.
pub fn router(
    registry: Arc<Registry>,
    health: watch::Receiver<HealthInput>,
    stalled: watch::Receiver<Stalled>,
    started: Instant,
) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(live))
        .route("/readyz", get(ready))
        .with_state(AppState { registry, health, stalled, started })
}

/// Live while every probed component answers (the agent exits when a task ends).
async fn live(State(s): State<AppState>) -> impl IntoResponse {
    let stalled = s.stalled.borrow().clone();
    if stalled.is_empty() {
        return (StatusCode::OK, "ok\n".to_string());
    }
    let lines: Vec<String> =
        stalled.iter().map(|(name, silent)| format!("{name}: no answer for {}s", silent.as_secs())).collect();
    (StatusCode::SERVICE_UNAVAILABLE, format!("not live:\n{}\n", lines.join("\n")))
}

async fn metrics(State(s): State<AppState>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let mut body = String::new();
    let (encoded, content_type) = if openmetrics {
        (prometheus_client::encoding::text::encode(&mut body, &s.registry), CONTENT_TYPE)
    } else {
        (prometheus_client::encoding::prometheus_text::encode(&mut body, &s.registry), TEXT_CONTENT_TYPE)
    };
    match encoded {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            format!("encoding metrics failed: {e}\n"),
        ),
    }
}

async fn ready(State(s): State<AppState>) -> impl IntoResponse {
    let input = s.health.borrow().clone();
    match readiness(&input, s.started.elapsed()) {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(reasons) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready:\n{}\n", reasons.join("\n"))),
    }
}
