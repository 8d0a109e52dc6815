//! Reading the device's neighbour and FDB entries and applying a
//! [`plan`]: only entries on our device (and, for the FDB, the device's
//! own entries — NTF_SELF, not a bridge's) are read, so only those are
//! ever changed.

use super::vteps::{Entry, KernelEntries, KernelFdb, KernelNeighbour, NeighbourState, Op, Vtep, plan};
use crate::dataplane::netlink::RouteSocket;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState as Nud,
};
use netlink_packet_route::route::RouteType;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a [`reconcile`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileStats {
    pub added: usize,
    pub replaced: usize,
    pub deleted: usize,
}

impl ReconcileStats {
    /// Operations written in all.
    pub fn total(&self) -> usize {
        self.added + self.replaced + self.deleted
    }
}

fn mac_of(bytes: &[u8]) -> Option<[u8; 6]> {
    bytes.try_into().ok()
}

fn ip_of(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        NeighbourAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        // A bridge-family (FDB) dump leaves the address raw.
        NeighbourAddress::Other(raw) => match raw.len() {
            4 => <[u8; 4]>::try_from(raw.as_slice()).ok().map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            16 => <[u8; 16]>::try_from(raw.as_slice()).ok().map(|b| IpAddr::V6(Ipv6Addr::from(b))),
            _ => None,
        },
        _ => None,
    }
}

fn neighbour_state(state: Nud) -> NeighbourState {
    match state {
        Nud::Permanent => NeighbourState::Permanent,
        Nud::Noarp => NeighbourState::NoArp,
        _ => NeighbourState::Dynamic,
    }
}

/// The neighbour and FDB entries on device `ifindex`.
pub fn read_entries(socket: &mut RouteSocket, ifindex: u32) -> io::Result<KernelEntries> {
    let mut entries = KernelEntries::default();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut request = NeighbourMessage::default();
        request.header.family = family;
        // Neighbour dumps filter by NDA_IFINDEX (the header's must be 0).
        request.attributes.push(NeighbourAttribute::IfIndex(ifindex));
        for m in socket.dump_messages(RouteNetlinkMessage::GetNeighbour(request))? {
            let RouteNetlinkMessage::NewNeighbour(n) = m else { continue };
            if n.header.ifindex != ifindex {
                continue;
            }
            let mut ip = None;
            let mut mac = None;
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::Destination(d) => ip = ip_of(d),
                    NeighbourAttribute::LinkLayerAddress(l) => mac = mac_of(l),
                    _ => {}
                }
            }
            if let Some(ip) = ip {
                entries.neighbours.push(KernelNeighbour { ip, mac, state: neighbour_state(n.header.state) });
            }
        }
    }
    let mut request = NeighbourMessage::default();
    request.header.family = AddressFamily::Bridge;
    // FDB dumps filter by the header's interface.
    request.header.ifindex = ifindex;
    for m in socket.dump_messages(RouteNetlinkMessage::GetNeighbour(request))? {
        let RouteNetlinkMessage::NewNeighbour(n) = m else { continue };
        if n.header.ifindex != ifindex || !n.header.flags.contains(NeighbourFlags::Own) {
            continue;
        }
        let mut dst = None;
        let mut mac = None;
        let mut overrides = false;
        for a in &n.attributes {
            match a {
                NeighbourAttribute::Destination(d) => dst = ip_of(d),
                NeighbourAttribute::LinkLayerAddress(l) => mac = mac_of(l),
                NeighbourAttribute::Port(_) | NeighbourAttribute::Vni(_) | NeighbourAttribute::IfIndex(_) => {
                    overrides = true
                }
                _ => {}
            }
        }
        if let Some(mac) = mac {
            entries.fdb.push(KernelFdb { mac, dst, permanent: n.header.state == Nud::Permanent, overrides });
        }
    }
    Ok(entries)
}

fn family_of(ip: &IpAddr) -> AddressFamily {
    if ip.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 }
}

/// The request writing `entry` on `ifindex`, or deleting it (`delete`: the
/// request then names only what identifies the entry).
fn message(ifindex: u32, entry: &Entry, delete: bool) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.ifindex = ifindex;
    match *entry {
        Entry::Neighbour { ip, mac } => {
            msg.header.family = family_of(&ip);
            msg.attributes.push(NeighbourAttribute::Destination(ip.into()));
            if !delete {
                msg.header.state = Nud::Permanent;
                msg.header.kind = RouteType::Unicast;
                msg.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
            }
        }
        Entry::Fdb { mac, dst } => {
            msg.header.family = AddressFamily::Bridge;
            msg.header.flags = NeighbourFlags::Own;
            msg.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
            // Without a destination a delete removes the MAC's whole entry.
            if !delete {
                msg.header.state = Nud::Permanent;
                if let Some(dst) = dst {
                    msg.attributes.push(NeighbourAttribute::Destination(dst.into()));
                }
            }
        }
    }
    msg
}

