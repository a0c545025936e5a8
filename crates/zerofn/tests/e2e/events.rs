//! Issue 17 (queues): durable queues and their delivery through the real
//! binary. A published message reaches the function bound to its queue as a
//! CloudEvents 1.0 request (binary mode), through the invoke path (policy,
//! sandbox, audit record naming the source, event id and attempt); a failing
//! or trapping function sends it to the dead-letter queue after its attempts
//! and `queue redrive` brings it back; an acknowledged publish survives
//! `kill -9`; the bound function refuses direct HTTP calls and never sees
//! another queue's messages; hostile input is refused and changes nothing.
//!
//! Schedules: a function with `[[triggers]] schedule` is invoked every
//! second by the platform with the schedule as its principal, audited, and
//! refuses direct HTTP calls; after a `kill -9` and restart, `missed =
//! "run-once"` runs one catch-up and `missed = "skip"` none.
//!
//! Guest: `event-c` (logs each event's attributes to stdout; answers 500 to
//! the body `fail`, traps on `trap`, 200 otherwise).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::Setup;

/// The event lines `event-c` logged for `function` (polled until at least
/// `n`, bounded).
fn wait_events(s: &Setup, function: &str, n: usize) -> Vec<String> {
    wait_events_within(s, function, n, Duration::from_secs(60))
}

/// As [`wait_events`], giving up after `within`.
fn wait_events_within(s: &Setup, function: &str, n: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
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

/// `field=value` of an `event-c` line (values hold no spaces but the body's last).
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
    // content-type may hold "; charset=...": it ends at the next known field.
    let end = rest.find(" body=").filter(|_| name == "content-type");
    let end = end.unwrap_or_else(|| rest.find(' ').unwrap_or(rest.len()));
    &rest[..end]
}

fn stats(s: &Setup, queue: &str) -> Value {
    serde_json::from_str(&ok(s
        .platform
        .cli(&["queue", "stats", "acme", queue, "--json"])))
    .unwrap()
}

