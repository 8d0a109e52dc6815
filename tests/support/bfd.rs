//! Running tortie's BFD service inside a test namespace and watching its
//! sessions from the (synchronous) test thread.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tortie::bfd::{Bfd, SessionCommand, SessionSpec, SessionState, SessionStatus};
use tortie::netns::{NamespaceThread, spawn_in_namespace};
use tortie::testing::wait_until;

/// tortie's BFD service with some sessions, in a namespace.
pub struct TortieBfd {
    _thread: NamespaceThread,
    statuses: Vec<watch::Receiver<SessionStatus>>,
    control: mpsc::Sender<(usize, SessionCommand)>,
}

impl TortieBfd {
    pub fn start(ns: &str, specs: Vec<SessionSpec>) -> Self {
        let (ready, statuses) = std::sync::mpsc::channel();
        let (control, mut control_rx) = mpsc::channel::<(usize, SessionCommand)>(16);
        let thread = spawn_in_namespace(ns, move |mut stop| async move {
            let bfd = Bfd::start().expect("BFD listens");
            let mut sessions = Vec::new();
            for spec in specs {
                sessions.push(bfd.add(spec).await.expect("the session starts"));
            }
            ready.send(sessions.iter().map(|s| s.status()).collect::<Vec<_>>()).unwrap();
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    Some((i, command)) = control_rx.recv() => match command {
                        SessionCommand::SetIntervals(intervals) => sessions[i].set_intervals(intervals).await,
                        SessionCommand::AdminDown => sessions[i].admin_down().await,
                        SessionCommand::AdminUp => sessions[i].admin_up().await,
                    },
                }
            }
        })
        .expect("a thread in the namespace");
        let statuses = statuses.recv_timeout(Duration::from_secs(10)).expect("the sessions start");
        TortieBfd { _thread: thread, statuses, control }
    }

    pub fn status(&self, session: usize) -> SessionStatus {
        self.statuses[session].borrow().clone()
    }

    pub fn command(&self, session: usize, command: SessionCommand) {
        self.control.blocking_send((session, command)).unwrap();
    }

    /// Waits for `session` to reach `state`; returns its status then.
    pub fn wait_state(&self, session: usize, state: SessionState, timeout: Duration) -> Result<SessionStatus, String> {
        wait_until(&format!("BFD session {session} {}", state.name()), timeout, || {
            let status = self.status(session);
            (status.state == state).then_some(status)
        })
        .map_err(|e| format!("{e}; last status {:?}", self.status(session)))
    }
}
