//! [`CertificateAuthority`]: the trust domain's CA, persisted in a directory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use p256::SecretKey;
use rand_core::OsRng;
use rcgen::{
    BasicConstraints, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256;
use zeroize::Zeroizing;

use crate::error::{excerpt, IdentityError};
use crate::jwt_svid::{self, JwtAnchor, JwtKeys, JwtSvid};
use crate::key_file;
use crate::operator::OperatorName;
use crate::revocation::RevocationList;
use crate::serial::SerialNumber;
use crate::spiffe_id::{SpiffeId, TrustDomain};
use crate::x509_svid::{self, CaAnchor, IssuedCertificate, X509Svid, BACKDATE};

/// File name of the CA private key (PKCS#8 PEM, mode `0600`).
pub const CA_KEY_FILE: &str = "ca.key.pem";
/// File name of the CA certificate (PEM): the X.509 trust bundle.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the JWT-SVID signing key (PKCS#8 PEM, mode `0600`).
pub const JWT_KEY_FILE: &str = "jwt.key.pem";
/// Lifetime of a CA certificate this crate creates: ten years. CA rotation is not
/// implemented; an expired CA is refused at load with a message saying what to do.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// Longest SVID lifetime issued: one day. Workload SVIDs are meant to live minutes.
pub const MAX_SVID_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The self-signed ECDSA P-256 CA of one trust domain, and its JWT-SVID signing key.
///
/// It issues X.509-SVIDs and JWT-SVIDs for workloads of its trust domain and verifies
/// them, consulting its [`RevocationList`]. All methods take `&self` and it is `Send +
/// Sync`: share it behind an `Arc`. Signing is a few hundred microseconds of CPU, so the
/// issuing methods are synchronous.
pub struct CertificateAuthority {
    trust_domain: TrustDomain,
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    subject_raw: Vec<u8>,
    verifying_key: VerifyingKey,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    jwt: JwtKeys,
    revocations: Arc<RevocationList>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain)
            .field("dir", &self.dir)
            .field("not_after", &self.not_after)
            .field("jwt_kid", &self.jwt.kid())
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Load the CA of `trust_domain` from `dir`, creating the directory (mode `0700`), the
    /// keys and the certificate if they are missing.
    ///
    /// Files: [`CA_KEY_FILE`], [`CA_CERT_FILE`], [`JWT_KEY_FILE`]. Key files are created
    /// with mode `0600`, written atomically, and never overwritten; an existing key file
    /// open to group or others is refused. If the CA key exists but its certificate does
    /// not (a crash during first start), a new certificate is made for the same key. A
    /// certificate without its key, a certificate for another trust domain or one that
    /// has expired are errors that say what to do. Blocking file I/O: call it at start-up
    /// or from `spawn_blocking`.
    pub fn load_or_create(
        dir: &Path,
        trust_domain: &TrustDomain,
    ) -> Result<CertificateAuthority, IdentityError> {
        key_file::ensure_dir(dir)?;
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        let jwt_path = dir.join(JWT_KEY_FILE);
        let now = OffsetDateTime::now_utc();

        let key_exists = key_file::exists(&key_path)?;
        let cert_exists = key_file::exists(&cert_path)?;
        if cert_exists && !key_exists {
            return Err(IdentityError::CaIncomplete {
                present: cert_path,
                missing: key_path,
            });
        }
        let ca_key = load_or_create_key(&key_path)?;
        let cert_pem = if cert_exists {
            key_file::read_public(&cert_path)?
        } else {
            let pem = create_ca_certificate(&ca_key, trust_domain, now)?;
            key_file::write_new(&cert_path, pem.as_bytes(), key_file::PUBLIC_MODE)?;
            tracing::info!(
                trust_domain = %trust_domain,
                path = %cert_path.display(),
                "created the identity CA certificate"
            );
            pem
        };
        let jwt_key = load_or_create_key(&jwt_path)?;

        let ca =
            CertificateAuthority::from_parts(dir, trust_domain, &ca_key, cert_pem, jwt_key, now)?;
        Ok(ca)
    }

    fn from_parts(
        dir: &Path,
        trust_domain: &TrustDomain,
        ca_key: &SecretKey,
        cert_pem: String,
        jwt_key: SecretKey,
        now: OffsetDateTime,
    ) -> Result<CertificateAuthority, IdentityError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let invalid = |reason: String| IdentityError::CaCertificateInvalid {
            path: cert_path.clone(),
            reason,
        };
        let der =
            x509_svid::single_certificate_der(&cert_pem).map_err(|e| invalid(e.to_string()))?;
        let cert = x509_svid::parse_certificate(&der).map_err(|e| invalid(e.to_string()))?;
        let verifying_key = VerifyingKey::from(ca_key.public_key());

        let cert_key = p256::PublicKey::from_public_key_der(cert.public_key().raw)
            .map_err(|_| invalid("its public key is not an ECDSA P-256 key".to_owned()))?;
        if VerifyingKey::from(cert_key) != verifying_key {
            return Err(invalid(format!(
                "its public key does not match `{}`; restore the matching pair",
                CA_KEY_FILE
            )));
        }
        if cert.signature_algorithm.algorithm != OID_SIG_ECDSA_WITH_SHA256
            || !x509_svid::signature_verifies(&cert, &verifying_key)
        {
            return Err(invalid("it is not self-signed by the CA key".to_owned()));
        }
        match cert.basic_constraints() {
            Ok(Some(bc)) if bc.value.ca => {}
            _ => {
                return Err(invalid(
                    "it is not a CA certificate (basicConstraints cA)".to_owned(),
                ))
            }
        }
        match cert.key_usage() {
            Ok(Some(ku)) if ku.value.key_cert_sign() => {}
            _ => return Err(invalid("its keyUsage lacks keyCertSign".to_owned())),
        }
        // X509-SVID §3.2: the signing certificate's SPIFFE ID has no path and belongs to the
        // trust domain it issues for.
        let uris: Vec<&str> = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let expected = trust_domain.id();
        if uris != [expected.as_str()] {
            return Err(IdentityError::CaTrustDomainMismatch {
                path: cert_path,
                expected: trust_domain.clone(),
                found: excerpt(&uris.join(", ")),
            });
        }
        let not_before = cert.validity().not_before.to_datetime();
        let not_after = cert.validity().not_after.to_datetime();
        if now > not_after {
            return Err(IdentityError::CaExpired {
                path: cert_path,
                not_after,
            });
        }
        let subject_raw = cert.subject().as_raw().to_vec();

        let key_der = ca_key
            .to_pkcs8_der()
            .map_err(|e| key_error(format!("could not encode the CA key: {e}")))?;
        let key_pair = KeyPair::try_from(key_der.as_bytes())
            .map_err(|e| key_error(format!("the signer refused the CA key: {e}")))?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key_pair).map_err(|e| invalid(e.to_string()))?;

        Ok(CertificateAuthority {
            trust_domain: trust_domain.clone(),
            dir: dir.to_path_buf(),
            issuer,
            cert_pem,
            subject_raw,
            verifying_key,
            not_before,
            not_after,
            jwt: JwtKeys::new(SigningKey::from(jwt_key)),
            revocations: Arc::new(RevocationList::new()),
        })
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The X.509 trust bundle: the CA certificate, PEM. Peers that trust it accept this
    /// trust domain's X.509-SVIDs.
    pub fn trust_bundle_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The JWT bundle: a JWKS (RFC 7517 §5) of the public keys JWT-SVIDs are verified with,
    /// each with `kid` (its RFC 7638 thumbprint) and `use: "jwt-svid"`, as in the SPIFFE
    /// bundle format.
    pub fn jwt_bundle(&self) -> serde_json::Value {
        self.jwt.jwks()
    }

    /// The CA certificate's notAfter.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The revocation list both verifiers consult.
    pub fn revocations(&self) -> &Arc<RevocationList> {
        &self.revocations
    }

    /// Issue an X.509-SVID for `id`, valid for `ttl` from now, with a fresh P-256 key.
    pub fn issue_x509_svid(&self, id: &SpiffeId, ttl: Duration) -> Result<X509Svid, IdentityError> {
        self.issue_x509_svid_at(id, ttl, OffsetDateTime::now_utc())
    }

    pub(crate) fn issue_x509_svid_at(
        &self,
        id: &SpiffeId,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<X509Svid, IdentityError> {
        self.check_issuance(id, ttl, now)?;
        let svid = x509_svid::issue(&self.issuer, id, ttl, now)?;
        tracing::debug!(spiffe_id = %id, serial = %svid.serial(), "issued X509-SVID");
        Ok(svid)
    }

    /// Issue an operator's client certificate: an X.509-SVID for
    /// `spiffe://<trust domain>/operator/<name>` over `public_key_pem` (an ECDSA P-256
    /// SubjectPublicKeyInfo, PEM `PUBLIC KEY`), valid for `ttl` from now. The operator keeps
    /// the private key; this CA never sees it.
    pub fn issue_operator_certificate(
        &self,
        name: &OperatorName,
        public_key_pem: &str,
        ttl: Duration,
    ) -> Result<IssuedCertificate, IdentityError> {
        let now = OffsetDateTime::now_utc();
        let id = name.spiffe_id(&self.trust_domain)?;
        self.check_issuance(&id, ttl, now)?;
        let invalid = |reason: String| IdentityError::PublicKeyInvalid { reason };
        if public_key_pem.len() > 4096 {
            return Err(invalid("it is larger than 4096 bytes".to_owned()));
        }
        // p256 first: only a P-256 key is accepted, whatever rcgen could sign for.
        let key = p256::PublicKey::from_public_key_pem(public_key_pem.trim())
            .map_err(|e| invalid(format!("not a P-256 public key ({e})")))?;
        let der = key
            .to_public_key_der()
            .map_err(|e| invalid(format!("cannot encode it ({e})")))?;
        let spki = rcgen::SubjectPublicKeyInfo::from_der(der.as_bytes())
            .map_err(|e| invalid(e.to_string()))?;
        let cert = x509_svid::issue_for(&self.issuer, &id, &[], &spki, ttl, now)?;
        tracing::debug!(spiffe_id = %id, serial = %cert.serial(), "issued operator certificate");
        Ok(cert)
    }

    /// Issue a TLS server certificate with a fresh key: an X.509-SVID for `id` whose
    /// subjectAltName also lists `dns_names` and `ips`, so that clients that check host
    /// names (WebPKI) accept it when they trust this CA.
    pub fn issue_tls_server_certificate(
        &self,
        id: &SpiffeId,
        dns_names: &[&str],
        ips: &[std::net::IpAddr],
        ttl: Duration,
    ) -> Result<X509Svid, IdentityError> {
        let now = OffsetDateTime::now_utc();
        self.check_issuance(id, ttl, now)?;
        if dns_names.is_empty() && ips.is_empty() {
            return Err(IdentityError::ServerNamesMissing);
        }
        let mut names = Vec::new();
        for dns in dns_names {
            let name =
                (*dns)
                    .try_into()
                    .map_err(|e: rcgen::Error| IdentityError::CertificateSigning {
                        reason: e.to_string(),
                    })?;
            names.push(SanType::DnsName(name));
        }
        names.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        x509_svid::issue_with_names(&self.issuer, id, &names, ttl, now)
    }

    /// Issue a JWT-SVID for `id` and `audience`, valid for `ttl` (whole seconds) from now.
    pub fn issue_jwt_svid(
        &self,
        id: &SpiffeId,
        audience: &[&str],
        ttl: Duration,
    ) -> Result<JwtSvid, IdentityError> {
        let now = OffsetDateTime::now_utc();
        self.check_issuance(id, ttl, now)?;
        let svid = jwt_svid::issue(&self.jwt, id, audience, ttl, now)?;
        tracing::debug!(spiffe_id = %id, serial = %svid.serial(), "issued JWT-SVID");
        Ok(svid)
    }

    fn check_issuance(
        &self,
        id: &SpiffeId,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<(), IdentityError> {
        if !id.is_member_of(&self.trust_domain) {
            return Err(IdentityError::ForeignTrustDomain {
                id: id.clone(),
                trust_domain: self.trust_domain.clone(),
            });
        }
        if !id.is_workload() {
            return Err(IdentityError::NotAWorkloadId { id: id.clone() });
        }
        // An SVID never outlives the CA that signed it.
        let max = MAX_SVID_TTL.min(x509_svid::remaining(self.not_after, now));
        if ttl.as_secs() == 0 || ttl > max {
            return Err(IdentityError::TtlInvalid {
                requested_secs: ttl.as_secs(),
                max_secs: max.as_secs(),
            });
        }
        Ok(())
    }

    /// Verify that `cert_pem` is one X.509-SVID leaf issued by this CA (chain, signature,
    /// validity at `now`, X509-SVID leaf rules, exactly one URI SAN naming a workload of
    /// this trust domain) and not revoked. Returns its SPIFFE ID.
    pub fn verify_x509_svid(
        &self,
        cert_pem: &str,
        now: OffsetDateTime,
    ) -> Result<SpiffeId, IdentityError> {
        x509_svid::verify(
            &CaAnchor {
                trust_domain: &self.trust_domain,
                subject_raw: &self.subject_raw,
                verifying_key: &self.verifying_key,
                not_before: self.not_before,
                not_after: self.not_after,
                revocations: &self.revocations,
            },
            cert_pem,
            now,
        )
    }

    /// [`verify_x509_svid`](Self::verify_x509_svid) for a DER certificate, as a TLS peer
    /// presents it; returns its serial number too.
    pub fn verify_x509_svid_der(
        &self,
        cert_der: &[u8],
        now: OffsetDateTime,
    ) -> Result<(SpiffeId, SerialNumber), IdentityError> {
        x509_svid::verify_der(
            &CaAnchor {
                trust_domain: &self.trust_domain,
                subject_raw: &self.subject_raw,
                verifying_key: &self.verifying_key,
                not_before: self.not_before,
                not_after: self.not_after,
                revocations: &self.revocations,
            },
            cert_der,
            now,
        )
    }

    /// Verify a JWT-SVID: ES256 only (`none`, `HS*` and every other `alg` refused before a
    /// key is chosen), a `kid` of this CA's JWT bundle, a valid signature, `sub` a workload
    /// of this trust domain, `exp` after `now`, `expected_audience` among `aud`, and a
    /// `jti` that is not revoked. Returns the `sub`.
    pub fn verify_jwt_svid(
        &self,
        token: &str,
        expected_audience: &str,
        now: OffsetDateTime,
    ) -> Result<SpiffeId, IdentityError> {
        jwt_svid::verify(
            &JwtAnchor {
                trust_domain: &self.trust_domain,
                keys: self.jwt.public(),
                revocations: &self.revocations,
            },
            token,
            expected_audience,
            now,
        )
    }
}

fn key_error(reason: String) -> IdentityError {
    IdentityError::KeyGeneration { reason }
}

/// Read the P-256 key at `path`, or create it there if the file does not exist.
fn load_or_create_key(path: &Path) -> Result<SecretKey, IdentityError> {
    if key_file::exists(path)? {
        let pem = key_file::read_private(path)?;
        return SecretKey::from_pkcs8_pem(&pem).map_err(|e| IdentityError::CaKeyInvalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        });
    }
    let key = SecretKey::random(&mut OsRng);
    let pem: Zeroizing<String> = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| key_error(format!("could not encode a new key: {e}")))?;
    key_file::write_new(path, pem.as_bytes(), key_file::PRIVATE_MODE)?;
    tracing::info!(path = %path.display(), "created a private key");
    Ok(key)
}

