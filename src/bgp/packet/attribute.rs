//! Path attributes (RFC 4271 section 4.3 and the RFCs named per type), and
//! the RFC 7606 verdict for each one that is malformed.
//!
//! ```text
//!  0                   1
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Attr. Flags  |Attr. Type Code|  Attr. Length (1, or 2 if Extended Length)
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! Flags: O(ptional) T(ransitive) P(artial) E(xtended length) + 4 unused bits.
//! ```

use std::net::Ipv4Addr;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::as_path::AsPath;
use super::community::{Community, ExtendedCommunity, LargeCommunity};
use super::context::DecodeContext;
use super::error::{EncodeError, Rfc7606Action, UpdateError, fits};
use super::mp::{MpReachNlri, MpUnreachNlri};
use super::parse;

/// Attribute flag bits.
pub mod flag {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Attribute type codes (IANA "BGP Path Attributes").
pub mod type_code {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const LARGE_COMMUNITY: u8 = 32;
    /// RFC 9234 Only to Customer; kept as raw octets once its length is checked.
    pub const ONLY_TO_CUSTOMER: u8 = 35;
}

/// ORIGIN values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Igp,
    Egp,
    Incomplete,
}

/// AGGREGATOR and AS4_AGGREGATOR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Aggregator {
    /// Encoded with a 4-octet AS number (8 octets in all) or a 2-octet one (6).
    pub four_octet: bool,
    pub asn: u32,
    pub address: Ipv4Addr,
}

/// The value of a path attribute. Known types are typed only when well
/// formed; a malformed one is kept as [`AttributeValue::Raw`] and reported
/// in the [`UpdateOutcome`](super::UpdateOutcome).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum AttributeValue {
    Origin(Origin),
    AsPath(AsPath),
    NextHop(Ipv4Addr),
    MultiExitDisc(u32),
    LocalPref(u32),
    AtomicAggregate,
    Aggregator(Aggregator),
    Communities(Vec<Community>),
    OriginatorId(Ipv4Addr),
    ClusterList(Vec<Ipv4Addr>),
    MpReachNlri(MpReachNlri),
    MpUnreachNlri(MpUnreachNlri),
    ExtendedCommunities(Vec<ExtendedCommunity>),
    As4Path(AsPath),
    As4Aggregator(Aggregator),
    LargeCommunities(Vec<LargeCommunity>),
    /// An unknown attribute, or a known one that is malformed.
    Raw {
        type_code: u8,
        #[serde(with = "super::hex_bytes")]
        data: Bytes,
    },
}

impl AttributeValue {
    pub fn type_code(&self) -> u8 {
        use type_code::*;
        match self {
            AttributeValue::Origin(_) => ORIGIN,
            AttributeValue::AsPath(_) => AS_PATH,
            AttributeValue::NextHop(_) => NEXT_HOP,
            AttributeValue::MultiExitDisc(_) => MULTI_EXIT_DISC,
            AttributeValue::LocalPref(_) => LOCAL_PREF,
            AttributeValue::AtomicAggregate => ATOMIC_AGGREGATE,
            AttributeValue::Aggregator(_) => AGGREGATOR,
            AttributeValue::Communities(_) => COMMUNITIES,
            AttributeValue::OriginatorId(_) => ORIGINATOR_ID,
            AttributeValue::ClusterList(_) => CLUSTER_LIST,
            AttributeValue::MpReachNlri(_) => MP_REACH_NLRI,
            AttributeValue::MpUnreachNlri(_) => MP_UNREACH_NLRI,
            AttributeValue::ExtendedCommunities(_) => EXTENDED_COMMUNITIES,
            AttributeValue::As4Path(_) => AS4_PATH,
            AttributeValue::As4Aggregator(_) => AS4_AGGREGATOR,
            AttributeValue::LargeCommunities(_) => LARGE_COMMUNITY,
            AttributeValue::Raw { type_code, .. } => *type_code,
        }
    }
}

