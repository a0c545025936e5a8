//! [`verify`]: the one entry point that checks a Sigstore bundle against a
//! [`VerificationPolicy`], used by admission and by `zerofn verify`.
//!
//! Keyless verification follows the Sigstore client specification, "Verification"
//! (<https://github.com/sigstore/architecture-docs/blob/main/client-spec.md>), in this order,
//! each failure naming its check:
//!
//! 1. the signing certificate parses; the bundle's chain carries no root
//!    ([`AdmissionError::CertificateChainIncludesRoot`]): roots come from the trusted root;
//! 2. the signature (message signature or DSSE envelope) verifies with the certificate's key
//!    over this artifact (a DSSE statement must name the artifact's sha256 as a subject);
//! 3. every transparency log entry verifies against a log in the trusted root: the body
//!    matches the artifact, signature and certificate; the signed entry timestamp
//!    (inclusion promise) and the inclusion proof with its signed checkpoint verify; bundles
//!    v0.2 and later need the proof, v0.1 the promise; at least one entry is required;
//! 4. the verified signing times: integrated times proven by a signed entry timestamp, and
//!    RFC 3161 timestamps from a trusted timestamp authority; at least one is required (a
//!    Rekor v2 entry has no integrated time, so it needs a timestamp);
//! 5. every verified time lies within the certificate's validity;
//! 6. the certificate chains to a certificate authority of the trusted root that was valid,
//!    with all its certificates, at every verified time;
//! 7. an embedded SCT verifies with a CT log of the trusted root;
//! 8. the certificate's SAN and OIDC issuer match the policy's [`Identity`].

use std::fmt;
use std::time::{Duration, SystemTime};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use p256::ecdsa::Signature;

use crate::bundle::{
    Bundle, BundleContent, BundleMaterial, DsseEnvelope, MessageSignature, SignerMaterial,
};
use crate::certificate::{Certificate, KP_CODE_SIGNING};
use crate::dsse::{check_statement_subject, pae};
use crate::error::AdmissionError;
use crate::keys::{KeyId, PublicKey};
use crate::signature::{HashAlgorithm, VerifierKey};
use crate::timestamp::{verify_timestamp, MAX_TIMESTAMPS};
use crate::tlog::{verify_entry, LoggedContent, LoggedSigner};
use crate::trust_root::{format_time, TrustedRoot};
use zerofn_types::Digest;
use zerofn_types::{escape, excerpt};

/// What a bundle must prove to verify.
#[derive(Clone, Debug)]
pub enum VerificationPolicy {
    /// Signed with one of these keys (ECDSA P-256). Transparency log entries are not checked
    /// (no trusted root is involved), as with `cosign verify-blob --key --insecure-ignore-tlog`.
    Key(Vec<PublicKey>),
    /// Signed keylessly by `identity`, with a certificate, log entries and timestamps that
    /// verify against `trusted_root`.
    Keyless {
        /// The Fulcio CAs, Rekor and CT logs and timestamp authorities to trust.
        trusted_root: TrustedRoot,
        /// Who must have signed.
        identity: Identity,
    },
}

/// The signer a keyless certificate must name: a SAN (URI or email, as Fulcio writes it)
/// and the OIDC issuer that vouched for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The SAN equals `san` exactly, and the issuer equals `issuer`.
    Exact {
        /// For example `https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main`.
        san: String,
        /// For example `https://token.actions.githubusercontent.com`.
        issuer: String,
    },
    /// A SAN matches `san_regex` (Rust `regex` syntax, matched against the whole SAN), and
    /// the issuer equals `issuer`.
    Regex {
        /// The pattern; `^(?:` and `)$` are added.
        san_regex: String,
        /// The exact OIDC issuer.
        issuer: String,
    },
}

impl Identity {
    /// Checks that the identity can be used (a pattern compiles), so a tenant's rule is
    /// refused when it is set rather than at every admission.
    pub fn validate(&self) -> Result<(), AdmissionError> {
        identity_matcher(self).map(|_| ())
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Exact { san, issuer } => {
                write!(f, "`{}` from `{}`", excerpt(san), excerpt(issuer))
            }
            Identity::Regex { san_regex, issuer } => write!(
                f,
                "matching `{}` from `{}`",
                excerpt(san_regex),
                excerpt(issuer)
            ),
        }
    }
}

