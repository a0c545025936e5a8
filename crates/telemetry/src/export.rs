//! The tracer and its exporter: ended spans go into a bounded queue
//! without waiting (a full queue drops the span and counts it), and one
//! background task sends them in batches to the OTLP/HTTP endpoint
//! (`POST …/v1/traces`, `application/x-protobuf`), each request bounded
//! by a timeout and never retried: a failed batch is dropped and counted,
//! so an unreachable collector costs one attempt per batch interval and
//! never a storm.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use prost::Message;
use tokio::sync::{mpsc, watch};

use crate::context::{TraceId, TraceParent};
use crate::proto;
use crate::span::{FinishedSpan, Span, SpanKind, Value};
use crate::TelemetryError;

/// Ended spans waiting for export; beyond this they are dropped and counted.
pub const QUEUE_SPANS: usize = 8192;
/// Spans in one export request.
pub const MAX_BATCH: usize = 512;
/// How long spans wait for a batch to fill before they are sent anyway.
pub const BATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Longest one export request may take, connection included.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read from the collector (it is discarded).
const MAX_RESPONSE: usize = 64 * 1024;

/// Where and how much to export (`zerofn up --otlp-endpoint`,
/// `--otlp-sample-ratio`).
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The traces URL: `http(s)://host[:port]/…/v1/traces`.
    endpoint: Uri,
    /// Share of new traces sampled, in [0, 1]; traces continued from a
    /// caller follow the caller's `sampled` flag.
    sample_ratio: f64,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// `service.version` of the exported resource.
    pub service_version: String,
}

impl OtlpConfig {
    /// Check an endpoint and a ratio. `URL/v1/traces` is appended unless
    /// the URL already ends in it (the OTLP/HTTP exporter convention for a
    /// base endpoint).
    pub fn new(endpoint: &str, sample_ratio: f64) -> Result<OtlpConfig, TelemetryError> {
        let bad = |reason: &'static str| TelemetryError::Endpoint {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let uri: Uri = endpoint.parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(bad("the scheme must be http or https")),
        }
        let Some(authority) = uri.authority() else {
            return Err(bad("it names no host"));
        };
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        if uri.query().is_some() {
            return Err(bad("a query is not supported"));
        }
        let path = uri.path().trim_end_matches('/');
        let path = if path.ends_with("/v1/traces") {
            path.to_owned()
        } else {
            format!("{path}/v1/traces")
        };
        let endpoint_uri = Uri::builder()
            .scheme(uri.scheme_str().unwrap_or("http"))
            .authority(authority.as_str())
            .path_and_query(path)
            .build()
            .map_err(|_| bad("not a URL"))?;
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(TelemetryError::SampleRatio {
                ratio: sample_ratio,
            });
        }
        Ok(OtlpConfig {
            endpoint: endpoint_uri,
            sample_ratio,
            service_name: "zerofn".to_owned(),
            service_version: String::new(),
        })
    }

    /// The URL spans are posted to.
    pub fn endpoint(&self) -> &Uri {
        &self.endpoint
    }
}

/// Counts of what happened to ended spans, for `/metrics`.
#[derive(Debug, Default)]
pub struct ExportStats {
    exported: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl ExportStats {
    /// Spans the collector accepted (a 2xx answer).
    pub fn exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }
    /// Spans dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Spans in batches the collector refused or that could not be sent.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// Ratio sampling on the trace id (as OpenTelemetry's `TraceIdRatioBased`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sampler {
    /// Keys below this are sampled; `None`: all.
    below: Option<u64>,
}

impl Sampler {
    fn new(ratio: f64) -> Sampler {
        if ratio >= 1.0 {
            return Sampler { below: None };
        }
        // In [0, 2^64): the float-to-int cast saturates and NaN was refused.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let below = (ratio * 18_446_744_073_709_551_616.0) as u64;
        Sampler { below: Some(below) }
    }

    pub(crate) fn samples(&self, id: &TraceId) -> bool {
        self.below.is_none_or(|b| id.sample_key() < b)
    }
}

/// What every span of a tracer shares: the queue and the counts.
pub(crate) struct Shared {
    queue: mpsc::Sender<FinishedSpan>,
    pub(crate) sampler: Sampler,
    stats: Arc<ExportStats>,
}

