//! Key-value change streams: the loop that delivers the changes of a
//! tenant's key-value bucket to the functions bound to it (`[[triggers]] kv
//! = "orders"`), like DynamoDB Streams with a Lambda mapping: ordered per
//! key, each change at least once, with its old and new value.
//!
//! - Subscriptions follow the bindings: each pass subscribes every bound
//!   (bucket, function) and removes the subscriptions no deployed function
//!   holds (with their pending changes, recorded as `kv.changes_dropped`).
//!   The control plane also subscribes at deploy, so writes made once a
//!   deploy answered are recorded (`zerofn-server`).
//! - The outbox is the store's (`zerofn_store`, `kv_changes.rs`): each change
//!   of a watched bucket commits with its write. A write that recorded a
//!   change wakes this loop at once.
//! - Order: only the oldest unsettled change of a key is offered; the next
//!   one waits until it is acknowledged (2xx) or parked. Changes of
//!   different keys go in parallel, at most `max_concurrency` per binding.
//! - At least once: a failed, trapped, timed-out or refused delivery is
//!   retried with exponential backoff and jitter ([`retry_delay_ms`], capped
//!   at [`KV_RETRY_CAP_MS`]); one that never settles (the platform died) is
//!   offered again when its lease runs out. After [`KV_MAX_ATTEMPTS`] the
//!   change is parked with its last error (`kv.change_parked`), kept for
//!   [`KV_PARKED_RETENTION_MS`], then removed (`kv.changes_dropped`); the
//!   key's next change goes on, as Lambda's on-failure destination does.
//! - A subscriber writing to its own bucket sees its own changes (they are
//!   delivered like any other, with `writer` naming it): the platform does
//!   not cut such a loop, it logs a warning once per binding, and the
//!   documentation says to skip one's own writes.
//!
//! # Trust
//! Trusts the [`Invoker`] to run each delivery with the source
//! `kv/<bucket>` as its principal (the invoke policy admits a function only
//! for its own triggers' sources), the [`Bindings`] to come from admitted
//! manifests, and the store to keep what it committed. Trusts nothing in a
//! change: keys and values are the tenant's own data, carried in the JSON
//! body (keys percent-encoded in `ce-subject`), never interpreted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use rand_core::RngCore;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome};
use zerofn_store::{
    KvChangeRow, KvChangeWorker, KvLeased, KvReleased, KvSubscription, Store, TraceContext,
};

use crate::clock::Clock;
use crate::cloudevent::{trace_attributes, ATTEMPT_HEADER, SPEC_VERSION};
use crate::delivery::{
    retry_delay_ms, Bindings, EventInvocation, Invoker, MAX_TRIGGER_CONCURRENCY,
};
use crate::queue::now_text;

/// `ce-type` of a change.
pub const KV_CHANGE_EVENT_TYPE: &str = "dev.zerofn.kv.changed";
/// Delivery attempts of a change before it is parked.
pub const KV_MAX_ATTEMPTS: u32 = 5;
/// The longest retry delay.
pub const KV_RETRY_CAP_MS: u64 = 30_000;
/// How long a parked change is kept.
pub const KV_PARKED_RETENTION_MS: u64 = 7 * 86_400_000;
/// Added to the function's timeout for a delivery's lease: an invocation
/// may wait for an instance before it starts.
pub const KV_LEASE_MARGIN_MS: u64 = 30_000;
/// How often parked changes past their retention are looked for.
const EXPIRE_EVERY_MS: u64 = 60_000;

/// A function bound to a key-value bucket of its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KvBinding {
    pub tenant: String,
    pub function: String,
    pub bucket: String,
    pub max_concurrency: u32,
    /// How long a delivery holds its change before it is offered again:
    /// the function's timeout plus [`KV_LEASE_MARGIN_MS`].
    pub lease_ms: u64,
}

impl KvBinding {
    /// The event source's name in its tenant, `kv/<bucket>`: the principal
    /// `Zerofn::EventSource::"<tenant>/kv/<bucket>"`.
    pub fn source(&self) -> String {
        format!("kv/{}", self.bucket)
    }

    fn subscription(&self) -> KvSubscription {
        KvSubscription {
            tenant: self.tenant.clone(),
            bucket: self.bucket.clone(),
            function: self.function.clone(),
        }
    }
}

