//! Object storage of tenants (`zerofn object`): buckets and the metadata of
//! their objects in the database, the objects' bytes as files named by their
//! SHA-256 digest under `<data dir>/objects/blobs/`, and the outbox of object
//! events (rows of the bound functions' event queues, see below).
//!
//! Blobs are content-addressed: identical bodies share one file, whatever
//! tenant, bucket or key they are stored under; a blob is removed once no
//! object's metadata names its digest ([`Store::object_blob_collect`]).
//! A blob is written before the metadata that names it is committed
//! (temporary file, `fsync`, `rename`, `fsync` of the directory), so a
//! committed object always has its bytes; a crash between the two leaves an
//! unreferenced blob that [`Store::object_blob_sweep`] removes at start-up.
//! Reads check the bytes against the digest: a blob changed on disk is an
//! error, never served.
//!
//! Every statement binds the tenant, bucket and key as parameters: a key is
//! opaque data (checked by the `events` crate before it gets here) and
//! cannot reach a row of another bucket or tenant. Blob paths are built
//! from the hex digest this module computed, never from a name.
//!
//! Object events: a put or delete inserts, in the same transaction as its
//! metadata change, one message per bound function into that function's
//! event queue (an internal queue in `queue_messages`, named by the
//! `events` crate so that no tenant queue name can collide with it). The
//! queue delivery loop delivers them: a committed change always has its
//! events, and a change refused changes nothing and emits none. An event
//! keeps the trace context of the request that made its change (checked,
//! see `trace_context.rs`) in the message's `traceparent`/`tracestate`
//! columns, as a published message keeps its producer's.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest as _, Sha256};
use zerofn_types::TenantName;

use crate::queues::QueueError;
use crate::trace_context::TraceContext;
use crate::{write_tx, Store, StoreError};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS buckets (
    tenant        TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    -- The last version given to an object of the bucket: versions only grow.
    last_version  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, name)
) STRICT;
CREATE TABLE IF NOT EXISTS objects (
    tenant        TEXT NOT NULL,
    bucket        TEXT NOT NULL,
    key           TEXT NOT NULL,
    digest        TEXT NOT NULL,
    size          INTEGER NOT NULL,
    content_type  TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    version       INTEGER NOT NULL,
    PRIMARY KEY (tenant, bucket, key)
) STRICT;
CREATE INDEX IF NOT EXISTS objects_digest ON objects (digest);
CREATE INDEX IF NOT EXISTS objects_tenant ON objects (tenant);
"#;

/// The directory under the data directory holding the blobs.
pub const OBJECTS_DIR: &str = "objects";

/// An object's metadata as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectRow {
    pub tenant: String,
    pub bucket: String,
    pub key: String,
    /// `sha256:<64 hex>` of the bytes.
    pub digest: String,
    pub size: u64,
    pub content_type: String,
    pub created_at: String,
    /// Grows with every put in the bucket.
    pub version: u64,
}

/// A bucket with what it holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BucketRow {
    pub tenant: String,
    pub name: String,
    pub created_at: String,
    pub objects: u64,
    pub bytes: u64,
}

/// A blob written to disk: the digest the metadata names it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// `sha256:<64 hex>`.
    pub digest: String,
    pub size: u64,
    /// Another object already had these bytes: nothing new was written.
    pub shared: bool,
}

/// What bounds one tenant's objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLimits {
    pub max_buckets: u32,
    pub max_objects: u64,
    pub max_bytes: u64,
    /// Most messages one bound function's event queue holds.
    pub max_event_depth: u64,
}

/// An object event for one bound function, to commit with the change.
#[derive(Debug, Clone)]
pub struct ObjectEventRow {
    /// The function's internal event queue (named by the `events` crate).
    pub queue: String,
    /// The tenant queue its failed events move to, if the trigger names one
    /// (used only if that queue exists when the event queue is made).
    pub dead_letter: Option<String>,
    pub visibility_timeout_ms: u64,
    pub max_attempts: u32,
    pub retention_ms: u64,
    pub id: String,
    pub event_type: String,
    pub body: Vec<u8>,
    /// The trace context of the request that made the change, if it was
    /// traced: stored with the event (the queue message's `traceparent`
    /// and `tracestate`), so that its delivery continues that trace.
    pub trace: Option<TraceContext>,
}

/// A put of metadata.
#[derive(Debug, Clone)]
pub struct NewObject {
    pub bucket: String,
    pub key: String,
    pub blob: StoredBlob,
    pub content_type: String,
}

