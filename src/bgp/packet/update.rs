//! UPDATE message (RFC 4271 section 4.3): structural decoding. The semantic
//! checks (mandatory attributes, next hop, duplicates) are in [`super::check`].

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::as_path::AsPath;
use super::attribute::{self, AttributeValue, PathAttribute, flag, type_code};
use super::community::{Community, ExtendedCommunity, LargeCommunity};
use super::context::DecodeContext;
use super::error::{EncodeError, Rfc7606Action, UpdateError, UpdateOutcome, fits};
use super::family::Family;
use super::mp::{MpNlri, MpReachNlri, MpUnreachNlri};
use super::nlri::{self, Nlri};
use super::parse;

/// An UPDATE message, lossless: attributes stay in wire order with their
/// flags, and malformed or unknown ones keep their octets.
///
/// ```text
/// +-----------------------------------------------------+
/// |   Withdrawn Routes Length (2 octets)                |
/// +-----------------------------------------------------+
/// |   Withdrawn Routes (variable)                       |
/// +-----------------------------------------------------+
/// |   Total Path Attribute Length (2 octets)            |
/// +-----------------------------------------------------+
/// |   Path Attributes (variable)                        |
/// +-----------------------------------------------------+
/// |   Network Layer Reachability Information (variable) |
/// +-----------------------------------------------------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpdateMessage {
    /// IPv4 unicast withdrawals.
    #[serde(default)]
    pub withdrawn: Vec<Nlri>,
    #[serde(default)]
    pub attributes: Vec<PathAttribute>,
    /// Octets at the end of the path attributes that do not form a whole
    /// attribute (RFC 7606 section 4 overrun); empty in a valid UPDATE.
    #[serde(default, skip_serializing_if = "Bytes::is_empty", with = "super::hex_bytes")]
    pub unparsed_attributes: Bytes,
    /// IPv4 unicast announcements.
    #[serde(default)]
    pub nlri: Vec<Nlri>,
}

impl UpdateMessage {
    /// The End-of-RIB marker for a family (RFC 4724 section 2): an empty
    /// UPDATE for IPv4 unicast, an empty MP_UNREACH_NLRI for the others.
    pub fn end_of_rib(family: Family) -> Self {
        if family == Family::IPV4_UNICAST {
            return UpdateMessage::default();
        }
        let withdrawn = if family.is_ip_unicast() { MpNlri::Prefixes(Vec::new()) } else { MpNlri::Raw(Bytes::new()) };
        UpdateMessage {
            attributes: vec![PathAttribute::new(AttributeValue::MpUnreachNlri(MpUnreachNlri { family, withdrawn }))],
            ..UpdateMessage::default()
        }
    }

    /// The family whose End-of-RIB this is, if it is one.
    pub fn as_end_of_rib(&self) -> Option<Family> {
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() || !self.unparsed_attributes.is_empty() {
            return None;
        }
        match self.attributes.as_slice() {
            [] => Some(Family::IPV4_UNICAST),
            [PathAttribute { value: AttributeValue::MpUnreachNlri(unreach), .. }] => {
                let empty = match &unreach.withdrawn {
                    MpNlri::Prefixes(prefixes) => prefixes.is_empty(),
                    MpNlri::Raw(octets) => octets.is_empty(),
                };
                empty.then_some(unreach.family)
            }
            _ => None,
        }
    }

    /// The first attribute of a type.
    pub fn attribute(&self, code: u8) -> Option<&AttributeValue> {
        self.attributes.iter().map(|attribute| &attribute.value).find(|value| value.type_code() == code)
    }

    pub fn origin(&self) -> Option<attribute::Origin> {
        match self.attribute(type_code::ORIGIN)? {
            AttributeValue::Origin(origin) => Some(*origin),
            _ => None,
        }
    }

    pub fn as_path(&self) -> Option<&AsPath> {
        match self.attribute(type_code::AS_PATH)? {
            AttributeValue::AsPath(path) => Some(path),
            _ => None,
        }
    }

