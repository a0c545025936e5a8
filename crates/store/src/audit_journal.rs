//! The audit journal: in `disk` durability, the durable record of every acknowledged
//! audit row until the database holds it on disk.
//!
//! Responsible for: making a batch of rows durable with one positioned write and one
//! `fdatasync` of a file whose blocks are already allocated (no metadata to sync, no
//! database pages to write), so that acknowledging a record costs one cache flush;
//! reclaiming the space of rows once the database has them synced; giving those rows
//! back after a crash; and being the lock that makes one process the log's only writer.
//!
//! Trusts: the file system to keep what `fdatasync` returned for. Nothing else in the
//! file: a block whose checksum fails is ignored (a write the crash tore, never
//! acknowledged), and rows that do not continue the database's chain stop recovery with
//! an error instead of being inserted.
//!
//! # Format
//!
//! The file (`audit.journal` beside the database) is a ring of blocks, each starting
//! at a multiple of [`BLOCK`] bytes (the rest of a block's last page is left as it was:
//! no block starts there):
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..4 | magic `ZFAJ` |
//! | 4..8 | payload length, u32 little-endian |
//! | 8..12 | rows in the block, u32 LE |
//! | 12..20 | sequence number of the first row, i64 LE |
//! | 20..24 | CRC-32 (IEEE) of bytes 0..20, bytes 24..32 and the payload |
//! | 24 | flags: bit 0 set when the block was acknowledged before it was synced (`process` durability); other bits zero |
//! | 25..32 | zero |
//! | 32.. | payload: the rows, each as [`encode_row`] writes it |
//!
//! Blocks are written in sequence order from the start of the file, and the file grows
//! from [`GROW`], doubling (zero-filled and synced, so later writes overwrite allocated blocks)
//! up to its maximum; then writing continues at the start, over blocks whose rows the
//! database has synced. Recovery reads every block boundary, keeps the rows whose
//! sequence numbers are above the database's newest, and inserts them if they continue
//! its chain (sequence and previous hash) without a gap. A gap is refused, unless the row
//! after it came from a block acknowledged before it was synced: then a machine failure
//! lost an earlier block, which `process` durability allows, and the log is cut there
//! (the journal is cleared once the rows before the cut are in the database).

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension};

use crate::{AuditRow, StoreError};

/// The journal's file name in the data directory.
pub const JOURNAL_FILE: &str = "audit.journal";
/// Blocks start at multiples of this: a page, so a commit never rewrites a page an
/// earlier commit wrote in the same lap.
pub const BLOCK: u64 = 4096;
const HEADER: usize = 32;
const MAGIC: &[u8; 4] = b"ZFAJ";
/// Header flag: the block's rows were acknowledged before the block was synced.
const FLAG_SYNC_DEFERRED: u8 = 1;
/// Growth step: zero-filled and synced at once, so the sync is paid once per step and
/// not by the commit that first touches a block.
pub const GROW: u64 = 1 << 20;
/// The journal's largest size by default: what the database may fall behind by
/// before appends wait for it (at 25,000 records a second, about 0.7 s; the flusher is
/// asked to sync once a quarter of it is in use).
pub const DEFAULT_MAX_BYTES: u64 = 16 << 20;
/// Largest payload of one block; callers split larger batches ([`AuditJournal::append`]).
pub const MAX_PAYLOAD: usize = 4 << 20;
/// How long an append waits for the database to catch up before it is refused.
const ROOM_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the database's copy of the journaled rows stands: shared by the journal's
/// writer (which waits for room), the indexer (which reports rows committed to the
/// database) and the flusher (which reports them synced).
#[derive(Debug, Default)]
pub struct JournalProgress {
    state: Mutex<ProgressState>,
    changed: Condvar,
}

#[derive(Debug, Default, Clone, Copy)]
struct ProgressState {
    /// Newest row that is durable in the journal (acknowledged).
    journaled: i64,
    /// Newest row committed to the database (visible to its readers).
    indexed: i64,
    /// Newest row the database holds on disk (its space in the journal is free).
    synced: i64,
    /// Someone waits for `synced` to move: the flusher should not wait its interval.
    wanted: bool,
}

