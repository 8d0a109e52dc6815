//! Calico's selector language, evaluated directly on the text (the reference model's own,
//! not `tortie::selector`): `==`, `!=`, `in {}`, `not in {}`, `has()`, `!`, `&&`, `||`,
//! parentheses, `all()`. Only what the cases write; anything else panics the test.

use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;

/// Whether `labels` match the selector `text` (empty: everything).
pub fn matches(text: &str, labels: &Labels) -> bool {
    let mut p = Parser { rest: text.trim(), labels };
    if p.rest.is_empty() {
        return true;
    }
    let v = p.or();
    assert!(p.rest.trim().is_empty(), "selector {text:?}: left over {:?}", p.rest);
    v
}

struct Parser<'a> {
    rest: &'a str,
    labels: &'a Labels,
}

impl Parser<'_> {
    fn eat(&mut self, token: &str) -> bool {
        let r = self.rest.trim_start();
        match r.strip_prefix(token) {
            Some(after) => {
                self.rest = after;
                true
            }
            None => false,
        }
    }

    fn or(&mut self) -> bool {
        let mut v = self.and();
        while self.eat("||") {
            v |= self.and();
        }
        v
    }

    fn and(&mut self) -> bool {
        let mut v = self.unary();
        while self.eat("&&") {
            v &= self.unary();
        }
        v
    }

    fn unary(&mut self) -> bool {
        if self.eat("!") {
            return !self.unary();
        }
        if self.eat("(") {
            let v = self.or();
            assert!(self.eat(")"), "missing ) before {:?}", self.rest);
            return v;
        }
        if self.eat("all()") {
            return true;
        }
        if self.eat("has(") {
            let key = self.word();
            assert!(self.eat(")"));
            return self.labels.contains_key(&key);
        }
        let key = self.word();
        let value = self.labels.get(&key);
        if self.eat("==") {
            return value == Some(&self.quoted());
        }
        if self.eat("!=") {
            return value != Some(&self.quoted());
        }
        let negated = self.eat("not");
        assert!(self.eat("in"), "no operator after {key:?} at {:?}", self.rest);
        assert!(self.eat("{"));
        let mut set = Vec::new();
        while !self.eat("}") {
            set.push(self.quoted());
            self.eat(",");
        }
        value.is_some_and(|v| set.contains(v)) != negated
    }

    fn word(&mut self) -> String {
        let r = self.rest.trim_start();
        let end = r.find(|c: char| !(c.is_ascii_alphanumeric() || "-_./".contains(c))).unwrap_or(r.len());
        self.rest = &r[end..];
        r[..end].to_string()
    }

    fn quoted(&mut self) -> String {
        let r = self.rest.trim_start();
        let quote = r.chars().next().expect("a quoted value");
        assert!(quote == '\'' || quote == '"', "a quoted value at {r:?}");
        let end = r[1..].find(quote).expect("closing quote") + 1;
        self.rest = &r[end + 1..];
        r[1..end].to_string()
    }
}

#[test]
fn the_reference_selector_reads_what_the_cases_write() {
    let labels: Labels =
        [("pod", "a"), ("tier", "front")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    for (text, want) in [
        ("", true),
        ("all()", true),
        ("pod == 'a'", true),
        ("pod != 'a'", false),
        ("pod in {'b', 'a'}", true),
        ("pod not in {'a'}", false),
        ("has(tier) && !has(zone)", true),
        ("pod == 'b' || tier == \"front\"", true),
        ("!(pod == 'a' || pod == 'b')", false),
        ("pod not in {'b'} && has(pod)", true),
    ] {
        assert_eq!(matches(text, &labels), want, "{text}");
    }
}
