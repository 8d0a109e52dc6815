//! `tortie bgp routes` and `tortie bgp peers`: the RIB and the sessions
//! from the agent's API, as tables, JSON or YAML.

use super::{AgentArgs, RoutesQueryArgs};
use super::{output, table};
use crate::api::status::PeerStatus;
use crate::api::{StatusReport, client};
use crate::bgp::rib::{RibSnapshot, RouteQuery};
use serde::de::DeserializeOwned;
use std::process::ExitCode;

fn fetch<T: DeserializeOwned>(args: &AgentArgs, path: &str) -> Result<T, ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
        eprintln!("tortie: cannot start the async runtime: {e}");
        ExitCode::from(1)
    })?;
    runtime.block_on(client::request_json(&args.socket, "GET", path, None::<&()>, args.timeout())).map_err(|e| {
        eprintln!("tortie: {e}");
        ExitCode::from(1)
    })
}

/// Prints `value` in the format the client asked for; exit 1 when it cannot be rendered.
pub(super) fn print<T: serde::Serialize>(
    args: &AgentArgs,
    value: &T,
    table: impl FnOnce(&T, bool) -> String,
) -> ExitCode {
    if output::print(args.output, value, table) { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// `tortie bgp routes`.
pub fn routes(args: &AgentArgs, query: &RoutesQueryArgs) -> ExitCode {
    let query = RouteQuery { prefix: query.prefix, longer: query.longer, peer: query.peer };
    let path = match query.to_query_string() {
        q if q.is_empty() => "/v1/bgp/routes".to_string(),
        q => format!("/v1/bgp/routes?{q}"),
    };
    match fetch::<RibSnapshot>(args, &path) {
        Ok(snapshot) => print(args, &snapshot, render_routes),
        Err(code) => code,
    }
}

/// `tortie bgp peers`.
pub fn peers(args: &AgentArgs) -> ExitCode {
    match fetch::<StatusReport>(args, "/v1/status") {
        Ok(report) => print(args, &report.peers, |peers, wide| render_peers(peers, super::status_cmd::now(), wide)),
        Err(code) => code,
    }
}

/// The peers as a table at unix time `now`: SINCE is when the session's state last changed (the
/// time today, else the date and minute), UPTIME how long ago that was, as BIRD's `show
/// protocols`. `wide` adds the negotiated timers, the flaps and the path to the peer node's blocks.
pub fn render_peers(peers: &[PeerStatus], now: u64, wide: bool) -> String {
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            let mut row = vec![
                p.address.clone(),
                p.as_number.to_string(),
                p.peer_type.clone(),
                p.state.clone(),
                table::since(p.since, now),
                table::duration(now.saturating_sub(p.since)),
                p.prefixes_received.to_string(),
                p.prefixes_advertised.to_string(),
                p.bfd.clone().unwrap_or_else(|| "-".into()),
            ];
            if wide {
                let seconds = |s: Option<u16>| s.map_or_else(|| "-".into(), |s| format!("{s}s"));
                row.extend([seconds(p.hold_time), seconds(p.keepalive), p.flaps.to_string(), p.tunnel_mode.clone()]);
            }
            row.push(p.info.clone());
            row
        })
        .collect();
    let mut headers =
        vec!["PEER ADDRESS", "AS", "PEER TYPE", "STATE", "SINCE", "UPTIME", "RECEIVED", "ADVERTISED", "BFD"];
    if wide {
        headers.extend(["HOLD TIME", "KEEPALIVE", "FLAPS", "PATH"]);
    }
    headers.push("INFO");
    table::render(&headers, &rows)
}

