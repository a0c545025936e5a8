//! Invocation logs and audit queries through the real binary: a guest's stdout and stderr
//! read back by invocation id (escaped on the terminal, exact in JSON), filtered, kept for
//! a trapped guest and followed until Ctrl-C; `wasi:logging` records read back with their
//! level and context, and a guest logging far too much held to the limits; `audit query` filters returning exactly the
//! expected records; bad input refused with a 400 that names it and changes nothing.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::Setup;

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `zerofn logs ARGS --json`, polled until it prints at least `n` lines: the log writer
/// stores output off the request's path, a moment after the response.
fn wait_logs(s: &Setup, args: &[&str], n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut all = vec!["logs"];
        all.extend_from_slice(args);
        all.push("--json");
        let lines = json_lines(&ok(s.platform.cli(&all)));
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn invoke(s: &Setup, path: &str) -> String {
    let r = s.platform.get(path);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "logged\n");
    r.header("x-zerofn-invocation-id")
        .expect("invocation id header")
        .to_owned()
}

/// (stream, text) of each JSON line.
fn shown(lines: &[Value]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap().to_owned(),
                l["line"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_guests_output_is_read_back_by_its_invocation_id() {
    let s = Setup::new();
    s.deploy("logger", "log-c", &["/log-c"], "");
    let first = invoke(&s, "/log-c?n=1");
    let second = invoke(&s, "/log-c?n=2");

    // Exactly the first invocation's three lines, in order, as the guest wrote them
    // (the non-UTF-8 byte replaced).
    let lines = wait_logs(&s, &["acme", "logger", "--invocation", &first], 3);
    assert_eq!(
        shown(&lines),
        [
            ("stdout".into(), "request GET /log-c?n=1".into()),
            ("stdout".into(), "second line".into()),
            (
                "stderr".into(),
                "warning for /log-c?n=1: \u{1b}[31mred\u{1b}[0m \u{fffd} end".into()
            ),
        ]
    );
    for l in &lines {
        assert_eq!(l["invocation_id"], first.as_str());
        assert_eq!(l["tenant"], "acme");
        assert_eq!(l["function"], "logger");
    }

    // On the terminal: tab-separated, the guest's escape sequence escaped.
    let text = ok(s
        .platform
        .cli(&["logs", "acme", "logger", "--invocation", &first]));
    assert!(
        !text.contains('\u{1b}'),
        "raw escape reached the terminal: {text:?}"
    );
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert_eq!(
        rows[0][1..],
        ["logger", first.as_str(), "stdout", "request GET /log-c?n=1"]
    );
    assert_eq!(
        rows[2][4],
        "warning for /log-c?n=1: \\u{1b}[31mred\\u{1b}[0m \u{fffd} end"
    );

    // The second invocation's lines are its own; the tenant-wide tail has both, in order.
    let lines = wait_logs(&s, &["acme", "--invocation", &second], 3);
    assert_eq!(lines[0]["line"], "request GET /log-c?n=2");
    let all = wait_logs(&s, &["acme"], 6);
    let ids: Vec<&str> = all
        .iter()
        .map(|l| l["invocation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [&first, &first, &first, &second, &second, &second]);

    // --grep is exact text; --since bounds by capture time.
    let grep = wait_logs(&s, &["acme", "logger", "--grep", "n=2"], 2);
    assert_eq!(
        shown(&grep)
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>(),
        ["stdout", "stderr"]
    );
    assert!(grep.iter().all(|l| l["invocation_id"] == second.as_str()));
    assert!(json_lines(&ok(s
        .platform
        .cli(&["logs", "acme", "logger", "--grep", "n=.", "--json"])))
    .is_empty());
    assert_eq!(
        wait_logs(&s, &["acme", "logger", "--since", "1h"], 6).len(),
        6
    );
    let future = ok(s
        .platform
        .cli(&["logs", "acme", "logger", "--since", "2099-01-01T00:00:00Z"]));
    assert_eq!(future, "");
    // Another tenant's name reads nothing of acme's.
    ok(s.platform.cli(&[
        "tenant",
        "create",
        "other",
        "--signing-key",
        &format!("{}.pub", s.key.display()),
    ]));
    assert_eq!(ok(s.platform.cli(&["logs", "other"])), "");

    // A guest that traps after writing: its output is kept under its invocation id.
    let r = s.platform.get("/log-c?trap=1");
    assert_eq!(r.status, 500, "{}", r.text());
    let trapped = r.header("x-zerofn-invocation-id").unwrap().to_owned();
    let lines = wait_logs(&s, &["acme", "logger", "--invocation", &trapped], 3);
    assert_eq!(lines[0]["line"], "request GET /log-c?trap=1");
}

/// (stream, level, context, text) of each JSON line; level and context `None` when null.
fn shown_with_level(lines: &[Value]) -> Vec<(String, Option<String>, Option<String>, String)> {
    lines
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap().to_owned(),
                l["level"].as_str().map(str::to_owned),
                l["context"].as_str().map(str::to_owned),
                l["line"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A guest that logs through `wasi:logging` (no permission asked for): its records are
/// read back by invocation id with level and context, in order among its stdout and
/// stderr lines; `--grep` finds them by message or context; the terminal sees them
/// escaped.
#[test]
fn wasi_logging_records_are_read_back_with_level_and_context() {
    let s = Setup::new();
    s.deploy("logging", "logging-c", &["/logging-c"], "");
    let r = s.platform.get("/logging-c?n=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "logged 6\n");
    let id = r.header("x-zerofn-invocation-id").unwrap().to_owned();

    let lines = wait_logs(&s, &["acme", "logging", "--invocation", &id], 9);
    let some = |t: &str| Some(t.to_owned());
    let log = |level: &str, context: &str, text: &str| {
        (
            "log".to_owned(),
            some(level),
            some(context),
            text.to_owned(),
        )
    };
    let plain = |stream: &str, text: &str| (stream.to_owned(), None, None, text.to_owned());
    assert_eq!(
        shown_with_level(&lines),
        [
            plain("stdout", "before logging"),
            log("trace", "logging-c", "trace message"),
            log("debug", "logging-c", "debug message"),
            log("info", "request", "GET /logging-c?n=1"),
            log(
                "warn",
                "logging-c",
                "colour \u{1b}[31mred\u{1b}[0m\nsecond line"
            ),
            log("error", "", "error without context"),
            log("critical", "logging-c", "critical message"),
            plain("stdout", "after logging"),
            plain("stderr", "stderr line"),
        ]
    );
    // The JSON carries the keys even when null, so scripts need not guess.
    assert!(lines[0].as_object().unwrap().contains_key("level"));
    assert!(lines[0].as_object().unwrap().contains_key("context"));
    for l in &lines {
        assert_eq!(l["invocation_id"], id.as_str());
        assert_eq!(l["function"], "logging");
    }

    // On the terminal: one row a record, `LEVEL [CONTEXT] MESSAGE`, the escape sequence
    // and the newline inside the message escaped.
    let text = ok(s
        .platform
        .cli(&["logs", "acme", "logging", "--invocation", &id]));
    assert!(
        !text.contains('\u{1b}'),
        "raw escape reached the terminal: {text:?}"
    );
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 9, "{text}");
    assert_eq!(rows[1][3..], ["log", "trace [logging-c] trace message"]);
    assert_eq!(
        rows[4][4],
        "warn [logging-c] colour \\u{1b}[31mred\\u{1b}[0m\\nsecond line"
    );
    assert_eq!(rows[5][4], "error error without context");

    // --grep matches a record's message, and its context.
    let grep = wait_logs(&s, &["acme", "logging", "--grep", "critical message"], 1);
    assert_eq!(
        shown_with_level(&grep),
        [log("critical", "logging-c", "critical message")]
    );
    let grep = wait_logs(&s, &["acme", "logging", "--grep", "request"], 1);
    assert_eq!(
        shown_with_level(&grep),
        [log("info", "request", "GET /logging-c?n=1")]
    );
}

/// A guest that logs one 8 MiB message, or a million records: the invocation finishes with
/// its answer, the platform keeps at most the per-record caps and the per-invocation
/// record and byte limits, and says what it did not keep.
#[test]
fn a_guest_logging_far_too_much_is_held_to_the_limits() {
    let s = Setup::new();
    s.deploy(
        "bomb",
        "log-bomb-c",
        &["/bomb/..."],
        "[limits]\nmemory_mb = 16\ntimeout_ms = 20000\n",
    );
    let r = s.platform.get("/bomb/lines");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "done 1000000\n");
    let id = r.header("x-zerofn-invocation-id").unwrap().to_owned();
    let lines = wait_logs(&s, &["acme", "bomb", "--invocation", &id], 3);
    // The records, then "done" (written after the last call), then the platform's marker.
    let (marker, rest) = lines.split_last().unwrap();
    let (done, records) = rest.split_last().unwrap();
    assert_eq!(
        (done["stream"].as_str(), done["line"].as_str()),
        (Some("stdout"), Some("done"))
    );
    assert!(
        !records.is_empty() && records.len() <= 1024,
        "{} records",
        records.len()
    );
    assert!(records
        .iter()
        .all(|l| l["stream"] == "log" && l["context"] == "bomb"));
    assert_eq!(records[0]["line"], "line 0");
    let bytes: usize = records
        .iter()
        .map(|l| l["line"].as_str().unwrap().len() + 4 + 64)
        .sum();
    assert!(bytes <= 64 * 1024, "{bytes} bytes kept");
    assert_eq!(marker["stream"], "platform");
    let dropped = 1_000_000 - records.len();
    assert!(
        marker["line"]
            .as_str()
            .unwrap()
            .contains(&format!("{dropped} call(s) not kept")),
        "{marker}"
    );

    let r = s.platform.get("/bomb/huge");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "done 1\n");
    let id = r.header("x-zerofn-invocation-id").unwrap().to_owned();
    let lines = wait_logs(&s, &["acme", "bomb", "--invocation", &id], 3);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[1]["line"], "done");
    let message = lines[0]["line"].as_str().unwrap();
    let context = lines[0]["context"].as_str().unwrap();
    assert_eq!(lines[0]["level"], "critical");
    assert!(
        message.len() <= 8 * 1024 && message.ends_with('…'),
        "{}",
        message.len()
    );
    assert!(
        context.len() <= 256 && context.ends_with('…'),
        "{}",
        context.len()
    );
    assert!(
        lines[2]["line"]
            .as_str()
            .unwrap()
            .contains("1 record(s) cut"),
        "{}",
        lines[2]
    );
    // The platform still serves.
    assert_eq!(s.platform.get("/bomb/huge").status, 200);
}

#[test]
fn bad_log_arguments_are_refused_naming_the_problem() {
    let s = Setup::new();
    for (args, problem) in [
        (
            vec!["logs", "acme", "--since", "soon"],
            "`since` `soon` is neither a duration such as 90s, 30m, 24h or 7d nor an RFC 3339 time",
        ),
        (
            vec!["logs", "acme", "Not_A_Name"],
            "function name `Not_A_Name` is invalid",
        ),
    ] {
        let err = fails(s.platform.cli(&args));
        assert!(err.contains(problem), "{args:?}: {err}");
        assert!(err.contains("HTTP 400"), "{args:?}: {err}");
    }
    // A tenant that does not exist (or cannot: not a DNS label) is a 404, not an empty log.
    for tenant in ["nosuch", "No_Such"] {
        let err = fails(s.platform.cli(&["logs", tenant]));
        assert!(
            err.contains("HTTP 404") && err.contains(&format!("tenant `{tenant}`")),
            "{tenant}: {err}"
        );
    }
    // An invocation id that is not one is refused before any request.
    let out = s.platform.cli(&["logs", "acme", "--invocation", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`nope` is not an invocation id"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn follow_prints_new_lines_until_ctrl_c() {
    let s = Setup::new();
    s.deploy("logger", "log-c", &["/log-c"], "");
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&s.platform.data_dir)
        .args(["logs", "acme", "logger", "--follow"])
        .env_remove("ZEROFN_API_URL")
        .env_remove("ZEROFN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("`{needle}` never printed: {e}"),
            }
        }
    };
    // Lines of invocations made while it follows arrive, each once.
    let first = invoke(&s, "/log-c?follow=1");
    let line = wait_for("request GET /log-c?follow=1");
    assert!(line.contains(&first), "{line}");
    invoke(&s, "/log-c?follow=2");
    wait_for("request GET /log-c?follow=2");

    // Ctrl-C ends it cleanly.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "zerofn logs --follow ignored Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit}");
    reader.join().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        !rest.iter().any(|l| l.contains("follow=1")),
        "a line printed twice: {rest:?}"
    );
}

fn query(s: &Setup, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "query"];
    all.extend_from_slice(args);
    all.push("--json");
    json_lines(&ok(s.platform.cli(&all)))
}

