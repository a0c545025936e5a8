//! Scanning an SBOM: 500 npm packages against 50,000 synthetic OSV records (10,000
//! packages with 5 records each, every record with two SEMVER ranges and a `versions`
//! list), built once outside the measurement. Lookup goes through the package index, so the
//! database size should barely matter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zerofn_admission::{Advisory, Sbom, VulnDb};

const PACKAGES_IN_DB: usize = 10_000;
const RECORDS_PER_PACKAGE: usize = 5;
const SBOM_PACKAGES: usize = 500;

fn record(package: usize, n: usize) -> Vec<u8> {
    let json = serde_json::json!({
        "id": format!("GHSA-{package:05}-{n}"),
        "aliases": [format!("CVE-2026-{package:05}{n}")],
        "summary": "synthetic",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        "affected": [{
            "package": {"ecosystem": "npm", "name": format!("pkg-{package}")},
            "ranges": [{"type": "SEMVER", "events": [
                {"introduced": "0"}, {"fixed": format!("{n}.0.0")},
                {"introduced": format!("{}.0.0-0", n + 1)}, {"fixed": format!("{}.5.0", n + 1)}
            ]}],
            "versions": [format!("{n}.1.0"), format!("{n}.2.0-beta.1")]
        }]
    });
    serde_json::to_vec(&json).unwrap()
}

fn database() -> VulnDb {
    let advisories = (0..PACKAGES_IN_DB).flat_map(|p| {
        (0..RECORDS_PER_PACKAGE).map(move |n| Advisory::from_json(&record(p, n)).unwrap())
    });
    VulnDb::from_advisories(advisories)
}

fn sbom() -> Sbom {
    let components: Vec<_> = (0..SBOM_PACKAGES)
        .map(|i| {
            let package = i * (PACKAGES_IN_DB / SBOM_PACKAGES);
            serde_json::json!({
                "type": "library",
                "name": format!("pkg-{package}"),
                "purl": format!("pkg:npm/pkg-{package}@{}.{}.0", i % 7, i % 3),
            })
        })
        .collect();
    let bom = serde_json::json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "components": components,
    });
    Sbom::from_json(&serde_json::to_vec(&bom).unwrap()).unwrap()
}

fn bench(c: &mut Criterion) {
    let db = database();
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
