//! The REST API over HTTPS against the real server binary: Kubernetes
//! semantics of the verbs, and every class of bad request answered with the
//! documented `metav1.Status`.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use http::StatusCode;
use nmstate_e2e::{
    apiserver::ApiserverProcess,
    curl::Curl,
    https::{HttpsClient, TestResponse},
    policies::bridge_policy as policy,
};
use serde_json::{Value, json};

const POLICIES: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies";
const STATES: &str = "/apis/nmstate.io/v1/nodenetworkstates";

async fn send(
    client: &HttpsClient,
    method: &str,
    path: &str,
    content_type: &str,
    body: Value,
) -> TestResponse {
    client
        .request_with(
            method,
            path,
            &[("content-type", content_type)],
            Some(body.to_string().into_bytes()),
        )
        .await
        .unwrap()
}

fn json_of(response: &TestResponse) -> Value {
    serde_json::from_str(&response.body).unwrap_or_else(|e| panic!("{e}: {}", response.body))
}

#[tokio::test]
async fn verbs_follow_kubernetes_semantics() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&["--controller=false"])
        .await
        .unwrap();
    let client = server.client().unwrap();

    // Create: server fields set, status dropped, 201.
    let mut body = policy("br1");
    body["status"] = json!({"conditions": [{"type": "Available", "status": "True"}]});
    let created = send(&client, "POST", POLICIES, "application/json", body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let created = json_of(&created);
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(
        created["metadata"]["uid"]
            .as_str()
            .is_some_and(|uid| uid.len() == 36)
    );
    assert!(
        created.get("status").is_none(),
        "status is written through /status only"
    );
    let rv: u64 = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // Status write through /status keeps the spec and generation.
    let mut with_status = created.clone();
    with_status["status"] = json!({"conditions": [{"type": "Available", "status": "True", "reason": "SuccessfullyConfigured"}]});
    with_status["spec"]["maxUnavailable"] = 9.into();
    let written = send(
        &client,
        "PUT",
        &format!("{POLICIES}/br1/status"),
        "application/json",
        with_status,
    )
    .await;
    assert_eq!(written.status, StatusCode::OK, "{}", written.body);
    let written = json_of(&written);
    assert_eq!(
        written["status"]["conditions"][0]["reason"],
        "SuccessfullyConfigured"
    );
    assert_eq!(
        written["spec"]["maxUnavailable"], 3,
        "/status must not change the spec"
    );
    assert_eq!(written["metadata"]["generation"], 1);

    // A stale resourceVersion loses.
    let mut stale = created.clone();
    stale["metadata"]["resourceVersion"] = rv.to_string().into();
    stale["spec"]["maxUnavailable"] = 5.into();
    let conflict = send(
        &client,
        "PUT",
        &format!("{POLICIES}/br1"),
        "application/json",
        stale,
    )
    .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(json_of(&conflict)["reason"], "Conflict");

    // A spec change through the main resource bumps generation, keeps status.
    let mut update = written.clone();
    update["spec"]["maxUnavailable"] = "25%".into();
    let updated = send(
        &client,
        "PUT",
        &format!("{POLICIES}/br1"),
        "application/json",
        update,
    )
    .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    let updated = json_of(&updated);
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_eq!(updated["status"], written["status"]);

    // Merge patch of labels: no generation bump.
    let patched = send(
        &client,
        "PATCH",
        &format!("{POLICIES}/br1"),
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"team": null, "tier": "core"}}}),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let patched = json_of(&patched);
    assert_eq!(patched["metadata"]["labels"], json!({"tier": "core"}));
    assert_eq!(patched["metadata"]["generation"], 2);

    // JSON patch with a failing test op.
    let failed = send(
        &client,
        "PATCH",
        &format!("{POLICIES}/br1"),
        "application/json-patch+json",
        json!([{"op": "test", "path": "/spec/maxUnavailable", "value": 1}]),
    )
    .await;
    assert_eq!(
        failed.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        failed.body
    );

    // Dry run writes nothing.
    let dry = send(
        &client,
        "POST",
        &format!("{POLICIES}?dryRun=All"),
        "application/json",
        policy("dry"),
    )
    .await;
    assert_eq!(dry.status, StatusCode::CREATED, "{}", dry.body);
    assert_eq!(
        client.get(&format!("{POLICIES}/dry")).await.unwrap().status,
        StatusCode::NOT_FOUND
    );

    // Finalizers hold a delete until they are removed.
    let mut held = policy("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    assert_eq!(
        send(&client, "POST", POLICIES, "application/json", held)
            .await
            .status,
        StatusCode::CREATED
    );
    let deleting = client
        .request("DELETE", &format!("{POLICIES}/held"), None)
        .await
        .unwrap();
    assert_eq!(deleting.status, StatusCode::OK);
    let deleting = json_of(&deleting);
    assert!(
        deleting["metadata"]["deletionTimestamp"].is_string(),
        "{deleting}"
    );
    let released = send(
        &client,
        "PATCH",
        &format!("{POLICIES}/held"),
        "application/merge-patch+json",
        json!({"metadata": {"finalizers": null}}),
    )
    .await;
    assert_eq!(released.status, StatusCode::OK, "{}", released.body);
    assert_eq!(
        client
            .get(&format!("{POLICIES}/held"))
            .await
            .unwrap()
            .status,
        StatusCode::NOT_FOUND
    );

    // Delete without finalizers: Status Success.
    let deleted = client
        .request("DELETE", &format!("{POLICIES}/br1"), None)
        .await
        .unwrap();
    assert_eq!(deleted.status, StatusCode::OK);
    let deleted = json_of(&deleted);
    assert_eq!(deleted["status"], "Success");
    assert_eq!(deleted["details"]["name"], "br1");
}

