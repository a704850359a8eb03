//! nmstate.io through a real kube-apiserver's aggregation layer: the
//! acceptance suite of the project's main claim.
//!
//! One cluster from `hack/local-up.sh --kube` (etcd, upstream
//! kube-apiserver built by `hack/build-kube-apiserver.sh`, nmstate-apiserver
//! registered with deploy/'s APIServices and RBAC, two namespace nodes with
//! NetworkManager whose agents hold service-account tokens bound to Pods on
//! their Nodes) serves every check below, one after another, each through
//! kube-apiserver's URL: kubectl, curl and the Python `kubernetes` client
//! never talk to nmstate-apiserver directly, except the one check that a
//! direct caller cannot pose as the front proxy.
//!
//! Nothing here is skipped: without Go or the Go module proxy the build
//! fails and so does the suite, saying why. Needs root (network
//! namespaces) and the debug binaries (`cargo build -p nmstate-apiserver
//! -p nmstate-agent`).
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use nmstate_e2e::{cluster::wait_for_condition, kubectl::Kubectl, netns::LocalUp};
use serde_json::{Value, json};

/// How long an eventual outcome may take before the check fails (a bound
/// against hangs, not a measurement).
const EVENTUALLY: Duration = Duration::from_secs(120);

/// The two versions the APIServices register.
const APISERVICES: [&str; 2] = ["v1.nmstate.io", "v1beta1.nmstate.io"];

#[tokio::test]
async fn nmstate_io_through_a_real_kube_apiserver() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = LocalUp::start_kube(2, &[]).await?;
    let admin = Kubectl::new(&cluster.admin_kubeconfig())?;
    let result = checks(&cluster, &admin).await;
    if let Err(error) = &result {
        eprintln!(
            "--- local-up\n{}\n--- nmstate-apiserver\n{}\n--- kube-apiserver (tail)\n{}",
            cluster.log(),
            tail(&cluster.process_log("apiserver"), 60),
            tail(&cluster.process_log("kube-apiserver"), 40),
        );
        eprintln!("FAILED: {error:#}");
    }
    result
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn checks(cluster: &LocalUp, admin: &Kubectl) -> Result<()> {
    apiservices_are_available(admin)
        .await
        .context("APIServices")?;
    discovery_lists_nmstate_io(cluster, admin)
        .await
        .context("discovery")?;
    explain_reads_the_aggregated_openapi(admin)
        .await
        .context("explain")?;
    kubectl_verbs(admin).await.context("kubectl verbs")?;
    python_client(cluster).await.context("Python client")?;
    let viewer_token = rbac_is_decided_by_kube_apiserver(cluster, admin)
        .await
        .context("RBAC")?;
    a_direct_caller_cannot_pose_as_the_front_proxy(cluster)
        .await
        .context("front proxy")?;
    direct_tokens_are_reviewed_by_kube_apiserver(cluster, &viewer_token)
        .await
        .context("direct bearer token")?;
    nodes_are_reported(admin).await.context("node states")?;
    the_upstream_linux_bridge_example_rolls_out(cluster, admin)
        .await
        .context("linux-bridge rollout")?;
    events_tell_failures_and_finished_rollouts(admin)
        .await
        .context("events")?;
    node_restriction_with_bound_tokens(cluster, admin)
        .await
        .context("node restriction")?;
    Ok(())
}

/// Polls `check` until it returns true, within [`EVENTUALLY`].
async fn eventually<F, Fut>(what: &str, check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    nmstate_e2e::cluster::eventually_within(what, EVENTUALLY, check).await
}

/// `kubectl get nnce -l nmstate.io/policy=<policy> -o name`.
async fn enactments_of(admin: &Kubectl, policy: &str) -> nmstate_e2e::kubectl::KubectlOutput {
    let selector = format!("nmstate.io/policy={policy}");
    admin
        .run(&["get", "nnce", "-l", &selector, "-o", "name"])
        .await
        .ok()
}

/// A policy that selects no node (`nodeSelector` on a label no node has),
/// so that API checks never touch a node's network.
fn idle_policy(name: &str, max_unavailable: u32) -> String {
    json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": name, "labels": {"suite": "aggregated"}},
        "spec": {
            "nodeSelector": {"nmstate.io/no-such-node": "true"},
            "maxUnavailable": max_unavailable,
            "desiredState": {"interfaces": [{"name": "eth2", "type": "ethernet", "state": "up"}]},
        },
    })
    .to_string()
}

