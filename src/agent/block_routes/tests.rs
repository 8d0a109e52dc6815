use super::*;
use crate::datastore::Datastore;
use crate::datastore::resources::{AllocationAttribute, NodeBgp};
use std::time::Duration;

fn node(v4: Option<&str>, v6: Option<&str>) -> Node {
    Node {
        bgp: Some(NodeBgp {
            ipv4_address: v4.map(|a| a.parse().unwrap()),
            ipv6_address: v6.map(|a| a.parse().unwrap()),
            ..NodeBgp::default()
        }),
        ..Node::default()
    }
}

fn nodes() -> Vec<(String, Node)> {
    vec![
        ("a".to_string(), node(Some("10.0.0.1/24"), Some("fd00::1/64"))),
        ("b".to_string(), node(Some("10.0.0.2/24"), None)),
        ("c".to_string(), node(Some("10.0.0.3/24"), Some("fd00::3/64"))),
    ]
}

/// Nodes as the picture gives them.
fn named(nodes: &[(String, Node)]) -> impl Iterator<Item = (&str, &Node)> {
    nodes.iter().map(|(name, node)| (name.as_str(), node))
}

fn block(cidr: &str, owner: Option<&str>) -> IpamBlock {
    IpamBlock::empty(cidr.parse().unwrap(), owner.map(|o| format!("host:{o}")))
}

/// Marks `ordinal` of `block` allocated by `node` under `handle`.
fn allocate(block: &mut IpamBlock, ordinal: u32, node: &str, handle: &str) {
    block.attributes.push(AllocationAttribute {
        handle_id: Some(handle.to_string()),
        secondary: crate::datastore::resources::PackedMap::from([(NODE_ATTRIBUTE.to_string(), node.to_string())]),
        ..AllocationAttribute::default()
    });
    block.allocations[ordinal as usize] = Some(block.attributes.len() as u32 - 1);
    block.unallocated.retain(|o| *o != ordinal);
}

