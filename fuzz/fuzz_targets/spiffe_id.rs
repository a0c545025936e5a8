//! Untrusted SPIFFE IDs: parsing must never panic, and an ID that parses
//! prints as text that parses to the same ID.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerofn_identity::SpiffeId;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = SpiffeId::parse(text) {
        let again = SpiffeId::parse(&id.to_string()).expect("a printed SPIFFE ID parses");
        assert_eq!(again, id);
    }
});
