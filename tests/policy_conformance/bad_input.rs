//! Malformed policies given to `tortie apply`: each refused (exit 2) with the field path and
//! the reason, and a file holding good and bad documents writes nothing at all.

use std::path::Path;
use std::process::{Command, Output};

const CALICO_GLOBAL: &str = "apiVersion: crd.tortie.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: ";
const CALICO: &str = "apiVersion: crd.tortie.io/v1\nkind: NetworkPolicy\nmetadata: {name: c, namespace: x}\nspec: ";
const KUBE: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k, namespace: x}\nspec: ";

/// A document header, its spec, the field path the error must name and its reason.
const MALFORMED: &[(&str, &str, &str, &str)] = &[
    (CALICO_GLOBAL, r#"{selector: "pod == 'a' &&"}"#, "spec.selector", "column 14"),
    (CALICO_GLOBAL, r#"{selector: "pod in {'a'"}"#, "spec.selector", "column 12: expected , or }"),
    (CALICO_GLOBAL, r#"{namespaceSelector: "has("}"#, "spec.namespaceSelector", "column 5: expected a label"),
    (CALICO_GLOBAL, r#"{serviceAccountSelector: "=="}"#, "spec.serviceAccountSelector", "column 1"),
    (
        CALICO_GLOBAL,
        r#"{ingress: [{action: Allow, source: {selector: "a = 'b'"}}]}"#,
        "spec.ingress[0].source.selector",
        "column 3: expected ==",
    ),
    (CALICO_GLOBAL, "{colour: red}", "spec.colour", "unknown field `colour`"),
    (CALICO_GLOBAL, "{ingress: [{action: Allow, colour: red}]}", "spec.ingress[0].colour", "unknown field `colour`"),
    (CALICO_GLOBAL, "{ingress: [{action: Allw}]}", "spec.ingress[0].action", "unknown variant `Allw`"),
    (
        CALICO_GLOBAL,
        "{ingress: [{action: Allow, protocol: TCP, destination: {ports: ['90:80']}}]}",
        "spec.ingress[0].destination.ports[0]",
        "reversed port range: 90 > 80",
    ),
    (
        CALICO_GLOBAL,
        "{ingress: [{action: Allow, protocol: TCP, destination: {ports: [70000]}}]}",
        "spec.ingress[0].destination.ports[0]",
        "70000 is not a port",
    ),
    (
        CALICO,
        "{ingress: [{action: Allow, protocol: TCP, destination: {ports: [':80']}}]}",
        "spec.ingress[0].destination.ports[0]",
        "is not a port range",
    ),
    (
        CALICO_GLOBAL,
        "{ingress: [{action: Allow, destination: {ports: [80]}}]}",
        "spec.ingress[0].destination.ports",
        "needs protocol",
    ),
    (
        CALICO_GLOBAL,
        "{ingress: [{action: Allow, source: {nets: [10.0.0.0/33]}}]}",
        "spec.ingress[0].source.nets[0]",
        "\"10.0.0.0/33\" is not a CIDR",
    ),
    (
        CALICO_GLOBAL,
        "{ingress: [{action: Allow, source: {notNets: [banana]}}]}",
        "spec.ingress[0].source.notNets[0]",
        "\"banana\" is not a CIDR",
    ),
    (
        CALICO_GLOBAL,
        "{ingress: [{action: Allow, protocol: TCPX}]}",
        "spec.ingress[0].protocol",
        "\"TCPX\" is not a protocol",
    ),
    (
        CALICO_GLOBAL,
        "{ingress: [{action: Allow, protocol: 300}]}",
        "spec.ingress[0].protocol",
        "300 is not a protocol number",
    ),
    (
        CALICO_GLOBAL,
        "{ingress: [{action: Allow, protocol: ICMP, icmp: {code: 1}}]}",
        "spec.ingress[0].icmp.code",
        "needs a type",
    ),
    (
        CALICO_GLOBAL,
        "{ingress: [{action: Allow, protocol: ICMP, icmp: {type: 300}}]}",
        "spec.ingress[0].icmp.type",
        "300 is not an ICMP type",
    ),
    (
        CALICO_GLOBAL,
        "{ingress: [{action: Allow, protocol: TCP, notICMP: {type: 8}}]}",
        "spec.ingress[0].notICMP",
        "needs protocol ICMP",
    ),
    (
        CALICO_GLOBAL,
        "{ingress: [{action: Allow, protocol: TCP, destination: {notPorts: [http]}}]}",
        "spec.ingress[0].destination.notPorts[0]",
        "named port \"http\" is not supported",
    ),
    (CALICO_GLOBAL, "{ingress: [{action: Allow, ipVersion: 5}]}", "spec.ingress[0].ipVersion", "5 is not 4 or 6"),
    (CALICO_GLOBAL, "{tier: security}", "spec.tier", "only the \"default\" tier"),
    (CALICO_GLOBAL, "{types: [Sideways]}", "spec.types[0]", "unknown variant `Sideways`"),
    (CALICO_GLOBAL, "{order: banana}", "spec.order", "expected f64"),
    (CALICO_GLOBAL, "{doNotTrack: true}", "spec.doNotTrack", "not supported"),
    (CALICO_GLOBAL, "{ingress: [{action: Allow, http: {methods: [GET]}}]}", "spec.ingress[0].http", "not supported"),
    (
        CALICO,
        "{ingress: [{action: Allow, source: {serviceAccounts: {names: [a]}}}]}",
        "spec.ingress[0].source.serviceAccounts",
        "not supported",
    ),
    (
        KUBE,
        "{podSelector: {}, ingress: [{ports: [{port: 81, endPort: 80}]}]}",
        "spec.ingress[0].ports[0].endPort",
        "80 is below port 81",
    ),
    (
        KUBE,
        "{podSelector: {}, ingress: [{ports: [{endPort: 80}]}]}",
        "spec.ingress[0].ports[0].endPort",
        "needs a numeric port",
    ),
    (
        KUBE,
        "{podSelector: {}, ingress: [{ports: [{port: http, endPort: 80}]}]}",
        "spec.ingress[0].ports[0].endPort",
        "not the named port \"http\"",
    ),
    (
        KUBE,
        "{podSelector: {}, ingress: [{ports: [{port: 80, protocol: ICMP}]}]}",
        "spec.ingress[0].ports[0].protocol",
        "\"ICMP\" is not TCP, UDP or SCTP",
    ),
    (KUBE, "{podSelector: {}, ingress: [{ports: [{port: 0}]}]}", "spec.ingress[0].ports[0].port", "0 is not a port"),
    (
        KUBE,
        "{podSelector: {}, ingress: [{ports: [{port: Not_A_Name}]}]}",
        "spec.ingress[0].ports[0].port",
        "is not a port name",
    ),
    (
        KUBE,
        "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}",
        "spec.ingress[0].from[0].ipBlock.cidr",
        "is not a CIDR",
    ),
    (
        KUBE,
        "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]}",
        "spec.ingress[0].from[0].ipBlock.except[0]",
        "is not inside cidr",
    ),
    (
        KUBE,
        "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}",
        "spec.ingress[0].from[0].ipBlock",
        "cannot be given with podSelector",
    ),
    (
        KUBE,
        "{podSelector: {matchExpressions: [{key: a, operator: Sometimes}]}}",
        "spec.podSelector.matchExpressions[0].operator",
        "unknown variant `Sometimes`",
    ),
    (
        KUBE,
        "{podSelector: {matchExpressions: [{key: a, operator: In}]}}",
        "spec.podSelector.matchExpressions[0].values",
        "In needs at least one value",
    ),
    (
        KUBE,
        "{podSelector: {matchExpressions: [{key: a, operator: Exists, values: [b]}]}}",
        "spec.podSelector.matchExpressions[0].values",
        "Exists takes no values",
    ),
    (
        KUBE,
        "{podSelector: {matchLabels: {'bad key!': a}}}",
        "spec.podSelector.matchLabels",
        "\"bad key!\" is not a label key",
    ),
    (KUBE, "{policyTypes: [Sideways]}", "spec.policyTypes[0]", "unknown variant `Sideways`"),
    (KUBE, "{podSelector: {}, egress: [{too: []}]}", "spec.egress[0].too", "unknown field `too`"),
];

fn apply(dir: &Path, text: &str) -> Output {
    let file = dir.join("policy.yaml");
    std::fs::write(&file, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_tortie"))
        .args(["apply", "-f", file.to_str().unwrap(), "--config", dir.join("tortie.yaml").to_str().unwrap()])
        .output()
        .unwrap()
}

/// The names stored of a kind, as `tortie get` lists them.
fn stored(dir: &Path, kind: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_tortie"))
        .args(["get", kind, "-o", "json", "--config", dir.join("tortie.yaml").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "get {kind}: {}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn malformed_policies_are_refused_with_field_and_reason_and_nothing_is_half_applied() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("datastore:\n  type: sqlite\n  sqlite_path: {}\n", dir.path().join("t.db").display());
    std::fs::write(dir.path().join("tortie.yaml"), config).unwrap();
    assert!(MALFORMED.len() >= 30);
    for (head, spec, path, reason) in MALFORMED {
        let out = apply(dir.path(), &format!("{head}{spec}\n"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{spec}: {err}");
        let line = err.lines().next().unwrap_or_default();
        assert!(
            line.contains(&format!(": {path}: ")) && line.contains(reason),
            "{spec}: wanted {path}: …{reason}…, got\n{err}"
        );
        assert!(err.contains("nothing was written") && !err.contains("panicked"), "{err}");
    }

    // Good documents around bad ones: every bad one is named, and none is written.
    let good_namespace = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {env: prod}}\n";
    let good = format!("{KUBE}{{podSelector: {{}}, policyTypes: [Ingress]}}\n");
    let file = format!(
        "{good_namespace}---\n{good}---\n{CALICO_GLOBAL}{{ingress: [{{action: Allw}}]}}\n---\n{CALICO}{{selector: \"a ==\"}}\n"
    );
    let out = apply(dir.path(), &file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("GlobalNetworkPolicy/g: spec.ingress[0].action"), "{err}");
    assert!(err.contains("NetworkPolicy/x/c: spec.selector"), "{err}");
    for kind in ["Namespace", "KubernetesNetworkPolicy", "NetworkPolicy", "GlobalNetworkPolicy"] {
        assert_eq!(stored(dir.path(), kind), Vec::<String>::new(), "{kind} half-applied");
    }
    // The good documents alone are written.
    let out = apply(dir.path(), &format!("{good_namespace}---\n{good}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stored(dir.path(), "Namespace"), vec!["x"]);
}
