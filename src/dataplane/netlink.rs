//! Route messages over a plain rtnetlink socket: encoding our [`Route`]s,
//! decoding the kernel's, dumping, and applying many changes per
//! `sendmsg()`.
//!
//! Why not one `rtnetlink` request per route: measured here, the
//! request-then-wait pattern reaches about 115k routes/s while the kernel
//! accepts about 300k/s when requests are pipelined. So changes are
//! encoded back to back into 64 KiB chunks, sent without per-message ACKs,
//! and any NLMSG_ERROR the kernel queues is matched back to its request by
//! sequence number. rtnetlink processes a request inside `sendmsg()`, so
//! once a chunk is sent every error for it is already queued.

use super::lwt_bpf;
use super::nexthops::{self, Nexthops};
use super::route::{NextHop, Route, RouteOp, RouteTarget, XmitProgram};
use super::route_bytes::{self, RouteBytes};
use ipnetwork::IpNetwork;
use netlink_packet_core::{
    DefaultNla, Emitable, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteLwEnCapType, RouteLwTunnelEncap, RouteMessage, RouteMetric,
    RouteNextHop, RouteNextHopFlags, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use rustc_hash::FxHashMap;
use std::io;
use std::net::IpAddr;

/// Requests per `sendmsg()` are bounded by bytes, like the kernel's own tools.
const CHUNK_BYTES: usize = 64 * 1024;

/// Where our routes live and how they are marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteScopeSel {
    pub table: u32,
    pub protocol: u8,
}

/// A failed change: which operation and the kernel's errno.
#[derive(Debug)]
pub struct OpError {
    pub index: usize,
    pub error: io::Error,
}

/// A synchronous rtnetlink socket for dumps and batched writes. Used from
/// one thread (the dataplane's blocking worker) only.
pub struct RouteSocket {
    socket: Socket,
    seq: u32,
    recv_buf: Vec<u8>,
    /// Our nexthop objects, when routes are written by nexthop id.
    nexthops: Nexthops,
    /// The socket's netlink port (notifications name who caused them).
    port: u32,
}

