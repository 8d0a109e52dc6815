//! Network-namespace topologies: namespaces, veth links, bridges and the
//! processes running inside them — for integration tests and the lab runner.
//!
//! Everything a [`Topology`] creates carries a name unique to this process
//! (`tt-<pid>-<seq>-<label>`), is created directly inside its namespace (the
//! root namespace never sees a temporary interface), and is removed when the
//! topology is dropped — also while a test panics. Namespaces left behind by
//! a process that was killed outright are reaped by the next topology
//! created on the machine, identified by the dead process id in their name.

mod enter;
mod process;
mod topology;

pub use enter::{NamespaceThread, run_in_namespace, spawn_in_namespace};
pub use process::Process;
pub use topology::{CommandError, Topology, remove_namespace, run_output};

/// Prefix of every namespace this module creates.
pub const NETNS_PREFIX: &str = "tt-";
