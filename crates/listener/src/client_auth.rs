//! Client certificates on the public gateway: requested, never required, and at the
//! handshake only proved to be the client's.
//!
//! [`PossessionVerifier`] asks every client for a certificate (with no CA hints: which CAs a
//! function accepts depends on the function, known only once the request is routed). A
//! client that sends none is anonymous. A client that sends one must sign the handshake
//! with its key: rustls hands the `CertificateVerify` signature to
//! [`verify_tls12_signature`](ClientCertVerifier::verify_tls12_signature) /
//! [`verify_tls13_signature`](ClientCertVerifier::verify_tls13_signature), checked here with
//! the provider's algorithms against the end-entity's public key; a bad signature fails the
//! handshake. The chain is deliberately *not* validated here: it is validated per request,
//! against the roots of the function's own tenant (`zerofn-authn`'s `mtls.rs`), because
//! the tenants' CAs change at runtime and one tenant's CA must never vouch for a caller of
//! another's. A chain that no accepted root verifies then makes the client anonymous, as
//! if it had sent nothing.
//!
//! # Trust
//! Trusts rustls and webpki for the signature check; trusts nothing in the certificate
//! (its contents are never used before the per-request validation). The certificate's
//! size is bounded by rustls' handshake message limits and [`MAX_CHAIN_LEN`] here.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// Most certificates a client chain may have.
pub const MAX_CHAIN_LEN: usize = 8;

/// Requests a client certificate and checks only that the client holds its key.
#[derive(Debug)]
pub struct PossessionVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl PossessionVerifier {
    pub fn new(provider: &rustls::crypto::CryptoProvider) -> Arc<PossessionVerifier> {
        Arc::new(PossessionVerifier {
            algorithms: provider.signature_verification_algorithms,
        })
    }
}

impl ClientCertVerifier for PossessionVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The end-entity is parsed by the signature check that follows (a certificate that
        // does not parse cannot verify one); the chain is validated per request.
        if intermediates.len() >= MAX_CHAIN_LEN {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            ));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::ResolvesClientCert;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use rustls::sign::CertifiedKey;

    /// Presents `cert` and signs the handshake with `key`, which need not be its key.
    #[derive(Debug)]
    struct Presents(Arc<CertifiedKey>);

    impl ResolvesClientCert for Presents {
        fn resolve(
            &self,
            _hints: &[&[u8]],
            _schemes: &[SignatureScheme],
        ) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
        fn has_certs(&self) -> bool {
            true
        }
    }

    fn key_der(key: &rcgen::KeyPair) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
    }

    /// Runs one handshake (TLS 1.3, then 1.2) against the gateway's configuration; the
    /// chain the server saw, or the server's error.
    async fn handshake(
        client: Option<Arc<CertifiedKey>>,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> Result<Option<Vec<CertificateDer<'static>>>, String> {
        let dir = tempfile::tempdir().unwrap();
        let server = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let (c, k) = (dir.path().join("s.crt"), dir.path().join("s.key"));
        std::fs::write(&c, server.cert.pem()).unwrap();
        std::fs::write(&k, server.signing_key.serialize_pem()).unwrap();
        let files = crate::CertificateFiles::load(&c, &k).unwrap();
        let acceptor =
            tokio_rustls::TlsAcceptor::from(Arc::new(crate::server_config(files).unwrap()));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(server.cert.der().clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots);
        let config = match client {
            Some(key) => builder.with_client_cert_resolver(Arc::new(Presents(key))),
            None => builder.with_no_client_auth(),
        };
        let (a, b) = tokio::io::duplex(64 * 1024);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let server = tokio::spawn(async move {
            acceptor
                .accept(b)
                .await
                .map(|tls| {
                    tls.get_ref()
                        .1
                        .peer_certificates()
                        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                })
                .map_err(|e| e.to_string())
        });
        // The client's end stays open until the server is done with the handshake.
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let client = connector.connect(name, a).await;
        let seen = server.await.unwrap();
        drop(client);
        seen
    }

    #[tokio::test]
    async fn a_client_certificate_is_optional_and_must_be_the_clients_own() {
        let holder = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client.test".to_owned()])
            .unwrap()
            .self_signed(&holder)
            .unwrap();
        let thief = rcgen::KeyPair::generate().unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let own = Arc::new(
            CertifiedKey::from_der(vec![cert.der().clone()], key_der(&holder), &provider).unwrap(),
        );
        // Someone else's certificate, signed for with another key: CertifiedKey::new does
        // not check the pair, so the handshake signature is what must catch it.
        let stolen = Arc::new(CertifiedKey::new(
            vec![cert.der().clone()],
            provider
                .key_provider
                .load_private_key(key_der(&thief))
                .unwrap(),
        ));
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            assert_eq!(handshake(None, version).await, Ok(None), "{version:?}");
            assert_eq!(
                handshake(Some(own.clone()), version).await,
                Ok(Some(vec![cert.der().clone()])),
                "{version:?}"
            );
            let refused = handshake(Some(stolen.clone()), version).await;
            assert!(
                refused.as_ref().is_err_and(|e| e.contains("BadSignature")),
                "{version:?}: {refused:?}"
            );
        }
    }
}
