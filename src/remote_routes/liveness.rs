//! The direct-path liveness probe: an ICMP echo from this node's tunnel
//! address (a pod-range source) to a peer node's underlay address. The
//! destination is on-link, so the probe always takes the direct path —
//! whatever route currently carries the peer's block — and it meets the
//! same filters pod traffic does (a cloud's source check, a firewall that
//! drops pod sources). The reply comes back to the tunnel address either
//! way, so the verdict is about the path from us to the peer.

use crate::fallback_ipip::packet::{checksum, parse_ipv4};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// Probe settings.
#[derive(Debug, Clone, Copy)]
pub struct ProbeConfig {
    pub interval: Duration,
    /// Consecutive lost probes before the direct path is declared dead.
    pub down_after: u32,
    /// Consecutive answered probes before it is declared alive again.
    pub up_after: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig { interval: Duration::from_millis(200), down_after: 3, up_after: 3 }
    }
}

#[derive(Debug, Clone, Copy)]
struct PeerState {
    alive: bool,
    /// Consecutive results contradicting `alive`.
    streak: u32,
    outstanding: Option<u16>,
}

/// Probes every address in `targets` from `source` and publishes, per
/// target, whether its direct path is alive. Runs until `targets` closes.
pub async fn run(
    source: Ipv4Addr,
    config: ProbeConfig,
    mut targets: watch::Receiver<Vec<Ipv4Addr>>,
    verdicts: watch::Sender<HashMap<Ipv4Addr, bool>>,
) -> std::io::Result<()> {
    let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    // We write the IP header ourselves: the source must be the tunnel
    // address, which the kernel would not pick for an on-link destination.
    raw.set_header_included_v4(true)?;
    raw.set_nonblocking(true)?;
    // A raw socket is a datagram socket; tokio's UdpSocket drives it safely.
    let socket = UdpSocket::from_std(std::net::UdpSocket::from(std::os::fd::OwnedFd::from(raw)))?;
    let ident = (std::process::id() as u16) ^ 0x7474;
    let mut peers: HashMap<Ipv4Addr, PeerState> = HashMap::new();
    let mut seq: u16 = 0;
    let mut tick = tokio::time::interval(config.interval);
    // After a stall of this task (a busy machine), one probe round, not a burst of them: a
    // burst would count the probes of each round lost before the replies waiting in the
    // socket were read.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            changed = targets.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            _ = tick.tick() => {
                // Replies that came while this task did not run are answers, not losses.
                while let Ok(n) = socket.try_recv(&mut buf) {
                    take_reply(&buf[..n], ident, &mut peers, config);
                }
                let wanted = targets.borrow().clone();
                peers.retain(|p, _| wanted.contains(p));
                for target in wanted {
                    let st = peers.entry(target).or_insert(PeerState { alive: true, streak: 0, outstanding: None });
                    // The previous probe went unanswered for a whole interval.
                    if st.outstanding.take().is_some() {
                        record(st, false, config);
                    }
                    seq = seq.wrapping_add(1);
                    st.outstanding = Some(seq);
                    let packet = echo_request(source, target, ident, seq);
                    let _ = socket.send_to(&packet, SocketAddrV4::new(target, 0)).await;
                }
                publish(&verdicts, &peers);
            }
            received = socket.recv(&mut buf) => {
                let Ok(n) = received else { continue };
                if take_reply(&buf[..n], ident, &mut peers, config) {
                    publish(&verdicts, &peers);
                }
            }
        }
    }
}

/// Records `packet` when it is the reply to a peer's outstanding probe; true if it was.
fn take_reply(packet: &[u8], ident: u16, peers: &mut HashMap<Ipv4Addr, PeerState>, config: ProbeConfig) -> bool {
    let Some((from, id, s)) = parse_echo_reply(packet) else { return false };
    let Some(st) = peers.get_mut(&from) else { return false };
    if id != ident || st.outstanding != Some(s) {
        return false;
    }
    st.outstanding = None;
    record(st, true, config);
    true
}

fn record(st: &mut PeerState, answered: bool, config: ProbeConfig) {
    if answered == st.alive {
        st.streak = 0;
        return;
    }
    st.streak += 1;
    let needed = if st.alive { config.down_after } else { config.up_after };
    if st.streak >= needed {
        st.alive = answered;
        st.streak = 0;
    }
}

fn publish(verdicts: &watch::Sender<HashMap<Ipv4Addr, bool>>, peers: &HashMap<Ipv4Addr, PeerState>) {
    let now: HashMap<Ipv4Addr, bool> = peers.iter().map(|(p, s)| (*p, s.alive)).collect();
    verdicts.send_if_modified(|v| {
        if *v != now {
            *v = now;
            true
        } else {
            false
        }
    });
}

