//! tortie's nftables table in a namespace of its own: written whole with
//! the users' sections, its sets refilled in place, repaired after someone
//! deletes a rule, deleted on cleanup, adopted untouched by a restarted
//! owner when it is exactly what that owner would write — and another table
//! in the same namespace never touched.

use std::time::Duration;
use tortie::dataplane::nftables::nat::{self, NatInput};
use tortie::dataplane::nftables::{NftCommand, NftTable, NftTableConfig, TABLE_NAME};
use tortie::netns::Topology;
use tortie::testing::wait_until_async;

const WAIT: Duration = Duration::from_secs(10);

/// Someone else's table, as `nft -f` reads it.
const OTHER_TABLE: &str = "table inet other {\n set keep { type ipv4_addr; elements = { 198.51.100.7 } }\n chain post { type nat hook postrouting priority 200; policy accept; ip daddr @keep counter accept; }\n}\n";

fn nft(t: &Topology, args: &[&str]) -> Result<String, String> {
    let mut argv = vec!["nft"];
    argv.extend_from_slice(args);
    t.exec("n", &argv).map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).map_err(|e| e.to_string())
}

/// The table's objects of one kind (`rule`, `set`, …) as `nft -j` lists them; empty when it is missing.
fn listed(t: &Topology, table: &str, kind: &str) -> Vec<serde_json::Value> {
    let Ok(json) = t.exec_json("n", &["nft", "-j", "list", "table", "inet", table]) else { return Vec::new() };
    json["nftables"].as_array().unwrap().iter().filter_map(|o| o.get(kind).cloned()).collect()
}

fn elements(t: &Topology, set: &str) -> Vec<serde_json::Value> {
    let sets = listed(t, TABLE_NAME, "set");
    let set = sets.iter().find(|s| s["name"] == set).unwrap_or_else(|| panic!("no set {set} in {sets:?}"));
    set.get("elem").and_then(|e| e.as_array()).cloned().unwrap_or_default()
}

fn other_table(t: &Topology) -> String {
    nft(t, &["list", "table", "inet", "other"]).unwrap()
}

fn input(pools: &[(&str, bool)], hosts: &[&str]) -> NatInput {
    NatInput {
        pools: pools.iter().map(|(c, n)| (c.parse().unwrap(), *n)).collect(),
        hosts: hosts.iter().map(|h| h.parse().unwrap()).collect(),
    }
}

fn start(t: &Topology, users: Vec<&'static str>) -> NftTable {
    let (table, _task) = NftTable::start(NftTableConfig {
        name: TABLE_NAME.to_string(),
        users,
        resync_interval: Duration::from_millis(200),
        command: NftCommand::in_namespace(&t.ns("n")),
        fingerprint: None,
    });
    table
}

