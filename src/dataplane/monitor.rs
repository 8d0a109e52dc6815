//! Watches the kernel's route notifications so drift (someone deleting or
//! changing one of our routes) is repaired within a second, not at the
//! next full resync.
//!
//! It also watches our nexthop objects and the links they use: the
//! kernel deletes an object when its device goes down, loses carrier or
//! goes away, and takes every route using it along, without a word about
//! the routes (nor, for a device, about the object). So a change of such
//! a link asks for a verification dump, which finds and rewrites them.

use super::netlink::{RTM_DELROUTE, RTM_NEWROUTE, RouteScopeSel, decode_generic, for_each_raw};
use super::nexthops;
use super::route::Route;
use super::route_bytes::{self, RouteBytes};
use netlink_sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket, protocols::NETLINK_ROUTE};
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, oneshot};

/// RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE (the legacy group bitmask of `bind`).
const ROUTE_GROUPS: u32 = 0x1 | 0x40 | 0x400;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const IFF_UP: u32 = 0x1;
const IFF_RUNNING: u32 = 0x40;
const IFF_LOWER_UP: u32 = 0x10000;

/// What the monitor saw.
#[derive(Debug)]
pub enum KernelEvent {
    /// A route of ours appeared or changed.
    Changed(super::route::Route),
    /// A route of another protocol appeared in our table (it may have replaced ours).
    Foreign(ipnetwork::IpNetwork),
    /// A route of ours disappeared.
    Deleted(ipnetwork::IpNetwork),
    /// Notifications were lost (socket overrun): only a full resync is safe.
    Overrun,
    /// A nexthop object of ours went away, and with it, silently, every
    /// route using it: only a full resync finds them.
    NexthopGone(u32),
    /// A link one of our nexthop objects uses went down or away (the
    /// kernel deleted the objects, silently), or came back (routes that
    /// could not be written meanwhile can be now).
    NexthopLink(u32),
}

/// What the monitor knows besides the notifications themselves.
pub struct Watch {
    pub sel: RouteScopeSel,
    /// The netlink port of the programmer's socket: notifications it
    /// caused are its own writes (and deletes of unused objects), known
    /// to it already.
    pub own_port: u32,
    /// Our nexthop objects: id → device.
    pub objects: FxHashMap<u32, u32>,
    /// Per device our objects use, whether it was down when last seen.
    link_down: FxHashMap<u32, bool>,
}

impl Watch {
    pub fn new(sel: RouteScopeSel, own_port: u32, objects: FxHashMap<u32, u32>) -> Self {
        Watch { sel, own_port, objects, link_down: FxHashMap::default() }
    }
}

/// Opens the notification socket. Call in the namespace to watch.
pub fn open() -> std::io::Result<TokioSocket> {
    let mut socket = TokioSocket::new(NETLINK_ROUTE)?;
    socket.socket_mut().bind(&SocketAddr::new(0, ROUTE_GROUPS))?;
    let _ = socket.socket_mut().set_rx_buf_sz(8 * 1024 * 1024);
    // Beyond the legacy bitmask: joined by number. A kernel without
    // nexthop objects has no such group, and nothing to report in it.
    let _ = socket.socket_mut().add_membership(nexthops::NEXTHOP_GROUP);
    Ok(socket)
}

/// RTNLGRP_IPV4_ROUTE and RTNLGRP_IPV6_ROUTE, for (re)joining.
const ROUTE_GROUP_NUMBERS: [u32; 2] = [7, 11];

/// Requests from the programmer to the monitor.
#[derive(Debug)]
pub enum MonitorControl {
    /// Leave the route groups: while a bulk batch is written, building a
    /// notification per route would halve the kernel's insert rate, and
    /// the programmer verifies the result with a dump afterwards.
    Pause(oneshot::Sender<()>),
    /// Join them again.
    Resume(oneshot::Sender<()>),
}

