#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use nmstate_openapi::{
    ConditionReason, ConditionType, EnactmentPhase, IntOrString,
    NodeNetworkConfigurationEnactmentStatus, NodeNetworkConfigurationPolicySpec, State, Time,
    condition::{
        ENACTMENT_RELEASED_MESSAGE, ENACTMENT_SUCCESS_MESSAGE, find_condition,
        set_enactment_failed_to_configure, set_enactment_retrying, set_enactment_success,
    },
    render::RenderOptions,
};
use serde_json::{Value, json};

use super::*;

/// A current state as the watch cache keeps it: JSON text.
fn text(state: &Value) -> String {
    state.to_string()
}

fn at(second: i64) -> Time {
    Time(Timestamp::from_second(second).unwrap())
}

/// A node's current state: eth0 with an address and the default route.
fn state(address: &str) -> Value {
    json!({
        "interfaces": [
            {"name": "eth0", "type": "ethernet", "state": "up",
             "ipv4": {"enabled": true, "address": [{"ip": address, "prefix-length": 24}]}},
            {"name": "eth1", "type": "ethernet", "state": "up"},
        ],
        "routes": {"running": [
            {"destination": "0.0.0.0/0", "next-hop-address": "192.0.2.1", "next-hop-interface": "eth0"},
        ], "config": []},
    })
}

struct World {
    labels: Vec<BTreeMap<String, String>>,
    states: Vec<String>,
    names: Vec<String>,
    alive: Vec<bool>,
}

impl World {
    fn new(count: usize) -> Self {
        let names: Vec<String> = (0..count).map(|i| format!("node-{i:02}")).collect();
        Self {
            labels: names
                .iter()
                .map(|name| {
                    BTreeMap::from([
                        ("kubernetes.io/hostname".to_owned(), name.clone()),
                        ("role".to_owned(), "worker".to_owned()),
                    ])
                })
                .collect(),
            states: (0..count)
                .map(|i| text(&state(&format!("192.0.2.{}", i + 10))))
                .collect(),
            names,
            alive: vec![true; count],
        }
    }

    fn nodes(&self) -> Vec<Node<'_>> {
        self.names
            .iter()
            .enumerate()
            .map(|(i, name)| Node {
                name,
                labels: &self.labels[i],
                alive: self.alive[i],
                current_state: Some(&self.states[i]),
            })
            .collect()
    }
}

/// The enactments a plan leaves, as the store would hold them.
#[derive(Default)]
struct Store {
    enactments: BTreeMap<String, (String, i64, NodeNetworkConfigurationEnactmentStatus)>,
    revision: i64,
    policy_status: Option<NodeNetworkConfigurationPolicyStatus>,
}

impl Store {
    fn apply(&mut self, plan: &Plan) {
        for action in &plan.actions {
            self.revision += 1;
            match action {
                Action::Create { name, node, status } => {
                    assert!(!self.enactments.contains_key(name), "create of {name}");
                    self.enactments
                        .insert(name.clone(), (node.clone(), self.revision, status.clone()));
                }
                Action::UpdateStatus {
                    name,
                    revision,
                    status,
                } => {
                    let entry = self.enactments.get_mut(name).unwrap();
                    assert_eq!(entry.1, *revision, "stale update of {name}");
                    entry.1 = self.revision;
                    entry.2 = status.clone();
                }
                Action::Delete { name, revision } => {
                    let entry = self.enactments.remove(name).unwrap();
                    assert_eq!(entry.1, *revision, "stale delete of {name}");
                }
            }
        }
        if let Some(status) = &plan.policy_status {
            self.policy_status = Some(status.clone());
        }
    }

