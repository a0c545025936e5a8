//! Host capabilities end to end: the kv-c and call-c example guests run in
//! the real sandbox against an in-memory `HostCapabilities`, through
//! `Sandbox::invoke`.
//!
//! Needs the guests built (`scripts/test` or
//! `cargo run -p zerofn-guest-build -- --out $CARGO_TARGET_DIR/guests`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use zerofn_admission::{admit, sign_artifact, Manifest, SigningKey};
use zerofn_sandbox::host_interface::{
    limits, HostCapabilities, KvOp, NoCapabilities, OutboundError, SandboxRefusal,
};
use zerofn_sandbox::{LoadedFunction, Sandbox, SandboxConfig};
use zerofn_testkit::memory_host::{MemoryHost, Outbound};

struct Guest {
    sandbox: Sandbox,
    function: LoadedFunction,
    _cache: tempfile::TempDir,
}

fn load(name: &str) -> Guest {
    load_with(name, "memory_mb = 64\ntimeout_ms = 10000\n", 4)
}

/// `name` with the `[limits]` given, in a sandbox of `max_instances`.
fn load_with(name: &str, limits: &str, max_instances: u32) -> Guest {
    let cache = tempfile::tempdir().unwrap();
    let mut config = SandboxConfig::new(cache.path().to_path_buf());
    config.max_instances = max_instances;
    let sandbox = Sandbox::new(config).unwrap();
    let function = admit_into(&sandbox, name, limits).unwrap();
    Guest {
        sandbox,
        function,
        _cache: cache,
    }
}

/// Admit guest `name` with the `[limits]` given and load it into `sandbox`.
fn admit_into(
    sandbox: &Sandbox,
    name: &str,
    limits: &str,
) -> Result<LoadedFunction, zerofn_sandbox::SandboxError> {
    let key = SigningKey::generate();
    let component = zerofn_testkit::guest(name);
    let bundle = sign_artifact(&component, &key).unwrap();
    let manifest = Manifest::from_toml(&format!(
        "name = \"{name}\"\ntenant = \"demo\"\ncomponent = \"{name}.wasm\"\nroutes = [\"/{name}/...\"]\n[limits]\n{limits}"
    ))
    .unwrap();
    let artifact = admit(manifest, component, bundle.as_bytes(), &[key.public_key()]).unwrap();
    sandbox.load(artifact, None)
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

/// The refusals the sandbox reported (bounded wait: they are reported from
/// a task of their own).
async fn refusals(host: &MemoryHost) -> Vec<SandboxRefusal> {
    for _ in 0..100 {
        let found = host.refusals.lock().unwrap().clone();
        if !found.is_empty() {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Vec::new()
}

#[tokio::test(flavor = "multi_thread")]
async fn header_fields_beyond_the_host_budget_trap_the_guest() {
    let guest = load_with("header-bomb-c", "memory_mb = 1\ntimeout_ms = 10000\n", 2);
    let host = MemoryHost::new();
    let request = http::Request::get("http://test/header-bomb")
        .body(Bytes::new())
        .unwrap();
    let err = guest
        .sandbox
        .invoke(&guest.function, request, host.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            zerofn_sandbox::InvokeError::MemoryLimit { limit_mb: 1 }
        ),
        "{err:?}"
    );
    let refused = refusals(&host).await;
    assert_eq!(refused.len(), 1, "reported once: {refused:?}");
    assert_eq!(refused.first().unwrap().capability, "wasi:http/types");
    assert!(
        refused
            .first()
            .unwrap()
            .reason
            .contains("over the invocation's budget of 16777216 bytes"),
        "{}",
        refused.first().unwrap().reason
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn get_many_refuses_repeated_keys_and_bounds_its_answer() {
    let guest = load_with("kv-batch-bomb-c", "memory_mb = 4\ntimeout_ms = 10000\n", 2);
    let host = MemoryHost::new();
    let h = || -> Arc<dyn HostCapabilities> { host.clone() };
    let (status, text) = guest.call(h(), "GET", "/kv-batch-bomb/repeat", b"").await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        text,
        "error: batch names key `big` more than once; name each key once"
    );
    // No get reached the platform for the refused batch.
    assert!(!host
        .ops
        .lock()
        .unwrap()
        .iter()
        .any(|(_, op)| matches!(op, KvOp::Get { .. })));
    let refused = refusals(&host).await;
    assert_eq!(refused.first().unwrap().capability, "wasi:keyvalue");

    let (status, text) = guest.call(h(), "GET", "/kv-batch-bomb/distinct", b"").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.starts_with("error: batch values total")
            && text.contains(&format!(
                "over the limit of {} bytes",
                limits::MAX_BATCH_BYTES
            )),
        "{text}"
    );
}

#[test]
fn memory_mb_over_the_maximum_is_refused_at_load() {
    let cache = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(SandboxConfig::new(cache.path().to_path_buf())).unwrap();
    let err = admit_into(&sandbox, "hello-c", "memory_mb = 4096\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "`memory_mb` 4096 exceeds the platform maximum of 1024 MiB"
    );
    assert!(admit_into(&sandbox, "hello-c", "memory_mb = 1024\n").is_ok());
}

/// A dropped invocation stops its guest and frees its slot: with a pool of
/// one, the next invocation gets an instance (the allocator would refuse
/// it while the abandoned guest still ran).
#[tokio::test(flavor = "multi_thread")]
async fn dropping_an_invocation_stops_the_guest_and_frees_the_slot() {
    let spin = load_with("loop-c", "timeout_ms = 20000\n", 1);
    let hello = admit_into(&spin.sandbox, "hello-c", "timeout_ms = 5000\n").unwrap();
    let request = || {
        http::Request::get("http://test/")
            .body(Bytes::new())
            .unwrap()
    };
    let abandoned = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        spin.sandbox
            .invoke(&spin.function, request(), Arc::new(NoCapabilities)),
    )
    .await;
    assert!(abandoned.is_err(), "the spinning guest answered");
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        spin.sandbox
            .invoke(&hello, request(), Arc::new(NoCapabilities)),
    )
    .await
    .expect("the slot was not freed")
    .unwrap();
    assert_eq!(out.response.status(), 200);
}

