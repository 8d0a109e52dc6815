//! What the workload service tells the log: a pod whose pools have no free address left is a
//! WARN line naming the pools, the pod and its namespace (issue #27, "logs that tell the
//! story"). The service runs in a namespace of its own (its route programmer opens netlink
//! sockets there) against a sqlite datastore in a temporary directory, with the log captured
//! by a subscriber of this thread only.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tortie::agent::workloads::{Workloads, WorkloadsConfig};
use tortie::api::workloads::{AllocateRequest, WorkloadError, WorkloadService};
use tortie::dataplane::{Programmer, ProgrammerConfig};
use tortie::datastore::Datastore;
use tortie::datastore::resources::IpPool;
use tortie::datastore::sqlite::{SqliteBackend, SqliteOptions};
use tortie::ipam::{Allocator, Ipam, IpamOptions, create_pool};
use tortie::netns::{Topology, run_in_namespace};

/// The captured log: every subscriber writer appends to the one buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

fn request(pod: &str, namespace: &str) -> AllocateRequest {
    let id = format!("c-{pod}");
    AllocateRequest {
        handle: format!("k8s-pod-network.{id}"),
        container_id: id,
        pod: pod.into(),
        namespace: namespace.into(),
        netns: format!("/var/run/netns/{pod}"),
        ifname: "eth0".into(),
        host_interface: format!("tt{pod}"),
        annotations: BTreeMap::new(),
        labels: BTreeMap::new(),
        service_account: String::new(),
        ports: Vec::new(),
    }
}

#[test]
fn an_exhausted_pool_is_a_warn_line_naming_the_pool_the_pod_and_its_namespace() {
    let mut topology = Topology::new("wlog").expect("topology");
    topology.add_namespace("node").expect("namespace");
    let dir = tempfile::Builder::new().prefix("tortie-wlog-").tempdir().expect("temporary directory");
    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let outcomes = run_in_namespace(&topology.ns("node"), || {
        // The subscriber of this thread, which the current-thread runtime runs every task on.
        tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let backend = SqliteBackend::open(dir.path().join("tortie.db"), SqliteOptions::default())
                    .await
                    .expect("open sqlite");
                let store = Datastore::new(backend);
                // Four addresses in one /30 block.
                let mut pool = IpPool::new("10.13.0.0/30".parse().unwrap());
                pool.block_size = 30;
                create_pool(&store, "tiny", &pool).await.expect("create pool");
                let ipam = Ipam::new(store, IpamOptions { node: "n1".into(), ..IpamOptions::default() });
                let programmer = Programmer::start(ProgrammerConfig::default()).await.expect("programmer starts");
                let config = WorkloadsConfig {
                    node: "n1".into(),
                    underlay_mtu: 1500,
                    interface_prefix: "tt".into(),
                    mtu: None,
                    kube: None,
                    policy: None,
                };
                let workloads = Workloads::start(config, Allocator::spawn(ipam), programmer).await.expect("start");
                let mut outcomes = Vec::new();
                for i in 0..5 {
                    outcomes.push(workloads.allocate(request(&format!("web{i}"), "shop")).await);
                }
                outcomes
            })
        })
    })
    .expect("run in the namespace");

    for (i, outcome) in outcomes.iter().take(4).enumerate() {
        assert!(outcome.is_ok(), "pod web{i} gets one of the four addresses: {outcome:?}");
    }
    match &outcomes[4] {
        Err(WorkloadError::Unavailable(why)) => assert!(why.contains("tiny"), "the answer names the pool: {why}"),
        other => panic!("the fifth pod finds the pool exhausted, got {other:?}"),
    }
    let text = log.text();
    let warned: Vec<&str> = text.lines().filter(|l| l.contains("IP pool exhausted")).collect();
    assert_eq!(warned.len(), 1, "one line for the one pod without an address; the log:\n{text}");
    let line = warned[0];
    for (what, wanted) in
        [("level", "WARN"), ("pool", "\"tiny\""), ("pod", "pod=web4"), ("namespace", "namespace=shop")]
    {
        assert!(line.contains(wanted), "the line names the {what} ({wanted}): {line}");
    }
}
