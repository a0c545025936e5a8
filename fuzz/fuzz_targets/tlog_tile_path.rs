//! Untrusted tlog-tiles paths (`GET /v1/audit/tlog/tile/...`): parsing must refuse or
//! accept, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = zerofn_audit::tiles::TilePath::parse(text);
    }
});