#[tokio::test]
async fn the_table_is_written_refilled_repaired_and_removed_leaving_other_tables_alone() {
    let mut t = Topology::new("nft").unwrap();
    t.add_namespace("n").unwrap();
    let file = t.dir().join("other.nft");
    std::fs::write(&file, OTHER_TABLE).unwrap();
    nft(&t, &["-f", file.to_str().unwrap()]).unwrap();
    let other = other_table(&t);

    let table = start(&t, vec![nat::USER]);
    table.set_section(nat::USER, nat::section(&input(&[("10.244.0.0/16", true)], &["192.0.2.1"]))).await;
    let rules = wait_until_async("the NAT rules", WAIT, || async {
        let rules = listed(&t, TABLE_NAME, "rule");
        (rules.len() == 2).then_some(rules)
    })
    .await
    .unwrap();
    let v4 = rules[0]["expr"].to_string();
    for part in ["@nat-masq-ipam-pools-v4", "@nat-all-ipam-pools-v4", "@nat-all-hosts-v4", "fully-random"] {
        assert!(v4.contains(part), "{part} in {v4}");
    }
    assert!(rules[1]["expr"].to_string().contains("@nat-masq-ipam-pools-v6"), "{rules:?}");
    let chain = listed(&t, TABLE_NAME, "chain").remove(0);
    assert_eq!(
        (chain["hook"].as_str(), chain["type"].as_str(), chain["prio"].as_i64()),
        (Some("postrouting"), Some("nat"), Some(100))
    );
    assert_eq!(
        elements(&t, "nat-masq-ipam-pools-v4"),
        vec![serde_json::json!({"prefix": {"addr": "10.244.0.0", "len": 16}})]
    );
    assert_eq!(elements(&t, "nat-all-hosts-v4"), vec![serde_json::json!("192.0.2.1")]);

    // A pool and a node later: the sets change in place, the rules keep their handles.
    let handles = |rules: &[serde_json::Value]| rules.iter().map(|r| r["handle"].clone()).collect::<Vec<_>>();
    let section =
        nat::section(&input(&[("10.244.0.0/16", true), ("10.99.0.0/16", false)], &["192.0.2.1", "192.0.2.9"]));
    table.set_section(nat::USER, section).await;
    wait_until_async("the new node in its set", WAIT, || async {
        (elements(&t, "nat-all-hosts-v4").len() == 2).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(elements(&t, "nat-all-ipam-pools-v4").len(), 2);
    assert_eq!(handles(&listed(&t, TABLE_NAME, "rule")), handles(&rules), "set changes leave the rules alone");

    // Someone deletes our rule and an element (read back yet or not): the
    // next resync writes them back.
    assert!(table.probe().await);
    let handle = rules[0]["handle"].to_string();
    nft(&t, &["delete", "rule", "inet", TABLE_NAME, nat::CHAIN, "handle", &handle]).unwrap();
    nft(&t, &["delete", "element", "inet", TABLE_NAME, "nat-all-hosts-v4", "{ 192.0.2.9 }"]).unwrap();
    wait_until_async("the table repaired", WAIT, || async {
        (listed(&t, TABLE_NAME, "rule").len() == 2 && elements(&t, "nat-all-hosts-v4").len() == 2).then_some(())
    })
    .await
    .unwrap();
    assert!(table.stats.repairs.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert_eq!(table.stats.apply_errors.load(std::sync::atomic::Ordering::Relaxed), 0);

    // NAT off and on again: the set empties and refills.
    for (nat, want) in [(false, 0), (true, 1)] {
        table.set_section(nat::USER, nat::section(&input(&[("10.244.0.0/16", nat)], &["192.0.2.1"]))).await;
        assert!(table.probe().await);
        assert_eq!(elements(&t, "nat-masq-ipam-pools-v4").len(), want, "natOutgoing {nat}");
    }

    table.remove().await.unwrap();
    assert!(t.exec("n", &["nft", "list", "table", "inet", TABLE_NAME]).is_err(), "our table is gone");
    assert_eq!(other_table(&t), other, "someone else's table is untouched");
}

#[tokio::test]
async fn an_existing_table_is_kept_until_every_user_has_given_its_section() {
    let mut t = Topology::new("nft-adopt").unwrap();
    t.add_namespace("n").unwrap();
    // The previous run's table, with a set a second user (not NAT) owns.
    let file = t.dir().join("previous.nft");
    std::fs::write(
        &file,
        format!("table inet {TABLE_NAME} {{\n set policy-pods {{ type ipv4_addr; elements = {{ 10.244.1.5 }} }}\n}}\n"),
    )
    .unwrap();
    nft(&t, &["-f", file.to_str().unwrap()]).unwrap();

    let table = start(&t, vec![nat::USER, "policy"]);
    table.set_section(nat::USER, nat::section(&input(&[("10.244.0.0/16", true)], &[]))).await;
    // The owner has the NAT section but waits for the policy one: nothing changes meanwhile.
    assert!(table.probe().await);
    assert_eq!(listed(&t, TABLE_NAME, "set").len(), 1, "the previous table stays as it was");
    assert!(!table.state.borrow().synced);

    table.set_section("policy", tortie::dataplane::nftables::Section::default()).await;
    wait_until_async("both sections written", WAIT, || async {
        (listed(&t, TABLE_NAME, "rule").len() == 2).then_some(())
    })
    .await
    .unwrap();
    assert!(listed(&t, TABLE_NAME, "set").iter().all(|s| s["name"] != "policy-pods"), "replaced whole");
}

/// An owner started on `t` that keeps its fingerprint at `fingerprint`, with the NAT user only.
fn start_remembering(t: &Topology, fingerprint: &std::path::Path) -> (NftTable, tokio::task::JoinHandle<()>) {
    NftTable::start(NftTableConfig {
        name: TABLE_NAME.to_string(),
        users: vec![nat::USER],
        resync_interval: Duration::from_secs(60),
        command: NftCommand::in_namespace(&t.ns("n")),
        fingerprint: Some(fingerprint.to_path_buf()),
    })
}

/// Runs an owner (a run of the agent) until its table is synced; the transactions it made and
/// the table with handles (counter values aside) as it left it.
async fn one_run(
    t: &Topology,
    fingerprint: &std::path::Path,
    section: &tortie::dataplane::nftables::Section,
) -> (u64, String) {
    let (table, task) = start_remembering(t, fingerprint);
    table.set_section(nat::USER, section.clone()).await;
    assert!(table.probe().await);
    assert!(table.state.borrow().synced, "{:?}", table.state.borrow());
    let applies = table.stats.applies.load(std::sync::atomic::Ordering::Relaxed);
    drop(table);
    task.await.unwrap();
    let listing = nft(t, &["-a", "list", "table", "inet", TABLE_NAME]).unwrap();
    (applies, regex::Regex::new(r"packets \d+ bytes \d+").unwrap().replace_all(&listing, "").into_owned())
}

#[tokio::test]
async fn a_restarted_owner_adopts_the_identical_table_untouched_and_rewrites_a_changed_one() {
    let mut t = Topology::new("nft-restart").unwrap();
    t.add_namespace("n").unwrap();
    let fingerprint = t.dir().join("nftables-tortie.json");
    let section = nat::section(&input(&[("10.244.0.0/16", true)], &["192.0.2.1"]));

    let (applies, first) = one_run(&t, &fingerprint, &section).await;
    assert_eq!(applies, 1, "the first run writes the table");
    let (applies, second) = one_run(&t, &fingerprint, &section).await;
    assert_eq!(applies, 0, "a restart with the same sections writes nothing");
    assert_eq!(second, first, "the rules keep their handles");

    // Someone adds an element while no agent runs: the next run does not adopt that table.
    let set = listed(&t, TABLE_NAME, "set")[0]["name"].as_str().unwrap().to_string();
    nft(&t, &["add", "element", "inet", TABLE_NAME, &set, "{ 203.0.113.9 }"]).unwrap();
    let (applies, _) = one_run(&t, &fingerprint, &section).await;
    assert_eq!(applies, 1, "a changed table is written again");
    assert!(!elements(&t, &set).contains(&serde_json::json!("203.0.113.9")), "{:?}", elements(&t, &set));

    // Another desired state (a pool more): written, not adopted.
    let more = nat::section(&input(&[("10.244.0.0/16", true), ("10.245.0.0/16", true)], &["192.0.2.1"]));
    let (applies, _) = one_run(&t, &fingerprint, &more).await;
    assert_eq!(applies, 1, "another desired state is written");
}

/// A small linear congruential generator: `pick(n)` is in 0..n (0 for n = 0), the same
/// sequence for the same seed every run.
fn numbers(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize % n.max(1)
    }
}

/// The element path against the kernel: a long run of random pool and node changes, each
/// written as set elements over nfnetlink, and after each the kernel's sets (as `nft` lists
/// them) hold exactly the desired networks — single addresses, adjacent ones, prefixes,
/// IPv6, and the whole address space (an interval open at the top).
#[tokio::test]
async fn set_elements_written_over_netlink_always_equal_the_desired_ones() {
    use std::sync::atomic::Ordering::Relaxed;
    use tortie::dataplane::nftables::render::{desired_elements, listed_elements};
    let mut t = Topology::new("nft-elem").unwrap();
    t.add_namespace("n").unwrap();
    let table = start(&t, vec![nat::USER]);
    let pools = ["10.244.0.0/16", "10.245.0.0/16", "0.0.0.0/0", "fd00:244::/64", "fd00:245::/64", "::/0"];
    let hosts = [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "198.51.100.255",
        "255.255.255.255",
        "0.0.0.0",
        "2001:db8::1",
        "2001:db8::2",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ];
    let mut pick = numbers(0x2545_f491_4f6c_dd1d);
    let mut pool_on = vec![false; pools.len()];
    let mut host_on = vec![false; hosts.len()];
    let first = nat::section(&input(&[], &[]));
    table.set_section(nat::USER, first).await;
    assert!(table.probe().await && table.state.borrow().synced);
    for step in 0..150 {
        // One to three toggles per step.
        for _ in 0..=pick(3) {
            if pick(3) == 0 {
                let i = pick(pools.len());
                pool_on[i] = !pool_on[i];
            } else {
                let i = pick(hosts.len());
                host_on[i] = !host_on[i];
            }
        }
        let p: Vec<(&str, bool)> = pools.iter().zip(&pool_on).filter(|(_, on)| **on).map(|(c, _)| (*c, true)).collect();
        let h: Vec<&str> = hosts.iter().zip(&host_on).filter(|(_, on)| **on).map(|(a, _)| *a).collect();
        let section = nat::section(&input(&p, &h));
        table.set_section(nat::USER, section.clone()).await;
        assert!(table.probe().await);
        assert!(table.state.borrow().synced, "step {step}: {:?}", table.state.borrow());
        let listing = t.exec_json("n", &["nft", "-j", "list", "table", "inet", TABLE_NAME]).unwrap();
        let desired = std::collections::BTreeMap::from([(nat::USER, section)]);
        assert_eq!(listed_elements(&listing), desired_elements(&desired), "step {step}: pools {p:?} hosts {h:?}");
    }
    let (applies, elements) = (table.stats.applies.load(Relaxed), table.stats.element_writes.load(Relaxed));
    assert_eq!(applies - elements, 1, "one whole write, then elements only ({elements} element writes)");
    assert!(elements >= 100, "{elements}");
    assert_eq!(table.stats.apply_errors.load(Relaxed), 0);
}

/// A table's content in an order-free form: per chain its base hook and its rules' expressions
/// in order, per set its type, flags and elements (`nft` lists objects in the order they were
/// made, which differs between a whole write and changes made one by one).
fn content(t: &Topology, ns: &str) -> std::collections::BTreeMap<String, serde_json::Value> {
    let Ok(listing) = t.exec_json(ns, &["nft", "-j", "list", "table", "inet", TABLE_NAME]) else {
        return Default::default();
    };
    let mut out: std::collections::BTreeMap<String, serde_json::Value> = Default::default();
    let elements = tortie::dataplane::nftables::render::listed_elements(&listing);
    for object in listing["nftables"].as_array().unwrap() {
        if let Some(c) = object.get("chain") {
            let key = format!("chain {}", c["name"].as_str().unwrap());
            out.insert(key, serde_json::json!({"hook": c.get("hook"), "prio": c.get("prio"), "rules": []}));
        } else if let Some(s) = object.get("set") {
            let name = s["name"].as_str().unwrap();
            let ranges: Vec<String> = elements[name].iter().map(|(a, b)| format!("{a}-{b}")).collect();
            out.insert(
                format!("set {name}"),
                serde_json::json!({"type": s["type"], "flags": s["flags"], "elem": ranges}),
            );
        }
    }
    for object in listing["nftables"].as_array().unwrap() {
        if let Some(r) = object.get("rule") {
            let key = format!("chain {}", r["chain"].as_str().unwrap());
            let expr = tortie::dataplane::nftables::command::normalize(&serde_json::json!({"nftables": [r["expr"]]}));
            out.get_mut(&key).unwrap()["rules"].as_array_mut().unwrap().push(expr);
        }
    }
    out
}

/// A random section: sets with random elements, port sets, chains jumping forward to others,
/// matching sets and port sets, and a base chain jumping into them.
fn random_section(pick: &mut impl FnMut(usize) -> usize) -> tortie::dataplane::nftables::Section {
    use tortie::dataplane::nftables::{AddressSet, BaseChain, ChainSpec, PortSet, Section};
    let st = |v: serde_json::Value| -> nftables::stmt::Statement<'static> { serde_json::from_value(v).unwrap() };
    let mut section = Section::default();
    let sets: Vec<usize> = (0..5).filter(|_| pick(3) > 0).collect();
    for &i in &sets {
        let elements = (0..pick(6)).map(|_| format!("10.{i}.0.{}/32", pick(8)).parse().unwrap()).collect();
        section.sets.push(AddressSet { name: format!("s{i}"), ipv6: false, elements });
    }
    let ports = [vec![(80, 80), (443, 443)], vec![(53, 53), (8000, 8080)]];
    let chains: Vec<usize> = (0..6).filter(|_| pick(3) > 0).collect();
    for (k, &i) in chains.iter().enumerate() {
        let mut rules = Vec::new();
        for _ in 0..pick(4) {
            let rule = match pick(4) {
                0 if !sets.is_empty() => {
                    let s = sets[pick(sets.len())];
                    vec![
                        st(
                            serde_json::json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": format!("@s{s}")}}),
                        ),
                        st(serde_json::json!({"counter": null})),
                        st(serde_json::json!({"return": null})),
                    ]
                }
                1 if k + 1 < chains.len() => {
                    let j = chains[k + 1 + pick(chains.len() - k - 1)];
                    vec![st(serde_json::json!({"jump": {"target": format!("c{j}")}}))]
                }
                2 => {
                    let p = pick(ports.len());
                    let name = tortie::dataplane::nftables::policy::port_set_name(&ports[p]);
                    if !section.port_sets.iter().any(|s| s.name == name) {
                        section.port_sets.push(PortSet { name: name.clone(), ranges: ports[p].clone() });
                    }
                    vec![
                        st(
                            serde_json::json!({"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}}, "right": format!("@{name}")}}),
                        ),
                        st(serde_json::json!({"drop": null})),
                    ]
                }
                _ => vec![st(serde_json::json!({"counter": null})), st(serde_json::json!({"accept": null}))],
            };
            rules.push(rule);
        }
        section.chains.make_mut().push(ChainSpec { name: format!("c{i}"), base: None, rules: rules.into() });
    }
    let base_rules = chains
        .iter()
        .filter(|_| pick(2) == 0)
        .map(|i| vec![st(serde_json::json!({"jump": {"target": format!("c{i}")}}))])
        .collect();
    section.chains.make_mut().push(ChainSpec {
        name: "base".into(),
        base: Some(BaseChain {
            kind: nftables::types::NfChainType::Filter,
            hook: nftables::types::NfHook::Forward,
            priority: 0,
            policy: nftables::types::NfChainPolicy::Accept,
        }),
        rules: base_rules,
    });
    section
}

/// The owner's cheap paths (set elements, changed chains and sets, over nfnetlink) against the
/// plain one: after every random change the table it keeps holds what a whole write of the
/// same sections by `nft` holds in a second namespace.
#[tokio::test]
async fn a_table_changed_in_part_equals_the_table_written_whole() {
    use std::sync::atomic::Ordering::Relaxed;
    let mut t = Topology::new("nft-delta").unwrap();
    t.add_namespace("n").unwrap();
    t.add_namespace("m").unwrap();
    let table = start(&t, vec!["policy"]);
    let whole = NftCommand::in_namespace(&t.ns("m"));
    let mut pick = numbers(0x9e37_79b9_7f4a_7c15);
    let mut section = random_section(&mut pick);
    for step in 0..60 {
        // Mostly small changes: elements only, or the section made again.
        if step > 0 && pick(3) > 0 {
            for set in &mut section.sets {
                if pick(2) == 0 {
                    set.elements = (0..pick(6)).map(|_| format!("10.9.0.{}/32", pick(8)).parse().unwrap()).collect();
                }
            }
        } else {
            section = random_section(&mut pick);
        }
        table.set_section("policy", section.clone()).await;
        assert!(table.probe().await);
        assert!(table.state.borrow().synced, "step {step}: {:?}", table.state.borrow());
        let desired = std::collections::BTreeMap::from([("policy", section.clone())]);
        let batch = tortie::dataplane::nftables::render::replace_table(TABLE_NAME, &desired).unwrap();
        whole.apply_nft(&batch).await.unwrap();
        assert_eq!(content(&t, "n"), content(&t, "m"), "step {step}");
    }
    let stats = &table.stats;
    let (applies, elements, partial) =
        (stats.applies.load(Relaxed), stats.element_writes.load(Relaxed), stats.partial_writes.load(Relaxed));
    assert!(elements >= 10 && partial >= 5, "paths taken: {applies} writes, {elements} element, {partial} partial");
    assert!(applies - elements - partial <= 2, "whole writes: {}", applies - elements - partial);
    assert_eq!(stats.apply_errors.load(Relaxed), 0);
}

/// Reading the table back never holds a change up: while a slow listing of a whole write is
/// under way, a pod's change is written and acknowledged.
#[tokio::test]
async fn a_change_is_written_while_the_table_is_being_read_back() {
    let mut t = Topology::new("nft-slow").unwrap();
    t.add_namespace("n").unwrap();
    let dir = t.dir().to_path_buf();
    let script = dir.join("slow-list-nft");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$2\" = list ]; then touch {d}/listing; sleep 3; ip netns exec {ns} nft \"$@\"; rc=$?; touch {d}/listed; exit $rc; fi\nexec ip netns exec {ns} nft \"$@\"\n",
            d = dir.display(),
            ns = t.ns("n")
        ),
    )
    .unwrap();
    std::process::Command::new("chmod").args(["+x", script.to_str().unwrap()]).status().unwrap();
    let command = NftCommand {
        argv: vec![script.to_str().unwrap().to_string()],
        namespace: Some(t.ns("n")),
        link: Default::default(),
    };
    let (table, _task) = NftTable::start(NftTableConfig {
        name: TABLE_NAME.to_string(),
        users: vec![nat::USER],
        resync_interval: Duration::from_secs(3600),
        command,
        fingerprint: None,
    });
    table.set_section(nat::USER, nat::section(&input(&[("10.244.0.0/16", true)], &["192.0.2.1"]))).await;
    assert!(table.probe().await && table.state.borrow().synced);
    wait_until_async("the write read back", WAIT, || async { dir.join("listing").exists().then_some(()) })
        .await
        .unwrap();

    table.set_section(nat::USER, nat::section(&input(&[("10.244.0.0/16", true)], &["192.0.2.1", "192.0.2.7"]))).await;
    assert!(table.probe().await && table.state.borrow().synced);
    assert!(!dir.join("listed").exists(), "the change waited for the listing");
    assert_eq!(elements(&t, "nat-all-hosts-v4"), vec![serde_json::json!("192.0.2.1"), serde_json::json!("192.0.2.7")]);
    wait_until_async("the listing done", WAIT, || async { dir.join("listed").exists().then_some(()) }).await.unwrap();
}

/// Policies with every kind of rule the compiler makes, over pods with IPv4 and IPv6
/// addresses, two of them local: the policy section as the agent renders it.
fn policy_section() -> tortie::dataplane::nftables::Section {
    use tortie::datastore::resources::{GlobalNetworkPolicy, KubeNetworkPolicy, NetworkPolicy, Resource};
    use tortie::policy::{Endpoint, Local, NamedPort, Namespaces, calico, compile, kube};
    let cnp = |spec: serde_json::Value| {
        let r: NetworkPolicy = serde_json::from_value(spec).unwrap();
        r.validate().unwrap();
        calico::namespaced("prod", "everything", &r).unwrap()
    };
    let every_match = cnp(serde_json::json!({"order": 1, "ingress": [
        {"action": "Log", "protocol": "ICMP", "notICMP": {"type": 8, "code": 0}},
        {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 0, "code": 0}},
        {"action": "Deny", "ipVersion": 6, "protocol": "ICMPv6", "icmp": {"type": 128}},
        {"action": "Deny", "ipVersion": 6, "protocol": "ICMPv6", "notICMP": {"type": 128, "code": 0}},
        {"action": "Allow", "protocol": "UDP", "notProtocol": "TCP",
         "source": {"nets": ["10.0.0.0/8", "fd00::/64"], "notNets": ["10.9.0.0/16"], "notSelector": "app == 'x'",
                    "ports": ["1000:2000"], "notPorts": [1500]},
         "destination": {"selector": "has(app)", "namespaceSelector": "global()", "ports": [53, "http"]}},
        {"action": "Pass", "protocol": 132, "destination": {"ports": ["8000:8100"]}}],
        "egress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [80, 443, "8000:8080"]}},
                   {"action": "Deny"}]}));
    let knp: KubeNetworkPolicy = serde_json::from_value(serde_json::json!({
        "podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.5.0/24"]}},
                              {"podSelector": {"matchLabels": {"app": "web"}}}],
                     "ports": [{"port": 5432, "protocol": "TCP"}, {"port": 9000, "endPort": 9100, "protocol": "UDP"}]}],
        "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": 53, "protocol": "UDP"}]}]}))
    .unwrap();
    knp.validate().unwrap();
    let gnp: GlobalNetworkPolicy = serde_json::from_value(
        serde_json::json!({"order": 2000, "selector": "all()", "ingress": [{"action": "Deny"}]}),
    )
    .unwrap();
    gnp.validate().unwrap();
    let policies = [every_match, kube::policy("prod", "db", &knp).unwrap(), calico::global("deny-all", &gnp).unwrap()];
    let pod = |name: &str, app: &str, v4: &str, v6: &str| Endpoint {
        name: format!("prod/{name}"),
        namespace: "prod".into(),
        labels: std::collections::BTreeMap::from([("app".to_string(), app.to_string())]),
        service_account: None,
        addresses: vec![v4.parse().unwrap(), v6.parse().unwrap()],
        ports: vec![NamedPort { name: "http".into(), protocol: 6, port: 8080 }],
    };
    let endpoints = [
        pod("web", "web", "10.0.1.1", "fd00::1:1"),
        pod("db", "db", "10.0.2.1", "fd00::2:1"),
        pod("x", "x", "10.0.3.1", "fd00::3:1"),
    ];
    let local = [
        Local { endpoint: "prod/web".into(), interface: "tt-web".into() },
        Local { endpoint: "prod/db".into(), interface: "tt-db".into() },
    ];
    let program = compile(&policies, &endpoints, &Namespaces::default(), &local);
    tortie::dataplane::nftables::policy::section(&program).unwrap()
}

