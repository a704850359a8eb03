//! Node restriction against a real standalone server: with certificates
//! issued for `system:node:a` and `system:node:b` (group `system:nodes`),
//! node a writes its own NodeNetworkState and the status of its own
//! enactments, and gets 403 — with Kubernetes' message — for everything of
//! node b, for writing policies, and for listing every enactment. The same
//! 403 reaches a user of the real kubectl.
#![allow(clippy::unwrap_used)]

use http::StatusCode;
use nmstate_e2e::{
    apiserver::ApiserverProcess,
    https::{HttpsClient, TestResponse},
    kubectl::Kubectl,
};
use serde_json::{Value, json};

const STATES: &str = "/apis/nmstate.io/v1/nodenetworkstates";
const POLICIES: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies";
const ENACTMENTS: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationenactments";

async fn send(client: &HttpsClient, method: &str, path: &str, body: Value) -> TestResponse {
    client.send_json(method, path, &body).await.unwrap()
}

#[track_caller]
fn assert_code(response: &TestResponse, code: StatusCode, what: &str) {
    assert_eq!(response.status, code, "{what}: {}", response.body);
}

/// Asserts a 403 Status and returns its message.
#[track_caller]
fn forbidden(response: &TestResponse, what: &str) -> String {
    forbidden_status(response, what)["message"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Asserts a 403 Status and returns it.
#[track_caller]
fn forbidden_status(response: &TestResponse, what: &str) -> Value {
    assert_code(response, StatusCode::FORBIDDEN, what);
    let status: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(status["kind"], "Status", "{what}");
    assert_eq!(status["reason"], "Forbidden", "{what}");
    assert_eq!(status["code"], 403, "{what}");
    assert!(status["message"].is_string(), "{what}: {status}");
    status
}

/// Asserts a 403 Status whose `details` name the object as kube-apiserver
/// does (group, resource without subresource as `kind`, name).
#[track_caller]
fn forbidden_details(response: &TestResponse, what: &str, details: Value) {
    assert_eq!(
        forbidden_status(response, what)["details"],
        details,
        "{what}"
    );
}

fn state(name: &str) -> Value {
    json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkState",
        "metadata": {"name": name},
    })
}

fn enactment(node: &str, policy: &str) -> Value {
    json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationEnactment",
        "metadata": {
            "name": format!("{node}.{policy}"),
            "labels": {"nmstate.io/node": node, "nmstate.io/policy": policy},
        },
    })
}

