use super::*;

fn entries() -> Vec<PolicyEntry> {
    vec![
        PolicyEntry {
            kind: "GlobalNetworkPolicy".into(),
            name: "deny-db".into(),
            order: Some(10.0),
            selector: "app == \"db\"".into(),
            types: vec!["Ingress".into(), "Egress".into()],
            ingress_rules: 2,
            egress_rules: 0,
            status: "valid".into(),
            reason: None,
        },
        PolicyEntry {
            kind: "KubernetesNetworkPolicy".into(),
            name: "prod/bad".into(),
            order: None,
            selector: String::new(),
            types: vec![],
            ingress_rules: 0,
            egress_rules: 0,
            status: "invalid".into(),
            reason: Some("nftables refuses its rules: no such chain".into()),
        },
    ]
}

#[test]
fn the_list_shows_each_policy_with_its_status() {
    let text = render_list(&entries());
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].contains("KIND") && lines[1].contains("| INGRESS RULES | EGRESS RULES |"), "{text}");
    let row = |name: &str| lines.iter().find(|l| l.contains(name)).copied().unwrap_or_default().to_string();
    let columns = |l: String| l.split('|').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect::<Vec<_>>();
    assert_eq!(
        columns(row("deny-db")),
        ["GlobalNetworkPolicy", "deny-db", "10", "app == \"db\"", "Ingress,Egress", "2", "0", "valid"],
        "{text}"
    );
    assert_eq!(
        columns(row("prod/bad")),
        ["KubernetesNetworkPolicy", "prod/bad", "-", "0", "0", "invalid: nftables refuses its rules: no such chain"],
        "{text}"
    );
    assert_eq!(render_list(&[]), "No network policies.\n");
}

/// A packet egress allows (no policy) and ingress denies (rule 1 of a global policy).
fn trace_fixture() -> Trace {
    Trace {
        from: "prod/web".into(),
        from_address: "10.0.0.2".parse().unwrap(),
        to: Some("prod/db".into()),
        to_address: "10.0.0.1".parse().unwrap(),
        protocol: "tcp".into(),
        port: 80,
        egress: Decision {
            endpoint: "prod/web".into(),
            verdict: "allow".into(),
            policy: None,
            rule: None,
            reason: "no policy selects it for this direction".into(),
        },
        ingress: Some(Decision {
            endpoint: "prod/db".into(),
            verdict: "deny".into(),
            policy: Some("global/deny-db".into()),
            rule: Some(1),
            reason: "Deny".into(),
        }),
        allowed: false,
    }
}

#[test]
fn a_trace_shows_each_direction_and_the_outcome() {
    let text = render_trace(&trace_fixture());
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "prod/web (10.0.0.2) -> prod/db (10.0.0.1) port 80/tcp", "{text}");
    let columns = |l: &str| l.split('|').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect::<Vec<_>>();
    let row = |d: &str| lines.iter().find(|l| l.starts_with(&format!("| {d}"))).map(|l| columns(l)).unwrap_or_default();
    assert_eq!(
        row("egress"),
        ["egress", "prod/web", "allow", "-", "-", "no policy selects it for this direction"],
        "{text}"
    );
    assert_eq!(row("ingress"), ["ingress", "prod/db", "deny", "global/deny-db", "1", "Deny"], "{text}");
    assert_eq!(lines.last(), Some(&"denied"), "{text}");
}

#[test]
fn golden_list_and_trace_in_every_format() {
    crate::cli::output::assert_golden_formats("policy-list", &entries(), |e, _| render_list(e));
    crate::cli::output::assert_golden_formats("policy-trace", &trace_fixture(), |t, _| render_trace(t));
}
