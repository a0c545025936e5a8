//! OpenTelemetry traces through the real binary: `zerofn up --otlp-endpoint` pointed at
//! an OTLP/HTTP receiver inside the test (a loopback listener that decodes each
//! `ExportTraceServiceRequest` with the upstream `opentelemetry-proto` definitions, not
//! the platform's), a caller's W3C `traceparent` continued through the gateway, the
//! guest and a function-to-function call, the trace id in the audit records, and the
//! `traceparent` the platform sets on an outbound request.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use crate::harness::*;
use crate::Setup;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
/// Another caller's trace.
const API_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

/// Read one HTTP/1.1 request (head and a `content-length` body) from `s`.
fn read_request(s: &mut std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    let l = l.to_ascii_lowercase();
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some((head, buf[end + 4..end + 4 + len].to_vec()));
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The test's OTLP/HTTP receiver: every span of every export it is sent, and the
/// request heads. Stops accepting when dropped.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn receiver() -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let spans = Arc::new(Mutex::new(Vec::new()));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (got, seen, stopped) = (spans.clone(), heads.clone(), stop.clone());
    std::thread::spawn(move || {
        while !stopped.load(Ordering::SeqCst) {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let _ = s.set_nonblocking(false);
            let Some((head, body)) = read_request(&mut s) else {
                continue;
            };
            let decoded = ExportTraceServiceRequest::decode(body.as_slice())
                .expect("the export decodes as an ExportTraceServiceRequest");
            for rs in decoded.resource_spans {
                for ss in rs.scope_spans {
                    got.lock().unwrap().extend(ss.spans);
                }
            }
            seen.lock().unwrap().push(head);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    Receiver {
        url,
        spans,
        heads,
        stop,
    }
}

impl Receiver {
    /// The spans received once `done` holds of them (30 s at most).
    fn wait(&self, what: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not received; got {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn attr(span: &Span, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.clone())
        .and_then(|v| v.value)
}

fn text(span: &Span, key: &str) -> String {
    match attr(span, key) {
        Some(Value::StringValue(s)) => s,
        other => panic!("`{key}` of `{}` is {other:?}", span.name),
    }
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_id)
        .collect()
}

#[test]
fn a_callers_trace_runs_through_gateway_guest_and_call_and_into_the_audit_records() {
    let otlp = receiver();
    // Every new trace recorded (the default samples 5% and one a second):
    // the malformed-traceparent request below must start a recorded trace.
    let s = Setup::with_args(&[
        "--otlp-endpoint",
        &otlp.url,
        "--otlp-sample-ratio",
        "1",
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    s.deploy(
        "hello",
        "hello-c",
        &["/hello"],
        "[invoke]\nfrom = [\"caller\"]\n",
    );
    s.deploy(
        "caller",
        "call-c",
        &["/caller/..."],
        "[permissions]\ncall = [\"hello\"]\n",
    );
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let r = http(
        &s.platform.gateway,
        "GET",
        "/caller/acme/hello/",
        &[("traceparent", &traceparent), ("tracestate", "vendor=1")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let invocation = r.header("x-zerofn-invocation-id").unwrap().to_owned();

    let spans = otlp.wait("the caller's and the callee's spans", |spans| {
        ["invoke acme/caller", "invoke acme/hello"]
            .iter()
            .all(|n| spans.iter().any(|s| s.name == *n))
            && named(spans, "zerofn.guest").len() == 2
            && !named(spans, "zerofn.call").is_empty()
    });
    let in_trace: Vec<Span> = spans
        .iter()
        .filter(|s| hex::encode(&s.trace_id) == TRACE)
        .cloned()
        .collect();
    let spans = &in_trace[..];
    let root = named(spans, "invoke acme/caller")[0];
    // The gateway's span is the caller's span's child, in the caller's trace.
    assert_eq!(root.kind, 2, "SERVER");
    assert_eq!(hex::encode(&root.parent_span_id), PARENT);
    assert_eq!(root.trace_state, "vendor=1");
    assert_eq!(text(root, "faas.invocation_id"), invocation);
    assert_eq!(text(root, "faas.name"), "caller");
    assert_eq!(text(root, "faas.trigger"), "http");
    assert_eq!(text(root, "http.request.method"), "GET");
    assert_eq!(text(root, "url.path"), "/caller/acme/hello/");
    assert_eq!(
        attr(root, "http.response.status_code"),
        Some(Value::IntValue(200))
    );
    assert_eq!(
        text(root, "zerofn.spiffe_id"),
        "spiffe://zerofn.local/tenant/acme/fn/caller"
    );
    assert_eq!(text(root, "zerofn.caller"), "Zerofn::Caller::\"public\"");
    assert_eq!(text(root, "zerofn.decision"), "allow");
    assert!(!text(root, "zerofn.policy_ids").is_empty());

    // Under the gateway's span: authentication, the decision, instantiation, the guest.
    let under_root: Vec<&str> = children(spans, root)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    for name in [
        "zerofn.authenticate",
        "zerofn.decide",
        "zerofn.instantiate",
        "zerofn.guest",
    ] {
        assert!(
            under_root.contains(&name),
            "{name} not under the root: {under_root:?}"
        );
    }
    let decide = children(spans, root)
        .into_iter()
        .find(|s| s.name == "zerofn.decide")
        .unwrap();
    assert_eq!(text(decide, "zerofn.decision"), "allow");
    assert_eq!(
        text(decide, "zerofn.policy_ids"),
        text(root, "zerofn.policy_ids")
    );
    let guest = children(spans, root)
        .into_iter()
        .find(|s| s.name == "zerofn.guest")
        .unwrap();
    // The call is the guest's CLIENT span; the callee's gateway span is its child.
    let call = children(spans, guest)
        .into_iter()
        .find(|s| s.name == "zerofn.call")
        .expect("the call under the caller's guest span");
    assert_eq!(call.kind, 3, "CLIENT");
    assert_eq!(text(call, "zerofn.callee"), "acme/hello");
    let callee = named(spans, "invoke acme/hello")[0];
    assert_eq!(callee.parent_span_id, call.span_id);
    assert_eq!(callee.kind, 2, "SERVER");
    assert_eq!(
        text(callee, "zerofn.caller"),
        "Zerofn::Function::\"acme/caller\""
    );
    assert_eq!(
        text(callee, "zerofn.caller.spiffe_id"),
        "spiffe://zerofn.local/tenant/acme/fn/caller"
    );
    assert_eq!(
        text(callee, "zerofn.spiffe_id"),
        "spiffe://zerofn.local/tenant/acme/fn/hello"
    );
    assert_eq!(text(callee, "zerofn.decision"), "allow");
    assert!(children(spans, callee)
        .iter()
        .any(|s| s.name == "zerofn.guest"));
    for span in spans {
        assert!(
            span.end_time_unix_nano >= span.start_time_unix_nano,
            "{}",
            span.name
        );
    }

    // The audit records of both invocations name the trace.
    let records = s.audit(50);
    let caller_record = records
        .iter()
        .find(|r| r["action"] == "invoke" && r["invocation_id"] == invocation.as_str())
        .expect("the caller's invoke record");
    assert_eq!(
        caller_record["detail"]["trace_id"], TRACE,
        "{caller_record}"
    );
    let callee_invocation = text(callee, "faas.invocation_id");
    let callee_record = records
        .iter()
        .find(|r| r["action"] == "invoke" && r["invocation_id"] == callee_invocation.as_str())
        .expect("the callee's invoke record");
    assert_eq!(
        callee_record["detail"]["trace_id"], TRACE,
        "{callee_record}"
    );

    // A malformed traceparent starts a new trace: no error, no parent.
    let before = otlp.spans.lock().unwrap().len();
    let upper = format!("00-{}-{PARENT}-01", TRACE.to_uppercase());
    let r = http(
        &s.platform.gateway,
        "GET",
        "/caller/acme/hello/",
        &[("traceparent", &upper)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let fresh_invocation = r.header("x-zerofn-invocation-id").unwrap().to_owned();
    let spans = otlp.wait("the spans of the request with a bad traceparent", |spans| {
        spans[before.min(spans.len())..].iter().any(|s| {
            s.name == "invoke acme/caller"
                && attr(s, "faas.invocation_id")
                    == Some(Value::StringValue(fresh_invocation.clone()))
        })
    });
    let fresh = spans
        .iter()
        .find(|s| {
            attr(s, "faas.invocation_id") == Some(Value::StringValue(fresh_invocation.clone()))
                && s.name == "invoke acme/caller"
        })
        .unwrap();
    assert!(
        fresh.parent_span_id.is_empty(),
        "a new trace's root has no parent"
    );
    assert_ne!(hex::encode(&fresh.trace_id), TRACE);
    let record = s
        .audit(50)
        .into_iter()
        .find(|r| r["action"] == "invoke" && r["invocation_id"] == fresh_invocation.as_str())
        .unwrap();
    assert_eq!(record["detail"]["trace_id"], hex::encode(&fresh.trace_id));

    // Every export was a protobuf POST to /v1/traces.
    for head in otlp.heads.lock().unwrap().iter() {
        assert!(head.starts_with("POST /v1/traces HTTP/1.1"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/x-protobuf"),
            "{head}"
        );
    }
    // The export's own counts are on /metrics (counted once the receiver answered).
    let metrics_addr = s.platform.metrics.clone().expect("metrics listening line");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = http(&metrics_addr, "GET", "/metrics", &[], b"").text();
        let exported = text
            .lines()
            .find_map(|l| l.strip_prefix("zerofn_trace_spans_total{outcome=\"exported\"} "))
            .map(|v| v.trim().parse::<f64>().unwrap());
        if exported.is_some_and(|n| n > 0.0) {
            assert!(
                text.contains("zerofn_trace_spans_total{outcome=\"dropped\"} 0"),
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no exported spans counted: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The upstream a function fetches from: a loopback listener answering `up` to up
/// to four requests; it keeps each request head.
fn upstream() -> (u16, Arc<Mutex<Vec<String>>>) {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = upstream.local_addr().unwrap().port();
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = heads.clone();
    std::thread::spawn(move || {
        for conn in upstream.incoming().take(4) {
            let Ok(mut s) = conn else { continue };
            if let Some((head, _)) = read_request(&mut s) {
                seen.lock().unwrap().push(head);
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nup");
        }
    });
    (port, heads)
}

/// `fetch-c` deployed as `fetch`, allowed to reach the upstream on `port`.
fn deploy_fetch(s: &Setup, port: u16) {
    s.deploy(
        "fetch",
        "fetch-c",
        &["/fetch"],
        &format!(
            "[egress]\nallow = [{{ url = \"http://127.0.0.1:{port}\", allow_ranges = [\"127.0.0.0/8\"] }}]\n"
        ),
    );
}

#[test]
fn an_outbound_request_carries_the_platforms_traceparent_in_the_callers_trace() {
    let otlp = receiver();
    let (port, heads) = upstream();
    let s = Setup::with_args(&["--otlp-endpoint", &format!("{}/v1/traces", otlp.url)]);
    deploy_fetch(&s, port);
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let r = http(
        &s.platform.gateway,
        "POST",
        "/fetch",
        &[("traceparent", &traceparent)],
        format!("GET http://127.0.0.1:{port}/x").as_bytes(),
    );
    assert_eq!((r.status, r.text().as_str()), (200, "up"));
    let head = heads
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("the upstream saw the request");
    let sent: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let outbound = sent
        .get("traceparent")
        .expect("a traceparent on the outbound request");
    let parts: Vec<&str> = outbound.split('-').collect();
    assert_eq!(parts.len(), 4, "{outbound}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE, "01"),
        "{outbound}"
    );
    // Its parent id is the platform's CLIENT span of the request, under the guest's span.
    let span_id = parts[2].to_owned();
    let spans = otlp.wait("the outbound request's span", |spans| {
        spans.iter().any(|s| hex::encode(&s.span_id) == span_id)
    });
    let client = spans
        .iter()
        .find(|s| hex::encode(&s.span_id) == span_id)
        .unwrap();
    assert_eq!(client.kind, 3, "CLIENT");
    assert_eq!(client.name, "GET");
    assert_eq!(text(client, "server.address"), "127.0.0.1");
    assert_eq!(
        attr(client, "server.port"),
        Some(Value::IntValue(i64::from(port)))
    );
    assert_eq!(
        attr(client, "http.response.status_code"),
        Some(Value::IntValue(200))
    );
    assert_eq!(hex::encode(&client.trace_id), TRACE);
    let guest = spans
        .iter()
        .find(|s| s.span_id == client.parent_span_id)
        .expect("the client span's parent");
    assert_eq!(guest.name, "zerofn.guest");
}

/// A platform exporting to `otlp` that samples no new trace: only a sampled
/// parent (a caller's, or one an event carries) records spans.
fn unsampled_platform(otlp: &Receiver) -> Setup {
    Setup::with_args(&[
        "--otlp-endpoint",
        &otlp.url,
        "--otlp-sample-ratio",
        "0",
        "--otlp-sample-min-per-second",
        "0",
    ])
}

/// The value of `name=` in an `event-c` line (values hold no spaces).
fn event_field<'a>(line: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=");
    let start = line
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {line}"))
        + key.len();
    let rest = &line[start..];
    &rest[..rest.find(' ').unwrap_or(rest.len())]
}

#[test]
fn a_queue_delivery_continues_the_trace_of_the_messages_producer() {
    let otlp = receiver();
    // No new trace is sampled: only the producer's sampled flag records the delivery.
    let s = unsampled_platform(&otlp);
    ok(s.platform.cli(&["queue", "create", "acme", "orders"]));
    s.deploy(
        "worker",
        "event-c",
        &["/worker"],
        "[[triggers]]\nqueue = \"orders\"\n",
    );
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    for (id, tp) in [
        ("traced-1", traceparent.as_str()),
        ("bad-1", "00-NOT-A-TRACE-01"),
    ] {
        let out = ok(s.platform.cli(&[
            "queue",
            "publish",
            "acme",
            "orders",
            "--data",
            "hi",
            "--id",
            id,
            "--traceparent",
            tp,
        ]));
        assert!(
            out.contains(&format!("published {id}")),
            "an invalid context is no error: {out}"
        );
    }
    let spans = otlp.wait("the delivery's span", |spans| {
        spans.iter().any(|s| s.name == "invoke acme/worker")
    });
    let delivery = named(&spans, "invoke acme/worker");
    assert_eq!(
        delivery.len(),
        1,
        "only the traced message's delivery is recorded"
    );
    let delivery = delivery[0];
    assert_eq!(hex::encode(&delivery.trace_id), TRACE);
    assert_eq!(hex::encode(&delivery.parent_span_id), PARENT);
    assert_eq!(text(delivery, "faas.trigger"), "pubsub");
    let guest = children(&spans, delivery)
        .into_iter()
        .find(|s| s.name == "zerofn.guest")
        .expect("the guest span under the delivery");

    // The function gets the event's origin as the CloudEvents attribute and
    // its own span as the HTTP `traceparent`, both in the producer's trace.
    let deadline = Instant::now() + Duration::from_secs(60);
    let lines = loop {
        let out = ok(s.platform.cli(&["logs", "acme", "worker", "--json"]));
        let lines: Vec<String> = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["line"].as_str().map(str::to_owned))
            .filter(|l| l.starts_with("event "))
            .collect();
        if lines.len() >= 2 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let traced = lines
        .iter()
        .find(|l| event_field(l, "id") == "traced-1")
        .expect("the traced message was delivered");
    assert_eq!(event_field(traced, "traceparent"), traceparent);
    assert_eq!(
        event_field(traced, "http-traceparent"),
        format!("00-{TRACE}-{}-01", hex::encode(&guest.span_id))
    );
    let bad = lines
        .iter()
        .find(|l| event_field(l, "id") == "bad-1")
        .expect("the message with an invalid traceparent was delivered");
    assert_eq!(
        event_field(bad, "traceparent"),
        "-",
        "an invalid value is not passed on"
    );
    let fresh = event_field(bad, "http-traceparent");
    assert!(
        fresh.starts_with("00-") && !fresh.contains(TRACE) && fresh.ends_with("-00"),
        "a new, unsampled trace: {fresh}"
    );
}

/// Issue 18: an object event and a key-value change continue the trace of the
/// request whose write made them. A traced request to a function that writes an
/// object (`fetch-c` through `objects.fn.internal`) and one to a function that
/// writes a key (`kv-c`): each bound function's delivery span is in the caller's
/// trace, the child of the writer's `zerofn.object` / `zerofn.kv` span, and the
/// function gets that span as `ce-traceparent`. A control API put with a
/// `traceparent` continues the caller's span; one without is outside any trace:
/// its event carries none, and with new traces not sampled its delivery records
/// no span.
#[test]
fn object_and_kv_change_deliveries_continue_the_trace_of_the_write() {
    let otlp = receiver();
    let s = unsampled_platform(&otlp);
    s.deploy(
        "objwriter",
        "fetch-c",
        &["/objwriter"],
        "[permissions]\nbuckets = [\"uploads:read-write\"]\n",
    );
    s.deploy(
        "kvwriter",
        "kv-c",
        &["/kvwriter/..."],
        "[permissions]\nkv = [\"orders:read-write\"]\n",
    );
    s.deploy(
        "on-object",
        "event-c",
        &["/on-object"],
        "[[triggers]]\nbucket = \"uploads\"\n",
    );
    s.deploy(
        "on-kv",
        "event-c",
        &["/on-kv"],
        "[[triggers]]\nkv = \"orders\"\n",
    );
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let r = http(
        &s.platform.gateway,
        "POST",
        "/objwriter",
        &[("traceparent", &traceparent)],
        b"POST http://objects.fn.internal/uploads/traced.txt",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = http(
        &s.platform.gateway,
        "PUT",
        "/kvwriter/orders/cart",
        &[("traceparent", &traceparent)],
        b"one",
    );
    assert_eq!(r.status, 204, "{}", r.text());
    ok(s.platform.cli(&[
        "object",
        "put",
        "acme",
        "uploads",
        "plain.txt",
        "--data",
        "x",
    ]));
    // A control API put in a caller's trace: its event continues the caller's span.
    let api_parent = format!("00-{API_TRACE}-{PARENT}-01");
    let token = std::fs::read_to_string(s.platform.data_dir.join("operator-token")).unwrap();
    let auth = format!("Bearer {}", token.trim());
    let r = http(
        &s.platform.api,
        "PUT",
        "/v1/tenants/acme/buckets/uploads/objects/api.txt",
        &[("Authorization", &auth), ("traceparent", &api_parent)],
        br#"{"data":"eA=="}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let in_trace = |spans: &[Span], name: &str, trace: &str| -> Vec<Span> {
        spans
            .iter()
            .filter(|s| s.name == name && hex::encode(&s.trace_id) == trace)
            .cloned()
            .collect()
    };
    let spans = otlp.wait("the deliveries' spans", |spans| {
        ["invoke acme/on-object", "invoke acme/on-kv"]
            .iter()
            .all(|n| !in_trace(spans, n, TRACE).is_empty())
            && !in_trace(spans, "invoke acme/on-object", API_TRACE).is_empty()
    });
    let api_delivery = in_trace(&spans, "invoke acme/on-object", API_TRACE);
    assert_eq!(api_delivery.len(), 1);
    assert_eq!(hex::encode(&api_delivery[0].parent_span_id), PARENT);
    assert_eq!(
        named(&spans, "invoke acme/on-object").len(),
        2,
        "the untraced put's delivery (a new trace, not sampled) is not recorded"
    );
    for (delivery, writer, writer_span) in [
        (
            "invoke acme/on-object",
            "invoke acme/objwriter",
            "zerofn.object",
        ),
        ("invoke acme/on-kv", "invoke acme/kvwriter", "zerofn.kv"),
    ] {
        let deliveries = in_trace(&spans, delivery, TRACE);
        assert_eq!(
            deliveries.len(),
            1,
            "only the traced write's delivery is recorded: {delivery}"
        );
        let delivery_span = &deliveries[0];
        assert_eq!(hex::encode(&delivery_span.trace_id), TRACE, "{delivery}");
        let parent = spans
            .iter()
            .find(|s| s.span_id == delivery_span.parent_span_id)
            .unwrap_or_else(|| panic!("the parent of {delivery}"));
        assert_eq!(parent.name, writer_span, "{delivery}");
        assert_eq!(hex::encode(&parent.trace_id), TRACE);
        // The writer's span is the platform's, under the writer's guest span,
        // under the caller's span.
        let guest = spans
            .iter()
            .find(|s| s.span_id == parent.parent_span_id)
            .expect("the writer span's parent");
        assert_eq!(guest.name, "zerofn.guest");
        let server = spans
            .iter()
            .find(|s| s.span_id == guest.parent_span_id)
            .expect("the guest span's parent");
        assert_eq!(server.name, writer);
        assert_eq!(hex::encode(&server.parent_span_id), PARENT);
        assert_eq!(text(delivery_span, "faas.trigger"), "pubsub");
    }

    // The functions get the writer's span as the CloudEvents attribute; the
    // untraced put's event carries none.
    let wait_lines = |function: &str, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = ok(s.platform.cli(&["logs", "acme", function, "--json"]));
            let lines: Vec<String> = out
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["line"].as_str().map(str::to_owned))
                .filter(|l| l.starts_with("event "))
                .collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let writer_span = |name: &str| {
        let span = named(&spans, name)[0];
        format!("00-{TRACE}-{}-01", hex::encode(&span.span_id))
    };
    let objects = wait_lines("on-object", 3);
    let api = objects
        .iter()
        .find(|l| event_field(l, "subject") == "api.txt")
        .expect("the control API put's event was delivered");
    assert_eq!(event_field(api, "traceparent"), api_parent);
    let traced = objects
        .iter()
        .find(|l| event_field(l, "subject") == "traced.txt")
        .expect("the traced put's event was delivered");
    assert_eq!(
        event_field(traced, "traceparent"),
        writer_span("zerofn.object")
    );
    let plain = objects
        .iter()
        .find(|l| event_field(l, "subject") == "plain.txt")
        .expect("the untraced put's event was delivered");
    assert_eq!(event_field(plain, "traceparent"), "-", "{plain}");
    let fresh = event_field(plain, "http-traceparent");
    assert!(
        fresh.starts_with("00-") && !fresh.contains(TRACE) && fresh.ends_with("-00"),
        "a new, unsampled trace: {fresh}"
    );
    let changes = wait_lines("on-kv", 1);
    assert_eq!(
        event_field(&changes[0], "traceparent"),
        writer_span("zerofn.kv"),
        "{changes:?}"
    );
}

/// The trace id an invocation's audit record names when nothing is sampled: the
/// caller's trace (known outside the platform, sampled or not), and a trace the
/// platform began that the invocation passed on (a function call: the caller's and
/// the callee's records meet on it; an outbound request: the record names what the
/// upstream was sent); not a trace the platform began, did not record and never
/// passed on (a random number nothing else holds).
#[test]
fn an_unrecorded_trace_is_named_in_the_records_where_it_can_be_met() {
    let otlp = receiver();
    let s = unsampled_platform(&otlp);
    s.deploy(
        "hello",
        "hello-c",
        &["/hello"],
        "[invoke]\nfrom = [\"caller\", \"public\"]\n",
    );
    s.deploy(
        "caller",
        "call-c",
        &["/caller/..."],
        "[permissions]\ncall = [\"hello\"]\n",
    );
    let record_of = |invocation: &str| {
        s.audit(50)
            .into_iter()
            .find(|r| r["action"] == "invoke" && r["invocation_id"] == invocation)
            .unwrap_or_else(|| panic!("no invoke record of {invocation}"))
    };
    let invoke = |path: &str, headers: &[(&str, &str)]| {
        let r = http(&s.platform.gateway, "GET", path, headers, b"");
        assert_eq!(r.status, 200, "{}", r.text());
        r.header("x-zerofn-invocation-id").unwrap().to_owned()
    };

    // Begun here, not recorded, no host call: no trace id.
    let alone = record_of(&invoke("/hello", &[]));
    assert!(alone["detail"].get("trace_id").is_none(), "{alone}");

    // A caller's trace, not sampled: named (the caller's systems know it).
    let unsampled = format!("00-{TRACE}-{PARENT}-00");
    let continued = record_of(&invoke("/hello", &[("traceparent", &unsampled)]));
    assert_eq!(continued["detail"]["trace_id"], TRACE, "{continued}");

    // Begun here and passed on to a called function: both records name it.
    let caller = record_of(&invoke("/caller/acme/hello/", &[]));
    let trace = caller["detail"]["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the caller passed its trace on: {caller}"))
        .to_owned();
    assert_eq!(trace.len(), 32, "{caller}");
    assert_ne!(trace, TRACE);
    let callee = s.audit(50).into_iter().find(|r| {
        r["action"] == "invoke"
            && r["function"] == "hello"
            && r["detail"]["depth"] == 1
            && r["detail"]["trace_id"] == trace.as_str()
    });
    assert!(
        callee.is_some(),
        "the callee's record names the caller's trace"
    );

    // Begun here and passed on to an outbound request (the egress gateway
    // decides it by the manifest's rules): the record names the trace the
    // upstream was sent.
    let (port, heads) = upstream();
    deploy_fetch(&s, port);
    let r = http(
        &s.platform.gateway,
        "POST",
        "/fetch",
        &[],
        format!("GET http://127.0.0.1:{port}/x").as_bytes(),
    );
    assert_eq!((r.status, r.text().as_str()), (200, "up"));
    let fetched = record_of(r.header("x-zerofn-invocation-id").unwrap());
    let head = heads
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("the upstream saw the request");
    let sent = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("traceparent")
                .then(|| v.trim().to_owned())
        })
        .expect("a traceparent on the outbound request");
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!((parts.len(), parts[3]), (4, "00"), "unsampled: {sent}");
    assert_eq!(fetched["detail"]["trace_id"], parts[1], "{fetched}");

    // Nothing was recorded: no span reached the collector.
    assert!(otlp.spans.lock().unwrap().is_empty());
}
