//! Spans: started from a caller's trace context or a new trace, ended on
//! drop, and queued for export without waiting.
//!
//! With tracing off every [`Span`] is empty: no id is drawn, no clock is
//! read, nothing is allocated, and every method returns at its first
//! branch. A span of a trace that is not sampled carries ids (they are
//! propagated, so the trace stays one) but records nothing.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::context::{ascii_string, SpanId, TraceId, TraceParent};
use crate::export::Shared;

/// What a span is to the trace (`Span.SpanKind` in OTLP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    /// Handling a request from a caller (the gateway's span).
    Server = 2,
    /// A request the platform makes (outbound requests, function calls).
    Client = 3,
    /// A message the platform queues for later delivery.
    Producer = 4,
}

/// An attribute value. Keys are `&'static str` and so are most text
/// values (kinds, decisions, method names): those are borrowed, never
/// copied; only values made per request (ids, names, addresses) own text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Cow<'static, str>),
    Int(i64),
    Bool(bool),
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(Cow::Owned(v))
    }
}
impl From<&'static str> for Value {
    fn from(v: &'static str) -> Value {
        Value::Str(Cow::Borrowed(v))
    }
}
impl From<Cow<'static, str>> for Value {
    fn from(v: Cow<'static, str>) -> Value {
        Value::Str(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<u16> for Value {
    fn from(v: u16) -> Value {
        Value::Int(i64::from(v))
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Value {
        Value::Int(i64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

/// Where a span sits in its trace: what is propagated to others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
    /// The trace was begun elsewhere: continued from a caller's `traceparent`
    /// (or an event's stored one), so it is known outside this platform
    /// whether or not it is sampled.
    pub continued: bool,
    /// The caller's `tracestate`, passed on unchanged.
    pub state: Option<Arc<str>>,
}

impl SpanContext {
    /// This context as a W3C `traceparent` value (version 00).
    pub fn traceparent(&self) -> String {
        ascii_string(&self.traceparent_bytes())
    }

    /// The same value as ASCII bytes on the stack: what the gateway sets on
    /// the guest's request and on each request it passes on, sampled or not,
    /// without a string built and checked for each.
    pub fn traceparent_bytes(&self) -> [u8; TRACEPARENT_LEN] {
        let mut out = [0u8; TRACEPARENT_LEN];
        let flags: &[u8; 2] = if self.sampled { b"01" } else { b"00" };
        // version "00" - 32 hex trace-id - 16 hex parent-id - flags (§3.2.2)
        put(&mut out, 0, b"00-");
        put(&mut out, 3, &self.trace_id.hex_bytes());
        put(&mut out, 35, b"-");
        put(&mut out, 36, &self.span_id.hex_bytes());
        put(&mut out, 52, b"-");
        put(&mut out, 53, flags);
        out
    }

    /// This span as the parent of work it causes later, elsewhere (an
    /// event a write emits): what a delivery reading the stored value back
    /// continues, sampled as this span is.
    pub fn as_parent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            parent_id: self.span_id,
            flags: u8::from(self.sampled),
            state: self.state.clone(),
        }
    }
}

/// Length of a version-00 `traceparent` value.
pub const TRACEPARENT_LEN: usize = 55;

/// Copy `src` into `out` at `at`; the callers' constant offsets always fit
/// (nothing is written otherwise, never a panic).
fn put(out: &mut [u8], at: usize, src: &[u8]) {
    if let Some(dst) = at
        .checked_add(src.len())
        .and_then(|end| out.get_mut(at..end))
    {
        dst.copy_from_slice(src);
    }
}

/// A handle on a span that others may start children of: the span's
/// context and, when its trace is sampled, where its spans go.
#[derive(Clone)]
pub struct TraceHandle {
    ctx: SpanContext,
    recorder: Option<Recorder>,
}

/// What the spans of one sampled trace share: the exporter's queue and
/// the trace's clock.
#[derive(Clone)]
struct Recorder {
    shared: Arc<Shared>,
    clock: TraceClock,
}

/// The wall-clock time of one instant of the monotonic clock, read once
/// when the platform's first span of a trace starts: every later time of
/// the trace is that plus a monotonic distance, so a span costs one
/// monotonic clock read at its start and one at its end (none at all when
/// the gateway already measured the instant), and the spans of a trace
/// stay ordered even if the wall clock is stepped meanwhile.
#[derive(Clone, Copy)]
struct TraceClock {
    at: Instant,
    unix_nanos: u64,
}

impl TraceClock {
    fn now() -> TraceClock {
        let at = Instant::now();
        let unix_nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        TraceClock { at, unix_nanos }
    }

    /// `t` in nanoseconds since the Unix epoch.
    fn unix_nanos(&self, t: Instant) -> u64 {
        let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        if t >= self.at {
            self.unix_nanos.saturating_add(nanos(t - self.at))
        } else {
            self.unix_nanos.saturating_sub(nanos(self.at - t))
        }
    }
}

impl TraceHandle {
    pub fn context(&self) -> &SpanContext {
        &self.ctx
    }

    /// A new span under this one, started now.
    pub fn child(&self, name: impl Into<Cow<'static, str>>, kind: SpanKind) -> Span {
        let ctx = SpanContext {
            trace_id: self.ctx.trace_id,
            span_id: SpanId::random(),
            sampled: self.ctx.sampled,
            // A SERVER span under this one is the trace reaching another
            // service (a function called by a function): begun elsewhere.
            continued: self.ctx.continued || kind == SpanKind::Server,
            state: self.ctx.state.clone(),
        };
        let rec = self.recorder.as_ref().map(|_| {
            Box::new(Recording {
                parent: Some(self.ctx.span_id),
                name: name.into(),
                kind,
                start: Instant::now(),
                attrs: Vec::with_capacity(CHILD_ATTRIBUTES),
                error: None,
            })
        });
        Span {
            handle: Some(TraceHandle {
                ctx,
                recorder: self.recorder.clone(),
            }),
            rec,
        }
    }
}

/// Room for the attributes of a span inside a request (the gateway sets at
/// most four on them) and of a SERVER span (up to sixteen): one allocation
/// per span, not one per growth.
const CHILD_ATTRIBUTES: usize = 4;
const SERVER_ATTRIBUTES: usize = 16;

/// One span, ended (and queued for export) when dropped or by [`Span::end_at`].
#[derive(Default)]
pub struct Span {
    handle: Option<TraceHandle>,
    rec: Option<Box<Recording>>,
}

/// A sampled span's data until it ends (where it goes is in its handle).
struct Recording {
    parent: Option<SpanId>,
    name: Cow<'static, str>,
    kind: SpanKind,
    start: Instant,
    attrs: Vec<(&'static str, Value)>,
    error: Option<String>,
}

/// An ended span, as encoded into the export queue (on the thread that
/// ends it, then dropped there).
#[derive(Debug, Clone)]
pub(crate) struct FinishedSpan {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent: Option<SpanId>,
    pub(crate) state: Option<Arc<str>>,
    pub(crate) name: Cow<'static, str>,
    pub(crate) kind: SpanKind,
    /// Nanoseconds since the Unix epoch.
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) attrs: Vec<(&'static str, Value)>,
    pub(crate) error: Option<String>,
}

impl Span {
    /// No span: what every span is with tracing off.
    pub fn none() -> Span {
        Span::default()
    }

    /// The first span of a request arriving at the platform: a child of the
    /// caller's span when `parent` is its valid context (in the caller's
    /// trace, sampled as the caller decided), else the root of a new trace
    /// sampled by the tracer's sampler.
    pub(crate) fn server(
        shared: &Arc<Shared>,
        name: Cow<'static, str>,
        parent: Option<TraceParent>,
    ) -> Span {
        let continued = parent.is_some();
        let (trace_id, parent_id, sampled, state) = match parent {
            Some(p) => (p.trace_id, Some(p.parent_id), p.is_sampled(), p.state),
            None => {
                let id = TraceId::random();
                (id, None, shared.sampler.samples(&id), None)
            }
        };
        let ctx = SpanContext {
            trace_id,
            span_id: SpanId::random(),
            sampled,
            continued,
            state,
        };
        // An unsampled trace reads no clock and allocates nothing here.
        let recorder = sampled.then(|| Recorder {
            shared: shared.clone(),
            clock: TraceClock::now(),
        });
        let rec = recorder.as_ref().map(|r| {
            Box::new(Recording {
                parent: parent_id,
                name,
                kind: SpanKind::Server,
                start: r.clock.at,
                attrs: Vec::with_capacity(SERVER_ATTRIBUTES),
                error: None,
            })
        });
        Span {
            handle: Some(TraceHandle { ctx, recorder }),
            rec,
        }
    }

    /// This span's context, if tracing is on.
    pub fn context(&self) -> Option<&SpanContext> {
        self.handle.as_ref().map(|h| &h.ctx)
    }

    /// A handle others may start children from, if tracing is on.
    pub fn handle(&self) -> Option<TraceHandle> {
        self.handle.clone()
    }

    /// Whether attributes set on this span go anywhere: build costly
    /// values only when this is true.
    pub fn is_recording(&self) -> bool {
        self.rec.is_some()
    }

    /// A new span under this one, started now (none with tracing off).
    pub fn child(&self, name: impl Into<Cow<'static, str>>, kind: SpanKind) -> Span {
        match &self.handle {
            Some(h) => h.child(name, kind),
            None => Span::none(),
        }
    }

    /// Set an attribute (the last value of a key wins).
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(rec) = &mut self.rec {
            let value = value.into();
            match rec.attrs.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => rec.attrs.push((key, value)),
            }
        }
    }

    /// Rename the span (the gateway knows the function only after routing).
    pub fn rename(&mut self, name: impl Into<Cow<'static, str>>) {
        if let Some(rec) = &mut self.rec {
            rec.name = name.into();
        }
    }

    /// Mark the span failed (`Status.code = ERROR`) with a short message
    /// (a kind, never guest text or a secret).
    pub fn fail(&mut self, message: &str) {
        if let Some(rec) = &mut self.rec {
            rec.error = Some(message.to_owned());
        }
    }

    /// Move the span's start to `at` (a phase measured elsewhere).
    pub fn start_at(&mut self, at: Instant) {
        if let Some(rec) = &mut self.rec {
            rec.start = at;
        }
    }

    /// End the span at `at` instead of now.
    pub fn end_at(mut self, at: Instant) {
        self.finish(at);
    }

    fn finish(&mut self, end: Instant) {
        let Some(rec) = self.rec.take() else { return };
        let Some(TraceHandle {
            ctx,
            recorder: Some(recorder),
        }) = &self.handle
        else {
            return;
        };
        let Recording {
            parent,
            name,
            kind,
            start,
            attrs,
            error,
        } = *rec;
        recorder.shared.submit(&FinishedSpan {
            trace_id: ctx.trace_id,
            span_id: ctx.span_id,
            parent,
            state: ctx.state.clone(),
            name,
            kind,
            start: recorder.clock.unix_nanos(start),
            end: recorder.clock.unix_nanos(end.max(start)),
            attrs,
            error,
        });
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if self.rec.is_some() {
            self.finish(Instant::now());
        }
    }
}
