//! A duration as Calico's resources write it: Go's `time.ParseDuration` syntax (`metav1.Duration`),
//! e.g. `20s`, `1m30s`, `500ms`, `1.5h`. A bare number other than `0` has no unit and is refused,
//! as Kubernetes refuses it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A non-negative duration in Go syntax; keeps the text it was read from so it is written back
/// as the user wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoDuration {
    value: Duration,
    text: String,
}

impl GoDuration {
    pub fn get(&self) -> Duration {
        self.value
    }

    /// As a BGP timer: whole seconds, a fraction rounded up (`500ms` is 1 s, never 0, which
    /// would turn a timer off); `None` beyond `u16`.
    pub fn timer_seconds(&self) -> Option<u16> {
        let seconds = self.value.as_secs() + u64::from(self.value.subsec_nanos() > 0);
        u16::try_from(seconds).ok()
    }
}

/// Nanoseconds per unit, longest spelling first so `ms` is not read as `m`.
const UNITS: [(&str, f64); 8] =
    [("ns", 1.0), ("us", 1e3), ("µs", 1e3), ("μs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9)];

impl FromStr for GoDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<GoDuration, String> {
        let wrong = |why: &str| format!("{text:?} is not a duration ({why}; Go syntax such as 20s, 1m30s, 500ms)");
        if text == "0" {
            return Ok(GoDuration { value: Duration::ZERO, text: text.to_string() });
        }
        if text.starts_with('-') {
            return Err(wrong("negative"));
        }
        let mut rest = text.strip_prefix('+').unwrap_or(text);
        if rest.is_empty() {
            return Err(wrong("empty"));
        }
        let mut nanos = 0f64;
        while !rest.is_empty() {
            let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            let number = &rest[..number_len];
            if number.is_empty() || number == "." {
                return Err(wrong("a number is missing"));
            }
            let n: f64 = number.parse().map_err(|_| wrong("a number is malformed"))?;
            rest = &rest[number_len..];
            let Some((unit, scale)) = UNITS.iter().find(|(u, _)| rest.starts_with(u)) else {
                return Err(wrong("a unit is missing: ns, us, ms, s, m or h"));
            };
            rest = &rest[unit.len()..];
            nanos += n * scale;
        }
        // Go's limit: about 290 years.
        if nanos > i64::MAX as f64 {
            return Err(wrong("too long"));
        }
        Ok(GoDuration { value: Duration::from_nanos(nanos.round() as u64), text: text.to_string() })
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<GoDuration, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for GoDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GoDuration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "description": "A duration in Go syntax: 20s, 1m30s, 500ms"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> Result<u128, String> {
        text.parse::<GoDuration>().map(|d| d.get().as_millis())
    }

    #[test]
    fn go_syntax_is_read_with_fractions_and_compound_units() {
        assert_eq!(ms("20s"), Ok(20_000));
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("1.5m"), Ok(90_000));
        assert_eq!(ms("1h2m3.5s"), Ok(3_723_500));
        assert_eq!(ms("0"), Ok(0));
        assert_eq!(ms("1500us"), Ok(1));
        assert_eq!("2m".parse::<GoDuration>().unwrap().timer_seconds(), Some(120));
        assert_eq!("500ms".parse::<GoDuration>().unwrap().timer_seconds(), Some(1));
    }

    #[test]
    fn what_go_refuses_is_refused_naming_the_value() {
        for bad in ["120", "", "-5s", "5x", "s", "1.2.3s", "1m30"] {
            let err = ms(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?} is not a duration")), "{bad}: {err}");
        }
    }

    #[test]
    fn the_text_is_written_back_as_read() {
        let d: GoDuration = serde_json::from_str("\"1m30s\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1m30s\"");
        assert_eq!(d.get(), Duration::from_secs(90));
    }
}
