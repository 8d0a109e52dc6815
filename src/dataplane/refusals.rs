//! The destinations whose route the kernel refused, so that each refusal
//! is logged once when it starts (and once when it ends) rather than at
//! every retry: a route that cannot be written is retried at each resync,
//! and a log line per retry would bury everything else.

use super::route::RouteOp;
use ipnetwork::IpNetwork;
use std::collections::HashMap;
use std::io;

/// What the kernel said last per refused destination (its errno). A
/// destination stays until a change of it is accepted: at most one entry per
/// destination ever refused.
#[derive(Debug, Default)]
pub struct Refusals {
    by_dst: HashMap<IpNetwork, Option<i32>>,
}

impl Refusals {
    /// Records the kernel's refusal of `op`; logs it when it is new for that
    /// destination or the error changed. Returns whether it logged.
    pub fn refused(&mut self, op: &RouteOp, error: &io::Error) -> bool {
        let dst = op.route().dst;
        let errno = error.raw_os_error();
        if self.by_dst.insert(dst, errno) == Some(errno) {
            return false;
        }
        if matches!(op, RouteOp::Add(_)) && errno == Some(libc::EEXIST) {
            // A route of another owner (the kernel's on-link route for a
            // connected subnet a peer advertises, a static route) holds the
            // slot; tortie never replaces another's route.
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
        if self.by_dst.remove(dst).is_some() {
            tracing::info!(subsys = "dataplane", prefix = %dst, "route change accepted after being refused");
        }
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
        let add = RouteOp::Add(Route { dst, target: RouteTarget::Blackhole, mtu: None });
        let exists = io::Error::from_raw_os_error(libc::EEXIST);
        assert!(r.refused(&add, &exists));
        assert!(!r.refused(&add, &exists), "the same refusal again is not news");
        assert!(r.refused(&add, &io::Error::from_raw_os_error(libc::EINVAL)), "a different error is");
        r.accepted(&dst);
        assert!(r.by_dst.is_empty());
        assert!(r.refused(&add, &exists), "after it ended, a new refusal is news");
    }
}
