//! `tortie lab pod add | del | exec | list`: a stand-in container runtime
//! for labs. Run inside a node (any network namespace), it makes a pod the
//! way a kubelet would: a network namespace, then the CNI plugin (this very
//! binary as `tortie cni`) called with the CNI environment and a netconf on
//! stdin; the agent on the node allocates and routes the address.
//!
//! A pod's namespace is named after the node's own namespace when that has a
//! name (`clab-<lab>-<node>-<pod>` under the lab runner, so labs never
//! collide), else `tortie-pod-<pod>` (inside a containerlab container,
//! whose `/run/netns` is its own).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The CNI error code for "try again later" (the agent is not up yet).
const TRY_AGAIN_LATER: u64 = 11;

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("pod name {0:?}: use 1-40 characters of a-z, 0-9 and '-'")]
    BadName(String),
    #[error("--annotation {0:?}: use KEY=VALUE, without ';' (they travel in CNI_ARGS)")]
    BadAnnotation(String),
    #[error("{0}")]
    Command(#[from] crate::netns::CommandError),
    #[error("the CNI plugin failed for pod {pod}: {detail}")]
    Cni { pod: String, detail: String },
    #[error("cannot run the CNI plugin: {0}")]
    Io(#[from] std::io::Error),
}

/// The name of the network namespace this process is in, if it has one.
fn current_namespace() -> Option<String> {
    let me = std::fs::metadata("/proc/self/ns/net").ok()?;
    std::fs::read_dir("/run/netns").ok()?.flatten().find_map(|e| {
        let m = std::fs::metadata(e.path()).ok()?;
        (m.ino() == me.ino() && m.dev() == me.dev()).then(|| e.file_name().to_string_lossy().into_owned())
    })
}

fn check_name(pod: &str) -> Result<(), PodError> {
    let ok = !pod.is_empty()
        && pod.len() <= 40
        && pod.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok { Ok(()) } else { Err(PodError::BadName(pod.to_string())) }
}

/// The namespace prefix of this node's pods.
pub fn prefix() -> String {
    match current_namespace() {
        Some(ns) => format!("{ns}-"),
        None => "tortie-pod-".to_string(),
    }
}

/// The network namespace of `pod` on this node.
pub fn namespace(pod: &str) -> String {
    format!("{}{pod}", prefix())
}

fn netconf() -> String {
    let mut conf = serde_json::json!({"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "tortie"});
    if let Ok(socket) = std::env::var("TORTIE_API_SOCKET") {
        conf["api_socket"] = socket.into();
    }
    conf.to_string()
}

/// The `KEY=VALUE` annotations as CNI_ARGS items (`;KEY=VALUE…`): how a runtime outside
/// Kubernetes gives the plugin Calico's pod IPAM annotations.
pub fn annotation_args(annotations: &[String]) -> Result<String, PodError> {
    let mut out = String::new();
    for a in annotations {
        match a.split_once('=') {
            Some((k, _)) if !k.is_empty() && !a.contains(';') => out.push_str(&format!(";{a}")),
            _ => return Err(PodError::BadAnnotation(a.clone())),
        }
    }
    Ok(out)
}

/// Calls the plugin once; `Ok(stdout)` on success, `Err((code, text))` on a CNI error. `extra`
/// is appended to CNI_ARGS.
fn call_plugin(command: &str, pod: &str, ns: &str, extra: &str) -> Result<Result<String, (u64, String)>, PodError> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("cni")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", ns)
        .env("CNI_NETNS", format!("/run/netns/{ns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}{extra}"))
        .env("CNI_PATH", "/usr/lib/cni:/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().map(|mut s| s.write_all(netconf().as_bytes())).transpose()?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(Ok(stdout));
    }
    let err: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
    let code = err["code"].as_u64().unwrap_or(0);
    let text = match err["msg"].as_str() {
        Some(msg) => format!("{msg} {}", err["details"].as_str().unwrap_or("")).trim().to_string(),
        None => format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
    };
    Ok(Err((code, text)))
}

/// Creates the pod (with `annotations`, `KEY=VALUE` each) and returns the plugin's result
/// JSON. Retries while the agent is not ready yet (CNI code 11), up to `wait`.
pub fn add(pod: &str, annotations: &[String], wait: Duration) -> Result<String, PodError> {
    check_name(pod)?;
    let extra = annotation_args(annotations)?;
    let ns = namespace(pod);
    if !Path::new("/run/netns").join(&ns).exists() {
        crate::netns::run_output(&["ip", "netns", "add", &ns])?;
        crate::netns::run_output(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
    }
    let deadline = Instant::now() + wait;
    loop {
        match call_plugin("ADD", pod, &ns, &extra)? {
            Ok(result) => return Ok(result),
            Err((TRY_AGAIN_LATER, _)) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            Err((code, detail)) => {
                // Leave nothing behind: the runtime deletes what failed.
                let _ = call_plugin("DEL", pod, &ns, "");
                let _ = crate::netns::run_output(&["ip", "netns", "del", &ns]);
                return Err(PodError::Cni { pod: pod.to_string(), detail: format!("code {code}: {detail}") });
            }
        }
    }
}

/// Deletes the pod: CNI DEL (releases its address), then its namespace.
pub fn del(pod: &str) -> Result<(), PodError> {
    check_name(pod)?;
    let ns = namespace(pod);
    if let Err((code, detail)) = call_plugin("DEL", pod, &ns, "")? {
        return Err(PodError::Cni { pod: pod.to_string(), detail: format!("code {code}: {detail}") });
    }
    if Path::new("/run/netns").join(&ns).exists() {
        crate::netns::run_output(&["ip", "netns", "del", &ns])?;
    }
    Ok(())
}

/// The pods of this node.
pub fn list() -> Vec<String> {
    let prefix = prefix();
    let mut pods: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_string_lossy().strip_prefix(&prefix).map(str::to_string))
                .filter(|p| check_name(p).is_ok())
                .collect()
        })
        .unwrap_or_default();
    pods.sort();
    pods
}

/// The `ip netns exec` command line that runs `argv` in the pod.
pub fn exec_argv(pod: &str, argv: &[String]) -> Result<Vec<String>, PodError> {
    check_name(pod)?;
    let mut full = vec!["ip".to_string(), "netns".to_string(), "exec".to_string(), namespace(pod)];
    full.extend(argv.iter().cloned());
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_become_cni_args_items_and_bad_ones_are_named() {
        let given = ["cni.projectcalico.org/ipAddrs=[\"10.0.0.7\"]".to_string(), "a=b=c".to_string()];
        assert_eq!(annotation_args(&given).unwrap(), ";cni.projectcalico.org/ipAddrs=[\"10.0.0.7\"];a=b=c");
        for bad in ["novalue", "=x", "k=a;b"] {
            let err = annotation_args(&[bad.to_string()]).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