impl JournalProgress {
    fn lock(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every mark at `seq`: the rows up to it are already in the database, on disk.
    pub fn start_at(&self, seq: i64) {
        let mut s = self.lock();
        *s = ProgressState {
            journaled: seq,
            indexed: seq,
            synced: seq,
            wanted: false,
        };
        self.changed.notify_all();
    }

    /// Rows up to `seq` are durable in the journal.
    pub fn journaled(&self, seq: i64) {
        self.lock().journaled = seq;
    }

    /// The newest row written to the journal.
    pub fn journaled_seq(&self) -> i64 {
        self.lock().journaled
    }

    /// Rows up to `seq` are committed to the database.
    pub fn indexed(&self, seq: i64) {
        self.lock().indexed = seq;
        self.changed.notify_all();
    }

    /// The newest row committed to the database.
    pub fn indexed_seq(&self) -> i64 {
        self.lock().indexed
    }

    /// Rows up to `seq` are on disk in the database.
    pub fn synced(&self, seq: i64) {
        let mut s = self.lock();
        s.synced = s.synced.max(seq);
        s.wanted = false;
        self.changed.notify_all();
    }

    /// Wait until the database holds every row journaled when this was called, or
    /// `timeout` passes (then the caller reads what the database has).
    pub fn wait_indexed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        let target = s.journaled;
        while s.indexed < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            s = self
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Wait up to `timeout` for a flush to be asked for; true when one was.
    pub fn wait_for_flush_request(&self, timeout: Duration) -> bool {
        let s = self.lock();
        let (s, _) = self
            .changed
            .wait_timeout_while(s, timeout, |s| !s.wanted)
            .unwrap_or_else(PoisonError::into_inner);
        s.wanted
    }

    /// Ask the flusher for a flush now and wait up to `timeout` for `synced` to pass
    /// `seq`; true when it has.
    fn wait_synced(&self, seq: i64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        while s.synced < seq {
            s.wanted = true;
            self.changed.notify_all();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .changed
                .wait_timeout(s, left.min(Duration::from_millis(50)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        true
    }

    fn synced_seq(&self) -> i64 {
        self.lock().synced
    }

    /// Ask the flusher for a flush now (also wakes one that should stop).
    pub fn want_flush(&self) {
        let mut s = self.lock();
        if !s.wanted {
            s.wanted = true;
            self.changed.notify_all();
        }
    }
}

/// Where the next block can go ([`AuditJournal::place`]).
enum Place {
    /// At this offset, now.
    At(u64),
    /// After the file grows.
    Grow,
    /// Once the database has synced the row `oldest` (the oldest block still needed).
    Wait { oldest: i64 },
}

/// A block written but whose rows the database may not have on disk yet.
#[derive(Debug, Clone, Copy)]
struct Live {
    start: u64,
    last_seq: i64,
}

/// The open journal, locked for this writer. Owned by the audit writer thread.
pub struct AuditJournal {
    file: File,
    path: PathBuf,
    len: u64,
    max_len: u64,
    pos: u64,
    live: VecDeque<Live>,
    progress: Arc<JournalProgress>,
    buf: Vec<u8>,
    /// Whether each append is `fdatasync`'d before it returns (`disk` durability), or
    /// left to whoever holds [`AuditJournal::sync_handle`] (`process`).
    sync_each: bool,
}

impl std::fmt::Debug for AuditJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditJournal")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("pos", &self.pos)
            .finish()
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Journal {
        path: path.to_path_buf(),
        source,
    }
}

/// Open (creating) the journal file and take its lock; `Ok(None)` when another open
/// journal holds it.
pub(crate) fn open_locked(path: &Path) -> Result<Option<File>, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(source)) => Err(io(path)(source)),
    }
}

impl AuditJournal {
    /// Take over a locked journal whose rows the database already holds on disk
    /// (after [`recover`]): writing starts at its beginning.
    pub(crate) fn new(
        file: File,
        path: PathBuf,
        max_len: u64,
        progress: Arc<JournalProgress>,
    ) -> Result<AuditJournal, StoreError> {
        let len = file.metadata().map_err(io(&path))?.len();
        // A journal from a larger maximum keeps its size; a partial last block is not used.
        let len = len - len % BLOCK;
        Ok(AuditJournal {
            file,
            path,
            len,
            max_len: max_len.max(GROW).max(len),
            pos: 0,
            live: VecDeque::new(),
            progress,
            buf: Vec::new(),
            sync_each: true,
        })
    }

    /// Grow the file to its maximum now (zero-filled, synced; about 30 ms for 16 MiB on
    /// an idle disk), so appends never wait for a growth; a no-op once it has been done.
    pub fn allocate(&mut self) -> Result<(), StoreError> {
        if self.len < self.max_len {
            self.grow(self.max_len)?;
        }
        Ok(())
    }

    /// Appends return once their block is written, before it is synced: it survives the
    /// process being killed (the kernel has it), not the machine failing, until someone
    /// syncs [`AuditJournal::sync_handle`] (`process` durability). Blocks written so are
    /// marked, so that recovery may cut the log where one of them went missing.
    pub fn sync_later(&mut self) {
        self.sync_each = false;
    }

    /// Another handle on the journal's file, for syncing it from another thread.
    pub fn sync_handle(&self) -> Result<File, StoreError> {
        self.file.try_clone().map_err(io(&self.path))
    }

    /// The marks this journal's writer, indexer and flusher share.
    pub fn progress(&self) -> Arc<JournalProgress> {
        self.progress.clone()
    }

