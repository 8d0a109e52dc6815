//! A batch of the table's objects (the same [`Nftables`] batch `nft -j -f` would take) as
//! one nfnetlink transaction, so writing the table costs the kernel's work and not a run of
//! `nft`: with a thousand policies `nft` spends most of a second parsing, evaluating and
//! reading its cache before the kernel sees a byte.
//!
//! The objects and statement forms tortie writes are encoded here ([`super::vm`] for the
//! rules); a batch holding anything else is [`Unsupported`] and goes to `nft` whole. That
//! both ways leave the same table is checked against the kernel by a differential test
//! (`tests/nftables_table.rs`).

use super::elements::{self, Element, SetName, interval, interval_of};
use super::vm::{self, Unsupported};
use super::wire::{
    Batch, Finished, NFT_MSG_NEWRULE, NFTA_RULE_CHAIN, NFTA_RULE_EXPRESSIONS, NFTA_RULE_TABLE, NLM_F_ACK, NLM_F_APPEND,
    NLM_F_CREATE, NLM_F_REQUEST,
};
use ipnetwork::IpNetwork;
use nftables::expr::{Expression, NamedExpression};
use nftables::schema::{
    Chain, FlushObject, NfCmd, NfListObject, NfObject, Nftables, Set, SetFlag, SetType, SetTypeValue,
};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFTA_SET_DATA_LEN: u16 = 7;
const NFTA_SET_DESC: u16 = 9;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_USERDATA: u16 = 13;
const NFTA_SET_DESC_SIZE: u16 = 1;

const NFT_SET_ANONYMOUS: u32 = 0x1;
const NFT_SET_CONSTANT: u32 = 0x2;
const NFT_SET_INTERVAL: u32 = 0x4;
const NFT_SET_MAP: u32 = 0x8;
/// A verdict map's data type.
const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
/// libnftnl set user data: the key's byte order (NFTNL_UDATA_SET_KEYBYTEORDER, 4 octets,
/// BYTEORDER_BIG_ENDIAN), which `nft` reads to print the elements.
const KEY_BIG_ENDIAN_USERDATA: [u8; 6] = [0, 4, 2, 0, 0, 0];
/// The same for a key in host order (BYTEORDER_HOST_ENDIAN): interface names.
const KEY_HOST_ORDER_USERDATA: [u8; 6] = [0, 4, 1, 0, 0, 0];

/// The encoded batch and what its answers are checked against.
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub finished: Finished,
}

/// `batch` as one nfnetlink transaction; only its last message asks for an acknowledgement
/// (refusals are answered anyway), so a large table does not queue an answer per rule.
pub fn encode(batch: &Nftables) -> Result<Encoded, Unsupported> {
    let mut out = Batch::default();
    let mut next_set_id = 0u32;
    let objects = &batch.objects;
    for (i, object) in objects.iter().enumerate() {
        let ack = if i + 1 == objects.len() { NLM_F_ACK } else { 0 };
        let NfObject::CmdObject(cmd) = object else { return Err(Unsupported(format!("{object:?}"))) };
        match cmd {
            NfCmd::Add(o) => add(&mut out, o, &mut next_set_id, ack)?,
            NfCmd::Delete(o) => delete(&mut out, o, ack)?,
            NfCmd::Flush(FlushObject::Chain(c)) => {
                family(c.family)?;
                let mut m = out.message(NFT_MSG_DELRULE, NLM_F_REQUEST | ack, || format!("flush chain {}", c.name));
                m.string(NFTA_RULE_TABLE, &c.table);
                m.string(NFTA_RULE_CHAIN, &c.name);
                out.push(m);
            }
            other => return Err(Unsupported(format!("{other:?}"))),
        }
    }
    let (bytes, finished) = out.finish();
    Ok(Encoded { bytes, finished })
}

fn family(f: NfFamily) -> Result<(), Unsupported> {
    if f == NfFamily::INet { Ok(()) } else { Err(Unsupported(format!("family {f:?}"))) }
}

