use super::super::elements::ElementChange;
use super::*;
use crate::dataplane::nftables::nat::{self, NatInput};
use serde_json::{Value, json};

fn nat_desired(pools: &[(&str, bool)], hosts: &[&str]) -> Desired {
    let input = NatInput {
        pools: pools.iter().map(|(c, nat)| (c.parse().unwrap(), *nat)).collect(),
        hosts: hosts.iter().map(|h| h.parse().unwrap()).collect(),
    };
    Desired::from([(nat::USER, nat::section(&input))])
}

fn commands(batch: &Nftables) -> Vec<Value> {
    serde_json::to_value(batch).unwrap()["nftables"].as_array().unwrap().clone()
}

/// The objects of one kind the batch adds, by their JSON.
fn added(batch: &Nftables, kind: &str) -> Vec<Value> {
    commands(batch).iter().filter_map(|c| c["add"].get(kind).cloned()).collect()
}

#[test]
fn the_whole_table_is_replaced_in_one_batch_that_starts_by_deleting_only_ours() {
    let desired = nat_desired(
        &[("10.244.0.0/16", true), ("10.99.0.0/16", false), ("fd00:244::/64", true)],
        &["192.0.2.1", "2001:db8::1"],
    );
    let batch = replace_table("tortie", &desired).unwrap();
    let c = commands(&batch);
    let table = json!({"family": "inet", "name": "tortie"});
    assert_eq!(
        c[..3],
        [json!({"add": {"table": table}}), json!({"delete": {"table": table}}), json!({"add": {"table": table}})]
    );
    assert!(c.iter().all(|c| !c.to_string().contains("ruleset")), "never the ruleset: {c:?}");

    let elements: Vec<(String, Value)> =
        added(&batch, "element").iter().map(|e| (e["name"].as_str().unwrap().to_string(), e["elem"].clone())).collect();
    let prefix = |a: &str, len: u32| json!({"prefix": {"addr": a, "len": len}});
    assert_eq!(
        elements,
        vec![
            ("nat-masq-ipam-pools-v4".to_string(), json!([prefix("10.244.0.0", 16)])),
            ("nat-all-ipam-pools-v4".to_string(), json!([prefix("10.99.0.0", 16), prefix("10.244.0.0", 16)])),
            ("nat-all-hosts-v4".to_string(), json!(["192.0.2.1"])),
            ("nat-masq-ipam-pools-v6".to_string(), json!([prefix("fd00:244::", 64)])),
            ("nat-all-ipam-pools-v6".to_string(), json!([prefix("fd00:244::", 64)])),
            ("nat-all-hosts-v6".to_string(), json!(["2001:db8::1"])),
        ]
    );
    for set in added(&batch, "set") {
        assert_eq!(set["flags"], json!(["interval"]), "{set}");
    }

    let chains = added(&batch, "chain");
    assert_eq!(
        chains,
        vec![json!({"family": "inet", "table": "tortie", "name": "nat-outgoing",
        "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"})]
    );
    let rules: Vec<Value> = added(&batch, "rule").iter().map(|r| r["expr"].clone()).collect();
    let lookup = |proto: &str, field: &str, op: &str, set: &str| json!({"match": {"left": {"payload": {"protocol": proto, "field": field}}, "right": format!("@{set}"), "op": op}});
    let masquerade = json!({"masquerade": {"flags": ["fully-random"]}});
    assert_eq!(
        rules,
        vec![
            json!([
                lookup("ip", "saddr", "==", "nat-masq-ipam-pools-v4"),
                lookup("ip", "daddr", "!=", "nat-all-ipam-pools-v4"),
                lookup("ip", "daddr", "!=", "nat-all-hosts-v4"),
                masquerade
            ]),
            json!([
                lookup("ip6", "saddr", "==", "nat-masq-ipam-pools-v6"),
                lookup("ip6", "daddr", "!=", "nat-all-ipam-pools-v6"),
                lookup("ip6", "daddr", "!=", "nat-all-hosts-v6"),
                masquerade
            ]),
        ]
    );
}

#[test]
fn empty_sets_are_created_without_an_element_command() {
    let batch = replace_table("tortie", &nat_desired(&[], &[])).unwrap();
    assert_eq!(added(&batch, "set").len(), 6);
    assert!(added(&batch, "element").is_empty());
}

