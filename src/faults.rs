//! Fault injection points, for the fault-injection tests (`tests/faults_*.rs`).
//!
//! `TORTIE_FAULTS` holds a comma-separated list of `ACTION:POINT`; code
//! marks a point with [`point`]. The actions: `panic` (the task that reaches
//! the point panics, as a bug would) and `stall` (it never leaves the point
//! and holds its thread, as a livelocked loop would). Unset (production), a
//! point costs one load of an initialised `OnceLock`.
//!
//! ```text
//! TORTIE_FAULTS=panic:rib tortie node ...      # the RIB task panics at its first command
//! TORTIE_FAULTS=stall:rib tortie node ...      # the RIB task hangs at its first command
//! ```
//!
//! The points, by name (a test that arms one checks what the agent does):
//!
//! | point                 | where                                            |
//! |-----------------------|--------------------------------------------------|
//! | `rib`                 | the RIB task, on each command or peer event      |
//! | `programmer`          | the route programmer task, on each command       |
//! | `local-prefixes`      | the agent's local-prefix follower, on each pass  |

use std::sync::OnceLock;

/// The environment variable that arms fault points.
pub const VARIABLE: &str = "TORTIE_FAULTS";

/// What an armed point does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Panic,
    Stall,
}

fn armed() -> &'static [(Action, String)] {
    static ARMED: OnceLock<Vec<(Action, String)>> = OnceLock::new();
    ARMED.get_or_init(|| std::env::var(VARIABLE).map(|v| parse(&v)).unwrap_or_default())
}

/// `panic:rib,stall:programmer` → the armed points; unknown actions are ignored
/// with a warning (this is a test hook, not configuration).
fn parse(value: &str) -> Vec<(Action, String)> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|entry| match entry.split_once(':') {
            Some(("panic", point)) => Some((Action::Panic, point.to_string())),
            Some(("stall", point)) => Some((Action::Stall, point.to_string())),
            _ => {
                tracing::warn!(
                    variable = VARIABLE,
                    entry,
                    "unknown fault injection entry (use panic:POINT or stall:POINT)"
                );
                None
            }
        })
        .collect()
}

/// A fault injection point: does what `TORTIE_FAULTS` arms for `name`, if anything.
pub fn point(name: &str) {
    for (action, point) in armed() {
        if point == name {
            match action {
                Action::Panic => panic!("fault injected at {name} ({VARIABLE})"),
                Action::Stall => {
                    tracing::warn!(point = name, variable = VARIABLE, "fault injected: stalling here for good");
                    loop {
                        std::thread::park();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_parsed_and_unknown_ones_dropped() {
        assert_eq!(
            parse("panic:rib, stall:programmer,,hang:rib"),
            vec![(Action::Panic, "rib".to_string()), (Action::Stall, "programmer".to_string())]
        );
        assert!(parse("").is_empty());
    }
}
