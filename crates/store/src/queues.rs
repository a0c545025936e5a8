//! Durable message queues of tenants (`zerofn queue`): the queues' settings
//! and their messages, one row each.
//!
//! Every statement binds the tenant and the queue as parameters; a queue
//! name is checked by the `events` crate before it gets here, a message id
//! and type are opaque data. Times are milliseconds since the Unix epoch
//! given by the caller's clock (so the `events` crate's tests can use a fake
//! one); the store never reads the time itself.
//!
//! A message is visible when `visible_at_ms <= now`. Leasing one moves its
//! `visible_at_ms` forward by the visibility timeout and counts an attempt;
//! acknowledging it (with the lease token it was leased under) deletes it;
//! releasing it sets when it becomes visible again. Moving a message to a
//! dead-letter queue, and back (redrive), updates its row in place, in one
//! transaction, so a message is in exactly one queue at every commit.
//!
//! Publishes commit through the shared connection (`synchronous=FULL`): a
//! publish that returned `Ok` survives a power loss. Leases, acknowledgements
//! and releases go through the delivery connection ([`QueueWorker`],
//! `synchronous=NORMAL`): they survive a process kill, and losing one in a
//! power loss only delivers a message again, which at-least-once allows.

use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};
use zerofn_types::TenantName;

use crate::{write_tx, Store, StoreError};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS queues (
    tenant                 TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    name                   TEXT NOT NULL,
    visibility_timeout_ms  INTEGER NOT NULL,
    max_attempts           INTEGER NOT NULL,
    retention_ms           INTEGER NOT NULL,
    dead_letter            TEXT,
    fifo                   INTEGER NOT NULL,
    created_at             TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
) STRICT;
CREATE TABLE IF NOT EXISTS queue_messages (
    seq              INTEGER PRIMARY KEY,
    tenant           TEXT NOT NULL,
    queue            TEXT NOT NULL,
    id               TEXT NOT NULL,
    type             TEXT NOT NULL,
    content_type     TEXT NOT NULL,
    grp              TEXT,
    body             BLOB NOT NULL,
    published_at_ms  INTEGER NOT NULL,
    visible_at_ms    INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease            TEXT,
    last_error       TEXT,
    source_queue     TEXT,
    traceparent      TEXT,
    tracestate       TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages (tenant, queue, visible_at_ms, seq);
CREATE INDEX IF NOT EXISTS queue_messages_id ON queue_messages (tenant, queue, id);
CREATE INDEX IF NOT EXISTS queue_messages_group ON queue_messages (tenant, queue, grp, seq);
-- Bytes of message data a tenant's queues hold: raised by each publish (in
-- its transaction), lowered by every delete whatever its path (ack, purge,
-- retention, queue delete) through the trigger. Moves between a tenant's
-- queues (dead-lettering, redrive) do not change it.
CREATE TABLE IF NOT EXISTS queue_usage (
    tenant  TEXT PRIMARY KEY,
    bytes   INTEGER NOT NULL
) STRICT;
CREATE TRIGGER IF NOT EXISTS queue_messages_deleted AFTER DELETE ON queue_messages BEGIN
    UPDATE queue_usage SET bytes = max(0, bytes - length(OLD.body)) WHERE tenant = OLD.tenant;
END;
"#;

/// Adds the trace context columns to a `queue_messages` table created
/// before them; messages stored earlier have none (their deliveries start
/// new traces).
pub(crate) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    for column in ["traceparent", "tracestate"] {
        let present = conn
            .prepare("SELECT 1 FROM pragma_table_info('queue_messages') WHERE name = ?1")?
            .exists([column])?;
        if !present {
            conn.execute_batch(&format!(
                "ALTER TABLE queue_messages ADD COLUMN {column} TEXT"
            ))?;
        }
    }
    Ok(())
}

/// A queue's settings as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueRow {
    pub tenant: String,
    pub name: String,
    pub visibility_timeout_ms: u64,
    pub max_attempts: u32,
    pub retention_ms: u64,
    pub dead_letter: Option<String>,
    pub fifo: bool,
    pub created_at: String,
}

/// A message to publish, already checked by the caller.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub event_type: String,
    pub content_type: String,
    pub group: Option<String>,
    pub body: Vec<u8>,
    /// The producer's W3C trace context (checked by the caller), continued
    /// by the message's delivery.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// What a publish of one message did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Published {
    pub id: String,
    /// The queue held a message with this id already: nothing was added.
    pub duplicate: bool,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub seq: i64,
    pub queue: String,
    pub id: String,
    pub event_type: String,
    pub content_type: String,
    pub group: Option<String>,
    pub body: Vec<u8>,
    pub published_at_ms: u64,
    pub visible_at_ms: u64,
    /// Deliveries started so far (this one included, for a leased message).
    pub attempts: u32,
    pub last_error: Option<String>,
    pub source_queue: Option<String>,
    /// The producer's trace context, as checked at publish.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// Counts of a queue's messages at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueCounts {
    /// Ready for delivery now.
    pub visible: u64,
    /// Leased by a delivery, or waiting out a retry delay.
    pub in_flight: u64,
    /// Age of the oldest message in milliseconds (0 when empty).
    pub oldest_age_ms: u64,
}

