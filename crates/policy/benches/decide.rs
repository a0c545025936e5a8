//! Runtime decisions are measured afresh (`decide_afresh`, the cost of a
//! request not decided before) and, for the public invoke, remembered.
//!
//! One admission decision with 1,000 policies loaded: one permit per tenant
//! (1,000 tenants, each with conditions over provenance, tests and SBOM
//! findings) plus a platform-wide forbid, decided for a request of the last
//! tenant, so every policy's scope is checked. Built once outside the
//! measurement; the set is validated against the schema like any other.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use zerofn_policy::permissions::compile;
use zerofn_policy::{
    AdmissionQuery, CallerAttributes, InvokeSource, KvGrant, Permissions, PolicySet, Principal,
    RequestContext, Resource, RuntimeAction, RuntimePolicies, RuntimePoliciesBuilder,
    RuntimeRequest,
};

const TENANTS: usize = 999;

fn policies() -> String {
    let mut text = String::new();
    for t in 0..TENANTS {
        text.push_str(&permit(t));
    }
    text.push_str(FORBID);
    text
}

fn policies_of(t: usize) -> String {
    format!("{}{FORBID}", permit(t))
}

const FORBID: &str = r#"@id("platform-no-unknown-builders")
forbid (principal, action, resource)
unless { context has provenance && context.provenance.builder like "https://ci.example.com/*" };
"#;

fn permit(t: usize) -> String {
    format!(
        r#"@id("tenant-{t}-ci")
permit (principal, action == Zerofn::Action::"admit", resource in Zerofn::Tenant::"t{t}")
when {{
    context has provenance && context.provenance.repository == "https://git.example.com/t{t}/fn" &&
    context.provenance.ref == "refs/heads/main" &&
    context has tests && context.tests.passed &&
    context has sbom && context.sbom.findings.critical == 0
}};
"#
    )
}

fn bench(c: &mut Criterion) {
    let set = PolicySet::parse(&policies()).unwrap();
    assert_eq!(set.len(), TENANTS + 1);
    let last = TENANTS - 1;
    let query = AdmissionQuery {
        tenant: format!("t{last}"),
        function: "fn".into(),
        signer: "https://github.com/t/fn/.github/workflows/release.yml@refs/heads/main".into(),
        context: json!({
            "digest": "sha256:00",
            "manifest": {
                "version": 3, "name": "fn", "routes": ["/fn"],
                "limits": {"memory_mb": 64, "timeout_ms": 1000, "max_body_kb": 1024},
                "permissions": {"kv": [], "kv_read": [], "kv_write": [], "call": []},
                "invoke": {"from": ["public"]}, "config": [], "layers": [], "layer_digests": [],
            },
            "signer": {"kind": "certificate", "identity": "https://github.com/t/fn/.github/workflows/release.yml@refs/heads/main", "issuer": "https://token.actions.githubusercontent.com"},
            "attestations": 3,
            "provenance": {"builder": "https://ci.example.com/builder", "buildType": "b", "repository": format!("https://git.example.com/t{last}/fn"), "ref": "refs/heads/main", "signer": "k"},
            "sbom": {"components": 500, "findings": {"critical": 0, "high": 2, "medium": 0, "low": 0, "unknown": 0}, "signer": "k"},
            "tests": {"passed": true, "passedCount": 10, "failedCount": 0, "signer": "k"},
        }),
    };
    let decision = set.decide_admission(&query).unwrap();
    assert!(decision.is_allowed(), "{decision:?}");
    assert_eq!(decision.determining(), [format!("tenant-{last}-ci")]);

    c.bench_function("policy/decide_admission_1000_policies", |b| {
        b.iter(|| std::hint::black_box(set.decide_admission(std::hint::black_box(&query)).unwrap()))
    });

    // The same request against only this tenant's permit and the forbid:
    // what a per-tenant policy set (as admission keeps them) costs.
    let own = PolicySet::parse(&policies_of(last)).unwrap();
    assert!(own.decide_admission(&query).unwrap().is_allowed());
    c.bench_function("policy/decide_admission_2_policies", |b| {
        b.iter(|| std::hint::black_box(own.decide_admission(std::hint::black_box(&query)).unwrap()))
    });
}

/// Runtime policies: `tenants` tenants with functions whose manifests grant
/// key-value access (one policy per grant, and the `svid.jwt` permit every
/// function gets), plus one hand-written forbid per tenant.
fn runtime(tenants: usize, functions: usize, grants: usize) -> RuntimePolicies {
    let mut b = RuntimePoliciesBuilder::new();
    for t in 0..tenants {
        let tenant = format!("t{t}");
        for f in 0..functions {
            let p = Permissions {
                kv: (0..grants)
                    .map(|g| KvGrant::parse(&format!("b{g}:read")).unwrap())
                    .collect(),
                ..Permissions::default()
            };
            b.add(
                &tenant,
                PolicySet::parse(&compile(&tenant, &format!("f{f}"), &p)).unwrap(),
            );
        }
        b.add(
            &tenant,
            PolicySet::parse(&format!(
                r#"@id("{tenant}-no-secrets") forbid (principal, action, resource == Zerofn::Bucket::"{tenant}/secrets");"#
            ))
            .unwrap(),
        );
    }
    b.build().unwrap()
}

