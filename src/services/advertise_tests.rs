use super::*;
use serde_json::json;

fn config(value: serde_json::Value) -> BgpConfiguration {
    let c: BgpConfiguration = serde_json::from_value(value).unwrap();
    crate::datastore::Resource::validate(&c).unwrap();
    c
}

fn service(value: serde_json::Value) -> Service {
    serde_json::from_value(value).unwrap()
}

fn slice(service: &str, endpoints: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(json!({"labels": {"kubernetes.io/service-name": service}, "endpoints": endpoints})).unwrap()
}

fn net(text: &str) -> IpNetwork {
    text.parse().unwrap()
}

fn prefixes(a: &Advertisements) -> Vec<String> {
    a.prefixes.keys().map(|p| p.to_string()).collect()
}

fn cidrs() -> BgpConfiguration {
    config(json!({
        "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}, {"cidr": "fd00:96::/108"}],
        "serviceExternalIPs": [{"cidr": "192.0.2.0/24"}],
        "serviceLoadBalancerIPs": [{"cidr": "198.51.100.0/24"}],
    }))
}

fn local_web() -> BTreeMap<String, Service> {
    BTreeMap::from([(
        "prod/web".to_string(),
        service(
            json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "externalIPs": ["192.0.2.7", "203.0.113.1"],
                               "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local"},
                      "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.5"}]}}}),
        ),
    )])
}

#[test]
fn the_configured_cidrs_are_advertised_from_every_node() {
    let a = advertisements(Some(&cidrs()), &BTreeMap::new(), &BTreeMap::new(), "node1");
    assert_eq!(prefixes(&a), ["10.96.0.0/12", "192.0.2.0/24", "198.51.100.0/24", "fd00:96::/108"]);
    assert_eq!(a.prefixes[&net("10.96.0.0/12")].origins, BTreeSet::from([Origin::Cidr(Use::Cluster)]));
    assert_eq!(a.prefixes[&net("10.96.0.0/12")].origins.first().unwrap().to_string(), "serviceClusterIPs CIDR");
    assert!(advertisements(None, &local_web(), &BTreeMap::new(), "node1").prefixes.is_empty());
}

#[test]
fn local_policy_addresses_come_only_from_nodes_with_a_usable_local_endpoint() {
    let slices = BTreeMap::from([(
        "prod/web-abc".to_string(),
        slice("web", json!([{"addresses": ["10.244.2.5"], "nodeName": "node2", "conditions": {"ready": true}}])),
    )]);
    let on_node2 = advertisements(Some(&cidrs()), &local_web(), &slices, "node2");
    // 203.0.113.1 is outside serviceExternalIPs: never advertised.
    for p in ["10.96.0.10/32", "192.0.2.7/32", "198.51.100.5/32"] {
        assert!(on_node2.prefixes.contains_key(&net(p)), "{p}: {:?}", prefixes(&on_node2));
    }
    assert!(!on_node2.prefixes.contains_key(&net("203.0.113.1/32")));
    assert_eq!(
        on_node2.prefixes[&net("192.0.2.7/32")].origins.first().unwrap().to_string(),
        "service prod/web external IP, externalTrafficPolicy=Local, endpoint on this node"
    );
    let on_node1 = advertisements(Some(&cidrs()), &local_web(), &slices, "node1");
    assert_eq!(prefixes(&on_node1).len(), 4, "only the aggregates: {:?}", prefixes(&on_node1));
}

#[test]
fn not_ready_terminating_and_other_namespace_endpoints_do_not_count() {
    for (name, endpoints) in [
        ("prod/web-1", json!([{"addresses": ["10.244.2.5"], "nodeName": "node2", "conditions": {"ready": false}}])),
        (
            "prod/web-1",
            json!([{"addresses": ["10.244.2.5"], "nodeName": "node2",
                    "conditions": {"ready": true, "terminating": true}}]),
        ),
        ("dev/web-1", json!([{"addresses": ["10.244.2.5"], "nodeName": "node2"}])),
        ("prod/web-1", json!([{"addresses": ["10.244.2.5"], "nodeName": "node1"}])),
    ] {
        let slices = BTreeMap::from([(name.to_string(), slice("web", endpoints.clone()))]);
        let a = advertisements(Some(&cidrs()), &local_web(), &slices, "node2");
        assert_eq!(prefixes(&a).len(), 4, "{name} {endpoints}: {:?}", prefixes(&a));
    }
    // One usable endpoint in any slice of the Service is enough.
    let slices = BTreeMap::from([
        (
            "prod/web-1".to_string(),
            slice("web", json!([{"addresses": ["10.244.2.5"], "nodeName": "node2", "conditions": {"ready": false}}])),
        ),
        ("prod/web-2".to_string(), slice("web", json!([{"addresses": ["10.244.2.6"], "nodeName": "node2"}]))),
    ]);
    assert_eq!(prefixes(&advertisements(Some(&cidrs()), &local_web(), &slices, "node2")).len(), 7);
}

