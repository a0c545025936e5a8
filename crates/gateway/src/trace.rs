//! The invocation's spans (OpenTelemetry, through `zerofn-telemetry`):
//! which span the gateway starts where, the attributes it gives them (the
//! FaaS and HTTP semantic conventions, and the platform's own `zerofn.*`:
//! the function's SPIFFE ID, the verified caller, the decision and its
//! policies), the `traceparent` the platform sets on what it sends, and
//! the trace id in the invocation's audit record.
//!
//! # Trust
//! A caller's `traceparent` only places the platform's spans in the
//! caller's trace (it is read strictly; an invalid one starts a new
//! trace); it decides nothing. A guest's own `traceparent`/`tracestate` on
//! an outbound request or a function call is replaced by the platform's:
//! the guest may continue its own trace, not claim a parent outside it,
//! so what a collector shows as the child of an invocation was caused by
//! it. Attributes carry ids, names and decisions, never header values,
//! bodies, query strings or secrets.
//!
//! With tracing off no span exists: [`Span`] is empty, each helper returns
//! at its first check, and headers are left as the guest wrote them.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, HeaderValue};
use zerofn_audit::AuditRecord;
use zerofn_policy::Decision;
use zerofn_sandbox::LoadedFunction;
use zerofn_telemetry::{Span, SpanContext, TraceId, TraceParent, TRACEPARENT, TRACESTATE};
use zerofn_types::InvocationId;

use crate::caller::Caller;

/// The key of the trace id in an invocation record's detail.
pub const TRACE_ID_FIELD: &str = "trace_id";

/// The trace id an invocation's audit records name, if tracing is on and
/// the id can be met outside the record: the trace is recorded (sampled), or
/// it was begun elsewhere (a caller's `traceparent`, an event's stored
/// context). What the invoke path passes to every place that writes one of
/// the invocation's records; the invocation's own record also names a trace
/// the invocation passed on ([`passed_on_trace_id`]).
///
/// Why not always: a trace this platform began, did not record and never
/// passed on is a random number nothing else holds; carrying it through the
/// log (the record, its journal block, its row and indexes, its leaf) was
/// about a point of the platform's throughput on every such request, most
/// of them at the default 5% sampling (BENCHMARKS.md, "The trace id where it
/// can be met").
///
/// Why passed, not a task-local: the invocation future would have to run
/// inside the task-local's scope, and with tracing on every request has a
/// trace id, so every request paid for a boxed scope around its whole
/// invocation future (the future moved to the heap, and moved again on
/// each wrapping) even when nothing was recorded: most of an unrecorded
/// request's cost (BENCHMARKS.md, "Tracing on and off").
pub(crate) fn trace_id(span: &Span) -> Option<TraceId> {
    span.context()
        .filter(|c| c.sampled || c.continued)
        .map(|c| c.trace_id)
}

/// The trace id of `span`'s trace whether or not it is recorded, if tracing
/// is on: for the record of an invocation whose guest may have passed the
/// trace on (a host call: an outbound request, a function call, a message,
/// a write whose change or event is delivered later, all carrying it), or
/// that ended without its own record (the caller went away).
pub(crate) fn passed_on_trace_id(span: &Span) -> Option<TraceId> {
    span.context().map(|c| c.trace_id)
}

/// `record` with `trace`'s id in its detail.
pub(crate) fn with_trace(record: AuditRecord, trace: Option<TraceId>) -> AuditRecord {
    match trace {
        Some(id) => record.detail_field(TRACE_ID_FIELD, id.to_hex().into()),
        None => record,
    }
}

/// The CloudEvents distributed-tracing extension's attributes in binary
/// mode, as `zerofn-events` writes them on a delivery.
pub const EVENT_TRACEPARENT: &str = "ce-traceparent";
pub const EVENT_TRACESTATE: &str = "ce-tracestate";