    /// Make `rows` (consecutive, already chained) durable: one block, one write, one
    /// `fdatasync` (none after [`AuditJournal::sync_later`]). Waits (up to 10 s) while the database is too far behind for the
    /// block to fit. The caller keeps a block under [`MAX_PAYLOAD`] and hands the rows
    /// of every earlier call to the database before this one (else this waits for rows
    /// no one will sync). After an error the journal must not be written again: the
    /// block may or may not be on disk.
    pub fn append(&mut self, rows: &[AuditRow]) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(());
        };
        let flags = if self.sync_each {
            0
        } else {
            FLAG_SYNC_DEFERRED
        };
        encode_block(&mut self.buf, first.seq, flags, rows)?;
        // The block's span, to the next page: the rest of its last page is not written
        // (no block can start inside it, so what is there does not matter).
        let size = (self.buf.len() as u64).div_ceil(BLOCK) * BLOCK;
        let at = self.room_for(size)?;
        self.file
            .write_all_at(&self.buf, at)
            .map_err(io(&self.path))?;
        if self.sync_each {
            self.file.sync_data().map_err(io(&self.path))?;
        }
        self.pos = at + size;
        self.live.push_back(Live {
            start: at,
            last_seq: last.seq,
        });
        self.progress.journaled(last.seq);
        // Start syncing the database early, so the ring never has to wait for it.
        if self.live_bytes() > self.max_len / 4 {
            self.progress.want_flush();
        }
        Ok(())
    }

    fn live_bytes(&self) -> u64 {
        match self.live.front() {
            None => 0,
            Some(tail) if tail.start < self.pos => self.pos - tail.start,
            Some(tail) => self.len - tail.start + self.pos,
        }
    }

    /// Whether blocks of `size` bytes in all (page-rounded) can be written one after the
    /// other now, without waiting for the database to free space or growing the file: an
    /// [`AuditJournal::append`] of them then blocks on nothing but its own write (and,
    /// unless deferred, sync). Space only grows until the next append, so a yes holds.
    pub fn fits_now(&mut self, size: u64) -> bool {
        let size = size.div_ceil(BLOCK).saturating_mul(BLOCK);
        size <= self.max_len / 2 && matches!(self.place(size), Place::At(_))
    }

    /// Where a block of `size` bytes goes: after the last one, after growing the file,
    /// or at the start once the blocks there are synced into the database.
    fn room_for(&mut self, size: u64) -> Result<u64, StoreError> {
        if size > self.max_len / 2 {
            return Err(StoreError::JournalBlockTooLarge(size));
        }
        let deadline = Instant::now() + ROOM_TIMEOUT;
        loop {
            match self.place(size) {
                Place::At(at) => return Ok(at),
                Place::Grow => self.grow(self.pos + size)?,
                Place::Wait { oldest } => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || !self.progress.wait_synced(oldest, left) {
                        return Err(StoreError::JournalFull(ROOM_TIMEOUT));
                    }
                }
            }
        }
    }

    /// Where `size` bytes would go now, forgetting the blocks the database has synced.
    fn place(&mut self, size: u64) -> Place {
        let synced = self.progress.synced_seq();
        while self.live.front().is_some_and(|b| b.last_seq <= synced) {
            self.live.pop_front();
        }
        let tail = self.live.front().map(|b| b.start);
        let wrapped = tail.is_some_and(|t| t >= self.pos);
        if wrapped {
            if let Some(t) = tail {
                if self.pos + size <= t {
                    return Place::At(self.pos);
                }
            }
        } else {
            if self.pos + size <= self.len {
                return Place::At(self.pos);
            }
            if self.len < self.max_len {
                return Place::Grow;
            }
            // From the start, up to the oldest unsynced block (or the whole file).
            if size <= tail.unwrap_or(self.len) {
                return Place::At(0);
            }
        }
        Place::Wait {
            oldest: self.live.front().map_or(synced, |b| b.last_seq),
        }
    }

    /// Extend the file to cover `need` bytes, zero-filled and synced with its new size:
    /// to at least [`GROW`], doubling (at most to the maximum). Each growth stalls the
    /// appends behind it for its sync, so a busy log pays five of them, once.
    fn grow(&mut self, need: u64) -> Result<(), StoreError> {
        let target = need
            .div_ceil(GROW)
            .saturating_mul(GROW)
            .max(self.len.saturating_mul(2))
            .min(self.max_len);
        let zeros = vec![0u8; GROW as usize];
        let mut at = self.len;
        while at < target {
            let n = (target - at).min(GROW);
            self.file
                .write_all_at(zeros.get(..n as usize).unwrap_or(&zeros), at)
                .map_err(io(&self.path))?;
            at += n;
        }
        self.file.sync_all().map_err(io(&self.path))?;
        self.len = target;
        Ok(())
    }
}

