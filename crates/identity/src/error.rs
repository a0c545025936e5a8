//! The one error type of this crate, [`IdentityError`].
//!
//! Messages reach operators (start-up failures) and, for verification failures, the gateway's
//! logs and its 401 responses, so they follow Cedar's `style_guide.md`: lowercase, no trailing
//! period, inputs in backticks, what failed and what to do. No message or `Debug` output
//! carries a private key, a token or a signature; text that came from outside is passed
//! through [`excerpt`] first.

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::serial::SerialNumber;
use crate::spiffe_id::{SpiffeId, SpiffeIdProblem, TrustDomain};

/// Everything that can go wrong while loading the CA, issuing or verifying an SVID.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A SPIFFE ID string does not follow the SPIFFE ID specification.
    #[error("`{input}` is not a SPIFFE ID: {problem}")]
    SpiffeIdInvalid {
        /// The offending input (escaped and shortened).
        input: String,
        /// Which rule of the specification it breaks.
        problem: SpiffeIdProblem,
    },

    /// A trust domain name does not follow the SPIFFE ID specification.
    #[error("`{input}` is not a trust domain name: {problem}")]
    TrustDomainInvalid {
        /// The offending input (escaped and shortened).
        input: String,
        /// Which rule of the specification it breaks.
        problem: SpiffeIdProblem,
    },

    /// A tenant or function name cannot be a SPIFFE ID path segment.
    #[error("`{input}` cannot be part of a workload SPIFFE ID: {problem}")]
    PathSegmentInvalid {
        /// The offending input (escaped and shortened).
        input: String,
        /// Which rule of the specification it breaks.
        problem: SpiffeIdProblem,
    },

    /// A serial number string is not hexadecimal.
    #[error("`{input}` is not a certificate serial number; write it as 1 to 40 hex digits")]
    SerialInvalid {
        /// The offending input (escaped and shortened).
        input: String,
    },

    /// The CA directory could not be created or read.
    #[error("cannot use `{}` as the identity CA directory: {source}; check that it is a writable directory", .path.display())]
    CaDirectory {
        /// The directory.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// A CA file could not be read.
    #[error("cannot read `{}`: {source}", .path.display())]
    CaFileRead {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// A CA file could not be written.
    #[error("cannot write `{}`: {source}; check free space and permissions of the CA directory", .path.display())]
    CaFileWrite {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// A CA file appeared while this process was creating it; it is never overwritten.
    #[error("`{}` already exists and is never overwritten; another process may be creating the CA, start again", .path.display())]
    CaFileExists {
        /// The file.
        path: PathBuf,
    },

    /// A private key file is readable or writable by group or others.
    #[error("private key `{}` has mode {mode:o}, open to group or others; run `chmod 600` on it", .path.display())]
    CaKeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// The CA certificate exists but its private key does not.
    #[error("`{}` exists but its private key `{}` does not; restore the key, or move the CA directory aside to create a new CA (every issued SVID becomes untrusted)", .present.display(), .missing.display())]
    CaIncomplete {
        /// The file that is there.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },

    /// A private key file does not hold an unencrypted PKCS#8 P-256 key.
    #[error("`{}` is not a usable private key: {reason}; it must be an unencrypted PKCS#8 ECDSA P-256 key", .path.display())]
    CaKeyInvalid {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it (never the key itself).
        reason: String,
    },

    /// The CA certificate file is not a usable CA certificate for the key beside it.
    #[error("`{}` is not a usable CA certificate: {reason}", .path.display())]
    CaCertificateInvalid {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The CA directory belongs to another trust domain.
    #[error("the CA in `{}` is for `{found}`, not for trust domain `{expected}`; use that trust domain or another CA directory", .path.display())]
    CaTrustDomainMismatch {
        /// The certificate file.
        path: PathBuf,
        /// The trust domain the caller asked for.
        expected: TrustDomain,
        /// The URI SAN found in the certificate (escaped and shortened).
        found: String,
    },

    /// The CA certificate has expired.
    #[error("the CA certificate `{}` expired at {not_after}; move the CA directory aside to create a new CA", .path.display())]
    CaExpired {
        /// The certificate file.
        path: PathBuf,
        /// When it expired.
        not_after: OffsetDateTime,
    },

    /// Generating or encoding a key failed.
    #[error("could not generate or encode a key: {reason}")]
    KeyGeneration {
        /// What failed.
        reason: String,
    },

    /// Building or signing a certificate failed.
    #[error("could not build or sign a certificate: {reason}")]
    CertificateSigning {
        /// What failed (rcgen's message; it holds no key material).
        reason: String,
    },

    /// An SVID was requested for a SPIFFE ID of another trust domain.
    #[error("`{id}` is not in trust domain `{trust_domain}`; this CA issues and accepts SVIDs for its own trust domain only")]
    ForeignTrustDomain {
        /// The SPIFFE ID.
        id: SpiffeId,
        /// This CA's trust domain.
        trust_domain: TrustDomain,
    },

    /// An SVID was requested or presented for a SPIFFE ID without a path.
    #[error("`{id}` has no path, so it names a trust domain and not a workload (X509-SVID §3.1); use an ID such as `spiffe://<trust domain>/tenant/<tenant>/fn/<name>`")]
    NotAWorkloadId {
        /// The SPIFFE ID.
        id: SpiffeId,
    },

    /// The requested lifetime is zero, too long, or outlives the CA.
    #[error(
        "SVID lifetime of {requested_secs} s is not allowed; choose between 1 s and {max_secs} s"
    )]
    TtlInvalid {
        /// The requested lifetime in seconds.
        requested_secs: u64,
        /// The longest lifetime allowed now.
        max_secs: u64,
    },

    /// A JWT-SVID audience list is empty, too long, or holds an unusable value.
    #[error("JWT-SVID audience is invalid: {reason}")]
    AudienceInvalid {
        /// What is wrong with it.
        reason: String,
    },

    /// The certificate input is too large, not PEM, or not exactly one certificate.
    #[error("certificate is malformed: {reason}; present exactly one PEM `CERTIFICATE` block")]
    CertificateMalformed {
        /// What is wrong with it.
        reason: String,
    },

    /// The certificate was not issued by this CA (issuer name or signature do not match).
    #[error("certificate `{serial}` was not issued by this trust domain's CA: {reason}")]
    CertificateUntrusted {
        /// The certificate's serial number.
        serial: SerialNumber,
        /// Which check failed.
        reason: &'static str,
    },

    /// The certificate is outside its validity period.
    #[error("certificate `{serial}` is not valid at {now}: it is valid from {not_before} to {not_after}")]
    CertificateNotValidNow {
        /// The certificate's serial number.
        serial: SerialNumber,
        /// The time of the check.
        now: OffsetDateTime,
        /// notBefore.
        not_before: OffsetDateTime,
        /// notAfter.
        not_after: OffsetDateTime,
    },

    /// The certificate is not a valid X.509-SVID leaf.
    #[error("certificate `{serial}` is not an X509-SVID leaf: {reason}")]
    CertificateNotLeafSvid {
        /// The certificate's serial number.
        serial: SerialNumber,
        /// Which rule of X509-SVID it breaks.
        reason: String,
    },

    /// The SVID (X.509 serial or JWT `jti`) has been revoked.
    #[error("SVID `{serial}` of `{id}` has been revoked")]
    SvidRevoked {
        /// The revoked serial.
        serial: SerialNumber,
        /// The SPIFFE ID it was issued to.
        id: SpiffeId,
    },

    /// The token is not a well-formed JWS compact serialization or JWT.
    #[error("JWT-SVID is malformed: {reason}")]
    JwtMalformed {
        /// What is wrong with it (never the token).
        reason: String,
    },

    /// The token's `alg` is not ES256.
    #[error("JWT-SVID algorithm `{alg}` is refused; only `ES256` is accepted")]
    JwtAlgorithmRefused {
        /// The `alg` header value (escaped and shortened).
        alg: String,
    },

    /// The token's header carries a parameter JWT-SVID forbids.
    #[error("JWT-SVID header parameter `{param}` is refused; JWT-SVID allows only `alg`, `kid` and `typ` (JWT-SVID §2)")]
    JwtHeaderRefused {
        /// The parameter name (escaped and shortened).
        param: String,
    },

    /// The token's `kid` names no key of this trust domain.
    #[error("JWT-SVID key id `{kid}` is not in this trust domain's JWT bundle")]
    JwtUnknownKey {
        /// The `kid` header value (escaped and shortened), or `(none)`.
        kid: String,
    },

    /// The token's signature does not verify.
    #[error("JWT-SVID signature does not verify with key `{kid}`")]
    JwtSignatureInvalid {
        /// The key it was checked against.
        kid: String,
    },

    /// The token has expired.
    #[error("JWT-SVID of `{id}` expired at {exp} (unix time); request a new one")]
    JwtExpired {
        /// Its subject.
        id: SpiffeId,
        /// Its `exp` claim.
        exp: i64,
    },

    /// The token was issued in the future (clock skew beyond the allowance, or forgery).
    #[error("JWT-SVID of `{id}` claims to be issued at {iat} (unix time), in the future; check the clocks")]
    JwtIssuedInFuture {
        /// Its subject.
        id: SpiffeId,
        /// Its `iat` claim.
        iat: i64,
    },

    /// The token is not meant for this audience.
    #[error("JWT-SVID of `{id}` is not for audience `{expected}`")]
    JwtAudienceMismatch {
        /// Its subject.
        id: SpiffeId,
        /// The audience the verifier identifies with (escaped and shortened).
        expected: String,
    },

    /// An operator name does not follow the rule for operator names.
    #[error("`{input}` is not an operator name; use 1 to 63 lowercase letters, digits and `-`")]
    OperatorNameInvalid {
        /// The offending input (escaped and shortened).
        input: String,
    },

    /// A public key submitted for a certificate is not a P-256 SubjectPublicKeyInfo.
    #[error("public key is not usable: {reason}; send an ECDSA P-256 public key as a PEM `PUBLIC KEY` block")]
    PublicKeyInvalid {
        /// What is wrong with it.
        reason: String,
    },

    /// A server certificate was requested without any name.
    #[error("a TLS server certificate needs at least one DNS name or IP address")]
    ServerNamesMissing,
}

/// Longest excerpt of outside text quoted in an error message.
pub(crate) const EXCERPT_CHARS: usize = 120;

/// Outside text made safe to quote in a message: at most [`EXCERPT_CHARS`] characters,
/// control characters, bidirectional overrides and backticks escaped (the workspace's one
/// quoting function, `zerofn_types::quote`).
pub(crate) fn excerpt(text: &str) -> String {
    zerofn_types::quote(text, EXCERPT_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_escapes_and_shortens() {
        assert_eq!(excerpt("a\u{1b}b`c\u{202e}"), "a\\u{1b}b\\`c\\u{202e}");
        let long = "x".repeat(500);
        assert_eq!(excerpt(&long).chars().count(), EXCERPT_CHARS + 1);
    }
}
