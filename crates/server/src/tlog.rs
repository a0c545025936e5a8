//! The audit log as a transparency log: the checkpoint signing key in the
//! data directory, the task that signs a checkpoint every interval while
//! there are new records, and the reads the control API and the offline
//! CLI share (checkpoint, proofs, export, full verification).
//!
//! # Trust
//! Trusts the data directory for the signing key (`audit-log.key`, 0600,
//! refused when group or others can read it) and the database for the
//! records; everything read back is checked (chain links before a record
//! joins the tree, the stored tree against its signed checkpoint at start,
//! each proof against the signed root before it is served). An external
//! verifier trusts none of this: only the verifier key it pinned.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use zerofn_audit::prune::PruneReport;
use zerofn_audit::tree::{self, LogReport};
use zerofn_audit::{
    AuditError, AuditLog, ConsistencyProof, ExportedRecord, InclusionProof, LogTree, NoteSigner,
    NoteVerifier, SignedCheckpoint,
};
use zerofn_store::Store;

use crate::control::ControlError;
use crate::datadir::{read_private_as, write_private};
use crate::ServerError;

/// File of the checkpoint signing key, in the data directory (mode 0600):
/// `PRIVATE+KEY+<name>+<hash>+<base64>` (the Go `sumdb/note` signer key).
pub const AUDIT_KEY_FILE: &str = "audit-log.key";
/// How often a checkpoint is signed while there are new records.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Most records one export request returns.
pub const MAX_EXPORT: i64 = 10_000;

/// The signing key, created with a new install id on first start.
pub(crate) fn signing_key(data_dir: &Path) -> Result<NoteSigner, ServerError> {
    let path = data_dir.join(AUDIT_KEY_FILE);
    if let Some(text) = read_private_as(&path, "audit log signing key")? {
        return NoteSigner::parse(text.trim()).map_err(|e| {
            ServerError::DataDir(format!("audit log signing key `{}`: {e}", path.display()))
        });
    }
    let mut id = [0u8; 8];
    rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut id).map_err(|e| {
        ServerError::DataDir(format!("no random source for the audit log key: {e}"))
    })?;
    let name = format!("zerofn.local/audit/{}", hex::encode(id));
    let signer = NoteSigner::generate(&name)
        .map_err(|e| ServerError::DataDir(format!("cannot make the audit log key: {e}")))?;
    let text = signer.to_private_text();
    write_private(&path, format!("{}\n", text.as_str()).as_bytes())?;
    Ok(signer)
}

/// The verifier key of the data directory's signing key (offline reads).
pub fn audit_log_verifier(data_dir: &Path) -> Result<NoteVerifier, ServerError> {
    let path = data_dir.join(AUDIT_KEY_FILE);
    match read_private_as(&path, "audit log signing key")? {
        Some(text) => NoteSigner::parse(text.trim())
            .map(|s| s.verifier())
            .map_err(|e| {
                ServerError::DataDir(format!("audit log signing key `{}`: {e}", path.display()))
            }),
        None => Err(ServerError::DataDir(format!(
            "no audit log signing key at `{}`; has a platform run on this data directory?",
            path.display()
        ))),
    }
}

/// The running platform's tree: checkpoints on a timer and on demand.
#[derive(Debug, Clone)]
pub struct AuditTree {
    tree: Arc<LogTree>,
    store: Store,
    log: AuditLog,
}

fn internal(e: tokio::task::JoinError) -> ControlError {
    ControlError::Internal(e.to_string())
}

/// Requests naming records or sizes the log does not have are the
/// caller's mistake (400), not the platform's.
fn request_error(e: AuditError) -> ControlError {
    match e {
        AuditError::NoRecord(_)
        | AuditError::NotCovered { .. }
        | AuditError::TreeRange { .. }
        | AuditError::Pruned { .. }
        | AuditError::NoCheckpoint { size: Some(_) } => ControlError::InvalidRequest(e.to_string()),
        other => ControlError::Audit(other),
    }
}

impl AuditTree {
    /// Open the tree and sign a checkpoint over whatever the log holds.
    pub(crate) fn open(
        store: &Store,
        data_dir: &Path,
        log: &AuditLog,
    ) -> Result<AuditTree, ServerError> {
        let signer = signing_key(data_dir)?;
        let tree = LogTree::open(store, signer)?.with_feed(log.committed_feed());
        tree.checkpoint()?;
        Ok(AuditTree {
            tree: Arc::new(tree),
            store: store.clone(),
            log: log.clone(),
        })
    }

