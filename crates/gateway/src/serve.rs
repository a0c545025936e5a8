//! The HTTP server loop (shared with the control API) and the invoke path.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpListener;
use tokio::sync::watch;

use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome, RefusalAggregator};
use zerofn_policy::{
    Decision, Principal, RequestContext, Resource, RuntimeAction, RuntimeRequest, Source,
};
use zerofn_sandbox::{InvokeOptions, LoadedFunction, Sandbox};
use zerofn_store::Store;

use crate::capabilities::{
    decision_json, InvocationHost, Policies, WorkloadIdentity, CALLER_HEADER,
};
use crate::errors::{error_response, invoke_status};
use crate::limits::{
    earlier, strip_platform_headers, BodyBudget, BodyReservation, CallTree, ConnectionLimits,
};
use crate::Routes;

/// The client address of a connection, put in each request's extensions
/// by [`serve_http`]. Always canonical: an IPv4 client of a dual-stack
/// listener is its IPv4 address, not `::ffff:a.b.c.d`, so every decision
/// and record sees one spelling of it.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

impl PeerAddr {
    /// The peer address with an IPv4-mapped IPv6 address made IPv4.
    pub fn new(addr: SocketAddr) -> PeerAddr {
        PeerAddr(SocketAddr::new(addr.ip().to_canonical(), addr.port()))
    }

    /// The canonical client IP.
    pub fn ip(&self) -> IpAddr {
        self.0.ip().to_canonical()
    }
}

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
    /// Bytes of request bodies the gateway holds at once, across all
    /// requests; beyond it a request gets 503 `busy`.
    pub max_body_bytes_in_flight: usize,
    /// Open connections per listener.
    pub max_connections: usize,
    /// Open connections per client address, per listener.
    pub max_connections_per_ip: usize,
    /// Interval over which identical unauthenticated refusals are counted
    /// into one audit record.
    pub refusal_aggregation_interval: Duration,
    /// Invocations one public request may cause in all through
    /// function-to-function calls, itself included.
    pub max_invocations_per_request: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_header_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            max_body_bytes_in_flight: 256 << 20,
            max_connections: 10_000,
            max_connections_per_ip: 512,
            refusal_aggregation_interval: Duration::from_secs(10),
            max_invocations_per_request: crate::limits::MAX_TREE_INVOCATIONS,
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
    /// Where refusals of unauthenticated callers are recorded.
    refusals: RefusalAggregator,
    /// Bytes of request bodies held across all requests.
    bodies: Arc<BodyBudget>,
}

impl Gateway {
    pub fn new(
        routes: Routes,
        sandbox: Arc<Sandbox>,
        audit: AuditLog,
        config: GatewayConfig,
        services: GatewayServices,
    ) -> Arc<Gateway> {
        let refusals = RefusalAggregator::new(audit.clone(), config.refusal_aggregation_interval);
        let bodies = BodyBudget::new(config.max_body_bytes_in_flight);
        Arc::new(Gateway {
            routes,
            sandbox,
            audit,
            config,
            services,
            refusals,
            bodies,
        })
    }

