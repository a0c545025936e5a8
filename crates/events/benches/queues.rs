//! Durable queue figures (a plain timing harness printing percentiles):
//!
//! - `publish`: durable publishes per second, in batches of 1,000 messages of
//!   128 bytes (one transaction with `synchronous=FULL` and one audit record
//!   per batch), through `Queues::publish` as the control API calls it.
//! - `publish_to_invoke`: from a publish's acknowledgement (durable) to the
//!   start of its delivery on an idle loop (woken by the publish, lease,
//!   CloudEvents request built, invoker called), p50/p99 over 500 messages.
//!   The invoker is a stub here: add the gateway's invoke of the component
//!   (BENCHMARKS.md, `invoke` bench) for the whole path.
//!
//! Run: `cargo bench --workspace --bench queues` (release), or with
//! `--profile dev` to reuse a test build (the workspace's dependencies,
//! SQLite among them, are built at opt-level 2 in dev too).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};
use zerofn_audit::AuditLog;
use zerofn_events::{
    Binding, Bindings, BoxFuture, Delivered, Delivery, EventInvocation, Invoker, OutgoingMessage,
    QueueSettings, Queues, SystemClock,
};
use zerofn_store::Store;
use zerofn_types::TenantName;

struct One(Binding);
impl Bindings for One {
    fn bindings(&self) -> Vec<Binding> {
        vec![self.0.clone()]
    }
}

struct Stub(mpsc::Sender<Instant>);
impl Invoker for Stub {
    fn invoke(&self, _: EventInvocation) -> BoxFuture<Delivered> {
        let tx = self.0.clone();
        Box::pin(async move {
            let _ = tx.send(Instant::now()).await;
            Delivered {
                status: 200,
                error: None,
                give_up: false,
            }
        })
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let tenant = TenantName::parse("acme").unwrap();
    store.create_tenant(&tenant, "t0").await.unwrap();
    let audit = AuditLog::open(&store).unwrap();
    let wake = Arc::new(Notify::new());
    let clock: Arc<dyn zerofn_events::Clock> = Arc::new(SystemClock);
    let queues = Queues::new(store.clone(), audit.clone(), clock.clone(), wake.clone());
    let settings = QueueSettings::default();
    queues
        .create("bench", &tenant, "bulk", &settings)
        .await
        .unwrap();
    queues
        .create("bench", &tenant, "idle", &settings)
        .await
        .unwrap();

    // Durable publish throughput, batched.
    let batches = 40;
    let mut took = Vec::new();
    for b in 0..batches {
        let batch: Vec<OutgoingMessage> = (0..1000)
            .map(|_| OutgoingMessage {
                data: vec![b'x'; 128],
                ..Default::default()
            })
            .collect();
        let t = Instant::now();
        queues
            .publish("bench", &tenant, "bulk", batch)
            .await
            .unwrap();
        took.push(t.elapsed());
        if b % 50 == 49 {
            queues.purge("bench", &tenant, "bulk").await.unwrap();
        }
    }
    let total: Duration = took.iter().sum();
    took.sort();
    println!(
        "publish: {} batches of 1000 x 128 B: {:.0} messages/s (batch p50 {:?}, p99 {:?})",
        batches,
        (batches * 1000) as f64 / total.as_secs_f64(),
        percentile(&took, 0.5),
        percentile(&took, 0.99)
    );

    // Publish (acknowledged) to delivery start, idle loop.
    let (tx, mut rx) = mpsc::channel(16);
    let delivery = Delivery::new(
        store.open_queue_worker().unwrap(),
        clock,
        Arc::new(One(Binding {
            tenant: "acme".into(),
            function: "f".into(),
            queue: "idle".into(),
            max_concurrency: 4,
        })),
        Arc::new(Stub(tx)),
        audit,
        wake,
    );
    let (stop, stopped) = watch::channel(false);
    let loop_task = tokio::spawn(delivery.run(stopped));
    let mut from_ack = Vec::new();
    let mut from_request = Vec::new();
    for i in 0..520 {
        let start = Instant::now();
        queues
            .publish(
                "bench",
                &tenant,
                "idle",
                vec![OutgoingMessage {
                    data: b"{}".to_vec(),
                    ..Default::default()
                }],
            )
            .await
            .unwrap();
        let acked = Instant::now();
        let invoked = rx.recv().await.unwrap();
        if i >= 20 {
            from_ack.push(invoked.saturating_duration_since(acked));
            from_request.push(invoked.saturating_duration_since(start));
        }
        // Idle between messages: the loop is asleep when the next arrives.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    from_ack.sort();
    from_request.sort();
    println!(
        "publish_to_invoke: acknowledged -> invoker called: p50 {:?} p99 {:?}; publish request -> invoker called: p50 {:?} p99 {:?} ({} messages)",
        percentile(&from_ack, 0.5),
        percentile(&from_ack, 0.99),
        percentile(&from_request, 0.5),
        percentile(&from_request, 0.99),
        from_ack.len()
    );
    let _ = stop.send(true);
    let _ = loop_task.await;
}
