//! MP_REACH_NLRI and MP_UNREACH_NLRI (RFC 4760 sections 3 and 4), with the
//! IPv6 next hop forms of RFC 2545 and the IPv6 next hop for IPv4 NLRI of
//! RFC 8950.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::context::DecodeContext;
use super::error::{EncodeError, fits};
use super::family::{Afi, Family, Safi};
use super::nlri::{self, Nlri};
use super::parse;

/// A next hop address, typed by its length.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NextHop {
    /// 4 octets.
    Ipv4(Ipv4Addr),
    /// 16 octets: a global address.
    Ipv6(Ipv6Addr),
    /// 32 octets (RFC 2545 section 3): a global then a link-local address.
    Ipv6WithLinkLocal { global: Ipv6Addr, link_local: Ipv6Addr },
    /// Any other length (families this codec does not type).
    Raw(#[serde(with = "super::hex_bytes")] Bytes),
}

impl NextHop {
    fn decode(octets: &[u8]) -> NextHop {
        let v6 = |chunk: &[u8]| <[u8; 16]>::try_from(chunk).ok().map(Ipv6Addr::from);
        match octets.len() {
            4 => <[u8; 4]>::try_from(octets).ok().map(|o| NextHop::Ipv4(Ipv4Addr::from(o))),
            16 => v6(octets).map(NextHop::Ipv6),
            32 => octets.split_at_checked(16).and_then(|(global, link_local)| {
                Some(NextHop::Ipv6WithLinkLocal { global: v6(global)?, link_local: v6(link_local)? })
            }),
            _ => None,
        }
        .unwrap_or_else(|| NextHop::Raw(Bytes::copy_from_slice(octets)))
    }

    fn encode(&self, out: &mut BytesMut) {
        match self {
            NextHop::Ipv4(addr) => out.put_slice(&addr.octets()),
            NextHop::Ipv6(addr) => out.put_slice(&addr.octets()),
            NextHop::Ipv6WithLinkLocal { global, link_local } => {
                out.put_slice(&global.octets());
                out.put_slice(&link_local.octets());
            }
            NextHop::Raw(octets) => out.put_slice(octets),
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            NextHop::Ipv4(_) => 4,
            NextHop::Ipv6(_) => 16,
            NextHop::Ipv6WithLinkLocal { .. } => 32,
            NextHop::Raw(octets) => octets.len(),
        }
    }
}

/// The NLRI carried in an MP attribute: prefixes for IPv4/IPv6 unicast, raw
/// octets for any other family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MpNlri {
    Prefixes(Vec<Nlri>),
    Raw(#[serde(with = "super::hex_bytes")] Bytes),
}

impl MpNlri {
    /// The prefixes, or nothing for an untyped family.
    pub fn prefixes(&self) -> &[Nlri] {
        match self {
            MpNlri::Prefixes(prefixes) => prefixes,
            MpNlri::Raw(_) => &[],
        }
    }

    fn decode(input: &[u8], family: Family, ctx: &DecodeContext) -> Result<MpNlri, &'static str> {
        if !family.is_ip_unicast() {
            return Ok(MpNlri::Raw(Bytes::copy_from_slice(input)));
        }
        // RFC 7606 section 3(j): "in order to use the approach of
        // "treat-as-withdraw", the entire NLRI field and/or the MP_REACH_NLRI
        // and MP_UNREACH_NLRI attributes need to be successfully parsed [...].
        // If this is not possible, the procedures of [RFC4271] and/or
        // [RFC4760] continue to apply, meaning that the "session reset"
        // approach (or the "AFI/SAFI disable" approach) MUST be followed."
        nlri::decode_nlri(input, family, ctx.add_path.contains(family))
            .map(MpNlri::Prefixes)
            .map_err(|_| "its NLRI are syntactically incorrect")
    }

    fn encode(&self, out: &mut BytesMut) {
        match self {
            MpNlri::Prefixes(prefixes) => nlri::encode_nlri(prefixes, out),
            MpNlri::Raw(octets) => out.put_slice(octets),
        }
    }
}

