//! Installs the CNI plugin on the host once the agent is ready: this binary copied into the CNI
//! bin directory, then the conflist (tortie, then portmap) into the network directory. Both are
//! written to a temporary file in the target directory and renamed into place, so the runtime
//! never executes a half-copied plugin nor reads a half-written conflist. The conflist goes last
//! and only when ready: kubelet reports the node's network ready as soon as a conflist exists
//! (Cilium's `write-cni-conf-when-ready`), and pods scheduled before tortie can serve them fail.
//!
//! The conflist's `cniVersion` is the highest version tortie and every chained plugin support,
//! asked of each plugin with the CNI `VERSION` command (1.1.0 brings GC and STATUS to runtimes
//! that speak it; Debian 12's portmap stops at 1.0.0). A chained plugin missing from the bin
//! directory keeps the agent not ready, saying which: a conflist naming it would fail every pod.

use crate::api::StatusReport;
use crate::config::Config;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio::sync::watch;

/// The plugins the conflist chains after tortie's own.
pub const CHAINED_PLUGINS: &[&str] = &["portmap"];

/// The version written when a plugin cannot be asked: the highest every CNI 1.x runtime takes.
const FALLBACK_VERSION: &str = "1.0.0";

/// What to install where.
#[derive(Clone, Debug, PartialEq)]
pub struct CniInstall {
    /// The binary to copy (this process's executable).
    pub source: PathBuf,
    pub bin_dir: PathBuf,
    pub net_dir: PathBuf,
    pub plugin_name: String,
    pub conf_name: String,
    pub network_name: String,
    /// The agent's API socket, for the plugin to reach the agent.
    pub api_socket: PathBuf,
}

impl CniInstall {
    /// The installation `config` asks for; `None` when `kubernetes.install_cni` is off.
    pub fn from_config(config: &Config) -> std::io::Result<Option<CniInstall>> {
        let k = &config.kubernetes;
        if !k.installs_cni(config.datastore.kind) {
            return Ok(None);
        }
        Ok(Some(CniInstall {
            source: std::env::current_exe()?,
            bin_dir: k.cni_bin_dir.clone(),
            net_dir: k.cni_net_dir.clone(),
            plugin_name: k.cni_plugin_name.clone(),
            conf_name: k.cni_conf_name.clone(),
            network_name: k.cni_network_name.clone(),
            api_socket: config.api.socket.clone(),
        }))
    }

    /// The chained plugins absent from the bin directory (tortie's own is installed by us).
    pub fn missing_plugins(&self) -> Vec<&'static str> {
        CHAINED_PLUGINS.iter().copied().filter(|p| !self.bin_dir.join(p).is_file()).collect()
    }

    /// The highest CNI version tortie and every chained plugin support.
    pub fn conflist_version(&self) -> String {
        let mut common: Vec<&str> = crate::cni::spec::SUPPORTED_VERSIONS.to_vec();
        for plugin in CHAINED_PLUGINS {
            match plugin_versions(&self.bin_dir.join(plugin)) {
                Ok(theirs) => common.retain(|v| theirs.iter().any(|t| t == v)),
                Err(e) => {
                    tracing::warn!(subsys = "cni", plugin, error = %e, version = FALLBACK_VERSION, "cannot ask a chained plugin its CNI versions");
                    return FALLBACK_VERSION.to_string();
                }
            }
        }
        // SUPPORTED_VERSIONS is in ascending order.
        common.last().map_or(FALLBACK_VERSION, |v| v).to_string()
    }

    /// The conflist: tortie then portmap (which only sees `portMappings` because it declares the
    /// capability), in `version`. The agent's socket is named only when it is not the default,
    /// so the plugin's own default applies otherwise.
    pub fn conflist(&self, version: &str) -> Value {
        let mut tortie = json!({"type": self.plugin_name});
        if self.api_socket != Path::new(crate::config::DEFAULT_API_SOCKET) {
            tortie["api_socket"] = json!(self.api_socket);
        }
        json!({
            "name": self.network_name,
            "cniVersion": version,
            "plugins": [tortie, {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}}],
        })
    }

    /// Copies the binary, then writes the conflist; each atomically. Returns the two paths.
    pub fn install(&self) -> Result<(PathBuf, PathBuf), String> {
        let binary = self.bin_dir.join(&self.plugin_name);
        let bytes = std::fs::read(&self.source).map_err(|e| format!("cannot read {}: {e}", self.source.display()))?;
        write_atomically(&binary, &bytes, 0o755)?;
        let conflist = self.net_dir.join(&self.conf_name);
        let mut text = serde_json::to_string_pretty(&self.conflist(&self.conflist_version())).unwrap_or_default();
        text.push('\n');
        write_atomically(&conflist, text.as_bytes(), 0o644)?;
        Ok((binary, conflist))
    }
}

/// The `supportedVersions` a CNI plugin reports for the `VERSION` command.
fn plugin_versions(binary: &Path) -> Result<Vec<String>, String> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(binary)
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // The request's own version only selects the answer's format.
        let _ = stdin.write_all(FALLBACK_VERSION_REQUEST);
    }
    let out = child.wait_with_output().map_err(|e| format!("{}: {e}", binary.display()))?;
    let answer: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{} answered VERSION with no JSON ({e})", binary.display()))?;
    let versions = answer["supportedVersions"]
        .as_array()
        .ok_or_else(|| format!("{} answered VERSION without supportedVersions", binary.display()))?;
    Ok(versions.iter().filter_map(Value::as_str).map(str::to_string).collect())
}

