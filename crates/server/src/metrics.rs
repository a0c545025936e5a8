//! The platform's Prometheus metrics (`GET /metrics` on the control API, and on the
//! optional unauthenticated `--metrics-addr` listener): invocations, their latency,
//! refusals, admissions, instances in use, the audit writer, and certificate expiry.
//!
//! Counted where every decision already passes: the audit log ([`AuditObserver`]).
//! Audit before effect means each invocation, refusal and admission is appended once, so
//! counting here needs no hook in the gateway's or the control plane's paths. Gauges that
//! describe the present (instances in use, certificate expiry) are read at scrape time.
//!
//! # Trust
//! Trusts the audit records' fixed fields (action, outcome, status) and the tenant and
//! function names of invocation records, which the gateway takes from the admitted
//! manifest of a deployed function, never from a request. Label cardinality is bounded:
//! - `tenant`/`function` only come from invocation records, and at most
//!   [`MAX_FUNCTIONS`] pairs get their own series; later ones count under
//!   [`OVERFLOW`].
//! - `status` is the class (`2xx` ... `5xx`, `other`), not the code a guest chose.
//! - `reason` is one of a fixed set of classes derived from the action and status
//!   ([`denial_reason`]), never a record's free text.
//!
//! The per-record cost is a read lock on the set of known functions and a lookup in two
//! label families (each a read lock and atomic increments); nothing blocks.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use zerofn_audit::{Action, AuditObserver, AuditRecord, Outcome};
use zerofn_sandbox::Sandbox;

use crate::identity::Identities;

