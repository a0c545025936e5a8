//! The control plane of external callers: each tenant's JWT issuers and API keys, stored
//! and audited here, and the registry the gateway authenticates with, rebuilt whole from
//! the store after every change and at start-up.
//!
//! # Trust
//! Trusts the API to have authorized the operator (`tenant.manage` to change, `tenant.read`
//! to list). Checks every registration with `zerofn-authn` before storing it. A created API
//! key is returned once and never stored, logged or audited: records name keys by name and
//! public id.

use std::sync::Arc;

use serde::Deserialize;
use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome};
use zerofn_authn::{
    Algorithm, ApiKeyEntry, Authenticators, Issuer, Jwks, NewApiKey, Registry, StoredKey,
};
use zerofn_store::{ApiKeyRow, JwtIssuerRow, Store};
use zerofn_types::{FunctionName, TenantName};

use crate::clock::now;
use crate::control::ControlError;
use crate::jwks::{JwksIssuers, RegisteredJwks};

/// Algorithms allowed when a registration names none.
const DEFAULT_ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];
/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Longest API key lifetime: ten years.
const MAX_KEY_LIFETIME_SECS: u64 = 10 * 366 * 24 * 3600;

/// `POST /v1/tenants/{tenant}/auth/jwt`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddJwtIssuer {
    pub name: String,
    pub issuer: String,
    pub audience: String,
    /// The JWKS document.
    pub jwks: Option<serde_json::Value>,
    /// Where to fetch the JWKS from instead (`https://` only; see `jwks.rs`).
    pub jwks_url: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub leeway_secs: Option<u64>,
    /// Every token must carry a `jti`, accepted once.
    #[serde(default)]
    pub require_jti: bool,
}

/// `POST /v1/tenants/{tenant}/apikeys`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateApiKey {
    pub name: String,
    pub functions: Vec<String>,
    pub expires_in_secs: Option<u64>,
}

pub(crate) struct ExternalCallers {
    store: Store,
    audit: AuditLog,
    authn: Authenticators,
    /// The caches and fetcher of issuers registered with a JWKS URL.
    jwks: Arc<JwksIssuers>,
}

fn bad(message: impl Into<String>) -> ControlError {
    ControlError::BadRequest(message.into())
}

fn check_name(kind: &str, name: &str) -> Result<(), ControlError> {
    // The same rule as function names: a DNS label.
    FunctionName::parse(name).map(drop).map_err(|_| {
        bad(format!(
            "{kind} name `{}` is not 1 to 63 of a-z, 0-9 and `-`",
            name.escape_debug()
        ))
    })
}

