//! BGP sessions.
//!
//! - [`fsm`]: the pure RFC 4271 finite state machine (event in, actions out);
//! - [`negotiate`]: our OPEN and the checks of the peer's;
//! - [`peer`]: the per-peer task that owns the FSM, the connection and the timers;
//! - [`bfd_down`]: whether a BFD failure keeps a peer's routes (RFC 5882 4.3.2);
//! - [`connection`]: a connection's reader and writer tasks, the send queue
//!   and the send hold timer;
//! - [`listener`]: the task that accepts connections for configured peers;
//! - [`speaker`]: adding, changing and removing peers at run time;
//! - [`as4`]: AS_TRANS and AS4_PATH toward and from 2-octet peers;
//! - [`transport`] and [`sockopt`]: sockets with TCP-MD5, TTL and GTSM.

pub mod as4;
pub mod bfd_down;
pub mod config;
pub mod connection;
pub mod fsm;
pub mod listener;
pub mod negotiate;
pub mod outbound;
pub mod peer;
pub mod received;
pub mod refused;
pub mod sockopt;
pub mod speaker;
pub mod status;
pub mod transport;

pub use config::PeerConfig;
pub use fsm::{Action, DownReason, Event, Fsm, State, Timer};
pub use negotiate::{Negotiated, local_open, negotiate};
pub use outbound::Outbound;
pub use peer::{PeerCommand, PeerEvent, PeerHandle, spawn_peer};
pub use speaker::{Speaker, SpeakerError};
pub use status::{MessageCounts, NotificationSummary, PeerStatus};
