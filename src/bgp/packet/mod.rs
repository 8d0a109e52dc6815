//! The BGP wire codec: RFC 4271 messages, capabilities (RFC 5492 and
//! successors) and path attributes, with RFC 7606 error handling.
//!
//! Decoding is layered:
//!
//! 1. [`frame`] checks the header and finds the message boundary;
//! 2. [`Message::decode`] decodes the body structurally: every error that
//!    resets the session comes back as [`DecodeError::SessionReset`], which
//!    holds the NOTIFICATION to send;
//! 3. for an UPDATE, [`check_update`] then applies the semantic rules
//!    (mandatory attributes, next hop, duplicates, peer kind). Faults that do
//!    not reset the session come back as data in an [`UpdateOutcome`]
//!    (attribute-discard or treat-as-withdraw).
//!
//! The model is lossless: decode → encode reproduces the input octet for octet.

pub mod as_path;
pub mod attribute;
pub mod capability;
pub mod check;
pub mod community;
pub mod context;
pub mod error;
pub mod family;
pub mod header;
mod hex_bytes;
pub mod json;
pub mod message;
pub mod mp;
pub mod nlri;
pub mod notification;
pub mod open;
mod parse;
pub mod route_refresh;
pub mod update;

pub use as_path::{AsPath, AsSegment, SegmentType};
pub use attribute::{Aggregator, AttributeValue, Origin, PathAttribute};
pub use capability::{AddPathFamily, Capability, ExtendedNextHopEncoding, GracefulRestartFamily};
pub use check::check_update;
pub use community::{Community, ExtendedCommunity, LargeCommunity};
pub use context::{AddPathFamilies, DecodeContext, EncodeContext};
pub use error::{
    AttributeFault, DecodeError, EncodeError, HeaderError, MessageError, OpenError, Rfc7606Action, RouteRefreshError,
    SessionReset, UpdateError, UpdateOutcome,
};
pub use family::{Afi, Family, Safi};
pub use header::{Header, MessageType, frame};
pub use message::{Decoded, Message};
pub use mp::{MpNlri, MpReachNlri, MpUnreachNlri, NextHop};
pub use nlri::{Nlri, Prefix};
pub use notification::NotificationMessage;
pub use open::{OpenMessage, OptionalParameter};
pub use route_refresh::RouteRefreshMessage;
pub use update::UpdateMessage;