    pub fn next_hop(&self) -> Option<std::net::Ipv4Addr> {
        match self.attribute(type_code::NEXT_HOP)? {
            AttributeValue::NextHop(addr) => Some(*addr),
            _ => None,
        }
    }

    pub fn multi_exit_disc(&self) -> Option<u32> {
        match self.attribute(type_code::MULTI_EXIT_DISC)? {
            AttributeValue::MultiExitDisc(value) => Some(*value),
            _ => None,
        }
    }

    pub fn local_pref(&self) -> Option<u32> {
        match self.attribute(type_code::LOCAL_PREF)? {
            AttributeValue::LocalPref(value) => Some(*value),
            _ => None,
        }
    }

    pub fn communities(&self) -> &[Community] {
        match self.attribute(type_code::COMMUNITIES) {
            Some(AttributeValue::Communities(values)) => values,
            _ => &[],
        }
    }

    pub fn extended_communities(&self) -> &[ExtendedCommunity] {
        match self.attribute(type_code::EXTENDED_COMMUNITIES) {
            Some(AttributeValue::ExtendedCommunities(values)) => values,
            _ => &[],
        }
    }

    pub fn large_communities(&self) -> &[LargeCommunity] {
        match self.attribute(type_code::LARGE_COMMUNITY) {
            Some(AttributeValue::LargeCommunities(values)) => values,
            _ => &[],
        }
    }

    pub fn mp_reach(&self) -> Option<&MpReachNlri> {
        match self.attribute(type_code::MP_REACH_NLRI)? {
            AttributeValue::MpReachNlri(reach) => Some(reach),
            _ => None,
        }
    }

    pub fn mp_unreach(&self) -> Option<&MpUnreachNlri> {
        match self.attribute(type_code::MP_UNREACH_NLRI)? {
            AttributeValue::MpUnreachNlri(unreach) => Some(unreach),
            _ => None,
        }
    }

    /// Every announced prefix: the NLRI field (IPv4 unicast) then MP_REACH_NLRI.
    pub fn announced(&self) -> impl Iterator<Item = (Family, &Nlri)> {
        let field = self.nlri.iter().map(|nlri| (Family::IPV4_UNICAST, nlri));
        let mp = self
            .mp_reach()
            .into_iter()
            .flat_map(|reach| reach.nlri.prefixes().iter().map(move |nlri| (reach.family, nlri)));
        field.chain(mp)
    }

    /// Every withdrawn prefix: Withdrawn Routes (IPv4 unicast) then MP_UNREACH_NLRI.
    pub fn withdrawn_routes(&self) -> impl Iterator<Item = (Family, &Nlri)> {
        let field = self.withdrawn.iter().map(|nlri| (Family::IPV4_UNICAST, nlri));
        let mp = self
            .mp_unreach()
            .into_iter()
            .flat_map(|unreach| unreach.withdrawn.prefixes().iter().map(move |nlri| (unreach.family, nlri)));
        field.chain(mp)
    }

    /// The prefixes to withdraw under `outcome`: the withdrawals, plus the
    /// announcements when the outcome is treat-as-withdraw.
    pub fn withdrawals_under(&self, outcome: &UpdateOutcome) -> Vec<(Family, Nlri)> {
        let mut all: Vec<(Family, Nlri)> = self.withdrawn_routes().map(|(family, nlri)| (family, *nlri)).collect();
        if outcome.action() == Rfc7606Action::TreatAsWithdraw {
            all.extend(self.announced().map(|(family, nlri)| (family, *nlri)));
        }
        all
    }

