//! Reading a configuration: file, then environment, then structural and
//! semantic validation — collecting every problem, not just the first.

use super::env;
use super::error::{ConfigError, FieldError};
use super::model::Config;
use super::types::show;
use super::validate::validate;
use serde_norway::{Mapping, Value};
use serde_path_to_error::Segment;
use std::path::{Path, PathBuf};

/// Where a configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The YAML file; absent = defaults only.
    pub file: Option<PathBuf>,
    /// Environment variables to consider (normally `std::env::vars()`).
    pub env: Vec<(String, String)>,
}

impl ConfigSource {
    /// A file plus this process's environment.
    pub fn from_process(file: Option<&Path>) -> Self {
        ConfigSource { file: file.map(Path::to_path_buf), env: std::env::vars().collect() }
    }
}

/// A loaded configuration and what the environment changed.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// (field path, variable) for each environment override applied.
    pub env_applied: Vec<(String, String)>,
    /// `TORTIE_` variables that name no field (worth a warning).
    pub env_unknown: Vec<String>,
}

/// Loads and validates a configuration.
pub fn load(source: &ConfigSource) -> Result<Loaded, ConfigError> {
    let (text, origin) = match &source.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::Read { path: path.display().to_string(), source: e })?;
            (text, path.display().to_string())
        }
        None => (String::new(), "defaults".to_string()),
    };
    load_from_str(&text, &origin, &source.env)
}

/// Loads and validates a configuration from YAML text; `origin` names it in errors.
pub fn load_from_str(text: &str, origin: &str, env_vars: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let mut tree: Value = serde_norway::from_str(text)
        .map_err(|e| ConfigError::Syntax { origin: origin.to_string(), message: e.to_string() })?;
    match tree {
        Value::Null => tree = Value::Mapping(Mapping::new()),
        Value::Mapping(_) => {}
        ref other => {
            return Err(ConfigError::Invalid {
                origin: origin.to_string(),
                errors: vec![FieldError::new(
                    "",
                    format!("the document must be a mapping of sections, not {}", show(other)),
                )],
            });
        }
    }
    let defaults = serde_norway::to_value(Config::default()).expect("the default configuration serialises");
    let overrides = env::apply(&mut tree, &defaults, env_vars);

    let (config, mut errors, removed) = deserialize_collecting(tree);
    let reported: Vec<String> = errors.iter().map(|e| e.path.clone()).collect();
    // Semantic checks ran on the pruned tree: map their paths back to the document.
    for mut e in validate(&config) {
        e.path = render_path(&to_original(&parse_path(&e.path), &removed));
        if !reported.contains(&e.path) {
            errors.push(e);
        }
    }
    for e in &mut errors {
        if let Some((_, var)) = overrides.applied.iter().find(|(p, _)| e.path.starts_with(p.as_str())) {
            e.message.push_str(&format!(" (from environment variable {var})"));
        }
    }
    if errors.is_empty() {
        Ok(Loaded { config, env_applied: overrides.applied, env_unknown: overrides.unknown })
    } else {
        Err(ConfigError::Invalid { origin: origin.to_string(), errors })
    }
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn segs(path: &serde_path_to_error::Path) -> Vec<Seg> {
    path.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

/// Deserialises `tree`; on each structural error, records it, removes the
/// offending node (so its default applies) and tries again, until the rest
/// deserialises. The returned config is only meaningful when no error was found.
fn deserialize_collecting(mut tree: Value) -> (Config, Vec<FieldError>, Vec<Vec<Seg>>) {
    let mut errors: Vec<FieldError> = Vec::new();
    // Paths removed so far, in the coordinates of the original document.
    let mut removed: Vec<Vec<Seg>> = Vec::new();
    // Each round removes one node from a finite tree, so this terminates;
    // the cap only guards against a bug in `remove`.
    for _ in 0..256 {
        let err = match serde_path_to_error::deserialize::<_, Config>(tree.clone()) {
            Ok(config) => return (config, errors, removed),
            Err(err) => err,
        };
        let mut path = segs(err.path());
        let message = err.inner().to_string();
        let field = between_backticks(&message);
        if let (true, Some(field)) = (message.starts_with("unknown field"), field)
            && path.last() != Some(&Seg::Key(field.to_string()))
        {
            path.push(Seg::Key(field.to_string()));
        }
        let original = to_original(&path, &removed);
        match field.filter(|_| message.starts_with("missing field")) {
            Some(field) => {
                // A required field is missing: the element it belongs to
                // cannot stand, so it is removed below. If we removed that
                // field ourselves, the problem was reported already.
                let mut field_path = original.clone();
                field_path.push(Seg::Key(field.to_string()));
                if !removed.contains(&field_path) {
                    errors.push(FieldError::new(render_path(&field_path), "is required"));
                }
            }
            None => {
                let value = lookup(&tree, &path);
                errors.push(FieldError::new(render_path(&original), humanize(&message, value, &path)));
            }
        }
        if path.is_empty() || !remove(&mut tree, &path) {
            return (Config::default(), errors, removed);
        }
        removed.push(original);
    }
    (Config::default(), errors, removed)
}

/// Parses `bgp.peers[1].as_number` back into steps.
fn parse_path(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            out.push(Seg::Key(key.to_string()));
        }
        out.extend(pieces.filter_map(|i| i.trim_end_matches(']').parse().ok()).map(Seg::Index));
    }
    out
}

