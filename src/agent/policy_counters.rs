//! Network-policy counters: every `POLL` the counters of tortie's table are read (a rule dump
//! over nfnetlink) and summed
//! per policy rule and direction (`tortie_policy_rule_packets_total` / `_bytes_total`) and per
//! local endpoint (`tortie_policy_denied_packets_total`: packets its chain dropped at its end,
//! because no rule of the policies selecting it allowed them; a Deny rule's drops count on that
//! rule). Series are bounded by the policies' rules and this node's pods.

use super::policy::PolicyState;
use crate::dataplane::nftables::dump::ChainCounters;
use crate::dataplane::nftables::policy::{endpoint_chain, policy_chain, present, rule_origins};
use crate::dataplane::nftables::{NftTable, TABLE_NAME};
use crate::policy::Program;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;

/// How often the counters are read, at most.
const POLL: Duration = Duration::from_secs(5);
/// The next read waits this many times as long as the last one took, so an idle agent spends
/// at most about 1/`READ_SHARE` of a core on it however large the table.
const READ_SHARE: u32 = 50;

pub use crate::dataplane::nftables::dump::Count;

/// The counters as last read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyCounters {
    /// (policy, rule index, `ingress`/`egress`) → count.
    pub rules: BTreeMap<(String, usize, &'static str), Count>,
    /// `namespace/pod` → packets dropped at the end of its chains.
    pub denied: BTreeMap<String, u64>,
}

/// The counters of `program` in `chains` (each chain's rules' counters in order).
pub fn read(program: &Program, chains: &ChainCounters) -> PolicyCounters {
    let present = present(program);
    let mut out = PolicyCounters::default();
    for policy in program.policies.iter() {
        for (ingress, direction) in [(true, "ingress"), (false, "egress")] {
            let Some(counters) = chains.get(&policy_chain(&policy.id, ingress)) else { continue };
            for (origin, counter) in rule_origins(policy, ingress, &present).into_iter().zip(counters) {
                if let (Some(rule), Some((packets, bytes))) = (origin, counter) {
                    let entry = out.rules.entry((policy.name.clone(), rule, direction)).or_default();
                    entry.0 += packets;
                    entry.1 += bytes;
                }
            }
        }
    }
    for endpoint in &program.endpoints {
        for (ingress, list) in [(true, &endpoint.ingress), (false, &endpoint.egress)] {
            if list.is_none() {
                continue;
            }
            let last = chains.get(&endpoint_chain(&endpoint.interface, ingress)).and_then(|c| c.last().copied());
            *out.denied.entry(endpoint.endpoint.clone()).or_default() += last.flatten().map_or(0, |c| c.0);
        }
    }
    out
}

/// How long to wait after a read that took `took`.
fn next_read_after(took: Duration) -> Duration {
    POLL.max(took * READ_SHARE)
}

/// Reads the counters every [`POLL`], or less often on a large table ([`READ_SHARE`]), until
/// `stop` changes.
pub async fn follow(
    table: NftTable,
    state: watch::Receiver<PolicyState>,
    out: watch::Sender<PolicyCounters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut wait = POLL;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let started = tokio::time::Instant::now();
        let program = state.borrow().program.clone();
        match table.command.rule_counters(TABLE_NAME).await {
            Ok(chains) => {
                out.send_replace(read(&program, &chains));
            }
            Err(e) => tracing::debug!(subsys = "policy", error = %e, "cannot read the policy counters"),
        }
        wait = next_read_after(started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_that_is_slow_to_read_is_read_less_often() {
        assert_eq!(next_read_after(Duration::from_millis(20)), POLL);
        assert_eq!(next_read_after(Duration::from_secs(1)), Duration::from_secs(50));
    }
}
