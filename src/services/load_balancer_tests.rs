use super::*;
use crate::datastore::resources::LoadBalancerIngress;

fn lb() -> Service {
    let mut s = Service::default();
    s.spec.service_type = Some("LoadBalancer".into());
    s
}

fn pools() -> Vec<IpNetwork> {
    vec!["192.0.2.0/24".parse().unwrap()]
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn handle_names_the_namespace_and_service() {
    assert_eq!(handle_of("default/web"), "lb.default.web");
    assert!(is_load_balancer_handle("lb.default.web"));
    assert!(!is_load_balancer_handle("k8s-pod-network.abc"));
}

#[test]
fn a_new_load_balancer_service_gets_any_address_and_others_none() {
    let mut cluster_ip = lb();
    cluster_ip.spec.service_type = None;
    let services = BTreeMap::from([("default/web".to_string(), lb()), ("default/db".to_string(), cluster_ip)]);
    let plan = plan(&services, &BTreeMap::new(), &pools());
    assert_eq!(
        plan.assign,
        vec![Assignment { service: "default/web".into(), handle: "lb.default.web".into(), want: Want::Any(4) }]
    );
    assert!(plan.release.is_empty() && plan.status.is_empty() && plan.warnings.is_empty(), "{plan:?}");
}

#[test]
fn a_held_address_is_kept_and_written_to_status_once() {
    let services = BTreeMap::from([("default/web".to_string(), lb())]);
    let held = BTreeMap::from([(ip("192.0.2.7"), "lb.default.web".to_string())]);
    let first = plan(&services, &held, &pools());
    assert!(first.assign.is_empty() && first.release.is_empty(), "{first:?}");
    assert_eq!(first.status, BTreeMap::from([("default/web".to_string(), vec![ip("192.0.2.7")])]));
    let mut written = lb();
    written.status.load_balancer.ingress = vec![LoadBalancerIngress { ip: Some("192.0.2.7".into()) }];
    let again = plan(&BTreeMap::from([("default/web".to_string(), written)]), &held, &pools());
    assert_eq!(again, Plan::default());
}

#[test]
fn gone_or_no_longer_load_balancer_services_release_their_handles() {
    let mut now_cluster_ip = lb();
    now_cluster_ip.spec.service_type = Some("ClusterIP".into());
    now_cluster_ip.status.load_balancer.ingress = vec![LoadBalancerIngress { ip: Some("192.0.2.1".into()) }];
    let services = BTreeMap::from([("default/was".to_string(), now_cluster_ip)]);
    let held = BTreeMap::from([
        (ip("192.0.2.1"), "lb.default.was".to_string()),
        (ip("192.0.2.2"), "lb.default.gone".to_string()),
        // Not a load-balancer handle: not this controller's to release.
        (ip("192.0.2.3"), "k8s-pod-network.x".to_string()),
    ]);
    let plan = plan(&services, &held, &pools());
    assert_eq!(plan.release, vec!["lb.default.gone".to_string(), "lb.default.was".to_string()]);
    // The Service that stays loses the released address from its status too.
    assert_eq!(plan.status, BTreeMap::from([("default/was".to_string(), vec![])]));
}

#[test]
fn requested_address_from_annotation_or_spec() {
    let mut by_spec = lb();
    by_spec.spec.load_balancer_ip = Some("192.0.2.9".into());
    let mut by_annotation = lb();
    by_annotation.annotations.insert(LOAD_BALANCER_IPS_ANNOTATION.into(), r#"["192.0.2.10","192.0.2.11"]"#.into());
    let services = BTreeMap::from([("a/spec".to_string(), by_spec), ("a/ann".to_string(), by_annotation)]);
    let plan = plan(&services, &BTreeMap::new(), &pools());
    let wants: Vec<_> = plan.assign.iter().map(|a| (a.service.as_str(), a.want.clone())).collect();
    assert_eq!(
        wants,
        vec![
            ("a/ann", Want::These(vec![ip("192.0.2.10"), ip("192.0.2.11")])),
            ("a/spec", Want::These(vec![ip("192.0.2.9")]))
        ]
    );
}

#[test]
fn a_requested_address_held_by_another_gets_none_and_a_warning_naming_it() {
    let mut wants_taken = lb();
    wants_taken.spec.load_balancer_ip = Some("192.0.2.7".into());
    let mut outside = lb();
    outside.spec.load_balancer_ip = Some("198.51.100.1".into());
    let services = BTreeMap::from([("a/taker".to_string(), wants_taken), ("a/outside".to_string(), outside)]);
    let held = BTreeMap::from([(ip("192.0.2.7"), "lb.a.first".to_string())]);
    let plan = plan(&services, &held, &pools());
    assert!(plan.assign.is_empty(), "{plan:?}");
    assert_eq!(plan.release, vec!["lb.a.first".to_string()]);
    let text = plan.warnings.join("\n");
    assert!(text.contains("Service a/taker: requested address 192.0.2.7 is already held by lb.a.first"), "{text}");
    assert!(
        text.contains("Service a/outside: requested address 198.51.100.1 is in no enabled LoadBalancer pool"),
        "{text}"
    );
}

#[test]
fn a_changed_request_releases_the_old_address_first() {
    let mut moved = lb();
    moved.spec.load_balancer_ip = Some("192.0.2.20".into());
    let services = BTreeMap::from([("a/web".to_string(), moved)]);
    let held = BTreeMap::from([(ip("192.0.2.7"), "lb.a.web".to_string())]);
    let plan = plan(&services, &held, &pools());
    assert_eq!(plan.release, vec!["lb.a.web".to_string()]);
    assert_eq!(plan.assign.len(), 1);
}

#[test]
fn an_unreadable_request_is_a_warning_naming_field_and_value() {
    let mut bad = lb();
    bad.annotations.insert(LOAD_BALANCER_IPS_ANNOTATION.into(), "192.0.2.1".into());
    let plan = plan(&BTreeMap::from([("a/bad".to_string(), bad)]), &BTreeMap::new(), &pools());
    assert!(plan.assign.is_empty());
    assert_eq!(
        plan.warnings,
        vec![format!(
            "Service a/bad: annotation {LOAD_BALANCER_IPS_ANNOTATION}: \"192.0.2.1\" is not a JSON list of addresses"
        )]
    );
}

#[test]
fn extra_addresses_from_a_race_are_released_singly_and_no_pool_warns() {
    let services = BTreeMap::from([("a/web".to_string(), lb()), ("a/other".to_string(), lb())]);
    let held = BTreeMap::from([(ip("192.0.2.1"), "lb.a.web".to_string()), (ip("192.0.2.2"), "lb.a.web".to_string())]);
    let raced = plan(&services, &held, &pools());
    assert_eq!(raced.release_extra, vec![ip("192.0.2.2")]);
    let no_pool = plan(&services, &BTreeMap::new(), &[]);
    assert!(no_pool.warnings.iter().any(|w| w == "Service a/other: no enabled LoadBalancer pool"), "{no_pool:?}");
}

#[test]
fn services_of_another_load_balancer_class_are_left_to_their_controller() {
    let with_class = |class: &str| {
        let mut s = lb();
        s.spec.load_balancer_class = Some(class.into());
        s
    };
    let mut metallb = with_class("metallb.io/metallb");
    metallb.status.load_balancer.ingress = vec![LoadBalancerIngress { ip: Some("203.0.113.5".into()) }];
    let services = BTreeMap::from([
        ("default/calico".to_string(), with_class("calico")),
        ("default/tortie".to_string(), with_class("tortie")),
        ("default/metallb".to_string(), metallb),
    ]);
    let plan = plan(&services, &BTreeMap::new(), &pools());
    let assigned: Vec<&str> = plan.assign.iter().map(|a| a.service.as_str()).collect();
    assert_eq!(assigned, ["default/calico", "default/tortie"]);
    // The other controller's address stays in its status: no write for that Service.
    assert!(plan.status.is_empty() && plan.warnings.is_empty(), "{plan:?}");
}