#[test]
fn cluster_ips_follow_the_internal_policy_and_external_ones_the_external_policy() {
    let services = BTreeMap::from([(
        "prod/api".to_string(),
        service(
            json!({"spec": {"clusterIP": "10.96.0.20", "externalIPs": ["192.0.2.8"], "internalTrafficPolicy": "Local"}}),
        ),
    )]);
    let slices = BTreeMap::from([(
        "prod/api-1".to_string(),
        slice("api", json!([{"addresses": ["10.244.1.1"], "nodeName": "n"}])),
    )]);
    let a = advertisements(Some(&cidrs()), &services, &slices, "n");
    assert!(a.prefixes.contains_key(&net("10.96.0.20/32")));
    assert!(
        !a.prefixes.contains_key(&net("192.0.2.8/32")),
        "externalTrafficPolicy is Cluster: the aggregate carries it"
    );
}

#[test]
fn without_aggregation_every_node_advertises_each_load_balancer_address() {
    let mut c = cidrs();
    c.service_load_balancer_aggregation = Some("Disabled".into());
    let services = BTreeMap::from([
        (
            "prod/lb".to_string(),
            service(json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.30"},
                           "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.9"}, {"ip": "203.0.113.9"}]}}})),
        ),
        // Not a LoadBalancer Service: its status is not an address to advertise.
        (
            "prod/plain".to_string(),
            service(
                json!({"spec": {"clusterIP": "10.96.0.31"}, "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.10"}]}}}),
            ),
        ),
    ]);
    let a = advertisements(Some(&c), &services, &BTreeMap::new(), "any-node");
    assert!(a.prefixes.contains_key(&net("198.51.100.9/32")));
    assert!(!a.prefixes.contains_key(&net("203.0.113.9/32")), "outside serviceLoadBalancerIPs");
    assert!(!a.prefixes.contains_key(&net("198.51.100.10/32")));
    assert_eq!(
        a.prefixes[&net("198.51.100.9/32")].origins.first().unwrap().to_string(),
        "service prod/lb load-balancer IP, serviceLoadBalancerAggregation=Disabled"
    );
    // Calico: without aggregation the load-balancer CIDRs themselves are not advertised.
    let lb_cidrs: Vec<String> = c.service_load_balancer_ips.iter().map(|b| b.cidr.clone()).collect();
    assert!(!lb_cidrs.is_empty());
    for cidr in &lb_cidrs {
        assert!(!a.prefixes.contains_key(&net(cidr)), "{cidr} advertised with aggregation disabled");
    }
    let aggregated = advertisements(Some(&cidrs()), &services, &BTreeMap::new(), "any-node");
    assert!(!aggregated.prefixes.contains_key(&net("198.51.100.9/32")));
    assert!(lb_cidrs.iter().all(|cidr| aggregated.prefixes.contains_key(&net(cidr))));
}

#[test]
fn communities_come_from_prefix_advertisements_and_the_services_annotation() {
    let c = config(json!({
        "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}],
        "communities": [{"name": "svc", "value": "65000:300"}],
        "prefixAdvertisements": [{"cidr": "10.96.0.0/12", "communities": ["65000:100"]}],
    }));
    let services = BTreeMap::from([(
        "prod/web".to_string(),
        service(json!({"annotations": {COMMUNITIES_ANNOTATION: "65000:200, svc,65000:1:2, bogus"},
                       "spec": {"clusterIP": "10.96.0.10", "internalTrafficPolicy": "Local"}})),
    )]);
    let slices = BTreeMap::from([(
        "prod/web-1".to_string(),
        slice("web", json!([{"addresses": ["10.244.1.1"], "nodeName": "n"}])),
    )]);
    let a = advertisements(Some(&c), &services, &slices, "n");
    assert_eq!(
        a.prefixes[&net("10.96.0.0/12")].communities,
        BTreeSet::from([CommunityValue::Standard(65000, 100)]),
        "the annotation is the Service's own prefixes' only"
    );
    assert_eq!(
        a.prefixes[&net("10.96.0.10/32")].communities,
        BTreeSet::from([
            CommunityValue::Standard(65000, 100),
            CommunityValue::Standard(65000, 200),
            CommunityValue::Standard(65000, 300),
            CommunityValue::Large(65000, 1, 2),
        ])
    );
    assert_eq!(a.problems.len(), 1);
    assert!(
        a.problems[0].contains("Service prod/web: annotation tortie.io/bgp-communities: \"bogus\""),
        "{:?}",
        a.problems
    );
}

#[test]
fn headless_and_external_name_services_advertise_nothing_of_their_own() {
    let services = BTreeMap::from([
        ("a/headless".to_string(), service(json!({"spec": {"clusterIP": "None", "internalTrafficPolicy": "Local"}}))),
        (
            "a/name".to_string(),
            service(
                json!({"spec": {"type": "ExternalName", "externalIPs": ["192.0.2.9"], "externalTrafficPolicy": "Local"}}),
            ),
        ),
    ]);
    let slices = BTreeMap::from([
        ("a/h".to_string(), slice("headless", json!([{"addresses": ["10.244.1.1"], "nodeName": "n"}]))),
        ("a/n".to_string(), slice("name", json!([{"addresses": ["10.244.1.2"], "nodeName": "n"}]))),
    ]);
    assert_eq!(prefixes(&advertisements(Some(&cidrs()), &services, &slices, "n")).len(), 4);
}