/// Most (tenant, function) pairs with series of their own.
pub(crate) const MAX_FUNCTIONS: usize = 4096;
/// The tenant and function label of invocations beyond [`MAX_FUNCTIONS`].
pub(crate) const OVERFLOW: &str = "_overflow";
/// The content type of the exposition (OpenMetrics text, which Prometheus scrapes).
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvocationLabels {
    tenant: String,
    function: String,
    outcome: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    tenant: String,
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    action: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpanLabels {
    /// `exported`, `dropped` (the queue was full) or `failed` (the batch was not accepted).
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    kind: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// What the gauges read at scrape time, attached once both exist.
struct Live {
    sandbox: Arc<Sandbox>,
    identities: Arc<Identities>,
}

/// The registry and every series. Cheap to share (`Arc`).
pub(crate) struct Metrics {
    registry: Registry,
    invocations: Family<InvocationLabels, Counter>,
    invocation_seconds: HistogramFamily<FunctionLabels>,
    denials: Family<DenialLabels, Counter>,
    admissions: Family<ResultLabels, Counter>,
    records: Family<ActionLabels, Counter>,
    append_seconds: Histogram,
    append_failures: Counter,
    batch_records: Histogram,
    instances_in_use: Gauge,
    certificate_expiry: Family<CertificateLabels, Gauge>,
    svid_expiry: Family<FunctionLabels, Gauge>,
    /// Ended trace spans by what became of them (`--otlp-endpoint`).
    trace_spans: Family<SpanLabels, Counter>,
    /// The exporter's counts, read at scrape time.
    trace_stats: OnceLock<Arc<zerofn_telemetry::ExportStats>>,
    /// Functions with series of their own, by tenant (looked up without allocating).
    known: RwLock<HashMap<String, HashSet<String>>>,
    /// How many pairs `known` holds.
    known_count: AtomicUsize,
    live: OnceLock<Live>,
    /// One scrape at a time: the scrape-time gauges are cleared and refilled.
    scrape: std::sync::Mutex<()>,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~52 s, doubling.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("zerofn");
        let invocations = Family::<InvocationLabels, Counter>::default();
        registry.register(
            "invocations",
            "Invocations by tenant, function, outcome (allow, deny, error) and status class",
            invocations.clone(),
        );
        let invocation_seconds: HistogramFamily<FunctionLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "invocation_duration_seconds",
            "Time from a request's arrival to its audit record, by tenant and function",
            invocation_seconds.clone(),
        );
        let denials = Family::<DenialLabels, Counter>::default();
        registry.register(
            "denials",
            "Refused requests by audit action and reason class (fixed set, see docs/metrics.md)",
            denials.clone(),
        );
        let admissions = Family::<ResultLabels, Counter>::default();
        registry.register(
            "admissions",
            "Deployments by admission result (admitted, refused, error)",
            admissions.clone(),
        );
        let records = Family::<ActionLabels, Counter>::default();
        registry.register(
            "audit_records",
            "Events given to the audit log by action and outcome (aggregated refusals count each)",
            records.clone(),
        );
        let append_seconds = latency_histogram();
        registry.register(
            "audit_append_duration_seconds",
            "Time from asking for an audit append to its acknowledgement (durable)",
            append_seconds.clone(),
        );
        let append_failures = Counter::default();
        registry.register(
            "audit_append_failures",
            "Audit appends that failed (their actions were refused)",
            append_failures.clone(),
        );
        let batch_records = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        registry.register(
            "audit_commit_batch_records",
            "Records the audit writer committed in one transaction",
            batch_records.clone(),
        );
        let instances_in_use = Gauge::default();
        registry.register(
            "instances_in_use",
            "Sandbox instances running now",
            instances_in_use.clone(),
        );
        let certificate_expiry = Family::<CertificateLabels, Gauge>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the platform's certificates expire (Unix time); kind=ca is the identity CA",
            certificate_expiry.clone(),
        );
        let svid_expiry = Family::<FunctionLabels, Gauge>::default();
        registry.register(
            "svid_expiry_timestamp_seconds",
            "When each served function's current X.509-SVID expires (Unix time)",
            svid_expiry.clone(),
        );
        let trace_spans = Family::<SpanLabels, Counter>::default();
        registry.register(
            "trace_spans",
            "Ended trace spans by outcome: exported, dropped (export queue full) or failed (batch not accepted); with --otlp-endpoint",
            trace_spans.clone(),
        );
        Metrics {
            trace_spans,
            trace_stats: OnceLock::new(),
            registry,
            invocations,
            invocation_seconds,
            denials,
            admissions,
            records,
            append_seconds,
            append_failures,
            batch_records,
            instances_in_use,
            certificate_expiry,
            svid_expiry,
            known: RwLock::new(HashMap::new()),
            known_count: AtomicUsize::new(0),
            live: OnceLock::new(),
            scrape: std::sync::Mutex::new(()),
        }
    }

    /// Read instances in use and certificate expiry from these at scrape time.
    pub(crate) fn attach(&self, sandbox: Arc<Sandbox>, identities: Arc<Identities>) {
        let _ = self.live.set(Live {
            sandbox,
            identities,
        });
    }

    /// Read the trace exporter's counts at scrape time (tracing on).
    pub(crate) fn attach_tracer(&self, tracer: &zerofn_telemetry::Tracer) {
        if let Some(stats) = tracer.stats() {
            let _ = self.trace_stats.set(stats);
        }
    }

    /// The exposition: OpenMetrics text, ending in `# EOF`.
    pub(crate) fn render(&self) -> Result<String, std::fmt::Error> {
        let _one = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stats) = self.trace_stats.get() {
            // The exporter counts; the counters catch up to it (one scrape at a time).
            for (outcome, total) in [
                ("exported", stats.exported()),
                ("dropped", stats.dropped()),
                ("failed", stats.failed()),
            ] {
                let counter = self.trace_spans.get_or_create(&SpanLabels { outcome });
                counter.inc_by(total.saturating_sub(counter.get()));
            }
        }
        if let Some(live) = self.live.get() {
            self.instances_in_use
                .set(i64::try_from(live.sandbox.instances_in_use()).unwrap_or(i64::MAX));
            let (ca, svids) = live.identities.expiries();
            self.certificate_expiry
                .get_or_create(&CertificateLabels { kind: "ca" })
                .set(ca);
            // Only the functions served now: an undeployed one's series goes.
            self.svid_expiry.clear();
            for (tenant, function, not_after) in svids.into_iter().take(MAX_FUNCTIONS) {
                self.svid_expiry
                    .get_or_create(&FunctionLabels { tenant, function })
                    .set(not_after);
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// The labels of (`tenant`, `function`): their own while fewer than
    /// [`MAX_FUNCTIONS`] pairs have series, else [`OVERFLOW`].
    fn function_labels(&self, tenant: &str, function: &str) -> FunctionLabels {
        let own = || FunctionLabels {
            tenant: tenant.to_owned(),
            function: function.to_owned(),
        };
        let overflow = || FunctionLabels {
            tenant: OVERFLOW.to_owned(),
            function: OVERFLOW.to_owned(),
        };
        {
            let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
            if known.get(tenant).is_some_and(|f| f.contains(function)) {
                return own();
            }
            // Full: an unknown pair never takes the write lock (nor sums anything).
            if self.known_count.load(Ordering::Relaxed) >= MAX_FUNCTIONS {
                return overflow();
            }
        }
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        if known.get(tenant).is_some_and(|f| f.contains(function)) {
            return own();
        }
        if self.known_count.load(Ordering::Relaxed) >= MAX_FUNCTIONS {
            return overflow();
        }
        known
            .entry(tenant.to_owned())
            .or_default()
            .insert(function.to_owned());
        // Only changed under the write lock.
        self.known_count.fetch_add(1, Ordering::Relaxed);
        own()
    }
}

/// The exposition as an HTTP answer (500 if it cannot be encoded, which the encoder only
/// reports for a failing writer).
pub(crate) fn response(metrics: &Metrics) -> http::Response<bytes::Bytes> {
    match metrics.render() {
        Ok(text) => {
            let mut resp = http::Response::new(bytes::Bytes::from(text));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(CONTENT_TYPE),
            );
            resp
        }
        Err(_) => zerofn_gateway::error_response(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the metrics could not be encoded",
            None,
        ),
    }
}

