//! Which requests run at once: kube-apiserver's API priority and fairness,
//! reduced to this server's traffic.
//!
//! Every request but a health check or a watch belongs to a priority level
//! ([`classify`], from who sends it and what it asks) with its own
//! concurrency and its own queue. A request past its level's concurrency
//! waits in that level's queue (first come, first served) for at most
//! [`QUEUE_WAIT`]; only a full queue or a wait that long answers 429 with
//! `Retry-After`. So a burst is served late rather than refused, and the
//! clients' retries do not add to it.
//!
//! The levels keep the nodes' writes apart from everyone else's, and a
//! node's heartbeat (a PATCH of its NodeNetworkState's status, as the agent sends
//! it; kube-apiserver's `node-high` level serves the kubelet's leases) apart
//! from the nodes' bulk writes: 5 000 agents reporting their states, or a
//! rollout's status writes, must not starve the heartbeats and make healthy
//! nodes look NotReady (the rollout guard then holds their slots, and the
//! rollout stops). Nor can users' writes starve the nodes, or the nodes
//! the users.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::Method;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::{UserInfo, authorize::node_of};

/// A request's priority level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// Not counted: health checks (which must answer while the server is
    /// busy) and watches (which last for minutes).
    Exempt,
    /// A node's heartbeat: a PATCH of its own NodeNetworkState's status.
    NodeHigh,
    /// A node's other writes: its state, its enactments' status.
    NodeWrites,
    /// Reads (GET, HEAD, OPTIONS), the nodes' too: a node's reads are the
    /// lists that (re)start its watches, which must not wait behind the
    /// nodes' writes.
    ReadOnly,
    /// Everyone else's writes.
    Mutating,
}

impl Level {
    /// The level's name in metrics, after kube-apiserver's levels where one
    /// matches.
    pub fn name(self) -> &'static str {
        match self {
            Level::Exempt => "exempt",
            Level::NodeHigh => "node-high",
            Level::NodeWrites => "node-writes",
            Level::ReadOnly => "readonly",
            Level::Mutating => "mutating",
        }
    }

    /// How many requests of the level run at once, and how many may wait.
    /// Reads and users' writes keep kube-apiserver's defaults
    /// (`--max-requests-inflight=400`, `--max-mutating-requests-inflight=200`);
    /// the nodes' writes come on top.
    pub fn limits(self) -> Limits {
        match self {
            Level::Exempt => Limits {
                concurrency: usize::MAX,
                queue: 0,
            },
            Level::NodeHigh => Limits {
                concurrency: 50,
                queue: 5_000,
            },
            Level::NodeWrites => Limits {
                concurrency: 200,
                queue: 5_000,
            },
            Level::ReadOnly => Limits {
                concurrency: MAX_READONLY_IN_FLIGHT,
                queue: 1_000,
            },
            Level::Mutating => Limits {
                concurrency: MAX_MUTATING_IN_FLIGHT,
                queue: 1_000,
            },
        }
    }
}

/// The levels that count their requests.
const COUNTED: [Level; 4] = [
    Level::NodeHigh,
    Level::NodeWrites,
    Level::ReadOnly,
    Level::Mutating,
];

/// Reads in flight at once (kube-apiserver's `--max-requests-inflight`).
pub const MAX_READONLY_IN_FLIGHT: usize = 400;
/// Users' writes in flight at once (kube-apiserver's
/// `--max-mutating-requests-inflight`).
pub const MAX_MUTATING_IN_FLIGHT: usize = 200;

/// The longest a request waits in its level's queue before it is answered
/// 429 (kube-apiserver's priority and fairness waits at most a quarter of
/// its 60 s request timeout).
pub const QUEUE_WAIT: Duration = Duration::from_secs(15);

/// A level's concurrency and queue length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Requests served at once.
    pub concurrency: usize,
    /// Requests waiting at most; one more is refused at once.
    pub queue: usize,
}