/// Who signed, as verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignerIdentity {
    /// A trusted key, by id.
    Key(KeyId),
    /// A Fulcio certificate's SAN (the one that matched the policy) and OIDC issuer.
    Certificate {
        /// The subject alternative name.
        san: String,
        /// The OIDC issuer.
        issuer: String,
    },
}

impl fmt::Display for SignerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignerIdentity::Key(key) => write!(f, "key {key}"),
            SignerIdentity::Certificate { san, issuer } => {
                write!(f, "{} (issuer {})", escape(san), escape(issuer))
            }
        }
    }
}

/// Proof that a bundle verified: over [`VerifiedSignature::digest`], by
/// [`VerifiedSignature::identity`]. Only this crate makes one.
#[derive(Clone, Debug)]
pub struct VerifiedSignature {
    pub(crate) digest: Digest,
    pub(crate) signer: KeyId,
    pub(crate) identity: SignerIdentity,
    pub(crate) signing_time: Option<OffsetDateTime>,
}

impl VerifiedSignature {
    /// The digest of the artifact the signature covers.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The id of the key that signed: the trusted key, or the key in the signing certificate
    /// (`sha256:` of its DER SubjectPublicKeyInfo).
    pub fn signer(&self) -> &KeyId {
        &self.signer
    }

    /// Who signed: a trusted key, or a certificate identity.
    pub fn identity(&self) -> &SignerIdentity {
        &self.identity
    }

