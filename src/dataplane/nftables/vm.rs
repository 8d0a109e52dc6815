//! A rule's statements as nf_tables VM expressions, encoded as `nft` encodes them: the
//! statement forms tortie's sections write, and nothing else — any other form is
//! [`Unsupported`] and the batch goes to `nft` instead.
//!
//! Like `nft`, a match on an IPv4 or IPv6 header field is preceded by `meta nfproto` and
//! one on an ICMP field by `meta l4proto` unless the rule matched them already, a range
//! match is two comparisons (`!=` a range expression), and a match against a list of
//! conntrack states is a mask; a verdict map and a concatenation compared with a set need
//! anonymous sets, which go into the batch before the rule.

use super::wire::{Message, NFTA_EXPR_DATA, NFTA_EXPR_NAME, NFTA_LIST_ELEM};
use nftables::expr::{BinaryOperation, Expression, MetaKey, NamedExpression, Payload, SetItem, Verdict};
use nftables::stmt::{Counter, Match, NATFlag, Operator, Statement};
use std::net::IpAddr;

/// A statement form this encoder does not write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not encoded over nfnetlink: {0}")]
pub struct Unsupported(pub String);

fn unsupported<T>(what: impl std::fmt::Debug) -> Result<T, Unsupported> {
    let mut text = format!("{what:?}");
    text.truncate(200);
    Err(Unsupported(text))
}

/// Registers: the verdict, and the first 16-octet data register (`reg 1`), whose 4-octet
/// parts are 8, 9, … (`NFT_REG32_00`).
const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const REG32_00: u32 = 8;

// Expression attributes (linux/netfilter/nf_tables.h).
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// Verdict codes.
pub const NF_DROP: i32 = 0;
pub const NF_ACCEPT: i32 = 1;
pub const NFT_JUMP: i32 = -3;
pub const NFT_RETURN: i32 = -5;

const NFT_META_MARK: u32 = 3;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
const NFT_CT_STATE: u32 = 0;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_CMP_LTE: u32 = 3;
const NFT_CMP_GTE: u32 = 5;
const NFT_RANGE_NEQ: u32 = 1;
const NFT_LOOKUP_F_INV: u32 = 1;
const NF_NAT_RANGE_PROTO_RANDOM_FULLY: u32 = 0x10;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const IFNAMSIZ: usize = 16;
/// nft's data types (src/datatype.h) a set key can have, and how a concatenation's type is
/// made of its parts' (`TYPE_BITS`).
const TYPE_ICMP_TYPE: u32 = 14;
const TYPE_ICMP6_TYPE: u32 = 29;
const TYPE_ICMP_CODE: u32 = 32;
const TYPE_ICMPV6_CODE: u32 = 33;
pub const TYPE_IFNAME: u32 = 41;
const TYPE_BITS: u32 = 6;

/// A verdict as data: its code and, for a jump, the chain.
pub type VerdictValue = (i32, Option<String>);

/// One VM expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Meta {
        key: u32,
    },
    MetaSet {
        key: u32,
    },
    Ct {
        key: u32,
    },
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    Cmp {
        op: u32,
        data: Vec<u8>,
    },
    Bitwise {
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// A lookup of `reg 1` in a named set, or in the anonymous set `anonymous` of the rule.
    Lookup {
        set: String,
        anonymous: Option<usize>,
        verdict: bool,
        invert: bool,
    },
    Range {
        op: u32,
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Counter,
    Immediate {
        code: i32,
        chain: Option<String>,
    },
    Log {
        prefix: Option<String>,
    },
    Masq {
        flags: u32,
    },
}

/// An anonymous set a rule needs: constant, sized to its elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnonymousSet {
    pub key_type: u32,
    pub key_len: u32,
    /// Elements: key, and for a verdict map the verdict (code, chain).
    pub elements: Vec<(Vec<u8>, Option<VerdictValue>)>,
    pub map: bool,
}

/// A rule's expressions and the anonymous sets they name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Program {
    pub exprs: Vec<Expr>,
    pub sets: Vec<AnonymousSet>,
}

/// What a loaded value is: its width and how a number is written into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    /// Network order, this many octets.
    Big(usize),
    /// Host order, four octets (the mark, conntrack state).
    Host32,
    /// One octet.
    Byte,
    /// An interface name, zero-padded.
    Name,
}

