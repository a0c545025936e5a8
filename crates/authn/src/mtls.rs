//! mTLS callers (`mtls:<name>` and `mtls:spiffe` in a function's `[invoke] from`): the
//! certificate authorities a tenant registered (`zerofn auth mtls add`), the platform's own
//! trust bundle, and the check that turns a client certificate chain into a
//! [`VerifiedCertificate`].
//!
//! The gateway's TLS handshake only proves that the client holds the private key of the
//! end-entity certificate it sent (rustls checks the `CertificateVerify` signature); which
//! roots the chain must lead to depends on the function called, so the chain is validated
//! here, per request, against the named CAs of the callee's own tenant (and the platform
//! bundle for `spiffe`): webpki path building with the `clientAuth` usage, every
//! certificate's validity at the time of the request, and signatures on every link. A CA of
//! tenant A is never consulted for a function of tenant B.
//!
//! A chain none of the function's CAs issued is [`CertificateRefusal::Untrusted`]; one an
//! accepted CA issued but that is expired, not yet valid, or (platform SVIDs) revoked, is
//! refused with its own reason. The gateway decides what each means for the request.
//!
//! # Trust
//! Trusts the CA certificates a tenant registered (checked here at registration: parsed, a
//! CA by basic constraints, within their validity, bounded in size and number) and, for
//! `spiffe`, the platform's identity CA and its [`PlatformSvids`] check (SPIFFE ID rules,
//! revocation). Trusts nothing in a presented chain. No private key is ever accepted: a
//! registration holding one is refused without quoting it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::{PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The name of the platform's own trust bundle in `[invoke] from` (`mtls:spiffe`); no
/// tenant CA may take it.
pub const PLATFORM_CA: &str = "spiffe";
/// Largest CA registration (PEM text).
pub const MAX_CA_PEM_BYTES: usize = 64 * 1024;
/// Most CA certificates under one name.
pub const MAX_CA_CERTS: usize = 16;
/// Most certificates a client chain may have (end-entity and intermediates).
pub const MAX_CHAIN_LEN: usize = 8;
/// Largest certificate of a presented chain.
const MAX_CERT_BYTES: usize = 16 * 1024;

/// Why CA certificates are refused at registration. Messages name the certificate by its
/// position (1 for the first in the file) and subject, never quote key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaError {
    #[error("the CA file is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("the CA file holds a private key; register only the CA certificate (`-----BEGIN CERTIFICATE-----`), and keep the key secret")]
    PrivateKey,
    #[error("the CA file is not PEM certificates ({detail})")]
    NotPem { detail: String },
    #[error("the CA file holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)")]
    NoCertificate,
    #[error("the CA file holds {count} certificates, more than the {max} allowed")]
    TooMany { count: usize, max: usize },
    #[error("certificate {index} is not an X.509 certificate ({detail})")]
    BadCertificate { index: usize, detail: String },
    #[error(
        "certificate {index} (`{subject}`) is not a CA: its basic constraints do not say `CA:TRUE`"
    )]
    NotCa { index: usize, subject: String },
    #[error("certificate {index} (`{subject}`) may not sign certificates: its key usage lacks `keyCertSign`")]
    NoCertSign { index: usize, subject: String },
    #[error("certificate {index} (`{subject}`) expired at {not_after} (Unix time)")]
    Expired {
        index: usize,
        subject: String,
        not_after: i64,
    },
    #[error("certificate {index} (`{subject}`) is not valid before {not_before} (Unix time)")]
    NotYetValid {
        index: usize,
        subject: String,
        not_before: i64,
    },
    #[error("the CA certificates cannot be used as trust anchors ({detail})")]
    Anchor { detail: String },
    #[error("`spiffe` names the platform's own trust bundle; choose another name")]
    ReservedName,
}

/// Why a presented client certificate chain does not authenticate its caller. Each has a
/// short stable reason (`authn: <reason>` in the audit record).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateRefusal {
    #[error("the client certificate was not issued by a CA this function accepts")]
    Untrusted,
    #[error("the client certificate has expired")]
    Expired,
    #[error("the client certificate is not valid yet")]
    NotYetValid,
    #[error("the client certificate has been revoked")]
    Revoked,
    #[error("the client certificate is not an X509-SVID of the platform's trust domain")]
    NotAnSvid,
    #[error("the client certificate chain is malformed or too long")]
    Malformed,
}

