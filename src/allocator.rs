//! How many arenas glibc's allocator keeps for the agent.
//!
//! glibc gives each thread that allocates while the others' arenas are taken an arena of its
//! own, up to eight per core. An agent's allocating threads are tokio's workers, one per core,
//! and a few blocking threads; memory freed on another thread than the one that allocated it
//! goes back to the first one's arena, so many arenas each keep free memory of their own. One
//! arena per core keeps what the workers need (docs/scale.md: a reflector's anonymous peak
//! 0.95× with two arenas on two cores, a million routes converged no slower).
#![allow(unsafe_code)]

use std::ffi::OsStr;

/// The arena limit to set: one per core, unless the operator chose one with glibc's own
/// `MALLOC_ARENA_MAX` (which glibc has already applied).
pub fn arena_limit(from_environment: Option<&OsStr>, cores: usize) -> Option<i32> {
    if from_environment.is_some() {
        return None;
    }
    Some(i32::try_from(cores.max(1)).unwrap_or(i32::MAX))
}

/// Limits the arenas; to be called while the process has one thread (before the runtime
/// starts). Returns the limit set, if any.
pub fn limit_arenas() -> Option<i32> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let limit = arena_limit(std::env::var_os("MALLOC_ARENA_MAX").as_deref(), cores)?;
    // SAFETY: mallopt takes two integers and touches no memory of ours. glibc marks it
    // MT-Unsafe (other threads' arena code reads the tunable unlocked): it is called before
    // the runtime starts any thread, in `run_node`, where this process has one thread.
    let set = unsafe { libc::mallopt(libc::M_ARENA_MAX, limit) };
    (set == 1).then_some(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_arena_per_core_unless_the_environment_names_a_limit() {
        assert_eq!(arena_limit(None, 2), Some(2));
        assert_eq!(arena_limit(None, 0), Some(1), "no core count still allows one arena");
        assert_eq!(arena_limit(Some(OsStr::new("8")), 2), None, "the operator's MALLOC_ARENA_MAX stands");
        assert_eq!(arena_limit(None, usize::MAX), Some(i32::MAX));
    }
}
