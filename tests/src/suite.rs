//! One suite at a time inside the one end-to-end test binary.
//!
//! `tests/tests/e2e/` is a single test binary with a module per suite
//! (`faults`, `aggregated`, `kubectl_suite`, ...), so that the tree is linked
//! once rather than once per suite. libtest runs a binary's tests on
//! parallel threads (one per core unless `--test-threads` says otherwise),
//! while cargo used to run the former per-suite binaries one after the
//! other. The heavy suites (a kube-apiserver with NetworkManager nodes, an
//! etcd cluster with apiserver replicas, benchmarks, schemathesis) size
//! their timeouts for having the machine to themselves, beside at most the
//! other tests of their own suite; on a 2-core machine two of them side by
//! side would time out.
//!
//! So every test opens with
//!
//! ```text
//! let _turn = nmstate_e2e::suite::turn(module_path!());
//! ```
//!
//! which keeps the old concurrency: tests of the suite that holds the turn
//! run together, as they did inside their own binary; a test of another
//! suite waits until the last test of that suite has ended. Suites take
//! their turns in the order their first test asked (libtest starts tests in
//! name order, so that is the order of the modules). A test waiting for its
//! turn counts toward libtest's "running for over 60 seconds" notice.

use std::{
    collections::VecDeque,
    sync::{Condvar, Mutex, MutexGuard, PoisonError},
};

/// Which suite holds the turn, and which wait for one.
#[derive(Debug, Default)]
struct Turns {
    /// The suite whose tests may run.
    current: Option<String>,
    /// How many of its tests are running.
    running: usize,
    /// Suites waiting, in the order they first asked.
    waiting: VecDeque<String>,
}

impl Turns {
    /// Whether a test of `suite` may start now.
    fn admits(&self, suite: &str) -> bool {
        match &self.current {
            Some(current) => current == suite,
            None => self
                .waiting
                .front()
                .is_none_or(|first| first.as_str() == suite),
        }
    }

    /// Starts a test of `suite`, which [`Turns::admits`].
    fn start(&mut self, suite: &str) {
        if self.current.is_none() {
            self.waiting.retain(|waiting| waiting != suite);
            self.current = Some(suite.to_owned());
        }
        self.running += 1;
    }

    /// Ends a test of the current suite; true when the turn passes on.
    fn end(&mut self) -> bool {
        self.running = self.running.saturating_sub(1);
        if self.running > 0 {
            return false;
        }
        self.current = None;
        true
    }
}

static TURNS: Mutex<Turns> = Mutex::new(Turns {
    current: None,
    running: 0,
    waiting: VecDeque::new(),
});
static TURN_ENDED: Condvar = Condvar::new();

fn turns() -> MutexGuard<'static, Turns> {
    // Nothing panics while holding the lock; a poisoned lock still holds
    // consistent counts.
    TURNS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The suite of a test module path: the module below the test crate
/// (`e2e::kubectl_suite::etcd` is suite `kubectl_suite`).
pub fn suite_of(module_path: &str) -> &str {
    let mut parts = module_path.split("::");
    let crate_name = parts.next().unwrap_or_default();
    parts.next().unwrap_or(crate_name)
}

/// A running test's share of its suite's turn; dropping it (also when the
/// test panics) may pass the turn on.
#[derive(Debug)]
#[must_use = "the turn ends when this is dropped"]
pub struct Turn(());

/// Waits until tests of the suite of `module_path` (the caller's
/// `module_path!()`) may run, and returns the share of the turn that the
/// test keeps until it ends.
pub fn turn(module_path: &str) -> Turn {
    let suite = suite_of(module_path);
    let mut turns = turns();
    while !turns.admits(suite) {
        if !turns.waiting.iter().any(|waiting| waiting == suite) {
            turns.waiting.push_back(suite.to_owned());
        }
        turns = TURN_ENDED
            .wait(turns)
            .unwrap_or_else(PoisonError::into_inner);
    }
    turns.start(suite);
    Turn(())
}

impl Drop for Turn {
    fn drop(&mut self) {
        if turns().end() {
            TURN_ENDED.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suite_is_the_module_below_the_crate() {
        for (path, suite) in [
            ("e2e::faults", "faults"),
            ("e2e::kubectl_suite::etcd", "kubectl_suite"),
            ("e2e", "e2e"),
        ] {
            assert_eq!(suite_of(path), suite, "{path}");
        }
    }

    #[test]
    fn suites_take_turns_in_the_order_they_asked() {
        let mut turns = Turns::default();
        assert!(turns.admits("a"), "the first suite starts at once");
        turns.start("a");
        turns.start("a");
        assert!(turns.admits("a"), "a suite's tests run together");
        // b then c ask while a runs.
        assert!(!turns.admits("b"));
        turns.waiting.push_back("b".to_owned());
        assert!(!turns.admits("c"));
        turns.waiting.push_back("c".to_owned());
        assert!(!turns.end(), "a still has a test running");
        assert!(!turns.admits("b"), "b waits for a's last test");
        assert!(turns.end(), "a's last test passes the turn on");
        assert!(!turns.admits("c"), "c asked after b");
        assert!(turns.admits("b"));
        turns.start("b");
        assert_eq!(turns.waiting, ["c"]);
        assert!(!turns.admits("c"));
        assert!(turns.end());
        assert!(turns.admits("c"));
    }

    #[test]
    fn a_test_of_another_suite_waits_for_the_turn() {
        let first = turn("e2e::first");
        let (started, second_started) = std::sync::mpsc::channel();
        let second = std::thread::spawn(move || {
            let _turn = turn("e2e::second");
            let _ = started.send(());
        });
        // The second test queues itself only after it was refused.
        while !turns().waiting.iter().any(|suite| suite == "second") {
            assert!(
                second_started.try_recv().is_err(),
                "second started during first's turn"
            );
            std::thread::yield_now();
        }
        drop(first);
        second_started
            .recv()
            .unwrap_or_else(|error| panic!("second never started: {error}"));
        second
            .join()
            .unwrap_or_else(|_| panic!("the second suite's thread panicked"));
        assert_eq!(turns().current, None, "the turn ended with the test");
    }
}
