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
//! [`AuditLog::append`] returns `Ok` only after the record is in the data
//! directory's audit journal (`zerofn_store::AuditJournal`); callers append
//! *before* making an action's effect visible and fail the action when the
//! append fails. How far "in the journal" goes is the operator's
//! [`AuditDurability`] choice: `Disk` (the default: the journal block is
//! `fdatasync`'d first, so it survives power loss) or `Process` (written,
//! so it survives the process being killed; the flusher syncs the journal
//! every interval, so a machine failure can cost the last interval's
//! records, and recovery cuts the log where they went missing). Appends
//! from concurrent callers are group-committed: one writer takes every
//! record waiting in its bounded queue and writes them as one block, so
//! durability costs one sync per batch, not per record. In `Disk` the
//! writer is a thread of its own (it waits for the sync); in `Process`, a
//! task on the runtime's workers (a write into space the journal has, on the
//! appender's own core). An indexer thread copies the rows into the
//! database behind, and reads wait for it; it, the flusher and the tree's
//! checkpoints run niced and yield the core between units of work
//! (`zerofn_store::pace`).
//!
//! Unauthenticated refusals go through a [`RefusalAggregator`], which
//! appends the first of a kind at once and repeats as one counted record
//! per interval; text fields and `detail` are bounded per record.
//!
//! The records are also the leaves of an RFC 6962 Merkle tree ([`tree`]):
//! a leaf is the record's RFC 8785 canonical JSON ([`jcs`]), and the
//! platform signs the tree's head as a C2SP checkpoint ([`note`]) every
//! interval while there are new records, so anyone holding a checkpoint
//! and the verifier key can check that a record is in the log
//! ([`merkle::verify_inclusion`]), that a later log extends an earlier one
//! ([`merkle::verify_consistency`]), and that nothing before the checkpoint
//! was edited, deleted or cut from the end ([`tree::verify_log`]). The
//! append path is unchanged: the tree is built when a checkpoint is made.
//! Records appended after the latest checkpoint are covered by the chain
//! only until the next one. Old records' bodies may be removed ([`prune`]);
//! their leaf hashes stay, and verification starts at the boundary.

mod aggregate;
mod chain;
pub mod jcs;
pub mod merkle;
pub mod note;
pub mod prune;
mod record;
pub mod tiles;
pub mod tree;
mod writer;

pub use aggregate::{RefusalAggregator, DEFAULT_MAX_KEYS};
pub use chain::{verify_chain, verify_pending, ChainHead, PendingRecords, GENESIS_HASH};
pub use note::{Checkpoint, NoteError, NoteSigner, NoteVerifier};
pub use record::{Action, AuditRecord, Outcome, StoredRecord, MAX_DETAIL, MAX_TEXT, TRUNCATED};
pub use tree::{
    ConsistencyProof, ExportedRecord, InclusionProof, LogReport, LogTree, SignedCheckpoint,
};
pub use writer::{AuditLog, AuditObserver, CommittedFeed, QueuedAppend};
pub use zerofn_store::{AuditDurability, AuditQuery};

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
    #[error("audit tree does not verify: {0}")]
    TreeMismatch(String),
    #[error("the log has {records} records but its signed checkpoint covers {checkpoint}: records were deleted from its end (truncated)")]
    Truncated { records: i64, checkpoint: u64 },
    #[error("records {from}..={to} are not covered by any signed checkpoint (appended behind the platform's back, or just before it stopped abnormally; a running platform signs them within a second, a few under full load)")]
    Unsigned { from: i64, to: i64 },
    #[error("{}", match size { Some(s) => format!("no signed checkpoint of tree size {s}"), None => "the audit log has no signed checkpoint".to_owned() })]
    NoCheckpoint { size: Option<u64> },
    #[error("record {seq} is not covered by the checkpoint of tree size {size}; ask for a newer checkpoint")]
    NotCovered { seq: i64, size: u64 },
    #[error("no audit record {0}")]
    NoRecord(i64),
    #[error("audit record {seq} was pruned (records 1..={through} were removed by `zerofn audit prune`; their leaf hashes stay in the tree, so checkpoints and other records' proofs still verify)")]
    Pruned { seq: i64, through: i64 },
    #[error("{what} {value} is out of range for tree size {size}")]
    TreeRange {
        what: &'static str,
        value: u64,
        size: u64,
    },
    #[error("record {seq}'s leaf is {bytes} bytes, more than a tlog-tiles entry bundle can carry (65535)")]
    EntryTooLarge { seq: i64, bytes: usize },
    #[error("audit checkpoint: {0}")]
    Note(#[from] NoteError),
}

impl AuditError {
    /// The first record a verification failure concerns, if it names one.
    pub fn record(&self) -> Option<i64> {
        match self {
            AuditError::ChainBroken { seq, .. } => Some(*seq),
            AuditError::Truncated { records, .. } => Some(records.saturating_add(1)),
            AuditError::Unsigned { from, .. } => Some(*from),
            _ => None,
        }
    }
}
