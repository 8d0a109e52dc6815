//! The parsed selector, its evaluation and its canonical text (Calico's `String()`: `&&` and
//! `||` groups in parentheses, values in double quotes unless they hold one, sets sorted and
//! without duplicates), so two selectors that read the same print the same.

use super::Labels;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    All,
    /// Calico's `global()`: true for every label set; only its meaning for namespaces differs.
    Global,
    Has(String),
    Eq(String, String),
    /// True when the label is absent too.
    Ne(String, String),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    /// The set is sorted and free of duplicates (binary search).
    In(String, Box<[String]>),
    /// True when the label is absent too.
    NotIn(String, Box<[String]>),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let value = |key: &str| labels.get(key);
        match self {
            Expr::All | Expr::Global => true,
            Expr::Has(k) => value(k).is_some(),
            Expr::Eq(k, v) => value(k) == Some(v.as_str()),
            Expr::Ne(k, v) => value(k) != Some(v.as_str()),
            Expr::Contains(k, v) => value(k).is_some_and(|x| x.contains(v.as_str())),
            Expr::StartsWith(k, v) => value(k).is_some_and(|x| x.starts_with(v.as_str())),
            Expr::EndsWith(k, v) => value(k).is_some_and(|x| x.ends_with(v.as_str())),
            Expr::In(k, set) => value(k).is_some_and(|x| in_set(set, x)),
            Expr::NotIn(k, set) => value(k).is_none_or(|x| !in_set(set, x)),
            Expr::Not(e) => !e.matches(labels),
            Expr::And(es) => es.iter().all(|e| e.matches(labels)),
            Expr::Or(es) => es.iter().any(|e| e.matches(labels)),
        }
    }

    /// Whether `global()` appears anywhere.
    pub fn uses_global(&self) -> bool {
        match self {
            Expr::Global => true,
            Expr::Not(e) => e.uses_global(),
            Expr::And(es) | Expr::Or(es) => es.iter().any(Expr::uses_global),
            _ => false,
        }
    }
}

fn in_set(set: &[String], value: &str) -> bool {
    set.binary_search_by(|s| s.as_str().cmp(value)).is_ok()
}

/// A value quoted so that it reads back: `"` unless it contains one (it cannot contain both).
fn quoted(value: &str) -> String {
    let quote = if value.contains('"') { '\'' } else { '"' };
    format!("{quote}{value}{quote}")
}

fn join(f: &mut fmt::Formatter<'_>, es: &[Expr], op: &str) -> fmt::Result {
    f.write_str("(")?;
    for (i, e) in es.iter().enumerate() {
        if i > 0 {
            f.write_str(op)?;
        }
        write!(f, "{e}")?;
    }
    f.write_str(")")
}

fn set(f: &mut fmt::Formatter<'_>, key: &str, op: &str, values: &[String]) -> fmt::Result {
    let values: Vec<String> = values.iter().map(|v| quoted(v)).collect();
    write!(f, "{key} {op} {{{}}}", values.join(", "))
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::All => f.write_str("all()"),
            Expr::Global => f.write_str("global()"),
            Expr::Has(k) => write!(f, "has({k})"),
            Expr::Eq(k, v) => write!(f, "{k} == {}", quoted(v)),
            Expr::Ne(k, v) => write!(f, "{k} != {}", quoted(v)),
            Expr::Contains(k, v) => write!(f, "{k} contains {}", quoted(v)),
            Expr::StartsWith(k, v) => write!(f, "{k} starts with {}", quoted(v)),
            Expr::EndsWith(k, v) => write!(f, "{k} ends with {}", quoted(v)),
            Expr::In(k, vs) => set(f, k, "in", vs),
            Expr::NotIn(k, vs) => set(f, k, "not in", vs),
            Expr::Not(e) => write!(f, "!{e}"),
            Expr::And(es) => join(f, es, " && "),
            Expr::Or(es) => join(f, es, " || "),
        }
    }
}
