//! The agent's Prometheus metrics, served at `/metrics` by [`crate::health`]:
//! upstream's gauges for this node (`kubernetes_nmstate_network_interfaces`
//! by type, `kubernetes_nmstate_routes` by IP stack and static/dynamic),
//! applies by result with their duration, and the NodeNetworkState writes
//! the reporter made (an idle node makes none).
//!
//! Metrics are registered on a registry created here and handed to the
//! parts that record them.

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

use nmstate_openapi::State;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use serde_json::Value;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InterfaceLabels {
    node: String,
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    node: String,
    ip_stack: String,
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The agent's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    node: String,
    interfaces: Family<InterfaceLabels, Gauge>,
    routes: Family<RouteLabels, Gauge>,
    applies: Family<ResultLabels, Counter>,
    apply_duration: Histogram,
    state_writes: Counter,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics of node `node` on a fresh registry.
    pub fn new(node: &str) -> Self {
        let mut registry = Registry::default();
        let interfaces = Family::<InterfaceLabels, Gauge>::default();
        registry.register(
            "kubernetes_nmstate_network_interfaces",
            "Number of network interfaces labeled by its type",
            interfaces.clone(),
        );
        let routes = Family::<RouteLabels, Gauge>::default();
        registry.register(
            "kubernetes_nmstate_routes",
            "Number of network routes labeled by node, IP stack and type (static/dynamic)",
            routes.clone(),
        );
        let applies = Family::<ResultLabels, Counter>::default();
        registry.register(
            "nmstate_agent_applies",
            "Enactment apply attempts by result (success, failure)",
            applies.clone(),
        );
        // Applies take from a few milliseconds (hollow) to minutes (probes
        // timing out).
        let apply_duration = Histogram::new([
            0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
        ]);
        registry.register(
            "nmstate_agent_apply_duration_seconds",
            "Duration of one apply attempt: apply, probes, commit or rollback",
            apply_duration.clone(),
        );
        let state_writes = Counter::default();
        registry.register(
            "nmstate_agent_state_writes",
            "Writes of this node's NodeNetworkState (create, status, labels)",
            state_writes.clone(),
        );
        Self {
            registry: Arc::new(registry),
            node: node.to_owned(),
            interfaces,
            routes,
            applies,
            apply_duration,
            state_writes,
        }
    }

    /// Updates the gauges from the published (filtered) state.
    pub fn observe_state(&self, state: &State) {
        self.interfaces.clear();
        for (type_, count) in interface_counts(state) {
            self.interfaces
                .get_or_create(&InterfaceLabels {
                    node: self.node.clone(),
                    r#type: type_,
                })
                .set(count);
        }
        self.routes.clear();
        for ((ip_stack, type_), count) in route_counts(state) {
            self.routes
                .get_or_create(&RouteLabels {
                    node: self.node.clone(),
                    ip_stack: ip_stack.to_owned(),
                    r#type: type_.to_owned(),
                })
                .set(count);
        }
    }

    /// Records one apply attempt.
    pub fn observe_apply(&self, success: bool, duration: Duration) {
        let result = if success { "success" } else { "failure" };
        self.applies.get_or_create(&ResultLabels { result }).inc();
        self.apply_duration.observe(duration.as_secs_f64());
    }

    /// Records one NodeNetworkState write.
    pub fn observe_state_write(&self) {
        self.state_writes.inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            tracing::error!("encoding metrics failed");
        }
        text
    }
}

/// Interfaces by `type`.
fn interface_counts(state: &State) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for interface in state.0["interfaces"].as_array().into_iter().flatten() {
        let type_ = interface["type"].as_str().unwrap_or("unknown").to_owned();
        *counts.entry(type_).or_insert(0) += 1;
    }
    counts
}

/// Running routes by IP stack and `static` (also configured) or `dynamic`.
fn route_counts(state: &State) -> BTreeMap<(&'static str, &'static str), i64> {
    let config: Vec<&Value> = state.0["routes"]["config"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let mut counts = BTreeMap::new();
    for route in state.0["routes"]["running"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let destination = route["destination"].as_str().unwrap_or_default();
        let ip_stack = if destination.contains(':') {
            "ipv6"
        } else {
            "ipv4"
        };
        let type_ = if config.iter().any(|c| {
            c["destination"] == route["destination"]
                && c["next-hop-interface"] == route["next-hop-interface"]
        }) {
            "static"
        } else {
            "dynamic"
        };
        *counts.entry((ip_stack, type_)).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn gauges_follow_the_state() {
        let metrics = Metrics::new("node-1");
        metrics.observe_state(&State(json!({
            "interfaces": [
                {"name": "eth0", "type": "ethernet"},
                {"name": "eth1", "type": "ethernet"},
                {"name": "br1", "type": "linux-bridge"},
            ],
            "routes": {
                "config": [{"destination": "0.0.0.0/0", "next-hop-interface": "eth0"}],
                "running": [
                    {"destination": "0.0.0.0/0", "next-hop-interface": "eth0"},
                    {"destination": "fe80::/64", "next-hop-interface": "eth0"},
                ],
            },
        })));
        metrics.observe_apply(true, Duration::from_millis(20));
        let text = metrics.encode();
        for line in [
            r#"kubernetes_nmstate_network_interfaces{node="node-1",type="ethernet"} 2"#,
            r#"kubernetes_nmstate_network_interfaces{node="node-1",type="linux-bridge"} 1"#,
            r#"kubernetes_nmstate_routes{node="node-1",ip_stack="ipv4",type="static"} 1"#,
            r#"kubernetes_nmstate_routes{node="node-1",ip_stack="ipv6",type="dynamic"} 1"#,
            r#"nmstate_agent_applies_total{result="success"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // A bridge removed disappears from the gauge.
        metrics.observe_state(&State(
            json!({"interfaces": [{"name": "eth0", "type": "ethernet"}]}),
        ));
        assert!(!metrics.encode().contains("linux-bridge"));
    }
}
