//! Untrusted public and private key PEM text (tenant keys arrive over the
//! control API) must parse or be refused, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerofn_admission::{Digest, KeyId, PublicKey, SigningKey};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PublicKey::from_pem(text);
        let _ = SigningKey::from_pem(text);
        let _ = Digest::parse(text);
        let _ = KeyId::parse(text);
    }
});
