//! The BFD service: the shared listening sockets, one reader task each, and
//! the demultiplexer task that alone owns the table of sessions. A packet
//! goes to the session its Your Discriminator names or, while that is 0, to
//! the session of its source address (RFC 5880 section 6.3); a session's
//! packets must come from its peer, a single-hop one's with TTL 255. A
//! packet discarded (wrong TTL, malformed, unknown discriminator) is
//! counted by the session of its source address, or in [`ReceiveStats`]
//! when it has none.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::packet::ControlPacket;
use super::session::{Intervals, Session};
use super::task::{self, COMMANDS_CAPACITY, Delivery, Dropped, PACKETS_CAPACITY, SessionCommand, SessionStatus};
use super::transport::{self, Hops};

/// Requests to the demultiplexer (adding and removing sessions).
const REQUESTS_CAPACITY: usize = 64;
/// Decoded packets from the reader tasks.
const INCOMING_CAPACITY: usize = 256;

/// A session to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    pub peer: IpAddr,
    /// The address to send from; the kernel's choice when `None`.
    pub local: Option<IpAddr>,
    pub hops: Hops,
    pub intervals: Intervals,
    pub passive: bool,
}

/// Packets discarded that no session's peer sent, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReceiveStats {
    pub malformed: u64,
    pub wrong_ttl: u64,
    pub no_session: u64,
}

/// A running session; dropping it ends the session.
#[derive(Debug)]
pub struct BfdSession {
    status: watch::Receiver<SessionStatus>,
    commands: mpsc::Sender<SessionCommand>,
}

impl BfdSession {
    /// The session's status, updated as it changes.
    pub fn status(&self) -> watch::Receiver<SessionStatus> {
        self.status.clone()
    }

    /// Asks for new intervals: a Poll Sequence when Up, no flap.
    pub async fn set_intervals(&self, intervals: Intervals) {
        let _ = self.commands.send(SessionCommand::SetIntervals(intervals)).await;
    }

    pub async fn admin_down(&self) {
        let _ = self.commands.send(SessionCommand::AdminDown).await;
    }

    pub async fn admin_up(&self) {
        let _ = self.commands.send(SessionCommand::AdminUp).await;
    }
}

/// The handle to the BFD service; clones share it.
#[derive(Debug, Clone)]
pub struct Bfd {
    requests: mpsc::Sender<Request>,
    stats: watch::Receiver<ReceiveStats>,
}

enum Request {
    Add(SessionSpec, oneshot::Sender<io::Result<BfdSession>>),
    Remove(u32),
}

/// A datagram a reader received: decoded, or why it was discarded.
struct Incoming {
    packet: Result<ControlPacket, Dropped>,
    from: IpAddr,
    hops: Hops,
}

impl Bfd {
    /// Opens the listening sockets (single hop and multihop, IPv4 and IPv6;
    /// a family the host lacks is skipped with a warning) and spawns the
    /// service's tasks, which end when every `Bfd` clone and session is gone.
    pub fn start() -> io::Result<Bfd> {
        let mut sockets = Vec::new();
        let mut last_error = None;
        for hops in [Hops::Single, Hops::Multi] {
            for ipv6 in [false, true] {
                match transport::listen(ipv6, hops) {
                    Ok(socket) => sockets.push((socket, hops)),
                    Err(e) => {
                        tracing::warn!(ipv6, ?hops, error = %e, "BFD cannot listen");
                        last_error = Some(e);
                    }
                }
            }
        }
        if sockets.is_empty() {
            return Err(last_error.unwrap_or_else(|| io::Error::other("no BFD socket")));
        }
        let (requests, requests_rx) = mpsc::channel(REQUESTS_CAPACITY);
        let (incoming, incoming_rx) = mpsc::channel(INCOMING_CAPACITY);
        let (stats_tx, stats) = watch::channel(ReceiveStats::default());
        let mut readers = JoinSet::new();
        for (socket, hops) in sockets {
            readers.spawn(read(socket, hops, incoming.clone()));
        }
        let demux = Demux { requests: requests.downgrade(), by_discr: HashMap::new(), by_peer: HashMap::new() };
        tokio::spawn(demux.run(requests_rx, incoming_rx, readers, stats_tx));
        Ok(Bfd { requests, stats })
    }

