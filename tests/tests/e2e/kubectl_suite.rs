//! The machine's real kubectl (1.32) against the real server, on both
//! storage backends: what a user types and what they see (exit codes,
//! stdout, stderr).
//!
//! Each scenario is a test per backend (`kubectl_suite::edit::embedded`,
//! `kubectl_suite::edit::etcd`) on a server of its own, which first writes
//! what it reads (the upstream examples, a node state): a failure names its
//! scenario and hides no other.
#![allow(clippy::unwrap_used)]

use std::{
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture};
use nmstate_e2e::{
    apiserver::ApiserverProcess,
    etcd::EtcdProcess,
    kubectl::{Kubectl, KubectlOutput, RunOptions},
};
use serde_json::{Value, json};

/// How long a watching kubectl may stay silent before the test gives up
/// (against hangs only).
const LINE_TIMEOUT: Duration = Duration::from_secs(30);

const NNCP: &str = "nodenetworkconfigurationpolicy.nmstate.io";

/// A module per scenario with a test per storage backend, `embedded` and
/// `etcd`, each running the scenario on a server of its own.
macro_rules! scenarios {
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            use super::{Backend, FutureExt, run};

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                run(module_path!(), Backend::Embedded, |k| super::$scenario(k).boxed()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn etcd() {
                run(module_path!(), Backend::Etcd, |k| super::$scenario(k).boxed()).await;
            }
        }
    )+};
}

scenarios!(
    upstream_examples,
    reading,
    explain,
    raw,
    invalid_input,
    dry_run,
    edit,
    patch_label_annotate,
    server_side_apply,
    watch,
    wait,
    delete,
);

type Scenario = for<'a> fn(&'a Kubectl) -> BoxFuture<'a, ()>;

/// The server's storage.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Embedded,
    Etcd,
}

/// Runs `scenario` with kubectl against a new server on `backend`, in the
/// turn of the suite of `module_path`.
async fn run(module_path: &str, backend: Backend, scenario: Scenario) {
    let _turn = nmstate_e2e::suite::turn(module_path);
    let etcd = match backend {
        Backend::Embedded => None,
        Backend::Etcd => Some(EtcdProcess::start().await),
    };
    // The scenarios write enactments and statuses by hand, as clients; the
    // controller would act on them (the controller suite covers it).
    let mut flags = vec!["--controller=false".to_owned()];
    if let Some(etcd) = &etcd {
        flags.extend(["--etcd-servers".to_owned(), etcd.endpoint()]);
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = ApiserverProcess::start(&flags).await.unwrap();
    let kubectl = Kubectl::for_server(&server).unwrap();
    scenario(&kubectl).await;
}

// ---------------------------------------------------------------------------
// Helpers

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/upstream")
}

/// The upstream example manifests, sorted by file name.
fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no manifests in {}",
        examples_dir().display()
    );
    files
}

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A policy manifest (JSON is YAML, so kubectl reads it from stdin).
fn policy(name: &str, max_unavailable: Value) -> Value {
    json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": name},
        "spec": {
            "maxUnavailable": max_unavailable,
            "desiredState": {"interfaces": [{"name": "br1", "type": "linux-bridge", "state": "up"}]}
        }
    })
}

async fn apply(kubectl: &Kubectl, manifest: &Value) -> KubectlOutput {
    kubectl
        .run_stdin(&["apply", "-f", "-"], &manifest.to_string())
        .await
}

async fn get_json(kubectl: &Kubectl, kind: &str, name: &str) -> Value {
    kubectl
        .run(&["get", kind, name, "-o", "json"])
        .await
        .ok()
        .json()
}

/// `get -o json` with `metadata.managedFields`, which kubectl hides unless
/// asked.
async fn get_json_with_managed_fields(kubectl: &Kubectl, kind: &str, name: &str) -> Value {
    kubectl
        .run(&["get", kind, name, "-o", "json", "--show-managed-fields"])
        .await
        .ok()
        .json()
}

async fn jsonpath(kubectl: &Kubectl, kind: &str, name: &str, path: &str) -> String {
    let template = format!("jsonpath={path}");
    kubectl
        .run(&["get", kind, name, "-o", &template])
        .await
        .ok()
        .stdout
}

