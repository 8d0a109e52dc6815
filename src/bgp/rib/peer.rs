//! What the RIB keeps per peer: its setup and session (its Adj-RIB-In is
//! its paths in the Loc-RIB), its Adj-RIB-Out, the prefixes whose advertisement must be
//! recomputed (dirty), and the UPDATEs built but not yet taken by the
//! session (the send queue, at most one encoded batch).

use std::collections::VecDeque;

use crate::prefix_map::{PrefixMap, PrefixQueue};
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::IpNetwork;
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::PeerSetup;
use super::attrs::Attrs;
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

/// Prefixes to recompute, each once, in arrival order (compact: a peer may
/// have a million dirty prefixes after its session comes up).
#[derive(Debug, Default)]
pub struct Dirty {
    order: PrefixQueue,
    set: PrefixMap,
}

impl Dirty {
    pub fn mark(&mut self, net: IpNetwork) {
        if self.set.insert(net, 0).is_none() {
            self.order.push(net);
        }
    }

    pub fn pop(&mut self) -> Option<IpNetwork> {
        let net = self.order.pop()?;
        self.set.remove(&net);
        if self.order.is_empty() {
            // Drained: hold no memory (a reflector has a thousand peers' sets,
            // each as large as the table once, empty most of the time).
            self.clear();
        }
        Some(net)
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn clear(&mut self) {
        self.order = PrefixQueue::default();
        self.set = PrefixMap::default();
    }
}

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
    pub adj_out_paths: PrefixMap,
    pub dirty: Dirty,
    pub queue: VecDeque<Outbound>,
    /// A capacity reservation is in flight: wait for it before sending.
    pub waiting: bool,
    /// Families whose End-of-RIB follows once the dirty set is empty.
    pub end_of_rib: Vec<Family>,
    pub stale: Option<Stale>,
    pub stats: PeerRibStats,
}

impl RibPeer {
    /// Gives back the peer's ADD-PATH Adj-RIB-Out (before it is forgotten or dropped).
    pub fn release_sent(&mut self, sent: &mut SentSets) {
        for (_, id) in self.adj_out_paths.iter() {
            sent.release(id);
        }
        self.adj_out_paths = PrefixMap::default();
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
            adj_out_paths: PrefixMap::default(),
            dirty: Dirty::default(),
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
    pub fn reset_outbound(&mut self, sent: &mut SentSets) {
        self.adj_out.clear();
        self.release_sent(sent);
        self.dirty.clear();
        self.queue.clear();
        self.end_of_rib.clear();
        self.waiting = false;
        self.epoch += 1;
    }
}
