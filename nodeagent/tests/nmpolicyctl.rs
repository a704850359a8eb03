//! `nmpolicyctl gen` as a user runs it, on nmpolicy conformance vectors
//! (read from `openapi/testdata/nmpolicy`).

// Test helpers panic with what failed, which is what a failure should say.
#![allow(clippy::unwrap_used)]

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use serde_json::Value;

fn vector(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../openapi/testdata/nmpolicy")
        .join(name)
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap()
}

fn read_yaml(path: &Path) -> Value {
    yaml(&std::fs::read_to_string(path).unwrap())
}

/// Runs nmpolicyctl with HOME in `home`, optionally feeding `stdin`.
fn nmpolicyctl(home: &Path, args: &[&Path], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nmpolicyctl"))
        .args(args)
        .env("HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "nmpolicyctl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The names of the captures in a captured-states document.
fn names(document: &Value) -> Vec<String> {
    document.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn gen_with_current_state_file() {
    let home = tempfile::tempdir().unwrap();
    let dir = vector("008-go-cli-linux-bridge-default-gw-no-cache");
    let output = nmpolicyctl(
        home.path(),
        &[
            Path::new("gen"),
            &dir.join("policy.yaml"),
            Path::new("-s"),
            &dir.join("current.yaml"),
        ],
        None,
    );
    assert_eq!(
        yaml(&stdout(&output)),
        read_yaml(&dir.join("expected.yaml"))
    );
    let cache = read_yaml(&home.path().join(".cache/nmpolicy/cache.yaml"));
    let mut expected = names(&read_yaml(&dir.join("expected-captures.yaml")));
    expected.sort();
    assert_eq!(names(&cache), expected);
    let entry = &cache["default-gw"];
    assert_eq!(entry["metaInfo"]["version"], "0");
    assert!(entry["metaInfo"]["time"].is_string());
    assert_eq!(
        entry["state"]["routes"]["running"][0]["next-hop-interface"],
        "eth1"
    );
}

#[test]
fn gen_reads_current_state_from_stdin() {
    let home = tempfile::tempdir().unwrap();
    let dir = vector("037-rs-ex-bridge-on-default-gw-dhcp");
    let current = std::fs::read_to_string(dir.join("current.yaml")).unwrap();
    let output = nmpolicyctl(
        home.path(),
        &[Path::new("gen"), &dir.join("policy.yaml")],
        Some(&current),
    );
    assert_eq!(
        yaml(&stdout(&output)),
        read_yaml(&dir.join("expected.yaml"))
    );
    assert!(home.path().join(".cache/nmpolicy/cache.yaml").exists());
}

#[test]
fn gen_uses_captured_states_and_writes_them_where_asked() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("some/where/captured.yaml");
    for name in [
        "009-go-cli-linux-bridge-default-gw-full-cache",
        "010-go-cli-linux-bridge-default-gw-partial-cache",
    ] {
        let dir = vector(name);
        let output = nmpolicyctl(
            home.path(),
            &[
                Path::new("gen"),
                &dir.join("policy.yaml"),
                Path::new("-s"),
                &dir.join("current.yaml"),
                Path::new("-c"),
                &dir.join("cache.yaml"),
                Path::new("--output-captured"),
                &out,
            ],
            None,
        );
        assert_eq!(
            yaml(&stdout(&output)),
            read_yaml(&dir.join("expected.yaml")),
            "{name}"
        );
        let mut expected = names(&read_yaml(&dir.join("expected-captures.yaml")));
        expected.sort();
        assert_eq!(names(&read_yaml(&out)), expected, "{name}");
    }
    assert!(!home.path().join(".cache").exists());
}

#[test]
fn gen_adds_the_bridge_vlan_default_when_asked() {
    let home = tempfile::tempdir().unwrap();
    let dir = vector("008-go-cli-linux-bridge-default-gw-no-cache");
    let args = [
        Path::new("gen"),
        &dir.join("policy.yaml"),
        Path::new("-s"),
        &dir.join("current.yaml"),
    ];
    let plain = yaml(&stdout(&nmpolicyctl(home.path(), &args, None)));
    assert!(
        plain["interfaces"][0]["bridge"]["port"][0]
            .get("vlan")
            .is_none()
    );
    let mut args = args.to_vec();
    args.push(Path::new("--default-bridge-vlan-filtering"));
    let filtered = yaml(&stdout(&nmpolicyctl(home.path(), &args, None)));
    assert_eq!(
        filtered["interfaces"][0]["bridge"]["port"][0]["vlan"],
        yaml("{mode: trunk, trunk-tags: [{id-range: {min: 2, max: 4094}}]}")
    );
}

#[test]
fn empty_policy_prints_nothing() {
    let home = tempfile::tempdir().unwrap();
    let dir = vector("012-go-cli-empty-policy");
    let output = nmpolicyctl(
        home.path(),
        &[
            Path::new("gen"),
            &dir.join("policy.yaml"),
            Path::new("-s"),
            &dir.join("current.yaml"),
        ],
        None,
    );
    assert_eq!(stdout(&output), "");
    let cache = std::fs::read_to_string(home.path().join(".cache/nmpolicy/cache.yaml")).unwrap();
    assert_eq!(cache, "");
}

#[test]
fn capture_error_exits_1_with_the_caret() {
    let home = tempfile::tempdir().unwrap();
    let dir = vector("013-go-cli-err-lexer-illegal-rune");
    let output = nmpolicyctl(
        home.path(),
        &[
            Path::new("gen"),
            &dir.join("policy.yaml"),
            Path::new("-s"),
            &dir.join("current.yaml"),
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("nmpolicyctl: failed to generate state: failed to run captures: "),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "\n| routes.running.destination==-\"0.0.0.0/0\"\n| ............................^"
        ),
        "{stderr}"
    );
}

#[test]
fn missing_policy_file_exits_1() {
    let home = tempfile::tempdir().unwrap();
    let output = nmpolicyctl(
        home.path(),
        &[Path::new("gen"), &home.path().join("nope.yaml")],
        Some(""),
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.starts_with("nmpolicyctl: reading "), "{stderr}");
}
