//! The JSON form of messages used by `tortie bgp decode` and `tortie bgp
//! encode`; the schema is documented in docs/bgp-wire-json.md.
//!
//! Each message is one JSON object whose `type` and `action` are always
//! present, with the message's fields beside them. A message that resets the
//! session is given as `raw` hex instead, so that encoding it back is exact.

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value, json};

use super::context::{DecodeContext, EncodeContext};
use super::error::{DecodeError, Rfc7606Action, SessionReset, UpdateOutcome};
use super::message::{Decoded, Message};
use super::notification::NotificationMessage;

/// Why a JSON object could not be turned into a message.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("not a JSON object")]
    NotAnObject,
    #[error("missing or unknown \"type\" (expected open, update, notification, keepalive or route-refresh)")]
    UnknownType,
    #[error("\"raw\" is not hex: {0}")]
    BadRaw(#[from] hex::FromHexError),
    #[error("bad {message_type} message: {error}")]
    BadMessage { message_type: &'static str, error: serde_json::Error },
    #[error("cannot encode: {0}")]
    Encode(#[from] super::error::EncodeError),
}

/// The JSON object for a decoded message.
pub fn decoded_to_json(decoded: &Decoded) -> Value {
    let body = match &decoded.message {
        Message::Open(open) => serde_json::to_value(open),
        Message::Update(update) => serde_json::to_value(update),
        Message::Notification(notification) => serde_json::to_value(notification),
        Message::Keepalive => Ok(Value::Object(Map::new())),
        Message::RouteRefresh(refresh) => serde_json::to_value(refresh),
    };
    let mut object = match body {
        Ok(Value::Object(object)) => object,
        // The model types always serialize to objects; keep the line valid anyway.
        _ => Map::new(),
    };
    if let Message::Notification(notification) = &decoded.message {
        describe_notification(notification, &mut object);
    }
    let mut line = Map::new();
    line.insert("type".into(), decoded.message.message_type().name().into());
    line.insert("action".into(), decoded.outcome.action().as_str().into());
    if !decoded.outcome.faults.is_empty() {
        line.insert("faults".into(), faults_to_json(&decoded.outcome));
    }
    line.extend(object);
    Value::Object(line)
}

/// The JSON object for a message that resets the session; `raw` is the
/// message (or, when the stream can no longer be framed, the rest of it).
pub fn session_reset_to_json(reset: &SessionReset, raw: &[u8]) -> Value {
    let notification = reset.notification();
    json!({
        "type": reset.message_type.map_or("unknown", |t| t.name()),
        "action": Rfc7606Action::SessionReset.as_str(),
        "notification": {
            "code": notification.code,
            "subcode": notification.subcode,
            "data": hex::encode(&notification.data),
            "code_name": notification.code_name(),
            "subcode_name": notification.subcode_name(),
        },
        "error": reset.error.to_string(),
        "raw": hex::encode(raw),
    })
}

fn faults_to_json(outcome: &UpdateOutcome) -> Value {
    Value::Array(
        outcome
            .faults
            .iter()
            .map(|fault| {
                json!({
                    "attribute_index": fault.attribute_index,
                    "type_code": fault.type_code,
                    "action": fault.action.as_str(),
                    "error": fault.error.to_string(),
                })
            })
            .collect(),
    )
}

fn describe_notification(notification: &NotificationMessage, object: &mut Map<String, Value>) {
    object.insert("code_name".into(), notification.code_name().into());
    object.insert("subcode_name".into(), notification.subcode_name().into());
    match notification.shutdown_communication() {
        Some(Ok(text)) => {
            object.insert("shutdown_communication".into(), text.into());
        }
        Some(Err(error)) => {
            object.insert("shutdown_communication_error".into(), error.to_string().into());
        }
        None => {}
    }
}

/// The wire octets for one JSON object as [`decoded_to_json`] or
/// [`session_reset_to_json`] wrote it. Informational keys are ignored.
pub fn json_to_wire(value: &Value) -> Result<Bytes, JsonError> {
    let object = value.as_object().ok_or(JsonError::NotAnObject)?;
    if let Some(raw) = object.get("raw").and_then(Value::as_str) {
        return Ok(Bytes::from(hex::decode(raw.trim())?));
    }
    let message_type = object.get("type").and_then(Value::as_str).ok_or(JsonError::UnknownType)?;
    let body = |name: &'static str| move |error| JsonError::BadMessage { message_type: name, error };
    let message = match message_type {
        "open" => Message::Open(serde_json::from_value(value.clone()).map_err(body("open"))?),
        "update" => Message::Update(serde_json::from_value(value.clone()).map_err(body("update"))?),
        "notification" => Message::Notification(serde_json::from_value(value.clone()).map_err(body("notification"))?),
        "keepalive" => Message::Keepalive,
        "route-refresh" => Message::RouteRefresh(serde_json::from_value(value.clone()).map_err(body("route-refresh"))?),
        _ => return Err(JsonError::UnknownType),
    };
    // The JSON names no session, so allow the largest messages any session could.
    let mut out = BytesMut::new();
    message.encode(&mut out, &EncodeContext { extended_message: true })?;
    Ok(out.freeze())
}

/// What [`decode_stream`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamSummary {
    pub messages: usize,
    pub session_resets: usize,
    /// The stream ended inside a message: (offset of that message, octets
    /// present, octets the message needs).
    pub truncated: Option<(usize, usize, usize)>,
}

/// Decodes a stream of messages, calling `emit` with one JSON object per
/// message. Decoding continues after a session reset when the message
/// length could be trusted, and stops when it could not.
pub fn decode_stream(input: &[u8], ctx: &DecodeContext, mut emit: impl FnMut(Value)) -> StreamSummary {
    let mut summary = StreamSummary::default();
    let mut offset = 0;
    while let Some(rest) = input.get(offset..).filter(|rest| !rest.is_empty()) {
        match Message::decode(rest, ctx) {
            Ok((decoded, used)) => {
                summary.messages += 1;
                emit(decoded_to_json(&decoded));
                offset += used;
            }
            Err(DecodeError::SessionReset(reset)) => {
                summary.messages += 1;
                summary.session_resets += 1;
                match reset.length.and_then(|length| rest.get(..length)) {
                    Some(message) => {
                        emit(session_reset_to_json(&reset, message));
                        offset += message.len();
                    }
                    None => {
                        emit(session_reset_to_json(&reset, rest));
                        break;
                    }
                }
            }
            Err(DecodeError::Incomplete { available, needed }) => {
                summary.truncated = Some((offset, available, needed));
                break;
            }
        }
    }
    summary
}