    fn existing(&self) -> Vec<Existing<'_>> {
        self.enactments
            .iter()
            .map(|(name, (node, revision, status))| Existing {
                name,
                node,
                revision: *revision,
                status,
            })
            .collect()
    }

    /// An agent's write.
    fn agent(
        &mut self,
        name: &str,
        write: impl FnOnce(&mut NodeNetworkConfigurationEnactmentStatus),
    ) {
        self.revision += 1;
        let entry = self.enactments.get_mut(name).unwrap();
        entry.1 = self.revision;
        write(&mut entry.2);
    }

    fn phases(&self) -> Vec<(String, EnactmentPhase)> {
        self.enactments
            .iter()
            .map(|(name, (_, _, status))| (name.clone(), status.phase()))
            .collect()
    }

    fn count(&self, phase: EnactmentPhase) -> usize {
        self.phases().iter().filter(|(_, p)| *p == phase).count()
    }

    fn message(&self, type_: ConditionType) -> String {
        let conditions = &self.policy_status.as_ref().unwrap().conditions;
        let condition = find_condition(conditions, &type_).unwrap();
        assert_eq!(
            condition.status,
            nmstate_openapi::ConditionStatus::True,
            "{type_}"
        );
        condition.message.clone()
    }
}

fn spec(max_unavailable: Option<IntOrString>) -> NodeNetworkConfigurationPolicySpec {
    serde_json::from_value(json!({
        "nodeSelector": {"role": "worker"},
        "capture": {
            "gw": "routes.running.destination==\"0.0.0.0/0\"",
            "base": "interfaces.name==capture.gw.routes.running.0.next-hop-interface",
        },
        "desiredState": {"interfaces": [{
            "name": "br1", "type": "linux-bridge", "state": "up",
            "ipv4": "{{ capture.base.interfaces.0.ipv4 }}",
            "bridge": {"port": [{"name": "{{ capture.base.interfaces.0.name }}", "vlan": {}}]},
        }]},
        "maxUnavailable": max_unavailable,
    }))
    .unwrap()
}

fn step(
    store: &mut Store,
    world: &World,
    spec: &NodeNetworkConfigurationPolicySpec,
    generation: i64,
    now: i64,
) -> Plan {
    let status = store.policy_status.clone();
    let policy = Policy {
        name: "br1",
        generation,
        spec,
        status: status.as_ref(),
    };
    let plan = plan(
        &policy,
        &world.nodes(),
        &store.existing(),
        &at(now),
        RenderOptions::default(),
    );
    store.apply(&plan);
    plan
}

/// Every released enactment (in flight) finishes: `failing` nodes fail.
fn agents_finish(store: &mut Store, failing: &[&str], now: i64) {
    let released: Vec<String> = store
        .phases()
        .into_iter()
        .filter(|(_, phase)| *phase == EnactmentPhase::Progressing)
        .map(|(name, _)| name)
        .collect();
    for name in released {
        let fail = failing
            .iter()
            .any(|node| name.starts_with(&format!("{node}.")));
        store.agent(&name, |status| {
            if fail {
                set_enactment_failed_to_configure(&mut status.conditions, "boom", &at(now));
            } else {
                set_enactment_success(&mut status.conditions, ENACTMENT_SUCCESS_MESSAGE, &at(now));
            }
        });
    }
}

#[test]
fn renders_each_node_from_its_own_state() {
    let world = World::new(3);
    let mut store = Store::default();
    step(&mut store, &world, &spec(None), 1, 0);
    for (i, (_, _, status)) in store.enactments.values().enumerate() {
        let desired = status.desired_state.as_ref().unwrap().as_value();
        let bridge = &desired["interfaces"][0];
        assert_eq!(bridge["bridge"]["port"][0]["name"], "eth0");
        assert_eq!(
            bridge["ipv4"]["address"][0]["ip"],
            format!("192.0.2.{}", i + 10)
        );
        assert_eq!(status.policy_generation, Some(1));
        assert_eq!(
            status
                .desired_state_meta_info
                .as_ref()
                .unwrap()
                .version
                .as_deref(),
            Some("1")
        );
        assert!(status.captured_states.contains_key("gw"));
    }
}

