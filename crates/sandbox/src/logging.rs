//! Host side of `wasi:logging/logging@0.1.0-draft`: a guest's log lines,
//! kept with the invocation beside its stdout and stderr.
//!
//! `log(level, context, message)` appends one [`LogRecord`] to the
//! invocation's [`GuestLog`]; the platform stores the records with the
//! invocation's output (`zerofn logs`, stream `log`). Nothing is decided
//! and nothing is audited per line: logging to one's own invocation log
//! crosses no trust boundary (the lines are readable only by whoever may
//! read the function's stdout), so every guest that imports the interface
//! may call it, and a guest that does not import it is unaffected.
//!
//! A call is cheap and never waits: no await, no storage, no audit record.
//! It takes three uncontended locks (the log, and stdout's and stderr's
//! pipes to read how much the guest had written, which places the record
//! among the stream's lines) and copies at most the bounded prefix of each
//! string out of the guest's memory.
//!
//! # Trust
//! Trusts nothing from the guest. What the host holds is bounded whatever
//! the guest does:
//! - each message is cut at [`MAX_MESSAGE_BYTES`] and each context at
//!   [`MAX_CONTEXT_BYTES`] (at a character boundary, marked with `…`)
//!   *before* it is copied: the strings are read in place from the guest's
//!   linear memory ([`WasmStr`]), so a 100 MiB message costs the host at
//!   most the cap (a guest using the UTF-16 string encoding is the
//!   exception: wasmtime decodes its whole string once, transiently, within
//!   the size of its own memory);
//! - an invocation keeps at most [`MAX_RECORDS`] records and at most its
//!   byte limit (the sandbox's per-stream capture limit, counting each
//!   record's message, context and [`RECORD_OVERHEAD`]); later calls are
//!   counted and dropped. The limit is reserved in the invocation's host
//!   budget up front, like stdout's and stderr's.
//!
//! The text is a guest's and is stored as it came (valid UTF-8, the
//! canonical ABI guarantees it), never interpreted; whoever prints it to a
//! terminal escapes it, as for stdout.

use std::sync::{Arc, Mutex, PoisonError};

use wasmtime::component::{Linker, WasmStr};
use wasmtime::{AsContext, StoreContextMut};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::OutputStream as _;

use crate::kv_config_bindings::generated::wasi::logging::logging::Level;

/// The interface as guests import it.
pub const INTERFACE: &str = "wasi:logging/logging@0.1.0-draft";
/// Longest message kept, in bytes; a longer one is cut.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;
/// Longest context kept, in bytes; a longer one is cut.
pub const MAX_CONTEXT_BYTES: usize = 256;
/// Most records one invocation keeps.
pub const MAX_RECORDS: usize = 1024;
/// What each record counts against the byte limit beyond its text: the
/// record itself and its two allocations.
pub const RECORD_OVERHEAD: usize = 64;

/// Marks a message or context that was cut.
const CUT_MARK: char = '…';

/// A `wasi:logging` level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

impl LogLevel {
    /// The level's WIT name (`trace` ... `critical`), as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        }
    }
}

impl From<Level> for LogLevel {
    fn from(level: Level) -> LogLevel {
        match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
            Level::Critical => LogLevel::Critical,
        }
    }
}

/// Where a record falls among the invocation's stdout and stderr: the
/// bytes of each the guest had written when it made the call (the bytes
/// captured, so at most the capture limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamPosition {
    pub stdout: usize,
    pub stderr: usize,
}

/// One `log` call as kept: the guest's text, bounded, and when it came
/// relative to stdout and stderr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub level: LogLevel,
    pub context: String,
    pub message: String,
    pub at: StreamPosition,
}

/// An invocation's `wasi:logging` records, in call order, within its
/// limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestLog {
    records: Vec<LogRecord>,
    /// Bytes counted against `limit_bytes`.
    bytes: usize,
    limit_bytes: usize,
    /// Records whose message or context was cut.
    cut: u64,
    /// Calls not kept: the invocation's record or byte limit was reached.
    dropped: u64,
}

