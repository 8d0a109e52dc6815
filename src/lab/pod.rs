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
    #[error("{0}")]
    BadIdentity(String),
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

/// What network policy sees of a pod: its namespace, labels, named ports, service account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    pub namespace: String,
    pub labels: Vec<(String, String)>,
    pub ports: Vec<crate::api::workloads::WorkloadPort>,
    pub service_account: String,
}

impl Identity {
    /// Reads `--namespace`, `--label k=v`, `--port name:proto:number`, `--service-account`;
    /// the error names the flag and value.
    pub fn new(
        namespace: &str,
        labels: &[String],
        ports: &[String],
        service_account: &str,
    ) -> Result<Identity, PodError> {
        let bad = |e: String| PodError::BadIdentity(e);
        if let Some(problem) = crate::datastore::Key::namespace_problem(namespace) {
            return Err(bad(format!("--namespace: {problem}")));
        }
        // CNI_ARGS separates with ';' and our lists with ','.
        let plain = |t: &str| !t.contains([';', ',']);
        let mut parsed = Vec::new();
        for label in labels {
            match label.split_once('=') {
                Some((k, v)) if plain(v) => parsed.push((k.to_string(), v.to_string())),
                _ => return Err(bad(format!("--label {label:?}: write key=value (no ',' or ';')"))),
            }
        }
        let map = parsed.iter().cloned().collect();
        crate::datastore::resources::check_labels(&map).map_err(|e| bad(format!("--label: {e}")))?;
        let ports = ports
            .iter()
            .map(|p| crate::api::workloads::WorkloadPort::parse(p).map_err(|e| bad(format!("--port: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        if !plain(service_account) || service_account.contains('=') {
            return Err(bad(format!("--service-account {service_account:?}: no ',', ';' or '='")));
        }
        Ok(Identity {
            namespace: namespace.to_string(),
            labels: parsed,
            ports,
            service_account: service_account.into(),
        })
    }

    /// The identity for CNI_ARGS, after the pod's name.
    fn cni_args(&self, pod: &str) -> String {
        let mut args = format!("K8S_POD_NAMESPACE={};K8S_POD_NAME={pod}", self.namespace);
        if !self.labels.is_empty() {
            let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            args.push_str(&format!(";TORTIE_LABELS={}", labels.join(",")));
        }
        if !self.ports.is_empty() {
            let ports: Vec<String> =
                self.ports.iter().map(|p| format!("{}:{}:{}", p.name, p.protocol, p.port)).collect();
            args.push_str(&format!(";TORTIE_PORTS={}", ports.join(",")));
        }
        if !self.service_account.is_empty() {
            args.push_str(&format!(";TORTIE_SERVICE_ACCOUNT={}", self.service_account));
        }
        args
    }
}

/// A `TORTIE_LAB_PODS` entry (also accepted as `tortie lab pod add`'s NAME): the pod's name
/// then `,namespace=NS`, `,label=k=v`, `,port=name:proto:number`, `,service-account=SA`
/// items, added to the flags given.
pub fn parse_entry(
    entry: &str,
    namespace: &str,
    labels: &[String],
    ports: &[String],
    service_account: &str,
) -> Result<(String, Identity), PodError> {
    let mut items = entry.split(',');
    let name = items.next().unwrap_or_default().to_string();
    let (mut namespace, mut labels, mut ports, mut service_account) =
        (namespace.to_string(), labels.to_vec(), ports.to_vec(), service_account.to_string());
    for item in items {
        match item.split_once('=') {
            Some(("namespace", v)) => namespace = v.to_string(),
            Some(("label", v)) => labels.push(v.to_string()),
            Some(("port", v)) => ports.push(v.to_string()),
            Some(("service-account", v)) => service_account = v.to_string(),
            _ => {
                return Err(PodError::BadIdentity(format!(
                    "pod {entry:?}: {item:?} is not namespace=, label=, port= or service-account="
                )));
            }
        }
    }
    Ok((name, Identity::new(&namespace, &labels, &ports, &service_account)?))
}

/// Calls the plugin once; `Ok(stdout)` on success, `Err((code, text))` on a CNI error.
fn call_plugin(command: &str, ns: &str, args: &str) -> Result<Result<String, (u64, String)>, PodError> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("cni")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", ns)
        .env("CNI_NETNS", format!("/run/netns/{ns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", args)
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

/// Creates the pod (with its identity; `annotations`, `KEY=VALUE` each, travel in CNI_ARGS) and
/// returns the plugin's result JSON. Retries while the agent is not ready yet (CNI code 11), up
/// to `wait`.
pub fn add(pod: &str, identity: &Identity, annotations: &[String], wait: Duration) -> Result<String, PodError> {
    check_name(pod)?;
    let args = identity.cni_args(pod) + &annotation_args(annotations)?;
    let ns = namespace(pod);
    if !Path::new("/run/netns").join(&ns).exists() {
        crate::netns::run_output(&["ip", "netns", "add", &ns])?;
        crate::netns::run_output(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
    }
    let deadline = Instant::now() + wait;
    // Until the agent has made its API socket the plugin could only answer "try again later":
    // waiting for the file costs a stat, where each plugin call is a process.
    if let Some(socket) = std::env::var_os("TORTIE_API_SOCKET").map(std::path::PathBuf::from) {
        while !socket.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    loop {
        match call_plugin("ADD", &ns, &args)? {
            Ok(result) => return Ok(result),
            Err((TRY_AGAIN_LATER, _)) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            Err((code, detail)) => {
                // Leave nothing behind: the runtime deletes what failed.
                let _ = call_plugin("DEL", &ns, &args);
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
    if let Err((code, detail)) = call_plugin("DEL", &ns, &format!("K8S_POD_NAME={pod}"))? {
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

    #[test]
    fn identity_flags_become_cni_args_and_bad_ones_are_named() {
        let id = Identity::new("prod", &["app=web".into()], &["http:tcp:8080".into()], "sa1").unwrap();
        assert_eq!(
            id.cni_args("web"),
            "K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web;TORTIE_LABELS=app=web;TORTIE_PORTS=http:TCP:8080;TORTIE_SERVICE_ACCOUNT=sa1"
        );
        let err = |r: Result<Identity, PodError>| r.unwrap_err().to_string();
        assert!(err(Identity::new("Prod", &[], &[], "")).starts_with("--namespace: "));
        assert!(err(Identity::new("p", &["app".into()], &[], "")).starts_with("--label \"app\""));
        assert!(
            err(Identity::new("p", &[], &["http:icmp:80".into()], "")).contains("\"ICMP\" is not TCP, UDP or SCTP")
        );
        assert!(err(Identity::new("p", &[], &["http:tcp:x".into()], "")).contains("\"x\" is not a port number"));
    }

    #[test]
    fn lab_pods_entries_carry_the_same_keys() {
        let (name, id) =
            parse_entry("db,namespace=prod,label=app=db,port=http:tcp:8080", "default", &[], &[], "").unwrap();
        assert_eq!(name, "db");
        assert_eq!(id, Identity::new("prod", &["app=db".into()], &["http:tcp:8080".into()], "").unwrap());
        assert_eq!(parse_entry("web", "default", &[], &[], "").unwrap().1.namespace, "default");
        let e = parse_entry("web,colour=red", "default", &[], &[], "").unwrap_err();
        assert!(e.to_string().contains("\"colour=red\""), "{e}");
    }
}
