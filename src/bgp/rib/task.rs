//! The RIB task: the only owner of the Loc-RIB, every peer's Adj-RIB-In and
//! Adj-RIB-Out, and the intern table.
//!
//! Back-pressure: UPDATEs go to a peer with `try_send`, and a batch is built
//! only while the peer's channel has room. When it has none, a `reserve_owned`
//! future for that channel joins a `FuturesUnordered` (and what was built
//! before, End-of-RIBs, waits in the peer's send queue); changes meanwhile only
//! enter the change log, so they coalesce. When capacity returns the queue
//! drains and flushing goes on.
//! The task itself never waits on a peer, so a slow peer never delays another.

use crate::prefix_map::PREFETCH_AHEAD;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use ipnetwork::IpNetwork;
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{self, OwnedPermit};
use tokio::time::Instant;

use super::addpath::{self, SentPath, WantedPath};
use super::attr_table::AttrId;
use super::attrs::{Attrs, DEFAULT_LOCAL_PREF, Interner, PathAttrs};
use super::best::{Candidate, decide, tie_break_reason};
use super::export::{Origin, Target, export_route};
use super::feed::Changes;
use super::import::{Rejected, base_attrs, import_attrs, import_prefix, next_hop};
use super::net::{family, network, normalize, within};
use super::pack::OutNlri;
use super::peer::{RibPeer, Session, Stale};
use super::query::RouteQuery;
use super::sent_sets::SentSets;
use super::snapshot::{RibSnapshot, RibStats, RouteView};
use super::table::{Dest, Fast, LocRib, Path, Slot, learned};
use super::wire::{AttrBytes, Batch};
use super::{BEST_PATH_BATCH, BestPathChange, Command, CommunityRule, PeerRole, RibConfig, pack};
use crate::bgp::packet::EncodeContext;
use crate::bgp::packet::route_refresh::subtype;
use crate::bgp::packet::{Family, Rfc7606Action, UpdateMessage, UpdateOutcome};
use crate::bgp::session::{DownReason, Negotiated, Outbound, PeerEvent};

/// Prefixes of a feed turned into UPDATEs at a time (one send-queue batch).
const BATCH: usize = 4096;
/// UPDATEs one batch may build: a batch ends early when its prefixes
/// need this many attribute sets (as a reflector's clients' blocks do, each
/// with its own next hop), so that a peer's UPDATEs are built as it takes
/// them rather than its whole table at once, held per peer.
pub(super) const UPDATES_PER_BATCH: usize = 64;
/// Batches per peer before the task looks at its inputs again.
const BATCHES_PER_TURN: usize = 8;
/// Events of a peer not added yet that are kept for it.
const EARLY_EVENTS: usize = 65536;
/// Events handled before flushing.
const EVENTS_PER_TURN: usize = 256;

type Reservation = Pin<Box<dyn Future<Output = (IpAddr, u64, Option<OwnedPermit<Outbound>>)> + Send>>;

/// The state of the RIB task.
pub struct RibTask {
    config: RibConfig,
    interner: Interner,
    /// IPv4 unicast path attributes as encoded, per exported attribute set.
    wire: AttrBytes,
    /// Every peer's ADD-PATH Adj-RIB-Out lists, each distinct one stored once.
    sent: SentSets,
    loc: LocRib,
    /// The Loc-RIB's changes the peers read from, each from its own place,
    /// and the table dumps that peers starting together share.
    changes: Changes,
    /// Boxed: a thousand clients grow the table by doubling, and the slots a peer does not
    /// fill cost a pointer, not a whole `RibPeer`.
    peers: FxHashMap<IpAddr, Box<RibPeer>>,
    local: FxHashSet<IpNetwork>,
    /// The communities of our own prefixes originated with their own (service addresses).
    local_own: FxHashMap<IpNetwork, CommunityRule>,
    /// The attributes of our own prefixes (kept referenced for the task's life).
    local_attr: AttrId,
    /// Communities our own prefixes carry, by the range they fall within.
    community_rules: Vec<CommunityRule>,
    /// Our own addresses: a next hop among them is unusable.
    own: FxHashSet<IpAddr>,
    best_tx: mpsc::Sender<Vec<BestPathChange>>,
    /// What best path needs to know about each peer (kept in step with `peers`).
    facts: FxHashMap<IpAddr, PeerFacts>,
    reservations: FuturesUnordered<Reservation>,
    early: FxHashMap<IpAddr, Vec<PeerEvent>>,
    early_count: usize,
    work_left: bool,
    /// End-of-RIB may be sent (our own prefixes are in, or nobody holds it).
    local_loaded: bool,
    /// The sources of our own prefixes not loaded yet (while End-of-RIB is held).
    local_waiting: Vec<&'static str>,
    /// Rate-limits the log lines of UPDATEs kept under RFC 7606.
    malformed: super::malformed_log::MalformedLog,
}

/// What best path needs to know about a peer.
#[derive(Clone, Copy)]
struct PeerFacts {
    role: PeerRole,
    router_id: Ipv4Addr,
}

