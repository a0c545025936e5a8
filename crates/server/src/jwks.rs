//! JWT issuers registered with a JWKS URL (`zerofn auth jwt add ... --jwks-url URL`): the
//! platform fetching the document, the caches of every such issuer, and the background
//! task that refreshes them, records each outcome in the store and audits failures.
//!
//! Fetching a URL a tenant named is the platform making an outbound request on a tenant's
//! say-so, so it is an SSRF surface. It goes through the egress gateway's own client
//! ([`zerofn_egress::EgressClient::send_for_platform`]) and nothing else: `https://` only
//! (an `http://` URL is refused by name, never fetched), the egress crate's strict URL
//! parser, resolution by the configured resolver (`--egress-dns`), every resolved address
//! range-checked with no range exempt (a URL resolving to 127.0.0.1 or 169.254.169.254 is
//! refused), the connection made to a checked address, certificates verified against
//! Mozilla's roots plus `--egress-ca-bundle`, no redirect followed (a 3xx is a failed
//! fetch), a response of at most [`MAX_JWKS_BYTES`] and [`FETCH_TIMEOUT`] in all. The
//! `Content-Type` is not trusted: the body is parsed as strictly as a registered file.
//!
//! The cache rules (when a refresh runs, that a failed one keeps the keys) are
//! `zerofn_authn::JwksCache`'s; this module runs the refreshes it asks for.
//!
//! # Trust
//! Trusts the platform's egress configuration and the store. Trusts nothing the JWKS
//! server sends. Records name the tenant, the issuer and the reason, never the document.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify};
use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome};
use zerofn_authn::{
    FetchError, FetchedJwks, JwksCache, JwksFetcher, RefreshOutcome, MAX_JWKS_BYTES,
    MIN_MAX_AGE_SECS,
};
use zerofn_egress::{EgressClient, EgressConfig, Flow, FunctionEgressLimits, Scheme, Target};
use zerofn_store::{JwtIssuerRow, Store};
use zerofn_types::TenantName;

use crate::control::ControlError;

/// The whole fetch: resolution, connection, TLS, response.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the refresher looks for a due scheduled refresh when nothing wakes it.
const TICK: Duration = Duration::from_secs(5);

