//! The log as an RFC 6962 Merkle tree: each record's canonical leaf bytes,
//! the tree kept beside the records (leaf hashes and the roots of full
//! 256-leaf tiles), signed checkpoints, proofs, and full verification.
//!
//! The append path does none of this: records are chained and committed as
//! before, and [`LogTree::checkpoint`] (every second while there are new
//! records, and on demand) takes what was committed since the last
//! checkpoint, hashes its leaves, stores them and signs the new tree head.
//! Leaf `i` is the record with `seq = i + 1`. What was committed comes from
//! the writer's [`CommittedFeed`] when it continues where the tree stands
//! (the rows this process wrote, chained onto the tree's head), and is read
//! back from the database, each chain link checked, otherwise (after a
//! restart, or when another process appended).

use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;
use zerofn_store::{AuditRow, CheckpointRow, Store};

use crate::chain::{check_link, ChainWalk, GENESIS_HASH};
use crate::merkle::{self, CompactRange, Hash, HashSource};
use crate::note::{Checkpoint, NoteSigner, NoteVerifier};
use crate::{jcs, AuditError, CommittedFeed, StoredRecord};

/// Leaves per tile: the tree keeps the root of every full tile (level 8).
pub const TILE_HEIGHT: u32 = 8;
const TILE: u64 = 1 << TILE_HEIGHT;
const PAGE: u32 = 2048;

/// The leaf bytes of a record: RFC 8785 canonical JSON of the object
/// `zerofn audit tail --json` prints for it (every column; absent ones
/// omitted; `detail` as the JSON value it holds).
pub fn leaf_bytes(r: &AuditRow) -> Result<Vec<u8>, AuditError> {
    let mut out = Vec::with_capacity(512);
    write_leaf(r, false, &mut out)?;
    Ok(out)
}

/// [`leaf_bytes`] of a row this process's writer made, whose `detail` it stored as
/// RFC 8785 canonical JSON already: the same bytes, without parsing the detail back.
fn written_leaf_bytes(r: &AuditRow, out: &mut Vec<u8>) -> Result<(), AuditError> {
    write_leaf(r, true, out)
}

/// The record's members written in RFC 8785 order straight from its columns. (The
/// member names are ASCII, so their UTF-16 order is this byte order; the test
/// `direct_leaf_bytes_match_canonicalizing_the_listed_object` checks it against
/// canonicalizing the listed object.) `detail_canonical`: the detail text is written
/// as it is, instead of parsed and canonicalized.
fn write_leaf(r: &AuditRow, detail_canonical: bool, out: &mut Vec<u8>) -> Result<(), AuditError> {
    fn name(out: &mut Vec<u8>, name: &str) {
        if out.last() != Some(&b'{') {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
    }
    fn text(out: &mut Vec<u8>, key: &str, value: &str) {
        name(out, key);
        jcs::string(value, out);
    }
    fn optional(out: &mut Vec<u8>, key: &str, value: Option<&String>) {
        if let Some(v) = value {
            text(out, key, v);
        }
    }
    fn integer(out: &mut Vec<u8>, key: &str, value: Option<i64>) {
        if let Some(v) = value {
            name(out, key);
            jcs::number(&serde_json::Number::from(v), out);
        }
    }
    out.push(b'{');
    text(out, "action", &r.action);
    text(out, "actor", &r.actor);
    text(out, "decision", &r.decision);
    if let Some(d) = &r.detail {
        name(out, "detail");
        if detail_canonical {
            out.extend_from_slice(d.as_bytes());
        } else {
            let v: Value = serde_json::from_str(d).map_err(|_| AuditError::ChainBroken {
                seq: r.seq,
                problem: "its detail is not JSON (the record was modified)".into(),
            })?;
            jcs::canonicalize_into(&v, out);
        }
    }
    optional(out, "digest", r.digest.as_ref());
    integer(out, "duration_us", r.duration_us);
    optional(out, "function", r.function.as_ref());
    text(out, "hash", &r.hash);
    optional(out, "invocation_id", r.invocation_id.as_ref());
    text(out, "prev_hash", &r.prev_hash);
    optional(out, "reason", r.reason.as_ref());
    integer(out, "seq", Some(r.seq));
    integer(out, "status", r.status);
    optional(out, "tenant", r.tenant.as_ref());
    text(out, "time", &r.time);
    out.push(b'}');
    Ok(())
}

/// Where the log stands for proofs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    /// The signed note text.
    pub note: String,
}

