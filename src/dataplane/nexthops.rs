//! Kernel nexthop objects (`ip nexthop`, Linux 5.3+) for the routes tortie
//! writes by the million.
//!
//! Why: a route written as `via <gw> dev <if>` makes the kernel build a
//! `fib_info` for it, with a per-CPU allocation, before it finds the one
//! it already has for that next hop. A route written as `nhid <id>` points
//! at an existing nexthop object instead. Measured here (bench/fib_limit.sh,
//! `nl-pipe` against `nl-pipe-nh`), the kernel takes a million routes in
//! about half the time. FRR's zebra installs routes the same way.
//!
//! The objects are ours by protocol number, like our routes. Ids are chosen
//! here and created with NLM_F_EXCL, so an id somebody else holds is never
//! taken over. The set is re-read with every full route dump. A nexthop
//! object of ours that no route of ours uses is deleted then, and that is
//! the only time one is deleted, since deleting a nexthop object deletes
//! every route using it, silently.
//!
//! Only single next hops with a known device are written this way (the
//! kernel requires a device for a gateway nexthop object). Multipath,
//! device and blackhole routes, and next hops of the other family, are
//! written as before.

use super::netlink::{RTNH_F_ONLINK, attrs, put_attr};
use super::route::{NextHop, RouteTarget};
use ipnetwork::IpNetwork;
use rustc_hash::FxHashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const RTM_NEWNEXTHOP: u16 = 104;
pub const RTM_DELNEXTHOP: u16 = 105;
pub const RTM_GETNEXTHOP: u16 = 106;
/// RTNLGRP_NEXTHOP, for `add_membership`.
pub const NEXTHOP_GROUP: u32 = 32;

const NHA_ID: u16 = 1;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;
/// struct nlmsghdr, then struct nhmsg (family, scope, protocol, reserved, flags).
const NLMSG_HDR: usize = 16;
const NHMSG: usize = 8;

/// Where our ids start: far above the small ids people pick by hand
/// (`ip nexthop add id 1 ...`).
pub const FIRST_ID: u32 = 0x7454_0000;

/// The nexthop objects of ours the kernel holds, by next hop.
#[derive(Debug, Default)]
pub struct Nexthops {
    /// Off by configuration, or the kernel has no nexthop objects.
    pub enabled: bool,
    /// Next hop → the id of our object for it.
    pub ids: FxHashMap<NextHop, u32>,
    /// Id → next hop, for routes the kernel reports by id alone
    /// (`net.ipv4.nexthop_compat_mode = 0`).
    pub hops: FxHashMap<u32, NextHop>,
    /// The next id to try.
    pub next_id: u32,
}

impl Nexthops {
    /// Whether a route to `dst` with this target is written by nexthop id.
    pub fn usable<'a>(&self, dst: &IpNetwork, target: &'a RouteTarget) -> Option<&'a NextHop> {
        match target {
            RouteTarget::Via(hop)
                if self.enabled && hop.ifindex.is_some() && hop.gateway.is_ipv4() == dst.is_ipv4() =>
            {
                Some(hop)
            }
            _ => None,
        }
    }

    /// Takes over what a dump of nexthop objects found: every object of
    /// ours, keyed by its next hop (the first of duplicates).
    pub fn adopt(&mut self, found: Vec<(u32, NextHop)>) {
        self.ids.clear();
        self.hops.clear();
        for (id, hop) in found {
            self.ids.entry(hop.clone()).or_insert(id);
            self.hops.insert(id, hop);
            self.next_id = self.next_id.max(id.wrapping_add(1));
        }
        self.next_id = self.next_id.max(FIRST_ID);
    }

    /// Records an object just created.
    pub fn created(&mut self, id: u32, hop: NextHop) {
        self.ids.insert(hop.clone(), id);
        self.hops.insert(id, hop);
    }

    /// Forgets an object (deleted, or found missing).
    pub fn forget(&mut self, id: u32) {
        if let Some(hop) = self.hops.remove(&id)
            && self.ids.get(&hop) == Some(&id)
        {
            self.ids.remove(&hop);
        }
    }

    /// A fresh id after `id` (never 0, which means "none" to the kernel).
    pub fn take_id(&mut self) -> u32 {
        let id = self.next_id.max(FIRST_ID);
        self.next_id = id.checked_add(1).unwrap_or(FIRST_ID);
        id
    }
}

