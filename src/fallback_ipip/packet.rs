//! IPv4 packet handling for the userspace IP-in-IP encapsulator: the same
//! wire format as the kernel's ipip (RFC 2003: an outer IPv4 header with
//! protocol 4 in front of the unchanged inner packet). Pure functions, so
//! every malformed input is a unit test, not a crash.

use std::net::Ipv4Addr;

/// IP protocol number of IP-in-IP (RFC 2003).
pub const IPPROTO_IPIP: u8 = 4;
/// Bytes the outer header adds.
pub const OVERHEAD: usize = 20;

/// The fields of an IPv4 header the tunnel needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    /// Header length in bytes (IHL × 4).
    pub header_len: usize,
    /// Total length from the header.
    pub total_len: usize,
    /// Don't Fragment.
    pub df: bool,
}

/// Why a packet was dropped (the `reason` label of the drop counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a well-formed IPv4 packet.
    Malformed,
    /// Encapsulated packet from an address that is not a known node.
    UnknownSource,
    /// No remote block covers the inner destination.
    NoRoute,
    /// Too big for the underlay with DF set (an ICMP fragmentation-needed was sent back).
    TooBig,
    /// The socket refused the packet.
    SendError,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        DropReason::Malformed,
        DropReason::UnknownSource,
        DropReason::NoRoute,
        DropReason::TooBig,
        DropReason::SendError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownSource => "unknown_source",
            DropReason::NoRoute => "no_route",
            DropReason::TooBig => "too_big",
            DropReason::SendError => "send_error",
        }
    }
}

/// Parses the IPv4 header at the start of `buf`; `None` unless it is a
/// complete, consistent IPv4 packet.
pub fn parse_ipv4(buf: &[u8]) -> Option<Ipv4Header> {
    let first = *buf.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    if header_len < 20 || buf.len() < header_len {
        return None;
    }
    let total_len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if total_len < header_len || total_len > buf.len() {
        return None;
    }
    Some(Ipv4Header {
        src: Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
        dst: Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]),
        protocol: buf[9],
        header_len,
        total_len,
        df: buf[6] & 0x40 != 0,
    })
}

/// Splits a received IP-in-IP packet into its outer source and the inner
/// packet, checking both headers.
pub fn decapsulate(outer: &[u8]) -> Result<(Ipv4Addr, &[u8]), DropReason> {
    let o = parse_ipv4(outer).ok_or(DropReason::Malformed)?;
    if o.protocol != IPPROTO_IPIP {
        return Err(DropReason::Malformed);
    }
    let inner = &outer[o.header_len..o.total_len];
    let i = parse_ipv4(inner).ok_or(DropReason::Malformed)?;
    Ok((o.src, &inner[..i.total_len]))
}

/// The Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(ones_sum(data, 0))
}

