//! Cost of request validation per request: a typical order body (about 1 KiB) against a
//! schema with a pattern, a local `$ref` and nested arrays; valid and invalid; and the
//! head (query and headers) of a request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use zerofn_validation::{CompiledSchema, RequestPart, RequestSchemas};

const ORDER: &str = r##"{
  "type": "object",
  "required": ["id", "customer", "items"],
  "additionalProperties": false,
  "properties": {
    "id": {"type": "string", "pattern": "^ord_[a-z0-9]{4,32}$"},
    "customer": {"type": "object", "required": ["email"],
      "properties": {"email": {"type": "string", "maxLength": 254}, "name": {"type": "string"}}},
    "items": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"$ref": "#/$defs/item"}},
    "note": {"type": "string", "maxLength": 500}
  },
  "$defs": {"item": {"type": "object", "required": ["sku", "qty"], "additionalProperties": false,
    "properties": {"sku": {"type": "string", "pattern": "^[A-Z0-9-]{3,20}$"},
      "qty": {"type": "integer", "minimum": 1, "maximum": 1000},
      "price_cents": {"type": "integer", "minimum": 0}}}}
}"##;

fn body(bad: bool) -> Vec<u8> {
    let items: Vec<serde_json::Value> = (0..20)
        .map(|i| serde_json::json!({"sku": format!("SKU-{i:04}"), "qty": if bad && i == 19 { 0 } else { i + 1 }, "price_cents": 1999}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "id": "ord_a1b2c3d4", "customer": {"email": "ada@example.com", "name": "Ada"},
        "items": items, "note": "leave at the door"
    }))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let schemas = RequestSchemas::compile([
        (RequestPart::Body, ORDER),
        (RequestPart::Query, r#"{"type":"object","properties":{"dry_run":{"enum":["true","false"]}},"additionalProperties":false}"#),
        (RequestPart::Headers, r#"{"type":"object","required":["content-type"],"properties":{"content-type":{"const":"application/json"}}}"#),
    ])
    .unwrap();
    let good = body(false);
    let bad = body(true);
    let mut headers = http::HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert("user-agent", "bench/1".parse().unwrap());
    headers.insert("accept", "*/*".parse().unwrap());
    let mut g = c.benchmark_group("validation");
    g.bench_function(format!("body_valid_{}B", good.len()), |b| {
        b.iter(|| schemas.validate_body(std::hint::black_box(&good)).unwrap())
    });
    g.bench_function(format!("body_invalid_{}B", bad.len()), |b| {
        b.iter(|| {
            schemas
                .validate_body(std::hint::black_box(&bad))
                .unwrap_err()
        })
    });
    g.bench_function("parse_only", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(std::hint::black_box(&good)).unwrap())
    });
    g.bench_function("head_query_and_headers", |b| {
        b.iter(|| {
            schemas
                .validate_head("/orders", Some("dry_run=true"), &headers)
                .unwrap()
        })
    });
    g.bench_function("compile_order_schema", |b| {
        b.iter(|| CompiledSchema::compile(std::hint::black_box(ORDER)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
