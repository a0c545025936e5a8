//! Aggregation of repeated unauthenticated refusals, so that anonymous
//! traffic cannot grow the audit log without bound.
//!
//! A [`RefusalAggregator`] takes refusals of callers the platform does not
//! know (the public gateway's 404s and 403s, malformed requests, refused
//! connections). The first refusal of a kind (same source address, action,
//! outcome, status and reason) within an interval is appended at once;
//! identical ones after it are only counted, and when the interval ends
//! they are appended as one record carrying `"aggregated": {"count": n}`
//! in its detail. Every refusal is therefore in the log, either as itself
//! or counted in an aggregate; only the time of each repeat is lost.
//!
//! Memory is bounded: at most `max_keys` kinds are tracked per interval;
//! refusals of further kinds in that interval are counted under one
//! overflow record (which names no source).
//!
//! # Trust
//! Trusts its caller to pass only refusals of unauthenticated callers: an
//! authenticated or allowed action must keep its own record and never goes
//! through here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::{Action, AuditError, AuditLog, AuditRecord, Outcome};

/// Default for the most kinds of refusal tracked in one interval.
pub const DEFAULT_MAX_KEYS: usize = 4096;

/// What makes two refusals identical.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    source: IpAddr,
    action: Action,
    outcome: Outcome,
    status: Option<u16>,
    reason: Option<String>,
}

/// Repeats of one kind in the current interval.
struct Counted {
    /// The first record of the kind, the template of the aggregate.
    record: AuditRecord,
    /// Refusals after the first, not yet appended.
    repeats: u64,
}

#[derive(Default)]
struct State {
    kinds: HashMap<Key, Counted>,
    /// Refusals of kinds beyond `max_keys` in this interval.
    overflow: Option<Counted>,
    /// Whether a task will flush this interval.
    flush_scheduled: bool,
}

struct Inner {
    audit: AuditLog,
    interval: Duration,
    max_keys: usize,
    state: Mutex<State>,
}

/// Collapses identical unauthenticated refusals into one record per kind
/// and interval. Cheap to clone (shared state).
#[derive(Clone)]
pub struct RefusalAggregator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RefusalAggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefusalAggregator")
            .field("interval", &self.inner.interval)
            .field("max_keys", &self.inner.max_keys)
            .finish_non_exhaustive()
    }
}

impl RefusalAggregator {
    /// Aggregate over `interval` (for example 10 s), tracking at most
    /// [`DEFAULT_MAX_KEYS`] kinds per interval.
    pub fn new(audit: AuditLog, interval: Duration) -> RefusalAggregator {
        Self::with_max_keys(audit, interval, DEFAULT_MAX_KEYS)
    }