    /// The earliest verified signing time (from a signed entry timestamp or an RFC 3161
    /// timestamp); `None` for key-based bundles, whose log entries are not checked.
    pub fn signing_time(&self) -> Option<SystemTime> {
        self.signing_time.map(|t| {
            let nanos = t.unix_timestamp_nanos();
            match u64::try_from(nanos / 1_000_000_000) {
                Ok(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
                Err(_) => SystemTime::UNIX_EPOCH,
            }
        })
    }

    /// [`VerifiedSignature::signing_time`] as RFC 3339 text.
    pub fn signing_time_rfc3339(&self) -> Option<String> {
        self.signing_time.and_then(|t| t.format(&Rfc3339).ok())
    }
}

/// Verifies `bundle` as a signature over the artifact whose sha256 is `artifact`, as
/// `policy` requires. See the module docs for the keyless checks; for
/// [`VerificationPolicy::Key`] a message signature or DSSE envelope must verify with one of
/// the keys (see [`crate::verify_bundle`] for the hint rules).
pub fn verify(
    artifact: &Digest,
    bundle: &Bundle,
    policy: &VerificationPolicy,
) -> Result<VerifiedSignature, AdmissionError> {
    match (policy, bundle.signer_material()) {
        (VerificationPolicy::Key(keys), SignerMaterial::PublicKey { hint }) => {
            verify_with_keys(artifact, bundle, hint, keys)
        }
        (VerificationPolicy::Key(_), SignerMaterial::Certificates { .. }) => {
            Err(AdmissionError::KeylessNotSupported)
        }
        (VerificationPolicy::Keyless { .. }, SignerMaterial::PublicKey { .. }) => {
            Err(AdmissionError::KeyedBundleNeedsKey)
        }
        (
            VerificationPolicy::Keyless {
                trusted_root,
                identity,
            },
            SignerMaterial::Certificates { chain },
        ) => verify_keyless(artifact, bundle, chain, trusted_root, identity),
    }
}

fn verify_with_keys(
    artifact: &Digest,
    bundle: &Bundle,
    hint: Option<&str>,
    keys: &[PublicKey],
) -> Result<VerifiedSignature, AdmissionError> {
    match bundle.content() {
        BundleContent::MessageSignature(message) => verify_with_key(artifact, hint, message, keys),
        BundleContent::Dsse(envelope) => {
            let (payload_type, payload, signature) = single_signature(envelope)?;
            let digest = Digest::of(&pae(payload_type, payload));
            let signature = p256::ecdsa::Signature::from_der(signature).map_err(|_| {
                AdmissionError::SignatureInvalid {
                    digest: *artifact,
                    tenant: None,
                }
            })?;
            let key = keys
                .iter()
                .find(|key| key.verifies(&digest, &signature))
                .ok_or(AdmissionError::SignatureInvalid {
                    digest: *artifact,
                    tenant: None,
                })?;
            check_statement_subject(payload_type, payload, artifact)?;
            Ok(VerifiedSignature {
                digest: *artifact,
                signer: key.key_id().clone(),
                identity: SignerIdentity::Key(key.key_id().clone()),
                signing_time: None,
            })
        }
    }
}

/// The envelope's payload type, payload and its one signature (sigstore-go and -python
/// refuse envelopes with more than one signature too).
fn single_signature(envelope: &DsseEnvelope) -> Result<(&str, &[u8], &[u8]), AdmissionError> {
    match envelope.signatures.as_slice() {
        [only] => Ok((&envelope.payload_type, &envelope.payload, &only.sig)),
        other => Err(AdmissionError::DsseInvalid {
            reason: format!(
                "it has {} signatures; exactly one is supported",
                other.len()
            ),
        }),
    }
}

fn verify_keyless(
    artifact: &Digest,
    bundle: &Bundle,
    chain: &[Vec<u8>],
    root: &TrustedRoot,
    identity: &Identity,
) -> Result<VerifiedSignature, AdmissionError> {
    let san_matches = identity_matcher(identity)?;

    // 1. The certificate, and no root in the bundle's chain.
    let Some((leaf_der, rest)) = chain.split_first() else {
        return Err(AdmissionError::CertificateInvalid {
            reason: "the bundle has no certificate".to_owned(),
        });
    };
    let leaf = Certificate::from_der(leaf_der).map_err(|e| AdmissionError::CertificateInvalid {
        reason: e.to_string(),
    })?;
    for der in rest {
        let cert = Certificate::from_der(der).map_err(|e| AdmissionError::CertificateInvalid {
            reason: e.to_string(),
        })?;
        if cert.is_self_issued() {
            return Err(AdmissionError::CertificateChainIncludesRoot {
                subject: excerpt(&cert.subject()),
            });
        }
    }
    leaf.check_end_entity(KP_CODE_SIGNING)
        .map_err(|e| AdmissionError::CertificateInvalid {
            reason: e.to_string(),
        })?;
    let key = leaf.key().map_err(|e| AdmissionError::CertificateInvalid {
        reason: e.to_string(),
    })?;

    // 2. The signature over this artifact.
    let invalid_signature = || AdmissionError::CertificateSignatureInvalid { digest: *artifact };
    let pae_bytes;
    let (content, signature_bytes) = match bundle.content() {
        BundleContent::MessageSignature(message) => {
            verify_message_with(key, artifact, message)?;
            (
                LoggedContent::Message {
                    digest: artifact,
                    signature: &message.signature,
                },
                message.signature.as_slice(),
            )
        }
        BundleContent::Dsse(envelope) => {
            let (payload_type, payload, signature) = single_signature(envelope)?;
            pae_bytes = pae(payload_type, payload);
            if !key.verifies_message(&pae_bytes, signature) {
                return Err(invalid_signature());
            }
            check_statement_subject(payload_type, payload, artifact)?;
            (
                LoggedContent::Dsse {
                    payload_type,
                    payload,
                    signature,
                    pae_sha256: *Digest::of(&pae_bytes).as_bytes(),
                },
                signature,
            )
        }
    };

    // 3. Transparency log entries.
    let entries = bundle.tlog_entries();
    if entries.is_empty() {
        return Err(AdmissionError::TlogEntryMissing);
    }
    let version = bundle.version();
    let mut times = Vec::new();
    let mut untimed_logs = Vec::new();
    for entry in entries {
        if version == crate::bundle::BundleVersion::V01 && entry.inclusion_promise.is_none() {
            return Err(AdmissionError::SignedEntryTimestampInvalid {
                reason: "a v0.1 bundle's log entry must carry an inclusion promise".to_owned(),
            });
        }
        let verified = verify_entry(
            entry,
            root,
            &content,
            &LoggedSigner::Certificate(leaf.der()),
            version != crate::bundle::BundleVersion::V01,
        )?;
        match verified.integrated_time {
            Some(time) => times.push(time),
            None => untimed_logs.push(verified.log_valid_for),
        }
    }

    // 4. RFC 3161 timestamps.
    let timestamps = bundle.rfc3161_timestamps();
    if timestamps.len() > MAX_TIMESTAMPS {
        return Err(AdmissionError::TimestampInvalid {
            reason: format!(
                "the bundle has {} timestamps, more than the {MAX_TIMESTAMPS} allowed",
                timestamps.len()
            ),
        });
    }
    for (i, ts) in timestamps.iter().enumerate() {
        if timestamps
            .get(..i)
            .is_some_and(|earlier| earlier.contains(ts))
        {
            return Err(AdmissionError::TimestampInvalid {
                reason: "the bundle has duplicate timestamps".to_owned(),
            });
        }
    }
    // As sigstore-go and sigstore-python do, a timestamp that does not verify is not a
    // time source (it is not evidence of anything); at least one verified time is required
    // below, and every verified time must fall within the certificate's validity.
    let mut tsa_times = Vec::new();
    let mut refused = Vec::new();
    for ts in timestamps {
        match verify_timestamp(ts, signature_bytes, root) {
            Ok(time) => tsa_times.push(time),
            Err(e) => refused.push(e.to_string()),
        }
    }
    let refused = if refused.is_empty() {
        String::new()
    } else {
        format!("; refused: {}", refused.join("; "))
    };
    // A log entry without an integrated time (Rekor v2) was logged with a key that must
    // have been valid when the timestamp authority saw the signature.
    for valid_for in &untimed_logs {
        if tsa_times.is_empty() {
            return Err(AdmissionError::NoVerifiedTime {
                reason: format!("the log entry has no signed integrated time (as in Rekor v2) and no RFC 3161 timestamp verifies{refused}"),
            });
        }
        if let Some(t) = tsa_times.iter().find(|t| !valid_for.contains(**t)) {
            return Err(AdmissionError::TlogEntryInvalid {
                reason: format!(
                    "the log key was not valid at the timestamp {}",
                    format_time(*t)
                ),
            });
        }
    }
    times.extend(tsa_times);
    let Some(earliest) = times.iter().min().copied() else {
        return Err(AdmissionError::NoVerifiedTime {
            reason: format!("the bundle has neither a signed entry timestamp nor a verified RFC 3161 timestamp{refused}"),
        });
    };

    // 5. Within the certificate's validity.
    let (not_before, not_after) = leaf.validity();
    if let Some(t) = times.iter().find(|t| !leaf.is_valid_at(**t)) {
        return Err(AdmissionError::SignatureTimeOutsideCertificateValidity {
            time: format_time(*t),
            not_before: format_time(not_before),
            not_after: format_time(not_after),
        });
    }

    // 6. The chain to a trusted certificate authority.
    let issuer = chain_to_authority(&leaf, root, &times)?;

    // 7. The SCT.
    leaf.verify_sct(issuer, &root.ctlogs)
        .map_err(|e| AdmissionError::SctInvalid {
            reason: e.to_string(),
        })?;

    // 8. The identity.
    let found = leaf
        .identity()
        .map_err(|e| AdmissionError::CertificateInvalid {
            reason: e.to_string(),
        })?;
    let expected_issuer = match identity {
        Identity::Exact { issuer, .. } | Identity::Regex { issuer, .. } => issuer,
    };
    let Some(san) = found.sans.iter().find(|san| san_matches(san)) else {
        return Err(AdmissionError::CertificateIdentityMismatch {
            expected: identity.to_string(),
            found: if found.sans.is_empty() {
                "no URI or email SAN".to_owned()
            } else {
                found
                    .sans
                    .iter()
                    .map(|s| format!("`{}`", excerpt(s)))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            hint: partial_match_hint(identity, &found.sans),
        });
    };
    let found_issuer = found.issuer.unwrap_or_default();
    if found_issuer != *expected_issuer {
        return Err(AdmissionError::CertificateIssuerMismatch {
            expected: excerpt(expected_issuer),
            found: excerpt(&found_issuer),
        });
    }

    Ok(VerifiedSignature {
        digest: *artifact,
        signer: KeyId::of_spki_der(&leaf.spki_der()),
        identity: SignerIdentity::Certificate {
            san: san.clone(),
            issuer: found_issuer,
        },
        signing_time: Some(earliest),
    })
}

/// A message signature is over the artifact's digest: ECDSA with the digest as prehash.
/// Only the sha256 of the artifact is known here, so a P-384 key must have signed a SHA-256
/// prehash (as `messageDigest.algorithm = SHA2_256` says), and Ed25519 (which signs the
/// message itself, or a SHA-512 prehash in Ed25519ph) is refused.
fn verify_message_with(
    key: &VerifierKey,
    artifact: &Digest,
    message: &MessageSignature,
) -> Result<(), AdmissionError> {
    if let Some(found) = message.message_digest {
        if found != *artifact {
            return Err(AdmissionError::ArtifactDigestMismatch {
                expected: *artifact,
                found,
            });
        }
    }
    if let VerifierKey::Ed25519(_) = key {
        return Err(AdmissionError::SignatureAlgorithmUnsupported {
            reason: "an Ed25519 message signature needs the artifact bytes, and only its sha256 is verified here".to_owned(),
        });
    }
    if key.verifies_prehash(
        artifact.as_bytes(),
        HashAlgorithm::Sha256,
        &message.signature,
    ) {
        Ok(())
    } else {
        Err(AdmissionError::CertificateSignatureInvalid { digest: *artifact })
    }
}

/// Finds a certificate authority in `root` that issued `leaf` and was, with every
/// certificate of its chain, valid at every time in `times`; returns the issuing certificate.
fn chain_to_authority<'r>(
    leaf: &Certificate,
    root: &'r TrustedRoot,
    times: &[OffsetDateTime],
) -> Result<&'r Certificate, AdmissionError> {
    let mut reasons = Vec::new();
    for authority in &root.certificate_authorities {
        let Some(issuer) = authority.chain.first() else {
            continue;
        };
        if let Err(reason) = leaf.verify_issued_by(issuer) {
            reasons.push(reason.to_string());
            continue;
        }
        if let Some(t) = times.iter().find(|t| !authority.valid_for.contains(**t)) {
            reasons.push(format!(
                "certificate authority `{}` was not trusted at {}",
                excerpt(&authority.uri),
                format_time(*t)
            ));
            continue;
        }
        let chain = authority.chain.windows(2).try_for_each(|pair| match pair {
            [child, parent] => child.verify_issued_by(parent),
            _ => Ok(()),
        });
        if let Err(reason) = chain {
            reasons.push(reason.to_string());
            continue;
        }
        if let Some(cert) = authority
            .chain
            .iter()
            .find(|c| times.iter().any(|t| !c.is_valid_at(*t)))
        {
            reasons.push(format!(
                "CA certificate `{}` was not valid at the signing time",
                excerpt(&cert.subject())
            ));
            continue;
        }
        return Ok(issuer);
    }
    Err(AdmissionError::UntrustedCertificateAuthority {
        reason: if reasons.is_empty() {
            "the trusted root has no certificate authorities".to_owned()
        } else {
            reasons.join("; ")
        },
    })
}

