//! `kubectl nmstate` (the `kubectl-nmstate` binary) against a real
//! standalone server: node states, policies and enactments are written
//! through the API as agents write them (a simulated agent finishes each
//! released enactment), the plugin runs with the admin kubeconfig, and its
//! output is compared with golden files in `tests/testdata/kubectl-nmstate/`
//! (rewritten with `UPDATE_EXPECT=1`).
//!
//! Nodes: node-a and node-b are workers in rack r1 whose default route
//! leaves through eth0 and eth1; node-c is a worker without a default
//! route (the bridge-on-default-gateway policy cannot be rendered there);
//! node-x is no worker and carries a bond, a VLAN on it and a bridge on the
//! VLAN, for `show`.
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use nmstate_e2e::{
    apiserver::{ApiserverProcess, workspace_binary},
    https::HttpsClient,
    policies,
};
use nmstate_openapi::{
    ConditionType, NodeNetworkConfigurationEnactment,
    condition::{
        ENACTMENT_RELEASED_MESSAGE, ENACTMENT_SUCCESS_MESSAGE, find_condition,
        set_enactment_success,
    },
};
use serde_json::{Value, json};

const STATES: &str = "/apis/nmstate.io/v1/nodenetworkstates";
const POLICIES: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationpolicies";
const ENACTMENTS: &str = "/apis/nmstate.io/v1/nodenetworkconfigurationenactments";
const WORKER: &str = "node-role.kubernetes.io/worker";

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

fn ethernet(name: &str, ip: Option<&str>) -> Value {
    let mut iface = json!({"name": name, "type": "ethernet", "state": "up", "mtu": 1500});
    if let Some(ip) = ip {
        iface["ipv4"] = json!({"enabled": true, "dhcp": false,
                               "address": [{"ip": ip, "prefix-length": 24}]});
    }
    iface
}

/// A worker's state: eth0 and eth1 with addresses, eth2 without, and the
/// default route through `gateway` (none when `None`).
fn worker_state(eth0: &str, eth1: &str, gateway: Option<&str>) -> Value {
    let mut running = vec![
        json!({"destination": "192.0.2.0/24", "next-hop-interface": "eth0", "metric": 100, "table-id": 254}),
    ];
    if let Some(iface) = gateway {
        running.push(
            json!({"destination": "0.0.0.0/0", "next-hop-address": "192.0.2.1",
                            "next-hop-interface": iface, "metric": 100, "table-id": 254}),
        );
    }
    json!({
        "interfaces": [
            {"name": "lo", "type": "loopback", "state": "up", "mtu": 65536},
            ethernet("eth0", Some(eth0)),
            ethernet("eth1", Some(eth1)),
            ethernet("eth2", None),
        ],
        "routes": {"config": [], "running": running},
    })
}

/// node-x: eth1 and eth2 in bond0, VLAN 10 on bond0, bridge br10 on the
/// VLAN with an IPv4 and an IPv6 address.
fn stacked_state() -> Value {
    json!({
        "interfaces": [
            {"name": "lo", "type": "loopback", "state": "up", "mtu": 65536},
            ethernet("eth0", Some("192.0.2.30")),
            {"name": "eth1", "type": "ethernet", "state": "up", "mtu": 9000, "controller": "bond0"},
            {"name": "eth2", "type": "ethernet", "state": "up", "mtu": 9000, "controller": "bond0"},
            {"name": "bond0", "type": "bond", "state": "up", "mtu": 9000,
             "link-aggregation": {"mode": "active-backup", "port": ["eth1", "eth2"]}},
            {"name": "bond0.10", "type": "vlan", "state": "up", "mtu": 9000, "controller": "br10",
             "vlan": {"base-iface": "bond0", "id": 10}},
            {"name": "br10", "type": "linux-bridge", "state": "up", "mtu": 9000,
             "ipv4": {"enabled": true, "address": [{"ip": "198.51.100.30", "prefix-length": 24}]},
             "ipv6": {"enabled": true, "address": [{"ip": "2001:db8::30", "prefix-length": 64}]},
             "bridge": {"options": {"stp": {"enabled": false}}, "port": [{"name": "bond0.10"}]}},
        ],
        "routes": {"config": [], "running": []},
    })
}