impl RouteSocket {
    /// Opens a socket in the current network namespace.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        let port = socket.bind_auto()?.port_number();
        socket.connect(&SocketAddr::new(0, 0))?;
        // Room for the errors of a large batch and for big dumps.
        let _ = socket.set_rx_buf_sz(8 * 1024 * 1024);
        // Ask the kernel to filter dumps by table and protocol where it can.
        let _ = socket.set_netlink_get_strict_chk(true);
        Ok(RouteSocket { socket, seq: 1, recv_buf: vec![0; 1 << 20], nexthops: Nexthops::default(), port })
    }

    /// Writes single-next-hop routes by nexthop object from the next dump
    /// on, if the kernel has them ([`super::nexthops`]).
    pub fn use_nexthop_objects(&mut self) {
        self.nexthops.enabled = true;
    }

    /// Our nexthop objects as the last dump found them: id → device.
    pub fn nexthop_devices(&self) -> FxHashMap<u32, u32> {
        self.nexthops.hops.iter().filter_map(|(&id, hop)| Some((id, hop.ifindex?))).collect()
    }

    /// This socket's netlink port.
    pub fn port(&self) -> u32 {
        self.port
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Every route in `sel.table` carrying `sel.protocol`, both families.
    /// Routes of any other protocol are never returned, so nothing built on
    /// this can touch them.
    pub fn dump(&mut self, sel: RouteScopeSel) -> io::Result<Vec<Route>> {
        let mut out = Vec::new();
        self.dump_each(sel, |r| out.push(r))?;
        Ok(out)
    }

    /// [`RouteSocket::dump`] one route at a time, so a caller keeping a
    /// million routes compactly never holds them all as [`Route`]s.
    ///
    /// With nexthop objects on, it first re-reads ours, and afterwards
    /// deletes those no route of ours uses: the one moment nothing of ours
    /// can be on its way to the kernel (the caller owns the socket).
    pub fn dump_each(&mut self, sel: RouteScopeSel, mut each: impl FnMut(Route)) -> io::Result<()> {
        if self.nexthops.enabled {
            self.read_nexthops(sel.protocol)?;
        }
        let hops = std::mem::take(&mut self.nexthops.hops);
        let mut used = rustc_hash::FxHashSet::default();
        // The kernel marks a dump that changed under it; what it missed may
        // use an object, so none is collected then.
        let mut interrupted = false;
        let mut result = Ok(());
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut msg = RouteMessage::default();
            msg.header.address_family = family;
            msg.header.protocol = RouteProtocol::from(sel.protocol);
            msg.header.table = table_byte(sel.table);
            if sel.table > 255 {
                msg.attributes.push(RouteAttribute::Table(sel.table));
            }
            let seq = self.next_seq();
            let request = frame(RouteNetlinkMessage::GetRoute(msg), NLM_F_REQUEST | NLM_F_DUMP, seq);
            result = self.transact_raw(&request, seq, |kind, bytes| {
                interrupted |= u16::from_ne_bytes([bytes[6], bytes[7]]) & NLM_F_DUMP_INTR != 0;
                if kind == RTM_NEWROUTE {
                    let (read, nhid) = route_bytes::read(bytes, sel, &hops);
                    match read {
                        RouteBytes::Ours(r) => each(r),
                        RouteBytes::Generic => {
                            if let Some(r) = decode_generic(bytes, sel) {
                                each(r)
                            }
                        }
                        RouteBytes::OursUnreadable(_) | RouteBytes::Foreign(_) | RouteBytes::Elsewhere => {}
                    }
                    if let (Some(id), true) = (nhid, route_bytes::protocol(bytes) == Some(sel.protocol)) {
                        used.insert(id);
                    }
                }
                false
            });
            if result.is_err() {
                break;
            }
        }
        self.nexthops.hops = hops;
        result?;
        if self.nexthops.enabled && !interrupted {
            let unused: Vec<u32> = self.nexthops.hops.keys().copied().filter(|id| !used.contains(id)).collect();
            for id in unused {
                let seq = self.next_seq();
                match self.transact_raw(&nexthops::encode_del(id, NLM_F_REQUEST | NLM_F_ACK, seq), seq, |_, _| false) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => {
                        tracing::warn!(subsys = "dataplane", id, error = %e, "cannot delete an unused nexthop object of ours");
                        continue;
                    }
                }
                self.nexthops.forget(id);
            }
        }
        Ok(())
    }

    /// Re-reads our nexthop objects. A kernel without them turns writing by
    /// nexthop object off.
    fn read_nexthops(&mut self, protocol: u8) -> io::Result<()> {
        let seq = self.next_seq();
        let mut found = Vec::new();
        let dumped = self.transact_raw(&nexthops::encode_dump(NLM_F_REQUEST | NLM_F_DUMP, seq), seq, |kind, bytes| {
            if kind == nexthops::RTM_NEWNEXTHOP
                && let Some(o) = nexthops::read(bytes)
                && o.protocol == protocol
                && let Some(hop) = o.hop
            {
                found.push((o.id, hop));
            }
            false
        });
        match dumped {
            Ok(()) => {
                self.nexthops.adopt(found);
                Ok(())
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL | libc::EAFNOSUPPORT)) => {
                tracing::info!(subsys = "dataplane", error = %e, "this kernel has no nexthop objects; routes name their next hop themselves");
                self.nexthops = Nexthops::default();
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Makes sure our nexthop objects exist for the routes `ops` adds or
    /// replaces by nexthop id. Runs before any of them is numbered: each
    /// creation is a request (and a sequence number) of its own, and the
    /// kernel's errors are matched to operations by their numbers. A next
    /// hop that cannot have one is tried once per call; its routes are
    /// written with the next hop itself.
    fn ensure_nexthops(&mut self, ops: &[RouteOp], protocol: u8) -> io::Result<()> {
        let mut tried: rustc_hash::FxHashSet<&NextHop> = Default::default();
        let mut last: Option<&NextHop> = None;
        for op in ops {
            let (RouteOp::Add(r) | RouteOp::Replace(r)) = op else { continue };
            let Some(hop) = self.nexthops.usable(&r.dst, &r.target) else { continue };
            // Routes come in runs with the same next hop.
            if last == Some(hop) || self.nexthops.ids.contains_key(hop) || !tried.insert(hop) {
                last = Some(hop);
                continue;
            }
            last = Some(hop);
            self.create_nexthop(hop, protocol)?;
        }
        Ok(())
    }

    /// Creates our nexthop object for `hop`; false when the kernel refuses.
    fn create_nexthop(&mut self, hop: &NextHop, protocol: u8) -> io::Result<bool> {
        // An id somebody else holds answers EEXIST: try the next.
        for _ in 0..16 {
            let id = self.nexthops.take_id();
            let seq = self.next_seq();
            let flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;
            match self.transact_raw(&nexthops::encode_new(id, hop, protocol, flags, seq), seq, |_, _| false) {
                Ok(()) => {
                    self.nexthops.created(id, hop.clone());
                    return Ok(true);
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) => {
                    tracing::debug!(subsys = "dataplane", gateway = %hop.gateway, error = %e, "no nexthop object; writing the routes with their next hop");
                    return Ok(false);
                }
            }
        }
        Ok(false)
    }

    /// Whether nexthop object `id` exists.
    fn nexthop_exists(&mut self, id: u32) -> io::Result<bool> {
        let seq = self.next_seq();
        match self.transact_raw(&nexthops::encode_get(id, NLM_F_REQUEST, seq), seq, |_, _| true) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Applies `ops` in order, pipelined. Returns the operations the kernel refused.
    pub fn apply(&mut self, ops: &[RouteOp], sel: RouteScopeSel) -> io::Result<Vec<OpError>> {
        if self.nexthops.enabled {
            self.ensure_nexthops(ops, sel.protocol)?;
        }
        let mut errors = Vec::new();
        let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK_BYTES + 4096);
        let first_seq = self.seq.wrapping_add(1);
        let mut last: Option<(&NextHop, Option<u32>)> = None;
        for op in ops {
            let nhid = match op {
                RouteOp::Add(r) | RouteOp::Replace(r) => match self.nexthops.usable(&r.dst, &r.target) {
                    Some(hop) => match last {
                        Some((h, id)) if h == hop => id,
                        _ => {
                            let id = self.nexthops.ids.get(hop).copied();
                            last = Some((hop, id));
                            id
                        }
                    },
                    None => None,
                },
                RouteOp::Delete(_) => None,
            };
            let seq = self.next_seq();
            encode_op_by(op, sel, seq, nhid, &mut chunk);
            if chunk.len() >= CHUNK_BYTES {
                self.socket.send(&chunk, 0)?;
                chunk.clear();
                self.drain_errors(first_seq, &mut errors)?;
            }
        }
        if !chunk.is_empty() {
            self.socket.send(&chunk, 0)?;
        }
        self.drain_errors(first_seq, &mut errors)?;
        // A route naming an object that is gone fails with EINVAL ("Nexthop
        // id does not exist"; its device went, or somebody deleted it), as
        // do other mistakes: ask the kernel before making a new one.
        let mut checked = rustc_hash::FxHashSet::default();
        for e in &errors {
            if e.error.raw_os_error() == Some(libc::EINVAL)
                && let Some(RouteOp::Add(r) | RouteOp::Replace(r)) = ops.get(e.index)
                && let Some(hop) = self.nexthops.usable(&r.dst, &r.target)
                && let Some(&id) = self.nexthops.ids.get(hop)
                && checked.insert(id)
                && !self.nexthop_exists(id)?
            {
                self.nexthops.forget(id);
            }
        }
        Ok(errors)
    }

    /// Collects queued NLMSG_ERRORs without blocking.
    fn drain_errors(&mut self, first_seq: u32, errors: &mut Vec<OpError>) -> io::Result<()> {
        loop {
            let n = match self.socket.recv(&mut &mut self.recv_buf[..], libc::MSG_DONTWAIT) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            for_each_message(&self.recv_buf[..n], |m| {
                if let NetlinkPayload::Error(e) = m.payload
                    && let Some(code) = e.code
                {
                    let index = m.header.sequence_number.wrapping_sub(first_seq) as usize;
                    errors.push(OpError { index, error: io::Error::from_raw_os_error(-code.get()) });
                }
            });
        }
    }

    /// Sends one request and reads the answers to it until the kernel is
    /// done: NLMSG_DONE, an ACK, an error, or `each` returning true.
    fn transact(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        mut each: impl FnMut(RouteNetlinkMessage) -> bool,
    ) -> io::Result<()> {
        let seq = self.next_seq();
        let request = frame(msg, NLM_F_REQUEST | flags, seq);
        self.transact_raw(&request, seq, |_, bytes| match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) {
            Ok(NetlinkMessage { payload: NetlinkPayload::InnerMessage(inner), .. }) => each(inner),
            _ => false,
        })
    }

    /// [`RouteSocket::transact`] for a request already encoded with
    /// sequence number `seq`, handing each answer over as its bytes
    /// (message type, whole message) for readers faster than the generic
    /// parser.
    fn transact_raw(&mut self, request: &[u8], seq: u32, mut each: impl FnMut(u16, &[u8]) -> bool) -> io::Result<()> {
        self.socket.send(request, 0)?;
        loop {
            let n = self.socket.recv(&mut &mut self.recv_buf[..], 0)?;
            let mut finished: Option<io::Result<()>> = None;
            for_each_raw(&self.recv_buf[..n], |kind, bytes| {
                let msg_seq = u32::from_ne_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
                if msg_seq != seq || finished.is_some() {
                    return;
                }
                finished = match kind {
                    NLMSG_DONE => Some(Ok(())),
                    NLMSG_ERROR => {
                        // struct nlmsgerr: a negative errno, 0 for an ACK.
                        let code =
                            bytes.get(16..20).map_or(-libc::EPROTO, |c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
                        Some(if code == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-code)) })
                    }
                    NLMSG_NOOP | NLMSG_OVERRUN => None,
                    _ => each(kind, bytes).then_some(Ok(())),
                };
            });
            if let Some(result) = finished {
                return result;
            }
        }
    }

    /// Every IPv4 address with its interface (index and label).
    pub fn ipv4_addresses(&mut self) -> io::Result<Vec<super::address::InterfaceAddress>> {
        self.addresses(AddressFamily::Inet)
    }

    /// Every IPv6 address with its interface (index and label).
    pub fn ipv6_addresses(&mut self) -> io::Result<Vec<super::address::InterfaceAddress>> {
        self.addresses(AddressFamily::Inet6)
    }

    fn addresses(&mut self, family: AddressFamily) -> io::Result<Vec<super::address::InterfaceAddress>> {
        use netlink_packet_route::address::{AddressAttribute, AddressMessage};
        use netlink_packet_route::link::{LinkAttribute, LinkMessage};
        // IPv6 addresses carry no label, so interfaces are named from a link dump.
        let mut names: FxHashMap<u32, String> = FxHashMap::default();
        self.transact(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_DUMP, |m| {
            if let RouteNetlinkMessage::NewLink(l) = m {
                for attr in l.attributes {
                    if let LinkAttribute::IfName(name) = attr {
                        names.insert(l.header.index, name);
                    }
                }
            }
            false
        })?;
        let mut msg = AddressMessage::default();
        msg.header.family = family;
        let mut out = Vec::new();
        self.transact(RouteNetlinkMessage::GetAddress(msg), NLM_F_DUMP, |m| {
            let RouteNetlinkMessage::NewAddress(a) = m else { return false };
            let mut ip = None;
            let mut label = String::new();
            for attr in &a.attributes {
                match attr {
                    // IPv4 point-to-point links carry the peer in Address and ours in Local; IPv6
                    // addresses have Address only.
                    AddressAttribute::Local(local) => ip = Some(*local),
                    AddressAttribute::Address(address) if ip.is_none() => ip = Some(*address),
                    AddressAttribute::Label(l) => label = l.clone(),
                    _ => {}
                }
            }
            if let Some(Ok(address)) = ip.map(|ip| ipnetwork::IpNetwork::new(ip, a.header.prefix_len)) {
                // The label may carry an alias suffix (eth0:1); IPv6 addresses have none.
                let ifname = match label.split(':').next() {
                    Some(name) if !name.is_empty() => name.to_string(),
                    _ => names.get(&a.header.index).cloned().unwrap_or_default(),
                };
                out.push(super::address::InterfaceAddress { ifindex: a.header.index, ifname, address });
            }
            false
        })?;
        Ok(out)
    }

    /// The interface index of link `name`.
    pub fn link_index(&mut self, name: &str) -> io::Result<u32> {
        let mut msg = netlink_packet_route::link::LinkMessage::default();
        msg.attributes.push(netlink_packet_route::link::LinkAttribute::IfName(name.to_string()));
        let mut index = None;
        self.transact(RouteNetlinkMessage::GetLink(msg), 0, |m| {
            if let RouteNetlinkMessage::NewLink(l) = m {
                index = Some(l.header.index);
            }
            index.is_some()
        })?;
        index.ok_or_else(|| io::Error::other(format!("no link {name} in the answer")))
    }

    /// The MTU of link `ifindex`.
    pub fn link_mtu(&mut self, ifindex: u32) -> io::Result<u32> {
        use netlink_packet_route::link::{LinkAttribute, LinkMessage};
        let mut msg = LinkMessage::default();
        msg.header.index = ifindex;
        let mut mtu = None;
        self.transact(RouteNetlinkMessage::GetLink(msg), 0, |m| {
            if let RouteNetlinkMessage::NewLink(l) = m {
                mtu = l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::Mtu(m) => Some(*m),
                    _ => None,
                });
            }
            mtu.is_some()
        })?;
        mtu.ok_or_else(|| io::Error::other(format!("no MTU for link {ifindex} in the answer")))
    }

    /// Link `name` as the kernel reports it; `None` when there is none.
    pub fn get_link(&mut self, name: &str) -> io::Result<Option<netlink_packet_route::link::LinkMessage>> {
        let mut msg = netlink_packet_route::link::LinkMessage::default();
        msg.attributes.push(netlink_packet_route::link::LinkAttribute::IfName(name.to_string()));
        let mut link = None;
        let asked = self.transact(RouteNetlinkMessage::GetLink(msg), 0, |m| {
            if let RouteNetlinkMessage::NewLink(l) = m {
                link = Some(l);
            }
            link.is_some()
        });
        match asked {
            Ok(()) => Ok(link),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every message a dump request (`GetNeighbour`, `GetAddress`, …) answers
    /// with, parsed; for small tables only (a device's neighbours or
    /// addresses), as it holds them all.
    pub fn dump_messages(&mut self, request: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        self.transact(request, NLM_F_DUMP, |m| {
            out.push(m);
            false
        })?;
        Ok(out)
    }

    /// Sends one request with an ACK and waits for it (for rare, single changes).
    pub fn request_ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.transact(msg, NLM_F_ACK | flags, |_| false)
    }
}

