//! Fields a stored resource carries that take no effect in tortie: fields tortie's schema does
//! not know (a Calico object with newer or Enterprise fields) and fields it knows but does not
//! honour (listed with their reason in [`super::resources::coverage`]). None is silently
//! ignored: each is logged once when first seen, listed in `tortie status` and counted by the
//! `tortie_unsupported_fields` metric, for as long as a stored object carries it.
//!
//! One table per process, filled where every record is decoded (`store::decode`), since records
//! reach the agent through many readers (lists, gets, watches) and the report must cover them all.

use super::Kind;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// One field of one stored object that has no effect.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub kind: Kind,
    /// The object's name.
    pub name: String,
    /// The field's path in the object's spec, as Calico spells it (`serviceClusterIPs`).
    pub field: String,
    pub reason: String,
}

/// The reason given for a field tortie's schema does not know.
pub const UNKNOWN_FIELD: &str = "not a field tortie knows; it has no effect";

/// Who found a field without effect: decoding (fields unknown or declared unsupported) or a
/// component that knows more (a cluster-wide BGPConfiguration field on a node's own resource).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Decode,
    BgpSettings,
}

static FINDINGS: Mutex<BTreeMap<(Kind, String, Source), Vec<Finding>>> = Mutex::new(BTreeMap::new());

/// What `name` of `kind` carries now, replacing what it carried before; new findings are logged.
pub fn record(kind: Kind, name: &str, findings: Vec<Finding>) {
    record_from(Source::Decode, kind, name, findings);
}

/// As [`record`], for what `source` found; each source's findings replace only its own.
pub fn record_from(source: Source, kind: Kind, name: &str, findings: Vec<Finding>) {
    let mut table = FINDINGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let key = (kind, name.to_string(), source);
    if findings.is_empty() {
        table.remove(&key);
        return;
    }
    let before = table.get(&key);
    for f in findings.iter().filter(|f| !before.is_some_and(|b| b.contains(f))) {
        tracing::warn!(
            subsys = "datastore",
            kind = kind.as_str(),
            name = %f.name,
            field = %f.field,
            reason = %f.reason,
            "a field of this resource has no effect in tortie"
        );
    }
    table.insert(key, findings);
}

/// The object is gone: so are its findings.
pub fn forget(kind: Kind, name: &str) {
    FINDINGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).retain(|(k, n, _), _| !(*k == kind && n == name));
}

/// Every current finding, ordered by kind, name and field.
pub fn snapshot() -> Vec<Finding> {
    let table = FINDINGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut all: Vec<Finding> = table.values().flatten().cloned().collect();
    all.sort();
    all.dedup();
    all
}

/// Whether `value` says something: not null, false, or an empty string, list or map.
fn is_set(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Bool(true) | Value::Number(_) => true,
    }
}

/// The declared-unsupported fields `document` sets: `(path, reason)` pairs whose path is dotted,
/// with `[]` for "any element of this list".
pub fn declared_in(document: &serde_json::Value, declared: &[(&str, &str)]) -> Vec<(String, String)> {
    fn walk(node: &serde_json::Value, steps: &[&str]) -> bool {
        let Some((first, rest)) = steps.split_first() else { return is_set(node) };
        match first.strip_suffix("[]") {
            Some(key) => node
                .get(key)
                .and_then(serde_json::Value::as_array)
                .is_some_and(|items| items.iter().any(|item| walk(item, rest))),
            None => node.get(first).is_some_and(|child| walk(child, rest)),
        }
    }
    declared
        .iter()
        .filter(|(path, _)| walk(document, &path.split('.').collect::<Vec<_>>()))
        .map(|(path, reason)| (path.to_string(), reason.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn declared_fields_count_only_when_they_say_something() {
        let declared = [("serviceClusterIPs", "issue 25"), ("filters[].name", "x"), ("flag", "y")];
        let doc = json!({"serviceClusterIPs": [{"cidr": "10.96.0.0/12"}], "filters": [{"name": ""}], "flag": false});
        assert_eq!(declared_in(&doc, &declared), vec![("serviceClusterIPs".to_string(), "issue 25".to_string())]);
        assert!(declared_in(&json!({"serviceClusterIPs": []}), &declared).is_empty());
        assert_eq!(declared_in(&json!({"filters": [{}, {"name": "a"}]}), &declared).len(), 1);
    }

    #[test]
    fn a_record_replaces_the_objects_findings_and_forget_drops_them() {
        let finding = |field: &str| Finding {
            kind: Kind::BgpConfiguration,
            name: "unsupported-test".into(),
            field: field.into(),
            reason: UNKNOWN_FIELD.into(),
        };
        record(Kind::BgpConfiguration, "unsupported-test", vec![finding("a"), finding("b")]);
        record(Kind::BgpConfiguration, "unsupported-test", vec![finding("b")]);
        let mine = |all: Vec<Finding>| all.into_iter().filter(|f| f.name == "unsupported-test").collect::<Vec<_>>();
        assert_eq!(mine(snapshot()), vec![finding("b")]);
        forget(Kind::BgpConfiguration, "unsupported-test");
        assert!(mine(snapshot()).is_empty());
    }
}
