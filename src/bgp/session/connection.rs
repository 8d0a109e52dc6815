//! One TCP connection of a session, split into a reader task and a writer
//! task so that the peer task never awaits the socket: a peer that stops
//! reading cannot stop the session's timers. The writer sends what the peer
//! task queues and watches that sending makes progress (the RFC 9687 send
//! hold timer); the peer task keeps the queue short by taking no UPDATEs
//! from the RIB while it is full.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::status::MessageCounts;
use crate::bgp::packet::MessageType;
use crate::bgp::packet::header::MAX_MESSAGE_LEN;

/// Octets queued for the writer above which the peer task takes no more
/// UPDATEs from the RIB (their channel fills and the RIB keeps the rest, as
/// a place in its log of changes: nothing per peer). Enough to keep the
/// socket fed while the RIB builds the next batch; more would only be a
/// second send buffer beside the kernel's, for every client of a reflector.
pub const SEND_QUEUE_OCTETS: usize = 2 * MAX_MESSAGE_LEN;
/// How many chunks the reader may be ahead of the peer task; then it stops
/// reading and TCP slows the peer down.
const RECEIVED_CAPACITY: usize = 16;
/// The most one read takes. Reads go into a buffer of this size per worker
/// thread and what they got is copied out at its length: a reflector's client
/// sends little (a KEEPALIVE is 19 octets), and a chunk reserved per read
/// would hold its whole reservation until the peer task has taken it.
const READ_CHUNK: usize = 16 * MAX_MESSAGE_LEN;
/// Queued messages the writer joins into one write, up to this many octets:
/// many small UPDATEs go out in few TCP segments and system calls.
const WRITE_COALESCE: usize = 8 * MAX_MESSAGE_LEN;
/// The longest a closing connection spends finishing the message being
/// written and sending the last NOTIFICATION (less if the send hold time is shorter).
pub const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// What the connection's tasks report to the peer task.
#[derive(Debug)]
pub enum ConnectionEvent {
    /// Octets from the peer, in order.
    Received(Bytes),
    /// Queued messages went out whole: how many of each type, and their octets.
    Sent { messages: MessageCounts, len: usize },
    /// The peer closed the connection, or reading or writing failed.
    Failed,
    /// Queued output made no progress for the send hold time (RFC 9687).
    SendHoldTimerExpired,
}

/// The peer task's side of one connection. Dropping it closes the connection
/// without sending anything more (a FIN, no NOTIFICATION).
pub struct Connection {
    pub local_addr: Option<SocketAddr>,
    events: flume::Receiver<ConnectionEvent>,
    outgoing: flume::Sender<(MessageCounts, Bytes)>,
    close: Option<oneshot::Sender<Option<Bytes>>>,
    /// The send hold time in milliseconds, read by the writer at each write.
    send_hold: Arc<AtomicU64>,
    /// Octets queued and not yet reported sent.
    queued: usize,
    reader: JoinHandle<()>,
}

impl Connection {
    pub fn spawn(stream: TcpStream, send_hold: Duration) -> Self {
        let local_addr = stream.local_addr().ok();
        let (read, write) = stream.into_split();
        let (events_tx, events) = flume::bounded(RECEIVED_CAPACITY);
        let (outgoing, outgoing_rx) = flume::unbounded();
        let (close, close_rx) = oneshot::channel();
        let send_hold = Arc::new(AtomicU64::new(millis(send_hold)));
        let reader = tokio::spawn(read_loop(read, events_tx.clone()));
        let writer = Writer {
            half: write,
            outgoing: outgoing_rx,
            close: close_rx,
            events: events_tx,
            send_hold: send_hold.clone(),
        };
        tokio::spawn(writer.run());
        Connection { local_addr, events, outgoing, close: Some(close), send_hold, queued: 0, reader }
    }

    /// Queues one encoded message; never waits.
    pub fn send(&mut self, message_type: MessageType, bytes: Bytes) {
        self.send_many(MessageCounts::one(message_type), bytes);
    }

    /// Queues whole encoded messages, `messages` of each type, back to back in `bytes`.
    pub fn send_many(&mut self, messages: MessageCounts, bytes: Bytes) {
        self.queued = self.queued.saturating_add(bytes.len());
        let _ = self.outgoing.send((messages, bytes));
    }

    /// Whether the queue takes more UPDATEs (control messages always go in:
    /// they are few, and the send hold timer bounds how long they wait).
    pub fn has_room(&self) -> bool {
        self.queued < SEND_QUEUE_OCTETS
    }

    /// The send hold time changes once the session's hold time is negotiated.
    pub fn set_send_hold(&self, send_hold: Duration) {
        self.send_hold.store(millis(send_hold), Ordering::Relaxed);
    }

    /// The next event; `Sent` frees queue space. Both tasks gone counts as a failure.
    pub async fn next_event(&mut self) -> ConnectionEvent {
        let event = self.events.recv_async().await.unwrap_or(ConnectionEvent::Failed);
        if let ConnectionEvent::Sent { len, .. } = &event {
            self.queued = self.queued.saturating_sub(*len);
        }
        event
    }