/// The column headers of a table kubectl printed.
fn header(output: &KubectlOutput) -> String {
    output
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first word of each row below the header.
fn row_names(output: &KubectlOutput) -> Vec<String> {
    output
        .stdout
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn assert_not_found(output: KubectlOutput, resource: &str, name: &str) {
    let output = output.failed();
    let expected =
        format!("Error from server (NotFound): {resource}.nmstate.io \"{name}\" not found");
    assert!(
        output.stderr.contains(&expected),
        "expected {expected:?}:\n{output}"
    );
}

/// Runs kubectl, which must succeed and print `expected` (trimmed).
async fn prints(kubectl: &Kubectl, args: &[&str], expected: &str) -> KubectlOutput {
    let output = kubectl.run(args).await.ok();
    assert_eq!(
        output.stdout.trim(),
        expected,
        "kubectl {args:?}:\n{output}"
    );
    output
}

/// [`prints`] with `input` on kubectl's stdin.
async fn prints_with_stdin(
    kubectl: &Kubectl,
    args: &[&str],
    input: &str,
    expected: &str,
) -> KubectlOutput {
    let output = kubectl.run_stdin(args, input).await.ok();
    assert_eq!(
        output.stdout.trim(),
        expected,
        "kubectl {args:?}:\n{output}"
    );
    output
}

/// Runs kubectl, which must fail and say `text` on stderr.
async fn fails_with(kubectl: &Kubectl, args: &[&str], text: &str) -> KubectlOutput {
    let output = kubectl.run(args).await.failed();
    assert!(
        output.stderr.contains(text),
        "kubectl {args:?} says {text:?}:\n{output}"
    );
    output
}

/// `kubectl patch nncp <name> --type <patch_type> -p <patch>`.
fn patch<'a>(name: &'a str, patch_type: &'a str, patch: &'a str) -> [&'a str; 7] {
    ["patch", "nncp", name, "--type", patch_type, "-p", patch]
}

/// `linux-bridge.yaml` with a label and another `maxUnavailable`.
fn changed_linux_bridge() -> Value {
    let mut changed = read_yaml(&examples_dir().join("linux-bridge.yaml"));
    changed["metadata"]["labels"] = json!({"example": "linux-bridge"});
    changed["spec"]["maxUnavailable"] = json!("30%");
    changed
}

/// What [`upstream_examples`] leaves, for the scenarios that read it:
/// every upstream example, linux-bridge changed.
async fn examples_applied(kubectl: &Kubectl) {
    kubectl
        .run(&["apply", "-f", path_str(&examples_dir())])
        .await
        .ok();
    apply(kubectl, &changed_linux_bridge()).await.ok();
}

/// Node state `node-a` (labelled `zone=a`, with two interfaces in its
/// status, written through /status) and enactment `node-a.linux-bridge`.
async fn node_a_created(kubectl: &Kubectl) {
    let state = json!({
        "apiVersion": "nmstate.io/v1beta1",
        "kind": "NodeNetworkState",
        "metadata": {"name": "node-a", "labels": {"zone": "a"}}
    });
    let enactment = json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationEnactment",
        "metadata": {
            "name": "node-a.linux-bridge",
            "labels": {"nmstate.io/node": "node-a", "nmstate.io/policy": "linux-bridge"}
        }
    });
    prints_with_stdin(
        kubectl,
        &["create", "-f", "-"],
        &format!("{state}\n{enactment}"),
        "nodenetworkstate.nmstate.io/node-a created\n\
         nodenetworkconfigurationenactment.nmstate.io/node-a.linux-bridge created",
    )
    .await;
    let mut with_status = get_json(kubectl, "nns", "node-a").await;
    with_status["status"] = json!({
        "currentState": {"interfaces": [
            {"name": "eth0", "type": "ethernet", "state": "up"},
            {"name": "lo", "type": "loopback", "state": "up"}
        ]},
        "lastSuccessfulUpdateTime": "2024-01-01T00:00:00Z"
    });
    prints_with_stdin(
        kubectl,
        &["replace", "--subresource=status", "-f", "-"],
        &with_status.to_string(),
        "nodenetworkstate.nmstate.io/node-a replaced",
    )
    .await;
}

// ---------------------------------------------------------------------------
// Scenarios

/// `kubectl apply -f` of every upstream example creates it, and the spec
/// reads back exactly as written; applying again changes nothing.
async fn upstream_examples(kubectl: &Kubectl) {
    for file in example_files() {
        let manifest = read_yaml(&file);
        let name = manifest["metadata"]["name"].as_str().unwrap();
        let apply_file = ["apply", "-f", path_str(&file)];
        prints(kubectl, &apply_file, &format!("{NNCP}/{name} created")).await;

        let read = get_json(kubectl, "nncp", name).await;
        assert_eq!(
            read["spec"],
            manifest["spec"],
            "spec of {} read back differently",
            file.display()
        );
        assert_eq!(read["apiVersion"], manifest["apiVersion"]);
        assert_eq!(read["kind"], "NodeNetworkConfigurationPolicy");
        assert_eq!(read["metadata"]["generation"], 1);

        prints(kubectl, &apply_file, &format!("{NNCP}/{name} unchanged")).await;
    }

    // Client-side apply of a changed manifest (a three-way merge patch).
    let changed = changed_linux_bridge();
    prints_with_stdin(
        kubectl,
        &["apply", "-f", "-"],
        &changed.to_string(),
        &format!("{NNCP}/linux-bridge configured"),
    )
    .await;
    let read = get_json(kubectl, "nncp", "linux-bridge").await;
    assert_eq!(read["spec"], changed["spec"]);
    assert_eq!(
        read["metadata"]["labels"],
        json!({"example": "linux-bridge"})
    );
    assert_eq!(read["metadata"]["generation"], 2);
}