async fn send(client: &HttpsClient, method: &str, path: &str, body: &Value) -> Value {
    let response = client.send_json(method, path, body).await.unwrap();
    assert!(
        (200..300).contains(&response.status.as_u16()),
        "{method} {path}: {} {}",
        response.status,
        response.body
    );
    serde_json::from_str(&response.body).unwrap()
}

/// Creates a ready node state with `labels`, reporting `state`.
async fn create_node(client: &HttpsClient, name: &str, labels: Value, state: Value) {
    let object = json!({"apiVersion": "nmstate.io/v1", "kind": "NodeNetworkState",
                        "metadata": {"name": name, "labels": labels}});
    send(client, "POST", STATES, &object).await;
    let status = json!({"status": {
        "currentState": state,
        "lastSuccessfulUpdateTime": now(),
        "conditions": [{"type": "Ready", "status": "True", "reason": "AgentReporting",
                        "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
    }});
    send(client, "PATCH", &format!("{STATES}/{name}/status"), &status).await;
}

/// The MTU policy of rack r1: applies on node-a and node-b.
fn mtu_policy() -> Value {
    json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "eth2-mtu"},
        "spec": {
            "nodeSelector": {"rack": "r1"},
            "maxUnavailable": 1,
            "desiredState": {"interfaces": [{"name": "eth2", "type": "ethernet", "state": "up", "mtu": 9000}]},
        },
    })
}

/// Changes and removals on rack r1, for the two sides of dry-run's diff:
/// eth1's IPv4 (and so its address) off, eth2's MTU up.
fn eth_changes_policy() -> Value {
    json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "eth-changes"},
        "spec": {
            "nodeSelector": {"rack": "r1"},
            "maxUnavailable": 1,
            "desiredState": {"interfaces": [
                {"name": "eth1", "type": "ethernet", "state": "up", "ipv4": {"enabled": false}},
                {"name": "eth2", "type": "ethernet", "state": "up", "mtu": 9000},
            ]},
        },
    })
}

/// Upstream's bridge on the default-gateway interface, for workers.
fn bridge_policy() -> Value {
    let mut spec = policies::bridge_on_default_gateway();
    spec["nodeSelector"] = json!({WORKER: ""});
    spec["maxUnavailable"] = json!(3);
    json!({
        "apiVersion": "nmstate.io/v1", "kind": "NodeNetworkConfigurationPolicy",
        "metadata": {"name": "br1-default-gw"},
        "spec": spec,
    })
}

/// Plays every node's agent: each enactment the controller releases is
/// applied successfully a moment later.
fn spawn_agent(admin: HttpsClient) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            // The server is gone once the test is over.
            let Ok(list) = admin.get(ENACTMENTS).await else {
                return;
            };
            let Ok(list) = serde_json::from_str::<Value>(&list.body) else {
                return;
            };
            for item in list["items"].as_array().into_iter().flatten() {
                let mut enactment: NodeNetworkConfigurationEnactment =
                    serde_json::from_value(item.clone()).unwrap();
                let status = enactment.status.get_or_insert_default();
                let released = find_condition(&status.conditions, &ConditionType::Progressing)
                    .is_some_and(|c| c.is_true() && c.message == ENACTMENT_RELEASED_MESSAGE);
                if !released {
                    continue;
                }
                let time = nmstate_openapi::Time(k8s_openapi::jiff::Timestamp::now());
                set_enactment_success(&mut status.conditions, ENACTMENT_SUCCESS_MESSAGE, &time);
                let name = enactment.metadata.name.clone().unwrap();
                let body = serde_json::to_vec(&enactment).unwrap();
                // A conflict is retried on the next round.
                let _ = admin
                    .request_with(
                        "PUT",
                        &format!("{ENACTMENTS}/{name}/status"),
                        &[("content-type", "application/json")],
                        Some(body),
                    )
                    .await;
            }
        }
    });
}

struct Plugin {
    binary: PathBuf,
    kubeconfig: PathBuf,
}

impl Plugin {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and asserts success; returns standard output.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "kubectl-nmstate {args:?}: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

/// Compares `actual` with `tests/testdata/kubectl-nmstate/<case>.txt`, or
/// writes it there under `UPDATE_EXPECT=1`.
#[track_caller]
fn check(case: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/kubectl-nmstate")
        .join(format!("{case}.txt"));
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error} (UPDATE_EXPECT=1 writes it)", path.display()));
    assert_eq!(
        actual,
        expected,
        "{case}: output differs from {}",
        path.display()
    );
}

