//! A queue message as a CloudEvents 1.0 HTTP request in binary content mode
//! (CloudEvents HTTP protocol binding 1.0.2, §3.1): the event's attributes
//! in `ce-*` headers, its data as the body with its `content-type`.
//!
//! No crate is used: the `cloudevents-sdk` crate pulls in its own HTTP
//! client and server integrations; writing six headers from values this
//! crate has already checked (`queue.rs`: ids, types and groups are bounded
//! tokens, content types printable ASCII) needs none of that.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use zerofn_store::MessageRow;

use crate::queue::now_text;
use crate::schedule::{ScheduleBinding, SCHEDULE_EVENT_TYPE};

/// `ce-specversion`.
pub const SPEC_VERSION: &str = "1.0";
/// The extension attribute carrying the delivery attempt (1 for the first).
pub const ATTEMPT_HEADER: &str = "ce-zerofnattempt";
/// The CloudEvents distributed-tracing extension's attributes in binary
/// mode: the producer's W3C trace context.
pub const TRACEPARENT_ATTRIBUTE: &str = "ce-traceparent";
pub const TRACESTATE_ATTRIBUTE: &str = "ce-tracestate";

/// `ce-source` of a tenant's queue: a URI reference naming it.
pub fn source_uri(tenant: &str, queue: &str) -> String {
    format!("/zerofn/tenants/{tenant}/queues/{queue}")
}