/// Tables, YAML, wide output, short and long names, the `nmstate`
/// category, selectors, describe.
async fn reading(kubectl: &Kubectl) {
    examples_applied(kubectl).await;
    let examples: Vec<String> = example_files()
        .iter()
        .map(|file| {
            read_yaml(file)["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();

    let table = kubectl.run(&["get", "nncp"]).await.ok();
    assert_eq!(header(&table), "NAME STATUS REASON NODES AGE", "{table}");
    let rows = row_names(&table);
    for name in &examples {
        assert!(
            rows.contains(name),
            "{name} missing from the table:\n{table}"
        );
    }

    let wide = kubectl.run(&["get", "nncp", "-o", "wide"]).await.ok();
    let wide_header = header(&wide);
    assert!(
        wide_header.starts_with("NAME STATUS REASON NODES AGE ")
            && wide_header.len() > "NAME STATUS REASON NODES AGE".len(),
        "-o wide adds columns after the default ones:\n{wide}"
    );
    assert_eq!(row_names(&wide), rows);

    let yaml = kubectl
        .run(&["get", "nncp", "linux-bridge", "-o", "yaml"])
        .await
        .ok();
    let parsed: Value = serde_yaml::from_str(&yaml.stdout).unwrap();
    assert_eq!(parsed["kind"], "NodeNetworkConfigurationPolicy");
    assert_eq!(parsed["metadata"]["name"], "linux-bridge");
    assert_eq!(
        parsed["spec"]["desiredState"]["interfaces"][0]["name"],
        "br1"
    );

    // A node state (with a status written through /status) and an
    // enactment, to read through their short names.
    node_a_created(kubectl).await;

    let states = kubectl.run(&["get", "nns"]).await.ok();
    assert_eq!(
        header(&states),
        "NAME INTERFACES LAST UPDATE AGE",
        "{states}"
    );
    let row: Vec<&str> = states
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..2],
        ["node-a", "2"],
        "NNS row shows the interface count:\n{states}"
    );

    let enactments = kubectl.run(&["get", "nnce"]).await.ok();
    assert_eq!(
        header(&enactments),
        "NAME STATUS STATUS AGE REASON",
        "{enactments}"
    );
    assert_eq!(row_names(&enactments), ["node-a.linux-bridge"]);

    for (resource, name, expected) in [
        (
            "nncp",
            "dns",
            "nodenetworkconfigurationpolicy.nmstate.io/dns",
        ),
        (
            "nodenetworkconfigurationpolicies",
            "dns",
            "nodenetworkconfigurationpolicy.nmstate.io/dns",
        ),
        (
            "nodenetworkconfigurationpolicy",
            "dns",
            "nodenetworkconfigurationpolicy.nmstate.io/dns",
        ),
        (
            "nodenetworkconfigurationpolicies.nmstate.io",
            "dns",
            "nodenetworkconfigurationpolicy.nmstate.io/dns",
        ),
        ("nns", "node-a", "nodenetworkstate.nmstate.io/node-a"),
        (
            "nodenetworkstates",
            "node-a",
            "nodenetworkstate.nmstate.io/node-a",
        ),
        (
            "nnce",
            "node-a.linux-bridge",
            "nodenetworkconfigurationenactment.nmstate.io/node-a.linux-bridge",
        ),
        (
            "nodenetworkconfigurationenactment",
            "node-a.linux-bridge",
            "nodenetworkconfigurationenactment.nmstate.io/node-a.linux-bridge",
        ),
    ] {
        prints(kubectl, &["get", resource, name, "-o", "name"], expected).await;
    }
    let slash = kubectl
        .run(&["get", "nncp/dns", "nns/node-a", "-o", "name"])
        .await
        .ok();
    assert_eq!(
        slash.stdout,
        "nodenetworkconfigurationpolicy.nmstate.io/dns\nnodenetworkstate.nmstate.io/node-a\n"
    );

    let category = kubectl.run(&["get", "nmstate", "-o", "name"]).await.ok();
    let listed: Vec<&str> = category.stdout.lines().collect();
    for expected in [
        "nodenetworkconfigurationpolicy.nmstate.io/linux-bridge",
        "nodenetworkstate.nmstate.io/node-a",
        "nodenetworkconfigurationenactment.nmstate.io/node-a.linux-bridge",
    ] {
        assert!(
            listed.contains(&expected),
            "{expected} missing from `get nmstate`:\n{category}"
        );
    }
    let category_table = kubectl.run(&["get", "nmstate"]).await.ok();
    assert!(
        category_table
            .stdout
            .contains("nodenetworkconfigurationpolicy.nmstate.io/dns "),
        "{category_table}"
    );

    prints(
        kubectl,
        &[
            "get",
            "nnce",
            "-l",
            "nmstate.io/node=node-a,nmstate.io/policy",
            "-o",
            "name",
        ],
        "nodenetworkconfigurationenactment.nmstate.io/node-a.linux-bridge",
    )
    .await;
    let no_match = kubectl.run(&["get", "nns", "-l", "zone!=a"]).await.ok();
    assert_eq!(no_match.stdout, "", "{no_match}");
    assert!(no_match.stderr.contains("No resources found"), "{no_match}");
    prints(
        kubectl,
        &[
            "get",
            "nncp",
            "--field-selector",
            "metadata.name=dns",
            "-o",
            "name",
        ],
        "nodenetworkconfigurationpolicy.nmstate.io/dns",
    )
    .await;
    prints(
        kubectl,
        &["get", "nncp", "-l", "example=linux-bridge", "-o", "name"],
        "nodenetworkconfigurationpolicy.nmstate.io/linux-bridge",
    )
    .await;
    let paged = kubectl
        .run(&["get", "nncp", "--chunk-size=4", "-o", "name"])
        .await
        .ok();
    assert_eq!(paged.stdout.lines().count(), examples.len(), "{paged}");

    assert_not_found(
        kubectl.run(&["get", "nncp", "missing"]).await,
        "nodenetworkconfigurationpolicies",
        "missing",
    );

    let described = kubectl
        .run(&["describe", "nncp", "linux-bridge"])
        .await
        .ok();
    for (field, value) in [
        ("Name:", "linux-bridge"),
        ("Labels:", "example=linux-bridge"),
        ("API Version:", "nmstate.io/v1"),
        ("Kind:", "NodeNetworkConfigurationPolicy"),
    ] {
        assert!(
            described
                .stdout
                .lines()
                .any(|line| line.starts_with(field) && line.trim_end().ends_with(value)),
            "describe shows {field} {value}:\n{described}"
        );
    }
    for text in [
        "Spec:",
        "Desired State:",
        "Max Unavailable:",
        "Linux bridge with eth1 as a port",
    ] {
        assert!(
            described.stdout.contains(text),
            "describe shows {text:?}:\n{described}"
        );
    }
    let described_state = kubectl.run(&["describe", "nns", "node-a"]).await.ok();
    assert!(
        described_state.stdout.contains("Current State:"),
        "{described_state}"
    );
    assert!(described_state.stdout.contains("eth0"), "{described_state}");
}

/// `kubectl explain` prints field documentation from the OpenAPI v3
/// document.
async fn explain(kubectl: &Kubectl) {
    let max = kubectl
        .run(&["explain", "nncp.spec.maxUnavailable"])
        .await
        .ok();
    for text in [
        "KIND:       NodeNetworkConfigurationPolicy",
        "VERSION:    v1",
        "FIELD: maxUnavailable",
        "DESCRIPTION:",
        "percent",
    ] {
        assert!(max.stdout.contains(text), "explain shows {text:?}:\n{max}");
    }

    let conditions = kubectl
        .run(&["explain", "nnce.status.conditions"])
        .await
        .ok();
    assert!(
        conditions
            .stdout
            .contains("KIND:       NodeNetworkConfigurationEnactment"),
        "{conditions}"
    );
    assert!(
        conditions.stdout.contains("FIELD: conditions <[]"),
        "{conditions}"
    );
    let fields = conditions
        .stdout
        .split("FIELDS:")
        .nth(1)
        .unwrap_or_else(|| panic!("no FIELDS:\n{conditions}"));
    for field in [
        "lastHeartbeatTime",
        "lastTransitionTime",
        "message",
        "reason",
        "status",
        "type",
    ] {
        assert!(
            fields
                .lines()
                .any(|line| line.trim_start().starts_with(&format!("{field}\t"))),
            "explain lists {field}:\n{conditions}"
        );
    }

    for args in [
        &["explain", "nncp"][..],
        &["explain", "nncp.metadata"],
        &["explain", "nncp", "--recursive"],
        &["explain", "nns.status.currentState"],
        &[
            "explain",
            "nodenetworkconfigurationpolicies.spec.nodeSelector",
            "--api-version=nmstate.io/v1beta1",
        ],
    ] {
        let out = kubectl.run(args).await.ok();
        assert!(out.stdout.contains("KIND:"), "{out}");
    }
    fails_with(
        kubectl,
        &["explain", "nncp.spec.noSuchField"],
        "noSuchField",
    )
    .await;
}

/// Discovery and OpenAPI documents through `kubectl get --raw`.
async fn raw(kubectl: &Kubectl) {
    let apis = kubectl.run(&["get", "--raw", "/apis"]).await.ok().json();
    let group = apis["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|group| group["name"] == "nmstate.io")
        .unwrap_or_else(|| panic!("no nmstate.io group in /apis: {apis}"));
    assert_eq!(group["preferredVersion"]["groupVersion"], "nmstate.io/v1");
    let versions: Vec<&str> = group["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v1", "v1beta1"]);

    for version in ["v1", "v1beta1"] {
        let list = kubectl
            .run(&["get", "--raw", &format!("/apis/nmstate.io/{version}")])
            .await
            .ok()
            .json();
        assert_eq!(list["kind"], "APIResourceList");
        assert_eq!(list["groupVersion"], format!("nmstate.io/{version}"));
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        for expected in [
            "nodenetworkstates",
            "nodenetworkstates/status",
            "nodenetworkconfigurationpolicies",
            "nodenetworkconfigurationpolicies/status",
            "nodenetworkconfigurationenactments",
            "nodenetworkconfigurationenactments/status",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from /apis/nmstate.io/{version}: {names:?}"
            );
        }
    }

    let v3 = kubectl
        .run(&["get", "--raw", "/openapi/v3"])
        .await
        .ok()
        .json();
    let group_path = v3["paths"]["apis/nmstate.io/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap_or_else(|| panic!("no apis/nmstate.io/v1 in /openapi/v3: {v3}"));
    let document = kubectl.run(&["get", "--raw", group_path]).await.ok().json();
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with('3')),
        "{}",
        document["openapi"]
    );
    assert!(
        document["components"]["schemas"]
            .as_object()
            .is_some_and(|s| !s.is_empty())
    );

    let v2 = kubectl
        .run(&["get", "--raw", "/openapi/v2"])
        .await
        .ok()
        .json();
    assert_eq!(v2["swagger"], "2.0");
    assert!(v2["definitions"].as_object().is_some_and(|d| !d.is_empty()));
    assert!(v2["paths"].as_object().is_some_and(|p| {
        p.keys()
            .any(|k| k.contains("nodenetworkconfigurationpolicies"))
    }));

    let version = kubectl.run(&["version", "-o", "json"]).await.ok().json();
    assert_eq!(version["serverVersion"]["major"], "1");
    assert_eq!(version["serverVersion"]["minor"], "32");
}

