#![forbid(unsafe_code)]
//! OpenTelemetry traces of the platform's requests: the W3C trace context
//! a caller sends (`context.rs`), the spans of an invocation (`span.rs`),
//! and their export over OTLP/HTTP with protobuf (`export.rs`, the
//! messages in `proto.rs`).
//!
//! Why not the OpenTelemetry SDK and `opentelemetry-otlp`: they would add
//! their own batch processor runtime, HTTP client choice and (for HTTPS) a
//! TLS stack choice to every build for what is here one bounded queue and
//! one background task over the `hyper` client and `rustls` the platform
//! already builds. The request is written straight from the ended spans
//! (`proto.rs` says why not through `prost`'s owned messages); the tests
//! decode every encoding with the upstream `opentelemetry-proto`
//! definitions.
//!
//! # Trust
//! Trusts nothing in a caller's `traceparent`/`tracestate`: they are read
//! strictly and an invalid one starts a new trace (never an error, never a
//! panic). Trusts the operator's endpoint to be the collector they meant:
//! it is reached directly (not through the egress gateway, whose rules are
//! for functions), over TLS verified against the webpki roots for `https`.
//!
//! # Guarantees
//! - Export never slows or fails a request: an ended span is encoded into a
//!   queue bounded in spans and bytes ([`QUEUE_SPANS`], [`QUEUE_BYTES`]),
//!   never waiting for the export task; a full queue drops the span and
//!   counts it ([`ExportStats::dropped`]).
//! - Sampling: a trace continued from a caller follows the caller's sampled
//!   flag; a new trace is recorded when the ratio picks its id or while the
//!   second's reservoir lasts ([`DEFAULT_SAMPLE_RATIO`],
//!   [`DEFAULT_SAMPLE_MIN_PER_SECOND`]). An unsampled trace still has ids
//!   (propagated, and named in audit records) but records no span.
//! - One export request at a time, each within [`EXPORT_TIMEOUT`], on one
//!   kept-alive connection. A failed batch is dropped and counted, not
//!   retried; the one exception is a batch that broke on a kept connection
//!   before any answer (the collector closed it while idle), which is sent
//!   once more on a new connection within the same timeout.
//! - With tracing off ([`Tracer::disabled`]) a span is an empty value: no
//!   clock read, id drawn or allocation.
//! - Spans carry ids, names and the attributes the gateway sets (ids,
//!   decisions, the caller's verified identity, method, path, status):
//!   never bodies, header values, tokens or secrets.
//!
//! # Shortcomings
//! Only traces; no span events or links. A trace continued from a caller
//! follows the caller's sampled flag (parent-based sampling), so a caller
//! can ask for every one of its requests to be traced: the queue bound is
//! what limits the cost of that.

mod context;
mod export;
mod proto;
mod span;

