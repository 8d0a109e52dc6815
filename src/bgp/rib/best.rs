//! Best path selection (RFC 4271 9.1.2) with the usual tie-breaks and ECMP
//! multipath sets. A pure function over candidate summaries, so every rule
//! is tested on its own.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use crate::bgp::packet::Origin;

/// What best path needs to know about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Originated by this speaker.
    pub local: bool,
    /// False when the next hop is unusable (unspecified, one of our own addresses).
    pub usable: bool,
    pub local_pref: u32,
    /// AS_PATH length, an AS_SET counting 1 (RFC 4271 9.1.2.2 a).
    pub as_path_len: usize,
    pub origin: Origin,
    /// MULTI_EXIT_DISC, 0 when absent (RFC 4271 9.1.2.2 c).
    pub med: u32,
    pub neighbor_as: u32,
    pub ebgp: bool,
    /// ORIGINATOR_ID when present, else the BGP identifier of the peer.
    pub router_id: Ipv4Addr,
    pub cluster_list_len: usize,
    /// The peer the path came from (unspecified for local paths).
    pub peer_addr: IpAddr,
}

/// Why a path is not (the) best, in decision order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossReason {
    NextHopUnusable,
    NotLocallyOriginated,
    LowerLocalPref,
    LongerAsPath,
    HigherOrigin,
    HigherMed,
    InternalNotExternal,
    /// Equal up to the router-id tie-breaks, but the multipath set is full.
    MultipathLimit,
    HigherRouterId,
    LongerClusterList,
    HigherPeerAddress,
}

impl LossReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LossReason::NextHopUnusable => "next-hop-unusable",
            LossReason::NotLocallyOriginated => "not-locally-originated",
            LossReason::LowerLocalPref => "lower-local-pref",
            LossReason::LongerAsPath => "longer-as-path",
            LossReason::HigherOrigin => "higher-origin",
            LossReason::HigherMed => "higher-med",
            LossReason::InternalNotExternal => "ibgp-not-ebgp",
            LossReason::MultipathLimit => "multipath-limit",
            LossReason::HigherRouterId => "higher-router-id",
            LossReason::LongerClusterList => "longer-cluster-list",
            LossReason::HigherPeerAddress => "higher-peer-address",
        }
    }
}

/// The outcome for one prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Index of the best path.
    pub best: Option<usize>,
    /// The multipath set, best first; empty when no path is usable.
    pub multipath: Vec<usize>,
    /// Per candidate: why it lost, `None` for members of the multipath set.
    pub lost: Vec<Option<LossReason>>,
}

/// Keeps the candidates with the smallest `key`; the others lose for `reason`.
fn keep_min<K: Ord>(
    alive: &mut Vec<usize>,
    lost: &mut [Option<LossReason>],
    reason: LossReason,
    key: impl Fn(usize) -> K,
) {
    let Some(min) = alive.iter().map(|&i| key(i)).min() else { return };
    alive.retain(|&i| {
        let keep = key(i) == min;
        if !keep {
            lost[i] = Some(reason);
        }
        keep
    });
}

/// The tie-breaks after multipath: router id, cluster list, peer address.
fn tie_break(c: &[Candidate], a: usize, b: usize) -> Ordering {
    let (x, y) = (&c[a], &c[b]);
    (u32::from(x.router_id), x.cluster_list_len, x.peer_addr).cmp(&(
        u32::from(y.router_id),
        y.cluster_list_len,
        y.peer_addr,
    ))
}

/// Runs the decision process over `candidates`; `max_paths` (at least 1)
/// bounds the multipath set.
pub fn decide(candidates: &[Candidate], max_paths: usize) -> Decision {
    let mut lost = vec![None; candidates.len()];
    let mut alive: Vec<usize> = Vec::with_capacity(candidates.len());
    for (i, c) in candidates.iter().enumerate() {
        if c.usable {
            alive.push(i);
        } else {
            lost[i] = Some(LossReason::NextHopUnusable);
        }
    }
    let c = candidates;
    // Our own origination beats anything learned (like a high "weight").
    keep_min(&mut alive, &mut lost, LossReason::NotLocallyOriginated, |i| !c[i].local);
    keep_min(&mut alive, &mut lost, LossReason::LowerLocalPref, |i| std::cmp::Reverse(c[i].local_pref));
    keep_min(&mut alive, &mut lost, LossReason::LongerAsPath, |i| c[i].as_path_len);
    keep_min(&mut alive, &mut lost, LossReason::HigherOrigin, |i| c[i].origin);
    // RFC 4271 9.1.2.2 c: MED is compared only among routes from the same
    // neighbouring AS, so a route loses only to one from its own neighbour.
    let beaten: Vec<usize> = alive
        .iter()
        .copied()
        .filter(|&i| alive.iter().any(|&j| c[j].neighbor_as == c[i].neighbor_as && c[j].med < c[i].med))
        .collect();
    for i in &beaten {
        lost[*i] = Some(LossReason::HigherMed);
    }
    alive.retain(|i| !beaten.contains(i));
    keep_min(&mut alive, &mut lost, LossReason::InternalNotExternal, |i| !c[i].ebgp);
    // What is left is equal for forwarding: the multipath set, ordered by
    // the remaining tie-breaks so that its head is the best path.
    alive.sort_by(|&a, &b| tie_break(c, a, b));
    for &i in alive.iter().skip(max_paths.max(1)) {
        lost[i] = Some(LossReason::MultipathLimit);
    }
    alive.truncate(max_paths.max(1));
    let best = alive.first().copied();
    Decision { best, multipath: alive, lost }
}