impl Value {
    fn number(self, n: u64) -> Result<Vec<u8>, Unsupported> {
        Ok(match self {
            Value::Big(width) => {
                if width < 8 && n >> (8 * width) != 0 {
                    return unsupported(("value wider than its field", n, width));
                }
                n.to_be_bytes()[8 - width.min(8)..].to_vec()
            }
            Value::Host32 => {
                u32::try_from(n).map_err(|_| Unsupported(format!("{n} wider than 32 bits")))?.to_ne_bytes().to_vec()
            }
            Value::Byte => vec![u8::try_from(n).map_err(|_| Unsupported(format!("{n} wider than 8 bits")))?],
            Value::Name => return unsupported(("a number as an interface name", n)),
        })
    }

    fn of(self, e: &Expression) -> Result<Vec<u8>, Unsupported> {
        match (self, e) {
            (_, Expression::Number(n)) => self.number(u64::from(*n)),
            (Value::Name, Expression::String(s)) if s.len() < IFNAMSIZ => {
                let mut bytes = s.as_bytes().to_vec();
                bytes.resize(IFNAMSIZ, 0);
                Ok(bytes)
            }
            (Value::Big(4 | 16), Expression::String(s)) => match s.parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) => Ok(a.octets().to_vec()),
                Ok(IpAddr::V6(a)) => Ok(a.octets().to_vec()),
                Err(_) => unsupported(s),
            },
            _ => unsupported(e),
        }
    }
}

/// A field being matched: how it is loaded, what it holds, what must precede it.
struct Field {
    load: Vec<Expr>,
    value: Value,
    /// `meta nfproto` / `meta l4proto` this field implies.
    needs_nfproto: Option<u8>,
    needs_l4proto: Option<u8>,
}

fn meta(key: MetaKey) -> Result<(u32, Value), Unsupported> {
    Ok(match key {
        MetaKey::Mark => (NFT_META_MARK, Value::Host32),
        MetaKey::Iifname => (NFT_META_IIFNAME, Value::Name),
        MetaKey::Oifname => (NFT_META_OIFNAME, Value::Name),
        MetaKey::Nfproto => (NFT_META_NFPROTO, Value::Byte),
        MetaKey::L4proto => (NFT_META_L4PROTO, Value::Byte),
        other => return unsupported(other),
    })
}

/// A header field: where it is, what it implies, its type as a set key.
struct HeaderField {
    base: u32,
    offset: u32,
    len: u32,
    nfproto: Option<u8>,
    l4proto: Option<u8>,
    key_type: u32,
}

fn payload_field(protocol: &str, field: &str) -> Result<HeaderField, Unsupported> {
    let net = NFT_PAYLOAD_NETWORK_HEADER;
    let th = NFT_PAYLOAD_TRANSPORT_HEADER;
    let f =
        |base, offset, len, nfproto, l4proto, key_type| HeaderField { base, offset, len, nfproto, l4proto, key_type };
    Ok(match (protocol, field) {
        ("ip", "saddr") => f(net, 12, 4, Some(NFPROTO_IPV4), None, 7),
        ("ip", "daddr") => f(net, 16, 4, Some(NFPROTO_IPV4), None, 7),
        ("ip6", "saddr") => f(net, 8, 16, Some(NFPROTO_IPV6), None, 8),
        ("ip6", "daddr") => f(net, 24, 16, Some(NFPROTO_IPV6), None, 8),
        ("th", "sport") => f(th, 0, 2, None, None, 13),
        ("th", "dport") => f(th, 2, 2, None, None, 13),
        ("icmp", "type") => f(th, 0, 1, None, Some(IPPROTO_ICMP), TYPE_ICMP_TYPE),
        ("icmp", "code") => f(th, 1, 1, None, Some(IPPROTO_ICMP), TYPE_ICMP_CODE),
        ("icmpv6", "type") => f(th, 0, 1, None, Some(IPPROTO_ICMPV6), TYPE_ICMP6_TYPE),
        ("icmpv6", "code") => f(th, 1, 1, None, Some(IPPROTO_ICMPV6), TYPE_ICMPV6_CODE),
        _ => return unsupported((protocol, field)),
    })
}

