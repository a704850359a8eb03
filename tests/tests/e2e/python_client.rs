//! The official Kubernetes Python client (`kubernetes` package) against the
//! real server: `tests/python/client_test.py` creates, reads, lists (label
//! selector, pagination), patches, watches and deletes through
//! `CustomObjectsApi` with the admin kubeconfig.
#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Stdio, time::Duration};

use nmstate_e2e::apiserver::ApiserverProcess;

/// The longest the script may run (against hangs only).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test]
async fn python_kubernetes_client() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    // The script counts the watch events its own writes cause; the
    // controller's status writes would add to them.
    let server = ApiserverProcess::start(&["--controller=false"])
        .await
        .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/client_test.py");
    let child = tokio::process::Command::new("python3")
        .arg(&script)
        .arg("--kubeconfig")
        .arg(server.admin_kubeconfig())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run python3 ({error}): run hack/setup-deps.sh"));
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} did not finish within {SCRIPT_TIMEOUT:?}",
                script.display()
            )
        })
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named 'kubernetes'"),
        "the Python `kubernetes` package is missing: run hack/setup-deps.sh\n{stderr}"
    );
    assert!(
        output.status.success(),
        "{} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        script.display(),
        output.status
    );
    assert!(stdout.contains("client_test: all"), "{stdout}");
}
