//! NOTIFICATION message (RFC 4271 section 4.5), error code and subcode names
//! (RFC 4271, 4486, 5492, 6608, 7313, 8538, 9234, 9384, 9687) and the shutdown
//! communication (RFC 8203, RFC 9003).

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::parse;

/// Error codes and subcodes.
pub mod code {
    pub const MESSAGE_HEADER_ERROR: u8 = 1;
    pub const OPEN_MESSAGE_ERROR: u8 = 2;
    pub const UPDATE_MESSAGE_ERROR: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FINITE_STATE_MACHINE_ERROR: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH_MESSAGE_ERROR: u8 = 7;
    pub const SEND_HOLD_TIMER_EXPIRED: u8 = 8;

    /// Message Header Error subcodes (RFC 4271).
    pub mod header {
        pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
        pub const BAD_MESSAGE_LENGTH: u8 = 2;
        pub const BAD_MESSAGE_TYPE: u8 = 3;
    }

    /// OPEN Message Error subcodes (RFC 4271, RFC 5492, RFC 9234).
    pub mod open {
        pub const UNSPECIFIC: u8 = 0;
        pub const UNSUPPORTED_VERSION_NUMBER: u8 = 1;
        pub const BAD_PEER_AS: u8 = 2;
        pub const BAD_BGP_IDENTIFIER: u8 = 3;
        pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
        pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
        pub const UNSUPPORTED_CAPABILITY: u8 = 7;
        pub const ROLE_MISMATCH: u8 = 11;
    }

    /// UPDATE Message Error subcodes (RFC 4271).
    pub mod update {
        pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
        pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
        pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
        pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
        pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
        pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
        pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
        pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
        pub const INVALID_NETWORK_FIELD: u8 = 10;
        pub const MALFORMED_AS_PATH: u8 = 11;
    }

    /// Cease subcodes (RFC 4486, RFC 8538, RFC 9384).
    pub mod cease {
        pub const MAXIMUM_NUMBER_OF_PREFIXES_REACHED: u8 = 1;
        pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
        pub const PEER_DE_CONFIGURED: u8 = 3;
        pub const ADMINISTRATIVE_RESET: u8 = 4;
        pub const CONNECTION_REJECTED: u8 = 5;
        pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
        pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
        pub const OUT_OF_RESOURCES: u8 = 8;
        pub const HARD_RESET: u8 = 9;
        pub const BFD_DOWN: u8 = 10;
    }
}

/// The name of an error code, as the IANA registry spells it.
pub fn error_code_name(error_code: u8) -> &'static str {
    match error_code {
        code::MESSAGE_HEADER_ERROR => "Message Header Error",
        code::OPEN_MESSAGE_ERROR => "OPEN Message Error",
        code::UPDATE_MESSAGE_ERROR => "UPDATE Message Error",
        code::HOLD_TIMER_EXPIRED => "Hold Timer Expired",
        code::FINITE_STATE_MACHINE_ERROR => "Finite State Machine Error",
        code::CEASE => "Cease",
        code::ROUTE_REFRESH_MESSAGE_ERROR => "ROUTE-REFRESH Message Error",
        code::SEND_HOLD_TIMER_EXPIRED => "Send Hold Timer Expired",
        _ => "Unknown",
    }
}

/// The name of an error subcode within its code, as the IANA registries spell it.
pub fn error_subcode_name(error_code: u8, subcode: u8) -> &'static str {
    match (error_code, subcode) {
        (_, 0) => "Unspecific",
        (code::MESSAGE_HEADER_ERROR, 1) => "Connection Not Synchronized",
        (code::MESSAGE_HEADER_ERROR, 2) => "Bad Message Length",
        (code::MESSAGE_HEADER_ERROR, 3) => "Bad Message Type",
        (code::OPEN_MESSAGE_ERROR, 1) => "Unsupported Version Number",
        (code::OPEN_MESSAGE_ERROR, 2) => "Bad Peer AS",
        (code::OPEN_MESSAGE_ERROR, 3) => "Bad BGP Identifier",
        (code::OPEN_MESSAGE_ERROR, 4) => "Unsupported Optional Parameter",
        (code::OPEN_MESSAGE_ERROR, 5) => "Authentication Failure (deprecated)",
        (code::OPEN_MESSAGE_ERROR, 6) => "Unacceptable Hold Time",
        (code::OPEN_MESSAGE_ERROR, 7) => "Unsupported Capability",
        (code::OPEN_MESSAGE_ERROR, 8..=10) => "Deprecated",
        (code::OPEN_MESSAGE_ERROR, 11) => "Role Mismatch",
        (code::UPDATE_MESSAGE_ERROR, 1) => "Malformed Attribute List",
        (code::UPDATE_MESSAGE_ERROR, 2) => "Unrecognized Well-known Attribute",
        (code::UPDATE_MESSAGE_ERROR, 3) => "Missing Well-known Attribute",
        (code::UPDATE_MESSAGE_ERROR, 4) => "Attribute Flags Error",
        (code::UPDATE_MESSAGE_ERROR, 5) => "Attribute Length Error",
        (code::UPDATE_MESSAGE_ERROR, 6) => "Invalid ORIGIN Attribute",
        (code::UPDATE_MESSAGE_ERROR, 7) => "AS Routing Loop (deprecated)",
        (code::UPDATE_MESSAGE_ERROR, 8) => "Invalid NEXT_HOP Attribute",
        (code::UPDATE_MESSAGE_ERROR, 9) => "Optional Attribute Error",
        (code::UPDATE_MESSAGE_ERROR, 10) => "Invalid Network Field",
        (code::UPDATE_MESSAGE_ERROR, 11) => "Malformed AS_PATH",
        (code::FINITE_STATE_MACHINE_ERROR, 1) => "Receive Unexpected Message in OpenSent State",
        (code::FINITE_STATE_MACHINE_ERROR, 2) => "Receive Unexpected Message in OpenConfirm State",
        (code::FINITE_STATE_MACHINE_ERROR, 3) => "Receive Unexpected Message in Established State",
        (code::CEASE, 1) => "Maximum Number of Prefixes Reached",
        (code::CEASE, 2) => "Administrative Shutdown",
        (code::CEASE, 3) => "Peer De-configured",
        (code::CEASE, 4) => "Administrative Reset",
        (code::CEASE, 5) => "Connection Rejected",
        (code::CEASE, 6) => "Other Configuration Change",
        (code::CEASE, 7) => "Connection Collision Resolution",
        (code::CEASE, 8) => "Out of Resources",
        (code::CEASE, 9) => "Hard Reset",
        (code::CEASE, 10) => "BFD Down",
        (code::ROUTE_REFRESH_MESSAGE_ERROR, 1) => "Invalid Message Length",
        _ => "Unknown",
    }
}

