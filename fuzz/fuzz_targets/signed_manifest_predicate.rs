//! An untrusted signed-manifest predicate (the `manifest` object of a
//! `https://zerofn.dev/attestations/manifest/v1` statement, from whoever signed it) compared
//! with a submitted manifest's signed form must give an answer, never panic, and name a
//! field only when the two differ.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerofn_admission::{first_difference, Manifest};

fuzz_target!(|data: &[u8]| {
    let Ok(signed) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(m) = Manifest::from_toml(
        "name = \"hello\"\ntenant = \"acme\"\ncomponent = \"hello.wasm\"\nroutes = [\"/hello\"]\n[config]\nk = \"v\"\n",
    ) else {
        return;
    };
    let submitted = m.signed_content();
    let difference = first_difference(&signed, submitted.as_value());
    assert_eq!(difference.is_none(), &signed == submitted.as_value());
    if let Some(d) = difference {
        let _ = d.to_string();
    }
});
