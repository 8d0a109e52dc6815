//! The Loc-RIB: per prefix the candidate paths (post-policy Adj-RIB-In
//! entries of every peer, and our own origination), kept ordered so that
//! the multipath set comes first and its head is the best path.

use std::net::IpAddr;
use std::sync::Arc;

use ipnetwork::IpNetwork;
use rustc_hash::FxHashMap;

use super::attrs::Attrs;
use super::best::{Candidate, Decision, decide};

/// One candidate path of a prefix.
#[derive(Debug, Clone)]
pub struct Path {
    /// The peer it came from; `None` for our own origination.
    pub source: Option<IpAddr>,
    /// ADD-PATH path identifier (0 without ADD-PATH).
    pub path_id: u32,
    pub attrs: Attrs,
    /// Kept for a restarting peer until it re-announces it (RFC 4724).
    pub stale: bool,
}

impl Path {
    fn same_key(&self, source: Option<IpAddr>, path_id: u32) -> bool {
        self.source == source && self.path_id == path_id
    }
}

/// The paths of one prefix; `paths[..selected]` is the multipath set.
#[derive(Debug, Clone, Default)]
pub struct Dest {
    pub paths: Vec<Path>,
    pub selected: usize,
}

impl Dest {
    /// The multipath set, best first.
    pub fn multipath(&self) -> &[Path] {
        self.paths.get(..self.selected).unwrap_or_default()
    }

    pub fn best(&self) -> Option<&Path> {
        self.multipath().first()
    }

    /// Inserts or replaces the path with the same source and path id;
    /// false when nothing changed.
    pub fn upsert(&mut self, path: Path) -> bool {
        match self.paths.iter_mut().find(|p| p.same_key(path.source, path.path_id)) {
            Some(existing) => {
                if Arc::ptr_eq(&existing.attrs, &path.attrs) && existing.stale == path.stale {
                    return false;
                }
                *existing = path;
            }
            None => self.paths.push(path),
        }
        true
    }

    /// Removes a path; the removed one if it was there.
    pub fn remove(&mut self, source: Option<IpAddr>, path_id: u32) -> Option<Path> {
        let index = self.paths.iter().position(|p| p.same_key(source, path_id))?;
        if index < self.selected {
            self.selected -= 1;
        }
        Some(self.paths.remove(index))
    }

    /// Runs best path and reorders the paths: multipath set first.
    pub fn select(&mut self, max_paths: usize, candidate: impl Fn(&Path) -> Candidate) -> Decision {
        let candidates: Vec<Candidate> = self.paths.iter().map(&candidate).collect();
        let decision = decide(&candidates, max_paths);
        let mut order: Vec<usize> = decision.multipath.clone();
        order.extend((0..self.paths.len()).filter(|i| !decision.multipath.contains(i)));
        if order.iter().enumerate().any(|(at, &i)| at != i) {
            let mut old: Vec<Option<Path>> = std::mem::take(&mut self.paths).into_iter().map(Some).collect();
            self.paths = order.iter().filter_map(|&i| old.get_mut(i).and_then(Option::take)).collect();
        }
        self.selected = decision.multipath.len();
        decision
    }
}

/// Every prefix we know a path for.
#[derive(Debug, Default)]
pub struct LocRib {
    pub routes: FxHashMap<IpNetwork, Dest>,
}

impl LocRib {
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn paths(&self) -> usize {
        self.routes.values().map(|d| d.paths.len()).sum()
    }
}
