//! One simulated node's session with one reflector: connect from the
//! node's address, announce its block, follow what the reflector sends and
//! check every route against the cluster's expected state. Reconnects after
//! any failure, starting from nothing (as a client without graceful restart
//! state would).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::watch;
use tokio::time::{Instant, interval_at, timeout};

use tortie::bgp::packet::{
    AddPathFamily, AsPath, AttributeValue, Capability, DecodeContext, DecodeError, Decoded, EncodeContext, Family,
    GracefulRestartFamily, Message, MpNlri, NextHop, NotificationMessage, OpenMessage, Origin, PathAttribute,
    Rfc7606Action, UpdateMessage, UpdateOutcome,
};

use crate::cluster::{Cluster, Held};
use crate::scan::{V4Prefix, scan};

pub const BGP_PORT: u16 = 179;
/// Connection attempts, and the OPEN exchange, give up after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Restart time in our graceful restart capability (Calico's BIRD default).
const RESTART_TIME_SECONDS: u16 = 120;
/// Read buffer each session starts with: a reflector that writes many
/// UPDATEs at once is read in few calls.
const READ_CHUNK: usize = 65536;
/// A BGP message header: marker, length, type.
const HEADER: usize = 19;

/// Settings shared by every session.
#[derive(Clone, Copy)]
pub struct Options {
    pub hold_time: u16,
    pub retry: Duration,
    pub add_path: bool,
}

pub async fn run(
    cluster: Arc<Cluster>,
    client: u32,
    reflector: Ipv4Addr,
    options: Options,
    mut changes: watch::Receiver<u64>,
) {
    let mut held = cluster.held();
    let mut logged = false;
    loop {
        let result = session(&cluster, client, reflector, options, &mut changes, &mut held).await;
        if let Err(error) = result
            && !logged
        {
            // One line per session is plenty: every session fails alike
            // while a reflector is down.
            eprintln!("client {} to {reflector}: {error:#}", cluster.address(client));
            logged = true;
        }
        held.clear();
        cluster.recheck(client, &mut held);
        tokio::time::sleep(options.retry).await;
    }
}

async fn session(
    cluster: &Cluster,
    client: u32,
    reflector: Ipv4Addr,
    options: Options,
    changes: &mut watch::Receiver<u64>,
    held: &mut Held,
) -> anyhow::Result<()> {
    let me = cluster.address(client);
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddrV4::new(me, 0).into()).with_context(|| format!("bind {me}"))?;
    let stream = timeout(CONNECT_TIMEOUT, socket.connect(SocketAddrV4::new(reflector, BGP_PORT).into()))
        .await
        .context("connect timed out")?
        .context("connect")?;
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = stream.into_split();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut ctx = DecodeContext { ibgp: true, ..DecodeContext::default() };
    let encode = EncodeContext::default();

    send(&mut writer, &Message::Open(our_open(cluster, client, options)), &encode).await?;
    let open =
        timeout(CONNECT_TIMEOUT, next_message(&mut reader, &mut buf, &ctx, &mut writer)).await.context("no OPEN")??;
    let Message::Open(open) = open else { bail!("expected OPEN, got {:?}", open.message_type()) };
    if open.asn() != cluster.as_number {
        bail!("reflector is AS {}, we are AS {}", open.asn(), cluster.as_number);
    }
    ctx.four_octet_as = open.capabilities().any(|c| matches!(c, Capability::FourOctetAs(_)));
    let sends_paths = open.capabilities().any(|c| match c {
        Capability::AddPath(families) => {
            families.iter().any(|f| f.family == Family::IPV4_UNICAST && f.send_receive & 2 != 0)
        }
        _ => false,
    });
    if options.add_path && sends_paths {
        ctx.add_path.insert(Family::IPV4_UNICAST);
    }
    let hold = Duration::from_secs(u64::from(options.hold_time.min(open.hold_time)));
    send(&mut writer, &Message::Keepalive, &encode).await?;

    cluster.established(true);
    let result = established(cluster, client, &mut reader, &mut writer, &mut buf, ctx, hold, changes, held).await;
    cluster.established(false);
    result
}

