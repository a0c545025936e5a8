//! X.509 certificates for keyless verification: parsing ([`Certificate::from_der`]), path
//! validation against a trusted chain ([`Certificate::verify_issued_by`]), the Fulcio
//! identity ([`Certificate::identity`]) and the embedded SCT ([`Certificate::verify_sct`]).
//!
//! Parsing is `x509-cert` (strict DER); signatures are [`VerifierKey`]. The checks follow
//! RFC 5280 §6.1 for the parts Sigstore relies on (names chain, signatures, validity at the
//! signing time, CA basic constraints and key usage), not the whole algorithm: Sigstore
//! trust roots are short explicit chains with no name constraints or policies.

use base64::Engine as _;
use const_oid::db::rfc5280;
use const_oid::ObjectIdentifier;
use der::asn1::{AnyRef, BitStringRef, Utf8StringRef};
use der::{Decode as _, Encode as _, Sequence};
use time::OffsetDateTime;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::sct::{SignedCertificateTimestampList, Version as SctVersion};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName};
use x509_cert::spki::AlgorithmIdentifierOwned;

use crate::signature::{HashAlgorithm, KeyError, SignatureAlgorithm, VerifierKey};

/// Fulcio's OIDC issuer extension, v1 (raw string value): `1.3.6.1.4.1.57264.1.1`
/// (<https://github.com/sigstore/fulcio/blob/main/docs/oid-info.md>).
const FULCIO_ISSUER_V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
/// Fulcio's OIDC issuer extension, v2 (DER UTF8String): `1.3.6.1.4.1.57264.1.8`.
const FULCIO_ISSUER_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
/// Fulcio's otherName SAN type for usernames: `1.3.6.1.4.1.57264.1.7`.
const FULCIO_OTHERNAME_SAN: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.7");
/// RFC 6962 §3.3 embedded SCT list extension.
pub(crate) const SCT_LIST: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");
/// RFC 6962 §3.1 precertificate poison extension.
const CT_POISON: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.3");
/// id-kp-codeSigning, RFC 5280 §4.2.1.12.
pub(crate) const KP_CODE_SIGNING: ObjectIdentifier = rfc5280::ID_KP_CODE_SIGNING;
/// id-kp-timeStamping, RFC 5280 §4.2.1.12.
pub(crate) const KP_TIME_STAMPING: ObjectIdentifier = rfc5280::ID_KP_TIME_STAMPING;

/// `Certificate` as its three DER parts, to keep the exact signed TBS bytes (re-encoding a
/// decoded TBS would only be equal for canonical DER; the signature is over what was sent).
#[derive(Sequence)]
struct SignedParts<'a> {
    tbs: AnyRef<'a>,
    algorithm: AlgorithmIdentifierOwned,
    signature: BitStringRef<'a>,
}

/// A parsed certificate with its DER and public key.
#[derive(Clone, Debug)]
pub(crate) struct Certificate {
    der: Vec<u8>,
    tbs_der: Vec<u8>,
    signature_algorithm: ObjectIdentifier,
    signature: Vec<u8>,
    inner: x509_cert::Certificate,
    key: Result<VerifierKey, KeyError>,
}

/// The signer identity a Fulcio certificate carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CertificateIdentity {
    /// Every URI, email and Fulcio username (otherName) SAN, in certificate order.
    pub sans: Vec<String>,
    /// The OIDC issuer (extension `…57264.1.8`, else `…57264.1.1`).
    pub issuer: Option<String>,
}

impl Certificate {
    /// Parses one DER certificate.
    pub(crate) fn from_der(der: &[u8]) -> Result<Certificate, CertificateError> {
        let inner = x509_cert::Certificate::from_der(der).map_err(CertificateError::NotDer)?;
        let parts = SignedParts::from_der(der).map_err(CertificateError::NotDer)?;
        let tbs_der = parts.tbs.to_der().map_err(CertificateError::TbsEncoding)?;
        let signature = parts
            .signature
            .as_bytes()
            .ok_or(CertificateError::SignatureUnusedBits)?
            .to_vec();
        let spki = inner
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(CertificateError::PublicKeyEncoding)?;
        Ok(Certificate {
            der: der.to_vec(),
            tbs_der,
            signature_algorithm: parts.algorithm.oid,
            signature,
            key: VerifierKey::from_spki_der(&spki),
            inner,
        })
    }

