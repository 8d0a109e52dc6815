//! `tortie policy list` and `tortie policy trace`: the agent's network policies and the
//! verdict for one packet, from its API (so they see the agent's view of the cluster), as
//! tables, JSON or YAML. Every field is in the table already: `wide` is the table.

use super::AgentArgs;
use super::bgp_cmd::print;
use super::table;
use crate::api::client::{self, ClientError};
use crate::api::policy::{PolicyEntry, TraceRequest};
use crate::policy::trace::{Decision, Trace};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::process::ExitCode;

/// One call to the agent; the error printed is the agent's own message when it gives one.
fn call<T: DeserializeOwned, B: Serialize>(
    args: &AgentArgs,
    method: &str,
    path: &str,
    body: Option<&B>,
) -> Result<T, ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
        eprintln!("tortie: cannot start the async runtime: {e}");
        ExitCode::from(1)
    })?;
    runtime.block_on(client::request_json(&args.socket, method, path, body, args.timeout())).map_err(|e| {
        let message = match &e {
            ClientError::Status { body, .. } => serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| e.to_string()),
            _ => e.to_string(),
        };
        eprintln!("tortie: {message}");
        ExitCode::from(1)
    })
}

/// `tortie policy list`.
pub fn list(args: &AgentArgs) -> ExitCode {
    match call::<Vec<PolicyEntry>, ()>(args, "GET", "/v1/policies", None) {
        Ok(entries) => print(args, &entries, |e, _| render_list(e)),
        Err(code) => code,
    }
}

/// `tortie policy trace`: `port` is `80/tcp` (`/tcp` may be left out).
pub fn trace(args: &AgentArgs, from: &str, to: &str, port: &str) -> ExitCode {
    let (number, protocol) = port.split_once('/').unwrap_or((port, "tcp"));
    let Ok(number) = number.parse::<u16>() else {
        eprintln!("tortie: --port {port:?}: write PORT/PROTOCOL, as 80/tcp");
        return ExitCode::from(1);
    };
    let request =
        TraceRequest { from: from.to_string(), to: to.to_string(), port: number, protocol: protocol.to_string() };
    match call::<Trace, _>(args, "POST", "/v1/policies/trace", Some(&request)) {
        Ok(trace) => print(args, &trace, |t, _| render_trace(t)),
        Err(code) => code,
    }
}

/// The policies as a table.
pub fn render_list(entries: &[PolicyEntry]) -> String {
    if entries.is_empty() {
        return "No network policies.\n".to_string();
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let status = match &e.reason {
                Some(reason) => format!("{}: {reason}", e.status),
                None => e.status.clone(),
            };
            vec![
                e.kind.clone(),
                e.name.clone(),
                e.order.map_or_else(|| "-".to_string(), |o| o.to_string()),
                e.selector.clone(),
                e.types.join(","),
                e.ingress_rules.to_string(),
                e.egress_rules.to_string(),
                status,
            ]
        })
        .collect();
    table::render(&["KIND", "NAME", "ORDER", "SELECTOR", "TYPES", "INGRESS RULES", "EGRESS RULES", "STATUS"], &rows)
}

/// A trace as a table: one row per direction, then the outcome.
pub fn render_trace(t: &Trace) -> String {
    let to = match &t.to {
        Some(pod) => format!("{pod} ({})", t.to_address),
        None => t.to_address.to_string(),
    };
    let row = |direction: &str, d: &Decision| {
        vec![
            direction.to_string(),
            d.endpoint.clone(),
            d.verdict.clone(),
            d.policy.clone().unwrap_or_else(|| "-".into()),
            d.rule.map_or_else(|| "-".into(), |r| r.to_string()),
            d.reason.clone(),
        ]
    };
    let mut rows = vec![row("egress", &t.egress)];
    rows.extend(t.ingress.as_ref().map(|d| row("ingress", d)));
    let mut out = format!("{} ({}) -> {to} port {}/{}\n", t.from, t.from_address, t.port, t.protocol);
    out.push_str(&table::render(&["DIRECTION", "AT", "VERDICT", "POLICY", "RULE", "WHY"], &rows));
    out.push_str(if t.allowed { "allowed\n" } else { "denied\n" });
    out
}

#[cfg(test)]
#[path = "policy_cmd_tests.rs"]
mod tests;
