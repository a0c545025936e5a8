//! Issue 11, gateway side: what a red-team review broke in the public
//! gateway and the call path, each reproduced against the running binary.
//!
//! Guests: `loop-c` (spins until its deadline), `call-c`
//! (`/<route>/<tenant>/<fn>/<path>` calls that function), `relay-c` (a
//! hostile caller: relays its body as a POST and forges platform headers),
//! `echo-c` (answers with the request, headers included), `hello-c`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::Setup;

/// The newest audit records, oldest first.
fn audit(s: &Setup, n: u32) -> Vec<serde_json::Value> {
    s.audit(n)
}

/// Wait (bounded) until an audit record satisfies `pred`.
fn wait_for_record(
    s: &Setup,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(r) = audit(s, 500).into_iter().find(|r| pred(r)) {
            return r;
        }
        assert!(Instant::now() < deadline, "no audit record: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Send a request head (and `body`), then hang up after `after`.
fn abandon(addr: &str, path: &str, after: Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    std::thread::sleep(after);
    let _ = s.shutdown(std::net::Shutdown::Both);
}

/// Peak resident set of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Headers the guest saw, as echo-c lists them.
fn echoed_headers(v: &serde_json::Value) -> Vec<(String, String)> {
    v["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("no headers in {v}"))
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_ascii_lowercase(),
                h[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn in_platform_namespace(name: &str) -> bool {
    name.to_ascii_lowercase()
        .replace('_', "-")
        .starts_with("x-zerofn-")
}

/// Item 2: a client that hangs up leaves an audit record `client_gone`
/// with the invocation's duration, directly and through a caller; a
/// callee's deadline is its caller's remaining time.
#[test]
fn abandoned_invocations_are_audited_as_client_gone_and_callees_inherit_the_deadline() {
    let s = Setup::new();
    s.deploy(
        "spin",
        "loop-c",
        &["/spin"],
        "[limits]\ntimeout_ms = 5000\n\n[invoke]\nfrom = [\"public\", \"caller\"]\n",
    );
    s.deploy(
        "caller",
        "call-c",
        &["/caller/..."],
        "[limits]\ntimeout_ms = 1500\n\n[permissions]\ncall = [\"spin\"]\n",
    );

    abandon(&s.platform.gateway, "/spin", Duration::from_millis(400));
    let gone = wait_for_record(&s, "client_gone for spin", |r| {
        r["action"] == "invoke"
            && r["function"] == "spin"
            && r["reason"]
                .as_str()
                .is_some_and(|x| x.starts_with("client_gone"))
    });
    assert_eq!(gone["status"], 499, "{gone}");
    assert_eq!(gone["decision"], "error", "{gone}");
    let us = gone["duration_us"].as_i64().unwrap();
    assert!(us >= 300_000, "{gone}");
    assert_eq!(gone["detail"]["decisions"][0]["action"], "invoke", "{gone}");

    // Through a caller: the caller's invocation is recorded as abandoned.
    abandon(
        &s.platform.gateway,
        "/caller/acme/spin/",
        Duration::from_millis(400),
    );
    wait_for_record(&s, "client_gone for caller", |r| {
        r["function"] == "caller"
            && r["reason"]
                .as_str()
                .is_some_and(|x| x.starts_with("client_gone"))
    });

    // The callee (5 s of its own) ends with its caller's 1.5 s.
    let r = s.platform.get("/caller/acme/spin/");
    assert_eq!(r.status, 504, "{}", r.text());
    // The callee ends at the caller's deadline either way: timed out
    // itself (504) or aborted with its caller, whose deadline is the same
    // instant (499 `client_gone`, the sandbox aborts callees of a dropped
    // caller).
    let callee = wait_for_record(&s, "the called spin's record", |r| {
        r["action"] == "invoke"
            && r["function"] == "spin"
            && r["detail"]["caller"]["kind"] == "function"
    });
    assert!(
        callee["status"] == 504 || callee["status"] == 499,
        "{callee}"
    );
    let us = callee["duration_us"].as_i64().unwrap();
    assert!(us < 4_000_000, "the callee outlived its caller: {callee}");
    ok(s.platform.cli(&["audit", "verify"]));
}

/// Item 3 and 17: a call tree is cut off at its budget of invocations;
/// the depth limit and calls to unknown functions are refused; every one
/// of these refusals is audited.
#[test]
fn call_trees_are_bounded_and_every_refused_call_is_audited() {
    let s = Setup::with_args(&["--max-invocations-per-request", "3"]);
    s.deploy(
        "chain",
        "call-c",
        &["/chain/..."],
        "[permissions]\ncall = [\"chain\", \"nosuch\"]\n\n[invoke]\nfrom = [\"public\", \"chain\"]\n",
    );
    // `/chain/acme/chain<rest>` calls chain on `<rest>`: n repeats are n
    // calls. Two calls fit in a budget of three invocations (the last
    // callee answers 404 to `/x`); the third is cut.
    let calls = |n: usize| format!("{}/x", "/chain/acme/chain".repeat(n));
    let r = s.platform.get(&calls(2));
    assert_eq!(r.status, 404, "{}", r.text());
    let r = s.platform.get(&calls(3));
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("call_budget"), "{}", r.text());
    let cut = wait_for_record(&s, "call_budget", |r| {
        r["action"] == "capability"
            && r["decision"] == "deny"
            && r["reason"]
                .as_str()
                .is_some_and(|x| x.starts_with("call_budget"))
    });
    assert_eq!(cut["function"], "chain", "{cut}");
    assert_eq!(cut["detail"]["refused_by"], "platform", "{cut}");

    // An unknown callee: the guest's call fails, and it is recorded.
    let r = s.platform.get("/chain/acme/nosuch/x");
    assert_eq!(r.status, 502, "{}", r.text());
    wait_for_record(&s, "call_not_found", |r| {
        r["action"] == "capability"
            && r["reason"]
                .as_str()
                .is_some_and(|x| x.starts_with("call_not_found"))
    });
    // Restarted with the default budget (16).
    let s = s.restart();
    // The depth limit (4) within the default budget (16).
    let r = s.platform.get(&calls(6));
    assert_eq!(r.status, 508, "{}", r.text());
    wait_for_record(&s, "call_depth", |r| {
        r["action"] == "capability"
            && r["reason"]
                .as_str()
                .is_some_and(|x| x.starts_with("call_depth"))
    });
    ok(s.platform.cli(&["audit", "verify"]));
}

/// Item 4: the invoke decision is made from the head, so uploads to a
/// function the public may not invoke are refused before their bodies
/// are sent; bodies in flight are bounded across the gateway.
#[test]
fn bodies_are_not_read_for_refused_callers_and_are_bounded_across_the_gateway() {
    let s = Setup::new();
    s.deploy(
        "private",
        "hello-c",
        &["/private"],
        "[limits]\nmax_body_kb = 65536\n\n[invoke]\nfrom = [\"nobody\"]\n",
    );
    s.deploy(
        "upload",
        "echo-c",
        &["/upload/..."],
        "[limits]\nmax_body_kb = 65536\n",
    );
    let pid = s.platform.pid();
    let before = vm_hwm_kib(pid);
    let big = 64 << 20;

    // Twenty 64 MiB uploads: each answered 403 with the body unsent.
    let mut open = Vec::new();
    for _ in 0..20 {
        let mut c = TcpStream::connect(&s.platform.gateway).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // The head only: a server waiting for the body would never answer.
        write!(
            c,
            "POST /private HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n\r\n"
        )
        .unwrap();
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 403", "{}", String::from_utf8_lossy(&head));
        open.push(c);
    }
    drop(open);

    // Four 64 MiB uploads in progress hold the whole 256 MiB budget; the
    // next upload is refused with 503 until they end.
    let mut holders = Vec::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(&s.platform.gateway).unwrap();
        write!(
            c,
            "POST /upload/x HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n\r\n"
        )
        .unwrap();
        c.write_all(&[b'x'; 4096]).unwrap();
        holders.push(c);
    }
    // The holders are still uploading: none has an answer yet.
    for h in &mut holders {
        h.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        let n = h.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "{}", String::from_utf8_lossy(&buf[..n]));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let busy = loop {
        let r = http(&s.platform.gateway, "POST", "/upload/y", &[], b"small");
        if r.status == 503 {
            break r;
        }
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(Instant::now() < deadline, "the body budget was never spent");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(busy.json()["error"]["kind"], "busy", "{}", busy.text());
    drop(holders);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http(&s.platform.gateway, "POST", "/upload/z", &[], b"small");
        if r.status == 200 {
            assert_eq!(r.json()["body"], "small");
            break;
        }
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(
            Instant::now() < deadline,
            "the body budget was never given back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let grown_mib = vm_hwm_kib(pid).saturating_sub(before) / 1024;
    assert!(grown_mib < 128, "peak RSS grew by {grown_mib} MiB");
    // The 403s were recorded (aggregated: at least the first).
    assert!(audit(&s, 200)
        .iter()
        .any(|r| r["function"] == "private" && r["status"] == 403));
}

/// Item 5: a dual-stack gateway sees an IPv4 client as its IPv4 address,
/// so a tenant policy on 127.0.0.0/8 admits it.
#[test]
fn a_dual_stack_gateway_admits_ipv4_clients_by_their_ipv4_address() {
    let tmp = tempfile::tempdir().unwrap();
    let platform = Platform::start_on(&tmp.path().join("data"), "[::]:0", &[]);
    let key = tmp.path().join("acme.key");
    ok(platform.cli(&["keygen", "--out", key.to_str().unwrap()]));
    ok(platform.cli(&[
        "tenant",
        "create",
        "acme",
        "--signing-key",
        &format!("{}.pub", key.display()),
    ]));
    let s = Setup { tmp, platform, key };
    s.deploy(
        "office",
        "hello-c",
        &["/office"],
        "[invoke]\nfrom = [\"nobody\"]\n",
    );
    let policy = s.root().join("office.cedar");
    std::fs::write(
        &policy,
        "@id(\"office-only\")\npermit (principal == Zerofn::Caller::\"public\", action == Zerofn::Action::\"invoke\", resource in Zerofn::Tenant::\"acme\")\nwhen { context.source has ip && context.source.ip.isInRange(ip(\"127.0.0.0/8\")) };\n",
    )
    .unwrap();
    ok(s.platform
        .cli(&["policy", "set", "acme", policy.to_str().unwrap()]));
    let port = s.platform.gateway.rsplit(':').next().unwrap().to_owned();
    let v4 = format!("127.0.0.1:{port}");
    let r = http(&v4, "GET", "/office", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.header("x-zerofn-invocation-id").unwrap().to_owned();
    let rec = wait_for_record(&s, "the invocation", |r| r["invocation_id"] == id.as_str());
    assert_eq!(rec["detail"]["caller"]["ip"], "127.0.0.1", "{rec}");
    // An IPv6 client is outside the range.
    let v6 = format!("[::1]:{port}");
    assert_eq!(http(&v6, "GET", "/office", &[], b"").status, 403);
}

/// Item 7: a thousand denials from one client add a handful of records,
/// and the count is in the log.
#[test]
fn repeated_unauthenticated_refusals_are_aggregated_with_their_count() {
    let s = Setup::new();
    s.deploy(
        "closed",
        "hello-c",
        &["/closed"],
        "[invoke]\nfrom = [\"nobody\"]\n",
    );
    let before = audit(&s, 10_000).len();
    let long = format!("/nope/{}", "a".repeat(8 * 1024));
    let started = Instant::now();
    let mut c = TcpStream::connect(&s.platform.gateway).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // One keep-alive connection, 1,000 refusals: 500 denied, 500 unrouted.
    for i in 0..1000 {
        let path = if i % 2 == 0 { "/closed" } else { long.as_str() };
        write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        // Read the head, then the body by its length.
        while !buf.ends_with(b"\r\n\r\n") {
            c.read_exact(&mut byte).unwrap();
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        let want = if i % 2 == 0 { "403" } else { "404" };
        assert!(head.starts_with(&format!("http/1.1 {want}")), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut body = vec![0u8; len];
        c.read_exact(&mut body).unwrap();
    }
    // A handful of records per aggregation interval (10 s), however long
    // the loop took on a loaded machine: the first of each kind, then one
    // counted record per kind when an interval ends.
    let added = audit(&s, 10_000).len() - before;
    let intervals = started.elapsed().as_secs() / 10 + 1;
    assert!(
        added as u64 <= 4 * intervals + 2,
        "1000 refusals in {intervals} intervals added {added} records"
    );
    // When an interval ends its repeats are one record each: first records
    // plus counts add up to every refusal, none lost.
    let total = |pred: &dyn Fn(&serde_json::Value) -> bool| -> u64 {
        audit(&s, 10_000)
            .into_iter()
            .skip(before)
            .filter(|r| pred(r))
            .map(|r| r["detail"]["aggregated"]["count"].as_u64().unwrap_or(1))
            .sum()
    };
    let denied = |r: &serde_json::Value| r["function"] == "closed" && r["status"] == 403;
    let unrouted_kind = |r: &serde_json::Value| r["status"] == 404 && r["action"] == "invoke";
    let deadline = Instant::now() + Duration::from_secs(40);
    while total(&denied) < 500 || total(&unrouted_kind) < 500 {
        assert!(Instant::now() < deadline, "the repeats were never recorded");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(total(&denied), 500);
    assert_eq!(total(&unrouted_kind), 500);
    let unrouted = wait_for_record(&s, "aggregated 404s", |r| {
        r["status"] == 404 && r["detail"]["aggregated"]["count"].is_number()
    });
    // The stored path is cut to the record's bound.
    assert!(unrouted["detail"]["path"].as_str().unwrap().len() <= 512);
    ok(s.platform.cli(&["audit", "verify"]));
}

/// Item 10 and 17: connections beyond the per-address cap are closed at
/// once while the control API and a fresh client still answer; a request
/// hyper refuses itself is audited.
#[test]
fn connections_beyond_the_per_address_cap_are_refused_and_the_rest_keep_serving() {
    let s = Setup::with_args(&["--max-connections-per-ip", "8"]);
    s.deploy("hello", "hello-c", &["/hello"], "");
    let idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(&s.platform.gateway).unwrap())
        .collect();
    // The ninth is closed without an answer (bounded retries: the eight
    // are counted once the gateway has accepted them).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = try_http(&s.platform.gateway, "GET", "/hello", &[], b"");
        if got.is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "the ninth connection was served");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The control API has its own listener and answers.
    let r = http(&s.platform.api, "GET", "/v1/identity/jwt-bundle", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match try_http(&s.platform.gateway, "GET", "/hello", &[], b"") {
            Ok(r) => {
                assert_eq!(r.status, 200, "{}", r.text());
                break;
            }
            Err(_) => assert!(Instant::now() < deadline, "the cap was never released"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for_record(&s, "a refused connection", |r| {
        r["action"] == "connection"
            && r["reason"]
                .as_str()
                .is_some_and(|x| x.contains("per client address"))
    });

    // A malformed request head: hyper answers 400, and it is recorded.
    let mut c = TcpStream::connect(&s.platform.gateway).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /hello HTTP/1.1\r\nBad Header\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    assert!(
        raw.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    wait_for_record(&s, "the malformed request", |r| {
        r["action"] == "connection" && r["status"] == 400
    });
}

/// Item 11: a call is held to the callee's `max_body_kb` (413 to the
/// calling guest, audited). Item 15: no header in the platform's namespace
/// reaches a guest in any spelling, from a client or a calling guest, and
/// the guest gets the real invocation id.
#[test]
fn calls_obey_the_callees_limits_and_platform_headers_cannot_be_forged() {
    let s = Setup::new();
    s.deploy(
        "echo",
        "echo-c",
        &["/echo/..."],
        "[limits]\nmax_body_kb = 1\n\n[invoke]\nfrom = [\"public\", \"relay\"]\n",
    );
    s.deploy(
        "relay",
        "relay-c",
        &["/relay/..."],
        "[permissions]\ncall = [\"echo\"]\n",
    );

    // From a client, in every spelling.
    let r = http(
        &s.platform.gateway,
        "GET",
        "/echo/x",
        &[
            (
                "x_zerofn_caller_spiffe_id",
                "spiffe://zerofn.local/tenant/acme/fn/admin",
            ),
            (
                "X-ZEROFN-CALLER-SPIFFE-ID",
                "spiffe://zerofn.local/tenant/acme/fn/admin",
            ),
            ("x-zerofn-invocation-id", "forged"),
            ("X_Zerofn-Other", "forged"),
            ("x-kept", "yes"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.header("x-zerofn-invocation-id").unwrap().to_owned();
    let seen = echoed_headers(&r.json());
    let platform: Vec<_> = seen
        .iter()
        .filter(|(k, _)| in_platform_namespace(k))
        .collect();
    assert_eq!(
        platform,
        [&("x-zerofn-invocation-id".to_owned(), id.clone())],
        "{seen:?}"
    );
    assert!(
        seen.contains(&("x-kept".to_owned(), "yes".to_owned())),
        "{seen:?}"
    );

    // From a calling guest that forges them: the callee sees the real
    // caller and its own invocation id.
    let r = http(
        &s.platform.gateway,
        "POST",
        "/relay/acme/echo/y",
        &[],
        b"hi",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["body"], "hi", "{v}");
    let seen = echoed_headers(&v);
    let platform: Vec<_> = seen
        .iter()
        .filter(|(k, _)| in_platform_namespace(k))
        .cloned()
        .collect();
    assert_eq!(platform.len(), 2, "{seen:?}");
    let caller = platform
        .iter()
        .find(|(k, _)| k == "x-zerofn-caller-spiffe-id")
        .unwrap();
    assert!(caller.1.ends_with("/tenant/acme/fn/relay"), "{seen:?}");
    let callee_id = &platform
        .iter()
        .find(|(k, _)| k == "x-zerofn-invocation-id")
        .unwrap()
        .1;
    assert_ne!(callee_id, "forged");
    assert!(seen.contains(&("x-relayed-by".to_owned(), "relay-c".to_owned())));
    let rec = wait_for_record(&s, "the callee's invocation", |r| {
        r["invocation_id"] == callee_id.as_str()
    });
    assert_eq!(rec["function"], "echo", "{rec}");

    // A body over the callee's 1 KiB: 413 to the calling guest, audited.
    let r = http(
        &s.platform.gateway,
        "POST",
        "/relay/acme/echo/z",
        &[],
        &[b'x'; 4096],
    );
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("body_too_large"), "{}", r.text());
    wait_for_record(&s, "the callee's 413", |r| {
        r["function"] == "echo" && r["status"] == 413 && r["detail"]["caller"]["kind"] == "function"
    });
}
