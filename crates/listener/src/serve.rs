//! The accept loop, plain or TLS, and the HTTP/1.1 and HTTP/2 settings it
//! serves with. Over TLS a connection speaks HTTP/2 when ALPN chose `h2`,
//! HTTP/1.1 otherwise; plain connections speak HTTP/1.1.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use zerofn_audit::{Action, AuditRecord, Outcome, RefusalAggregator};

use crate::limits::ConnectionLimits;

/// The client address of a connection, put in each request's extensions
/// by [`serve`]. Always canonical: an IPv4 client of a dual-stack listener
/// is its IPv4 address, not `::ffff:a.b.c.d`, so every decision and record
/// sees one spelling of it.
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

/// The end-entity certificate (DER) a TLS client presented, put in each
/// request's extensions by [`serve`]. The handshake checked it against the
/// listener's client roots; the handler must verify it again for what it
/// authorises.
#[derive(Clone, Debug)]
pub struct PeerCertificate(pub Arc<rustls::pki_types::CertificateDer<'static>>);

/// The whole chain (end-entity first, then the intermediates, as sent) a TLS client
/// presented, put in each request's extensions by [`serve`] beside [`PeerCertificate`].
/// The gateway's handshake checked only that the client holds the end-entity's key
/// (`client_auth.rs`); which roots the chain must reach is the handler's to decide.
#[derive(Clone, Debug)]
pub struct PeerCertificateChain(pub Arc<[rustls::pki_types::CertificateDer<'static>]>);

/// How many requests in a row on one connection were refused for a limit,
/// put in each request's extensions by [`serve`] (one counter per
/// connection, shared by its requests). The gateway answers a connection
/// that keeps sending over-limit requests after a pause, so one client
/// ignoring `Retry-After` cannot keep the platform busy refusing it.
#[derive(Clone, Debug, Default)]
pub struct RefusalStreak(Arc<std::sync::atomic::AtomicU32>);

impl RefusalStreak {
    /// One more refusal on the connection; the streak's length with it.
    pub fn refused(&self) -> u32 {
        self.0
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .saturating_add(1)
    }

    /// A request on the connection was admitted: the streak ends.
    pub fn admitted(&self) {
        self.0.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The limits of a listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Bytes of request line plus headers (hyper's read buffer).
    pub max_header_bytes: usize,
    /// Time to receive the complete request head (and, over TLS, to
    /// complete the handshake).
    pub header_read_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Open connections per listener.
    pub max_connections: usize,
    /// Open connections per client address, per listener.
    pub max_connections_per_ip: usize,
}

/// A listener's TLS: the rustls server configuration (certificates,
/// client verifier, protocol versions) it hands every handshake.
#[derive(Clone)]
pub struct Tls(pub Arc<rustls::ServerConfig>);

/// Accept connections on `listener` and serve HTTP/1.1 with `handler`
/// until `shutdown` becomes true; then stop accepting and wait (up to the
/// grace period) for in-flight requests to finish. With `tls`, each
/// connection completes a TLS handshake first (within the head timeout).
/// Connections beyond the caps (in total, per client address) are closed
/// at once. Refused connections, requests hyper refused itself (malformed
/// or oversized heads, heads too slow) and client certificates the
/// handshake refused are recorded in `refusals`, as refusals of the
/// unauthenticated peer.
pub async fn serve<H, F>(
    listener: TcpListener,
    tls: Option<Tls>,
    config: &ListenerConfig,
    mut shutdown: watch::Receiver<bool>,
    handler: H,
    refusals: Option<RefusalAggregator>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let limits = ConnectionLimits::new(config.max_connections, config.max_connections_per_ip);
    let acceptor = tls.map(|Tls(config)| tokio_rustls::TlsAcceptor::from(config));
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
                        // Over the caps: closed before a byte is read.
                        drop(stream);
                        let record = AuditRecord::new("anonymous", Action::Connection, Outcome::Deny)
                            .reason(refusal.reason());
                        record_refusal(refusals.as_ref(), peer.ip(), record);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let builder = http1_builder(config);
                let watcher = graceful.watcher();
                let refusals = refusals.clone();
                match acceptor.clone() {
                    None => {
                        let conn = Connection { peer, certificate: None, chain: None, builder, refusals };
                        tokio::spawn(async move {
                            let _permit = permit;
                            conn.serve(stream, handler, watcher).await;
                        });
                    }
                    Some(acceptor) => {
                        let handshake_timeout = config.header_read_timeout;
                        let h2_config = config.clone();
                        tokio::spawn(async move {
                            let _permit = permit;
                            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => tls,
                                Ok(Err(error)) => {
                                    let cert_refused = error
                                        .get_ref()
                                        .and_then(|e| e.downcast_ref::<rustls::Error>())
                                        .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)));
                                    if cert_refused {
                                        let record = AuditRecord::new("anonymous", Action::ApiAuthenticate, Outcome::Deny)
                                            .reason(format!("TLS handshake refused the client certificate: {error}"));
                                        record_refusal(refusals.as_ref(), peer.ip(), record);
                                    } else {
                                        tracing::debug!(%error, "TLS handshake failed");
                                    }
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!("TLS handshake timed out");
                                    return;
                                }
                            };
                            let h2 = tls.get_ref().1.alpn_protocol() == Some(crate::tls_reload::ALPN_H2);
                            let presented = tls.get_ref().1.peer_certificates();
                            let certificate = presented
                                .and_then(|chain| chain.first())
                                .map(|c| PeerCertificate(Arc::new(c.clone().into_owned())));
                            let chain = presented.filter(|c| !c.is_empty()).map(|c| {
                                PeerCertificateChain(c.iter().map(|c| c.clone().into_owned()).collect())
                            });
                            let conn = Connection { peer, certificate, chain, builder, refusals };
                            if h2 {
                                conn.serve_h2(tls, handler, watcher, &h2_config).await;
                            } else {
                                conn.serve(tls, handler, watcher).await;
                            }
                        });
                    }
                }
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

/// One accepted connection (after its handshake, over TLS).
struct Connection {
    peer: PeerAddr,
    certificate: Option<PeerCertificate>,
    chain: Option<PeerCertificateChain>,
    builder: http1::Builder,
    refusals: Option<RefusalAggregator>,
}

impl Connection {
    /// Serve HTTP/1.1 on `io` until the connection ends, recording a
    /// request hyper refused.
    async fn serve<I, H, F>(self, io: I, handler: H, watcher: hyper_util::server::graceful::Watcher)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let Connection {
            peer,
            certificate,
            chain,
            builder,
            refusals,
        } = self;
        let streak = RefusalStreak::default();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let handler = handler.clone();
            req.extensions_mut().insert(peer);
            req.extensions_mut().insert(streak.clone());
            if let Some(certificate) = &certificate {
                req.extensions_mut().insert(certificate.clone());
            }
            if let Some(chain) = &chain {
                req.extensions_mut().insert(chain.clone());
            }
            async move { Ok::<_, Infallible>(handler(req).await) }
        });
        let (io, head) = crate::head_timeout::HeadWatch::new(io);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        if let Err(error) = watcher.watch(conn).await {
            tracing::debug!(%error, "connection ended with an error");
            if error.is_timeout() {
                // hyper closes a connection whose head is late without a
                // word; a client that sent part of a request (or nothing
                // at all on a new connection) is told 408. An idle
                // keep-alive connection is closed quietly, as it always
                // may be (RFC 9112 §9.6), and is no refusal.
                if !head.answer_timeout().await {
                    return;
                }
            }
            if let Some((status, reason)) = hyper_refusal(&error) {
                let record = AuditRecord::new("anonymous", Action::Connection, Outcome::Deny)
                    .status(status)
                    .reason(reason);
                record_refusal(refusals.as_ref(), peer.ip(), record);
            }
        }
    }

    /// Serve HTTP/2 on `io` (ALPN chose `h2`) until the connection ends.
    async fn serve_h2<I, H, F>(
        self,
        io: I,
        handler: H,
        watcher: hyper_util::server::graceful::Watcher,
        config: &ListenerConfig,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let Connection {
            peer,
            certificate,
            chain,
            ..
        } = self;
        let streak = RefusalStreak::default();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let handler = handler.clone();
            req.extensions_mut().insert(peer);
            req.extensions_mut().insert(streak.clone());
            if let Some(certificate) = &certificate {
                req.extensions_mut().insert(certificate.clone());
            }
            if let Some(chain) = &chain {
                req.extensions_mut().insert(chain.clone());
            }
            async move { Ok::<_, Infallible>(handler(req).await) }
        });
        let conn = http2_builder(config).serve_connection(TokioIo::new(io), service);
        if let Err(error) = watcher.watch(conn).await {
            tracing::debug!(%error, "HTTP/2 connection ended with an error");
        }
    }
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
pub fn http1_builder(config: &ListenerConfig) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes.max(8192))
        // hyper's default, made explicit: a head of more fields is a 431.
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    builder
}

/// Most header fields in a request head; more is a 431.
pub const MAX_HEADERS: usize = 100;

/// Most streams one HTTP/2 client may have open at once (RFC 9113 §5.1.2).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// The HTTP/2 settings of a TLS listener: the same bound on a header list
/// as on an HTTP/1.1 head (a larger one is a 431), a bounded number of
/// concurrent streams, and hyper's defences against stream resets (a
/// client that opens and resets streams faster than they are served,
/// CVE-2023-44487 "rapid reset", is sent GOAWAY) and dead peers (pings).
pub fn http2_builder(config: &ListenerConfig) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    let header_list = u32::try_from(config.max_header_bytes.max(8192)).unwrap_or(u32::MAX);
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(header_list)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(1024)
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(config.header_read_timeout);
    builder
}

/// After the listener is closed: wait up to the grace period for the
/// in-flight connections to finish.
pub async fn drain(
    graceful: hyper_util::server::graceful::GracefulShutdown,
    config: &ListenerConfig,
) {
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the shutdown grace period");
    }
}
