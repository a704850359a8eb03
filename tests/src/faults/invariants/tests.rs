#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::json;

fn expected(nodes: &[&str], max_unavailable: usize, ends: &'static str) -> Expected {
    Expected {
        nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
        max_unavailable,
        ends: Some(ends),
        never_available: false,
    }
}

fn condition(type_: &str) -> Value {
    json!({"type": type_, "status": "True", "reason": "x", "message": "x"})
}

fn enactment(node: &str, revision: i64, phase: &str) -> Seen {
    Seen::Event {
        kind: Kind::Enactment,
        stream: 1,
        kind_of_event: "MODIFIED".into(),
        revision,
        object: json!({
            "metadata": {"name": format!("{node}.p"), "resourceVersion": revision.to_string(),
                         "labels": {"nmstate.io/policy": "p", "nmstate.io/node": node}},
            "status": {"conditions": [condition(phase)]},
        }),
    }
}

fn policy(revision: i64, condition_type: &str) -> Seen {
    Seen::Event {
        kind: Kind::Policy,
        stream: 1,
        kind_of_event: "MODIFIED".into(),
        revision,
        object: json!({
            "metadata": {"name": "p", "generation": 1, "resourceVersion": revision.to_string()},
            "status": {"conditions": [
                {"type": condition_type, "status": "True", "observedGeneration": 1},
            ]},
        }),
    }
}

fn run(expected: Expected, seen: &[Seen]) -> Checker {
    let mut checker = Checker::new(BTreeMap::from([("p".to_owned(), expected)]));
    for kind in [Kind::Policy, Kind::Enactment] {
        checker.apply(&Seen::Connected {
            kind,
            stream: 1,
            from: 0,
        });
    }
    for seen in seen {
        checker.apply(seen);
    }
    checker
}

#[test]
fn a_slot_freed_by_a_dark_node_is_a_violation() {
    // The case: node a went dark while applying, the controller
    // released b anyway. Nothing in the enactments says a ended.
    let checker = run(
        expected(&["a", "b"], 1, "Available"),
        &[
            enactment("a", 2, "Progressing"),
            enactment("b", 3, "Progressing"),
        ],
    );
    assert_eq!(checker.report().violations, 1, "{:?}", checker.report());
    assert!(
        checker.report().messages[0].contains("2 enactments in flight (a, b), maxUnavailable 1")
    );
}

#[test]
fn released_after_an_end_is_fine() {
    let mut checker = run(
        expected(&["a", "b"], 1, "Available"),
        &[
            enactment("a", 2, "Progressing"),
            enactment("a", 3, "Available"),
            enactment("b", 4, "Progressing"),
            enactment("b", 5, "Available"),
            policy(6, "Available"),
        ],
    );
    assert_eq!(checker.report().violations, 0, "{:?}", checker.report());
    assert!(checker.settled());
    checker.finish();
    assert_eq!(checker.report().violations, 0, "{:?}", checker.report());
    assert_eq!(checker.report().max_in_flight["p"], 1);
}

#[test]
fn available_while_in_flight_is_a_violation() {
    let checker = run(
        expected(&["a", "b"], 2, "Available"),
        &[enactment("a", 2, "Progressing"), policy(3, "Available")],
    );
    assert_eq!(checker.report().violations, 1);
    assert!(
        checker.report().messages[0]
            .contains("reads Available while enactments are in flight on a")
    );
}

#[test]
fn resource_versions_must_increase_on_a_watch() {
    let checker = run(
        expected(&["a"], 1, "Available"),
        &[
            enactment("a", 5, "Pending"),
            enactment("a", 4, "Progressing"),
        ],
    );
    assert_eq!(checker.report().violations, 1);
    assert!(checker.report().messages[0].contains("resourceVersion 4 after 5"));
}

#[test]
fn a_deleted_or_twice_created_enactment_is_a_violation() {
    let deleted = Seen::Event {
        kind: Kind::Enactment,
        stream: 1,
        kind_of_event: "DELETED".into(),
        revision: 3,
        object: json!({"metadata": {"name": "a.p", "resourceVersion": "3"}}),
    };
    let mut added = enactment("b", 5, "Pending");
    if let Seen::Event { kind_of_event, .. } = &mut added {
        *kind_of_event = "ADDED".into();
    }
    let mut again = added.clone();
    if let Seen::Event { revision, .. } = &mut again {
        *revision = 6;
    }
    let checker = run(
        expected(&["a", "b"], 1, "Available"),
        &[enactment("a", 2, "Pending"), deleted, added, again],
    );
    let messages = &checker.report().messages;
    assert_eq!(checker.report().violations, 2, "{messages:?}");
    assert!(messages[0].contains("enactment a.p lost"));
    assert!(messages[1].contains("enactment b.p created twice"));
}

#[test]
fn the_end_must_be_what_the_nodes_justify() {
    let mut checker = run(
        expected(&["a", "b"], 1, "Degraded"),
        &[
            enactment("a", 2, "Failing"),
            enactment("b", 3, "Aborted"),
            policy(4, "Available"),
        ],
    );
    assert!(!checker.settled());
    checker.finish();
    let messages = &checker.report().messages;
    assert_eq!(checker.report().violations, 1, "{messages:?}");
    assert!(messages[0].contains("policy p does not end Degraded"));
}

#[test]
fn a_later_node_is_never_released_before_the_first_ended() {
    let mut checker = Checker::new(BTreeMap::from([(
        "p".to_owned(),
        expected(&["a", "b"], 2, "Degraded"),
    )]));
    checker.never_before_end("a.p", "b.p");
    checker.apply(&Seen::Connected {
        kind: Kind::Enactment,
        stream: 1,
        from: 0,
    });
    checker.apply(&enactment("a", 2, "Progressing"));
    checker.apply(&enactment("b", 3, "Progressing"));
    assert_eq!(checker.report().violations, 1);
    assert!(checker.report().messages[0].contains("b.p released while a.p has not ended"));
}
