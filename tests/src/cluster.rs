//! What a user checks on a running cluster (policies applied with kubectl,
//! conditions, node states, the kernel of a namespace node), shared by the
//! tests that run `hack/local-up.sh` with real NetworkManager nodes.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::{kubectl::Kubectl, netns::NetnsNode};

/// How long a poll for an expected change may take before the test fails.
/// A bound for failing, not a measurement.
pub const EVENTUALLY: Duration = Duration::from_secs(60);

/// Polls `check` until it returns true, within [`EVENTUALLY`].
pub async fn eventually<F, Fut>(what: &str, check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    eventually_within(what, EVENTUALLY, check).await
}

/// Polls `check` until it returns true, within `limit`.
pub async fn eventually_within<F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not seen within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A policy with `desired` as its desired state for the nodes whose labels
/// match `node_selector` (a JSON object; `null` for every node).
pub fn policy_for(name: &str, node_selector: Value, desired: &Value) -> Value {
    let mut spec = json!({"desiredState": desired});
    if !node_selector.is_null() {
        spec["nodeSelector"] = node_selector;
    }
    policy_with_spec(name, spec)
}

/// A policy with the whole `spec` given (captures, selector, ...).
pub fn policy_with_spec(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// A policy for node-1 with `desired` as its desired state, as kubectl
/// input.
pub fn policy_yaml(name: &str, desired: &Value) -> String {
    policy_for(name, json!({"kubernetes.io/hostname": "node-1"}), desired).to_string()
}

/// Polls `resource` until its condition `kind` is `True` for its current
/// generation; a bound for failing, not a measurement.
pub async fn wait_for_condition(
    kubectl: &Kubectl,
    resource: &str,
    kind: &str,
    limit: Duration,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let output = kubectl.run(&["get", resource, "-o", "json"]).await;
        if output.success() {
            let object = output.json();
            let generation = &object["metadata"]["generation"];
            // A policy's conditions name the generation they are about.
            let holds = object["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|condition| {
                    condition["type"] == kind
                        && condition["status"] == "True"
                        && (condition["observedGeneration"].is_null()
                            || &condition["observedGeneration"] == generation)
                });
            if holds {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{resource}: condition {kind} not True within {limit:?}:\n{output}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// NodeNetworkState `node` as kubectl shows it.
pub async fn node_network_state(kubectl: &Kubectl, node: &str) -> Result<Value> {
    let output = kubectl.run(&["get", "nns", node, "-o", "json"]).await;
    if !output.success() {
        bail!("{output}");
    }
    Ok(output.json())
}

/// The `currentState` of NodeNetworkState `node`.
pub async fn node_state(kubectl: &Kubectl, node: &str) -> Result<Value> {
    Ok(node_network_state(kubectl, node).await?["status"]["currentState"].clone())
}

/// Waits until `node`'s agent has created its NodeNetworkState.
pub async fn node_reported(kubectl: &Kubectl, node: &str) -> Result<()> {
    eventually(&format!("NodeNetworkState {node}"), || async {
        Ok(node_state(kubectl, node).await.is_ok())
    })
    .await
}

/// Enactment `name` and its condition `kind` (null when it has none).
pub async fn enactment_condition(kubectl: &Kubectl, name: &str, kind: &str) -> (Value, Value) {
    let enactment = kubectl
        .run(&["get", "nnce", name, "-o", "json"])
        .await
        .ok()
        .json();
    let condition = condition(&enactment, kind).cloned().unwrap_or_default();
    (enactment, condition)
}

/// `object`'s status condition `kind`, if it has one.
pub fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == kind)
}

/// Interface `name` of an nmstate document.
pub fn interface<'a>(state: &'a Value, name: &str) -> Option<&'a Value> {
    state["interfaces"]
        .as_array()?
        .iter()
        .find(|iface| iface["name"] == name)
}

/// The IPv4 (`family` "ipv4") or IPv6 ("ipv6") addresses of interface
/// `name` in an nmstate document, as `ip/prefix`, sorted.
pub fn addresses(state: &Value, name: &str, family: &str) -> Vec<String> {
    let mut addresses: Vec<String> = interface(state, name)
        .and_then(|iface| iface[family]["address"].as_array())
        .into_iter()
        .flatten()
        .map(|address| {
            format!(
                "{}/{}",
                address["ip"].as_str().unwrap_or(""),
                address["prefix-length"]
            )
        })
        .collect();
    addresses.sort();
    addresses
}

/// The IPv4 addresses of interface `name` in an nmstate document.
pub fn ipv4_addresses(state: &Value, name: &str) -> Vec<String> {
    addresses(state, name, "ipv4")
}

/// The kernel's bridge `name` in `node`, with its ports, if it exists.
pub async fn kernel_bridge(node: &NetnsNode, name: &str) -> Result<Option<Vec<String>>> {
    let links = node.ip_links().await?;
    let is_bridge = links.iter().any(|link| {
        link["ifname"] == name && link["linkinfo"]["info_kind"].as_str() == Some("bridge")
    });
    if !is_bridge {
        return Ok(None);
    }
    Ok(Some(
        links
            .iter()
            .filter(|link| link["master"] == name)
            .filter_map(|link| link["ifname"].as_str().map(str::to_owned))
            .collect(),
    ))
}