    pub(crate) fn der(&self) -> &[u8] {
        &self.der
    }

    /// The subject public key, or why it is not usable.
    pub(crate) fn key(&self) -> Result<&VerifierKey, CertificateError> {
        self.key
            .as_ref()
            .map_err(|e| CertificateError::Key(e.clone()))
    }

    /// DER SubjectPublicKeyInfo.
    pub(crate) fn spki_der(&self) -> Vec<u8> {
        self.inner
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .unwrap_or_default()
    }

    /// The subject as an RFC 4514 string, for messages (Fulcio leaves have none).
    pub(crate) fn subject(&self) -> String {
        let subject = self.inner.tbs_certificate.subject.to_string();
        if subject.is_empty() {
            "(empty subject)".to_owned()
        } else {
            subject
        }
    }

    /// Whether issuer and subject are the same name (a root or other self-issued
    /// certificate, RFC 5280 §6.1).
    pub(crate) fn is_self_issued(&self) -> bool {
        self.inner.tbs_certificate.issuer == self.inner.tbs_certificate.subject
    }

    /// notBefore and notAfter.
    pub(crate) fn validity(&self) -> (OffsetDateTime, OffsetDateTime) {
        let validity = &self.inner.tbs_certificate.validity;
        (
            to_datetime(&validity.not_before),
            to_datetime(&validity.not_after),
        )
    }

    /// Whether `at` is within notBefore..=notAfter (RFC 5280 §4.1.2.5: both inclusive).
    pub(crate) fn is_valid_at(&self, at: OffsetDateTime) -> bool {
        let (not_before, not_after) = self.validity();
        not_before <= at && at <= not_after
    }

    fn extension<T: for<'a> der::Decode<'a>>(
        &self,
        oid: ObjectIdentifier,
    ) -> Result<Option<T>, CertificateError> {
        let mut found = None;
        for ext in self.inner.tbs_certificate.extensions.iter().flatten() {
            if ext.extn_id == oid {
                if found.is_some() {
                    return Err(CertificateError::ExtensionTwice(oid));
                }
                found = Some(
                    T::from_der(ext.extn_value.as_bytes())
                        .map_err(|e| CertificateError::ExtensionMalformed(oid, e))?,
                );
            }
        }
        Ok(found)
    }

