#![forbid(unsafe_code)]
//! Embedded persistent state: tenants and their signing keys, deployments,
//! published layers and which deployments pin them, the raw rows of the
//! audit log (and the indexes its queries use), and the output of
//! invocations, tenants' durable message queues, the last run of each
//! schedule, the outbox of changes of key-value buckets a function
//! subscribes to (written in the same transaction as each change), and the
//! metadata of tenants' objects, in one SQLite database; the objects' bytes
//! are files named by digest beside it (`objects.rs`).
//!
//! # Trust
//! This crate trusts the file system under the data directory and nothing
//! else. It does not interpret what it stores: deployments arrive already
//! admitted, audit rows already hashed (the `audit` crate owns chaining and
//! verification), guests' output lines already made text (the `gateway`
//! owns capturing them). Audit queries read rows through indexes SQLite
//! keeps with them and change nothing. It guarantees that every write is
//! one transaction (a failed write changes nothing) and that every method
//! runs its SQL on the blocking thread pool, never on an async worker (the
//! audit and log writers run on their own threads with their own
//! connections). The trace context kept with an object event or a
//! key-value change is bounded here (`trace_context.rs`): only a version-00
//! `traceparent` is stored, whatever a caller passes.
//!
//! Durability: WAL journal with `synchronous=FULL`, so a transaction that
//! returned `Ok` survives a process kill and a power loss. Audit records are
//! made durable in the audit journal ([`AuditJournal`], synced per batch or,
//! with [`AuditDurability::Process`], per flush interval) and indexed into
//! the database by a connection at `synchronous=NORMAL`: a commit is in the
//! WAL file, and so survives the process being killed, but reaches the disk
//! only at the next flush. The log writer's connection ([`LogWriter`])
//! always commits that way: guests' output is not audit.

mod admission_rules;
mod audit_journal;
mod audit_prune;
mod audit_query;
mod audit_rows;
mod audit_tree;
mod config_state;
mod deployments;
mod error;
mod external_callers;
mod history;
mod invocation_logs;
mod jwks_fetches;
mod kv;
mod kv_changes;
mod layers;
mod mtls_cas;
mod objects;
mod operators;
pub mod pace;
mod policies;
mod queues;
mod route_prefixes;
mod schedule_runs;
mod tenant_limits;
mod tenants;
mod trace_context;
mod zones;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use zerofn_types::TenantName;

pub use admission_rules::{AdmissionSettingsRow, TenantIdentityRow};
pub use audit_journal::{
    AuditJournal, JournalProgress, BLOCK as AUDIT_JOURNAL_BLOCK,
    DEFAULT_MAX_BYTES as AUDIT_JOURNAL_MAX_BYTES, JOURNAL_FILE as AUDIT_JOURNAL_FILE,
    MAX_PAYLOAD as AUDIT_JOURNAL_MAX_PAYLOAD,
};
pub use audit_prune::{PruneBoundary, PrunePlan};
pub use audit_query::{AuditPage, AuditQuery, SCAN_LIMIT as AUDIT_QUERY_SCAN_LIMIT};
pub use audit_rows::{AuditDurability, AuditFlusher, AuditRow, AuditWriter, AUDIT_GENESIS_HASH};
pub use audit_tree::CheckpointRow;
pub use config_state::ConfigOp;
pub use deployments::{DeploymentRow, DeploymentSummary, VersionRecord};
pub use error::StoreError;
pub use external_callers::{ApiKeyRow, JwtIssuerRow};
pub use history::{KeptVersion, NewVersion, VersionOrigin, VersionSummary, DEFAULT_KEEP_VERSIONS};
pub use invocation_logs::{
    log_timestamp, LogAppend, LogLineRow, LogPage, LogQuery, LogWriter, NewLogLine,
};
pub use kv::IncrementError;
pub use kv_changes::{
    KvChangeRow, KvChangeWorker, KvLeaseBatch, KvLeased, KvOp, KvReleased, KvStreamCounts,
    KvSubscription, KvWriter,
};
pub use layers::{LayerRow, LayerSummary};
pub use mtls_cas::MtlsCaRow;
pub use objects::{
    blob_digest, BucketRow, NewObject, ObjectError, ObjectEventRow, ObjectLimits, ObjectRefusal,
    ObjectRow, StoredBlob, OBJECTS_DIR,
};
pub use operators::{ControlPolicyRow, OperatorCertRow};
pub use policies::TenantPolicyRow;
pub use queues::{
    LeaseBatch, Leased, MessageRow, NewMessage, NewQueue, Published, QueueCounts, QueueError,
    QueueRefusal, QueueRow, QueueWorker, Released,
};
pub use tenant_limits::TenantLimitsRow;
pub use tenants::{TenantKeyRow, TenantRow};
pub use trace_context::{TraceContext, MAX_STORED_TRACESTATE};
pub use zones::ZoneRow;

