//! `tortie node`: the node agent. It owns the start-up order and supervises
//! one task per component, as drawn in ARCHITECTURE.md.
//!
//! Start-up: name and address → datastore → node registration → sysctls →
//! route programmer (adopting the previous run's routes) → metrics and
//! health → local API (with IPAM and the CNI workload API, restoring pod routes before the
//! programmer's first reconcile).
//! SIGTERM leaves kernel routes in place (graceful restart) unless
//! `dataplane.cleanup_on_exit` is set.

mod bgp;
mod bgp_config;
mod bgp_filters;
mod bgp_peers;
pub mod block_routes;
pub mod blocks;
pub mod cni_install;
mod datastore;
pub mod endpoint_attrs;
mod ipam;
pub mod kubernetes;
pub mod lease;
pub mod load_balancers;
pub mod nat;
mod node;
pub mod node_status;
pub mod picture;
pub mod pod_ipam;
mod pod_lock;
pub mod policy;
pub mod policy_counters;
mod policy_pods;
mod policy_refused;
mod pools;
mod remote_routes;
mod routes;
pub mod secrets;
pub mod services;
mod supervise;
mod usage;
pub mod vtep;
pub mod vteps;
pub mod workloads;

use crate::api::StatusReport;
use crate::api::server::{ApiListener, ApiServices, ServeError};
use crate::config::Config;
use crate::dataplane::nftables::{self, NftTable, NftTableConfig};
use crate::dataplane::{Programmer, ProgrammerConfig, ProgrammerState, sysctl};
use crate::metrics::Metrics;
use crate::metrics::dataplane::DataplaneCollector;
use crate::metrics::readiness::{HealthInput, readiness};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// How long the tasks get to finish after the agent asked them to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The same after a task failed: short, since a restart adopts everything anyway.
const FAILURE_GRACE: Duration = Duration::from_secs(2);

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
    #[error(
        "cannot determine the node address: {0} (set the address in the configuration or choose another detection method)"
    )]
    Address(String),
    #[error("{0}")]
    Datastore(String),
    #[error("cannot start the route programmer: {0}")]
    Dataplane(#[from] crate::dataplane::programmer::StartError),
    #[error("{0}")]
    Ipip(String),
    #[error("cannot start the BGP speaker on bgp.listen_address/bgp.listen_port: {0}")]
    Bgp(std::io::Error),
    #[error("cannot listen on metrics.listen {0}: {1}")]
    Metrics(std::net::SocketAddr, std::io::Error),
    #[error("the {task} task {ended}; stopping (kernel routes stay in place)")]
    TaskEnded { task: &'static str, ended: supervise::Ended },
}

/// The node's name: the configured one, else the host name.
pub fn node_name(config: &Config) -> Result<String, std::io::Error> {
    match &config.node.name {
        Some(name) => Ok(name.clone()),
        None => Ok(std::fs::read_to_string("/proc/sys/kernel/hostname")?.trim().to_string()),
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), AgentError> {
    let started = Instant::now();
    let started_at = unix_now();
    let name = node_name(&config).map_err(AgentError::NodeName)?;
    let kubernetes_internal_ips = if node::wants_kubernetes_internal_ips(&config) {
        let client = datastore::kube_client(&config).await.map_err(AgentError::Address)?;
        Some(kubernetes::node_addresses::internal_ips(&client, &name).await.map_err(AgentError::Address)?)
    } else {
        None
    };
    let (address, ipv6_address) =
        node::addresses(&config, kubernetes_internal_ips.as_deref()).map_err(AgentError::Address)?;
    // Everything after this point reads the detected IPv6 address where a configured one would be.
    let mut config = config;
    config.node.ipv6_address = ipv6_address;
    let config = config;
    tracing::info!(
        subsys = "agent",
        node = %name,
        address = %address,
        ipv6_address = %ipv6_address.map(|a| a.to_string()).unwrap_or_else(|| "none".into()),
        "starting"
    );

    let ds = datastore::connect(&config).await.map_err(AgentError::Datastore)?;
    // The AS the Node record announces to the other nodes: BGPConfiguration `default` may set it.
    let local_as = match bgp_config::read(&ds, &name).await {
        Ok(resources) => resources.effective(&config.bgp, address.ip().into()).as_number,
        Err(_) => config.bgp.as_number.0,
    };
    node::register(&ds, &name, &config, address, local_as).await.map_err(AgentError::Datastore)?;
    tracing::info!(subsys = "agent", node = %name, datastore = ?config.datastore.kind, "node registered");

    match sysctl::ensure(&sysctl::node_settings(config.node.ipv6_address.is_some())) {
        Ok(changed) if !changed.is_empty() => tracing::info!(subsys = "dataplane", changed = ?changed, "sysctls set"),
        Ok(_) => {}
        Err(e) => tracing::warn!(subsys = "dataplane", error = %e, "cannot set a sysctl; forwarding may not work"),
    }

    let ipip_detected = crate::dataplane::netlink::RouteSocket::open()
        .map_err(|e| e.to_string())
        .and_then(|mut s| crate::fallback_ipip::detect_mode(config.ipip.implementation, &mut s))
        .map_err(AgentError::Ipip)?;
    tracing::info!(subsys = "ipip", mode = ipip_detected.as_str(), implementation = ?config.ipip.implementation, "IP-in-IP mode");

    let programmer = Programmer::start(ProgrammerConfig {
        table: config.dataplane.route_table,
        protocol: config.dataplane.route_protocol,
        resync_interval: Duration::from_secs(u64::from(config.dataplane.resync_interval_seconds)),
        nexthop_objects: config.dataplane.nexthop_objects,
    })
    .await?;

    let underlay = crate::dataplane::netlink::RouteSocket::open()
        .map_err(|e| format!("cannot open a netlink socket: {e}"))
        .and_then(|mut s| crate::dataplane::underlay::Underlay::find(&mut s, address, config.node.ipv6_address))
        .map_err(AgentError::Ipip)?;
    let pools = pools::ensure_default(&ds, &config).await.map_err(AgentError::Datastore)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut encaps =
        remote_routes::setup(&config, &ds, &name, &underlay, &pools, &stop_rx).await.map_err(AgentError::Ipip)?;

    // Pod routes are restored before the first full reconcile (routes::initial_sync), which would delete them.
    // What network policy has in place: the CNI ADD waits for its pod's.
    let (policy_tx, policy_rx) = watch::channel(policy::PolicyState::default());
    let workloads = start_workloads(&config, &ds, &name, underlay.mtu, &programmer, policy_rx.clone()).await?;

    let (pools_tx, pools_rx) = watch::channel(pools);
    // tortie's nftables table (its only one): NAT outgoing and network policy fill it.
    let (nft, nft_task) = NftTable::start(NftTableConfig {
        name: nftables::TABLE_NAME.to_string(),
        users: vec![nftables::nat::USER, nftables::policy::USER],
        resync_interval: Duration::from_secs(u64::from(config.dataplane.resync_interval_seconds)),
        command: nftables::NftCommand::default(),
        // Beside the API socket: on the node's runtime filesystem, gone when the kernel's table is.
        fingerprint: Some(config.api.socket.with_file_name(format!("nftables-{}.json", nftables::TABLE_NAME))),
    });
    let (nat_pools_tx, nat_pools_rx) = watch::channel(Vec::new());

    let (health_tx, health_rx) = watch::channel(HealthInput::default());
    let (status_tx, status_rx) = watch::channel(StatusReport {
        node: name.clone(),
        version: crate::VERSION.to_string(),
        started_at,
        ready: false,
        not_ready_reasons: vec!["starting".to_string()],
        ipip_mode: crate::fallback_ipip::implementation_label(Some(encaps.ipip.unwrap_or(ipip_detected))).to_string(),
        peers: Vec::new(),
        paths: Vec::new(),
        unsupported_fields: Vec::new(),
        nat_outgoing_pools: Vec::new(),
        nftables_error: None,
        invalid_policies: Vec::new(),
    });
    // The path the stage chose per node, for status and metrics.
    let (paths_tx, paths_rx) = watch::channel(std::collections::HashMap::new());
    // The Nodes, for the peer set, NAT outgoing, the VXLAN endpoints and the status records.
    let (nodes_tx, nodes_rx) = watch::channel(None);
    let inputs = |paths| bgp::BgpInputs {
        nodes: nodes_rx.clone(),
        restarted: programmer.adopted > 0,
        abandon_on_stop: !config.dataplane.cleanup_on_exit,
        paths,
        node_address: address.ip().into(),
        programmer: programmer.clone(),
    };
    let mut tasks = supervise::Supervisor::default();
    {
        if let Some(task) = programmer.take_task() {
            tasks.adopt_component("route programmer", task);
        }
        tasks.adopt("nftables table", nft_task);
        tasks.spawn(
            "Nodes",
            picture::follow::<crate::datastore::resources::Node>(ds.clone(), nodes_tx, stop_rx.clone()),
        );
        for task in encaps.vtep_tasks.drain(..) {
            tasks.adopt("VXLAN VTEP entries", task);
        }
    }
    let mut no_peers = None;
    let (peers, peer_set_known, rib, best_paths, bgp_sample) = if config.bgp.enabled {
        let router_id = config.bgp.router_id.unwrap_or(address.ip());
        let handles =
            bgp::start(&config, ds.clone(), name.clone(), router_id, inputs(paths_rx.clone()), stop_rx.clone())
                .await
                .map_err(AgentError::Bgp)?;
        tasks.adopt("BGP peer set", handles.task);
        if let Some(task) = handles.rib.take_task() {
            tasks.adopt_component("RIB", task);
        }
        (handles.peers, handles.peer_set_known, Some(handles.rib), handles.best_paths, Some(handles.sample))
    } else {
        // No BGP: no peers (a channel whose sender lives as long as the agent), nothing
        // learned from the RIB (a closed channel; the block routes come from the
        // datastore below) and nothing announced.
        let (tx, rx) = watch::channel(Vec::new());
        let (known_tx, known_rx) = watch::channel(true);
        no_peers = Some((tx, known_tx));
        (rx, known_rx, None, tokio::sync::mpsc::channel(1).1, None)
    };
    if programmer.adopted > 0 {
        tracing::info!(
            subsys = "bgp",
            adopted = programmer.adopted,
            "restarted with kernel routes in place: announcing graceful restart"
        );
    }
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let (blocks_tx, blocks_rx) = watch::channel(None);
    tasks.spawn("IPAM blocks", blocks::follow(ds.clone(), blocks_tx, stop_rx.clone()));
    let (pool_usage_tx, pool_usage_rx) = watch::channel(Vec::new());
    tasks.spawn("pool usage", usage::follow(blocks_rx.clone(), pools_rx.clone(), pool_usage_tx, stop_rx.clone()));
    tasks.spawn("datastore check", ipam::watch_store(ds.clone(), stop_rx.clone()));
    tasks.spawn("pools", routes::follow_pools(ds.clone(), pools_tx, stop_rx.clone()));
    let nat = nat::follow(nodes_rx.clone(), pools_rx.clone(), nft.clone(), nat_pools_tx, stop_rx.clone());
    tasks.spawn("NAT outgoing", nat);
    let policy = policy::follow(ds.clone(), name.clone(), nft.clone(), policy_tx, blocks_rx.clone(), stop_rx.clone());
    tasks.spawn("network policy", policy);
    let (policy_counters_tx, policy_counters_rx) = watch::channel(policy_counters::PolicyCounters::default());
    tasks.spawn(
        "policy counters",
        policy_counters::follow(nft.clone(), policy_rx.clone(), policy_counters_tx, stop_rx.clone()),
    );
    // 100 µs … ~6.5 s
    let programming_latency = prometheus_client::metrics::histogram::Histogram::new(
        prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 17),
    );
    let latency =
        crate::remote_routes::stage::Latency { programmer: programmer.clone(), histogram: programming_latency.clone() };
    // Counts the bursts of learned-route changes: the first reconcile waits for them to settle.
    let (learned_tx, learned_rx) = watch::channel(0u64);
    // Whether the stage holds learned routes until the VTEPs are read (see routes::initial_sync).
    let (holding_tx, holding_rx) = watch::channel(encaps.encaps.need_remote_nodes());
    let (local_tx, local_rx) = watch::channel(routes::LocalPrefixes::default());
    let (service_cidrs_tx, service_cidrs_rx) = watch::channel(std::collections::BTreeSet::new());
    let (services_tx, services_rx) = watch::channel(crate::services::Advertisements::default());
    tasks.spawn(
        "service addresses",
        services::follow(ds.clone(), name.clone(), rib.clone(), services_tx, service_cidrs_tx, stop_rx.clone()),
    );
    tasks.spawn(
        "load-balancer addresses",
        load_balancers::follow(
            ds.clone(),
            name.clone(),
            load_balancers::RESYNC,
            load_balancers::LEASE_DURATION,
            stop_rx.clone(),
        ),
    );
    tasks.spawn(
        "local prefixes",
        routes::follow_local_prefixes(
            blocks_rx.clone(),
            name.clone(),
            programmer.clone(),
            rib.clone(),
            (local_tx, service_cidrs_rx),
            stop_rx.clone(),
        ),
    );
    // The first full reconcile deletes stale routes of ours, so it waits
    // until BGP has had its chance to relearn them (see routes::initial_sync).
    tasks.spawn_finite(
        "first route reconcile",
        routes::initial_sync(
            programmer.clone(),
            peers.clone(),
            peer_set_known,
            learned_rx,
            holding_rx,
            stop_rx.clone(),
        ),
    );
    let remotes_rx = follow_remote_nodes(&mut tasks, &encaps, &nodes_rx, &name, &stop_rx);
    let wiring = remote_routes::StageWiring {
        pools: pools_rx.clone(),
        local: local_rx,
        remotes: remotes_rx,
        paths: paths_tx,
        generation: learned_tx,
        holding: holding_tx,
        latency: Some(latency),
        stop: stop_rx.clone(),
    };
    let running = match rib.clone() {
        Some(rib) if config.dataplane.install_learned_routes => {
            Some(remote_routes::start(&encaps, &underlay, programmer.clone(), (best_paths, rib), wiring))
        }
        Some(_) => {
            // A dedicated route reflector: the RIB discards its change stream.
            drop((best_paths, wiring));
            tracing::info!(subsys = "dataplane", "learned routes are not installed (dataplane.install_learned_routes)");
            None
        }
        None => {
            // No BGP: the other nodes' blocks come from the datastore (Calico's VXLAN-only mode).
            drop(best_paths);
            let capacity = crate::bgp::rib::BEST_PATH_CAPACITY / crate::bgp::rib::BEST_PATH_BATCH;
            let (changes_tx, changes_rx) = tokio::sync::mpsc::channel(capacity);
            let (source, follow) = block_routes::block_routes(
                blocks_rx.clone(),
                nodes_rx.clone(),
                name.clone(),
                changes_tx,
                stop_rx.clone(),
            );
            tasks.spawn("block routes", follow);
            Some(remote_routes::start(&encaps, &underlay, programmer.clone(), (changes_rx, source), wiring))
        }
    };
    if let Some(running) = running {
        tasks.adopt("remote routes", running.stage);
        if let Some(prober) = running.prober {
            tasks.adopt_finite("liveness prober", prober);
        }
    }
    // Components that stopped answering, for /livez.
    let (stalled_tx, stalled_rx) = watch::channel(std::collections::BTreeMap::new());
    tasks.spawn(
        "liveness: route programmer",
        supervise::probe_liveness("route programmer", programmer.clone(), stalled_tx.clone(), stop_rx.clone()),
    );
    if let Some(rib) = rib.clone() {
        tasks.spawn("liveness: RIB", supervise::probe_liveness("RIB", rib, stalled_tx.clone(), stop_rx.clone()));
    }
    if config.metrics.enabled {
        let mut metrics = Metrics::new();
        metrics
            .tortie()
            .register_collector(Box::new(crate::metrics::datastore::DatastoreCollector { reads: ds.reads() }));
        metrics.tortie().register_collector(Box::new(DataplaneCollector {
            table: config.dataplane.route_table,
            stats: programmer.stats.clone(),
            state: programmer.state.clone(),
            tunnel: encaps.counters.clone(),
        }));
        metrics.tortie().register_collector(Box::new(crate::metrics::nftables::NftCollector {
            stats: nft.stats.clone(),
            state: nft.state.clone(),
        }));
        metrics
            .tortie()
            .register_collector(Box::new(crate::metrics::policy::PolicyCollector { state: policy_rx.clone() }));
        metrics.tortie().register_collector(Box::new(crate::metrics::policy::PolicyCountersCollector {
            counters: policy_counters_rx.clone(),
        }));
        let _ipam_metrics = crate::metrics::ipam::IpamMetrics::register(metrics.tortie(), pool_usage_rx.clone());
        if let Some(sample) = bgp_sample.clone() {
            metrics.tortie().register_collector(Box::new(crate::metrics::bgp::BgpCollector { sample }));
        }
        metrics.tortie().register_collector(Box::new(crate::metrics::dataplane::PathCollector {
            paths: paths_rx.clone(),
            encapsulations: encaps.encaps.paths(),
            ipip: encaps.ipip,
        }));
        metrics.tortie().register(
            "route_programming_latency_seconds",
            "Time from a best-path change reaching the agent to its kernel route written",
            programming_latency.clone(),
        );
        let listener = tokio::net::TcpListener::bind(config.metrics.listen)
            .await
            .map_err(|e| AgentError::Metrics(config.metrics.listen, e))?;
        let app =
            crate::metrics::server::router(Arc::new(metrics.registry), health_rx.clone(), stalled_rx.clone(), started);
        let shutdown = stopped(stop_rx.clone());
        tasks.spawn("metrics server", async move {
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::error!(subsys = "metrics", error = %e, "metrics server failed");
            }
        });
        tracing::info!(subsys = "metrics", listen = %config.metrics.listen, "serving /metrics, /livez, /readyz");
    }
    tasks.spawn(
        "health",
        follow_health(
            Followed {
                dataplane: programmer.state.clone(),
                peers,
                datastore: workloads.datastore_unwritable(),
                paths: paths_rx.clone(),
                cni: cni_install::CniInstall::from_config(&config).ok().flatten(),
                nat_pools: nat_pools_rx,
                nftables: nft.state.clone(),
                policy: policy_rx.clone(),
            },
            health_tx,
            status_tx,
            started,
            stop_rx.clone(),
        ),
    );

    let own_addresses: Vec<String> =
        std::iter::once(address.ip().to_string()).chain(config.node.ipv6_address.map(|a| a.ip().to_string())).collect();
    tasks.spawn(
        "node status",
        node_status::publish(
            node_status::StatusWriter::new(ds.clone(), name.clone()),
            own_addresses,
            status_rx.clone(),
            programmer.state.clone(),
            nodes_rx.clone(),
            stop_rx.clone(),
        ),
    );
    let event_sources = kubernetes::events::EventSources {
        status: status_rx.clone(),
        pools: pool_usage_rx.clone(),
        stats: programmer.stats.clone(),
    };
    let k8s = kubernetes::start(&config, &ds, &name, programmer.state.clone(), event_sources, stop_rx.clone()).await;
    for task in k8s.map_err(AgentError::Datastore)? {
        if task.finite {
            tasks.adopt_finite(task.name, task.handle);
        } else {
            tasks.adopt(task.name, task.handle);
        }
    }
    if let Some(install) = cni_install::start(&config, status_rx.clone(), stop_rx.clone()) {
        tasks.adopt_finite("CNI install", install);
    }
    let api = ApiListener::bind(&config.api).await?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| AgentError::Signal("SIGTERM", e))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| AgentError::Signal("SIGINT", e))?;
    let sweep = workloads::sweep(workloads.clone(), blocks_rx.clone(), pools_rx.clone(), stop_rx.clone());
    tasks.spawn("workload sweep", sweep);
    let services = ApiServices {
        workloads: Some(workloads),
        rib: rib.clone(),
        service_prefixes: Some(services_rx.clone()),
        policy: Some(policy_rx.clone()),
        ipam: Some(ipam_admin(&config, &ds).await?),
    };
    let mut api_task = tokio::spawn(api.serve(status_rx, services, stopped(stop_rx.clone())));
    tracing::info!(subsys = "agent", node = %name, socket = %config.api.socket.display(), "tortie agent started");

    let failure = tokio::select! {
        _ = sigterm.recv() => { tracing::info!(subsys = "agent", "SIGTERM: stopping"); None }
        _ = sigint.recv() => { tracing::info!(subsys = "agent", "SIGINT: stopping"); None }
        (task, ended) = tasks.first_failure() => {
            tracing::error!(subsys = "agent", task, ended = %ended, "a task ended: stopping the agent");
            Some(AgentError::TaskEnded { task, ended })
        }
        api = &mut api_task => {
            let ended = match api {
                Ok(Ok(())) => supervise::Ended::Returned,
                Ok(Err(e)) => supervise::Ended::Panicked(format!("failed: {e}")),
                Err(e) if e.is_panic() => supervise::Ended::Panicked(format!("{e}")),
                Err(_) => supervise::Ended::Cancelled,
            };
            tracing::error!(subsys = "agent", task = "local API", ended = %ended, "a task ended: stopping the agent");
            Some(AgentError::TaskEnded { task: "local API", ended })
        }
    };
    if let Some(e) = failure {
        // The routes stay: whoever restarts the agent finds them and adopts them.
        let _ = stop_tx.send(true);
        drop(nft);
        tasks.shutdown(FAILURE_GRACE).await;
        return Err(e);
    }
    if config.dataplane.cleanup_on_exit {
        programmer.remove_all().await;
        tracing::info!(subsys = "dataplane", "removed tortie's routes (dataplane.cleanup_on_exit)");
        match nft.remove().await {
            Ok(()) => {
                tracing::info!(subsys = "nftables", "removed tortie's nftables table (dataplane.cleanup_on_exit)")
            }
            Err(e) => tracing::warn!(subsys = "nftables", error = %e, "cannot remove tortie's nftables table"),
        }
        for device in &encaps.persistent_devices {
            remove_link(device).await;
        }
    } else {
        tracing::info!(subsys = "dataplane", "leaving kernel routes in place for graceful restart");
    }
    let _ = stop_tx.send(true);
    drop(no_peers);
    // The table's owner ends once its last handle (this and the NAT follower's) is gone.
    drop(nft);
    tasks.shutdown(SHUTDOWN_GRACE).await;
    match api_task.await {
        Ok(result) => result.map_err(AgentError::ApiServe),
        Err(join) => Err(AgentError::ApiServe(std::io::Error::other(join))),
    }
}

