//! BGP sessions.
//!
//! - [`fsm`]: the pure RFC 4271 finite state machine (event in, actions out);
//! - [`negotiate`]: our OPEN and the checks of the peer's;
//! - [`config`]: what one peer's session is configured with.

pub mod config;
pub mod fsm;
pub mod negotiate;

pub use config::PeerConfig;
pub use fsm::{Action, DownReason, Event, Fsm, State, Timer};
pub use negotiate::{Negotiated, local_open, negotiate};
