//! Capabilities advertised in OPEN (RFC 5492). Each known capability is
//! decoded only when its value has the exact shape its RFC gives; anything
//! else, known code or not, is kept as [`Capability::Unknown`] octets so that
//! a peer's novelty never fails the session and always re-encodes identically.
//!
//! ```text
//! +------------------------------+
//! | Capability Code (1 octet)    |
//! +------------------------------+
//! | Capability Length (1 octet)  |
//! +------------------------------+
//! | Capability Value (variable)  |
//! +------------------------------+
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::error::{EncodeError, fits};
use super::family::{Afi, Family, Safi};
use super::parse;

/// Capability codes (IANA "Capability Codes").
pub mod capability_code {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const EXTENDED_NEXT_HOP: u8 = 5;
    pub const EXTENDED_MESSAGE: u8 = 6;
    pub const GRACEFUL_RESTART: u8 = 64;
    pub const FOUR_OCTET_AS: u8 = 65;
    pub const ADD_PATH: u8 = 69;
    pub const ENHANCED_ROUTE_REFRESH: u8 = 70;
    pub const FQDN: u8 = 73;
}

/// Graceful restart state for one family (RFC 4724 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GracefulRestartFamily {
    pub family: Family,
    /// Flags for Address Family; bit 0x80 is Forwarding State.
    pub flags: u8,
}

/// ADD-PATH support for one family (RFC 7911 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddPathFamily {
    pub family: Family,
    /// 1 = receive, 2 = send, 3 = both.
    pub send_receive: u8,
}

impl AddPathFamily {
    pub fn can_receive(&self) -> bool {
        self.send_receive & 1 != 0
    }

    pub fn can_send(&self) -> bool {
        self.send_receive & 2 != 0
    }
}

/// One extended next hop encoding (RFC 8950 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtendedNextHopEncoding {
    pub nlri_afi: Afi,
    /// A 2-octet field on the wire, unlike the SAFI elsewhere.
    pub nlri_safi: u16,
    pub next_hop_afi: Afi,
}

/// A capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "capability", content = "value", rename_all = "kebab-case")]
pub enum Capability {
    /// RFC 4760: AFI (2), Reserved (1, zero), SAFI (1).
    Multiprotocol(Family),
    /// RFC 2918.
    RouteRefresh,
    /// RFC 7313.
    EnhancedRouteRefresh,
    /// RFC 6793.
    FourOctetAs(u32),
    /// RFC 4724: Restart Flags (4 bits), Restart Time (12 bits), then families.
    GracefulRestart {
        /// The 4 Restart Flags bits, right-aligned: 0x8 = Restart State, 0x4 = Notification (RFC 8538).
        restart_flags: u8,
        /// Seconds, 12 bits.
        restart_time: u16,
        families: Vec<GracefulRestartFamily>,
    },
    /// RFC 7911.
    AddPath(Vec<AddPathFamily>),
    /// RFC 8950.
    ExtendedNextHop(Vec<ExtendedNextHopEncoding>),
    /// RFC 8654.
    ExtendedMessage,
    /// draft-walton-bgp-hostname-capability, as FRR sends it: a length-prefixed
    /// host name then a length-prefixed domain name.
    Fqdn { hostname: String, domain: String },
    /// Any other capability, or a known one whose value has an unexpected shape.
    Unknown {
        code: u8,
        #[serde(with = "super::hex_bytes")]
        data: Bytes,
    },
}

impl Capability {
    pub fn code(&self) -> u8 {
        use capability_code::*;
        match self {
            Capability::Multiprotocol(_) => MULTIPROTOCOL,
            Capability::RouteRefresh => ROUTE_REFRESH,
            Capability::EnhancedRouteRefresh => ENHANCED_ROUTE_REFRESH,
            Capability::FourOctetAs(_) => FOUR_OCTET_AS,
            Capability::GracefulRestart { .. } => GRACEFUL_RESTART,
            Capability::AddPath(_) => ADD_PATH,
            Capability::ExtendedNextHop(_) => EXTENDED_NEXT_HOP,
            Capability::ExtendedMessage => EXTENDED_MESSAGE,
            Capability::Fqdn { .. } => FQDN,
            Capability::Unknown { code, .. } => *code,
        }
    }

