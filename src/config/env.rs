//! `TORTIE_<PATH>` environment overrides, applied to the YAML tree before it
//! is deserialised so that they are validated exactly like file values.
//!
//! A variable's text is read by the type of the field it sets (from the configuration's JSON
//! schema), not as YAML: `TORTIE_NODE_NAME=12345`, `=true` or `=null` name a node, a number field
//! takes a number, a list or section takes YAML flow syntax. An empty value unsets an optional
//! field.

use serde_json::Value as Json;
use serde_norway::{Mapping, Value};
use std::collections::BTreeSet;

/// Environment variables with the `TORTIE_` prefix that are not config fields.
const NOT_CONFIG_FIELDS: &[&str] = &["TORTIE_CONFIG"];
/// Prefixes of `TORTIE_` variables read elsewhere: the default pools' settings, as Calico's
/// `CALICO_IPV4POOL_*` and `CALICO_IPV6POOL_*` (`src/agent/kubernetes/pool.rs`); the lab's,
/// which a topology sets on a node for the runner (`src/lab/runner.rs`) and the node image's
/// entrypoint, and the agent inherits.
const NOT_CONFIG_PREFIXES: &[&str] = &["TORTIE_IPV4POOL_", "TORTIE_IPV6POOL_", "TORTIE_LAB_"];

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
    let schema = config_schema();
    let mut paths = field_paths(defaults);
    // Fields the default tree leaves out (a map empty by default, as `node.labels`): one field
    // each, taking a YAML flow value.
    let known = |p: &String, paths: &[String]| paths.iter().any(|q| q == p || q.starts_with(&format!("{p}.")));
    let missing: Vec<String> = schema_paths(&schema).into_iter().filter(|p| !known(p, &paths)).collect();
    paths.extend(missing);
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
        let value = typed_value(raw, &field_types(&schema, path));
        set_path(tree, path, value);
        result.applied.push((path.clone(), name.clone()));
    }
    result
}

/// The configuration's JSON schema with every sub-schema inlined, so a path is a walk through
/// `properties`.
fn config_schema() -> Json {
    let generator =
        schemars::generate::SchemaSettings::draft2020_12().with(|s| s.inline_subschemas = true).into_generator();
    generator.into_root_schema_for::<crate::config::Config>().to_value()
}

