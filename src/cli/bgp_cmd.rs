//! `tortie bgp routes` and `tortie bgp peers`: the RIB and the sessions
//! from the agent's API, as tables or JSON.

use super::table;
use super::{ClientArgs, OutputFormat};
use crate::api::status::PeerStatus;
use crate::api::{StatusReport, client};
use crate::bgp::rib::RibSnapshot;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::process::ExitCode;

fn fetch<T: DeserializeOwned>(args: &ClientArgs, path: &str) -> Result<T, ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
        eprintln!("tortie: cannot start the async runtime: {e}");
        ExitCode::from(1)
    })?;
    runtime.block_on(client::request_json(&args.socket, "GET", path, None::<&()>, args.timeout())).map_err(|e| {
        eprintln!("tortie: {e}");
        ExitCode::from(1)
    })
}

/// Prints `value` as the client asked: pretty JSON, or the table `table` renders.
pub(super) fn print<T: Serialize>(args: &ClientArgs, value: &T, table: impl FnOnce(&T) -> String) -> ExitCode {
    match args.output {
        OutputFormat::Json => match serde_json::to_string_pretty(value) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("tortie: cannot render JSON: {e}");
                return ExitCode::from(1);
            }
        },
        OutputFormat::Table => print!("{}", table(value)),
    }
    ExitCode::SUCCESS
}

/// `tortie bgp routes`.
pub fn routes(args: &ClientArgs) -> ExitCode {
    match fetch::<RibSnapshot>(args, "/v1/bgp/routes") {
        Ok(snapshot) => print(args, &snapshot, render_routes),
        Err(code) => code,
    }
}

/// `tortie bgp peers`.
pub fn peers(args: &ClientArgs) -> ExitCode {
    match fetch::<StatusReport>(args, "/v1/status") {
        Ok(report) => print(args, &report.peers, |peers| render_peers(peers, super::status_cmd::now())),
        Err(code) => code,
    }
}

/// The peers as a table at unix time `now`: SINCE is when the session's state last changed (the
/// time today, else the date and minute), UPTIME how long ago that was, as BIRD's `show
/// protocols`.
pub fn render_peers(peers: &[PeerStatus], now: u64) -> String {
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            vec![
                p.address.clone(),
                p.as_number.to_string(),
                p.peer_type.clone(),
                p.state.clone(),
                table::since(p.since, now),
                table::duration(now.saturating_sub(p.since)),
                p.prefixes_received.to_string(),
                p.prefixes_advertised.to_string(),
                p.bfd.clone().unwrap_or_else(|| "-".into()),
                p.info.clone(),
            ]
        })
        .collect();
    table::render(
        &["PEER ADDRESS", "AS", "PEER TYPE", "STATE", "SINCE", "UPTIME", "RECEIVED", "ADVERTISED", "BFD", "INFO"],
        &rows,
    )
}

/// The RIB as a table: one row per path; `*` marks the best path, `=` the
/// other members of its ECMP set.
pub fn render_routes(snapshot: &RibSnapshot) -> String {
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
            vec![
                marker.to_string(),
                r.prefix.to_string(),
                r.next_hop.map_or("self".to_string(), |a| a.to_string()),
                r.peer.map_or("local".to_string(), |a| a.to_string()),
                r.as_path.clone(),
                r.local_pref.map_or(String::new(), |v| v.to_string()),
                if r.stale { "stale".to_string() } else { String::new() },
                r.reason.clone().unwrap_or_default(),
                r.origin_of_own.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = table::render(
        &["", "PREFIX", "NEXT HOP", "PEER", "AS PATH", "LOCAL PREF", "STATE", "REASON LOST", "ORIGIN"],
        &rows,
    );
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
        let text =
            render_peers(&[peer("10.0.0.2", "established", Some(1_000)), peer("10.0.0.3", "active", None)], 4_725);
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
        let text = render_routes(&snapshot);
        assert!(text.contains("| * | 10.244.1.0/26 | 192.0.2.2 | 192.0.2.2 | 65002"), "{text}");
        assert!(text.contains("| = | 10.244.1.0/26 | 192.0.2.3"), "{text}");
        assert!(text.contains("longer-as-path"), "{text}");
    }

    #[test]
    fn routes_table_shows_where_an_advertised_service_address_comes_from() {
        let mut own = view("192.0.2.2", true, true, None);
        (own.prefix, own.peer, own.next_hop) = ("10.96.0.10/32".parse().unwrap(), None, None);
        own.origin_of_own =
            Some("service prod/web cluster IP, internalTrafficPolicy=Local, endpoint on this node".into());
        let text = render_routes(&RibSnapshot { routes: vec![own], stats: Default::default() });
        assert!(
            text.contains("| 10.96.0.10/32 | self     | local |") && text.contains("service prod/web cluster IP"),
            "{text}"
        );
    }
}
