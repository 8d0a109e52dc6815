//! The fixed message header (RFC 4271 section 4.1) and stream framing.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                                                               +
//! |                           Marker                              |
//! +                                                               +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use serde::{Deserialize, Serialize};

use super::context::DecodeContext;
use super::error::{DecodeError, HeaderError, MessageError, SessionReset};

pub const MARKER: [u8; 16] = [0xff; 16];
pub const HEADER_LEN: usize = 19;
/// RFC 4271 maximum message size.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// RFC 8654 maximum message size once the extended message capability is negotiated.
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;

/// The five message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageType {
    Open,
    Update,
    Notification,
    Keepalive,
    RouteRefresh,
}

impl MessageType {
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(MessageType::Open),
            2 => Some(MessageType::Update),
            3 => Some(MessageType::Notification),
            4 => Some(MessageType::Keepalive),
            5 => Some(MessageType::RouteRefresh),
            _ => None,
        }
    }

    pub fn code(self) -> u8 {
        match self {
            MessageType::Open => 1,
            MessageType::Update => 2,
            MessageType::Notification => 3,
            MessageType::Keepalive => 4,
            MessageType::RouteRefresh => 5,
        }
    }

    /// The name used in JSON: `open`, `update`, `notification`, `keepalive`, `route-refresh`.
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Open => "open",
            MessageType::Update => "update",
            MessageType::Notification => "notification",
            MessageType::Keepalive => "keepalive",
            MessageType::RouteRefresh => "route-refresh",
        }
    }

    /// The smallest valid length of a message of this type, header included.
    fn min_len(self) -> usize {
        match self {
            MessageType::Open => 29,
            MessageType::Update => 23,
            MessageType::Notification => 21,
            MessageType::Keepalive => 19,
            MessageType::RouteRefresh => 23,
        }
    }

    fn max_len(self, ctx: &DecodeContext) -> usize {
        match self {
            // RFC 8654 section 4: "The BGP Extended Message Capability applies
            // to all messages except for OPEN and KEEPALIVE messages."
            MessageType::Open => MAX_MESSAGE_LEN,
            MessageType::Keepalive => HEADER_LEN,
            _ if ctx.extended_message => MAX_EXTENDED_MESSAGE_LEN,
            _ => MAX_MESSAGE_LEN,
        }
    }
}

/// A checked header: the type and the total length of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub message_type: MessageType,
    pub length: usize,
}

/// Reads and checks the header at the start of `buf`. Returns
/// `Incomplete` until the whole message is in `buf`, so a stream reader can
/// call it after every read.
pub fn frame(buf: &[u8], ctx: &DecodeContext) -> Result<Header, DecodeError> {
    let header: &[u8; HEADER_LEN] = buf
        .get(..HEADER_LEN)
        .and_then(|header| header.try_into().ok())
        .ok_or(DecodeError::Incomplete { available: buf.len(), needed: HEADER_LEN })?;
    let [marker @ .., length_high, length_low, type_code] = *header;
    let reset = |error: HeaderError, message_type, length| {
        DecodeError::SessionReset(SessionReset { error: MessageError::Header(error), message_type, length })
    };
    // RFC 4271 6.1: "If the Marker field of the message header is not as
    // expected, then a synchronization error has occurred and the Error
    // Subcode MUST be set to Connection Not Synchronized."
    if marker != MARKER {
        return Err(reset(HeaderError::ConnectionNotSynchronized, None, None));
    }
    let length_field = u16::from_be_bytes([length_high, length_low]);
    let length = usize::from(length_field);
    let bad_length = HeaderError::BadMessageLength { length: length_field };
    let overall_max = if ctx.extended_message { MAX_EXTENDED_MESSAGE_LEN } else { MAX_MESSAGE_LEN };
    // RFC 4271 6.1: "if the Length field of the message header is less than
    // 19 or greater than 4096 [...] then the Error Subcode MUST be set to Bad
    // Message Length."
    if length < HEADER_LEN || length > overall_max {
        return Err(reset(bad_length, MessageType::from_code(type_code), None));
    }
    // RFC 4271 6.1: "If the Type field of the message header is not
    // recognized, then the Error Subcode MUST be set to Bad Message Type."
    let message_type = MessageType::from_code(type_code).ok_or(reset(
        HeaderError::BadMessageType { message_type: type_code },
        None,
        Some(length),
    ))?;
    // RFC 4271 6.1: "if the Length field of an OPEN message is less than the
    // minimum length of the OPEN message, or if the Length field of an UPDATE
    // message is less than the minimum length of the UPDATE message, or if the
    // Length field of a KEEPALIVE message is not equal to 19, or if the Length
    // field of a NOTIFICATION message is less than the minimum length of the
    // NOTIFICATION message, then the Error Subcode MUST be set to Bad Message Length."
    if length < message_type.min_len() || length > message_type.max_len(ctx) {
        return Err(reset(bad_length, Some(message_type), Some(length)));
    }
    if buf.len() < length {
        return Err(DecodeError::Incomplete { available: buf.len(), needed: length });
    }
    Ok(Header { message_type, length })
}