    /// As [`RefusalAggregator::new`], tracking at most `max_keys` kinds
    /// (at least one).
    pub fn with_max_keys(
        audit: AuditLog,
        interval: Duration,
        max_keys: usize,
    ) -> RefusalAggregator {
        RefusalAggregator {
            inner: Arc::new(Inner {
                audit,
                interval,
                max_keys: max_keys.max(1),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Record one refusal of an unauthenticated caller at `source`. The
    /// first of its kind in an interval is appended now (an error means it
    /// is not in the log); a repeat is counted and appended with the
    /// others of its kind when the interval ends.
    ///
    /// Must be called within a Tokio runtime (the end of the interval is
    /// a spawned task).
    pub async fn refuse(&self, source: IpAddr, record: AuditRecord) -> Result<(), AuditError> {
        let key = Key {
            source: source.to_canonical(),
            action: record.action,
            outcome: record.outcome,
            status: record.status,
            reason: record.reason.clone(),
        };
        let first = {
            let mut state = self.lock();
            let first = if let Some(counted) = state.kinds.get_mut(&key) {
                counted.repeats = counted.repeats.saturating_add(1);
                false
            } else if state.kinds.len() >= self.inner.max_keys {
                match &mut state.overflow {
                    Some(counted) => counted.repeats = counted.repeats.saturating_add(1),
                    None => {
                        state.overflow = Some(Counted {
                            record: overflow_record(&record),
                            repeats: 1,
                        })
                    }
                }
                false
            } else {
                state.kinds.insert(
                    key,
                    Counted {
                        record: record.clone(),
                        repeats: 0,
                    },
                );
                true
            };
            if !state.flush_scheduled {
                state.flush_scheduled = true;
                let this = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(this.inner.interval).await;
                    this.flush().await;
                });
            }
            first
        };
        if first {
            self.inner.audit.append(record).await?;
        } else {
            // Counted now, appended (unobserved) as part of the aggregate later.
            self.inner.audit.observe(&record, 1);
        }
        Ok(())
    }

    /// End the current interval now: append one record per kind that was
    /// repeated, with its count. Called when the interval ends; callers
    /// may also call it (at shutdown, in tests).
    pub async fn flush(&self) {
        let (kinds, overflow) = {
            let mut state = self.lock();
            state.flush_scheduled = false;
            (std::mem::take(&mut state.kinds), state.overflow.take())
        };
        let interval_ms = u64::try_from(self.inner.interval.as_millis()).unwrap_or(u64::MAX);
        for counted in kinds.into_values().chain(overflow) {
            if counted.repeats == 0 {
                continue;
            }
            let record = aggregate(counted.record, counted.repeats, interval_ms);
            if let Err(error) = self.inner.audit.append_unobserved(record).await {
                // Nobody waits for this record; the loss is logged.
                tracing::error!(%error, count = counted.repeats, "audit of aggregated refusals failed");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The record standing for `repeats` refusals like `record`.
fn aggregate(mut record: AuditRecord, repeats: u64, interval_ms: u64) -> AuditRecord {
    let aggregated = serde_json::json!({ "count": repeats, "interval_ms": interval_ms });
    let mut detail = match record.detail.take() {
        Some(serde_json::Value::Object(map)) => map,
        Some(other) => {
            let mut map = serde_json::Map::new();
            map.insert("original".into(), other);
            map
        }
        None => serde_json::Map::new(),
    };
    detail.insert("aggregated".into(), aggregated);
    // The template's detail was bounded already; this only adds a little.
    record.detail = Some(serde_json::Value::Object(detail));
    // A repeat has no duration or invocation of its own.
    record.duration = None;
    record.invocation_id = None;
    record
}

/// The template of the overflow record: what the first overflowing
/// refusal was, without its source-specific text.
fn overflow_record(first: &AuditRecord) -> AuditRecord {
    AuditRecord::new(first.actor.clone(), first.action, first.outcome).reason(
        "refusals of more kinds than the aggregator tracks in one interval (sources and reasons not kept)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify_chain;
    use zerofn_store::Store;

    fn refusal(reason: &str) -> AuditRecord {
        AuditRecord::new("anonymous", Action::Invoke, Outcome::Deny)
            .status(404)
            .reason(reason)
            .detail(serde_json::json!({ "path": "/nope" }))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn repeats_become_one_record_with_a_count_and_other_kinds_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::open(&store).unwrap();
        // Long enough that the test flushes, not the timer.
        let agg = RefusalAggregator::new(log.clone(), Duration::from_secs(3600));
        for _ in 0..1000 {
            agg.refuse(ip("10.0.0.1"), refusal("no route"))
                .await
                .unwrap();
        }
        // Another source, another reason: their own records.
        agg.refuse(ip("10.0.0.2"), refusal("no route"))
            .await
            .unwrap();
        agg.refuse(ip("10.0.0.1"), refusal("other")).await.unwrap();
        // The IPv4-mapped spelling of a source is the same source.
        agg.refuse(ip("::ffff:10.0.0.1"), refusal("no route"))
            .await
            .unwrap();
        assert_eq!(log.tail(100).await.unwrap().len(), 3);
        agg.flush().await;
        let tail = log.tail(100).await.unwrap();
        assert_eq!(tail.len(), 4, "{tail:#?}");
        let last = tail.last().unwrap();
        assert_eq!(last.reason.as_deref(), Some("no route"));
        assert_eq!(last.status, Some(404));
        let detail = last.detail.as_ref().unwrap();
        assert_eq!(detail["aggregated"]["count"], 1000);
        assert_eq!(detail["path"], "/nope");
        // A new interval starts afresh: the next one is appended at once.
        agg.refuse(ip("10.0.0.1"), refusal("no route"))
            .await
            .unwrap();
        assert_eq!(log.tail(100).await.unwrap().len(), 5);
        // Flushing with nothing repeated appends nothing.
        agg.flush().await;
        assert_eq!(log.tail(100).await.unwrap().len(), 5);
        assert_eq!(verify_chain(&store).unwrap().records, 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_interval_ends_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::open(&store).unwrap();
        let agg = RefusalAggregator::new(log.clone(), Duration::from_millis(50));
        for _ in 0..10 {
            agg.refuse(ip("10.0.0.1"), refusal("no route"))
                .await
                .unwrap();
        }
        let mut tail = Vec::new();
        for _ in 0..200 {
            tail = log.tail(10).await.unwrap();
            if tail.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(tail.len(), 2, "{tail:#?}");
        assert_eq!(tail[1].detail.as_ref().unwrap()["aggregated"]["count"], 9);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kinds_beyond_the_cap_are_counted_under_one_overflow_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::open(&store).unwrap();
        let agg = RefusalAggregator::with_max_keys(log.clone(), Duration::from_secs(3600), 8);
        for i in 0..1000u32 {
            let source = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            agg.refuse(source, refusal("no route")).await.unwrap();
        }
        assert_eq!(log.tail(100).await.unwrap().len(), 8);
        assert!(agg.lock().kinds.len() <= 8);
        agg.flush().await;
        let tail = log.tail(100).await.unwrap();
        assert_eq!(tail.len(), 9);
        let overflow = tail.last().unwrap();
        assert_eq!(
            overflow.detail.as_ref().unwrap()["aggregated"]["count"],
            992
        );
        assert!(overflow.reason.as_deref().unwrap().contains("more kinds"));
    }
}
