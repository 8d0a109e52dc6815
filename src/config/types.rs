//! Value types whose deserialisers explain, in words, what is wrong with a
//! value — so a config error reads `4294967296 is not a valid AS number`
//! rather than a bare serde message.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// An autonomous system number (RFC 6793: 4 octets, 0 is reserved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AsNumber(pub u32);

impl<'de> Deserialize<'de> for AsNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_norway::Value::deserialize(d)?;
        let n = raw.as_u64().or_else(|| match &raw {
            // "64512" and the asdot form "1.10" are both accepted (RFC 5396).
            serde_norway::Value::String(s) => parse_as_text(s),
            _ => None,
        });
        match n {
            Some(n) if (1..=u64::from(u32::MAX)).contains(&n) => Ok(AsNumber(n as u32)),
            _ => Err(de::Error::custom(format!(
                "{} is not a valid AS number (1 to 4294967295, or asdot like 1.10)",
                show(&raw)
            ))),
        }
    }
}

fn parse_as_text(s: &str) -> Option<u64> {
    match s.split_once('.') {
        Some((hi, lo)) => {
            let (hi, lo): (u16, u16) = (hi.parse().ok()?, lo.parse().ok()?);
            Some((u64::from(hi) << 16) | u64::from(lo))
        }
        None => s.parse().ok(),
    }
}

impl fmt::Display for AsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A BGP hold time in seconds: 0 (no keepalives) or 3 to 65535 (RFC 4271 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct HoldTime(pub u16);

impl<'de> Deserialize<'de> for HoldTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_norway::Value::deserialize(d)?;
        match raw.as_u64() {
            Some(n) if n == 0 || (3..=65535).contains(&n) => Ok(HoldTime(n as u16)),
            _ => Err(de::Error::custom(format!(
                "{} is not a valid hold time (0, or 3 to 65535 seconds; RFC 4271 4.2)",
                show(&raw)
            ))),
        }
    }
}

/// A secret such as a BGP password. It is never printed: `Debug`, `Display`
/// and serialisation all show `<redacted>`; use [`Secret::expose`] to read it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that needs it (the socket option).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Deserialise through Value so a wrongly typed secret is rejected
        // without serde quoting it back in the error message.
        match serde_norway::Value::deserialize(d)? {
            serde_norway::Value::String(s) if s.len() <= 80 => Ok(Secret(s)),
            serde_norway::Value::String(_) => {
                Err(de::Error::custom("is longer than 80 bytes, the TCP-MD5 key limit (value not shown)"))
            }
            _ => Err(de::Error::custom("must be a string (value not shown)")),
        }
    }
}

/// Renders a YAML value compactly for an error message.
pub(crate) fn show(v: &serde_norway::Value) -> String {
    match v {
        serde_norway::Value::String(s) => format!("{s:?}"),
        serde_norway::Value::Null => "null".to_string(),
        other => serde_norway::to_string(other)
            .map(|s| s.trim_end().replace('\n', " "))
            .unwrap_or_else(|_| "<unprintable>".to_string()),
    }
}

/// Schemas for the environment overrides (`config::env`), which parse a variable by the type of
/// the field it sets: an AS number is a number or asdot text, a hold time a number, a secret text.
mod schemas {
    use super::{AsNumber, HoldTime, Secret};
    use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
    use std::borrow::Cow;

    impl JsonSchema for AsNumber {
        fn schema_name() -> Cow<'static, str> {
            "AsNumber".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({"anyOf": [{"type": "integer", "minimum": 1, "maximum": u32::MAX}, {"type": "string"}]})
        }
    }

    impl JsonSchema for HoldTime {
        fn schema_name() -> Cow<'static, str> {
            "HoldTime".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({"type": "integer", "minimum": 0, "maximum": u16::MAX})
        }
    }

    impl JsonSchema for Secret {
        fn schema_name() -> Cow<'static, str> {
            "Secret".into()
        }
        fn json_schema(_: &mut SchemaGenerator) -> Schema {
            json_schema!({"type": "string", "writeOnly": true})
        }
    }
}