fn kv_get(tenant: &str, function: &str, bucket: &str) -> RuntimeRequest {
    RuntimeRequest {
        principal: Principal::Function {
            tenant: tenant.into(),
            name: function.into(),
        },
        action: RuntimeAction::KvGet,
        resource: Resource::Bucket {
            tenant: tenant.into(),
            name: bucket.into(),
        },
        context: RequestContext::Key("order-42".into()),
    }
}

fn bench_runtime(c: &mut Criterion) {
    // 100 tenants x 9 functions x (1 grant + svid.jwt) + 100 forbids = 1,900 policies.
    let spread = runtime(100, 9, 1);
    assert_eq!(spread.len(), 1900);
    let req = kv_get("t99", "f8", "b0");
    let d = spread.decide(&req);
    assert!(d.is_allowed(), "{d:?}");
    c.bench_function("policy/runtime_kv_get_1900_policies_100_tenants", |b| {
        b.iter(|| std::hint::black_box(spread.decide_afresh(std::hint::black_box(&req))))
    });

    // One tenant holding 1,111: 111 functions x (9 grants + svid.jwt) + 1 forbid.
    let one = runtime(1, 111, 9);
    assert_eq!(one.len(), 1111);
    let req = kv_get("t0", "f110", "b8");
    assert!(one.decide(&req).is_allowed());
    c.bench_function("policy/runtime_kv_get_1111_policies_1_tenant", |b| {
        b.iter(|| std::hint::black_box(one.decide_afresh(std::hint::black_box(&req))))
    });
    let denied = kv_get("t0", "f110", "secrets");
    assert!(!one.decide(&denied).is_allowed());
}

/// The invoke decision of a function `from = ["public", "jwt:corp"]` with a tenant forbid
/// on the claims: a public caller (empty claims) and a JWT caller with a typical token's
/// claims (converted to Cedar on every decision).
fn bench_invoke(c: &mut Criterion) {
    let mut b = RuntimePoliciesBuilder::new();
    let p = Permissions {
        invoke_from: [InvokeSource::Public, InvokeSource::Jwt("corp".into())].into(),
        ..Permissions::default()
    };
    b.add(
        "acme",
        PolicySet::parse(&compile("acme", "orders", &p)).unwrap(),
    );
    b.add(
        "acme",
        PolicySet::parse(
            r#"@id("writers") forbid (principal in Zerofn::Issuer::"acme/corp", action == Zerofn::Action::"invoke", resource)
            unless { context.claims.scope like "*orders:write*" };"#,
        )
        .unwrap(),
    );
    let rt = b.build().unwrap();
    let request = |principal: Principal, caller: CallerAttributes| RuntimeRequest {
        principal,
        action: RuntimeAction::Invoke,
        resource: Resource::Function {
            tenant: "acme".into(),
            name: "orders".into(),
        },
        context: RequestContext::Invoke {
            method: "POST".into(),
            path: "/orders".into(),
            source: zerofn_policy::Source {
                kind: "gateway",
                ip: Some([127, 0, 0, 1].into()),
                ..Default::default()
            },
            depth: 0,
            caller,
        },
    };
    let public = request(Principal::Public, CallerAttributes::None);
    assert!(rt.decide(&public).is_allowed());
    c.bench_function("policy/runtime_invoke_public", |b| {
        b.iter(|| std::hint::black_box(rt.decide_afresh(std::hint::black_box(&public))))
    });
    // The same request again: what the gateway pays once the decision is
    // remembered (`memo.rs`).
    c.bench_function("policy/runtime_invoke_public_remembered", |b| {
        b.iter(|| std::hint::black_box(rt.decide(std::hint::black_box(&public))))
    });
    let claims = json!({"iss": "https://login.example.com", "sub": "alice", "aud": ["orders-api"],
        "exp": 1_900_000_000, "iat": 1_800_000_000, "scope": "orders:read orders:write",
        "email": "alice@example.com", "groups": ["eng", "ops"], "azp": "cli"});
    let jwt = request(
        Principal::Jwt {
            tenant: "acme".into(),
            issuer: "corp".into(),
            subject: "alice".into(),
        },
        CallerAttributes::Claims(std::sync::Arc::new(claims.as_object().unwrap().clone())),
    );
    assert!(rt.decide(&jwt).is_allowed(), "{:?}", rt.decide(&jwt));
    c.bench_function("policy/runtime_invoke_jwt_claims", |b| {
        b.iter(|| std::hint::black_box(rt.decide_afresh(std::hint::black_box(&jwt))))
    });
}

criterion_group!(benches, bench_invoke, bench_runtime, bench);
criterion_main!(benches);