/// Maps a path in the current (pruned) tree back to the original document:
/// removing a sequence element shifts the indices of the ones after it.
fn to_original(path: &[Seg], removed: &[Vec<Seg>]) -> Vec<Seg> {
    let mut out: Vec<Seg> = Vec::with_capacity(path.len());
    for seg in path {
        match seg {
            Seg::Index(i) => {
                let mut gone: Vec<usize> = removed
                    .iter()
                    .filter_map(|r| match r.split_last() {
                        Some((Seg::Index(j), parent)) if parent == out.as_slice() => Some(*j),
                        _ => None,
                    })
                    .collect();
                gone.sort_unstable();
                let mut idx = *i;
                for j in gone {
                    if j <= idx {
                        idx += 1;
                    }
                }
                out.push(Seg::Index(idx));
            }
            Seg::Key(_) => out.push(seg.clone()),
        }
    }
    out
}

fn between_backticks(s: &str) -> Option<&str> {
    let start = s.find('`')? + 1;
    let len = s[start..].find('`')?;
    Some(&s[start..start + len])
}

/// Renders a path as `bgp.peers[1].as_number`.
fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Index(index) => out.push_str(&format!("[{index}]")),
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
        }
    }
    out
}

fn is_secret(path: &[Seg]) -> bool {
    path.iter().any(|s| matches!(s, Seg::Key(key) if key.contains("password")))
}

/// Turns serde's message into one that names the value in words.
fn humanize(message: &str, value: Option<&Value>, path: &[Seg]) -> String {
    if message.starts_with("unknown field") {
        let expected = message.split_once(", expected ").map(|(_, e)| e.replace('`', "")).unwrap_or_default();
        return format!("unknown field (expected {expected})");
    }
    if is_secret(path) {
        // Our Secret type never quotes the value; serde's own messages might.
        return if message.contains("value not shown") {
            message.to_string()
        } else {
            "is not valid (value not shown)".to_string()
        };
    }
    let shown = value.map(show).unwrap_or_else(|| "the value".to_string());
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let expected = rest.split_once(", expected ").map(|(_, e)| e).unwrap_or(rest);
        return format!("{shown} has the wrong type (expected {expected})");
    }
    if message.starts_with("unknown variant") {
        let expected = message.split_once(", expected ").map(|(_, e)| e.replace('`', "")).unwrap_or_default();
        return format!("{shown} is not one of {}", expected.trim_start_matches("one of "));
    }
    if value.is_some() && message.contains(&shown) {
        message.to_string()
    } else {
        format!("{shown} is not valid: {message}")
    }
}

fn lookup<'a>(tree: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    let mut node = tree;
    for seg in path {
        node = match seg {
            Seg::Key(key) => node.as_mapping()?.get(key.as_str())?,
            Seg::Index(index) => node.as_sequence()?.get(*index)?,
        };
    }
    Some(node)
}

/// Removes the node at `path`; false if there was nothing to remove.
fn remove(tree: &mut Value, path: &[Seg]) -> bool {
    let Some((last, parents)) = path.split_last() else { return false };
    let mut node = tree;
    for seg in parents {
        let next = match seg {
            Seg::Key(key) => node.as_mapping_mut().and_then(|m| m.get_mut(key.as_str())),
            Seg::Index(index) => node.as_sequence_mut().and_then(|s| s.get_mut(*index)),
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    match last {
        Seg::Key(key) => node.as_mapping_mut().and_then(|m| m.remove(key.as_str())).is_some(),
        Seg::Index(index) => match node.as_sequence_mut() {
            Some(s) if *index < s.len() => {
                s.remove(*index);
                true
            }
            _ => false,
        },
    }
}