/// The producer's trace context a delivered event carries
/// ([`EVENT_TRACEPARENT`], [`EVENT_TRACESTATE`]: what the queue stored at
/// publish), read as strictly as a caller's `traceparent`: the delivery
/// continues that trace, following its sampled flag; an invalid one starts
/// a new trace.
pub(crate) fn event_parent(headers: &HeaderMap) -> Option<TraceParent> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    TraceParent::from_values(text(EVENT_TRACEPARENT)?, text(EVENT_TRACESTATE))
}

/// The W3C headers as names built once (a `&str` name is parsed on every
/// use).
const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static(TRACEPARENT);
const TRACESTATE_HEADER: HeaderName = HeaderName::from_static(TRACESTATE);

/// Set `ctx` as the `traceparent` (and its `tracestate`) of a request the
/// platform passes on, replacing whatever was there. `insert` replaces
/// every value of the header; the value is printed on the stack.
pub(crate) fn propagate(ctx: Option<&SpanContext>, headers: &mut HeaderMap) {
    let Some(ctx) = ctx else { return };
    match HeaderValue::from_bytes(&ctx.traceparent_bytes()) {
        Ok(v) => {
            headers.insert(TRACEPARENT_HEADER, v);
        }
        // Hex digits and dashes are always a valid value; were it not, no
        // `traceparent` is better than the guest's.
        Err(_) => {
            headers.remove(TRACEPARENT_HEADER);
        }
    }
    match ctx
        .state
        .as_deref()
        .and_then(|state| HeaderValue::from_str(state).ok())
    {
        Some(v) => {
            headers.insert(TRACESTATE_HEADER, v);
        }
        None => {
            headers.remove(TRACESTATE_HEADER);
        }
    }
}

/// A method's name for a span's name or attribute: the standard methods
/// as static text (no allocation per span), any other copied.
pub(crate) fn method_name(method: &http::Method) -> Cow<'static, str> {
    use http::Method;
    let name = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return Cow::Owned(method.as_str().to_owned()),
    };
    Cow::Borrowed(name)
}

/// The routed function on the invocation's SERVER span: its name, the FaaS
/// attributes, the request's HTTP attributes.
pub(crate) fn routed(
    span: &mut Span,
    function: &LoadedFunction,
    identity: &dyn crate::host::WorkloadIdentity,
    id: &InvocationId,
    trigger: &'static str,
) {
    if !span.is_recording() {
        return;
    }
    let manifest = function.artifact().manifest();
    span.rename(format!(
        "invoke {}/{}",
        manifest.tenant.as_str(),
        manifest.name.as_str()
    ));
    span.set("faas.invocation_id", id.as_str().to_owned());
    span.set("faas.name", manifest.name.as_str().to_owned());
    span.set("faas.trigger", trigger);
    span.set("zerofn.tenant", manifest.tenant.as_str().to_owned());
    span.set("zerofn.digest", function.artifact().digest().to_string());
    if let Some(spiffe_id) = identity.spiffe_id(&manifest.tenant, &manifest.name) {
        span.set("zerofn.spiffe_id", spiffe_id);
    }
}

/// The HTTP request attributes of a SERVER span (method, path, host, peer).
pub(crate) fn http_request(
    span: &mut Span,
    method: &http::Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    ip: Option<std::net::IpAddr>,
) {
    if !span.is_recording() {
        return;
    }
    span.set("http.request.method", method_name(method));
    span.set("url.path", uri.path().to_owned());
    let host = uri.host().map(str::to_owned).or_else(|| {
        headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.rsplit_once(':').map_or(h, |(host, _)| host).to_owned())
    });
    if let Some(host) = host {
        span.set("server.address", host);
    }
    if let Some(ip) = ip {
        span.set("client.address", ip.to_string());
    }
}

