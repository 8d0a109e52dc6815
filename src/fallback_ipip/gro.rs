//! Coalescing of decapsulated packets before they are written to the TUN
//! device (GRO, as the kernel does on a NIC and wireguard-go on its TUN):
//! consecutive in-order TCP segments of one flow become one super-packet
//! with a virtio header asking the kernel to segment it again if it must
//! (`gso_type` TCPV4, `gso_size` the segments' payload length) and to
//! finish its checksum (`NEEDS_CSUM`), so the kernel handles one packet per
//! batch instead of one per segment. Pure: the decap loop hands each
//! emitted frame to the device.
//!
//! A segment joins only if it continues the open one exactly: same
//! addresses, ports, IP fields, ack, window and options, the next sequence
//! number, flags ACK (PSH closes the super-packet), and no longer than the
//! first segment's payload (a shorter one closes it). Its checksum must
//! verify, because the kernel recomputes the coalesced one and would
//! otherwise hide corruption. Everything else is passed on as it came,
//! except a TCP packet longer than the device's MTU: the underlay's GRO
//! joined it, and it is handed over for segmentation at that MTU.
//!
//! A TCP or UDP checksum field holding only the pseudo-header sum is one a
//! sender on the same machine left for the hardware (CHECKSUM_PARTIAL) and
//! nothing completed, because the in-kernel transmit carried the packet
//! across veths only: it counts as verified and is handed over with
//! `NEEDS_CSUM`, so the kernel completes it as the direct path would.

use super::gso::{IPPROTO_TCP, IPPROTO_UDP, TCP_ACK, TCP_PSH};
use super::packet::{checksum, fold, ones_sum, pseudo_header_sum};
use super::virtio::{F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4, TCP_CSUM_OFFSET, VNET_HDR_LEN, VirtioNetHdr};

/// Where the checksum sits in a UDP header.
const UDP_CSUM_OFFSET: u16 = 6;

/// The virtio header for one packet handed over unsegmented: asking the
/// kernel to complete a checksum left partial by a local sender, else none.
fn single_packet_header(p: &[u8]) -> [u8; VNET_HDR_LEN] {
    match partial_checksum(p) {
        Some(csum_offset) => VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_NONE,
            hdr_len: 0,
            gso_size: 0,
            csum_start: 20,
            csum_offset,
        }
        .encode(),
        None => [0; VNET_HDR_LEN],
    }
}

/// The offset of the checksum field in the TCP or UDP header of an
/// unfragmented, option-less IPv4 packet when the field holds exactly the
/// pseudo-header sum (CHECKSUM_PARTIAL's leftover).
fn partial_checksum(p: &[u8]) -> Option<u16> {
    if p.len() < 28 || p[0] != 0x45 || u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0 {
        return None;
    }
    let offset = match p[9] {
        IPPROTO_TCP => TCP_CSUM_OFFSET,
        IPPROTO_UDP => UDP_CSUM_OFFSET,
        _ => return None,
    };
    let field = 20 + usize::from(offset);
    let got = p.get(field..field + 2)?;
    let partial = fold(pseudo_header_sum(p, p[9], p.len() - 20));
    (u16::from_be_bytes([got[0], got[1]]) == partial).then_some(offset)
}

/// The largest IPv4 packet.
pub const MAX_PACKET: usize = 65535;

/// One frame for the device: `vnet` then `packet`.
#[derive(Debug)]
pub struct Emitted<'a> {
    pub vnet: [u8; VNET_HDR_LEN],
    pub packet: &'a [u8],
    /// Packets received on the wire that it carries.
    pub segments: u64,
    /// Their bytes (inner packets, headers included).
    pub wire_bytes: u64,
}

/// The super-packet being built.
#[derive(Debug, Clone, Copy)]
struct Open {
    len: usize,
    ip_len: usize,
    hdr_len: usize,
    gso_size: usize,
    next_seq: u32,
    segments: u64,
    wire_bytes: u64,
    /// PSH seen or a short segment appended: nothing may follow.
    closed: bool,
}

/// Builds super-packets from a stream of packets; reuses one buffer.
#[derive(Debug)]
pub struct Coalescer {
    buf: Vec<u8>,
    open: Option<Open>,
    /// The device's MTU: the largest packet the kernel may forward unsegmented.
    mtu: usize,
}

impl Coalescer {
    pub fn new(mtu: usize) -> Self {
        Coalescer { buf: vec![0; MAX_PACKET], open: None, mtu }
    }
}

/// What a packet is to the coalescer: the header lengths and sequence
/// number of a TCP data segment that may be coalesced.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    ip_len: usize,
    hdr_len: usize,
    seq: u32,
    psh: bool,
}

/// The header lengths (IP, IP + TCP) of an option-less IPv4 TCP packet
/// that is not a fragment (parsed and length-checked by decapsulation).
fn tcp_headers(p: &[u8]) -> Option<(usize, usize)> {
    if p.len() < 40 || p[0] != 0x45 || p[9] != IPPROTO_TCP || u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0 {
        return None;
    }
    let ip_len = 20;
    let hdr_len = ip_len + usize::from(p[ip_len + 12] >> 4) * 4;
    (hdr_len >= ip_len + 20 && hdr_len < p.len()).then_some((ip_len, hdr_len))
}

