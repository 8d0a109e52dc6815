//! ADD-PATH send (RFC 7911): toward a peer that receives path identifiers,
//! every path of a prefix's ECMP set goes out under its own identifier.
//!
//! Identifiers are ours, per peer and prefix: a Loc-RIB path (source peer and
//! the source's own path id) keeps the identifier it was first sent under for
//! as long as it stays in what the peer is sent, so adding or removing one path
//! announces or withdraws that identifier only. A new path takes the smallest
//! identifier (from 1) not in use for the prefix, never one withdrawn in the
//! same step, so a withdrawal and an announcement can never be confused.

use std::net::IpAddr;
use std::sync::Arc;

use super::attrs::Attrs;

/// One path as sent to an ADD-PATH peer.
#[derive(Debug, Clone)]
pub struct SentPath {
    /// The path identifier we gave it on the wire.
    pub id: u32,
    /// The Loc-RIB path it stands for: source peer (`None` = ours) and its path id.
    pub source: Option<IpAddr>,
    pub source_id: u32,
    /// What was sent; `None` after a route refresh: send again under the same id.
    pub attrs: Option<Attrs>,
}

/// One path the peer should have now: its Loc-RIB key and exported attributes.
#[derive(Debug, Clone)]
pub struct WantedPath {
    pub source: Option<IpAddr>,
    pub source_id: u32,
    pub attrs: Attrs,
}

/// What to send for one prefix.
#[derive(Debug, Default)]
pub struct PathDiff {
    /// The peer's Adj-RIB-Out for the prefix afterwards (empty: forget the prefix).
    pub sent: Vec<SentPath>,
    /// Identifiers to announce, with their attributes.
    pub announce: Vec<(u32, Attrs)>,
    /// Identifiers to withdraw.
    pub withdraw: Vec<u32>,
}

/// Turns what the peer was sent (`before`) and what it should have (`want`)
/// into announcements and withdrawals of single path identifiers.
pub fn diff(before: &[SentPath], want: Vec<WantedPath>) -> PathDiff {
    let mut out = PathDiff::default();
    let mut matched = vec![false; before.len()];
    let mut fresh = Vec::new();
    for w in want {
        match before.iter().position(|s| s.source == w.source && s.source_id == w.source_id) {
            Some(i) if !matched[i] => {
                matched[i] = true;
                let old = &before[i];
                if !old.attrs.as_ref().is_some_and(|a| Arc::ptr_eq(a, &w.attrs)) {
                    out.announce.push((old.id, w.attrs.clone()));
                }
                out.sent.push(SentPath { attrs: Some(w.attrs), ..old.clone() });
            }
            _ => fresh.push(w),
        }
    }
    for (s, kept) in before.iter().zip(&matched) {
        if !kept {
            out.withdraw.push(s.id);
        }
    }
    // Ids in use: every one sent before (kept or withdrawn now) and those given out here.
    let mut used: Vec<u32> = before.iter().map(|s| s.id).collect();
    for w in fresh {
        let id = (1..=u32::MAX).find(|id| !used.contains(id)).unwrap_or(u32::MAX);
        used.push(id);
        out.announce.push((id, w.attrs.clone()));
        out.sent.push(SentPath { id, source: w.source, source_id: w.source_id, attrs: Some(w.attrs) });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::rib::attrs::PathAttrs;

    fn attrs(nh: &str) -> Attrs {
        let mut a = PathAttrs::local();
        a.next_hop = Some(nh.parse().unwrap());
        Arc::new(a)
    }

    fn want(peer: u8, a: &Attrs) -> WantedPath {
        WantedPath { source: Some(IpAddr::from([192, 0, 2, peer])), source_id: 0, attrs: a.clone() }
    }

    #[test]
    fn ids_stay_with_their_paths_and_are_not_reused_in_one_step() {
        let (a, b, c) = (attrs("192.0.2.2"), attrs("192.0.2.3"), attrs("192.0.2.4"));
        let first = diff(&[], vec![want(2, &a), want(3, &b)]);
        let ids: Vec<u32> = first.announce.iter().map(|(id, _)| *id).collect();
        assert_eq!((ids, first.withdraw.len()), (vec![1, 2], 0));
        // The best path goes, a new one comes: only its id is withdrawn, the
        // survivor keeps id 2 and is not resent, the newcomer takes a new id.
        let second = diff(&first.sent, vec![want(3, &b), want(4, &c)]);
        assert_eq!(second.withdraw, vec![1]);
        assert_eq!(second.announce.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![3]);
        // Changed attributes: the same id again.
        let b2 = attrs("192.0.2.33");
        let third = diff(&second.sent, vec![want(3, &b2), want(4, &c)]);
        assert_eq!(third.announce.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![2]);
        assert!(third.withdraw.is_empty());
        // Nothing wanted: every id withdrawn, nothing kept.
        let last = diff(&third.sent, vec![]);
        assert_eq!((last.withdraw, last.sent.len()), (vec![2, 3], 0));
    }

    #[test]
    fn after_a_refresh_everything_goes_again_under_the_same_ids() {
        let (a, b) = (attrs("192.0.2.2"), attrs("192.0.2.3"));
        let mut sent = diff(&[], vec![want(2, &a), want(3, &b)]).sent;
        for s in &mut sent {
            s.attrs = None;
        }
        let again = diff(&sent, vec![want(3, &b), want(2, &a)]);
        let mut ids: Vec<u32> = again.announce.iter().map(|(id, _)| *id).collect();
        ids.sort();
        assert_eq!((ids, again.withdraw.len()), (vec![1, 2], 0));
    }
}