/// Most changes (undelivered and parked) one subscriber of a key-value
/// bucket holds; a write that would record one more is refused
/// ([`StoreError::KvStreamBacklog`]).
pub const MAX_KV_STREAM_BACKLOG: u64 = 10_000;

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "zerofn.db";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tenants (
    name        TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS tenant_keys (
    tenant          TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    key_id          TEXT NOT NULL,
    public_key_pem  TEXT NOT NULL,
    added_at        TEXT NOT NULL,
    PRIMARY KEY (tenant, key_id)
) STRICT;
CREATE TABLE IF NOT EXISTS tenant_identities (
    tenant        TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    id            TEXT NOT NULL,
    kind          TEXT NOT NULL,
    san           TEXT NOT NULL,
    issuer        TEXT NOT NULL,
    trusted_root  TEXT NOT NULL,
    added_at      TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
) STRICT;
CREATE TABLE IF NOT EXISTS tenant_admission (
    tenant              TEXT PRIMARY KEY REFERENCES tenants(name) ON DELETE CASCADE,
    policy              TEXT,
    severity_threshold  TEXT,
    require_sbom        INTEGER NOT NULL DEFAULT 0,
    updated_at          TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS deployments (
    tenant              TEXT NOT NULL REFERENCES tenants(name),
    name                TEXT NOT NULL,
    digest              TEXT NOT NULL,
    signer              TEXT NOT NULL,
    manifest            TEXT NOT NULL,
    routes              TEXT NOT NULL,
    component           BLOB NOT NULL,
    bundle              BLOB NOT NULL,
    precompiled_sha256  TEXT,
    deployed_at         TEXT NOT NULL,
    composed_digest     TEXT,
    version             INTEGER NOT NULL DEFAULT 0,
    manifest_bundle     BLOB,
    content_digest      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, name)
) STRICT;
-- The highest signed manifest version ever deployed per function, kept
-- after an undeploy (rollback protection), and the content it stood for.
CREATE TABLE IF NOT EXISTS function_versions (
    tenant          TEXT NOT NULL,
    name            TEXT NOT NULL,
    highest         INTEGER NOT NULL,
    content_digest  TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
) STRICT;
-- Every deploy of a function, numbered per function (see `history.rs`); the newest few
-- keep their request (manifest, component, bundle, attestations) for a rollback.
CREATE TABLE IF NOT EXISTS deployment_history (
    tenant              TEXT NOT NULL,
    name                TEXT NOT NULL,
    number              INTEGER NOT NULL,
    kind                TEXT NOT NULL,
    rollback_to         INTEGER,
    digest              TEXT NOT NULL,
    composed_digest     TEXT,
    precompiled_sha256  TEXT,
    signer              TEXT NOT NULL,
    manifest_version    INTEGER NOT NULL,
    routes              TEXT NOT NULL,
    deployed_at         TEXT NOT NULL,
    deployed_by         TEXT NOT NULL,
    manifest            TEXT,
    component           BLOB,
    bundle              BLOB,
    attestations        TEXT,
    PRIMARY KEY (tenant, name, number)
) STRICT;
CREATE TABLE IF NOT EXISTS layers (
    tenant        TEXT NOT NULL REFERENCES tenants(name),
    digest        TEXT NOT NULL,
    signer        TEXT NOT NULL,
    exports       TEXT NOT NULL,
    component     BLOB NOT NULL,
    bundle        BLOB NOT NULL,
    published_at  TEXT NOT NULL,
    PRIMARY KEY (tenant, digest)
) STRICT;
CREATE TABLE IF NOT EXISTS deployment_layers (
    tenant  TEXT NOT NULL,
    name    TEXT NOT NULL,
    import  TEXT NOT NULL,
    digest  TEXT NOT NULL,
    PRIMARY KEY (tenant, name, import),
    FOREIGN KEY (tenant, digest) REFERENCES layers(tenant, digest)
) STRICT;
CREATE INDEX IF NOT EXISTS deployment_layers_by_digest ON deployment_layers (tenant, digest);
CREATE TABLE IF NOT EXISTS audit (
    seq            INTEGER PRIMARY KEY,
    time           TEXT NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    tenant         TEXT,
    function       TEXT,
    digest         TEXT,
    decision       TEXT NOT NULL,
    reason         TEXT,
    duration_us    INTEGER,
    status         INTEGER,
    invocation_id  TEXT,
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL,
    detail         TEXT
) STRICT;
CREATE TABLE IF NOT EXISTS kv (
    tenant  TEXT NOT NULL,
    bucket  TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   BLOB NOT NULL,
    PRIMARY KEY (tenant, bucket, key)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tenant_policies (
    tenant      TEXT PRIMARY KEY REFERENCES tenants(name) ON DELETE CASCADE,
    policy      TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS revoked_serials (
    serial      TEXT PRIMARY KEY,
    not_after   INTEGER NOT NULL,
    revoked_at  TEXT NOT NULL
) STRICT;
"#;

/// Handle to the platform database. Cheap to clone; clones share one
/// connection for control-plane reads and writes. The audit writer gets its
/// own connection through [`Store::open_audit_writer`] so invocations never
/// queue behind control-plane work.
#[derive(Clone)]
pub struct Store {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    /// Poked after a write that recorded a key-value change (`kv.rs`).
    kv_changed: Arc<tokio::sync::Notify>,
    /// How far the database has caught up with the audit journal; audit reads wait on
    /// it so that a record acknowledged before a read is in what the read returns.
    audit_progress: Arc<JournalProgress>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Open (creating if needed) the database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DATABASE_FILE);
        create_private(&path)?;
        let conn = open_connection(&path)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(operators::SCHEMA)?;
        conn.execute_batch(external_callers::SCHEMA)?;
        conn.execute_batch(mtls_cas::SCHEMA)?;
        conn.execute_batch(audit_tree::SCHEMA)?;
        conn.execute_batch(audit_prune::SCHEMA)?;
        conn.execute_batch(tenant_limits::SCHEMA)?;
        conn.execute_batch(zones::SCHEMA)?;
        conn.execute_batch(queues::SCHEMA)?;
        conn.execute_batch(schedule_runs::SCHEMA)?;
        conn.execute_batch(kv_changes::SCHEMA)?;
        conn.execute_batch(objects::SCHEMA)?;
        migrate(&conn)?;
        conn.execute_batch(audit_query::SCHEMA)?;
        conn.execute_batch(invocation_logs::SCHEMA)?;
        invocation_logs::migrate(&conn)?;
        conn.execute_batch(&config_state::SCHEMA)?;
        let mut conn = conn;
        // Rows a crashed writer left in the journal belong in the database before anyone
        // reads it; a running writer holds the journal and recovers it itself.
        audit_journal::recover_if_unlocked(&mut conn, data_dir)?;
        Ok(Store {
            path,
            conn: Arc::new(Mutex::new(conn)),
            kv_changed: Arc::default(),
            audit_progress: Arc::default(),
        })
    }

    /// Open the existing database in `data_dir` for reading only (offline
    /// verification): the file must exist; no directory, file or table is
    /// created, no migration runs, and the connection is read-only at the
    /// SQLite level (`SQLITE_OPEN_READ_ONLY`, `query_only`), so it writes
    /// neither the database nor WAL frames nor a checkpoint.
    pub fn open_read_only(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join(DATABASE_FILE);
        if !path.is_file() {
            return Err(StoreError::NoDatabase(path));
        }
        let read_only =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let wal = data_dir.join(format!("{DATABASE_FILE}-wal"));
        let mut conn = if wal.exists() {
            // Committed rows may be in the WAL only (a platform killed
            // before a checkpoint): read through it. SQLite then uses the
            // `-shm` index beside it; the database file is never written.
            Connection::open_with_flags(&path, read_only)?
        } else {
            // Fully checkpointed: `immutable` reads the file alone, taking
            // no lock and creating no `-wal` or `-shm` file (a plain
            // read-only open of a WAL database creates both and leaves them).
            Connection::open_with_flags(
                immutable_uri(&path),
                read_only | rusqlite::OpenFlags::SQLITE_OPEN_URI,
            )?
        };
        wait_when_busy(&mut conn)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(Store {
            path,
            conn: Arc::new(Mutex::new(conn)),
            kv_changed: Arc::default(),
            audit_progress: Arc::default(),
        })
    }

    /// Whether the database has its `audit` table (a dropped one reads as
    /// an empty log otherwise).
    pub fn has_audit_table_blocking(&self) -> Result<bool, StoreError> {
        self.with_conn_blocking(|conn| {
            Ok(conn
                .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'")?
                .exists([])?)
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A second connection dedicated to appending audit rows, committing
    /// with the given durability.
    pub fn open_audit_writer(
        &self,
        durability: AuditDurability,
    ) -> Result<AuditWriter, StoreError> {
        let conn = open_connection(&self.path)?;
        if let AuditDurability::Process { .. } = durability {
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        }
        // No checkpoints inside an append: copying the WAL into the
        // database (and syncing it) on the appender's thread stalls the
        // requests waiting for that commit. The audit flusher thread
        // checkpoints on its own connection instead.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(AuditWriter::new(conn))
    }

    /// A connection that checkpoints the WAL on demand (and so, with
    /// [`AuditDurability::Process`], forces committed audit rows to disk).
    pub fn open_audit_flusher(&self) -> Result<AuditFlusher, StoreError> {
        let conn = open_connection(&self.path)?;
        // NORMAL on this connection: a checkpoint syncs the WAL before
        // copying it and the database file after.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(AuditFlusher::new(conn, self.path.clone()))
    }

    /// The audit journal of this data directory, locked for the caller, after the rows a
    /// previous writer left in it are in the database and on disk. Its
    /// [`JournalProgress`] is this store's, so audit reads wait for what it acknowledges.
    /// Fails with [`StoreError::JournalInUse`] while another writer holds it.
    pub fn open_audit_journal(&self, max_bytes: u64) -> Result<AuditJournal, StoreError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let path = dir.join(audit_journal::JOURNAL_FILE);
        let file = audit_journal::open_locked(&path)?
            .ok_or_else(|| StoreError::JournalInUse(path.clone()))?;
        let head = self.with_conn_blocking(|conn| audit_journal::recover(conn, &file, &path))?;
        self.audit_progress.start_at(head);
        AuditJournal::new(file, path, max_bytes, self.audit_progress.clone())
    }

    /// A connection for the thread that copies journaled rows into the database: its
    /// commits are not synced (the journal holds the rows; the flusher syncs).
    pub fn open_audit_indexer(&self) -> Result<AuditWriter, StoreError> {
        let conn = open_connection(&self.path)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(AuditWriter::new(conn))
    }

    /// How far the database has caught up with the audit journal.
    pub fn audit_progress(&self) -> Arc<JournalProgress> {
        self.audit_progress.clone()
    }

    /// Run `f` with the shared connection on the blocking pool.
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

    /// Runs `f` in one write transaction on an existing tenant (`NoSuchTenant` otherwise)
    /// and commits it when `f` succeeds; an error from `f` rolls everything back.
    async fn in_tenant<R, F>(&self, tenant: &TenantName, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>, String) -> Result<R, StoreError> + Send + 'static,
    {
        let tenant = tenant.as_str().to_owned();
        self.with_conn(move |conn| {
            let tx = write_tx(conn)?;
            tenants::require_tenant(&tx, &tenant)?;
            let result = f(&tx, tenant)?;
            tx.commit()?;
            Ok(result)
        })
        .await
    }

    /// [`Store::with_conn`] for a read of the audit log: first waits (a bounded time)
    /// for the database to hold every record the journal has acknowledged.
    async fn with_audit_conn<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let progress = self.audit_progress.clone();
        tokio::task::spawn_blocking(move || {
            progress.wait_indexed(AUDIT_READ_CATCH_UP);
            let mut guard = conn.lock().map_err(|_| StoreError::Poisoned)?;
            f(&mut guard)
        })
        .await
        .map_err(|_| StoreError::TaskFailed)?
    }

    /// [`Store::with_conn_blocking`] for a read of the audit log (see
    /// [`Store::with_audit_conn`]).
    fn with_audit_conn_blocking<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.audit_progress.wait_indexed(AUDIT_READ_CATCH_UP);
        self.with_conn_blocking(f)
    }

    /// Synchronous access for callers that are already off the async
    /// runtime (start-up, offline tools).
    fn with_conn_blocking<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut guard = self.conn.lock().map_err(|_| StoreError::Poisoned)?;
        f(&mut guard)
    }
}

