//! Admission of a large function: a 30 MiB component (pseudo-random bytes: admission hashes
//! and verifies, it does not parse WebAssembly), its key-based Sigstore bundle, three
//! attestations (SLSA provenance v1, a test result, a CycloneDX SBOM of 500 npm packages),
//! the SBOM matched against 50,000 OSV records, and a Cedar admission policy over the facts.
//! The same with 5,000 records shows that the database size does not matter (the scan goes
//! through the package index).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::json;
use zerofn_admission::{
    admit_submission, sign_artifact, sign_attestation, sign_manifest, AdmissionRules, Digest,
    Manifest, PolicySet, Rollback, SigningKey, Submission, SubmittedFile, TrustedSigners, VulnDb,
    CYCLONEDX_PREDICATE_PREFIX, MANIFEST_BUNDLE_FILE, SLSA_PROVENANCE_V1, TEST_RESULT_V01,
};

#[path = "../../vulndb/benches/support/synthetic.rs"]
mod synthetic;
use synthetic::{database, sbom_json, PACKAGES_IN_DB};

const COMPONENT_BYTES: usize = 30 << 20;

const POLICY: &str = r#"
@id("ci-built")
permit (principal, action == Zerofn::Action::"admit", resource in Zerofn::Tenant::"bench")
when {
    context has provenance && context.provenance.repository == "https://git.example.com/bench/fn" &&
    context has tests && context.tests.passed
};
@id("sbom-scanned")
forbid (principal, action, resource)
unless { context has sbom && context.sbom.components == 500 };
"#;

fn component() -> Vec<u8> {
    // xorshift: cheap, deterministic, incompressible enough for hashing.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(COMPONENT_BYTES);
    while out.len() < COMPONENT_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn submission(key: &SigningKey) -> Submission {
    let component = component();
    let digest = Digest::of(&component);
    let attest = |predicate_type: &str, predicate: serde_json::Value| SubmittedFile {
        name: format!("fn.wasm.{}.sigstore.json", predicate_type.len()),
        bytes: sign_attestation("fn.wasm", &digest, predicate_type, &predicate, key)
            .unwrap()
            .into_bytes(),
    };
    let manifest = Manifest::from_toml(
        "name = \"big\"\ntenant = \"bench\"\ncomponent = \"fn.wasm\"\nroutes = [\"/big\"]\n",
    )
    .unwrap();
    let attestations = vec![
        SubmittedFile {
            name: MANIFEST_BUNDLE_FILE.to_owned(),
            bytes: sign_manifest(&manifest, &digest, 1, key)
                .unwrap()
                .into_bytes(),
        },
        attest(
            SLSA_PROVENANCE_V1,
            json!({
                "buildDefinition": {
                    "buildType": "https://example.com/build/v1",
                    "resolvedDependencies": [{"uri": "git+https://git.example.com/bench/fn@refs/heads/main", "digest": {"sha1": "abc"}}]
                },
                "runDetails": {"builder": {"id": "https://ci.example.com/builder"}}
            }),
        ),
        attest(
            TEST_RESULT_V01,
            json!({"result": "PASSED", "passedTests": ["unit"], "failedTests": []}),
        ),
        attest(CYCLONEDX_PREDICATE_PREFIX, sbom_json()),
    ];
    Submission {
        manifest,
        bundle: sign_artifact(&component, key).unwrap().into_bytes(),
        component,
        attestations,
        floor: None,
        rollback: Rollback::Refuse,
    }
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::generate();
    let rules = AdmissionRules {
        signers: TrustedSigners {
            keys: vec![key.public_key()],
            keyless: Vec::new(),
        },
        policy: PolicySet::parse(POLICY).unwrap(),
        // The synthetic records are all critical and many match the SBOM: no
        // threshold, so the measured path is an admission, findings reported.
        severity_threshold: None,
        require_sbom: true,
    };
    let submission = submission(&key);
    let big: VulnDb = database(PACKAGES_IN_DB);
    let small: VulnDb = database(PACKAGES_IN_DB / 10);

    let admitted = admit_submission(submission.clone(), &rules, Some(&big))
        .unwrap_or_else(|r| panic!("{}", r.report.table()));
    println!("{}", admitted.report.table());

    let mut g = c.benchmark_group("admission");
    g.sample_size(20);
    for (label, db) in [("50000", &big), ("5000", &small)] {
        g.bench_function(
            format!("admit_30MiB_3_attestations_500_packages_vs_{label}_osv_records"),
            |b| {
                b.iter_batched(
                    || submission.clone(),
                    |s| std::hint::black_box(admit_submission(s, &rules, Some(db)).is_ok()),
                    BatchSize::LargeInput,
                )
            },
        );
    }
    g.bench_function("sha256_30MiB_alone", |b| {
        b.iter(|| std::hint::black_box(Digest::of(&submission.component)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
