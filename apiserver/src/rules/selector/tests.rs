#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

const QUALIFIED_NAME_PART: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// Named label sets the valid cases are matched against.
fn label_sets() -> Vec<(&'static str, BTreeMap<String, String>)> {
    let set = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    };
    vec![
        ("none", set(&[])),
        ("web", set(&[("app", "web")])),
        ("db", set(&[("app", "db"), ("tier", "backend")])),
        (
            "web-prod",
            set(&[("app", "web"), ("env", "prod"), ("replicas", "3")]),
        ),
        ("empty-env", set(&[("env", "")])),
    ]
}

/// For a valid selector, its canonical form and what it matches (names of
/// label sets or objects); for an invalid one, the message a user reads.
type Expected<'a, M = &'a str> = Result<(&'a str, &'a [&'a str]), M>;

/// Parses `selector` and compares with `expected`, matching the
/// [`label_sets`].
fn check(name: &str, selector: &str, expected: Expected<'_>) {
    let actual = LabelSelector::parse(selector).map(|selector| {
        let matched: Vec<&str> = label_sets()
            .into_iter()
            .filter(|(_, labels)| {
                let object = json!({"metadata": {"labels": labels}});
                let matches = selector.matches(labels);
                assert_eq!(selector.matches_object(&object), matches, "{name}");
                matches
            })
            .map(|(set, _)| set)
            .collect();
        (selector.to_string(), matched)
    });
    match (actual, expected) {
        (Ok((canonical, matched)), Ok((expected_canonical, expected_matched))) => {
            assert_eq!(canonical, expected_canonical, "{name}: canonical form");
            assert_eq!(matched, expected_matched, "{name}: matched label sets");
        }
        (Err(error), Err(message)) => assert_eq!(error.to_string(), message, "{name}"),
        (actual, expected) => panic!("{name}: got {actual:?}, expected {expected:?}"),
    }
}

#[test]
fn label_selectors() {
    const ALL: &[&str] = &["none", "web", "db", "web-prod", "empty-env"];
    let long_value = "a".repeat(64);
    let long_value_selector = format!("app={long_value}");
    let cases: &[(&str, &str, Expected<String>)] = &[
        // Valid selectors.
        ("empty", "", Ok(("", ALL))),
        ("blank", " \t\r\n", Ok(("", ALL))),
        ("equals", "app=web", Ok(("app=web", &["web", "web-prod"]))),
        ("double equals", "app==web", Ok(("app==web", &["web", "web-prod"]))),
        (
            "not equals matches missing keys",
            "app!=web",
            Ok(("app!=web", &["none", "db", "empty-env"])),
        ),
        (
            "in, values sorted",
            "app in (web,db)",
            Ok(("app in (db,web)", &["web", "db", "web-prod"])),
        ),
        (
            "notin matches missing keys",
            "app notin (web)",
            Ok(("app notin (web)", &["none", "db", "empty-env"])),
        ),
        ("exists", "app", Ok(("app", &["web", "db", "web-prod"]))),
        ("does not exist", "!app", Ok(("!app", &["none", "empty-env"]))),
        (
            "and, sorted by key",
            "tier,app",
            Ok(("app,tier", &["db"])),
        ),
        ("exists and not", "app,!tier", Ok(("app,!tier", &["web", "web-prod"]))),
        (
            "blanks around tokens",
            "  app = web ,\tenv == prod ",
            Ok(("app=web,env==prod", &["web-prod"])),
        ),
        ("no space before in", "app in(web)", Ok(("app in (web)", &["web", "web-prod"]))),
        ("empty value", "env=", Ok(("env=", &["empty-env"]))),
        ("empty value before comma", "env==,app", Ok(("app,env==", &[]))),
        ("empty set is the empty value", "env in ()", Ok(("env in ()", &["empty-env"]))),
        (
            "leading comma is the empty value",
            "env in (,prod)",
            Ok(("env in (,prod)", &["web-prod", "empty-env"])),
        ),
        ("trailing commas", "env in (prod,,)", Ok(("env in (,prod)", &["web-prod", "empty-env"]))),
        ("keywords as values", "app in (in,notin)", Ok(("app in (in,notin)", &[]))),
        ("keyword as key", "in=x", Ok(("in=x", &[]))),
        ("greater than", "replicas>2", Ok(("replicas>2", &["web-prod"]))),
        ("less than", "replicas<3", Ok(("replicas<3", &[]))),
        ("prefixed key", "example.com/app=web", Ok(("example.com/app=web", &[]))),
        ("contradiction", "app=web,app=db", Ok(("app=web,app=db", &[]))),
        ("a NUL byte ends the input", "\0app=web", Ok(("", ALL))),
        // Syntax errors outside requirements.
        (
            "trailing comma",
            "app=web,",
            Err("found '', expected: identifier after ','".into()),
        ),
        (
            "leading comma",
            ",app",
            Err("found ',', expected: !, identifier, or 'end of string'".into()),
        ),
        (
            "operator first",
            "=web",
            Err("found '=', expected: !, identifier, or 'end of string'".into()),
        ),
        (
            "stray parenthesis",
            "app=web)",
            Err("found ')', expected: ',' or 'end of string'".into()),
        ),
        (
            "two values",
            "app=web=db",
            Err("found '=', expected: ',' or 'end of string'".into()),
        ),
        (
            "does not exist takes no value",
            "!app=web",
            Err("found '=', expected: ',' or 'end of string'".into()),
        ),
        // Syntax errors inside a requirement.
        (
            "no operator",
            "app web",
            Err("unable to parse requirement: found 'web', expected: in, notin, =, ==, !=, gt, lt".into()),
        ),
        (
            "gt is not a keyword",
            "replicas gt 2",
            Err("unable to parse requirement: found 'gt', expected: in, notin, =, ==, !=, gt, lt".into()),
        ),
        (
            "bare not",
            "!",
            Err("unable to parse requirement: found '', expected: identifier".into()),
        ),
        (
            "double not",
            "!!app",
            Err("unable to parse requirement: found '!', expected: identifier".into()),
        ),
        (
            "operator as value",
            "app=(",
            Err("unable to parse requirement: found '(', expected: identifier".into()),
        ),
        (
            "in without parentheses",
            "app in web",
            Err("unable to parse requirement: found 'web' expected: '('".into()),
        ),
        (
            "in at the end",
            "app in",
            Err("unable to parse requirement: found '' expected: '('".into()),
        ),
        (
            "unclosed set",
            "app in (web",
            Err("unable to parse requirement: found '', expected: ',' or ')'".into()),
        ),
        (
            "two values without comma",
            "app in (web db)",
            Err("unable to parse requirement: found 'db', expected: ',' or ')'".into()),
        ),
        (
            "operator opening a set",
            "app in (=)",
            Err("unable to parse requirement: found '=', expected: ',', ')' or identifier".into()),
        ),
        (
            "operator inside a set",
            "app in (web,=)",
            Err("unable to parse requirement: found '=', expected: ',', or identifier".into()),
        ),
        // Invalid keys and values.
        (
            "bad key",
            "-app=web",
            Err(format!(
                    "unable to parse requirement: <nil>: Invalid value: \"-app\": {QUALIFIED_NAME_PART}"
                )),
        ),
        (
            "empty key prefix",
            "/app",
            Err("unable to parse requirement: <nil>: Invalid value: \"/app\": prefix part must be non-empty".into()),
        ),
        (
            "bad value",
            "app=-web",
            Err(format!(
                    "unable to parse requirement: values[0][app]: Invalid value: \"-web\": {LABEL_VALUE}"
                )),
        ),
        (
            "long value",
            &long_value_selector,
            Err(format!(
                    "unable to parse requirement: values[0][app]: Invalid value: \"{long_value}\": must be no more than 63 characters"
                )),
        ),
        (
            "two bad values, indexed in sorted order",
            "app in (web_, -db)",
            Err(format!(
                    "unable to parse requirement: [values[0][app]: Invalid value: \"-db\": {LABEL_VALUE}, values[1][app]: Invalid value: \"web_\": {LABEL_VALUE}]"
                )),
        ),
        (
            "comparison with a word",
            "replicas>many",
            Err("unable to parse requirement: values[0]: Invalid value: \"many\": for 'Gt', 'Lt' operators, the value must be an integer".into()),
        ),
        (
            "comparison with nothing",
            "replicas<",
            Err("unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, the value must be an integer".into()),
        ),
    ];
    for (name, selector, expected) in cases {
        check(
            name,
            selector,
            expected.as_ref().map(|ok| *ok).map_err(String::as_str),
        );
    }
}

#[test]
fn label_selector_exact_values() {
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        (
            "equals",
            "nmstate.io/node=node01",
            "nmstate.io/node",
            Some("node01"),
        ),
        (
            "double equals",
            "a,nmstate.io/node==node01",
            "nmstate.io/node",
            Some("node01"),
        ),
        (
            "in of one",
            "nmstate.io/node in (node01)",
            "nmstate.io/node",
            Some("node01"),
        ),
        (
            "in of two",
            "nmstate.io/node in (node01,node02)",
            "nmstate.io/node",
            None,
        ),
        (
            "not equals",
            "nmstate.io/node!=node01",
            "nmstate.io/node",
            None,
        ),
        (
            "pinned by any requirement",
            "nmstate.io/node!=node02,nmstate.io/node=node01",
            "nmstate.io/node",
            Some("node01"),
        ),
        ("exists", "nmstate.io/node", "nmstate.io/node", None),
        (
            "other key",
            "nmstate.io/policy=br1",
            "nmstate.io/node",
            None,
        ),
        ("empty", "", "nmstate.io/node", None),
    ];
    for (name, selector, key, expected) in cases {
        let selector = LabelSelector::parse(selector).unwrap();
        assert_eq!(selector.exact_value(key), *expected, "{name}");
    }
}

#[test]
fn label_selector_ignores_non_string_labels() {
    let selector = LabelSelector::parse("!replicas").unwrap();
    assert!(selector.matches_object(&json!({"metadata": {"labels": {"replicas": 3}}})));
    assert!(selector.matches_object(&json!({"metadata": {}})));
    assert!(selector.matches_object(&json!(null)));
    assert!(LabelSelector::default().is_empty());
    assert!(!selector.is_empty());
}

fn enactment(node: &str, policy: &str) -> Value {
    json!({
        "apiVersion": "nmstate.io/v1beta1",
        "kind": "NodeNetworkConfigurationEnactment",
        "metadata": {
            "name": format!("{node}.{policy}"),
            "labels": {"nmstate.io/node": node, "nmstate.io/policy": policy},
        },
    })
}

/// Like [`check`], for field selectors on enactments (or another kind).
fn check_field(name: &str, kind: ResourceKind, selector: &str, expected: Expected<'_>) {
    let objects = [
        enactment("node01", "br1"),
        enactment("node02", "br1"),
        enactment("node01", "bond0"),
        json!({"metadata": {}}),
    ];
    let actual = FieldSelector::parse(selector, kind).map(|selector| {
        let matched: Vec<&str> = objects
            .iter()
            .filter(|object| selector.matches_object(object))
            .map(|object| object["metadata"]["name"].as_str().unwrap_or("<unnamed>"))
            .collect();
        (selector.to_string(), matched)
    });
    match (actual, expected) {
        (Ok((canonical, matched)), Ok((expected_canonical, expected_matched))) => {
            assert_eq!(canonical, expected_canonical, "{name}: canonical form");
            assert_eq!(matched, expected_matched, "{name}: matched objects");
        }
        (Err(error), Err(message)) => assert_eq!(error.to_string(), message, "{name}"),
        (actual, expected) => panic!("{name}: got {actual:?}, expected {expected:?}"),
    }
}

#[test]
fn field_selectors() {
    use ResourceKind::{
        NodeNetworkConfigurationEnactment as Nnce, NodeNetworkConfigurationPolicy as Nncp,
    };
    const ALL: &[&str] = &["node01.br1", "node02.br1", "node01.bond0", "<unnamed>"];
    let cases: &[(&str, ResourceKind, &str, Expected)] = &[
        ("empty", Nnce, "", Ok(("", ALL))),
        ("only commas", Nnce, ",,", Ok(("", ALL))),
        (
            "name",
            Nnce,
            "metadata.name=node01.br1",
            Ok(("metadata.name=node01.br1", &["node01.br1"])),
        ),
        (
            "double equals",
            Nncp,
            "metadata.name==node01.br1",
            Ok(("metadata.name=node01.br1", &["node01.br1"])),
        ),
        (
            "not equals",
            Nnce,
            "metadata.name!=node01.br1",
            Ok((
                "metadata.name!=node01.br1",
                &["node02.br1", "node01.bond0", "<unnamed>"],
            )),
        ),
        (
            "namespace is always empty",
            Nncp,
            "metadata.namespace=",
            Ok(("metadata.namespace=", ALL)),
        ),
        (
            "no object in a namespace",
            Nncp,
            "metadata.namespace=default",
            Ok(("metadata.namespace=default", &[])),
        ),
        (
            "node label",
            Nnce,
            "node=node01",
            Ok(("node=node01", &["node01.br1", "node01.bond0"])),
        ),
        (
            "and, sorted",
            Nnce,
            "policy=br1,node=node01",
            Ok(("node=node01,policy=br1", &["node01.br1"])),
        ),
        (
            "policy label, not equals",
            Nnce,
            "policy!=br1",
            Ok(("policy!=br1", &["node01.bond0", "<unnamed>"])),
        ),
        (
            "empty terms skipped",
            Nnce,
            ",node=node02,",
            Ok(("node=node02", &["node02.br1"])),
        ),
        (
            "escaped value",
            Nnce,
            r"metadata.name=a\,b\=c\\d",
            Ok((r"metadata.name=a\,b\=c\\d", &[])),
        ),
        // Errors.
        (
            "no operator",
            Nnce,
            "node",
            Err("invalid selector: 'node'; can't understand 'node'"),
        ),
        (
            "syntax before field names",
            Nnce,
            "aaa=1,zzz",
            Err("invalid selector: 'aaa=1,zzz'; can't understand 'zzz'"),
        ),
        (
            "unknown field",
            Nnce,
            "spec.foo=x",
            Err("field label not supported: spec.foo"),
        ),
        (
            "enactment field on a policy",
            Nncp,
            "node=node01",
            Err("field label not supported: node"),
        ),
        (
            "field names are not trimmed",
            Nnce,
            " metadata.name=x",
            Err("field label not supported:  metadata.name"),
        ),
        (
            "unknown escape",
            Nnce,
            r"metadata.name=a\x",
            Err(r"invalid field selector: invalid escape sequence: \x"),
        ),
        (
            "trailing backslash",
            Nnce,
            r"metadata.name=a\",
            Err(r"invalid field selector: invalid escape sequence: \"),
        ),
        (
            "unescaped equals",
            Nnce,
            "metadata.name=a=b",
            Err("invalid field selector: unescaped character in value: 61"),
        ),
    ];
    for (name, kind, selector, expected) in cases {
        check_field(name, *kind, selector, *expected);
    }
}

#[test]
fn field_selector_exact_values() {
    let kind = ResourceKind::NodeNetworkConfigurationEnactment;
    let selector = FieldSelector::parse("node=node01,policy!=br1,metadata.name==x", kind).unwrap();
    assert_eq!(selector.exact_value("node"), Some("node01"));
    assert_eq!(selector.exact_value("policy"), None);
    assert_eq!(selector.exact_value("metadata.name"), Some("x"));
    assert_eq!(selector.exact_value("metadata.namespace"), None);
    assert!(!selector.is_empty());
    assert!(FieldSelector::parse("", kind).unwrap().is_empty());
    assert_eq!(
        FieldSelector::supported_fields(kind),
        ["metadata.name", "metadata.namespace", "node", "policy"]
    );
    assert_eq!(
        FieldSelector::supported_fields(ResourceKind::NodeNetworkState),
        ["metadata.name", "metadata.namespace"]
    );
}
