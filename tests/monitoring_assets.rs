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

fn yaml_documents(path: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(repo(path)).unwrap();
    serde_norway::Deserializer::from_str(&text).map(|d| serde_json::Value::deserialize(d).unwrap()).collect()
}

#[test]
fn the_prometheus_operator_objects_carry_the_same_rules_and_scrape_the_daemonsets_port() {
    let rules = &yaml_documents("monitoring/prometheus-rules.yaml")[0];
    let objects = yaml_documents("deploy/monitoring.yaml");
    let of = |kind: &str| objects.iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"));
    assert!(
        of("PrometheusRule")["spec"]["groups"] == rules["groups"],
        "deploy/monitoring.yaml is stale: run scripts/gen-deploy.sh"
    );
    let daemonset = yaml_documents("deploy/tortie.yaml").into_iter().find(|o| o["kind"] == "DaemonSet").unwrap();
    let pod = &daemonset["spec"]["template"];
    let monitor = &of("PodMonitor")["spec"];
    for (key, value) in monitor["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&pod["metadata"]["labels"][key], value, "the PodMonitor selects the agent's pods");
    }
    let ports: Vec<&serde_json::Value> =
        pod["spec"]["containers"].as_array().unwrap().iter().flat_map(|c| c["ports"].as_array().unwrap()).collect();
    for endpoint in monitor["podMetricsEndpoints"].as_array().unwrap() {
        assert!(ports.iter().any(|p| p["name"] == endpoint["port"]), "{endpoint} names a port of the agent");
    }
}

#[test]
fn every_alert_has_a_runbook_section_in_the_operator_guide() {
    let rules = &yaml_documents("monitoring/prometheus-rules.yaml")[0];
    let guide = std::fs::read_to_string(repo("docs/operator-guide.md")).unwrap();
    // GitHub's anchors: the heading lower-cased, spaces to dashes, punctuation dropped.
    let anchors: BTreeSet<String> = guide
        .lines()
        .filter_map(|l| l.strip_prefix("### ").or_else(|| l.strip_prefix("## ")))
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .collect::<String>()
                .replace(' ', "-")
        })
        .collect();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let alert = rule["alert"].as_str().unwrap();
            let url =
                rule["annotations"]["runbook_url"].as_str().unwrap_or_else(|| panic!("{alert} has no runbook_url"));
            let anchor = url.strip_prefix("docs/operator-guide.md#").unwrap_or_else(|| panic!("{alert}: {url}"));
            assert!(anchors.contains(anchor), "{alert}: no section #{anchor} in docs/operator-guide.md");
        }
    }
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

/// The width and height a PNG's IHDR chunk states, if `bytes` is a PNG.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let ihdr = bytes.strip_prefix(b"\x89PNG\r\n\x1a\n")?.get(8..16)?;
    Some((u32::from_be_bytes(ihdr[..4].try_into().ok()?), u32::from_be_bytes(ihdr[4..].try_into().ok()?)))
}

#[test]
fn the_dashboard_preview_is_current_with_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("preview.svg");
    let out = Command::new("python3")
        .arg(repo("monitoring/render-dashboard.py"))
        .arg(repo("monitoring/grafana-dashboard.json"))
        .arg("--svg")
        .arg(&svg)
        .args(["--png", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let drawn = std::fs::read_to_string(&svg).unwrap();
    let shipped = std::fs::read_to_string(repo("docs/grafana-dashboard.svg")).unwrap();
    assert!(drawn == shipped, "docs/grafana-dashboard.svg is stale: run python3 monitoring/render-dashboard.py");
    let attr = |name: &str| -> u32 {
        let start = drawn.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
        drawn[start..].split('"').next().unwrap().parse().unwrap()
    };
    let png = std::fs::read(repo("docs/grafana-dashboard.png")).unwrap();
    assert_eq!(png_size(&png), Some((attr("width"), attr("height"))), "docs/grafana-dashboard.png is the SVG's image");
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