/// Every field path of the schema: sections (schemas with `properties`) are walked, anything
/// else is a field.
fn schema_paths(schema: &Json) -> Vec<String> {
    fn walk(node: &Json, prefix: &str, out: &mut Vec<String>) {
        let sections: Vec<&serde_json::Map<String, Json>> =
            alternatives(node).into_iter().filter_map(|n| n.get("properties")?.as_object()).collect();
        if sections.is_empty() {
            out.push(prefix.to_string());
            return;
        }
        for (name, child) in sections.into_iter().flatten() {
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
            walk(child, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(schema, "", &mut out);
    out
}

/// The JSON types (`string`, `integer`, `number`, `boolean`, `array`, `object`, `null`) the
/// field at `path` takes.
fn field_types(schema: &Json, path: &str) -> BTreeSet<String> {
    let mut nodes = vec![schema];
    for part in path.split('.') {
        nodes = nodes.iter().flat_map(|n| alternatives(n)).filter_map(|n| n.get("properties")?.get(part)).collect();
    }
    let mut types = BTreeSet::new();
    for node in nodes.iter().flat_map(|n| alternatives(n)) {
        match node.get("type") {
            Some(Json::String(t)) => {
                types.insert(t.clone());
            }
            Some(Json::Array(ts)) => types.extend(ts.iter().filter_map(Json::as_str).map(str::to_string)),
            _ => {}
        }
        let constants = node.get("enum").and_then(Json::as_array).into_iter().flatten().chain(node.get("const"));
        for c in constants {
            types.insert(json_type(c).to_string());
        }
    }
    types
}

/// A schema and the branches of its `anyOf` / `oneOf`, recursively.
fn alternatives(node: &Json) -> Vec<&Json> {
    let mut out = vec![node];
    for key in ["anyOf", "oneOf", "allOf"] {
        for branch in node.get(key).and_then(Json::as_array).into_iter().flatten() {
            out.extend(alternatives(branch));
        }
    }
    out
}

fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(n) if n.is_f64() => "number",
        Json::Number(_) => "integer",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// Reads `raw` as the field's type. Text a type does not take is passed on as a string, so
/// deserialisation refuses it naming the field and the value.
fn typed_value(raw: &str, types: &BTreeSet<String>) -> Value {
    let takes = |t: &str| types.contains(t);
    if raw.is_empty() && takes("null") {
        return Value::Null;
    }
    if takes("integer") || takes("number") {
        if let Ok(n) = raw.parse::<u64>() {
            return Value::Number(n.into());
        }
        if let Ok(n) = raw.parse::<i64>() {
            return Value::Number(n.into());
        }
        if takes("number")
            && let Ok(n) = raw.parse::<f64>()
        {
            return Value::Number(n.into());
        }
    }
    if takes("boolean") {
        match raw {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            _ => {}
        }
    }
    if (takes("array") || takes("object")) && !takes("string") {
        return serde_norway::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    }
    Value::String(raw.to_string())
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

    fn applied(vars: &[(&str, &str)]) -> Value {
        let defaults = serde_norway::to_value(crate::config::Config::default()).unwrap();
        let mut tree = Value::Mapping(Mapping::new());
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        apply(&mut tree, &defaults, &vars);
        tree
    }

    #[test]
    fn a_text_field_takes_the_text_whatever_it_looks_like() {
        for name in ["12345", "true", "0x1f", "null", "~", "a: b", "[x]", "1.5"] {
            let tree = applied(&[("TORTIE_NODE_NAME", name)]);
            assert_eq!(tree["node"]["name"], Value::String(name.to_string()), "{name}");
        }
        // An enum is text too.
        let tree = applied(&[("TORTIE_IPAM_DEFAULT_IPV4_IPIP_MODE", "Always")]);
        assert_eq!(tree["ipam"]["default_ipv4_ipip_mode"], Value::String("Always".into()));
    }

    #[test]
    fn numbers_booleans_lists_and_empty_values_by_the_field_type() {
        let tree = applied(&[
            ("TORTIE_BGP_LISTEN_PORT", "1790"),
            ("TORTIE_BGP_ENABLED", "false"),
            ("TORTIE_DATAPLANE_MTU", ""),
            ("TORTIE_DATASTORE_ETCD_ENDPOINTS", "[http://10.0.0.1:2379, http://10.0.0.2:2379]"),
            ("TORTIE_BGP_AS_NUMBER", "1.10"),
        ]);
        assert_eq!(tree["bgp"]["listen_port"].as_u64(), Some(1790));
        assert_eq!(tree["bgp"]["enabled"], Value::Bool(false));
        assert_eq!(tree["dataplane"]["mtu"], Value::Null);
        assert_eq!(tree["datastore"]["etcd_endpoints"].as_sequence().map(Vec::len), Some(2));
        assert_eq!(tree["bgp"]["as_number"], Value::String("1.10".into()));
        // A number field given text keeps the text, so deserialisation names field and value.
        let tree = applied(&[("TORTIE_BGP_LISTEN_PORT", "http")]);
        assert_eq!(tree["bgp"]["listen_port"], Value::String("http".into()));
    }

    /// A map field whose default is empty (`node.labels`) is one field: its variable takes a YAML
    /// flow map, as Calico's node labels are set per node.
    #[test]
    fn node_labels_take_a_flow_map() {
        let defaults = serde_norway::to_value(crate::config::Config::default()).unwrap();
        let mut tree = Value::Mapping(Mapping::new());
        let vars = vec![("TORTIE_NODE_LABELS".to_string(), "{rack: r1, zone: '12'}".to_string())];
        let r = apply(&mut tree, &defaults, &vars);
        assert_eq!((r.applied.len(), r.unknown), (1, Vec::<String>::new()));
        assert_eq!(
            (tree["node"]["labels"]["rack"].as_str(), tree["node"]["labels"]["zone"].as_str()),
            (Some("r1"), Some("12"))
        );
    }

    #[test]
    fn override_creates_missing_sections_and_parses_yaml_scalars() {
        let defaults = serde_norway::to_value(crate::config::Config::default()).unwrap();
        let mut tree = Value::Mapping(Mapping::new());
        let vars = vec![
            ("TORTIE_BGP_AS_NUMBER".to_string(), "65001".to_string()),
            ("TORTIE_NO_SUCH_FIELD".to_string(), "1".to_string()),
            ("HOME".to_string(), "/root".to_string()),
            // The default pools' variables are read by the pool code, not reported here.
            ("TORTIE_IPV4POOL_CIDR".to_string(), "10.0.0.0/16".to_string()),
            ("TORTIE_IPV6POOL_CIDR".to_string(), "fd00::/64".to_string()),
        ];
        let r = apply(&mut tree, &defaults, &vars);
        assert_eq!(r.applied, vec![("bgp.as_number".to_string(), "TORTIE_BGP_AS_NUMBER".to_string())]);
        assert_eq!(r.unknown, vec!["TORTIE_NO_SUCH_FIELD".to_string()]);
        assert_eq!(tree["bgp"]["as_number"].as_u64(), Some(65001));
    }
}
