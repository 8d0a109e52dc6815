//! Calico's selector language (`has(k) && k in {'a', 'b'} || !all()` …), the one parser and
//! evaluator every selector in tortie goes through: pools' and BGP peers' `nodeSelector`,
//! BGP peers' `peerSelector`, and network policy's selectors (`crate::policy`).
//!
//! The grammar, its quirks and its error messages are Calico's (see `lexer` and `parser`, and
//! docs/selectors.md); an error names the 1-based column (in characters) and what was expected.
//! An empty selector is `all()`. `Display` gives Calico's canonical form.

mod ast;
mod lexer;
mod parser;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

pub use lexer::{MAX_LABEL_LEN, is_label_byte};
pub use parser::MAX_DEPTH;

/// A set of labels a selector is matched against.
pub trait Labels {
    /// The value of label `key`, if set.
    fn get(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }
}

/// No labels at all.
pub struct NoLabels;

impl Labels for NoLabels {
    fn get(&self, _: &str) -> Option<&str> {
        None
    }
}

/// A selector that could not be parsed: where and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct SelectorError {
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
}

impl SelectorError {
    /// An error at byte offset `at` of `input`.
    fn at(input: &str, at: usize, message: String) -> SelectorError {
        let at = at.min(input.len());
        let column = input.get(..at).map_or(at, |before| before.chars().count()) + 1;
        SelectorError { column, message }
    }
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    root: ast::Expr,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let tokens = lexer::tokenize(text)?;
        let root = parser::Parser::new(text, tokens).selector()?;
        Ok(Selector { root })
    }

    /// `all()`.
    pub fn all() -> Selector {
        Selector { root: ast::Expr::All }
    }

    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.root.matches(labels)
    }

    /// Whether `global()` appears in it (refused where it means nothing, as in pools).
    pub fn uses_global(&self) -> bool {
        self.root.uses_global()
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Selector, SelectorError> {
        Selector::parse(text)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}

/// Checks the selector in field `field`: `Err` names the field, the value and the column, in the
/// form resources' `check()` returns (`nodeSelector: "a ==" column 5: expected …`).
pub fn check_field(field: &str, text: &str) -> Result<Selector, String> {
    Selector::parse(text).map_err(|e| format!("{field}: {text:?} is not a valid selector: {e}"))
}

/// Checks a selector over nodes in field `field` (pools' `nodeSelector`): as [`check_field`],
/// and `global()` is refused, as Calico refuses it there (it selects namespaces, not nodes).
pub fn check_node_selector(field: &str, text: &str) -> Result<Selector, String> {
    let selector = check_field(field, text)?;
    if selector.uses_global() {
        return Err(format!("{field}: {text:?} uses global(), which is not valid in a node selector"));
    }
    Ok(selector)
}