fn encode_block(
    buf: &mut Vec<u8>,
    first_seq: i64,
    flags: u8,
    rows: &[AuditRow],
) -> Result<(), StoreError> {
    buf.clear();
    buf.extend_from_slice(&[0; HEADER]);
    for row in rows {
        encode_row(buf, row)?;
    }
    let payload = buf.len() - HEADER;
    if payload > MAX_PAYLOAD {
        return Err(StoreError::JournalBlockTooLarge(payload as u64));
    }
    let count = u32::try_from(rows.len()).map_err(|_| StoreError::JournalEncode)?;
    let mut head = [0u8; HEADER];
    head[0..4].copy_from_slice(MAGIC);
    head[4..8].copy_from_slice(&(payload as u32).to_le_bytes());
    head[8..12].copy_from_slice(&count.to_le_bytes());
    head[12..20].copy_from_slice(&first_seq.to_le_bytes());
    head[24] = flags;
    let (header, payload) = buf
        .split_at_mut_checked(HEADER)
        .ok_or(StoreError::JournalEncode)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head[0..20]);
    crc.update(&head[24..HEADER]);
    crc.update(payload);
    head[20..24].copy_from_slice(&crc.finalize().to_le_bytes());
    header.copy_from_slice(&head);
    Ok(())
}

/// Marks an absent optional text or number.
const ABSENT: u32 = u32::MAX;

/// A row's columns in table order, without escaping (a JSON encoding of the detail, a
/// JSON text itself, cost more than the rest of the append): `seq` as i64 LE; each
/// text as a u32 LE length and its UTF-8 bytes, [`ABSENT`] for a missing optional one;
/// each optional number as a u8 (0 absent, 1 present) and an i64 LE.
fn encode_row(buf: &mut Vec<u8>, r: &AuditRow) -> Result<(), StoreError> {
    fn text(buf: &mut Vec<u8>, t: Option<&str>) -> Result<(), StoreError> {
        match t {
            None => buf.extend_from_slice(&ABSENT.to_le_bytes()),
            Some(t) => {
                let len = u32::try_from(t.len())
                    .ok()
                    .filter(|l| *l != ABSENT)
                    .ok_or(StoreError::JournalEncode)?;
                buf.extend_from_slice(&len.to_le_bytes());
                buf.extend_from_slice(t.as_bytes());
            }
        }
        Ok(())
    }
    fn number(buf: &mut Vec<u8>, n: Option<i64>) {
        match n {
            None => buf.push(0),
            Some(n) => {
                buf.push(1);
                buf.extend_from_slice(&n.to_le_bytes());
            }
        }
    }
    buf.extend_from_slice(&r.seq.to_le_bytes());
    text(buf, Some(&r.time))?;
    text(buf, Some(&r.actor))?;
    text(buf, Some(&r.action))?;
    text(buf, r.tenant.as_deref())?;
    text(buf, r.function.as_deref())?;
    text(buf, r.digest.as_deref())?;
    text(buf, Some(&r.decision))?;
    text(buf, r.reason.as_deref())?;
    number(buf, r.duration_us);
    number(buf, r.status);
    text(buf, r.invocation_id.as_deref())?;
    text(buf, r.detail.as_deref())?;
    text(buf, Some(&r.prev_hash))?;
    text(buf, Some(&r.hash))?;
    Ok(())
}

/// Reads what [`encode_row`] wrote; `None` on anything short, malformed or not UTF-8.
struct RowReader<'a> {
    rest: &'a [u8],
}

impl<'a> RowReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        Some(head)
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn optional_text(&mut self) -> Option<Option<String>> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        if len == ABSENT {
            return Some(None);
        }
        let bytes = self.take(usize::try_from(len).ok()?)?;
        Some(Some(std::str::from_utf8(bytes).ok()?.to_owned()))
    }

    fn text(&mut self) -> Option<String> {
        self.optional_text()?
    }

    fn optional_number(&mut self) -> Option<Option<i64>> {
        match self.take(1)? {
            [0] => Some(None),
            [1] => Some(Some(self.i64()?)),
            _ => None,
        }
    }

    fn row(&mut self) -> Option<AuditRow> {
        Some(AuditRow {
            seq: self.i64()?,
            time: self.text()?,
            actor: self.text()?,
            action: self.text()?,
            tenant: self.optional_text()?,
            function: self.optional_text()?,
            digest: self.optional_text()?,
            decision: self.text()?,
            reason: self.optional_text()?,
            duration_us: self.optional_number()?,
            status: self.optional_number()?,
            invocation_id: self.optional_text()?,
            detail: self.optional_text()?,
            prev_hash: self.text()?,
            hash: self.text()?,
        })
    }
}

/// The rows of the block at the start of `bytes`, if one is there and checks out.
/// A block's rows, and whether they were acknowledged before the block was synced.
#[derive(Debug, PartialEq)]
struct Block {
    rows: Vec<AuditRow>,
    sync_deferred: bool,
}