    fn raw_extension(&self, oid: ObjectIdentifier) -> Option<&[u8]> {
        self.inner
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|ext| ext.extn_id == oid)
            .map(|ext| ext.extn_value.as_bytes())
    }

    /// Whether this certificate may issue certificates: basicConstraints cA and, when key
    /// usage is present, keyCertSign (RFC 5280 §4.2.1.9, §4.2.1.3).
    fn is_ca(&self) -> Result<bool, CertificateError> {
        let ca = self
            .extension::<BasicConstraints>(rfc5280::ID_CE_BASIC_CONSTRAINTS)?
            .is_some_and(|bc| bc.ca);
        let cert_sign = self
            .extension::<KeyUsage>(rfc5280::ID_CE_KEY_USAGE)?
            .is_none_or(|ku| ku.key_cert_sign());
        Ok(ca && cert_sign)
    }

    /// Checks that `self` is an end-entity certificate for `purpose` (an extended key
    /// usage): not a CA, key usage digitalSignature, the EKU listed.
    pub(crate) fn check_end_entity(
        &self,
        purpose: ObjectIdentifier,
    ) -> Result<(), CertificateError> {
        if self
            .extension::<BasicConstraints>(rfc5280::ID_CE_BASIC_CONSTRAINTS)?
            .is_some_and(|bc| bc.ca)
        {
            return Err(CertificateError::IsCa);
        }
        let usage = self
            .extension::<KeyUsage>(rfc5280::ID_CE_KEY_USAGE)?
            .ok_or(CertificateError::NoKeyUsage)?;
        if !usage.digital_signature() {
            return Err(CertificateError::NoDigitalSignature);
        }
        let extended = self
            .extension::<ExtendedKeyUsage>(rfc5280::ID_CE_EXT_KEY_USAGE)?
            .ok_or(CertificateError::NoExtendedKeyUsage)?;
        if !extended.0.contains(&purpose) {
            return Err(CertificateError::PurposeMissing(purpose));
        }
        Ok(())
    }

    /// Whether `self` was issued and signed by `issuer`, and `issuer` may issue.
    pub(crate) fn verify_issued_by(&self, issuer: &Certificate) -> Result<(), CertificateError> {
        if self.inner.tbs_certificate.issuer != issuer.inner.tbs_certificate.subject {
            return Err(CertificateError::NotIssuedBy {
                subject: self.subject(),
                issuer: issuer.subject(),
            });
        }
        if !issuer.is_ca()? {
            return Err(CertificateError::NotCa {
                subject: issuer.subject(),
            });
        }
        let algorithm = SignatureAlgorithm::from_oid(&self.signature_algorithm, None).ok_or(
            CertificateError::SignatureAlgorithmUnsupported(self.signature_algorithm),
        )?;
        if issuer
            .key()?
            .verifies_with(algorithm, &self.tbs_der, &self.signature)
        {
            Ok(())
        } else {
            Err(CertificateError::SignatureInvalid {
                subject: self.subject(),
                issuer: issuer.subject(),
            })
        }
    }

    /// The Fulcio identity: SANs (URI, email, otherName username) and OIDC issuer.
    pub(crate) fn identity(&self) -> Result<CertificateIdentity, CertificateError> {
        let mut sans = Vec::new();
        if let Some(SubjectAltName(names)) =
            self.extension::<SubjectAltName>(rfc5280::ID_CE_SUBJECT_ALT_NAME)?
        {
            for name in names {
                match name {
                    GeneralName::UniformResourceIdentifier(uri) => sans.push(uri.to_string()),
                    GeneralName::Rfc822Name(email) => sans.push(email.to_string()),
                    GeneralName::OtherName(other) if other.type_id == FULCIO_OTHERNAME_SAN => {
                        let text = other
                            .value
                            .decode_as::<Utf8StringRef<'_>>()
                            .map_err(CertificateError::OtherNameNotUtf8)?;
                        sans.push(text.as_str().to_owned());
                    }
                    _ => {}
                }
            }
        }
        let issuer = match self.raw_extension(FULCIO_ISSUER_V2) {
            Some(der) => Some(
                Utf8StringRef::from_der(der)
                    .map_err(CertificateError::IssuerV2NotUtf8)?
                    .as_str()
                    .to_owned(),
            ),
            None => match self.raw_extension(FULCIO_ISSUER_V1) {
                // v1 stores the issuer as the raw extension value, not DER.
                Some(raw) => Some(
                    std::str::from_utf8(raw)
                        .map_err(|_| CertificateError::IssuerV1NotUtf8)?
                        .to_owned(),
                ),
                None => None,
            },
        };
        Ok(CertificateIdentity { sans, issuer })
    }

    /// The RFC 6962 §3.2 precertificate TBS: this certificate's TBS without the embedded SCT
    /// list (and without a poison extension, should one be present).
    fn precertificate_tbs(&self) -> Result<Vec<u8>, SctError> {
        let mut tbs = self.inner.tbs_certificate.clone();
        if let Some(extensions) = tbs.extensions.as_mut() {
            extensions.retain(|ext| ext.extn_id != SCT_LIST && ext.extn_id != CT_POISON);
        }
        tbs.to_der().map_err(SctError::TbsEncoding)
    }

    /// Verifies the embedded SCTs (RFC 6962 §3.2, §3.3) issued for this certificate signed
    /// by `issuer`; succeeds when at least one SCT verifies with a log in `logs`.
    pub(crate) fn verify_sct(
        &self,
        issuer: &Certificate,
        logs: &[crate::anchor::TransparencyLog],
    ) -> Result<(), SctError> {
        let list = self.raw_extension(SCT_LIST).ok_or(SctError::Missing)?;
        // The extension value is an OCTET STRING holding the TLS-encoded list (RFC 6962 §3.3).
        let scts = SignedCertificateTimestampList::from_der(list)
            .map_err(|e| SctError::ListMalformed(e.to_string()))?
            .parse_timestamps()
            .map_err(|e| SctError::ListMalformed(format!("{e:?}")))?;
        let tbs = self.precertificate_tbs()?;
        let issuer_key_hash = HashAlgorithm::Sha256.digest(&issuer.spki_der());
        let tbs_len = u32::try_from(tbs.len())
            .ok()
            .filter(|len| *len < (1 << 24))
            .ok_or(SctError::TbsTooLong)?;
        let mut reasons = Vec::new();
        for serialized in scts {
            let sct = match serialized.parse_timestamp() {
                Ok(sct) => sct,
                Err(e) => {
                    reasons.push(format!("an SCT is malformed ({e:?})"));
                    continue;
                }
            };
            if sct.version != SctVersion::V1 {
                reasons.push("an SCT is not version 1".to_owned());
                continue;
            }
            let Some(log) = logs.iter().find(|l| l.log_id == sct.log_id.key_id) else {
                reasons.push("an SCT is from a CT log not in the trusted root".to_owned());
                continue;
            };
            let Ok(key) = log.key.as_ref() else {
                reasons.push("an SCT is from a CT log whose key is not usable".to_owned());
                continue;
            };
            let Some(when) = i128::from(sct.timestamp)
                .checked_mul(1_000_000)
                .and_then(|ns| OffsetDateTime::from_unix_timestamp_nanos(ns).ok())
            else {
                reasons.push("an SCT timestamp is out of range".to_owned());
                continue;
            };
            if !log.valid_for.contains(when) {
                reasons.push("an SCT is outside its CT log key's validity".to_owned());
                continue;
            }
            // RFC 6962 §3.2 `digitally-signed struct` for a precert entry, TLS encoding:
            // version, signature_type (certificate_timestamp), timestamp, entry_type
            // (precert_entry), issuer_key_hash, tbs_certificate<1..2^24-1>, extensions<0..2^16-1>.
            let extensions = sct.extensions.as_slice();
            let Ok(extensions_len) = u16::try_from(extensions.len()) else {
                reasons.push("an SCT has oversized extensions".to_owned());
                continue;
            };
            let mut signed = Vec::with_capacity(tbs.len() + 64);
            signed.push(0u8); // v1
            signed.push(0u8); // certificate_timestamp
            signed.extend_from_slice(&sct.timestamp.to_be_bytes());
            signed.extend_from_slice(&1u16.to_be_bytes()); // precert_entry
            signed.extend_from_slice(&issuer_key_hash);
            signed.extend_from_slice(tbs_len.to_be_bytes().get(1..).unwrap_or_default());
            signed.extend_from_slice(&tbs);
            signed.extend_from_slice(&extensions_len.to_be_bytes());
            signed.extend_from_slice(extensions);
            if key.verifies_message(&signed, sct.signature.signature.as_slice()) {
                return Ok(());
            }
            reasons.push("an SCT signature does not verify".to_owned());
        }
        Err(if reasons.is_empty() {
            SctError::Empty
        } else {
            SctError::NoneVerifies(reasons.join("; "))
        })
    }
}