/// The writer over nfnetlink against `nft`: the same batches (whole tables with the policy
/// section of every kind of rule and the NAT section, and random sections) leave the same
/// table in two namespaces, as `nft` lists it back; none of them needs `nft`.
#[tokio::test]
async fn a_table_written_over_netlink_lists_as_the_one_nft_writes() {
    use tortie::dataplane::nftables::render::replace_table;
    let mut t = Topology::new("nft-nl").unwrap();
    t.add_namespace("n").unwrap();
    t.add_namespace("m").unwrap();
    let (ours, theirs) = (NftCommand::in_namespace(&t.ns("n")), NftCommand::in_namespace(&t.ns("m")));
    let nat = nat::section(&input(
        &[("10.244.0.0/16", true), ("fd00:244::/64", true), ("10.9.0.0/16", false)],
        &["192.0.2.1", "2001:db8::1"],
    ));
    let policy = policy_section();
    assert!(policy.chains.len() > 8 && !policy.port_sets.is_empty(), "{} chains", policy.chains.len());
    let mut desired = vec![std::collections::BTreeMap::from([("policy", policy), (nat::USER, nat)])];
    let mut pick = numbers(0x2545_f491_4f6c_dd1d);
    desired.extend((0..15).map(|_| std::collections::BTreeMap::from([("policy", random_section(&mut pick))])));
    for (step, d) in desired.iter().enumerate() {
        let batch = replace_table(TABLE_NAME, d).unwrap();
        if let Err(e) = ours.apply_netlink(&batch).await {
            panic!("step {step}: {e}");
        }
        theirs.apply_nft(&batch).await.unwrap();
        let (a, b) = (content(&t, "n"), content(&t, "m"));
        assert!(!a.is_empty());
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let differ: Vec<String> = keys
            .into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| format!("{k}:\n  netlink {}\n  nft     {}", json_of(a.get(k)), json_of(b.get(k))))
            .collect();
        assert!(differ.is_empty(), "step {step}:\n{}", differ.join("\n"));
    }
}

