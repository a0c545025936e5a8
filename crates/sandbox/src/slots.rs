//! Instance slots: how many guests run at once, in all and per tenant, and
//! who gets the next free slot.
//!
//! The pooling allocator has a fixed number of instance slots
//! ([`crate::SandboxConfig::max_instances`]). Left to a plain semaphore,
//! one tenant (or one request fanning out through function-to-function
//! calls) could hold all of them and make every other tenant wait. Here a
//! tenant holds at most [`crate::SandboxConfig::max_instances_per_tenant`]
//! slots at once, and waiting tenants are served round-robin: when a slot
//! frees, the next tenant in the ring that is below its share gets it, then
//! goes to the back of the ring. Within one tenant waiters are served in
//! arrival order.
//!
//! # Trust
//! Trusts its caller to name the tenant the function belongs to (the
//! admitted manifest's). Holds no guest data.
//!
//! # Guarantees
//! - At most `total` permits exist at once, and at most `per_tenant` for
//!   one tenant.
//! - A permit gives its slot back when dropped, wherever it is (in the
//!   guest's task, or in a channel whose waiter went away).
//! - A waiter that gives up (its future is dropped) leaves nothing behind:
//!   a slot handed to it as it left goes to the next waiter.
//! - While a slot is free, no waiting tenant is below its share (every
//!   release hands slots out before returning).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// The slot pool of one sandbox.
#[derive(Debug)]
pub(crate) struct Slots {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    total: usize,
    per_tenant: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    free: usize,
    /// Slots held per tenant (absent = 0).
    held: HashMap<Arc<str>, usize>,
    /// Waiters per tenant, oldest first.
    waiting: HashMap<Arc<str>, VecDeque<oneshot::Sender<SlotPermit>>>,
    /// Tenants with waiters, in the order they are to be served.
    ring: VecDeque<Arc<str>>,
}

/// One instance slot, held by one tenant until dropped.
#[derive(Debug)]
pub(crate) struct SlotPermit {
    inner: Arc<Inner>,
    tenant: Arc<str>,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        self.inner.release(&self.tenant);
    }
}

impl Slots {
    /// `total` slots in all, at most `per_tenant` (at least 1, at most
    /// `total`) for one tenant.
    pub(crate) fn new(total: usize, per_tenant: usize) -> Slots {
        let per_tenant = per_tenant.clamp(1, total.max(1));
        Slots {
            inner: Arc::new(Inner {
                total,
                per_tenant,
                state: Mutex::new(State {
                    free: total,
                    ..State::default()
                }),
            }),
        }
    }

    /// The most slots one tenant holds at once.
    #[cfg(test)]
    pub(crate) fn per_tenant(&self) -> usize {
        self.inner.per_tenant
    }

    /// Wait for a slot for `tenant`. Dropping the future gives up the wait
    /// (and any slot handed over meanwhile). Returns `None` only if the
    /// pool is gone, which cannot happen while `self` lives.
    pub(crate) async fn acquire(&self, tenant: &str) -> Option<SlotPermit> {
        let receiver = {
            let mut state = self.inner.lock();
            let tenant: Arc<str> = match state.held.get_key_value(tenant) {
                Some((name, _)) => name.clone(),
                None => Arc::from(tenant),
            };
            let held = state.held.get(&tenant).copied().unwrap_or(0);
            // INVARIANT (see the module docs): a free slot means no waiter
            // is eligible for it, so taking it here jumps no queue.
            if state.free > 0 && held < self.inner.per_tenant {
                state.free = state.free.saturating_sub(1);
                *state.held.entry(tenant.clone()).or_insert(0) += 1;
                return Some(SlotPermit {
                    inner: self.inner.clone(),
                    tenant,
                });
            }
            let (sender, receiver) = oneshot::channel();
            let queue = state.waiting.entry(tenant.clone()).or_default();
            if queue.is_empty() {
                state.ring.push_back(tenant.clone());
            }
            if let Some(queue) = state.waiting.get_mut(&tenant) {
                queue.push_back(sender);
            }
            Waiter {
                inner: self.inner.clone(),
                tenant,
                receiver: Some(receiver),
            }
        };
        let mut waiter = receiver;
        let receiver = waiter.receiver.as_mut()?;
        receiver.await.ok()
    }

    /// Slots held now, across tenants (a gauge for the metrics; takes the pool's lock).
    pub(crate) fn in_use(&self) -> usize {
        self.inner.total.saturating_sub(self.inner.lock().free)
    }

    #[cfg(test)]
    fn held(&self, tenant: &str) -> usize {
        self.inner.lock().held.get(tenant).copied().unwrap_or(0)
    }

    #[cfg(test)]
    fn free(&self) -> usize {
        self.inner.lock().free
    }
}

