//! Issue 17 (object storage): buckets of objects through the real binary.
//! A put into bucket A reaches only the functions bound to A whose filters
//! (events, prefix, suffix) match, as a CloudEvents 1.0 request (binary mode)
//! through the invoke path, with the bucket as principal; a put into
//! another bucket or a key that does not match triggers nothing; the bound
//! function refuses direct HTTP calls; `object get` returns the bytes,
//! `object list --prefix` the keys; every change is audited with digest and
//! size; an acknowledged put survives `kill -9` with its event.
//!
//! Guest: `event-c` (logs each event's attributes to stdout, answers 200).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::Setup;

/// The event lines `event-c` logged for `function` (polled until at least
/// `n`, for at most a minute).
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

/// `field=value` of an `event-c` line (the body is last and may hold spaces).
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

fn put(s: &Setup, bucket: &str, key: &str, data: &str) -> Value {
    serde_json::from_str(&ok(s.platform.cli(&[
        "object", "put", "acme", bucket, key, "--data", data, "--json",
    ])))
    .unwrap()
}

fn deploy_bound(s: &Setup, name: &str, trigger: &str) {
    s.deploy(
        name,
        "event-c",
        &[&format!("/{name}")],
        &format!("[[triggers]]\n{trigger}max_concurrency = 1\n"),
    );
}

#[test]
fn a_put_reaches_only_the_functions_bound_to_its_bucket_whose_filters_match() {
    let s = Setup::new();
    deploy_bound(
        &s,
        "thumbs",
        "bucket = \"uploads\"\nevents = [\"created\"]\nprefix = \"incoming/\"\nsuffix = \".json\"\n",
    );
    deploy_bound(&s, "archiver", "bucket = \"archive\"\n");

    let a = put(&s, "uploads", "incoming/a.json", "{\"n\":1}");
    assert_eq!(a["size"], 7, "{a}");
    let digest = a["digest"].as_str().unwrap().to_owned();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{a}");
    // Neither the suffix, nor the prefix, nor the bucket matches `thumbs`.
    put(&s, "uploads", "incoming/b.txt", "x");
    put(&s, "uploads", "outgoing/c.json", "x");
    put(&s, "archive", "incoming/d.json", "x");
    // A later matching put: with one delivery at a time, in order, `thumbs`
    // has seen whatever was queued for it before this one.
    put(&s, "uploads", "incoming/z.json", "{}");

    let events = wait_events(&s, "thumbs", 2);
    let subjects: Vec<&str> = events.iter().map(|e| field(e, "subject")).collect();
    assert_eq!(
        subjects,
        ["incoming/a.json", "incoming/z.json"],
        "{events:?}"
    );
    let e = &events[0];
    assert_eq!(field(e, "type"), "dev.zerofn.object.created", "{e}");
    assert_eq!(
        field(e, "source"),
        "/zerofn/tenants/acme/buckets/uploads",
        "{e}"
    );
    assert_eq!(field(e, "spec"), "1.0", "{e}");
    assert_eq!(field(e, "attempt"), "1", "{e}");
    assert_eq!(field(e, "caller"), "event:bucket/uploads", "{e}");
    assert_eq!(field(e, "content-type"), "application/json", "{e}");
    // The body describes the object; it is not the object.
    let body: Value = serde_json::from_str(field(e, "body")).unwrap();
    assert_eq!(body["event"], "created", "{body}");
    assert_eq!(body["bucket"], "uploads", "{body}");
    assert_eq!(body["key"], "incoming/a.json", "{body}");
    assert_eq!(body["size"], 7, "{body}");
    assert_eq!(body["digest"], digest.as_str(), "{body}");
    assert_eq!(body["content_type"], "text/plain; charset=utf-8", "{body}");

    // `archiver` got its bucket's put, and nothing of `uploads`.
    let archived = wait_events(&s, "archiver", 1);
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert_eq!(field(&archived[0], "subject"), "incoming/d.json");
    assert_eq!(field(&archived[0], "caller"), "event:bucket/archive");

    // Deletes: `thumbs` wants `created` only; `archiver` (both kinds) gets it.
    let out = ok(s
        .platform
        .cli(&["object", "delete", "acme", "archive", "incoming/d.json"]));
    assert!(out.contains("deleted archive/incoming/d.json"), "{out}");
    ok(s.platform
        .cli(&["object", "delete", "acme", "uploads", "incoming/a.json"]));
    let archived = wait_events(&s, "archiver", 2);
    assert_eq!(field(&archived[1], "type"), "dev.zerofn.object.deleted");
    put(&s, "uploads", "incoming/last.json", "{}");
    let events = wait_events(&s, "thumbs", 3);
    let types: Vec<&str> = events.iter().map(|e| field(e, "type")).collect();
    assert_eq!(types, ["dev.zerofn.object.created"; 3], "{events:?}");

    // The invocation's record names the bucket as the source and its grant.
    let record = s
        .audit(300)
        .into_iter()
        .find(|r| r["action"] == "invoke" && r["function"] == "thumbs")
        .expect("an invoke record of thumbs");
    assert_eq!(
        record["detail"]["caller"]["source"], "bucket/uploads",
        "{record}"
    );
    assert_eq!(
        record["detail"]["decisions"][0]["policies"][0], "acme/thumbs/invoke/event:bucket/uploads",
        "{record}"
    );
    // A trigger is an invoke grant for its source only: no direct HTTP call.
    let r = s.platform.get("/thumbs");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["kind"], "invoke_denied");
}