    /// Remove the records stamped before `before` (their leaf hashes stay in the tree),
    /// recorded as an `audit.prune` record by `actor`.
    pub async fn prune(
        &self,
        actor: &str,
        before: time::OffsetDateTime,
    ) -> Result<PruneReport, ControlError> {
        zerofn_audit::prune::prune(
            &self.log,
            self.tree.clone(),
            self.store.clone(),
            actor,
            before,
        )
        .await
        .map_err(|e| match e {
            AuditError::Store(raced @ zerofn_store::StoreError::PruneRaced) => {
                ControlError::Store(raced)
            }
            other => ControlError::Audit(other),
        })
    }

    pub fn verifier(&self) -> NoteVerifier {
        self.tree.verifier()
    }

    /// Sign a checkpoint over every committed record now.
    pub async fn checkpoint(&self) -> Result<SignedCheckpoint, ControlError> {
        let tree = self.tree.clone();
        tokio::task::spawn_blocking(move || tree.checkpoint())
            .await
            .map_err(internal)?
            .map_err(ControlError::Audit)
    }

    /// Sign checkpoints every `interval` until `shutdown` (the caller signs the last one).
    ///
    /// On a thread of its own at background priority (`zerofn_store::pace`): extending
    /// the tree hashes every new record, which at full load is a tenth of a core, and on
    /// a shared pooled thread at full priority it held the core a request's thread was
    /// woken on for milliseconds (BENCHMARKS.md, "Background work and the one-connection
    /// tail").
    pub(crate) async fn run(self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let tree = self.clone();
        let thread = std::thread::Builder::new()
            .name("zerofn-audit-tree".into())
            .spawn(move || {
                zerofn_store::pace::behind_requests();
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(interval)
                {
                    if let Err(error) = tree.checkpoint_if_new() {
                        tracing::error!(%error, "cannot sign an audit checkpoint");
                    }
                }
            });
        let thread = match thread {
            Ok(thread) => thread,
            Err(error) => {
                // Checkpoints are still signed on demand and at shutdown.
                tracing::error!(%error, "cannot start the audit checkpoint thread");
                return;
            }
        };
        let _ = shutdown.changed().await;
        drop(stop);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }

    /// Blocking: sign a checkpoint when the database holds records the tree does not.
    fn checkpoint_if_new(&self) -> Result<(), AuditError> {
        let last = self.store.audit_last_seq_blocking()?;
        if u64::try_from(last).unwrap_or(0) > self.tree.size() {
            self.tree.checkpoint()?;
        }
        Ok(())
    }

    /// A `tlog-tiles` hash tile or entry bundle of the latest checkpoint's tree; the inner
    /// error when that tree has no such tile.
    pub(crate) async fn tile(
        &self,
        tile: zerofn_audit::tiles::TilePath,
    ) -> Result<Result<Vec<u8>, zerofn_audit::tiles::TileError>, ControlError> {
        use zerofn_audit::tiles::{self, TileOrAudit};
        let tree = self.tree.clone();
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let size = tree.latest()?.map_or(0, |cp| cp.checkpoint.size);
            match tiles::hash_tile(&store, size, &tile) {
                Ok(bytes) => Ok(Ok(bytes)),
                Err(TileOrAudit::Tile(missing)) => Ok(Err(missing)),
                Err(TileOrAudit::Audit(e)) => Err(e),
            }
        })
        .await
        .map_err(internal)?
        .map_err(ControlError::Audit)
    }

    /// The latest signed checkpoint.
    pub async fn latest(&self) -> Result<SignedCheckpoint, ControlError> {
        let tree = self.tree.clone();
        tokio::task::spawn_blocking(move || tree.latest())
            .await
            .map_err(internal)?
            .map_err(ControlError::Audit)?
            .ok_or(ControlError::Audit(AuditError::NoCheckpoint { size: None }))
    }

    /// Inclusion proof of record `seq` against the checkpoint of `size`,
    /// or the latest one (signed now if it does not cover the record yet).
    pub async fn prove(&self, seq: i64, size: Option<u64>) -> Result<InclusionProof, ControlError> {
        if size.is_none() && u64::try_from(seq).unwrap_or(0) > self.tree.size() {
            self.checkpoint().await?;
        }
        let (store, verifier) = (self.store.clone(), self.verifier());
        tokio::task::spawn_blocking(move || tree::prove_inclusion(&store, &verifier, seq, size))
            .await
            .map_err(internal)?
            .map_err(request_error)
    }

    /// Consistency proof from tree size `old` to the checkpoint of `new`
    /// (the latest when `None`).
    pub async fn consistency(
        &self,
        old: u64,
        new: Option<u64>,
    ) -> Result<ConsistencyProof, ControlError> {
        let (store, verifier) = (self.store.clone(), self.verifier());
        tokio::task::spawn_blocking(move || tree::prove_consistency(&store, &verifier, old, new))
            .await
            .map_err(internal)?
            .map_err(request_error)
    }

    /// Records `from..=to` with their leaf bytes (at most [`MAX_EXPORT`]).
    pub async fn export(&self, from: i64, to: i64) -> Result<Vec<ExportedRecord>, ControlError> {
        check_export_range(from, to).map_err(ControlError::InvalidRequest)?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || tree::export(&store, from, to))
            .await
            .map_err(internal)?
            .map_err(request_error)
    }

    /// Sign a checkpoint over everything committed, then recompute the
    /// whole tree from the records and check it against that checkpoint.
    pub async fn verify(&self) -> Result<LogReport, ControlError> {
        self.checkpoint().await?;
        let (store, verifier) = (self.store.clone(), self.verifier());
        tokio::task::spawn_blocking(move || tree::verify_log(&store, &verifier, true))
            .await
            .map_err(internal)?
            .map_err(ControlError::Audit)
    }
}

