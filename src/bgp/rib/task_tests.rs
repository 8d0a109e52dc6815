//! The RIB task driven through its public API with fake sessions: channels
//! instead of peers.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnetwork::IpNetwork;
use proptest::prelude::*;
use tokio::sync::mpsc;

use super::*;
use crate::bgp::packet::{
    AsPath, AsSegment, AttributeValue, Family, GracefulRestartFamily, Nlri, Origin, PathAttribute, SegmentType,
    UpdateMessage, UpdateOutcome,
};
use crate::bgp::session::{DownReason, Negotiated, Outbound};

/// A fake session's end of a peer's outbound channel: the UPDATEs one by
/// one, encoded batches decoded as the session's peer would decode them.
struct Out {
    rx: mpsc::Receiver<Outbound>,
    ctx: crate::bgp::packet::DecodeContext,
    pending: std::collections::VecDeque<UpdateMessage>,
}

impl Out {
    fn new(rx: mpsc::Receiver<Outbound>) -> Self {
        let ctx = crate::bgp::packet::DecodeContext { four_octet_as: true, ibgp: true, ..Default::default() };
        Out { rx, ctx, pending: Default::default() }
    }

    /// For a peer that receives ADD-PATH identifiers for IPv4.
    fn add_path(mut self) -> Self {
        self.ctx.add_path.insert(Family::IPV4_UNICAST);
        self
    }

    async fn recv(&mut self) -> Option<UpdateMessage> {
        loop {
            if let Some(update) = self.pending.pop_front() {
                return Some(update);
            }
            let outbound = self.rx.recv().await?;
            self.take(outbound);
        }
    }

    fn try_recv(&mut self) -> Result<UpdateMessage, mpsc::error::TryRecvError> {
        loop {
            if let Some(update) = self.pending.pop_front() {
                return Ok(update);
            }
            let outbound = self.rx.try_recv()?;
            self.take(outbound);
        }
    }

    fn take(&mut self, outbound: Outbound) {
        use crate::bgp::packet::Message;
        match outbound {
            Outbound::Update(update) => self.pending.push_back(*update),
            Outbound::Encoded(encoded) => {
                let (bytes, updates) = (encoded.bytes, encoded.updates);
                let mut rest = &bytes[..];
                let mut count = 0;
                while !rest.is_empty() {
                    let (decoded, used) = Message::decode(rest, &self.ctx).expect("a whole message");
                    assert!(decoded.outcome.faults.is_empty(), "{:?}", decoded.outcome);
                    let Message::Update(update) = decoded.message else { panic!("not an UPDATE") };
                    self.pending.push_back(update);
                    rest = &rest[used..];
                    count += 1;
                }
                assert_eq!(count, updates, "the batch counts its UPDATEs");
            }
        }
    }
}

fn addr(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

fn negotiated(peer: u8, ibgp: bool, gr: bool) -> Negotiated {
    Negotiated {
        peer_as: if ibgp { 65000 } else { 65000 + u32::from(peer) },
        peer_id: Ipv4Addr::new(10, 0, 0, peer),
        hold_time: 90,
        keepalive: 30,
        four_octet_as: true,
        families: vec![Family::IPV4_UNICAST],
        route_refresh: true,
        enhanced_route_refresh: false,
        peer_graceful_restart: gr
            .then(|| (120, vec![GracefulRestartFamily { family: Family::IPV4_UNICAST, flags: 0x80 }])),
        add_path_receive: vec![],
        add_path_send: vec![],
        extended_message: false,
        ibgp,
        local_addr: Some(IpAddr::from([192, 0, 2, 1])),
    }
}

fn announce(prefixes: &[&str], next_hop: IpAddr, path: Vec<u32>) -> UpdateMessage {
    let IpAddr::V4(nh) = next_hop else { panic!("IPv4 next hop") };
    UpdateMessage {
        attributes: vec![
            PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
            PathAttribute::new(AttributeValue::AsPath(AsPath {
                four_octet: true,
                segments: if path.is_empty() {
                    vec![]
                } else {
                    vec![AsSegment { segment_type: SegmentType::AsSequence, asns: path }]
                },
            })),
            PathAttribute::new(AttributeValue::NextHop(nh)),
        ],
        nlri: prefixes.iter().map(|p| Nlri::new(p.parse().unwrap())).collect(),
        ..UpdateMessage::default()
    }
}

fn withdraw(prefixes: &[&str]) -> UpdateMessage {
    UpdateMessage {
        withdrawn: prefixes.iter().map(|p| Nlri::new(p.parse().unwrap())).collect(),
        ..UpdateMessage::default()
    }
}

fn config() -> RibConfig {
    let mut c = RibConfig::new(65000, Ipv4Addr::new(10, 0, 0, 1));
    c.pools = vec!["10.244.0.0/16".parse().unwrap()];
    c
}

struct Harness {
    rib: Rib,
    events: mpsc::Sender<PeerEvent>,
    best: mpsc::Receiver<Vec<BestPathChange>>,
    /// The rest of the last batch received from `best`.
    received: std::collections::VecDeque<BestPathChange>,
}

impl Harness {
    fn new(config: RibConfig) -> Self {
        let (events, rx) = mpsc::channel(1024);
        let (rib, best) = Rib::spawn(config, rx);
        Harness { rib, events, best, received: Default::default() }
    }

    /// The next best-path change, batch by batch.
    async fn next_change(&mut self) -> BestPathChange {
        loop {
            if let Some(change) = self.received.pop_front() {
                return change;
            }
            let batch = self.best.recv().await.expect("a change");
            assert!(!batch.is_empty(), "no empty batches");
            assert!(batch.len() <= BEST_PATH_BATCH, "a batch of {}", batch.len());
            self.received.extend(batch);
        }
    }

    async fn peer(&self, last: u8, setup: PeerSetup, capacity: usize) -> Out {
        let (tx, rx) = mpsc::channel(capacity);
        self.rib.add_peer(addr(last), setup, tx).await;
        Out::new(rx)
    }

    async fn up(&self, last: u8, ibgp: bool, gr: bool) {
        let negotiated = Box::new(negotiated(last, ibgp, gr));
        self.events.send(PeerEvent::SessionUp { peer: addr(last), negotiated }).await.unwrap();
    }

    async fn update(&self, last: u8, update: UpdateMessage) {
        let event = PeerEvent::Update { peer: addr(last), update: Box::new(update), outcome: UpdateOutcome::default() };
        self.events.send(event).await.unwrap();
    }

    async fn change_for(&mut self, prefix: &str) -> BestPathChange {
        let prefix: IpNetwork = prefix.parse().unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let change = self.next_change().await;
                if change.prefix == prefix {
                    return change;
                }
            }
        })
        .await
        .expect("a best-path change in time")
    }
}

