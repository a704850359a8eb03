#![allow(clippy::unwrap_used)]

use k8s_openapi::jiff::Timestamp;
use nmstate_openapi::condition::{
    ENACTMENT_PROGRESSING_MESSAGE, enactment_retrying_message, set_enactment_aborted,
    set_enactment_failed_to_configure, set_enactment_pending, set_enactment_progressing,
    set_enactment_retrying, set_enactment_success, set_policy_progressing, set_policy_success,
};

use super::*;

fn at(second: i64) -> Time {
    Time(Timestamp::from_second(second).unwrap())
}

/// The time of every check: transitions happen at 1000 unless a case says.
const NOW: i64 = 1_060;

/// An enactment's status as the agent or the controller leaves it.
#[derive(Clone, Copy, Debug)]
enum Enactment {
    Pending,
    Applying,
    Retrying,
    Available,
    /// Failing after this many failed applies (the `retryCount`).
    Failed(i32),
    Aborted,
}

fn enactment_status(
    enactment: Enactment,
    generation: i64,
    since: i64,
) -> NodeNetworkConfigurationEnactmentStatus {
    let mut status = NodeNetworkConfigurationEnactmentStatus {
        policy_generation: Some(generation),
        ..Default::default()
    };
    let conditions = &mut status.conditions;
    let now = at(since);
    match enactment {
        Enactment::Pending => {
            set_enactment_pending(conditions, "wait", &now);
        }
        Enactment::Applying => {
            set_enactment_progressing(conditions, ENACTMENT_PROGRESSING_MESSAGE, &now);
        }
        Enactment::Retrying => {
            let message = enactment_retrying_message("node-1", 2, 5);
            set_enactment_retrying(conditions, &message, &now);
            status.retry_count.insert(generation.to_string(), 2);
        }
        Enactment::Available => {
            set_enactment_success(conditions, "successfully reconciled", &now);
        }
        Enactment::Failed(failures) => {
            set_enactment_failed_to_configure(conditions, "nmstate said no", &now);
            if failures > 0 {
                status.retry_count.insert(generation.to_string(), failures);
            }
        }
        Enactment::Aborted => {
            let message = enactment_aborted_message("node-1.bad");
            set_enactment_aborted(conditions, &message, &now);
        }
    }
    status
}

/// A policy's status: Available (`true`) or Progressing for `observed`.
fn policy_status(
    available: bool,
    observed: i64,
    since: i64,
) -> NodeNetworkConfigurationPolicyStatus {
    let mut status = NodeNetworkConfigurationPolicyStatus::default();
    let now = at(since);
    if available {
        set_policy_success(
            &mut status.conditions,
            "2/2 nodes successfully configured",
            Some(observed),
            &now,
        );
    } else {
        set_policy_progressing(
            &mut status.conditions,
            "Policy is progressing",
            Some(observed),
            &now,
        );
    }
    status
}

/// One case: the policy (generation, status), enactment node-1.bad's status,
/// what was seen before (`None`: nothing), and the events expected as
/// `type reason action: note` lines, regarding → related.
struct Case {
    name: &'static str,
    generation: i64,
    policy: Option<NodeNetworkConfigurationPolicyStatus>,
    enactment: Option<NodeNetworkConfigurationEnactmentStatus>,
    before: Option<(Option<Seen>, Option<Seen>)>,
    expected: &'static [&'static str],
}

fn line(event: &Announcement) -> String {
    let related = event
        .related
        .as_ref()
        .map(|related| format!(" -> {}/{}", related.kind, related.name))
        .unwrap_or_default();
    format!(
        "{:?} {} {}: {} [{}/{}{}]",
        event.type_,
        event.reason,
        event.action,
        event.note,
        event.regarding.kind,
        event.regarding.name,
        related
    )
}

