//! kubernetes-nmstate's own end-to-end suite (`test/e2e/handler/`) as a
//! checklist: the behaviours its maintainers check there, checked here the
//! way a user would, on `hack/local-up.sh --kube` clusters: a real
//! kube-apiserver in front of nmstate-apiserver, Node objects whose labels
//! policies select by, and nodes that are network namespaces running real
//! NetworkManager and the real agent. Policies go in with kubectl through
//! kube-apiserver; what happened is read from the API (conditions, node
//! states, enactments) and, independently of our code, from the node's
//! kernel. docs/upstream-e2e.md maps every upstream file to a test.
//!
//! Needs root, the binaries built (`cargo build -p nmstate-apiserver -p
//! nmstate-agent`) and kube-apiserver (built and cached on first use by
//! `hack/build-kube-apiserver.sh`).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use nmstate_e2e::{
    cluster::{
        addresses, condition, enactment_condition, eventually, interface, kernel_bridge,
        node_network_state, node_reported, node_state, policy_for, policy_with_spec, policy_yaml,
        wait_for_condition,
    },
    kubectl::Kubectl,
    netns::{LocalUp, NetnsNode},
};
use serde_json::{Value, json};

/// How long a policy may take to settle before the test fails (a bound for
/// failing, not a measurement).
const SETTLE: Duration = Duration::from_secs(120);

/// A local-up cluster behind kube-apiserver, and kubectl as its admin.
struct Cluster {
    local: LocalUp,
    kubectl: Kubectl,
}

impl Cluster {
    /// `nodes` NetworkManager nodes, `agent_args` for every agent; returns
    /// once every node has reported its state.
    async fn start(nodes: usize, agent_args: &[&str]) -> Result<Self> {
        let local = LocalUp::start_kube(nodes, agent_args).await?;
        let kubectl = Kubectl::new(&local.admin_kubeconfig())?;
        for i in 1..=nodes {
            node_reported(&kubectl, &format!("node-{i}")).await?;
        }
        Ok(Self { local, kubectl })
    }

    fn node(&self, i: usize) -> Result<NetnsNode> {
        self.local.node(i)
    }

    /// The logs worth reading when a check fails.
    fn logs(&self) -> String {
        format!(
            "--- apiserver\n{}\n--- node-1\n{}\n--- node-2\n{}",
            self.local.process_log("apiserver"),
            self.local.process_log("node-1"),
            self.local.process_log("node-2"),
        )
    }

    /// `kubectl apply -f -` of `manifest`.
    async fn apply(&self, manifest: &Value) {
        self.kubectl
            .run_stdin(&["apply", "-f", "-"], &manifest.to_string())
            .await
            .ok();
    }

    /// Waits until `resource`'s condition `kind` is True for its current
    /// generation, failing with the logs.
    async fn wait_for(&self, resource: &str, kind: &str) -> Result<()> {
        wait_for_condition(&self.kubectl, resource, kind, SETTLE)
            .await
            .with_context(|| self.logs())
    }

    /// Applies `desired` as policy `name` for node-1 and waits until it is
    /// Available.
    async fn apply_available(&self, name: &str, desired: &Value) -> Result<()> {
        self.kubectl
            .run_stdin(&["apply", "-f", "-"], &policy_yaml(name, desired))
            .await
            .ok();
        self.wait_for(&format!("nncp/{name}"), "Available").await
    }

    /// The names of `policy`'s enactments.
    async fn enactments_of(&self, policy: &str) -> Vec<String> {
        let output = self
            .kubectl
            .run(&[
                "get",
                "nnce",
                "-l",
                &format!("nmstate.io/policy={policy}"),
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ])
            .await
            .ok();
        let mut names: Vec<String> = output
            .stdout
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }

    /// Sets (`key=value`) or removes (`key-`) a label of the Node object
    /// `node`: policies select nodes by those.
    async fn label_node(&self, node: &str, label: &str) {
        self.kubectl
            .run(&["label", "node", node, label, "--overwrite"])
            .await
            .ok();
    }
}

/// A linux bridge with no ports (touches no interface of the node).
fn bridge_without_ports(name: &str) -> Value {
    json!({"interfaces": [{
        "name": name, "type": "linux-bridge", "state": "up",
        "bridge": {"options": {"stp": {"enabled": false}}, "port": []},
    }]})
}