/// Serve `GET /metrics`, unauthenticated, on `listener` (`zerofn up --metrics-addr`), with
/// the control API's connection limits and timeouts. Nothing else is served there, and
/// nothing there is recorded: it reveals counts, never a record, a body or a secret.
pub(crate) async fn serve(
    metrics: Arc<Metrics>,
    listener: tokio::net::TcpListener,
    config: zerofn_gateway::GatewayConfig,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    zerofn_listener::serve(
        listener,
        None,
        &config.listener(),
        shutdown,
        move |req: http::Request<hyper::body::Incoming>| {
            let metrics = metrics.clone();
            async move {
                let resp = match (req.method(), req.uri().path()) {
                    (&http::Method::GET, "/metrics") => response(&metrics),
                    (_, "/metrics") => zerofn_gateway::error_response(
                        http::StatusCode::METHOD_NOT_ALLOWED,
                        "method_not_allowed",
                        "only GET is served here",
                        None,
                    ),
                    _ => zerofn_gateway::error_response(
                        http::StatusCode::NOT_FOUND,
                        "no_such_endpoint",
                        "only GET /metrics is served here",
                        None,
                    ),
                };
                resp.map(http_body_util::Full::new)
            }
        },
        None,
    )
    .await;
}

/// The class of an HTTP status: `2xx` ... `5xx`, else `other`.
fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(100..=199) => "1xx",
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "other",
    }
}

/// The reason class of a refusal: a fixed set, from the record's action and status only
/// (never its free-text reason, which would make a series per message).
pub(crate) fn denial_reason(action: Action, status: Option<u16>) -> &'static str {
    match (action, status) {
        (Action::Deploy, _) => "admission",
        (Action::ApiAuthenticate, _) | (_, Some(401)) => "authentication",
        (Action::Connection, _) => "connection",
        (Action::Capability, _) | (_, Some(403)) => "policy",
        (_, Some(404)) => "not_found",
        (_, Some(408)) => "timeout",
        (_, Some(413)) => "too_large",
        (_, Some(429)) => "rate_limited",
        (_, Some(503)) => "busy",
        (_, Some(400..=499)) => "bad_request",
        _ => "other",
    }
}

impl AuditObserver for Metrics {
    fn record(&self, record: &AuditRecord, count: u64) {
        let action = record.action();
        let outcome = record.outcome();
        self.records
            .get_or_create(&ActionLabels {
                action: action.as_str(),
                outcome: outcome.as_str(),
            })
            .inc_by(count);
        if outcome == Outcome::Deny {
            self.denials
                .get_or_create(&DenialLabels {
                    action: action.as_str(),
                    reason: denial_reason(action, record.status_code()),
                })
                .inc_by(count);
        }
        match action {
            Action::Invoke => {
                let (Some(tenant), Some(function)) = (record.tenant_text(), record.function_text())
                else {
                    // No function was routed to (a 404): a denial, counted above.
                    return;
                };
                let labels = self.function_labels(tenant, function);
                if let Some(took) = record.duration_value() {
                    if count == 1 {
                        self.invocation_seconds
                            .get_or_create(&labels)
                            .observe(took.as_secs_f64());
                    }
                }
                self.invocations
                    .get_or_create(&InvocationLabels {
                        tenant: labels.tenant,
                        function: labels.function,
                        outcome: outcome.as_str(),
                        status: status_class(record.status_code()),
                    })
                    .inc_by(count);
            }
            Action::Deploy => {
                let result = match outcome {
                    Outcome::Allow => "admitted",
                    Outcome::Deny => "refused",
                    Outcome::Error => "error",
                };
                self.admissions
                    .get_or_create(&ResultLabels { result })
                    .inc_by(count);
            }
            _ => {}
        }
    }

