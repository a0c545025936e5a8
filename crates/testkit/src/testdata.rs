//! The third-party test data (Sigstore conformance cases, trusted roots, SLSA
//! attestations, SBOMs, OSV records, JWT vectors, ...): `ZEROFN_TESTDATA` if set, else
//! `shared/testdata` beside the repository (the nearest ancestor of the test's package
//! holding one). Read in place, never copied into the repo.

use std::path::{Path, PathBuf};

/// The test-data directory. Panics, saying where it looked and how to point elsewhere,
/// when it is missing.
pub fn testdata_root() -> PathBuf {
    let root = match std::env::var_os("ZEROFN_TESTDATA") {
        Some(dir) => PathBuf::from(dir),
        None => beside_the_repository(),
    };
    if !root.is_dir() {
        panic!(
            "the test data is missing: `{}` is not a directory; put the shared/ folder beside \
             the repository or set ZEROFN_TESTDATA to its testdata directory",
            root.display()
        );
    }
    root
}

/// `shared/testdata` in the nearest ancestor of the running test's package that has one.
///
/// Why the package Cargo names at run time before the one this crate was compiled in: a
/// target directory shared between checkouts (`CARGO_TARGET_DIR` under `$HOME`) can hold
/// a test binary built in another checkout, whose compile-time path would point at that
/// checkout's neighbour. Cargo (and nextest) set `CARGO_MANIFEST_DIR` for every test they
/// run; the compile-time path is the fallback for a binary started by hand.
fn beside_the_repository() -> PathBuf {
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR"));
    let running = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let found = running
        .iter()
        .map(PathBuf::as_path)
        .chain([compiled])
        .flat_map(Path::ancestors)
        .map(|dir| dir.join("shared/testdata"))
        .find(|dir| dir.is_dir());
    found.unwrap_or_else(|| compiled.join("../../../shared/testdata"))
}

/// The path of `relative` inside the test data.
pub fn testdata(relative: &str) -> PathBuf {
    testdata_root().join(relative)
}

/// The bytes of `relative` inside the test data, or a panic naming the file.
pub fn read(relative: &str) -> Vec<u8> {
    let path = testdata(relative);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("cannot read test data `{}`: {e}", path.display()))
}

/// The text of `relative` inside the test data.
pub fn read_to_string(relative: &str) -> String {
    String::from_utf8(read(relative))
        .unwrap_or_else(|_| panic!("test data `{relative}` is not UTF-8"))
}

/// A directory inside the test data, usable in constants and format strings
/// (`const OSV: Dir = dir("osv");` then `format!("{OSV}/{file}")`); the root
/// is looked up when it is displayed or joined.
#[derive(Clone, Copy, Debug)]
pub struct Dir(&'static str);

/// The test-data directory `relative` (empty for the root).
pub const fn dir(relative: &'static str) -> Dir {
    Dir(relative)
}

impl Dir {
    /// The path of `relative` inside this directory.
    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.path().join(relative)
    }

    /// This directory's path.
    pub fn path(&self) -> PathBuf {
        if self.0.is_empty() {
            testdata_root()
        } else {
            testdata(self.0)
        }
    }
}

impl std::fmt::Display for Dir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.path().display().fmt(f)
    }
}
