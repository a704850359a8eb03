//! Tests of every validation rule, asserting the full message a user reads.
//! Each group goes through one `check` helper with a named case per row.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use super::*;
use crate::{
    NodeNetworkConfigurationEnactment, NodeNetworkConfigurationPolicy, NodeNetworkState, Resource,
};

const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const NAME_PART: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const PERCENT: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

/// Compares the messages of `errors` with `expected`, row by row.
fn assert_messages(case: &str, errors: &[FieldError], expected: &[String]) {
    let actual: Vec<String> = errors.iter().map(FieldError::to_string).collect();
    assert_eq!(actual, expected, "case {case:?}");
}

fn owned(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|line| (*line).to_owned()).collect()
}

/// A policy named `p` with the spec in `spec_yaml`.
fn policy(spec_yaml: &str) -> NodeNetworkConfigurationPolicy {
    let spec = serde_yaml::from_str(spec_yaml).unwrap();
    NodeNetworkConfigurationPolicy::new("p", spec)
}

mod field_errors {
    use super::*;

    fn check(case: &str, error: FieldError, expected: &str) {
        assert_eq!(error.to_string(), expected, "case {case:?}");
    }

    #[test]
    fn display_matches_kubernetes() {
        let cases = [
            (
                "invalid string",
                FieldError::invalid("metadata.name", "Foo", "bad"),
                r#"metadata.name: Invalid value: "Foo": bad"#,
            ),
            (
                "invalid number",
                FieldError::invalid("spec.x", -1_i64, "bad"),
                "spec.x: Invalid value: -1: bad",
            ),
            (
                "go quoting",
                FieldError::invalid("a", "q\"\\\n\t\u{1}\u{7f}é", "m"),
                r#"a: Invalid value: "q\"\\\n\t\x01\x7fé": m"#,
            ),
            (
                "invalid without value",
                FieldError::new(FieldErrorKind::Invalid, "a", None, "m"),
                "a: Invalid value: m",
            ),
            (
                "required",
                FieldError::required("a", "m"),
                "a: Required value: m",
            ),
            (
                "required without message",
                FieldError::required("a", ""),
                "a: Required value",
            ),
            (
                "forbidden",
                FieldError::forbidden("a", "m"),
                "a: Forbidden: m",
            ),
            (
                "duplicate",
                FieldError::duplicate("a", "x"),
                r#"a: Duplicate value: "x""#,
            ),
            (
                "not supported",
                FieldError::not_supported("a", "x", &["y", "z"]),
                r#"a: Unsupported value: "x": supported values: "y", "z""#,
            ),
            (
                "too long hides the value",
                FieldError::too_long("a", 3),
                "a: Too long: must have at most 3 bytes",
            ),
            (
                "too many",
                FieldError::too_many("a", 5, 3),
                "a: Too many: 5: must have at most 3 items",
            ),
            (
                "not found",
                FieldError::new(FieldErrorKind::NotFound, "a", Some("x".into()), ""),
                r#"a: Not found: "x""#,
            ),
            (
                "internal hides the value",
                FieldError::new(FieldErrorKind::Internal, "a", Some("x".into()), "m"),
                "a: Internal error: m",
            ),
            (
                "type invalid",
                FieldError::new(
                    FieldErrorKind::TypeInvalid,
                    "a",
                    Some(BadValue::Raw("true".into())),
                    "m",
                ),
                "a: Invalid value: true: m",
            ),
            (
                "no path",
                FieldError::new(FieldErrorKind::Invalid, "", None, "m"),
                "Invalid value: m",
            ),
        ];
        for (case, error, expected) in cases {
            check(case, error, expected);
        }
        assert_eq!(FieldErrorKind::Invalid.cause_type(), "FieldValueInvalid");
        assert_eq!(
            FieldErrorKind::TypeInvalid.cause_type(),
            "FieldValueTypeInvalid"
        );
        assert_eq!(
            FieldError::invalid("a", "x", "m").body(),
            r#"Invalid value: "x": m"#
        );
    }

    #[test]
    fn invalid_status_message() {
        let kind = ResourceKind::NodeNetworkConfigurationPolicy;
        let one = FieldError::invalid("metadata.name", "Foo", "bad");
        let two = FieldError::required("spec.x", "");
        let cases: [(&str, Vec<FieldError>, &str); 4] = [
            (
                "no error",
                vec![],
                r#"NodeNetworkConfigurationPolicy.nmstate.io "Foo" is invalid"#,
            ),
            (
                "one error",
                vec![one.clone()],
                r#"NodeNetworkConfigurationPolicy.nmstate.io "Foo" is invalid: metadata.name: Invalid value: "Foo": bad"#,
            ),
            (
                "several errors",
                vec![one.clone(), two.clone()],
                r#"NodeNetworkConfigurationPolicy.nmstate.io "Foo" is invalid: [metadata.name: Invalid value: "Foo": bad, spec.x: Required value]"#,
            ),
            (
                "duplicates dropped",
                vec![one.clone(), one, two],
                r#"NodeNetworkConfigurationPolicy.nmstate.io "Foo" is invalid: [metadata.name: Invalid value: "Foo": bad, spec.x: Required value]"#,
            ),
        ];
        for (case, errors, expected) in cases {
            assert_eq!(
                invalid_message(kind, "Foo", &errors),
                expected,
                "case {case:?}"
            );
        }
    }
}

mod object_names {
    use super::*;

