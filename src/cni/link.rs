//! The kernel work of the plugin, in process through rtnetlink: the veth pair (created with its
//! pod end already inside the pod's namespace, under CNI_IFNAME), the pod's addresses and
//! routes, and the checks of CHECK. A socket opened by a thread that has joined the pod's
//! namespace stays in that namespace, so one short-lived thread per namespace is enough and the
//! rest runs on the plugin's single-threaded runtime. Host routes are the agent's business.

use super::error::{CniError, IFNAME_TAKEN, kernel};
use super::spec::{GATEWAY_V4, GATEWAY_V6, HOST_MAC};
use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::AddressHeaderFlags;
use netlink_packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteScope};
use nix::sched::{CloneFlags, setns};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

const EEXIST: i32 = -libc::EEXIST;
const ENODEV: i32 = -libc::ENODEV;

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| c.get()),
        _ => None,
    }
}

/// A netlink handle in the plugin's own (the host's) namespace.
pub fn host() -> Result<Handle, CniError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| kernel("cannot open a netlink socket", e))?;
    tokio::spawn(connection);
    Ok(handle)
}

/// A netlink handle inside the namespace at `netns` (a path such as `/run/netns/x` or
/// `/proc/<pid>/ns/net`).
pub fn in_netns(netns: &str) -> Result<Handle, CniError> {
    let file = File::open(netns).map_err(|e| kernel(format!("cannot open CNI_NETNS {netns}"), e))?;
    let runtime = tokio::runtime::Handle::current();
    let opened = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // The socket must register with the runtime's reactor, from this thread.
                let _entered = runtime.enter();
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
                rtnetlink::new_connection()
            })
            .join()
    });
    let (connection, handle, _) = match opened {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(kernel(format!("cannot enter CNI_NETNS {netns}"), e)),
        Err(_) => return Err(kernel(format!("cannot enter CNI_NETNS {netns}"), "the thread panicked")),
    };
    tokio::spawn(connection);
    Ok(handle)
}

/// The link named `name`, if it exists.
pub async fn link(h: &Handle, name: &str) -> Result<Option<LinkMessage>, CniError> {
    match h.link().get().match_name(name.to_string()).execute().try_next().await {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(kernel(format!("cannot look up interface {name}"), e)),
    }
}

/// The MAC address of `link` as `aa:bb:…`.
pub fn mac(link: &LinkMessage) -> String {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(bytes) => {
                Some(bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// Deletes link `name`; `false` when there was none (DEL is idempotent).
pub async fn delete(h: &Handle, name: &str) -> Result<bool, CniError> {
    let Some(l) = link(h, name).await? else { return Ok(false) };
    match h.link().del(l.header.index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(false),
        Err(e) => Err(kernel(format!("cannot delete interface {name}"), e)),
    }
}

/// The container a host interface belongs to: the interface alias ADD gives it.
fn owner(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfAlias(alias) => Some(alias.as_str()),
        _ => None,
    })
}

/// Deletes link `name` only if it belongs to `container_id` (its alias, set by
/// [`mark_owner`]); `false` when there was none or it is another container's. The name is the
/// pod's, so a newer sandbox of the same pod may hold it; the delete goes by the index that
/// was checked, so an interface replaced meanwhile is not touched either.
pub async fn delete_owned(h: &Handle, name: &str, container_id: &str) -> Result<bool, CniError> {
    let Some(l) = link(h, name).await? else { return Ok(false) };
    // Container ids are compared as handles are: whatever their case.
    if !owner(&l).is_some_and(|o| o.eq_ignore_ascii_case(container_id)) {
        return Ok(false);
    }
    match h.link().del(l.header.index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(false),
        Err(e) => Err(kernel(format!("cannot delete interface {name}"), e)),
    }
}

/// Records `container_id` as the owner of the host interface `name` (its alias; the kernel
/// ignores an alias in the request creating a link). A failure deletes the interface: an
/// unmarked interface is nobody's, and DEL would leave it to the namespace's removal.
pub async fn mark_owner(h: &Handle, name: &str, container_id: &str) -> Result<(), CniError> {
    let Some(l) = link(h, name).await? else {
        return Err(kernel(format!("interface {name}"), "missing after creation"));
    };
    let index = l.header.index;
    let alias = LinkUnspec::new_with_index(index).alias(container_id).build();
    if let Err(e) = h.link().set(alias).execute().await {
        let _ = h.link().del(index).execute().await;
        return Err(kernel(format!("cannot set the alias of {name} to its container id"), e));
    }
    Ok(())
}

/// Creates the veth pair: `host_name` here (up, MAC ee:ee:ee:ee:ee:ee) and `ifname` directly
/// inside the namespace `netns`, both with `mtu`.
pub async fn create_veth(h: &Handle, host_name: &str, ifname: &str, netns: &str, mtu: u32) -> Result<(), CniError> {
    let ns = File::open(netns).map_err(|e| kernel(format!("cannot open CNI_NETNS {netns}"), e))?;
    let peer = LinkMessageBuilder::<LinkUnspec>::new().name(ifname).mtu(mtu).setns_by_fd(ns.as_raw_fd()).build();
    let message = LinkVeth::new(host_name, ifname)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .mtu(mtu)
        .address(HOST_MAC.to_vec())
        .up()
        .build();
    match h.link().add(message).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(EEXIST) => Err(CniError::new(
            IFNAME_TAKEN,
            format!("CNI_IFNAME {ifname} already exists in CNI_NETNS {netns} (or {host_name} on the host)"),
        )),
        Err(e) => Err(kernel(format!("cannot create the veth pair {host_name} / {ifname}"), e)),
    }
}