    /// The aggregator of unauthenticated refusals.
    pub fn refusals(&self) -> &RefusalAggregator {
        &self.refusals
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
        let refusals = self.refusals.clone();
        serve_http_with(
            listener,
            &config,
            shutdown,
            move |req| {
                let gw = self.clone();
                async move { gw.handle(req).await }
            },
            Some(refusals.clone()),
        )
        .await;
        // Repeats counted in the interval that was running are recorded
        // before the platform stops, not lost with it.
        refusals.flush().await;
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

    /// The public path: route, decide from the head, then read the body
    /// within its limits, then run.
    async fn invoke<B>(self: &Arc<Self>, req: Request<B>, id: &str) -> Response<Bytes>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let ip = req.extensions().get::<PeerAddr>().map(PeerAddr::ip);
        let table = self.routes.snapshot();
        let Some(function) = table.lookup(req.uri().path()).cloned() else {
            let record = AuditRecord::new("gateway", Action::Invoke, Outcome::Deny)
                .invocation_id(id)
                .status(404)
                .reason("no_route: no function is deployed on this path")
                .detail(serde_json::json!({
                    "caller": Caller::Public { ip }.json(),
                    "method": req.method().as_str(),
                    "path": req.uri().path(),
                }));
            return self
                .refuse_public(
                    ip,
                    record,
                    id,
                    StatusCode::NOT_FOUND,
                    "no_route",
                    "no function is deployed on this path",
                )
                .await;
        };
        let caller = Caller::Public { ip };
        let (mut parts, body) = req.into_parts();
        // Only the platform speaks in its header namespace, in any
        // spelling; it says who called and which invocation this is.
        strip_platform_headers(&mut parts.headers);
        let mut unrecorded =
            Unrecorded::new(self.audit.clone(), &function, id, &caller, 0, started);

        // Decide from the head: an unauthorised caller is refused before
        // a byte of its body is read.
        let (decision, invoke_decision) = self.decide(
            &function,
            &caller,
            parts.method.as_str(),
            parts.uri.path(),
            0,
        );
        if !decision.allowed {
            unrecorded.disarm();
            let (record, message) = self.invoke_denied(
                &function,
                &caller,
                0,
                id,
                started,
                &decision,
                invoke_decision,
            );
            return self
                .refuse_public(
                    ip,
                    record,
                    id,
                    StatusCode::FORBIDDEN,
                    "invoke_denied",
                    &message,
                )
                .await;
        }
        unrecorded.decided(invoke_decision);

        // Read the body within the function's size and time limits and
        // the gateway's budget of bodies in flight, before the guest sees
        // anything. The reservation lives until the invocation is over.
        let max_body = max_body_bytes(&function);
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut reservation = self.bodies.reservation();
        let read = match declared {
            Some(len) if len > max_body as u64 => Err(BodyError::TooLarge),
            Some(len) if !reservation.grow_to(usize::try_from(len).unwrap_or(usize::MAX)) => {
                Err(BodyError::Busy)
            }
            _ => match tokio::time::timeout(
                self.config.body_read_timeout,
                read_body(body, max_body, &mut reservation),
            )
            .await
            {
                Ok(read) => read,
                Err(_) => Err(BodyError::TimedOut),
            },
        };
        let body = match read {
            Ok(body) => body,
            Err(error) => {
                unrecorded.disarm();
                let (status, kind, reason, message) = error.describe(max_body);
                let record = invoke_record(&function, id, started, Outcome::Deny, status.as_u16())
                    .reason(reason);
                return self
                    .refuse_public(ip, record, id, status, kind, &message)
                    .await;
            }
        };
        let mut request = Request::from_parts(parts, body);
        if let Ok(v) = HeaderValue::from_str(id) {
            request.headers_mut().insert(INVOCATION_HEADER, v);
        }
        let response = self
            .run(
                function,
                request,
                &caller,
                0,
                id,
                started,
                CallTree::root(self.config.max_invocations_per_request),
                None,
                &mut unrecorded,
                decision,
            )
            .await;
        drop(reservation);
        response
    }

