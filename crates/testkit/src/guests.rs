//! Where the built guest components are, for tests and benchmarks:
//! `ZEROFN_GUESTS_DIR`, else
//! `$CARGO_TARGET_DIR/guests`, else `target/guests` of the workspace.
//! `scripts/test` builds them there with `tools/guest-build`.

use std::path::PathBuf;

/// The directory holding `<name>.wasm` for every example guest.
pub fn guests_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ZEROFN_GUESTS_DIR") {
        return PathBuf::from(dir);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")))
        .join("guests")
}

/// The bytes of one built guest; panics with how to build it if missing.
pub fn guest(name: &str) -> Vec<u8> {
    let path = guests_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "guest `{}` missing ({e}); build the guests with `scripts/test` or `cargo run -p zerofn-guest-build -- --out {}`",
            path.display(),
            guests_dir().display()
        )
    })
}
