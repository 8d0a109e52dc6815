//! Kubernetes-backend behaviour beyond the shared suite, through the real kube client against
//! the in-process stand-in API server: bookmarks, a lost watch that must relist (410 Gone),
//! node annotations next to kubelet heartbeats, node labels, malformed annotations, and Secret
//! records as Kubernetes Secrets in the client's namespace; policies and namespaces as the API
//! server's own objects (namespaced where Kubernetes puts them).

use std::collections::BTreeMap;
use std::time::Duration;
use tortie::datastore::kube_standin::StandIn;
use tortie::datastore::kubernetes::KubeBackend;
use tortie::datastore::resources::namespace::IPV4_POOLS;
use tortie::datastore::resources::{
    IpamHandle, KubeNetworkPolicy, Namespace, NetworkPolicy, Node, NodeBgp, Secret, SecretValue,
};
use tortie::datastore::{Datastore, DatastoreError, WatchEvent};

const DEADLINE: Duration = Duration::from_secs(30);

async fn setup() -> (StandIn, Datastore) {
    let standin = StandIn::start(Duration::from_millis(100)).await.expect("start the stand-in");
    let store = Datastore::new(KubeBackend::new(standin.client()));
    (standin, store)
}

fn handle(n: u32) -> IpamHandle {
    IpamHandle { handle_id: "h".into(), block: BTreeMap::from([("count".into(), n)]), deleted: false }
}