    /// Decodes one capability's value. Never fails: see the module comment.
    pub fn decode(code: u8, value: &[u8]) -> Capability {
        decode_known(code, value).unwrap_or_else(|| Capability::Unknown { code, data: Bytes::copy_from_slice(value) })
    }

    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let mut value = BytesMut::new();
        self.encode_value(&mut value)?;
        fits("capability value", value.len(), 255)?;
        out.put_u8(self.code());
        out.put_u8(value.len() as u8);
        out.put_slice(&value);
        Ok(())
    }

    fn encode_value(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Capability::Multiprotocol(family) => {
                out.put_u16(family.afi.0);
                out.put_u8(0);
                out.put_u8(family.safi.0);
            }
            Capability::RouteRefresh | Capability::EnhancedRouteRefresh | Capability::ExtendedMessage => {}
            Capability::FourOctetAs(asn) => out.put_u32(*asn),
            Capability::GracefulRestart { restart_flags, restart_time, families } => {
                out.put_u16((u16::from(*restart_flags & 0x0f) << 12) | (*restart_time & 0x0fff));
                for entry in families {
                    out.put_u16(entry.family.afi.0);
                    out.put_u8(entry.family.safi.0);
                    out.put_u8(entry.flags);
                }
            }
            Capability::AddPath(families) => {
                for entry in families {
                    out.put_u16(entry.family.afi.0);
                    out.put_u8(entry.family.safi.0);
                    out.put_u8(entry.send_receive);
                }
            }
            Capability::ExtendedNextHop(encodings) => {
                for entry in encodings {
                    out.put_u16(entry.nlri_afi.0);
                    out.put_u16(entry.nlri_safi);
                    out.put_u16(entry.next_hop_afi.0);
                }
            }
            Capability::Fqdn { hostname, domain } => {
                fits("FQDN host name", hostname.len(), 255)?;
                fits("FQDN domain name", domain.len(), 255)?;
                out.put_u8(hostname.len() as u8);
                out.put_slice(hostname.as_bytes());
                out.put_u8(domain.len() as u8);
                out.put_slice(domain.as_bytes());
            }
            Capability::Unknown { data, .. } => out.put_slice(data),
        }
        Ok(())
    }
}

fn decode_known(code: u8, value: &[u8]) -> Option<Capability> {
    use capability_code::*;
    match code {
        MULTIPROTOCOL => match *value {
            // RFC 4760 section 8: "Res. - Reserved (8 bit) field. SHOULD be set
            // to 0 by the sender and ignored by the receiver." A non-zero one
            // is kept as unknown octets so that it re-encodes unchanged.
            [afi_high, afi_low, 0, safi] => {
                Some(Capability::Multiprotocol(Family::new(Afi(u16::from_be_bytes([afi_high, afi_low])), Safi(safi))))
            }
            _ => None,
        },
        ROUTE_REFRESH if value.is_empty() => Some(Capability::RouteRefresh),
        ENHANCED_ROUTE_REFRESH if value.is_empty() => Some(Capability::EnhancedRouteRefresh),
        EXTENDED_MESSAGE if value.is_empty() => Some(Capability::ExtendedMessage),
        FOUR_OCTET_AS => match *value {
            [a, b, c, d] => Some(Capability::FourOctetAs(u32::from_be_bytes([a, b, c, d]))),
            _ => None,
        },
        GRACEFUL_RESTART => decode_graceful_restart(value),
        ADD_PATH if value.len().is_multiple_of(4) => Some(Capability::AddPath(
            value
                .chunks_exact(4)
                .filter_map(|chunk| match *chunk {
                    [afi_high, afi_low, safi, send_receive] => Some(AddPathFamily {
                        family: Family::new(Afi(u16::from_be_bytes([afi_high, afi_low])), Safi(safi)),
                        send_receive,
                    }),
                    _ => None,
                })
                .collect(),
        )),
        EXTENDED_NEXT_HOP if value.len().is_multiple_of(6) => Some(Capability::ExtendedNextHop(
            value
                .chunks_exact(6)
                .filter_map(|chunk| match *chunk {
                    [a0, a1, s0, s1, n0, n1] => Some(ExtendedNextHopEncoding {
                        nlri_afi: Afi(u16::from_be_bytes([a0, a1])),
                        nlri_safi: u16::from_be_bytes([s0, s1]),
                        next_hop_afi: Afi(u16::from_be_bytes([n0, n1])),
                    }),
                    _ => None,
                })
                .collect(),
        )),
        FQDN => decode_fqdn(value),
        _ => None,
    }
}

fn decode_graceful_restart(value: &[u8]) -> Option<Capability> {
    let (mut rest, head) = parse::ok(parse::u16(value))?;
    if rest.len() % 4 != 0 {
        return None;
    }
    let mut families = Vec::with_capacity(rest.len() / 4);
    while !rest.is_empty() {
        let (next, afi) = parse::ok(parse::u16(rest))?;
        let (next, safi) = parse::ok(parse::u8(next))?;
        let (next, flags) = parse::ok(parse::u8(next))?;
        families.push(GracefulRestartFamily { family: Family::new(Afi(afi), Safi(safi)), flags });
        rest = next;
    }
    Some(Capability::GracefulRestart { restart_flags: (head >> 12) as u8, restart_time: head & 0x0fff, families })
}

fn decode_fqdn(value: &[u8]) -> Option<Capability> {
    let (rest, hostname) = parse::ok(parse::u8_length_data(value))?;
    let (rest, domain) = parse::ok(parse::u8_length_data(rest))?;
    if !rest.is_empty() {
        return None;
    }
    Some(Capability::Fqdn {
        hostname: String::from_utf8(hostname.to_vec()).ok()?,
        domain: String::from_utf8(domain.to_vec()).ok()?,
    })
}