#[tokio::test]
async fn a_node_writes_only_its_own_objects() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    // Enactments are made by hand here; the controller would delete those
    // of policies that do not exist.
    let server = ApiserverProcess::start(&["--controller=false"])
        .await
        .unwrap();
    let admin = server.admin_client().unwrap();
    let node_a = HttpsClient::from_kubeconfig(
        &server
            .issue_kubeconfig("system:node:a", &["system:nodes"])
            .unwrap(),
    )
    .unwrap();
    let node_b = HttpsClient::from_kubeconfig(
        &server
            .issue_kubeconfig("system:node:b", &["system:nodes"])
            .unwrap(),
    )
    .unwrap();

    // Each node creates and updates its own state and status.
    assert_code(
        &send(&node_a, "POST", STATES, state("a")).await,
        StatusCode::CREATED,
        "a creates NNS a",
    );
    assert_code(
        &send(&node_b, "POST", STATES, state("b")).await,
        StatusCode::CREATED,
        "b creates NNS b",
    );
    let patch = json!({"metadata": {"labels": {"seen": "yes"}}});
    assert_code(
        &send(&node_a, "PATCH", &format!("{STATES}/a"), patch.clone()).await,
        StatusCode::OK,
        "a patches NNS a",
    );
    let status = json!({"status": {"handlerNmstateVersion": "2.2"}});
    assert_code(
        &send(
            &node_a,
            "PATCH",
            &format!("{STATES}/a/status"),
            status.clone(),
        )
        .await,
        StatusCode::OK,
        "a patches the status of NNS a",
    );
    let current: Value =
        serde_json::from_str(&node_a.get(&format!("{STATES}/a")).await.unwrap().body).unwrap();
    assert_code(
        &send(&node_a, "PUT", &format!("{STATES}/a"), current).await,
        StatusCode::OK,
        "a updates NNS a",
    );

    // Node b's state is out of reach, however a asks.
    let message = forbidden(
        &send(&node_a, "PATCH", &format!("{STATES}/b"), patch.clone()).await,
        "a patches NNS b",
    );
    assert_eq!(
        message,
        "nodenetworkstates.nmstate.io \"b\" is forbidden: User \"system:node:a\" cannot patch resource \"nodenetworkstates\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only write its own NodeNetworkState"
    );
    forbidden_details(
        &send(&node_a, "PATCH", &format!("{STATES}/b/status"), status).await,
        "a patches the status of NNS b",
        json!({"name": "b", "group": "nmstate.io", "kind": "nodenetworkstates"}),
    );
    forbidden(
        &node_a.get(&format!("{STATES}/b")).await.unwrap(),
        "a reads NNS b",
    );
    let created_c = send(&node_a, "POST", STATES, state("c")).await;
    forbidden_details(
        &created_c,
        "a creates NNS c",
        json!({"name": "c", "group": "nmstate.io", "kind": "nodenetworkstates"}),
    );
    let message = forbidden(&created_c, "a creates NNS c");
    assert_eq!(
        message,
        "nodenetworkstates.nmstate.io \"c\" is forbidden: User \"system:node:a\" cannot create resource \"nodenetworkstates\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only create its own NodeNetworkState \"a\""
    );
    forbidden(
        &send(&node_a, "DELETE", &format!("{STATES}/a"), json!({})).await,
        "a deletes NNS a",
    );

    // Policies: read, never written.
    assert_code(
        &node_a.get(POLICIES).await.unwrap(),
        StatusCode::OK,
        "a lists policies",
    );
    let policy = json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "p"},
        "spec": {"desiredState": {}},
    });
    forbidden(
        &send(&node_a, "POST", POLICIES, policy).await,
        "a creates a policy",
    );

    // Enactments, created by the admin as the controller would.
    for node in ["a", "b"] {
        assert_code(
            &send(&admin, "POST", ENACTMENTS, enactment(node, "p")).await,
            StatusCode::CREATED,
            "admin creates an enactment",
        );
    }
    let enactment_status = json!({"status": {"policyGeneration": 1}});
    let patched = send(
        &node_a,
        "PATCH",
        &format!("{ENACTMENTS}/a.p/status"),
        enactment_status.clone(),
    )
    .await;
    assert_code(
        &patched,
        StatusCode::OK,
        "a patches the status of its enactment",
    );
    let patched: Value = serde_json::from_str(&patched.body).unwrap();
    assert_eq!(patched["status"]["policyGeneration"], 1);
    assert_code(
        &node_a.get(&format!("{ENACTMENTS}/a.p")).await.unwrap(),
        StatusCode::OK,
        "a reads its enactment",
    );
    let patched_b = send(
        &node_a,
        "PATCH",
        &format!("{ENACTMENTS}/b.p/status"),
        enactment_status.clone(),
    )
    .await;
    forbidden_details(
        &patched_b,
        "a patches the status of b's enactment",
        json!({"name": "b.p", "group": "nmstate.io", "kind": "nodenetworkconfigurationenactments"}),
    );
    let message = forbidden(&patched_b, "a patches the status of b's enactment");
    assert_eq!(
        message,
        "nodenetworkconfigurationenactments.nmstate.io \"b.p\" is forbidden: User \"system:node:a\" cannot patch resource \"nodenetworkconfigurationenactments/status\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only access enactments labelled nmstate.io/node=a"
    );
    forbidden(
        &node_a.get(&format!("{ENACTMENTS}/b.p")).await.unwrap(),
        "a reads b's enactment",
    );
    forbidden(
        &send(
            &node_a,
            "PATCH",
            &format!("{ENACTMENTS}/a.p"),
            json!({"metadata": {"labels": {"nmstate.io/node": "b"}}}),
        )
        .await,
        "a relabels its enactment",
    );
    // A PUT with b's current resourceVersion is refused as well (the
    // server may take the object from its watch cache instead of the store;
    // the label check must hold on that path too).
    let mut b_current: Value =
        serde_json::from_str(&admin.get(&format!("{ENACTMENTS}/b.p")).await.unwrap().body).unwrap();
    b_current["status"] = json!({"policyGeneration": 7});
    forbidden(
        &send(
            &node_a,
            "PUT",
            &format!("{ENACTMENTS}/b.p/status"),
            b_current,
        )
        .await,
        "a puts the status of b's enactment",
    );
    let b_status: Value =
        serde_json::from_str(&admin.get(&format!("{ENACTMENTS}/b.p")).await.unwrap().body).unwrap();
    assert_eq!(
        b_status.pointer("/status/policyGeneration"),
        None,
        "b's enactment is untouched"
    );

    // Lists and watches of enactments must be pinned to the node.
    let listed = node_a.get(ENACTMENTS).await.unwrap();
    forbidden_details(
        &listed,
        "a lists every enactment",
        json!({"group": "nmstate.io", "kind": "nodenetworkconfigurationenactments"}),
    );
    let message = forbidden(&listed, "a lists every enactment");
    assert!(
        message.ends_with("add labelSelector=nmstate.io/node=a or fieldSelector=node=a"),
        "{message}"
    );
    forbidden(
        &node_a
            .get(&format!("{ENACTMENTS}?labelSelector=nmstate.io/node%3Db"))
            .await
            .unwrap(),
        "a lists b's enactments",
    );
    for query in [
        "labelSelector=nmstate.io/node%3Da",
        "fieldSelector=node%3Da",
    ] {
        let list = node_a.get(&format!("{ENACTMENTS}?{query}")).await.unwrap();
        assert_code(&list, StatusCode::OK, query);
        let list: Value = serde_json::from_str(&list.body).unwrap();
        let names: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a.p"], "{query}");
    }

    // Discovery is open to every authenticated user; metrics are not.
    assert_code(
        &node_a.get("/apis/nmstate.io/v1").await.unwrap(),
        StatusCode::OK,
        "discovery",
    );
    assert_code(
        &node_a.get("/openapi/v2").await.unwrap(),
        StatusCode::OK,
        "openapi",
    );
    forbidden_details(&node_a.get("/metrics").await.unwrap(), "metrics", json!({}));
    assert_code(
        &admin.get("/metrics").await.unwrap(),
        StatusCode::OK,
        "admin reads metrics",
    );

    // Someone who is neither admin nor node may do nothing.
    let jane =
        HttpsClient::from_kubeconfig(&server.issue_kubeconfig("jane", &["dev"]).unwrap()).unwrap();
    forbidden(&jane.get(POLICIES).await.unwrap(), "jane lists policies");
}

