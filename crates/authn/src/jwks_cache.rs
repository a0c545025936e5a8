//! The keys of an issuer registered with a JWKS URL (`--jwks-url`): served from memory,
//! refreshed in the background and when a token names a `kid` the cache does not hold, and
//! never lost to a failed fetch.
//!
//! The cache is a state machine with the time passed in and the network injected (a
//! [`JwksFetcher`]), so every rule below is unit-tested without sockets or sleeps:
//! - Keys are read from memory ([`JwksCache::keys`]); a request never waits on a fetch.
//! - Scheduled refresh: after a good fetch, when its `Cache-Control: max-age` says,
//!   clamped to [[`MIN_MAX_AGE_SECS`], [`MAX_MAX_AGE_SECS`]] ([`DEFAULT_MAX_AGE_SECS`]
//!   without one); after a failed one, [`RETRY_AFTER_FAILURE_SECS`] later.
//! - Unknown `kid`: a token naming a `kid` the keys lack is refused (401, `unknown_key`)
//!   at once, and asks for one refresh, granted at most once per
//!   [`MIN_REFRESH_INTERVAL_SECS`] per issuer and never while a fetch is in flight. So a
//!   flood of tokens with random kids costs the issuer at most one fetch per interval, and
//!   no request (with a known kid or not) is held while the fetch runs: a client whose
//!   token names a freshly rotated key retries once the refresh is in.
//! - A fetch that fails, or brings a document that does not validate (the same
//!   [`Jwks::parse`] as a registered file), keeps the keys in force; the outcome says why,
//!   for the log and the audit record.
//!
//! # Trust
//! Trusts the fetcher to have enforced the transport rules (https, checked addresses,
//! size and time limits; the server's `EgressJwksFetcher`). Trusts nothing in the
//! response: its body is parsed as strictly as a registered JWKS, its `max-age` clamped.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};

use crate::jwk::Jwks;
use crate::ConfigError;

/// Fewest seconds between two fetches of one issuer's keys asked for by unknown `kid`s.
pub const MIN_REFRESH_INTERVAL_SECS: i64 = 60;
/// Scheduled refresh interval without a `max-age`.
pub const DEFAULT_MAX_AGE_SECS: i64 = 3600;
/// A `max-age` below this is raised to it (an issuer cannot make the platform poll it).
pub const MIN_MAX_AGE_SECS: i64 = 300;
/// A `max-age` above this is lowered to it (a revoked key leaves within a day).
pub const MAX_MAX_AGE_SECS: i64 = 24 * 3600;
/// Seconds after a failed scheduled fetch before the next one.
pub const RETRY_AFTER_FAILURE_SECS: i64 = 300;
/// Largest JWKS document fetched or registered.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A JWKS document as fetched: its body and its `Cache-Control: max-age`, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedJwks {
    pub body: Vec<u8>,
    pub max_age: Option<u64>,
}

/// Why a JWKS could not be fetched or used. Messages name the URL's problem or the
/// network's, never the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("the JWKS URL `{url}` must be an `https://` URL; keys are never fetched in the clear")]
    NotHttps { url: String },
    #[error("the JWKS URL `{url}` is not a URL the platform fetches: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("fetching the JWKS failed: {reason}")]
    Network { reason: String },
    #[error(
        "the JWKS server answered {status}; only 200 is accepted and redirects are not followed"
    )]
    Status { status: u16 },
    #[error("the fetched JWKS is not valid: {0}")]
    Invalid(ConfigError),
}

/// Fetches a JWKS document (the server's egress-backed one, or a test's).
pub trait JwksFetcher: Send + Sync {
    fn fetch<'a>(
        &'a self,
        url: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<FetchedJwks, FetchError>> + Send + 'a>>;
}

/// Parses a fetched document as a registered one is parsed.
pub fn parse_fetched(fetched: &FetchedJwks) -> Result<Jwks, FetchError> {
    if fetched.body.len() > MAX_JWKS_BYTES {
        return Err(FetchError::Network {
            reason: format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"),
        });
    }
    Jwks::parse(&fetched.body).map_err(FetchError::Invalid)
}