fn field(e: &Expression) -> Result<Field, Unsupported> {
    match e {
        Expression::Named(NamedExpression::Meta(m)) => {
            let (key, value) = meta(m.key)?;
            Ok(Field { load: vec![Expr::Meta { key }], value, needs_nfproto: None, needs_l4proto: None })
        }
        Expression::Named(NamedExpression::CT(ct)) if ct.key == "state" && ct.family.is_none() && ct.dir.is_none() => {
            Ok(Field {
                load: vec![Expr::Ct { key: NFT_CT_STATE }],
                value: Value::Host32,
                needs_nfproto: None,
                needs_l4proto: None,
            })
        }
        Expression::Named(NamedExpression::Payload(Payload::PayloadField(p))) => {
            let HeaderField { base, offset, len, nfproto, l4proto, .. } = payload_field(&p.protocol, &p.field)?;
            let value = if len == 1 { Value::Byte } else { Value::Big(len as usize) };
            Ok(Field {
                load: vec![Expr::Payload { base, offset, len, dreg: REG_1 }],
                value,
                needs_nfproto: nfproto,
                needs_l4proto: l4proto,
            })
        }
        // `meta mark & MASK`
        Expression::BinaryOperation(op) => match op.as_ref() {
            BinaryOperation::AND(left, Expression::Number(mask)) => {
                let mut inner = field(left)?;
                if inner.value != Value::Host32 {
                    return unsupported(e);
                }
                inner.load.push(Expr::Bitwise { mask: mask.to_ne_bytes().to_vec(), xor: vec![0; 4] });
                Ok(inner)
            }
            _ => unsupported(e),
        },
        _ => unsupported(e),
    }
}

/// Conntrack state bits by name.
fn ct_state(name: &str) -> Result<u32, Unsupported> {
    Ok(match name {
        "invalid" => 1,
        "established" => 2,
        "related" => 4,
        "new" => 8,
        "untracked" => 64,
        _ => return unsupported(name),
    })
}

/// Builds one rule's program, tracking the protocol matches seen so far.
#[derive(Default)]
struct Builder {
    program: Program,
    nfproto: Option<u8>,
    l4proto: Option<u8>,
}

impl Builder {
    /// The `meta nfproto` / `meta l4proto` matches a field implies, unless the rule has one.
    fn depend(&mut self, nfproto: Option<u8>, l4proto: Option<u8>) {
        for (needed, seen, key) in
            [(nfproto, &mut self.nfproto, NFT_META_NFPROTO), (l4proto, &mut self.l4proto, NFT_META_L4PROTO)]
        {
            if let Some(p) = needed
                && seen.is_none()
            {
                self.program.exprs.push(Expr::Meta { key });
                self.program.exprs.push(Expr::Cmp { op: NFT_CMP_EQ, data: vec![p] });
                *seen = Some(p);
            }
        }
    }