    /// A call from another function (`http://<fn>.<tenant>.fn.internal/`):
    /// a new invocation of `function`, decided by its invoke policy and
    /// held to every limit of the callee, within the caller's deadline
    /// and its call tree's budget.
    pub(crate) async fn invoke_function(
        self: Arc<Self>,
        function: Arc<LoadedFunction>,
        mut request: Request<Bytes>,
        caller: Caller,
        depth: u32,
        tree: Arc<CallTree>,
        deadline: Instant,
    ) -> Response<Bytes> {
        let started = Instant::now();
        let id = uuid::Uuid::new_v4().to_string();
        strip_platform_headers(request.headers_mut());
        if let Caller::Function { spiffe_id, .. } = &caller {
            if let Ok(v) = HeaderValue::from_str(spiffe_id) {
                request.headers_mut().insert(CALLER_HEADER, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&id) {
            request.headers_mut().insert(INVOCATION_HEADER, v);
        }
        let mut unrecorded =
            Unrecorded::new(self.audit.clone(), &function, &id, &caller, depth, started);
        let (decision, invoke_decision) = self.decide(
            &function,
            &caller,
            request.method().as_str(),
            request.uri().path(),
            depth,
        );
        let mut resp = if !decision.allowed {
            unrecorded.disarm();
            let (record, message) = self.invoke_denied(
                &function,
                &caller,
                depth,
                &id,
                started,
                &decision,
                invoke_decision,
            );
            self.refuse(
                record,
                &id,
                StatusCode::FORBIDDEN,
                "invoke_denied",
                &message,
            )
            .await
        } else if request.body().len() > max_body_bytes(&function) {
            // The callee's body limit holds for calls as for the public.
            unrecorded.disarm();
            let (status, kind, reason, message) =
                BodyError::TooLarge.describe(max_body_bytes(&function));
            let record = invoke_record(&function, &id, started, Outcome::Deny, status.as_u16())
                .reason(reason)
                .detail(serde_json::json!({
                    "caller": caller.json(),
                    "depth": depth,
                    "decisions": [invoke_decision],
                }));
            self.refuse(record, &id, status, kind, &message).await
        } else {
            unrecorded.decided(invoke_decision);
            self.run(
                function,
                request,
                &caller,
                depth,
                &id,
                started,
                tree,
                Some(deadline),
                &mut unrecorded,
                decision,
            )
            .await
        };
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(INVOCATION_HEADER, v);
        }
        resp
    }

    /// The invoke decision for `caller` on `function`, and its listing.
    fn decide(
        &self,
        function: &LoadedFunction,
        caller: &Caller,
        method: &str,
        path: &str,
        depth: u32,
    ) -> (Decision, serde_json::Value) {
        let manifest = function.artifact().manifest();
        let resource = Resource::Function {
            tenant: manifest.tenant.as_str().to_owned(),
            name: manifest.name.as_str().to_owned(),
        };
        let decision = self.policies().current().decide(&RuntimeRequest {
            principal: caller.principal(),
            action: RuntimeAction::Invoke,
            resource: resource.clone(),
            context: RequestContext::Invoke {
                method: method.to_owned(),
                path: path.to_owned(),
                source: caller.source(),
                depth,
            },
        });
        let listed = decision_json(
            RuntimeAction::Invoke,
            &resource,
            &decision,
            &caller.invoke_permission(manifest.tenant.as_str()),
        );
        (decision, listed)
    }

    /// The record and message of a refused invoke decision.
    #[allow(clippy::too_many_arguments)]
    fn invoke_denied(
        &self,
        function: &LoadedFunction,
        caller: &Caller,
        depth: u32,
        id: &str,
        started: Instant,
        decision: &Decision,
        invoke_decision: serde_json::Value,
    ) -> (AuditRecord, String) {
        let manifest = function.artifact().manifest();
        let message = format!(
            "{} may not invoke {}: {}",
            caller.principal().describe(),
            Resource::Function {
                tenant: manifest.tenant.as_str().to_owned(),
                name: manifest.name.as_str().to_owned(),
            }
            .describe(),
            decision.explain()
        );
        let record = invoke_record(function, id, started, Outcome::Deny, 403)
            .reason(decision.explain())
            .detail(serde_json::json!({
                "caller": caller.json(),
                "depth": depth,
                "decisions": [invoke_decision],
            }));
        (record, message)
    }

    /// Run an allowed invocation with its capabilities, record it.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        self: &Arc<Self>,
        function: Arc<LoadedFunction>,
        request: Request<Bytes>,
        caller: &Caller,
        depth: u32,
        id: &str,
        started: Instant,
        tree: Arc<CallTree>,
        deadline: Option<Instant>,
        unrecorded: &mut Unrecorded,
        decision: Decision,
    ) -> Response<Bytes> {
        // The deadline this invocation's own calls are held to: its own
        // timeout from now, within its caller's. (The sandbox starts the
        // clock once it has a slot, so this is never later than the
        // guest's real deadline.)
        let own =
            Duration::from_millis(u64::from(function.artifact().manifest().limits.timeout_ms));
        let host_deadline = earlier(deadline, Instant::now() + own);
        let host = Arc::new(InvocationHost::new(
            self.clone(),
            function.clone(),
            id,
            depth,
            tree,
            host_deadline,
        ));
        let result = self
            .sandbox
            .invoke_with(&function, request, host.clone(), InvokeOptions { deadline })
            .await;
        let mut decisions = unrecorded.disarm_decision().into_iter().collect::<Vec<_>>();
        decisions.extend(host.decisions());
        let record = |outcome: Outcome, status: u16| {
            invoke_record(&function, id, started, outcome, status)
                .reason(decision.explain())
                .detail(serde_json::json!({
                    "caller": caller.json(),
                    "depth": depth,
                    "decisions": decisions,
                }))
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
                let record = record(Outcome::Error, status.as_u16());
                // Keep the kind first: it is what the record is about.
                let record = record.reason(error.kind());
                self.refuse(record, id, status, error.kind(), &error.to_string())
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
            return refusal_unrecorded(id);
        }
        error_response(status, kind, message, Some(id))
    }

