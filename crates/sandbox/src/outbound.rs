//! Outbound HTTP from guests: the one place every outgoing request passes
//! (`WasiHttpHooks::send_request`). Today it refuses every request; egress
//! allowlists and function-to-function calls will be decided here, the way
//! Spin's outbound-networking factor owns its allowlist.

use std::future::Future;

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Hooks that deny all outbound requests.
#[derive(Debug, Default)]
pub struct DenyAllOutbound;

type Pending = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

impl WasiHttpHooks for DenyAllOutbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Pending,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, Pending), HttpError>> + Send>
    {
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        tracing::warn!(host = %authority.escape_debug(), "outbound request denied: no egress is granted");
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }
}
