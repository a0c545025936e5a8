//! Raw rows of the audit table. Chaining, hashing and verification belong
//! to the `audit` crate; this module only moves rows in and out.

use rusqlite::{params, Connection, OptionalExtension};

use crate::{Store, StoreError};

/// The previous hash of the first record.
pub const AUDIT_GENESIS_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub time: String,
    pub actor: String,
    pub action: String,
    pub tenant: Option<String>,
    pub function: Option<String>,
    pub digest: Option<String>,
    pub decision: String,
    pub reason: Option<String>,
    pub duration_us: Option<i64>,
    pub status: Option<i64>,
    pub invocation_id: Option<String>,
    /// Structured detail (JSON text): the policy decisions of an
    /// invocation or capability call. Absent on older records.
    pub detail: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

pub(crate) const COLUMNS: &str = "seq, time, actor, action, tenant, function, digest, decision, reason, duration_us, status, invocation_id, prev_hash, hash, detail";

pub(crate) fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        seq: r.get(0)?,
        time: r.get(1)?,
        actor: r.get(2)?,
        action: r.get(3)?,
        tenant: r.get(4)?,
        function: r.get(5)?,
        digest: r.get(6)?,
        decision: r.get(7)?,
        reason: r.get(8)?,
        duration_us: r.get(9)?,
        status: r.get(10)?,
        invocation_id: r.get(11)?,
        prev_hash: r.get(12)?,
        hash: r.get(13)?,
        detail: r.get(14)?,
    })
}

/// How far an audit append has gone when it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditDurability {
    /// Every acknowledged row has been synced (its audit journal block
    /// `fdatasync`'d): it survives the process being killed, a kernel crash
    /// and a power loss. Costs one sync per batch (group commit shares it
    /// among concurrent appends).
    Disk,
    /// Every acknowledged row is written to the audit journal (the kernel's
    /// page cache): it survives the process being killed (`kill -9`, abort,
    /// panic). A flusher syncs the journal and the database every
    /// `flush_interval`, so a kernel crash or power loss may lose the rows
    /// acknowledged within the last interval; recovery cuts the log before
    /// the first lost row, so what remains is a valid, verifiable chain
    /// prefix. (For [`crate::Store::open_audit_writer`], which commits
    /// without a journal, the rows are in the WAL file instead.)
    Process { flush_interval: std::time::Duration },
}

impl AuditDurability {
    /// The name used in configuration and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            AuditDurability::Disk => "disk",
            AuditDurability::Process { .. } => "process",
        }
    }
}

/// A connection whose only job is to sync committed audit rows to disk.
pub struct AuditFlusher {
    conn: Connection,
    /// The database file; its WAL is this with `-wal`.
    path: std::path::PathBuf,
}

impl AuditFlusher {
    pub(crate) fn new(conn: Connection, path: std::path::PathBuf) -> AuditFlusher {
        AuditFlusher { conn, path }
    }

    /// Sync the WAL (and checkpoint what it can without blocking writers):
    /// after `Ok`, every row committed before the call is on disk.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        // PASSIVE never waits for readers or the writer. It syncs the WAL only when it
        // has frames to copy, which a reader holding a snapshot can prevent, and syncs
        // the database file after copying: so both files are synced here as well, which
        // is what makes "every committed row" hold whatever the checkpoint managed.
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))?;
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        for file in [std::path::PathBuf::from(wal), self.path.clone()] {
            let synced = std::fs::File::open(&file).and_then(|f| f.sync_data());
            match synced {
                // No WAL: every committed page is in the database file.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Sync { path: file, source }),
                Ok(()) => {}
            }
        }
        Ok(())
    }
}

/// The single connection that appends audit rows. Owned by the audit
/// writer thread; not shared.
pub struct AuditWriter {
    conn: Connection,
}

impl AuditWriter {
    pub(crate) fn new(conn: Connection) -> AuditWriter {
        AuditWriter { conn }
    }

