//! Outbound HTTP from guests: the one place every outgoing request passes
//! (`WasiHttpHooks::send_request`). Sockets and name lookup are off
//! ([`crate::wasi`]), so `wasi:http/outgoing-handler` is a guest's only
//! way out, and it ends here.
//!
//! The sandbox decides nothing about a request: it reads the body in full,
//! hands the request to [`HostCapabilities::outbound`] and turns the
//! answer back into a `wasi:http` response. Egress allowlists and
//! function-to-function calls are decided behind that trait (in the
//! platform), the way Spin's outbound-networking factor owns its
//! allowlist; a refusal reaches the guest as the error code
//! `HTTP-request-denied`.
//!
//! # Trust
//! Trusts the [`HostCapabilities`] implementation. Trusts nothing from the
//! guest: the request body is read only up to
//! [`limits::MAX_OUTBOUND_BODY`] and only until the invocation's deadline;
//! an invocation sends at most [`limits::MAX_OUTBOUND_REQUESTS`] requests,
//! [`limits::MAX_OUTBOUND_IN_FLIGHT`] at a time; every request body read
//! and every response body handed back is charged to the invocation's
//! [`HostBudget`] while the host holds it (a request body until it has been
//! answered, a response body until the guest drops it), so the host memory
//! its requests and unread responses hold is bounded by the budget;
//! guest-chosen text (the authority) is escaped before it is logged.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tracing::Instrument as _;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::budget::{HostBudget, Reservation};
use crate::host_interface::{limits, HostCapabilities, OutboundError, SandboxRefusal};

/// The interface named in refusal records.
const OUTGOING: &str = "wasi:http/outgoing-handler";

type Pending = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

/// Hooks that route every outbound request of one invocation to the
/// platform's [`HostCapabilities::outbound`].
pub struct PlatformOutbound {
    host: Arc<dyn HostCapabilities>,
    deadline: Instant,
    /// Requests sent so far.
    sent: usize,
    in_flight: Arc<Semaphore>,
    budget: HostBudget,
}

impl std::fmt::Debug for PlatformOutbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlatformOutbound")
            .field("deadline", &self.deadline)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl PlatformOutbound {
    /// Hooks for one invocation: requests go to `host` and are abandoned
    /// at `deadline` (the invocation's own).
    /// Bodies are charged to `budget`.
    pub fn new(
        host: Arc<dyn HostCapabilities>,
        deadline: Instant,
        budget: HostBudget,
    ) -> PlatformOutbound {
        PlatformOutbound {
            host,
            deadline,
            sent: 0,
            in_flight: Arc::new(Semaphore::new(limits::MAX_OUTBOUND_IN_FLIGHT)),
            budget,
        }
    }
}

impl WasiHttpHooks for PlatformOutbound {
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
        if self.sent >= limits::MAX_OUTBOUND_REQUESTS {
            tracing::warn!(
                host = %authority.escape_debug(),
                limit = limits::MAX_OUTBOUND_REQUESTS,
                "outbound request refused: the invocation sent its limit"
            );
            let host = self.host.clone();
            return Box::new(async move {
                host.refused(SandboxRefusal {
                    capability: "wasi:http/outgoing-handler",
                    reason: format!(
                        "the invocation sent its limit of {} outbound requests",
                        limits::MAX_OUTBOUND_REQUESTS
                    ),
                })
                .await;
                Err(HttpError::ConnectionLimitReached)
            });
        }
        self.sent = self.sent.saturating_add(1);
        let host = self.host.clone();
        let budget = self.budget.clone();
        let in_flight = self.in_flight.clone();
        let deadline = tokio::time::Instant::from_std(self.deadline);
        // This future runs in a task of its own; keep the invocation's span.
        let span = tracing::Span::current();
        Box::new(
            async move {
                let _slot = tokio::time::timeout_at(deadline, in_flight.acquire_owned())
                    .await
                    .map_err(|_| HttpError::ConnectionTimeout)?
                    .map_err(|_| HttpError::InternalError(None))?;
                let (parts, body) = request.into_parts();
                let mut request_held = budget
                    .reserve(OUTGOING, "an outbound request body", 0)
                    .map_err(|_| budget_error())?;
                let body = tokio::time::timeout_at(
                    deadline,
                    read_body(body, limits::MAX_OUTBOUND_BODY, Some(&mut request_held)),
                )
                .await
                .map_err(|_| HttpError::ConnectionWriteTimeout)??;
                let request = http::Request::from_parts(parts, body);
                let response = tokio::time::timeout_at(deadline, host.outbound(request))
                    .await
                    .map_err(|_| HttpError::HttpResponseTimeout)?
                    .map_err(|e| outbound_error(e, &authority))?;
                drop(request_held);
                let (parts, body) = response.into_parts();
                if body.len() > limits::MAX_OUTBOUND_BODY {
                    return Err(HttpError::HttpResponseBodySize(
                        u64::try_from(body.len()).ok(),
                    ));
                }
                let held = budget
                    .reserve(OUTGOING, "an outbound response body", body.len())
                    .map_err(|_| budget_error())?;
                let body = HeldBody {
                    body: Full::new(body),
                    _held: held,
                }
                .map_err(|never: std::convert::Infallible| -> HttpError { match never {} })
                .boxed_unsync();
                let done: Pending = Box::new(async { Ok(()) });
                Ok((http::Response::from_parts(parts, body), done))
            }
            .instrument(span),
        )
    }
}