/// Receives UPDATEs until an End-of-RIB; the announced and withdrawn prefixes.
async fn until_end_of_rib(rx: &mut Out) -> (Vec<String>, Vec<String>, usize) {
    let (mut announced, mut withdrawn, mut messages) = (Vec::new(), Vec::new(), 0);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let update = rx.recv().await.expect("an UPDATE");
            if update.as_end_of_rib().is_some() {
                return;
            }
            messages += 1;
            announced.extend(update.announced().map(|(_, n)| n.prefix.to_string()));
            withdrawn.extend(update.withdrawn_routes().map(|(_, n)| n.prefix.to_string()));
        }
    })
    .await
    .expect("End-of-RIB in time");
    (announced, withdrawn, messages)
}

fn ebgp_setup(peer: u8) -> PeerSetup {
    let mut s = PeerSetup::new(PeerRole::External, 65000 + u32::from(peer));
    s.import = Some(Policy::accept_all());
    s
}

#[tokio::test]
async fn mesh_routes_reach_the_dataplane_but_not_other_mesh_peers() {
    let mut h = Harness::new(config());
    let mut a = h.peer(2, PeerSetup::new(PeerRole::Mesh, 65000), 64).await;
    let mut b = h.peer(3, PeerSetup::new(PeerRole::Mesh, 65000), 64).await;
    h.rib.originate("10.244.0.0/26".parse().unwrap()).await;
    // Commands and events are separate channels: a round trip orders them.
    h.rib.stats().await;
    h.up(2, true, false).await;
    h.up(3, true, false).await;
    // The initial table is our block, then End-of-RIB.
    assert_eq!(until_end_of_rib(&mut a).await.0, vec!["10.244.0.0/26"]);
    assert_eq!(until_end_of_rib(&mut b).await.0, vec!["10.244.0.0/26"]);
    h.update(2, announce(&["10.244.1.0/26", "192.168.0.0/24"], addr(2), vec![])).await;
    let change = h.change_for("10.244.1.0/26").await;
    assert_eq!((change.next_hops.to_vec(), change.peers.to_vec()), (vec![addr(2)], vec![addr(2)]));
    let snapshot = h.rib.snapshot().await;
    assert!(!snapshot.routes.iter().any(|r| r.prefix.to_string() == "192.168.0.0/24"), "outside the pools");
    assert_eq!(snapshot.stats.per_peer[&addr(2)].received, 2);
    assert_eq!(snapshot.stats.per_peer[&addr(2)].accepted, 1);
    assert_eq!(snapshot.stats.per_peer[&addr(3)].advertised, 1);
    // Withdrawn: the dataplane hears "no route".
    h.update(2, withdraw(&["10.244.1.0/26"])).await;
    assert!(h.change_for("10.244.1.0/26").await.next_hops.is_empty());
    // B never got A's route: its next message is our withdrawal of our block.
    h.rib.withdraw("10.244.0.0/26".parse().unwrap()).await;
    let next = tokio::time::timeout(Duration::from_secs(10), b.recv()).await.unwrap().unwrap();
    assert_eq!(next.withdrawn.iter().map(|n| n.prefix.to_string()).collect::<Vec<_>>(), vec!["10.244.0.0/26"]);
    assert!(next.nlri.is_empty());
}

#[tokio::test]
async fn two_external_peers_form_an_ecmp_set_and_losing_one_shrinks_it() {
    let mut h = Harness::new(config());
    let _a = h.peer(2, ebgp_setup(2), 64).await;
    let _b = h.peer(3, ebgp_setup(3), 64).await;
    h.up(2, false, false).await;
    h.up(3, false, false).await;
    h.update(2, announce(&["172.16.0.0/24"], addr(2), vec![65100])).await;
    assert_eq!(h.change_for("172.16.0.0/24").await.next_hops.to_vec(), vec![addr(2)]);
    h.update(3, announce(&["172.16.0.0/24"], addr(3), vec![65100])).await;
    let change = h.change_for("172.16.0.0/24").await;
    assert_eq!(change.next_hops.to_vec(), vec![addr(2), addr(3)]);
    let snapshot = h.rib.snapshot().await;
    let views: Vec<_> = snapshot.routes.iter().filter(|r| r.prefix.to_string() == "172.16.0.0/24").collect();
    assert!(views[0].best && views[0].multipath && views[1].multipath && !views[1].best);
    assert_eq!(views[1].reason.as_deref(), Some("higher-router-id"));
    h.events
        .send(PeerEvent::SessionDown { peer: addr(2), reason: DownReason::ConnectionLost, possible_restart: false })
        .await
        .unwrap();
    assert_eq!(h.change_for("172.16.0.0/24").await.next_hops.to_vec(), vec![addr(3)]);
}

