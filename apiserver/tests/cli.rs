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