/// Why a queue operation was refused, besides storage errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueRefusal {
    #[error("queue `{0}` already exists")]
    Exists(String),
    #[error("queue `{0}` does not exist; create it with `zerofn queue create`")]
    NoSuchQueue(String),
    #[error("dead-letter queue `{0}` does not exist; create it first")]
    NoSuchDeadLetter(String),
    #[error("the tenant has {limit} queues, the most it may have; delete one first")]
    TooManyQueues { limit: u32 },
    #[error("queue `{queue}` holds {depth} messages; {adding} more would pass its limit of {limit}; let it drain or purge it")]
    Full {
        queue: String,
        depth: u64,
        adding: u64,
        limit: u64,
    },
    #[error("queue `{queue}` is the dead-letter queue of `{by}`; change or delete `{by}` first")]
    InUse { queue: String, by: String },
    #[error("a FIFO queue's messages need a message group (`--group`)")]
    GroupRequired,
    #[error("only a FIFO queue's messages have a message group")]
    GroupNotFifo,
    #[error("the tenant's queues hold {used} bytes of messages; {adding} more would pass the limit of {limit}; let them drain or purge some")]
    TenantFull { used: u64, adding: u64, limit: u64 },
}

/// A queue failure: a refusal or a storage error.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Refused(#[from] QueueRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> QueueError {
        QueueError::Store(StoreError::Sqlite(e))
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn queue_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueueRow> {
    Ok(QueueRow {
        tenant: r.get(0)?,
        name: r.get(1)?,
        visibility_timeout_ms: to_u64(r.get(2)?),
        max_attempts: u32::try_from(r.get::<_, i64>(3)?).unwrap_or(u32::MAX),
        retention_ms: to_u64(r.get(4)?),
        dead_letter: r.get(5)?,
        fifo: r.get::<_, i64>(6)? != 0,
        created_at: r.get(7)?,
    })
}

const QUEUE_COLUMNS: &str = "tenant, name, visibility_timeout_ms, max_attempts, retention_ms, dead_letter, fifo, created_at";
const MESSAGE_COLUMNS: &str = "seq, queue, id, type, content_type, grp, body, published_at_ms, visible_at_ms, attempts, last_error, source_queue, traceparent, tracestate";

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        seq: r.get(0)?,
        queue: r.get(1)?,
        id: r.get(2)?,
        event_type: r.get(3)?,
        content_type: r.get(4)?,
        group: r.get(5)?,
        body: r.get(6)?,
        published_at_ms: to_u64(r.get(7)?),
        visible_at_ms: to_u64(r.get(8)?),
        attempts: u32::try_from(r.get::<_, i64>(9)?).unwrap_or(u32::MAX),
        last_error: r.get(10)?,
        source_queue: r.get(11)?,
        traceparent: r.get(12)?,
        tracestate: r.get(13)?,
    })
}

fn get_queue(conn: &Connection, tenant: &str, name: &str) -> Result<QueueRow, QueueError> {
    conn.prepare_cached(&format!(
        "SELECT {QUEUE_COLUMNS} FROM queues WHERE tenant = ?1 AND name = ?2"
    ))?
    .query_row(params![tenant, name], queue_row)
    .optional()?
    .ok_or_else(|| QueueRefusal::NoSuchQueue(name.to_owned()).into())
}

fn depth(conn: &Connection, tenant: &str, queue: &str) -> Result<u64, QueueError> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM queue_messages WHERE tenant = ?1 AND queue = ?2")?
        .query_row(params![tenant, queue], |r| r.get(0))?;
    Ok(to_u64(n))
}

/// Drops messages older than their queue's retention (what retention means:
/// SQS does the same), and answers how many went.
fn expire(conn: &Connection, q: &QueueRow, now_ms: u64) -> Result<usize, QueueError> {
    let cutoff = to_i64(now_ms).saturating_sub(to_i64(q.retention_ms));
    Ok(conn
        .prepare_cached(
            "DELETE FROM queue_messages WHERE tenant = ?1 AND queue = ?2 AND published_at_ms < ?3",
        )?
        .execute(params![q.tenant, q.name, cutoff])?)
}

/// The settings of a new queue.
#[derive(Debug, Clone)]
pub struct NewQueue {
    pub name: String,
    pub visibility_timeout_ms: u64,
    pub max_attempts: u32,
    pub retention_ms: u64,
    pub dead_letter: Option<String>,
    pub fifo: bool,
}