#[test]
fn objects_are_read_listed_and_audited_and_bad_input_changes_nothing() {
    let s = Setup::new();
    let file = s.root().join("photo.bin");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    std::fs::write(&file, &bytes).unwrap();
    let at_file = format!("@{}", file.display());
    let stored = put(&s, "media", "in/photo.bin", &at_file);
    assert_eq!(stored["content_type"], "application/octet-stream");
    put(&s, "media", "in/note.txt", "hello");
    put(&s, "media", "out/x", "hello");

    // `get` answers the bytes, to a file or to stdout.
    let out = s.root().join("copy.bin");
    ok(s.platform.cli(&[
        "object",
        "get",
        "acme",
        "media",
        "in/photo.bin",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    assert_eq!(
        ok(s.platform
            .cli(&["object", "get", "acme", "media", "in/note.txt"])),
        "hello"
    );

    let list: Value = serde_json::from_str(&ok(s.platform.cli(&[
        "object", "list", "acme", "media", "--prefix", "in/", "--json",
    ])))
    .unwrap();
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["in/note.txt", "in/photo.bin"]);

    // Identical bodies share one blob.
    let blobs = || {
        std::fs::read_dir(s.platform.data_dir.join("objects/blobs"))
            .unwrap()
            .count()
    };
    assert_eq!(blobs(), 2);

    // Audited with digest and size, never the bytes.
    let record = s
        .audit(100)
        .into_iter()
        .find(|r| r["action"] == "object.put" && r["detail"]["key"] == "in/photo.bin")
        .expect("an object.put record");
    assert_eq!(record["decision"], "allow", "{record}");
    assert_eq!(record["detail"]["size"], 100_000, "{record}");
    assert_eq!(record["detail"]["digest"], stored["digest"], "{record}");

    for (args, expected) in [
        (
            vec![
                "object",
                "put",
                "acme",
                "media",
                "../etc/passwd",
                "--data",
                "x",
            ],
            "has an empty, `.` or `..` segment",
        ),
        (
            vec!["object", "put", "acme", "media", "a b", "--data", "x"],
            "holds ` `",
        ),
        (
            vec!["object", "put", "acme", "Media", "k", "--data", "x"],
            "bucket name `Media` is not valid",
        ),
        (
            vec!["object", "get", "acme", "media", "missing"],
            "object `missing` does not exist in bucket `media`",
        ),
        (
            vec!["object", "list", "acme", "nope"],
            "bucket `nope` does not exist",
        ),
        (
            vec!["object", "bucket", "delete", "acme", "media"],
            "bucket `media` holds 3 objects",
        ),
    ] {
        let err = fails(s.platform.cli(&args));
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let buckets: Value = serde_json::from_str(&ok(s
        .platform
        .cli(&["object", "bucket", "list", "acme", "--json"])))
    .unwrap();
    assert_eq!(buckets.as_array().unwrap().len(), 1, "{buckets}");
    assert_eq!(buckets[0]["objects"], 3, "{buckets}");

    // Deleting the last object naming a blob removes the blob.
    ok(s.platform
        .cli(&["object", "delete", "acme", "media", "in/photo.bin"]));
    assert_eq!(blobs(), 1);
}

#[test]
fn an_acknowledged_put_survives_kill_9_with_its_event() {
    let s = Setup::new();
    ok(s.platform.cli(&["queue", "create", "acme", "failed"]));
    // Every event fails the trigger's schema: it goes to `failed` without
    // running code, whether before the kill or after the restart.
    deploy_bound(
        &s,
        "strict",
        "bucket = \"uploads\"\ndead_letter = \"failed\"\nschema = '''{\"type\": \"object\", \"required\": [\"never\"]}'''\n",
    );
    put(&s, "uploads", "kept.json", "kept");
    let Setup { tmp, platform, key } = s;
    let data = platform.data_dir.clone();
    platform.kill9();
    let s = Setup {
        tmp,
        platform: Platform::start(&data),
        key,
    };
    assert_eq!(
        ok(s.platform
            .cli(&["object", "get", "acme", "uploads", "kept.json"])),
        "kept"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let dead = loop {
        let v: Value = serde_json::from_str(&ok(s
            .platform
            .cli(&["queue", "peek", "acme", "failed", "--json"])))
        .unwrap();
        let dead = v.as_array().unwrap().clone();
        if !dead.is_empty() || Instant::now() > deadline {
            break dead;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["type"], "dev.zerofn.object.created", "{}", dead[0]);
    // Redrive sends it back to the trigger's own event queue.
    assert_eq!(
        dead[0]["source_queue"], "@bucket/uploads/strict",
        "{}",
        dead[0]
    );
    assert!(
        dead[0]["last_error"].as_str().unwrap().contains("schema"),
        "{}",
        dead[0]
    );
    // No code ran for it.
    assert!(wait_events_now(&s, "strict").is_empty());
}

/// The event lines logged so far, without waiting.
fn wait_events_now(s: &Setup, function: &str) -> Vec<String> {
    let out = ok(s.platform.cli(&["logs", "acme", function, "--json"]));
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["line"].as_str().map(str::to_owned))
        .filter(|l| l.starts_with("event "))
        .collect()
}

/// Functions read and write the buckets they are granted through
/// `objects.fn.internal` (`fetch-c` sends GET, POST and DELETE; POST writes as PUT), decided (`object.read`, `object.write`) and
/// recorded; a function's put is a `created` event like any other.
#[test]
fn functions_read_and_write_only_the_buckets_they_are_granted() {
    let s = Setup::new();
    deploy_bound(
        &s,
        "thumbs",
        "bucket = \"uploads\"\nprefix = \"incoming/\"\n",
    );
    s.deploy(
        "reader",
        "fetch-c",
        &["/reader"],
        "[permissions]\nbuckets = [\"uploads:read\"]\n",
    );
    s.deploy(
        "writer",
        "fetch-c",
        &["/writer"],
        "[permissions]\nbuckets = [\"uploads:read-write\"]\n",
    );
    put(&s, "uploads", "a.txt", "hello");
    put(&s, "private", "secret.txt", "no");

    let r = s
        .platform
        .post("/reader", b"GET http://objects.fn.internal/uploads/a.txt");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "hello");
    for (function, request, why) in [
        (
            "reader",
            "POST http://objects.fn.internal/uploads/b.txt",
            "read-only grant",
        ),
        (
            "reader",
            "DELETE http://objects.fn.internal/uploads/a.txt",
            "read-only grant",
        ),
        (
            "reader",
            "GET http://objects.fn.internal/private/secret.txt",
            "bucket not granted",
        ),
        (
            "writer",
            "GET http://objects.fn.internal/private/secret.txt",
            "bucket not granted",
        ),
    ] {
        let r = s.platform.post(&format!("/{function}"), request.as_bytes());
        assert_eq!(r.status, 403, "{why}: {request}: {}", r.text());
    }
    // The writer's put is stored, recorded with its identity, and triggers `thumbs`.
    let r = s.platform.post(
        "/writer",
        b"POST http://objects.fn.internal/uploads/incoming/new.json",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let events = wait_events(&s, "thumbs", 1);
    assert_eq!(
        field(&events[0], "subject"),
        "incoming/new.json",
        "{events:?}"
    );
    let r = s.platform.post(
        "/writer",
        b"DELETE http://objects.fn.internal/uploads/a.txt",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let err = fails(
        s.platform
            .cli(&["object", "get", "acme", "uploads", "a.txt"]),
    );
    assert!(err.contains("does not exist"), "{err}");
    // Untouched by the refused attempts.
    assert_eq!(
        ok(s.platform
            .cli(&["object", "get", "acme", "private", "secret.txt"])),
        "no"
    );

    let records = s.audit(400);
    let decided = records
        .iter()
        .find(|r| {
            r["action"] == "capability"
                && r["function"] == "writer"
                && r["detail"]["action"] == "object.write"
                && r["decision"] == "allow"
        })
        .expect("an object.write capability record");
    assert_eq!(
        decided["detail"]["policies"][0], "acme/writer/buckets/uploads:read-write",
        "{decided}"
    );
    assert!(records.iter().any(|r| r["action"] == "capability"
        && r["function"] == "reader"
        && r["detail"]["action"] == "object.write"
        && r["decision"] == "deny"));
    let deleted = records
        .iter()
        .find(|r| r["action"] == "object.delete" && r["detail"]["key"] == "a.txt")
        .expect("the delete's record");
    assert!(
        deleted["actor"].as_str().unwrap().starts_with("spiffe://"),
        "{deleted}"
    );
}
