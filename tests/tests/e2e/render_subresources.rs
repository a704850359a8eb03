//! The policy subresources `render` and `dry-run` against a real standalone
//! server, reached as users reach them: with curl (presenting the admin
//! kubeconfig's client certificate) and with the real kubectl (`get --raw`,
//! `create --raw -f`).
//!
//! Four node states carry realistic current states: node-a and node-b are
//! workers whose default route leaves through eth0 and eth1 respectively,
//! node-c is a worker without a default route (the policy's capture fails
//! there), node-d is no worker. The policy is upstream's bridge on the
//! default-gateway interface: captures find the default route, its
//! interface and its routes; the bridge takes that interface as its port
//! and its IPv4 addresses, and the routes move to the bridge.
#![allow(clippy::unwrap_used)]

use nmstate_e2e::{
    apiserver::ApiserverProcess,
    curl::Curl,
    https::{HttpsClient, TestResponse},
    kubectl::Kubectl,
    policies,
};
use serde_json::{Value, json};

const V1: &str = "/apis/nmstate.io/v1";
const STATES: &str = "/apis/nmstate.io/v1/nodenetworkstates";
const POLICIES: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies";
const POLICY: &str = "br1-default-gw";
const WORKER: &str = "node-role.kubernetes.io/worker";

/// A node's current state as the agent reports it: a loopback, two NICs
/// with static addresses, one more down, and the default route through
/// `gw_iface` (none when `None`).
fn current_state(eth0_ip: &str, eth1_ip: &str, gw_iface: Option<&str>) -> Value {
    let ethernet = |name: &str, mac: &str, ip: &str| {
        json!({
            "name": name, "type": "ethernet", "state": "up", "mtu": 1500,
            "mac-address": mac,
            "ipv4": {"enabled": true, "dhcp": false, "address": [{"ip": ip, "prefix-length": 24}]},
            "ipv6": {"enabled": false},
        })
    };
    let gateway = |iface: &str| {
        if iface == "eth0" {
            "192.0.2.1"
        } else {
            "198.51.100.1"
        }
    };
    let mut running = vec![
        json!({"destination": "192.0.2.0/24", "next-hop-interface": "eth0", "metric": 100, "table-id": 254}),
        json!({"destination": "198.51.100.0/24", "next-hop-interface": "eth1", "metric": 101, "table-id": 254}),
    ];
    if let Some(iface) = gw_iface {
        running.push(json!({
            "destination": "0.0.0.0/0", "next-hop-address": gateway(iface),
            "next-hop-interface": iface, "metric": 100, "table-id": 254,
        }));
        running.push(json!({
            "destination": "203.0.113.0/24", "next-hop-address": gateway(iface),
            "next-hop-interface": iface, "metric": 100, "table-id": 254,
        }));
    }
    json!({
        "dns-resolver": {"config": {}, "running": {"server": ["192.0.2.53"]}},
        "interfaces": [
            {"name": "lo", "type": "loopback", "state": "up", "mtu": 65536,
             "ipv4": {"enabled": true, "address": [{"ip": "127.0.0.1", "prefix-length": 8}]}},
            ethernet("eth0", "02:00:00:00:00:01", eth0_ip),
            ethernet("eth1", "02:00:00:00:00:02", eth1_ip),
            {"name": "eth2", "type": "ethernet", "state": "down", "mac-address": "02:00:00:00:00:03"},
        ],
        "routes": {"config": [], "running": running},
    })
}

/// Upstream's bridge-on-the-default-gateway policy (nmpolicy's example),
/// for workers, two nodes at a time.
fn policy(name: &str) -> Value {
    let mut spec = policies::bridge_on_default_gateway();
    spec["nodeSelector"] = json!({WORKER: ""});
    spec["maxUnavailable"] = json!(2);
    json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": name},
        "spec": spec,
    })
}

async fn send(client: &HttpsClient, method: &str, path: &str, body: &Value) -> TestResponse {
    client.send_json(method, path, body).await.unwrap()
}

/// Creates node state `name` with `labels` and reports `state` in its
/// status, as an agent does.
async fn create_node(client: &HttpsClient, name: &str, labels: Value, state: Value) {
    let object = json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkState",
        "metadata": {"name": name, "labels": labels},
    });
    let created = send(client, "POST", STATES, &object).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let status = json!({"status": {"currentState": state}});
    let patched = send(client, "PATCH", &format!("{STATES}/{name}/status"), &status).await;
    assert_eq!(patched.status, 200, "{}", patched.body);
}

