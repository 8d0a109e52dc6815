//! `TORTIE_<PATH>` environment overrides, applied to the YAML tree before it
//! is deserialised so that they are validated exactly like file values.

use serde_norway::{Mapping, Value};

/// Environment variables with the `TORTIE_` prefix that are not config fields.
const NOT_CONFIG_FIELDS: &[&str] = &["TORTIE_CONFIG"];
/// Prefixes of `TORTIE_` variables read elsewhere: the default pool's settings, as Calico's
/// `CALICO_IPV4POOL_*` (`src/agent/kubernetes/pool.rs`).
const NOT_CONFIG_PREFIXES: &[&str] = &["TORTIE_IPV4POOL_"];

/// What applying the environment did.
#[derive(Debug, Default)]
pub struct EnvOverrides {
    /// (field path, variable name) of every override applied.
    pub applied: Vec<(String, String)>,
    /// `TORTIE_` variables that name no field: reported, not fatal, because
    /// a typo here must be visible but must not stop a node from starting.
    pub unknown: Vec<String>,
}

/// Every overridable field path (`bgp.as_number`, ...): the leaves of the
/// default configuration's tree. Sequences (`bgp.peers`) are leaves and take
/// a YAML flow value.
pub fn field_paths(defaults: &Value) -> Vec<String> {
    fn walk(v: &Value, prefix: &str, out: &mut Vec<String>) {
        match v {
            Value::Mapping(m) => {
                for (k, child) in m {
                    if let Some(k) = k.as_str() {
                        let path = if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
                        walk(child, &path, out);
                    }
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let mut out = Vec::new();
    walk(defaults, "", &mut out);
    out
}

/// The variable name that overrides a field path.
pub fn var_name(path: &str) -> String {
    format!("TORTIE_{}", path.replace('.', "_").to_uppercase())
}

/// Applies every `TORTIE_*` variable in `vars` to `tree`.
pub fn apply(tree: &mut Value, defaults: &Value, vars: &[(String, String)]) -> EnvOverrides {
    let paths = field_paths(defaults);
    let mut result = EnvOverrides::default();
    for (name, raw) in vars {
        if !name.starts_with("TORTIE_")
            || NOT_CONFIG_FIELDS.contains(&name.as_str())
            || NOT_CONFIG_PREFIXES.iter().any(|p| name.starts_with(p))
        {
            continue;
        }
        let Some(path) = paths.iter().find(|p| var_name(p) == *name) else {
            result.unknown.push(name.clone());
            continue;
        };
        // A value that is not valid YAML is taken as a plain string, so
        // `TORTIE_NODE_NAME=a: b` still means what it says.
        let value = serde_norway::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.clone()));
        set_path(tree, path, value);
        result.applied.push((path.clone(), name.clone()));
    }
    result
}

fn set_path(tree: &mut Value, path: &str, value: Value) {
    let mut node = tree;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if !node.is_mapping() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else { return };
        let key = Value::String(part.to_string());
        if parts.peek().is_none() {
            map.insert(key, value);
            return;
        }
        node = map.entry(key).or_insert_with(|| Value::Mapping(Mapping::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_names_follow_the_field_path() {
        assert_eq!(var_name("bgp.as_number"), "TORTIE_BGP_AS_NUMBER");
        assert_eq!(var_name("log.level"), "TORTIE_LOG_LEVEL");
    }

    #[test]
    fn override_creates_missing_sections_and_parses_yaml_scalars() {
        let defaults = serde_norway::to_value(crate::config::Config::default()).unwrap();
        let mut tree = Value::Mapping(Mapping::new());
        let vars = vec![
            ("TORTIE_BGP_AS_NUMBER".to_string(), "65001".to_string()),
            ("TORTIE_NO_SUCH_FIELD".to_string(), "1".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ];
        let r = apply(&mut tree, &defaults, &vars);
        assert_eq!(r.applied, vec![("bgp.as_number".to_string(), "TORTIE_BGP_AS_NUMBER".to_string())]);
        assert_eq!(r.unknown, vec!["TORTIE_NO_SUCH_FIELD".to_string()]);
        assert_eq!(tree["bgp"]["as_number"].as_u64(), Some(65001));
    }
}