/// A path attribute exactly as it was on the wire: all eight flag bits
/// (including an Extended Length bit on a short value) and the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathAttribute {
    pub flags: u8,
    #[serde(flatten)]
    pub value: AttributeValue,
}

impl PathAttribute {
    /// An attribute with the flags its type calls for (Optional and
    /// Transitive per the defining RFC; unknown types become optional transitive).
    pub fn new(value: AttributeValue) -> Self {
        let flags = match expected_flags(value.type_code()) {
            Some(flags) => flags,
            None => flag::OPTIONAL | flag::TRANSITIVE,
        };
        PathAttribute { flags, value }
    }

    pub fn type_code(&self) -> u8 {
        self.value.type_code()
    }

    pub fn is_optional(&self) -> bool {
        self.flags & flag::OPTIONAL != 0
    }

    pub fn is_transitive(&self) -> bool {
        self.flags & flag::TRANSITIVE != 0
    }

    pub fn is_partial(&self) -> bool {
        self.flags & flag::PARTIAL != 0
    }

    pub fn has_extended_length(&self) -> bool {
        self.flags & flag::EXTENDED_LENGTH != 0
    }

    /// Encodes the attribute. A value over 255 octets sets the Extended
    /// Length bit; a set bit is honoured even for a short value.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let mut value = BytesMut::new();
        encode_value(&self.value, &mut value)?;
        fits("path attribute", value.len(), usize::from(u16::MAX))?;
        let extended = self.has_extended_length() || value.len() > 255;
        let flags = if extended { self.flags | flag::EXTENDED_LENGTH } else { self.flags };
        out.put_u8(flags);
        out.put_u8(self.type_code());
        if extended {
            out.put_u16(value.len() as u16);
        } else {
            out.put_u8(value.len() as u8);
        }
        out.put_slice(&value);
        Ok(())
    }
}

/// The Optional and Transitive bits that the defining RFC gives a type, or
/// `None` for a type this codec does not know.
pub fn expected_flags(code: u8) -> Option<u8> {
    use type_code::*;
    match code {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => Some(flag::TRANSITIVE),
        MULTI_EXIT_DISC | ORIGINATOR_ID | CLUSTER_LIST | MP_REACH_NLRI | MP_UNREACH_NLRI => Some(flag::OPTIONAL),
        AGGREGATOR | COMMUNITIES | EXTENDED_COMMUNITIES | AS4_PATH | AS4_AGGREGATOR | LARGE_COMMUNITY => {
            Some(flag::OPTIONAL | flag::TRANSITIVE)
        }
        _ => None,
    }
}

