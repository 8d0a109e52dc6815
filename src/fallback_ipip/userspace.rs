//! The userspace IP-in-IP encapsulator, for kernels without ipip (creating
//! `tunl0` fails with EOPNOTSUPP): a TUN device that the kernel routes
//! remote blocks into, and a raw `IPPROTO_IPIP` socket that carries the
//! packets between nodes in the kernel's own wire format, so a userspace
//! node and a kernel-ipip node interoperate.
//!
//! ```text
//!  kernel route  <block> dev tortie-ipip
//!        │ TCP/UDP super-packets (TSO/USO, virtio header)   outer packets (proto 4)
//!        ▼                                                         │
//!  ┌──────────────┐ segment (gso.rs), lookup inner dst → node ┌────┴───────┐
//!  │ encap thread │ ─────────── sendmmsg, a batch per call ──▶ │ raw socket │ ──▶ underlay
//!  └──────────────┘                                           └────┬───────┘
//!  ┌──────────────┐ recvmmsg, outer src must be a node             │
//!  │ decap thread │ ◀──────────────────────────────────────────────┘
//!  └──────┬───────┘
//!         ▼ TCP segments of a flow coalesced (gro.rs) and written to the
//!           TUN device as one super-packet; the kernel forwards it
//! ```
//!
//! The device is opened with offloads (`IFF_VNET_HDR`, TSO/USO, checksum):
//! the kernel hands over up to 64 KiB per read and takes as much per
//! write, so the per-packet system calls that bound throughput happen once
//! per batch. Each direction is a plain thread blocked in its system
//! calls (no async runtime on the data path); buffers are allocated once.

use super::gro::{Coalescer, Emitted, MAX_PACKET};
use super::gso::Segments;
use super::packet::{DropReason, OVERHEAD, decapsulate, frag_needed};
use super::sys::{MmsgScratch, Outgoing, recv_batch, send_batch, wait_readable};
use super::table::{TunnelPeer, TunnelTable};
use super::virtio::{VNET_HDR_LEN, VirtioNetHdr};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{ErrorKind, IoSlice};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// Packets per `sendmmsg`/`recvmmsg`.
const BATCH: usize = 64;
/// How long a data-path thread waits for traffic before it checks whether
/// it is to stop (bounds how long dropping the tunnel takes).
const STOP_POLL: Duration = Duration::from_millis(100);

/// Settings of the userspace tunnel.
#[derive(Debug, Clone)]
pub struct UserspaceConfig {
    /// TUN device name (at most 15 characters).
    pub device: String,
    /// Underlay MTU; the device gets this minus the 20-byte outer header.
    pub underlay_mtu: u16,
    /// The node's tunnel address (from IPAM), put on the device so traffic
    /// the node itself sends through the tunnel has a routable source.
    pub address: Option<Ipv4Addr>,
}