/// The other nodes' VTEPs for the remote-routes stage, followed from the
/// Node records when this node has a VXLAN device (else never any).
fn follow_remote_nodes(
    tasks: &mut supervise::Supervisor,
    encaps: &remote_routes::Encaps,
    nodes: &watch::Receiver<Option<picture::Known<crate::datastore::resources::Node>>>,
    name: &str,
    stop: &watch::Receiver<bool>,
) -> watch::Receiver<Option<crate::remote_routes::RemoteNodes>> {
    let (remotes_tx, remotes_rx) = watch::channel(None);
    if encaps.encaps.paths().contains(&crate::remote_routes::PathKind::Vxlan) {
        let (vteps_tx, vteps_rx) = watch::channel(Vec::new());
        let follow = vteps::follow_vteps(nodes.clone(), name.to_string(), vteps_tx, stop.clone());
        let publish = vteps::publish_remote_nodes(vteps_rx, remotes_tx);
        tasks.spawn("VXLAN endpoints", async move {
            tokio::join!(follow, publish);
        });
    }
    remotes_rx
}

/// Deletes a network device of ours (the persistent TUN device on cleanup).
async fn remove_link(name: &str) {
    let result = match crate::cni::link::host() {
        Ok(h) => crate::cni::link::delete(&h, name).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => {
            tracing::info!(subsys = "ipip", device = name, "removed the tunnel device (dataplane.cleanup_on_exit)")
        }
        Err(e) => tracing::warn!(subsys = "ipip", device = name, error = %e, "cannot remove the tunnel device"),
    }
}