/// `lastSuccessfulUpdateTime` of NodeNetworkState `node`.
async fn last_successful_update(kubectl: &Kubectl, node: &str) -> Result<String> {
    let state = node_network_state(kubectl, node).await?;
    state["status"]["lastSuccessfulUpdateTime"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no lastSuccessfulUpdateTime: {state}"))
}

/// Names of the interfaces in NodeNetworkState `node`.
async fn reported_interfaces(kubectl: &Kubectl, node: &str) -> Result<Vec<String>> {
    let state = node_state(kubectl, node).await?;
    Ok(state["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|iface| iface["name"].as_str().map(str::to_owned))
        .collect())
}

/// upstream: node_selector_test.go.
#[tokio::test]
async fn a_policy_applies_only_to_nodes_with_its_labels_and_follows_label_changes() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = Cluster::start(2, &[]).await?;
    let (node1, node2) = (cluster.node(1)?, cluster.node(2)?);
    let bridge = bridge_without_ports("br-select");
    cluster
        .apply(&policy_for(
            "select",
            json!({"testKey": "testValue"}),
            &bridge,
        ))
        .await;

    // No node has the label: ignored, no enactment, no node touched.
    cluster.wait_for("nncp/select", "Ignored").await?;
    assert_eq!(cluster.enactments_of("select").await, Vec::<String>::new());
    assert_eq!(kernel_bridge(&node1, "br-select").await?, None);
    assert_eq!(kernel_bridge(&node2, "br-select").await?, None);

    // node-1 gets the label: it, and only it, is configured.
    cluster.label_node("node-1", "testKey=testValue").await;
    cluster.wait_for("nncp/select", "Available").await?;
    assert_eq!(cluster.enactments_of("select").await, ["node-1.select"]);
    let (enactment, available) =
        enactment_condition(&cluster.kubectl, "node-1.select", "Available").await;
    assert_eq!(available["status"], "True", "{enactment}");
    assert_eq!(kernel_bridge(&node1, "br-select").await?, Some(Vec::new()));
    assert_eq!(kernel_bridge(&node2, "br-select").await?, None);

    // The label goes again: the enactment goes, the policy is ignored.
    cluster.label_node("node-1", "testKey-").await;
    eventually("node-1.select removed", || async {
        Ok(cluster.enactments_of("select").await.is_empty())
    })
    .await?;
    cluster.wait_for("nncp/select", "Ignored").await?;

    // Without a selector the policy is for every node.
    cluster
        .kubectl
        .run(&[
            "patch",
            "nncp",
            "select",
            "--type=json",
            "-p",
            r#"[{"op": "remove", "path": "/spec/nodeSelector"}]"#,
        ])
        .await
        .ok();
    cluster.wait_for("nncp/select", "Available").await?;
    assert_eq!(
        cluster.enactments_of("select").await,
        ["node-1.select", "node-2.select"]
    );
    assert_eq!(kernel_bridge(&node1, "br-select").await?, Some(Vec::new()));
    assert_eq!(kernel_bridge(&node2, "br-select").await?, Some(Vec::new()));
    Ok(())
}

/// The types of the conditions that are True in a watch event's object,
/// space-separated.
fn true_conditions(event: &Value) -> String {
    let conditions = event["object"]["status"]["conditions"].as_array();
    let types: Vec<&str> = conditions
        .into_iter()
        .flatten()
        .filter(|condition| condition["status"] == "True")
        .filter_map(|condition| condition["type"].as_str())
        .collect();
    types.join(" ")
}

/// upstream: nnce_conditions_test.go ("should go from Progressing to
/// Available").
#[tokio::test]
async fn an_enactment_goes_from_progressing_to_available_and_stays_available() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = Cluster::start(1, &[]).await?;
    // Every change of the policy's enactments, from a watch.
    let mut watch = cluster.kubectl.spawn(&[
        "get",
        "--raw",
        "/apis/nmstate.io/v1/nodenetworkconfigurationenactments?watch=1&labelSelector=nmstate.io/policy=progress",
    ])?;
    cluster
        .apply(&policy_for(
            "progress",
            json!({"kubernetes.io/hostname": "node-1"}),
            &bridge_without_ports("br-progress"),
        ))
        .await;

    // The conditions that are True, after each event.
    let mut seen: Vec<String> = Vec::new();
    while seen.last().map(String::as_str) != Some("Available") {
        let line = watch
            .next_line(SETTLE)
            .await
            .with_context(|| format!("seen so far: {seen:?}\n{}", cluster.logs()))?;
        seen.push(true_conditions(&serde_json::from_str(&line)?));
    }
    assert!(
        seen.iter().any(|line| line == "Progressing"),
        "Progressing (alone) before Available: {seen:?}"
    );

    // It stays Available: whatever else is written to it while nothing
    // changes keeps Available the only True condition.
    while let Ok(line) = watch.next_line(Duration::from_secs(10)).await {
        let event: Value = serde_json::from_str(&line)?;
        assert_eq!(true_conditions(&event), "Available", "after {seen:?}");
    }
    watch.stop().await;
    let (enactment, available) =
        enactment_condition(&cluster.kubectl, "node-1.progress", "Available").await;
    assert_eq!(available["status"], "True", "{enactment}");
    assert_eq!(available["reason"], "SuccessfullyConfigured", "{enactment}");
    cluster.wait_for("nncp/progress", "Available").await
}