/// Forwards route notifications for `sel` to `events` until the receiver
/// is dropped. Our own writes come back here too; the programmer treats
/// them as no-ops because they already match the desired state.
pub async fn run(
    mut socket: TokioSocket,
    mut watch: Watch,
    events: mpsc::Sender<KernelEvent>,
    mut control: mpsc::Receiver<MonitorControl>,
) {
    let mut buf = Vec::with_capacity(1 << 20);
    loop {
        buf.clear();
        let received = tokio::select! {
            r = socket.recv(&mut buf) => r,
            c = control.recv() => {
                if !obey(&mut socket, c) {
                    return;
                }
                continue;
            }
        };
        let event_batch = match received {
            Ok(_) => parse(&buf, &mut watch),
            // ENOBUFS: the kernel dropped notifications for us.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => vec![KernelEvent::Overrun],
            Err(e) => {
                tracing::warn!(subsys = "dataplane", error = %e, "route monitor failed; relying on periodic resync");
                return;
            }
        };
        for ev in event_batch {
            // The programmer may be waiting for a Pause to be acknowledged
            // while our events fill its queue: keep obeying, or both wait forever.
            loop {
                tokio::select! {
                    biased;
                    c = control.recv() => if !obey(&mut socket, c) { return },
                    permit = events.reserve() => match permit {
                        Ok(permit) => {
                            permit.send(ev);
                            break;
                        }
                        Err(_) => return,
                    },
                }
            }
        }
    }
}

/// Carries out a control request; false once the programmer is gone.
fn obey(socket: &mut TokioSocket, control: Option<MonitorControl>) -> bool {
    match control {
        Some(MonitorControl::Pause(ack)) => {
            for g in ROUTE_GROUP_NUMBERS {
                let _ = socket.socket_mut().drop_membership(g);
            }
            let _ = ack.send(());
        }
        Some(MonitorControl::Resume(ack)) => {
            for g in ROUTE_GROUP_NUMBERS {
                let _ = socket.socket_mut().add_membership(g);
            }
            let _ = ack.send(());
        }
        None => return false,
    }
    true
}

fn parse(buf: &[u8], watch: &mut Watch) -> Vec<KernelEvent> {
    let sel = watch.sel;
    let mut out = Vec::new();
    for_each_raw(buf, |kind, bytes| {
        let port = u32::from_ne_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        let deleted = match kind {
            RTM_NEWROUTE => false,
            RTM_DELROUTE => true,
            nexthops::RTM_NEWNEXTHOP | nexthops::RTM_DELNEXTHOP => {
                if let Some(o) = nexthops::read(bytes)
                    && o.protocol == sel.protocol
                {
                    if kind == nexthops::RTM_DELNEXTHOP {
                        watch.objects.remove(&o.id);
                        if port != watch.own_port {
                            out.push(KernelEvent::NexthopGone(o.id));
                        }
                    } else if let Some(ifindex) = o.hop.and_then(|h| h.ifindex) {
                        watch.objects.insert(o.id, ifindex);
                    }
                }
                return;
            }
            RTM_NEWLINK | RTM_DELLINK => {
                if let Some(ifindex) = link_change(kind, bytes, watch) {
                    out.push(KernelEvent::NexthopLink(ifindex));
                }
                return;
            }
            _ => return,
        };
        if port == watch.own_port && port != 0 {
            return;
        }
        let read = match route_bytes::read(bytes, sel, &Default::default()).0 {
            RouteBytes::Generic => generic(bytes, sel),
            read => read,
        };
        match (read, deleted) {
            (RouteBytes::Ours(route), false) => out.push(KernelEvent::Changed(route)),
            (RouteBytes::Ours(Route { dst, .. }) | RouteBytes::OursUnreadable(dst), true) => {
                out.push(KernelEvent::Deleted(dst))
            }
            (RouteBytes::Foreign(dst), false) => out.push(KernelEvent::Foreign(dst)),
            // A route of ours in a shape we never write appeared: not ours
            // to judge; a foreign route going away leaves ours as it was.
            _ => {}
        }
    });
    out
}

/// A link notification that matters to our nexthop objects: the link of
/// one went down or away, or came back up after being seen down; repeats
/// of a state are not news. (struct
/// ifinfomsg: family, pad, type, index, flags, change.)
fn link_change(kind: u16, bytes: &[u8], watch: &mut Watch) -> Option<u32> {
    let info = bytes.get(16..32)?;
    let ifindex = u32::from_ne_bytes([info[4], info[5], info[6], info[7]]);
    if !watch.objects.values().any(|&i| i == ifindex) {
        return None;
    }
    let flags = u32::from_ne_bytes([info[8], info[9], info[10], info[11]]);
    // The kernel's own test (nh_netdev_event): down, or up without carrier.
    let down = kind == RTM_DELLINK || flags & IFF_UP == 0 || flags & (IFF_RUNNING | IFF_LOWER_UP) == 0;
    let was_down = watch.link_down.insert(ifindex, down);
    if kind == RTM_DELLINK {
        watch.objects.retain(|_, i| *i != ifindex);
        watch.link_down.remove(&ifindex);
    }
    (kind == RTM_DELLINK || was_down.unwrap_or(false) != down).then_some(ifindex)
}

