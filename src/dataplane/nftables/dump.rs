//! Reading nf_tables over nfnetlink without `nft`: the table's rule counters (one dump of its
//! rules, each reduced to its chain and the counter it holds) and the ruleset's generation.
//! `nft -j list table` read the counters at a second of CPU for `nft` and as much again to
//! parse its JSON with a thousand policies loaded; the kernel's dump of the same rules is read
//! in milliseconds, and the generation in microseconds.

use super::wire::{
    AF_UNSPEC, Message, NFNL_SUBSYS_NFTABLES, NFPROTO_INET, NFT_MSG_NEWRULE, NFTA_EXPR_DATA, NFTA_EXPR_NAME,
    NFTA_LIST_ELEM, NFTA_RULE_CHAIN, NFTA_RULE_EXPRESSIONS, NFTA_RULE_TABLE, NLM_F_REQUEST, NLMSG_ERROR, NLMSG_HDRLEN,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use std::collections::BTreeMap;
use std::io;

/// Packets and bytes.
pub type Count = (u64, u64);

/// Each chain's rules in order, with the packets and bytes of the first counter each holds
/// (`None` for a rule without one).
pub type ChainCounters = BTreeMap<String, Vec<Option<Count>>>;

// linux/netfilter/nf_tables.h and linux/netlink.h.
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
/// A dump message's flag: the table changed while it was dumped, so the dump may miss or
/// repeat rules.
const NLM_F_DUMP_INTR: u16 = 0x10;
/// Dumps tried before giving up on a table that keeps changing.
const DUMP_ATTEMPTS: usize = 3;
/// How long an answer is waited for: the kernel answers at once, but a request that gets no
/// answer must not stall the table's owner.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const NLMSG_DONE: u16 = 3;
const NFGENMSG_LEN: usize = 4;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
/// The attribute type without the nested and byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// A dump's messages are read into this much at a time (the kernel fills at most 32 KiB, or
/// the receive buffer's size when smaller, per read).
const RECEIVE_CHUNK: usize = 128 * 1024;

/// A socket of the calling thread's network namespace with `request` sent on it.
fn send(request: Message) -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let timeout = nix::sys::time::TimeVal::new(
        ANSWER_TIMEOUT.as_secs().try_into().unwrap_or(i64::MAX),
        ANSWER_TIMEOUT.subsec_micros().into(),
    );
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)?;
    socket.send(&request.finish(), 0)?;
    Ok(socket)
}

/// Reads the answers on `socket` into `read` until it says they are complete.
fn receive(socket: &Socket, mut read: impl FnMut(&[u8]) -> io::Result<bool>) -> io::Result<()> {
    let mut buf = vec![0u8; RECEIVE_CHUNK];
    loop {
        let n = socket.recv(&mut &mut buf[..], 0)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "nf_tables stopped answering"));
        }
        if read(&buf[..n])? {
            return Ok(());
        }
    }
}

