//! What the RIB keeps per peer: its setup and session (its Adj-RIB-In is
//! its paths in the Loc-RIB), its Adj-RIB-Out, its place in the shared feed of
//! prefixes whose advertisement must be recomputed, and the UPDATEs built but
//! not yet taken by the session (the send queue, at most one encoded batch).

use std::collections::VecDeque;

use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::PeerSetup;
use super::adj_out::PeerSent;
use super::attrs::Attrs;
use super::feed::{ChangeLog, PeerFeed};
use super::sent_sets::SentSets;
use super::snapshot::PeerRibStats;
use crate::bgp::packet::Family;
use crate::bgp::session::{Negotiated, Outbound};

/// An established session as the RIB sees it.
#[derive(Debug, Clone)]
pub struct Session {
    pub negotiated: Negotiated,
    pub router_id: Ipv4Addr,
    pub local_addr: Option<IpAddr>,
}

/// Routes of a peer kept stale (RFC 4724 helper, RFC 7313 refresh).
#[derive(Debug, Clone)]
pub struct Stale {
    pub families: Vec<Family>,
    /// When the stale routes go if the peer has not re-sent them.
    pub deadline: Instant,
}

/// A key of the Adj-RIB-In.
pub type InKey = (IpNetwork, u32);

/// One peer of the RIB.
#[derive(Debug)]
pub struct RibPeer {
    pub addr: IpAddr,
    pub setup: PeerSetup,
    pub outbound: mpsc::Sender<Outbound>,
    pub session: Option<Session>,
    /// The BGP identifier of the last session (for best path of stale routes).
    pub router_id: Ipv4Addr,
    /// Bumped at every session change, so that a capacity reservation made
    /// for an earlier session is not used for the current one.
    pub epoch: u64,
    /// Announced but refused by import (counted as received).
    pub rejected: FxHashSet<InKey>,
    /// What the peer was last sent per prefix (families without ADD-PATH send).
    pub adj_out: FxHashMap<IpNetwork, Attrs>,
    /// What the peer was last sent per prefix, path by path (families with
    /// ADD-PATH send): the id of the list in the RIB's [`SentSets`].
    pub adj_out_paths: PeerSent,
    /// The prefixes whose advertisement it has yet to recompute.
    pub feed: PeerFeed,
    pub queue: VecDeque<Outbound>,
    /// A capacity reservation is in flight: wait for it before sending.
    pub waiting: bool,
    /// Families whose End-of-RIB follows once its feed is caught up.
    pub end_of_rib: Vec<Family>,
    pub stale: Option<Stale>,
    pub stats: PeerRibStats,
}

impl RibPeer {
    /// Gives back the peer's ADD-PATH Adj-RIB-Out (before it is forgotten or dropped).
    pub fn release_sent(&mut self, sent: &mut SentSets) {
        sent.forget(&mut self.adj_out_paths);
    }

    pub fn new(addr: IpAddr, setup: PeerSetup, outbound: mpsc::Sender<Outbound>) -> Self {
        RibPeer {
            addr,
            setup,
            outbound,
            session: None,
            router_id: Ipv4Addr::UNSPECIFIED,
            epoch: 0,
            rejected: FxHashSet::default(),
            adj_out: FxHashMap::default(),
            adj_out_paths: PeerSent::default(),
            feed: PeerFeed::default(),
            queue: VecDeque::new(),
            waiting: false,
            end_of_rib: Vec::new(),
            stale: None,
            stats: PeerRibStats::default(),
        }
    }

    /// True when the session carries `family`.
    pub fn carries(&self, family: Family) -> bool {
        self.session.as_ref().is_some_and(|s| s.negotiated.families.contains(&family))
    }

    /// True when the session sends path identifiers for `family` (RFC 7911):
    /// the peer gets the whole ECMP set, not only the best path.
    pub fn sends_paths(&self, family: Family) -> bool {
        self.session.as_ref().is_some_and(|s| s.negotiated.add_path_send.contains(&family))
    }

    /// Prefixes advertised to the peer.
    pub fn advertised(&self) -> usize {
        self.adj_out.len() + self.adj_out_paths.len()
    }

    /// Forgets everything about the outbound side (session down or reset).
    pub fn reset_outbound(&mut self, sent: &mut SentSets, log: &ChangeLog) {
        self.adj_out.clear();
        self.release_sent(sent);
        self.feed.clear(log);
        self.queue.clear();
        self.end_of_rib.clear();
        self.waiting = false;
        self.epoch += 1;
    }
}
