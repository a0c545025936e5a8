//! The single writer: sequence numbers, hashes and group commit.

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

use time::format_description::well_known::Rfc3339;
use tokio::sync::{mpsc, oneshot};
use zerofn_store::{
    AuditDurability, AuditFlusher, AuditJournal, AuditRow, AuditWriter, JournalProgress, Store,
};

use crate::chain::{row_hash, GENESIS_HASH};
use crate::{AuditError, AuditRecord, StoredRecord};

/// Records waiting for the writer; appenders wait (backpressure) beyond it.
const QUEUE: usize = 16 * 1024;
/// Most records committed in one transaction.
const MAX_BATCH: usize = 4096;
/// How often the database is synced (and its WAL checkpointed) in `disk` mode, where the
/// journal already holds every acknowledged record; sooner when the journal fills.
const DISK_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);
/// Largest batch (journal bytes, [`journal_bound`]) the `process` writer writes on an
/// async worker; a larger one (records with large details, many at once) is copied on
/// the blocking pool, so a worker is never held for more than a short `pwrite`.
const ON_WORKER_BYTES: u64 = 1 << 20;
/// Rows per journal block, about, in bytes ([`row_bytes`]): a block stays well under the
/// journal's [`zerofn_store::AUDIT_JOURNAL_MAX_PAYLOAD`] even with every detail escaped.
const BLOCK_BUDGET: usize = 1 << 20;
/// Least time between the indexer's commits (see [`run_indexer`]); also about how long an
/// audit read may wait for a record acknowledged just before it.
const INDEX_INTERVAL: Duration = Duration::from_millis(10);
/// While the database refuses journaled rows, the indexer retries (every second at
/// most) and logs every this many tries.
const INDEX_LOG_EVERY: u32 = 30;
/// How long an audit read (or the tree) waits for acknowledged rows to reach the database.
const CATCH_UP: Duration = Duration::from_secs(5);

/// Most committed rows, and bytes of them, the feed holds for the tree; beyond either, it
/// lets go of them and the tree reads the database instead (as after a restart). A row
/// can hold up to [`crate::MAX_DETAIL`] of detail, so the count alone would let a stuck
/// tree make the host hold gigabytes.
const FEED_MAX: usize = 64 * 1024;
const FEED_MAX_BYTES: usize = 64 << 20;

/// The rows the writer committed, in commit order, for [`crate::LogTree`] to extend the
/// tree from without reading them back from the database and recomputing their chain
/// hashes: this process wrote them, so they are what the database holds (a row edited in
/// the database afterwards is still caught by `audit verify`, which reads every row). The
/// tree reads the database whenever the feed does not continue where it stands: after a
/// restart, after the feed let go of rows, or when another process appended.
#[derive(Clone, Default)]
pub struct CommittedFeed {
    rows: Arc<Mutex<FeedState>>,
    /// In `disk` mode rows reach the feed after the journal acknowledged them: `take`
    /// first waits for those acknowledged before it was called.
    progress: Option<Arc<JournalProgress>>,
}

#[derive(Default)]
struct FeedState {
    rows: Vec<AuditRow>,
    /// What `rows` hold, about: their text and a fixed overhead each.
    bytes: usize,
}

/// About what a row makes the host hold.
fn row_bytes(r: &AuditRow) -> usize {
    let text = |t: &Option<String>| t.as_ref().map_or(0, String::len);
    256 + r.time.len()
        + r.actor.len()
        + r.action.len()
        + r.decision.len()
        + r.prev_hash.len()
        + r.hash.len()
        + text(&r.tenant)
        + text(&r.function)
        + text(&r.digest)
        + text(&r.reason)
        + text(&r.invocation_id)
        + text(&r.detail)
}

impl std::fmt::Debug for CommittedFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CommittedFeed(..)")
    }
}

impl CommittedFeed {
    /// Hand over a committed batch (leaves `rows` empty).
    fn push(&self, rows: &mut Vec<AuditRow>) {
        let mut held = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = held
            .bytes
            .saturating_add(rows.iter().map(row_bytes).sum::<usize>());
        if held.rows.len().saturating_add(rows.len()) > FEED_MAX || bytes > FEED_MAX_BYTES {
            // No one is taking them (no tree, or it is stuck): bound what the host holds.
            *held = FeedState::default();
            rows.clear();
            return;
        }
        held.rows.append(rows);
        held.bytes = bytes;
    }

    /// Every row handed over since the last take, oldest first.
    pub(crate) fn take(&self) -> Vec<AuditRow> {
        if let Some(progress) = &self.progress {
            progress.wait_indexed(CATCH_UP);
        }
        std::mem::take(&mut *self.rows.lock().unwrap_or_else(PoisonError::into_inner)).rows
    }
}

struct Job {
    record: AuditRecord,
    ack: oneshot::Sender<Result<i64, ()>>,
}

/// Where a job's answer goes, and the answer: its sequence number, or refused.
type Answer = (oneshot::Sender<Result<i64, ()>>, Result<i64, ()>);

/// Told of every record the log is given and of every batch it commits: the platform's
/// metrics. Every decision passes the audit log (audit before effect), so counting here
/// sees every invocation, refusal and admission without a hook in each path.
///
/// Called on the appender's task and by the writer: implementations must be cheap
/// and must not block (atomic counters, not I/O).
pub trait AuditObserver: Send + Sync + 'static {
    /// `record` was given to the log, standing for `count` events (more than one for a
    /// refusal the [`crate::RefusalAggregator`] counted instead of appending).
    fn record(&self, record: &AuditRecord, count: u64);
    /// An append was acknowledged (`ok`) or refused `took` after it was asked for.
    fn appended(&self, took: Duration, ok: bool);
    /// The writer committed `records` in one transaction.
    fn committed(&self, records: usize);
}

/// A record queued by [`AuditLog::append_queued`]; dropping it changes nothing.
#[must_use = "await `durable` to learn whether the record was committed, or drop it"]
pub struct QueuedAppend(oneshot::Receiver<Result<i64, ()>>);

impl QueuedAppend {
    /// The record's sequence number once it is committed, or why it is not in the log.
    pub async fn durable(self) -> Result<i64, AuditError> {
        match self.0.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(())) => Err(AuditError::AppendFailed),
            Err(_) => Err(AuditError::WriterStopped),
        }
    }
}

