//! Untrusted `zerofn.toml` text must parse or be refused, never panic; a
//! parsed manifest's routes must answer `matches` without panicking, and
//! its permissions must compile to Cedar that validates, and its signed form must equal
//! itself and survive a round trip through its canonical bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerofn_admission::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = Manifest::from_toml(text) {
            for r in &m.routes {
                let _ = r.matches(text);
                let _ = r.matches(r.as_str());
            }
            if let Err(e) = zerofn_policy::permissions::compile_checked(
                m.tenant.as_str(),
                m.name.as_str(),
                &m.permissions,
            ) {
                panic!("permissions of a parsed manifest do not compile: {e}");
            }
            let signed = m.signed_content();
            assert_eq!(
                zerofn_admission::first_difference(signed.as_value(), signed.as_value()),
                None
            );
            let reread: serde_json::Value = serde_json::from_slice(&signed.canonical_bytes())
                .expect("canonical bytes are JSON");
            assert_eq!(&reread, signed.as_value());
        }
    }
});
