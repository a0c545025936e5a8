#![forbid(unsafe_code)]
//! Composition root: opens the store and audit log, builds the sandbox,
//! re-admits what was deployed, and runs the public gateway and the
//! control API until told to stop. Wiring only: every check lives in the
//! crate that owns it.
//!
//! # Trust
//! Trusts the data directory (it holds the database, the code cache, the
//! identity CA and the operator token). Trusts no control-API caller until
//! the operator token matches or, with `control_tls`, a client certificate
//! verifies as an operator's, and then lets it do only what the control
//! policy permits; trusts no deployed byte until admission has verified it,
//! again after every restart.

mod admission;
mod analyzer;
mod answers;
mod api;
mod auth;
mod authz;
mod callers;
mod clock;
mod control;
mod datadir;
mod demo;
mod error;
mod events;
mod identity;
mod jwks;
mod layers;
mod metrics;
mod mtls_callers;
mod objects;
mod operators;
mod policies;
mod route_space;
mod tenant_limits;
pub mod tlog;
mod tls;
mod zones;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;
use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome};
use zerofn_gateway::{Gateway, GatewayServices, InvocationLogs, Routes};
use zerofn_sandbox::{Sandbox, SandboxConfig};
use zerofn_store::Store;

pub use admission::{
    AddIdentity, AdmissionView, ExplainResult, SetAdmission, SubmittedAttestation,
};
pub use control::{ControlPlane, DeployRequest, DeployResponse};
pub use datadir::{
    default_data_dir, ApiEndpoint, DataDir, DataDirLock, API_ENDPOINT_FILE, CA_BUNDLE_FILE,
    LOCK_FILE, TOKEN_FILE,
};
pub use error::ServerError;
pub use identity::Identities;
pub use tlog::{audit_log_verifier, AuditTree, AUDIT_KEY_FILE};
pub use zerofn_audit::AuditDurability;
pub use zerofn_gateway::{EgressClient, EgressConfig, EgressLimits, GatewayConfig, LogRetention};
pub use zerofn_identity::TrustDomain;
pub use zerofn_listener::TlsFileError;
pub use zerofn_store::DEFAULT_KEEP_VERSIONS;
pub use zerofn_telemetry::{OtlpConfig, DEFAULT_SAMPLE_MIN_PER_SECOND, DEFAULT_SAMPLE_RATIO};

/// Everything `zerofn up` needs.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    pub data_dir: PathBuf,
    pub gateway_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// Instances that may run at once.
    pub max_instances: u32,
    /// Instances one tenant may run at once (`None`: half of
    /// `max_instances`, rounded up).
    pub max_instances_per_tenant: Option<u32>,
    pub gateway: GatewayConfig,
    /// Deploy the example functions found in this directory, signed with
    /// the demo key.
    pub demo_dir: Option<PathBuf>,
    /// SPIFFE trust domain of the functions' identities.
    pub trust_domain: TrustDomain,
    /// Lifetime of each function's X.509-SVID; renewed at half of it.
    pub svid_ttl: std::time::Duration,
    /// When an audit append counts as done.
    pub audit_durability: AuditDurability,
    /// Serve the control API over TLS (server certificate from the platform CA),
    /// accepting operators' client certificates beside the token.
    pub control_tls: bool,
    /// How much of the functions' stdout and stderr is kept (`zerofn logs`).
    pub log_retention: LogRetention,
    /// How many versions of each function keep their request, so that
    /// `zerofn rollback` can deploy them again (at least 1).
    pub keep_versions: u32,
    /// Serve the gateway over TLS with this certificate chain and key (PEM
    /// files, reloaded when they change); plain HTTP without.
    pub gateway_tls: Option<GatewayTls>,
    /// Also serve `GET /metrics`, unauthenticated, on this address (the control API
    /// serves it to authorized operators either way).
    pub metrics_addr: Option<SocketAddr>,
    /// Apply this configuration directory at start, before serving (`--config-dir`).
    pub config_dir: Option<PathBuf>,
    /// Refuse configuration changes through the control API other than `zerofn apply`
    /// (`--locked-config`).
    pub locked_config: bool,
    /// Export traces to this OTLP/HTTP collector (`--otlp-endpoint`); `None`: off.
    pub otlp: Option<OtlpConfig>,
}

/// The gateway's TLS files (`--gateway-tls-cert`, `--gateway-tls-key`).
#[derive(Debug, Clone)]
pub struct GatewayTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// How often the files are checked for a change (SIGHUP checks at once).
    pub reload_interval: std::time::Duration,
}