#[tokio::test]
async fn lists_paginate_and_select() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&["--controller=false"])
        .await
        .unwrap();
    let client = server.client().unwrap();
    for index in 0..7 {
        let state = json!({
            "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkState",
            "metadata": {"name": format!("node-{index}"), "labels": {"zone": if index % 2 == 0 { "a" } else { "b" }}}
        });
        let created = send(&client, "POST", STATES, "application/json", state).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    let mut names = Vec::new();
    let mut path = format!("{STATES}?limit=3");
    let mut pages = 0;
    loop {
        let page = json_of(&client.get(&path).await.unwrap());
        pages += 1;
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        match page["metadata"]["continue"].as_str() {
            Some(token) => {
                if pages == 1 {
                    assert_eq!(page["metadata"]["remainingItemCount"], 4);
                }
                path = format!("{STATES}?limit=3&continue={token}")
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        names,
        (0..7).map(|i| format!("node-{i}")).collect::<Vec<_>>()
    );

    let zone_a = json_of(
        &client
            .get(&format!("{STATES}?labelSelector=zone%3Da"))
            .await
            .unwrap(),
    );
    assert_eq!(zone_a["items"].as_array().unwrap().len(), 4);
    let by_name = json_of(
        &client
            .get(&format!("{STATES}?fieldSelector=metadata.name%3Dnode-3"))
            .await
            .unwrap(),
    );
    assert_eq!(by_name["items"][0]["metadata"]["name"], "node-3");
    assert_eq!(by_name["items"].as_array().unwrap().len(), 1);
    let not_in = json_of(
        &client
            .get(&format!("{STATES}?labelSelector=zone%20notin%20(a)"))
            .await
            .unwrap(),
    );
    assert_eq!(not_in["items"].as_array().unwrap().len(), 3);
}

/// One bad request and the Status it must get.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, &'static str)>,
    body: Option<Vec<u8>>,
    code: StatusCode,
    reason: &'static str,
    message: &'static str,
}

fn case(
    name: &'static str,
    method: &'static str,
    path: impl Into<String>,
    code: StatusCode,
    reason: &'static str,
    message: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        headers: Vec::new(),
        body: None,
        code,
        reason,
        message,
    }
}

impl Case {
    fn body(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        self.headers.push(("content-type", content_type));
        self.body = Some(body.into());
        self
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }
}

