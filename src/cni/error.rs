//! CNI errors: the spec's well-known codes and ours (100 and up), printed as the error JSON on
//! stdout with a non-zero exit, as the CNI spec ("Error") asks.

use serde_json::json;

/// Code 1: the network configuration asks for a CNI version this plugin does not speak.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// Code 4: a CNI_* environment variable is missing or invalid.
pub const INVALID_ENV: u32 = 4;
/// Code 6: standard input is not JSON.
pub const DECODE: u32 = 6;
/// Code 7: the network configuration is JSON but not a valid configuration.
pub const INVALID_NETCONF: u32 = 7;
/// Code 11: the agent is unreachable or busy; the runtime should retry.
pub const TRY_AGAIN_LATER: u32 = 11;
/// Code 50 (STATUS): the plugin cannot serve ADD now.
pub const NOT_AVAILABLE: u32 = 50;
/// Ours: the agent refused the request (its message is the detail).
pub const AGENT_REFUSED: u32 = 100;
/// Ours: a kernel (netlink, sysctl, namespace) operation failed.
pub const KERNEL: u32 = 101;
/// Ours: CNI_IFNAME already exists in the container's namespace.
pub const IFNAME_TAKEN: u32 = 102;
/// Ours: CHECK found the container's network different from what ADD made.
pub const CHECK_FAILED: u32 = 103;

/// A CNI error: `code`, `msg`, `details`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    /// An error with `code` and `msg`, no details.
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError { code, msg: msg.into(), details: String::new() }
    }

    /// Adds details.
    pub fn details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The error JSON in `version`.
    pub fn to_json(&self, version: &str) -> serde_json::Value {
        json!({"cniVersion": version, "code": self.code, "msg": self.msg, "details": self.details})
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

/// A kernel-side failure of `what`.
pub fn kernel(what: impl std::fmt::Display, e: impl std::fmt::Display) -> CniError {
    CniError::new(KERNEL, format!("{what}: {e}"))
}
