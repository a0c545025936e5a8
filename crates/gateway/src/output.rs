//! Invocation output into the log store: what each guest wrote to stdout
//! and stderr, split into lines, and the records it logged through
//! `wasi:logging` (stream `log`, with level and context), stored with its
//! invocation id, tenant, function, time and stream (`zerofn logs`).
//!
//! The invoke path only hands the captured bytes to a bounded queue
//! ([`InvocationLogs::submit`] never waits and never fails the request); one
//! thread drains the queue, writes the lines in batches on its own
//! connection, and applies the retention limits. When the queue is full
//! (in invocations or in bytes) the output is dropped and counted, and the
//! next batch stores a `platform` marker line in that function's log saying
//! how many invocations' output is missing.
//!
//! An invocation's lines are stored in the order the guest wrote them as far
//! as the sandbox can tell: each `wasi:logging` record knows how much of
//! stdout and stderr had been written when it was made, so it follows the
//! stdout and stderr lines completed before it and precedes the rest.
//! Between two records (or without any), stdout's lines come before
//! stderr's: the two pipes are captured apart.
//!
//! # Trust
//! Guest bytes are untrusted. They are stored as text with invalid UTF-8
//! replaced (U+FFFD) and are never interpreted; whoever prints them to a
//! terminal escapes them (`zerofn logs` uses `zerofn_types::printable`).
//! Every byte held is bounded: each stream (and the `wasi:logging` records)
//! by the sandbox's capture limit,
//! the queue by [`QUEUE_INVOCATIONS`] and [`QUEUE_BYTES`], what is stored by
//! the per-function byte and age limits of [`LogRetention`]. Output is not
//! audit: the writer commits without syncing, and a crash may cost the last
//! batch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use zerofn_sandbox::{logging, GuestOutput};
use zerofn_store::{log_timestamp, LogWriter, NewLogLine, Store, StoreError};

/// Invocations whose output may wait for the writer.
pub const QUEUE_INVOCATIONS: usize = 4096;
/// Bytes of output that may wait for the writer, all invocations together.
pub const QUEUE_BYTES: usize = 32 << 20;
/// Most invocations' output written in one transaction.
const MAX_BATCH: usize = 512;
/// How often lines older than the age limit are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// Functions whose dropped output is counted one by one; beyond them the
/// count goes to the operator's log only.
const MAX_DROP_COUNTERS: usize = 1024;

/// How much output is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRetention {
    /// Bytes of stored lines per function; the oldest lines go first.
    pub max_bytes_per_function: u64,
    /// Lines older than this are deleted (checked every minute).
    pub max_age: Duration,
}

impl Default for LogRetention {
    /// 1 MiB per function, 7 days.
    fn default() -> Self {
        LogRetention {
            max_bytes_per_function: 1 << 20,
            max_age: Duration::from_secs(7 * 86_400),
        }
    }
}

/// One invocation's output, waiting for the writer.
struct Captured {
    tenant: String,
    function: String,
    invocation_id: String,
    time: String,
    output: GuestOutput,
}

impl Captured {
    fn size(&self) -> usize {
        self.output
            .stdout
            .len()
            .saturating_add(self.output.stderr.len())
            .saturating_add(self.output.log.bytes())
    }
}

/// Dropped invocations per function: how many, and the last one's id.
type Dropped = BTreeMap<(String, String), (u64, String)>;

/// The queue of invocation output and its writer thread. Cheap to clone;
/// the thread ends when every clone is gone and the queue is drained.
#[derive(Clone)]
pub struct InvocationLogs {
    queue: SyncSender<Captured>,
    queued_bytes: Arc<AtomicUsize>,
    dropped: Arc<Mutex<Dropped>>,
}

impl std::fmt::Debug for InvocationLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InvocationLogs(..)")
    }
}

impl InvocationLogs {
    /// Open the writer's connection and start its thread. `capture_limit`
    /// is the sandbox's per-stream capture limit: output that reached it
    /// gets a marker line saying the rest was not kept.
    pub fn start(
        store: &Store,
        retention: LogRetention,
        capture_limit: usize,
    ) -> Result<InvocationLogs, StoreError> {
        let writer = store.open_log_writer()?;
        let (queue, rx) = mpsc::sync_channel(QUEUE_INVOCATIONS);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(Mutex::new(Dropped::new()));
        let thread = Writer {
            writer,
            retention,
            capture_limit,
            queued_bytes: queued_bytes.clone(),
            dropped: dropped.clone(),
        };
        std::thread::Builder::new()
            .name("zerofn-logs".into())
            .spawn(move || thread.run(rx))
            .map_err(|_| StoreError::TaskFailed)?;
        Ok(InvocationLogs {
            queue,
            queued_bytes,
            dropped,
        })
    }