/// Inside the pod: `ifname` up with `addresses`, `169.254.1.1 dev ifname scope link` and a
/// default route through it (IPv6: through the host side's link-local address). Returns the
/// pod interface.
pub async fn configure_pod(pod: &Handle, ifname: &str, addresses: &[IpNetwork]) -> Result<LinkMessage, CniError> {
    let Some(link) = link(pod, ifname).await? else {
        return Err(kernel(format!("interface {ifname} in the pod"), "missing after creation"));
    };
    let index = link.header.index;
    let up = LinkUnspec::new_with_index(index).up().build();
    pod.link().set(up).execute().await.map_err(|e| kernel(format!("cannot set {ifname} up"), e))?;
    let gw4: Ipv4Addr = GATEWAY_V4.parse().expect("a valid address");
    let gw6: Ipv6Addr = GATEWAY_V6.parse().expect("a valid address");
    for a in addresses {
        let mut add = pod.address().add(index, a.ip(), a.prefix());
        if a.is_ipv6() {
            // The address is the pod's alone: no duplicate detection delaying its use.
            add.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        add.execute().await.map_err(|e| kernel(format!("cannot add {a} to {ifname}"), e))?;
    }
    let mut routes = Vec::new();
    if addresses.iter().any(|a| a.is_ipv4()) {
        routes.push(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(gw4, 32)
                .output_interface(index)
                .scope(RouteScope::Link)
                .build(),
        );
        routes.push(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
                .gateway(gw4)
                .output_interface(index)
                .build(),
        );
    }
    if addresses.iter().any(|a| a.is_ipv6()) {
        routes.push(
            RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(Ipv6Addr::UNSPECIFIED, 0)
                .gateway(gw6)
                .output_interface(index)
                .build(),
        );
    }
    for r in routes {
        pod.route().add(r).execute().await.map_err(|e| kernel(format!("cannot add a route on {ifname}"), e))?;
    }
    if addresses.iter().any(|a| a.is_ipv4()) {
        // The gateway's MAC is fixed (the host side's HOST_MAC): a permanent entry, so the pod
        // never depends on proxy ARP, which answers only when the node itself has a route to
        // 169.254.1.1 — a default route a node need not have.
        pod.neighbours()
            .add(index, IpAddr::V4(gw4))
            .link_layer_address(&HOST_MAC)
            .replace()
            .execute()
            .await
            .map_err(|e| kernel(format!("cannot add the gateway's neighbour entry on {ifname}"), e))?;
    }
    Ok(link)
}

/// The routes of one family in the main table of the namespace of `h`.
async fn routes(h: &Handle, v6: bool) -> Result<Vec<RouteMessage>, CniError> {
    let query = if v6 {
        RouteMessageBuilder::<Ipv6Addr>::new().build()
    } else {
        RouteMessageBuilder::<Ipv4Addr>::new().build()
    };
    h.route().get(query).execute().try_collect().await.map_err(|e| kernel("cannot list routes", e))
}

fn dst(r: &RouteMessage) -> Option<IpNetwork> {
    let len = r.header.destination_prefix_length;
    let ip = r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        RouteAttribute::Destination(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    });
    let ip = ip.unwrap_or(if r.header.address_family == AddressFamily::Inet6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    });
    IpNetwork::new(ip, len).ok()
}