#[tokio::test]
async fn a_peer_that_never_reads_does_not_delay_another() {
    let mut c = config();
    c.pools = vec!["10.0.0.0/8".parse().unwrap()];
    let h = Harness::new(c);
    // The stuck peer's channel holds one UPDATE and is never read.
    let _stuck = h.peer(2, PeerSetup::new(PeerRole::Mesh, 65000), 1).await;
    let mut fast = h.peer(3, PeerSetup::new(PeerRole::Mesh, 65000), 4).await;
    h.up(2, true, false).await;
    h.up(3, true, false).await;
    for i in 0..20_000u32 {
        let net = IpNetwork::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)).into(), 24).unwrap();
        h.rib.originate(net).await;
    }
    let mut got = 0;
    let mut ends = 0;
    tokio::time::timeout(Duration::from_secs(60), async {
        while got < 20_000 {
            let update = fast.recv().await.unwrap();
            if update.as_end_of_rib().is_some() {
                ends += 1;
            }
            got += update.nlri.len();
        }
    })
    .await
    .expect("the fast peer gets every prefix");
    assert_eq!(ends, 1);
    let stats = h.rib.stats().await;
    assert_eq!(stats.per_peer[&addr(3)].advertised, 20_000);
    assert!(stats.per_peer[&addr(2)].advertised < 20_000, "the stuck peer is still behind");
}

#[tokio::test]
async fn graceful_restart_keeps_routes_stale_until_end_of_rib() {
    let mut h = Harness::new(config());
    let _a = h.peer(2, PeerSetup::new(PeerRole::Mesh, 65000), 64).await;
    h.up(2, true, true).await;
    h.update(2, announce(&["10.244.1.0/26", "10.244.2.0/26"], addr(2), vec![])).await;
    h.change_for("10.244.2.0/26").await;
    // The connection drops without a NOTIFICATION: routes stay, marked stale.
    h.events
        .send(PeerEvent::SessionDown { peer: addr(2), reason: DownReason::ConnectionLost, possible_restart: false })
        .await
        .unwrap();
    let snapshot = h.rib.snapshot().await;
    assert_eq!(snapshot.routes.len(), 2);
    assert!(snapshot.routes.iter().all(|r| r.stale && r.best));
    // It comes back and re-announces only one; at its End-of-RIB the other goes.
    h.up(2, true, true).await;
    h.update(2, announce(&["10.244.1.0/26"], addr(2), vec![])).await;
    let snapshot = h.rib.snapshot().await;
    assert_eq!(snapshot.routes.iter().filter(|r| r.stale).count(), 1);
    h.update(2, UpdateMessage::end_of_rib(Family::IPV4_UNICAST)).await;
    assert!(h.change_for("10.244.2.0/26").await.next_hops.is_empty());
    let snapshot = h.rib.snapshot().await;
    assert_eq!(snapshot.routes.len(), 1);
    assert!(!snapshot.routes[0].stale);
    // A NOTIFICATION ends it at once.
    let reason = DownReason::NotificationReceived { code: 6, subcode: 2, message: String::new() };
    h.events.send(PeerEvent::SessionDown { peer: addr(2), reason, possible_restart: false }).await.unwrap();
    assert!(h.change_for("10.244.1.0/26").await.next_hops.is_empty());
}

#[tokio::test]
async fn bfd_down_keeps_routes_stale_only_when_it_may_be_a_control_plane_restart() {
    let mut h = Harness::new(config());
    let _a = h.peer(2, PeerSetup::new(PeerRole::Mesh, 65000), 64).await;
    let bfd_down = |possible_restart| PeerEvent::SessionDown {
        peer: addr(2),
        reason: DownReason::NotificationSent { code: 6, subcode: 10, message: "BFD Down".into() },
        possible_restart,
    };
    h.up(2, true, true).await;
    h.update(2, announce(&["10.244.1.0/26"], addr(2), vec![])).await;
    h.change_for("10.244.1.0/26").await;
    // The peer's C bit was clear and it offered graceful restart: helper mode.
    h.events.send(bfd_down(true)).await.unwrap();
    let snapshot = h.rib.snapshot().await;
    assert_eq!(snapshot.routes.len(), 1, "the routes stay through a possible restart");
    assert!(snapshot.routes[0].stale && snapshot.routes[0].best);
    // Back, with its End-of-RIB: the routes are fresh again.
    h.up(2, true, true).await;
    h.update(2, announce(&["10.244.1.0/26"], addr(2), vec![])).await;
    h.update(2, UpdateMessage::end_of_rib(Family::IPV4_UNICAST)).await;
    assert!(!h.rib.snapshot().await.routes[0].stale);
    // Its C bit was set (or it offered no graceful restart): forwarding failed.
    h.events.send(bfd_down(false)).await.unwrap();
    assert!(h.change_for("10.244.1.0/26").await.next_hops.is_empty());
    assert!(h.rib.snapshot().await.routes.is_empty());
}

