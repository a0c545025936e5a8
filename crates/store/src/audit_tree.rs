//! Raw rows of the audit log's Merkle tree: leaf hashes, the roots of full
//! 256-leaf tiles, and signed checkpoints. The `audit` crate computes and
//! checks them; this module only moves them in and out.

use rusqlite::{params, Connection, OptionalExtension};

use crate::{Store, StoreError};

/// Tables of the tree (created with the schema; absent from databases
/// opened read-only before the platform first ran with them).
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit_tree (
    level  INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    hash   BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size  INTEGER PRIMARY KEY,
    root  BLOB NOT NULL,
    note  TEXT NOT NULL,
    time  TEXT NOT NULL
) STRICT;
"#;

/// One signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub size: i64,
    pub root: Vec<u8>,
    pub note: String,
    pub time: String,
}

fn has_tree(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_checkpoints'",
        )?
        .exists([])?)
}

impl Store {
    /// Hashes of one level of the tree (0: leaves, 8: roots of full
    /// tiles) with `from <= idx < to`, in index order.
    pub fn audit_tree_hashes_blocking(
        &self,
        level: u32,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        self.with_audit_conn_blocking(|conn| {
            if !has_tree(conn)? {
                return Ok(Vec::new());
            }
            let mut stmt = conn.prepare_cached(
                "SELECT idx, hash FROM audit_tree WHERE level = ?1 AND idx >= ?2 AND idx < ?3 ORDER BY idx",
            )?;
            let rows = stmt.query_map(params![level, from, to], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// How many hashes one level holds (one past its largest index).
    pub fn audit_tree_len_blocking(&self, level: u32) -> Result<i64, StoreError> {
        self.with_audit_conn_blocking(|conn| {
            if !has_tree(conn)? {
                return Ok(0);
            }
            Ok(conn.query_row(
                "SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_tree WHERE level = ?1",
                [level],
                |r| r.get(0),
            )?)
        })
    }

    /// Store new tree hashes and the checkpoint signed over them, in one
    /// transaction.
    pub fn audit_tree_extend_blocking(
        &self,
        hashes: &[(u32, i64, [u8; 32])],
        checkpoint: &CheckpointRow,
    ) -> Result<(), StoreError> {
        self.with_audit_conn_blocking(|conn| {
            let tx = crate::write_tx(conn)?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT OR REPLACE INTO audit_tree (level, idx, hash) VALUES (?1, ?2, ?3)",
                )?;
                // Mostly the background checkpoint's work: paced like the indexer's.
                let mut pace = crate::pace::Pace::new();
                for (level, idx, hash) in hashes {
                    stmt.execute(params![level, idx, &hash[..]])?;
                    pace.step();
                }
                tx.execute(
                    "INSERT OR REPLACE INTO audit_checkpoints (size, root, note, time) VALUES (?1, ?2, ?3, ?4)",
                    params![checkpoint.size, checkpoint.root, checkpoint.note, checkpoint.time],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// The checkpoint of the largest tree, if any.
    pub fn audit_checkpoint_latest_blocking(&self) -> Result<Option<CheckpointRow>, StoreError> {
        self.with_audit_conn_blocking(|conn| {
            if !has_tree(conn)? {
                return Ok(None);
            }
            Ok(conn
                .query_row(
                    "SELECT size, root, note, time FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
                    [],
                    read_checkpoint,
                )
                .optional()?)
        })
    }

    /// The checkpoint of the tree of `size` leaves, if one was signed.
    pub fn audit_checkpoint_blocking(
        &self,
        size: i64,
    ) -> Result<Option<CheckpointRow>, StoreError> {
        self.with_audit_conn_blocking(|conn| {
            if !has_tree(conn)? {
                return Ok(None);
            }
            Ok(conn
                .query_row(
                    "SELECT size, root, note, time FROM audit_checkpoints WHERE size = ?1",
                    [size],
                    read_checkpoint,
                )
                .optional()?)
        })
    }
}

fn read_checkpoint(r: &rusqlite::Row<'_>) -> rusqlite::Result<CheckpointRow> {
    Ok(CheckpointRow {
        size: r.get(0)?,
        root: r.get(1)?,
        note: r.get(2)?,
        time: r.get(3)?,
    })
}
