//! JWT bearer tokens of a tenant-registered issuer (RFC 7519, RFC 8725 "JWT Best Current
//! Practices"): the JWS is checked by [`Jwks`], then the claims.
//!
//! Every check holds whatever the token says: the algorithm must be on the issuer's
//! allowlist (RFC 8725 §3.1), `none` in any spelling is refused by name, `jku`/`x5u`/`jwk`
//! headers are refused (never fetched, never used: RFC 8725 §3.10), `crit` is refused (no
//! extension is understood, RFC 7515 §4.1.11), `iss` must equal the issuer, `aud` must
//! contain the audience (RFC 7519 §4.1.3, string or array), `exp` is required, and `exp`,
//! `nbf` and `iat` are checked with the issuer's leeway of at most [`MAX_LEEWAY_SECS`].
//!
//! # Trust
//! Trusts the issuer's registered keys and configuration; nothing in the token.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::jose::{object, parse_compact, strict_value};
use crate::jwk::{Algorithm, Jwks};
use crate::jwks_cache::JwksCache;
use crate::{AuthnError, ConfigError};

/// Largest clock-skew leeway an issuer may have.
pub const MAX_LEEWAY_SECS: u64 = 300;
/// Default leeway.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;
/// Longest `sub` accepted (it becomes part of a policy entity id).
pub const MAX_SUBJECT_BYTES: usize = 256;

/// A tenant's registered token issuer, ready to verify.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// The tenant's name for it (`jwt:<name>` in `[invoke] from`).
    pub name: String,
    /// The exact `iss` its tokens carry.
    pub issuer: String,
    /// The `aud` its tokens must include.
    pub audience: String,
    pub algorithms: Vec<Algorithm>,
    pub leeway_secs: u64,
    pub jwks: Jwks,
    /// Whether every token must carry a `jti`, accepted once (`--require-jti`).
    pub require_jti: bool,
    /// For an issuer registered with a JWKS URL: the fetched keys, used instead of
    /// `jwks` (which is then the document the cache started from).
    pub cache: Option<Arc<JwksCache>>,
}

impl Issuer {
    /// Checks a registration; `algorithms` must be non-empty and `leeway_secs` at most
    /// [`MAX_LEEWAY_SECS`].
    pub fn new(
        name: &str,
        issuer: &str,
        audience: &str,
        algorithms: Vec<Algorithm>,
        leeway_secs: u64,
        jwks: Jwks,
    ) -> Result<Issuer, ConfigError> {
        if !issuer.starts_with("https://")
            || issuer.len() > 512
            || issuer.contains(char::is_whitespace)
        {
            return Err(ConfigError::IssuerUrl(issuer.escape_debug().to_string()));
        }
        if audience.is_empty() || audience.len() > 256 || audience.chars().any(|c| c.is_control()) {
            return Err(ConfigError::Audience);
        }
        if algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithms);
        }
        if leeway_secs > MAX_LEEWAY_SECS {
            return Err(ConfigError::Leeway {
                secs: leeway_secs,
                max: MAX_LEEWAY_SECS,
            });
        }
        Ok(Issuer {
            name: name.to_owned(),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            algorithms,
            leeway_secs,
            jwks,
            require_jti: false,
            cache: None,
        })
    }

    /// Requires (or not) a `jti` in every token, each accepted once: tokens must then
    /// expire within [`crate::MAX_JTI_LIFETIME_SECS`].
    pub fn with_require_jti(mut self, require_jti: bool) -> Issuer {
        self.require_jti = require_jti;
        self
    }

    /// Takes its keys from `cache` (an issuer registered with `--jwks-url`).
    pub fn with_jwks_cache(mut self, cache: Arc<JwksCache>) -> Issuer {
        self.cache = Some(cache);
        self
    }

    /// Verifies `token` at `now` (seconds since the Unix epoch).
    pub fn verify(&self, token: &str, now: i64) -> Result<VerifiedToken, AuthnError> {
        let payload = self.verify_jws_at(token, Some(now))?;
        let claims = object(&payload)?;
        self.check_claims(claims, now)
    }

    /// The JWS layer alone: header checks and signature; returns the payload.
    pub fn verify_jws(&self, token: &str) -> Result<Vec<u8>, AuthnError> {
        self.verify_jws_at(token, None)
    }

    /// The JWS layer; with `now`, a `kid` the fetched keys lack asks the cache for a
    /// refresh (rate-limited there; this token is refused either way).
    fn verify_jws_at(&self, token: &str, now: Option<i64>) -> Result<Vec<u8>, AuthnError> {
        let jws = parse_compact(token)?;
        let alg_name = check_header(&jws.header)?;
        let alg = Algorithm::parse(alg_name)
            .ok()
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| AuthnError::AlgNotAllowed {
                alg: alg_name
                    .chars()
                    .take(16)
                    .collect::<String>()
                    .escape_debug()
                    .to_string(),
            })?;
        let kid = match jws.header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(AuthnError::Malformed),
        };
        match &self.cache {
            None => self
                .jwks
                .verify(kid, alg, jws.signing_input, &jws.signature)?,
            Some(cache) => {
                let keys = cache.keys();
                if let (Some(kid), Some(now)) = (kid, now) {
                    if !keys.has_kid(kid) {
                        cache.note_unknown_kid(now);
                        return Err(AuthnError::UnknownKey);
                    }
                }
                keys.verify(kid, alg, jws.signing_input, &jws.signature)?
            }
        }
        Ok(jws.payload)
    }

    fn check_claims(
        &self,
        claims: Map<String, Value>,
        now: i64,
    ) -> Result<VerifiedToken, AuthnError> {
        let leeway = i64::try_from(self.leeway_secs).unwrap_or(0);
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == self.issuer => {}
            Some(Value::String(_)) => return Err(AuthnError::UnknownIssuer),
            _ => return Err(AuthnError::BadClaim { claim: "iss" }),
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(a)) => *a == self.audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(&self.audience)),
            _ => false,
        };
        if !audience_ok {
            return Err(AuthnError::WrongAudience);
        }
        let exp = time_claim(&claims, "exp")?.ok_or(AuthnError::BadClaim { claim: "exp" })?;
        if now > exp.saturating_add(leeway) {
            return Err(AuthnError::Expired);
        }
        if let Some(nbf) = time_claim(&claims, "nbf")? {
            if now.saturating_add(leeway) < nbf {
                return Err(AuthnError::NotYetValid);
            }
        }
        if let Some(iat) = time_claim(&claims, "iat")? {
            if iat > now.saturating_add(leeway) {
                return Err(AuthnError::IssuedInFuture);
            }
        }
        // Read only for an issuer that requires it (others' tokens are unchanged).
        let jti = match claims.get("jti") {
            _ if !self.require_jti => None,
            Some(Value::String(j)) if !j.is_empty() && j.len() <= crate::MAX_JTI_BYTES => {
                Some(j.clone())
            }
            _ => return Err(AuthnError::BadClaim { claim: "jti" }),
        };
        if self.require_jti && exp.saturating_sub(now) > crate::MAX_JTI_LIFETIME_SECS {
            return Err(AuthnError::JtiLifetime {
                max_secs: crate::MAX_JTI_LIFETIME_SECS,
            });
        }
        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_SUBJECT_BYTES => s.clone(),
            _ => return Err(AuthnError::BadClaim { claim: "sub" }),
        };
        Ok(VerifiedToken {
            issuer_name: self.name.clone(),
            subject,
            claims,
            jti,
            remember_until: exp.saturating_add(leeway),
        })
    }
}

