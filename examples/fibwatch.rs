//! Event-driven FIB counter for one route protocol: `bench/fibwatch.py`
//! in Rust, for `bench/converge.sh` and `bench/fib_limit.sh`.
//!
//! Why a second one: the Python watcher spends about 2 µs of CPU per route
//! notification, two seconds per million routes, on a machine of two cores.
//! That load falls on whichever DUT uses both cores (tortie writes the kernel
//! on one thread while its RIB and programmer run on another) and hardly on a
//! single-threaded one, so it skewed the comparison it was measuring. This
//! one reads the same notifications 1024 to a recvmmsg(2) and looks at 28
//! bytes of each: about 0.9 µs per route, nearly all of it the kernel's
//! receive and free of each notification.
//!
//! Run inside the DUT's namespace before the DUT starts:
//! `ip netns exec bb-dut target/release/examples/fibwatch --proto 12 --target 100000 --events EV`
//!
//! It joins RTNLGRP_IPV4_ROUTE and counts IPv4 routes in table main whose
//! protocol is `--proto`: RTM_NEWROUTE without NLM_F_REPLACE +1, RTM_DELROUTE
//! -1. It drains the socket every `--tick` seconds instead of sleeping on it,
//! so the kernel does not wake it once per route inside the DUT's own
//! netlink calls. If the kernel reports ENOBUFS (events lost), it counts by
//! polling `/proc/self/net/fib_triestat` from then on, and says so.
//!
//! Events appended to `--events` as `<name> <unix time> [k=v ...]`, the same
//! as the Python watcher's: ready, fib_first, fib_full, fib_empty, progress,
//! overrun, final.

use clap::Parser;
use netlink_packet_core::NLM_F_REPLACE;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, NetlinkAddr, recvmmsg};
use std::fs::File;
use std::io::{IoSliceMut, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::signal::unix::{SignalKind, signal};
use tortie::dataplane::netlink::{RTM_DELROUTE, RTM_NEWROUTE};

const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RT_TABLE_MAIN: u8 = 254;
const NLMSG_HDRLEN: usize = 16;
/// Datagrams taken per recvmmsg(2): each notification is one datagram, and
/// a syscall per route was most of this watcher's CPU.
const BATCH: usize = 1024;
/// Bytes kept of each: a route notification is 100-300 bytes, and only its
/// first 28 (header and rtmsg) are read, so a longer one losing its tail
/// to MSG_TRUNC is still counted.
const DATAGRAM: usize = 1024;

#[derive(Parser)]
struct Args {
    /// Count routes of this protocol number.
    #[arg(long)]
    proto: u8,
    /// Report `fib_full` once the count reaches this.
    #[arg(long)]
    target: i64,
    /// Append events to this file.
    #[arg(long)]
    events: PathBuf,
    /// After an overrun, poll fib_triestat every POLL seconds.
    #[arg(long, default_value_t = 0.2)]
    poll: f64,
    /// Report the count every PROGRESS seconds while it changes.
    #[arg(long, default_value_t = 1.0)]
    progress: f64,
    /// Receive buffer (SO_RCVBUFFORCE), bytes.
    #[arg(long, default_value_t = 512 * 1024 * 1024)]
    rcvbuf: usize,
    /// Drain the socket every TICK seconds (timestamps are exact to about TICK).
    #[arg(long, default_value_t = 0.01)]
    tick: f64,
}

struct Events(File);

impl Events {
    fn write(&mut self, name: &str, extra: &str) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let sep = if extra.is_empty() { "" } else { " " };
        // One write(2) per line: converge.sh reads the file while it grows,
        // and must never see half a timestamp. A lost line only loses a
        // measurement; the watcher keeps counting.
        let line = format!("{name} {now:.6}{sep}{extra}\n");
        let _ = self.0.write_all(line.as_bytes());
    }
}

#[derive(Default)]
struct Counter {
    count: i64,
    adds: u64,
    dels: u64,
    replaces: u64,
    first_seen: bool,
    full_seen: bool,
}