/// Why a certificate does not parse, is not the kind of certificate a check needs, or was
/// not issued by another. Messages complete "signing certificate is invalid: …" and the
/// trusted root's and timestamp authorities' messages.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum CertificateError {
    /// The bytes are not a DER certificate.
    #[error("it is not a DER X.509 certificate ({0})")]
    NotDer(der::Error),
    /// The TBS part does not re-encode.
    #[error("its TBS does not re-encode ({0})")]
    TbsEncoding(der::Error),
    /// The signature BIT STRING has unused bits.
    #[error("its signature bit string has unused bits")]
    SignatureUnusedBits,
    /// The SubjectPublicKeyInfo does not encode.
    #[error("its public key does not encode ({0})")]
    PublicKeyEncoding(der::Error),
    /// The subject public key is not usable.
    #[error(transparent)]
    Key(KeyError),
    /// An extension appears twice.
    #[error("extension `{0}` appears twice")]
    ExtensionTwice(ObjectIdentifier),
    /// An extension does not decode.
    #[error("extension `{0}` is malformed ({1})")]
    ExtensionMalformed(ObjectIdentifier, der::Error),
    /// A CA certificate where a leaf is needed.
    #[error("it is a CA certificate, not a signing certificate")]
    IsCa,
    /// No key usage extension on a leaf.
    #[error("it has no key usage extension")]
    NoKeyUsage,
    /// Key usage without digitalSignature.
    #[error("its key usage does not include digitalSignature")]
    NoDigitalSignature,
    /// No extended key usage extension on a leaf.
    #[error("it has no extended key usage extension")]
    NoExtendedKeyUsage,
    /// The extended key usage lacks the purpose.
    #[error("its extended key usage does not include `{0}`")]
    PurposeMissing(ObjectIdentifier),
    /// The issuer name is not the candidate issuer's subject.
    #[error("`{subject}` is not issued by `{issuer}`")]
    NotIssuedBy {
        /// The issued certificate's subject.
        subject: String,
        /// The candidate issuer's subject.
        issuer: String,
    },
    /// The candidate issuer may not issue certificates.
    #[error("`{subject}` is not a CA certificate")]
    NotCa {
        /// The candidate issuer's subject.
        subject: String,
    },
    /// The certificate is signed with an algorithm this verifier cannot check.
    #[error("signature algorithm `{0}` is not supported")]
    SignatureAlgorithmUnsupported(ObjectIdentifier),
    /// The issuer's key does not verify the certificate's signature.
    #[error("the signature of `{subject}` does not verify with the key of `{issuer}`")]
    SignatureInvalid {
        /// The issued certificate's subject.
        subject: String,
        /// The issuer's subject.
        issuer: String,
    },
    /// The Fulcio otherName SAN is not a UTF8String.
    #[error("its otherName SAN is not a UTF8String ({0})")]
    OtherNameNotUtf8(der::Error),
    /// The Fulcio OIDC issuer (v2) is not a UTF8String.
    #[error("its OIDC issuer (v2) is not a UTF8String ({0})")]
    IssuerV2NotUtf8(der::Error),
    /// The Fulcio OIDC issuer (v1) is not UTF-8.
    #[error("its OIDC issuer (v1) is not UTF-8")]
    IssuerV1NotUtf8,
}