#[tokio::test]
async fn stale_routes_go_when_the_restart_time_passes() {
    let mut h = Harness::new(config());
    let _a = h.peer(2, PeerSetup::new(PeerRole::Mesh, 65000), 64).await;
    let mut short = negotiated(2, true, true);
    short.peer_graceful_restart = Some((1, vec![GracefulRestartFamily { family: Family::IPV4_UNICAST, flags: 0x80 }]));
    h.events.send(PeerEvent::SessionUp { peer: addr(2), negotiated: Box::new(short) }).await.unwrap();
    h.update(2, announce(&["10.244.1.0/26"], addr(2), vec![])).await;
    h.change_for("10.244.1.0/26").await;
    h.events
        .send(PeerEvent::SessionDown { peer: addr(2), reason: DownReason::ConnectionLost, possible_restart: false })
        .await
        .unwrap();
    assert_eq!(h.rib.stats().await.loc_rib_prefixes, 1);
    // The peer does not come back within its 1 s restart time.
    assert!(h.change_for("10.244.1.0/26").await.next_hops.is_empty());
    assert_eq!(h.rib.stats().await.loc_rib_prefixes, 0);
}

#[tokio::test]
async fn reflected_routes_carry_originator_and_cluster_list() {
    let mut c = config();
    c.cluster_id = Some(Ipv4Addr::new(1, 1, 1, 1));
    let h = Harness::new(c);
    let _client_a = h.peer(2, PeerSetup::new(PeerRole::RrClient, 65000), 64).await;
    let mut client_b = h.peer(3, PeerSetup::new(PeerRole::RrClient, 65000), 64).await;
    h.up(2, true, false).await;
    h.up(3, true, false).await;
    assert!(until_end_of_rib(&mut client_b).await.0.is_empty());
    h.update(2, announce(&["10.244.1.0/26"], addr(2), vec![])).await;
    let update = tokio::time::timeout(Duration::from_secs(10), client_b.recv()).await.unwrap().unwrap();
    assert_eq!(update.attribute(9), Some(&AttributeValue::OriginatorId(Ipv4Addr::new(10, 0, 0, 2))));
    assert_eq!(update.attribute(10), Some(&AttributeValue::ClusterList(vec![Ipv4Addr::new(1, 1, 1, 1)])));
    assert_eq!(update.next_hop(), Some(Ipv4Addr::new(192, 0, 2, 2)));
}

#[tokio::test]
async fn a_held_end_of_rib_goes_only_after_the_local_prefixes() {
    let mut c = config();
    c.hold_end_of_rib = true;
    let h = Harness::new(c);
    let mut peer = h.peer(2, PeerSetup::new(PeerRole::Mesh, 65000), 64).await;
    // The session comes up before the agent has read its blocks: no End-of-RIB
    // yet, or a peer keeping our routes for a restart would sweep them.
    h.up(2, true, true).await;
    h.rib.originate("10.244.1.0/26".parse().unwrap()).await;
    let first = tokio::time::timeout(Duration::from_secs(10), peer.recv()).await.unwrap().unwrap();
    assert_eq!(first.nlri.len(), 1, "{first:?}");
    let _ = h.rib.stats().await;
    assert!(peer.try_recv().is_err(), "End-of-RIB before the local prefixes are loaded");
    h.rib.originate("10.244.2.0/26".parse().unwrap()).await;
    h.rib.local_prefixes_loaded().await;
    let (announced, _, _) = until_end_of_rib(&mut peer).await;
    assert_eq!(announced, vec!["10.244.2.0/26"]);
}

#[tokio::test]
async fn a_route_sent_back_with_our_cluster_id_is_dropped() {
    let mut c = config();
    c.cluster_id = Some(Ipv4Addr::new(1, 1, 1, 1));
    let mut h = Harness::new(c);
    let _client = h.peer(2, PeerSetup::new(PeerRole::RrClient, 65000), 64).await;
    h.up(2, true, false).await;
    let looped = |cluster: Vec<Ipv4Addr>, prefix: &str| {
        let mut update = announce(&[prefix], addr(3), vec![]);
        update.attributes.push(PathAttribute::new(AttributeValue::OriginatorId(Ipv4Addr::new(10, 0, 0, 3))));
        update.attributes.push(PathAttribute::new(AttributeValue::ClusterList(cluster)));
        update
    };
    // RFC 4456 section 8: our cluster id anywhere in CLUSTER_LIST is a loop.
    h.update(2, looped(vec![Ipv4Addr::new(2, 2, 2, 2), Ipv4Addr::new(1, 1, 1, 1)], "10.244.1.0/26")).await;
    h.update(2, looped(vec![Ipv4Addr::new(2, 2, 2, 2)], "10.244.2.0/26")).await;
    h.change_for("10.244.2.0/26").await;
    let snapshot = h.rib.snapshot().await;
    let prefixes: Vec<String> = snapshot.routes.iter().map(|r| r.prefix.to_string()).collect();
    assert_eq!(prefixes, vec!["10.244.2.0/26"]);
    let stats = &snapshot.stats.per_peer[&addr(2)];
    assert_eq!((stats.received, stats.accepted), (2, 1));
}

/// Receives one UPDATE, encodes it and decodes it back as a peer that
/// negotiated ADD-PATH receive for IPv4 would (whole input consumed); the
/// `prefix#id` announced and withdrawn.
async fn next_paths(rx: &mut Out) -> (Vec<String>, Vec<String>) {
    next_paths_of(tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap())
}

