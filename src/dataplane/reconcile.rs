//! Reconciliation as a pure function: the desired routes and the kernel's
//! routes of our protocol in, the operations that make them equal out.
//! Calico Felix's recipe — dump, diff, replace — without I/O. The
//! programmer diffs a dump against its compact table in place
//! (`table.rs`, which cannot afford a second copy of a million routes);
//! this is the plain statement of what that must produce, and a property
//! test there checks it does.

use super::route::{DesiredRoute, Route, RouteOp};
use ipnetwork::IpNetwork;
use rustc_hash::FxHashMap as HashMap;

/// The operations that turn `kernel` (our routes as dumped) into `desired`.
///
/// - wanted and absent → `Add`;
/// - wanted and present with another target or MTU → `Replace` (one atomic
///   request; the prefix never disappears, so traffic never sees a gap);
/// - present but not wanted → `Delete`;
/// - present twice for one prefix (e.g. a stray duplicate with another
///   metric) → the extra copies are deleted.
///
/// `kernel` must already be filtered to our protocol and table: this
/// function never sees, and so can never touch, anyone else's routes.
pub fn diff(desired: &HashMap<IpNetwork, DesiredRoute>, kernel: &[Route]) -> Vec<RouteOp> {
    let mut ops = Vec::new();
    let mut seen: HashMap<IpNetwork, bool> = HashMap::with_capacity_and_hasher(kernel.len(), Default::default());
    for k in kernel {
        let already = seen.get(&k.dst).copied();
        match (desired.get(&k.dst), already) {
            (None, _) => ops.push(RouteOp::Delete(k.clone())),
            (Some(_), Some(_)) => ops.push(RouteOp::Delete(k.clone())),
            (Some(d), None) => {
                if !d.route.satisfied_by(k) {
                    ops.push(RouteOp::Replace(d.route.clone()));
                }
                seen.insert(k.dst, true);
            }
        }
    }
    for (dst, d) in desired {
        if !seen.contains_key(dst) {
            ops.push(RouteOp::Add(d.route.clone()));
        }
    }
    // Deletes of duplicates must not remove the copy we keep: a delete
    // names the exact route (target included), which the kernel matches.
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::route::{NextHop, RouteKind, RouteTarget};

    fn route(dst: &str, target: RouteTarget) -> Route {
        Route { dst: dst.parse().unwrap(), target, mtu: None }
    }
    fn via(gw: &str) -> RouteTarget {
        RouteTarget::Via(NextHop { gateway: gw.parse().unwrap(), ifindex: None, onlink: false })
    }
    fn desired(routes: &[Route]) -> HashMap<IpNetwork, DesiredRoute> {
        routes.iter().map(|r| (r.dst, DesiredRoute { route: r.clone(), kind: RouteKind::RemoteDirect })).collect()
    }

    #[test]
    fn nothing_changes_when_kernel_matches() {
        let rs = [route("10.0.1.0/26", via("192.168.0.2")), route("10.0.0.0/26", RouteTarget::Blackhole)];
        assert!(diff(&desired(&rs), &rs).is_empty());
    }

    #[test]
    fn missing_routes_are_added_and_unwanted_ones_deleted() {
        let want = [route("10.0.1.0/26", via("192.168.0.2"))];
        let have = [route("10.0.9.0/26", via("192.168.0.9"))];
        let ops = diff(&desired(&want), &have);
        assert_eq!(ops, vec![RouteOp::Delete(have[0].clone()), RouteOp::Add(want[0].clone())]);
    }

    #[test]
    fn a_changed_next_hop_is_replaced_never_deleted_then_added() {
        let want = [route("10.0.1.0/26", via("192.168.0.3"))];
        let have = [route("10.0.1.0/26", via("192.168.0.2"))];
        assert_eq!(diff(&desired(&want), &have), vec![RouteOp::Replace(want[0].clone())]);
    }

    #[test]
    fn an_mtu_change_is_a_replace() {
        let mut want = route("10.0.1.0/26", via("192.168.0.3"));
        let have = want.clone();
        want.mtu = Some(1480);
        assert_eq!(diff(&desired(std::slice::from_ref(&want)), &[have]), vec![RouteOp::Replace(want)]);
    }

    #[test]
    fn duplicate_kernel_entries_for_one_prefix_are_reduced_to_one() {
        let want = [route("10.0.1.0/26", via("192.168.0.2"))];
        let have = [route("10.0.1.0/26", via("192.168.0.2")), route("10.0.1.0/26", via("192.168.0.7"))];
        assert_eq!(diff(&desired(&want), &have), vec![RouteOp::Delete(have[1].clone())]);
    }
}
