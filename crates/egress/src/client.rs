//! The connection: resolve, check every address, connect to a checked
//! one, speak HTTP/1.1 (over TLS for `https`), bounded in time and size.
//!
//! Order and why (Stripe's Smokescreen does the same): the name is
//! resolved once, here; every answer is range-checked; the socket is
//! opened to one of those very addresses. Nothing resolves the name again
//! (no connector with its own resolver), so a DNS answer that changes
//! between check and connect (rebinding, TTL 0) changes nothing.
//!
//! The request leaves with the checked name as `Host` and as TLS SNI,
//! certificates verified against Mozilla's roots (webpki-roots) plus the
//! platform's extra bundle; hop-by-hop headers and every `x-zerofn-`
//! header are dropped. Redirects are answers like any other: the guest
//! sees the 3xx and decides; its next request is checked from scratch.
//!
//! Limits: connect (resolution included), time to first byte, total
//! time, response size, and concurrent connections per function. An
//! exceeded limit is a [`FlowError`], which the platform hands the guest
//! as a wasi:http error code.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HOST};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::resolve::{ResolveError, Resolver};
use crate::target::{Host, Scheme, Target};
use crate::{forbidden_address, EgressRule};

/// Bounds on one outbound request and on a function's requests together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EgressLimits {
    /// Resolution and TCP (and TLS) connection together.
    pub connect: Duration,
    /// From the request sent to the response head.
    pub first_byte: Duration,
    /// The whole request, resolution to the last body byte.
    pub total: Duration,
    /// Most response body bytes.
    pub response_bytes: usize,
    /// Most outbound connections one function holds at once.
    pub concurrent_per_function: usize,
}

/// A function's own egress limits (`[egress]` in its manifest), each one
/// only ever lower than the platform's: the platform's limits are ceilings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FunctionEgressLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_byte: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<usize>,
}

impl FunctionEgressLimits {
    pub fn is_empty(&self) -> bool {
        *self == FunctionEgressLimits::default()
    }
}

impl EgressLimits {
    /// These limits lowered by a function's own: each the smaller of the two.
    pub fn narrowed(self, function: &FunctionEgressLimits) -> EgressLimits {
        fn min<T: Ord + Copy>(platform: T, function: Option<T>) -> T {
            function.map_or(platform, |f| f.min(platform))
        }
        EgressLimits {
            connect: min(self.connect, function.connect),
            first_byte: min(self.first_byte, function.first_byte),
            total: min(self.total, function.total),
            response_bytes: min(self.response_bytes, function.response_bytes),
            concurrent_per_function: min(self.concurrent_per_function, function.concurrent),
        }
    }
}

impl Default for EgressLimits {
    fn default() -> Self {
        EgressLimits {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(10),
            total: Duration::from_secs(30),
            response_bytes: 8 << 20,
            concurrent_per_function: 16,
        }
    }
}

/// How the platform runs its egress gateway (`zerofn up --egress-*`).
#[derive(Clone, Debug, Default)]
pub struct EgressConfig {
    /// The DNS server to ask; `None` reads `/etc/resolv.conf`.
    pub dns: Option<SocketAddr>,
    /// PEM certificates trusted beside Mozilla's roots.
    pub extra_roots_pem: Option<Vec<u8>>,
    pub limits: EgressLimits,
}

/// Why the platform could not build its egress client.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the egress CA bundle holds no usable PEM certificate: {0}")]
    CaBundle(String),
    #[error("the TLS configuration for egress failed: {0}")]
    Tls(String),
}

/// Why an allowed request produced no response, with the flow log's
/// reason code ([`FlowError::reason`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error(
        "`{ip}` is in the special-purpose range {range} ({name}), which no egress entry allows"
    )]
    ForbiddenRange {
        ip: IpAddr,
        range: String,
        name: &'static str,
    },
    #[error("resolving the host failed: {0}")]
    Dns(ResolveError),
    #[error("resolving the host timed out")]
    DnsTimeout,
    #[error("the connection was refused")]
    ConnectionRefused,
    #[error("connecting timed out")]
    ConnectTimeout,
    #[error("the function already holds its {0} outbound connections")]
    TooManyConnections(usize),
    #[error("the server's certificate was refused: {0}")]
    TlsCertificate(String),
    #[error("the TLS handshake failed: {0}")]
    TlsProtocol(String),
    #[error("no response head in time")]
    FirstByteTimeout,
    #[error("the request took longer than its total time")]
    TotalTimeout,
    #[error("the response body is larger than {0} bytes")]
    ResponseTooLarge(usize),
    #[error("the HTTP exchange failed: {0}")]
    Protocol(String),
}