/// A running platform.
pub struct Running {
    pub gateway_addr: SocketAddr,
    /// `http://ADDR` or, with `gateway_tls`, `https://ADDR`.
    pub gateway_url: String,
    pub api_addr: SocketAddr,
    /// `http://ADDR` or, with `control_tls`, `https://ADDR`.
    pub api_url: String,
    /// The unauthenticated metrics listener, if asked for.
    pub metrics_addr: Option<SocketAddr>,
    pub control: Arc<ControlPlane>,
    /// Functions deployed by `--demo`.
    pub demo: Vec<DeployResponse>,
    /// The audit log's Merkle tree and checkpoints.
    pub audit_tree: AuditTree,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// Keeps every other `zerofn up` off the data directory while this runs.
    _lock: DataDirLock,
}

impl Running {
    /// Stop accepting, finish in-flight requests, return when both
    /// listeners are closed.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        // Sign what the last requests appended: a stopped platform's log
        // is covered to its end, so offline verification can tell a record
        // appended later by someone else.
        if let Err(error) = self.audit_tree.checkpoint().await {
            tracing::error!(%error, "cannot sign the final audit checkpoint");
        }
    }
}

/// Start the platform.
pub async fn up(cfg: PlatformConfig) -> Result<Running, ServerError> {
    let data = DataDir::prepare(&cfg.data_dir)?;
    // The lock first: a second platform on this directory must change
    // nothing in it (not the database, not the audit chain).
    let lock = data.lock()?;
    raise_descriptor_limit();
    // Then the listeners: a platform that cannot serve records nothing.
    let gateway_listener = tokio::net::TcpListener::bind(cfg.gateway_addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: cfg.gateway_addr,
            source,
        })?;
    let api_listener = tokio::net::TcpListener::bind(cfg.api_addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: cfg.api_addr,
            source,
        })?;
    let metrics_listener = match cfg.metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?,
        ),
        None => None,
    };
    // A token others can read is refused before anything is recorded.
    let token = data.operator_token()?;
    let store = Store::open(data.root())?;
    let metrics = Arc::new(metrics::Metrics::new());
    let audit = AuditLog::open_observed(
        &store,
        cfg.audit_durability,
        Some(metrics.clone() as Arc<dyn zerofn_audit::AuditObserver>),
    )?;
    // The tree continues from its last signed checkpoint; one that does not
    // match what was signed (or a broken chain after it) stops the start.
    let audit_tree = AuditTree::open(&store, data.root(), &audit)?;
    let mut sandbox_cfg = SandboxConfig::new(data.cache_dir());
    sandbox_cfg.max_instances = cfg.max_instances;
    sandbox_cfg.max_instances_per_tenant = cfg.max_instances_per_tenant;
    let sandbox = Arc::new(Sandbox::new(sandbox_cfg)?);
    let logs = InvocationLogs::start(
        &store,
        cfg.log_retention,
        sandbox.config().stdio_capture_bytes,
    )?;
    let routes = Routes::default();
    let (shutdown, shutdown_rx) = watch::channel(false);
    // Durable queues: operations through the control API, delivery by the
    // loop started below; a publish wakes the loop at once.
    let events_clock: Arc<dyn zerofn_events::Clock> = Arc::new(zerofn_events::SystemClock);
    let events_wake = Arc::new(tokio::sync::Notify::new());
    let queues = zerofn_events::Queues::new(
        store.clone(),
        audit.clone(),
        events_clock.clone(),
        events_wake.clone(),
    );
    let queue_worker = store.open_queue_worker()?;
    // Object storage: its events go to the same loop; blobs a crash left
    // unreferenced are removed before anything is served.
    let objects = zerofn_events::Objects::new(
        store.clone(),
        audit.clone(),
        events_clock.clone(),
        Arc::new(events::RouteBindings(routes.clone())),
        events_wake.clone(),
    );
    let swept = objects
        .sweep()
        .await
        .map_err(|e| ServerError::Control(control::ControlError::Objects(e)))?;
    tracing::debug!(files = swept, "unreferenced blobs removed");
    let identities = Arc::new(Identities::open(
        &data.root().join("identity"),
        &cfg.trust_domain,
        cfg.svid_ttl,
        shutdown_rx.clone(),
    )?);
    identities.load_revoked(
        &store
            .revoked_serials(time::OffsetDateTime::now_utc().unix_timestamp())
            .await?,
    );
    let ca = identities.ca().clone();
    metrics.attach(sandbox.clone(), identities.clone());
    let control = Arc::new(ControlPlane::new(
        store.clone(),
        audit.clone(),
        sandbox.clone(),
        routes.clone(),
        identities,
        data.root().join("vulndb"),
        cfg.keep_versions.max(1),
    ));
    let authz = Arc::new(authz::ControlAuthz::load(store.clone(), audit.clone())?);
    let operators = Arc::new(operators::Operators::open(
        ca.clone(),
        store.clone(),
        audit.clone(),
    )?);
    let jwks_fetcher: Arc<dyn zerofn_authn::JwksFetcher> =
        Arc::new(jwks::EgressJwksFetcher::new(&cfg.gateway.egress));
    let callers = Arc::new(callers::ExternalCallers::new(
        store.clone(),
        audit.clone(),
        Arc::new(jwks::JwksIssuers::new(jwks_fetcher)),
    ));
    callers.reload().await?;
    let mtls = Arc::new(mtls_callers::MtlsCallers::new(
        store.clone(),
        audit.clone(),
        ca.clone(),
    ));
    mtls.reload().await?;
    let served = control.restore().await?;
    tracing::info!(functions = served, "restored deployments");
    let limited = control.load_tenant_limits().await?;
    tracing::debug!(tenants = limited, "tenant limits loaded");
    audit
        .append(
            AuditRecord::new("platform", Action::PlatformStart, Outcome::Allow)
                .reason(format!("{served} functions restored")),
        )
        .await?;

    let gateway_addr = local_addr(&gateway_listener)?;
    let api_addr = local_addr(&api_listener)?;
    // Files that do not load stop the start: a gateway meant for TLS never
    // serves in the clear.
    let gateway_certificates = match &cfg.gateway_tls {
        Some(files) => Some((
            zerofn_listener::CertificateFiles::load(&files.cert, &files.key)?,
            files.reload_interval,
        )),
        None => None,
    };
    let gateway_tls = match &gateway_certificates {
        Some((certificates, _)) => Some(zerofn_listener::Tls(Arc::new(
            zerofn_listener::server_config(certificates.clone())?,
        ))),
        None => None,
    };
    let gateway_url = match gateway_tls {
        Some(_) => format!("https://{gateway_addr}"),
        None => format!("http://{gateway_addr}"),
    };
    let metrics_addr = metrics_listener.as_ref().map(local_addr).transpose()?;
    let (tls, api_url) = if cfg.control_tls {
        (
            Some(tls::server_config(ca, api_addr.ip())?),
            format!("https://{api_addr}"),
        )
    } else {
        (None, format!("http://{api_addr}"))
    };
    data.write_api_endpoint(&ApiEndpoint {
        url: api_url.clone(),
        gateway_url: gateway_url.clone(),
    })?;

    let demo = match &cfg.demo_dir {
        Some(dir) => demo::deploy_examples(&control, &data, dir).await?,
        None => Vec::new(),
    };

    let mut tasks = JoinSet::new();
    // Traces: the exporter runs as a task of its own and flushes what is
    // queued when the platform stops.
    let tracer = match cfg.otlp.clone() {
        Some(otlp) => {
            let endpoint = otlp.endpoint().to_string();
            let (tracer, exporter) = zerofn_telemetry::Tracer::start(otlp, shutdown_rx.clone())?;
            tasks.spawn(exporter.run());
            tracing::info!(%endpoint, "exporting traces over OTLP/HTTP");
            tracer
        }
        None => zerofn_telemetry::Tracer::disabled(),
    };
    metrics.attach_tracer(&tracer);
    let bindings = events::RouteBindings(routes.clone());
    let gateway = Gateway::new(
        routes,
        sandbox,
        audit.clone(),
        cfg.gateway.clone(),
        GatewayServices {
            policies: control.policies().clone(),
            store: store.clone(),
            identity: control.identities_arc(),
            logs,
            limits: control.invoke_limits().clone(),
            authn: callers.authenticators().clone(),
            publisher: Some(Arc::new(events::FunctionPublisher(queues.clone()))),
            objects: Some(Arc::new(objects::FunctionObjects(objects.clone()))),
            mtls: mtls.authorities().clone(),
            tracer,
        },
    );
    if let Some((certificates, interval)) = gateway_certificates {
        tasks.spawn(certificates.watch(interval, shutdown_rx.clone()));
    }
    let bindings: Arc<dyn zerofn_events::Bindings> = Arc::new(bindings);
    let invoker: Arc<dyn zerofn_events::Invoker> =
        Arc::new(events::GatewayInvoker(gateway.clone()));
    let scheduler = zerofn_events::Scheduler::new(
        store.clone(),
        events_clock.clone(),
        bindings.clone(),
        invoker.clone(),
    );
    let delivery = zerofn_events::Delivery::new(
        queue_worker,
        events_clock,
        bindings.clone(),
        invoker.clone(),
        audit.clone(),
        events_wake,
    );
    tasks.spawn(delivery.run(shutdown_rx.clone()));
    // Key-value change streams: the store's outbox, delivered through the
    // same invoke path (`zerofn_events::KvStreams`).
    let kv_streams = zerofn_events::KvStreams::new(
        store.clone(),
        Arc::new(zerofn_events::SystemClock),
        bindings.clone(),
        invoker.clone(),
        audit.clone(),
    )?;
    tasks.spawn(kv_streams.run(shutdown_rx.clone()));
    tasks.spawn(jwks::refresh(
        callers.jwks_issuers().clone(),
        store.clone(),
        audit.clone(),
        shutdown_rx.clone(),
    ));
    tasks.spawn(scheduler.clone().run_until(shutdown_rx.clone()));
    tasks.spawn(gateway.serve_with(gateway_listener, gateway_tls, shutdown_rx.clone()));
    tasks.spawn(
        audit_tree
            .clone()
            .run(tlog::CHECKPOINT_INTERVAL, shutdown_rx.clone()),
    );
    let refusals = zerofn_audit::RefusalAggregator::new(
        audit.clone(),
        cfg.gateway.refusal_aggregation_interval,
    );
    let api = Arc::new(api::Api {
        control: control.clone(),
        token,
        audit,
        authz,
        operators,
        tls,
        refusals,
        audit_tree: audit_tree.clone(),
        metrics: metrics.clone(),
        callers,
        mtls,
        config_change: tokio::sync::Mutex::new(()),
        locked_config: cfg.locked_config,
        queues,
        scheduler,
        objects,
    });
    if let Some(dir) = &cfg.config_dir {
        // Applied before anything is served; a directory that does not apply stops the
        // start (fail closed: the platform does not run a configuration it was not given).
        let applied = api::apply_config_dir(&api, dir).await?;
        tracing::info!(
            dir = %dir.display(),
            changes = applied,
            "configuration directory applied"
        );
    }
    if let Some(listener) = metrics_listener {
        tasks.spawn(metrics::serve(
            metrics,
            listener,
            cfg.gateway.clone(),
            shutdown_rx.clone(),
        ));
    }
    tasks.spawn(api.serve(api_listener, cfg.gateway.clone(), shutdown_rx));

    Ok(Running {
        gateway_addr,
        gateway_url,
        api_addr,
        api_url,
        metrics_addr,
        control,
        demo,
        audit_tree,
        shutdown,
        tasks,
        _lock: lock,
    })
}