/// The operator's IPAM commands behind the API; on Kubernetes they judge liveness by the Pods.
async fn ipam_admin(
    config: &Config,
    ds: &crate::datastore::Datastore,
) -> Result<crate::ipam::admin::Admin, AgentError> {
    let kube = match config.datastore.kind {
        crate::config::DatastoreType::Kubernetes => {
            Some(datastore::kube_client(config).await.map_err(AgentError::Datastore)?)
        }
        _ => None,
    };
    Ok(crate::ipam::admin::Admin::new(ds.clone(), kube))
}

/// Starts the node's IPAM allocator and the workload service behind the CNI API.
async fn start_workloads(
    config: &Config,
    ds: &crate::datastore::Datastore,
    name: &str,
    underlay_mtu: u32,
    programmer: &Programmer,
    policy: watch::Receiver<policy::PolicyState>,
) -> Result<Arc<workloads::Workloads>, AgentError> {
    let allocator = ipam::start(ds, name, config).await.map_err(AgentError::Datastore)?;
    // Kubernetes mode reads each pod's IPAM annotations from its Pod.
    let kube = match config.datastore.kind {
        crate::config::DatastoreType::Kubernetes => {
            Some(datastore::kube_client(config).await.map_err(AgentError::Datastore)?)
        }
        _ => None,
    };
    let settings = workloads::WorkloadsConfig {
        node: name.to_string(),
        underlay_mtu,
        interface_prefix: config.dataplane.workload_interface_prefix.clone(),
        mtu: config.dataplane.mtu,
        kube,
        policy: Some(policy),
    };
    workloads::Workloads::start(settings, allocator, programmer.clone())
        .await
        .map_err(|e| AgentError::Datastore(format!("cannot start the workload service: {e}")))
}