/// Handle to the audit log. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    jobs: mpsc::Sender<Job>,
    store: Store,
    feed: CommittedFeed,
    observer: Option<Arc<dyn AuditObserver>>,
    /// The writer, waited for by [`AuditLog::close`] on the last handle.
    writer: Arc<Mutex<Option<WriterHandle>>>,
    /// `disk` mode on a multi-threaded runtime: the writer's state, which an appender
    /// that finds it idle uses itself ([`SharedWriter::try_write`]).
    shared: Option<Arc<SharedWriter>>,
}

/// The journal writer of `disk` mode on a multi-threaded runtime, shared by its thread
/// and the appenders.
///
/// An appender that finds the writer idle (no one writing, nothing queued) writes and
/// syncs its own record on its own worker: at one connection a record would otherwise
/// cross to the writer thread and its acknowledgement back, two wake-ups across cores
/// around the flush that cost more than the flush's own spread (BENCHMARKS.md, "The
/// durable record on the request's own worker"). Under load the thread commits records
/// in groups as before: once an appender's own write has kept another waiting, appenders
/// leave writing to the thread until it has taken [`UNCONTENDED`] batches of one record
/// in a row (load gone), since a worker held through each flush in turn serves fewer
/// requests than one thread committing them all in groups. The worker is held
/// for one `pwrite` and one `fdatasync` of space the journal already has (a batch that
/// would wait for room or grow the file goes to the thread); the thread blocks on the
/// lock, a worker never does (`try_lock`).
struct SharedWriter {
    /// `None` once the thread has ended (it drops the writer, which hands its rows to
    /// the database and releases the journal).
    slot: Mutex<Option<Slot>>,
    /// Jobs sent to the thread and not yet written. An appender writes itself only when
    /// it is zero, so a record is never written ahead of one queued before it (a queued
    /// append followed by an awaited one keeps its order).
    queued: AtomicUsize,
    /// Set when an appender's own write kept another waiting: under load, appenders
    /// leave writing to the thread. Cleared by the thread once load is gone.
    contended: AtomicBool,
}

/// Batches of one record in a row after which the thread lets appenders write
/// themselves again.
const UNCONTENDED: u32 = 8;

struct Slot {
    writer: JournalWriter,
    /// The one-job batch of an appender's own write, reused.
    own: Vec<Job>,
}

impl SharedWriter {
    /// Write and sync `job` here if the writer is idle and the record fits the journal as
    /// it is (answering it); otherwise hand it back, untouched, for the thread.
    fn try_write(&self, job: Job) -> Option<Job> {
        if self.contended.load(Ordering::Relaxed) {
            return Some(job);
        }
        let Ok(mut slot) = self.slot.try_lock() else {
            // Held by the thread or another appender (or poisoned: the thread sees that
            // too and stops, failing every later append).
            return Some(job);
        };
        let Some(Slot { writer, own }) = slot.as_mut() else {
            return Some(job);
        };
        if self.queued.load(Ordering::SeqCst) != 0 {
            return Some(job);
        }
        own.push(job);
        if writer.write(own, false) {
            if self.queued.load(Ordering::SeqCst) != 0 {
                // Others queued while this one was being synced.
                self.contended.store(true, Ordering::Relaxed);
            }
            return None;
        }
        // Left untouched: it goes to the thread. (Never empty here; if it were, the job
        // is gone and its appender is told the writer stopped: refused.)
        own.pop()
    }
}

/// Where the journal writer runs.
enum WriterHandle {
    /// A thread of its own (`disk` durability, shared with idle appenders on a
    /// multi-threaded runtime; either mode without one).
    Thread(thread::JoinHandle<()>),
    /// A task on the runtime's workers (`process` durability); the channel closes once
    /// it has finished.
    Task(std::sync::mpsc::Receiver<()>),
}

/// Whether the caller runs inside a multi-threaded Tokio runtime (where a task may block
/// in place).
fn on_multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog(..)")
    }
}

impl AuditLog {
    /// Start the writer, continuing the chain already in `store`,
    /// with every append synced to disk before it is acknowledged.
    pub fn open(store: &Store) -> Result<AuditLog, AuditError> {
        Self::open_with(store, AuditDurability::Disk)
    }

    /// Start the writer with the given durability (a thread of its own, which for
    /// [`AuditDurability::Disk`] inside a multi-threaded runtime lets an appender that
    /// finds it idle write its own record; for [`AuditDurability::Process`] there, a
    /// task on its workers), and threads that index the
    /// journaled records into the database and sync it off the append path: every
    /// `flush_interval` for [`AuditDurability::Process`] (whose flusher also syncs the
    /// journal, which is what puts acknowledged records on disk in that mode), every
    /// 500 ms for `Disk`.
    pub fn open_with(store: &Store, durability: AuditDurability) -> Result<AuditLog, AuditError> {
        Self::open_inner(store, durability, None, false)
    }

    /// The platform's log: as [`AuditLog::open_with`], telling `observer` of every record
    /// and commit, and with the journal allocated to its full size before the first
    /// append (the other constructors, for tests and tools, let it grow as it fills).
    ///
    /// Takes the data directory's audit journal (recovering the records a crashed writer
    /// left in it) in either mode: one writer per log, so sequence numbers handed out
    /// are never taken by another process. Fails while another log holds it.
    pub fn open_observed(
        store: &Store,
        durability: AuditDurability,
        observer: Option<Arc<dyn AuditObserver>>,
    ) -> Result<AuditLog, AuditError> {
        Self::open_inner(store, durability, observer, true)
    }