#[tokio::test]
async fn kubectl_shows_the_reason_for_a_403() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&[]).await.unwrap();
    let admin = Kubectl::for_server(&server).unwrap();
    admin
        .run_stdin(&["create", "-f", "-"], &state("b").to_string())
        .await
        .ok();
    let node_a = Kubectl::new(
        &server
            .issue_kubeconfig("system:node:a", &["system:nodes"])
            .unwrap(),
    )
    .unwrap();

    let output = node_a.run(&["get", "nns", "b"]).await.failed();
    assert!(
        output.stderr.contains(
            "Error from server (Forbidden): nodenetworkstates.nmstate.io \"b\" is forbidden: User \"system:node:a\" cannot get resource \"nodenetworkstates\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only read its own NodeNetworkState"
        ),
        "{output}"
    );
    let output = node_a
        .run_stdin(&["create", "-f", "-"], &state("c").to_string())
        .await
        .failed();
    assert!(
        output.stderr.contains(
            "nodenetworkstates.nmstate.io \"c\" is forbidden: User \"system:node:a\" cannot create resource \"nodenetworkstates\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only create its own NodeNetworkState \"a\""
        ),
        "{output}"
    );
    node_a
        .run_stdin(&["create", "-f", "-"], &state("a").to_string())
        .await
        .ok();

    let output = node_a.run(&["get", "nnce"]).await.failed();
    assert!(
        output.stderr.contains("cannot list resource \"nodenetworkconfigurationenactments\" in API group \"nmstate.io\" at the cluster scope: node \"a\" may only list enactments labelled nmstate.io/node=a"),
        "{output}"
    );
    node_a
        .run(&["get", "nnce", "-l", "nmstate.io/node=a"])
        .await
        .ok();
    node_a.run(&["get", "nncp"]).await.ok();
}
