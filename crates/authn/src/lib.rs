#![forbid(unsafe_code)]
//! Authenticated ingress: proves who an external caller of the public gateway is.
//!
//! Two kinds of caller: a bearer of a JWT signed by an issuer the tenant registered
//! (`jwt:<issuer>` in a function's `[invoke] from`), and a holder of an API key the tenant
//! created (`apikey`). The gateway asks [`Registry::authenticate`] from the request head,
//! before any body is read; the [`VerifiedCaller`] it gets back becomes the Cedar principal
//! of the invoke decision. Modules: `jose.rs` (strict compact JWS and JSON parsing),
//! `jwk.rs` (algorithms, an issuer's public keys, the signature check), `jwt.rs` (issuer
//! registration and claim checks), `jwks_cache.rs` (the keys of an issuer registered with a
//! JWKS URL: cached, refreshed in the background and on an unknown `kid`, kept when a fetch
//! fails), `apikey.rs` (key creation, salted hashes, constant-time
//! comparison), `registry.rs` (every tenant's issuers and keys, the credential of a request),
//! `ratelimit.rs` (failures cost the caller), `mtls.rs` (client certificates: a tenant's
//! registered CAs and the platform bundle, `mtls:<name>` and `mtls:spiffe`).
//!
//! # Trust
//! Trusts the issuers and keys a tenant registered through the control plane (admitted by
//! the control policy) and the OS random source. Trusts nothing in a request: tokens are
//! bounded to 64 KiB before decoding, parsed strictly, verified only with registered keys
//! and allowlisted algorithms (never `none`, never HMAC), and their claims checked with a
//! bounded leeway. No token, key or secret is held in an error, a `Debug` output or a
//! record: errors name only what failed. For mTLS callers (`mtls.rs`) it trusts the CA
//! certificates a tenant registered (checked at registration) and the platform bundle;
//! a presented chain is validated per request against the callee tenant's CAs only.
//!
//! # Falls short
//! - A token naming a freshly rotated `kid` is refused (401) until the refresh it asked for
//!   is in (at most once a minute per issuer): the request is not held while the issuer's
//!   JWKS is fetched, so the client retries.
//! - The `jti` replay cache (`--require-jti`) is in memory: a restart forgets the tokens
//!   seen, so a token used before a restart can be used once more until it expires.
//! - HMAC algorithms are not supported (HMAC would make the issuer's secret the
//!   platform's). ES512 (P-521) is verified with RustCrypto's `p521`, not ring (which has
//!   no P-521): a second signature backend for that one algorithm.

mod apikey;
mod error;
mod jose;
mod jwk;
mod jwks_cache;
mod jwt;
mod mtls;
mod ratelimit;
mod registry;
mod replay;

pub use apikey::{NewApiKey, PresentedKey, StoredKey, PREFIX as API_KEY_PREFIX};
pub use error::{AuthnError, ConfigError};
pub use jose::MAX_TOKEN_BYTES;
pub use jwk::{Algorithm, Jwks, MAX_KEYS};
pub use jwks_cache::{
    max_age, parse_fetched, FetchError, FetchedJwks, JwksCache, JwksFetcher, JwksStatus,
    RefreshOutcome, DEFAULT_MAX_AGE_SECS, MAX_JWKS_BYTES, MAX_MAX_AGE_SECS, MIN_MAX_AGE_SECS,
    MIN_REFRESH_INTERVAL_SECS, RETRY_AFTER_FAILURE_SECS,
};
pub use jwt::{
    unverified_issuer, Issuer, VerifiedToken, DEFAULT_LEEWAY_SECS, MAX_LEEWAY_SECS,
    MAX_SUBJECT_BYTES,
};
pub use mtls::{
    rfc4514, CaCertificate, CaError, CertificateRefusal, MtlsAuthorities, MtlsRegistry,
    PlatformSvids, PlatformTrust, TrustedCa, VerifiedCertificate, MAX_CA_CERTS, MAX_CA_PEM_BYTES,
    MAX_CHAIN_LEN, PLATFORM_CA,
};
pub use ratelimit::FailureLimiter;
pub use registry::{Accepts, ApiKeyEntry, Authenticators, Credential, Registry, VerifiedCaller};
pub use replay::{ReplayCache, MAX_JTI_BYTES, MAX_JTI_LIFETIME_SECS, MAX_REPLAY_ENTRIES};
/// The time a chain is verified at.
pub use rustls::pki_types::UnixTime;

#[cfg(test)]
mod tests;