    /// Structural decoding of the UPDATE body. `Err` resets the session; the
    /// faults returned with the message do not.
    pub(crate) fn decode(body: &[u8], ctx: &DecodeContext) -> Result<(UpdateMessage, UpdateOutcome), UpdateError> {
        let list_error = |reason| UpdateError::MalformedAttributeList { reason };
        let (rest, withdrawn_len) = parse::ok(parse::u16(body)).ok_or(list_error("no Withdrawn Routes Length"))?;
        // RFC 7606 section 3(b): "If the Withdrawn Routes Length or Total
        // Attribute Length is too large (i.e., if Withdrawn Routes Length +
        // Total Attribute Length + 23 exceeds the message Length), then the
        // Error Subcode MUST be set to Malformed Attribute List."
        let (rest, withdrawn_field) = parse::ok(parse::take(rest, usize::from(withdrawn_len)))
            .ok_or(list_error("Withdrawn Routes Length exceeds the message"))?;
        let (rest, attributes_len) =
            parse::ok(parse::u16(rest)).ok_or(list_error("Withdrawn Routes Length exceeds the message"))?;
        let (nlri_field, attributes_field) = parse::ok(parse::take(rest, usize::from(attributes_len)))
            .ok_or(list_error("Total Attribute Length exceeds the message"))?;
        // RFC 7606 section 3(i): "The Withdrawn Routes field MUST be checked
        // for syntactic correctness in the same manner as the NLRI field."
        let add_path_v4 = ctx.add_path.contains(Family::IPV4_UNICAST);
        let withdrawn = nlri::decode_nlri(withdrawn_field, Family::IPV4_UNICAST, add_path_v4)
            .map_err(|_| UpdateError::InvalidNetworkField { reason: "Withdrawn Routes" })?;
        let mut outcome = UpdateOutcome::default();
        let (attributes, unparsed_attributes) = decode_attributes(attributes_field, ctx, &mut outcome)?;
        // RFC 4271 6.3: "The NLRI field in the UPDATE message is checked for
        // syntactic validity. If the field is syntactically incorrect, then
        // the Error Subcode MUST be set to Invalid Network Field." (RFC 7606
        // 5.3 keeps "session reset" for it.)
        let nlri = nlri::decode_nlri(nlri_field, Family::IPV4_UNICAST, add_path_v4)
            .map_err(|_| UpdateError::InvalidNetworkField { reason: "NLRI" })?;
        Ok((UpdateMessage { withdrawn, attributes, unparsed_attributes, nlri }, outcome))
    }

    pub(crate) fn encode_body(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let withdrawn_len = nlri::encoded_nlri_len(&self.withdrawn);
        fits("Withdrawn Routes", withdrawn_len, usize::from(u16::MAX))?;
        out.put_u16(withdrawn_len as u16);
        nlri::encode_nlri(&self.withdrawn, out);
        let length_at = out.len();
        out.put_u16(0);
        for attribute in &self.attributes {
            attribute.encode(out)?;
        }
        out.put_slice(&self.unparsed_attributes);
        let attributes_len = out.len() - length_at - 2;
        fits("path attributes", attributes_len, usize::from(u16::MAX))?;
        if let Some(slot) = out.get_mut(length_at..length_at + 2) {
            slot.copy_from_slice(&(attributes_len as u16).to_be_bytes());
        }
        nlri::encode_nlri(&self.nlri, out);
        Ok(())
    }
}

