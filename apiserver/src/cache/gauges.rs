//! The cluster-wide gauges of upstream kubernetes-nmstate, read from the
//! watch caches at each scrape, so that upstream's dashboards and alerts
//! keep working:
//!
//! - `kubernetes_nmstate_policies_status{status}`: policies by their active
//!   condition (`Available`, `Degraded`, `Progressing`);
//! - `kubernetes_nmstate_enactments_status{node,status}`: enactments by node
//!   and active condition (`Available`, `Failing`, `Progressing`,
//!   `Pending`, `Aborted`), every status of a node that has enactments;
//! - `kubernetes_nmstate_features_applied{name}`: 1 for each nmstate feature
//!   an enactment's rendered state uses (`status.features`).
//!
//! The active condition is the first with status `True`, as upstream reads
//! it; an object without one is not counted. Each replica reports the whole
//! cluster, as kube-state-metrics does: aggregate with `max`, not `sum`.
//!
//! [`count`] is the decision, a pure function of the objects' summaries;
//! [`ClusterGauges`] is the collector that feeds it the caches' snapshots.

use std::collections::{BTreeMap, BTreeSet};

use nmstate_openapi::{ResourceKind, enactment::ENACTMENT_NODE_LABEL};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, gauge::ConstGauge},
};
use serde_json::Value;

use super::{CacheReader, Caches};

/// Policies' active conditions, in upstream's order.
const POLICY_STATUSES: [&str; 3] = ["Available", "Degraded", "Progressing"];
/// Enactments' active conditions, in upstream's order.
const ENACTMENT_STATUSES: [&str; 5] = ["Failing", "Available", "Progressing", "Pending", "Aborted"];

/// What the gauges say about one snapshot of the cluster.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Policies by active condition; every status present, 0 included.
    pub policies: BTreeMap<&'static str, i64>,
    /// Enactments by node, then active condition; every status of a node
    /// with enactments present, 0 included.
    pub enactments: BTreeMap<String, BTreeMap<&'static str, i64>>,
    /// The features some enactment uses.
    pub features: BTreeSet<String>,
}

/// The active condition of an object's summary: the first condition whose
/// status is `True`, if it is one of `known`.
fn active(summary: &Value, known: &[&'static str]) -> Option<&'static str> {
    let conditions = summary["status"]["conditions"].as_array()?;
    let active = conditions
        .iter()
        .find(|condition| condition["status"] == "True")?;
    let kind = active["type"].as_str()?;
    known.iter().copied().find(|known| *known == kind)
}

/// Counts policies and enactments: `enactments` yields each enactment's
/// node (its `nmstate.io/node` label) with its summary.
pub fn count<'a>(
    policies: impl IntoIterator<Item = &'a Value>,
    enactments: impl IntoIterator<Item = (Option<&'a str>, &'a Value)>,
) -> Counts {
    let mut counts = Counts {
        policies: POLICY_STATUSES.iter().map(|status| (*status, 0)).collect(),
        ..Counts::default()
    };
    for policy in policies {
        if let Some(status) = active(policy, &POLICY_STATUSES) {
            *counts.policies.entry(status).or_default() += 1;
        }
    }
    for (node, enactment) in enactments {
        let features = enactment["status"]["features"].as_array();
        counts.features.extend(
            features
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned),
        );
        // Upstream skips enactments without a node label.
        let Some(node) = node.filter(|node| !node.is_empty()) else {
            continue;
        };
        let by_status = counts.enactments.entry(node.to_owned()).or_insert_with(|| {
            ENACTMENT_STATUSES
                .iter()
                .map(|status| (*status, 0))
                .collect()
        });
        if let Some(status) = active(enactment, &ENACTMENT_STATUSES) {
            *by_status.entry(status).or_default() += 1;
        }
    }
    counts
}

/// The collector of the cluster-wide gauges, over the server's caches.
#[derive(Debug)]
pub struct ClusterGauges {
    policies: CacheReader,
    enactments: CacheReader,
}

impl ClusterGauges {
    /// Gauges over the policies and enactments of `caches`.
    pub fn new(caches: &Caches) -> Self {
        Self {
            policies: caches
                .get(ResourceKind::NodeNetworkConfigurationPolicy)
                .reader(),
            enactments: caches
                .get(ResourceKind::NodeNetworkConfigurationEnactment)
                .reader(),
        }
    }