fn gateway(r: &RouteMessage) -> Option<IpAddr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        RouteAttribute::Gateway(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    })
}

fn oif(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

/// CHECK inside the pod: `ifname` is up with every address and both routes are there.
pub async fn check_pod(pod: &Handle, ifname: &str, addresses: &[IpNetwork]) -> Result<(), String> {
    let link = link(pod, ifname).await.map_err(|e| e.msg)?.ok_or_else(|| format!("{ifname} is missing in the pod"))?;
    if !link.header.flags.contains(LinkFlags::Up) {
        return Err(format!("{ifname} in the pod is down"));
    }
    let index = link.header.index;
    let have: Vec<(IpAddr, u8)> = pod
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|a| {
            a.attributes.iter().find_map(|x| match x {
                netlink_packet_route::address::AddressAttribute::Address(ip) => Some((*ip, a.header.prefix_len)),
                _ => None,
            })
        })
        .collect();
    for a in addresses {
        if !have.contains(&(a.ip(), a.prefix())) {
            return Err(format!("{ifname} in the pod lacks {a} (has {have:?})"));
        }
    }
    if addresses.iter().any(|a| a.is_ipv4()) {
        let gw: IpAddr = GATEWAY_V4.parse().expect("valid");
        let v4 = routes(pod, false).await.map_err(|e| e.msg)?;
        let on_link = v4.iter().any(|r| dst(r) == IpNetwork::new(gw, 32).ok() && oif(r) == Some(index));
        let default = v4.iter().any(|r| dst(r).is_some_and(|d| d.prefix() == 0) && gateway(r) == Some(gw));
        if !on_link || !default {
            return Err(format!("the pod lacks the route to {gw} on {ifname} or the default route through it"));
        }
    }
    if addresses.iter().any(|a| a.is_ipv6()) {
        let gw: IpAddr = GATEWAY_V6.parse().expect("valid");
        let v6 = routes(pod, true).await.map_err(|e| e.msg)?;
        if !v6.iter().any(|r| dst(r).is_some_and(|d| d.prefix() == 0) && gateway(r) == Some(gw)) {
            return Err(format!("the pod lacks the IPv6 default route through {gw}"));
        }
    }
    Ok(())
}

/// CHECK on the host: `host_name` is up and each address is routed to it.
pub async fn check_host(h: &Handle, host_name: &str, addresses: &[IpNetwork]) -> Result<(), String> {
    let link =
        link(h, host_name).await.map_err(|e| e.msg)?.ok_or_else(|| format!("host interface {host_name} is missing"))?;
    if !link.header.flags.contains(LinkFlags::Up) {
        return Err(format!("host interface {host_name} is down"));
    }
    for a in addresses {
        let all = routes(h, a.is_ipv6()).await.map_err(|e| e.msg)?;
        if !all.iter().any(|r| dst(r) == Some(*a) && oif(r) == Some(link.header.index)) {
            return Err(format!("no host route {a} dev {host_name}"));
        }
    }
    Ok(())
}
