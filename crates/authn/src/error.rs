//! Why an external caller was not authenticated, and why an issuer or key was refused at
//! registration. Messages never hold a token, a key or a claim value: only what failed.

/// Why a presented credential does not authenticate its caller. Each variant has a short
/// stable reason (`authn: <reason>` in the audit record).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    #[error("the request carries no credential this function accepts")]
    NoCredentials,
    #[error("the `Authorization` header is not one `Bearer <token>`")]
    BadAuthorizationHeader,
    #[error("the token is larger than {max} bytes")]
    Oversize { max: usize },
    #[error("the token is not a compact JWS of three base64url parts")]
    Malformed,
    #[error("the token has a part that is not canonical unpadded base64url")]
    NonCanonicalBase64,
    #[error("the token's header or claims are not one JSON object")]
    BadJson,
    #[error("the token's header or claims repeat a member")]
    DuplicateMember,
    #[error("the token's algorithm is `none`; unsigned tokens are never accepted")]
    AlgNone,
    #[error("the token's algorithm `{alg}` is not allowed for this issuer")]
    AlgNotAllowed { alg: String },
    #[error("the token's header names a key to fetch or embeds one (`{header}`); such keys are never used")]
    EmbeddedKey { header: &'static str },
    #[error("the token's header has `crit` extensions, which are not supported")]
    CritUnsupported,
    #[error("no key of the issuer matches the token's `kid`")]
    UnknownKey,
    #[error("the issuer's key for the token's `kid` cannot verify `{alg}`")]
    KeyMismatch { alg: String },
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's issuer is not registered for this function")]
    UnknownIssuer,
    #[error("the token's audience does not include this issuer's audience")]
    WrongAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (`nbf`)")]
    NotYetValid,
    #[error("the token was issued in the future (`iat`)")]
    IssuedInFuture,
    #[error("the token's claim `{claim}` is missing or has the wrong type")]
    BadClaim { claim: &'static str },
    #[error("the API key is not one this platform issued")]
    MalformedApiKey,
    #[error("no API key with this id exists (never issued, or revoked)")]
    UnknownApiKey,
    #[error("the API key does not match")]
    WrongApiKey,
    #[error("the API key has expired")]
    ApiKeyExpired,
    #[error("the API key is not valid for this function")]
    WrongFunction,
    #[error("the token's `jti` was used before; this issuer accepts each token once")]
    Replayed,
    #[error("too many unexpired tokens are remembered to refuse replays; retry later")]
    ReplayCacheFull,
    #[error("the token expires more than {max_secs} seconds from now, longer than an issuer that requires `jti` allows")]
    JtiLifetime { max_secs: i64 },
}

impl AuthnError {
    /// The short stable reason for audit records and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthnError::NoCredentials => "no_credentials",
            AuthnError::BadAuthorizationHeader => "bad_authorization_header",
            AuthnError::Oversize { .. } => "oversize",
            AuthnError::Malformed => "malformed",
            AuthnError::NonCanonicalBase64 => "non_canonical_base64",
            AuthnError::BadJson => "bad_json",
            AuthnError::DuplicateMember => "duplicate_member",
            AuthnError::AlgNone => "alg_none",
            AuthnError::AlgNotAllowed { .. } => "alg_not_allowed",
            AuthnError::EmbeddedKey { .. } => "embedded_key",
            AuthnError::CritUnsupported => "crit_unsupported",
            AuthnError::UnknownKey => "unknown_key",
            AuthnError::KeyMismatch { .. } => "key_mismatch",
            AuthnError::BadSignature => "bad_signature",
            AuthnError::UnknownIssuer => "unknown_issuer",
            AuthnError::WrongAudience => "wrong_audience",
            AuthnError::Expired => "expired",
            AuthnError::NotYetValid => "not_yet_valid",
            AuthnError::IssuedInFuture => "issued_in_future",
            AuthnError::BadClaim { .. } => "bad_claim",
            AuthnError::MalformedApiKey => "malformed_api_key",
            AuthnError::UnknownApiKey => "unknown_api_key",
            AuthnError::WrongApiKey => "wrong_api_key",
            AuthnError::ApiKeyExpired => "api_key_expired",
            AuthnError::Replayed => "replayed",
            AuthnError::ReplayCacheFull => "replay_cache_full",
            AuthnError::JtiLifetime { .. } => "jti_lifetime",
            AuthnError::WrongFunction => "wrong_function",
        }
    }
}

/// Why an issuer's registration (its JWKS, algorithms, leeway) or an API key request is
/// refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the JWKS is not a JSON object with a `keys` array ({problem})")]
    JwksShape { problem: String },
    #[error("the JWKS has {count} keys, more than the {max} allowed")]
    TooManyKeys { count: usize, max: usize },
    #[error("JWKS key {index}: {problem}")]
    Key { index: usize, problem: String },
    #[error("the JWKS has two keys with `kid` `{kid}`")]
    DuplicateKid { kid: String },
    #[error("the JWKS has no key usable for verifying signatures")]
    NoUsableKey,
    #[error("algorithm `{alg}` is not supported; use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA")]
    UnsupportedAlgorithm { alg: String },
    #[error("no algorithm allowed; name at least one")]
    NoAlgorithms,
    #[error("leeway of {secs} s is more than the {max} s allowed")]
    Leeway { secs: u64, max: u64 },
    #[error("the issuer `{0}` must be an `https://` URL")]
    IssuerUrl(String),
    #[error("the audience must be 1 to 256 printable characters")]
    Audience,
    #[error("the JWKS URL `{0}` must be an `https://` URL")]
    JwksUrl(String),
}
