//! BGPPeer resources (Calico's `projectcalico.org/v3` BGPPeer, as tortie
//! stores them): which of them apply to this node, and the sessions they ask
//! for. A peer applies to every node when it names neither `node` nor
//! `nodeSelector`, to one node with `node`, and to the nodes a
//! `nodeSelector` matches. It peers with `peerIP` (with its `asNumber`), or
//! with every node `peerSelector` matches (each with its own AS).
//!
//! A peer with a `password` gets its secret's value as the session's TCP MD5 key; when the secret
//! or key is missing (and the reference is not `optional`) the session is not started and a
//! warning names the BGPPeer, secret and key: a ToR requiring MD5 would refuse it anyway, and a
//! session without the key the operator asked for must not come up.
//!
//! Sessions leave from the node's address of the peer's family (Calico's default
//! `sourceAddress: UseNodeIP`), or from the address the kernel picks with `sourceAddress: None`.
//! `ttlSecurity` is GTSM, `numAllowedLocalASNumbers` lets our AS appear that many times in a
//! received path, `keepOriginalNextHop` is `nextHopMode: Keep`; `reachableBy` is a host route to the peer
//! through that gateway, which the agent programs (route kind `peer_reachability`);
//! `localWorkloadSelector` and `reversePeering: Manual` are refused when the BGPPeer is read.
//! `filters` name BGPFilters (`agent::bgp_filters`), which become the peer's import and export
//! policy; a peer naming one that does not exist is not started, with a warning. `bfd` (a tortie
//! extension) runs a BFD session beside the BGP session, its unset fields taking the
//! configuration file's defaults.
//!
//! Selectors are Calico's (`crate::selector`), matched against the labels of
//! the Node records, so a relabelled node changes the sessions at the next
//! resync (which every Node watch event starts). A selector that does not
//! parse (a record written before selectors were checked on write) selects
//! no node.

use super::bgp_filters::{self, Direction};
use crate::agent::secrets::{self, SecretError};
use crate::bgp::rib::Policy;
use crate::bgp::session::config::PeerBfd;
use crate::config::{BFD_MAX_INTERVAL_MS, BfdConfig};
use crate::dataplane::route::{DesiredRoute, NextHop, Route, RouteKind, RouteTarget};
use crate::datastore::Datastore;
use crate::datastore::resources::BgpPeerBfd;
use crate::datastore::resources::{BgpFilter, BgpPeer, GoDuration, NextHopMode, Node, SecretKeyRef, SourceAddress};
use crate::selector::{NoLabels, Selector};
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// Calico's peer type for a peer of one node.
pub const NODE_SPECIFIC: &str = "node specific";

/// One session a BGPPeer resource asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePeer {
    /// The resource's name, for logs.
    pub resource: String,
    pub address: IpAddr,
    pub port: u16,
    pub peer_as: u32,
    /// Our AS toward this peer, when it overrides the node's.
    pub local_as: Option<u32>,
    /// `Some(true)`: always next-hop self; `Some(false)`: keep; `None`: the role's default.
    pub next_hop_self: Option<bool>,
    pub keepalive: Option<u16>,
    pub restart_time: Option<u16>,
    /// `global` or `node specific`.
    pub peer_type: &'static str,
    /// Where the session's MD5 key is.
    pub password: Option<SecretKeyRef>,
    /// GTSM hops (`None`: off).
    pub ttl_security: Option<u8>,
    /// How many times our AS may appear in a received path.
    pub allow_local_as: u8,
    /// Bind the node's address as the session's source (Calico's default `UseNodeIP`).
    pub use_node_ip: bool,
    /// BGPFilter names, in order.
    pub filters: Vec<String>,
    /// The BFD session beside the BGP session (`None`: off).
    pub bfd: Option<PeerBfd>,
    /// The gateway of the host route to the peer (`reachableBy`).
    pub reachable_by: Option<IpAddr>,
}

/// A BGPPeer's `bfd`, its unset fields from [`BfdConfig::default`].
fn peer_bfd(bfd: &BgpPeerBfd) -> Option<PeerBfd> {
    let defaults = BfdConfig::default();
    let ms = |d: &Option<GoDuration>, default: u32| {
        d.as_ref().map_or(default, |d| u32::try_from(d.get().as_millis()).unwrap_or(BFD_MAX_INTERVAL_MS))
    };
    BfdConfig {
        enabled: bfd.enabled,
        min_tx_ms: ms(&bfd.min_tx_interval, defaults.min_tx_ms),
        min_rx_ms: ms(&bfd.min_rx_interval, defaults.min_rx_ms),
        multiplier: bfd.multiplier.unwrap_or(defaults.multiplier),
        multihop: bfd.multihop,
        passive: bfd.passive,
        graceful_restart: bfd.graceful_restart,
    }
    .peer_bfd()
}

