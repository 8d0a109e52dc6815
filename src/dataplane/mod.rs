//! The route programmer: owns the kernel routes carrying tortie's route
//! protocol number and keeps them equal to the desired state — dump, diff,
//! replace on start and on a timer; incremental, pipelined changes in
//! between; a netlink monitor that repairs drift within a second.
//!
//! Invariant: only routes with our protocol number in our table are ever
//! changed or deleted ([`netlink::RouteSocket::dump`] returns no others).

pub mod address;
mod forms;
mod lwt_bpf;
mod monitor;
pub mod netlink;
mod nexthops;
pub mod nftables;
pub mod programmer;
pub mod reconcile;
mod refusals;
pub mod route;
mod route_bytes;
mod snapshot;
pub mod sysctl;
mod table;
pub mod underlay;

pub use programmer::{Programmer, ProgrammerConfig, ProgrammerState, ProgrammerStats};
pub use route::{DesiredRoute, NextHop, Route, RouteKind, RouteOp, RouteTarget, XmitProgram};
