//! Request rate and concurrency limits per function (its manifest's
//! `[limits] rate_per_second`, `burst`, `max_concurrency`) and per tenant
//! (`zerofn tenant limits`), so that one tenant's or one function's load
//! cannot take every instance, every body byte and every audit write from
//! the others.
//!
//! A rate is a token bucket, kept as GCRA (the generic cell rate
//! algorithm, ITU-T I.371 §4.4.2; the "virtual scheduling" form): one
//! `AtomicU64` per bucket holds the theoretical arrival time of the next
//! request in nanoseconds since the limiter was built, updated with one
//! compare-and-swap, so the hot path takes no lock. A concurrency cap is
//! one `AtomicU32` counter with a guard that gives the slot back on drop.
//!
//! The limiters of the functions are looked up in an immutable map (one
//! `Arc` clone per request, as the route table is); a function whose
//! manifest limits differ from its limiter's (a new deployment) gets a new
//! limiter on its first request, and limiters of functions no longer
//! served are dropped then.
//!
//! # Trust
//! Trusts the manifest's limits (admitted, signed) and the control plane's
//! tenant limits (an operator's platform-wide decision). Trusts nothing a
//! caller says: the limits are keyed by the routed function and its tenant,
//! never by a header.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use zerofn_audit::Outcome;
use zerofn_sandbox::LoadedFunction;
use zerofn_telemetry::TraceId;
use zerofn_types::InvocationId;

use crate::caller::Caller;
use crate::gateway::Gateway;
use crate::invoke::invoke_record;
use crate::routes::RouteTable;

/// A rate limit: `rate` requests per second on average, up to `burst` at
/// once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

/// The limits of one key (a function or a tenant); `None` limits nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitSpec {
    pub rate: Option<Rate>,
    pub max_concurrency: Option<u32>,
}

impl LimitSpec {
    /// From a rate, its burst (default: the rate) and a concurrency cap.
    /// Zeros are treated as "no limit" (the manifest and the control plane
    /// refuse them before they get here).
    pub fn new(
        rate_per_second: Option<u32>,
        burst: Option<u32>,
        max_concurrency: Option<u32>,
    ) -> LimitSpec {
        let rate = rate_per_second.filter(|&r| r > 0).map(|per_second| Rate {
            per_second,
            burst: burst.filter(|&b| b > 0).unwrap_or(per_second),
        });
        LimitSpec {
            rate,
            max_concurrency: max_concurrency.filter(|&c| c > 0),
        }
    }

    fn of_function(function: &LoadedFunction) -> LimitSpec {
        let l = &function.artifact().manifest().limits;
        LimitSpec::new(l.rate_per_second, l.burst, l.max_concurrency)
    }

    pub fn is_unlimited(&self) -> bool {
        self.rate.is_none() && self.max_concurrency.is_none()
    }
}

/// A GCRA token bucket: lock-free, one atomic word.
#[derive(Debug)]
struct Bucket {
    /// Nanoseconds one request costs (1 s / rate).
    interval: u64,
    /// How far ahead of now the theoretical arrival time may run:
    /// `burst * interval`.
    tolerance: u64,
    /// Theoretical arrival time of the next request, in nanoseconds since
    /// `epoch`.
    tat: AtomicU64,
    epoch: Instant,
}

impl Bucket {
    fn new(rate: Rate, epoch: Instant) -> Bucket {
        let interval = 1_000_000_000u64 / u64::from(rate.per_second.max(1));
        Bucket {
            interval,
            tolerance: interval.saturating_mul(u64::from(rate.burst.max(1))),
            tat: AtomicU64::new(0),
            epoch,
        }
    }

    /// Take one token at `now`, or say how long until one is free.
    fn take(&self, now: Instant) -> Result<(), Duration> {
        let now =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let mut current = self.tat.load(Ordering::Acquire);
        loop {
            let next = current.max(now).saturating_add(self.interval);
            let ahead = next.saturating_sub(now);
            if ahead > self.tolerance {
                return Err(Duration::from_nanos(ahead - self.tolerance));
            }
            match self
                .tat
                .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }
}

/// The limiters of one key.
#[derive(Debug)]
struct Limiter {
    spec: LimitSpec,
    bucket: Option<Bucket>,
    in_flight: AtomicU32,
}

impl Limiter {
    fn new(spec: LimitSpec, epoch: Instant) -> Arc<Limiter> {
        Arc::new(Limiter {
            spec,
            bucket: spec.rate.map(|r| Bucket::new(r, epoch)),
            in_flight: AtomicU32::new(0),
        })
    }

