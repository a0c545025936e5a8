//! TLS for the control API (`zerofn up --control-tls`): the server certificate, issued by
//! the platform's identity CA and renewed at half its lifetime, and the accept loop that
//! hands each request the client certificate its connection presented, if any.
//!
//! # Trust
//! rustls (TLS 1.3 only, `ring` provider) does the handshake. Client certificates are
//! optional; one that is presented must chain to the platform CA (rustls' WebPKI client
//! verifier), or the handshake fails. That is the first check only: the control API
//! verifies the certificate again on every request (`operators.rs`: SPIFFE ID, revocation,
//! the store's record). Private keys stay in memory: the server key is made in-process
//! and never written.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::watch;
use zerofn_gateway::GatewayConfig;
use zerofn_identity::{CertificateAuthority, SpiffeId, MAX_SVID_TTL};

use crate::ServerError;

/// Lifetime of the control API's server certificate (renewed at half).
pub(crate) const SERVER_CERT_TTL: Duration = MAX_SVID_TTL;

/// The end-entity certificate a client presented, DER.
#[derive(Clone, Debug)]
pub(crate) struct PeerCertificate(pub(crate) Arc<CertificateDer<'static>>);

/// Hands rustls the current server certificate, issuing a new one once the current one is
/// past half of its lifetime (signing takes well under a millisecond).
struct ServerCertificate {
    ca: Arc<CertificateAuthority>,
    id: SpiffeId,
    dns_names: Vec<String>,
    ips: Vec<IpAddr>,
    current: RwLock<(Arc<CertifiedKey>, OffsetDateTime)>,
}

impl std::fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("id", &self.id)
            .field("dns_names", &self.dns_names)
            .field("ips", &self.ips)
            .finish_non_exhaustive()
    }
}

impl ServerCertificate {
    fn issue(&self) -> Result<(Arc<CertifiedKey>, OffsetDateTime), ServerError> {
        issue_server_certificate(&self.ca, &self.id, &self.dns_names, &self.ips)
    }
}

fn issue_server_certificate(
    ca: &CertificateAuthority,
    id: &SpiffeId,
    dns_names: &[String],
    ips: &[IpAddr],
) -> Result<(Arc<CertifiedKey>, OffsetDateTime), ServerError> {
    let dns: Vec<&str> = dns_names.iter().map(String::as_str).collect();
    let svid = ca.issue_tls_server_certificate(id, &dns, ips, SERVER_CERT_TTL)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(svid.key_pkcs8_der().to_vec()));
    let signing = rustls::crypto::ring::sign::any_ecdsa_type(&key).map_err(tls_error)?;
    let certified = CertifiedKey::new(
        vec![CertificateDer::from(svid.cert_der().to_vec())],
        signing,
    );
    Ok((Arc::new(certified), svid.rotate_at()))
}

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let (key, rotate_at) = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if OffsetDateTime::now_utc() < rotate_at {
            return Some(key);
        }
        match self.issue() {
            Ok(fresh) => {
                let key = fresh.0.clone();
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
                Some(key)
            }
            Err(error) => {
                // The old certificate still has half its life: keep serving it.
                tracing::warn!(%error, "renewing the control API certificate failed");
                Some(key)
            }
        }
    }
}

fn tls_error(e: rustls::Error) -> ServerError {
    ServerError::Tls(e.to_string())
}

/// The rustls configuration of the control API listening on `addr`: a server certificate
/// for `localhost`, `127.0.0.1`, `::1` and `addr`'s own IP (when it is not a wildcard), and
/// optional client certificates chaining to the platform CA.
pub(crate) fn server_config(
    ca: Arc<CertificateAuthority>,
    addr: IpAddr,
) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca_der = CertificateDer::from_pem_slice(ca.trust_bundle_pem().as_bytes())
        .map_err(|e| ServerError::Tls(format!("the CA certificate is not PEM: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der).map_err(tls_error)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let mut ips: Vec<IpAddr> = vec![
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ];
    if !addr.is_unspecified() && !ips.contains(&addr) {
        ips.push(addr);
    }
    let id = SpiffeId::parse(&format!(
        "spiffe://{}/platform/control-api",
        ca.trust_domain()
    ))?;
    let dns_names = vec!["localhost".to_owned()];
    let first = issue_server_certificate(&ca, &id, &dns_names, &ips)?;
    let resolver = ServerCertificate {
        ca,
        id,
        dns_names,
        ips,
        current: RwLock::new(first),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accept TLS connections on `listener` and serve HTTP/1.1 with `handler`, which gets the
/// client certificate of the connection, until `shutdown` becomes true; then stop accepting
/// and wait (up to the grace period) for in-flight requests. A handshake refused because
/// of the client's certificate is reported to `refused` (for the audit log).
pub(crate) async fn serve_tls<H, F, R, RF>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    config: &GatewayConfig,
    mut shutdown: watch::Receiver<bool>,
    handler: H,
    refused: R,
) where
    H: Fn(Request<Incoming>, Option<PeerCertificate>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    R: Fn(String) -> RF + Clone + Send + Sync + 'static,
    RF: Future<Output = ()> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let handshake_timeout = config.header_read_timeout;
    let limits = zerofn_gateway::ConnectionLimits::new(
        config.max_connections,
        config.max_connections_per_ip,
    );
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer_addr) = match accepted {
                    Ok(conn) => conn,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Over the connection caps: closed before the handshake.
                let Ok(permit) = limits.try_acquire(peer_addr.ip()) else {
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let handler = handler.clone();
                let refused = refused.clone();
                let builder = zerofn_gateway::http1_builder(config);
                let watcher = graceful.watcher();
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
                                refused(format!("TLS handshake refused the client certificate: {error}")).await;
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
                    let peer = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|c| PeerCertificate(Arc::new(c.clone().into_owned())));
                    let peer_addr = zerofn_gateway::PeerAddr::new(peer_addr);
                    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                        let handler = handler.clone();
                        let peer = peer.clone();
                        req.extensions_mut().insert(peer_addr);
                        async move { Ok::<_, Infallible>(handler(req, peer).await) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(tls), service);
                    if let Err(error) = watcher.watch(conn).await {
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
    zerofn_gateway::drain(graceful, config).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerofn_identity::TrustDomain;

    #[test]
    fn the_server_certificate_is_for_the_loopback_names_and_the_listen_address() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(
            CertificateAuthority::load_or_create(&dir.path().join("ca"), &TrustDomain::default())
                .unwrap(),
        );
        let id = SpiffeId::parse("spiffe://zerofn.local/platform/control-api").unwrap();
        let ips = vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([10, 1, 2, 3])];
        let (key, rotate_at) =
            issue_server_certificate(&ca, &id, &["localhost".to_owned()], &ips).unwrap();
        assert!(rotate_at > OffsetDateTime::now_utc());
        let leaf = key.end_entity_cert().unwrap();
        let (verified, _) = ca
            .verify_x509_svid_der(leaf.as_ref(), OffsetDateTime::now_utc())
            .unwrap();
        assert_eq!(verified, id);
        let config = server_config(ca, IpAddr::from([0, 0, 0, 0])).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
