//! The OTLP request the exporter sends: an `ExportTraceServiceRequest`
//! (opentelemetry-proto v1.x, `collector/trace/v1/trace_service.proto`,
//! `trace/v1/trace.proto`, `common/v1/common.proto`,
//! `resource/v1/resource.proto`) written in the Protocol Buffers wire
//! format: each span when it ends ([`encode_span_field`], into the export
//! queue), the request around a batch of them on the export task
//! ([`encode_request`]).
//!
//! Why not `prost`'s derived messages, as before: they own every field, so
//! each span was first copied into about twenty-five allocations (ids as
//! vectors, names and every attribute key and value as strings), and
//! `encode` then computed each nested message's length once per level of
//! nesting above it. That was two thirds of what a sampled request cost the
//! platform (BENCHMARKS.md, "Tracing on and off"). Here each span's length
//! is computed once and its text is copied once, into a buffer the exporter
//! reuses. The wire format this needs is small and fixed (Protocol Buffers
//! "Encoding": base-128 varints, a key `field << 3 | wire type`,
//! length-delimited, little-endian fixed64/fixed32); the tests decode
//! every request with the upstream `opentelemetry-proto` definitions
//! (`prost`), so a wrong field number, wire type or length cannot pass
//! unnoticed.
//!
//! Fields the platform never sets (events, links, dropped counts, schema
//! URLs) are left out, and so are empty strings and zero numbers, as
//! proto3 writers do: a reader takes a missing field as its default.

use bytes::BufMut;

use crate::span::{FinishedSpan, Value};

/// Wire types.
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

/// `Status.StatusCode.STATUS_CODE_ERROR`.
const STATUS_ERROR: u64 = 2;
/// `SpanFlags`: the W3C sampled flag (only sampled spans are recorded).
const FLAGS_SAMPLED: u32 = 1;

/// The resource every span is exported with (`service.name`, ...).
#[derive(Debug, Clone)]
pub(crate) struct Resource {
    pub(crate) attributes: Vec<(String, Value)>,
}

/// The instrumentation scope's name.
const SCOPE_NAME: &str = "zerofn";

/// Append one `ScopeSpans.spans` field holding `span` (its key, length
/// and fields) to `out`: how a span is queued when it ends. Returns the
/// number of bytes written.
pub(crate) fn encode_span_field(span: &FinishedSpan, out: &mut Vec<u8>) -> usize {
    let before = out.len();
    let len = span_len(span);
    out.reserve(field_len(len));
    // ScopeSpans.spans = 2
    put_len_key(out, 2, len);
    put_span(out, span);
    out.len().saturating_sub(before)
}

/// Append one `ExportTraceServiceRequest` to `out` whose spans are
/// `span_fields`: `ScopeSpans.spans` fields back to back, as
/// [`encode_span_field`] wrote them.
pub(crate) fn encode_request(resource: &Resource, span_fields: &[u8], out: &mut impl BufMut) {
    let resource_len: usize = resource
        .attributes
        .iter()
        .map(|(k, v)| field_len(kv_len(k, v)))
        .sum();
    let scope_len = field_len(SCOPE_NAME.len());
    let scope_spans_len = field_len(scope_len) + span_fields.len();
    let resource_spans_len = field_len(resource_len) + field_len(scope_spans_len);

    // ExportTraceServiceRequest.resource_spans = 1
    put_len_key(out, 1, resource_spans_len);
    // ResourceSpans.resource = 1
    put_len_key(out, 1, resource_len);
    for (k, v) in &resource.attributes {
        // Resource.attributes = 1
        put_kv(out, 1, k, v);
    }
    // ResourceSpans.scope_spans = 2
    put_len_key(out, 2, scope_spans_len);
    // ScopeSpans.scope = 1; InstrumentationScope.name = 1
    put_len_key(out, 1, scope_len);
    put_bytes(out, 1, SCOPE_NAME.as_bytes());
    out.put_slice(span_fields);
}