    fn try_acquire(self: &Arc<Self>) -> Result<Option<Slot>, Duration> {
        let Some(max) = self.spec.max_concurrency else {
            return Ok(None);
        };
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map(|_| {
                Some(Slot {
                    limiter: self.clone(),
                })
            })
            // No telling when a slot frees: invocations end within their
            // timeout, so that is the honest hint (at least a second).
            .map_err(|_| Duration::from_secs(1))
    }
}

/// One invocation in flight under a concurrency cap, counted until
/// dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    limiter: Arc<Limiter>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limiter.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitScope {
    Function,
    Tenant,
}

impl LimitScope {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LimitScope::Function => "function",
            LimitScope::Tenant => "tenant",
        }
    }
}

/// Why a request was refused before its body was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitRefusal {
    /// Over a rate: 429.
    Rate {
        scope: LimitScope,
        retry_after: Duration,
    },
    /// Over a concurrency cap: 503.
    Concurrency {
        scope: LimitScope,
        retry_after: Duration,
    },
}

/// Limit refusals in a row one connection hears at once.
pub(crate) const PROMPT_REFUSALS: u32 = 3;
/// The pause before each further one.
pub(crate) const REFUSAL_PAUSE: Duration = Duration::from_millis(100);

/// How long to wait before answering the `streak`-th limit refusal in a row
/// on one connection. A client that overshoots a limit hears at once and
/// is told `Retry-After` (at least a second); one that keeps sending on the
/// same connection regardless is answered after [`REFUSAL_PAUSE`], which
/// bounds what it makes the platform do to ten refusals a second per
/// connection (connections are bounded per address and in all by the
/// listener), instead of as many as one core can answer, the work that
/// delayed other tenants' requests behind it (BENCHMARKS.md, noisy
/// tenant). The pause holds no slot and no body: only the connection's
/// task, sleeping.
pub(crate) fn refusal_pause(streak: u32) -> Option<Duration> {
    (streak > PROMPT_REFUSALS).then_some(REFUSAL_PAUSE)
}

impl LimitRefusal {
    /// Whole seconds for `Retry-After` (RFC 9110 §10.2.3), at least 1.
    pub(crate) fn retry_after_secs(&self) -> u64 {
        let (LimitRefusal::Rate { retry_after, .. }
        | LimitRefusal::Concurrency { retry_after, .. }) = self;
        let secs = retry_after.as_secs();
        let secs = if retry_after.subsec_nanos() > 0 {
            secs.saturating_add(1)
        } else {
            secs
        };
        secs.max(1)
    }
}

/// What an admitted request holds until its invocation is over.
#[derive(Debug, Default)]
pub(crate) struct Admitted {
    _function: Option<Slot>,
    _tenant: Option<Slot>,
}

/// Limiters of functions by tenant, then name (looked up by `&str`, so a
/// request allocates nothing to find its limiter).
type FunctionLimiters = HashMap<String, HashMap<String, Arc<Limiter>>>;

/// The rate and concurrency limits of every function and tenant.
#[derive(Debug)]
pub(crate) struct RateLimits {
    epoch: Instant,
    functions: RwLock<Arc<FunctionLimiters>>,
    tenants: RwLock<Arc<HashMap<String, Arc<Limiter>>>>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            epoch: Instant::now(),
            functions: RwLock::default(),
            tenants: RwLock::default(),
        }
    }
}

/// The invoke limits in force: the tenants', shared by the control plane
/// (which sets them) and the gateway (which enforces them and keeps the
/// functions' beside them). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct InvokeLimits {
    inner: Arc<RateLimits>,
}

impl InvokeLimits {
    /// Replace a tenant's limits (an unlimited spec removes them). Requests
    /// in flight keep the slots they hold; the new bucket starts full.
    pub fn set_tenant(&self, tenant: &str, spec: LimitSpec) {
        self.inner.set_tenant(tenant, spec);
    }

