//! Prometheus metrics, served at `/metrics`: requests by verb, resource and
//! code with their latency, open watches, and store operation latency (via
//! [`MeteredStore`], a decorator over any backend).
//!
//! Metrics are registered on a registry handed in at construction, so tests
//! and embedders can keep their own.

use std::{
    fmt,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::storage::{
    KeyValue, ListOptions, ListResult, PreviousValues, Result, Revision, SharedStore, Store, Watch,
};

/// Labels of one request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `get`, `list`, `watch`, `create`, ... or `discovery`/`openapi`.
    pub verb: String,
    /// The resource (plural), with `/status` for the subresource; empty for
    /// non-resource paths.
    pub resource: String,
    /// The HTTP status code.
    pub code: String,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    verb: String,
    resource: String,
}

/// Labels of an open-watch gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchLabels {
    resource: String,
}

/// Labels of a store operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: &'static str,
    result: &'static str,
}

/// The server's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<LatencyLabels, Histogram>,
    watches: Family<WatchLabels, Gauge>,
    store_duration: Family<StoreLabels, Histogram>,
    controller_leader: Gauge,
    controller_queue: Gauge,
    controller_reconciles: Counter,
    controller_writes: Family<ResultLabels, Counter>,
    rejected: Family<RejectedLabels, Counter>,
    state: LateCollector,
}

/// Labels of a request refused for want of room in its priority level.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectedLabels {
    priority_level: &'static str,
    reason: &'static str,
}

/// A collector given after the metrics are made: the gauges of the
/// cluster's state read the caches, which read the store these metrics
/// measure. Encodes nothing until set.
#[derive(Clone, Debug, Default)]
struct LateCollector(Arc<OnceLock<Box<dyn Collector>>>);

impl Collector for LateCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        match self.0.get() {
            Some(collector) => collector.encode(encoder),
            None => Ok(()),
        }
    }
}

/// Labels of a controller write.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_buckets() -> Histogram {
    // 1 ms to ~30 s, as apiserver request latencies spread.
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

impl Metrics {
    /// Registers the metrics on `registry`, which is then kept for
    /// encoding.
    pub fn new(mut registry: Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "nmstate_apiserver_requests",
            "API requests by verb, resource and HTTP code",
            requests.clone(),
        );
        let request_duration = Family::<LatencyLabels, Histogram>::new_with_constructor(
            latency_buckets as fn() -> Histogram,
        );
        registry.register(
            "nmstate_apiserver_request_duration_seconds",
            "API request latency (watches excluded)",
            request_duration.clone(),
        );
        let watches = Family::<WatchLabels, Gauge>::default();
        registry.register(
            "nmstate_apiserver_watches",
            "Open watches by resource",
            watches.clone(),
        );
        let store_duration = Family::<StoreLabels, Histogram>::new_with_constructor(
            latency_buckets as fn() -> Histogram,
        );
        registry.register(
            "nmstate_apiserver_storage_operation_duration_seconds",
            "Store operation latency by operation and result",
            store_duration.clone(),
        );
        let controller_leader = Gauge::default();
        registry.register(
            "nmstate_controller_leader",
            "1 while this replica runs the policy controller",
            controller_leader.clone(),
        );
        let controller_queue = Gauge::default();
        registry.register(
            "nmstate_controller_queue",
            "Policies in the controller's last batch",
            controller_queue.clone(),
        );
        let controller_reconciles = Counter::default();
        registry.register(
            "nmstate_controller_reconciles",
            "Policy reconciles (one policy against one cache snapshot)",
            controller_reconciles.clone(),
        );
        let controller_writes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "nmstate_controller_writes",
            "Controller writes to the store, by result (lost: a race retried on fresh data)",
            controller_writes.clone(),
        );
        let rejected = Family::<RejectedLabels, Counter>::default();
        registry.register(
            "nmstate_apiserver_flowcontrol_rejected_requests",
            "Requests answered 429 by priority level and reason (queue-full, time-out), as kube-apiserver's apiserver_flowcontrol_rejected_requests_total",
            rejected.clone(),
        );
        let state = LateCollector::default();
        registry.register_collector(Box::new(state.clone()));
        Self {
            registry: Arc::new(registry),
            requests,
            request_duration,
            watches,
            store_duration,
            controller_leader,
            controller_queue,
            controller_reconciles,
            controller_writes,
            rejected,
            state,
        }
    }

    /// Adds the gauges of the cluster's state (`cache::gauges`); only the
    /// first call counts.
    pub fn set_state_collector(&self, collector: impl Collector) {
        if self.state.0.set(Box::new(collector)).is_err() {
            tracing::warn!("the state collector was already set");
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            tracing::error!("encoding metrics failed");
        }
        text
    }

    /// Whether this replica leads the policy controller.
    pub fn set_controller_leader(&self, leading: bool) {
        self.controller_leader.set(i64::from(leading));
    }

    /// How many policies the controller's current batch holds.
    pub fn set_controller_queue(&self, policies: usize) {
        self.controller_queue
            .set(i64::try_from(policies).unwrap_or(i64::MAX));
    }

    /// Counts one policy reconcile.
    pub fn controller_reconciled(&self) {
        self.controller_reconciles.inc();
    }

    /// Counts one controller write.
    pub fn controller_wrote(&self, ok: bool) {
        self.controller_writes
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "lost" },
            })
            .inc();
    }

    /// Counts one request refused (429) in `priority_level` for `reason`.
    pub fn request_rejected(&self, priority_level: &'static str, reason: &'static str) {
        self.rejected
            .get_or_create(&RejectedLabels {
                priority_level,
                reason,
            })
            .inc();
    }

    /// Counts one finished request and, unless it was a watch, its latency.
    pub fn observe_request(&self, labels: RequestLabels, elapsed: Duration) {
        if labels.verb != "watch" {
            self.request_duration
                .get_or_create(&LatencyLabels {
                    verb: labels.verb.clone(),
                    resource: labels.resource.clone(),
                })
                .observe(elapsed.as_secs_f64());
        }
        self.requests.get_or_create(&labels).inc();
    }

    /// Counts an open watch until the guard is dropped.
    pub fn watch_opened(&self, resource: &str) -> WatchGuard {
        let gauge = self
            .watches
            .get_or_create(&WatchLabels {
                resource: resource.to_string(),
            })
            .clone();
        gauge.inc();
        WatchGuard { gauge }
    }
}