async fn apiservices_are_available(admin: &Kubectl) -> Result<()> {
    for name in APISERVICES {
        let apiservice = admin
            .run(&["get", "apiservice", name, "-o", "json"])
            .await
            .ok()
            .json();
        let available = apiservice["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|condition| condition["type"] == "Available")
            .cloned()
            .unwrap_or_default();
        ensure!(available["status"] == "True", "{name}: {apiservice:#}");
        ensure!(
            apiservice["spec"]["service"]["name"] == "nmstate-apiserver",
            "{name} is deploy/'s: {apiservice:#}"
        );
    }
    Ok(())
}

/// curl to kube-apiserver's URL with the admin's client certificate:
/// `(status code, body)`.
async fn curl(
    cluster: &LocalUp,
    method: &str,
    path: &str,
    extra: &[&str],
) -> Result<(u16, String)> {
    let url = format!("{}{path}", cluster.server_url()?);
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "-X", method, "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(cluster.pki("ca.crt"))
        .arg("--cert")
        .arg(cluster.pki("admin.crt"))
        .arg("--key")
        .arg(cluster.pki("admin.key"))
        .args(extra)
        .arg(&url)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running curl (hack/setup-deps.sh installs it)")?;
    ensure!(
        output.status.success(),
        "curl {method} {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout)?;
    let (body, code) = text.rsplit_once('\n').context("curl printed no status")?;
    Ok((code.parse()?, body.to_owned()))
}

async fn discovery_lists_nmstate_io(cluster: &LocalUp, admin: &Kubectl) -> Result<()> {
    let resources = admin
        .run(&["api-resources", "--api-group=nmstate.io"])
        .await
        .ok();
    for (name, short, kind) in [
        (
            "nodenetworkconfigurationenactments",
            "nnce",
            "NodeNetworkConfigurationEnactment",
        ),
        (
            "nodenetworkconfigurationpolicies",
            "nncp",
            "NodeNetworkConfigurationPolicy",
        ),
        ("nodenetworkstates", "nns", "NodeNetworkState"),
    ] {
        let line = resources
            .stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name))
            .with_context(|| format!("{name} missing:\n{resources}"))?;
        let columns: Vec<&str> = line.split_whitespace().collect();
        ensure!(
            columns == [name, short, "nmstate.io/v1", "false", kind],
            "{line}"
        );
    }

    let groups: Value =
        serde_json::from_str(&admin.run(&["get", "--raw", "/apis"]).await.ok().stdout)?;
    let group = groups["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|group| group["name"] == "nmstate.io")
        .with_context(|| format!("nmstate.io not in /apis: {groups}"))?;
    ensure!(group["preferredVersion"]["version"] == "v1", "{group}");
    let versions: Vec<&str> = group["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|version| version["version"].as_str())
        .collect();
    ensure!(versions == ["v1", "v1beta1"], "{group}");

    // Aggregated discovery (what kubectl 1.30+ reads first).
    let (code, body) = curl(
        cluster,
        "GET",
        "/apis",
        &[
            "-H",
            "Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        ],
    )
    .await?;
    ensure!(code == 200, "{code} {body}");
    let list: Value = serde_json::from_str(&body)?;
    ensure!(list["kind"] == "APIGroupDiscoveryList", "{body}");
    let group = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|group| group["metadata"]["name"] == "nmstate.io")
        .with_context(|| format!("nmstate.io not in aggregated discovery: {body}"))?;
    let v1 = &group["versions"][0];
    ensure!(v1["version"] == "v1", "{group}");
    let policies = v1["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|resource| resource["resource"] == "nodenetworkconfigurationpolicies")
        .with_context(|| format!("no policies in {group}"))?;
    let subresources: Vec<&str> = policies["subresources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|subresource| subresource["subresource"].as_str())
        .collect();
    for subresource in ["status", "render", "dry-run"] {
        ensure!(subresources.contains(&subresource), "{policies}");
    }
    Ok(())
}

async fn explain_reads_the_aggregated_openapi(admin: &Kubectl) -> Result<()> {
    // kubectl explain reads OpenAPI v3 by default, v2 when asked.
    for (args, words) in [
        (
            vec!["explain", "nncp.spec.desiredState"],
            vec![
                "KIND:       NodeNetworkConfigurationPolicy",
                "FIELD: desiredState <Object>",
                "The nmstate desired state",
            ],
        ),
        (
            vec!["explain", "nns.status"],
            vec![
                "KIND:       NodeNetworkState",
                "FIELD: status",
                "currentState",
            ],
        ),
        (
            vec![
                "explain",
                "nncp.spec.desiredState",
                "--output=plaintext-openapiv2",
            ],
            vec![
                "KIND:     NodeNetworkConfigurationPolicy",
                "The nmstate desired state",
            ],
        ),
        (
            vec!["explain", "nns.status", "--output=plaintext-openapiv2"],
            vec![
                "KIND:     NodeNetworkState",
                "RESOURCE: status <Object>",
                "currentState",
            ],
        ),
    ] {
        let output = admin.run(&args).await.ok();
        for word in words {
            ensure!(output.stdout.contains(word), "{word:?} missing:\n{output}");
        }
    }
    Ok(())
}

async fn kubectl_verbs(admin: &Kubectl) -> Result<()> {
    let created = admin
        .run_stdin(&["apply", "-f", "-"], &idle_policy("agg-verbs", 1))
        .await
        .ok();
    ensure!(
        created.stdout.trim() == "nodenetworkconfigurationpolicy.nmstate.io/agg-verbs created",
        "{created}"
    );

    // Server-side printing, all columns.
    let table = admin.run(&["get", "nncp", "agg-verbs"]).await.ok();
    let header: Vec<&str> = table
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    ensure!(
        header == ["NAME", "STATUS", "REASON", "NODES", "AGE"],
        "{table}"
    );
    eventually("agg-verbs gets a status from the controller", || async {
        let policy = admin
            .run(&["get", "nncp", "agg-verbs", "-o", "json"])
            .await
            .ok()
            .json();
        Ok(policy["status"]["conditions"]
            .as_array()
            .is_some_and(|c| !c.is_empty()))
    })
    .await?;

    // Server-side apply from another manager: a conflict on the field
    // client-side apply owns, then forced.
    let mut changed: Value = serde_json::from_str(&idle_policy("agg-verbs", 2))?;
    changed["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("labels");
    let conflict = admin
        .run_stdin(
            &[
                "apply",
                "--server-side",
                "--field-manager=agg-other",
                "-f",
                "-",
            ],
            &changed.to_string(),
        )
        .await
        .failed();
    ensure!(
        conflict
            .stderr
            .contains("Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\"")
            && conflict.stderr.contains(".spec.maxUnavailable"),
        "{conflict}"
    );
    admin
        .run_stdin(
            &[
                "apply",
                "--server-side",
                "--field-manager=agg-other",
                "--force-conflicts",
                "-f",
                "-",
            ],
            &changed.to_string(),
        )
        .await
        .ok();

    // Patches: merge and JSON, then a watch that sees the next change.
    admin
        .run(&[
            "patch",
            "nncp",
            "agg-verbs",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"patched":"merge"}}}"#,
        ])
        .await
        .ok();
    admin
        .run(&[
            "patch",
            "nncp",
            "agg-verbs",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/maxUnavailable","value":3}]"#,
        ])
        .await
        .ok();
    let policy = admin
        .run(&["get", "nncp", "agg-verbs", "-o", "json"])
        .await
        .ok()
        .json();
    ensure!(policy["spec"]["maxUnavailable"] == 3, "{policy:#}");
    ensure!(
        policy["metadata"]["labels"]["patched"] == "merge",
        "{policy:#}"
    );

    let mut watch = admin.spawn(&[
        "get",
        "nncp",
        "agg-verbs",
        "-w",
        "-o",
        "custom-columns=NAME:.metadata.name,MAX:.spec.maxUnavailable",
        "--no-headers",
    ])?;
    let first = watch.next_line(Duration::from_secs(30)).await?;
    ensure!(
        first.split_whitespace().collect::<Vec<_>>() == ["agg-verbs", "3"],
        "{first}"
    );
    admin
        .run(&[
            "patch",
            "nncp",
            "agg-verbs",
            "--type=merge",
            "-p",
            r#"{"spec":{"maxUnavailable":4}}"#,
        ])
        .await
        .ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = watch.next_line(Duration::from_secs(30)).await?;
        if line.split_whitespace().collect::<Vec<_>>() == ["agg-verbs", "4"] {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the watch never showed maxUnavailable 4"
        );
    }
    watch.stop().await;

    // Dry run on the server: answered, nothing stored.
    let dry = admin
        .run_stdin(
            &["create", "--dry-run=server", "-f", "-"],
            &idle_policy("agg-dry", 1),
        )
        .await
        .ok();
    ensure!(
        dry.stdout.contains("agg-dry created (server dry run)"),
        "{dry}"
    );
    let missing = admin.run(&["get", "nncp", "agg-dry"]).await.failed();
    ensure!(
        missing.stderr.contains("Error from server (NotFound): nodenetworkconfigurationpolicies.nmstate.io \"agg-dry\" not found"),
        "{missing}"
    );

    let deleted = admin.run(&["delete", "nncp", "agg-verbs"]).await.ok();
    ensure!(
        deleted.stdout.trim() == "nodenetworkconfigurationpolicy.nmstate.io \"agg-verbs\" deleted",
        "{deleted}"
    );
    Ok(())
}

const PYTHON: &str = r#"
import sys
from kubernetes import client, config
config.load_kube_config(config_file=sys.argv[1])
groups = [g.name for g in client.ApisApi().get_api_versions().groups]
assert "nmstate.io" in groups, groups
api = client.CustomObjectsApi()
G, V, P = "nmstate.io", "v1", "nodenetworkconfigurationpolicies"
policy = {
    "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
    "metadata": {"name": "agg-python", "labels": {"suite": "python"}},
    "spec": {"nodeSelector": {"nmstate.io/no-such-node": "true"}, "maxUnavailable": 1,
             "desiredState": {"interfaces": []}},
}
created = api.create_cluster_custom_object(G, V, P, policy)
assert created["metadata"]["uid"], created
got = api.get_cluster_custom_object(G, V, P, "agg-python")
assert got["spec"]["maxUnavailable"] == 1, got
api.patch_cluster_custom_object(G, V, P, "agg-python", {"spec": {"maxUnavailable": 2}})
listed = api.list_cluster_custom_object(G, V, P, label_selector="suite=python")["items"]
assert [p["metadata"]["name"] for p in listed] == ["agg-python"], listed
assert listed[0]["spec"]["maxUnavailable"] == 2, listed
old = api.get_cluster_custom_object("nmstate.io", "v1beta1", P, "agg-python")
assert old["apiVersion"] == "nmstate.io/v1beta1", old
api.delete_cluster_custom_object(G, V, P, "agg-python")
print("python: ok")
"#;

async fn python_client(cluster: &LocalUp) -> Result<()> {
    let output = tokio::process::Command::new("python3")
        .args(["-c", PYTHON])
        .arg(cluster.admin_kubeconfig())
        .stdin(Stdio::null())
        .output()
        .await
        .context("running python3 (hack/setup-deps.sh installs it)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success() && stdout.contains("python: ok"),
        "{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    Ok(())
}

/// A kubeconfig at `DIR/kubeconfigs/NAME.kubeconfig` for kube-apiserver's
/// URL with `token`.
async fn token_kubeconfig(cluster: &LocalUp, name: &str, token: &str) -> Result<PathBuf> {
    let path = cluster
        .state_dir()
        .join(format!("kubeconfigs/{name}.kubeconfig"));
    let server = cluster.server_url()?;
    let ca = cluster.pki("ca.crt");
    let ca = ca.to_str().context("CA path")?;
    for args in [
        vec![
            "config",
            "set-cluster",
            "local-up",
            "--server",
            &server,
            "--certificate-authority",
            ca,
            "--embed-certs=true",
        ],
        vec!["config", "set-credentials", name, "--token", token],
        vec![
            "config",
            "set-context",
            "local-up",
            "--cluster",
            "local-up",
            "--user",
            name,
        ],
        vec!["config", "use-context", "local-up"],
    ] {
        let output = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&path)
            .args(&args)
            .output()
            .await?;
        ensure!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(path)
}

/// Returns the viewer's token.
async fn rbac_is_decided_by_kube_apiserver(cluster: &LocalUp, admin: &Kubectl) -> Result<String> {
    let mut users = Vec::new();
    let mut tokens = Vec::new();
    for (account, role) in [("agg-viewer", "view"), ("agg-editor", "edit")] {
        admin
            .run(&["create", "serviceaccount", account, "-n", "default"])
            .await
            .ok();
        admin
            .run(&[
                "create",
                "clusterrolebinding",
                account,
                &format!("--clusterrole={role}"),
                &format!("--serviceaccount=default:{account}"),
            ])
            .await
            .ok();
        let token = admin
            .run(&["create", "token", account, "-n", "default"])
            .await
            .ok();
        let kubeconfig = token_kubeconfig(cluster, account, token.stdout.trim()).await?;
        users.push(Kubectl::new(&kubeconfig)?);
        tokens.push(token.stdout.trim().to_owned());
    }
    let [viewer, editor] = &users[..] else {
        unreachable!()
    };

    // view: reads, but may not write; kube-apiserver says so itself.
    eventually("view lists policies (aggregated ClusterRole)", || async {
        Ok(viewer.run(&["get", "nncp"]).await.success())
    })
    .await?;
    let refused = viewer
        .run_stdin(&["create", "-f", "-"], &idle_policy("agg-by-viewer", 1))
        .await
        .failed();
    ensure!(
        refused.stderr.contains(
            "Error from server (Forbidden): error when creating \"STDIN\": nodenetworkconfigurationpolicies.nmstate.io is forbidden: User \"system:serviceaccount:default:agg-viewer\" cannot create resource \"nodenetworkconfigurationpolicies\" in API group \"nmstate.io\" at the cluster scope"
        ),
        "{refused}"
    );
    for (user, verb, answer) in [
        (viewer, "list", "yes"),
        (viewer, "create", "no"),
        (editor, "create", "yes"),
    ] {
        let output = user
            .run(&[
                "auth",
                "can-i",
                verb,
                "nodenetworkconfigurationpolicies.nmstate.io",
            ])
            .await;
        ensure!(output.stdout.trim() == answer, "can-i {verb}: {output}");
    }
    // edit: creates and deletes.
    editor
        .run_stdin(&["create", "-f", "-"], &idle_policy("agg-by-editor", 1))
        .await
        .ok();
    editor.run(&["delete", "nncp", "agg-by-editor"]).await.ok();
    Ok(tokens.swap_remove(0))
}

/// curl from the hub straight to nmstate-apiserver (not through
/// kube-apiserver): `(status code, body)`.
async fn curl_direct(
    cluster: &LocalUp,
    method: &str,
    path: &str,
    extra: &[&str],
) -> Result<(u16, String)> {
    let hub = cluster.hub()?;
    let output = tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &hub,
            "curl",
            "-sS",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(cluster.pki("nmstate-ca.crt"))
        .args(extra)
        .arg(format!("https://10.77.0.1:6443{path}"))
        .stdin(Stdio::null())
        .output()
        .await?;
    ensure!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout)?;
    let (body, code) = text.rsplit_once('\n').context("curl printed no status")?;
    Ok((code.parse()?, body.to_owned()))
}

/// A bearer token sent straight to nmstate-apiserver: it asks
/// kube-apiserver (TokenReview, then SubjectAccessReview).
async fn direct_tokens_are_reviewed_by_kube_apiserver(
    cluster: &LocalUp,
    token: &str,
) -> Result<()> {
    let bearer = format!("Authorization: Bearer {token}");
    let path = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies";
    let (code, body) = curl_direct(cluster, "GET", path, &["-H", &bearer]).await?;
    ensure!(code == 200, "list with the viewer's token: {code} {body}");
    let policy = idle_policy("agg-direct", 1);
    let (code, body) = curl_direct(
        cluster,
        "POST",
        path,
        &[
            "-H",
            &bearer,
            "-H",
            "Content-Type: application/json",
            "--data",
            &policy,
        ],
    )
    .await?;
    ensure!(code == 403, "create with the viewer's token: {code} {body}");
    let status: Value = serde_json::from_str(&body)?;
    // A denial from kube-apiserver's RBAC carries no reason: the message
    // ends where Kubernetes' own does.
    ensure!(
        status["message"]
            == "nodenetworkconfigurationpolicies.nmstate.io is forbidden: User \"system:serviceaccount:default:agg-viewer\" cannot create resource \"nodenetworkconfigurationpolicies\" in API group \"nmstate.io\" at the cluster scope",
        "{body}"
    );
    let (code, body) = curl_direct(
        cluster,
        "GET",
        path,
        &["-H", "Authorization: Bearer not-a-token"],
    )
    .await?;
    ensure!(code == 401, "an unknown token: {code} {body}");
    Ok(())
}

async fn a_direct_caller_cannot_pose_as_the_front_proxy(cluster: &LocalUp) -> Result<()> {
    // Straight to nmstate-apiserver in the hub, with the user a front proxy
    // would name, but without the front-proxy client certificate.
    let (code, body) = curl_direct(
        cluster,
        "GET",
        "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies",
        &[
            "-H",
            "X-Remote-User: mallory",
            "-H",
            "X-Remote-Group: system:masters",
        ],
    )
    .await?;
    ensure!(code == 401, "{code} {body}");
    let status: Value = serde_json::from_str(&body)?;
    ensure!(status["reason"] == "Unauthorized", "{body}");
    Ok(())
}

async fn nodes_are_reported(admin: &Kubectl) -> Result<()> {
    for node in ["node-1", "node-2"] {
        eventually(&format!("NodeNetworkState {node}"), || async {
            let output = admin.run(&["get", "nns", node, "-o", "json"]).await;
            Ok(output.success() && !output.json()["status"]["currentState"].is_null())
        })
        .await?;
        let state = admin
            .run(&["get", "nns", node, "-o", "json"])
            .await
            .ok()
            .json();
        let uid = admin
            .run(&["get", "node", node, "-o", "jsonpath={.metadata.uid}"])
            .await
            .ok()
            .stdout;
        let owner = &state["metadata"]["ownerReferences"][0];
        ensure!(
            owner["kind"] == "Node" && owner["name"] == node && owner["uid"] == uid.as_str(),
            "NodeNetworkState {node} is owned by its Node {uid}: {:#}",
            state["metadata"]
        );
        ensure!(
            state["metadata"]["labels"]["kubernetes.io/hostname"] == node,
            "the Node's labels are copied: {:#}",
            state["metadata"]
        );
    }
    Ok(())
}

fn upstream_example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/upstream/{name}.yaml"))
}