/// Packet and byte counters (packets as on the wire: a super-packet counts
/// as its segments), and drops by reason.
#[derive(Debug, Default)]
pub struct TunnelCounters {
    pub encap_packets: AtomicU64,
    pub encap_bytes: AtomicU64,
    pub decap_packets: AtomicU64,
    pub decap_bytes: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

impl TunnelCounters {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Ordering::Relaxed)
    }
    fn drop_one(&self, reason: DropReason) {
        self.drops[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// A running userspace tunnel. Dropping it stops both threads; the TUN
/// device is persistent and stays, with its routes, for the next run to adopt.
pub struct UserspaceTunnel {
    /// Written by the owner through [`UserspaceTunnel::set_peers`], read by
    /// both data-path threads: a lock, not a channel, because the data path
    /// must not wait for a task to answer.
    table: Arc<RwLock<TunnelTable>>,
    pub counters: Arc<TunnelCounters>,
    ifindex: u32,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// What both data-path threads share.
struct Shared {
    device: tun_rs::SyncDevice,
    raw: Socket,
    table: Arc<RwLock<TunnelTable>>,
    counters: Arc<TunnelCounters>,
    stop: Arc<AtomicBool>,
    underlay_mtu: usize,
    icmp_source: Option<Ipv4Addr>,
}

/// Leaves `addr` (/32) as the device's one IPv4 address: added first when
/// missing, then any other removed, so the device never loses its last
/// address (and with it the routes through it) on the way.
fn set_only_address(device: &tun_rs::SyncDevice, addr: Ipv4Addr) -> std::io::Result<()> {
    let has = device.addresses()?;
    if !has.contains(&addr.into()) {
        device.add_address_v4(addr, 32u8)?;
    }
    for other in has.into_iter().filter(|a| a.is_ipv4() && *a != std::net::IpAddr::V4(addr)) {
        device.remove_address(other)?;
    }
    Ok(())
}

impl UserspaceTunnel {
    /// Creates the device and the socket and starts the data path in the
    /// current network namespace.
    pub fn start(config: &UserspaceConfig) -> std::io::Result<Self> {
        let mtu = config.underlay_mtu.saturating_sub(OVERHEAD as u16);
        // The address is not given to the builder: it replaces the device's
        // addresses, and removing a device's last IPv4 address makes the
        // kernel drop every route through it, silently.
        let builder = tun_rs::DeviceBuilder::new().name(&config.device).mtu(mtu).offload(true);
        // An existing device of this name is the previous run's (made
        // persistent below): opening it by name attaches to it, so its
        // ifindex, and with it every route through it, stays.
        let existed = std::path::Path::new("/sys/class/net").join(&config.device).exists();
        let device = builder.build_sync()?;
        if let Some(addr) = config.address {
            set_only_address(&device, addr)?;
        }
        // Persistent: the device and its routes outlive this process, so a
        // restart loses only the packets sent while no process reads it.
        device.persist()?;
        device.set_nonblocking(true)?;
        let ifindex = device.if_index()?;
        let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(i32::from(super::packet::IPPROTO_IPIP))))?;
        let _ = raw.set_recv_buffer_size(4 << 20);
        let _ = raw.set_send_buffer_size(4 << 20);
        let table = Arc::new(RwLock::new(TunnelTable::default()));
        let counters = Arc::new(TunnelCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            device,
            raw,
            table: table.clone(),
            counters: counters.clone(),
            stop: stop.clone(),
            underlay_mtu: usize::from(config.underlay_mtu),
            icmp_source: config.address,
        });
        let encap = {
            let shared = shared.clone();
            std::thread::Builder::new().name("ipip-encap".into()).spawn(move || encap_loop(&shared))?
        };
        let decap = std::thread::Builder::new().name("ipip-decap".into()).spawn(move || decap_loop(&shared))?;
        tracing::info!(
            subsys = "ipip",
            device = %config.device,
            mtu,
            adopted = existed,
            "userspace IP-in-IP tunnel started (the kernel has no ipip)"
        );
        Ok(UserspaceTunnel { table, counters, ifindex, stop, threads: vec![encap, decap] })
    }

    /// The TUN device's interface index (for routes `<block> dev <tun>`).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sets the remote blocks reached through the tunnel and the nodes
    /// that may send to us (every node with a tunnel peer, plus `extra_nodes`).
    pub fn set_peers(&self, peers: &[TunnelPeer], extra_nodes: &[Ipv4Addr]) {
        let table = TunnelTable::new(peers, extra_nodes);
        match self.table.write() {
            Ok(mut t) => *t = table,
            Err(poisoned) => *poisoned.into_inner() = table,
        }
    }
}

impl Drop for UserspaceTunnel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn read_table<T>(table: &RwLock<TunnelTable>, f: impl FnOnce(&TunnelTable) -> T) -> T {
    match table.read() {
        Ok(t) => f(&t),
        Err(poisoned) => f(&poisoned.into_inner()),
    }
}

/// Device → raw socket: reads until the device is empty, segmenting each
/// super-packet into send slots, and sends a batch whenever the slots are
/// full or the device has nothing more.
fn encap_loop(s: &Shared) {
    let mut frame = vec![0u8; VNET_HDR_LEN + MAX_PACKET];
    // A slot holds one inner packet; the kernel adds the outer header.
    let slot = s.underlay_mtu - OVERHEAD;
    let mut batch = SendBatch {
        arena: vec![0u8; BATCH * slot],
        queued: Vec::with_capacity(BATCH),
        scratch: MmsgScratch::new(BATCH),
    };
    while !s.stop.load(Ordering::Relaxed) {
        let n = match s.device.recv(&mut frame) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                batch.send(s);
                if let Err(e) = wait_readable(s.device.as_fd(), STOP_POLL) {
                    tracing::error!(subsys = "ipip", error = %e, "waiting on the tunnel device failed; encapsulation stops");
                    return;
                }
                continue;
            }
            Err(e) => {
                tracing::error!(subsys = "ipip", error = %e, "reading the tunnel device failed; encapsulation stops");
                return;
            }
        };
        encapsulate(s, &frame[..n], &mut batch, slot);
    }
}

