//! Hollow node agents against the real `nmstate-apiserver` (embedded
//! store), each process with its own node identity (`system:node:<node>`
//! in `system:nodes`, so node restriction applies):
//!
//! - every agent publishes its NodeNetworkState with its labels, its state
//!   and a `Ready` condition, and serves `/healthz` and `/metrics`;
//! - a deleted NodeNetworkState is recreated;
//! - an idle agent makes no writes (counted on the apiserver's metrics and
//!   by the object's resourceVersion);
//! - playing the controller's part through the API (released enactments
//!   written by the admin, the server's controller off), an agent applies a
//!   released enactment and reports it Available, never touches a Pending
//!   one, and retries a failing one five times before reporting
//!   FailedToConfigure with the backend's message;
//! - with the real controller: 20 hollow agents, a policy with
//!   `maxUnavailable: 3`, and an injected failure on 2 nodes: never more
//!   than 3 enactments in flight, 18 Available, 2 Failing, and the policy
//!   Degraded with upstream's message;
//! - SIGTERM ends the agent with exit code 0.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use http::StatusCode;
use nmstate_e2e::{
    agent::AgentProcess,
    apiserver::ApiserverProcess,
    https::{HttpsClient, TestResponse},
};
use serde_json::{Value, json};

const STATES: &str = "/apis/nmstate.io/v1/nodenetworkstates";
const ENACTMENTS: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationenactments";

fn node_kubeconfig(server: &ApiserverProcess, node: &str) -> std::path::PathBuf {
    server
        .issue_kubeconfig(&format!("system:node:{node}"), &["system:nodes"])
        .unwrap()
}

async fn get_json(client: &HttpsClient, path: &str) -> Option<Value> {
    let response = client.get(path).await.unwrap();
    if response.status == StatusCode::NOT_FOUND {
        return None;
    }
    assert_eq!(
        response.status,
        StatusCode::OK,
        "GET {path}: {}",
        response.body
    );
    Some(serde_json::from_str(&response.body).unwrap())
}

async fn send(client: &HttpsClient, method: &str, path: &str, body: &Value) -> TestResponse {
    client.send_json(method, path, body).await.unwrap()
}

/// Polls `check` every 200 ms until it returns `Some`, for at most
/// `limit`; panics with `what` and the agents' logs otherwise.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, agents: &[&AgentProcess], check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = agents
                .iter()
                .map(|agent| format!("--- {} ---\n{}", agent.node(), agent.logs()))
                .collect();
            panic!("{what}: not within {limit:?}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn condition<'a>(conditions: &'a Value, type_: &str) -> Option<&'a Value> {
    conditions
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == type_)
}

fn is_true(conditions: &Value, type_: &str) -> bool {
    condition(conditions, type_).is_some_and(|c| c["status"] == "True")
}

/// The state of `node` once its agent reported it Ready.
async fn ready_state(admin: &HttpsClient, node: &str, agents: &[&AgentProcess]) -> Value {
    eventually(
        &format!("NodeNetworkState {node} Ready"),
        Duration::from_secs(60),
        agents,
        || async {
            let state = get_json(admin, &format!("{STATES}/{node}")).await?;
            is_true(&state["status"]["conditions"], "Ready").then_some(state)
        },
    )
    .await
}

async fn plain_get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// The apiserver's count of NodeNetworkState writes.
async fn state_writes(admin: &HttpsClient) -> u64 {
    nmstate_e2e::metrics::state_writes(&admin.get("/metrics").await.unwrap().body)
}

