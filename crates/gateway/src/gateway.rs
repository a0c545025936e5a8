//! The public gateway: its configuration, the services it is built from,
//! and its listener. The invoke path is in `invoke.rs`; what a running
//! function may ask of the platform is in `host/`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Body;
use tokio::net::TcpListener;
use tokio::sync::watch;

use zerofn_audit::{AuditLog, RefusalAggregator};
use zerofn_listener::ListenerConfig;
use zerofn_sandbox::{LoadedFunction, Sandbox};
use zerofn_store::Store;

use zerofn_listener::PeerAddr;
use zerofn_types::InvocationId;

use crate::host::{BoxFuture, HostServices, Invocations, NestedCall, WorkloadIdentity};
use crate::limits::BodyBudget;
use crate::output::InvocationLogs;
use crate::policies::Policies;
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
    /// The egress gateway: DNS server, extra CA bundle, limits.
    pub egress: zerofn_egress::EgressConfig,
}

impl GatewayConfig {
    /// The limits of the listeners (gateway and control API) this
    /// configuration sets.
    pub fn listener(&self) -> ListenerConfig {
        ListenerConfig {
            max_header_bytes: self.max_header_bytes,
            header_read_timeout: self.header_read_timeout,
            shutdown_grace: self.shutdown_grace,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
        }
    }
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
            egress: zerofn_egress::EgressConfig::default(),
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
    /// Where each invocation's stdout and stderr go (`zerofn logs`).
    pub logs: InvocationLogs,
    /// Rate and concurrency limits per tenant (set by the control plane);
    /// the functions' own are kept beside them.
    pub limits: crate::InvokeLimits,
    /// The tenants' JWT issuers and API keys in force.
    pub authn: zerofn_authn::Authenticators,
    /// The platform's queues, for functions that publish; `None`: publishing refused.
    pub publisher: Option<Arc<dyn crate::host::QueuePublisher>>,
    /// The platform's object storage, for functions granted buckets; `None`: refused.
    pub objects: Option<Arc<dyn crate::host::ObjectHost>>,
    /// The tenants' CAs and the platform bundle in force, for mTLS callers.
    pub mtls: zerofn_authn::MtlsAuthorities,
    /// Where the invocations' spans go (`Tracer::disabled()`: nowhere).
    pub tracer: zerofn_telemetry::Tracer,
}

/// The egress client of `config`. `zerofn up` checks the configuration
/// (the CA bundle) before it gets here; should it fail anyway, there is no
/// client and every outbound request is refused (fail closed).
fn egress_client(config: &zerofn_egress::EgressConfig) -> Option<Arc<zerofn_egress::EgressClient>> {
    match zerofn_egress::EgressClient::new(config) {
        Ok(c) => Some(Arc::new(c)),
        Err(error) => {
            tracing::error!(%error, "egress is unavailable; every outbound request will be refused");
            None
        }
    }
}

