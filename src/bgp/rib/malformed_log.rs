//! Log lines for UPDATEs kept under RFC 7606 (treat-as-withdraw, attribute-discard): the
//! operator sees the peer, the action, the attributes at fault and how many prefixes it cost,
//! but at most one line per peer per [`LOG_INTERVAL`], carrying what was not logged since, so a
//! peer sending thousands of such UPDATEs cannot fill the log. Every one is counted in the
//! peer's statistics regardless.

use super::super::packet::error::{Rfc7606Action, UpdateOutcome};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// At most one line per peer in this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// What one log line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedLine {
    pub action: Rfc7606Action,
    /// The type codes of the attributes at fault, each once, in order.
    pub attributes: Vec<u8>,
    /// Prefixes the UPDATE announced (withdrawn under treat-as-withdraw).
    pub prefixes: usize,
    /// UPDATEs and prefixes of this kind from the peer that were not logged since its last line.
    pub suppressed_updates: u64,
    pub suppressed_prefixes: u64,
}

struct Window {
    logged_at: Instant,
    updates: u64,
    prefixes: u64,
}

/// The RIB task's limiter (pure: the time is given).
#[derive(Default)]
pub struct MalformedLog {
    peers: HashMap<IpAddr, Window>,
}

impl MalformedLog {
    /// The line to log for an UPDATE from `peer` with `outcome` announcing `prefixes`, or
    /// `None` when it is not a kept-but-malformed UPDATE or the peer was logged recently.
    pub fn note(
        &mut self,
        peer: IpAddr,
        outcome: &UpdateOutcome,
        prefixes: usize,
        now: Instant,
    ) -> Option<MalformedLine> {
        let action = outcome.action();
        if !matches!(action, Rfc7606Action::TreatAsWithdraw | Rfc7606Action::AttributeDiscard) {
            return None;
        }
        if let Some(w) = self.peers.get_mut(&peer)
            && now.duration_since(w.logged_at) < LOG_INTERVAL
        {
            w.updates += 1;
            w.prefixes += prefixes as u64;
            return None;
        }
        let previous = self.peers.insert(peer, Window { logged_at: now, updates: 0, prefixes: 0 });
        let mut attributes: Vec<u8> = Vec::new();
        for fault in &outcome.faults {
            if !attributes.contains(&fault.type_code) {
                attributes.push(fault.type_code);
            }
        }
        Some(MalformedLine {
            action,
            attributes,
            prefixes,
            suppressed_updates: previous.as_ref().map_or(0, |w| w.updates),
            suppressed_prefixes: previous.map_or(0, |w| w.prefixes),
        })
    }

    /// Forgets a peer that is gone (its next malformed UPDATE is logged at once).
    pub fn forget(&mut self, peer: &IpAddr) {
        self.peers.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::packet::error::{AttributeFault, UpdateError};
    use super::*;

    fn outcome(action: Rfc7606Action, codes: &[u8]) -> UpdateOutcome {
        UpdateOutcome {
            faults: codes
                .iter()
                .map(|&type_code| AttributeFault {
                    attribute_index: None,
                    type_code,
                    action,
                    error: UpdateError::MalformedAttributeList { reason: "test" },
                })
                .collect(),
        }
    }

    #[test]
    fn one_line_per_peer_per_interval_carrying_what_was_not_logged() {
        let mut log = MalformedLog::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        let withdraw = outcome(Rfc7606Action::TreatAsWithdraw, &[2, 2, 3]);
        let first = log.note(a, &withdraw, 10, t0).expect("the first is logged");
        assert_eq!(first.attributes, vec![2, 3]);
        assert_eq!((first.prefixes, first.suppressed_updates, first.suppressed_prefixes), (10, 0, 0));
        assert_eq!(log.note(a, &withdraw, 5, t0 + Duration::from_secs(1)), None);
        assert_eq!(log.note(a, &outcome(Rfc7606Action::AttributeDiscard, &[8]), 7, t0 + Duration::from_secs(2)), None);
        assert!(log.note(b, &withdraw, 1, t0 + Duration::from_secs(3)).is_some(), "another peer has its own window");
        let next = log.note(a, &withdraw, 3, t0 + LOG_INTERVAL).expect("logged again after the interval");
        assert_eq!((next.suppressed_updates, next.suppressed_prefixes), (2, 12));
        log.forget(&a);
        assert!(log.note(a, &withdraw, 1, t0 + LOG_INTERVAL + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn a_clean_update_is_not_logged() {
        let mut log = MalformedLog::default();
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(log.note(peer, &UpdateOutcome::default(), 3, Instant::now()), None);
    }
}