/// The error code a guest sees for a request the platform did not answer.
fn outbound_error(error: OutboundError, authority: &str) -> HttpError {
    match error {
        OutboundError::Denied(_) => {
            tracing::warn!(host = %authority.escape_debug(), "outbound request denied");
            HttpError::HttpRequestDenied
        }
        OutboundError::NotFound(_) => {
            tracing::info!(host = %authority.escape_debug(), "outbound request to no known destination");
            HttpError::DestinationNotFound
        }
        OutboundError::Failed(message) => {
            tracing::warn!(host = %authority.escape_debug(), error = %message.escape_debug(), "outbound request failed");
            HttpError::InternalError(Some(message))
        }
        OutboundError::Transport { code, message } => {
            tracing::info!(host = %authority.escape_debug(), error = %message.escape_debug(), "outbound request failed on the network");
            use crate::host_interface::TransportError as T;
            match code {
                T::DestinationIpProhibited => HttpError::DestinationIpProhibited,
                T::DnsError => HttpError::DnsError {
                    rcode: None,
                    info_code: None,
                },
                T::DnsTimeout => HttpError::DnsTimeout,
                T::ConnectionRefused => HttpError::ConnectionRefused,
                T::ConnectionTimeout => HttpError::ConnectionTimeout,
                T::ConnectionLimitReached => HttpError::ConnectionLimitReached,
                T::TlsCertificateError => HttpError::TlsCertificateError,
                T::TlsProtocolError => HttpError::TlsProtocolError,
                T::HttpResponseTimeout => HttpError::HttpResponseTimeout,
                T::HttpResponseBodySize => HttpError::HttpResponseBodySize(None),
                T::HttpProtocolError => HttpError::HttpProtocolError,
            }
        }
    }
}

/// The error a guest sees when its host budget refused a body (the
/// refusal itself is reported by the budget).
fn budget_error() -> HttpError {
    HttpError::InternalError(Some(
        "the invocation's host memory budget is exhausted".into(),
    ))
}

/// Reads a guest's request body in full, refusing it once it passes
/// `limit` bytes (trailers are dropped); what is read is charged to `held`.
async fn read_body(
    mut body: WasiBody,
    limit: usize,
    mut held: Option<&mut Reservation>,
) -> Result<Bytes, HttpError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if buf.len().saturating_add(data.len()) > limit {
                return Err(HttpError::HttpRequestBodySize(u64::try_from(limit).ok()));
            }
            if let Some(held) = held.as_deref_mut() {
                held.grow(OUTGOING, "an outbound request body", data.len())
                    .map_err(|_| budget_error())?;
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// A response body that keeps its bytes charged to the budget until the
/// guest (or wasmtime-wasi-http on its behalf) drops it.
struct HeldBody {
    body: Full<Bytes>,
    _held: Reservation,
}

impl Body for HeldBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn body_over_the_limit_is_refused() {
        let body = Full::new(Bytes::from(vec![7u8; 11]))
            .map_err(|never: std::convert::Infallible| -> HttpError { match never {} })
            .boxed_unsync();
        assert!(matches!(
            read_body(body, 10, None).await,
            Err(HttpError::HttpRequestBodySize(Some(10)))
        ));
        let body = Full::new(Bytes::from_static(b"0123456789"))
            .map_err(|never: std::convert::Infallible| -> HttpError { match never {} })
            .boxed_unsync();
        assert_eq!(read_body(body, 10, None).await.unwrap(), &b"0123456789"[..]);
    }

    #[tokio::test]
    async fn an_invocation_sends_a_bounded_number_of_requests() {
        use std::pin::Pin;
        let host: Arc<dyn HostCapabilities> = Arc::new(crate::host_interface::NoCapabilities);
        let budget = HostBudget::new(
            crate::budget::BUDGET_FLOOR,
            crate::budget::GlobalBudget::new(usize::MAX),
            host.clone(),
        );
        let mut hooks = PlatformOutbound::new(
            host,
            Instant::now() + std::time::Duration::from_secs(10),
            budget,
        );
        let mut send = || {
            let request = http::Request::get("http://hello.demo.fn.internal/")
                .body(
                    Full::new(Bytes::new())
                        .map_err(|never: std::convert::Infallible| -> HttpError { match never {} })
                        .boxed_unsync(),
                )
                .unwrap();
            Pin::from(hooks.send_request(request, None, Box::new(async { Ok(()) })))
        };
        for _ in 0..limits::MAX_OUTBOUND_REQUESTS {
            // NoCapabilities refuses each one: they reached the platform.
            assert!(matches!(send().await, Err(HttpError::HttpRequestDenied)));
        }
        assert!(matches!(
            send().await,
            Err(HttpError::ConnectionLimitReached)
        ));
    }

    #[test]
    fn errors_map_to_wasi_http_codes() {
        assert!(matches!(
            outbound_error(OutboundError::Denied("x".into()), "x"),
            HttpError::HttpRequestDenied
        ));
        assert!(matches!(
            outbound_error(OutboundError::NotFound("x".into()), "x"),
            HttpError::DestinationNotFound
        ));
        assert!(matches!(
            outbound_error(OutboundError::Failed("boom".into()), "x"),
            HttpError::InternalError(Some(m)) if m == "boom"
        ));
    }
}