    /// Queue one invocation's output for storage; never waits. Output that
    /// does not fit in the queue is dropped and counted.
    pub fn submit(&self, tenant: &str, function: &str, invocation_id: &str, output: GuestOutput) {
        if output.stdout.is_empty() && output.stderr.is_empty() && output.log.is_empty() {
            return;
        }
        let captured = Captured {
            tenant: tenant.to_owned(),
            function: function.to_owned(),
            invocation_id: invocation_id.to_owned(),
            time: log_timestamp(time::OffsetDateTime::now_utc()),
            output,
        };
        let size = captured.size();
        // Reserve the bytes first; give them back if the output is not queued.
        let before = self.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if before.saturating_add(size) > QUEUE_BYTES {
            self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            self.count_dropped(captured);
            return;
        }
        match self.queue.try_send(captured) {
            Ok(()) => {}
            Err(TrySendError::Full(c) | TrySendError::Disconnected(c)) => {
                self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                self.count_dropped(c);
            }
        }
    }

    fn count_dropped(&self, c: Captured) {
        let mut dropped = self.dropped.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (c.tenant, c.function);
        if dropped.len() >= MAX_DROP_COUNTERS && !dropped.contains_key(&key) {
            tracing::warn!(
                tenant = %key.0,
                function = %key.1,
                invocation_id = %c.invocation_id,
                "invocation output dropped: the log writer is behind"
            );
            return;
        }
        let entry = dropped.entry(key).or_insert((0, String::new()));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = c.invocation_id;
    }
}

/// The writer thread's state.
struct Writer {
    writer: LogWriter,
    retention: LogRetention,
    capture_limit: usize,
    queued_bytes: Arc<AtomicUsize>,
    dropped: Arc<Mutex<Dropped>>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Captured>) {
        let mut batch: Vec<Captured> = Vec::with_capacity(MAX_BATCH);
        let mut last_prune: Option<Instant> = None;
        loop {
            let open = match rx.recv_timeout(PRUNE_INTERVAL) {
                Ok(first) => {
                    batch.push(first);
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(c) => batch.push(c),
                            Err(_) => break,
                        }
                    }
                    true
                }
                Err(RecvTimeoutError::Timeout) => true,
                Err(RecvTimeoutError::Disconnected) => false,
            };
            let held: usize = batch.iter().map(Captured::size).sum();
            self.write(&mut batch);
            self.queued_bytes.fetch_sub(held, Ordering::AcqRel);
            if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_INTERVAL) {
                self.prune();
                last_prune = Some(Instant::now());
            }
            if !open {
                return;
            }
        }
    }

    fn write(&mut self, batch: &mut Vec<Captured>) {
        let dropped =
            std::mem::take(&mut *self.dropped.lock().unwrap_or_else(PoisonError::into_inner));
        let now = log_timestamp(time::OffsetDateTime::now_utc());
        let mut lines = Vec::new();
        for ((tenant, function), (count, last)) in dropped {
            lines.push(NewLogLine {
                tenant,
                function,
                invocation_id: last.clone(),
                time: now.clone(),
                stream: "platform".to_owned(),
                line: format!(
                    "[zerofn] the output of {count} invocation(s), the last `{last}`, was not stored: the log writer was behind"
                ),
                level: None,
                context: None,
            });
        }
        for c in batch.drain(..) {
            lines.extend(to_lines(&c, self.capture_limit));
        }
        if lines.is_empty() {
            return;
        }
        if let Err(error) = self
            .writer
            .append(&lines, self.retention.max_bytes_per_function)
        {
            tracing::warn!(%error, lines = lines.len(), "invocation output could not be stored");
        }
    }

    fn prune(&mut self) {
        let max_age =
            time::Duration::try_from(self.retention.max_age).unwrap_or(time::Duration::MAX);
        let Some(cutoff) = time::OffsetDateTime::now_utc().checked_sub(max_age) else {
            return;
        };
        match self.writer.prune_older_than(&log_timestamp(cutoff)) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(lines = n, "old invocation output deleted"),
            Err(error) => tracing::warn!(%error, "old invocation output could not be deleted"),
        }
    }
}

