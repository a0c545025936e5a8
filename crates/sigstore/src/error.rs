//! [`AdmissionError`]: why a key, bundle or signature was refused.
//!
//! One enum for signing and verification, so the control API and the CLI match on one type
//! to choose a status or a hint. Refusals of layers and their composition are
//! `zerofn-admission`'s (`LayerError`), which wraps this one for a layer's signature.
//!
//! Messages are shown to users by the CLI and the control API, so they follow Cedar's
//! `style_guide.md`: lowercase, no trailing period, inputs in backticks, what failed and
//! what to do. No message or `Debug` output carries key material or component bytes; text
//! that came from the outside is passed through [`zerofn_types::excerpt`] first.

use zerofn_types::{Digest, DigestError, TenantName};

/// Why a key, bundle or signature was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdmissionError {
    /// A digest string is not `sha256:` followed by 64 lowercase hex digits.
    #[error("`{input}` is not a sha256 digest; write it as `sha256:` followed by 64 lowercase hex digits")]
    DigestInvalid {
        /// The offending input (escaped and shortened).
        input: String,
    },

    /// A key id string is not `sha256:` followed by 64 lowercase hex digits.
    #[error("`{input}` is not a key id; write it as `sha256:` followed by the 64 lowercase hex digits of the sha256 of the DER public key")]
    KeyIdInvalid {
        /// The offending input (escaped and shortened).
        input: String,
    },

    /// A private key PEM could not be read.
    #[error("signing key is not usable: {reason}; provide an unencrypted P-256 private key as a PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY` PEM block")]
    SigningKeyInvalid {
        /// What is wrong with it (never the key itself).
        reason: String,
    },

    /// A public key PEM could not be read.
    #[error("public key is not usable: {reason}; provide a P-256 public key as a `PUBLIC KEY` (SubjectPublicKeyInfo) PEM block")]
    PublicKeyInvalid {
        /// What is wrong with it.
        reason: String,
    },

    /// A key is well-formed but not an ECDSA P-256 key.
    #[error("key algorithm `{algorithm}` is not supported; use an ECDSA P-256 (prime256v1) key")]
    KeyAlgorithmUnsupported {
        /// The algorithm the key is for, for example `RSA` or `ECDSA P-384`.
        algorithm: String,
    },

    /// Encoding a signing key as PKCS#8 failed.
    #[error("could not encode the signing key as PKCS#8 PEM; generate a new key and try again")]
    KeyEncodingFailed,

    /// Signing an artifact, or writing its bundle, failed.
    #[error("could not sign the artifact: {reason}")]
    SigningFailed {
        /// What failed.
        reason: String,
    },

    /// The bundle is not a well-formed Sigstore bundle of a version this crate reads (an
    /// unknown `mediaType` is reported here too, naming it: callers map this variant to "bad
    /// request").
    #[error("bundle is malformed: {reason}; provide the Sigstore bundle JSON written by `zerofn sign` or `cosign sign-blob --key <key> --new-bundle-format --bundle <file>`")]
    BundleMalformed {
        /// What is wrong with it (escaped and shortened).
        reason: String,
    },

    /// The bundle is signed with a Fulcio certificate (keyless) where only keys are trusted.
    #[error("bundle is signed with a certificate (keyless), but only signing keys are trusted here; sign with a key (`zerofn sign` or `cosign sign-blob --key`) and add its public key with `zerofn tenant add-key`")]
    KeylessNotSupported,

    /// The bundle's content is a DSSE envelope (an attestation) where a signature over the
    /// component itself is required.
    #[error("bundles with a DSSE envelope (attestations) are not accepted as a component signature; sign the component itself with `zerofn sign` or `cosign sign-blob --key`")]
    DsseNotSupported,

    /// The bundle is signed with a key, but the policy expects a certificate identity.
    #[error("bundle is signed with a key, not a certificate; verify it with the signer's public key (`--key`)")]
    KeyedBundleNeedsKey,

    /// A `trusted_root.json` is malformed.
    #[error("trusted root is invalid: {reason}; provide a Sigstore `trusted_root.json`")]
    TrustedRootInvalid {
        /// Which field is wrong and how.
        reason: String,
    },

    /// The signing certificate does not parse or is not a code-signing leaf.
    #[error("signing certificate is invalid: {reason}")]
    CertificateInvalid {
        /// What is wrong with it.
        reason: String,
    },

    /// The bundle's certificate chain carries a root (self-issued) certificate.
    #[error("bundle certificate chain includes the root certificate `{subject}`; roots come only from the trusted root, so remove it from the bundle")]
    CertificateChainIncludesRoot {
        /// The root's subject.
        subject: String,
    },

    /// The certificate does not chain to a trusted CA valid at the signing time.
    #[error("untrusted certificate authority: {reason}; the certificate must chain to a certificate authority of the trusted root that was valid at the signing time")]
    UntrustedCertificateAuthority {
        /// Why each candidate CA was refused.
        reason: String,
    },

    /// No embedded SCT verifies with a CT log of the trusted root.
    #[error("sct invalid: {reason}; the certificate needs a signed certificate timestamp from a CT log in the trusted root")]
    SctInvalid {
        /// Why.
        reason: String,
    },

    /// No SAN of the certificate matches the policy's identity.
    #[error("certificate identity mismatch: expected {expected}, found {found}{hint}")]
    CertificateIdentityMismatch {
        /// The policy's identity.
        expected: String,
        /// The certificate's SANs.
        found: String,
        /// Empty, or why a pattern that matches part of a SAN is not enough, and the fix.
        hint: String,
    },

    /// The certificate's OIDC issuer is not the policy's.
    #[error("certificate oidc issuer mismatch: expected `{expected}`, found `{found}`")]
    CertificateIssuerMismatch {
        /// The policy's issuer.
        expected: String,
        /// The certificate's issuer (empty if none).
        found: String,
    },

    /// The identity regular expression does not compile.
    #[error("certificate identity regex is invalid: {reason}")]
    IdentityRegexInvalid {
        /// The regex compiler's message.
        reason: String,
    },

    /// A keyless bundle without a transparency log entry.
    #[error("transparency log entry missing: keyless bundles must carry a transparency log entry")]
    TlogEntryMissing,

    /// A transparency log entry is malformed (missing fields, negative log index).
    #[error("transparency log entry is invalid: {reason}")]
    TlogEntryInvalid {
        /// What is wrong.
        reason: String,
    },

    /// The entry is from a log that is not in the trusted root.
    #[error("transparency log `{log_id}` is not in the trusted root; the bundle is from another Sigstore instance or the trusted root is out of date")]
    UntrustedTransparencyLog {
        /// The hex log id.
        log_id: String,
    },

    /// The logged body is not this artifact, signature and signer.
    #[error("transparency log entry does not match artifact: {reason}")]
    TlogEntryMismatch {
        /// Which part differs.
        reason: String,
    },

    /// The signed entry timestamp (inclusion promise) does not verify.
    #[error("signed entry timestamp invalid: {reason}")]
    SignedEntryTimestampInvalid {
        /// Why.
        reason: String,
    },

    /// A bundle v0.2 or later whose entry has no inclusion proof.
    #[error("inclusion proof missing: bundles v0.2 and later must carry an inclusion proof with a checkpoint")]
    InclusionProofMissing,

    /// The Merkle inclusion proof does not compute the root hash.
    #[error("inclusion proof does not verify: {reason}")]
    InclusionProofInvalid {
        /// Why.
        reason: String,
    },

    /// The checkpoint is malformed or does not match the proof.
    #[error("checkpoint is invalid: {reason}")]
    CheckpointInvalid {
        /// Why.
        reason: String,
    },

    /// No checkpoint signature verifies with the log's key.
    #[error("checkpoint signature invalid: {reason}")]
    CheckpointSignatureInvalid {
        /// Why.
        reason: String,
    },

    /// An RFC 3161 timestamp does not verify.
    #[error("rfc 3161 timestamp invalid: {reason}")]
    TimestampInvalid {
        /// Why.
        reason: String,
    },

    /// Nothing proves when the bundle was signed.
    #[error("no verified signing time: {reason}")]
    NoVerifiedTime {
        /// What is missing.
        reason: String,
    },

    /// A verified signing time is outside the certificate's validity.
    #[error("signature time outside certificate validity: signed at {time}, but the certificate is valid from {not_before} to {not_after}")]
    SignatureTimeOutsideCertificateValidity {
        /// The signing time (RFC 3339).
        time: String,
        /// The certificate's notBefore (RFC 3339).
        not_before: String,
        /// The certificate's notAfter (RFC 3339).
        not_after: String,
    },

    /// The DSSE envelope is not usable.
    #[error("dsse envelope is invalid: {reason}")]
    DsseInvalid {
        /// Why.
        reason: String,
    },

    /// The DSSE statement does not name the artifact.
    #[error("dsse statement does not name the artifact: {reason}")]
    DsseSubjectMismatch {
        /// Why.
        reason: String,
    },

    /// A signature algorithm this verifier cannot check.
    #[error("signature algorithm unsupported: {reason}")]
    SignatureAlgorithmUnsupported {
        /// Which and why.
        reason: String,
    },

    /// The tenant has no signing keys, so nothing it deploys can be admitted.
    #[error("tenant `{tenant}` has no trusted signing keys; add one with `zerofn tenant add-key`")]
    NoTrustedKeys {
        /// The tenant named in the manifest.
        tenant: TenantName,
    },

    /// A key-based bundle for a tenant without keys (from the admission pipeline, which
    /// takes the tenant by name).
    #[error("tenant `{tenant}` has no trusted signing keys; add one with `zerofn tenant add-key`")]
    NoTrustedKeysFor {
        /// The tenant.
        tenant: String,
    },

    /// A keyless bundle for a tenant without keyless signing identities.
    #[error("the component is signed keylessly but tenant `{tenant}` trusts no signing identity; add one with `zerofn tenant add-identity`")]
    NoSigningIdentities {
        /// The tenant.
        tenant: String,
    },

    /// No trusted key verifies the signature (or the signature bytes are not DER).
    #[error("signature over `{digest}` does not verify with any {}; sign the component with a trusted key or add the signer's public key with `zerofn tenant add-key`", trusted_keys_of(.tenant.as_ref()))]
    SignatureInvalid {
        /// The digest of the component whose signature failed.
        digest: Digest,
        /// The tenant whose keys were tried, when known (`admit` knows it, `verify_bundle` does not).
        tenant: Option<TenantName>,
    },

    /// A keyless bundle's signature does not verify with its certificate's key.
    #[error("signature over `{digest}` does not verify with the signing certificate's key; the bundle signs other content or was altered")]
    CertificateSignatureInvalid {
        /// The digest of the artifact being verified.
        digest: Digest,
    },

    /// The bundle's message digest names another artifact than the component.
    #[error("bundle is for artifact `{found}` but the component is `{expected}`; the bundle belongs to another artifact or the component was modified, so sign this component and deploy its bundle")]
    ArtifactDigestMismatch {
        /// The digest of the component being admitted.
        expected: Digest,
        /// The digest the bundle says it signs.
        found: Digest,
    },
}

fn trusted_keys_of(tenant: Option<&TenantName>) -> String {
    match tenant {
        Some(tenant) => format!("trusted key of tenant `{tenant}`"),
        None => "trusted key".to_owned(),
    }
}

impl From<DigestError> for AdmissionError {
    fn from(e: DigestError) -> Self {
        match e {
            DigestError::Invalid { input } => AdmissionError::DigestInvalid { input },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_errors_keep_their_message() {
        let digest_error = Digest::parse("sha256:00").unwrap_err();
        let text = digest_error.to_string();
        let e = AdmissionError::from(digest_error);
        assert!(matches!(e, AdmissionError::DigestInvalid { .. }), "{e:?}");
        assert_eq!(e.to_string(), text);
    }
}