#[test]
fn rollout_waves() {
    // (maxUnavailable, nodes, wave sizes until all are released)
    type Case = (&'static str, Option<IntOrString>, usize, &'static [usize]);
    let cases: [Case; 5] = [
        ("default 50% of 5 rounds up to 3", None, 5, &[3, 2]),
        ("count", Some(3.into()), 10, &[3, 3, 3, 1]),
        ("percent rounds up", Some("25%".into()), 10, &[3, 3, 3, 1]),
        ("zero means one", Some(0.into()), 3, &[1, 1, 1]),
        ("more than nodes", Some(20.into()), 4, &[4]),
    ];
    for (name, max_unavailable, count, waves) in cases {
        let world = World::new(count);
        let spec = spec(max_unavailable);
        let mut store = Store::default();
        let mut seen = Vec::new();
        for round in 0..20 {
            step(&mut store, &world, &spec, 1, round);
            let in_flight = store.count(EnactmentPhase::Progressing);
            if in_flight == 0 {
                break;
            }
            seen.push(in_flight);
            agents_finish(&mut store, &[], round);
        }
        assert_eq!(seen, waves, "{name}");
        assert_eq!(store.count(EnactmentPhase::Available), count, "{name}");
        assert_eq!(
            store.message(ConditionType::Available),
            format!("{count}/{count} nodes successfully configured"),
            "{name}"
        );
    }
}

#[test]
fn release_and_pending_conditions() {
    let world = World::new(4);
    let mut store = Store::default();
    step(&mut store, &world, &spec(Some(1.into())), 1, 0);
    let (_, _, released) = &store.enactments["node-00.br1"];
    let progressing = find_condition(&released.conditions, &ConditionType::Progressing).unwrap();
    assert_eq!(progressing.message, ENACTMENT_RELEASED_MESSAGE);
    assert_eq!(
        progressing.reason,
        Some(ConditionReason::ConfigurationProgressing)
    );
    let (_, _, pending) = &store.enactments["node-01.br1"];
    let condition = find_condition(&pending.conditions, &ConditionType::Pending).unwrap();
    assert_eq!(
        condition.reason,
        Some(ConditionReason::MaxUnavailableLimitReached)
    );
    assert_eq!(pending.phase(), EnactmentPhase::Pending);
    assert_eq!(
        store.message(ConditionType::Progressing),
        "Policy is progressing 0/4 nodes finished, 3 pending"
    );
    let status = store.policy_status.as_ref().unwrap();
    assert_eq!(
        (
            status.matching_nodes,
            status.progressing_nodes,
            status.pending_nodes
        ),
        (Some(4), Some(1), Some(3))
    );
}

#[test]
fn settled_policy_writes_nothing() {
    let world = World::new(3);
    let mut store = Store::default();
    let spec = spec(None);
    for round in 0..5 {
        step(&mut store, &world, &spec, 1, round);
        agents_finish(&mut store, &[], round);
    }
    let plan = step(&mut store, &world, &spec, 1, 100);
    assert_eq!(plan.actions, vec![]);
    assert_eq!(plan.policy_status, None);
}

#[test]
fn failures_abort_the_rest() {
    // (name, maxUnavailable, failing nodes, expected failed, aborted, available)
    type Case = (
        &'static str,
        i32,
        &'static [&'static str],
        usize,
        usize,
        usize,
    );
    let cases: [Case; 3] = [
        ("two failures reach 2", 2, &["node-00", "node-01"], 2, 8, 0),
        ("one failure under 3", 3, &["node-01"], 1, 0, 9),
        (
            "three failures in the first wave of 3",
            3,
            &["node-00", "node-01", "node-02"],
            3,
            7,
            0,
        ),
    ];
    for (name, max_unavailable, failing, failed, aborted, available) in cases {
        let world = World::new(10);
        let spec = spec(Some(max_unavailable.into()));
        let mut store = Store::default();
        for round in 0..20 {
            step(&mut store, &world, &spec, 1, round);
            agents_finish(&mut store, failing, round);
        }
        assert_eq!(store.count(EnactmentPhase::Failed), failed, "{name}");
        assert_eq!(store.count(EnactmentPhase::Aborted), aborted, "{name}");
        assert_eq!(store.count(EnactmentPhase::Available), available, "{name}");
        let mut expected = format!("{failed}/10 nodes failed to configure");
        if aborted > 0 {
            expected.push_str(&format!(", {aborted} nodes aborted configuration"));
        }
        assert_eq!(store.message(ConditionType::Degraded), expected, "{name}");
    }
}

