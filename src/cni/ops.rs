//! ADD, DEL, CHECK, GC and STATUS: the agent gives addresses and programs host routes; this
//! process wires the veth pair. A failure half-way through ADD undoes what was done.

use super::error::{
    AGENT_REFUSED, CHECK_FAILED, CniError, INVALID_ENV, INVALID_NETCONF, NOT_AVAILABLE, TRY_AGAIN_LATER,
};
use super::link;
use super::spec::{CniResult, Env, GATEWAY_V4, Interface, IpConfig, NetConf, RouteConfig};
use crate::api::client::{ClientError, request_json};
use crate::api::workloads::{AllocateRequest, GcAnswer, GcRequest, Released, Workload};
use crate::dataplane::sysctl;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// How long the agent may take by default before the runtime is told to try again.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// One call to the agent, with the configured timeout; errors become CNI errors.
async fn agent<T: DeserializeOwned, B: Serialize>(
    conf: &NetConf,
    method: &str,
    path: &str,
    body: Option<&B>,
) -> Result<T, CniError> {
    let socket = conf.socket();
    let timeout = conf.timeout_seconds.map(Duration::from_secs).unwrap_or(DEFAULT_TIMEOUT);
    match request_json(&socket, method, path, body, timeout).await {
        Err(ClientError::Timeout { .. }) => Err(CniError::new(
            TRY_AGAIN_LATER,
            format!("the tortie agent at {} did not answer {method} {path} within {timeout:?}", socket.display()),
        )),
        Ok(v) => Ok(v),
        Err(e @ (ClientError::Connect { .. } | ClientError::Io { .. })) => Err(CniError::new(
            TRY_AGAIN_LATER,
            format!("cannot reach the tortie agent at {} (api_socket)", socket.display()),
        )
        .details(e.to_string())),
        Err(ClientError::Status { status, body }) => {
            let msg = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or(body);
            // 503: nothing to allocate from now; 500: the agent's datastore or kernel failed.
            // Both may pass; a refusal of the request itself (4xx) will not.
            let code = if status >= 500 { TRY_AGAIN_LATER } else { AGENT_REFUSED };
            Err(CniError::new(code, format!("the tortie agent refused {method} {path}: {msg}")))
        }
        Err(e) => Err(CniError::new(AGENT_REFUSED, e.to_string())),
    }
}

fn handle_path(handle: &str) -> String {
    format!("/v1/workloads/{handle}")
}

/// ADD: allocate, wire, route; any failure undoes the veth and the allocation.
pub async fn add(conf: &NetConf, env: &Env) -> Result<CniResult, CniError> {
    if !std::path::Path::new(&env.netns).exists() {
        return Err(CniError::new(INVALID_ENV, format!("CNI_NETNS={:?} does not exist", env.netns)));
    }
    let (pod, namespace) = env.pod();
    let (labels, service_account, ports) = env.endpoint()?;
    let handle = env.handle(&conf.name);
    let host_name = env.host_interface(conf.prefix());
    let request = AllocateRequest {
        labels,
        service_account,
        ports,
        handle: handle.clone(),
        container_id: env.container_id.clone(),
        pod,
        namespace,
        netns: env.netns.clone(),
        ifname: env.ifname.clone(),
        host_interface: host_name.clone(),
        annotations: env.annotations(),
    };
    let workload: Workload = agent(conf, "POST", "/v1/workloads", Some(&request)).await?;
    let host = link::host()?;
    match wire(conf, env, &host, &host_name, &workload).await {
        Ok(result) => Ok(result),
        Err(e) => {
            // Undo: the veth (its pod end goes with it) and the allocation.
            let _ = link::delete_owned(&host, &host_name, &env.container_id).await;
            if let Err(undo) = agent::<Released, ()>(conf, "DELETE", &handle_path(&handle), None).await {
                return Err(e.clone().details(format!("{}; and releasing the address failed: {undo}", e.details)));
            }
            Err(e)
        }
    }
}

