//! Semantic checks of a structurally decoded UPDATE (RFC 4271 section 6.3 as
//! revised by RFC 7606): duplicates, mandatory attributes, the next hop, and
//! attributes a peer of this kind must not send. None of them resets the
//! session, and none applies to an UPDATE that only withdraws.

use std::net::Ipv4Addr;

use bytes::Bytes;

use super::attribute::{AttributeValue, type_code};
use super::context::DecodeContext;
use super::error::{Rfc7606Action, UpdateError, UpdateOutcome};
use super::update::UpdateMessage;

/// Adds the semantic faults of `update` to `outcome`.
pub fn check_update(update: &UpdateMessage, ctx: &DecodeContext, outcome: &mut UpdateOutcome) {
    check_duplicates(update, outcome);
    check_peer_kind(update, ctx, outcome);
    let announces = !update.nlri.is_empty() || update.attribute(type_code::MP_REACH_NLRI).is_some();
    if !announces {
        return;
    }
    check_mandatory(update, outcome);
    if !update.nlri.is_empty() {
        check_next_hop(update, outcome);
    }
}

fn check_duplicates(update: &UpdateMessage, outcome: &mut UpdateOutcome) {
    let mut seen = [0u64; 4];
    for (index, attribute) in update.attributes.iter().enumerate() {
        let code = attribute.type_code();
        let Some(word) = seen.get_mut(usize::from(code / 64)) else { continue };
        let bit = 1u64 << (code % 64);
        // RFC 7606 section 3(g): "If any other attribute (whether recognized
        // or unrecognized) appears more than once in an UPDATE message, then
        // all the occurrences of the attribute other than the first one SHALL
        // be discarded and the UPDATE message will continue to be processed."
        if *word & bit != 0 {
            outcome.push(
                Some(index),
                code,
                Rfc7606Action::AttributeDiscard,
                UpdateError::DuplicateAttribute { type_code: code },
            );
        }
        *word |= bit;
    }
}

fn check_peer_kind(update: &UpdateMessage, ctx: &DecodeContext, outcome: &mut UpdateOutcome) {
    for (index, attribute) in update.attributes.iter().enumerate() {
        let code = attribute.type_code();
        let reason = match code {
            // RFC 7606 7.5: "if the LOCAL_PREF attribute is received from an
            // external neighbor, it SHALL be discarded using the approach of
            // "attribute discard""
            type_code::LOCAL_PREF if !ctx.ibgp => "LOCAL_PREF from an external peer",
            // RFC 7606 7.9: "if the ORIGINATOR_ID attribute is received from
            // an external neighbor, it SHALL be discarded using the approach
            // of "attribute discard""
            type_code::ORIGINATOR_ID if !ctx.ibgp => "ORIGINATOR_ID from an external peer",
            // RFC 7606 7.10: "if the CLUSTER_LIST attribute is received from
            // an external neighbor, it SHALL be discarded using the approach
            // of "attribute discard""
            type_code::CLUSTER_LIST if !ctx.ibgp => "CLUSTER_LIST from an external peer",
            // RFC 6793 section 4.1: "A NEW BGP speaker that receives the
            // AS4_PATH attribute or the AS4_AGGREGATOR attribute in an UPDATE
            // message from another NEW BGP speaker MUST discard the path
            // attribute and continue processing the UPDATE message."
            type_code::AS4_PATH | type_code::AS4_AGGREGATOR if ctx.four_octet_as => {
                "AS4 attribute between 4-octet AS speakers"
            }
            _ => continue,
        };
        // A malformed one already carries the same discard.
        if !outcome.is_discarded(index) {
            outcome.push(
                Some(index),
                code,
                Rfc7606Action::AttributeDiscard,
                UpdateError::UnexpectedAttribute { type_code: code, reason },
            );
        }
    }
}

fn check_mandatory(update: &UpdateMessage, outcome: &mut UpdateOutcome) {
    let present = |code| update.attributes.iter().any(|attribute| attribute.type_code() == code);
    // RFC 7606 section 3(d): "If any of the well-known mandatory attributes
    // are not present in an UPDATE message, then "treat-as-withdraw" MUST be
    // used. (Note that [RFC4760] reclassifies NEXT_HOP as what is effectively
    // discretionary.)" -- so NEXT_HOP is required only with the NLRI field.
    let with_next_hop = [type_code::ORIGIN, type_code::AS_PATH, type_code::NEXT_HOP];
    let required = if update.nlri.is_empty() { &with_next_hop[..2] } else { &with_next_hop[..] };
    for &code in required {
        if !present(code) {
            outcome.push(
                None,
                code,
                Rfc7606Action::TreatAsWithdraw,
                UpdateError::MissingWellKnownAttribute { type_code: code },
            );
        }
    }
}

fn check_next_hop(update: &UpdateMessage, outcome: &mut UpdateOutcome) {
    let found = update.attributes.iter().enumerate().find_map(|(index, attribute)| match attribute.value {
        AttributeValue::NextHop(addr) => Some((index, attribute.flags, addr)),
        _ => None,
    });
    let Some((index, flags, addr)) = found else { return };
    let reason = if addr.is_unspecified() {
        "0.0.0.0 is not a host address"
    } else if addr.is_multicast() {
        "a multicast address is not a host address"
    } else if addr == Ipv4Addr::BROADCAST {
        "the broadcast address is not a host address"
    } else {
        return;
    };
    // RFC 4271 6.3: "If the NEXT_HOP attribute field is syntactically
    // incorrect, then the Error Subcode MUST be set to Invalid NEXT_HOP
    // Attribute." and RFC 7606 section 3(e): ""Treat-as-withdraw" MUST be used
    // for the cases that specify a session reset and involve any of the
    // attributes ORIGIN, AS_PATH, NEXT_HOP, MULTI_EXIT_DISC, or LOCAL_PREF."
    let mut attribute = vec![flags, type_code::NEXT_HOP, 4];
    attribute.extend_from_slice(&addr.octets());
    outcome.push(
        Some(index),
        type_code::NEXT_HOP,
        Rfc7606Action::TreatAsWithdraw,
        UpdateError::InvalidNextHop { attribute: Bytes::from(attribute), reason },
    );
}
