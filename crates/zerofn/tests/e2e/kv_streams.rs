//! Issue 17 (key-value change streams) through the real binary: writes a
//! function makes to a bucket of its tenant (`kv-c` over HTTP) reach the
//! function bound to that bucket with `[[triggers]] kv` as CloudEvents, in
//! order per key, each with its old and new value; the invocation is
//! audited with the source `kv/<bucket>`; the subscriber never sees another
//! bucket's changes and refuses direct HTTP calls.
//!
//! Guests: `kv-c` (`/<route>/<bucket>/<key>`: PUT sets, DELETE deletes,
//! POST increments) and `event-c` (logs each event's attributes and body
//! to stdout, answers 200).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::Setup;

/// The `event-c` lines logged for `function`, polled until at least `n`
/// (bounded: 60 s).
fn wait_events(s: &Setup, function: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = ok(s.platform.cli(&["logs", "acme", function, "--json"]));
        let lines: Vec<String> = out
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["line"].as_str().map(str::to_owned))
            .filter(|l| l.starts_with("event "))
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `name=value` of an `event-c` line; the body is the rest of the line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=");
    let start = line
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + key.len();
    let rest = &line[start..];
    if name == "body" {
        return rest;
    }
    &rest[..rest.find(' ').unwrap_or(rest.len())]
}

fn body(line: &str) -> Value {
    serde_json::from_str(field(line, "body")).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn req(s: &Setup, method: &str, path: &str, data: &[u8]) -> HttpResponse {
    http(&s.platform.gateway, method, path, &[], data)
}

fn text(v: &str) -> Value {
    serde_json::json!({"encoding": "utf-8", "data": v})
}

#[test]
fn kv_changes_reach_the_bound_function_in_order_with_old_and_new_values() {
    let s = Setup::new();
    s.deploy(
        "writer",
        "kv-c",
        &["/writer/..."],
        "[permissions]\nkv = [\"orders:read-write\", \"other:read-write\"]\n",
    );
    s.deploy(
        "sub",
        "event-c",
        &["/sub"],
        "[[triggers]]\nkv = \"orders\"\nmax_concurrency = 4\n",
    );
    s.deploy(
        "other-sub",
        "event-c",
        &["/other-sub"],
        "[[triggers]]\nkv = \"other\"\n",
    );

    // Several writes to one key, an increment of another, and a write to
    // another bucket; each answered before the next is sent.
    for (method, path, data, status) in [
        ("PUT", "/writer/orders/cart", &b"one"[..], 204),
        ("PUT", "/writer/orders/cart", b"two", 204),
        ("POST", "/writer/orders/count", b"", 200),
        ("PUT", "/writer/other/x", b"elsewhere", 204),
        ("DELETE", "/writer/orders/cart", b"", 204),
        // Deleting an absent key changes nothing: no event.
        ("DELETE", "/writer/orders/absent", b"", 204),
        ("PUT", "/writer/orders/cart", b"three", 204),
    ] {
        let r = req(&s, method, path, data);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
    }

    let events = wait_events(&s, "sub", 5);
    assert_eq!(events.len(), 5, "{events:#?}");
    let cart: Vec<(String, Value, Value)> = events
        .iter()
        .map(|e| (e, body(e)))
        .filter(|(_, b)| b["key"] == "cart")
        .map(|(_, b)| {
            (
                b["op"].as_str().unwrap().to_owned(),
                b["old"].clone(),
                b["new"].clone(),
            )
        })
        .collect();
    assert_eq!(
        cart,
        [
            ("set".to_owned(), Value::Null, text("one")),
            ("set".to_owned(), text("one"), text("two")),
            ("delete".to_owned(), text("two"), Value::Null),
            ("set".to_owned(), Value::Null, text("three")),
        ],
        "{events:#?}"
    );
    let count = events
        .iter()
        .map(|e| body(e))
        .find(|b| b["key"] == "count")
        .expect("the increment's event");
    assert_eq!(
        (count["op"].as_str(), &count["old"], &count["new"]),
        (Some("increment"), &Value::Null, &text("1"))
    );
    // Sequence numbers increase in delivery order per key; every attribute is set.
    let mut last_seq = 0;
    for e in events.iter().filter(|e| body(e)["key"] == "cart") {
        let b = body(e);
        let seq = b["seq"].as_u64().unwrap();
        assert!(seq > last_seq, "{events:#?}");
        last_seq = seq;
        assert_eq!(field(e, "id"), format!("orders-{seq}"), "{e}");
        assert_eq!(field(e, "type"), "dev.zerofn.kv.changed", "{e}");
        assert_eq!(field(e, "source"), "/zerofn/tenants/acme/kv/orders", "{e}");
        assert_eq!(field(e, "spec"), "1.0", "{e}");
        assert_eq!(field(e, "subject"), "cart", "{e}");
        assert_eq!(field(e, "attempt"), "1", "{e}");
        assert_eq!(field(e, "caller"), "event:kv/orders", "{e}");
        assert_eq!(field(e, "content-type"), "application/json", "{e}");
        assert_eq!(b["writer"], "function:writer", "{e}");
        assert_eq!(b["bucket"], "orders", "{e}");
    }

    // The other bucket's change reached its own subscriber only.
    let other = wait_events(&s, "other-sub", 1);
    assert_eq!(other.len(), 1, "{other:#?}");
    assert_eq!(body(&other[0])["key"], "x");
    assert_eq!(field(&other[0], "caller"), "event:kv/other");
    assert!(
        events.iter().all(|e| body(e)["bucket"] == "orders"),
        "{events:#?}"
    );

    // Each delivery is an invocation, audited with its source, event id and attempt.
    let first = format!("orders-{}", body(&events[0])["seq"]);
    let record = s
        .audit(300)
        .into_iter()
        .find(|r| r["action"] == "invoke" && r["detail"]["caller"]["event_id"] == first.as_str())
        .expect("an invoke record of the first change");
    assert_eq!(record["function"], "sub", "{record}");
    assert_eq!(record["status"], 200, "{record}");
    assert_eq!(
        record["detail"]["caller"]["source"], "kv/orders",
        "{record}"
    );
    assert_eq!(record["detail"]["caller"]["attempt"], 1, "{record}");
    assert_eq!(
        record["detail"]["decisions"][0]["policies"][0], "acme/sub/invoke/event:kv/orders",
        "{record}"
    );

    // A trigger is an invoke grant for its source only: no direct HTTP call.
    let r = s.platform.get("/sub");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["kind"], "invoke_denied");
    // And nothing more arrived: five changes of `orders`, five events.
    assert_eq!(wait_events(&s, "sub", 0).len(), 5);
}

#[test]
fn a_bad_kv_trigger_is_refused_at_deploy_and_nothing_is_deployed() {
    let s = Setup::new();
    let f = function_dir(
        s.root(),
        "bad",
        "acme",
        &guest("event-c"),
        &["/bad"],
        "[[triggers]]\nkv = \"Orders\"\n",
    );
    // Refused when the manifest is read (signing reads it first), naming the problem.
    let err = fails(s.platform.cli(&[
        "sign",
        f.dir.to_str().unwrap(),
        "--key",
        s.key.to_str().unwrap(),
        "--version",
        "1",
    ]));
    assert!(
        err.contains("kv bucket `Orders` is not a valid name"),
        "{err}"
    );
    let err = fails(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert!(!err.is_empty());
    assert!(
        !s.functions().to_string().contains("\"bad\""),
        "{}",
        s.functions()
    );
}
