//! The enactor applies the enactments the controller released to this node.
//!
//! It watches only its own enactments (`labelSelector
//! nmstate.io/node=<node>`, which node restriction requires). An enactment
//! whose phase is `Progressing` (released by the controller, or left in
//! flight by an earlier run of the agent, or being retried) is queued once
//! for its policy generation; `Pending` ones are never touched. Applies run
//! one at a time, as nmstate allows one checkpoint at a time:
//!
//! 1. re-read the enactment; stop if its `status.policyGeneration` is no
//!    longer the queued one or it is no longer `Progressing`;
//! 2. write `Progressing`/`ConfigurationProgressing` "Applying desired state";
//! 3. roll back any stale checkpoint, apply without commit, run the probes
//!    that apply, then commit, or roll back;
//! 4. write `Available`/`SuccessfullyConfigured`; or, after a failure,
//!    increment `retryCount[G]` and decide by [`after_failure`]:
//!    - the apply itself failed (nmstate refused the state, verification
//!      failed, NetworkManager errored): write `Retrying n/5` and try again
//!      after a back-off (1 s doubling to 30 s); after the fifth retry
//!      `Failing`/`FailedToConfigure` with the error's message;
//!    - a probe failed after the apply (the node lost its gateway, its name
//!      servers or the API server, each of which answered before) and the
//!      probes pass again once the change is rolled back: the new state
//!      cut the node off. Write `Failing`/`FailedToConfigure` with the
//!      probe's message at once and never retry that generation: the same
//!      state would cut the node off again, each time for the whole probe
//!      timeout. A new policy generation, or deleting the enactment (the
//!      controller makes it anew), is the way to try again;
//!    - the probe that failed still fails after the rollback (only that
//!      probe runs again; another failing then says nothing of the new
//!      state): the node lost
//!      connectivity for another reason (a link went down in the middle of
//!      the apply). That is retried like an apply failure.
//!
//! Every status write re-reads the enactment and writes only if its
//! `policyGeneration` is still the one being applied, with the read
//! `resourceVersion` (a conflict re-reads). A write that fails for want of
//! the API server is tried again until it goes through or the agent stops:
//! the end of an apply is always reported (the enactment holds its
//! rollout slot until it is). The agent writes only the `/status`
//! subresource.
//!
//! Its decisions are pure functions, table-tested; the async code only
//! carries them out:
//! - [`work_for`]: is a watched enactment to be queued, for which
//!   generation;
//! - [`begin_apply`]: is the enactment still to be applied; mark it;
//! - `after_rollback` and `classify_probe_failure`: what a failed apply
//!   reports once rolled back, and whose fault a probe failure is;
//! - `outcome_of`: how an apply ended, as reported;
//! - [`record_outcome`]: the conditions and `retryCount` an apply's end
//!   writes, and what comes next, by [`after_failure`] (the retry rule) and
//!   [`backoff`];
//! - [`prepare_write`], [`after_write`] and [`write_retry_delay`]: whether
//!   a status write goes ahead on the enactment it read, and what follows
//!   the API server's answer.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use kube::{
    Api,
    api::PostParams,
    runtime::watcher::{self, Event},
};
use nmstate_openapi::{
    ENACTMENT_NODE_LABEL, EnactmentPhase, NodeNetworkConfigurationEnactment,
    NodeNetworkConfigurationEnactmentStatus, State, Time,
    condition::{
        ENACTMENT_PROGRESSING_MESSAGE, ENACTMENT_SUCCESS_MESSAGE, enactment_retrying_message,
        set_enactment_failed_to_configure, set_enactment_progressing, set_enactment_retrying,
        set_enactment_success,
    },
};
use tokio::sync::{Notify, mpsc, watch};
use tracing::Instrument;

use crate::{
    backend::{Backend, BackendError},
    client::{self, EnactmentObject},
    helper::Statistic,
    metrics::Metrics,
    probe::{self, Probe},
};

/// Retries after the first failure before giving up.
pub const MAX_RETRIES: u32 = 5;
/// The first back-off.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The apply: nmstate, its verification or NetworkManager.
    Apply,
    /// A probe after an apply that went through: the new state cut the node
    /// off from something it reached before.
    Probe,
}

/// What to do after a failed apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Report `Retrying attempt/MAX_RETRIES` and try again after `delay`.
    Retry {
        /// The retry about to happen, from 1.
        attempt: u32,
        /// How long to wait first.
        delay: Duration,
    },
    /// Report `FailedToConfigure`.
    GiveUp,
}

/// The decision after `failures` failed applies of one generation (the new
/// `retryCount`, counting this failure), the last one of `kind`. A probe
/// failure is never retried; apply failures are, `MAX_RETRIES` times.
pub fn after_failure(kind: FailureKind, failures: u32) -> AfterFailure {
    if kind == FailureKind::Probe || failures == 0 || failures > MAX_RETRIES {
        return AfterFailure::GiveUp;
    }
    AfterFailure::Retry {
        attempt: failures,
        delay: backoff(failures),
    }
}

