//! The plain reference model for the differential tests: its own expression tree, evaluated the
//! obvious way (linear scans, no sharing with `ast`), and rendered as text with varying quotes
//! and whitespace for the real parser to read.

use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub enum Op {
    Eq,
    Ne,
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone)]
pub enum Ref {
    All,
    Global,
    Has(String),
    Cmp(Op, String, String),
    /// `true`: `in`; `false`: `not in`.
    Set(bool, String, Vec<String>),
    Not(Box<Ref>),
    And(Box<Ref>, Box<Ref>),
    Or(Box<Ref>, Box<Ref>),
}

impl Ref {
    pub fn eval(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Ref::All | Ref::Global => true,
            Ref::Has(k) => labels.contains_key(k),
            Ref::Cmp(op, k, v) => match (op, labels.get(k)) {
                (Op::Ne, None) => true,
                (_, None) => false,
                (Op::Eq, Some(x)) => x == v,
                (Op::Ne, Some(x)) => x != v,
                (Op::Contains, Some(x)) => x.contains(v.as_str()),
                (Op::StartsWith, Some(x)) => x.starts_with(v.as_str()),
                (Op::EndsWith, Some(x)) => x.ends_with(v.as_str()),
            },
            Ref::Set(is_in, k, vs) => match labels.get(k) {
                None => !is_in,
                Some(x) => vs.contains(x) == *is_in,
            },
            Ref::Not(e) => !e.eval(labels),
            Ref::And(a, b) => a.eval(labels) && b.eval(labels),
            Ref::Or(a, b) => a.eval(labels) || b.eval(labels),
        }
    }

    /// Selector text for this tree; `ws` yields the whitespace between tokens ("" allowed
    /// where the grammar permits none), `pick` chooses among equivalent spellings.
    pub fn render(&self, ws: &mut impl FnMut(bool) -> &'static str, pick: &mut impl FnMut(usize) -> usize) -> String {
        let quote = |v: &str, pick: &mut dyn FnMut(usize) -> usize| {
            let q = if v.contains('"') || (!v.contains('\'') && pick(2) == 0) { '\'' } else { '"' };
            format!("{q}{v}{q}")
        };
        match self {
            Ref::All => format!("all({})", ws(false)),
            Ref::Global => format!("global({})", ws(false)),
            Ref::Has(k) => format!("has({}{k}{})", ws(false), ws(false)),
            Ref::Cmp(op, k, v) => {
                let op = match op {
                    Op::Eq => format!("{}=={}", ws(false), ws(false)),
                    Op::Ne => format!("{}!={}", ws(false), ws(false)),
                    Op::Contains => format!("{}contains{}", ws(true), ws(false)),
                    Op::StartsWith => {
                        let glue = if pick(2) == 0 { ws(true) } else { "" };
                        format!("{}starts{glue}with{}", ws(true), ws(false))
                    }
                    Op::EndsWith => format!("{}ends{}with{}", ws(true), ws(true), ws(false)),
                };
                format!("{k}{op}{}", quote(v, pick))
            }
            Ref::Set(is_in, k, vs) => {
                let op = if *is_in {
                    "in"
                } else if pick(2) == 0 {
                    "notin"
                } else {
                    "not in"
                };
                let items: Vec<String> = vs.iter().map(|v| quote(v, pick)).collect();
                let trailing = if !vs.is_empty() && pick(4) == 0 { "," } else { "" };
                format!("{k}{}{op}{}{{{}{trailing}}}", ws(true), ws(false), items.join(&format!(",{}", ws(false))))
            }
            Ref::Not(e) => {
                let inner = e.render(ws, pick);
                match **e {
                    Ref::And(..) | Ref::Or(..) => format!("!{}({inner})", ws(false)),
                    _ => format!("!{}{inner}", ws(false)),
                }
            }
            Ref::And(a, b) => {
                let side = |e: &Ref, ws: &mut dyn FnMut(bool) -> &'static str, s: String| match e {
                    Ref::Or(..) => format!("({}{s}{})", ws(false), ws(false)),
                    _ => s,
                };
                let left = a.render(ws, pick);
                let left = side(a, ws, left);
                let right = b.render(ws, pick);
                let right = side(b, ws, right);
                format!("{left}{}&&{}{right}", ws(false), ws(false))
            }
            Ref::Or(a, b) => {
                let left = a.render(ws, pick);
                let right = b.render(ws, pick);
                format!("{left}{}||{}{right}", ws(false), ws(false))
            }
        }
    }
}
