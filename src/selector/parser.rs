//! Recursive descent over the tokens, with Calico's grammar (libcalico-go/lib/selector/parser):
//!
//! ```text
//! or        = and { "||" and }
//! and       = operation { "&&" operation }
//! operation = { "!" } ( has(label) | all() | global() | "(" or ")"
//!             | label ( "==" | "!=" | contains | starts with | ends with ) string
//!             | label ( in | not in ) "{" [ string { "," string } [ "," ] ] "}" )
//! ```

use super::SelectorError;
use super::ast::Expr;
use super::lexer::{Spanned, Tok};

/// Deepest nesting of parentheses accepted: the parser recurses once per level, and no real
/// selector comes near it.
pub const MAX_DEPTH: usize = 64;

pub struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Spanned>,
    next: usize,
}

impl<'a> Parser<'a> {
    pub fn new(input: &'a str, tokens: Vec<Spanned>) -> Parser<'a> {
        Parser { input, tokens, next: 0 }
    }

    fn peek(&self) -> &Spanned {
        // The lexer always ends with `Eof`, which nothing consumes.
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Spanned {
        let token = self.peek().clone();
        if token.tok != Tok::Eof {
            self.next += 1;
        }
        token
    }

    fn error(&self, token: &Spanned, expected: &str) -> SelectorError {
        SelectorError::at(self.input, token.at, format!("expected {expected}, found {}", token.tok.describe()))
    }

    /// The whole selector: an expression then the end; nothing at all is `all()`.
    pub fn selector(mut self) -> Result<Expr, SelectorError> {
        if self.peek().tok == Tok::Eof {
            return Ok(Expr::All);
        }
        let expr = self.or(0)?;
        let end = self.peek().clone();
        if end.tok != Tok::Eof {
            return Err(self.error(&end, "&&, || or the end of the selector"));
        }
        Ok(expr)
    }

    fn or(&mut self, depth: usize) -> Result<Expr, SelectorError> {
        let mut terms = vec![self.and(depth)?];
        while self.peek().tok == Tok::Or {
            self.bump();
            terms.push(self.and(depth)?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Expr::Or(terms) })
    }

    fn and(&mut self, depth: usize) -> Result<Expr, SelectorError> {
        let mut terms = vec![self.operation(depth)?];
        while self.peek().tok == Tok::And {
            self.bump();
            terms.push(self.operation(depth)?);
        }
        Ok(if terms.len() == 1 { terms.remove(0) } else { Expr::And(terms) })
    }

    fn operation(&mut self, depth: usize) -> Result<Expr, SelectorError> {
        let mut negated = false;
        while self.peek().tok == Tok::Not {
            self.bump();
            negated = !negated;
        }
        let first = self.bump();
        let expr = match first.tok {
            Tok::Has(label) => Expr::Has(label),
            Tok::All => Expr::All,
            Tok::Global => Expr::Global,
            Tok::LParen => {
                if depth >= MAX_DEPTH {
                    let message = format!("parentheses nested deeper than {MAX_DEPTH}");
                    return Err(SelectorError::at(self.input, first.at, message));
                }
                let inner = self.or(depth + 1)?;
                let close = self.bump();
                if close.tok != Tok::RParen {
                    return Err(self.error(&close, ")"));
                }
                inner
            }
            Tok::Label(label) => self.comparison(label)?,
            _ => return Err(self.error(&first, "a label, has(), all(), global(), ! or (")),
        };
        Ok(if negated { Expr::Not(Box::new(expr)) } else { expr })
    }

    fn comparison(&mut self, label: String) -> Result<Expr, SelectorError> {
        let op = self.bump();
        let make: fn(String, String) -> Expr = match op.tok {
            Tok::Eq => Expr::Eq,
            Tok::Ne => Expr::Ne,
            Tok::Contains => Expr::Contains,
            Tok::StartsWith => Expr::StartsWith,
            Tok::EndsWith => Expr::EndsWith,
            Tok::In | Tok::NotIn => {
                let values = self.set(&op.tok)?;
                return Ok(if op.tok == Tok::In { Expr::In(label, values) } else { Expr::NotIn(label, values) });
            }
            _ => return Err(self.error(&op, &format!("an operator after label {label}"))),
        };
        let value = self.bump();
        match value.tok {
            Tok::Str(v) => Ok(make(label, v)),
            _ => Err(self.error(&value, &format!("a quoted string after {}", op.tok.describe()))),
        }
    }

    /// `{ 'a', "b" }` after `in` / `not in`: sorted, duplicates dropped.
    fn set(&mut self, op: &Tok) -> Result<Box<[String]>, SelectorError> {
        let open = self.bump();
        if open.tok != Tok::LBrace {
            return Err(self.error(&open, &format!("{{ after {}", op.describe())));
        }
        let mut values = Vec::new();
        loop {
            let token = self.bump();
            match token.tok {
                Tok::RBrace => break,
                Tok::Str(v) => values.push(v),
                _ => return Err(self.error(&token, "a quoted string or }")),
            }
            let token = self.bump();
            match token.tok {
                Tok::RBrace => break,
                Tok::Comma => {}
                _ => return Err(self.error(&token, ", or }")),
            }
        }
        values.sort();
        values.dedup();
        Ok(values.into_boxed_slice())
    }
}