impl CertificateRefusal {
    /// The short stable reason for audit records and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            CertificateRefusal::Untrusted => "certificate_untrusted",
            CertificateRefusal::Expired => "certificate_expired",
            CertificateRefusal::NotYetValid => "certificate_not_yet_valid",
            CertificateRefusal::Revoked => "certificate_revoked",
            CertificateRefusal::NotAnSvid => "certificate_not_svid",
            CertificateRefusal::Malformed => "certificate_malformed",
        }
    }
}

/// One CA certificate of a registration, as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CaCertificate {
    /// RFC 4514.
    pub subject: String,
    /// Unix time.
    pub not_before: i64,
    pub not_after: i64,
    /// `sha256:<hex>` of the DER.
    pub fingerprint: String,
}

/// A tenant's CA registered under a name: its certificates, checked, and the verifier
/// built from them.
pub struct TrustedCa {
    name: String,
    certificates: Vec<CaCertificate>,
    pem: String,
    verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for TrustedCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedCa")
            .field("name", &self.name)
            .field("certificates", &self.certificates)
            .finish_non_exhaustive()
    }
}

impl TrustedCa {
    /// Parses and checks `pem` (one or more CA certificates) for registration under `name`
    /// at `now` (Unix seconds): size bounded, certificates only (a private key is refused),
    /// each a CA by basic constraints (and by key usage when it has one), within its
    /// validity, and usable as a webpki trust anchor.
    pub fn parse(name: &str, pem: &[u8], now: i64) -> Result<TrustedCa, CaError> {
        TrustedCa::parse_at(name, pem, Some(now))
    }

    /// What the certificates of a stored registration say, whatever the time (a CA that
    /// expired since it was registered is listed, though it verifies no one).
    pub fn describe(pem: &[u8]) -> Result<Vec<CaCertificate>, CaError> {
        TrustedCa::parse_at("listed", pem, None).map(|ca| ca.certificates)
    }

    fn parse_at(name: &str, pem: &[u8], now: Option<i64>) -> Result<TrustedCa, CaError> {
        if name == PLATFORM_CA {
            return Err(CaError::ReservedName);
        }
        if pem.len() > MAX_CA_PEM_BYTES {
            return Err(CaError::TooLarge {
                max: MAX_CA_PEM_BYTES,
            });
        }
        let mut ders = Vec::new();
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
            let (kind, der) = section.map_err(|e| CaError::NotPem {
                // The pem error names the problem and a line, not the content.
                detail: e.to_string(),
            })?;
            match kind {
                SectionKind::Certificate => ders.push(CertificateDer::from(der)),
                SectionKind::PrivateKey
                | SectionKind::RsaPrivateKey
                | SectionKind::EcPrivateKey => return Err(CaError::PrivateKey),
                // Other sections (CRLs, public keys, requests) are not CA certificates.
                _ => {
                    return Err(CaError::NotPem {
                        detail: "a section other than CERTIFICATE".to_owned(),
                    })
                }
            }
        }
        if ders.is_empty() {
            return Err(CaError::NoCertificate);
        }
        if ders.len() > MAX_CA_CERTS {
            return Err(CaError::TooMany {
                count: ders.len(),
                max: MAX_CA_CERTS,
            });
        }
        let mut certificates = Vec::with_capacity(ders.len());
        let mut roots = RootCertStore::empty();
        for (i, der) in ders.iter().enumerate() {
            let index = i.saturating_add(1);
            certificates.push(check_ca(index, der, now)?);
            roots.add(der.clone()).map_err(|e| CaError::Anchor {
                detail: e.to_string(),
            })?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| CaError::Anchor {
            detail: e.to_string(),
        })?;
        // Kept as given (certificates only, checked above): a configuration directory holds
        // the same file, so `drift` compares the text.
        let text = std::str::from_utf8(pem)
            .map_err(|_| CaError::NotPem {
                detail: "not UTF-8 text".to_owned(),
            })?
            .to_owned();
        Ok(TrustedCa {
            name: name.to_owned(),
            certificates,
            pem: text,
            verifier,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether any of its certificates is past its end at `now`.
    pub fn has_expired(&self, now: UnixTime) -> bool {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        self.certificates.iter().any(|c| now > c.not_after)
    }

    /// The certificates, as listed.
    pub fn certificates(&self) -> &[CaCertificate] {
        &self.certificates
    }

    /// The PEM text as registered (certificates only; what is stored).
    pub fn pem(&self) -> &str {
        &self.pem
    }
}

fn check_ca(index: usize, der: &[u8], now: Option<i64>) -> Result<CaCertificate, CaError> {
    let bad = |detail: String| CaError::BadCertificate { index, detail };
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the certificate".to_owned()));
    }
    let subject = rfc4514(cert.subject());
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| bad(e.to_string()))?
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(CaError::NotCa { index, subject });
    }
    if let Some(ku) = cert.key_usage().map_err(|e| bad(e.to_string()))? {
        if !ku.value.key_cert_sign() {
            return Err(CaError::NoCertSign { index, subject });
        }
    }
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    if now.is_some_and(|now| now > not_after) {
        return Err(CaError::Expired {
            index,
            subject,
            not_after,
        });
    }
    if now.is_some_and(|now| now < not_before) {
        return Err(CaError::NotYetValid {
            index,
            subject,
            not_before,
        });
    }
    Ok(CaCertificate {
        subject,
        not_before,
        not_after,
        fingerprint: format!("sha256:{}", hex::encode(Sha256::digest(der))),
    })
}

