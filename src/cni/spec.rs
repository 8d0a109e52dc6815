//! The CNI spec's inputs and outputs: the network configuration on stdin, the CNI_* environment,
//! and the result JSON in the version the configuration asks for (1.0.0 and 1.1.0; 0.3.0, 0.3.1
//! and 0.4.0 add `version` to each IP and have no GC/STATUS).

use super::error::{CniError, DECODE, INCOMPATIBLE_VERSION, INVALID_ENV, INVALID_NETCONF};
use crate::api::workloads::{PodIdentity, WorkloadPort};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// CNI spec versions this plugin answers in.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// Prefix of host-side interface names when the configuration names none.
pub const DEFAULT_INTERFACE_PREFIX: &str = "tt";
/// The pod's gateway: answered by proxy ARP on the host side of the veth.
pub const GATEWAY_V4: &str = "169.254.1.1";
/// The host side's MAC, so the pod's IPv6 gateway is its EUI-64 link-local address.
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The link-local address of a veth with [`HOST_MAC`].
pub const GATEWAY_V6: &str = "fe80::ecee:eeff:feee:eeee";

/// The prefix of Calico's pod annotations, taken from CNI_ARGS.
pub const CALICO_ANNOTATION_PREFIX: &str = "cni.projectcalico.org/";

/// One attachment named by the runtime in a GC request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    #[serde(default)]
    pub ifname: String,
}

/// The network configuration tortie reads (unknown fields are ignored: runtimes add their own).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type", default)]
    pub plugin_type: String,
    /// The agent's API socket; default: the agent's default `api.socket`.
    #[serde(default)]
    pub api_socket: Option<PathBuf>,
    /// Prefix of host-side veth names; must equal the agent's `dataplane.workload_interface_prefix`.
    #[serde(default)]
    pub interface_prefix: Option<String>,
    /// Seconds to wait for the agent before giving up with code 11.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<Attachment>>,
}

impl NetConf {
    /// The socket to reach the agent on.
    pub fn socket(&self) -> PathBuf {
        self.api_socket.clone().unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_API_SOCKET))
    }

    /// The host-side interface prefix.
    pub fn prefix(&self) -> &str {
        self.interface_prefix.as_deref().unwrap_or(DEFAULT_INTERFACE_PREFIX)
    }
}

/// Parses stdin: code 6 when it is not JSON, 1 for an unsupported `cniVersion`, 7 (naming the
/// field) for anything else wrong.
pub fn parse_netconf(stdin: &[u8]) -> Result<NetConf, CniError> {
    let value: Value = serde_json::from_slice(stdin)
        .map_err(|e| CniError::new(DECODE, format!("cannot decode the network configuration on stdin: {e}")))?;
    if !value.is_object() {
        return Err(CniError::new(DECODE, format!("the network configuration on stdin is not a JSON object: {value}")));
    }
    match value.get("cniVersion") {
        Some(Value::String(v)) if SUPPORTED_VERSIONS.contains(&v.as_str()) => {}
        Some(Value::String(v)) => {
            return Err(CniError::new(INCOMPATIBLE_VERSION, format!("incompatible CNI version: cniVersion {v:?}"))
                .details(format!("tortie supports {}", SUPPORTED_VERSIONS.join(", "))));
        }
        Some(other) => return Err(CniError::new(INVALID_NETCONF, format!("cniVersion: {other} is not a string"))),
        None => return Err(CniError::new(INVALID_NETCONF, "cniVersion: is required in the network configuration")),
    }
    let conf: NetConf = serde_path_to_error::deserialize(&value).map_err(|e| {
        CniError::new(INVALID_NETCONF, format!("invalid network configuration at {}: {}", e.path(), e.inner()))
    })?;
    // The spec's rule for network names; it also keeps handles safe in API paths.
    if conf.name.is_empty()
        || !conf.name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !conf.name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(CniError::new(
            INVALID_NETCONF,
            format!("name: {:?} is not a network name (letters, digits, '_', '.', '-')", conf.name),
        ));
    }
    if let Some(p) = &conf.interface_prefix
        && (p.is_empty() || p.len() > 4 || !p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
    {
        return Err(CniError::new(
            INVALID_NETCONF,
            format!("interface_prefix: {p:?} must be 1 to 4 lower-case letters or digits"),
        ));
    }
    if conf.timeout_seconds == Some(0) {
        return Err(CniError::new(INVALID_NETCONF, "timeout_seconds: 0 would never wait for the agent"));
    }
    Ok(conf)
}

/// The CNI_* environment of one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Env {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    /// CNI_ARGS as key → value.
    pub args: BTreeMap<String, String>,
}

/// Which variables `command` requires (CNI spec "Parameters").
fn required(command: &str) -> &'static [&'static str] {
    match command {
        "ADD" | "CHECK" => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
        "DEL" => &["CNI_CONTAINERID", "CNI_IFNAME"],
        _ => &[],
    }
}

