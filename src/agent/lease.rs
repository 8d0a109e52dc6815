//! One agent at a time for a cluster-wide duty, by a [`Lease`] record renewed with
//! compare-and-swap (the shape of Kubernetes' leader election). The decision is pure
//! ([`Elector::decide`]); [`Elector::step`] reads and writes the record.
//!
//! Clocks need not agree: a candidate takes the lease over only once it has seen the record
//! unchanged for the lease's duration by its own clock, and a holder stops acting
//! [`HOLD_FRACTION`] of the duration after it *began* its last successful write. Every
//! candidate saw that write no earlier than it began, so no candidate takes over while the
//! holder still acts (the margin covers clocks running at slightly different rates).

use crate::datastore::resources::Lease;
use crate::datastore::{Datastore, DatastoreError, Revision};
use crate::ipam::claim::rfc3339_now;
use std::time::{Duration, Instant};

/// The share of the lease's duration a holder acts for after its last renewal began.
pub const HOLD_FRACTION: f64 = 0.9;

/// What to write next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// No lease yet: create it, held by us.
    Create(Lease),
    /// Renew ours, or take over an expired or released one, guarded by its revision.
    Update(Revision, Lease),
    /// Another node holds it and renews it.
    Wait,
}

/// One node's view of one lease.
#[derive(Debug)]
pub struct Elector {
    name: String,
    me: String,
    duration: Duration,
    /// The stored revision last seen, and when (our clock) it was first seen.
    observed: Option<(Revision, Instant)>,
    /// Until when we act as the holder.
    holding_until: Option<Instant>,
}

impl Elector {
    /// `name`: the lease record's; `me`: this node's; `duration`: how long a lease we write lasts.
    pub fn new(name: &str, me: &str, duration: Duration) -> Elector {
        Elector { name: name.to_string(), me: me.to_string(), duration, observed: None, holding_until: None }
    }

    /// What to do about the stored lease (`None`: there is none) at `now`; `wall` is the
    /// wall-clock time written for operators (`renewTime`, `acquireTime`).
    pub fn decide(&mut self, stored: Option<(&Lease, Revision)>, now: Instant, wall: &str) -> Step {
        let Some((lease, revision)) = stored else {
            return Step::Create(Lease {
                holder_identity: Some(self.me.clone()),
                lease_duration_seconds: self.duration_seconds(),
                acquire_time: Some(wall.to_string()),
                renew_time: Some(wall.to_string()),
                lease_transitions: 0,
            });
        };
        let first_seen = match self.observed {
            Some((seen, at)) if seen == revision => at,
            _ => {
                self.observed = Some((revision, now));
                now
            }
        };
        let holder = lease.holder_identity.as_deref().filter(|h| !h.is_empty());
        let mut next = lease.clone();
        next.lease_duration_seconds = self.duration_seconds();
        next.renew_time = Some(wall.to_string());
        if holder == Some(self.me.as_str()) {
            return Step::Update(revision, next);
        }
        let lapsed = now.duration_since(first_seen) >= Duration::from_secs(u64::from(lease.lease_duration_seconds));
        if holder.is_none() || lapsed {
            next.holder_identity = Some(self.me.clone());
            next.acquire_time = Some(wall.to_string());
            next.lease_transitions = lease.lease_transitions.saturating_add(1);
            return Step::Update(revision, next);
        }
        self.holding_until = None;
        Step::Wait
    }

    /// Records how the write of the last step, begun at `started`, went.
    pub fn written(&mut self, ok: bool, started: Instant) {
        self.holding_until = ok.then(|| started + self.duration.mul_f64(HOLD_FRACTION));
    }

    /// Until when we act as the holder (`None`: we do not hold the lease).
    pub fn holding_until(&self) -> Option<Instant> {
        self.holding_until
    }

    /// Whether we act as the holder at `now`.
    pub fn holds(&self, now: Instant) -> bool {
        self.holding_until.is_some_and(|until| now < until)
    }

    /// Reads the lease, writes what [`Elector::decide`] says, and returns whether we hold it.
    /// A datastore error leaves us holding only until our last renewal runs out.
    pub async fn step(&mut self, ds: &Datastore) -> bool {
        let started = Instant::now();
        let stored = match ds.get::<Lease>(&self.name).await {
            Ok(stored) => Some(stored),
            Err(DatastoreError::NotFound { .. }) => None,
            Err(e) => {
                tracing::debug!(subsys = "lease", lease = %self.name, error = %e, "cannot read the lease");
                return self.holds(Instant::now());
            }
        };
        let write = match self.decide(stored.as_ref().map(|s| (&s.spec, s.revision)), started, &rfc3339_now()) {
            Step::Create(lease) => ds.create(&self.name, &lease).await.map(|_| ()),
            Step::Update(revision, lease) => ds.update(&self.name, &lease, revision).await.map(|_| ()),
            Step::Wait => return false,
        };
        if let Err(e) = &write {
            tracing::debug!(subsys = "lease", lease = %self.name, error = %e, "lease write lost");
        }
        self.written(write.is_ok(), started);
        self.holds(Instant::now())
    }

