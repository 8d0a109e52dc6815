//! Connections the listener refuses (from addresses that are no configured peer): every one
//! counted by reason for `tortie_bgp_refused_connections_total`, but at most one log line per
//! source per [`LOG_INTERVAL`], carrying how many were not logged, so a scan or a misconfigured
//! router cannot fill the log.
//!
//! The counters are process-wide atomics: the listener sits deep inside the speaker, a process
//! has one listener, and the metrics collector reads them at scrape time. The log limiter is
//! the listener task's own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why a connection was refused; the metric's `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The remote address is no configured peer.
    UnknownPeer,
}

impl Reason {
    pub const ALL: [Reason; 1] = [Reason::UnknownPeer];

    pub fn label(self) -> &'static str {
        match self {
            Reason::UnknownPeer => "unknown_peer",
        }
    }

    fn counter(self) -> &'static AtomicU64 {
        match self {
            Reason::UnknownPeer => &UNKNOWN_PEER,
        }
    }

    /// Connections refused for this reason since the process started.
    pub fn count(self) -> u64 {
        self.counter().load(Ordering::Relaxed)
    }
}

static UNKNOWN_PEER: AtomicU64 = AtomicU64::new(0);

/// At most one log line per source in this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Sources remembered at once; beyond, refusals from new sources are counted, not logged,
/// until the remembered ones age out (many sources must not grow the table or the log).
const MAX_SOURCES: usize = 1024;

/// One source's log window: when its last line was written and what was not logged since.
struct Window {
    logged_at: Instant,
    suppressed: u64,
}

/// The listener's log limiter.
#[derive(Default)]
pub struct RefusedLog {
    sources: HashMap<IpAddr, Window>,
}

impl RefusedLog {
    /// Counts a refused connection from `remote` and logs it unless this source was logged
    /// less than [`LOG_INTERVAL`] ago.
    pub fn refused(&mut self, remote: std::net::SocketAddr, reason: Reason) {
        reason.counter().fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let source = remote.ip();
        if let Some(w) = self.sources.get_mut(&source) {
            if now.duration_since(w.logged_at) < LOG_INTERVAL {
                w.suppressed += 1;
                return;
            }
        } else if self.sources.len() >= MAX_SOURCES {
            self.sources.retain(|_, w| now.duration_since(w.logged_at) < LOG_INTERVAL);
            if self.sources.len() >= MAX_SOURCES {
                return;
            }
        }
        let previous = self.sources.insert(source, Window { logged_at: now, suppressed: 0 });
        let suppressed = previous.map_or(0, |w| w.suppressed);
        tracing::info!(
            subsys = "bgp",
            %remote,
            reason = reason.label(),
            suppressed_since_last = suppressed,
            "refused a BGP connection from an address that is not a configured peer (logged once a minute per source)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_logged_once_per_interval_and_every_refusal_counted() {
        let mut log = RefusedLog::default();
        let before = Reason::UnknownPeer.count();
        let remote: std::net::SocketAddr = "192.0.2.9:40000".parse().unwrap();
        for _ in 0..100 {
            log.refused(remote, Reason::UnknownPeer);
        }
        assert!(Reason::UnknownPeer.count() >= before + 100);
        assert_eq!(log.sources[&remote.ip()].suppressed, 99);
        // A window that has passed logs again and starts a new count.
        log.sources.get_mut(&remote.ip()).unwrap().logged_at -= LOG_INTERVAL;
        log.refused(remote, Reason::UnknownPeer);
        assert_eq!(log.sources[&remote.ip()].suppressed, 0);
    }
}
