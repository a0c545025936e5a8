//! Host capabilities end to end: the kv-c and call-c example guests run in
//! the real sandbox against an in-memory `HostCapabilities`, through
//! `Sandbox::invoke`.
//!
//! Needs the guests built (`scripts/test` or
//! `cargo run -p zerofn-guest-build -- --out $CARGO_TARGET_DIR/guests`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use zerofn_admission::{admit, sign_artifact, Manifest, SigningKey};
use zerofn_sandbox::capabilities::{
    limits, BoxFuture, CapabilityError, HostCapabilities, KvOp, KvOutcome, NoCapabilities,
    OutboundError, SandboxRefusal,
};
use zerofn_sandbox::{LoadedFunction, Sandbox, SandboxConfig};

#[path = "../../../tools/guests.rs"]
mod guests;

/// How the test platform answers outbound requests.
#[derive(Clone)]
enum Outbound {
    Answer(u16, &'static str),
    Fail(OutboundError),
}

/// The platform side, in memory: buckets of keys, a configuration, a
/// switch that denies writes, and a record of what reached it.
struct MemoryHost {
    buckets: Mutex<HashMap<String, BTreeMap<String, Bytes>>>,
    config: BTreeMap<String, String>,
    deny_writes: AtomicBool,
    ops: Mutex<Vec<(String, KvOp)>>,
    outbound: Outbound,
    sent: Mutex<Vec<http::Request<Bytes>>>,
    refusals: Mutex<Vec<SandboxRefusal>>,
}

impl MemoryHost {
    fn new() -> Arc<MemoryHost> {
        MemoryHost::with_outbound(Outbound::Answer(200, ""))
    }

    fn with_outbound(outbound: Outbound) -> Arc<MemoryHost> {
        Arc::new(MemoryHost {
            buckets: Mutex::default(),
            config: BTreeMap::from([("greeting".to_owned(), "hello from config".to_owned())]),
            deny_writes: AtomicBool::new(false),
            ops: Mutex::default(),
            outbound,
            sent: Mutex::default(),
            refusals: Mutex::default(),
        })
    }

    fn value(&self, bucket: &str, key: &str) -> Option<Bytes> {
        self.buckets.lock().unwrap().get(bucket)?.get(key).cloned()
    }

    fn apply(&self, bucket: &str, op: KvOp) -> Result<KvOutcome, CapabilityError> {
        let is_write = matches!(
            op,
            KvOp::Set { .. } | KvOp::Delete { .. } | KvOp::Increment { .. }
        );
        self.ops
            .lock()
            .unwrap()
            .push((bucket.to_owned(), op.clone()));
        if is_write && self.deny_writes.load(Ordering::Relaxed) {
            return Err(CapabilityError::Denied(format!(
                "`kv:write` on `{bucket}` is not granted"
            )));
        }
        let mut buckets = self.buckets.lock().unwrap();
        let keys = buckets.entry(bucket.to_owned()).or_default();
        Ok(match op {
            KvOp::Get { key } => KvOutcome::Value(keys.get(&key).cloned()),
            KvOp::Exists { key } => KvOutcome::Exists(keys.contains_key(&key)),
            KvOp::Set { key, value } => {
                keys.insert(key, value);
                KvOutcome::Done
            }
            KvOp::Delete { key } => {
                keys.remove(&key);
                KvOutcome::Done
            }
            KvOp::ListKeys { cursor } => {
                let start = usize::try_from(cursor).unwrap();
                let page: Vec<String> = keys
                    .keys()
                    .skip(start)
                    .take(limits::LIST_PAGE)
                    .cloned()
                    .collect();
                let next = start + page.len();
                KvOutcome::Keys {
                    cursor: (next < keys.len()).then_some(next as u64),
                    keys: page,
                }
            }
            KvOp::Increment { key, delta } => {
                let old = keys
                    .get(&key)
                    .map(|v| u64::from_le_bytes(v.as_ref().try_into().unwrap()))
                    .unwrap_or(0);
                let new = old + delta;
                keys.insert(key, Bytes::copy_from_slice(&new.to_le_bytes()));
                KvOutcome::Counter(new)
            }
        })
    }
}

impl HostCapabilities for MemoryHost {
    fn kv_open<'a>(&'a self, _bucket: &'a str) -> BoxFuture<'a, Result<(), CapabilityError>> {
        Box::pin(async { Ok(()) })
    }

