//! Two tortie speakers against each other on loopback addresses inside a
//! test namespace: collision resolution, run-time peer changes, refused
//! strangers, shutdown communication, the maximum-prefix limit, and a peer
//! that stops reading (hold and send hold timers).

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::bgp::ipv4_update;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tortie::bgp::packet::{
    Capability, DecodeContext, EncodeContext, Family, GracefulRestartFamily, Message, Nlri, OpenMessage, Prefix,
    UpdateMessage,
};
use tortie::bgp::session::{DownReason, PeerConfig, PeerEvent, PeerStatus, Speaker, State};
use tortie::netns::{Topology, run_in_namespace};
use tortie::testing::wait_until_async;

const UP: Duration = Duration::from_secs(30);

fn addr(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Speaker `me` (AS 65000 + me, identifier 10.0.0.me) listening on 127.0.0.me.
fn speaker(me: u8) -> (Speaker, mpsc::Receiver<PeerEvent>) {
    let (tx, rx) = mpsc::channel(1024);
    let listen = SocketAddr::new(addr(me), 179);
    (Speaker::new(Some(listen), tx).unwrap(), rx)
}

fn config(me: u8, peer: u8) -> PeerConfig {
    let mut c =
        PeerConfig::new(addr(peer), 65000 + u32::from(peer), 65000 + u32::from(me), Ipv4Addr::new(10, 0, 0, me));
    c.local_addr = Some(addr(me));
    c.hold_time = 9;
    c.connect_retry = Duration::from_secs(1);
    c.idle_hold = Duration::from_millis(200);
    c
}

async fn state(status: &mut watch::Receiver<PeerStatus>, wanted: State) -> PeerStatus {
    wait_until_async(&format!("{wanted:?}"), UP, || {
        let status = status.borrow().clone();
        async move { (status.state == wanted).then_some(status) }
    })
    .await
    .unwrap()
}

fn in_namespace<F: std::future::Future<Output = ()>>(label: &str, test: impl FnOnce() -> F + Send) {
    let mut topo = Topology::new(label).unwrap();
    let ns = topo.add_namespace("n").unwrap();
    run_in_namespace(&ns, || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(test());
    })
    .unwrap();
}