/// The RFC 7606 approach for a malformed attribute of type `code`.
pub fn malformed_action(code: u8, ctx: &DecodeContext) -> Rfc7606Action {
    use Rfc7606Action::*;
    use type_code::*;
    match code {
        // RFC 7606 7.1: "An UPDATE message with a malformed ORIGIN attribute
        // SHALL be handled using the approach of "treat-as-withdraw"."
        ORIGIN => TreatAsWithdraw,
        // RFC 7606 7.2: "An UPDATE message with a malformed AS_PATH attribute
        // SHALL be handled using the approach of "treat-as-withdraw"."
        AS_PATH => TreatAsWithdraw,
        // RFC 7606 7.3: "An UPDATE message with a malformed NEXT_HOP attribute
        // SHALL be handled using the approach of "treat-as-withdraw"."
        NEXT_HOP => TreatAsWithdraw,
        // RFC 7606 7.4: "An UPDATE message with a malformed MULTI_EXIT_DISC
        // attribute SHALL be handled using the approach of "treat-as-withdraw"."
        MULTI_EXIT_DISC => TreatAsWithdraw,
        // RFC 7606 7.5: "if the LOCAL_PREF attribute is received from an
        // external neighbor, it SHALL be discarded using the approach of
        // "attribute discard"; or if received from an internal neighbor, it
        // SHALL be considered malformed if its length is not equal to 4. If
        // malformed, the UPDATE message SHALL be handled using the approach of
        // "treat-as-withdraw"."
        LOCAL_PREF if !ctx.ibgp => AttributeDiscard,
        LOCAL_PREF => TreatAsWithdraw,
        // RFC 7606 7.6: "An UPDATE message with a malformed ATOMIC_AGGREGATE
        // attribute SHALL be handled using the approach of "attribute discard"."
        ATOMIC_AGGREGATE => AttributeDiscard,
        // RFC 7606 7.7: "An UPDATE message with a malformed AGGREGATOR
        // attribute SHALL be handled using the approach of "attribute discard"."
        AGGREGATOR => AttributeDiscard,
        // RFC 7606 7.8: "An UPDATE message with a malformed Community
        // attribute SHALL be handled using the approach of "treat-as-withdraw"."
        COMMUNITIES => TreatAsWithdraw,
        // RFC 7606 7.9: "if the ORIGINATOR_ID attribute is received from an
        // external neighbor, it SHALL be discarded using the approach of
        // "attribute discard"; or if received from an internal neighbor, it
        // SHALL be considered malformed if its length is not equal to 4. If
        // malformed, the UPDATE message SHALL be handled using the approach of
        // "treat-as-withdraw"."
        ORIGINATOR_ID if !ctx.ibgp => AttributeDiscard,
        ORIGINATOR_ID => TreatAsWithdraw,
        // RFC 7606 7.10: "if the CLUSTER_LIST attribute is received from an
        // external neighbor, it SHALL be discarded using the approach of
        // "attribute discard"; or if received from an internal neighbor, it
        // SHALL be considered malformed if its length is not a non-zero
        // multiple of 4. If malformed, the UPDATE message SHALL be handled
        // using the approach of "treat-as-withdraw"."
        CLUSTER_LIST if !ctx.ibgp => AttributeDiscard,
        CLUSTER_LIST => TreatAsWithdraw,
        // RFC 7606 7.11: "the "session reset" or "AFI/SAFI disable" approach
        // MUST be used."
        MP_REACH_NLRI | MP_UNREACH_NLRI => SessionReset,
        // RFC 7606 7.14: "An UPDATE message with a malformed Extended
        // Community attribute SHALL be handled using the approach of
        // "treat-as-withdraw"."
        EXTENDED_COMMUNITIES => TreatAsWithdraw,
        // RFC 6793 section 6: "the "attribute discard" approach is chosen to
        // handle a malformed AS4_PATH attribute" and likewise "a NEW BGP
        // speaker SHALL discard" a malformed AS4_AGGREGATOR.
        AS4_PATH | AS4_AGGREGATOR => AttributeDiscard,
        // RFC 8092 section 6: "The error handling of Large Communities is as
        // follows: [...] An UPDATE message with a malformed Large Communities
        // attribute SHALL be handled using the approach of "treat-as-withdraw"."
        LARGE_COMMUNITY => TreatAsWithdraw,
        // RFC 9234 section 5: an OTC attribute whose length is not 4 is
        // malformed, and the UPDATE is handled as treat-as-withdraw.
        ONLY_TO_CUSTOMER => TreatAsWithdraw,
        // Unknown attributes are opaque and never malformed.
        _ => Ok,
    }
}

