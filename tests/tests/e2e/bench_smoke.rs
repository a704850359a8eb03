//! `nmstate-bench --quick --json` runs every scenario to the end against
//! the debug binaries and reports its figures as one JSON line. Only the
//! shape is checked: figures are wall-clock measurements, never asserted.
//! The `--peer crd` variants start kube-apiserver (built by
//! `hack/build-kube-apiserver.sh`, cached) and fail without it.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use serde_json::Value;

/// Runs one scenario and returns its JSON figures.
fn run(scenario: &str) -> Value {
    run_with(scenario, &[])
}

/// Runs one scenario with `extra` flags and returns its JSON figures.
fn run_with(scenario: &str, extra: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_nmstate-bench"))
        .args([scenario, "--quick", "--json"])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "nmstate-bench {scenario} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: the last line is {last:?}"))
}

/// Checks that `figures` has every key, and that the counts among them
/// are positive numbers.
fn check(figures: &Value, scenario: &str, keys: &[&str], counts: &[&str]) {
    assert_eq!(figures["scenario"], scenario);
    assert_eq!(figures["quick"], true);
    for key in keys.iter().chain(counts).chain(&["ratio", "goal_met"]) {
        assert!(
            figures.get(key).is_some(),
            "{scenario}: no {key} in {figures}"
        );
    }
    for key in counts {
        assert!(
            figures[key].as_f64().is_some_and(|count| count > 0.0),
            "{scenario}: {key} is not a positive number in {figures}"
        );
    }
    assert!(figures["ratio"].is_number(), "{figures}");
    assert!(figures["goal_met"].is_boolean(), "{figures}");
}

#[test]
fn every_scenario_runs_quick_and_reports_json() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    check(
        &run("write"),
        "write",
        &["api_seconds", "etcd_seconds"],
        &[
            "objects",
            "object_bytes",
            "concurrency",
            "api_objects_per_s",
            "etcd_objects_per_s",
        ],
    );
    check(
        &run("list"),
        "list",
        &["api_json_ms", "api_table_ms", "etcd_ms", "table_ratio"],
        &[
            "objects",
            "runs",
            "api_json_bytes",
            "api_table_bytes",
            "etcd_bytes",
        ],
    );
    check(
        &run("watch"),
        "watch",
        &[
            "p50_ms",
            "p99_ms",
            "etcd_p50_ms",
            "etcd_p99_ms",
            "single_watcher_p99_ms",
            "rss_before_mib",
            "rss_after_mib",
            "rss_growth_mib",
        ],
        &["watches", "events", "writers"],
    );
    check(
        &run("rollout"),
        "rollout",
        &["rollout_seconds", "rollout_etcd_floor_seconds"],
        &[
            "rollout_nodes",
            "rollout_controller_writes",
            "rollout_controller_writes_per_node",
            "rollout_agent_writes",
        ],
    );
    check(
        &run("render"),
        "render",
        &["render_us", "typing_us", "upstream_median_ms"],
        &[
            "interfaces",
            "renders",
            "renders_per_s",
            "upstream_nodes",
            "upstream_renders_per_s",
        ],
    );
    let agent = run("agent");
    check(
        &agent,
        "agent",
        &[
            "start_cpu_ms",
            "idle_cpu_ms",
            "apply_cpu_ms",
            "rss_after_apply_mib",
        ],
        &["first_report_ms", "rss_idle_mib", "idle_seconds"],
    );
    // Not a timing: an idle agent must not write.
    assert_eq!(agent["idle_writes"], 0, "{agent}");
}

/// Checks the figures `--peer crd` adds to `scenario`'s: `crd_speedup`,
/// `keys`, and every goal in `crd_goals` with its `goal_met`.
fn check_crd(figures: &Value, scenario: &str, keys: &[&str]) {
    assert_eq!(figures["peer"], "crd", "{figures}");
    for key in keys.iter().chain(&["crd_speedup"]) {
        assert!(
            figures[key].is_number(),
            "{scenario}: {key} is not a number in {figures}"
        );
    }
    let goals = figures["crd_goals"].as_object().unwrap();
    assert!(!goals.is_empty(), "{figures}");
    for (name, goal) in goals {
        assert!(goal["value"].is_number(), "{name}: {goal}");
        assert!(goal["goal_met"].is_boolean(), "{name}: {goal}");
    }
    assert!(figures["crd_goals_met"].is_boolean(), "{figures}");
}

#[test]
fn the_crd_peer_runs_quick_and_reports_json() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    // In parallel: most of the time is kube-apiserver starting.
    let [write, list, watch] = std::thread::scope(|scope| {
        ["write", "list", "watch"]
            .map(|scenario| scope.spawn(move || run_with(scenario, &["--peer", "crd"])))
            .map(|run| run.join().unwrap())
    });
    check_crd(
        &write,
        "write",
        &["crd_objects_per_s", "crd_seconds", "crd_etcd_ratio"],
    );
    check_crd(
        &list,
        "list",
        &[
            "crd_json_ms",
            "crd_table_ms",
            "crd_table_speedup",
            "crd_rss_written_mib",
            "aggregated_json_ms",
            "aggregated_table_ms",
        ],
    );
    check_crd(
        &watch,
        "watch",
        &[
            "crd_p50_ms",
            "crd_p99_ms",
            "crd_rss_growth_mib",
            "aggregated_p50_ms",
            "aggregated_p99_ms",
        ],
    );
    for (figures, goals) in [
        (&write, &["writes_ours_over_crd"][..]),
        (
            &list,
            &[
                "list_json_ours_over_crd",
                "list_table_ours_over_crd",
                "rss_holding_ours_over_kube",
            ],
        ),
        (&watch, &["watch_rss_growth_ours_over_kube", "watch_p99_ms"]),
    ] {
        for goal in goals {
            assert!(
                figures["crd_goals"].get(goal).is_some(),
                "no goal {goal} in {figures}"
            );
        }
    }
}

#[test]
fn scale_runs_quick_and_reports_json() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let mut keys = vec!["converge_seconds".to_owned(), "floor_seconds".to_owned()];
    let mut counts = vec!["nodes".to_owned()];
    for store in ["embedded", "etcd"] {
        for key in [
            "converge_seconds",
            "start_seconds",
            "rollout_server_cpu_s",
            "fanout_p50_ms",
            "fanout_p99_ms",
            "list_table_ms",
            "idle_requests_per_s",
            "idle_server_cpu_percent",
            "idle_fleet_cpu_percent",
        ] {
            keys.push(format!("{store}_{key}"));
        }
        for count in [
            "writes_per_node",
            "server_rss_idle_mib",
            "fanout_writes",
            "list_json_ms",
            "fleet_rss_mib",
        ] {
            counts.push(format!("{store}_{count}"));
        }
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let counts: Vec<&str> = counts.iter().map(String::as_str).collect();
    check(&run("scale"), "scale", &keys, &counts);
}