/// The wait before retry `attempt` (from 1): `FIRST_BACKOFF` doubling per
/// attempt, at most `MAX_BACKOFF`.
pub fn backoff(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1);
    FIRST_BACKOFF
        .checked_mul(1u32.checked_shl(doublings).unwrap_or(u32::MAX))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// The `Failing` message of a probe failure: the probe's own message and
/// why it is not retried.
pub fn probe_failure_message(message: &str) -> String {
    format!(
        "{message} (a probe failure is not retried: change the policy, or delete this enactment, to try again)"
    )
}

/// How one apply ended, as the enactor reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied, probed and committed.
    Applied,
    /// Rolled back; the message is for users.
    Failed {
        /// What failed.
        kind: FailureKind,
        /// What users read in the `Failing` condition.
        message: String,
    },
}

/// What the enactor does once an outcome is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The enactment is finished for this generation.
    Done,
    /// Apply again after the delay.
    RetryAfter(Duration),
}

/// Marks `status` as being applied by this agent and returns the state to
/// apply, if the enactment is still in flight (released, applying or
/// retrying); `None` leaves it alone.
pub fn begin_apply(
    status: &mut NodeNetworkConfigurationEnactmentStatus,
    now: &Time,
) -> Option<State> {
    if status.phase() != EnactmentPhase::Progressing {
        return None;
    }
    set_enactment_progressing(&mut status.conditions, ENACTMENT_PROGRESSING_MESSAGE, now);
    Some(status.desired_state.clone().unwrap_or_default())
}

/// Writes the outcome of an apply of `generation` on `node` into `status`
/// (conditions and `retryCount`) and says what comes next ([`after_failure`]).
pub fn record_outcome(
    status: &mut NodeNetworkConfigurationEnactmentStatus,
    generation: i64,
    node: &str,
    outcome: &Outcome,
    now: &Time,
) -> Next {
    let Outcome::Failed { kind, message } = outcome else {
        set_enactment_success(&mut status.conditions, ENACTMENT_SUCCESS_MESSAGE, now);
        return Next::Done;
    };
    let failures = status.retry_count_for(generation).saturating_add(1);
    status.retry_count.insert(generation.to_string(), failures);
    match after_failure(*kind, u32::try_from(failures).unwrap_or(u32::MAX)) {
        AfterFailure::Retry { attempt, delay } => {
            let message = enactment_retrying_message(node, attempt, MAX_RETRIES);
            set_enactment_retrying(&mut status.conditions, &message, now);
            Next::RetryAfter(delay)
        }
        AfterFailure::GiveUp => {
            set_enactment_failed_to_configure(&mut status.conditions, message, now);
            Next::Done
        }
    }
}

/// The enactment name and policy generation to queue for a watched
/// enactment, if it is released (or in flight) and has both.
pub fn work_for(enactment: &NodeNetworkConfigurationEnactment) -> Option<(String, i64)> {
    let name = enactment.metadata.name.clone()?;
    let generation = ready_to_apply(enactment.status.as_ref()?)?;
    Some((name, generation))
}

/// What a status write does with the enactment it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// The enactment moved to another policy generation: stop.
    Stale,
    /// The update changes nothing: nothing to write.
    Unchanged,
    /// Write the updated status.
    Write,
}

/// Applies `update` to the `status` of the enactment just read (a missing
/// one is empty) if it still belongs to policy generation `generation`,
/// and says whether to write it.
pub fn prepare_write(
    status: &mut Option<NodeNetworkConfigurationEnactmentStatus>,
    generation: i64,
    now: &Time,
    update: impl FnOnce(&mut NodeNetworkConfigurationEnactmentStatus, &Time),
) -> Prepared {
    let status = status.get_or_insert_default();
    if status.policy_generation != Some(generation) {
        return Prepared::Stale;
    }
    let before = status.clone();
    update(status, now);
    if *status == before {
        return Prepared::Unchanged;
    }
    Prepared::Write
}

/// How the API server answered a status write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It wrote.
    Done,
    /// The write carried an old `resourceVersion`.
    Conflict,
    /// The enactment is gone.
    NotFound,
    /// No answer, or another error: the node cannot reach the API server.
    Failed,
}

/// What a status write does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteStep {
    /// The status is written.
    Written,
    /// Read the enactment again at once and retry.
    Reread,
    /// Give up: the enactment is gone.
    Stop,
    /// Read the enactment again after the pause and retry.
    RetryAfter(Duration),
}

