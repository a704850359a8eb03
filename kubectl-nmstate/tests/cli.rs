//! The command line itself, without a server: usage and the errors a user
//! sees before any request. (Being an integration test, this also makes
//! `cargo test --workspace` build the binary that `tests/tests/e2e/kubectl_nmstate.rs`
//! runs against a real server.)

use std::process::{Command, Output};

fn plugin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-nmstate"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HOME", env!("CARGO_TARGET_TMPDIR"))
        .output()
        .expect("running kubectl-nmstate")
}

#[test]
fn help_lists_every_command() {
    let out = plugin(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["render", "dry-run", "rollout", "why", "show"] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
}

#[test]
fn usage_errors_exit_non_zero_and_say_why() {
    let cases: [(&[&str], &str); 3] = [
        (&["frobnicate"], "frobnicate"),
        (&["render", "p"], "--node"),
        (&["show", "node-1", "--graph", "gif"], "gif"),
    ];
    for (args, named) in cases {
        let out = plugin(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
}

#[test]
fn a_missing_kubeconfig_is_a_clear_error() {
    let out = plugin(&["show", "node-1", "--kubeconfig", "/nonexistent/kubeconfig"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("/nonexistent/kubeconfig"), "{stderr}");
}
