use super::*;
use serde_json::json;

fn rule(statements: serde_json::Value) -> Program {
    let statements: Vec<Statement> = serde_json::from_value(statements).unwrap();
    program(&statements).unwrap()
}

#[test]
fn an_address_match_is_preceded_by_its_family_once() {
    let p = rule(json!([
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@a"}},
        {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "@b"}},
    ]));
    assert_eq!(
        p.exprs,
        vec![
            Expr::Meta { key: NFT_META_NFPROTO },
            Expr::Cmp { op: NFT_CMP_EQ, data: vec![NFPROTO_IPV4] },
            Expr::Payload { base: 1, offset: 12, len: 4, dreg: REG_1 },
            Expr::Lookup { set: "a".into(), anonymous: None, verdict: false, invert: false },
            Expr::Payload { base: 1, offset: 16, len: 4, dreg: REG_1 },
            Expr::Lookup { set: "b".into(), anonymous: None, verdict: false, invert: true },
        ]
    );
}

#[test]
fn a_family_matched_first_is_not_repeated_and_ports_compare_in_network_order() {
    let p = rule(json!([
        {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv6"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": "@a"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}}, "right": {"range": [8000, 8080]}}},
        {"match": {"op": "!=", "left": {"payload": {"protocol": "th", "field": "sport"}}, "right": {"range": [1000, 2000]}}},
    ]));
    assert_eq!(p.exprs[..2], [Expr::Meta { key: NFT_META_NFPROTO }, Expr::Cmp { op: NFT_CMP_EQ, data: vec![10] }]);
    assert_eq!(p.exprs[2], Expr::Payload { base: 1, offset: 24, len: 16, dreg: REG_1 });
    assert_eq!(p.exprs[5], Expr::Cmp { op: NFT_CMP_GTE, data: 8000u16.to_be_bytes().to_vec() });
    assert_eq!(p.exprs[6], Expr::Cmp { op: NFT_CMP_LTE, data: 8080u16.to_be_bytes().to_vec() });
    assert_eq!(
        p.exprs[8],
        Expr::Range { op: NFT_RANGE_NEQ, from: 1000u16.to_be_bytes().to_vec(), to: 2000u16.to_be_bytes().to_vec() }
    );
}

#[test]
fn the_mark_is_set_and_cleared_as_mask_and_xor() {
    let mark = json!({"meta": {"key": "mark"}});
    let p = rule(json!([
        {"mangle": {"key": mark, "value": {"|": [mark, 0x0010_0000]}}},
        {"mangle": {"key": mark, "value": {"&": [mark, 0xffef_ffffu32]}}},
    ]));
    assert_eq!(
        p.exprs[1],
        Expr::Bitwise { mask: 0xffef_ffffu32.to_ne_bytes().to_vec(), xor: 0x0010_0000u32.to_ne_bytes().to_vec() }
    );
    assert_eq!(p.exprs[2], Expr::MetaSet { key: NFT_META_MARK });
    assert_eq!(p.exprs[4], Expr::Bitwise { mask: 0xffef_ffffu32.to_ne_bytes().to_vec(), xor: vec![0; 4] });
}

#[test]
fn a_verdict_map_and_an_icmp_pair_name_anonymous_sets() {
    let p = rule(json!([
        {"vmap": {"key": {"meta": {"key": "iifname"}}, "data": {"set": [["veth1", {"jump": {"target": "c"}}]]}}},
    ]));
    assert_eq!(p.sets.len(), 1);
    assert!(p.sets[0].map);
    assert_eq!(p.sets[0].elements[0].0, b"veth1\0\0\0\0\0\0\0\0\0\0\0".to_vec());
    assert_eq!(p.sets[0].elements[0].1, Some((NFT_JUMP, Some("c".to_string()))));
    let field = |f: &str| json!({"payload": {"protocol": "icmp", "field": f}});
    let p = rule(json!([
        {"match": {"op": "!=", "left": {"concat": [field("type"), field("code")]}, "right": {"set": [{"concat": [8, 0]}]}}},
    ]));
    assert_eq!(p.sets[0].key_type, (TYPE_ICMP_TYPE << TYPE_BITS) | TYPE_ICMP_CODE);
    assert_eq!(p.sets[0].elements[0].0, vec![8, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(p.exprs[3], Expr::Payload { base: 2, offset: 1, len: 1, dreg: REG32_00 + 1 });
}

#[test]
fn forms_not_written_by_tortie_are_unsupported() {
    for statement in [
        json!({"match": {"op": "==", "left": {"meta": {"key": "skuid"}}, "right": 0}}),
        json!({"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 80}}),
        json!({"reject": null}),
        json!({"log": {"prefix": "x", "group": 2}}),
    ] {
        let statements: Vec<Statement> = serde_json::from_value(json!([statement])).unwrap();
        assert!(program(&statements).is_err(), "{statement}");
    }
}