impl GuestLog {
    /// An empty log that keeps at most `limit_bytes` (and [`MAX_RECORDS`]).
    pub fn new(limit_bytes: usize) -> GuestLog {
        GuestLog {
            limit_bytes,
            ..GuestLog::default()
        }
    }

    /// The records kept, in call order.
    pub fn records(&self) -> &[LogRecord] {
        &self.records
    }

    /// Bytes the records count against the limit.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The byte limit this log was made with.
    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    /// Records kept with their message or context cut.
    pub fn cut(&self) -> u64 {
        self.cut
    }

    /// Calls not kept because a limit was reached.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Nothing was logged (and nothing dropped).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.dropped == 0
    }

    /// Whether no further record can be kept: every later call is dropped
    /// without reading its strings.
    fn is_full(&self) -> bool {
        self.records.len() >= MAX_RECORDS
            || self.bytes.saturating_add(RECORD_OVERHEAD) > self.limit_bytes
    }

    /// Keep one call made at `at`, cutting `context` and `message` to their
    /// caps, or count it as dropped when it does not fit.
    pub fn record(&mut self, level: LogLevel, context: &str, message: &str, at: StreamPosition) {
        if self.is_full() {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        let (context, context_cut) = bounded(context, MAX_CONTEXT_BYTES);
        let (message, message_cut) = bounded(message, MAX_MESSAGE_BYTES);
        self.keep(
            LogRecord {
                level,
                context,
                message,
                at,
            },
            context_cut || message_cut,
        );
    }

    fn keep(&mut self, record: LogRecord, cut: bool) {
        let cost = record
            .context
            .len()
            .saturating_add(record.message.len())
            .saturating_add(RECORD_OVERHEAD);
        let total = self.bytes.saturating_add(cost);
        if self.records.len() >= MAX_RECORDS || total > self.limit_bytes {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        self.bytes = total;
        if cut {
            self.cut = self.cut.saturating_add(1);
        }
        self.records.push(record);
    }
}

/// `text` cut to at most `max` bytes at a character boundary, with
/// [`CUT_MARK`] in place of what was left out (within the `max` bytes);
/// and whether it was cut.
fn bounded(text: &str, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text.to_owned(), false);
    }
    let keep = text.floor_char_boundary(max.saturating_sub(CUT_MARK.len_utf8()));
    let mut out = String::with_capacity(max);
    out.push_str(text.get(..keep).unwrap_or_default());
    out.push(CUT_MARK);
    (out, true)
}

/// The invocation's log, shared between the guest's store (which appends)
/// and the invocation (which reads it once the guest stopped, whether it
/// returned, trapped or was aborted); with the invocation's stdout and
/// stderr pipes, to read how much of each the guest had written.
#[derive(Clone, Debug)]
pub(crate) struct LogCapture {
    log: Arc<Mutex<GuestLog>>,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    /// The pipes' capacity.
    capture_limit: usize,
}

