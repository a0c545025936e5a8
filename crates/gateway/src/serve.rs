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
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpListener;
use tokio::sync::watch;

use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome};
use zerofn_policy::{Principal, RequestContext, Resource, RuntimeAction, RuntimeRequest, Source};
use zerofn_sandbox::{LoadedFunction, Sandbox};
use zerofn_store::Store;

use crate::capabilities::{
    decision_json, InvocationHost, Policies, WorkloadIdentity, CALLER_HEADER,
};
use crate::errors::{error_response, invoke_status};
use crate::Routes;

/// The client address of a connection, put in each request's extensions
/// by [`serve_http`].
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// Who an invocation is for.
#[derive(Clone, Debug)]
pub enum Caller {
    /// A client of the public gateway.
    Public { ip: Option<IpAddr> },
    /// Another function, by its verified identity.
    Function {
        tenant: String,
        name: String,
        spiffe_id: String,
        parent_invocation: String,
    },
}

impl Caller {
    fn principal(&self) -> Principal {
        match self {
            Caller::Public { .. } => Principal::Public,
            Caller::Function { tenant, name, .. } => Principal::Function {
                tenant: tenant.clone(),
                name: name.clone(),
            },
        }
    }

    fn source(&self) -> Source {
        match self {
            Caller::Public { ip } => Source {
                kind: "gateway",
                ip: *ip,
                ..Source::default()
            },
            Caller::Function {
                tenant,
                name,
                spiffe_id,
                ..
            } => Source {
                kind: "function",
                ip: None,
                spiffe_id: Some(spiffe_id.clone()),
                tenant: Some(tenant.clone()),
                function: Some(name.clone()),
            },
        }
    }

    /// The `[invoke] from` entry this caller needs, in manifest terms.
    fn invoke_permission(&self, callee_tenant: &str) -> String {
        match self {
            Caller::Public { .. } => "invoke:public".to_owned(),
            Caller::Function { tenant, name, .. } if tenant == callee_tenant => {
                format!("invoke:{name}")
            }
            Caller::Function { tenant, .. } => format!("invoke:tenant:{tenant}"),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Caller::Public { ip } => serde_json::json!({
                "kind": "gateway",
                "ip": ip.map(|ip| ip.to_string()),
            }),
            Caller::Function {
                spiffe_id,
                parent_invocation,
                ..
            } => serde_json::json!({
                "kind": "function",
                "spiffe_id": spiffe_id,
                "parent_invocation": parent_invocation,
            }),
        }
    }
}

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

/// What the gateway needs besides routes and the sandbox: the runtime
/// policies, the store that holds key-value data and the verifier of
/// workload identities.
pub struct GatewayServices {
    pub policies: Policies,
    pub store: Store,
    pub identity: Arc<dyn WorkloadIdentity>,
}

/// The public gateway.
pub struct Gateway {
    routes: Routes,
    sandbox: Arc<Sandbox>,
    audit: AuditLog,
    config: GatewayConfig,
    services: GatewayServices,
}

impl Gateway {
    pub fn new(
        routes: Routes,
        sandbox: Arc<Sandbox>,
        audit: AuditLog,
        config: GatewayConfig,
        services: GatewayServices,
    ) -> Arc<Gateway> {
        Arc::new(Gateway {
            routes,
            sandbox,
            audit,
            config,
            services,
        })
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    pub(crate) fn routes(&self) -> &Routes {
        &self.routes
    }

    pub(crate) fn audit(&self) -> &AuditLog {
        &self.audit
    }

    pub(crate) fn policies(&self) -> &Policies {
        &self.services.policies
    }

    pub(crate) fn store(&self) -> &Store {
        &self.services.store
    }

    pub(crate) fn identity(&self) -> &dyn WorkloadIdentity {
        self.services.identity.as_ref()
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
    pub async fn handle<B>(self: &Arc<Self>, req: Request<B>) -> Response<Full<Bytes>>
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

    async fn invoke<B>(self: &Arc<Self>, req: Request<B>, id: &str) -> Response<Bytes>
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

        // Refusals before the function runs (body limits) carry no policy
        // decision yet.
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
        let mut request = Request::from_parts(parts, body);
        // Only the platform says who a caller is.
        request.headers_mut().remove(CALLER_HEADER);
        let ip = request.extensions().get::<PeerAddr>().map(|p| p.0.ip());
        self.run(function, request, Caller::Public { ip }, 0, id, started)
            .await
    }

    /// A call from another function (`http://<fn>.<tenant>.fn.internal/`):
    /// a new invocation of `function`, decided by its invoke policy.
    pub(crate) async fn invoke_function(
        self: Arc<Self>,
        function: Arc<LoadedFunction>,
        mut request: Request<Bytes>,
        caller: Caller,
        depth: u32,
    ) -> Response<Bytes> {
        let started = Instant::now();
        let id = uuid::Uuid::new_v4().to_string();
        request.headers_mut().remove(CALLER_HEADER);
        if let Caller::Function { spiffe_id, .. } = &caller {
            if let Ok(v) = HeaderValue::from_str(spiffe_id) {
                request.headers_mut().insert(CALLER_HEADER, v);
            }
        }
        let mut resp = self
            .run(function, request, caller, depth, &id, started)
            .await;
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(INVOCATION_HEADER, v);
        }
        resp
    }

