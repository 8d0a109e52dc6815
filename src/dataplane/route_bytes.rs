//! Route messages read straight from their bytes.
//!
//! Why: a full dump at a million routes, and the monitor's share of a bulk
//! write, spent most of their time in `netlink-packet-route` building an
//! attribute tree per message (a `Vec` of enums, each address parsed and
//! allocated) only for [`super::netlink::decode`] to pick five fields out of
//! it. This walks the attributes once and keeps those five. Shapes it does
//! not read itself (multipath, families other than IPv4/IPv6) are handed
//! back as [`RouteBytes::Generic`] for the generic decoder, so the result is
//! always the generic decoder's (tested below, and against the kernel in
//! the dataplane tests).

use super::lwt_bpf::{LWTUNNEL_ENCAP_BPF, RTA_ENCAP, RTA_ENCAP_TYPE, xmit_name};
use super::netlink::{
    RTA_DST, RTA_GATEWAY, RTA_METRICS, RTA_NH_ID, RTA_OIF, RTA_TABLE, RTAX_MTU, RTN_BLACKHOLE, RTNH_F_ONLINK,
    RouteScopeSel, attrs,
};
use super::route::{NextHop, Route, RouteTarget, XmitProgram};
use ipnetwork::IpNetwork;
use rustc_hash::FxHashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// struct nlmsghdr, then struct rtmsg.
const NLMSG_HDR: usize = 16;
const RTMSG: usize = 12;

const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;
const RTA_MULTIPATH: u16 = 9;

/// What one RTM_NEWROUTE / RTM_DELROUTE message is to us.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteBytes {
    /// In our table with our protocol, in a shape we write.
    Ours(Route),
    /// In our table with our protocol, in no shape we write (a device
    /// route without a device, say): only its prefix is known.
    OursUnreadable(IpNetwork),
    /// In our table with another protocol.
    Foreign(IpNetwork),
    /// In another table, or malformed.
    Elsewhere,
    /// A shape left to the generic decoder.
    Generic,
}

/// Reads a whole route message (header included) against `sel`, with the
/// id of the nexthop object it names, if any. A route the kernel reports
/// by nexthop id alone (`nexthop_compat_mode` 0) is completed from `hops`.
pub fn read(msg: &[u8], sel: RouteScopeSel, hops: &FxHashMap<u32, NextHop>) -> (RouteBytes, Option<u32>) {
    let mut nhid = None;
    let read = read_route(msg, sel, hops, &mut nhid);
    (read, nhid)
}