/// Appends the netlink request for `op` to `out`.
pub fn encode_op(op: &RouteOp, sel: RouteScopeSel, seq: u32, out: &mut Vec<u8>) {
    encode_op_by(op, sel, seq, None, out)
}

/// [`encode_op`], an add or replace naming nexthop object `nhid` instead
/// of its next hop when given.
///
/// A delete of a single-next-hop route names only the prefix (and our
/// protocol): the kernel does not match a route written by nexthop id
/// against a gateway, and we own one route per prefix anyway.
pub(crate) fn encode_op_by(op: &RouteOp, sel: RouteScopeSel, seq: u32, nhid: Option<u32>, out: &mut Vec<u8>) {
    let (route, kind, flags) = match op {
        RouteOp::Add(r) => (r, RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL),
        RouteOp::Replace(r) => (r, RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE),
        RouteOp::Delete(r) => (r, RTM_DELROUTE, NLM_F_REQUEST),
    };
    let by = match (op, nhid) {
        (RouteOp::Delete(_), _) => NextHopBy::PrefixOnly,
        (_, Some(id)) => NextHopBy::Object(id),
        (_, None) => NextHopBy::Itself,
    };
    if encode_fast(route, sel, kind, flags, seq, by, out) {
        return;
    }
    let msg = match op {
        RouteOp::Delete(_) => RouteNetlinkMessage::DelRoute(encode(route, sel)),
        _ => RouteNetlinkMessage::NewRoute(encode(route, sel)),
    };
    out.extend_from_slice(&frame(msg, flags, seq));
}

pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
const NLMSG_NOOP: u16 = 1;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
pub(crate) const RTA_DST: u16 = 1;
pub(crate) const RTA_OIF: u16 = 4;
pub(crate) const RTA_GATEWAY: u16 = 5;
pub(crate) const RTA_METRICS: u16 = 8;
pub(crate) const RTA_TABLE: u16 = 15;
pub(crate) const RTA_NH_ID: u16 = 30;
pub(crate) const RTAX_MTU: u16 = 2;
const RTN_UNICAST: u8 = 1;
pub(crate) const RTN_BLACKHOLE: u8 = 6;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
pub(crate) const RTNH_F_ONLINK: u32 = 4;

/// The attribute type without NLA_F_NESTED / NLA_F_NET_BYTEORDER.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// An attribute whose length runs past the end of its message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

/// The attributes in `bytes`: (type, flag bits masked; payload). A
/// malformed one is the last item.
pub(crate) fn attrs(bytes: &[u8]) -> Attrs<'_> {
    Attrs(bytes)
}

pub(crate) struct Attrs<'a>(&'a [u8]);

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(u16, &'a [u8]), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        let a = self.0;
        if a.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([a[0], a[1]]));
        let kind = u16::from_ne_bytes([a[2], a[3]]) & NLA_TYPE_MASK;
        let Some(payload) = a.get(4..len) else {
            self.0 = &[];
            return Some(Err(Malformed));
        };
        self.0 = a.get((len + 3) & !3..).unwrap_or(&[]);
        Some(Ok((kind, payload)))
    }
}

