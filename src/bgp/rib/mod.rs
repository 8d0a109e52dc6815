//! The routing half of the speaker: Adj-RIB-In, Loc-RIB, Adj-RIB-Out, best
//! path, policy, route reflection and graceful restart, in one task.
//!
//! - [`addpath`]: ADD-PATH send, the path identifiers of an ECMP set;
//! - [`attrs`]: interned attribute sets;
//! - [`best`]: the decision process (pure) and loss reasons;
//! - [`policy`]: typed import/export policy;
//! - [`import`] and [`export`]: the per-role rules on the way in and out;
//! - [`attr_table`]: received attribute sets by reference-counted id;
//! - [`table`]: the Loc-RIB (every peer's Adj-RIB-In) in compact entries,
//!   with the coalescing best-path change queue;
//! - [`feed`]: the prefixes the peers have to recompute, one change log and
//!   shared table dumps for all of them;
//! - [`peer`]: per-peer Adj-RIB-Out, place in the feed and send queue;
//! - [`sent_sets`]: the ADD-PATH Adj-RIB-Out lists of all peers, each distinct one once;
//! - [`adj_out`]: a peer's list id per prefix, by the prefix's RIB-wide number;
//! - [`pack`]: UPDATE packing;
//! - [`wire`]: a batch of UPDATEs encoded into one buffer, attributes encoded once per set;
//! - [`task`]: the RIB task (events, commands, flushing with back-pressure);
//! - [`snapshot`]: the views for the API and CLI.
//!
//! Rules and defaults are documented in `docs/bgp-routing.md`.

pub mod addpath;
pub mod adj_out;
pub mod attr_table;
pub mod attrs;
pub mod best;
pub mod export;
pub mod feed;
pub mod import;
pub mod malformed_log;
pub mod net;
pub mod pack;
pub mod peer;
pub mod policy;
pub mod query;
pub mod sent_sets;
pub mod snapshot;
pub mod table;
pub mod task;
pub mod wire;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::bgp::session::{Outbound, PeerEvent};

pub use best::LossReason;
pub use policy::Policy;
pub use query::RouteQuery;
pub use snapshot::{PeerRibStats, RibSnapshot, RibStats, RouteView};

/// Best-path changes the channel holds at most (in batches of up to
/// [`BEST_PATH_BATCH`]); beyond it changes coalesce per prefix.
pub const BEST_PATH_CAPACITY: usize = 4096;
/// Best-path changes per message on the channel: one send and one wake-up
/// per batch, not per prefix (a million-route table is a million changes).
pub const BEST_PATH_BATCH: usize = 256;
/// Capacity of the command channel.
const COMMAND_CAPACITY: usize = 256;

/// The RIB's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RibConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// Route reflector cluster id (RFC 4456); the router id when unset.
    pub cluster_id: Option<Ipv4Addr>,
    /// Maximum size of an ECMP multipath set (at least 1).
    pub max_paths: usize,
    /// IP pools: what iBGP peers may send us and what External peers get.
    pub pools: Vec<IpNetwork>,
    /// Our own addresses besides the sessions' local ones: next hops equal to
    /// them are unusable, and they are the next hop self of a family whose
    /// session runs over the other family.
    pub local_addresses: Vec<IpAddr>,
    /// How long stale routes of a restarted peer wait for its End-of-RIB.
    pub stale_routes_time: Duration,
    /// Hold every End-of-RIB until [`Rib::local_prefixes_loaded`]: our own
    /// prefixes come from elsewhere (the datastore) after start, and a peer
    /// keeping our routes for a graceful restart sweeps at our End-of-RIB
    /// whatever we have not re-announced by then.
    pub hold_end_of_rib: bool,
    /// The producers of our own prefixes End-of-RIB waits for, each saying
    /// [`Rib::local_prefixes_loaded_by`] its name (`blocks`: [`Rib::local_prefixes_loaded`]).
    pub local_sources: Vec<&'static str>,
}

/// The source [`Rib::local_prefixes_loaded`] speaks for: the node's blocks and borrowed addresses.
pub const BLOCKS_SOURCE: &str = "blocks";

impl RibConfig {
    /// Defaults: 4 paths, no pools, 360 s stale routes time, End-of-RIB not held.
    pub fn new(local_as: u32, router_id: Ipv4Addr) -> Self {
        RibConfig {
            local_as,
            router_id,
            cluster_id: None,
            max_paths: 4,
            pools: Vec::new(),
            local_addresses: Vec::new(),
            stale_routes_time: Duration::from_secs(360),
            hold_end_of_rib: false,
            local_sources: vec![BLOCKS_SOURCE],
        }
    }

