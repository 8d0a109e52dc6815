//! The binary the agent copies onto a host as its CNI plugin is linked statically, so it runs on
//! hosts with an older glibc than the image's. `scripts/build-static.sh` builds it (the README's
//! test command runs it first; the image's Dockerfile builds the same way).

use std::path::Path;
use std::process::{Command, Stdio};

const STATIC_BINARY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/static/tortie");

fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn the_static_build_has_no_dynamic_dependencies_and_answers_as_a_cni_plugin() {
    assert!(
        Path::new(STATIC_BINARY).is_file(),
        "{STATIC_BINARY} is missing: run `bash scripts/build-static.sh` (the README's test command does)"
    );
    let file = output("file", &["-b", STATIC_BINARY]);
    assert!(file.contains("static-pie linked") || file.contains("statically linked"), "file says: {file}");
    // ldd exits 1 on a static executable and says so.
    let ldd = output("ldd", &[STATIC_BINARY]);
    assert!(ldd.contains("statically linked") || ldd.contains("not a dynamic executable"), "ldd says: {ldd}");

    let mut child = Command::new(STATIC_BINARY)
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(br#"{"cniVersion":"1.0.0"}"#).unwrap();
    let out = child.wait_with_output().unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(answer["supportedVersions"].as_array().unwrap().iter().any(|v| v == "1.1.0"), "{answer}");
}
