//! Spans: started from a caller's trace context or a new trace, ended on
//! drop, and queued for export without waiting.
//!
//! With tracing off every [`Span`] is empty: no id is drawn, no clock is
//! read, nothing is allocated, and every method returns at its first
//! branch. A span of a trace that is not sampled carries ids (they are
//! propagated, so the trace stays one) but records nothing.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::context::{SpanId, TraceId, TraceParent};
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

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.to_owned())
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
    /// The caller's `tracestate`, passed on unchanged.
    pub state: Option<Arc<str>>,
}

impl SpanContext {
    /// This context as a W3C `traceparent` value (version 00).
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id,
            self.span_id,
            if self.sampled { "01" } else { "00" }
        )
    }
}

/// A handle on a span that others may start children of: the span's
/// context and, when its trace is sampled, the exporter.
#[derive(Clone)]
pub struct TraceHandle {
    ctx: SpanContext,
    shared: Option<Arc<Shared>>,
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
            state: self.ctx.state.clone(),
        };
        let rec = self.shared.as_ref().map(|shared| {
            Box::new(Recording {
                shared: shared.clone(),
                parent: Some(self.ctx.span_id),
                name: name.into(),
                kind,
                start: SystemTime::now(),
                attrs: Vec::new(),
                error: None,
            })
        });
        Span {
            handle: Some(TraceHandle {
                ctx,
                shared: self.shared.clone(),
            }),
            rec,
        }
    }
}

/// One span, ended (and queued for export) when dropped or by [`Span::end_at`].
#[derive(Default)]
pub struct Span {
    handle: Option<TraceHandle>,
    rec: Option<Box<Recording>>,
}

/// A sampled span's data until it ends.
pub(crate) struct Recording {
    shared: Arc<Shared>,
    parent: Option<SpanId>,
    name: Cow<'static, str>,
    kind: SpanKind,
    start: SystemTime,
    attrs: Vec<(&'static str, Value)>,
    error: Option<String>,
}

/// An ended span, as queued for export.
#[derive(Debug, Clone)]
pub(crate) struct FinishedSpan {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent: Option<SpanId>,
    pub(crate) state: Option<Arc<str>>,
    pub(crate) name: Cow<'static, str>,
    pub(crate) kind: SpanKind,
    pub(crate) start: SystemTime,
    pub(crate) end: SystemTime,
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
    /// sampled by the tracer's ratio.
    pub(crate) fn server(
        shared: &Arc<Shared>,
        name: Cow<'static, str>,
        parent: Option<TraceParent>,
    ) -> Span {
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
            state,
        };
        let rec = sampled.then(|| {
            Box::new(Recording {
                shared: shared.clone(),
                parent: parent_id,
                name,
                kind: SpanKind::Server,
                start: SystemTime::now(),
                attrs: Vec::new(),
                error: None,
            })
        });
        Span {
            handle: Some(TraceHandle {
                ctx,
                shared: sampled.then(|| shared.clone()),
            }),
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
            rec.start = system_time(at);
        }
    }

    /// End the span at `at` instead of now.
    pub fn end_at(mut self, at: Instant) {
        self.finish(system_time(at));
    }

    fn finish(&mut self, end: SystemTime) {
        let (Some(rec), Some(handle)) = (self.rec.take(), &self.handle) else {
            return;
        };
        let Recording {
            shared,
            parent,
            name,
            kind,
            start,
            attrs,
            error,
        } = *rec;
        shared.submit(FinishedSpan {
            trace_id: handle.ctx.trace_id,
            span_id: handle.ctx.span_id,
            parent,
            state: handle.ctx.state.clone(),
            name,
            kind,
            start,
            end: end.max(start),
            attrs,
            error,
        });
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if self.rec.is_some() {
            self.finish(SystemTime::now());
        }
    }
}

/// The wall-clock time of `at`, from the monotonic clock's distance to now.
fn system_time(at: Instant) -> SystemTime {
    let now = Instant::now();
    let wall = SystemTime::now();
    if at <= now {
        wall.checked_sub(now.duration_since(at)).unwrap_or(wall)
    } else {
        wall.checked_add(at.duration_since(now)).unwrap_or(wall)
    }
}
