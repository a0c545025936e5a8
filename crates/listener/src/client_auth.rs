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