/// Why an object operation was refused, besides storage errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectRefusal {
    #[error("bucket `{0}` does not exist; a put creates it")]
    NoSuchBucket(String),
    #[error("object `{key}` does not exist in bucket `{bucket}`")]
    NoSuchObject { bucket: String, key: String },
    #[error("bucket `{bucket}` holds {objects} objects; delete them first")]
    BucketNotEmpty { bucket: String, objects: u64 },
    #[error("the tenant has {limit} buckets, the most it may have; delete an empty one first")]
    TooManyBuckets { limit: u32 },
    #[error("the tenant holds {count} objects, the most it may hold ({limit}); delete some first")]
    TooManyObjects { count: u64, limit: u64 },
    #[error("the tenant's objects hold {used} bytes; {adding} more would pass the limit of {limit}; delete some first")]
    TenantFull { used: u64, adding: u64, limit: u64 },
    #[error("the event queue of function `{function}` holds {depth} events, its limit; the change was not made (let its deliveries drain)")]
    EventsFull { function: String, depth: u64 },
}

/// An object failure: a refusal, a blob file that cannot be written or read,
/// or a storage error.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(transparent)]
    Refused(#[from] ObjectRefusal),
    #[error("cannot {action} the blob file `{}`", path.display())]
    Blob {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the blob of `{digest}` does not match its digest: the data directory was changed outside the platform; the object is not served")]
    BlobCorrupt { digest: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for ObjectError {
    fn from(e: rusqlite::Error) -> ObjectError {
        ObjectError::Store(StoreError::Sqlite(e))
    }
}

impl From<QueueError> for ObjectError {
    fn from(e: QueueError) -> ObjectError {
        match e {
            QueueError::Store(s) => ObjectError::Store(s),
            // No queue refusal reaches here: the event queues are made in place.
            QueueError::Refused(r) => ObjectError::Store(StoreError::Corrupt(r.to_string())),
        }
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

const OBJECT_COLUMNS: &str = "tenant, bucket, key, digest, size, content_type, created_at, version";

fn object_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ObjectRow> {
    Ok(ObjectRow {
        tenant: r.get(0)?,
        bucket: r.get(1)?,
        key: r.get(2)?,
        digest: r.get(3)?,
        size: to_u64(r.get(4)?),
        content_type: r.get(5)?,
        created_at: r.get(6)?,
        version: to_u64(r.get(7)?),
    })
}

fn get_object(
    conn: &Connection,
    tenant: &str,
    bucket: &str,
    key: &str,
) -> Result<Option<ObjectRow>, ObjectError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE tenant = ?1 AND bucket = ?2 AND key = ?3"
        ))?
        .query_row(params![tenant, bucket, key], object_row)
        .optional()?)
}

fn bucket_exists(conn: &Connection, tenant: &str, bucket: &str) -> Result<bool, ObjectError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM buckets WHERE tenant = ?1 AND name = ?2")?
        .exists(params![tenant, bucket])?)
}

/// Inserts the events of one change into their queues, making each queue
/// the first time (with its dead-letter queue only if that exists).
fn enqueue_events(
    tx: &Connection,
    tenant: &str,
    events: &[ObjectEventRow],
    now_ms: u64,
    now: &str,
    max_depth: u64,
) -> Result<(), ObjectError> {
    let mut added = 0u64;
    for e in events {
        let dead_letter = match &e.dead_letter {
            Some(d) => tx
                .prepare_cached("SELECT name FROM queues WHERE tenant = ?1 AND name = ?2")?
                .query_row(params![tenant, d], |r| r.get::<_, String>(0))
                .optional()?,
            None => None,
        };
        // The queue's settings follow the trigger: a redeploy that changes them
        // changes the queue at its next event.
        tx.prepare_cached(
            "INSERT INTO queues (tenant, name, visibility_timeout_ms, max_attempts, retention_ms, dead_letter, fifo, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7) \
             ON CONFLICT (tenant, name) DO UPDATE SET visibility_timeout_ms = excluded.visibility_timeout_ms, \
             max_attempts = excluded.max_attempts, retention_ms = excluded.retention_ms, dead_letter = excluded.dead_letter",
        )?
        .execute(params![
            tenant,
            e.queue,
            to_i64(e.visibility_timeout_ms),
            i64::from(e.max_attempts),
            to_i64(e.retention_ms),
            dead_letter,
            now
        ])?;
        // Events older than the retention go first, as a publish expires a queue's.
        tx.prepare_cached(
            "DELETE FROM queue_messages WHERE tenant = ?1 AND queue = ?2 AND published_at_ms < ?3",
        )?
        .execute(params![
            tenant,
            e.queue,
            to_i64(now_ms).saturating_sub(to_i64(e.retention_ms))
        ])?;
        let depth: i64 = tx
            .prepare_cached("SELECT count(*) FROM queue_messages WHERE tenant = ?1 AND queue = ?2")?
            .query_row(params![tenant, e.queue], |r| r.get(0))?;
        if to_u64(depth) >= max_depth {
            return Err(ObjectRefusal::EventsFull {
                function: e.queue.rsplit('/').next().unwrap_or_default().to_owned(),
                depth: to_u64(depth),
            }
            .into());
        }
        tx.prepare_cached(
            "INSERT INTO queue_messages (tenant, queue, id, type, content_type, grp, body, published_at_ms, visible_at_ms, traceparent, tracestate) \
             VALUES (?1, ?2, ?3, ?4, 'application/json', NULL, ?5, ?6, ?6, ?7, ?8)",
        )?
        .execute(params![
            tenant,
            e.queue,
            e.id,
            e.event_type,
            e.body,
            to_i64(now_ms),
            e.trace.as_ref().map(TraceContext::traceparent),
            e.trace.as_ref().and_then(TraceContext::tracestate)
        ])?;
        added = added.saturating_add(e.body.len() as u64);
    }
    if added > 0 {
        // The queue usage trigger lowers it on every delete of these rows.
        tx.prepare_cached(
            "INSERT INTO queue_usage (tenant, bytes) VALUES (?1, ?2) \
             ON CONFLICT (tenant) DO UPDATE SET bytes = bytes + excluded.bytes",
        )?
        .execute(params![tenant, to_i64(added)])?;
    }
    Ok(())
}

