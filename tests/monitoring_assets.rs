//! The shipped alert rules and Grafana dashboard: promtool accepts the
//! rules, the dashboard is valid JSON, and every metric either names is one
//! a running agent serves (so a renamed metric breaks this test, not a
//! production dashboard).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tortie::netns::Topology;
use tortie::testing::wait_until;

const METRICS: &str = "127.0.0.1:19479";

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Metric family names in an exposition, from its `# TYPE` lines, with the
/// suffixes PromQL uses for each type.
fn served_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
        names.insert(name.to_string());
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            _ => &[],
        };
        for s in suffixes {
            names.insert(format!("{name}{s}"));
        }
    }
    names
}

/// Metric names an expression uses: identifiers starting with `tortie_` or `process_`.
fn used_names(expr: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\b((?:tortie|process)_[a-zA-Z0-9_]+)").unwrap();
    re.captures_iter(expr).map(|c| c[1].to_string()).collect()
}

fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(repo("monitoring/prometheus-rules.yaml"))
        .output()
        .expect("promtool (Debian package prometheus) is installed");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_dashboard_is_current_with_its_generator() {
    let dir = tempfile::tempdir().unwrap();
    let script = repo("monitoring/make-dashboard.py");
    let copy = dir.path().join("make-dashboard.py");
    std::fs::copy(&script, &copy).unwrap();
    let status = Command::new("python3").arg(&copy).status().unwrap();
    assert!(status.success());
    let generated = std::fs::read_to_string(dir.path().join("grafana-dashboard.json")).unwrap();
    let shipped = std::fs::read_to_string(repo("monitoring/grafana-dashboard.json")).unwrap();
    assert!(
        generated == shipped,
        "monitoring/grafana-dashboard.json is stale: run python3 monitoring/make-dashboard.py"
    );
}

#[test]
fn every_metric_the_rules_and_dashboard_use_is_served_by_a_running_agent() {
    let mut t = Topology::new("monassets").unwrap();
    t.add_namespace("n").unwrap();
    t.add_namespace("peer").unwrap();
    t.add_veth(("n", "eth1", Some("10.124.0.5/24")), ("peer", "eth1", Some("10.124.0.1/24"))).unwrap();
    let dir = t.dir().to_path_buf();
    let config = dir.join("tortie.yaml");
    // One configured peer (never up) with BFD so the per-peer BGP and BFD series exist; a pool
    // with IP-in-IP so the tunnel series exist too.
    std::fs::write(
        &config,
        format!(
            "node: {{name: mon}}\ndatastore: {{sqlite_path: {db}}}\napi: {{socket: {sock}}}\nmetrics: {{listen: \"{METRICS}\"}}\n\
             bgp: {{as_number: 64600, peers: [{{address: 10.124.0.1, as_number: 65001, bfd: {{enabled: true}}}}]}}\n\
             ipam: {{default_ipv4_pool_cidr: 10.250.0.0/16, default_ipv4_ipip_mode: Always}}\n\
             ipip: {{implementation: userspace, userspace_device: ttmon0}}\n",
            db = dir.join("tortie.db").display(),
            sock = dir.join("api.sock").display(),
        ),
    )
    .unwrap();
    let _agent = t.spawn("n", &[env!("CARGO_BIN_EXE_tortie"), "node", "--config", config.to_str().unwrap()]).unwrap();
    let script = format!(
        "import urllib.request; print(urllib.request.urlopen('http://{METRICS}/metrics', timeout=2).read().decode(), end='')"
    );
    let exposition = wait_until("the agent's metrics with the peer's series", Duration::from_secs(30), || {
        let out = t.exec("n", &["python3", "-c", &script]).ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("tortie_bgp_session_up{").then_some(text)
    })
    .unwrap();
    let served = served_names(&exposition);

    let mut all = Vec::new();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("monitoring/grafana-dashboard.json")).unwrap()).unwrap();
    exprs(&dashboard, &mut all);
    let rules: serde_json::Value =
        serde_norway::from_str(&std::fs::read_to_string(repo("monitoring/prometheus-rules.yaml")).unwrap()).unwrap();
    exprs(&rules, &mut all);
    assert!(all.len() > 30, "found only {} expressions", all.len());
    let missing: BTreeSet<String> = all.iter().flat_map(|e| used_names(e)).filter(|n| !served.contains(n)).collect();
    assert!(missing.is_empty(), "not served by the agent: {missing:?}\nserved: {served:?}");
}