/// An inclusion proof of one record, against a signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    /// Base64 of the record's leaf bytes.
    pub leaf: String,
    /// Base64 hashes, leaf to root.
    pub proof: Vec<String>,
    /// The signed checkpoint of `tree_size`.
    pub checkpoint: String,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    /// Base64 of the roots of both trees.
    pub old_root: String,
    pub new_root: String,
    /// Base64 hashes (RFC 6962 §2.1.2 order).
    pub proof: Vec<String>,
    /// The signed checkpoint of `new_size`.
    pub checkpoint: String,
}

/// A record with its leaf bytes, for `zerofn audit export`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportedRecord {
    pub index: u64,
    pub record: StoredRecord,
    /// Base64 of the leaf bytes.
    pub leaf: String,
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogReport {
    pub records: i64,
    /// Hash of the newest record (the chain head).
    pub head: String,
    /// Size of the latest signed checkpoint.
    pub checkpoint_size: u64,
    /// Base64 root hash it signs.
    pub root: String,
}

/// Tree hashes read from the store: full-tile roots in memory, leaves a
/// tile at a time on demand.
struct StoredHashes<'a> {
    store: &'a Store,
    size: u64,
    tiles: Vec<Hash>,
    block: Option<(u64, Vec<Hash>)>,
}

fn to_hash(v: &[u8]) -> Option<Hash> {
    v.try_into().ok()
}

impl<'a> StoredHashes<'a> {
    fn load(store: &'a Store, size: u64) -> Result<StoredHashes<'a>, AuditError> {
        let full = size / TILE;
        let tiles = read_level(store, TILE_HEIGHT, 0, full)?;
        Ok(StoredHashes {
            store,
            size,
            tiles,
            block: None,
        })
    }
}

/// `count` hashes of `level` from index `from`, all present and 32 bytes.
fn read_level(store: &Store, level: u32, from: u64, to: u64) -> Result<Vec<Hash>, AuditError> {
    let rows = store.audit_tree_hashes_blocking(level, as_i64(from), as_i64(to))?;
    let mut out = Vec::with_capacity(rows.len());
    for (expect, (idx, h)) in (from..to).zip(rows.iter()) {
        match to_hash(h) {
            Some(h) if u64::try_from(*idx).ok() == Some(expect) => out.push(h),
            _ => {
                return Err(AuditError::TreeMismatch(format!(
                    "tree hash {expect} at level {level} is missing or malformed"
                )))
            }
        }
    }
    if out.len() as u64 != to.saturating_sub(from) {
        return Err(AuditError::TreeMismatch(format!(
            "the stored tree lacks hashes {}..{} at level {level}",
            from + out.len() as u64,
            to
        )));
    }
    Ok(out)
}

/// The stored hashes of `level` (0: leaves, [`TILE_HEIGHT`]: full tiles' roots) with
/// indices `from..to`, all present (for the `tlog-tiles` view, [`crate::tiles`]).
pub(crate) fn stored_level(
    store: &Store,
    level: u32,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, AuditError> {
    read_level(store, level, from, to)
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl HashSource for StoredHashes<'_> {
    fn leaf(&mut self, index: u64) -> Result<Hash, AuditError> {
        if index >= self.size {
            return Err(AuditError::TreeRange {
                what: "leaf index",
                value: index,
                size: self.size,
            });
        }
        let start = index / TILE * TILE;
        if self.block.as_ref().map(|b| b.0) != Some(start) {
            let end = (start + TILE).min(self.size);
            self.block = Some((start, read_level(self.store, 0, start, end)?));
        }
        self.block
            .as_ref()
            .and_then(|(s, b)| b.get(usize::try_from(index - s).ok()?))
            .copied()
            .ok_or(AuditError::TreeRange {
                what: "leaf index",
                value: index,
                size: self.size,
            })
    }

    fn perfect(&mut self, start: u64, height: u32) -> Result<Option<Hash>, AuditError> {
        if height < TILE_HEIGHT || !start.is_multiple_of(TILE) {
            return Ok(None);
        }
        let first = start / TILE;
        let count = 1u64 << (height - TILE_HEIGHT).min(62);
        let Some(tiles) = usize::try_from(first)
            .ok()
            .zip(usize::try_from(first + count).ok())
            .and_then(|(a, b)| self.tiles.get(a..b))
        else {
            return Ok(None);
        };
        let mut tiles = tiles.to_vec();
        Ok(Some(merkle::root(tiles.as_mut_slice(), count)?))
    }
}

/// The tree as far as it is checkpointed: size, chain head there, the
/// compact range for its root, and the leaves of its last partial tile.
#[derive(Debug, Clone)]
struct TreeState {
    size: u64,
    head: String,
    range: CompactRange,
    tail: Vec<Hash>,
}

impl TreeState {
    /// Add the record `r`, the next one, as a leaf; the hashes to store go to `hashes`.
    /// `written`: a row from this process's writer ([`written_leaf_bytes`]); `leaf` is
    /// scratch space.
    fn add(
        &mut self,
        r: &AuditRow,
        written: bool,
        leaf: &mut Vec<u8>,
        hashes: &mut Vec<(u32, i64, Hash)>,
    ) -> Result<(), AuditError> {
        leaf.clear();
        if written {
            written_leaf_bytes(r, leaf)?;
        } else {
            write_leaf(r, false, leaf)?;
        }
        let h = merkle::leaf_hash(leaf);
        hashes.push((0, as_i64(self.size), h));
        self.range.push(h);
        self.tail.push(h);
        self.size += 1;
        self.head.clone_from(&r.hash);
        if self.tail.len() as u64 == TILE {
            let tile = merkle::root(self.tail.as_mut_slice(), TILE)?;
            hashes.push((TILE_HEIGHT, as_i64(self.size / TILE - 1), tile));
            self.tail.clear();
        }
        Ok(())
    }
}

/// The platform's side of the tree: extends it from committed records and
/// signs checkpoints. One per data directory.
pub struct LogTree {
    store: Store,
    signer: NoteSigner,
    state: Mutex<TreeState>,
    feed: Option<CommittedFeed>,
}

impl std::fmt::Debug for LogTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogTree(..)")
    }
}

