//! The HTTP server loop (shared with the control API) and the invoke path.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome};
use zerofn_sandbox::Sandbox;

use crate::errors::{error_response, invoke_status};
use crate::Routes;

/// Response header carrying the invocation id.
pub const INVOCATION_HEADER: &str = "x-zerofn-invocation-id";

/// Limits applied to every connection and request.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Bytes of request line plus headers (hyper's read buffer).
    pub max_header_bytes: usize,
    /// Time to receive the complete request head.
    pub header_read_timeout: Duration,
    /// Time to receive the complete request body.
    pub body_read_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// The public gateway.
pub struct Gateway {
    routes: Routes,
    sandbox: Arc<Sandbox>,
    audit: AuditLog,
    config: GatewayConfig,
}

impl Gateway {
    pub fn new(
        routes: Routes,
        sandbox: Arc<Sandbox>,
        audit: AuditLog,
        config: GatewayConfig,
    ) -> Arc<Gateway> {
        Arc::new(Gateway {
            routes,
            sandbox,
            audit,
            config,
        })
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// Serve the gateway on `listener` until `shutdown` turns true.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        let config = self.config.clone();
        serve_http(listener, &config, shutdown, move |req| {
            let gw = self.clone();
            async move { gw.handle(req).await }
        })
        .await;
    }

    /// One request, start to finish. Generic over the body so the whole
    /// path can be driven in-process (benchmarks) as well as by hyper.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let invocation_id = uuid::Uuid::new_v4().to_string();
        let span = tracing::info_span!("invoke", invocation_id = %invocation_id);
        let mut resp =
            tracing::Instrument::instrument(self.invoke(req, &invocation_id), span).await;
        if let Ok(v) = HeaderValue::from_str(&invocation_id) {
            resp.headers_mut().insert(INVOCATION_HEADER, v);
        }
        resp.map(Full::new)
    }

    async fn invoke<B>(&self, req: Request<B>, id: &str) -> Response<Bytes>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let table = self.routes.snapshot();
        let Some(function) = table.lookup(req.uri().path()).cloned() else {
            return error_response(
                StatusCode::NOT_FOUND,
                "no_route",
                "no function is deployed on this path",
                Some(id),
            );
        };
        let artifact = function.artifact();
        let manifest = artifact.manifest();

        let record = |outcome: Outcome, status: u16| {
            AuditRecord::new("gateway", Action::Invoke, outcome)
                .tenant(manifest.tenant.as_str())
                .function(manifest.name.as_str())
                .digest(artifact.digest().to_string())
                .invocation_id(id)
                .status(status)
                .duration(started.elapsed())
        };

        // Read the body within its size and time limits before the guest
        // sees anything.
        let max_body = usize::try_from(manifest.limits.max_body_kb)
            .unwrap_or(usize::MAX)
            .saturating_mul(1024);
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_large = || {
            (
                record(Outcome::Deny, 413).reason("request body too large"),
                format!("request body exceeds the function's limit of {max_body} bytes"),
            )
        };
        if declared.is_some_and(|len| len > max_body as u64) {
            let (rec, msg) = too_large();
            return self
                .refuse(
                    rec,
                    id,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    &msg,
                )
                .await;
        }
        let (parts, body) = req.into_parts();
        let body = match tokio::time::timeout(
            self.config.body_read_timeout,
            Limited::new(body, max_body).collect(),
        )
        .await
        {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                let (rec, msg) = too_large();
                return self
                    .refuse(
                        rec,
                        id,
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        &msg,
                    )
                    .await;
            }
            Ok(Err(_)) => {
                return self
                    .refuse(
                        record(Outcome::Deny, 400).reason("request body unreadable"),
                        id,
                        StatusCode::BAD_REQUEST,
                        "bad_body",
                        "request body could not be read",
                    )
                    .await;
            }
            Err(_) => {
                return self
                    .refuse(
                        record(Outcome::Deny, 408).reason("request body read timed out"),
                        id,
                        StatusCode::REQUEST_TIMEOUT,
                        "body_timeout",
                        "request body was not received in time",
                    )
                    .await;
            }
        };
        let request = Request::from_parts(parts, body);

        let result = self
            .sandbox
            .invoke(
                &function,
                request,
                std::sync::Arc::new(zerofn_sandbox::capabilities::NoCapabilities),
            )
            .await;
        match result {
            Ok(invocation) => {
                let status = invocation.response.status().as_u16();
                if !invocation.stderr.is_empty() {
                    tracing::info!(
                        invocation_id = %id,
                        stderr = %String::from_utf8_lossy(&invocation.stderr).escape_debug(),
                        "guest stderr"
                    );
                }
                match self.audit.append(record(Outcome::Allow, status)).await {
                    Ok(_) => invocation.response,
                    Err(error) => {
                        tracing::error!(invocation_id = %id, %error, "audit append failed; response withheld");
                        error_response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "audit_unavailable",
                            "the invocation could not be recorded, so its response is withheld",
                            Some(id),
                        )
                    }
                }
            }
            Err(error) => {
                let status = invoke_status(&error);
                if let zerofn_sandbox::InvokeError::Trap { detail }
                | zerofn_sandbox::InvokeError::Internal { detail } = &error
                {
                    tracing::warn!(invocation_id = %id, detail = %detail.escape_debug(), "invocation failed");
                }
                self.refuse(
                    record(Outcome::Error, status.as_u16()).reason(error.kind()),
                    id,
                    status,
                    error.kind(),
                    &error.to_string(),
                )
                .await
            }
        }
    }

    /// Record a refusal or failure, then build its error response.
    async fn refuse(
        &self,
        record: AuditRecord,
        id: &str,
        status: StatusCode,
        kind: &str,
        message: &str,
    ) -> Response<Bytes> {
        if let Err(error) = self.audit.append(record).await {
            tracing::error!(invocation_id = %id, %error, "audit append failed");
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "audit_unavailable",
                "the invocation could not be recorded",
                Some(id),
            );
        }
        error_response(status, kind, message, Some(id))
    }
}

/// Accept connections on `listener` and serve HTTP/1.1 with `handler`
/// until `shutdown` becomes true; then stop accepting and wait (up to the
/// grace period) for in-flight requests to finish.
pub async fn serve_http<H, F>(
    listener: TcpListener,
    config: &GatewayConfig,
    mut shutdown: watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(conn) => conn,
                    Err(error) => {
                        // Out of file descriptors and the like: back off
                        // instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let service = hyper::service::service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let mut builder = http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(config.header_read_timeout)
                    .max_buf_size(config.max_header_bytes.max(8192))
                    .keep_alive(true);
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(error) = conn.await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                });
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the shutdown grace period");
    }
}
