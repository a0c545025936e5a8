//! Untrusted bearer tokens (`Authorization: Bearer`) and JWKS files: the strict JOSE
//! parser and the JWKS reader must refuse or accept, never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = zerofn_authn::Jwks::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = zerofn_authn::unverified_issuer(text);
    }
});