fn candidate(
    path: &Path,
    config: &RibConfig,
    facts: &FxHashMap<IpAddr, PeerFacts>,
    own: &FxHashSet<IpAddr>,
) -> Candidate {
    let a = &path.attrs;
    let peer = path.source.and_then(|s| facts.get(&s));
    let usable = path.source.is_none() || next_hop_usable(a, own);
    Candidate {
        local: path.source.is_none(),
        usable,
        local_pref: a.local_pref.unwrap_or(DEFAULT_LOCAL_PREF),
        as_path_len: a.as_path.path_length(),
        origin: a.origin,
        med: a.med.unwrap_or(0),
        neighbor_as: a.neighbor_as(config.local_as),
        ebgp: peer.is_some_and(|p| p.role == PeerRole::External),
        router_id: a.originator_id.unwrap_or(match path.source {
            None => config.router_id,
            Some(_) => peer.map(|p| p.router_id).unwrap_or(Ipv4Addr::UNSPECIFIED),
        }),
        cluster_list_len: a.cluster_list.len(),
        peer_addr: path.source.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    }
}

type PathKey = (Option<IpAddr>, u32, AttrId);

/// An UPDATE's attributes for one family after the per-UPDATE import rules:
/// their id and whether their next hop is usable, or why they were refused.
type Imported = Result<(AttrId, bool), Rejected>;

fn path_key(p: &Path) -> PathKey {
    (p.source, p.path_id, p.attr)
}

/// True when a path with these attributes may be selected: a next hop that
/// is set, not ours and not multicast (our own routes have none and are).
fn next_hop_usable(attrs: &PathAttrs, own: &FxHashSet<IpAddr>) -> bool {
    attrs.next_hop.is_some_and(|nh| !nh.is_unspecified() && !own.contains(&nh) && !nh.is_multicast())
}

fn best_key(paths: &[Path]) -> Option<PathKey> {
    paths.first().map(path_key)
}

/// The attributes `target` gets for `path` of `net`, interned; `None` when it gets nothing.
fn export_path(
    config: &RibConfig,
    interner: &mut Interner,
    target: &Target,
    net: &IpNetwork,
    path: &Path,
    facts: &FxHashMap<IpAddr, PeerFacts>,
) -> Option<Attrs> {
    let source = path.source.and_then(|s| facts.get(&s));
    let origin = Origin {
        peer: path.source,
        role: source.map(|s| s.role),
        router_id: source.map(|s| s.router_id).unwrap_or(config.router_id),
    };
    export_route(config, target, net, &origin, &path.attrs).map(|a| interner.intern(a))
}

