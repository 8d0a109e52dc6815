//! Compiled policies enforced for real: three pods (veths into a routing namespace that
//! plays the node), the policy section written by tortie's nftables owner into `inet tortie`
//! there, and TCP connections and pings that get through or not.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;
use tortie::dataplane::nftables::{NftCommand, NftTable, NftTableConfig, TABLE_NAME, policy as nft_policy};
use tortie::datastore::resources::{GlobalNetworkPolicy, KubeNetworkPolicy, NetworkPolicy, Resource};
use tortie::netns::Topology;
use tortie::policy::{Endpoint, Local, NamedPort, Namespaces, Policy, calico, compile, kube};
use tortie::testing::wait_until;

const WAIT: Duration = Duration::from_secs(10);
/// Long enough for a connection over a veth; a dropped SYN waits this long.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

/// (short namespace, pod namespace, name, labels, address, host-side interface)
const PODS: [(&str, &str, &str, &str, &str); 3] = [
    ("web", "prod", "app=web", "10.0.1.1", "tt-web"),
    ("db", "prod", "app=db", "10.0.2.1", "tt-db"),
    ("dev", "dev", "app=web", "10.0.3.1", "tt-dev"),
];
const PORTS: [u16; 4] = [80, 81, 8080, 8090];

struct Cluster {
    t: Topology,
    endpoints: Vec<Endpoint>,
    namespaces: Namespaces,
    table: NftTable,
    _listeners: Vec<TcpListener>,
}

fn addr(short: &str) -> IpAddr {
    PODS.iter().find(|p| p.0 == short).unwrap().3.parse().unwrap()
}

impl Cluster {
    fn new() -> Cluster {
        let mut t = Topology::new("pol").unwrap();
        t.add_namespace("n").unwrap();
        t.exec("n", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]).unwrap();
        let mut endpoints = Vec::new();
        let mut listeners = Vec::new();
        for (i, (short, namespace, label, address, interface)) in PODS.iter().enumerate() {
            t.add_namespace(short).unwrap();
            let gateway = format!("10.0.{}.254", i + 1);
            t.add_veth(
                (short, "eth0", Some(&format!("{address}/24"))),
                ("n", interface, Some(&format!("{gateway}/24"))),
            )
            .unwrap();
            t.exec(short, &["ip", "route", "add", "default", "via", &gateway]).unwrap();
            for port in PORTS {
                let ip: IpAddr = address.parse().unwrap();
                let l = tortie::netns::run_in_namespace(&t.ns(short), move || TcpListener::bind((ip, port)))
                    .unwrap()
                    .unwrap();
                l.set_nonblocking(true).unwrap();
                listeners.push(l);
            }
            let (k, v) = label.split_once('=').unwrap();
            endpoints.push(Endpoint {
                name: format!("{namespace}/{short}"),
                namespace: namespace.to_string(),
                labels: BTreeMap::from([(k.to_string(), v.to_string())]),
                service_account: None,
                addresses: vec![address.parse().unwrap()],
                ports: vec![NamedPort { name: "http".into(), protocol: 6, port: 8080 }],
            });
        }
        let mut labels = BTreeMap::new();
        labels.insert("dev".to_string(), BTreeMap::from([("env".to_string(), "dev".to_string())]));
        let (table, _task) = NftTable::start(NftTableConfig {
            name: TABLE_NAME.to_string(),
            users: vec![nft_policy::USER],
            resync_interval: Duration::from_secs(60),
            command: NftCommand::in_namespace(&t.ns("n")),
            fingerprint: None,
        });
        Cluster { t, endpoints, namespaces: Namespaces(labels), table, _listeners: listeners }
    }

    async fn enforce(&self, policies: &[Policy]) {
        let local: Vec<Local> =
            PODS.iter().map(|p| Local { endpoint: format!("{}/{}", p.1, p.0), interface: p.4.to_string() }).collect();
        let program = compile(policies, &self.endpoints, &self.namespaces, &local);
        let section = nft_policy::section(&program).unwrap();
        self.table.set_section(nft_policy::USER, section).await;
        assert!(self.table.probe().await);
        let state = self.table.state.borrow().clone();
        assert!(state.last_error.is_none(), "nft refused the section: {:?}", state.last_error);
    }

    fn connects(&self, from: &str, to: &str, port: u16) -> bool {
        let target = SocketAddr::new(addr(to), port);
        tortie::netns::run_in_namespace(&self.t.ns(from), move || {
            TcpStream::connect_timeout(&target, CONNECT_TIMEOUT).is_ok()
        })
        .unwrap()
    }

    fn pings(&self, from: &str, to: &str) -> bool {
        self.t.exec(from, &["ping", "-c1", "-W1", &addr(to).to_string()]).is_ok()
    }

    /// Every (from, to, port, expected) holds.
    fn expect(&self, cases: &[(&str, &str, u16, bool)]) {
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(f, t, p, ok)| self.connects(f, t, *p) != *ok)
            .map(|(f, t, p, ok)| format!("{f} -> {t}:{p} should {}connect", if *ok { "" } else { "not " }))
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}

fn knp(namespace: &str, name: &str, spec: Value) -> Policy {
    let r: KubeNetworkPolicy = serde_json::from_value(spec).unwrap();
    r.validate().unwrap();
    kube::policy(namespace, name, &r).unwrap()
}