/// Appends one netlink attribute, padded to four bytes.
pub(crate) fn put_attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len() + ((4 - len % 4) % 4), 0);
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// How a single-next-hop route names its next hop in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NextHopBy {
    /// `via <gateway> [dev <if>] [onlink]`.
    Itself,
    /// `nhid <id>`.
    Object(u32),
    /// Not at all (a delete).
    PrefixOnly,
}

/// Writes the request for the single-next-hop shapes tortie writes by the
/// million, byte for byte what [`encode`] produces but without building
/// an attribute tree per route (which dominates the cost of a large
/// batch). Returns false for shapes it does not handle (multipath).
fn encode_fast(
    route: &Route,
    sel: RouteScopeSel,
    kind: u16,
    flags: u16,
    seq: u32,
    by: NextHopBy,
    out: &mut Vec<u8>,
) -> bool {
    let (scope, rtype, rflags) = match &route.target {
        RouteTarget::Device { .. } | RouteTarget::BpfXmit { .. } => (RT_SCOPE_LINK, RTN_UNICAST, 0u32),
        RouteTarget::Blackhole => (RT_SCOPE_UNIVERSE, RTN_BLACKHOLE, 0),
        RouteTarget::Via(hop) if by == NextHopBy::Itself && hop.onlink => {
            (RT_SCOPE_UNIVERSE, RTN_UNICAST, RTNH_F_ONLINK)
        }
        RouteTarget::Via(_) => (RT_SCOPE_UNIVERSE, RTN_UNICAST, 0),
        RouteTarget::Multipath(_) => return false,
    };
    let start = out.len();
    out.extend_from_slice(&[0; 16]);
    let family = if route.dst.is_ipv4() { libc::AF_INET as u8 } else { libc::AF_INET6 as u8 };
    out.extend_from_slice(&[family, route.dst.prefix(), 0, 0, table_byte(sel.table), sel.protocol, scope, rtype]);
    out.extend_from_slice(&rflags.to_ne_bytes());
    put_attr(out, RTA_DST, &ip_bytes(&route.dst.network()));
    if sel.table > 255 {
        put_attr(out, RTA_TABLE, &sel.table.to_ne_bytes());
    }
    match &route.target {
        RouteTarget::Device { ifindex } => put_attr(out, RTA_OIF, &ifindex.to_ne_bytes()),
        RouteTarget::BpfXmit { ifindex, program } => {
            put_attr(out, RTA_OIF, &ifindex.to_ne_bytes());
            put_attr(out, lwt_bpf::RTA_ENCAP_TYPE, &lwt_bpf::LWTUNNEL_ENCAP_BPF.to_ne_bytes());
            put_attr(out, lwt_bpf::RTA_ENCAP, &lwt_bpf::xmit_payload(program));
        }
        RouteTarget::Via(hop) => match by {
            NextHopBy::Itself => {
                put_attr(out, RTA_GATEWAY, &ip_bytes(&hop.gateway));
                if let Some(ifindex) = hop.ifindex {
                    put_attr(out, RTA_OIF, &ifindex.to_ne_bytes());
                }
            }
            NextHopBy::Object(id) => put_attr(out, RTA_NH_ID, &id.to_ne_bytes()),
            NextHopBy::PrefixOnly => {}
        },
        RouteTarget::Blackhole | RouteTarget::Multipath(_) => {}
    }
    if let Some(mtu) = route.mtu {
        let mut nested = Vec::with_capacity(8);
        put_attr(&mut nested, RTAX_MTU, &mtu.to_ne_bytes());
        put_attr(out, RTA_METRICS, &nested);
    }
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    out[start + 4..start + 6].copy_from_slice(&kind.to_ne_bytes());
    out[start + 6..start + 8].copy_from_slice(&flags.to_ne_bytes());
    out[start + 8..start + 12].copy_from_slice(&seq.to_ne_bytes());
    true
}

