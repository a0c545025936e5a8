//! Route lookup among 1,000 functions, and the whole in-process invoke
//! path (route, body limits, fresh instance, durable audit record) without
//! sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use bytes::Bytes;
#[path = "../../../tools/guests.rs"]
mod guests;
use guests::guest;

use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::Full;
use zerofn_admission::{admit, sign_artifact, Manifest, SigningKey};
use zerofn_audit::AuditLog;
use zerofn_gateway::{Gateway, GatewayConfig, Routes};
use zerofn_sandbox::{Sandbox, SandboxConfig};
use zerofn_store::Store;

const FUNCTIONS: usize = 1000;

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
    let audit = AuditLog::open(&store).unwrap();
    let gateway = Gateway::new(routes, sandbox, audit, GatewayConfig::default());
    c.bench_function("gateway/invoke_path_in_process/hello-c", |b| {
        b.iter(|| {
            let req = http::Request::get("http://bench/fn1")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = rt.block_on(gateway.handle(req));
            assert_eq!(resp.status(), 200);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