/// Why a shutdown communication could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShutdownCommunicationError {
    #[error("the data is empty")]
    Empty,
    #[error("the length octet says {declared} but {available} octets follow")]
    LengthMismatch { declared: usize, available: usize },
    #[error("the message is not valid UTF-8")]
    NotUtf8,
}

/// A NOTIFICATION message.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Error code    | Error subcode |   Data (variable)             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationMessage {
    pub code: u8,
    pub subcode: u8,
    #[serde(with = "super::hex_bytes", default)]
    pub data: Bytes,
}

impl NotificationMessage {
    pub fn new(code: u8, subcode: u8, data: impl Into<Bytes>) -> Self {
        NotificationMessage { code, subcode, data: data.into() }
    }

    /// A Cease NOTIFICATION carrying a shutdown communication (RFC 9003):
    /// a one-octet length then UTF-8 text of at most 255 octets. Longer text
    /// is cut at a character boundary.
    pub fn cease_with_communication(subcode: u8, text: &str) -> Self {
        let mut end = text.len().min(255);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let text = text.get(..end).unwrap_or_default();
        let mut data = BytesMut::with_capacity(1 + text.len());
        data.put_u8(text.len() as u8);
        data.put_slice(text.as_bytes());
        NotificationMessage::new(code::CEASE, subcode, data.freeze())
    }

    pub fn code_name(&self) -> &'static str {
        error_code_name(self.code)
    }

    pub fn subcode_name(&self) -> &'static str {
        error_subcode_name(self.code, self.subcode)
    }

    /// The shutdown communication, for Cease / Administrative Shutdown or
    /// Administrative Reset with data; `None` for other notifications or no data.
    pub fn shutdown_communication(&self) -> Option<Result<&str, ShutdownCommunicationError>> {
        // RFC 9003 section 2: "If a Shutdown Communication with an invalid
        // Length value, or an invalid UTF-8 sequence is received, a message
        // indicating this event SHOULD be logged" -- so it is an error value
        // for the caller to log, never a session-level failure.
        let is_shutdown = self.code == code::CEASE
            && (self.subcode == code::cease::ADMINISTRATIVE_SHUTDOWN
                || self.subcode == code::cease::ADMINISTRATIVE_RESET);
        if !is_shutdown || self.data.is_empty() {
            return None;
        }
        Some(parse_shutdown_communication(&self.data))
    }

    pub(crate) fn decode(body: &[u8]) -> Option<Self> {
        let (rest, error_code) = parse::ok(parse::u8(body))?;
        let (rest, subcode) = parse::ok(parse::u8(rest))?;
        Some(NotificationMessage::new(error_code, subcode, Bytes::copy_from_slice(rest)))
    }

    pub(crate) fn encode_body(&self, out: &mut BytesMut) {
        out.put_u8(self.code);
        out.put_u8(self.subcode);
        out.put_slice(&self.data);
    }
}

fn parse_shutdown_communication(data: &[u8]) -> Result<&str, ShutdownCommunicationError> {
    let (rest, declared) = parse::ok(parse::u8(data)).ok_or(ShutdownCommunicationError::Empty)?;
    let declared = usize::from(declared);
    let text =
        rest.get(..declared).ok_or(ShutdownCommunicationError::LengthMismatch { declared, available: rest.len() })?;
    std::str::from_utf8(text).map_err(|_| ShutdownCommunicationError::NotUtf8)
}