fn next_paths_of(update: UpdateMessage) -> (Vec<String>, Vec<String>) {
    use crate::bgp::packet::{AddPathFamilies, DecodeContext, EncodeContext, Message};
    let ctx = DecodeContext {
        add_path: AddPathFamilies { ipv4_unicast: true, ipv6_unicast: false },
        ibgp: true,
        ..DecodeContext::default()
    };
    let bytes = Message::Update(update).to_bytes(&EncodeContext::from(&ctx)).unwrap();
    let (decoded, used) = Message::decode(&bytes, &ctx).unwrap();
    assert_eq!(used, bytes.len(), "the whole UPDATE decodes");
    assert!(decoded.outcome.faults.is_empty(), "{:?}", decoded.outcome);
    let Message::Update(u) = decoded.message else { panic!("not an UPDATE") };
    let show = |n: &Nlri| format!("{}#{}", n.prefix, n.path_id.expect("a path id"));
    (u.announced().map(|(_, n)| show(n)).collect(), u.withdrawn_routes().map(|(_, n)| show(n)).collect())
}

#[tokio::test]
async fn an_add_path_peer_gets_the_ecmp_set_path_by_path() {
    let mut c = config();
    c.cluster_id = Some(Ipv4Addr::new(1, 1, 1, 1));
    let h = Harness::new(c);
    let client = || PeerSetup::new(PeerRole::RrClient, 65000);
    let (_a, _b) = (h.peer(2, client(), 64).await, h.peer(3, client(), 64).await);
    let mut with = h.peer(4, client(), 64).await.add_path();
    let mut without = h.peer(5, client(), 64).await;
    for peer in [2, 3, 5] {
        h.up(peer, true, false).await;
    }
    let mut add_path = negotiated(4, true, false);
    add_path.add_path_send = vec![Family::IPV4_UNICAST];
    h.events.send(PeerEvent::SessionUp { peer: addr(4), negotiated: Box::new(add_path) }).await.unwrap();
    assert!(until_end_of_rib(&mut with).await.0.is_empty());
    assert!(until_end_of_rib(&mut without).await.0.is_empty());

    // Two clients announce the same prefix: an ECMP set of two.
    h.update(2, announce(&["10.244.9.0/26"], addr(2), vec![])).await;
    h.update(3, announce(&["10.244.9.0/26"], addr(3), vec![])).await;
    let snapshot = h.rib.snapshot().await;
    assert_eq!(snapshot.routes.iter().filter(|r| r.multipath).count(), 2, "{:#?}", snapshot.routes);
    // The ADD-PATH peer gets both paths, each under its own id (the
    // attributes differ: one UPDATE each); the next hops are the clients'.
    let mut ids = Vec::new();
    let mut hops = Vec::new();
    while ids.len() < 2 {
        let update = tokio::time::timeout(Duration::from_secs(10), with.recv()).await.unwrap().unwrap();
        hops.push(update.next_hop());
        let (announced, withdrawn) = next_paths_of(update);
        assert!(withdrawn.is_empty(), "{withdrawn:?}");
        ids.extend(announced);
    }
    ids.sort();
    assert_eq!(ids, ["10.244.9.0/26#1", "10.244.9.0/26#2"]);
    hops.sort();
    assert_eq!(hops, [Some(Ipv4Addr::new(192, 0, 2, 2)), Some(Ipv4Addr::new(192, 0, 2, 3))]);
    assert_eq!(h.rib.stats().await.per_peer[&addr(4)].advertised, 1, "one prefix");
    // The peer without ADD-PATH gets the best path only (lowest router id: client 2).
    let update = tokio::time::timeout(Duration::from_secs(10), without.recv()).await.unwrap().unwrap();
    assert_eq!((update.nlri.len(), update.nlri[0].path_id), (1, None));
    assert_eq!(update.next_hop(), Some(Ipv4Addr::new(192, 0, 2, 2)));

    // Client 2 withdraws: the ADD-PATH peer loses that path's id only,
    // nothing is re-announced; the other peer gets client 3's path instead.
    h.update(2, withdraw(&["10.244.9.0/26"])).await;
    let (announced, withdrawn) = next_paths(&mut with).await;
    assert!(announced.is_empty(), "{announced:?}");
    assert_eq!(withdrawn, ["10.244.9.0/26#1"], "client 2's path had id 1 (sent first, being the best)");
    let update = tokio::time::timeout(Duration::from_secs(10), without.recv()).await.unwrap().unwrap();
    assert!(update.withdrawn.is_empty());
    assert_eq!(update.next_hop(), Some(Ipv4Addr::new(192, 0, 2, 3)));
    // Client 3 withdraws too: its id goes; nothing else was sent meanwhile.
    h.update(3, withdraw(&["10.244.9.0/26"])).await;
    assert_eq!(next_paths(&mut with).await, (vec![], vec!["10.244.9.0/26#2".to_string()]));
    assert!(with.try_recv().is_err());
    assert_eq!(h.rib.stats().await.per_peer[&addr(4)].advertised, 0);
}

/// One step of the random sequence: peer, prefix, announce (with path length) or withdraw.
#[derive(Debug, Clone)]
struct Step {
    peer: u8,
    prefix: u8,
    announce: Option<u8>,
}

