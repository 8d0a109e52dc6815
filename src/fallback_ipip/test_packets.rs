//! Packets for the offload unit tests: TCP and UDP over IPv4 with valid
//! checksums, and TSO super-packets as the TUN device hands them over.

use super::gso::{IPPROTO_TCP, IPPROTO_UDP};
use super::packet::{checksum, fold, ones_sum, pseudo_header_sum};
use super::virtio::{F_NEEDS_CSUM, GSO_TCPV4, TCP_CSUM_OFFSET, VirtioNetHdr};

/// Timestamp-like options (NOP, NOP, kind 8 length 10), so header
/// comparisons cover options.
const OPTIONS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9];
pub const TCP_HDR_LEN: usize = 20 + OPTIONS.len();

fn ipv4(protocol: u8, id: u16, l4: &[u8]) -> Vec<u8> {
    let total = 20 + l4.len();
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, protocol, 0, 0, 10, 244, 1, 5, 10, 244, 2, 7];
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(l4);
    p
}

fn tcp_unsummed(seq: u32, flags: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    let mut tcp = vec![0x9c, 0x40, 0x14, 0x51];
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&77u32.to_be_bytes());
    tcp.extend_from_slice(&[((TCP_HDR_LEN / 4) as u8) << 4, flags, 0x01, 0xf5, 0, 0, 0, 0]);
    tcp.extend_from_slice(&OPTIONS);
    tcp.extend_from_slice(payload);
    ipv4(IPPROTO_TCP, id, &tcp)
}

/// A TCP segment with every checksum right.
pub fn tcp(seq: u32, flags: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = tcp_unsummed(seq, flags, id, payload);
    let c = !fold(ones_sum(&p[20..], pseudo_header_sum(&p, IPPROTO_TCP, p.len() - 20)));
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

/// A TSO super-packet as the device reads it: full length, the TCP
/// checksum field holding only the pseudo-header sum.
pub fn tso(seq: u32, flags: u8, id: u16, payload: &[u8], mss: u16) -> (VirtioNetHdr, Vec<u8>) {
    let mut p = tcp_unsummed(seq, flags, id, payload);
    let partial = fold(pseudo_header_sum(&p, IPPROTO_TCP, p.len() - 20));
    p[36..38].copy_from_slice(&partial.to_be_bytes());
    let vnet = VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: (20 + TCP_HDR_LEN) as u16,
        gso_size: mss,
        csum_start: 20,
        csum_offset: TCP_CSUM_OFFSET,
    };
    (vnet, p)
}

/// A UDP datagram whose checksum field holds only the pseudo-header sum.
pub fn udp_partial(payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut udp = vec![0x0f, 0xa0, 0x0f, 0xa1];
    udp.extend_from_slice(&(len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut p = ipv4(IPPROTO_UDP, 1, &udp);
    let partial = fold(pseudo_header_sum(&p, IPPROTO_UDP, len));
    p[26..28].copy_from_slice(&partial.to_be_bytes());
    p
}

/// True when the IP header checksum and the TCP/UDP checksum verify.
pub fn checksums_verify(p: &[u8]) -> bool {
    let l4 = p.len() - 20;
    checksum(&p[..20]) == 0 && fold(ones_sum(&p[20..], pseudo_header_sum(p, p[9], l4))) == 0xffff
}

/// Completes the partial TCP checksum of a coalesced super-packet as the
/// kernel would, for checking it.
pub fn complete_tcp(p: &mut [u8]) {
    let c = !fold(ones_sum(&p[20..], 0));
    p[36..38].copy_from_slice(&c.to_be_bytes());
}