/// A NumericDate claim (RFC 7519 §2: seconds, possibly fractional); absent is `None`.
fn time_claim(claims: &Map<String, Value>, claim: &'static str) -> Result<Option<i64>, AuthnError> {
    match claims.get(claim) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    // Truncation toward zero; out-of-range floats saturate.
                    #[allow(clippy::cast_possible_truncation)]
                    Some(f) if f.is_finite() => Ok(Some(f.floor() as i64)),
                    _ => Err(AuthnError::BadClaim { claim }),
                }
            }
        }
        Some(_) => Err(AuthnError::BadClaim { claim }),
    }
}

/// The checks of a JWS header that hold for every issuer; returns the `alg` as written.
fn check_header(header: &Map<String, Value>) -> Result<&str, AuthnError> {
    let alg_name = match header.get("alg") {
        Some(Value::String(a)) => a.as_str(),
        _ => return Err(AuthnError::Malformed),
    };
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(AuthnError::AlgNone);
    }
    for name in ["jku", "x5u", "jwk"] {
        if header.contains_key(name) {
            return Err(AuthnError::EmbeddedKey { header: name });
        }
    }
    if header.contains_key("crit") {
        return Err(AuthnError::CritUnsupported);
    }
    Ok(alg_name)
}

/// The unverified `iss` of a token, to pick which registered issuer verifies it. Only a
/// selector: the chosen issuer then checks the signature and `iss` itself.
/// The header checks that hold for every issuer run first, so a token refused for them
/// is refused for that reason whichever issuer it names.
pub fn unverified_issuer(token: &str) -> Result<String, AuthnError> {
    let jws = parse_compact(token)?;
    check_header(&jws.header)?;
    match strict_value(&jws.payload)? {
        Value::Object(m) => match m.get("iss") {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(AuthnError::BadClaim { claim: "iss" }),
        },
        _ => Err(AuthnError::BadJson),
    }
}

/// A token whose signature and claims verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The tenant's name of the issuer.
    pub issuer_name: String,
    /// `sub`.
    pub subject: String,
    /// Every claim, as verified.
    pub claims: Map<String, Value>,
    /// `jti`, if the token has one.
    pub jti: Option<String>,
    /// Until when the token is valid (`exp` plus the leeway): how long a `jti` must be
    /// remembered.
    pub remember_until: i64,
}