fn read_route(msg: &[u8], sel: RouteScopeSel, hops: &FxHashMap<u32, NextHop>, nhid: &mut Option<u32>) -> RouteBytes {
    let Some(rtm) = msg.get(NLMSG_HDR..NLMSG_HDR + RTMSG) else {
        return RouteBytes::Elsewhere;
    };
    let (family, dst_len, header_table, protocol, kind) = (rtm[0], rtm[1], rtm[4], rtm[5], rtm[7]);
    let flags = u32::from_ne_bytes([rtm[8], rtm[9], rtm[10], rtm[11]]);
    let addr_len = match family {
        AF_INET => 4,
        AF_INET6 => 16,
        _ => return RouteBytes::Generic,
    };
    let mut table = u32::from(header_table);
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    let mut mtu = None;
    let mut encap_type = None;
    let mut encap = None;
    for attr in attrs(&msg[NLMSG_HDR + RTMSG..]) {
        let Ok((kind, payload)) = attr else {
            return RouteBytes::Elsewhere;
        };
        match kind {
            RTA_TABLE => table = u32_of(payload).unwrap_or(table),
            RTA_DST => dst = addr_of(payload, addr_len),
            RTA_GATEWAY => gateway = addr_of(payload, addr_len),
            RTA_OIF => oif = u32_of(payload),
            RTA_MULTIPATH => return RouteBytes::Generic,
            RTA_METRICS => mtu = metric_mtu(payload),
            RTA_NH_ID => *nhid = u32_of(payload),
            RTA_ENCAP_TYPE => encap_type = payload.get(..2).map(|b| u16::from_ne_bytes([b[0], b[1]])),
            RTA_ENCAP => encap = Some(payload),
            _ => {}
        }
    }
    if table != sel.table {
        return RouteBytes::Elsewhere;
    }
    let unspecified =
        if family == AF_INET6 { IpAddr::V6(Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
    let Ok(dst) = IpNetwork::new(dst.unwrap_or(unspecified), dst_len) else {
        return RouteBytes::Elsewhere;
    };
    if protocol != sel.protocol {
        return RouteBytes::Foreign(dst);
    }
    let target = if kind == RTN_BLACKHOLE {
        RouteTarget::Blackhole
    } else if let Some(gateway) = gateway {
        RouteTarget::Via(NextHop { gateway, ifindex: oif, onlink: flags & RTNH_F_ONLINK != 0 })
    } else if let Some(hop) = nhid.and_then(|id| hops.get(&id)) {
        RouteTarget::Via(hop.clone())
    } else if let (Some(ifindex), Some(LWTUNNEL_ENCAP_BPF), Some(name)) = (oif, encap_type, encap.and_then(xmit_name)) {
        RouteTarget::BpfXmit { ifindex, program: XmitProgram { name, fd: None } }
    } else if let Some(ifindex) = oif {
        RouteTarget::Device { ifindex }
    } else {
        return RouteBytes::OursUnreadable(dst);
    };
    RouteBytes::Ours(Route { dst, target, mtu })
}

/// The route protocol (rtm_protocol) of a whole route message.
pub fn protocol(msg: &[u8]) -> Option<u8> {
    msg.get(NLMSG_HDR + 5).copied()
}

fn u32_of(payload: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(payload.get(..4)?.try_into().ok()?))
}

fn addr_of(payload: &[u8], len: usize) -> Option<IpAddr> {
    match (payload.len() == len, len) {
        (true, 4) => Some(IpAddr::V4(Ipv4Addr::new(payload[0], payload[1], payload[2], payload[3]))),
        (true, 16) => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(payload).ok()?))),
        _ => None,
    }
}