fn add(out: &mut Batch, o: &NfListObject, next_set_id: &mut u32, ack: u16) -> Result<(), Unsupported> {
    match o {
        NfListObject::Table(t) => {
            family(t.family)?;
            let mut m =
                out.message(NFT_MSG_NEWTABLE, NLM_F_REQUEST | NLM_F_CREATE | ack, || format!("add table {}", t.name));
            m.string(NFTA_TABLE_NAME, &t.name);
            m.u32(NFTA_TABLE_FLAGS, 0);
            out.push(m);
        }
        NfListObject::Chain(c) => chain(out, c, ack)?,
        NfListObject::Set(s) => {
            let (key_type, key_len) = set_key(s)?;
            *next_set_id += 1;
            let mut m =
                out.message(NFT_MSG_NEWSET, NLM_F_REQUEST | NLM_F_CREATE | ack, || format!("add set {}", s.name));
            m.string(NFTA_SET_TABLE, &s.table);
            m.string(NFTA_SET_NAME, &s.name);
            m.u32(NFTA_SET_FLAGS, NFT_SET_INTERVAL);
            m.u32(NFTA_SET_KEY_TYPE, key_type);
            m.u32(NFTA_SET_KEY_LEN, key_len);
            m.u32(NFTA_SET_ID, *next_set_id);
            m.attr(NFTA_SET_USERDATA, &KEY_BIG_ENDIAN_USERDATA);
            out.push(m);
        }
        NfListObject::Element(e) => {
            family(e.family)?;
            let elements = element_list(&e.elem)?;
            elements::push(out, &e.table, SetName { name: &e.name, id: None }, true, &elements, ack != 0);
        }
        NfListObject::Rule(r) => {
            family(r.family)?;
            if r.handle.is_some() || r.index.is_some() || r.comment.is_some() {
                return Err(Unsupported(format!("{r:?}")));
            }
            let program = vm::program(&r.expr)?;
            let mut ids = Vec::with_capacity(program.sets.len());
            for set in &program.sets {
                *next_set_id += 1;
                ids.push(*next_set_id);
                anonymous_set(out, &r.table, set, *next_set_id);
            }
            let mut m = out.message(NFT_MSG_NEWRULE, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND | ack, || {
                format!("add rule to chain {}", r.chain)
            });
            m.string(NFTA_RULE_TABLE, &r.table);
            m.string(NFTA_RULE_CHAIN, &r.chain);
            m.nest(NFTA_RULE_EXPRESSIONS);
            vm::encode(&mut m, &program.exprs, &ids);
            m.end_nest();
            out.push(m);
        }
        other => return Err(Unsupported(format!("add {other:?}"))),
    }
    Ok(())
}

fn delete(out: &mut Batch, o: &NfListObject, ack: u16) -> Result<(), Unsupported> {
    match o {
        NfListObject::Table(t) => {
            family(t.family)?;
            let mut m = out.message(NFT_MSG_DELTABLE, NLM_F_REQUEST | ack, || format!("delete table {}", t.name));
            m.string(NFTA_TABLE_NAME, &t.name);
            out.push(m);
        }
        NfListObject::Chain(c) => {
            family(c.family)?;
            let mut m = out.message(NFT_MSG_DELCHAIN, NLM_F_REQUEST | ack, || format!("delete chain {}", c.name));
            m.string(NFTA_CHAIN_TABLE, &c.table);
            m.string(NFTA_CHAIN_NAME, &c.name);
            out.push(m);
        }
        NfListObject::Set(s) => {
            family(s.family)?;
            let mut m = out.message(NFT_MSG_DELSET, NLM_F_REQUEST | ack, || format!("delete set {}", s.name));
            m.string(NFTA_SET_TABLE, &s.table);
            m.string(NFTA_SET_NAME, &s.name);
            out.push(m);
        }
        NfListObject::Element(e) => {
            family(e.family)?;
            let elements = element_list(&e.elem)?;
            elements::push(out, &e.table, SetName { name: &e.name, id: None }, false, &elements, ack != 0);
        }
        other => return Err(Unsupported(format!("delete {other:?}"))),
    }
    Ok(())
}

fn chain(out: &mut Batch, c: &Chain, ack: u16) -> Result<(), Unsupported> {
    family(c.family)?;
    let mut m = out.message(NFT_MSG_NEWCHAIN, NLM_F_REQUEST | NLM_F_CREATE | ack, || format!("add chain {}", c.name));
    m.string(NFTA_CHAIN_TABLE, &c.table);
    m.string(NFTA_CHAIN_NAME, &c.name);
    match (c._type, c.hook, c.prio, c.policy) {
        (None, None, None, None) => {}
        (Some(kind), Some(hook), Some(prio), policy) if c.dev.is_none() => {
            let kind = match kind {
                NfChainType::Filter => "filter",
                NfChainType::NAT => "nat",
                NfChainType::Route => "route",
            };
            // Netfilter's hooks of the IPv4/IPv6/inet families.
            let hook = match hook {
                NfHook::Prerouting => 0,
                NfHook::Input => 1,
                NfHook::Forward => 2,
                NfHook::Output => 3,
                NfHook::Postrouting => 4,
                other => return Err(Unsupported(format!("hook {other:?}"))),
            };
            let policy = match policy {
                None | Some(NfChainPolicy::Accept) => vm::NF_ACCEPT,
                Some(NfChainPolicy::Drop) => vm::NF_DROP,
            };
            m.string(NFTA_CHAIN_TYPE, kind);
            m.u32(NFTA_CHAIN_POLICY, policy as u32);
            m.nest(NFTA_CHAIN_HOOK);
            m.u32(NFTA_HOOK_HOOKNUM, hook);
            m.u32(NFTA_HOOK_PRIORITY, prio as u32);
            m.end_nest();
        }
        _ => return Err(Unsupported(format!("{c:?}"))),
    }
    out.push(m);
    Ok(())
}

