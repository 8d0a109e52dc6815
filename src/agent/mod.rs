//! `tortie node`: the node agent. It owns the start-up order and supervises
//! one task per component, as drawn in ARCHITECTURE.md. Today it runs the
//! local API; the datastore, BGP, dataplane and IPAM tasks join as their
//! issues land.

use crate::api::StatusReport;
use crate::api::server::{ApiListener, ServeError};
use crate::config::Config;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Api(#[from] ServeError),
    #[error("cannot install the {0} handler: {1}")]
    Signal(&'static str, std::io::Error),
    #[error("the local API failed: {0}")]
    ApiServe(std::io::Error),
    #[error("cannot determine the node name: {0} (set node.name or TORTIE_NODE_NAME)")]
    NodeName(std::io::Error),
}

/// The node's name: the configured one, else the host name.
pub fn node_name(config: &Config) -> Result<String, std::io::Error> {
    match &config.node.name {
        Some(name) => Ok(name.clone()),
        None => Ok(std::fs::read_to_string("/proc/sys/kernel/hostname")?.trim().to_string()),
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), AgentError> {
    let node = node_name(&config).map_err(AgentError::NodeName)?;
    let started_at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (_status_tx, status_rx) = watch::channel(StatusReport {
        node: node.clone(),
        version: crate::VERSION.to_string(),
        started_at,
        // With no peers and nothing to program yet, the agent is ready by
        // Calico's rule (ready when there are no peers).
        ready: true,
        not_ready_reasons: Vec::new(),
        peers: Vec::new(),
    });

    let api = ApiListener::bind(&config.api.socket).await?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| AgentError::Signal("SIGTERM", e))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| AgentError::Signal("SIGINT", e))?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let api_task = tokio::spawn(api.serve(status_rx, async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    }));
    tracing::info!(subsys = "agent", node = %node, socket = %config.api.socket.display(), "tortie agent started");

    tokio::select! {
        _ = sigterm.recv() => tracing::info!(subsys = "agent", "SIGTERM: stopping, leaving kernel routes in place"),
        _ = sigint.recv() => tracing::info!(subsys = "agent", "SIGINT: stopping, leaving kernel routes in place"),
    }
    let _ = stop_tx.send(true);
    match api_task.await {
        Ok(result) => result.map_err(AgentError::ApiServe),
        Err(join) => Err(AgentError::ApiServe(std::io::Error::other(join))),
    }
}