/// Queues the segments of one frame read from the device.
fn encapsulate(s: &Shared, frame: &[u8], batch: &mut SendBatch, slot: usize) {
    let Some(vnet) = VirtioNetHdr::parse(frame) else {
        s.counters.drop_one(DropReason::Malformed);
        return;
    };
    // IPv6 router solicitations and the like are not IPv4: not ours to carry.
    let mut segments = match Segments::new(&frame[VNET_HDR_LEN..], &vnet) {
        Ok(segments) => segments,
        Err(reason) => {
            s.counters.drop_one(reason);
            return;
        }
    };
    let packet = segments.packet();
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let Some(node) = read_table(&s.table, |t| t.lookup(dst)) else {
        s.counters.drop_one(DropReason::NoRoute);
        return;
    };
    if segments.max_segment_len() > slot {
        s.counters.drop_one(DropReason::TooBig);
        if packet[6] & 0x40 != 0 {
            // RFC 2003 5.1: report the tunnel MTU to the sender.
            if let Some(icmp) = frag_needed(packet, slot as u16, s.icmp_source.unwrap_or(dst)) {
                let _ = s.device.send_vectored(&[IoSlice::new(&[0; VNET_HDR_LEN]), IoSlice::new(&icmp)]);
            }
        }
        return;
    }
    loop {
        if batch.queued.len() == BATCH {
            batch.send(s);
        }
        let offset = batch.queued.len() * slot;
        let Some(len) = segments.next_into(&mut batch.arena[offset..offset + slot]) else { break };
        batch.queued.push(Outgoing { offset, len, dest: node });
    }
}

/// Segments waiting to be sent, in fixed slots of one arena.
struct SendBatch {
    arena: Vec<u8>,
    queued: Vec<Outgoing>,
    scratch: MmsgScratch,
}

impl SendBatch {
    fn send(&mut self, s: &Shared) {
        let mut done = 0;
        while done < self.queued.len() {
            match send_batch(s.raw.as_fd(), &self.arena, &self.queued[done..], &mut self.scratch) {
                Ok(sent) => {
                    let bytes: usize = self.queued[done..done + sent].iter().map(|p| p.len).sum();
                    s.counters.encap_packets.fetch_add(sent as u64, Ordering::Relaxed);
                    s.counters.encap_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                    done += sent;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    // The first of the rest was refused (no route, no
                    // buffer): count it and go on with the others.
                    s.counters.drop_one(DropReason::SendError);
                    done += 1;
                }
            }
        }
        self.queued.clear();
    }
}

/// Raw socket → device: a batch per `recvmmsg`, each packet checked and
/// decapsulated, consecutive TCP segments coalesced, every frame written.
fn decap_loop(s: &Shared) {
    // Slots of a whole IPv4 packet: the underlay may hand over packets it
    // coalesced itself.
    let slot = MAX_PACKET;
    let mut arena = vec![0u8; BATCH * slot];
    let mut lens = [0usize; BATCH];
    let mut scratch = MmsgScratch::new(BATCH);
    let mut coalescer = Coalescer::new(s.underlay_mtu - OVERHEAD);
    let mut write = |e: Emitted<'_>| match s.device.send_vectored(&[IoSlice::new(&e.vnet), IoSlice::new(e.packet)]) {
        Ok(_) => {
            s.counters.decap_packets.fetch_add(e.segments, Ordering::Relaxed);
            s.counters.decap_bytes.fetch_add(e.wire_bytes, Ordering::Relaxed);
        }
        Err(_) => s.counters.drop_one(DropReason::SendError),
    };
    while !s.stop.load(Ordering::Relaxed) {
        let got = match recv_batch(s.raw.as_fd(), &mut arena, slot, &mut lens, &mut scratch) {
            Ok(got) => got,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                if let Err(e) = wait_readable(s.raw.as_fd(), STOP_POLL) {
                    tracing::error!(subsys = "ipip", error = %e, "waiting on the raw IP-in-IP socket failed; decapsulation stops");
                    return;
                }
                continue;
            }
            Err(e) => {
                tracing::error!(subsys = "ipip", error = %e, "the raw IP-in-IP socket failed; decapsulation stops");
                return;
            }
        };
        // One look at the table per batch: `set_peers` waits at most a batch.
        let table = match s.table.read() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (i, &len) in lens[..got].iter().enumerate() {
            // A raw socket hands over the whole IP packet, outer header included.
            let (src, inner) = match decapsulate(&arena[i * slot..i * slot + len]) {
                Ok(v) => v,
                Err(reason) => {
                    s.counters.drop_one(reason);
                    continue;
                }
            };
            // Every raw IPIP socket sees every protocol-4 packet of the
            // namespace: accept only those from nodes we know (as Calico's
            // INPUT rule does with its all-hosts set).
            if !table.is_known_node(src) {
                s.counters.drop_one(DropReason::UnknownSource);
                continue;
            }
            coalescer.push(inner, &mut write);
        }
        drop(table);
        coalescer.flush(&mut write);
    }
}
