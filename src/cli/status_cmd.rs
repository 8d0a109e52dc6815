//! `tortie status`: the agent's state in calicoctl's `node status` layout, or JSON or YAML.

use super::AgentArgs;
use super::{output, table};
use crate::api::{PeerStatus, StatusReport, client};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

/// Exit code when the agent answers but is not ready.
pub const EXIT_NOT_READY: u8 = 3;

pub fn run(args: &AgentArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tortie: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let fetch = client::request_json(&args.socket, "GET", "/v1/status", None::<&()>, args.timeout());
    let report: StatusReport = match runtime.block_on(fetch) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tortie: {e}");
            return ExitCode::from(1);
        }
    };
    if !output::print(args.output, &report, |r, wide| render(r, now(), wide)) {
        return ExitCode::from(1);
    }
    if report.ready { ExitCode::SUCCESS } else { ExitCode::from(EXIT_NOT_READY) }
}

/// The unix time now, in seconds.
pub(super) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Calico's state column: `up`, `start` or `down`.
fn short_state(state: &str) -> &'static str {
    match state {
        "established" => "up",
        "idle" => "down",
        _ => "start",
    }
}

fn info(p: &PeerStatus) -> String {
    let mut state = p.state.clone();
    if let Some(first) = state.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    let state = state.replace("sent", "Sent").replace("confirm", "Confirm");
    if p.info.is_empty() { state } else { format!("{state} {}", p.info) }
}