async fn the_upstream_linux_bridge_example_rolls_out(
    cluster: &LocalUp,
    admin: &Kubectl,
) -> Result<()> {
    let example = upstream_example("linux-bridge");
    admin
        .run(&["apply", "-f", example.to_str().context("path")?])
        .await
        .ok();
    let wait = admin
        .run(&[
            "wait",
            "--for=condition=Available",
            "nncp/linux-bridge",
            "--timeout=180s",
        ])
        .await;
    ensure!(
        wait.success(),
        "{wait}\n{}\n--- node-1\n{}\n--- node-2\n{}",
        admin.run(&["get", "nnce", "-o", "yaml"]).await.stdout,
        tail(&cluster.process_log("node-1"), 30),
        tail(&cluster.process_log("node-2"), 30)
    );
    let table = admin.run(&["get", "nncp", "linux-bridge"]).await.ok();
    ensure!(table.stdout.contains("2/2"), "{table}");
    for i in 1..=2 {
        let node = cluster.node(i)?;
        let link = node
            .ip_link("br1")
            .await?
            .with_context(|| format!("no br1 on node-{i}"))?;
        ensure!(link["linkinfo"]["info_kind"] == "bridge", "{link}");
        let port = node.ip_link("eth1").await?.context("eth1")?;
        ensure!(port["master"] == "br1", "{port}");
    }

    // render and dry-run, through kube-apiserver's URL.
    let base = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies/linux-bridge";
    let (code, body) = curl(cluster, "GET", &format!("{base}/render?node=node-1"), &[]).await?;
    ensure!(code == 200, "render: {code} {body}");
    let rendered: Value = serde_json::from_str(&body)?;
    ensure!(rendered["apiVersion"] == "nmstate.io/v1", "{body}");
    ensure!(body.contains("br1"), "{body}");
    let (code, body) = curl(
        cluster,
        "POST",
        &format!("{base}/dry-run"),
        &["-H", "Content-Type: application/json", "--data", ""],
    )
    .await?;
    ensure!(code == 200, "dry-run: {code} {body}");
    ensure!(body.contains("node-1") && body.contains("node-2"), "{body}");
    Ok(())
}