/// The generic decoder for the shapes the fast reader leaves to it.
fn generic(bytes: &[u8], sel: RouteScopeSel) -> RouteBytes {
    let protocol = route_bytes::protocol(bytes).unwrap_or(0);
    // Decode a foreign route as if ours, to learn its prefix and table.
    match decode_generic(bytes, RouteScopeSel { protocol, ..sel }) {
        Some(route) if protocol == sel.protocol => RouteBytes::Ours(route),
        Some(route) => RouteBytes::Foreign(route.dst),
        None => RouteBytes::Elsewhere,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::netlink::encode_op;
    use crate::dataplane::route::{NextHop, RouteOp, RouteTarget};

    const OWN: u32 = 4242;

    fn watch() -> Watch {
        Watch::new(RouteScopeSel { table: 254, protocol: 116 }, OWN, FxHashMap::default())
    }

    fn from(mut msg: Vec<u8>, port: u32) -> Vec<u8> {
        msg[12..16].copy_from_slice(&port.to_ne_bytes());
        msg
    }

    fn link(ifindex: u32, flags: u32, kind: u16) -> Vec<u8> {
        let mut msg = vec![0u8; 32];
        msg[..4].copy_from_slice(&32u32.to_ne_bytes());
        msg[4..6].copy_from_slice(&kind.to_ne_bytes());
        msg[20..24].copy_from_slice(&ifindex.to_ne_bytes());
        msg[24..28].copy_from_slice(&flags.to_ne_bytes());
        msg
    }

    fn names(events: &[KernelEvent]) -> Vec<String> {
        events.iter().map(|e| format!("{e:?}")).collect()
    }

    #[test]
    fn our_own_writes_and_deletes_are_not_news() {
        let mut w = watch();
        let hop = NextHop { gateway: "10.0.0.2".parse().unwrap(), ifindex: Some(3), onlink: false };
        let route = Route { dst: "10.244.1.0/26".parse().unwrap(), target: RouteTarget::Via(hop.clone()), mtu: None };
        let mut add = Vec::new();
        encode_op(&RouteOp::Add(route), w.sel, 1, &mut add);
        assert!(parse(&from(add.clone(), OWN), &mut w).is_empty(), "our own write");
        assert_eq!(parse(&from(add, 99), &mut w).len(), 1, "somebody else's change to our route");

        let new = nexthops::encode_new(7, &hop, 116, 0, 1);
        assert!(parse(&from(new, OWN), &mut w).is_empty());
        assert_eq!(w.objects.get(&7), Some(&3), "our object and its device are known");
        let del = nexthops::encode_del(7, 0, 2);
        // A DELNEXTHOP carries the object (protocol included) as the kernel fills it.
        let mut del_ours = nexthops::encode_new(7, &hop, 116, 0, 2);
        del_ours[4..6].copy_from_slice(&nexthops::RTM_DELNEXTHOP.to_ne_bytes());
        assert!(parse(&from(del_ours.clone(), OWN), &mut w).is_empty(), "we deleted it ourselves");
        w.objects.insert(7, 3);
        assert_eq!(names(&parse(&from(del_ours, 0), &mut w)), ["NexthopGone(7)"]);
        assert!(w.objects.is_empty());
        assert!(parse(&from(del, 0), &mut w).is_empty(), "protocol 0: not ours");
    }

    #[test]
    fn a_link_of_our_objects_is_news_when_it_goes_down_away_or_comes_back() {
        let mut w = watch();
        w.objects.insert(7, 3);
        let up = IFF_UP | IFF_RUNNING | IFF_LOWER_UP;
        assert!(parse(&link(3, up, RTM_NEWLINK), &mut w).is_empty(), "up, as it was");
        assert!(parse(&link(9, 0, RTM_NEWLINK), &mut w).is_empty(), "a link no object uses");
        assert_eq!(names(&parse(&link(3, IFF_UP, RTM_NEWLINK), &mut w)), ["NexthopLink(3)"], "carrier lost");
        assert!(parse(&link(3, IFF_UP, RTM_NEWLINK), &mut w).is_empty(), "still without carrier");
        assert_eq!(names(&parse(&link(3, up, RTM_NEWLINK), &mut w)), ["NexthopLink(3)"], "back");
        assert_eq!(names(&parse(&link(3, up, RTM_DELLINK), &mut w)), ["NexthopLink(3)"], "gone");
        assert!(w.objects.is_empty(), "its objects went with it");
    }
}