async fn next<R: tortie::datastore::Resource>(w: &mut tortie::datastore::WatchStream<R>) -> WatchEvent<R> {
    tokio::time::timeout(DEADLINE, w.next()).await.expect("an event in time").expect("watch open").expect("no error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_watch_receives_bookmarks() {
    let (_standin, store) = setup().await;
    let created = store.create("h", &handle(0)).await.unwrap();
    let mut watch = store.watch::<IpamHandle>(Some(created.revision)).await.unwrap();
    match next(&mut watch).await {
        WatchEvent::Bookmark(revision) => assert!(revision >= created.revision),
        other => panic!("expected a bookmark on an idle watch, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_cut_after_compaction_relists_and_continues() {
    let (standin, store) = setup().await;
    let created = store.create("h", &handle(0)).await.unwrap();
    let mut watch = store.watch::<IpamHandle>(Some(created.revision)).await.unwrap();
    let mut revision = created.revision;
    for n in 1..=3 {
        revision = store.update("h", &handle(n), revision).await.unwrap().revision;
    }
    // Read up to the last update, so the watch's place is known…
    loop {
        if let WatchEvent::Modified(s) = next(&mut watch).await
            && s.spec.block["count"] == 3
        {
            break;
        }
    }
    // …then lose it: more changes the watch has not seen, history compacted, connection cut.
    standin.cut_watches();
    revision = store.update("h", &handle(4), revision).await.unwrap().revision;
    store.create("other", &handle(9)).await.unwrap();
    standin.compact();
    loop {
        match next(&mut watch).await {
            WatchEvent::Resync(listing) => {
                let counts: BTreeMap<_, _> =
                    listing.items.iter().map(|s| (s.name.clone(), s.spec.block["count"])).collect();
                assert_eq!(counts, BTreeMap::from([("h".to_string(), 4), ("other".to_string(), 9)]));
                break;
            }
            WatchEvent::Modified(s) if s.spec.block["count"] == 4 => break,
            _ => {}
        }
    }
    // Whether the cut landed before or after the change reached the watch, it goes on live.
    store.update("h", &handle(5), revision).await.unwrap();
    loop {
        if let WatchEvent::Modified(s) = next(&mut watch).await
            && s.spec.block["count"] == 5
        {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_version_the_server_forgot_gets_gone_and_resyncs() {
    let (standin, store) = setup().await;
    let created = store.create("h", &handle(0)).await.unwrap();
    store.update("h", &handle(1), created.revision).await.unwrap();
    standin.compact();
    let mut watch = store.watch::<IpamHandle>(Some(created.revision)).await.unwrap();
    match next(&mut watch).await {
        WatchEvent::Resync(listing) => assert_eq!(listing.items[0].spec.block["count"], 1),
        other => panic!("410 Gone must end in a resync, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_heartbeats_conflict_with_stale_node_writes_but_are_not_node_events() {
    let (standin, store) = setup().await;
    standin.add_node("n1");
    let node = Node { bgp: Some(NodeBgp { as_number: Some(64512), ..Default::default() }), ..Node::default() };
    let created = store.create("n1", &node).await.unwrap();
    let mut watch = store.watch::<Node>(None).await.unwrap();
    assert!(matches!(next(&mut watch).await, WatchEvent::Resync(l) if l.items.len() == 1));

    standin.heartbeat("n1");
    let changed = Node { bgp: Some(NodeBgp { as_number: Some(65000), ..Default::default() }), ..Node::default() };
    assert!(matches!(store.update("n1", &changed, created.revision).await, Err(DatastoreError::Conflict { .. })));
    let fresh = store.get::<Node>("n1").await.unwrap();
    store.update("n1", &changed, fresh.revision).await.unwrap();
    // The heartbeat produced no Node event; the first event is our change.
    loop {
        match next(&mut watch).await {
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Modified(s) => {
                assert_eq!(s.spec.bgp.unwrap().as_number, Some(65000));
                break;
            }
            other => panic!("expected the AS change, got {other:?}"),
        }
    }
    let annotations = standin.get_raw("core/nodes", "n1").unwrap()["metadata"]["annotations"].clone();
    assert_eq!(annotations["tortie.io/ASNumber"], "65000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_node_annotation_is_invalid_data_naming_node_and_field() {
    let (standin, store) = setup().await;
    standin.add_node("n2");
    let mut object = standin.get_raw("core/nodes", "n2").unwrap();
    object["metadata"]["annotations"] =
        serde_json::json!({"tortie.io/registered": "true", "tortie.io/ASNumber": "sixty-four"});
    standin.put_raw("core/nodes", "n2", object);
    match store.get::<Node>("n2").await {
        Err(DatastoreError::InvalidData { key, reason }) => {
            assert_eq!(key, "Node/n2");
            assert!(reason.contains("bgp.asNumber"), "{reason}");
        }
        other => panic!("expected InvalidData, got {other:?}"),
    }
    assert!(matches!(store.create("n3", &Node::default()).await, Err(DatastoreError::NotFound { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_labels_are_the_kubernetes_nodes_kept_by_registration_and_a_relabel_is_an_event() {
    let (standin, store) = setup().await;
    standin.add_node("n4");
    let mut object = standin.get_raw("core/nodes", "n4").unwrap();
    object["metadata"]["labels"] = serde_json::json!({"kubernetes.io/hostname": "n4"});
    standin.put_raw("core/nodes", "n4", object);
    let registration = Node { labels: BTreeMap::from([("rack".into(), "r1".into())]), ..Node::default() };
    store.create("n4", &registration).await.unwrap();
    let read = store.get::<Node>("n4").await.unwrap();
    let both = BTreeMap::from([("kubernetes.io/hostname".into(), "n4".into()), ("rack".into(), "r1".into())]);
    assert_eq!(read.spec.labels, both);

    let mut watch = store.watch::<Node>(None).await.unwrap();
    assert!(matches!(next(&mut watch).await, WatchEvent::Resync(l) if l.items.len() == 1));
    // `kubectl label node n4 route-reflector=true`
    let mut object = standin.get_raw("core/nodes", "n4").unwrap();
    object["metadata"]["labels"]["route-reflector"] = serde_json::json!("true");
    standin.put_raw("core/nodes", "n4", object);
    loop {
        match next(&mut watch).await {
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Modified(s) => {
                assert_eq!(s.spec.labels.get("route-reflector").map(String::as_str), Some("true"));
                break;
            }
            other => panic!("expected the relabel, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_records_are_kubernetes_secrets_in_the_clients_namespace() {
    let standin = StandIn::start(Duration::from_millis(100)).await.expect("start the stand-in");
    let store = Datastore::new(KubeBackend::new(standin.client_in("tortie-system")));
    let secret = Secret { data: BTreeMap::from([("password".to_string(), SecretValue(b"s3cr3t".to_vec()))]) };
    let created = store.create("bgp", &secret).await.unwrap();
    let raw = standin.get_raw("core/secrets", "tortie-system/bgp").expect("a Secret in tortie-system");
    assert_eq!((raw["kind"].as_str(), raw["data"]["password"].as_str()), (Some("Secret"), Some("czNjcjN0")), "{raw}");
    assert!(standin.get_raw("core/secrets", "default/bgp").is_none());
    let read = store.get::<Secret>("bgp").await.unwrap();
    assert_eq!(read.spec, secret);
    assert!(!format!("{read:?}").contains("s3cr3t"));
    let mut watch = store.watch::<Secret>(Some(created.revision)).await.unwrap();
    let changed = Secret { data: BTreeMap::from([("password".to_string(), SecretValue(b"other".to_vec()))]) };
    store.update("bgp", &changed, read.revision).await.unwrap();
    loop {
        match next(&mut watch).await {
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Modified(s) => break assert_eq!(s.spec, changed),
            other => panic!("expected the change, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_and_namespaces_are_kubernetes_objects_in_their_namespaces() {
    let (standin, store) = setup().await;
    let kube: KubeNetworkPolicy =
        serde_json::from_value(serde_json::json!({"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{}]}))
            .unwrap();
    store.create("prod/allow-all", &kube).await.unwrap();
    let raw = standin.get_raw("networking.k8s.io/networkpolicies", "prod/allow-all").expect("in namespace prod");
    assert_eq!(raw["spec"]["podSelector"]["matchLabels"]["app"], "db", "{raw}");
    assert_eq!(store.get::<KubeNetworkPolicy>("prod/allow-all").await.unwrap().spec, kube);
    let listed = store.list::<KubeNetworkPolicy>().await.unwrap();
    assert_eq!(listed.items.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["prod/allow-all"]);

    let calico = NetworkPolicy { order: Some(10.0), ..NetworkPolicy::default() };
    store.create("prod/first", &calico).await.unwrap();
    assert!(standin.get_raw("crd.tortie.io/networkpolicies", "prod/first").is_some());
    assert!(store.create("no-namespace", &calico).await.is_err());

    let namespace =
        Namespace { labels: BTreeMap::from([("env".to_string(), "prod".to_string())]), ..Namespace::default() };
    let created = store.create("prod", &namespace).await.unwrap();
    let raw = standin.get_raw("core/namespaces", "prod").expect("a Namespace");
    assert_eq!(raw["metadata"]["labels"]["env"], "prod", "{raw}");
    let mut watch = store.watch::<Namespace>(Some(created.revision)).await.unwrap();
    // Calico's pool annotation is carried both ways.
    let pools = BTreeMap::from([(IPV4_POOLS.to_string(), r#"["blue"]"#.to_string())]);
    let relabelled = Namespace { labels: BTreeMap::from([("env".to_string(), "dev".to_string())]), annotations: pools };
    store.update("prod", &relabelled, created.revision).await.unwrap();
    let raw = standin.get_raw("core/namespaces", "prod").expect("a Namespace");
    assert_eq!(raw["metadata"]["annotations"][IPV4_POOLS], r#"["blue"]"#, "{raw}");
    loop {
        match next(&mut watch).await {
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Modified(s) => break assert_eq!((s.name.as_str(), &s.spec), ("prod", &relabelled)),
            other => panic!("expected the relabel, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_endpoint_slices_are_kubernetes_objects_read_as_what_tortie_uses() {
    use tortie::datastore::resources::{EndpointSlice, Service};
    let (standin, store) = setup().await;
    let mut slices = store.watch::<EndpointSlice>(None).await.unwrap();
    assert!(matches!(next(&mut slices).await, WatchEvent::Resync(_)));
    // A Service as the API server holds it: fields of kube-proxy's and the server's own.
    let service = serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "prod", "uid": "u1", "resourceVersion": "1",
                     "annotations": {"tortie.io/bgp-communities": "65000:1"}},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                 "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080}],
                 "selector": {"app": "web"}, "externalTrafficPolicy": "Local", "healthCheckNodePort": 31000,
                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None"},
        "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.5", "ipMode": "VIP"}]}}});
    standin.put_raw("core/services", "prod/web", service);
    let read = store.get::<Service>("prod/web").await.unwrap().spec;
    assert_eq!(read.spec.external_traffic_policy.as_deref(), Some("Local"));
    assert_eq!(read.annotations["tortie.io/bgp-communities"], "65000:1");
    assert_eq!(read.status.load_balancer.ingress[0].ip.as_deref(), Some("198.51.100.5"));
    let listed = store.list::<Service>().await.unwrap();
    assert_eq!(listed.items.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["prod/web"]);

    let slice = serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-x1", "namespace": "prod", "resourceVersion": "1",
                     "labels": {"kubernetes.io/service-name": "web", "endpointslice.kubernetes.io/managed-by": "x"}},
        "addressType": "IPv4", "ports": [{"port": 8080}],
        "endpoints": [{"addresses": ["10.244.2.5"], "nodeName": "node2", "zone": "a",
                       "conditions": {"ready": true, "serving": true, "terminating": false},
                       "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "prod"}}]});
    standin.put_raw("discovery.k8s.io/endpointslices", "prod/web-x1", slice);
    let added = loop {
        if let WatchEvent::Added(s) = next(&mut slices).await {
            break s;
        }
    };
    assert_eq!(added.name, "prod/web-x1");
    assert_eq!(added.spec.service_name(), Some("web"));
    assert_eq!(added.spec.endpoints[0].node_name.as_deref(), Some("node2"));

    // Written by `tortie apply`: the record's annotations and labels land in the metadata.
    let mut own = Service::default();
    own.spec.cluster_ip = Some("10.96.0.11".into());
    own.annotations.insert("a".into(), "b".into());
    store.create("prod/api", &own).await.unwrap();
    let raw = standin.get_raw("core/services", "prod/api").expect("a Service in namespace prod");
    assert_eq!(raw["metadata"]["annotations"]["a"], "b", "{raw}");
    assert_eq!(raw["spec"]["clusterIP"], "10.96.0.11", "{raw}");
    assert_eq!(store.get::<Service>("prod/api").await.unwrap().spec, own);
}