impl Store {
    /// Creates a queue; refused when it exists, when its dead-letter queue
    /// does not, or when the tenant has `max_queues` already.
    pub async fn queue_create(
        &self,
        tenant: &TenantName,
        queue: NewQueue,
        max_queues: u32,
        now: &str,
    ) -> Result<QueueRow, QueueError> {
        let tenant = tenant.as_str().to_owned();
        let now = now.to_owned();
        self.queue_op(move |conn| {
            let tx = write_tx(conn)?;
            crate::tenants::require_tenant(&tx, &tenant)?;
            let result = (|| -> Result<_, QueueError> {
                // Bucket triggers' event queues (`@...`, `objects.rs`) are the platform's.
                let count: i64 = tx.query_row(
                    "SELECT count(*) FROM queues WHERE tenant = ?1 AND name NOT LIKE '@%'",
                    params![tenant],
                    |r| r.get(0),
                )?;
                if to_u64(count) >= u64::from(max_queues) {
                    return Err(QueueRefusal::TooManyQueues { limit: max_queues }.into());
                }
                if let Some(dlq) = &queue.dead_letter {
                    if get_queue(&tx, &tenant, dlq).is_err() {
                        return Err(QueueRefusal::NoSuchDeadLetter(dlq.clone()).into());
                    }
                }
                let inserted = tx.execute(
                    "INSERT OR IGNORE INTO queues (tenant, name, visibility_timeout_ms, max_attempts, retention_ms, dead_letter, fifo, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        tenant,
                        queue.name,
                        to_i64(queue.visibility_timeout_ms),
                        i64::from(queue.max_attempts),
                        to_i64(queue.retention_ms),
                        queue.dead_letter,
                        i64::from(queue.fifo),
                        now
                    ],
                )?;
                if inserted == 0 {
                    return Err(QueueRefusal::Exists(queue.name.clone()).into());
                }
                get_queue(&tx, &tenant, &queue.name)
            })();
            let row = result?;
            tx.commit()?;
            Ok(row)
        })
        .await
    }

    /// A queue's settings.
    pub async fn queue_get(&self, tenant: &TenantName, name: &str) -> Result<QueueRow, QueueError> {
        let (tenant, name) = (tenant.as_str().to_owned(), name.to_owned());
        self.queue_op(move |conn| get_queue(conn, &tenant, &name))
            .await
    }

    /// A tenant's queues, by name (an unknown tenant is an error).
    pub async fn queue_list(&self, tenant: &TenantName) -> Result<Vec<QueueRow>, StoreError> {
        let tenant = tenant.as_str().to_owned();
        self.with_conn(move |conn| {
            crate::tenants::require_tenant(conn, &tenant)?;
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {QUEUE_COLUMNS} FROM queues WHERE tenant = ?1 AND name NOT LIKE '@%' ORDER BY name"
                ))?
                .query_map(params![tenant], queue_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Every queue of every tenant (the delivery loop's view).
    pub async fn queue_list_all(&self) -> Result<Vec<QueueRow>, StoreError> {
        self.with_conn(move |conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {QUEUE_COLUMNS} FROM queues ORDER BY tenant, name"
                ))?
                .query_map([], queue_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Deletes a queue and its messages; refused while another queue names it
    /// as its dead-letter queue. Answers how many messages went with it.
    pub async fn queue_delete(&self, tenant: &TenantName, name: &str) -> Result<u64, QueueError> {
        let (tenant, name) = (tenant.as_str().to_owned(), name.to_owned());
        self.queue_op(move |conn| {
            let tx = write_tx(conn)?;
            let result = (|| -> Result<_, QueueError> {
                get_queue(&tx, &tenant, &name)?;
                let by: Option<String> = tx
                    .query_row(
                        "SELECT name FROM queues WHERE tenant = ?1 AND dead_letter = ?2 ORDER BY name LIMIT 1",
                        params![tenant, name],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(by) = by {
                    return Err(QueueRefusal::InUse { queue: name.clone(), by }.into());
                }
                let n = tx.execute(
                    "DELETE FROM queue_messages WHERE tenant = ?1 AND queue = ?2",
                    params![tenant, name],
                )?;
                tx.execute(
                    "DELETE FROM queues WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name],
                )?;
                Ok(n as u64)
            })();
            let n = result?;
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    /// Publishes `messages` in one transaction: all of them or none. A
    /// message whose id the queue holds already is not added again
    /// (`duplicate`). Refused whole when the queue would hold more than
    /// `max_depth` messages or the tenant's queues more than
    /// `max_tenant_bytes` of data, or when group use does not match the queue.
    /// `Ok` means committed with `synchronous=FULL`: durable.
    pub async fn queue_publish(
        &self,
        tenant: &TenantName,
        queue: &str,
        messages: Vec<NewMessage>,
        now_ms: u64,
        max_depth: u64,
        max_tenant_bytes: u64,
    ) -> Result<Vec<Published>, QueueError> {
        let (tenant, queue) = (tenant.as_str().to_owned(), queue.to_owned());
        self.queue_op(move |conn| {
            let tx = write_tx(conn)?;
            let result = publish_in(
                &tx,
                &tenant,
                &queue,
                &messages,
                now_ms,
                (max_depth, max_tenant_bytes),
            );
            let published = result?;
            tx.commit()?;
            Ok(published)
        })
        .await
    }

    /// Up to `limit` messages in delivery order, changing nothing.
    pub async fn queue_peek(
        &self,
        tenant: &TenantName,
        queue: &str,
        limit: u32,
    ) -> Result<Vec<MessageRow>, QueueError> {
        let (tenant, queue) = (tenant.as_str().to_owned(), queue.to_owned());
        self.queue_op(move |conn| {
            (|| -> Result<_, QueueError> {
                get_queue(conn, &tenant, &queue)?;
                let rows = conn
                    .prepare_cached(&format!(
                        "SELECT {MESSAGE_COLUMNS} FROM queue_messages WHERE tenant = ?1 AND queue = ?2 \
                         ORDER BY seq LIMIT ?3"
                    ))?
                    .query_map(params![tenant, queue, i64::from(limit)], message_row)?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })()
        })
        .await
    }

    /// How many messages a queue holds, visible and in flight, at `now_ms`.
    pub async fn queue_counts(
        &self,
        tenant: &TenantName,
        queue: &str,
        now_ms: u64,
    ) -> Result<QueueCounts, QueueError> {
        let (tenant, queue) = (tenant.as_str().to_owned(), queue.to_owned());
        self.queue_op(move |conn| counts(conn, &tenant, &queue, now_ms))
            .await
    }

    /// Deletes every message of a queue; answers how many.
    pub async fn queue_purge(&self, tenant: &TenantName, queue: &str) -> Result<u64, QueueError> {
        let (tenant, queue) = (tenant.as_str().to_owned(), queue.to_owned());
        self.queue_op(move |conn| {
            let tx = write_tx(conn)?;
            let result = (|| -> Result<_, QueueError> {
                get_queue(&tx, &tenant, &queue)?;
                Ok(tx.execute(
                    "DELETE FROM queue_messages WHERE tenant = ?1 AND queue = ?2",
                    params![tenant, queue],
                )? as u64)
            })();
            let n = result?;
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    /// Moves every message of the dead-letter queue `dlq` back to the queue
    /// it came from, visible now, its attempts reset. Refused whole when a
    /// source queue is gone or would pass `max_depth`. Answers how many moved.
    pub async fn queue_redrive(
        &self,
        tenant: &TenantName,
        dlq: &str,
        now_ms: u64,
        max_depth: u64,
    ) -> Result<u64, QueueError> {
        let (tenant, dlq) = (tenant.as_str().to_owned(), dlq.to_owned());
        self.queue_op(move |conn| {
            let tx = write_tx(conn)?;
            let result = (|| -> Result<_, QueueError> {
                get_queue(&tx, &tenant, &dlq)?;
                let sources = tx
                    .prepare(
                        "SELECT source_queue, count(*) FROM queue_messages WHERE tenant = ?1 AND queue = ?2 \
                         AND source_queue IS NOT NULL GROUP BY source_queue",
                    )?
                    .query_map(params![tenant, dlq], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let mut moved = 0u64;
                for (source, n) in sources {
                    get_queue(&tx, &tenant, &source)?;
                    let have = depth(&tx, &tenant, &source)?;
                    if have.saturating_add(to_u64(n)) > max_depth {
                        return Err(QueueRefusal::Full {
                            queue: source,
                            depth: have,
                            adding: to_u64(n),
                            limit: max_depth,
                        }
                        .into());
                    }
                    moved = moved.saturating_add(tx.execute(
                        "UPDATE queue_messages SET queue = ?3, source_queue = NULL, attempts = 0, \
                         lease = NULL, visible_at_ms = ?4 WHERE tenant = ?1 AND queue = ?2 AND source_queue = ?3",
                        params![tenant, dlq, source, to_i64(now_ms)],
                    )? as u64);
                }
                Ok(moved)
            })();
            let n = result?;
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    /// A connection of its own for the delivery loop (leases,
    /// acknowledgements, releases), committing with `synchronous=NORMAL`.
    pub fn open_queue_worker(&self) -> Result<QueueWorker, StoreError> {
        let conn = crate::open_connection(&self.path)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(QueueWorker {
            conn: Arc::new(Mutex::new(conn)),
        })
    }
}

impl Store {
    /// Runs `f` with the shared connection on the blocking pool, keeping
    /// refusals apart from storage errors.
    async fn queue_op<R, F>(&self, f: F) -> Result<R, QueueError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, QueueError> + Send + 'static,
    {
        self.with_conn(move |conn| Ok(f(conn))).await?
    }
}

fn publish_in(
    tx: &Connection,
    tenant: &str,
    queue: &str,
    messages: &[NewMessage],
    now_ms: u64,
    (max_depth, max_tenant_bytes): (u64, u64),
) -> Result<Vec<Published>, QueueError> {
    let q = get_queue(tx, tenant, queue)?;
    for m in messages {
        match (&m.group, q.fifo) {
            (None, true) => return Err(QueueRefusal::GroupRequired.into()),
            (Some(_), false) => return Err(QueueRefusal::GroupNotFifo.into()),
            _ => {}
        }
    }
    expire(tx, &q, now_ms)?;
    let have = depth(tx, tenant, queue)?;
    let adding = messages.len() as u64;
    if have.saturating_add(adding) > max_depth {
        return Err(QueueRefusal::Full {
            queue: queue.to_owned(),
            depth: have,
            adding,
            limit: max_depth,
        }
        .into());
    }
    let used: i64 = tx
        .query_row(
            "SELECT bytes FROM queue_usage WHERE tenant = ?1",
            params![tenant],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    let bytes: u64 = messages.iter().map(|m| m.body.len() as u64).sum();
    if to_u64(used).saturating_add(bytes) > max_tenant_bytes {
        return Err(QueueRefusal::TenantFull {
            used: to_u64(used),
            adding: bytes,
            limit: max_tenant_bytes,
        }
        .into());
    }
    let mut exists = tx.prepare_cached(
        "SELECT 1 FROM queue_messages WHERE tenant = ?1 AND queue = ?2 AND id = ?3",
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO queue_messages (tenant, queue, id, type, content_type, grp, body, published_at_ms, visible_at_ms, traceparent, tracestate) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10)",
    )?;
    let mut out = Vec::with_capacity(messages.len());
    let mut added = 0u64;
    for m in messages {
        if exists.exists(params![tenant, queue, m.id])? {
            out.push(Published {
                id: m.id.clone(),
                duplicate: true,
            });
            continue;
        }
        insert.execute(params![
            tenant,
            queue,
            m.id,
            m.event_type,
            m.content_type,
            m.group,
            m.body,
            to_i64(now_ms),
            m.traceparent,
            m.tracestate
        ])?;
        added = added.saturating_add(m.body.len() as u64);
        out.push(Published {
            id: m.id.clone(),
            duplicate: false,
        });
    }
    tx.prepare_cached(
        "INSERT INTO queue_usage (tenant, bytes) VALUES (?1, ?2) \
         ON CONFLICT (tenant) DO UPDATE SET bytes = bytes + excluded.bytes",
    )?
    .execute(params![tenant, to_i64(added)])?;
    Ok(out)
}

fn counts(
    conn: &Connection,
    tenant: &str,
    queue: &str,
    now_ms: u64,
) -> Result<QueueCounts, QueueError> {
    get_queue(conn, tenant, queue)?;
    let (visible, in_flight, oldest): (i64, i64, Option<i64>) = conn
        .prepare_cached(
            "SELECT coalesce(sum(visible_at_ms <= ?3), 0), coalesce(sum(visible_at_ms > ?3), 0), min(published_at_ms) \
             FROM queue_messages WHERE tenant = ?1 AND queue = ?2",
        )?
        .query_row(params![tenant, queue, to_i64(now_ms)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    Ok(QueueCounts {
        visible: to_u64(visible),
        in_flight: to_u64(in_flight),
        oldest_age_ms: oldest.map_or(0, |o| now_ms.saturating_sub(to_u64(o))),
    })
}

/// A message leased for one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    pub message: MessageRow,
    /// The token that acknowledges or releases this lease, and only it.
    pub lease: String,
}

/// What the delivery loop's lease of a queue did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseBatch {
    pub leased: Vec<Leased>,
    /// Messages that had used all their attempts (their last lease
    /// expired) and moved to the dead-letter queue: `(id, last error)`.
    pub dead_lettered: Vec<(String, String)>,
    /// Messages dropped for passing their retention.
    pub expired: usize,
    /// The queue's visibility timeout (what a retry delay is capped at).
    pub visibility_timeout_ms: u64,
}

/// The delivery loop's connection (see the module docs).
#[derive(Clone)]
pub struct QueueWorker {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for QueueWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueWorker")
    }
}

impl QueueWorker {
    async fn with_conn<R, F>(&self, f: F) -> Result<R, QueueError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, QueueError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| StoreError::Poisoned)?;
            f(&mut guard)
        })
        .await
        .map_err(|_| StoreError::TaskFailed)?
    }

    /// Leases up to `limit` visible messages of a queue for `lease_ms`,
    /// counting an attempt on each, under the token `lease`.
    ///
    /// A FIFO queue offers only the oldest message of each message group,
    /// and only when it is visible: a group waits while its head is in
    /// flight or waiting out a retry, so its messages are delivered in
    /// order, one at a time. A visible message that has used its
    /// `max_attempts` (its last delivery never settled: a crash, a lease
    /// that ran out) moves to the dead-letter queue instead, if the queue
    /// has one.
    pub async fn lease(
        &self,
        tenant: &str,
        queue: &str,
        now_ms: u64,
        limit: u32,
        lease: &str,
    ) -> Result<LeaseBatch, QueueError> {
        let (tenant, queue, lease) = (tenant.to_owned(), queue.to_owned(), lease.to_owned());
        self.with_conn(move |conn| {
            let tx = write_tx(conn)?;
            let batch = lease_in(&tx, &tenant, &queue, now_ms, limit, &lease)?;
            tx.commit()?;
            Ok(batch)
        })
        .await
    }

    /// Deletes a delivered message, if it is still under `lease` (a lease
    /// that ran out and was taken again is the new delivery's to settle).
    /// Answers whether it was deleted.
    pub async fn acknowledge(&self, seq: i64, lease: &str) -> Result<bool, QueueError> {
        let lease = lease.to_owned();
        self.with_conn(move |conn| {
            Ok(conn
                .prepare_cached("DELETE FROM queue_messages WHERE seq = ?1 AND lease = ?2")?
                .execute(params![seq, lease])?
                > 0)
        })
        .await
    }

    /// Settles a failed delivery still under `lease`: with attempts left (or
    /// no dead-letter queue) the message becomes visible at `retry_at_ms`;
    /// otherwise it moves to the dead-letter queue with `error`. Answers
    /// what happened (`None`: the lease had been taken again).
    pub async fn release(
        &self,
        seq: i64,
        lease: &str,
        retry_at_ms: u64,
        error: &str,
        now_ms: u64,
    ) -> Result<Option<Released>, QueueError> {
        self.settle_failure(seq, lease, retry_at_ms, error, now_ms, false)
            .await
    }

    /// Settles a delivery that can never succeed (the event does not match
    /// its trigger's schema): it moves to the dead-letter queue at once,
    /// whatever attempts it has left. Without a dead-letter queue it is
    /// released like any failure, to be retried until its retention ends
    /// (nothing is deleted unseen).
    pub async fn give_up(
        &self,
        seq: i64,
        lease: &str,
        retry_at_ms: u64,
        error: &str,
        now_ms: u64,
    ) -> Result<Option<Released>, QueueError> {
        self.settle_failure(seq, lease, retry_at_ms, error, now_ms, true)
            .await
    }

    async fn settle_failure(
        &self,
        seq: i64,
        lease: &str,
        retry_at_ms: u64,
        error: &str,
        now_ms: u64,
        give_up: bool,
    ) -> Result<Option<Released>, QueueError> {
        let (lease, error) = (lease.to_owned(), error.to_owned());
        self.with_conn(move |conn| {
            let tx = write_tx(conn)?;
            let row: Option<(String, String, i64)> = tx
                .query_row(
                    "SELECT tenant, queue, attempts FROM queue_messages WHERE seq = ?1 AND lease = ?2",
                    params![seq, lease],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((tenant, queue, attempts)) = row else {
                return Ok(None);
            };
            let q = get_queue(&tx, &tenant, &queue)?;
            let out = match &q.dead_letter {
                Some(dlq) if give_up || to_u64(attempts) >= u64::from(q.max_attempts) => {
                    dead_letter(&tx, seq, &queue, dlq, &error, now_ms)?;
                    Released::DeadLettered {
                        queue: dlq.clone(),
                    }
                }
                _ => {
                    tx.execute(
                        "UPDATE queue_messages SET visible_at_ms = ?2, lease = NULL, last_error = ?3 WHERE seq = ?1",
                        params![seq, to_i64(retry_at_ms), error],
                    )?;
                    Released::Retry {
                        at_ms: retry_at_ms,
                    }
                }
            };
            tx.commit()?;
            Ok(Some(out))
        })
        .await
    }

    /// The earliest time a message of the queue becomes visible, if any is
    /// waiting (the loop sleeps until then).
    pub async fn next_visible(&self, tenant: &str, queue: &str) -> Result<Option<u64>, QueueError> {
        let (tenant, queue) = (tenant.to_owned(), queue.to_owned());
        self.with_conn(move |conn| {
            let at: Option<i64> = conn
                .prepare_cached(
                    "SELECT min(visible_at_ms) FROM queue_messages WHERE tenant = ?1 AND queue = ?2",
                )?
                .query_row(params![tenant, queue], |r| r.get(0))?;
            Ok(at.map(to_u64))
        })
        .await
    }
}

/// How a failed delivery was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    Retry { at_ms: u64 },
    DeadLettered { queue: String },
}

fn dead_letter(
    tx: &Connection,
    seq: i64,
    from: &str,
    dlq: &str,
    error: &str,
    now_ms: u64,
) -> Result<(), QueueError> {
    tx.execute(
        "UPDATE queue_messages SET queue = ?2, source_queue = ?3, attempts = 0, lease = NULL, \
         last_error = ?4, visible_at_ms = ?5 WHERE seq = ?1",
        params![seq, dlq, from, error, to_i64(now_ms)],
    )?;
    Ok(())
}

fn lease_in(
    tx: &Connection,
    tenant: &str,
    queue: &str,
    now_ms: u64,
    limit: u32,
    lease: &str,
) -> Result<LeaseBatch, QueueError> {
    let q = get_queue(tx, tenant, queue)?;
    let mut batch = LeaseBatch {
        expired: expire(tx, &q, now_ms)?,
        visibility_timeout_ms: q.visibility_timeout_ms,
        ..LeaseBatch::default()
    };
    // A few more candidates than wanted: exhausted ones are moved aside.
    let want = i64::from(limit).saturating_mul(2).saturating_add(8);
    let sql = if q.fifo {
        // The head of each group, if it is visible.
        format!(
            "SELECT {MESSAGE_COLUMNS} FROM queue_messages m WHERE tenant = ?1 AND queue = ?2 \
             AND seq = (SELECT min(seq) FROM queue_messages h WHERE h.tenant = m.tenant AND h.queue = m.queue AND h.grp = m.grp) \
             AND visible_at_ms <= ?3 ORDER BY seq LIMIT ?4"
        )
    } else {
        format!(
            "SELECT {MESSAGE_COLUMNS} FROM queue_messages WHERE tenant = ?1 AND queue = ?2 \
             AND visible_at_ms <= ?3 ORDER BY visible_at_ms, seq LIMIT ?4"
        )
    };
    let candidates = tx
        .prepare_cached(&sql)?
        .query_map(params![tenant, queue, to_i64(now_ms), want], message_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let visible_until = to_i64(now_ms.saturating_add(q.visibility_timeout_ms));
    for mut m in candidates {
        if batch.leased.len() >= limit as usize {
            break;
        }
        if m.attempts >= q.max_attempts {
            if let Some(dlq) = &q.dead_letter {
                let error = m.last_error.clone().unwrap_or_else(|| {
                    "the delivery never settled before its visibility timeout ran out".to_owned()
                });
                dead_letter(tx, m.seq, queue, dlq, &error, now_ms)?;
                batch.dead_lettered.push((m.id, error));
                continue;
            }
        }
        tx.prepare_cached(
            "UPDATE queue_messages SET visible_at_ms = ?2, attempts = attempts + 1, lease = ?3 WHERE seq = ?1",
        )?
        .execute(params![m.seq, visible_until, lease])?;
        m.attempts = m.attempts.saturating_add(1);
        m.visible_at_ms = to_u64(visible_until);
        batch.leased.push(Leased {
            message: m,
            lease: lease.to_owned(),
        });
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_names::t;

    fn q(name: &str, fifo: bool, dlq: Option<&str>) -> NewQueue {
        NewQueue {
            name: name.into(),
            visibility_timeout_ms: 1000,
            max_attempts: 2,
            retention_ms: 86_400_000,
            dead_letter: dlq.map(Into::into),
            fifo,
        }
    }

    fn msg(id: &str, group: Option<&str>) -> NewMessage {
        NewMessage {
            id: id.into(),
            event_type: "t".into(),
            content_type: "text/plain".into(),
            group: group.map(Into::into),
            body: id.as_bytes().to_vec(),
            traceparent: None,
            tracestate: None,
        }
    }

    #[tokio::test]
    async fn publish_lease_ack_dead_letter_and_redrive() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let acme = t("acme");
        store.create_tenant(&acme, "t0").await.unwrap();
        // Unknown dead-letter queue: refused, nothing created.
        assert!(matches!(
            store
                .queue_create(&acme, q("orders", false, Some("dlq")), 10, "t")
                .await,
            Err(QueueError::Refused(QueueRefusal::NoSuchDeadLetter(_)))
        ));
        assert!(store.queue_list(&acme).await.unwrap().is_empty());
        store
            .queue_create(&acme, q("dlq", false, None), 10, "t")
            .await
            .unwrap();
        store
            .queue_create(&acme, q("orders", false, Some("dlq")), 10, "t")
            .await
            .unwrap();
        assert!(matches!(
            store
                .queue_create(&acme, q("orders", false, None), 10, "t")
                .await,
            Err(QueueError::Refused(QueueRefusal::Exists(_)))
        ));
        assert!(matches!(
            store
                .queue_create(&acme, q("third", false, None), 2, "t")
                .await,
            Err(QueueError::Refused(QueueRefusal::TooManyQueues {
                limit: 2
            }))
        ));
        let p = store
            .queue_publish(
                &acme,
                "orders",
                vec![msg("a", None), msg("a", None)],
                10,
                100,
                u64::MAX,
            )
            .await
            .unwrap();
        assert_eq!(
            p.iter().map(|p| p.duplicate).collect::<Vec<_>>(),
            [false, true]
        );
        // Depth limit: refused whole.
        assert!(matches!(
            store
                .queue_publish(
                    &acme,
                    "orders",
                    vec![msg("b", None), msg("c", None)],
                    10,
                    2,
                    u64::MAX
                )
                .await,
            Err(QueueError::Refused(QueueRefusal::Full { .. }))
        ));
        assert_eq!(
            store.queue_peek(&acme, "orders", 10).await.unwrap().len(),
            1
        );

        let w = store.open_queue_worker().unwrap();
        let b = w.lease("acme", "orders", 20, 10, "L1").await.unwrap();
        assert_eq!(b.leased.len(), 1);
        assert_eq!(b.leased[0].message.attempts, 1);
        // Invisible while leased.
        assert!(w
            .lease("acme", "orders", 500, 10, "L2")
            .await
            .unwrap()
            .leased
            .is_empty());
        let r = w
            .release(b.leased[0].message.seq, "L1", 600, "500", 30)
            .await
            .unwrap();
        assert_eq!(r, Some(Released::Retry { at_ms: 600 }));
        let b = w.lease("acme", "orders", 600, 10, "L3").await.unwrap();
        assert_eq!(b.leased[0].message.attempts, 2);
        // A stale lease settles nothing.
        assert!(!w.acknowledge(b.leased[0].message.seq, "L1").await.unwrap());
        let r = w
            .release(b.leased[0].message.seq, "L3", 700, "boom", 650)
            .await
            .unwrap();
        assert_eq!(
            r,
            Some(Released::DeadLettered {
                queue: "dlq".into()
            })
        );
        let dead = store.queue_peek(&acme, "dlq", 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].last_error.as_deref(), Some("boom"));
        assert_eq!(dead[0].source_queue.as_deref(), Some("orders"));
        assert!(matches!(
            store.queue_delete(&acme, "dlq").await,
            Err(QueueError::Refused(QueueRefusal::InUse { .. }))
        ));
        assert_eq!(
            store.queue_redrive(&acme, "dlq", 800, 100).await.unwrap(),
            1
        );
        let b = w.lease("acme", "orders", 800, 10, "L4").await.unwrap();
        assert_eq!(b.leased[0].message.attempts, 1);
        assert!(w.acknowledge(b.leased[0].message.seq, "L4").await.unwrap());
        assert_eq!(
            store.queue_counts(&acme, "orders", 900).await.unwrap(),
            QueueCounts::default()
        );
        // A delivery that can never succeed goes to the dead-letter queue on
        // its first attempt.
        store
            .queue_publish(&acme, "orders", vec![msg("bad", None)], 1000, 100, u64::MAX)
            .await
            .unwrap();
        let b = w.lease("acme", "orders", 1000, 10, "L5").await.unwrap();
        assert_eq!(b.leased[0].message.attempts, 1);
        let r = w
            .give_up(b.leased[0].message.seq, "L5", 1100, "schema: event", 1000)
            .await
            .unwrap();
        assert_eq!(
            r,
            Some(Released::DeadLettered {
                queue: "dlq".into()
            })
        );
        assert_eq!(store.queue_peek(&acme, "dlq", 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_tenants_queued_bytes_are_bounded_and_freed_by_every_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let acme = t("acme");
        let other = t("other");
        for tenant in [&acme, &other] {
            store.create_tenant(tenant, "t0").await.unwrap();
            store
                .queue_create(tenant, q("a", false, None), 10, "t")
                .await
                .unwrap();
        }
        store
            .queue_create(&acme, q("b", false, None), 10, "t")
            .await
            .unwrap();
        // 1 + 2 = 3 bytes in two queues; a 4-byte limit refuses 2 more, whole.
        store
            .queue_publish(&acme, "a", vec![msg("1", None)], 1, 100, 4)
            .await
            .unwrap();
        store
            .queue_publish(&acme, "b", vec![msg("22", None)], 1, 100, 4)
            .await
            .unwrap();
        assert!(matches!(
            store
                .queue_publish(&acme, "a", vec![msg("33", None)], 1, 100, 4)
                .await,
            Err(QueueError::Refused(QueueRefusal::TenantFull {
                used: 3,
                adding: 2,
                limit: 4
            }))
        ));
        assert_eq!(store.queue_peek(&acme, "a", 10).await.unwrap().len(), 1);
        // Another tenant has its own budget.
        store
            .queue_publish(&other, "a", vec![msg("4444", None)], 1, 100, 4)
            .await
            .unwrap();
        // An acknowledgement frees its bytes; so do a purge and a delete.
        let w = store.open_queue_worker().unwrap();
        let b = w.lease("acme", "b", 2, 10, "L").await.unwrap();
        assert!(w.acknowledge(b.leased[0].message.seq, "L").await.unwrap());
        store
            .queue_publish(&acme, "a", vec![msg("33", None)], 3, 100, 4)
            .await
            .unwrap();
        assert_eq!(store.queue_purge(&acme, "a").await.unwrap(), 2);
        store
            .queue_publish(&acme, "b", vec![msg("4444", None)], 4, 100, 4)
            .await
            .unwrap();
        store.queue_delete(&acme, "b").await.unwrap();
        store
            .queue_publish(&acme, "a", vec![msg("5555", None)], 5, 100, 4)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn fifo_offers_one_message_per_group_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let acme = t("acme");
        store.create_tenant(&acme, "t0").await.unwrap();
        store
            .queue_create(&acme, q("f", true, None), 10, "t")
            .await
            .unwrap();
        assert!(matches!(
            store
                .queue_publish(&acme, "f", vec![msg("x", None)], 1, 100, u64::MAX)
                .await,
            Err(QueueError::Refused(QueueRefusal::GroupRequired))
        ));
        store
            .queue_publish(
                &acme,
                "f",
                vec![
                    msg("a1", Some("a")),
                    msg("b1", Some("b")),
                    msg("a2", Some("a")),
                ],
                1,
                100,
                u64::MAX,
            )
            .await
            .unwrap();
        let w = store.open_queue_worker().unwrap();
        let b = w.lease("acme", "f", 2, 10, "L").await.unwrap();
        let ids: Vec<_> = b.leased.iter().map(|l| l.message.id.as_str()).collect();
        assert_eq!(ids, ["a1", "b1"]);
        // a2 waits for a1 even past a1's lease, until a1 is settled.
        assert!(w
            .lease("acme", "f", 3, 10, "L")
            .await
            .unwrap()
            .leased
            .is_empty());
        assert!(w.acknowledge(b.leased[0].message.seq, "L").await.unwrap());
        let b = w.lease("acme", "f", 4, 10, "M").await.unwrap();
        assert_eq!(b.leased[0].message.id, "a2");
    }
}