/// `from..=to` must be a non-empty range of at most [`MAX_EXPORT`] records
/// starting at 1 or later.
pub fn check_export_range(from: i64, to: i64) -> Result<(), String> {
    if from < 1 || to < from {
        return Err(format!(
            "export range {from}..={to} is empty or starts before record 1"
        ));
    }
    if to - from >= MAX_EXPORT {
        return Err(format!("export at most {MAX_EXPORT} records per request"));
    }
    Ok(())
}

/// Offline reads of a stopped platform's log: the database opened
/// read-only, the verifier key from the data directory unless given.
pub mod offline {
    use super::*;

    fn open(data_dir: &Path) -> Result<Store, ServerError> {
        let db = data_dir.join(zerofn_store::DATABASE_FILE);
        if !db.is_file() {
            return Err(ServerError::NoDatabase(db));
        }
        Ok(Store::open_read_only(data_dir)?)
    }

    fn key(data_dir: &Path, pinned: Option<&NoteVerifier>) -> Result<NoteVerifier, ServerError> {
        match pinned {
            Some(k) => Ok(k.clone()),
            None => audit_log_verifier(data_dir),
        }
    }

    pub fn checkpoint(data_dir: &Path) -> Result<SignedCheckpoint, ServerError> {
        let store = open(data_dir)?;
        tree::latest_checkpoint(&store, &audit_log_verifier(data_dir)?)?
            .ok_or(ServerError::Audit(AuditError::NoCheckpoint { size: None }))
    }

    pub fn prove(
        data_dir: &Path,
        seq: i64,
        size: Option<u64>,
    ) -> Result<InclusionProof, ServerError> {
        let store = open(data_dir)?;
        Ok(tree::prove_inclusion(
            &store,
            &audit_log_verifier(data_dir)?,
            seq,
            size,
        )?)
    }

    pub fn consistency(
        data_dir: &Path,
        old: u64,
        new: Option<u64>,
    ) -> Result<ConsistencyProof, ServerError> {
        let store = open(data_dir)?;
        Ok(tree::prove_consistency(
            &store,
            &audit_log_verifier(data_dir)?,
            old,
            new,
        )?)
    }

    pub fn export(data_dir: &Path, from: i64, to: i64) -> Result<Vec<ExportedRecord>, ServerError> {
        let store = open(data_dir)?;
        Ok(tree::export(&store, from, to)?)
    }

    /// Full verification of a stopped platform's log: records after the
    /// latest checkpoint are an error (a platform that stopped cleanly
    /// signed everything it wrote).
    pub fn verify(
        data_dir: &Path,
        pinned: Option<&NoteVerifier>,
    ) -> Result<LogReport, ServerError> {
        let store = open(data_dir)?;
        if !store.has_audit_table_blocking()? {
            return Err(ServerError::AuditMissing(
                data_dir.join(zerofn_store::DATABASE_FILE),
            ));
        }
        if store.audit_last_seq_blocking()? == 0 {
            return Err(ServerError::AuditEmpty(
                data_dir.join(zerofn_store::DATABASE_FILE),
            ));
        }
        let verifier = key(data_dir, pinned)?;
        Ok(tree::verify_log(&store, &verifier, false)?)
    }

    /// Records a platform acknowledged (in its journal) but did not copy into the
    /// database before it stopped, checked to continue the verified chain `report` ends.
    pub fn pending(
        data_dir: &Path,
        report: &LogReport,
    ) -> Result<Option<zerofn_audit::PendingRecords>, ServerError> {
        let store = open(data_dir)?;
        let head = store.audit_last_seq_blocking()?;
        Ok(zerofn_audit::verify_pending(&store, (head, &report.head))?)
    }
}
