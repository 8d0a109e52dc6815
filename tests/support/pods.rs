//! Calico-style pod wiring for tests that run before (or without) the CNI
//! plugin: a pod namespace behind a veth, its address as a /32, a default
//! route through the link-local gateway 169.254.1.1 answered by proxy ARP
//! on the host side, and the host route `<pod>/32 dev <veth>`.

use tortie::netns::{CommandError, Topology};

/// Creates namespace `pod` wired to namespace `node` with address `addr`
/// (no prefix length); the host side is `host_if` in `node`.
pub fn add_pod(t: &mut Topology, node: &str, pod: &str, host_if: &str, addr: &str) -> Result<(), CommandError> {
    t.add_namespace(pod)?;
    t.add_veth((node, host_if, None), (pod, "eth0", None))?;
    t.exec(node, &["sysctl", "-qw", &format!("net.ipv4.conf.{host_if}.proxy_arp=1")])?;
    t.exec(node, &["sysctl", "-qw", &format!("net.ipv4.neigh.{host_if}.proxy_delay=0")])?;
    t.exec(node, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    // Proxy ARP answers for 169.254.1.1 only if the host routes it out of
    // another interface; a node without a default route gets one via lo.
    t.exec(node, &["ip", "route", "replace", "169.254.1.1/32", "dev", "lo"])?;
    t.exec(node, &["ip", "route", "add", &format!("{addr}/32"), "dev", host_if, "scope", "link"])?;
    t.exec(pod, &["ip", "addr", "add", &format!("{addr}/32"), "dev", "eth0"])?;
    t.exec(pod, &["ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"])?;
    t.exec(pod, &["ip", "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"])?;
    Ok(())
}

/// Adds IPv6 address `addr` to pod `pod` (made by [`add_pod`]): the host
/// side answers as `fe80::1`, the pod's default route, and routes
/// `<addr>/128 dev <host_if>` (no duplicate address detection: usable at once).
pub fn add_pod_v6(t: &Topology, node: &str, pod: &str, host_if: &str, addr: &str) -> Result<(), CommandError> {
    t.exec(node, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;
    t.exec(node, &["ip", "addr", "add", "fe80::1/64", "dev", host_if, "nodad"])?;
    t.exec(node, &["ip", "-6", "route", "add", &format!("{addr}/128"), "dev", host_if])?;
    t.exec(pod, &["ip", "addr", "add", &format!("{addr}/128"), "dev", "eth0", "nodad"])?;
    t.exec(pod, &["ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0"])?;
    Ok(())
}
