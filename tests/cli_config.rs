//! `tortie --help` and `tortie config check`, run as a user runs them.

use std::process::Command;

fn tortie(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tortie"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("tortie runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn help_lists_every_subcommand() {
    let (code, out, _) = tortie(&["--help"], &[]);
    assert_eq!(code, 0);
    for sub in ["node", "status", "ipam", "bgp", "cni", "lab", "config", "crds", "completion", "man", "version"] {
        assert!(out.lines().any(|l| l.trim_start().starts_with(sub)), "`{sub}` missing from:\n{out}");
    }
    let (_, bgp, _) = tortie(&["bgp", "--help"], &[]);
    for sub in ["peers", "routes", "decode", "encode"] {
        assert!(bgp.lines().any(|l| l.trim_start().starts_with(sub)), "`bgp {sub}` missing from:\n{bgp}");
    }
    let (_, lab, _) = tortie(&["lab", "--help"], &[]);
    for sub in ["up", "down", "exec"] {
        assert!(lab.lines().any(|l| l.trim_start().starts_with(sub)), "`lab {sub}` missing from:\n{lab}");
    }
}

#[test]
fn config_check_reports_every_problem_with_path_and_value_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "bad.yaml",
        "bgp:\n  as_number: 4294967296\n  hold_time_seconds: 2\n  typo: 1\n  peers:\n    - {address: not-an-ip, as_number: 65001}\n    - {as_number: 65002}\n    - {address: 10.0.0.9, as_number: 65003, ebgp_multihop: 0}\ndataplane:\n  route_protocol: 80\ndatastore:\n  type: mysql\n",
    );
    let (code, out, err) = tortie(&["config", "check", &file], &[]);
    assert_eq!(code, 2, "stdout: {out}\nstderr: {err}");
    for expected in [
        "bgp.as_number: 4294967296 is not a valid AS number",
        "bgp.hold_time_seconds: 2 is not a valid hold time",
        "bgp.typo: unknown field",
        "bgp.peers[0].address: \"not-an-ip\" is not valid",
        "bgp.peers[1].address: is required",
        // Indices refer to the document even after earlier elements failed.
        "bgp.peers[2].ebgp_multihop: 0 is not a valid TTL",
        "dataplane.route_protocol: 80 is the route protocol of Calico Felix",
        "datastore.type: \"mysql\" is not one of sqlite, etcd, kubernetes",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn config_check_accepts_a_good_file_and_applies_environment_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "good.yaml", "bgp:\n  as_number: 65000\n");
    let (code, _, err) = tortie(&["config", "check", &file], &[]);
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = tortie(&["config", "check", "--print", &file], &[("TORTIE_BGP_AS_NUMBER", "65010")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("as_number: 65010"), "environment must win over the file:\n{out}");

    let (code, _, err) = tortie(&["config", "check", &file], &[("TORTIE_BGP_LISTEN_PORT", "0")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bgp.listen_port: 0 is not a usable port (from environment variable TORTIE_BGP_LISTEN_PORT)"),
        "{err}"
    );
}

#[test]
fn environment_values_are_read_by_the_field_type() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "empty.yaml", "");
    for name in ["12345", "true", "0x1f", "null"] {
        let (code, out, err) = tortie(&["config", "check", "--print", &file], &[("TORTIE_NODE_NAME", name)]);
        assert_eq!(code, 0, "TORTIE_NODE_NAME={name}: {err}");
        assert!(out.contains(&format!("name: '{name}'")), "TORTIE_NODE_NAME={name} must be the name:\n{out}");
    }
    let (code, _, err) = tortie(&["config", "check", &file], &[("TORTIE_BGP_LISTEN_PORT", "http")]);
    assert_eq!(code, 2);
    assert!(err.contains("bgp.listen_port: \"http\"") && err.contains("TORTIE_BGP_LISTEN_PORT"), "{err}");
}

#[test]
fn secrets_are_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "secret.yaml",
        "bgp:\n  peers:\n    - {address: 10.0.0.1, as_number: 65001, password: 987654321}\n    - {address: 10.0.0.2, as_number: 65001, password: s3cr3t-ok}\n",
    );
    let (code, out, err) = tortie(&["config", "check", "--print", &file], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("bgp.peers[0].password: must be a string (value not shown)"), "{err}");
    assert!(!err.contains("987654321") && !out.contains("987654321"), "{err}");

    let good =
        write(&dir, "good.yaml", "bgp:\n  peers:\n    - {address: 10.0.0.2, as_number: 65001, password: s3cr3t-ok}\n");
    let (code, out, err) = tortie(&["config", "check", "--print", &good], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("password: <redacted>") && !out.contains("s3cr3t-ok"), "{out}");
}

#[test]
fn config_check_names_syntax_errors_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "broken.yaml", "bgp: [unclosed\n");
    let (code, _, err) = tortie(&["config", "check", &file], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("broken.yaml: not valid YAML"), "{err}");

    let (code, _, err) = tortie(&["config", "check", "/nonexistent/tortie.yaml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read config file /nonexistent/tortie.yaml"), "{err}");
}

#[test]
fn cni_version_answers_with_supported_versions() {
    let (code, out, _) = tortie(&["cni"], &[("CNI_COMMAND", "VERSION")]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    tortie::testing::json_subset(
        &serde_json::json!({"cniVersion": "1.0.0", "supportedVersions": ["1.0.0", "0.4.0"]}),
        &v,
    )
    .unwrap();
}

#[test]
fn crds_prints_one_definition_per_resource() {
    let (code, out, _) = tortie(&["crds"], &[]);
    assert_eq!(code, 0);
    let docs: Vec<serde_json::Value> =
        out.split("\n---\n").filter(|d| !d.trim().is_empty()).map(|d| serde_norway::from_str(d).unwrap()).collect();
    for kind in ["IPPool", "IPAMBlock", "BlockAffinity", "IPAMHandle", "BGPPeer", "BGPConfiguration"] {
        assert!(docs.iter().any(|d| d["spec"]["names"]["kind"] == kind), "{kind} missing");
    }
    assert!(docs.iter().all(|d| d["kind"] == "CustomResourceDefinition"));
}

#[test]
fn config_check_shows_the_vxlan_section_and_names_its_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "vxlan.yaml", "vxlan:\n  port: 8472\n");
    let (code, out, err) = tortie(&["config", "check", "--print", &file], &[("TORTIE_VXLAN_VNI", "5000")]);
    assert_eq!(code, 0, "{err}");
    for expected in ["vxlan:", "vni: 5000", "port: 8472", "device: vxlan.tortie", "device_v6: vxlan-v6.tortie"] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    let (code, _, err) = tortie(&["config", "check", &file], &[("TORTIE_VXLAN_VNI", "0")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("vxlan.vni: 0 is not a VXLAN network identifier (1 to 16777215) (from environment variable TORTIE_VXLAN_VNI)"),
        "{err}"
    );
}
