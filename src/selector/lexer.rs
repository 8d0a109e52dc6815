//! Cuts a selector into tokens, each with the byte offset it starts at (for error columns). The
//! rules are Calico's tokenizer's (libcalico-go/lib/selector/tokenizer): only space and tab are
//! whitespace, a label is made of `[A-Za-z0-9_./-]` (at most `MAX_LABEL_LEN` bytes), an operator
//! word is only recognised right after a label, and `has(`, `all(`, `global(` are keywords only
//! when written without a space before the parenthesis.

use super::SelectorError;

/// Calico's `MaxLabelLength`.
pub const MAX_LABEL_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Label(String),
    Str(String),
    Has(String),
    All,
    Global,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Eq,
    Ne,
    Not,
    And,
    Or,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Label(l) => format!("label {l}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Has(l) => format!("has({l})"),
            Tok::All => "all()".into(),
            Tok::Global => "global()".into(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::LBrace => "{".into(),
            Tok::RBrace => "}".into(),
            Tok::Comma => ",".into(),
            Tok::Eq => "==".into(),
            Tok::Ne => "!=".into(),
            Tok::Not => "!".into(),
            Tok::And => "&&".into(),
            Tok::Or => "||".into(),
            Tok::In => "in".into(),
            Tok::NotIn => "not in".into(),
            Tok::Contains => "contains".into(),
            Tok::StartsWith => "starts with".into(),
            Tok::EndsWith => "ends with".into(),
            Tok::Eof => "the end of the selector".into(),
        }
    }
}

/// A token and the byte offset of its first character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned {
    pub tok: Tok,
    pub at: usize,
}

/// Whether `b` may appear in a label key.
pub fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

fn skip_space(input: &str, at: usize) -> usize {
    at + input[at..].bytes().take_while(|b| *b == b' ' || *b == b'\t').count()
}

/// The label starting at `at` and the offset after it.
fn label(input: &str, at: usize) -> Result<(String, usize), SelectorError> {
    let len = input[at..].bytes().take_while(|b| is_label_byte(*b)).count();
    if len == 0 {
        return Err(SelectorError::at(input, at, unexpected_char(input, at, "a label")));
    }
    if len > MAX_LABEL_LEN {
        return Err(SelectorError::at(input, at, format!("label longer than {MAX_LABEL_LEN} characters")));
    }
    Ok((input[at..at + len].to_string(), at + len))
}

fn unexpected_char(input: &str, at: usize, expected: &str) -> String {
    match input[at..].chars().next() {
        Some(c) => format!("expected {expected}, found {c:?}"),
        None => format!("expected {expected}, found the end of the selector"),
    }
}

/// Whether `rest` starts with the words `words` (separated by optional whitespace, as Calico
/// accepts `notin` and `startswith`) followed by a word boundary; the offset after them.
fn words(input: &str, at: usize, words: &[&str]) -> Option<usize> {
    let mut pos = at;
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            pos = skip_space(input, pos);
        }
        pos += input[pos..].strip_prefix(word).map(|_| word.len())?;
    }
    let boundary = input.as_bytes().get(pos).is_none_or(|b| !is_label_byte(*b));
    boundary.then_some(pos)
}

/// `keyword(` at `at`, then optional whitespace and `)`: the offset after `)`.
fn empty_call(input: &str, at: usize, keyword: &str) -> Result<Option<usize>, SelectorError> {
    let Some(rest) = input[at..].strip_prefix(keyword).and_then(|r| r.strip_prefix('(')) else { return Ok(None) };
    let inside = input.len() - rest.len();
    let close = skip_space(input, inside);
    if input[close..].starts_with(')') {
        Ok(Some(close + 1))
    } else {
        Err(SelectorError::at(input, close, unexpected_char(input, close, &format!(") after {keyword}("))))
    }
}

pub fn tokenize(input: &str) -> Result<Vec<Spanned>, SelectorError> {
    let mut out: Vec<Spanned> = Vec::new();
    let mut pos = 0;
    loop {
        pos = skip_space(input, pos);
        let at = pos;
        let Some(&first) = input.as_bytes().get(at) else {
            out.push(Spanned { tok: Tok::Eof, at });
            return Ok(out);
        };
        let single = |tok: Tok| Some((tok, at + 1));
        let pair = |second: u8, tok: Tok| (input.as_bytes().get(at + 1) == Some(&second)).then_some((tok, at + 2));
        let after_label = matches!(out.last(), Some(Spanned { tok: Tok::Label(_), .. }));
        let (tok, next) = match first {
            b'(' => single(Tok::LParen),
            b')' => single(Tok::RParen),
            b'{' => single(Tok::LBrace),
            b'}' => single(Tok::RBrace),
            b',' => single(Tok::Comma),
            b'=' => pair(b'=', Tok::Eq),
            b'&' => pair(b'&', Tok::And),
            b'|' => pair(b'|', Tok::Or),
            b'!' => pair(b'=', Tok::Ne).or(single(Tok::Not)),
            b'"' | b'\'' => {
                let quote = first as char;
                match input[at + 1..].find(quote) {
                    Some(len) => Some((Tok::Str(input[at + 1..at + 1 + len].to_string()), at + 2 + len)),
                    None => {
                        return Err(SelectorError::at(input, at, format!("unterminated string: no closing {quote}")));
                    }
                }
            }
            _ if after_label => {
                let operators: [(&[&str], Tok); 5] = [
                    (&["contains"], Tok::Contains),
                    (&["starts", "with"], Tok::StartsWith),
                    (&["ends", "with"], Tok::EndsWith),
                    (&["not", "in"], Tok::NotIn),
                    (&["in"], Tok::In),
                ];
                let found = operators.into_iter().find_map(|(w, tok)| words(input, at, w).map(|next| (tok, next)));
                match found {
                    Some(found) => Some(found),
                    None => return Err(SelectorError::at(input, at, expected_operator(&out))),
                }
            }
            _ => {
                if let Some(next) = empty_call(input, at, "all")? {
                    Some((Tok::All, next))
                } else if let Some(next) = empty_call(input, at, "global")? {
                    Some((Tok::Global, next))
                } else if let Some(rest) = input[at..].strip_prefix("has(") {
                    let start = skip_space(input, input.len() - rest.len());
                    let (name, end) = label(input, start)?;
                    let close = skip_space(input, end);
                    if !input[close..].starts_with(')') {
                        return Err(SelectorError::at(
                            input,
                            close,
                            unexpected_char(input, close, ") after has(label"),
                        ));
                    }
                    Some((Tok::Has(name), close + 1))
                } else {
                    let (name, end) = label(input, at)?;
                    Some((Tok::Label(name), end))
                }
            }
        }
        .ok_or_else(|| {
            let text = match first {
                b'=' => "expected ==".to_string(),
                b'&' => "expected &&".to_string(),
                b'|' => "expected ||".to_string(),
                _ => unexpected_char(input, at, "a label"),
            };
            SelectorError::at(input, at, text)
        })?;
        out.push(Spanned { tok, at });
        pos = next;
    }
}

fn expected_operator(tokens: &[Spanned]) -> String {
    let label = match tokens.last() {
        Some(Spanned { tok: Tok::Label(l), .. }) => l.as_str(),
        _ => "",
    };
    format!("expected an operator (==, !=, in, not in, contains, starts with, ends with) after {label}")
}
