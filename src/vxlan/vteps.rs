//! The remote VTEPs of the device and the pure diff between the entries
//! they need and the entries the kernel has on the device.
//!
//! Per VTEP: a permanent neighbour entry (its tunnel address → its MAC),
//! so the kernel never ARPs through the tunnel, and a permanent FDB entry
//! (its MAC → its underlay address), so the frame is sent to the right
//! node. An entry already as wanted yields no operation.

use rustc_hash::{FxHashMap, FxHashSet};
use std::net::IpAddr;

/// A remote node's VXLAN endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vtep {
    /// Its underlay address: the outer destination.
    pub underlay: IpAddr,
    /// Its tunnel address: the next hop of routes to its blocks.
    pub tunnel: IpAddr,
    /// Its device's MAC.
    pub mac: [u8; 6],
}

/// An entry on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entry {
    /// Tunnel address → MAC (a delete names the address only).
    Neighbour { ip: IpAddr, mac: [u8; 6] },
    /// MAC → underlay address (a delete removes the MAC's entry with
    /// every destination it has; `dst` is then what the kernel had).
    Fdb { mac: [u8; 6], dst: Option<IpAddr> },
}

/// One change to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Add(Entry),
    Replace(Entry),
    Delete(Entry),
}

/// A neighbour's state, as far as the plan cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighbourState {
    Permanent,
    /// Made by the kernel for multicast and broadcast destinations (IPv6
    /// MLD and neighbour discovery create them on every device); never a
    /// tunnel entry, and back as soon as deleted, so left alone.
    NoArp,
    /// Learnt or being resolved (reachable, stale, incomplete, failed …).
    Dynamic,
}

/// A neighbour entry on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelNeighbour {
    pub ip: IpAddr,
    /// None while unresolved.
    pub mac: Option<[u8; 6]>,
    pub state: NeighbourState,
}

/// One destination of an FDB entry of the device itself (NTF_SELF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelFdb {
    pub mac: [u8; 6],
    /// None for an entry without a destination address.
    pub dst: Option<IpAddr>,
    pub permanent: bool,
    /// The destination names its own port, VNI or interface (we never do).
    pub overrides: bool,
}

/// The entries on our device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelEntries {
    pub neighbours: Vec<KernelNeighbour>,
    pub fdb: Vec<KernelFdb>,
}