fn json_of(v: Option<&serde_json::Value>) -> String {
    v.map_or("(none)".to_string(), |v| v.to_string())
}

/// Each chain's rules' first counters as `nft -j list` shows them, in rule order.
fn listed_counters(t: &Topology, table: &str) -> tortie::dataplane::nftables::dump::ChainCounters {
    let mut out = tortie::dataplane::nftables::dump::ChainCounters::new();
    for rule in listed(t, table, "rule") {
        let counter = rule["expr"].as_array().unwrap().iter().find_map(|x| {
            let c = x.get("counter")?;
            Some((c["packets"].as_u64()?, c["bytes"].as_u64()?))
        });
        out.entry(rule["chain"].as_str().unwrap().to_string()).or_default().push(counter);
    }
    out
}

#[tokio::test]
async fn rule_counters_read_over_netlink_equal_the_ones_nft_lists() {
    let mut t = Topology::new("nft-dump").unwrap();
    t.add_namespace("n").unwrap();
    let command = NftCommand::in_namespace(&t.ns("n"));
    assert!(command.rule_counters(TABLE_NAME).await.unwrap().is_empty(), "no table: nothing to count");
    // The policy section's many chains and rules, then counters of known values (and a rule
    // without one) in a chain of their own, and someone else's table, not read.
    let desired = std::collections::BTreeMap::from([("policy", policy_section())]);
    command
        .apply_netlink(&tortie::dataplane::nftables::render::replace_table(TABLE_NAME, &desired).unwrap())
        .await
        .unwrap();
    let script = format!(
        "add chain inet {TABLE_NAME} counted\n\
         add rule inet {TABLE_NAME} counted meta l4proto tcp counter packets 7 bytes 420 accept\n\
         add rule inet {TABLE_NAME} counted meta l4proto udp accept\n\
         add rule inet {TABLE_NAME} counted counter packets 5000000000 bytes 3 counter packets 1 bytes 1 drop\n\
         {OTHER_TABLE}"
    );
    t.exec("n", &["sh", "-c", &format!("printf '%s' '{script}' | nft -f -")]).unwrap();
    let dumped = command.rule_counters(TABLE_NAME).await.unwrap();
    assert_eq!(dumped["counted"], vec![Some((7, 420)), None, Some((5_000_000_000, 3))]);
    assert!(dumped.values().map(Vec::len).sum::<usize>() > 20, "{dumped:?}");
    assert_eq!(dumped, listed_counters(&t, TABLE_NAME));
    assert!(!dumped.contains_key("post"), "another table's chain");
}

