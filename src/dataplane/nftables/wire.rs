//! nfnetlink batches: messages built attribute by attribute, sent as one transaction, and the
//! kernel's answers matched to the messages they refuse.
//!
//! A batch is begin, the messages, end; nfnetlink runs it inside `sendmsg()`, all of it or, on
//! any error, none, and queues an answer for each refused message (and an acknowledgement for
//! each message that asked for one) before the call returns.

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

/// nfnetlink's subsystem of nf_tables (linux/netfilter/nfnetlink.h).
pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
pub const NFPROTO_INET: u8 = 1;
// Rule and expression attributes shared by the writes and the reads
// (linux/netfilter/nf_tables.h).
pub const NFT_MSG_NEWRULE: u16 = 6;
pub const NFTA_RULE_TABLE: u16 = 1;
pub const NFTA_RULE_CHAIN: u16 = 2;
pub const NFTA_RULE_EXPRESSIONS: u16 = 4;
pub const NFTA_LIST_ELEM: u16 = 1;
pub const NFTA_EXPR_NAME: u16 = 1;
pub const NFTA_EXPR_DATA: u16 = 2;
pub const AF_UNSPEC: u8 = 0;
const NLA_F_NESTED: u16 = 0x8000;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_HDRLEN: usize = 16;
/// The answers of a batch are read into this much at a time.
const RECEIVE_CHUNK: usize = 64 * 1024;

/// A netlink message being built: header, nfgenmsg, attributes.
pub struct Message {
    buf: Vec<u8>,
    start: usize,
    nests: Vec<usize>,
}

