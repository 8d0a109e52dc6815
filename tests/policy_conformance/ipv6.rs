//! The matrix over the pods' IPv6 addresses: policies by selector and by IPv6 nets enforced on
//! real IPv6 connections, allowed and denied.

use super::Matrix;
use super::cases::{Change, gnp, knp};
use serde_json::json;

pub fn run(m: &mut Matrix) {
    m.check(6).unwrap_or_else(|d| panic!("IPv6 without policy: every pair connects:{d}"));
    let a = |id: &str| m.world.pods.iter().find(|p| p.id() == id).unwrap().ips[1];
    let steps = vec![
        (
            "IPv6: from namespace y, TCP 80 only",
            vec![knp(
                "x",
                "from-y",
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}],
                    "ports": [{"port": 80, "protocol": "TCP"}]}]}),
            )],
        ),
        (
            "IPv6: nets and notNets",
            vec![gnp(
                "v6-nets",
                json!({"order": 10, "selector": "pod == 'b'", "ingress": [{"action": "Allow",
                    "source": {"nets": ["fd00:247::/64"], "notNets": [format!("{}/128", a("x/a")), format!("{}/128", a("z/c"))]}}]}),
            )],
        ),
    ];
    for (name, docs) in steps {
        m.change(&Change::Apply(docs));
        m.check(6).unwrap_or_else(|d| panic!("{name}:{d}"));
        m.reset();
        m.check(6).unwrap_or_else(|d| panic!("{name}, after deleting its policies:{d}"));
        eprintln!("{name}: enforced");
    }
}