    fn statement(&mut self, s: &Statement) -> Result<(), Unsupported> {
        let exprs = &mut self.program.exprs;
        match s {
            Statement::Match(m) => return self.matching(m),
            Statement::Counter(Counter::Anonymous(None)) => exprs.push(Expr::Counter),
            Statement::Accept(None) => exprs.push(Expr::Immediate { code: NF_ACCEPT, chain: None }),
            Statement::Drop(None) => exprs.push(Expr::Immediate { code: NF_DROP, chain: None }),
            Statement::Return(None) => exprs.push(Expr::Immediate { code: NFT_RETURN, chain: None }),
            Statement::Jump(j) => exprs.push(Expr::Immediate { code: NFT_JUMP, chain: Some(j.target.to_string()) }),
            Statement::Log(Some(log))
                if log.group.is_none()
                    && log.snaplen.is_none()
                    && log.queue_threshold.is_none()
                    && log.level.is_none()
                    && log.flags.is_none() =>
            {
                exprs.push(Expr::Log { prefix: log.prefix.as_ref().map(|p| p.to_string()) })
            }
            Statement::Masquerade(Some(nat))
                if nat.addr.is_none()
                    && nat.family.is_none()
                    && nat.port.is_none()
                    && nat.flags.as_ref().is_some_and(|f| f.len() == 1 && f.contains(&NATFlag::FullyRandom)) =>
            {
                exprs.push(Expr::Masq { flags: NF_NAT_RANGE_PROTO_RANDOM_FULLY })
            }
            Statement::Mangle(mangle) => {
                let Expression::Named(NamedExpression::Meta(key)) = &mangle.key else { return unsupported(s) };
                let (NFT_META_MARK, _) = meta(key.key)? else { return unsupported(s) };
                let is_mark =
                    |e: &Expression| matches!(e, Expression::Named(NamedExpression::Meta(m)) if m.key == MetaKey::Mark);
                // `mark & M` is (mark & M) ^ 0; `mark | B` is (mark & !B) ^ B.
                let (mask, xor) = match &mangle.value {
                    Expression::BinaryOperation(op) => match op.as_ref() {
                        BinaryOperation::AND(m, Expression::Number(mask)) if is_mark(m) => (*mask, 0),
                        BinaryOperation::OR(parts) => match &parts[..] {
                            [m, Expression::Number(bits)] if is_mark(m) => (!*bits, *bits),
                            _ => return unsupported(s),
                        },
                        _ => return unsupported(s),
                    },
                    _ => return unsupported(s),
                };
                exprs.push(Expr::Meta { key: NFT_META_MARK });
                exprs.push(Expr::Bitwise { mask: mask.to_ne_bytes().to_vec(), xor: xor.to_ne_bytes().to_vec() });
                exprs.push(Expr::MetaSet { key: NFT_META_MARK });
            }
            Statement::VerdictMap(vmap) => {
                let f = field(&vmap.key)?;
                if f.value != Value::Name {
                    return unsupported(s);
                }
                let Expression::Named(NamedExpression::Set(items)) = &vmap.data else { return unsupported(s) };
                let mut elements = Vec::with_capacity(items.len());
                for item in items {
                    let (key, verdict) = match item {
                        SetItem::Mapping(key, Expression::Verdict(v)) => (key, verdict_of(v)?),
                        // `[key, verdict]`, as JSON gives a mapping.
                        SetItem::Element(Expression::List(pair)) => match &pair[..] {
                            [key, Expression::Verdict(v)] => (key, verdict_of(v)?),
                            _ => return unsupported(item),
                        },
                        SetItem::MappingStatement(key, Statement::Jump(j)) => {
                            (key, (NFT_JUMP, Some(j.target.to_string())))
                        }
                        SetItem::MappingStatement(key, Statement::Accept(None)) => (key, (NF_ACCEPT, None)),
                        SetItem::MappingStatement(key, Statement::Drop(None)) => (key, (NF_DROP, None)),
                        _ => return unsupported(item),
                    };
                    elements.push((Value::Name.of(key)?, Some(verdict)));
                }
                self.depend(f.needs_nfproto, f.needs_l4proto);
                self.program.exprs.extend(f.load);
                let anonymous = self.program.sets.len();
                self.program.sets.push(AnonymousSet {
                    key_type: TYPE_IFNAME,
                    key_len: IFNAMSIZ as u32,
                    elements,
                    map: true,
                });
                self.program.exprs.push(Expr::Lookup {
                    set: "__map%d".into(),
                    anonymous: Some(anonymous),
                    verdict: true,
                    invert: false,
                });
            }
            _ => return unsupported(s),
        }
        Ok(())
    }

    fn matching(&mut self, m: &Match) -> Result<(), Unsupported> {
        if let Expression::Named(NamedExpression::Concat(parts)) = &m.left {
            return self.concat_in_set(m, parts);
        }
        let f = field(&m.left)?;
        let eq = match m.op {
            Operator::EQ => true,
            Operator::NEQ => false,
            Operator::IN if matches!(f.load[..], [Expr::Ct { .. }]) => return self.ct_states(f, &m.right),
            _ => return unsupported(m),
        };
        // What the match says of the protocols: `meta nfproto ipv4` itself satisfies the
        // dependency of a later `ip saddr`.
        let said = |key: u32| eq && matches!(f.load[..], [Expr::Meta { key: k }] if k == key);
        let value = match &m.right {
            Expression::String(s) if s.starts_with('@') => {
                self.depend(f.needs_nfproto, f.needs_l4proto);
                self.program.exprs.extend(f.load);
                self.program.exprs.push(Expr::Lookup {
                    set: s[1..].to_string(),
                    anonymous: None,
                    verdict: false,
                    invert: !eq,
                });
                return Ok(());
            }
            Expression::String(s) if is_meta(&m.left, MetaKey::Nfproto) => match s.as_ref() {
                "ipv4" => vec![NFPROTO_IPV4],
                "ipv6" => vec![NFPROTO_IPV6],
                _ => return unsupported(m),
            },
            Expression::Range(r) => {
                let (from, to) = (f.value.of(&r.range[0])?, f.value.of(&r.range[1])?);
                self.depend(f.needs_nfproto, f.needs_l4proto);
                self.program.exprs.extend(f.load);
                if eq {
                    self.program.exprs.push(Expr::Cmp { op: NFT_CMP_GTE, data: from });
                    self.program.exprs.push(Expr::Cmp { op: NFT_CMP_LTE, data: to });
                } else {
                    self.program.exprs.push(Expr::Range { op: NFT_RANGE_NEQ, from, to });
                }
                return Ok(());
            }
            other => f.value.of(other)?,
        };
        if said(NFT_META_NFPROTO) {
            self.nfproto = value.first().copied();
        }
        if said(NFT_META_L4PROTO) {
            self.l4proto = value.first().copied();
        }
        self.depend(f.needs_nfproto, f.needs_l4proto);
        self.program.exprs.extend(f.load);
        self.program.exprs.push(Expr::Cmp { op: if eq { NFT_CMP_EQ } else { NFT_CMP_NEQ }, data: value });
        Ok(())
    }

