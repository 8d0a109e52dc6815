//! The agent's BGP peer set: a full mesh of the other nodes from the
//! datastore (unless `bgp.node_to_node_mesh` is off) plus the configured
//! peers, followed live — a node that appears or leaves gains or loses its
//! session (and its RIB peer) without disturbing the others. The session
//! states feed the status report and readiness.
//!
//! Route reflection follows Calico: when any node has
//! `routeReflectorClusterID`, nodes without one peer only with the
//! reflectors (role RrServer), and reflectors peer with every node (RrClient
//! for non-reflectors, Mesh among reflectors). Reflectors send their clients
//! every path of an ECMP set with ADD-PATH (RFC 7911), and clients offer to
//! receive it, so reflected routes keep their ECMP paths.
//!
//! The speaker's events feed the RIB ([`crate::bgp::rib`]).
//!
//! The BGPConfiguration resources are followed too ([`super::bgp_config`] combines them with the
//! file): a changed mesh switch, restart time or AS re-makes the sessions it concerns (an AS
//! change every session, the RIB's AS and this node's Node record with it), a changed listen
//! address moves the listener, communities re-announce the node's blocks, and the log level is
//! set on the running subscriber.

use super::bgp_config::{self, Effective, Unsupported};
use super::picture::Known;
use crate::api::PeerStatus as ApiPeer;
use crate::bgp::rib::{BestPathChange, PeerRole, PeerSetup, Policy, Rib, RibConfig, RibStats};
use crate::bgp::session::{PeerConfig, PeerStatus, Speaker, State};
use crate::config::Config;
use crate::dataplane::Programmer;
use crate::dataplane::route::{DesiredRoute, RouteKind};
use crate::datastore::Datastore;
use crate::datastore::resources::{BgpConfiguration, BgpFilter, BgpPeer, IpPool, Node, Secret};
use crate::metrics::bgp::{BgpSample, PeerSample};
use crate::remote_routes::PathKind;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// Calico's peer type names, as `calicoctl node status` prints them.
const MESH: &str = "node-to-node mesh";
pub(super) const GLOBAL: &str = "global";
const RR_CLIENT: &str = "route reflector client";
const RR_SERVER: &str = "route reflector";

/// One wanted session and how status shows it.
#[derive(Debug, Clone, PartialEq)]
struct Wanted {
    config: PeerConfig,
    peer_type: &'static str,
    setup: PeerSetup,
}

/// What the rest of the agent tells the BGP side.
pub struct BgpInputs {
    /// The agent's picture of the Nodes: the mesh and the reflectors' clients.
    pub nodes: watch::Receiver<Option<Known<Node>>>,
    /// The route programmer adopted routes of a previous run: announce a
    /// graceful restart with forwarding preserved (RFC 4724).
    pub restarted: bool,
    /// On stop, leave the sessions without a NOTIFICATION so peers keep our
    /// routes while we restart (false when our kernel routes are removed on exit).
    pub abandon_on_stop: bool,
    /// The path the remote-routes stage chose per node, for each peer's `tunnel_mode`.
    pub paths: watch::Receiver<HashMap<IpAddr, PathKind>>,
    /// The node's IPv4 address (BGPConfiguration `bindMode: NodeIP`).
    pub node_address: IpAddr,
    /// Where the host routes to peers (BGPPeer `reachableBy`) are programmed.
    pub programmer: Programmer,
}

