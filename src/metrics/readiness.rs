//! Readiness, by Calico's rule for BIRD: during a start-up window every
//! configured peer must be Established; afterwards at least one; with no
//! peers at all the node is ready. The dataplane must have synced, and the
//! last datastore write must have succeeded. The
//! reasons are returned so `/readyz` can say why, and nobody has to
//! comment out a probe to find out.

use std::time::Duration;

/// How long after start every peer must be up (Calico: 30 s).
pub const STARTUP_WINDOW: Duration = Duration::from_secs(30);

/// What readiness is judged on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthInput {
    /// True after the first full route reconcile.
    pub dataplane_synced: bool,
    /// Every configured peer: (address, established).
    pub peers: Vec<(String, bool)>,
    /// Why the last datastore write failed; `None` once one succeeded.
    pub datastore_unwritable: Option<String>,
    /// Plugins the CNI conflist chains that are absent from the CNI bin directory (full paths).
    pub missing_cni_plugins: Vec<String>,
}

/// `Ok` when ready; otherwise every reason it is not.
pub fn readiness(input: &HealthInput, uptime: Duration) -> Result<(), Vec<String>> {
    let mut reasons = Vec::new();
    if !input.dataplane_synced {
        reasons.push("the dataplane has not completed its first route sync".to_string());
    }
    let down: Vec<&str> = input.peers.iter().filter(|(_, up)| !up).map(|(a, _)| a.as_str()).collect();
    if !input.peers.is_empty() {
        if uptime < STARTUP_WINDOW && !down.is_empty() {
            reasons.push(format!(
                "BGP peers not yet established (all must be during the first {}s): {}",
                STARTUP_WINDOW.as_secs(),
                down.join(", ")
            ));
        } else if down.len() == input.peers.len() {
            reasons.push(format!("no BGP peer is established: {}", down.join(", ")));
        }
    }
    if let Some(reason) = &input.datastore_unwritable {
        reasons.push(format!("datastore unwritable (the last write failed): {reason}"));
    }
    if !input.missing_cni_plugins.is_empty() {
        reasons.push(format!(
            "CNI plugins the conflist chains are missing (pods would fail to start): {}",
            input.missing_cni_plugins.join(", ")
        ));
    }
    if reasons.is_empty() { Ok(()) } else { Err(reasons) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(synced: bool, peers: &[(&str, bool)]) -> HealthInput {
        HealthInput {
            dataplane_synced: synced,
            peers: peers.iter().map(|(a, u)| (a.to_string(), *u)).collect(),
            datastore_unwritable: None,
            missing_cni_plugins: Vec::new(),
        }
    }

    #[test]
    fn a_missing_chained_cni_plugin_is_not_ready_naming_it() {
        let mut missing = input(true, &[]);
        missing.missing_cni_plugins = vec!["/opt/cni/bin/portmap".into()];
        let err = readiness(&missing, Duration::from_secs(60)).unwrap_err();
        assert_eq!(
            err,
            vec!["CNI plugins the conflist chains are missing (pods would fail to start): /opt/cni/bin/portmap"]
        );
    }

    #[test]
    fn a_failed_datastore_write_is_not_ready_with_its_cause() {
        let mut failed = input(true, &[]);
        failed.datastore_unwritable = Some("datastore unavailable: connection refused".into());
        let err = readiness(&failed, Duration::from_secs(60)).unwrap_err();
        assert_eq!(
            err,
            vec!["datastore unwritable (the last write failed): datastore unavailable: connection refused"]
        );
    }

    #[test]
    fn no_peers_is_ready_once_the_dataplane_synced() {
        assert!(readiness(&input(true, &[]), Duration::ZERO).is_ok());
        let err = readiness(&input(false, &[]), Duration::ZERO).unwrap_err();
        assert!(err[0].contains("dataplane"), "{err:?}");
    }

    #[test]
    fn during_startup_every_peer_must_be_up_afterwards_one_suffices() {
        let peers = [("10.0.0.1", true), ("10.0.0.2", false)];
        let err = readiness(&input(true, &peers), Duration::from_secs(5)).unwrap_err();
        assert!(err[0].contains("10.0.0.2") && !err[0].contains("10.0.0.1"), "{err:?}");
        assert!(readiness(&input(true, &peers), Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn the_only_peer_down_names_the_peer() {
        let err = readiness(&input(true, &[("192.0.2.1", false)]), Duration::from_secs(60)).unwrap_err();
        assert_eq!(err, vec!["no BGP peer is established: 192.0.2.1".to_string()]);
    }
}