    /// The cluster id in use.
    pub fn cluster(&self) -> Ipv4Addr {
        self.cluster_id.unwrap_or(self.router_id)
    }
}

/// What a peer is to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerRole {
    /// iBGP full mesh: iBGP-learned routes are never passed to other iBGP peers.
    Mesh,
    /// We reflect to and for this peer (RFC 4456).
    RrClient,
    /// We are a client of this peer: plain iBGP.
    RrServer,
    /// eBGP.
    External,
}

impl PeerRole {
    pub fn is_ibgp(self) -> bool {
        self != PeerRole::External
    }
}

/// How the RIB treats one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSetup {
    pub role: PeerRole,
    pub peer_as: u32,
    /// Our AS toward this peer when it differs from `RibConfig::local_as` (local-as).
    pub local_as: Option<u32>,
    /// Next hop self toward an iBGP peer (always on for eBGP).
    pub next_hop_self: bool,
    /// How many times our own AS may appear in a received AS path.
    pub allow_as_in: u8,
    pub import: Option<Policy>,
    pub export: Option<Policy>,
}

impl PeerSetup {
    /// A peer of `role` in `peer_as` with no options.
    pub fn new(role: PeerRole, peer_as: u32) -> Self {
        PeerSetup { role, peer_as, local_as: None, next_hop_self: false, allow_as_in: 0, import: None, export: None }
    }
}

/// One change of the best path set of a prefix; `next_hops` empty = no route any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BestPathChange {
    pub prefix: IpNetwork,
    pub next_hops: Addrs,
    pub peers: Addrs,
}

/// Next hops or peers of a best-path set: nearly always one, kept inline
/// so that a change costs no allocation.
pub type Addrs = smallvec::SmallVec<[IpAddr; 1]>;

/// What the handle asks of the task.
pub(crate) enum Command {
    AddPeer(IpAddr, Box<PeerSetup>, mpsc::Sender<Outbound>),
    ChangePeer(IpAddr, Box<PeerSetup>),
    RemovePeer(IpAddr),
    Originate(IpNetwork),
    /// Originate `within` itself, with these communities besides the rules'.
    OriginateWith(CommunityRule),
    Withdraw(IpNetwork),
    LocalLoaded(&'static str),
    ResendLearned,
    Snapshot(RouteQuery, oneshot::Sender<RibSnapshot>),
    Stats(oneshot::Sender<RibStats>),
    SetLocalAs(u32),
    SetCommunities(Vec<CommunityRule>),
}

/// Communities attached to our own prefixes that fall within `within`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommunityRule {
    pub within: IpNetwork,
    pub communities: Vec<crate::bgp::packet::community::Community>,
    pub large: Vec<crate::bgp::packet::community::LargeCommunity>,
}

impl CommunityRule {
    /// The rule giving `values` (standard and large, as configured) to prefixes within `within`.
    pub fn new(
        within: IpNetwork,
        values: impl IntoIterator<Item = crate::datastore::resources::CommunityValue>,
    ) -> Self {
        use crate::bgp::packet::community::{Community, LargeCommunity};
        use crate::datastore::resources::CommunityValue;
        let mut rule = CommunityRule { within, communities: Vec::new(), large: Vec::new() };
        for value in values {
            match value {
                CommunityValue::Standard(a, n) => rule.communities.push(Community((u32::from(a) << 16) | u32::from(n))),
                CommunityValue::Large(a, n, m) => {
                    rule.large.push(LargeCommunity { global_admin: a, local_data_1: n, local_data_2: m })
                }
            }
        }
        rule
    }
}

/// The handle to the RIB task. Cloning is cheap; the task ends when every
/// handle is gone and the event channel is closed.
#[derive(Clone)]
pub struct Rib {
    commands: mpsc::Sender<Command>,
    task: crate::dataplane::programmer::TaskSlot,
}

