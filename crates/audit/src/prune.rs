//! Retention (`zerofn audit prune --before TIME`): the bodies of records
//! older than a time are removed, their leaf hashes stay in the tree.
//!
//! The order is what keeps the log verifiable: first a checkpoint is signed
//! over everything committed (so every pruned leaf is under a signed root),
//! then an `audit.prune` record is appended naming the boundary (the last
//! removed record and its chain hash), and only then are the rows removed
//! and the boundary stored, in one transaction. Verification starts the
//! chain at the boundary, takes the pruned leaves' hashes from the tree
//! (the signed root checks them), and requires the `audit.prune` record the
//! boundary names. A failure between the two steps leaves a record that
//! announced a pruning that did not happen, which verifies (nothing is
//! missing).
//!
//! Two records are never removed: the one at the latest checkpoint's size
//! (the tree continues from its hash after a restart) and the newest one.
//!
//! # Trust
//! The caller decided the operator may prune (`audit.manage`); `before`
//! comes parsed from it.

use std::sync::Arc;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use zerofn_store::Store;

use crate::tree::LogTree;
use crate::{Action, AuditError, AuditLog, AuditRecord, Outcome};

/// What a pruning did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PruneReport {
    /// The time asked for: records stamped before it were removed.
    pub before: String,
    /// Records removed now.
    pub removed: i64,
    /// The last removed record (the boundary), if any was ever removed.
    pub through: Option<i64>,
    /// The `audit.prune` record of this pruning.
    pub record: i64,
}

fn joined<T>(r: Result<Result<T, AuditError>, tokio::task::JoinError>) -> Result<T, AuditError> {
    r.map_err(|_| AuditError::WriterStopped)?
}

