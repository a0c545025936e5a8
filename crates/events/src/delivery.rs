//! The delivery loop: leases visible messages of every queue a deployed
//! function is bound to (`[[triggers]] queue = "..."`), delivers each as a
//! CloudEvents request through the gateway's invoke path, and settles it.
//!
//! - A 2xx answer deletes the message. Anything else (an error status, a
//!   trap, a timeout, a policy refusal, a limit) releases it: it becomes
//!   visible again after an exponential backoff with jitter, capped at the
//!   queue's visibility timeout; once it has used `max_attempts` it moves to
//!   the queue's dead-letter queue with the last error (audited).
//! - A delivery that never settles (the platform was killed, the function
//!   outlived the lease) is leased again once its visibility timeout ran
//!   out: at least once, never lost.
//! - At most `max_concurrency` deliveries per binding are in flight; a
//!   message is leased only when a slot is free, so backpressure leaves
//!   messages in the store and drops none.
//! - FIFO queues offer one message per group at a time (`zerofn_store`).
//!
//! # Trust
//! Trusts the [`Invoker`] to run the invocation with the event source as
//! its principal, so the function's invoke policy, limits, sandbox and audit
//! decide and record it exactly as any other call. Trusts the [`Bindings`]
//! to come from admitted manifests. Trusts nothing in a message: its
//! attributes were checked at publish and are only copied into headers.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rand_core::RngCore;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome};
use zerofn_store::{Leased, QueueError, QueueRefusal, QueueWorker, Released};

use crate::clock::Clock;

/// Most deliveries in flight for one binding (`[[triggers]] max_concurrency`).
pub const MAX_TRIGGER_CONCURRENCY: u32 = 1_000;
/// The first retry's delay; each further one doubles, up to the visibility timeout.
pub const RETRY_BASE_MS: u64 = 100;

/// A function bound to a queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Binding {
    pub tenant: String,
    pub function: String,
    pub queue: String,
    pub max_concurrency: u32,
}

impl Binding {
    /// The event source's name in its tenant, `queue/<name>`: the
    /// principal `Zerofn::EventSource::"<tenant>/queue/<name>"`.
    /// A bucket trigger's binding (its event queue) is `bucket/<bucket>`.
    pub fn source(&self) -> String {
        match crate::objects::bucket_of_event_queue(&self.queue) {
            Some(bucket) => format!("bucket/{bucket}"),
            None => format!("queue/{}", self.queue),
        }
    }
}

/// Where the bindings come from (the functions deployed now).
pub trait Bindings: Send + Sync + 'static {
    /// The queue bindings.
    fn bindings(&self) -> Vec<Binding>;
    /// The schedule bindings (none unless said).
    fn schedules(&self) -> Vec<crate::schedule::ScheduleBinding> {
        Vec::new()
    }
    /// The key-value change-stream bindings (none unless said).
    fn kv_streams(&self) -> Vec<crate::kv_stream::KvBinding> {
        Vec::new()
    }
}

/// One delivery to run.
#[derive(Debug)]
pub struct EventInvocation {
    pub tenant: String,
    /// The function bound to the source.
    pub function: String,
    /// The event source's name in its tenant, `<kind>/<name>` (`queue/orders`,
    /// `schedule/report-nightly`): the principal
    /// `Zerofn::EventSource::"<tenant>/<kind>/<name>"`.
    pub source: String,
    pub event_id: String,
    /// 1 for the first delivery of the message.
    pub attempt: u32,
    pub request: http::Request<Bytes>,
}

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub status: u16,
    /// What went wrong, when it did (kept with the message as its last error).
    pub error: Option<String>,
    /// The event can never be delivered as it is (it does not match its
    /// trigger's schema, so no code ran): it goes to the dead-letter queue
    /// now instead of being retried.
    pub give_up: bool,
}

impl Delivered {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Runs an event's invocation through the invoke path.
pub trait Invoker: Send + Sync + 'static {
    fn invoke(&self, invocation: EventInvocation) -> BoxFuture<Delivered>;
}