/// Decodes an attribute value. `Err` means malformed; the caller keeps the
/// octets as [`AttributeValue::Raw`] and applies [`malformed_action`].
pub(crate) fn decode_value(
    code: u8,
    data: &[u8],
    attribute: &[u8],
    ctx: &DecodeContext,
) -> Result<AttributeValue, UpdateError> {
    use type_code::*;
    let whole = || Bytes::copy_from_slice(attribute);
    let length_error = || UpdateError::AttributeLength { attribute: whole() };
    let u32_value = || <[u8; 4]>::try_from(data).map(u32::from_be_bytes).map_err(|_| length_error());
    let value = match code {
        // RFC 7606 7.1: "The attribute is considered malformed if its length
        // is not 1 or it has an undefined value [RFC4271]."
        ORIGIN => match *data {
            [0] => AttributeValue::Origin(Origin::Igp),
            [1] => AttributeValue::Origin(Origin::Egp),
            [2] => AttributeValue::Origin(Origin::Incomplete),
            [_] => return Err(UpdateError::InvalidOrigin { attribute: whole() }),
            _ => return Err(length_error()),
        },
        AS_PATH => AttributeValue::AsPath(AsPath::decode(data, ctx.four_octet_as).ok_or(UpdateError::MalformedAsPath)?),
        // RFC 7606 7.3: "The attribute is considered malformed if its length
        // is not 4 [RFC4271]."
        NEXT_HOP => AttributeValue::NextHop(Ipv4Addr::from(u32_value()?)),
        // RFC 7606 7.4: "The attribute is considered malformed if its length
        // is not 4 [RFC4271]."
        MULTI_EXIT_DISC => AttributeValue::MultiExitDisc(u32_value()?),
        LOCAL_PREF => AttributeValue::LocalPref(u32_value()?),
        // RFC 7606 7.6: "The attribute SHALL be considered malformed if its
        // length is not 0 [RFC4271]."
        ATOMIC_AGGREGATE if data.is_empty() => AttributeValue::AtomicAggregate,
        ATOMIC_AGGREGATE => return Err(length_error()),
        // RFC 7606 7.7: "The AGGREGATOR attribute SHALL be considered
        // malformed if any of the following applies: o Its length is not 6
        // (when the "4-octet AS number capability" is not advertised to, or
        // not received from, the peer [RFC6793]). o Its length is not 8 (when
        // the "4-octet AS number capability" is both advertised to and
        // received from the peer)."
        AGGREGATOR => AttributeValue::Aggregator(decode_aggregator(data, ctx.four_octet_as).ok_or_else(length_error)?),
        // RFC 7606 7.8: "The Community attribute SHALL be considered
        // malformed if its length is not a non-zero multiple of 4."
        COMMUNITIES => AttributeValue::Communities(
            fixed_chunks::<4>(data).ok_or_else(length_error)?.map(|c| Community(u32::from_be_bytes(c))).collect(),
        ),
        ORIGINATOR_ID => AttributeValue::OriginatorId(Ipv4Addr::from(u32_value()?)),
        CLUSTER_LIST => {
            AttributeValue::ClusterList(fixed_chunks::<4>(data).ok_or_else(length_error)?.map(Ipv4Addr::from).collect())
        }
        MP_REACH_NLRI => AttributeValue::MpReachNlri(
            MpReachNlri::decode(data, ctx)
                .map_err(|reason| UpdateError::OptionalAttribute { attribute: whole(), reason })?,
        ),
        MP_UNREACH_NLRI => AttributeValue::MpUnreachNlri(
            MpUnreachNlri::decode(data, ctx)
                .map_err(|reason| UpdateError::OptionalAttribute { attribute: whole(), reason })?,
        ),
        // RFC 7606 7.14: "The Extended Community attribute SHALL be considered
        // malformed if its length is not a non-zero multiple of 8."
        EXTENDED_COMMUNITIES => AttributeValue::ExtendedCommunities(
            fixed_chunks::<8>(data).ok_or_else(length_error)?.map(ExtendedCommunity).collect(),
        ),
        // RFC 6793 section 6: "the path segment length in the attribute is
        // either zero or is inconsistent with the attribute length, or the
        // path segment type in the attribute is not one of the types defined"
        AS4_PATH => AttributeValue::As4Path(
            AsPath::decode(data, true)
                .ok_or(UpdateError::OptionalAttribute { attribute: whole(), reason: "malformed AS4_PATH" })?,
        ),
        AS4_AGGREGATOR => AttributeValue::As4Aggregator(decode_aggregator(data, true).ok_or_else(length_error)?),
        // RFC 8092 section 6: "A Large Communities attribute SHALL be
        // considered malformed if the length of the Large Communities
        // Attribute value, expressed in octets, is not a non-zero multiple of 12."
        LARGE_COMMUNITY => AttributeValue::LargeCommunities(
            fixed_chunks::<12>(data)
                .ok_or_else(length_error)?
                .map(|c| {
                    let [a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3] = c;
                    LargeCommunity {
                        global_admin: u32::from_be_bytes([a0, a1, a2, a3]),
                        local_data_1: u32::from_be_bytes([b0, b1, b2, b3]),
                        local_data_2: u32::from_be_bytes([c0, c1, c2, c3]),
                    }
                })
                .collect(),
        ),
        ONLY_TO_CUSTOMER if data.len() != 4 => return Err(length_error()),
        _ => AttributeValue::Raw { type_code: code, data: Bytes::copy_from_slice(data) },
    };
    Ok(value)
}