fn frame(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut nl = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(msg));
    nl.header.flags = flags;
    nl.header.sequence_number = seq;
    nl.finalize();
    let mut buf = vec![0; nl.buffer_len()];
    nl.serialize(&mut buf);
    buf
}

/// Calls `each` for every well-formed netlink message in `buf`; a message
/// that does not parse ends the walk (the rest of the datagram is unusable).
fn for_each_message(buf: &[u8], mut each: impl FnMut(NetlinkMessage<RouteNetlinkMessage>)) {
    for_each_raw(buf, |_, bytes| {
        if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) {
            each(m);
        }
    });
}

/// Calls `each` with the type and bytes (header included, at least 16) of
/// every netlink message in `buf`; a bad length ends the walk.
pub fn for_each_raw(mut buf: &[u8], mut each: impl FnMut(u16, &[u8])) {
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            return;
        }
        each(u16::from_ne_bytes([buf[4], buf[5]]), &buf[..len]);
        let aligned = (len + 3) & !3;
        buf = buf.get(aligned..).unwrap_or(&[]);
    }
}

/// The generic decoder on one message's bytes (the shapes
/// [`route_bytes::read`] leaves to it).
pub fn decode_generic(bytes: &[u8], sel: RouteScopeSel) -> Option<Route> {
    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).ok()?.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r)) => {
            decode(r, sel)
        }
        _ => None,
    }
}

