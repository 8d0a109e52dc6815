//! The `virtio_net_hdr` the TUN device puts in front of every packet once
//! it is opened with `IFF_VNET_HDR` (`<linux/virtio_net.h>`): how a
//! super-packet is to be segmented and whose checksum is still to be
//! completed. Legacy layout, native byte order (the device is never
//! switched to `TUNSETVNETLE`/`BE`).

/// Bytes of the header in front of each packet.
pub const VNET_HDR_LEN: usize = 10;

/// `flags`: the checksum at `csum_start + csum_offset` holds only the
/// pseudo-header sum; the rest is to be summed from `csum_start` on.
pub const F_NEEDS_CSUM: u8 = 1;

/// `gso_type` values.
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP_L4: u8 = 5;
/// Bit or-ed into `gso_type` when the TCP flow has ECN's CWR to carry.
pub const GSO_ECN: u8 = 0x80;

/// Byte offset of the TCP checksum inside the TCP header.
pub const TCP_CSUM_OFFSET: u16 = 16;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VirtioNetHdr {
    /// The header at the start of a frame read from the device; `None`
    /// when the frame is shorter than a header.
    pub fn parse(frame: &[u8]) -> Option<Self> {
        let b = frame.get(..VNET_HDR_LEN)?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VirtioNetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    pub fn encode(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_parse_is_the_identity_and_short_frames_have_no_header() {
        let h = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 52,
            gso_size: 1448,
            csum_start: 20,
            csum_offset: TCP_CSUM_OFFSET,
        };
        assert_eq!(VirtioNetHdr::parse(&h.encode()), Some(h));
        assert_eq!(VirtioNetHdr::parse(&[0; VNET_HDR_LEN - 1]), None);
    }
}