/// An IPv4 ICMP echo request with an explicit source address.
pub fn echo_request(src: Ipv4Addr, dst: Ipv4Addr, ident: u16, seq: u16) -> Vec<u8> {
    let payload = b"tortie-direct-path";
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 1;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let hc = checksum(&p[..20]);
    p[10..12].copy_from_slice(&hc.to_be_bytes());
    let icmp = &mut p[20..];
    icmp[0] = 8;
    icmp[4..6].copy_from_slice(&ident.to_be_bytes());
    icmp[6..8].copy_from_slice(&seq.to_be_bytes());
    icmp[8..].copy_from_slice(payload);
    let c = checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// (source, identifier, sequence) of an ICMP echo reply.
pub fn parse_echo_reply(packet: &[u8]) -> Option<(Ipv4Addr, u16, u16)> {
    let h = parse_ipv4(packet)?;
    let icmp = packet.get(h.header_len..h.total_len)?;
    if h.protocol != 1 || icmp.len() < 8 || icmp[0] != 0 {
        return None;
    }
    Some((h.src, u16::from_be_bytes([icmp[4], icmp[5]]), u16::from_be_bytes([icmp[6], icmp[7]])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_to_our_request_parses_back() {
        let mut req = echo_request("10.244.1.1".parse().unwrap(), "10.0.0.6".parse().unwrap(), 7, 9);
        // Turn it into the peer's reply: swap addresses, type 0.
        let (src, dst) = (req[12..16].to_vec(), req[16..20].to_vec());
        req[12..16].copy_from_slice(&dst);
        req[16..20].copy_from_slice(&src);
        req[20] = 0;
        assert_eq!(parse_echo_reply(&req), Some(("10.0.0.6".parse().unwrap(), 7, 9)));
        req[20] = 8;
        assert_eq!(parse_echo_reply(&req), None, "a request is not a reply");
        assert_eq!(parse_echo_reply(&req[..25]), None);
    }

    /// The prober's own stalls (a busy machine: 30 agents on 2 cores) are not lost replies:
    /// the answers wait in the socket meanwhile. Loopback targets in a namespace of the test's.
    #[test]
    fn a_stalled_prober_keeps_every_answered_path_alive() {
        let mut topology = crate::netns::Topology::new("probe").expect("a topology");
        let ns = topology.add_namespace("a").expect("a namespace");
        let (result_tx, result_rx) = std::sync::mpsc::channel();
        let thread = crate::netns::spawn_in_namespace(&ns, move |_stop| async move {
            let targets: Vec<Ipv4Addr> = (2..22).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
            let (_targets_tx, targets_rx) = watch::channel(targets.clone());
            let (verdicts_tx, verdicts_rx) = watch::channel(HashMap::new());
            let config = ProbeConfig { interval: Duration::from_millis(50), down_after: 3, up_after: 3 };
            let probe = tokio::spawn(run(Ipv4Addr::LOCALHOST, config, targets_rx, verdicts_tx));
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while verdicts_rx.borrow().len() < targets.len() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let mut dead: Vec<Ipv4Addr> = Vec::new();
            for _ in 0..4 {
                // The runtime's one thread stops for ten probe intervals.
                std::thread::sleep(Duration::from_millis(500));
                let until = tokio::time::Instant::now() + Duration::from_millis(400);
                while tokio::time::Instant::now() < until {
                    dead.extend(verdicts_rx.borrow().iter().filter(|(_, alive)| !**alive).map(|(a, _)| *a));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let seen = verdicts_rx.borrow().len();
            probe.abort();
            let _ = result_tx.send((seen, dead));
        })
        .expect("a thread in the namespace");
        let (seen, mut dead) = result_rx.recv_timeout(Duration::from_secs(30)).expect("the probe test to finish");
        thread.stop();
        assert_eq!(seen, 20, "every target has a verdict");
        dead.sort();
        dead.dedup();
        assert!(dead.is_empty(), "declared dead while every probe was answered: {dead:?}");
    }

    #[test]
    fn verdicts_flip_only_after_a_streak() {
        let cfg = ProbeConfig::default();
        let mut st = PeerState { alive: true, streak: 0, outstanding: None };
        record(&mut st, false, cfg);
        record(&mut st, false, cfg);
        assert!(st.alive, "two losses are not enough");
        record(&mut st, true, cfg);
        record(&mut st, false, cfg);
        record(&mut st, false, cfg);
        assert!(st.alive, "an answer resets the streak");
        record(&mut st, false, cfg);
        assert!(!st.alive);
        for _ in 0..3 {
            record(&mut st, true, cfg);
        }
        assert!(st.alive, "three answers bring it back");
    }
}
