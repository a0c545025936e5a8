//! Untrusted Sigstore bundle JSON: parsing, then verification against a
//! fixed key, must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerofn_admission::{verify_bundle, Bundle, Digest, SigningKey};

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = Bundle::from_json(data) {
        let key = SigningKey::generate().public_key();
        let _ = verify_bundle(&Digest::of(b"artifact"), &bundle, &[key]);
    }
});