    fn counts(&self) -> Counts {
        let (_, policies) = self.policies.snapshot();
        let (_, enactments) = self.enactments.snapshot();
        count(
            policies.iter().map(|policy| policy.summary()),
            enactments
                .iter()
                .map(|enactment| (enactment.label(ENACTMENT_NODE_LABEL), enactment.summary())),
        )
    }
}

impl Collector for ClusterGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counts = self.counts();
        let mut policies = encoder.encode_descriptor(
            "kubernetes_nmstate_policies_status",
            "Number of NodeNetworkConfigurationPolicies labeled by their status condition",
            None,
            MetricType::Gauge,
        )?;
        for (status, count) in &counts.policies {
            ConstGauge::new(*count).encode(policies.encode_family(&[("status", *status)])?)?;
        }
        let mut enactments = encoder.encode_descriptor(
            "kubernetes_nmstate_enactments_status",
            "Number of NodeNetworkConfigurationEnactments labeled by node and status condition",
            None,
            MetricType::Gauge,
        )?;
        for (node, by_status) in &counts.enactments {
            for (status, count) in by_status {
                ConstGauge::new(*count).encode(
                    enactments.encode_family(&[("node", node.as_str()), ("status", *status)])?,
                )?;
            }
        }
        let mut features = encoder.encode_descriptor(
            "kubernetes_nmstate_features_applied",
            "Number of nmstate features applied labeled by its name",
            None,
            MetricType::Gauge,
        )?;
        for name in &counts.features {
            ConstGauge::new(1_i64).encode(features.encode_family(&[("name", name.as_str())])?)?;
        }
        Ok(())
    }
}

// The decision is tested on summaries; the collector's encoding by the
// server's `/metrics` tests.
#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn with_conditions(conditions: &[(&str, &str)]) -> Value {
        let conditions: Vec<Value> = conditions
            .iter()
            .map(|(kind, status)| json!({"type": kind, "status": status}))
            .collect();
        json!({"status": {"conditions": conditions}})
    }

    #[test]
    fn policies_count_by_their_first_true_condition() {
        let policies = [
            with_conditions(&[("Available", "True"), ("Degraded", "False")]),
            with_conditions(&[("Available", "False"), ("Degraded", "True")]),
            with_conditions(&[("Progressing", "True"), ("Available", "True")]),
            // Nothing true yet, or a type upstream does not know: not counted.
            with_conditions(&[("Available", "Unknown")]),
            with_conditions(&[("Mystery", "True")]),
            json!({}),
        ];
        let counts = count(&policies, []);
        assert_eq!(
            counts.policies,
            BTreeMap::from([("Available", 1), ("Degraded", 1), ("Progressing", 1)])
        );
    }

    #[test]
    fn no_policy_still_reports_every_status_at_zero() {
        let counts = count([], []);
        assert_eq!(
            counts.policies,
            BTreeMap::from([("Available", 0), ("Degraded", 0), ("Progressing", 0)])
        );
        assert!(counts.enactments.is_empty());
    }

    #[test]
    fn enactments_count_by_node_and_status() {
        let failing = with_conditions(&[("Failing", "True")]);
        let available = with_conditions(&[("Available", "True")]);
        let unknown = with_conditions(&[("Available", "Unknown")]);
        let enactments = [
            (Some("a"), &failing),
            (Some("a"), &available),
            (Some("a"), &available),
            (Some("b"), &unknown),
            // No node label: skipped, as upstream does.
            (None, &failing),
            (Some(""), &failing),
        ];
        let counts = count([], enactments);
        let zero = |changes: &[(&'static str, i64)]| {
            let mut all: BTreeMap<&'static str, i64> = ENACTMENT_STATUSES
                .iter()
                .map(|status| (*status, 0))
                .collect();
            all.extend(changes.iter().copied());
            all
        };
        assert_eq!(
            counts.enactments,
            BTreeMap::from([
                ("a".to_owned(), zero(&[("Failing", 1), ("Available", 2)])),
                ("b".to_owned(), zero(&[])),
            ])
        );
    }

    #[test]
    fn features_are_the_union_of_the_enactments_features() {
        let lldp = json!({"status": {"features": ["lldp", "dhcpv4-custom-hostname"]}});
        let more = json!({"status": {"features": ["lldp", "ovs-dpdk"]}});
        let none = json!({"status": {}});
        let counts = count([], [(Some("a"), &lldp), (None, &more), (Some("b"), &none)]);
        assert_eq!(
            counts.features,
            BTreeSet::from(["dhcpv4-custom-hostname", "lldp", "ovs-dpdk"].map(str::to_owned))
        );
    }
}
