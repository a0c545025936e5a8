#![forbid(unsafe_code)]
//! Append-only, hash-chained audit log of every decision the platform makes:
//! deployments and their refusals, tenant and key changes, invocations and
//! control-API authentication failures.
//!
//! # Trust
//! Trusts `store` to keep bytes; trusts no caller's record content (free
//! text is size-limited here). Each row carries the SHA-256 of the previous
//! row's hash and its own canonical encoding, so changing, inserting or
//! deleting a row in the middle breaks the chain and [`verify_chain`] names
//! the first broken link.
//!
//! # Guarantees
//! [`AuditLog::append`] returns `Ok` only after the record is committed to
//! the database; callers append *before* making an action's effect visible
//! and fail the action when the append fails. How far "committed" goes is
//! the operator's [`AuditDurability`] choice: `Disk` (the default,
//! `synchronous=FULL`: survives power loss) or `Process` (in the WAL file,
//! survives the process being killed; synced to disk by a flusher thread
//! every interval, so a power loss can cost the last interval's records).
//! Appends from concurrent callers are group-committed: one writer thread
//! takes every record waiting in its bounded queue and commits them in a
//! single transaction, so durability costs one fsync per batch, not per
//! record.
//!
//! Unauthenticated refusals go through a [`RefusalAggregator`], which
//! appends the first of a kind at once and repeats as one counted record
//! per interval; text fields and `detail` are bounded per record.
//!
//! Not covered yet: truncation of the newest rows is only detectable
//! against a previously observed head (see [`ChainHead`]); signed
//! checkpoints of the chain head are future work.

mod aggregate;
mod chain;
mod record;
mod writer;

pub use aggregate::{RefusalAggregator, DEFAULT_MAX_KEYS};
pub use chain::{verify_chain, ChainHead, GENESIS_HASH};
pub use record::{Action, AuditRecord, Outcome, StoredRecord, MAX_DETAIL, MAX_TEXT, TRUNCATED};
pub use writer::AuditLog;
pub use zerofn_store::AuditDurability;

/// Everything that can go wrong while appending or verifying.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store error")]
    Store(#[from] zerofn_store::StoreError),
    #[error("the audit writer has stopped; refusing the action because it cannot be recorded")]
    WriterStopped,
    #[error("audit append failed; the action was refused because it could not be recorded")]
    AppendFailed,
    #[error("audit chain broken at record {seq}: {problem}")]
    ChainBroken { seq: i64, problem: String },
}
