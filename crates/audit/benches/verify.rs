//! Full verification of a large log (`zerofn audit verify`): every chain link, every leaf
//! hash against the tree, the root against the signed checkpoint. The log is built once
//! (records appended through the real writer, then one checkpoint over all of them);
//! `ZEROFN_BENCH_RECORDS` sets its size (default 1,000,000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zerofn_audit::tree::{verify_log, LogTree};
use zerofn_audit::{Action, AuditLog, AuditRecord, NoteSigner, Outcome};
use zerofn_store::{AuditDurability, Store};

fn record(i: u64) -> AuditRecord {
    AuditRecord::new("gateway", Action::Invoke, Outcome::Allow)
        .tenant(format!("t{}", i % 200))
        .function(format!("f{}", i % 10))
        .digest("sha256:0000000000000000000000000000000000000000000000000000000000000000")
        .invocation_id(format!("{i:032x}"))
        .status(200)
        .duration(Duration::from_micros(42))
}

fn bench(c: &mut Criterion) {
    let n: u64 = std::env::var("ZEROFN_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = AuditLog::open_with(
        &store,
        AuditDurability::Process {
            flush_interval: Duration::from_millis(500),
        },
    )
    .unwrap();
    let started = Instant::now();
    rt.block_on(async {
        let mut next = 0;
        while next < n {
            let mut tasks = tokio::task::JoinSet::new();
            for i in next..(next + 4096).min(n) {
                let log = log.clone();
                tasks.spawn(async move { log.append(record(i)).await });
            }
            next = (next + 4096).min(n);
            while let Some(done) = tasks.join_next().await {
                done.unwrap().unwrap();
            }
        }
    });
    eprintln!("appended {n} records in {:.1?}", started.elapsed());
    let signer = NoteSigner::from_seed("zerofn.local/audit/bench", &[7; 32]).unwrap();
    let verifier = signer.verifier();
    let tree = LogTree::open(&store, signer).unwrap();
    let started = Instant::now();
    let cp = tree.checkpoint().unwrap();
    assert_eq!(cp.checkpoint.size, n);
    eprintln!(
        "first checkpoint over {n} records in {:.1?}",
        started.elapsed()
    );

    let mut g = c.benchmark_group("audit");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(n));
    g.bench_function(format!("verify_log_{n}_records"), |b| {
        b.iter(|| {
            let report = verify_log(&store, &verifier, false).unwrap();
            assert_eq!(report.records, i64::try_from(n).unwrap());
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
