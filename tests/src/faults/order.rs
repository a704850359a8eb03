//! Puts what the two watches saw into one order, by revision, so that the
//! checker sees the cluster as it was at each revision (a policy's status
//! and its enactments' come from different watches).
//!
//! Both watches are served from the same store revisions, and each
//! delivers in order; an event is handed on once it is the oldest one
//! waiting and has waited `hold` (long enough for the other watch's older
//! events, if any, to have arrived), and never while another watch is
//! reconnecting (it will replay what it missed, older events first)
//! unless that watch has listed again at a revision no older (after
//! `410 Gone`: its list stands for the state from then on).
//! [`Merger::flush`] hands on everything, at the end. An event that still
//! arrives older than one already handed on is counted in
//! [`Merger::late`]: it says the order was not exact (the report shows it).

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

use super::watch::{Kind, Seen};

/// The merge of the policy and enactment watches.
#[derive(Debug)]
pub struct Merger {
    queues: BTreeMap<Kind, VecDeque<(Instant, Seen)>>,
    connected: BTreeMap<Kind, bool>,
    hold: Duration,
    handed_on: i64,
    /// Events that arrived after a newer one had been handed on.
    pub late: u64,
    /// Since when each disconnected watch has been reconnecting.
    disconnected_since: BTreeMap<Kind, Instant>,
    /// The longest time a watch took to reconnect.
    pub longest_reconnect: Duration,
    /// The most events waiting at once.
    pub most_waiting: usize,
}

fn revision(seen: &Seen) -> Option<i64> {
    match seen {
        Seen::Listed { revision, .. } | Seen::Event { revision, .. } => Some(*revision),
        Seen::Connected { .. } | Seen::Ended { .. } => None,
    }
}

impl Merger {
    /// A merger of `kinds` that holds each event for `hold`.
    pub fn new(kinds: &[Kind], hold: Duration) -> Self {
        Self {
            queues: kinds.iter().map(|k| (*k, VecDeque::new())).collect(),
            connected: kinds.iter().map(|k| (*k, false)).collect(),
            hold,
            handed_on: 0,
            late: 0,
            disconnected_since: BTreeMap::new(),
            longest_reconnect: Duration::ZERO,
            most_waiting: 0,
        }
    }

    /// Takes what a watch saw.
    pub fn push(&mut self, seen: Seen, now: Instant) {
        let kind = seen.kind();
        match &seen {
            Seen::Ended { .. } => {
                self.disconnected_since.entry(kind).or_insert(now);
            }
            Seen::Connected { .. } => {
                if let Some(since) = self.disconnected_since.remove(&kind) {
                    self.longest_reconnect = self.longest_reconnect.max(now - since);
                }
            }
            _ => {}
        }
        self.queues.entry(kind).or_default().push_back((now, seen));
        let waiting = self.queues.values().map(VecDeque::len).sum();
        self.most_waiting = self.most_waiting.max(waiting);
    }

    /// Everything that may be handed on at `now`, in order.
    pub fn ready(&mut self, now: Instant) -> Vec<Seen> {
        self.take(Some(now))
    }

    /// Everything, in order.
    pub fn flush(&mut self) -> Vec<Seen> {
        self.take(None)
    }