/// Decrements the open-watch gauge when dropped.
#[derive(Debug)]
pub struct WatchGuard {
    gauge: Gauge,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// A store that times every operation into [`Metrics`].
#[derive(Debug)]
pub struct MeteredStore {
    inner: SharedStore,
    metrics: Metrics,
}

impl MeteredStore {
    /// Wraps `inner`.
    pub fn new(inner: SharedStore, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }

    fn observe<T>(&self, operation: &'static str, started: Instant, result: &Result<T>) {
        let labels = StoreLabels {
            operation,
            result: if result.is_ok() { "ok" } else { "error" },
        };
        self.metrics
            .store_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let started = Instant::now();
        let result = self.inner.get(key).await;
        self.observe("get", started, &result);
        result
    }

    async fn list(&self, options: ListOptions) -> Result<ListResult> {
        let started = Instant::now();
        let result = self.inner.list(options).await;
        self.observe("list", started, &result);
        result
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let started = Instant::now();
        let result = self.inner.create(key, value).await;
        self.observe("create", started, &result);
        result
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: Revision,
    ) -> Result<KeyValue> {
        let started = Instant::now();
        let result = self.inner.update(key, value, expected_revision).await;
        self.observe("update", started, &result);
        result
    }

    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<Revision>,
    ) -> Result<(KeyValue, Revision)> {
        let started = Instant::now();
        let result = self.inner.delete(key, expected_revision).await;
        self.observe("delete", started, &result);
        result
    }

    async fn current_revision(&self) -> Result<Revision> {
        let started = Instant::now();
        let result = self.inner.current_revision().await;
        self.observe("current_revision", started, &result);
        result
    }

    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
        previous: PreviousValues,
    ) -> Result<Watch> {
        let started = Instant::now();
        let result = self.inner.watch(prefix, after, previous).await;
        self.observe("watch", started, &result);
        result
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.compact(revision).await;
        self.observe("compact", started, &result);
        result
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }

    async fn elect(&self, election: &str, identity: &str) -> Result<crate::storage::Leadership> {
        self.inner.elect(election, identity).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_watches_show_in_the_exposition() {
        let metrics = Metrics::new(Registry::default());
        metrics.observe_request(
            RequestLabels {
                verb: "get".into(),
                resource: "nodenetworkstates".into(),
                code: "200".into(),
            },
            Duration::from_millis(3),
        );
        let guard = metrics.watch_opened("nodenetworkconfigurationenactments");
        let text = metrics.encode();
        assert!(
            text.contains(r#"nmstate_apiserver_requests_total{verb="get",resource="nodenetworkstates",code="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"nmstate_apiserver_watches{resource="nodenetworkconfigurationenactments"} 1"#
            ),
            "{text}"
        );
        drop(guard);
        assert!(metrics.encode().contains(
            r#"nmstate_apiserver_watches{resource="nodenetworkconfigurationenactments"} 0"#
        ));
    }
}