fn issuer_of(row: &JwtIssuerRow) -> Result<Issuer, String> {
    let jwks = Jwks::parse(row.jwks.as_bytes()).map_err(|e| e.to_string())?;
    let algorithms = row
        .algorithms
        .split(',')
        .map(Algorithm::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Issuer::new(
        &row.name,
        &row.issuer,
        &row.audience,
        algorithms,
        row.leeway_secs,
        jwks,
    )
    .map(|i| i.with_require_jti(row.require_jti))
    .map_err(|e| e.to_string())
}

impl ExternalCallers {
    pub(crate) fn new(store: Store, audit: AuditLog, jwks: Arc<JwksIssuers>) -> ExternalCallers {
        ExternalCallers {
            store,
            audit,
            authn: Authenticators::default(),
            jwks,
        }
    }

    /// The registry in force, shared with the gateway.
    pub(crate) fn authenticators(&self) -> &Authenticators {
        &self.authn
    }

    /// Rebuilds the registry from the store. A stored issuer that no longer parses is
    /// left out (its callers are refused) and logged: fail closed.
    pub(crate) async fn reload(&self) -> Result<(), ControlError> {
        let mut registry = Registry::default();
        let rows = self.store.jwt_issuers(None).await?;
        self.jwks.retain(
            &rows
                .iter()
                .filter(|r| r.jwks_url.is_some())
                .map(|r| (r.tenant.clone(), r.name.clone()))
                .collect(),
        );
        for row in rows {
            match issuer_of(&row).and_then(|i| self.with_fetched_keys(&row, i)) {
                Ok(issuer) => registry.add_issuer(&row.tenant, issuer),
                Err(error) => {
                    tracing::error!(tenant = %row.tenant, issuer = %row.name, %error, "stored JWT issuer does not parse; its tokens are refused");
                }
            }
        }
        for row in self.store.api_keys(None).await? {
            registry.add_api_key(
                &row.tenant,
                ApiKeyEntry {
                    name: row.name,
                    stored: StoredKey {
                        id: row.key_id,
                        salt: row.salt,
                        hash: row.hash,
                    },
                    functions: row.functions,
                    expires_at: row.expires_at,
                },
            );
        }
        self.authn.replace(registry);
        Ok(())
    }

    async fn refused<T>(
        &self,
        record: AuditRecord,
        error: ControlError,
    ) -> Result<T, ControlError> {
        crate::control::audit_refusal(&self.audit, record, error).await
    }

    pub(crate) async fn add_issuer(
        &self,
        actor: &str,
        tenant: &TenantName,
        req: AddJwtIssuer,
    ) -> Result<JwtIssuerRow, ControlError> {
        let record = AuditRecord::new(actor, Action::AuthIssuerAdd, Outcome::Deny).tenant(tenant);
        let fetched = match self.fetch_registered_jwks(&req).await {
            Ok(f) => f,
            Err(e) => return self.refused(record, e).await,
        };
        let row = match self.check_issuer(tenant, req, fetched.as_ref()) {
            Ok(row) => row,
            Err(e) => return self.refused(record, e).await,
        };
        if let Err(e) = self.store.jwt_issuers(Some(tenant)).await.and_then(|rows| {
            match rows.iter().any(|r| r.name == row.name) {
                true => Err(zerofn_store::StoreError::IssuerExists {
                    tenant: tenant.to_string(),
                    name: row.name.clone(),
                }),
                false => Ok(()),
            }
        }) {
            return self.refused(record, e.into()).await;
        }
        self.audit
            .append(
                AuditRecord::new(actor, Action::AuthIssuerAdd, Outcome::Allow)
                    .tenant(tenant)
                    .reason(match &row.jwks_url {
                        None => format!("jwt:{} ({})", row.name, row.issuer),
                        Some(url) => format!("jwt:{} ({}), keys from {url}", row.name, row.issuer),
                    }),
            )
            .await?;
        self.store.add_jwt_issuer(tenant, row.clone()).await?;
        if let Some(fetched) = &fetched {
            self.jwks.start(&row, fetched);
        }
        self.reload().await?;
        Ok(row)
    }

    /// Checks a registration; `fetched` is the document fetched from its `jwks_url`
    /// ([`ExternalCallers::fetch_registered_jwks`]).
    pub(crate) fn check_issuer(
        &self,
        tenant: &TenantName,
        req: AddJwtIssuer,
        fetched: Option<&RegisteredJwks>,
    ) -> Result<JwtIssuerRow, ControlError> {
        check_name("issuer", &req.name)?;
        let (jwks, jwks_url, jwks_fetched_at) = jwks_source(req.jwks, req.jwks_url, fetched)?;
        if jwks.len() > MAX_JWKS_BYTES {
            return Err(bad(format!(
                "the JWKS is larger than {MAX_JWKS_BYTES} bytes"
            )));
        }
        let algorithms = match req.algorithms {
            None => DEFAULT_ALGORITHMS.to_vec(),
            Some(names) => names
                .iter()
                .map(|n| Algorithm::parse(n.trim()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?,
        };
        let leeway = req.leeway_secs.unwrap_or(zerofn_authn::DEFAULT_LEEWAY_SECS);
        let parsed = Jwks::parse(jwks.as_bytes()).map_err(|e| bad(e.to_string()))?;
        let issuer = Issuer::new(
            &req.name,
            &req.issuer,
            &req.audience,
            algorithms.clone(),
            leeway,
            parsed,
        )
        .map_err(|e| bad(e.to_string()))?;
        Ok(JwtIssuerRow {
            tenant: tenant.to_string(),
            name: issuer.name,
            issuer: issuer.issuer,
            audience: issuer.audience,
            algorithms: algorithms
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(","),
            leeway_secs: leeway,
            require_jti: req.require_jti,
            jwks,
            added_at: now(),
            jwks_url,
            jwks_fetched_at,
            jwks_error: None,
        })
    }

    pub(crate) async fn remove_issuer(
        &self,
        actor: &str,
        tenant: &TenantName,
        name: &str,
    ) -> Result<(), ControlError> {
        let record = AuditRecord::new(actor, Action::AuthIssuerRemove, Outcome::Deny)
            .tenant(tenant)
            .reason(format!("jwt:{}", name.escape_debug()));
        match self.store.jwt_issuers(Some(tenant)).await {
            Ok(rows) if rows.iter().any(|r| r.name == name) => {}
            Ok(_) => {
                let e = zerofn_store::StoreError::NoSuchIssuer {
                    tenant: tenant.to_string(),
                    name: name.escape_debug().to_string(),
                };
                return self.refused(record, e.into()).await;
            }
            Err(e) => return self.refused(record, e.into()).await,
        }
        self.audit
            .append(
                AuditRecord::new(actor, Action::AuthIssuerRemove, Outcome::Allow)
                    .tenant(tenant)
                    .reason(format!("jwt:{name}")),
            )
            .await?;
        self.store.remove_jwt_issuer(tenant, name).await?;
        self.reload().await
    }

    pub(crate) async fn issuers(
        &self,
        tenant: &TenantName,
    ) -> Result<Vec<JwtIssuerRow>, ControlError> {
        Ok(self.store.jwt_issuers(Some(tenant)).await?)
    }

    /// Creates a key; the answer holds the key, the one time it is ever shown.
    pub(crate) async fn create_key(
        &self,
        actor: &str,
        tenant: &TenantName,
        req: CreateApiKey,
    ) -> Result<(ApiKeyRow, String), ControlError> {
        let record = AuditRecord::new(actor, Action::ApiKeyCreate, Outcome::Deny).tenant(tenant);
        if let Err(e) = check_name("API key", &req.name) {
            return self.refused(record, e).await;
        }
        if req.functions.is_empty() || req.functions.len() > 64 {
            return self
                .refused(
                    record,
                    bad("name 1 to 64 functions the key may invoke (`--functions a,b`)"),
                )
                .await;
        }
        for f in &req.functions {
            if let Err(e) = check_name("function", f) {
                return self.refused(record, e).await;
            }
        }
        let now_unix = time::OffsetDateTime::now_utc().unix_timestamp();
        let expires_at = match req.expires_in_secs {
            None => None,
            Some(s) if s == 0 || s > MAX_KEY_LIFETIME_SECS => {
                return self
                    .refused(
                        record,
                        bad("`expires_in` must be between 1 second and 10 years"),
                    )
                    .await;
            }
            Some(s) => Some(now_unix.saturating_add(i64::try_from(s).unwrap_or(i64::MAX))),
        };
        let key = NewApiKey::generate();
        let row = ApiKeyRow {
            tenant: tenant.to_string(),
            name: req.name,
            key_id: key.stored.id.clone(),
            salt: key.stored.salt.clone(),
            hash: key.stored.hash.clone(),
            functions: req.functions,
            expires_at,
            created_at: now(),
        };
        if let Err(e) = self.store.api_keys(Some(tenant)).await.and_then(|rows| {
            match rows.iter().any(|r| r.name == row.name) {
                true => Err(zerofn_store::StoreError::ApiKeyExists {
                    tenant: tenant.to_string(),
                    name: row.name.clone(),
                }),
                false => Ok(()),
            }
        }) {
            return self
                .refused(record.reason(row.name.clone()), e.into())
                .await;
        }
        self.audit
            .append(
                AuditRecord::new(actor, Action::ApiKeyCreate, Outcome::Allow)
                    .tenant(tenant)
                    .reason(format!(
                        "apikey:{} ({}) for {}",
                        row.name,
                        row.key_id,
                        row.functions.join(",")
                    )),
            )
            .await?;
        self.store.add_api_key(tenant, row.clone()).await?;
        self.reload().await?;
        Ok((row, key.reveal().to_owned()))
    }

    pub(crate) async fn revoke_key(
        &self,
        actor: &str,
        tenant: &TenantName,
        name: &str,
    ) -> Result<String, ControlError> {
        let record = AuditRecord::new(actor, Action::ApiKeyRevoke, Outcome::Deny)
            .tenant(tenant)
            .reason(format!("apikey:{}", name.escape_debug()));
        let id = match self.store.api_keys(Some(tenant)).await {
            Ok(rows) => match rows.into_iter().find(|r| r.name == name) {
                Some(r) => r.key_id,
                None => {
                    let e = zerofn_store::StoreError::NoSuchApiKey {
                        tenant: tenant.to_string(),
                        name: name.escape_debug().to_string(),
                    };
                    return self.refused(record, e.into()).await;
                }
            },
            Err(e) => return self.refused(record, e.into()).await,
        };
        self.audit
            .append(
                AuditRecord::new(actor, Action::ApiKeyRevoke, Outcome::Allow)
                    .tenant(tenant)
                    .reason(format!("apikey:{name} ({id})")),
            )
            .await?;
        self.store.revoke_api_key(tenant, name).await?;
        self.reload().await?;
        Ok(id)
    }

    pub(crate) async fn keys(&self, tenant: &TenantName) -> Result<Vec<ApiKeyRow>, ControlError> {
        Ok(self.store.api_keys(Some(tenant)).await?)
    }
}

/// The JWKS of a registration, exactly one of a document and a URL (whose document
/// `fetched` is): the document kept, the URL, when the document was fetched.
type JwksSource = (String, Option<String>, Option<i64>);

fn jwks_source(
    jwks: Option<serde_json::Value>,
    url: Option<String>,
    fetched: Option<&RegisteredJwks>,
) -> Result<JwksSource, ControlError> {
    match (jwks, url, fetched) {
        (Some(doc), None, _) => Ok((doc.to_string(), None, None)),
        (None, Some(url), Some(f)) => Ok((f.document.clone(), Some(url), Some(f.fetched_at))),
        (Some(_), Some(_), _) => Err(bad(
            "give the JWKS either as a document (`--jwks FILE`) or as a URL (`--jwks-url URL`), not both",
        )),
        (None, Some(_), None) => Err(ControlError::Internal(
            "a JWKS URL was not fetched before the registration was checked".into(),
        )),
        (None, None, _) => Err(bad(
            "a JWKS is required (`--jwks FILE` or `--jwks-url URL`)",
        )),
    }
}

impl ExternalCallers {
    /// For a registration with a `jwks_url`: fetches it once through the egress gateway
    /// and validates the document (`jwks.rs`); `None` for a registration with a document.
    /// Nothing is stored here: a failure refuses the registration with the reason.
    pub(crate) async fn fetch_registered_jwks(
        &self,
        req: &AddJwtIssuer,
    ) -> Result<Option<RegisteredJwks>, ControlError> {
        match (&req.jwks, &req.jwks_url) {
            (None, Some(url)) => {
                // The cheap refusals first: a registration refused anyway makes no
                // outbound request.
                check_name("issuer", &req.name)?;
                if let Some(names) = &req.algorithms {
                    for n in names {
                        Algorithm::parse(n.trim()).map_err(|e| bad(e.to_string()))?;
                    }
                }
                self.jwks.fetch_for_registration(url).await.map(Some)
            }
            // Both, or neither: `check_issuer` refuses it without a fetch.
            _ => Ok(None),
        }
    }

    /// An issuer with a `jwks_url` takes its keys from its cache.
    fn with_fetched_keys(&self, row: &JwtIssuerRow, issuer: Issuer) -> Result<Issuer, String> {
        if row.jwks_url.is_none() {
            return Ok(issuer);
        }
        Ok(issuer.with_jwks_cache(self.jwks.cache_for(row)?))
    }

    /// The refresher's share of the callers: caches, store, audit.
    pub(crate) fn jwks_issuers(&self) -> &Arc<JwksIssuers> {
        &self.jwks
    }
}

/// Kept for the API's answers.
pub(crate) type Shared = Arc<ExternalCallers>;