/// Longest an audit read waits for acknowledged records to reach the database; past it
/// (the database is stuck) the read returns what the database has.
const AUDIT_READ_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(5);

/// Columns added after a table was first created (`CREATE TABLE IF NOT
/// EXISTS` leaves an older table as it was).
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let has_composed = conn
        .prepare("SELECT 1 FROM pragma_table_info('deployments') WHERE name = 'composed_digest'")?
        .exists([])?;
    if !has_composed {
        conn.execute_batch("ALTER TABLE deployments ADD COLUMN composed_digest TEXT")?;
    }
    let has_detail = conn
        .prepare("SELECT 1 FROM pragma_table_info('audit') WHERE name = 'detail'")?
        .exists([])?;
    if !has_detail {
        conn.execute_batch("ALTER TABLE audit ADD COLUMN detail TEXT")?;
    }
    let has_version = conn
        .prepare("SELECT 1 FROM pragma_table_info('deployments') WHERE name = 'version'")?
        .exists([])?;
    if !has_version {
        // Deployments made before signed manifests: version 0 and no signed manifest, which
        // restore refuses (they must be signed and deployed again).
        conn.execute_batch(
            "ALTER TABLE deployments ADD COLUMN version INTEGER NOT NULL DEFAULT 0; \
             ALTER TABLE deployments ADD COLUMN manifest_bundle BLOB; \
             ALTER TABLE deployments ADD COLUMN content_digest TEXT NOT NULL DEFAULT '';",
        )?;
    }
    route_prefixes::migrate(conn)?;
    external_callers::migrate(conn)?;
    history::migrate(conn)?;
    operators::migrate(conn)?;
    queues::migrate(conn)?;
    kv_changes::migrate(conn)?;
    Ok(())
}

