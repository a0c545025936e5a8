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
    // Typed, not a `json!` value: a refusal is the answer a flood of
    // over-limit requests gets, and building a map to print it cost about
    // as much as the rest of the refusal.
    #[derive(serde::Serialize)]
    struct Body<'a> {
        error: Error<'a>,
    }
    #[derive(serde::Serialize)]
    struct Error<'a> {
        kind: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        invocation_id: Option<&'a str>,
    }
    let body = Body {
        error: Error {
            kind,
            message,
            invocation_id: invocation_id.map(InvocationId::as_str),
        },
    };
    // Serializing borrowed strings into a Vec cannot fail.
    let body = serde_json::to_vec(&body).unwrap_or_default();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn body(resp: &Response<Bytes>) -> serde_json::Value {
        serde_json::from_slice(resp.body()).unwrap()
    }

    #[test]
    fn error_bodies_are_json_with_kind_message_and_the_invocation() {
        let id = InvocationId::new();
        let resp = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "a \"quoted\"\nmessage",
            Some(&id),
        );
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body(&resp),
            serde_json::json!({"error": {"kind": "rate_limited", "message": "a \"quoted\"\nmessage", "invocation_id": id.as_str()}})
        );
        let resp = error_response(StatusCode::NOT_FOUND, "no_route", "none", None);
        assert_eq!(
            body(&resp),
            serde_json::json!({"error": {"kind": "no_route", "message": "none"}})
        );
    }
}