#[test]
fn retrying_stays_in_flight() {
    let world = World::new(4);
    let spec = spec(Some(1.into()));
    let mut store = Store::default();
    step(&mut store, &world, &spec, 1, 0);
    store.agent("node-00.br1", |status| {
        set_enactment_retrying(&mut status.conditions, "Retrying 1/5", &at(1));
    });
    step(&mut store, &world, &spec, 1, 1);
    assert_eq!(store.count(EnactmentPhase::Progressing), 1);
    assert_eq!(store.count(EnactmentPhase::Pending), 3);
}

#[test]
fn not_ready_nodes_wait_and_are_counted_apart() {
    let mut world = World::new(4);
    world.alive[1] = false;
    let spec = spec(Some(4.into()));
    let mut store = Store::default();
    step(&mut store, &world, &spec, 1, 0);
    assert_eq!(store.count(EnactmentPhase::Progressing), 3);
    assert_eq!(
        store.enactments["node-01.br1"].2.phase(),
        EnactmentPhase::Pending
    );
    agents_finish(&mut store, &[], 1);
    step(&mut store, &world, &spec, 1, 2);
    assert_eq!(
        store.message(ConditionType::Available),
        "3/4 nodes successfully configured, 1 nodes ignored due to NotReady state"
    );
    // The node comes back: it gets its turn.
    world.alive[1] = true;
    step(&mut store, &world, &spec, 1, 3);
    assert_eq!(
        store.enactments["node-01.br1"].2.phase(),
        EnactmentPhase::Progressing
    );
    assert_eq!(
        store.message(ConditionType::Progressing),
        "Policy is progressing 3/4 nodes finished"
    );
}

#[test]
fn render_failure_fails_only_that_node() {
    let mut world = World::new(3);
    // No default route on node-01: the capture finds nothing to template.
    world.states[1] =
        text(&json!({"interfaces": [{"name": "eth1", "type": "ethernet", "state": "up"}]}));
    let mut store = Store::default();
    step(&mut store, &world, &spec(Some(3.into())), 1, 0);
    let (_, _, failed) = &store.enactments["node-01.br1"];
    assert_eq!(failed.phase(), EnactmentPhase::Failed);
    let failing = find_condition(&failed.conditions, &ConditionType::Failing).unwrap();
    assert!(
        failing
            .message
            .starts_with("failure generating desiredState and capturedStates: "),
        "{}",
        failing.message
    );
    assert_eq!(store.count(EnactmentPhase::Progressing), 2);
}