impl LogTree {
    /// Load the stored tree and check it against its latest checkpoint:
    /// a tree that does not match what was signed is refused.
    pub fn open(store: &Store, signer: NoteSigner) -> Result<LogTree, AuditError> {
        let verifier = signer.verifier();
        let state = match store.audit_checkpoint_latest_blocking()? {
            None => TreeState {
                size: 0,
                head: GENESIS_HASH.to_owned(),
                range: CompactRange::new(),
                tail: Vec::new(),
            },
            Some(row) => {
                let cp = Checkpoint::open(&row.note, &verifier)?;
                let full = cp.size / TILE;
                let mut range = CompactRange::new();
                for t in read_level(store, TILE_HEIGHT, 0, full)? {
                    range.push_subtree(TILE_HEIGHT, t);
                }
                let tail = read_level(store, 0, full * TILE, cp.size)?;
                for l in &tail {
                    range.push(*l);
                }
                if range.root() != cp.root {
                    return Err(AuditError::TreeMismatch(format!(
                        "the stored tree of {} records does not match its signed checkpoint",
                        cp.size
                    )));
                }
                // An empty tree's head is the genesis hash: a platform stopped before its
                // first non-empty checkpoint has records the tree has yet to take.
                let head = match store.audit_page_blocking(as_i64(cp.size) - 1, 1)?.pop() {
                    _ if cp.size == 0 => GENESIS_HASH.to_owned(),
                    Some(r) if r.seq == as_i64(cp.size) => r.hash,
                    _ => {
                        return Err(AuditError::Truncated {
                            records: store.audit_last_seq_blocking()?,
                            checkpoint: cp.size,
                        })
                    }
                };
                TreeState {
                    size: cp.size,
                    head,
                    range,
                    tail,
                }
            }
        };
        Ok(LogTree {
            store: store.clone(),
            signer,
            state: Mutex::new(state),
            feed: None,
        })
    }