/// Reads the environment through `get`; each problem names the variable and value (code 4).
pub fn parse_env(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
    let command = get("CNI_COMMAND").unwrap_or_default();
    for var in required(&command) {
        if get(var).is_none_or(|v| v.is_empty()) {
            return Err(CniError::new(INVALID_ENV, format!("{var} is not set; {command} needs it")));
        }
    }
    let container_id = get("CNI_CONTAINERID").unwrap_or_default();
    if !container_id.is_empty()
        && (!container_id.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !container_id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)))
    {
        return Err(CniError::new(
            INVALID_ENV,
            format!("CNI_CONTAINERID={container_id:?} is not a container id (letters, digits, '_', '.', '-')"),
        ));
    }
    let ifname = get("CNI_IFNAME").unwrap_or_default();
    if !ifname.is_empty()
        && (ifname.len() > 15 || ifname.contains(['/', ':', ' ', '\t', '\n']) || ifname == "." || ifname == "..")
    {
        return Err(CniError::new(
            INVALID_ENV,
            format!("CNI_IFNAME={ifname:?} is not an interface name (1 to 15 characters, no '/', ':' or spaces)"),
        ));
    }
    let mut args = BTreeMap::new();
    for item in get("CNI_ARGS").unwrap_or_default().split(';').filter(|s| !s.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(CniError::new(INVALID_ENV, format!("CNI_ARGS: {item:?} is not KEY=VALUE")));
        };
        args.insert(k.to_string(), v.to_string());
    }
    Ok(Env { command, container_id, netns: get("CNI_NETNS").unwrap_or_default(), ifname, args })
}

impl Env {
    /// The pod's name and namespace from CNI_ARGS (Kubernetes runtimes set them).
    pub fn pod(&self) -> (String, String) {
        let arg = |k: &str| self.args.get(k).cloned().unwrap_or_default();
        (arg("K8S_POD_NAME"), arg("K8S_POD_NAMESPACE"))
    }

    /// The CNI_ARGS that are Calico's pod annotations (`cni.projectcalico.org/…`), passed to the
    /// agent as the pod's: how a runtime outside Kubernetes (or the lab) asks for an address.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.args
            .iter()
            .filter(|(k, _)| k.starts_with(CALICO_ANNOTATION_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The pod's labels (`TORTIE_LABELS=k=v,k2=v2`), service account
    /// (`TORTIE_SERVICE_ACCOUNT`) and named ports (`TORTIE_PORTS=http:tcp:80,...`) from
    /// CNI_ARGS; an error names the argument and value (code 4).
    pub fn endpoint(&self) -> Result<PodIdentity, CniError> {
        let arg = |k: &str| self.args.get(k).cloned().unwrap_or_default();
        let bad = |k: &str, e: String| CniError::new(INVALID_ENV, format!("CNI_ARGS {k}: {e}"));
        let mut labels = BTreeMap::new();
        for item in arg("TORTIE_LABELS").split(',').filter(|s| !s.is_empty()) {
            let (k, v) =
                item.split_once('=').ok_or_else(|| bad("TORTIE_LABELS", format!("{item:?} is not key=value")))?;
            labels.insert(k.to_string(), v.to_string());
        }
        crate::datastore::resources::check_labels(&labels).map_err(|e| bad("TORTIE_LABELS", e))?;
        let ports = arg("TORTIE_PORTS")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(WorkloadPort::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("TORTIE_PORTS", e))?;
        Ok((labels, arg("TORTIE_SERVICE_ACCOUNT"), ports))
    }

    /// The IPAM handle: `<network>.<container id>` (as Calico's `k8s-pod-network.<id>`), so two
    /// networks' GCs never touch each other's handles.
    pub fn handle(&self, network: &str) -> String {
        format!("{network}.{}", self.container_id)
    }

    /// The host-side veth name: `prefix` + a hash of `<namespace>.<pod>` (or of the container
    /// id in lower case outside Kubernetes), 15 characters — deterministic, so DEL finds it without the agent.
    pub fn host_interface(&self, prefix: &str) -> String {
        let (pod, namespace) = self.pod();
        // The container id in lower case, as its handle: a DEL naming it in another case finds it.
        let key = if pod.is_empty() { self.container_id.to_ascii_lowercase() } else { format!("{namespace}.{pod}") };
        host_interface_name(prefix, &key)
    }
}

/// `prefix` + the FNV-1a 64-bit hash of `key` in hex, cut to 15 characters.
pub fn host_interface_name(prefix: &str, key: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let hex = format!("{hash:016x}");
    format!("{prefix}{}", &hex[..15usize.saturating_sub(prefix.len()).min(16)])
}

/// One interface of a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default)]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// One address of a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// One route of a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteConfig {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// The ADD result in the 1.x shape; [`render`] converts it to the version asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CniResult {
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub dns: Value,
}

impl CniResult {
    /// Reads a `prevResult` in any supported version (the 0.x `version` of an IP is ignored).
    pub fn from_prev(prev: &Value) -> Result<CniResult, CniError> {
        serde_path_to_error::deserialize(prev)
            .map_err(|e| CniError::new(INVALID_NETCONF, format!("prevResult: invalid at {}: {}", e.path(), e.inner())))
    }

