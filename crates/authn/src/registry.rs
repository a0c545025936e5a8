//! Who may be authenticated for which tenant: the registered issuers and API keys of every
//! tenant, swapped whole on every change (as the runtime policies are), and the one
//! function that turns a request's credential into a [`VerifiedCaller`].
//!
//! A tenant's issuers and keys authenticate callers of that tenant's functions only; which
//! of them a function accepts is its `[invoke] from` (`jwt:<issuer>`, `apikey`).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use http::{header, HeaderMap};
use serde_json::{Map, Value};

use crate::apikey::{PresentedKey, StoredKey, PREFIX};
use crate::jwt::{unverified_issuer, Issuer};
use crate::replay::ReplayCache;
use crate::AuthnError;

/// One stored API key of a tenant.
#[derive(Debug, Clone)]
pub struct ApiKeyEntry {
    pub name: String,
    pub stored: StoredKey,
    /// The functions it may invoke.
    pub functions: Vec<String>,
    /// Seconds since the Unix epoch; `None`: never expires.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Default)]
struct TenantCredentials {
    issuers: Vec<Arc<Issuer>>,
    /// By public id.
    keys: HashMap<String, ApiKeyEntry>,
}

/// Every tenant's issuers and API keys.
#[derive(Debug, Default)]
pub struct Registry {
    tenants: HashMap<String, TenantCredentials>,
    /// The `jti`s seen; kept across registry swaps by [`Authenticators::replace`].
    replay: Arc<ReplayCache>,
}

impl Registry {
    pub fn add_issuer(&mut self, tenant: &str, issuer: Issuer) {
        self.tenants
            .entry(tenant.to_owned())
            .or_default()
            .issuers
            .push(Arc::new(issuer));
    }

    pub fn add_api_key(&mut self, tenant: &str, key: ApiKeyEntry) {
        self.tenants
            .entry(tenant.to_owned())
            .or_default()
            .keys
            .insert(key.stored.id.clone(), key);
    }

    /// Authenticates `credential` for `function` of `tenant`, which accepts `accepts`, at
    /// `now` (seconds since the Unix epoch).
    pub fn authenticate(
        &self,
        tenant: &str,
        function: &str,
        accepts: &Accepts,
        credential: &Credential,
        now: i64,
    ) -> Result<VerifiedCaller, AuthnError> {
        let creds = self.tenants.get(tenant);
        match credential {
            Credential::Bearer(token) => {
                let iss = unverified_issuer(token)?;
                let issuer = creds
                    .into_iter()
                    .flat_map(|c| c.issuers.iter())
                    .find(|i| i.issuer == iss && accepts.jwt.iter().any(|n| *n == i.name))
                    .ok_or(AuthnError::UnknownIssuer)?;
                let token = issuer.verify(token, now)?;
                // After every other check, so a forged token never takes a slot.
                if issuer.require_jti {
                    let jti = token
                        .jti
                        .as_deref()
                        .ok_or(AuthnError::BadClaim { claim: "jti" })?;
                    self.replay
                        .record(tenant, &issuer.name, jti, token.remember_until, now)?;
                }
                Ok(VerifiedCaller::Jwt {
                    issuer: token.issuer_name,
                    subject: token.subject,
                    claims: Arc::new(token.claims),
                })
            }
            Credential::ApiKey(key) => {
                let entry = creds
                    .and_then(|c| c.keys.get(&key.id))
                    .ok_or(AuthnError::UnknownApiKey)?;
                if !key.matches(&entry.stored) {
                    return Err(AuthnError::WrongApiKey);
                }
                if entry.expires_at.is_some_and(|at| now >= at) {
                    return Err(AuthnError::ApiKeyExpired);
                }
                if !accepts.api_key || !entry.functions.iter().any(|f| f == function) {
                    return Err(AuthnError::WrongFunction);
                }
                Ok(VerifiedCaller::ApiKey {
                    name: entry.name.clone(),
                    id: entry.stored.id.clone(),
                })
            }
        }
    }
}

/// Which authenticated callers a function accepts (from its `[invoke] from`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepts {
    /// Issuer names (`jwt:<name>`).
    pub jwt: Vec<String>,
    /// `apikey`.
    pub api_key: bool,
}

impl Accepts {
    /// Whether the function accepts any authenticated caller.
    pub fn any(&self) -> bool {
        !self.jwt.is_empty() || self.api_key
    }
}

/// A credential as presented, not yet verified. Its `Debug` shows no secret.
pub enum Credential {
    Bearer(zeroize::Zeroizing<String>),
    ApiKey(PresentedKey),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Bearer(_) => f.write_str("Credential::Bearer(..)"),
            Credential::ApiKey(k) => write!(f, "Credential::ApiKey({})", k.id),
        }
    }
}

impl Credential {
    /// The credential of a request: `Authorization: Bearer <token>`, where a token
    /// starting `zfk_` is an API key and any other a JWT. `Ok(None)` without an
    /// `Authorization` header; more than one, another scheme or a malformed value is an
    /// error (never silently anonymous).
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Credential>, AuthnError> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(AuthnError::BadAuthorizationHeader);
        }
        if value.len() > crate::jose::MAX_TOKEN_BYTES + 16 {
            return Err(AuthnError::Oversize {
                max: crate::jose::MAX_TOKEN_BYTES,
            });
        }
        let value = value
            .to_str()
            .map_err(|_| AuthnError::BadAuthorizationHeader)?;
        // RFC 6750 §2.1: `Bearer` (the scheme is case-insensitive, RFC 9110 §11.1), one
        // space, then the token.
        let (scheme, token) = value
            .split_once(' ')
            .ok_or(AuthnError::BadAuthorizationHeader)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
            return Err(AuthnError::BadAuthorizationHeader);
        }
        if token.starts_with(PREFIX) {
            return PresentedKey::parse(token).map(|k| Some(Credential::ApiKey(k)));
        }
        Ok(Some(Credential::Bearer(zeroize::Zeroizing::new(
            token.to_owned(),
        ))))
    }

    /// `jwt` or `apikey`, for records.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Bearer(_) => "jwt",
            Credential::ApiKey(_) => "apikey",
        }
    }
}

/// A caller whose credential verified.
#[derive(Debug, Clone, PartialEq)]
pub enum VerifiedCaller {
    /// A JWT of the tenant's issuer `issuer` (its registered name) for `subject`.
    Jwt {
        issuer: String,
        subject: String,
        claims: Arc<Map<String, Value>>,
    },
    /// The tenant's API key `name` (public id `id`).
    ApiKey { name: String, id: String },
}

/// The registry in force, swapped whole on every change so that a request sees the old
/// set or the new one, never a mix.
#[derive(Clone, Default)]
pub struct Authenticators {
    current: Arc<RwLock<Arc<Registry>>>,
}

impl std::fmt::Debug for Authenticators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticators(..)")
    }
}

impl Authenticators {
    pub fn current(&self) -> Arc<Registry> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Swaps in `registry`, keeping the `jti`s seen so far (a changed registration does
    /// not reopen a replay window).
    pub fn replace(&self, mut registry: Registry) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        registry.replay = current.replay.clone();
        *current = Arc::new(registry);
    }
}