/// A queued wait; on drop it removes its own (now closed) entry.
struct Waiter {
    inner: Arc<Inner>,
    tenant: Arc<str>,
    receiver: Option<oneshot::Receiver<SlotPermit>>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        // Drop the receiver first, outside the lock: a permit sent to it
        // just now is dropped with it and goes back to the pool.
        drop(self.receiver.take());
        let mut state = self.inner.lock();
        let emptied = match state.waiting.get_mut(&self.tenant) {
            Some(queue) => {
                queue.retain(|sender| !sender.is_closed());
                queue.is_empty()
            }
            None => false,
        };
        if emptied {
            state.waiting.remove(&self.tenant);
            state.ring.retain(|t| *t != self.tenant);
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the counts half
        // updated (each update is a single statement), so a poisoned lock
        // is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn release(self: &Arc<Self>, tenant: &Arc<str>) {
        let grants = {
            let mut state = self.lock();
            let now_held = match state.held.get_mut(tenant) {
                Some(held) => {
                    *held = held.saturating_sub(1);
                    *held
                }
                None => 0,
            };
            if now_held == 0 {
                state.held.remove(tenant);
            }
            state.free = state.free.saturating_add(1).min(self.total);
            self.dispatch(&mut state)
        };
        // Hand the slots over outside the lock: a waiter that left returns
        // its permit, whose drop releases (and dispatches) again.
        for (sender, permit) in grants {
            if let Err(permit) = sender.send(permit) {
                drop(permit);
            }
        }
    }

    /// Give free slots to waiting tenants below their share, round-robin.
    fn dispatch(
        self: &Arc<Self>,
        state: &mut State,
    ) -> Vec<(oneshot::Sender<SlotPermit>, SlotPermit)> {
        let mut grants = Vec::new();
        // Tenants looked at since the last grant; once every tenant in the
        // ring is at its share, stop.
        let mut passed = 0;
        while state.free > 0 && passed < state.ring.len() {
            let Some(tenant) = state.ring.pop_front() else {
                break;
            };
            let held = state.held.get(&tenant).copied().unwrap_or(0);
            let Some(queue) = state.waiting.get_mut(&tenant) else {
                continue;
            };
            while queue.front().is_some_and(oneshot::Sender::is_closed) {
                queue.pop_front();
            }
            if queue.is_empty() {
                state.waiting.remove(&tenant);
                continue;
            }
            if held >= self.per_tenant {
                state.ring.push_back(tenant);
                passed += 1;
                continue;
            }
            let Some(sender) = queue.pop_front() else {
                continue;
            };
            let more = !queue.is_empty();
            if !more {
                state.waiting.remove(&tenant);
            }
            state.free = state.free.saturating_sub(1);
            *state.held.entry(tenant.clone()).or_insert(0) += 1;
            grants.push((
                sender,
                SlotPermit {
                    inner: self.clone(),
                    tenant: tenant.clone(),
                },
            ));
            if more {
                state.ring.push_back(tenant);
            }
            passed = 0;
        }
        grants
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn pending<F: std::future::Future>(f: F) -> bool {
        tokio::time::timeout(Duration::from_millis(50), f)
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_tenant_holds_at_most_its_share() {
        let slots = Slots::new(4, 2);
        let a1 = slots.acquire("a").await.unwrap();
        let _a2 = slots.acquire("a").await.unwrap();
        assert!(pending(slots.acquire("a")).await, "a third slot for `a`");
        // Another tenant is served at once meanwhile.
        let _b1 = slots.acquire("b").await.unwrap();
        assert_eq!(slots.held("a"), 2);
        assert_eq!(slots.free(), 1);
        drop(a1);
        assert!(slots.acquire("a").await.is_some());
    }

    #[tokio::test]
    async fn a_tenant_at_its_share_waits_while_another_is_served() {
        let slots = Arc::new(Slots::new(2, 1));
        let _a = slots.acquire("a").await.unwrap();
        let b = slots.acquire("b").await.unwrap();
        // `a` queues first, then `c`; `a` is at its share, so when `b`'s
        // slot frees it goes to `c`.
        let s = slots.clone();
        let a_wait = tokio::spawn(async move { s.acquire("a").await.map(drop) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let s = slots.clone();
        let c_wait = tokio::spawn(async move { s.acquire("c").await.map(drop) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(b);
        assert!(tokio::time::timeout(Duration::from_secs(5), c_wait)
            .await
            .unwrap()
            .unwrap()
            .is_some());
        assert!(!a_wait.is_finished());
        a_wait.abort();
    }

    #[tokio::test]
    async fn waiting_tenants_are_served_round_robin() {
        let slots = Arc::new(Slots::new(1, 1));
        let first = slots.acquire("x").await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // `a` queues three waiters before `b` queues one: `b` must not wait
        // for all of `a`'s.
        for tenant in ["a", "a", "a", "b"] {
            let s = slots.clone();
            let o = order.clone();
            tasks.push(tokio::spawn(async move {
                let permit = s.acquire(tenant).await.unwrap();
                o.lock().unwrap().push(tenant);
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(permit);
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(first);
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .unwrap()
                .unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["a", "b", "a", "a"]);
        assert_eq!(slots.free(), 1);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaks_no_slot() {
        let slots = Arc::new(Slots::new(1, 1));
        let held = slots.acquire("a").await.unwrap();
        // Gives up while waiting.
        assert!(pending(slots.acquire("b")).await);
        // Is handed the slot and dropped before it runs.
        let s = slots.clone();
        let waiter = tokio::spawn(async move { s.acquire("c").await.map(drop) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiter.abort();
        drop(held);
        let _ = waiter.await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(slots.free(), 1);
        assert!(slots.inner.lock().waiting.is_empty());
        assert!(slots.inner.lock().ring.is_empty());
        let again = tokio::time::timeout(Duration::from_secs(1), slots.acquire("d"))
            .await
            .unwrap();
        assert!(again.is_some());
    }

    #[test]
    fn the_share_is_clamped_to_the_pool() {
        assert_eq!(Slots::new(4, 0).per_tenant(), 1);
        assert_eq!(Slots::new(4, 9).per_tenant(), 4);
    }
}
