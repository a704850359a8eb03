//! schemathesis (from PyPI, pinned in hack/setup-deps.sh) generates
//! requests from the server's own OpenAPI v3 document and sends them with
//! the admin's client certificate from the standalone CA.
//!
//! The checks that fit a Kubernetes API are on: no server error (5xx),
//! the `Content-Type` documented, and bodies that match the documented
//! schema. Off, and why:
//! - `status_code_conformance`: Kubernetes documents only the success codes
//!   (200, 201, 202, 401); 400, 404, 409, 413, 415 and 422 `Status` answers
//!   are part of its API all the same.
//! - `negative_data_rejection`: Kubernetes accepts what the schema does not
//!   describe (unknown query parameters are ignored, unknown fields are
//!   dropped unless `fieldValidation=Strict`).
//! - `positive_data_acceptance`: data valid for the schema is often not a
//!   valid object (names must be DNS subdomains, a policy's desired state
//!   must be nmstate's), and is rightly refused with 422.
//! - the stateful checks (`use_after_free`, `ensure_resource_availability`):
//!   generated names rarely exist, so nearly every read is a 404.
#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Stdio, time::Duration};

use nmstate_apiserver::kubeconfig::Kubeconfig;
use nmstate_e2e::apiserver::ApiserverProcess;

/// The longest the run may take (against hangs only).
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// Examples generated per operation and phase: bounded so that the run
/// takes about a minute on two cores.
const MAX_EXAMPLES: &str = "10";
const CHECKS: &str = "not_a_server_error,content_type_conformance,response_schema_conformance";

#[tokio::test]
async fn schemathesis_finds_no_server_error() {
    let _turn = nmstate_e2e::suite::turn(module_path!());
    let server = ApiserverProcess::start(&["--controller=false"])
        .await
        .unwrap();
    let client = server.client().unwrap();
    let spec = client.get("/openapi/v3/apis/nmstate.io/v1").await.unwrap();
    assert_eq!(spec.status, http::StatusCode::OK);

    let dir = tempfile::tempdir().unwrap();
    let credentials = Kubeconfig::read(&server.admin_kubeconfig())
        .unwrap()
        .credentials()
        .unwrap();
    for (name, pem) in [
        ("ca.crt", credentials.ca_pem),
        ("client.crt", credentials.client_cert_pem),
        ("client.key", credentials.client_key_pem),
    ] {
        std::fs::write(dir.path().join(name), pem.unwrap()).unwrap();
    }
    std::fs::write(dir.path().join("openapi.json"), &spec.body).unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/schemathesis.toml");

    let child = tokio::process::Command::new("schemathesis")
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(dir.path().join("openapi.json"))
        .args([
            "--url",
            &credentials.server.replace("127.0.0.1", "localhost"),
        ])
        .arg("--tls-verify")
        .arg(dir.path().join("ca.crt"))
        .arg("--request-cert")
        .arg(dir.path().join("client.crt"))
        .arg("--request-cert-key")
        .arg(dir.path().join("client.key"))
        .args(["--checks", CHECKS, "--max-examples", MAX_EXAMPLES])
        .args(["--request-timeout", "30", "--seed", "15", "--no-color"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| {
            panic!("cannot run schemathesis ({error}): run hack/setup-deps.sh")
        });
    let output = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis did not finish within {RUN_TIMEOUT:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Network errors (a connection that ended without an answer, a read
    // time-out) make the run fail too: each would be a server bug.
    assert!(
        output.status.success(),
        "schemathesis failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    let summary = stdout
        .lines()
        .find(|line| line.contains(" generated, "))
        .unwrap_or_else(|| panic!("no summary:\n{stdout}"));
    println!("schemathesis: {summary}");
    assert!(
        !summary.contains("errored") && !summary.contains("failed"),
        "{stdout}"
    );
}
