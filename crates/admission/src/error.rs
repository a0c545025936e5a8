//! The errors of admission ([`AdmissionError`]) and of manifest parsing ([`ManifestError`]).
//!
//! Messages are shown to users by the CLI and the control API, so they follow Cedar's
//! `style_guide.md`: lowercase, no trailing period, inputs in backticks, what failed and
//! what to do. No message or `Debug` output carries key material or component bytes; text
//! that came from the outside is passed through [`excerpt`] first.

use crate::digest::Digest;
use crate::manifest::TenantName;

/// Why a key, bundle or component was refused.
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

    /// The bundle is signed with a Fulcio certificate (keyless), which is not verified yet.
    #[error("keyless (certificate) bundles are not supported yet; sign with a key (`zerofn sign` or `cosign sign-blob --key`) and add its public key with `zerofn tenant add-key`")]
    KeylessNotSupported,

    /// The bundle's content is a DSSE envelope (an attestation), which is not verified yet.
    #[error("bundles with a DSSE envelope (attestations) are not supported yet; sign the component itself with `zerofn sign` or `cosign sign-blob --key`")]
    DsseNotSupported,

    /// The tenant has no signing keys, so nothing it deploys can be admitted.
    #[error("tenant `{tenant}` has no trusted signing keys; add one with `zerofn tenant add-key`")]
    NoTrustedKeys {
        /// The tenant named in the manifest.
        tenant: TenantName,
    },

    /// No trusted key verifies the signature (or the signature bytes are not DER).
    #[error("signature over `{digest}` does not verify with any {}; sign the component with a trusted key or add the signer's public key with `zerofn tenant add-key`", trusted_keys_of(.tenant.as_ref()))]
    SignatureInvalid {
        /// The digest of the component whose signature failed.
        digest: Digest,
        /// The tenant whose keys were tried, when known (`admit` knows it, `verify_bundle` does not).
        tenant: Option<TenantName>,
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

const NAME_RULE: &str =
    "use 1 to 63 lowercase letters, digits and `-`, starting with a letter and not ending with `-`";

/// Why a function manifest (`zerofn.toml`) was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The manifest is larger than any sensible manifest.
    #[error("manifest is {size} bytes, over the limit of {limit} bytes; remove unneeded content")]
    TooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },

    /// The TOML does not parse, or has unknown, missing or mistyped keys. The message carries
    /// the line and column and names the key.
    #[error("manifest is not valid: {0}")]
    Toml(#[source] toml::de::Error),

    /// `name` is not a DNS label.
    #[error("function name `{name}` is invalid: {reason}; {}", NAME_RULE)]
    InvalidFunctionName {
        /// The offending name (escaped and shortened).
        name: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// `tenant` is not a DNS label.
    #[error("tenant name `{name}` is invalid: {reason}; {}", NAME_RULE)]
    InvalidTenantName {
        /// The offending name (escaped and shortened).
        name: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// `component` is not a plain `.wasm` file name.
    #[error("`component` = `{component}` is invalid: {reason}; use a plain file name beside the manifest, such as `hello.wasm`")]
    InvalidComponent {
        /// The offending value (escaped and shortened).
        component: String,
        /// Which rule it breaks.
        reason: String,
    },

    /// `routes` is empty.
    #[error("`routes` is empty; add at least one route, such as `routes = [\"/hello\"]`")]
    NoRoutes,

    /// A route is not a normalised absolute URL path.
    #[error("route `{route}` is invalid: {reason}")]
    InvalidRoute {
        /// The offending route (escaped and shortened).
        route: String,
        /// Which rule it breaks and what to write instead.
        reason: String,
    },

    /// The same route appears twice.
    #[error("route `{route}` is listed more than once in `routes`; remove the duplicate")]
    DuplicateRoute {
        /// The repeated route.
        route: String,
    },

    /// A `[limits]` value is outside its allowed range.
    #[error("`{key}` = {value} is out of range; use a value from {min} to {max}")]
    LimitOutOfRange {
        /// The key, such as `limits.memory_mb`.
        key: &'static str,
        /// The value found.
        value: i64,
        /// The smallest allowed value.
        min: u32,
        /// The largest allowed value.
        max: u32,
    },
}

/// Longest excerpt of outside text put into an error message, in characters.
const EXCERPT_CHARS: usize = 80;

/// Outside text made safe to quote in backticks in a message: control, zero-width and
/// bidirectional-override characters escaped (so hostile input cannot drive a terminal or
/// disguise itself), backticks escaped (so it cannot close the quote), and cut to
/// [`EXCERPT_CHARS`] characters.
pub(crate) fn excerpt(text: &str) -> String {
    sanitize(text, EXCERPT_CHARS, true)
}

/// A library's error message that may quote input (serde_json's, for example), made safe as
/// [`excerpt`] does but keeping its backticks and allowing `max_chars` characters.
pub(crate) fn sanitize_message(text: &str, max_chars: usize) -> String {
    sanitize(text, max_chars, false)
}

fn sanitize(text: &str, max_chars: usize, escape_backticks: bool) -> String {
    let mut out = String::new();
    for (count, c) in text.chars().enumerate() {
        if count >= max_chars {
            out.push('…');
            break;
        }
        if c == '`' && escape_backticks {
            out.push_str("\\`");
        } else if c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
        {
            // CVE-2021-42574 ("Trojan Source") is why bidirectional overrides are escaped.
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_escapes_control_characters_and_backticks() {
        assert_eq!(excerpt("a\u{1b}[31mb`c"), "a\\u{1b}[31mb\\`c");
    }

    #[test]
    fn sanitize_message_keeps_backticks_and_escapes_bidi_overrides() {
        assert_eq!(
            sanitize_message("field `a`\u{202e}", 80),
            "field `a`\\u{202e}"
        );
    }

    #[test]
    fn excerpt_shortens_long_input() {
        let long = "x".repeat(500);
        let short = excerpt(&long);
        assert_eq!(short.chars().count(), EXCERPT_CHARS + 1);
        assert!(short.ends_with('…'));
    }
}
