//! Segmentation of what the TUN device hands over with offloads on: a TCP
//! (TSO) or UDP (USO) super-packet of up to 64 KiB is cut into packets of
//! `gso_size` payload bytes, each a complete IPv4 packet with its own
//! length, IP id and checksums — what the kernel's GSO does before a
//! device without offloads. A packet without GSO is passed on whole, its
//! partial checksum completed. Pure: the encap loop writes each segment
//! straight into a send slot, with no allocation.

use super::packet::{DropReason, checksum, fold, ones_sum, parse_ipv4, pseudo_header_sum};
use super::virtio::{F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_UDP_L4, VirtioNetHdr};

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
/// TCP flags (byte 13 of the header).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_CWR: u8 = 0x80;
const UDP_HDR_LEN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One packet; `Some((start, field))`: complete the checksum summed
    /// from `start` into the 16-bit field at `field`.
    Whole(Option<(usize, usize)>),
    Tcp,
    Udp,
}

/// The segments of one packet read from the device, produced one at a time
/// by [`Segments::next_into`].
#[derive(Debug)]
pub struct Segments<'a> {
    packet: &'a [u8],
    kind: Kind,
    /// IPv4 header length.
    ip_len: usize,
    /// Header bytes repeated in every segment (IP + TCP/UDP).
    hdr_len: usize,
    /// Payload bytes per segment.
    mss: usize,
    /// Payload offset (after `hdr_len`) of the next segment.
    offset: usize,
    index: u16,
    count: usize,
}

impl<'a> Segments<'a> {
    /// Checks `packet` (without its virtio header) against `vnet`.
    /// Anything that is not IPv4, or whose offload request does not fit the
    /// packet, is `Malformed`.
    pub fn new(packet: &'a [u8], vnet: &VirtioNetHdr) -> Result<Self, DropReason> {
        let h = parse_ipv4(packet).ok_or(DropReason::Malformed)?;
        let packet = &packet[..h.total_len];
        let fragment = u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff != 0;
        let gso_size = usize::from(vnet.gso_size);
        let (kind, hdr_len, mss) = match vnet.gso_type & !GSO_ECN {
            GSO_NONE => {
                let csum = if vnet.flags & F_NEEDS_CSUM != 0 {
                    let start = usize::from(vnet.csum_start);
                    let field = start + usize::from(vnet.csum_offset);
                    if start < h.header_len || field + 2 > packet.len() {
                        return Err(DropReason::Malformed);
                    }
                    Some((start, field))
                } else {
                    None
                };
                (Kind::Whole(csum), packet.len(), 0)
            }
            GSO_TCPV4 if h.protocol == IPPROTO_TCP && !fragment && gso_size > 0 => {
                let tcp = packet.get(h.header_len + 12).ok_or(DropReason::Malformed)?;
                let tcp_len = usize::from(tcp >> 4) * 4;
                if tcp_len < 20 || h.header_len + tcp_len > packet.len() {
                    return Err(DropReason::Malformed);
                }
                (Kind::Tcp, h.header_len + tcp_len, gso_size)
            }
            GSO_UDP_L4 if h.protocol == IPPROTO_UDP && !fragment && gso_size > 0 => {
                if h.header_len + UDP_HDR_LEN > packet.len() {
                    return Err(DropReason::Malformed);
                }
                (Kind::Udp, h.header_len + UDP_HDR_LEN, gso_size)
            }
            _ => return Err(DropReason::Malformed),
        };
        let payload = packet.len() - hdr_len;
        let count = if mss == 0 { 1 } else { payload.div_ceil(mss).max(1) };
        Ok(Segments { packet, kind, ip_len: h.header_len, hdr_len, mss, offset: 0, index: 0, count })
    }

    /// How many packets this one becomes.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The length of the largest segment: what must fit the tunnel's MTU.
    pub fn max_segment_len(&self) -> usize {
        if self.mss == 0 { self.packet.len() } else { self.hdr_len + self.mss.min(self.packet.len() - self.hdr_len) }
    }