    /// Starts a session; refused when one for the same peer and hops runs.
    pub async fn add(&self, spec: SessionSpec) -> io::Result<BfdSession> {
        let (reply, answer) = oneshot::channel();
        let gone = || io::Error::other("the BFD service has stopped");
        self.requests.send(Request::Add(spec, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    pub fn receive_stats(&self) -> watch::Receiver<ReceiveStats> {
        self.stats.clone()
    }
}

struct Entry {
    peer: IpAddr,
    hops: Hops,
    packets: mpsc::Sender<Delivery>,
    /// The owner's command sender: gone once the owner dropped the session.
    owner: mpsc::WeakSender<SessionCommand>,
}

struct Demux {
    /// Weak, so that the service ends once every handle is dropped.
    requests: mpsc::WeakSender<Request>,
    by_discr: HashMap<u32, Entry>,
    by_peer: HashMap<(IpAddr, Hops), u32>,
}

impl Demux {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut incoming: mpsc::Receiver<Incoming>,
        mut readers: JoinSet<()>,
        stats: watch::Sender<ReceiveStats>,
    ) {
        loop {
            tokio::select! {
                request = requests.recv() => match request {
                    None => break,
                    Some(Request::Add(spec, reply)) => { let _ = reply.send(self.add(spec)); }
                    Some(Request::Remove(discr)) => self.remove(discr),
                },
                Some(i) = incoming.recv() => match self.deliver(i) {
                    Ok(()) => {}
                    Err(Dropped::WrongTtl) => stats.send_modify(|s| s.wrong_ttl += 1),
                    Err(Dropped::Malformed) => stats.send_modify(|s| s.malformed += 1),
                    Err(Dropped::Discriminator) => stats.send_modify(|s| s.no_session += 1),
                },
            }
        }
        readers.abort_all();
    }

    fn add(&mut self, spec: SessionSpec) -> io::Result<BfdSession> {
        // A session whose owner has dropped it ends on its own (and removes
        // itself later): a new session for the same peer takes its place now.
        if let Some(old) = self.by_peer.get(&(spec.peer, spec.hops)).copied()
            && self.by_discr.get(&old).is_some_and(|e| e.owner.upgrade().is_none())
        {
            self.remove(old);
        }
        if self.by_peer.contains_key(&(spec.peer, spec.hops)) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("a BFD session to {} ({:?} hop) runs already", spec.peer, spec.hops),
            ));
        }
        let discr = loop {
            let candidate = transport::random_u64() as u32;
            if candidate != 0 && !self.by_discr.contains_key(&candidate) {
                break candidate;
            }
        };
        let seed = transport::random_u64();
        let socket = transport::sender(spec.local, spec.peer, spec.hops, seed)?;
        let (session, first) = Session::new(discr, spec.intervals, spec.passive, seed);
        let (packets, packets_rx) = mpsc::channel(PACKETS_CAPACITY);
        let (commands, commands_rx) = mpsc::channel(COMMANDS_CAPACITY);
        let (status_tx, status) = watch::channel(task::initial_status(spec.peer, spec.hops, &session));
        let requests = self.requests.clone();
        let (peer, hops) = (spec.peer, spec.hops);
        tokio::spawn(async move {
            let channels = task::Channels { packets: packets_rx, commands: commands_rx, status: status_tx };
            task::run(session, first, socket, (peer, hops), channels).await;
            if let Some(requests) = requests.upgrade() {
                let _ = requests.send(Request::Remove(discr)).await;
            }
        });
        self.by_discr.insert(discr, Entry { peer, hops, packets, owner: commands.downgrade() });
        self.by_peer.insert((peer, hops), discr);
        Ok(BfdSession { status, commands })
    }

    fn remove(&mut self, discr: u32) {
        if let Some(entry) = self.by_discr.remove(&discr)
            && self.by_peer.get(&(entry.peer, entry.hops)) == Some(&discr)
        {
            self.by_peer.remove(&(entry.peer, entry.hops));
        }
    }

    /// Hands a packet to its session, or a discarded one's reason to the
    /// session of its source address; the reason when neither has one.
    fn deliver(&mut self, i: Incoming) -> Result<(), Dropped> {
        let delivery = match i.packet {
            Ok(packet) => {
                let discr = match packet.your_discriminator {
                    0 => self.by_peer.get(&(i.from, i.hops)).copied(),
                    discr => Some(discr),
                };
                match discr.and_then(|d| self.by_discr.get(&d)) {
                    Some(entry) if entry.peer == i.from && entry.hops == i.hops => Delivery::Packet(packet),
                    _ => Delivery::Dropped(Dropped::Discriminator),
                }
            }
            Err(reason) => Delivery::Dropped(reason),
        };
        let target = match &delivery {
            Delivery::Packet(p) if p.your_discriminator != 0 => Some(p.your_discriminator),
            _ => self.by_peer.get(&(i.from, i.hops)).copied(),
        };
        let Some(entry) = target.and_then(|d| self.by_discr.get(&d)) else {
            return match delivery {
                Delivery::Dropped(reason) => Err(reason),
                Delivery::Packet(_) => Err(Dropped::Discriminator),
            };
        };
        // A full queue drops the packet (or the count of a discarded one):
        // the session is behind, and a lost packet is what the detection
        // time allows for.
        let _ = entry.packets.try_send(delivery);
        Ok(())
    }
}

/// One listening socket's reader: decodes, checks the TTL, passes on
/// (also what it discards, for the count).
async fn read(socket: UdpSocket, hops: Hops, incoming: mpsc::Sender<Incoming>) {
    let mut buf = transport::receive_buffer();
    loop {
        let datagram = match transport::receive(&socket, &mut buf).await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "BFD receive");
                continue;
            }
        };
        let packet = if !transport::ttl_acceptable(hops, datagram.ttl) {
            Err(Dropped::WrongTtl)
        } else {
            ControlPacket::decode(&buf[..datagram.len]).map_err(|e| {
                tracing::debug!(from = %datagram.from, error = %e, "BFD packet discarded");
                Dropped::Malformed
            })
        };
        let from = match datagram.from {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        if incoming.send(Incoming { packet, from, hops }).await.is_err() {
            return;
        }
    }
}
