use super::*;
use crate::fallback_ipip::gso::{Segments, TCP_FIN};
use crate::fallback_ipip::test_packets::{TCP_HDR_LEN, checksums_verify, complete_tcp, tcp, tso};
use crate::fallback_ipip::virtio::{GSO_NONE, VirtioNetHdr};
use proptest::prelude::*;

const HDR: usize = 20 + TCP_HDR_LEN;

/// Frames emitted: (virtio header, packet, segments, wire bytes).
fn run(packets: &[Vec<u8>]) -> Vec<(VirtioNetHdr, Vec<u8>, u64, u64)> {
    run_with_mtu(MAX_PACKET, packets)
}

fn run_with_mtu(mtu: usize, packets: &[Vec<u8>]) -> Vec<(VirtioNetHdr, Vec<u8>, u64, u64)> {
    let mut c = Coalescer::new(mtu);
    let mut out = Vec::new();
    let mut emit = |e: Emitted<'_>| {
        out.push((VirtioNetHdr::parse(&e.vnet).unwrap(), e.packet.to_vec(), e.segments, e.wire_bytes));
    };
    for p in packets {
        c.push(p, &mut emit);
    }
    c.flush(&mut emit);
    out
}

#[test]
fn consecutive_segments_of_a_flow_become_one_super_packet() {
    let segs = [
        tcp(100, TCP_ACK, 7, &[1; 1000]),
        tcp(1100, TCP_ACK, 8, &[2; 1000]),
        tcp(2100, TCP_ACK | TCP_PSH, 9, &[3; 400]),
    ];
    let out = run(&segs);
    assert_eq!(out.len(), 1);
    let (vnet, mut p, n, bytes) = out.into_iter().next().unwrap();
    assert_eq!((n, bytes), (3, segs.iter().map(|s| s.len() as u64).sum()));
    assert_eq!(
        vnet,
        VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: HDR as u16,
            gso_size: 1000,
            csum_start: 20,
            csum_offset: TCP_CSUM_OFFSET
        }
    );
    assert_eq!(p.len(), HDR + 2400);
    assert_eq!(p[33], TCP_ACK | TCP_PSH, "the last segment's PSH is kept");
    complete_tcp(&mut p);
    assert!(checksums_verify(&p), "checksums verify once the kernel completes the partial one");
}

#[test]
fn what_cannot_continue_the_open_segment_is_passed_on_in_order() {
    let a = tcp(100, TCP_ACK, 1, &[1; 1000]);
    let gap = tcp(5000, TCP_ACK, 2, &[2; 1000]);
    let after_gap = tcp(6000, TCP_ACK, 3, &[3; 1000]);
    let longer = tcp(7000, TCP_ACK, 4, &[4; 1200]);
    let syn = tcp(8200, 0x02, 5, &[]);
    let mut corrupt = tcp(8200, TCP_ACK, 6, &[5; 100]);
    corrupt[HDR] ^= 0xff;
    let good = tcp(8200, TCP_ACK, 7, &[6; 100]);
    let mut other_window = tcp(8300, TCP_ACK, 8, &[6; 100]);
    other_window[34] ^= 1;
    let fin = tcp(8400, TCP_ACK | TCP_FIN, 9, &[7; 10]);
    let packets =
        [a.clone(), gap, after_gap, longer.clone(), syn.clone(), corrupt.clone(), good, other_window, fin.clone()];
    let out = run(&packets);
    let segments: Vec<u64> = out.iter().map(|o| o.2).collect();
    assert_eq!(segments, [1, 2, 1, 1, 1, 1, 1, 1], "only the two in-order segments after the gap joined");
    assert_eq!(out[0].1, a);
    assert_eq!(out[2].1, longer, "a longer segment starts anew");
    assert_eq!((out[3].1.clone(), out[4].1.clone(), out[7].1.clone()), (syn, corrupt, fin), "unchanged, in order");
    for (vnet, _, n, _) in &out {
        assert_eq!(vnet.gso_type == GSO_NONE, *n == 1, "a single packet asks for no offload");
    }
}

#[test]
fn a_short_segment_or_psh_closes_the_super_packet() {
    let out = run(&[tcp(0, TCP_ACK, 1, &[1; 500]), tcp(500, TCP_ACK, 2, &[1; 300]), tcp(800, TCP_ACK, 3, &[1; 300])]);
    assert_eq!(out.iter().map(|o| o.2).collect::<Vec<_>>(), [2, 1]);
    let out = run(&[tcp(0, TCP_ACK | TCP_PSH, 1, &[1; 500]), tcp(500, TCP_ACK, 2, &[1; 500])]);
    assert_eq!(out.iter().map(|o| o.2).collect::<Vec<_>>(), [1, 1]);
}

#[test]
fn a_non_tcp_or_truncated_packet_is_passed_on_not_panicked_on() {
    let t = tcp(0, TCP_ACK, 1, &[1; 50]);
    for cut in 0..t.len() {
        let out = run(&[t[..cut].to_vec()]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, &t[..cut]);
    }
}

