//! X.509-SVIDs (<https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md>):
//! issuing leaf certificates and verifying them against the trust domain's CA.

use std::fmt;
use std::time::Duration;

use p256::ecdsa::VerifyingKey;
use rcgen::{
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256;
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Version;
use zeroize::Zeroizing;

use crate::error::{excerpt, IdentityError};
use crate::revocation::RevocationList;
use crate::serial::SerialNumber;
use crate::spiffe_id::{SpiffeId, TrustDomain};

/// How far notBefore is set before the moment of issue, so that a peer whose clock is a
/// little behind does not refuse a certificate it is handed at once.
pub(crate) const BACKDATE: Duration = Duration::from_secs(30);
/// Largest certificate PEM input accepted for verification.
const MAX_CERT_PEM_BYTES: usize = 16 * 1024;

/// An X.509-SVID: a leaf certificate for one SPIFFE ID and its fresh private key.
///
/// The key is held in zeroizing buffers and `Debug` prints neither key nor certificate. It
/// is never logged or serialized by this crate; [`key_pem`](Self::key_pem) hands it to the
/// TLS stack or the workload, and nothing else.
pub struct X509Svid {
    /// The certificate, which holds no secret.
    certificate: IssuedCertificate,
    key_pem: Zeroizing<String>,
    key_der: Zeroizing<Vec<u8>>,
}

impl X509Svid {
    /// The SPIFFE ID in its URI SAN.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.certificate.spiffe_id
    }

    /// Its serial number, the id to revoke it by.
    pub fn serial(&self) -> &SerialNumber {
        &self.certificate.serial
    }

    /// Its serial number as lowercase hex.
    pub fn serial_hex(&self) -> &str {
        self.certificate.serial.as_str()
    }

    /// When it was issued (its notBefore is 30 s earlier, for clock skew).
    pub fn issued_at(&self) -> OffsetDateTime {
        self.certificate.issued_at
    }

    /// Its notAfter: the last second it is valid.
    pub fn not_after(&self) -> OffsetDateTime {
        self.certificate.not_after
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.certificate.cert_pem
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.certificate.cert_der
    }

    /// The private key, PKCS#8 PEM. Secret: hand it to the TLS stack, never to a log.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The private key, PKCS#8 DER. Secret, like [`key_pem`](Self::key_pem).
    pub fn key_pkcs8_der(&self) -> &[u8] {
        &self.key_der
    }

    /// Time left until notAfter by the system clock; zero once expired.
    pub fn expires_in(&self) -> Duration {
        remaining(self.certificate.not_after, OffsetDateTime::now_utc())
    }

    /// The moment past which [`should_rotate`](Self::should_rotate) says yes: half-way
    /// between issue and notAfter.
    pub fn rotate_at(&self) -> OffsetDateTime {
        self.certificate.issued_at + (self.certificate.not_after - self.certificate.issued_at) / 2
    }

    /// Whether it is time to replace this SVID: `now` is past half of its lifetime.
    ///
    /// Renewing early leaves the other half of the lifetime to retry in when issuance
    /// fails, and means a peer never holds a certificate about to expire. linkerd's
    /// `certify.rs` refreshes at 70% of the lifetime; zerofn renews at 50%, as the
    /// platform's design asks ("rotated at about half its lifetime"), which with
    /// minutes-long SVIDs still issues a certificate only every few minutes per function.
    pub fn should_rotate(&self, now: OffsetDateTime) -> bool {
        now >= self.rotate_at()
    }
}

impl fmt::Debug for X509Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Svid")
            .field("spiffe_id", &self.certificate.spiffe_id)
            .field("serial", &self.certificate.serial)
            .field("not_after", &self.certificate.not_after)
            .field("key", &"(redacted)")
            .finish()
    }
}

/// `not_after - now` as a std duration, zero if `now` is past it.
pub(crate) fn remaining(not_after: OffsetDateTime, now: OffsetDateTime) -> Duration {
    Duration::try_from(not_after - now).unwrap_or(Duration::ZERO)
}

/// `now` truncated to whole seconds, the resolution of X.509 and JWT times.
pub(crate) fn whole_seconds(now: OffsetDateTime) -> OffsetDateTime {
    now - time::Duration::nanoseconds(i64::from(now.nanosecond()))
}

