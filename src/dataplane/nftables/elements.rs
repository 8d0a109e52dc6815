//! Set elements written over nfnetlink directly, in one transaction: the path a pod appearing,
//! leaving or relabelled takes.
//!
//! Why not `nft`: every run of `nft` reads our whole table into its cache before it applies
//! anything, so one element costs as much as a listing of the table (tens of milliseconds with
//! a thousand policies, and far more with many sets), while the kernel takes the same batch
//! in well under a millisecond. [`super::batch`] uses the same encoding for the elements of a
//! whole or partial write.
//!
//! An interval set holds an interval as two elements, as `nft` writes them: its first address,
//! and the address after its last flagged as an interval end; an interval that reaches the top
//! of the address space has no end element but carries the "open interval" flag in its user
//! data, which is how `nft` lists it back. Deletes go before adds, so the set never holds two
//! overlapping intervals.

use super::wire::{self, Batch, NFTA_LIST_ELEM, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST};
use ipnetwork::IpNetwork;
use std::io;

const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_SET_ELEM_FLAGS: u16 = 3;
const NFTA_SET_ELEM_USERDATA: u16 = 6;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_SET_ELEM_INTERVAL_END: u32 = 1;
/// libnftnl's element user data: attribute NFTNL_UDATA_SET_ELEM_FLAGS (1), 4 bytes, value
/// NFTNL_SET_ELEM_F_INTERVAL_OPEN (1).
const INTERVAL_OPEN_USERDATA: [u8; 6] = [1, 4, 1, 0, 0, 0];
/// Elements per message, well inside a netlink message's 64 KiB attribute length limit (an
/// IPv6 element with its end is under 100 bytes, a verdict map's under 120).
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
pub(super) struct Element {
    pub key: Vec<u8>,
    pub end: bool,
    pub open: bool,
    /// A map's value: the encoded NFTA_DATA_VERDICT nest's content (code and chain).
    pub verdict: Option<super::vm::VerdictValue>,
}

impl Element {
    pub fn key(key: Vec<u8>) -> Element {
        Element { key, end: false, open: false, verdict: None }
    }
}

/// The elements of an interval from `start` to `last` (inclusive) of a key `width` octets
/// wide.
pub(super) fn interval_of(start: u128, last: u128, width: usize) -> Vec<Element> {
    let bytes = |v: u128| v.to_be_bytes()[16 - width..].to_vec();
    let top = if width == 16 { u128::MAX } else { (1u128 << (8 * width)) - 1 };
    if last >= top {
        return vec![Element { open: true, ..Element::key(bytes(start)) }];
    }
    vec![Element::key(bytes(start)), Element { end: true, ..Element::key(bytes(last + 1)) }]
}

/// The elements of an interval holding `n`.
pub(super) fn interval(n: IpNetwork) -> Vec<Element> {
    let (start, last) = super::render::network_range(&n);
    interval_of(start, last, if n.is_ipv4() { 4 } else { 16 })
}

/// A set named in a batch: by name, and by the batch's id for a set the same batch creates
/// (an anonymous set's name is the kernel's to choose).
#[derive(Debug, Clone, Copy)]
pub(super) struct SetName<'a> {
    pub name: &'a str,
    pub id: Option<u32>,
}

/// Appends to `batch` the messages adding (`add`) or deleting `elements` of `set` in table
/// `table`, at most [`ELEMENTS_PER_MESSAGE`] a message; with `ack`, each asks for an
/// acknowledgement.
pub(super) fn push(batch: &mut Batch, table: &str, set: SetName, add: bool, elements: &[Element], ack: bool) {
    let (kind, mut flags) =
        if add { (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE) } else { (NFT_MSG_DELSETELEM, NLM_F_REQUEST) };
    if ack {
        flags |= NLM_F_ACK;
    }
    for chunk in elements.chunks(ELEMENTS_PER_MESSAGE) {
        let verb = if add { "add" } else { "delete" };
        let mut m = batch.message(kind, flags, || format!("{verb} {} elements of set {}", chunk.len(), set.name));
        m.string(NFTA_SET_ELEM_LIST_TABLE, table);
        m.string(NFTA_SET_ELEM_LIST_SET, set.name);
        if let Some(id) = set.id {
            m.u32(NFTA_SET_ELEM_LIST_SET_ID, id);
        }
        m.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
        for element in chunk {
            m.nest(NFTA_LIST_ELEM);
            m.nest(NFTA_SET_ELEM_KEY);
            m.attr(NFTA_DATA_VALUE, &element.key);
            m.end_nest();
            if let Some((code, chain)) = &element.verdict {
                m.nest(NFTA_SET_ELEM_DATA);
                super::vm::verdict(&mut m, *code, chain.as_deref());
                m.end_nest();
            }
            if element.end {
                m.u32(NFTA_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
            }
            if element.open {
                m.attr(NFTA_SET_ELEM_USERDATA, &INTERVAL_OPEN_USERDATA);
            }
            m.end_nest();
        }
        m.end_nest();
        batch.push(m);
    }
}

/// The batch writing `changes` to table `table` (family inet): one DELSETELEM per set and
/// chunk of elements that go, then one NEWSETELEM per set and chunk that come. Deletes go
/// first, so a set never holds two overlapping intervals. Every element message asks for
/// an acknowledgement.
pub fn encode(table: &str, changes: &[ElementChange], first_seq: u32) -> (Vec<u8>, wire::Finished) {
    let mut batch = Batch::starting_at(first_seq);
    for add in [false, true] {
        for change in changes {
            let networks = if add { &change.come } else { &change.gone };
            let elements: Vec<Element> = networks.iter().flat_map(|n| interval(*n)).collect();
            push(&mut batch, table, SetName { name: &change.set, id: None }, add, &elements, true);
        }
    }
    batch.finish()
}

/// Writes `changes` to table `table` (family inet) in one transaction over `link`: all of
/// them, or, on any error, none.
pub fn write(link: &wire::Link, table: &str, changes: &[ElementChange]) -> io::Result<()> {
    if changes.iter().all(|c| c.gone.is_empty() && c.come.is_empty()) {
        return Ok(());
    }
    let (bytes, finished) = encode(table, changes, 0);
    link.send(&bytes, &finished)
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
            vec![Element::key(vec![10, 0, 0, 1]), Element { end: true, ..Element::key(vec![10, 0, 0, 2]) }]
        );
        assert_eq!(interval(n("10.8.0.0/24"))[1].key, vec![10, 8, 1, 0]);
        assert_eq!(interval(n("0.0.0.0/0")), vec![Element { open: true, ..Element::key(vec![0; 4]) }]);
        assert_eq!(interval(n("255.255.255.255/32")), vec![Element { open: true, ..Element::key(vec![255; 4]) }]);
        let v6 = interval(n("fd00::/64"));
        assert_eq!(v6[1].key, "fd00:0:0:1::".parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec());
    }

    /// The bytes `nft --debug=mnl add element inet t s { 10.0.0.1 }` sends for a non-empty set
    /// (its sequence numbers replaced by ours).
    #[test]
    fn an_added_element_is_encoded_as_nft_encodes_it() {
        let change = ElementChange { set: "s".into(), gone: vec![], come: vec![n("10.0.0.1/32")] };
        let (batch, finished) = encode("t", &[change], 0);
        assert_eq!(finished.acked(), &[2]);
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
        assert_eq!(u16::from_ne_bytes([messages[0][4], messages[0][5]]), 0x10, "batch begin");
        assert_eq!(&messages[0][18..20], &wire::NFNL_SUBSYS_NFTABLES.to_be_bytes());
    }
}