    fn check(case: &str, kind: ResourceKind, name: &str, expected: &[String]) {
        assert_messages(case, &validate_object_name(kind, name), expected);
    }

    #[test]
    fn names() {
        use ResourceKind::{
            NodeNetworkConfigurationEnactment as Nnce, NodeNetworkConfigurationPolicy as Nncp,
            NodeNetworkState as Nns,
        };
        let a253 = "a".repeat(253);
        let a254 = "a".repeat(254);
        let a63 = "a".repeat(63);
        let a64 = "a".repeat(64);
        let a63_ = format!("{a63}_");
        let upstream_too_long = "this-is-longer-than-sixty-three-characters-hostnames-bar-bar.com";
        let cases: Vec<(&str, ResourceKind, &str, Vec<String>)> = vec![
            ("node name", Nns, "node01.example.com", vec![]),
            ("policy name", Nncp, "br1-eth1", vec![]),
            ("enactment name", Nnce, "node01.br1-eth1", vec![]),
            ("253 characters", Nnce, &a253, vec![]),
            ("63-character policy", Nncp, &a63, vec![]),
            (
                "empty",
                Nns,
                "",
                owned(&["metadata.name: Required value: name or generateName is required"]),
            ),
            (
                "upper case",
                Nns,
                "Foo",
                vec![format!(
                    r#"metadata.name: Invalid value: "Foo": {SUBDOMAIN}"#
                )],
            ),
            (
                "underscore",
                Nnce,
                "a_b",
                vec![format!(
                    r#"metadata.name: Invalid value: "a_b": {SUBDOMAIN}"#
                )],
            ),
            (
                "254 characters",
                Nns,
                &a254,
                vec![format!(
                    r#"metadata.name: Invalid value: "{a254}": must be no more than 253 characters"#
                )],
            ),
            (
                "64-character policy",
                Nncp,
                &a64,
                vec![format!(
                    r#"metadata.name: Invalid value: "{a64}": must be no more than 63 characters"#
                )],
            ),
            (
                "upstream e2e too-long policy name",
                Nncp,
                upstream_too_long,
                vec![format!(
                    r#"metadata.name: Invalid value: "{upstream_too_long}": must be no more than 63 characters"#
                )],
            ),
            (
                "policy both too long and malformed",
                Nncp,
                &a63_,
                vec![
                    format!(
                        r#"metadata.name: Invalid value: "{a63}_": must be no more than 63 characters"#
                    ),
                    format!(r#"metadata.name: Invalid value: "{a63}_": {SUBDOMAIN}"#),
                ],
            ),
        ];
        for (case, kind, name, expected) in cases {
            check(case, kind, name, &expected);
        }
    }
}

mod object_meta {
    use super::*;

    fn check(case: &str, kind: ResourceKind, metadata_yaml: &str, expected: &[String]) {
        let metadata: ObjectMeta = serde_yaml::from_str(metadata_yaml).unwrap();
        assert_messages(case, &validate_object_meta(kind, &metadata), expected);
    }