/// What [`start`] hands the agent.
pub struct BgpHandles {
    /// Sessions and RIB counters for the metrics.
    pub sample: watch::Receiver<BgpSample>,
    /// Session statuses for the status report.
    pub peers: watch::Receiver<Vec<ApiPeer>>,
    /// True once `peers` holds the peer set read from the datastore (before
    /// that an empty list means "not known yet", not "no peers").
    pub peer_set_known: watch::Receiver<bool>,
    /// The RIB: originate the node's blocks, snapshots for the API.
    pub rib: Rib,
    /// Best-path changes of learned routes, for the dataplane.
    pub best_paths: mpsc::Receiver<Vec<BestPathChange>>,
    /// The task that owns the speaker and the peer set.
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the speaker, the RIB fed by its events, and the task that keeps
/// the peer set and the peer statuses.
pub async fn start(
    config: &Config,
    ds: Datastore,
    node: String,
    router_id: Ipv4Addr,
    inputs: BgpInputs,
    stop: watch::Receiver<bool>,
) -> std::io::Result<BgpHandles> {
    // Peer tasks report here; bounded so a stalled RIB slows the peers, not
    // memory. A decoded UPDATE of ~800 prefixes is ~23 KB (its wire form 4 KB,
    // which the TCP buffers hold instead): 64 of them keep the RIB busy.
    let (events_tx, events_rx) = mpsc::channel(64);
    // The resources as they are now, so that the first sessions already use them.
    let resources = bgp_config::read(&ds, &node).await.unwrap_or_else(|e| {
        tracing::warn!(subsys = "bgp", error = %e, "cannot read BGPConfiguration; using the configuration file");
        bgp_config::Resources::default()
    });
    let settings = resources.effective(&config.bgp, inputs.node_address);
    let listen = settings.listen;
    let speaker = Speaker::new(Some(listen), events_tx)?;
    tracing::info!(subsys = "bgp", listen = %listen, router_id = %router_id, local_as = settings.as_number, "BGP speaker listening");
    let mut rib_config = RibConfig::new(settings.as_number, router_id);
    rib_config.cluster_id = own_cluster_id(config, &ds, &node).await;
    rib_config.pools = list_pools(&ds).await;
    rib_config.local_addresses = local_addresses(config, router_id);
    // Our blocks come from the datastore (routes::follow_local_prefixes),
    // which says when they are in, and so do the service addresses
    // (agent::services); End-of-RIB waits for both.
    rib_config.hold_end_of_rib = true;
    rib_config.local_sources = vec![crate::bgp::rib::BLOCKS_SOURCE, super::services::RIB_SOURCE];
    let (rib, best_paths) = Rib::spawn(rib_config, events_rx);
    rib.set_communities(settings.communities.clone()).await;
    let (peers_tx, peers_rx) = watch::channel(Vec::new());
    let (sample_tx, sample_rx) = watch::channel(BgpSample::default());
    let (known_tx, known_rx) = watch::channel(false);
    let out = Outputs { peers: peers_tx, known: known_tx, sample: sample_tx };
    // The log level and the unsupported fields are left to the first resync, which applies and
    // reports what differs from this.
    let applied = Applied { resources, settings: Effective { log_level: None, unsupported: Vec::new(), ..settings } };
    let task = tokio::spawn(follow_peers(
        config.clone(),
        ds,
        (node, router_id),
        (speaker, applied),
        rib.clone(),
        inputs,
        out,
        stop,
    ));
    Ok(BgpHandles { sample: sample_rx, peers: peers_rx, peer_set_known: known_rx, rib, best_paths, task })
}

/// Our next hops for routes we originate, one per family: the router id and `node.ipv6_address`.
/// Without an IPv6 one, our IPv6 blocks could not be sent over the (IPv4) mesh sessions.
fn local_addresses(config: &Config, router_id: Ipv4Addr) -> Vec<IpAddr> {
    std::iter::once(IpAddr::V4(router_id)).chain(config.node.ipv6_address.map(|a| IpAddr::V6(a.ip()))).collect()
}

/// The IP pools at start: what the RIB imports from nodes and exports to external peers.
async fn list_pools(ds: &Datastore) -> Vec<ipnetwork::IpNetwork> {
    match ds.list::<IpPool>().await {
        // Calico: a pool with disableBGPExport is never advertised.
        Ok(listing) => listing.items.into_iter().filter(|s| !s.spec.disable_bgp_export).map(|s| s.spec.cidr).collect(),
        Err(e) => {
            tracing::warn!(subsys = "bgp", error = %e, "cannot list IP pools; iBGP imports are not limited to pools");
            Vec::new()
        }
    }
}

fn session(config: &Config, settings: &Effective, remote: IpAddr, peer_as: u32, router_id: Ipv4Addr) -> PeerConfig {
    let mut c = PeerConfig::new(remote, peer_as, settings.as_number, router_id);
    c.hold_time = config.bgp.hold_time_seconds.0;
    c.keepalive = config.bgp.keepalive_seconds;
    c.connect_retry = Duration::from_secs(u64::from(config.bgp.connect_retry_seconds));
    c.graceful_restart = Some(config.bgp.graceful_restart_seconds);
    c
}

/// This node's route reflector cluster id: the configured one, else its Node record's
/// `routeReflectorClusterID` (which registration kept), else none.
async fn own_cluster_id(config: &Config, ds: &Datastore, node: &str) -> Option<Ipv4Addr> {
    if config.bgp.route_reflector_cluster_id.is_some() {
        return config.bgp.route_reflector_cluster_id;
    }
    ds.get::<Node>(node).await.ok().and_then(|n| n.spec.bgp).and_then(|b| b.route_reflector_cluster_id)
}

/// The sessions this node wants, by peer address.
fn wanted(
    config: &Config,
    settings: &Effective,
    node: &str,
    router_id: Ipv4Addr,
    nodes: &[(String, Node)],
    resources: &[(String, BgpPeer)],
    referenced: &super::bgp_peers::Referenced,
) -> BTreeMap<IpAddr, Wanted> {
    let mut out = BTreeMap::new();
    let local_as = settings.as_number;
    let cluster_of = |name: &str, n: &Node| {
        if name == node {
            config.bgp.route_reflector_cluster_id.or(n.bgp.as_ref().and_then(|b| b.route_reflector_cluster_id))
        } else {
            n.bgp.as_ref().and_then(|b| b.route_reflector_cluster_id)
        }
    };
    let me_reflector = config.bgp.route_reflector_cluster_id.is_some()
        || nodes.iter().any(|(name, n)| name == node && cluster_of(name, n).is_some());
    let any_reflector = me_reflector || nodes.iter().any(|(name, n)| cluster_of(name, n).is_some());
    for (name, n) in nodes {
        let Some(bgp) = n.bgp.as_ref().filter(|_| name != node) else { continue };
        let Some(addr) = bgp.ipv4_address else { continue };
        let peer_as = bgp.as_number.unwrap_or(local_as);
        let reflector = cluster_of(name, n).is_some();
        // Calico: with reflectors, non-reflectors peer only with reflectors;
        // reflectors peer with everyone. Without any, the full mesh (if on).
        let (role, peer_type) = match (any_reflector, me_reflector, reflector) {
            (false, _, _) if settings.mesh => (PeerRole::Mesh, MESH),
            (false, _, _) => continue,
            (true, false, true) => (PeerRole::RrServer, RR_SERVER),
            (true, false, false) => continue,
            (true, true, true) => (PeerRole::Mesh, MESH),
            (true, true, false) => (PeerRole::RrClient, RR_CLIENT),
        };
        let role = if peer_as != local_as { PeerRole::External } else { role };
        let mut setup = PeerSetup::new(role, peer_as);
        if role == PeerRole::External {
            // Other nodes in another AS: their blocks come in, ours go out.
            setup.import = Some(Policy::accept_all());
        }
        let Ok(md5_key) = referenced.mesh_md5_key(addr.ip()) else { continue };
        let mut c = session(config, settings, addr.ip(), peer_as, router_id);
        // Calico's listen port is the cluster's: the other nodes listen where we do.
        c.remote_port = settings.listen.port();
        c.md5_key = md5_key;
        if peer_type == MESH {
            c.graceful_restart = Some(settings.mesh_restart_time);
        }
        // ADD-PATH (RFC 7911) between a reflector and its clients: a reflector
        // sends every path of an ECMP set, not only its best, so clients keep
        // the ECMP paths of what it reflects.
        c.add_path_send = role == PeerRole::RrClient;
        c.add_path_receive = role == PeerRole::RrServer;
        c.bfd = config.bgp.mesh_bfd.peer_bfd();
        out.insert(addr.ip(), Wanted { config: c, peer_type, setup });
    }
    for p in &config.bgp.peers {
        let mut c = session(config, settings, p.address, p.as_number.0, router_id);
        c.passive = p.passive;
        if let Some(h) = p.hold_time_seconds {
            c.hold_time = h.0;
        }
        c.md5_key = p.password.as_ref().map(|s| s.expose().as_bytes().to_vec());
        c.local_addr = p.source_address;
        c.ttl_security = p.ttl_security_hops;
        c.multihop_ttl = p.ebgp_multihop;
        c.max_prefixes = p.max_prefixes.map(|m| (m, Duration::from_secs(60)));
        c.bfd = p.bfd.and_then(|b| b.peer_bfd());
        let role = if p.as_number.0 == local_as { PeerRole::Mesh } else { PeerRole::External };
        let mut setup = PeerSetup::new(role, p.as_number.0);
        if role == PeerRole::External {
            // Calico imports everything its global peers send (BIRD's
            // `import all`); tortie's RIB would refuse it without a policy (RFC 8212).
            setup.import = Some(Policy::accept_all());
        }
        out.insert(p.address, Wanted { config: c, peer_type: GLOBAL, setup });
    }
    // BGPPeer resources; a configured peer of the same address wins (the file is the node's own).
    for r in super::bgp_peers::sessions(resources, node, nodes) {
        if out
            .get(&r.address)
            .is_some_and(|w| w.peer_type == GLOBAL && config.bgp.peers.iter().any(|p| p.address == r.address))
        {
            continue;
        }
        let Ok(md5_key) = super::bgp_peers::md5_key(&r, &referenced.passwords) else { continue };
        let Ok((import, export)) = super::bgp_peers::filter_policies(&r, &referenced.filters) else { continue };
        let mut c = session(config, settings, r.address, r.peer_as, router_id);
        c.remote_port = r.port;
        c.md5_key = md5_key;
        c.ttl_security = r.ttl_security;
        c.bfd = r.bfd;
        if r.use_node_ip {
            c.local_addr = node_address(nodes, node, r.address);
        }
        if let Some(local) = r.local_as {
            c.local_as = local;
        }
        if let Some(k) = r.keepalive {
            c.keepalive = Some(k);
        }
        if let Some(t) = r.restart_time {
            c.graceful_restart = Some(t);
        }
        let role = if r.peer_as == c.local_as { PeerRole::Mesh } else { PeerRole::External };
        let mut setup = PeerSetup::new(role, r.peer_as);
        setup.local_as = r.local_as;
        setup.allow_as_in = r.allow_local_as;
        if let Some(nhs) = r.next_hop_self {
            setup.next_hop_self = nhs;
        }
        if role == PeerRole::External {
            setup.import = Some(Policy::accept_all());
        }
        // BGPFilters: their rules, then what the role does without them (their default accepts).
        if import.is_some() {
            setup.import = import;
        }
        setup.export = export;
        out.insert(r.address, Wanted { config: c, peer_type: r.peer_type, setup });
    }
    out
}

/// Hands the settings' fields without effect to the shared report (`datastore::unsupported`),
/// per resource, so one that no longer has any is cleared.
fn report_unsupported(node: &str, unsupported: &[Unsupported]) {
    use crate::datastore::Kind;
    use crate::datastore::unsupported::{Finding, Source, record_from};
    for name in [bgp_config::DEFAULT.to_string(), bgp_config::node_resource(node)] {
        let findings = unsupported
            .iter()
            .filter(|u| u.name == name)
            .map(|u| Finding {
                kind: Kind::BgpConfiguration,
                name: name.clone(),
                field: u.field.to_string(),
                reason: u.reason.to_string(),
            })
            .collect();
        record_from(Source::BgpSettings, Kind::BgpConfiguration, &name, findings);
    }
}

/// `node`'s own address of `peer`'s family, from its Node record: the source of a `UseNodeIP` session.
fn node_address(nodes: &[(String, Node)], node: &str, peer: IpAddr) -> Option<IpAddr> {
    let bgp = nodes.iter().find(|(name, _)| name == node)?.1.bgp.as_ref()?;
    match peer {
        IpAddr::V4(_) => bgp.ipv4_address.map(|a| a.ip()),
        IpAddr::V6(_) => bgp.ipv6_address.map(|a| a.ip()),
    }
}

/// The node records from the agent's picture of them, or `None` while it is being read: the
/// caller keeps its current peers rather than tearing down the mesh over a datastore outage.
/// (Read from the picture, not listed: every Node event would otherwise make every agent list
/// every Node, O(N²) reads while a cluster of N nodes starts.)
fn known_nodes(nodes: &mut watch::Receiver<Option<Known<Node>>>) -> Option<Vec<(String, Node)>> {
    nodes.borrow_and_update().as_ref().map(|known| known.stored().map(|s| (s.name.clone(), s.spec.clone())).collect())
}

/// Owns the speaker: applies peer-set changes and publishes statuses.
/// Where [`follow_peers`] publishes.
struct Outputs {
    peers: watch::Sender<Vec<ApiPeer>>,
    known: watch::Sender<bool>,
    sample: watch::Sender<BgpSample>,
}

/// The BGPConfiguration state the speaker and RIB run with.
struct Applied {
    resources: bgp_config::Resources,
    settings: Effective,
}

#[allow(clippy::too_many_arguments)]
async fn follow_peers(
    config: Config,
    ds: Datastore,
    (node, router_id): (String, Ipv4Addr),
    (mut speaker, mut applied): (Speaker, Applied),
    rib: Rib,
    mut inputs: BgpInputs,
    out: Outputs,
    mut stop: watch::Receiver<bool>,
) {
    let mut current: BTreeMap<IpAddr, (Wanted, watch::Receiver<PeerStatus>)> = BTreeMap::new();
    let mut changes: BTreeMap<IpAddr, (State, u64)> = BTreeMap::new();
    let mut peers_watch = ds.watch::<BgpPeer>(None).await.ok();
    let mut configs_watch = ds.watch::<BgpConfiguration>(None).await.ok();
    let mut secrets_watch = ds.watch::<Secret>(None).await.ok();
    let mut filters_watch = ds.watch::<BgpFilter>(None).await.ok();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut resync = true;
    let mut nodes_open = true;
    let mut reachability: Option<Vec<DesiredRoute>> = None;
    loop {
        // While the Nodes are being read nothing else is read either: the current peers stay.
        let nodes = if resync { known_nodes(&mut inputs.nodes) } else { None };
        let listed = match nodes {
            Some(nodes) => (Some(nodes), list_bgp_peers(&ds).await),
            None => (None, None),
        };
        let referenced = match &listed.1 {
            Some(resources) => super::bgp_peers::referenced(&ds, resources).await,
            None => None,
        };
        if let ((Some(nodes), Some(resources)), Some(mut referenced)) = (listed, referenced) {
            resync = false;
            let routes = super::bgp_peers::reachability_routes(&super::bgp_peers::sessions(&resources, &node, &nodes));
            if reachability.as_ref() != Some(&routes) {
                inputs.programmer.replace_kind(RouteKind::PeerReachability, routes.clone()).await;
                reachability = Some(routes);
            }
            if !apply_settings(&config, &ds, &node, &nodes, &mut speaker, &rib, &inputs, &mut applied).await {
                // Retried on the next tick.
                resync = true;
            }
            // A mesh password that cannot be read now: the current peers stay, retried next tick.
            let mesh_password = applied.settings.mesh_password.as_ref();
            let want = match referenced.read_mesh_password(&ds, mesh_password).await {
                true => Some(wanted(&config, &applied.settings, &node, router_id, &nodes, &resources, &referenced)),
                false => None,
            };
            resync |= want.is_none();
            let mut want = want.unwrap_or_else(|| current.iter().map(|(a, (w, _))| (*a, w.clone())).collect());
            for w in want.values_mut() {
                w.config.restarting = inputs.restarted;
                w.config.forwarding_preserved = inputs.restarted;
            }
            for addr in current.keys().copied().collect::<Vec<_>>() {
                match want.get(&addr) {
                    None => {
                        let _ = speaker.remove_peer(addr).await;
                        rib.remove_peer(addr).await;
                        current.remove(&addr);
                        tracing::info!(subsys = "bgp", peer = %addr, "peer removed");
                    }
                    Some(w) if current.get(&addr).is_some_and(|(c, _)| c != w) => {
                        let _ = speaker.change_peer(w.config.clone()).await;
                        rib.change_peer(addr, w.setup.clone()).await;
                        if let Some(entry) = current.get_mut(&addr) {
                            // The speaker restarts a session whose own configuration changed; one
                            // whose import policy alone changed restarts here, after the RIB has
                            // the new policy, so the routes the peer sends again meet it.
                            if entry.0.config == w.config && entry.0.setup.import != w.setup.import {
                                let _ = speaker.restart_session(addr).await;
                            }
                            entry.0 = w.clone();
                        }
                    }
                    Some(_) => {}
                }
            }
            for (addr, w) in want {
                if current.contains_key(&addr) {
                    continue;
                }
                match speaker.add_peer(w.config.clone()).await {
                    Ok(status) => {
                        if let Some(outbound) = speaker.outbound(addr) {
                            rib.add_peer(addr, w.setup.clone(), outbound).await;
                        }
                        tracing::info!(subsys = "bgp", peer = %addr, peer_type = w.peer_type, "peer added");
                        current.insert(addr, (w, status));
                    }
                    Err(e) => tracing::warn!(subsys = "bgp", peer = %addr, error = %e, "cannot add peer"),
                }
            }
        }
        let stats = rib.stats().await;
        let paths = inputs.paths.borrow().clone();
        publish(&current, &stats.per_peer, &paths, &mut changes, &out.peers);
        if !resync {
            out.known.send_if_modified(|k| !std::mem::replace(k, true));
        }
        out.sample.send_replace(sample(&current, &stats));
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {
                if inputs.abandon_on_stop {
                    speaker.abandon_all().await;
                    tracing::info!(subsys = "bgp", "sessions left without a NOTIFICATION: peers keep our routes while we restart");
                }
                return;
            }
            changed = inputs.nodes.changed(), if nodes_open => {
                // Any change to the node set may change the mesh: recompute (a burst of changes
                // is one, the picture being the latest state). The picture ends when the agent
                // stops, maybe before this task sees `stop`: it is then only no longer waited
                // on, so that the stop above still leaves the sessions as it should.
                match changed {
                    Ok(()) => resync = true,
                    Err(_) => nodes_open = false,
                }
            }
            ev = super::routes::next_event(&mut peers_watch) => {
                // A BGPPeer added, changed or removed: recompute.
                if ev.is_some() { resync = true } else { peers_watch = None }
            }
            ev = super::routes::next_event(&mut configs_watch) => {
                // A BGPConfiguration (ours or another node's: cheap to tell apart on resync).
                if ev.is_some() { resync = true } else { configs_watch = None }
            }
            ev = super::routes::next_event(&mut secrets_watch) => {
                // A password may have changed (or appeared): recompute.
                if ev.is_some() { resync = true } else { secrets_watch = None }
            }
            ev = super::routes::next_event(&mut filters_watch) => {
                // A BGPFilter changed: the policies of the peers naming it.
                if ev.is_some() { resync = true } else { filters_watch = None }
            }
        }
    }
}

