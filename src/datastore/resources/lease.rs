//! A lease: which agent holds a cluster-wide duty (the load-balancer controller) and since when,
//! with the fields of Kubernetes' coordination.k8s.io Lease. Holders renew it by
//! compare-and-swap; a candidate takes it over once it has seen no renewal for the lease's
//! duration by its own clock (`crate::agent::lease`), so holders' clocks need not agree.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest lease accepted: an hour.
pub const MAX_DURATION_SECONDS: u32 = 3600;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lease {
    /// The node holding the duty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    /// How long a holder that stops renewing keeps the duty, as candidates count it.
    pub lease_duration_seconds: u32,
    /// When the holder took it (RFC 3339, the holder's clock; shown to operators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<String>,
    /// When the holder last renewed it (RFC 3339, the holder's clock; shown to operators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,
    /// How many times it changed holder.
    #[serde(default)]
    pub lease_transitions: u32,
}

impl Lease {
    pub(super) fn check(&self) -> Result<(), String> {
        if !(1..=MAX_DURATION_SECONDS).contains(&self.lease_duration_seconds) {
            return Err(format!(
                "leaseDurationSeconds: {} is outside 1..={MAX_DURATION_SECONDS}",
                self.lease_duration_seconds
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_or_huge_duration_is_refused_naming_the_field() {
        let lease = |s| Lease { lease_duration_seconds: s, ..Lease::default() };
        assert!(lease(15).check().is_ok());
        for bad in [0, MAX_DURATION_SECONDS + 1] {
            let e = lease(bad).check().unwrap_err();
            assert!(e.starts_with("leaseDurationSeconds:") && e.contains(&bad.to_string()), "{e}");
        }
    }
}