fn check(case: &Case) {
    let policy = PolicyView {
        name: "bad",
        uid: "policy-uid",
        generation: case.generation,
        status: case.policy.as_ref(),
    };
    let enactments: Vec<EnactmentView<'_>> = case
        .enactment
        .iter()
        .map(|status| EnactmentView {
            name: "node-1.bad",
            uid: "enactment-uid",
            node: "node-1",
            status,
        })
        .collect();
    let before = match case.before {
        None => Memory::default(),
        Some((policy, enactment)) => Memory {
            policy,
            enactments: enactment
                .map(|seen| HashMap::from([("enactment-uid".to_owned(), seen)]))
                .unwrap_or_default(),
        },
    };
    let (events, memory) = announce(&policy, &enactments, &before, &at(NOW));
    let lines: Vec<String> = events.iter().map(line).collect();
    assert_eq!(lines, case.expected, "case {:?}", case.name);
    // What is remembered is what was seen, whatever was reported.
    assert_eq!(
        memory.enactments.len(),
        enactments.len(),
        "case {:?}",
        case.name
    );
    assert!(memory.policy.is_some(), "case {:?}", case.name);
    // And seeing the same again reports nothing.
    let (again, _) = announce(&policy, &enactments, &memory, &at(NOW + 1));
    assert_eq!(again, Vec::new(), "case {:?}: seen twice", case.name);
    // The references carry the uids `kubectl describe` looks events up by.
    for event in &events {
        assert!(event.regarding.uid.is_some(), "case {:?}", case.name);
    }
}

const OTHER: Seen = Seen {
    generation: Some(1),
    outcome: Outcome::Other,
};

fn seen(generation: i64, outcome: Outcome) -> Seen {
    Seen {
        generation: Some(generation),
        outcome,
    }
}

const APPLY_FAILED: [&str; 2] = [
    "Warning ReconcileFailed Configure: reconciliation of enactment \"node-1.bad\" has failed after 5 retries [NodeNetworkConfigurationPolicy/bad -> NodeNetworkConfigurationEnactment/node-1.bad]",
    "Warning FailedToConfigure Configure: failed to configure node node-1 after 5 retries; rolled back (the error is in the Failing condition) [NodeNetworkConfigurationEnactment/node-1.bad -> Node/node-1]",
];