#[tokio::test]
async fn bad_requests_get_the_documented_status() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&["--controller=false"])
        .await
        .unwrap();
    let client = server.client().unwrap();
    let created = send(
        &client,
        "POST",
        POLICIES,
        "application/json",
        policy("existing"),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);

    let mut invalid_name = policy("Bad_Name");
    invalid_name["metadata"]["name"] = "Bad_Name".into();
    let mut bad_mtu = policy("mtu");
    bad_mtu["spec"]["desiredState"]["interfaces"][0]["mtu"] = "big".into();
    let mut unknown_field = policy("unknown");
    unknown_field["spec"]["nodeSelecter"] = json!({"a": "b"});
    let mut wrong_version = policy("v");
    wrong_version["apiVersion"] = "nmstate.io/v1beta1".into();
    let mut no_rv = policy("existing");
    no_rv["spec"]["maxUnavailable"] = 1.into();
    let huge = vec![b' '; 3 * 1024 * 1024 + 10];

    let cases = vec![
        case("unknown resource", "GET", "/apis/nmstate.io/v1/pods", StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource"),
        case("missing object", "GET", format!("{POLICIES}/missing"), StatusCode::NOT_FOUND, "NotFound", "nodenetworkconfigurationpolicies.nmstate.io \"missing\" not found"),
        case("wrong method", "PUT", POLICIES, StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "the server does not allow this method on the requested resource"),
        case("unsupported media type", "POST", POLICIES, StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", "")
            .body("text/plain", "hello"),
        case("strategic merge patch", "PATCH", format!("{POLICIES}/existing"), StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
            .body("application/strategic-merge-patch+json", "{}"),
        case("malformed JSON", "POST", POLICIES, StatusCode::BAD_REQUEST, "BadRequest", "error decoding JSON: expected value at line 1 column 14")
            .body("application/json", "{\"metadata\": }"),
        case("malformed YAML", "POST", POLICIES, StatusCode::BAD_REQUEST, "BadRequest", "")
            .body("application/yaml", "metadata: [\n  name: x"),
        case("body too large", "POST", POLICIES, StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
            .body("application/json", huge),
        case("invalid name", "POST", POLICIES, StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "")
            .body("application/json", invalid_name.to_string()),
        case("invalid desired state", "POST", POLICIES, StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "")
            .body("application/json", bad_mtu.to_string()),
        case("unknown field, strict", "POST", format!("{POLICIES}?fieldValidation=Strict"), StatusCode::BAD_REQUEST, "BadRequest", "NodeNetworkConfigurationPolicy in version \"v1\" cannot be handled as a NodeNetworkConfigurationPolicy: strict decoding error: unknown field \"spec.nodeSelecter\"")
            .body("application/json", unknown_field.to_string()),
        case("duplicate field, strict", "POST", format!("{POLICIES}?fieldValidation=Strict"), StatusCode::BAD_REQUEST, "BadRequest", "NodeNetworkConfigurationPolicy in version \"v1\" cannot be handled as a NodeNetworkConfigurationPolicy: strict decoding error: duplicate field \"metadata.labels.a\", duplicate field \"spec\", unknown field \"spec.nodeSelecter\"")
            .body("application/json", r#"{"apiVersion":"nmstate.io/v1","kind":"NodeNetworkConfigurationPolicy","metadata":{"name":"dup","labels":{"a":"1","a":"2"}},"spec":{},"spec":{"desiredState":{},"nodeSelecter":{"a":"b"}}}"#),
        case("duplicate field in a merge patch, strict", "PATCH", format!("{POLICIES}/existing?fieldValidation=Strict"), StatusCode::BAD_REQUEST, "BadRequest", "NodeNetworkConfigurationPolicy in version \"v1\" cannot be handled as a NodeNetworkConfigurationPolicy: strict decoding error: duplicate field \"metadata.labels.a\"")
            .body("application/merge-patch+json", r#"{"metadata":{"labels":{"a":"1","a":"2"}}}"#),
        case("version mismatch", "POST", POLICIES, StatusCode::BAD_REQUEST, "BadRequest", "the API version in the data (nmstate.io/v1beta1) does not match the expected API version (nmstate.io/v1)")
            .body("application/json", wrong_version.to_string()),
        case("already exists", "POST", POLICIES, StatusCode::CONFLICT, "AlreadyExists", "nodenetworkconfigurationpolicies.nmstate.io \"existing\" already exists")
            .body("application/json", policy("existing").to_string()),
        case("update without resourceVersion", "PUT", format!("{POLICIES}/existing"), StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "NodeNetworkConfigurationPolicy.nmstate.io \"existing\" is invalid: metadata.resourceVersion: Invalid value: \"\": must be specified for an update")
            .body("application/json", no_rv.to_string()),
        case("bad label selector", "GET", format!("{POLICIES}?labelSelector=a%20in%20b"), StatusCode::BAD_REQUEST, "BadRequest", ""),
        case("bad field selector", "GET", format!("{POLICIES}?fieldSelector=spec.foo%3Dx"), StatusCode::BAD_REQUEST, "BadRequest", "field label not supported: spec.foo"),
        case("bad continue token", "GET", format!("{POLICIES}?limit=1&continue=bm9wZQ"), StatusCode::BAD_REQUEST, "BadRequest", ""),
        case("bad limit", "GET", format!("{POLICIES}?limit=many"), StatusCode::BAD_REQUEST, "BadRequest", "limit: Invalid value: \"many\": must be an integer"),
        case("future resource version", "GET", format!("{POLICIES}?resourceVersion=999999"), StatusCode::GATEWAY_TIMEOUT, "Timeout", ""),
        case("protobuf only", "GET", POLICIES, StatusCode::NOT_ACCEPTABLE, "NotAcceptable", "")
            .header("accept", "application/vnd.kubernetes.protobuf"),
    ];
    for case in cases {
        let response = client
            .request_with(case.method, &case.path, &case.headers, case.body.clone())
            .await
            .unwrap();
        assert_eq!(
            response.status, case.code,
            "case {:?}: {}",
            case.name, response.body
        );
        let status = json_of(&response);
        assert_eq!(status["kind"], "Status", "case {:?}", case.name);
        assert_eq!(
            status["reason"], case.reason,
            "case {:?}: {status}",
            case.name
        );
        assert_eq!(status["code"], case.code.as_u16(), "case {:?}", case.name);
        if !case.message.is_empty() {
            assert_eq!(status["message"], case.message, "case {:?}", case.name);
        }
        if case.reason == "Invalid" {
            let causes = status["details"]["causes"].as_array().unwrap();
            assert!(
                !causes.is_empty(),
                "case {:?}: Invalid needs causes",
                case.name
            );
            assert!(
                causes.iter().all(|c| c["field"].is_string()),
                "case {:?}",
                case.name
            );
        }
    }
}

fn events(response: &TestResponse) -> Vec<(String, Value)> {
    response
        .body
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            (
                event["type"].as_str().unwrap_or_default().to_string(),
                event["object"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn watches_deliver_changes_after_a_revision_with_selector_semantics() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&["--controller=false"])
        .await
        .unwrap();
    let client = server.client().unwrap();
    let created = send(&client, "POST", POLICIES, "application/json", policy("w1")).await;
    assert_eq!(created.status, StatusCode::CREATED);

    // Without a resource version: the current objects as ADDED.
    let initial = client
        .get(&format!("{POLICIES}?watch=1&timeoutSeconds=1"))
        .await
        .unwrap();
    let initial = events(&initial);
    assert_eq!(initial.len(), 1);
    assert_eq!(initial[0].0, "ADDED");
    assert_eq!(initial[0].1["metadata"]["name"], "w1");

    let list = json_of(&client.get(POLICIES).await.unwrap());
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let relabel = |team: &str| json!({"metadata": {"labels": {"team": team}}});
    assert_eq!(
        send(
            &client,
            "PATCH",
            &format!("{POLICIES}/w1"),
            "application/merge-patch+json",
            relabel("ops")
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        send(
            &client,
            "PATCH",
            &format!("{POLICIES}/w1"),
            "application/merge-patch+json",
            relabel("net")
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&client, "POST", POLICIES, "application/json", policy("w2"))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        client
            .request("DELETE", &format!("{POLICIES}/w1"), None)
            .await
            .unwrap()
            .status,
        StatusCode::OK
    );

    // Everything after rv, in order.
    let all = events(
        &client
            .get(&format!(
                "{POLICIES}?watch=1&resourceVersion={rv}&timeoutSeconds=1"
            ))
            .await
            .unwrap(),
    );
    let kinds: Vec<(&str, &str)> = all
        .iter()
        .map(|(t, o)| (t.as_str(), o["metadata"]["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("MODIFIED", "w1"),
            ("MODIFIED", "w1"),
            ("ADDED", "w2"),
            ("DELETED", "w1")
        ]
    );
    let revisions: Vec<u64> = all
        .iter()
        .map(|(_, o)| {
            o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");

    // Under a selector, leaving it is DELETED and entering it ADDED.
    let selected = events(
        &client
            .get(&format!(
                "{POLICIES}?watch=1&resourceVersion={rv}&timeoutSeconds=1&labelSelector=team%3Dnet"
            ))
            .await
            .unwrap(),
    );
    let kinds: Vec<(&str, &str)> = selected
        .iter()
        .map(|(t, o)| (t.as_str(), o["metadata"]["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("DELETED", "w1"),
            ("ADDED", "w1"),
            ("ADDED", "w2"),
            ("DELETED", "w1")
        ]
    );

    // In v1beta1, objects carry that apiVersion.
    let beta = events(
        &client
            .get(&format!("/apis/nmstate.io/v1beta1/nodenetworkconfigurationpolicies?watch=1&resourceVersion={rv}&timeoutSeconds=1"))
            .await
            .unwrap(),
    );
    assert!(
        beta.iter()
            .all(|(_, o)| o["apiVersion"] == "nmstate.io/v1beta1")
    );

    // sendInitialEvents ends the initial state with a marked bookmark.
    let initial = events(
        &client
            .get(&format!("{POLICIES}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"))
            .await
            .unwrap(),
    );
    assert_eq!(initial[0].0, "ADDED");
    let marked = initial.iter().find(|(t, _)| t == "BOOKMARK").unwrap();
    assert_eq!(
        marked.1["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    // Its time up, a watch that allows bookmarks ends with one more, not
    // marked, at the newest revision it knows of: where the client watches
    // again from without listing (kube-apiserver's watch cache does the
    // same).
    let marked_rv = marked.1["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    let store_rv = json_of(&client.get(POLICIES).await.unwrap())["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    let closing = |events: &[(String, Value)]| {
        let (type_, object) = events.last().unwrap().clone();
        assert_eq!(type_, "BOOKMARK", "{events:?}");
        assert!(object["metadata"]["annotations"].is_null(), "{object}");
        object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert!(closing(&initial) >= marked_rv);
    // Also a watch from a revision, with nothing new to send.
    let quiet = events(
        &client
            .get(&format!(
                "{POLICIES}?watch=1&resourceVersion={store_rv}&allowWatchBookmarks=true&timeoutSeconds=1"
            ))
            .await
            .unwrap(),
    );
    assert_eq!(quiet.len(), 1, "{quiet:?}");
    assert!(closing(&quiet) >= store_rv);
    // Without allowWatchBookmarks, none.
    let plain = client
        .get(&format!(
            "{POLICIES}?watch=1&resourceVersion={store_rv}&timeoutSeconds=1"
        ))
        .await
        .unwrap();
    assert_eq!(plain.body, "");
}

/// Patches that race each other all land, as `kubectl label` and
/// `kubectl patch` expect: the server applies a patch again on the object
/// that won. A patch naming a `resourceVersion` is a precondition instead.
#[tokio::test]
async fn racing_patches_all_land_unless_they_name_a_resource_version() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&["--controller=false"])
        .await
        .unwrap();
    let client = server.client().unwrap();
    let created = send(
        &client,
        "POST",
        POLICIES,
        "application/json",
        policy("raced"),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let first_rv = json_of(&created)["metadata"]["resourceVersion"].clone();

    const WRITERS: usize = 16;
    let path = format!("{POLICIES}/raced");
    let answers = futures::future::join_all((0..WRITERS).map(|i| {
        let (client, path) = (client.clone(), path.clone());
        async move {
            send(
                &client,
                "PATCH",
                &path,
                "application/merge-patch+json",
                json!({"metadata": {"labels": {format!("writer-{i}"): "yes"}}}),
            )
            .await
        }
    }))
    .await;
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    }
    let labels = json_of(&client.get(&path).await.unwrap())["metadata"]["labels"].clone();
    for i in 0..WRITERS {
        assert_eq!(labels[format!("writer-{i}")], "yes", "{labels}");
    }

    let stale = send(
        &client,
        "PATCH",
        &path,
        "application/merge-patch+json",
        json!({"metadata": {"resourceVersion": first_rv, "labels": {"late": "yes"}}}),
    )
    .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
    assert_eq!(json_of(&stale)["reason"], "Conflict");
    let labels = json_of(&client.get(&path).await.unwrap())["metadata"]["labels"].clone();
    assert!(labels.get("late").is_none(), "{labels}");
}

/// A node state's `status.currentState` is nmstate's document as the agent
/// wrote it: every way of reading it (get, list, watch, YAML, a Table with
/// whole objects) gives it back unchanged, and writes that do not touch it
/// (a label change by PUT of the object, a merge patch of another status
/// field) keep it.
#[tokio::test]
async fn a_node_states_current_state_reads_back_as_written_everywhere() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&["--controller=false"])
        .await
        .unwrap();
    let client = server.client().unwrap();
    let current = json!({
        "interfaces": [
            {"name": "eth0", "type": "ethernet", "state": "up", "mtu": 1500,
             "description": "é \"quoted\" \\ line\nbreak ☃",
             "zeta-last-alphabetically-first-here": true,
             "ipv4": {"enabled": true, "address": [{"ip": "192.0.2.1", "prefix-length": 24}]},
             "ethtool": {"feature": {}, "ring": {"rx": 18446744073709551615u64, "tx": -1, "ratio": 0.5}}},
            {"name": "lo", "type": "loopback", "state": "up", "accept-all-mac-addresses": null},
        ],
        "routes": {"running": [], "config": []},
        "dns-resolver": {"running": {"server": ["192.0.2.53"]}, "config": {}},
    });
    let node = json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkState",
        "metadata": {"name": "node01", "labels": {"kubernetes.io/hostname": "node01"}},
    });
    let created = send(&client, "POST", STATES, "application/json", node).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let mut object = json_of(&created);
    object["status"] = json!({"currentState": current, "handlerNmstateVersion": "2.2.62"});
    let path = format!("{STATES}/node01");
    let written = send(
        &client,
        "PUT",
        &format!("{path}/status"),
        "application/json",
        object,
    )
    .await;
    assert_eq!(written.status, StatusCode::OK, "{}", written.body);
    assert_eq!(json_of(&written)["status"]["currentState"], current);

    let read_all = |what: &'static str| {
        let (client, path) = (client.clone(), path.clone());
        async move {
            let get = json_of(&client.get(&path).await.unwrap());
            let list = client.get(STATES).await.unwrap();
            // The stored order of keys: nmstate's, not alphabetical.
            let body = &list.body;
            assert!(
                body.find("zeta-last").unwrap() < body.find("\"ipv4\"").unwrap(),
                "{what}: key order"
            );
            let list = json_of(&list);
            let yaml = client
                .request_with("GET", STATES, &[("accept", "application/yaml")], None)
                .await
                .unwrap();
            let yaml: Value = serde_yaml::from_str(&yaml.body).unwrap();
            let watch = events(
                &client
                    .get(&format!("{STATES}?watch=1&timeoutSeconds=1"))
                    .await
                    .unwrap(),
            );
            let table = json_of(
                &client
                    .request_with(
                        "GET",
                        &format!("{STATES}?includeObject=Object"),
                        &[("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")],
                        None,
                    )
                    .await
                    .unwrap(),
            );
            assert_eq!(table["rows"][0]["cells"][1], 2, "{what}: interfaces");
            let metadata = json_of(
                &client
                    .request_with(
                        "GET",
                        STATES,
                        &[(
                            "accept",
                            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
                        )],
                        None,
                    )
                    .await
                    .unwrap(),
            );
            // The managed fields (kept as text in the cache) read back in
            // every list as in the object read from the store.
            let managed = &get["metadata"]["managedFields"];
            assert!(
                managed.as_array().is_some_and(|m| !m.is_empty()),
                "{what}: {get}"
            );
            for (how, listed) in [
                ("list", &list["items"][0]),
                ("YAML list", &yaml["items"][0]),
                ("watch", &watch[0].1),
                ("Table", &table["rows"][0]["object"]),
                ("metadata list", &metadata["items"][0]),
            ] {
                assert_eq!(
                    &listed["metadata"]["managedFields"], managed,
                    "{what}: {how}"
                );
            }
            [
                ("get", get),
                ("list", list["items"][0].clone()),
                ("YAML list", yaml["items"][0].clone()),
                ("watch", watch[0].1.clone()),
                ("Table", table["rows"][0]["object"].clone()),
            ]
        }
    };
    for (how, object) in read_all("after the write").await {
        assert_eq!(object["status"]["currentState"], current, "{how}");
    }

    // A label change by PUT of the object keeps the status it does not send.
    let mut relabelled = json_of(&client.get(&path).await.unwrap());
    relabelled.as_object_mut().unwrap().remove("status");
    relabelled["metadata"]["labels"]["role"] = "worker".into();
    let put = send(&client, "PUT", &path, "application/json", relabelled).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    // A merge patch of another status field keeps it too.
    let patched = send(
        &client,
        "PATCH",
        &format!("{path}/status"),
        "application/merge-patch+json",
        json!({"status": {"handlerNmstateVersion": "2.2.63"}}),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    for (how, object) in read_all("after the label and the patch").await {
        assert_eq!(object["status"]["currentState"], current, "{how}");
        assert_eq!(object["metadata"]["labels"]["role"], "worker", "{how}");
        assert_eq!(object["status"]["handlerNmstateVersion"], "2.2.63", "{how}");
    }
}

/// nmstate's document as Go's `encoding/json` writes it: `<`, `>` and `&`
/// escaped, an exponent, a trailing zero, escapes serde_json writes
/// otherwise.
const GO_STYLE_STATE: &str = r#"{"interfaces":[{"name":"br\u003c0\u003e","type":"linux-bridge","mtu":1e2,"ratio":1.50,"description":"\u00e9 \/ \u0026 tab\t","ipv4":{"enabled":true,"address":[]}}],"dns-resolver":{"config":{},"running":{"server":["192.0.2.53"]}}}"#;

/// The stored bytes of a node state, straight from etcd.
async fn stored_bytes(store: &nmstate_apiserver::storage::etcd::EtcdStore, name: &str) -> String {
    use nmstate_apiserver::storage::{Store, object_key};
    let kv = store
        .get(&object_key("nodenetworkstates", name))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(kv.value).unwrap()
}

/// A node state's current state is stored as it came when a write leaves
/// it alone (an agent's heartbeat, a merge patch of its conditions): byte
/// for byte, Go's escapes and exponents included, as kube-apiserver keeps
/// an object it does not change. A write that sends one (`PUT .../status`)
/// stores what serialising its parsed value gives, as before the server
/// stopped building that value: escapes undone, numbers as parsed, the
/// last of duplicate keys in the first one's place.
#[tokio::test]
async fn a_node_states_current_state_is_stored_as_its_value_and_kept_byte_for_byte() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    use nmstate_apiserver::storage::{Store, etcd::EtcdStore, object_key};
    let etcd = nmstate_e2e::etcd::EtcdProcess::start().await;
    let server =
        ApiserverProcess::start(&["--controller=false", "--etcd-servers", &etcd.endpoint()])
            .await
            .unwrap();
    let client = server.client().unwrap();
    let store = EtcdStore::connect(&etcd.config()).await.unwrap();

    // Written as another server would have written it.
    let stored = format!(
        r#"{{"apiVersion":"nmstate.io/v1","kind":"NodeNetworkState","metadata":{{"name":"node01","uid":"8d2a4c52-0c39-4f61-9c7e-2b1c0d3e4f50","creationTimestamp":"2026-01-01T00:00:00Z","generation":1,"managedFields":[{{"manager":"handler","operation":"Update","apiVersion":"nmstate.io/v1","time":"2026-01-01T00:00:00Z","fieldsType":"FieldsV1","fieldsV1":{{"f:status":{{".":{{}},"f:conditions":{{}},"f:currentState":{{}}}}}},"subresource":"status"}}]}},"status":{{"currentState":{GO_STYLE_STATE},"conditions":[{{"type":"Available","status":"True"}}]}}}}"#
    );
    store
        .create(
            &object_key("nodenetworkstates", "node01"),
            stored.into_bytes(),
        )
        .await
        .unwrap();
    let path = format!("{STATES}/node01");
    let heartbeat = send(
        &client,
        "PATCH",
        &format!("{path}/status"),
        "application/merge-patch+json",
        json!({"status": {"conditions": [{"type": "Available", "status": "False"}]}}),
    )
    .await;
    assert_eq!(heartbeat.status, StatusCode::OK, "{}", heartbeat.body);
    let after = stored_bytes(&store, "node01").await;
    assert!(
        after.contains(&format!(r#""currentState":{GO_STYLE_STATE}"#)),
        "{after}"
    );
    let parsed: Value = serde_json::from_str(&after).unwrap();
    assert_eq!(parsed["status"]["conditions"][0]["status"], "False");
    // Served parsed, as every read serves it.
    let state: Value = serde_json::from_str(GO_STYLE_STATE).unwrap();
    assert_eq!(
        json_of(&heartbeat)["status"]["currentState"],
        state,
        "{}",
        heartbeat.body
    );

    // The agent's full report, sent with duplicate keys and Go's escapes.
    let report = format!(
        r#"{{"apiVersion":"nmstate.io/v1","kind":"NodeNetworkState","metadata":{{"name":"node01","resourceVersion":"{rv}"}},"status":{{"currentState":{{"hostname":{{"running":"a","running":"b\u003c"}},"interfaces":[{{"mtu":1e2,"mtu":1500,"name":"eth0"}}],"hostname":{{"config":"c","running":"d"}},"routes":{{"running":[0.5,1.0,2.50,-3]}}}},"conditions":[]}}}}"#,
        rv = json_of(&heartbeat)["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
    );
    // What serialising the server's `Value` of the state sent gives: keys
    // in document order (the server's maps keep it), the last of
    // duplicates (the second `hostname`, with its own order) in the first
    // one's place, escapes undone, numbers as parsed. Spelled out: this
    // process's serde_json may sort keys.
    let round_trip = r#"{"hostname":{"config":"c","running":"d"},"interfaces":[{"mtu":1500,"name":"eth0"}],"routes":{"running":[0.5,1.0,2.5,-3]}}"#;
    let state_sent =
        &report[report.find(r#"{"hostname""#).unwrap()..report.find(r#","conditions""#).unwrap()];
    assert_eq!(
        serde_json::from_str::<Value>(state_sent).unwrap(),
        serde_json::from_str::<Value>(round_trip).unwrap(),
    );
    let put = client
        .request_with(
            "PUT",
            &format!("{path}/status"),
            &[("content-type", "application/json")],
            Some(report.into_bytes()),
        )
        .await
        .unwrap();
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let after = stored_bytes(&store, "node01").await;
    assert!(
        after.contains(&format!(r#""currentState":{round_trip}"#)),
        "{after}"
    );
    // The report's fields are the status writer's now.
    let managed = json_of(&put)["metadata"]["managedFields"].clone();
    let status_entry = managed
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["subresource"] == "status" && entry["manager"] != "handler")
        .unwrap_or_else(|| panic!("{managed}"));
    assert_eq!(
        status_entry["fieldsV1"]["f:status"]["f:currentState"],
        json!({
            "f:hostname": {".": {}, "f:config": {}, "f:running": {}},
            "f:interfaces": {},
            "f:routes": {".": {}, "f:running": {}},
        }),
        "{managed}"
    );
}

/// Answers given before the request body is read (413, 400, 401, 403) and
/// after it (422) reach curl with their `Status`, over HTTP/2 (curl's
/// default) and HTTP/1.1, again and again on fresh connections; nothing is
/// stored.
#[tokio::test]
async fn early_answers_reach_curl_over_http2_and_http1() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&["--controller=false"])
        .await
        .unwrap();
    let admin = server.admin_kubeconfig();
    let node = server
        .issue_kubeconfig("system:node:n1", &["system:nodes"])
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let write = |name: &str, body: String| {
        let path = scratch.path().join(name);
        std::fs::write(&path, body).unwrap();
        path
    };
    // A policy padded with an annotation to `size` bytes.
    let padded = |size: usize| {
        let mut body = policy("padded");
        body["metadata"]["annotations"] = json!({"pad": "a".repeat(size)});
        body.to_string()
    };
    let too_large = write("too-large.json", padded(5 << 20));
    let one_mib = write("one-mib.json", padded(1 << 20));
    let mut invalid = policy("invalid");
    invalid["spec"]["maxUnavailable"] = json!("many");
    let invalid = write("invalid.json", invalid.to_string());

    type Case<'a> = (&'a str, &'a Path, &'a str, &'a Path, bool, u16, &'a str);
    // (what, identity, query, body, anonymous, code, reason)
    let cases: [Case<'_>; 5] = [
        (
            "over 3 MiB",
            &admin,
            "",
            &too_large,
            false,
            413,
            "RequestEntityTooLarge",
        ),
        (
            "bad query parameter",
            &admin,
            "?pretty=",
            &one_mib,
            false,
            400,
            "BadRequest",
        ),
        (
            "no credentials",
            &admin,
            "",
            &one_mib,
            true,
            401,
            "Unauthorized",
        ),
        (
            "a node may not create policies",
            &node,
            "",
            &one_mib,
            false,
            403,
            "Forbidden",
        ),
        ("invalid spec", &admin, "", &invalid, false, 422, "Invalid"),
    ];
    for (what, identity, query, body, anonymous, code, reason) in cases {
        for http1 in [false, true] {
            let mut curl = Curl::for_kubeconfig(identity);
            if anonymous {
                curl = curl.anonymous();
            }
            if http1 {
                curl = curl.http1();
            }
            for attempt in 0..3 {
                let (answered, status) = curl
                    .call_file("POST", &format!("{POLICIES}{query}"), Some(body))
                    .await;
                let context = format!("{what}, http1={http1}, attempt {attempt}: {status}");
                assert_eq!(answered, code, "{context}");
                assert_eq!(status["kind"], "Status", "{context}");
                assert_eq!(status["reason"], reason, "{context}");
                assert_eq!(status["code"], code, "{context}");
            }
        }
    }
    let client = server.client().unwrap();
    let list = json_of(&client.get(POLICIES).await.unwrap());
    assert_eq!(list["items"], json!([]), "nothing stored");
    let health = client.get("/readyz").await.unwrap();
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
}
