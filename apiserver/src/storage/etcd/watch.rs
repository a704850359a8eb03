//! Watches on etcd: one etcd watch stream per [`Watch`], turned into the
//! contract's events by a state machine that runs when the stream is polled.
//!
//! It owns the gRPC watch stream and must not let a progress notification
//! claim more than is true. etcd 3.4 (3.4.23 among them) answers a progress
//! request at once with its current revision, even while events before that revision are
//! still on their way to this watcher (etcd-io/etcd#15220). So each answer
//! is checked against etcd's data before it becomes
//! [`WatchEvent::Progress`]: if a key in the range changed after the last
//! delivered event, or one was deleted, the check fails and is repeated
//! after a short pause, by when the missing events have arrived.
//!
//! etcd 3.5 and later answer a progress request only while every watcher
//! of the stream is synced (caught up with the store); otherwise they drop
//! it without a word. So a request left unanswered is sent again after
//! [`PROGRESS_REASK`], as kube-apiserver does, until an answer comes.
//!
//! One case escapes that check: a key both created and deleted after the
//! last delivered event leaves no trace in the data at either end. Should
//! its events arrive after the notification, the watch ends with
//! [`Error::Unavailable`] rather than deliver events older than a progress
//! it reported; the state it reported at that revision was right (the key
//! did not exist then), so watching again from there loses nothing.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use async_trait::async_trait;
use etcd_client::{
    Client, EventType, GetOptions, SortOrder, SortTarget, WatchOptions, WatchRequestSender,
    WatchResponse, WatchResponseStream,
};
use tokio::{sync::mpsc, time::Instant};

use super::{Etcd, convert_kv, key_string, map_error, prefix_range_end};
use crate::storage::{
    Error, PreviousValues, ProgressRequester, Result, Revision, Watch, WatchEvent,
};

/// How long to wait before asking again when a progress answer could not be
/// confirmed yet.
const PROGRESS_RETRY: Duration = Duration::from_millis(20);

/// How long to wait for the answer to a progress request before sending it
/// again: etcd 3.5+ drops a request that reaches it while this watch is
/// catching up (kube-apiserver asks every 100 ms for the same reason).
const PROGRESS_REASK: Duration = Duration::from_millis(100);

/// Opens the etcd watch and waits for etcd to confirm it.
pub(super) async fn start(
    etcd: Arc<Etcd>,
    prefix: &str,
    after: Revision,
    previous: PreviousValues,
) -> Result<Watch> {
    let range_end = prefix_range_end(prefix);
    let mut options = WatchOptions::new()
        .with_range(range_end.clone())
        .with_start_revision(after + 1);
    if previous == PreviousValues::Include {
        options = options.with_prev_key();
    }
    // The first answer is the creation; a watch from a compacted revision is
    // created too and cancelled right after (the stream reports that).
    let (stream, first) = etcd
        .call("watch", |mut client| {
            let options = options.clone();
            async move {
                let mut stream = client.watch(prefix, Some(options)).await?;
                let first = stream.message().await?;
                Ok((stream, first))
            }
        })
        .await?;
    match first {
        Some(response) if response.created() => {}
        Some(response) => return Err(cancelled(&etcd, &response, after)),
        None => return Err(stream_ended(&etcd)),
    }
    let (requests, responses) = stream.split();
    let (progress_sender, progress) = mpsc::unbounded_channel();
    let state = WatchState {
        etcd,
        prefix: prefix.to_owned(),
        range_end,
        requests,
        responses,
        progress,
        progress_open: true,
        position: after,
        last_event: 0,
        last_progress: 0,
        progress_wanted: false,
        asked_etcd: false,
        retry_at: None,
        queue: VecDeque::new(),
        done: false,
    };
    let events = futures::stream::unfold(state, |mut state| async move {
        let item = state.step().await?;
        Some((item, state))
    });
    Ok(Watch {
        events: Box::pin(events),
        progress: Box::new(Requester {
            requests: progress_sender,
        }),
    })
}

/// Forwards progress requests to the stream's state.
struct Requester {
    requests: mpsc::UnboundedSender<()>,
}