fn step() -> impl Strategy<Value = Step> {
    (2u8..6, 0u8..8, prop::option::of(1u8..4)).prop_map(|(peer, prefix, announce)| Step { peer, prefix, announce })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn loc_rib_equals_a_naive_recomputation(steps in prop::collection::vec(step(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let h = Harness::new(config());
            let mut receivers = Vec::new();
            for peer in 2..6u8 {
                receivers.push(h.peer(peer, ebgp_setup(peer), 1024).await);
                h.up(peer, false, false).await;
            }
            let mut model: std::collections::BTreeMap<(u8, u8), u8> = Default::default();
            for s in &steps {
                let prefix = format!("10.244.{}.0/24", s.prefix);
                match s.announce {
                    Some(len) => {
                        let path: Vec<u32> = (0..u32::from(len)).map(|i| 65000 + u32::from(s.peer) + 100 * i).collect();
                        h.update(s.peer, announce(&[&prefix], addr(s.peer), path)).await;
                        model.insert((s.peer, s.prefix), len);
                    }
                    None => {
                        h.update(s.peer, withdraw(&[&prefix])).await;
                        model.remove(&(s.peer, s.prefix));
                    }
                }
            }
            let snapshot = h.rib.snapshot().await;
            for prefix in 0..8u8 {
                // Naive: shortest path wins, equal lengths share (up to 4), lowest router id first.
                let mut paths: Vec<(u8, u8)> =
                    model.iter().filter(|((_, p), _)| *p == prefix).map(|((peer, _), len)| (*len, *peer)).collect();
                paths.sort();
                let shortest = paths.first().map(|p| p.0);
                let want: Vec<IpAddr> =
                    paths.iter().filter(|p| Some(p.0) == shortest).take(4).map(|p| addr(p.1)).collect();
                let name = format!("10.244.{prefix}.0/24");
                let got: Vec<IpAddr> = snapshot
                    .routes
                    .iter()
                    .filter(|r| r.prefix.to_string() == name && r.multipath)
                    .filter_map(|r| r.peer)
                    .collect();
                assert_eq!(got, want, "{name}");
                let all = snapshot.routes.iter().filter(|r| r.prefix.to_string() == name).count();
                assert_eq!(all, paths.len(), "{name}: every announced path is a candidate");
            }
        });
    }
}

#[tokio::test]
async fn resend_learned_repeats_every_learned_set_and_nothing_of_ours() {
    let mut h = Harness::new(config());
    let _a = h.peer(2, ebgp_setup(2), 64).await;
    h.up(2, false, false).await;
    h.rib.originate("10.244.0.0/26".parse().unwrap()).await;
    h.update(2, announce(&["172.16.0.0/24", "172.16.1.0/24"], addr(2), vec![65100])).await;
    h.change_for("172.16.1.0/24").await;
    h.rib.resend_learned().await;
    let mut again = Vec::new();
    for _ in 0..2 {
        let change = tokio::time::timeout(Duration::from_secs(10), h.next_change()).await.unwrap();
        assert_eq!(change.next_hops.to_vec(), vec![addr(2)]);
        again.push(change.prefix.to_string());
    }
    again.sort();
    assert_eq!(again, ["172.16.0.0/24", "172.16.1.0/24"]);
    h.rib.stats().await;
    assert!(h.received.is_empty() && h.best.try_recv().is_err(), "our own block is not a learned route");
}

#[tokio::test]
async fn changes_wait_for_a_slow_dataplane_one_per_prefix() {
    let prefixes: Vec<String> = (0..5000).map(|i| format!("172.{}.{}.0/24", 16 + i / 256, i % 256)).collect();
    let refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    // A dataplane that reads nothing: what the channel does not hold waits in the queue.
    let h = Harness::new(config());
    let _a = h.peer(2, ebgp_setup(2), 64).await;
    h.up(2, false, false).await;
    h.update(2, announce(&refs, addr(2), vec![65100])).await;
    let stats = h.rib.stats().await;
    assert_eq!(stats.loc_rib_prefixes, 5000);
    assert_eq!(stats.changes_pending as usize, 5000 - BEST_PATH_CAPACITY, "{stats:?}");
    // Announced again unchanged: nothing new to tell, nothing queued twice.
    h.update(2, announce(&refs, addr(2), vec![65100])).await;
    assert_eq!(h.rib.stats().await.changes_pending as usize, 5000 - BEST_PATH_CAPACITY);
}

#[tokio::test]
async fn a_reflector_builds_few_updates_ahead_of_a_peer_that_is_not_reading() {
    // A reflector's clients each announce their own block with their own next
    // hop: every prefix needs an UPDATE of its own. A client that has not read
    // yet must not get its whole table built ahead (as many UPDATEs as
    // prefixes, held per client), only a batch of them.
    const PREFIXES: u32 = 1000;
    let mut c = config();
    c.cluster_id = Some(Ipv4Addr::new(1, 1, 1, 1));
    let h = Harness::new(c);
    let _client_a = h.peer(2, PeerSetup::new(PeerRole::RrClient, 65000), 64).await;
    let _stuck = h.peer(3, PeerSetup::new(PeerRole::RrClient, 65000), 1).await;
    h.up(2, true, false).await;
    for i in 0..PREFIXES {
        let prefix = format!("10.244.{}.{}/26", i / 4, (i % 4) * 64);
        let mut update = announce(&[prefix.as_str()], addr(2), vec![]);
        update.attributes.push(PathAttribute::new(AttributeValue::MultiExitDisc(i)));
        h.update(2, update).await;
    }
    let deadline = Duration::from_secs(30);
    crate::testing::wait_until_async("every prefix accepted", deadline, || async {
        (h.rib.stats().await.per_peer[&addr(2)].accepted == u64::from(PREFIXES)).then_some(())
    })
    .await
    .unwrap();
    h.up(3, true, false).await;
    let built = crate::testing::wait_until_async("a first batch for the stuck client", deadline, || async {
        let advertised = h.rib.stats().await.per_peer[&addr(3)].advertised;
        (advertised > 0).then_some(advertised)
    })
    .await
    .unwrap();
    // One encoded batch in the channel; the next is built only once there is room for it.
    assert!(
        built <= super::task::UPDATES_PER_BATCH as u64,
        "{built} UPDATEs built ahead of a client that reads nothing"
    );
}