/// `sha256:<hex>` of `data`.
pub fn blob_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The hex part of a digest this module wrote, if it is one (64 lowercase
/// hex digits): nothing else becomes a path.
fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ObjectError {
    let path = path.to_path_buf();
    move |source| ObjectError::Blob {
        action,
        path,
        source,
    }
}

/// Where the blobs live.
#[derive(Debug, Clone)]
struct BlobDir {
    blobs: PathBuf,
    tmp: PathBuf,
}

impl BlobDir {
    fn of(db_path: &Path) -> BlobDir {
        let root = db_path
            .parent()
            .map_or_else(|| PathBuf::from(OBJECTS_DIR), |p| p.join(OBJECTS_DIR));
        BlobDir {
            blobs: root.join("blobs"),
            tmp: root.join("tmp"),
        }
    }

    fn create(&self) -> Result<(), ObjectError> {
        use std::os::unix::fs::DirBuilderExt;
        for dir in [&self.blobs, &self.tmp] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_error("create", dir))?;
        }
        Ok(())
    }

    fn path(&self, digest: &str) -> Result<PathBuf, ObjectError> {
        let hex = digest_hex(digest).ok_or_else(|| {
            ObjectError::Store(StoreError::Corrupt(format!(
                "object digest `{}` is not sha256:<64 hex>",
                digest.escape_debug()
            )))
        })?;
        Ok(self.blobs.join(hex))
    }

    /// Writes `data` as the blob of its digest: to a temporary file, synced,
    /// renamed into place, the directory synced. An existing blob of the
    /// same digest is kept (same bytes).
    fn write(&self, data: &[u8]) -> Result<StoredBlob, ObjectError> {
        use std::os::unix::fs::OpenOptionsExt;
        self.create()?;
        let digest = blob_digest(data);
        let path = self.path(&digest)?;
        let size = data.len() as u64;
        if path.is_file() {
            return Ok(StoredBlob {
                digest,
                size,
                shared: true,
            });
        }
        let tmp = self.tmp.join(format!(
            "{}.{}",
            digest_hex(&digest).unwrap_or_default(),
            uuid_like()
        ));
        let result = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io_error("create", &tmp))?;
            file.write_all(data).map_err(io_error("write", &tmp))?;
            file.sync_all().map_err(io_error("sync", &tmp))?;
            drop(file);
            std::fs::rename(&tmp, &path).map_err(io_error("rename", &path))?;
            std::fs::File::open(&self.blobs)
                .and_then(|d| d.sync_all())
                .map_err(io_error("sync", &self.blobs))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        Ok(StoredBlob {
            digest,
            size,
            shared: false,
        })
    }

    fn read(&self, digest: &str) -> Result<Vec<u8>, ObjectError> {
        let path = self.path(digest)?;
        let data = std::fs::read(&path).map_err(io_error("read", &path))?;
        if blob_digest(&data) != digest {
            return Err(ObjectError::BlobCorrupt {
                digest: digest.to_owned(),
            });
        }
        Ok(data)
    }
}

/// A unique suffix for temporary files (the process id and a counter: two
/// writers of the same digest never share a temporary file).
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn referenced(conn: &Connection, digest: &str) -> Result<bool, ObjectError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM objects WHERE digest = ?1 LIMIT 1")?
        .exists(params![digest])?)
}

