//! Instantiation of a small component on its own (a fresh store and
//! instance from the pre-linked `ProxyPre` in a pooling slot, then dropped),
//! and instantiate-and-handle: the same plus one request through
//! `wasi:http/incoming-handler`, the response collected.
//!
//! `sandbox/invoke_kv`: instantiate-and-handle of kv-c answering
//! `GET /kv-c/notes/a`, which opens a bucket and reads one key through
//! `HostCapabilities` (an in-memory answer here, so the figure is the
//! sandbox's share of a key-value read).
//!
//! Needs the guests built (`scripts/test` or
//! `cargo run -p zerofn-guest-build -- --out $CARGO_TARGET_DIR/guests`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use bytes::Bytes;
use zerofn_testkit::guest;

use criterion::{criterion_group, criterion_main, Criterion};
use zerofn_admission::{admit, sign_artifact, Manifest, SigningKey};
use zerofn_sandbox::host_interface::{
    BoxFuture, CapabilityError, HostCapabilities, KvOp, KvOutcome, NoCapabilities, OutboundError,
    SandboxRefusal,
};
use zerofn_sandbox::{Sandbox, SandboxConfig};

/// Every bucket opens; every read finds the same small value.
struct FixedValue;

impl HostCapabilities for FixedValue {
    fn kv_open<'a>(&'a self, _bucket: &'a str) -> BoxFuture<'a, Result<(), CapabilityError>> {
        Box::pin(async { Ok(()) })
    }

    fn kv<'a>(
        &'a self,
        _bucket: &'a str,
        _op: KvOp,
    ) -> BoxFuture<'a, Result<KvOutcome, CapabilityError>> {
        Box::pin(async { Ok(KvOutcome::Value(Some(Bytes::from_static(b"value")))) })
    }

    fn config_get<'a>(
        &'a self,
        _key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, CapabilityError>> {
        Box::pin(async { Ok(None) })
    }

    fn config_get_all(&self) -> BoxFuture<'_, Result<Vec<(String, String)>, CapabilityError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn outbound(
        &self,
        _request: http::Request<Bytes>,
    ) -> BoxFuture<'_, Result<http::Response<Bytes>, OutboundError>> {
        Box::pin(async { Err(OutboundError::Denied(String::new())) })
    }

    fn refused(&self, _refusal: SandboxRefusal) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(SandboxConfig::new(cache.path().to_path_buf())).unwrap();
    let key = SigningKey::generate();
    // hello-c is the small C guest; hello-js a 13.8 MiB componentize-js
    // component (the JavaScript engine and a snapshot of its heap).
    for name in ["hello-c", "hello-js"] {
        let component = guest(name);
        let bundle = sign_artifact(&component, &key).unwrap();
        let manifest = Manifest::from_toml(&format!(
            "name = \"{name}\"\ntenant = \"bench\"\ncomponent = \"{name}.wasm\"\nroutes = [\"/{name}\"]\n[limits]\nmemory_mb = 256\ntimeout_ms = 10000\n"
        ))
        .unwrap();
        let artifact = admit(manifest, component, bundle.as_bytes(), &[key.public_key()]).unwrap();
        let function = sandbox.load(artifact, None).unwrap();

        c.bench_function(&format!("sandbox/instantiate/{name}"), |b| {
            b.iter(|| rt.block_on(sandbox.instantiate_only(&function)).unwrap())
        });

        c.bench_function(&format!("sandbox/instantiate_and_handle/{name}"), |b| {
            b.iter(|| {
                let req = http::Request::get(format!("http://bench/{name}"))
                    .body(Bytes::new())
                    .unwrap();
                let out = rt
                    .block_on(sandbox.invoke(&function, req, Arc::new(NoCapabilities)))
                    .unwrap();
                assert_eq!(out.response.status(), 200);
            })
        });
    }

    let component = guest("kv-c");
    let bundle = sign_artifact(&component, &key).unwrap();
    let manifest = Manifest::from_toml(
        "name = \"kv-c\"\ntenant = \"bench\"\ncomponent = \"kv-c.wasm\"\nroutes = [\"/kv-c/...\"]\n[limits]\nmemory_mb = 256\ntimeout_ms = 10000\n",
    )
    .unwrap();
    let artifact = admit(manifest, component, bundle.as_bytes(), &[key.public_key()]).unwrap();
    let function = sandbox.load(artifact, None).unwrap();
    let host: Arc<dyn HostCapabilities> = Arc::new(FixedValue);
    c.bench_function("sandbox/invoke_kv", |b| {
        b.iter(|| {
            let req = http::Request::get("http://bench/kv-c/notes/a")
                .body(Bytes::new())
                .unwrap();
            let out = rt
                .block_on(sandbox.invoke(&function, req, host.clone()))
                .unwrap();
            assert_eq!(out.response.status(), 200);
            assert_eq!(out.response.body().as_ref(), b"value");
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