/// RTAX_MTU inside RTA_METRICS, if present.
fn metric_mtu(nested: &[u8]) -> Option<u32> {
    for attr in attrs(nested) {
        let (kind, payload) = attr.ok()?;
        if kind == RTAX_MTU {
            return u32_of(payload);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::netlink::{decode, encode_op, encode_op_by};
    use crate::dataplane::route::RouteOp;
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::RouteNetlinkMessage;

    fn generic(msg: &[u8], sel: RouteScopeSel) -> Option<Route> {
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg).expect("parses").payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r)) => {
                decode(r, sel)
            }
            other => panic!("not a route message: {other:?}"),
        }
    }

    fn hop(gw: &str, ifindex: Option<u32>, onlink: bool) -> NextHop {
        NextHop { gateway: gw.parse().unwrap(), ifindex, onlink }
    }

    fn shapes() -> Vec<Route> {
        let r = |dst: &str, target, mtu| Route { dst: dst.parse().unwrap(), target, mtu };
        vec![
            r("10.244.1.0/26", RouteTarget::Via(hop("192.168.0.2", Some(3), false)), None),
            r("10.244.2.0/26", RouteTarget::Via(hop("10.0.0.9", Some(7), true)), Some(1480)),
            r("10.244.3.0/26", RouteTarget::Via(hop("10.0.0.9", None, false)), None),
            r("10.244.0.5/32", RouteTarget::Device { ifindex: 12 }, None),
            r(
                "10.244.5.0/26",
                RouteTarget::BpfXmit {
                    ifindex: 12,
                    program: XmitProgram { name: "tipip0a020002".to_string(), fd: None },
                },
                None,
            ),
            r("10.244.0.0/26", RouteTarget::Blackhole, None),
            r("0.0.0.0/0", RouteTarget::Via(hop("10.0.0.1", Some(2), false)), None),
            r("fd00:10::/122", RouteTarget::Via(hop("fe80::1", Some(2), false)), Some(1400)),
            r(
                "10.244.4.0/26",
                RouteTarget::Multipath(vec![hop("10.0.0.8", Some(3), false), hop("10.0.0.9", Some(3), false)]),
                None,
            ),
        ]
    }

    /// Every shape tortie writes, in our table and another, with our
    /// protocol and another: the fast reader agrees with the generic
    /// decoder on all of them.
    #[test]
    fn reads_what_the_generic_decoder_reads() {
        let ours = RouteScopeSel { table: 254, protocol: 116 };
        for written_in in [ours, RouteScopeSel { table: 1000, protocol: 116 }, RouteScopeSel { protocol: 80, ..ours }] {
            for sel in [ours, RouteScopeSel { table: 1000, protocol: 116 }] {
                for route in shapes() {
                    for op in [RouteOp::Add(route.clone()), RouteOp::Replace(route.clone())] {
                        let mut msg = Vec::new();
                        encode_op(&op, written_in, 7, &mut msg);
                        let want = generic(&msg, sel);
                        match read(&msg, sel, &FxHashMap::default()).0 {
                            RouteBytes::Ours(got) => assert_eq!(Some(got), want, "{op:?}"),
                            RouteBytes::Generic => {
                                assert!(matches!(route.target, RouteTarget::Multipath(_)), "{op:?}")
                            }
                            RouteBytes::Foreign(dst) => {
                                assert_eq!(want, None, "{op:?}");
                                assert_eq!((dst, written_in.protocol, written_in.table), (route.dst, 80, sel.table));
                            }
                            RouteBytes::Elsewhere => {
                                assert_eq!(want, None, "{op:?}");
                                assert_ne!(written_in.table, sel.table, "{op:?}");
                            }
                            RouteBytes::OursUnreadable(dst) => panic!("{dst} is a shape we write"),
                        }
                    }
                }
            }
        }
    }

    /// With `net.ipv4.nexthop_compat_mode = 0` the kernel names a route's
    /// nexthop object and nothing else: the route is completed from the
    /// objects we know, and left unreadable (to be rewritten) otherwise.
    #[test]
    fn a_route_named_by_nexthop_id_alone_is_completed_from_the_objects() {
        let sel = RouteScopeSel { table: 254, protocol: 116 };
        let h = hop("192.168.0.2", Some(3), true);
        let route = Route { dst: "10.244.1.0/26".parse().unwrap(), target: RouteTarget::Via(h.clone()), mtu: None };
        let mut msg = Vec::new();
        encode_op_by(&RouteOp::Add(route.clone()), sel, 1, Some(77), &mut msg);
        let known: FxHashMap<u32, NextHop> = [(77, h)].into_iter().collect();
        assert_eq!(read(&msg, sel, &known), (RouteBytes::Ours(route.clone()), Some(77)));
        assert_eq!(read(&msg, sel, &FxHashMap::default()), (RouteBytes::OursUnreadable(route.dst), Some(77)));
    }

    #[test]
    fn a_route_of_ours_without_gateway_or_device_is_known_by_its_prefix() {
        let sel = RouteScopeSel { table: 254, protocol: 116 };
        let route =
            Route { dst: "10.244.0.0/26".parse().unwrap(), target: RouteTarget::Device { ifindex: 9 }, mtu: None };
        let mut msg = Vec::new();
        encode_op(&RouteOp::Add(route.clone()), sel, 1, &mut msg);
        // Drop the trailing RTA_OIF (8 bytes) and fix the length.
        msg.truncate(msg.len() - 8);
        let len = msg.len() as u32;
        msg[..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(read(&msg, sel, &FxHashMap::default()).0, RouteBytes::OursUnreadable(route.dst));
        assert_eq!(generic(&msg, sel), None);
    }

    #[test]
    fn truncated_messages_never_panic() {
        let sel = RouteScopeSel { table: 254, protocol: 116 };
        for route in shapes() {
            let mut msg = Vec::new();
            encode_op(&RouteOp::Add(route.clone()), sel, 1, &mut msg);
            for cut in 0..msg.len() {
                let read = read(&msg[..cut], sel, &FxHashMap::default()).0;
                if cut < NLMSG_HDR + RTMSG {
                    assert_eq!(read, RouteBytes::Elsewhere, "cut at {cut}");
                }
            }
        }
    }
}
