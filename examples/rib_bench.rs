//! RIB throughput alone (no sessions, no kernel): `rib_bench N`.
//!
//! N IPv4 /32s from 100.64.0.0 in UPDATEs of 810 prefixes (as
//! `bench/feeder.py` sends them) from one eBGP peer with an accept-all
//! import policy go into the RIB task through its event channel, while a
//! consumer takes the best-path changes as the agent's follower would.
//! Prints the seconds until the RIB holds all N, until every change was
//! taken, for the withdrawal of all N, and the peak RSS (VmHWM) with the
//! bytes per route above the empty RIB.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tortie::bgp::packet::{AsPath, AsSegment, AttributeValue, Family, Nlri, Origin, PathAttribute, Prefix};
use tortie::bgp::packet::{SegmentType, UpdateMessage, UpdateOutcome};
use tortie::bgp::rib::{PeerRole, PeerSetup, Policy, Rib, RibConfig};
use tortie::bgp::session::{Negotiated, PeerEvent};

const PER_UPDATE: u32 = 810;

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn prefixes(from: u32, count: u32) -> Vec<Nlri> {
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 0));
    (from..from + count)
        .map(|i| Nlri::new(Prefix::new(IpAddr::V4(Ipv4Addr::from(base + i)), 32).expect("a /32")))
        .collect()
}

fn announce(from: u32, count: u32) -> UpdateMessage {
    UpdateMessage {
        attributes: vec![
            PathAttribute::new(AttributeValue::Origin(Origin::Igp)),
            PathAttribute::new(AttributeValue::AsPath(AsPath {
                four_octet: true,
                segments: vec![AsSegment { segment_type: SegmentType::AsSequence, asns: vec![65001] }],
            })),
            PathAttribute::new(AttributeValue::NextHop(Ipv4Addr::new(10, 99, 0, 1))),
        ],
        nlri: prefixes(from, count),
        ..UpdateMessage::default()
    }
}

fn negotiated() -> Negotiated {
    Negotiated {
        peer_as: 65001,
        peer_id: Ipv4Addr::new(10, 99, 0, 1),
        hold_time: 90,
        keepalive: 30,
        four_octet_as: true,
        families: vec![Family::IPV4_UNICAST],
        route_refresh: true,
        enhanced_route_refresh: false,
        peer_graceful_restart: None,
        add_path_receive: vec![],
        add_path_send: vec![],
        extended_message: false,
        ibgp: false,
        local_addr: Some(IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2))),
    }
}

async fn until(what: &str, rib: &Rib, done: impl Fn(u64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let accepted = rib.stats().await.per_peer.values().map(|p| p.accepted).sum::<u64>();
        if done(accepted) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: stuck at {accepted}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|s| s.parse().ok()).expect("usage: rib_bench N");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let peer = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 1));
        let (events, rx) = mpsc::channel(64);
        let (rib, mut best) = Rib::spawn(RibConfig::new(65002, Ipv4Addr::new(10, 99, 0, 2)), rx);
        let (out_tx, mut out_rx) = mpsc::channel(64);
        tokio::spawn(async move { while out_rx.recv().await.is_some() {} });
        let (taken_tx, mut taken) = mpsc::channel::<u64>(1);
        tokio::spawn(async move {
            let mut count = 0u64;
            // Changes come in batches: report each time the count passes a multiple of n.
            while let Some(batch) = best.recv().await {
                let before = count;
                count += batch.len() as u64;
                std::hint::black_box(&batch);
                if before / u64::from(n) != count / u64::from(n) {
                    let _ = taken_tx.send(count).await;
                }
            }
        });
        let mut setup = PeerSetup::new(PeerRole::External, 65001);
        setup.import = Some(Policy::accept_all());
        rib.add_peer(peer, setup, out_tx).await;
        events.send(PeerEvent::SessionUp { peer, negotiated: Box::new(negotiated()) }).await.unwrap();
        rib.stats().await;
        let empty_kib = vm_hwm_kib();

        let t0 = Instant::now();
        let sender = events.clone();
        // Built as they go (another thread), so the input is not in the peak.
        tokio::spawn(async move {
            for from in (0..n).step_by(PER_UPDATE as usize) {
                let update = announce(from, PER_UPDATE.min(n - from));
                let event = PeerEvent::Update { peer, update: Box::new(update), outcome: UpdateOutcome::default() };
                sender.send(event).await.unwrap();
            }
        });
        until("announce", &rib, |a| a == u64::from(n)).await;
        let rib_s = t0.elapsed().as_secs_f64();
        taken.recv().await;
        let changes_s = t0.elapsed().as_secs_f64();
        let hwm_kib = vm_hwm_kib();

        let t0 = Instant::now();
        for from in (0..n).step_by(PER_UPDATE as usize) {
            let update = UpdateMessage { withdrawn: prefixes(from, PER_UPDATE.min(n - from)), ..Default::default() };
            let event = PeerEvent::Update { peer, update: Box::new(update), outcome: UpdateOutcome::default() };
            events.send(event).await.unwrap();
        }
        until("withdraw", &rib, |a| a == 0).await;
        let withdraw_s = t0.elapsed().as_secs_f64();
        let per_route = (hwm_kib.saturating_sub(empty_kib) * 1024) as f64 / f64::from(n);
        println!(
            "rib_bench n={n} rib_s={rib_s:.3} changes_s={changes_s:.3} withdraw_s={withdraw_s:.3} \
             rate={:.0} peak_rss_mb={:.1} bytes_per_route={per_route:.0}",
            f64::from(n) / rib_s,
            hwm_kib as f64 / 1024.0
        );
    });
}