    /// Extend the tree from the rows `feed` hands over (see [`CommittedFeed`]) instead of
    /// reading every record back from the database.
    #[must_use]
    pub fn with_feed(mut self, feed: CommittedFeed) -> LogTree {
        self.feed = Some(feed);
        self
    }

    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// Extend the tree with every record committed since the last
    /// checkpoint and sign its new head; the latest checkpoint unchanged
    /// when there is nothing new. Blocking (database and hashing).
    ///
    /// A record that does not continue the chain is not added, and
    /// nothing is signed: the error names it.
    pub fn checkpoint(&self) -> Result<SignedCheckpoint, AuditError> {
        let mut guard = self.state.lock().map_err(|_| AuditError::WriterStopped)?;
        let mut next = guard.clone();
        let mut hashes: Vec<(u32, i64, Hash)> = Vec::new();
        // The writer's rows, as long as they continue the tree: already chained by this
        // process, so only their place is checked, not their hashes.
        let fed = self
            .feed
            .as_ref()
            .map(CommittedFeed::take)
            .unwrap_or_default();
        let mut continuous = !fed.is_empty();
        // Hashing thousands of records is a background thread's work (the periodic
        // checkpoint): paced so a request's thread never waits for all of it.
        let mut pace = zerofn_store::pace::Pace::new();
        let mut leaf = Vec::with_capacity(1024);
        for r in fed {
            if r.seq <= as_i64(next.size) {
                continue;
            }
            if r.seq != as_i64(next.size) + 1 || r.prev_hash != next.head {
                continuous = false;
                break;
            }
            next.add(&r, true, &mut leaf, &mut hashes)?;
            pace.step();
        }
        // Otherwise (or as well, when the feed had a gap) the database, every link checked.
        if !continuous {
            loop {
                let page = self.store.audit_page_blocking(as_i64(next.size), PAGE)?;
                if page.is_empty() {
                    break;
                }
                for r in page {
                    check_link((as_i64(next.size), &next.head), &r)?;
                    next.add(&r, false, &mut leaf, &mut hashes)?;
                    pace.step();
                }
            }
        }
        if hashes.is_empty() {
            if let Some(latest) = self.latest()? {
                return Ok(latest);
            }
        }
        let cp = Checkpoint {
            origin: self.signer.name().to_owned(),
            size: next.size,
            root: next.range.root(),
        };
        let note = self.signer.sign(&cp.to_text())?;
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        self.store.audit_tree_extend_blocking(
            &hashes,
            &CheckpointRow {
                size: as_i64(cp.size),
                root: cp.root.to_vec(),
                note: note.clone(),
                time,
            },
        )?;
        *guard = next;
        Ok(SignedCheckpoint {
            checkpoint: cp,
            note,
        })
    }

    /// The latest stored checkpoint, verified.
    pub fn latest(&self) -> Result<Option<SignedCheckpoint>, AuditError> {
        latest_checkpoint(&self.store, &self.signer.verifier())
    }

    /// Records committed but not yet in the tree.
    pub fn size(&self) -> u64 {
        self.state.lock().map(|s| s.size).unwrap_or(0)
    }
}

/// The latest signed checkpoint in `store`, verified with `verifier`.
pub fn latest_checkpoint(
    store: &Store,
    verifier: &NoteVerifier,
) -> Result<Option<SignedCheckpoint>, AuditError> {
    let Some(row) = store.audit_checkpoint_latest_blocking()? else {
        return Ok(None);
    };
    let checkpoint = Checkpoint::open(&row.note, verifier)?;
    Ok(Some(SignedCheckpoint {
        checkpoint,
        note: row.note,
    }))
}

/// The checkpoint of `size`, or the latest one when `size` is `None`.
fn checkpoint_for(
    store: &Store,
    verifier: &NoteVerifier,
    size: Option<u64>,
) -> Result<SignedCheckpoint, AuditError> {
    let row = match size {
        Some(s) => store.audit_checkpoint_blocking(as_i64(s))?,
        None => store.audit_checkpoint_latest_blocking()?,
    };
    let row = row.ok_or(AuditError::NoCheckpoint { size })?;
    let checkpoint = Checkpoint::open(&row.note, verifier)?;
    Ok(SignedCheckpoint {
        checkpoint,
        note: row.note,
    })
}

/// The record with `seq`, read back.
fn record(store: &Store, seq: i64) -> Result<AuditRow, AuditError> {
    match store.audit_page_blocking(seq.saturating_sub(1), 1)?.pop() {
        Some(r) if r.seq == seq => Ok(r),
        _ => {
            refuse_pruned(store, seq)?;
            Err(AuditError::NoRecord(seq))
        }
    }
}

/// A [`AuditError::Pruned`] when record `seq` was removed by a pruning.
pub(crate) fn refuse_pruned(store: &Store, seq: i64) -> Result<(), AuditError> {
    match store.audit_prune_boundary_blocking()? {
        Some(b) if seq >= 1 && seq <= b.through => Err(AuditError::Pruned {
            seq,
            through: b.through,
        }),
        _ => Ok(()),
    }
}