fn table_byte(table: u32) -> u8 {
    // Tables above 255 travel in RTA_TABLE; the header then says RT_TABLE_UNSPEC... except
    // the kernel wants 252 (RT_TABLE_COMPAT) there on old kernels; 0 works on every kernel we support.
    if table > 255 { 0 } else { table as u8 }
}

fn family(ip: &IpNetwork) -> AddressFamily {
    if ip.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 }
}

/// Encodes `route` as an RTM_NEWROUTE/DELROUTE body marked with our protocol.
pub fn encode(route: &Route, sel: RouteScopeSel) -> RouteMessage {
    let mut msg = RouteMessage::default();
    let h = &mut msg.header;
    h.address_family = family(&route.dst);
    h.destination_prefix_length = route.dst.prefix();
    h.table = table_byte(sel.table);
    h.protocol = RouteProtocol::from(sel.protocol);
    h.kind = RouteType::Unicast;
    h.scope = RouteScope::Universe;
    let attrs = &mut msg.attributes;
    attrs.push(RouteAttribute::Destination(RouteAddress::from(route.dst.network())));
    if sel.table > 255 {
        attrs.push(RouteAttribute::Table(sel.table));
    }
    match &route.target {
        RouteTarget::Device { ifindex } => {
            msg.header.scope = RouteScope::Link;
            attrs.push(RouteAttribute::Oif(*ifindex));
        }
        RouteTarget::BpfXmit { ifindex, program } => {
            msg.header.scope = RouteScope::Link;
            attrs.push(RouteAttribute::Oif(*ifindex));
            attrs.push(RouteAttribute::EncapType(RouteLwEnCapType::Bpf));
            // The payload is one attribute (LWT_BPF_XMIT): carried as is.
            let payload = lwt_bpf::xmit_payload(program);
            let kind = u16::from_ne_bytes([payload[2], payload[3]]);
            attrs.push(RouteAttribute::Encap(vec![RouteLwTunnelEncap::Other(DefaultNla::new(
                kind,
                payload[4..].to_vec(),
            ))]));
        }
        RouteTarget::Blackhole => msg.header.kind = RouteType::BlackHole,
        RouteTarget::Via(hop) => {
            attrs.push(RouteAttribute::Gateway(RouteAddress::from(hop.gateway)));
            if let Some(ifindex) = hop.ifindex {
                attrs.push(RouteAttribute::Oif(ifindex));
            }
            if hop.onlink {
                msg.header.flags |= RouteFlags::Onlink;
            }
        }
        RouteTarget::Multipath(hops) => {
            let nhs = hops
                .iter()
                .map(|hop| {
                    let mut nh = RouteNextHop::default();
                    nh.interface_index = hop.ifindex.unwrap_or(0);
                    if hop.onlink {
                        nh.flags |= RouteNextHopFlags::Onlink;
                    }
                    nh.attributes.push(RouteAttribute::Gateway(RouteAddress::from(hop.gateway)));
                    nh
                })
                .collect();
            attrs.push(RouteAttribute::MultiPath(nhs));
        }
    }
    if let Some(mtu) = route.mtu {
        attrs.push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
    }
    msg
}