fn peek(s: &Setup, queue: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(&ok(s
        .platform
        .cli(&["queue", "peek", "acme", queue, "--json"])))
    .unwrap();
    v.as_array().unwrap().clone()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn create_queues(s: &Setup) {
    ok(s.platform.cli(&["queue", "create", "acme", "dlq"]));
    ok(s.platform.cli(&[
        "queue",
        "create",
        "acme",
        "orders",
        "--visibility-timeout",
        "2s",
        "--max-attempts",
        "3",
        "--dead-letter",
        "dlq",
    ]));
    ok(s.platform.cli(&["queue", "create", "acme", "other"]));
}

fn deploy_worker(s: &Setup, name: &str, queue: &str) {
    s.deploy(
        name,
        "event-c",
        &[&format!("/{name}")],
        &format!("[[triggers]]\nqueue = \"{queue}\"\nmax_concurrency = 2\n"),
    );
}

#[test]
fn a_published_message_reaches_the_bound_function_as_a_cloudevent() {
    let s = Setup::new();
    create_queues(&s);
    deploy_worker(&s, "worker", "orders");
    let out = ok(s.platform.cli(&[
        "queue",
        "publish",
        "acme",
        "orders",
        "--data",
        "hello",
        "--type",
        "com.example.order.created",
        "--id",
        "order-1",
    ]));
    assert!(out.contains("published order-1 to orders"), "{out}");
    // Another queue's message never reaches the function bound to `orders`.
    ok(s.platform.cli(&[
        "queue",
        "publish",
        "acme",
        "other",
        "--data",
        "not for worker",
        "--id",
        "x-1",
    ]));

    let events = wait_events(&s, "worker", 1);
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(field(e, "id"), "order-1", "{e}");
    assert_eq!(field(e, "type"), "com.example.order.created", "{e}");
    assert_eq!(
        field(e, "source"),
        "/zerofn/tenants/acme/queues/orders",
        "{e}"
    );
    assert_eq!(field(e, "spec"), "1.0", "{e}");
    assert_eq!(field(e, "subject"), "orders", "{e}");
    assert_eq!(field(e, "attempt"), "1", "{e}");
    assert_eq!(field(e, "caller"), "event:queue/orders", "{e}");
    assert_eq!(field(e, "content-type"), "text/plain; charset=utf-8", "{e}");
    assert!(field(e, "time").ends_with('Z'), "{e}");
    assert_eq!(field(e, "body"), "hello", "{e}");

    // Deleted once the function answered 2xx.
    wait_until("orders drained", || {
        let st = stats(&s, "orders");
        st["visible"] == 0 && st["in_flight"] == 0
    });
    // The invocation's audit record names the source, the event id and the attempt.
    let record = s
        .audit(200)
        .into_iter()
        .find(|r| r["action"] == "invoke" && r["detail"]["caller"]["event_id"] == "order-1")
        .expect("an invoke record for order-1");
    assert_eq!(record["function"], "worker", "{record}");
    assert_eq!(record["status"], 200, "{record}");
    assert_eq!(record["decision"], "allow", "{record}");
    assert_eq!(record["detail"]["caller"]["kind"], "event", "{record}");
    assert_eq!(
        record["detail"]["caller"]["source"], "queue/orders",
        "{record}"
    );
    assert_eq!(record["detail"]["caller"]["attempt"], 1, "{record}");
    assert_eq!(
        record["detail"]["decisions"][0]["policies"][0], "acme/worker/invoke/event:queue/orders",
        "{record}"
    );
    let publish = s
        .audit(200)
        .into_iter()
        .find(|r| r["action"] == "queue.publish" && r["decision"] == "allow")
        .expect("a queue.publish record");
    assert_eq!(publish["detail"]["ids"][0], "order-1", "{publish}");

    // A trigger is an invoke grant for its source only: no direct HTTP call.
    let r = s.platform.get("/worker");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["kind"], "invoke_denied");
    // `other`'s message is still there, untouched.
    let other = stats(&s, "other");
    assert_eq!(
        (other["visible"].as_u64(), other["in_flight"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(wait_events(&s, "worker", 1).len(), 1);
}

#[test]
fn failing_deliveries_dead_letter_and_redrive_brings_them_back() {
    let s = Setup::new();
    create_queues(&s);
    deploy_worker(&s, "worker", "orders");
    ok(s.platform.cli(&[
        "queue", "publish", "acme", "orders", "--data", "fail", "--id", "bad-1",
    ]));
    ok(s.platform.cli(&[
        "queue", "publish", "acme", "orders", "--data", "trap", "--id", "trap-1",
    ]));
    wait_until("both in the dead-letter queue", || {
        peek(&s, "dlq").len() == 2
    });
    let dead = peek(&s, "dlq");
    let by_id = |id: &str| dead.iter().find(|m| m["id"] == id).unwrap().clone();
    let bad = by_id("bad-1");
    assert_eq!(bad["source_queue"], "orders", "{bad}");
    assert!(bad["last_error"].as_str().unwrap().contains("500"), "{bad}");
    let trapped = by_id("trap-1");
    assert!(
        trapped["last_error"].as_str().unwrap().contains("trap"),
        "{trapped}"
    );
    let st = stats(&s, "orders");
    assert_eq!(
        (st["visible"].as_u64(), st["in_flight"].as_u64()),
        (Some(0), Some(0))
    );
    // Three attempts each, numbered.
    let events = wait_events(&s, "worker", 6);
    let attempts = |id: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| field(e, "id") == id)
            .map(|e| field(e, "attempt").to_owned())
            .collect()
    };
    assert_eq!(attempts("bad-1"), ["1", "2", "3"], "{events:?}");
    assert_eq!(attempts("trap-1"), ["1", "2", "3"], "{events:?}");
    assert!(s
        .audit(300)
        .iter()
        .any(|r| r["action"] == "queue.dead_letter" && r["detail"]["event_id"] == "bad-1"));

    // Redrive: back in `orders`, delivered again from attempt 1.
    let out = ok(s.platform.cli(&["queue", "redrive", "acme", "dlq"]));
    assert!(out.contains("redrove 2 messages from dlq"), "{out}");
    let events = wait_events(&s, "worker", 7);
    assert!(
        events
            .iter()
            .filter(|e| field(e, "id") == "bad-1" && field(e, "attempt") == "1")
            .count()
            >= 1
            && events.len() >= 7,
        "{events:?}"
    );
    assert!(s
        .audit(400)
        .iter()
        .any(|r| r["action"] == "queue.redrive" && r["decision"] == "allow"));
    // And purge empties a queue, audited.
    wait_until("dead again", || peek(&s, "dlq").len() == 2);
    let out = ok(s.platform.cli(&["queue", "purge", "acme", "dlq"]));
    assert!(out.contains("purged 2 messages from dlq"), "{out}");
    assert!(peek(&s, "dlq").is_empty());
}

#[test]
fn an_acknowledged_publish_survives_kill_9_and_is_delivered_after_restart() {
    let s = Setup::new();
    ok(s.platform.cli(&["queue", "create", "acme", "later"]));
    let out = ok(s.platform.cli(&[
        "queue", "publish", "acme", "later", "--data", "kept", "--id", "kept-1",
    ]));
    assert!(out.contains("published kept-1"), "{out}");
    let Setup { tmp, platform, key } = s;
    let data = platform.data_dir.clone();
    platform.kill9();
    let s = Setup {
        tmp,
        platform: Platform::start(&data),
        key,
    };
    let st = stats(&s, "later");
    assert_eq!(st["visible"], 1, "{st}");
    deploy_worker(&s, "late", "later");
    let events = wait_events(&s, "late", 1);
    assert_eq!(field(&events[0], "id"), "kept-1", "{events:?}");
    assert_eq!(field(&events[0], "body"), "kept", "{events:?}");
    wait_until("later drained", || stats(&s, "later")["visible"] == 0);
}

#[test]
fn hostile_queue_input_is_refused_naming_the_problem_and_changes_nothing() {
    let s = Setup::new();
    create_queues(&s);
    let big = s.root().join("big.bin");
    std::fs::write(&big, vec![b'x'; 256 * 1024 + 1]).unwrap();
    let at_big = format!("@{}", big.display());
    for (args, expected) in [
        (
            vec!["queue", "publish", "acme", "orders", "--data", &at_big],
            "larger than the limit of 262144 bytes",
        ),
        (
            vec!["queue", "publish", "acme", "nope", "--data", "x"],
            "queue `nope` does not exist",
        ),
        (
            vec!["queue", "publish", "acme", "Orders", "--data", "x"],
            "is not valid",
        ),
        (
            vec![
                "queue", "publish", "acme", "orders", "--data", "x", "--id", "a b",
            ],
            "message `id`",
        ),
        (
            vec![
                "queue", "publish", "acme", "orders", "--data", "x", "--group", "g",
            ],
            "only a FIFO queue",
        ),
        (
            vec!["queue", "publish", "ghost", "orders", "--data", "x"],
            "does not exist",
        ),
        (
            vec!["queue", "create", "acme", "Bad_Name"],
            "queue name `Bad_Name` is not valid",
        ),
        (
            vec!["queue", "create", "acme", "x", "--visibility-timeout", "0s"],
            "out of range",
        ),
        (
            vec!["queue", "create", "acme", "x", "--retention", "forever"],
            "is not a duration",
        ),
        (
            vec!["queue", "create", "acme", "x", "--max-attempts", "0"],
            "out of range",
        ),
        (
            vec!["queue", "create", "acme", "x", "--dead-letter", "missing"],
            "dead-letter queue `missing` does not exist",
        ),
        (
            vec!["queue", "create", "acme", "orders"],
            "queue `orders` already exists",
        ),
        (
            vec!["queue", "delete", "acme", "dlq"],
            "is the dead-letter queue of `orders`",
        ),
        (vec!["queue", "redrive", "acme", "nope"], "does not exist"),
    ] {
        let err = fails(s.platform.cli(&args));
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    // Nothing changed: no message anywhere, no queue `x`.
    for q in ["orders", "dlq", "other"] {
        let st = stats(&s, q);
        assert_eq!(
            (st["visible"].as_u64(), st["in_flight"].as_u64()),
            (Some(0), Some(0)),
            "{q}"
        );
    }
    let list: Value =
        serde_json::from_str(&ok(s.platform.cli(&["queue", "list", "acme", "--json"]))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    assert!(s
        .audit(300)
        .iter()
        .any(|r| r["action"] == "queue.publish" && r["decision"] == "deny"));

    // A FIFO queue needs a group; a tenant has at most 100 queues.
    ok(s.platform
        .cli(&["queue", "create", "acme", "ordered", "--fifo"]));
    let err = fails(
        s.platform
            .cli(&["queue", "publish", "acme", "ordered", "--data", "x"]),
    );
    assert!(err.contains("need a message group"), "{err}");
    for i in 4..100 {
        ok(s.platform
            .cli(&["queue", "create", "acme", &format!("q{i}")]));
    }
    let err = fails(s.platform.cli(&["queue", "create", "acme", "one-too-many"]));
    assert!(err.contains("the most it may have"), "{err}");
    let list: Value =
        serde_json::from_str(&ok(s.platform.cli(&["queue", "list", "acme", "--json"]))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 100);
}

#[test]
fn an_event_its_trigger_schema_refuses_is_dead_lettered_without_running_code() {
    let s = Setup::new();
    create_queues(&s);
    s.deploy(
        "strict",
        "event-c",
        &["/strict"],
        "[[triggers]]\nqueue = \"orders\"\n[triggers.schema]\ntype = \"object\"\nrequired = [\"id\"]\nproperties.id = { type = \"string\", pattern = \"^o-[0-9]+$\" }\n",
    );
    for (data, id) in [
        ("not json", "bad-json"),
        (r#"{"id": "secret-value-123"}"#, "bad-id"),
        (r#"{"id": "o-1"}"#, "good"),
    ] {
        ok(s.platform.cli(&[
            "queue", "publish", "acme", "orders", "--data", data, "--id", id,
        ]));
    }
    wait_until("both invalid events in the dead-letter queue", || {
        peek(&s, "dlq").len() == 2
    });
    let events = wait_events(&s, "strict", 1);
    // Only the valid event ran code, once.
    let ids: Vec<&str> = events.iter().map(|e| field(e, "id")).collect();
    assert_eq!(ids, ["good"], "{events:?}");
    let dead = peek(&s, "dlq");
    for id in ["bad-json", "bad-id"] {
        let m = dead.iter().find(|m| m["id"] == id).unwrap();
        let error = m["last_error"].as_str().unwrap();
        assert!(
            error.contains("does not match its trigger's schema"),
            "{id}: {error}"
        );
        // The data's value is never echoed.
        assert!(!error.contains("secret-value-123"), "{error}");
    }
    let bad_id = dead.iter().find(|m| m["id"] == "bad-id").unwrap();
    assert!(
        bad_id["last_error"].as_str().unwrap().contains("/id"),
        "{bad_id}"
    );
    // Each refusal is one invoke record, denied, naming the schema problem:
    // one attempt each, not the queue's three.
    let audit = s.audit(300);
    let refused: Vec<&Value> = audit
        .iter()
        .filter(|r| {
            r["action"] == "invoke"
                && r["decision"] == "deny"
                && r["reason"]
                    .as_str()
                    .is_some_and(|x| x.starts_with("schema: "))
                && r["detail"]["schema"]["part"] == "event"
        })
        .collect();
    assert_eq!(refused.len(), 2, "{audit:?}");
    assert!(audit.iter().any(|r| r["action"] == "queue.dead_letter"
        && r["detail"]["event_id"] == "bad-id"
        && r["reason"]
            .as_str()
            .is_some_and(|x| x.contains("without a retry"))));
}

#[test]
fn a_schedule_fires_every_second_as_its_own_source_and_nothing_else_may_invoke() {
    let s = Setup::new();
    s.deploy(
        "ticker",
        "event-c",
        &["/ticker"],
        "[[triggers]]\nname = \"tick\"\nschedule = \"* * * * * *\"\n",
    );
    // The scheduler reads the bindings at least every second and fires at
    // whole seconds: two runs within ten seconds of the deploy.
    let events = wait_events_within(&s, "ticker", 2, Duration::from_secs(10));
    assert!(events.len() >= 2, "fewer than 2 runs in 10 s: {events:?}");
    let mut ids = Vec::new();
    for e in &events {
        assert_eq!(field(e, "type"), "dev.zerofn.schedule.fired", "{e}");
        assert_eq!(
            field(e, "source"),
            "/zerofn/tenants/acme/schedules/ticker-tick",
            "{e}"
        );
        assert_eq!(field(e, "subject"), "tick", "{e}");
        assert_eq!(field(e, "spec"), "1.0", "{e}");
        assert_eq!(field(e, "attempt"), "1", "{e}");
        assert_eq!(field(e, "caller"), "event:schedule/ticker-tick", "{e}");
        assert_eq!(field(e, "content-type"), "application/json", "{e}");
        let time = field(e, "time");
        assert!(time.ends_with('Z'), "{e}");
        let body: Value = serde_json::from_str(field(e, "body")).unwrap();
        assert_eq!(body["scheduled_time"], time, "{e}");
        assert_eq!(body["schedule"], "* * * * * *", "{e}");
        assert_eq!(body["timezone"], "UTC", "{e}");
        assert!(field(e, "id").starts_with("ticker-tick-"), "{e}");
        ids.push(field(e, "id").to_owned());
    }
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "one event per fire time: {ids:?}");

    // Each run is an invocation whose audit record names the source, the
    // event id and the attempt, allowed by the trigger's grant.
    let records = s.audit(300);
    let record = records
        .iter()
        .find(|r| r["action"] == "invoke" && r["detail"]["caller"]["event_id"] == ids[0].as_str())
        .unwrap_or_else(|| panic!("an invoke record for {}", ids[0]));
    assert_eq!(record["function"], "ticker", "{record}");
    assert_eq!(record["status"], 200, "{record}");
    assert_eq!(record["decision"], "allow", "{record}");
    assert_eq!(record["detail"]["caller"]["kind"], "event", "{record}");
    assert_eq!(
        record["detail"]["caller"]["source"], "schedule/ticker-tick",
        "{record}"
    );
    assert_eq!(record["detail"]["caller"]["attempt"], 1, "{record}");
    assert_eq!(
        record["detail"]["decisions"][0]["policies"][0],
        "acme/ticker/invoke/event:schedule/ticker-tick",
        "{record}"
    );

    // `schedule list` shows it with its last and next runs.
    let listed: Value =
        serde_json::from_str(&ok(s.platform.cli(&["schedule", "list", "acme", "--json"]))).unwrap();
    let listed = &listed[0];
    assert_eq!(listed["function"], "ticker", "{listed}");
    assert_eq!(listed["name"], "tick", "{listed}");
    assert_eq!(listed["schedule"], "* * * * * *", "{listed}");
    assert_eq!(listed["missed"], "skip", "{listed}");
    let last = listed["last_run"].as_str().expect("a last run");
    let next = listed["next_run"].as_str().expect("a next run");
    assert!(next > last, "{listed}");
    let text = ok(s.platform.cli(&["schedule", "list", "acme"]));
    assert!(text.starts_with("ticker/tick `* * * * * *` UTC"), "{text}");

    // The schedule is an invoke grant for itself only: no direct HTTP call.
    let r = s.platform.get("/ticker");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["kind"], "invoke_denied");
}

#[test]
fn missed_runs_after_a_kill_9_are_skipped_or_run_once() {
    let s = Setup::new();
    for (name, missed) in [("catcher", "run-once"), ("skipper", "skip")] {
        s.deploy(
            name,
            "event-c",
            &[&format!("/{name}")],
            &format!(
                "[[triggers]]\nname = \"tick\"\nschedule = \"* * * * * *\"\nmissed = \"{missed}\"\n"
            ),
        );
    }
    for name in ["catcher", "skipper"] {
        let events = wait_events_within(&s, name, 1, Duration::from_secs(10));
        assert!(!events.is_empty(), "{name} never ran");
    }
    let catch_up =
        |e: &String| serde_json::from_str::<Value>(field(e, "body")).unwrap()["catch_up"] == true;
    let Setup { tmp, platform, key } = s;
    let data = platform.data_dir.clone();
    platform.kill9();
    // Down for a few fire times.
    std::thread::sleep(Duration::from_secs(3));
    let s = Setup {
        tmp,
        platform: Platform::start(&data),
        key,
    };
    // run-once: one catch-up run, for a fire time while the platform was down.
    let deadline = Instant::now() + Duration::from_secs(10);
    let catcher = loop {
        let events = wait_events_within(&s, "catcher", 1, Duration::from_secs(1));
        if events.iter().any(catch_up) || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let catch_ups: Vec<_> = catcher.iter().filter(|e| catch_up(e)).collect();
    assert_eq!(catch_ups.len(), 1, "{catcher:?}");
    // skip: runs again after the restart, never as a catch-up.
    let before = wait_events_within(&s, "skipper", 1, Duration::from_secs(1)).len();
    let skipper = wait_events_within(&s, "skipper", before + 1, Duration::from_secs(10));
    assert!(
        skipper.len() > before,
        "skipper did not resume: {skipper:?}"
    );
    assert!(!skipper.iter().any(catch_up), "{skipper:?}");
}

/// Functions publish to queues of their tenant they are granted (`[permissions]
/// publish`) with `POST http://queues.fn.internal/<queue>`: decided, recorded, durable,
/// delivered like any publish. `relay-c` is the publisher: it relays its body as a POST
/// to the platform service its path names, forging `x-zerofn-*` headers on the way.
#[test]
fn a_function_publishes_to_the_queues_it_is_granted_and_no_other() {
    let s = Setup::new();
    create_queues(&s);
    deploy_worker(&s, "worker", "orders");
    s.deploy(
        "publisher",
        "relay-c",
        &["/relay/..."],
        "[permissions]\npublish = [\"orders\"]\n",
    );
    let r = s
        .platform
        .post("/relay/-/queues/orders", b"from a function");
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["id"].as_str().expect("a message id").to_owned();
    assert_eq!(r.json()["queue"], "orders");
    let events = wait_events(&s, "worker", 1);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(field(&events[0], "id"), id, "{events:?}");
    assert_eq!(field(&events[0], "body"), "from a function", "{events:?}");
    // The capability decision, and the queue's own record naming the function.
    let records = s.audit(300);
    let decided = records
        .iter()
        .find(|r| {
            r["action"] == "capability"
                && r["function"] == "publisher"
                && r["detail"]["action"] == "queue.publish"
        })
        .expect("a queue.publish capability record");
    assert_eq!(decided["decision"], "allow", "{decided}");
    assert_eq!(
        decided["detail"]["policies"][0], "acme/publisher/publish/orders",
        "{decided}"
    );
    let published = records
        .iter()
        .find(|r| r["action"] == "queue.publish" && r["detail"]["ids"][0] == id.as_str())
        .expect("the queue's publish record");
    assert!(
        published["actor"]
            .as_str()
            .is_some_and(|a| a.ends_with("/fn/publisher")),
        "{published}"
    );

    // A queue it is not granted: refused before the queue is touched, and recorded.
    let before = stats(&s, "other");
    let r = s.platform.post("/relay/-/queues/other", b"not granted");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("publish:other"), "{}", r.text());
    assert_eq!(stats(&s, "other"), before);
    assert!(s.audit(300).iter().any(|r| r["action"] == "capability"
        && r["function"] == "publisher"
        && r["decision"] == "deny"
        && r["detail"]["action"] == "queue.publish"));
    // Not a queue name, or not a POST: not the queues endpoint at all.
    let r = s.platform.post("/relay/-/queues/Bad_Name", b"x");
    assert_eq!(r.status, 404, "{}", r.text());
    // A message larger than a queue takes is refused without reaching it.
    let big = vec![b'x'; 256 * 1024 + 1];
    let r = s.platform.post("/relay/-/queues/orders", &big);
    assert!(
        r.status == 413 || r.status == 400,
        "{} {}",
        r.status,
        r.text()
    );
    let st = stats(&s, "orders");
    assert_eq!(
        st["visible"].as_u64().unwrap_or(0) + st["in_flight"].as_u64().unwrap_or(0),
        0,
        "{st}"
    );
}
