//! The userspace IP-in-IP encapsulator, for kernels without ipip (creating
//! `tunl0` fails with EOPNOTSUPP): a TUN device that the kernel routes
//! remote blocks into, and a raw `IPPROTO_IPIP` socket that carries the
//! packets between nodes in the kernel's own wire format, so a userspace
//! node and a kernel-ipip node interoperate.
//!
//! ```text
//!  kernel route  <block> dev tortie-ipip
//!        │ inner packet                      outer packet (proto 4)
//!        ▼                                          │
//!  ┌────────────┐  lookup inner dst → node   ┌──────┴───────┐
//!  │ encap task │ ─────────────────────────▶ │  raw socket  │ ──▶ underlay
//!  └────────────┘                            └──────┬───────┘
//!  ┌────────────┐  outer src must be a node         │
//!  │ decap task │ ◀─────────────────────────────────┘
//!  └─────┬──────┘
//!        ▼ inner packet written to the TUN device; the kernel forwards it
//! ```

use super::packet::{DropReason, OVERHEAD, decapsulate, frag_needed, parse_ipv4};
use super::table::{TunnelPeer, TunnelTable};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

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

/// Packet and byte counters, and drops by reason.
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

/// A running userspace tunnel. Dropping it stops both tasks; the TUN device
/// is persistent and stays, with its routes, for the next run to adopt.
pub struct UserspaceTunnel {
    /// Written by the owner through [`UserspaceTunnel::set_peers`], read per
    /// packet by both data-path tasks: a lock, not a channel, because the
    /// data path must not wait for a task to answer.
    table: Arc<RwLock<TunnelTable>>,
    pub counters: Arc<TunnelCounters>,
    ifindex: u32,
    tasks: Vec<JoinHandle<()>>,
}

impl UserspaceTunnel {
    /// Creates the device and the socket and starts the data path in the
    /// current network namespace.
    pub fn start(config: &UserspaceConfig) -> std::io::Result<Self> {
        let mtu = config.underlay_mtu.saturating_sub(OVERHEAD as u16);
        let mut builder = tun_rs::DeviceBuilder::new().name(&config.device).mtu(mtu);
        if let Some(addr) = config.address {
            builder = builder.ipv4(addr, 32u8, None);
        }
        // An existing device of this name is the previous run's (made
        // persistent below): opening it by name attaches to it, so its
        // ifindex, and with it every route through it, stays.
        let existed = std::path::Path::new("/sys/class/net").join(&config.device).exists();
        let device = Arc::new(builder.build_async()?);
        // Persistent: the device and its routes outlive this process, so a
        // restart loses only the packets sent while no process reads it.
        device.persist()?;
        let ifindex = device.if_index()?;
        let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(i32::from(super::packet::IPPROTO_IPIP))))?;
        raw.set_nonblocking(true)?;
        let _ = raw.set_recv_buffer_size(4 << 20);
        let _ = raw.set_send_buffer_size(4 << 20);
        // A raw socket is a datagram socket: tokio's UdpSocket drives any
        // datagram fd (recvfrom/sendto), which gives readiness handling
        // without wrapping the fd in unsafe code.
        let raw = Arc::new(UdpSocket::from_std(std::net::UdpSocket::from(std::os::fd::OwnedFd::from(raw)))?);
        let table = Arc::new(RwLock::new(TunnelTable::default()));
        let counters = Arc::new(TunnelCounters::default());
        let icmp_source = config.address;
        let encap = tokio::spawn(encap_loop(
            device.clone(),
            raw.clone(),
            table.clone(),
            counters.clone(),
            usize::from(config.underlay_mtu),
            icmp_source,
        ));
        let decap = tokio::spawn(decap_loop(device, raw, table.clone(), counters.clone()));
        tracing::info!(
            subsys = "ipip",
            device = %config.device,
            mtu,
            adopted = existed,
            "userspace IP-in-IP tunnel started (the kernel has no ipip)"
        );
        Ok(UserspaceTunnel { table, counters, ifindex, tasks: vec![encap, decap] })
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
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn read_table<T>(table: &RwLock<TunnelTable>, f: impl FnOnce(&TunnelTable) -> T) -> T {
    match table.read() {
        Ok(t) => f(&t),
        Err(poisoned) => f(&poisoned.into_inner()),
    }
}

async fn encap_loop(
    device: Arc<tun_rs::AsyncDevice>,
    raw: Arc<UdpSocket>,
    table: Arc<RwLock<TunnelTable>>,
    counters: Arc<TunnelCounters>,
    underlay_mtu: usize,
    icmp_source: Option<Ipv4Addr>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match device.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(subsys = "ipip", error = %e, "reading the tunnel device failed; encapsulation stops");
                return;
            }
        };
        let packet = &buf[..n];
        let Some(h) = parse_ipv4(packet) else {
            // IPv6 router solicitations and the like: not ours to carry.
            counters.drop_one(DropReason::Malformed);
            continue;
        };
        let Some(node) = read_table(&table, |t| t.lookup(h.dst)) else {
            counters.drop_one(DropReason::NoRoute);
            continue;
        };
        if n + OVERHEAD > underlay_mtu {
            counters.drop_one(DropReason::TooBig);
            if h.df {
                // RFC 2003 5.1: report the tunnel MTU to the sender.
                let mtu = (underlay_mtu - OVERHEAD) as u16;
                if let Some(icmp) = frag_needed(packet, mtu, icmp_source.unwrap_or(h.dst)) {
                    let _ = device.send(&icmp).await;
                }
            }
            continue;
        }
        match raw.send_to(packet, SocketAddrV4::new(node, 0)).await {
            Ok(_) => {
                counters.encap_packets.fetch_add(1, Ordering::Relaxed);
                counters.encap_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(_) => counters.drop_one(DropReason::SendError),
        }
    }
}

async fn decap_loop(
    device: Arc<tun_rs::AsyncDevice>,
    raw: Arc<UdpSocket>,
    table: Arc<RwLock<TunnelTable>>,
    counters: Arc<TunnelCounters>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        // A raw socket hands over the whole IP packet, outer header included.
        let n = match raw.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(subsys = "ipip", error = %e, "the raw IP-in-IP socket failed; decapsulation stops");
                return;
            }
        };
        let (src, inner) = match decapsulate(&buf[..n]) {
            Ok(v) => v,
            Err(reason) => {
                counters.drop_one(reason);
                continue;
            }
        };
        // Every raw IPIP socket sees every protocol-4 packet of the
        // namespace: accept only those from nodes we know (as Calico's
        // INPUT rule does with its all-hosts set).
        if !read_table(&table, |t| t.is_known_node(src)) {
            counters.drop_one(DropReason::UnknownSource);
            continue;
        }
        match device.send(inner).await {
            Ok(_) => {
                counters.decap_packets.fetch_add(1, Ordering::Relaxed);
                counters.decap_bytes.fetch_add(inner.len() as u64, Ordering::Relaxed);
            }
            Err(_) => counters.drop_one(DropReason::SendError),
        }
    }
}
