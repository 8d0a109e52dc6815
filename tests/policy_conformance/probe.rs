//! Real traffic for the matrix: responders serving TCP (echo) and UDP (echo) on ports 80 and
//! 81 in every pod, and probes of every pair on every port and protocol at once, each from a
//! thread inside the source pod's namespace.

use super::model::{Pod, Proto};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

pub const PORTS: [u16; 2] = [80, 81];
pub const PROTOS: [Proto; 2] = [Proto::Tcp, Proto::Udp];
/// How long a denied probe waits: every probe of a round runs at once, so this is a round's length.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(400);

/// Serves TCP and UDP echo on `PORTS` in network namespace `ns`, on both address families,
/// until the process ends (the lab's teardown removes the namespace).
pub fn serve(ns: &str) {
    let any = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0);
    for port in PORTS {
        let at = SocketAddr::new(any.ip(), port);
        let (tcp, udp) = tortie::netns::run_in_namespace(ns, move || {
            (TcpListener::bind(at).expect("bind tcp"), UdpSocket::bind(at).expect("bind udp"))
        })
        .unwrap();
        std::thread::spawn(move || {
            for stream in tcp.incoming().flatten() {
                std::thread::spawn(move || echo(stream));
            }
        });
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = udp.recv_from(&mut buf) {
                let _ = udp.send_to(&buf[..n], from);
            }
        });
    }
}

fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; 64];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Whether a new connection gets an answer. Run inside the source's namespace.
pub fn probe(to: SocketAddr, proto: Proto) -> bool {
    match proto {
        Proto::Tcp => TcpStream::connect_timeout(&to, PROBE_TIMEOUT).is_ok(),
        Proto::Udp => {
            let local: SocketAddr = if to.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
            let Ok(s) = UdpSocket::bind(local) else { return false };
            let mut buf = [0u8; 8];
            s.set_read_timeout(Some(PROBE_TIMEOUT / 2)).unwrap();
            // Twice: one lost datagram is not a verdict.
            (0..2).any(|_| {
                s.send_to(b"probe", to).is_ok() && matches!(s.recv_from(&mut buf), Ok((5, from)) if from == to)
            })
        }
    }
}

/// One probe of the matrix: source index, destination index, protocol, port.
pub type Probe = (usize, usize, Proto, u16);

/// Runs every probe at once; `ip` picks the address of a pod (one family).
pub fn run(
    pods: &[Pod],
    ns_of: impl Fn(&Pod) -> String + Sync,
    ip: impl Fn(&Pod) -> IpAddr + Sync,
) -> Vec<(Probe, bool)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, from)| {
                let ns = ns_of(from);
                let targets: Vec<(Probe, SocketAddr)> = pods
                    .iter()
                    .enumerate()
                    .flat_map(|(j, to)| {
                        let ip = ip(to);
                        PROTOS.into_iter().flat_map(move |proto| {
                            PORTS.into_iter().map(move |port| ((i, j, proto, port), SocketAddr::new(ip, port)))
                        })
                    })
                    .collect();
                scope.spawn(move || {
                    // Threads made inside the namespace stay in it.
                    tortie::netns::run_in_namespace(&ns, || {
                        std::thread::scope(|inner| {
                            let hs: Vec<_> = targets
                                .into_iter()
                                .map(|(p, addr)| inner.spawn(move || (p, probe(addr, p.2))))
                                .collect();
                            hs.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
                        })
                    })
                    .unwrap()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// The expected and observed verdicts as Cyclonus prints them: per protocol and port, a grid
/// of sources (rows) by destinations (columns), `.` connected and `X` refused, with the wrong
/// cells marked in a third grid. Empty when they agree.
pub fn diff(pods: &[Pod], expected: &[(Probe, bool)], observed: &[(Probe, bool)]) -> String {
    let mut out = String::new();
    let verdict = |table: &[(Probe, bool)], p: Probe| table.iter().find(|(q, _)| *q == p).is_some_and(|(_, ok)| *ok);
    let ids: Vec<String> = pods.iter().map(Pod::id).collect();
    let width = ids.iter().map(String::len).max().unwrap_or(3);
    for proto in PROTOS {
        for port in PORTS {
            let wrong = (0..pods.len())
                .flat_map(|i| (0..pods.len()).map(move |j| (i, j, proto, port)))
                .filter(|p| verdict(expected, *p) != verdict(observed, *p))
                .count();
            if wrong == 0 {
                continue;
            }
            out.push_str(&format!("\n{} {port}: {wrong} wrong (expected | observed | wrong)\n", proto.name()));
            let header: String = ids.iter().map(|id| format!(" {id}")).collect();
            out.push_str(&format!("{:width$} {header}   {header}   {header}\n", ""));
            for (i, id) in ids.iter().enumerate() {
                let cells = |f: &dyn Fn(Probe) -> char| -> String {
                    (0..pods.len()).map(|j| format!(" {:>w$}", f((i, j, proto, port)), w = ids[j].len())).collect()
                };
                let want = |p: Probe| if verdict(expected, p) { '.' } else { 'X' };
                let got = |p: Probe| if verdict(observed, p) { '.' } else { 'X' };
                let bad = |p: Probe| if verdict(expected, p) != verdict(observed, p) { '!' } else { ' ' };
                out.push_str(&format!("{id:width$} {} | {} | {}\n", cells(&want), cells(&got), cells(&bad)));
            }
        }
    }
    out
}