    fn kv<'a>(
        &'a self,
        bucket: &'a str,
        op: KvOp,
    ) -> BoxFuture<'a, Result<KvOutcome, CapabilityError>> {
        Box::pin(async move { self.apply(bucket, op) })
    }

    fn config_get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, CapabilityError>> {
        Box::pin(async move { Ok(self.config.get(key).cloned()) })
    }

    fn config_get_all(&self) -> BoxFuture<'_, Result<Vec<(String, String)>, CapabilityError>> {
        Box::pin(async move {
            Ok(self
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        })
    }

    fn outbound(
        &self,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'_, Result<http::Response<Bytes>, OutboundError>> {
        self.sent.lock().unwrap().push(request);
        let answer = self.outbound.clone();
        Box::pin(async move {
            match answer {
                Outbound::Answer(status, body) => Ok(http::Response::builder()
                    .status(status)
                    .body(Bytes::from_static(body.as_bytes()))
                    .unwrap()),
                Outbound::Fail(e) => Err(e),
            }
        })
    }

    fn refused(&self, refusal: SandboxRefusal) -> BoxFuture<'_, ()> {
        self.refusals.lock().unwrap().push(refusal);
        Box::pin(async {})
    }
}

struct Guest {
    sandbox: Sandbox,
    function: LoadedFunction,
    _cache: tempfile::TempDir,
}

fn load(name: &str) -> Guest {
    let cache = tempfile::tempdir().unwrap();
    let mut config = SandboxConfig::new(cache.path().to_path_buf());
    config.max_instances = 4;
    let sandbox = Sandbox::new(config).unwrap();
    let key = SigningKey::generate();
    let component = guests::guest(name);
    let bundle = sign_artifact(&component, &key).unwrap();
    let manifest = Manifest::from_toml(&format!(
        "name = \"{name}\"\ntenant = \"demo\"\ncomponent = \"{name}.wasm\"\nroutes = [\"/{name}/...\"]\n[limits]\nmemory_mb = 64\ntimeout_ms = 10000\n"
    ))
    .unwrap();
    let artifact = admit(manifest, component, bundle.as_bytes(), &[key.public_key()]).unwrap();
    let function = sandbox.load(artifact, None).unwrap();
    Guest {
        sandbox,
        function,
        _cache: cache,
    }
}