    fn appended(&self, took: Duration, ok: bool) {
        if ok {
            self.append_seconds.observe(took.as_secs_f64());
        } else {
            self.append_failures.inc();
        }
    }

    fn committed(&self, records: usize) {
        self.batch_records.observe(records as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoke(tenant: &str, function: &str, outcome: Outcome, status: u16) -> AuditRecord {
        AuditRecord::new("gateway", Action::Invoke, outcome)
            .tenant(tenant)
            .function(function)
            .status(status)
            .duration(Duration::from_millis(3))
    }

    #[test]
    fn invocations_are_counted_by_function_outcome_and_status_class() {
        let m = Metrics::new();
        m.record(&invoke("acme", "hello", Outcome::Allow, 200), 1);
        m.record(&invoke("acme", "hello", Outcome::Allow, 201), 1);
        m.record(&invoke("acme", "hello", Outcome::Deny, 403), 5);
        let text = m.render().unwrap();
        assert!(
            text.contains(r#"zerofn_invocations_total{tenant="acme",function="hello",outcome="allow",status="2xx"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"zerofn_invocations_total{tenant="acme",function="hello",outcome="deny",status="4xx"} 5"#),
            "{text}"
        );
        assert!(
            text.contains(r#"zerofn_denials_total{action="invoke",reason="policy"} 5"#),
            "{text}"
        );
        // Latency is observed per record, not for counted repeats.
        assert!(
            text.contains(
                r#"zerofn_invocation_duration_seconds_count{tenant="acme",function="hello"} 2"#
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn free_text_never_becomes_a_label() {
        let m = Metrics::new();
        for i in 0..50 {
            m.record(
                &AuditRecord::new("operator", Action::ApiAuthorize, Outcome::Deny)
                    .status(400)
                    .reason(format!("secret-{i}: bad request")),
                1,
            );
        }
        let text = m.render().unwrap();
        assert!(!text.contains("secret-"), "{text}");
        assert!(
            text.contains(
                r#"zerofn_denials_total{action="api.authorize",reason="bad_request"} 50"#
            ),
            "{text}"
        );
    }

    #[test]
    fn functions_beyond_the_bound_share_the_overflow_series() {
        let m = Metrics::new();
        for i in 0..MAX_FUNCTIONS + 10 {
            m.record(&invoke("t", &format!("f{i}"), Outcome::Allow, 200), 1);
        }
        let text = m.render().unwrap();
        let series = text
            .lines()
            .filter(|l| l.starts_with("zerofn_invocations_total{"))
            .count();
        assert_eq!(series, MAX_FUNCTIONS + 1);
        assert!(
            text.contains(r#"zerofn_invocations_total{tenant="_overflow",function="_overflow",outcome="allow",status="2xx"} 10"#),
            "{text}"
        );
    }

    #[test]
    fn reason_classes_are_a_fixed_set() {
        for (action, status, class) in [
            (Action::Invoke, Some(404), "not_found"),
            (Action::Invoke, Some(403), "policy"),
            (Action::Invoke, Some(401), "authentication"),
            (Action::Invoke, Some(413), "too_large"),
            (Action::Invoke, Some(429), "rate_limited"),
            (Action::Invoke, Some(503), "busy"),
            (Action::Invoke, Some(418), "bad_request"),
            (Action::Deploy, None, "admission"),
            (Action::ApiAuthenticate, Some(401), "authentication"),
            (Action::Capability, None, "policy"),
            (Action::Connection, None, "connection"),
            (Action::TenantCreate, None, "other"),
        ] {
            assert_eq!(denial_reason(action, status), class, "{action} {status:?}");
        }
    }
}
