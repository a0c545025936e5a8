//! Untrusted OSV records (JSON, <https://ossf.github.io/osv-schema/>):
//! parsing, ranges and CVSS vectors included, must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerofn_vulndb::Advisory;

fuzz_target!(|data: &[u8]| {
    let _ = Advisory::from_json(data);
});
