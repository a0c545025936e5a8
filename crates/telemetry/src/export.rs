//! The tracer and its exporter: ended spans go into a bounded queue
//! without waiting (a full queue drops the span and counts it), and one
//! background task sends them in batches to the OTLP/HTTP endpoint
//! (`POST …/v1/traces`, `application/x-protobuf`), each request bounded
//! by a timeout and never retried: a failed batch is dropped and counted,
//! so an unreachable collector costs one attempt per batch interval and
//! never a storm.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::{watch, Notify};

use crate::context::{TraceId, TraceParent};
use crate::proto;
use crate::span::{FinishedSpan, Span, SpanKind, Value};
use crate::TelemetryError;

/// Ended spans waiting for export; beyond this they are dropped and counted.
pub const QUEUE_SPANS: usize = 8192;
/// Bytes of encoded spans waiting for export; a span beyond this is dropped
/// and counted, whatever the count of spans (a few hundred bytes each as
/// the gateway records them: a full queue of spans that size is 2-4 MiB).
pub const QUEUE_BYTES: usize = 8 * 1024 * 1024;
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
    /// New traces sampled each second beyond the ratio (0: none).
    sample_min_per_second: u32,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// `service.version` of the exported resource.
    pub service_version: String,
}

impl OtlpConfig {
    /// Check an endpoint and a ratio. `URL/v1/traces` is appended unless
    /// the URL already ends in it (the OTLP/HTTP exporter convention for a
    /// base endpoint). No reservoir: [`OtlpConfig::with_min_per_second`]
    /// adds one.
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
            sample_min_per_second: 0,
            service_name: "zerofn".to_owned(),
            service_version: String::new(),
        })
    }

    /// Sample the first `n` new traces of every second whatever the ratio
    /// decides (0: only the ratio decides).
    pub fn with_min_per_second(mut self, n: u32) -> OtlpConfig {
        self.sample_min_per_second = n;
        self
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

/// The share of new traces sampled by default (`--otlp-sample-ratio`).
///
/// Why 5%: a sampled request costs the platform about a third more work
/// than an unsampled one (its eight to ten spans recorded, encoded and
/// sent, on the same cores as the guests; BENCHMARKS.md, "Tracing on and
/// off"), so a ratio of r costs about r/3 of the throughput plus the
/// little an unsampled request pays (its ids, `traceparent` and the trace
/// id in its audit record): 5% keeps that within a few percent, under the
/// 5% the issue allows, while a function serving 20 requests a second
/// still gets a trace a second from the ratio alone. Istio's default is
/// 1%; X-Ray's is 5% beyond its reservoir, which
/// [`DEFAULT_SAMPLE_MIN_PER_SECOND`] follows.
pub const DEFAULT_SAMPLE_RATIO: f64 = 0.05;

/// New traces sampled each second whatever the ratio decides
/// (`--otlp-sample-min-per-second`; 0: none), as X-Ray's reservoir: a
/// platform serving a request a minute is still traced, and a busy one
/// pays for one more trace a second, nothing.
pub const DEFAULT_SAMPLE_MIN_PER_SECOND: u32 = 1;

/// Which new traces are recorded: every one the ratio picks on the trace
/// id (as OpenTelemetry's `TraceIdRatioBased`), and beyond those the first
/// `min_per_second` of each second (the reservoir). Traces continued from
/// a caller never come here: they follow the caller's sampled flag
/// (parent-based, as OpenTelemetry's default `ParentBased` sampler).
#[derive(Debug)]
pub(crate) struct Sampler {
    /// Keys below this are sampled; `None`: all.
    below: Option<u64>,
    min_per_second: u32,
    /// The reservoir in one atomic, so taking from it never locks: the
    /// second (since `epoch`) it counts in the high half, the traces taken
    /// in that second in the low half.
    reservoir: AtomicU64,
    epoch: Instant,
}

impl Sampler {
    fn new(ratio: f64, min_per_second: u32) -> Sampler {
        let below = if ratio >= 1.0 {
            None
        } else {
            // In [0, 2^64): the float-to-int cast saturates and NaN was refused.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let below = (ratio * 18_446_744_073_709_551_616.0) as u64;
            Some(below)
        };
        Sampler {
            below,
            min_per_second,
            reservoir: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Whether the new trace `id` is recorded.
    pub(crate) fn samples(&self, id: &TraceId) -> bool {
        // The ratio first: what it samples costs no clock read or atomic.
        if self.below.is_none_or(|b| id.sample_key() < b) {
            return true;
        }
        if self.min_per_second == 0 {
            return false;
        }
        self.take_reservoir(self.epoch.elapsed().as_secs())
    }

    /// Take one trace from the reservoir of `second` (since `epoch`), if
    /// any is left.
    fn take_reservoir(&self, second: u64) -> bool {
        // 2^32 seconds is 136 years of uptime; saturating keeps it monotonic.
        let second = u32::try_from(second).unwrap_or(u32::MAX);
        let mut current = self.reservoir.load(Ordering::Relaxed);
        loop {
            let (counted, taken) = split_reservoir(current);
            let next = if second > counted {
                join_reservoir(second, 1)
            } else if taken < self.min_per_second {
                // A thread that read the clock just before another moved the
                // reservoir to the next second counts in that next second.
                join_reservoir(counted, taken + 1)
            } else {
                return false;
            };
            match self.reservoir.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

fn split_reservoir(v: u64) -> (u32, u32) {
    let [a, b, c, d, e, f, g, h] = v.to_be_bytes();
    (
        u32::from_be_bytes([a, b, c, d]),
        u32::from_be_bytes([e, f, g, h]),
    )
}

fn join_reservoir(second: u32, taken: u32) -> u64 {
    u64::from(second) << 32 | u64::from(taken)
}

/// What every span of a tracer shares: the queue and the counts.
///
/// The queue holds spans already encoded: a span is written in the OTLP
/// wire format when it ends, on the thread that ran it, and the export task
/// only frames and sends the bytes. Encoded at export instead, as before, a
/// span's attributes waited in the queue as a dozen scattered allocations,
/// were read back cold by another thread and freed there; the request's
/// thread does the same work with its data still in cache (a sampled
/// request at `--otlp-sample-ratio 1` cost 22.7% more CPU before,
/// BENCHMARKS.md "Spans encoded where they end"), and what a queue can
/// hold is bounded in bytes ([`QUEUE_BYTES`]) as well as spans.
///
/// The queue is behind a mutex, not a channel: a span's end is a lock, an
/// append and an unlock, and the export task is woken only when a batch is
/// full (else its interval picks the spans up), where a channel send woke
/// it for every span (eight to ten times a request, each a task scheduled
/// and a `select!` polled, for nothing to do until the batch fills).
pub(crate) struct Shared {
    queue: Mutex<Queued>,
    /// Woken when the queue holds a full batch.
    batch_full: Notify,
    pub(crate) sampler: Sampler,
    stats: Arc<ExportStats>,
}

/// Ended spans, encoded: `ScopeSpans.spans` fields back to back.
#[derive(Default)]
pub(crate) struct Queued {
    fields: Vec<u8>,
    /// Where each span's field ends in `fields`, in order.
    ends: Vec<usize>,
}

impl Queued {
    fn with_capacity(spans: usize) -> Queued {
        Queued {
            fields: Vec::with_capacity(spans.saturating_mul(256)),
            ends: Vec::with_capacity(spans),
        }
    }

    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn clear(&mut self) {
        self.fields.clear();
        self.ends.clear();
    }
}

impl Shared {
    /// Queue an ended span, never waiting (beyond another span's append,
    /// or the export task's swap of the buffers).
    pub(crate) fn submit(&self, span: &FinishedSpan) {
        // A poisoned lock is used as is: whatever a panic left after the last
        // whole span (a span's bytes without its entry in `ends`) is cut off
        // here before anything is appended.
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let before = queue.ends.last().copied().unwrap_or(0);
        queue.fields.truncate(before);
        let fits = queue.ends.len() < QUEUE_SPANS && {
            proto::encode_span_field(span, &mut queue.fields);
            queue.fields.len() <= QUEUE_BYTES
        };
        if !fits {
            queue.fields.truncate(before);
            drop(queue);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let end = queue.fields.len();
        queue.ends.push(end);
        let full = queue.ends.len() == MAX_BATCH;
        drop(queue);
        if full {
            self.batch_full.notify_one();
        }
    }

    /// Move what is queued into `into` (empty), leaving `into`'s former
    /// allocations as the queue's, so neither side allocates again.
    fn take(&self, into: &mut Queued) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut *queue, into);
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
        let stats = Arc::new(ExportStats::default());
        let sampler = Sampler::new(config.sample_ratio, config.sample_min_per_second);
        let client = Client::new(&config)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queued::with_capacity(MAX_BATCH)),
            batch_full: Notify::new(),
            sampler,
            stats: stats.clone(),
        });
        let exporter = Exporter {
            shared: shared.clone(),
            client,
            resource: resource(&config),
            stats,
            shutdown,
            body: BytesMut::new(),
        };
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
    shared: Arc<Shared>,
    client: Client,
    resource: proto::Resource,
    stats: Arc<ExportStats>,
    shutdown: watch::Receiver<bool>,
    /// The request body, reused: once the previous request's body has been
    /// dropped, the next batch is written into the same allocation.
    body: BytesMut,
}

impl Exporter {
    /// Run until shutdown, then send what is queued once (within the
    /// export timeout) and stop.
    pub async fn run(mut self) {
        let mut batch = Queued::with_capacity(MAX_BATCH);
        let mut tick = tokio::time::interval(BATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned: Option<Instant> = None;
        loop {
            tokio::select! {
                // Cancel safety: a `notified` that loses keeps its permit
                // (tokio passes it on), `tick` and `changed` lose nothing;
                // and the queue itself is read below whichever branch won.
                _ = self.shared.batch_full.notified() => {}
                _ = tick.tick() => {}
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        break;
                    }
                    continue;
                }
            }
            self.shared.take(&mut batch);
            if !batch.is_empty() {
                let deadline = tokio::time::Instant::now() + EXPORT_TIMEOUT;
                self.send_all(&mut batch, &mut warned, deadline).await;
            }
        }
        // What ended before the platform stopped is sent once, not lost; all
        // of it within one export timeout, so a dead collector cannot hold
        // the shutdown for longer than that.
        let deadline = tokio::time::Instant::now() + EXPORT_TIMEOUT;
        self.shared.take(&mut batch);
        self.send_all(&mut batch, &mut warned, deadline).await;
    }

    /// Send `spans` in requests of at most [`MAX_BATCH`], leaving it empty.
    async fn send_all(
        &mut self,
        spans: &mut Queued,
        warned: &mut Option<Instant>,
        deadline: tokio::time::Instant,
    ) {
        let mut start = 0;
        for chunk in spans.ends.chunks(MAX_BATCH) {
            let Some(&end) = chunk.last() else { break };
            let fields = spans.fields.get(start..end).unwrap_or_default();
            self.send(fields, chunk.len(), warned, deadline).await;
            start = end;
        }
        spans.clear();
    }

    /// Send `n` spans, encoded as `fields`, in one request.
    async fn send(
        &mut self,
        fields: &[u8],
        n: usize,
        warned: &mut Option<Instant>,
        deadline: tokio::time::Instant,
    ) {
        let count = u64::try_from(n).unwrap_or(u64::MAX);
        // `reserve` takes the previous body's allocation back when hyper
        // has dropped it (it has: the previous exchange is over).
        self.body.clear();
        self.body.reserve(fields.len() + 256);
        proto::encode_request(&self.resource, fields, &mut self.body);
        let body = self.body.split().freeze();
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

/// An HTTP/1.1 client of the one endpoint, plain or over rustls with the
/// webpki roots.
///
/// It keeps its connection from one batch to the next, as the
/// OpenTelemetry SDKs' exporters do: a busy platform sends a batch every
/// few milliseconds, and a connection each time cost both sides a setup
/// (and, over `https`, a handshake) per batch. A connection that failed,
/// timed out or was closed by the collector is dropped, and the next batch
/// opens a new one.
struct Client {
    endpoint: Uri,
    host: String,
    port: u16,
    /// The `Host` header and the request target, made once.
    authority: String,
    path: String,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    conn: Option<Conn>,
}

/// One open connection: the request side and the task that drives it.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
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
        let authority = endpoint
            .authority()
            .map_or_else(String::new, |a| a.as_str().to_owned());
        let path = endpoint
            .path_and_query()
            .map_or("/v1/traces", |p| p.as_str())
            .to_owned();
        Ok(Client {
            endpoint,
            host,
            port,
            authority,
            path,
            tls,
            conn: None,
        })
    }

    /// Post one body. A batch that fails on a kept connection before the
    /// collector answered (it closed the connection while idle, which
    /// HTTP/1.1 allows at any time, and the close or reset shows only when
    /// the connection is used) is sent once more on a new connection; any
    /// other failure is final. (If the collector had read the batch before
    /// the connection broke, it gets it twice: spans once too often, rather
    /// than a batch lost to every idle timeout.)
    async fn post(&mut self, body: Bytes) -> Result<(), ExportFailure> {
        if let Some(conn) = self.conn.take().filter(|c| !c.sender.is_closed()) {
            match self.exchange(conn, body.clone()).await {
                Err(ExportFailure::Http(_)) => {}
                done => return done,
            }
        }
        let conn = self.connect().await?;
        self.exchange(conn, body).await
    }

    async fn connect(&self) -> Result<Conn, ExportFailure> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(ExportFailure::Connect)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(TokioIo::new(tcp)).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(ExportFailure::Tls)?;
                handshake(TokioIo::new(tls)).await
            }
        }
    }

    /// One request on `conn`, kept for the next batch if the exchange
    /// completed (the answer read whole, within its bound).
    async fn exchange(&mut self, mut conn: Conn, body: Bytes) -> Result<(), ExportFailure> {
        conn.sender.ready().await.map_err(ExportFailure::Http)?;
        let request = Request::post(self.path.as_str())
            .header(http::header::HOST, self.authority.as_str())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(body));
        let Ok(request) = request else {
            return Err(ExportFailure::Status(http::StatusCode::BAD_REQUEST));
        };
        let response = conn
            .sender
            .send_request(request)
            .await
            .map_err(ExportFailure::Http)?;
        let status = response.status();
        // Read (and discard) a bounded answer so the exchange completes.
        let read = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await;
        if read.is_ok() {
            self.conn = Some(conn);
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(ExportFailure::Status(status))
        }
    }
}