/// Bad input reaches the user as the server's message, naming the field.
async fn invalid_input(kubectl: &Kubectl) {
    examples_applied(kubectl).await;
    let cases: &[(&str, Value, &str)] = &[
        (
            "invalid name",
            policy("Bad_Name", json!(1)),
            "The NodeNetworkConfigurationPolicy \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\"",
        ),
        (
            "wrong type in desiredState",
            json!({
                "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
                "metadata": {"name": "bad-type"},
                "spec": {"desiredState": {"interfaces": [{"name": "eth1", "type": "ethernet", "ipv4": {"enabled": "sometimes"}}]}}
            }),
            "The NodeNetworkConfigurationPolicy \"bad-type\" is invalid: spec.desiredState.interfaces[0].ipv4.enabled: Invalid value",
        ),
        (
            "unknown field in desiredState",
            json!({
                "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
                "metadata": {"name": "bad-field"},
                "spec": {"desiredState": {"interfaces": [{"name": "eth1", "type": "ethernet", "no-such-option": true}]}}
            }),
            "spec.desiredState.interfaces[0].no-such-option",
        ),
        (
            "undefined capture",
            json!({
                "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
                "metadata": {"name": "bad-capture"},
                "spec": {
                    "capture": {"eths": "interfaces.type==\"ethernet\""},
                    "desiredState": {"interfaces": "{{ capture.missing.interfaces }}"}
                }
            }),
            "The NodeNetworkConfigurationPolicy \"bad-capture\" is invalid: spec.desiredState.interfaces",
        ),
        (
            "bad maxUnavailable",
            policy("bad-max", json!("half")),
            "The NodeNetworkConfigurationPolicy \"bad-max\" is invalid: spec.maxUnavailable: Invalid value: \"half\"",
        ),
        (
            "unknown spec field (kubectl asks for strict validation)",
            json!({
                "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
                "metadata": {"name": "bad-spec"},
                "spec": {"desiredState": {}, "maxUnavaliable": 1}
            }),
            "unknown field \"spec.maxUnavaliable\"",
        ),
    ];
    for (case, manifest, message) in cases {
        let out = apply(kubectl, manifest).await;
        assert_eq!(out.code, Some(1), "{case}: kubectl apply exits 1:\n{out}");
        assert!(
            out.stderr.contains(message),
            "{case}: stderr shows {message:?}:\n{out}"
        );
        let name = manifest["metadata"]["name"].as_str().unwrap();
        assert!(
            !kubectl.run(&["get", "nncp", name]).await.success(),
            "{case}: {name} was stored"
        );
    }

    let duplicate = fails_with(
        kubectl,
        &["create", "-f", path_str(&examples_dir().join("dns.yaml"))],
        "Error from server (AlreadyExists)",
    )
    .await;
    assert!(
        duplicate
            .stderr
            .contains("nodenetworkconfigurationpolicies.nmstate.io \"dns\" already exists"),
        "{duplicate}"
    );
}