#[test]
fn update_mid_rollout_waits_for_in_flight() {
    let world = World::new(4);
    let mut store = Store::default();
    let spec1 = spec(Some(2.into()));
    step(&mut store, &world, &spec1, 1, 0);
    assert_eq!(store.count(EnactmentPhase::Progressing), 2);
    // Generation 2 arrives while node-00 and node-01 apply generation 1.
    let mut spec2 = spec1.clone();
    spec2.desired_state = Some(State(json!({"interfaces": [
        {"name": "eth1", "type": "ethernet", "state": "up", "mtu": 9000}
    ]})));
    spec2.capture.clear();
    step(&mut store, &world, &spec2, 2, 1);
    for node in ["node-00", "node-01"] {
        let status = &store.enactments[&format!("{node}.br1")].2;
        assert_eq!(status.policy_generation, Some(1), "{node} keeps its apply");
        assert_eq!(status.phase(), EnactmentPhase::Progressing);
    }
    for node in ["node-02", "node-03"] {
        let status = &store.enactments[&format!("{node}.br1")].2;
        assert_eq!(status.policy_generation, Some(2), "{node}");
        assert_eq!(
            status.phase(),
            EnactmentPhase::Pending,
            "{node}: no free slot"
        );
    }
    // The old applies finish; then generation 2 rolls out everywhere.
    for round in 2..10 {
        agents_finish(&mut store, &[], round);
        step(&mut store, &world, &spec2, 2, round);
    }
    for (_, _, status) in store.enactments.values() {
        assert_eq!(status.policy_generation, Some(2));
        assert_eq!(status.phase(), EnactmentPhase::Available);
        assert_eq!(
            status.desired_state.as_ref().unwrap().as_value()["interfaces"][0]["mtu"],
            9000
        );
    }
    assert_eq!(
        store.policy_status.as_ref().unwrap().observed_generation,
        Some(2)
    );
}

#[test]
fn selection_changes() {
    let mut world = World::new(3);
    let spec = spec(None);
    let mut store = Store::default();
    step(&mut store, &world, &spec, 1, 0);
    assert_eq!(store.enactments.len(), 3);
    // node-02 loses the label: its enactment goes.
    world.labels[2].remove("role");
    step(&mut store, &world, &spec, 1, 1);
    assert_eq!(
        store.enactments.keys().cloned().collect::<Vec<_>>(),
        ["node-00.br1", "node-01.br1"]
    );
    // No node matches.
    for labels in &mut world.labels {
        labels.remove("role");
    }
    step(&mut store, &world, &spec, 1, 2);
    assert!(store.enactments.is_empty());
    assert_eq!(
        store.message(ConditionType::Ignored),
        "Policy does not match any node"
    );
}

/// The phase of each enactment, by node, in node order.
fn phases_by_node(store: &Store) -> Vec<EnactmentPhase> {
    store.phases().into_iter().map(|(_, phase)| phase).collect()
}

/// The policy's one true condition: its type and message.
fn policy_condition(store: &Store) -> (ConditionType, String) {
    let conditions = &store.policy_status.as_ref().unwrap().conditions;
    let true_ones: Vec<_> = conditions.iter().filter(|c| c.is_true()).collect();
    assert_eq!(true_ones.len(), 1, "{conditions:?}");
    (true_ones[0].type_.clone(), true_ones[0].message.clone())
}