async fn handshake<T>(io: TokioIo<T>) -> Result<Conn, ExportFailure>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(ExportFailure::Http)?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn { sender, driver })
}

/// The resource every span is exported with.
fn resource(config: &OtlpConfig) -> proto::Resource {
    let mut attributes = vec![(
        "service.name".to_owned(),
        Value::from(config.service_name.clone()),
    )];
    if !config.service_version.is_empty() {
        attributes.push((
            "service.version".to_owned(),
            Value::from(config.service_version.clone()),
        ));
    }
    proto::Resource { attributes }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::TraceParent;

    #[tokio::test]
    async fn bytes_a_panic_left_after_the_last_whole_span_are_cut_off() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;
        let (_stop, shutdown) = watch::channel(false);
        let (tracer, exporter) = Tracer::start(
            OtlpConfig::new("http://127.0.0.1:9", 1.0).unwrap(),
            shutdown,
        )
        .unwrap();
        let root = tracer.server_span("root", None);
        drop(root.child("first", SpanKind::Internal));
        // What an encoder interrupted by a panic would leave: bytes of a
        // span with no entry in `ends`.
        let shared = exporter.shared.clone();
        shared
            .queue
            .lock()
            .unwrap()
            .fields
            .extend_from_slice(&[0x12, 0xff, 0x01, 0x0a]);
        drop(root.child("second", SpanKind::Internal));
        let mut taken = Queued::default();
        shared.take(&mut taken);
        assert_eq!(taken.ends.len(), 2);
        assert_eq!(taken.ends.last().copied(), Some(taken.fields.len()));
        let mut body = Vec::new();
        proto::encode_request(&exporter.resource, &taken.fields, &mut body);
        let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let names: Vec<&str> = request.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["first", "second"]);
    }

    /// Trace ids whose sample key (the low eight bytes) is `key`.
    fn id_with_key(key: u64) -> TraceId {
        let mut text = String::from("00-0000000000000001");
        text.push_str(&format!("{key:016x}"));
        text.push_str("-0000000000000001-01");
        TraceParent::parse(&text).unwrap().trace_id
    }

    #[test]
    fn the_ratio_samples_its_share_of_trace_ids() {
        for (ratio, expected) in [(0.0, 0), (0.05, 5_000), (0.5, 50_000), (1.0, 100_000)] {
            let sampler = Sampler::new(ratio, 0);
            let sampled = (0..100_000u64)
                .filter(|_| sampler.samples(&TraceId::random()))
                .count();
            // Binomial: within five standard deviations (at most 790 here).
            let spread = 800;
            assert!(
                sampled + spread >= expected && sampled <= expected + spread,
                "ratio {ratio}: {sampled} of 100000 sampled"
            );
        }
        // The decision is the id's, not a coin's: the same id, the same answer.
        let sampler = Sampler::new(0.25, 0);
        assert!(sampler.samples(&id_with_key(0)));
        assert!(sampler.samples(&id_with_key(u64::MAX / 4 - 1)));
        assert!(!sampler.samples(&id_with_key(u64::MAX / 4 + 1)));
        assert!(!sampler.samples(&id_with_key(u64::MAX)));
    }

    #[test]
    fn the_reservoir_gives_each_second_its_minimum() {
        let sampler = Sampler::new(0.0, 3);
        let taken = |second| (0..10).filter(|_| sampler.take_reservoir(second)).count();
        assert_eq!(taken(0), 3, "the first three of second 0");
        assert_eq!(taken(0), 0, "second 0 is spent");
        assert_eq!(taken(1), 3, "a new second refills it");
        // A thread that read the clock late counts in the newer second.
        assert_eq!(taken(0), 0);
        assert_eq!(taken(7), 3, "after a quiet spell");
        // Zero: only the ratio decides.
        let none = Sampler::new(0.0, 0);
        assert!(!(0..100).any(|_| none.samples(&TraceId::random())));
        // Through `samples`: beyond what the ratio picks (none here), one a second.
        let one = Sampler::new(0.0, 1);
        let sampled = (0..100).filter(|_| one.samples(&TraceId::random())).count();
        assert!(
            (1..=2).contains(&sampled),
            "{sampled} sampled: one per second the test runs in"
        );
    }

    #[test]
    fn the_reservoir_is_shared_between_threads_without_overdrawing() {
        let sampler = Arc::new(Sampler::new(0.0, 100));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let sampler = sampler.clone();
                std::thread::spawn(move || (0..1_000).filter(|_| sampler.take_reservoir(5)).count())
            })
            .collect();
        let taken: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(taken, 100);
    }

    #[tokio::test]
    async fn a_callers_sampled_flag_wins_over_ratio_and_reservoir() {
        const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let start = |ratio, min| {
            Tracer::start(
                OtlpConfig::new("http://127.0.0.1:9", ratio)
                    .unwrap()
                    .with_min_per_second(min),
                shutdown.clone(),
            )
            .unwrap()
            .0
        };
        let never = start(0.0, 0);
        assert!(never
            .server_span("r", TraceParent::parse(SAMPLED))
            .is_recording());
        assert!(!never.server_span("r", None).is_recording());
        let always = start(1.0, 5);
        let unsampled = TraceParent::parse(&SAMPLED.replace("-01", "-00"));
        let span = always.server_span("r", unsampled);
        assert!(!span.is_recording(), "the caller did not sample");
        assert!(!span.context().unwrap().sampled);
        assert!(!span.child("c", crate::SpanKind::Internal).is_recording());
        // A reservoir of five: five new traces recorded in this second at most,
        // at ratio 0 (the test runs within two seconds: ten at most).
        let reserved = start(0.0, 5);
        let recorded = (0..50)
            .filter(|_| reserved.server_span("r", None).is_recording())
            .count();
        assert!((5..=10).contains(&recorded), "{recorded} recorded");
    }

    /// `continued`: a trace from a caller, or one a SERVER span carries into another
    /// invocation, is known outside the span that holds it; a new one and its
    /// internal or client children are not.
    #[tokio::test]
    async fn a_trace_is_continued_when_it_came_from_elsewhere() {
        const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let tracer = Tracer::start(
            OtlpConfig::new("http://127.0.0.1:9", 0.0)
                .unwrap()
                .with_min_per_second(0),
            shutdown,
        )
        .unwrap()
        .0;
        let continued = |span: &crate::Span| span.context().unwrap().continued;
        let from_caller = tracer.server_span("r", TraceParent::parse(UNSAMPLED));
        assert!(continued(&from_caller));
        let new = tracer.server_span("r", None);
        assert!(!continued(&new));
        let handle = new.handle().unwrap();
        let internal = handle.child("guest", crate::SpanKind::Internal);
        assert!(!continued(&internal));
        let client = internal
            .handle()
            .unwrap()
            .child("call", crate::SpanKind::Client);
        assert!(!continued(&client));
        let callee = client
            .handle()
            .unwrap()
            .child("invoke", crate::SpanKind::Server);
        assert!(
            continued(&callee),
            "a called function's span carries a passed-on trace"
        );
        assert_eq!(
            callee.context().unwrap().trace_id,
            new.context().unwrap().trace_id
        );
    }
}