/// The priority level of a request by the authenticated `user` for
/// `method` on `path`; `watch` when it asks to watch. (Health checks are
/// answered before authentication, and never wait.)
pub fn classify(method: &Method, path: &str, watch: bool, user: &UserInfo) -> Level {
    if watch {
        return Level::Exempt;
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Level::ReadOnly;
    }
    match node_of(user) {
        Some(node) if *method == Method::PATCH && own_state_status(path) == Some(node) => {
            Level::NodeHigh
        }
        Some(_) => Level::NodeWrites,
        None => Level::Mutating,
    }
}

/// The node whose NodeNetworkState's status `path` names:
/// `/apis/nmstate.io/<version>/nodenetworkstates/<node>/status`.
fn own_state_status(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/apis/nmstate.io/")?;
    let mut segments = rest.split('/');
    let (_version, resource, name, subresource) = (
        segments.next()?,
        segments.next()?,
        segments.next()?,
        segments.next()?,
    );
    (resource == "nodenetworkstates" && subresource == "status" && segments.next().is_none())
        .then_some(name)
}

/// Why a request was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its level's queue was full.
    QueueFull,
    /// It waited [`QUEUE_WAIT`] in the queue.
    TimedOut,
}

impl Refusal {
    /// The reason in metrics, as kube-apiserver's
    /// `apiserver_flowcontrol_rejected_requests_total` names it.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::QueueFull => "queue-full",
            Refusal::TimedOut => "time-out",
        }
    }
}

/// One level's gate: its concurrency as permits, and its queue's length.
#[derive(Debug)]
struct Gate {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
}

/// A waiting request's place in its queue, given back when it stops
/// waiting (admitted, refused, or its client went away).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The gates of every counted level.
#[derive(Debug)]
pub struct Admission {
    gates: Vec<(Level, Gate)>,
    wait: Duration,
}

impl Default for Admission {
    fn default() -> Self {
        Self::new(Level::limits, QUEUE_WAIT)
    }
}

impl Admission {
    /// Gates with `limits` per level, waiting at most `wait`.
    pub fn new(limits: impl Fn(Level) -> Limits, wait: Duration) -> Self {
        let gates = COUNTED
            .into_iter()
            .map(|level| {
                let Limits { concurrency, queue } = limits(level);
                let gate = Gate {
                    permits: Arc::new(Semaphore::new(concurrency.min(Semaphore::MAX_PERMITS))),
                    waiting: AtomicUsize::new(0),
                    queue,
                };
                (level, gate)
            })
            .collect();
        Self { gates, wait }
    }

