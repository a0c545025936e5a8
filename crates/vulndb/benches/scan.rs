//! Scanning an SBOM: 500 npm packages against 50,000 synthetic OSV records (10,000
//! packages with 5 records each, every record with two SEMVER ranges and a `versions`
//! list), built once outside the measurement. Lookup goes through the package index, so the
//! database size should barely matter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[path = "support/synthetic.rs"]
mod synthetic;
use synthetic::{database, sbom, PACKAGES_IN_DB, RECORDS_PER_PACKAGE, SBOM_PACKAGES};

fn bench(c: &mut Criterion) {
    let db = database(PACKAGES_IN_DB);
    assert_eq!(db.len(), PACKAGES_IN_DB * RECORDS_PER_PACKAGE);
    let sbom = sbom();
    assert_eq!(sbom.packages.len(), SBOM_PACKAGES);
    assert!(!db.scan(&sbom).is_empty());

    let mut g = c.benchmark_group("vulndb");
    g.throughput(Throughput::Elements(SBOM_PACKAGES as u64));
    g.bench_function("scan_500_packages_against_50000_records", |b| {
        b.iter(|| std::hint::black_box(db.scan(std::hint::black_box(&sbom))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
