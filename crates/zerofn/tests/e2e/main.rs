//! End-to-end tests: the real `zerofn` binary over real loopback sockets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod admission;
mod attest;
mod audit_log;
mod authn;
mod capabilities;
mod config_dir;
mod conformance;
mod egress;
mod events;
mod first_hour;
mod gateway_hardening;
mod gateway_tls;
mod golden;
mod hardening_memory;
mod harness;
mod intent;
mod js;
mod jwks_url;
mod kv_streams;
mod layers;
mod limits;
mod logs;
mod mtls;
mod objects;
mod operators;
mod route_space;
mod schema;
mod server;
mod telemetry;
mod tlog_tiles;
mod traces;
mod versions;
mod zones;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::*;

/// A started platform with tenant `acme` trusting a fresh key.
/// Manifest versions for [`Setup::sign`]: rising through the whole test run, so every
/// redeploy in a test signs a higher version than the one before it.
fn next_version() -> u64 {
    static VERSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    VERSION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

struct Setup {
    tmp: tempfile::TempDir,
    platform: Platform,
    key: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        Setup::with_args(&[])
    }

    /// A platform started with extra `zerofn up` arguments.
    fn with_args(up_args: &[&str]) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let platform = Platform::start_with(&data, up_args);
        let key = tmp.path().join("acme.key");
        ok(platform.cli(&["keygen", "--out", key.to_str().unwrap()]));
        // acme owns the whole path space; tenants a test adds get their own prefixes.
        ok(platform.cli(&[
            "tenant",
            "create",
            "acme",
            "--signing-key",
            &format!("{}.pub", key.display()),
            "--route-prefix",
            "/...",
        ]));
        Setup { tmp, platform, key }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// Write, sign and deploy a function; returns the function dir.
    fn deploy(&self, name: &str, guest_name: &str, routes: &[&str], limits: &str) -> FunctionDir {
        let f = function_dir(
            self.root(),
            name,
            "acme",
            &guest(guest_name),
            routes,
            limits,
        );
        self.sign(&f.wasm, &self.key);
        ok(self.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
        f
    }

    /// Signs a function's component and manifest (`zerofn sign DIR --version N`, a version
    /// higher than any signed before in this test run), or, for a file that is not a
    /// function's component (a layer), the file alone.
    fn sign(&self, wasm: &Path, key: &Path) {
        let dir = wasm.parent().unwrap();
        let file_name = wasm.file_name().unwrap().to_str().unwrap();
        let is_component = std::fs::read_to_string(dir.join("zerofn.toml"))
            .is_ok_and(|m| m.contains(&format!("component = \"{file_name}\"")));
        if !is_component {
            ok(self.platform.cli(&[
                "sign",
                wasm.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
            ]));
            return;
        }
        let version = next_version().to_string();
        ok(self.platform.cli(&[
            "sign",
            dir.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--version",
            &version,
        ]));
    }

    fn functions(&self) -> serde_json::Value {
        serde_json::from_str(&ok(self.platform.cli(&["functions", "--json"]))).unwrap()
    }

    /// Stop the platform and start it again on the same data.
    fn restart(self) -> Setup {
        let data = self.platform.data_dir.clone();
        let Setup { tmp, platform, key } = self;
        assert!(platform.stop().success());
        let platform = Platform::start(&data);
        Setup { tmp, platform, key }
    }

    fn audit(&self, n: u32) -> Vec<serde_json::Value> {
        ok(self
            .platform
            .cli(&["audit", "tail", "-n", &n.to_string(), "--json"]))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
    }
}

#[test]
fn signed_deploy_serves_and_audits_each_invocation() {
    let s = Setup::new();
    s.deploy("hello", "hello-c", &["/hello"], "");
    let r = s.platform.get("/hello");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "hello from zerofn\n");
    let id = r
        .header("x-zerofn-invocation-id")
        .expect("invocation id header")
        .to_owned();

    let fns = s.functions();
    assert_eq!(fns.as_array().unwrap().len(), 1);
    assert_eq!(fns[0]["tenant"], "acme");
    assert_eq!(fns[0]["name"], "hello");
    assert_eq!(fns[0]["routes"][0], "/hello");
    assert!(fns[0]["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(fns[0]["signer"].as_str().unwrap().starts_with("sha256:"));

    let records = s.audit(50);
    let deploy = records
        .iter()
        .find(|r| r["action"] == "deploy")
        .expect("deploy record");
    assert_eq!(deploy["decision"], "allow");
    assert_eq!(deploy["digest"], fns[0]["digest"]);
    let inv = records
        .iter()
        .find(|r| r["invocation_id"] == id.as_str())
        .expect("invocation record");
    assert_eq!(inv["action"], "invoke");
    assert_eq!(inv["status"], 200);
    assert_eq!(inv["tenant"], "acme");
    assert_eq!(inv["function"], "hello");
    assert_eq!(inv["digest"], fns[0]["digest"]);
    assert!(inv["duration_us"].as_i64().unwrap() > 0);

    // Unknown paths are 404 JSON.
    let r = s.platform.get("/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["kind"], "no_route");

    // Undeploy removes the route and is audited.
    ok(s.platform.cli(&["undeploy", "acme", "hello"]));
    assert_eq!(s.platform.get("/hello").status, 404);
    assert!(s
        .audit(5)
        .iter()
        .any(|r| r["action"] == "undeploy" && r["decision"] == "allow"));
    ok(s.platform.cli(&["audit", "verify"]));
}

#[test]
fn echo_guest_sees_method_path_and_body() {
    let s = Setup::new();
    s.deploy("echo", "echo-c", &["/echo/..."], "");
    let body = br#"{"a":"quote\" and \\ backslash","n":1}"#;
    let r = s.platform.post("/echo/x?y=1", body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/echo/x?y=1");
    assert_eq!(v["body"], std::str::from_utf8(body).unwrap());
    // The prefix route covers the bare prefix and everything below it, but
    // not look-alikes or paths that are not in normal form.
    assert_eq!(s.platform.get("/echo").status, 200);
    assert_eq!(s.platform.get("/echo/a/b/c").status, 200);
    for path in ["/echox", "/ech", "/echo/../echo", "/echo//x", "/"] {
        assert_eq!(s.platform.get(path).status, 404, "{path}");
    }
}

/// Every refusal: CLI exits non-zero naming the check, nothing is stored,
/// and the refusal is audited.
#[test]
fn bad_signatures_are_refused_and_change_nothing() {
    let s = Setup::new();
    let root = s.root();
    let hello = guest("hello-c");

    // Unsigned: no bundle next to the component.
    let f = function_dir(root, "unsigned", "acme", &hello, &["/u"], "");
    let err = fails(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert!(
        err.contains("unsigned.wasm.sigstore.json") && err.contains("zerofn sign"),
        "{err}"
    );

    // One flipped byte after signing.
    let f = function_dir(root, "flipped", "acme", &hello, &["/f"], "");
    s.sign(&f.wasm, &s.key);
    let mut bytes = hello.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&f.wasm, &bytes).unwrap();
    let err = fails(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert!(err.contains("admission refused"), "{err}");
    assert!(err.contains("HTTP 403"), "{err}");

    // A bundle signed by a key the tenant does not trust.
    let stranger = root.join("stranger.key");
    ok(s.platform
        .cli(&["keygen", "--out", stranger.to_str().unwrap()]));
    let f = function_dir(root, "stranger", "acme", &hello, &["/s"], "");
    s.sign(&f.wasm, &stranger);
    let err = fails(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert!(err.contains("signature"), "{err}");

    // A key trusted for tenant `other` signing for `acme`, and vice versa.
    let other_key = root.join("other.key");
    ok(s.platform
        .cli(&["keygen", "--out", other_key.to_str().unwrap()]));
    ok(s.platform.cli(&[
        "tenant",
        "create",
        "other",
        "--signing-key",
        &format!("{}.pub", other_key.display()),
    ]));
    let f = function_dir(root, "crossed", "acme", &hello, &["/c"], "");
    s.sign(&f.wasm, &other_key);
    let err = fails(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert!(err.contains("signature"), "{err}");
    let f = function_dir(root, "crossed", "other", &hello, &["/c2"], "");
    s.sign(&f.wasm, &s.key);
    fails(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));

    // A valid bundle, but for another artifact.
    let f = function_dir(root, "swapped", "acme", &hello, &["/w"], "");
    let echo = function_dir(root, "echo", "acme", &guest("echo-c"), &["/e"], "");
    s.sign(&echo.wasm, &s.key);
    std::fs::copy(
        echo.dir.join("echo.wasm.sigstore.json"),
        f.dir.join("swapped.wasm.sigstore.json"),
    )
    .unwrap();
    let err = fails(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert!(err.contains("admission refused"), "{err}");

    // Garbage instead of a bundle.
    let f = function_dir(root, "garbage", "acme", &hello, &["/g"], "");
    std::fs::write(f.dir.join("garbage.wasm.sigstore.json"), "{not json").unwrap();
    let err = fails(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert!(err.contains("HTTP 400"), "{err}");

    // Nothing was stored or routed ...
    assert_eq!(s.functions().as_array().unwrap().len(), 0);
    for p in ["/f", "/s", "/c", "/c2", "/w", "/g"] {
        assert_eq!(s.platform.get(p).status, 404, "{p}");
    }
    // ... but every refusal is in the audit log, with its reason.
    let denials: Vec<_> = s
        .audit(100)
        .into_iter()
        .filter(|r| r["action"] == "deploy" && r["decision"] == "deny")
        .collect();
    assert_eq!(denials.len(), 6, "{denials:#?}");
    assert!(denials
        .iter()
        .all(|r| !r["reason"].as_str().unwrap().is_empty()));
    ok(s.platform.cli(&["audit", "verify"]));
}

#[test]
fn malformed_manifests_and_missing_files_get_clear_errors() {
    let s = Setup::new();
    let root = s.root();
    let hello = guest("hello-c");
    let cases: &[(&str, &str, &str)] = &[
        ("unknown-key", "name = \"a\"\ntenant = \"acme\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\ncolour = \"red\"\n", "colour"),
        ("bad-toml", "name = \"a\nroutes = [", "invalid manifest"),
        ("bad-name", "name = \"Hello\"\ntenant = \"acme\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\n", "Hello"),
        ("no-routes", "name = \"a\"\ntenant = \"acme\"\ncomponent = \"a.wasm\"\n", "routes"),
        ("bad-limit", "name = \"a\"\ntenant = \"acme\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\n[limits]\nmemory_mb = 0\n", "memory_mb"),
        ("unknown-limit", "name = \"a\"\ntenant = \"acme\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\n[limits]\ncpu = 1\n", "cpu"),
        ("escape", "name = \"a\"\ntenant = \"acme\"\ncomponent = \"../a.wasm\"\nroutes = [\"/a\"]\n", "component"),
        ("missing-component", "name = \"a\"\ntenant = \"acme\"\ncomponent = \"nothere.wasm\"\nroutes = [\"/a\"]\n", "nothere.wasm"),
    ];
    for (case, manifest, expect) in cases {
        let dir = root.join(case);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("zerofn.toml"), manifest).unwrap();
        std::fs::write(dir.join("a.wasm"), &hello).unwrap();
        let err = fails(s.platform.cli(&["deploy", dir.to_str().unwrap()]));
        assert!(err.contains(expect), "{case}: {err}");
    }
    let err = fails(
        s.platform
            .cli(&["deploy", root.join("no-such-dir").to_str().unwrap()]),
    );
    assert!(err.contains("zerofn.toml"), "{err}");
    assert_eq!(s.functions().as_array().unwrap().len(), 0);

    // The API checks too, whatever the client: an unknown manifest key sent
    // directly is a 400 naming the key.
    let token = std::fs::read_to_string(s.platform.data_dir.join("operator-token")).unwrap();
    let body = serde_json::json!({
        "manifest": "name = \"a\"\ntenant = \"acme\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\nextra = 1\n",
        "component": "AGFzbQ==",
        "bundle": "{}",
    })
    .to_string();
    let r = http(
        &s.platform.api,
        "POST",
        "/v1/deployments",
        &[("Authorization", &format!("Bearer {}", token.trim()))],
        body.as_bytes(),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("extra"));
}

#[test]
fn a_route_owned_by_another_function_is_refused() {
    let s = Setup::new();
    s.deploy("first", "hello-c", &["/shared"], "");
    let f = function_dir(
        s.root(),
        "second",
        "acme",
        &guest("echo-c"),
        &["/mine", "/shared"],
        "",
    );
    s.sign(&f.wasm, &s.key);
    let err = fails(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert!(
        err.contains("/shared") && err.contains("acme/first"),
        "{err}"
    );
    assert_eq!(s.platform.get("/shared").text(), "hello from zerofn\n");
    assert_eq!(s.platform.get("/mine").status, 404);
}

#[test]
fn wrong_operator_token_gets_401_and_is_audited() {
    let s = Setup::new();
    for auth in [None, Some("Bearer wrong"), Some("Basic abc")] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
        let r = http(&s.platform.api, "GET", "/v1/functions", &headers, b"");
        assert_eq!(r.status, 401, "{auth:?}");
        assert_eq!(r.json()["error"]["kind"], "unauthorized");
    }
    let out = std::process::Command::new(BIN)
        .args(["functions"])
        .env("ZEROFN_API_URL", format!("http://{}", s.platform.api))
        .env("ZEROFN_TOKEN", "not-the-token")
        .output()
        .unwrap();
    let err = fails(out);
    assert!(err.contains("HTTP 401"), "{err}");
    // All four come from one address with one reason: the first is its own
    // record at once, the three repeats one aggregated record with their
    // count when the interval ends (issue 11, item 7). None is lost.
    let counted = |records: Vec<serde_json::Value>| -> (usize, u64) {
        let denied: Vec<_> = records
            .into_iter()
            .filter(|r| r["action"] == "api.authenticate" && r["decision"] == "deny")
            .collect();
        let total = denied
            .iter()
            .map(|r| r["detail"]["aggregated"]["count"].as_u64().unwrap_or(1))
            .sum();
        (denied.len(), total)
    };
    let (records, _) = counted(s.audit(20));
    assert_eq!(records, 1, "repeats are not recorded one by one");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (records, total) = counted(s.audit(20));
        if records == 2 {
            assert_eq!(total, 4);
            break;
        }
        assert!(Instant::now() < deadline, "the repeats were never recorded");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn infinite_loop_times_out_and_the_next_request_is_served() {
    let s = Setup::new();
    s.deploy("spin", "loop-c", &["/spin"], "[limits]\ntimeout_ms = 300\n");
    s.deploy("hello", "hello-c", &["/hello"], "");
    for _ in 0..2 {
        let started = Instant::now();
        let r = s.platform.get("/spin");
        assert_eq!(r.status, 504, "{}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["kind"], "timeout");
        assert_eq!(
            v["error"]["invocation_id"].as_str(),
            r.header("x-zerofn-invocation-id")
        );
        // Generous bound: the guest is stopped near its deadline, not left running.
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(s.platform.get("/hello").status, 200);
    }
    // A spinning guest does not block others while it runs.
    let spin = {
        let gw = s.platform.gateway.clone();
        std::thread::spawn(move || http(&gw, "GET", "/spin", &[], b"").status)
    };
    assert_eq!(s.platform.get("/hello").status, 200);
    assert_eq!(spin.join().unwrap(), 504);
    let records = s.audit(20);
    assert!(records.iter().any(|r| r["function"] == "spin"
        && r["decision"] == "error"
        && r["reason"] == "timeout"
        && r["status"] == 504));
}

#[test]
fn unbounded_allocation_hits_the_memory_limit_and_the_process_lives() {
    let s = Setup::new();
    s.deploy(
        "bomb",
        "alloc-c",
        &["/bomb"],
        "[limits]\nmemory_mb = 32\ntimeout_ms = 5000\n",
    );
    s.deploy("hello", "hello-c", &["/hello"], "");
    for _ in 0..3 {
        let r = s.platform.get("/bomb");
        assert_eq!(r.status, 500, "{}", r.text());
        assert_eq!(r.json()["error"]["kind"], "memory_limit");
        assert_eq!(s.platform.get("/hello").status, 200);
    }
}

#[test]
fn guests_that_try_to_escape_find_nothing() {
    let s = Setup::new();
    s.deploy("escape", "escape-c", &["/escape-c"], "");
    let r = s.platform.get("/escape-c");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let probes = v.as_object().expect("object");
    for key in ["etc_passwd", "root_dir", "cwd", "outgoing_http"] {
        assert!(probes.contains_key(key), "probe `{key}` missing: {v}");
    }
    for (probe, result) in probes {
        match probe.as_str() {
            "env_count" => assert_eq!(result, 0, "{v}"),
            "errors" => {}
            _ => assert_eq!(result, "denied", "{probe} escaped the sandbox: {v}"),
        }
    }
}

#[test]
fn python_guests_load_and_find_no_files_sockets_or_environment() {
    let s = Setup::new();
    s.deploy(
        "hello-py",
        "hello-py",
        &["/py"],
        "[limits]\nmemory_mb = 256\ntimeout_ms = 5000\n",
    );
    let r = s.platform.get("/py");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "hello from python\n");
    s.deploy(
        "escape-py",
        "escape-py",
        &["/escape-py"],
        "[limits]\nmemory_mb = 256\ntimeout_ms = 5000\n",
    );
    let r = s.platform.get("/escape-py");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let probes = v.as_object().expect("object");
    assert!(probes.contains_key("outgoing_http"), "{v}");
    assert!(probes.len() >= 5, "{v}");
    for (probe, result) in probes {
        if probe == "env_count" {
            assert_eq!(result, 0, "{v}");
        } else {
            let text = result.as_str().unwrap_or_default();
            assert!(
                text.starts_with("denied"),
                "{probe} escaped the sandbox: {v}"
            );
        }
    }
}

#[test]
fn two_hundred_concurrent_requests_are_all_answered() {
    let s = Setup::new();
    s.deploy("echo", "echo-c", &["/echo"], "");
    let gw = s.platform.gateway.clone();
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let gw = gw.clone();
            std::thread::spawn(move || {
                let body = format!("request {i}");
                let r = http(&gw, "POST", "/echo", &[], body.as_bytes());
                (i, r.status, r.json()["body"].as_str().map(str::to_owned))
            })
        })
        .collect();
    for t in threads {
        let (i, status, body) = t.join().unwrap();
        assert_eq!(status, 200, "request {i}");
        assert_eq!(body.as_deref(), Some(format!("request {i}").as_str()));
    }
    let invokes = s
        .audit(300)
        .into_iter()
        .filter(|r| r["action"] == "invoke")
        .count();
    assert_eq!(invokes, 200);
}

#[test]
fn body_and_header_limits_are_enforced() {
    let s = Setup::new();
    s.deploy("echo", "echo-c", &["/echo"], "[limits]\nmax_body_kb = 1\n");
    let r = s.platform.post("/echo", &[b'x'; 1024]);
    assert_eq!(r.status, 200);
    let r = s.platform.post("/echo", &[b'x'; 1025]);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"]["kind"], "body_too_large");
    let huge = "a".repeat(64 * 1024);
    let r = try_http(
        &s.platform.gateway,
        "GET",
        "/echo",
        &[("x-big", &huge)],
        b"",
    );
    if let Ok(r) = r {
        assert_eq!(r.status, 431);
    }
    assert_eq!(s.platform.get("/echo").status, 200);
}

#[test]
fn restart_keeps_deployments_and_continues_the_audit_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Setup::new();
    s.deploy("hello", "hello-c", &["/hello"], "");
    assert_eq!(s.platform.get("/hello").status, 200);
    let before = s.audit(1000).len();
    let data = s.platform.data_dir.clone();
    let Setup {
        platform,
        tmp: keep,
        ..
    } = s;
    assert!(platform.stop().success());
    let _ = tmp;

    let platform = Platform::start(&data);
    let r = platform.get("/hello");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from zerofn\n");
    let out = ok(platform.cli(&["audit", "verify"]));
    assert!(out.contains("intact"), "{out}");
    let records: Vec<serde_json::Value> =
        ok(platform.cli(&["audit", "tail", "-n", "1000", "--json"]))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    // platform start + invocation were appended to the same chain.
    assert!(records.len() >= before + 2);
    assert!(
        records
            .iter()
            .filter(|r| r["action"] == "platform.start")
            .count()
            >= 2
    );
    drop(keep);
}

#[test]
fn precompiled_code_tampered_on_disk_is_not_loaded() {
    let s = Setup::new();
    s.deploy("hello", "hello-c", &["/hello"], "");
    let data = s.platform.data_dir.clone();
    let Setup {
        platform,
        tmp: _keep,
        ..
    } = s;
    assert!(platform.stop().success());
    // Corrupt every cached artifact: the platform must recompile from the
    // admitted bytes rather than run what is on disk.
    for entry in std::fs::read_dir(data.join("cache")).unwrap() {
        let path = entry.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
    let platform = Platform::start(&data);
    assert_eq!(platform.get("/hello").text(), "hello from zerofn\n");
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_audit_record() {
    kill_9_under_load(&[]);
}

/// Process durability acknowledges records once they are in the log file,
/// before the fsync: still nothing acknowledged may be lost when the
/// platform process is killed.
#[test]
fn kill_9_under_load_loses_no_acknowledged_audit_record_with_process_durability() {
    kill_9_under_load(&["--audit-durability", "process", "--audit-flush-ms", "1000"]);
}

fn kill_9_under_load(up_args: &[&str]) {
    let s = Setup::with_args(up_args);
    s.deploy("hello", "hello-c", &["/hello"], "");
    let data = s.platform.data_dir.clone();
    let gw = s.platform.gateway.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let gw = gw.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut answered = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline
                {
                    match try_http(&gw, "GET", "/hello", &[], b"") {
                        Ok(r) if r.status == 200 => {
                            answered.push(r.header("x-zerofn-invocation-id").unwrap().to_owned())
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                answered
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let Setup {
        platform,
        tmp: _keep,
        ..
    } = s;
    platform.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answered: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(answered.len() > 10, "too little load: {}", answered.len());

    let platform = Platform::start(&data);
    ok(platform.cli(&["audit", "verify"]));
    let db = open_db(&data);
    let mut stmt = db
        .prepare("SELECT count(*) FROM audit WHERE invocation_id = ?1 AND status = 200")
        .unwrap();
    for id in &answered {
        let n: i64 = stmt.query_row([id], |r| r.get(0)).unwrap();
        assert_eq!(n, 1, "answered invocation {id} has no audit record");
    }
    drop(platform);
}

#[test]
fn editing_one_audit_row_is_detected() {
    let s = Setup::new();
    s.deploy("hello", "hello-c", &["/hello"], "");
    for _ in 0..3 {
        assert_eq!(s.platform.get("/hello").status, 200);
    }
    ok(s.platform.cli(&["audit", "verify"]));
    let db = open_db(&s.platform.data_dir);
    let seq: i64 = db
        .query_row(
            "SELECT seq FROM audit WHERE action = 'invoke' ORDER BY seq LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    db.execute("UPDATE audit SET status = 500 WHERE seq = ?1", [seq])
        .unwrap();
    let err = fails(s.platform.cli(&["audit", "verify"]));
    assert!(err.contains(&format!("record {seq}")), "{err}");

    // Also offline, with the platform stopped.
    let data = s.platform.data_dir.clone();
    let Setup {
        platform,
        tmp: _keep,
        ..
    } = s;
    platform.stop();
    std::fs::remove_file(data.join("api.json")).unwrap();
    let err = fails(cli(&data, &["audit", "verify"]));
    assert!(err.contains(&format!("record {seq}")), "{err}");
}

#[test]
fn keys_can_be_added_and_removed() {
    let s = Setup::new();
    let second = s.root().join("second.key");
    ok(s.platform
        .cli(&["keygen", "--out", second.to_str().unwrap()]));
    let f = function_dir(
        s.root(),
        "hello",
        "acme",
        &guest("hello-c"),
        &["/hello"],
        "",
    );
    s.sign(&f.wasm, &second);
    fails(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    let out = ok(s.platform.cli(&[
        "tenant",
        "add-key",
        "acme",
        &format!("{}.pub", second.display()),
    ]));
    let key_id = out.split_whitespace().last().unwrap().to_owned();
    assert!(key_id.starts_with("sha256:"), "{out}");
    ok(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert_eq!(s.functions()[0]["signer"], key_id.as_str());
    ok(s.platform.cli(&["tenant", "remove-key", "acme", &key_id]));
    fails(s.platform.cli(&["tenant", "remove-key", "acme", &key_id]));
    let tenants: serde_json::Value =
        serde_json::from_str(&ok(s.platform.cli(&["tenant", "list", "--json"]))).unwrap();
    assert_eq!(tenants[0]["key_ids"].as_array().unwrap().len(), 1);
    let actions: Vec<String> = s
        .audit(50)
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["action"].as_str().unwrap(),
                r["decision"].as_str().unwrap()
            )
        })
        .collect();
    assert!(actions.contains(&"tenant.key.add:allow".to_owned()));
    assert!(actions.contains(&"tenant.key.remove:allow".to_owned()));
    assert!(actions.contains(&"tenant.key.remove:deny".to_owned()));
}

#[test]
fn cli_arguments_and_keys_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("k");
    ok(cli(tmp.path(), &["keygen", "--out", key.to_str().unwrap()]));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let err = fails(cli(tmp.path(), &["keygen", "--out", key.to_str().unwrap()]));
    assert!(err.contains("refusing to overwrite"), "{err}");
    let err = fails(cli(
        tmp.path(),
        &["sign", "/no/such/file", "--key", key.to_str().unwrap()],
    ));
    assert!(err.contains("/no/such/file"), "{err}");
    let pubkey = format!("{}.pub", key.display());
    let err = fails(cli(
        tmp.path(),
        &["sign", pubkey.as_str(), "--key", pubkey.as_str()],
    ));
    assert!(err.contains("not a usable signing key"), "{err}");
    // No platform running: a clear error, not a hang.
    let err = fails(cli(tmp.path(), &["functions"]));
    assert!(err.contains("zerofn up"), "{err}");
    // Bad CLI arguments: clap's usage error, non-zero.
    let out = cli(tmp.path(), &["up", "--gateway-addr", "not-an-addr"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--gateway-addr"));
}

#[test]
fn sigterm_finishes_in_flight_requests() {
    let s = Setup::new();
    // A guest that takes a while: the loop guest with a 1.5s limit answers 504
    // only after its deadline, so it is in flight when SIGTERM arrives.
    s.deploy(
        "spin",
        "loop-c",
        &["/spin"],
        "[limits]\ntimeout_ms = 1500\n",
    );
    let gw = s.platform.gateway.clone();
    let inflight = std::thread::spawn(move || http(&gw, "GET", "/spin", &[], b"").status);
    std::thread::sleep(Duration::from_millis(300));
    let Setup {
        platform,
        tmp: _keep,
        ..
    } = s;
    assert!(platform.stop().success());
    assert_eq!(inflight.join().unwrap(), 504);
}

#[test]
fn each_function_gets_a_short_lived_spiffe_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let platform = Platform::start_with(
        &data,
        &["--trust-domain", "example.org", "--svid-ttl-secs", "60"],
    );
    let key = tmp.path().join("k");
    ok(platform.cli(&["keygen", "--out", key.to_str().unwrap()]));
    ok(platform.cli(&[
        "tenant",
        "create",
        "acme",
        "--signing-key",
        &format!("{}.pub", key.display()),
        "--route-prefix",
        "/...",
    ]));
    let f = function_dir(
        tmp.path(),
        "hello",
        "acme",
        &guest("hello-c"),
        &["/hello"],
        "",
    );
    ok(platform.cli(&[
        "sign",
        f.dir.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--version",
        "1",
    ]));
    ok(platform.cli(&["deploy", f.dir.to_str().unwrap()]));

    let out = ok(platform.cli(&["svid", "show", "acme", "hello"]));
    let fields: Vec<&str> = out.trim().split('\t').collect();
    assert_eq!(
        fields[0], "spiffe://example.org/tenant/acme/fn/hello",
        "{out}"
    );
    assert!(fields[1].starts_with("serial "), "{out}");
    let expires = fields[2].strip_prefix("expires ").unwrap();
    let expires =
        time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339)
            .unwrap();
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(
        left > time::Duration::seconds(30) && left <= time::Duration::seconds(61),
        "{left}"
    );

    let pem = ok(platform.cli(&["svid", "show", "acme", "hello", "--pem"]));
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    // The trust bundle is public; the SVID itself needs the operator token.
    let bundle = http(&platform.api, "GET", "/v1/identity/bundle", &[], b"");
    assert_eq!(bundle.status, 200);
    assert!(bundle.text().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        http(
            &platform.api,
            "GET",
            "/v1/functions/acme/hello/svid",
            &[],
            b""
        )
        .status,
        401
    );

    // Undeploy ends the identity.
    ok(platform.cli(&["undeploy", "acme", "hello"]));
    let err = fails(platform.cli(&["svid", "show", "acme", "hello"]));
    assert!(err.contains("not deployed"), "{err}");
}

/// Audit before effect: when the audit log cannot be written, invocations
/// withhold the guest's response and deploys store nothing.
#[test]
fn a_failing_audit_log_fails_actions_closed() {
    let s = Setup::new();
    s.deploy("hello", "hello-c", &["/hello"], "");
    assert_eq!(s.platform.get("/hello").status, 200);

    // Make every audit insert fail, from outside the platform.
    let db = open_db(&s.platform.data_dir);
    db.execute_batch(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .unwrap();

    // The first invocation's record may already be durable in the journal (it is then
    // acknowledged, and the response goes out); from the database's first refusal on,
    // every action is refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = s.platform.get("/hello");
        if r.status != 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.json()["error"]["kind"], "audit_unavailable");
    assert!(!r.text().contains("hello from zerofn"));
    let r = s.platform.get("/hello");
    assert_eq!(r.status, 500, "{}", r.text());

    let f = function_dir(
        s.root(),
        "second",
        "acme",
        &guest("echo-c"),
        &["/second"],
        "",
    );
    s.sign(&f.wasm, &s.key);
    fails(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert_eq!(s.platform.get("/second").status, 404);
    let deployed: i64 = db
        .query_row("SELECT count(*) FROM deployments", [], |r| r.get(0))
        .unwrap();
    assert_eq!(deployed, 1);

    // Once the log is writable again, everything works and the chain holds.
    db.execute_batch("DROP TRIGGER refuse_audit;").unwrap();
    // The journaled records reach the database at the indexer's next try (within a second).
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.platform.get("/hello").status != 200 {
        assert!(
            Instant::now() < deadline,
            "the log never became writable again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    ok(s.platform.cli(&["audit", "verify"]));
}

/// Completion scripts come from the CLI's own definition: every subcommand is in them, for
/// each shell, and an unknown shell is refused naming the ones there are.
#[test]
fn completions_cover_every_subcommand_and_an_unknown_shell_is_refused() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef zerofn"),
        ("fish", "complete -c zerofn"),
    ] {
        let out = std::process::Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: no `{marker}`");
        for sub in ["deploy", "undeploy", "sign", "tenant", "audit", "functions"] {
            assert!(script.contains(sub), "{shell}: `{sub}` missing");
        }
    }
    let out = std::process::Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("invalid value 'tcsh'") && err.contains("bash, elvish, fish, powershell, zsh"),
        "{err}"
    );
}

/// A client command where no platform runs names the data directory it looked in and the
/// three ways out: start one there, point at another, or give the API's address.
#[test]
fn no_platform_names_the_data_directory_and_how_to_choose_another() {
    let tmp = tempfile::tempdir().unwrap();
    let nothere = tmp.path().join("nothere");
    let err = fails(cli(&nothere, &["functions"]));
    let dir = nothere.display();
    assert_eq!(
        err.trim_end(),
        format!(
            "error: no platform found in data directory `{dir}` (`{dir}/api.json` is missing): \
             start one there with `zerofn up --data-dir {dir}`, point at another with \
             --data-dir DIR or ZEROFN_DATA_DIR, or set ZEROFN_API_URL: No such file or \
             directory (os error 2)"
        )
    );
}

/// `zerofn deploy` takes the function's directory or the path of its `zerofn.toml`.
#[test]
fn deploy_takes_the_manifest_path_as_well_as_the_directory() {
    let s = Setup::new();
    let f = function_dir(
        s.root(),
        "byfile",
        "acme",
        &guest("hello-c"),
        &["/byfile"],
        "",
    );
    s.sign(&f.wasm, &s.key);
    let manifest = f.dir.join("zerofn.toml");
    let out = ok(s.platform.cli(&["deploy", manifest.to_str().unwrap()]));
    assert!(out.contains("acme/byfile"), "{out}");
    assert_eq!(s.platform.get("/byfile").status, 200);
}

/// `sign --json`, `deploy --json` and `undeploy --json` print one JSON object each.
#[test]
fn sign_deploy_and_undeploy_print_json_on_request() {
    let s = Setup::new();
    let f = function_dir(
        s.root(),
        "jsonfn",
        "acme",
        &guest("hello-c"),
        &["/jsonfn"],
        "",
    );
    let version = next_version().to_string();
    let out = ok(s.platform.cli(&[
        "sign",
        f.dir.to_str().unwrap(),
        "--key",
        s.key.to_str().unwrap(),
        "--version",
        &version,
        "--json",
    ]));
    let signed: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            std::fs::read(&f.wasm).unwrap()
        ))
    );
    assert_eq!(signed["digest"], digest.as_str(), "{signed}");
    assert_eq!(
        signed["version"],
        version.parse::<u64>().unwrap(),
        "{signed}"
    );
    for file in ["bundle", "manifest_bundle"] {
        let path = signed[file].as_str().unwrap();
        assert!(Path::new(path).is_file(), "{file}: {path}");
    }
    let out = ok(s
        .platform
        .cli(&["deploy", f.dir.to_str().unwrap(), "--json"]));
    let deployed: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(deployed["tenant"], "acme", "{deployed}");
    assert_eq!(deployed["name"], "jsonfn", "{deployed}");
    assert_eq!(
        deployed["routes"],
        serde_json::json!(["/jsonfn"]),
        "{deployed}"
    );
    assert!(
        deployed["digest"].as_str().unwrap().starts_with("sha256:"),
        "{deployed}"
    );
    let out = ok(s.platform.cli(&["undeploy", "acme", "jsonfn", "--json"]));
    let undeployed: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(undeployed["undeployed"], "acme/jsonfn", "{undeployed}");
    assert_eq!(s.platform.get("/jsonfn").status, 404);
}