async fn wire(
    conf: &NetConf,
    env: &Env,
    host: &rtnetlink::Handle,
    host_name: &str,
    w: &Workload,
) -> Result<CniResult, CniError> {
    // The name is the pod's: an interface of that name is a leftover of an earlier sandbox of
    // the same pod whose DEL never came.
    link::delete(host, host_name).await?;
    link::create_veth(host, host_name, &env.ifname, &env.netns, w.mtu).await?;
    link::mark_owner(host, host_name, &env.container_id).await?;
    sysctl::ensure(&sysctl::workload_settings(host_name)).map_err(|e| super::error::kernel("host-side sysctl", e))?;
    let pod = link::in_netns(&env.netns)?;
    let pod_link = link::configure_pod(&pod, &env.ifname, &w.addresses).await?;
    let _: Workload = agent(conf, "PUT", &format!("{}/route", handle_path(&w.handle)), None::<&()>).await?;
    let host_link = link::link(host, host_name).await?;
    let mut result = CniResult {
        interfaces: vec![
            Interface {
                name: host_name.to_string(),
                mac: host_link.as_ref().map(link::mac).unwrap_or_default(),
                sandbox: None,
            },
            Interface { name: env.ifname.clone(), mac: link::mac(&pod_link), sandbox: Some(env.netns.clone()) },
        ],
        ips: w
            .addresses
            .iter()
            .map(|a| IpConfig {
                address: a.to_string(),
                gateway: Some(if a.is_ipv4() { GATEWAY_V4 } else { super::spec::GATEWAY_V6 }.to_string()),
                interface: Some(1),
            })
            .collect(),
        routes: Vec::new(),
        dns: serde_json::json!({}),
    };
    if w.addresses.iter().any(|a| a.is_ipv4()) {
        result.routes.push(RouteConfig { dst: "0.0.0.0/0".into(), gw: Some(GATEWAY_V4.into()) });
    }
    if w.addresses.iter().any(|a| a.is_ipv6()) {
        result.routes.push(RouteConfig { dst: "::/0".into(), gw: Some(super::spec::GATEWAY_V6.into()) });
    }
    if let Some(prev) = &conf.prev_result {
        let mut merged = CniResult::from_prev(prev)?;
        merged.append(result);
        return Ok(merged);
    }
    Ok(result)
}

/// DEL: release through the agent, delete the veth if this container owns it; missing pieces
/// are success. The host interface's name is the pod's: after a sandbox is recreated, the late
/// DEL of the old one must leave the new one's interface alone. An unreachable agent still gets
/// the veth removed, then code 11 so the runtime retries the release.
pub async fn del(conf: &NetConf, env: &Env) -> Result<(), CniError> {
    let handle = env.handle(&conf.name);
    let released = agent::<Released, ()>(conf, "DELETE", &handle_path(&handle), None).await;
    let host = link::host()?;
    link::delete_owned(&host, &env.host_interface(conf.prefix()), &env.container_id).await?;
    released.map(|_| ())
}

/// CHECK: the agent still holds the addresses of prevResult for this handle, the veth and the
/// pod's addresses and routes are there, and the host routes point at the veth.
pub async fn check(conf: &NetConf, env: &Env) -> Result<(), CniError> {
    let Some(prev) = &conf.prev_result else {
        return Err(CniError::new(INVALID_NETCONF, "prevResult: is required for CHECK"));
    };
    let prev = CniResult::from_prev(prev)?;
    let handle = env.handle(&conf.name);
    let w: Workload = agent(conf, "GET", &handle_path(&handle), None::<&()>).await?;
    let failed = |m: String| CniError::new(CHECK_FAILED, format!("CHECK of {handle}: {m}"));
    for a in &w.addresses {
        if !prev.ips.iter().any(|ip| ip.address == a.to_string()) {
            return Err(failed(format!("the agent holds {a}, which prevResult does not list")));
        }
    }
    let host_name = env.host_interface(conf.prefix());
    let host = link::host()?;
    link::check_host(&host, &host_name, &w.addresses).await.map_err(failed)?;
    let pod = link::in_netns(&env.netns)?;
    link::check_pod(&pod, &env.ifname, &w.addresses).await.map_err(failed)
}

/// GC (CNI 1.1): the agent releases this network's handles on this node that the runtime does
/// not list (keeping those younger than its grace period).
pub async fn gc(conf: &NetConf) -> Result<(), CniError> {
    let valid = conf.valid_attachments.clone().unwrap_or_default();
    let request = GcRequest {
        network: conf.name.clone(),
        valid_handles: valid.iter().map(|a| format!("{}.{}", conf.name, a.container_id)).collect(),
    };
    let _: GcAnswer = agent(conf, "POST", "/v1/workloads/gc", Some(&request)).await?;
    Ok(())
}

/// STATUS (CNI 1.1): ready when the agent answers.
pub async fn status(conf: &NetConf) -> Result<(), CniError> {
    let answer: Result<crate::api::StatusReport, CniError> = agent(conf, "GET", "/v1/status", None::<&()>).await;
    answer.map(|_| ()).map_err(|e| CniError::new(NOT_AVAILABLE, e.msg).details(e.details))
}
