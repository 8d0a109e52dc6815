//! The destinations whose route the kernel refused, so that each refusal
//! is logged once when it starts (and once when it ends) rather than at
//! every retry: a route that cannot be written is retried at each resync,
//! and a log line per retry would bury everything else.
//!
//! One refusal is not a failure: an add refused with EEXIST means a route
//! of another owner holds the destination (tortie replaces its own routes,
//! never adds over them) — the on-link route of a connected subnet that a
//! ToR advertises back, a static route. tortie never replaces another
//! owner's route, so its own is simply not installed ("shadowed").

use super::route::RouteOp;
use ipnetwork::IpNetwork;
use std::collections::HashMap;
use std::io;

/// What the kernel said last about one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Refusal {
    errno: Option<i32>,
    shadowed: bool,
}

/// The refused destinations. One stays until a change of it is accepted:
/// at most one entry per destination ever refused.
#[derive(Debug, Default)]
pub struct Refusals {
    by_dst: HashMap<IpNetwork, Refusal>,
    /// How many entries are shadowed.
    shadowed: usize,
}

/// Whether the kernel refused `op` because another owner's route holds its destination.
pub fn is_shadowed(op: &RouteOp, error: &io::Error) -> bool {
    matches!(op, RouteOp::Add(_)) && error.raw_os_error() == Some(libc::EEXIST)
}

impl Refusals {
    /// Records the kernel's refusal of `op`; logs it when it is new for that
    /// destination or the error changed. Returns whether it logged.
    pub fn refused(&mut self, op: &RouteOp, error: &io::Error) -> bool {
        let dst = op.route().dst;
        let now = Refusal { errno: error.raw_os_error(), shadowed: is_shadowed(op, error) };
        let before = self.by_dst.insert(dst, now);
        self.shadowed += usize::from(now.shadowed);
        self.shadowed -= usize::from(before.is_some_and(|b| b.shadowed));
        if before == Some(now) {
            return false;
        }
        if now.shadowed {
            tracing::info!(subsys = "dataplane", prefix = %dst, "a route tortie does not own holds this destination: tortie's is not installed");
        } else {
            tracing::warn!(subsys = "dataplane", op = op.name(), prefix = %dst, error = %error, "kernel refused a route change; retried at each resync");
        }
        true
    }

    /// Records that a change of `dst` was accepted; logs the end of a refusal.
    pub fn accepted(&mut self, dst: &IpNetwork) {
        if self.by_dst.is_empty() {
            return;
        }
        if let Some(before) = self.by_dst.remove(dst) {
            self.shadowed -= usize::from(before.shadowed);
            tracing::info!(subsys = "dataplane", prefix = %dst, "route change accepted after being refused");
        }
    }

    /// Destinations whose route is not installed because another owner's holds them.
    pub fn shadowed(&self) -> usize {
        self.shadowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::route::{Route, RouteTarget};

    #[test]
    fn a_refusal_is_reported_once_until_it_changes_or_ends() {
        let mut r = Refusals::default();
        let dst: IpNetwork = "10.20.2.0/24".parse().unwrap();
        let route = Route { dst, target: RouteTarget::Blackhole, mtu: None };
        let (add, replace) = (RouteOp::Add(route.clone()), RouteOp::Replace(route));
        let exists = io::Error::from_raw_os_error(libc::EEXIST);
        assert!(r.refused(&add, &exists));
        assert!(!r.refused(&add, &exists), "the same refusal again is not news");
        assert_eq!(r.shadowed(), 1);
        assert!(r.refused(&add, &io::Error::from_raw_os_error(libc::EINVAL)), "a different error is");
        assert_eq!(r.shadowed(), 0);
        assert!(r.refused(&replace, &exists), "only an add is shadowed");
        assert_eq!(r.shadowed(), 0);
        r.accepted(&dst);
        assert!(r.by_dst.is_empty());
        assert!(r.refused(&add, &exists), "after it ended, a new refusal is news");
        r.accepted(&dst);
        assert_eq!(r.shadowed(), 0);
    }
}
