use super::*;
use crate::fallback_ipip::test_packets::{TCP_HDR_LEN, checksums_verify, tso, udp_partial};
use crate::fallback_ipip::virtio::TCP_CSUM_OFFSET;

const HDR: usize = 20 + TCP_HDR_LEN;

fn all(mut s: Segments<'_>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Some(n) = s.next_into(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn a_tso_super_packet_becomes_mss_segments_with_their_own_headers() {
    let data = payload(4000);
    let (vnet, p) = tso(1000, TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR, 0xfffe, &data, 1448);
    let s = Segments::new(&p, &vnet).unwrap();
    assert_eq!((s.count(), s.max_segment_len()), (3, HDR + 1448));
    let segs = all(s);
    assert_eq!(segs.iter().map(|s| s.len() - HDR).collect::<Vec<_>>(), [1448, 1448, 1104]);
    let mut joined = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        assert!(checksums_verify(seg), "segment {i} checksums verify");
        assert_eq!(usize::from(u16::from_be_bytes([seg[2], seg[3]])), seg.len(), "IP total length");
        assert_eq!(u16::from_be_bytes([seg[4], seg[5]]), 0xfffeu16.wrapping_add(i as u16), "IP id counts up, wrapping");
        let seq = u32::from_be_bytes([seg[24], seg[25], seg[26], seg[27]]);
        assert_eq!(seq, 1000 + 1448 * i as u32);
        let flags = seg[33];
        assert_eq!(flags & (TCP_PSH | TCP_FIN) != 0, i == 2, "PSH and FIN only on the last");
        assert_eq!(flags & TCP_CWR != 0, i == 0, "CWR only on the first");
        assert_eq!(&seg[40..HDR], &p[40..HDR], "options copied");
        joined.extend_from_slice(&seg[HDR..]);
    }
    assert_eq!(joined, data, "the payload, in order");
}

#[test]
fn a_packet_without_gso_is_passed_whole_with_its_partial_checksum_completed() {
    let (mut vnet, p) = tso(5, TCP_ACK, 1, &payload(300), 0);
    vnet.gso_type = GSO_NONE;
    let segs = all(Segments::new(&p, &vnet).unwrap());
    assert_eq!(segs.len(), 1);
    assert!(checksums_verify(&segs[0]));
    assert_eq!(segs[0][..36], p[..36]);

    let u = udp_partial(b"datagram");
    let vnet = VirtioNetHdr { flags: F_NEEDS_CSUM, csum_start: 20, csum_offset: 6, ..Default::default() };
    let segs = all(Segments::new(&u, &vnet).unwrap());
    assert!(checksums_verify(&segs[0]), "UDP checksum completed");

    let plain = all(Segments::new(&segs[0], &VirtioNetHdr::default()).unwrap());
    assert_eq!(plain, segs, "no offload asked: unchanged");
}

#[test]
fn a_uso_super_packet_becomes_datagrams_of_gso_size() {
    let data = payload(2500);
    let u = udp_partial(&data);
    let vnet = VirtioNetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_UDP_L4,
        hdr_len: 28,
        gso_size: 1000,
        csum_start: 20,
        csum_offset: 6,
    };
    let segs = all(Segments::new(&u, &vnet).unwrap());
    assert_eq!(segs.iter().map(Vec::len).collect::<Vec<_>>(), [1028, 1028, 528]);
    for s in &segs {
        assert!(checksums_verify(s));
        assert_eq!(usize::from(u16::from_be_bytes([s[24], s[25]])), s.len() - 20, "UDP length");
    }
    assert_eq!(segs.iter().flat_map(|s| s[28..].to_vec()).collect::<Vec<_>>(), data);
}

#[test]
fn bad_offload_requests_and_cut_packets_are_malformed_not_panics() {
    let (vnet, p) = tso(1, TCP_ACK, 1, &payload(3000), 1400);
    for cut in 0..p.len() {
        // A cut packet's IP length no longer fits: rejected.
        assert_eq!(Segments::new(&p[..cut], &vnet).err(), Some(DropReason::Malformed), "cut at {cut}");
    }
    let udp_as_tcp = udp_partial(&payload(3000));
    assert_eq!(Segments::new(&udp_as_tcp, &vnet).err(), Some(DropReason::Malformed));
    let zero_mss = VirtioNetHdr { gso_size: 0, ..vnet };
    assert_eq!(Segments::new(&p, &zero_mss).err(), Some(DropReason::Malformed));
    let tcpv6 = VirtioNetHdr { gso_type: 4, ..vnet };
    assert_eq!(Segments::new(&p, &tcpv6).err(), Some(DropReason::Malformed));
    let out_of_range = VirtioNetHdr { gso_type: GSO_NONE, csum_start: 20, csum_offset: u16::MAX, ..vnet };
    assert_eq!(Segments::new(&p, &out_of_range).err(), Some(DropReason::Malformed));
    let into_ip_header = VirtioNetHdr { gso_type: GSO_NONE, csum_start: 2, csum_offset: TCP_CSUM_OFFSET, ..vnet };
    assert_eq!(Segments::new(&p, &into_ip_header).err(), Some(DropReason::Malformed));
    let mut bad_data_offset = p.clone();
    bad_data_offset[32] = 0x10; // 4-byte TCP header
    assert_eq!(Segments::new(&bad_data_offset, &vnet).err(), Some(DropReason::Malformed));
    assert_eq!(Segments::new(&[0x60, 0, 0, 0], &vnet).err(), Some(DropReason::Malformed), "IPv6");
}

#[test]
fn a_slot_shorter_than_a_segment_gets_nothing() {
    let (vnet, p) = tso(1, TCP_ACK, 1, &payload(3000), 1400);
    let mut s = Segments::new(&p, &vnet).unwrap();
    assert_eq!(s.next_into(&mut [0u8; 100]), None);
}
