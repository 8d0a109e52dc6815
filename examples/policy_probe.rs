//! TCP probes for the policy data-path benchmark (`bench/policy_datapath.sh`).
//!
//! `serve --port P ...`: accepts and closes connections on every port given (run inside a pod:
//! `ip netns exec POD policy_probe serve --port 80`).
//!
//! `cps --to IP:PORT --seconds N`: new TCP connections per second, a connect and close loop
//! (closed with an RST, `SO_LINGER` 0, so no TIME_WAIT exhausts the ports) on `--threads`
//! threads for N seconds, each connect with a `--timeout-ms` (100) timeout; prints
//! `cps connections=.. failed=.. timeouts=.. failed_s=.. seconds=.. per_second=..` (`failed_s`:
//! the time the failed attempts took).
//!
//! `flips --probe NAME,NETNS,IP:PORT ... --tortie BIN --policy FILE --changes N`: change →
//! enforced latency. Each change is `BIN apply -f FILE` (the policy denies every probe) or
//! `BIN delete -f FILE`, alternately. Before a change the old verdict is confirmed on every
//! probe; the clock starts just before the command is spawned. Each probe (from a pod's
//! namespace NETNS to IP:PORT) starts a connect every `--interval-ms` on `--workers` threads,
//! each attempt with a `--timeout-ms` timeout, and its flip is the start of the earliest
//! attempt with the new verdict that no attempt with the old one started after. Prints one
//! line per change and probe: `flip change=.. verb=apply|delete probe=NAME ms=..`, then
//! `command change=.. ms=..` (the command's own run time).

use clap::{Parser, Subcommand};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Serve {
        #[arg(long = "port", required = true)]
        ports: Vec<u16>,
    },
    Cps {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Each connect's timeout.
        #[arg(long, default_value_t = 100)]
        timeout_ms: u64,
    },
    Flips {
        /// NAME,NETNS,IP:PORT (repeatable).
        #[arg(long = "probe", required = true, value_parser = parse_probe)]
        probes: Vec<Probe>,
        #[arg(long)]
        tortie: String,
        #[arg(long)]
        policy: String,
        #[arg(long, default_value_t = 200)]
        changes: usize,
        #[arg(long, default_value_t = 5)]
        interval_ms: u64,
        #[arg(long, default_value_t = 8)]
        workers: usize,
        #[arg(long, default_value_t = 40)]
        timeout_ms: u64,
        /// How long a verdict may take to flip before the run fails.
        #[arg(long, default_value_t = 60)]
        deadline_s: u64,
    },
}

/// One connect attempt; true when the handshake completed within `timeout`.
fn connects(to: &SockAddr, timeout: Duration) -> bool {
    attempt(to, timeout).is_ok()
}