/// An invocation returns once its guest has stopped, before the instance
/// is torn down (the teardown runs after, in the guest's task); the slot
/// is still given back only after the instance is: with a pool of one,
/// every invocation right after another, and eight at once (queued for
/// the one slot), gets the instance, never "pool exhausted", and the pool
/// is empty again afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_instance_of_a_pool_of_one_serves_invocation_after_invocation() {
    let guest = Arc::new(load_with("hello-c", "timeout_ms = 5000\n", 1));
    for round in 0..40 {
        let out = invoke(&guest, "/").await;
        assert_eq!(out.response.status(), 200, "round {round}");
        assert_eq!(out.response.body().as_ref(), b"hello from zerofn\n");
    }
    let mut at_once = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let guest = guest.clone();
        at_once.spawn(async move { invoke(&guest, "/").await.response.status() });
    }
    while let Some(status) = at_once.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    // The last teardown runs just after the last invocation returned.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while guest.sandbox.instances_in_use() != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slot was not given back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Run `path` of `guest` to completion and hand back the invocation.
async fn invoke(guest: &Guest, path: &str) -> zerofn_sandbox::Invocation {
    let request = http::Request::get(format!("http://test{path}"))
        .body(Bytes::new())
        .unwrap();
    guest
        .sandbox
        .invoke(&guest.function, request, Arc::new(NoCapabilities))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: invocation failed: {e} ({e:?})"))
}