/// Remove the records stamped before `before` (see the module docs), as
/// `actor`. Runs its database work on the blocking pool.
pub async fn prune(
    log: &AuditLog,
    tree: Arc<LogTree>,
    store: Store,
    actor: &str,
    before: OffsetDateTime,
) -> Result<PruneReport, AuditError> {
    let before_text = before.format(&Rfc3339).unwrap_or_default();
    let planner = store.clone();
    let plan = joined(
        tokio::task::spawn_blocking(move || {
            let size = tree.checkpoint()?.checkpoint.size;
            let last = planner.audit_last_seq_blocking()?;
            let cap = i64::try_from(size)
                .unwrap_or(i64::MAX)
                .saturating_sub(1)
                .min(last.saturating_sub(1));
            Ok(planner.audit_prune_plan_blocking(before, cap)?)
        })
        .await,
    )?;
    let Some(plan) = plan else {
        let record = log
            .append(
                AuditRecord::new(actor, Action::AuditPrune, Outcome::Allow)
                    .reason(format!("no records before {before_text} to prune"))
                    .detail(serde_json::json!({ "before": before_text, "removed": 0 })),
            )
            .await?;
        let through = joined(
            tokio::task::spawn_blocking(move || {
                Ok(store.audit_prune_boundary_blocking()?.map(|b| b.through))
            })
            .await,
        )?;
        return Ok(PruneReport {
            before: before_text,
            removed: 0,
            through,
            record,
        });
    };
    let record = log
        .append(
            AuditRecord::new(actor, Action::AuditPrune, Outcome::Allow)
                .reason(format!(
                    "records {}..={} (before {before_text}) pruned; their leaf hashes stay in the tree",
                    plan.from, plan.through
                ))
                .detail(serde_json::json!({
                    "before": before_text,
                    "from": plan.from,
                    "through": plan.through,
                    "hash": plan.hash,
                })),
        )
        .await?;
    let now = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    let through = plan.through;
    let removed = joined(
        tokio::task::spawn_blocking(move || {
            Ok(store.audit_prune_apply_blocking(&plan, record, &now)?)
        })
        .await,
    )?;
    Ok(PruneReport {
        before: before_text,
        removed,
        through: Some(through),
        record,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::note::NoteSigner;
    use crate::tree::{prove_inclusion, verify_log};
    use crate::verify_chain;
    use zerofn_store::AuditDurability;

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("zerofn.local/audit/test", &[5; 32]).unwrap()
    }

    /// A log of `n` records with a tree over it; records 1..=n stamped now.
    async fn setup(n: usize) -> (tempfile::TempDir, Store, AuditLog, Arc<LogTree>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::open_with(&store, AuditDurability::Disk).unwrap();
        for i in 0..n {
            log.append(
                AuditRecord::new("root", Action::Deploy, Outcome::Allow).reason(format!("r{i}")),
            )
            .await
            .unwrap();
        }
        let tree = Arc::new(
            LogTree::open(&store, signer())
                .unwrap()
                .with_feed(log.committed_feed()),
        );
        (dir, store, log, tree)
    }

    fn later() -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::hours(1)
    }

    #[tokio::test]
    async fn pruning_keeps_the_log_verifiable_and_refuses_pruned_reads() {
        let (_d, store, log, tree) = setup(600).await;
        let report = prune(&log, tree.clone(), store.clone(), "root", later())
            .await
            .unwrap();
        // Everything but the record at the checkpoint's size (600) and the newest (the
        // prune record itself, 601) goes.
        assert_eq!(
            (report.removed, report.through, report.record),
            (599, Some(599), 601)
        );
        let v = signer().verifier();
        tree.checkpoint().unwrap();
        let rep = verify_log(&store, &v, false).unwrap();
        assert_eq!(rep.records, 601);
        assert_eq!(verify_chain(&store).unwrap().records, 601);
        assert!(matches!(
            prove_inclusion(&store, &v, 10, None),
            Err(AuditError::Pruned {
                seq: 10,
                through: 599
            })
        ));
        prove_inclusion(&store, &v, 600, None).unwrap();
        // A reopened tree (a restart) continues from the kept record at its size.
        let reopened = LogTree::open(&store, signer()).unwrap();
        assert_eq!(reopened.size(), 601);
        // Nothing older is left: the next pruning removes nothing and says so.
        log.append(AuditRecord::new("root", Action::Deploy, Outcome::Allow))
            .await
            .unwrap();
        let again = prune(&log, tree.clone(), store.clone(), "root", later())
            .await
            .unwrap();
        assert_eq!(again.through, Some(601));
        tree.checkpoint().unwrap();
        verify_log(&store, &v, false).unwrap();
    }

    #[tokio::test]
    async fn rows_deleted_behind_the_platforms_back_do_not_pass_as_a_pruning() {
        let (dir, store, log, tree) = setup(40).await;
        prune(
            &log,
            tree.clone(),
            store.clone(),
            "root",
            OffsetDateTime::UNIX_EPOCH,
        )
        .await
        .unwrap();
        tree.checkpoint().unwrap();
        let v = signer().verifier();
        verify_log(&store, &v, false).unwrap();
        // Someone deletes records 1..=10 and writes a boundary that matches them, with no
        // `audit.prune` record in the log for it.
        let conn =
            rusqlite::Connection::open(dir.path().join(zerofn_store::DATABASE_FILE)).unwrap();
        let hash: String = conn
            .query_row("SELECT hash FROM audit WHERE seq = 10", [], |r| r.get(0))
            .unwrap();
        conn.execute("DELETE FROM audit WHERE seq <= 10", [])
            .unwrap();
        conn.execute(
            "INSERT INTO audit_pruned (id, through, hash, record, pruned_at, removed) VALUES (1, 10, ?1, 41, 'x', 10)",
            [hash.as_str()],
        )
        .unwrap();
        let err = verify_log(&store, &v, false).unwrap_err();
        assert!(
            err.to_string().contains("not an `audit.prune` record"),
            "{err}"
        );
        assert!(verify_chain(&store).is_err());
        // Pointing the boundary at no record at all fails too.
        conn.execute("UPDATE audit_pruned SET record = 9999", [])
            .unwrap();
        let err = verify_log(&store, &v, false).unwrap_err();
        assert!(err.to_string().contains("no `audit.prune` record"), "{err}");
    }

    #[tokio::test]
    async fn a_pruned_leaf_hash_changed_in_the_tree_fails_against_the_signed_root() {
        let (dir, store, log, tree) = setup(40).await;
        prune(&log, tree.clone(), store.clone(), "root", later())
            .await
            .unwrap();
        tree.checkpoint().unwrap();
        let v = signer().verifier();
        verify_log(&store, &v, false).unwrap();
        let conn =
            rusqlite::Connection::open(dir.path().join(zerofn_store::DATABASE_FILE)).unwrap();
        conn.execute(
            "UPDATE audit_tree SET hash = zeroblob(32) WHERE level = 0 AND idx = 3",
            [],
        )
        .unwrap();
        let err = verify_log(&store, &v, false).unwrap_err();
        assert!(matches!(err, AuditError::TreeMismatch(_)), "{err}");
    }
}