impl Guest {
    /// One request through a fresh instance; the invocation must complete.
    async fn call(
        &self,
        host: Arc<dyn HostCapabilities>,
        method: &str,
        path: &str,
        body: &'static [u8],
    ) -> (u16, String) {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://test{path}"))
            .body(Bytes::from_static(body))
            .unwrap();
        let out = self
            .sandbox
            .invoke(&self.function, request, host)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: invocation failed: {e} ({e:?})"));
        (
            out.response.status().as_u16(),
            String::from_utf8_lossy(out.response.body()).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_put_get_list_delete_increment() {
    let guest = load("kv-c");
    let host = MemoryHost::new();
    let h = || -> Arc<dyn HostCapabilities> { host.clone() };

    assert_eq!(
        guest.call(h(), "PUT", "/kv-c/notes/a", b"hello").await,
        (204, String::new())
    );
    assert_eq!(host.value("notes", "a").as_deref(), Some(&b"hello"[..]));
    assert_eq!(
        guest.call(h(), "GET", "/kv-c/notes/a", b"").await,
        (200, "hello".into())
    );
    assert_eq!(guest.call(h(), "PUT", "/kv-c/notes/b", b"").await.0, 204);
    assert_eq!(
        guest.call(h(), "GET", "/kv-c/notes", b"").await,
        (200, "a\nb\n".into())
    );
    assert_eq!(guest.call(h(), "DELETE", "/kv-c/notes/a", b"").await.0, 204);
    assert_eq!(host.value("notes", "a"), None);
    assert_eq!(guest.call(h(), "GET", "/kv-c/notes/a", b"").await.0, 404);
    assert_eq!(
        guest.call(h(), "GET", "/kv-c/notes", b"").await,
        (200, "b\n".into())
    );

    assert_eq!(
        guest.call(h(), "POST", "/kv-c/notes/hits", b"").await,
        (200, "1".into())
    );
    assert_eq!(
        guest.call(h(), "POST", "/kv-c/notes/hits", b"").await,
        (200, "2".into())
    );
    assert_eq!(
        host.value("notes", "hits").as_deref(),
        Some(&2u64.to_le_bytes()[..])
    );

    // Each operation reached the platform as exactly one call, on the
    // bucket the guest named.
    let ops = host.ops.lock().unwrap().clone();
    assert!(ops.iter().all(|(bucket, _)| bucket == "notes"));
    assert!(ops.contains(&(
        "notes".into(),
        KvOp::Increment {
            key: "hits".into(),
            delta: 1
        }
    )));
}

#[tokio::test(flavor = "multi_thread")]
async fn config_values_are_read_through_the_platform() {
    let guest = load("kv-c");
    let host = MemoryHost::new();
    assert_eq!(
        guest
            .call(host.clone(), "GET", "/kv-c/_config/greeting", b"")
            .await,
        (200, "hello from config".into())
    );
    assert_eq!(
        guest
            .call(host.clone(), "GET", "/kv-c/_config/absent", b"")
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_write_is_a_403_inside_a_completed_invocation() {
    let guest = load("kv-c");
    let host = MemoryHost::new();
    assert_eq!(
        guest
            .call(host.clone(), "PUT", "/kv-c/notes/a", b"v1")
            .await
            .0,
        204
    );
    host.deny_writes.store(true, Ordering::Relaxed);

    for (method, path) in [
        ("PUT", "/kv-c/notes/a"),
        ("DELETE", "/kv-c/notes/a"),
        ("POST", "/kv-c/notes/a"),
    ] {
        let (status, body) = guest.call(host.clone(), method, path, b"v2").await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert_eq!(
            body, "access denied: `kv:write` on `notes` is not granted",
            "{method} {path}"
        );
    }
    // Nothing changed, and reads still work.
    assert_eq!(host.value("notes", "a").as_deref(), Some(&b"v1"[..]));
    assert_eq!(
        guest.call(host.clone(), "GET", "/kv-c/notes/a", b"").await,
        (200, "v1".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_capabilities_denies_every_call() {
    let guest = load("kv-c");
    let none = || -> Arc<dyn HostCapabilities> { Arc::new(NoCapabilities) };
    assert_eq!(
        guest.call(none(), "GET", "/kv-c/notes/a", b"").await,
        (
            403,
            "access denied: no key-value access is granted (bucket `notes`)".into()
        )
    );
    assert_eq!(
        guest
            .call(none(), "GET", "/kv-c/_config/greeting", b"")
            .await,
        (403, "access denied: no configuration is granted".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversize_names_are_refused_before_the_platform_sees_them() {
    let guest = load("kv-c");
    let host = MemoryHost::new();
    let long_key = "k".repeat(limits::MAX_KEY + 1);
    let (status, body) = guest
        .call(
            host.clone(),
            "PUT",
            &format!("/kv-c/notes/{long_key}"),
            b"v",
        )
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body, "key is 1025 bytes, over the limit of 1024 bytes");

    let long_bucket = "b".repeat(limits::MAX_BUCKET_NAME + 1);
    let (status, body) = guest
        .call(host.clone(), "GET", &format!("/kv-c/{long_bucket}/k"), b"")
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        body,
        "bucket name is 129 bytes, over the limit of 128 bytes"
    );

    assert!(host.ops.lock().unwrap().is_empty());
    assert!(host.buckets.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn call_c_request_reaches_the_platform_and_the_answer_is_relayed() {
    let guest = load("call-c");
    let host = MemoryHost::with_outbound(Outbound::Answer(201, "hi from hello"));
    assert_eq!(
        guest
            .call(host.clone(), "GET", "/call-c/demo/hello/greet/me?x=1", b"")
            .await,
        (201, "hi from hello".into())
    );
    let sent = host.sent.lock().unwrap();
    let [request] = sent.as_slice() else {
        panic!("expected one outbound request, got {}", sent.len());
    };
    assert_eq!(request.method(), http::Method::GET);
    assert_eq!(
        request.uri().to_string(),
        "http://hello.demo.fn.internal/greet/me?x=1"
    );
    assert_eq!(
        request.headers().get(http::header::HOST).unwrap(),
        "hello.demo.fn.internal"
    );
    assert!(request.body().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn call_c_refused_request_is_a_502_naming_the_error_code() {
    let guest = load("call-c");
    for (error, code) in [
        (OutboundError::Denied("x".into()), "HTTP-request-denied"),
        (OutboundError::NotFound("x".into()), "destination-not-found"),
        (OutboundError::Failed("boom".into()), "internal-error"),
    ] {
        let host = MemoryHost::with_outbound(Outbound::Fail(error));
        assert_eq!(
            guest
                .call(host.clone(), "GET", "/call-c/demo/hello/", b"")
                .await,
            (502, code.into())
        );
        assert_eq!(host.sent.lock().unwrap().len(), 1);
    }
    // Without a platform behind it, every request is refused.
    assert_eq!(
        guest
            .call(Arc::new(NoCapabilities), "GET", "/call-c/demo/hello/", b"")
            .await,
        (502, "HTTP-request-denied".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_without_these_imports_still_run() {
    let guest = load("hello-c");
    let (status, _) = guest
        .call(Arc::new(NoCapabilities), "GET", "/hello-c", b"")
        .await;
    assert_eq!(status, 200);
}
