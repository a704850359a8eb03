//! The policy controller against the real server binary, with ten fake
//! nodes and no agents: each node's NodeNetworkState is written with that
//! node's own identity (as its agent would), and a simulated agent writes
//! enactment status through the node identities, the way the real agent
//! does, once the controller has released an enactment.
//!
//! Checked as a user would: through a watch on every enactment (never more
//! than `maxUnavailable` in flight at any moment), the rendered desired state
//! of each node (from that node's own current state), the policy's
//! conditions and messages, and `kubectl wait`.
#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use http::StatusCode;
use nmstate_e2e::{
    apiserver::ApiserverProcess,
    https::{HttpsClient, watch_lines},
    kubectl::Kubectl,
};
use nmstate_openapi::{
    ConditionType, EnactmentPhase, NodeNetworkConfigurationEnactment,
    condition::{
        ENACTMENT_PROGRESSING_MESSAGE, ENACTMENT_RELEASED_MESSAGE, ENACTMENT_SUCCESS_MESSAGE,
        find_condition, set_enactment_failed_to_configure, set_enactment_progressing,
        set_enactment_success,
    },
};
use serde_json::{Value, json};

const STATES: &str = "/apis/nmstate.io/v1/nodenetworkstates";
const POLICIES: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies";
const ENACTMENTS: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationenactments";
const NODES: usize = 10;
const POLICY: &str = "br1";

fn node_name(i: usize) -> String {
    format!("node-{i}")
}

/// Node i's default route leaves through `eth{i % 2}`; each interface has
/// an address unique to the node.
fn current_state(i: usize) -> Value {
    json!({
        "interfaces": [
            {"name": "eth0", "type": "ethernet", "state": "up",
             "ipv4": {"enabled": true, "address": [{"ip": format!("10.0.0.{}", i + 10), "prefix-length": 24}]}},
            {"name": "eth1", "type": "ethernet", "state": "up",
             "ipv4": {"enabled": true, "address": [{"ip": format!("10.1.0.{}", i + 10), "prefix-length": 24}]}},
        ],
        "routes": {
            "running": [{"destination": "0.0.0.0/0", "next-hop-address": format!("10.{}.0.1", i % 2), "next-hop-interface": format!("eth{}", i % 2)}],
            "config": [],
        },
    })
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

fn policy(generation_marker: u32) -> Value {
    json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": POLICY},
        "spec": {
            "nodeSelector": {"node-role.kubernetes.io/worker": ""},
            "maxUnavailable": 3,
            "capture": {
                "default-gw": "routes.running.destination==\"0.0.0.0/0\"",
                "base-iface": "interfaces.name==capture.default-gw.routes.running.0.next-hop-interface",
            },
            "desiredState": {"interfaces": [{
                "name": "br1", "type": "linux-bridge", "state": "up",
                "mtu": 1400 + generation_marker,
                "ipv4": "{{ capture.base-iface.interfaces.0.ipv4 }}",
                "bridge": {"options": {"stp": {"enabled": false}},
                           "port": [{"name": "{{ capture.base-iface.interfaces.0.name }}"}]},
            }]},
        },
    })
}

#[track_caller]
fn json_of(response: &nmstate_e2e::https::TestResponse, code: StatusCode, what: &str) -> Value {
    assert_eq!(response.status, code, "{what}: {}", response.body);
    serde_json::from_str(&response.body).unwrap()
}

async fn send(
    client: &HttpsClient,
    method: &str,
    path: &str,
    body: &Value,
) -> nmstate_e2e::https::TestResponse {
    client.send_json(method, path, body).await.unwrap()
}

/// What the simulated agents do and what the watch saw.
#[derive(Default)]
struct Observed {
    /// Phase of every enactment, as of the last event.
    phases: BTreeMap<String, EnactmentPhase>,
    /// The most enactments in flight at once.
    max_in_flight: usize,
    /// Nodes whose applies fail.
    failing: HashSet<String>,
    /// (enactment, generation) already taken up by the simulated agent.
    taken: HashSet<(String, i64)>,
    /// Generations each node applied, in order.
    applied: HashMap<String, Vec<i64>>,
}

struct Cluster {
    server: ApiserverProcess,
    admin: HttpsClient,
    nodes: Vec<HttpsClient>,
    observed: Arc<Mutex<Observed>>,
}