/// Why no embedded SCT of a certificate verifies.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum SctError {
    /// No SCT list extension.
    #[error("the certificate has no embedded SCT")]
    Missing,
    /// The SCT list does not decode.
    #[error("the SCT list is malformed ({0})")]
    ListMalformed(String),
    /// The precertificate TBS does not encode.
    #[error("the precertificate TBS does not encode ({0})")]
    TbsEncoding(der::Error),
    /// The precertificate TBS does not fit the TLS length prefix.
    #[error("the precertificate TBS is too long")]
    TbsTooLong,
    /// The list holds no SCT.
    #[error("the SCT list is empty")]
    Empty,
    /// Every SCT was refused; why, one reason per SCT, joined by `; `.
    #[error("{0}")]
    NoneVerifies(String),
}

fn to_datetime(time: &x509_cert::time::Time) -> OffsetDateTime {
    let secs = i64::try_from(time.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Decodes PEM `CERTIFICATE` text to DER. `pem-rfc7468` (via `der`) is strict about the
/// RFC 7468 §2 line width of 64, but some Rekor entries (intoto 0.0.2 from older clients)
/// log the base64 on one long line; for those, the lax form of RFC 7468 §3 is accepted here:
/// the label lines must be exact, and the base64 between them may be wrapped at any width.
pub(crate) fn pem_certificate_der(pem: &str) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    if let Ok((label, der)) = der::pem::decode_vec(pem.trim().as_bytes()) {
        return (label == "CERTIFICATE").then_some(der);
    }
    let body = pem.trim().strip_prefix(BEGIN)?.strip_suffix(END)?;
    let base64: String = body.split_ascii_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(base64)
        .ok()
}