    fn duration_seconds(&self) -> u32 {
        u32::try_from(self.duration.as_secs().max(1)).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn held_by(holder: &str) -> Lease {
        Lease { holder_identity: Some(holder.into()), lease_duration_seconds: 15, ..Lease::default() }
    }

    fn holder_of(step: &Step) -> Option<&str> {
        match step {
            Step::Create(l) | Step::Update(_, l) => l.holder_identity.as_deref(),
            Step::Wait => None,
        }
    }

    #[test]
    fn no_lease_is_created_held_by_us() {
        let mut e = Elector::new("lb", "a", D);
        let step = e.decide(None, Instant::now(), "t0");
        assert_eq!(holder_of(&step), Some("a"));
        let Step::Create(lease) = step else { panic!("{step:?}") };
        assert_eq!((lease.lease_duration_seconds, lease.renew_time.as_deref()), (15, Some("t0")));
    }

    #[test]
    fn our_lease_is_renewed_on_its_revision() {
        let mut e = Elector::new("lb", "a", D);
        let step = e.decide(Some((&held_by("a"), Revision(7))), Instant::now(), "t1");
        let Step::Update(Revision(7), lease) = step else { panic!("{step:?}") };
        assert_eq!((lease.holder_identity.as_deref(), lease.lease_transitions), (Some("a"), 0));
    }

    #[test]
    fn anothers_lease_is_taken_only_after_a_whole_duration_unchanged_by_our_clock() {
        let mut e = Elector::new("lb", "b", D);
        let t0 = Instant::now();
        let lease = held_by("a");
        assert_eq!(e.decide(Some((&lease, Revision(1))), t0, "w"), Step::Wait);
        assert_eq!(e.decide(Some((&lease, Revision(1))), t0 + D - Duration::from_millis(1), "w"), Step::Wait);
        // A renewal (new revision) restarts the count.
        assert_eq!(e.decide(Some((&lease, Revision(2))), t0 + D, "w"), Step::Wait);
        assert_eq!(e.decide(Some((&lease, Revision(2))), t0 + D + D / 2, "w"), Step::Wait);
        let step = e.decide(Some((&lease, Revision(2))), t0 + D + D, "w");
        assert_eq!(holder_of(&step), Some("b"));
        let Step::Update(Revision(2), taken) = step else { panic!("{step:?}") };
        assert_eq!(taken.lease_transitions, 1);
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut e = Elector::new("lb", "b", D);
        let released = Lease { holder_identity: None, ..held_by("a") };
        assert_eq!(holder_of(&e.decide(Some((&released, Revision(3))), Instant::now(), "w")), Some("b"));
    }

    #[test]
    fn a_holder_stops_acting_before_any_candidate_may_take_over() {
        let mut holder = Elector::new("lb", "a", D);
        let mut candidate = Elector::new("lb", "b", D);
        let begun = Instant::now();
        let _ = holder.decide(Some((&held_by("a"), Revision(1))), begun, "w");
        holder.written(true, begun);
        // The candidate sees the renewal no earlier than it was begun.
        let seen = begun + Duration::from_millis(5);
        assert_eq!(candidate.decide(Some((&held_by("a"), Revision(2))), seen, "w"), Step::Wait);
        let takeover = seen + D;
        assert!(holder.holds(begun + D / 2));
        assert!(!holder.holds(takeover), "the holder still acts when the candidate may take over");
        assert!(matches!(candidate.decide(Some((&held_by("a"), Revision(2))), takeover, "w"), Step::Update(..)));
    }

    #[test]
    fn a_lost_write_or_anothers_renewal_means_not_holding() {
        let mut e = Elector::new("lb", "a", D);
        let t = Instant::now();
        e.written(true, t);
        assert!(e.holds(t));
        e.written(false, t);
        assert!(!e.holds(t));
        e.written(true, t);
        assert_eq!(e.decide(Some((&held_by("z"), Revision(9))), t, "w"), Step::Wait);
        assert!(!e.holds(t));
    }
}