type Keep = Box<dyn Fn(&Value) -> bool>;

fn keep(f: impl Fn(&Value) -> bool + 'static) -> Keep {
    Box::new(f)
}

fn seqs(records: &[Value]) -> Vec<i64> {
    records.iter().map(|r| r["seq"].as_i64().unwrap()).collect()
}

#[test]
fn audit_query_returns_exactly_the_matching_records() {
    let s = Setup::new();
    s.deploy("hello", "hello-c", &["/hello"], "");
    s.deploy(
        "closed",
        "hello-c",
        &["/closed"],
        "[invoke]\nfrom = [\"nobody\"]\n",
    );
    let ok_ids: Vec<String> = (0..2)
        .map(|_| {
            let r = s.platform.get("/hello");
            assert_eq!(r.status, 200);
            r.header("x-zerofn-invocation-id").unwrap().to_owned()
        })
        .collect();
    let r = s.platform.get("/closed");
    assert_eq!(r.status, 403, "{}", r.text());
    let denied_id = r.header("x-zerofn-invocation-id").unwrap().to_owned();

    // The one refused invocation of `closed`, and nothing else.
    let denied = query(&s, &["--decision", "deny", "--function", "closed"]);
    assert_eq!(denied.len(), 1, "{denied:?}");
    let d = &denied[0];
    assert_eq!(d["action"], "invoke");
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["status"], 403);
    assert_eq!(d["tenant"], "acme");
    assert_eq!(d["function"], "closed");
    assert_eq!(d["invocation_id"], denied_id.as_str());

    // The two invocations of `hello`, newest first.
    let invoked = query(&s, &["--function", "hello", "--action", "invoke"]);
    let ids: Vec<&str> = invoked
        .iter()
        .map(|r| r["invocation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [ok_ids[1].as_str(), ok_ids[0].as_str()]);
    assert!(invoked
        .iter()
        .all(|r| r["decision"] == "allow" && r["status"] == 200));

    // The same answers from the whole log, filtered here: the query adds and drops nothing.
    let everything = query(&s, &["--limit", "100000"]);
    assert!(seqs(&everything).windows(2).all(|w| w[0] > w[1]));
    let expect = |pred: &dyn Fn(&Value) -> bool| -> Vec<i64> {
        seqs(
            &everything
                .iter()
                .filter(|r| pred(r))
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    for (args, want) in [
        (
            vec!["--decision", "deny"],
            keep(|r| r["decision"] == "deny"),
        ),
        (
            vec!["--tenant", "acme", "--status", "403"],
            keep(|r| r["tenant"] == "acme" && r["status"] == 403),
        ),
        (
            vec!["--action", "deploy", "--decision", "allow"],
            keep(|r| r["action"] == "deploy" && r["decision"] == "allow"),
        ),
        (
            vec!["--caller", "public", "--action", "invoke"],
            keep(|r| r["action"] == "invoke" && r["detail"]["caller"]["kind"] == "gateway"),
        ),
        (
            vec!["--caller", "operator"],
            keep(|r| r["actor"] == "operator"),
        ),
        (vec!["--since", "1h"], keep(|_| true)),
        (vec!["--until", "2000-01-01T00:00:00Z"], keep(|_| false)),
        (vec!["--function", "nosuch"], keep(|_| false)),
    ] {
        let got = seqs(&query(&s, &args));
        assert_eq!(got, expect(&*want), "{args:?}");
        assert!(!got.is_empty() || args.contains(&"nosuch") || args.contains(&"--until"));
    }
    // Paging: --limit and --before continue where a page stopped.
    let newest = query(
        &s,
        &["--function", "hello", "--action", "invoke", "--limit", "1"],
    );
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0]["invocation_id"], ok_ids[1].as_str());
    let before = newest[0]["seq"].to_string();
    let older = query(
        &s,
        &[
            "--function",
            "hello",
            "--action",
            "invoke",
            "--before",
            &before,
        ],
    );
    assert_eq!(older.len(), 1);
    assert_eq!(older[0]["invocation_id"], ok_ids[0].as_str());
    // Text output: one escaped line a record.
    let text = ok(s.platform.cli(&[
        "audit",
        "query",
        "--function",
        "closed",
        "--decision",
        "deny",
    ]));
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("\tacme/closed\tdeny\t403\t"), "{text}");
}