fn decode_block(bytes: &[u8]) -> Option<Block> {
    let head = bytes.get(..HEADER)?;
    if head.get(0..4)? != MAGIC {
        return None;
    }
    let u32_at = |r: std::ops::Range<usize>| -> Option<u32> {
        Some(u32::from_le_bytes(head.get(r)?.try_into().ok()?))
    };
    let payload_len = usize::try_from(u32_at(4..8)?).ok()?;
    let count = usize::try_from(u32_at(8..12)?).ok()?;
    let first_seq = i64::from_le_bytes(head.get(12..20)?.try_into().ok()?);
    let crc = u32_at(20..24)?;
    let flags = *head.get(24)?;
    if flags & !FLAG_SYNC_DEFERRED != 0 || head.get(25..HEADER)?.iter().any(|b| *b != 0) {
        return None;
    }
    let payload = bytes.get(HEADER..HEADER.checked_add(payload_len)?)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(head.get(0..20)?);
    hasher.update(head.get(24..HEADER)?);
    hasher.update(payload);
    if hasher.finalize() != crc {
        return None;
    }
    let mut reader = RowReader { rest: payload };
    // Each row takes at least 8 + 6 * 4 + 6 * 4 + 2 bytes: a count beyond that is a lie,
    // refused before anything is allocated for it.
    if count > payload.len() / 58 {
        return None;
    }
    let mut rows = Vec::with_capacity(count);
    // Checked: a block whose numbers would run past `i64::MAX` is refused, not wrapped
    // (or, with overflow checks, a panic).
    let mut next = Some(first_seq);
    for _ in 0..count {
        let seq = next?;
        let row = reader.row()?;
        if row.seq != seq {
            return None;
        }
        rows.push(row);
        next = seq.checked_add(1);
    }
    reader.rest.is_empty().then_some(Block {
        rows,
        sync_deferred: flags & FLAG_SYNC_DEFERRED != 0,
    })
}

impl AuditJournal {
    /// Every row in the valid blocks of journal bytes `bytes` (the whole file, as
    /// recovery reads it) with a sequence number above `after`, in sequence order. For
    /// tools and fuzzing: the bytes are untrusted.
    pub fn rows_in(bytes: &[u8], after: i64) -> Vec<AuditRow> {
        rows_after(bytes, after)
    }
}

/// Every row in the journal's valid blocks with a sequence number above `after`,
/// in sequence order.
fn rows_after(bytes: &[u8], after: i64) -> Vec<AuditRow> {
    found_after(bytes, after)
        .into_iter()
        .map(|(row, _)| row)
        .collect()
}

/// The rows above `after` in every valid block, in sequence order, each with whether its
/// block was acknowledged before it was synced.
fn found_after(bytes: &[u8], after: i64) -> Vec<(AuditRow, bool)> {
    let mut rows: Vec<(AuditRow, bool)> = (0..bytes.len())
        .step_by(BLOCK as usize)
        .filter_map(|at| bytes.get(at..))
        .filter_map(decode_block)
        .flat_map(|block| {
            let deferred = block.sync_deferred;
            block.rows.into_iter().map(move |row| (row, deferred))
        })
        .filter(|(row, _)| row.seq > after)
        .collect();
    rows.sort_by_key(|(row, _)| row.seq);
    // The same block found twice (never written so, but harmless); a row that differs
    // from another of its number stays, and recovery refuses the pair as a gap.
    rows.dedup();
    rows
}

/// Insert into the database the journal's rows it does not hold, and sync it: after
/// `Ok`, the journal holds nothing the database does not have on disk. Fails, changing
/// nothing, when those rows do not continue the database's chain.
pub(crate) fn recover(conn: &mut Connection, file: &File, path: &Path) -> Result<i64, StoreError> {
    let head: Option<(i64, String)> = conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (mut seq, mut hash) = head.unwrap_or((0, crate::AUDIT_GENESIS_HASH.to_owned()));
    let len = file.metadata().map_err(io(path))?.len();
    if len == 0 {
        return Ok(seq);
    }
    let mut bytes = vec![0u8; usize::try_from(len).map_err(|_| StoreError::JournalEncode)?];
    file.read_exact_at(&mut bytes, 0).map_err(io(path))?;
    let mut rows = Vec::new();
    let mut cut = None;
    for (row, sync_deferred) in found_after(&bytes, seq) {
        if row.seq != seq.saturating_add(1) || row.prev_hash != hash {
            if !sync_deferred {
                return Err(StoreError::JournalGap {
                    path: path.to_path_buf(),
                    database: seq,
                    journal: row.seq,
                });
            }
            // Acknowledged unsynced (`process` durability) and the block before it lost:
            // the machine failed within a flush interval, which that mode allows. What
            // follows cannot be chained; the log ends here.
            cut = Some(row.seq);
            break;
        }
        seq = row.seq;
        hash.clone_from(&row.hash);
        rows.push(row);
    }
    if !rows.is_empty() {
        // FULL on this connection: the commit syncs the WAL before the journal's
        // blocks may be overwritten.
        let tx = crate::write_tx(conn)?;
        crate::audit_rows::insert_rows(&tx, &rows, || {})?;
        tx.commit()?;
    }
    if let Some(lost_from) = cut {
        tracing::warn!(
            journal = %path.display(),
            kept_through = seq,
            lost_from,
            "audit records acknowledged without a sync were lost (the machine failed within a flush interval); the log ends at the last record it holds in order"
        );
        // The rows past the cut would collide with the next writer's numbers.
        file.set_len(0).map_err(io(path))?;
        file.sync_all().map_err(io(path))?;
    }
    Ok(seq)
}