/// upstream: nnce_conditions_test.go ("should have Failing ConditionType
/// set to true", "up to maxUnavailable Failing and the rest Aborted",
/// "Degraded as soon as first enactment fails").
#[tokio::test]
async fn a_policy_that_cannot_be_applied_fails_on_one_node_aborts_the_other_and_is_degraded()
-> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = Cluster::start(2, &[]).await?;
    // An ethernet interface no node has: nmstate refuses it on every node.
    let missing = json!({"interfaces": [{"name": "bad1", "type": "ethernet", "state": "up"}]});
    // Two nodes, maxUnavailable 50%: one node at a time.
    cluster
        .apply(&policy_for("bad", Value::Null, &missing))
        .await;
    cluster.wait_for("nncp/bad", "Degraded").await?;

    let check = || async {
        let mut outcome = Vec::new();
        for node in ["node-1", "node-2"] {
            let name = format!("{node}.bad");
            let (enactment, _) = enactment_condition(&cluster.kubectl, &name, "Failing").await;
            let holds = |kind: &str| {
                condition(&enactment, kind).is_some_and(|condition| condition["status"] == "True")
            };
            let reason = |kind: &str| {
                condition(&enactment, kind)
                    .map_or(Value::Null, |condition| condition["reason"].clone())
            };
            if holds("Failing") {
                outcome.push(("Failing", reason("Failing")));
            } else if holds("Aborted") {
                outcome.push(("Aborted", reason("Aborted")));
            } else {
                outcome.push(("other", enactment["status"]["conditions"].clone()));
            }
        }
        outcome.sort_by_key(|(kind, _)| *kind);
        outcome
    };
    let expected = vec![
        ("Aborted", json!("ConfigurationAborted")),
        ("Failing", json!("FailedToConfigure")),
    ];
    assert_eq!(check().await, expected, "{}", cluster.logs());
    // And so it stays.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(check().await, expected);
    cluster.wait_for("nncp/bad", "Degraded").await?;
    for i in 1..=2 {
        assert_eq!(cluster.node(i)?.ip_link("bad1").await?, None);
    }
    Ok(())
}

/// upstream: nns_update_timestamp_test.go (changed externally, changed by
/// a policy) and nodes_test.go ("new interface is configured").
#[tokio::test]
async fn the_node_state_shows_changes_made_outside_and_by_policies_with_a_newer_update_time()
-> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = Cluster::start(1, &[]).await?;
    let node = cluster.node(1)?;
    let kubectl = &cluster.kubectl;
    let first = last_successful_update(kubectl, "node-1").await?;
    // The timestamp has a resolution of one second.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // A bridge made with NetworkManager's own tool, not through us.
    node.run(
        "nmcli",
        &[
            "connection",
            "add",
            "type",
            "bridge",
            "ifname",
            "ext0",
            "con-name",
            "ext0",
            "ipv4.method",
            "disabled",
            "ipv6.method",
            "disabled",
        ],
    )
    .await?;
    eventually("ext0 in NodeNetworkState node-1", || async {
        Ok(reported_interfaces(kubectl, "node-1")
            .await?
            .contains(&"ext0".to_owned()))
    })
    .await
    .with_context(|| cluster.logs())?;
    let second = last_successful_update(kubectl, "node-1").await?;
    assert!(second > first, "{second} after {first}");
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // A policy removes it.
    let absent =
        json!({"interfaces": [{"name": "ext0", "type": "linux-bridge", "state": "absent"}]});
    cluster.apply_available("ext0-absent", &absent).await?;
    assert_eq!(node.ip_link("ext0").await?, None);
    eventually("ext0 gone from NodeNetworkState node-1", || async {
        Ok(!reported_interfaces(kubectl, "node-1")
            .await?
            .contains(&"ext0".to_owned()))
    })
    .await?;
    let third = last_successful_update(kubectl, "node-1").await?;
    assert!(third > second, "{third} after {second}");
    Ok(())
}