    fn open_inner(
        store: &Store,
        durability: AuditDurability,
        observer: Option<Arc<dyn AuditObserver>>,
        allocate: bool,
    ) -> Result<AuditLog, AuditError> {
        let mut journal = store.open_audit_journal(zerofn_store::AUDIT_JOURNAL_MAX_BYTES)?;
        if allocate {
            journal.allocate()?;
        }
        // Both modes journal every batch before acknowledging it; `process` leaves the
        // journal's sync to the flusher, every `flush_interval`.
        let (interval, journal_sync) = match durability {
            AuditDurability::Disk => (DISK_CHECKPOINT_INTERVAL, None),
            AuditDurability::Process { flush_interval } => {
                journal.sync_later();
                (flush_interval, Some(journal.sync_handle()?))
            }
        };
        let progress = journal.progress();
        let (jobs, rx) = mpsc::channel(QUEUE);
        let feed = CommittedFeed {
            rows: Arc::default(),
            progress: Some(progress.clone()),
        };
        // Whoever commits to the database holds `alive`; the flusher stops after it is gone.
        let alive = Arc::new(());
        let indexer = store.open_audit_indexer()?;
        let head = indexer.last()?.unwrap_or((0, GENESIS_HASH.to_owned()));
        let (index, rows) = std::sync::mpsc::channel();
        let fed = feed.clone();
        let marks = progress.clone();
        let held = alive.clone();
        let refusing = Arc::new(AtomicBool::new(false));
        let failing = refusing.clone();
        let indexing = thread::Builder::new()
            .name("zerofn-audit-index".into())
            .spawn(move || run_indexer(indexer, rows, fed, marks, failing, held))
            .map_err(|_| AuditError::WriterStopped)?;
        let writer = JournalWriter::new(
            journal,
            head,
            Indexer {
                rows: index,
                thread: indexing,
                refusing,
            },
            observer.clone(),
        );
        // The database is synced off the append path, every interval while there is
        // anything new, and at once when the journal asks for room (in process mode, the
        // journal too).
        let flusher = store.open_audit_flusher()?;
        let watched = Arc::downgrade(&alive);
        drop(alive);
        let marks = progress.clone();
        let mut writer = writer;
        writer.flushing = Some(
            thread::Builder::new()
                .name("zerofn-audit-flush".into())
                .spawn(move || run_flusher(flusher, journal_sync, marks, watched, interval))
                .map_err(|_| AuditError::WriterStopped)?,
        );
        // A `process` batch is one write into space the journal has: a task on the
        // workers. A `disk` batch waits for its sync: a thread of its own, which on a
        // multi-threaded runtime shares the writer with appenders that find it idle
        // ([`SharedWriter`]).
        let multi_thread = on_multi_thread_runtime();
        let mut shared = None;
        let writer = match durability {
            AuditDurability::Process { .. } if multi_thread => {
                let (done, finished) = std::sync::mpsc::channel();
                tokio::spawn(run_journal_writer_task(writer, rx, done));
                WriterHandle::Task(finished)
            }
            AuditDurability::Disk if multi_thread => {
                let state = Arc::new(SharedWriter {
                    slot: Mutex::new(Some(Slot {
                        writer,
                        own: Vec::with_capacity(1),
                    })),
                    queued: AtomicUsize::new(0),
                    contended: AtomicBool::new(false),
                });
                shared = Some(state.clone());
                WriterHandle::Thread(
                    thread::Builder::new()
                        .name("zerofn-audit".into())
                        .spawn(move || run_shared_journal_writer(&state, rx))
                        .map_err(|_| AuditError::WriterStopped)?,
                )
            }
            _ => WriterHandle::Thread(
                thread::Builder::new()
                    .name("zerofn-audit".into())
                    .spawn(move || run_journal_writer(writer, rx))
                    .map_err(|_| AuditError::WriterStopped)?,
            ),
        };
        Ok(AuditLog {
            jobs,
            store: store.clone(),
            feed,
            observer,
            writer: Arc::new(Mutex::new(Some(writer))),
            shared,
        })
    }

    /// Stop accepting records through this handle. On the last handle, also waits for
    /// the writer to finish: every acknowledged record is in the database and the
    /// journal is released (another [`AuditLog`] can open it).
    pub fn close(self) {
        let AuditLog {
            jobs,
            writer,
            shared,
            ..
        } = self;
        drop(jobs);
        drop(shared);
        if let Ok(writer) = Arc::try_unwrap(writer) {
            match writer.into_inner().unwrap_or_else(PoisonError::into_inner) {
                Some(WriterHandle::Thread(handle)) => {
                    let _ = handle.join();
                }
                Some(WriterHandle::Task(finished)) => {
                    // The task needs a worker to finish on: if this thread is one, the
                    // runtime is handed its work while this waits.
                    let wait = move || {
                        let _ = finished.recv();
                    };
                    if on_multi_thread_runtime() {
                        tokio::task::block_in_place(wait);
                    } else {
                        wait();
                    }
                }
                None => {}
            }
        }
    }

    /// The rows this log commits, for the Merkle tree ([`crate::LogTree::with_feed`]).
    pub fn committed_feed(&self) -> CommittedFeed {
        self.feed.clone()
    }

    /// Append one record durably; returns its sequence number. An error
    /// means the record is not in the log and the caller must not perform
    /// the action.
    pub async fn append(&self, record: AuditRecord) -> Result<i64, AuditError> {
        self.observe(&record, 1);
        self.append_unobserved(record).await
    }

    /// Queue one record without waiting for it to be durable: for records of what has
    /// already happened, whose durability changes nothing for the caller. The writer
    /// commits records in the order they are queued, so a record appended (and awaited)
    /// after this one is durable only once this one's batch is committed; only a failed
    /// commit of this one's batch (which the returned [`QueuedAppend`] reports, and the
    /// writer logs) breaks that. Waits only for room in the writer's queue (backpressure).
    pub async fn append_queued(&self, record: AuditRecord) -> Result<QueuedAppend, AuditError> {
        self.observe(&record, 1);
        let (ack, done) = oneshot::channel();
        self.enqueue(Job { record, ack }).await?;
        Ok(QueuedAppend(done))
    }

    /// Give `job` to the writer's thread or task (waiting for room in its queue).
    async fn enqueue(&self, job: Job) -> Result<(), AuditError> {
        // Counted before it is queued: from here on no appender writes ahead of it.
        if let Some(shared) = &self.shared {
            shared.queued.fetch_add(1, Ordering::SeqCst);
        }
        self.jobs
            .send(job)
            .await
            .map_err(|_| AuditError::WriterStopped)
    }

    /// Tell the observer of `record` standing for `count` events, without appending it.
    pub(crate) fn observe(&self, record: &AuditRecord, count: u64) {
        if let Some(observer) = &self.observer {
            observer.record(record, count);
        }
    }

