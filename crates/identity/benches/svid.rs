//! Cost of issuing SVIDs, the work the platform does per function instance and rotation.
//!
//! Run: `cargo bench -p zerofn-identity --bench svid`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use time::OffsetDateTime;
use zerofn_identity::{CertificateAuthority, SpiffeId, TrustDomain};

const TTL: Duration = Duration::from_secs(300);
const AUDIENCE: &str = "spiffe://zerofn.local/gateway";

fn svid(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let trust_domain = TrustDomain::default();
    let ca = CertificateAuthority::load_or_create(dir.path(), &trust_domain).expect("CA");
    let id = SpiffeId::for_function(&trust_domain, "acme", "hello").expect("SPIFFE ID");

    c.bench_function("x509_svid_issue", |b| {
        b.iter(|| ca.issue_x509_svid(black_box(&id), TTL).unwrap())
    });

    let svid = ca.issue_x509_svid(&id, TTL).unwrap();
    c.bench_function("x509_svid_verify", |b| {
        b.iter(|| {
            ca.verify_x509_svid(black_box(svid.cert_pem()), OffsetDateTime::now_utc())
                .unwrap()
        })
    });

    c.bench_function("jwt_svid_issue", |b| {
        b.iter(|| ca.issue_jwt_svid(black_box(&id), &[AUDIENCE], TTL).unwrap())
    });

    let jwt = ca.issue_jwt_svid(&id, &[AUDIENCE], TTL).unwrap();
    c.bench_function("jwt_svid_verify", |b| {
        b.iter(|| {
            ca.verify_jwt_svid(black_box(jwt.token()), AUDIENCE, OffsetDateTime::now_utc())
                .unwrap()
        })
    });

    c.bench_function("jwt_svid_issue_and_verify", |b| {
        b.iter(|| {
            let jwt = ca.issue_jwt_svid(black_box(&id), &[AUDIENCE], TTL).unwrap();
            ca.verify_jwt_svid(jwt.token(), AUDIENCE, OffsetDateTime::now_utc())
                .unwrap()
        })
    });
}

criterion_group!(benches, svid);
criterion_main!(benches);
