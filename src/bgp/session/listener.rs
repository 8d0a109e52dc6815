//! The listener task: accepts BGP connections and hands each to the peer
//! task of its remote address. It alone owns the listening socket and the
//! table of configured peers; connections from any other address are closed
//! at once.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::SockRef;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::config::PeerConfig;
use super::peer::PeerCommand;
use super::refused::{Reason, RefusedLog};
use super::transport;

/// Capacity of the listener's control channel: peer set changes are rare.
const CONTROL_CAPACITY: usize = 16;

enum Control {
    Add { config: Box<PeerConfig>, commands: flume::Sender<PeerCommand>, done: oneshot::Sender<io::Result<()>> },
    Remove { addr: IpAddr },
}

/// The owner's side of the listener task; dropping it stops the task.
pub struct ListenerHandle {
    control: mpsc::Sender<Control>,
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ListenerHandle {
    /// Binds `address` and starts accepting.
    pub fn start(address: SocketAddr) -> io::Result<Self> {
        let listener = transport::listen(address)?;
        let local_addr = listener.local_addr()?;
        let (control, rx) = mpsc::channel(CONTROL_CAPACITY);
        let task = tokio::spawn(run(listener, rx));
        Ok(ListenerHandle { control, local_addr, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the task and waits until its socket is closed.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Accepts connections from `config.remote_addr` from now on (setting its
    /// TCP-MD5 key on the listening socket first).
    pub async fn add(&self, config: PeerConfig, commands: flume::Sender<PeerCommand>) -> io::Result<()> {
        let (done, result) = oneshot::channel();
        self.control
            .send(Control::Add { config: Box::new(config), commands, done })
            .await
            .map_err(|_| io::Error::other("the listener task ended"))?;
        result.await.map_err(|_| io::Error::other("the listener task ended"))?
    }

    pub async fn remove(&self, addr: IpAddr) {
        let _ = self.control.send(Control::Remove { addr }).await;
    }
}

/// An IPv4 peer reaching an IPv6 socket appears as `::ffff:a.b.c.d`.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    }
}

/// GTSM on the listening socket: a peer's first segments can arrive before
/// `accept` returns, so the minimum TTL set on the accepted socket comes too
/// late for them. The listener enforces the loosest minimum of all peers
/// (none as soon as one peer does not use GTSM); each accepted socket then
/// gets its peer's own.
fn set_min_ttl(listener: &TcpListener, peers: &HashMap<IpAddr, (PeerConfig, flume::Sender<PeerCommand>)>) {
    let min_ttl = peers
        .values()
        .map(|(config, _)| config.ttl_security.map_or(0, |hops| 255u8.saturating_sub(hops.max(1)) + 1))
        .min()
        .unwrap_or(0);
    let ipv6 = listener.local_addr().is_ok_and(|a| a.is_ipv6());
    let _ = super::sockopt::set_min_ttl(std::os::fd::AsFd::as_fd(listener), ipv6, min_ttl);
}

async fn run(listener: TcpListener, mut control: mpsc::Receiver<Control>) {
    let mut peers: HashMap<IpAddr, (PeerConfig, flume::Sender<PeerCommand>)> = HashMap::new();
    let mut refused = RefusedLog::default();
    loop {
        tokio::select! {
            message = control.recv() => match message {
                None => return,
                Some(Control::Add { config, commands, done }) => {
                    let addr = config.remote_addr;
                    // Replacing a key: remove the old one first (the kernel
                    // refuses to remove a key that is not there, which is fine).
                    let _ = transport::set_listener_md5(&listener, addr, None);
                    let result = match &config.md5_key {
                        Some(key) => transport::set_listener_md5(&listener, addr, Some(key)),
                        None => Ok(()),
                    };
                    if result.is_ok() {
                        peers.insert(addr, (*config, commands));
                        set_min_ttl(&listener, &peers);
                    }
                    let _ = done.send(result);
                }
                Some(Control::Remove { addr }) => {
                    if peers.remove(&addr).is_some_and(|(config, _)| config.md5_key.is_some()) {
                        let _ = transport::set_listener_md5(&listener, addr, None);
                    }
                    set_min_ttl(&listener, &peers);
                }
            },
            accepted = listener.accept() => {
                let Ok((stream, remote)) = accepted else { continue };
                let Some((config, commands)) = peers.get(&canonical(remote.ip())) else {
                    refused.refused(remote, Reason::UnknownPeer);
                    continue;
                };
                if transport::apply_ttl(SockRef::from(&stream), config).is_err() || stream.set_nodelay(true).is_err() {
                    continue;
                }
                // A full command queue means the peer task is stuck; the peer will retry.
                let _ = commands.try_send(PeerCommand::Incoming(stream));
            }
        }
    }
}
