//! Fault injection points, for the fault-injection tests (`tests/faults_*.rs`).
//!
//! `TORTIE_FAULTS` holds a comma-separated list of `ACTION:POINT`; code
//! marks a point with [`point`]. The actions: `panic` (the task that reaches
//! the point panics, as a bug would) and `stall` (it never leaves the point
//! and holds its thread, as a livelocked loop would). A point marked with
//! [`delay`] takes `delay-MS` instead: the task waits that many milliseconds
//! there (a slow task, to make a race window observable). Unset
//! (production), a point costs one load of an initialised `OnceLock`. A
//! point marked with [`refuses`] takes `refuse`: the code there produces
//! something its consumer refuses (a policy's nftables rules nft refuses).
//!
//! ```text
//! TORTIE_FAULTS=panic:rib tortie node ...      # the RIB task panics at its first command
//! TORTIE_FAULTS=stall:rib tortie node ...      # the RIB task hangs at its first command
//! TORTIE_FAULTS=delay-3000:policy tortie node ... # each policy change reaches nftables 3 s late
//! TORTIE_FAULTS=refuse:nft-policy:prod/bad ...   # policy prod/bad renders rules nft refuses
//! ```
//!
//! The points, by name (a test that arms one checks what the agent does):
//!
//! | point                 | where                                            |
//! |-----------------------|--------------------------------------------------|
//! | `rib`                 | the RIB task, on each command or peer event      |
//! | `programmer`          | the route programmer task, on each command       |
//! | `local-prefixes`      | the agent's local-prefix follower, on each pass  |
//! | `policy` (delay only) | the policy follower, before it sends a changed section |
//! | `nft-policy:NAME` (refuse only) | the nftables rules of model policy NAME (`ns/name`, `global/name`, `ns/knp.default.name`) |

use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable that arms fault points.
pub const VARIABLE: &str = "TORTIE_FAULTS";

/// What an armed point does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Panic,
    Stall,
    Delay(Duration),
    Refuse,
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
        .filter_map(|entry| {
            let (action, point) = entry.split_once(':')?;
            let delay = action.strip_prefix("delay-").and_then(|ms| ms.parse().ok()).map(Duration::from_millis);
            match (action, delay) {
                ("panic", _) => Some((Action::Panic, point.to_string())),
                ("stall", _) => Some((Action::Stall, point.to_string())),
                ("refuse", _) => Some((Action::Refuse, point.to_string())),
                (_, Some(d)) => Some((Action::Delay(d), point.to_string())),
                _ => None,
            }
            .or_else(|| {
                tracing::warn!(
                    variable = VARIABLE,
                    entry,
                    "unknown fault injection entry (use panic:POINT, stall:POINT, delay-MS:POINT or refuse:POINT)"
                );
                None
            })
        })
        .collect()
}

/// A fault injection point: does what `TORTIE_FAULTS` arms for `name`, if anything.
pub fn point(name: &str) {
    for (action, point) in armed() {
        if point == name {
            match action {
                Action::Panic => panic!("fault injected at {name} ({VARIABLE})"),
                Action::Delay(_) | Action::Refuse => {}
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

/// How long a point armed with `delay-MS` makes its task wait (the caller awaits it, so a
/// task on a shared runtime thread does not hold the thread).
pub fn delay(name: &str) -> Option<Duration> {
    armed().iter().find_map(|(action, point)| match action {
        Action::Delay(d) if point == name => Some(*d),
        _ => None,
    })
}

/// Whether the point `name` is armed with `refuse`.
pub fn refuses(name: &str) -> bool {
    armed().iter().any(|(action, point)| *action == Action::Refuse && point == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_parsed_and_unknown_ones_dropped() {
        assert_eq!(
            parse("panic:rib, stall:programmer,,hang:rib,delay-250:policy,delay-x:policy,refuse:nft-policy:a/b"),
            vec![
                (Action::Panic, "rib".to_string()),
                (Action::Stall, "programmer".to_string()),
                (Action::Delay(Duration::from_millis(250)), "policy".to_string()),
                (Action::Refuse, "nft-policy:a/b".to_string())
            ]
        );
        assert!(parse("").is_empty());
    }
}