    /// Appends `other` (this plugin's part) after the interfaces of `self`, renumbering its
    /// `interface` indexes — how a chained plugin adds to the previous result.
    pub fn append(&mut self, other: CniResult) {
        let offset = self.interfaces.len();
        self.interfaces.extend(other.interfaces);
        self.ips.extend(other.ips.into_iter().map(|mut ip| {
            ip.interface = ip.interface.map(|i| i + offset);
            ip
        }));
        self.routes.extend(other.routes);
        if self.dns.is_null() {
            self.dns = other.dns;
        }
    }
}

/// `result` as JSON in `version`: before 1.0.0 each IP carries `version` ("4"/"6").
pub fn render(result: &CniResult, version: &str) -> Value {
    let mut v = serde_json::to_value(result).unwrap_or_else(|_| json!({}));
    v["cniVersion"] = json!(version);
    if v["dns"].is_null() {
        v["dns"] = json!({});
    }
    if !version.starts_with('1')
        && let Some(ips) = v["ips"].as_array_mut()
    {
        for ip in ips {
            let six = ip["address"].as_str().is_some_and(|a| a.contains(':'));
            ip["version"] = json!(if six { "6" } else { "4" });
        }
    }
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pods_identity_comes_from_cni_args() {
        let env = |args: &str| {
            let vars = [
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", "/x"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", args),
            ];
            parse_env(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).unwrap()
        };
        let (labels, sa, ports) =
            env("TORTIE_LABELS=app=web,tier=1;TORTIE_PORTS=http:tcp:80;TORTIE_SERVICE_ACCOUNT=sa").endpoint().unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!((sa.as_str(), ports[0].port), ("sa", 80));
        let e = env("TORTIE_PORTS=http:tcp:0").endpoint().unwrap_err();
        assert!(e.to_string().contains("TORTIE_PORTS"), "{e}");
    }

    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Env, CniError> {
        let map: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        parse_env(|k| map.get(k).cloned())
    }

    #[test]
    fn host_names_are_short_deterministic_and_ours() {
        let a = host_interface_name("tt", "default.web-0");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("tt"));
        assert_eq!(a, host_interface_name("tt", "default.web-0"));
        assert_ne!(a, host_interface_name("tt", "default.web-1"));
        assert_eq!(host_interface_name("tort", "x").len(), 15);
    }

    #[test]
    fn the_environment_names_what_is_missing_or_wrong() {
        let e = env(&[("CNI_COMMAND", "ADD"), ("CNI_NETNS", "/x"), ("CNI_IFNAME", "eth0")]).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (4, "CNI_CONTAINERID is not set; ADD needs it"));
        let e = env(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "a/b")]).unwrap_err();
        assert!(e.msg.contains("CNI_IFNAME=\"a/b\""), "{e}");
        let e =
            env(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0"), ("CNI_ARGS", "A=1;oops")])
                .unwrap_err();
        assert!(e.msg.contains("\"oops\""), "{e}");
        let ok = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p"),
        ])
        .unwrap();
        assert_eq!(ok.pod(), ("p".to_string(), "ns".to_string()));
        assert_eq!(ok.host_interface("tt"), host_interface_name("tt", "ns.p"));
    }

    #[test]
    fn configurations_are_checked_field_by_field() {
        assert_eq!(parse_netconf(b"{nope").unwrap_err().code, 6);
        let e = parse_netconf(br#"{"cniVersion":"0.2.0","name":"n"}"#).unwrap_err();
        assert_eq!(e.code, 1);
        assert!(e.msg.contains("0.2.0"), "{e}");
        let e = parse_netconf(br#"{"cniVersion":"1.0.0","name":"n","timeout_seconds":"x"}"#).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("timeout_seconds"), "{e}");
        assert_eq!(parse_netconf(br#"{"cniVersion":"1.0.0"}"#).unwrap_err().code, 7);
        let e = parse_netconf(br#"{"cniVersion":"1.0.0","name":"a b"}"#).unwrap_err();
        assert!(e.msg.contains("name: \"a b\""), "{e}");
        let c = parse_netconf(br#"{"cniVersion":"0.4.0","name":"n","type":"tortie","other":1}"#).unwrap();
        assert_eq!(c.prefix(), "tt");
    }

    #[test]
    fn results_take_the_shape_of_the_version_asked() {
        let r = CniResult {
            interfaces: vec![Interface { name: "eth0".into(), mac: "m".into(), sandbox: Some("/n".into()) }],
            ips: vec![IpConfig { address: "10.0.0.1/32".into(), gateway: None, interface: Some(0) }],
            ..Default::default()
        };
        assert_eq!(render(&r, "0.3.1")["ips"][0]["version"], "4");
        assert!(render(&r, "1.0.0")["ips"][0].get("version").is_none());
        let mut prev = r.clone();
        prev.append(r);
        assert_eq!(prev.ips[1].interface, Some(1));
    }
}
