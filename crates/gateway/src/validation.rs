//! Request validation against the function's `[schema]` (JSON Schema, draft 2020-12),
//! after the invoke decision and before the function runs: the head (path, query,
//! headers) before the body is read, the body once it is.
//!
//! # Trust
//! Trusts `zerofn-validation` for the schemas' semantics and bounds. A refusal is one
//! audit record (`schema: body /items/0/qty: ...`) and a 400 `invalid_request` answer
//! naming the part, instance path, schema path and keyword, never a value from the
//! request.

use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use zerofn_audit::Outcome;
use zerofn_sandbox::LoadedFunction;
use zerofn_telemetry::TraceId;
use zerofn_types::InvocationId;
use zerofn_validation::{CompiledSchema, Invalid, RequestPart};

use crate::caller::Caller;
use crate::gateway::Gateway;
use crate::invoke::invoke_record;
use crate::limits::is_platform_header;

/// Validates a request head against the function's path, query and headers schemas. The
/// headers schema sees the headers the function will see, without the platform's own
/// (`x-zerofn-*`, which the platform sets itself).
pub(crate) fn validate_head(
    function: &LoadedFunction,
    parts: &http::request::Parts,
) -> Result<(), Invalid> {
    let schemas = &function.artifact().manifest().schema;
    if schemas.is_empty() {
        return Ok(());
    }
    let path = zerofn_admission::normalize_path(parts.uri.path())
        .map(|p| p.into_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    if schemas.get(RequestPart::Headers).is_some() {
        let mut headers = parts.headers.clone();
        let platform: Vec<header::HeaderName> = headers
            .keys()
            .filter(|n| is_platform_header(n.as_str()))
            .cloned()
            .collect();
        for name in platform {
            headers.remove(name);
        }
        schemas.validate_head(&path, parts.uri.query(), &headers)
    } else {
        schemas.validate_head(&path, parts.uri.query(), &http::HeaderMap::new())
    }
}

/// Marks the answer to an event refused because its data does not match its
/// trigger's schema: it can never be delivered as it is, so its source
/// dead-letters it instead of retrying. Set only by the platform, in the
/// response's extensions, which a function's answer cannot reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRefused;

/// The schema of the trigger that delivers `caller`'s event, if it declares one.
pub(crate) fn event_schema(function: &LoadedFunction, caller: &Caller) -> Option<CompiledSchema> {
    let Caller::Event { source, .. } = caller else {
        return None;
    };
    let (kind, name) = source.split_once('/')?;
    function
        .artifact()
        .manifest()
        .triggers
        .iter()
        .find_map(|t| match t {
            zerofn_admission::Trigger::Queue(q) if kind == "queue" && q.queue == name => {
                Some(q.schema.clone())
            }
            zerofn_admission::Trigger::Bucket(b) if kind == "bucket" && b.bucket == name => {
                Some(b.schema.clone())
            }
            _ => None,
        })
        .flatten()
}

/// Validates a request body against the function's body schema, if it has one.
pub(crate) fn validate_body(function: &LoadedFunction, body: &[u8]) -> Result<(), Invalid> {
    function.artifact().manifest().schema.validate_body(body)
}

impl Gateway {
    /// Records a refused request and answers 400 `invalid_request`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn refuse_invalid(
        &self,
        ip: Option<IpAddr>,
        function: &LoadedFunction,
        caller: &Caller,
        id: &InvocationId,
        trace_id: Option<TraceId>,
        started: Instant,
        invalid: &Invalid,
        invoke_decision: serde_json::Value,
    ) -> Response<Bytes> {
        let status = match invalid.reason {
            zerofn_validation::InvalidReason::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        let record = invoke_record(function, id, started, Outcome::Deny, status.as_u16())
            .reason(invalid.audit_reason())
            .detail(serde_json::json!({
                "caller": caller.json(),
                "depth": 0,
                "decisions": [invoke_decision],
                "schema": {"part": invalid.part.as_str(), "errors": invalid.violations()},
            }));
        let refused = self
            .refuse(
                ip,
                record,
                id,
                trace_id,
                status,
                "invalid_request",
                &invalid.to_string(),
            )
            .await;
        if refused.status() != status {
            // The record could not be written: that answer stands.
            return refused;
        }
        let mut error = invalid.error_json();
        if let Some(obj) = error.as_object_mut() {
            obj.insert("invocation_id".into(), id.as_str().into());
        }
        let mut resp = Response::new(Bytes::from(
            serde_json::json!({ "error": error }).to_string(),
        ));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}
