//! The BGP speaker.
//!
//! - [`packet`]: the wire codec (RFC 4271 messages, capabilities, path
//!   attributes) with RFC 7606 error handling.
//! - [`session`]: the RFC 4271 FSM, OPEN negotiation and per-peer sessions.
//! - [`cli`]: `tortie bgp decode` / `tortie bgp encode`.

pub mod cli;
pub mod packet;
pub mod rib;
pub mod session;