/// A write transaction that takes the database's write lock when it
/// begins (`BEGIN IMMEDIATE`), waiting for it under the busy timeout. A
/// deferred transaction that reads first and then writes fails at once
/// with "database is locked" if another connection (the audit writer)
/// committed in between: SQLite cannot upgrade its stale snapshot, and the
/// busy handler is not consulted.
pub(crate) fn write_tx(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

/// Create the database file with mode 0600 before SQLite opens it: SQLite
/// gives its WAL and shared-memory files the database file's mode, so the
/// three are the owner's alone. An existing file is left as it is.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|source| StoreError::DataDir {
            path: path.to_path_buf(),
            source,
        })
}

/// `file:<path>?immutable=1`, the path percent-encoded (RFC 8089 / SQLite
/// URI filenames) so no `?`, `#` or `%` in it is read as URI syntax.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'.' | b'_' | b'~') {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// How long a statement waits for another connection's lock before it
/// fails with "database is locked".
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The first and the longest pause between two attempts at a lock.
const BUSY_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_micros(20);
const BUSY_LONGEST_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// The pause before attempt `attempt + 1` at a lock: 20 µs, doubling to 1 ms.
fn busy_pause(attempt: i32) -> std::time::Duration {
    let doublings = u32::try_from(attempt).unwrap_or(0).min(6);
    BUSY_FIRST_PAUSE
        .saturating_mul(1 << doublings)
        .min(BUSY_LONGEST_PAUSE)
}

