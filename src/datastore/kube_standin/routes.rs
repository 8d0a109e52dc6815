//! The stand-in's HTTP routes: the Kubernetes REST paths for cluster-scoped and namespaced
//! resources, watch as a stream of JSON lines, PATCH of the status subresource, and field
//! selectors on lists (`spec.nodeName`, `metadata.name`, `metadata.namespace` with `=`; any other
//! selector is refused with 400 rather than ignored). Every request is recorded in the audit log.

use super::audit;
use super::state::{Change, Failure, Shared};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, patch};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

type Params = Path<HashMap<String, String>>;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/apis/{group}/{version}/{plural}", get(list_or_watch).post(create))
        .route("/apis/{group}/{version}/{plural}/{name}", get(get_one).put(replace).delete(delete))
        .route("/apis/{group}/{version}/{plural}/{name}/status", patch(patch_status))
        .route("/apis/{group}/{version}/namespaces/{namespace}/{plural}", get(list_or_watch).post(create))
        .route(
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
            get(get_one).put(replace).delete(delete).patch(patch_object),
        )
        .route("/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/status", patch(patch_status))
        .route("/api/{version}/{plural}", get(list_or_watch).post(create))
        .route("/api/{version}/{plural}/{name}", get(get_one).put(replace).delete(delete))
        .route("/api/{version}/{plural}/{name}/status", patch(patch_status))
        .route("/api/{version}/namespaces/{namespace}/{plural}", get(list_or_watch).post(create))
        .route(
            "/api/{version}/namespaces/{namespace}/{plural}/{name}",
            get(get_one).put(replace).delete(delete).patch(patch_object),
        )
        .route("/api/{version}/namespaces/{namespace}/{plural}/{name}/status", patch(patch_status))
        .layer(middleware::from_fn_with_state(shared.clone(), record))
        .with_state(shared)
}

async fn record(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let uri = request.uri();
    if let Some(call) = audit::attributes(request.method(), uri.path(), uri.query().unwrap_or_default()) {
        shared.record(call);
    }
    next.run(request).await
}

/// `<group>/<plural>`, with `core` for the core group.
fn collection(params: &HashMap<String, String>) -> String {
    let group = params.get("group").map_or("core", String::as_str);
    format!("{group}/{}", params.get("plural").map_or("", String::as_str))
}

/// The store key of the object named in the path: `<namespace>/<name>` for namespaced ones.
fn key(params: &HashMap<String, String>) -> String {
    let name = params.get("name").cloned().unwrap_or_default();
    match params.get("namespace") {
        Some(ns) => format!("{ns}/{name}"),
        None => name,
    }
}

fn status((code, reason, message): Failure) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn failure(failure: Failure) -> Response {
    let code = StatusCode::from_u16(failure.0).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(status(failure))).into_response()
}

fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

/// Decodes `%XX` escapes (field selectors arrive as `spec.nodeName%3Dnode-a`) and `+`.
fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The field selector's requirements as (field path, value); `Err` for what is not supported.
fn field_selector(selector: &str) -> Result<Vec<(&str, &str)>, Failure> {
    selector
        .split(',')
        .filter(|term| !term.is_empty())
        .map(|term| match term.split_once('=') {
            Some((field @ ("spec.nodeName" | "metadata.name" | "metadata.namespace"), value))
                if !field.ends_with('!') && !value.starts_with('=') =>
            {
                Ok((field, value))
            }
            _ => Err((400, "BadRequest", format!("the stand-in does not support the field selector {term:?}"))),
        })
        .collect()
}

fn matches(object: &Value, requirements: &[(&str, &str)]) -> bool {
    requirements.iter().all(|(field, value)| {
        let pointer = format!("/{}", field.replace('.', "/"));
        object.pointer(&pointer).and_then(Value::as_str).unwrap_or_default() == *value
    })
}

async fn get_one(State(shared): State<Arc<Shared>>, Path(params): Params) -> Response {
    let name = key(&params);
    match shared.get(&collection(&params), &name) {
        Some(object) => Json(object).into_response(),
        None => failure((404, "NotFound", format!("\"{name}\" not found"))),
    }
}

async fn create(State(shared): State<Arc<Shared>>, Path(params): Params, Json(mut object): Json<Value>) -> Response {
    let Some(mut name) = object.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string) else {
        return failure((422, "Invalid", "metadata.name: Required value".into()));
    };
    if let Some(ns) = params.get("namespace") {
        object["metadata"]["namespace"] = json!(ns);
        name = format!("{ns}/{name}");
    }
    match shared.create(&collection(&params), &name, object) {
        Ok(object) => (StatusCode::CREATED, Json(object)).into_response(),
        Err(f) => failure(f),
    }
}

async fn replace(State(shared): State<Arc<Shared>>, Path(params): Params, Json(object): Json<Value>) -> Response {
    let name = params.get("name").cloned().unwrap_or_default();
    if object.pointer("/metadata/name").and_then(Value::as_str) != Some(name.as_str()) {
        return failure((400, "BadRequest", "the name of the object does not match the name in the URL".into()));
    }
    match shared.replace(&collection(&params), &key(&params), object) {
        Ok(object) => Json(object).into_response(),
        Err(f) => failure(f),
    }
}

async fn delete(State(shared): State<Arc<Shared>>, Path(params): Params, body: Bytes) -> Response {
    let name = key(&params);
    let options: Value = if body.is_empty() { json!({}) } else { serde_json::from_slice(&body).unwrap_or(json!({})) };
    let precondition = options.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_string);
    match shared.delete(&collection(&params), &name, precondition) {
        Ok(object) => Json(object).into_response(),
        Err(f) => failure(f),
    }
}

