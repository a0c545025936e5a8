//! Route lookup among 1,000 functions, and the whole in-process invoke
//! path (route, body limits, invoke decision, fresh instance, durable audit
//! record) without sockets: a plain function, and one reading a key-value
//! entry (identity verification, capability decision, its durable audit
//! record and the SQLite read added).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use bytes::Bytes;
use zerofn_testkit::guest;

use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::Full;
use zerofn_admission::{admit, sign_artifact, Manifest, Route, SigningKey};
use zerofn_audit::{AuditDurability, AuditLog};
use zerofn_gateway::{
    Gateway, GatewayConfig, GatewayServices, Policies, RouteSpace, Routes, WorkloadIdentity,
};
use zerofn_identity::{
    CertificateAuthority, JwtSvid, SpiffeId, SvidRefusal, SvidVerifier, TrustDomain,
    VerifiedSpiffeId, X509Svid,
};
use zerofn_policy::permissions::compile;
use zerofn_policy::{PolicySet, RuntimePoliciesBuilder};
use zerofn_sandbox::{Sandbox, SandboxConfig};
use zerofn_store::Store;
use zerofn_types::{FunctionName, TenantName};

const FUNCTIONS: usize = 1000;

/// Real SVIDs from a real CA, verified on every capability call as the
/// platform does (with the platform's verifier).
struct BenchIdentities {
    verifier: SvidVerifier,
    svids: std::collections::HashMap<(String, String), X509Svid>,
}

impl WorkloadIdentity for BenchIdentities {
    fn verify(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> Result<VerifiedSpiffeId, SvidRefusal> {
        let svid = self
            .svids
            .get(&(tenant.to_string(), name.to_string()))
            .ok_or_else(|| SvidRefusal::NotServed {
                workload: format!("{tenant}/{name}"),
            })?;
        self.verifier.verify(svid, time::OffsetDateTime::now_utc())
    }

    fn jwt_svid(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
        _: &str,
    ) -> Result<JwtSvid, SvidRefusal> {
        // JWT-SVIDs are not part of this benchmark.
        Err(SvidRefusal::NotServed {
            workload: format!("{tenant}/{name}"),
        })
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::new(dir.path().join("cache"))).unwrap());
    let key = SigningKey::generate();
    let component = guest("hello-c");
    let bundle = sign_artifact(&component, &key).unwrap();
    let routes = Routes::default();
    routes
        .set_space(RouteSpace::new([(Route::parse("/...").unwrap(), "bench".to_owned())]).unwrap());
    let mut loaded = Vec::new();
    let mut precompiled: Option<String> = None;
    for i in 0..FUNCTIONS {
        let manifest = Manifest::from_toml(&format!(
            "name = \"fn{i}\"\ntenant = \"bench\"\ncomponent = \"f.wasm\"\nroutes = [\"/fn{i}\", \"/api{i}/...\"]\n"
        ))
        .unwrap();
        let artifact = admit(
            manifest,
            component.clone(),
            bundle.as_bytes(),
            &[key.public_key()],
        )
        .unwrap();
        let f = sandbox.load(artifact, precompiled.as_deref()).unwrap();
        precompiled.get_or_insert_with(|| f.precompiled_sha256().to_owned());
        loaded.push(f);
    }
    let kv_manifest = Manifest::from_toml(
        "name = \"kv\"\ntenant = \"bench\"\ncomponent = \"kv.wasm\"\nroutes = [\"/kv/...\"]\n[permissions]\nkv = [\"notes:read-write\"]\n",
    )
    .unwrap();
    let kv_component = guest("kv-c");
    let kv_bundle = sign_artifact(&kv_component, &key).unwrap();
    let kv = sandbox
        .load(
            admit(
                kv_manifest,
                kv_component,
                kv_bundle.as_bytes(),
                &[key.public_key()],
            )
            .unwrap(),
            None,
        )
        .unwrap();
    loaded.push(kv);
    let mut policies = RuntimePoliciesBuilder::new();
    for f in &loaded {
        let m = f.artifact().manifest();
        policies.add(
            m.tenant.as_str(),
            PolicySet::parse(&compile(m.tenant.as_str(), m.name.as_str(), &m.permissions)).unwrap(),
        );
    }
    let policies = {
        let p = Policies::default();
        p.replace(policies.build().unwrap());
        p
    };
    routes.install_all(loaded);

    let table = routes.snapshot();
    c.bench_function("gateway/route_lookup_1000_functions", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 7) % FUNCTIONS;
            let exact = format!("/fn{i}");
            let prefix = format!("/api{i}/x/y");
            assert!(table.lookup(&exact).is_some());
            assert!(table.lookup(&prefix).is_some());
        })
    });

    let store = Store::open(dir.path()).unwrap();
    // `ZEROFN_BENCH_AUDIT=process` measures with process durability (no
    // fsync per commit), which leaves the non-I/O cost of each path.
    let (durability, label) = match std::env::var("ZEROFN_BENCH_AUDIT").as_deref() {
        Ok("process") => (
            AuditDurability::Process {
                flush_interval: std::time::Duration::from_millis(100),
            },
            "process",
        ),
        _ => (AuditDurability::Disk, "disk"),
    };
    let audit = AuditLog::open_with(&store, durability).unwrap();
    let td = TrustDomain::new("bench.local").unwrap();
    let ca = Arc::new(CertificateAuthority::load_or_create(&dir.path().join("ca"), &td).unwrap());
    let id = SpiffeId::for_function(&td, "bench", "kv").unwrap();
    let svid = ca
        .issue_x509_svid(&id, std::time::Duration::from_secs(3600))
        .unwrap();
    let identities = BenchIdentities {
        verifier: SvidVerifier::new(ca),
        svids: [(("bench".to_owned(), "kv".to_owned()), svid)].into(),
    };
    let gateway = Gateway::new(
        routes,
        sandbox,
        audit,
        GatewayConfig::default(),
        GatewayServices {
            authn: Default::default(),
            publisher: None,
            objects: None,
            mtls: Default::default(),
            tracer: Default::default(),
            policies,
            store: store.clone(),
            identity: Arc::new(identities),
            logs: zerofn_gateway::InvocationLogs::start(
                &store,
                zerofn_gateway::LogRetention::default(),
                64 * 1024,
            )
            .unwrap(),
            limits: Default::default(),
        },
    );
    rt.block_on(store.kv_set(
        &TenantName::parse("bench").unwrap(),
        "notes",
        "a",
        b"value".to_vec(),
        "function:bench",
    ))
    .unwrap();
    c.bench_function(
        &format!("gateway/invoke_path_in_process/{label}/hello-c"),
        |b| {
            b.iter(|| {
                let req = http::Request::get("http://bench/fn1")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let resp = rt.block_on(gateway.handle(req));
                assert_eq!(resp.status(), 200);
            })
        },
    );
    c.bench_function(
        &format!("gateway/invoke_path_in_process/{label}/kv-c-get"),
        |b| {
            b.iter(|| {
                let req = http::Request::get("http://bench/kv/notes/a")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let resp = rt.block_on(gateway.handle(req));
                assert_eq!(resp.status(), 200);
            })
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