impl Message {
    pub fn begin(buf: Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Message {
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

    pub fn attr(&mut self, kind: u16, value: &[u8]) {
        // Longer values are never built here (names, keys, 16-octet registers); the kernel
        // refuses a wrong length rather than misreading it.
        let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.pad();
    }

    pub fn string(&mut self, kind: u16, value: &str) {
        let mut bytes = Vec::with_capacity(value.len() + 1);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
        self.attr(kind, &bytes);
    }

    /// A 32-bit number in network order, as nf_tables takes its numbers.
    pub fn u32(&mut self, kind: u16, value: u32) {
        self.attr(kind, &value.to_be_bytes());
    }

    pub fn u64(&mut self, kind: u16, value: u64) {
        self.attr(kind, &value.to_be_bytes());
    }

    pub fn nest(&mut self, kind: u16) {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    }

    pub fn end_nest(&mut self) {
        let at = self.nests.pop().expect("a nest is open");
        // A nest longer than an attribute length can say is refused by the kernel; callers
        // keep element lists far below it.
        let len = u16::try_from(self.buf.len() - at).unwrap_or(u16::MAX);
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.pad();
        let len = u32::try_from(self.buf.len() - self.start).unwrap_or(u32::MAX);
        self.buf[self.start..self.start + 4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// A batch being built: each message gets the next sequence number and a description, so a
/// refusal names what was refused.
pub struct Batch {
    buf: Vec<u8>,
    seq: u32,
    first: u32,
    described: Vec<String>,
    /// The sequence numbers that asked for an acknowledgement.
    pub acked: Vec<u32>,
}

impl Default for Batch {
    fn default() -> Batch {
        Batch::starting_at(0)
    }
}

impl Batch {
    /// A batch whose begin message has sequence number `first + 1`.
    pub fn starting_at(first: u32) -> Batch {
        let seq = first.wrapping_add(1);
        let buf = Message::begin(Vec::new(), NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, AF_UNSPEC, NFNL_SUBSYS_NFTABLES)
            .finish();
        Batch { buf, seq, first: seq, described: Vec::new(), acked: Vec::new() }
    }

    /// Starts the next message, of nf_tables message type `kind`, family inet.
    pub fn message(&mut self, kind: u16, flags: u16, what: impl FnOnce() -> String) -> Message {
        self.seq = self.seq.wrapping_add(1);
        self.described.push(what());
        if flags & NLM_F_ACK != 0 {
            self.acked.push(self.seq);
        }
        Message::begin(
            std::mem::take(&mut self.buf),
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            flags,
            self.seq,
            NFPROTO_INET,
            0,
        )
    }

    /// Takes a message started by [`Self::message`] back.
    pub fn push(&mut self, message: Message) {
        self.buf = message.finish();
    }

    /// The messages between begin and end.
    pub fn len(&self) -> usize {
        self.described.len()
    }

    pub fn is_empty(&self) -> bool {
        self.described.is_empty()
    }

    /// What message `seq` does.
    fn describe(&self, seq: u32) -> &str {
        let index = seq.wrapping_sub(self.first).wrapping_sub(1) as usize;
        self.described.get(index).map_or("the batch", String::as_str)
    }

    /// The whole batch, end included.
    pub fn finish(mut self) -> (Vec<u8>, Finished) {
        let seq = self.seq.wrapping_add(1);
        let buf = Message::begin(
            std::mem::take(&mut self.buf),
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            seq,
            AF_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        )
        .finish();
        (buf, Finished { batch: self })
    }
}

/// A batch sent or about to be: what its answers are checked against.
pub struct Finished {
    batch: Batch,
}

impl Finished {
    /// The sequence numbers that asked for an acknowledgement.
    pub fn acked(&self) -> &[u32] {
        &self.batch.acked
    }
}

/// The errors among the kernel's answers in `buf`: (sequence number, errno) of each
/// NLMSG_ERROR, 0 for an acknowledgement.
pub fn answers(buf: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDRLEN <= buf.len() {
        let word = |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let len = word(at) as usize;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
        if kind == NLMSG_ERROR && len >= NLMSG_HDRLEN + 4 {
            let error = word(at + 16) as i32;
            // The sequence number of the request it answers, from the copy of its header.
            let seq = if len >= NLMSG_HDRLEN + 4 + NLMSG_HDRLEN { word(at + 20 + 8) } else { word(at + 8) };
            out.push((seq, error));
        }
        at += len.next_multiple_of(4);
    }
    out
}

/// An nfnetlink socket kept open from one batch to the next, in the network namespace it was
/// opened in (the first send's). Closing a netlink socket can wait for an RCU grace period:
/// 6–13 ms every other close here, ten times the transaction of a pod's set elements.
#[derive(Clone, Default)]
pub struct Link(Arc<Mutex<Option<Socket>>>);

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Link")
    }
}

/// A kept socket is not part of what a command is.
impl PartialEq for Link {
    fn eq(&self, _: &Link) -> bool {
        true
    }
}

impl Eq for Link {}

impl Link {
    /// Sends `bytes` (a batch finished as `finished`) and waits for its answers: `Ok` when
    /// nothing was refused and every acknowledgement asked for came, else the first refusal
    /// with the message it refused. The socket is kept for the next batch only after a
    /// complete exchange, so no answer of this batch can be read as the next one's.
    pub fn send(&self, bytes: &[u8], finished: &Finished) -> io::Result<()> {
        let held = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        let mut socket = match held {
            Some(socket) => socket,
            None => {
                let mut socket = Socket::new(NETLINK_NETFILTER)?;
                socket.bind_auto()?;
                socket.connect(&SocketAddr::new(0, 0))?;
                socket
            }
        };
        let result = exchange(&mut socket, bytes, finished);
        if result.is_ok() {
            *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(socket);
        }
        result
    }
}

/// One batch sent on `socket` and every answer to it read.
fn exchange(socket: &mut Socket, bytes: &[u8], finished: &Finished) -> io::Result<()> {
    let batch = &finished.batch;
    // A whole table is megabytes in one message; the default send buffer is 208 KiB. As
    // root the buffer can be forced past wmem_max, as nft does.
    let size = bytes.len().saturating_mul(2).clamp(256 * 1024, i32::MAX as usize);
    if nix::sys::socket::setsockopt(&*socket, nix::sys::socket::sockopt::SndBufForce, &size).is_err() {
        let _ = nix::sys::socket::setsockopt(&*socket, nix::sys::socket::sockopt::SndBuf, &size);
    }
    // Every answer is queued when sendmsg() returns: room for an error per message at worst.
    let _ = socket.set_rx_buf_sz((batch.len() * 64).clamp(256 * 1024, 64 * 1024 * 1024));
    socket.set_non_blocking(false)?;
    socket.send(bytes, 0)?;
    socket.set_non_blocking(true)?;
    let mut waiting = batch.acked.clone();
    let mut buf = vec![0u8; RECEIVE_CHUNK];
    let mut first_error = None;
    loop {
        let n = match socket.recv(&mut &mut buf[..], 0) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        };
        for (seq, error) in answers(&buf[..n]) {
            waiting.retain(|s| *s != seq);
            if error != 0 && first_error.is_none() {
                let e = io::Error::from_raw_os_error(-error);
                first_error = Some(io::Error::new(e.kind(), format!("{}: {e}", batch.describe(seq))));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None if waiting.is_empty() => Ok(()),
        None => Err(io::Error::other(format!(
            "nf_tables answered {} of the batch's {} acknowledged messages",
            batch.acked.len() - waiting.len(),
            batch.acked.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_refusal_is_described_by_the_message_it_refuses() {
        let mut batch = Batch::starting_at(0);
        for name in ["a", "b"] {
            let m = batch.message(0, NLM_F_REQUEST, || format!("add table {name}"));
            batch.push(m);
        }
        // Begin is 1, the messages 2 and 3.
        assert_eq!(batch.describe(3), "add table b");
        assert_eq!(batch.describe(9), "the batch");
    }
}