/// The counters of every rule of table `table` (family inet), in the network namespace of
/// the calling thread; empty when the table does not exist.
pub fn rule_counters(table: &str) -> io::Result<ChainCounters> {
    let kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE;
    let mut attempt = 1;
    loop {
        let mut request = Message::begin(Vec::new(), kind, NLM_F_REQUEST | NLM_F_DUMP, 1, NFPROTO_INET, 0);
        request.string(NFTA_RULE_TABLE, table);
        let socket = send(request)?;
        let mut out = ChainCounters::new();
        match receive(&socket, |buf| read_messages(buf, &mut out)) {
            Ok(()) => return Ok(out),
            Err(e) if e.kind() == io::ErrorKind::Interrupted && attempt < DUMP_ATTEMPTS => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// nf_tables' generation in the calling thread's network namespace: it changes with every
/// transaction committed there, by anyone, to any table. The same generation before and after
/// means nothing was changed in between.
pub fn generation() -> io::Result<u32> {
    let kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN;
    let socket = send(Message::begin(Vec::new(), kind, NLM_F_REQUEST, 1, AF_UNSPEC, 0))?;
    let mut found = None;
    receive(&socket, |buf| {
        found = read_generation(buf)?;
        Ok(found.is_some())
    })?;
    found.ok_or_else(|| io::Error::other("nf_tables did not give its generation"))
}

/// The generation in the answers in `buf`, if one is there.
fn read_generation(buf: &[u8]) -> io::Result<Option<u32>> {
    for message in messages(buf) {
        let (kind, _, body) = message?;
        match kind {
            NLMSG_ERROR => return Err(error_of(body)?.unwrap_or_else(|| io::Error::other("an acknowledgement"))),
            k if k == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN => {
                let id = attributes(body.get(NFGENMSG_LEN..).unwrap_or_default())
                    .find(|(kind, _)| *kind == NFTA_GEN_ID)
                    .and_then(|(_, p)| Some(u32::from_be_bytes(p.try_into().ok()?)));
                return Ok(id);
            }
            _ => {}
        }
    }
    Ok(None)
}

/// The netlink messages in `buf`: (type, flags, body after the header); an error for one that
/// does not fit.
fn messages(buf: &[u8]) -> impl Iterator<Item = io::Result<(u16, u16, &[u8])>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at + NLMSG_HDRLEN > buf.len() {
            return None;
        }
        let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            at = buf.len();
            return Some(Err(io::Error::new(io::ErrorKind::InvalidData, format!("a message of length {len}"))));
        }
        let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        let flags = u16::from_ne_bytes([buf[at + 6], buf[at + 7]]);
        let body = &buf[at + NLMSG_HDRLEN..at + len];
        at += len.next_multiple_of(4);
        Some(Ok((kind, flags, body)))
    })
}

/// The error an NLMSG_ERROR body carries; `None` for an acknowledgement; an error for a body
/// too short to say.
fn error_of(body: &[u8]) -> io::Result<Option<io::Error>> {
    let Some(b) = body.get(..4) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "an NLMSG_ERROR without its error"));
    };
    let error = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    Ok((error != 0).then(|| io::Error::from_raw_os_error(error.saturating_neg())))
}