/// A password's value as read (`Ok(None)`: an optional secret that is absent).
pub type PasswordValue = Result<Option<Vec<u8>>, SecretError>;

/// Each BGPPeer's MD5 key by resource name.
pub type Passwords = BTreeMap<String, PasswordValue>;

/// What BGPPeers refer to by name: their passwords' values and the BGPFilters; and the mesh
/// password's value (BGPConfiguration `nodeMeshPassword`).
#[derive(Debug, Default)]
pub struct Referenced {
    pub passwords: Passwords,
    pub filters: BTreeMap<String, BgpFilter>,
    /// The `nodeMeshPassword` reference and what reading it gave; `None` without one.
    pub mesh_password: Option<(SecretKeyRef, PasswordValue)>,
}

impl Referenced {
    /// Reads the mesh password `reference` points to; false (logged) when it cannot be read for a
    /// reason that may pass, so the caller keeps its current peers.
    pub async fn read_mesh_password(&mut self, ds: &Datastore, reference: Option<&SecretKeyRef>) -> bool {
        let Some(reference) = reference else {
            self.mesh_password = None;
            return true;
        };
        let value = secrets::read(ds, reference).await;
        if let Err(e) = &value
            && e.is_transient()
        {
            tracing::warn!(subsys = "bgp", error = %e, "cannot read the nodeMeshPassword secret; keeping the current peers");
            return false;
        }
        self.mesh_password = Some((reference.clone(), value));
        true
    }

    /// The TCP-MD5 key of the session to node address `peer`, or `Err` (logged, naming secret and
    /// key) when the mesh password is unavailable: the session must not start without it.
    pub fn mesh_md5_key(&self, peer: IpAddr) -> Result<Option<Vec<u8>>, ()> {
        match &self.mesh_password {
            None => Ok(None),
            Some((_, Ok(value))) => Ok(value.clone()),
            Some((reference, Err(e))) => {
                tracing::warn!(
                    subsys = "bgp", peer = %peer, secret = %reference.name, key = %reference.key, error = %e,
                    "the BGPConfiguration's nodeMeshPassword is unavailable: the session to this node is not started"
                );
                Err(())
            }
        }
    }
}

/// Reads what `peers` refer to; `None` when something cannot be read for a reason that may pass
/// (the datastore is unreachable), so the caller keeps its current peers.
pub async fn referenced(ds: &Datastore, peers: &[(String, BgpPeer)]) -> Option<Referenced> {
    let passwords = passwords(ds, peers).await?;
    let filters = match ds.list::<BgpFilter>().await {
        Ok(listing) => {
            for bad in &listing.invalid {
                tracing::warn!(subsys = "bgp", error = %bad, "ignoring an invalid BGPFilter; peers naming it do not start");
            }
            listing.items.into_iter().map(|s| (s.name, s.spec)).collect()
        }
        Err(e) => {
            tracing::warn!(subsys = "bgp", error = %e, "cannot list BGPFilters; keeping the current peers");
            return None;
        }
    };
    Some(Referenced { passwords, filters, mesh_password: None })
}

/// The import and export policies of `peer`'s filters (`None`: no filters), or `Err` (logged,
/// naming the BGPPeer and the filter) when one is missing: its session must not start with routes
/// the filter was meant to stop.
pub fn filter_policies(
    peer: &ResourcePeer,
    filters: &BTreeMap<String, BgpFilter>,
) -> Result<(Option<Policy>, Option<Policy>), ()> {
    let compiled = bgp_filters::compile(&peer.filters, filters, Direction::Import)
        .and_then(|import| Ok((import, bgp_filters::compile(&peer.filters, filters, Direction::Export)?)));
    compiled.map_err(|missing| {
        tracing::warn!(
            subsys = "bgp", bgppeer = %peer.resource, peer = %peer.address, bgpfilter = %missing,
            "the BGPPeer names a BGPFilter that does not exist or is invalid: the session is not started"
        );
    })
}

/// Reads the secret of every BGPPeer with a `password`; `None` when one cannot be read for a
/// reason that may pass (the datastore is unreachable).
async fn passwords(ds: &Datastore, peers: &[(String, BgpPeer)]) -> Option<Passwords> {
    let mut out = Passwords::new();
    for (name, peer) in peers {
        let Some(password) = &peer.password else { continue };
        let value = secrets::read(ds, &password.secret_key_ref).await;
        if let Err(e) = &value
            && e.is_transient()
        {
            tracing::warn!(subsys = "bgp", bgppeer = %name, error = %e, "cannot read a BGPPeer password; keeping the current peers");
            return None;
        }
        out.insert(name.clone(), value);
    }
    Some(out)
}

