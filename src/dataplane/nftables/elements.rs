//! Set elements written over nfnetlink directly, in one transaction: the path a pod appearing,
//! leaving or relabelled takes.
//!
//! Why not `nft`: every run of `nft` reads our whole table into its cache before it applies
//! anything, so one element costs as much as a listing of the table (tens of milliseconds with
//! a thousand policies, and far more with many sets), while the kernel takes the same batch
//! in well under a millisecond. Only set elements go this way; everything else (rules,
//! chains, the sets themselves) is written by `nft`, which does the expression encoding.
//!
//! An interval set holds an interval as two elements, as `nft` writes them: its first address,
//! and the address after its last flagged as an interval end; an interval that reaches the top
//! of the address space has no end element but carries the "open interval" flag in its user
//! data, which is how `nft` lists it back. Deletes go before adds, so the set never holds two
//! overlapping intervals.

use ipnetwork::IpNetwork;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use std::io;

/// nfnetlink's subsystem of nf_tables and its messages (linux/netfilter/nfnetlink.h,
/// nf_tables.h).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
/// libnftnl's element user data: attribute NFTNL_UDATA_SET_ELEM_FLAGS (1), 4 bytes, value
/// NFTNL_SET_ELEM_F_INTERVAL_OPEN (1).
const INTERVAL_OPEN_USERDATA: [u8; 6] = [1, 4, 1, 0, 0, 0];
const NFPROTO_INET: u8 = 1;
const AF_UNSPEC: u8 = 0;
const NLA_F_NESTED: u16 = 0x8000;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;
/// Elements per message, well inside a netlink message's 64 KiB attribute length limit (an
/// IPv6 element with its end is under 100 bytes).
const ELEMENTS_PER_MESSAGE: usize = 256;

/// One set's change: networks that go and networks that come (each collapsed, disjoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementChange {
    pub set: String,
    pub gone: Vec<IpNetwork>,
    pub come: Vec<IpNetwork>,
}

/// One element as the kernel keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Element {
    key: Vec<u8>,
    end: bool,
    open: bool,
}

/// The elements of an interval holding `n`.
fn interval(n: IpNetwork) -> Vec<Element> {
    let (start, last) = super::render::network_range(&n);
    let width = if n.is_ipv4() { 4 } else { 16 };
    let bytes = |v: u128| v.to_be_bytes()[16 - width..].to_vec();
    let top = if n.is_ipv4() { u128::from(u32::MAX) } else { u128::MAX };
    if last == top {
        return vec![Element { key: bytes(start), end: false, open: true }];
    }
    vec![
        Element { key: bytes(start), end: false, open: false },
        Element { key: bytes(last + 1), end: true, open: false },
    ]
}

/// A netlink message being built: header, nfgenmsg, attributes.
struct Message {
    buf: Vec<u8>,
    start: usize,
    nests: Vec<usize>,
}