#[allow(clippy::too_many_arguments)]
async fn established(
    cluster: &Cluster,
    client: u32,
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    writer: &mut OwnedWriteHalf,
    buf: &mut BytesMut,
    ctx: DecodeContext,
    hold: Duration,
    changes: &mut watch::Receiver<u64>,
    held: &mut Held,
) -> anyhow::Result<()> {
    let encode = EncodeContext::from(&ctx);
    let mut announced = cluster.is_announced(client);
    if announced {
        send(writer, &Message::Update(announce(cluster, client, ctx.four_octet_as)), &encode).await?;
    }
    send(writer, &Message::Update(UpdateMessage::end_of_rib(Family::IPV4_UNICAST)), &encode).await?;
    // Hold time 0 (RFC 4271): no KEEPALIVEs and no hold timer.
    let keepalive_every = if hold.is_zero() { Duration::from_secs(3600) } else { hold / 3 };
    let mut keepalives = interval_at(Instant::now() + keepalive_every, keepalive_every);
    let mut last_heard = Instant::now();
    let mut scratch = (Vec::new(), Vec::new());
    loop {
        tokio::select! {
            read = reader.read_buf(buf) => {
                if read.context("read")? == 0 {
                    bail!("the reflector closed the connection");
                }
                last_heard = Instant::now();
                take_messages(cluster, buf, &ctx, writer, held, &mut scratch).await?;
                cluster.recheck(client, held);
                if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                    buf.reserve(READ_CHUNK);
                }
            }
            _ = keepalives.tick() => {
                if !hold.is_zero() && last_heard.elapsed() > hold {
                    let expired = NotificationMessage::new(4, 0, bytes::Bytes::new());
                    let _ = send(writer, &Message::Notification(expired), &encode).await;
                    bail!("hold timer expired");
                }
                send(writer, &Message::Keepalive, &encode).await?;
            }
            changed = changes.changed() => {
                changed.context("the command reader ended")?;
                let now = cluster.is_announced(client);
                if now != announced {
                    announced = now;
                    let update = if now {
                        announce(cluster, client, ctx.four_octet_as)
                    } else {
                        UpdateMessage { withdrawn: vec![cluster.block(client)], ..UpdateMessage::default() }
                    };
                    send(writer, &Message::Update(update), &encode).await?;
                }
                cluster.recheck(client, held);
            }
        }
    }
}

/// Handles every whole message in `buf`: an UPDATE of the simple shape read
/// in place ([`scan`]), any other message decoded by tortie's codec.
async fn take_messages(
    cluster: &Cluster,
    buf: &mut BytesMut,
    ctx: &DecodeContext,
    writer: &mut OwnedWriteHalf,
    held: &mut Held,
    (withdrawn, announced): &mut (Vec<V4Prefix>, Vec<V4Prefix>),
) -> anyhow::Result<()> {
    let add_path = ctx.add_path.contains(Family::IPV4_UNICAST);
    let mut at = 0;
    while let Some(header) = buf.get(at..at + HEADER) {
        let len = usize::from(u16::from_be_bytes([header[16], header[17]]));
        let Some(message) = buf.get(at..at + len) else { break };
        let simple = len >= HEADER && header[..16] == [0xff; 16] && header[18] == 2;
        match simple.then(|| scan(&message[HEADER..], add_path, withdrawn, announced)).flatten() {
            Some(hop) if hop.is_some() || announced.is_empty() => {
                learn_scanned(cluster, withdrawn, announced, hop, held)
            }
            _ => {
                buf.advance(at);
                at = 0;
                let Some(Decoded { message, outcome }) = take_message(buf, ctx, writer).await? else { break };
                match message {
                    Message::Update(update) => learn(cluster, &update, &outcome, held),
                    Message::Notification(n) => bail!("NOTIFICATION {}/{} received", n.code, n.subcode),
                    Message::Open(_) => bail!("OPEN on an established session"),
                    Message::Keepalive | Message::RouteRefresh(_) => {}
                }
                continue;
            }
        }
        at += len;
    }
    buf.advance(at);
    Ok(())
}

/// Applies one UPDATE read by [`scan`]: every announced block must come with its node's address as `hop`.
fn learn_scanned(
    cluster: &Cluster,
    withdrawn: &[V4Prefix],
    announced: &[V4Prefix],
    hop: Option<Ipv4Addr>,
    held: &mut Held,
) {
    for &(addr, len) in withdrawn {
        if let Some(client) = cluster.client_of_v4(addr, len) {
            held.set(client, false);
        }
    }
    for &(addr, len) in announced {
        let Some(client) = cluster.client_of_v4(addr, len) else {
            cluster.unexpected_prefixes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        };
        if hop == Some(cluster.address(client)) {
            held.set(client, true);
        } else {
            held.set(client, false);
            if cluster.wrong_next_hops.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
                eprintln!(
                    "{}/{len} arrived with next hop {hop:?}, not {}",
                    Ipv4Addr::from(addr),
                    cluster.address(client)
                );
            }
        }
    }
}

