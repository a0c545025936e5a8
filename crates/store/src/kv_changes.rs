//! Change streams of key-value buckets (`[[triggers]] kv = "<bucket>"`): an
//! outbox of the changes of subscribed buckets, written in the same
//! transaction as the change, and the delivery loop's view of it.
//!
//! - A bucket is watched when some function of its tenant subscribes to it
//!   (`kv_subscriptions`, one row per subscribing function). Writes to an
//!   unwatched bucket pay one indexed lookup and record nothing.
//! - A write to a watched bucket (set, delete of a present key, increment;
//!   the guest's batch calls are one such write per key) reads the old
//!   value, changes the key and inserts one change row per subscriber, all
//!   in one transaction: the change and its record commit together or not
//!   at all. Each change gets the bucket's next sequence number
//!   (`kv_change_counters`), so sequences increase per key (and per bucket)
//!   across deletes and restarts; they are not contiguous per key.
//! - Each subscriber's rows are its own: delivered, retried, parked and
//!   removed independently of other subscribers'.
//! - Per key, only the oldest unparked change of a subscriber is offered
//!   ([`KvChangeWorker::lease`]); the next waits until it is acknowledged
//!   (deleted) or parked.
//! - Bounded: a subscriber holds at most `limit` undelivered and parked
//!   changes; a write that would pass it is refused
//!   ([`StoreError::KvStreamBacklog`]) and changes nothing (no change is
//!   dropped to make room). Parked changes expire after a retention the
//!   caller gives, and a subscription that lost its function is removed
//!   with its rows; the caller records both.
//!
//! Times of delivery state (visibility, parking) are milliseconds given by
//! the caller's clock, as in `queues.rs`; the time a change happened
//! (`at_ms`) is the system clock's when the write commits.
//!
//! Leases, acknowledgements and releases go through the delivery loop's own
//! connection ([`KvChangeWorker`], `synchronous=NORMAL`): losing one in a
//! power loss only delivers a change again, which at-least-once allows.
//! Change rows themselves commit with the kv write (`synchronous=FULL`).

use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use crate::trace_context::TraceContext;
use crate::{write_tx, Store, StoreError};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS kv_subscriptions (
    tenant    TEXT NOT NULL,
    bucket    TEXT NOT NULL,
    function  TEXT NOT NULL,
    since_ms  INTEGER NOT NULL,
    pending   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, bucket, function)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv_change_counters (
    tenant  TEXT NOT NULL,
    bucket  TEXT NOT NULL,
    last    INTEGER NOT NULL,
    PRIMARY KEY (tenant, bucket)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv_changes (
    id             INTEGER PRIMARY KEY,
    tenant         TEXT NOT NULL,
    bucket         TEXT NOT NULL,
    function       TEXT NOT NULL,
    key            TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    op             TEXT NOT NULL,
    old            BLOB,
    new            BLOB,
    at_ms          INTEGER NOT NULL,
    writer         TEXT NOT NULL,
    visible_at_ms  INTEGER NOT NULL DEFAULT 0,
    attempts       INTEGER NOT NULL DEFAULT 0,
    lease          TEXT,
    last_error     TEXT,
    parked_at_ms   INTEGER,
    traceparent    TEXT,
    tracestate     TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS kv_changes_key ON kv_changes (tenant, bucket, function, key, seq);
CREATE INDEX IF NOT EXISTS kv_changes_visible ON kv_changes (tenant, bucket, function, visible_at_ms);
-- A subscriber's count of rows, lowered by every delete whatever its path
-- (acknowledgement, expiry, unsubscribe); raised by each recorded change in
-- its transaction. It is what the bound is checked against.
CREATE TRIGGER IF NOT EXISTS kv_changes_deleted AFTER DELETE ON kv_changes BEGIN
    UPDATE kv_subscriptions SET pending = max(0, pending - 1)
     WHERE tenant = OLD.tenant AND bucket = OLD.bucket AND function = OLD.function;
END;
"#;

/// Adds the trace context columns to a `kv_changes` table created before
/// them; changes recorded earlier have none (their deliveries start new
/// traces, as before).
pub(crate) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    for column in ["traceparent", "tracestate"] {
        let present = conn
            .prepare("SELECT 1 FROM pragma_table_info('kv_changes') WHERE name = ?1")?
            .exists([column])?;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE kv_changes ADD COLUMN {column} TEXT"))?;
        }
    }
    Ok(())
}

/// Who made a key-value write: the name its change records carry
/// (`function:<name>`) and, when the write was made inside a traced
/// request, that request's trace context (the span that made the write),
/// which the change's deliveries continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvWriter {
    name: String,
    trace: Option<TraceContext>,
}

