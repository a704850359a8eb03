//! Golden test of rendering over the nmpolicy conformance vectors in
//! `testdata/nmpolicy/` (see `INDEX.md` there for their origin).
//!
//! Every vector is rendered (VLAN defaults off: nmpolicy itself adds none)
//! and compared with its expectation the way its `expected-is:` mode says.
//! Each vector's outcome and our output go to its `render.txt`, and one line
//! per vector to `RESULTS.md`; both are golden files, rewritten with
//! `UPDATE_EXPECT=1`. No vector is skipped: an outcome that changes fails
//! the test.

// Test helpers panic with the vector named, which is what a failure should say.
#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use nmstate::NetworkState;
use nmstate_openapi::{
    CapturedState, MetaInfo, NodeNetworkConfigurationPolicySpec, State, Time,
    render::{RenderOptions, Rendered, render_with_captured},
};
use serde_json::Value;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/nmpolicy")
}

fn read_yaml(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    if text.trim().is_empty() {
        return Some(Value::Object(Default::default()));
    }
    Some(serde_yaml::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display())))
}

fn to_yaml(value: &Value) -> String {
    serde_yaml::to_string(value).unwrap()
}

/// The vector's mode, from `expected-is:` in `source.txt`.
fn mode(dir: &Path) -> String {
    let source = std::fs::read_to_string(dir.join("source.txt")).unwrap();
    source
        .lines()
        .find_map(|line| line.strip_prefix("expected-is:"))
        .map(|mode| mode.trim().to_owned())
        .unwrap_or_else(|| panic!("{}: no expected-is", dir.display()))
}

/// A state as nmstate's model sees it (unknown to it: as written).
fn normalise(value: &Value) -> Value {
    match serde_json::from_value::<NetworkState>(value.clone()) {
        Ok(state) => serde_json::to_value(&state).unwrap(),
        Err(_) => value.clone(),
    }
}

/// Whether `expected` is contained in `actual`: objects by key, arrays of
/// equal length item by item.
fn is_subset(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => expected.iter().all(|(key, value)| {
            actual
                .get(key)
                .is_some_and(|actual| is_subset(value, actual))
        }),
        (Value::Array(expected), Value::Array(actual)) => {
            expected.len() == actual.len()
                && expected
                    .iter()
                    .zip(actual)
                    .all(|(expected, actual)| is_subset(expected, actual))
        }
        _ => expected == actual,
    }
}

/// The state of an expected or cached captured-state entry, in either
/// nmpolicy's (`state`/`metaInfo`, or Go's `State`/`MetaInfo`) or nmstate's
/// (the bare state) form.
fn entry_state(entry: &Value) -> Value {
    match entry {
        Value::Object(object) if object.contains_key("state") || object.contains_key("State") => {
            object
                .get("state")
                .or_else(|| object.get("State"))
                .cloned()
                .filter(|state| !state.is_null())
                .unwrap_or_else(|| Value::Object(Default::default()))
        }
        Value::Null => Value::Object(Default::default()),
        other => other.clone(),
    }
}

fn entry_version(entry: &Value) -> Option<String> {
    let meta = entry.get("metaInfo").or_else(|| entry.get("MetaInfo"))?;
    meta.get("version")
        .or_else(|| meta.get("Version"))?
        .as_str()
        .map(str::to_owned)
}

fn cache(dir: &Path) -> BTreeMap<String, CapturedState> {
    let Some(Value::Object(entries)) = read_yaml(&dir.join("cache.yaml")) else {
        return BTreeMap::new();
    };
    entries
        .iter()
        .map(|(name, entry)| {
            let captured = CapturedState {
                state: Some(State(entry_state(entry))),
                meta_info: Some(MetaInfo {
                    version: entry_version(entry),
                    time: None,
                }),
            };
            (name.clone(), captured)
        })
        .collect()
}