fn reserve(peer: &RibPeer) -> Reservation {
    let (tx, addr, epoch) = (peer.outbound.clone(), peer.addr, peer.epoch);
    Box::pin(async move { (addr, epoch, tx.reserve_owned().await.ok()) })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl RibTask {
    pub fn new(config: RibConfig, best_tx: mpsc::Sender<Vec<BestPathChange>>) -> Self {
        let local_loaded = !config.hold_end_of_rib;
        let local_waiting = if local_loaded { Vec::new() } else { config.local_sources.clone() };
        let interner = Interner::default();
        let mut loc = LocRib::new();
        let (local_attr, _) = loc.attrs.intern(PathAttrs::local());
        loc.attrs.retain(local_attr);
        let mut own: FxHashSet<IpAddr> = config.local_addresses.iter().copied().collect();
        own.insert(IpAddr::V4(config.router_id));
        RibTask {
            config,
            interner,
            wire: AttrBytes::default(),
            sent: SentSets::default(),
            loc,
            changes: Changes::default(),
            peers: FxHashMap::default(),
            local: FxHashSet::default(),
            local_own: FxHashMap::default(),
            local_attr,
            community_rules: Vec::new(),
            own,
            best_tx,
            facts: FxHashMap::default(),
            reservations: FuturesUnordered::new(),
            early: FxHashMap::default(),
            early_count: 0,
            work_left: false,
            local_loaded,
            local_waiting,
            malformed: Default::default(),
        }
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>, mut events: mpsc::Receiver<PeerEvent>) {
        let (mut commands_open, mut events_open) = (true, true);
        let best_tx = self.best_tx.clone();
        loop {
            self.flush();
            self.drain_changes(&best_tx);
            if !commands_open && !events_open {
                return;
            }
            let deadline = self.peers.values().filter_map(|p| p.stale.as_ref().map(|s| s.deadline)).min();
            let work_left = self.work_left;
            tokio::select! {
                biased;
                command = commands.recv(), if commands_open => match command {
                    Some(command) => {
                        // A command sees every event reported before it
                        // (a snapshot after an UPDATE shows its routes).
                        while let Ok(event) = events.try_recv() {
                            self.event(event);
                        }
                        crate::faults::point("rib");
                        self.command(command);
                    }
                    None => commands_open = false,
                },
                Some((peer, epoch, permit)) = self.reservations.next(), if !self.reservations.is_empty() => {
                    self.reserved(peer, epoch, permit);
                }
                permit = best_tx.reserve(), if self.loc.changes_pending() > 0 => match permit {
                    Ok(permit) => permit.send(self.take_changes()),
                    Err(_) => while self.loc.take_change().is_some() {},
                },
                event = events.recv(), if events_open => match event {
                    Some(event) => {
                        self.event(event);
                        // Handle a burst before flushing, so that its changes coalesce.
                        for _ in 0..EVENTS_PER_TURN {
                            match events.try_recv() {
                                Ok(event) => self.event(event),
                                Err(_) => break,
                            }
                        }
                    }
                    None => events_open = false,
                },
                () = sleep_until(deadline) => self.expire_stale(),
                () = std::future::ready(()), if work_left => {}
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::AddPeer(addr, setup, outbound) => {
                match self.peers.get_mut(&addr) {
                    Some(peer) => {
                        peer.outbound = outbound;
                        self.change_peer(addr, *setup);
                    }
                    None => {
                        self.loc.slot(addr);
                        self.peers.insert(addr, Box::new(RibPeer::new(addr, *setup, outbound)));
                    }
                }
                self.refresh_facts();
                if let Some(events) = self.early.remove(&addr) {
                    self.early_count -= events.len();
                    for event in events {
                        self.event(event);
                    }
                }
            }
            Command::ChangePeer(addr, setup) => self.change_peer(addr, *setup),
            Command::RemovePeer(addr) => {
                self.early_count -= self.early.remove(&addr).map_or(0, |e| e.len());
                if self.peers.contains_key(&addr) {
                    for (net, path_id) in self.loc.paths_of(addr) {
                        self.remove_path(net, Some(addr), path_id);
                    }
                    if let Some(mut peer) = self.peers.remove(&addr) {
                        peer.release_sent(&mut self.sent);
                    }
                    self.loc.release_slot(addr);
                    self.refresh_facts();
                    self.loc.maybe_shrink();
                }
            }
            Command::Originate(net) => {
                let net = normalize(net);
                if self.local.insert(net) {
                    let path = self.local_path(&net);
                    self.modify(net, |dest| dest.upsert(path));
                }
            }
            Command::OriginateWith(mut own) => {
                let net = normalize(own.within);
                own.within = net;
                let changed = if own.communities.is_empty() && own.large.is_empty() {
                    self.local_own.remove(&net).is_some()
                } else {
                    self.local_own.insert(net, own.clone()).as_ref() != Some(&own)
                };
                if self.local.insert(net) || changed {
                    let path = self.local_path(&net);
                    self.modify(net, |dest| dest.upsert(path));
                }
            }
            Command::Withdraw(net) => {
                let net = normalize(net);
                self.local_own.remove(&net);
                if self.local.remove(&net) {
                    self.remove_path(net, None, 0);
                }
            }
            Command::LocalLoaded(source) => {
                self.local_waiting.retain(|s| *s != source);
                self.local_loaded = self.local_waiting.is_empty();
            }
            Command::ResendLearned => {
                for net in self.loc.keys() {
                    if self.loc.get(&net).is_some_and(|d| !learned(d.multipath()).0.is_empty()) {
                        self.queue_change(net);
                    }
                }
            }
            Command::Snapshot(query, reply) => {
                let _ = reply.send(self.snapshot(&query));
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Command::SetLocalAs(local_as) => self.config.local_as = local_as,
            Command::SetCommunities(rules) => {
                self.community_rules = rules;
                for net in self.local.iter().copied().collect::<Vec<_>>() {
                    let path = self.local_path(&net);
                    self.modify(net, |dest| dest.upsert(path));
                }
            }
        }
    }

    /// The path of our own prefix `net`: the local attributes plus the communities of every
    /// rule `net` falls within.
    fn local_path(&mut self, net: &IpNetwork) -> Path {
        let rules: Vec<&CommunityRule> =
            self.community_rules.iter().filter(|r| within(net, &r.within)).chain(self.local_own.get(net)).collect();
        let (attr, attrs) = if rules.is_empty() {
            (self.local_attr, self.loc.attrs.get(self.local_attr).clone())
        } else {
            let mut attrs = PathAttrs::local();
            attrs.communities = rules.iter().flat_map(|r| r.communities.iter().copied()).collect();
            attrs.large_communities = rules.iter().flat_map(|r| r.large.iter().copied()).collect();
            attrs.communities.sort_unstable();
            attrs.communities.dedup();
            attrs.large_communities.sort_unstable();
            attrs.large_communities.dedup();
            self.loc.attrs.intern(attrs)
        };
        Path { source: None, path_id: 0, attrs, attr, stale: false }
    }

    fn change_peer(&mut self, addr: IpAddr, setup: super::PeerSetup) {
        let Some(peer) = self.peers.get_mut(&addr) else { return };
        peer.setup = setup;
        // Recompute everything it gets; the Adj-RIB-Out turns that into a diff.
        if peer.session.is_some() {
            let loc = &self.loc;
            self.changes.start(&mut peer.feed, None, || loc.keys());
        }
    }

    fn event(&mut self, event: PeerEvent) {
        let addr = match &event {
            PeerEvent::SessionUp { peer, .. }
            | PeerEvent::SessionDown { peer, .. }
            | PeerEvent::Update { peer, .. }
            | PeerEvent::RouteRefresh { peer, .. } => *peer,
        };
        if !self.peers.contains_key(&addr) {
            // The speaker may report a session before the agent adds the peer here.
            if self.early_count < EARLY_EVENTS {
                self.early.entry(addr).or_default().push(event);
                self.early_count += 1;
            } else {
                tracing::warn!(subsys = "rib", peer = %addr, "event of an unknown peer dropped");
            }
            return;
        }
        match event {
            PeerEvent::SessionUp { peer, negotiated } => self.session_up(peer, *negotiated),
            PeerEvent::SessionDown { peer, reason, possible_restart } => {
                self.session_down(peer, &reason, possible_restart)
            }
            PeerEvent::Update { peer, update, outcome } => self.update(peer, &update, &outcome),
            PeerEvent::RouteRefresh { peer, message } => match message.subtype {
                subtype::NORMAL => self.refresh(peer, message.family),
                subtype::BORR => self.mark_stale(peer, &[message.family], self.config.stale_routes_time),
                subtype::EORR => self.sweep(peer, message.family),
                _ => {}
            },
        }
    }

    fn session_up(&mut self, addr: IpAddr, negotiated: Negotiated) {
        if let Some(local) = negotiated.local_addr {
            self.own.insert(local);
        }
        let stale_time = self.config.stale_routes_time;
        let Some(peer) = self.peers.get_mut(&addr) else { return };
        peer.reset_outbound(&mut self.sent, self.changes.log());
        peer.router_id = negotiated.peer_id;
        let families: Vec<Family> = negotiated.families.iter().copied().filter(|f| f.is_ip_unicast()).collect();
        // RFC 4724 4.2: stale routes of families the restarted peer did not
        // keep forwarding state for (or no longer offers) go now; the others
        // wait for its End-of-RIB.
        let preserved: Vec<Family> = negotiated
            .peer_graceful_restart
            .as_ref()
            .map(|(_, fams)| fams.iter().filter(|f| f.flags & 0x80 != 0).map(|f| f.family).collect())
            .unwrap_or_default();
        let mut sweep_now = Vec::new();
        if let Some(stale) = &mut peer.stale {
            sweep_now = stale.families.iter().copied().filter(|f| !preserved.contains(f)).collect();
            stale.families.retain(|f| preserved.contains(f));
            stale.deadline = Instant::now() + stale_time;
        }
        peer.session = Some(Session { router_id: negotiated.peer_id, local_addr: negotiated.local_addr, negotiated });
        let loc = &self.loc;
        self.changes.start(&mut peer.feed, None, || loc.keys());
        // End-of-RIB after the initial table (RFC 4724 section 2).
        peer.end_of_rib = families;
        for f in sweep_now {
            self.sweep(addr, f);
        }
        self.refresh_facts();
    }

    fn refresh_facts(&mut self) {
        self.facts =
            self.peers.iter().map(|(a, p)| (*a, PeerFacts { role: p.setup.role, router_id: p.router_id })).collect();
    }

    /// Queues a prefix for the dataplane, unless nobody takes the changes (a
    /// dedicated route reflector that installs no learned routes).
    fn queue_change(&mut self, net: IpNetwork) {
        if !self.best_tx.is_closed() {
            self.loc.queue_change(net);
        }
    }

    /// Sends queued best-path changes while the channel has room.
    fn drain_changes(&mut self, tx: &mpsc::Sender<Vec<BestPathChange>>) {
        while self.loc.changes_pending() > 0 {
            match tx.try_reserve() {
                Ok(permit) => permit.send(self.take_changes()),
                Err(TrySendError::Full(())) => return,
                Err(TrySendError::Closed(())) => {
                    while self.loc.take_change().is_some() {}
                    return;
                }
            }
        }
    }

    /// The oldest queued changes (at most a batch) as the consumer sees
    /// them: each prefix's learned set now.
    fn take_changes(&mut self) -> Vec<BestPathChange> {
        let mut batch = Vec::with_capacity(self.loc.changes_pending().min(BEST_PATH_BATCH));
        while batch.len() < BEST_PATH_BATCH
            && let Some((prefix, next_hops, peers)) = self.loc.take_change()
        {
            batch.push(BestPathChange { prefix, next_hops, peers });
        }
        batch
    }

    fn session_down(&mut self, addr: IpAddr, reason: &DownReason, possible_restart: bool) {
        self.malformed.forget(&addr);
        let Some(peer) = self.peers.get_mut(&addr) else { return };
        let session = peer.session.take();
        peer.reset_outbound(&mut self.sent, self.changes.log());
        peer.rejected.clear();
        // RFC 4724 4.2: without a NOTIFICATION, a peer that offered graceful
        // restart keeps its routes (stale) for its restart time. We do not
        // offer the N bit (RFC 8538), so a NOTIFICATION either way drops them,
        // except our Cease / BFD Down when BFD's failure may be the peer's
        // control plane restarting (RFC 5882 4.3.2, `session::bfd_down`).
        let gr = session.as_ref().and_then(|s| {
            let (time, fams) = s.negotiated.peer_graceful_restart.as_ref()?;
            let families: Vec<Family> =
                fams.iter().map(|f| f.family).filter(|f| s.negotiated.families.contains(f)).collect();
            (*time > 0 && !families.is_empty() && (*reason == DownReason::ConnectionLost || possible_restart))
                .then(|| (families, std::time::Duration::from_secs(u64::from(*time))))
        });
        let kept: Vec<Family> = match gr {
            Some((families, time)) => {
                self.mark_stale(addr, &families, time);
                families
            }
            None => Vec::new(),
        };
        let drop: Vec<_> =
            self.loc.paths_of(addr).into_iter().filter(|(net, _)| !kept.contains(&family(net))).collect();
        for (net, path_id) in drop {
            self.remove_path(net, Some(addr), path_id);
        }
        self.loc.maybe_shrink();
    }

    /// Marks the peer's routes of `families` stale until `time` from now.
    fn mark_stale(&mut self, addr: IpAddr, families: &[Family], time: std::time::Duration) {
        for (net, path_id) in self.loc.paths_of(addr) {
            if families.contains(&family(&net)) {
                self.loc.set_stale(&net, addr, path_id);
            }
        }
        let Some(peer) = self.peers.get_mut(&addr) else { return };
        let stale = peer.stale.get_or_insert(Stale { families: Vec::new(), deadline: Instant::now() + time });
        stale.deadline = Instant::now() + time;
        for f in families {
            if !stale.families.contains(f) {
                stale.families.push(*f);
            }
        }
    }

    /// Removes the peer's routes of `family` that are still stale.
    fn sweep(&mut self, addr: IpAddr, family_swept: Family) {
        let Some(peer) = self.peers.get_mut(&addr) else { return };
        let Some(stale) = &mut peer.stale else { return };
        stale.families.retain(|f| *f != family_swept);
        if stale.families.is_empty() {
            peer.stale = None;
        }
        let gone: Vec<_> = self
            .loc
            .paths_of(addr)
            .into_iter()
            .filter(|(net, path_id)| {
                family(net) == family_swept && self.loc.path_state(net, addr, *path_id) == Some(true)
            })
            .collect();
        for (net, path_id) in gone {
            self.remove_path(net, Some(addr), path_id);
        }
        self.loc.maybe_shrink();
    }

    fn expire_stale(&mut self) {
        let now = Instant::now();
        let expired: Vec<(IpAddr, Vec<Family>)> = self
            .peers
            .values()
            .filter_map(|p| p.stale.as_ref().filter(|s| s.deadline <= now).map(|s| (p.addr, s.families.clone())))
            .collect();
        for (addr, families) in expired {
            tracing::info!(subsys = "rib", peer = %addr, "stale routes timed out");
            for f in families {
                self.sweep(addr, f);
            }
            if let Some(peer) = self.peers.get_mut(&addr) {
                peer.stale = None;
            }
        }
    }

    fn refresh(&mut self, addr: IpAddr, refreshed: Family) {
        let Some(peer) = self.peers.get_mut(&addr) else { return };
        let Some(session) = &peer.session else { return };
        if !peer.carries(refreshed) {
            return;
        }
        let enhanced = session.negotiated.enhanced_route_refresh;
        // Forget what was sent so that all of it goes again.
        peer.adj_out.retain(|net, _| family(net) != refreshed);
        // ADD-PATH: keep the ids (the peer still has them), resend every path under its id.
        self.sent.unsend(&mut peer.adj_out_paths, refreshed);
        let loc = &self.loc;
        self.changes.start(&mut peer.feed, Some(refreshed), || loc.keys());
        // The session turns this End-of-RIB into EoRR (it sent BoRR, RFC 7313).
        if enhanced && !peer.end_of_rib.contains(&refreshed) {
            peer.end_of_rib.push(refreshed);
        }
    }

    fn update(&mut self, addr: IpAddr, update: &UpdateMessage, outcome: &UpdateOutcome) {
        let Some(peer) = self.peers.get_mut(&addr) else { return };
        let Some(session) = &peer.session else { return };
        let four_octet = session.negotiated.four_octet_as;
        peer.stats.updates_received += 1;
        match outcome.action() {
            Rfc7606Action::TreatAsWithdraw => peer.stats.treat_as_withdraw += 1,
            Rfc7606Action::AttributeDiscard => peer.stats.attribute_discard += 1,
            _ => {}
        }
        if !outcome.faults.is_empty()
            && let Some(line) =
                self.malformed.note(addr, outcome, update.announced().count(), std::time::Instant::now())
        {
            tracing::warn!(
                subsys = "bgp",
                peer = %addr,
                action = line.action.as_str(),
                attributes = ?line.attributes,
                prefixes = line.prefixes,
                suppressed_updates = line.suppressed_updates,
                suppressed_prefixes = line.suppressed_prefixes,
                "malformed UPDATE kept under RFC 7606 (logged once a minute per peer)"
            );
        }
        if let Some(f) = update.as_end_of_rib() {
            self.sweep(addr, f);
            return;
        }
        let withdrawn = update.withdrawals_under(outcome);
        for (i, (_, nlri)) in withdrawn.iter().enumerate() {
            if let Some((_, next)) = withdrawn.get(i + PREFETCH_AHEAD)
                && let Some(next) = network(&next.prefix)
            {
                self.loc.prefetch(&next);
            }
            let Some(net) = network(&nlri.prefix) else { continue };
            let path_id = nlri.path_id.unwrap_or(0);
            let Some(peer) = self.peers.get_mut(&addr) else { return };
            peer.stats.withdraws_received += 1;
            if !peer.rejected.is_empty() {
                peer.rejected.remove(&(net, path_id));
            }
            self.remove_path(net, Some(addr), path_id);
        }
        if outcome.action() == Rfc7606Action::TreatAsWithdraw || update.announced().next().is_none() {
            return;
        }
        let Some(setup) = self.peers.get(&addr).map(|p| p.setup.clone()) else { return };
        let slot = self.loc.slot(addr);
        let base = base_attrs(update, outcome, four_octet);
        // The attributes of the current family, interned once for all its
        // prefixes (and referenced meanwhile, so no collection frees them).
        let mut current: Option<(Family, Imported)> = None;
        // Their entries are looked up a few prefixes early, so the cache
        // misses of a large UPDATE overlap.
        let mut ahead = update.announced().skip(PREFETCH_AHEAD);
        for (f, nlri) in update.announced() {
            if let Some((_, next)) = ahead.next()
                && let Some(next) = network(&next.prefix)
            {
                self.loc.prefetch(&next);
            }
            if current.as_ref().is_none_or(|(cf, _)| *cf != f) {
                if let Some((_, Ok((id, _)))) = current.take() {
                    self.loc.attrs.release(id);
                }
                let (nh, link_local) = next_hop(update, f);
                let mut attrs = base.clone();
                attrs.next_hop = nh;
                attrs.link_local = link_local;
                let imported = import_attrs(&self.config, &setup, attrs).map(|attrs| {
                    let usable = next_hop_usable(&attrs, &self.own);
                    let (id, _) = self.loc.attrs.intern(attrs);
                    self.loc.attrs.retain(id);
                    (id, usable)
                });
                current = Some((f, imported));
            }
            let Some((_, imported)) = &current else { continue };
            let Some(net) = network(&nlri.prefix) else { continue };
            let path_id = nlri.path_id.unwrap_or(0);
            let accepted = imported.and_then(|(id, usable)| {
                match import_prefix(&self.config, &setup, &net, self.loc.attrs.get(id))? {
                    None => Ok((id, usable)),
                    Some(changed) => {
                        let usable = next_hop_usable(&changed, &self.own);
                        Ok((self.loc.attrs.intern(changed).0, usable))
                    }
                }
            });
            match accepted {
                Ok((attr, usable)) => {
                    if let Some(peer) = self.peers.get_mut(&addr)
                        && !peer.rejected.is_empty()
                    {
                        peer.rejected.remove(&(net, path_id));
                    }
                    self.accept(net, slot, addr, path_id, attr, usable);
                }
                Err(why) => {
                    tracing::trace!(subsys = "rib", peer = %addr, prefix = %net, reason = ?why, "route not accepted");
                    if let Some(peer) = self.peers.get_mut(&addr) {
                        peer.rejected.insert((net, path_id));
                    }
                    self.remove_path(net, Some(addr), path_id);
                }
            }
        }
        if let Some((_, Ok((id, _)))) = current {
            self.loc.attrs.release(id);
        }
    }

    /// Stores an accepted path: a prefix that has no other peer's path takes
    /// the compact way, without decoding or running the full decision.
    fn accept(&mut self, net: IpNetwork, slot: Slot, addr: IpAddr, path_id: u32, attr: AttrId, usable: bool) {
        if path_id == 0 {
            match self.loc.fast_upsert(net, slot, attr, usable) {
                Fast::Unchanged => return,
                stored @ Fast::Stored { .. } => return self.fast_done(net, addr, stored),
                Fast::NotApplicable => {}
            }
        }
        let attrs = self.loc.attrs.get(attr).clone();
        let path = Path { source: Some(addr), path_id, attrs, attr, stale: false };
        self.modify(net, |dest| dest.upsert(path));
    }

    /// What follows a fast-path store or removal of `addr`'s path: the
    /// dataplane hears of changed next hops, peers of a changed best path.
    fn fast_done(&mut self, net: IpNetwork, addr: IpAddr, done: Fast) {
        let Fast::Stored { best, best_changed, hops_changed } = done else { return };
        if hops_changed {
            self.queue_change(net);
        }
        if best_changed {
            let source = |b: bool| b.then_some(Some(addr));
            self.log_change(net, true, true, (source(best.0), source(best.1)));
        }
    }

    fn remove_path(&mut self, net: IpNetwork, source: Option<IpAddr>, path_id: u32) {
        if let Some(addr) = source {
            // A peer without a slot has no path anywhere.
            let Some(slot) = self.loc.slot_of_peer(&addr) else { return };
            if let Some(done) = self.loc.fast_remove(net, slot, path_id) {
                return self.fast_done(net, addr, done);
            }
        }
        self.modify(net, |dest| dest.remove(source, path_id).is_some());
    }

    /// Applies `change` to the prefix's paths; when it changed something,
    /// runs best path, queues a changed learned set for the dataplane and
    /// logs the prefix for the peers when its best path changed.
    fn modify(&mut self, net: IpNetwork, change: impl FnOnce(&mut Dest) -> bool) {
        // Peers receiving ADD-PATH get the whole multipath set: watch all of it then.
        let watch_set =
            self.peers.values().any(|p| p.session.as_ref().is_some_and(|s| !s.negotiated.add_path_send.is_empty()));
        let mut dest = self.loc.get(&net).unwrap_or_default();
        let before_best = best_key(dest.multipath());
        let before_set: Vec<PathKey> =
            if watch_set { dest.multipath().iter().map(path_key).collect() } else { Vec::new() };
        let before = learned(dest.multipath());
        if !change(&mut dest) {
            return;
        }
        let (config, own, facts) = (&self.config, &self.own, &self.facts);
        dest.select(config.max_paths, |p| candidate(p, config, facts, own));
        let after_best = best_key(dest.multipath());
        let set_changed = watch_set && !dest.multipath().iter().map(path_key).eq(before_set.iter().copied());
        let after = learned(dest.multipath());
        self.loc.store(net, dest);
        if before != after {
            self.queue_change(net);
        }
        let best_changed = before_best != after_best;
        if best_changed || set_changed {
            let source = |k: Option<PathKey>| k.map(|(s, _, _)| s);
            self.log_change(net, best_changed, set_changed, (source(before_best), source(after_best)));
        }
    }

    /// Logs a prefix whose best path (or multipath set) changed when a peer
    /// may see a difference. `best`: the best path's source before and after
    /// (`None`: no best; `Some(None)`: ours). A peer whose own route was and
    /// is the best (or none) sees nothing: a route is never sent back to the
    /// peer it came from (so a node agent's table learned from its only peer
    /// never enters the log).
    fn log_change(
        &mut self,
        net: IpNetwork,
        best_changed: bool,
        set_changed: bool,
        best: (Option<Option<IpAddr>>, Option<Option<IpAddr>>),
    ) {
        let f = family(&net);
        let concerned = |peer: &RibPeer| {
            if !peer.carries(f) {
                return false;
            }
            if peer.sends_paths(f) {
                return best_changed || set_changed;
            }
            let theirs = |b: Option<Option<IpAddr>>| b.is_none_or(|s| s == Some(peer.addr));
            best_changed && !(theirs(best.0) && theirs(best.1))
        };
        let wanted = self.peers.values().any(|p| concerned(p));
        self.changes.record(net, wanted);
    }

    fn reserved(&mut self, addr: IpAddr, epoch: u64, permit: Option<OwnedPermit<Outbound>>) {
        let Some(peer) = self.peers.get_mut(&addr).filter(|p| p.epoch == epoch) else { return };
        peer.waiting = false;
        match permit {
            Some(permit) => {
                if let Some(update) = peer.queue.pop_front() {
                    permit.send(update);
                }
            }
            None => peer.queue.clear(),
        }
    }

    /// Sends what each peer's channel takes, building UPDATEs from the prefixes it has to recompute.
    fn flush(&mut self) {
        self.work_left = false;
        // Flushing never changes the peer facts: lent, not copied (a thousand peers each turn).
        let facts = std::mem::take(&mut self.facts);
        let addrs: Vec<IpAddr> = self.peers.keys().copied().collect();
        for addr in addrs {
            for _ in 0..BATCHES_PER_TURN {
                match self.flush_peer(addr, &facts) {
                    Flushed::Blocked | Flushed::Done => break,
                    Flushed::More => {}
                }
            }
            if self
                .peers
                .get(&addr)
                .is_some_and(|p| p.session.is_some() && !p.waiting && !p.feed.caught_up(self.changes.log()))
            {
                self.work_left = true;
            }
        }
        self.facts = facts;
        // What every peer with a session has read goes.
        let oldest = self.peers.values().filter(|p| p.session.is_some()).map(|p| p.feed.cursor).min();
        self.changes.trim(oldest.unwrap_or(self.changes.log().head()));
    }

    fn flush_peer(&mut self, addr: IpAddr, facts: &FxHashMap<IpAddr, PeerFacts>) -> Flushed {
        let Some(peer) = self.peers.get_mut(&addr) else { return Flushed::Done };
        if peer.session.is_none() || peer.waiting {
            return Flushed::Blocked;
        }
        while let Some(update) = peer.queue.pop_front() {
            match peer.outbound.try_send(update) {
                Ok(()) => {}
                Err(TrySendError::Full(update)) => {
                    peer.queue.push_front(update);
                    peer.waiting = true;
                    self.reservations.push(reserve(peer));
                    return Flushed::Blocked;
                }
                Err(TrySendError::Closed(_)) => {
                    peer.queue.clear();
                    return Flushed::Blocked;
                }
            }
        }
        if peer.feed.caught_up(self.changes.log()) {
            // Held End-of-RIBs go with the first flush after our prefixes are in.
            if peer.end_of_rib.is_empty() || !self.local_loaded {
                return Flushed::Done;
            }
            let eor: Vec<Family> = std::mem::take(&mut peer.end_of_rib);
            peer.queue.extend(eor.into_iter().map(|f| Outbound::from(UpdateMessage::end_of_rib(f))));
            return Flushed::More;
        }
        if peer.outbound.capacity() == 0 {
            // A batch is built only once the session has room for it: one built to wait here
            // would be held for each client of a reflector, and its prefixes may change meanwhile.
            peer.waiting = true;
            self.reservations.push(reserve(peer));
            return Flushed::Blocked;
        }
        self.build_batch(addr, facts);
        Flushed::More
    }

    /// Turns up to [`BATCH`] prefixes of a peer's feed into UPDATEs on its queue.
    fn build_batch(&mut self, addr: IpAddr, facts: &FxHashMap<IpAddr, PeerFacts>) {
        let Some(peer) = self.peers.get_mut(&addr) else { return };
        let Some(session) = &peer.session else { return };
        let four_octet = session.negotiated.four_octet_as;
        let target = Target { addr, setup: &peer.setup, local_addr: session.local_addr };
        let mut announce: FxHashMap<(Family, *const PathAttrs), (Attrs, Vec<OutNlri>)> = FxHashMap::default();
        let mut withdraw: FxHashMap<Family, Vec<OutNlri>> = FxHashMap::default();
        let mut changes: Vec<(IpNetwork, Option<Attrs>)> = Vec::new();
        let mut path_changes: Vec<(IpNetwork, Vec<SentPath>)> = Vec::new();
        let mut taken = 0;
        while taken < BATCH && announce.len() < UPDATES_PER_BATCH {
            let Some(net) = peer.feed.next(self.changes.log()) else { break };
            taken += 1;
            let f = family(&net);
            if !session.negotiated.families.contains(&f) {
                continue;
            }
            let dest = self.loc.get(&net);
            if session.negotiated.add_path_send.contains(&f) {
                // RFC 7911: every path of the multipath set, each under its own id.
                let want: Vec<WantedPath> = dest
                    .as_ref()
                    .map(|d| d.multipath())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|p| {
                        let attrs = export_path(&self.config, &mut self.interner, &target, &net, p, facts)?;
                        Some(WantedPath { source: p.source, source_id: p.path_id, attrs })
                    })
                    .collect();
                let before = self.sent.sent_to(&peer.adj_out_paths, &net);
                let diff = addpath::diff(before, want);
                for id in diff.withdraw {
                    withdraw.entry(f).or_default().push((net, Some(id)));
                }
                for (id, attrs) in diff.announce {
                    let group = announce.entry((f, Arc::as_ptr(&attrs))).or_insert_with(|| (attrs.clone(), Vec::new()));
                    group.1.push((net, Some(id)));
                }
                path_changes.push((net, diff.sent));
                continue;
            }
            let want = dest
                .as_ref()
                .and_then(|d| d.best())
                .and_then(|best| export_path(&self.config, &mut self.interner, &target, &net, best, facts));
            match (want, peer.adj_out.get(&net)) {
                (Some(want), Some(sent)) if Arc::ptr_eq(&want, sent) => {}
                (Some(want), _) => {
                    let group = announce.entry((f, Arc::as_ptr(&want))).or_insert_with(|| (want.clone(), Vec::new()));
                    group.1.push((net, None));
                    changes.push((net, Some(want)));
                }
                (None, Some(_)) => {
                    withdraw.entry(f).or_default().push((net, None));
                    changes.push((net, None));
                }
                (None, None) => {}
            }
        }
        // The whole batch encoded into one buffer, for one channel slot and one write.
        let ctx = EncodeContext::from(&session.negotiated.decode_context());
        let mut batch = Batch::default();
        for (f, nets) in withdraw {
            batch.push(pack::withdraw(f, &nets), &ctx);
        }
        for ((f, _), (attrs, nets)) in announce {
            if f == Family::IPV4_UNICAST {
                batch.announce_ipv4(&self.wire.get(&attrs, four_octet), &nets);
            } else {
                batch.push(pack::announce(f, &attrs, &nets, four_octet), &ctx);
            }
        }
        if batch.updates > 0 {
            let updates = batch.updates;
            peer.queue.push_back(Outbound::encoded(batch.into_bytes(), updates));
        }
        for (net, attrs) in changes {
            match attrs {
                Some(attrs) => peer.adj_out.insert(net, attrs),
                None => peer.adj_out.remove(&net),
            };
        }
        for (net, sent) in path_changes {
            self.sent.record(&mut peer.adj_out_paths, net, sent);
        }
    }

    fn stats(&self) -> RibStats {
        RibStats {
            loc_rib_prefixes: self.loc.len() as u64,
            paths: self.loc.paths() as u64,
            attribute_sets: self.loc.attribute_sets() as u64,
            changes_pending: self.loc.changes_pending() as u64,
            per_peer: self
                .peers
                .iter()
                .map(|(addr, p)| {
                    let mut s = p.stats.clone();
                    s.accepted = self.loc.count(addr);
                    s.received = s.accepted + p.rejected.len() as u64;
                    s.advertised = p.advertised() as u64;
                    (*addr, s)
                })
                .collect(),
        }
    }

    /// Whether paths of `net` from `source` come with ADD-PATH identifiers: its session
    /// receives ADD-PATH for the family.
    fn receives_add_path(&self, source: Option<IpAddr>, net: &IpNetwork) -> bool {
        let session = source.and_then(|s| self.peers.get(&s)).and_then(|p| p.session.as_ref());
        session.is_some_and(|s| s.negotiated.add_path_receive.contains(&family(net)))
    }

    fn snapshot(&self, query: &RouteQuery) -> RibSnapshot {
        let mut nets = query.select(self.loc.keys());
        nets.sort_by_key(|n| (n.is_ipv6(), n.network(), n.prefix()));
        let mut routes = Vec::new();
        for net in nets {
            let Some(dest) = self.loc.get(&net) else { continue };
            let candidates: Vec<Candidate> =
                dest.paths.iter().map(|p| candidate(p, &self.config, &self.facts, &self.own)).collect();
            let decision = decide(&candidates, self.config.max_paths);
            for (i, path) in dest.paths.iter().enumerate() {
                if !query.wants_path(path.source) {
                    continue;
                }
                let multipath = i < dest.selected;
                let reason = if i == 0 && multipath {
                    None
                } else if multipath {
                    tie_break_reason(&candidates[0], &candidates[i])
                } else {
                    decision.lost.get(i).copied().flatten()
                };
                let a = &path.attrs;
                routes.push(RouteView {
                    prefix: net,
                    peer: path.source,
                    next_hop: a.next_hop,
                    best: i == 0 && multipath,
                    multipath,
                    reason: reason.map(|r| r.as_str().to_string()),
                    as_path: a.as_path_text(),
                    origin: format!("{:?}", a.origin).to_lowercase(),
                    local_pref: a.local_pref,
                    med: a.med,
                    communities: a.communities.iter().map(|c| format!("{}:{}", c.0 >> 16, c.0 & 0xffff)).collect(),
                    originator_id: a.originator_id,
                    cluster_list: a.cluster_list.clone(),
                    stale: path.stale,
                    origin_of_own: None,
                    path_id: self.receives_add_path(path.source, &net).then_some(path.path_id),
                });
            }
        }
        RibSnapshot { routes, stats: self.stats() }
    }
}

enum Flushed {
    /// Waiting for capacity, or no session.
    Blocked,
    /// Nothing left to send.
    Done,
    /// More may go now.
    More,
}
