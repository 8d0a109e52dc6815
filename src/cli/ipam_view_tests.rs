//! Golden output of every `ipam` table and document format.

use super::*;
use crate::cli::ListFormat;
use crate::cli::output::render as format_as;
use crate::ipam::admin::{ReleasedAddress, Skipped};
use crate::ipam::check::AddressProblem;

fn usage_of(name: &str, cidr: &str, total: u128, in_use: u128, affinity: Option<&str>) -> Usage {
    Usage {
        name: name.into(),
        cidr: cidr.into(),
        total,
        in_use,
        reserved: 0,
        free: total - in_use,
        affinity: affinity.map(str::to_string),
    }
}

fn report() -> CheckReport {
    CheckReport {
        pools: vec![usage_of("default-ipv4", "10.50.0.0/24", 256, 3, None)],
        blocks: vec![usage_of("10-50-0-0-26", "10.50.0.0/26", 64, 3, Some("host:n1"))],
        allocations: 3,
        leaked: vec![AddressProblem {
            ip: "10.50.0.2".parse().unwrap(),
            handle: Some("k8s-pod-network.old".into()),
            block: "10-50-0-0-26".into(),
            sequence_number: Some(2),
            workload: Some("shop/web-1".into()),
            why: Some("node n9 no longer exists".into()),
        }],
        affinities_of_missing_nodes: vec!["n9-10-50-0-64-26 (node n9)".into()],
        borrowed: vec![BorrowedBlock {
            block: "10.50.0.0/26".into(),
            affine_node: Some("n1".into()),
            used_by: "n2".into(),
            addresses: 1,
        }],
        ..Default::default()
    }
}

#[test]
fn golden_show_table_and_wide() {
    let v = UsageView::of(&report(), true);
    assert_eq!(
        format_as(ListFormat::Table, &v, usage).unwrap(),
        "\
+----------+--------------+-----------+------------+--------------+-----------+
| GROUPING |     CIDR     | IPS TOTAL | IPS IN USE | IPS RESERVED | IPS FREE  |
+----------+--------------+-----------+------------+--------------+-----------+
| IP Pool  | 10.50.0.0/24 | 256       | 3 (1%)     | 0 (0%)       | 253 (98%) |
| Block    | 10.50.0.0/26 | 64        | 3 (4%)     | 0 (0%)       | 61 (95%)  |
+----------+--------------+-----------+------------+--------------+-----------+
"
    );
    assert_eq!(
        format_as(ListFormat::Wide, &v, usage).unwrap(),
        "\
+----------+--------------+-----------+------------+--------------+-----------+----------+
| GROUPING |     CIDR     | IPS TOTAL | IPS IN USE | IPS RESERVED | IPS FREE  | AFFINITY |
+----------+--------------+-----------+------------+--------------+-----------+----------+
| IP Pool  | 10.50.0.0/24 | 256       | 3 (1%)     | 0 (0%)       | 253 (98%) |          |
| Block    | 10.50.0.0/26 | 64        | 3 (4%)     | 0 (0%)       | 61 (95%)  | host:n1  |
+----------+--------------+-----------+------------+--------------+-----------+----------+
"
    );
}

#[test]
fn golden_show_json_and_yaml() {
    let v = UsageView::of(&report(), false);
    assert_eq!(
        format_as(ListFormat::Json, &v, usage).unwrap(),
        r#"{
  "pools": [
    {
      "name": "default-ipv4",
      "cidr": "10.50.0.0/24",
      "total": 256,
      "in_use": 3,
      "reserved": 0,
      "free": 253
    }
  ],
  "blocks": []
}
"#
    );
    assert_eq!(
        format_as(ListFormat::Yaml, &v, usage).unwrap(),
        "\
pools:
- name: default-ipv4
  cidr: 10.50.0.0/24
  total: 256
  in_use: 3
  reserved: 0
  free: 253
blocks: []
"
    );
}