/// Compares the captured states with `expected-captures.yaml`; `None` when
/// the vector has none.
fn check_captures(dir: &Path, rendered: &Rendered, subset: bool) -> Option<Result<(), String>> {
    let Value::Object(expected) = read_yaml(&dir.join("expected-captures.yaml"))? else {
        return Some(Err("expected-captures.yaml is not a map".to_owned()));
    };
    let mut problems = Vec::new();
    for (name, entry) in &expected {
        let Some(actual) = rendered.captured_states.get(name) else {
            problems.push(format!("capture {name} missing"));
            continue;
        };
        let actual = normalise(&actual.state.clone().unwrap_or_default().0);
        let same = if subset {
            // nmstate would fill in what a partial expectation leaves out.
            is_subset(&entry_state(entry), &actual)
        } else {
            normalise(&entry_state(entry)) == actual
        };
        if !same {
            problems.push(format!("capture {name} differs"));
        }
    }
    if !subset {
        for name in rendered.captured_states.keys() {
            if !expected.contains_key(name) {
                problems.push(format!("capture {name} not expected"));
            }
        }
    }
    Some(if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join(", "))
    })
}

/// Our desired state diffed against the current state by nmstate, as
/// `NetworkState::try_from(NetworkPolicy)` answers when there are captures.
fn gen_diff(desired: &Value, current: &Value) -> Result<Value, String> {
    let desired: NetworkState =
        serde_json::from_value(desired.clone()).map_err(|e| e.to_string())?;
    let current: NetworkState =
        serde_json::from_value(current.clone()).map_err(|e| e.to_string())?;
    let diff = desired.gen_diff(&current).map_err(|e| e.to_string())?;
    serde_json::to_value(&diff).map_err(|e| e.to_string())
}

/// Compares the desired state: PASS when equal as written, else a named
/// documented relation, else a difference.
fn check_desired(
    mode: &str,
    expected: &Value,
    actual: &Value,
    current: &Value,
) -> Result<String, String> {
    if expected == actual {
        return Ok("PASS".to_owned());
    }
    if normalise(expected) == normalise(actual) {
        return Ok("PASS (equal once typed by nmstate)".to_owned());
    }
    if mode == "gen-diff" || mode == "try-from" {
        match gen_diff(actual, current) {
            Ok(diff) if normalise(expected) == normalise(&diff) => {
                return Ok("DIFF-OF-OURS (our filled template, diffed by nmstate's gen_diff, equals expected)".to_owned());
            }
            Ok(_) => return Err("differs, also after gen_diff".to_owned()),
            Err(error) => return Err(format!("differs; gen_diff failed: {error}")),
        }
    }
    Err("desired state differs".to_owned())
}

/// The `| line` and caret position of an nmstate policy error message.
fn caret(message: &str) -> Option<(String, usize)> {
    let mut lines = message.lines().filter_map(|line| line.strip_prefix("| "));
    let line = lines.next()?.to_owned();
    let position = lines.next()?.find('^')?;
    Some((line, position))
}

fn check_error(dir: &Path, message: &str) -> String {
    let expected = read_yaml(&dir.join("expected-error.txt")).unwrap();
    let text = |key: &str| expected.get(key).and_then(Value::as_str).map(str::to_owned);
    let position = expected
        .get("position")
        .and_then(Value::as_u64)
        .map(|p| p as usize);
    let ours = caret(message);
    let caret_ok = match (text("line"), position) {
        (Some(line), Some(position)) => ours == Some((line, position)),
        (Some(line), None) => ours.as_ref().is_some_and(|(ours, _)| *ours == line),
        _ => true,
    };
    let kind_ok = text("kind").is_none_or(|kind| message.contains(&format!("{kind}:")));
    let contains_ok = text("contains").is_none_or(|part| message.contains(&part));
    let message_ok = text("message").is_none_or(|expected| message.contains(&expected));
    match (caret_ok, kind_ok && contains_ok && message_ok) {
        (true, true) => "PASS".to_owned(),
        (true, false) => {
            "SAME-CARET (same line and position; nmstate's wording, not nmpolicy's)".to_owned()
        }
        (false, true) => "DIFFERENT-CARET (message matches, caret differs)".to_owned(),
        (false, false) => "DIFFERENT-ERROR (message and caret differ)".to_owned(),
    }
}