    /// [`AuditLog::append`] of a record already observed (an aggregate of counted ones).
    pub(crate) async fn append_unobserved(&self, record: AuditRecord) -> Result<i64, AuditError> {
        let started = self.observer.as_ref().map(|_| Instant::now());
        let result = self.send(record).await;
        if let (Some(observer), Some(started)) = (&self.observer, started) {
            observer.appended(started.elapsed(), result.is_ok());
        }
        result
    }

    async fn send(&self, record: AuditRecord) -> Result<i64, AuditError> {
        let (ack, done) = oneshot::channel();
        let job = Job { record, ack };
        let job = match &self.shared {
            Some(shared) => shared.try_write(job),
            None => Some(job),
        };
        if let Some(job) = job {
            self.enqueue(job).await?;
        }
        match done.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(())) => Err(AuditError::AppendFailed),
            Err(_) => Err(AuditError::WriterStopped),
        }
    }

    /// The newest `n` records, oldest first.
    pub async fn tail(&self, n: u32) -> Result<Vec<StoredRecord>, AuditError> {
        Ok(self
            .store
            .audit_tail(n)
            .await?
            .into_iter()
            .map(StoredRecord::from)
            .collect())
    }

    /// One page of the records matching `query`, newest first, and the
    /// cursor of the next page (see [`zerofn_store::AuditPage`]).
    pub async fn query(
        &self,
        query: crate::AuditQuery,
    ) -> Result<(Vec<StoredRecord>, Option<i64>), AuditError> {
        let page = self.store.audit_query(query).await?;
        Ok((
            page.rows.into_iter().map(StoredRecord::from).collect(),
            page.next,
        ))
    }

    /// Records of one invocation.
    pub async fn by_invocation(&self, id: &str) -> Result<Vec<StoredRecord>, AuditError> {
        Ok(self
            .store
            .audit_by_invocation(id)
            .await?
            .into_iter()
            .map(StoredRecord::from)
            .collect())
    }
}