/// Asserts a failure `Status` with `code` and `reason`; returns its
/// message.
#[track_caller]
fn failure(answer: &(u16, Value), code: u16, reason: &str) -> String {
    let (status, body) = answer;
    assert_eq!(*status, code, "{body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    assert_eq!(body["code"], code, "{body}");
    body["message"].as_str().unwrap().to_owned()
}

/// The bridge of a rendered desired state.
fn bridge(desired: &Value) -> &Value {
    let bridge = &desired["interfaces"][0];
    assert_eq!(bridge["name"], "br1", "{desired}");
    bridge
}

/// The message nmstate gives when the default-gw capture finds no route,
/// with its caret under the failing filter.
const NO_DEFAULT_ROUTE: &str = "failed to run captures: PolicyError: route with 'destination=0.0.0.0/0' not found\n| routes.running.destination==\"0.0.0.0/0\"\n| .......^";

struct Cluster {
    server: ApiserverProcess,
    curl: Curl,
    kubectl: Kubectl,
}

async fn cluster() -> Cluster {
    let server = ApiserverProcess::start(&[]).await.unwrap();
    let admin = server.admin_client().unwrap();
    let worker = json!({WORKER: ""});
    let nodes = [
        (
            "node-a",
            worker.clone(),
            current_state("192.0.2.11", "198.51.100.11", Some("eth0")),
        ),
        (
            "node-b",
            worker.clone(),
            current_state("192.0.2.12", "198.51.100.12", Some("eth1")),
        ),
        (
            "node-c",
            worker,
            current_state("192.0.2.13", "198.51.100.13", None),
        ),
        (
            "node-d",
            json!({"kubernetes.io/hostname": "node-d"}),
            current_state("192.0.2.14", "198.51.100.14", Some("eth0")),
        ),
    ];
    for (name, labels, state) in nodes {
        create_node(&admin, name, labels, state).await;
    }
    let created = send(&admin, "POST", POLICIES, &policy(POLICY)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let curl = Curl::for_kubeconfig(&server.admin_kubeconfig());
    let kubectl = Kubectl::for_server(&server).unwrap();
    Cluster {
        server,
        curl,
        kubectl,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_takes_each_nodes_own_default_gateway() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let Cluster {
        server: _server,
        curl,
        kubectl,
    } = cluster().await;

    // curl: node-a's default route leaves through eth0.
    let (code, answer) = curl
        .call(
            "GET",
            &format!("{POLICIES}/{POLICY}/render?node=node-a"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["apiVersion"], "nmstate.io/v1");
    assert_eq!(answer["kind"], "NodeNetworkConfigurationPolicyRender");
    assert_eq!(answer["metadata"]["name"], POLICY);
    assert_eq!(answer["node"], "node-a");
    assert_eq!(answer["policyGeneration"], 1);
    let desired = &answer["desiredState"];
    let br1 = bridge(desired);
    assert_eq!(br1["bridge"]["port"][0]["name"], "eth0", "{desired}");
    assert_eq!(br1["ipv4"]["address"][0]["ip"], "192.0.2.11", "{desired}");
    assert_eq!(br1["ipv4"]["address"][0]["prefix-length"], 24, "{desired}");
    // The server's default adds upstream's VLAN trunk to the port.
    assert_eq!(
        br1["bridge"]["port"][0]["vlan"]["mode"], "trunk",
        "{desired}"
    );
    let routes = desired["routes"]["config"].as_array().unwrap();
    assert_eq!(routes.len(), 3, "{desired}");
    assert!(
        routes.iter().all(|r| r["next-hop-interface"] == "br1"),
        "{desired}"
    );
    assert!(
        routes
            .iter()
            .any(|r| r["destination"] == "0.0.0.0/0" && r["next-hop-address"] == "192.0.2.1"),
        "{desired}"
    );
    let captured = &answer["capturedStates"]["default-gw"];
    assert_eq!(
        captured["state"]["routes"]["running"][0]["next-hop-interface"],
        "eth0"
    );
    assert_eq!(captured["metaInfo"]["version"], "0");
    assert!(captured["metaInfo"]["time"].is_string(), "{captured}");

    // kubectl, in v1beta1: node-b's default route leaves through eth1.
    let out = kubectl
        .run(&[
            "get",
            "--raw",
            &format!(
                "/apis/nmstate.io/v1beta1/nodenetworkconfigurationpolicies/{POLICY}/render?node=node-b"
            ),
        ])
        .await
        .ok();
    let answer = out.json();
    assert_eq!(answer["apiVersion"], "nmstate.io/v1beta1");
    assert_eq!(answer["node"], "node-b");
    let br1 = bridge(&answer["desiredState"]);
    assert_eq!(br1["bridge"]["port"][0]["name"], "eth1");
    assert_eq!(br1["ipv4"]["address"][0]["ip"], "198.51.100.12");

    // POST a state instead: the answer of `nmpolicyctl gen`, by kubectl
    // with a typed body and by curl with a bare one.
    let given = current_state("192.0.2.99", "198.51.100.99", Some("eth1"));
    let body = json!({
        "apiVersion": "nmstate.io/v1",
        "kind": "NodeNetworkConfigurationPolicyRender",
        "currentState": given,
    });
    let file = curl.file("render.json");
    std::fs::write(&file, body.to_string()).unwrap();
    let out = kubectl
        .run(&[
            "create",
            "--raw",
            &format!("{POLICIES}/{POLICY}/render"),
            "-f",
            file.to_str().unwrap(),
        ])
        .await
        .ok();
    let answer = out.json();
    assert_eq!(answer["kind"], "NodeNetworkConfigurationPolicyRender");
    assert!(answer.get("node").is_none(), "{answer}");
    let br1 = bridge(&answer["desiredState"]);
    assert_eq!(br1["bridge"]["port"][0]["name"], "eth1");
    assert_eq!(br1["ipv4"]["address"][0]["ip"], "198.51.100.99");

    let (code, answer) = curl
        .call(
            "POST",
            &format!("{POLICIES}/{POLICY}/render"),
            Some(&json!({"currentState": given}).to_string()),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        bridge(&answer["desiredState"])["bridge"]["port"][0]["name"],
        "eth1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_errors_name_what_is_wrong() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let Cluster {
        server,
        curl,
        kubectl,
    } = cluster().await;
    let render = format!("{POLICIES}/{POLICY}/render");

    let message = failure(&curl.call("GET", &render, None).await, 400, "BadRequest");
    assert!(message.starts_with("node: Required value"), "{message}");

    let message = failure(
        &curl
            .call("GET", &format!("{render}?node=ghost"), None)
            .await,
        404,
        "NotFound",
    );
    assert_eq!(message, "nodenetworkstates.nmstate.io \"ghost\" not found");
    let out = kubectl
        .run(&["get", "--raw", &format!("{render}?node=ghost")])
        .await
        .failed();
    assert!(
        out.stderr
            .contains("nodenetworkstates.nmstate.io \"ghost\" not found"),
        "{out}"
    );

    let message = failure(
        &curl
            .call(
                "GET",
                &format!("{POLICIES}/no-such-policy/render?node=node-a"),
                None,
            )
            .await,
        404,
        "NotFound",
    );
    assert_eq!(
        message,
        "nodenetworkconfigurationpolicies.nmstate.io \"no-such-policy\" not found"
    );

    // The capture fails on node-c, which has no default route: 422 with
    // nmstate's message and caret, at the capture.
    let answer = curl
        .call("GET", &format!("{render}?node=node-c"), None)
        .await;
    let message = failure(&answer, 422, "Invalid");
    assert_eq!(
        message,
        format!(
            "NodeNetworkConfigurationPolicy.nmstate.io \"{POLICY}\" is invalid: spec.capture[default-gw]: Invalid value: {NO_DEFAULT_ROUTE}"
        )
    );
    assert_eq!(
        answer.1["details"]["causes"][0]["field"],
        "spec.capture[default-gw]"
    );
    let out = kubectl
        .run(&["get", "--raw", &format!("{render}?node=node-c")])
        .await
        .failed();
    assert!(out.stderr.contains(NO_DEFAULT_ROUTE), "{out}");

    // Bad bodies name the field.
    let message = failure(
        &curl.call("POST", &render, Some("{")).await,
        400,
        "BadRequest",
    );
    assert!(message.starts_with("error decoding JSON"), "{message}");
    let message = failure(
        &curl.call("POST", &render, Some("{}")).await,
        422,
        "Invalid",
    );
    assert!(
        message.contains("currentState: Required value"),
        "{message}"
    );
    let message = failure(
        &curl
            .call(
                "POST",
                &render,
                Some(r#"{"currentState": {"interfaces": [{"name": "eth0", "type": "ethernet", "mtu": "big"}]}}"#),
            )
            .await,
        422,
        "Invalid",
    );
    assert!(
        message.contains("currentState.interfaces[0].mtu"),
        "{message}"
    );
    let message = failure(
        &curl
            .call(
                "POST",
                &render,
                Some(r#"{"kind": "NodeNetworkState", "currentState": {}}"#),
            )
            .await,
        400,
        "BadRequest",
    );
    assert!(
        message.contains("(NodeNetworkConfigurationPolicyRender)"),
        "{message}"
    );

    // Node identities may read policies but not render them; other users
    // get nothing from the standalone policy.
    for (user, groups) in [
        ("system:node:node-a", &["system:nodes"][..]),
        ("jane", &[][..]),
    ] {
        let other = Curl::for_kubeconfig(&server.issue_kubeconfig(user, groups).unwrap());
        let message = failure(
            &other
                .call("GET", &format!("{render}?node=node-a"), None)
                .await,
            403,
            "Forbidden",
        );
        assert!(
            message.contains(&format!(
                "User \"{user}\" cannot get resource \"nodenetworkconfigurationpolicies/render\""
            )),
            "{message}"
        );
        let message = failure(
            &other
                .call("POST", &format!("{POLICIES}/{POLICY}/dry-run"), None)
                .await,
            403,
            "Forbidden",
        );
        assert!(
            message.contains(&format!(
                "User \"{user}\" cannot create resource \"nodenetworkconfigurationpolicies/dry-run\""
            )),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_shows_every_node_and_the_batches() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let Cluster {
        server,
        curl,
        kubectl,
    } = cluster().await;
    let admin = server.admin_client().unwrap();
    let dry_run = format!("{POLICIES}/{POLICY}/dry-run");

    // The stored policy: three workers, two at a time.
    let (code, answer) = curl.call("POST", &dry_run, None).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["apiVersion"], "nmstate.io/v1");
    assert_eq!(answer["kind"], "NodeNetworkConfigurationPolicyDryRun");
    assert_eq!(answer["policyGeneration"], 1);
    assert_eq!(
        answer["matchingNodes"],
        json!(["node-a", "node-b", "node-c"])
    );
    assert_eq!(answer["maxUnavailable"], 2);
    assert_eq!(answer["batches"], json!([["node-a", "node-b"], ["node-c"]]));
    let nodes = answer["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert_eq!(names, ["node-a", "node-b", "node-c"]);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    assert!(a.get("error").is_none(), "{a}");
    assert_eq!(
        bridge(&a["desiredState"])["bridge"]["port"][0]["name"],
        "eth0"
    );
    assert_eq!(
        bridge(&b["desiredState"])["bridge"]["port"][0]["name"],
        "eth1"
    );
    assert_eq!(
        a["capturedStates"]["base-iface"]["state"]["interfaces"][0]["name"],
        "eth0"
    );
    // The difference: the new bridge and the moved routes.
    let difference = &a["difference"];
    let changed: Vec<&str> = difference["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert!(changed.contains(&"br1"), "{difference}");
    assert!(!changed.contains(&"eth2"), "{difference}");
    assert!(
        difference["routes"]["config"]
            .as_array()
            .is_some_and(|routes| !routes.is_empty()),
        "{difference}"
    );
    // node-c cannot be rendered: nmstate's message with its caret.
    assert_eq!(c["error"], NO_DEFAULT_ROUTE, "{c}");
    assert!(c.get("desiredState").is_none(), "{c}");

    // A proposed policy, by kubectl in v1beta1: every node, all at once.
    let mut proposed = policy("proposed");
    proposed["apiVersion"] = json!("nmstate.io/v1beta1");
    proposed["spec"]["nodeSelector"] = json!({});
    proposed["spec"]["maxUnavailable"] = json!("100%");
    let file = curl.file("proposed.json");
    std::fs::write(&file, proposed.to_string()).unwrap();
    let out = kubectl
        .run(&[
            "create",
            "--raw",
            "/apis/nmstate.io/v1beta1/nodenetworkconfigurationpolicies/proposed/dry-run",
            "-f",
            file.to_str().unwrap(),
        ])
        .await
        .ok();
    let answer = out.json();
    assert_eq!(answer["apiVersion"], "nmstate.io/v1beta1");
    assert!(answer.get("policyGeneration").is_none(), "{answer}");
    assert_eq!(
        answer["matchingNodes"],
        json!(["node-a", "node-b", "node-c", "node-d"])
    );
    assert_eq!(answer["maxUnavailable"], 4);
    assert_eq!(
        answer["batches"],
        json!([["node-a", "node-b", "node-c", "node-d"]])
    );
    assert_eq!(
        bridge(&answer["nodes"][3]["desiredState"])["ipv4"]["address"][0]["ip"],
        "192.0.2.14"
    );
    // Nothing was written: the proposed policy does not exist, and the
    // policy controller made no enactment for it.
    let out = kubectl.run(&["get", "nncp", "proposed"]).await.failed();
    assert!(out.stderr.contains("not found"), "{out}");
    let out = kubectl
        .run(&[
            "get",
            "nnce",
            "-l",
            "nmstate.io/policy=proposed",
            "-o",
            "name",
        ])
        .await
        .ok();
    assert_eq!(out.stdout.trim(), "", "{out}");

    // A proposed policy is validated as a create is: a broken capture is
    // a 422 with nmstate's caret, at the capture.
    let mut broken = policy(POLICY);
    broken["spec"]["capture"]["default-gw"] = json!("routes.running.destination==\"0.0.0.0/0");
    let message = failure(
        &curl.call("POST", &dry_run, Some(&broken.to_string())).await,
        422,
        "Invalid",
    );
    assert!(
        message.starts_with(&format!(
            "NodeNetworkConfigurationPolicy.nmstate.io \"{POLICY}\" is invalid: spec.capture[default-gw]: Invalid value: \"routes.running.destination==\\\"0.0.0.0/0\": "
        )),
        "{message}"
    );
    assert!(
        message.contains("\n| routes.running.destination==\"0.0.0.0/0\n| ")
            && message.ends_with('^'),
        "{message}"
    );
    let message = failure(
        &curl
            .call("POST", &dry_run, Some(&policy("other-name").to_string()))
            .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        message,
        format!(
            "the name of the object (other-name) does not match the name on the URL ({POLICY})"
        )
    );
    let message = failure(
        &curl
            .call("POST", &format!("{POLICIES}/no-such-policy/dry-run"), None)
            .await,
        404,
        "NotFound",
    );
    assert_eq!(
        message,
        "nodenetworkconfigurationpolicies.nmstate.io \"no-such-policy\" not found"
    );

    // The stored policy is as it was.
    let stored: Value = serde_json::from_str(
        &admin
            .get(&format!("{POLICIES}/{POLICY}"))
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(stored["metadata"]["generation"], 1);
    assert_eq!(stored["spec"], policy(POLICY)["spec"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_openapi_list_the_subresources() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&[]).await.unwrap();
    let kubectl = Kubectl::for_server(&server).unwrap();
    let list = kubectl.run(&["get", "--raw", V1]).await.ok().json();
    let resources = list["resources"].as_array().unwrap();
    let find = |name: &str| {
        resources
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {list}"))
    };
    let render = find("nodenetworkconfigurationpolicies/render");
    assert_eq!(render["kind"], "NodeNetworkConfigurationPolicyRender");
    assert_eq!(render["verbs"], json!(["create", "get"]));
    let dry_run = find("nodenetworkconfigurationpolicies/dry-run");
    assert_eq!(dry_run["kind"], "NodeNetworkConfigurationPolicyDryRun");
    assert_eq!(dry_run["verbs"], json!(["create"]));

    let document = kubectl
        .run(&["get", "--raw", "/openapi/v3/apis/nmstate.io/v1beta1"])
        .await
        .ok()
        .json();
    let schemas = &document["components"]["schemas"];
    for kind in [
        "NodeNetworkConfigurationPolicyRender",
        "NodeNetworkConfigurationPolicyDryRun",
    ] {
        let schema = &schemas[format!("io.nmstate.v1beta1.{kind}")];
        assert_eq!(
            schema["x-kubernetes-group-version-kind"],
            json!([{"group": "nmstate.io", "version": "v1beta1", "kind": kind}]),
            "{kind}"
        );
    }
    assert!(
        schemas["io.nmstate.v1beta1.NodeNetworkConfigurationPolicyDryRun"]["properties"]["batches"]
            .is_object()
    );
}
