//! What the RIB hands a session to send: an UPDATE the session encodes, or
//! UPDATEs the RIB already encoded for it, back to back in one buffer (one
//! channel slot and one write for a whole batch).

use bytes::Bytes;

use crate::bgp::packet::UpdateMessage;

#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// One UPDATE, encoded by the session (an End-of-RIB, which becomes an
    /// Enhanced Route Refresh marker while a refresh is being answered). Boxed: rare, and
    /// every peer's channel holds blocks of slots the size of the largest variant.
    Update(Box<UpdateMessage>),
    /// Whole UPDATE messages encoded for this session. Boxed as well: the
    /// variants are then a pointer each, and so is a channel slot.
    Encoded(Box<EncodedUpdates>),
}

/// `updates` whole UPDATE messages, encoded for a session's negotiated capabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedUpdates {
    pub bytes: Bytes,
    pub updates: u64,
}

impl Outbound {
    pub fn encoded(bytes: Bytes, updates: u64) -> Self {
        Outbound::Encoded(Box::new(EncodedUpdates { bytes, updates }))
    }
}

impl From<UpdateMessage> for Outbound {
    fn from(update: UpdateMessage) -> Self {
        Outbound::Update(Box::new(update))
    }
}