/// The verified caller on `span`.
pub(crate) fn caller(span: &mut Span, caller: &Caller) {
    if !span.is_recording() {
        return;
    }
    span.set("zerofn.caller", caller.principal().describe());
    if let Caller::Function { spiffe_id, .. } = caller {
        span.set("zerofn.caller.spiffe_id", spiffe_id.to_string());
    }
}

/// A decision on `span`: allow or deny, and the determining policies.
pub(crate) fn decision(span: &mut Span, decision: &Decision) {
    if !span.is_recording() {
        return;
    }
    span.set(
        "zerofn.decision",
        if decision.is_allowed() {
            "allow"
        } else {
            "deny"
        },
    );
    span.set("zerofn.policy_ids", decision.determining().join(","));
}

/// The final status on the SERVER span; a 5xx marks it failed (HTTP
/// semantic conventions: a 4xx is the client's, not the server's, error).
pub(crate) fn status(span: &mut Span, status: http::StatusCode) {
    if !span.is_recording() {
        return;
    }
    span.set("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.fail(status.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerofn_audit::{Action, Outcome};
    use zerofn_telemetry::{OtlpConfig, Tracer};

    const GUEST_SAYS: &str = "00-11111111111111111111111111111111-2222222222222222-01";

    fn guest_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, GUEST_SAYS.parse().unwrap());
        h.insert(TRACESTATE, "forged=1".parse().unwrap());
        h
    }

    #[test]
    fn the_platform_replaces_a_guests_trace_context_and_leaves_it_alone_when_off() {
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let (tracer, _exporter) = Tracer::start(
            OtlpConfig::new("http://127.0.0.1:9", 1.0).unwrap(),
            shutdown,
        )
        .unwrap();
        let span = tracer.server_span("r", None);
        let mut h = guest_headers();
        propagate(span.context(), &mut h);
        let ctx = span.context().unwrap();
        assert_eq!(h.get(TRACEPARENT).unwrap(), ctx.traceparent().as_str());
        assert_ne!(h.get(TRACEPARENT).unwrap(), GUEST_SAYS);
        assert!(
            h.get(TRACESTATE).is_none(),
            "the guest's tracestate is not passed on"
        );
        assert_eq!(h.get_all(TRACEPARENT).iter().count(), 1);

        let mut off = guest_headers();
        propagate(Span::none().context(), &mut off);
        assert_eq!(
            off,
            guest_headers(),
            "tracing off leaves the headers as they were"
        );
    }

    #[test]
    fn records_of_a_traced_invocation_name_its_trace_and_others_do_not() {
        let record = || AuditRecord::new("gateway", Action::Invoke, Outcome::Deny);
        let id = zerofn_telemetry::TraceParent::parse(GUEST_SAYS)
            .unwrap()
            .trace_id;
        let traced = with_trace(record(), Some(id));
        assert_eq!(
            traced.detail_value().unwrap()[TRACE_ID_FIELD],
            "11111111111111111111111111111111"
        );
        // Untraced (or tracing off): nothing is added.
        assert_eq!(with_trace(record(), None), record());
        // An unsampled trace begun here is named only once passed on; a
        // caller's, sampled or not, always.
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let (never, _exporter) = Tracer::start(
            OtlpConfig::new("http://127.0.0.1:9", 0.0)
                .unwrap()
                .with_min_per_second(0),
            shutdown,
        )
        .unwrap();
        let span = never.server_span("r", None);
        assert!(!span.is_recording());
        assert_eq!(trace_id(&span), None);
        assert_eq!(
            passed_on_trace_id(&span),
            Some(span.context().unwrap().trace_id)
        );
        let unsampled = GUEST_SAYS.replace("-01", "-00");
        let continued = never.server_span("r", zerofn_telemetry::TraceParent::parse(&unsampled));
        assert!(!continued.is_recording());
        assert_eq!(trace_id(&continued), Some(id));
        assert_eq!(trace_id(&Span::none()), None);
        assert_eq!(passed_on_trace_id(&Span::none()), None);
    }
}