#[async_trait]
impl ProgressRequester for Requester {
    async fn request_progress(&self) -> Result<()> {
        self.requests.send(()).map_err(|_| Error::Unavailable {
            backend: "etcd".into(),
            message: "the watch has ended".into(),
            source: None,
        })
    }
}

struct WatchState {
    etcd: Arc<Etcd>,
    prefix: String,
    range_end: Vec<u8>,
    requests: WatchRequestSender,
    responses: WatchResponseStream,
    progress: mpsc::UnboundedReceiver<()>,
    progress_open: bool,
    /// Every event up to this revision has been delivered, or is known not
    /// to exist.
    position: Revision,
    /// The revision of the last event delivered (0 before the first).
    last_event: Revision,
    /// The revision of the last progress notification delivered.
    last_progress: Revision,
    /// The consumer asked for progress and has not had it yet.
    progress_wanted: bool,
    /// A progress request is on its way to etcd.
    asked_etcd: bool,
    /// When to ask etcd again: after an answer could not be confirmed, or
    /// when a request has gone unanswered for [`PROGRESS_REASK`].
    retry_at: Option<Instant>,
    queue: VecDeque<WatchEvent>,
    done: bool,
}

impl WatchState {
    /// The step function: the next item of the stream, or `None` at its end.
    async fn step(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            if let Err(error) = self.advance().await {
                self.done = true;
                return Some(Err(error));
            }
        }
    }

    async fn advance(&mut self) -> Result<()> {
        let retry_at = self.retry_at;
        tokio::select! {
            biased;
            request = self.progress.recv(), if self.progress_open => match request {
                Some(()) => {
                    self.progress_wanted = true;
                    self.ask_etcd().await?;
                }
                None => self.progress_open = false,
            },
            () = sleep_until(retry_at), if retry_at.is_some() => {
                self.retry_at = None;
                if self.progress_wanted {
                    // Unanswered (dropped by etcd) or not confirmed: ask anew.
                    self.asked_etcd = false;
                    self.ask_etcd().await?;
                }
            }
            message = self.responses.message() => {
                let response = message
                    .map_err(|error| map_error(&self.etcd.backend, error))?
                    .ok_or_else(|| stream_ended(&self.etcd))?;
                self.handle(&response).await?;
            }
        }
        Ok(())
    }

    async fn ask_etcd(&mut self) -> Result<()> {
        if self.asked_etcd {
            return Ok(());
        }
        self.requests
            .request_progress()
            .await
            .map_err(|error| map_error(&self.etcd.backend, error))?;
        self.asked_etcd = true;
        self.retry_at = Some(Instant::now() + PROGRESS_REASK);
        Ok(())
    }

    async fn handle(&mut self, response: &WatchResponse) -> Result<()> {
        if response.canceled() {
            return Err(cancelled(&self.etcd, response, self.position));
        }
        if response.created() {
            return Ok(());
        }
        if response.events().is_empty() {
            // A progress answer: no events, etcd's current revision in the
            // header.
            self.asked_etcd = false;
            self.retry_at = None;
            if self.progress_wanted {
                let revision = self.etcd.header_revision(response.header())?;
                self.confirm_progress(revision).await?;
            }
            return Ok(());
        }
        for event in response.events() {
            let event = convert_event(event)?;
            if event.revision() <= self.last_progress {
                return Err(self.late_event(&event));
            }
            self.position = self.position.max(event.revision());
            self.last_event = self.last_event.max(event.revision());
            self.queue.push_back(event);
        }
        Ok(())
    }

    /// Passes etcd's progress answer on once it is known to be true: every
    /// event up to `revision` delivered.
    async fn confirm_progress(&mut self, revision: Revision) -> Result<()> {
        let confirmed = revision <= self.position || self.no_events_between(revision).await?;
        if !confirmed {
            self.retry_at = Some(Instant::now() + PROGRESS_RETRY);
            return Ok(());
        }
        self.position = self.position.max(revision);
        self.progress_wanted = false;
        self.last_progress = revision.max(self.last_event);
        self.queue.push_back(WatchEvent::Progress {
            revision: self.last_progress,
        });
        Ok(())
    }

    fn late_event(&self, event: &WatchEvent) -> Error {
        Error::Unavailable {
            backend: self.etcd.backend.clone(),
            message: format!(
                "etcd sent the event at revision {} after reporting progress to {} \
                 (etcd-io/etcd#15220); watch again from {}",
                event.revision(),
                self.last_progress,
                self.last_progress
            ),
            source: None,
        }
    }

    /// Whether no key in the range changed in `(position, revision]`: no key
    /// at `revision` was modified after `position`, and as many keys
    /// existed at `position` as at `revision` (so none was deleted).
    async fn no_events_between(&self, revision: Revision) -> Result<bool> {
        let newest = GetOptions::new()
            .with_range(self.range_end.clone())
            .with_revision(revision)
            .with_sort(SortTarget::Mod, SortOrder::Descend)
            .with_limit(1)
            .with_keys_only();
        let prefix = self.prefix.as_str();
        let read_newest = |mut client: Client| {
            let newest = newest.clone();
            async move { client.get(prefix, Some(newest)).await }
        };
        let at_revision = match self.etcd.call("progress check", read_newest).await {
            // Compacted meanwhile: ask etcd again for a newer revision.
            Err(Error::Compacted { .. }) => return Ok(false),
            other => other?,
        };
        let modified = at_revision.kvs().first().map_or(0, |kv| kv.mod_revision());
        if modified > self.position {
            return Ok(false);
        }
        let count_then = self.count_at(self.position).await?;
        Ok(count_then == at_revision.count())
    }

    /// How many keys the range held at `revision`. When that revision is
    /// compacted, the compaction point stands in for it: events older than
    /// a compaction were sent long before this check, or etcd would have
    /// cancelled the watch.
    async fn count_at(&self, revision: Revision) -> Result<i64> {
        if revision < 1 {
            return Ok(0);
        }
        let prefix = self.prefix.as_str();
        let range_end = &self.range_end;
        let count = |revision: Revision| {
            move |mut client: Client| {
                let options = GetOptions::new()
                    .with_range(range_end.clone())
                    .with_revision(revision)
                    .with_count_only();
                async move { client.get(prefix, Some(options)).await }
            }
        };
        match self.etcd.call("progress check", count(revision)).await {
            Ok(response) => Ok(response.count()),
            Err(Error::Compacted { .. }) => {
                let compacted = self.etcd.compacted_revision().await?;
                let response = self
                    .etcd
                    .call("progress check", count(compacted.max(revision)))
                    .await?;
                Ok(response.count())
            }
            Err(error) => Err(error),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// etcd cancelled the watch: because its start was compacted (the answer
/// names the compaction point), or for a reason it states.
fn cancelled(etcd: &Etcd, response: &WatchResponse, position: Revision) -> Error {
    if response.compact_revision() > 0 {
        etcd.saw_compaction(response.compact_revision());
        return Error::Compacted {
            requested: position + 1,
            compacted: response.compact_revision(),
        };
    }
    Error::Unavailable {
        backend: etcd.backend.clone(),
        message: format!("etcd cancelled the watch: {}", response.cancel_reason()),
        source: None,
    }
}

fn stream_ended(etcd: &Etcd) -> Error {
    Error::Unavailable {
        backend: etcd.backend.clone(),
        message: "etcd closed the watch stream".into(),
        source: None,
    }
}

fn convert_event(event: &etcd_client::Event) -> Result<WatchEvent> {
    let kv = event.kv().ok_or_else(|| Error::Corrupt {
        key: "(watch event)".into(),
        message: "etcd sent an event without a key".into(),
    })?;
    let prev = event.prev_kv().map(convert_kv).transpose()?;
    Ok(match event.event_type() {
        EventType::Put => WatchEvent::Put {
            kv: convert_kv(kv)?,
            prev,
        },
        EventType::Delete => WatchEvent::Delete {
            key: key_string(kv.key())?,
            revision: kv.mod_revision(),
            prev,
        },
    })
}