#[test]
fn bad_audit_queries_are_refused_naming_the_problem_and_change_nothing() {
    let s = Setup::new();
    s.deploy("hello", "hello-c", &["/hello"], "");
    assert_eq!(s.platform.get("/hello").status, 200);
    let before = query(&s, &["--tenant", "acme"]);

    // The CLI refuses a decision it does not know before asking.
    let out = s.platform.cli(&["audit", "query", "--decision", "maybe"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("invalid value 'maybe' for '--decision"),
        "{err}"
    );
    assert!(
        err.contains("[possible values: allow, deny, error]"),
        "{err}"
    );

    // The API refuses every bad parameter with a 400 naming it.
    let token = std::fs::read_to_string(s.platform.data_dir.join("operator-token")).unwrap();
    let auth = format!("Bearer {}", token.trim());
    for (query, problem) in [
        (
            "decision=maybe",
            "`maybe` is not a decision; use allow, deny or error",
        ),
        ("action=invoked", "`invoked` is not an audit action"),
        (
            "status=42",
            "`status` must be an HTTP status from 100 to 599, not `42`",
        ),
        (
            "since=yesterday",
            "`since` `yesterday` is neither a duration",
        ),
        (
            "until=2026-02-30T00:00:00Z",
            "`until` `2026-02-30T00:00:00Z` is neither",
        ),
        (
            "limit=0",
            "`limit` must be a number from 1 to 1000, not `0`",
        ),
        ("before=x", "`before` must be a record or line number"),
        ("colour=red", "unknown query parameter `colour`"),
        ("since=1h&until=2h", "is after `until`"),
    ] {
        let r = http(
            &s.platform.api,
            "GET",
            &format!("/v1/audit/query?{query}"),
            &[("Authorization", &auth)],
            b"",
        );
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["kind"], "bad_request", "{query}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(problem), "{query}: {message}");
    }
    // Through the CLI the server's message is the one line of the error.
    let err = fails(s.platform.cli(&["audit", "query", "--action", "invoked"]));
    assert!(err.contains("`invoked` is not an audit action"), "{err}");
    let err = fails(s.platform.cli(&["audit", "query", "--since", "yesterday"]));
    assert!(err.contains("`since` `yesterday` is neither"), "{err}");

    // Nothing about the tenant changed: the same records, and still serving.
    assert_eq!(query(&s, &["--tenant", "acme"]), before);
    assert_eq!(s.platform.get("/hello").status, 200);
    // Each refusal was audited as one (`api.authorize` deny, naming the status).
    let refused = query(&s, &["--action", "api.authorize", "--status", "400"]);
    assert_eq!(refused.len(), 11, "{refused:?}");
}

/// `zerofn up --log-max-kib-per-function 1`: a function keeps about 1 KiB of lines, the
/// oldest going first, while its newest output stays readable.
#[test]
fn each_function_keeps_its_byte_budget_of_lines() {
    let s = Setup::with_args(&["--log-max-kib-per-function", "1"]);
    s.deploy("logger", "log-c", &["/log-c"], "");
    // About 75 bytes of lines an invocation: twenty of them are half again the budget.
    let ids: Vec<String> = (0..20)
        .map(|i| invoke(&s, &format!("/log-c?n={i:02}")))
        .collect();
    let newest = wait_logs(&s, &["acme", "logger", "--invocation", &ids[19]], 3);
    assert_eq!(newest[0]["line"], "request GET /log-c?n=19");
    let kept = wait_logs(&s, &["acme", "logger"], 1);
    let bytes: usize = kept.iter().map(|l| l["line"].as_str().unwrap().len()).sum();
    assert!(bytes <= 1024, "{bytes} bytes kept");
    assert!(bytes > 512, "only {bytes} bytes kept");
    // The oldest invocations' lines are gone, the newest kept, in order.
    let kept_ids: Vec<&str> = kept
        .iter()
        .map(|l| l["invocation_id"].as_str().unwrap())
        .collect();
    assert!(!kept_ids.contains(&ids[0].as_str()), "{kept_ids:?}");
    assert_eq!(kept_ids.last(), Some(&ids[19].as_str()));
    assert!(ok(s
        .platform
        .cli(&["logs", "acme", "logger", "--invocation", &ids[0]]))
    .is_empty());
}
