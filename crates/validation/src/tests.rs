#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;

const ORDER: &str = r##"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["id", "items"],
  "additionalProperties": false,
  "properties": {
    "id": {"type": "string", "pattern": "^ord_[a-z0-9]{4,32}$"},
    "items": {"type": "array", "minItems": 1, "maxItems": 100,
      "items": {"$ref": "#/$defs/item"}},
    "note": {"type": "string", "maxLength": 200}
  },
  "$defs": {"item": {"type": "object", "required": ["sku", "qty"],
    "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}}}
}"##;

fn order() -> CompiledSchema {
    CompiledSchema::compile(ORDER).unwrap()
}

fn body_schemas() -> RequestSchemas {
    RequestSchemas::compile([(RequestPart::Body, ORDER)]).unwrap()
}

#[test]
fn a_valid_body_passes_and_an_invalid_one_names_path_and_keyword() {
    let s = body_schemas();
    s.validate_body(br#"{"id":"ord_abcd","items":[{"sku":"a","qty":2}]}"#)
        .unwrap();
    let e = s
        .validate_body(br#"{"id":"ord_abcd","items":[{"sku":"a","qty":0}]}"#)
        .unwrap_err();
    let v = &e.violations()[0];
    assert_eq!(v.instance_path, "/items/0/qty");
    assert_eq!(v.keyword, "minimum");
    assert!(v.schema_path.ends_with("/minimum"), "{}", v.schema_path);
    let json = e.error_json();
    assert_eq!(json["kind"], "invalid_request");
    assert_eq!(json["instance_path"], "/items/0/qty");
    assert_eq!(json["keyword"], "minimum");
    assert_eq!(json["part"], "body");
    assert!(e.audit_reason().starts_with("schema: body /items/0/qty: "));
}

#[test]
fn values_are_never_echoed() {
    // A secret-looking value that fails `pattern`, `maxLength` and `const`: the error
    // names where, never what.
    let secret = "sk_live_SUPERSECRETVALUE";
    let s = RequestSchemas::compile([(
        RequestPart::Headers,
        r#"{"type":"object","properties":{"x-api-token":{"type":"string","pattern":"^[0-9]+$","maxLength":3}}}"#,
    )])
    .unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-api-token", secret.parse().unwrap());
    let e = s.validate_head("/", None, &headers).unwrap_err();
    let text = format!("{} {} {:?}", e.error_json(), e.audit_reason(), e);
    assert!(!text.contains("SUPERSECRET"), "{text}");
    assert_eq!(e.violations()[0].instance_path, "/x-api-token");
    let body = format!(r#"{{"id":"{secret}","items":[]}}"#);
    let e = body_schemas().validate_body(body.as_bytes()).unwrap_err();
    let text = format!("{} {}", e.error_json(), e.audit_reason());
    assert!(!text.contains("SUPERSECRET"), "{text}");
}

#[test]
fn errors_are_capped() {
    let s = RequestSchemas::compile([(
        RequestPart::Body,
        r#"{"type":"array","items":{"type":"integer"}}"#,
    )])
    .unwrap();
    let body = serde_json::to_vec(&vec!["x"; 10_000]).unwrap();
    let e = s.validate_body(&body).unwrap_err();
    assert_eq!(e.violations().len(), MAX_REPORTED_ERRORS);
    assert_eq!(
        e.error_json()["errors"].as_array().unwrap().len(),
        MAX_REPORTED_ERRORS
    );
}

#[test]
fn hostile_bodies_are_refused_bounded() {
    let s = body_schemas();
    // Deeper than serde_json's recursion limit: not JSON, no stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let e = s.validate_body(deep.as_bytes()).unwrap_err();
    assert_eq!(
        e.reason,
        InvalidReason::Malformed {
            detail: "is not JSON"
        }
    );
    // Larger than what is validated: refused before parsing.
    let big = vec![b' '; MAX_VALIDATED_BODY + 1];
    assert!(matches!(
        s.validate_body(&big).unwrap_err().reason,
        InvalidReason::TooLarge { .. }
    ));
    // Not JSON at all.
    assert!(matches!(
        s.validate_body(b"id=1").unwrap_err().reason,
        InvalidReason::Malformed { .. }
    ));
    // A huge number is an f64 (or out of range: not JSON), never a bignum.
    let huge = format!(
        r#"{{"id":"ord_abcd","items":[{{"sku":"a","qty":1{}}}]}}"#,
        "0".repeat(400)
    );
    assert!(s.validate_body(huge.as_bytes()).is_err());
    // No body at all, with a body schema: not JSON.
    assert!(s.validate_body(b"").is_err());
}

#[test]
fn pathological_patterns_run_in_linear_time_engines() {
    // Catastrophic for a backtracking engine; the `regex` engine has no backtracking.
    let s = RequestSchemas::compile([(
        RequestPart::Body,
        r#"{"type":"string","pattern":"^(a+)+$"}"#,
    )])
    .unwrap();
    let body = serde_json::to_vec(&format!("{}!", "a".repeat(100_000))).unwrap();
    let e = s.validate_body(&body).unwrap_err();
    assert_eq!(e.violations()[0].keyword, "pattern");
    // Backreferences and look-around need backtracking: refused at compile.
    let e = CompiledSchema::compile(r#"{"pattern":"^(a)\\1$"}"#).unwrap_err();
    assert!(matches!(e, SchemaError::Invalid { .. }), "{e:?}");
    // A pattern whose program is too large is refused at compile.
    let e = CompiledSchema::compile(r#"{"pattern":"(\\w{1000}){1000}"}"#).unwrap_err();
    assert!(matches!(e, SchemaError::Invalid { .. }), "{e:?}");
}

#[test]
fn hostile_schemas_are_refused_at_compile() {
    for (text, why) in [
        (r#"{"$ref":"https://evil.example/s.json"}"#, "remote ref"),
        (
            r#"{"$ref":"http://169.254.169.254/latest"}"#,
            "metadata ref",
        ),
        (r#"{"$ref":"file:///etc/passwd"}"#, "file ref"),
        (r#"{"$ref":"other.json#/x"}"#, "relative ref"),
        (
            r#"{"properties":{"a":{"$dynamicRef":"https://x/y"}}}"#,
            "nested dynamic ref",
        ),
    ] {
        assert!(
            matches!(
                CompiledSchema::compile(text),
                Err(SchemaError::ExternalReference { .. })
            ),
            "{why}"
        );
    }
    let deep = format!("{}true{}", r#"{"items":"#.repeat(40), "}".repeat(40));
    assert_eq!(
        CompiledSchema::compile(&deep).unwrap_err(),
        SchemaError::TooDeep {
            limit: MAX_SCHEMA_DEPTH
        }
    );
    let big = format!(r#"{{"description":"{}"}}"#, "x".repeat(MAX_SCHEMA_BYTES));
    assert!(matches!(
        CompiledSchema::compile(&big),
        Err(SchemaError::TooLarge { .. })
    ));
    assert!(matches!(
        CompiledSchema::compile("{"),
        Err(SchemaError::NotJson { .. })
    ));
    assert!(matches!(
        CompiledSchema::compile(r#"{"$schema":"http://json-schema.org/draft-04/schema#"}"#),
        Err(SchemaError::UnsupportedDraft { .. })
    ));
    // Not a valid schema: `type` must be a string or an array of them.
    let e = CompiledSchema::compile(r#"{"type":17}"#).unwrap_err();
    assert!(matches!(e, SchemaError::Invalid { .. }), "{e:?}");
    // A reference to a missing local definition is an error at compile, not at request.
    let e = CompiledSchema::compile(r##"{"$ref":"#/$defs/missing"}"##).unwrap_err();
    assert!(matches!(e, SchemaError::Invalid { .. }), "{e:?}");
    // A recursive local reference compiles (and is bounded by the instance's depth).
    let tree = CompiledSchema::compile(
        r##"{"type":"object","properties":{"children":{"type":"array","items":{"$ref":"#"}}}}"##,
    )
    .unwrap();
    let mut v = serde_json::json!({});
    for _ in 0..60 {
        v = serde_json::json!({"children": [v]});
    }
    tree.validate(RequestPart::Body, &v).unwrap();
}

#[test]
fn query_path_and_headers_have_documented_shapes() {
    assert_eq!(
        query_instance("a=1&b=x+y&a=2&c&d=%E2%9C%93").unwrap(),
        serde_json::json!({"a": ["1", "2"], "b": "x y", "c": "", "d": "✓"})
    );
    assert!(query_instance("a=%FF").is_err());
    let s = RequestSchemas::compile([
        (RequestPart::Path, r#"{"type":"string","pattern":"^/orders/[0-9]+$"}"#),
        (
            RequestPart::Query,
            r#"{"type":"object","properties":{"limit":{"type":"string","pattern":"^[0-9]{1,3}$"}},"additionalProperties":false}"#,
        ),
        (
            RequestPart::Headers,
            r#"{"type":"object","required":["content-type"]}"#,
        ),
    ])
    .unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("Content-Type", "application/json".parse().unwrap());
    s.validate_head("/orders/17", Some("limit=10"), &headers)
        .unwrap();
    let e = s
        .validate_head("/orders/x", Some("limit=10"), &headers)
        .unwrap_err();
    assert_eq!(
        (e.part, e.violations()[0].keyword.as_str()),
        (RequestPart::Path, "pattern")
    );
    let e = s
        .validate_head("/orders/1", Some("limit=10&debug=1"), &headers)
        .unwrap_err();
    assert_eq!(e.part, RequestPart::Query);
    assert_eq!(e.violations()[0].keyword, "additionalProperties");
    let e = s
        .validate_head("/orders/1", None, &http::HeaderMap::new())
        .unwrap_err();
    assert_eq!(
        (e.part, e.violations()[0].keyword.as_str()),
        (RequestPart::Headers, "required")
    );
}

#[test]
fn events_validate_like_bodies() {
    let schema = order();
    validate_event(
        &schema,
        br#"{"id":"ord_abcd","items":[{"sku":"a","qty":1}]}"#,
    )
    .unwrap();
    let e = validate_event(&schema, br#"{"id":"ord_abcd","items":[]}"#).unwrap_err();
    assert_eq!(e.part, RequestPart::Event);
    assert_eq!(e.violations()[0].keyword, "minItems");
}

#[test]
fn the_digest_ignores_formatting_and_key_order() {
    let a = CompiledSchema::compile(r#"{"type":"object","minProperties":1}"#).unwrap();
    let b = CompiledSchema::compile("{ \"minProperties\": 1,\n \"type\": \"object\" }").unwrap();
    let c = CompiledSchema::compile(r#"{"type":"object","minProperties":2}"#).unwrap();
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a, b);
    assert_ne!(a.digest(), c.digest());
    assert!(a.digest().starts_with("sha256:") && a.digest().len() == 71);
}

proptest::proptest! {
    #[test]
    fn compile_and_validate_never_panic(schema in ".{0,200}", body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
        if let Ok(s) = CompiledSchema::compile(&schema) {
            let _ = validate_event(&s, &body);
        }
        let _ = body_schemas().validate_body(&body);
    }
}