    /// Admits a request of `level`: at once if the level has room, else
    /// after waiting in its queue. The permit is held until the answer is
    /// sent; `None` for levels not counted.
    pub async fn admit(&self, level: Level) -> Result<Option<OwnedSemaphorePermit>, Refusal> {
        let Some((_, gate)) = self.gates.iter().find(|(counted, _)| *counted == level) else {
            return Ok(None);
        };
        if let Ok(permit) = gate.permits.clone().try_acquire_owned() {
            return Ok(Some(permit));
        }
        gate.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < gate.queue).then_some(n + 1)
            })
            .map_err(|_| Refusal::QueueFull)?;
        let _waiting = Waiting(&gate.waiting);
        match tokio::time::timeout(self.wait, gate.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            // The semaphore is never closed; waiting that long is the only end.
            Ok(Err(_)) | Err(_) => Err(Refusal::TimedOut),
        }
    }

    /// Requests waiting in each counted level's queue.
    pub fn waiting(&self) -> impl Iterator<Item = (Level, usize)> + '_ {
        self.gates
            .iter()
            .map(|(level, gate)| (*level, gate.waiting.load(Ordering::Acquire)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.to_owned(),
            groups: groups.iter().map(|group| (*group).to_owned()).collect(),
            ..UserInfo::default()
        }
    }

    #[test]
    fn requests_are_classified_by_who_sends_them_and_what_they_ask() {
        let node = user("system:node:a", &["system:nodes", "system:authenticated"]);
        let admin = user("admin", &["system:masters"]);
        let impostor = user("system:node:a", &["system:authenticated"]);
        let states = "/apis/nmstate.io/v1/nodenetworkstates";
        let enactments = "/apis/nmstate.io/v1beta1/nodenetworkconfigurationenactments";
        let (get, put, patch) = (Method::GET, Method::PUT, Method::PATCH);
        use Level::{Exempt, Mutating, NodeHigh, NodeWrites, ReadOnly};
        #[rustfmt::skip]
        let cases: &[(&str, &UserInfo, &Method, String, bool, Level)] = &[
            ("a node's heartbeat", &node, &patch, format!("{states}/a/status"), false, NodeHigh),
            ("v1beta1 too", &node, &patch, "/apis/nmstate.io/v1beta1/nodenetworkstates/a/status".into(), false, NodeHigh),
            ("a full status write", &node, &put, format!("{states}/a/status"), false, NodeWrites),
            ("another node's status", &node, &patch, format!("{states}/b/status"), false, NodeWrites),
            ("the object, not its status", &node, &patch, format!("{states}/a"), false, NodeWrites),
            ("a longer path", &node, &patch, format!("{states}/a/status/x"), false, NodeWrites),
            ("an enactment's status", &node, &put, format!("{enactments}/a.p/status"), false, NodeWrites),
            ("a node's read", &node, &get, format!("{states}/a"), false, ReadOnly),
            ("a node's watch", &node, &get, states.into(), true, Exempt),
            ("a user's watch", &admin, &get, states.into(), true, Exempt),
            ("a user's read", &admin, &get, states.into(), false, ReadOnly),
            ("a user's discovery", &admin, &Method::HEAD, "/apis".into(), false, ReadOnly),
            ("a user's status patch", &admin, &patch, format!("{states}/a/status"), false, Mutating),
            ("a user's delete", &admin, &Method::DELETE, format!("{states}/a"), false, Mutating),
            ("a node name outside system:nodes", &impostor, &patch, format!("{states}/a/status"), false, Mutating),
        ];
        for (what, user, method, path, watch, level) in cases {
            assert_eq!(classify(method, path, *watch, user), *level, "{what}");
        }
    }

    fn small(_: Level) -> Limits {
        Limits {
            concurrency: 1,
            queue: 1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn past_its_concurrency_a_request_waits_its_turn_and_a_full_queue_refuses() {
        let admission = Arc::new(Admission::new(small, Duration::from_secs(15)));
        let first = admission.admit(Level::NodeWrites).await.unwrap();
        // The level is busy: the next one waits in the queue...
        let waiter = tokio::spawn({
            let admission = admission.clone();
            async move {
                admission
                    .admit(Level::NodeWrites)
                    .await
                    .map(|permit| permit.is_some())
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            admission
                .waiting()
                .find(|(level, _)| *level == Level::NodeWrites),
            Some((Level::NodeWrites, 1))
        );
        // ...the queue (of one) is full: refused at once...
        assert_eq!(
            admission.admit(Level::NodeWrites).await.unwrap_err(),
            Refusal::QueueFull
        );
        // ...another level is not affected...
        assert!(admission.admit(Level::NodeHigh).await.unwrap().is_some());
        // ...and health checks and watches are not counted.
        assert!(admission.admit(Level::Exempt).await.unwrap().is_none());
        // The first one done, the waiting one goes ahead.
        drop(first);
        assert_eq!(waiter.await.unwrap(), Ok(true));
        assert!(admission.waiting().all(|(_, waiting)| waiting == 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_waits_at_most_the_queue_wait() {
        let admission = Admission::new(small, Duration::from_secs(15));
        let _busy = admission.admit(Level::Mutating).await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(
            admission.admit(Level::Mutating).await.unwrap_err(),
            Refusal::TimedOut
        );
        assert_eq!(started.elapsed(), Duration::from_secs(15));
        // Its place in the queue is given back.
        assert!(admission.waiting().all(|(_, waiting)| waiting == 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_goes_away_gives_its_place_in_the_queue_back() {
        let admission = Admission::new(small, Duration::from_secs(15));
        let _busy = admission.admit(Level::ReadOnly).await.unwrap();
        let gave_up =
            tokio::time::timeout(Duration::from_secs(1), admission.admit(Level::ReadOnly));
        assert!(gave_up.await.is_err());
        assert!(admission.waiting().all(|(_, waiting)| waiting == 0));
    }
}