/// Renders one vector: its outcome and the detail for `render.txt`.
fn run(dir: &Path) -> (String, String) {
    let mode = mode(dir);
    let policy = read_yaml(&dir.join("policy.yaml")).unwrap();
    let spec: NodeNetworkConfigurationPolicySpec = serde_json::from_value(policy).unwrap();
    let current =
        read_yaml(&dir.join("current.yaml")).unwrap_or_else(|| Value::Object(Default::default()));
    let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_639_575_940).unwrap());
    let options = RenderOptions {
        default_bridge_vlan_filtering: false,
    };
    let result = render_with_captured(&spec, &State(current.clone()), &cache(dir), &options, &now);
    let mut detail = format!("expected-is: {mode}\n");
    let outcome = match result {
        Err(error) => {
            let message = error.to_string();
            writeln!(detail, "error:\n{message}").unwrap();
            if dir.join("expected-error.txt").exists() {
                check_error(dir, &message)
            } else {
                "UNEXPECTED-ERROR".to_owned()
            }
        }
        Ok(rendered) => {
            let desired = &rendered.desired_state.0;
            writeln!(detail, "desiredState:\n{}", to_yaml(desired)).unwrap();
            let captures: BTreeMap<&String, Value> = rendered
                .captured_states
                .iter()
                .map(|(name, captured)| (name, captured.state.clone().unwrap_or_default().0))
                .collect();
            writeln!(
                detail,
                "capturedStates:\n{}",
                serde_yaml::to_string(&captures).unwrap()
            )
            .unwrap();
            let mut verdicts = Vec::new();
            if dir.join("expected-error.txt").exists() {
                verdicts.push(Err(
                    "NO-ERROR (rendered where an error was expected)".to_owned()
                ));
            }
            if let Some(expected) = read_yaml(&dir.join("expected.yaml")) {
                verdicts.push(check_desired(&mode, &expected, desired, &current));
            }
            if let Some(expected) = read_yaml(&dir.join("expected-subset.yaml")) {
                verdicts.push(if is_subset(&expected, desired) {
                    Ok("PASS".to_owned())
                } else {
                    match gen_diff(desired, &current) {
                        Ok(diff) if is_subset(&expected, &diff) => Ok(
                            "DIFF-OF-OURS (expected subset holds for our output diffed by gen_diff)"
                                .to_owned(),
                        ),
                        _ => Err("expected subset not contained".to_owned()),
                    }
                });
            }
            if let Some(verdict) = check_captures(dir, &rendered, mode == "captures-subset") {
                verdicts.push(verdict.map(|()| "PASS".to_owned()));
            }
            assert!(
                !verdicts.is_empty(),
                "{}: nothing to compare with",
                dir.display()
            );
            let failures: Vec<String> = verdicts.iter().filter_map(|v| v.clone().err()).collect();
            if failures.is_empty() {
                let mut notes: Vec<String> = verdicts
                    .into_iter()
                    .map(Result::unwrap)
                    .filter(|verdict| verdict != "PASS")
                    .collect();
                notes.dedup();
                if notes.is_empty() {
                    "PASS".to_owned()
                } else {
                    notes.join("; ")
                }
            } else {
                format!("DIFFERENT ({})", failures.join("; "))
            }
        }
    };
    (outcome, detail)
}

