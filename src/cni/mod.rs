//! The CNI plugin (`docs/cni.md`): the binary run as `tortie cni`, or under the name
//! `tortie-cni` (a symlink a runtime finds in its plugin directory, named by the netconf's
//! `type`). CNI spec 1.0.0/1.1.0, also answering 0.3.0, 0.3.1 and 0.4.0 configurations in
//! their own version: ADD, DEL, CHECK, VERSION, GC and STATUS.
//!
//! - [`spec`]: the network configuration, CNI_* environment and result JSON.
//! - [`ops`]: the commands; addresses and host routes come from the agent's workload API.
//! - [`link`]: the veth pair and the pod's addresses and routes, through rtnetlink in process.
//! - [`error`]: CNI error codes and the error JSON.

pub mod error;
pub mod link;
pub mod ops;
pub mod spec;

use error::{CniError, INVALID_ENV};
use serde_json::json;
use spec::SUPPORTED_VERSIONS;
use std::io::Read;
use std::process::ExitCode;

/// Runs one plugin invocation from the process environment and stdin; prints the result or
/// the error JSON on stdout.
pub fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let (version, outcome) = run(|k| std::env::var(k).ok(), &stdin);
    match outcome {
        Ok(Some(out)) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            println!("{}", e.to_json(&version));
            ExitCode::from(1)
        }
    }
}

/// One invocation: the version to answer errors in, and the JSON to print (if any) or the error.
pub fn run(
    env: impl Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> (String, Result<Option<serde_json::Value>, CniError>) {
    let command = env("CNI_COMMAND").unwrap_or_default();
    if command == "VERSION" {
        // The configuration is optional here; answer in the version it names if we speak it.
        let asked = serde_json::from_slice::<serde_json::Value>(stdin)
            .ok()
            .and_then(|v| v["cniVersion"].as_str().map(str::to_string))
            .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
            .unwrap_or_else(|| "1.0.0".to_string());
        return (asked.clone(), Ok(Some(json!({"cniVersion": asked, "supportedVersions": SUPPORTED_VERSIONS}))));
    }
    let known = ["ADD", "DEL", "CHECK", "GC", "STATUS"];
    if command.is_empty() {
        return (
            "1.0.0".into(),
            Err(CniError::new(INVALID_ENV, "CNI_COMMAND is not set")
                .details("run by a container runtime, CNI_COMMAND is one of ADD, DEL, CHECK, GC, STATUS, VERSION")),
        );
    }
    if !known.contains(&command.as_str()) {
        return (
            "1.0.0".into(),
            Err(CniError::new(
                INVALID_ENV,
                format!("CNI_COMMAND={command:?} is not one of ADD, DEL, CHECK, GC, STATUS, VERSION"),
            )),
        );
    }
    let conf = match spec::parse_netconf(stdin) {
        Ok(c) => c,
        Err(e) => return ("1.0.0".into(), Err(e)),
    };
    let version = conf.cni_version.clone();
    if matches!(command.as_str(), "GC" | "STATUS") && !version.starts_with("1.1") {
        return (
            version.clone(),
            Err(CniError::new(
                error::INCOMPATIBLE_VERSION,
                format!("{command} needs cniVersion 1.1.0; the configuration has {version:?}"),
            )),
        );
    }
    let env = match spec::parse_env(&env) {
        Ok(e) => e,
        Err(e) => return (version, Err(e)),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return (version, Err(error::kernel("cannot start the plugin's runtime", e))),
    };
    let outcome = runtime.block_on(async {
        match command.as_str() {
            "ADD" => ops::add(&conf, &env).await.map(|r| Some(spec::render(&r, &version))),
            "DEL" => ops::del(&conf, &env).await.map(|_| None),
            "CHECK" => ops::check(&conf, &env).await.map(|_| None),
            "GC" => ops::gc(&conf).await.map(|_| None),
            _ => ops::status(&conf).await.map(|_| None),
        }
    });
    (version, outcome)
}