/// The inclusion proof of the record `seq` against the checkpoint of
/// `size` (the latest when `None`). The proof is checked against the
/// signed root before it is returned.
pub fn prove_inclusion(
    store: &Store,
    verifier: &NoteVerifier,
    seq: i64,
    size: Option<u64>,
) -> Result<InclusionProof, AuditError> {
    let cp = checkpoint_for(store, verifier, size)?;
    let r = record(store, seq)?;
    let index = u64::try_from(seq - 1).map_err(|_| AuditError::NoRecord(seq))?;
    if index >= cp.checkpoint.size {
        return Err(AuditError::NotCovered {
            seq,
            size: cp.checkpoint.size,
        });
    }
    let leaf = leaf_bytes(&r)?;
    let mut src = StoredHashes::load(store, cp.checkpoint.size)?;
    let proof = merkle::inclusion_proof(&mut src, index, cp.checkpoint.size)?;
    merkle::verify_inclusion(
        &merkle::leaf_hash(&leaf),
        index,
        cp.checkpoint.size,
        &proof,
        &cp.checkpoint.root,
    )
    .map_err(|e| {
        AuditError::TreeMismatch(format!("record {seq} is not in the signed tree: {e}"))
    })?;
    Ok(InclusionProof {
        index,
        tree_size: cp.checkpoint.size,
        leaf: B64.encode(leaf),
        proof: proof.iter().map(|h| B64.encode(h)).collect(),
        checkpoint: cp.note,
    })
}

/// The consistency proof from the tree of `old` records to the one of
/// `new` (a signed checkpoint size; the latest when `None`).
pub fn prove_consistency(
    store: &Store,
    verifier: &NoteVerifier,
    old: u64,
    new: Option<u64>,
) -> Result<ConsistencyProof, AuditError> {
    let cp = checkpoint_for(store, verifier, new)?;
    let new = cp.checkpoint.size;
    if old > new {
        return Err(AuditError::TreeRange {
            what: "old tree size",
            value: old,
            size: new,
        });
    }
    let mut src = StoredHashes::load(store, new)?;
    let old_root = merkle::root(&mut src, old)?;
    let proof = merkle::consistency_proof(&mut src, old, new)?;
    merkle::verify_consistency(old, new, &old_root, &cp.checkpoint.root, &proof).map_err(|e| {
        AuditError::TreeMismatch(format!(
            "the stored tree is not consistent with its checkpoint: {e}"
        ))
    })?;
    Ok(ConsistencyProof {
        old_size: old,
        new_size: new,
        old_root: B64.encode(old_root),
        new_root: B64.encode(cp.checkpoint.root),
        proof: proof.iter().map(|h| B64.encode(h)).collect(),
        checkpoint: cp.note,
    })
}

/// Records `from..=to` (sequence numbers) with their leaf bytes.
pub fn export(store: &Store, from: i64, to: i64) -> Result<Vec<ExportedRecord>, AuditError> {
    refuse_pruned(store, from)?;
    let mut out = Vec::new();
    let mut after = from.saturating_sub(1).max(0);
    while after < to {
        let limit = u32::try_from((to - after).min(i64::from(PAGE))).unwrap_or(PAGE);
        let page = store.audit_page_blocking(after, limit)?;
        if page.is_empty() {
            break;
        }
        for r in page {
            if r.seq > to {
                break;
            }
            after = r.seq;
            let leaf = leaf_bytes(&r)?;
            out.push(ExportedRecord {
                index: u64::try_from(r.seq - 1).unwrap_or(0),
                leaf: B64.encode(leaf),
                record: StoredRecord::from(r),
            });
        }
    }
    Ok(out)
}