/// The delay before attempt `attempt + 1` after attempt `attempt` failed:
/// `RETRY_BASE_MS * 2^(attempt-1)`, capped at `cap_ms`, then "equal jitter"
/// (half fixed, half random) so failing messages spread out.
pub fn retry_delay_ms(attempt: u32, cap_ms: u64, random: u64) -> u64 {
    let exp = attempt.saturating_sub(1).min(30);
    let full = RETRY_BASE_MS.saturating_mul(1u64 << exp).min(cap_ms.max(1));
    let half = full / 2;
    half.saturating_add(random % (full - half).saturating_add(1))
}

/// The loop and what it needs.
pub struct Delivery {
    worker: QueueWorker,
    clock: Arc<dyn Clock>,
    bindings: Arc<dyn Bindings>,
    invoker: Arc<dyn Invoker>,
    audit: AuditLog,
    wake: Arc<Notify>,
    slots: Mutex<HashMap<Binding, Arc<Semaphore>>>,
}

impl Delivery {
    pub fn new(
        worker: QueueWorker,
        clock: Arc<dyn Clock>,
        bindings: Arc<dyn Bindings>,
        invoker: Arc<dyn Invoker>,
        audit: AuditLog,
        wake: Arc<Notify>,
    ) -> Arc<Delivery> {
        Arc::new(Delivery {
            worker,
            clock,
            bindings,
            invoker,
            audit,
            wake,
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// The binding's delivery slots; bindings no longer deployed lose theirs
    /// (their deliveries in flight keep their own permits).
    fn slots(&self, bindings: &[Binding]) -> Vec<(Binding, Arc<Semaphore>)> {
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

    /// One pass: for every binding with a free slot, lease messages and
    /// start their deliveries in `tasks`. Answers the earliest future time
    /// a message of a bound queue becomes visible, if any.
    async fn pass(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Option<u64> {
        let bindings = self.bindings.bindings();
        let mut next: Option<u64> = None;
        for (binding, sem) in self.slots(&bindings) {
            let free = sem.available_permits();
            let now = self.clock.now_ms();
            if free > 0 {
                let lease = uuid::Uuid::new_v4().to_string();
                let limit = u32::try_from(free).unwrap_or(u32::MAX);
                match self
                    .worker
                    .lease(&binding.tenant, &binding.queue, now, limit, &lease)
                    .await
                {
                    Ok(batch) => {
                        for (id, error) in &batch.dead_lettered {
                            self.record_dead_letter(
                                &binding,
                                id,
                                "after its last attempt",
                                error,
                                None,
                            )
                            .await;
                        }
                        for leased in batch.leased {
                            let Ok(permit) = sem.clone().try_acquire_owned() else {
                                // Cannot happen (only this loop takes slots);
                                // the lease runs out and the message returns.
                                break;
                            };
                            let this = self.clone();
                            let b = binding.clone();
                            let cap = batch.visibility_timeout_ms;
                            tasks.spawn(async move { this.deliver(b, leased, permit, cap).await });
                        }
                    }
                    // A trigger naming a queue that does not exist (yet): nothing to do.
                    Err(QueueError::Refused(QueueRefusal::NoSuchQueue(_))) => continue,
                    Err(error) => {
                        tracing::warn!(tenant = %binding.tenant, queue = %binding.queue, %error, "cannot lease messages");
                        continue;
                    }
                }
            }
            if let Ok(Some(at)) = self
                .worker
                .next_visible(&binding.tenant, &binding.queue)
                .await
            {
                if at > now {
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
            }
        }
        next
    }

    async fn deliver(
        self: Arc<Self>,
        binding: Binding,
        leased: Leased,
        permit: OwnedSemaphorePermit,
        visibility_ms: u64,
    ) {
        let message = &leased.message;
        let request = match crate::objects::bucket_of_event_queue(&binding.queue) {
            Some(bucket) => crate::objects::request(&binding.tenant, bucket, message),
            None => crate::cloudevent::request(&binding.tenant, &binding.queue, message),
        };
        let result = self
            .invoker
            .invoke(EventInvocation {
                tenant: binding.tenant.clone(),
                function: binding.function.clone(),
                source: binding.source(),
                event_id: message.id.clone(),
                attempt: message.attempts,
                request,
            })
            .await;
        let now = self.clock.now_ms();
        if result.is_success() {
            if let Err(error) = self.worker.acknowledge(message.seq, &leased.lease).await {
                // Delivered again after the visibility timeout: at least once.
                tracing::warn!(%error, id = %message.id, "cannot delete a delivered message");
            }
        } else {
            let error = result
                .error
                .clone()
                .unwrap_or_else(|| format!("the function answered {}", result.status));
            let delay =
                retry_delay_ms(message.attempts, visibility_ms, rand_core::OsRng.next_u64());
            let retry_at = now.saturating_add(delay);
            let settled = if result.give_up {
                self.worker
                    .give_up(message.seq, &leased.lease, retry_at, &error, now)
                    .await
            } else {
                self.worker
                    .release(message.seq, &leased.lease, retry_at, &error, now)
                    .await
            };
            match settled {
                Ok(Some(Released::DeadLettered { queue })) => {
                    let why = if result.give_up {
                        "without a retry, as it can never be delivered"
                    } else {
                        "after its last attempt"
                    };
                    self.record_dead_letter(&binding, &message.id, why, &error, Some(&queue))
                        .await;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, id = %message.id, "cannot release a failed delivery");
                }
            }
        }
        drop(permit);
        self.wake.notify_one();
    }

    async fn record_dead_letter(
        &self,
        binding: &Binding,
        id: &str,
        why: &str,
        error: &str,
        dlq: Option<&str>,
    ) {
        let record = AuditRecord::new("events", Action::QueueDeadLetter, Outcome::Allow)
            .tenant(binding.tenant.as_str())
            .function(binding.function.as_str())
            .reason(format!("moved to the dead-letter queue {why}: {error}"))
            .detail(serde_json::json!({
                "queue": binding.queue,
                "dead_letter": dlq,
                "event_id": id,
            }));
        if let Err(error) = self.audit.append(record).await {
            tracing::error!(%error, "cannot record a dead-lettered message");
        }
    }

    /// Runs until `shutdown`: passes whenever a publish, a redrive or a
    /// finished delivery wakes it, when a waiting message becomes visible,
    /// and at least every second. Deliveries in flight at shutdown are
    /// stopped; their messages return after their visibility timeout.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        crate::passes::run(self, shutdown).await;
    }

    /// One pass whose deliveries are awaited (tests): answers how many
    /// deliveries ran.
    pub async fn pump(self: &Arc<Self>) -> usize {
        crate::passes::pump(self).await
    }
}

impl crate::passes::Passes for Delivery {
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
    use crate::queue::{OutgoingMessage, QueueSettings, Queues};
    use std::sync::atomic::{AtomicU32, Ordering};
    use zerofn_store::Store;
    use zerofn_types::TenantName;

    struct Fixed(Vec<Binding>);
    impl Bindings for Fixed {
        fn bindings(&self) -> Vec<Binding> {
            self.0.clone()
        }
    }

    /// Answers by `rule(event id, earlier calls for that id)`, recording what it saw.
    struct Scripted {
        rule: fn(&str, u32) -> u16,
        calls: Mutex<HashMap<String, u32>>,
        seen: Mutex<Vec<(String, u32, String)>>,
        in_flight: AtomicU32,
        max_in_flight: AtomicU32,
    }
    impl Scripted {
        fn new(rule: fn(&str, u32) -> u16) -> Arc<Scripted> {
            Arc::new(Scripted {
                rule,
                calls: Mutex::new(HashMap::new()),
                seen: Mutex::new(Vec::new()),
                in_flight: AtomicU32::new(0),
                max_in_flight: AtomicU32::new(0),
            })
        }
        fn seen(&self) -> Vec<(String, u32, String)> {
            self.seen.lock().unwrap().clone()
        }
    }
    impl Invoker for Arc<Scripted> {
        fn invoke(&self, inv: EventInvocation) -> BoxFuture<Delivered> {
            let this = self.clone();
            Box::pin(async move {
                let n = this.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                this.max_in_flight.fetch_max(n, Ordering::SeqCst);
                tokio::task::yield_now().await;
                let earlier = {
                    let mut calls = this.calls.lock().unwrap();
                    let c = calls.entry(inv.event_id.clone()).or_insert(0);
                    *c += 1;
                    *c - 1
                };
                let status = (this.rule)(&inv.event_id, earlier);
                let ce = |h: &str| {
                    inv.request
                        .headers()
                        .get(h)
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_owned()
                };
                assert_eq!(ce("ce-id"), inv.event_id);
                assert_eq!(ce("ce-zerofnattempt"), inv.attempt.to_string());
                this.seen.lock().unwrap().push((
                    inv.event_id.clone(),
                    inv.attempt,
                    ce("ce-subject"),
                ));
                this.in_flight.fetch_sub(1, Ordering::SeqCst);
                Delivered {
                    status,
                    error: (status >= 300).then(|| format!("status {status}")),
                    // The tests' stand-in for an event its schema refuses.
                    give_up: status == 422,
                }
            })
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        clock: Arc<FakeClock>,
        queues: Queues,
        audit: AuditLog,
        tenant: TenantName,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tenant = TenantName::parse("acme").unwrap();
        store.create_tenant(&tenant, "t0").await.unwrap();
        let audit = AuditLog::open(&store).unwrap();
        let clock = Arc::new(FakeClock::new(1_000_000));
        let queues = Queues::new(
            store.clone(),
            audit.clone(),
            clock.clone(),
            Arc::new(Notify::new()),
        );
        Fixture {
            _dir: dir,
            store,
            clock,
            queues,
            audit,
            tenant,
        }
    }

    fn delivery(f: &Fixture, bindings: Vec<Binding>, invoker: Arc<Scripted>) -> Arc<Delivery> {
        let audit = f.audit.clone();
        Delivery::new(
            f.store.open_queue_worker().unwrap(),
            f.clock.clone(),
            Arc::new(Fixed(bindings)),
            Arc::new(invoker),
            audit,
            Arc::new(Notify::new()),
        )
    }

    fn bind(queue: &str, max_concurrency: u32) -> Binding {
        Binding {
            tenant: "acme".into(),
            function: "worker".into(),
            queue: queue.into(),
            max_concurrency,
        }
    }

    fn message(id: &str, group: Option<&str>) -> OutgoingMessage {
        OutgoingMessage {
            id: Some(id.into()),
            group: group.map(Into::into),
            data: id.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn retry_delays_grow_exponentially_within_the_cap_with_jitter() {
        assert_eq!(retry_delay_ms(1, 30_000, 0), 50);
        for attempt in 1..40 {
            let full = (RETRY_BASE_MS << (attempt - 1).min(30)).min(30_000);
            for r in [0, 1, 17, 12345, u64::MAX] {
                let d = retry_delay_ms(attempt, 30_000, r);
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d} not in [{}, {full}]",
                    full / 2
                );
            }
        }
        assert_eq!(retry_delay_ms(5, 30_000, 0), 800);
        assert_eq!(retry_delay_ms(30, 30_000, 0), 15_000);
    }

    #[tokio::test]
    async fn success_deletes_and_failures_retry_then_dead_letter() {
        let f = fixture().await;
        let settings = QueueSettings {
            visibility_timeout: Some("10s".into()),
            max_attempts: Some(3),
            dead_letter: Some("dlq".into()),
            ..Default::default()
        };
        f.queues
            .create("op", &f.tenant, "dlq", &QueueSettings::default())
            .await
            .unwrap();
        f.queues
            .create("op", &f.tenant, "orders", &settings)
            .await
            .unwrap();
        f.queues
            .publish(
                "op",
                &f.tenant,
                "orders",
                vec![message("ok", None), message("bad", None)],
            )
            .await
            .unwrap();
        // `ok` succeeds at once; `bad` fails every time.
        let invoker =
            Scripted::new(|id, earlier| if id == "bad" && earlier < 3 { 500 } else { 200 });
        let d = delivery(&f, vec![bind("orders", 1)], invoker.clone());
        assert_eq!(d.pump().await, 1);
        assert_eq!(d.pump().await, 1);
        // Backing off: not visible again before its delay.
        assert_eq!(d.pump().await, 0);
        f.clock.advance(49);
        assert_eq!(
            d.pump().await,
            0,
            "visible before the shortest first retry delay"
        );
        f.clock.advance(51);
        assert_eq!(d.pump().await, 1, "second attempt after at most 100 ms");
        f.clock.advance(200);
        assert_eq!(d.pump().await, 1, "third attempt after at most 200 ms");
        let seen = invoker.seen();
        let attempts: Vec<_> = seen.iter().map(|(id, a, _)| (id.as_str(), *a)).collect();
        assert_eq!(attempts, [("ok", 1), ("bad", 1), ("bad", 2), ("bad", 3)]);
        // After the third failed attempt the message is in the dead-letter queue.
        let stats = f.queues.stats(&f.tenant, "orders").await.unwrap();
        assert_eq!((stats.counts.visible, stats.counts.in_flight), (0, 0));
        let dead = f.queues.peek(&f.tenant, "dlq", 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].id, "bad");
        assert_eq!(dead[0].last_error.as_deref(), Some("status 500"));
        // Redrive brings it back, with its attempts reset.
        assert_eq!(f.queues.redrive("op", &f.tenant, "dlq").await.unwrap(), 1);
        assert_eq!(d.pump().await, 1);
        assert_eq!(invoker.seen().last().unwrap().1, 1);
        assert!(f
            .queues
            .peek(&f.tenant, "orders", 10)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn an_event_that_can_never_be_delivered_is_dead_lettered_at_once() {
        let f = fixture().await;
        let settings = QueueSettings {
            max_attempts: Some(5),
            dead_letter: Some("dlq".into()),
            ..Default::default()
        };
        for (name, s) in [("dlq", QueueSettings::default()), ("orders", settings)] {
            f.queues.create("op", &f.tenant, name, &s).await.unwrap();
        }
        f.queues
            .publish(
                "op",
                &f.tenant,
                "orders",
                vec![message("invalid", None), message("ok", None)],
            )
            .await
            .unwrap();
        let invoker = Scripted::new(|id, _| if id == "invalid" { 422 } else { 200 });
        let d = delivery(&f, vec![bind("orders", 1)], invoker.clone());
        assert_eq!(d.pump().await, 1);
        assert_eq!(d.pump().await, 1);
        // Well before any retry could happen, nothing is left to deliver.
        f.clock.advance(60_000);
        assert_eq!(d.pump().await, 0);
        let attempts: Vec<_> = invoker
            .seen()
            .iter()
            .map(|(id, a, _)| (id.clone(), *a))
            .collect();
        assert_eq!(attempts, [("invalid".to_owned(), 1), ("ok".to_owned(), 1)]);
        let dead = f.queues.peek(&f.tenant, "dlq", 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].id, "invalid");
        assert_eq!(dead[0].last_error.as_deref(), Some("status 422"));
        let records = f.store.audit_page(0, 1000).await.unwrap();
        let reasons: Vec<String> = records
            .iter()
            .filter(|r| r.action == "queue.dead_letter")
            .filter_map(|r| r.reason.clone())
            .collect();
        assert_eq!(
            reasons,
            ["moved to the dead-letter queue without a retry, as it can never be delivered: status 422"]
        );
    }

    #[tokio::test]
    async fn an_unsettled_delivery_returns_after_the_visibility_timeout() {
        let f = fixture().await;
        let settings = QueueSettings {
            visibility_timeout: Some("5s".into()),
            max_attempts: Some(2),
            dead_letter: Some("dlq".into()),
            ..Default::default()
        };
        f.queues
            .create("op", &f.tenant, "dlq", &QueueSettings::default())
            .await
            .unwrap();
        f.queues
            .create("op", &f.tenant, "orders", &settings)
            .await
            .unwrap();
        f.queues
            .publish("op", &f.tenant, "orders", vec![message("m", None)])
            .await
            .unwrap();
        // A delivery that started and never settled (the platform died).
        let worker = f.store.open_queue_worker().unwrap();
        let batch = worker
            .lease("acme", "orders", f.clock.now_ms(), 1, "lost")
            .await
            .unwrap();
        assert_eq!(batch.leased.len(), 1);
        let invoker = Scripted::new(|_, _| 200);
        let d = delivery(&f, vec![bind("orders", 1)], invoker.clone());
        f.clock.advance(4_999);
        assert_eq!(
            d.pump().await,
            0,
            "leased message visible before its timeout"
        );
        f.clock.advance(1);
        assert_eq!(d.pump().await, 1);
        assert_eq!(invoker.seen(), [("m".to_owned(), 2, "orders".to_owned())]);
        // Settled by the second delivery: the lost lease settles nothing now.
        assert!(!worker
            .acknowledge(batch.leased[0].message.seq, "lost")
            .await
            .unwrap());
        assert!(f
            .queues
            .peek(&f.tenant, "orders", 10)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn a_lease_exhausting_its_attempts_dead_letters_without_a_delivery() {
        let f = fixture().await;
        let settings = QueueSettings {
            visibility_timeout: Some("1s".into()),
            max_attempts: Some(1),
            dead_letter: Some("dlq".into()),
            ..Default::default()
        };
        f.queues
            .create("op", &f.tenant, "dlq", &QueueSettings::default())
            .await
            .unwrap();
        f.queues
            .create("op", &f.tenant, "orders", &settings)
            .await
            .unwrap();
        f.queues
            .publish("op", &f.tenant, "orders", vec![message("m", None)])
            .await
            .unwrap();
        let worker = f.store.open_queue_worker().unwrap();
        worker
            .lease("acme", "orders", f.clock.now_ms(), 1, "lost")
            .await
            .unwrap();
        f.clock.advance(1_000);
        let invoker = Scripted::new(|_, _| 200);
        let d = delivery(&f, vec![bind("orders", 1)], invoker.clone());
        assert_eq!(d.pump().await, 0);
        assert!(invoker.seen().is_empty());
        let dead = f.queues.peek(&f.tenant, "dlq", 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert!(dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("visibility timeout"));
    }

    #[tokio::test]
    async fn concurrency_is_bounded_and_nothing_is_dropped() {
        let f = fixture().await;
        f.queues
            .create("op", &f.tenant, "orders", &QueueSettings::default())
            .await
            .unwrap();
        let batch: Vec<_> = (0..10).map(|i| message(&format!("m{i}"), None)).collect();
        f.queues
            .publish("op", &f.tenant, "orders", batch)
            .await
            .unwrap();
        let invoker = Scripted::new(|_, _| 200);
        let d = delivery(&f, vec![bind("orders", 3)], invoker.clone());
        let mut delivered = 0;
        for _ in 0..10 {
            let n = d.pump().await;
            assert!(n <= 3, "{n} deliveries at once with max_concurrency 3");
            delivered += n;
        }
        assert_eq!(delivered, 10);
        assert!(invoker.max_in_flight.load(Ordering::SeqCst) <= 3);
        let mut ids: Vec<_> = invoker.seen().into_iter().map(|s| s.0).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10);
    }

    #[tokio::test]
    async fn fifo_delivers_in_order_per_group_under_concurrency() {
        let f = fixture().await;
        let settings = QueueSettings {
            fifo: true,
            ..Default::default()
        };
        f.queues
            .create("op", &f.tenant, "f", &settings)
            .await
            .unwrap();
        let mut batch = Vec::new();
        for i in 0..5 {
            batch.push(message(&format!("a{i}"), Some("a")));
            batch.push(message(&format!("b{i}"), Some("b")));
        }
        f.queues.publish("op", &f.tenant, "f", batch).await.unwrap();
        // The second delivery of group a fails once: b is not held up, a waits.
        let invoker =
            Scripted::new(|id, earlier| if id == "a1" && earlier == 0 { 500 } else { 200 });
        let d = delivery(&f, vec![bind("f", 8)], invoker.clone());
        for _ in 0..40 {
            if d.pump().await == 0 {
                f.clock.advance(1_000);
            }
        }
        let seen = invoker.seen();
        for group in ["a", "b"] {
            let order: Vec<_> = seen
                .iter()
                .filter(|(_, _, subject)| subject == group)
                .map(|(id, _, _)| id.clone())
                .collect();
            let mut expected: Vec<String> = (0..5).map(|i| format!("{group}{i}")).collect();
            if group == "a" {
                // a1 failed once and was delivered again before a2.
                expected.insert(2, "a1".into());
            }
            assert_eq!(order, expected, "group {group}");
        }
    }
}