/// Wait for other connections' locks for up to [`BUSY_TIMEOUT`], polling
/// from 20 µs up. SQLite's own handler (what `busy_timeout` installs)
/// sleeps 1, 2, 5, 10, … ms between attempts, so the audit writer meeting
/// another connection's commit of a few hundred microseconds (a signed
/// checkpoint, a deploy) lost 1–3 ms: most of the one-connection p99.
fn wait_when_busy(conn: &mut Connection) -> rusqlite::Result<()> {
    let mut since = std::time::Instant::now();
    conn.busy_handler(Some(move |attempt: i32| {
        if attempt == 0 {
            since = std::time::Instant::now();
        }
        if since.elapsed() >= BUSY_TIMEOUT {
            return false;
        }
        std::thread::sleep(busy_pause(attempt));
        true
    }))
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path)?;
    wait_when_busy(&mut conn)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Names for tests, parsed from literals.
#[cfg(test)]
pub(crate) mod test_names {
    use zerofn_types::{FunctionName, TenantName};

    pub(crate) fn t(name: &str) -> TenantName {
        TenantName::parse(name).unwrap()
    }

    pub(crate) fn f(name: &str) -> FunctionName {
        FunctionName::parse(name).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_names::t;

    /// The database and the WAL and shared-memory files SQLite makes beside
    /// it are the owner's alone, whatever the umask.
    #[tokio::test]
    async fn database_files_are_created_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_tenant(&t("acme"), "t0").await.unwrap();
        for name in [DATABASE_FILE, "zerofn.db-wal", "zerofn.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
        }
    }