/// One invocation's output as stored lines: stdout's and stderr's, each
/// split at `\n` (a `\r` before it is dropped), invalid UTF-8 replaced, and
/// the `wasi:logging` records, one line each (a message keeps its newlines:
/// the printer escapes them). Each record comes after the stdout and stderr
/// lines that were complete when it was made (a line counts as written when
/// its `\n` is, or at the end of the output for a last line without one);
/// the lines after the last record follow, then the markers: for a stream
/// that reached the capture limit, and for records cut or dropped.
fn to_lines(c: &Captured, capture_limit: usize) -> Vec<NewLogLine> {
    let mut out = Vec::new();
    let line = |stream: &str, line: String| NewLogLine {
        tenant: c.tenant.clone(),
        function: c.function.clone(),
        invocation_id: c.invocation_id.clone(),
        time: c.time.clone(),
        stream: stream.to_owned(),
        line,
        level: None,
        context: None,
    };
    let mut stdout = split_lines_with_ends(&c.output.stdout)
        .into_iter()
        .peekable();
    let mut stderr = split_lines_with_ends(&c.output.stderr)
        .into_iter()
        .peekable();
    let log = &c.output.log;
    for r in log.records() {
        while let Some((_, text)) = stdout.next_if(|(end, _)| *end <= r.at.stdout) {
            out.push(line("stdout", text));
        }
        while let Some((_, text)) = stderr.next_if(|(end, _)| *end <= r.at.stderr) {
            out.push(line("stderr", text));
        }
        out.push(NewLogLine {
            level: Some(r.level.as_str().to_owned()),
            context: Some(r.context.clone()),
            ..line("log", r.message.clone())
        });
    }
    for (stream, rest, bytes) in [
        ("stdout", stdout, &c.output.stdout),
        ("stderr", stderr, &c.output.stderr),
    ] {
        for (_, text) in rest {
            out.push(line(stream, text));
        }
        if capture_limit > 0 && bytes.len() >= capture_limit {
            out.push(line(
                "platform",
                format!(
                    "[zerofn] {stream} reached the capture limit of {capture_limit} bytes; later output was not kept"
                ),
            ));
        }
    }
    if log.cut() > 0 || log.dropped() > 0 {
        out.push(line(
            "platform",
            format!(
                "[zerofn] wasi:logging: {} record(s) cut at {} bytes of message or {} of context (marked `…`); {} call(s) not kept: over the limit of {} records or {} bytes",
                log.cut(),
                logging::MAX_MESSAGE_BYTES,
                logging::MAX_CONTEXT_BYTES,
                log.dropped(),
                logging::MAX_RECORDS,
                log.limit_bytes()
            ),
        ));
    }
    out
}

/// Lines of guest output as text: split at `\n`, without a final empty line
/// after a trailing newline, a `\r` before the `\n` dropped, invalid UTF-8
/// replaced.
#[cfg(test)]
fn split_lines(bytes: &Bytes) -> Vec<String> {
    split_lines_with_ends(bytes)
        .into_iter()
        .map(|(_, text)| text)
        .collect()
}