/// The request delivering `message` of `tenant`'s `queue`, as attempt
/// `attempt`.
pub fn request(tenant: &str, queue: &str, message: &MessageRow) -> Request<Bytes> {
    let mut req = Request::new(Bytes::from(message.body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = http::Uri::from_static("/");
    let subject = message.group.as_deref().unwrap_or(queue);
    let headers = [
        ("ce-specversion", SPEC_VERSION.to_owned()),
        ("ce-id", message.id.clone()),
        ("ce-source", source_uri(tenant, queue)),
        ("ce-type", message.event_type.clone()),
        ("ce-time", now_text(message.published_at_ms)),
        ("ce-subject", subject.to_owned()),
        (ATTEMPT_HEADER, message.attempts.to_string()),
        ("content-type", message.content_type.clone()),
    ];
    let trace = trace_attributes(
        message.traceparent.as_deref(),
        message.tracestate.as_deref(),
    );
    for (name, value) in headers.into_iter().chain(trace) {
        // Every value was checked at publish; one that still fails to be a
        // header value is left out rather than sent altered.
        if let Ok(value) = HeaderValue::from_str(&value) {
            req.headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    req
}

/// The trace context an event stored (its producer's, or that of the
/// request whose write made it) as the CloudEvents distributed-tracing
/// extension's attributes (`ce-traceparent`, `ce-tracestate` in binary
/// mode): the gateway starts the delivery's span as its child, and the
/// function sees the event's origin. The HTTP `traceparent` of the
/// delivery itself is the gateway's to set. Nothing when none was stored.
pub(crate) fn trace_attributes<'a>(
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
) -> impl Iterator<Item = (&'static str, String)> + 'a {
    let state = traceparent.and(tracestate);
    [
        (TRACEPARENT_ATTRIBUTE, traceparent),
        (TRACESTATE_ATTRIBUTE, state),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value?.to_owned())))
}

/// `ce-source` of a schedule: `/zerofn/tenants/<tenant>/schedules/<function>-<name>`.
pub fn schedule_source_uri(tenant: &str, function: &str, name: &str) -> String {
    format!("/zerofn/tenants/{tenant}/schedules/{function}-{name}")
}

/// The request of `binding`'s fire at `at_ms` (its scheduled time, which is
/// `ce-time`), as event `event_id`: `ce-type` [`SCHEDULE_EVENT_TYPE`],
/// `ce-subject` the schedule's name, and a JSON body with the scheduled
/// time, the expression, its time zone and whether it catches up missed runs.
pub fn schedule_request(
    binding: &ScheduleBinding,
    event_id: &str,
    at_ms: u64,
    catch_up: bool,
) -> Request<Bytes> {
    let body = serde_json::json!({
        "scheduled_time": now_text(at_ms),
        "schedule": binding.schedule.expression(),
        "timezone": binding.schedule.timezone(),
        "catch_up": catch_up,
    });
    let mut req = Request::new(Bytes::from(body.to_string()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = http::Uri::from_static("/");
    let headers = [
        ("ce-specversion", SPEC_VERSION.to_owned()),
        ("ce-id", event_id.to_owned()),
        (
            "ce-source",
            schedule_source_uri(&binding.tenant, &binding.function, &binding.name),
        ),
        ("ce-type", SCHEDULE_EVENT_TYPE.to_owned()),
        ("ce-time", now_text(at_ms)),
        ("ce-subject", binding.name.clone()),
        (ATTEMPT_HEADER, "1".to_owned()),
        ("content-type", "application/json".to_owned()),
    ];
    for (name, value) in headers {
        // Names come from an admitted manifest (DNS labels); a value that
        // still fails to be a header value is left out rather than altered.
        if let Ok(value) = HeaderValue::from_str(&value) {
            req.headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_mode_headers() {
        let m = MessageRow {
            seq: 1,
            queue: "orders".into(),
            id: "m-1".into(),
            event_type: "com.example.order".into(),
            content_type: "application/json".into(),
            group: None,
            body: b"{}".to_vec(),
            published_at_ms: 1_700_000_000_123,
            visible_at_ms: 0,
            attempts: 2,
            last_error: None,
            source_queue: None,
            traceparent: None,
            tracestate: None,
        };
        let r = request("acme", "orders", &m);
        let h = |n: &str| r.headers().get(n).unwrap().to_str().unwrap().to_owned();
        assert_eq!(h("ce-specversion"), "1.0");
        assert_eq!(h("ce-id"), "m-1");
        assert_eq!(h("ce-source"), "/zerofn/tenants/acme/queues/orders");
        assert_eq!(h("ce-type"), "com.example.order");
        assert_eq!(h("ce-time"), "2023-11-14T22:13:20.123Z");
        assert_eq!(h("ce-subject"), "orders");
        assert_eq!(h("ce-zerofnattempt"), "2");
        assert_eq!(h("content-type"), "application/json");
        assert_eq!(r.body().as_ref(), b"{}");
        assert!(r.headers().get(TRACEPARENT_ATTRIBUTE).is_none());

        // A producer's trace context rides along as the distributed-tracing
        // extension's attributes.
        let traced = MessageRow {
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            tracestate: Some("vendor=1".into()),
            ..m
        };
        let r = request("acme", "orders", &traced);
        let h = |n: &str| r.headers().get(n).unwrap().to_str().unwrap().to_owned();
        assert_eq!(
            h("ce-traceparent"),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(h("ce-tracestate"), "vendor=1");
        assert!(
            r.headers().get("traceparent").is_none(),
            "the gateway sets it"
        );
    }

    #[test]
    fn schedule_fires_are_binary_mode_events_with_the_scheduled_time() {
        let b = ScheduleBinding {
            tenant: "acme".into(),
            function: "report".into(),
            name: "nightly".into(),
            source: "schedule/report-nightly".into(),
            schedule: zerofn_manifest::Schedule::parse("0 30 2 * * *", "Europe/Berlin").unwrap(),
            missed: zerofn_manifest::Missed::Skip,
        };
        let r = schedule_request(&b, &b.event_id(1_700_000_000_000), 1_700_000_000_000, true);
        let h = |n: &str| r.headers().get(n).unwrap().to_str().unwrap().to_owned();
        assert_eq!(h("ce-specversion"), "1.0");
        assert_eq!(h("ce-id"), "report-nightly-1700000000000");
        assert_eq!(
            h("ce-source"),
            "/zerofn/tenants/acme/schedules/report-nightly"
        );
        assert_eq!(h("ce-type"), "dev.zerofn.schedule.fired");
        assert_eq!(h("ce-time"), "2023-11-14T22:13:20Z");
        assert_eq!(h("ce-subject"), "nightly");
        assert_eq!(h("ce-zerofnattempt"), "1");
        assert_eq!(h("content-type"), "application/json");
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "scheduled_time": "2023-11-14T22:13:20Z",
                "schedule": "0 30 2 * * *",
                "timezone": "Europe/Berlin",
                "catch_up": true,
            })
        );
    }
}