/// The next step of a status write after the API server's `answer` to try
/// `attempt` (from 0). A write that fails for want of the API server is
/// retried (so is the read before it, after the same pause) until it goes
/// through: the end of an apply must be reported.
pub fn after_write(answer: Answer, attempt: u32) -> WriteStep {
    match answer {
        Answer::Done => WriteStep::Written,
        Answer::Conflict => WriteStep::Reread,
        Answer::NotFound => WriteStep::Stop,
        Answer::Failed => WriteStep::RetryAfter(write_retry_delay(attempt)),
    }
}

/// The pause before retrying a read or write that failed at try `attempt`
/// (from 0): half a second more per try, at most [`WRITE_RETRY_CAP`].
pub fn write_retry_delay(attempt: u32) -> Duration {
    (Duration::from_millis(500) * attempt.saturating_add(1)).min(WRITE_RETRY_CAP)
}

/// The enactor's settings.
#[derive(Clone, Debug)]
pub struct EnactorConfig {
    /// The node.
    pub node_name: String,
    /// How long an applied change may stay uncommitted before the backend
    /// rolls it back by itself.
    pub checkpoint_timeout: Duration,
    /// Where the features of an apply come from.
    pub statistic: Statistic,
}

/// An enactment to apply: its name, its policy generation, and the `uid`
/// of the object it was seen as. The uid tells a deleted and re-created
/// enactment (a policy deleted and created again under its name) from the
/// one being applied, so that it is queued rather than lost.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Work {
    name: String,
    generation: i64,
    uid: String,
}

/// Applies this node's released enactments.
#[derive(Debug)]
pub struct Enactor {
    config: EnactorConfig,
    api: Api<EnactmentObject>,
    backend: Arc<dyn Backend>,
    probes: Arc<Vec<Box<dyn Probe>>>,
    metrics: Metrics,
    applied: Arc<Notify>,
    /// Turns true when the agent stops (set by [`Enactor::run`]).
    stopping: Option<watch::Receiver<bool>>,
}

/// The longest pause between two tries of a status write that failed for
/// want of the API server.
pub const WRITE_RETRY_CAP: Duration = Duration::from_secs(5);

impl Enactor {
    /// An enactor for `config.node_name`.
    pub fn new(
        config: EnactorConfig,
        client: &kube::Client,
        backend: Arc<dyn Backend>,
        probes: Vec<Box<dyn Probe>>,
        metrics: Metrics,
        applied: Arc<Notify>,
    ) -> Self {
        Self {
            config,
            api: client::enactments(client),
            backend,
            probes: Arc::new(probes),
            metrics,
            applied,
            stopping: None,
        }
    }