/// What the health and status follower reads.
struct Followed {
    dataplane: watch::Receiver<ProgrammerState>,
    peers: watch::Receiver<Vec<crate::api::PeerStatus>>,
    datastore: watch::Receiver<Option<String>>,
    paths: watch::Receiver<std::collections::HashMap<std::net::IpAddr, crate::remote_routes::PathKind>>,
    /// The CNI installation, whose chained plugins must be present.
    cni: Option<cni_install::CniInstall>,
    /// The pools with NAT outgoing.
    nat_pools: watch::Receiver<Vec<String>>,
    nftables: watch::Receiver<nftables::NftState>,
    /// What network policy has in place and skips.
    policy: watch::Receiver<policy::PolicyState>,
}

/// Keeps the health input and the status report in step with the
/// components' states (and re-evaluates readiness as the start-up window passes).
async fn follow_health(
    followed: Followed,
    health: watch::Sender<HealthInput>,
    status: watch::Sender<StatusReport>,
    started: Instant,
    mut stop: watch::Receiver<bool>,
) {
    let Followed { mut dataplane, mut peers, mut datastore, paths, cni, mut nat_pools, mut nftables, mut policy } =
        followed;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let peer_list = peers.borrow_and_update().clone();
        let input = HealthInput {
            dataplane_synced: dataplane.borrow_and_update().synced,
            peers: peer_list.iter().map(|p| (p.address.clone(), p.state == "established")).collect(),
            datastore_unwritable: datastore.borrow_and_update().clone(),
            // A stat per plugin each turn: an operator installing portmap is seen within a second.
            missing_cni_plugins: cni.as_ref().map_or_else(Vec::new, |c| {
                c.missing_plugins().iter().map(|p| c.bin_dir.join(p).display().to_string()).collect()
            }),
        };
        let verdict = readiness(&input, started.elapsed());
        health.send_replace(input);
        // Read each turn (at least every second), not waited on: without a
        // remote-routes stage nobody sends on it.
        let mut node_paths: Vec<(std::net::IpAddr, crate::remote_routes::PathKind)> =
            paths.borrow().iter().map(|(n, p)| (*n, *p)).collect();
        node_paths.sort();
        let nat = nat_pools.borrow_and_update().clone();
        let nft_error = nftables.borrow_and_update().last_error.clone();
        let invalid_policies = policy.borrow_and_update().invalid.clone();
        status.send_modify(|s| {
            s.invalid_policies = invalid_policies;
            s.nat_outgoing_pools = nat;
            s.nftables_error = nft_error;
            s.ready = verdict.is_ok();
            s.not_ready_reasons = verdict.err().unwrap_or_default();
            s.peers = peer_list;
            s.paths = node_paths
                .iter()
                .map(|(node, path)| crate::api::status::NodePath { node: node.to_string(), path: path.as_str().into() })
                .collect();
            s.unsupported_fields = crate::datastore::unsupported::snapshot()
                .into_iter()
                .map(|f| crate::api::status::UnsupportedField {
                    kind: f.kind.as_str().into(),
                    name: f.name,
                    field: f.field,
                    reason: f.reason,
                })
                .collect();
        });
        tokio::select! {
            changed = dataplane.changed() => if changed.is_err() { return },
            changed = peers.changed() => if changed.is_err() { return },
            changed = datastore.changed() => if changed.is_err() { return },
            changed = nat_pools.changed() => if changed.is_err() { return },
            changed = nftables.changed() => if changed.is_err() { return },
            changed = policy.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
    }
}