    /// The original packet (for an ICMP error quoting it).
    pub fn packet(&self) -> &'a [u8] {
        self.packet
    }

    /// Writes the next segment into `out` and returns its length; `None`
    /// when all are written or `out` is shorter than [`Self::max_segment_len`].
    pub fn next_into(&mut self, out: &mut [u8]) -> Option<usize> {
        if usize::from(self.index) >= self.count || out.len() < self.max_segment_len() {
            return None;
        }
        let first = self.index == 0;
        let last = usize::from(self.index) + 1 == self.count;
        if let Kind::Whole(csum) = self.kind {
            let len = self.packet.len();
            out[..len].copy_from_slice(self.packet);
            if let Some((start, field)) = csum {
                complete_checksum(&mut out[..len], start, field, self.packet[9]);
            }
            self.index += 1;
            return Some(len);
        }
        let payload = &self.packet[self.hdr_len..];
        let chunk = self.mss.min(payload.len() - self.offset);
        let len = self.hdr_len + chunk;
        out[..self.hdr_len].copy_from_slice(&self.packet[..self.hdr_len]);
        out[self.hdr_len..len].copy_from_slice(&payload[self.offset..self.offset + chunk]);
        let seg = &mut out[..len];
        let ip_len = self.ip_len;
        // IP: own length, ids counting up from the super-packet's (as the
        // kernel's GSO does), own header checksum.
        let id = u16::from_be_bytes([seg[4], seg[5]]).wrapping_add(self.index);
        seg[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        seg[4..6].copy_from_slice(&id.to_be_bytes());
        seg[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&seg[..ip_len]);
        seg[10..12].copy_from_slice(&c.to_be_bytes());
        let l4_len = len - ip_len;
        match self.kind {
            Kind::Tcp => {
                let seq = u32::from_be_bytes([seg[ip_len + 4], seg[ip_len + 5], seg[ip_len + 6], seg[ip_len + 7]]);
                seg[ip_len + 4..ip_len + 8].copy_from_slice(&seq.wrapping_add(self.offset as u32).to_be_bytes());
                // FIN and PSH end the stream's burst: only the last segment
                // keeps them; CWR is acted on once: only the first keeps it.
                if !last {
                    seg[ip_len + 13] &= !(TCP_FIN | TCP_PSH);
                }
                if !first {
                    seg[ip_len + 13] &= !TCP_CWR;
                }
                seg[ip_len + 16..ip_len + 18].copy_from_slice(&[0, 0]);
                let c = !fold(ones_sum(&seg[ip_len..], pseudo_header_sum(seg, IPPROTO_TCP, l4_len)));
                seg[ip_len + 16..ip_len + 18].copy_from_slice(&c.to_be_bytes());
            }
            Kind::Udp => {
                seg[ip_len + 4..ip_len + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                seg[ip_len + 6..ip_len + 8].copy_from_slice(&[0, 0]);
                let c = udp_nonzero(!fold(ones_sum(&seg[ip_len..], pseudo_header_sum(seg, IPPROTO_UDP, l4_len))));
                seg[ip_len + 6..ip_len + 8].copy_from_slice(&c.to_be_bytes());
            }
            Kind::Whole(_) => unreachable!("handled above"),
        }
        self.offset += chunk;
        self.index += 1;
        Some(len)
    }
}

/// Completes a partial checksum (`CHECKSUM_PARTIAL`): the field holds the
/// pseudo-header sum; the sum from `start` to the end, field included, is
/// complemented into it.
fn complete_checksum(packet: &mut [u8], start: usize, field: usize, protocol: u8) {
    let mut c = !fold(ones_sum(&packet[start..], 0));
    if protocol == IPPROTO_UDP && field == start + 6 {
        c = udp_nonzero(c);
    }
    packet[field..field + 2].copy_from_slice(&c.to_be_bytes());
}

/// A computed UDP checksum of 0 is sent as 0xffff: 0 means "none" (RFC 768).
fn udp_nonzero(c: u16) -> u16 {
    if c == 0 { 0xffff } else { c }
}

#[cfg(test)]
#[path = "gso_tests.rs"]
mod tests;