/// Issue a leaf for `id` valid from `now - BACKDATE` to `now + ttl` (`now` in whole
/// seconds), with a fresh key. The caller checked `id` and `ttl`.
pub(crate) fn issue(
    issuer: &Issuer<'static, KeyPair>,
    id: &SpiffeId,
    ttl: Duration,
    now: OffsetDateTime,
) -> Result<X509Svid, IdentityError> {
    issue_with_names(issuer, id, &[], ttl, now)
}

/// Like [`issue`], with DNS names and IP addresses added to the subjectAltName beside the
/// SPIFFE ID, for a TLS server that clients reach by host name or address.
pub(crate) fn issue_with_names(
    issuer: &Issuer<'static, KeyPair>,
    id: &SpiffeId,
    names: &[SanType],
    ttl: Duration,
    now: OffsetDateTime,
) -> Result<X509Svid, IdentityError> {
    // A fresh key per SVID, so revoking or expiring one never leaves its key in use.
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(signing)?;
    let issued = issue_for(issuer, id, names, &key, ttl, now)?;
    Ok(X509Svid {
        certificate: issued,
        key_pem: Zeroizing::new(key.serialize_pem()),
        key_der: Zeroizing::new(key.serialize_der()),
    })
}

fn signing(e: rcgen::Error) -> IdentityError {
    IdentityError::CertificateSigning {
        reason: e.to_string(),
    }
}

/// Issue a leaf for `id` over `public_key`, whose private key this process never sees.
pub(crate) fn issue_for(
    issuer: &Issuer<'static, KeyPair>,
    id: &SpiffeId,
    names: &[SanType],
    public_key: &impl rcgen::PublicKeyData,
    ttl: Duration,
    now: OffsetDateTime,
) -> Result<IssuedCertificate, IdentityError> {
    let (serial, serial_bytes) = SerialNumber::random();
    let issued_at = whole_seconds(now);
    let not_after = issued_at + ttl;

    let mut params = rcgen::CertificateParams::default();
    params.not_before = issued_at - BACKDATE;
    params.not_after = not_after;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial_bytes));
    params.distinguished_name = leaf_subject();
    // X509-SVID §2: exactly one URI SAN, the SPIFFE ID (DNS and IP SANs may stand beside it).
    let mut sans = vec![SanType::URI(id.as_str().try_into().map_err(signing)?)];
    sans.extend(names.iter().cloned());
    params.subject_alt_names = sans;
    // §4.1: cA=false, written explicitly; §4.3: digitalSignature only (rcgen marks keyUsage
    // critical); §4.4: serverAuth and clientAuth.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;

    let cert = params.signed_by(public_key, issuer).map_err(signing)?;
    Ok(IssuedCertificate {
        spiffe_id: id.clone(),
        serial,
        issued_at,
        not_after,
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
    })
}

/// A certificate issued for a public key the caller holds the private key of (an
/// operator's client certificate). Public: it holds no secret.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    spiffe_id: SpiffeId,
    serial: SerialNumber,
    issued_at: OffsetDateTime,
    not_after: OffsetDateTime,
    cert_pem: String,
    cert_der: Vec<u8>,
}

impl IssuedCertificate {
    /// The SPIFFE ID in its URI SAN.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// Its serial number, the id to revoke it by.
    pub fn serial(&self) -> &SerialNumber {
        &self.serial
    }

    /// When it was issued (its notBefore is 30 s earlier, for clock skew).
    pub fn issued_at(&self) -> OffsetDateTime {
        self.issued_at
    }

    /// Its notAfter.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }
}

/// The subject of every leaf. The identity is in the URI SAN; a fixed, non-empty subject
/// keeps tools that dislike empty subjects content.
pub(crate) fn leaf_subject() -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "zerofn");
    name
}

/// What verification needs to know about the CA.
pub(crate) struct CaAnchor<'a> {
    pub(crate) trust_domain: &'a TrustDomain,
    pub(crate) subject_raw: &'a [u8],
    pub(crate) verifying_key: &'a VerifyingKey,
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
    pub(crate) revocations: &'a RevocationList,
}

/// Verify that `cert_pem` is one X.509-SVID leaf issued by `ca`, valid at `now`, and not
/// revoked; return its SPIFFE ID. Follows X509-SVID §5 for a chain of length one (the
/// CA issues leaves directly; it has pathLenConstraint 0).
pub(crate) fn verify(
    ca: &CaAnchor<'_>,
    cert_pem: &str,
    now: OffsetDateTime,
) -> Result<SpiffeId, IdentityError> {
    let der = single_certificate_der(cert_pem)?;
    verify_der(ca, &der, now).map(|(id, _)| id)
}

