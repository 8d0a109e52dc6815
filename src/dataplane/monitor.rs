//! Watches the kernel's route notifications so drift (someone deleting or
//! changing one of our routes) is repaired within a second, not at the
//! next full resync.

use super::netlink::{RTM_DELROUTE, RTM_NEWROUTE, RouteScopeSel, decode_generic, for_each_raw};
use super::nexthops;
use super::route::Route;
use super::route_bytes::{self, RouteBytes};
use netlink_sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket, protocols::NETLINK_ROUTE};
use tokio::sync::{mpsc, oneshot};

/// RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE (the legacy group bitmask of `bind`).
const ROUTE_GROUPS: u32 = 0x40 | 0x400;

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
    sel: RouteScopeSel,
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
            Ok(_) => parse(&buf, sel),
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

fn parse(buf: &[u8], sel: RouteScopeSel) -> Vec<KernelEvent> {
    let mut out = Vec::new();
    for_each_raw(buf, |kind, bytes| {
        let deleted = match kind {
            RTM_NEWROUTE => false,
            RTM_DELROUTE => true,
            nexthops::RTM_DELNEXTHOP => {
                if let Some(o) = nexthops::read(bytes)
                    && o.protocol == sel.protocol
                {
                    out.push(KernelEvent::NexthopGone(o.id));
                }
                return;
            }
            _ => return,
        };
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

/// The generic decoder for the shapes the fast reader leaves to it.
fn generic(bytes: &[u8], sel: RouteScopeSel) -> RouteBytes {
    let protocol = bytes.get(16 + 5).copied().unwrap_or(0);
    // Decode a foreign route as if ours, to learn its prefix and table.
    match decode_generic(bytes, RouteScopeSel { protocol, ..sel }) {
        Some(route) if protocol == sel.protocol => RouteBytes::Ours(route),
        Some(route) => RouteBytes::Foreign(route.dst),
        None => RouteBytes::Elsewhere,
    }
}