    /// [`Gateway::refuse`] for a refusal of a public (unauthenticated)
    /// caller: identical ones from one address are counted into one
    /// record per interval.
    async fn refuse_public(
        &self,
        ip: Option<IpAddr>,
        record: AuditRecord,
        id: &str,
        status: StatusCode,
        kind: &str,
        message: &str,
    ) -> Response<Bytes> {
        let Some(ip) = ip else {
            // In process (no connection): nothing to aggregate by.
            return self.refuse(record, id, status, kind, message).await;
        };
        if let Err(error) = self.refusals.refuse(ip, record).await {
            tracing::error!(invocation_id = %id, %error, "audit append failed");
            // A path no function serves exposes nothing and runs nothing:
            // it stays a 404 (as before refusals were recorded), so a
            // broken log does not turn every stray request into a 500.
            if status == StatusCode::NOT_FOUND {
                return error_response(status, kind, message, Some(id));
            }
            return refusal_unrecorded(id);
        }
        error_response(status, kind, message, Some(id))
    }
}

/// The answer to a refusal whose audit record could not be written: the
/// request is refused all the same, as an outage of the log (fail closed).
fn refusal_unrecorded(id: &str) -> Response<Bytes> {
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "audit_unavailable",
        "the invocation could not be recorded",
        Some(id),
    )
}

/// Reason and status of an invocation whose caller went away (the client
/// hung up, or the calling function was stopped) before it was recorded.
pub const CLIENT_GONE: &str = "client_gone";
/// Status recorded for [`CLIENT_GONE`] (nginx's "client closed request").
pub const CLIENT_GONE_STATUS: u16 = 499;

/// Records an invocation as [`CLIENT_GONE`] if it is dropped before it
/// was recorded otherwise: hyper drops the request future when the client
/// hangs up, and a caller's abort drops its callees' futures. The record
/// is built only then, so the normal path pays nothing for it.
pub(crate) struct Unrecorded {
    audit: AuditLog,
    pending: Option<Pending>,
}

struct Pending {
    function: Arc<LoadedFunction>,
    id: String,
    caller: serde_json::Value,
    depth: u32,
    started: Instant,
    decision: Option<serde_json::Value>,
}

impl Unrecorded {
    fn new(
        audit: AuditLog,
        function: &Arc<LoadedFunction>,
        id: &str,
        caller: &Caller,
        depth: u32,
        started: Instant,
    ) -> Unrecorded {
        Unrecorded {
            audit,
            pending: Some(Pending {
                function: function.clone(),
                id: id.to_owned(),
                caller: caller.json(),
                depth,
                started,
                decision: None,
            }),
        }
    }

    /// The invoke decision, listed if the record is written here.
    fn decided(&mut self, decision: serde_json::Value) {
        if let Some(p) = &mut self.pending {
            p.decision = Some(decision);
        }
    }

    /// The invocation is being recorded elsewhere.
    fn disarm(&mut self) {
        self.pending = None;
    }

