//! Repeats of a Node's event folded into one Kubernetes Event, as the kubelet's recorder does:
//! the same reason and message within [`AGGREGATE_WINDOW`] raise the Event's `count` and
//! `lastTimestamp` (one PATCH at most every [`MIN_PATCH_GAP`]) instead of creating another.
//! Pure: occurrences and instants in, the writes due out.

use super::events::NodeEvent;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A repeat within this time of the last occurrence counts on the same Event.
pub const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);
/// The shortest time between two writes of one Event.
pub const MIN_PATCH_GAP: Duration = Duration::from_secs(10);

/// One Event as written so far, and what is still to write.
#[derive(Debug)]
struct Entry {
    /// The Event's object name once created.
    name: Option<String>,
    count: u32,
    written_count: u32,
    first: u64,
    last: u64,
    last_seen: Instant,
    written_at: Option<Instant>,
}

/// A write the aggregator asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventWrite {
    Create { name: String, event: NodeEvent, count: u32, first: u64, last: u64 },
    Patch { name: String, event: NodeEvent, count: u32, last: u64 },
}

/// Repeats of an event folded into one Event with a count.
#[derive(Debug, Default)]
pub struct Aggregator {
    entries: HashMap<NodeEvent, Entry>,
    /// Distinguishes the names of Events created in the same second.
    created: u64,
}

impl Entry {
    /// A new Event's entry, first seen at `unix` / `at`, not yet written.
    fn new(unix: u64, at: Instant) -> Entry {
        Entry { name: None, count: 0, written_count: 0, first: unix, last: unix, last_seen: at, written_at: None }
    }
}

impl Aggregator {
    /// Notes one occurrence of `event` at `unix` (seconds) / `at`.
    pub fn record(&mut self, event: NodeEvent, unix: u64, at: Instant) {
        let entry = self.entries.entry(event).or_insert_with(|| Entry::new(unix, at));
        if entry.name.is_some() && at.saturating_duration_since(entry.last_seen) > AGGREGATE_WINDOW {
            // Too long ago: a new Event.
            *entry = Entry::new(unix, at);
        }
        entry.count += 1;
        entry.last = unix;
        entry.last_seen = at;
    }

    /// The writes due at `at` for node `node`: new Events at once, counts of existing ones at
    /// most every [`MIN_PATCH_GAP`]. Each is taken as done (a failed write is not retried).
    pub fn due(&mut self, node: &str, at: Instant) -> Vec<EventWrite> {
        let mut writes = Vec::new();
        for (event, entry) in &mut self.entries {
            if entry.count == entry.written_count {
                continue;
            }
            match &entry.name {
                None => {
                    self.created += 1;
                    let name = format!("{node}.{:x}.{:x}", entry.first, self.created);
                    writes.push(EventWrite::Create {
                        name: name.clone(),
                        event: event.clone(),
                        count: entry.count,
                        first: entry.first,
                        last: entry.last,
                    });
                    entry.name = Some(name);
                }
                Some(name) if entry.written_at.is_none_or(|w| at.saturating_duration_since(w) >= MIN_PATCH_GAP) => {
                    writes.push(EventWrite::Patch {
                        name: name.clone(),
                        event: event.clone(),
                        count: entry.count,
                        last: entry.last,
                    });
                }
                Some(_) => continue,
            }
            entry.written_count = entry.count;
            entry.written_at = Some(at);
        }
        // Forget what can no longer be aggregated.
        self.entries.retain(|_, e| at.saturating_duration_since(e.last_seen) <= AGGREGATE_WINDOW);
        writes.sort_by(|a, b| write_name(a).cmp(write_name(b)));
        writes
    }
}

fn write_name(w: &EventWrite) -> &str {
    match w {
        EventWrite::Create { name, .. } | EventWrite::Patch { name, .. } => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_counted_on_one_event_patched_at_most_every_gap() {
        let event = NodeEvent::warning("DataplaneFailure", "refused".into());
        let t0 = Instant::now();
        let mut a = Aggregator::default();
        a.record(event.clone(), 1000, t0);
        let writes = a.due("n1", t0);
        let [EventWrite::Create { name, count: 1, first: 1000, .. }] = writes.as_slice() else { panic!("{writes:?}") };
        let name = name.clone();
        assert!(a.due("n1", t0).is_empty(), "nothing new");
        a.record(event.clone(), 1001, t0 + Duration::from_secs(1));
        a.record(event.clone(), 1002, t0 + Duration::from_secs(2));
        assert!(a.due("n1", t0 + Duration::from_secs(2)).is_empty(), "within the gap");
        let writes = a.due("n1", t0 + MIN_PATCH_GAP);
        assert_eq!(writes, [EventWrite::Patch { name: name.clone(), event: event.clone(), count: 3, last: 1002 }]);
        // Long after: a new Event.
        let later = t0 + MIN_PATCH_GAP + AGGREGATE_WINDOW + Duration::from_secs(1);
        a.record(event.clone(), 5000, later);
        let writes = a.due("n1", later);
        assert!(matches!(&writes[..], [EventWrite::Create { name: n, count: 1, .. }] if *n != name), "{writes:?}");
    }
}