fn addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Decodes a kernel route, if it is ours (`sel`) and of a shape we write.
pub fn decode(msg: RouteMessage, sel: RouteScopeSel) -> Option<Route> {
    let h = &msg.header;
    if u8::from(h.protocol) != sel.protocol {
        return None;
    }
    let mut table = u32::from(h.table);
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    let mut multipath = None;
    let mut mtu = None;
    let mut bpf_encap = false;
    let mut xmit = None;
    for a in &msg.attributes {
        match a {
            RouteAttribute::EncapType(t) => bpf_encap = *t == RouteLwEnCapType::Bpf,
            RouteAttribute::Encap(encaps) => {
                let mut payload = Vec::new();
                for e in encaps {
                    let start = payload.len();
                    payload.resize(start + e.buffer_len(), 0);
                    e.emit(&mut payload[start..]);
                }
                xmit = lwt_bpf::xmit_name(&payload);
            }
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = addr(d),
            RouteAttribute::Gateway(g) => gateway = addr(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::MultiPath(hops) => multipath = Some(hops),
            RouteAttribute::Metrics(ms) => {
                mtu = ms.iter().find_map(|m| if let RouteMetric::Mtu(v) = m { Some(*v) } else { None })
            }
            _ => {}
        }
    }
    if table != sel.table {
        return None;
    }
    let dst = match dst {
        Some(ip) => IpNetwork::new(ip, h.destination_prefix_length).ok()?,
        None => {
            let unspecified = if h.address_family == AddressFamily::Inet6 {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
            };
            IpNetwork::new(unspecified, 0).ok()?
        }
    };
    let onlink = h.flags.contains(RouteFlags::Onlink);
    let target = if h.kind == RouteType::BlackHole {
        RouteTarget::Blackhole
    } else if let Some(hops) = multipath {
        let hops: Vec<NextHop> = hops
            .iter()
            .filter_map(|nh| {
                let gw = nh
                    .attributes
                    .iter()
                    .find_map(|a| if let RouteAttribute::Gateway(g) = a { addr(g) } else { None })?;
                Some(NextHop {
                    gateway: gw,
                    ifindex: (nh.interface_index != 0).then_some(nh.interface_index),
                    onlink: nh.flags.contains(RouteNextHopFlags::Onlink),
                })
            })
            .collect();
        RouteTarget::from_next_hops(hops)?
    } else if let Some(gw) = gateway {
        RouteTarget::Via(NextHop { gateway: gw, ifindex: oif, onlink })
    } else if let (true, Some(name)) = (bpf_encap, xmit) {
        RouteTarget::BpfXmit { ifindex: oif?, program: XmitProgram { name, fd: None } }
    } else {
        RouteTarget::Device { ifindex: oif? }
    };
    Some(Route { dst, target, mtu })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(op: &RouteOp, sel: RouteScopeSel, seq: u32) -> Vec<u8> {
        let (msg, flags) = match op {
            RouteOp::Add(r) => {
                (RouteNetlinkMessage::NewRoute(encode(r, sel)), NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL)
            }
            RouteOp::Replace(r) => {
                (RouteNetlinkMessage::NewRoute(encode(r, sel)), NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE)
            }
            RouteOp::Delete(r) => {
                // A delete names the prefix only (see `encode_op_by`).
                let mut m = encode(r, sel);
                if let RouteTarget::Via(_) = r.target {
                    m.attributes.retain(|a| !matches!(a, RouteAttribute::Gateway(_) | RouteAttribute::Oif(_)));
                    m.header.flags = RouteFlags::empty();
                }
                (RouteNetlinkMessage::DelRoute(m), NLM_F_REQUEST)
            }
        };
        frame(msg, flags, seq)
    }

    #[test]
    fn the_fast_encoder_writes_exactly_what_the_generic_one_does() {
        let hop = |gw: &str, ifindex, onlink| NextHop { gateway: gw.parse().unwrap(), ifindex, onlink };
        let routes = [
            Route {
                dst: "10.244.1.0/26".parse().unwrap(),
                target: RouteTarget::Via(hop("192.168.0.2", Some(3), false)),
                mtu: None,
            },
            Route {
                dst: "10.244.2.0/26".parse().unwrap(),
                target: RouteTarget::Via(hop("10.0.0.9", Some(7), true)),
                mtu: Some(1480),
            },
            Route {
                dst: "10.244.3.0/26".parse().unwrap(),
                target: RouteTarget::Via(hop("10.0.0.9", None, false)),
                mtu: None,
            },
            Route { dst: "10.244.0.5/32".parse().unwrap(), target: RouteTarget::Device { ifindex: 12 }, mtu: None },
            Route { dst: "10.244.0.0/26".parse().unwrap(), target: RouteTarget::Blackhole, mtu: None },
            Route {
                dst: "fd00:10::/122".parse().unwrap(),
                target: RouteTarget::Via(hop("fe80::1", Some(2), false)),
                mtu: None,
            },
        ];
        for sel in [RouteScopeSel { table: 254, protocol: 116 }, RouteScopeSel { table: 1000, protocol: 116 }] {
            for r in &routes {
                for op in [RouteOp::Add(r.clone()), RouteOp::Replace(r.clone()), RouteOp::Delete(r.clone())] {
                    let mut fast = Vec::new();
                    encode_op(&op, sel, 42, &mut fast);
                    assert_eq!(fast, generic(&op, sel, 42), "{op:?} in table {}", sel.table);
                }
            }
        }
    }

    #[test]
    fn decode_reads_back_what_encode_writes() {
        let sel = RouteScopeSel { table: 254, protocol: 116 };
        let r = Route {
            dst: "10.244.2.0/26".parse().unwrap(),
            target: RouteTarget::Via(NextHop { gateway: "10.0.0.9".parse().unwrap(), ifindex: Some(7), onlink: true }),
            mtu: Some(1480),
        };
        assert_eq!(decode(encode(&r, sel), sel), Some(r.clone()));
        assert_eq!(
            decode(encode(&r, sel), RouteScopeSel { protocol: 80, ..sel }),
            None,
            "another protocol is not ours"
        );
    }
}