/// A self-signed CA certificate for `trust_domain` (X509-SVID §3.2 and §4).
fn create_ca_certificate(
    key: &SecretKey,
    trust_domain: &TrustDomain,
    now: OffsetDateTime,
) -> Result<String, IdentityError> {
    let signing = |e: rcgen::Error| IdentityError::CertificateSigning {
        reason: e.to_string(),
    };
    let key_der = key
        .to_pkcs8_der()
        .map_err(|e| key_error(format!("could not encode the CA key: {e}")))?;
    let key_pair = KeyPair::try_from(key_der.as_bytes()).map_err(signing)?;
    let (_, serial) = SerialNumber::random();
    let now = x509_svid::whole_seconds(now);

    let mut params = rcgen::CertificateParams::default();
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "zerofn");
    name.push(DnType::CommonName, "zerofn identity CA");
    params.distinguished_name = name;
    // §3.2: the CA is an SVID of the trust domain itself (no path).
    params.subject_alt_names = vec![SanType::URI(
        trust_domain.id().as_str().try_into().map_err(signing)?,
    )];
    // pathLenConstraint 0: this CA signs leaves only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key_pair).map_err(signing)?;
    Ok(cert.pem())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    use rcgen::ExtendedKeyUsagePurpose;
    use x509_parser::prelude::{FromDer, X509Certificate};

    const TTL: Duration = Duration::from_secs(300);
    const AUD: &str = "spiffe://zerofn.local/gateway";

    fn new_ca() -> (tempfile::TempDir, CertificateAuthority) {
        let dir = tempfile::tempdir().unwrap();
        let ca =
            CertificateAuthority::load_or_create(&dir.path().join("ca"), &TrustDomain::default())
                .unwrap();
        (dir, ca)
    }

    fn hello() -> SpiffeId {
        SpiffeId::for_function(&TrustDomain::default(), "acme", "hello").unwrap()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    // ---- CA persistence ----

    #[test]
    fn ca_is_persisted_with_private_key_modes_and_reloads_the_same() {
        let (dir, ca) = new_ca();
        let ca_dir = dir.path().join("ca");
        assert_eq!(mode(&ca_dir), 0o700);
        assert_eq!(mode(&ca_dir.join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&ca_dir.join(JWT_KEY_FILE)), 0o600);
        assert_eq!(mode(&ca_dir.join(CA_CERT_FILE)), 0o644);
        let key_before = std::fs::read(ca_dir.join(CA_KEY_FILE)).unwrap();
        let svid = ca.issue_x509_svid(&hello(), TTL).unwrap();
        let jwt = ca.issue_jwt_svid(&hello(), &[AUD], TTL).unwrap();

        let again = CertificateAuthority::load_or_create(&ca_dir, &TrustDomain::default()).unwrap();
        assert_eq!(again.trust_bundle_pem(), ca.trust_bundle_pem());
        assert_eq!(again.jwt_bundle(), ca.jwt_bundle());
        assert_eq!(
            std::fs::read(ca_dir.join(CA_KEY_FILE)).unwrap(),
            key_before,
            "key rewritten"
        );
        // What the first instance issued, the reloaded one verifies.
        assert_eq!(
            again.verify_x509_svid(svid.cert_pem(), now()).unwrap(),
            hello()
        );
        assert_eq!(
            again.verify_jwt_svid(jwt.token(), AUD, now()).unwrap(),
            hello()
        );
    }

    #[test]
    fn ca_certificate_follows_x509_svid_for_signing_certificates() {
        let (_dir, ca) = new_ca();
        let der = x509_svid::single_certificate_der(ca.trust_bundle_pem()).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, Some(0));
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.key_cert_sign() && !ku.value.digital_signature());
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::URI("spiffe://zerofn.local")]
        );
        assert_eq!(
            cert.issuer().as_raw(),
            cert.subject().as_raw(),
            "self-signed"
        );
    }

    #[test]
    fn load_refuses_a_key_open_to_others() {
        let (dir, _ca) = new_ca();
        let key = dir.path().join("ca").join(CA_KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err =
            CertificateAuthority::load_or_create(&dir.path().join("ca"), &TrustDomain::default())
                .unwrap_err();
        assert!(
            matches!(err, IdentityError::CaKeyPermissions { mode: 0o640, .. }),
            "{err}"
        );
    }

    #[test]
    fn load_refuses_a_certificate_without_its_key() {
        let (dir, _ca) = new_ca();
        let ca_dir = dir.path().join("ca");
        std::fs::remove_file(ca_dir.join(CA_KEY_FILE)).unwrap();
        let err =
            CertificateAuthority::load_or_create(&ca_dir, &TrustDomain::default()).unwrap_err();
        assert!(matches!(err, IdentityError::CaIncomplete { .. }), "{err}");
        assert!(
            !ca_dir.join(CA_KEY_FILE).exists(),
            "a new key was made beside the old certificate"
        );
    }

    #[test]
    fn load_recreates_a_lost_certificate_for_the_same_key() {
        let (dir, ca) = new_ca();
        let ca_dir = dir.path().join("ca");
        let svid = ca.issue_x509_svid(&hello(), TTL).unwrap();
        std::fs::remove_file(ca_dir.join(CA_CERT_FILE)).unwrap();
        let again = CertificateAuthority::load_or_create(&ca_dir, &TrustDomain::default()).unwrap();
        assert_ne!(again.trust_bundle_pem(), ca.trust_bundle_pem());
        assert_eq!(
            again.verify_x509_svid(svid.cert_pem(), now()).unwrap(),
            hello()
        );
    }

    #[test]
    fn load_refuses_another_trust_domain_and_a_mismatched_pair() {
        let (dir, _ca) = new_ca();
        let ca_dir = dir.path().join("ca");
        let other = TrustDomain::new("other.example").unwrap();
        let err = CertificateAuthority::load_or_create(&ca_dir, &other).unwrap_err();
        assert!(
            matches!(err, IdentityError::CaTrustDomainMismatch { .. }),
            "{err}"
        );

        let (dir2, _ca2) = new_ca();
        std::fs::copy(
            dir2.path().join("ca").join(CA_CERT_FILE),
            ca_dir.join(CA_CERT_FILE),
        )
        .unwrap();
        let err =
            CertificateAuthority::load_or_create(&ca_dir, &TrustDomain::default()).unwrap_err();
        assert!(
            matches!(err, IdentityError::CaCertificateInvalid { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn load_refuses_a_key_that_is_not_pkcs8_p256() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join(CA_KEY_FILE);
        key_file::write_new(
            &key,
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            0o600,
        )
        .unwrap();
        let err =
            CertificateAuthority::load_or_create(dir.path(), &TrustDomain::default()).unwrap_err();
        assert!(matches!(err, IdentityError::CaKeyInvalid { .. }), "{err}");
        assert!(!err.to_string().contains("AAAA"));
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let (_dir, ca) = new_ca();
        let svid = ca.issue_x509_svid(&hello(), TTL).unwrap();
        let jwt = ca.issue_jwt_svid(&hello(), &[AUD], TTL).unwrap();
        let printed = format!("{ca:?} {svid:?} {jwt:?}");
        assert!(!printed.contains("PRIVATE KEY"), "{printed}");
        assert!(!printed.contains(jwt.token()), "{printed}");
        assert!(!printed.contains(&svid.key_pem()[40..80]), "{printed}");
        assert!(printed.contains("(redacted)"));
    }

    // ---- X.509-SVID issuance ----

    #[test]
    fn issued_x509_svid_has_the_id_ttl_and_x509_svid_shape() {
        let (_dir, ca) = new_ca();
        let before = x509_svid::whole_seconds(now());
        let svid = ca.issue_x509_svid(&hello(), TTL).unwrap();
        assert_eq!(svid.spiffe_id(), &hello());
        assert_eq!(
            svid.not_after() - svid.issued_at(),
            time::Duration::seconds(300)
        );
        assert!(svid.issued_at() >= before);
        assert!(svid.expires_in() <= TTL && svid.expires_in() > TTL - Duration::from_secs(5));
        assert!(!svid.should_rotate(svid.issued_at() + time::Duration::seconds(149)));
        assert!(svid.should_rotate(svid.issued_at() + time::Duration::seconds(150)));

        let (_, cert) = X509Certificate::from_der(svid.cert_der()).unwrap();
        assert_eq!(cert.validity().not_after.to_datetime(), svid.not_after());
        assert_eq!(
            cert.validity().not_before.to_datetime(),
            svid.issued_at() - time::Duration::seconds(30),
            "notBefore is backdated 30 s"
        );
        assert_eq!(
            SerialNumber::from_be_bytes(cert.raw_serial()),
            *svid.serial()
        );
        assert!(
            svid.serial_hex().len() >= 30,
            "128-bit serial: {}",
            svid.serial_hex()
        );
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            vec![GeneralName::URI(hello().as_str())]
        );
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(!bc.value.ca);
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.digital_signature());
        assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign());
        let eku = cert.extended_key_usage().unwrap().unwrap();
        assert!(eku.value.server_auth && eku.value.client_auth);
        // The key is a P-256 key matching the certificate.
        let key = SecretKey::from_pkcs8_pem(svid.key_pem()).unwrap();
        let cert_key = p256::PublicKey::from_public_key_der(cert.public_key().raw).unwrap();
        assert_eq!(key.public_key(), cert_key);
        assert_eq!(
            SecretKey::from_pkcs8_der(svid.key_pkcs8_der()).unwrap(),
            key
        );

        assert_eq!(
            ca.verify_x509_svid(svid.cert_pem(), now()).unwrap(),
            hello()
        );
    }

    #[test]
    fn every_svid_has_a_fresh_key_and_serial() {
        let (_dir, ca) = new_ca();
        let a = ca.issue_x509_svid(&hello(), TTL).unwrap();
        let b = ca.issue_x509_svid(&hello(), TTL).unwrap();
        assert_ne!(a.serial(), b.serial());
        assert_ne!(a.key_pem(), b.key_pem());
    }

    #[test]
    fn issuance_refuses_foreign_root_ids_and_bad_ttls() {
        let (_dir, ca) = new_ca();
        let foreign = SpiffeId::parse("spiffe://other.example/tenant/acme/fn/hello").unwrap();
        let root = TrustDomain::default().id();
        for (id, ttl, why) in [
            (&foreign, TTL, "foreign trust domain"),
            (&root, TTL, "trust domain ID"),
            (&hello(), Duration::ZERO, "zero ttl"),
            (&hello(), Duration::from_millis(999), "sub-second ttl"),
            (
                &hello(),
                MAX_SVID_TTL + Duration::from_secs(1),
                "ttl above the maximum",
            ),
        ] {
            assert!(ca.issue_x509_svid(id, ttl).is_err(), "x509: {why}");
            assert!(ca.issue_jwt_svid(id, &[AUD], ttl).is_err(), "jwt: {why}");
        }
        assert!(ca.issue_x509_svid(&hello(), MAX_SVID_TTL).is_ok());
    }

    // ---- X.509-SVID verification ----

    #[test]
    fn expired_and_not_yet_valid_svids_are_refused() {
        let (_dir, ca) = new_ca();
        let svid = ca
            .issue_x509_svid(&hello(), Duration::from_secs(60))
            .unwrap();
        let after = svid.not_after() + time::Duration::seconds(1);
        let err = ca.verify_x509_svid(svid.cert_pem(), after).unwrap_err();
        assert!(
            matches!(err, IdentityError::CertificateNotValidNow { .. }),
            "{err}"
        );
        // notAfter itself is still valid (RFC 5280 §4.1.2.5: inclusive).
        assert!(ca
            .verify_x509_svid(svid.cert_pem(), svid.not_after())
            .is_ok());
        let early = svid.issued_at() - time::Duration::seconds(31);
        let err = ca.verify_x509_svid(svid.cert_pem(), early).unwrap_err();
        assert!(
            matches!(err, IdentityError::CertificateNotValidNow { .. }),
            "{err}"
        );
        // Within the 30 s backdating it is valid.
        assert!(ca
            .verify_x509_svid(
                svid.cert_pem(),
                svid.issued_at() - time::Duration::seconds(29)
            )
            .is_ok());
    }

    #[test]
    fn revoked_x509_svid_is_refused_at_once() {
        let (_dir, ca) = new_ca();
        let svid = ca.issue_x509_svid(&hello(), TTL).unwrap();
        let other = ca.issue_x509_svid(&hello(), TTL).unwrap();
        assert!(ca.verify_x509_svid(svid.cert_pem(), now()).is_ok());
        let shared = Arc::clone(ca.revocations());
        assert!(shared.revoke(svid.serial().clone()));
        let err = ca.verify_x509_svid(svid.cert_pem(), now()).unwrap_err();
        assert!(
            matches!(&err, IdentityError::SvidRevoked { serial, .. } if serial == svid.serial()),
            "{err}"
        );
        assert!(
            ca.verify_x509_svid(other.cert_pem(), now()).is_ok(),
            "only that serial"
        );
        // The caller persists the list; a reloaded CA fed it refuses the SVID too.
        let reloaded = RevocationList::new();
        reloaded.load_revoked(ca.revocations().revoked_serials());
        assert!(reloaded.is_revoked(svid.serial()));
    }

    #[test]
    fn svid_of_another_ca_is_refused() {
        let (_dir, ca) = new_ca();
        let (_dir2, impostor) = new_ca();
        let svid = impostor.issue_x509_svid(&hello(), TTL).unwrap();
        let err = ca.verify_x509_svid(svid.cert_pem(), now()).unwrap_err();
        assert!(
            matches!(err, IdentityError::CertificateUntrusted { reason, .. } if reason.contains("signature")),
            "{err}"
        );
        // Another trust domain's CA, too.
        let dir3 = tempfile::tempdir().unwrap();
        let other_td = TrustDomain::new("other.example").unwrap();
        let other = CertificateAuthority::load_or_create(dir3.path(), &other_td).unwrap();
        let id = SpiffeId::for_function(&other_td, "acme", "hello").unwrap();
        let svid = other.issue_x509_svid(&id, TTL).unwrap();
        assert!(ca.verify_x509_svid(svid.cert_pem(), now()).is_err());
    }

    /// Leaves signed with this CA's real key that break one X509-SVID rule each.
    #[test]
    fn forged_leaves_signed_by_the_ca_are_refused() {
        let (_dir, ca) = new_ca();
        let uri = |s: &str| SanType::URI(s.try_into().unwrap());
        type Tweak = Box<dyn Fn(&mut rcgen::CertificateParams)>;
        let cases: Vec<(&str, Tweak)> = vec![
            (
                "two URI SANs",
                Box::new(move |p| {
                    p.subject_alt_names
                        .push(uri("spiffe://zerofn.local/tenant/acme/fn/other"))
                }),
            ),
            (
                "a second, non-SPIFFE URI SAN",
                Box::new(move |p| p.subject_alt_names.push(uri("https://example.org/"))),
            ),
            (
                "no URI SAN",
                Box::new(|p| {
                    p.subject_alt_names =
                        vec![SanType::DnsName("hello.example".try_into().unwrap())]
                }),
            ),
            ("no SAN at all", Box::new(|p| p.subject_alt_names.clear())),
            (
                "URI SAN not a SPIFFE ID",
                Box::new(move |p| {
                    p.subject_alt_names = vec![uri("https://zerofn.local/tenant/acme")]
                }),
            ),
            (
                "SPIFFE ID with a trailing slash",
                Box::new(move |p| p.subject_alt_names = vec![uri("spiffe://zerofn.local/a/")]),
            ),
            (
                "SPIFFE ID of another trust domain",
                Box::new(move |p| p.subject_alt_names = vec![uri("spiffe://other.example/a")]),
            ),
            (
                "SPIFFE ID without a path",
                Box::new(move |p| p.subject_alt_names = vec![uri("spiffe://zerofn.local")]),
            ),
            (
                "a CA certificate",
                Box::new(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)),
            ),
            ("no basicConstraints", Box::new(|p| p.is_ca = IsCa::NoCa)),
            (
                "keyCertSign set",
                Box::new(|p| p.key_usages.push(KeyUsagePurpose::KeyCertSign)),
            ),
            (
                "cRLSign set",
                Box::new(|p| p.key_usages.push(KeyUsagePurpose::CrlSign)),
            ),
            (
                "no digitalSignature",
                Box::new(|p| p.key_usages = vec![KeyUsagePurpose::KeyAgreement]),
            ),
            ("no keyUsage", Box::new(|p| p.key_usages.clear())),
            (
                "EKU without clientAuth",
                Box::new(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]),
            ),
            (
                "unknown critical extension",
                Box::new(|p| {
                    let mut ext = rcgen::CustomExtension::from_oid_content(
                        &[1, 3, 6, 1, 4, 1, 99999, 1],
                        vec![0x05, 0x00],
                    );
                    ext.set_criticality(true);
                    p.custom_extensions.push(ext);
                }),
            ),
        ];
        for (why, tweak) in cases {
            let pem = forge_leaf(&ca, |p| tweak(p));
            let outcome = ca.verify_x509_svid(&pem, now());
            assert!(outcome.is_err(), "{why}: accepted as {outcome:?}");
        }
        // The unmodified template is accepted, so each refusal above is the tweak's doing.
        assert_eq!(
            ca.verify_x509_svid(&forge_leaf(&ca, |_| {}), now())
                .unwrap(),
            hello()
        );
    }

    #[test]
    fn two_uri_sans_give_a_specific_error() {
        let (_dir, ca) = new_ca();
        let pem = forge_leaf(&ca, |p| {
            p.subject_alt_names
                .push(SanType::URI("spiffe://zerofn.local/x".try_into().unwrap()))
        });
        let err = ca.verify_x509_svid(&pem, now()).unwrap_err();
        assert!(
            matches!(err, IdentityError::CertificateNotLeafSvid { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("2 URI SANs"), "{err}");
    }

    /// A leaf for `hello()` signed by `ca`'s key, from the same template as real issuance,
    /// changed by `tweak`.
    fn forge_leaf(
        ca: &CertificateAuthority,
        tweak: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> String {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let now = x509_svid::whole_seconds(now());
        let mut p = rcgen::CertificateParams::default();
        p.not_before = now - BACKDATE;
        p.not_after = now + TTL;
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&SerialNumber::random().1));
        p.distinguished_name = x509_svid::leaf_subject();
        p.subject_alt_names = vec![SanType::URI(hello().as_str().try_into().unwrap())];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        tweak(&mut p);
        p.signed_by(&key, &ca.issuer).unwrap().pem()
    }

    #[test]
    fn malformed_certificate_input_is_refused() {
        let (_dir, ca) = new_ca();
        let svid = ca.issue_x509_svid(&hello(), TTL).unwrap();
        let two = format!("{}{}", svid.cert_pem(), ca.trust_bundle_pem());
        let huge = "A".repeat(20_000);
        for (input, why) in [
            ("", "empty"),
            ("not pem", "not PEM"),
            (two.as_str(), "two certificates"),
            (svid.key_pem(), "a private key"),
            (
                "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                "bad base64",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
                "not a certificate",
            ),
            ("-----BEGIN CERTIFICATE-----\nMII", "truncated"),
            (huge.as_str(), "oversized"),
        ] {
            let err = ca.verify_x509_svid(input, now()).unwrap_err();
            assert!(
                matches!(err, IdentityError::CertificateMalformed { .. }),
                "{why}: {err}"
            );
            assert!(
                !err.to_string().contains(&svid.key_pem()[40..80]),
                "{why}: key material in {err}"
            );
        }
        // The CA certificate itself chains to the CA but is no leaf.
        let err = ca
            .verify_x509_svid(ca.trust_bundle_pem(), now())
            .unwrap_err();
        assert!(
            matches!(err, IdentityError::CertificateNotLeafSvid { .. }),
            "{err}"
        );
    }

    #[test]
    fn tampered_certificate_is_refused() {
        let (_dir, ca) = new_ca();
        let svid = ca.issue_x509_svid(&hello(), TTL).unwrap();
        let mut der = svid.cert_der().to_vec();
        // Flip one byte inside the SPIFFE ID in the TBSCertificate.
        let at = der.windows(5).position(|w| w == b"hello").unwrap();
        der[at] = b'j';
        let pem = pem_of(&der);
        let err = ca.verify_x509_svid(&pem, now()).unwrap_err();
        assert!(
            matches!(err, IdentityError::CertificateUntrusted { .. }),
            "{err}"
        );
    }

    fn pem_of(der: &[u8]) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    proptest::proptest! {
        #[test]
        fn verify_x509_svid_never_panics(input in proptest::prelude::any::<String>()) {
            let (_dir, ca) = CA.with(|ca| ca.clone());
            let _ = ca.verify_x509_svid(&input, now());
            let _ = ca.verify_x509_svid(&format!("-----BEGIN CERTIFICATE-----\n{input}\n-----END CERTIFICATE-----\n"), now());
        }
    }

    thread_local! {
        static CA: (Arc<tempfile::TempDir>, Arc<CertificateAuthority>) = {
            let (dir, ca) = new_ca();
            (Arc::new(dir), Arc::new(ca))
        };
    }

    // ---- JWT-SVID ----

    fn decode_part(token: &str, index: usize) -> serde_json::Value {
        let part = token.split('.').nth(index).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    /// `header.claims.signature` signed with the CA's real JWT key.
    fn sign_jwt(
        ca: &CertificateAuthority,
        header: &serde_json::Value,
        claims: &serde_json::Value,
    ) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = ca.jwt.sign_for_test(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    fn hs256(header: &serde_json::Value, claims: &serde_json::Value, secret: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    fn good_claims(ca: &CertificateAuthority) -> (serde_json::Value, serde_json::Value) {
        let jwt = ca.issue_jwt_svid(&hello(), &[AUD], TTL).unwrap();
        (decode_part(jwt.token(), 0), decode_part(jwt.token(), 1))
    }

    #[test]
    fn issued_jwt_svid_has_the_jwt_svid_shape() {
        let (_dir, ca) = new_ca();
        let jwt = ca.issue_jwt_svid(&hello(), &[AUD], TTL).unwrap();
        let header = decode_part(jwt.token(), 0);
        let kid = ca.jwt_bundle()["keys"][0]["kid"].clone();
        assert_eq!(
            header,
            serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": kid})
        );
        let claims = decode_part(jwt.token(), 1);
        assert_eq!(claims["sub"], hello().as_str());
        assert_eq!(claims["aud"], serde_json::json!([AUD]));
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            300
        );
        assert_eq!(claims["jti"], jwt.serial_hex());
        assert_eq!(
            jwt.expires_at() - jwt.issued_at(),
            time::Duration::seconds(300)
        );
        assert_eq!(jwt.audience(), [AUD.to_owned()]);
        assert_eq!(
            ca.verify_jwt_svid(jwt.token(), AUD, now()).unwrap(),
            hello()
        );
        // Any one of several audiences matches.
        let multi = ca.issue_jwt_svid(&hello(), &["a", AUD], TTL).unwrap();
        assert_eq!(
            ca.verify_jwt_svid(multi.token(), "a", now()).unwrap(),
            hello()
        );
    }

    #[test]
    fn jwt_issuance_refuses_bad_audiences() {
        let (_dir, ca) = new_ca();
        let long = "a".repeat(300);
        let many: Vec<&str> = std::iter::repeat_n("a", 17).collect();
        for (audience, why) in [
            (vec![], "empty"),
            (vec![""], "empty value"),
            (vec![long.as_str()], "too long"),
            (vec!["a\nb"], "control character"),
            (many, "too many"),
        ] {
            let err = ca.issue_jwt_svid(&hello(), &audience, TTL).unwrap_err();
            assert!(
                matches!(err, IdentityError::AudienceInvalid { .. }),
                "{why}: {err}"
            );
        }
    }

    #[test]
    fn jwt_refusals() {
        let (_dir, ca) = new_ca();
        let (header, claims) = good_claims(&ca);
        let with = |mut v: serde_json::Value, key: &str, value: serde_json::Value| {
            v[key] = value;
            v
        };
        let without = |mut v: serde_json::Value, key: &str| {
            v.as_object_mut().unwrap().remove(key);
            v
        };
        let now_s = now().unix_timestamp();
        let genuine = sign_jwt(&ca, &header, &claims);
        assert_eq!(ca.verify_jwt_svid(&genuine, AUD, now()).unwrap(), hello());

        let our_public_pem = {
            use p256::pkcs8::EncodePublicKey;
            let jwk = &ca.jwt_bundle()["keys"][0];
            let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
            let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
            let point = p256::EncodedPoint::from_affine_coordinates(
                &<[u8; 32]>::try_from(x.clone()).unwrap().into(),
                &<[u8; 32]>::try_from(y.clone()).unwrap().into(),
                false,
            );
            let public = p256::PublicKey::from_sec1_bytes(point.as_bytes()).unwrap();
            (
                public.to_public_key_pem(LineEnding::LF).unwrap(),
                point.as_bytes().to_vec(),
                [x, y].concat(),
            )
        };
        let jwtio_rsa_public =
            zerofn_testkit::testdata::read("jwt/jsonwebtoken-rs/rsa/public_jwtio.pem");
        let hs_header = with(header.clone(), "alg", "HS256".into());
        let tampered = {
            let forged = with(
                claims.clone(),
                "sub",
                "spiffe://zerofn.local/tenant/acme/fn/admin".into(),
            );
            let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
            parts[1] = URL_SAFE_NO_PAD.encode(forged.to_string());
            parts.join(".")
        };
        let unsigned = |alg: &str| {
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(with(header.clone(), "alg", alg.into()).to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            )
        };
        let null_signature = {
            let mut parts: Vec<&str> = genuine.split('.').collect();
            parts[2] = "";
            parts.join(".")
        };

        for (token, audience, why) in [
            (
                genuine.clone(),
                "spiffe://zerofn.local/other",
                "wrong audience",
            ),
            (genuine.clone(), "", "empty expected audience"),
            (genuine.clone(), &AUD[..AUD.len() - 1], "audience prefix"),
            (
                sign_jwt(
                    &ca,
                    &header,
                    &with(claims.clone(), "exp", (now_s - 1).into()),
                ),
                AUD,
                "expired",
            ),
            (
                sign_jwt(&ca, &header, &with(claims.clone(), "exp", now_s.into())),
                AUD,
                "expires this second",
            ),
            (
                sign_jwt(&ca, &header, &without(claims.clone(), "exp")),
                AUD,
                "no exp",
            ),
            (
                sign_jwt(
                    &ca,
                    &header,
                    &with(claims.clone(), "exp", "9999999999".into()),
                ),
                AUD,
                "exp as string",
            ),
            (
                sign_jwt(&ca, &header, &with(claims.clone(), "exp", 1.0e10.into())),
                AUD,
                "exp as float",
            ),
            (
                sign_jwt(&ca, &header, &without(claims.clone(), "aud")),
                AUD,
                "no aud",
            ),
            (
                sign_jwt(
                    &ca,
                    &header,
                    &with(claims.clone(), "aud", serde_json::json!([])),
                ),
                AUD,
                "empty aud",
            ),
            (
                sign_jwt(&ca, &header, &with(claims.clone(), "aud", 7.into())),
                AUD,
                "aud number",
            ),
            (
                sign_jwt(
                    &ca,
                    &header,
                    &with(claims.clone(), "iat", (now_s + 3600).into()),
                ),
                AUD,
                "iat in the future",
            ),
            (
                sign_jwt(
                    &ca,
                    &header,
                    &with(
                        claims.clone(),
                        "sub",
                        "spiffe://other.example/tenant/acme/fn/hello".into(),
                    ),
                ),
                AUD,
                "foreign trust domain",
            ),
            (
                sign_jwt(
                    &ca,
                    &header,
                    &with(claims.clone(), "sub", "spiffe://zerofn.local".into()),
                ),
                AUD,
                "trust domain as subject",
            ),
            (
                sign_jwt(
                    &ca,
                    &header,
                    &with(claims.clone(), "sub", "spiffe://zerofn.local/a/../b".into()),
                ),
                AUD,
                "invalid SPIFFE ID",
            ),
            (
                sign_jwt(&ca, &header, &without(claims.clone(), "sub")),
                AUD,
                "no sub",
            ),
            (
                sign_jwt(&ca, &header, &without(claims.clone(), "jti")),
                AUD,
                "no jti",
            ),
            (
                sign_jwt(&ca, &with(header.clone(), "kid", "other".into()), &claims),
                AUD,
                "unknown kid",
            ),
            (
                sign_jwt(
                    &ca,
                    &with(header.clone(), "jwk", serde_json::json!({"kty": "EC"})),
                    &claims,
                ),
                AUD,
                "embedded jwk",
            ),
            (unsigned("none"), AUD, "alg none"),
            (unsigned("None"), AUD, "alg None"),
            (unsigned("NONE"), AUD, "alg NONE"),
            (unsigned("nOnE"), AUD, "alg nOnE"),
            (null_signature, AUD, "null signature (CVE-2020-28042)"),
            (
                hs256(&hs_header, &claims, our_public_pem.0.as_bytes()),
                AUD,
                "HS256 keyed with our public key PEM",
            ),
            (
                hs256(&hs_header, &claims, &our_public_pem.1),
                AUD,
                "HS256 keyed with our SEC1 point",
            ),
            (
                hs256(&hs_header, &claims, &our_public_pem.2),
                AUD,
                "HS256 keyed with our x||y",
            ),
            (
                hs256(&hs_header, &claims, &jwtio_rsa_public),
                AUD,
                "HS256 keyed with the jwt.io RSA public key",
            ),
            (
                hs256(
                    &with(header.clone(), "alg", "HS512".into()),
                    &claims,
                    our_public_pem.0.as_bytes(),
                ),
                AUD,
                "HS512",
            ),
            (tampered, AUD, "tampered payload"),
            (format!("{genuine}."), AUD, "extra part"),
            (
                genuine.rsplit_once('.').unwrap().0.to_owned(),
                AUD,
                "two parts",
            ),
            (format!(" {genuine}"), AUD, "leading space"),
        ] {
            let outcome = ca.verify_jwt_svid(&token, audience, now());
            assert!(outcome.is_err(), "{why}: accepted as {outcome:?}");
            let message = outcome.unwrap_err().to_string();
            assert!(!message.contains(&token), "{why}: token in message");
        }
    }

    #[test]
    fn jwt_refusal_reasons() {
        let (_dir, ca) = new_ca();
        let (header, claims) = good_claims(&ca);
        let jwt = ca.issue_jwt_svid(&hello(), &[AUD], TTL).unwrap();
        let hs = hs256(
            &serde_json::json!({"alg": "HS256", "kid": header["kid"]}),
            &claims,
            b"secret",
        );
        assert!(matches!(
            ca.verify_jwt_svid(&hs, AUD, now()),
            Err(IdentityError::JwtAlgorithmRefused { .. })
        ));
        assert!(matches!(
            ca.verify_jwt_svid(jwt.token(), "x", now()),
            Err(IdentityError::JwtAudienceMismatch { .. })
        ));
        let later = jwt.expires_at();
        assert!(matches!(
            ca.verify_jwt_svid(jwt.token(), AUD, later),
            Err(IdentityError::JwtExpired { .. })
        ));
        assert!(ca
            .verify_jwt_svid(jwt.token(), AUD, later - time::Duration::seconds(1))
            .is_ok());
    }

    #[test]
    fn revoked_jwt_svid_is_refused_at_once() {
        let (_dir, ca) = new_ca();
        let jwt = ca.issue_jwt_svid(&hello(), &[AUD], TTL).unwrap();
        let other = ca.issue_jwt_svid(&hello(), &[AUD], TTL).unwrap();
        assert!(ca.verify_jwt_svid(jwt.token(), AUD, now()).is_ok());
        ca.revocations().revoke(jwt.serial().clone());
        let err = ca.verify_jwt_svid(jwt.token(), AUD, now()).unwrap_err();
        assert!(matches!(err, IdentityError::SvidRevoked { .. }), "{err}");
        assert!(ca.verify_jwt_svid(other.token(), AUD, now()).is_ok());
    }

    #[test]
    fn jwt_of_another_ca_is_refused() {
        let (_dir, ca) = new_ca();
        let (_dir2, impostor) = new_ca();
        let jwt = impostor.issue_jwt_svid(&hello(), &[AUD], TTL).unwrap();
        let err = ca.verify_jwt_svid(jwt.token(), AUD, now()).unwrap_err();
        assert!(matches!(err, IdentityError::JwtUnknownKey { .. }), "{err}");
        // Same kid, other key: the signature check catches it.
        let (header, claims) = good_claims(&ca);
        let forged = sign_jwt(&impostor, &header, &claims);
        let err = ca.verify_jwt_svid(&forged, AUD, now()).unwrap_err();
        assert!(
            matches!(err, IdentityError::JwtSignatureInvalid { .. }),
            "{err}"
        );
    }
}

#[cfg(test)]
mod operator_tests {
    use super::*;
    use p256::pkcs8::EncodePublicKey;

    fn new_ca() -> (tempfile::TempDir, CertificateAuthority) {
        let dir = tempfile::tempdir().unwrap();
        let ca =
            CertificateAuthority::load_or_create(&dir.path().join("ca"), &TrustDomain::default())
                .unwrap();
        (dir, ca)
    }

    fn public_pem(key: &SecretKey) -> String {
        key.public_key().to_public_key_pem(LineEnding::LF).unwrap()
    }

    #[test]
    fn an_operator_certificate_is_issued_for_its_public_key_and_verifies() {
        let (_dir, ca) = new_ca();
        let key = SecretKey::random(&mut OsRng);
        let alice = OperatorName::parse("alice").unwrap();
        let cert = ca
            .issue_operator_certificate(&alice, &public_pem(&key), Duration::from_secs(3600))
            .unwrap();
        assert_eq!(
            cert.spiffe_id().as_str(),
            "spiffe://zerofn.local/operator/alice"
        );
        let parsed = x509_svid::parse_certificate(cert.cert_der()).unwrap();
        let spki = p256::PublicKey::from_public_key_der(parsed.public_key().raw).unwrap();
        assert_eq!(
            spki,
            key.public_key(),
            "certificate is for the submitted key"
        );
        let (id, serial) = ca
            .verify_x509_svid_der(cert.cert_der(), OffsetDateTime::now_utc())
            .unwrap();
        assert_eq!(&id, cert.spiffe_id());
        assert_eq!(&serial, cert.serial());
        assert_eq!(
            OperatorName::from_spiffe_id(&id, ca.trust_domain()),
            Some(alice.clone())
        );
        ca.revocations().revoke(serial);
        assert!(matches!(
            ca.verify_x509_svid_der(cert.cert_der(), OffsetDateTime::now_utc()),
            Err(IdentityError::SvidRevoked { .. })
        ));
        // Too long, and not a key.
        assert!(ca
            .issue_operator_certificate(&alice, &public_pem(&key), MAX_SVID_TTL * 2)
            .is_err());
        assert!(matches!(
            ca.issue_operator_certificate(&alice, "not a key", Duration::from_secs(60)),
            Err(IdentityError::PublicKeyInvalid { .. })
        ));
    }

    #[test]
    fn a_server_certificate_names_its_hosts() {
        let (_dir, ca) = new_ca();
        let id = SpiffeId::parse("spiffe://zerofn.local/platform/control-api").unwrap();
        let svid = ca
            .issue_tls_server_certificate(
                &id,
                &["localhost"],
                &["127.0.0.1".parse().unwrap()],
                Duration::from_secs(60),
            )
            .unwrap();
        let parsed = x509_svid::parse_certificate(svid.cert_der()).unwrap();
        let san = parsed.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(ca
            .verify_x509_svid(svid.cert_pem(), OffsetDateTime::now_utc())
            .is_ok());
        assert!(matches!(
            ca.issue_tls_server_certificate(&id, &[], &[], Duration::from_secs(60)),
            Err(IdentityError::ServerNamesMissing)
        ));
    }
}