#[tokio::test]
async fn own_service_prefixes_reach_an_external_peer_with_their_own_communities() {
    use crate::bgp::packet::community::Community;
    use crate::datastore::resources::CommunityValue;
    let h = Harness::new(config());
    let mut tor = h.peer(2, ebgp_setup(2), 64).await;
    h.up(2, false, false).await;
    let _ = until_end_of_rib(&mut tor).await;
    // A service CIDR lies outside every pool: still ours to announce (Calico's static routes).
    let service: IpNetwork = "10.96.0.10/32".parse().unwrap();
    h.rib.originate_with(CommunityRule::new(service, [CommunityValue::Standard(65000, 7)])).await;
    let update = tokio::time::timeout(Duration::from_secs(10), tor.recv()).await.unwrap().unwrap();
    assert_eq!(update.nlri.iter().map(|n| n.prefix.to_string()).collect::<Vec<_>>(), vec!["10.96.0.10/32"]);
    assert_eq!(
        update.attribute(crate::bgp::packet::attribute::type_code::COMMUNITIES),
        Some(&AttributeValue::Communities(vec![Community((65000 << 16) | 7)]))
    );
    // Other communities: sent again with them; none: without.
    h.rib.originate_with(CommunityRule::new(service, [])).await;
    let update = tokio::time::timeout(Duration::from_secs(10), tor.recv()).await.unwrap().unwrap();
    assert_eq!(update.attribute(crate::bgp::packet::attribute::type_code::COMMUNITIES), None);
    h.rib.withdraw(service).await;
    let update = tokio::time::timeout(Duration::from_secs(10), tor.recv()).await.unwrap().unwrap();
    assert_eq!(update.withdrawn.iter().map(|n| n.prefix.to_string()).collect::<Vec<_>>(), vec!["10.96.0.10/32"]);
    // A learned route outside the pools still goes to no external peer.
    let snapshot = h.rib.snapshot().await;
    assert!(snapshot.routes.is_empty(), "{snapshot:?}");
}

#[tokio::test]
async fn a_held_end_of_rib_waits_for_every_source_of_own_prefixes() {
    let mut c = config();
    c.hold_end_of_rib = true;
    c.local_sources = vec!["blocks", "services"];
    let h = Harness::new(c);
    let mut peer = h.peer(2, ebgp_setup(2), 64).await;
    h.up(2, false, true).await;
    h.rib.originate("10.244.1.0/26".parse().unwrap()).await;
    h.rib.local_prefixes_loaded().await;
    let first = tokio::time::timeout(Duration::from_secs(10), peer.recv()).await.unwrap().unwrap();
    assert_eq!(first.nlri.len(), 1, "{first:?}");
    let _ = h.rib.stats().await;
    // The service addresses are not in yet: a peer sweeping at End-of-RIB would drop them.
    assert!(peer.try_recv().is_err(), "End-of-RIB before the service prefixes are loaded");
    h.rib.originate("10.96.0.0/12".parse().unwrap()).await;
    h.rib.local_prefixes_loaded_by("services").await;
    let (announced, _, _) = until_end_of_rib(&mut peer).await;
    assert_eq!(announced, vec!["10.96.0.0/12"]);
}

#[tokio::test]
async fn a_query_selects_the_longest_match_the_more_specifics_or_one_peers_paths_with_their_ids() {
    let h = Harness::new(config());
    let _a = h.peer(2, ebgp_setup(2), 64).await;
    let _b = h.peer(3, ebgp_setup(3), 64).await;
    h.up(2, false, false).await;
    // Peer 3's session receives ADD-PATH: its paths carry their identifiers.
    let mut add_path = negotiated(3, false, false);
    add_path.add_path_receive = vec![Family::IPV4_UNICAST];
    h.events.send(PeerEvent::SessionUp { peer: addr(3), negotiated: Box::new(add_path) }).await.unwrap();
    let prefixes = ["172.16.0.0/16", "172.16.1.0/24"];
    h.update(2, announce(&prefixes, addr(2), vec![65100])).await;
    let mut with_ids = announce(&prefixes, addr(3), vec![65100]);
    with_ids.nlri.iter_mut().for_each(|n| n.path_id = Some(7));
    h.update(3, with_ids).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while h.rib.snapshot().await.routes.len() < 4 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("four paths in the RIB");

    let paths = |s: RibSnapshot| -> Vec<(String, IpAddr, Option<u32>)> {
        s.routes.iter().map(|r| (r.prefix.to_string(), r.peer.unwrap(), r.path_id)).collect()
    };
    let query = |prefix: &str, longer: bool, peer: Option<u8>| RouteQuery {
        prefix: Some(prefix.parse().unwrap()),
        longer,
        peer: peer.map(addr),
    };
    let (slash24, slash16) = ("172.16.1.0/24".to_string(), "172.16.0.0/16".to_string());
    assert_eq!(
        paths(h.rib.snapshot_matching(query("172.16.1.7", false, None)).await),
        [(slash24.clone(), addr(2), None), (slash24.clone(), addr(3), Some(7))]
    );
    assert_eq!(
        paths(h.rib.snapshot_matching(query("172.16.0.0/16", true, Some(3))).await),
        [(slash16, addr(3), Some(7)), (slash24, addr(3), Some(7))]
    );
    let outside = h.rib.snapshot_matching(query("192.168.0.0/16", true, None)).await;
    assert!(outside.routes.is_empty() && outside.stats.paths == 4, "the counters stay the whole RIB's");
}

