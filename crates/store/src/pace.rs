//! Manners for the platform's background threads (the audit indexer, flusher and tree,
//! the invocation-log writer): work that no request waits for must not hold a core while
//! a thread that a request does wait for is ready to run.
//!
//! Responsible for: the niceness those threads run at, and a pacer they call between
//! units of work that gives the core up once a short quantum of work has passed.
//!
//! Why both: on Linux (EEVDF), a task that is picked runs until it has used its slice
//! unless a woken task's deadline is earlier, and a niced task's slice is not shorter in
//! wall time, only its share. Measured on two cores at one connection (BENCHMARKS.md,
//! "Background work and the one-connection tail"): a woken request thread waited 1 to 5
//! ms behind the indexer (nice 10) and the tree's hashing (nice 0) on its core while the
//! other core was idle. A `sched_yield` between units of work ends such a wait within a
//! quantum, costs one system call when nothing else is ready, and needs no privilege
//! (unlike `SCHED_IDLE`, which an unprivileged thread cannot leave, or a nice value it
//! cannot lower again).
//!
//! Trusts nothing; it decides only when to yield.

use std::time::{Duration, Instant};

/// The niceness of background threads: they get about a tenth of a core that
/// request threads also want, and all of an idle one.
pub const BACKGROUND_NICE: i32 = 10;

/// Longest stretch of background work between two yields.
pub const QUANTUM: Duration = Duration::from_micros(100);

/// Lower the calling thread's priority to [`BACKGROUND_NICE`] (Linux: `setpriority` with
/// `who` 0 applies to the calling thread, not the process). For threads of their own:
/// a nice value cannot be lowered again without privilege, so never on a pooled thread.
pub fn behind_requests() {
    if let Err(error) = rustix::process::setpriority_process(None, BACKGROUND_NICE) {
        tracing::debug!(%error, "cannot lower a background thread's priority");
    }
}

/// Yields the core between units of background work once a [`QUANTUM`] has passed.
#[derive(Debug)]
pub struct Pace {
    since: Instant,
}

impl Default for Pace {
    fn default() -> Self {
        Pace::new()
    }
}

impl Pace {
    /// A pacer whose first quantum starts now.
    pub fn new() -> Pace {
        Pace {
            since: Instant::now(),
        }
    }

    /// Call between units of work: yields when a quantum has passed since the last yield.
    /// Returns whether it yielded.
    pub fn step(&mut self) -> bool {
        self.step_at(Instant::now())
    }

    fn step_at(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.since) < QUANTUM {
            return false;
        }
        std::thread::yield_now();
        self.since = Instant::now();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_only_once_a_quantum_has_passed() {
        let start = Instant::now();
        let mut pace = Pace { since: start };
        assert!(!pace.step_at(start));
        assert!(!pace.step_at(start + QUANTUM / 2));
        assert!(pace.step_at(start + QUANTUM));
        // The next quantum starts at the yield.
        let after = pace.since;
        assert!(after >= start);
        assert!(!pace.step_at(after + QUANTUM / 2));
        assert!(pace.step_at(after + QUANTUM * 3));
    }

    #[test]
    fn a_clock_that_went_backwards_does_not_yield() {
        let start = Instant::now() + QUANTUM * 10;
        let mut pace = Pace { since: start };
        assert!(!pace.step_at(Instant::now()));
    }

    #[test]
    fn lowering_the_priority_raises_this_threads_nice_value() {
        let before = rustix::process::getpriority_process(None).unwrap();
        // On a thread of its own: the nice value cannot be lowered again.
        let nice = std::thread::spawn(|| {
            behind_requests();
            rustix::process::getpriority_process(None)
        })
        .join()
        .unwrap()
        .unwrap();
        assert!(nice >= BACKGROUND_NICE, "nice {nice}");
        // This thread is untouched.
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), before);
    }
}
