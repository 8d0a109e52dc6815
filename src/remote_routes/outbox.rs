//! The stage's side of the programmer's command channel. Routes go out at
//! most [`TURN_MAX`] at a time; a confirmation ([`RouteSink::applied`]) is
//! asked for once [`ACK_EVERY`] are unconfirmed; once the open requests
//! cover [`IN_FLIGHT_ROUTES`] the next send waits for the oldest. So at most
//! about `IN_FLIGHT_ROUTES + TURN_MAX + ACK_EVERY` routes of ours wait at the
//! programmer, and a slow kernel slows the stage and then the RIB's
//! coalescing change queue rather than filling channels.

use super::stage::{KINDS, RouteSink};
use crate::dataplane::DesiredRoute;
use crate::dataplane::programmer::CHUNK_OPS;
use ipnetwork::IpNetwork;
use std::collections::VecDeque;
use tokio::task::JoinHandle;

/// Changes collected in one turn: at most this many prefixes (give or take
/// one batch from the RIB), so routes stream into the kernel while more are
/// still being learned; also the most routes one `update_kinds` carries.
/// One programmer chunk: a turn fills the chunk the programmer writes next.
pub(super) const TURN_MAX: usize = CHUNK_OPS;

/// Routes queued at the programmer without confirmation before the stage
/// asks for one.
pub(super) const ACK_EVERY: usize = CHUNK_OPS / 8;

/// Routes covered by open confirmation requests before the stage waits for
/// the oldest: two of the programmer's chunks, one being written and the
/// next built meanwhile. Counted in routes, not requests: two requests open
/// allowed as few as two turns, the programmer wrote both in one chunk, and
/// the kernel then idled for every round trip.
pub(super) const IN_FLIGHT_ROUTES: usize = 2 * CHUNK_OPS;

pub(super) struct Outbox<S> {
    sink: S,
    /// Confirmation requests in flight, oldest first, with the routes each
    /// covers; each resolves once the routes sent before it are written.
    confirming: VecDeque<(JoinHandle<()>, usize)>,
    /// Routes sent since the last confirmation request.
    unconfirmed: usize,
    /// Routes covered by the requests in `confirming`.
    in_flight: usize,
}

impl<S: RouteSink> Outbox<S> {
    pub fn new(sink: S) -> Self {
        Outbox { sink, confirming: VecDeque::new(), unconfirmed: 0, in_flight: 0 }
    }

    pub async fn send(&mut self, mut routes: Vec<(IpNetwork, Option<DesiredRoute>)>) {
        while !routes.is_empty() {
            let rest = if routes.len() > TURN_MAX { routes.split_off(TURN_MAX) } else { Vec::new() };
            while self.in_flight >= IN_FLIGHT_ROUTES
                && let Some((oldest, covered)) = self.confirming.pop_front()
            {
                let _ = oldest.await;
                self.in_flight -= covered;
            }
            self.unconfirmed += routes.len();
            self.sink.update_kinds(KINDS.to_vec(), routes).await;
            if self.unconfirmed >= ACK_EVERY {
                let sink = self.sink.clone();
                self.confirming.push_back((tokio::spawn(async move { sink.applied().await }), self.unconfirmed));
                self.in_flight += self.unconfirmed;
                self.unconfirmed = 0;
            }
            routes = rest;
        }
    }
}