fn header(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&[0; 4]);
    start
}

fn finish(out: &mut [u8], start: usize) {
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

fn family(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() { libc::AF_INET as u8 } else { libc::AF_INET6 as u8 }
}

/// RTM_NEWNEXTHOP: object `id` for `hop` (which has a device), ours by `protocol`.
pub fn encode_new(id: u32, hop: &NextHop, protocol: u8, flags: u16, seq: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let start = header(&mut out, RTM_NEWNEXTHOP, flags, seq);
    let nh_flags = if hop.onlink { RTNH_F_ONLINK } else { 0 };
    out.extend_from_slice(&[family(&hop.gateway), 0, protocol, 0]);
    out.extend_from_slice(&nh_flags.to_ne_bytes());
    put_attr(&mut out, NHA_ID, &id.to_ne_bytes());
    match hop.gateway {
        IpAddr::V4(a) => put_attr(&mut out, NHA_GATEWAY, &a.octets()),
        IpAddr::V6(a) => put_attr(&mut out, NHA_GATEWAY, &a.octets()),
    }
    put_attr(&mut out, NHA_OIF, &hop.ifindex.unwrap_or(0).to_ne_bytes());
    finish(&mut out, start);
    out
}

/// RTM_DELNEXTHOP for object `id`.
pub fn encode_del(id: u32, flags: u16, seq: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    let start = header(&mut out, RTM_DELNEXTHOP, flags, seq);
    out.extend_from_slice(&[0; NHMSG]);
    put_attr(&mut out, NHA_ID, &id.to_ne_bytes());
    finish(&mut out, start);
    out
}

/// RTM_GETNEXTHOP for object `id`.
pub fn encode_get(id: u32, flags: u16, seq: u32) -> Vec<u8> {
    let mut out = encode_del(id, flags, seq);
    out[4..6].copy_from_slice(&RTM_GETNEXTHOP.to_ne_bytes());
    out
}

/// RTM_GETNEXTHOP dump request, every family.
pub fn encode_dump(flags: u16, seq: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    let start = header(&mut out, RTM_GETNEXTHOP, flags, seq);
    out.extend_from_slice(&[0; NHMSG]);
    finish(&mut out, start);
    out
}

/// One nexthop object as the kernel reports it.
#[derive(Debug, PartialEq, Eq)]
pub struct Object {
    pub id: u32,
    pub protocol: u8,
    /// Its next hop, when it is a single gateway with a device (groups,
    /// blackholes and device-only objects have none).
    pub hop: Option<NextHop>,
}

/// Reads a whole RTM_NEWNEXTHOP / RTM_DELNEXTHOP message (header included).
pub fn read(msg: &[u8]) -> Option<Object> {
    let nh = msg.get(NLMSG_HDR..NLMSG_HDR + NHMSG)?;
    let (family, protocol) = (nh[0], nh[2]);
    let flags = u32::from_ne_bytes([nh[4], nh[5], nh[6], nh[7]]);
    let (mut id, mut gateway, mut oif) = (None, None, None);
    for attr in attrs(&msg[NLMSG_HDR + NHMSG..]) {
        let (kind, payload) = attr.ok()?;
        match (kind, payload.len()) {
            (NHA_ID, 4) => id = Some(u32::from_ne_bytes(payload.try_into().ok()?)),
            (NHA_OIF, 4) => oif = Some(u32::from_ne_bytes(payload.try_into().ok()?)),
            (NHA_GATEWAY, 4) if family == libc::AF_INET as u8 => {
                gateway = Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(payload).ok()?)))
            }
            (NHA_GATEWAY, 16) if family == libc::AF_INET6 as u8 => {
                gateway = Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(payload).ok()?)))
            }
            _ => {}
        }
    }
    let hop = match (gateway, oif) {
        (Some(gateway), Some(ifindex)) => {
            Some(NextHop { gateway, ifindex: Some(ifindex), onlink: flags & RTNH_F_ONLINK != 0 })
        }
        _ => None,
    };
    Some(Object { id: id?, protocol, hop })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(gw: &str, ifindex: u32, onlink: bool) -> NextHop {
        NextHop { gateway: gw.parse().unwrap(), ifindex: Some(ifindex), onlink }
    }

    #[test]
    fn reads_back_what_it_writes() {
        for h in [hop("192.168.7.2", 3, false), hop("172.31.9.9", 12, true), hop("fe80::1", 2, false)] {
            let msg = encode_new(FIRST_ID + 9, &h, 116, 0, 1);
            assert_eq!(msg.len() % 4, 0);
            assert_eq!(u32::from_ne_bytes(msg[..4].try_into().unwrap()) as usize, msg.len());
            assert_eq!(read(&msg), Some(Object { id: FIRST_ID + 9, protocol: 116, hop: Some(h) }));
        }
        let del = encode_del(77, 0, 2);
        assert_eq!(read(&del), Some(Object { id: 77, protocol: 0, hop: None }));
    }

    /// `ip nexthop add id 5 via 10.9.0.2 dev <ifindex 4> proto 116` in the
    /// layout of linux/nexthop.h: nlmsghdr, nhmsg, then NHA_ID, NHA_GATEWAY,
    /// NHA_OIF. (The dataplane tests check the kernel takes it.)
    #[test]
    fn writes_the_layout_of_linux_nexthop_h() {
        let mut want = vec![48, 0, 0, 0, 104, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        want.extend_from_slice(&[2, 0, 116, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[8, 0, 1, 0, 5, 0, 0, 0]);
        want.extend_from_slice(&[8, 0, 6, 0, 10, 9, 0, 2]);
        want.extend_from_slice(&[8, 0, 5, 0, 4, 0, 0, 0]);
        // Byte order as on this (little-endian) machine.
        if cfg!(target_endian = "little") {
            assert_eq!(encode_new(5, &hop("10.9.0.2", 4, false), 116, 0, 1), want);
        }
    }

    #[test]
    fn truncated_or_idless_messages_read_as_nothing() {
        let msg = encode_new(FIRST_ID, &hop("10.9.0.2", 4, false), 116, 0, 1);
        for cut in 0..NLMSG_HDR + NHMSG + 8 {
            assert_eq!(read(&msg[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn adopting_keeps_one_id_per_next_hop_and_allocates_above_them() {
        let mut n = Nexthops { enabled: true, ..Default::default() };
        let a = hop("10.0.0.1", 2, false);
        n.adopt(vec![(FIRST_ID + 4, a.clone()), (FIRST_ID + 9, a.clone()), (3, hop("10.0.0.2", 2, false))]);
        assert_eq!(n.ids.get(&a), Some(&(FIRST_ID + 4)));
        assert_eq!(n.hops.len(), 3, "every object is known by id");
        assert_eq!(n.take_id(), FIRST_ID + 10);
        n.forget(FIRST_ID + 9);
        assert_eq!(n.ids.get(&a), Some(&(FIRST_ID + 4)), "forgetting a duplicate keeps the one in use");
        n.forget(FIRST_ID + 4);
        assert_eq!(n.ids.get(&a), None);
    }

    #[test]
    fn only_single_gateways_with_a_device_of_the_route_family_use_objects() {
        let n = Nexthops { enabled: true, ..Default::default() };
        let v4: IpNetwork = "10.244.1.0/26".parse().unwrap();
        let v6: IpNetwork = "fd00::/64".parse().unwrap();
        let with_dev = RouteTarget::Via(hop("10.0.0.1", 2, false));
        assert!(n.usable(&v4, &with_dev).is_some());
        assert!(n.usable(&v6, &with_dev).is_none(), "an IPv4 next hop for an IPv6 route");
        let no_dev = RouteTarget::Via(NextHop { gateway: "10.0.0.1".parse().unwrap(), ifindex: None, onlink: false });
        assert!(n.usable(&v4, &no_dev).is_none());
        assert!(n.usable(&v4, &RouteTarget::Blackhole).is_none());
        assert!(Nexthops::default().usable(&v4, &with_dev).is_none(), "disabled");
    }
}