/// The MD5 key of `peer`, or `Err` (logged, naming BGPPeer, secret and key) when its session must
/// not start.
pub fn md5_key(peer: &ResourcePeer, passwords: &Passwords) -> Result<Option<Vec<u8>>, ()> {
    let Some(reference) = &peer.password else { return Ok(None) };
    let error = match passwords.get(&peer.resource) {
        Some(Ok(value)) => return Ok(value.clone()),
        Some(Err(e)) => e.to_string(),
        None => "not read".to_string(),
    };
    tracing::warn!(
        subsys = "bgp", bgppeer = %peer.resource, peer = %peer.address, secret = %reference.name,
        key = %reference.key, error = %error,
        "the BGPPeer's password is unavailable: the session is not started"
    );
    Err(())
}

/// `selector` (field `field` of BGPPeer `name`) parsed; `None`, logged, when it does not parse.
fn parsed(name: &str, field: &str, selector: &str) -> Option<Selector> {
    Selector::parse(selector)
        .map_err(|e| {
            tracing::warn!(subsys = "bgp", bgppeer = %name, field, selector, error = %e, "BGPPeer selector is not valid; it selects no node");
        })
        .ok()
}

fn applies_to(name: &str, peer: &BgpPeer, node: &str, nodes: &[(String, Node)]) -> bool {
    match (&peer.node, &peer.node_selector) {
        (Some(n), _) => n == node,
        (None, Some(selector)) => {
            let Some(selector) = parsed(name, "nodeSelector", selector) else { return false };
            match nodes.iter().find(|(n, _)| n == node) {
                Some((_, record)) => selector.matches(&record.labels),
                None => selector.matches(&NoLabels),
            }
        }
        (None, None) => true,
    }
}

/// The session BGPPeer `name` (`p`) asks for with `address`.
fn resource_peer(name: &str, p: &BgpPeer, address: IpAddr, port: u16, peer_as: u32) -> ResourcePeer {
    ResourcePeer {
        resource: name.to_string(),
        address,
        port,
        peer_as,
        local_as: p.local_as_number,
        next_hop_self: match (p.next_hop_mode, p.keep_original_next_hop) {
            (Some(NextHopMode::SelfHop), _) => Some(true),
            (Some(NextHopMode::Keep), _) | (None, true) => Some(false),
            (Some(NextHopMode::Auto), _) | (None, false) => None,
        },
        keepalive: p.keepalive_time.as_ref().and_then(GoDuration::timer_seconds),
        restart_time: p.max_restart_time.as_ref().and_then(GoDuration::timer_seconds),
        peer_type: if p.node.is_some() { NODE_SPECIFIC } else { crate::agent::bgp::GLOBAL },
        password: p.password.as_ref().map(|s| s.secret_key_ref.clone()),
        ttl_security: p.ttl_security.and_then(|h| u8::try_from(h).ok()).filter(|h| *h > 0),
        allow_local_as: p.num_allowed_local_as_numbers.and_then(|n| u8::try_from(n).ok()).unwrap_or(0),
        use_node_ip: p.source_address != Some(SourceAddress::None),
        filters: p.filters.clone(),
        bfd: p.bfd.as_ref().and_then(peer_bfd),
        reachable_by: p.reachable_by(),
    }
}

/// The host routes `reachableBy` asks for: each peer through its gateway, so the session's
/// packets do not follow a route the session itself may withdraw (or a default route elsewhere).
pub fn reachability_routes(sessions: &[ResourcePeer]) -> Vec<DesiredRoute> {
    let mut routes: Vec<DesiredRoute> = sessions
        .iter()
        .filter_map(|s| {
            let gateway = s.reachable_by?;
            let hop = NextHop { gateway, ifindex: None, onlink: false };
            let route = Route { dst: IpNetwork::from(s.address), target: RouteTarget::Via(hop), mtu: None };
            Some(DesiredRoute { route, kind: RouteKind::PeerReachability })
        })
        .collect();
    routes.sort_by_key(|r| r.route.dst);
    routes.dedup_by_key(|r| r.route.dst);
    routes
}