async fn wait_for_policy(admin: &HttpsClient, name: &str, type_: &str) {
    for _ in 0..300 {
        let policy: Value =
            serde_json::from_str(&admin.get(&format!("{POLICIES}/{name}")).await.unwrap().body)
                .unwrap();
        let conditions = policy["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if conditions
            .iter()
            .any(|c| c["type"] == type_ && c["status"] == "True")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("policy {name} never became {type_}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_nmstate() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&[]).await.unwrap();
    let admin = server.admin_client().unwrap();
    let worker = |rack: &str| json!({WORKER: "", "rack": rack});
    create_node(
        &admin,
        "node-a",
        worker("r1"),
        worker_state("192.0.2.11", "198.51.100.11", Some("eth0")),
    )
    .await;
    create_node(
        &admin,
        "node-b",
        worker("r1"),
        worker_state("192.0.2.12", "198.51.100.12", Some("eth1")),
    )
    .await;
    create_node(
        &admin,
        "node-c",
        worker("r2"),
        worker_state("192.0.2.13", "198.51.100.13", None),
    )
    .await;
    create_node(&admin, "node-x", json!({}), stacked_state()).await;
    let plugin = Plugin {
        binary: workspace_binary("kubectl-nmstate").unwrap(),
        kubeconfig: server.admin_kubeconfig(),
    };
    let temp = tempfile::tempdir().unwrap();

    // dry-run of a policy that does not exist yet: the diff per node, the
    // node it cannot be rendered for, and the waves.
    let file = temp.path().join("bridge.yaml");
    std::fs::write(&file, serde_json::to_string(&bridge_policy()).unwrap()).unwrap();
    let file = file.to_str().unwrap();
    check("dry-run", &plugin.ok(&["dry-run", "-f", file]));
    let coloured = plugin.ok(&["dry-run", "-f", file, "--color=always"]);
    assert!(coloured.contains("\x1b[32m+ interfaces:"), "{coloured}");
    assert!(
        coloured.contains("\x1b[31m! failed to run captures"),
        "{coloured}"
    );
    let json: Value =
        serde_json::from_str(&plugin.ok(&["dry-run", "-f", file, "-o", "json"])).unwrap();
    assert_eq!(json["kind"], "NodeNetworkConfigurationPolicyDryRun");
    assert_eq!(json["batches"], json!([["node-a", "node-b", "node-c"]]));
    // What a policy changes and removes: the nodes' current values too.
    let changes = temp.path().join("eth-changes.yaml");
    std::fs::write(
        &changes,
        serde_json::to_string(&eth_changes_policy()).unwrap(),
    )
    .unwrap();
    let changes = changes.to_str().unwrap();
    check("dry-run-changes", &plugin.ok(&["dry-run", "-f", changes]));
    let coloured = plugin.ok(&["dry-run", "-f", changes, "--color=always"]);
    assert!(
        coloured.contains("\x1b[31m-   mtu: 1500\x1b[0m\n\x1b[32m+   mtu: 9000"),
        "{coloured}"
    );

    // The policies, created: their rollouts cannot finish before the
    // agents answer, so a short timeout expires.
    send(&admin, "POST", POLICIES, &bridge_policy()).await;
    send(&admin, "POST", POLICIES, &mtu_policy()).await;
    let output = plugin.run(&["rollout", "status", "nncp/eth2-mtu", "--timeout", "2s"]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.ends_with("error: timed out waiting for the rollout of policy \"eth2-mtu\"\n"),
        "{stdout}"
    );

    // render, as a user reads it and as the API gives it.
    check(
        "render",
        &plugin.ok(&["render", "br1-default-gw", "--node", "node-b"]),
    );
    let yaml = plugin.ok(&[
        "render",
        "nncp/br1-default-gw",
        "--node",
        "node-a",
        "-o",
        "yaml",
    ]);
    assert!(
        yaml.starts_with("apiVersion: nmstate.io/v1\nkind: NodeNetworkConfigurationPolicyRender\n"),
        "{yaml}"
    );
    let output = plugin.run(&["render", "br1-default-gw", "--node", "node-c"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("route with 'destination=0.0.0.0/0' not found"),
        "{stderr}"
    );

    // rollout status follows the MTU policy live while the agents apply it.
    let follow = plugin
        .command(&["rollout", "status", "eth2-mtu", "--timeout", "60s"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    spawn_agent(admin.clone());
    let output = tokio::task::spawn_blocking(move || follow.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 2, "{stdout}");
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|line| line.starts_with("nncp/eth2-mtu [")),
        "{stdout}"
    );
    assert_eq!(
        lines[lines.len() - 2..],
        [
            "nncp/eth2-mtu [####################] 2/2 available, 0 progressing, 0 pending, 0 failing, 0 aborted",
            "policy \"eth2-mtu\" successfully rolled out: 2/2 nodes successfully configured",
        ],
        "{stdout}"
    );

    // The bridge policy ends Degraded: node-c's failure with its reason.
    wait_for_policy(&admin, "br1-default-gw", "Degraded").await;
    let output = plugin.run(&["rollout", "status", "nncp/br1-default-gw"]);
    assert_eq!(output.status.code(), Some(1));
    check(
        "rollout-degraded",
        &String::from_utf8(output.stdout).unwrap(),
    );
    let output = plugin.run(&["rollout", "status", "nncp/eth2-mtu"]);
    assert_eq!(output.status.code(), Some(0));
    check(
        "rollout-available",
        &String::from_utf8(output.stdout).unwrap(),
    );

    // why: the failing enactment, and one that is fine.
    check(
        "why-failing",
        &plugin.ok(&["why", "nnce/node-c.br1-default-gw"]),
    );
    check(
        "why-available",
        &plugin.ok(&["why", "node-a.br1-default-gw"]),
    );

    // show: the table, dot and SVG.
    check("show-node-x", &plugin.ok(&["show", "node-x"]));
    check("show-node-a", &plugin.ok(&["show", "node-a"]));
    let dot = plugin.ok(&["show", "node-x", "--graph", "dot"]);
    check("show-node-x-dot", &dot);
    let svg = plugin.ok(&["show", "node-x", "--graph", "svg"]);
    check_svg(&svg);
    let output = plugin.run(&["show", "node-x", "--graph", "png"]);
    assert!(output.status.success(), "{output:?}");
    check_png(&output.stdout, &svg);

    // kubectl's conventions: KUBECONFIG, --context, errors.
    let output = Command::new(&plugin.binary)
        .args(["show", "node-x"])
        .env("KUBECONFIG", &plugin.kubeconfig)
        .output()
        .unwrap();
    assert!(output.status.success());
    let output = plugin.run(&["--context", "no-such-context", "show", "node-x"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("no-such-context"), "{stderr}");
    let output = plugin.run(&["show", "ghost"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("nodenetworkstates.nmstate.io \"ghost\" not found"),
        "{stderr}"
    );
}

/// The SVG of node-x parses as XML and holds exactly its interfaces (no
/// loopback) and addresses as nodes, and the port, VLAN and address
/// edges.
fn check_svg(svg: &str) {
    let document = roxmltree::Document::parse(svg).unwrap();
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let groups = |class: &str| -> Vec<roxmltree::Node<'_, '_>> {
        root.descendants()
            .filter(|node| node.tag_name().name() == "g" && node.attribute("class") == Some(class))
            .collect()
    };
    let mut nodes: Vec<&str> = groups("node")
        .iter()
        .map(|node| node.attribute("id").unwrap())
        .collect();
    nodes.sort_unstable();
    assert_eq!(
        nodes,
        [
            "addr:192.0.2.30/24",
            "addr:198.51.100.30/24",
            "addr:2001:db8::30/64",
            "iface:bond0",
            "iface:bond0.10",
            "iface:br10",
            "iface:eth0",
            "iface:eth1",
            "iface:eth2",
        ]
    );
    let mut edges: Vec<(String, String)> = groups("edge")
        .iter()
        .map(|edge| {
            (
                edge.attribute("data-from").unwrap().to_owned(),
                edge.attribute("data-to").unwrap().to_owned(),
            )
        })
        .collect();
    edges.sort_unstable();
    let expected: Vec<(String, String)> = [
        ("iface:bond0", "iface:bond0.10"),
        ("iface:bond0.10", "iface:br10"),
        ("iface:br10", "addr:198.51.100.30/24"),
        ("iface:br10", "addr:2001:db8::30/64"),
        ("iface:eth0", "addr:192.0.2.30/24"),
        ("iface:eth1", "iface:bond0"),
        ("iface:eth2", "iface:bond0"),
    ]
    .iter()
    .map(|(from, to)| ((*from).to_owned(), (*to).to_owned()))
    .collect();
    assert_eq!(edges, expected);
    // Every edge is drawn as a line, every node as a shape with its label.
    for edge in groups("edge") {
        assert!(
            edge.children()
                .any(|child| child.tag_name().name() == "line")
        );
    }
    let texts: Vec<&str> = root
        .descendants()
        .filter(|node| node.tag_name().name() == "text")
        .filter_map(|node| node.text())
        .collect();
    for label in [
        "br10",
        "linux-bridge up",
        "bond0.10",
        "vlan up",
        "2001:db8::30/64",
    ] {
        assert!(texts.contains(&label), "{label} missing: {texts:?}");
    }
}

/// The PNG of node-x decodes, has the SVG's size, a white background, and
/// where the SVG places each node its shape's fill and dark pixels of its
/// label (so a font was found and used), and the edges' lines.
fn check_png(png: &[u8], svg: &str) {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    assert_eq!(
        (info.color_type, info.bit_depth),
        (png::ColorType::Rgba, png::BitDepth::Eight)
    );
    let document = roxmltree::Document::parse(svg).unwrap();
    let root = document.root_element();
    let number = |node: roxmltree::Node<'_, '_>, name: &str| -> u32 {
        node.attribute(name).unwrap().parse().unwrap()
    };
    assert_eq!(
        (info.width, info.height),
        (number(root, "width"), number(root, "height"))
    );
    assert!(info.width >= 300 && info.height >= 200, "{info:?}");
    let pixel = |x: u32, y: u32| -> [u8; 3] {
        let at = (y as usize * info.width as usize + x as usize) * 4;
        [buffer[at], buffer[at + 1], buffer[at + 2]]
    };
    let white = |[r, g, b]: [u8; 3]| r > 250 && g > 250 && b > 250;
    let dark = |[r, g, b]: [u8; 3]| r < 100 && g < 100 && b < 100;
    // Nothing is drawn in the top right corner.
    for (x, y) in [(info.width - 3, 2), (info.width - 12, 10)] {
        assert!(white(pixel(x, y)), "({x}, {y}) is {:?}", pixel(x, y));
    }
    let mut checked = 0;
    for group in root
        .descendants()
        .filter(|node| node.attribute("class") == Some("node"))
    {
        let id = group.attribute("id").unwrap();
        let shape = group.first_element_child().unwrap();
        // The shape's box: left, top, right, bottom.
        let (left, top, right, bottom) = match shape.tag_name().name() {
            "rect" => {
                let (x, y) = (number(shape, "x"), number(shape, "y"));
                (
                    x,
                    y,
                    x + number(shape, "width"),
                    y + number(shape, "height"),
                )
            }
            "ellipse" => {
                let (cx, cy) = (number(shape, "cx"), number(shape, "cy"));
                let (rx, ry) = (number(shape, "rx"), number(shape, "ry"));
                (cx - rx, cy - ry, cx + rx, cy + ry)
            }
            other => panic!("{id}: unexpected shape {other}"),
        };
        // The fill, left of the centred label.
        let fill = pixel(left + 8, (top + bottom) / 2);
        assert!(!white(fill) && !dark(fill), "{id}: fill is {fill:?}");
        let text = (left..right)
            .flat_map(|x| (top..bottom).map(move |y| (x, y)))
            .filter(|&(x, y)| dark(pixel(x, y)))
            .count();
        assert!(text > 30, "{id}: {text} dark pixels: no label drawn");
        checked += 1;
    }
    assert_eq!(checked, 9);
    for line in root
        .descendants()
        .filter(|node| node.tag_name().name() == "line")
    {
        let x = (number(line, "x1") + number(line, "x2")) / 2;
        let y = (number(line, "y1") + number(line, "y2")) / 2;
        let drawn = (x - 1..=x + 1)
            .flat_map(|x| (y - 1..=y + 1).map(move |y| (x, y)))
            .any(|(x, y)| !white(pixel(x, y)));
        assert!(drawn, "no edge line drawn at ({x}, {y})");
    }
}