/// Renders the report as `calicoctl node status` does; `wide` adds each peer's uptime, AS,
/// prefix counts, BFD state and path to its node's blocks.
pub fn render(r: &StatusReport, now: u64, wide: bool) -> String {
    let mut out = format!(
        "tortie process is running (node {}, version {}, up {}, {}, {}).\n",
        r.node,
        r.version,
        table::duration(now.saturating_sub(r.started_at)),
        r.ipip_mode,
        if r.ready { "ready".to_string() } else { format!("not ready: {}", r.not_ready_reasons.join("; ")) }
    );
    for (family, v6) in [("IPv4", false), ("IPv6", true)] {
        let rows: Vec<Vec<String>> = r
            .peers
            .iter()
            .filter(|p| p.address.contains(':') == v6)
            .map(|p| {
                let mut row = vec![
                    p.address.clone(),
                    p.peer_type.clone(),
                    short_state(&p.state).into(),
                    table::since(p.since, now),
                ];
                if wide {
                    row.extend([
                        table::duration(now.saturating_sub(p.since)),
                        p.as_number.to_string(),
                        p.prefixes_received.to_string(),
                        p.prefixes_advertised.to_string(),
                        p.bfd.clone().unwrap_or_else(|| "-".into()),
                        p.tunnel_mode.clone(),
                    ]);
                }
                row.push(info(p));
                row
            })
            .collect();
        out.push_str(&format!("\n{family} BGP status\n"));
        if rows.is_empty() {
            out.push_str(&format!("No {family} peers found.\n"));
        } else {
            let mut headers = vec!["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE"];
            if wide {
                headers.extend(["UPTIME", "AS", "RECEIVED", "ADVERTISED", "BFD", "PATH"]);
            }
            headers.push("INFO");
            out.push_str(&table::render(&headers, &rows));
        }
    }
    if !r.paths.is_empty() {
        let rows: Vec<Vec<String>> = r.paths.iter().map(|p| vec![p.node.clone(), p.path.clone()]).collect();
        out.push_str("\nPaths to nodes whose blocks can be encapsulated\n");
        out.push_str(&table::render(&["NODE ADDRESS", "PATH"], &rows));
    }
    if !r.nat_outgoing_pools.is_empty() {
        out.push_str(&format!("\nNAT outgoing for pools: {}\n", r.nat_outgoing_pools.join(", ")));
    }
    if let Some(e) = &r.nftables_error {
        out.push_str(&format!("\nnftables table not written: {e}\n"));
    }
    if !r.unsupported_fields.is_empty() {
        let rows: Vec<Vec<String>> = r
            .unsupported_fields
            .iter()
            .map(|u| vec![format!("{}/{}", u.kind, u.name), u.field.clone(), u.reason.clone()])
            .collect();
        out.push_str("\nResource fields without effect\n");
        out.push_str(&table::render(&["RESOURCE", "FIELD", "WHY"], &rows));
    }
    if !r.invalid_policies.is_empty() {
        let rows: Vec<Vec<String>> =
            r.invalid_policies.iter().map(|p| vec![format!("{}/{}", p.kind, p.name), p.reason.clone()]).collect();
        out.push_str("\nNetwork policies skipped (the others apply)\n");
        out.push_str(&table::render(&["POLICY", "WHY"], &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(address: &str, state: &str, info: &str) -> PeerStatus {
        PeerStatus {
            address: address.into(),
            as_number: 64512,
            peer_type: "node-to-node mesh".into(),
            state: state.into(),
            since: 1_030,
            info: info.into(),
            prefixes_received: 1,
            prefixes_advertised: 1,
            tunnel_mode: "direct".into(),
            hold_time: Some(90),
            keepalive: Some(30),
            established_at: Some(84_604),
            flaps: 0,
            bfd: None,
        }
    }

    /// A ready node-a, up 65 s at time 1065, with nothing else to show.
    fn report() -> StatusReport {
        StatusReport {
            node: "node-a".into(),
            version: "0.1.0".into(),
            started_at: 1000,
            ready: true,
            not_ready_reasons: vec![],
            ipip_mode: "ipip-userspace".into(),
            peers: vec![],
            paths: vec![],
            unsupported_fields: vec![],
            invalid_policies: vec![],
            nat_outgoing_pools: vec![],
            nftables_error: None,
        }
    }

    #[test]
    fn renders_like_calicoctl_node_status() {
        let r = StatusReport {
            peers: vec![peer("172.17.8.102", "established", ""), peer("172.17.8.103", "active", "Connection refused")],
            ..report()
        };
        let text = render(&r, 1065, false);
        assert!(
            text.starts_with(
                "tortie process is running (node node-a, version 0.1.0, up 1m05s, ipip-userspace, ready).\n"
            )
        );
        assert!(text.contains("| 172.17.8.102 | node-to-node mesh | up    | 00:17:10 | Established"), "{text}");
        assert!(
            text.contains("| 172.17.8.103 | node-to-node mesh | start | 00:17:10 | Active Connection refused"),
            "{text}"
        );
        assert!(text.contains("IPv6 BGP status\nNo IPv6 peers found.\n"), "{text}");
        assert!(!text.contains("Paths to nodes"), "no section without encapsulated blocks: {text}");
    }

    #[test]
    fn golden_status_in_every_format() {
        // 2026-12-06T14:10:40Z; one peer up since another day, one retrying for 12 minutes.
        let now = 1_796_566_240;
        let mut up = peer("172.17.8.102", "established", "");
        (up.since, up.bfd) = (now - 3 * 86_400, Some("up".into()));
        let mut retrying = peer("fd00::3", "active", "Connection refused");
        retrying.since = now - 725;
        let r = StatusReport {
            started_at: now - 4 * 86_400,
            peers: vec![up, retrying],
            paths: vec![crate::api::status::NodePath { node: "10.40.2.13".into(), path: "vxlan".into() }],
            nat_outgoing_pools: vec!["10.244.0.0/16".into()],
            ..report()
        };
        output::assert_golden_formats("status", &r, |r, wide| render(r, now, wide));
    }

    #[test]
    fn shows_the_path_to_each_node_without_bgp_peers_too() {
        let r = StatusReport {
            nat_outgoing_pools: vec!["10.244.0.0/16".into()],
            paths: vec![
                crate::api::status::NodePath { node: "10.40.1.12".into(), path: "direct".into() },
                crate::api::status::NodePath { node: "10.40.2.13".into(), path: "vxlan".into() },
            ],
            unsupported_fields: vec![crate::api::status::UnsupportedField {
                kind: "BGPConfiguration".into(),
                name: "default".into(),
                field: "programClusterRoutes".into(),
                reason: "tortie always programs the routes itself".into(),
            }],
            invalid_policies: vec![crate::api::status::InvalidPolicy {
                kind: "NetworkPolicy".into(),
                name: "prod/bad".into(),
                reason: "nftables refuses its rules: no such chain".into(),
            }],
            ..report()
        };
        let text = render(&r, 1065, false);
        assert!(text.contains("No IPv4 peers found."), "{text}");
        assert!(text.contains("| 10.40.2.13   | vxlan  |"), "{text}");
        assert!(text.contains("| 10.40.1.12   | direct |"), "{text}");
        assert!(
            text.contains(
                "| BGPConfiguration/default | programClusterRoutes | tortie always programs the routes itself |"
            ),
            "{text}"
        );
        assert!(text.contains("\nNAT outgoing for pools: 10.244.0.0/16\n"), "{text}");
        assert!(text.contains("| NetworkPolicy/prod/bad | nftables refuses its rules: no such chain |"), "{text}");
    }
}