/// Lines of guest output as text (split at `\n`, without a final empty line
/// after a trailing newline, a `\r` before the `\n` dropped, invalid UTF-8
/// replaced), each with the offset in `bytes` just past its end
/// (its `\n`, or the end of `bytes` for a last line without one). Splitting
/// the bytes before replacing invalid UTF-8 gives the same lines as the
/// other way round: `\n` is never part of a multi-byte sequence.
fn split_lines_with_ends(bytes: &Bytes) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut start = 0usize;
    for piece in bytes.split_inclusive(|&b| b == b'\n') {
        let end = start.saturating_add(piece.len());
        let text = piece.strip_suffix(b"\n").unwrap_or(piece);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        lines.push((end, String::from_utf8_lossy(text).into_owned()));
        start = end;
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerofn_store::LogQuery;

    fn output(stdout: &[u8], stderr: &[u8]) -> GuestOutput {
        GuestOutput {
            stdout: Bytes::copy_from_slice(stdout),
            stderr: Bytes::copy_from_slice(stderr),
            log: logging::GuestLog::new(1024),
        }
    }

    fn captured(output: GuestOutput) -> Captured {
        Captured {
            tenant: "acme".into(),
            function: "f".into(),
            invocation_id: "i".into(),
            time: "t".into(),
            output,
        }
    }

    /// Where a record was made: after `stdout` bytes of stdout and `stderr`
    /// of stderr.
    fn at(stdout: usize, stderr: usize) -> logging::StreamPosition {
        logging::StreamPosition { stdout, stderr }
    }

    /// (stream, level, context, text) of each line.
    fn shown(lines: &[NewLogLine]) -> Vec<(&str, Option<&str>, Option<&str>, &str)> {
        lines
            .iter()
            .map(|l| {
                (
                    l.stream.as_str(),
                    l.level.as_deref(),
                    l.context.as_deref(),
                    l.line.as_str(),
                )
            })
            .collect()
    }

    /// `wasi:logging` records become one line each with level and context,
    /// placed after the stdout and stderr lines complete when they were
    /// made; a line still open at a record comes after it.
    #[test]
    fn log_records_are_placed_among_stdout_and_stderr_lines() {
        let mut out = output(b"one\ntwo\nthree", b"err1\nerr2\n");
        out.log = logging::GuestLog::new(64 * 1024);
        // Before anything was written.
        out.log
            .record(logging::LogLevel::Trace, "c", "first", at(0, 0));
        // After "one\n" and "t" of "two": only "one" is complete.
        out.log.record(
            logging::LogLevel::Warn,
            "db",
            "two\nlines \u{1b}[2J",
            at(5, 0),
        );
        // After "two\n" and "err1\n".
        out.log
            .record(logging::LogLevel::Info, "", "third", at(8, 5));
        let lines = to_lines(&captured(out), 1024);
        assert_eq!(
            shown(&lines),
            [
                ("log", Some("trace"), Some("c"), "first"),
                ("stdout", None, None, "one"),
                // Kept as the guest wrote it: escaping is the printer's job.
                ("log", Some("warn"), Some("db"), "two\nlines \u{1b}[2J"),
                ("stdout", None, None, "two"),
                ("stderr", None, None, "err1"),
                ("log", Some("info"), Some(""), "third"),
                ("stdout", None, None, "three"),
                ("stderr", None, None, "err2"),
            ]
        );
    }

    /// What the sandbox cut or dropped is said once, after the lines.
    #[test]
    fn cut_and_dropped_records_get_one_marker() {
        let mut out = output(b"out\n", b"err\n");
        out.log = logging::GuestLog::new(2 * (logging::RECORD_OVERHEAD + 32));
        out.log
            .record(logging::LogLevel::Warn, "db", "fits", at(4, 4));
        // Too big for what is left of the byte limit: dropped.
        out.log.record(
            logging::LogLevel::Critical,
            "",
            &"x".repeat(logging::MAX_MESSAGE_BYTES + 1),
            at(4, 4),
        );
        // Small enough: kept.
        out.log
            .record(logging::LogLevel::Info, "c", "third", at(4, 4));
        let lines = to_lines(&captured(out), 1024);
        let shown = shown(&lines);
        assert_eq!(shown.len(), 5, "{shown:?}");
        assert_eq!(
            shown[..4],
            [
                ("stdout", None, None, "out"),
                ("stderr", None, None, "err"),
                ("log", Some("warn"), Some("db"), "fits"),
                ("log", Some("info"), Some("c"), "third"),
            ]
        );
        assert_eq!(shown[4].0, "platform");
        assert!(
            shown[4].3.contains("0 record(s) cut") && shown[4].3.contains("1 call(s) not kept"),
            "{}",
            shown[4].3
        );

        // A message over the per-record cap is cut, marked, and counted.
        let mut out = output(b"", b"");
        out.log = logging::GuestLog::new(64 * 1024);
        out.log.record(
            logging::LogLevel::Error,
            "c",
            &"y".repeat(logging::MAX_MESSAGE_BYTES * 4),
            at(0, 0),
        );
        let lines = to_lines(&captured(out), 1024);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].line.len() <= logging::MAX_MESSAGE_BYTES);
        assert!(lines[0].line.ends_with('…'));
        assert!(
            lines[1].line.contains("1 record(s) cut"),
            "{}",
            lines[1].line
        );
    }

    #[test]
    fn line_ends_are_offsets_past_each_newline() {
        assert_eq!(
            split_lines_with_ends(&Bytes::from_static(b"ab\r\n\ncd")),
            [
                (4, "ab".to_owned()),
                (5, String::new()),
                (7, "cd".to_owned())
            ]
        );
    }

    #[test]
    fn output_splits_into_lines_and_invalid_utf8_is_replaced() {
        assert_eq!(
            split_lines(&Bytes::from_static(b"a\nb\r\n\nc")),
            ["a", "b", "", "c"]
        );
        assert_eq!(split_lines(&Bytes::from_static(b"one\n")), ["one"]);
        assert!(split_lines(&Bytes::new()).is_empty());
        assert_eq!(
            split_lines(&Bytes::from_static(b"bad \xff\xfe byte\x1b[2J")),
            ["bad \u{fffd}\u{fffd} byte\u{1b}[2J"]
        );
    }

    #[test]
    fn a_stream_at_the_capture_limit_gets_a_marker() {
        let c = Captured {
            tenant: "acme".into(),
            function: "f".into(),
            invocation_id: "i".into(),
            time: "t".into(),
            output: output(b"12345678", b"err\n"),
        };
        let lines = to_lines(&c, 8);
        let shown: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| (l.stream.as_str(), l.line.as_str()))
            .collect();
        assert_eq!(shown[0], ("stdout", "12345678"));
        assert_eq!(shown[1].0, "platform");
        assert!(shown[1]
            .1
            .contains("stdout reached the capture limit of 8 bytes"));
        assert_eq!(shown[2], ("stderr", "err"));
        assert_eq!(shown.len(), 3);
    }

    async fn wait_for_lines(store: &Store, n: usize) -> Vec<zerofn_store::LogLineRow> {
        for _ in 0..500 {
            let page = store
                .invocation_logs(LogQuery {
                    tenant: "acme".into(),
                    after: Some(0),
                    limit: 1000,
                    ..LogQuery::default()
                })
                .await
                .unwrap();
            if page.lines.len() >= n {
                return page.lines;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("fewer than {n} lines were stored");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn submitted_output_is_stored_by_the_writer_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let logs = InvocationLogs::start(&store, LogRetention::default(), 1024).unwrap();
        logs.submit("acme", "f", "inv-1", output(b"hello\nworld\n", b"oops\n"));
        // A silent stream adds no line.
        logs.submit("acme", "f", "inv-3", output(b"", b"only stderr"));
        // Nothing to store: nothing queued.
        logs.submit("acme", "f", "inv-2", output(b"", b""));
        let lines = wait_for_lines(&store, 4).await;
        let shown: Vec<(&str, &str, &str)> = lines
            .iter()
            .map(|l| (l.invocation_id.as_str(), l.stream.as_str(), l.line.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("inv-1", "stdout", "hello"),
                ("inv-1", "stdout", "world"),
                ("inv-1", "stderr", "oops"),
                ("inv-3", "stderr", "only stderr")
            ]
        );
    }

    /// A full queue drops output without waiting, counts it, and the next
    /// batch says so in the function's own log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_drops_counts_and_leaves_a_marker() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let logs = InvocationLogs::start(&store, LogRetention::default(), 1 << 20).unwrap();
        // More bytes than the queue holds, in one submission: dropped at once.
        let huge = vec![b'x'; QUEUE_BYTES + 1];
        let started = Instant::now();
        logs.submit("acme", "f", "inv-big", output(&huge, b""));
        assert!(started.elapsed() < Duration::from_secs(1), "submit waited");
        assert_eq!(logs.queued_bytes.load(Ordering::Acquire), 0);
        // The next output is stored, with the marker before it.
        logs.submit("acme", "f", "inv-next", output(b"after\n", b""));
        let lines = wait_for_lines(&store, 2).await;
        assert_eq!(lines[0].stream, "platform");
        assert_eq!(lines[0].invocation_id, "inv-big");
        assert!(
            lines[0].line.contains("output of 1 invocation(s)"),
            "{}",
            lines[0].line
        );
        assert_eq!(lines[1].line, "after");
        assert!(logs.dropped.lock().unwrap().is_empty());
    }
}
