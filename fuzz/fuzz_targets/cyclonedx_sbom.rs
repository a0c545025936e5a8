//! Untrusted CycloneDX SBOMs (JSON): parsing, package URLs included, must
//! never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerofn_vulndb::Sbom;

fuzz_target!(|data: &[u8]| {
    let _ = Sbom::from_json(data);
});