impl Cluster {
    async fn start() -> Self {
        let server = ApiserverProcess::start(&[]).await.unwrap();
        let admin = server.admin_client().unwrap();
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let kubeconfig = server
                .issue_kubeconfig(&format!("system:node:{}", node_name(i)), &["system:nodes"])
                .unwrap();
            let client = HttpsClient::from_kubeconfig(&kubeconfig).unwrap();
            let state = json!({
                "apiVersion": "nmstate.io/v1",
                "kind": "NodeNetworkState",
                "metadata": {"name": node_name(i), "labels": {
                    "kubernetes.io/hostname": node_name(i),
                    "node-role.kubernetes.io/worker": "",
                }},
            });
            json_of(
                &send(&client, "POST", STATES, &state).await,
                StatusCode::CREATED,
                "create NNS",
            );
            let status = json!({"status": {
                "currentState": current_state(i),
                "lastSuccessfulUpdateTime": now(),
                "conditions": [{"type": "Ready", "status": "True", "reason": "AgentReporting",
                                "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
            }});
            json_of(
                &send(
                    &client,
                    "PATCH",
                    &format!("{STATES}/{}/status", node_name(i)),
                    &status,
                )
                .await,
                StatusCode::OK,
                "report NNS status",
            );
            nodes.push(client);
        }
        let cluster = Cluster {
            server,
            admin,
            nodes,
            observed: Arc::default(),
        };
        cluster.spawn_agents();
        cluster
    }

    /// Watches every enactment (as the admin), records phases, and plays
    /// each node's agent: a released enactment is taken up ("Applying
    /// desired state"), then finishes a moment later, through the node's
    /// own identity.
    fn spawn_agents(&self) {
        let admin = self.admin.clone();
        let nodes = self.nodes.clone();
        let observed = self.observed.clone();
        tokio::spawn(async move {
            let mut connection = admin.connect().await.unwrap();
            let response = connection
                .open(
                    "GET",
                    &format!("{ENACTMENTS}?watch=1"),
                    &[],
                    Default::default(),
                )
                .await
                .unwrap();
            // Ends when the server stops at the end of the test.
            watch_lines(response.into_body(), |line| {
                let event: Value = serde_json::from_slice(line).unwrap();
                handle_event(&event, &nodes, &observed);
            })
            .await;
        });
    }

    async fn policy(&self) -> Value {
        json_of(
            &self
                .admin
                .get(&format!("{POLICIES}/{POLICY}"))
                .await
                .unwrap(),
            StatusCode::OK,
            "get policy",
        )
    }

    /// Waits until the policy's condition `type_` is true for `generation`
    /// with `message`; returns the policy.
    async fn wait_policy(&self, type_: &str, generation: i64, message: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..600 {
            last = self.policy().await;
            let done = last["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["type"] == type_
                        && c["status"] == "True"
                        && c["observedGeneration"] == generation
                        && c["message"] == message
                });
            if done {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("policy never reached {type_} {message:?} for generation {generation}: {last:#}");
    }

    /// Waits until `done` holds for the policy; returns it.
    async fn wait_policy_until(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..600 {
            last = self.policy().await;
            if done(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("policy never reached {what}: {last:#}");
    }

    async fn enactments(&self) -> Vec<NodeNetworkConfigurationEnactment> {
        let list = json_of(
            &self.admin.get(ENACTMENTS).await.unwrap(),
            StatusCode::OK,
            "list",
        );
        serde_json::from_value(list["items"].clone()).unwrap()
    }

    /// Changes the policy's spec with a merge patch, as `kubectl apply`
    /// or `kubectl edit` would (a new generation).
    async fn update_spec(&self, marker: u32) {
        let patch = json!({"spec": policy(marker)["spec"]});
        json_of(
            &send(
                &self.admin,
                "PATCH",
                &format!("{POLICIES}/{POLICY}"),
                &patch,
            )
            .await,
            StatusCode::OK,
            "update the policy",
        );
    }

    fn max_in_flight(&self) -> usize {
        self.observed.lock().unwrap().max_in_flight
    }
}

fn handle_event(event: &Value, nodes: &[HttpsClient], observed: &Arc<Mutex<Observed>>) {
    let object = &event["object"];
    let Ok(enactment) = serde_json::from_value::<NodeNetworkConfigurationEnactment>(object.clone())
    else {
        return;
    };
    let name = enactment.metadata.name.clone().unwrap_or_default();
    let status = enactment.status.clone().unwrap_or_default();
    let mut seen = observed.lock().unwrap();
    if event["type"] == "DELETED" {
        seen.phases.remove(&name);
    } else {
        seen.phases.insert(name.clone(), status.phase());
    }
    let in_flight = seen
        .phases
        .values()
        .filter(|phase| **phase == EnactmentPhase::Progressing)
        .count();
    seen.max_in_flight = seen.max_in_flight.max(in_flight);

    let released = find_condition(&status.conditions, &ConditionType::Progressing)
        .is_some_and(|c| c.is_true() && c.message == ENACTMENT_RELEASED_MESSAGE);
    let (Some(generation), Some(node)) = (status.policy_generation, enactment.node_name()) else {
        return;
    };
    if event["type"] == "DELETED" || !released || !seen.taken.insert((name.clone(), generation)) {
        return;
    }
    let index: usize = node.trim_start_matches("node-").parse().unwrap();
    let client = nodes[index].clone();
    let fail = seen.failing.contains(node);
    let node = node.to_owned();
    let observed = observed.clone();
    tokio::spawn(async move {
        let path = format!("{ENACTMENTS}/{name}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        write_status(&client, &path, |conditions, now| {
            set_enactment_progressing(conditions, ENACTMENT_PROGRESSING_MESSAGE, now);
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        write_status(&client, &path, |conditions, now| {
            if fail {
                set_enactment_failed_to_configure(conditions, "simulated failure", now);
            } else {
                set_enactment_success(conditions, ENACTMENT_SUCCESS_MESSAGE, now);
            }
        })
        .await;
        observed
            .lock()
            .unwrap()
            .applied
            .entry(node)
            .or_default()
            .push(generation);
    });
}

/// Reads the enactment with the node's identity, changes its conditions,
/// and writes its status back (PUT with the resourceVersion read).
async fn write_status(
    client: &HttpsClient,
    path: &str,
    change: impl Fn(&mut Vec<nmstate_openapi::Condition>, &nmstate_openapi::Time),
) {
    for _ in 0..20 {
        // The server is gone once the test is over.
        let Ok(read) = client.get(path).await else {
            return;
        };
        assert_eq!(
            read.status,
            StatusCode::OK,
            "node reads its enactment: {}",
            read.body
        );
        let mut enactment: NodeNetworkConfigurationEnactment =
            serde_json::from_str(&read.body).unwrap();
        let status = enactment.status.get_or_insert_default();
        let now = nmstate_openapi::Time(k8s_openapi::jiff::Timestamp::now());
        change(&mut status.conditions, &now);
        let body = serde_json::to_value(&enactment).unwrap();
        let Ok(written) = client
            .request_with(
                "PUT",
                &format!("{path}/status"),
                &[("content-type", "application/json")],
                Some(body.to_string().into_bytes()),
            )
            .await
        else {
            return;
        };
        match written.status {
            StatusCode::OK => return,
            StatusCode::CONFLICT => continue,
            other => panic!("node writes its enactment status: {other} {}", written.body),
        }
    }
    panic!("could not write {path}/status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_with_max_unavailable() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = Cluster::start().await;
    json_of(
        &send(&cluster.admin, "POST", POLICIES, &policy(0)).await,
        StatusCode::CREATED,
        "create policy",
    );

    // 1. Everything succeeds, in waves of at most 3.
    let done = cluster
        .wait_policy("Available", 1, "10/10 nodes successfully configured")
        .await;
    assert!(
        cluster.max_in_flight() <= 3,
        "in flight: {}",
        cluster.max_in_flight()
    );
    assert!(cluster.max_in_flight() >= 2, "the rollout used its slots");
    let status = &done["status"];
    assert_eq!(status["matchingNodes"], 10);
    assert_eq!(status["availableNodes"], 10);
    assert_eq!(status["observedGeneration"], 1);
    let kubectl = Kubectl::for_server(&cluster.server).unwrap();
    kubectl
        .run(&[
            "wait",
            "nncp/br1",
            "--for=condition=Available",
            "--timeout=10s",
        ])
        .await
        .ok();
    let enactments = cluster.enactments().await;
    assert_eq!(enactments.len(), NODES);
    for enactment in &enactments {
        let node = enactment.node_name().unwrap();
        let i: usize = node.trim_start_matches("node-").parse().unwrap();
        assert_eq!(
            enactment.metadata.name.as_deref(),
            Some(format!("{node}.{POLICY}").as_str())
        );
        assert_eq!(enactment.policy_name(), Some(POLICY));
        let owner = &enactment.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("NodeNetworkConfigurationPolicy", POLICY, Some(true))
        );
        assert_eq!(
            Some(&owner.uid),
            done["metadata"]["uid"].as_str().map(String::from).as_ref()
        );
        let status = enactment.status.as_ref().unwrap();
        assert_eq!(status.phase(), EnactmentPhase::Available, "{node}");
        assert_eq!(status.policy_generation, Some(1));
        let bridge = &status.desired_state.as_ref().unwrap().as_value()["interfaces"][0];
        let iface = format!("eth{}", i % 2);
        assert_eq!(
            bridge["bridge"]["port"][0]["name"], iface,
            "{node} bridges its own gw iface"
        );
        assert_eq!(
            bridge["ipv4"]["address"][0]["ip"],
            format!("10.{}.0.{}", i % 2, i + 10),
            "{node} gets its own address"
        );
        // Upstream's default trunk for a port without a vlan section.
        assert_eq!(
            bridge["bridge"]["port"][0]["vlan"]["mode"], "trunk",
            "{node}"
        );
        let captured = &status.captured_states["default-gw"];
        assert_eq!(
            captured.state.as_ref().unwrap().as_value()["routes"]["running"][0]["next-hop-interface"],
            iface
        );
    }

    // Upstream's gauges of the cluster's state say the same.
    let gauges = state_gauges(&cluster.server).await;
    for status in ["Degraded", "Progressing"] {
        assert!(
            gauges.contains(&format!(
                "kubernetes_nmstate_policies_status{{status=\"{status}\"}} 0"
            )),
            "{gauges}"
        );
    }
    assert!(
        gauges.contains("kubernetes_nmstate_policies_status{status=\"Available\"} 1"),
        "{gauges}"
    );
    for i in 0..NODES {
        assert!(
            gauges.contains(&format!(
                "kubernetes_nmstate_enactments_status{{node=\"node-{i}\",status=\"Available\"}} 1"
            )),
            "{gauges}"
        );
        assert!(
            gauges.contains(&format!(
                "kubernetes_nmstate_enactments_status{{node=\"node-{i}\",status=\"Failing\"}} 0"
            )),
            "{gauges}"
        );
    }

    // 2. Generation 2 fails on the first three nodes (= maxUnavailable):
    //    the rest are aborted.
    {
        let mut observed = cluster.observed.lock().unwrap();
        observed.failing = ["node-0", "node-1", "node-2"].map(String::from).into();
        observed.max_in_flight = 0;
    }
    cluster.update_spec(2).await;
    // Applies finish at their own pace: a node released after the first
    // failure may still succeed before the third failure stops the
    // rollout. Wait until nothing is in flight any more.
    let degraded = cluster
        .wait_policy_until("settled Degraded", |policy| {
            let status = &policy["status"];
            status["observedGeneration"] == 2
                && status["failingNodes"] == 3
                && status["progressingNodes"] == 0
                && status["pendingNodes"] == 0
        })
        .await;
    let aborted = degraded["status"]["abortedNodes"].as_u64().unwrap();
    let available = degraded["status"]["availableNodes"].as_u64().unwrap();
    assert_eq!(aborted + available, 7, "{degraded:#}");
    let gauges = state_gauges(&cluster.server).await;
    assert!(
        gauges.contains("kubernetes_nmstate_policies_status{status=\"Degraded\"} 1"),
        "{gauges}"
    );
    assert!(
        gauges.contains("kubernetes_nmstate_policies_status{status=\"Available\"} 0"),
        "{gauges}"
    );
    for node in ["node-0", "node-1", "node-2"] {
        assert!(
            gauges.contains(&format!(
                "kubernetes_nmstate_enactments_status{{node=\"{node}\",status=\"Failing\"}} 1"
            )),
            "{gauges}"
        );
    }
    let count = |status: &str| -> u64 {
        (0..NODES)
            .filter(|i| gauges.contains(&format!("kubernetes_nmstate_enactments_status{{node=\"node-{i}\",status=\"{status}\"}} 1")))
            .count() as u64
    };
    assert_eq!(
        (count("Aborted"), count("Available")),
        (aborted, available),
        "{gauges}"
    );
    assert!(aborted >= 1, "the rest was aborted: {degraded:#}");
    let condition = |type_: &str| {
        degraded["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .unwrap()
            .clone()
    };
    let degraded_condition = condition("Degraded");
    assert_eq!(degraded_condition["status"], "True");
    assert_eq!(degraded_condition["reason"], "FailedToConfigure");
    assert_eq!(
        degraded_condition["message"],
        format!("3/10 nodes failed to configure, {aborted} nodes aborted configuration")
    );
    assert_eq!(condition("Available")["status"], "False");
    assert!(cluster.max_in_flight() <= 3);
    for enactment in cluster.enactments().await {
        let node = enactment.node_name().unwrap().to_owned();
        let status = enactment.status.unwrap();
        let phase = status.phase();
        if ["node-0", "node-1", "node-2"].contains(&node.as_str()) {
            assert_eq!(phase, EnactmentPhase::Failed, "{node}");
        } else {
            assert!(
                matches!(phase, EnactmentPhase::Aborted | EnactmentPhase::Available),
                "{node}: {phase:?}"
            );
        }
        if phase == EnactmentPhase::Aborted {
            let aborted = find_condition(&status.conditions, &ConditionType::Aborted).unwrap();
            assert_eq!(
                aborted.message,
                format!("reconciliation of enactment \"{node}.{POLICY}\" has aborted")
            );
        }
    }

    // 3. Generation 3 while generation 3's first wave is in flight:
    //    generation 4 arrives; the in-flight applies finish, then 4 rolls
    //    out everywhere.
    cluster.observed.lock().unwrap().failing.clear();
    cluster.update_spec(3).await;
    // Wait until generation 3 has something in flight.
    for _ in 0..100 {
        let in_flight = cluster
            .enactments()
            .await
            .iter()
            .filter(|e| {
                let s = e.status.as_ref().unwrap();
                s.policy_generation == Some(3) && s.phase() == EnactmentPhase::Progressing
            })
            .count();
        if in_flight > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.update_spec(4).await;
    cluster
        .wait_policy("Available", 4, "10/10 nodes successfully configured")
        .await;
    assert!(
        cluster.max_in_flight() <= 3,
        "in flight: {}",
        cluster.max_in_flight()
    );
    let applied = cluster.observed.lock().unwrap().applied.clone();
    assert!(
        applied.values().any(|generations| generations.contains(&3)),
        "some node finished generation 3 before 4: {applied:?}"
    );
    for enactment in cluster.enactments().await {
        let status = enactment.status.unwrap();
        assert_eq!(status.policy_generation, Some(4));
        assert_eq!(
            status.desired_state.unwrap().as_value()["interfaces"][0]["mtu"],
            1404
        );
    }

    // 4. A node loses the selected label: its enactment goes.
    let unlabel = json!({"metadata": {"labels": {"node-role.kubernetes.io/worker": null}}});
    json_of(
        &send(
            &cluster.nodes[9],
            "PATCH",
            &format!("{STATES}/node-9"),
            &unlabel,
        )
        .await,
        StatusCode::OK,
        "node-9 drops the worker label",
    );
    cluster
        .wait_policy("Available", 4, "9/9 nodes successfully configured")
        .await;
    assert!(
        !cluster
            .enactments()
            .await
            .iter()
            .any(|e| e.node_name() == Some("node-9"))
    );

    // 5. Deleting the policy deletes its enactments.
    let deleted = cluster
        .admin
        .request("DELETE", &format!("{POLICIES}/{POLICY}"), None)
        .await
        .unwrap();
    assert_eq!(deleted.status, StatusCode::OK);
    for _ in 0..100 {
        if cluster.enactments().await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "enactments left after the policy was deleted: {:?}",
        cluster.enactments().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_matching_and_not_ready() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let cluster = Cluster::start().await;
    // Nothing matches.
    let mut nothing = policy(0);
    nothing["metadata"]["name"] = json!("nothing");
    nothing["spec"]["nodeSelector"] = json!({"no-such-label": "x"});
    json_of(
        &send(&cluster.admin, "POST", POLICIES, &nothing).await,
        StatusCode::CREATED,
        "create",
    );
    let mut last = Value::Null;
    for _ in 0..100 {
        last = json_of(
            &cluster
                .admin
                .get(&format!("{POLICIES}/nothing"))
                .await
                .unwrap(),
            StatusCode::OK,
            "get",
        );
        let ignored = last["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["type"] == "Ignored"
                    && c["status"] == "True"
                    && c["reason"] == "NoMatchingNode"
                    && c["message"] == "Policy does not match any node"
            });
        if ignored {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["status"]["matchingNodes"], 0, "{last:#}");

    // node-0's agent stops reporting: its Ready condition goes stale.
    let stale = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "AgentReporting",
        "lastHeartbeatTime": "2020-01-01T00:00:00Z", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}});
    json_of(
        &send(
            &cluster.nodes[0],
            "PATCH",
            &format!("{STATES}/node-0/status"),
            &stale,
        )
        .await,
        StatusCode::OK,
        "stale heartbeat",
    );
    let mut all = policy(0);
    all["spec"]["maxUnavailable"] = json!("100%");
    json_of(
        &send(&cluster.admin, "POST", POLICIES, &all).await,
        StatusCode::CREATED,
        "create",
    );
    cluster
        .wait_policy(
            "Available",
            1,
            "9/10 nodes successfully configured, 1 nodes ignored due to NotReady state",
        )
        .await;
    let enactment = cluster
        .enactments()
        .await
        .into_iter()
        .find(|e| e.node_name() == Some("node-0"))
        .unwrap();
    assert_eq!(
        enactment.status.unwrap().phase(),
        EnactmentPhase::Pending,
        "nothing released to a NotReady node"
    );
}

/// The server's metrics, as Prometheus scrapes them.
async fn metrics_text(server: &ApiserverProcess) -> String {
    let metrics = server
        .admin_client()
        .unwrap()
        .get("/metrics")
        .await
        .unwrap();
    assert_eq!(metrics.status, StatusCode::OK);
    metrics.body
}

/// The server's metrics lines of upstream's policy and enactment gauges.
async fn state_gauges(server: &ApiserverProcess) -> String {
    let metrics = metrics_text(server).await;
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("kubernetes_nmstate_"))
        .collect();
    lines.join("\n")
}

/// `nmstate_controller_leader` from the server's metrics.
async fn leads(server: &ApiserverProcess) -> bool {
    metrics_text(server)
        .await
        .lines()
        .any(|line| line.trim() == "nmstate_controller_leader 1")
}

async fn wait_for(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Whether policy `name` has been reconciled (any status written).
async fn reconciled(client: &HttpsClient, name: &str) -> bool {
    let policy = client.get(&format!("{POLICIES}/{name}")).await.unwrap();
    let policy: Value = serde_json::from_str(&policy.body).unwrap();
    policy["status"]["observedGeneration"] == 1
}

/// Two replicas on one etcd: exactly one runs the controller; when it
/// stops (SIGTERM: it resigns) or dies (SIGKILL: its lease expires), the
/// other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_on_etcd() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let etcd = nmstate_e2e::etcd::EtcdProcess::start().await;
    let flags = ["--etcd-servers", &etcd.endpoint()];
    let mut first = ApiserverProcess::start(&flags).await.unwrap();
    wait_for("the first replica to lead", async || leads(&first).await).await;
    let second = ApiserverProcess::start(&flags).await.unwrap();
    let third = ApiserverProcess::start(&flags).await.unwrap();
    // Give the others time to campaign; they must not lead.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(leads(&first).await);
    assert!(
        !leads(&second).await && !leads(&third).await,
        "one leader at a time"
    );

    // Written through another replica, reconciled by the leader.
    let admin = second.admin_client().unwrap();
    let mut p = policy(0);
    p["metadata"]["name"] = json!("p1");
    json_of(
        &send(&admin, "POST", POLICIES, &p).await,
        StatusCode::CREATED,
        "create p1",
    );
    wait_for("p1 to be reconciled", async || {
        reconciled(&admin, "p1").await
    })
    .await;

    // SIGTERM: the leader resigns at once.
    first.terminate().unwrap();
    wait_for("a new leader after SIGTERM", async || {
        leads(&second).await || leads(&third).await
    })
    .await;
    assert!(
        !(leads(&second).await && leads(&third).await),
        "one leader at a time"
    );
    let (leader, follower) = if leads(&second).await {
        (second, third)
    } else {
        (third, second)
    };
    let admin = follower.admin_client().unwrap();
    p["metadata"]["name"] = json!("p2");
    json_of(
        &send(&admin, "POST", POLICIES, &p).await,
        StatusCode::CREATED,
        "create p2",
    );
    wait_for("p2 to be reconciled", async || {
        reconciled(&admin, "p2").await
    })
    .await;

    // SIGKILL: the follower takes over once the leader's lease expires.
    drop(leader);
    wait_for("a new leader after SIGKILL", async || {
        leads(&follower).await
    })
    .await;
    p["metadata"]["name"] = json!("p3");
    json_of(
        &send(&admin, "POST", POLICIES, &p).await,
        StatusCode::CREATED,
        "create p3",
    );
    wait_for("p3 to be reconciled", async || {
        reconciled(&admin, "p3").await
    })
    .await;
}
