//! Bidirectional Forwarding Detection (RFC 5880; single hop RFC 5881,
//! multihop RFC 5883): a dead neighbour noticed within a detection time
//! instead of a BGP hold time.
//!
//! - [`packet`]: the Control packet codec and the session-independent
//!   reception checks;
//! - [`session`]: one session as a pure state machine (events in, actions
//!   out) with its invariants;
//! - [`transport`]: the UDP sockets (ports 3784 and 4784, TTL 255 sent and
//!   checked, source ports 49152–65535);
//! - [`demux`]: the service ([`Bfd`]): listening sockets shared by every
//!   session, their reader tasks, the demultiplexer task owning the table
//!   of sessions;
//! - [`task`]: one task per session owning its state machine, sending
//!   socket and timers, publishing a [`SessionStatus`].
//!
//! Asynchronous mode only; no Echo function, no authentication (packets
//! with the A bit are refused), the C bit always clear.

pub mod demux;
pub mod packet;
pub mod session;
pub mod task;
pub mod transport;

pub use demux::{Bfd, BfdSession, ReceiveStats, SessionSpec};
pub use task::{Dropped, DroppedCounts, SessionCommand, SessionStatus};
pub use transport::Hops;

pub use packet::{ControlPacket, DecodeError, Diagnostic, SessionState};
pub use session::{Action, Event, Intervals, Session, Timer};