/// One connect attempt, closed with an RST once connected.
fn attempt(to: &SockAddr, timeout: Duration) -> std::io::Result<()> {
    let domain = if to.is_ipv6() { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    s.set_linger(Some(Duration::ZERO))?;
    s.connect_timeout(to, timeout)
}

fn serve(ports: &[u16]) -> Result<(), String> {
    let listeners = ports
        .iter()
        .map(|&port| listen(port).map_err(|e| format!("--port {port}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    std::thread::scope(|scope| {
        // Two accepting threads per port and a long queue: a client that outruns a starved
        // acceptor on a loaded machine must not see its handshakes dropped.
        for listener in &listeners {
            for _ in 0..2 {
                scope.spawn(move || {
                    for conn in listener.incoming() {
                        drop(conn);
                    }
                });
            }
        }
    });
    Ok(())
}

fn listen(port: u16) -> std::io::Result<TcpListener> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
    s.listen(4096)?;
    Ok(s.into())
}

fn cps(to: SocketAddr, seconds: f64, threads: usize, timeout: Duration) {
    let to = SockAddr::from(to);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let (ok, failed, timeouts, lost) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let to = to.clone();
                scope.spawn(move || {
                    let (mut ok, mut failed, mut timeouts, mut lost) = (0u64, 0u64, 0u64, Duration::ZERO);
                    while Instant::now() < end {
                        let s = Instant::now();
                        match attempt(&to, timeout) {
                            Ok(()) => ok += 1,
                            Err(e) => {
                                failed += 1;
                                timeouts += u64::from(e.kind() == std::io::ErrorKind::TimedOut);
                                lost += s.elapsed();
                            }
                        }
                    }
                    (ok, failed, timeouts, lost)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a cps thread"))
            .fold((0, 0, 0, Duration::ZERO), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3))
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "cps connections={ok} failed={failed} timeouts={timeouts} failed_s={:.3} seconds={secs:.3} per_second={:.1}",
        lost.as_secs_f64(),
        ok as f64 / secs
    );
}

#[derive(Clone)]
struct Probe {
    name: String,
    netns: String,
    to: SockAddr,
}

fn parse_probe(s: &str) -> Result<Probe, String> {
    let parts: Vec<&str> = s.split(',').collect();
    let [name, netns, to] = parts[..] else { return Err(format!("{s:?}: expected NAME,NETNS,IP:PORT")) };
    let to: SocketAddr = to.parse().map_err(|e| format!("{s:?}: address {to:?}: {e}"))?;
    Ok(Probe { name: name.into(), netns: netns.into(), to: to.into() })
}

struct Timing {
    interval: Duration,
    workers: usize,
    timeout: Duration,
    deadline: Duration,
}

/// Probes `p` until its verdict has been `want` long enough to be settled (by arrival, twice as
/// many attempts in a row as there are workers) and returns the flip: the start of the earliest
/// attempt with verdict `want` later than every attempt with the other verdict. `ready` is
/// called once the old verdict has been seen `workers` times in a row; attempts before then
/// do not count; `t0` (set by the caller once every probe is ready) bounds the result below.
fn probe_until(
    p: &Probe,
    want: bool,
    t: &Timing,
    ready: &(dyn Fn() + Sync),
    t0: &std::sync::OnceLock<Instant>,
) -> Result<Instant, String> {
    let stop = AtomicBool::new(false);
    let result = tortie::netns::run_in_namespace(&p.netns, || {
        let (tx, rx) = mpsc::channel::<(Instant, bool)>();
        std::thread::scope(|scope| {
            let begin = Instant::now();
            for w in 0..t.workers {
                let (tx, stop, to) = (tx.clone(), &stop, p.to.clone());
                scope.spawn(move || {
                    let period = t.interval * t.workers as u32;
                    let mut next = begin + t.interval * w as u32;
                    while !stop.load(Ordering::Relaxed) {
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        }
                        let s = Instant::now();
                        let ok = connects(&to, t.timeout);
                        if tx.send((s, ok)).is_err() {
                            break;
                        }
                        next = (s + period).max(Instant::now());
                    }
                });
            }
            drop(tx);
            let out = collect(&rx, want, t, ready, t0);
            stop.store(true, Ordering::Relaxed);
            out
        })
    });
    result.map_err(|e| format!("probe {}: netns {}: {e}", p.name, p.netns))?
}

fn collect(
    rx: &mpsc::Receiver<(Instant, bool)>,
    want: bool,
    t: &Timing,
    ready: &(dyn Fn() + Sync),
    t0: &std::sync::OnceLock<Instant>,
) -> Result<Instant, String> {
    let started = Instant::now();
    // The old verdict first: `workers` attempts in a row.
    let mut run = 0;
    while run < t.workers {
        let left = t.deadline.saturating_sub(started.elapsed());
        let (_, ok) = rx.recv_timeout(left).map_err(|_| format!("the old verdict ({}) never held", verdict(!want)))?;
        run = if ok != want { run + 1 } else { 0 };
    }
    ready();
    let t0 = loop {
        if let Some(t0) = t0.get() {
            break *t0;
        }
        // Keep draining while the other probes get ready.
        let _ = rx.recv_timeout(Duration::from_millis(1));
    };
    let mut seen: Vec<(Instant, bool)> = Vec::new();
    let mut run = 0;
    while run < 2 * t.workers {
        let left = t.deadline.saturating_sub(t0.elapsed());
        let (s, ok) = rx
            .recv_timeout(left)
            .map_err(|_| format!("the verdict did not flip to {} within {:?}", verdict(want), t.deadline))?;
        if s < t0 {
            continue;
        }
        seen.push((s, ok));
        run = if ok == want { run + 1 } else { 0 };
    }
    flip_of(&seen, want).ok_or_else(|| format!("no attempt saw the verdict {}", verdict(want)))
}

/// The start of the earliest attempt with verdict `want` that no attempt with the other
/// verdict started after; attempts may arrive in any order.
fn flip_of(seen: &[(Instant, bool)], want: bool) -> Option<Instant> {
    let last_old = seen.iter().filter(|(_, ok)| *ok != want).map(|(s, _)| *s).max();
    seen.iter().filter(|(s, ok)| *ok == want && last_old.is_none_or(|l| *s > l)).map(|(s, _)| *s).min()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "allowed" } else { "denied" }
}

