//! Node set-up against a real kernel: address detection keeps the prefix
//! length, sysctls are set and checked, and the tunnel mode is chosen — the
//! userspace one here, where the kernel has no ipip.

use tortie::config::IpipImplementation;
use tortie::dataplane::address::{Family, Sources, kernel_route_source, select};
use tortie::dataplane::netlink::RouteSocket;
use tortie::dataplane::sysctl;
use tortie::fallback_ipip::{TunnelMode, choose_mode};
use tortie::netns::{Topology, run_in_namespace};

fn node() -> Topology {
    let mut t = Topology::new("dpnode").unwrap();
    t.add_namespace("n").unwrap();
    t.add_namespace("peer").unwrap();
    t.add_veth(("n", "eth1", Some("192.168.60.2/24")), ("peer", "eth1", Some("192.168.60.1/24"))).unwrap();
    t.add_veth(("n", "eth2", Some("10.30.0.2/16")), ("peer", "eth2", Some("10.30.0.1/16"))).unwrap();
    t.exec("n", &["ip", "route", "add", "default", "via", "10.30.0.1"]).unwrap();
    t
}

#[test]
fn address_detection_reads_the_kernel_and_keeps_the_prefix_length() {
    let t = node();
    let (first, reach, by_cidr) = run_in_namespace(&t.ns("n"), || {
        let addrs = RouteSocket::open().unwrap().ipv4_addresses().unwrap();
        let sources = Sources { route_source: &kernel_route_source, kubernetes_internal_ips: None };
        (
            select("first-found", Family::V4, &addrs, &sources),
            select("can-reach=203.0.113.9", Family::V4, &addrs, &sources),
            select("cidr=10.0.0.0/8", Family::V4, &addrs, &sources),
        )
    })
    .unwrap();
    assert_eq!(first, Ok("192.168.60.2/24".parse().unwrap()));
    assert_eq!(reach, Ok("10.30.0.2/16".parse().unwrap()), "the default route leaves through eth2");
    assert_eq!(by_cidr, Ok("10.30.0.2/16".parse().unwrap()));
}

#[test]
fn ipv6_address_detection_names_interfaces_and_skips_link_local() {
    let t = node();
    t.exec("n", &["ip", "-6", "addr", "add", "fd60::2/64", "dev", "eth1", "nodad"]).unwrap();
    t.exec("n", &["ip", "-6", "addr", "add", "2001:db8:30::2/48", "dev", "eth2", "nodad"]).unwrap();
    t.exec("peer", &["ip", "-6", "addr", "add", "2001:db8:30::1/48", "dev", "eth2", "nodad"]).unwrap();
    t.exec("n", &["ip", "-6", "route", "add", "default", "via", "2001:db8:30::1"]).unwrap();
    let (addrs, first, reach, by_name) = run_in_namespace(&t.ns("n"), || {
        let addrs = RouteSocket::open().unwrap().ipv6_addresses().unwrap();
        let sources = Sources { route_source: &kernel_route_source, kubernetes_internal_ips: None };
        (
            addrs.clone(),
            select("first-found", Family::V6, &addrs, &sources),
            select("can-reach=2001:db8:ffff::9", Family::V6, &addrs, &sources),
            select("interface=eth2", Family::V6, &addrs, &sources),
        )
    })
    .unwrap();
    // The link-local addresses the kernel gives every interface are listed, named, and skipped.
    assert!(addrs.iter().any(|a| a.ifname == "eth1" && a.address.ip().to_string().starts_with("fe80:")), "{addrs:?}");
    assert_eq!(first, Ok("fd60::2/64".parse().unwrap()));
    assert_eq!(reach, Ok("2001:db8:30::2/48".parse().unwrap()), "the default route leaves through eth2");
    assert_eq!(by_name, Ok("2001:db8:30::2/48".parse().unwrap()));
}

#[test]
fn sysctls_are_set_then_reported_clean() {
    let t = node();
    t.exec("n", &["sysctl", "-qw", "net.ipv4.ip_forward=0"]).unwrap();
    let (changed, remaining) = run_in_namespace(&t.ns("n"), || {
        let mut wanted = sysctl::node_settings(false);
        wanted.extend(sysctl::workload_settings("eth1"));
        let changed = sysctl::ensure(&wanted).unwrap();
        (changed, sysctl::check(&wanted))
    })
    .unwrap();
    assert!(changed.iter().any(|s| s.key == "net.ipv4.ip_forward"), "{changed:?}");
    assert!(changed.iter().any(|s| s.key == "net.ipv4.conf.eth1.proxy_arp"), "{changed:?}");
    assert!(remaining.is_empty(), "{remaining:?}");
    let out = t.exec("n", &["sysctl", "-n", "net.ipv4.conf.eth1.proxy_arp"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
}

#[test]
fn without_kernel_ipip_auto_falls_back_to_userspace_and_kernel_is_refused() {
    let t = node();
    let (auto, kernel) = run_in_namespace(&t.ns("n"), || {
        let mut socket = RouteSocket::open().unwrap();
        let detected = tortie::fallback_ipip::detect_mode(IpipImplementation::Auto, &mut socket);
        let detected_kernel = tortie::fallback_ipip::detect_mode(IpipImplementation::Kernel, &mut socket);
        let underlay = tortie::dataplane::underlay::Underlay {
            ifindex: 1,
            ifname: "lo".into(),
            mtu: 1500,
            v4: "127.0.0.1/8".parse().unwrap(),
            v6: None,
        };
        let auto = choose_mode(IpipImplementation::Auto, &mut socket, &underlay, None);
        let kernel = choose_mode(IpipImplementation::Kernel, &mut socket, &underlay, None);
        assert!(detected.is_ok(), "{detected:?}");
        if !std::path::Path::new("/sys/module/ipip").exists() {
            assert_eq!(
                detected,
                Ok(tortie::remote_routes::PathKind::IpipUserspace),
                "detection without side effects agrees with the real attempt"
            );
            assert!(detected_kernel.is_err());
        }
        (auto.map_err(|e| e.to_string()), kernel.map_err(|e| e.to_string()))
    })
    .unwrap();
    let kernel_has_ipip = std::path::Path::new("/sys/module/ipip").exists();
    if kernel_has_ipip {
        assert!(matches!(auto, Ok(TunnelMode::Kernel { .. })), "{auto:?}");
    } else {
        assert_eq!(auto, Ok(TunnelMode::Userspace));
        let err = kernel.unwrap_err();
        assert!(err.contains("ipip.implementation is kernel") && err.contains("no ipip support"), "{err}");
    }
}