#[test]
fn a_pool_or_node_change_adds_and_deletes_only_the_changed_elements() {
    let n = |s: &str| -> IpNetwork { s.parse().unwrap() };
    let change = |set: &str, gone: &[&str], come: &[&str]| ElementChange {
        set: set.to_string(),
        gone: gone.iter().map(|s| n(s)).collect(),
        come: come.iter().map(|s| n(s)).collect(),
    };
    let old = nat_desired(&[("10.244.0.0/16", false)], &["192.0.2.1"]);
    let new = nat_desired(&[("10.244.0.0/16", true)], &["192.0.2.1"]);
    let changes = element_changes(&old, &new).unwrap().expect("only set elements differ");
    assert_eq!(changes, vec![change("nat-masq-ipam-pools-v4", &[], &["10.244.0.0/16"])]);

    // Emptied: the element deleted, nothing added.
    let changes = element_changes(&new, &old).unwrap().unwrap();
    assert_eq!(changes, vec![change("nat-masq-ipam-pools-v4", &["10.244.0.0/16"], &[])]);

    assert_eq!(element_changes(&new, &new.clone()).unwrap(), Some(vec![]));

    // One node replaced by another among several: that one element goes, the other comes.
    let old = nat_desired(&[("10.244.0.0/16", true)], &["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    let new = nat_desired(&[("10.244.0.0/16", true)], &["192.0.2.1", "192.0.2.3", "192.0.2.4"]);
    let changes = element_changes(&old, &new).unwrap().unwrap();
    assert_eq!(changes, vec![change("nat-all-hosts-v4", &["192.0.2.2/32"], &["192.0.2.4/32"])]);
}

#[test]
fn a_changed_chain_or_port_set_or_a_new_section_needs_the_whole_table() {
    let old = nat_desired(&[("10.244.0.0/16", true)], &[]);
    let mut new = old.clone();
    new.get_mut(nat::USER).unwrap().chains.make_mut()[0].rules.make_mut().pop();
    assert_eq!(element_changes(&old, &new).unwrap(), None);
    let mut new = old.clone();
    new.get_mut(nat::USER)
        .unwrap()
        .port_sets
        .push(PortSet { name: "ports-80_443".into(), ranges: vec![(80, 80), (443, 443)] });
    assert_eq!(element_changes(&old, &new).unwrap(), None);
    let mut new = old.clone();
    new.insert("policy", Section::default());
    assert_eq!(element_changes(&old, &new).unwrap(), None);
}

#[test]
fn listed_elements_compare_by_content_whatever_their_form() {
    let mut desired = nat_desired(&[("10.244.0.0/16", true)], &["192.0.2.1", "192.0.2.2"]);
    desired
        .get_mut(nat::USER)
        .unwrap()
        .port_sets
        .push(PortSet { name: "ports-80_8000-8080".into(), ranges: vec![(80, 80), (8000, 8080)] });
    let set = |name: &str, elem: Value| json!({"set": {"name": name, "elem": elem}});
    let mut objects = vec![
        set("nat-masq-ipam-pools-v4", json!([{"prefix": {"addr": "10.244.0.0", "len": 16}}])),
        // The same addresses as one range.
        set("nat-all-ipam-pools-v4", json!([{"range": ["10.244.0.0", "10.244.255.255"]}])),
        set("nat-all-hosts-v4", json!(["192.0.2.1", "192.0.2.2"])),
        json!({"set": {"name": "nat-masq-ipam-pools-v6"}}),
        json!({"set": {"name": "nat-all-ipam-pools-v6"}}),
        json!({"set": {"name": "nat-all-hosts-v6"}}),
        set("ports-80_8000-8080", json!([80, {"range": [8000, 8080]}])),
    ];
    let listing = |objects: &[Value]| json!({"nftables": objects});
    assert_eq!(listed_elements(&listing(&objects)), desired_elements(&desired));
    objects[2] = set("nat-all-hosts-v4", json!([{"range": ["192.0.2.1", "192.0.2.2"]}]));
    assert_eq!(listed_elements(&listing(&objects)), desired_elements(&desired), "adjacent addresses as a range");
    objects[2] = set("nat-all-hosts-v4", json!(["192.0.2.1"]));
    assert_ne!(listed_elements(&listing(&objects)), desired_elements(&desired), "an element missing");
    objects[2] = set("nat-all-hosts-v4", json!(["192.0.2.1", {"weird": 1}]));
    assert_ne!(listed_elements(&listing(&objects)), desired_elements(&desired), "an element not understood");
}

#[test]
fn the_skeleton_is_the_listing_without_elements_handles_or_counts() {
    let a = json!({"nftables": [
        {"metainfo": {"version": "1.0.6"}},
        {"set": {"name": "s", "handle": 3, "elem": ["10.0.0.1"]}},
        {"rule": {"chain": "c", "handle": 4, "expr": [{"counter": {"packets": 9, "bytes": 90}}]}}
    ]});
    let b = json!({"nftables": [
        {"set": {"name": "s", "handle": 8}},
        {"rule": {"chain": "c", "handle": 9, "expr": [{"counter": {"packets": 0, "bytes": 0}}]}}
    ]});
    assert_eq!(skeleton(&a), skeleton(&b));
    let c = json!({"nftables": [{"set": {"name": "s"}}]});
    assert_ne!(skeleton(&a), skeleton(&c));
}

#[test]
fn two_sections_naming_the_same_object_are_refused() {
    let mut desired = nat_desired(&[], &[]);
    desired.insert("policy", desired[nat::USER].clone());
    let err = replace_table("tortie", &desired).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the nftables set \"nat-masq-ipam-pools-v4\" is used by both the nat and the policy section"
    );
    let wrong = Desired::from([(
        "nat",
        Section {
            sets: vec![AddressSet {
                name: "s".into(),
                ipv6: false,
                elements: vec!["fd00::/64".parse().unwrap()].into(),
            }],
            ..Section::default()
        },
    )]);
    assert!(matches!(check(&wrong), Err(RenderError::WrongFamily { .. })));
}

#[test]
fn collapse_masks_sorts_and_drops_networks_inside_others() {
    let n = |s: &str| -> IpNetwork { s.parse().unwrap() };
    let got = collapse(&[n("10.1.2.3/16"), n("10.1.5.0/24"), n("10.0.0.1/32"), n("10.1.0.0/16"), n("10.2.0.0/16")]);
    assert_eq!(got, vec![n("10.0.0.1/32"), n("10.1.0.0/16"), n("10.2.0.0/16")]);
    let got =
        collapse(&[n("fd00::/8"), n("10.0.0.0/8"), n("fd00::1/128"), n("10.9.9.9/32"), n("11.0.0.1/32"), n("::/0")]);
    assert_eq!(got, vec![n("10.0.0.0/8"), n("11.0.0.1/32"), n("::/0")], "each family on its own");
}

#[test]
fn status_lists_the_pools_with_nat() {
    let input = NatInput {
        pools: vec![("10.244.0.0/16".parse().unwrap(), true), ("10.99.0.0/16".parse().unwrap(), false)],
        hosts: vec![],
    };
    assert_eq!(nat::nat_pools(&input), vec!["10.244.0.0/16".to_string()]);
}

#[test]
fn shape_matches_counts_rules_per_chain_and_elements_per_set() {
    let desired = nat_desired(&[("10.244.0.0/16", true)], &["192.0.2.1"]);
    let set = |name: &str, elem: Value| json!({"set": {"name": name, "elem": elem}});
    let mut objects = vec![
        json!({"metainfo": {}}),
        json!({"table": {"name": "tortie"}}),
        set("nat-masq-ipam-pools-v4", json!([{"prefix": {"addr": "10.244.0.0", "len": 16}}])),
        set("nat-all-ipam-pools-v4", json!([{"prefix": {"addr": "10.244.0.0", "len": 16}}])),
        set("nat-all-hosts-v4", json!(["192.0.2.1"])),
        json!({"set": {"name": "nat-masq-ipam-pools-v6"}}),
        json!({"set": {"name": "nat-all-ipam-pools-v6"}}),
        json!({"set": {"name": "nat-all-hosts-v6"}}),
        json!({"chain": {"name": "nat-outgoing"}}),
        json!({"rule": {"chain": "nat-outgoing"}}),
        json!({"rule": {"chain": "nat-outgoing"}}),
    ];
    assert!(shape_matches(&desired, &json!({"nftables": objects})));
    let rule = objects.pop().unwrap();
    assert!(!shape_matches(&desired, &json!({"nftables": objects})), "a rule missing");
    objects.push(rule);
    objects[4] = set("nat-all-hosts-v4", json!([]));
    assert!(!shape_matches(&desired, &json!({"nftables": objects})), "an element missing");
    objects[4] = set("nat-all-hosts-v4", json!(["192.0.2.1"]));
    objects.push(json!({"chain": {"name": "extra"}}));
    assert!(!shape_matches(&desired, &json!({"nftables": objects})), "a chain not ours");
}