/// A distinguished name as an RFC 4514 string: RDNs last to first, separated by `,`; the
/// attribute types RFC 4514 §3 names by their short names, others by dotted OID; values
/// escaped per §2.4. A value that is not a string is `#` and the hex of its content (a
/// simplification of §2.4's BER encoding).
pub fn rfc4514(name: &x509_parser::x509::X509Name<'_>) -> String {
    let mut rdns: Vec<String> = Vec::new();
    for rdn in name.iter_rdn() {
        let mut parts: Vec<String> = Vec::new();
        for attr in rdn.iter() {
            let oid = attr.attr_type().to_id_string();
            let short = match oid.as_str() {
                "2.5.4.3" => Some("CN"),
                "2.5.4.7" => Some("L"),
                "2.5.4.8" => Some("ST"),
                "2.5.4.10" => Some("O"),
                "2.5.4.11" => Some("OU"),
                "2.5.4.6" => Some("C"),
                "2.5.4.9" => Some("STREET"),
                "0.9.2342.19200300.100.1.25" => Some("DC"),
                "0.9.2342.19200300.100.1.1" => Some("UID"),
                _ => None,
            };
            let value = match (short, attr.as_str()) {
                (Some(_), Ok(text)) => escape_rfc4514(text),
                _ => format!("#{}", hex::encode(attr.as_slice())),
            };
            parts.push(format!("{}={value}", short.unwrap_or(&oid)));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    rdns.join(",")
}

fn escape_rfc4514(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02x}");
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// What a verified client certificate says, for the policy, the record and the function.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifiedCertificate {
    /// The CA name that verified it (`spiffe` for the platform bundle).
    pub ca: String,
    /// The SPIFFE ID of its one `spiffe://` URI SAN, if it has exactly one.
    pub spiffe_id: Option<String>,
    /// The subject, RFC 4514.
    pub subject: String,
    /// The serial number, lowercase hex.
    pub serial: String,
    /// Unix time.
    pub not_after: i64,
}

impl VerifiedCertificate {
    /// How the caller is named: its SPIFFE ID when it has one, else its subject.
    pub fn id(&self) -> &str {
        self.spiffe_id.as_deref().unwrap_or(&self.subject)
    }
}

/// The platform's own X509-SVID rules, beyond the chain: exactly one SPIFFE ID of a
/// workload of the trust domain, and not revoked. Implemented by the composition root
/// with the identity CA (the owner of those rules), so this crate needs no identity code.
pub trait PlatformSvids: Send + Sync {
    /// Checks `leaf` (DER) as an X509-SVID of the platform; its SPIFFE ID.
    fn verify(&self, leaf: &[u8]) -> Result<String, CertificateRefusal>;
}

/// The platform's trust bundle as an mTLS authority (`mtls:spiffe`).
pub struct PlatformTrust {
    verifier: Arc<dyn ClientCertVerifier>,
    svids: Arc<dyn PlatformSvids>,
}

impl PlatformTrust {
    /// The bundle's CA certificates (DER) and the SVID rules.
    pub fn new(
        bundle: Vec<CertificateDer<'static>>,
        svids: Arc<dyn PlatformSvids>,
    ) -> Result<PlatformTrust, CaError> {
        let mut roots = RootCertStore::empty();
        for der in bundle {
            roots.add(der).map_err(|e| CaError::Anchor {
                detail: e.to_string(),
            })?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| CaError::Anchor {
            detail: e.to_string(),
        })?;
        Ok(PlatformTrust { verifier, svids })
    }
}

/// Every tenant's registered CAs and the platform bundle.
#[derive(Default)]
pub struct MtlsRegistry {
    tenants: HashMap<String, Vec<Arc<TrustedCa>>>,
    platform: Option<Arc<PlatformTrust>>,
}

impl std::fmt::Debug for MtlsRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsRegistry")
            .field("tenants", &self.tenants)
            .field("platform", &self.platform.is_some())
            .finish()
    }
}

