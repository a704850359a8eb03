//! The binary's command line: what an operator sees when flags are wrong or
//! the store cannot be reached at start-up.
#![allow(clippy::unwrap_used)]

use std::{net::TcpListener, process::Command};

fn apiserver() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nmstate-apiserver"))
}

#[test]
fn bad_flags_exit_64_with_the_flag_named() {
    let dir = tempfile::tempdir().unwrap();
    let output = apiserver()
        .args(["--data-dir"])
        .arg(dir.path())
        .args(["--etcd-servers", "127.0.0.1:2379"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "invalid flag --etcd-servers: \"127.0.0.1:2379\" must start with http:// or https://"
        ),
        "{stderr}"
    );
    assert!(
        !dir.path().join("pki").exists(),
        "nothing is written before the flags are checked"
    );
}

#[test]
fn unreachable_etcd_exits_1_naming_the_endpoint() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let output = apiserver()
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--bind-address", "127.0.0.1", "--secure-port", "0"])
        .args(["--etcd-servers", &endpoint])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&endpoint),
        "stderr must name {endpoint}: {stderr}"
    );
}

#[test]
fn kubeconfig_without_a_local_ca_says_how_to_create_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("n1.kubeconfig");
    let output = apiserver()
        .args(["kubeconfig", "--data-dir"])
        .arg(dir.path())
        .args([
            "--user",
            "system:node:n1",
            "--group",
            "system:nodes",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "nmstate-apiserver kubeconfig: no local CA at {}: start nmstate-apiserver once with \
         --data-dir {} (and without --tls-cert-file) to create it",
        dir.path().join("pki/ca.crt").display(),
        dir.path().display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn kubeconfig_with_bad_flags_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let output = apiserver()
        .args(["kubeconfig", "--data-dir"])
        .arg(dir.path())
        .args(["--user", "u", "--out", "/tmp/never-written"])
        .args(["--server", "http://127.0.0.1:6443"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "invalid flag --server: \"http://127.0.0.1:6443\" must be https://HOST[:PORT]"
        ),
        "{stderr}"
    );
}
