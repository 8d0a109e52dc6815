//! The CNI plugin entry point (`tortie cni`, or the binary named `tortie-cni`).
//!
//! VERSION is answered here; ADD, DEL and CHECK arrive with the CNI issue and
//! until then answer with a CNI error, so a runtime never mistakes this
//! build for a working plugin.

use serde_json::json;
use std::process::ExitCode;

/// CNI spec versions this plugin answers in.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// CNI error code 4: invalid necessary environment variables (CNI spec, "Error").
const ERR_ENV: u32 = 4;
/// CNI error code 11: try again later.
const ERR_TRY_LATER: u32 = 11;

pub fn main() -> ExitCode {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    match command.as_str() {
        "VERSION" => {
            println!("{}", json!({"cniVersion": "1.0.0", "supportedVersions": SUPPORTED_VERSIONS}));
            ExitCode::SUCCESS
        }
        "ADD" | "DEL" | "CHECK" => error(
            ERR_TRY_LATER,
            &format!("tortie cni: {command} is not available in this build"),
            "the CNI plugin arrives with the CNI issue",
        ),
        "" => error(
            ERR_ENV,
            "tortie cni: CNI_COMMAND is not set",
            "run by a container runtime, CNI_COMMAND is one of ADD, DEL, CHECK, VERSION",
        ),
        other => {
            error(ERR_ENV, &format!("tortie cni: CNI_COMMAND={other:?} is not one of ADD, DEL, CHECK, VERSION"), "")
        }
    }
}

fn error(code: u32, msg: &str, details: &str) -> ExitCode {
    println!("{}", json!({"cniVersion": "1.0.0", "code": code, "msg": msg, "details": details}));
    ExitCode::from(1)
}