impl FlowError {
    /// The flow log's reason code (`forbidden_range 169.254.169.254`, ...).
    pub fn reason(&self) -> String {
        match self {
            FlowError::ForbiddenRange { ip, .. } => format!("forbidden_range {ip}"),
            FlowError::Dns(_) => "dns".into(),
            FlowError::DnsTimeout => "dns_timeout".into(),
            FlowError::ConnectionRefused => "connection_refused".into(),
            FlowError::ConnectTimeout => "connect_timeout".into(),
            FlowError::TooManyConnections(_) => "concurrency_limit".into(),
            FlowError::TlsCertificate(_) => "tls_certificate".into(),
            FlowError::TlsProtocol(_) => "tls".into(),
            FlowError::FirstByteTimeout => "first_byte_timeout".into(),
            FlowError::TotalTimeout => "total_timeout".into(),
            FlowError::ResponseTooLarge(_) => "response_too_large".into(),
            FlowError::Protocol(_) => "protocol".into(),
        }
    }
}

/// What happened on the wire, for the flow log; filled in as far as the
/// request got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// Every address the host resolved (or the literal).
    pub resolved: Vec<IpAddr>,
    /// The address connected to.
    pub connected: Option<SocketAddr>,
    pub status: Option<u16>,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub duration: Duration,
}

/// The egress gateway's client, shared by every invocation.
pub struct EgressClient {
    resolver: Resolver,
    tls: tokio_rustls::TlsConnector,
    limits: EgressLimits,
    per_function: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl std::fmt::Debug for EgressClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressClient")
            .field("resolver", &self.resolver)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Headers that belong to one connection (RFC 9110 section 7.6.1) or to
/// the platform, never forwarded either way.
fn is_dropped_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    ) || n.replace('_', "-").starts_with("x-zerofn-")
}

