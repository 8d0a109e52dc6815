//! Typed decode errors, one enum per layer, and the single place where each is
//! mapped to the NOTIFICATION code, subcode and data that RFC 4271 section 6
//! prescribes. Also the RFC 7606 actions and the outcome of checking an UPDATE.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::header::MessageType;
use super::notification::{NotificationMessage, code};

/// Errors in the fixed message header (RFC 4271 section 6.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the marker is not all ones")]
    ConnectionNotSynchronized,
    #[error("bad message length {length}")]
    BadMessageLength { length: u16 },
    #[error("bad message type {message_type}")]
    BadMessageType { message_type: u8 },
}

/// Errors in an OPEN message (RFC 4271 section 6.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported version number {version}")]
    UnsupportedVersionNumber { version: u8 },
    #[error("bad peer AS {asn}")]
    BadPeerAs { asn: u32 },
    #[error("bad BGP identifier {identifier}")]
    BadBgpIdentifier { identifier: std::net::Ipv4Addr },
    #[error("unacceptable hold time {hold_time}")]
    UnacceptableHoldTime { hold_time: u16 },
    #[error("unsupported optional parameter type {parameter_type}")]
    UnsupportedOptionalParameter { parameter_type: u8 },
    #[error("malformed OPEN: {reason}")]
    Malformed { reason: &'static str },
}