/// upstream: nodes_test.go ("node network state is deleted").
#[tokio::test]
async fn a_deleted_node_state_is_recreated_by_its_agent() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = Cluster::start(1, &[]).await?;
    let kubectl = &cluster.kubectl;
    let before = node_network_state(kubectl, "node-1").await?;
    kubectl.run(&["delete", "nns", "node-1"]).await.ok();
    eventually("NodeNetworkState node-1 recreated", || async {
        let Ok(state) = node_network_state(kubectl, "node-1").await else {
            return Ok(false);
        };
        Ok(state["metadata"]["uid"] != before["metadata"]["uid"])
    })
    .await
    .with_context(|| cluster.logs())?;
    let state = node_state(kubectl, "node-1").await?;
    let eth0 = interface(&state, "eth0").context("eth0 in the recreated state")?;
    assert_eq!(
        addresses(&state, "eth0", "ipv4"),
        [format!("{}/24", cluster.node(1)?.address)],
        "{eth0}"
    );
    Ok(())
}

/// `ip -j [-6] route show DESTINATION` in `node`, across all tables.
async fn kernel_routes(node: &NetnsNode, family: &str, destination: &str) -> Result<Vec<Value>> {
    let output = node
        .run(
            "ip",
            &[family, "-j", "route", "show", "table", "all", destination],
        )
        .await?;
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// eth1 with static IPv4 and IPv6 addresses and a route of each family
/// through it (upstream's addresses, from the documentation ranges).
fn static_addresses_and_routes() -> Value {
    json!({
        "interfaces": [{
            "name": "eth1", "type": "veth", "state": "up",
            "ipv4": {"enabled": true, "dhcp": false,
                     "address": [{"ip": "192.0.2.251", "prefix-length": 24}]},
            "ipv6": {"enabled": true, "dhcp": false, "autoconf": false,
                     "address": [{"ip": "2001:db8::1:1", "prefix-length": 64}]},
        }],
        "routes": {"config": [
            {"destination": "198.51.100.0/24", "metric": 150, "next-hop-address": "192.0.2.1",
             "next-hop-interface": "eth1", "table-id": 254},
            {"destination": "2001:dc8::/64", "metric": 150, "next-hop-address": "2001:db8::1:2",
             "next-hop-interface": "eth1", "table-id": 254},
        ]},
    })
}

/// upstream: static_addr_and_route_test.go (static V4 and V6 addresses and
/// routes, and their removal).
#[tokio::test]
async fn static_ipv4_and_ipv6_addresses_and_routes_are_configured_and_removed() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = Cluster::start(1, &[]).await?;
    let node = cluster.node(1)?;
    cluster
        .apply_available("static", &static_addresses_and_routes())
        .await?;

    assert_eq!(node.addresses("-4", "eth1").await?, ["192.0.2.251/24"]);
    assert_eq!(node.addresses("-6", "eth1").await?, ["2001:db8::1:1/64"]);
    let v4 = kernel_routes(&node, "-4", "198.51.100.0/24").await?;
    assert!(
        v4.iter()
            .any(|route| route["dev"] == "eth1" && route["gateway"] == "192.0.2.1"),
        "{v4:?}"
    );
    let v6 = kernel_routes(&node, "-6", "2001:dc8::/64").await?;
    assert!(
        v6.iter()
            .any(|route| route["dev"] == "eth1" && route["gateway"] == "2001:db8::1:2"),
        "{v6:?}"
    );
    // The node state shows them too.
    eventually("the addresses in NodeNetworkState node-1", || async {
        let state = node_state(&cluster.kubectl, "node-1").await?;
        Ok(addresses(&state, "eth1", "ipv4") == ["192.0.2.251/24"]
            && addresses(&state, "eth1", "ipv6").contains(&"2001:db8::1:1/64".to_owned()))
    })
    .await?;

    // The same policy, changed to remove them.
    let removed = json!({
        "interfaces": [{
            "name": "eth1", "type": "veth", "state": "up",
            "ipv4": {"enabled": false}, "ipv6": {"enabled": false},
        }],
        "routes": {"config": [{"next-hop-interface": "eth1", "state": "absent"}]},
    });
    cluster.apply_available("static", &removed).await?;
    assert_eq!(node.addresses("-4", "eth1").await?, Vec::<String>::new());
    assert_eq!(node.addresses("-6", "eth1").await?, Vec::<String>::new());
    assert_eq!(
        kernel_routes(&node, "-4", "198.51.100.0/24").await?,
        Vec::<Value>::new()
    );
    assert_eq!(
        kernel_routes(&node, "-6", "2001:dc8::/64").await?,
        Vec::<Value>::new()
    );
    Ok(())
}