    /// [`Unrecorded::disarm`], handing back the invoke decision.
    fn disarm_decision(&mut self) -> Option<serde_json::Value> {
        self.pending.take().and_then(|p| p.decision)
    }
}

impl Drop for Unrecorded {
    fn drop(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let record = invoke_record(
            &p.function,
            &p.id,
            p.started,
            Outcome::Error,
            CLIENT_GONE_STATUS,
        )
        .reason(format!(
            "{CLIENT_GONE}: the caller went away before the invocation finished"
        ))
        .detail(serde_json::json!({
            "caller": p.caller,
            "depth": p.depth,
            "decisions": p.decision.into_iter().collect::<Vec<_>>(),
        }));
        let audit = self.audit.clone();
        let id = p.id;
        // Dropped in a runtime (hyper's or the caller's task); outside one
        // there is nothing left to record into.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = audit.append(record).await {
                    tracing::error!(invocation_id = %id, %error, "audit of an abandoned invocation failed");
                }
            });
        }
    }
}

/// The record of one invocation of `function`, without detail or reason.
fn invoke_record(
    function: &LoadedFunction,
    id: &str,
    started: Instant,
    outcome: Outcome,
    status: u16,
) -> AuditRecord {
    let artifact = function.artifact();
    let manifest = artifact.manifest();
    AuditRecord::new("gateway", Action::Invoke, outcome)
        .tenant(manifest.tenant.as_str())
        .function(manifest.name.as_str())
        .digest(artifact.digest().to_string())
        .invocation_id(id)
        .status(status)
        .duration(started.elapsed())
}

/// The function's request body limit in bytes.
fn max_body_bytes(function: &LoadedFunction) -> usize {
    usize::try_from(function.artifact().manifest().limits.max_body_kb)
        .unwrap_or(usize::MAX)
        .saturating_mul(1024)
}

/// Why a request body was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyError {
    TooLarge,
    Busy,
    Unreadable,
    TimedOut,
}

impl BodyError {
    /// Status, kind, audit reason and message.
    fn describe(self, max_body: usize) -> (StatusCode, &'static str, &'static str, String) {
        match self {
            BodyError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body too large",
                format!("request body exceeds the function's limit of {max_body} bytes"),
            ),
            BodyError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "busy: the gateway's budget of request bodies in flight is spent",
                "the gateway holds as many request bodies as it may; try again later".to_owned(),
            ),
            BodyError::Unreadable => (
                StatusCode::BAD_REQUEST,
                "bad_body",
                "request body unreadable",
                "request body could not be read".to_owned(),
            ),
            BodyError::TimedOut => (
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "request body read timed out",
                "request body was not received in time".to_owned(),
            ),
        }
    }
}

/// Read a whole body of at most `max` bytes, holding every byte read in
/// `reservation` (grown as data arrives, for bodies without a declared
/// length).
async fn read_body<B>(
    body: B,
    max: usize,
    reservation: &mut BodyReservation,
) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| BodyError::Unreadable)?.into_data() else {
            continue; // trailers carry nothing the guest gets
        };
        if data.is_empty() {
            continue;
        }
        len = len.saturating_add(data.len());
        if len > max {
            return Err(BodyError::TooLarge);
        }
        if !reservation.grow_to(len) {
            return Err(BodyError::Busy);
        }
        // One chunk (the usual case) is passed on without a copy.
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            Some(earlier) => {
                buf.extend_from_slice(&earlier);
                buf.extend_from_slice(&data);
            }
            None => buf.extend_from_slice(&data),
        }
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

/// Accept connections on `listener` and serve HTTP/1.1 with `handler`
/// until `shutdown` becomes true; then stop accepting and wait (up to the
/// grace period) for in-flight requests to finish. Connections beyond the
/// configured caps (in total, per client address) are closed at once.
pub async fn serve_http<H, F>(
    listener: TcpListener,
    config: &GatewayConfig,
    shutdown: watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    serve_http_with(listener, config, shutdown, handler, None).await;
}

