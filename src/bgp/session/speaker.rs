//! The speaker: the set of peer tasks and the listener. Peers are added,
//! changed and removed at run time; each change touches only its own peer.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::sync::{mpsc, watch};

use super::config::{PeerBfd, PeerConfig};
use super::listener::ListenerHandle;
use super::peer::{PeerCommand, PeerEvent, PeerHandle, spawn_peer};
use super::status::PeerStatus;
use crate::bfd::{Bfd, BfdSession, Hops, SessionSpec};
use crate::bgp::packet::Family;

/// Why a speaker operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    #[error("peer {0} is already configured")]
    Duplicate(IpAddr),
    #[error("peer {0} is not configured")]
    Unknown(IpAddr),
    #[error("the task of peer {0} has ended")]
    Gone(IpAddr),
    #[error("listening socket: {0}")]
    Io(#[from] io::Error),
}

/// The BGP speaker's peers.
pub struct Speaker {
    peers: HashMap<IpAddr, PeerHandle>,
    /// Each peer's configuration, for a new listener ([`Speaker::relisten`]).
    configs: HashMap<IpAddr, PeerConfig>,
    listener: Option<ListenerHandle>,
    events: mpsc::Sender<PeerEvent>,
    /// The BFD service, started with the first peer that asks for BFD.
    bfd: Option<Bfd>,
    /// The BFD sessions of the peers that ask for one.
    bfd_sessions: HashMap<IpAddr, BfdSession>,
}

impl Speaker {
    /// A speaker listening on `listen` (none: outbound sessions only).
    /// Every peer reports to `events`.
    pub fn new(listen: Option<SocketAddr>, events: mpsc::Sender<PeerEvent>) -> io::Result<Self> {
        let listener = listen.map(ListenerHandle::start).transpose()?;
        Ok(Speaker {
            peers: HashMap::new(),
            configs: HashMap::new(),
            listener,
            events,
            bfd: None,
            bfd_sessions: HashMap::new(),
        })
    }