const FALLBACK_VERSION_REQUEST: &[u8] = br#"{"cniVersion":"1.0.0"}"#;

/// Writes `bytes` to `path` through a temporary file in the same directory (so the rename is
/// atomic: same filesystem), synced before the rename so a crash leaves the old file or the new.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().ok_or_else(|| format!("{} has no parent directory", path.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // A leading dot: runtimes skip hidden files when they scan for conflists.
    let temp = dir.join(format!(".{name}.tortie-tmp-{}", std::process::id()));
    let at = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", temp.display());
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)
            .map_err(|e| at("create", e))?;
        file.write_all(bytes).map_err(|e| at("write", e))?;
        // The umask may have narrowed the mode given at creation.
        file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| at("chmod", e))?;
        file.sync_all().map_err(|e| at("sync", e))?;
        std::fs::rename(&temp, path).map_err(|e| format!("cannot rename {} to {}: {e}", temp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Waits until the agent reports ready, then installs; a failure is logged and retried, since a
/// node without its CNI configuration cannot run pods. Ends after installing or on stop.
pub async fn run_when_ready(
    install: CniInstall,
    mut status: watch::Receiver<StatusReport>,
    mut stop: watch::Receiver<bool>,
) {
    let mut delay = std::time::Duration::from_millis(200);
    loop {
        tokio::select! {
            ready = status.wait_for(|s| s.ready) => if ready.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        let job = install.clone();
        match tokio::task::spawn_blocking(move || job.install()).await {
            Ok(Ok((binary, conflist))) => {
                tracing::info!(subsys = "cni", binary = %binary.display(), conflist = %conflist.display(), "CNI plugin installed");
                return;
            }
            Ok(Err(e)) => tracing::error!(subsys = "cni", error = %e, "cannot install the CNI plugin; retrying"),
            Err(e) => tracing::error!(subsys = "cni", error = %e, "the CNI install task failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(std::time::Duration::from_secs(30));
    }
}

/// Starts the installer when `config` asks for one.
pub(super) fn start(
    config: &Config,
    status: watch::Receiver<StatusReport>,
    stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    match CniInstall::from_config(config) {
        Ok(Some(install)) => Some(tokio::spawn(run_when_ready(install, status, stop))),
        Ok(None) => None,
        Err(e) => {
            tracing::error!(subsys = "cni", error = %e, "cannot find this executable; the CNI plugin is not installed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn install(dir: &Path) -> CniInstall {
        let source = dir.join("tortie-src");
        std::fs::write(&source, b"#!/bin/sh\necho plugin\n").unwrap();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("net.d")).unwrap();
        CniInstall {
            source,
            bin_dir: dir.join("bin"),
            net_dir: dir.join("net.d"),
            plugin_name: "tortie".into(),
            conf_name: "10-tortie.conflist".into(),
            network_name: "k8s-pod-network".into(),
            api_socket: PathBuf::from("/run/tortie/tortie.sock"),
        }
    }

    #[test]
    fn installs_an_executable_copy_and_a_conflist_without_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let job = install(dir.path());
        // An old version in place is replaced, as on upgrade.
        std::fs::write(dir.path().join("bin/tortie"), b"old").unwrap();
        let (binary, conflist) = job.install().unwrap();
        assert_eq!(std::fs::read(&binary).unwrap(), std::fs::read(&job.source).unwrap());
        assert_eq!(std::fs::metadata(&binary).unwrap().permissions().mode() & 0o777, 0o755);
        let written: Value = serde_json::from_slice(&std::fs::read(&conflist).unwrap()).unwrap();
        // No portmap in this bin directory: it cannot be asked, the version every runtime takes.
        assert_eq!(written["cniVersion"], "1.0.0");
        let types: Vec<&str> =
            written["plugins"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["tortie", "portmap"]);
        for sub in ["bin", "net.d"] {
            let names: Vec<String> = std::fs::read_dir(dir.path().join(sub))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names.len(), 1, "no temporary file left in {sub}: {names:?}");
        }
    }

    fn fake_plugin(dir: &Path, name: &str, versions: &str) {
        let path = dir.join("bin").join(name);
        let script = format!(
            "#!/bin/sh\n[ \"$CNI_COMMAND\" = VERSION ] || exit 1\necho '{{\"cniVersion\":\"1.0.0\",\"supportedVersions\":{versions}}}'\n"
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn the_conflist_takes_the_highest_version_every_chained_plugin_supports() {
        let dir = tempfile::tempdir().unwrap();
        let job = install(dir.path());
        assert_eq!(job.missing_plugins(), vec!["portmap"]);
        fake_plugin(dir.path(), "portmap", r#"["0.3.1","0.4.0","1.0.0","1.1.0"]"#);
        assert!(job.missing_plugins().is_empty());
        assert_eq!(job.conflist_version(), "1.1.0");
        fake_plugin(dir.path(), "portmap", r#"["0.3.0","0.3.1","0.4.0","1.0.0"]"#);
        assert_eq!(job.conflist_version(), "1.0.0");
        let (_, conflist) = job.install().unwrap();
        let written: Value = serde_json::from_slice(&std::fs::read(&conflist).unwrap()).unwrap();
        assert_eq!(written["cniVersion"], "1.0.0");
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let mut job = install(dir.path());
        job.net_dir = dir.path().join("absent");
        let err = job.install().unwrap_err();
        assert!(err.contains("absent"), "{err}");
    }
}