#[test]
fn events_follow_transitions() {
    use Enactment as E;
    let cases = [
        Case {
            name: "pending, applying and retrying are no news",
            generation: 1,
            policy: Some(policy_status(false, 1, 1000)),
            enactment: Some(enactment_status(E::Retrying, 1, 1000)),
            before: Some((Some(OTHER), Some(OTHER))),
            expected: &[],
        },
        Case {
            name: "an applying enactment is no news",
            generation: 1,
            policy: None,
            enactment: Some(enactment_status(E::Applying, 1, 1000)),
            before: None,
            expected: &[],
        },
        Case {
            name: "a pending enactment is no news",
            generation: 1,
            policy: None,
            enactment: Some(enactment_status(E::Pending, 1, 1000)),
            before: None,
            expected: &[],
        },
        Case {
            name: "failed after its retries: upstream's message on the policy",
            generation: 1,
            policy: Some(policy_status(false, 1, 1000)),
            enactment: Some(enactment_status(E::Failed(6), 1, 1000)),
            before: Some((Some(OTHER), Some(OTHER))),
            expected: &APPLY_FAILED,
        },
        Case {
            name: "the same failure seen again is no news",
            generation: 1,
            policy: None,
            enactment: Some(enactment_status(E::Failed(6), 1, 1000)),
            before: Some((
                None,
                Some(seen(1, Outcome::Failed(Failure::Apply { retries: 5 }))),
            )),
            expected: &[],
        },
        Case {
            name: "the next generation failing again is news (the same event: its series grows)",
            generation: 2,
            policy: None,
            enactment: Some(enactment_status(E::Failed(6), 2, 1000)),
            before: Some((
                None,
                Some(seen(1, Outcome::Failed(Failure::Apply { retries: 5 }))),
            )),
            expected: &APPLY_FAILED,
        },
        Case {
            name: "a probe failure is not retried and says so",
            generation: 1,
            policy: None,
            enactment: Some(enactment_status(E::Failed(1), 1, 1000)),
            before: Some((None, Some(OTHER))),
            expected: &[
                "Warning ReconcileFailed Probe: reconciliation of enactment \"node-1.bad\" has failed: a probe failed on node node-1 after the apply [NodeNetworkConfigurationPolicy/bad -> NodeNetworkConfigurationEnactment/node-1.bad]",
                "Warning FailedToConfigure Probe: a probe failed on node node-1 after the apply; rolled back and not retried (the error is in the Failing condition) [NodeNetworkConfigurationEnactment/node-1.bad -> Node/node-1]",
            ],
        },
        Case {
            name: "a render failure is the controller's",
            generation: 1,
            policy: None,
            enactment: Some(enactment_status(E::Failed(0), 1, 1000)),
            before: None,
            expected: &[
                "Warning ReconcileFailed Render: reconciliation of enactment \"node-1.bad\" has failed: the policy could not be rendered for node node-1 [NodeNetworkConfigurationPolicy/bad -> NodeNetworkConfigurationEnactment/node-1.bad]",
                "Warning FailedToConfigure Render: the policy could not be rendered for node node-1 (the error is in the Failing condition) [NodeNetworkConfigurationEnactment/node-1.bad -> Node/node-1]",
            ],
        },
        Case {
            name: "aborted: upstream's message on both",
            generation: 1,
            policy: None,
            enactment: Some(enactment_status(E::Aborted, 1, 1000)),
            before: Some((None, Some(OTHER))),
            expected: &[
                "Warning ReconcileFailed Abort: reconciliation of enactment \"node-1.bad\" has aborted [NodeNetworkConfigurationPolicy/bad -> NodeNetworkConfigurationEnactment/node-1.bad]",
                "Warning ConfigurationAborted Abort: reconciliation of enactment \"node-1.bad\" has aborted [NodeNetworkConfigurationEnactment/node-1.bad -> Node/node-1]",
            ],
        },
        Case {
            name: "first sight of a recent failure (a new leader) is news",
            generation: 1,
            policy: None,
            enactment: Some(enactment_status(
                E::Failed(6),
                1,
                NOW - FIRST_SIGHT_WINDOW_SECONDS,
            )),
            before: None,
            expected: &APPLY_FAILED,
        },
        Case {
            name: "first sight of an old failure is not",
            generation: 1,
            policy: None,
            enactment: Some(enactment_status(
                E::Failed(6),
                1,
                NOW - FIRST_SIGHT_WINDOW_SECONDS - 1,
            )),
            before: None,
            expected: &[],
        },
        Case {
            name: "an enactment's success is told by the policy's rollout",
            generation: 1,
            policy: Some(policy_status(false, 1, 1000)),
            enactment: Some(enactment_status(E::Available, 1, 1000)),
            before: Some((Some(OTHER), Some(OTHER))),
            expected: &[],
        },
        Case {
            name: "a finished rollout",
            generation: 2,
            policy: Some(policy_status(true, 2, 1000)),
            enactment: Some(enactment_status(E::Available, 2, 1000)),
            before: Some((
                Some(seen(2, Outcome::Other)),
                Some(seen(2, Outcome::Available)),
            )),
            expected: &[
                "Normal SuccessfullyConfigured Rollout: rollout finished: the policy is configured on its nodes [NodeNetworkConfigurationPolicy/bad]",
            ],
        },
        Case {
            name: "the next generation's rollout finishing is news",
            generation: 3,
            policy: Some(policy_status(true, 3, 1000)),
            enactment: None,
            before: Some((Some(seen(2, Outcome::Available)), None)),
            expected: &[
                "Normal SuccessfullyConfigured Rollout: rollout finished: the policy is configured on its nodes [NodeNetworkConfigurationPolicy/bad]",
            ],
        },
        Case {
            name: "Available for an older generation is no finished rollout",
            generation: 3,
            policy: Some(policy_status(true, 2, 1000)),
            enactment: None,
            before: Some((Some(seen(2, Outcome::Available)), None)),
            expected: &[],
        },
        Case {
            name: "first sight of a rollout that finished long ago is not news",
            generation: 1,
            policy: Some(policy_status(true, 1, 0)),
            enactment: None,
            before: None,
            expected: &[],
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn a_policy_event_names_each_enactment_so_repeats_of_one_are_one_series() {
    let failed = enactment_status(Enactment::Failed(6), 1, 1000);
    let enactments = ["node-2.bad", "node-1.bad"].map(|name| EnactmentView {
        name,
        uid: name,
        node: name.split('.').next().unwrap(),
        status: &failed,
    });
    let policy = PolicyView {
        name: "bad",
        uid: "policy-uid",
        generation: 1,
        status: None,
    };
    let (events, _) = announce(&policy, &enactments, &Memory::default(), &at(NOW));
    let policy_events: Vec<(&str, &str)> = events
        .iter()
        .filter(|event| event.regarding.kind == "NodeNetworkConfigurationPolicy")
        .map(|event| {
            (
                event.related.as_ref().unwrap().name.as_str(),
                event.note.as_str(),
            )
        })
        .collect();
    // In name order, each related to its enactment, with a message of its
    // own: the recorder's key (regarding, related, reason, action) keeps
    // them apart.
    assert_eq!(
        policy_events,
        [
            (
                "node-1.bad",
                "reconciliation of enactment \"node-1.bad\" has failed after 5 retries"
            ),
            (
                "node-2.bad",
                "reconciliation of enactment \"node-2.bad\" has failed after 5 retries"
            ),
        ]
    );
}