/// upstream: static_addr_and_route_test.go ("bridge taking over the static
/// networking of the slave") and nnce_desiredstate_test.go.
#[tokio::test]
async fn a_bridge_takes_over_an_interfaces_address_and_routes_through_captures() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = Cluster::start(1, &[]).await?;
    let node = cluster.node(1)?;
    let mut static_v4 = static_addresses_and_routes();
    static_v4["interfaces"][0]["ipv6"] = json!({"enabled": false});
    static_v4["routes"]["config"]
        .as_array_mut()
        .context("routes")?
        .truncate(1);
    cluster.apply_available("eth1-static", &static_v4).await?;
    // Deleting a policy leaves the node as it is.
    cluster
        .kubectl
        .run(&["delete", "nncp", "eth1-static"])
        .await
        .ok();

    let takeover = json!({
        "nodeSelector": {"kubernetes.io/hostname": "node-1"},
        "capture": {
            "gw": r#"routes.running.destination=="198.51.100.0/24""#,
            "secondary-iface": "interfaces.name==capture.gw.routes.running.0.next-hop-interface",
            "secondary-iface-routes": "routes.running.next-hop-interface==capture.secondary-iface.interfaces.0.name",
            "bridge-routes": r#"capture.secondary-iface-routes | routes.running.next-hop-interface:="brext""#,
        },
        "desiredState": {
            "interfaces": [{
                "name": "brext", "type": "linux-bridge", "state": "up",
                "ipv4": "{{ capture.secondary-iface.interfaces.0.ipv4 }}",
                "bridge": {
                    "options": {"stp": {"enabled": false}},
                    "port": [{"name": "{{ capture.secondary-iface.interfaces.0.name }}", "vlan": {}}],
                },
            }],
            "routes": {"config": "{{ capture.bridge-routes.routes.running }}"},
        },
    });
    cluster.apply(&policy_with_spec("takeover", takeover)).await;
    cluster.wait_for("nncp/takeover", "Available").await?;

    assert_eq!(
        kernel_bridge(&node, "brext").await?,
        Some(vec!["eth1".to_owned()])
    );
    assert_eq!(node.addresses("-4", "brext").await?, ["192.0.2.251/24"]);
    let routes = kernel_routes(&node, "-4", "198.51.100.0/24").await?;
    assert!(
        routes
            .iter()
            .any(|route| route["dev"] == "brext" && route["gateway"] == "192.0.2.1"),
        "{routes:?}"
    );
    // The enactment shows what was rendered for the node: no template left.
    let enactment = cluster
        .kubectl
        .run(&["get", "nnce", "node-1.takeover", "-o", "json"])
        .await
        .ok()
        .json();
    let desired = &enactment["status"]["desiredState"];
    assert_eq!(
        addresses(desired, "brext", "ipv4"),
        ["192.0.2.251/24"],
        "{desired}"
    );
    assert_eq!(
        desired["interfaces"][0]["bridge"]["port"][0]["name"], "eth1",
        "{desired}"
    );
    assert!(!desired.to_string().contains("{{"), "{desired}");
    ensure!(
        enactment["status"]["capturedStates"]["secondary-iface"]["state"].is_object(),
        "captured states: {}",
        enactment["status"]["capturedStates"]
    );
    Ok(())
}

/// upstream: pending_checkpoint_test.go.
#[tokio::test]
async fn a_checkpoint_left_open_on_the_node_does_not_block_a_policy() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = Cluster::start(1, &[]).await?;
    let node = cluster.node(1)?;
    // Someone applied with nmstatectl and never committed; the checkpoint
    // would roll back by itself only long after the test's bound.
    let file = tempfile::Builder::new().suffix(".json").tempfile()?;
    std::fs::write(file.path(), bridge_without_ports("br-pending").to_string())?;
    let path = file.path().to_str().context("UTF-8 path")?;
    node.run(
        "nmstatectl",
        &["apply", "--no-commit", "--timeout", "600", path],
    )
    .await?;
    ensure!(
        kernel_bridge(&node, "br-pending").await?.is_some(),
        "nmstatectl applied br-pending"
    );

    cluster
        .apply_available("after-pending", &bridge_without_ports("br-after"))
        .await?;
    assert_eq!(kernel_bridge(&node, "br-after").await?, Some(Vec::new()));
    Ok(())
}