#[tokio::test]
async fn the_drift_check_reads_nothing_while_nothing_is_committed_and_still_repairs() {
    use std::sync::atomic::Ordering::Relaxed;
    let mut t = Topology::new("nft-gen").unwrap();
    t.add_namespace("n").unwrap();
    let table = start(&t, vec![nat::USER]);
    table.set_section(nat::USER, nat::section(&input(&[("10.244.0.0/16", true)], &["192.0.2.1"]))).await;
    assert!(table.probe().await && table.state.borrow().synced);
    // Read back after the write, then quiet: a resync every 200 ms finds nothing committed.
    let mut last = (0, std::time::Instant::now());
    wait_until_async("the write read back and the readings stopped", WAIT, || {
        let readings = table.stats.readings.load(Relaxed);
        if readings != last.0 {
            last = (readings, std::time::Instant::now());
        }
        let quiet = readings > 0 && last.1.elapsed() > Duration::from_secs(1);
        async move { quiet.then_some(()) }
    })
    .await
    .unwrap();
    let quiet = table.stats.readings.load(Relaxed);
    // Fifteen resyncs: none reads the table.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(table.stats.readings.load(Relaxed), quiet, "no reading while nothing is committed");
    // Someone else's transaction: the next resync reads the table and repairs it.
    let handle = listed(&t, TABLE_NAME, "rule")[0]["handle"].to_string();
    nft(&t, &["delete", "rule", "inet", TABLE_NAME, nat::CHAIN, "handle", &handle]).unwrap();
    wait_until_async("the table repaired", WAIT, || async {
        (listed(&t, TABLE_NAME, "rule").len() == 2).then_some(())
    })
    .await
    .unwrap();
    assert!(table.stats.readings.load(Relaxed) > quiet);
    assert!(table.stats.repairs.load(Relaxed) >= 1);
}
