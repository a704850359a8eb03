//! The cluster manifests in `deploy/`, checked offline:
//! `tests/python/validate_manifests.py` renders `deploy/` and its overlays
//! with `kubectl kustomize`, validates every object against the Kubernetes
//! JSON schemas (the `kubernetes-validate` package), checks that the agent's
//! ClusterRole grants no more than node restriction leaves it, and checks
//! the replicas, probes, rollout and APIService objects users rely on.
#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Command};

#[test]
fn deploy_manifests_are_valid() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/validate_manifests.py");
    let output = Command::new("python3")
        .arg(&script)
        .output()
        .unwrap_or_else(|error| panic!("cannot run python3 ({error}): run hack/setup-deps.sh"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        script.display(),
        output.status
    );
    assert!(
        stdout.contains("validate_manifests: all checks passed"),
        "{stdout}"
    );
}
