//! Configuration errors: every problem carries the field path and the value.

use std::fmt;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `bgp.peers[1].as_number`; empty for the whole document.
    pub path: String,
    /// What is wrong, naming the offending value (never a secret).
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { path: path.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { write!(f, "{}", self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{origin}: not valid YAML: {message}")]
    Syntax { origin: String, message: String },
    #[error("{} problem(s) in {origin}:\n{}", .errors.len(), render(.errors))]
    Invalid { origin: String, errors: Vec<FieldError> },
}

fn render(errors: &[FieldError]) -> String {
    errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n")
}

impl ConfigError {
    /// The individual field problems (empty for read and syntax errors).
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            ConfigError::Invalid { errors, .. } => errors,
            _ => &[],
        }
    }
}