/// Splits `data` into arrays of N octets; `None` unless its length is a
/// non-zero multiple of N (the rule RFC 7606 gives every list attribute).
fn fixed_chunks<const N: usize>(data: &[u8]) -> Option<impl Iterator<Item = [u8; N]> + '_> {
    if data.is_empty() || !data.len().is_multiple_of(N) {
        return None;
    }
    // `map` rather than `filter_map` keeps the exact size hint, so `collect`
    // allocates once; `chunks_exact` never yields a chunk of another size.
    Some(data.chunks_exact(N).map(|chunk| <[u8; N]>::try_from(chunk).unwrap_or([0; N])))
}

fn decode_aggregator(data: &[u8], four_octet: bool) -> Option<Aggregator> {
    let (rest, asn) = if four_octet {
        parse::ok(parse::u32(data))?
    } else {
        parse::ok(parse::u16(data)).map(|(rest, asn)| (rest, u32::from(asn)))?
    };
    let (rest, address) = parse::ok(parse::ipv4(rest))?;
    rest.is_empty().then_some(Aggregator { four_octet, asn, address })
}

fn encode_value(value: &AttributeValue, out: &mut BytesMut) -> Result<(), EncodeError> {
    match value {
        AttributeValue::Origin(origin) => out.put_u8(match origin {
            Origin::Igp => 0,
            Origin::Egp => 1,
            Origin::Incomplete => 2,
        }),
        AttributeValue::AsPath(path) | AttributeValue::As4Path(path) => path.encode(out)?,
        AttributeValue::NextHop(addr) | AttributeValue::OriginatorId(addr) => out.put_slice(&addr.octets()),
        AttributeValue::MultiExitDisc(value) | AttributeValue::LocalPref(value) => out.put_u32(*value),
        AttributeValue::AtomicAggregate => {}
        AttributeValue::Aggregator(aggregator) | AttributeValue::As4Aggregator(aggregator) => {
            if aggregator.four_octet {
                out.put_u32(aggregator.asn);
            } else {
                out.put_u16(u16::try_from(aggregator.asn).unwrap_or(super::open::AS_TRANS));
            }
            out.put_slice(&aggregator.address.octets());
        }
        AttributeValue::Communities(communities) => communities.iter().for_each(|community| out.put_u32(community.0)),
        AttributeValue::ClusterList(ids) => ids.iter().for_each(|id| out.put_slice(&id.octets())),
        AttributeValue::MpReachNlri(reach) => reach.encode(out)?,
        AttributeValue::MpUnreachNlri(unreach) => unreach.encode(out),
        AttributeValue::ExtendedCommunities(communities) => {
            communities.iter().for_each(|community| out.put_slice(&community.0))
        }
        AttributeValue::LargeCommunities(communities) => {
            for community in communities {
                out.put_u32(community.global_admin);
                out.put_u32(community.local_data_1);
                out.put_u32(community.local_data_2);
            }
        }
        AttributeValue::Raw { data, .. } => out.put_slice(data),
    }
    Ok(())
}