#[test]
fn a_packet_the_underlay_coalesced_beyond_the_mtu_is_handed_over_for_segmentation() {
    // A NIC's GRO joins IP-in-IP segments (the kernel's ipip_gro_receive
    // needs no ipip module), and the raw socket then delivers one packet of
    // up to 64 KiB whose TCP checksum field holds the pseudo-header sum.
    let (_, big) = tso(1, TCP_ACK, 9, &[5; 20_000], 0);
    let mtu = 1480;
    let out = run_with_mtu(mtu, &[tcp(0, TCP_ACK, 8, &[4; 1]), big.clone(), tcp(20_001, TCP_ACK, 10, &[6; 1])]);
    assert_eq!(out.len(), 3);
    let (vnet, p, n, bytes) = &out[1];
    assert_eq!((*n, *bytes), (1, big.len() as u64), "one packet on the wire");
    assert_eq!(
        *vnet,
        VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: HDR as u16,
            gso_size: (mtu - HDR) as u16,
            csum_start: 20,
            csum_offset: TCP_CSUM_OFFSET
        }
    );
    assert_eq!(p, &big, "the packet itself is unchanged");
    assert_eq!(out[0].0.gso_type, GSO_NONE);
    assert_eq!(out[2].0.gso_type, GSO_NONE);
}

proptest! {
    /// Differential: segmenting a TSO super-packet (gso.rs) and coalescing
    /// the segments again (gro.rs) gives back the super-packet the kernel
    /// handed over, byte for byte, with the same offload request; every
    /// segment's checksums verify on the way.
    #[test]
    fn segment_then_coalesce_is_the_identity(
        len in 1usize..(MAX_PACKET - HDR),
        mss in 88u16..9000,
        seq: u32,
        id: u16,
        psh: bool,
        seed: u8,
    ) {
        let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
        let flags = if psh { TCP_ACK | TCP_PSH } else { TCP_ACK };
        let (vnet, original) = tso(seq, flags, id, &data, mss);
        let mut s = Segments::new(&original, &vnet).unwrap();
        let mut segs = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Some(n) = s.next_into(&mut buf) {
            prop_assert!(checksums_verify(&buf[..n]));
            segs.push(buf[..n].to_vec());
        }
        let out = run(&segs);
        prop_assert_eq!(out.len(), 1);
        let (got_vnet, got, n, _) = &out[0];
        prop_assert_eq!(*n as usize, segs.len());
        if segs.len() > 1 {
            prop_assert_eq!(got_vnet, &vnet);
            prop_assert_eq!(got, &original);
        } else {
            prop_assert_eq!(got, &segs[0], "one segment: the checksummed packet");
        }
    }
}

/// A packet sent by a stack on this machine through the in-kernel
/// transmit crosses veths with its TCP/UDP checksum never completed (the
/// field holds the pseudo-header sum, as CHECKSUM_PARTIAL leaves it): it
/// is handed over asking the kernel to complete it, not as it came (the
/// kernel would drop it as corrupt), and such segments still coalesce.
#[test]
fn a_packet_whose_checksum_a_local_sender_left_partial_is_handed_over_to_complete() {
    let partial = |mut p: Vec<u8>| {
        let l4 = p.len() - 20;
        let field = if p[9] == IPPROTO_TCP { 36 } else { 26 };
        let sum = fold(pseudo_header_sum(&p, p[9], l4));
        p[field..field + 2].copy_from_slice(&sum.to_be_bytes());
        p
    };
    const TCP_SYN: u8 = 0x02;
    let syn = partial(tcp(100, TCP_SYN, 1, &[]));
    let udp = crate::fallback_ipip::test_packets::udp_partial(&[5; 100]);
    let out = run(&[syn.clone(), udp.clone()]);
    assert_eq!(out.len(), 2);
    for ((vnet, p, _, _), (sent, offset)) in out.iter().zip([(&syn, TCP_CSUM_OFFSET), (&udp, 6)]) {
        assert_eq!(p, sent);
        assert_eq!(
            (vnet.flags, vnet.gso_type, vnet.csum_start, vnet.csum_offset),
            (F_NEEDS_CSUM, GSO_NONE, 20, offset),
            "protocol {}",
            p[9]
        );
    }
    let segs = [partial(tcp(100, TCP_ACK, 7, &[1; 1000])), partial(tcp(1100, TCP_ACK, 8, &[2; 1000]))];
    let out = run(&segs);
    assert_eq!(out.len(), 1, "partial segments coalesce: {out:?}");
    let (vnet, mut p, n, _) = out.into_iter().next().unwrap();
    assert_eq!((n, vnet.flags, vnet.gso_type), (2, F_NEEDS_CSUM, GSO_TCPV4));
    complete_tcp(&mut p);
    assert!(checksums_verify(&p));
    let (vnet, p, _, _) = run(&[tcp(100, TCP_ACK, 7, &[1; 1000])]).remove(0);
    assert_eq!(vnet.flags, 0, "a complete checksum needs nothing");
    assert!(checksums_verify(&p));
}
