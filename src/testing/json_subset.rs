//! JSON subset comparison with FRR topotests' semantics (`json_cmp`):
//! every key of the expected object must match in the actual one, extra
//! keys are ignored, `null` means "must be absent", `"*"` means "any value",
//! and each element of an expected array must match a distinct element of
//! the actual array, in any order.

use serde_json::Value;

/// `Ok(())` when `expected` is a subset of `actual`; otherwise the path of
/// the first difference and what differs.
pub fn json_subset(expected: &Value, actual: &Value) -> Result<(), String> {
    compare(expected, actual, "$")
}

fn compare(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::String(s), _) if s == "*" => Ok(()),
        (Value::Object(exp), Value::Object(act)) => {
            for (key, e) in exp {
                let child = format!("{path}.{key}");
                match (e, act.get(key)) {
                    (Value::Null, None) => {}
                    (Value::Null, Some(a)) => return Err(format!("{child}: expected absent, found {a}")),
                    (_, None) => return Err(format!("{child}: expected {e}, found nothing")),
                    (_, Some(a)) => compare(e, a, &child)?,
                }
            }
            Ok(())
        }
        (Value::Array(exp), Value::Array(act)) => {
            let mut used = vec![false; act.len()];
            for (i, e) in exp.iter().enumerate() {
                let found = act.iter().enumerate().find(|(j, a)| !used[*j] && compare(e, a, path).is_ok());
                match found {
                    Some((j, _)) => used[j] = true,
                    None => return Err(format!("{path}[{i}]: no element of {actual} matches {e}")),
                }
            }
            Ok(())
        }
        (e, a) if e == a => Ok(()),
        (e, a) => Err(format!("{path}: expected {e}, found {a}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extra_keys_in_actual_are_ignored() {
        assert!(json_subset(&json!({"a": 1}), &json!({"a": 1, "b": 2})).is_ok());
    }

    #[test]
    fn differing_values_name_the_path() {
        let err = json_subset(&json!({"a": {"b": 1}}), &json!({"a": {"b": 2}})).unwrap_err();
        assert_eq!(err, "$.a.b: expected 1, found 2");
    }

    #[test]
    fn null_means_absent() {
        assert!(json_subset(&json!({"gone": null}), &json!({"a": 1})).is_ok());
        assert!(json_subset(&json!({"a": null}), &json!({"a": 1})).is_err());
    }

    #[test]
    fn star_matches_any_value_but_not_absence() {
        assert!(json_subset(&json!({"a": "*"}), &json!({"a": [1, 2]})).is_ok());
        assert!(json_subset(&json!({"a": "*"}), &json!({})).is_err());
    }

    #[test]
    fn array_elements_match_in_any_order_each_once() {
        let routes = json!([{"dst": "10.0.0.0/24", "protocol": "116"}, {"dst": "default"}]);
        assert!(json_subset(&json!([{"dst": "default"}, {"dst": "10.0.0.0/24"}]), &routes).is_ok());
        assert!(json_subset(&json!([{"dst": "default"}, {"dst": "default"}]), &routes).is_err());
    }
}