/// `max-age` of a `Cache-Control` header value (RFC 9111 §5.2.2.1): the first
/// `max-age=<digits>` directive; `no-cache`/`no-store` read as 0 (clamped later to the
/// minimum interval). Anything unreadable is `None` (the default interval).
pub fn max_age(cache_control: &str) -> Option<u64> {
    let mut zero = false;
    for directive in cache_control.split(',').map(str::trim) {
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        let name = name.trim();
        if name.eq_ignore_ascii_case("max-age") {
            let value = value.trim().trim_matches('"');
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Too many digits for a u64 is "a very long time": the clamp takes it.
            return Some(value.parse().unwrap_or(u64::MAX));
        }
        if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            zero = true;
        }
    }
    zero.then_some(0)
}

/// The scheduled interval a good fetch with `max_age` earns.
fn interval(max_age: Option<u64>) -> i64 {
    match max_age {
        None => DEFAULT_MAX_AGE_SECS,
        Some(s) => i64::try_from(s)
            .unwrap_or(i64::MAX)
            .clamp(MIN_MAX_AGE_SECS, MAX_MAX_AGE_SECS),
    }
}

/// What a refresh did, for the store, the log and the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// A valid document is in force; `changed`: it differs from the one before. `document`
    /// is the body as fetched (public keys only: it validated), kept as the last good one.
    Updated { changed: bool, document: String },
    /// The keys in force are unchanged; `reason` says why the fetch was not used.
    Failed { reason: String },
}

/// What `auth jwt list` shows of a cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksStatus {
    /// Seconds since the Unix epoch of the last good fetch (`None`: none since start-up
    /// and none stored).
    pub fetched_at: Option<i64>,
    /// Why the last fetch failed, if it did.
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct State {
    keys: Arc<Jwks>,
    /// The document in force, as fetched (to tell a rotation from the same keys again).
    document: String,
    fetched_at: Option<i64>,
    last_error: Option<String>,
    /// When the last fetch started (`None`: never since this cache was made).
    last_attempt: Option<i64>,
    next_scheduled: i64,
    in_flight: bool,
    /// A token named an unknown `kid` and the rate limit let it ask for a refresh.
    requested: bool,
}

/// One issuer's fetched keys. See the module documentation for the rules.
pub struct JwksCache {
    url: String,
    state: RwLock<State>,
    /// Wakes whoever runs the refreshes (the server's refresher task).
    wake: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// A cache of `url` holding `document` (the last good one: fetched at registration, or
    /// stored), fetched at `fetched_at`; its first scheduled refresh is at `next_refresh`
    /// (now, after a restart: the stored keys may be old). `wake` is notified when a
    /// refresh is asked for.
    pub fn new(
        url: &str,
        document: &str,
        fetched_at: Option<i64>,
        next_refresh: i64,
        wake: Arc<tokio::sync::Notify>,
    ) -> Result<JwksCache, ConfigError> {
        let keys = Jwks::parse(document.as_bytes())?;
        Ok(JwksCache {
            url: url.to_owned(),
            state: RwLock::new(State {
                keys: Arc::new(keys),
                document: document.to_owned(),
                fetched_at,
                last_error: None,
                last_attempt: None,
                next_scheduled: next_refresh,
                in_flight: false,
                requested: false,
            }),
            wake,
        })
    }

