//! A BGP message: decoding one from the front of a buffer, encoding one.

use bytes::{BufMut, Bytes, BytesMut};

use super::check::check_update;
use super::context::{DecodeContext, EncodeContext};
use super::error::{DecodeError, EncodeError, HeaderError, MessageError, SessionReset, UpdateOutcome};
use super::header::{self, HEADER_LEN, MARKER, MessageType};
use super::notification::NotificationMessage;
use super::open::OpenMessage;
use super::route_refresh::RouteRefreshMessage;
use super::update::UpdateMessage;

/// A BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(OpenMessage),
    Update(UpdateMessage),
    Notification(NotificationMessage),
    Keepalive,
    RouteRefresh(RouteRefreshMessage),
}

/// A decoded message and, for an UPDATE, the RFC 7606 faults that do not
/// reset the session (always empty for the other types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub message: Message,
    pub outcome: UpdateOutcome,
}

impl Message {
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Open(_) => MessageType::Open,
            Message::Update(_) => MessageType::Update,
            Message::Notification(_) => MessageType::Notification,
            Message::Keepalive => MessageType::Keepalive,
            Message::RouteRefresh(_) => MessageType::RouteRefresh,
        }
    }

    /// Decodes the message at the start of `buf`, returning it with the
    /// number of octets it took. `Incomplete` asks for more input;
    /// `SessionReset` carries the NOTIFICATION to send.
    pub fn decode(buf: &[u8], ctx: &DecodeContext) -> Result<(Decoded, usize), DecodeError> {
        let header = header::frame(buf, ctx)?;
        let whole = buf.get(..header.length).unwrap_or_default();
        let body = whole.get(HEADER_LEN..).unwrap_or_default();
        let reset = |error: MessageError| {
            DecodeError::SessionReset(SessionReset {
                error,
                message_type: Some(header.message_type),
                length: Some(header.length),
            })
        };
        let bad_length = || {
            reset(MessageError::Header(HeaderError::BadMessageLength {
                length: u16::try_from(header.length).unwrap_or(u16::MAX),
            }))
        };
        let mut outcome = UpdateOutcome::default();
        let message = match header.message_type {
            MessageType::Open => Message::Open(OpenMessage::decode(body).map_err(|e| reset(e.into()))?),
            MessageType::Update => {
                let (update, structural) = UpdateMessage::decode(body, ctx).map_err(|e| reset(e.into()))?;
                outcome = structural;
                check_update(&update, ctx, &mut outcome);
                Message::Update(update)
            }
            MessageType::Notification => {
                Message::Notification(NotificationMessage::decode(body).ok_or_else(bad_length)?)
            }
            // The header check already holds a KEEPALIVE to exactly 19 octets.
            MessageType::Keepalive => Message::Keepalive,
            MessageType::RouteRefresh => {
                Message::RouteRefresh(RouteRefreshMessage::decode(body, whole).map_err(reset)?)
            }
        };
        Ok((Decoded { message, outcome }, header.length))
    }

    /// Appends the encoded message to `out`.
    pub fn encode(&self, out: &mut BytesMut, ctx: &EncodeContext) -> Result<(), EncodeError> {
        let start = out.len();
        out.put_slice(&MARKER);
        out.put_u16(0);
        out.put_u8(self.message_type().code());
        let body = match self {
            Message::Open(open) => open.encode_body(out),
            Message::Update(update) => update.encode_body(out),
            Message::Notification(notification) => {
                notification.encode_body(out);
                Ok(())
            }
            Message::Keepalive => Ok(()),
            Message::RouteRefresh(refresh) => {
                refresh.encode_body(out);
                Ok(())
            }
        };
        let length = out.len() - start;
        let max = match self {
            Message::Open(_) | Message::Keepalive => header::MAX_MESSAGE_LEN,
            _ if ctx.extended_message => header::MAX_EXTENDED_MESSAGE_LEN,
            _ => header::MAX_MESSAGE_LEN,
        };
        let checked = match body {
            Ok(()) if length > max => Err(EncodeError::MessageTooLong { length, max }),
            other => other,
        };
        if let Err(error) = checked {
            out.truncate(start);
            return Err(error);
        }
        if let Some(slot) = out.get_mut(start + 16..start + 18) {
            slot.copy_from_slice(&(length as u16).to_be_bytes());
        }
        Ok(())
    }

    /// The encoded message as one buffer.
    pub fn to_bytes(&self, ctx: &EncodeContext) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::new();
        self.encode(&mut out, ctx)?;
        Ok(out.freeze())
    }
}

impl From<NotificationMessage> for Message {
    fn from(notification: NotificationMessage) -> Self {
        Message::Notification(notification)
    }
}

impl From<&SessionReset> for Message {
    /// The NOTIFICATION that answers a session-resetting error.
    fn from(reset: &SessionReset) -> Self {
        Message::Notification(reset.notification())
    }
}
