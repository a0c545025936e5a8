//! The one place invocation failures become HTTP responses.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use zerofn_sandbox::InvokeError;
use zerofn_types::InvocationId;

/// A JSON error body `{"error":{"kind","message","invocation_id"}}`.
pub fn error_response(
    status: StatusCode,
    kind: &str,
    message: &str,
    invocation_id: Option<&InvocationId>,
) -> Response<Bytes> {
    let mut error = serde_json::json!({ "kind": kind, "message": message });
    if let (Some(id), Some(obj)) = (invocation_id, error.as_object_mut()) {
        obj.insert("invocation_id".into(), id.as_str().into());
    }
    let body = serde_json::json!({ "error": error }).to_string();
    let mut resp = Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Status for a failed invocation. Guest-caused failures are 5xx: the
/// caller did nothing wrong.
pub(crate) fn invoke_status(e: &InvokeError) -> StatusCode {
    match e {
        InvokeError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        InvokeError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        InvokeError::GuestError(_) | InvokeError::ResponseTooLarge { .. } => {
            StatusCode::BAD_GATEWAY
        }
        InvokeError::MemoryLimit { .. }
        | InvokeError::Trap { .. }
        | InvokeError::NoResponse
        | InvokeError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