impl Counter {
    /// Counts the route notifications of one datagram.
    fn read(&mut self, data: &[u8], proto: u8) {
        let mut off = 0;
        while off + NLMSG_HDRLEN <= data.len() {
            let len = u32::from_ne_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]) as usize;
            if len < NLMSG_HDRLEN {
                break;
            }
            let kind = u16::from_ne_bytes([data[off + 4], data[off + 5]]);
            let flags = u16::from_ne_bytes([data[off + 6], data[off + 7]]);
            // struct rtmsg: family dst_len src_len tos table protocol scope type flags
            let rtm = off + NLMSG_HDRLEN;
            if (kind == RTM_NEWROUTE || kind == RTM_DELROUTE)
                && data.get(rtm + 5) == Some(&proto)
                && data.get(rtm + 4) == Some(&RT_TABLE_MAIN)
            {
                if kind == RTM_DELROUTE {
                    self.count -= 1;
                    self.dels += 1;
                } else if flags & NLM_F_REPLACE != 0 {
                    self.replaces += 1;
                } else {
                    self.count += 1;
                    self.adds += 1;
                }
            }
            off += (len + 3) & !3;
        }
    }

    fn check(&mut self, target: i64, ev: &mut Events) {
        if !self.first_seen && self.count > 0 {
            self.first_seen = true;
            ev.write("fib_first", &format!("count={}", self.count));
        }
        if !self.full_seen && self.count >= target {
            self.full_seen = true;
            ev.write("fib_full", &format!("count={}", self.count));
        } else if self.full_seen && self.count <= 0 {
            self.full_seen = false;
            ev.write("fib_empty", &format!("count={}", self.count));
        }
    }
}

/// "Prefixes:" of the first trie in this namespace's fib_triestat (main and local).
fn triestat_prefixes() -> i64 {
    std::fs::read_to_string("/proc/self/net/fib_triestat")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.trim().strip_prefix("Prefixes:").and_then(|n| n.trim().parse().ok())))
        .unwrap_or(0)
}

/// The route group's socket and what recvmmsg(2) reads into.
struct Listener {
    socket: Socket,
    headers: MultiHeaders<NetlinkAddr>,
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
}

/// What one drain of the socket found.
enum Drained {
    Nothing,
    Counted,
    /// ENOBUFS: notifications were lost.
    Overrun,
}

impl Listener {
    fn new(socket: Socket) -> Self {
        Listener {
            socket,
            headers: MultiHeaders::preallocate(BATCH, None),
            bufs: vec![vec![0u8; DATAGRAM]; BATCH],
            lens: Vec::with_capacity(BATCH),
        }
    }

    /// Receives up to [`BATCH`] datagrams; their lengths into `lens`.
    fn recv_many(&mut self) -> nix::Result<()> {
        self.lens.clear();
        let mut iovs: Vec<[IoSliceMut; 1]> = self.bufs.iter_mut().map(|b| [IoSliceMut::new(&mut b[..])]).collect();
        let received =
            recvmmsg(self.socket.as_raw_fd(), &mut self.headers, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None)?;
        self.lens.extend(received.map(|r| r.bytes.min(DATAGRAM)));
        Ok(())
    }

