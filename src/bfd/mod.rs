//! Bidirectional Forwarding Detection (RFC 5880; single hop RFC 5881,
//! multihop RFC 5883): a dead neighbour noticed within a detection time
//! instead of a BGP hold time.
//!
//! - [`packet`]: the Control packet codec and the session-independent
//!   reception checks;
//! - [`session`]: one session as a pure state machine (events in, actions
//!   out) with its invariants.
//!
//! Asynchronous mode only; no Echo function, no authentication (packets
//! with the A bit are refused), the C bit always clear.

pub mod packet;
pub mod session;

pub use packet::{ControlPacket, DecodeError, Diagnostic, SessionState};
pub use session::{Action, Event, Intervals, Session, Timer};