/// The sessions `peers` ask of `node`, given every node's record: those of the BGPPeers that
/// apply to it, and (Calico's automatic reverse peering) those of the BGPPeers whose
/// `peerSelector` selects it, to each node they apply to — so a reflector chosen by label peers
/// back with the nodes that peer with it.
pub fn sessions(peers: &[(String, BgpPeer)], node: &str, nodes: &[(String, Node)]) -> Vec<ResourcePeer> {
    let mut out = Vec::new();
    for (name, p) in peers.iter().filter(|(name, p)| applies_to(name, p, node, nodes)) {
        match (&p.peer_ip, &p.peer_selector) {
            (Some(ip), _) => {
                let (address, port) = match ip.parse::<SocketAddr>() {
                    Ok(sa) => (sa.ip(), sa.port()),
                    Err(_) => match ip.parse::<IpAddr>() {
                        Ok(a) => (a, 179),
                        Err(_) => {
                            tracing::warn!(subsys = "bgp", bgppeer = %name, peer_ip = %ip, "BGPPeer peerIP is not an address; ignored");
                            continue;
                        }
                    },
                };
                let Some(peer_as) = p.as_number else { continue };
                out.push(resource_peer(name, p, address, port, peer_as));
            }
            (None, Some(selector)) => {
                let Some(selector) = parsed(name, "peerSelector", selector) else { continue };
                for (other, n) in nodes.iter().filter(|(other, _)| other != node) {
                    let Some(bgp) = &n.bgp else { continue };
                    let Some(addr) = bgp.ipv4_address else { continue };
                    if !selector.matches(&n.labels) {
                        tracing::debug!(subsys = "bgp", bgppeer = %name, node = %other, "peerSelector does not match");
                        continue;
                    }
                    out.push(resource_peer(name, p, addr.ip(), 179, bgp.as_number.or(p.as_number).unwrap_or(0)));
                }
            }
            (None, None) => {}
        }
    }
    let labels = nodes.iter().find(|(n, _)| n == node).map(|(_, record)| record.labels.clone()).unwrap_or_default();
    for (name, p) in peers {
        let Some(selector) = p.peer_selector.as_deref() else { continue };
        if !parsed(name, "peerSelector", selector).is_some_and(|s| s.matches(&labels)) {
            continue;
        }
        for (other, n) in nodes.iter().filter(|(other, _)| other != node && applies_to(name, p, other, nodes)) {
            let Some(bgp) = &n.bgp else { continue };
            let Some(addr) = bgp.ipv4_address else { continue };
            if out.iter().any(|o| o.address == addr.ip()) {
                continue;
            }
            tracing::debug!(subsys = "bgp", bgppeer = %name, node = %other, "reverse peering");
            out.push(resource_peer(name, p, addr.ip(), 179, bgp.as_number.or(p.as_number).unwrap_or(0)));
        }
    }
    out.retain(|p| p.peer_as != 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::resources::NodeBgp;

    fn node(addr: &str, asn: u32) -> Node {
        Node {
            bgp: Some(NodeBgp { ipv4_address: addr.parse().ok(), as_number: Some(asn), ..NodeBgp::default() }),
            ..Node::default()
        }
    }

    #[test]
    fn global_node_specific_and_selector_peers_apply_as_calico_says() {
        let peers = vec![
            (
                "tor".to_string(),
                BgpPeer {
                    peer_ip: Some("10.0.0.1".into()),
                    as_number: Some(65001),
                    keepalive_time: "20s".parse().ok(),
                    ..BgpPeer::default()
                },
            ),
            (
                "only-b".to_string(),
                BgpPeer {
                    node: Some("b".into()),
                    peer_ip: Some("10.0.0.9:1179".into()),
                    as_number: Some(65009),
                    next_hop_mode: Some(NextHopMode::SelfHop),
                    ..BgpPeer::default()
                },
            ),
            ("all-nodes".to_string(), BgpPeer { peer_selector: Some("all()".into()), ..BgpPeer::default() }),
            (
                "labelled".to_string(),
                BgpPeer {
                    node_selector: Some("rack == 'r1'".into()),
                    peer_ip: Some("10.0.0.7".into()),
                    as_number: Some(1),
                    ..BgpPeer::default()
                },
            ),
        ];
        let nodes = vec![("a".to_string(), node("10.1.0.1/24", 64512)), ("b".to_string(), node("10.1.0.2/24", 64513))];
        let a = sessions(&peers, "a", &nodes);
        let summary: Vec<(String, IpAddr, u16, u32, &str)> =
            a.iter().map(|p| (p.resource.clone(), p.address, p.port, p.peer_as, p.peer_type)).collect();
        assert_eq!(
            summary,
            vec![
                ("tor".into(), "10.0.0.1".parse().unwrap(), 179, 65001, "global"),
                ("all-nodes".into(), "10.1.0.2".parse().unwrap(), 179, 64513, "global"),
            ]
        );
        assert_eq!(a[0].keepalive, Some(20));
        let b = sessions(&peers, "b", &nodes);
        let only_b = b.iter().find(|p| p.resource == "only-b").unwrap();
        assert_eq!((only_b.port, only_b.peer_type, only_b.next_hop_self), (1179, NODE_SPECIFIC, Some(true)));
    }

    #[test]
    fn a_peers_bfd_takes_the_file_defaults_for_what_it_leaves_out() {
        let tor = |bfd: BgpPeerBfd| {
            let peer = BgpPeer {
                peer_ip: Some("10.0.0.1".into()),
                as_number: Some(65001),
                bfd: Some(bfd),
                ..BgpPeer::default()
            };
            crate::datastore::resources::Resource::validate(&peer).unwrap();
            sessions(&[("tor".to_string(), peer)], "a", &[("a".to_string(), node("10.1.0.1/24", 64512))])[0].bfd
        };
        let on = tor(BgpPeerBfd { enabled: true, ..BgpPeerBfd::default() }).expect("BFD on");
        assert_eq!(
            (on.intervals.desired_min_tx_us, on.intervals.required_min_rx_us, on.intervals.detect_mult, on.multihop),
            (300_000, 300_000, 3, false)
        );
        assert!(!on.passive, "active unless asked");
        let passive = tor(BgpPeerBfd { enabled: true, passive: true, ..BgpPeerBfd::default() }).unwrap();
        assert!(passive.passive);
        let fast = BgpPeerBfd {
            enabled: true,
            min_tx_interval: "100ms".parse().ok(),
            multiplier: Some(5),
            multihop: true,
            ..BgpPeerBfd::default()
        };
        let fast = tor(fast).unwrap();
        assert_eq!((fast.intervals.desired_min_tx_us, fast.intervals.detect_mult, fast.multihop), (100_000, 5, true));
        assert_eq!(tor(BgpPeerBfd { min_tx_interval: "100ms".parse().ok(), ..BgpPeerBfd::default() }), None);
        let zero = BgpPeer {
            peer_ip: Some("10.0.0.1".into()),
            as_number: Some(65001),
            bfd: Some(BgpPeerBfd { enabled: true, multiplier: Some(0), ..BgpPeerBfd::default() }),
            ..BgpPeer::default()
        };
        assert_eq!(
            crate::datastore::resources::Resource::validate(&zero).unwrap_err(),
            "bfd.multiplier: 0 would never detect a failure; 3 is usual"
        );
    }

    #[test]
    fn node_and_peer_selectors_match_the_node_records_labels() {
        let labelled = |addr: &str, labels: &[(&str, &str)]| Node {
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..node(addr, 64512)
        };
        let nodes = vec![
            ("rr".to_string(), labelled("10.1.0.1/24", &[("route-reflector", "true")])),
            ("b".to_string(), labelled("10.1.0.2/24", &[("rack", "r1")])),
            ("c".to_string(), labelled("10.1.0.3/24", &[])),
        ];
        let peers = vec![
            (
                "to-reflectors".to_string(),
                BgpPeer {
                    node_selector: Some("all()".into()),
                    peer_selector: Some("route-reflector == 'true'".into()),
                    ..BgpPeer::default()
                },
            ),
            (
                "rack-tor".to_string(),
                BgpPeer {
                    node_selector: Some("rack in {'r1', 'r2'}".into()),
                    peer_ip: Some("10.0.0.7".into()),
                    as_number: Some(65007),
                    ..BgpPeer::default()
                },
            ),
        ];
        let summary = |me: &str| -> Vec<(String, IpAddr)> {
            sessions(&peers, me, &nodes).into_iter().map(|p| (p.resource, p.address)).collect()
        };
        let rr: IpAddr = "10.1.0.1".parse().unwrap();
        let tor: IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(summary("b"), vec![("to-reflectors".into(), rr), ("rack-tor".into(), tor)]);
        assert_eq!(summary("c"), vec![("to-reflectors".into(), rr)]);
        // Calico's automatic reverse peering: the reflector peers back with the nodes peering with it.
        let (b, c): (IpAddr, IpAddr) = ("10.1.0.2".parse().unwrap(), "10.1.0.3".parse().unwrap());
        assert_eq!(summary("rr"), vec![("to-reflectors".into(), b), ("to-reflectors".into(), c)]);
    }
}
