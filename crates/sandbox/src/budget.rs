//! The host memory budget: bytes the host holds on a guest's behalf.
//!
//! A guest's linear memory is capped by its `memory_mb`, but what it asks
//! the host to hold lives outside that memory: header fields it builds,
//! key-value results, outbound request and response bodies, its captured
//! stdout/stderr, the response body being collected, resource-table
//! entries. Each of those is charged here before the host holds it.
//!
//! # The bound
//! - Per invocation, [`invocation_budget`]:
//!   `clamp(2 × memory_mb MiB, 16 MiB, 128 MiB)`. The floor lets a small
//!   guest still send or receive a request of a few MiB; the ceiling keeps
//!   one invocation from owning the host.
//! - Across the platform, every charge is also drawn from one global
//!   budget ([`crate::SandboxConfig::max_host_bytes`], 1 GiB by default):
//!   whatever the number of concurrent invocations, the host holds at most
//!   `min(max_host_bytes, max_instances × 128 MiB)` for guests.
//!
//! Some charges are held and given back ([`Reservation`]: a key-value
//! result while it is copied to the guest, a response body until the guest
//! drops it); header bytes are cumulative ([`HostBudget::charge`]) because
//! a `fields` resource a guest drops may live on in a request or response
//! built from it.
//!
//! # Trust
//! Trusts nothing from the guest: sizes are what the host measured. A
//! refusal is reported to the platform once per invocation
//! ([`HostCapabilities::refused`]) so that a guest that loops on a refused
//! call does not flood the audit log.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::host_interface::{HostCapabilities, SandboxRefusal};

/// Bytes in a MiB.
const MIB: usize = 1 << 20;
/// Smallest per-invocation budget, whatever the function's `memory_mb`.
pub const BUDGET_FLOOR: usize = 16 * MIB;
/// Largest per-invocation budget, whatever the function's `memory_mb`.
pub const BUDGET_CEILING: usize = 128 * MIB;
/// Live entries one invocation's resource table may hold (handles to
/// fields, requests, bodies, streams, pollables, buckets). wasmtime's
/// default is 1,000,000; real guests hold a few dozen.
pub const MAX_TABLE_ENTRIES: usize = 4096;
/// What the budget sets aside for each resource-table entry (the entry and
/// its boxed host object; bytes the object holds are charged on their
/// own): [`MAX_TABLE_ENTRIES`] of them are reserved up front.
pub const TABLE_ENTRY_BYTES: usize = 256;

/// The per-invocation budget of a function with `memory_mb` MiB of linear
/// memory (see the module docs for the formula).
pub fn invocation_budget(memory_mb: u32) -> usize {
    usize::try_from(memory_mb)
        .unwrap_or(usize::MAX)
        .saturating_mul(2 * MIB)
        .clamp(BUDGET_FLOOR, BUDGET_CEILING)
}

/// Bytes held for guests across the whole sandbox.
#[derive(Debug)]
pub(crate) struct GlobalBudget {
    limit: usize,
    used: AtomicUsize,
}

impl GlobalBudget {
    pub(crate) fn new(limit: usize) -> Arc<GlobalBudget> {
        Arc::new(GlobalBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    fn take(&self, bytes: usize) -> bool {
        take(&self.used, self.limit, bytes)
    }

    fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Add `bytes` to `used` unless that passes `limit`.
fn take(used: &AtomicUsize, limit: usize, bytes: usize) -> bool {
    used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
        now.checked_add(bytes).filter(|&total| total <= limit)
    })
    .is_ok()
}

/// The budget of one invocation; cheap to clone (all clones share it).
#[derive(Clone)]
pub struct HostBudget {
    inner: Arc<Inner>,
}

struct Inner {
    limit: usize,
    used: AtomicUsize,
    global: Arc<GlobalBudget>,
    host: Arc<dyn HostCapabilities>,
    /// A refusal was reported already (reported once per invocation).
    reported: AtomicBool,
    /// Some charge was refused: the invocation's failure is the budget's.
    exceeded: AtomicBool,
}

impl std::fmt::Debug for HostBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostBudget")
            .field("limit", &self.inner.limit)
            .field("used", &self.inner.used.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A charge was refused. The message names the interface and the budget,
/// never guest data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} needs {bytes} more bytes of host memory, over the invocation's budget of {limit} bytes"
)]
pub struct BudgetExceeded {
    pub what: &'static str,
    pub bytes: usize,
    pub limit: usize,
}

impl HostBudget {
    /// A budget of `limit` bytes drawn from `global`; refusals are
    /// reported to `host`.
    pub(crate) fn new(
        limit: usize,
        global: Arc<GlobalBudget>,
        host: Arc<dyn HostCapabilities>,
    ) -> HostBudget {
        HostBudget {
            inner: Arc::new(Inner {
                limit,
                used: AtomicUsize::new(0),
                global,
                host,
                reported: AtomicBool::new(false),
                exceeded: AtomicBool::new(false),
            }),
        }
    }

    /// The invocation's limit, in bytes.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Whether some charge was refused.
    pub fn is_exceeded(&self) -> bool {
        self.inner.exceeded.load(Ordering::Relaxed)
    }