    /// `ct state { a, b }`: the state's bits masked, not zero.
    fn ct_states(&mut self, f: Field, right: &Expression) -> Result<(), Unsupported> {
        let Expression::List(names) = right else { return unsupported(right) };
        let mut bits = 0u32;
        for name in names {
            let Expression::String(name) = name else { return unsupported(name) };
            bits |= ct_state(name)?;
        }
        self.program.exprs.extend(f.load);
        self.program.exprs.push(Expr::Bitwise { mask: bits.to_ne_bytes().to_vec(), xor: vec![0; 4] });
        self.program.exprs.push(Expr::Cmp { op: NFT_CMP_NEQ, data: vec![0; 4] });
        Ok(())
    }

    /// `a . b ==/!= { x . y, … }`: the parts loaded into consecutive 4-octet registers and
    /// looked up in an anonymous set.
    fn concat_in_set(&mut self, m: &Match, parts: &[Expression]) -> Result<(), Unsupported> {
        let invert = match m.op {
            Operator::EQ | Operator::IN => false,
            Operator::NEQ => true,
            _ => return unsupported(m),
        };
        let Expression::Named(NamedExpression::Set(items)) = &m.right else { return unsupported(m) };
        let mut loads = Vec::new();
        let mut widths = Vec::new();
        let mut key_type = 0u32;
        let mut at = 0u32;
        for part in parts {
            let Expression::Named(NamedExpression::Payload(Payload::PayloadField(p))) = part else {
                return unsupported(part);
            };
            let HeaderField { base, offset, len, nfproto, l4proto, key_type: kind } =
                payload_field(&p.protocol, &p.field)?;
            self.depend(nfproto, l4proto);
            let dreg = if at == 0 { REG_1 } else { REG32_00 + at / 4 };
            loads.push(Expr::Payload { base, offset, len, dreg });
            widths.push(len as usize);
            key_type = (key_type << TYPE_BITS) | kind;
            at += len.next_multiple_of(4);
        }
        let mut elements = Vec::with_capacity(items.len());
        for item in items {
            let SetItem::Element(Expression::Named(NamedExpression::Concat(values))) = item else {
                return unsupported(item);
            };
            if values.len() != widths.len() {
                return unsupported(item);
            }
            let mut key = Vec::new();
            for (value, width) in values.iter().zip(&widths) {
                let Expression::Number(n) = value else { return unsupported(value) };
                let mut bytes = Value::Big(*width).number(u64::from(*n))?;
                bytes.resize(width.next_multiple_of(4), 0);
                key.extend(bytes);
            }
            elements.push((key, None));
        }
        self.program.exprs.extend(loads);
        let anonymous = self.program.sets.len();
        self.program.sets.push(AnonymousSet { key_type, key_len: at, elements, map: false });
        self.program.exprs.push(Expr::Lookup {
            set: "__set%d".into(),
            anonymous: Some(anonymous),
            verdict: false,
            invert,
        });
        Ok(())
    }
}

fn is_meta(e: &Expression, key: MetaKey) -> bool {
    matches!(e, Expression::Named(NamedExpression::Meta(m)) if m.key == key)
}

fn verdict_of(v: &Verdict) -> Result<VerdictValue, Unsupported> {
    Ok(match v {
        Verdict::Accept => (NF_ACCEPT, None),
        Verdict::Drop => (NF_DROP, None),
        Verdict::Return => (NFT_RETURN, None),
        Verdict::Jump(j) => (NFT_JUMP, Some(j.target.to_string())),
        other => return unsupported(other),
    })
}