fn apply(socket: &mut RouteSocket, ifindex: u32, op: &Op) -> io::Result<()> {
    match op {
        Op::Add(e) => {
            let add = socket
                .request_ack(RouteNetlinkMessage::NewNeighbour(message(ifindex, e, false)), NLM_F_CREATE | NLM_F_EXCL);
            match add {
                // Written meanwhile by someone else: make it ours.
                Err(err) if err.raw_os_error() == Some(libc::EEXIST) => apply(socket, ifindex, &Op::Replace(*e)),
                other => other,
            }
        }
        Op::Replace(e) => socket
            .request_ack(RouteNetlinkMessage::NewNeighbour(message(ifindex, e, false)), NLM_F_CREATE | NLM_F_REPLACE),
        Op::Delete(e) => match socket.request_ack(RouteNetlinkMessage::DelNeighbour(message(ifindex, e, true)), 0) {
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other,
        },
    }
}

fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn describe(op: &Op) -> String {
    let (verb, e) = match op {
        Op::Add(e) => ("add", e),
        Op::Replace(e) => ("replace", e),
        Op::Delete(e) => ("delete", e),
    };
    match e {
        Entry::Neighbour { ip, mac } => format!("{verb} neighbour {ip} lladdr {}", mac_text(mac)),
        Entry::Fdb { mac, dst: Some(dst) } => format!("{verb} fdb {} dst {dst}", mac_text(mac)),
        Entry::Fdb { mac, dst: None } => format!("{verb} fdb {}", mac_text(mac)),
    }
}

/// Makes the neighbour and FDB entries on device `ifindex` exactly those
/// `desired` needs; writes nothing when they already are. Every operation
/// is tried; the first failure is returned after the rest ran.
pub fn reconcile(socket: &mut RouteSocket, ifindex: u32, desired: &[Vtep]) -> io::Result<ReconcileStats> {
    let kernel = read_entries(socket, ifindex)?;
    let mut stats = ReconcileStats::default();
    let mut first_error = None;
    for op in plan(desired, &kernel) {
        match apply(socket, ifindex, &op) {
            Ok(()) => {
                tracing::debug!(subsys = "vxlan", ifindex, op = %describe(&op), "applied");
                match op {
                    Op::Add(_) => stats.added += 1,
                    Op::Replace(_) => stats.replaced += 1,
                    Op::Delete(_) => stats.deleted += 1,
                }
            }
            Err(e) => {
                let what = describe(&op);
                tracing::warn!(subsys = "vxlan", ifindex, op = %what, error = %e, "the kernel refused a VTEP entry");
                first_error.get_or_insert(io::Error::new(e.kind(), format!("{what}: {e}")));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(stats),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdb_requests_are_the_devices_own_and_a_delete_names_only_the_mac() {
        let e = Entry::Fdb { mac: [0x66, 0, 0, 0, 0, 1], dst: Some("10.0.0.1".parse().unwrap()) };
        let add = message(7, &e, false);
        assert_eq!((add.header.family, add.header.ifindex), (AddressFamily::Bridge, 7));
        assert!(add.header.flags.contains(NeighbourFlags::Own));
        assert_eq!(add.header.state, Nud::Permanent);
        assert!(
            add.attributes.contains(&NeighbourAttribute::Destination("10.0.0.1".parse::<IpAddr>().unwrap().into()))
        );
        let del = message(7, &e, true);
        assert_eq!(del.attributes, vec![NeighbourAttribute::LinkLayerAddress(vec![0x66, 0, 0, 0, 0, 1])]);
    }

    #[test]
    fn neighbour_requests_are_permanent_in_the_addresses_family() {
        let e = Entry::Neighbour { ip: "fd10::2:0".parse().unwrap(), mac: [0x66, 0, 0, 0, 0, 2] };
        let add = message(7, &e, false);
        assert_eq!((add.header.family, add.header.state), (AddressFamily::Inet6, Nud::Permanent));
        assert_eq!(message(7, &e, true).attributes.len(), 1, "a delete names the address only");
    }

    #[test]
    fn raw_fdb_destinations_read_as_addresses_by_length() {
        assert_eq!(ip_of(&NeighbourAddress::Other(vec![10, 0, 0, 1])), Some("10.0.0.1".parse().unwrap()));
        let v6: IpAddr = "fd00::1".parse().unwrap();
        let IpAddr::V6(raw) = v6 else { unreachable!() };
        assert_eq!(ip_of(&NeighbourAddress::Other(raw.octets().to_vec())), Some(v6));
        assert_eq!(ip_of(&NeighbourAddress::Other(vec![1, 2, 3])), None, "a bad length is no address");
    }
}
