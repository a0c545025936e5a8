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
use std::future::Future;

use http::{HeaderMap, HeaderValue};
use zerofn_audit::AuditRecord;
use zerofn_policy::Decision;
use zerofn_sandbox::LoadedFunction;
use zerofn_telemetry::{Span, SpanContext, TraceId, TraceParent, TRACEPARENT, TRACESTATE};
use zerofn_types::InvocationId;

use crate::caller::Caller;

tokio::task_local! {
    /// The trace of the invocation this task serves, so every audit record
    /// of it (refusals included, wherever they are made on the invoke path)
    /// names the trace without the id threaded through each refusal.
    static INVOCATION_TRACE: Option<TraceId>;
}

/// Run `fut` as part of the invocation of `trace` (for its records). Only
/// traced invocations are run in a scope (outside one, nothing is added).
pub(crate) async fn scoped<F: Future>(trace: TraceId, fut: F) -> F::Output {
    INVOCATION_TRACE.scope(Some(trace), fut).await
}

/// The key of the trace id in an invocation record's detail.
pub const TRACE_ID_FIELD: &str = "trace_id";

/// `record` with the trace id of the invocation this task serves, if traced.
pub(crate) fn annotate(record: AuditRecord) -> AuditRecord {
    match INVOCATION_TRACE.try_with(|t| *t).ok().flatten() {
        Some(id) => with_trace(record, Some(id)),
        None => record,
    }
}

/// `record` with `trace`'s id in its detail.
pub(crate) fn with_trace(record: AuditRecord, trace: Option<TraceId>) -> AuditRecord {
    match trace {
        Some(id) => record.detail_field(TRACE_ID_FIELD, id.to_hex().into()),
        None => record,
    }
}

/// The trace id of the invocation this task serves, if any (for the
/// record of an invocation dropped before it was recorded).
pub(crate) fn current() -> Option<TraceId> {
    INVOCATION_TRACE.try_with(|t| *t).ok().flatten()
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

/// Set `ctx` as the `traceparent` (and its `tracestate`) of a request the
/// platform passes on, replacing whatever was there.
pub(crate) fn propagate(ctx: Option<&SpanContext>, headers: &mut HeaderMap) {
    let Some(ctx) = ctx else { return };
    headers.remove(TRACEPARENT);
    headers.remove(TRACESTATE);
    if let Ok(v) = HeaderValue::from_str(&ctx.traceparent()) {
        headers.insert(TRACEPARENT, v);
    }
    if let Some(state) = ctx.state.as_deref() {
        if let Ok(v) = HeaderValue::from_str(state) {
            headers.insert(TRACESTATE, v);
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

    #[tokio::test]
    async fn records_made_inside_a_traced_invocation_name_its_trace() {
        let record = || AuditRecord::new("gateway", Action::Invoke, Outcome::Deny);
        let id = zerofn_telemetry::TraceParent::parse(GUEST_SAYS)
            .unwrap()
            .trace_id;
        let inside = scoped(id, async { annotate(record()) }).await;
        let expected = record().detail_field(TRACE_ID_FIELD, id.to_hex().into());
        assert_eq!(inside, expected);
        // Outside a traced invocation (or with tracing off) nothing is added.
        assert_eq!(annotate(record()), record());
    }
}
