//! Label and field selectors, as `?labelSelector=` and `?fieldSelector=`
//! bring them: parsing never panics, and a selector that parses prints a
//! canonical form that parses to the same selector and selects the same
//! objects.
//!
//! Input: the selector, then (after a newline) `key=value` lines that
//! become the labels of the object matched against.

use std::fmt::Display;

use nmstate_apiserver::rules::selector::{FieldSelector, LabelSelector};
use nmstate_openapi::ResourceKind;
use serde_json::{Map, Value, json};

/// Panics when `data` breaks an invariant (see the module).
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (selector, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let labels: Map<String, Value> = rest
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), Value::from(value)))
        .collect();
    let object = json!({
        "metadata": {"name": "node01.policy", "labels": labels},
        "spec": {"nodeName": "node01"},
        "status": {"conditions": []},
    });

    round_trip(selector, LabelSelector::parse, |parsed| {
        parsed.matches_object(&object)
    });
    for kind in ResourceKind::ALL {
        round_trip(
            selector,
            |text| FieldSelector::parse(text, kind),
            |parsed| parsed.matches_object(&object),
        );
    }
}

/// If `selector` parses, its printed form parses to a selector that prints
/// the same and matches the same.
fn round_trip<S: Display, E: Display>(
    selector: &str,
    parse: impl Fn(&str) -> Result<S, E>,
    matches: impl Fn(&S) -> bool,
) {
    let Ok(parsed) = parse(selector) else {
        return;
    };
    let printed = parsed.to_string();
    let again = parse(&printed)
        .unwrap_or_else(|e| panic!("{printed:?}, printed from {selector:?}, does not parse: {e}"));
    assert_eq!(again.to_string(), printed, "from {selector:?}");
    assert_eq!(
        matches(&parsed),
        matches(&again),
        "{selector:?} and {printed:?}"
    );
}