impl Store {
    fn blob_dir(&self) -> BlobDir {
        BlobDir::of(&self.path)
    }

    /// Writes `data` as a blob (atomically, see the module docs) and answers
    /// its digest. The blob is unreferenced until a put commits metadata
    /// naming it; the caller keeps the collector out meanwhile.
    pub async fn object_blob_write(&self, data: Vec<u8>) -> Result<StoredBlob, ObjectError> {
        let dir = self.blob_dir();
        tokio::task::spawn_blocking(move || dir.write(&data))
            .await
            .map_err(|_| ObjectError::Store(StoreError::TaskFailed))?
    }

    /// The bytes of `row`, checked against its digest.
    pub async fn object_blob_read(&self, digest: &str) -> Result<Vec<u8>, ObjectError> {
        let dir = self.blob_dir();
        let digest = digest.to_owned();
        tokio::task::spawn_blocking(move || dir.read(&digest))
            .await
            .map_err(|_| ObjectError::Store(StoreError::TaskFailed))?
    }

    /// Removes the blob of `digest` if no object names it; answers whether
    /// it was removed. The caller keeps puts out meanwhile (a put between
    /// the check and the removal would lose its bytes).
    pub async fn object_blob_collect(&self, digest: &str) -> Result<bool, ObjectError> {
        let dir = self.blob_dir();
        let digest = digest.to_owned();
        self.object_op(move |conn| {
            if referenced(conn, &digest)? {
                return Ok(false);
            }
            let path = dir.path(&digest)?;
            match std::fs::remove_file(&path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(io_error("remove", &path)(e)),
            }
        })
        .await
    }

    /// Removes every blob no object names and every temporary file (what a
    /// crash between a blob write and its commit leaves); run before any put.
    /// Answers how many files went.
    pub async fn object_blob_sweep(&self) -> Result<u64, ObjectError> {
        let dir = self.blob_dir();
        self.object_op(move |conn| {
            dir.create()?;
            let mut removed = 0u64;
            for entry in std::fs::read_dir(&dir.tmp).map_err(io_error("list", &dir.tmp))? {
                let entry = entry.map_err(io_error("list", &dir.tmp))?;
                if std::fs::remove_file(entry.path()).is_ok() {
                    removed = removed.saturating_add(1);
                }
            }
            for entry in std::fs::read_dir(&dir.blobs).map_err(io_error("list", &dir.blobs))? {
                let entry = entry.map_err(io_error("list", &dir.blobs))?;
                let name = entry.file_name();
                let digest = format!("sha256:{}", name.to_string_lossy());
                // Only files this module names; anything else is left alone.
                if digest_hex(&digest).is_none() || referenced(conn, &digest)? {
                    continue;
                }
                if std::fs::remove_file(entry.path()).is_ok() {
                    removed = removed.saturating_add(1);
                }
            }
            Ok(removed)
        })
        .await
    }