/// Each row's chain hash and Merkle leaf hash, computed on every core: the
/// hashing (and the canonical JSON before it) is nearly all of a full
/// verification's work and each row's is independent of the others'; what
/// links rows (sequence, `prev_hash`, the tree) is checked in order after.
fn hash_rows(rows: &[AuditRow]) -> Result<Vec<(String, Hash)>, AuditError> {
    fn one(r: &AuditRow) -> Result<(String, Hash), AuditError> {
        Ok((
            crate::chain::row_hash(r),
            merkle::leaf_hash(&leaf_bytes(r)?),
        ))
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || rows.len() < 64 {
        return rows.iter().map(one).collect();
    }
    let chunk = rows.len().div_ceil(threads);
    let parts: Vec<Result<Vec<(String, Hash)>, AuditError>> = std::thread::scope(|s| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(one).collect()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(AuditError::TreeMismatch(
                        "a verification thread failed".into(),
                    ))
                })
            })
            .collect()
    });
    let mut out = Vec::with_capacity(rows.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// Recompute the whole tree from the records and check it against the
/// latest signed checkpoint: every chain link, every stored leaf hash,
/// the signed root, and that no record was cut from the end. Records after
/// the checkpoint are an error unless `allow_unsigned_tail` (a running
/// platform signs them within its interval).
pub fn verify_log(
    store: &Store,
    verifier: &NoteVerifier,
    allow_unsigned_tail: bool,
) -> Result<LogReport, AuditError> {
    let cp = latest_checkpoint(store, verifier)?.ok_or(AuditError::NoCheckpoint { size: None })?;
    let size = cp.checkpoint.size;
    let stored_leaves = store.audit_tree_len_blocking(0)?;
    let mut range = CompactRange::new();
    let mut walk = ChainWalk::start(store)?;
    if let Some(b) = &walk.boundary {
        // Pruned records: only their leaf hashes remain, and the signed root checks them.
        let through = u64::try_from(b.through).unwrap_or(0);
        if through >= size {
            return Err(AuditError::TreeMismatch(format!(
                "records 1..={through} were pruned, but the latest checkpoint covers only {size} (a pruning never goes past a checkpoint)"
            )));
        }
        let mut at = 0u64;
        while at < through {
            let end = (at + u64::from(PAGE) * 32).min(through);
            let hashes = read_level(store, 0, at, end)?;
            if hashes.len() as u64 != end - at {
                return Err(AuditError::TreeMismatch(format!(
                    "the tree lacks leaf hashes of pruned records {}..={end}",
                    at + 1
                )));
            }
            for h in hashes {
                range.push(h);
            }
            at = end;
        }
    }
    let mut stored: Vec<Hash> = Vec::new();
    let mut stored_from = 0u64;
    loop {
        let page = store.audit_page_blocking(walk.prev.0, PAGE)?;
        if page.is_empty() {
            break;
        }
        // The tree's own leaf hashes for this page, to name a record that
        // was rewritten along with every chain hash after it.
        let first = u64::try_from(walk.prev.0).unwrap_or(0);
        let end = (first + page.len() as u64).min(u64::try_from(stored_leaves).unwrap_or(0));
        if first < end {
            stored = read_level(store, 0, first, end)?;
            stored_from = first;
        } else {
            stored.clear();
        }
        let hashed = hash_rows(&page)?;
        for (r, (chain_hash, h)) in page.into_iter().zip(hashed) {
            walk.step_hashed(&r, &chain_hash)?;
            let index = u64::try_from(r.seq - 1).unwrap_or(0);
            let kept = usize::try_from(index.saturating_sub(stored_from))
                .ok()
                .and_then(|i| stored.get(i));
            if index >= stored_from && kept.is_some_and(|k| k != &h) {
                return Err(AuditError::ChainBroken {
                    seq: r.seq,
                    problem: "it does not match the leaf hash the tree recorded for it (the record was modified after it was checkpointed)".into(),
                });
            }
            if index < size {
                range.push(h);
                if range.size() == size && range.root() != cp.checkpoint.root {
                    return Err(AuditError::TreeMismatch(format!(
                        "records 1..={size} do not hash to the root of the signed checkpoint (a record was modified, inserted or deleted)"
                    )));
                }
            }
        }
    }
    let prev = walk.finish()?;
    let records = u64::try_from(prev.0).unwrap_or(0);
    if records < size {
        return Err(AuditError::Truncated {
            records: prev.0,
            checkpoint: size,
        });
    }
    if size == 0 && range.root() != cp.checkpoint.root {
        return Err(AuditError::TreeMismatch(
            "the empty tree does not match its checkpoint".into(),
        ));
    }
    if records > size && !allow_unsigned_tail {
        return Err(AuditError::Unsigned {
            from: as_i64(size + 1),
            to: prev.0,
        });
    }
    Ok(LogReport {
        records: prev.0,
        head: prev.1,
        checkpoint_size: size,
        root: B64.encode(cp.checkpoint.root),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, AuditLog, AuditRecord, Outcome};
    use proptest::prelude::*;

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("zerofn.local/audit/test", &[5; 32]).unwrap()
    }

    async fn log_with(store: &Store, n: usize) {
        let log = AuditLog::open(store).unwrap();
        for i in 0..n {
            log.append(
                AuditRecord::new("t", Action::Invoke, Outcome::Allow)
                    .invocation_id(format!("inv-{i}"))
                    .detail(serde_json::json!({ "n": i, "s": "é\u{1}" })),
            )
            .await
            .unwrap();
        }
        // Closed, not only dropped: the next log opened on `store` finds the journal free.
        log.close();
    }

    #[test]
    fn leaf_bytes_are_the_canonical_json_of_the_record() {
        let r = AuditRow {
            seq: 3,
            time: "2026-01-01T00:00:00Z".into(),
            actor: "op".into(),
            action: "deploy".into(),
            tenant: Some("acme".into()),
            function: None,
            digest: None,
            decision: "allow".into(),
            reason: None,
            duration_us: Some(5),
            status: None,
            invocation_id: None,
            detail: Some(r#"{"z":1,"a":[true,null]}"#.into()),
            prev_hash: "ab".into(),
            hash: "cd".into(),
        };
        assert_eq!(
            String::from_utf8(leaf_bytes(&r).unwrap()).unwrap(),
            r#"{"action":"deploy","actor":"op","decision":"allow","detail":{"a":[true,null],"z":1},"duration_us":5,"hash":"cd","prev_hash":"ab","seq":3,"tenant":"acme","time":"2026-01-01T00:00:00Z"}"#
        );
        // The same object as `audit tail --json` prints, canonicalized.
        let listed = serde_json::to_value(StoredRecord::from(r.clone())).unwrap();
        assert_eq!(jcs::canonicalize(&listed), leaf_bytes(&r).unwrap());
    }

    fn text() -> impl Strategy<Value = String> {
        // Quotes, backslashes, control characters and non-ASCII, all of which RFC 8785
        // escapes or keeps in its own way.
        proptest::string::string_regex("[a-z\"\\\u{0}-\u{1f}é😀\u{7f}]{0,12}").unwrap()
    }

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e6f64..1e6).prop_map(serde_json::Value::from),
            text().prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(text(), inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    prop_compose! {
        fn row()(
            seq in any::<i64>(),
            strings in proptest::collection::vec(text(), 6),
            optional in proptest::collection::vec(proptest::option::of(text()), 5),
            duration_us in proptest::option::of(any::<i64>()),
            status in proptest::option::of(any::<i64>()),
            detail in proptest::option::of(json()),
        ) -> (AuditRow, Option<serde_json::Value>) {
            let row = AuditRow {
                seq,
                time: strings[0].clone(),
                actor: strings[1].clone(),
                action: strings[2].clone(),
                decision: strings[3].clone(),
                prev_hash: strings[4].clone(),
                hash: strings[5].clone(),
                tenant: optional[0].clone(),
                function: optional[1].clone(),
                digest: optional[2].clone(),
                reason: optional[3].clone(),
                invocation_id: optional[4].clone(),
                duration_us,
                status,
                detail: detail.as_ref().map(ToString::to_string),
            };
            (row, detail)
        }
    }

    proptest! {
        /// The leaf written member by member is the canonical JSON of the object `audit
        /// tail --json` lists for the record, whichever columns are present and whatever
        /// their text; and a detail stored canonical (as the writer stores it) gives the
        /// same leaf taken as it is.
        #[test]
        fn direct_leaf_bytes_match_canonicalizing_the_listed_object((mut r, detail) in row()) {
            let listed = serde_json::to_value(StoredRecord::from(r.clone())).unwrap();
            let leaf = leaf_bytes(&r).unwrap();
            prop_assert_eq!(&jcs::canonicalize(&listed), &leaf);
            r.detail = detail.map(|d| String::from_utf8(jcs::canonicalize(&d)).unwrap());
            let mut written = Vec::new();
            written_leaf_bytes(&r, &mut written).unwrap();
            prop_assert_eq!(written, leaf);
        }
    }

    async fn append_to(log: &AuditLog, from: usize, n: usize) {
        for i in from..from + n {
            log.append(
                AuditRecord::new("t", Action::Invoke, Outcome::Allow)
                    .invocation_id(format!("inv-{i}"))
                    .detail(serde_json::json!({ "n": i })),
            )
            .await
            .unwrap();
        }
    }

    /// A tree fed by the writer signs exactly the roots that full verification recomputes
    /// from the records in the database: across tiles, after records committed before the
    /// tree existed, and when another writer appended records the feed never saw.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fed_tree_signs_the_roots_the_database_gives() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::open(&store).unwrap();
        // Records committed before the tree exists reach it only through the database.
        append_to(&log, 0, 40).await;
        let fed = LogTree::open(&store, signer())
            .unwrap()
            .with_feed(log.committed_feed());
        let mut appended = 40;
        for n in [1, 255, 300, 7] {
            append_to(&log, appended, n).await;
            appended += n;
            let cp = fed.checkpoint().unwrap().checkpoint;
            assert_eq!(cp.size, appended as u64);
            // Recomputed from every record, chain and leaves, against the signed root.
            let report = verify_log(&store, &fed.verifier(), false).unwrap();
            assert_eq!(report.checkpoint_size, appended as u64);
        }
        // The journal admits one writer at a time.
        assert!(matches!(
            AuditLog::open(&store),
            Err(AuditError::Store(zerofn_store::StoreError::JournalInUse(_)))
        ));
        // Another writer after this one closed: rows the feed never had.
        log.close();
        let other = AuditLog::open(&store).unwrap();
        append_to(&other, appended, 20).await;
        appended += 20;
        append_to(&other, appended, 5).await;
        appended += 5;
        let cp = fed.checkpoint().unwrap().checkpoint;
        assert_eq!(cp.size, appended as u64);
        let report = verify_log(&store, &fed.verifier(), false).unwrap();
        assert_eq!(report.records, appended as i64);
    }

    /// A platform killed before its first non-empty checkpoint leaves records past a
    /// signed empty tree: the tree opens (they are not "deleted from its end") and the
    /// next checkpoint takes them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_after_a_signed_empty_tree_are_taken_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let empty = LogTree::open(&store, signer())
            .unwrap()
            .checkpoint()
            .unwrap();
        assert_eq!(empty.checkpoint.size, 0);
        log_with(&store, 30).await;
        let tree = LogTree::open(&store, signer()).unwrap();
        assert_eq!(tree.size(), 0);
        assert_eq!(tree.checkpoint().unwrap().checkpoint.size, 30);
        let report = verify_log(&store, &tree.verifier(), false).unwrap();
        assert_eq!(report.checkpoint_size, 30);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkpoints_extend_the_tree_and_proofs_verify_across_tiles() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        log_with(&store, 300).await;
        let tree = LogTree::open(&store, signer()).unwrap();
        let first = tree.checkpoint().unwrap();
        assert_eq!(first.checkpoint.size, 300);
        // Nothing new: the same checkpoint.
        assert_eq!(tree.checkpoint().unwrap(), first);
        log_with(&store, 260).await;
        let second = tree.checkpoint().unwrap();
        assert_eq!(second.checkpoint.size, 560);
        // Reopening finds the same tree.
        let again = LogTree::open(&store, signer()).unwrap();
        assert_eq!(again.size(), 560);
        let verifier = signer().verifier();
        // The root equals one computed from all leaves.
        let mut leaves: Vec<Hash> = export(&store, 1, 560)
            .unwrap()
            .iter()
            .map(|e| merkle::leaf_hash(&B64.decode(&e.leaf).unwrap()))
            .collect();
        assert_eq!(
            merkle::root(leaves.as_mut_slice(), 560).unwrap(),
            second.checkpoint.root
        );
        for seq in [1, 2, 255, 256, 257, 300, 511, 512, 513, 560] {
            let p = prove_inclusion(&store, &verifier, seq, None).unwrap();
            let proof: Vec<Hash> = p
                .proof
                .iter()
                .map(|h| B64.decode(h).unwrap().try_into().unwrap())
                .collect();
            merkle::verify_inclusion(
                &merkle::leaf_hash(&B64.decode(&p.leaf).unwrap()),
                p.index,
                p.tree_size,
                &proof,
                &second.checkpoint.root,
            )
            .unwrap();
            let old = prove_inclusion(&store, &verifier, seq.min(300), Some(300)).unwrap();
            assert_eq!(old.tree_size, 300);
        }
        for old in [0, 1, 255, 256, 257, 300, 512, 559, 560] {
            let c = prove_consistency(&store, &verifier, old, None).unwrap();
            let proof: Vec<Hash> = c
                .proof
                .iter()
                .map(|h| B64.decode(h).unwrap().try_into().unwrap())
                .collect();
            let old_root: Hash = B64.decode(&c.old_root).unwrap().try_into().unwrap();
            assert_eq!(old_root, merkle::root(leaves.as_mut_slice(), old).unwrap());
            merkle::verify_consistency(old, 560, &old_root, &second.checkpoint.root, &proof)
                .unwrap();
        }
        let report = verify_log(&store, &verifier, false).unwrap();
        assert_eq!((report.records, report.checkpoint_size), (560, 560));
        // A record past the checkpoint is unsigned until the next one.
        log_with(&store, 1).await;
        assert!(matches!(
            verify_log(&store, &verifier, false),
            Err(AuditError::Unsigned { from: 561, to: 561 })
        ));
        assert!(verify_log(&store, &verifier, true).is_ok());
        assert!(matches!(
            prove_inclusion(&store, &verifier, 561, None),
            Err(AuditError::NotCovered { .. })
        ));
        tree.checkpoint().unwrap();
        verify_log(&store, &verifier, false).unwrap();
        // Another key's checkpoints are not this log's.
        let other = NoteSigner::from_seed("zerofn.local/audit/test", &[6; 32]).unwrap();
        assert!(verify_log(&store, &other.verifier(), false).is_err());
    }
}