/// `--dry-run=server` validates and answers without writing.
async fn dry_run(kubectl: &Kubectl) {
    prints_with_stdin(
        kubectl,
        &["apply", "--dry-run=server", "-f", "-"],
        &policy("dry-new", json!(1)).to_string(),
        &format!("{NNCP}/dry-new created (server dry run)"),
    )
    .await;
    assert_not_found(
        kubectl.run(&["get", "nncp", "dry-new"]).await,
        "nodenetworkconfigurationpolicies",
        "dry-new",
    );

    let invalid = kubectl
        .run_stdin(
            &["create", "--dry-run=server", "-f", "-"],
            &policy("dry-bad", json!("lots")).to_string(),
        )
        .await
        .failed();
    assert!(invalid.stderr.contains("spec.maxUnavailable"), "{invalid}");

    apply(kubectl, &policy("dry-existing", json!(1))).await.ok();
    prints_with_stdin(
        kubectl,
        &["apply", "--dry-run=server", "-f", "-"],
        &policy("dry-existing", json!(6)).to_string(),
        &format!("{NNCP}/dry-existing configured (server dry run)"),
    )
    .await;
    assert_eq!(
        jsonpath(kubectl, "nncp", "dry-existing", "{.spec.maxUnavailable}").await,
        "1"
    );

    let server_side = kubectl
        .run_stdin(
            &["apply", "--server-side", "--dry-run=server", "-f", "-"],
            &policy("dry-existing", json!(7)).to_string(),
        )
        .await
        .ok();
    assert!(
        server_side.stdout.contains("(server dry run)"),
        "{server_side}"
    );
    assert_eq!(
        jsonpath(kubectl, "nncp", "dry-existing", "{.spec.maxUnavailable}").await,
        "1"
    );

    prints(
        kubectl,
        &["delete", "nncp", "dry-existing", "--dry-run=server"],
        &format!("{NNCP} \"dry-existing\" deleted (server dry run)"),
    )
    .await;
    kubectl.run(&["get", "nncp", "dry-existing"]).await.ok();
}

/// `kubectl edit` with `KUBE_EDITOR` set to a script that runs `sed` on
/// the file and keeps a copy of every file it was shown.
async fn edit(kubectl: &Kubectl) {
    apply(kubectl, &policy("edit-me", json!(3))).await.ok();
    let dir = tempfile::tempdir().unwrap();
    let edit_with = |name: &str, sed: &str| {
        let script = dir.path().join(format!("{name}.sh"));
        let seen = dir.path().join(format!("{name}.seen"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncat \"$1\" >> '{}'\nexec sed -i '{sed}' \"$1\"\n",
                seen.display()
            ),
        )
        .unwrap();
        let options = RunOptions {
            stdin: None,
            env: vec![
                ("KUBE_EDITOR", format!("sh {}", script.display())),
                // kubectl keeps rejected edits in $TMPDIR.
                ("TMPDIR", dir.path().display().to_string()),
            ],
        };
        (options, seen)
    };

    let (options, seen) = edit_with("good", "s/^  maxUnavailable: 3$/  maxUnavailable: 7/");
    let edited = kubectl
        .run_with(&["edit", "nncp", "edit-me"], options)
        .await
        .ok();
    assert_eq!(
        edited.stdout.trim(),
        format!("{NNCP}/edit-me edited"),
        "{edited}"
    );
    let shown = std::fs::read_to_string(seen).unwrap();
    assert!(
        shown.contains("name: edit-me") && shown.contains("  maxUnavailable: 3\n"),
        "the editor was shown:\n{shown}"
    );
    let read = get_json(kubectl, "nncp", "edit-me").await;
    assert_eq!(read["spec"]["maxUnavailable"], 7);
    assert_eq!(read["metadata"]["generation"], 2);

    let (options, _) = edit_with("noop", "s/nothing-matches-this//");
    let unchanged = kubectl
        .run_with(&["edit", "nncp", "edit-me"], options)
        .await
        .ok();
    assert!(
        unchanged
            .stderr
            .contains("Edit cancelled, no changes made."),
        "{unchanged}"
    );

    // An edit the server rejects: kubectl says so and opens the editor again
    // with the server's message on top of the file.
    let (options, seen) = edit_with("bad", "s/^  maxUnavailable: 7$/  maxUnavailable: most/");
    let rejected = kubectl
        .run_with(&["edit", "nncp", "edit-me"], options)
        .await
        .failed();
    assert!(
        rejected
            .stderr
            .contains("nodenetworkconfigurationpolicies.nmstate.io \"edit-me\" is invalid"),
        "{rejected}"
    );
    let shown = std::fs::read_to_string(seen).unwrap();
    assert!(
        shown.contains("# * spec.maxUnavailable: Invalid value: \"most\""),
        "the editor was shown:\n{shown}"
    );
    assert_eq!(
        jsonpath(kubectl, "nncp", "edit-me", "{.spec.maxUnavailable}").await,
        "7"
    );
}