/// The events of `kind` `name` in namespace default, as core/v1 Events
/// (what `kubectl get events` and `kubectl describe` read).
async fn events_of(admin: &Kubectl, kind: &str, name: &str) -> Vec<Value> {
    let selector = format!("involvedObject.kind={kind},involvedObject.name={name}");
    let events = admin
        .run(&[
            "get",
            "events",
            "-n",
            "default",
            "--field-selector",
            &selector,
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    events["items"].as_array().cloned().unwrap_or_default()
}

/// The events of `kind` `name` as `type reason: message (xN)` lines, N the
/// series count (1 without a series), sorted; fails when two Event objects
/// share an object, reason and message (repeats must grow one series).
async fn event_lines(admin: &Kubectl, kind: &str, name: &str) -> Result<Vec<String>> {
    let events = events_of(admin, kind, name).await;
    let mut lines: Vec<String> = events
        .iter()
        .map(|event| {
            let count = event["series"]["count"].as_u64().unwrap_or(1);
            format!(
                "{} {}: {} (x{count})",
                event["type"].as_str().unwrap_or_default(),
                event["reason"].as_str().unwrap_or_default(),
                event["message"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    lines.sort();
    let mut keys: Vec<&str> = lines
        .iter()
        .map(|line| {
            line.rsplit_once(" (x")
                .map_or(line.as_str(), |(key, _)| key)
        })
        .collect();
    let total = keys.len();
    keys.dedup();
    ensure!(
        keys.len() == total,
        "more than one Event object per (object, reason, message) for {kind} {name}: {lines:#?}"
    );
    Ok(lines)
}

/// Polls until the events of `kind` `name` are `expected` (see
/// [`event_lines`]).
async fn expect_events(admin: &Kubectl, kind: &str, name: &str, expected: &[String]) -> Result<()> {
    let last = std::sync::Mutex::new(Vec::new());
    let result = eventually(&format!("the events of {kind} {name}"), || async {
        let lines = event_lines(admin, kind, name).await?;
        let done = lines.as_slice() == expected;
        *last.lock().unwrap() = lines;
        Ok(done)
    })
    .await;
    let last = last.into_inner().unwrap();
    result.with_context(|| format!("expected {expected:#?}, last seen {last:#?}"))
}

/// Whether a line of `text` contains every one of `parts`.
fn has_line(text: &str, parts: &[&str]) -> bool {
    text.lines()
        .any(|line| parts.iter().all(|part| line.contains(part)))
}

/// Policy and enactment events with upstream's reasons and messages,
/// written by the policy controller through kube-apiserver's events API,
/// shown by `kubectl describe` and `kubectl get events`; a repeat grows
/// the Event's series instead of making another object.
async fn events_tell_failures_and_finished_rollouts(admin: &Kubectl) -> Result<()> {
    const POLICY: &str = "NodeNetworkConfigurationPolicy";
    const ENACTMENT: &str = "NodeNetworkConfigurationEnactment";
    // linux-bridge rolled out (the check before): a Normal event.
    let finished = "Normal SuccessfullyConfigured: rollout finished: the policy is configured on its nodes (x1)".to_owned();
    expect_events(admin, POLICY, "linux-bridge", &[finished]).await?;
    let described = admin.run(&["describe", "nncp", "linux-bridge"]).await.ok();
    ensure!(
        has_line(
            &described.stdout,
            &[
                "Normal",
                "SuccessfullyConfigured",
                "nmstate.io/policy-controller"
            ]
        ),
        "{described}"
    );

    // An ethernet interface no node has: nmstate refuses it on every node.
    // One node at a time: node-1 fails after its retries, node-2 is
    // aborted.
    let bad = |max_unavailable: Value| {
        json!({
            "apiVersion": "nmstate.io/v1",
            "kind": "NodeNetworkConfigurationPolicy",
            "metadata": {"name": "bad"},
            "spec": {
                "maxUnavailable": max_unavailable,
                "desiredState": {"interfaces": [{"name": "bad1", "type": "ethernet", "state": "up"}]},
            },
        })
        .to_string()
    };
    // Degraded for the policy's current generation.
    let degraded = || wait_for_condition(admin, "nncp/bad", "Degraded", EVENTUALLY);
    admin
        .run_stdin(&["apply", "-f", "-"], &bad(json!("50%")))
        .await
        .ok();
    degraded().await?;
    let expected = |count: u32| {
        (
            vec![
                format!(
                    "Warning ReconcileFailed: reconciliation of enactment \"node-1.bad\" has failed after 5 retries (x{count})"
                ),
                format!(
                    "Warning ReconcileFailed: reconciliation of enactment \"node-2.bad\" has aborted (x{count})"
                ),
            ],
            vec![format!(
                "Warning FailedToConfigure: failed to configure node node-1 after 5 retries; rolled back (the error is in the Failing condition) (x{count})"
            )],
            vec![format!(
                "Warning ConfigurationAborted: reconciliation of enactment \"node-2.bad\" has aborted (x{count})"
            )],
        )
    };
    let check = |count: u32| async move {
        let (policy, failed, aborted) = expected(count);
        expect_events(admin, POLICY, "bad", &policy).await?;
        expect_events(admin, ENACTMENT, "node-1.bad", &failed).await?;
        expect_events(admin, ENACTMENT, "node-2.bad", &aborted).await
    };
    check(1).await?;

    // The policy's events name the enactment they are about; the
    // enactment's, its Node.
    for event in events_of(admin, POLICY, "bad").await {
        let enactment = event["related"]["name"].as_str().unwrap_or_default();
        ensure!(
            event["related"]["kind"] == ENACTMENT
                && event["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(enactment),
            "{event:#}"
        );
    }
    let event = &events_of(admin, ENACTMENT, "node-1.bad").await[0];
    ensure!(
        event["related"]["kind"] == "Node" && event["related"]["name"] == "node-1",
        "{event:#}"
    );

    // Where users look: describe (which finds events by the object's uid)
    // and get events.
    let described = admin.run(&["describe", "nncp", "bad"]).await.ok();
    ensure!(
        has_line(
            &described.stdout,
            &[
                "Warning",
                "ReconcileFailed",
                "reconciliation of enactment \"node-1.bad\" has failed after 5 retries"
            ]
        ),
        "{described}"
    );
    let described = admin.run(&["describe", "nnce", "node-1.bad"]).await.ok();
    ensure!(
        has_line(
            &described.stdout,
            &[
                "Warning",
                "FailedToConfigure",
                "failed to configure node node-1"
            ]
        ),
        "{described}"
    );
    let table = admin.run(&["get", "events", "-n", "default"]).await.ok();
    ensure!(
        has_line(
            &table.stdout,
            &[
                "Warning",
                "ReconcileFailed",
                "nodenetworkconfigurationpolicy/bad"
            ]
        ),
        "{table}"
    );

    // The next generation fails the same way: the same Event objects, each
    // series counting two.
    admin
        .run_stdin(&["apply", "-f", "-"], &bad(json!(1)))
        .await
        .ok();
    degraded().await?;
    check(2).await?;
    let described = admin.run(&["describe", "nncp", "bad"]).await.ok();
    ensure!(
        has_line(&described.stdout, &["ReconcileFailed", "(x2 over"]),
        "{described}"
    );
    admin.run(&["delete", "nncp", "bad"]).await.ok();
    Ok(())
}

async fn node_restriction_with_bound_tokens(cluster: &LocalUp, admin: &Kubectl) -> Result<()> {
    let node_1 = Kubectl::new(&cluster.node_kubeconfig_on_host(1)?)?;
    // Its own objects: the NodeNetworkState and its enactments' status.
    node_1
        .run(&[
            "patch",
            "nns",
            "node-1",
            "--subresource=status",
            "--type=merge",
            "-p",
            "{}",
        ])
        .await
        .ok();
    // (kubectl patch would GET .../status first, which the agent's RBAC
    // does not grant: replace PUTs it, as the agent does.)
    let agent = &node_1;
    let replace_status = |name: &'static str| async move {
        let enactment = admin
            .run(&["get", "nnce", name, "-o", "json"])
            .await
            .ok()
            .stdout;
        agent
            .run_stdin(&["replace", "--subresource=status", "-f", "-"], &enactment)
            .await
    };
    replace_status("node-1.linux-bridge").await.ok();
    // node-2's: refused by nmstate-apiserver (kube-apiserver's RBAC lets
    // the agents' ServiceAccount write every node's objects).
    let mut refusals = vec![replace_status("node-2.linux-bridge").await.failed()];
    for args in [
        vec![
            "patch",
            "nns",
            "node-2",
            "--subresource=status",
            "--type=merge",
            "-p",
            "{}",
        ],
        vec!["label", "nns", "node-2", "rack=r9"],
    ] {
        refusals.push(node_1.run(&args).await.failed());
    }
    for refused in refusals {
        ensure!(
            refused.stderr.contains("Error from server (Forbidden)")
                && refused
                    .stderr
                    .contains("system:serviceaccount:nmstate:nmstate-agent")
                && refused.stderr.contains("node-2"),
            "{refused}"
        );
    }

    // Relabelling its own state does not make node-1 selected: the Node's
    // labels are what select.
    node_1
        .run(&["label", "nns", "node-1", "rack=r9"])
        .await
        .ok();
    let policy = json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "rack-r9"},
        "spec": {
            "nodeSelector": {"rack": "r9"},
            "desiredState": {"interfaces": [{"name": "eth2", "type": "ethernet", "state": "up"}]},
        },
    });
    admin
        .run_stdin(&["apply", "-f", "-"], &policy.to_string())
        .await
        .ok();
    eventually("rack-r9 matches no node", || async {
        let policy = admin
            .run(&["get", "nncp", "rack-r9", "-o", "json"])
            .await
            .ok()
            .json();
        Ok(policy["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|condition| condition["reason"] == "NoMatchingNode"))
    })
    .await?;
    let enactments = enactments_of(admin, "rack-r9").await;
    ensure!(enactments.stdout.trim().is_empty(), "{enactments}");

    // The admin labels Node node-2: now it is selected, and only it.
    admin
        .run(&["label", "node", "node-2", "rack=r9"])
        .await
        .ok();
    let wait = admin
        .run(&[
            "wait",
            "--for=condition=Available",
            "nncp/rack-r9",
            "--timeout=120s",
        ])
        .await;
    ensure!(wait.success(), "{wait}");
    let enactments = enactments_of(admin, "rack-r9").await;
    ensure!(
        enactments.stdout.trim() == "nodenetworkconfigurationenactment.nmstate.io/node-2.rack-r9",
        "{enactments}"
    );
    admin.run(&["delete", "nncp", "rack-r9"]).await.ok();
    Ok(())
}