    /// Commits an object's metadata (creating its bucket on the first put)
    /// and its events, in one transaction. Refused whole when the tenant
    /// would pass a limit or an event queue is full. Answers the new row and
    /// the one it replaced, if any (whose blob may now be unreferenced).
    pub async fn object_put(
        &self,
        tenant: &TenantName,
        object: NewObject,
        events: Vec<ObjectEventRow>,
        limits: ObjectLimits,
        now_ms: u64,
        now: &str,
    ) -> Result<(ObjectRow, Option<ObjectRow>), ObjectError> {
        let tenant = tenant.as_str().to_owned();
        let now = now.to_owned();
        self.object_op(move |conn| {
            let tx = write_tx(conn)?;
            crate::tenants::require_tenant(&tx, &tenant)?;
            if !bucket_exists(&tx, &tenant, &object.bucket)? {
                let count: i64 = tx.query_row(
                    "SELECT count(*) FROM buckets WHERE tenant = ?1",
                    params![tenant],
                    |r| r.get(0),
                )?;
                if to_u64(count) >= u64::from(limits.max_buckets) {
                    return Err(ObjectRefusal::TooManyBuckets {
                        limit: limits.max_buckets,
                    }
                    .into());
                }
                tx.execute(
                    "INSERT INTO buckets (tenant, name, created_at) VALUES (?1, ?2, ?3)",
                    params![tenant, object.bucket, now],
                )?;
            }
            let old = get_object(&tx, &tenant, &object.bucket, &object.key)?;
            let (count, used): (i64, i64) = tx.query_row(
                "SELECT count(*), coalesce(sum(size), 0) FROM objects WHERE tenant = ?1",
                params![tenant],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let (count, used) = (to_u64(count), to_u64(used));
            if old.is_none() && count >= limits.max_objects {
                return Err(ObjectRefusal::TooManyObjects {
                    count,
                    limit: limits.max_objects,
                }
                .into());
            }
            let after = used
                .saturating_sub(old.as_ref().map_or(0, |o| o.size))
                .saturating_add(object.blob.size);
            if after > limits.max_bytes && after > used {
                return Err(ObjectRefusal::TenantFull {
                    used,
                    adding: object.blob.size,
                    limit: limits.max_bytes,
                }
                .into());
            }
            tx.execute(
                "UPDATE buckets SET last_version = last_version + 1 WHERE tenant = ?1 AND name = ?2",
                params![tenant, object.bucket],
            )?;
            let version: i64 = tx.query_row(
                "SELECT last_version FROM buckets WHERE tenant = ?1 AND name = ?2",
                params![tenant, object.bucket],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO objects (tenant, bucket, key, digest, size, content_type, created_at, version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (tenant, bucket, key) DO UPDATE SET digest = excluded.digest, size = excluded.size, \
                 content_type = excluded.content_type, created_at = excluded.created_at, version = excluded.version",
                params![
                    tenant,
                    object.bucket,
                    object.key,
                    object.blob.digest,
                    to_i64(object.blob.size),
                    object.content_type,
                    now,
                    version
                ],
            )?;
            enqueue_events(&tx, &tenant, &events, now_ms, &now, limits.max_event_depth)?;
            let row = get_object(&tx, &tenant, &object.bucket, &object.key)?.ok_or_else(|| {
                ObjectError::Store(StoreError::Corrupt("a put object is not there".into()))
            })?;
            tx.commit()?;
            Ok((row, old))
        })
        .await
    }

    /// Deletes an object's metadata and commits its events, in one
    /// transaction. Answers the deleted row (whose blob may now be
    /// unreferenced).
    #[allow(clippy::too_many_arguments)]
    pub async fn object_delete(
        &self,
        tenant: &TenantName,
        bucket: &str,
        key: &str,
        events: Vec<ObjectEventRow>,
        max_event_depth: u64,
        now_ms: u64,
        now: &str,
    ) -> Result<ObjectRow, ObjectError> {
        let (tenant, bucket, key, now) = (
            tenant.as_str().to_owned(),
            bucket.to_owned(),
            key.to_owned(),
            now.to_owned(),
        );
        self.object_op(move |conn| {
            let tx = write_tx(conn)?;
            crate::tenants::require_tenant(&tx, &tenant)?;
            if !bucket_exists(&tx, &tenant, &bucket)? {
                return Err(ObjectRefusal::NoSuchBucket(bucket).into());
            }
            let row = get_object(&tx, &tenant, &bucket, &key)?.ok_or_else(|| {
                ObjectRefusal::NoSuchObject {
                    bucket: bucket.clone(),
                    key: key.clone(),
                }
            })?;
            tx.execute(
                "DELETE FROM objects WHERE tenant = ?1 AND bucket = ?2 AND key = ?3",
                params![tenant, bucket, key],
            )?;
            enqueue_events(&tx, &tenant, &events, now_ms, &now, max_event_depth)?;
            tx.commit()?;
            Ok(row)
        })
        .await
    }

    /// An object's metadata.
    pub async fn object_get(
        &self,
        tenant: &TenantName,
        bucket: &str,
        key: &str,
    ) -> Result<ObjectRow, ObjectError> {
        let (tenant, bucket, key) = (
            tenant.as_str().to_owned(),
            bucket.to_owned(),
            key.to_owned(),
        );
        self.object_op(move |conn| {
            crate::tenants::require_tenant(conn, &tenant)?;
            if !bucket_exists(conn, &tenant, &bucket)? {
                return Err(ObjectRefusal::NoSuchBucket(bucket).into());
            }
            get_object(conn, &tenant, &bucket, &key)?
                .ok_or_else(|| ObjectRefusal::NoSuchObject { bucket, key }.into())
        })
        .await
    }

    /// Up to `limit` objects of a bucket whose keys start with `prefix`, by
    /// key, after `after` (exclusive) when given.
    pub async fn object_list(
        &self,
        tenant: &TenantName,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ObjectRow>, ObjectError> {
        let (tenant, bucket, prefix) = (
            tenant.as_str().to_owned(),
            bucket.to_owned(),
            prefix.to_owned(),
        );
        let after = after.unwrap_or_default().to_owned();
        self.object_op(move |conn| {
            crate::tenants::require_tenant(conn, &tenant)?;
            if !bucket_exists(conn, &tenant, &bucket)? {
                return Err(ObjectRefusal::NoSuchBucket(bucket).into());
            }
            // `substr` compares bytes of the key as stored: no LIKE wildcards
            // in a prefix can widen the match.
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {OBJECT_COLUMNS} FROM objects WHERE tenant = ?1 AND bucket = ?2 \
                     AND substr(key, 1, length(?3)) = ?3 AND key > ?4 ORDER BY key LIMIT ?5"
                ))?
                .query_map(
                    params![tenant, bucket, prefix, after, i64::from(limit)],
                    object_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// A tenant's buckets with their object counts and bytes.
    pub async fn bucket_list(&self, tenant: &TenantName) -> Result<Vec<BucketRow>, ObjectError> {
        let tenant = tenant.as_str().to_owned();
        self.object_op(move |conn| {
            crate::tenants::require_tenant(conn, &tenant)?;
            let rows = conn
                .prepare_cached(
                    "SELECT b.tenant, b.name, b.created_at, count(o.key), coalesce(sum(o.size), 0) \
                     FROM buckets b LEFT JOIN objects o ON o.tenant = b.tenant AND o.bucket = b.name \
                     WHERE b.tenant = ?1 GROUP BY b.tenant, b.name ORDER BY b.name",
                )?
                .query_map(params![tenant], |r| {
                    Ok(BucketRow {
                        tenant: r.get(0)?,
                        name: r.get(1)?,
                        created_at: r.get(2)?,
                        objects: to_u64(r.get(3)?),
                        bytes: to_u64(r.get(4)?),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Deletes an empty bucket.
    pub async fn bucket_delete(
        &self,
        tenant: &TenantName,
        bucket: &str,
    ) -> Result<(), ObjectError> {
        let (tenant, bucket) = (tenant.as_str().to_owned(), bucket.to_owned());
        self.object_op(move |conn| {
            let tx = write_tx(conn)?;
            crate::tenants::require_tenant(&tx, &tenant)?;
            if !bucket_exists(&tx, &tenant, &bucket)? {
                return Err(ObjectRefusal::NoSuchBucket(bucket).into());
            }
            let objects: i64 = tx.query_row(
                "SELECT count(*) FROM objects WHERE tenant = ?1 AND bucket = ?2",
                params![tenant, bucket],
                |r| r.get(0),
            )?;
            if objects > 0 {
                return Err(ObjectRefusal::BucketNotEmpty {
                    bucket,
                    objects: to_u64(objects),
                }
                .into());
            }
            tx.execute(
                "DELETE FROM buckets WHERE tenant = ?1 AND name = ?2",
                params![tenant, bucket],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Runs `f` with the shared connection on the blocking pool, keeping
    /// refusals apart from storage errors.
    async fn object_op<R, F>(&self, f: F) -> Result<R, ObjectError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, ObjectError> + Send + 'static,
    {
        self.with_conn(move |conn| Ok(f(conn))).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ObjectLimits = ObjectLimits {
        max_buckets: 2,
        max_objects: 4,
        max_bytes: 100,
        max_event_depth: 2,
    };

    async fn fixture() -> (tempfile::TempDir, Store, TenantName) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tenant = TenantName::parse("acme").unwrap();
        store.create_tenant(&tenant, "t0").await.unwrap();
        (dir, store, tenant)
    }

    async fn put(
        store: &Store,
        tenant: &TenantName,
        bucket: &str,
        key: &str,
        data: &[u8],
    ) -> Result<(ObjectRow, Option<ObjectRow>), ObjectError> {
        let blob = store.object_blob_write(data.to_vec()).await?;
        store
            .object_put(
                tenant,
                NewObject {
                    bucket: bucket.into(),
                    key: key.into(),
                    blob,
                    content_type: "text/plain".into(),
                },
                Vec::new(),
                LIMITS,
                1_000,
                "t1",
            )
            .await
    }

    fn blob_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("objects/blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn blobs_are_written_whole_named_by_digest_and_shared() {
        let (dir, store, tenant) = fixture().await;
        let (a, old) = put(&store, &tenant, "uploads", "a.txt", b"hello")
            .await
            .unwrap();
        assert!(old.is_none());
        assert_eq!(
            a.digest,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!((a.size, a.version), (5, 1));
        let blob = store.object_blob_write(b"hello".to_vec()).await.unwrap();
        assert!(blob.shared, "the same bytes were written twice");
        put(&store, &tenant, "other", "b.txt", b"hello")
            .await
            .unwrap();
        assert_eq!(
            blob_files(dir.path()),
            ["2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"]
        );
        // No temporary file is left behind.
        assert_eq!(
            std::fs::read_dir(dir.path().join("objects/tmp"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(store.object_blob_read(&a.digest).await.unwrap(), b"hello");
    }

    #[tokio::test]
    async fn a_blob_goes_when_its_last_object_does() {
        let (dir, store, tenant) = fixture().await;
        put(&store, &tenant, "uploads", "a", b"one").await.unwrap();
        put(&store, &tenant, "uploads", "b", b"one").await.unwrap();
        let gone = store
            .object_delete(&tenant, "uploads", "a", Vec::new(), 10, 1, "t")
            .await
            .unwrap();
        assert!(!store.object_blob_collect(&gone.digest).await.unwrap());
        assert_eq!(blob_files(dir.path()).len(), 1);
        // Overwriting the last reference frees the old blob.
        let (_, old) = put(&store, &tenant, "uploads", "b", b"two").await.unwrap();
        let old = old.unwrap();
        assert_eq!(old.size, 3);
        assert!(store.object_blob_collect(&old.digest).await.unwrap());
        assert_eq!(
            blob_files(dir.path()),
            [digest_hex(&blob_digest(b"two")).unwrap()]
        );
    }

    #[tokio::test]
    async fn the_sweep_removes_what_a_crash_left_and_nothing_named() {
        let (dir, store, tenant) = fixture().await;
        put(&store, &tenant, "uploads", "kept", b"kept")
            .await
            .unwrap();
        // A blob written but never committed, a temporary file, and a stranger.
        store.object_blob_write(b"orphan".to_vec()).await.unwrap();
        std::fs::write(dir.path().join("objects/tmp/x.tmp"), b"half").unwrap();
        std::fs::write(dir.path().join("objects/blobs/README"), b"not a blob").unwrap();
        assert_eq!(store.object_blob_sweep().await.unwrap(), 2);
        let mut expected = vec![
            digest_hex(&blob_digest(b"kept")).unwrap().to_owned(),
            "README".to_owned(),
        ];
        expected.sort();
        assert_eq!(blob_files(dir.path()), expected);
    }

    #[tokio::test]
    async fn a_changed_blob_is_refused_not_served() {
        let (dir, store, tenant) = fixture().await;
        let (row, _) = put(&store, &tenant, "uploads", "a", b"original")
            .await
            .unwrap();
        let path = dir
            .path()
            .join("objects/blobs")
            .join(digest_hex(&row.digest).unwrap());
        std::fs::write(path, b"tampered").unwrap();
        assert!(matches!(
            store.object_blob_read(&row.digest).await,
            Err(ObjectError::BlobCorrupt { .. })
        ));
    }

    #[tokio::test]
    async fn limits_refuse_whole_and_change_nothing() {
        let (_dir, store, tenant) = fixture().await;
        put(&store, &tenant, "b1", "a", b"1").await.unwrap();
        put(&store, &tenant, "b2", "a", b"2").await.unwrap();
        let e = put(&store, &tenant, "b3", "a", b"3").await.unwrap_err();
        assert!(matches!(
            e,
            ObjectError::Refused(ObjectRefusal::TooManyBuckets { limit: 2 })
        ));
        put(&store, &tenant, "b1", "b", b"3").await.unwrap();
        put(&store, &tenant, "b1", "c", b"4").await.unwrap();
        let e = put(&store, &tenant, "b1", "d", b"5").await.unwrap_err();
        assert!(matches!(
            e,
            ObjectError::Refused(ObjectRefusal::TooManyObjects { count: 4, limit: 4 })
        ));
        // Overwriting an object is not a new one; passing the bytes is refused.
        let e = put(&store, &tenant, "b1", "a", &[0u8; 99])
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            ObjectError::Refused(ObjectRefusal::TenantFull {
                used: 4,
                adding: 99,
                limit: 100
            })
        ));
        let row = store.object_get(&tenant, "b1", "a").await.unwrap();
        assert_eq!((row.size, row.version), (1, 1));
        let buckets = store.bucket_list(&tenant).await.unwrap();
        let summary: Vec<_> = buckets
            .iter()
            .map(|b| (b.name.as_str(), b.objects, b.bytes))
            .collect();
        assert_eq!(summary, [("b1", 3, 3), ("b2", 1, 1)]);
        assert!(matches!(
            store.bucket_delete(&tenant, "b2").await,
            Err(ObjectError::Refused(ObjectRefusal::BucketNotEmpty {
                objects: 1,
                ..
            }))
        ));
    }

    #[tokio::test]
    async fn list_by_prefix_is_literal() {
        let (_dir, store, tenant) = fixture().await;
        for key in ["in/a", "in/b", "in_x", "out/a"] {
            put(&store, &tenant, "b", key, key.as_bytes())
                .await
                .unwrap();
        }
        let keys = |rows: Vec<ObjectRow>| rows.into_iter().map(|r| r.key).collect::<Vec<_>>();
        assert_eq!(
            keys(
                store
                    .object_list(&tenant, "b", "in/", None, 10)
                    .await
                    .unwrap()
            ),
            ["in/a", "in/b"]
        );
        // `_` is not a wildcard.
        assert_eq!(
            keys(
                store
                    .object_list(&tenant, "b", "in_", None, 10)
                    .await
                    .unwrap()
            ),
            ["in_x"]
        );
        assert_eq!(
            keys(
                store
                    .object_list(&tenant, "b", "", Some("in/b"), 2)
                    .await
                    .unwrap()
            ),
            ["in_x", "out/a"]
        );
        assert!(matches!(
            store.object_list(&tenant, "nope", "", None, 10).await,
            Err(ObjectError::Refused(ObjectRefusal::NoSuchBucket(_)))
        ));
    }

    #[tokio::test]
    async fn events_commit_with_the_change_or_not_at_all() {
        let (_dir, store, tenant) = fixture().await;
        let event = |id: &str| ObjectEventRow {
            queue: "@bucket/b/f".into(),
            dead_letter: Some("missing".into()),
            visibility_timeout_ms: 30_000,
            max_attempts: 3,
            retention_ms: 86_400_000,
            id: id.into(),
            event_type: "dev.zerofn.object.created".into(),
            body: b"{}".to_vec(),
            trace: None,
        };
        let blob = store.object_blob_write(b"x".to_vec()).await.unwrap();
        let new = |key: &str| NewObject {
            bucket: "b".into(),
            key: key.into(),
            blob: blob.clone(),
            content_type: "text/plain".into(),
        };
        for (i, key) in ["k1", "k2"].iter().enumerate() {
            store
                .object_put(
                    &tenant,
                    new(key),
                    vec![event(&format!("e{i}"))],
                    LIMITS,
                    5,
                    "t",
                )
                .await
                .unwrap();
        }
        let q = store.queue_get(&tenant, "@bucket/b/f").await.unwrap();
        assert_eq!(q.max_attempts, 3);
        assert_eq!(
            q.dead_letter, None,
            "a missing dead-letter queue is not named"
        );
        let ids: Vec<_> = store
            .queue_peek(&tenant, "@bucket/b/f", 10)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(ids, ["e0", "e1"]);
        // The event queue is full: the put is refused and the object not stored.
        let e = store
            .object_put(&tenant, new("k3"), vec![event("e2")], LIMITS, 5, "t")
            .await
            .unwrap_err();
        assert!(matches!(
            e,
            ObjectError::Refused(ObjectRefusal::EventsFull { depth: 2, .. })
        ));
        assert!(matches!(
            store.object_get(&tenant, "b", "k3").await,
            Err(ObjectError::Refused(ObjectRefusal::NoSuchObject { .. }))
        ));
    }

    /// An event keeps the trace context of the change that made it (the
    /// message's columns), on a put and on a delete; an event of an
    /// untraced change has none.
    #[tokio::test]
    async fn an_event_keeps_the_trace_context_of_its_change() {
        const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (_dir, store, tenant) = fixture().await;
        let limits = ObjectLimits {
            max_event_depth: 10,
            ..LIMITS
        };
        let event = |id: &str, trace: Option<TraceContext>| ObjectEventRow {
            queue: "@bucket/b/f".into(),
            dead_letter: None,
            visibility_timeout_ms: 30_000,
            max_attempts: 3,
            retention_ms: 86_400_000,
            id: id.into(),
            event_type: "dev.zerofn.object.created".into(),
            body: b"{}".to_vec(),
            trace,
        };
        let blob = store.object_blob_write(b"x".to_vec()).await.unwrap();
        let new = |key: &str| NewObject {
            bucket: "b".into(),
            key: key.into(),
            blob: blob.clone(),
            content_type: "text/plain".into(),
        };
        let traced = TraceContext::new(TP, Some("vendor=1"));
        store
            .object_put(
                &tenant,
                new("k"),
                vec![event("put", traced.clone())],
                limits,
                5,
                "t",
            )
            .await
            .unwrap();
        store
            .object_put(
                &tenant,
                new("u"),
                vec![event("untraced", None)],
                limits,
                5,
                "t",
            )
            .await
            .unwrap();
        let unsampled = TraceContext::new(&TP.replace("-01", "-00"), None);
        store
            .object_delete(
                &tenant,
                "b",
                "k",
                vec![event("delete", unsampled)],
                10,
                6,
                "t",
            )
            .await
            .unwrap();
        let got: Vec<_> = store
            .queue_peek(&tenant, "@bucket/b/f", 10)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.id, m.traceparent, m.tracestate))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "put".to_owned(),
                    Some(TP.to_owned()),
                    Some("vendor=1".to_owned())
                ),
                ("untraced".to_owned(), None, None),
                ("delete".to_owned(), Some(TP.replace("-01", "-00")), None),
            ]
        );
    }
}
