//! Untrusted Sigstore trusted-root JSON (`trusted_root.json`, protobuf-specs
//! `TrustedRoot`): parsing, with its certificates and keys, must never
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerofn_sigstore::TrustedRoot;

fuzz_target!(|data: &[u8]| {
    let _ = TrustedRoot::from_json(data);
});
