//! Hardening of the sandbox against hostile guests (issue 11, items 1, 2
//! and 14), against the real binary:
//!
//! - a guest cannot make the host hold far more than its `memory_mb`:
//!   `header-bomb-c` (1 MiB, no permissions, loops `fields.new` + `append`
//!   of 120 KiB values) and `kv-batch-bomb-c` (4 MiB, `get-many` of one
//!   1 MiB key repeated 1,000 times, or of 20 distinct 1 MiB keys) leave
//!   the platform's peak RSS nearly where it was, get an error or a trap,
//!   and another tenant is served meanwhile;
//! - a client that hangs up stops its guest and frees its instance slot,
//!   also when the guest is a callee of a function-to-function call;
//! - a `memory_mb` above the platform maximum is refused at deploy.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::Setup;

/// Peak RSS growth allowed for one attack. The unfixed platform grew by
/// 1-3.5 GiB; a bounded one by its host budget (16 MiB per invocation
/// here) plus allocator slack.
const MAX_GROWTH_KIB: u64 = 256 * 1024;

/// `VmHWM` (peak resident set) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"))
}

/// Create tenant `other` and deploy `hello-c` for it at `/other-hello`.
fn other_tenant_hello(s: &Setup) {
    let key = s.root().join("other.key");
    ok(s.platform.cli(&["keygen", "--out", key.to_str().unwrap()]));
    ok(s.platform.cli(&[
        "tenant",
        "create",
        "other",
        "--signing-key",
        &format!("{}.pub", key.display()),
        "--route-prefix",
        "/other-hello",
    ]));
    let f = function_dir(
        s.root(),
        "hello",
        "other",
        &guest("hello-c"),
        &["/other-hello"],
        "",
    );
    s.sign(&f.wasm, &key);
    ok(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert_eq!(s.platform.get("/other-hello").status, 200);
}

/// Sandbox refusals recorded for `function` (bounded wait: the record is
/// written as the refusal happens, alongside the invocation).
fn sandbox_refusals(s: &Setup, function: &str) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<_> = s
            .audit(500)
            .into_iter()
            .filter(|r| {
                r["action"] == "capability"
                    && r["function"] == function
                    && r["decision"] == "deny"
                    && r["detail"]["refused_by"] == "sandbox"
            })
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Run `attack` on `threads` threads while another tenant's function is
/// asked again and again; returns the attack's responses. Every
/// other-tenant request must be served.
fn while_other_tenant_is_served(
    s: &Setup,
    threads: usize,
    path: &'static str,
) -> Vec<HttpResponse> {
    let attackers: Vec<_> = (0..threads)
        .map(|_| {
            let gw = s.platform.gateway.clone();
            std::thread::spawn(move || http(&gw, "GET", path, &[], b""))
        })
        .collect();
    let mut served = 0;
    while attackers.iter().any(|t| !t.is_finished()) && served < 200 {
        let r = s.platform.get("/other-hello");
        assert_eq!(r.status, 200, "other tenant during {path}: {}", r.text());
        served += 1;
    }
    let responses: Vec<_> = attackers.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(s.platform.get("/other-hello").status, 200);
    responses
}

#[test]
fn header_fields_a_guest_builds_are_bounded_by_its_host_budget() {
    let s = Setup::new();
    s.deploy(
        "bomb",
        "header-bomb-c",
        &["/bomb"],
        "[limits]\nmemory_mb = 1\ntimeout_ms = 4000\n",
    );
    other_tenant_hello(&s);
    let pid = s.platform.pid();
    let before = peak_rss_kib(pid);
    let responses = while_other_tenant_is_served(&s, 3, "/bomb");
    let growth = peak_rss_kib(pid).saturating_sub(before);
    for r in &responses {
        // The guest never sees an error value (the interface has none for
        // this): the instance traps as over its memory limit.
        assert_eq!(r.status, 500, "{}", r.text());
        assert_eq!(r.json()["error"]["kind"], "memory_limit", "{}", r.text());
    }
    assert!(
        growth < MAX_GROWTH_KIB,
        "peak RSS grew by {growth} KiB during the attack"
    );
    // The trap is the budget's, and it is on record.
    let refusals = sandbox_refusals(&s, "bomb");
    assert!(!refusals.is_empty(), "no sandbox refusal recorded");
    let reason = refusals[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("wasi:http/types") && reason.contains("budget"),
        "{reason}"
    );
}

#[test]
fn key_value_batches_are_bounded_and_refuse_repeated_keys() {
    let s = Setup::new();
    s.deploy(
        "kvb",
        "kv-batch-bomb-c",
        &["/kvb/..."],
        "[limits]\nmemory_mb = 4\ntimeout_ms = 20000\n[permissions]\nkv = [\"blob:read-write\"]\n",
    );
    other_tenant_hello(&s);
    let pid = s.platform.pid();

    let before = peak_rss_kib(pid);
    let responses = while_other_tenant_is_served(&s, 3, "/kvb/repeat");
    let growth = peak_rss_kib(pid).saturating_sub(before);
    for r in &responses {
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        assert!(
            text.starts_with("error: ") && text.contains("more than once"),
            "{text}"
        );
    }
    assert!(
        growth < MAX_GROWTH_KIB,
        "peak RSS grew by {growth} KiB during the repeated-key attack"
    );

    let before = peak_rss_kib(pid);
    let responses = while_other_tenant_is_served(&s, 1, "/kvb/distinct");
    let growth = peak_rss_kib(pid).saturating_sub(before);
    let text = responses[0].text();
    assert_eq!(responses[0].status, 200, "{text}");
    assert!(
        text.starts_with("error: ") && text.contains("limit"),
        "{text}"
    );
    assert!(
        growth < MAX_GROWTH_KIB,
        "peak RSS grew by {growth} KiB during the distinct-key attack"
    );
    assert!(!sandbox_refusals(&s, "kvb").is_empty());
}

/// Send `GET path` and return the open connection without reading.
fn send_and_hold(gateway: &str, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(gateway).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {gateway}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    stream.flush().unwrap();
    stream
}

/// Two clients ask for `path` (a guest that spins for 20 s) and hang up
/// after a second; then another tenant must be served at once.
fn abandoned_requests_free_their_slots(s: &Setup, path: &str) {
    let held: Vec<_> = (0..2)
        .map(|_| send_and_hold(&s.platform.gateway, path))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    drop(held);
    // The platform notices the closed connections on its next read; give
    // it a moment, then the pool must have room again (not a 500 "maximum
    // concurrent limit" from the allocator, nor a 503 after waiting 10 s
    // for a slot held by a guest nobody waits for).
    std::thread::sleep(Duration::from_millis(300));
    let r = s.platform.get("/other-hello");
    assert_eq!(r.status, 200, "{}", r.text());
    // And again, several at once: both slots are free.
    let others: Vec<_> = (0..2)
        .map(|_| {
            let gw = s.platform.gateway.clone();
            std::thread::spawn(move || http(&gw, "GET", "/other-hello", &[], b"").status)
        })
        .collect();
    for other in others {
        assert_eq!(other.join().unwrap(), 200);
    }
}

#[test]
fn a_client_that_hangs_up_stops_its_guest_and_frees_its_slot() {
    let s = Setup::with_args(&["--max-instances", "2", "--max-instances-per-tenant", "2"]);
    s.deploy(
        "spin",
        "loop-c",
        &["/spin"],
        "[limits]\ntimeout_ms = 20000\n",
    );
    other_tenant_hello(&s);
    abandoned_requests_free_their_slots(&s, "/spin");
}

#[test]
fn a_hung_up_call_chain_stops_the_callee_too() {
    // Two abandoned chains of caller + callee take all four slots unless
    // both are stopped.
    let s = Setup::with_args(&["--max-instances", "4", "--max-instances-per-tenant", "4"]);
    s.deploy(
        "spin",
        "loop-c",
        &["/spin"],
        "[limits]\ntimeout_ms = 20000\n[invoke]\nfrom = [\"caller\"]\n",
    );
    s.deploy(
        "caller",
        "call-c",
        &["/caller/..."],
        "[limits]\ntimeout_ms = 20000\n[permissions]\ncall = [\"spin\"]\n",
    );
    other_tenant_hello(&s);
    abandoned_requests_free_their_slots(&s, "/caller/acme/spin/");
}

#[test]
fn memory_mb_over_the_platform_maximum_is_refused_at_deploy() {
    let s = Setup::new();
    let f = function_dir(
        s.root(),
        "huge",
        "acme",
        &guest("hello-c"),
        &["/huge"],
        "[limits]\nmemory_mb = 4096\n",
    );
    s.sign(&f.wasm, &s.key);
    let err = fails(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert!(
        err.contains("`memory_mb` 4096 exceeds the platform maximum of 1024 MiB"),
        "{err}"
    );
    assert_eq!(s.platform.get("/huge").status, 404);
}