/// The limits of one JWKS fetch: the platform's egress limits, lowered to these.
fn fetch_limits() -> FunctionEgressLimits {
    FunctionEgressLimits {
        connect: Some(Duration::from_secs(5)),
        first_byte: Some(Duration::from_secs(10)),
        total: Some(FETCH_TIMEOUT),
        response_bytes: Some(MAX_JWKS_BYTES),
        // Fetches of all issuers together: a tenant registering many issuers cannot make
        // the platform hold many connections.
        concurrent: Some(8),
    }
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Fetches JWKS documents through the egress gateway.
pub(crate) struct EgressJwksFetcher {
    /// `None` when the egress configuration did not load: every fetch is refused (fail
    /// closed), as every function's outbound request then is.
    client: Option<EgressClient>,
}

impl EgressJwksFetcher {
    pub(crate) fn new(config: &EgressConfig) -> EgressJwksFetcher {
        let client = match EgressClient::new(config) {
            Ok(c) => Some(c),
            Err(error) => {
                tracing::error!(%error, "egress is unavailable; no JWKS URL will be fetched");
                None
            }
        };
        EgressJwksFetcher { client }
    }

    async fn get(&self, url: &str) -> Result<FetchedJwks, FetchError> {
        let target = Target::parse(url).map_err(|e| FetchError::BadUrl {
            url: url.escape_debug().to_string(),
            reason: e.to_string(),
        })?;
        if target.scheme != Scheme::Https {
            return Err(FetchError::NotHttps {
                url: url.escape_debug().to_string(),
            });
        }
        let client = self.client.as_ref().ok_or_else(|| FetchError::Network {
            reason: "the platform's egress client is unavailable".into(),
        })?;
        let request = http::Request::get(target.path_and_query.as_str())
            .header(
                http::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .body(Bytes::new())
            .map_err(|e| FetchError::BadUrl {
                url: url.escape_debug().to_string(),
                reason: e.to_string(),
            })?;
        let mut flow = Flow::default();
        let response = client
            .send_for_platform("jwks", &fetch_limits(), &target, request, &mut flow)
            .await
            .map_err(|e| FetchError::Network {
                reason: e.to_string(),
            })?;
        // Redirects are never followed: the registered URL is the one trusted.
        if response.status() != http::StatusCode::OK {
            return Err(FetchError::Status {
                status: response.status().as_u16(),
            });
        }
        let max_age = response
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(zerofn_authn::max_age);
        Ok(FetchedJwks {
            body: response.into_body().to_vec(),
            max_age,
        })
    }
}

impl JwksFetcher for EgressJwksFetcher {
    fn fetch<'a>(
        &'a self,
        url: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<FetchedJwks, FetchError>> + Send + 'a>> {
        Box::pin(self.get(url))
    }
}

/// A document fetched and validated at registration.
pub(crate) struct RegisteredJwks {
    pub document: String,
    pub max_age: Option<u64>,
    pub fetched_at: i64,
}

type IssuerKey = (String, String);

/// The caches of every issuer registered with a URL, kept across registry rebuilds (so a
/// change to another issuer neither refetches nor forgets the rate limit), and the fetcher.
pub(crate) struct JwksIssuers {
    fetcher: Arc<dyn JwksFetcher>,
    caches: Mutex<HashMap<IssuerKey, Arc<JwksCache>>>,
    wake: Arc<Notify>,
}

impl JwksIssuers {
    pub(crate) fn new(fetcher: Arc<dyn JwksFetcher>) -> JwksIssuers {
        JwksIssuers {
            fetcher,
            caches: Mutex::new(HashMap::new()),
            wake: Arc::new(Notify::new()),
        }
    }

    fn caches(&self) -> std::sync::MutexGuard<'_, HashMap<IssuerKey, Arc<JwksCache>>> {
        self.caches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fetches `url` once and validates the document as a registered file is validated;
    /// refused with the reason otherwise.
    pub(crate) async fn fetch_for_registration(
        &self,
        url: &str,
    ) -> Result<RegisteredJwks, ControlError> {
        let refused = |e: FetchError| {
            ControlError::BadRequest(format!("the JWKS URL was not registered: {e}"))
        };
        let fetched = self.fetcher.fetch(url).await.map_err(refused)?;
        zerofn_authn::parse_fetched(&fetched).map_err(refused)?;
        let document = String::from_utf8(fetched.body).map_err(|_| {
            ControlError::BadRequest(
                "the JWKS URL was not registered: the document is not UTF-8".into(),
            )
        })?;
        Ok(RegisteredJwks {
            document,
            max_age: fetched.max_age,
            fetched_at: unix_now(),
        })
    }

    /// Starts the cache of a just-registered issuer from the document fetched at
    /// registration (its next refresh when that document's `max-age` says).
    pub(crate) fn start(&self, row: &JwtIssuerRow, fetched: &RegisteredJwks) {
        let Some(url) = &row.jwks_url else {
            return;
        };
        let next = JwksCache::next_after(fetched.fetched_at, fetched.max_age);
        match JwksCache::new(
            url,
            &fetched.document,
            Some(fetched.fetched_at),
            next,
            self.wake.clone(),
        ) {
            Ok(cache) => {
                self.caches()
                    .insert((row.tenant.clone(), row.name.clone()), Arc::new(cache));
            }
            Err(error) => {
                tracing::error!(tenant = %row.tenant, issuer = %row.name, %error, "a registered JWKS does not parse");
            }
        }
    }

    /// The cache of a stored issuer with a URL: the one in memory if its URL is the same,
    /// else a new one from the stored last good document, refreshed at once in the
    /// background unless that document is younger than the shortest refresh interval.
    pub(crate) fn cache_for(&self, row: &JwtIssuerRow) -> Result<Arc<JwksCache>, String> {
        let url = row.jwks_url.as_deref().ok_or("no JWKS URL")?;
        let key = (row.tenant.clone(), row.name.clone());
        let mut caches = self.caches();
        if let Some(c) = caches.get(&key).filter(|c| c.url() == url) {
            return Ok(c.clone());
        }
        let now = unix_now();
        let next = match row.jwks_fetched_at {
            Some(at) if now.saturating_sub(at) < MIN_MAX_AGE_SECS => {
                JwksCache::next_after(at, None)
            }
            _ => now,
        };
        let cache = Arc::new(
            JwksCache::new(url, &row.jwks, row.jwks_fetched_at, next, self.wake.clone())
                .map_err(|e| e.to_string())?,
        );
        caches.insert(key, cache.clone());
        Ok(cache)
    }

    /// Forgets the caches of issuers no longer stored.
    pub(crate) fn retain(&self, live: &HashSet<IssuerKey>) {
        self.caches().retain(|k, _| live.contains(k));
    }

    fn snapshot(&self) -> Vec<(IssuerKey, Arc<JwksCache>)> {
        self.caches()
            .iter()
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect()
    }
}

/// Refreshes every cache when it is due or asked for, until `shutdown`. Each fetch runs in
/// its own task (bounded by [`FETCH_TIMEOUT`]), so a slow issuer delays no other.
pub(crate) async fn refresh(
    issuers: Arc<JwksIssuers>,
    store: Store,
    audit: AuditLog,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let now = unix_now();
        for ((tenant, name), cache) in issuers.snapshot() {
            if !cache.begin_refresh(now) {
                continue;
            }
            let fetcher = issuers.fetcher.clone();
            let (store, audit) = (store.clone(), audit.clone());
            tokio::spawn(async move {
                let outcome = cache.run_refresh(fetcher.as_ref(), &unix_now).await;
                record(&store, &audit, &tenant, &name, cache.url(), outcome).await;
            });
        }
        // # Cancel safety
        // All three are cancel-safe: a `notify_one` before `notified()` exists is kept as
        // a permit (no wake-up is lost), the sleep is only a timer, and `changed` loses
        // nothing (the value is read after).
        tokio::select! {
            _ = issuers.wake.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Stores, logs and audits the outcome of one refresh.
async fn record(
    store: &Store,
    audit: &AuditLog,
    tenant: &str,
    name: &str,
    url: &str,
    outcome: RefreshOutcome,
) {
    let Ok(tenant_name) = TenantName::parse(tenant) else {
        return;
    };
    match outcome {
        RefreshOutcome::Updated { changed, document } => {
            if let Err(error) = store
                .set_jwks_fetched(&tenant_name, name, document, unix_now())
                .await
            {
                tracing::debug!(%tenant, issuer = %name, %error, "JWKS fetched for an issuer no longer stored");
                return;
            }
            if changed {
                tracing::info!(%tenant, issuer = %name, %url, "the issuer's JWKS changed");
                let record = AuditRecord::new("platform", Action::AuthJwksRefresh, Outcome::Allow)
                    .tenant(tenant)
                    .reason(format!("jwt:{name}: keys changed ({url})"));
                if let Err(error) = audit.append(record).await {
                    tracing::error!(%error, "auditing a JWKS change failed");
                }
            }
        }
        RefreshOutcome::Failed { reason } => {
            tracing::warn!(%tenant, issuer = %name, %url, %reason, "fetching the issuer's JWKS failed; its keys in force are kept");
            if store
                .set_jwks_error(&tenant_name, name, reason.clone())
                .await
                .is_err()
            {
                return;
            }
            let record = AuditRecord::new("platform", Action::AuthJwksRefresh, Outcome::Error)
                .tenant(tenant)
                .reason(format!("jwt:{name}: {reason}; the keys in force are kept"));
            if let Err(error) = audit.append(record).await {
                tracing::error!(%error, "auditing a failed JWKS fetch failed");
            }
        }
    }
}