impl crate::Store {
    /// Rows of the audit journal the database does not hold yet (a writer that stopped
    /// abnormally and has not been restarted), continuing its newest row without a gap,
    /// oldest first. Reads only: works on a read-only store and beside a running writer.
    pub fn audit_journal_pending_blocking(&self) -> Result<Vec<AuditRow>, StoreError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let path = dir.join(JOURNAL_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Journal { path, source }),
        };
        let head = self.audit_last_seq_blocking()?;
        let mut rows = rows_after(&bytes, head);
        // Checked, not a range from `head + 1`: a range yielding `i64::MAX` overflows
        // computing the number after it.
        let mut next = head.checked_add(1);
        let contiguous = rows
            .iter()
            .take_while(|row| {
                let continues = next == Some(row.seq);
                next = next.and_then(|seq| seq.checked_add(1));
                continues
            })
            .count();
        rows.truncate(contiguous);
        Ok(rows)
    }
}

/// Recover and release the journal in `data_dir`, if there is one and no process
/// holds it (one that does recovers it itself when it opens).
pub(crate) fn recover_if_unlocked(
    conn: &mut Connection,
    data_dir: &Path,
) -> Result<(), StoreError> {
    let path = data_dir.join(JOURNAL_FILE);
    if !path.exists() {
        return Ok(());
    }
    if let Some(file) = open_locked(&path)? {
        recover(conn, &file, &path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, prev: &str) -> AuditRow {
        AuditRow {
            seq,
            time: "2026-12-05T00:00:00Z".into(),
            actor: "test".into(),
            action: "invoke".into(),
            tenant: Some("acme".into()),
            function: None,
            digest: None,
            decision: "allow".into(),
            reason: None,
            duration_us: Some(7),
            status: Some(200),
            invocation_id: Some(format!("inv-{seq}")),
            detail: None,
            prev_hash: prev.into(),
            hash: format!("h{seq}"),
        }
    }

    fn chain(from: i64, n: i64) -> Vec<AuditRow> {
        (from..from + n)
            .map(|s| {
                let prev = if s == 1 {
                    crate::AUDIT_GENESIS_HASH.to_owned()
                } else {
                    format!("h{}", s - 1)
                };
                row(s, &prev)
            })
            .collect()
    }

    #[test]
    fn a_block_round_trips_and_any_flipped_byte_is_rejected() {
        let mut rows = chain(1, 3);
        // Every optional column present, text that JSON would escape, and non-ASCII.
        rows[1].function = Some("hello".into());
        rows[1].digest = Some("sha256:00".into());
        rows[1].reason = Some("quote \" and é".into());
        rows[1].detail = Some(r#"{"decisions":[{"policy":"p\n1"}]}"#.into());
        rows[2].duration_us = None;
        rows[2].status = None;
        rows[2].invocation_id = None;
        let mut buf = Vec::new();
        encode_block(&mut buf, 1, 0, &rows).unwrap();
        assert_eq!(decode_block(&buf).unwrap().rows, rows);
        let payload_end = HEADER + u32::from_le_bytes(buf[4..8].try_into().unwrap()) as usize;
        for i in 0..payload_end {
            let mut bad = buf.clone();
            bad[i] ^= 0x01;
            assert!(decode_block(&bad).is_none(), "flipped byte {i} accepted");
        }
        // A torn write: the block cut short.
        assert!(decode_block(&buf[..payload_end - 1]).is_none());
    }

    /// A block (valid checksum: tampered with, not torn) whose rows would run past the
    /// largest sequence number is refused, not a panic or a wrapped number (found by
    /// reading the fuzz target `audit_journal`'s code path: its runs build without
    /// overflow checks, the tests with them).
    #[test]
    fn a_block_whose_numbers_would_pass_the_largest_is_refused() {
        let mut buf = Vec::new();
        let last = row(i64::MAX, "h");
        encode_block(&mut buf, i64::MAX, 0, std::slice::from_ref(&last)).unwrap();
        assert_eq!(decode_block(&buf).unwrap().rows, vec![last.clone()]);
        let mut wrapped = row(i64::MIN, "h");
        wrapped.hash = "w".into();
        encode_block(&mut buf, i64::MAX, 0, &[last, wrapped]).unwrap();
        assert!(decode_block(&buf).is_none());
        assert!(rows_after(&buf, 0).is_empty());
    }

    fn journal(dir: &Path, max: u64) -> (AuditJournal, Arc<JournalProgress>) {
        let path = dir.join(JOURNAL_FILE);
        let file = open_locked(&path).unwrap().unwrap();
        let progress = Arc::new(JournalProgress::default());
        (
            AuditJournal::new(file, path, max, progress.clone()).unwrap(),
            progress,
        )
    }

    #[test]
    fn a_second_opener_is_refused_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let (_held, _) = journal(dir.path(), GROW);
        assert!(open_locked(&dir.path().join(JOURNAL_FILE))
            .unwrap()
            .is_none());
    }

    /// The file grows from one step, doubling, never past its maximum; `allocate` takes it
    /// to the maximum at once, zero-filled, and the blocks written before still read back.
    #[test]
    fn the_file_doubles_as_it_fills_and_allocate_takes_it_to_the_maximum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let (mut j, _) = journal(dir.path(), 8 * GROW);
        j.append(&chain(1, 10)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), GROW);
        j.grow(GROW + 1).unwrap();
        assert_eq!(j.len, 2 * GROW, "a growth just past the end doubles");
        j.grow(5 * GROW).unwrap();
        assert_eq!(j.len, 5 * GROW, "a larger need is met whole");
        j.grow(9 * GROW).unwrap();
        assert_eq!(j.len, 8 * GROW, "capped at the maximum");
        let other = tempfile::tempdir().unwrap();
        let (mut k, _) = journal(other.path(), 4 * GROW);
        k.append(&chain(1, 10)).unwrap();
        k.allocate().unwrap();
        assert_eq!(k.len, 4 * GROW);
        let bytes = std::fs::read(&k.path).unwrap();
        assert_eq!(bytes.len() as u64, 4 * GROW);
        assert!(bytes[BLOCK as usize..].iter().all(|b| *b == 0));
        assert_eq!(rows_after(&bytes, 0).len(), 10);
        k.allocate().unwrap();
        assert_eq!(k.len, 4 * GROW, "a second allocate changes nothing");
    }

    /// Writing wraps to the start only over blocks the database has synced, and what the
    /// file holds after many laps gives back exactly the rows not yet synced.
    #[test]
    fn the_ring_reuses_only_synced_space_and_recovery_finds_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, progress) = journal(dir.path(), GROW);
        let per_block = 40; // several pages a block
        let mut next = 1;
        for _ in 0..400 {
            j.append(&chain(next, per_block)).unwrap();
            next += per_block;
            // The database keeps up to 10 blocks behind.
            progress.synced((next - 1 - 10 * per_block).max(0));
        }
        assert_eq!(j.len, GROW, "grew past its maximum");
        let bytes = std::fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
        let synced = progress.synced_seq();
        let back = rows_after(&bytes, synced);
        let expected: Vec<i64> = (synced + 1..next).collect();
        assert_eq!(back.iter().map(|r| r.seq).collect::<Vec<_>>(), expected);
    }

    /// A full ring asks for a sync and waits for it rather than overwrite a block the
    /// database may not have; with no sync coming, the append is refused.
    #[test]
    fn a_full_ring_waits_for_a_sync_and_never_overwrites_an_unsynced_block() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, progress) = journal(dir.path(), GROW);
        let mut buf = Vec::new();
        encode_block(&mut buf, 1, 0, &chain(1, 40)).unwrap();
        let block = (buf.len() as u64).div_ceil(BLOCK) * BLOCK;
        let fit = GROW / block;
        let mut next = 1;
        for _ in 0..fit {
            j.append(&chain(next, 40)).unwrap();
            next += 40;
        }
        // The flusher is asked for a sync; it covers the first half of the blocks.
        let helper = progress.clone();
        let half = fit / 2;
        let waiter = std::thread::spawn(move || {
            assert!(helper.wait_for_flush_request(Duration::from_secs(5)));
            helper.synced(40 * half as i64);
        });
        j.append(&chain(next, 40)).unwrap();
        next += 40;
        waiter.join().unwrap();
        assert_eq!(j.live.front().unwrap().start, half * block);
        assert_eq!(j.pos, block, "written at the start, over a synced block");
        // Everything after the synced half comes back from the file, in order.
        let bytes = std::fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
        let back: Vec<i64> = rows_after(&bytes, 40 * half as i64)
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(back, (40 * half as i64 + 1..next).collect::<Vec<_>>());
    }

    /// `fits_now` is yes exactly when an append would neither grow the file nor wait for
    /// the database: what lets the `process` writer write on an async worker.
    #[test]
    fn fits_now_is_yes_only_when_an_append_would_neither_grow_nor_wait() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, progress) = journal(dir.path(), 2 * GROW);
        j.sync_later();
        assert!(!j.fits_now(1), "an empty file has to grow first");
        j.append(&chain(1, 1)).unwrap();
        assert_eq!(j.len, GROW);
        assert!(j.fits_now(1));
        assert!(j.fits_now(GROW - BLOCK));
        assert!(!j.fits_now(GROW), "past the end: the file would grow");
        assert!(!j.fits_now(GROW + 1), "over half the maximum never fits");
        j.allocate().unwrap();
        // One page a block, none synced: fill the file to its end.
        let mut next = 2;
        while j.fits_now(BLOCK) {
            j.append(&chain(next, 1)).unwrap();
            next += 1;
        }
        assert_eq!(j.pos, j.len);
        assert_eq!(next - 1, (2 * GROW / BLOCK) as i64);
        // The database syncs the first block: one page at the start is free.
        progress.synced(1);
        assert!(j.fits_now(BLOCK));
        assert!(!j.fits_now(2 * BLOCK));
        j.append(&chain(next, 1)).unwrap();
        assert_eq!(j.pos, BLOCK, "written at the start, without waiting");
        assert!(!j.fits_now(1));
    }

    /// `process` durability: blocks acknowledged before their sync. A machine failure
    /// that lost one of them (here: zeroed, as a block never written back reads) while a
    /// later one reached the disk cuts the log before the lost block, and the journal is
    /// cleared so the next writer's numbers cannot meet the rows past the cut. The same
    /// loss among synced blocks is refused as a gap (the test below).
    #[test]
    fn a_lost_unsynced_block_cuts_the_log_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let (mut j, _) = journal(dir.path(), GROW);
        j.sync_later();
        for first in [1, 6, 11] {
            j.append(&chain(first, 5)).unwrap();
        }
        let second = j.live.get(1).unwrap().start;
        drop(j);
        let path = dir.path().join(JOURNAL_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[second as usize..(second + BLOCK) as usize].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        store
            .with_conn_blocking(|conn| {
                let file = open_locked(&path).unwrap().unwrap();
                assert_eq!(recover(conn, &file, &path).unwrap(), 5);
                Ok(())
            })
            .unwrap();
        assert_eq!(store.audit_last_seq_blocking().unwrap(), 5);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            0,
            "journal cleared"
        );
        // A later writer continues at 6 with rows of its own; recovery takes them.
        let (mut j, _) = journal(dir.path(), GROW);
        let mut next = chain(1, 10).split_off(5);
        for row in &mut next {
            row.detail = Some("after the cut".into());
        }
        j.append(&next).unwrap();
        drop(j);
        store
            .with_conn_blocking(|conn| {
                let file = open_locked(&path).unwrap().unwrap();
                assert_eq!(recover(conn, &file, &path).unwrap(), 10);
                Ok(())
            })
            .unwrap();
    }

    /// The pending rows after a database whose newest row is one below the largest
    /// sequence number: the journal's row numbered `i64::MAX` continues it and is
    /// pending (not an overflow computing the number after it).
    #[test]
    fn pending_rows_up_to_the_largest_number_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        store
            .with_conn_blocking(|conn| {
                let tx = conn.transaction()?;
                crate::audit_rows::insert_rows(&tx, &[row(i64::MAX - 1, "g")], || {})?;
                tx.commit()?;
                Ok(())
            })
            .unwrap();
        let last = row(i64::MAX, &format!("h{}", i64::MAX - 1));
        let (mut j, _) = journal(dir.path(), GROW);
        j.append(std::slice::from_ref(&last)).unwrap();
        drop(j);
        assert_eq!(store.audit_journal_pending_blocking().unwrap(), vec![last]);
    }

    #[test]
    fn recovery_inserts_the_missing_rows_and_refuses_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let (mut j, _) = journal(dir.path(), GROW);
        j.append(&chain(1, 5)).unwrap();
        j.append(&chain(6, 5)).unwrap();
        drop(j);
        store
            .with_conn_blocking(|conn| {
                let path = dir.path().join(JOURNAL_FILE);
                let file = open_locked(&path).unwrap().unwrap();
                assert_eq!(recover(conn, &file, &path).unwrap(), 10);
                // Again: nothing left to insert.
                assert_eq!(recover(conn, &file, &path).unwrap(), 10);
                Ok(())
            })
            .unwrap();
        assert_eq!(store.audit_last_seq_blocking().unwrap(), 10);

        // Rows that skip one the database does not have: refused, nothing inserted.
        let (mut j, _) = journal(dir.path(), GROW);
        j.append(&chain(12, 3)).unwrap();
        drop(j);
        let err = store
            .with_conn_blocking(|conn| {
                let path = dir.path().join(JOURNAL_FILE);
                let file = open_locked(&path).unwrap().unwrap();
                recover(conn, &file, &path)
            })
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::JournalGap {
                    database: 10,
                    journal: 12,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(store.audit_last_seq_blocking().unwrap(), 10);
    }
}