/// The outcome of one authority's check of a chain.
enum Checked {
    Verified,
    /// Issued by this authority, but refused (expired, revoked…).
    Refused(CertificateRefusal),
    /// Not issued by this authority.
    NotOurs,
}

impl MtlsRegistry {
    pub fn add_ca(&mut self, tenant: &str, ca: TrustedCa) {
        self.tenants
            .entry(tenant.to_owned())
            .or_default()
            .push(Arc::new(ca));
    }

    pub fn set_platform(&mut self, platform: PlatformTrust) {
        self.platform = Some(Arc::new(platform));
    }

    /// Authenticates `chain` (end-entity first, as presented) for a function of `tenant`
    /// that accepts the CAs named `accepted` (`spiffe` for the platform bundle), at `now`.
    /// The first accepted CA that verifies the chain names the caller. When none does, a
    /// refusal from a CA that did issue the chain (expired, not yet valid, revoked) wins
    /// over [`CertificateRefusal::Untrusted`].
    pub fn authenticate(
        &self,
        tenant: &str,
        accepted: &[String],
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<VerifiedCertificate, CertificateRefusal> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(CertificateRefusal::Malformed);
        };
        if chain.len() > MAX_CHAIN_LEN || chain.iter().any(|c| c.len() > MAX_CERT_BYTES) {
            return Err(CertificateRefusal::Malformed);
        }
        let facts = Facts::of(leaf)?;
        let tenant_cas = self.tenants.get(tenant);
        let mut refusal = None;
        for name in accepted {
            let checked = if name == PLATFORM_CA {
                match &self.platform {
                    Some(p) => match check_chain(&*p.verifier, leaf, intermediates, now, &facts) {
                        // The chain is the bundle's: now the SVID rules (one SPIFFE ID of a
                        // workload, not revoked), which the identity CA owns.
                        Checked::Verified => match p.svids.verify(leaf.as_ref()) {
                            Ok(id) => {
                                return Ok(facts.verified(name, Some(id)));
                            }
                            Err(e) => Checked::Refused(e),
                        },
                        other => other,
                    },
                    None => Checked::NotOurs,
                }
            } else {
                match tenant_cas.into_iter().flatten().find(|ca| ca.name == *name) {
                    // webpki's trust anchors carry no validity: a registration with a CA
                    // certificate past its end verifies no one (fail closed).
                    Some(ca) if ca.has_expired(now) => Checked::NotOurs,
                    Some(ca) => check_chain(&*ca.verifier, leaf, intermediates, now, &facts),
                    None => Checked::NotOurs,
                }
            };
            match checked {
                Checked::Verified => {
                    let spiffe_id = facts.spiffe_id.clone();
                    return Ok(facts.verified(name, spiffe_id));
                }
                Checked::Refused(e) => {
                    refusal.get_or_insert(e);
                }
                Checked::NotOurs => {}
            }
        }
        Err(refusal.unwrap_or(CertificateRefusal::Untrusted))
    }
}

/// What the leaf says, read once.
struct Facts {
    spiffe_id: Option<String>,
    subject: String,
    serial: String,
    not_before: i64,
    not_after: i64,
}

