//! What a decoder must know about the session: the outcome of capability
//! negotiation and the kind of peer. The wire alone cannot say whether an
//! AS number takes 2 or 4 octets, or whether a prefix carries a path identifier.

use super::family::Family;

/// The families for which NLRI carry an ADD-PATH path identifier (RFC 7911),
/// in the direction being decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddPathFamilies {
    pub ipv4_unicast: bool,
    pub ipv6_unicast: bool,
}

impl AddPathFamilies {
    /// Path identifiers for both IPv4 and IPv6 unicast.
    pub const ALL: AddPathFamilies = AddPathFamilies { ipv4_unicast: true, ipv6_unicast: true };

    pub fn contains(&self, family: Family) -> bool {
        (family == Family::IPV4_UNICAST && self.ipv4_unicast) || (family == Family::IPV6_UNICAST && self.ipv6_unicast)
    }

    pub fn insert(&mut self, family: Family) {
        if family == Family::IPV4_UNICAST {
            self.ipv4_unicast = true;
        } else if family == Family::IPV6_UNICAST {
            self.ipv6_unicast = true;
        }
    }
}

/// Session facts that decoding depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeContext {
    /// Both sides advertised the 4-octet AS capability (RFC 6793): AS_PATH
    /// and AGGREGATOR carry 4-octet AS numbers.
    pub four_octet_as: bool,
    /// Families whose received NLRI carry path identifiers (RFC 7911).
    pub add_path: AddPathFamilies,
    /// The peer is in our AS. RFC 7606 discards LOCAL_PREF, ORIGINATOR_ID and
    /// CLUSTER_LIST from external peers.
    pub ibgp: bool,
    /// The extended message capability (RFC 8654) was negotiated: messages
    /// other than OPEN and KEEPALIVE may be up to 65535 octets.
    pub extended_message: bool,
}

impl Default for DecodeContext {
    /// A modern eBGP session: 4-octet AS, no ADD-PATH, 4096-octet messages.
    fn default() -> Self {
        DecodeContext {
            four_octet_as: true,
            add_path: AddPathFamilies::default(),
            ibgp: false,
            extended_message: false,
        }
    }
}

/// Session facts that encoding depends on. Everything else (AS number width,
/// path identifiers) is recorded in the message model itself, so an encoded
/// message is exactly what the model says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodeContext {
    /// Allow messages up to 65535 octets (RFC 8654).
    pub extended_message: bool,
}

impl From<&DecodeContext> for EncodeContext {
    fn from(ctx: &DecodeContext) -> Self {
        EncodeContext { extended_message: ctx.extended_message }
    }
}