/// Why a vector does not plainly pass, by vector number; every vector
/// whose outcome is not PASS has one (the test checks).
const NOTES: &[(&str, &str)] = &[
    (
        "001",
        "upstream's doc example puts `port` under `bridge.options`; Go nmpolicy does not type states, we type the filled state as nmstate's `fill_with_captured_data` does",
    ),
    ("002", "as 001"),
    ("013", "nmstate's parser message, same caret"),
    ("014", "nmstate's parser message, same caret"),
    ("015", "nmstate's message, same caret"),
    (
        "017",
        "`!=` exists only in Go nmpolicy; nmstate 2.2.62 rejects it",
    ),
    (
        "023",
        "nmstate's replace on the current state keeps only the replaced section (routes.running); Go keeps the whole current state",
    ),
    (
        "025",
        "nmstate only searches `routes.running`/`routes.config`; Go answers an empty capture for an unknown path",
    ),
    (
        "026",
        "nmstate's wording; its caret points at the capture name, Go's at `capture.`",
    ),
    (
        "027",
        "nmstate takes a bare `capture` as a value and finds no match; Go rejects the reference",
    ),
    (
        "028",
        "nmstate compares with the value at the path and finds no match; Go rejects a non-capture path on the right",
    ),
    ("029", "nmstate's message, same caret"),
    (
        "030",
        "nmstate compares a list of addresses with a string and finds no match; Go reports a type mismatch",
    ),
    (
        "031",
        "nmstate takes 'eth1' with single quotes as a value and finds no match; Go fails on the null list",
    ),
    (
        "032",
        "the Go resolver also returns cache entries without an expression; at the CLI level (009) nmpolicy returns only the policy's captures, as we do; the computed capture matches",
    ),
    (
        "033",
        "default-gw comes from the cache, so the reference is resolved by our substitution step: nmstate's message and a caret in the rewritten template",
    ),
    (
        "034",
        "expected is nmstate's `NetworkState::try_from(NetworkPolicy)`, i.e. the filled template diffed against the current state; we render the filled template (what upstream stores in the enactment), and nmstate's gen_diff of it equals expected",
    ),
    ("041", "as 034"),
    ("042", "as 034"),
    ("043", "as 034"),
    ("045", "as 034"),
    (
        "039",
        "same state once typed by nmstate (expected is written in nmstate's normal form)",
    ),
    (
        "048",
        "the `=~` operator is from an unmerged nmstate pull request",
    ),
    (
        "050",
        "as 034 (the unit test asserts on `try_from`, a gen_diff)",
    ),
];

fn note(name: &str) -> Option<&'static str> {
    NOTES
        .iter()
        .find(|(number, _)| name.starts_with(number))
        .map(|(_, note)| *note)
}

#[test]
fn nmpolicy_conformance() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(testdata())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    let mut results = String::from(
        "# Rendering the nmpolicy conformance vectors\n\n\
         Written by `openapi/tests/render_conformance.rs` (`UPDATE_EXPECT=1` rewrites it); \
         each vector's output is in its `render.txt`. VLAN defaults are off (nmpolicy adds none).\n\n\
         Outcomes: PASS; `PASS (equal once typed by nmstate)`; DIFF-OF-OURS (expected is a gen_diff \
         against the current state, ours is the filled template, and nmstate's gen_diff of ours equals \
         expected); SAME-CARET (same line and caret, nmstate's wording instead of Go nmpolicy's); \
         DIFFERENT-ERROR; DIFFERENT; UNEXPECTED-ERROR. Every outcome but PASS has a note.\n\n\
         | vector | expected-is | outcome | note |\n|---|---|---|---|\n",
    );
    let mut tallies: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut mismatches = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (outcome, detail) = run(dir);
        let mode = mode(dir);
        let detail = format!("outcome: {outcome}\n{detail}");
        let note = note(&name);
        assert!(
            outcome == "PASS" || note.is_some(),
            "{name}: outcome {outcome} has no note"
        );
        writeln!(
            results,
            "| {name} | {mode} | {outcome} | {} |",
            note.unwrap_or_default()
        )
        .unwrap();
        let short = outcome.split(' ').next().unwrap_or_default().to_owned();
        *tallies.entry((mode, short)).or_default() += 1;
        let golden = dir.join("render.txt");
        if update {
            std::fs::write(&golden, &detail).unwrap();
        } else if std::fs::read_to_string(&golden).unwrap_or_default() != detail {
            mismatches.push(format!("{name}:\n{detail}"));
        }
    }
    results.push_str("\n## Tallies\n\n| expected-is | outcome | vectors |\n|---|---|---|\n");
    for ((mode, outcome), count) in &tallies {
        writeln!(results, "| {mode} | {outcome} | {count} |").unwrap();
    }
    let golden = testdata().join("RESULTS.md");
    if update {
        std::fs::write(&golden, &results).unwrap();
    } else if std::fs::read_to_string(&golden).unwrap_or_default() != results {
        mismatches.push(format!("RESULTS.md:\n{results}"));
    }
    assert!(
        mismatches.is_empty(),
        "golden mismatch (UPDATE_EXPECT=1 rewrites):\n{}",
        mismatches.join("\n")
    );
}