/// MP_REACH_NLRI.
///
/// ```text
/// +---------------------------------------------------------+
/// | Address Family Identifier (2 octets)                    |
/// +---------------------------------------------------------+
/// | Subsequent Address Family Identifier (1 octet)          |
/// +---------------------------------------------------------+
/// | Length of Next Hop Network Address (1 octet)            |
/// +---------------------------------------------------------+
/// | Network Address of Next Hop (variable)                  |
/// +---------------------------------------------------------+
/// | Reserved (1 octet)                                      |
/// +---------------------------------------------------------+
/// | Network Layer Reachability Information (variable)       |
/// +---------------------------------------------------------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MpReachNlri {
    pub family: Family,
    pub next_hop: NextHop,
    /// RFC 4760: "SHOULD be set to 0 by the sender and ignored by the
    /// receiver"; kept so that decode → encode is exact.
    #[serde(default)]
    pub reserved: u8,
    pub nlri: MpNlri,
}

impl MpReachNlri {
    pub(crate) fn decode(input: &[u8], ctx: &DecodeContext) -> Result<Self, &'static str> {
        let short = "it is too short";
        let (rest, afi) = parse::ok(parse::u16(input)).ok_or(short)?;
        let (rest, safi) = parse::ok(parse::u8(rest)).ok_or(short)?;
        let family = Family::new(Afi(afi), Safi(safi));
        let (rest, next_hop) =
            parse::ok(parse::u8_length_data(rest)).ok_or("the next hop length overruns the attribute")?;
        // RFC 7606 7.11: "If the Length of Next Hop Network Address field of
        // the MP_REACH attribute is inconsistent with that which was expected,
        // the attribute is considered malformed. Since the next hop precedes
        // the NLRI field in the attribute, in this case it will not be
        // possible to reliably locate the NLRI; thus, the "session reset" or
        // "AFI/SAFI disable" approach MUST be used."
        let expected: &[usize] = match family {
            // RFC 8950 lets IPv4 NLRI have a 16- or 32-octet IPv6 next hop.
            Family::IPV4_UNICAST => &[4, 16, 32],
            Family::IPV6_UNICAST => &[16, 32],
            _ => &[],
        };
        if !expected.is_empty() && !expected.contains(&next_hop.len()) {
            return Err("the next hop length is inconsistent with the address family");
        }
        let (rest, reserved) = parse::ok(parse::u8(rest)).ok_or(short)?;
        Ok(MpReachNlri {
            family,
            next_hop: NextHop::decode(next_hop),
            reserved,
            nlri: MpNlri::decode(rest, family, ctx)?,
        })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        fits("next hop", self.next_hop.encoded_len(), 255)?;
        out.put_u16(self.family.afi.0);
        out.put_u8(self.family.safi.0);
        out.put_u8(self.next_hop.encoded_len() as u8);
        self.next_hop.encode(out);
        out.put_u8(self.reserved);
        self.nlri.encode(out);
        Ok(())
    }
}

/// MP_UNREACH_NLRI.
///
/// ```text
/// +---------------------------------------------------------+
/// | Address Family Identifier (2 octets)                    |
/// +---------------------------------------------------------+
/// | Subsequent Address Family Identifier (1 octet)          |
/// +---------------------------------------------------------+
/// | Withdrawn Routes (variable)                             |
/// +---------------------------------------------------------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MpUnreachNlri {
    pub family: Family,
    pub withdrawn: MpNlri,
}

impl MpUnreachNlri {
    pub(crate) fn decode(input: &[u8], ctx: &DecodeContext) -> Result<Self, &'static str> {
        let short = "it is too short";
        let (rest, afi) = parse::ok(parse::u16(input)).ok_or(short)?;
        let (rest, safi) = parse::ok(parse::u8(rest)).ok_or(short)?;
        let family = Family::new(Afi(afi), Safi(safi));
        Ok(MpUnreachNlri { family, withdrawn: MpNlri::decode(rest, family, ctx)? })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.family.afi.0);
        out.put_u8(self.family.safi.0);
        self.withdrawn.encode(out);
    }
}