/// What an ADD-PATH receiver holds after applying UPDATEs: per prefix, each path id's next hop.
type Held = std::collections::BTreeMap<String, std::collections::BTreeMap<u32, Option<Ipv4Addr>>>;

/// Applies what `out` has; how many UPDATEs that was.
fn hold(held: &mut Held, out: &mut Out) -> usize {
    let mut taken = 0;
    while let Ok(update) = out.try_recv() {
        taken += 1;
        for (_, n) in update.withdrawn_routes() {
            let paths = held.entry(n.prefix.to_string()).or_default();
            assert!(paths.remove(&n.path_id.expect("a path id")).is_some(), "{n:?} withdrawn, never announced");
        }
        for (_, n) in update.announced() {
            held.entry(n.prefix.to_string()).or_default().insert(n.path_id.expect("a path id"), update.next_hop());
        }
    }
    held.retain(|_, paths| !paths.is_empty());
    taken
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Reflector clients receiving ADD-PATH share their Adj-RIB-Out lists
    /// (`sent_sets`) and what is left to send (`feed`): each still holds
    /// exactly the reference, the Loc-RIB's ECMP set of every prefix as
    /// exported to it alone, whatever the order of announcements and
    /// withdrawals, whenever it came up (two together, sharing a dump), and
    /// after its session restarted.
    #[test]
    fn add_path_clients_hold_the_ecmp_sets_of_the_loc_rib(
        steps in prop::collection::vec(step(), 1..50),
        late_at in 0usize..50,
        bounce_at in 0usize..50,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut c = config();
            c.cluster_id = Some(Ipv4Addr::new(1, 1, 1, 1));
            let h = Harness::new(c);
            let client = || PeerSetup::new(PeerRole::RrClient, 65000);
            let mut announcers = Vec::new();
            for peer in 2..6u8 {
                announcers.push(h.peer(peer, client(), 1024).await);
                h.up(peer, true, false).await;
            }
            let mut receivers = Vec::new();
            // The last receiver's channel takes one batch: it falls behind the others in the
            // change log until the test reads it.
            for (peer, capacity) in [(6u8, 1024), (7, 1024), (8, 1)] {
                receivers.push((peer, h.peer(peer, client(), capacity).await.add_path(), Held::new()));
            }
            let up = |peer: u8| {
                let mut n = negotiated(peer, true, false);
                n.add_path_send = vec![Family::IPV4_UNICAST];
                PeerEvent::SessionUp { peer: addr(peer), negotiated: Box::new(n) }
            };
            h.events.send(up(6)).await.unwrap();
            for (i, s) in steps.iter().enumerate() {
                if i == late_at {
                    // Two receivers come up together with routes already in the table.
                    h.events.send(up(7)).await.unwrap();
                    h.events.send(up(8)).await.unwrap();
                }
                if i == bounce_at {
                    // The first one's session restarts: it forgets what it held and gets all again.
                    let down = PeerEvent::SessionDown {
                        peer: addr(6),
                        reason: DownReason::ConnectionLost,
                        possible_restart: false,
                    };
                    h.events.send(down).await.unwrap();
                    h.rib.stats().await;
                    let (_, out, held) = &mut receivers[0];
                    hold(held, out);
                    held.clear();
                    h.events.send(up(6)).await.unwrap();
                }
                let prefix = format!("10.244.{}.0/24", s.prefix);
                match s.announce {
                    Some(len) => {
                        let path = vec![64600; usize::from(len)];
                        h.update(s.peer, announce(&[&prefix], addr(s.peer), path)).await;
                    }
                    None => h.update(s.peer, withdraw(&[&prefix])).await,
                }
            }
            if late_at >= steps.len() {
                h.events.send(up(7)).await.unwrap();
                h.events.send(up(8)).await.unwrap();
            }
            // Until nothing more comes: two round trips (every event handled, then a flush), then
            // what the receivers were sent, which frees the slow one's channel.
            for _ in 0..1000 {
                h.rib.stats().await;
                h.rib.stats().await;
                let taken: usize = receivers.iter_mut().map(|(_, out, held)| hold(held, out)).sum();
                if taken == 0 {
                    break;
                }
            }
            let snapshot = h.rib.snapshot().await;
            let mut want: std::collections::BTreeMap<String, Vec<Option<Ipv4Addr>>> = Default::default();
            for r in snapshot.routes.iter().filter(|r| r.multipath) {
                let IpAddr::V4(hop) = r.next_hop.unwrap() else { panic!("IPv4") };
                want.entry(r.prefix.to_string()).or_default().push(Some(hop));
            }
            want.values_mut().for_each(|hops| hops.sort());
            for (peer, _, held) in &receivers {
                let got: std::collections::BTreeMap<String, Vec<Option<Ipv4Addr>>> = held
                    .iter()
                    .map(|(prefix, paths)| {
                        let mut hops: Vec<_> = paths.values().copied().collect();
                        hops.sort();
                        (prefix.clone(), hops)
                    })
                    .collect();
                assert_eq!(got, want, "receiver {peer}");
                let advertised = h.rib.stats().await.per_peer[&addr(*peer)].advertised;
                assert_eq!(advertised as usize, want.len(), "receiver {peer}'s Adj-RIB-Out");
            }
            drop(announcers);
        });
    }
}