pub use context::{SpanId, TraceId, TraceParent, MAX_TRACESTATE, TRACEPARENT, TRACESTATE};
pub use export::{
    ExportStats, Exporter, OtlpConfig, Tracer, BATCH_INTERVAL, DEFAULT_SAMPLE_MIN_PER_SECOND,
    DEFAULT_SAMPLE_RATIO, EXPORT_TIMEOUT, MAX_BATCH, QUEUE_BYTES, QUEUE_SPANS,
};
pub use span::{Span, SpanContext, SpanKind, TraceHandle, Value, TRACEPARENT_LEN};

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP endpoint `{endpoint}` is not usable: {reason}")]
    Endpoint {
        endpoint: String,
        reason: &'static str,
    },
    #[error("OTLP sample ratio `{ratio}` is not between 0 and 1")]
    SampleRatio { ratio: f64 },
    #[error("cannot set up TLS for the OTLP endpoint: {0}")]
    Tls(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use std::io::{Read, Write};
    use std::sync::Arc;

    #[test]
    fn endpoints_are_checked_and_completed() {
        for (given, url) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            (
                "https://otel.example/v1/traces",
                "https://otel.example/v1/traces",
            ),
            ("http://c/base", "http://c/base/v1/traces"),
        ] {
            assert_eq!(
                OtlpConfig::new(given, 1.0).unwrap().endpoint().to_string(),
                url
            );
        }
        for (given, why) in [
            ("ftp://c/", "scheme"),
            ("/v1/traces", "no host"),
            ("http://user:pw@c/", "credentials"),
            ("http://c/?a=b", "query"),
            ("not a url", "garbage"),
        ] {
            assert!(
                OtlpConfig::new(given, 1.0).is_err(),
                "{why}: {given} accepted"
            );
        }
        for ratio in [-0.1, 1.5, f64::NAN] {
            assert!(matches!(
                OtlpConfig::new("http://c", ratio),
                Err(TelemetryError::SampleRatio { .. })
            ));
        }
    }

    #[test]
    fn a_disabled_tracer_records_nothing() {
        let tracer = Tracer::disabled();
        let mut span = tracer.server_span("GET", None);
        span.set("k", "v");
        assert!(span.context().is_none());
        assert!(!span.is_recording());
        assert!(span.child("c", SpanKind::Internal).context().is_none());
        assert!(tracer.stats().is_none());
    }

    /// A one-shot collector on a loopback port: the body of each POST.
    fn collector(answers: usize) -> (String, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..answers {
                let Ok((mut s, _)) = listener.accept() else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
                    let n = s.read(&mut chunk).unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap();
                        while buf.len() < end + 4 + len {
                            let n = s.read(&mut chunk).unwrap();
                            buf.extend_from_slice(&chunk[..n]);
                        }
                        break (head, buf[end + 4..end + 4 + len].to_vec());
                    }
                };
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .unwrap();
                tx.send((head, body)).unwrap();
            }
        });
        (url, rx)
    }

    #[tokio::test]
    async fn spans_reach_the_collector_decodable_by_the_upstream_definitions() {
        let (url, bodies) = collector(1);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let (tracer, exporter) =
            Tracer::start(OtlpConfig::new(&url, 1.0).unwrap(), shutdown).unwrap();
        let task = tokio::spawn(exporter.run());
        let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let mut root = tracer.server_span("GET /x", parent);
        root.set("http.response.status_code", 200u16);
        root.set("zerofn.caller", "public");
        let root_id = *root.context().unwrap().span_id.as_bytes();
        let mut child = root.child("zerofn.guest", SpanKind::Internal);
        child.fail("trap");
        drop(child);
        drop(root);
        // Shutdown flushes what is queued.
        stop.send(true).unwrap();
        task.await.unwrap();
        let (head, body) = bodies
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap();
        assert!(head.starts_with("POST /v1/traces HTTP/1.1"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/x-protobuf"),
            "{head}"
        );
        let req = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let rs = &req.resource_spans[0];
        let service = &rs.resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
        let spans = &rs.scope_spans[0].spans;
        assert_eq!(spans.len(), 2);
        let guest = spans.iter().find(|s| s.name == "zerofn.guest").unwrap();
        let server = spans.iter().find(|s| s.name == "GET /x").unwrap();
        assert_eq!(server.kind, 2, "SERVER");
        assert_eq!(guest.kind, 1, "INTERNAL");
        assert_eq!(
            hex::encode(&server.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            server.parent_span_id,
            hex::decode("00f067aa0ba902b7").unwrap()
        );
        assert_eq!(guest.parent_span_id, root_id.to_vec());
        assert_eq!(guest.trace_id, server.trace_id);
        assert_eq!(guest.status.as_ref().unwrap().code, 2, "ERROR");
        assert!(server.end_time_unix_nano >= server.start_time_unix_nano);
        let status = server
            .attributes
            .iter()
            .find(|a| a.key == "http.response.status_code")
            .unwrap();
        assert_eq!(
            status.value.as_ref().unwrap().value,
            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(200))
        );
        assert_eq!(tracer.stats().unwrap().exported(), 2);
    }

    /// A tracer sampling `ratio` of new traces whose queue nothing drains:
    /// its exporter (returned, to be kept alive) is never run.
    fn undrained(ratio: f64) -> (Tracer, Exporter, tokio::sync::watch::Sender<bool>) {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let (tracer, exporter) = Tracer::start(
            OtlpConfig::new("http://127.0.0.1:9", ratio).unwrap(),
            shutdown,
        )
        .unwrap();
        (tracer, exporter, stop)
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_and_an_unsampled_trace_records_nothing() {
        let (tracer, _exporter, _stop) = undrained(1.0);
        let root = tracer.server_span("r", None);
        for _ in 0..QUEUE_SPANS + 10 {
            drop(root.child("c", SpanKind::Internal));
        }
        assert_eq!(tracer.stats().unwrap().dropped(), 10);

        let (never, _exporter, _stop) = undrained(0.0);
        let span = never.server_span("r", None);
        assert!(!span.is_recording());
        let ctx = span.context().unwrap();
        assert!(!ctx.sampled);
        assert!(ctx.traceparent().ends_with("-00"));
        // The unsampled trace still has ids, printed as a valid header.
        let printed = ctx.traceparent();
        assert_eq!(
            printed,
            format!("00-{}-{}-00", ctx.trace_id.to_hex(), ctx.span_id.to_hex())
        );
        assert_eq!(printed.as_bytes(), ctx.traceparent_bytes().as_slice());
        let parsed = TraceParent::parse(&printed).unwrap();
        assert_eq!(
            (parsed.trace_id, parsed.parent_id),
            (ctx.trace_id, ctx.span_id)
        );
        assert!(!parsed.is_sampled());
        // A caller's sampled flag wins over the ratio.
        let sampled = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert!(never.server_span("r", sampled).is_recording());
    }

    #[tokio::test]
    async fn a_queue_full_of_bytes_drops_and_counts_however_few_its_spans() {
        let (tracer, _exporter, _stop) = undrained(1.0);
        let root = tracer.server_span("r", None);
        // Spans of about 64 KiB of attributes each: the byte bound is met
        // long before the span bound.
        let big = "x".repeat(64 * 1024);
        let per_span = 64 * 1024;
        let fit = QUEUE_BYTES / per_span;
        assert!(fit < QUEUE_SPANS);
        for _ in 0..fit + 10 {
            let mut span = root.child("c", SpanKind::Internal);
            span.set("k", big.clone());
        }
        let dropped = tracer.stats().unwrap().dropped();
        // Each span is a little over 64 KiB on the wire (ids, times, keys).
        assert!((10..=11).contains(&dropped), "dropped {dropped}");
        // Smaller spans still fit in what is left.
        drop(root.child("small", SpanKind::Internal));
        assert_eq!(tracer.stats().unwrap().dropped(), dropped);
    }

    #[tokio::test]
    async fn an_unreachable_collector_fails_the_batch_once() {
        // A port nothing listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let (tracer, exporter) = Tracer::start(
            OtlpConfig::new(&format!("http://127.0.0.1:{port}"), 1.0).unwrap(),
            shutdown,
        )
        .unwrap();
        let task = tokio::spawn(exporter.run());
        drop(tracer.server_span("r", None));
        stop.send(true).unwrap();
        task.await.unwrap();
        let stats = tracer.stats().unwrap();
        assert_eq!((stats.exported(), stats.failed()), (0, 1));
    }

    /// A collector that answers every request a connection brings (or only
    /// the first, closing it, with `close_each`): the span count of each
    /// body, and how many connections it accepted.
    fn lasting_collector(
        close_each: bool,
    ) -> (
        String,
        std::sync::mpsc::Receiver<usize>,
        Arc<std::sync::atomic::AtomicUsize>,
    ) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(16) {
                let Ok(mut s) = conn else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 65536];
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match s.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map(|v| v.trim().parse().unwrap())
                            .unwrap();
                        while buf.len() < end + 4 + len {
                            match s.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body: Vec<u8> = buf.drain(..end + 4 + len).skip(end + 4).collect();
                        let req = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
                        // Counted before it is answered: the exporter may
                        // finish as soon as it has the answer.
                        tx.send(req.resource_spans[0].scope_spans[0].spans.len())
                            .unwrap();
                        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .unwrap();
                        if close_each {
                            return;
                        }
                    }
                });
            }
        });
        (url, rx, accepted)
    }

    /// Queue `n` spans and stop the exporter, which sends them in batches
    /// of at most [`MAX_BATCH`].
    async fn export_and_stop(url: &str, n: usize) -> Tracer {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let (tracer, exporter) =
            Tracer::start(OtlpConfig::new(url, 1.0).unwrap(), shutdown).unwrap();
        let root = tracer.server_span("r", None);
        for _ in 1..n {
            drop(root.child("c", SpanKind::Internal));
        }
        drop(root);
        let task = tokio::spawn(exporter.run());
        stop.send(true).unwrap();
        task.await.unwrap();
        tracer
    }

    #[tokio::test]
    async fn batches_share_one_connection_and_a_closed_one_is_replaced() {
        use std::sync::atomic::Ordering;
        let spans = 2 * MAX_BATCH + 76;
        for close_each in [false, true] {
            let (url, bodies, accepted) = lasting_collector(close_each);
            let tracer = export_and_stop(&url, spans).await;
            let mut got: Vec<usize> = bodies.try_iter().collect();
            got.sort_unstable();
            assert_eq!(
                got,
                vec![76, MAX_BATCH, MAX_BATCH],
                "close_each {close_each}"
            );
            let stats = tracer.stats().unwrap();
            assert_eq!(
                (stats.exported(), stats.failed()),
                (spans as u64, 0),
                "close_each {close_each}"
            );
            let connections = accepted.load(Ordering::SeqCst);
            if close_each {
                assert_eq!(connections, 3, "a closed connection is never reused");
            } else {
                assert_eq!(connections, 1, "every batch on the kept connection");
            }
        }
    }
}