#[tokio::test]
async fn hollow_agents_publish_their_state_and_recreate_it() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&[]).await.unwrap();
    let admin = server.admin_client().unwrap();
    let mut agents = Vec::new();
    for node in ["node-1", "node-2"] {
        let kubeconfig = node_kubeconfig(&server, node);
        let labels = format!("kubernetes.io/hostname={node},node-role.kubernetes.io/worker=");
        agents.push(
            AgentProcess::start(
                node,
                &kubeconfig,
                &[
                    "--backend",
                    "hollow",
                    "--hollow-interfaces",
                    "3",
                    "--node-labels",
                    &labels,
                ],
            )
            .unwrap(),
        );
    }
    let all: Vec<&AgentProcess> = agents.iter().collect();
    for node in ["node-1", "node-2"] {
        let state = ready_state(&admin, node, &all).await;
        assert_eq!(state["metadata"]["labels"]["kubernetes.io/hostname"], node);
        assert_eq!(
            state["metadata"]["labels"]["node-role.kubernetes.io/worker"],
            ""
        );
        let status = &state["status"];
        let names: Vec<&str> = status["currentState"]["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["lo", "eth0", "eth1", "eth2"], "{node}");
        assert!(status["lastSuccessfulUpdateTime"].is_string(), "{status}");
        assert!(
            status["handlerNmstateVersion"]
                .as_str()
                .unwrap()
                .starts_with("hollow-"),
            "{status}"
        );
        let ready = condition(&status["conditions"], "Ready").unwrap();
        assert_eq!(ready["reason"], "AgentReporting");
    }

    // kubectl-style listing shows both nodes through the admin.
    let list = get_json(&admin, STATES).await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);

    // Health and metrics, on the agent's local port.
    let (code, body) = plain_get(agents[0].health_address(), "/healthz").await;
    assert_eq!((code, body.as_str()), (200, "ok"));
    let (code, metrics) = plain_get(agents[0].health_address(), "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics
            .contains(r#"kubernetes_nmstate_network_interfaces{node="node-1",type="ethernet"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"kubernetes_nmstate_routes{node="node-1",ip_stack="ipv4",type="static"} 1"#
        ),
        "{metrics}"
    );

    // A deleted state comes back, as a new object.
    let before = get_json(&admin, &format!("{STATES}/node-1")).await.unwrap();
    let deleted = admin
        .request("DELETE", &format!("{STATES}/node-1"), None)
        .await
        .unwrap();
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    let recreated = eventually(
        "NodeNetworkState node-1 recreated",
        Duration::from_secs(30),
        &all,
        || async {
            let state = get_json(&admin, &format!("{STATES}/node-1")).await?;
            (state["metadata"]["uid"] != before["metadata"]["uid"]
                && is_true(&state["status"]["conditions"], "Ready"))
            .then_some(state)
        },
    )
    .await;
    assert_eq!(
        recreated["status"]["currentState"],
        before["status"]["currentState"]
    );
    assert_eq!(
        recreated["metadata"]["labels"],
        before["metadata"]["labels"]
    );

    // SIGTERM: a clean exit.
    for agent in &mut agents {
        let status = agent.terminate().unwrap();
        assert!(status.success(), "{status}: {}", agent.logs());
    }
}

#[tokio::test]
async fn an_idle_agent_writes_nothing() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&[]).await.unwrap();
    let admin = server.admin_client().unwrap();
    let kubeconfig = node_kubeconfig(&server, "idle");
    // The Ready heartbeat (a write by design, at most once a minute) is put
    // out of the window, so any write seen would be a spurious one.
    let agent = AgentProcess::start(
        "idle",
        &kubeconfig,
        &[
            "--backend",
            "hollow",
            "--ready-interval",
            "10m",
            "--resync",
            "2s",
        ],
    )
    .unwrap();
    let state = ready_state(&admin, "idle", &[&agent]).await;
    // Let the first reports settle: they are the create and one status write.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes_before = state_writes(&admin).await;
    assert!(
        writes_before >= 2,
        "create and status were counted: {writes_before}"
    );
    let version_before =
        get_json(&admin, &format!("{STATES}/idle")).await.unwrap()["metadata"]["resourceVersion"]
            .clone();
    // Several resync periods: each re-reads the state and finds it unchanged.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = get_json(&admin, &format!("{STATES}/idle")).await.unwrap();
    assert_eq!(after["metadata"]["resourceVersion"], version_before);
    assert_eq!(
        state_writes(&admin).await,
        writes_before,
        "{}",
        agent.logs()
    );
    assert_eq!(
        after["status"]["lastSuccessfulUpdateTime"],
        state["status"]["lastSuccessfulUpdateTime"]
    );
}