    fn take(&mut self, now: Option<Instant>) -> Vec<Seen> {
        let mut out = Vec::new();
        loop {
            // Connection changes go first, in their watch's order.
            let mut moved = false;
            for (kind, queue) in &mut self.queues {
                while let Some((_, seen)) = queue.front() {
                    match seen {
                        Seen::Connected { .. } => {
                            self.connected.insert(*kind, true);
                        }
                        Seen::Ended { .. } => {
                            self.connected.insert(*kind, false);
                        }
                        _ => break,
                    }
                    if let Some((_, seen)) = queue.pop_front() {
                        out.push(seen);
                        moved = true;
                    }
                }
            }
            let oldest = self
                .queues
                .iter()
                .filter_map(|(kind, queue)| {
                    queue
                        .front()
                        .and_then(|(at, seen)| Some((revision(seen)?, *at, *kind)))
                })
                .min_by_key(|(revision, _, _)| *revision);
            let Some((revision, arrived, kind)) = oldest else {
                if moved {
                    continue;
                }
                return out;
            };
            if let Some(now) = now {
                // Every other watch must be live, or about to hand on a
                // list no older than this event (its state from then on).
                let others_caught_up = self
                    .queues
                    .iter()
                    .filter(|(other, _)| **other != kind)
                    .all(|(other, queue)| {
                        self.connected.get(other).copied().unwrap_or(false)
                            || matches!(queue.front(),
                                Some((_, Seen::Listed { revision: listed, .. })) if *listed >= revision)
                    });
                if !others_caught_up || now.duration_since(arrived) < self.hold {
                    return out;
                }
            }
            if revision < self.handed_on {
                self.late += 1;
            }
            self.handed_on = self.handed_on.max(revision);
            if let Some((_, seen)) = self.queues.get_mut(&kind).and_then(VecDeque::pop_front) {
                out.push(seen);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn event(kind: Kind, revision: i64) -> Seen {
        Seen::Event {
            kind,
            stream: 1,
            kind_of_event: "MODIFIED".into(),
            revision,
            object: json!({}),
        }
    }

    fn connected(kind: Kind) -> Seen {
        Seen::Connected {
            kind,
            stream: 1,
            from: 0,
        }
    }

    fn revisions(seen: &[Seen]) -> Vec<i64> {
        seen.iter().filter_map(revision).collect()
    }

    const HOLD: Duration = Duration::from_secs(1);

    #[test]
    fn events_of_both_watches_come_out_in_revision_order_after_the_hold() {
        let mut merger = Merger::new(&[Kind::Policy, Kind::Enactment], HOLD);
        let start = Instant::now();
        merger.push(connected(Kind::Policy), start);
        merger.push(connected(Kind::Enactment), start);
        merger.push(event(Kind::Policy, 5), start);
        merger.push(event(Kind::Enactment, 3), start);
        merger.push(event(Kind::Enactment, 7), start + HOLD);
        assert_eq!(revisions(&merger.ready(start)), Vec::<i64>::new());
        assert_eq!(revisions(&merger.ready(start + HOLD)), [3, 5]);
        assert_eq!(revisions(&merger.ready(start + 2 * HOLD)), [7]);
        assert_eq!(merger.late, 0);
    }

    #[test]
    fn nothing_is_handed_on_while_a_watch_reconnects() {
        let mut merger = Merger::new(&[Kind::Policy, Kind::Enactment], HOLD);
        let start = Instant::now();
        merger.push(connected(Kind::Policy), start);
        merger.push(connected(Kind::Enactment), start);
        merger.push(
            Seen::Ended {
                kind: Kind::Enactment,
                stream: 1,
                reason: "ended".into(),
            },
            start,
        );
        merger.push(event(Kind::Policy, 9), start);
        let later = start + 10 * HOLD;
        assert_eq!(revisions(&merger.ready(later)), Vec::<i64>::new());
        // The enactment watch comes back and replays what it missed.
        merger.push(connected(Kind::Enactment), later);
        merger.push(event(Kind::Enactment, 8), later);
        assert_eq!(revisions(&merger.ready(later + HOLD)), [8, 9]);
        assert_eq!(merger.late, 0);
    }

    #[test]
    fn a_watch_that_lists_again_does_not_hold_the_other_back() {
        let mut merger = Merger::new(&[Kind::Policy, Kind::Enactment], HOLD);
        let start = Instant::now();
        merger.push(connected(Kind::Policy), start);
        merger.push(connected(Kind::Enactment), start);
        let ended = Seen::Ended {
            kind: Kind::Enactment,
            stream: 1,
            reason: "410 Gone".into(),
        };
        merger.push(ended, start);
        let listed = Seen::Listed {
            kind: Kind::Enactment,
            revision: 10,
            objects: Vec::new(),
        };
        merger.push(listed, start);
        merger.push(connected(Kind::Enactment), start);
        merger.push(event(Kind::Enactment, 11), start);
        merger.push(event(Kind::Policy, 9), start);
        merger.push(event(Kind::Policy, 12), start);
        assert_eq!(revisions(&merger.ready(start + HOLD)), [9, 10, 11, 12]);
        assert_eq!(merger.late, 0);
    }

    #[test]
    fn an_event_older_than_one_handed_on_is_counted_late() {
        let mut merger = Merger::new(&[Kind::Policy, Kind::Enactment], HOLD);
        let start = Instant::now();
        merger.push(event(Kind::Policy, 9), start);
        assert_eq!(revisions(&merger.flush()), [9]);
        merger.push(event(Kind::Enactment, 8), start);
        assert_eq!(revisions(&merger.flush()), [8]);
        assert_eq!(merger.late, 1);
    }
}