/// When a pattern matches only part of a SAN (cosign searches for the pattern anywhere, so a
/// cosign user's `^https://github\.com/org/` is a prefix here), say so and how to fix it.
fn partial_match_hint(identity: &Identity, sans: &[String]) -> String {
    let Identity::Regex { san_regex, .. } = identity else {
        return String::new();
    };
    let Ok(search) = regex::RegexBuilder::new(san_regex)
        .size_limit(1 << 20)
        .build()
    else {
        return String::new();
    };
    if sans.iter().any(|san| search.is_match(san)) {
        format!(
            "; the pattern matches only part of it, and here the whole identity must match \
             (unlike cosign, which searches for the pattern anywhere): write `{}.*` to accept \
             anything after it",
            excerpt(san_regex.trim_end_matches('$'))
        )
    } else {
        String::new()
    }
}

/// Whether a SAN satisfies the identity policy.
type SanMatcher = Box<dyn Fn(&str) -> bool>;

/// A predicate for SANs per the identity policy.
fn identity_matcher(identity: &Identity) -> Result<SanMatcher, AdmissionError> {
    match identity {
        Identity::Exact { san, .. } => {
            let san = san.clone();
            Ok(Box::new(move |found: &str| found == san))
        }
        Identity::Regex { san_regex, .. } => {
            let regex = regex::RegexBuilder::new(&format!("^(?:{san_regex})$"))
                .size_limit(1 << 20)
                .build()
                .map_err(|e| AdmissionError::IdentityRegexInvalid {
                    reason: zerofn_types::sanitize_message(&e.to_string(), 200),
                })?;
            Ok(Box::new(move |found: &str| regex.is_match(found)))
        }
    }
}

