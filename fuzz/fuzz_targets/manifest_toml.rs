//! Untrusted `zerofn.toml` text must parse or be refused, never panic; a
//! parsed manifest's routes must answer `matches` without panicking, and
//! its permissions must compile to Cedar that validates.
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
        }
    }
});