impl Shared {
    /// Queue an ended span, never waiting.
    pub(crate) fn submit(&self, span: FinishedSpan) {
        if self.queue.try_send(span).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts spans; cheap to clone. [`Tracer::default`] is off.
#[derive(Clone, Default)]
pub struct Tracer {
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("enabled", &self.shared.is_some())
            .finish()
    }
}

impl Tracer {
    /// A tracer that records nothing.
    pub fn disabled() -> Tracer {
        Tracer::default()
    }

    /// Start exporting to `config`'s endpoint: the tracer and the export
    /// task (spawn it; it ends, flushing what is queued, when `shutdown`
    /// turns true).
    pub fn start(
        config: OtlpConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Tracer, Exporter), TelemetryError> {
        let (queue, spans) = mpsc::channel(QUEUE_SPANS);
        let stats = Arc::new(ExportStats::default());
        let sampler = Sampler::new(config.sample_ratio);
        let client = Client::new(&config)?;
        let exporter = Exporter {
            spans,
            client,
            resource: resource(&config),
            stats: stats.clone(),
            shutdown,
        };
        let shared = Arc::new(Shared {
            queue,
            sampler,
            stats,
        });
        Ok((
            Tracer {
                shared: Some(shared),
            },
            exporter,
        ))
    }

    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// The counts of exported, dropped and failed spans, if tracing is on.
    pub fn stats(&self) -> Option<Arc<ExportStats>> {
        self.shared.as_ref().map(|s| s.stats.clone())
    }

    /// The SERVER span of a request arriving at the platform, continuing
    /// `parent` (the caller's valid `traceparent`) or starting a new trace.
    pub fn server_span(
        &self,
        name: impl Into<Cow<'static, str>>,
        parent: Option<TraceParent>,
    ) -> Span {
        match &self.shared {
            Some(shared) => Span::server(shared, name.into(), parent),
            None => Span::none(),
        }
    }
}

/// The export task: batches, encodes and posts spans.
pub struct Exporter {
    spans: mpsc::Receiver<FinishedSpan>,
    client: Client,
    resource: proto::Resource,
    stats: Arc<ExportStats>,
    shutdown: watch::Receiver<bool>,
}

impl Exporter {
    /// Run until shutdown, then send what is queued once (within the
    /// export timeout) and stop.
    pub async fn run(mut self) {
        let mut batch: Vec<FinishedSpan> = Vec::with_capacity(MAX_BATCH);
        let mut tick = tokio::time::interval(BATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned: Option<Instant> = None;
        loop {
            let room = MAX_BATCH.saturating_sub(batch.len()).max(1);
            tokio::select! {
                // Cancel safety: `recv_many`, `tick` and `changed` lose nothing when
                // another branch wins.
                got = self.spans.recv_many(&mut batch, room) => {
                    if got == 0 {
                        break;
                    }
                    if batch.len() < MAX_BATCH {
                        continue;
                    }
                }
                _ = tick.tick() => {}
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        break;
                    }
                    continue;
                }
            }
            if !batch.is_empty() {
                let deadline = tokio::time::Instant::now() + EXPORT_TIMEOUT;
                self.send(&mut batch, &mut warned, deadline).await;
            }
        }
        // What ended before the platform stopped is sent once, not lost; all
        // of it within one export timeout, so a dead collector cannot hold
        // the shutdown for longer than that.
        let deadline = tokio::time::Instant::now() + EXPORT_TIMEOUT;
        while let Ok(span) = self.spans.try_recv() {
            batch.push(span);
            if batch.len() >= MAX_BATCH {
                self.send(&mut batch, &mut warned, deadline).await;
            }
        }
        if !batch.is_empty() {
            self.send(&mut batch, &mut warned, deadline).await;
        }
    }

    async fn send(
        &self,
        batch: &mut Vec<FinishedSpan>,
        warned: &mut Option<Instant>,
        deadline: tokio::time::Instant,
    ) {
        let count = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        let body = encode(&self.resource, batch.drain(..));
        match tokio::time::timeout_at(deadline, self.client.post(body)).await {
            Ok(Ok(())) => {
                self.stats.exported.fetch_add(count, Ordering::Relaxed);
            }
            outcome => {
                self.stats.failed.fetch_add(count, Ordering::Relaxed);
                // One warning a minute at most: a collector that is down is
                // one fact, not one per batch.
                if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    *warned = Some(Instant::now());
                    let error = match outcome {
                        Ok(Err(e)) => e,
                        _ => ExportFailure::TimedOut,
                    };
                    tracing::warn!(
                        endpoint = %self.client.endpoint,
                        %error,
                        spans = count,
                        "trace export failed; the batch is dropped"
                    );
                }
            }
        }
    }
}

