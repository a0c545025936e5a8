//! The loop every event source runs (queue deliveries, key-value change
//! streams, schedules): a pass starts what is due as tasks, then the loop
//! sleeps until the pass's next due time, a wake-up, a finished task or
//! shutdown, and at least every [`POLL`]. Trusts its source's `pass` to
//! bound what it starts; holds nothing of its own beyond the task set.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

/// The longest the loop sleeps without a pass.
pub(crate) const POLL: Duration = Duration::from_secs(1);

/// An event source driven by [`run`] and [`pump`].
pub(crate) trait Passes: Send + Sync + 'static {
    /// Start what is due as tasks in `tasks`; answers when (ms on the
    /// source's clock) something else falls due, if known.
    fn next_pass(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
    ) -> impl Future<Output = Option<u64>> + Send;
    /// Now on the source's clock, in ms.
    fn now_ms(&self) -> u64;
    /// What wakes the loop before its sleep ends (new work), if anything.
    fn wake(&self) -> Option<&Notify>;
}

/// Pass until `shutdown`; tasks still running then are stopped (each source
/// leaves its work to be offered again: leases and visibility time out).
pub(crate) async fn run<S: Passes>(source: Arc<S>, mut shutdown: watch::Receiver<bool>) {
    let mut tasks = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let next = source.next_pass(&mut tasks).await;
        let now = source.now_ms();
        let sleep = next
            .map(|at| Duration::from_millis(at.saturating_sub(now)))
            .map_or(POLL, |d| d.min(POLL));
        let woken = async {
            match source.wake() {
                Some(wake) => wake.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => {}
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
        // Reap what finished without waiting.
        while tasks.try_join_next().is_some() {}
    }
    tasks.shutdown().await;
}

/// One pass whose tasks are awaited (tests): answers how many ran.
pub(crate) async fn pump<S: Passes>(source: &Arc<S>) -> usize {
    let mut tasks = JoinSet::new();
    source.next_pass(&mut tasks).await;
    let n = tasks.len();
    while tasks.join_next().await.is_some() {}
    n
}