    /// Closes the connection after `last` (a NOTIFICATION): the writer
    /// finishes the message it is writing and sends `last` if both go out
    /// within [`CLOSE_LINGER`]; queued messages behind them are dropped.
    pub fn close(mut self, last: Option<Bytes>) {
        if let Some(close) = self.close.take() {
            let _ = close.send(last);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

thread_local! {
    /// Where this worker thread's reads land before they are copied out at their length.
    static READ_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// Reads what the socket has, up to [`READ_CHUNK`], as a buffer of its own length.
fn read_ready(half: &OwnedReadHalf) -> std::io::Result<Bytes> {
    READ_BUFFER.with_borrow_mut(|buffer| {
        let read = half.try_read(buffer)?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(Bytes::copy_from_slice(&buffer[..read]))
    })
}

async fn read_loop(half: OwnedReadHalf, events: flume::Sender<ConnectionEvent>) {
    loop {
        let event = match half.readable().await {
            Err(_) => ConnectionEvent::Failed,
            Ok(()) => match read_ready(&half) {
                // Readiness without data: wait again.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => ConnectionEvent::Failed,
                Ok(bytes) => ConnectionEvent::Received(bytes),
            },
        };
        let failed = matches!(event, ConnectionEvent::Failed);
        if events.send_async(event).await.is_err() || failed {
            return;
        }
    }
}

struct Writer {
    half: OwnedWriteHalf,
    outgoing: flume::Receiver<(MessageCounts, Bytes)>,
    close: oneshot::Receiver<Option<Bytes>>,
    events: flume::Sender<ConnectionEvent>,
    send_hold: Arc<AtomicU64>,
}

/// How the write of one message ended.
enum Written {
    Whole,
    Stalled,
    Failed,
}

impl Writer {
    async fn run(mut self) {
        loop {
            let next = tokio::select! {
                biased;
                last = &mut self.close => return self.finish(&[], last.ok().flatten()).await,
                next = self.outgoing.recv_async() => next,
            };
            let Ok((mut messages, bytes)) = next else { return };
            let bytes = self.join_queued(&mut messages, bytes);
            let mut offset = 0;
            let send_hold = self.send_hold();
            let written = tokio::select! {
                biased;
                last = &mut self.close => Err(last.ok().flatten()),
                written = write_with_progress(&mut self.half, &bytes, &mut offset, send_hold) => Ok(written),
            };
            let written = match written {
                Ok(written) => written,
                Err(last) => return self.finish(&bytes[offset..], last).await,
            };
            let event = match written {
                Written::Whole => ConnectionEvent::Sent { messages, len: bytes.len() },
                Written::Stalled => ConnectionEvent::SendHoldTimerExpired,
                Written::Failed => ConnectionEvent::Failed,
            };
            let whole = matches!(event, ConnectionEvent::Sent { .. });
            // The events channel is shared with the reader and may be full; the close
            // (with the NOTIFICATION to send last) may come meanwhile and must not be lost.
            let sent = tokio::select! {
                biased;
                last = &mut self.close => return self.finish(&[], last.ok().flatten()).await,
                sent = self.events.send_async(event) => sent,
            };
            if sent.is_err() {
                // The connection was dropped: its last message, if any, was handed over first.
                let last = self.close.try_recv().ok().flatten();
                return self.finish(&[], last).await;
            }
            if !whole {
                return self.give_up(offset == 0 || offset == bytes.len()).await;
            }
        }
    }

    /// `first` and the messages queued behind it, up to [`WRITE_COALESCE`]
    /// octets, as one buffer of their length (one write, few segments);
    /// `messages` counts them all.
    fn join_queued(&mut self, messages: &mut MessageCounts, first: Bytes) -> Bytes {
        let mut len = first.len();
        let mut parts = Vec::new();
        while len < WRITE_COALESCE {
            let Ok((more, bytes)) = self.outgoing.try_recv() else { break };
            messages.add(&more);
            len += bytes.len();
            parts.push(bytes);
        }
        if parts.is_empty() {
            return first;
        }
        let mut out = BytesMut::with_capacity(len);
        out.extend_from_slice(&first);
        for part in parts {
            out.extend_from_slice(&part);
        }
        out.freeze()
    }

    fn send_hold(&self) -> Duration {
        Duration::from_millis(self.send_hold.load(Ordering::Relaxed))
    }

    /// The connection is closing: the rest of the current message, then the
    /// last one, within the linger time; a FIN in any case.
    async fn finish(mut self, rest: &[u8], last: Option<Bytes>) {
        let Some(last) = last else { return };
        let linger = CLOSE_LINGER.min(self.send_hold());
        let half = &mut self.half;
        let _ = tokio::time::timeout(linger, async {
            half.write_all(rest).await?;
            half.write_all(&last).await?;
            half.shutdown().await
        })
        .await;
    }

    /// Writing failed or stalled: wait for the peer task to close and only
    /// try the last message, if the stream is at a message boundary, without
    /// waiting for the socket (RFC 9687 section 4: the NOTIFICATION must not
    /// delay closing).
    async fn give_up(mut self, at_boundary: bool) {
        let Ok(Some(last)) = (&mut self.close).await else { return };
        if at_boundary {
            let _ = self.half.try_write(&last);
        }
    }
}

/// Writes `bytes[*offset..]`, advancing `offset` (it survives cancellation).
/// `Stalled` when no octet went out for `send_hold`.
async fn write_with_progress(
    half: &mut OwnedWriteHalf,
    bytes: &[u8],
    offset: &mut usize,
    send_hold: Duration,
) -> Written {
    while *offset < bytes.len() {
        match tokio::time::timeout(send_hold, half.write(&bytes[*offset..])).await {
            Err(_) => return Written::Stalled,
            Ok(Ok(0) | Err(_)) => return Written::Failed,
            Ok(Ok(n)) => *offset += n,
        }
    }
    Written::Whole
}