/// The agent's `/metrics` in node `i` (served on `METRICS_ADDRESS` there).
async fn agent_metrics(node: &NetnsNode) -> Result<String> {
    let url = format!("http://{METRICS_ADDRESS}/metrics");
    let output = node.run("curl", &["-sSf", &url]).await?;
    Ok(String::from_utf8(output.stdout)?)
}

/// Where the agents serve `/metrics`, each in its own node.
const METRICS_ADDRESS: &str = "127.0.0.1:9464";

/// The value of the sample named exactly `series` (name and labels), 0
/// when absent.
fn sample(metrics: &str, series: &str) -> Result<f64> {
    for line in metrics.lines() {
        if let Some(value) = line
            .strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
        {
            return Ok(value.trim().parse()?);
        }
    }
    Ok(0.0)
}

/// upstream: metrics_test.go (interface-type and static-route gauges).
#[tokio::test]
async fn the_interface_and_route_gauges_follow_what_policies_configure() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let health = format!("--health-address={METRICS_ADDRESS}");
    let cluster = Cluster::start(1, &[&health]).await?;
    let node = cluster.node(1)?;
    const BRIDGES: &str =
        r#"kubernetes_nmstate_network_interfaces{node="node-1",type="linux-bridge"}"#;
    const STATIC: &str =
        r#"kubernetes_nmstate_routes{node="node-1",ip_stack="ipv4",type="static"}"#;
    let before = agent_metrics(&node).await?;
    let (bridges, routes) = (sample(&before, BRIDGES)?, sample(&before, STATIC)?);

    let bridge = json!({
        "interfaces": [{
            "name": "br-gauge", "type": "linux-bridge", "state": "up",
            "ipv4": {"enabled": true, "dhcp": false,
                     "address": [{"ip": "192.0.2.1", "prefix-length": 24}]},
            "bridge": {"options": {"stp": {"enabled": false}}, "port": []},
        }],
        "routes": {"config": [{"destination": "198.51.100.0/24",
                               "next-hop-address": "192.0.2.254",
                               "next-hop-interface": "br-gauge"}]},
    });
    cluster.apply_available("gauge", &bridge).await?;
    eventually("one more bridge and static route in the gauges", || async {
        let metrics = agent_metrics(&node).await?;
        Ok(
            sample(&metrics, BRIDGES)? == bridges + 1.0
                && sample(&metrics, STATIC)? == routes + 1.0,
        )
    })
    .await
    .with_context(|| cluster.logs())?;

    let absent = json!({
        "interfaces": [{"name": "br-gauge", "type": "linux-bridge", "state": "absent"}],
        "routes": {"config": [{"next-hop-interface": "br-gauge", "state": "absent"}]},
    });
    cluster.apply_available("gauge", &absent).await?;
    eventually("the gauges back where they were", || async {
        let metrics = agent_metrics(&node).await?;
        Ok(sample(&metrics, BRIDGES)? == bridges && sample(&metrics, STATIC)? == routes)
    })
    .await
    .with_context(|| cluster.logs())?;
    Ok(())
}

#[test]
fn sample_reads_only_the_exact_series() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let metrics = "a{x=\"1\"} 2\na{x=\"1\",y=\"2\"} 5\n";
    assert_eq!(sample(metrics, "a{x=\"1\"}")?, 2.0);
    assert_eq!(sample(metrics, "a{x=\"2\"}")?, 0.0);
    assert_eq!(sample(metrics, "a{x=\"1\",y=\"2\"}")?, 5.0);
    Ok(())
}