/// Why one export request failed.
#[derive(Debug, thiserror::Error)]
enum ExportFailure {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("HTTP error: {0}")]
    Http(hyper::Error),
    #[error("the collector answered {0}")]
    Status(http::StatusCode),
    #[error("timed out")]
    TimedOut,
}

/// An HTTP/1.1 client of the one endpoint: a new connection per batch
/// (at most one a second), plain or over rustls with the webpki roots.
struct Client {
    endpoint: Uri,
    host: String,
    port: u16,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
}

impl Client {
    fn new(config: &OtlpConfig) -> Result<Client, TelemetryError> {
        let endpoint = config.endpoint.clone();
        let https = endpoint.scheme_str() == Some("https");
        let host = endpoint
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = endpoint.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| TelemetryError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| {
                TelemetryError::Endpoint {
                    endpoint: endpoint.to_string(),
                    reason: "the host is not a valid TLS server name",
                }
            })?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(cfg)), name))
        } else {
            None
        };
        Ok(Client {
            endpoint,
            host,
            port,
            tls,
        })
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), ExportFailure> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(ExportFailure::Connect)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.exchange(TokioIo::new(tcp), body).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(ExportFailure::Tls)?;
                self.exchange(TokioIo::new(tls), body).await
            }
        }
    }

    async fn exchange<T>(&self, io: TokioIo<T>, body: Vec<u8>) -> Result<(), ExportFailure>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(ExportFailure::Http)?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let authority = self
            .endpoint
            .authority()
            .map_or_else(String::new, |a| a.as_str().to_owned());
        let path = self
            .endpoint
            .path_and_query()
            .map_or("/v1/traces", |p| p.as_str());
        let request = Request::post(path)
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)));
        let Ok(request) = request else {
            driver.abort();
            return Err(ExportFailure::Status(http::StatusCode::BAD_REQUEST));
        };
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(ExportFailure::Http)?;
            let status = response.status();
            // Read (and discard) a bounded answer so the exchange completes.
            let _ = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await;
            if status.is_success() {
                Ok(())
            } else {
                Err(ExportFailure::Status(status))
            }
        }
        .await;
        driver.abort();
        result
    }
}

/// The resource every span is exported with.
fn resource(config: &OtlpConfig) -> proto::Resource {
    let mut attributes = vec![kv("service.name", Value::Str(config.service_name.clone()))];
    if !config.service_version.is_empty() {
        attributes.push(kv(
            "service.version",
            Value::Str(config.service_version.clone()),
        ));
    }
    proto::Resource { attributes }
}

fn kv(key: &str, value: Value) -> proto::KeyValue {
    use proto::any_value::Value as V;
    proto::KeyValue {
        key: key.to_owned(),
        value: Some(proto::AnyValue {
            value: Some(match value {
                Value::Str(s) => V::StringValue(s),
                Value::Int(i) => V::IntValue(i),
                Value::Bool(b) => V::BoolValue(b),
            }),
        }),
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One `ExportTraceServiceRequest` of `spans`, protobuf-encoded.
pub(crate) fn encode(
    resource: &proto::Resource,
    spans: impl Iterator<Item = FinishedSpan>,
) -> Vec<u8> {
    let spans = spans
        .map(|s| proto::Span {
            trace_id: s.trace_id.as_bytes().to_vec(),
            span_id: s.span_id.as_bytes().to_vec(),
            trace_state: s.state.as_deref().unwrap_or_default().to_owned(),
            parent_span_id: s.parent.map(|p| p.as_bytes().to_vec()).unwrap_or_default(),
            name: s.name.into_owned(),
            kind: s.kind as i32,
            start_time_unix_nano: unix_nanos(s.start),
            end_time_unix_nano: unix_nanos(s.end),
            attributes: s.attrs.into_iter().map(|(k, v)| kv(k, v)).collect(),
            status: s.error.map(|message| proto::Status { message, code: 2 }),
            // Only sampled spans are recorded: the sampled flag is set.
            flags: 1,
        })
        .collect();
    proto::ExportTraceServiceRequest {
        resource_spans: vec![proto::ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![proto::ScopeSpans {
                scope: Some(proto::InstrumentationScope {
                    name: "zerofn".to_owned(),
                    version: String::new(),
                }),
                spans,
            }],
        }],
    }
    .encode_to_vec()
}

impl SpanKind {
    /// The OTLP name of the kind, for tests and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
        }
    }
}
