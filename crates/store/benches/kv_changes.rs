//! The cost of change streams on the key-value write path: `kv_set` of a
//! 100-byte value to a bucket no function subscribes to (one indexed lookup
//! more than before streams existed), to a bucket with one subscriber (the
//! old value read, a sequence number, one change row), and with three
//! subscribers (three rows). Every write is its own `synchronous=FULL`
//! transaction, as a guest's is. The subscriber's rows are cleared between
//! chunks of 2,000 writes, outside the timing, so its bound is never hit.
//! Each write stores a value it has not stored before: SQLite skips the
//! page write (and so the WAL frame and its fsync) when a row is overwritten
//! with identical bytes, which would make the unwatched case look free.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use zerofn_store::{KvSubscription, Store};
use zerofn_types::TenantName;

const CHUNK: u64 = 2_000;

fn subscription(function: &str) -> KvSubscription {
    KvSubscription {
        tenant: "bench".into(),
        bucket: "orders".into(),
        function: function.into(),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let tenant = TenantName::parse("bench").unwrap();
    let mut counter = 0u64;
    let mut group = c.benchmark_group("kv_set");
    group.sample_size(20);
    for subscribers in [0usize, 1, 3] {
        let subs: Vec<_> = (0..subscribers)
            .map(|i| subscription(&format!("sub-{i}")))
            .collect();
        group.bench_function(format!("{subscribers}_subscribers"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    // Untimed: a fresh subscription set (no rows, no backlog).
                    rt.block_on(async {
                        for s in &subs {
                            store.kv_unsubscribe(s, u64::MAX).await.unwrap();
                            store.kv_subscribe(s, 1).await.unwrap();
                        }
                    });
                    let n = (iters - done).min(CHUNK);
                    let values: Vec<Vec<u8>> = (0..n)
                        .map(|_| {
                            counter += 1;
                            format!("{counter:0>100}").into_bytes()
                        })
                        .collect();
                    let start = Instant::now();
                    rt.block_on(async {
                        for (i, value) in values.into_iter().enumerate() {
                            store
                                .kv_set(
                                    &tenant,
                                    "orders",
                                    &format!("key-{}", i % 100),
                                    value,
                                    "function:bench",
                                )
                                .await
                                .unwrap();
                        }
                    });
                    spent += start.elapsed();
                    done += n;
                }
                spent
            })
        });
        rt.block_on(async {
            for s in &subs {
                store.kv_unsubscribe(s, u64::MAX).await.unwrap();
            }
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
