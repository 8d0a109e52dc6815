//! Serves the API's connections within bounds, so idle or slow clients cannot starve the ones
//! that matter (`tortie status`, the CNI plugin, probes) or grow the agent's memory: at most
//! [`MAX_CONNECTIONS`] at once (more wait in the socket's backlog), a request's headers within
//! [`HEADER_READ_TIMEOUT`], one request per connection, and every connection closed after
//! [`CONNECTION_TIMEOUT`] whatever it is doing.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::{Semaphore, watch};

/// Connections served at once; the next wait in the listen backlog until one ends.
pub const MAX_CONNECTIONS: usize = 128;
/// A client must have sent its whole request head by then (local clients send it at once):
/// an idle or slowloris connection holds its slot no longer than this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection lives: a slow body, or a reader that stopped reading.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);
/// The pause after a failed accept (out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` completes, then lets the requests in flight
/// finish (each within [`CONNECTION_TIMEOUT`]) and returns.
pub async fn serve(
    listener: UnixListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let stream = match stream {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(subsys = "api", error = %e, "cannot accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let (app, mut stop) = (app.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let _slot = permit;
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).keep_alive(false);
            let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
            tokio::pin!(connection);
            let deadline = tokio::time::sleep(CONNECTION_TIMEOUT);
            tokio::pin!(deadline);
            let mut stopping = false;
            loop {
                tokio::select! {
                    _ = connection.as_mut() => break,
                    _ = &mut deadline => break,
                    _ = stop.wait_for(|s| *s), if !stopping => {
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    // Every slot back: every connection has ended.
    let all = u32::try_from(MAX_CONNECTIONS).expect("a small number");
    let _ = slots.acquire_many(all).await;
    Ok(())
}