impl Message {
    fn begin(buf: Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Message {
        let mut buf = buf;
        let start = buf.len();
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in finish
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel's
        buf.extend_from_slice(&[family, 0]);
        buf.extend_from_slice(&res_id.to_be_bytes());
        Message { buf, start, nests: Vec::new() }
    }

    fn attr(&mut self, kind: u16, value: &[u8]) {
        let len = u16::try_from(4 + value.len()).expect("attributes here are short");
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
    }

    fn string(&mut self, kind: u16, value: &str) {
        let mut bytes = value.as_bytes().to_vec();
        bytes.push(0);
        self.attr(kind, &bytes);
    }

    fn nest(&mut self, kind: u16) {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    }

    fn end_nest(&mut self) {
        let at = self.nests.pop().expect("a nest is open");
        // A nest longer than an attribute length can say is refused by the kernel; the
        // element count per message keeps it far below.
        let len = u16::try_from(self.buf.len() - at).unwrap_or(u16::MAX);
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.pad();
        let len = u32::try_from(self.buf.len() - self.start).expect("a message is short");
        self.buf[self.start..self.start + 4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// The batch writing `changes` to table `table` (family inet): begin, one DELSETELEM per set
/// and chunk of elements that go, then one NEWSETELEM per set and chunk that come, end. Every
/// element message asks for an ACK; returns the bytes and the sequence numbers acknowledged.
pub fn encode(table: &str, changes: &[ElementChange], first_seq: u32) -> (Vec<u8>, Vec<u32>) {
    let mut seq = first_seq;
    let mut next = || {
        seq = seq.wrapping_add(1);
        seq
    };
    let mut buf =
        Message::begin(Vec::new(), NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, next(), AF_UNSPEC, NFNL_SUBSYS_NFTABLES)
            .finish();
    let mut acked = Vec::new();
    for (kind, flags, pick) in [
        (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK, (|c| &c.gone) as fn(&ElementChange) -> &Vec<IpNetwork>),
        (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE, |c| &c.come),
    ] {
        for change in changes {
            let elements: Vec<Element> = pick(change).iter().flat_map(|n| interval(*n)).collect();
            for chunk in elements.chunks(ELEMENTS_PER_MESSAGE) {
                let seq = next();
                acked.push(seq);
                let mut m = Message::begin(buf, (NFNL_SUBSYS_NFTABLES << 8) | kind, flags, seq, NFPROTO_INET, 0);
                m.string(NFTA_SET_ELEM_LIST_TABLE, table);
                m.string(NFTA_SET_ELEM_LIST_SET, &change.set);
                m.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
                for element in chunk {
                    m.nest(NFTA_LIST_ELEM);
                    m.nest(NFTA_SET_ELEM_KEY);
                    m.attr(NFTA_DATA_VALUE, &element.key);
                    m.end_nest();
                    if element.end {
                        m.attr(NFTA_SET_ELEM_FLAGS, &NFT_SET_ELEM_INTERVAL_END.to_be_bytes());
                    }
                    if element.open {
                        m.attr(NFTA_SET_ELEM_USERDATA, &INTERVAL_OPEN_USERDATA);
                    }
                    m.end_nest();
                }
                m.end_nest();
                buf = m.finish();
            }
        }
    }
    let buf = Message::begin(buf, NFNL_MSG_BATCH_END, NLM_F_REQUEST, next(), AF_UNSPEC, NFNL_SUBSYS_NFTABLES).finish();
    (buf, acked)
}

/// The errors among the kernel's answers in `buf`: (sequence number, errno) of each
/// NLMSG_ERROR, 0 for an ACK.
fn answers(buf: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDRLEN <= buf.len() {
        let word = |i: usize| u32::from_ne_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
        let len = word(at) as usize;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        if kind == NLMSG_ERROR && len >= NLMSG_HDRLEN + 4 {
            let error = i32::from_ne_bytes(buf[at + 16..at + 20].try_into().expect("4 bytes"));
            // The sequence number of the request it answers, from the copy of its header.
            let seq = if len >= NLMSG_HDRLEN + 4 + NLMSG_HDRLEN { word(at + 20 + 8) } else { word(at + 8) };
            out.push((seq, error));
        }
        at += len.next_multiple_of(4);
    }
    out
}

/// Writes `changes` to table `table` (family inet) in one transaction in the current network
/// namespace: all of them, or, on any error, none.
pub fn write(table: &str, changes: &[ElementChange]) -> io::Result<()> {
    if changes.iter().all(|c| c.gone.is_empty() && c.come.is_empty()) {
        return Ok(());
    }
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let (batch, mut waiting) = encode(table, changes, 0);
    let sent = waiting.len();
    // nfnetlink runs the batch inside sendmsg(): every answer is queued when it returns.
    socket.send(&batch, 0)?;
    socket.set_non_blocking(true)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut first_error = None;
    while !waiting.is_empty() {
        let n = match socket.recv(&mut &mut buf[..], 0) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        };
        for (seq, error) in answers(&buf[..n]) {
            waiting.retain(|s| *s != seq);
            if error != 0 && first_error.is_none() {
                first_error = Some(io::Error::from_raw_os_error(-error));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None if waiting.is_empty() => Ok(()),
        None => Err(io::Error::other(format!(
            "nf_tables answered {} of the batch's {sent} element messages",
            sent - waiting.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNetwork {
        s.parse().unwrap()
    }

    #[test]
    fn an_interval_is_its_first_address_and_the_end_after_its_last() {
        assert_eq!(
            interval(n("10.0.0.1/32")),
            vec![
                Element { key: vec![10, 0, 0, 1], end: false, open: false },
                Element { key: vec![10, 0, 0, 2], end: true, open: false }
            ]
        );
        assert_eq!(interval(n("10.8.0.0/24"))[1].key, vec![10, 8, 1, 0]);
        assert_eq!(interval(n("0.0.0.0/0")), vec![Element { key: vec![0; 4], end: false, open: true }]);
        assert_eq!(interval(n("255.255.255.255/32")), vec![Element { key: vec![255; 4], end: false, open: true }]);
        let v6 = interval(n("fd00::/64"));
        assert_eq!(v6[1].key, "fd00:0:0:1::".parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec());
    }

    /// The bytes `nft --debug=mnl add element inet t s { 10.0.0.1 }` sends for a non-empty set
    /// (its sequence numbers replaced by ours).
    #[test]
    fn an_added_element_is_encoded_as_nft_encodes_it() {
        let change = ElementChange { set: "s".into(), gone: vec![], come: vec![n("10.0.0.1/32")] };
        let (batch, acked) = encode("t", &[change], 0);
        assert_eq!(acked, vec![2]);
        let messages: Vec<&[u8]> = {
            let mut out = Vec::new();
            let mut at = 0;
            while at < batch.len() {
                let len = u32::from_ne_bytes(batch[at..at + 4].try_into().unwrap()) as usize;
                out.push(&batch[at..at + len]);
                at += len;
            }
            out
        };
        assert_eq!(messages.len(), 3);
        let elem = messages[1];
        assert_eq!(u16::from_ne_bytes([elem[4], elem[5]]), (10 << 8) | 12);
        assert_eq!(u16::from_ne_bytes([elem[6], elem[7]]), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE);
        // After the 16-byte header: nfgenmsg inet, version 0, res_id 0; table "t"; set "s";
        // the element list: start 10.0.0.1, end 10.0.0.2 flagged.
        #[rustfmt::skip]
        let body: &[u8] = &[
            1, 0, 0, 0,
            6, 0, 1, 0, b't', 0, 0, 0,
            6, 0, 2, 0, b's', 0, 0, 0,
            44, 0, 3, 0x80,
              16, 0, 1, 0x80, 12, 0, 1, 0x80, 8, 0, 1, 0, 10, 0, 0, 1,
              24, 0, 1, 0x80, 12, 0, 1, 0x80, 8, 0, 1, 0, 10, 0, 0, 2, 8, 0, 3, 0, 0, 0, 0, 1,
        ];
        assert_eq!(&elem[16..], body);
        assert_eq!(u16::from_ne_bytes([messages[0][4], messages[0][5]]), NFNL_MSG_BATCH_BEGIN);
        assert_eq!(&messages[0][18..20], &NFNL_SUBSYS_NFTABLES.to_be_bytes());
    }

    #[test]
    fn answers_are_matched_by_the_requests_sequence_number() {
        let mut buf = Vec::new();
        for (seq, error) in [(2u32, 0i32), (3, -2)] {
            buf.extend_from_slice(&36u32.to_ne_bytes());
            buf.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            buf.extend_from_slice(&[0; 2]);
            buf.extend_from_slice(&seq.to_ne_bytes());
            buf.extend_from_slice(&[0; 4]);
            buf.extend_from_slice(&error.to_ne_bytes());
            buf.extend_from_slice(&[0; 8]);
            buf.extend_from_slice(&seq.to_ne_bytes());
            buf.extend_from_slice(&[0; 4]);
        }
        assert_eq!(answers(&buf), vec![(2, 0), (3, -2)]);
    }
}
