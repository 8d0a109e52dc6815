//! Kubernetes mode (`datastore.type: kubernetes`, as a DaemonSet): the default pool from the
//! environment, the node's tunnel address published on its Node, the Node's `NetworkUnavailable`
//! condition once routes are programmed, and the release of addresses whose pod is gone. The
//! node's name comes from the downward API (`TORTIE_NODE_NAME` from `spec.nodeName`), its
//! address and AS are published as annotations by the node registration (the kubernetes backend
//! keeps a Node's fields as `tortie.io/*` annotations on the Kubernetes Node).

pub mod condition;
pub mod event_aggregator;
pub mod events;
pub mod node_addresses;
pub mod pod_annotations;
pub mod pod_gc;
pub mod pool;

use crate::config::{Config, DatastoreType};
use crate::dataplane::ProgrammerState;
use crate::datastore::Datastore;
use crate::datastore::resources::IpPool;
use crate::ipam::{Ipam, IpamOptions};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use super::node::publish_tunnel_address;

/// Publishes the tunnel address, again whenever the pools change: a pool with IP-in-IP may be
/// created after the agent started (by another node's agent or an operator).
async fn follow_pools_for_tunnel(ds: Datastore, node: String, mut stop: watch::Receiver<bool>) {
    let mut pools = None;
    loop {
        if pools.is_none() {
            pools = ds.watch::<IpPool>(None).await.ok();
        }
        match publish_tunnel_address(&ds, &node).await {
            Ok(Some(address)) => tracing::info!(subsys = "ipip", address = %address, "tunnel address published"),
            Ok(None) => {}
            Err(e) => tracing::warn!(subsys = "ipip", error = %e, "cannot publish the tunnel address; retrying"),
        }
        // The next pool change; without a watch (or when it ends), a periodic check instead.
        let next = async {
            match pools.as_mut() {
                Some(w) => loop {
                    match w.next().await {
                        Some(Ok(crate::datastore::WatchEvent::Bookmark(_))) => continue,
                        Some(_) => break true,
                        None => break false,
                    }
                },
                None => {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    true
                }
            }
        };
        tokio::select! {
            open = next => if !open { pools = None },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Runs `attempt` until it succeeds or the agent stops, backing off up to 30 s between tries.
async fn retry<F, Fut>(what: &str, mut stop: watch::Receiver<bool>, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut delay = Duration::from_millis(200);
    loop {
        match attempt().await {
            Ok(()) => return,
            Err(e) => tracing::warn!(subsys = "kubernetes", error = %e, "{what} failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// A task of Kubernetes mode, for the agent's supervisor.
pub struct KubernetesTask {
    pub name: &'static str,
    /// Ends on its own once done (a task that is not must run until the agent stops).
    pub finite: bool,
    pub handle: JoinHandle<()>,
}

/// Starts Kubernetes mode when `config.datastore.type` is `kubernetes` (else does nothing):
/// creates the default pool now (a bad `*_IPV4POOL_*` variable stops the agent, as in Calico),
/// and returns the tasks that publish the tunnel address, set the Node condition once
/// `dataplane` has synced, collect leaked pod addresses, and record Events on the Node.
pub async fn start(
    config: &Config,
    ds: &Datastore,
    node: &str,
    mut dataplane: watch::Receiver<ProgrammerState>,
    event_sources: events::EventSources,
    stop: watch::Receiver<bool>,
) -> Result<Vec<KubernetesTask>, String> {
    if config.datastore.kind != DatastoreType::Kubernetes {
        return Ok(Vec::new());
    }
    if config.node.name.is_none() {
        tracing::warn!(subsys = "kubernetes", node = %node, "node.name is not set; using the host name (set TORTIE_NODE_NAME from spec.nodeName)");
    }
    let client = super::datastore::kube_client(config).await?;
    let mut tasks = Vec::new();

    let (events, queued) = events::Events::channel();
    let writer = events::EventWriter::new(client.clone(), node);
    tasks.push(KubernetesTask {
        name: "Kubernetes Events",
        finite: false,
        handle: tokio::spawn(events::write_events(writer, queued, stop.clone())),
    });
    tasks.push(KubernetesTask {
        name: "Kubernetes Event sources",
        finite: false,
        handle: tokio::spawn(events::detect(event_sources, events, stop.clone())),
    });

    tasks.push(KubernetesTask {
        name: "Kubernetes tunnel address",
        finite: false,
        handle: tokio::spawn(follow_pools_for_tunnel(ds.clone(), node.to_string(), stop.clone())),
    });

    let (kube, name, mut stopped) = (client.clone(), node.to_string(), stop.clone());
    let condition = tokio::spawn(async move {
        tokio::select! {
            synced = dataplane.wait_for(|s| s.synced) => if synced.is_err() { return },
            _ = stopped.wait_for(|s| *s) => return,
        }
        retry("setting the NetworkUnavailable condition", stopped, || {
            let (kube, name) = (kube.clone(), name.clone());
            async move {
                condition::set_network_available(&kube, &name).await.map_err(|e| e.to_string())?;
                tracing::info!(subsys = "kubernetes", node = %name, reason = condition::REASON, "NetworkUnavailable set to False");
                Ok(())
            }
        })
        .await;
    });
    tasks.push(KubernetesTask { name: "Kubernetes NetworkUnavailable condition", finite: true, handle: condition });

    let ipam = Ipam::new(ds.clone(), IpamOptions { node: node.to_string(), ..IpamOptions::default() });
    let interval = Duration::from_secs(u64::from(config.kubernetes.pod_gc_interval_seconds));
    let grace = Duration::from_secs(u64::from(config.kubernetes.pod_gc_grace_seconds));
    let mut stopped = stop.clone();
    let gc = tokio::spawn(async move {
        let mut gc = pod_gc::PodGc::new(grace);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
            if let Err(e) = gc.run_once(&client, &ipam, Instant::now()).await {
                tracing::warn!(subsys = "ipam", error = %e, "pod address collection failed; trying again next round");
            }
        }
    });
    tasks.push(KubernetesTask { name: "Kubernetes pod address GC", finite: false, handle: gc });
    Ok(tasks)
}
