//! Functions publishing to their tenant's queues: `POST
//! http://queues.fn.internal/<queue>` with the message as the body. wasmtime 48
//! ships no `wasi:messaging` host, and the draft interface is not stable, so
//! publishing is a platform host under `*.fn.internal` (like the identity
//! endpoint): any wasi:http guest can use it, in every language.
//!
//! The queue is resolved in the calling function's own tenant (the guest names
//! only the queue), the publish is decided as `queue.publish` on
//! `Zerofn::Queue::"<tenant>/<queue>"` (granted by `[permissions] publish`) and
//! recorded like every capability, then handed to the platform's queues
//! ([`QueuePublisher`]), which check the message, record the publish and commit
//! it durably before the guest gets its `202`.
//!
//! # Trust
//! Trusts nothing in the request: the body is bounded before it is read
//! further, each header that becomes a CloudEvents attribute is checked by the
//! queues as any publish is.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::json;
use zerofn_policy::{RequestContext, Resource, RuntimeAction};
use zerofn_types::TenantName;

use super::InvocationHost;

/// Host name of the platform's queues for guests.
pub const QUEUES_HOST: &str = "queues.fn.internal";

/// Largest message body a function may publish (the queues' own limit).
pub const MAX_PUBLISH_BODY: usize = 256 * 1024;

/// A message a function publishes. Header-derived attributes are unchecked
/// text; the queues check them as they check every publish.
#[derive(Debug, Clone)]
pub struct OutgoingEvent {
    /// `ce-id`: the message id (a new one when absent).
    pub id: Option<String>,
    /// `ce-type`.
    pub event_type: Option<String>,
    /// `content-type` of the body.
    pub content_type: Option<String>,
    /// `x-zerofn-message-group`, for FIFO queues.
    pub group: Option<String>,
    pub data: Bytes,
    /// `traceparent` and `tracestate`: with tracing on, the platform's
    /// PRODUCER span of the publish (the guest's own are replaced, as on
    /// every request that leaves a guest); the delivery continues it.
    /// Unchecked here: the queue reads them strictly and ignores bad ones.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// Why the queues refused a publish: the status and kind the guest gets.
#[derive(Debug, Clone)]
pub struct PublishRefused {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
}

/// The platform's queues, as functions publish to them.
pub trait QueuePublisher: Send + Sync + 'static {
    /// Publish `event` to `queue` of `tenant`, recorded with `actor`; the id of the
    /// message once it is durable.
    fn publish<'a>(
        &'a self,
        actor: &'a str,
        tenant: &'a TenantName,
        queue: &'a str,
        event: OutgoingEvent,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<String, PublishRefused>> + Send + 'a>,
    >;
}

/// Header value as text, `Ok(None)` when absent, `Err` when it is not text.
fn header(request: &Request<Bytes>, name: &str) -> Result<Option<String>, String> {
    match request.headers().get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.to_owned()))
            .map_err(|_| format!("header `{name}` is not visible ASCII")),
    }
}

impl InvocationHost {
    /// `POST /<queue>` on the queues host: decide, record, publish.
    pub(super) async fn publish(&self, request: Request<Bytes>) -> Response<Bytes> {
        let answer = |status: StatusCode, kind: &str, message: &str| {
            crate::errors::error_response(status, kind, message, Some(&self.invocation_id))
        };
        let queue = request.uri().path().strip_prefix('/').unwrap_or("");
        if request.method() != http::Method::POST
            || zerofn_policy::permissions::valid_queue_name(queue).is_err()
        {
            return answer(
                StatusCode::NOT_FOUND,
                "not_found",
                "the queues endpoint serves POST /<queue> with the message as the body",
            );
        }
        if request.body().len() > MAX_PUBLISH_BODY {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "message_too_large",
                &format!(
                    "a message is at most {MAX_PUBLISH_BODY} bytes; this one has {}",
                    request.body().len()
                ),
            );
        }
        let headers = (|| {
            Ok::<_, String>(OutgoingEvent {
                id: header(&request, "ce-id")?,
                event_type: header(&request, "ce-type")?,
                content_type: header(&request, "content-type")?,
                group: header(&request, "x-zerofn-message-group")?,
                data: request.body().clone(),
                // Never a refusal: a trace context that is not text is no context.
                traceparent: header(&request, zerofn_telemetry::TRACEPARENT)
                    .ok()
                    .flatten(),
                tracestate: header(&request, zerofn_telemetry::TRACESTATE)
                    .ok()
                    .flatten(),
            })
        })();
        let event = match headers {
            Ok(e) => e,
            Err(why) => return answer(StatusCode::BAD_REQUEST, "bad_request", &why),
        };
        let resource = Resource::Queue {
            tenant: self.tenant().to_owned(),
            name: queue.to_owned(),
        };
        let bytes = u64::try_from(event.data.len()).unwrap_or(u64::MAX);
        let what = format!("queue.publish to queue `{queue}`");
        let authorized = match self
            .authorize(
                RuntimeAction::QueuePublish,
                resource,
                RequestContext::Publish { bytes },
                what,
            )
            .await
        {
            Ok(a) => a,
            Err(refusal) => {
                return answer(StatusCode::FORBIDDEN, "forbidden", &refusal.to_string())
            }
        };
        let Some(queues) = self.services.publisher.as_ref() else {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "this platform has no queues to publish to",
            );
        };
        let actor = authorized.caller.to_string();
        match queues
            .publish(&actor, &self.manifest().tenant, queue, event)
            .await
        {
            Ok(id) => {
                let body = json!({"queue": queue, "id": id}).to_string();
                Response::builder()
                    .status(StatusCode::ACCEPTED)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Bytes::from(body))
                    .unwrap_or_else(|_| Response::new(Bytes::new()))
            }
            Err(refused) => answer(
                StatusCode::from_u16(refused.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                refused.kind,
                &refused.message,
            ),
        }
    }
}