/// The RIB as a table: one row per path; `*` marks the best path, `=` the
/// other members of its ECMP set. `wide` adds the BGP origin, MED, communities, originator and
/// cluster list.
pub fn render_routes(snapshot: &RibSnapshot, wide: bool) -> String {
    // The ADD-PATH identifiers, when some session receives them: one peer's paths of a prefix
    // differ only by it.
    let path_ids = snapshot.routes.iter().any(|r| r.path_id.is_some());
    let rows: Vec<Vec<String>> = snapshot
        .routes
        .iter()
        .map(|r| {
            let marker = if r.best {
                "*"
            } else if r.multipath {
                "="
            } else {
                ""
            };
            let mut row = vec![
                marker.to_string(),
                r.prefix.to_string(),
                r.next_hop.map_or("self".to_string(), |a| a.to_string()),
                r.peer.map_or("local".to_string(), |a| a.to_string()),
            ];
            if path_ids {
                row.push(r.path_id.map_or(String::new(), |id| id.to_string()));
            }
            row.extend([r.as_path.clone(), r.local_pref.map_or(String::new(), |v| v.to_string())]);
            if wide {
                let cluster_list: Vec<String> = r.cluster_list.iter().map(ToString::to_string).collect();
                row.extend([
                    r.origin.clone(),
                    r.med.map_or(String::new(), |v| v.to_string()),
                    r.communities.join(" "),
                    r.originator_id.map_or(String::new(), |a| a.to_string()),
                    cluster_list.join(" "),
                ]);
            }
            row.extend([
                if r.stale { "stale".to_string() } else { String::new() },
                r.reason.clone().unwrap_or_default(),
                r.origin_of_own.clone().unwrap_or_default(),
            ]);
            row
        })
        .collect();
    let mut headers = vec!["", "PREFIX", "NEXT HOP", "PEER"];
    if path_ids {
        headers.push("PATH ID");
    }
    headers.extend(["AS PATH", "LOCAL PREF"]);
    if wide {
        headers.extend(["BGP ORIGIN", "MED", "COMMUNITIES", "ORIGINATOR", "CLUSTER LIST"]);
    }
    headers.extend(["STATE", "REASON LOST", "ORIGIN"]);
    let mut out = table::render(&headers, &rows);
    out.push_str(&format!(
        "{} prefixes, {} paths, {} attribute sets\n",
        snapshot.stats.loc_rib_prefixes, snapshot.stats.paths, snapshot.stats.attribute_sets
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::rib::RouteView;

    fn view(peer: &str, best: bool, multipath: bool, reason: Option<&str>) -> RouteView {
        RouteView {
            prefix: "10.244.1.0/26".parse().unwrap(),
            peer: Some(peer.parse().unwrap()),
            next_hop: Some(peer.parse().unwrap()),
            best,
            multipath,
            reason: reason.map(str::to_string),
            as_path: "65002".into(),
            origin: "igp".into(),
            local_pref: None,
            med: None,
            communities: vec![],
            originator_id: None,
            cluster_list: vec![],
            stale: false,
            origin_of_own: None,
            path_id: None,
        }
    }

    #[test]
    fn peers_table_shows_how_long_each_session_is_up() {
        let peer = |address: &str, state: &str, established_at: Option<u64>| PeerStatus {
            address: address.into(),
            as_number: 64512,
            peer_type: "node-to-node mesh".into(),
            state: state.into(),
            since: 1_000,
            info: String::new(),
            prefixes_received: 3,
            prefixes_advertised: 1,
            tunnel_mode: "direct".into(),
            hold_time: None,
            keepalive: None,
            established_at,
            flaps: 0,
            bfd: None,
        };
        let text = render_peers(
            &[peer("10.0.0.2", "established", Some(1_000)), peer("10.0.0.3", "active", None)],
            4_725,
            false,
        );
        // UPTIME: since the state changed, whatever the state; SINCE: when, today.
        assert!(
            text.contains("| 10.0.0.2     | 64512 | node-to-node mesh | established | 00:16:40 | 1h02m  | 3"),
            "{text}"
        );
        assert!(
            text.contains("| 10.0.0.3     | 64512 | node-to-node mesh | active      | 00:16:40 | 1h02m  | 3"),
            "{text}"
        );
    }

    /// 2026-12-06T14:10:40Z, as in the cluster view's tests.
    const NOW: u64 = 1_796_566_240;

    /// A session up for 3 days 4 hours (since another day) with BFD, one retrying for 12 minutes.
    fn peers_fixture() -> Vec<PeerStatus> {
        let up_since = NOW - (3 * 86_400 + 4 * 3600);
        vec![
            PeerStatus {
                address: "10.0.0.2".into(),
                as_number: 64512,
                peer_type: "node-to-node mesh".into(),
                state: "established".into(),
                since: up_since,
                info: String::new(),
                prefixes_received: 3,
                prefixes_advertised: 1,
                tunnel_mode: "direct".into(),
                hold_time: Some(90),
                keepalive: Some(30),
                established_at: Some(up_since),
                flaps: 2,
                bfd: Some("up".into()),
            },
            PeerStatus {
                address: "192.0.2.1".into(),
                as_number: 65001,
                peer_type: "global".into(),
                state: "active".into(),
                since: NOW - 725,
                info: "Connection refused".into(),
                prefixes_received: 0,
                prefixes_advertised: 0,
                tunnel_mode: "vxlan".into(),
                hold_time: None,
                keepalive: None,
                established_at: None,
                flaps: 0,
                bfd: None,
            },
        ]
    }

    #[test]
    fn golden_peers_in_every_format() {
        output::assert_golden_formats("bgp-peers", &peers_fixture(), |p, wide| render_peers(p, NOW, wide));
    }

    /// Two ECMP paths and a loser for a block, and a service address we originate.
    fn routes_fixture() -> RibSnapshot {
        let mut best = view("192.0.2.2", true, true, None);
        (best.local_pref, best.med, best.communities) = (Some(100), Some(10), vec!["64512:100".into()]);
        let mut reflected = view("192.0.2.4", false, false, Some("longer-as-path"));
        reflected.as_path = "65002 65003".into();
        (reflected.originator_id, reflected.cluster_list) =
            (Some("10.0.0.9".parse().unwrap()), vec!["10.0.0.1".parse().unwrap()]);
        reflected.stale = true;
        let mut own = view("192.0.2.2", true, true, None);
        (own.prefix, own.peer, own.next_hop, own.as_path) =
            ("10.96.0.10/32".parse().unwrap(), None, None, String::new());
        own.origin_of_own = Some("service prod/web cluster IP".into());
        let stats =
            crate::bgp::rib::RibStats { loc_rib_prefixes: 2, paths: 4, attribute_sets: 3, ..Default::default() };
        RibSnapshot {
            routes: vec![best, view("192.0.2.3", false, true, Some("higher-router-id")), reflected, own],
            stats,
        }
    }

    #[test]
    fn golden_routes_in_every_format() {
        output::assert_golden_formats("bgp-routes", &routes_fixture(), render_routes);
    }

    #[test]
    fn routes_table_marks_best_and_ecmp_and_shows_why_a_path_lost() {
        let snapshot = RibSnapshot {
            routes: vec![
                view("192.0.2.2", true, true, None),
                view("192.0.2.3", false, true, Some("higher-router-id")),
                view("192.0.2.4", false, false, Some("longer-as-path")),
            ],
            stats: Default::default(),
        };
        let text = render_routes(&snapshot, false);
        assert!(text.contains("| * | 10.244.1.0/26 | 192.0.2.2 | 192.0.2.2 | 65002"), "{text}");
        assert!(text.contains("| = | 10.244.1.0/26 | 192.0.2.3"), "{text}");
        assert!(text.contains("longer-as-path"), "{text}");
    }

    #[test]
    fn routes_table_shows_add_path_ids_when_a_session_receives_them() {
        let mut a = view("10.0.0.9", true, true, None);
        let mut b = view("10.0.0.9", false, true, Some("higher-router-id"));
        (a.path_id, b.path_id) = (Some(1), Some(2));
        let snapshot = RibSnapshot { routes: vec![a, b], stats: Default::default() };
        let text = render_routes(&snapshot, false);
        assert!(text.contains("|   PEER   | PATH ID | AS PATH |"), "{text}");
        assert!(
            text.contains("| 10.0.0.9 | 1       | 65002 ") && text.contains("| 10.0.0.9 | 2       | 65002 "),
            "{text}"
        );
        output::assert_golden_formats("bgp-routes-add-path", &snapshot, render_routes);
        let without = render_routes(&routes_fixture(), false);
        assert!(!without.contains("PATH ID"), "no column without ADD-PATH: {without}");
    }

    #[test]
    fn routes_table_shows_where_an_advertised_service_address_comes_from() {
        let mut own = view("192.0.2.2", true, true, None);
        (own.prefix, own.peer, own.next_hop) = ("10.96.0.10/32".parse().unwrap(), None, None);
        own.origin_of_own =
            Some("service prod/web cluster IP, internalTrafficPolicy=Local, endpoint on this node".into());
        let text = render_routes(&RibSnapshot { routes: vec![own], stats: Default::default() }, false);
        assert!(
            text.contains("| 10.96.0.10/32 | self     | local |") && text.contains("service prod/web cluster IP"),
            "{text}"
        );
    }
}