impl LogCapture {
    /// A log of at most `capture_limit` bytes for an invocation writing to
    /// `stdout` and `stderr`, each of that capacity.
    pub(crate) fn new(
        capture_limit: usize,
        stdout: MemoryOutputPipe,
        stderr: MemoryOutputPipe,
    ) -> LogCapture {
        LogCapture {
            log: Arc::new(Mutex::new(GuestLog::new(capture_limit))),
            stdout,
            stderr,
            capture_limit,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut GuestLog) -> R) -> R {
        // A panic while holding the lock leaves a consistent log (every
        // update is a push or a counter): keep using it.
        f(&mut self.log.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// How much the guest has written to stdout and stderr so far: the
    /// pipe's capacity less the room it has left (full once it refuses).
    fn position(&mut self) -> StreamPosition {
        let limit = self.capture_limit;
        let written = |pipe: &mut MemoryOutputPipe| match pipe.check_write() {
            Ok(room) => limit.saturating_sub(room),
            Err(_) => limit,
        };
        StreamPosition {
            stdout: written(&mut self.stdout),
            stderr: written(&mut self.stderr),
        }
    }

    /// The records so far.
    pub(crate) fn contents(&self) -> GuestLog {
        self.with(|log| log.clone())
    }
}

/// `log` as linked: the strings are read in place from the guest's memory
/// and copied only up to their caps.
fn log_call<T>(
    mut cx: StoreContextMut<'_, T>,
    view: fn(&mut T) -> &mut LogCapture,
    level: Level,
    context: &WasmStr,
    message: &WasmStr,
) -> wasmtime::Result<()> {
    // Once the log is full, a call costs one lock and a counter: its
    // strings are neither validated nor copied.
    let full = view(cx.data_mut()).with(|log| {
        let full = log.is_full();
        if full {
            log.dropped = log.dropped.saturating_add(1);
        }
        full
    });
    if full {
        return Ok(());
    }
    let at = view(cx.data_mut()).position();
    // Held apart from the store while the strings are read from it.
    let capture = view(cx.data_mut()).clone();
    // A string that is not valid in the guest's encoding is a canonical
    // ABI violation: wasmtime's error traps the guest.
    let (context, context_cut) = bounded(&context.to_str(cx.as_context())?, MAX_CONTEXT_BYTES);
    let (message, message_cut) = bounded(&message.to_str(cx.as_context())?, MAX_MESSAGE_BYTES);
    let record = LogRecord {
        level: level.into(),
        context,
        message,
        at,
    };
    capture.with(|log| log.keep(record, context_cut || message_cut));
    Ok(())
}

/// Link `wasi:logging/logging@0.1.0-draft` into `linker`. Components that
/// do not import it are unaffected.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> &mut LogCapture,
) -> wasmtime::Result<()> {
    linker.instance(INTERFACE)?.func_wrap(
        "log",
        move |cx: StoreContextMut<'_, T>, (level, context, message): (Level, WasmStr, WasmStr)| {
            log_call(cx, view, level, &context, &message)
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_boundary_and_marked() {
        assert_eq!(bounded("short", 8), ("short".to_owned(), false));
        let (cut, was_cut) = bounded("aaaaaaaaaa", 8);
        assert!(was_cut);
        assert_eq!(cut, "aaaaa…");
        assert!(cut.len() <= 8);
        // `é` is two bytes: never split.
        let (cut, _) = bounded("ééééé", 6);
        assert_eq!(cut, "é…");
    }

    #[test]
    fn records_are_kept_within_the_byte_and_line_limits() {
        let at = StreamPosition {
            stdout: 3,
            stderr: 4,
        };
        // Each record counts 3 + 8 bytes of text and the overhead: room for three.
        let mut log = GuestLog::new(3 * (RECORD_OVERHEAD + 11));
        for i in 0..5 {
            log.record(LogLevel::Info, "ctx", &format!("line {i:03}"), at);
        }
        assert_eq!(log.records().len(), 3);
        assert_eq!(log.dropped(), 2);
        assert_eq!(log.records()[2].message, "line 002");
        assert_eq!(log.records()[2].at, at);
        assert!(log.bytes() <= log.limit_bytes());

        let mut log = GuestLog::new(usize::MAX);
        for _ in 0..MAX_RECORDS + 7 {
            log.record(LogLevel::Trace, "", "", at);
        }
        assert_eq!(log.records().len(), MAX_RECORDS);
        assert_eq!(log.dropped(), 7);
    }

    #[test]
    fn a_huge_message_is_cut_and_counted() {
        let mut log = GuestLog::new(64 * 1024);
        let huge = "x".repeat(10 * MAX_MESSAGE_BYTES);
        let context = "c".repeat(MAX_CONTEXT_BYTES + 1);
        log.record(
            LogLevel::Critical,
            &context,
            &huge,
            StreamPosition::default(),
        );
        let r = &log.records()[0];
        assert_eq!(r.level, LogLevel::Critical);
        assert!(r.message.len() <= MAX_MESSAGE_BYTES && r.message.ends_with('…'));
        assert!(r.context.len() <= MAX_CONTEXT_BYTES && r.context.ends_with('…'));
        assert_eq!(log.cut(), 1);
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn levels_have_their_wit_names() {
        let names: Vec<&str> = [
            LogLevel::Trace,
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
            LogLevel::Critical,
        ]
        .into_iter()
        .map(LogLevel::as_str)
        .collect();
        assert_eq!(
            names,
            ["trace", "debug", "info", "warn", "error", "critical"]
        );
    }
}
