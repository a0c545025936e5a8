//! Retention of the audit log: removing the bodies of old records while the
//! Merkle tree keeps their leaf hashes (`zerofn audit prune`).
//!
//! What is removed is always a prefix of the log, `1..=through`. One row,
//! the boundary, remembers where the kept log starts: `through` and the
//! chain hash of record `through`, which the first kept record names as its
//! `prev_hash`. Verification starts there instead of at the genesis hash,
//! takes the pruned leaves' hashes from the tree, and (in the `audit` crate)
//! requires an `audit.prune` record in the kept log that names the same
//! boundary, so a boundary written behind the platform's back does not pass.
//!
//! # Trust
//! This module only moves rows: the caller decides what may be pruned (never
//! records outside a signed checkpoint, never the newest record) and records
//! the pruning in the log before asking for it.

use rusqlite::{params, Connection, OptionalExtension};
use time::OffsetDateTime;

use crate::audit_query::first_seq_where;
use crate::{Store, StoreError};

/// The boundary table (created with the schema; absent from databases that
/// were never pruned by a platform that knew it).
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit_pruned (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    through     INTEGER NOT NULL,
    hash        TEXT NOT NULL,
    record      INTEGER NOT NULL,
    pruned_at   TEXT NOT NULL,
    removed     INTEGER NOT NULL
) STRICT;
"#;

/// Where the kept log starts: records `1..=through` were removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneBoundary {
    /// The last removed record.
    pub through: i64,
    /// Its chain hash: the `prev_hash` of record `through + 1`.
    pub hash: String,
    /// The `audit.prune` record that announced this boundary.
    pub record: i64,
    /// When the last pruning ran (RFC 3339).
    pub pruned_at: String,
    /// Records removed by every pruning so far.
    pub removed: i64,
}

/// What a pruning would remove: records `from..=through`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunePlan {
    pub from: i64,
    pub through: i64,
    /// Chain hash of record `through`.
    pub hash: String,
}

fn has_boundary_table(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_pruned'",
        )?
        .exists([])?)
}

fn read_boundary(conn: &Connection) -> Result<Option<PruneBoundary>, StoreError> {
    if !has_boundary_table(conn)? {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            "SELECT through, hash, record, pruned_at, removed FROM audit_pruned WHERE id = 1",
            [],
            |r| {
                Ok(PruneBoundary {
                    through: r.get(0)?,
                    hash: r.get(1)?,
                    record: r.get(2)?,
                    pruned_at: r.get(3)?,
                    removed: r.get(4)?,
                })
            },
        )
        .optional()?)
}

impl Store {
    /// Where the kept log starts, if it was ever pruned.
    pub fn audit_prune_boundary_blocking(&self) -> Result<Option<PruneBoundary>, StoreError> {
        self.with_audit_conn_blocking(|conn| read_boundary(conn))
    }