/// The public gateway.
pub struct Gateway {
    routes: Routes,
    sandbox: Arc<Sandbox>,
    audit: AuditLog,
    config: GatewayConfig,
    /// What each invocation's host capabilities use.
    host: Arc<HostServices>,
    /// Where refusals of unauthenticated callers are recorded.
    refusals: RefusalAggregator,
    /// Bytes of request bodies held across all requests.
    bodies: Arc<BodyBudget>,
    /// The queue of invocation output to the log store.
    logs: InvocationLogs,
    /// Rate and concurrency limits per function and per tenant.
    limits: crate::InvokeLimits,
    /// The tenants' JWT issuers and API keys in force.
    authn: zerofn_authn::Authenticators,
    /// The tenants' CAs and the platform bundle in force.
    mtls: zerofn_authn::MtlsAuthorities,
    /// Failed authentications per client address.
    auth_failures: zerofn_authn::FailureLimiter,
    /// Where the invocations' spans go.
    tracer: zerofn_telemetry::Tracer,
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
        let logs = services.logs;
        let limits = services.limits;
        let authn = services.authn;
        let mtls = services.mtls;
        let tracer = services.tracer;
        let host = Arc::new(HostServices {
            audit: audit.clone(),
            policies: services.policies,
            store: services.store,
            identity: services.identity,
            egress: egress_client(&config.egress),
            publisher: services.publisher,
            objects: services.objects,
        });
        Arc::new(Gateway {
            routes,
            sandbox,
            audit,
            config,
            host,
            refusals,
            bodies,
            logs,
            limits,
            authn,
            mtls,
            auth_failures: zerofn_authn::FailureLimiter::new(),
            tracer,
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

    pub(crate) fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    pub(crate) fn audit(&self) -> &AuditLog {
        &self.audit
    }

    pub(crate) fn host_services(&self) -> &Arc<HostServices> {
        &self.host
    }

    pub(crate) fn bodies(&self) -> &Arc<BodyBudget> {
        &self.bodies
    }

    pub(crate) fn logs(&self) -> &InvocationLogs {
        &self.logs
    }

    pub(crate) fn limits(&self) -> &crate::ratelimit::RateLimits {
        self.limits.limits()
    }

    pub(crate) fn authenticators(&self) -> &zerofn_authn::Authenticators {
        &self.authn
    }

    pub(crate) fn mtls_authorities(&self) -> &zerofn_authn::MtlsAuthorities {
        &self.mtls
    }

    pub(crate) fn tracer(&self) -> &zerofn_telemetry::Tracer {
        &self.tracer
    }

    pub(crate) fn auth_failures(&self) -> &zerofn_authn::FailureLimiter {
        &self.auth_failures
    }

    /// Serve the gateway on `listener` until `shutdown` turns true.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        self.serve_with(listener, None, shutdown).await;
    }

    /// Serve the gateway on `listener`, over TLS with `tls` (HTTP/1.1, or
    /// HTTP/2 when ALPN chose it), until `shutdown` turns true.
    pub async fn serve_with(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<zerofn_listener::Tls>,
        shutdown: watch::Receiver<bool>,
    ) {
        let config = self.config.clone();
        let refusals = self.refusals.clone();
        zerofn_listener::serve(
            listener,
            tls,
            &config.listener(),
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
        let invocation_id = InvocationId::new();
        let span = tracing::info_span!("invoke", invocation_id = %invocation_id);
        // The SERVER span of the request, in the caller's trace when it sent
        // a valid `traceparent` (read only with tracing on).
        let mut trace = if self.tracer.is_enabled() {
            let parent = zerofn_telemetry::TraceParent::from_headers(req.headers());
            let ip = req.extensions().get::<PeerAddr>().map(PeerAddr::ip);
            let mut trace = self
                .tracer
                .server_span(crate::trace::method_name(req.method()), parent);
            crate::trace::http_request(&mut trace, req.method(), req.uri(), req.headers(), ip);
            trace
        } else {
            zerofn_telemetry::Span::none()
        };
        // The trace id reaches the invocation's audit records through
        // `trace` itself (`crate::trace::trace_id`), so a request, sampled
        // or not, runs the same future as with tracing off.
        let mut resp =
            tracing::Instrument::instrument(self.invoke(req, &invocation_id, &mut trace), span)
                .await;
        crate::trace::status(&mut trace, resp.status());
        if let Ok(v) = HeaderValue::from_str(invocation_id.as_str()) {
            resp.headers_mut().insert(INVOCATION_HEADER, v);
        }
        resp.map(Full::new)
    }
}

impl Invocations for Gateway {
    fn function(&self, tenant: &str, name: &str) -> Option<Arc<LoadedFunction>> {
        self.routes.snapshot().function(tenant, name).cloned()
    }

    fn invoke_nested(self: Arc<Self>, call: NestedCall) -> BoxFuture<'static, Response<Bytes>> {
        Box::pin(self.invoke_function(call))
    }
}