fn candidate(p: &[u8]) -> Option<Candidate> {
    let (ip_len, hdr_len) = tcp_headers(p)?;
    let flags = p[ip_len + 13];
    if flags & !(TCP_ACK | TCP_PSH) != 0 || flags & TCP_ACK == 0 {
        return None;
    }
    if fold(ones_sum(&p[ip_len..], pseudo_header_sum(p, IPPROTO_TCP, p.len() - ip_len))) != 0xffff
        && partial_checksum(p).is_none()
    {
        return None;
    }
    let seq = u32::from_be_bytes([p[ip_len + 4], p[ip_len + 5], p[ip_len + 6], p[ip_len + 7]]);
    Some(Candidate { ip_len, hdr_len, seq, psh: flags & TCP_PSH != 0 })
}

impl Coalescer {
    /// Takes the next packet (a complete IPv4 packet); emits whatever can
    /// no longer grow, in arrival order.
    pub fn push(&mut self, packet: &[u8], emit: &mut impl FnMut(Emitted<'_>)) {
        if packet.len() > self.mtu
            && let Some((ip_len, hdr_len)) = tcp_headers(packet)
            && hdr_len < self.mtu
        {
            // Coalesced by the underlay's GRO, which verified every
            // segment's checksum and left the pseudo-header sum in the
            // field: too big to forward whole, so it goes to the kernel for
            // segmentation at the largest size the device's MTU allows.
            self.flush(emit);
            self.buf[..packet.len()].copy_from_slice(packet);
            self.open = Some(Open {
                len: packet.len(),
                ip_len,
                hdr_len,
                gso_size: self.mtu - hdr_len,
                next_seq: 0,
                segments: 1,
                wire_bytes: packet.len() as u64,
                closed: true,
            });
            self.flush(emit);
            return;
        }
        let Some(c) = candidate(packet) else {
            self.flush(emit);
            let vnet = single_packet_header(packet);
            emit(Emitted { vnet, packet, segments: 1, wire_bytes: packet.len() as u64 });
            return;
        };
        if let Some(open) = &mut self.open
            && extends(&self.buf[..open.len], open, packet, &c)
        {
            let payload = &packet[c.hdr_len..];
            self.buf[open.len..open.len + payload.len()].copy_from_slice(payload);
            open.len += payload.len();
            open.next_seq = open.next_seq.wrapping_add(payload.len() as u32);
            open.segments += 1;
            open.wire_bytes += packet.len() as u64;
            open.closed = c.psh || payload.len() < open.gso_size;
            if c.psh {
                self.buf[open.ip_len + 13] |= TCP_PSH;
            }
            return;
        }
        self.flush(emit);
        let payload_len = packet.len() - c.hdr_len;
        self.buf[..packet.len()].copy_from_slice(packet);
        self.open = Some(Open {
            len: packet.len(),
            ip_len: c.ip_len,
            hdr_len: c.hdr_len,
            gso_size: payload_len,
            next_seq: c.seq.wrapping_add(payload_len as u32),
            segments: 1,
            wire_bytes: packet.len() as u64,
            closed: c.psh,
        });
    }

    /// Emits the open super-packet, if any.
    pub fn flush(&mut self, emit: &mut impl FnMut(Emitted<'_>)) {
        let Some(open) = self.open.take() else { return };
        let p = &mut self.buf[..open.len];
        if open.segments == 1 && open.len <= self.mtu {
            // Unchanged, checksums verified or left partial by a local sender.
            let vnet = single_packet_header(p);
            emit(Emitted { vnet, packet: p, segments: 1, wire_bytes: open.wire_bytes });
            return;
        }
        let ip_len = open.ip_len;
        p[2..4].copy_from_slice(&(open.len as u16).to_be_bytes());
        p[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&p[..ip_len]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        // CHECKSUM_PARTIAL: the field holds the pseudo-header sum, the
        // kernel adds the rest (or each segment's, when it segments again).
        let field = ip_len + usize::from(TCP_CSUM_OFFSET);
        let pseudo = fold(pseudo_header_sum(p, IPPROTO_TCP, open.len - ip_len));
        p[field..field + 2].copy_from_slice(&pseudo.to_be_bytes());
        let vnet = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: open.hdr_len as u16,
            gso_size: open.gso_size as u16,
            csum_start: ip_len as u16,
            csum_offset: TCP_CSUM_OFFSET,
        };
        emit(Emitted { vnet: vnet.encode(), packet: p, segments: open.segments, wire_bytes: open.wire_bytes });
    }
}

/// True when `packet` continues `open` (whose bytes are `buf`) exactly.
fn extends(buf: &[u8], open: &Open, packet: &[u8], c: &Candidate) -> bool {
    let payload = packet.len() - c.hdr_len;
    let (i, t) = (open.ip_len, c.ip_len);
    !open.closed
        && c.hdr_len == open.hdr_len
        && c.seq == open.next_seq
        && payload <= open.gso_size
        && open.len + payload <= MAX_PACKET
        // IP: version, IHL, TOS; flags and fragment offset, TTL, protocol; addresses.
        && buf[..2] == packet[..2]
        && buf[6..10] == packet[6..10]
        && buf[12..20] == packet[12..20]
        // TCP: ports; ack; data offset; window; urgent pointer and options.
        && buf[i..i + 4] == packet[t..t + 4]
        && buf[i + 8..i + 13] == packet[t + 8..t + 13]
        && buf[i + 14..i + 16] == packet[t + 14..t + 16]
        && buf[i + 18..open.hdr_len] == packet[t + 18..c.hdr_len]
}

#[cfg(test)]
#[path = "gro_tests.rs"]
mod tests;
