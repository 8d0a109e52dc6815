//! Network policy, as Calico means it: Calico's NetworkPolicy and GlobalNetworkPolicy and
//! Kubernetes' NetworkPolicy (converted to a Calico policy at order 1000, `kube`) in one
//! model (`model`); policies apply in order (then by name); for each direction at an endpoint
//! the first Allow or Deny decides, Log goes on, Pass leaves the tier (tortie has one tier, so
//! the namespace's default, allow, decides); an endpoint some policy selects that no rule
//! decides for is denied; an endpoint no policy selects is allowed.
//!
//! `reference` evaluates the model directly; `compile` turns it into a [`Program`] (chains of
//! rules over address sets) that `interpret` evaluates and `dataplane::nftables::policy`
//! renders. `differential_tests` checks interpret(compile(x)) = reference(x).

pub mod calico;
pub mod compile;
pub mod incremental;
pub mod interpret;
pub mod ir;
pub mod kube;
mod matcher;
pub mod model;
pub mod reference;
pub mod trace;

#[cfg(test)]
mod differential_tests;
#[cfg(test)]
mod incremental_tests;
#[cfg(test)]
mod tests;

pub use compile::{Local, compile};
pub use ir::Program;
pub use model::{Direction, Endpoint, NamedPort, Namespaces, Packet, Policy, Verdict};