fn cnp(namespace: &str, name: &str, spec: Value) -> Policy {
    let r: NetworkPolicy = serde_json::from_value(spec).unwrap();
    r.validate().unwrap();
    calico::namespaced(namespace, name, &r).unwrap()
}

fn gnp(name: &str, spec: Value) -> Policy {
    let r: GlobalNetworkPolicy = serde_json::from_value(spec).unwrap();
    r.validate().unwrap();
    calico::global(name, &r).unwrap()
}

#[tokio::test]
async fn kubernetes_and_calico_policies_hold_for_real_connections() {
    let c = Cluster::new();
    c.enforce(&[]).await;
    wait_until("pods reach each other", WAIT, || c.connects("web", "db", 80).then_some(())).unwrap();
    c.expect(&[("dev", "db", 8080, true), ("db", "web", 81, true)]);
    assert!(c.pings("dev", "db"));

    // Default deny ingress in prod: nothing reaches prod pods, prod pods still reach out.
    let deny = knp("prod", "default-deny", json!({"podSelector": {}}));
    c.enforce(std::slice::from_ref(&deny)).await;
    c.expect(&[("web", "db", 80, false), ("dev", "web", 80, false), ("db", "dev", 80, true)]);
    assert!(!c.pings("dev", "db"));

    // Allow from app=web pods of the same namespace, on the named port only.
    let from_web = knp(
        "prod",
        "db-from-web",
        json!({"podSelector": {"matchLabels": {"app": "db"}},
               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "http"}]}]}),
    );
    c.enforce(&[deny.clone(), from_web.clone()]).await;
    c.expect(&[("web", "db", 8080, true), ("web", "db", 80, false), ("dev", "db", 8080, false)]);

    // A namespace selector lets dev in, on a port range (endPort).
    let from_dev = knp(
        "prod",
        "db-from-dev",
        json!({"podSelector": {"matchLabels": {"app": "db"}},
               "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "dev"}}}],
                            "ports": [{"port": 8000, "endPort": 8085}]}]}),
    );
    c.enforce(&[deny.clone(), from_dev]).await;
    c.expect(&[("dev", "db", 8080, true), ("dev", "db", 8090, false), ("web", "db", 8080, false)]);

    // ipBlock with except: 10.0.0.0/16 but not dev's subnet.
    let block = knp(
        "prod",
        "db-from-block",
        json!({"podSelector": {"matchLabels": {"app": "db"}},
               "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.3.0/24"]}}]}]}),
    );
    c.enforce(&[deny.clone(), block]).await;
    c.expect(&[("web", "db", 81, true), ("dev", "db", 81, false)]);

    // Egress deny for web: it reaches nobody, yet replies to connections into it flow
    // (conntrack), and other pods still reach it (no ingress policy on it).
    let egress = knp(
        "prod",
        "web-no-egress",
        json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"]}),
    );
    c.enforce(std::slice::from_ref(&egress)).await;
    c.expect(&[("web", "dev", 80, false), ("web", "db", 80, false), ("dev", "web", 80, true)]);

    // A GlobalNetworkPolicy Deny ordered before a Kubernetes allow wins.
    let allow_all = knp("prod", "allow-all", json!({"podSelector": {}, "ingress": [{}]}));
    let global_deny = gnp(
        "no-dev-to-prod",
        json!({"order": 10, "selector": "projectcalico.org/namespace == 'prod'",
               "ingress": [{"action": "Deny", "source": {"namespaceSelector": "env == 'dev'"}}]}),
    );
    c.enforce(&[allow_all.clone(), global_deny.clone()]).await;
    c.expect(&[("dev", "db", 80, false), ("web", "db", 80, true)]);

    // Pass before the global deny: dev's web pods skip the rest of the tier (allowed), and
    // ICMP is denied by a Calico rule naming its type.
    let pass = cnp(
        "prod",
        "pass-web",
        json!({"order": 5, "ingress": [
            {"action": "Deny", "protocol": "ICMP", "icmp": {"type": 8}},
            {"action": "Pass", "source": {"namespaceSelector": "all()", "selector": "app == 'web'"}}]}),
    );
    c.enforce(&[allow_all, global_deny, pass]).await;
    c.expect(&[("dev", "db", 80, true), ("web", "db", 80, true)]);
    assert!(!c.pings("dev", "db"));
    assert!(c.pings("db", "dev"));
}

#[tokio::test]
async fn every_kind_of_match_is_accepted_by_nft() {
    let c = Cluster::new();
    let every_match = cnp(
        "prod",
        "everything",
        json!({"order": 1, "ingress": [
            {"action": "Log", "protocol": "ICMP", "notICMP": {"type": 8, "code": 0}},
            {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 0, "code": 0}},
            {"action": "Deny", "ipVersion": 6, "protocol": "ICMPv6", "icmp": {"type": 128}},
            {"action": "Allow", "protocol": "UDP", "notProtocol": "TCP",
             "source": {"nets": ["10.0.0.0/8", "fd00::/64"], "notNets": ["10.9.0.0/16"], "notSelector": "app == 'x'",
                        "ports": ["1000:2000"], "notPorts": [1500]},
             "destination": {"selector": "has(app)", "namespaceSelector": "global()", "ports": [53, "http"]}},
            {"action": "Pass", "protocol": 132, "destination": {"ports": ["8000:8100"]}}]}),
    );
    c.enforce(std::slice::from_ref(&every_match)).await;
    // The log rule goes on: web still reaches db.
    c.expect(&[("web", "db", 80, false)]);
}