/// Verifies `bundle` as a signature over the artifact whose sha256 is `artifact`, made by one
/// of `trusted`. See the module docs for which bundles are verified.
///
/// For a key-based bundle: if `messageSignature.messageDigest` is present and differs from
/// `artifact`, [`AdmissionError::ArtifactDigestMismatch`]; otherwise the DER signature must
/// verify (ECDSA P-256, prehash = `artifact`) with a trusted key whose hint matches, or with
/// any trusted key if the hint is absent or matches none; else
/// [`AdmissionError::SignatureInvalid`] (with `tenant: None`; `zerofn_admission::admit` fills it in).
pub fn verify_bundle(
    artifact: &Digest,
    bundle: &Bundle,
    trusted: &[PublicKey],
) -> Result<VerifiedSignature, AdmissionError> {
    if let (BundleMaterial::PublicKey { .. }, BundleContent::Dsse(_)) =
        (&bundle.material, &bundle.content)
    {
        return Err(AdmissionError::DsseNotSupported);
    }
    verify(artifact, bundle, &VerificationPolicy::Key(trusted.to_vec()))
}

/// Verification for `VerificationMaterial::PublicKey` + `messageSignature`.
pub(crate) fn verify_with_key(
    artifact: &Digest,
    hint: Option<&str>,
    message: &MessageSignature,
    trusted: &[PublicKey],
) -> Result<VerifiedSignature, AdmissionError> {
    if let Some(found) = message.message_digest {
        if found != *artifact {
            return Err(AdmissionError::ArtifactDigestMismatch {
                expected: *artifact,
                found,
            });
        }
    }
    let invalid = || AdmissionError::SignatureInvalid {
        digest: *artifact,
        tenant: None,
    };
    // DER only: Sigstore clients write and expect ASN.1 DER (cosign, sigstore-go); a 64-byte
    // r||s signature fails here as bytes that do not verify.
    let signature = Signature::from_der(&message.signature).map_err(|_| invalid())?;
    let hinted: Vec<&PublicKey> = match hint {
        Some(hint) => trusted.iter().filter(|k| k.matches_hint(hint)).collect(),
        None => Vec::new(),
    };
    let candidates: Vec<&PublicKey> = if hinted.is_empty() {
        trusted.iter().collect()
    } else {
        hinted
    };
    candidates
        .into_iter()
        .find(|key| key.verifies(artifact, &signature))
        .map(|key| VerifiedSignature {
            digest: *artifact,
            signer: key.key_id().clone(),
            identity: SignerIdentity::Key(key.key_id().clone()),
            signing_time: None,
        })
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TESTDATA: zerofn_testkit::testdata::Dir = zerofn_testkit::testdata::dir("sigstore");
    const BEACON_SAN: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
    const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

    fn read(path: &str) -> Vec<u8> {
        std::fs::read(format!("{TESTDATA}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn production_root() -> TrustedRoot {
        TrustedRoot::from_json(&read(
            "trusted-roots/sigstore-python-embedded/production/trusted_root.json",
        ))
        .unwrap()
    }

    /// Runs one conformance case the way the suite does; `Ok` carries the verified signature.
    fn conformance_case(case: &str) -> Result<VerifiedSignature, AdmissionError> {
        let dir = format!("{TESTDATA}/conformance/bundle-verify/{case}");
        let artifact =
            std::fs::read(format!("{dir}/artifact")).unwrap_or_else(|_| read("conformance/a.txt"));
        let bundle =
            Bundle::from_json(&std::fs::read(format!("{dir}/bundle.sigstore.json")).unwrap())?;
        let policy = if let Ok(pem) = std::fs::read_to_string(format!("{dir}/key.pub")) {
            VerificationPolicy::Key(vec![PublicKey::from_pem(&pem)?])
        } else {
            let trusted_root = match std::fs::read(format!("{dir}/trusted_root.json")) {
                Ok(json) => TrustedRoot::from_json(&json)?,
                Err(_) => production_root(),
            };
            let san = std::fs::read_to_string(format!("{dir}/identity"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| BEACON_SAN.to_owned());
            let issuer = std::fs::read_to_string(format!("{dir}/issuer"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| GITHUB_ISSUER.to_owned());
            VerificationPolicy::Keyless {
                trusted_root,
                identity: Identity::Exact { san, issuer },
            }
        };
        verify(&Digest::of(&artifact), &bundle, &policy)
    }

    #[test]
    fn every_conformance_case_verifies_as_expected() {
        let mut cases: Vec<String> =
            std::fs::read_dir(format!("{TESTDATA}/conformance/bundle-verify"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_dir())
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
        cases.sort();
        let mut wrong = Vec::new();
        for case in &cases {
            let result = conformance_case(case);
            let expect_pass = !case.ends_with("_fail");
            if result.is_ok() != expect_pass {
                wrong.push(format!("{case}: {result:?}"));
            }
        }
        assert!(wrong.is_empty(), "unexpected outcomes: {wrong:#?}");
    }
}