/// `ce-source` of a tenant's bucket.
pub fn kv_source_uri(tenant: &str, bucket: &str) -> String {
    format!("/zerofn/tenants/{tenant}/kv/{bucket}")
}

/// `ce-id` of a change: unique per bucket, the same for every subscriber
/// and every attempt.
pub fn kv_event_id(bucket: &str, seq: u64) -> String {
    format!("{bucket}-{seq}")
}

/// A key as a CloudEvents header value: the HTTP binding (§3.1.3.2)
/// percent-encodes a space, `"`, `%` and everything outside printable
/// ASCII, byte by byte of the UTF-8 text.
pub fn percent_encode_header(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'"' && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A value in the event body: UTF-8 text as it is, other bytes in base64,
/// with the encoding named; `null` for an absent key.
fn value_json(value: Option<&[u8]>) -> serde_json::Value {
    match value {
        None => serde_json::Value::Null,
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => serde_json::json!({ "encoding": "utf-8", "data": text }),
            Err(_) => serde_json::json!({
                "encoding": "base64",
                "data": base64::engine::general_purpose::STANDARD.encode(bytes),
            }),
        },
    }
}

/// The request delivering `change` of `tenant`'s bucket, as attempt
/// `change.attempts`: binary content mode, a JSON body with the key, the
/// operation, the old and new values, the sequence number and the writer.
pub fn kv_change_request(tenant: &str, change: &KvChangeRow) -> Request<Bytes> {
    let body = serde_json::json!({
        "bucket": change.bucket,
        "key": change.key,
        "op": change.op.as_str(),
        "seq": change.seq,
        "old": value_json(change.old.as_deref()),
        "new": value_json(change.new.as_deref()),
        "time": now_text(change.at_ms),
        "writer": change.writer,
    });
    let mut req = Request::new(Bytes::from(body.to_string()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = http::Uri::from_static("/");
    let headers = [
        ("ce-specversion", SPEC_VERSION.to_owned()),
        ("ce-id", kv_event_id(&change.bucket, change.seq)),
        ("ce-source", kv_source_uri(tenant, &change.bucket)),
        ("ce-type", KV_CHANGE_EVENT_TYPE.to_owned()),
        ("ce-time", now_text(change.at_ms)),
        ("ce-subject", percent_encode_header(&change.key)),
        (ATTEMPT_HEADER, change.attempts.to_string()),
        ("content-type", "application/json".to_owned()),
    ];
    // The trace of the request whose write made the change, if it was
    // traced: the delivery continues it (as a queue message's does).
    let trace = change.trace.as_ref();
    let trace = trace_attributes(
        trace.map(TraceContext::traceparent),
        trace.and_then(TraceContext::tracestate),
    );
    for (name, value) in headers.into_iter().chain(trace) {
        // Every value is a checked name, a number or percent-encoded; one
        // that still fails to be a header value is left out, not altered.
        if let Ok(value) = HeaderValue::from_str(&value) {
            req.headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    req
}

/// The change-stream loop and what it needs.
pub struct KvStreams {
    store: Store,
    worker: KvChangeWorker,
    clock: Arc<dyn Clock>,
    bindings: Arc<dyn Bindings>,
    invoker: Arc<dyn Invoker>,
    audit: AuditLog,
    /// The store's: poked by every write that recorded a change; this loop
    /// also pokes it when a delivery settles (the key's next change may go).
    wake: Arc<Notify>,
    slots: Mutex<HashMap<KvBinding, Arc<Semaphore>>>,
    /// Bindings already warned about for receiving their own writes.
    warned: Mutex<HashSet<KvBinding>>,
    last_expiry_ms: Mutex<u64>,
}

impl KvStreams {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        bindings: Arc<dyn Bindings>,
        invoker: Arc<dyn Invoker>,
        audit: AuditLog,
    ) -> Result<Arc<KvStreams>, zerofn_store::StoreError> {
        let worker = store.open_kv_change_worker()?;
        let wake = store.kv_changes_notify();
        Ok(Arc::new(KvStreams {
            store,
            worker,
            clock,
            bindings,
            invoker,
            audit,
            wake,
            slots: Mutex::new(HashMap::new()),
            warned: Mutex::new(HashSet::new()),
            last_expiry_ms: Mutex::new(0),
        }))
    }

    fn slots(&self, bindings: &[KvBinding]) -> Vec<(KvBinding, Arc<Semaphore>)> {
        let Ok(mut slots) = self.slots.lock() else {
            return Vec::new();
        };
        slots.retain(|b, _| bindings.contains(b));
        bindings
            .iter()
            .map(|b| {
                let sem = slots
                    .entry(b.clone())
                    .or_insert_with(|| {
                        Arc::new(Semaphore::new(
                            b.max_concurrency.clamp(1, MAX_TRIGGER_CONCURRENCY) as usize,
                        ))
                    })
                    .clone();
                (b.clone(), sem)
            })
            .collect()
    }

    /// Makes the store's subscriptions those of `bindings` (read after
    /// `looked_at_ms`): subscribes the new ones, removes those no binding
    /// holds unless they were made since.
    async fn sync(&self, bindings: &[KvBinding], looked_at_ms: u64) {
        let wanted: HashSet<KvSubscription> =
            bindings.iter().map(KvBinding::subscription).collect();
        let have = match self.store.kv_subscriptions().await {
            Ok(have) => have,
            Err(error) => {
                tracing::warn!(%error, "cannot read the key-value subscriptions");
                return;
            }
        };
        let have_set: HashSet<&KvSubscription> = have.iter().collect();
        for sub in wanted.iter().filter(|s| !have_set.contains(s)) {
            if let Err(error) = self.store.kv_subscribe(sub, looked_at_ms).await {
                tracing::warn!(%error, tenant = %sub.tenant, bucket = %sub.bucket, "cannot subscribe to a bucket");
            }
        }
        for sub in have.iter().filter(|s| !wanted.contains(s)) {
            match self.store.kv_unsubscribe(sub, looked_at_ms).await {
                Ok(Some(dropped)) if dropped > 0 => {
                    let record =
                        AuditRecord::new("events", Action::KvChangesDropped, Outcome::Allow)
                            .tenant(sub.tenant.as_str())
                            .function(sub.function.as_str())
                            .reason(format!(
                                "{dropped} undelivered changes of bucket `{}` removed: the function is no longer bound to it",
                                sub.bucket
                            ))
                            .detail(serde_json::json!({ "bucket": sub.bucket, "count": dropped }));
                    if let Err(error) = self.audit.append(record).await {
                        tracing::error!(%error, "cannot record dropped key-value changes");
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, tenant = %sub.tenant, bucket = %sub.bucket, "cannot unsubscribe from a bucket");
                }
            }
        }
    }

    /// Removes parked changes past their retention (at most once a minute).
    async fn expire(&self, now: u64) {
        {
            let Ok(mut last) = self.last_expiry_ms.lock() else {
                return;
            };
            if now.saturating_sub(*last) < EXPIRE_EVERY_MS && *last != 0 {
                return;
            }
            *last = now;
        }
        let before = now.saturating_sub(KV_PARKED_RETENTION_MS);
        match self.worker.expire_parked(before).await {
            Ok(expired) => {
                for (sub, count) in expired {
                    let record =
                        AuditRecord::new("events", Action::KvChangesDropped, Outcome::Allow)
                            .tenant(sub.tenant.as_str())
                            .function(sub.function.as_str())
                            .reason(format!(
                        "{count} parked changes of bucket `{}` removed after their retention",
                        sub.bucket
                    ))
                            .detail(serde_json::json!({ "bucket": sub.bucket, "count": count }));
                    if let Err(error) = self.audit.append(record).await {
                        tracing::error!(%error, "cannot record expired key-value changes");
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot expire parked key-value changes"),
        }
    }

    /// One pass: subscriptions synced, then for every binding with a free
    /// slot, its keys' head changes leased and their deliveries started in
    /// `tasks`. Answers the earliest future time a change becomes visible.
    async fn pass(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Option<u64> {
        // INVARIANT: the time is read before the bindings, so a subscription
        // made after it (a deploy racing this pass) is never removed by it.
        let looked_at = self.clock.now_ms();
        let bindings = self.bindings.kv_streams();
        self.sync(&bindings, looked_at).await;
        self.expire(looked_at).await;
        let mut next: Option<u64> = None;
        for (binding, sem) in self.slots(&bindings) {
            let sub = binding.subscription();
            let free = sem.available_permits();
            let now = self.clock.now_ms();
            if free > 0 {
                let lease = uuid::Uuid::new_v4().to_string();
                let limit = u32::try_from(free).unwrap_or(u32::MAX);
                match self
                    .worker
                    .lease(
                        &sub,
                        now,
                        limit,
                        (binding.lease_ms, KV_MAX_ATTEMPTS),
                        &lease,
                    )
                    .await
                {
                    Ok(batch) => {
                        for (key, seq, error) in &batch.parked {
                            self.record_parked(&binding, key, *seq, error).await;
                        }
                        for leased in batch.leased {
                            let Ok(permit) = sem.clone().try_acquire_owned() else {
                                // Only this loop takes slots; the lease runs out
                                // and the change is offered again.
                                break;
                            };
                            let this = self.clone();
                            let b = binding.clone();
                            tasks.spawn(async move { this.deliver(b, leased, permit).await });
                        }
                    }
                    Err(error) => {
                        tracing::warn!(tenant = %binding.tenant, bucket = %binding.bucket, %error, "cannot lease key-value changes");
                        continue;
                    }
                }
            }
            if let Ok(Some(at)) = self.worker.next_visible(&sub).await {
                if at > now {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        next
    }

    async fn deliver(
        self: Arc<Self>,
        binding: KvBinding,
        leased: KvLeased,
        permit: OwnedSemaphorePermit,
    ) {
        let change = &leased.change;
        if change.writer == format!("function:{}", binding.function) {
            self.warn_own_write(&binding);
        }
        let result = self
            .invoker
            .invoke(EventInvocation {
                tenant: binding.tenant.clone(),
                function: binding.function.clone(),
                source: binding.source(),
                event_id: kv_event_id(&change.bucket, change.seq),
                attempt: change.attempts,
                request: kv_change_request(&binding.tenant, change),
            })
            .await;
        let now = self.clock.now_ms();
        if result.is_success() {
            if let Err(error) = self.worker.acknowledge(change.id, &leased.lease).await {
                // Offered again when the lease runs out: at least once.
                tracing::warn!(%error, seq = change.seq, "cannot remove a delivered key-value change");
            }
        } else {
            let error = result
                .error
                .clone()
                .unwrap_or_else(|| format!("the function answered {}", result.status));
            let delay = retry_delay_ms(
                change.attempts,
                KV_RETRY_CAP_MS,
                rand_core::OsRng.next_u64(),
            );
            match self
                .worker
                .release(
                    change.id,
                    &leased.lease,
                    (now.saturating_add(delay), now),
                    &error,
                    KV_MAX_ATTEMPTS,
                    result.give_up,
                )
                .await
            {
                Ok(Some(KvReleased::Parked)) => {
                    self.record_parked(&binding, &change.key, change.seq, &error)
                        .await;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, seq = change.seq, "cannot release a failed key-value delivery");
                }
            }
        }
        drop(permit);
        self.wake.notify_one();
    }

    fn warn_own_write(&self, binding: &KvBinding) {
        let Ok(mut warned) = self.warned.lock() else {
            return;
        };
        if warned.insert(binding.clone()) {
            tracing::warn!(
                tenant = %binding.tenant,
                function = %binding.function,
                bucket = %binding.bucket,
                "a function receives the changes it wrote to the bucket it is bound to; unless it skips its own writes (`writer`), each of its invocations may cause another"
            );
        }
    }

    async fn record_parked(&self, binding: &KvBinding, key: &str, seq: u64, error: &str) {
        // The key is the tenant's data, but naming which change is parked is
        // what an operator needs; it is escaped and cut like other text.
        let record = AuditRecord::new("events", Action::KvChangeParked, Outcome::Allow)
            .tenant(binding.tenant.as_str())
            .function(binding.function.as_str())
            .reason(format!(
                "change parked after its last attempt: {}",
                zerofn_types::printable(error)
            ))
            .detail(serde_json::json!({
                "bucket": binding.bucket,
                "key": zerofn_types::excerpt(key),
                "seq": seq,
                "event_id": kv_event_id(&binding.bucket, seq),
            }));
        if let Err(error) = self.audit.append(record).await {
            tracing::error!(%error, "cannot record a parked key-value change");
        }
    }

    /// Runs until `shutdown`: passes whenever a recorded change or a
    /// settled delivery wakes it, when a waiting change becomes visible,
    /// and at least every second. Deliveries in flight at shutdown are
    /// stopped; their changes are offered again when their leases run out.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        crate::passes::run(self, shutdown).await;
    }

    /// One pass whose deliveries are awaited (tests): answers how many ran.
    pub async fn pump(self: &Arc<Self>) -> usize {
        crate::passes::pump(self).await
    }
}

impl crate::passes::Passes for KvStreams {
    fn next_pass(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
    ) -> impl std::future::Future<Output = Option<u64>> + Send {
        self.pass(tasks)
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn wake(&self) -> Option<&Notify> {
        Some(&self.wake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::delivery::{BoxFuture, Delivered};
    use zerofn_types::TenantName;

    /// Bindings a test can change between passes.
    struct Shared(Mutex<Vec<KvBinding>>);
    impl Bindings for Shared {
        fn bindings(&self) -> Vec<crate::delivery::Binding> {
            Vec::new()
        }
        fn kv_streams(&self) -> Vec<KvBinding> {
            self.0.lock().unwrap().clone()
        }
    }

    /// What one delivery carried.
    #[derive(Debug, Clone)]
    struct Seen {
        source: String,
        event_id: String,
        attempt: u32,
        subject: String,
        body: serde_json::Value,
    }

    /// Answers `rule(body)`; records every delivery.
    struct Recorder {
        rule: fn(&serde_json::Value) -> u16,
        seen: Mutex<Vec<Seen>>,
    }
    impl Invoker for Arc<Recorder> {
        fn invoke(&self, inv: EventInvocation) -> BoxFuture<Delivered> {
            let this = self.clone();
            Box::pin(async move {
                let h = |n: &str| {
                    inv.request
                        .headers()
                        .get(n)
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_owned()
                };
                assert_eq!(h("ce-specversion"), "1.0");
                assert_eq!(h("ce-type"), KV_CHANGE_EVENT_TYPE);
                assert_eq!(h("ce-source"), "/zerofn/tenants/acme/kv/orders");
                assert_eq!(h("ce-id"), inv.event_id);
                assert_eq!(h("ce-zerofnattempt"), inv.attempt.to_string());
                assert_eq!(h("content-type"), "application/json");
                let body: serde_json::Value = serde_json::from_slice(inv.request.body()).unwrap();
                let status = (this.rule)(&body);
                this.seen.lock().unwrap().push(Seen {
                    source: inv.source.clone(),
                    event_id: inv.event_id.clone(),
                    attempt: inv.attempt,
                    subject: h("ce-subject"),
                    body,
                });
                Delivered {
                    status,
                    error: (status >= 300).then(|| format!("status {status}")),
                    give_up: false,
                }
            })
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        clock: Arc<FakeClock>,
        bindings: Arc<Shared>,
        recorder: Arc<Recorder>,
        streams: Arc<KvStreams>,
    }

    fn binding(function: &str, max_concurrency: u32) -> KvBinding {
        KvBinding {
            tenant: "acme".into(),
            function: function.into(),
            bucket: "orders".into(),
            max_concurrency,
            lease_ms: 10_000,
        }
    }

    fn fixture(rule: fn(&serde_json::Value) -> u16, bound: Vec<KvBinding>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let audit = AuditLog::open(&store).unwrap();
        let clock = Arc::new(FakeClock::new(1_000_000));
        let bindings = Arc::new(Shared(Mutex::new(bound)));
        let recorder = Arc::new(Recorder {
            rule,
            seen: Mutex::new(Vec::new()),
        });
        let streams = KvStreams::new(
            store.clone(),
            clock.clone(),
            bindings.clone(),
            Arc::new(recorder.clone()),
            audit,
        )
        .unwrap();
        Fixture {
            _dir: dir,
            store,
            clock,
            bindings,
            recorder,
            streams,
        }
    }

    fn acme() -> TenantName {
        TenantName::parse("acme").unwrap()
    }

    async fn set(f: &Fixture, key: &str, value: &[u8]) {
        f.store
            .kv_set(&acme(), "orders", key, value.to_vec(), "function:writer")
            .await
            .unwrap();
    }

    fn seen(f: &Fixture) -> Vec<Seen> {
        f.recorder.seen.lock().unwrap().clone()
    }

    async fn actions(f: &Fixture, action: &str) -> Vec<zerofn_store::AuditRow> {
        f.store
            .audit_page(0, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.action == action)
            .collect()
    }

    #[tokio::test]
    async fn changes_reach_the_subscriber_in_order_per_key_with_old_and_new_values() {
        let f = fixture(|_| 200, vec![binding("sub", 8)]);
        // The first pass subscribes; writes from then on are recorded.
        assert_eq!(f.streams.pump().await, 0);
        set(&f, "a", b"1").await;
        set(&f, "a", b"2").await;
        set(&f, "b c/\"%", &[0xff, 0x00]).await;
        f.store
            .kv_delete(&acme(), "orders", "a", "function:writer")
            .await
            .unwrap();
        // Each pass offers one change per key, however many slots are free.
        let mut per_pass = Vec::new();
        for _ in 0..5 {
            per_pass.push(f.streams.pump().await);
        }
        assert_eq!(per_pass, [2, 1, 1, 0, 0]);
        let seen = seen(&f);
        let a: Vec<_> = seen
            .iter()
            .filter(|s| s.body["key"] == "a")
            .map(|s| {
                (
                    s.body["op"].as_str().unwrap().to_owned(),
                    s.body["old"].clone(),
                    s.body["new"].clone(),
                )
            })
            .collect();
        let utf8 = |t: &str| serde_json::json!({"encoding": "utf-8", "data": t});
        assert_eq!(
            a,
            [
                ("set".to_owned(), serde_json::Value::Null, utf8("1")),
                ("set".to_owned(), utf8("1"), utf8("2")),
                ("delete".to_owned(), utf8("2"), serde_json::Value::Null),
            ]
        );
        let seqs: Vec<u64> = seen
            .iter()
            .filter(|s| s.body["key"] == "a")
            .map(|s| s.body["seq"].as_u64().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        let odd = seen.iter().find(|s| s.body["key"] == "b c/\"%").unwrap();
        assert_eq!(odd.subject, "b%20c/%22%25");
        assert_eq!(
            odd.body["new"],
            serde_json::json!({"encoding": "base64", "data": "/wA="})
        );
        assert_eq!(odd.source, "kv/orders");
        assert_eq!(odd.event_id, format!("orders-{}", odd.body["seq"]));
        assert_eq!(odd.body["writer"], "function:writer");
        assert!(seen.iter().all(|s| s.attempt == 1));
        // Acknowledged changes are gone.
        let sub = binding("sub", 8).subscription();
        assert_eq!(f.store.kv_stream_counts(&sub).await.unwrap().pending, 0);
    }

    #[tokio::test]
    async fn a_failing_change_is_retried_with_backoff_then_parked_and_the_key_moves_on() {
        // The change that sets `a` to "bad" fails every time.
        let f = fixture(
            |body| {
                if body["new"]["data"] == "bad" {
                    500
                } else {
                    200
                }
            },
            vec![binding("sub", 2)],
        );
        f.streams.pump().await;
        set(&f, "a", b"bad").await;
        set(&f, "a", b"good").await;
        assert_eq!(f.streams.pump().await, 1);
        // Backing off: neither the failed change nor the key's next goes before its delay.
        assert_eq!(f.streams.pump().await, 0);
        for attempt in 2..=KV_MAX_ATTEMPTS {
            let full = (crate::RETRY_BASE_MS << (attempt - 2)).min(KV_RETRY_CAP_MS);
            f.clock.advance(full / 2 - 1);
            assert_eq!(f.streams.pump().await, 0, "attempt {attempt} came early");
            f.clock.advance(full - full / 2 + 1);
            assert_eq!(f.streams.pump().await, 1, "attempt {attempt}");
        }
        // Parked after its last attempt; the key's next change goes at once.
        assert_eq!(f.streams.pump().await, 1);
        let seen = seen(&f);
        let attempts: Vec<_> = seen
            .iter()
            .map(|s| {
                (
                    s.body["new"]["data"].as_str().unwrap().to_owned(),
                    s.attempt,
                )
            })
            .collect();
        let mut expected: Vec<_> = (1..=KV_MAX_ATTEMPTS)
            .map(|a| ("bad".to_owned(), a))
            .collect();
        expected.push(("good".to_owned(), 1));
        assert_eq!(attempts, expected);
        let parked = actions(&f, "kv.change_parked").await;
        assert_eq!(parked.len(), 1);
        assert_eq!(
            parked[0].reason.as_deref(),
            Some("change parked after its last attempt: status 500")
        );
        let sub = binding("sub", 2).subscription();
        let counts = f.store.kv_stream_counts(&sub).await.unwrap();
        assert_eq!((counts.pending, counts.parked), (0, 1));
        let rows = f.store.kv_changes(&sub, 10).await.unwrap();
        assert_eq!(rows[0].last_error.as_deref(), Some("status 500"));
        // Kept for its retention, then removed and recorded.
        f.clock.advance(KV_PARKED_RETENTION_MS + 1);
        f.streams.pump().await;
        assert_eq!(f.store.kv_stream_counts(&sub).await.unwrap().parked, 0);
        let dropped = actions(&f, "kv.changes_dropped").await;
        assert_eq!(dropped.len(), 1);
        assert!(dropped[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("1 parked changes of bucket `orders` removed after their retention"));
    }

    #[tokio::test]
    async fn concurrency_is_bounded_across_keys() {
        let f = fixture(|_| 200, vec![binding("sub", 3)]);
        f.streams.pump().await;
        for i in 0..10 {
            set(&f, &format!("k{i}"), b"v").await;
        }
        let mut delivered = 0;
        for _ in 0..10 {
            let n = f.streams.pump().await;
            assert!(n <= 3, "{n} deliveries at once with max_concurrency 3");
            delivered += n;
        }
        assert_eq!(delivered, 10);
    }

    #[tokio::test]
    async fn each_subscriber_gets_every_change_and_an_unbound_one_is_removed_and_recorded() {
        let f = fixture(|_| 200, vec![binding("one", 4), binding("two", 4)]);
        f.streams.pump().await;
        set(&f, "a", b"1").await;
        // `two` is undeployed before it got the change.
        f.bindings.0.lock().unwrap().retain(|b| b.function == "one");
        f.clock.advance(1);
        assert_eq!(f.streams.pump().await, 1);
        let seen = seen(&f);
        assert_eq!(seen.len(), 1);
        let subs = f.store.kv_subscriptions().await.unwrap();
        assert_eq!(subs, [binding("one", 4).subscription()]);
        let dropped = actions(&f, "kv.changes_dropped").await;
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].function.as_deref(), Some("two"));
        // Unwatched by `two` now: later writes reach `one` only.
        set(&f, "a", b"2").await;
        assert_eq!(f.streams.pump().await, 1);
        assert!(f
            .store
            .kv_changes(&binding("two", 4).subscription(), 10)
            .await
            .unwrap()
            .is_empty());
    }

    /// A change made inside a traced request carries that request's
    /// context as the CloudEvents distributed-tracing attributes (what the
    /// gateway continues); one made outside any carries none.
    #[test]
    fn a_changes_request_carries_the_trace_context_of_its_write() {
        const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut change = KvChangeRow {
            id: 1,
            bucket: "orders".into(),
            key: "a".into(),
            seq: 7,
            op: zerofn_store::KvOp::Set,
            old: None,
            new: Some(b"1".to_vec()),
            at_ms: 1_000,
            writer: "function:writer".into(),
            attempts: 1,
            last_error: None,
            trace: None,
        };
        let untraced = kv_change_request("acme", &change);
        assert!(untraced.headers().get("ce-traceparent").is_none());
        assert!(untraced.headers().get("ce-tracestate").is_none());
        change.trace = TraceContext::new(TP, Some("vendor=1"));
        let traced = kv_change_request("acme", &change);
        let h = |n: &str| {
            traced
                .headers()
                .get(n)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(h("ce-traceparent"), TP);
        assert_eq!(h("ce-tracestate"), "vendor=1");
        assert!(
            traced.headers().get("traceparent").is_none(),
            "the HTTP traceparent is the gateway's to set"
        );
        // The gateway reads it as strictly as a caller's header.
        let parent =
            zerofn_telemetry::TraceParent::from_values(&h("ce-traceparent"), None).unwrap();
        assert_eq!(
            parent.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(parent.is_sampled());
    }

    #[test]
    fn keys_are_percent_encoded_in_headers() {
        for (key, header) in [
            ("plain-key_1.2", "plain-key_1.2"),
            ("a b", "a%20b"),
            ("100%", "100%25"),
            ("\"q\"", "%22q%22"),
            ("é", "%C3%A9"),
            ("line\nbreak", "line%0Abreak"),
            ("tab\tdel\u{7f}", "tab%09del%7F"),
        ] {
            assert_eq!(percent_encode_header(key), header, "{key:?}");
            assert!(HeaderValue::from_str(&percent_encode_header(key)).is_ok());
        }
    }
}
