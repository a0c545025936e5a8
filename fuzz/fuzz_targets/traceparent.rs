//! Untrusted W3C `traceparent` and `tracestate` headers: reading them must
//! never panic, and a value that is accepted prints back as the same ids.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerofn_telemetry::TraceParent;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(p) = TraceParent::parse(text) {
            let printed = format!("{}-{}", p.trace_id, p.parent_id);
            assert_eq!(Some(printed.as_str()), text.get(3..52));
        }
    }
    let mut headers = http::HeaderMap::new();
    for part in data.split(|b| *b == b'\n').take(4) {
        if let Ok(v) = http::HeaderValue::from_bytes(part) {
            let name = if part.first().is_some_and(|b| b % 2 == 0) { "traceparent" } else { "tracestate" };
            headers.append(name, v);
        }
    }
    let _ = TraceParent::from_headers(&headers);
});