/// upstream: default_bridged_network_with_nmpolicy_test.go (and
/// default_bridged_network_test.go without its DHCP): the interface the
/// node reaches the cluster through becomes a bridge port, the bridge takes
/// its address and its default route, and the node stays connected.
#[tokio::test]
async fn the_default_interface_moves_into_a_bridge_with_its_address_and_default_route() -> Result<()>
{
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = Cluster::start(1, &[]).await?;
    let node = cluster.node(1)?;
    let address = format!("{}/24", node.address);
    let mut spec = nmstate_e2e::policies::bridge_on_default_gateway();
    spec["nodeSelector"] = json!({"kubernetes.io/hostname": "node-1"});
    cluster
        .apply(&policy_with_spec("default-bridge", spec))
        .await;
    cluster.wait_for("nncp/default-bridge", "Available").await?;

    assert_eq!(
        kernel_bridge(&node, "br1").await?,
        Some(vec!["eth0".to_owned()])
    );
    assert_eq!(
        node.addresses("-4", "br1").await?,
        std::slice::from_ref(&address)
    );
    assert_eq!(node.addresses("-4", "eth0").await?, Vec::<String>::new());
    let defaults = kernel_routes(&node, "-4", "default").await?;
    assert!(
        defaults.iter().any(|route| route["dev"] == "br1"),
        "{defaults:?}"
    );
    // Still connected: the agent reports the new state through br1.
    eventually(
        "br1 with the node's address in NodeNetworkState node-1",
        || async {
            let state = node_state(&cluster.kubectl, "node-1").await?;
            Ok(addresses(&state, "br1", "ipv4") == [address.clone()])
        },
    )
    .await
    .with_context(|| cluster.logs())?;
    Ok(())
}

/// upstream: nns_dependencies_test.go.
#[tokio::test]
async fn the_node_state_names_the_network_manager_and_nmstate_versions() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = Cluster::start(1, &[]).await?;
    let node = cluster.node(1)?;
    let status = node_network_state(&cluster.kubectl, "node-1").await?["status"].clone();
    let network_manager =
        String::from_utf8(node.run("NetworkManager", &["--version"]).await?.stdout)?;
    assert_eq!(
        status["hostNetworkManagerVersion"],
        network_manager.trim(),
        "{status}"
    );
    assert_eq!(
        status["handlerNetworkManagerVersion"],
        network_manager.trim(),
        "{status}"
    );
    let nmstatectl = String::from_utf8(node.run("nmstatectl", &["--version"]).await?.stdout)?;
    let nmstate = status["handlerNmstateVersion"].as_str().unwrap_or_default();
    assert!(
        !nmstate.is_empty() && nmstatectl.trim().ends_with(nmstate),
        "{status} vs {nmstatectl}"
    );
    Ok(())
}

/// upstream's example `name` (examples/upstream/), with its node names
/// (`node01`, `node02`) changed to this cluster's, as a user would.
fn upstream_example(name: &str) -> Result<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../examples/upstream/{name}.yaml"));
    let text = std::fs::read_to_string(&path)?
        .replace("node01", "node-1")
        .replace("node02", "node-2");
    Ok(serde_yaml::from_str(&text)?)
}

/// upstream: examples_test.go, for the examples this kernel and
/// NetworkManager can apply (bond, VLAN, VRF and OVS ones need drivers or
/// an Open vSwitch the machines here lack, lldp captures ethernet NICs the
/// namespace nodes do not have: see docs/upstream-e2e.md). Each
/// is applied as a user would, must become Available, and is deleted again;
/// the DNS and bridge ones are followed by their clean-up examples.
#[tokio::test]
async fn the_upstream_examples_this_kernel_can_run_become_available() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = Cluster::start(2, &[]).await?;
    for name in [
        "linux-bridge",
        "detach-bridge-port-and-restore-eth",
        "ethernet",
        "dhcp",
        "worker-selector",
        "static-ip",
        "route",
        "dns",
        "dns-cleanup",
    ] {
        let example = upstream_example(name)?;
        let policy = example["metadata"]["name"]
            .as_str()
            .with_context(|| format!("{name}: no name"))?
            .to_owned();
        cluster.apply(&example).await;
        cluster
            .wait_for(&format!("nncp/{policy}"), "Available")
            .await
            .with_context(|| format!("example {name}"))?;
        if name == "linux-bridge" {
            for i in 1..=2 {
                let node = cluster.node(i)?;
                assert_eq!(
                    kernel_bridge(&node, "br1").await?,
                    Some(vec!["eth1".to_owned()])
                );
            }
        }
        cluster.kubectl.run(&["delete", "nncp", &policy]).await.ok();
    }
    for i in 1..=2 {
        assert_eq!(kernel_bridge(&cluster.node(i)?, "br1").await?, None);
    }
    Ok(())
}