    /// The newest row's sequence number and hash, if any.
    pub fn last(&self) -> Result<Option<(i64, String)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Append rows in one durable transaction: all of them or none.
    pub fn append_batch(&mut self, rows: &[AuditRow]) -> Result<(), StoreError> {
        let tx = crate::write_tx(&mut self.conn)?;
        // A background thread's work: the core is given up between rows once a quantum
        // has passed (`pace.rs`), so a request's thread never waits for a whole batch.
        let mut pace = crate::pace::Pace::new();
        insert_rows(&tx, rows, || {
            pace.step();
        })?;
        tx.commit()?;
        Ok(())
    }
}

/// Insert `rows`, calling `between` after each.
pub(crate) fn insert_rows(
    tx: &rusqlite::Transaction<'_>,
    rows: &[AuditRow],
    mut between: impl FnMut(),
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(&format!(
                "INSERT INTO audit ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ))?;
    for r in rows {
        stmt.execute(params![
            r.seq,
            r.time,
            r.actor,
            r.action,
            r.tenant,
            r.function,
            r.digest,
            r.decision,
            r.reason,
            r.duration_us,
            r.status,
            r.invocation_id,
            r.prev_hash,
            r.hash,
            r.detail
        ])?;
        between();
    }
    Ok(())
}

impl Store {
    /// Up to `limit` rows with `seq > after`, oldest first.
    pub async fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<AuditRow>, StoreError> {
        self.with_audit_conn(move |conn| audit_page_sync(conn, after, limit))
            .await
    }

    /// Blocking variant, for offline verification.
    pub fn audit_page_blocking(&self, after: i64, limit: u32) -> Result<Vec<AuditRow>, StoreError> {
        self.with_audit_conn_blocking(|conn| audit_page_sync(conn, after, limit))
    }

    /// The largest sequence number (0 for an empty log).
    pub fn audit_last_seq_blocking(&self) -> Result<i64, StoreError> {
        self.with_audit_conn_blocking(|conn| {
            Ok(conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit", [], |r| r.get(0))?)
        })
    }

    /// The newest `n` rows, oldest first.
    pub async fn audit_tail(&self, n: u32) -> Result<Vec<AuditRow>, StoreError> {
        self.with_audit_conn(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM (SELECT * FROM audit ORDER BY seq DESC LIMIT ?1) ORDER BY seq"
            ))?;
            let rows = stmt.query_map([n], read_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Rows with one of `actions`, recorded at or after `since` (RFC 3339
    /// UTC, the form records are written in, so text order is time order),
    /// optionally of one tenant; at most `limit`, oldest first.
    pub async fn audit_since(
        &self,
        since: &str,
        actions: &[&str],
        tenant: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let since = since.to_owned();
        let actions: Vec<String> = actions.iter().map(|a| (*a).to_owned()).collect();
        let tenant = tenant.map(str::to_owned);
        self.with_audit_conn(move |conn| {
            let mut out = Vec::new();
            for action in actions {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM audit WHERE action = ?1 AND time >= ?2 \
                     AND (?3 IS NULL OR tenant = ?3) ORDER BY seq LIMIT ?4"
                ))?;
                let rows = stmt.query_map(params![action, since, tenant, limit], read_row)?;
                for row in rows {
                    out.push(row?);
                }
            }
            out.sort_by_key(|r| r.seq);
            out.truncate(limit as usize);
            Ok(out)
        })
        .await
    }

    /// Rows of one invocation.
    pub async fn audit_by_invocation(&self, id: &str) -> Result<Vec<AuditRow>, StoreError> {
        let id = id.to_owned();
        self.with_audit_conn(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM audit WHERE invocation_id = ?1 ORDER BY seq"
            ))?;
            let rows = stmt.query_map([id], read_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

fn audit_page_sync(conn: &Connection, after: i64, limit: u32) -> Result<Vec<AuditRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![after, limit], read_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