impl Facts {
    fn of(leaf: &CertificateDer<'_>) -> Result<Facts, CertificateRefusal> {
        let (_, cert) =
            X509Certificate::from_der(leaf.as_ref()).map_err(|_| CertificateRefusal::Malformed)?;
        let mut spiffe = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::URI(uri) = name {
                    if uri.starts_with("spiffe://") {
                        spiffe.push((*uri).to_owned());
                    }
                }
            }
        }
        // X509-SVID §2: exactly one URI SAN; two SPIFFE IDs name no one.
        let spiffe_id = match spiffe.len() {
            1 => spiffe.pop(),
            _ => None,
        };
        Ok(Facts {
            spiffe_id,
            subject: rfc4514(cert.subject()),
            serial: hex::encode(cert.raw_serial()),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    fn verified(&self, ca: &str, spiffe_id: Option<String>) -> VerifiedCertificate {
        VerifiedCertificate {
            ca: ca.to_owned(),
            spiffe_id,
            subject: self.subject.clone(),
            serial: self.serial.clone(),
            not_after: self.not_after,
        }
    }
}

fn check_chain(
    verifier: &dyn ClientCertVerifier,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    facts: &Facts,
) -> Checked {
    let time_error = match verifier.verify_client_cert(leaf, intermediates, now) {
        Ok(_) => return Checked::Verified,
        Err(rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => CertificateRefusal::Expired,
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        )) => CertificateRefusal::NotYetValid,
        Err(_) => return Checked::NotOurs,
    };
    // webpki checks the leaf's validity before it builds a path, so an expired certificate
    // of any CA reads as expired. It is this CA's expired certificate only if the chain
    // verifies at a time the leaf was valid.
    let then = UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(facts.not_before).unwrap_or(0),
    ));
    match verifier.verify_client_cert(leaf, intermediates, then) {
        Ok(_) => Checked::Refused(time_error),
        Err(_) => Checked::NotOurs,
    }
}

/// The registry in force, swapped whole on every change (as [`crate::Authenticators`]).
#[derive(Clone, Default)]
pub struct MtlsAuthorities {
    current: Arc<RwLock<Arc<MtlsRegistry>>>,
}

impl std::fmt::Debug for MtlsAuthorities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MtlsAuthorities(..)")
    }
}

impl MtlsAuthorities {
    pub fn current(&self) -> Arc<MtlsRegistry> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn replace(&self, registry: MtlsRegistry) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(registry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, SanType,
    };

