//! Running code inside a network namespace from this process: a thread of
//! its own joins the namespace (setns affects only the calling thread),
//! runs the closure and ends, so no other thread ever changes namespace.

use nix::sched::{CloneFlags, setns};
use std::fs::File;

/// Runs `f` on a new thread that has joined the named network namespace
/// (`/run/netns/<name>`); sockets `f` opens belong to that namespace.
pub fn run_in_namespace<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    let file = File::open(format!("/run/netns/{name}"))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