    /// Charge `bytes` for good (until the invocation ends). `capability`
    /// names the interface for the refusal record.
    pub fn charge(
        &self,
        capability: &'static str,
        what: &'static str,
        bytes: usize,
    ) -> Result<(), BudgetExceeded> {
        self.reserve(capability, what, bytes).map(Reservation::keep)
    }

    /// Reserve `bytes` until the returned [`Reservation`] is dropped.
    pub fn reserve(
        &self,
        capability: &'static str,
        what: &'static str,
        bytes: usize,
    ) -> Result<Reservation, BudgetExceeded> {
        let inner = &self.inner;
        if take(&inner.used, inner.limit, bytes) {
            if inner.global.take(bytes) {
                return Ok(Reservation {
                    budget: Some(self.clone()),
                    bytes,
                });
            }
            inner.used.fetch_sub(bytes, Ordering::Relaxed);
        }
        let refusal = BudgetExceeded {
            what,
            bytes,
            limit: inner.limit,
        };
        self.refuse(capability, refusal.to_string());
        Err(refusal)
    }

    /// Report a refusal of the budget to the platform (the first refusal
    /// of the invocation only) and mark the budget exceeded.
    pub fn refuse(&self, capability: &'static str, reason: String) {
        self.inner.exceeded.store(true, Ordering::Relaxed);
        self.report(capability, reason);
    }

    /// Report a refusal of the sandbox's own (a bound other than the
    /// budget: a count, a batch rule) to the platform, the first refusal
    /// of the invocation only.
    pub fn report(&self, capability: &'static str, reason: String) {
        tracing::warn!(capability, reason = %reason, "sandbox refused a guest call");
        if self.inner.reported.swap(true, Ordering::Relaxed) {
            return;
        }
        let host = self.inner.host.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                host.refused(SandboxRefusal { capability, reason }).await;
            });
        }
    }

    fn give(&self, bytes: usize) {
        self.inner.used.fetch_sub(bytes, Ordering::Relaxed);
        self.inner.global.give(bytes);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Cumulative charges end with the invocation.
        self.global.give(self.used.swap(0, Ordering::Relaxed));
    }
}

/// Bytes held from a [`HostBudget`] until dropped.
#[derive(Debug)]
#[must_use = "a reservation is released when dropped"]
pub struct Reservation {
    budget: Option<HostBudget>,
    bytes: usize,
}

impl Reservation {
    /// Keep the bytes charged until the invocation ends.
    fn keep(mut self) {
        self.budget = None;
    }

    /// Grow the reservation by `bytes`.
    pub fn grow(
        &mut self,
        capability: &'static str,
        what: &'static str,
        bytes: usize,
    ) -> Result<(), BudgetExceeded> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        budget.reserve(capability, what, bytes)?.keep();
        self.bytes = self.bytes.saturating_add(bytes);
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(budget) = self.budget.take() {
            budget.give(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_interface::NoCapabilities;

    #[test]
    fn the_formula_has_a_floor_and_a_ceiling() {
        assert_eq!(invocation_budget(1), BUDGET_FLOOR);
        assert_eq!(invocation_budget(4), BUDGET_FLOOR);
        assert_eq!(invocation_budget(16), 32 * MIB);
        assert_eq!(invocation_budget(64), BUDGET_CEILING);
        assert_eq!(invocation_budget(u32::MAX), BUDGET_CEILING);
    }

    #[test]
    fn reservations_are_given_back_and_charges_end_with_the_invocation() {
        let global = GlobalBudget::new(1000);
        let budget = HostBudget::new(100, global.clone(), Arc::new(NoCapabilities));
        let held = budget.reserve("t", "x", 60).unwrap();
        assert!(budget.reserve("t", "x", 41).is_err());
        assert!(budget.is_exceeded());
        drop(held);
        budget.charge("t", "x", 100).unwrap();
        assert!(budget.charge("t", "x", 1).is_err());
        assert_eq!(global.used(), 100);
        drop(budget);
        assert_eq!(global.used(), 0);
    }

    #[test]
    fn the_global_budget_bounds_all_invocations_together() {
        let global = GlobalBudget::new(150);
        let a = HostBudget::new(100, global.clone(), Arc::new(NoCapabilities));
        let b = HostBudget::new(100, global.clone(), Arc::new(NoCapabilities));
        let _ra = a.reserve("t", "x", 100).unwrap();
        let err = b.reserve("t", "x", 51).unwrap_err();
        assert_eq!(err.limit, 100);
        // The refused charge left nothing behind in either budget.
        assert_eq!(global.used(), 100);
        let _rb = b.reserve("t", "x", 50).unwrap();
        assert_eq!(global.used(), 150);
    }

    #[test]
    fn a_reservation_grows_within_the_budget() {
        let global = GlobalBudget::new(1000);
        let budget = HostBudget::new(100, global.clone(), Arc::new(NoCapabilities));
        let mut held = budget.reserve("t", "x", 10).unwrap();
        held.grow("t", "x", 80).unwrap();
        assert!(held.grow("t", "x", 11).is_err());
        assert_eq!(global.used(), 90);
        drop(held);
        assert_eq!(global.used(), 0);
    }
}