    /// The records stamped before `before`, up to record `cap` at most, that
    /// are still kept; `None` when there are none.
    pub fn audit_prune_plan_blocking(
        &self,
        before: OffsetDateTime,
        cap: i64,
    ) -> Result<Option<PrunePlan>, StoreError> {
        self.with_audit_conn_blocking(|conn| {
            let tx = conn.transaction()?;
            let from = read_boundary(&tx)?.map_or(1, |b| b.through.saturating_add(1));
            // The first record stamped at or after `before`; everything before it is old.
            let newer = first_seq_where(&tx, |t| t >= before)?;
            let last: i64 =
                tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit", [], |r| r.get(0))?;
            let through = newer.map_or(last, |n| n.saturating_sub(1)).min(cap);
            if through < from {
                return Ok(None);
            }
            let hash: Option<String> = tx
                .query_row("SELECT hash FROM audit WHERE seq = ?1", [through], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(hash.map(|hash| PrunePlan {
                from,
                through,
                hash,
            }))
        })
    }

    /// Remove records up to `plan.through` and move the boundary there, in
    /// one transaction. Refused (nothing changes) when the log moved since
    /// the plan was made: the boundary is no longer where the plan starts,
    /// or record `through` no longer has the planned hash. Returns how many
    /// rows were removed.
    pub fn audit_prune_apply_blocking(
        &self,
        plan: &PrunePlan,
        record: i64,
        pruned_at: &str,
    ) -> Result<i64, StoreError> {
        self.with_audit_conn_blocking(|conn| {
            let tx = crate::write_tx(conn)?;
            let before = read_boundary(&tx)?;
            let start = before.as_ref().map_or(1, |b| b.through.saturating_add(1));
            let hash: Option<String> = tx
                .query_row(
                    "SELECT hash FROM audit WHERE seq = ?1",
                    [plan.through],
                    |r| r.get(0),
                )
                .optional()?;
            if start != plan.from || hash.as_deref() != Some(plan.hash.as_str()) {
                return Err(StoreError::PruneRaced);
            }
            let removed = tx.execute("DELETE FROM audit WHERE seq <= ?1", [plan.through])?;
            let removed = i64::try_from(removed).unwrap_or(i64::MAX);
            let total = before
                .as_ref()
                .map_or(0, |b| b.removed)
                .saturating_add(removed);
            tx.execute(
                "INSERT OR REPLACE INTO audit_pruned (id, through, hash, record, pruned_at, removed)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5)",
                params![plan.through, plan.hash, record, pruned_at, total],
            )?;
            tx.commit()?;
            Ok(removed)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::{AuditDurability, AuditRow};

    fn rows(n: i64) -> Vec<AuditRow> {
        (1..=n)
            .map(|seq| AuditRow {
                seq,
                time: format!("2026-01-01T00:00:{seq:02}Z"),
                actor: "root".into(),
                action: "deploy".into(),
                tenant: Some("acme".into()),
                function: None,
                digest: None,
                decision: "allow".into(),
                reason: None,
                duration_us: None,
                status: None,
                invocation_id: None,
                prev_hash: format!("h{}", seq - 1),
                hash: format!("h{seq}"),
                detail: None,
            })
            .collect()
    }

    fn store_with(n: i64) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.open_audit_writer(AuditDurability::Disk).unwrap();
        w.append_batch(&rows(n)).unwrap();
        (dir, store)
    }

    fn at(sec: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_767_225_600 + sec).unwrap()
    }

    #[test]
    fn a_plan_covers_the_records_before_the_time_and_stops_at_the_cap() {
        let (_d, store) = store_with(10);
        let plan = store
            .audit_prune_plan_blocking(at(5), 100)
            .unwrap()
            .unwrap();
        assert_eq!((plan.from, plan.through, plan.hash.as_str()), (1, 4, "h4"));
        let capped = store.audit_prune_plan_blocking(at(9), 3).unwrap().unwrap();
        assert_eq!(capped.through, 3);
        assert!(store
            .audit_prune_plan_blocking(at(1), 100)
            .unwrap()
            .is_none());
    }

    #[test]
    fn applying_removes_the_prefix_and_moves_the_boundary_once() {
        let (_d, store) = store_with(10);
        assert!(store.audit_prune_boundary_blocking().unwrap().is_none());
        let plan = store
            .audit_prune_plan_blocking(at(5), 100)
            .unwrap()
            .unwrap();
        assert_eq!(
            store.audit_prune_apply_blocking(&plan, 10, "now").unwrap(),
            4
        );
        let b = store.audit_prune_boundary_blocking().unwrap().unwrap();
        assert_eq!(
            (b.through, b.hash.as_str(), b.record, b.removed),
            (4, "h4", 10, 4)
        );
        assert_eq!(store.audit_page_blocking(0, 100).unwrap()[0].seq, 5);
        // The same plan again is stale: the log moved.
        assert!(matches!(
            store.audit_prune_apply_blocking(&plan, 10, "now"),
            Err(StoreError::PruneRaced)
        ));
        // The next plan starts after the boundary and the totals add up.
        let next = store
            .audit_prune_plan_blocking(at(7), 100)
            .unwrap()
            .unwrap();
        assert_eq!((next.from, next.through), (5, 6));
        assert_eq!(
            store
                .audit_prune_apply_blocking(&next, 10, "later")
                .unwrap(),
            2
        );
        let b = store.audit_prune_boundary_blocking().unwrap().unwrap();
        assert_eq!((b.through, b.removed), (6, 6));
    }
}