/// Errors in an UPDATE message (RFC 4271 section 6.3, RFC 7606). Whether one
/// resets the session is decided where it is detected, not here: RFC 7606
/// turns most of them into treat-as-withdraw or attribute-discard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("malformed attribute list: {reason}")]
    MalformedAttributeList { reason: &'static str },
    #[error("unrecognized well-known attribute")]
    UnrecognizedWellKnownAttribute { attribute: Bytes },
    #[error("missing well-known attribute {type_code}")]
    MissingWellKnownAttribute { type_code: u8 },
    #[error("attribute flags conflict with the attribute type")]
    AttributeFlags { attribute: Bytes },
    #[error("attribute length error")]
    AttributeLength { attribute: Bytes },
    #[error("invalid ORIGIN value")]
    InvalidOrigin { attribute: Bytes },
    #[error("invalid NEXT_HOP: {reason}")]
    InvalidNextHop { attribute: Bytes, reason: &'static str },
    #[error("optional attribute error: {reason}")]
    OptionalAttribute { attribute: Bytes, reason: &'static str },
    #[error("invalid network field: {reason}")]
    InvalidNetworkField { reason: &'static str },
    #[error("malformed AS_PATH")]
    MalformedAsPath,
    #[error("attribute {type_code} appears more than once")]
    DuplicateAttribute { type_code: u8 },
    #[error("attribute {type_code} is not accepted from this peer: {reason}")]
    UnexpectedAttribute { type_code: u8, reason: &'static str },
    #[error("the path attributes overrun the Total Attribute Length")]
    AttributeListOverrun,
}

/// Errors in a ROUTE-REFRESH message (RFC 7313 section 5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteRefreshError {
    #[error("invalid ROUTE-REFRESH message length")]
    InvalidMessageLength { message: Bytes },
}

/// Any error that resets the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message header: {0}")]
    Header(#[from] HeaderError),
    #[error("OPEN: {0}")]
    Open(#[from] OpenError),
    #[error("UPDATE: {0}")]
    Update(#[from] UpdateError),
    #[error("ROUTE-REFRESH: {0}")]
    RouteRefresh(#[from] RouteRefreshError),
}

impl MessageError {
    /// The NOTIFICATION to send for this error: the one place where typed
    /// errors become code, subcode and data.
    pub fn notification(&self) -> NotificationMessage {
        use code::{header, open};
        let (error_code, subcode, data): (u8, u8, Bytes) = match self {
            // RFC 4271 6.1: "If at least one of the following is true: - if
            // the Length field of the message header is less than 19 or greater
            // than 4096, or [...] then the Error Subcode MUST be set to Bad
            // Message Length. The Data field MUST contain the erroneous Length field."
            MessageError::Header(HeaderError::ConnectionNotSynchronized) => {
                (code::MESSAGE_HEADER_ERROR, header::CONNECTION_NOT_SYNCHRONIZED, Bytes::new())
            }
            MessageError::Header(HeaderError::BadMessageLength { length }) => {
                (code::MESSAGE_HEADER_ERROR, header::BAD_MESSAGE_LENGTH, Bytes::copy_from_slice(&length.to_be_bytes()))
            }
            // RFC 4271 6.1: "If the Type field of the message header is not
            // recognized, then the Error Subcode MUST be set to Bad Message
            // Type. The Data field MUST contain the erroneous Type field."
            MessageError::Header(HeaderError::BadMessageType { message_type }) => {
                (code::MESSAGE_HEADER_ERROR, header::BAD_MESSAGE_TYPE, Bytes::copy_from_slice(&[*message_type]))
            }
            // RFC 4271 6.2: "The Data field is a 2-octet unsigned integer,
            // which indicates the largest, locally-supported version number
            // less than the version the remote BGP peer bid"
            MessageError::Open(OpenError::UnsupportedVersionNumber { .. }) => {
                (code::OPEN_MESSAGE_ERROR, open::UNSUPPORTED_VERSION_NUMBER, Bytes::from_static(&[0, 4]))
            }
            MessageError::Open(OpenError::BadPeerAs { .. }) => {
                (code::OPEN_MESSAGE_ERROR, open::BAD_PEER_AS, Bytes::new())
            }
            MessageError::Open(OpenError::BadBgpIdentifier { .. }) => {
                (code::OPEN_MESSAGE_ERROR, open::BAD_BGP_IDENTIFIER, Bytes::new())
            }
            MessageError::Open(OpenError::UnacceptableHoldTime { .. }) => {
                (code::OPEN_MESSAGE_ERROR, open::UNACCEPTABLE_HOLD_TIME, Bytes::new())
            }
            MessageError::Open(OpenError::UnsupportedOptionalParameter { .. }) => {
                (code::OPEN_MESSAGE_ERROR, open::UNSUPPORTED_OPTIONAL_PARAMETER, Bytes::new())
            }
            // RFC 4271 6.2: "If one of the Optional Parameters in the OPEN
            // message is recognized, but is malformed, then the Error Subcode
            // MUST be set to 0 (Unspecific)."
            MessageError::Open(OpenError::Malformed { .. }) => {
                (code::OPEN_MESSAGE_ERROR, open::UNSPECIFIC, Bytes::new())
            }
            MessageError::Update(error) => {
                let (subcode, data) = update_subcode_and_data(error);
                (code::UPDATE_MESSAGE_ERROR, subcode, data)
            }
            // RFC 7313 section 5: "the BGP speaker MUST send a NOTIFICATION
            // message with the Error Code of "ROUTE-REFRESH Message Error" and
            // the subcode of "Invalid Message Length". The Data field of the
            // NOTIFICATION message MUST contain the complete ROUTE-REFRESH message."
            MessageError::RouteRefresh(RouteRefreshError::InvalidMessageLength { message }) => {
                (code::ROUTE_REFRESH_MESSAGE_ERROR, 1, message.clone())
            }
        };
        NotificationMessage::new(error_code, subcode, data)
    }
}

fn update_subcode_and_data(error: &UpdateError) -> (u8, Bytes) {
    use code::update::*;
    match error {
        UpdateError::MalformedAttributeList { .. }
        | UpdateError::DuplicateAttribute { .. }
        | UpdateError::AttributeListOverrun => (MALFORMED_ATTRIBUTE_LIST, Bytes::new()),
        // RFC 4271 6.3: "The Data field MUST contain the unrecognized
        // attribute (type, length, and value)."
        UpdateError::UnrecognizedWellKnownAttribute { attribute } => {
            (UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE, attribute.clone())
        }
        // RFC 4271 6.3: "The Data field MUST contain the Attribute Type Code
        // of the missing, well-known attribute."
        UpdateError::MissingWellKnownAttribute { type_code } => {
            (MISSING_WELL_KNOWN_ATTRIBUTE, Bytes::copy_from_slice(&[*type_code]))
        }
        UpdateError::AttributeFlags { attribute } => (ATTRIBUTE_FLAGS_ERROR, attribute.clone()),
        UpdateError::AttributeLength { attribute } => (ATTRIBUTE_LENGTH_ERROR, attribute.clone()),
        UpdateError::InvalidOrigin { attribute } => (INVALID_ORIGIN_ATTRIBUTE, attribute.clone()),
        UpdateError::InvalidNextHop { attribute, .. } => (INVALID_NEXT_HOP_ATTRIBUTE, attribute.clone()),
        UpdateError::OptionalAttribute { attribute, .. } => (OPTIONAL_ATTRIBUTE_ERROR, attribute.clone()),
        UpdateError::UnexpectedAttribute { .. } => (OPTIONAL_ATTRIBUTE_ERROR, Bytes::new()),
        UpdateError::InvalidNetworkField { .. } => (INVALID_NETWORK_FIELD, Bytes::new()),
        UpdateError::MalformedAsPath => (MALFORMED_AS_PATH, Bytes::new()),
    }
}

/// The RFC 7606 approaches, weakest first so that `max` picks the strongest
/// (RFC 7606 section 3(h)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rfc7606Action {
    /// No error.
    #[default]
    Ok,
    /// Drop the faulty attribute; the rest of the UPDATE stands.
    AttributeDiscard,
    /// Treat every prefix the UPDATE announces as withdrawn.
    TreatAsWithdraw,
    /// Send the NOTIFICATION and close the session.
    SessionReset,
}

impl Rfc7606Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Rfc7606Action::Ok => "ok",
            Rfc7606Action::AttributeDiscard => "attribute-discard",
            Rfc7606Action::TreatAsWithdraw => "treat-as-withdraw",
            Rfc7606Action::SessionReset => "session-reset",
        }
    }
}

/// One error found in an UPDATE that does not reset the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeFault {
    /// Index into [`UpdateMessage::attributes`](super::UpdateMessage::attributes)
    /// of the faulty attribute; `None` when the fault is about the list as a
    /// whole (a missing attribute, an overrun).
    pub attribute_index: Option<usize>,
    pub type_code: u8,
    pub action: Rfc7606Action,
    pub error: UpdateError,
}

/// The RFC 7606 verdict on an UPDATE that did not reset the session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdateOutcome {
    pub faults: Vec<AttributeFault>,
}