/// `wasi:logging` needs no capability: the records come back with the
/// invocation, in call order, with level and context, beside stdout and
/// stderr, and with `NoCapabilities` behind the guest.
#[tokio::test(flavor = "multi_thread")]
async fn logging_records_come_back_with_level_and_context() {
    use zerofn_sandbox::logging::LogLevel;
    let guest = load("logging-c");
    let out = invoke(&guest, "/logging-c/x?y=1").await;
    assert_eq!(out.response.status().as_u16(), 200);
    assert_eq!(out.response.body().as_ref(), b"logged 6\n");
    assert_eq!(
        out.stdout.as_ref(),
        b"before logging\nafter logging\n".as_slice()
    );
    assert_eq!(out.stderr.as_ref(), b"stderr line\n".as_slice());
    let records: Vec<(LogLevel, &str, &str)> = out
        .log
        .records()
        .iter()
        .map(|r| (r.level, r.context.as_str(), r.message.as_str()))
        .collect();
    assert_eq!(
        records,
        [
            (LogLevel::Trace, "logging-c", "trace message"),
            (LogLevel::Debug, "logging-c", "debug message"),
            (LogLevel::Info, "request", "GET /logging-c/x?y=1"),
            (
                LogLevel::Warn,
                "logging-c",
                "colour \u{1b}[31mred\u{1b}[0m\nsecond line"
            ),
            (LogLevel::Error, "", "error without context"),
            (LogLevel::Critical, "logging-c", "critical message"),
        ]
    );
    assert_eq!((out.log.cut(), out.log.dropped()), (0, 0));
    // Each record knows where it fell: after "before logging\n" on stdout,
    // before anything on stderr.
    for r in out.log.records() {
        assert_eq!((r.at.stdout, r.at.stderr), (15, 0), "{r:?}");
    }
}

/// A guest that logs far more than its limits: one 8 MiB message with a
/// 1 MiB context, or a million records. The host keeps at most the caps
/// (per record, in records and in bytes), counts the rest, and the
/// invocation still finishes with the guest's answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_bomb_is_held_to_the_limits_and_the_invocation_finishes() {
    use zerofn_sandbox::logging::{MAX_CONTEXT_BYTES, MAX_MESSAGE_BYTES, MAX_RECORDS};
    let guest = load_with("log-bomb-c", "memory_mb = 16\ntimeout_ms = 60000\n", 2);
    let limit = SandboxConfig::new(std::path::PathBuf::new()).stdio_capture_bytes;

    let huge = invoke(&guest, "/log-bomb/huge").await;
    assert_eq!(huge.response.body().as_ref(), b"done 1\n");
    assert_eq!(huge.stdout.as_ref(), b"done\n".as_slice());
    let [record] = huge.log.records() else {
        panic!("expected one record, got {:?}", huge.log.records().len());
    };
    assert!(record.message.len() <= MAX_MESSAGE_BYTES);
    assert!(record.message.starts_with("mmmm") && record.message.ends_with('…'));
    assert!(record.context.len() <= MAX_CONTEXT_BYTES);
    assert!(record.context.starts_with("cccc") && record.context.ends_with('…'));
    assert_eq!((huge.log.cut(), huge.log.dropped()), (1, 0));

    let lines = invoke(&guest, "/log-bomb/lines").await;
    assert_eq!(lines.response.body().as_ref(), b"done 1000000\n");
    let kept = lines.log.records();
    assert!(
        !kept.is_empty() && kept.len() <= MAX_RECORDS,
        "{}",
        kept.len()
    );
    assert!(
        lines.log.bytes() <= limit,
        "{} > {limit}",
        lines.log.bytes()
    );
    assert_eq!(lines.log.limit_bytes(), limit);
    // The first calls are the ones kept, in order; every later one is counted.
    assert_eq!(kept[0].message, "line 0");
    assert_eq!(
        kept[kept.len() - 1].message,
        format!("line {}", kept.len() - 1)
    );
    assert_eq!(lines.log.dropped(), 1_000_000 - kept.len() as u64);
}