#[test]
fn a_node_that_goes_dark_mid_apply_keeps_its_slot() {
    use EnactmentPhase::{Aborted, Failed, Pending, Progressing};
    type Event = fn(&mut World, &mut Store);
    // (what happens, then: phases of node-00..02, the policy's condition)
    let steps: [(&str, Event, [EnactmentPhase; 3], ConditionType, &str); 6] = [
        (
            "first wave",
            |_, _| {},
            [Progressing, Pending, Pending],
            ConditionType::Progressing,
            "Policy is progressing 0/3 nodes finished, 2 pending",
        ),
        (
            "node-00 goes dark in the middle of its apply: nothing else released",
            |world, _| world.alive[0] = false,
            [Progressing, Pending, Pending],
            ConditionType::Progressing,
            "Policy is progressing 0/3 nodes finished, 2 pending, 1 in flight on NotReady nodes",
        ),
        (
            "node-01 goes dark too, before its release: ignored, still not released",
            |world, _| world.alive[1] = false,
            [Progressing, Pending, Pending],
            ConditionType::Progressing,
            "Policy is progressing 0/2 nodes finished, 1 pending, 1 in flight on NotReady nodes, 1 nodes ignored due to NotReady state",
        ),
        (
            "all nodes dark: still in flight, never Available",
            |world, _| world.alive[2] = false,
            [Progressing, Pending, Pending],
            ConditionType::Progressing,
            "Policy is progressing 0/1 nodes finished, 1 in flight on NotReady nodes, 2 nodes ignored due to NotReady state",
        ),
        (
            "node-00 comes back and reports the failure: the slot ends, the rest aborts",
            |world, store| {
                world.alive = vec![true; 3];
                store.agent("node-00.br1", |status| {
                    set_enactment_failed_to_configure(&mut status.conditions, "probe", &at(9));
                });
            },
            [Failed, Aborted, Aborted],
            ConditionType::Degraded,
            "1/3 nodes failed to configure, 2 nodes aborted configuration",
        ),
        (
            "settled",
            |_, _| {},
            [Failed, Aborted, Aborted],
            ConditionType::Degraded,
            "1/3 nodes failed to configure, 2 nodes aborted configuration",
        ),
    ];
    let mut world = World::new(3);
    let spec = spec(Some(1.into()));
    let mut store = Store::default();
    for (round, (what, event, phases, type_, message)) in steps.into_iter().enumerate() {
        event(&mut world, &mut store);
        step(&mut store, &world, &spec, 1, i64::try_from(round).unwrap());
        assert_eq!(phases_by_node(&store), phases, "{what}");
        assert_eq!(
            policy_condition(&store),
            (type_, message.to_owned()),
            "{what}"
        );
    }
}

#[test]
fn an_operator_ends_a_dark_nodes_slot_by_deleting_its_enactment() {
    let mut world = World::new(2);
    let spec = spec(Some(1.into()));
    let mut store = Store::default();
    step(&mut store, &world, &spec, 1, 0);
    world.alive[0] = false;
    step(&mut store, &world, &spec, 1, 1);
    assert_eq!(
        phases_by_node(&store),
        [EnactmentPhase::Progressing, EnactmentPhase::Pending]
    );
    // The operator gives node-00 up: its enactment is deleted.
    store.enactments.remove("node-00.br1");
    step(&mut store, &world, &spec, 1, 2);
    assert_eq!(
        phases_by_node(&store),
        [EnactmentPhase::Pending, EnactmentPhase::Progressing],
        "node-00's enactment comes back unreleased; node-01 takes the slot"
    );
    agents_finish(&mut store, &[], 3);
    step(&mut store, &world, &spec, 1, 4);
    assert_eq!(
        policy_condition(&store),
        (
            ConditionType::Available,
            "1/2 nodes successfully configured, 1 nodes ignored due to NotReady state".to_owned()
        )
    );
    // Deleting the dark node's NodeNetworkState deletes its enactment.
    world.names.truncate(1);
    world.names[0] = "node-01".to_owned();
    world.states.swap(0, 1);
    world.labels.truncate(1);
    world.alive = vec![true];
    step(&mut store, &world, &spec, 1, 5);
    assert_eq!(
        store.enactments.keys().cloned().collect::<Vec<_>>(),
        ["node-01.br1"]
    );
    assert_eq!(
        policy_condition(&store),
        (
            ConditionType::Available,
            "1/1 nodes successfully configured".to_owned()
        )
    );
}

#[test]
fn a_policy_whose_every_node_is_not_ready_is_not_available() {
    let mut world = World::new(2);
    world.alive = vec![false, false];
    let mut store = Store::default();
    step(&mut store, &world, &spec(None), 1, 0);
    assert_eq!(
        phases_by_node(&store),
        [EnactmentPhase::Pending, EnactmentPhase::Pending]
    );
    assert_eq!(
        policy_condition(&store),
        (
            ConditionType::Progressing,
            "Policy is progressing 0/0 nodes finished, 2 nodes ignored due to NotReady state"
                .to_owned()
        )
    );
    let status = store.policy_status.as_ref().unwrap();
    assert_eq!(
        (status.available_nodes, status.progressing_nodes),
        (Some(0), Some(0))
    );
}