impl Rib {
    /// Spawns the RIB task consuming the speaker's PeerEvents.
    /// Best-path changes come out in batches of at most [`BEST_PATH_BATCH`].
    pub fn spawn(config: RibConfig, events: mpsc::Receiver<PeerEvent>) -> (Rib, mpsc::Receiver<Vec<BestPathChange>>) {
        let (commands_tx, commands) = mpsc::channel(COMMAND_CAPACITY);
        let (best_tx, best_rx) = mpsc::channel(BEST_PATH_CAPACITY / BEST_PATH_BATCH);
        let task = tokio::spawn(task::RibTask::new(config, best_tx).run(commands, events));
        (Rib { commands: commands_tx, task: std::sync::Arc::new(std::sync::Mutex::new(Some(task))) }, best_rx)
    }

    async fn send(&self, command: Command) {
        if self.commands.send(command).await.is_err() {
            tracing::warn!(subsys = "rib", "the RIB task has ended; command dropped");
        }
    }

    /// Adds a peer: its routes are accepted once its session is up, and
    /// `outbound` (the speaker's channel for it) receives our UPDATEs.
    pub async fn add_peer(&self, peer: IpAddr, setup: PeerSetup, outbound: mpsc::Sender<Outbound>) {
        self.send(Command::AddPeer(peer, Box::new(setup), outbound)).await
    }

    /// Changes a peer's setup; what it is sent is recomputed. A changed
    /// import policy applies to routes the peer sends from now on.
    pub async fn change_peer(&self, peer: IpAddr, setup: PeerSetup) {
        self.send(Command::ChangePeer(peer, Box::new(setup))).await
    }

    /// Removes a peer and every route learned from it.
    pub async fn remove_peer(&self, peer: IpAddr) {
        self.send(Command::RemovePeer(peer)).await
    }

    /// Originates a prefix (idempotent).
    pub async fn originate(&self, prefix: IpNetwork) {
        self.send(Command::Originate(prefix)).await
    }

    /// Originates `own.within` with `own`'s communities besides those of the prefix
    /// advertisement rules (idempotent; called again with other communities, it replaces them).
    pub async fn originate_with(&self, own: CommunityRule) {
        self.send(Command::OriginateWith(own)).await
    }

    /// Stops originating a prefix (idempotent).
    pub async fn withdraw(&self, prefix: IpNetwork) {
        self.send(Command::Withdraw(prefix)).await
    }

    /// Our own prefixes are all originated: End-of-RIB held by
    /// [`RibConfig::hold_end_of_rib`] may go (idempotent).
    pub async fn local_prefixes_loaded(&self) {
        self.local_prefixes_loaded_by(BLOCKS_SOURCE).await
    }

    /// The prefixes of `source` (one of [`RibConfig::local_sources`]) are all originated;
    /// End-of-RIB goes once every source has said so (idempotent).
    pub async fn local_prefixes_loaded_by(&self, source: &'static str) {
        self.send(Command::LocalLoaded(source)).await
    }

    /// Sends every learned best-path set again on the change stream (a
    /// consumer that keeps no copy of the table re-derives its routes from
    /// it, e.g. after the pools changed).
    pub async fn resend_learned(&self) {
        self.send(Command::ResendLearned).await
    }

    /// Changes our AS. The sessions must be re-made with it (the caller changes every peer's
    /// session config, which restarts it); routes learned meanwhile keep their graceful-restart
    /// treatment, and what each peer is sent is recomputed when it is changed or comes up again.
    pub async fn set_local_as(&self, local_as: u32) {
        self.send(Command::SetLocalAs(local_as)).await
    }

    /// Replaces the community rules of our own prefixes: each originated prefix carries the
    /// communities of every rule it falls within (re-announced when that changes).
    pub async fn set_communities(&self, rules: Vec<CommunityRule>) {
        self.send(Command::SetCommunities(rules)).await
    }

    /// Every route with its best/ECMP state and the reason each loser lost.
    pub async fn snapshot(&self) -> RibSnapshot {
        self.snapshot_matching(RouteQuery::default()).await
    }

    /// [`Self::snapshot`] of the routes `query` selects (the counters are the whole RIB's).
    pub async fn snapshot_matching(&self, query: RouteQuery) -> RibSnapshot {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Snapshot(query, tx)).await;
        rx.await.unwrap_or_default()
    }

    /// The RIB task's handle, once (for the agent's supervisor).
    pub fn take_task(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.task.lock().map(|mut t| t.take()).unwrap_or_default()
    }

    /// The counters only (cheap: for the status report and metrics).
    pub async fn stats(&self) -> RibStats {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Stats(tx)).await;
        rx.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod task_tests;