/// The BGPPeer resources, or `None` when they cannot be read (see [`known_nodes`]).
async fn list_bgp_peers(ds: &Datastore) -> Option<Vec<(String, BgpPeer)>> {
    match ds.list::<BgpPeer>().await {
        Ok(listing) => {
            for bad in &listing.invalid {
                tracing::warn!(subsys = "bgp", error = %bad, "ignoring an invalid BGPPeer");
            }
            Some(listing.items.into_iter().map(|s| (s.name, s.spec)).collect())
        }
        Err(e) => {
            tracing::warn!(subsys = "bgp", error = %e, "cannot list BGPPeers; keeping the current peers");
            None
        }
    }
}

/// Reads the BGPConfigurations and applies what changed to the listener, the RIB, the log level
/// and this node's Node record (the sessions follow through [`wanted`]). False when something
/// could not be done and should be retried.
#[allow(clippy::too_many_arguments)]
async fn apply_settings(
    config: &Config,
    ds: &Datastore,
    node: &str,
    nodes: &[(String, Node)],
    speaker: &mut Speaker,
    rib: &Rib,
    inputs: &BgpInputs,
    applied: &mut Applied,
) -> bool {
    let mut complete = true;
    match bgp_config::read(ds, node).await {
        Ok(resources) => applied.resources = resources,
        // Not retried every second: a record that breaks the schema stays broken until it is
        // written again, which the watch reports (its periodic relist covers an outage).
        Err(e) => {
            tracing::warn!(subsys = "bgp", error = %e, "cannot read BGPConfiguration; keeping the current settings")
        }
    }
    let want = applied.resources.effective(&config.bgp, inputs.node_address);
    let have = &mut applied.settings;
    if want.log_level != have.log_level {
        match crate::logging::set_level(want.log_level.as_deref()) {
            Ok(_) => {
                tracing::info!(subsys = "bgp", level = ?want.log_level, "log level set by BGPConfiguration logSeverityScreen")
            }
            Err(e) => tracing::warn!(subsys = "bgp", error = %e, "cannot set the log level"),
        }
        have.log_level = want.log_level.clone();
    }
    if want.listen != have.listen {
        match speaker.relisten(want.listen).await {
            Ok(bound) => {
                tracing::info!(subsys = "bgp", listen = %bound, "BGP speaker listening");
                have.listen = want.listen;
            }
            Err(e) => {
                tracing::warn!(subsys = "bgp", listen = %want.listen, error = %e, "cannot listen on the BGPConfiguration listenPort/bindMode address; still on the old one");
                complete = false;
            }
        }
    }
    if want.as_number != have.as_number {
        tracing::info!(
            subsys = "bgp",
            from = have.as_number,
            to = want.as_number,
            "local AS changed: sessions are re-made"
        );
        rib.set_local_as(want.as_number).await;
        have.as_number = want.as_number;
    }
    if want.communities != have.communities {
        rib.set_communities(want.communities.clone()).await;
        have.communities = want.communities.clone();
    }
    have.mesh = want.mesh;
    have.mesh_restart_time = want.mesh_restart_time;
    have.mesh_password = want.mesh_password.clone();
    if want.unsupported != have.unsupported {
        report_unsupported(node, &want.unsupported);
        have.unsupported = want.unsupported.clone();
    }
    // The other nodes read our AS from our Node record.
    let recorded = nodes.iter().find(|(n, _)| n == node).map(|(_, n)| n.bgp.as_ref().and_then(|b| b.as_number));
    if recorded.is_some_and(|a| a != Some(have.as_number)) {
        let local_as = have.as_number;
        let result = super::node::update_node(ds, node, "the AS number", |spec| {
            let bgp = spec.bgp.get_or_insert_with(Default::default);
            let changed = bgp.as_number != Some(local_as);
            bgp.as_number = Some(local_as);
            changed
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(subsys = "bgp", error = %e, "cannot record the AS number on the Node");
            complete = false;
        }
    }
    complete
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The metrics label of a Calico peer type.
fn metric_peer_type(peer_type: &str) -> &'static str {
    match peer_type {
        MESH => "mesh",
        RR_CLIENT | RR_SERVER => "reflector",
        super::bgp_peers::NODE_SPECIFIC => "node_specific",
        _ => "external",
    }
}

fn sample(current: &BTreeMap<IpAddr, (Wanted, watch::Receiver<PeerStatus>)>, stats: &RibStats) -> BgpSample {
    let peers = current
        .iter()
        .map(|(addr, (w, status))| {
            // The RIB counts per peer, not per family: one `all` series.
            let counts = stats.per_peer.get(addr).cloned().unwrap_or_default();
            PeerSample {
                address: *addr,
                peer_as: w.config.peer_as,
                peer_type: metric_peer_type(w.peer_type),
                session: status.borrow().clone(),
                routes: vec![("all", counts)],
            }
        })
        .collect();
    let adj_out = stats.per_peer.values().map(|p| p.advertised).sum();
    let rib = vec![("all", "loc", stats.loc_rib_prefixes), ("all", "adj_in", stats.paths), ("all", "adj_out", adj_out)];
    BgpSample { peers, rib }
}

fn publish(
    current: &BTreeMap<IpAddr, (Wanted, watch::Receiver<PeerStatus>)>,
    rib: &BTreeMap<IpAddr, crate::bgp::rib::PeerRibStats>,
    paths: &HashMap<IpAddr, PathKind>,
    changes: &mut BTreeMap<IpAddr, (State, u64)>,
    tx: &watch::Sender<Vec<ApiPeer>>,
) {
    let now = unix(SystemTime::now());
    changes.retain(|a, _| current.contains_key(a));
    let peers = current
        .iter()
        .map(|(addr, (w, status))| {
            let s = status.borrow().clone();
            let since = match changes.get(addr) {
                Some((state, at)) if *state == s.state => *at,
                _ => {
                    changes.insert(*addr, (s.state, now));
                    now
                }
            };
            ApiPeer {
                address: addr.to_string(),
                as_number: w.config.peer_as,
                peer_type: w.peer_type.to_string(),
                state: format!("{:?}", s.state).to_lowercase(),
                since,
                // While BFD holds the session down, that is why it is not up.
                info: match s.bfd.as_ref().and_then(|b| b.holding()) {
                    Some(held) => held,
                    None => s.last_error.as_ref().map(|e| format!("{e:?}")).unwrap_or_default(),
                },
                // The RIB counts every peer's routes; the session only those of
                // a peer with a maximum-prefix limit.
                prefixes_received: rib.get(addr).map_or(s.prefixes_received, |r| r.received),
                prefixes_advertised: rib.get(addr).map_or(0, |s| s.advertised),
                tunnel_mode: paths.get(addr).copied().unwrap_or(PathKind::Direct).as_str().to_string(),
                hold_time: s.negotiated.as_ref().map(|n| n.hold_time),
                keepalive: s.negotiated.as_ref().map(|n| n.keepalive),
                established_at: s.established_since.map(unix),
                flaps: s.flaps,
                bfd: s.bfd.as_ref().map(|b| b.state.name().to_lowercase()),
            }
        })
        .collect();
    tx.send_if_modified(|old| {
        if *old != peers {
            *old = peers;
            true
        } else {
            false
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::resources::NodeBgp;

    fn node(addr: &str, cluster: Option<Ipv4Addr>) -> Node {
        Node {
            bgp: Some(NodeBgp {
                ipv4_address: addr.parse().ok(),
                route_reflector_cluster_id: cluster,
                ..NodeBgp::default()
            }),
            ..Node::default()
        }
    }

    /// The settings of a node with the default configuration and no BGPConfiguration.
    fn default_settings() -> Effective {
        bgp_config::effective(&Config::default().bgp, IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)), None, None)
    }

    /// The sessions node `a` (10.1.0.1, default configuration) wants.
    fn wanted_by_a(
        nodes: &[(String, Node)],
        resources: &[(String, BgpPeer)],
        referenced: &super::super::bgp_peers::Referenced,
    ) -> BTreeMap<IpAddr, Wanted> {
        wanted(&Config::default(), &default_settings(), "a", Ipv4Addr::new(10, 1, 0, 1), nodes, resources, referenced)
    }

    #[tokio::test]
    async fn the_reflector_cluster_id_is_the_configured_one_else_the_node_records() {
        use crate::datastore::sqlite::{SqliteBackend, SqliteOptions};
        let dir = tempfile::tempdir().unwrap();
        let ds = Datastore::new(SqliteBackend::open(dir.path().join("ds.db"), SqliteOptions::default()).await.unwrap());
        let mut config = Config::default();
        assert_eq!(own_cluster_id(&config, &ds, "rr1").await, None, "no record yet");
        ds.create("rr1", &node("10.1.0.1/16", Some(Ipv4Addr::new(244, 0, 0, 1)))).await.unwrap();
        ds.create("client", &node("10.1.0.2/16", None)).await.unwrap();
        assert_eq!(own_cluster_id(&config, &ds, "rr1").await, Some(Ipv4Addr::new(244, 0, 0, 1)));
        assert_eq!(own_cluster_id(&config, &ds, "client").await, None);
        config.bgp.route_reflector_cluster_id = Some(Ipv4Addr::new(244, 0, 0, 9));
        assert_eq!(own_cluster_id(&config, &ds, "rr1").await, Some(Ipv4Addr::new(244, 0, 0, 9)));
    }

    #[test]
    fn our_next_hops_are_the_router_id_and_the_ipv6_address() {
        let mut config = Config::default();
        let id = Ipv4Addr::new(10, 40, 1, 11);
        assert_eq!(local_addresses(&config, id), vec![IpAddr::V4(id)]);
        config.node.ipv6_address = "fd40:1::11/64".parse().ok();
        assert_eq!(local_addresses(&config, id), vec![IpAddr::V4(id), "fd40:1::11".parse().unwrap()]);
    }

    /// (peer, role, add_path_send, add_path_receive) of every wanted session of `me`.
    fn sessions(me: &str, nodes: &[(String, Node)]) -> Vec<(IpAddr, PeerRole, bool, bool)> {
        let config = Config::default();
        let settings = bgp_config::effective(&config.bgp, IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)), None, None);
        wanted(&config, &settings, me, Ipv4Addr::new(10, 1, 0, 1), nodes, &[], &Default::default())
            .into_iter()
            .map(|(a, w)| (a, w.setup.role, w.config.add_path_send, w.config.add_path_receive))
            .collect()
    }

    #[test]
    fn a_bgppeer_password_is_the_md5_key_and_a_missing_secret_starts_no_session() {
        use crate::agent::secrets::SecretError;
        use crate::datastore::resources::{SecretKeyRef, SecretSource};
        let peer = |ip: &str, secret: &str| BgpPeer {
            peer_ip: Some(ip.into()),
            as_number: Some(65001),
            password: Some(SecretSource {
                secret_key_ref: SecretKeyRef { name: secret.into(), key: "password".into(), optional: false },
            }),
            ..BgpPeer::default()
        };
        let resources = vec![
            ("tor".to_string(), peer("10.0.0.1", "tor-secret")),
            ("tor-missing".to_string(), peer("10.0.0.2", "gone")),
            ("tor-optional".to_string(), peer("10.0.0.3", "gone")),
        ];
        let passwords: super::super::bgp_peers::Passwords = [
            ("tor".to_string(), Ok(Some(b"s3cr3t".to_vec()))),
            ("tor-missing".to_string(), Err(SecretError::NoSecret { name: "gone".into() })),
            ("tor-optional".to_string(), Ok(None)),
        ]
        .into();
        let referenced = super::super::bgp_peers::Referenced { passwords, ..Default::default() };
        let want = wanted_by_a(&[], &resources, &referenced);
        let keys: Vec<(IpAddr, Option<Vec<u8>>)> = want.iter().map(|(a, w)| (*a, w.config.md5_key.clone())).collect();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(keys, vec![(ip("10.0.0.1"), Some(b"s3cr3t".to_vec())), (ip("10.0.0.3"), None)]);
    }

    #[test]
    fn bgppeer_session_fields_reach_the_session_and_the_rib() {
        use crate::datastore::resources::SourceAddress;
        let nodes = vec![(
            "a".to_string(),
            Node {
                bgp: Some(NodeBgp {
                    ipv4_address: "10.1.0.1/24".parse().ok(),
                    ipv6_address: "fd00::1/64".parse().ok(),
                    ..NodeBgp::default()
                }),
                ..Node::default()
            },
        )];
        let resources = vec![
            (
                "tor".to_string(),
                BgpPeer {
                    peer_ip: Some("10.0.0.1".into()),
                    as_number: Some(65001),
                    keep_original_next_hop: true,
                    ttl_security: Some(1),
                    num_allowed_local_as_numbers: Some(2),
                    keepalive_time: "500ms".parse().ok(),
                    max_restart_time: "1.5m".parse().ok(),
                    ..BgpPeer::default()
                },
            ),
            (
                "tor6".to_string(),
                BgpPeer { peer_ip: Some("[fd00::fe]:179".into()), as_number: Some(65001), ..BgpPeer::default() },
            ),
            (
                "kernel-picks".to_string(),
                BgpPeer {
                    peer_ip: Some("10.0.0.2".into()),
                    as_number: Some(65001),
                    source_address: Some(SourceAddress::None),
                    ..BgpPeer::default()
                },
            ),
        ];
        let want = wanted_by_a(&nodes, &resources, &Default::default());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let tor = &want[&ip("10.0.0.1")];
        assert_eq!(
            (tor.setup.next_hop_self, tor.config.ttl_security, tor.setup.allow_as_in),
            (false, Some(1), 2),
            "keepOriginalNextHop, ttlSecurity, numAllowedLocalASNumbers"
        );
        assert_eq!(
            (tor.config.keepalive, tor.config.graceful_restart),
            (Some(1), Some(90)),
            "whole seconds, rounded up"
        );
        assert_eq!(tor.config.local_addr, Some(ip("10.1.0.1")), "UseNodeIP is the default");
        let resource = super::super::bgp_peers::sessions(&resources, "a", &nodes);
        assert_eq!(resource[0].next_hop_self, Some(false), "keepOriginalNextHop is nextHopMode: Keep");
        assert_eq!(want[&ip("fd00::fe")].config.local_addr, Some(ip("fd00::1")), "the node's IPv6 address");
        assert_eq!(want[&ip("10.0.0.2")].config.local_addr, None, "sourceAddress: None");
    }

    #[test]
    fn bgppeer_filters_become_policies_and_a_missing_filter_starts_no_session() {
        let with = |ip: &str, filters: &[&str]| BgpPeer {
            peer_ip: Some(ip.into()),
            as_number: Some(65001),
            filters: filters.iter().map(|f| f.to_string()).collect(),
            ..BgpPeer::default()
        };
        let resources =
            vec![("tor".to_string(), with("10.0.0.1", &["no-10"])), ("tor2".to_string(), with("10.0.0.2", &["gone"]))];
        let no_10: BgpFilter = serde_json::from_value(serde_json::json!({
            "exportV4": [{"action": "Reject", "cidr": "10.0.0.0/8", "matchOperator": "In"}],
            "importV4": [{"action": "Reject", "cidr": "10.0.0.0/8", "matchOperator": "In"}],
        }))
        .unwrap();
        let referenced = super::super::bgp_peers::Referenced {
            filters: [("no-10".to_string(), no_10)].into(),
            ..Default::default()
        };
        let want = wanted_by_a(&[], &resources, &referenced);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(want.keys().copied().collect::<Vec<_>>(), vec![ip("10.0.0.1")], "tor2 names a missing filter");
        let setup = &want[&ip("10.0.0.1")].setup;
        let route = crate::bgp::rib::attrs::PathAttrs::local();
        let rejects = |p: &Option<Policy>| {
            p.as_ref()
                .unwrap()
                .apply(&"10.2.0.0/16".parse().unwrap(), crate::bgp::rib::policy::PeerType::Ebgp, route.clone())
                .is_none()
        };
        assert!(rejects(&setup.import) && rejects(&setup.export));
    }

    #[test]
    fn reflectors_send_add_path_to_clients_and_clients_receive_it() {
        let cluster = Some(Ipv4Addr::new(10, 255, 0, 1));
        let nodes = vec![
            ("rr1".to_string(), node("10.1.0.1/24", cluster)),
            ("rr2".to_string(), node("10.1.0.2/24", cluster)),
            ("a".to_string(), node("10.1.0.3/24", None)),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            sessions("rr1", &nodes),
            vec![(ip("10.1.0.2"), PeerRole::Mesh, false, false), (ip("10.1.0.3"), PeerRole::RrClient, true, false)]
        );
        assert_eq!(
            sessions("a", &nodes),
            vec![(ip("10.1.0.1"), PeerRole::RrServer, false, true), (ip("10.1.0.2"), PeerRole::RrServer, false, true)]
        );
        // Without reflectors: the full mesh, no ADD-PATH.
        let mesh = vec![("a".to_string(), node("10.1.0.3/24", None)), ("b".to_string(), node("10.1.0.4/24", None))];
        assert_eq!(sessions("a", &mesh), vec![(ip("10.1.0.4"), PeerRole::Mesh, false, false)]);
    }
}