/// Adds `data`, as big-endian 16-bit words, to the one's-complement sum
/// `acc` with carries deferred (RFC 1071 section 2): 32-bit words at a time,
/// which folds to the same 16-bit sum because 2^16 = 1 modulo 0xffff.
/// `data` must start at an even offset of the summed region.
pub fn ones_sum(data: &[u8], mut acc: u64) -> u64 {
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut pairs = words.remainder().chunks_exact(2);
    for c in &mut pairs {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a deferred-carry sum to 16 bits (not complemented).
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The sum of the IPv4 pseudo-header of a TCP or UDP segment of `len`
/// bytes (RFC 793 section 3.1), for `ip` an IPv4 header.
pub fn pseudo_header_sum(ip: &[u8], protocol: u8, len: usize) -> u64 {
    ones_sum(&ip[12..20], u64::from(protocol) + len as u64)
}

/// An ICMP "fragmentation needed and DF set" (type 3 code 4, RFC 1191)
/// from `from` back to the source of `original`, announcing `mtu`.
pub fn frag_needed(original: &[u8], mtu: u16, from: Ipv4Addr) -> Option<Vec<u8>> {
    let h = parse_ipv4(original)?;
    // RFC 792: the original IP header plus the first 64 bits of its data.
    let quoted = &original[..(h.header_len + 8).min(h.total_len)];
    let icmp_len = 8 + quoted.len();
    let total = 20 + icmp_len;
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64; // TTL
    p[9] = 1; // ICMP
    p[12..16].copy_from_slice(&from.octets());
    p[16..20].copy_from_slice(&h.src.octets());
    let hc = checksum(&p[..20]);
    p[10..12].copy_from_slice(&hc.to_be_bytes());
    let icmp = &mut p[20..];
    icmp[0] = 3; // destination unreachable
    icmp[1] = 4; // fragmentation needed
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[8..].copy_from_slice(quoted);
    let c = checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8], df: bool) -> Vec<u8> {
        let total = 20 + payload.len();
        let mut p = vec![0x45, 0, 0, 0, 0, 0, if df { 0x40 } else { 0 }, 0, 64, proto, 0, 0];
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        let c = checksum(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn decapsulates_what_the_kernel_encapsulates() {
        let inner = packet([10, 244, 1, 5], [10, 244, 2, 7], 17, b"hello", false);
        let outer = packet([10, 1, 0, 2], [10, 2, 0, 2], IPPROTO_IPIP, &inner, false);
        let (src, got) = decapsulate(&outer).unwrap();
        assert_eq!(src, Ipv4Addr::new(10, 1, 0, 2));
        assert_eq!(got, &inner[..]);
    }

    #[test]
    fn trailing_padding_after_the_inner_packet_is_not_forwarded() {
        let inner = packet([10, 244, 1, 5], [10, 244, 2, 7], 17, b"x", false);
        let mut outer = packet([10, 1, 0, 2], [10, 2, 0, 2], IPPROTO_IPIP, &inner, false);
        outer.extend_from_slice(&[0; 6]); // Ethernet minimum-frame padding
        assert_eq!(decapsulate(&outer).unwrap().1, &inner[..]);
    }

    #[test]
    fn malformed_packets_are_rejected_not_panicked_on() {
        let inner = packet([10, 244, 1, 5], [10, 244, 2, 7], 17, b"hello", false);
        let outer = packet([10, 1, 0, 2], [10, 2, 0, 2], IPPROTO_IPIP, &inner, false);
        for cut in 0..outer.len() {
            assert_eq!(decapsulate(&outer[..cut]), Err(DropReason::Malformed), "cut at {cut}");
        }
        let not_ipip = packet([10, 1, 0, 2], [10, 2, 0, 2], 17, &inner, false);
        assert_eq!(decapsulate(&not_ipip), Err(DropReason::Malformed));
        let mut bad_ihl = outer.clone();
        bad_ihl[0] = 0x44;
        assert_eq!(decapsulate(&bad_ihl), Err(DropReason::Malformed));
        assert_eq!(parse_ipv4(&[0x60, 0, 0, 0]), None, "IPv6 is not IPv4");
    }

    #[test]
    fn frag_needed_is_a_valid_icmp_back_to_the_source() {
        let big = packet([10, 244, 1, 5], [10, 244, 2, 7], 6, &[0xab; 1500], true);
        let icmp = frag_needed(&big, 1480, Ipv4Addr::new(10, 244, 1, 1)).unwrap();
        let h = parse_ipv4(&icmp).unwrap();
        assert_eq!((h.src, h.dst, h.protocol), (Ipv4Addr::new(10, 244, 1, 1), Ipv4Addr::new(10, 244, 1, 5), 1));
        assert_eq!(checksum(&icmp[..20]), 0, "header checksum verifies");
        assert_eq!(checksum(&icmp[20..]), 0, "ICMP checksum verifies");
        assert_eq!((icmp[20], icmp[21]), (3, 4));
        assert_eq!(u16::from_be_bytes([icmp[26], icmp[27]]), 1480);
        assert_eq!(&icmp[28..], &big[..28], "quotes the original header and 8 bytes");
    }
}
