//! AS numbers as Calico writes them (`numorstring.ASNumber`): a number, a decimal string, or
//! asdot (`1.10` = 1 × 65536 + 10).

use serde_json::Value;

/// Bits of the high half in asdot notation.
const ASDOT_SHIFT: u32 = u16::BITS;

/// The AS number `value` spells; the error quotes it.
pub fn parse_as_number(value: &Value) -> Result<u32, String> {
    let wrong = || format!("{value} is not an AS number (a number up to {}, or asdot such as 1.10)", u32::MAX);
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(wrong),
        Value::String(text) => match text.split_once('.') {
            None => text.trim().parse::<u32>().map_err(|_| wrong()),
            Some((high, low)) => {
                let high: u16 = high.parse().map_err(|_| wrong())?;
                let low: u16 = low.parse().map_err(|_| wrong())?;
                Ok((u32::from(high) << ASDOT_SHIFT) | u32::from(low))
            }
        },
        _ => Err(wrong()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_strings_and_asdot_are_read() {
        assert_eq!(parse_as_number(&json!(64512)), Ok(64512));
        assert_eq!(parse_as_number(&json!("64512")), Ok(64512));
        assert_eq!(parse_as_number(&json!("1.10")), Ok(65546));
        assert_eq!(parse_as_number(&json!(4294967295u64)), Ok(u32::MAX));
    }

    #[test]
    fn anything_else_is_refused_quoting_it() {
        for bad in [json!(-1), json!(4294967296u64), json!("65536.1"), json!("x"), json!(true), json!("1.2.3")] {
            let err = parse_as_number(&bad).unwrap_err();
            assert!(err.starts_with(&format!("{bad} is not an AS number")), "{err}");
        }
    }
}