impl KvWriter {
    /// A writer outside any trace.
    pub fn new(name: &str) -> KvWriter {
        KvWriter {
            name: name.to_owned(),
            trace: None,
        }
    }

    /// This writer inside the trace `trace` (none: outside any).
    pub fn traced(mut self, trace: Option<TraceContext>) -> KvWriter {
        self.trace = trace;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn trace(&self) -> Option<&TraceContext> {
        self.trace.as_ref()
    }
}

impl From<&str> for KvWriter {
    fn from(name: &str) -> KvWriter {
        KvWriter::new(name)
    }
}

/// What a write did to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvOp {
    Set,
    Delete,
    Increment,
}

impl KvOp {
    pub fn as_str(self) -> &'static str {
        match self {
            KvOp::Set => "set",
            KvOp::Delete => "delete",
            KvOp::Increment => "increment",
        }
    }

    fn parse(text: &str) -> Option<KvOp> {
        match text {
            "set" => Some(KvOp::Set),
            "delete" => Some(KvOp::Delete),
            "increment" => Some(KvOp::Increment),
            _ => None,
        }
    }
}

/// A recorded change as one subscriber's delivery sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvChangeRow {
    /// The row (this subscriber's copy of the change).
    pub id: i64,
    pub bucket: String,
    pub key: String,
    /// The bucket's sequence number of the change (the same for every
    /// subscriber), increasing per key.
    pub seq: u64,
    pub op: KvOp,
    /// The value before the change (`None`: the key was absent).
    pub old: Option<Vec<u8>>,
    /// The value after the change (`None`: the key was deleted).
    pub new: Option<Vec<u8>>,
    /// When the change committed, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who wrote it (`function:<name>` for a function of the tenant).
    pub writer: String,
    /// Deliveries started so far (this one included, for a leased change).
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The trace context of the request that made the write, if it was
    /// traced: the change's deliveries continue that trace.
    pub trace: Option<TraceContext>,
}

/// A function subscribed to a bucket of its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KvSubscription {
    pub tenant: String,
    pub bucket: String,
    pub function: String,
}

/// Counts of one subscriber's changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KvStreamCounts {
    /// Waiting for delivery, in flight or backing off.
    pub pending: u64,
    /// Parked after their last attempt, with their last error.
    pub parked: u64,
}

/// A change leased for one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvLeased {
    pub change: KvChangeRow,
    /// The token that acknowledges or releases this lease, and only it.
    pub lease: String,
}

/// What a lease of a subscriber's changes did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvLeaseBatch {
    pub leased: Vec<KvLeased>,
    /// Changes that had used all their attempts (their last lease ran out
    /// unsettled) and were parked instead: `(key, seq, last error)`.
    pub parked: Vec<(String, u64, String)>,
}

/// How a failed delivery was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvReleased {
    /// Offered again from `at_ms`.
    Retry { at_ms: u64 },
    /// Parked with its error; the key's next change may go.
    Parked,
}

/// The change a write makes, recorded for every subscriber of its bucket.
pub(crate) struct Change<'a> {
    pub(crate) op: KvOp,
    pub(crate) old: Option<&'a [u8]>,
    pub(crate) new: Option<&'a [u8]>,
    pub(crate) writer: &'a KvWriter,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn system_now_ms() -> u64 {
    let now = time::OffsetDateTime::now_utc();
    u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// The functions subscribed to `bucket` with their row counts (empty: the