    /// Runs until `shutdown` turns true; an apply in flight then finishes
    /// (or is rolled back, if it had not reached its commit).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let selector = format!("{ENACTMENT_NODE_LABEL}={}", self.config.node_name);
        let mut events = watcher::watcher(
            self.api.clone(),
            watcher::Config::default().labels(&selector),
        )
        .boxed();
        let (queue, mut work) = mpsc::unbounded_channel::<Work>();
        // Queued or being applied; an entry leaves when its apply ends.
        let queued: Arc<Mutex<HashSet<Work>>> = Arc::default();
        let enactor = Arc::new(Self {
            stopping: Some(shutdown.clone()),
            ..self
        });
        let worker = {
            let enactor = Arc::clone(&enactor);
            let queued = Arc::clone(&queued);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                while let Some(item) = work.recv().await {
                    if *shutdown.borrow() {
                        break;
                    }
                    let span = tracing::info_span!(
                        "apply",
                        enactment = %item.name,
                        generation = item.generation
                    );
                    enactor
                        .enact(&item.name, item.generation, shutdown.clone())
                        .instrument(span)
                        .await;
                    queued
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&item);
                }
            })
        };
        loop {
            let event = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                event = events.next() => event,
            };
            let object = match event {
                Some(Ok(Event::Apply(object) | Event::InitApply(object))) => object,
                Some(Ok(_)) => continue,
                Some(Err(error)) => {
                    tracing::warn!(%error, "watching enactments failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                None => break,
            };
            let Some((name, generation)) = work_for(&object.0) else {
                continue;
            };
            let uid = object.0.metadata.uid.clone().unwrap_or_default();
            let item = Work {
                name,
                generation,
                uid,
            };
            let fresh = queued
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(item.clone());
            if fresh {
                tracing::info!(enactment = %item.name, generation, "enactment released: queued");
                let _ = queue.send(item);
            }
        }
        drop(queue);
        // Let an apply in flight end: commit, or roll back.
        if let Err(error) = worker.await {
            tracing::error!(%error, "enactment worker failed");
        }
    }

    /// Applies generation `generation` of enactment `name` until it
    /// succeeds, fails for good, goes stale, or the agent stops.
    async fn enact(&self, name: &str, generation: i64, shutdown: watch::Receiver<bool>) {
        loop {
            let Some(desired) = self.start(name, generation).await else {
                return;
            };
            let started = Instant::now();
            let result = self.apply_once(&desired, &shutdown).await;
            self.applied.notify_one();
            let features = result.as_ref().map(Vec::clone).unwrap_or_default();
            let Some(outcome) = outcome_of(result.map(drop)) else {
                tracing::info!(enactment = %name, "apply interrupted by shutdown: rolled back");
                return;
            };
            let applied = outcome == Outcome::Applied;
            self.metrics.observe_apply(applied, started.elapsed());
            match &outcome {
                Outcome::Applied => tracing::info!(enactment = %name, "applied"),
                Outcome::Failed { kind, message } => {
                    tracing::warn!(enactment = %name, error = %message, ?kind, "apply failed");
                }
            }
            let node = self.config.node_name.clone();
            let mut next = Next::Done;
            let written = self
                .write(name, generation, |status, now| {
                    next = record_outcome(status, generation, &node, &outcome, now);
                    if applied {
                        status.features.clone_from(&features);
                    }
                })
                .await;
            if !written {
                return;
            }
            let Next::RetryAfter(delay) = next else {
                return;
            };
            let mut shutdown = shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                // Stopping during the back-off: the status says Retrying, and
                // the next run of the agent picks the enactment up again.
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Re-reads the enactment and, if generation `generation` is still to
    /// be applied, marks it as being applied and returns its desired state.
    async fn start(&self, name: &str, generation: i64) -> Option<State> {
        let mut desired = None;
        let written = self
            .write(name, generation, |status, now| {
                desired = begin_apply(status, now);
            })
            .await;
        if written { desired } else { None }
    }

    /// One apply: stale checkpoint rolled back, apply, probes, commit or
    /// rollback. The error message is what users read; a success returns
    /// the nmstate features the state uses (upstream's `status.features`,
    /// counted by the server's `kubernetes_nmstate_features_applied`).
    async fn apply_once(
        &self,
        desired: &State,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Vec<String>, ApplyError> {
        let failed = |message: String| ApplyError::Failed(message);
        self.backend
            .rollback_stale()
            .await
            .map_err(|e| failed(format!("rolling back a stale checkpoint: {e}")))?;
        let before = self
            .backend
            .retrieve()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let applicable = probe::applicable(&self.probes, &before).await;
        let features = self
            .config
            .statistic
            .features(desired, &before)
            .await
            .unwrap_or_else(|error| {
                tracing::debug!(%error, "no nmstate statistic of the desired state");
                Vec::new()
            });
        let checkpoint = self
            .backend
            .apply(desired, self.config.checkpoint_timeout)
            .await
            .map_err(|e| failed(e.message))?;
        // A stop before the commit rolls back rather than wait for probes
        // that may take minutes: the node keeps its old configuration and
        // the enactment is still Progressing for the next run.
        let mut stop = shutdown.clone();
        let mut failed_probe = None;
        let verdict = tokio::select! {
            verdict = async {
                match self.backend.retrieve().await {
                    Ok(after) => probe::run_all(&self.probes, &applicable, &after)
                        .await
                        .map_err(|failure| {
                            failed_probe = Some(failure.probe);
                            ApplyError::ProbeFailed(failure.message)
                        }),
                    Err(error) => Err(failed(error.to_string())),
                }
            } => verdict,
            _ = stop.wait_for(|stop| *stop) => Err(ApplyError::Interrupted),
        };
        match verdict {
            Ok(()) => self
                .backend
                .commit(&checkpoint)
                .await
                .map(|()| features)
                .map_err(|e| failed(format!("committing the configuration: {e}"))),
            Err(error) => {
                let rollback = self.backend.rollback(&checkpoint).await;
                match after_rollback(error, rollback) {
                    AfterRollback::Report(error) => Err(error),
                    AfterRollback::ProbeAgain(message) => {
                        // Whose fault: see `classify_probe_failure`.
                        let recheck = probe::only_failed(&applicable, failed_probe);
                        let again = match self.backend.retrieve().await {
                            Ok(now) => probe::run_all(&self.probes, &recheck, &now)
                                .await
                                .err()
                                .map(|failure| failure.message),
                            Err(error) => Some(error.to_string()),
                        };
                        Err(classify_probe_failure(&message, again.as_deref()))
                    }
                }
            }
        }
    }

    /// Waits `delay`; false when the agent is stopping meanwhile.
    async fn pause(&self, delay: Duration) -> bool {
        let Some(mut stopping) = self.stopping.clone() else {
            tokio::time::sleep(delay).await;
            return true;
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = stopping.wait_for(|stop| *stop) => false,
        }
    }

    /// Updates the status of enactment `name` with `update` if its
    /// `policyGeneration` is still `generation`; returns whether it wrote.
    /// A conflict re-reads and retries; other API errors (the node cannot
    /// reach the API server) are retried after a pause (at most
    /// [`WRITE_RETRY_CAP`]) until the write goes through or the agent
    /// stops: an apply's end must be reported, or the enactment would stay
    /// in flight with nobody to apply it again.
    async fn write(
        &self,
        name: &str,
        generation: i64,
        mut update: impl FnMut(&mut NodeNetworkConfigurationEnactmentStatus, &Time),
    ) -> bool {
        for attempt in 0u32.. {
            let mut object = match self.api.get_opt(name).await {
                Ok(Some(object)) => object,
                Ok(None) => {
                    tracing::info!(enactment = %name, "enactment deleted: stopping");
                    return false;
                }
                Err(error) => {
                    tracing::warn!(enactment = %name, %error, "reading the enactment failed");
                    if !self.pause(write_retry_delay(attempt)).await {
                        return false;
                    }
                    continue;
                }
            };
            let now = Time(jiff::Timestamp::now());
            match prepare_write(&mut object.0.status, generation, &now, &mut update) {
                Prepared::Write => {}
                Prepared::Unchanged => return false,
                Prepared::Stale => {
                    let stored = object.0.status.and_then(|status| status.policy_generation);
                    tracing::info!(enactment = %name, generation, now = ?stored,
                        "enactment moved to another generation: stopping");
                    return false;
                }
            }
            let answer = match self
                .api
                .replace_status(name, &PostParams::default(), &object)
                .await
            {
                Ok(_) => Answer::Done,
                Err(error) if client::is_conflict(&error) => Answer::Conflict,
                Err(error) if client::is_not_found(&error) => Answer::NotFound,
                Err(error) => {
                    tracing::warn!(enactment = %name, %error, "writing the enactment status failed");
                    Answer::Failed
                }
            };
            match after_write(answer, attempt) {
                WriteStep::Written => return true,
                WriteStep::Stop => return false,
                WriteStep::Reread => {}
                WriteStep::RetryAfter(delay) => {
                    if !self.pause(delay).await {
                        return false;
                    }
                }
            }
        }
        false
    }
}

/// The generation to apply, if the enactment is released (or in flight)
/// and has one.
fn ready_to_apply(status: &NodeNetworkConfigurationEnactmentStatus) -> Option<i64> {
    if status.phase() != EnactmentPhase::Progressing {
        return None;
    }
    status.policy_generation
}

/// The error of a probe failure after a successful rollback, given what
/// the failed probe said once more on the rolled-back state (`None`: it
/// passes).
/// Passing again blames the new state: a probe failure, not retried. Still
/// failing means the node lost connectivity for another reason: an apply
/// failure, retried by the usual rule (and while the node cannot report,
/// the enactment stays in flight and is applied again once it can).
fn classify_probe_failure(message: &str, after_rollback: Option<&str>) -> ApplyError {
    match after_rollback {
        None => ApplyError::ProbeFailed(format!(
            "rolling back desired state configuration: {message}"
        )),
        Some(again) => ApplyError::Failed(format!(
            "rolling back desired state configuration: {message}; after the rollback {again}: \
             the node lost connectivity, not only through the new state"
        )),
    }
}

/// What a failed apply reports once its rollback ended.
#[derive(Debug, PartialEq, Eq)]
enum AfterRollback {
    /// Report this error.
    Report(ApplyError),
    /// A probe failed with this message and the rollback went through:
    /// probe the rolled-back state again, and [`classify_probe_failure`].
    ProbeAgain(String),
}

/// What apply `error` reports once the `rollback` of its checkpoint ended:
/// a failed rollback is reported with the error, and an apply that
/// failed is reported as rolled back; a probe failure is probed again.
fn after_rollback(error: ApplyError, rollback: Result<(), BackendError>) -> AfterRollback {
    match (error, rollback) {
        (ApplyError::Failed(message), Ok(())) => AfterRollback::Report(ApplyError::Failed(
            format!("rolling back desired state configuration: {message}"),
        )),
        (ApplyError::ProbeFailed(message), Ok(())) => AfterRollback::ProbeAgain(message),
        (ApplyError::Failed(message) | ApplyError::ProbeFailed(message), Err(rollback)) => {
            AfterRollback::Report(ApplyError::Failed(format!(
                "{message}; rolling back failed too: {rollback}"
            )))
        }
        (interrupted, _) => AfterRollback::Report(interrupted),
    }
}

/// How an apply ended, as the enactor reports it; `None` when the agent's
/// stop interrupted it (rolled back; the enactment is still in flight for
/// the agent's next run).
fn outcome_of(result: Result<(), ApplyError>) -> Option<Outcome> {
    match result {
        Ok(()) => Some(Outcome::Applied),
        Err(ApplyError::Interrupted) => None,
        Err(ApplyError::Failed(message)) => Some(Outcome::Failed {
            kind: FailureKind::Apply,
            message,
        }),
        Err(ApplyError::ProbeFailed(message)) => Some(Outcome::Failed {
            kind: FailureKind::Probe,
            message: probe_failure_message(&message),
        }),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ApplyError {
    /// The apply failed; the message is for users.
    Failed(String),
    /// A probe failed after the apply; the message is for users.
    ProbeFailed(String),
    /// The agent is stopping; the change was rolled back.
    Interrupted,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use jiff::Timestamp;
    use nmstate_openapi::condition::{set_enactment_pending, set_enactment_released};

    use super::*;

    #[test]
    fn apply_failures_retry_five_times_probe_failures_never() {
        let retry = |attempt, seconds| AfterFailure::Retry {
            attempt,
            delay: Duration::from_secs(seconds),
        };
        use AfterFailure::GiveUp;
        use FailureKind::{Apply, Probe};
        // (what failed, failures so far counting this one, decision)
        let cases = [
            (Apply, 0, GiveUp),
            (Apply, 1, retry(1, 1)),
            (Apply, 2, retry(2, 2)),
            (Apply, 3, retry(3, 4)),
            (Apply, 4, retry(4, 8)),
            (Apply, 5, retry(5, 16)),
            (Apply, 6, GiveUp),
            (Apply, u32::MAX, GiveUp),
            (Probe, 1, GiveUp),
            // A probe failure after apply failures that were retried.
            (Probe, 3, GiveUp),
        ];
        for (kind, failures, decision) in cases {
            assert_eq!(
                after_failure(kind, failures),
                decision,
                "{kind:?} {failures}"
            );
        }
    }

    #[test]
    fn a_probe_failure_is_the_new_states_only_if_the_rollback_cures_it() {
        let cases = [
            (
                None,
                true,
                "rolling back desired state configuration: probe gateway failed",
            ),
            (
                Some("probe gateway failed: no answer"),
                false,
                "rolling back desired state configuration: probe gateway failed; after the rollback probe gateway failed: no answer: the node lost connectivity, not only through the new state",
            ),
        ];
        for (after_rollback, blames_the_state, expected) in cases {
            match classify_probe_failure("probe gateway failed", after_rollback) {
                ApplyError::ProbeFailed(message) => {
                    assert!(blames_the_state, "{message}");
                    assert_eq!(message, expected);
                }
                ApplyError::Failed(message) => {
                    assert!(!blames_the_state, "{message}");
                    assert_eq!(message, expected);
                }
                ApplyError::Interrupted => panic!("interrupted"),
            }
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let seconds: Vec<u64> = [1, 2, 5, 6, 9, 40, u32::MAX]
            .into_iter()
            .map(|attempt| backoff(attempt).as_secs())
            .collect();
        assert_eq!(seconds, [1, 2, 16, 30, 30, 30, 30]);
        assert_eq!(backoff(0), FIRST_BACKOFF);
    }

    #[test]
    fn outcomes_are_recorded_with_upstreams_conditions() {
        use FailureKind::{Apply, Probe};
        let now = Time(Timestamp::from_second(60).unwrap());
        let failed = |kind, message: &str| Outcome::Failed {
            kind,
            message: message.to_owned(),
        };
        let retrying = "failed to reconcile NodeNetworkConfigurationPolicy on node n1. Retrying";
        // (outcome, earlier failures of generation 2, next,
        //  Available, Failing, Progressing: (status, reason, message prefix), retryCount)
        type Expect = (&'static str, &'static str, &'static str);
        let cases: [(Outcome, i32, Next, [Expect; 3], i32); 5] = [
            (
                Outcome::Applied,
                0,
                Next::Done,
                [
                    ("True", "SuccessfullyConfigured", "successfully reconciled"),
                    ("False", "SuccessfullyConfigured", ""),
                    ("False", "SuccessfullyConfigured", ""),
                ],
                0,
            ),
            (
                failed(Apply, "nmstate: boom"),
                0,
                Next::RetryAfter(Duration::from_secs(1)),
                [
                    ("False", "Retrying", ""),
                    ("True", "Retrying", retrying),
                    ("True", "Retrying", retrying),
                ],
                1,
            ),
            (
                failed(Apply, "nmstate: boom"),
                4,
                Next::RetryAfter(Duration::from_secs(16)),
                [
                    ("False", "Retrying", ""),
                    ("True", "Retrying", retrying),
                    ("True", "Retrying", retrying),
                ],
                5,
            ),
            (
                failed(Apply, "nmstate: boom"),
                5,
                Next::Done,
                [
                    ("False", "FailedToConfigure", ""),
                    ("True", "FailedToConfigure", "nmstate: boom"),
                    ("False", "FailedToConfigure", ""),
                ],
                6,
            ),
            (
                failed(Probe, "probe default-gateway failed"),
                0,
                Next::Done,
                [
                    ("False", "FailedToConfigure", ""),
                    ("True", "FailedToConfigure", "probe default-gateway failed"),
                    ("False", "FailedToConfigure", ""),
                ],
                1,
            ),
        ];
        for (outcome, earlier, next, expected, retry_count) in cases {
            let mut status = NodeNetworkConfigurationEnactmentStatus {
                policy_generation: Some(2),
                ..Default::default()
            };
            set_enactment_released(&mut status.conditions, &now);
            if earlier > 0 {
                status.retry_count.insert("2".to_owned(), earlier);
            }
            // Another generation's count is left alone.
            status.retry_count.insert("1".to_owned(), 3);
            let context = format!("{outcome:?} after {earlier}");
            assert_eq!(
                record_outcome(&mut status, 2, "n1", &outcome, &now),
                next,
                "{context}"
            );
            for (type_, (state, reason, message)) in ["Available", "Failing", "Progressing"]
                .into_iter()
                .zip(expected)
            {
                let condition = status
                    .conditions
                    .iter()
                    .find(|c| c.type_.as_str() == type_)
                    .unwrap();
                assert_eq!(condition.status.as_str(), state, "{context}: {type_}");
                assert_eq!(
                    condition.reason.as_ref().map(|r| r.as_str()),
                    Some(reason),
                    "{context}: {type_}"
                );
                assert!(
                    condition.message.starts_with(message),
                    "{context}: {type_}: {}",
                    condition.message
                );
            }
            assert_eq!(
                status.retry_count_for(2),
                retry_count,
                "{context}: retryCount"
            );
            assert_eq!(status.retry_count_for(1), 3, "{context}");
        }
    }

    #[test]
    fn an_apply_begins_only_while_in_flight() {
        let now = Time(Timestamp::from_second(0).unwrap());
        let desired = State(serde_json::json!({"interfaces": []}));
        let mut status = NodeNetworkConfigurationEnactmentStatus {
            policy_generation: Some(1),
            desired_state: Some(desired.clone()),
            ..Default::default()
        };
        set_enactment_pending(&mut status.conditions, "wait", &now);
        let before = status.clone();
        assert_eq!(begin_apply(&mut status, &now), None, "pending");
        assert_eq!(status, before, "untouched");
        set_enactment_released(&mut status.conditions, &now);
        assert_eq!(begin_apply(&mut status, &now), Some(desired), "released");
        let progressing = status
            .conditions
            .iter()
            .find(|c| c.type_.as_str() == "Progressing")
            .unwrap();
        assert_eq!(progressing.message, ENACTMENT_PROGRESSING_MESSAGE);
        set_enactment_success(&mut status.conditions, "ok", &now);
        assert_eq!(begin_apply(&mut status, &now), None, "finished");
    }

    #[test]
    fn only_released_enactments_are_applied() {
        let now = Time(Timestamp::from_second(0).unwrap());
        let mut status = NodeNetworkConfigurationEnactmentStatus {
            policy_generation: Some(3),
            ..Default::default()
        };
        nmstate_openapi::condition::set_enactment_unknown(&mut status.conditions, &now);
        assert_eq!(ready_to_apply(&status), None, "new");
        set_enactment_pending(&mut status.conditions, "wait", &now);
        assert_eq!(ready_to_apply(&status), None, "pending");
        set_enactment_released(&mut status.conditions, &now);
        assert_eq!(ready_to_apply(&status), Some(3), "released");
        set_enactment_retrying(&mut status.conditions, "retry", &now);
        assert_eq!(ready_to_apply(&status), Some(3), "retrying");
        set_enactment_success(&mut status.conditions, "ok", &now);
        assert_eq!(ready_to_apply(&status), None, "done");
        set_enactment_released(&mut status.conditions, &now);
        status.policy_generation = None;
        assert_eq!(ready_to_apply(&status), None, "no generation");
    }

    #[test]
    fn a_watched_enactment_is_queued_if_released_and_named() {
        let now = Time(Timestamp::from_second(0).unwrap());
        let enactment = |name: Option<&str>, status: Option<(i64, bool)>| {
            let mut enactment = NodeNetworkConfigurationEnactment::default();
            enactment.metadata.name = name.map(str::to_owned);
            enactment.status = status.map(|(generation, released)| {
                let mut status = NodeNetworkConfigurationEnactmentStatus {
                    policy_generation: Some(generation),
                    ..Default::default()
                };
                if released {
                    set_enactment_released(&mut status.conditions, &now);
                } else {
                    set_enactment_pending(&mut status.conditions, "wait", &now);
                }
                status
            });
            enactment
        };
        let cases = [
            (
                "released",
                enactment(Some("n1.p"), Some((4, true))),
                Some(4),
            ),
            ("pending", enactment(Some("n1.p"), Some((4, false))), None),
            ("no status", enactment(Some("n1.p"), None), None),
            ("no name", enactment(None, Some((4, true))), None),
        ];
        for (case, enactment, generation) in cases {
            let expected = generation.map(|generation| ("n1.p".to_owned(), generation));
            assert_eq!(work_for(&enactment), expected, "{case}");
        }
    }

    #[test]
    fn a_status_write_goes_ahead_for_its_generation_and_a_change() {
        let now = Time(Timestamp::from_second(0).unwrap());
        let status = |generation| {
            Some(NodeNetworkConfigurationEnactmentStatus {
                policy_generation: generation,
                ..Default::default()
            })
        };
        // (stored status, whether the update changes it, decision)
        let cases = [
            (
                "generation 2, changed",
                status(Some(2)),
                true,
                Prepared::Write,
            ),
            (
                "generation 2, same",
                status(Some(2)),
                false,
                Prepared::Unchanged,
            ),
            ("generation 3", status(Some(3)), true, Prepared::Stale),
            ("no generation", status(None), true, Prepared::Stale),
            ("no status", None, true, Prepared::Stale),
        ];
        for (case, mut stored, changes, expected) in cases {
            let before = stored.clone().unwrap_or_default();
            let mut updated = false;
            let decision = prepare_write(&mut stored, 2, &now, |status, now| {
                updated = true;
                if changes {
                    set_enactment_success(&mut status.conditions, "ok", now);
                }
            });
            assert_eq!(decision, expected, "{case}");
            assert_eq!(updated, expected != Prepared::Stale, "{case}: update ran");
            let after = stored.unwrap_or_else(|| panic!("{case}: no status"));
            assert_eq!(after != before, expected == Prepared::Write, "{case}");
        }
    }

    #[test]
    fn a_status_write_retries_until_the_api_server_answers() {
        use Answer::{Conflict, Done, Failed, NotFound};
        let after = |millis| WriteStep::RetryAfter(Duration::from_millis(millis));
        // (answer, try from 0, next step)
        let cases = [
            (Done, 0, WriteStep::Written),
            (Done, 7, WriteStep::Written),
            (Conflict, 0, WriteStep::Reread),
            (Conflict, 20, WriteStep::Reread),
            (NotFound, 0, WriteStep::Stop),
            (Failed, 0, after(500)),
            (Failed, 1, after(1000)),
            (Failed, 8, after(4500)),
            (Failed, 9, after(5000)),
            (Failed, 10, after(5000)),
            (Failed, u32::MAX, after(5000)),
        ];
        for (answer, attempt, step) in cases {
            assert_eq!(after_write(answer, attempt), step, "{answer:?} {attempt}");
        }
        assert_eq!(write_retry_delay(u32::MAX), WRITE_RETRY_CAP);
    }

    #[test]
    fn a_failed_apply_is_reported_with_its_rollback() {
        use AfterRollback::{ProbeAgain, Report};
        let rolled_back = || Ok(());
        let rollback_failed = || Err(BackendError::new("checkpoint expired"));
        let failed = |message: &str| Report(ApplyError::Failed(message.to_owned()));
        let cases = [
            (
                ApplyError::Failed("boom".to_owned()),
                rolled_back(),
                failed("rolling back desired state configuration: boom"),
            ),
            (
                ApplyError::Failed("boom".to_owned()),
                rollback_failed(),
                failed("boom; rolling back failed too: checkpoint expired"),
            ),
            (
                ApplyError::ProbeFailed("probe dns failed".to_owned()),
                rolled_back(),
                ProbeAgain("probe dns failed".to_owned()),
            ),
            (
                ApplyError::ProbeFailed("probe dns failed".to_owned()),
                rollback_failed(),
                failed("probe dns failed; rolling back failed too: checkpoint expired"),
            ),
            (
                ApplyError::Interrupted,
                rolled_back(),
                Report(ApplyError::Interrupted),
            ),
            (
                ApplyError::Interrupted,
                rollback_failed(),
                Report(ApplyError::Interrupted),
            ),
        ];
        for (error, rollback, expected) in cases {
            let context = format!("{error:?} {rollback:?}");
            assert_eq!(after_rollback(error, rollback), expected, "{context}");
        }
    }

    #[test]
    fn an_apply_ends_as_reported_unless_interrupted() {
        use FailureKind::{Apply, Probe};
        let failed = |kind, message: &str| {
            Some(Outcome::Failed {
                kind,
                message: message.to_owned(),
            })
        };
        let cases = [
            (Ok(()), Some(Outcome::Applied)),
            (
                Err(ApplyError::Failed("boom".to_owned())),
                failed(Apply, "boom"),
            ),
            (
                Err(ApplyError::ProbeFailed("probe dns failed".to_owned())),
                failed(
                    Probe,
                    "probe dns failed (a probe failure is not retried: change the policy, \
                     or delete this enactment, to try again)",
                ),
            ),
            (Err(ApplyError::Interrupted), None),
        ];
        for (result, outcome) in cases {
            let context = format!("{result:?}");
            assert_eq!(outcome_of(result), outcome, "{context}");
        }
    }
}
