use super::reference::{Op, Ref};
use super::*;
use proptest::prelude::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Calico's parser_test.go `selectorTests`: (selector, label sets it matches, sets it does not).
type Case = (
    &'static str,
    &'static [&'static [(&'static str, &'static str)]],
    &'static [&'static [(&'static str, &'static str)]],
);
const CALICO_CASES: &[Case] = &[
    (r#"a == "b""#, &[&[("a", "b")], &[("a", "b"), ("c", "d")]], &[&[], &[("a", "c")], &[("c", "d")]]),
    (
        r#"a == "b" && c == "d""#,
        &[&[("a", "b"), ("c", "d")]],
        &[&[], &[("a", "b"), ("c", "e")], &[("a", "c"), ("c", "d")], &[("c", "d")], &[("a", "b")]],
    ),
    (
        r#"a == "b" || c == "d""#,
        &[&[("a", "b"), ("c", "d")], &[("a", "b")], &[("c", "d")]],
        &[&[], &[("a", "e"), ("c", "e")], &[("c", "e")], &[("a", "e")]],
    ),
    (r#"a in {"'", '"', "c"}"#, &[&[("a", "c")], &[("a", "\"")], &[("a", "'")]], &[&[], &[("a", "e")]]),
    (r#"a not in {"'", '"', "c"}"#, &[&[], &[("a", "e")]], &[&[("a", "c")], &[("a", "\"")], &[("a", "'")]]),
    ("a == 'a'", &[&[("a", "a")]], &[&[("a", "b")], &[]]),
    (r#"a == "a""#, &[&[("a", "a")]], &[]),
    (r#"a != "b""#, &[&[("a", "a")]], &[]),
    (r#"a != "a""#, &[&[]], &[&[("a", "a")]]),
    ("a != 'a'", &[], &[&[("a", "a")]]),
    (
        r#"a contains "a""#,
        &[&[("a", "a")], &[("a", "bab")], &[("a", "aaa"), ("b", "c")]],
        &[&[], &[("a", "b")], &[("b", "aaa")]],
    ),
    (
        r#"a starts with "a""#,
        &[&[("a", "a")], &[("a", "abb")], &[("a", "aaa"), ("b", "c")]],
        &[&[], &[("a", "b")], &[("a", "baa")], &[("b", "aaa")]],
    ),
    (
        r#"a ends with "a""#,
        &[&[("a", "a")], &[("a", "bba")], &[("a", "aaa"), ("b", "c")]],
        &[&[], &[("a", "b")], &[("a", "aab")], &[("b", "aaa")]],
    ),
    (r#"a in {"a"}"#, &[&[("a", "a")]], &[&[("a", "b")]]),
    (r#"!a in {"a"}"#, &[&[("a", "b")]], &[]),
    (r#"a in {"a", "b"}"#, &[&[("a", "a")], &[("a", "b")]], &[&[("a", "c")]]),
    (r#"a not in {"d", "e"}"#, &[&[("a", "a")]], &[]),
    (r#"a not in {"a"}"#, &[], &[&[("a", "a")]]),
    ("has(a)", &[&[("a", "b")]], &[]),
    ("has(b)", &[], &[&[("a", "b")]]),
    ("!has(a)", &[&[("b", "b")]], &[&[("a", "b")]]),
    ("", &[&[], &[("a", "b")]], &[]),
    (" ", &[&[]], &[]),
    ("all()", &[&[]], &[]),
    (" all()", &[&[], &[("a", "b")]], &[]),
    ("global()", &[&[]], &[]),
    (" global()", &[&[], &[("a", "b")]], &[]),
    ("!!has(b)", &[], &[&[("a", "b")]]),
    ("! has(a)", &[], &[&[("a", "b")]]),
    ("!!! has(a)", &[], &[&[("a", "b")]]),
    ("!!!has(a)", &[], &[&[("a", "b")]]),
    ("!! ! has(a)", &[], &[&[("a", "b")]]),
    ("! !!has(a)", &[], &[&[("a", "b")]]),
    ("a == 'a1' && b == 'b1'", &[&[("a", "a1"), ("b", "b1")]], &[]),
    ("a == 'a1' && b != 'b1'", &[], &[&[("a", "a1"), ("b", "b1")]]),
    ("a != 'a1' && b == 'b1'", &[], &[&[("a", "a1"), ("b", "b1")]]),
    ("a != 'a1' && b != 'b1'", &[], &[&[("a", "a1"), ("b", "b1")]]),
    ("a != 'a1' && !b == 'b1'", &[], &[&[("a", "a1"), ("b", "b1")]]),
    ("!a == 'a1' && b == 'b1'", &[], &[&[("a", "a1"), ("b", "b1")]]),
    ("has(a) && !has(b)", &[&[("a", "a")]], &[]),
    ("!has(b) && has(a)", &[&[("a", "a")]], &[]),
    ("!(!has(a) || has(b))", &[&[("a", "a")]], &[]),
    ("!(has(b) || !has(a))", &[&[("a", "a")]], &[]),
    ("a == 'a1' || b == 'b1'", &[&[("a", "a1"), ("b", "b1")]], &[]),
    ("a == 'a1' || b != 'b1'", &[&[("a", "a1"), ("b", "b1")]], &[]),
    ("a != 'a1' || b == 'b1'", &[&[("a", "a1"), ("b", "b1")]], &[]),
    ("a != 'a1' || b != 'b1'", &[], &[&[("a", "a1"), ("b", "b1")]]),
    ("! a == 'a1' || ! b == 'b1'", &[], &[&[("a", "a1"), ("b", "b1")]]),
    // Label keys with DNS prefixes, as Kubernetes and Calico write them.
    (
        "projectcalico.org/namespace == 'kube-system'",
        &[&[("projectcalico.org/namespace", "kube-system")]],
        &[&[("namespace", "kube-system")]],
    ),
    ("has(node-role.kubernetes.io/control-plane)", &[&[("node-role.kubernetes.io/control-plane", "")]], &[&[]]),
];

#[test]
fn calicos_selector_cases_match_and_survive_canonicalisation() {
    for (text, yes, no) in CALICO_CASES {
        let selector = Selector::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let canonical = Selector::parse(&selector.to_string()).unwrap();
        for (sel, form) in [(&selector, "parsed"), (&canonical, "canonical")] {
            for set in *yes {
                assert!(sel.matches(&labels(set)), "{form} {text:?} should match {set:?}");
            }
            for set in *no {
                assert!(!sel.matches(&labels(set)), "{form} {text:?} should not match {set:?}");
            }
        }
    }
}

#[test]
fn calicos_bad_selectors_are_refused() {
    let bad = [
        "b == b",
        "b contains b",
        "b starts with b",
        "b ends with b",
        "'b1' == b",
        "b",
        "a b",
        "!",
        r#"foo == "bar" &"#,
        r#"foo == "bar" |"#,
        "foo != ||",
        r#"foo in {"", ||"#,
        r#"foo in """#,
        r#""FOO"#,
        r#""FOO'"#,
        "'FOO",
        "(",
        r#"(a == "foo""#,
        ")",
        "()",
        "%",
        r#"a == "b" && %"#,
        r#"a == "b" || %"#,
        "a ",
        "has(foo) &&",
        "has (a)",
        "all(x)",
        "a == 'b'\n",
    ];
    for text in bad {
        assert!(Selector::parse(text).is_err(), "{text:?} was accepted");
    }
}

#[test]
fn canonical_form_is_calicos() {
    let cases = [
        ("", "all()"),
        (" all() ", "all()"),
        (" (all() )", "all()"),
        ("! (has( b)||! has(a ))", "!(has(b) || !has(a))"),
        (r#"! (a == "b"&&! c != "d")"#, r#"!(a == "b" && !c != "d")"#),
        (r#"a == "'""#, r#"a == "'""#),
        (r#"a == '"'"#, r#"a == '"'"#),
        (r#"a contains '"'"#, r#"a contains '"'"#),
        (r#"a startswith '"'"#, r#"a starts with '"'"#),
        (r#"a endswith "'""#, r#"a ends with "'""#),
        (r#"a!='"'"#, r#"a != '"'"#),
        (r#"a in {"d", "a", "b"}"#, r#"a in {"a", "b", "d"}"#),
        (r#"a in {"z", "z", "x", "y", "x", "a"}"#, r#"a in {"a", "x", "y", "z"}"#),
        ("a notin {'b',}", r#"a not in {"b"}"#),
        ("k == 'v' && x == 'y'", r#"(k == "v" && x == "y")"#),
        ("!(k == 'v')", r#"!k == "v""#),
        (
            "!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))",
            r#"!(!((k == "v" && has(t)) || all()) && a in {"b", "c"})"#,
        ),
    ];
    for (input, expected) in cases {
        let canonical = Selector::parse(input).unwrap().to_string();
        assert_eq!(canonical, expected, "{input:?}");
        assert_eq!(Selector::parse(&canonical).unwrap().to_string(), canonical);
    }
}

#[test]
fn errors_name_the_column_and_what_was_expected() {
    let cases = [
        ("rack == ", "column 9: expected a quoted string after ==, found the end of the selector"),
        ("rack == r1", "column 9: expected a quoted string after ==, found label r1"),
        ("rack r1", "column 6: expected an operator (==, !=, in, not in, contains, starts with, ends with) after rack"),
        ("a == 'b' &", "column 10: expected &&"),
        ("a = 'b'", "column 3: expected =="),
        ("a == 'b", "column 6: unterminated string: no closing '"),
        ("has(a) has(b)", "column 8: expected &&, || or the end of the selector, found has(b)"),
        ("(has(a)", "column 8: expected ), found the end of the selector"),
        ("a in 'b'", "column 6: expected { after in, found string \"b\""),
        ("a in {'b' 'c'}", "column 11: expected , or }, found string \"c\""),
        ("a in {,}", "column 7: expected a quoted string or }, found ,"),
        ("has(a) && %", "column 11: expected a label, found '%'"),
        ("has()", "column 5: expected a label, found ')'"),
        ("has(a", "column 6: expected ) after has(label, found the end of the selector"),
        ("all(x)", "column 5: expected ) after all(, found 'x'"),
        ("", ""),
        ("é == 'x'", "column 1: expected a label, found 'é'"),
        ("a == 'é' && %", "column 13: expected a label, found '%'"),
        ("()", "column 2: expected a label, has(), all(), global(), ! or (, found )"),
    ];
    for (text, expected) in cases {
        let got = Selector::parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(got, expected, "{text:?}");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let ok = format!("{}all(){}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(Selector::parse(&ok).is_ok());
    let deep = format!("{}all(){}", "(".repeat(100_000), ")".repeat(100_000));
    let err = Selector::parse(&deep).unwrap_err();
    assert_eq!(err.column, MAX_DEPTH + 1);
    let long = "a".repeat(MAX_LABEL_LEN + 1);
    assert!(Selector::parse(&format!("has({long})")).unwrap_err().message.contains("longer than 512"));
}

#[test]
fn global_is_reported_and_matches_like_all() {
    let global = Selector::parse("has(a) || global()").unwrap();
    assert!(global.uses_global() && global.matches(&NoLabels));
    assert!(!Selector::parse("!has(global)").unwrap().uses_global());
}

#[test]
fn check_field_names_field_value_and_column() {
    assert_eq!(
        check_field("nodeSelector", "rack == r1").unwrap_err(),
        "nodeSelector: \"rack == r1\" is not a valid selector: column 9: expected a quoted string after ==, found label r1"
    );
}

#[test]
fn pools_and_bgp_peers_refuse_bad_selectors_naming_field_value_and_column() {
    use crate::datastore::resources::{BgpPeer, IpPool, Resource};
    let mut pool = IpPool::new("10.0.0.0/16".parse().unwrap());
    pool.node_selector = "zone in {'a' 'b'}".into();
    assert_eq!(
        pool.validate().unwrap_err(),
        "nodeSelector: \"zone in {'a' 'b'}\" is not a valid selector: column 14: expected , or }, found string \"b\""
    );
    pool.node_selector = "global()".into();
    assert!(pool.validate().unwrap_err().contains("uses global(), which is not valid in a node selector"));
    pool.node_selector = "zone in {'a', 'b'} && !has(gpu)".into();
    assert_eq!(pool.validate(), Ok(()));

    let peer = |node_selector: &str, peer_selector: &str| BgpPeer {
        node_selector: Some(node_selector.into()),
        peer_selector: Some(peer_selector.into()),
        ..BgpPeer::default()
    };
    assert_eq!(peer("all()", "route-reflector == 'true'").validate(), Ok(()));
    let err = peer("rack = 'r1'", "all()").validate().unwrap_err();
    assert_eq!(err, "nodeSelector: \"rack = 'r1'\" is not a valid selector: column 6: expected ==");
    let err = peer("all()", "has(rr").validate().unwrap_err();
    assert!(err.starts_with("peerSelector: \"has(rr\" is not a valid selector: column 7:"), "{err}");
}

const KEYS: [&str; 4] = ["a", "b", "projectcalico.org/namespace", "x-y_z.9"];
const VALUES: [&str; 6] = ["", "a", "ab", "b'", "\"q", "ba"];

fn key() -> impl Strategy<Value = String> {
    proptest::sample::select(&KEYS[..]).prop_map(str::to_string)
}

fn value() -> impl Strategy<Value = String> {
    proptest::sample::select(&VALUES[..]).prop_map(str::to_string)
}

fn reference() -> impl Strategy<Value = Ref> {
    let op = prop_oneof![Just(Op::Eq), Just(Op::Ne), Just(Op::Contains), Just(Op::StartsWith), Just(Op::EndsWith)];
    let leaf = prop_oneof![
        Just(Ref::All),
        Just(Ref::Global),
        key().prop_map(Ref::Has),
        (op, key(), value()).prop_map(|(op, k, v)| Ref::Cmp(op, k, v)),
        (any::<bool>(), key(), proptest::collection::vec(value(), 0..4)).prop_map(|(i, k, vs)| Ref::Set(i, k, vs)),
    ];
    leaf.prop_recursive(5, 32, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Ref::Not(Box::new(e))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Ref::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| Ref::Or(Box::new(a), Box::new(b))),
        ]
    })
}

fn label_set() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(key(), value(), 0..4)
}

/// Renders `r` with whitespace and spellings drawn from `seed`.
fn render(r: &Ref, seed: u64) -> String {
    let mut state = seed | 1;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut choices = std::iter::repeat_with({
        let mut s = seed.rotate_left(17) | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    });
    let mut ws = move |required: bool| {
        let spaces = [" ", "\t", "  ", ""];
        let r = choices.next().unwrap_or(0) as usize % if required { 3 } else { 4 };
        spaces[r]
    };
    r.render(&mut ws, &mut next)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn evaluator_agrees_with_the_reference_model(r in reference(), seed in any::<u64>(), sets in proptest::collection::vec(label_set(), 1..8)) {
        let text = render(&r, seed);
        let selector = Selector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        let canonical = Selector::parse(&selector.to_string()).map_err(|e| TestCaseError::fail(format!("{selector}: {e}")))?;
        prop_assert_eq!(canonical.to_string(), selector.to_string());
        for labels in &sets {
            prop_assert_eq!(selector.matches(labels), r.eval(labels), "{:?} on {:?}", text, labels);
            prop_assert_eq!(canonical.matches(labels), r.eval(labels), "canonical {} on {:?}", selector, labels);
        }
    }

    #[test]
    fn any_text_parses_or_fails_without_panicking(text in any::<String>()) {
        check_total(&text)?;
    }

    #[test]
    fn selector_like_text_parses_or_fails_without_panicking(text in "[a-c !=&|(){},'\"\\t./-]{0,40}|(has\\(|all\\(|in |not in |starts with |[a-c]+ |== |'[a-c]*' |&& |\\|\\| |!|\\(|\\)|\\{|\\}|, ){0,12}") {
        check_total(&text)?;
    }
}

/// Parsing `text` either fails with a column inside it (or just past its end) or gives a
/// selector whose canonical form parses to the same canonical form.
fn check_total(text: &str) -> Result<(), TestCaseError> {
    match Selector::parse(text) {
        Ok(selector) => {
            let canonical = selector.to_string();
            let again = Selector::parse(&canonical).map_err(|e| TestCaseError::fail(format!("{canonical}: {e}")))?;
            prop_assert_eq!(again.to_string(), canonical);
        }
        Err(e) => prop_assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "{:?}: {}", text, e),
    }
    Ok(())
}