fn flips(probes: &[Probe], tortie: &str, policy: &str, changes: usize, t: &Timing) -> Result<(), String> {
    for change in 0..changes {
        let verb = if change % 2 == 0 { "apply" } else { "delete" };
        let want = verb == "delete";
        let t0 = std::sync::OnceLock::new();
        let ready = std::sync::atomic::AtomicUsize::new(0);
        let on_ready = || {
            ready.fetch_add(1, Ordering::SeqCst);
        };
        let (flips, command) = std::thread::scope(|scope| {
            let handles: Vec<_> =
                probes.iter().map(|p| scope.spawn(|| probe_until(p, want, t, &on_ready, &t0))).collect();
            // Every probe has seen the old verdict: start the clock and the command.
            let waited = Instant::now();
            while ready.load(Ordering::SeqCst) < probes.len() && waited.elapsed() < t.deadline {
                if handles.iter().any(|h| h.is_finished()) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let start = Instant::now();
            let _ = t0.set(start);
            let status = Command::new(tortie).args([verb, "-f", policy]).output();
            let command = (start.elapsed(), status);
            let flips: Vec<_> = handles.into_iter().map(|h| h.join().expect("a probe thread")).collect();
            (flips, command)
        });
        let (took, output) = command;
        let output = output.map_err(|e| format!("{tortie}: {e}"))?;
        if !output.status.success() {
            return Err(format!("{tortie} {verb} -f {policy}: {}", String::from_utf8_lossy(&output.stderr)));
        }
        let start = *t0.get().expect("set");
        for (p, flip) in probes.iter().zip(flips) {
            let flip = flip.map_err(|e| format!("change {change} ({verb}), probe {}: {e}", p.name))?;
            println!("flip change={change} verb={verb} probe={} ms={:.2}", p.name, (flip - start).as_secs_f64() * 1e3);
        }
        println!("command change={change} verb={verb} ms={:.2}", took.as_secs_f64() * 1e3);
    }
    Ok(())
}

fn main() {
    match Args::parse().command {
        Cmd::Serve { ports } => {
            if let Err(e) = serve(&ports) {
                eprintln!("policy_probe serve: {e}");
                std::process::exit(1);
            }
        }
        Cmd::Cps { to, seconds, threads, timeout_ms } => {
            if !(seconds.is_finite() && seconds > 0.0 && seconds < 1e6) {
                eprintln!("policy_probe cps: --seconds {seconds}: expected a positive number of seconds");
                std::process::exit(2);
            }
            cps(to, seconds, threads.max(1), Duration::from_millis(timeout_ms))
        }
        Cmd::Flips { probes, tortie, policy, changes, interval_ms, workers, timeout_ms, deadline_s } => {
            let t = Timing {
                interval: Duration::from_millis(interval_ms),
                workers: workers.max(1),
                timeout: Duration::from_millis(timeout_ms),
                deadline: Duration::from_secs(deadline_s),
            };
            if let Err(e) = flips(&probes, &tortie, &policy, changes, &t) {
                eprintln!("policy_probe: {e}");
                std::process::exit(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flip_is_the_first_new_verdict_after_the_last_old_one() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        // Denied attempts report late (their timeout), allowed ones at once: arrival order
        // is not start order. Allowed at 5 ms is an outlier before the denied one at 10 ms.
        let seen = [(at(5), true), (at(15), true), (at(20), true), (at(10), false), (at(25), true)];
        assert_eq!(flip_of(&seen, true), Some(at(15)));
        assert_eq!(flip_of(&seen, false), None);
        // Only new verdicts: the earliest.
        assert_eq!(flip_of(&[(at(9), false), (at(3), false)], false), Some(at(3)));
        assert_eq!(flip_of(&[], true), None);
    }

    #[test]
    fn a_malformed_probe_is_an_error_naming_it() {
        assert!(parse_probe("n2,ns,10.0.0.1:80").is_ok());
        let e = parse_probe("n2,ns").err().unwrap();
        assert!(e.contains("\"n2,ns\"") && e.contains("NAME,NETNS,IP:PORT"), "{e}");
        let e = parse_probe("n2,ns,10.0.0.1").err().unwrap();
        assert!(e.contains("\"10.0.0.1\""), "{e}");
    }
}
