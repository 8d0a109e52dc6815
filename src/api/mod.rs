//! The agent's local API: HTTP/1.1 over a unix socket, never on the network.
//! `tortie status`, `tortie bgp`, `tortie policy`, `tortie ipam …` and the CNI
//! plugin talk to it. Operators can use it directly:
//! `curl --unix-socket /run/tortie/tortie.sock http://tortie/v1/status`.
//!
//! Schemas are documented in `docs/status-json.md`.

pub mod client;
pub mod connections;
pub mod ipam;
pub mod policy;
pub mod server;
pub mod status;
pub mod workloads;

pub use status::{PeerStatus, StatusReport};
