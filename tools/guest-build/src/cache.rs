//! The output cache: `DIR/<name>.wasm` is reused as long as
//! `DIR/<name>.inputs-sha256` matches the hash of the current inputs.

use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::guests::{Guest, GuestKind};
use crate::toolchain::{self, Toolchains};

/// This tool's own sources and manifest: changing the recipe (flags, adapter
/// choice, pinned crate versions) invalidates every cached output.
const RECIPE: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../Cargo.toml")),
    ("cache.rs", include_str!("cache.rs")),
    ("cguest.rs", include_str!("cguest.rs")),
    ("guests.rs", include_str!("guests.rs")),
    ("pyguest.rs", include_str!("pyguest.rs")),
    ("jsguest.rs", include_str!("jsguest.rs")),
    ("componentize.mjs", include_str!("componentize.mjs")),
    ("toolchain.rs", include_str!("toolchain.rs")),
];

/// Whether a file in a guest directory is a build input. Not inputs: build
/// debris, docs, and the platform's deployment manifest (`zerofn.toml`,
/// which names the routes and limits, not how the component is built).
pub fn is_guest_input(relative: &str) -> bool {
    let name = relative.rsplit('/').next().unwrap_or(relative);
    !(name == "build"
        || name == "zerofn.toml"
        || name.starts_with("README")
        || name == "__pycache__"
        || name == "node_modules"
        || name.starts_with('.')
        || name.ends_with(".pyc")
        || name.ends_with('~'))
}

/// Hex SHA-256 over everything that determines `guest`'s output.
pub fn inputs_hash(guest: &Guest, toolchains: &Toolchains) -> Result<String> {
    let mut hasher = Sha256::new();
    for (name, contents) in RECIPE {
        toolchain::hash_entry(&mut hasher, &format!("recipe/{name}"), contents.as_bytes());
    }
    toolchain::hash_entry(&mut hasher, "kind", guest.kind.to_string().as_bytes());
    toolchain::hash_entry(&mut hasher, "wit", toolchains.wit.fingerprint.as_bytes());
    hash_dir(&mut hasher, "guest", &guest.dir)?;
    match guest.kind {
        GuestKind::C => {
            let c = toolchains.c()?;
            toolchain::hash_entry(&mut hasher, "clang", c.fingerprint.as_bytes());
            toolchain::hash_entry(
                &mut hasher,
                "libraries",
                toolchains.library_fingerprint.as_bytes(),
            );
            hash_dir(&mut hasher, "c-common", &crate::cguest::common_dir(guest))?;
        }
        GuestKind::Python => {
            let py = toolchains.python()?;
            toolchain::hash_entry(&mut hasher, "componentize-py", py.fingerprint.as_bytes());
        }
        GuestKind::JavaScript => {
            let js = toolchains.js()?;
            toolchain::hash_entry(&mut hasher, "componentize-js", js.fingerprint.as_bytes());
        }
        // `wat`'s version is pinned in Cargo.toml, part of the recipe.
        GuestKind::Wat => {}
    }
    Ok(hex::encode(hasher.finalize()))
}

fn hash_dir(hasher: &mut Sha256, label: &str, dir: &Path) -> Result<()> {
    for (relative, path) in toolchain::files_under(dir, &is_guest_input)? {
        let contents =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        toolchain::hash_entry(hasher, &format!("{label}/{relative}"), &contents);
    }
    Ok(())
}

/// True if `wasm` exists and `hash_file` records exactly `inputs_hash`.
pub fn is_fresh(wasm: &Path, hash_file: &Path, inputs_hash: &str) -> bool {
    wasm.is_file()
        && std::fs::read_to_string(hash_file).is_ok_and(|recorded| recorded.trim() == inputs_hash)
}

/// Writes the component and then its inputs hash, each via a temporary file
/// and a rename, so an interrupted run never leaves a stale hash next to a
/// fresh output (or the reverse).
pub fn store(wasm: &Path, hash_file: &Path, component: &[u8], inputs_hash: &str) -> Result<()> {
    // Drop the old hash first: if we die between the two writes the guest is
    // simply rebuilt next time.
    match std::fs::remove_file(hash_file) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(err).with_context(|| format!("cannot remove {}", hash_file.display()))
        }
    }
    write_atomically(wasm, component)?;
    write_atomically(hash_file, format!("{inputs_hash}\n").as_bytes())
}

fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    // The pid keeps concurrent runs on the same directory from clobbering
    // each other's half-written files.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, contents).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debris_is_not_input() {
        assert!(is_guest_input("main.c"));
        assert!(is_guest_input("pkg/mod.py"));
        assert!(!is_guest_input("__pycache__"));
        assert!(!is_guest_input("node_modules"));
        assert!(is_guest_input("app.js"));
        assert!(!is_guest_input("pkg/x.pyc"));
        assert!(!is_guest_input("build"));
        assert!(!is_guest_input("zerofn.toml"));
        assert!(!is_guest_input(".main.c.swp"));
    }

    #[test]
    fn store_then_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = dir.path().join("g.wasm");
        let hash = dir.path().join("g.inputs-sha256");
        assert!(!is_fresh(&wasm, &hash, "abc"));
        store(&wasm, &hash, b"\0asm", "abc").unwrap();
        assert!(is_fresh(&wasm, &hash, "abc"));
        assert!(!is_fresh(&wasm, &hash, "abd"));
        std::fs::remove_file(&wasm).unwrap();
        assert!(!is_fresh(&wasm, &hash, "abc"));
    }
}