/// The operations that turn `kernel` into exactly the entries `desired`
/// needs. When two VTEPs claim the same tunnel address (or MAC), the first
/// one's entry is kept.
pub fn plan(desired: &[Vtep], kernel: &KernelEntries) -> Vec<Op> {
    let mut ops = Vec::new();

    let have: FxHashMap<IpAddr, &KernelNeighbour> = kernel.neighbours.iter().map(|n| (n.ip, n)).collect();
    let mut wanted_ips = FxHashSet::default();
    for v in desired {
        if !wanted_ips.insert(v.tunnel) {
            continue;
        }
        let entry = Entry::Neighbour { ip: v.tunnel, mac: v.mac };
        match have.get(&v.tunnel) {
            None => ops.push(Op::Add(entry)),
            Some(n) if n.state == NeighbourState::Permanent && n.mac == Some(v.mac) => {}
            Some(_) => ops.push(Op::Replace(entry)),
        }
    }
    for n in &kernel.neighbours {
        if !wanted_ips.contains(&n.ip) && n.state != NeighbourState::NoArp {
            ops.push(Op::Delete(Entry::Neighbour { ip: n.ip, mac: n.mac.unwrap_or_default() }));
        }
    }

    let mut by_mac: FxHashMap<[u8; 6], Vec<&KernelFdb>> = FxHashMap::default();
    for f in &kernel.fdb {
        by_mac.entry(f.mac).or_default().push(f);
    }
    let mut wanted_macs = FxHashSet::default();
    for v in desired {
        if !wanted_macs.insert(v.mac) {
            continue;
        }
        let entry = Entry::Fdb { mac: v.mac, dst: Some(v.underlay) };
        match by_mac.get(&v.mac).map(Vec::as_slice) {
            None | Some([]) => ops.push(Op::Add(entry)),
            Some([f]) if f.dst == Some(v.underlay) && f.permanent && !f.overrides => {}
            // A replace rewrites the entry's one destination in place.
            Some([_]) => ops.push(Op::Replace(entry)),
            // Several destinations (flooded to all): start afresh.
            Some(several) => {
                ops.push(Op::Delete(Entry::Fdb { mac: v.mac, dst: several[0].dst }));
                ops.push(Op::Add(entry));
            }
        }
    }
    let mut deleted = FxHashSet::default();
    for f in &kernel.fdb {
        if !wanted_macs.contains(&f.mac) && deleted.insert(f.mac) {
            ops.push(Op::Delete(Entry::Fdb { mac: f.mac, dst: f.dst }));
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vtep(n: u8) -> Vtep {
        Vtep {
            underlay: IpAddr::from([10, 0, 0, n]),
            tunnel: IpAddr::from([10, 244, n, 0]),
            mac: [0x66, 0, 0, 0, 0, n],
        }
    }

    /// The kernel's entries for `vteps`, exactly as `plan` wants them.
    fn kernel_of(vteps: &[Vtep]) -> KernelEntries {
        KernelEntries {
            neighbours: vteps
                .iter()
                .map(|v| KernelNeighbour { ip: v.tunnel, mac: Some(v.mac), state: NeighbourState::Permanent })
                .collect(),
            fdb: vteps
                .iter()
                .map(|v| KernelFdb { mac: v.mac, dst: Some(v.underlay), permanent: true, overrides: false })
                .collect(),
        }
    }

    fn neighbour(v: &Vtep) -> Entry {
        Entry::Neighbour { ip: v.tunnel, mac: v.mac }
    }

    fn fdb(v: &Vtep) -> Entry {
        Entry::Fdb { mac: v.mac, dst: Some(v.underlay) }
    }

    #[test]
    fn an_empty_device_gets_a_neighbour_and_an_fdb_entry_per_vtep() {
        let desired = [vtep(1), vtep(2)];
        let ops = plan(&desired, &KernelEntries::default());
        assert_eq!(
            ops,
            vec![
                Op::Add(neighbour(&desired[0])),
                Op::Add(neighbour(&desired[1])),
                Op::Add(fdb(&desired[0])),
                Op::Add(fdb(&desired[1])),
            ]
        );
    }

    #[test]
    fn a_kernel_that_already_matches_needs_nothing() {
        let desired = [vtep(1), vtep(2), vtep(3)];
        assert_eq!(plan(&desired, &kernel_of(&desired)), vec![]);
    }

    #[test]
    fn a_moved_underlay_replaces_the_fdb_entry_only() {
        let old = vtep(1);
        let moved = Vtep { underlay: IpAddr::from([10, 0, 1, 1]), ..old };
        assert_eq!(plan(&[moved], &kernel_of(&[old])), vec![Op::Replace(fdb(&moved))]);
    }

    #[test]
    fn a_new_mac_replaces_the_neighbour_and_swaps_the_fdb_entry() {
        let old = vtep(1);
        let new = Vtep { mac: [0x66, 0, 0, 0, 9, 9], ..old };
        assert_eq!(
            plan(&[new], &kernel_of(&[old])),
            vec![
                Op::Replace(neighbour(&new)),
                Op::Add(fdb(&new)),
                Op::Delete(Entry::Fdb { mac: old.mac, dst: Some(old.underlay) })
            ]
        );
    }

    #[test]
    fn entries_not_permanent_or_with_overrides_are_replaced() {
        let v = vtep(1);
        let mut kernel = kernel_of(&[v]);
        kernel.neighbours[0].state = NeighbourState::Dynamic;
        kernel.fdb[0].permanent = false;
        assert_eq!(plan(&[v], &kernel), vec![Op::Replace(neighbour(&v)), Op::Replace(fdb(&v))]);
        let mut kernel = kernel_of(&[v]);
        kernel.neighbours[0].mac = None;
        kernel.fdb[0].overrides = true;
        assert_eq!(plan(&[v], &kernel), vec![Op::Replace(neighbour(&v)), Op::Replace(fdb(&v))]);
    }

    #[test]
    fn unwanted_entries_are_deleted_but_kernel_made_multicast_neighbours_stay() {
        let gone = vtep(2);
        let mut kernel = kernel_of(&[vtep(1), gone]);
        kernel.neighbours.push(KernelNeighbour {
            ip: "ff02::16".parse().unwrap(),
            mac: Some([0x33, 0x33, 0, 0, 0, 0x16]),
            state: NeighbourState::NoArp,
        });
        assert_eq!(plan(&[vtep(1)], &kernel), vec![Op::Delete(neighbour(&gone)), Op::Delete(fdb(&gone))]);
    }

    #[test]
    fn an_fdb_entry_with_several_destinations_is_deleted_and_added_afresh() {
        let v = vtep(1);
        let mut kernel = kernel_of(&[v]);
        kernel.fdb.push(KernelFdb {
            mac: v.mac,
            dst: Some(IpAddr::from([10, 0, 0, 99])),
            permanent: true,
            overrides: false,
        });
        kernel.fdb.push(KernelFdb { mac: [1, 2, 3, 4, 5, 6], dst: None, permanent: true, overrides: false });
        kernel.fdb.push(KernelFdb {
            mac: [1, 2, 3, 4, 5, 6],
            dst: Some(IpAddr::from([10, 0, 0, 98])),
            permanent: true,
            overrides: false,
        });
        assert_eq!(
            plan(&[v], &kernel),
            vec![Op::Delete(fdb(&v)), Op::Add(fdb(&v)), Op::Delete(Entry::Fdb { mac: [1, 2, 3, 4, 5, 6], dst: None }),]
        );
    }

    #[test]
    fn vteps_claiming_the_same_address_or_mac_keep_the_first() {
        let first = vtep(1);
        let same_tunnel = Vtep { mac: [0x66, 0, 0, 0, 7, 7], underlay: IpAddr::from([10, 0, 0, 7]), ..first };
        let same_mac = Vtep { tunnel: IpAddr::from([10, 244, 8, 0]), underlay: IpAddr::from([10, 0, 0, 8]), ..first };
        let ops = plan(&[first, same_tunnel, same_mac], &KernelEntries::default());
        assert_eq!(
            ops,
            vec![
                Op::Add(neighbour(&first)),
                Op::Add(neighbour(&same_mac)),
                Op::Add(fdb(&first)),
                Op::Add(fdb(&same_tunnel)),
            ]
        );
    }

    #[test]
    fn ipv6_vteps_plan_like_ipv4_ones() {
        let v = Vtep {
            underlay: "fd00::2".parse().unwrap(),
            tunnel: "fd10::2:0".parse().unwrap(),
            mac: [0x66, 0, 0, 0, 0, 2],
        };
        assert_eq!(plan(&[v], &KernelEntries::default()), vec![Op::Add(neighbour(&v)), Op::Add(fdb(&v))]);
        assert_eq!(plan(&[v], &kernel_of(&[v])), vec![]);
    }
}