#[test]
fn golden_borrowed_and_configuration() {
    assert_eq!(
        borrowed(&report().borrowed),
        "\
+--------------+-------------+----------------+-----------+
|    BLOCK     | BLOCK OWNER | BORROWING NODE | ADDRESSES |
+--------------+-------------+----------------+-----------+
| 10.50.0.0/26 | n1          | n2             | 1         |
+--------------+-------------+----------------+-----------+
"
    );
    let c = ConfigurationView {
        strict_affinity: false,
        auto_allocate_blocks: true,
        max_blocks_per_host: 0,
        effective_max_blocks_per_host: 20,
        source: "defaults (no IPAMConfig)".into(),
    };
    assert_eq!(
        configuration(&c),
        "\
+--------------------+-----------------+
|      PROPERTY      |      VALUE      |
+--------------------+-----------------+
| StrictAffinity     | false           |
| AutoAllocateBlocks | true            |
| MaxBlocksPerHost   | 0 (default: 20) |
+--------------------+-----------------+
From: defaults (no IPAMConfig)
"
    );
    assert_eq!(
        format_as(ListFormat::Yaml, &c, |c, _| configuration(c)).unwrap(),
        "strictAffinity: false\nautoAllocateBlocks: true\nmaxBlocksPerHost: 0\neffectiveMaxBlocksPerHost: 20\nsource: defaults (no IPAMConfig)\n"
    );
}

#[test]
fn golden_check_table_wide_and_json() {
    let r = report();
    let table = format_as(ListFormat::Table, &r, check).unwrap();
    assert_eq!(
        table,
        "\
Checking IPAM for inconsistencies...
Found 1 IP pools, 1 blocks, 3 allocations.
+----------------------------+------------------------------------------------------------------------------+
|          PROBLEM           |                                    DETAIL                                    |
+----------------------------+------------------------------------------------------------------------------+
| affinity of a missing node | n9-10-50-0-64-26 (node n9)                                                   |
| leaked                     | 10.50.0.2 (handle k8s-pod-network.old, shop/web-1): node n9 no longer exists |
+----------------------------+------------------------------------------------------------------------------+
Found 2 problem(s).
"
    );
    let wide = format_as(ListFormat::Wide, &r, check).unwrap();
    assert_eq!(
        wide.strip_prefix(table.as_str()).unwrap(),
        "Borrowed addresses (not a problem):\n".to_string() + &borrowed(&r.borrowed)
    );
    let json: serde_json::Value = serde_json::from_str(&format_as(ListFormat::Json, &r, check).unwrap()).unwrap();
    assert_eq!(
        json["leaked"],
        serde_json::json!([{
            "ip": "10.50.0.2", "handle": "k8s-pod-network.old", "block": "10-50-0-0-26",
            "sequenceNumber": 2, "workload": "shop/web-1", "why": "node n9 no longer exists"
        }])
    );
    // The JSON document is the report `release --from-report` reads back.
    let back: CheckReport = serde_json::from_value(json).unwrap();
    assert_eq!(back.leaked, r.leaked);
    let yaml = format_as(ListFormat::Yaml, &r, check).unwrap();
    assert!(yaml.contains("leaked:\n- ip: 10.50.0.2\n  handle: k8s-pod-network.old\n"), "{yaml}");
}

#[test]
fn golden_release_and_dry_run() {
    let mut answer = ReleaseAnswer {
        dry_run: true,
        released: vec![ReleasedAddress {
            ip: "10.50.0.1".parse().unwrap(),
            handle: Some("k8s-pod-network.abc".into()),
            holder: Holder::Live { workload: "shop/web-0".into() },
        }],
        skipped: vec![Skipped { ip: "10.50.0.9".parse().unwrap(), why: "already free".into() }],
    };
    assert_eq!(
        release(&answer),
        "\
Would release 10.50.0.1 (handle k8s-pod-network.abc, live workload shop/web-0)
Skipped 10.50.0.9: already free
Would release 1 address(es)
"
    );
    answer.dry_run = false;
    assert!(release(&answer).ends_with("Released 1 address(es)\n"));
}