    /// The bound listening address (with the port the system chose for port 0).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().map(ListenerHandle::local_addr)
    }

    /// Adds a peer and starts its session.
    pub async fn add_peer(&mut self, config: PeerConfig) -> Result<watch::Receiver<PeerStatus>, SpeakerError> {
        let addr = config.remote_addr;
        if self.peers.contains_key(&addr) {
            return Err(SpeakerError::Duplicate(addr));
        }
        let bfd = match config.bfd {
            Some(settings) => Some(self.start_bfd(&config, settings).await?),
            None => None,
        };
        let handle = spawn_peer(config.clone(), self.events.clone(), bfd);
        if let Some(listener) = &self.listener {
            listener.add(config.clone(), handle.commands.clone()).await?;
        }
        self.configs.insert(addr, config);
        handle.commands.send_async(PeerCommand::Start).await.map_err(|_| SpeakerError::Gone(addr))?;
        let status = handle.status.clone();
        self.peers.insert(addr, handle);
        Ok(status)
    }

    /// Replaces a peer's configuration; its session restarts if it was up.
    pub async fn change_peer(&mut self, config: PeerConfig) -> Result<(), SpeakerError> {
        let addr = config.remote_addr;
        let handle = self.peers.get(&addr).ok_or(SpeakerError::Unknown(addr))?;
        if let Some(listener) = &self.listener {
            listener.add(config.clone(), handle.commands.clone()).await?;
        }
        let old = self.configs.insert(addr, config.clone());
        let old_bfd = old.as_ref().and_then(|c| c.bfd);
        // A change of BFD alone leaves the BGP session as it is, except a change of what BFD down
        // does to the peer's routes, which the peer task reads from its configuration.
        let graceful = |c: &PeerConfig| c.bfd.is_some_and(|b| b.graceful_restart);
        let bgp_changed = old.is_none_or(|mut old| {
            let graceful_changed = graceful(&old) != graceful(&config);
            old.bfd = config.bfd;
            old != config || graceful_changed
        });
        match (old_bfd, config.bfd) {
            (Some(old), Some(new)) if (old.multihop, old.passive) == (new.multihop, new.passive) => {
                // New intervals go through a Poll Sequence: no flap.
                if let Some(session) = self.bfd_sessions.get(&addr) {
                    session.set_intervals(new.intervals).await;
                }
            }
            (old, new) if old != new => {
                self.bfd_sessions.remove(&addr);
                let bfd = match new {
                    Some(settings) => Some(self.start_bfd(&config, settings).await?),
                    None => None,
                };
                self.command(addr, PeerCommand::SetBfd(bfd)).await?;
            }
            _ => {}
        }
        if !bgp_changed {
            return Ok(());
        }
        self.command(addr, PeerCommand::Reconfigure(Box::new(config))).await
    }

    /// Starts the BFD session of a peer (and the BFD service, the first time).
    async fn start_bfd(
        &mut self,
        config: &PeerConfig,
        settings: PeerBfd,
    ) -> Result<tokio::sync::watch::Receiver<crate::bfd::SessionStatus>, SpeakerError> {
        let bfd = match &self.bfd {
            Some(bfd) => bfd.clone(),
            None => self.bfd.insert(Bfd::start()?).clone(),
        };
        let spec = SessionSpec {
            peer: config.remote_addr,
            local: config.local_addr,
            hops: if settings.multihop { Hops::Multi } else { Hops::Single },
            intervals: settings.intervals,
            passive: settings.passive,
        };
        let session = bfd.add(spec).await?;
        let status = session.status();
        self.bfd_sessions.insert(config.remote_addr, session);
        Ok(status)
    }

    /// Restarts a peer's session (Cease, Other Configuration Change) with its configuration as it
    /// is, so the peer sends its routes again: what is accepted from it changed.
    pub async fn restart_session(&self, addr: IpAddr) -> Result<(), SpeakerError> {
        let config = self.configs.get(&addr).cloned().ok_or(SpeakerError::Unknown(addr))?;
        self.command(addr, PeerCommand::Reconfigure(Box::new(config))).await
    }

    /// Removes a peer: its session ends with Cease / Peer De-configured.
    pub async fn remove_peer(&mut self, addr: IpAddr) -> Result<(), SpeakerError> {
        let handle = self.peers.remove(&addr).ok_or(SpeakerError::Unknown(addr))?;
        self.configs.remove(&addr);
        self.bfd_sessions.remove(&addr);
        if let Some(listener) = &self.listener {
            listener.remove(addr).await;
        }
        let PeerHandle { commands, task, .. } = handle;
        drop(commands);
        // The task ends once it has sent its NOTIFICATION.
        let _ = task.await;
        Ok(())
    }

    /// Administrative shutdown with an RFC 8203 message; the peer stays configured.
    pub async fn shutdown_peer(&self, addr: IpAddr, message: &str) -> Result<(), SpeakerError> {
        self.command(addr, PeerCommand::Stop { message: message.to_string() }).await
    }

    /// Starts a peer again after [`Speaker::shutdown_peer`].
    pub async fn start_peer(&self, addr: IpAddr) -> Result<(), SpeakerError> {
        self.command(addr, PeerCommand::Start).await
    }

    /// Ends every session without a NOTIFICATION (the agent stops and will
    /// restart: peers that negotiated graceful restart keep our routes).
    pub async fn abandon_all(&mut self) {
        if let Some(listener) = &self.listener {
            for addr in self.peers.keys() {
                listener.remove(*addr).await;
            }
        }
        self.configs.clear();
        for (_, handle) in self.peers.drain() {
            let PeerHandle { commands, task, .. } = handle;
            if commands.send_async(PeerCommand::Abandon).await.is_ok() {
                let _ = task.await;
            }
        }
    }

    /// Moves the listening socket to `listen`, knowing every peer (and its TCP-MD5 key). The
    /// old socket closes first, so the same port on another address (a bind mode change) can be
    /// bound; when the new address cannot be, the old one is bound again and the error returned.
    /// Established sessions are not affected.
    pub async fn relisten(&mut self, listen: SocketAddr) -> Result<SocketAddr, SpeakerError> {
        let old = self.listener.take();
        let old_addr = old.as_ref().map(ListenerHandle::local_addr);
        if let Some(old) = old {
            old.stop().await;
        }
        let listener = match ListenerHandle::start(listen) {
            Ok(listener) => listener,
            Err(e) => {
                self.listener = old_addr.and_then(|a| ListenerHandle::start(a).ok());
                self.register_all().await?;
                return Err(e.into());
            }
        };
        self.listener = Some(listener);
        self.register_all().await?;
        Ok(self.listen_addr().unwrap_or(listen))
    }

    /// Tells the listener about every peer.
    async fn register_all(&self) -> Result<(), SpeakerError> {
        let Some(listener) = &self.listener else { return Ok(()) };
        for (addr, handle) in &self.peers {
            if let Some(config) = self.configs.get(addr) {
                listener.add(config.clone(), handle.commands.clone()).await?;
            }
        }
        Ok(())
    }

    /// Asks the peer to resend a family (route refresh).
    pub async fn request_refresh(&self, addr: IpAddr, family: Family) -> Result<(), SpeakerError> {
        self.command(addr, PeerCommand::RequestRefresh(family)).await
    }

    pub fn status(&self, addr: IpAddr) -> Option<watch::Receiver<PeerStatus>> {
        self.peers.get(&addr).map(|handle| handle.status.clone())
    }

    /// Where to send UPDATEs for a peer (sent once Established).
    pub fn outbound(&self, addr: IpAddr) -> Option<mpsc::Sender<super::Outbound>> {
        self.peers.get(&addr).map(|handle| handle.outbound.clone())
    }

    pub fn peers(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.peers.keys().copied()
    }

    async fn command(&self, addr: IpAddr, command: PeerCommand) -> Result<(), SpeakerError> {
        let handle = self.peers.get(&addr).ok_or(SpeakerError::Unknown(addr))?;
        handle.commands.send_async(command).await.map_err(|_| SpeakerError::Gone(addr))
    }
}