async fn list_or_watch(State(shared): State<Arc<Shared>>, Path(params): Params, uri: Uri) -> Response {
    let query = query(&uri);
    let collection = collection(&params);
    if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
        return watch(shared, collection, &query);
    }
    if query.get("labelSelector").is_some_and(|s| !s.is_empty()) {
        return failure((400, "BadRequest", "the stand-in does not support label selectors".into()));
    }
    let mut requirements = match field_selector(query.get("fieldSelector").map_or("", String::as_str)) {
        Ok(r) => r,
        Err(f) => return failure(f),
    };
    if let Some(ns) = params.get("namespace") {
        requirements.push(("metadata.namespace", ns.as_str()));
    }
    let (items, revision) = shared.list(&collection);
    let items: Vec<Value> = items.into_iter().filter(|o| matches(o, &requirements)).collect();
    Json(json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": revision.to_string()},
                "items": items}))
    .into_response()
}

/// The patch type of a request: `Ok(true)` for a strategic merge patch, `Ok(false)` for a JSON
/// merge patch; JSON patch and server-side apply are refused with 415.
fn patch_type(headers: &axum::http::HeaderMap) -> Result<bool, Failure> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    match content_type.split(';').next().unwrap_or_default().trim() {
        "application/strategic-merge-patch+json" => Ok(true),
        "application/merge-patch+json" => Ok(false),
        other => Err((415, "UnsupportedMediaType", format!("the stand-in does not support patch type {other:?}"))),
    }
}

/// PATCH of a namespaced object as a whole (a merge patch; the name and namespace stay).
async fn patch_object(
    State(shared): State<Arc<Shared>>,
    Path(params): Params,
    headers: axum::http::HeaderMap,
    Json(patch): Json<Value>,
) -> Response {
    let strategic = match patch_type(&headers) {
        Ok(s) => s,
        Err(refused) => return failure(refused),
    };
    match shared.patch(&collection(&params), &key(&params), &patch, strategic) {
        Ok(object) => Json(object).into_response(),
        Err(f) => failure(f),
    }
}

/// PATCH of the status subresource: only the patch's `status` is applied. A strategic merge patch
/// merges `conditions` by `type` (the Node and Pod schemas' merge key) and other lists replace;
/// a JSON merge patch replaces lists. Preconditions in a patch are not checked; JSON patch and
/// server-side apply are refused with 415.
async fn patch_status(
    State(shared): State<Arc<Shared>>,
    Path(params): Params,
    headers: axum::http::HeaderMap,
    Json(patch): Json<Value>,
) -> Response {
    let strategic = match patch_type(&headers) {
        Ok(s) => s,
        Err(refused) => return failure(refused),
    };
    let status = patch.get("status").cloned().unwrap_or(json!({}));
    match shared.patch_status(&collection(&params), &key(&params), &status, strategic) {
        Ok(object) => Json(object).into_response(),
        Err(f) => failure(f),
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

fn watch(shared: Arc<Shared>, collection: String, query: &HashMap<String, String>) -> Response {
    let bookmarks = query.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = Duration::from_secs(query.get("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(1800));
    // Without a resourceVersion ("any"), Kubernetes first sends the current objects as ADDED.
    let from = query.get("resourceVersion").and_then(|rv| rv.parse::<u64>().ok()).filter(|rv| *rv > 0);
    let (initial, from) = match from {
        Some(from) => (Vec::new(), from),
        None => {
            let (items, revision) = shared.list(&collection);
            (items, revision)
        }
    };
    // A small buffer: a client that stops reading stalls this task, which then falls behind the
    // live feed and ends the watch with 410, as the API server does with slow watchers.
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    match shared.watch(&collection, from) {
        Err(gone) => {
            let _ = tx.try_send(line("ERROR", &status(gone)));
        }
        Ok(start) => {
            tokio::spawn(async move {
                let interval = shared.bookmark_interval;
                let mut seen = start.backlog.last().map_or(from, |c| c.revision).max(from);
                for object in &initial {
                    if tx.send(line("ADDED", object)).await.is_err() {
                        return;
                    }
                }
                for change in &start.backlog {
                    if tx.send(line(change.kind, &change.object)).await.is_err() {
                        return;
                    }
                }
                stream_live(&tx, &collection, start.live, start.cut, &mut seen, bookmarks, interval, timeout).await;
            });
        }
    }
    let body =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[allow(clippy::too_many_arguments)]
async fn stream_live(
    tx: &mpsc::Sender<Bytes>,
    collection: &str,
    mut live: broadcast::Receiver<Change>,
    mut cut: tokio::sync::watch::Receiver<u64>,
    seen: &mut u64,
    bookmarks: bool,
    interval: Duration,
    timeout: Duration,
) {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(change) => {
                    if change.revision <= *seen {
                        continue;
                    }
                    *seen = change.revision;
                    if change.collection == collection && tx.send(line(change.kind, &change.object)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let gone = (410, "Expired", format!("watch fell behind; resume from {seen} is no longer possible"));
                    let _ = tx.send(line("ERROR", &status(gone))).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ticker.tick(), if bookmarks => {
                // Every change up to `seen` has been delivered, so a bookmark there is truthful.
                let bookmark = json!({"kind": "Bookmark", "apiVersion": "v1",
                                      "metadata": {"resourceVersion": seen.to_string()}});
                if tx.send(line("BOOKMARK", &bookmark)).await.is_err() {
                    return;
                }
            }
            _ = cut.changed() => return,
            _ = &mut deadline => return,
            _ = tx.closed() => return,
        }
    }
}
