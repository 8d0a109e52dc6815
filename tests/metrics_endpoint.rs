//! The metrics endpoint serves OpenMetrics that promtool accepts, with the
//! dataplane's series present from the start and moving with its work;
//! readiness explains itself.

use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tortie::dataplane::{DesiredRoute, Programmer, ProgrammerConfig, Route, RouteKind, RouteTarget};
use tortie::metrics::Metrics;
use tortie::metrics::dataplane::DataplaneCollector;
use tortie::metrics::readiness::HealthInput;
use tortie::netns::{Topology, run_in_namespace};

async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    get_accepting(addr, path, "*/*").await
}

async fn get_accepting(addr: std::net::SocketAddr, path: &str, accept: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn metrics_are_valid_openmetrics_and_follow_the_dataplane() {
    let mut t = Topology::new("metrics").unwrap();
    t.add_namespace("n").unwrap();
    let (before, after, ready_body) = run_in_namespace(&t.ns("n"), || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
            let p = Programmer::start(ProgrammerConfig::default()).await.unwrap();
            let mut metrics = Metrics::new();
            metrics.tortie().register_collector(Box::new(DataplaneCollector {
                table: 254,
                stats: p.stats.clone(),
                state: p.state.clone(),
                tunnel: None,
            }));
            let (health_tx, health_rx) = tokio::sync::watch::channel(HealthInput::default());
            let (_stalled_tx, stalled_rx) = tokio::sync::watch::channel(Default::default());
            let app =
                tortie::metrics::server::router(Arc::new(metrics.registry), health_rx, stalled_rx, Instant::now());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

            // Prometheus asks for OpenMetrics and gets it; others get the classic text format.
            let (head, openmetrics) =
                get_accepting(addr, "/metrics", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5").await;
            assert!(head.contains("application/openmetrics-text; version=1.0.0"), "{head}");
            assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
            let (head, before) = get(addr, "/metrics").await;
            assert!(head.contains("text/plain; version=0.0.4"), "{head}");
            p.set(DesiredRoute {
                route: Route { dst: "10.244.0.0/26".parse().unwrap(), target: RouteTarget::Blackhole, mtu: None },
                kind: RouteKind::Blackhole,
            })
            .await;
            p.flush().await;
            let (_, after) = get(addr, "/metrics").await;
            health_tx.send_replace(HealthInput {
                dataplane_synced: true,
                peers: vec![("192.0.2.7".into(), false)],
                ..Default::default()
            });
            let (head, body) = get(addr, "/readyz").await;
            assert!(head.starts_with("HTTP/1.1 503"), "{head}");
            (before, after, body)
        })
    })
    .unwrap();

    assert_eq!(
        value(&before, "tortie_dataplane_routes{table=\"254\",kind=\"blackhole\"}"),
        Some(0.0),
        "present from the start"
    );
    assert_eq!(value(&after, "tortie_dataplane_routes{table=\"254\",kind=\"blackhole\"}"), Some(1.0));
    assert_eq!(value(&after, "tortie_dataplane_route_operations_total{op=\"add\"}"), Some(1.0));
    assert_eq!(value(&after, "tortie_dataplane_synced"), Some(1.0));
    assert!(value(&after, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));
    assert!(after.contains("tortie_build_info{version=\""), "{after}");
    assert!(ready_body.contains("192.0.2.7"), "readiness names the peer: {ready_body}");

    tortie::testing::promtool_check_metrics(&after).unwrap();
}