/// The program of one rule.
pub fn program(statements: &[Statement]) -> Result<Program, Unsupported> {
    let mut b = Builder::default();
    for s in statements {
        b.statement(s)?;
    }
    Ok(b.program)
}

/// Writes a verdict (`NFTA_DATA_VERDICT` and its content) into `m`.
pub fn verdict(m: &mut Message, code: i32, chain: Option<&str>) {
    m.nest(NFTA_DATA_VERDICT);
    m.u32(NFTA_VERDICT_CODE, code as u32);
    if let Some(chain) = chain {
        m.string(NFTA_VERDICT_CHAIN, chain);
    }
    m.end_nest();
}

fn data(m: &mut Message, kind: u16, value: &[u8]) {
    m.nest(kind);
    m.attr(NFTA_DATA_VALUE, value);
    m.end_nest();
}

/// Writes `exprs` (inside `NFTA_RULE_EXPRESSIONS`) into `m`; `set_ids` are the batch ids of
/// the rule's anonymous sets.
pub fn encode(m: &mut Message, exprs: &[Expr], set_ids: &[u32]) {
    for e in exprs {
        m.nest(NFTA_LIST_ELEM);
        let name = match e {
            Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
            Expr::Ct { .. } => "ct",
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Lookup { .. } => "lookup",
            Expr::Range { .. } => "range",
            Expr::Counter => "counter",
            Expr::Immediate { .. } => "immediate",
            Expr::Log { .. } => "log",
            Expr::Masq { .. } => "masq",
        };
        m.string(NFTA_EXPR_NAME, name);
        m.nest(NFTA_EXPR_DATA);
        match e {
            // meta: DREG 1, KEY 2, SREG 3.
            Expr::Meta { key } => {
                m.u32(2, *key);
                m.u32(1, REG_1);
            }
            Expr::MetaSet { key } => {
                m.u32(2, *key);
                m.u32(3, REG_1);
            }
            // ct: DREG 1, KEY 2.
            Expr::Ct { key } => {
                m.u32(2, *key);
                m.u32(1, REG_1);
            }
            // payload: DREG 1, BASE 2, OFFSET 3, LEN 4.
            Expr::Payload { base, offset, len, dreg } => {
                m.u32(1, *dreg);
                m.u32(2, *base);
                m.u32(3, *offset);
                m.u32(4, *len);
            }
            // cmp: SREG 1, OP 2, DATA 3.
            Expr::Cmp { op, data: value } => {
                m.u32(1, REG_1);
                m.u32(2, *op);
                data(m, 3, value);
            }
            // bitwise: SREG 1, DREG 2, LEN 3, MASK 4, XOR 5.
            Expr::Bitwise { mask, xor } => {
                m.u32(1, REG_1);
                m.u32(2, REG_1);
                m.u32(3, mask.len() as u32);
                data(m, 4, mask);
                data(m, 5, xor);
            }
            // lookup: SET 1, SREG 2, DREG 3, SET_ID 4, FLAGS 5.
            Expr::Lookup { set, anonymous, verdict, invert } => {
                m.string(1, set);
                m.u32(2, REG_1);
                if *verdict {
                    m.u32(3, REG_VERDICT);
                }
                if let Some(id) = anonymous.and_then(|i| set_ids.get(i)) {
                    m.u32(4, *id);
                }
                if *invert {
                    m.u32(5, NFT_LOOKUP_F_INV);
                }
            }
            // range: SREG 1, OP 2, FROM 3, TO 4.
            Expr::Range { op, from, to } => {
                m.u32(1, REG_1);
                m.u32(2, *op);
                data(m, 3, from);
                data(m, 4, to);
            }
            // counter: BYTES 1, PACKETS 2.
            Expr::Counter => {
                m.u64(1, 0);
                m.u64(2, 0);
            }
            // immediate: DREG 1, DATA 2.
            Expr::Immediate { code, chain } => {
                m.u32(1, REG_VERDICT);
                m.nest(2);
                verdict(m, *code, chain.as_deref());
                m.end_nest();
            }
            // log: PREFIX 2.
            Expr::Log { prefix } => {
                if let Some(prefix) = prefix {
                    m.string(2, prefix);
                }
            }
            // masq: FLAGS 1.
            Expr::Masq { flags } => m.u32(1, *flags),
        }
        m.end_nest();
        m.end_nest();
    }
}

#[cfg(test)]
#[path = "vm_tests.rs"]
mod tests;