/// Syncs the database every `interval` while there are new rows, and at once when the
/// journal needs room; ends after whoever commits has stopped (`alive` is gone), with a
/// last sync.
fn run_flusher(
    mut flusher: AuditFlusher,
    journal: Option<File>,
    progress: Arc<JournalProgress>,
    alive: Weak<()>,
    interval: Duration,
) {
    zerofn_store::pace::behind_requests();
    let mut flushed = progress.indexed_seq();
    let mut journal_synced = progress.journaled_seq();
    loop {
        progress.wait_for_flush_request(interval);
        let running = alive.upgrade().is_some();
        // `process` mode: the journal holds acknowledged records the database may not
        // have yet; syncing it is what puts them on disk. A failed sync is retried next
        // tick (the records stay in the kernel's cache; only a machine failure loses them).
        if let Some(file) = &journal {
            let written = progress.journaled_seq();
            if written != journal_synced {
                match file.sync_data() {
                    Ok(()) => journal_synced = written,
                    Err(error) => tracing::warn!(%error, "audit journal sync failed"),
                }
            }
        }
        let head = progress.indexed_seq();
        if head == flushed {
            // Nothing new: what the journal waits for (if anything) is already synced.
            progress.synced(head);
        } else {
            match flusher.flush() {
                Ok(()) => {
                    flushed = head;
                    progress.synced(head);
                }
                Err(error) => {
                    // Rows stay committed (and journaled); the next tick retries.
                    tracing::warn!(%error, "audit flush to disk failed");
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
        if !running {
            return;
        }
    }
}

/// Takes the next batch: the first job and whatever else is waiting, up to [`MAX_BATCH`].
fn next_batch(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) -> bool {
    let Some(first) = rx.blocking_recv() else {
        return false;
    };
    batch.push(first);
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    true
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

/// The writer's end of the indexer thread.
struct Indexer {
    rows: std::sync::mpsc::Sender<Vec<AuditRow>>,
    thread: thread::JoinHandle<()>,
    /// Set while the database refuses the rows it is given.
    refusing: Arc<AtomicBool>,
}

/// `disk` durability (or no multi-threaded runtime): each batch becomes journal blocks,
/// acknowledged once a block is written and its `fdatasync` has returned, on this thread
/// of its own; the indexer copies them into the database behind.
fn run_journal_writer(mut writer: JournalWriter, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while next_batch(&mut rx, &mut batch) {
        writer.write(&mut batch, true);
    }
}

/// `disk` durability on a multi-threaded runtime: as [`run_journal_writer`], with the
/// writer shared with appenders that find it idle ([`SharedWriter`]). Ending, drops the
/// writer here (off the workers: that joins the indexer and the flusher).
fn run_shared_journal_writer(shared: &SharedWriter, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut answers: Vec<Answer> = Vec::with_capacity(MAX_BATCH);
    let mut quiet = 0u32;
    while next_batch(&mut rx, &mut batch) {
        let taken = batch.len();
        let Ok(mut slot) = shared.slot.lock() else {
            // An appender panicked writing: the writer's state is unknown. Stop; the
            // batch's and every later appender are refused (fail closed).
            break;
        };
        let Some(Slot { writer, .. }) = slot.as_mut() else {
            break;
        };
        writer.journal_batch(&mut batch, true);
        std::mem::swap(&mut writer.answers, &mut answers);
        // Under the lock: an appender that sees zero finds these written.
        shared.queued.fetch_sub(taken, Ordering::SeqCst);
        // [`UNCONTENDED`] batches of one record in a row: the load is gone (under load a
        // batch gathers what arrived during the previous sync).
        quiet = if taken == 1 { quiet + 1 } else { 0 };
        if quiet >= UNCONTENDED {
            quiet = 0;
            shared.contended.store(false, Ordering::Relaxed);
        }
        // Answered once the writer is free: an appender that goes on to append again at
        // once finds it idle, not still held by this thread.
        drop(slot);
        for (ack, answer) in answers.drain(..) {
            let _ = ack.send(answer);
        }
    }
    let writer = shared
        .slot
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    drop(writer);
}

/// `process` durability: the writer as a task on the runtime's workers. A block is
/// acknowledged once written (the flusher syncs it), a write into space the journal
/// already has, so the task blocks a worker for one `pwrite`; and the appender's task
/// and this one run on the same worker, one after the other, where a writer thread
/// cost two wake-ups across cores per record (BENCHMARKS.md, "Background work and the
/// one-connection tail"). A batch that would wait for the database to free space, or
/// for the file to grow, is written on the blocking pool instead; later batches wait
/// for it, so the order of the log is the order of the queue either way. `done` is
/// dropped once the writer has finished ([`AuditLog::close`]).
async fn run_journal_writer_task(
    mut writer: JournalWriter,
    mut rx: mpsc::Receiver<Job>,
    done: std::sync::mpsc::Sender<()>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if writer.write(&mut batch, false) {
            continue;
        }
        let mut waiting = std::mem::take(&mut batch);
        match tokio::task::spawn_blocking(move || {
            writer.write(&mut waiting, true);
            writer
        })
        .await
        {
            Ok(back) => writer = back,
            // The write panicked: its jobs were dropped unanswered (their appenders see
            // the writer stopped), and so is every later one (fail closed).
            Err(_) => return,
        }
    }
    // Joining the indexer blocks: off the workers.
    let _ = tokio::task::spawn_blocking(move || drop(writer)).await;
    drop(done);
}

/// The journal's writing end: the chain's head, and where written rows go next.
/// Dropping it hands every written row to the database and syncs it (joins the indexer,
/// then the flusher) before the journal is let go.
struct JournalWriter {
    journal: AuditJournal,
    head: (i64, String),
    index: Option<std::sync::mpsc::Sender<Vec<AuditRow>>>,
    indexing: Option<thread::JoinHandle<()>>,
    /// The flusher, which ends after the indexer with a last sync (in `process` mode it
    /// holds the journal's file too).
    flushing: Option<thread::JoinHandle<()>>,
    /// Set while the database refuses the rows it is given; the indexer gives up
    /// retrying once this writer has let go of it.
    refusing: Option<Arc<AtomicBool>>,
    observer: Option<Arc<dyn AuditObserver>>,
    rows: Vec<AuditRow>,
    /// Answers of the batch written last, not yet sent.
    answers: Vec<Answer>,
    /// After a failed journal write the block may or may not be on disk, and an indexer
    /// that stopped takes no more rows: every later record is refused (fail closed)
    /// until a restart recovers the journal.
    broken: bool,
}

impl JournalWriter {
    fn new(
        journal: AuditJournal,
        head: (i64, String),
        indexer: Indexer,
        observer: Option<Arc<dyn AuditObserver>>,
    ) -> JournalWriter {
        let Indexer {
            rows: index,
            thread: indexing,
            refusing,
        } = indexer;
        JournalWriter {
            journal,
            head,
            index: Some(index),
            indexing: Some(indexing),
            flushing: None,
            refusing: Some(refusing),
            observer,
            rows: Vec::with_capacity(MAX_BATCH),
            answers: Vec::with_capacity(MAX_BATCH),
            broken: false,
        }
    }

    /// Journal `batch` (emptied) and answer each of its jobs. With `wait` false, a batch
    /// that does not fit in the journal's free space as it is (it would wait for the
    /// database, or for the file to grow), or is larger than [`ON_WORKER_BYTES`], is left
    /// untouched and unanswered: false.
    fn write(&mut self, batch: &mut Vec<Job>, wait: bool) -> bool {
        let written = self.journal_batch(batch, wait);
        for (ack, answer) in self.answers.drain(..) {
            let _ = ack.send(answer);
        }
        written
    }

    /// [`JournalWriter::write`], leaving the answers in `self.answers` (for a caller that
    /// answers after letting go of the writer).
    fn journal_batch(&mut self, batch: &mut Vec<Job>, wait: bool) -> bool {
        // A database that refuses records is an audit log that cannot be written, even
        // with room left in the journal: refuse (fail closed) until it takes them again.
        let refusing = self
            .refusing
            .as_ref()
            .is_none_or(|r| r.load(Ordering::Acquire));
        if self.broken || refusing {
            self.answers
                .extend(batch.drain(..).map(|job| (job.ack, Err(()))));
            return true;
        }
        chain(batch, &mut self.rows, &self.head, &now_rfc3339());
        if !wait && {
            let bound = journal_bound(&self.rows);
            bound > ON_WORKER_BYTES || !self.journal.fits_now(bound)
        } {
            self.rows.clear();
            return false;
        }
        let mut jobs = batch.drain(..);
        let mut rest = self.rows.drain(..).peekable();
        while rest.peek().is_some() {
            let mut block = Vec::new();
            let mut bytes = 0usize;
            while let Some(row) =
                rest.next_if(|r| block.is_empty() || bytes + row_bytes(r) <= BLOCK_BUDGET)
            {
                bytes += row_bytes(&row);
                block.push(row);
            }
            let acks: Vec<Job> = jobs.by_ref().take(block.len()).collect();
            if let Err(error) = self.journal.append(&block) {
                tracing::error!(%error, records = acks.len(), "audit journal write failed; refusing this and every later action until a restart");
                self.broken = true;
                self.answers
                    .extend(acks.into_iter().map(|job| (job.ack, Err(()))));
                break;
            }
            if let Some(last) = block.last() {
                self.head = (last.seq, last.hash.clone());
            }
            if let Some(observer) = &self.observer {
                observer.committed(block.len());
            }
            let seqs: Vec<i64> = block.iter().map(|r| r.seq).collect();
            if self.index.as_ref().is_none_or(|i| i.send(block).is_err()) {
                tracing::error!(
                    "the audit indexer has stopped; refusing every later action until a restart"
                );
                self.broken = true;
            }
            // Durable in the journal either way: acknowledged.
            self.answers.extend(
                seqs.into_iter()
                    .zip(acks)
                    .map(|(seq, job)| (job.ack, Ok(seq))),
            );
        }
        self.answers.extend(jobs.map(|job| (job.ack, Err(()))));
        true
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        // The indexer ends once it has no more rows coming, or (retrying a database
        // that refuses them) once this writer no longer holds `refusing`; the journal
        // (a field, dropped after this) stays locked until it has.
        self.index = None;
        self.refusing = None;
        if let Some(indexing) = self.indexing.take() {
            let _ = indexing.join();
        }
        // Woken now rather than at its next interval, the flusher syncs what the
        // indexer wrote last and ends.
        self.journal.progress().want_flush();
        if let Some(flushing) = self.flushing.take() {
            let _ = flushing.join();
        }
    }
}

/// At least the bytes `rows` take in the journal, blocks and their headers included, as
/// [`JournalWriter::write`] splits them ([`row_bytes`] bounds a row's encoding).
fn journal_bound(rows: &[AuditRow]) -> u64 {
    let bytes: usize = rows.iter().map(row_bytes).sum();
    let blocks = u64::try_from(bytes / BLOCK_BUDGET + 1).unwrap_or(u64::MAX);
    // Each block: its header, and the rest of its last page, under two pages.
    let overhead = blocks.saturating_mul(2 * zerofn_store::AUDIT_JOURNAL_BLOCK);
    u64::try_from(bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(overhead)
}

/// `disk` mode: copies journaled rows into the database (unsynced; the flusher syncs)
/// and hands them to the tree.
fn run_indexer(
    mut writer: AuditWriter,
    incoming: std::sync::mpsc::Receiver<Vec<AuditRow>>,
    feed: CommittedFeed,
    progress: Arc<JournalProgress>,
    refusing: Arc<AtomicBool>,
    _alive: Arc<()>,
) {
    zerofn_store::pace::behind_requests();
    let mut last_commit = Instant::now();
    while let Ok(mut rows) = incoming.recv() {
        // Rows arriving within an interval share one transaction: its pages (the table's
        // and each index's last leaf) are written once for all of them, not once a
        // record. The volume the flusher then syncs is what competes with the journal's
        // own syncs for the disk.
        let due = last_commit + INDEX_INTERVAL;
        let wait = due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            thread::sleep(wait);
        }
        while rows.len() < MAX_BATCH {
            match incoming.try_recv() {
                Ok(mut more) => rows.append(&mut more),
                Err(_) => break,
            }
        }
        last_commit = Instant::now();
        let mut pause = Duration::from_millis(10);
        let mut tries = 0u32;
        while let Err(error) = writer.append_batch(&rows) {
            refusing.store(true, Ordering::Release);
            // The writer gone (the log closed) and nothing to recover but through the
            // journal: stop; the next start copies the rows.
            if Arc::strong_count(&refusing) < 2 {
                tracing::error!(%error, records = rows.len(), "the database refuses journaled audit records; they stay in the journal for the next start");
                return;
            }
            if tries.is_multiple_of(INDEX_LOG_EVERY) {
                tracing::error!(%error, records = rows.len(), "the database refuses journaled audit records; refusing every action until it takes them (retrying)");
            }
            tries = tries.wrapping_add(1);
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
        }
        refusing.store(false, Ordering::Release);
        let last = rows.last().map(|r| r.seq);
        // The feed first: a tree woken by the mark finds the rows there.
        feed.push(&mut rows);
        if let Some(last) = last {
            progress.indexed(last);
        }
    }
}

/// Chain `batch` onto `head` into `rows` (cleared first).
fn chain(batch: &[Job], rows: &mut Vec<AuditRow>, head: &(i64, String), now: &str) {
    rows.clear();
    let (mut seq, mut prev) = head.clone();
    for job in batch {
        seq = seq.saturating_add(1);
        let r = &job.record;
        let mut row = AuditRow {
            seq,
            time: now.to_owned(),
            actor: r.actor.clone(),
            action: r.action.as_str().to_owned(),
            tenant: r.tenant.clone(),
            function: r.function.clone(),
            digest: r.digest.clone(),
            decision: r.outcome.as_str().to_owned(),
            reason: r.reason.clone(),
            duration_us: r
                .duration
                .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            status: r.status.map(i64::from),
            invocation_id: r.invocation_id.clone(),
            // Stored canonical (RFC 8785), so the tree takes it into the record's leaf
            // as it is instead of parsing it back. (The canonical form is always
            // UTF-8: it is made of the value's strings and ASCII.)
            detail: r.detail.as_ref().map(|v| {
                String::from_utf8(crate::jcs::canonicalize(v)).unwrap_or_else(|_| v.to_string())
            }),
            prev_hash: prev,
            hash: String::new(),
        };
        row.hash = row_hash(&row);
        prev = row.hash.clone();
        rows.push(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big_row(seq: i64) -> AuditRow {
        AuditRow {
            seq,
            time: String::new(),
            actor: String::new(),
            action: String::new(),
            tenant: None,
            function: None,
            digest: None,
            decision: String::new(),
            reason: None,
            duration_us: None,
            status: None,
            invocation_id: None,
            detail: Some("x".repeat(crate::MAX_DETAIL)),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// Nobody taking the feed (no tree, or a stuck one) cannot make it hold more than its
    /// byte bound, whatever the records hold: it lets go and the tree reads the database.
    #[test]
    fn an_untaken_feed_stays_within_its_byte_bound() {
        let feed = CommittedFeed::default();
        let per_batch = 64;
        for batch in 0..100i64 {
            let mut rows: Vec<AuditRow> = (0..per_batch)
                .map(|i| big_row(batch * per_batch + i))
                .collect();
            feed.push(&mut rows);
            assert!(rows.is_empty());
            let held = feed.rows.lock().unwrap();
            assert!(
                held.bytes <= FEED_MAX_BYTES,
                "batch {batch}: {} bytes",
                held.bytes
            );
            assert_eq!(held.bytes, held.rows.iter().map(row_bytes).sum::<usize>());
        }
        // Below the bound, rows come out in order.
        let feed = CommittedFeed::default();
        let mut rows: Vec<AuditRow> = (1..=3).map(big_row).collect();
        feed.push(&mut rows);
        let seqs: Vec<i64> = feed.take().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert!(feed.take().is_empty());
    }
    use crate::{verify_chain, Action, Outcome};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_form_one_valid_chain_that_survives_reopen() {
        appends_form_one_chain_that_survives_reopen(AuditDurability::Disk).await;
    }

    /// The same with the writer as a task on the runtime's workers (`process`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn process_appends_on_the_workers_form_one_valid_chain_that_survives_reopen() {
        appends_form_one_chain_that_survives_reopen(AuditDurability::Process {
            flush_interval: Duration::from_millis(100),
        })
        .await;
    }

    async fn appends_form_one_chain_that_survives_reopen(durability: AuditDurability) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::open_with(&store, durability).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                log.append(
                    AuditRecord::new("t", Action::Invoke, Outcome::Allow)
                        .invocation_id(format!("inv-{i}"))
                        .status(200),
                )
                .await
                .unwrap()
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=200).collect::<Vec<i64>>());
        let head = verify_chain(&store).unwrap();
        assert_eq!(head.records, 200);
        log.close();

        let log = AuditLog::open_with(&store, durability).unwrap();
        let seq = log
            .append(AuditRecord::new("t", Action::PlatformStart, Outcome::Allow))
            .await
            .unwrap();
        assert_eq!(seq, 201);
        let tail = log.tail(2).await.unwrap();
        assert_eq!(tail[1].prev_hash, head.hash);
        assert_eq!(verify_chain(&store).unwrap().records, 201);
        let by = log.by_invocation("inv-7").await.unwrap();
        assert_eq!(by.len(), 1);
        assert_eq!(by[0].status, Some(200));
    }

    /// `process` on the workers: more than the journal holds, so its file grows and its
    /// ring wraps, and batches that have to wait for the database to free space (or for
    /// the file to grow) are written off the workers; every record is acknowledged once,
    /// in the order each appender asked, and the log verifies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn process_appends_past_the_journals_size_wait_for_room_in_order() {
        // Only the journal's own requests for room make the flusher sync.
        appends_past_the_journals_size_wait_for_room_in_order(AuditDurability::Process {
            flush_interval: Duration::from_secs(3600),
        })
        .await;
    }

    /// The same in `disk` mode, where an appender that finds the writer idle writes
    /// itself, and hands a record that does not fit the journal as it is to the thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disk_appends_past_the_journals_size_wait_for_room_in_order() {
        appends_past_the_journals_size_wait_for_room_in_order(AuditDurability::Disk).await;
    }

    async fn appends_past_the_journals_size_wait_for_room_in_order(durability: AuditDurability) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::open_with(&store, durability).unwrap();
        let detail = serde_json::Value::String("x".repeat(60 * 1024));
        let (appenders, each): (i64, i64) = (8, 50);
        let mut tasks = Vec::new();
        for a in 0..appenders {
            let log = log.clone();
            let detail = detail.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..each {
                    let seq = log
                        .append(
                            AuditRecord::new("t", Action::Invoke, Outcome::Allow)
                                .invocation_id(format!("a{a}-{i}"))
                                .detail(detail.clone()),
                        )
                        .await
                        .unwrap();
                    seqs.push(seq);
                }
                seqs
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            let seqs = t.await.unwrap();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "out of order: {seqs:?}"
            );
            all.extend(seqs);
        }
        let total = appenders * each;
        // 400 records of 60 KiB: past the 16 MiB journal.
        assert!(total * 60 * 1024 > 16 << 20);
        all.sort_unstable();
        assert_eq!(all, (1..=total).collect::<Vec<i64>>());
        assert_eq!(verify_chain(&store).unwrap().records, total);
        closed_log_continues_at(log, &store, total + 1).await;
    }

    /// Close `log`: its journal is let go, and a new log on `store` continues the chain,
    /// its first record numbered `next`.
    async fn closed_log_continues_at(log: AuditLog, store: &Store, next: i64) {
        log.close();
        let log = AuditLog::open(store).unwrap();
        let seq = log
            .append(AuditRecord::new("t", Action::PlatformStart, Outcome::Allow))
            .await
            .unwrap();
        assert_eq!(seq, next);
    }

    /// A queued record is committed before any record appended after it, so awaiting
    /// the later one is enough to know both are durable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queued_record_is_committed_before_the_records_appended_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::open(&store).unwrap();
        let mut queued = Vec::new();
        for i in 0..50 {
            queued.push(
                log.append_queued(
                    AuditRecord::new("t", Action::Capability, Outcome::Allow)
                        .invocation_id(format!("flow-{i}")),
                )
                .await
                .unwrap(),
            );
        }
        let last = log
            .append(AuditRecord::new("t", Action::Invoke, Outcome::Allow).status(200))
            .await
            .unwrap();
        assert_eq!(last, 51);
        // Everything queued before it is in the log already, in order.
        assert_eq!(verify_chain(&store).unwrap().records, 51);
        assert_eq!(log.by_invocation("flow-0").await.unwrap().len(), 1);
        let mut seqs = Vec::new();
        for q in queued {
            seqs.push(q.durable().await.unwrap());
        }
        assert_eq!(seqs, (1..=50).collect::<Vec<i64>>());
    }

    /// Tells which thread committed each record, and how many commits there were.
    #[derive(Default)]
    struct CommitThreads(Mutex<Vec<String>>, AtomicUsize);

    impl AuditObserver for CommitThreads {
        fn record(&self, _: &AuditRecord, _: u64) {}
        fn appended(&self, _: Duration, _: bool) {}
        fn committed(&self, records: usize) {
            let name = thread::current().name().unwrap_or("").to_owned();
            let mut seen = self.0.lock().unwrap();
            seen.extend(std::iter::repeat_n(name, records));
            self.1.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A `disk` log on a fresh store, telling which thread committed each record.
    fn observed_disk_log() -> (tempfile::TempDir, Store, Arc<CommitThreads>, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let threads = Arc::new(CommitThreads::default());
        let log =
            AuditLog::open_observed(&store, AuditDurability::Disk, Some(threads.clone())).unwrap();
        (dir, store, threads, log)
    }

    /// Many appenders at once in `disk` mode: they are committed in groups (by the thread,
    /// once an appender's own write kept others waiting), not one sync each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disk_appends_under_load_are_committed_in_groups() {
        let (_dir, store, threads, log) = observed_disk_log();
        let tasks: Vec<_> = (0..400)
            .map(|_| {
                let log = log.clone();
                tokio::spawn(async move {
                    log.append(AuditRecord::new("t", Action::Invoke, Outcome::Allow))
                        .await
                        .unwrap()
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let commits = threads.1.load(Ordering::Relaxed);
        let seen = threads.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 400);
        assert!(commits < 200, "{commits} commits for 400 records");
        assert!(seen.iter().filter(|t| *t == "zerofn-audit").count() > 200);
        // Load gone: within a few syncs appenders write their own records again.
        for _ in 0..20 {
            log.append(AuditRecord::new("t", Action::Invoke, Outcome::Allow))
                .await
                .unwrap();
        }
        let after = threads.0.lock().unwrap().clone();
        let by_thread = after[400..].iter().filter(|t| *t == "zerofn-audit").count();
        assert!(by_thread <= UNCONTENDED as usize, "{after:?}");
        assert!(after[400 + UNCONTENDED as usize..]
            .iter()
            .all(|t| t != "zerofn-audit"));
        assert_eq!(verify_chain(&store).unwrap().records, 420);
        log.close();
    }

    /// `disk` mode on a multi-threaded runtime: an append that finds the writer idle is
    /// written and synced on the appender's own worker (no handoff to the writer thread
    /// and back); a queued record goes to the thread, and an append awaited after it is
    /// written after it (never ahead, even when it finds the writer idle).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disk_appends_to_an_idle_writer_are_written_by_the_appender_in_order() {
        let (_dir, store, threads, log) = observed_disk_log();
        for i in 0..20 {
            let seq = log
                .append(AuditRecord::new("t", Action::Invoke, Outcome::Allow).status(200))
                .await
                .unwrap();
            assert_eq!(seq, i + 1);
        }
        {
            let seen = threads.0.lock().unwrap();
            assert_eq!(seen.len(), 20);
            assert!(
                seen.iter().all(|t| t != "zerofn-audit"),
                "one appender at a time, yet the writer thread wrote: {seen:?}"
            );
        }
        for round in 0..100 {
            let queued = log
                .append_queued(
                    AuditRecord::new("t", Action::Capability, Outcome::Allow)
                        .invocation_id(format!("q-{round}")),
                )
                .await
                .unwrap();
            let after = log
                .append(AuditRecord::new("t", Action::Invoke, Outcome::Allow))
                .await
                .unwrap();
            let queued = queued.durable().await.unwrap();
            assert_eq!((queued, after), (21 + 2 * round, 22 + 2 * round));
        }
        let seen = threads.0.lock().unwrap().clone();
        assert_eq!(seen.len(), 220);
        assert!(seen.iter().any(|t| t == "zerofn-audit"));
        assert_eq!(verify_chain(&store).unwrap().records, 220);
        closed_log_continues_at(log, &store, 221).await;
    }

    /// A second writer on the same data directory (another process, or another log in
    /// this one) is refused while the first runs, naming the journal, so no sequence
    /// number is ever handed out twice; once the first closes, it continues the chain.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_writer_is_refused_until_the_first_closes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::open(&store).unwrap();
        for _ in 0..3 {
            log.append(AuditRecord::new("t", Action::Invoke, Outcome::Allow))
                .await
                .unwrap();
        }
        let other_store = Store::open(dir.path()).unwrap();
        for durability in [
            AuditDurability::Disk,
            AuditDurability::Process {
                flush_interval: Duration::from_millis(10),
            },
        ] {
            let err = AuditLog::open_with(&other_store, durability).unwrap_err();
            let AuditError::Store(inner) = &err else {
                panic!("{err}")
            };
            assert!(
                inner.to_string().contains(zerofn_store::AUDIT_JOURNAL_FILE),
                "{inner}"
            );
        }
        log.close();
        let other = AuditLog::open(&other_store).unwrap();
        let seq = other
            .append(AuditRecord::new(
                "platform",
                Action::PlatformStart,
                Outcome::Allow,
            ))
            .await
            .unwrap();
        assert_eq!(seq, 4);
        // Through the store the writer has: its reads wait for what it acknowledged.
        assert_eq!(verify_chain(&other_store).unwrap().records, 4);
    }

    /// Records cut to their bounds are hashed as stored: the chain of a
    /// log full of oversized, request-derived text verifies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn truncated_records_keep_the_chain_intact() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::open(&store).unwrap();
        let long = format!("/{}é", "p".repeat(20_000));
        for _ in 0..3 {
            log.append(
                AuditRecord::new("anonymous", Action::Invoke, Outcome::Deny)
                    .reason(format!("no route for {long}"))
                    .detail(serde_json::json!({ "path": long, "list": vec![long.clone(); 300] })),
            )
            .await
            .unwrap();
        }
        let tail = log.tail(3).await.unwrap();
        for r in &tail {
            assert!(r.reason.as_ref().unwrap().ends_with(crate::TRUNCATED));
            assert!(r.detail.as_ref().unwrap().to_string().len() <= crate::MAX_DETAIL + 64);
        }
        assert_eq!(verify_chain(&store).unwrap().records, 3);
    }

    /// The flusher checkpoints committed records out of the WAL (the writer
    /// never does, to keep appends short): the database file alone (as after
    /// losing an unsynced WAL) holds them once a checkpoint has run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn process_durability_flushes_committed_records_to_the_database_file() {
        records_reach_the_database_file(AuditDurability::Process {
            flush_interval: std::time::Duration::from_millis(20),
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disk_durability_checkpoints_off_the_append_path() {
        records_reach_the_database_file(AuditDurability::Disk).await;
    }

    async fn records_reach_the_database_file(durability: AuditDurability) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::open_with(&store, durability).unwrap();
        for i in 0..50 {
            log.append(
                AuditRecord::new("t", Action::Invoke, Outcome::Allow)
                    .invocation_id(format!("i{i}")),
            )
            .await
            .unwrap();
        }
        let db = dir.path().join(zerofn_store::DATABASE_FILE);
        let copy = tempfile::tempdir().unwrap();
        let mut rows_in_file = 0;
        for _ in 0..250 {
            std::fs::copy(&db, copy.path().join(zerofn_store::DATABASE_FILE)).unwrap();
            // A copy taken in the middle of a checkpoint may be torn; the
            // next one will not be.
            let head = Store::open(copy.path())
                .ok()
                .and_then(|alone| verify_chain(&alone).ok());
            if let Some(head) = head {
                rows_in_file = head.records;
            }
            if rows_in_file == 50 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(rows_in_file, 50, "the flusher never checkpointed the WAL");
        assert_eq!(verify_chain(&store).unwrap().records, 50);
    }
}