    /// The scheduled refresh time a fetch with `max_age` at `now` earns.
    pub fn next_after(now: i64, max_age: Option<u64>) -> i64 {
        now.saturating_add(interval(max_age))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The keys in force.
    pub fn keys(&self) -> Arc<Jwks> {
        self.read().keys.clone()
    }

    pub fn status(&self) -> JwksStatus {
        let s = self.read();
        JwksStatus {
            fetched_at: s.fetched_at,
            last_error: s.last_error.clone(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// A token named a `kid` the keys lack: asks for a refresh if none is in flight or
    /// asked for, and none started within [`MIN_REFRESH_INTERVAL_SECS`]. Returns whether
    /// it asked. Never waits.
    pub fn note_unknown_kid(&self, now: i64) -> bool {
        let mut s = self.write();
        let recent = s
            .last_attempt
            .is_some_and(|at| now.saturating_sub(at) < MIN_REFRESH_INTERVAL_SECS);
        if s.in_flight || s.requested || recent {
            return false;
        }
        s.requested = true;
        drop(s);
        self.wake.notify_one();
        true
    }

    /// Whether a refresh should start at `now` (asked for, or scheduled and due) and none
    /// is in flight; if so, marks one in flight: the caller must then call
    /// [`JwksCache::finish_refresh`].
    pub fn begin_refresh(&self, now: i64) -> bool {
        let mut s = self.write();
        if s.in_flight || !(s.requested || now >= s.next_scheduled) {
            return false;
        }
        s.in_flight = true;
        s.requested = false;
        s.last_attempt = Some(now);
        true
    }

    /// Applies the result of the fetch [`JwksCache::begin_refresh`] started, at `now`.
    pub fn finish_refresh(
        &self,
        result: Result<FetchedJwks, FetchError>,
        now: i64,
    ) -> RefreshOutcome {
        let parsed = result.and_then(|f| {
            let keys = parse_fetched(&f)?;
            let document = String::from_utf8(f.body).map_err(|_| {
                FetchError::Invalid(ConfigError::JwksShape {
                    problem: "not UTF-8".into(),
                })
            })?;
            Ok((keys, document, f.max_age))
        });
        let mut s = self.write();
        s.in_flight = false;
        match parsed {
            Ok((keys, document, max_age)) => {
                let changed = *s.keys != keys;
                s.keys = Arc::new(keys);
                s.document.clone_from(&document);
                s.fetched_at = Some(now);
                s.last_error = None;
                s.next_scheduled = JwksCache::next_after(now, max_age);
                RefreshOutcome::Updated { changed, document }
            }
            Err(e) => {
                // INVARIANT: the keys in force are untouched by a failed fetch.
                let reason = e.to_string();
                s.last_error = Some(reason.clone());
                s.next_scheduled = now.saturating_add(RETRY_AFTER_FAILURE_SECS);
                RefreshOutcome::Failed { reason }
            }
        }
    }

    /// Runs one refresh if [`JwksCache::begin_refresh`] allows it at `now()`; `None` if it
    /// did not. `now` is read again when the fetch is over.
    pub async fn refresh_if_due(
        &self,
        fetcher: &dyn JwksFetcher,
        now: &(dyn Fn() -> i64 + Sync),
    ) -> Option<RefreshOutcome> {
        if !self.begin_refresh(now()) {
            return None;
        }
        Some(self.run_refresh(fetcher, now).await)
    }

    /// Fetches and applies the refresh a `true` from [`JwksCache::begin_refresh`] started.
    pub async fn run_refresh(
        &self,
        fetcher: &dyn JwksFetcher,
        now: &(dyn Fn() -> i64 + Sync),
    ) -> RefreshOutcome {
        // Dropped mid-fetch (shutdown, a cancelled or failed task), the guard clears the
        // in-flight mark, so the cache is never stuck refusing every later refresh.
        let guard = InFlight(self);
        let result = fetcher.fetch(&self.url).await;
        std::mem::forget(guard);
        self.finish_refresh(result, now())
    }
}

/// Clears the in-flight mark of a refresh that never finished.
struct InFlight<'a>(&'a JwksCache);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.write().in_flight = false;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::task::{Context, Poll, Waker};

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use ring::rand::SystemRandom;
    use ring::signature::{self, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    use super::*;
    use crate::{Algorithm, AuthnError, Issuer};

    const NOW: i64 = 1_800_000_000;
    const ISS: &str = "https://idp.example.test";
    const URL: &str = "https://idp.example.test/jwks";

    fn b64(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    /// A P-256 signing key published under `kid`.
    struct Signer {
        kid: &'static str,
        key: EcdsaKeyPair,
        rng: SystemRandom,
    }

    impl Signer {
        fn new(kid: &'static str) -> Signer {
            let rng = SystemRandom::new();
            let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
            Signer { kid, key, rng }
        }

        fn jwk(&self) -> serde_json::Value {
            let p = self.key.public_key().as_ref();
            json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig",
                   "x": b64(&p[1..33]), "y": b64(&p[33..])})
        }

        fn token_with_kid(&self, kid: &str) -> String {
            let header = json!({"alg": "ES256", "kid": kid}).to_string();
            let claims = json!({"iss": ISS, "aud": "api", "sub": "alice",
                                "exp": NOW + 100_000, "iat": NOW - 10})
            .to_string();
            let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
            let sig = self.key.sign(&self.rng, input.as_bytes()).unwrap();
            format!("{input}.{}", b64(sig.as_ref()))
        }

        fn token(&self) -> String {
            self.token_with_kid(self.kid)
        }
    }

    fn document(signers: &[&Signer]) -> String {
        json!({"keys": signers.iter().map(|s| s.jwk()).collect::<Vec<_>>()}).to_string()
    }

    /// A fetcher that answers what the test says and counts its calls.
    struct FakeFetcher {
        answer: Mutex<Result<FetchedJwks, FetchError>>,
        calls: AtomicUsize,
    }

    impl FakeFetcher {
        fn serving(doc: &str, max_age: Option<u64>) -> FakeFetcher {
            let f = FakeFetcher {
                answer: Mutex::new(Err(FetchError::Status { status: 500 })),
                calls: AtomicUsize::new(0),
            };
            f.serve(doc, max_age);
            f
        }

        fn serve(&self, doc: &str, max_age: Option<u64>) {
            *self.answer.lock().unwrap() = Ok(FetchedJwks {
                body: doc.as_bytes().to_vec(),
                max_age,
            });
        }

        fn fail(&self, error: FetchError) {
            *self.answer.lock().unwrap() = Err(error);
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl JwksFetcher for FakeFetcher {
        fn fetch<'a>(
            &'a self,
            url: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<FetchedJwks, FetchError>> + Send + 'a>> {
            assert_eq!(url, URL);
            self.calls.fetch_add(1, Ordering::SeqCst);
            let answer = self.answer.lock().unwrap().clone();
            Box::pin(async move { answer })
        }
    }

    /// Runs a future that never waits (the fake fetcher answers at once).
    fn ready<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the future waited"),
        }
    }

    fn setup(signers: &[&Signer]) -> (Arc<JwksCache>, Issuer) {
        let doc = document(signers);
        let cache = Arc::new(
            JwksCache::new(
                URL,
                &doc,
                Some(NOW),
                NOW + DEFAULT_MAX_AGE_SECS,
                Arc::new(tokio::sync::Notify::new()),
            )
            .unwrap(),
        );
        let jwks = crate::Jwks::parse(doc.as_bytes()).unwrap();
        let issuer = Issuer::new("idp", ISS, "api", vec![Algorithm::ES256], 0, jwks)
            .unwrap()
            .with_jwks_cache(cache.clone());
        (cache, issuer)
    }

    /// Every refresh the refresher would start at `now`.
    fn pump(cache: &JwksCache, fetcher: &FakeFetcher, now: i64) -> Option<RefreshOutcome> {
        ready(cache.refresh_if_due(fetcher, &move || now))
    }

    #[test]
    fn a_flood_of_unknown_kids_costs_at_most_one_fetch_per_interval() {
        let k1 = Signer::new("k1");
        let (cache, issuer) = setup(&[&k1]);
        let fetcher = FakeFetcher::serving(&document(&[&k1]), None);
        // Nothing is due and nothing asked: no fetch.
        assert_eq!(pump(&cache, &fetcher, NOW), None);
        for i in 0..1000 {
            let t = k1.token_with_kid(&format!("random-{i}"));
            assert_eq!(issuer.verify(&t, NOW).unwrap_err(), AuthnError::UnknownKey);
            // Requests keep being answered (from memory) while the refresh is pending.
            assert!(issuer.verify(&k1.token(), NOW).is_ok());
        }
        assert!(matches!(
            pump(&cache, &fetcher, NOW),
            Some(RefreshOutcome::Updated { changed: false, .. })
        ));
        assert_eq!(pump(&cache, &fetcher, NOW), None);
        assert_eq!(fetcher.calls(), 1);
        // Within the interval: refused, no fetch asked for.
        for now in [NOW + 1, NOW + MIN_REFRESH_INTERVAL_SECS - 1] {
            for i in 0..100 {
                let t = k1.token_with_kid(&format!("again-{i}"));
                assert_eq!(issuer.verify(&t, now).unwrap_err(), AuthnError::UnknownKey);
            }
            assert_eq!(pump(&cache, &fetcher, now), None);
        }
        assert_eq!(fetcher.calls(), 1);
        // After it: one more.
        let later = NOW + MIN_REFRESH_INTERVAL_SECS;
        for i in 0..100 {
            let t = k1.token_with_kid(&format!("later-{i}"));
            assert!(issuer.verify(&t, later).is_err());
        }
        assert!(pump(&cache, &fetcher, later).is_some());
        assert_eq!(pump(&cache, &fetcher, later), None);
        assert_eq!(fetcher.calls(), 2);
    }

    #[test]
    fn no_refresh_is_asked_for_while_one_is_in_flight() {
        let k1 = Signer::new("k1");
        let (cache, _) = setup(&[&k1]);
        assert!(cache.note_unknown_kid(NOW));
        assert!(!cache.note_unknown_kid(NOW), "asked twice");
        assert!(cache.begin_refresh(NOW));
        assert!(!cache.begin_refresh(NOW), "two fetches in flight");
        // In flight, past the interval: still only the one.
        assert!(!cache.note_unknown_kid(NOW + 2 * MIN_REFRESH_INTERVAL_SECS));
        cache.finish_refresh(Err(FetchError::Status { status: 503 }), NOW + 1);
        assert!(cache.note_unknown_kid(NOW + 2 * MIN_REFRESH_INTERVAL_SECS));
    }

    #[test]
    fn a_rotated_key_is_picked_up_by_the_unknown_kid_refresh() {
        let (k1, k2) = (Signer::new("k1"), Signer::new("k2"));
        let (cache, issuer) = setup(&[&k1]);
        let fetcher = FakeFetcher::serving(&document(&[&k2]), Some(600));
        assert_eq!(
            issuer.verify(&k2.token(), NOW).unwrap_err(),
            AuthnError::UnknownKey
        );
        match pump(&cache, &fetcher, NOW + 5) {
            Some(RefreshOutcome::Updated { changed, document }) => {
                assert!(changed);
                assert!(document.contains("\"k2\""), "{document}");
            }
            other => panic!("{other:?}"),
        }
        let token = issuer.verify(&k2.token(), NOW + 6).unwrap();
        assert_eq!(token.subject, "alice");
        // k1 left the set: its tokens are refused now.
        assert_eq!(
            issuer.verify(&k1.token(), NOW + 6).unwrap_err(),
            AuthnError::UnknownKey
        );
        assert_eq!(
            cache.status(),
            JwksStatus {
                fetched_at: Some(NOW + 5),
                last_error: None
            }
        );
        // The next scheduled refresh follows the document's max-age.
        assert!(!cache.begin_refresh(NOW + 5 + 599));
        assert!(cache.begin_refresh(NOW + 5 + 600));
    }

    #[test]
    fn a_failed_or_invalid_fetch_keeps_the_keys_in_force() {
        let k1 = Signer::new("k1");
        let (cache, issuer) = setup(&[&k1]);
        let fetcher = FakeFetcher::serving("", None);
        let private = {
            let mut jwk = k1.jwk();
            jwk["d"] = json!(b64(&[7; 32]));
            json!({"keys": [jwk]}).to_string()
        };
        let mut now = NOW + DEFAULT_MAX_AGE_SECS;
        for (answer, why) in [
            (
                Err(FetchError::Network {
                    reason: "connection refused".into(),
                }),
                "connection refused",
            ),
            (Err(FetchError::Status { status: 404 }), "answered 404"),
            (Ok("{\"keys\": []}".to_owned()), "no key usable"),
            (Ok("not json".to_owned()), "not a JSON object"),
            (Ok(private), "private"),
            (Ok("x".repeat(MAX_JWKS_BYTES + 1)), "larger than"),
        ] {
            match answer {
                Ok(doc) => fetcher.serve(&doc, None),
                Err(e) => fetcher.fail(e),
            }
            match pump(&cache, &fetcher, now) {
                Some(RefreshOutcome::Failed { reason }) => {
                    assert!(reason.contains(why), "{why}: {reason}");
                }
                other => panic!("{why}: {other:?}"),
            }
            assert!(issuer.verify(&k1.token(), now).is_ok(), "{why}");
            let status = cache.status();
            assert_eq!(status.fetched_at, Some(NOW), "{why}");
            assert!(status.last_error.unwrap().contains(why));
            // A failed scheduled fetch is retried later, not at once.
            assert_eq!(pump(&cache, &fetcher, now + 1), None);
            now += RETRY_AFTER_FAILURE_SECS;
        }
        // A good fetch clears the error.
        fetcher.serve(&document(&[&k1]), None);
        assert!(pump(&cache, &fetcher, now).is_some());
        assert_eq!(cache.status().last_error, None);
    }

    #[test]
    fn a_refresh_dropped_mid_fetch_does_not_block_the_next() {
        struct Never;
        impl JwksFetcher for Never {
            fn fetch<'a>(
                &'a self,
                _: &'a str,
            ) -> Pin<Box<dyn Future<Output = Result<FetchedJwks, FetchError>> + Send + 'a>>
            {
                Box::pin(std::future::pending())
            }
        }
        let k1 = Signer::new("k1");
        let (cache, _) = setup(&[&k1]);
        assert!(cache.note_unknown_kid(NOW));
        {
            let f = cache.refresh_if_due(&Never, &|| NOW);
            let mut f = std::pin::pin!(f);
            let polled = f.as_mut().poll(&mut Context::from_waker(Waker::noop()));
            assert!(polled.is_pending());
        }
        assert!(cache.note_unknown_kid(NOW + MIN_REFRESH_INTERVAL_SECS));
        assert!(cache.begin_refresh(NOW + MIN_REFRESH_INTERVAL_SECS));
    }

    #[test]
    fn max_age_is_read_and_clamped() {
        for (header, expected) in [
            ("max-age=600", Some(600)),
            ("public, max-age=7200, must-revalidate", Some(7200)),
            ("Max-Age=\"60\"", Some(60)),
            ("no-store", Some(0)),
            ("max-age=", None),
            ("max-age=-5", None),
            ("max-age=1e3", None),
            ("public", None),
            ("max-age=99999999999999999999999", Some(u64::MAX)),
        ] {
            assert_eq!(max_age(header), expected, "{header}");
        }
        for (age, after) in [
            (None, DEFAULT_MAX_AGE_SECS),
            (Some(0), MIN_MAX_AGE_SECS),
            (Some(10), MIN_MAX_AGE_SECS),
            (Some(900), 900),
            (Some(u64::MAX), MAX_MAX_AGE_SECS),
        ] {
            assert_eq!(JwksCache::next_after(NOW, age), NOW + after, "{age:?}");
        }
    }
}