/// Length of a `Span`'s fields.
fn span_len(s: &FinishedSpan) -> usize {
    let state = s.state.as_deref().map_or(0, |t| nonempty_len(t.len()));
    let parent = s.parent.map_or(0, |p| field_len(p.as_bytes().len()));
    let attrs: usize = s.attrs.iter().map(|(k, v)| field_len(kv_len(k, v))).sum();
    let status = s
        .error
        .as_deref()
        .map_or(0, |message| field_len(status_len(message)));
    field_len(s.trace_id.as_bytes().len())
        + field_len(s.span_id.as_bytes().len())
        + state
        + parent
        + nonempty_len(s.name.len())
        + varint_field_len(s.kind as u64)
        + 2 * (1 + 8)
        + attrs
        + status
        + (2 + 4)
}

fn put_span(out: &mut impl BufMut, s: &FinishedSpan) {
    put_bytes(out, 1, s.trace_id.as_bytes());
    put_bytes(out, 2, s.span_id.as_bytes());
    if let Some(state) = s.state.as_deref().filter(|t| !t.is_empty()) {
        put_bytes(out, 3, state.as_bytes());
    }
    if let Some(parent) = &s.parent {
        put_bytes(out, 4, parent.as_bytes());
    }
    if !s.name.is_empty() {
        put_bytes(out, 5, s.name.as_bytes());
    }
    put_varint_field(out, 6, s.kind as u64);
    put_key(out, 7, I64);
    out.put_u64_le(s.start);
    put_key(out, 8, I64);
    out.put_u64_le(s.end);
    for (k, v) in &s.attrs {
        put_kv(out, 9, k, v);
    }
    if let Some(message) = s.error.as_deref() {
        // Span.status = 15: Status.message = 2, Status.code = 3
        put_len_key(out, 15, status_len(message));
        if !message.is_empty() {
            put_bytes(out, 2, message.as_bytes());
        }
        put_varint_field(out, 3, STATUS_ERROR);
    }
    // Span.flags = 16 (fixed32)
    put_key(out, 16, I32);
    out.put_u32_le(FLAGS_SAMPLED);
}

fn status_len(message: &str) -> usize {
    nonempty_len(message.len()) + varint_field_len(STATUS_ERROR)
}

/// Length of a `KeyValue`'s fields: `key = 1`, `value = 2` (an `AnyValue`).
fn kv_len(key: &str, value: &Value) -> usize {
    nonempty_len(key.len()) + field_len(any_len(value))
}

/// Length of an `AnyValue`'s one field: `string_value = 1`,
/// `bool_value = 2`, `int_value = 3`. The oneof's field is written even
/// when it holds the default (an empty string, false, 0): that is how a
/// reader tells which one is set.
fn any_len(value: &Value) -> usize {
    match value {
        Value::Str(s) => field_len(s.len()),
        Value::Bool(_) => 1 + 1,
        Value::Int(i) => 1 + varint_len(int64(*i)),
    }
}

fn put_kv(out: &mut impl BufMut, field: u32, key: &str, value: &Value) {
    put_len_key(out, field, kv_len(key, value));
    if !key.is_empty() {
        put_bytes(out, 1, key.as_bytes());
    }
    put_len_key(out, 2, any_len(value));
    match value {
        Value::Str(s) => put_bytes(out, 1, s.as_bytes()),
        Value::Bool(b) => {
            put_key(out, 2, VARINT);
            out.put_u8(u8::from(*b));
        }
        Value::Int(i) => {
            put_key(out, 3, VARINT);
            put_varint(out, int64(*i));
        }
    }
}

/// An `int64` on the wire: its two's complement as an unsigned varint
/// (ten bytes for a negative number).
fn int64(i: i64) -> u64 {
    u64::from_ne_bytes(i.to_ne_bytes())
}

/// Every field number here is below 16, so every key is one byte.
fn put_key(out: &mut impl BufMut, field: u32, wire_type: u8) {
    put_varint(out, u64::from(field << 3 | u32::from(wire_type)));
}