    struct Ca {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A client certificate of `ca`, valid from `from` to `to` (years).
    fn leaf(
        ca: &Ca,
        cn: &str,
        spiffe: Option<&str>,
        from: i32,
        to: i32,
    ) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Partner, Inc");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if let Some(id) = spiffe {
            params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        }
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
        params.signed_by(&key, &ca.issuer).unwrap().der().clone()
    }

    fn now() -> i64 {
        i64::try_from(UnixTime::now().as_secs()).unwrap()
    }

    fn registry(cas: &[(&str, &str, &Ca)]) -> MtlsRegistry {
        let mut r = MtlsRegistry::default();
        for (tenant, name, ca) in cas {
            r.add_ca(
                tenant,
                TrustedCa::parse(name, ca.pem.as_bytes(), now()).unwrap(),
            );
        }
        r
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_good_chain_verifies_and_names_its_ca_subject_and_spiffe_id() {
        let partners = ca("Partners CA");
        let r = registry(&[("acme", "partners", &partners)]);
        let cert = leaf(
            &partners,
            "billing",
            Some("spiffe://partner.test/billing"),
            2020,
            2090,
        );
        let v = r
            .authenticate("acme", &names(&["partners"]), &[cert], UnixTime::now())
            .unwrap();
        assert_eq!(v.ca, "partners");
        assert_eq!(
            v.spiffe_id.as_deref(),
            Some("spiffe://partner.test/billing")
        );
        assert_eq!(v.subject, r"O=Partner\, Inc,CN=billing");
        assert_eq!(v.id(), "spiffe://partner.test/billing");
        assert!(!v.serial.is_empty());
    }

    #[test]
    fn foreign_expired_and_other_tenants_certificates_are_refused() {
        let partners = ca("Partners CA");
        let foreign = ca("Partners CA"); // same name, another key
        let other = ca("Other tenant CA");
        let r = registry(&[
            ("acme", "partners", &partners),
            ("beta", "partners", &other),
        ]);
        let now = UnixTime::now();
        let accepted = names(&["partners"]);
        for (chain, tenant, expected, why) in [
            (
                leaf(&foreign, "x", None, 2020, 2090),
                "acme",
                CertificateRefusal::Untrusted,
                "foreign CA with the same name",
            ),
            (
                leaf(&partners, "x", None, 2020, 2021),
                "acme",
                CertificateRefusal::Expired,
                "expired, from the accepted CA",
            ),
            (
                leaf(&partners, "x", None, 2080, 2090),
                "acme",
                CertificateRefusal::NotYetValid,
                "not yet valid",
            ),
            (
                leaf(&foreign, "x", None, 2020, 2021),
                "acme",
                CertificateRefusal::Untrusted,
                "expired and foreign: untrusted, not expired",
            ),
            // Tenant beta's CA, also named `partners`, never satisfies acme's `mtls:partners`.
            (
                leaf(&other, "x", None, 2020, 2090),
                "acme",
                CertificateRefusal::Untrusted,
                "another tenant's CA",
            ),
            // And acme's never satisfies beta's.
            (
                leaf(&partners, "x", None, 2020, 2090),
                "beta",
                CertificateRefusal::Untrusted,
                "acme's CA for beta",
            ),
            (
                leaf(&partners, "x", None, 2020, 2090),
                "nobody",
                CertificateRefusal::Untrusted,
                "a tenant without CAs",
            ),
        ] {
            assert_eq!(
                r.authenticate(tenant, &accepted, &[chain], now),
                Err(expected),
                "{why}"
            );
        }
        // A CA the function does not accept is not consulted, even of its own tenant.
        let cert = leaf(&partners, "x", None, 2020, 2090);
        assert_eq!(
            r.authenticate(
                "acme",
                &names(&["suppliers"]),
                std::slice::from_ref(&cert),
                now
            ),
            Err(CertificateRefusal::Untrusted)
        );
        // `spiffe` without a platform bundle verifies nothing.
        assert_eq!(
            r.authenticate("acme", &names(&["spiffe"]), &[cert], now),
            Err(CertificateRefusal::Untrusted)
        );
        assert_eq!(
            r.authenticate("acme", &accepted, &[], now),
            Err(CertificateRefusal::Malformed)
        );
        assert_eq!(
            r.authenticate(
                "acme",
                &accepted,
                &[CertificateDer::from(vec![1, 2, 3])],
                now
            ),
            Err(CertificateRefusal::Malformed)
        );
    }

    #[test]
    fn a_registered_ca_that_has_expired_since_verifies_no_one() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "Old CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let old = Ca {
            pem: params.self_signed(&key).unwrap().pem(),
            issuer: Issuer::new(params, key),
        };
        // Registered while it was valid (mid-2000).
        let mut r = MtlsRegistry::default();
        r.add_ca(
            "acme",
            TrustedCa::parse("old", old.pem.as_bytes(), 962_000_000).unwrap(),
        );
        // A leaf it signed that is itself still valid.
        let cert = leaf(&old, "svc", None, 2000, 2090);
        assert_eq!(
            r.authenticate("acme", &names(&["old"]), &[cert], UnixTime::now()),
            Err(CertificateRefusal::Untrusted)
        );
    }

    #[test]
    fn an_intermediate_sent_by_the_client_completes_the_chain() {
        let root = ca("Root");
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Intermediate");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let inter_der = params.signed_by(&key, &root.issuer).unwrap().der().clone();
        let inter = Ca {
            pem: String::new(),
            issuer: Issuer::new(params, key),
        };
        let r = registry(&[("acme", "partners", &root)]);
        let cert = leaf(&inter, "svc", None, 2020, 2090);
        let accepted = names(&["partners"]);
        assert_eq!(
            r.authenticate(
                "acme",
                &accepted,
                std::slice::from_ref(&cert),
                UnixTime::now()
            ),
            Err(CertificateRefusal::Untrusted),
            "without its intermediate"
        );
        let v = r
            .authenticate("acme", &accepted, &[cert, inter_der], UnixTime::now())
            .unwrap();
        assert_eq!(v.subject, r"O=Partner\, Inc,CN=svc");
    }

    struct Svids(Result<String, CertificateRefusal>);
    impl PlatformSvids for Svids {
        fn verify(&self, _leaf: &[u8]) -> Result<String, CertificateRefusal> {
            self.0.clone()
        }
    }

    #[test]
    fn the_platform_bundle_verifies_the_chain_then_the_svid_rules() {
        let platform = ca("zerofn.local");
        let bundle = vec![CertificateDer::from_pem_slice(platform.pem.as_bytes()).unwrap()];
        let id = "spiffe://zerofn.local/tenant/acme/fn/client";
        let svid = leaf(&platform, "", Some(id), 2020, 2090);
        let accepted = names(&["spiffe"]);
        let mut r = MtlsRegistry::default();
        r.set_platform(
            PlatformTrust::new(bundle.clone(), Arc::new(Svids(Ok(id.to_owned())))).unwrap(),
        );
        let v = r
            .authenticate(
                "acme",
                &accepted,
                std::slice::from_ref(&svid),
                UnixTime::now(),
            )
            .unwrap();
        assert_eq!(
            (v.ca.as_str(), v.spiffe_id.as_deref()),
            ("spiffe", Some(id))
        );
        // The identity CA's rules refuse (revoked): refused, with that reason.
        let mut r = MtlsRegistry::default();
        r.set_platform(
            PlatformTrust::new(bundle, Arc::new(Svids(Err(CertificateRefusal::Revoked)))).unwrap(),
        );
        assert_eq!(
            r.authenticate("acme", &accepted, &[svid], UnixTime::now()),
            Err(CertificateRefusal::Revoked)
        );
        // A certificate of another CA never reaches the SVID rules.
        let other = leaf(&ca("other"), "", Some(id), 2020, 2090);
        assert_eq!(
            r.authenticate("acme", &accepted, &[other], UnixTime::now()),
            Err(CertificateRefusal::Untrusted)
        );
    }

    #[test]
    fn registrations_that_are_not_usable_cas_are_refused_clearly() {
        let good = ca("Good");
        let parsed = TrustedCa::parse("partners", good.pem.as_bytes(), now()).unwrap();
        assert_eq!(parsed.certificates().len(), 1);
        assert_eq!(parsed.certificates()[0].subject, "CN=Good");
        assert_eq!(parsed.pem(), good.pem);
        let again = TrustedCa::parse("partners", parsed.pem().as_bytes(), now()).unwrap();
        assert_eq!(again.certificates(), parsed.certificates());

        let leaf_pem = {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, "leaf");
            p.signed_by(&key, &good.issuer).unwrap().pem()
        };
        let expired_ca = {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, "Old");
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
            p.self_signed(&key).unwrap().pem()
        };
        let key_pem = KeyPair::generate().unwrap().serialize_pem();
        let big = "A".repeat(MAX_CA_PEM_BYTES + 1);
        let many = good.pem.repeat(MAX_CA_CERTS + 1);
        let cases: Vec<(&str, &[u8], &str)> = vec![
            ("partners", b"garbage", "no PEM certificate"),
            ("partners", leaf_pem.as_bytes(), "is not a CA"),
            ("partners", expired_ca.as_bytes(), "expired"),
            ("partners", key_pem.as_bytes(), "private key"),
            ("partners", big.as_bytes(), "larger than"),
            ("partners", many.as_bytes(), "more than the 16"),
            ("spiffe", good.pem.as_bytes(), "platform's own trust bundle"),
            (
                "partners",
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "not an X.509 certificate",
            ),
        ];
        for (name, pem, expected) in cases {
            let e = TrustedCa::parse(name, pem, now()).unwrap_err().to_string();
            assert!(e.contains(expected), "expected `{expected}` in: {e}");
        }
        // The key's PEM body never appears in the message.
        let e = TrustedCa::parse(
            "partners",
            format!("{}{key_pem}", good.pem).as_bytes(),
            now(),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("MI"), "{e}");
    }

    #[test]
    fn distinguished_names_escape_per_rfc_4514() {
        assert_eq!(escape_rfc4514("a,b+c"), r"a\,b\+c");
        assert_eq!(escape_rfc4514(" #x "), r"\ #x\ ");
        assert_eq!(escape_rfc4514("#x"), r"\#x");
        assert_eq!(escape_rfc4514("a\nb"), r"a\0ab");
    }
}