/// bucket is not watched and its writes record nothing).
pub(crate) fn subscribers(
    conn: &Connection,
    tenant: &str,
    bucket: &str,
) -> Result<Vec<(String, u64)>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT function, pending FROM kv_subscriptions WHERE tenant = ?1 AND bucket = ?2",
        )?
        .query_map(params![tenant, bucket], |r| {
            Ok((r.get::<_, String>(0)?, to_u64(r.get(1)?)))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Records `change` of `key` for each of `subs` (from [`subscribers`], read
/// in the same transaction), or refuses the whole write when one of them
/// already holds `limit` changes.
pub(crate) fn record(
    conn: &Connection,
    tenant: &str,
    bucket: &str,
    key: &str,
    subs: &[(String, u64)],
    change: &Change<'_>,
    limit: u64,
) -> Result<(), StoreError> {
    if let Some((function, pending)) = subs.iter().find(|(_, pending)| *pending >= limit) {
        return Err(StoreError::KvStreamBacklog {
            bucket: bucket.to_owned(),
            function: function.clone(),
            pending: *pending,
            limit,
        });
    }
    let seq: i64 = conn
        .prepare_cached(
            "INSERT INTO kv_change_counters (tenant, bucket, last) VALUES (?1, ?2, 1) \
             ON CONFLICT (tenant, bucket) DO UPDATE SET last = last + 1 RETURNING last",
        )?
        .query_row(params![tenant, bucket], |r| r.get(0))?;
    let at = to_i64(system_now_ms());
    let mut insert = conn.prepare_cached(
        "INSERT INTO kv_changes (tenant, bucket, function, key, seq, op, old, new, at_ms, writer, traceparent, tracestate) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?;
    let mut count = conn.prepare_cached(
        "UPDATE kv_subscriptions SET pending = pending + 1 \
         WHERE tenant = ?1 AND bucket = ?2 AND function = ?3",
    )?;
    let trace = change.writer.trace();
    for (function, _) in subs {
        insert.execute(params![
            tenant,
            bucket,
            function,
            key,
            seq,
            change.op.as_str(),
            change.old,
            change.new,
            at,
            change.writer.name(),
            trace.map(TraceContext::traceparent),
            trace.and_then(TraceContext::tracestate)
        ])?;
        count.execute(params![tenant, bucket, function])?;
    }
    Ok(())
}

const CHANGE_COLUMNS: &str =
    "id, bucket, key, seq, op, old, new, at_ms, writer, attempts, last_error, traceparent, tracestate";

fn change_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KvChangeRow> {
    let op: String = r.get(4)?;
    Ok(KvChangeRow {
        id: r.get(0)?,
        bucket: r.get(1)?,
        key: r.get(2)?,
        seq: to_u64(r.get(3)?),
        // Only this module writes `op`; an unknown one reads as a set
        // (its old and new values are still the stored ones).
        op: KvOp::parse(&op).unwrap_or(KvOp::Set),
        old: r.get(5)?,
        new: r.get(6)?,
        at_ms: to_u64(r.get(7)?),
        writer: r.get(8)?,
        attempts: u32::try_from(r.get::<_, i64>(9)?).unwrap_or(u32::MAX),
        last_error: r.get(10)?,
        trace: TraceContext::from_columns(r.get(11)?, r.get(12)?),
    })
}

impl Store {
    /// Subscribes `function` to `bucket` of `tenant` from now on (`since_ms`,
    /// the caller's clock); subscribing again renews `since_ms` and keeps
    /// the changes recorded so far.
    pub async fn kv_subscribe(
        &self,
        sub: &KvSubscription,
        since_ms: u64,
    ) -> Result<(), StoreError> {
        let sub = sub.clone();
        self.with_conn(move |conn| {
            conn.prepare_cached(
                "INSERT INTO kv_subscriptions (tenant, bucket, function, since_ms) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (tenant, bucket, function) DO UPDATE SET since_ms = excluded.since_ms",
            )?
            .execute(params![sub.tenant, sub.bucket, sub.function, to_i64(since_ms)])?;
            Ok(())
        })
        .await
    }

    /// Every subscription.
    pub async fn kv_subscriptions(&self) -> Result<Vec<KvSubscription>, StoreError> {
        self.with_conn(|conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT tenant, bucket, function FROM kv_subscriptions ORDER BY tenant, bucket, function",
                )?
                .query_map([], |r| {
                    Ok(KvSubscription {
                        tenant: r.get(0)?,
                        bucket: r.get(1)?,
                        function: r.get(2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Removes a subscription and its changes, unless it was (re)made at or
    /// after `unbound_at_ms` (a deploy racing the caller's look at what is
    /// bound). Answers how many changes went with it (`None`: kept).
    pub async fn kv_unsubscribe(
        &self,
        sub: &KvSubscription,
        unbound_at_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let sub = sub.clone();
        self.with_conn(move |conn| {
            let tx = write_tx(conn)?;
            let removed = tx.execute(
                "DELETE FROM kv_subscriptions WHERE tenant = ?1 AND bucket = ?2 AND function = ?3 AND since_ms < ?4",
                params![sub.tenant, sub.bucket, sub.function, to_i64(unbound_at_ms)],
            )?;
            let out = if removed > 0 {
                let dropped = tx.execute(
                    "DELETE FROM kv_changes WHERE tenant = ?1 AND bucket = ?2 AND function = ?3",
                    params![sub.tenant, sub.bucket, sub.function],
                )?;
                Some(dropped as u64)
            } else {
                None
            };
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    /// A subscriber's changes in sequence order, parked ones included, up
    /// to `limit` (inspection and tests).
    pub async fn kv_changes(
        &self,
        sub: &KvSubscription,
        limit: u32,
    ) -> Result<Vec<KvChangeRow>, StoreError> {
        let sub = sub.clone();
        self.with_conn(move |conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {CHANGE_COLUMNS} FROM kv_changes WHERE tenant = ?1 AND bucket = ?2 AND function = ?3 \
                     ORDER BY seq LIMIT ?4"
                ))?
                .query_map(
                    params![sub.tenant, sub.bucket, sub.function, i64::from(limit)],
                    change_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Counts of a subscriber's changes.
    pub async fn kv_stream_counts(
        &self,
        sub: &KvSubscription,
    ) -> Result<KvStreamCounts, StoreError> {
        let sub = sub.clone();
        self.with_conn(move |conn| {
            let (pending, parked): (i64, i64) = conn
                .prepare_cached(
                    "SELECT coalesce(sum(parked_at_ms IS NULL), 0), coalesce(sum(parked_at_ms IS NOT NULL), 0) \
                     FROM kv_changes WHERE tenant = ?1 AND bucket = ?2 AND function = ?3",
                )?
                .query_row(params![sub.tenant, sub.bucket, sub.function], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            Ok(KvStreamCounts {
                pending: to_u64(pending),
                parked: to_u64(parked),
            })
        })
        .await
    }

    /// A connection of its own for the change-stream delivery loop,
    /// committing with `synchronous=NORMAL`.
    pub fn open_kv_change_worker(&self) -> Result<KvChangeWorker, StoreError> {
        let conn = crate::open_connection(&self.path)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(KvChangeWorker {
            conn: Arc::new(Mutex::new(conn)),
        })
    }
}

/// The change-stream delivery loop's connection (see the module docs).
#[derive(Clone)]
pub struct KvChangeWorker {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for KvChangeWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KvChangeWorker")
    }
}

impl KvChangeWorker {
    async fn with_conn<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| StoreError::Poisoned)?;
            f(&mut guard)
        })
        .await
        .map_err(|_| StoreError::TaskFailed)?
    }

    /// Leases up to `limit` of a subscriber's changes for `lease_ms`,
    /// counting an attempt on each, under the token `lease`: only the
    /// oldest unparked change of each key, and only when it is visible (a
    /// key waits while its head is in flight or backing off). A head that
    /// has used `max_attempts` (its last delivery never settled) is parked
    /// instead.
    pub async fn lease(
        &self,
        sub: &KvSubscription,
        now_ms: u64,
        limit: u32,
        (lease_ms, max_attempts): (u64, u32),
        lease: &str,
    ) -> Result<KvLeaseBatch, StoreError> {
        let (sub, lease) = (sub.clone(), lease.to_owned());
        self.with_conn(move |conn| {
            let tx = write_tx(conn)?;
            let heads = tx
                .prepare_cached(&format!(
                    "SELECT {CHANGE_COLUMNS} FROM kv_changes c \
                     WHERE tenant = ?1 AND bucket = ?2 AND function = ?3 AND parked_at_ms IS NULL AND visible_at_ms <= ?4 \
                     AND NOT EXISTS (SELECT 1 FROM kv_changes p WHERE p.tenant = c.tenant AND p.bucket = c.bucket \
                         AND p.function = c.function AND p.key = c.key AND p.seq < c.seq AND p.parked_at_ms IS NULL) \
                     ORDER BY seq LIMIT ?5"
                ))?
                .query_map(
                    params![sub.tenant, sub.bucket, sub.function, to_i64(now_ms), i64::from(limit)],
                    change_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            let mut batch = KvLeaseBatch::default();
            for mut change in heads {
                if change.attempts >= max_attempts {
                    let error = format!(
                        "its last delivery did not settle within the lease of {lease_ms} ms{}",
                        change
                            .last_error
                            .as_deref()
                            .map(|e| format!(" (before: {e})"))
                            .unwrap_or_default()
                    );
                    tx.prepare_cached(
                        "UPDATE kv_changes SET parked_at_ms = ?2, lease = NULL, last_error = ?3 WHERE id = ?1",
                    )?
                    .execute(params![change.id, to_i64(now_ms), error])?;
                    batch.parked.push((change.key, change.seq, error));
                    continue;
                }
                tx.prepare_cached(
                    "UPDATE kv_changes SET visible_at_ms = ?2, attempts = attempts + 1, lease = ?3 WHERE id = ?1",
                )?
                .execute(params![
                    change.id,
                    to_i64(now_ms.saturating_add(lease_ms)),
                    lease
                ])?;
                change.attempts = change.attempts.saturating_add(1);
                batch.leased.push(KvLeased {
                    change,
                    lease: lease.clone(),
                });
            }
            tx.commit()?;
            Ok(batch)
        })
        .await
    }

    /// Deletes a delivered change, if it is still under `lease`. Answers
    /// whether it was deleted.
    pub async fn acknowledge(&self, id: i64, lease: &str) -> Result<bool, StoreError> {
        let lease = lease.to_owned();
        self.with_conn(move |conn| {
            Ok(conn
                .prepare_cached("DELETE FROM kv_changes WHERE id = ?1 AND lease = ?2")?
                .execute(params![id, lease])?
                > 0)
        })
        .await
    }

    /// Settles a failed delivery still under `lease`: with attempts left it
    /// is offered again from `retry_at_ms`; after `max_attempts` (or at once
    /// when `give_up`) it is parked with `error`. `None`: the lease had
    /// been taken again.
    pub async fn release(
        &self,
        id: i64,
        lease: &str,
        (retry_at_ms, now_ms): (u64, u64),
        error: &str,
        max_attempts: u32,
        give_up: bool,
    ) -> Result<Option<KvReleased>, StoreError> {
        let (lease, error) = (lease.to_owned(), error.to_owned());
        self.with_conn(move |conn| {
            let tx = write_tx(conn)?;
            let attempts: Option<i64> = tx
                .query_row(
                    "SELECT attempts FROM kv_changes WHERE id = ?1 AND lease = ?2",
                    params![id, lease],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(attempts) = attempts else {
                return Ok(None);
            };
            let out = if give_up || to_u64(attempts) >= u64::from(max_attempts) {
                tx.execute(
                    "UPDATE kv_changes SET parked_at_ms = ?2, lease = NULL, last_error = ?3 WHERE id = ?1",
                    params![id, to_i64(now_ms), error],
                )?;
                KvReleased::Parked
            } else {
                tx.execute(
                    "UPDATE kv_changes SET visible_at_ms = ?2, lease = NULL, last_error = ?3 WHERE id = ?1",
                    params![id, to_i64(retry_at_ms), error],
                )?;
                KvReleased::Retry { at_ms: retry_at_ms }
            };
            tx.commit()?;
            Ok(Some(out))
        })
        .await
    }

    /// The earliest time an unparked change of the subscriber becomes
    /// visible, if any is waiting.
    pub async fn next_visible(&self, sub: &KvSubscription) -> Result<Option<u64>, StoreError> {
        let sub = sub.clone();
        self.with_conn(move |conn| {
            let at: Option<i64> = conn
                .prepare_cached(
                    "SELECT min(visible_at_ms) FROM kv_changes \
                     WHERE tenant = ?1 AND bucket = ?2 AND function = ?3 AND parked_at_ms IS NULL",
                )?
                .query_row(params![sub.tenant, sub.bucket, sub.function], |r| r.get(0))?;
            Ok(at.map(to_u64))
        })
        .await
    }

    /// Deletes changes parked before `before_ms` (their retention ran out),
    /// answering how many per subscriber.
    pub async fn expire_parked(
        &self,
        before_ms: u64,
    ) -> Result<Vec<(KvSubscription, u64)>, StoreError> {
        self.with_conn(move |conn| {
            let tx = write_tx(conn)?;
            let counts = tx
                .prepare_cached(
                    "SELECT tenant, bucket, function, count(*) FROM kv_changes \
                     WHERE parked_at_ms IS NOT NULL AND parked_at_ms < ?1 GROUP BY tenant, bucket, function",
                )?
                .query_map(params![to_i64(before_ms)], |r| {
                    Ok((
                        KvSubscription {
                            tenant: r.get(0)?,
                            bucket: r.get(1)?,
                            function: r.get(2)?,
                        },
                        to_u64(r.get(3)?),
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            if !counts.is_empty() {
                tx.execute(
                    "DELETE FROM kv_changes WHERE parked_at_ms IS NOT NULL AND parked_at_ms < ?1",
                    params![to_i64(before_ms)],
                )?;
            }
            tx.commit()?;
            Ok(counts)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_names::t;

    fn sub(function: &str) -> KvSubscription {
        KvSubscription {
            tenant: "acme".into(),
            bucket: "orders".into(),
            function: function.into(),
        }
    }

    const LEASE: (u64, u32) = (10_000, 3);

    #[tokio::test]
    async fn writes_to_a_watched_bucket_record_old_and_new_values_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let acme = t("acme");
        // Before the subscription nothing is recorded.
        store
            .kv_set(&acme, "orders", "a", b"0".to_vec(), "function:w")
            .await
            .unwrap();
        store.kv_subscribe(&sub("s"), 1).await.unwrap();
        store
            .kv_set(&acme, "orders", "a", b"1".to_vec(), "function:w")
            .await
            .unwrap();
        assert_eq!(
            store
                .kv_increment(&acme, "orders", "n", 2, "function:w")
                .await
                .unwrap(),
            Ok(2)
        );
        store
            .kv_delete(&acme, "orders", "a", "function:w")
            .await
            .unwrap();
        // Deleting an absent key changes nothing and records nothing.
        store
            .kv_delete(&acme, "orders", "absent", "function:w")
            .await
            .unwrap();
        // Another bucket and another tenant's bucket of the same name are not watched.
        store
            .kv_set(&acme, "other", "a", b"x".to_vec(), "function:w")
            .await
            .unwrap();
        store.create_tenant(&t("evil"), "t0").await.unwrap();
        store
            .kv_set(&t("evil"), "orders", "a", b"x".to_vec(), "function:w")
            .await
            .unwrap();
        let rows = store.kv_changes(&sub("s"), 100).await.unwrap();
        let seen: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.key.as_str(),
                    r.seq,
                    r.op,
                    r.old.as_deref(),
                    r.new.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("a", 1, KvOp::Set, Some(&b"0"[..]), Some(&b"1"[..])),
                ("n", 2, KvOp::Increment, None, Some(&b"2"[..])),
                ("a", 3, KvOp::Delete, Some(&b"1"[..]), None),
            ]
        );
        assert!(rows.iter().all(|r| r.writer == "function:w"));
        assert_eq!(
            store.kv_stream_counts(&sub("s")).await.unwrap(),
            KvStreamCounts {
                pending: 3,
                parked: 0
            }
        );
    }

    #[tokio::test]
    async fn a_refused_or_failed_write_records_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let acme = t("acme");
        store.kv_subscribe(&sub("s"), 1).await.unwrap();
        store
            .kv_set(&acme, "orders", "text", b"abc".to_vec(), "function:w")
            .await
            .unwrap();
        // An increment of a non-number changes nothing, so records nothing.
        assert_eq!(
            store
                .kv_increment(&acme, "orders", "text", 1, "function:w")
                .await
                .unwrap(),
            Err(crate::IncrementError::NotANumber)
        );
        assert_eq!(store.kv_changes(&sub("s"), 100).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_change_and_its_record_commit_together_and_the_bound_refuses_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let acme = t("acme");
        store.kv_subscribe(&sub("s"), 1).await.unwrap();
        // A subscriber at its bound: the write is refused, and neither the
        // value nor a change row is written.
        store
            .with_conn(|c| {
                c.execute(
                    "UPDATE kv_subscriptions SET pending = ?1",
                    params![to_i64(crate::MAX_KV_STREAM_BACKLOG)],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let e = store
            .kv_set(&acme, "orders", "a", b"1".to_vec(), "function:w")
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::KvStreamBacklog { function, .. } if function == "s"),
            "{e}"
        );
        assert!(e.to_string().contains("undelivered changes"), "{e}");
        assert_eq!(store.kv_get(&acme, "orders", "a").await.unwrap(), None);
        assert!(store.kv_changes(&sub("s"), 10).await.unwrap().is_empty());
        let e = store
            .kv_increment(&acme, "orders", "n", 1, "function:w")
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::KvStreamBacklog { .. }), "{e}");
        assert_eq!(store.kv_get(&acme, "orders", "n").await.unwrap(), None);
        // A failure inside the transaction after the change rolls both back:
        // a change row that cannot be inserted takes the value with it.
        store
            .with_conn(|c| {
                c.execute("UPDATE kv_subscriptions SET pending = 0", [])?;
                c.execute_batch(
                    "CREATE TRIGGER fail_insert BEFORE INSERT ON kv_changes BEGIN SELECT RAISE(ABORT, 'no'); END;",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        assert!(store
            .kv_set(&acme, "orders", "a", b"1".to_vec(), "function:w")
            .await
            .is_err());
        assert_eq!(store.kv_get(&acme, "orders", "a").await.unwrap(), None);
    }

    #[tokio::test]
    async fn each_key_offers_its_oldest_change_until_it_is_settled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let acme = t("acme");
        store.kv_subscribe(&sub("s"), 1).await.unwrap();
        store.kv_subscribe(&sub("t"), 1).await.unwrap();
        for (key, v) in [("a", "1"), ("b", "1"), ("a", "2"), ("a", "3")] {
            store
                .kv_set(&acme, "orders", key, v.as_bytes().to_vec(), "function:w")
                .await
                .unwrap();
        }
        let worker = store.open_kv_change_worker().unwrap();
        let now = 1_000;
        // Only the head of each key, however many slots.
        let batch = worker.lease(&sub("s"), now, 10, LEASE, "l1").await.unwrap();
        let keys: Vec<_> = batch
            .leased
            .iter()
            .map(|l| (l.change.key.as_str(), l.change.seq))
            .collect();
        assert_eq!(keys, [("a", 1), ("b", 2)]);
        // While `a`'s head is in flight, nothing more of `a`.
        assert!(worker
            .lease(&sub("s"), now, 10, LEASE, "l2")
            .await
            .unwrap()
            .leased
            .is_empty());
        // The other subscriber's copy is its own.
        assert_eq!(
            worker
                .lease(&sub("t"), now, 10, LEASE, "t1")
                .await
                .unwrap()
                .leased
                .len(),
            2
        );
        // A failure keeps the key waiting; after its retry, the same change comes back.
        let a1 = &batch.leased[0];
        assert_eq!(
            worker
                .release(a1.change.id, "l1", (now + 50, now), "status 500", 3, false)
                .await
                .unwrap(),
            Some(KvReleased::Retry { at_ms: now + 50 })
        );
        assert!(worker
            .lease(&sub("s"), now + 49, 10, LEASE, "l3")
            .await
            .unwrap()
            .leased
            .is_empty());
        let again = worker
            .lease(&sub("s"), now + 50, 10, LEASE, "l4")
            .await
            .unwrap();
        assert_eq!(again.leased.len(), 1);
        assert_eq!(again.leased[0].change.seq, 1);
        assert_eq!(again.leased[0].change.attempts, 2);
        // The stale lease settles nothing; the current one does, and the key moves on.
        assert!(!worker.acknowledge(a1.change.id, "l1").await.unwrap());
        assert!(worker.acknowledge(a1.change.id, "l4").await.unwrap());
        let next = worker
            .lease(&sub("s"), now + 50, 10, LEASE, "l5")
            .await
            .unwrap();
        assert_eq!(next.leased.len(), 1);
        assert_eq!(
            (
                next.leased[0].change.seq,
                next.leased[0].change.old.as_deref()
            ),
            (3, Some(&b"1"[..]))
        );
        // Parked after its last attempt: kept with its error, and the key's next change goes.
        assert_eq!(
            worker
                .release(
                    next.leased[0].change.id,
                    "l5",
                    (now + 60, now + 50),
                    "status 500",
                    1,
                    false
                )
                .await
                .unwrap(),
            Some(KvReleased::Parked)
        );
        let after = worker
            .lease(&sub("s"), now + 50, 10, LEASE, "l6")
            .await
            .unwrap();
        assert_eq!(after.leased.len(), 1);
        assert_eq!(after.leased[0].change.seq, 4);
        assert_eq!(
            store.kv_stream_counts(&sub("s")).await.unwrap(),
            KvStreamCounts {
                pending: 2,
                parked: 1
            }
        );
        // Parked changes expire after their retention, counted per subscriber.
        assert_eq!(
            worker.expire_parked(now + 51).await.unwrap(),
            [(sub("s"), 1)]
        );
        assert_eq!(store.kv_stream_counts(&sub("s")).await.unwrap().parked, 0);
    }

    #[tokio::test]
    async fn an_unsettled_lease_after_the_last_attempt_is_parked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.kv_subscribe(&sub("s"), 1).await.unwrap();
        store
            .kv_set(&t("acme"), "orders", "a", b"1".to_vec(), "function:w")
            .await
            .unwrap();
        let worker = store.open_kv_change_worker().unwrap();
        let (lease_ms, _) = LEASE;
        let one = (lease_ms, 1);
        assert_eq!(
            worker
                .lease(&sub("s"), 0, 1, one, "lost")
                .await
                .unwrap()
                .leased
                .len(),
            1
        );
        let batch = worker
            .lease(&sub("s"), lease_ms, 1, one, "next")
            .await
            .unwrap();
        assert!(batch.leased.is_empty());
        assert_eq!(batch.parked.len(), 1);
        assert!(batch.parked[0].2.contains("did not settle"), "{batch:?}");
    }

    #[tokio::test]
    async fn unsubscribing_removes_the_changes_unless_resubscribed_since() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.kv_subscribe(&sub("s"), 100).await.unwrap();
        store
            .kv_set(&t("acme"), "orders", "a", b"1".to_vec(), "function:w")
            .await
            .unwrap();
        // Subscribed at 100: a look at the bindings taken at 100 or before
        // cannot have seen it, so it stays.
        assert_eq!(store.kv_unsubscribe(&sub("s"), 100).await.unwrap(), None);
        assert_eq!(store.kv_subscriptions().await.unwrap(), [sub("s")]);
        assert_eq!(store.kv_unsubscribe(&sub("s"), 101).await.unwrap(), Some(1));
        assert!(store.kv_subscriptions().await.unwrap().is_empty());
        assert!(store.kv_changes(&sub("s"), 10).await.unwrap().is_empty());
        // Unwatched again: writes record nothing.
        store
            .kv_set(&t("acme"), "orders", "a", b"2".to_vec(), "function:w")
            .await
            .unwrap();
        store.kv_subscribe(&sub("s"), 200).await.unwrap();
        assert!(store.kv_changes(&sub("s"), 10).await.unwrap().is_empty());
    }

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// A traced write's change keeps the writer's trace context for every
    /// subscriber (set, increment and delete alike); an untraced write's
    /// has none; a value changed in the database is not read back.
    #[tokio::test]
    async fn a_change_keeps_the_trace_context_of_its_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let acme = t("acme");
        store.create_tenant(&acme, "t0").await.unwrap();
        store.kv_subscribe(&sub("s"), 1).await.unwrap();
        store.kv_subscribe(&sub("s2"), 1).await.unwrap();
        let traced = KvWriter::new("function:w").traced(TraceContext::new(TP, Some("vendor=1")));
        store
            .kv_set(&acme, "orders", "a", b"1".to_vec(), traced.clone())
            .await
            .unwrap();
        store
            .kv_increment(&acme, "orders", "n", 1, traced.clone())
            .await
            .unwrap()
            .unwrap();
        store
            .kv_set(&acme, "orders", "b", b"1".to_vec(), "function:w")
            .await
            .unwrap();
        let unsampled = TP.replace("-01", "-00");
        store
            .kv_delete(
                &acme,
                "orders",
                "a",
                KvWriter::new("function:w").traced(TraceContext::new(&unsampled, None)),
            )
            .await
            .unwrap();
        for s in ["s", "s2"] {
            let rows = store.kv_changes(&sub(s), 100).await.unwrap();
            let seen: Vec<_> = rows
                .iter()
                .map(|r| {
                    (
                        r.key.as_str(),
                        r.writer.as_str(),
                        r.trace.as_ref().map(TraceContext::traceparent),
                        r.trace.as_ref().and_then(TraceContext::tracestate),
                    )
                })
                .collect();
            assert_eq!(
                seen,
                [
                    ("a", "function:w", Some(TP), Some("vendor=1")),
                    ("n", "function:w", Some(TP), Some("vendor=1")),
                    ("b", "function:w", None, None),
                    ("a", "function:w", Some(unsampled.as_str()), None),
                ],
                "{s}"
            );
        }
        // What reaches the table is bounded, whatever is written there
        // behind the platform's back: a value that is not a version-00
        // `traceparent` reads as none.
        let conn = rusqlite::Connection::open(store.path()).unwrap();
        conn.execute(
            "UPDATE kv_changes SET traceparent = ?1, tracestate = 'x=1' WHERE key = 'n'",
            [TP.to_uppercase()],
        )
        .unwrap();
        let rows = store.kv_changes(&sub("s"), 100).await.unwrap();
        let n = rows.iter().find(|r| r.key == "n").unwrap();
        assert_eq!(n.trace, None);
        assert_eq!(
            n.new.as_deref(),
            Some(&b"1"[..]),
            "the change itself is kept"
        );
    }

    /// A database made before trace contexts gains the columns at the next
    /// open: its changes read back without one, new ones keep theirs.
    #[tokio::test]
    async fn an_older_table_gains_the_trace_columns() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.create_tenant(&t("acme"), "t0").await.unwrap();
            store.kv_subscribe(&sub("s"), 1).await.unwrap();
            // As an older version left it: the table without the columns,
            // holding one change.
            let conn = rusqlite::Connection::open(store.path()).unwrap();
            conn.execute_batch(
                "DROP TABLE kv_changes;
                 CREATE TABLE kv_changes (
                    id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, bucket TEXT NOT NULL,
                    function TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL,
                    op TEXT NOT NULL, old BLOB, new BLOB, at_ms INTEGER NOT NULL,
                    writer TEXT NOT NULL, visible_at_ms INTEGER NOT NULL DEFAULT 0,
                    attempts INTEGER NOT NULL DEFAULT 0, lease TEXT, last_error TEXT,
                    parked_at_ms INTEGER) STRICT;
                 INSERT INTO kv_changes (tenant, bucket, function, key, seq, op, new, at_ms, writer)
                    VALUES ('acme', 'orders', 's', 'old', 1, 'set', x'31', 1, 'function:w');",
            )
            .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        store
            .kv_set(
                &t("acme"),
                "orders",
                "new",
                b"2".to_vec(),
                KvWriter::new("function:w").traced(TraceContext::new(TP, None)),
            )
            .await
            .unwrap();
        let rows = store.kv_changes(&sub("s"), 100).await.unwrap();
        let seen: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.key.as_str(),
                    r.trace.as_ref().map(TraceContext::traceparent),
                )
            })
            .collect();
        assert_eq!(seen, [("old", None), ("new", Some(TP))]);
    }
}
