//! One TCP connection of a session, split into a reader task and a writer
//! task so that the peer task never awaits the socket: a peer that stops
//! reading cannot stop the session's timers. The writer sends what the peer
//! task queues and watches that sending makes progress (the RFC 9687 send
//! hold timer); the peer task keeps the queue short by taking no UPDATEs
//! from the RIB while it is full.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::status::MessageCounts;
use crate::bgp::packet::MessageType;
use crate::bgp::packet::header::MAX_MESSAGE_LEN;

/// Octets queued for the writer above which the peer task takes no more
/// UPDATEs from the RIB (their channel fills and the RIB keeps the rest).
pub const SEND_QUEUE_OCTETS: usize = 8 * MAX_MESSAGE_LEN;
/// How many chunks the reader may be ahead of the peer task; then it stops
/// reading and TCP slows the peer down.
const RECEIVED_CAPACITY: usize = 16;
/// The most a read asks for: while reads fill what they are given, each
/// gets twice as much, up to this; a read that does not starts again from
/// one message. A reflector's client sends little, and a thousand of them
/// each with 64 KiB reserved were 66 MB of a reflector's heap.
const READ_CHUNK: usize = 16 * MAX_MESSAGE_LEN;
const FIRST_READ_CHUNK: usize = MAX_MESSAGE_LEN;
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
    events: mpsc::Receiver<ConnectionEvent>,
    outgoing: mpsc::UnboundedSender<(MessageCounts, Bytes)>,
    close: Option<oneshot::Sender<Option<Bytes>>>,
    send_hold: watch::Sender<Duration>,
    /// Octets queued and not yet reported sent.
    queued: usize,
    reader: JoinHandle<()>,
}

impl Connection {
    pub fn spawn(stream: TcpStream, send_hold: Duration) -> Self {
        let local_addr = stream.local_addr().ok();
        let (read, write) = stream.into_split();
        let (events_tx, events) = mpsc::channel(RECEIVED_CAPACITY);
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        let (close, close_rx) = oneshot::channel();
        let (send_hold, send_hold_rx) = watch::channel(send_hold);
        let reader = tokio::spawn(read_loop(read, events_tx.clone()));
        let writer =
            Writer { half: write, outgoing: outgoing_rx, close: close_rx, events: events_tx, send_hold: send_hold_rx };
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
        self.send_hold.send_if_modified(|current| std::mem::replace(current, send_hold) != send_hold);
    }

    /// The next event; `Sent` frees queue space. Both tasks gone counts as a failure.
    pub async fn next_event(&mut self) -> ConnectionEvent {
        let event = self.events.recv().await.unwrap_or(ConnectionEvent::Failed);
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

async fn read_loop(half: OwnedReadHalf, events: mpsc::Sender<ConnectionEvent>) {
    let mut buf = BytesMut::new();
    let mut chunk = FIRST_READ_CHUNK;
    loop {
        // The buffer is reserved only once there is something to read: an idle session (most
        // of a reflector's thousand) holds none.
        let event = match half.readable().await {
            Err(_) => ConnectionEvent::Failed,
            Ok(()) => {
                buf.reserve(chunk);
                let room = buf.capacity() - buf.len();
                match half.try_read_buf(&mut buf) {
                    // Readiness without data: give the reservation back before waiting again.
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        buf = BytesMut::new();
                        continue;
                    }
                    Ok(0) | Err(_) => ConnectionEvent::Failed,
                    Ok(read) => {
                        chunk = if read >= room { (chunk * 2).min(READ_CHUNK) } else { FIRST_READ_CHUNK };
                        // Taken whole, not split: what is left of the allocation is not kept
                        // for a next read that may not come for a long time.
                        ConnectionEvent::Received(std::mem::take(&mut buf).freeze())
                    }
                }
            }
        };
        let failed = matches!(event, ConnectionEvent::Failed);
        if events.send(event).await.is_err() || failed {
            return;
        }
    }
}

struct Writer {
    half: OwnedWriteHalf,
    outgoing: mpsc::UnboundedReceiver<(MessageCounts, Bytes)>,
    close: oneshot::Receiver<Option<Bytes>>,
    events: mpsc::Sender<ConnectionEvent>,
    send_hold: watch::Receiver<Duration>,
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
                next = self.outgoing.recv() => next,
            };
            let Some((mut messages, bytes)) = next else { return };
            let bytes = self.join_queued(&mut messages, bytes);
            let mut offset = 0;
            let send_hold = *self.send_hold.borrow();
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
                sent = self.events.send(event) => sent,
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
    /// octets, as one buffer (one write, few segments); `messages` counts them all.
    fn join_queued(&mut self, messages: &mut MessageCounts, first: Bytes) -> Bytes {
        if first.len() >= WRITE_COALESCE {
            return first;
        }
        let mut joined: Option<BytesMut> = None;
        let mut len = first.len();
        while len < WRITE_COALESCE {
            let Ok((more, bytes)) = self.outgoing.try_recv() else { break };
            let out = joined.get_or_insert_with(|| {
                let mut out = BytesMut::with_capacity(WRITE_COALESCE + MAX_MESSAGE_LEN);
                out.extend_from_slice(&first);
                out
            });
            out.extend_from_slice(&bytes);
            messages.add(&more);
            len += bytes.len();
        }
        joined.map_or(first, BytesMut::freeze)
    }

    /// The connection is closing: the rest of the current message, then the
    /// last one, within the linger time; a FIN in any case.
    async fn finish(mut self, rest: &[u8], last: Option<Bytes>) {
        let Some(last) = last else { return };
        let linger = CLOSE_LINGER.min(*self.send_hold.borrow());
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