impl UpdateOutcome {
    /// RFC 7606 section 3(h): "When multiple attribute errors exist in an
    /// UPDATE message, if the same approach [...] is specified for the
    /// handling of these malformed attributes, then the specified approach
    /// MUST be used. Otherwise, the approach with the strongest action MUST be used."
    pub fn action(&self) -> Rfc7606Action {
        self.faults.iter().map(|fault| fault.action).max().unwrap_or_default()
    }

    /// True when the attribute at `index` must be dropped before use.
    pub fn is_discarded(&self, index: usize) -> bool {
        self.faults.iter().any(|fault| fault.attribute_index == Some(index))
    }

    pub(crate) fn push(
        &mut self,
        attribute_index: Option<usize>,
        type_code: u8,
        action: Rfc7606Action,
        error: UpdateError,
    ) {
        self.faults.push(AttributeFault { attribute_index, type_code, action, error });
    }
}

/// Why [`Message::decode`](super::Message::decode) returned no message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer ends before the message does: read more and try again.
    #[error("incomplete message: have {available} octets, need {needed}")]
    Incomplete { available: usize, needed: usize },
    /// The message is invalid in a way that resets the session.
    #[error("{0}")]
    SessionReset(SessionReset),
}

/// A message that resets the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct SessionReset {
    pub error: MessageError,
    /// The message type, when the header could be read.
    pub message_type: Option<MessageType>,
    /// The message length from the header, when it could be trusted; `None`
    /// when the stream can no longer be framed.
    pub length: Option<usize>,
}

impl SessionReset {
    /// The NOTIFICATION to send before closing the session.
    pub fn notification(&self) -> NotificationMessage {
        self.error.notification()
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{what} is {length} octets, more than its length field can hold")]
    FieldTooLong { what: &'static str, length: usize },
    #[error("the message is {length} octets, more than the maximum of {max}")]
    MessageTooLong { length: usize, max: usize },
}

/// Checks that `length` fits a length field of at most `max`.
pub(crate) fn fits(what: &'static str, length: usize, max: usize) -> Result<(), EncodeError> {
    if length > max { Err(EncodeError::FieldTooLong { what, length }) } else { Ok(()) }
}