/// `kubectl patch` (merge and JSON patch), `label`, `annotate`.
async fn patch_label_annotate(kubectl: &Kubectl) {
    node_a_created(kubectl).await;
    apply(kubectl, &policy("patch-me", json!(1))).await.ok();
    let patched = format!("{NNCP}/patch-me patched");

    prints(
        kubectl,
        &patch("patch-me", "merge", r#"{"spec":{"maxUnavailable":"25%"}}"#),
        &patched,
    )
    .await;
    assert_eq!(
        jsonpath(kubectl, "nncp", "patch-me", "{.spec.maxUnavailable}").await,
        "25%"
    );

    prints(
        kubectl,
        &patch(
            "patch-me",
            "json",
            r#"[{"op":"replace","path":"/spec/maxUnavailable","value":5}]"#,
        ),
        &patched,
    )
    .await;
    assert_eq!(
        jsonpath(kubectl, "nncp", "patch-me", "{.spec.maxUnavailable}").await,
        "5"
    );
    assert_eq!(
        jsonpath(kubectl, "nncp", "patch-me", "{.metadata.generation}").await,
        "3"
    );

    prints(
        kubectl,
        &patch("patch-me", "merge", r#"{"spec":{"maxUnavailable":5}}"#),
        &format!("{NNCP}/patch-me patched (no change)"),
    )
    .await;

    fails_with(
        kubectl,
        &patch(
            "patch-me",
            "json",
            r#"[{"op":"test","path":"/spec/maxUnavailable","value":4}]"#,
        ),
        "testing value /spec/maxUnavailable failed",
    )
    .await;

    fails_with(
        kubectl,
        &patch("patch-me", "merge", r#"{"spec":{"maxUnavailable":"x%"}}"#),
        "spec.maxUnavailable: Invalid value",
    )
    .await;

    // kubectl's default patch type is strategic merge, which the server
    // refuses (as for custom resources).
    fails_with(
        kubectl,
        &[
            "patch",
            "nncp",
            "patch-me",
            "-p",
            r#"{"spec":{"maxUnavailable":2}}"#,
        ],
        "application/merge-patch+json",
    )
    .await;

    let status_through_main = kubectl
        .run(&patch(
            "patch-me",
            "merge",
            r#"{"status":{"conditions":[{"type":"Available","status":"True"}]}}"#,
        ))
        .await
        .ok();
    assert!(
        status_through_main.stdout.contains("patched"),
        "{status_through_main}"
    );
    assert_eq!(
        jsonpath(kubectl, "nncp", "patch-me", "{.status}").await,
        "",
        "status is written through /status only"
    );

    prints(
        kubectl,
        &["label", "nncp", "patch-me", "team=net"],
        &format!("{NNCP}/patch-me labeled"),
    )
    .await;
    prints(
        kubectl,
        &["get", "nncp", "-l", "team=net", "-o", "name"],
        &format!("{NNCP}/patch-me"),
    )
    .await;
    fails_with(
        kubectl,
        &["label", "nncp", "patch-me", "team=ops"],
        "--overwrite is false",
    )
    .await;
    kubectl
        .run(&["label", "nncp", "patch-me", "team=ops", "--overwrite"])
        .await
        .ok();
    assert_eq!(
        jsonpath(kubectl, "nncp", "patch-me", "{.metadata.labels.team}").await,
        "ops"
    );
    prints(
        kubectl,
        &["label", "nncp", "patch-me", "team-"],
        &format!("{NNCP}/patch-me unlabeled"),
    )
    .await;
    assert_eq!(
        jsonpath(kubectl, "nncp", "patch-me", "{.metadata.labels.team}").await,
        ""
    );

    prints(
        kubectl,
        &[
            "annotate",
            "nncp",
            "patch-me",
            "example.com/note=hello world",
        ],
        &format!("{NNCP}/patch-me annotated"),
    )
    .await;
    assert_eq!(
        jsonpath(
            kubectl,
            "nncp",
            "patch-me",
            r"{.metadata.annotations.example\.com/note}"
        )
        .await,
        "hello world"
    );
    kubectl
        .run(&["annotate", "nncp", "patch-me", "example.com/note-"])
        .await
        .ok();
    assert_eq!(
        jsonpath(
            kubectl,
            "nncp",
            "patch-me",
            r"{.metadata.annotations.example\.com/note}"
        )
        .await,
        ""
    );

    // Labels and annotations are metadata: the generation stays.
    assert_eq!(
        jsonpath(kubectl, "nncp", "patch-me", "{.metadata.generation}").await,
        "3"
    );

    let all_labeled = kubectl
        .run(&["label", "nns", "--all", "rack=r1"])
        .await
        .ok();
    assert!(
        all_labeled
            .stdout
            .contains("nodenetworkstate.nmstate.io/node-a labeled"),
        "{all_labeled}"
    );

    // With its last label gone the object has no labels at all, as
    // Kubernetes writes it (metadata maps are omitted when empty).
    assert_eq!(
        jsonpath(kubectl, "nncp", "patch-me", "{.metadata.labels}").await,
        "",
        "an empty label map is dropped"
    );
}

/// `kubectl apply --server-side`: create, update, a conflict with a second
/// field manager, and forcing it.
async fn server_side_apply(kubectl: &Kubectl) {
    examples_applied(kubectl).await;
    let server_side = ["apply", "--server-side", "-f", "-"];
    let applied = format!("{NNCP}/ssa serverside-applied");
    let mut first = policy("ssa", json!(1));
    first["metadata"]["labels"] = json!({"app": "one"});
    prints_with_stdin(kubectl, &server_side, &first.to_string(), &applied).await;
    let read = get_json_with_managed_fields(kubectl, "nncp", "ssa").await;
    assert_eq!(read["spec"], first["spec"]);
    assert_eq!(read["metadata"]["labels"], json!({"app": "one"}));
    let managers = &read["metadata"]["managedFields"];
    assert!(
        managers.as_array().is_some_and(|m| m
            .iter()
            .any(|e| e["manager"] == "kubectl" && e["operation"] == "Apply")),
        "kubectl is an Apply manager: {managers}"
    );

    // The second version changes a field and drops the label it owned.
    let mut second = policy("ssa", json!(2));
    second["metadata"]["labels"] = json!({"app": "two"});
    second["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": "node-a"});
    prints_with_stdin(kubectl, &server_side, &second.to_string(), &applied).await;
    let read = get_json_with_managed_fields(kubectl, "nncp", "ssa").await;
    assert_eq!(read["spec"], second["spec"]);
    assert_eq!(read["metadata"]["labels"], json!({"app": "two"}));
    assert_eq!(read["metadata"]["generation"], 2);

    // Another manager setting a field kubectl owns to another value.
    let other = policy("ssa", json!(9));
    let conflict = kubectl
        .run_stdin(
            &["apply", "--server-side", "--field-manager=other", "-f", "-"],
            &other.to_string(),
        )
        .await
        .failed();
    for text in [
        "Apply failed with 1 conflict",
        "conflict with \"kubectl\"",
        ".spec.maxUnavailable",
    ] {
        assert!(
            conflict.stderr.contains(text),
            "conflict shows {text:?}:\n{conflict}"
        );
    }
    assert_eq!(
        jsonpath(kubectl, "nncp", "ssa", "{.spec.maxUnavailable}").await,
        "2"
    );

    prints_with_stdin(
        kubectl,
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &other.to_string(),
        &applied,
    )
    .await;
    let read = get_json_with_managed_fields(kubectl, "nncp", "ssa").await;
    assert_eq!(read["spec"]["maxUnavailable"], 9);
    assert_eq!(
        read["spec"]["nodeSelector"],
        json!({"kubernetes.io/hostname": "node-a"}),
        "kubectl's other fields stay"
    );
    let other_fields = read["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["manager"] == "other")
        .unwrap_or_else(|| {
            panic!(
                "no entry for manager other: {}",
                read["metadata"]["managedFields"]
            )
        });
    assert!(
        other_fields["fieldsV1"]["f:spec"]["f:maxUnavailable"].is_object(),
        "{other_fields}"
    );

    // Server-side apply of a client-side-applied object takes it over.
    prints(
        kubectl,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            path_str(&examples_dir().join("dns.yaml")),
        ],
        &format!("{NNCP}/dns serverside-applied"),
    )
    .await;

    let invalid = kubectl
        .run_stdin(
            &["apply", "--server-side", "-f", "-"],
            &policy("ssa", json!("most")).to_string(),
        )
        .await
        .failed();
    assert!(invalid.stderr.contains("spec.maxUnavailable"), "{invalid}");
}

/// `kubectl get -w --output-watch-events -o json` shows the object, then
/// a change made by another kubectl.
async fn watch(kubectl: &Kubectl) {
    apply(kubectl, &policy("watched", json!(1))).await.ok();
    let mut watcher = kubectl
        .spawn(&[
            "get",
            "nncp",
            "watched",
            "-w",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .unwrap();

    let first: Value =
        serde_json::from_str(&watcher.next_line(LINE_TIMEOUT).await.unwrap()).unwrap();
    assert_eq!(first["type"], "ADDED", "{first}");
    assert_eq!(first["object"]["metadata"]["name"], "watched");

    kubectl
        .run(&["label", "nncp", "watched", "round=1"])
        .await
        .ok();
    let modified = loop {
        let line = watcher.next_line(LINE_TIMEOUT).await.unwrap();
        let event: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(event["object"]["metadata"]["name"], "watched", "{event}");
        if event["type"] == "MODIFIED" {
            break event;
        }
    };
    assert_eq!(
        modified["object"]["metadata"]["labels"]["round"], "1",
        "{modified}"
    );

    kubectl.run(&["delete", "nncp", "watched"]).await.ok();
    let deleted: Value =
        serde_json::from_str(&watcher.next_line(LINE_TIMEOUT).await.unwrap()).unwrap();
    assert_eq!(deleted["type"], "DELETED", "{deleted}");
    watcher.stop().await;

    // Plain table output of a watch over all policies: a row per change.
    apply(kubectl, &policy("watched-table", json!(1)))
        .await
        .ok();
    let mut table = kubectl
        .spawn(&[
            "get",
            "nncp",
            "-w",
            "--field-selector",
            "metadata.name=watched-table",
        ])
        .unwrap();
    let head = table.next_line(LINE_TIMEOUT).await.unwrap();
    assert!(head.starts_with("NAME "), "{head}");
    let row = table.next_line(LINE_TIMEOUT).await.unwrap();
    assert!(row.starts_with("watched-table "), "{row}");
    kubectl
        .run(&["annotate", "nncp", "watched-table", "round=2"])
        .await
        .ok();
    let changed = table.next_line(LINE_TIMEOUT).await.unwrap();
    assert!(changed.starts_with("watched-table "), "{changed}");
    table.stop().await;
}

/// `kubectl wait --for=condition=Available` on a policy whose status is
/// written through the status subresource, honouring the condition's
/// `observedGeneration`; `--for=jsonpath` and `--for=delete`.
async fn wait(kubectl: &Kubectl) {
    apply(kubectl, &policy("waited", json!(1))).await.ok();

    let available = |generation: u64| {
        json!({"status": {"conditions": [{
            "type": "Available",
            "status": "True",
            "reason": "SuccessfullyConfigured",
            "message": "1/1 nodes successfully configured",
            "lastHeartbeatTime": "2024-01-01T00:00:00Z",
            "lastTransitionTime": "2024-01-01T00:00:00Z",
            "observedGeneration": generation
        }]}})
        .to_string()
    };
    let condition_met = format!("{NNCP}/waited condition met");
    prints(
        kubectl,
        &[
            "patch",
            "nncp",
            "waited",
            "--subresource=status",
            "--type",
            "merge",
            "-p",
            &available(1),
        ],
        &format!("{NNCP}/waited patched"),
    )
    .await;
    prints(
        kubectl,
        &[
            "wait",
            "--for=condition=Available",
            "nncp/waited",
            "--timeout=30s",
        ],
        &condition_met,
    )
    .await;

    let table = kubectl.run(&["get", "nncp", "waited"]).await.ok();
    let row: Vec<&str> = table
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..3],
        ["waited", "Available", "SuccessfullyConfigured"],
        "{table}"
    );

    // A spec change makes the condition stale: wait times out ...
    kubectl
        .run(&patch(
            "waited",
            "merge",
            r#"{"spec":{"maxUnavailable":2}}"#,
        ))
        .await
        .ok();
    fails_with(
        kubectl,
        &[
            "wait",
            "--for=condition=Available",
            "nncp/waited",
            "--timeout=2s",
        ],
        "timed out waiting for the condition",
    )
    .await;

    // ... until the status observes generation 2, while kubectl waits.
    let mut waiting = kubectl
        .spawn(&[
            "wait",
            "--for=condition=Available",
            "nncp/waited",
            "--timeout=60s",
        ])
        .unwrap();
    kubectl
        .run(&[
            "patch",
            "nncp",
            "waited",
            "--subresource=status",
            "--type",
            "merge",
            "-p",
            &available(2),
        ])
        .await
        .ok();
    let met = waiting.finish(LINE_TIMEOUT).await.unwrap().ok();
    assert_eq!(met.stdout.trim(), condition_met, "{met}");

    let by_path = kubectl
        .run(&[
            "wait",
            "--for=jsonpath={.spec.maxUnavailable}=2",
            "nncp/waited",
            "--timeout=30s",
        ])
        .await
        .ok();
    assert!(by_path.stdout.contains("condition met"), "{by_path}");

    // (kubectl also exits 0, silently, if the object is gone before it looks.)
    let mut until_deleted = kubectl
        .spawn(&["wait", "--for=delete", "nncp/waited", "--timeout=60s"])
        .unwrap();
    kubectl.run(&["delete", "nncp", "waited"]).await.ok();
    until_deleted.finish(LINE_TIMEOUT).await.unwrap().ok();
}

/// `kubectl delete` by name, by label, by file, with a finalizer.
async fn delete(kubectl: &Kubectl) {
    examples_applied(kubectl).await;
    node_a_created(kubectl).await;
    prints(
        kubectl,
        &["delete", "nncp", "dns"],
        &format!("{NNCP} \"dns\" deleted"),
    )
    .await;
    assert_not_found(
        kubectl.run(&["get", "nncp", "dns"]).await,
        "nodenetworkconfigurationpolicies",
        "dns",
    );
    assert_not_found(
        kubectl.run(&["delete", "nncp", "dns"]).await,
        "nodenetworkconfigurationpolicies",
        "dns",
    );

    prints(
        kubectl,
        &["delete", "nncp", "-l", "example=linux-bridge"],
        &format!("{NNCP} \"linux-bridge\" deleted"),
    )
    .await;

    let by_file = kubectl
        .run(&[
            "delete",
            "-f",
            path_str(&examples_dir()),
            "--ignore-not-found",
        ])
        .await
        .ok();
    assert!(
        by_file.stdout.contains(&format!("{NNCP} \"vrf\" deleted")),
        "{by_file}"
    );
    let left = kubectl.run(&["get", "nncp", "-o", "name"]).await.ok();
    for file in example_files() {
        let name = read_yaml(&file)["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            !left
                .stdout
                .lines()
                .any(|line| line == format!("{NNCP}/{name}")),
            "{name} left:\n{left}"
        );
    }

    // A finalizer holds the object until it is removed.
    let mut held = policy("held", json!(1));
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    apply(kubectl, &held).await.ok();
    kubectl
        .run(&["delete", "nncp", "held", "--wait=false"])
        .await
        .ok();
    let stamp = jsonpath(kubectl, "nncp", "held", "{.metadata.deletionTimestamp}").await;
    assert!(
        !stamp.is_empty(),
        "deletionTimestamp set while a finalizer holds the object"
    );
    kubectl
        .run(&patch(
            "held",
            "json",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ))
        .await
        .ok();
    assert_not_found(
        kubectl.run(&["get", "nncp", "held"]).await,
        "nodenetworkconfigurationpolicies",
        "held",
    );

    let everything = kubectl.run(&["delete", "nmstate", "--all"]).await.ok();
    assert!(
        everything
            .stdout
            .contains("nodenetworkstate.nmstate.io \"node-a\" deleted"),
        "{everything}"
    );
    let none = kubectl.run(&["get", "nmstate"]).await.ok();
    assert_eq!(none.stdout, "", "{none}");
}

/// Every kubectl minor on the machine (1.27–1.33, `kubectl.1.NN` beside
/// the machine's kubectl) does the everyday verbs against the server: 1.27
/// and 1.28 read the OpenAPI v2 document as protobuf before they apply or
/// explain. A minor that is not on the machine is skipped with a message;
/// every minor runs even when an earlier one failed, and the test names
/// the minors that failed (each one's panic message is printed above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kubectl_minor_does_the_everyday_verbs() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&["--controller=false"])
        .await
        .unwrap();
    let mut tried = Vec::new();
    let mut failed = Vec::new();
    for minor in 27..=33 {
        let Some(binary) = nmstate_e2e::kubectl::minor_binary(minor) else {
            eprintln!("kubectl 1.{minor} is not on this machine: skipped");
            continue;
        };
        let kubectl = Kubectl::with_binary(&binary, &server.admin_kubeconfig()).unwrap();
        let name = format!("kubectl-1-{minor}");
        let verbs = everyday_verbs(&kubectl, &name);
        if AssertUnwindSafe(verbs).catch_unwind().await.is_err() {
            eprintln!("== FAILED: kubectl 1.{minor}");
            failed.push(minor);
        }
        tried.push(minor);
    }
    assert!(
        !tried.is_empty(),
        "no kubectl.1.NN found beside the machine's kubectl"
    );
    eprintln!("kubectl minors tried: {tried:?}");
    assert!(failed.is_empty(), "failed kubectl minors: {failed:?}");
}

async fn everyday_verbs(kubectl: &Kubectl, name: &str) {
    let manifest = policy(name, json!(1));
    let created = apply(kubectl, &manifest).await.ok();
    assert!(
        created.stdout.contains(&format!("{NNCP}/{name} created")),
        "{created}"
    );
    assert_eq!(
        get_json(kubectl, "nncp", name).await["spec"],
        manifest["spec"]
    );

    let explained = kubectl
        .run(&["explain", "nncp.spec.maxUnavailable"])
        .await
        .ok();
    assert!(
        explained.stdout.contains("maxUnavailable") && explained.stdout.contains("IntOrString"),
        "{explained}"
    );

    let mut changed = manifest.clone();
    changed["spec"]["desiredState"]["interfaces"][0]["mtu"] = json!(1400);
    let configured = apply(kubectl, &changed).await.ok();
    assert!(
        configured
            .stdout
            .contains(&format!("{NNCP}/{name} configured")),
        "{configured}"
    );
    assert_eq!(
        jsonpath(
            kubectl,
            "nncp",
            name,
            "{.spec.desiredState.interfaces[0].mtu}"
        )
        .await,
        "1400"
    );

    // `diff` exits 1 when the live object differs from the file.
    let diff = kubectl
        .run_stdin(&["diff", "-f", "-"], &manifest.to_string())
        .await;
    assert_eq!(diff.code, Some(1), "{diff}");
    assert!(diff.stdout.contains("mtu: 1400"), "{diff}");

    kubectl
        .run(&["label", "nncp", name, "verbs=everyday"])
        .await
        .ok();
    let labelled = kubectl
        .run(&["get", "nncp", "-l", "verbs=everyday", "-o", "name"])
        .await
        .ok();
    assert!(
        labelled
            .stdout
            .lines()
            .any(|line| line.ends_with(&format!("/{name}"))),
        "{labelled}"
    );

    let applied = kubectl
        .run_stdin(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=everyday",
                "-f",
                "-",
            ],
            &manifest.to_string(),
        )
        .await
        .ok();
    assert!(
        applied
            .stdout
            .contains(&format!("{NNCP}/{name} serverside-applied")),
        "{applied}"
    );

    let deleted = kubectl
        .run_stdin(&["delete", "-f", "-"], &manifest.to_string())
        .await
        .ok();
    assert!(
        deleted
            .stdout
            .contains(&format!("{NNCP} \"{name}\" deleted")),
        "{deleted}"
    );
    assert_not_found(
        kubectl.run(&["get", "nncp", name]).await,
        "nodenetworkconfigurationpolicies",
        name,
    );
}
