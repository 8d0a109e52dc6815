//! The kernel settings a node needs, set and checked through /proc/sys
//! (which follows the calling thread's network namespace).

use std::path::PathBuf;

/// A sysctl and the value tortie needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub value: String,
}

impl Setting {
    fn new(key: impl Into<String>, value: &str) -> Self {
        Setting { key: key.into(), value: value.to_string() }
    }
    fn path(&self) -> PathBuf {
        PathBuf::from("/proc/sys").join(self.key.replace('.', "/"))
    }
}

/// Node-wide settings: forwarding for both families.
pub fn node_settings(ipv6: bool) -> Vec<Setting> {
    let mut s = vec![Setting::new("net.ipv4.ip_forward", "1")];
    if ipv6 {
        s.push(Setting::new("net.ipv6.conf.all.forwarding", "1"));
    }
    s
}

/// Settings of a workload's host-side interface: proxy ARP answers the
/// pod's gateway 169.254.1.1, at once.
pub fn workload_settings(ifname: &str) -> Vec<Setting> {
    vec![
        Setting::new(format!("net.ipv4.conf.{ifname}.proxy_arp"), "1"),
        Setting::new(format!("net.ipv4.neigh.{ifname}.proxy_delay"), "0"),
        Setting::new(format!("net.ipv4.conf.{ifname}.forwarding"), "1"),
    ]
}

/// Why a setting could not be applied.
#[derive(Debug, thiserror::Error)]
#[error("cannot set {key} = {value}: {source}")]
pub struct SysctlError {
    pub key: String,
    pub value: String,
    pub source: std::io::Error,
}

/// Writes each setting whose current value differs; returns what changed.
pub fn ensure(settings: &[Setting]) -> Result<Vec<Setting>, SysctlError> {
    let mut changed = Vec::new();
    for s in settings {
        let current = std::fs::read_to_string(s.path()).unwrap_or_default();
        if current.trim() != s.value {
            std::fs::write(s.path(), &s.value).map_err(|e| SysctlError {
                key: s.key.clone(),
                value: s.value.clone(),
                source: e,
            })?;
            changed.push(s.clone());
        }
    }
    Ok(changed)
}

/// Settings whose current value is not the needed one, with what was found.
pub fn check(settings: &[Setting]) -> Vec<(Setting, String)> {
    settings
        .iter()
        .filter_map(|s| {
            let current =
                std::fs::read_to_string(s.path()).map(|v| v.trim().to_string()).unwrap_or_else(|e| e.to_string());
            (current != s.value).then(|| (s.clone(), current))
        })
        .collect()
}