/// [`serve_http`], recording refused connections and requests hyper
/// refused itself (malformed or oversized heads, heads too slow) in
/// `refusals`, as refusals of the unauthenticated peer.
pub async fn serve_http_with<H, F>(
    listener: TcpListener,
    config: &GatewayConfig,
    mut shutdown: watch::Receiver<bool>,
    handler: H,
    refusals: Option<RefusalAggregator>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let limits = ConnectionLimits::new(config.max_connections, config.max_connections_per_ip);
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
                let peer = PeerAddr::new(peer);
                let permit = match limits.try_acquire(peer.ip()) {
                    Ok(permit) => permit,
                    Err(refusal) => {
                        drop(stream);
                        let record = AuditRecord::new("anonymous", Action::Connection, Outcome::Deny)
                            .reason(refusal.reason());
                        record_refusal(refusals.as_ref(), peer.ip(), record);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    let handler = handler.clone();
                    req.extensions_mut().insert(peer);
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let conn = http1_builder(config).serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                let refusals = refusals.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(error) = conn.await {
                        tracing::debug!(%error, "connection ended with an error");
                        if let Some((status, reason)) = hyper_refusal(&error) {
                            let record = AuditRecord::new("anonymous", Action::Connection, Outcome::Deny)
                                .status(status)
                                .reason(reason);
                            record_refusal(refusals.as_ref(), peer.ip(), record);
                        }
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

/// The status hyper answered and why, for a connection error that is a
/// refusal of the request (not a client merely going away).
fn hyper_refusal(error: &hyper::Error) -> Option<(u16, String)> {
    if error.is_parse_too_large() {
        Some((431, format!("request head refused: {error}")))
    } else if error.is_parse() || error.is_parse_status() {
        Some((400, format!("malformed request refused: {error}")))
    } else if error.is_timeout() {
        Some((408, format!("request head not received in time: {error}")))
    } else {
        None
    }
}

/// Hand a refusal of an unauthenticated peer to the aggregator without
/// holding up the caller (the accept loop, a connection's end).
fn record_refusal(refusals: Option<&RefusalAggregator>, ip: IpAddr, record: AuditRecord) {
    let Some(refusals) = refusals.cloned() else {
        return;
    };
    tokio::spawn(async move {
        if let Err(error) = refusals.refuse(ip, record).await {
            tracing::error!(%error, "audit of a refused connection failed");
        }
    });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addresses_are_canonical_before_any_decision() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4242".parse().unwrap();
        let peer = PeerAddr::new(mapped);
        assert_eq!(peer.0, "127.0.0.1:4242".parse::<SocketAddr>().unwrap());
        assert_eq!(peer.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
        // What the policy sees for a public caller.
        let source = Caller::Public {
            ip: Some(peer.ip()),
        }
        .source();
        assert_eq!(source.ip, Some(IpAddr::from([127, 0, 0, 1])));
        // Real IPv6 stays IPv6; a tuple-built PeerAddr is canonical on read.
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(PeerAddr::new(v6).ip(), "::1".parse::<IpAddr>().unwrap());
        assert_eq!(PeerAddr(mapped).ip(), IpAddr::from([127, 0, 0, 1]));
    }

    #[tokio::test]
    async fn bodies_are_bounded_by_the_function_and_the_shared_budget() {
        let budget = BodyBudget::new(10);
        let mut r = budget.reservation();
        let body = Full::new(Bytes::from_static(b"hello"));
        assert_eq!(
            read_body(body, 100, &mut r).await.unwrap(),
            Bytes::from_static(b"hello")
        );
        let mut other = budget.reservation();
        let body = Full::new(Bytes::from_static(b"123456"));
        assert_eq!(read_body(body, 100, &mut other).await, Err(BodyError::Busy));
        let mut third = budget.reservation();
        let body = Full::new(Bytes::from_static(b"123456"));
        assert_eq!(
            read_body(body, 3, &mut third).await,
            Err(BodyError::TooLarge)
        );
        drop(r);
        let body = Full::new(Bytes::from_static(b"123456"));
        assert!(read_body(body, 100, &mut other).await.is_ok());
    }
}
