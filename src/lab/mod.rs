//! The lab runner: containerlab topology files (`*.clab.yml`) built from
//! network namespaces, veth pairs and bridges, without Docker.
//!
//! How containerlab's concepts map here (see docs/lab.md):
//! - a `linux` node is a namespace `clab-<lab>-<node>`; its image picks
//!   the program (tortie, FRR, BIRD) or none, `cmd` overrides it;
//! - `bridge` nodes and `host:` endpoints live in a namespace
//!   `clab-<lab>-host` that stands in for the machine's root namespace;
//! - `binds` are mapped to program arguments, not mounted;
//! - the lab directory `clab-<lab>/` next to the file holds logs, pid
//!   files and sockets.

pub mod graph;
pub mod inspect;
pub mod plan;
pub mod pod;
pub mod runner;
pub mod topology;

pub use plan::{LabPlan, load};
pub use runner::{LabError, down, exec, up};