/// An enactment of `policy` on `node` as the controller writes it: created,
/// then its status released for generation 1 with `desired`.
async fn release(admin: &HttpsClient, node: &str, policy: &str, desired: Value, pending: bool) {
    let name = format!("{node}.{policy}");
    let created = send(
        admin,
        "POST",
        ENACTMENTS,
        &json!({
            "apiVersion": "nmstate.io/v1",
            "kind": "NodeNetworkConfigurationEnactment",
            "metadata": {
                "name": name,
                "labels": {"nmstate.io/node": node, "nmstate.io/policy": policy},
            },
        }),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let mut object: Value = serde_json::from_str(&created.body).unwrap();
    let now = "2026-01-01T00:00:00Z";
    let cond = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let conditions = if pending {
        let reason = "MaxUnavailableLimitReached";
        let message = "Waiting for progressing nodes to finish";
        json!([
            cond("Available", "False", reason, ""),
            cond("Failing", "False", reason, ""),
            cond("Progressing", "False", reason, message),
            cond("Pending", "True", reason, message),
            cond("Aborted", "False", reason, ""),
        ])
    } else {
        let reason = "ConfigurationProgressing";
        json!([
            cond("Available", "Unknown", reason, ""),
            cond("Failing", "Unknown", reason, ""),
            cond(
                "Progressing",
                "True",
                reason,
                "Released to the node agent for applying"
            ),
            cond("Pending", "False", reason, ""),
            cond("Aborted", "False", reason, ""),
        ])
    };
    object["status"] = json!({
        "desiredState": desired,
        "policyGeneration": 1,
        "conditions": conditions,
    });
    let written = send(
        admin,
        "PUT",
        &format!("{ENACTMENTS}/{name}/status"),
        &object,
    )
    .await;
    assert_eq!(written.status, StatusCode::OK, "{}", written.body);
}

#[tokio::test]
async fn a_hollow_agent_applies_released_enactments() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    // The test plays the controller: the real one would delete enactments
    // of policies that do not exist.
    let server = ApiserverProcess::start(&["--controller=false"])
        .await
        .unwrap();
    let admin = server.admin_client().unwrap();
    let kubeconfig = node_kubeconfig(&server, "node-a");
    let mut agent = AgentProcess::start(
        "node-a",
        &kubeconfig,
        &["--backend", "hollow", "--hollow-fail-marker", "doomed"],
    )
    .unwrap();
    let agents = [&agent];
    ready_state(&admin, "node-a", &agents).await;

    // A pending enactment is left alone; a released one is applied.
    release(
        &admin,
        "node-a",
        "waiting",
        json!({"interfaces": [{"name": "br9", "type": "linux-bridge", "state": "up"}]}),
        true,
    )
    .await;
    release(
        &admin,
        "node-a",
        "br1",
        json!({"interfaces": [{"name": "br1", "type": "linux-bridge", "state": "up",
            "bridge": {"port": [{"name": "eth1"}]}}],
            "dns-resolver": {"config": {"server": ["192.0.2.53"]}}}),
        false,
    )
    .await;
    let enactment = eventually(
        "br1 Available",
        Duration::from_secs(60),
        &agents,
        || async {
            let enactment = get_json(&admin, &format!("{ENACTMENTS}/node-a.br1")).await?;
            is_true(&enactment["status"]["conditions"], "Available").then_some(enactment)
        },
    )
    .await;
    let conditions = &enactment["status"]["conditions"];
    let available = condition(conditions, "Available").unwrap();
    assert_eq!(available["reason"], "SuccessfullyConfigured");
    assert_eq!(available["message"], "successfully reconciled");
    // The nmstate features the applied state uses, as upstream reports
    // them (`nmstatectl statistic`).
    assert_eq!(
        enactment["status"]["features"],
        json!(["static-dns-name-server"])
    );
    for type_ in ["Failing", "Progressing", "Pending", "Aborted"] {
        assert_eq!(
            condition(conditions, type_).unwrap()["status"],
            "False",
            "{type_}"
        );
    }
    // The bridge shows in the node's state.
    eventually(
        "br1 in the NodeNetworkState",
        Duration::from_secs(30),
        &agents,
        || async {
            let state = get_json(&admin, &format!("{STATES}/node-a")).await?;
            state["status"]["currentState"]["interfaces"]
                .as_array()?
                .iter()
                .any(|i| i["name"] == "br1")
                .then_some(())
        },
    )
    .await;

    // A failing one: Retrying n/5 while it retries, then FailedToConfigure.
    release(
        &admin,
        "node-a",
        "doomed",
        json!({"interfaces": [{"name": "doomed", "type": "linux-bridge", "state": "up"}]}),
        false,
    )
    .await;
    let retrying = eventually(
        "doomed Retrying",
        Duration::from_secs(30),
        &agents,
        || async {
            let enactment = get_json(&admin, &format!("{ENACTMENTS}/node-a.doomed")).await?;
            let failing = condition(&enactment["status"]["conditions"], "Failing")?.clone();
            (failing["reason"] == "Retrying").then_some(enactment)
        },
    )
    .await;
    let progressing = condition(&retrying["status"]["conditions"], "Progressing").unwrap();
    assert_eq!(progressing["status"], "True");
    assert!(
        progressing["message"].as_str().unwrap().starts_with(
            "failed to reconcile NodeNetworkConfigurationPolicy on node node-a. Retrying "
        ),
        "{progressing}"
    );
    // 1 + 2 + 4 + 8 + 16 s of back-off.
    let failed = eventually(
        "doomed FailedToConfigure",
        Duration::from_secs(120),
        &agents,
        || async {
            let enactment = get_json(&admin, &format!("{ENACTMENTS}/node-a.doomed")).await?;
            let failing = condition(&enactment["status"]["conditions"], "Failing")?.clone();
            (failing["reason"] == "FailedToConfigure").then_some(enactment)
        },
    )
    .await;
    let conditions = &failed["status"]["conditions"];
    let failing = condition(conditions, "Failing").unwrap();
    assert_eq!(failing["status"], "True");
    assert_eq!(
        failing["message"],
        r#"hollow node: injected failure: the desired state contains "doomed""#
    );
    assert_eq!(
        condition(conditions, "Progressing").unwrap()["status"],
        "False"
    );
    assert_eq!(failed["status"]["retryCount"], json!({"1": 6}));
    // The failed apply changed nothing on the node.
    let state = get_json(&admin, &format!("{STATES}/node-a")).await.unwrap();
    assert!(
        !state["status"]["currentState"]["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "doomed")
    );

    // The pending one was never touched.
    let waiting = get_json(&admin, &format!("{ENACTMENTS}/node-a.waiting"))
        .await
        .unwrap();
    assert!(
        is_true(&waiting["status"]["conditions"], "Pending"),
        "{waiting}"
    );
    assert!(
        !state["status"]["currentState"]["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "br9")
    );

    let (_, metrics) = plain_get(agent.health_address(), "/metrics").await;
    assert!(
        metrics.contains(r#"nmstate_agent_applies_total{result="success"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"nmstate_agent_applies_total{result="failure"} 6"#),
        "{metrics}"
    );
    let status = agent.terminate().unwrap();
    assert!(status.success(), "{status}");
}

const POLICIES: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_hollow_agents_roll_a_policy_out() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    const NODES: usize = 20;
    let failing = ["node-04", "node-13"];
    let server = ApiserverProcess::start(&[]).await.unwrap();
    let admin = server.admin_client().unwrap();
    let mut agents = Vec::new();
    for i in 0..NODES {
        let node = format!("node-{i:02}");
        let kubeconfig = node_kubeconfig(&server, &node);
        let labels = format!("kubernetes.io/hostname={node},node-role.kubernetes.io/worker=");
        let mut args = vec!["--backend", "hollow", "--node-labels", &labels];
        // The failure is injected per node: these two fail every apply
        // that names the policy's bridge.
        if failing.contains(&node.as_str()) {
            args.extend(["--hollow-fail-marker", "br-rollout"]);
        }
        agents.push(AgentProcess::start(&node, &kubeconfig, &args).unwrap());
    }
    let all: Vec<&AgentProcess> = agents.iter().collect();
    // Every node is Ready before the policy arrives, so all 20 match and
    // none is skipped as NotReady.
    for agent in &agents {
        ready_state(&admin, agent.node(), &all).await;
    }

    let policy = json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "rollout"},
        "spec": {
            "nodeSelector": {"node-role.kubernetes.io/worker": ""},
            "maxUnavailable": 3,
            "desiredState": {"interfaces": [{
                "name": "br-rollout", "type": "linux-bridge", "state": "up",
                "bridge": {"port": [{"name": "eth1"}]},
            }]},
        },
    });
    let created = send(&admin, "POST", POLICIES, &policy).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

    // Sample the enactments until the rollout settles: never more than
    // maxUnavailable in flight (sampling can miss a peak, never invent one).
    let mut max_in_flight = 0;
    let deadline = Instant::now() + Duration::from_secs(240);
    let settled = loop {
        let list = get_json(&admin, ENACTMENTS).await.unwrap();
        let items = list["items"].as_array().unwrap().clone();
        let in_flight = items
            .iter()
            .filter(|e| is_true(&e["status"]["conditions"], "Progressing"))
            .count();
        max_in_flight = max_in_flight.max(in_flight);
        let policy = get_json(&admin, &format!("{POLICIES}/rollout"))
            .await
            .unwrap();
        let status = &policy["status"];
        if status["observedGeneration"] == 1
            && status["availableNodes"].as_u64().unwrap_or(0)
                + status["failingNodes"].as_u64().unwrap_or(0)
                == NODES as u64
        {
            break (policy, items);
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = failing
                .iter()
                .filter_map(|node| agents.iter().find(|a| a.node() == *node))
                .map(|agent| agent.logs())
                .collect();
            panic!(
                "the rollout did not settle: {policy:#}\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(max_in_flight <= 3, "{max_in_flight} in flight at once");
    assert!(max_in_flight >= 1, "the rollout was seen in flight");
    let (policy, enactments) = settled;
    assert_eq!(enactments.len(), NODES);
    for enactment in &enactments {
        let node = enactment["metadata"]["labels"]["nmstate.io/node"]
            .as_str()
            .unwrap();
        let conditions = &enactment["status"]["conditions"];
        if failing.contains(&node) {
            let failing = condition(conditions, "Failing").unwrap();
            assert_eq!(failing["status"], "True", "{node}");
            assert_eq!(failing["reason"], "FailedToConfigure", "{node}");
            assert_eq!(
                failing["message"],
                r#"hollow node: injected failure: the desired state contains "br-rollout""#
            );
            assert_eq!(enactment["status"]["retryCount"], json!({"1": 6}), "{node}");
        } else {
            let available = condition(conditions, "Available").unwrap();
            assert_eq!(available["status"], "True", "{node}: {enactment:#}");
            assert_eq!(available["reason"], "SuccessfullyConfigured");
        }
    }

    let status = &policy["status"];
    assert_eq!(status["matchingNodes"], 20, "{policy:#}");
    assert_eq!(status["availableNodes"], 18, "{policy:#}");
    assert_eq!(status["failingNodes"], 2, "{policy:#}");
    assert_eq!(
        status["abortedNodes"].as_u64().unwrap_or(0),
        0,
        "{policy:#}"
    );
    let conditions = &status["conditions"];
    let degraded = condition(conditions, "Degraded").unwrap();
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "FailedToConfigure");
    assert_eq!(degraded["message"], "2/20 nodes failed to configure");
    assert_eq!(
        condition(conditions, "Available").unwrap()["status"],
        "False"
    );
    assert_eq!(
        condition(conditions, "Progressing").unwrap()["status"],
        "False"
    );

    // The nodes' own reports agree: the bridge is on the 18, not on the 2.
    for agent in &agents {
        let node = agent.node();
        let has_bridge = eventually(
            &format!("{node} reports its final state"),
            Duration::from_secs(30),
            &all,
            || async {
                let state = get_json(&admin, &format!("{STATES}/{node}")).await?;
                let has = state["status"]["currentState"]["interfaces"]
                    .as_array()?
                    .iter()
                    .any(|i| i["name"] == "br-rollout");
                // Failing nodes never get it; wait for the others' report.
                (has || failing.contains(&node)).then_some(has)
            },
        )
        .await;
        assert_eq!(has_bridge, !failing.contains(&node), "{node}");
    }
}