/// Why `loser` lost to `best` on the router-id tie-breaks (for display of
/// multipath members that are not the best).
pub fn tie_break_reason(best: &Candidate, other: &Candidate) -> Option<LossReason> {
    if best.router_id != other.router_id {
        Some(LossReason::HigherRouterId)
    } else if best.cluster_list_len != other.cluster_list_len {
        Some(LossReason::LongerClusterList)
    } else if best.peer_addr != other.peer_addr {
        Some(LossReason::HigherPeerAddress)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(peer: u8) -> Candidate {
        Candidate {
            local: false,
            usable: true,
            local_pref: 100,
            as_path_len: 1,
            origin: Origin::Igp,
            med: 0,
            neighbor_as: 65001,
            ebgp: true,
            router_id: Ipv4Addr::new(10, 0, 0, peer),
            cluster_list_len: 0,
            peer_addr: IpAddr::from([192, 0, 2, peer]),
        }
    }

    /// Asserts that path 0 wins over path 1 for `reason`, with one path allowed.
    fn wins(a: Candidate, b: Candidate, reason: LossReason) {
        let d = decide(&[a.clone(), b.clone()], 1);
        assert_eq!(d.best, Some(0), "{reason:?}");
        assert_eq!(d.lost[1], Some(reason));
        let d = decide(&[b, a], 1);
        assert_eq!(d.best, Some(1), "{reason:?} reversed");
        assert_eq!(d.lost[0], Some(reason));
    }

    #[test]
    fn unusable_next_hop_never_wins() {
        wins(path(2), Candidate { usable: false, ..path(1) }, LossReason::NextHopUnusable);
        assert_eq!(decide(&[Candidate { usable: false, ..path(1) }], 4).best, None);
    }

    #[test]
    fn local_origination_first() {
        wins(Candidate { local: true, as_path_len: 5, ..path(9) }, path(1), LossReason::NotLocallyOriginated);
    }

    #[test]
    fn highest_local_pref() {
        wins(Candidate { local_pref: 200, as_path_len: 9, ..path(2) }, path(1), LossReason::LowerLocalPref);
    }

    #[test]
    fn shortest_as_path() {
        wins(
            Candidate { origin: Origin::Incomplete, ..path(2) },
            Candidate { as_path_len: 2, ..path(1) },
            LossReason::LongerAsPath,
        );
    }

    #[test]
    fn lowest_origin() {
        wins(Candidate { med: 50, ..path(2) }, Candidate { origin: Origin::Egp, ..path(1) }, LossReason::HigherOrigin);
    }

    #[test]
    fn lowest_med_from_the_same_neighbour_as() {
        wins(Candidate { med: 5, ..path(2) }, Candidate { med: 10, ..path(1) }, LossReason::HigherMed);
    }

    #[test]
    fn med_is_not_compared_across_neighbour_ases() {
        let a = Candidate { med: 5, ..path(2) };
        let b = Candidate { med: 10, neighbor_as: 65009, ..path(1) };
        let d = decide(&[a, b], 1);
        // Both survive MED; the router id decides.
        assert_eq!(d.best, Some(1));
        assert_eq!(d.lost[0], Some(LossReason::MultipathLimit));
    }

    #[test]
    fn external_over_internal() {
        wins(path(2), Candidate { ebgp: false, ..path(1) }, LossReason::InternalNotExternal);
    }

    #[test]
    fn lowest_router_id_then_cluster_list_then_peer_address() {
        let d = decide(&[path(2), path(1)], 1);
        assert_eq!((d.best, d.lost[0]), (Some(1), Some(LossReason::MultipathLimit)));
        assert_eq!(tie_break_reason(&path(1), &path(2)), Some(LossReason::HigherRouterId));
        let a = Candidate { router_id: Ipv4Addr::new(1, 1, 1, 1), ..path(2) };
        let b = Candidate { router_id: Ipv4Addr::new(1, 1, 1, 1), cluster_list_len: 1, ..path(1) };
        assert_eq!(decide(&[b.clone(), a.clone()], 1).best, Some(1));
        assert_eq!(tie_break_reason(&a, &b), Some(LossReason::LongerClusterList));
        let b = Candidate { router_id: Ipv4Addr::new(1, 1, 1, 1), ..path(1) };
        assert_eq!(decide(&[a.clone(), b.clone()], 1).best, Some(1));
        assert_eq!(tie_break_reason(&b, &a), Some(LossReason::HigherPeerAddress));
    }

    #[test]
    fn ecmp_set_is_the_paths_equal_before_router_id_up_to_max_paths() {
        let paths = [path(3), path(1), Candidate { as_path_len: 2, ..path(0) }, path(2)];
        let d = decide(&paths, 8);
        assert_eq!(d.multipath, vec![1, 3, 0]);
        assert_eq!(d.best, Some(1));
        assert_eq!(d.lost, vec![None, None, Some(LossReason::LongerAsPath), None]);
        let d = decide(&paths, 2);
        assert_eq!(d.multipath, vec![1, 3]);
        assert_eq!(d.lost[0], Some(LossReason::MultipathLimit));
    }
}
