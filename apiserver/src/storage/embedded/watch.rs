//! Watches on the embedded store: a state machine that first replays the
//! history from the file, then follows the live feed of committed events,
//! with no gap and no duplicate between the two.
//!
//! It owns no thread or task: the stream does its work when polled, and
//! dropping it stops everything. It must not deliver an event twice or out
//! of order: `position` is the revision up to which every event has been
//! handled, and anything at or below it is skipped. A watcher too slow for
//! the live feed goes back to the file, and ends with `Compacted` if the
//! history it needs is gone by then.

use std::{
    collections::VecDeque,
    sync::{Arc, atomic::Ordering},
};

use async_trait::async_trait;
use tokio::sync::{
    broadcast::{self, error::RecvError},
    mpsc,
};

use super::{Shared, blocking, unavailable};
use crate::storage::{PreviousValues, ProgressRequester, Result, Revision, Watch, WatchEvent};

/// Starts a watch of `prefix` delivering events after `after`. The caller
/// subscribed `live` before checking the start, so no commit falls between
/// the file and the feed.
pub(super) fn start(
    shared: Arc<Shared>,
    live: broadcast::Receiver<Arc<[WatchEvent]>>,
    prefix: String,
    after: Revision,
    previous: PreviousValues,
) -> Watch {
    let (requests, progress) = mpsc::unbounded_channel();
    let state = WatchState {
        shared,
        live,
        prefix,
        previous,
        position: after,
        mode: Mode::CatchingUp,
        queue: VecDeque::new(),
        progress,
        progress_open: true,
        progress_target: None,
        done: false,
    };
    let events = futures::stream::unfold(state, |mut state| async move {
        let item = state.step().await?;
        Some((item, state))
    });
    Watch {
        events: Box::pin(events),
        progress: Box::new(Requester { requests }),
    }
}

/// Forwards progress requests to the stream's state.
struct Requester {
    requests: mpsc::UnboundedSender<()>,
}

#[async_trait]
impl ProgressRequester for Requester {
    async fn request_progress(&self) -> Result<()> {
        self.requests
            .send(())
            .map_err(|_| crate::storage::Error::Unavailable {
                backend: "embedded".into(),
                message: "the watch has ended".into(),
                source: None,
            })
    }
}

/// Where the events come from next.
enum Mode {
    /// Reading the history from the file, a chunk at a time.
    CatchingUp,
    /// Taking commits from the live feed.
    Live,
}

struct WatchState {
    shared: Arc<Shared>,
    live: broadcast::Receiver<Arc<[WatchEvent]>>,
    prefix: String,
    previous: PreviousValues,
    /// Every event with a revision up to here has been queued or skipped.
    position: Revision,
    mode: Mode,
    /// Events read but not yet handed out.
    queue: VecDeque<WatchEvent>,
    progress: mpsc::UnboundedReceiver<()>,
    /// Whether a progress requester still exists.
    progress_open: bool,
    /// The committed revision when progress was asked for; the notification
    /// is due once `position` reaches it.
    progress_target: Option<Revision>,
    /// An error has been returned; the stream ends.
    done: bool,
}

impl WatchState {
    /// The step function: the next item of the stream, or `None` at its end.
    async fn step(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(Ok(self.previous.apply(event)));
            }
            if self.done {
                return None;
            }
            while let Ok(()) = self.progress.try_recv() {
                self.note_progress_request();
            }
            if let Some(progress) = self.progress_due() {
                return Some(Ok(progress));
            }
            let advanced = match self.mode {
                Mode::CatchingUp => self.catch_up().await,
                Mode::Live => self.follow().await,
            };
            if let Err(error) = advanced {
                self.done = true;
                return Some(Err(error));
            }
        }
    }

    fn note_progress_request(&mut self) {
        // Everything committed up to here is already in the feed or in the
        // file (the writer stores `committed` after sending).
        let committed = self.shared.committed.load(Ordering::Acquire);
        self.progress_target = Some(self.progress_target.unwrap_or(0).max(committed));
    }

    fn progress_due(&mut self) -> Option<WatchEvent> {
        let target = self.progress_target?;
        if self.position < target {
            return None;
        }
        self.progress_target = None;
        // `position` may be ahead of `committed` for a watch that starts in
        // the future; never report a revision the store has not reached.
        let committed = self.shared.committed.load(Ordering::Acquire);
        Some(WatchEvent::Progress {
            revision: self.position.min(committed).max(target),
        })
    }

    async fn catch_up(&mut self) -> Result<()> {
        let shared = self.shared.clone();
        let prefix = self.prefix.clone();
        let position = self.position;
        let chunk = blocking(move || shared.read_history(&prefix, position)).await?;
        self.queue.extend(chunk.events);
        self.position = self.position.max(chunk.read_up_to);
        if chunk.read_up_to >= chunk.current {
            self.mode = Mode::Live;
        }
        Ok(())
    }

    async fn follow(&mut self) -> Result<()> {
        tokio::select! {
            // Progress requests first: they only set a target, and must not
            // starve behind a busy feed.
            biased;
            request = self.progress.recv(), if self.progress_open => match request {
                Some(()) => self.note_progress_request(),
                None => self.progress_open = false,
            },
            batch = self.live.recv() => match batch {
                Ok(events) => self.accept(&events),
                // Too slow for the feed: what was missed is in the file.
                Err(RecvError::Lagged(_)) => self.mode = Mode::CatchingUp,
                Err(RecvError::Closed) => {
                    return Err(unavailable(&self.shared.path, "the store has been closed", None));
                }
            },
        }
        Ok(())
    }

    /// Takes one commit's events from the feed, skipping those already
    /// handled (read from the file before switching to the feed).
    fn accept(&mut self, events: &[WatchEvent]) {
        for event in events {
            let revision = event.revision();
            if revision <= self.position {
                continue;
            }
            if event.key().is_some_and(|key| key.starts_with(&self.prefix)) {
                self.queue.push_back(event.clone());
            }
            self.position = revision;
        }
    }
}