/// upstream: upgrade_test.go.
#[tokio::test]
async fn a_v1beta1_policy_is_served_as_v1_and_becomes_available() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = Cluster::start(1, &[]).await?;
    let mut policy = policy_for(
        "beta",
        json!({"kubernetes.io/hostname": "node-1"}),
        &bridge_without_ports("br-beta"),
    );
    policy["apiVersion"] = json!("nmstate.io/v1beta1");
    cluster.apply(&policy).await;
    cluster.wait_for("nncp/beta", "Available").await?;
    let read = cluster
        .kubectl
        .run(&["get", "nncp.v1.nmstate.io", "beta", "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(read["apiVersion"], "nmstate.io/v1");
    assert_eq!(read["spec"], policy["spec"]);
    assert_eq!(
        kernel_bridge(&cluster.node(1)?, "br-beta").await?,
        Some(Vec::new())
    );
    Ok(())
}

/// upstream: rollback_test.go ("when changing the default gw to a routing
/// table different from main ... should not rollback").
#[tokio::test]
async fn a_default_route_in_another_table_is_applied_not_rolled_back() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = Cluster::start(1, &["--probe-timeout=10s"]).await?;
    let node = cluster.node(1)?;
    let other_table = json!({
        "interfaces": [{
            "name": "eth1", "type": "veth", "state": "up",
            "ipv4": {"enabled": true, "dhcp": false,
                     "address": [{"ip": "192.0.2.251", "prefix-length": 24}]},
        }],
        "routes": {"config": [{"destination": "0.0.0.0/0", "metric": 150,
                               "next-hop-address": "192.0.2.1",
                               "next-hop-interface": "eth1", "table-id": 100}]},
    });
    cluster.apply_available("other-table", &other_table).await?;
    let defaults = kernel_routes(&node, "-4", "default").await?;
    assert!(
        defaults
            .iter()
            .any(|route| route["dev"] == "eth1" && route["table"] == "100"),
        "{defaults:?}"
    );
    // The main table's default route is untouched.
    assert!(
        defaults.iter().any(|route| route["dev"] == "eth0"
            && (route["table"].is_null() || route["table"] == "main")),
        "{defaults:?}"
    );
    Ok(())
}

/// A name server for tests: answers every question with an A record
/// (192.0.2.1), on UDP port 53 of the address it is given.
const NAME_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
while True:
    query, peer = s.recvfrom(512)
    end = 12
    while query[end] != 0:
        end += query[end] + 1
    question = query[12:end + 5]
    header = query[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00"
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01"
    s.sendto(header + question + answer, peer)
"#;

/// The name servers NetworkManager runs with in `node`, as nmstatectl
/// shows them.
async fn running_name_servers(node: &NetnsNode) -> Result<Value> {
    Ok(node.nmstatectl_show().await?["dns-resolver"]["running"]["server"].clone())
}

/// upstream: rollback_test.go ("when name servers are wrong", also
/// "configured globally": nmstate 2.2 keeps name servers in
/// NetworkManager's global DNS configuration whether or not the desired
/// state names an interface, so both cases are this one). A working name
/// server, then one that never answers: the DNS probe fails, the enactment
/// says so, and the working server is back.
#[tokio::test]
async fn wrong_name_servers_are_rolled_back_to_the_previous_ones() -> Result<()> {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = Cluster::start(1, &["--probe-timeout=5s"]).await?;
    let node = cluster.node(1)?;
    // A name server that works, inside the node; stopped with the test.
    let _name_server = node
        .command("python3")
        .args(["-c", NAME_SERVER, "127.0.0.1"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let servers =
        |server: &str| json!({"dns-resolver": {"config": {"server": [server], "search": []}}});
    cluster
        .apply_available("dns", &servers("127.0.0.1"))
        .await?;
    assert_eq!(running_name_servers(&node).await?, json!(["127.0.0.1"]));

    cluster
        .kubectl
        .run_stdin(
            &["apply", "-f", "-"],
            &policy_yaml("dns", &servers("192.0.2.99")),
        )
        .await
        .ok();
    cluster.wait_for("nncp/dns", "Degraded").await?;
    let (enactment, failing) = enactment_condition(&cluster.kubectl, "node-1.dns", "Failing").await;
    assert_eq!(failing["status"], "True", "{enactment}");
    let message = failing["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("rolling back desired state configuration: probe dns failed: "),
        "{enactment}"
    );
    eventually("the working name server back in NetworkManager", || async {
        Ok(running_name_servers(&node).await? == json!(["127.0.0.1"]))
    })
    .await
    .with_context(|| cluster.logs())
}