    pub(crate) fn limits(&self) -> &RateLimits {
        &self.inner
    }
}

impl RateLimits {
    fn set_tenant(&self, tenant: &str, spec: LimitSpec) {
        let mut guard = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        let mut map = HashMap::clone(&guard);
        if spec.is_unlimited() {
            map.remove(tenant);
        } else {
            map.insert(tenant.to_owned(), Limiter::new(spec, self.epoch));
        }
        *guard = Arc::new(map);
    }

    /// The limiter of `function` under its current manifest, made (and
    /// the map pruned to the served functions of `table`) when missing or
    /// stale.
    fn function_limiter(
        &self,
        function: &LoadedFunction,
        table: &RouteTable,
    ) -> Option<Arc<Limiter>> {
        let spec = LimitSpec::of_function(function);
        let manifest = function.artifact().manifest();
        let (tenant, name) = (manifest.tenant.as_str(), manifest.name.as_str());
        let snapshot = self
            .functions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match snapshot.get(tenant).and_then(|fns| fns.get(name)) {
            Some(l) if l.spec == spec => return Some(l.clone()),
            None if spec.is_unlimited() => return None,
            _ => {}
        }
        // A new deployment (or its first request): rebuild under the lock,
        // keeping only the limiters of functions still served.
        let mut guard = self
            .functions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = guard
            .get(tenant)
            .and_then(|fns| fns.get(name))
            .filter(|l| l.spec == spec)
        {
            return Some(l.clone());
        }
        let mut map: FunctionLimiters = HashMap::new();
        for (t, fns) in guard.iter() {
            for (n, l) in fns {
                if table.function(t, n).is_some() && !(t == tenant && n == name) {
                    map.entry(t.clone())
                        .or_default()
                        .insert(n.clone(), l.clone());
                }
            }
        }
        let limiter = (!spec.is_unlimited()).then(|| Limiter::new(spec, self.epoch));
        if let Some(l) = &limiter {
            map.entry(tenant.to_owned())
                .or_default()
                .insert(name.to_owned(), l.clone());
        }
        *guard = Arc::new(map);
        limiter
    }

    fn tenant_limiter(&self, tenant: &str) -> Option<Arc<Limiter>> {
        self.tenants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .cloned()
    }

    /// Admit one request to `function` (routed by `table`) under the
    /// function's limits and its tenant's: rates first (a refused request
    /// holds no slot), then concurrency.
    pub(crate) fn admit(
        &self,
        function: &LoadedFunction,
        table: &RouteTable,
    ) -> Result<Admitted, LimitRefusal> {
        let own = self.function_limiter(function, table);
        let tenant = self.tenant_limiter(function.artifact().manifest().tenant.as_str());
        if own.is_none() && tenant.is_none() {
            return Ok(Admitted::default());
        }
        let now = Instant::now();
        for (limiter, scope) in [(&own, LimitScope::Function), (&tenant, LimitScope::Tenant)] {
            if let Some(bucket) = limiter.as_ref().and_then(|l| l.bucket.as_ref()) {
                bucket
                    .take(now)
                    .map_err(|retry_after| LimitRefusal::Rate { scope, retry_after })?;
            }
        }
        let concurrency = |l: &Option<Arc<Limiter>>, scope| match l {
            None => Ok(None),
            Some(l) => l
                .try_acquire()
                .map_err(|retry_after| LimitRefusal::Concurrency { scope, retry_after }),
        };
        let function_slot = concurrency(&own, LimitScope::Function)?;
        let tenant_slot = concurrency(&tenant, LimitScope::Tenant)?;
        Ok(Admitted {
            _function: function_slot,
            _tenant: tenant_slot,
        })
    }
}