    /// Reads everything queued and counts it (nothing with `count` off).
    fn drain(&mut self, c: &mut Counter, proto: u8, count: bool) -> nix::Result<Drained> {
        let mut drained = Drained::Nothing;
        loop {
            match self.recv_many() {
                Ok(()) if self.lens.is_empty() => return Ok(drained),
                Ok(()) => {
                    if count {
                        for (buf, len) in self.bufs.iter().zip(&self.lens) {
                            c.read(&buf[..*len], proto);
                        }
                        drained = Drained::Counted;
                    }
                }
                Err(Errno::EAGAIN) => return Ok(drained),
                Err(Errno::ENOBUFS) => return Ok(Drained::Overrun),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

fn open(rcvbuf: usize) -> std::io::Result<Socket> {
    let mut s = Socket::new(NETLINK_ROUTE)?;
    if nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBufForce, &rcvbuf).is_err() {
        s.set_rx_buf_sz(rcvbuf)?;
    }
    s.bind(&SocketAddr::new(0, 0))?;
    s.add_membership(RTNLGRP_IPV4_ROUTE)?;
    s.set_non_blocking(true)?;
    Ok(s)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let file = std::fs::OpenOptions::new().create(true).append(true).open(&a.events)?;
    let mut ev = Events(file);
    let mut listener = Listener::new(open(a.rcvbuf)?);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let base_trie = triestat_prefixes();
    ev.write("ready", &format!("base_trie={base_trie} proto={} target={}", a.proto, a.target));

    let mut c = Counter::default();
    let mut overrun = false;
    let tick = Duration::from_secs_f64(a.tick);
    let (progress, poll) = (Duration::from_secs_f64(a.progress), Duration::from_secs_f64(a.poll));
    let (mut last_progress, mut last_reported) = (Instant::now(), -1);
    let mut next_poll = Instant::now();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            // Off the socket: see the module comment.
            () = tokio::time::sleep(tick) => {}
        }
        if overrun {
            if Instant::now() >= next_poll {
                c.count = triestat_prefixes() - base_trie;
                c.check(a.target, &mut ev);
                next_poll = Instant::now() + poll;
            }
            // Drain only: counting is by polling now.
            let _ = listener.drain(&mut c, a.proto, false);
        } else {
            match listener.drain(&mut c, a.proto, true)? {
                Drained::Nothing => {}
                Drained::Counted => c.check(a.target, &mut ev),
                Drained::Overrun => {
                    overrun = true;
                    ev.write("overrun", &format!("count_at_overrun={}", c.count));
                }
            }
        }
        if last_progress.elapsed() >= progress && c.count != last_reported {
            ev.write("progress", &format!("count={}", c.count));
            last_progress = Instant::now();
            last_reported = c.count;
        }
    }
    // What came in since the last tick, as the Python watcher does.
    if !overrun && matches!(listener.drain(&mut c, a.proto, true)?, Drained::Counted) {
        c.check(a.target, &mut ev);
    }
    ev.write(
        "final",
        &format!(
            "count={} adds={} dels={} replaces={} overrun={} trie={}",
            c.count,
            c.adds,
            c.dels,
            c.replaces,
            u8::from(overrun),
            triestat_prefixes() - base_trie
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One route message: header, rtmsg and nothing else.
    fn msg(kind: u16, flags: u16, table: u8, proto: u8) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&28u32.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&[2, 32, 0, 0, table, proto, 0, 1, 0, 0, 0, 0]);
        m
    }

    #[test]
    fn counts_adds_and_deletes_of_its_protocol_in_table_main_only() {
        let mut data = Vec::new();
        for m in [
            msg(RTM_NEWROUTE, 0, RT_TABLE_MAIN, 116),
            msg(RTM_NEWROUTE, 0, RT_TABLE_MAIN, 116),
            msg(RTM_NEWROUTE, NLM_F_REPLACE, RT_TABLE_MAIN, 116),
            msg(RTM_NEWROUTE, 0, 100, 116),
            msg(RTM_NEWROUTE, 0, RT_TABLE_MAIN, 12),
            msg(RTM_DELROUTE, 0, RT_TABLE_MAIN, 116),
        ] {
            data.extend(m);
        }
        let mut c = Counter::default();
        c.read(&data, 116);
        assert_eq!((c.count, c.adds, c.dels, c.replaces), (1, 2, 1, 1));
    }

    #[test]
    fn a_truncated_or_zero_length_message_ends_the_datagram() {
        let mut data = msg(RTM_NEWROUTE, 0, RT_TABLE_MAIN, 116);
        data.extend_from_slice(&[0; 16]);
        let mut c = Counter::default();
        c.read(&data, 116);
        c.read(&data[..20], 116);
        assert_eq!(c.count, 1, "the zero-length header stops the walk; a short rtmsg is not read");
    }
}