fn put_len_key(out: &mut impl BufMut, field: u32, len: usize) {
    put_key(out, field, LEN);
    put_varint(out, len as u64);
}

fn put_bytes(out: &mut impl BufMut, field: u32, bytes: &[u8]) {
    put_len_key(out, field, bytes.len());
    out.put_slice(bytes);
}

fn put_varint_field(out: &mut impl BufMut, field: u32, v: u64) {
    if v != 0 {
        put_key(out, field, VARINT);
        put_varint(out, v);
    }
}

fn put_varint(out: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn varint_len(v: u64) -> usize {
    // One byte per started group of seven bits; zero takes one byte.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// A length-delimited field of `len` bytes (one-byte key).
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// A string or bytes field, left out when empty.
fn nonempty_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        field_len(len)
    }
}

/// A varint field, left out when zero.
fn varint_field_len(v: u64) -> usize {
    if v == 0 {
        0
    } else {
        1 + varint_len(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{SpanId, TraceParent};
    use crate::span::SpanKind;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    use prost::Message;
    use std::borrow::Cow;
    use std::sync::Arc;

    #[test]
    fn varints_match_the_reference_encoder() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            1 << 56,
            u64::MAX,
        ] {
            let mut ours = Vec::new();
            put_varint(&mut ours, v);
            let mut theirs = Vec::new();
            prost::encoding::encode_varint(v, &mut theirs);
            assert_eq!(ours, theirs, "{v}");
            assert_eq!(varint_len(v), theirs.len(), "{v}");
        }
    }

    fn span(name: &'static str, attrs: Vec<(&'static str, Value)>) -> FinishedSpan {
        let parent =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        FinishedSpan {
            trace_id: parent.trace_id,
            span_id: SpanId::random(),
            parent: Some(parent.parent_id),
            state: Some(Arc::from("vendor=a,other=b")),
            name: Cow::Borrowed(name),
            kind: SpanKind::Server,
            start: 1_700_000_000_000_000_000,
            end: 1_700_000_000_000_123_456,
            attrs,
            error: None,
        }
    }

    #[test]
    fn requests_decode_with_the_upstream_definitions_field_for_field() {
        let long = "x".repeat(300);
        let mut failed = span(
            "zerofn.guest",
            vec![
                ("k.str", Value::Str(Cow::Owned(long.clone()))),
                ("k.empty", Value::Str(Cow::Borrowed(""))),
                ("k.true", Value::Bool(true)),
                ("k.false", Value::Bool(false)),
                ("k.zero", Value::Int(0)),
                ("k.neg", Value::Int(-5)),
                ("k.big", Value::Int(i64::MAX)),
            ],
        );
        failed.kind = SpanKind::Internal;
        failed.error = Some("trap".to_owned());
        let mut root = span(
            "GET /x",
            vec![("http.response.status_code", Value::Int(200))],
        );
        root.parent = None;
        root.state = None;
        let mut unnamed = span("", Vec::new());
        unnamed.error = Some(String::new());
        let resource = Resource {
            attributes: vec![
                (
                    "service.name".to_owned(),
                    Value::Str(Cow::Borrowed("zerofn")),
                ),
                (
                    "service.version".to_owned(),
                    Value::Str(Cow::Borrowed("1.2")),
                ),
            ],
        };
        let spans = vec![failed, root, unnamed];
        let fields = fields_of(&spans);
        let mut out = Vec::new();
        encode_request(&resource, &fields, &mut out);
        let req = ExportTraceServiceRequest::decode(out.as_slice()).unwrap();
        // Lengths computed ahead are the lengths written: re-encoding the
        // decoded message with prost gives the same bytes.
        assert_eq!(req.encode_to_vec(), out);

        let rs = &req.resource_spans[0];
        let res = rs.resource.as_ref().unwrap();
        assert_eq!(res.attributes.len(), 2);
        assert_eq!(res.attributes[1].key, "service.version");
        let scope = &rs.scope_spans[0];
        assert_eq!(scope.scope.as_ref().unwrap().name, "zerofn");
        assert_eq!(scope.spans.len(), 3);
        let guest = &scope.spans[0];
        assert_eq!(guest.name, "zerofn.guest");
        assert_eq!(guest.kind, 1);
        assert_eq!(guest.trace_id, spans[0].trace_id.as_bytes());
        assert_eq!(guest.span_id, spans[0].span_id.as_bytes());
        assert_eq!(guest.parent_span_id, spans[0].parent.unwrap().as_bytes());
        assert_eq!(guest.trace_state, "vendor=a,other=b");
        assert_eq!(guest.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(guest.end_time_unix_nano, 1_700_000_000_000_123_456);
        assert_eq!(guest.flags, 1);
        let status = guest.status.as_ref().unwrap();
        assert_eq!((status.code, status.message.as_str()), (2, "trap"));
        let values: Vec<(&str, Option<&V>)> = guest
            .attributes
            .iter()
            .map(|a| {
                (
                    a.key.as_str(),
                    a.value.as_ref().and_then(|v| v.value.as_ref()),
                )
            })
            .collect();
        assert_eq!(
            values,
            vec![
                ("k.str", Some(&V::StringValue(long))),
                ("k.empty", Some(&V::StringValue(String::new()))),
                ("k.true", Some(&V::BoolValue(true))),
                ("k.false", Some(&V::BoolValue(false))),
                ("k.zero", Some(&V::IntValue(0))),
                ("k.neg", Some(&V::IntValue(-5))),
                ("k.big", Some(&V::IntValue(i64::MAX))),
            ]
        );
        let server = &scope.spans[1];
        assert_eq!((server.kind, server.parent_span_id.len()), (2, 0));
        assert!(server.trace_state.is_empty() && server.status.is_none());
        let unnamed = &scope.spans[2];
        assert_eq!(unnamed.name, "");
        assert_eq!(unnamed.status.as_ref().unwrap().code, 2);
    }

    /// The spans' fields back to back, checking each call's count of bytes.
    fn fields_of(spans: &[FinishedSpan]) -> Vec<u8> {
        let mut fields = Vec::new();
        for s in spans {
            let before = fields.len();
            let n = encode_span_field(s, &mut fields);
            assert_eq!(n, fields.len() - before);
        }
        fields
    }

    #[test]
    fn an_empty_batch_and_a_batch_split_anywhere_between_spans_decode() {
        let resource = Resource {
            attributes: Vec::new(),
        };
        let mut out = Vec::new();
        encode_request(&resource, &[], &mut out);
        let req = ExportTraceServiceRequest::decode(out.as_slice()).unwrap();
        assert!(req.resource_spans[0].scope_spans[0].spans.is_empty());
        // Queued fields are cut between spans into requests: each part is a
        // request of exactly its spans.
        let spans: Vec<FinishedSpan> = (0..5)
            .map(|i| {
                span(
                    ["a", "b", "c", "d", "e"][i],
                    vec![("i", Value::Int(i as i64))],
                )
            })
            .collect();
        let mut fields = Vec::new();
        let mut ends = Vec::new();
        for s in &spans {
            encode_span_field(s, &mut fields);
            ends.push(fields.len());
        }
        for cut in 0..=spans.len() {
            let at = if cut == 0 { 0 } else { ends[cut - 1] };
            for (part, names) in [
                (&fields[..at], &["a", "b", "c", "d", "e"][..cut]),
                (&fields[at..], &["a", "b", "c", "d", "e"][cut..]),
            ] {
                let mut out = Vec::new();
                encode_request(&resource, part, &mut out);
                let req = ExportTraceServiceRequest::decode(out.as_slice()).unwrap();
                assert_eq!(req.encode_to_vec(), out);
                let got: Vec<&str> = req.resource_spans[0].scope_spans[0]
                    .spans
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect();
                assert_eq!(got, names);
            }
        }
    }
}