    /// Decide the invocation, run it with its capabilities, record it.
    async fn run(
        self: &Arc<Self>,
        function: Arc<LoadedFunction>,
        request: Request<Bytes>,
        caller: Caller,
        depth: u32,
        id: &str,
        started: Instant,
    ) -> Response<Bytes> {
        let artifact = function.artifact();
        let manifest = artifact.manifest();
        let resource = Resource::Function {
            tenant: manifest.tenant.as_str().to_owned(),
            name: manifest.name.as_str().to_owned(),
        };
        let decision = self.policies().current().decide(&RuntimeRequest {
            principal: caller.principal(),
            action: RuntimeAction::Invoke,
            resource: resource.clone(),
            context: RequestContext::Invoke {
                method: request.method().as_str().to_owned(),
                path: request.uri().path().to_owned(),
                source: caller.source(),
                depth,
            },
        });
        let invoke_decision = decision_json(
            RuntimeAction::Invoke,
            &resource,
            &decision,
            &caller.invoke_permission(manifest.tenant.as_str()),
        );
        let record = |outcome: Outcome, status: u16, decisions: Vec<serde_json::Value>| {
            AuditRecord::new("gateway", Action::Invoke, outcome)
                .tenant(manifest.tenant.as_str())
                .function(manifest.name.as_str())
                .digest(artifact.digest().to_string())
                .invocation_id(id)
                .status(status)
                .duration(started.elapsed())
                .detail(serde_json::json!({
                    "caller": caller.json(),
                    "depth": depth,
                    "decisions": decisions,
                }))
        };
        if !decision.allowed {
            let message = format!(
                "{} may not invoke {}: {}",
                caller.principal().describe(),
                resource.describe(),
                decision.explain()
            );
            return self
                .refuse(
                    record(Outcome::Deny, 403, vec![invoke_decision]).reason(decision.explain()),
                    id,
                    StatusCode::FORBIDDEN,
                    "invoke_denied",
                    &message,
                )
                .await;
        }
        let host = Arc::new(InvocationHost::new(
            self.clone(),
            function.clone(),
            id,
            depth,
        ));
        let result = self.sandbox.invoke(&function, request, host.clone()).await;
        let mut decisions = vec![invoke_decision];
        decisions.extend(host.decisions());
        let record = |outcome: Outcome, status: u16| {
            record(outcome, status, decisions.clone()).reason(decision.explain())
        };
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
                let (stream, peer) = match accepted {
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
                let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    let handler = handler.clone();
                    req.extensions_mut().insert(PeerAddr(peer));
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let conn = http1_builder(config).serve_connection(TokioIo::new(stream), service);
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
    drain(graceful, config).await;
}

/// The HTTP/1.1 settings of every listener (gateway, control API, TLS or
/// not): header size and time limits, keep-alive.
pub fn http1_builder(config: &GatewayConfig) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
}

/// After the listener is closed: wait up to the grace period for the
/// in-flight connections to finish.
pub async fn drain(
    graceful: hyper_util::server::graceful::GracefulShutdown,
    config: &GatewayConfig,
) {
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the shutdown grace period");
    }
}