/// Adds the rules of the dump messages in `buf` to `out`; whether the dump is complete.
fn read_messages(buf: &[u8], out: &mut ChainCounters) -> io::Result<bool> {
    for message in messages(buf) {
        let (kind, flags, body) = message?;
        if flags & NLM_F_DUMP_INTR != 0 {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "the table changed while it was dumped"));
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                return match error_of(body)? {
                    // No such table: nothing to count.
                    None => Ok(true),
                    Some(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(true),
                    Some(e) => Err(e),
                };
            }
            k if k == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE => {
                if let Some((chain, counter)) = body.get(NFGENMSG_LEN..).and_then(rule) {
                    out.entry(chain).or_default().push(counter);
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

/// The attributes in `buf`: (type, payload).
fn attributes(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let header = buf.get(at..at + 4)?;
        let len = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        let kind = u16::from_ne_bytes([header[2], header[3]]) & NLA_TYPE_MASK;
        let payload = buf.get(at + 4..at + len.max(4))?;
        at += len.max(4).next_multiple_of(4);
        Some((kind, payload))
    })
}

fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

/// A rule message's chain and first counter.
fn rule(attrs: &[u8]) -> Option<(String, Option<Count>)> {
    let mut chain = None;
    let mut counter = None;
    for (kind, payload) in attributes(attrs) {
        match kind {
            NFTA_RULE_CHAIN => {
                let name = payload.split(|b| *b == 0).next().unwrap_or_default();
                chain = Some(String::from_utf8_lossy(name).into_owned());
            }
            NFTA_RULE_EXPRESSIONS if counter.is_none() => {
                counter = attributes(payload).filter(|(k, _)| *k == NFTA_LIST_ELEM).find_map(|(_, e)| counter_of(e));
            }
            _ => {}
        }
    }
    Some((chain?, counter))
}

/// The packets and bytes of an expression that is a counter.
fn counter_of(expression: &[u8]) -> Option<Count> {
    let mut is_counter = false;
    let mut data = None;
    for (kind, payload) in attributes(expression) {
        match kind {
            NFTA_EXPR_NAME => is_counter = payload.split(|b| *b == 0).next() == Some(b"counter"),
            NFTA_EXPR_DATA => data = Some(payload),
            _ => {}
        }
    }
    if !is_counter {
        return None;
    }
    let (mut packets, mut bytes) = (0, 0);
    for (kind, payload) in attributes(data?) {
        match kind {
            NFTA_COUNTER_PACKETS => packets = be_u64(payload)?,
            NFTA_COUNTER_BYTES => bytes = be_u64(payload)?,
            _ => {}
        }
    }
    Some((packets, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&u16::try_from(4 + payload.len()).unwrap().to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out
    }

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&u32::try_from(NLMSG_HDRLEN + body.len()).unwrap().to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(body);
        out
    }

    fn rule_message(chain: &str, expressions: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![NFPROTO_INET, 0, 0, 0];
        body.extend(attr(NFTA_RULE_TABLE, b"tortie\0"));
        body.extend(attr(NFTA_RULE_CHAIN, format!("{chain}\0").as_bytes()));
        let list: Vec<u8> = expressions.iter().flat_map(|e| attr(NFTA_LIST_ELEM, e)).collect();
        body.extend(attr(NFTA_RULE_EXPRESSIONS, &list));
        message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWRULE, &body)
    }

    fn expression(name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = attr(NFTA_EXPR_NAME, format!("{name}\0").as_bytes());
        out.extend(attr(NFTA_EXPR_DATA, data));
        out
    }

    #[test]
    fn each_rule_gives_its_chain_and_first_counter_in_order() {
        let counter = |packets: u64, bytes: u64| {
            let mut data = attr(NFTA_COUNTER_BYTES, &bytes.to_be_bytes());
            data.extend(attr(NFTA_COUNTER_PACKETS, &packets.to_be_bytes()));
            expression("counter", &data)
        };
        let mut buf = rule_message("a", &[expression("meta", &attr(1, &[0; 4])), counter(3, 180)]);
        buf.extend(rule_message("a", &[expression("immediate", &[])]));
        buf.extend(rule_message("b", &[counter(1, 60), counter(9, 9)]));
        let mut out = ChainCounters::new();
        assert!(!read_messages(&buf, &mut out).unwrap(), "no NLMSG_DONE yet");
        assert!(read_messages(&message(NLMSG_DONE, &[0; 4]), &mut out).unwrap());
        let expected = ChainCounters::from([
            ("a".to_string(), vec![Some((3, 180)), None]),
            ("b".to_string(), vec![Some((1, 60))]),
        ]);
        assert_eq!(out, expected);
    }

    #[test]
    fn the_generation_is_read_from_its_answer() {
        let mut body = vec![AF_UNSPEC, 0, 0, 0];
        body.extend(attr(NFTA_GEN_ID, &7u32.to_be_bytes()));
        let answer = message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN, &body);
        assert_eq!(read_generation(&answer).unwrap(), Some(7));
        assert_eq!(read_generation(&message(NLMSG_DONE, &[0; 4])).unwrap(), None);
        let refused = message(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(read_generation(&refused).unwrap_err().raw_os_error(), Some(libc::EPERM));
    }

    #[test]
    fn a_refused_dump_is_an_error_and_a_truncated_message_is_not_read() {
        let mut out = ChainCounters::new();
        let error = message(NLMSG_ERROR, &(-libc::EPERM).to_ne_bytes());
        assert_eq!(read_messages(&error, &mut out).unwrap_err().raw_os_error(), Some(libc::EPERM));
        let missing = message(NLMSG_ERROR, &(-libc::ENOENT).to_ne_bytes());
        assert!(read_messages(&missing, &mut out).unwrap(), "no table: nothing to count");
        let mut short = rule_message("a", &[]);
        short.truncate(short.len() - 4);
        assert!(read_messages(&short, &mut out).is_err());
        assert!(read_messages(&message(NLMSG_ERROR, &[0; 2]), &mut out).is_err(), "an error without its number");
        let smallest = message(NLMSG_ERROR, &i32::MIN.to_ne_bytes());
        assert!(read_messages(&smallest, &mut out).is_err(), "no overflow");
        // The table changed during the dump: said, so the dump is tried again.
        let mut interrupted = rule_message("a", &[]);
        interrupted[6..8].copy_from_slice(&NLM_F_DUMP_INTR.to_ne_bytes());
        assert_eq!(read_messages(&interrupted, &mut out).unwrap_err().kind(), io::ErrorKind::Interrupted);
        assert!(out.is_empty());
    }
}