    #[test]
    fn metadata() {
        let kind = ResourceKind::NodeNetworkState;
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let cases: Vec<(&str, String, Vec<String>)> = vec![
            (
                "valid",
                "name: node01\nlabels: {kubernetes.io/hostname: node01, empty: ''}\nannotations: {Example.com/Key: x}".into(),
                vec![],
            ),
            ("no name", "labels: {a: b}".into(), owned(&["metadata.name: Required value: name or generateName is required"])),
            ("namespace", "name: n\nnamespace: default".into(), owned(&["metadata.namespace: Forbidden: not allowed on this type"])),
            ("empty namespace", "name: n\nnamespace: ''".into(), vec![]),
            ("generate name", "name: n\ngenerateName: node-".into(), vec![]),
            (
                "bad generate name",
                "name: n\ngenerateName: Node-".into(),
                vec![format!(r#"metadata.generateName: Invalid value: "Node-": {SUBDOMAIN}"#)],
            ),
            (
                "bad label key and value",
                "name: n\nlabels: {'bad key': 'b a d'}".into(),
                vec![
                    format!(r#"metadata.labels: Invalid value: "bad key": {NAME_PART}"#),
                    format!(r#"metadata.labels: Invalid value: "b a d": {LABEL_VALUE}"#),
                ],
            ),
            (
                "bad annotation key",
                "name: n\nannotations: {'a/b/c': x}".into(),
                vec![format!(
                    r#"metadata.annotations: Invalid value: "a/b/c": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"#
                )],
            ),
            (
                "annotations too big",
                format!("name: n\nannotations: {{k: {big}}}"),
                owned(&["metadata.annotations: Too long: must have at most 262144 bytes"]),
            ),
        ];
        for (case, yaml, expected) in cases {
            check(case, kind, &yaml, &expected);
        }
    }
}

mod node_selector {
    use super::*;

    fn check(case: &str, spec_yaml: &str, expected: &[String]) {
        assert_messages(case, &validate_policy(&policy(spec_yaml)), expected);
    }

    #[test]
    fn node_selector() {
        let long_value = "v".repeat(64);
        let too_many: String = (0..=MAX_NODE_SELECTOR_ENTRIES)
            .map(|i| format!("k{i}: v\n  "))
            .collect();
        let cases: Vec<(&str, String, Vec<String>)> = vec![
            (
                "upstream selectors",
                "nodeSelector:\n  kubernetes.io/hostname: node02\n  node-role.kubernetes.io/worker: ''".into(),
                vec![],
            ),
            (
                "key with a space",
                "nodeSelector: {'foo bar': x}".into(),
                vec![format!(r#"spec.nodeSelector[foo bar]: Invalid value: "foo bar": {NAME_PART}"#)],
            ),
            (
                "key with a bad prefix",
                "nodeSelector: {Example.com/x: y}".into(),
                vec![format!(
                    r#"spec.nodeSelector[Example.com/x]: Invalid value: "Example.com/x": prefix part {SUBDOMAIN}"#
                )],
            ),
            (
                "key with an empty prefix",
                "nodeSelector: {/x: y}".into(),
                owned(&[r#"spec.nodeSelector[/x]: Invalid value: "/x": prefix part must be non-empty"#]),
            ),
            (
                "value with spaces",
                "nodeSelector: {foo: 'b a d'}".into(),
                vec![format!(r#"spec.nodeSelector[foo]: Invalid value: "b a d": {LABEL_VALUE}"#)],
            ),
            (
                "value too long",
                format!("nodeSelector: {{foo: {long_value}}}"),
                vec![format!(
                    r#"spec.nodeSelector[foo]: Invalid value: "{long_value}": must be no more than 63 characters"#
                )],
            ),
            (
                "too many entries",
                format!("nodeSelector:\n  {too_many}"),
                owned(&["spec.nodeSelector: Too many: 257: must have at most 256 items"]),
            ),
        ];
        for (case, yaml, expected) in cases {
            check(case, &yaml, &expected);
        }
    }
}

mod max_unavailable {
    use super::*;

    fn check(case: &str, value: &str, expected: &[String]) {
        assert_messages(
            case,
            &validate_policy(&policy(&format!("maxUnavailable: {value}"))),
            expected,
        );
    }

    #[test]
    fn max_unavailable() {
        let cases: Vec<(&str, &str, Vec<String>)> = vec![
            ("count", "3", vec![]),
            ("zero", "0", vec![]),
            ("percent", "'25%'", vec![]),
            ("zero percent", "'0%'", vec![]),
            ("above one hundred percent", "'150%'", vec![]),
            (
                "negative",
                "-1",
                owned(&[
                    "spec.maxUnavailable: Invalid value: -1: must be greater than or equal to 0",
                ]),
            ),
            (
                "number as string",
                "'50'",
                vec![format!(
                    r#"spec.maxUnavailable: Invalid value: "50": {PERCENT}"#
                )],
            ),
            (
                "negative percent",
                "'-10%'",
                vec![format!(
                    r#"spec.maxUnavailable: Invalid value: "-10%": {PERCENT}"#
                )],
            ),
            (
                "word",
                "all",
                vec![format!(
                    r#"spec.maxUnavailable: Invalid value: "all": {PERCENT}"#
                )],
            ),
        ];
        for (case, value, expected) in cases {
            check(case, value, &expected);
        }
    }
}

mod captures {
    use super::*;

    fn check(case: &str, capture_yaml: &str, expected: &[&str]) {
        let spec = format!("capture:\n{capture_yaml}");
        assert_messages(case, &validate_policy(&policy(&spec)), &owned(expected));
    }

    #[test]
    fn captures() {
        let cases: [(&str, &str, &[&str]); 12] = [
            (
                "upstream lldp captures, unsorted",
                "  ethernets: interfaces.type==\"ethernet\"\n  ethernets-lldp: capture.ethernets-up | interfaces.lldp.enabled:=true\n  ethernets-up: capture.ethernets | interfaces.state==\"up\"",
                &[],
            ),
            (
                "capture reference on the value side",
                "  gw: routes.running.destination==\"0.0.0.0/0\"\n  base: interfaces.name==capture.gw.routes.running.0.next-hop-interface",
                &[],
            ),
            (
                "quoted text is not a reference",
                "  d: interfaces.description==\"capture.x.y\"",
                &[],
            ),
            (
                "single equal",
                "  a: interfaces.type=\"ethernet\"",
                &[
                    "spec.capture[a]: Invalid value: \"interfaces.type=\\\"ethernet\\\"\": PolicyError: Invalid equal action string after =, expecting another '='\n| interfaces.type=\"ethernet\"\n| ................^",
                ],
            ),
            (
                "pipe from a non-capture",
                "  a: interfaces | routes.running.destination==\"0.0.0.0/0\"",
                &[
                    "spec.capture[a]: Invalid value: \"interfaces | routes.running.destination==\\\"0.0.0.0/0\\\"\": PolicyError: The pipe action should always in format of 'capture.<capture_name>'\n| interfaces | routes.running.destination==\"0.0.0.0/0\"\n| ^",
                ],
            ),
            (
                "no ending quote",
                "  a: interfaces.name==\"eth1",
                &[
                    "spec.capture[a]: Invalid value: \"interfaces.name==\\\"eth1\": PolicyError: No ending double quote\n| interfaces.name==\"eth1\n| .................^",
                ],
            ),
            (
                "undefined capture in a pipe",
                "  b: capture.nope | interfaces.state==\"up\"",
                &[
                    "spec.capture[b]: Invalid value: \"capture.nope | interfaces.state==\\\"up\\\"\": PolicyError: Capture nope not found\n| capture.nope | interfaces.state==\"up\"\n| ........^",
                ],
            ),
            (
                "undefined capture on the value side",
                "  b: routes.running.next-hop-interface==capture.default-gw.routes",
                &[
                    "spec.capture[b]: Invalid value: \"routes.running.next-hop-interface==capture.default-gw.routes\": PolicyError: Capture default-gw not found\n| routes.running.next-hop-interface==capture.default-gw.routes\n| ...........................................^",
                ],
            ),
            (
                "cycle",
                "  a: capture.b | interfaces.state==\"up\"\n  b: capture.c | interfaces.state==\"up\"\n  c: capture.a | interfaces.state==\"up\"\n  d: capture.a | interfaces.state==\"up\"",
                &[
                    "spec.capture[a]: Invalid value: \"capture.b | interfaces.state==\\\"up\\\"\": capture dependency cycle: a -> b -> c -> a",
                ],
            ),
            (
                "self reference",
                "  a: capture.a.interfaces",
                &[
                    "spec.capture[a]: Invalid value: \"capture.a.interfaces\": capture dependency cycle: a -> a",
                ],
            ),
            (
                "empty name",
                "  '': interfaces",
                &["spec.capture[]: Required value: capture name must not be empty"],
            ),
            (
                "name that cannot be referred to",
                "  a.b: interfaces",
                &[
                    "spec.capture[a.b]: Invalid value: \"a.b\": a capture name must not contain whitespace or any of '.', '|', '=', '!', ':', '\"', '{', '}'",
                ],
            ),
        ];
        for (case, yaml, expected) in cases {
            check(case, yaml, expected);
        }
    }

    #[test]
    fn references() {
        type Case = (&'static str, &'static str, Vec<(&'static str, usize)>);
        let cases: [Case; 5] = [
            ("none", "interfaces.type==\"ethernet\"", vec![]),
            (
                "pipe",
                "capture.a | interfaces.state==\"up\"",
                vec![("a", 8)],
            ),
            (
                "both sides",
                "capture.a.x == capture.b.y",
                vec![("a", 8), ("b", 23)],
            ),
            ("trimmed", "  \u{a0}capture.a.x", vec![("a", 8)]),
            ("quoted", "interfaces.name == \"capture.a.x\"", vec![]),
        ];
        for (case, expression, expected) in cases {
            let expected: Vec<(String, usize)> = expected
                .into_iter()
                .map(|(n, p)| (n.to_owned(), p))
                .collect();
            assert_eq!(capture_references(expression), expected, "case {case:?}");
        }
    }
}

mod desired_state {
    use super::*;

    fn check(case: &str, state_yaml: &str, expected: &[&str]) {
        let spec = format!("desiredState:\n{}", indent(state_yaml));
        assert_messages(case, &validate_policy(&policy(&spec)), &owned(expected));
    }

    fn indent(yaml: &str) -> String {
        yaml.lines().map(|line| format!("  {line}\n")).collect()
    }

    #[test]
    fn typed_against_nmstate() {
        let cases: [(&str, &str, &[&str]); 16] = [
            ("empty", "{}", &[]),
            (
                "not an object",
                "foo",
                &[r#"spec.desiredState: Invalid value: "foo": must be an object"#],
            ),
            (
                "a list",
                "[]",
                &["spec.desiredState: Invalid value: must be an object"],
            ),
            (
                "unknown top-level fields",
                "interfacesx: []\nfoo: 1",
                &[
                    "spec.desiredState.interfacesx: Invalid value: unknown field `interfacesx`, expected one of `description`, `hostname`, `dns-resolver`, `route-rules`, `routes`, `interfaces`, `ovs-db`, `ovn`",
                    "spec.desiredState.foo: Invalid value: unknown field `foo`, expected one of `description`, `hostname`, `dns-resolver`, `route-rules`, `routes`, `interfaces`, `ovs-db`, `ovn`",
                ],
            ),
            (
                "interfaces not a list",
                "interfaces: 3",
                &[
                    "spec.desiredState.interfaces: Invalid value: 3: invalid type: integer `3`, expected a sequence",
                ],
            ),
            (
                "interface not a map",
                "interfaces: [3]",
                &[
                    "spec.desiredState.interfaces[0]: Invalid value: 3: invalid type: integer `3`, expected a map",
                ],
            ),
            (
                "mtu not a number",
                "interfaces:\n- name: eth1\n  type: ethernet\n  mtu: abc",
                &[
                    r#"spec.desiredState.interfaces[0].mtu: Invalid value: "abc": invalid digit found in string"#,
                ],
            ),
            (
                "unknown interface field",
                "interfaces:\n- name: eth1\n  type: ethernet\n  mtux: 1500",
                &["spec.desiredState.interfaces[0].mtux: Invalid value: unknown field `mtux`"],
            ),
            (
                "unknown field inside an interface section",
                "interfaces:\n- name: br1\n  type: linux-bridge\n  bridge:\n    port:\n    - name: eth1\n      vlanx: 1",
                &[
                    "spec.desiredState.interfaces[0].bridge.port[0].vlanx: Invalid value: unknown field `vlanx`, expected one of `name`, `stp-hairpin-mode`, `stp-path-cost`, `stp-priority`, `vlan`",
                ],
            ),
            (
                "unknown state",
                "interfaces:\n- name: eth1\n  type: ethernet\n  state: upx",
                &[
                    r#"spec.desiredState.interfaces[0].state: Invalid value: "upx": unknown variant `upx`, expected one of `up`, `down`, `absent`, `unknown`, `ignore`"#,
                ],
            ),
            (
                "unknown bond mode",
                "interfaces:\n- name: bond0\n  type: bond\n  link-aggregation:\n    mode: foo",
                &[
                    r#"spec.desiredState.interfaces[0].link-aggregation.mode: Invalid value: "foo": unknown variant `foo`, expected one of `0`, `balance-rr`, `1`, `active-backup`, `2`, `balance-xor`, `3`, `broadcast`, `4`, `802.3ad`, `lacp`, `5`, `balance-tlb`, `6`, `balance-alb`, `unknown`"#,
                ],
            ),
            (
                "missing vlan id",
                "interfaces:\n- name: eth1.5\n  type: vlan\n  vlan:\n    base-iface: eth1",
                &["spec.desiredState.interfaces[0].vlan: Invalid value: missing field `id`"],
            ),
            (
                "missing interface name",
                "interfaces:\n- type: ethernet",
                &["spec.desiredState.interfaces[0]: Invalid value: missing field `name`"],
            ),
            (
                "bad IP address",
                "interfaces:\n- name: eth1\n  type: ethernet\n  ipv4:\n    enabled: true\n    address:\n    - ip: 192.0.2.400\n      prefix-length: 24",
                &[
                    "spec.desiredState.interfaces[0].ipv4.address[0]: Invalid value: invalid IP address syntax",
                ],
            ),
            (
                "wrong type in dns",
                "dns-resolver:\n  config:\n    server: 1",
                &[
                    "spec.desiredState.dns-resolver.config.server: Invalid value: 1: invalid type: integer `1`, expected a sequence",
                ],
            ),
            (
                "every problem is reported",
                "interfaces:\n- name: eth1\n  type: ethernet\n  mtu: abc\n  ipv4:\n    dhcpx: true\n- name: eth2\n  type: ethernet\n  ethernet:\n    speed: x\nroutes:\n  config:\n  - destination: 198.51.100.0/24\n    metricx: 1",
                &[
                    r#"spec.desiredState.interfaces[0].mtu: Invalid value: "abc": invalid digit found in string"#,
                    "spec.desiredState.interfaces[0].ipv4.dhcpx: Invalid value: unknown field `dhcpx`, expected one of `enabled`, `dhcp`, `autoconf`, `dhcp-client-id`, `dhcp-duid`, `address`, `auto-dns`, `auto-gateway`, `auto-routes`, `auto-route-table-id`, `auto-route-metric`, `addr-gen-mode`, `allow-extra-address`, `token`, `dhcp-send-hostname`, `dhcp-custom-hostname`, `forwarding`, `prefix-route-metric`",
                    r#"spec.desiredState.interfaces[1].ethernet.speed: Invalid value: "x": invalid digit found in string"#,
                    "spec.desiredState.routes.config[0].metricx: Invalid value: unknown field `metricx`, expected one of `state`, `destination`, `next-hop-interface`, `next-hop-address`, `metric`, `table-id`, `weight`, `route-type`, `cwnd`, `source`, `initcwnd`, `initrwnd`, `mtu`, `quickack`, `advmss`, `lock-mtu`, `vrf-name`",
                ],
            ),
        ];
        for (case, yaml, expected) in cases {
            check(case, yaml, expected);
        }
    }

    #[test]
    fn templates() {
        let capture = "capture:\n  gw: routes.running.destination==\"0.0.0.0/0\"\n  base: interfaces.name==capture.gw.routes.running.0.next-hop-interface\n";
        let check_templated = |case: &str, state_yaml: &str, expected: &[&str]| {
            let spec = format!("{capture}desiredState:\n{}", indent(state_yaml));
            assert_messages(case, &validate_policy(&policy(&spec)), &owned(expected));
        };
        let cases: [(&str, &str, &[&str]); 13] = [
            (
                "whole section",
                "interfaces: \"{{ capture.base.interfaces }}\"",
                &[],
            ),
            (
                "fields, with prefix and suffix",
                "interfaces:\n- name: br1\n  type: linux-bridge\n  mac-address: \"{{ capture.base.interfaces.0.mac-address }}\"\n  bridge:\n    port:\n    - name: \"{{ capture.base.interfaces.0.name }}\"\n- name: \"{{ capture.base.interfaces.0.name }}.100\"\n  type: vlan\n  vlan:\n    id: 100\n    base-iface: \"{{ capture.base.interfaces.0.name }}\"",
                &[],
            ),
            (
                "template where a number belongs",
                "interfaces:\n- name: eth1.5\n  type: vlan\n  vlan:\n    id: \"{{ capture.base.interfaces.0.mtu }}\"\n    base-iface: eth1",
                &[],
            ),
            (
                "undefined capture",
                "interfaces: \"{{ capture.nope.interfaces }}\"",
                &[
                    "spec.desiredState.interfaces: Invalid value: \"{{ capture.nope.interfaces }}\": PolicyError: Failed to find capture nope\n| {{ capture.nope.interfaces }}\n| ...........^",
                ],
            ),
            (
                "no property path",
                "interfaces: \"{{ capture.base }}\"",
                &[
                    "spec.desiredState.interfaces: Invalid value: \"{{ capture.base }}\": PolicyError: Invalid capture reference string, should be in the format capture.<capture_name>.<property_path>\n| {{ capture.base }}\n| ...^",
                ],
            ),
            (
                "single opening brace",
                "routes: \"{ capture.gw.routes }}\"",
                &[
                    "spec.desiredState.routes: Invalid value: \"{ capture.gw.routes }}\": PolicyError: Invalid reference action string after {, expecting another '{'\n| { capture.gw.routes }}\n| ^",
                ],
            ),
            (
                "no reference end",
                "interfaces:\n- name: \"{{ capture.base.interfaces.0.name\"",
                &[
                    "spec.desiredState.interfaces[0].name: Invalid value: \"{{ capture.base.interfaces.0.name\": PolicyError: No reference end }} found\n| {{ capture.base.interfaces.0.name\n| ^",
                ],
            ),
            (
                "no reference start",
                "interfaces:\n- name: \"capture.base.interfaces.0.name }}\"",
                &[
                    "spec.desiredState.interfaces[0].name: Invalid value: \"capture.base.interfaces.0.name }}\": PolicyError: No reference start {{ found\n| capture.base.interfaces.0.name }}\n| ...............................^",
                ],
            ),
            (
                "not a capture",
                "hostname: \"{{ base.x }}\"",
                &[
                    "spec.desiredState.hostname: Invalid value: \"{{ base.x }}\": PolicyError: Can only refer to captured data\n| {{ base.x }}\n| ...^",
                ],
            ),
            (
                "two paths",
                "ovs-db: \"{{ capture.base.x capture.base.y }}\"",
                &[
                    "spec.desiredState.ovs-db: Invalid value: \"{{ capture.base.x capture.base.y }}\": PolicyError: Only allows single property path between reference start {{ and reference end }}\n| {{ capture.base.x capture.base.y }}\n| ..................^",
                ],
            ),
            (
                "empty reference",
                "interfaces:\n- name: \"{{ }}\"",
                &[
                    "spec.desiredState.interfaces[0].name: Invalid value: \"{{ }}\": PolicyError: No property path between reference start {{ and reference end }}\n| {{ }}\n| ..^",
                ],
            ),
            (
                "plain parts are still typed",
                "interfaces:\n- name: br1\n  type: linux-bridge\n  mtu: abc\n  bridge:\n    port:\n    - name: \"{{ capture.base.interfaces.0.name }}\"\n- name: eth2\n  type: ethernet\n  mtux: 1\nroutes:\n  config:\n  - destination: 198.51.100.0/24\n    next-hop-interface: \"{{ capture.base.interfaces.0.name }}\"\n    metricx: 1",
                &[
                    r#"spec.desiredState.interfaces[0].mtu: Invalid value: "abc": invalid digit found in string"#,
                    "spec.desiredState.interfaces[1].mtux: Invalid value: unknown field `mtux`",
                    "spec.desiredState.routes.config[0].metricx: Invalid value: unknown field `metricx`, expected one of `state`, `destination`, `next-hop-interface`, `next-hop-address`, `metric`, `table-id`, `weight`, `route-type`, `cwnd`, `source`, `initcwnd`, `initrwnd`, `mtu`, `quickack`, `advmss`, `lock-mtu`, `vrf-name`",
                ],
            ),
            (
                "lone braces are fine without templates",
                "interfaces:\n- name: eth1\n  type: ethernet\n  description: \"a {b} c\"",
                &[],
            ),
        ];
        for (case, yaml, expected) in cases {
            check_templated(case, yaml, expected);
        }
        assert!(desired_state_has_templates(&State(
            serde_json::json!({"a": ["{{ capture.x.y }}"]})
        )));
        assert!(desired_state_has_templates(&State(
            serde_json::json!({"a": "x }}"})
        )));
        assert!(!desired_state_has_templates(&State(
            serde_json::json!({"a": "{x}"})
        )));
    }
}

mod statuses {
    use super::*;

    fn check<T: Resource>(
        case: &str,
        yaml: &str,
        validate: fn(&T) -> Vec<FieldError>,
        expected: &[&str],
    ) {
        let object: T = serde_yaml::from_str(yaml).unwrap();
        assert_messages(case, &validate(&object), &owned(expected));
    }

    fn policy_status(policy: &NodeNetworkConfigurationPolicy) -> Vec<FieldError> {
        validate_policy_status(policy.status.as_ref().unwrap())
    }

    #[test]
    fn policy_status_rules() {
        let cases: [(&str, &str, &[&str]); 4] = [
            (
                "valid",
                "status:\n  observedGeneration: 1\n  matchingNodes: 2\n  conditions:\n  - {type: Available, status: 'True'}\n  - {type: Degraded, status: 'False'}",
                &[],
            ),
            (
                "condition of another kind",
                "status:\n  conditions:\n  - {type: Failing, status: 'True'}",
                &[
                    r#"status.conditions[0].type: Unsupported value: "Failing": supported values: "Available", "Degraded", "Progressing", "Ignored""#,
                ],
            ),
            (
                "duplicate condition",
                "status:\n  conditions:\n  - {type: Available, status: 'True'}\n  - {type: Available, status: 'False'}",
                &[r#"status.conditions[1].type: Duplicate value: "Available""#],
            ),
            (
                "negative counts",
                "status:\n  observedGeneration: -1\n  failingNodes: -2\n  unavailableNodeCountMap: {'1': -3}",
                &[
                    "status.observedGeneration: Invalid value: -1: must be greater than or equal to 0",
                    "status.failingNodes: Invalid value: -2: must be greater than or equal to 0",
                    "status.unavailableNodeCountMap[1]: Invalid value: -3: must be greater than or equal to 0",
                ],
            ),
        ];
        for (case, yaml, expected) in cases {
            check(
                case,
                &format!("metadata: {{name: p}}\n{yaml}"),
                policy_status,
                expected,
            );
        }
    }

    #[test]
    fn state_rules() {
        let cases: [(&str, &str, &[&str]); 5] = [
            (
                "valid",
                "metadata: {name: node01}\nstatus:\n  currentState: {interfaces: [], anything: {goes: here}}\n  conditions:\n  - {type: Ready, status: 'True'}",
                &[],
            ),
            ("no status", "metadata: {name: node01}", &[]),
            (
                "bad name",
                "metadata: {name: Node01}",
                &[
                    r#"metadata.name: Invalid value: "Node01": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#,
                ],
            ),
            (
                "current state not an object",
                "metadata: {name: node01}\nstatus:\n  currentState: [1]",
                &["status.currentState: Invalid value: must be an object"],
            ),
            (
                "condition of another kind",
                "metadata: {name: node01}\nstatus:\n  conditions:\n  - {type: Degraded, status: 'True'}",
                &[
                    r#"status.conditions[0].type: Unsupported value: "Degraded": supported values: "Available", "Failing", "Ready""#,
                ],
            ),
        ];
        for (case, yaml, expected) in cases {
            check::<NodeNetworkState>(case, yaml, validate_state, expected);
        }
    }

    #[test]
    fn enactment_rules() {
        let meta = "metadata:\n  name: node01.p\n  labels: {nmstate.io/node: node01, nmstate.io/policy: p}\n";
        let cases: [(&str, String, &[&str]); 6] = [
            (
                "valid",
                format!(
                    "{meta}status:\n  policyGeneration: 2\n  desiredState:\n    interfaces:\n    - {{name: eth1, type: ethernet, state: up}}\n  capturedStates:\n    eth: {{state: {{interfaces: []}}, metaInfo: {{version: '2'}}}}\n  retryCount: {{'2': 1}}\n  conditions:\n  - {{type: Pending, status: 'True', reason: MaxUnavailableLimitReached}}"
                ),
                &[],
            ),
            (
                "missing labels",
                "metadata: {name: node01.p, labels: {nmstate.io/node: ''}}".to_owned(),
                &[
                    "metadata.labels[nmstate.io/node]: Required value",
                    "metadata.labels[nmstate.io/policy]: Required value",
                ],
            ),
            (
                "rendered state is typed",
                format!(
                    "{meta}status:\n  desiredState:\n    interfaces:\n    - {{name: eth1, type: ethernet, mtu: abc}}"
                ),
                &[
                    r#"status.desiredState.interfaces[0].mtu: Invalid value: "abc": invalid digit found in string"#,
                ],
            ),
            (
                "rendered state not an object",
                format!("{meta}status:\n  desiredState: x"),
                &[r#"status.desiredState: Invalid value: "x": must be an object"#],
            ),
            (
                "captured state not an object",
                format!("{meta}status:\n  capturedStates:\n    eth: {{state: 1}}\n    '': {{}}"),
                &[
                    "status.capturedStates[]: Required value: capture name must not be empty",
                    "status.capturedStates[eth].state: Invalid value: 1: must be an object",
                ],
            ),
            (
                "bad counters and conditions",
                format!(
                    "{meta}status:\n  policyGeneration: -1\n  retryCount: {{x: -1}}\n  conditions:\n  - {{type: Ignored, status: 'True'}}"
                ),
                &[
                    "status.policyGeneration: Invalid value: -1: must be greater than or equal to 0",
                    r#"status.conditions[0].type: Unsupported value: "Ignored": supported values: "Available", "Failing", "Progressing", "Pending", "Aborted""#,
                    r#"status.retryCount[x]: Invalid value: "x": must be a policy generation (a decimal integer)"#,
                    "status.retryCount[x]: Invalid value: -1: must be greater than or equal to 0",
                ],
            ),
        ];
        for (case, yaml, expected) in cases {
            check::<NodeNetworkConfigurationEnactment>(case, &yaml, validate_enactment, expected);
        }
    }
}

mod decoding {
    use super::*;

    fn check(case: &str, json: serde_json::Value, expected: Result<(), &str>, unknown: &[&str]) {
        let result = decode::<NodeNetworkConfigurationPolicy>(&json);
        match (&result, expected) {
            (Ok(policy), Ok(())) => {
                assert_eq!(unknown_fields(&json, policy), unknown, "case {case:?}")
            }
            (Err(error), Err(message)) => assert_eq!(error.to_string(), message, "case {case:?}"),
            _ => panic!("case {case:?}: got {result:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn decode_and_unknown_fields() {
        use serde_json::json;
        let cases = [
            (
                "known fields only; empty values are not unknown",
                json!({"apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy", "metadata": {"name": "p", "labels": {}}, "spec": {"nodeSelector": {}, "capture": null, "desiredState": {"x-anything": 1}}, "status": {}}),
                Ok(()),
                &[][..],
            ),
            (
                "unknown fields are listed",
                json!({"metadata": {"name": "p", "foo": 1}, "spec": {"maxUnavailabel": 1, "desiredState": {}}, "status": {"conditions": [{"type": "Available", "status": "True", "bar": "x"}]}, "extra": true}),
                Ok(()),
                &[
                    "metadata.foo",
                    "spec.maxUnavailabel",
                    "status.conditions[0].bar",
                    "extra",
                ][..],
            ),
            (
                "wrong type",
                json!({"spec": {"maxUnavailable": true}}),
                Err(
                    "spec.maxUnavailable: Invalid value: true: invalid type: boolean `true`, expected a 32-bit integer or a string",
                ),
                &[][..],
            ),
            (
                "wrong type in a map",
                json!({"spec": {"nodeSelector": {"a": 1}}}),
                Err(
                    "spec.nodeSelector.a: Invalid value: 1: invalid type: integer `1`, expected a string",
                ),
                &[][..],
            ),
            (
                "bad condition status",
                json!({"status": {"conditions": [{"type": "Available", "status": "yes"}]}}),
                Err(
                    r#"status.conditions[0].status: Invalid value: "yes": unknown variant `yes`, expected one of `True`, `False`, `Unknown`"#,
                ),
                &[][..],
            ),
            (
                "not an object",
                json!([1]),
                Err("Invalid value: must be an object"),
                &[][..],
            ),
        ];
        for (case, json, expected, unknown) in cases {
            check(case, json, expected, unknown);
        }
    }
}

mod examples {
    use super::*;

    fn testdata(relative: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(relative)
    }

    fn entries(dir: &Path) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        paths.sort();
        paths
    }

    /// Every upstream example policy decodes, validates cleanly, and
    /// survives a JSON round trip with its desired state byte-identical
    /// (key order included).
    #[test]
    fn upstream_examples_are_valid_and_round_trip() {
        let paths: Vec<PathBuf> = entries(&testdata("upstream-examples"))
            .into_iter()
            .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
            .collect();
        assert_eq!(paths.len(), 18);
        for path in paths {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let yaml = std::fs::read_to_string(&path).unwrap();
            let written: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
            let policy: NodeNetworkConfigurationPolicy = decode(&written).unwrap();
            assert_messages(&name, &policy.validate(), &[]);
            assert_eq!(
                unknown_fields(&written, &policy),
                Vec::<String>::new(),
                "{name}"
            );

            let desired_as_written =
                serde_json::to_string(&written["spec"]["desiredState"]).unwrap();
            let json = serde_json::to_string(&policy).unwrap();
            let again: NodeNetworkConfigurationPolicy = serde_json::from_str(&json).unwrap();
            let desired_again =
                serde_json::to_string(again.spec.desired_state.as_ref().unwrap()).unwrap();
            assert_eq!(desired_again, desired_as_written, "{name}");
            assert_eq!(serde_json::to_string(&again).unwrap(), json, "{name}");
        }
    }

    #[test]
    fn serde_json_preserves_key_order() {
        // nmstate enables serde_json's `preserve_order`; desired states
        // depend on it to be stored as written.
        let json = r#"{"z":1,"a":{"y":2,"b":3}}"#;
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value.to_string(), json);
    }

    /// Golden test over the nmpolicy conformance vectors: what validating
    /// each one's `capture` + `desiredState` as a policy spec reports. Valid
    /// vectors must stay valid (no false rejections); syntax errors must be
    /// caught. `UPDATE_EXPECT=1` rewrites the golden files.
    #[test]
    fn nmpolicy_vectors() {
        let update = std::env::var_os("UPDATE_EXPECT").is_some();
        let mut mismatches = Vec::new();
        for dir in entries(&testdata("nmpolicy"))
            .into_iter()
            .filter(|path| path.is_dir())
        {
            let yaml = std::fs::read_to_string(dir.join("policy.yaml")).unwrap();
            let spec: NodeNetworkConfigurationPolicySpec = serde_yaml::from_str(&yaml).unwrap();
            let actual: String = validate_policy_spec(&spec, &FieldPath::new("spec"))
                .iter()
                .map(|error| format!("{error}\n\n"))
                .collect();
            let golden = dir.join("validation.txt");
            if update {
                std::fs::write(&golden, &actual).unwrap();
            } else if std::fs::read_to_string(&golden).unwrap_or_default() != actual {
                mismatches.push(format!("{}:\n{actual}", dir.display()));
            }
        }
        assert!(
            mismatches.is_empty(),
            "golden mismatch:\n{}",
            mismatches.join("\n")
        );
    }
}

/// In a document with hundreds of interfaces, problems deep inside some of
/// them are still located exactly, each with its own index.
#[test]
fn large_document_paths() {
    let interface = |i: usize| {
        serde_json::json!({
            "name": format!("eth{i}"), "type": "ethernet", "state": "up", "mtu": 1500,
            "ipv4": {"enabled": true, "dhcp": false, "address": [{"ip": "192.0.2.1", "prefix-length": 24}]},
        })
    };
    let mut interfaces: Vec<serde_json::Value> = (0..300).map(interface).collect();
    interfaces[150]["mtu"] = serde_json::json!("abc");
    interfaces[200]["ipv4"]["dhcpx"] = serde_json::json!(true);
    interfaces[250]["ipv4"]["address"][0]["ip"] = serde_json::json!("192.0.2.999");
    let document = serde_json::json!({ "interfaces": interfaces });
    let errors = validate_network_state(&document, &FieldPath::new("spec.desiredState"));
    let paths: Vec<&str> = errors.iter().map(|error| error.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "spec.desiredState.interfaces[150].mtu",
            "spec.desiredState.interfaces[200].ipv4.dhcpx",
            "spec.desiredState.interfaces[250].ipv4.address[0]",
        ]
    );
}
