//! The third-party test data (Sigstore conformance cases, trusted roots, SLSA
//! attestations, SBOMs, OSV records, JWT vectors, ...): `ZEROFN_TESTDATA` if set, else
//! `shared/testdata` beside the repository. Read in place, never copied into the repo.

use std::path::{Path, PathBuf};

/// The test-data directory. Panics, saying where it looked and how to point elsewhere,
/// when it is missing.
pub fn testdata_root() -> PathBuf {
    let root = match std::env::var_os("ZEROFN_TESTDATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata"),
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