/// Applies one UPDATE to a session's blocks, checking each next hop: a
/// reflector passes on the originator's.
fn learn(cluster: &Cluster, update: &UpdateMessage, outcome: &UpdateOutcome, held: &mut Held) {
    for (family, nlri) in update.withdrawals_under(outcome) {
        if family == Family::IPV4_UNICAST
            && let Some(client) = cluster.client_of(&nlri.prefix)
        {
            held.set(client, false);
        }
    }
    let mp_hop = update.mp_reach().and_then(|reach| match reach.next_hop {
        NextHop::Ipv4(hop) => Some(hop),
        _ => None,
    });
    let withdrawn = outcome.action() == Rfc7606Action::TreatAsWithdraw;
    for (family, nlri) in update.announced() {
        if withdrawn || family != Family::IPV4_UNICAST {
            continue;
        }
        let Some(client) = cluster.client_of(&nlri.prefix) else {
            cluster.unexpected_prefixes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        };
        let in_mp = update.mp_reach().is_some_and(|r| match &r.nlri {
            MpNlri::Prefixes(p) => p.contains(nlri),
            MpNlri::Raw(_) => false,
        });
        let hop = if in_mp { mp_hop } else { update.next_hop() };
        if hop == Some(cluster.address(client)) {
            held.set(client, true);
        } else {
            held.set(client, false);
            if cluster.wrong_next_hops.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
                eprintln!("{} arrived with next hop {hop:?}, not {}", nlri.prefix, cluster.address(client));
            }
        }
    }
}

fn our_open(cluster: &Cluster, client: u32, options: Options) -> OpenMessage {
    let mut capabilities = vec![
        Capability::Multiprotocol(Family::IPV4_UNICAST),
        Capability::RouteRefresh,
        Capability::FourOctetAs(cluster.as_number),
        Capability::GracefulRestart {
            restart_flags: 0,
            restart_time: RESTART_TIME_SECONDS,
            families: vec![GracefulRestartFamily { family: Family::IPV4_UNICAST, flags: 0x80 }],
        },
    ];
    if options.add_path {
        // Receive only, as a tortie client of a reflector offers it.
        capabilities.push(Capability::AddPath(vec![AddPathFamily { family: Family::IPV4_UNICAST, send_receive: 1 }]));
    }
    OpenMessage::new(cluster.as_number, options.hold_time, cluster.address(client), capabilities)
}

fn announce(cluster: &Cluster, client: u32, four_octet_as: bool) -> UpdateMessage {
    UpdateMessage {
        attributes: vec![
            PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
            PathAttribute::new(AttributeValue::AsPath(AsPath::sequence(four_octet_as, Vec::new()))),
            PathAttribute::new(AttributeValue::NextHop(cluster.address(client))),
            PathAttribute::new(AttributeValue::LocalPref(100)),
        ],
        nlri: vec![cluster.block(client)],
        ..UpdateMessage::default()
    }
}

async fn send(writer: &mut OwnedWriteHalf, message: &Message, ctx: &EncodeContext) -> anyhow::Result<()> {
    let bytes = message.to_bytes(ctx).context("encode")?;
    writer.write_all(&bytes).await.context("write")
}

/// The next whole message in `buf`, if there is one; a malformed one gets
/// its NOTIFICATION and ends the session.
async fn take_message(
    buf: &mut BytesMut,
    ctx: &DecodeContext,
    writer: &mut OwnedWriteHalf,
) -> anyhow::Result<Option<Decoded>> {
    match Message::decode(buf, ctx) {
        Ok((decoded, used)) => {
            let _ = buf.split_to(used);
            Ok(Some(decoded))
        }
        Err(DecodeError::Incomplete { .. }) => Ok(None),
        Err(DecodeError::SessionReset(reset)) => {
            let _ = send(writer, &Message::Notification(reset.notification()), &EncodeContext::from(ctx)).await;
            bail!("malformed message from the reflector: {}", reset.error)
        }
    }
}

async fn next_message(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
    ctx: &DecodeContext,
    writer: &mut OwnedWriteHalf,
) -> anyhow::Result<Message> {
    loop {
        if let Some(decoded) = take_message(buf, ctx, writer).await? {
            return Ok(decoded.message);
        }
        if reader.read_buf(buf).await.context("read")? == 0 {
            bail!("the reflector closed the connection");
        }
    }
}
