//! Durable audit appends: one appender waiting for each commit (latency),
//! and many concurrent appenders sharing group commits (throughput).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zerofn_audit::{Action, AuditDurability, AuditLog, AuditRecord, Outcome};
use zerofn_store::Store;

fn record(i: u64) -> AuditRecord {
    AuditRecord::new("gateway", Action::Invoke, Outcome::Allow)
        .tenant("acme")
        .function("hello")
        .digest("sha256:0000000000000000000000000000000000000000000000000000000000000000")
        .invocation_id(format!("{i:032x}"))
        .status(200)
        .duration(std::time::Duration::from_micros(42))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // As the platform opens it: default durability, journal allocated up front.
    let log = AuditLog::open_observed(&store, AuditDurability::Disk, None).unwrap();

    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(1));
    g.bench_function("append_durable_sequential", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            rt.block_on(log.append(record(i))).unwrap();
        })
    });
    const CONCURRENT: u64 = 1024;
    g.throughput(Throughput::Elements(CONCURRENT));
    g.bench_function("append_durable_group_commit_1024_concurrent", |b| {
        let mut i = 0;
        b.iter(|| {
            rt.block_on(async {
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..CONCURRENT {
                    i += 1;
                    let log = log.clone();
                    let r = record(i);
                    tasks.spawn(async move { log.append(r).await });
                }
                while let Some(done) = tasks.join_next().await {
                    done.unwrap().unwrap();
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
