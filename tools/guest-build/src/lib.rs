//! The guest build recipes as a library: `zerofn-guest-build` (the example
//! guests under `examples/`) and `zerofn build` (one function directory made
//! by `zerofn new`) share them, so a function builds exactly as the examples
//! do. See `main.rs` for what each language's recipe does.
//!
//! Trusts the toolchains it finds (clang, componentize-py, node) and the
//! sources it is given; checks what they produce against the proxy world.

pub mod cache;
pub mod cguest;
pub mod check;
pub mod guests;
pub mod jsguest;
pub mod project;
pub mod pyguest;
pub mod toolchain;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::guests::{Guest, GuestKind};
use crate::toolchain::Toolchains;

/// The workspace root, two levels above this crate's manifest directory: the one
/// Cargo names when it runs this (`cargo run`, `cargo test`), else the one it was
/// built in. (A target directory shared between checkouts, as `.ci/run` keeps one,
/// may hand a binary built in another checkout to this one.)
pub fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .ancestors()
        .nth(2)
        .unwrap_or(&manifest_dir)
        .to_path_buf()
}

/// What happened to one guest.
pub enum Outcome {
    Built(Duration),
    Cached,
}

/// Builds (or reuses) one guest and checks the resulting component.
pub fn build_one(
    guest: &Guest,
    toolchains: &Toolchains,
    out_dir: &Path,
    force: bool,
) -> Result<(Outcome, check::Summary)> {
    let wasm_path = out_dir.join(format!("{}.wasm", guest.name));
    let hash_path = out_dir.join(format!("{}.inputs-sha256", guest.name));
    let inputs_hash = cache::inputs_hash(guest, toolchains)?;

    // A WAT guest is a layer: it exports an interface, not the proxy world's
    // handler, but still imports nothing beyond the proxy world.
    let expected = if guest.kind == GuestKind::Wat {
        toolchain::ProxyWorld {
            imports: toolchains.proxy_world.imports.clone(),
            exports: Default::default(),
        }
    } else {
        toolchains.proxy_world.clone()
    };
    if !force && cache::is_fresh(&wasm_path, &hash_path, &inputs_hash) {
        let bytes = std::fs::read(&wasm_path)
            .with_context(|| format!("cannot read {}", wasm_path.display()))?;
        let summary = check::summarize(&wasm_path, &bytes, &expected)?;
        return Ok((Outcome::Cached, summary));
    }

    let started = Instant::now();
    let component = match guest.kind {
        GuestKind::C => cguest::build(guest, toolchains)?,
        GuestKind::Python => pyguest::build(guest, toolchains)?,
        GuestKind::JavaScript => jsguest::build(guest, toolchains)?,
        GuestKind::Wat => wat::parse_file(guest.dir.join(guests::WAT_FILE))
            .with_context(|| format!("cannot assemble {}", guests::WAT_FILE))?,
    };
    let summary = check::summarize(&wasm_path, &component, &expected)?;
    let own_wit = match guest.kind {
        GuestKind::C => cguest::guest_wit(guest, &toolchains.wit)?
            .map(|own| (own.resolve, own.world, own.declared_imports)),
        GuestKind::Python | GuestKind::JavaScript => guests::own_world(guest, &toolchains.wit)?
            .map(|own| (own.resolve, own.world, own.declared_imports)),
        GuestKind::Wat => None,
    };
    if let Some((resolve, world, declared)) = &own_wit {
        // Python guests also import the WASI CLI interfaces their runtime
        // needs, which no guest world declares; like Python guests without
        // their own world, they are not held to it.
        if guest.kind != GuestKind::Python {
            // Exactly the proxy world plus the interfaces the guest's world
            // declares (satisfied by layers or the platform at deploy).
            summary.require_proxy_plus(declared)?;
            check::require_targets_world(resolve, *world, &component)?;
        }
    } else if guest.kind == GuestKind::Wat {
        summary.require_strict_proxy()?;
    } else if matches!(guest.kind, GuestKind::C | GuestKind::JavaScript) {
        // C guests go through the proxy adapter, JavaScript guests are
        // built without the engine features that need more; both must stay
        // strictly inside the proxy world: anything else is a bug in the
        // recipe.
        summary.require_strict_proxy()?;
        check::require_targets(&toolchains.wit, &component)?;
    }
    cache::store(&wasm_path, &hash_path, &component, &inputs_hash)?;
    Ok((Outcome::Built(started.elapsed()), summary))
}
