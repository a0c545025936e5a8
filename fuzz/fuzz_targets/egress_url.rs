//! Untrusted outbound URLs (a guest's `wasi:http` request): the egress parser must refuse
//! or read them, never panic, and a URL it reads prints as one it reads the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerofn_egress::Target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(target) = Target::parse(text) {
        let again = Target::parse(&target.to_string()).expect("a printed target parses");
        assert_eq!(again.to_string(), target.to_string());
        let _ = target.authority();
    }
});