/// [`verify`] for a certificate already in DER (as a TLS stack hands it over); returns
/// its serial number too.
pub(crate) fn verify_der(
    ca: &CaAnchor<'_>,
    der: &[u8],
    now: OffsetDateTime,
) -> Result<(SpiffeId, SerialNumber), IdentityError> {
    if der.len() > MAX_CERT_PEM_BYTES {
        return Err(CertificateDecodeError::TooLarge(der.len()).into());
    }
    let cert = parse_certificate(der)?;
    let serial = SerialNumber::from_be_bytes(cert.raw_serial());
    let untrusted = |reason| IdentityError::CertificateUntrusted {
        serial: serial.clone(),
        reason,
    };

    // Chain: issued by this CA, signed with its key, with the one algorithm it uses.
    if cert.issuer().as_raw() != ca.subject_raw {
        return Err(untrusted("its issuer name is not this CA's subject"));
    }
    if cert.signature_algorithm.algorithm != OID_SIG_ECDSA_WITH_SHA256
        || cert.tbs_certificate.signature.algorithm != OID_SIG_ECDSA_WITH_SHA256
    {
        return Err(untrusted(
            "its signature algorithm is not ecdsa-with-SHA256",
        ));
    }
    if !signature_verifies(&cert, ca.verifying_key) {
        return Err(untrusted(
            "its signature does not verify with this CA's key",
        ));
    }

    // Validity of the leaf and of the CA (RFC 5280 §6.1.3 (a)(2)); both ends inclusive.
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    if now < not_before || now > not_after {
        return Err(IdentityError::CertificateNotValidNow {
            serial,
            now,
            not_before,
            not_after,
        });
    }
    if now < ca.not_before || now > ca.not_after {
        return Err(untrusted("this CA's certificate is not valid at this time"));
    }

    let id = leaf_spiffe_id(&cert, &serial)?;
    if !id.is_member_of(ca.trust_domain) {
        return Err(IdentityError::ForeignTrustDomain {
            id,
            trust_domain: ca.trust_domain.clone(),
        });
    }
    if !id.is_workload() {
        return Err(IdentityError::NotAWorkloadId { id });
    }
    if ca.revocations.is_revoked(&serial) {
        return Err(IdentityError::SvidRevoked { serial, id });
    }
    Ok((id, serial))
}

/// The leaf checks of X509-SVID §4 and §5.2, then the SPIFFE ID of its one URI SAN.
fn leaf_spiffe_id(
    cert: &X509Certificate<'_>,
    serial: &SerialNumber,
) -> Result<SpiffeId, IdentityError> {
    let not_leaf = |reason: String| IdentityError::CertificateNotLeafSvid {
        serial: serial.clone(),
        reason,
    };
    if cert.version() != X509Version::V3 {
        return Err(not_leaf("it is not an X.509 v3 certificate".to_owned()));
    }
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::ParseError { .. } => {
                return Err(not_leaf(format!(
                    "its extension `{}` is malformed",
                    ext.oid
                )))
            }
            ParsedExtension::UnsupportedExtension { .. } if ext.critical => {
                // RFC 5280 §6.1.3: an unrecognised critical extension fails validation.
                return Err(not_leaf(format!(
                    "it has an unsupported critical extension `{}`",
                    ext.oid
                )));
            }
            _ => {}
        }
    }
    let duplicated = |_| not_leaf("it repeats an extension".to_owned());

    // §4.1 and §5.2: basicConstraints cA=false.
    match cert.basic_constraints().map_err(duplicated)? {
        None => return Err(not_leaf("it has no basicConstraints extension".to_owned())),
        Some(bc) if bc.value.ca => {
            return Err(not_leaf(
                "it is a CA certificate (basicConstraints cA=true)".to_owned(),
            ))
        }
        Some(_) => {}
    }
    // §4.3 and §5.2: keyUsage present, critical, digitalSignature, no keyCertSign/cRLSign.
    let key_usage = cert
        .key_usage()
        .map_err(duplicated)?
        .ok_or_else(|| not_leaf("it has no keyUsage extension".to_owned()))?;
    if !key_usage.critical {
        return Err(not_leaf(
            "its keyUsage extension is not critical".to_owned(),
        ));
    }
    if !key_usage.value.digital_signature() {
        return Err(not_leaf("its keyUsage lacks digitalSignature".to_owned()));
    }
    if key_usage.value.key_cert_sign() || key_usage.value.crl_sign() {
        return Err(not_leaf(
            "its keyUsage sets keyCertSign or cRLSign".to_owned(),
        ));
    }
    // §4.4: when extendedKeyUsage is present, serverAuth and clientAuth are both set.
    if let Some(eku) = cert.extended_key_usage().map_err(duplicated)? {
        if !(eku.value.server_auth && eku.value.client_auth) {
            return Err(not_leaf(
                "its extendedKeyUsage lacks serverAuth or clientAuth".to_owned(),
            ));
        }
    }
    // §2 and §5.2: exactly one URI SAN.
    let san = cert
        .subject_alternative_name()
        .map_err(duplicated)?
        .ok_or_else(|| not_leaf("it has no subjectAltName extension".to_owned()))?;
    let mut uris = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    let (Some(uri), None) = (uris.next(), uris.next()) else {
        let count = san
            .value
            .general_names
            .iter()
            .filter(|name| matches!(name, GeneralName::URI(_)))
            .count();
        return Err(not_leaf(format!(
            "it has {count} URI SANs; an X509-SVID has exactly one"
        )));
    };
    SpiffeId::parse(uri).map_err(|e| {
        not_leaf(format!(
            "its URI SAN `{}` is not a SPIFFE ID ({e})",
            excerpt(uri)
        ))
    })
}

