//! TLS for the control API (`zerofn up --control-tls`): the server certificate, issued by
//! the platform's identity CA and renewed at half its lifetime, and the rustls configuration
//! that asks for (optional) client certificates. The accept loop, which hands each request
//! the client certificate its connection presented, is `zerofn-listener`'s.
//!
//! # Trust
//! rustls (TLS 1.3 only, `ring` provider) does the handshake. Client certificates are
//! optional; one that is presented must chain to the platform CA (rustls' WebPKI client
//! verifier), or the handshake fails. That is the first check only: the control API
//! verifies the certificate again on every request (`operators.rs`: SPIFFE ID, revocation,
//! the store's record). Private keys stay in memory: the server key is made in-process
//! and never written.

use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;
use zerofn_identity::{CertificateAuthority, SpiffeId, MAX_SVID_TTL};

use crate::ServerError;

/// Lifetime of the control API's server certificate (renewed at half).
pub(crate) const SERVER_CERT_TTL: Duration = MAX_SVID_TTL;

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