impl Gateway {
    /// Record a request refused by a rate or concurrency limit (reason
    /// `rate_limited` / `concurrency_limited`, with the caller and the
    /// limit), then answer 429 or 503 with `Retry-After`. A public caller's
    /// identical refusals are counted into one record per interval by the
    /// refusal aggregator, so a flood cannot turn into as many audit writes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn limit_refused(
        &self,
        function: &LoadedFunction,
        caller: &Caller,
        id: &InvocationId,
        trace_id: Option<TraceId>,
        started: Instant,
        refusal: LimitRefusal,
        invoke_decision: serde_json::Value,
    ) -> Response<Bytes> {
        let (status, kind, scope) = match refusal {
            LimitRefusal::Rate { scope, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited", scope)
            }
            LimitRefusal::Concurrency { scope, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "concurrency_limited",
                scope,
            ),
        };
        let manifest = function.artifact().manifest();
        let what = match scope {
            LimitScope::Function => format!("function {}/{}", manifest.tenant, manifest.name),
            LimitScope::Tenant => format!("tenant {}", manifest.tenant),
        };
        let message = match refusal {
            LimitRefusal::Rate { .. } => format!("the request rate of {what} is over its limit"),
            LimitRefusal::Concurrency { .. } => {
                format!("{what} has as many invocations in flight as it may")
            }
        };
        let record = invoke_record(function, id, started, Outcome::Deny, status.as_u16())
            .reason(format!("{kind}: {message}"))
            .detail(serde_json::json!({
                "caller": caller.json(),
                "depth": 0,
                "limit": scope.as_str(),
                "decisions": [invoke_decision],
            }));
        let ip = match caller {
            Caller::Public { ip } | Caller::UntrustedCertificate { ip, .. } => *ip,
            _ => None,
        };
        let mut resp = self
            .refuse(ip, record, id, trace_id, status, kind, &message)
            .await;
        if resp.status() == status {
            if let Ok(v) = HeaderValue::from_str(&refusal.retry_after_secs().to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_that_keeps_being_refused_is_answered_after_a_pause() {
        for streak in 0..=PROMPT_REFUSALS {
            assert_eq!(refusal_pause(streak), None, "refusal {streak} in a row");
        }
        for streak in [PROMPT_REFUSALS + 1, 100, u32::MAX] {
            assert_eq!(refusal_pause(streak), Some(REFUSAL_PAUSE));
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let epoch = Instant::now();
        let bucket = Bucket::new(
            Rate {
                per_second: 10,
                burst: 3,
            },
            epoch,
        );
        let t0 = epoch + Duration::from_secs(5);
        for _ in 0..3 {
            assert_eq!(bucket.take(t0), Ok(()));
        }
        let wait = bucket.take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        // One interval later exactly one more token.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(bucket.take(t1), Ok(()));
        assert!(bucket.take(t1).is_err());
        // After a long pause the bucket is full again, not fuller.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.take(t2), Ok(()));
        }
        assert!(bucket.take(t2).is_err());
    }

    #[test]
    fn a_bucket_is_shared_across_threads_without_overspending() {
        let epoch = Instant::now();
        let bucket = Arc::new(Bucket::new(
            Rate {
                per_second: 1,
                burst: 100,
            },
            epoch,
        ));
        let now = epoch + Duration::from_secs(1000);
        let granted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let bucket = bucket.clone();
                    s.spawn(move || (0..100).filter(|_| bucket.take(now).is_ok()).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 100);
    }

    #[test]
    fn concurrency_slots_are_given_back_on_drop() {
        let limiter = Limiter::new(LimitSpec::new(None, None, Some(2)), Instant::now());
        let a = limiter.try_acquire().unwrap();
        let _b = limiter.try_acquire().unwrap();
        assert!(limiter.try_acquire().is_err());
        drop(a);
        assert!(limiter.try_acquire().unwrap().is_some());
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_at_least_one() {
        let r = |ms| LimitRefusal::Rate {
            scope: LimitScope::Function,
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(r(0).retry_after_secs(), 1);
        assert_eq!(r(100).retry_after_secs(), 1);
        assert_eq!(r(1000).retry_after_secs(), 1);
        assert_eq!(r(1001).retry_after_secs(), 2);
    }

    #[test]
    fn tenant_limits_are_replaced_and_removed() {
        let limits = InvokeLimits::default();
        limits.set_tenant("acme", LimitSpec::new(Some(1), Some(1), None));
        let l = limits.limits().tenant_limiter("acme").unwrap();
        assert!(l.bucket.as_ref().unwrap().take(Instant::now()).is_ok());
        assert!(limits.limits().tenant_limiter("other").is_none());
        limits.set_tenant("acme", LimitSpec::default());
        assert!(limits.limits().tenant_limiter("acme").is_none());
    }
}