/// The key type (nft's data type) and length of one of the table's named sets: interval sets
/// of addresses or ports, nothing else.
fn set_key(s: &Set) -> Result<(u32, u32), Unsupported> {
    family(s.family)?;
    let plain = s.policy.is_none()
        && s.elem.is_none()
        && s.timeout.is_none()
        && s.gc_interval.is_none()
        && s.size.is_none()
        && s.comment.is_none()
        && s.flags.as_ref().is_some_and(|f| f.len() == 1 && f.contains(&SetFlag::Interval));
    match (&s.set_type, plain) {
        (SetTypeValue::Single(SetType::Ipv4Addr), true) => Ok((7, 4)),
        (SetTypeValue::Single(SetType::Ipv6Addr), true) => Ok((8, 16)),
        (SetTypeValue::Single(SetType::InetService), true) => Ok((13, 2)),
        _ => Err(Unsupported(format!("{s:?}"))),
    }
}

fn anonymous_set(out: &mut Batch, table: &str, set: &vm::AnonymousSet, id: u32) {
    let name = if set.map { "__map%d" } else { "__set%d" };
    let mut flags = NFT_SET_ANONYMOUS | NFT_SET_CONSTANT;
    if set.map {
        flags |= NFT_SET_MAP;
    }
    let mut m = out.message(NFT_MSG_NEWSET, NLM_F_REQUEST | NLM_F_CREATE, || format!("add anonymous set {id}"));
    m.string(NFTA_SET_TABLE, table);
    m.string(NFTA_SET_NAME, name);
    m.u32(NFTA_SET_FLAGS, flags);
    m.u32(NFTA_SET_KEY_TYPE, set.key_type);
    m.u32(NFTA_SET_KEY_LEN, set.key_len);
    if set.map {
        m.u32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT);
        m.u32(NFTA_SET_DATA_LEN, 0);
    }
    m.u32(NFTA_SET_ID, id);
    if set.key_type == vm::TYPE_IFNAME {
        m.attr(NFTA_SET_USERDATA, &KEY_HOST_ORDER_USERDATA);
    }
    m.nest(NFTA_SET_DESC);
    m.u32(NFTA_SET_DESC_SIZE, set.elements.len() as u32);
    m.end_nest();
    out.push(m);
    let elements: Vec<Element> = set
        .elements
        .iter()
        .map(|(key, verdict)| Element { verdict: verdict.clone(), ..Element::key(key.clone()) })
        .collect();
    elements::push(out, table, SetName { name, id: Some(id) }, true, &elements, false);
}

/// The elements of an `add element` / `delete element`: addresses, prefixes, ports and port
/// ranges, each as the interval the kernel keeps.
fn element_list(elem: &[Expression]) -> Result<Vec<Element>, Unsupported> {
    let mut out = Vec::with_capacity(elem.len() * 2);
    for e in elem {
        match e {
            Expression::String(s) => {
                let addr: std::net::IpAddr = s.parse().map_err(|_| Unsupported(format!("element {s}")))?;
                out.extend(interval(IpNetwork::from(addr)));
            }
            Expression::Named(NamedExpression::Prefix(p)) => {
                let Expression::String(addr) = p.addr.as_ref() else { return Err(Unsupported(format!("{p:?}"))) };
                let addr: std::net::IpAddr = addr.parse().map_err(|_| Unsupported(format!("element {addr}")))?;
                let len = u8::try_from(p.len).map_err(|_| Unsupported(format!("{p:?}")))?;
                let n = IpNetwork::new(addr, len).map_err(|_| Unsupported(format!("{p:?}")))?;
                out.extend(interval(n));
            }
            Expression::Number(port) if *port <= u32::from(u16::MAX) => {
                out.extend(interval_of(u128::from(*port), u128::from(*port), 2));
            }
            Expression::Range(r) => match &r.range {
                [Expression::Number(lo), Expression::Number(hi)] if lo <= hi && *hi <= u32::from(u16::MAX) => {
                    out.extend(interval_of(u128::from(*lo), u128::from(*hi), 2));
                }
                _ => return Err(Unsupported(format!("{r:?}"))),
            },
            other => return Err(Unsupported(format!("element {other:?}"))),
        }
    }
    Ok(out)
}