/// A connection task aborted when the request is over.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl EgressClient {
    pub fn new(config: &EgressConfig) -> Result<EgressClient, ConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = &config.extra_roots_pem {
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ConfigError::CaBundle(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| ConfigError::CaBundle(e.to_string()))?;
                added += 1;
            }
            if added == 0 {
                return Err(ConfigError::CaBundle("no CERTIFICATE block".into()));
            }
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(EgressClient {
            resolver: Resolver::new(config.dns, config.limits.connect),
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            limits: config.limits,
            per_function: Mutex::new(HashMap::new()),
        })
    }

    pub fn limits(&self) -> EgressLimits {
        self.limits
    }

    /// One of the function's connection slots. The semaphore has the
    /// platform's size; a function whose own limit is lower is refused once
    /// that many of its connections are open.
    fn slot(&self, function: &str, max: usize) -> Result<OwnedSemaphorePermit, FlowError> {
        let semaphore = {
            let mut map = self
                .per_function
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Forget functions that hold nothing, so the map stays small.
            if map.len() > 4096 {
                let max = self.limits.concurrent_per_function;
                map.retain(|_, s| s.available_permits() < max);
            }
            map.entry(function.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.limits.concurrent_per_function)))
                .clone()
        };
        let permit = semaphore
            .clone()
            .try_acquire_owned()
            .map_err(|_| FlowError::TooManyConnections(max))?;
        let open = self
            .limits
            .concurrent_per_function
            .saturating_sub(semaphore.available_permits());
        if open > max {
            return Err(FlowError::TooManyConnections(max));
        }
        Ok(permit)
    }

    /// Send `request` to `target` for `function` (`tenant/name`), allowed
    /// by `rule` (whose `allow_ranges` exempt special-purpose addresses),
    /// within the platform's limits lowered by the function's own.
    /// `flow` records how far it got, success or not.
    pub async fn send(
        &self,
        function: &str,
        own_limits: &FunctionEgressLimits,
        target: &Target,
        rule: Option<&EgressRule>,
        request: http::Request<Bytes>,
        flow: &mut Flow,
    ) -> Result<http::Response<Bytes>, FlowError> {
        let started = Instant::now();
        let limits = self.limits.narrowed(own_limits);
        let result = tokio::time::timeout(
            limits.total,
            self.exchange(function, &limits, target, rule, request, flow),
        )
        .await
        .unwrap_or(Err(FlowError::TotalTimeout));
        flow.duration = started.elapsed();
        result
    }

    /// A request the platform itself makes on a tenant's say-so (fetching the JWKS of an
    /// issuer registered with `--jwks-url`), not a function's: the same path as a
    /// function's request (resolution by the platform's resolver, every address
    /// range-checked with no range exempt, connection to a checked address, certificates
    /// against the configured roots, no redirect followed), within the platform's limits
    /// lowered by `limits`. `purpose` names its connection slots (`platform:<purpose>`,
    /// which no function name can be).
    pub async fn send_for_platform(
        &self,
        purpose: &str,
        limits: &FunctionEgressLimits,
        target: &Target,
        request: http::Request<Bytes>,
        flow: &mut Flow,
    ) -> Result<http::Response<Bytes>, FlowError> {
        self.send(
            &format!("platform:{purpose}"),
            limits,
            target,
            None,
            request,
            flow,
        )
        .await
    }

    async fn exchange(
        &self,
        function: &str,
        limits: &EgressLimits,
        target: &Target,
        rule: Option<&EgressRule>,
        request: http::Request<Bytes>,
        flow: &mut Flow,
    ) -> Result<http::Response<Bytes>, FlowError> {
        let _slot = self.slot(function, limits.concurrent_per_function)?;
        let connect_deadline = tokio::time::Instant::now() + limits.connect;
        let addresses = match &target.host {
            Host::Ip(ip) => vec![*ip],
            Host::Name(name) => {
                tokio::time::timeout_at(connect_deadline, self.resolver.resolve(name))
                    .await
                    .map_err(|_| FlowError::DnsTimeout)?
                    .map_err(FlowError::Dns)?
            }
        };
        flow.resolved.clone_from(&addresses);
        // Every answer is checked, not only the one connected to: a name
        // that resolves partly into a forbidden range is refused whole.
        if let Some((ip, range)) = forbidden_address(&addresses, rule) {
            return Err(FlowError::ForbiddenRange {
                ip,
                range: range.net.to_string(),
                name: range.name,
            });
        }
        let mut last = FlowError::ConnectTimeout;
        let mut stream = None;
        for ip in &addresses {
            let addr = SocketAddr::new(crate::ranges::canonical(*ip), target.port);
            match tokio::time::timeout_at(connect_deadline, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    flow.connected = Some(addr);
                    stream = Some(s);
                    break;
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = FlowError::ConnectionRefused;
                }
                Ok(Err(e)) => last = FlowError::Protocol(e.kind().to_string()),
                Err(_) => {
                    last = FlowError::ConnectTimeout;
                    break;
                }
            }
        }
        let stream = stream.ok_or(last)?;
        let _ = stream.set_nodelay(true);
        let request = self.outgoing(target, request, flow);
        match target.scheme {
            Scheme::Http => self.http1(stream, request, limits, flow).await,
            Scheme::Https => {
                let name = match &target.host {
                    Host::Name(n) => ServerName::try_from(n.clone())
                        .map_err(|e| FlowError::TlsProtocol(e.to_string()))?,
                    Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
                };
                let tls = tokio::time::timeout_at(connect_deadline, self.tls.connect(name, stream))
                    .await
                    .map_err(|_| FlowError::ConnectTimeout)?
                    .map_err(tls_error)?;
                self.http1(tls, request, limits, flow).await
            }
        }
    }

    /// The request as it leaves: origin-form URI, `Host` the checked
    /// authority, connection and platform headers dropped.
    fn outgoing(
        &self,
        target: &Target,
        request: http::Request<Bytes>,
        flow: &mut Flow,
    ) -> http::Request<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        flow.bytes_out = u64::try_from(body.len()).unwrap_or(u64::MAX);
        let mut out = http::Request::new(Full::new(body));
        *out.method_mut() = parts.method;
        if let Ok(uri) = target.path_and_query.parse() {
            *out.uri_mut() = uri;
        }
        for (name, value) in &parts.headers {
            if !is_dropped_header(name) {
                out.headers_mut().append(name.clone(), value.clone());
            }
        }
        if let Ok(host) = http::HeaderValue::from_str(&target.authority()) {
            out.headers_mut().insert(HOST, host);
        }
        out
    }

    async fn http1<S>(
        &self,
        stream: S,
        request: http::Request<Full<Bytes>>,
        limits: &EgressLimits,
        flow: &mut Flow,
    ) -> Result<http::Response<Bytes>, FlowError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| FlowError::Protocol(e.to_string()))?;
        let _connection = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        let response = tokio::time::timeout(limits.first_byte, sender.send_request(request))
            .await
            .map_err(|_| FlowError::FirstByteTimeout)?
            .map_err(|e| FlowError::Protocol(e.to_string()))?;
        flow.status = Some(response.status().as_u16());
        let (mut parts, body) = response.into_parts();
        let limit = limits.response_bytes;
        let body = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    FlowError::ResponseTooLarge(limit)
                } else {
                    FlowError::Protocol(e.to_string())
                }
            })?
            .to_bytes();
        flow.bytes_in = u64::try_from(body.len()).unwrap_or(u64::MAX);
        let dropped: Vec<HeaderName> = parts
            .headers
            .keys()
            .filter(|n| is_dropped_header(n))
            .cloned()
            .collect();
        for name in dropped {
            parts.headers.remove(name);
        }
        Ok(http::Response::from_parts(parts, body))
    }
}

fn tls_error(e: std::io::Error) -> FlowError {
    let text = e.to_string();
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(c)) => FlowError::TlsCertificate(format!("{c:?}")),
        _ => FlowError::TlsProtocol(text),
    }
}