#[test]
fn two_active_speakers_resolve_the_collision_and_exchange_routes() {
    in_namespace("pairup", || async {
        let (mut a, _a_events) = speaker(1);
        let (mut b, mut b_events) = speaker(2);
        let mut a_status = a.add_peer(config(1, 2)).await.unwrap();
        let mut b_status = b.add_peer(config(2, 1)).await.unwrap();
        state(&mut a_status, State::Established).await;
        state(&mut b_status, State::Established).await;
        a.outbound(addr(2))
            .unwrap()
            .send(ipv4_update("10.1.0.0/16", Ipv4Addr::new(127, 0, 0, 1), vec![65001], true).into())
            .await
            .unwrap();
        let update = tokio::time::timeout(UP, async {
            loop {
                if let Some(PeerEvent::Update { update, .. }) = b_events.recv().await {
                    return update;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(update.nlri[0].prefix.to_string(), "10.1.0.0/16");
        wait_until_async("A to count one UPDATE sent", UP, || {
            let sent = a_status.borrow().messages_out.update;
            async move { (sent == 1).then_some(()) }
        })
        .await
        .unwrap();
    });
}

#[test]
fn shutdown_carries_its_message_and_the_session_comes_back_on_start() {
    in_namespace("pairshut", || async {
        let (mut a, _ae) = speaker(1);
        let (mut b, _be) = speaker(2);
        let mut a_status = a.add_peer(config(1, 2)).await.unwrap();
        let mut b_status = b.add_peer(config(2, 1)).await.unwrap();
        state(&mut b_status, State::Established).await;
        a.shutdown_peer(addr(2), "planned maintenance").await.unwrap();
        let down = wait_until_async("B to hear the shutdown", UP, || {
            let status = b_status.borrow().clone();
            async move { status.last_notification_received.filter(|n| n.subcode == 2) }
        })
        .await
        .unwrap();
        assert_eq!((down.code, down.subcode), (6, 2));
        assert!(down.text.contains("planned maintenance"), "{down:?}");
        state(&mut a_status, State::Idle).await;
        a.start_peer(addr(2)).await.unwrap();
        state(&mut a_status, State::Established).await;
    });
}

#[test]
fn removing_one_peer_leaves_the_others_alone() {
    in_namespace("pairrm", || async {
        let (mut a, _ae) = speaker(1);
        let (mut b, _be) = speaker(2);
        let (mut c, _ce) = speaker(3);
        let mut ab = a.add_peer(config(1, 2)).await.unwrap();
        let mut ac = a.add_peer(config(1, 3)).await.unwrap();
        let mut ba = b.add_peer(config(2, 1)).await.unwrap();
        let mut ca = c.add_peer(config(3, 1)).await.unwrap();
        state(&mut ab, State::Established).await;
        state(&mut ac, State::Established).await;
        state(&mut ba, State::Established).await;
        state(&mut ca, State::Established).await;
        a.remove_peer(addr(3)).await.unwrap();
        let gone = wait_until_async("C to hear it was de-configured", UP, || {
            let status = ca.borrow().clone();
            async move { status.last_notification_received.filter(|n| n.subcode == 3) }
        })
        .await
        .unwrap();
        assert_eq!((gone.code, gone.subcode), (6, 3));
        let ab_now = ab.borrow().clone();
        assert_eq!((ab_now.state, ab_now.flaps), (State::Established, 0));
        assert!(a.status(addr(3)).is_none());
    });
}

#[test]
fn a_connection_from_an_unknown_address_is_closed() {
    in_namespace("pairunk", || async {
        let (_a, _ae) = speaker(1);
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(addr(9), 0)).unwrap();
        let mut stream = socket.connect(SocketAddr::new(addr(1), 179)).await.unwrap();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(UP, stream.read(&mut buf)).await.unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "the stranger got {read:?}");
    });
}

#[test]
fn exceeding_the_maximum_prefix_limit_sends_cease_one_and_restarts() {
    in_namespace("pairmax", || async {
        let (mut a, _ae) = speaker(1);
        let (mut b, _be) = speaker(2);
        let mut limited = config(1, 2);
        limited.max_prefixes = Some((1, Duration::from_millis(500)));
        let mut a_status = a.add_peer(limited).await.unwrap();
        let mut b_status = b.add_peer(config(2, 1)).await.unwrap();
        state(&mut b_status, State::Established).await;
        let out = b.outbound(addr(1)).unwrap();
        for prefix in ["10.2.0.0/16", "10.3.0.0/16"] {
            out.send(ipv4_update(prefix, Ipv4Addr::new(127, 0, 0, 2), vec![65002], true).into()).await.unwrap();
        }
        let cease = wait_until_async("B to receive Cease", UP, || {
            let status = b_status.borrow().clone();
            async move { status.last_notification_received.filter(|n| n.subcode == 1) }
        })
        .await
        .unwrap();
        assert_eq!((cease.code, cease.subcode), (6, 1));
        // And the session restarts after the configured time.
        wait_until_async("the session to restart", UP, || {
            let status = a_status.borrow().clone();
            async move { (status.state == State::Established && status.flaps >= 1).then_some(()) }
        })
        .await
        .unwrap();
        let _ = &mut a_status;
    });
}

/// Connects from 127.0.0.2 to the passive speaker on 127.0.0.1 once it
/// waits again, sends `open` and returns the NOTIFICATION's code and subcode.
async fn refusal_of(status: &mut watch::Receiver<PeerStatus>, open: OpenMessage) -> (u8, u8) {
    state(status, State::Active).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(addr(2), 0)).unwrap();
    let mut stream = socket.connect(SocketAddr::new(addr(1), 179)).await.unwrap();
    stream.write_all(&Message::Open(open).to_bytes(&EncodeContext::default()).unwrap()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(UP, async {
        loop {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .unwrap();
    let mut rest = buf.as_slice();
    while let Ok((decoded, len)) = Message::decode(rest, &DecodeContext::default()) {
        if let Message::Notification(n) = decoded.message {
            return (n.code, n.subcode);
        }
        rest = &rest[len..];
    }
    panic!("no NOTIFICATION in {buf:?}");
}

fn peer_open(asn: u32, hold: u16, capabilities: Vec<Capability>) -> OpenMessage {
    OpenMessage::new(asn, hold, Ipv4Addr::new(10, 0, 0, 2), capabilities)
}

#[test]
fn a_wrong_open_gets_the_right_notification() {
    in_namespace("pairopen", || async {
        let (mut a, _ae) = speaker(1);
        let mut config = config(1, 2);
        config.passive = true;
        config.require_four_octet_as = true;
        let mut s = a.add_peer(config).await.unwrap();
        let four = |asn| vec![Capability::FourOctetAs(asn)];
        assert_eq!(refusal_of(&mut s, peer_open(65009, 90, four(65009))).await, (2, 2), "bad peer AS");
        assert_eq!(refusal_of(&mut s, peer_open(65002, 2, four(65002))).await, (2, 6), "hold time 2");
        assert_eq!(refusal_of(&mut s, peer_open(65002, 90, vec![])).await, (2, 7), "no 4-octet AS capability");
        let mut zero_id = peer_open(65002, 90, four(65002));
        zero_id.bgp_identifier = Ipv4Addr::UNSPECIFIED;
        assert_eq!(refusal_of(&mut s, zero_id).await, (2, 3), "identifier 0.0.0.0");
        let mut version = peer_open(65002, 90, four(65002));
        version.version = 3;
        assert_eq!(refusal_of(&mut s, version).await, (2, 1), "version 3");
    });
}

#[test]
fn gtsm_sessions_come_up_and_a_ttl_one_sender_is_dropped() {
    in_namespace("pairgtsm", || async {
        let (mut a, _ae) = speaker(1);
        let (mut b, _be) = speaker(2);
        let mut a_config = config(1, 2);
        a_config.ttl_security = Some(1);
        let mut b_config = config(2, 1);
        b_config.ttl_security = Some(1);
        let mut a_status = a.add_peer(a_config.clone()).await.unwrap();
        b.add_peer(b_config).await.unwrap();
        state(&mut a_status, State::Established).await;

        // B back to a plain eBGP TTL of 1: A's IP_MINTTL drops everything B sends.
        let (mut c, _ce) = speaker(3);
        let mut a_to_c = config(1, 3);
        a_to_c.ttl_security = Some(1);
        a_to_c.passive = true;
        let c_status = c.add_peer(config(3, 1)).await.unwrap();
        let a_c = a.add_peer(a_to_c).await.unwrap();
        let up = wait_until_async("a session without GTSM", Duration::from_secs(5), || {
            let (a_c, c_status) = (a_c.borrow().clone(), c_status.borrow().clone());
            async move {
                (a_c.state == State::Established || c_status.state == State::Established || a_c.messages_in.total() > 0)
                    .then_some(())
            }
        })
        .await;
        assert!(up.is_err(), "a TTL-1 peer got through GTSM");
    });
}

#[test]
fn changing_a_peer_restarts_only_its_session_with_the_new_settings() {
    in_namespace("pairchg", || async {
        let (mut a, _ae) = speaker(1);
        let (mut b, _be) = speaker(2);
        let mut a_status = a.add_peer(config(1, 2)).await.unwrap();
        let b_status = b.add_peer(config(2, 1)).await.unwrap();
        state(&mut a_status, State::Established).await;
        let mut changed = config(1, 2);
        changed.hold_time = 6;
        a.change_peer(changed).await.unwrap();
        let cease = wait_until_async("B to hear of the change", UP, || {
            let status = b_status.borrow().clone();
            async move { status.last_notification_received.filter(|n| n.subcode == 6) }
        })
        .await
        .unwrap();
        assert_eq!((cease.code, cease.subcode), (6, 6));
        let up = wait_until_async("the session with hold time 6", UP, || {
            let status = a_status.borrow().clone();
            async move { status.negotiated.filter(|n| n.hold_time == 6 && status.state == State::Established) }
        })
        .await
        .unwrap();
        assert_eq!(up.keepalive, 2);
    });
}

#[test]
fn a_route_refresh_request_reaches_the_other_side_for_a_negotiated_family_only() {
    in_namespace("pairrr", || async {
        let (mut a, _ae) = speaker(1);
        let (mut b, mut b_events) = speaker(2);
        let mut a_status = a.add_peer(config(1, 2)).await.unwrap();
        let mut b_config = config(2, 1);
        b_config.families = vec![tortie::bgp::packet::Family::IPV4_UNICAST];
        let mut b_status = b.add_peer(b_config).await.unwrap();
        state(&mut a_status, State::Established).await;
        state(&mut b_status, State::Established).await;
        // IPv6 was not negotiated: A does not ask; IPv4 was: B hears the request.
        a.request_refresh(addr(2), tortie::bgp::packet::Family::IPV6_UNICAST).await.unwrap();
        a.request_refresh(addr(2), tortie::bgp::packet::Family::IPV4_UNICAST).await.unwrap();
        let message = tokio::time::timeout(UP, async {
            loop {
                if let Some(PeerEvent::RouteRefresh { message, .. }) = b_events.recv().await {
                    return message;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(message.family, tortie::bgp::packet::Family::IPV4_UNICAST);
        wait_until_async("A to count one ROUTE-REFRESH sent", UP, || {
            let sent = a_status.borrow().messages_out.route_refresh;
            async move { (sent == 1).then_some(()) }
        })
        .await
        .unwrap();
    });
}

#[test]
fn an_update_queued_while_the_session_is_down_is_never_sent() {
    in_namespace("pairstale", || async {
        let (mut a, mut a_events) = speaker(1);
        let (mut b, _be) = speaker(2);
        let mut b_status = b.add_peer(config(2, 1)).await.unwrap();
        // B has no session yet: this announcement belongs to no session.
        let out = b.outbound(addr(1)).unwrap();
        out.send(ipv4_update("10.9.0.0/16", Ipv4Addr::new(127, 0, 0, 2), vec![65002], true).into()).await.unwrap();
        let _a_status = a.add_peer(config(1, 2)).await.unwrap();
        state(&mut b_status, State::Established).await;
        out.send(ipv4_update("10.1.0.0/16", Ipv4Addr::new(127, 0, 0, 2), vec![65002], true).into()).await.unwrap();
        // TCP keeps order: had the stale UPDATE gone out, it would come first.
        let first = tokio::time::timeout(UP, async {
            loop {
                if let Some(PeerEvent::Update { update, .. }) = a_events.recv().await {
                    return update;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(first.nlri[0].prefix.to_string(), "10.1.0.0/16");
    });
}

#[test]
fn a_peer_that_was_unreachable_is_taken_back_within_one_connect_retry() {
    in_namespace("pairback", || async {
        // Nothing listens on 127.0.0.2 yet: every connect of A's fails at once.
        let (mut a, _ae) = speaker(1);
        let mut a_config = config(1, 2);
        // A back-off this long would keep A away far beyond the test's deadlines.
        a_config.idle_hold = Duration::from_secs(60);
        a_config.idle_hold_max = a_config.idle_hold;
        let retry = a_config.connect_retry;
        let mut a_status = a.add_peer(a_config).await.unwrap();
        wait_until_async("A to have tried three times", retry * 3 + Duration::from_secs(2), || {
            let status = a_status.borrow().clone();
            async move { (status.connect_retry_counter >= 3).then_some(()) }
        })
        .await
        .unwrap();
        // B comes back, passive: only A's next connect can bring the session up.
        let (mut b, _be) = speaker(2);
        let mut b_config = config(2, 1);
        b_config.passive = true;
        let _b_status = b.add_peer(b_config).await.unwrap();
        wait_until_async("A to be Established again", retry + Duration::from_secs(2), || {
            let up = a_status.borrow().state == State::Established;
            async move { up.then_some(()) }
        })
        .await
        .unwrap();
        let _ = &mut a_status;
    });
}

/// Reads from `stream` until one whole message is in `buf`; returns it.
async fn next_message(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Message {
    tokio::time::timeout(UP, async {
        loop {
            if let Ok((decoded, len)) = Message::decode(buf, &DecodeContext::default()) {
                buf.drain(..len);
                return decoded.message;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => panic!("the connection closed; unread: {buf:?}"),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .unwrap()
}

/// A raw session from 127.0.0.2 to 127.0.0.1 offering graceful restart.
async fn dial_with_graceful_restart(restart_flags: u8) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(addr(2), 0)).unwrap();
    let mut stream = socket.connect(SocketAddr::new(addr(1), 179)).await.unwrap();
    let gr = Capability::GracefulRestart {
        restart_flags,
        restart_time: 120,
        families: vec![GracefulRestartFamily { family: Family::IPV4_UNICAST, flags: 0x80 }],
    };
    let open = peer_open(65002, 9, vec![Capability::FourOctetAs(65002), gr]);
    let ctx = EncodeContext::default();
    stream.write_all(&Message::Open(open).to_bytes(&ctx).unwrap()).await.unwrap();
    stream.write_all(&Message::Keepalive.to_bytes(&ctx).unwrap()).await.unwrap();
    stream
}

#[test]
fn a_graceful_restart_peer_dialling_again_replaces_its_established_session() {
    in_namespace("pairgr", || async {
        let (mut a, mut events) = speaker(1);
        let mut passive = config(1, 2);
        passive.passive = true;
        let mut status = a.add_peer(passive).await.unwrap();
        // The peer's first session; then it restarts without A noticing the
        // old connection go (no FIN: a power cut) and dials again.
        let _old = dial_with_graceful_restart(0).await;
        state(&mut status, State::Established).await;
        let mut new = dial_with_graceful_restart(0x8).await;
        let mut buf = Vec::new();
        let answer = next_message(&mut new, &mut buf).await;
        assert!(matches!(answer, Message::Open(_)), "A answered the new connection with {answer:?}");
        let down = tokio::time::timeout(UP, async {
            loop {
                if let Some(PeerEvent::SessionDown { reason, .. }) = events.recv().await {
                    return reason;
                }
            }
        })
        .await
        .unwrap();
        // Without a NOTIFICATION, so the RIB keeps the peer's routes stale.
        assert_eq!(down, DownReason::ConnectionLost);
        let up = state(&mut status, State::Established).await;
        assert_eq!(up.flaps, 1);
    });
}

#[test]
fn a_late_open_of_a_simultaneous_open_does_not_replace_a_fresh_session() {
    in_namespace("pairso", || async {
        let (mut a, _events) = speaker(1);
        let mut passive = config(1, 2);
        passive.passive = true;
        let mut status = a.add_peer(passive).await.unwrap();
        let _first = dial_with_graceful_restart(0).await;
        state(&mut status, State::Established).await;
        // The peer's other connection of a simultaneous open, its OPEN late: no Restart State.
        let mut late = dial_with_graceful_restart(0).await;
        let mut buf = Vec::new();
        let answer = next_message(&mut late, &mut buf).await;
        assert!(
            matches!(&answer, Message::Notification(n) if (n.code, n.subcode) == (6, 7)),
            "A answered the late connection with {answer:?}"
        );
        assert_eq!(status.borrow().state, State::Established, "the session stays");
        assert_eq!(status.borrow().flaps, 0);
    });
}

/// The receive buffer of a peer that stops reading: small, so that our
/// writes stall after a few octets.
const STALLED_RCVBUF: u32 = 1024;

/// A raw session from 127.0.0.2 to 127.0.0.1 offering `hold` seconds, with a
/// tiny receive buffer; the test never reads from it.
async fn dial_without_reading(hold: u16) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(STALLED_RCVBUF).unwrap();
    socket.bind(SocketAddr::new(addr(2), 0)).unwrap();
    let mut stream = socket.connect(SocketAddr::new(addr(1), 179)).await.unwrap();
    let open = peer_open(65002, hold, vec![Capability::FourOctetAs(65002)]);
    let ctx = EncodeContext::default();
    stream.write_all(&Message::Open(open).to_bytes(&ctx).unwrap()).await.unwrap();
    stream.write_all(&Message::Keepalive.to_bytes(&ctx).unwrap()).await.unwrap();
    stream
}

/// An UPDATE of about 4000 octets: 990 /24s.
fn big_update() -> UpdateMessage {
    let mut update = ipv4_update("10.0.0.0/24", Ipv4Addr::new(127, 0, 0, 1), vec![65001], true);
    for i in 1..990u32 {
        let prefix = Prefix::new(IpAddr::from(Ipv4Addr::from(0x0a00_0000 | (i << 8))), 24).unwrap();
        update.nlri.push(Nlri::new(prefix));
    }
    update
}

/// Keeps A's outbound channel to 127.0.0.2 full, as a RIB with a large table would.
fn flood(speaker: &Speaker) -> tokio::task::JoinHandle<()> {
    let out = speaker.outbound(addr(2)).unwrap();
    tokio::spawn(async move { while out.send(big_update().into()).await.is_ok() {} })
}

/// A passive A with a session to 127.0.0.2 configured by `tune`.
async fn passive_a(tune: impl FnOnce(&mut PeerConfig)) -> (Speaker, watch::Receiver<PeerStatus>) {
    let (mut a, _events) = speaker(1);
    let mut passive = config(1, 2);
    passive.passive = true;
    tune(&mut passive);
    let status = a.add_peer(passive).await.unwrap();
    (a, status)
}

/// Waits until the session that was Established has gone down; returns why.
async fn down_reason(status: &watch::Receiver<PeerStatus>, what: &str, within: Duration) -> DownReason {
    wait_until_async(what, within, || {
        let status = status.borrow().clone();
        async move { status.last_error.filter(|_| status.state != State::Established) }
    })
    .await
    .unwrap()
}

#[test]
fn the_hold_timer_expires_while_writes_to_a_peer_that_stopped_reading_are_stalled() {
    in_namespace("pairstall", || async {
        const HOLD: u16 = 3;
        let (a, mut status) = passive_a(|_| {}).await;
        let _peer = dial_without_reading(HOLD).await;
        state(&mut status, State::Established).await;
        let flood = flood(&a);
        // The peer sends nothing more either: only the hold timer ends the session.
        let margin = Duration::from_secs(10);
        let down = down_reason(&status, "the hold timer to end the session", secs(HOLD) + margin).await;
        flood.abort();
        assert!(matches!(down, DownReason::NotificationSent { code: 4, .. }), "{down:?}");
    });
}

#[test]
fn a_peer_that_sends_keepalives_but_never_reads_trips_the_send_hold_timer() {
    in_namespace("pairsendhold", || async {
        const HOLD: u16 = 9;
        let send_hold = Duration::from_secs(3);
        let (a, mut status) = passive_a(|c| c.send_hold = Some(send_hold)).await;
        let mut peer = dial_without_reading(HOLD).await;
        state(&mut status, State::Established).await;
        let flood = flood(&a);
        // Nothing piles up in between: with the send queue full the session
        // takes no more UPDATEs and the RIB's bounded channel fills.
        let out = a.outbound(addr(2)).unwrap();
        wait_until_async("the outbound channel to fill", send_hold, || {
            let full = out.capacity() == 0 && status.borrow().state == State::Established;
            async move { full.then_some(()) }
        })
        .await
        .unwrap();
        // The peer stays alive for the hold timer: a KEEPALIVE every second.
        let keepalives = tokio::spawn(async move {
            let keepalive = Message::Keepalive.to_bytes(&EncodeContext::default()).unwrap();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if peer.write_all(&keepalive).await.is_err() {
                    return;
                }
            }
        });
        let margin = Duration::from_secs(10);
        let down = down_reason(&status, "the send hold timer to end the session", send_hold + margin).await;
        flood.abort();
        keepalives.abort();
        assert!(matches!(down, DownReason::NotificationSent { code: 8, subcode: 0, .. }), "{down:?}");
        let counted = status.borrow().notifications.iter().any(|n| n.direction == "sent" && n.code == 8);
        assert!(counted, "{:?}", status.borrow().notifications);
    });
}

fn secs(seconds: u16) -> Duration {
    Duration::from_secs(u64::from(seconds))
}