fn routes_of(changes: &[BestPathChange]) -> Vec<(String, Vec<IpAddr>)> {
    changes.iter().map(|c| (c.prefix.to_string(), c.next_hops.to_vec())).collect()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn another_nodes_block_is_routed_via_its_address_and_withdrawn_when_released() {
    let mut routes = Routes::new("a".into());
    let blocks = vec![block("10.244.1.0/26", Some("b")), block("10.244.0.0/26", Some("a"))];
    let changes = routes.update(&blocks, named(&nodes()), false);
    assert_eq!(routes_of(&changes), vec![("10.244.1.0/26".into(), vec![ip("10.0.0.2")])]);
    assert_eq!(changes[0].peers, changes[0].next_hops);

    // Nothing changed: nothing sent.
    assert_eq!(routes.update(&blocks, named(&nodes()), false), vec![]);

    let released = vec![block("10.244.1.0/26", None), block("10.244.0.0/26", Some("a"))];
    let changes = routes.update(&released, named(&nodes()), false);
    assert_eq!(routes_of(&changes), vec![("10.244.1.0/26".into(), vec![])]);
}

#[test]
fn borrowed_addresses_are_host_routes_via_the_borrower_and_ours_are_not_routed() {
    let mut routes = Routes::new("a".into());
    let mut of_b = block("10.244.1.0/26", Some("b"));
    allocate(&mut of_b, 1, "b", "k8s-pod-network.b1");
    allocate(&mut of_b, 2, "c", "k8s-pod-network.c2");
    allocate(&mut of_b, 3, "a", "k8s-pod-network.a3");
    let mut mine = block("10.244.0.0/26", Some("a"));
    allocate(&mut mine, 5, "c", "k8s-pod-network.c5");
    let mut unclaimed = block("10.244.2.0/26", None);
    allocate(&mut unclaimed, 0, "b", "vxlan-tunnel-addr-b");
    let changes = routes.update(&[of_b, mine, unclaimed], named(&nodes()), false);
    assert_eq!(
        routes_of(&changes),
        vec![
            ("10.244.0.5/32".into(), vec![ip("10.0.0.3")]),
            ("10.244.1.0/26".into(), vec![ip("10.0.0.2")]),
            ("10.244.1.2/32".into(), vec![ip("10.0.0.3")]),
            ("10.244.2.0/32".into(), vec![ip("10.0.0.2")]),
        ]
    );
}

#[test]
fn a_node_address_change_moves_its_routes_and_a_missing_family_gives_none() {
    let mut routes = Routes::new("a".into());
    let blocks = vec![
        block("10.244.1.0/26", Some("b")),
        block("fd00:244::/122", Some("b")),
        block("fd00:244::40/122", Some("c")),
    ];
    let changes = routes.update(&blocks, named(&nodes()), false);
    assert_eq!(
        routes_of(&changes),
        vec![("10.244.1.0/26".into(), vec![ip("10.0.0.2")]), ("fd00:244::40/122".into(), vec![ip("fd00::3")])]
    );
    assert_eq!(routes.unroutable, BTreeSet::from([("b".to_string(), 6)]));

    let mut moved = nodes();
    moved[1].1 = node(Some("10.0.1.2/24"), Some("fd00::2/64"));
    let changes = routes.update(&blocks, named(&moved), false);
    assert_eq!(
        routes_of(&changes),
        vec![("10.244.1.0/26".into(), vec![ip("10.0.1.2")]), ("fd00:244::/122".into(), vec![ip("fd00::2")])]
    );
    assert!(routes.unroutable.is_empty());
}

#[test]
fn resending_repeats_every_route() {
    let mut routes = Routes::new("a".into());
    let blocks = vec![block("10.244.1.0/26", Some("b")), block("10.244.2.0/26", Some("c"))];
    let first = routes.update(&blocks, named(&nodes()), false);
    assert_eq!(first.len(), 2);
    assert_eq!(routes.update(&blocks, named(&nodes()), true), first);
    assert_eq!(routes.all(), first);
}

/// The next message on `rx`, within a deadline.
async fn next(rx: &mut mpsc::Receiver<Vec<BestPathChange>>) -> Vec<(String, Vec<IpAddr>)> {
    let changes = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a change in time");
    routes_of(&changes.expect("the task is running"))
}

/// The task follows the agent's pictures of the blocks and the Nodes: it lists neither kind
/// itself, whatever changes.
#[tokio::test]
async fn the_task_follows_blocks_and_nodes_and_resends_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, listings) = crate::testing::CountingBackend::sqlite(dir.path()).await;
    let ds = Datastore::new(backend);
    for (name, spec) in nodes() {
        ds.create(&name, &spec).await.unwrap();
    }
    let (tx, mut rx) = mpsc::channel(4);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (blocks_tx, blocks_rx) = watch::channel(None);
    let (nodes_tx, nodes_rx) = watch::channel(None);
    tokio::spawn(super::super::blocks::follow(ds.clone(), blocks_tx, stop_rx.clone()));
    tokio::spawn(super::super::picture::follow::<Node>(ds.clone(), nodes_tx, stop_rx.clone()));
    let (handle, task) = block_routes(blocks_rx, nodes_rx, "a".into(), tx, stop_rx);
    let task = tokio::spawn(task);

    let claimed = ds.create("10-244-1-0-26", &block("10.244.1.0/26", Some("b"))).await.unwrap();
    assert_eq!(next(&mut rx).await, vec![("10.244.1.0/26".to_string(), vec![ip("10.0.0.2")])]);

    let b = ds.get::<Node>("b").await.unwrap();
    ds.update("b", &node(Some("10.0.1.2/24"), None), b.revision).await.unwrap();
    assert_eq!(next(&mut rx).await, vec![("10.244.1.0/26".to_string(), vec![ip("10.0.1.2")])]);

    handle.resend_learned().await;
    assert_eq!(next(&mut rx).await, vec![("10.244.1.0/26".to_string(), vec![ip("10.0.1.2")])]);

    ds.delete::<IpamBlock>("10-244-1-0-26", claimed.revision).await.unwrap();
    assert_eq!(next(&mut rx).await, vec![("10.244.1.0/26".to_string(), vec![])]);

    use crate::datastore::Kind;
    assert_eq!((listings.of(Kind::IpamBlock), listings.of(Kind::Node)), (0, 0), "listings of blocks, Nodes");
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
}

/// Load-balancer blocks belong to the pseudo-node `tortie-load-balancer`: their addresses are
/// service addresses advertised by every node, so no node routes them to an owner, and no
/// warning calls the pseudo-node unroutable.
#[test]
fn load_balancer_blocks_are_not_routed_to_their_pseudo_node() {
    let mut routes = Routes::new("a".into());
    let lb = crate::services::lb_controller::IPAM_NODE;
    let mut lb_block = block("198.51.100.0/26", Some(lb));
    allocate(&mut lb_block, 0, lb, "lb.default.web");
    let changes = routes.update(&[lb_block], named(&nodes()), false);
    assert_eq!(routes_of(&changes), vec![]);
    assert!(routes.unroutable.is_empty(), "{:?}", routes.unroutable);
}