    #[test]
    fn busy_pauses_start_at_twenty_microseconds_and_stay_under_a_millisecond() {
        let pauses: Vec<u128> = (0..9).map(|a| busy_pause(a).as_micros()).collect();
        assert_eq!(pauses, [20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert_eq!(busy_pause(-1).as_micros(), 20);
        assert_eq!(busy_pause(i32::MAX).as_micros(), 1000);
    }

    /// A writer that meets another connection's open write transaction
    /// waits for it and then commits, instead of failing "database is
    /// locked" (what a connection without a busy handler does at once).
    #[test]
    fn a_writer_waits_for_another_connections_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE_FILE);
        let mut holder = open_connection(&path).unwrap();
        holder
            .execute_batch("CREATE TABLE t (x INTEGER NOT NULL)")
            .unwrap();
        let mut waiter = open_connection(&path).unwrap();
        let (locked_tx, locked) = std::sync::mpsc::channel();
        let held = std::thread::spawn(move || {
            let tx = write_tx(&mut holder).unwrap();
            tx.execute("INSERT INTO t (x) VALUES (1)", []).unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(30));
            tx.commit().unwrap();
        });
        locked.recv().unwrap();
        let tx = write_tx(&mut waiter).unwrap();
        tx.execute("INSERT INTO t (x) VALUES (2)", []).unwrap();
        tx.commit().unwrap();
        held.join().unwrap();
        let rows: i64 = waiter
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 2);
    }

    fn file_state(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    #[tokio::test]
    async fn read_only_open_changes_nothing_and_creates_nothing() {
        let root = tempfile::tempdir().unwrap();
        // URI syntax in the path is data, not a query.
        let dir = root.path().join("a ?b#c%41");
        std::fs::create_dir(&dir).unwrap();
        let dir = dir.as_path();
        // No database: refused, nothing created.
        let missing = dir.join("missing");
        assert!(matches!(
            Store::open_read_only(&missing),
            Err(StoreError::NoDatabase(_))
        ));
        assert!(!missing.exists());
        {
            let store = Store::open(dir).unwrap();
            store.create_tenant(&t("acme"), "t0").await.unwrap();
            let conn = Connection::open(store.path()).unwrap();
            conn.execute_batch("DROP TABLE audit; DROP TABLE tenant_routes")
                .unwrap();
        }
        let before = file_state(dir);
        {
            let store = Store::open_read_only(dir).unwrap();
            assert!(!store.has_audit_table_blocking().unwrap());
            assert_eq!(store.list_tenants().await.unwrap().len(), 1);
            // Writes are refused by SQLite itself.
            assert!(store.create_tenant(&t("other"), "t1").await.is_err());
        }
        assert_eq!(file_state(dir), before);
        // A normal open recreates what is missing: the read-only one did not.
        let store = Store::open(dir).unwrap();
        assert!(store.has_audit_table_blocking().unwrap());
    }

    #[tokio::test]
    async fn reopen_keeps_schema_and_rows() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.create_tenant(&t("acme"), "t0").await.unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let tenants = store.list_tenants().await.unwrap();
        assert_eq!(tenants.len(), 1);
        assert_eq!(tenants[0].name, "acme");
    }
}
