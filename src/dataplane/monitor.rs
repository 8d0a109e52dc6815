//! Watches the kernel's route notifications so drift (someone deleting or
//! changing one of our routes) is repaired within a second, not at the
//! next full resync.

use super::netlink::{RouteScopeSel, decode};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
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
}

/// Opens the notification socket. Call in the namespace to watch.
pub fn open() -> std::io::Result<TokioSocket> {
    let mut socket = TokioSocket::new(NETLINK_ROUTE)?;
    socket.socket_mut().bind(&SocketAddr::new(0, ROUTE_GROUPS))?;
    let _ = socket.socket_mut().set_rx_buf_sz(8 * 1024 * 1024);
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

fn parse(mut buf: &[u8], sel: RouteScopeSel) -> Vec<KernelEvent> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[..len]) {
            match m.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                    let protocol = u8::from(r.header.protocol);
                    // Decode a foreign route as if ours, to learn its prefix and table.
                    let as_ours = RouteScopeSel { protocol, ..sel };
                    match decode(r, as_ours) {
                        Some(route) if protocol == sel.protocol => out.push(KernelEvent::Changed(route)),
                        Some(route) => out.push(KernelEvent::Foreign(route.dst)),
                        None => {}
                    }
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(r)) => {
                    if let Some(route) = decode(r, sel) {
                        out.push(KernelEvent::Deleted(route.dst));
                    }
                }
                _ => {}
            }
        }
        buf = buf.get((len + 3) & !3..).unwrap_or(&[]);
    }
    out
}