/// Why certificate input is not exactly one DER X.509 certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CertificateDecodeError {
    /// The input is larger than any certificate this CA issues.
    #[error("input is {0} bytes, more than the {max} allowed", max = MAX_CERT_PEM_BYTES)]
    TooLarge(usize),
    /// There is no PEM block.
    #[error("no PEM block found")]
    NoPemBlock,
    /// The PEM block does not decode.
    #[error("PEM block is invalid ({0})")]
    PemInvalid(String),
    /// There is more than one PEM block.
    #[error("more than one PEM block found")]
    SeveralPemBlocks,
    /// The PEM block is not a `CERTIFICATE` (its label, escaped).
    #[error("PEM block is `{0}`, not `CERTIFICATE`")]
    NotACertificateBlock(String),
    /// Bytes follow the DER certificate.
    #[error("trailing bytes after the certificate")]
    TrailingBytes,
    /// The DER is not a certificate.
    #[error("not a DER X.509 certificate ({0})")]
    NotDer(String),
}

impl From<CertificateDecodeError> for IdentityError {
    fn from(e: CertificateDecodeError) -> Self {
        IdentityError::CertificateMalformed {
            reason: e.to_string(),
        }
    }
}

/// The DER of the one `CERTIFICATE` PEM block in `pem_text`.
pub(crate) fn single_certificate_der(pem_text: &str) -> Result<Vec<u8>, CertificateDecodeError> {
    if pem_text.len() > MAX_CERT_PEM_BYTES {
        return Err(CertificateDecodeError::TooLarge(pem_text.len()));
    }
    let mut blocks = Pem::iter_from_buffer(pem_text.as_bytes());
    let first = match blocks.next() {
        None => return Err(CertificateDecodeError::NoPemBlock),
        Some(Err(e)) => return Err(CertificateDecodeError::PemInvalid(e.to_string())),
        Some(Ok(pem)) => pem,
    };
    if blocks.next().is_some() {
        return Err(CertificateDecodeError::SeveralPemBlocks);
    }
    if first.label != "CERTIFICATE" {
        return Err(CertificateDecodeError::NotACertificateBlock(excerpt(
            &first.label,
        )));
    }
    Ok(first.contents)
}

/// Parse DER that must be exactly one certificate.
pub(crate) fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, CertificateDecodeError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(CertificateDecodeError::TrailingBytes),
        Err(e) => Err(CertificateDecodeError::NotDer(e.to_string())),
    }
}

/// Whether `cert`'s signature is a valid ECDSA P-256/SHA-256 signature by `key` over its
/// TBSCertificate. The caller checked the algorithm identifiers. `ring` does the check
/// (about four times faster than `p256` here, and verification is on the request path); it
/// refuses signatures that are not strict DER or have r or s outside [1, n-1].
pub(crate) fn signature_verifies(cert: &X509Certificate<'_>, key: &VerifyingKey) -> bool {
    let point = key.to_encoded_point(false);
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_ASN1,
        point.as_bytes(),
    )
    .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
    .is_ok()
}
