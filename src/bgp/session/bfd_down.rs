//! What a BFD failure means for the routes of a BGP peer (RFC 5882 section
//! 4.3.2, with graceful restart, RFC 4724).
//!
//! A peer whose BFD packets carried the C (Control Plane Independent) bit
//! runs BFD beside its forwarding plane: when such a BFD session goes down,
//! forwarding through the peer failed, and its routes must go at once. A
//! peer whose C bit was clear shares fate between BFD and its control
//! plane: BFD going down may be that control plane restarting while it
//! still forwards. If the peer offered graceful restart for a family the
//! session negotiated, we act as its helper, keeping its routes as stale for
//! its restart time, as if the connection had been lost without a
//! NOTIFICATION; otherwise its routes go at once.

/// True when BFD going down is treated as a possible restart of the peer's
/// control plane (keep its routes stale), false when it means forwarding
/// failed (remove them). Only when the session `opted_in`
/// (`PeerBfd::graceful_restart`): by default BFD down is a failure, as BIRD
/// and FRR treat it, since a node that dies looks exactly like one whose
/// agent restarts.
pub fn possible_restart(
    opted_in: bool,
    peer_control_plane_independent: bool,
    peer_offered_graceful_restart: bool,
) -> bool {
    opted_in && !peer_control_plane_independent && peer_offered_graceful_restart
}

#[cfg(test)]
mod tests {
    use super::possible_restart;

    #[test]
    fn only_a_shared_fate_peer_that_offered_graceful_restart_keeps_its_routes() {
        // C bit clear, graceful restart offered: maybe a control-plane restart.
        assert!(possible_restart(true, false, true));
        // C bit set: forwarding failed, whatever graceful restart says.
        assert!(!possible_restart(true, true, true));
        // No graceful restart: nothing to keep routes for.
        assert!(!possible_restart(true, false, false));
        assert!(!possible_restart(true, true, false));
        // Not asked for: BFD down is a failure.
        assert!(!possible_restart(false, false, true));
    }
}