/// Decodes the path attributes field, recording per-attribute faults.
fn decode_attributes(
    mut input: &[u8],
    ctx: &DecodeContext,
    outcome: &mut UpdateOutcome,
) -> Result<(Vec<PathAttribute>, Bytes), UpdateError> {
    let mut attributes = Vec::with_capacity(8);
    let (mut seen_reach, mut seen_unreach) = (false, false);
    while !input.is_empty() {
        let Some((flags, code, data, rest)) = split_attribute(input) else {
            // RFC 7606 section 4: "There are two error cases in which the
            // Total Attribute Length value can be in conflict with the
            // enclosed path attributes [...] In either of these cases, an
            // error condition exists and the "treat-as-withdraw" approach MUST
            // be used (unless some other, more severe error is encountered
            // dictating a stronger approach), and the Total Attribute Length
            // MUST be relied upon to enable the beginning of the NLRI field to
            // be located."
            let code = input.get(1).copied().unwrap_or(0);
            outcome.push(None, code, Rfc7606Action::TreatAsWithdraw, UpdateError::AttributeListOverrun);
            return Ok((attributes, Bytes::copy_from_slice(input)));
        };
        let attribute_octets = input.get(..input.len() - rest.len()).unwrap_or_default();
        input = rest;
        let index = attributes.len();
        // RFC 7606 section 3(g): "If the MP_REACH_NLRI attribute or the
        // MP_UNREACH_NLRI [RFC4760] attribute appears more than once in the
        // UPDATE message, then a NOTIFICATION message MUST be sent with the
        // Error Subcode "Malformed Attribute List"."
        let seen = match code {
            type_code::MP_REACH_NLRI => Some(&mut seen_reach),
            type_code::MP_UNREACH_NLRI => Some(&mut seen_unreach),
            _ => None,
        };
        if let Some(seen) = seen {
            if *seen {
                return Err(UpdateError::MalformedAttributeList {
                    reason: "MP_REACH_NLRI or MP_UNREACH_NLRI appears twice",
                });
            }
            *seen = true;
        }
        let expected = attribute::expected_flags(code);
        // RFC 4271 6.3: "If any of the well-known mandatory attributes are
        // not recognized, then the Error Subcode MUST be set to Unrecognized
        // Well-known Attribute. The Data field MUST contain the unrecognized
        // attribute (type, length, and value)."
        if expected.is_none() && flags & flag::OPTIONAL == 0 {
            return Err(UpdateError::UnrecognizedWellKnownAttribute {
                attribute: Bytes::copy_from_slice(attribute_octets),
            });
        }
        // RFC 7606 section 3(c): "If the value of either the Optional or
        // Transitive bits in the Attribute Flags is in conflict with their
        // specified values, then the attribute MUST be treated as malformed
        // and the "treat-as-withdraw" approach used, unless the specification
        // for the attribute mandates different handling for incorrect
        // Attribute Flags." Sections 3(f), 7.5, 7.9 and 7.10 and RFC 6793
        // mandate "attribute discard" for some types, which
        // `malformed_action` gives; for MP_REACH_NLRI / MP_UNREACH_NLRI no
        // different handling is mandated for flags, so the rule holds as is.
        if let Some(expected) = expected
            && flags & (flag::OPTIONAL | flag::TRANSITIVE) != expected
        {
            let action = match attribute::malformed_action(code, ctx) {
                Rfc7606Action::SessionReset => Rfc7606Action::TreatAsWithdraw,
                action => action,
            };
            let error = UpdateError::AttributeFlags { attribute: Bytes::copy_from_slice(attribute_octets) };
            outcome.push(Some(index), code, action, error);
        }
        let value = match attribute::decode_value(code, data, attribute_octets, ctx) {
            Ok(value) => value,
            Err(error) => {
                let action = attribute::malformed_action(code, ctx);
                if action == Rfc7606Action::SessionReset {
                    return Err(error);
                }
                outcome.push(Some(index), code, action, error);
                AttributeValue::Raw { type_code: code, data: Bytes::copy_from_slice(data) }
            }
        };
        attributes.push(PathAttribute { flags, value });
    }
    Ok((attributes, Bytes::new()))
}

/// Splits one attribute off the front: flags, type code, value, rest.
/// `None` when the header or the value overruns the input.
fn split_attribute(input: &[u8]) -> Option<(u8, u8, &[u8], &[u8])> {
    let (rest, flags) = parse::ok(parse::u8(input))?;
    let (rest, code) = parse::ok(parse::u8(rest))?;
    let (rest, length) = if flags & flag::EXTENDED_LENGTH != 0 {
        parse::ok(parse::u16(rest))?
    } else {
        parse::ok(parse::u8(rest)).map(|(rest, length)| (rest, u16::from(length)))?
    };
    let (rest, data) = parse::ok(parse::take(rest, usize::from(length)))?;
    Some((flags, code, data, rest))
}