/// Raise the open-descriptor soft limit to the hard limit: every
/// connection and every database handle is one, and the usual soft default
/// (1024) is reached by a few hundred idle clients. Logged either way.
fn raise_descriptor_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        tracing::debug!(limit = ?limit.current, "open-file limit already at its maximum");
        return;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::debug!(from = ?limit.current, to = ?limit.maximum, "raised the open-file limit")
        }
        Err(error) => {
            tracing::warn!(%error, limit = ?limit.current, "cannot raise the open-file limit")
        }
    }
}

fn local_addr(l: &tokio::net::TcpListener) -> Result<SocketAddr, ServerError> {
    l.local_addr().map_err(|source| ServerError::Io {
        what: "listener address".into(),
        source,
    })
}

/// Walk the audit chain in `data_dir` without a running platform. The
/// database is opened read-only: verifying never creates, migrates or
/// writes what it verifies. A missing `audit` table or an empty log is a
/// failure, not "intact": a platform that started has at least its
/// `platform.start` record.
pub fn verify_audit_offline(
    data_dir: &std::path::Path,
) -> Result<zerofn_audit::ChainHead, ServerError> {
    let db = data_dir.join(zerofn_store::DATABASE_FILE);
    if !db.is_file() {
        return Err(ServerError::NoDatabase(db));
    }
    let store = Store::open_read_only(data_dir)?;
    if !store.has_audit_table_blocking()? {
        return Err(ServerError::AuditMissing(db));
    }
    let head = zerofn_audit::verify_chain(&store)?;
    if head.records == 0 {
        return Err(ServerError::AuditEmpty(db));
    }
    Ok(head)
}
