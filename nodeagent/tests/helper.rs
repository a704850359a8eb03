//! The agent and `nmstate-helper` across a real process boundary: what the
//! agent asks and what the helper answers, for the operations that need no
//! NetworkManager (reads and applies on a node are the e2e suites'
//! `agent_nm::`, in network-namespace nodes).

use nmstate_agent::helper::{Helper, Mode};
use nmstate_openapi::State;
use serde_json::json;

fn helper() -> Helper {
    Helper::new(env!("CARGO_BIN_EXE_nmstate-helper"))
}

#[tokio::test]
async fn the_statistic_is_nmstates_and_the_same_as_in_process() {
    let current = State(json!({
        "interfaces": [{"name": "eth1", "type": "ethernet", "state": "up"}],
    }));
    let cases = [
        (
            json!({
                "dns-resolver": {"config": {"server": ["192.0.2.53"]}},
                "routes": {"config": [{
                    "destination": "198.51.100.0/24",
                    "next-hop-interface": "eth1",
                    "next-hop-address": "192.0.2.1",
                }]},
                "interfaces": [{"name": "eth1", "type": "ethernet", "state": "up",
                    "ipv4": {"enabled": true,
                        "address": [{"ip": "192.0.2.2", "prefix-length": 24}]},
                    "lldp": {"enabled": true}}],
            }),
            vec!["lldp", "static-dns-name-server", "static-route"],
        ),
        (json!({}), vec![]),
    ];
    for (desired, expected) in cases {
        let desired = State(desired);
        let features = helper()
            .statistic(&desired, &current)
            .await
            .unwrap_or_else(|e| panic!("{desired:?}: {e}"));
        assert_eq!(features, expected, "{desired:?}");
        assert_eq!(Ok(features), desired.features(&current), "{desired:?}");
    }
}

#[tokio::test]
async fn a_desired_state_of_the_wrong_shape_fails_in_nmstates_words() {
    let desired = State(json!({
        "interfaces": [{"name": "eth1", "type": "ethernet", "mtu": "big"}]
    }));
    for mode in [Mode::NetworkManager, Mode::Kernel] {
        let error = helper()
            .apply(&desired, mode, None, false)
            .await
            .expect_err("mtu must be a number");
        // The whole message, no crash report around it: users read it in
        // the enactment's Failing condition.
        assert!(
            error.message.starts_with("invalid desired state: ") && !error.message.contains('\n'),
            "{mode:?}: {error}"
        );
    }
    let error = helper()
        .statistic(&State(json!({"interfaces": "no list"})), &State::default())
        .await
        .expect_err("interfaces must be a list");
    assert!(!error.message.is_empty(), "{error}");
}

#[tokio::test]
async fn a_missing_helper_is_named() {
    let missing = Helper::new("/nonexistent/nmstate-helper");
    let error = missing
        .retrieve(Mode::NetworkManager)
        .await
        .expect_err("there is no helper");
    assert!(
        error
            .message
            .starts_with("starting the nmstate helper /nonexistent/nmstate-helper: "),
        "{error}"
    );
}

#[tokio::test]
async fn a_helper_that_dies_is_reported_with_its_status_and_last_words() {
    // `/bin/sh` stands in for a helper that dies at once: it exits with a
    // failure other than 1, as it finds no script named after the
    // operation, and says so on stderr.
    let dying = Helper::new("/bin/sh");
    let retrieve = dying.retrieve(Mode::NetworkManager).await;
    let statistic = dying.statistic(&State::default(), &State::default()).await;
    for (operation, result) in [
        ("retrieve", retrieve.map(drop)),
        ("statistic", statistic.map(drop)),
    ] {
        let error = result.expect_err("the shell finds no such script");
        let prefix = format!("the nmstate helper ({operation}) failed (exit status: ");
        let last_words = error.message.split_once("): ").map(|(_, words)| words);
        assert!(
            error.message.starts_with(&prefix)
                && last_words.is_some_and(|words| words.contains(operation)),
            "{error}"
        );
    }
}

#[test]
fn a_helper_ends_with_the_process_that_started_it() {
    use std::{
        io::{BufRead, BufReader},
        process::{Command, Stdio},
        time::{Duration, Instant},
    };
    // A shell starts the helper and waits; the helper waits for its input,
    // which this test holds open. Killing the shell (as an agent is
    // killed in the middle of an apply) must end the helper too.
    let mut shell = Command::new("/bin/sh")
        // A background job's input would be /dev/null: give it ours.
        .args([
            "-c",
            "exec 3<&0; \"$0\" statistic <&3 3<&- >/dev/null & echo $!; wait",
        ])
        .arg(env!("CARGO_BIN_EXE_nmstate-helper"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh");
    // Held until the end: `wait` would close it, and the helper would
    // end by itself at the end of its input.
    let _input = shell.stdin.take().expect("stdin");
    let mut line = String::new();
    BufReader::new(shell.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the helper's pid");
    let helper: u32 = line.trim().parse().expect("a pid");
    let alive = || {
        std::fs::read_to_string(format!("/proc/{helper}/stat"))
            .ok()
            .and_then(|stat| Some(stat.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
            .unwrap_or(false)
    };
    // Started and waiting for its input, not ended by itself.
    std::thread::sleep(Duration::from_millis(200));
    assert!(alive(), "the helper ended before its shell was killed");
    shell.kill().expect("kill the shell");
    shell.wait().expect("reap the shell");
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !alive(),
        "the helper {helper} outlived the process that started it"
    );
}
