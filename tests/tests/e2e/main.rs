//! The end-to-end suites, a module each, in one test binary: the tree is
//! linked once, not once per suite.
//!
//! Every test first waits for its suite's turn
//! (`nmstate_e2e::suite::turn`): the tests of one suite run in parallel, as
//! libtest runs a binary's tests, and suites run one after the other, as
//! cargo ran the per-suite binaries before, so that no two heavy suites
//! share the machine. One suite:
//!
//! ```sh
//! cargo test -p nmstate-e2e --test e2e faults::
//! ```
//!
//! Some suites need root (network namespaces with NetworkManager:
//! `agent_nm`, `aggregated`, `upstream_checklist`, `user_guide`, ...), and
//! the servers they start are the workspace's binaries next to this one
//! (`cargo build -p nmstate-apiserver -p nmstate-agent`, or `cargo test
//! --workspace`).

mod agent_hollow;
mod agent_nm;
mod aggregated;
mod api_rest;
mod apiserver_health;
mod authentication_configmap;
mod bench_smoke;
mod controller;
mod deploy_manifests;
mod faults;
mod front_proxy;
mod hostile;
mod in_cluster;
mod kubectl_nmstate;
mod kubectl_suite;
mod node_restriction;
mod python_client;
mod render_subresources;
mod schemathesis;
mod standalone_access;
mod storage_embedded;
mod storage_etcd;
mod token_review;
mod upstream_checklist;
mod user_guide;
mod watch_cache;

/// Every test of the suites takes its suite's turn before anything else
/// (`run` does for `kubectl_suite`'s scenarios); one that did not would run
/// beside another suite. This test itself starts nothing.
#[test]
fn every_test_takes_its_suites_turn() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(root.join("tests/e2e"))
        .unwrap_or_else(|error| panic!("reading tests/e2e: {error}"))
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|error| panic!("reading tests/e2e: {error}"));
    files.retain(|path| !path.ends_with("main.rs"));
    // Its macro generates the storage suites' tests.
    files.push(root.join("src/storage_conformance.rs"));
    let mut missing = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            let attribute = line.trim_start();
            if !(attribute.starts_with("#[test]") || attribute.starts_with("#[tokio::test")) {
                continue;
            }
            // The first line of the body: after the line that opens it.
            let first = lines[index..]
                .iter()
                .position(|line| line.trim_end().ends_with('{'))
                .and_then(|open| lines.get(index + open + 1))
                .copied()
                .unwrap_or_default();
            if !first.contains("suite::turn(module_path!())")
                && !first.contains("run(module_path!()")
            {
                missing.push(format!("{}:{}", path.display(), index + 1));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "tests that do not open with `let _turn = nmstate_e2e::suite::turn(module_path!());`: {missing:#?}"
    );
}
