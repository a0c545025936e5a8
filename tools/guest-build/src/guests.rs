//! Discovery of the example guests under `examples/`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cache::is_guest_input;
use crate::toolchain::{unversioned, Wit};

/// The language (and therefore toolchain) of a guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestKind {
    /// `*.c` sources compiled with clang + wasi-libc.
    C,
    /// An `app.py` module packaged with componentize-py.
    Python,
    /// An `app.js` ES module packaged with componentize-js.
    JavaScript,
    /// A `component.wat` in the component text format, assembled with `wat`
    /// (layers: library components exporting an interface, not the proxy
    /// world).
    Wat,
}

impl fmt::Display for GuestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so width specifiers like `{:<6}` apply.
        f.pad(match self {
            Self::C => "c",
            Self::Python => "python",
            Self::JavaScript => "js",
            Self::Wat => "wat",
        })
    }
}

/// One example guest: `examples/<name>/`.
#[derive(Clone, Debug)]
pub struct Guest {
    pub name: String,
    pub dir: PathBuf,
    pub kind: GuestKind,
}

impl Guest {
    /// Copies the guest's input files (not caches or editor debris) to `to`,
    /// so toolchains that write beside their sources never touch the tree.
    pub fn copy_inputs(&self, to: &Path) -> Result<()> {
        for (relative, source) in crate::toolchain::files_under(&self.dir, &is_guest_input)? {
            let target = to.join(&relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::copy(&source, &target).with_context(|| {
                format!("cannot copy {} to {}", source.display(), target.display())
            })?;
        }
        Ok(())
    }
}

/// The Python module every Python guest must provide.
pub const PYTHON_APP_MODULE: &str = "app";

/// The ES module every JavaScript guest must provide.
pub const JS_APP_FILE: &str = "app.js";

/// The component text every WAT guest must provide.
pub const WAT_FILE: &str = "component.wat";

/// A guest's own WIT: `wit/` (its package, with `deps/` for the packages
/// it imports beyond WASI) and `world`, one line naming the world to build,
/// such as `zerofn:hello-layered/proxy`. Resolved together with the WASI WIT
/// the tool already uses. C guests load it with
/// [`crate::cguest::guest_wit`] (which also fixes the world's name);
/// Python and JavaScript guests with [`own_world`].
pub const GUEST_WIT_DIR: &str = "wit";
pub const GUEST_WORLD_FILE: &str = "world";

/// A Python or JavaScript guest's own world, resolved together with the
/// WASI WIT.
pub struct OwnWorld {
    /// The world as named in the guest's `world` file, e.g.
    /// `zerofn:kv-py/proxy`; what the toolchains are told to build.
    pub name: String,
    pub resolve: wit_parser::Resolve,
    pub world: wit_parser::WorldId,
    /// Unversioned names of the world's imports outside the proxy world,
    /// such as `wasi:keyvalue/store`.
    pub declared_imports: BTreeSet<String>,
}

/// Loads `guest`'s `wit/` and `world`, if it has them (both or neither).
/// Unlike C guests, the world may have any name.
pub fn own_world(guest: &Guest, wit: &Wit) -> Result<Option<OwnWorld>> {
    let dir = guest.dir.join(GUEST_WIT_DIR);
    let world_file = guest.dir.join(GUEST_WORLD_FILE);
    match (dir.is_dir(), world_file.is_file()) {
        (false, false) => return Ok(None),
        (true, true) => {}
        _ => bail!(
            "{} needs both `{GUEST_WIT_DIR}/` and `{GUEST_WORLD_FILE}` (the world to build), or neither",
            guest.dir.display()
        ),
    }
    let name = std::fs::read_to_string(&world_file)
        .with_context(|| format!("cannot read {}", world_file.display()))?
        .trim()
        .to_owned();
    let mut resolve = wit.resolve.clone();
    let (package, _) = resolve
        .push_dir(&dir)
        .with_context(|| format!("cannot parse the WIT in {}", dir.display()))?;
    let world = resolve
        .select_world(&[package], Some(&name))
        .with_context(|| format!("no world `{name}` in {}", dir.display()))?;
    let proxy = wit.proxy_world_names();
    let declared_imports = resolve
        .worlds
        .get(world)
        .map(|w| {
            w.imports
                .keys()
                .map(|key| unversioned(&resolve.name_world_key(key)).to_owned())
                .filter(|name| !proxy.imports.contains(name))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(OwnWorld {
        name,
        resolve,
        world,
        declared_imports,
    }))
}

/// Lays out, in the empty or missing directory `to`, one WIT directory
/// holding `guest`'s own WIT and the WASI WIT, for toolchains that take a
/// single WIT path (componentize-js; componentize-py gets the same for
/// symmetry). The guest's `wit/` is copied as is; the WASI WIT directory's
/// top-level files become the package `deps/wasi--root/` and each entry of
/// its `deps/` becomes `deps/wasi--<entry>`. wit-parser names packages by
/// their `package` line, not by file name, so the prefix only keeps the
/// guest's own `deps/` entries from colliding with WASI's.
pub fn write_combined_wit(guest: &Guest, wit: &Wit, to: &Path) -> Result<()> {
    let own = guest.dir.join(GUEST_WIT_DIR);
    let mut copies: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (relative, source) in crate::toolchain::files_under(&own, &is_guest_input)? {
        copies.push((source, to.join(relative)));
    }
    for (relative, source) in crate::toolchain::files_under(&wit.dir, &|_| true)? {
        let target = match relative.split_once('/') {
            // Files of the root package.
            None => to.join("deps/wasi--root").join(&relative),
            Some(("deps", rest)) => to.join("deps").join(format!("wasi--{rest}")),
            // Anything else (nested directories beside `deps/`) is not
            // part of the root package as wit-parser reads it.
            Some(_) => continue,
        };
        copies.push((source, target));
    }
    for (source, target) in copies {
        if target.exists() {
            bail!(
                "cannot combine WIT: {} already exists (a file of {} collides with the WASI WIT)",
                target.display(),
                own.display()
            );
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::copy(&source, &target)
            .with_context(|| format!("cannot copy {} to {}", source.display(), target.display()))?;
    }
    Ok(())
}

/// Finds every guest directory under `examples_dir`, sorted by name.
///
/// Directories whose names start with `_` or `.` (shared code such as
/// `_c-common/`) and directories that hold none of C sources, `app.py` and
/// `app.js` are skipped; a directory holding more than one is an error
/// because it is ambiguous.
pub fn discover(examples_dir: &Path) -> Result<Vec<Guest>> {
    let entries = std::fs::read_dir(examples_dir)
        .with_context(|| format!("cannot read examples directory {}", examples_dir.display()))?;
    let mut guests = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", examples_dir.display()))?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let dir = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            bail!("example directory name is not UTF-8: {}", dir.display());
        };
        // `_c-common/` and friends hold shared code, not guests.
        if name.starts_with(['_', '.']) {
            continue;
        }
        let has_c = !c_sources(&dir)?.is_empty();
        let has_py = dir.join(format!("{PYTHON_APP_MODULE}.py")).is_file();
        let has_js = dir.join(JS_APP_FILE).is_file();
        let has_wat = dir.join(WAT_FILE).is_file();
        let kind = match (has_c, has_py, has_js, has_wat) {
            (true, false, false, false) => GuestKind::C,
            (false, true, false, false) => GuestKind::Python,
            (false, false, true, false) => GuestKind::JavaScript,
            (false, false, false, true) => GuestKind::Wat,
            (false, false, false, false) => continue,
            _ => bail!(
                "{} holds more than one of C sources, {PYTHON_APP_MODULE}.py, {JS_APP_FILE} \
                 and {WAT_FILE}; a guest must be written in one language",
                dir.display()
            ),
        };
        if !is_valid_name(&name) {
            bail!(
                "example directory name `{name}` must be lowercase ASCII letters, digits and `-`"
            );
        }
        guests.push(Guest { name, dir, kind });
    }
    guests.sort_by(|a, b| a.name.cmp(&b.name));
    if guests.is_empty() {
        bail!("no example guests found under {}", examples_dir.display());
    }
    Ok(guests)
}

/// Keeps only the guests named in `only` (all of them when `only` is empty).
pub fn select(all: Vec<Guest>, only: &[String]) -> Result<Vec<Guest>> {
    if only.is_empty() {
        return Ok(all);
    }
    let unknown: Vec<&str> = only
        .iter()
        .filter(|name| !all.iter().any(|g| &g.name == *name))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = all.iter().map(|g| g.name.as_str()).collect();
        bail!(
            "unknown guest(s): {}; known guests: {}",
            unknown.join(", "),
            known.join(", ")
        );
    }
    Ok(all.into_iter().filter(|g| only.contains(&g.name)).collect())
}

/// The `*.c` files directly inside `dir`, sorted.
pub fn c_sources(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == "c") {
            sources.push(path);
        }
    }
    sources.sort();
    Ok(sources)
}

/// Guest names end up in file names and on command lines; keep them boring.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("hello-c"));
        assert!(!is_valid_name("../x"));
        assert!(!is_valid_name("-x"));
        assert!(!is_valid_name(""));
    }

    #[test]
    fn discovers_and_selects() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a-c")).unwrap();
        std::fs::write(dir.path().join("a-c/main.c"), "").unwrap();
        std::fs::create_dir(dir.path().join("b-py")).unwrap();
        std::fs::write(dir.path().join("b-py/app.py"), "").unwrap();
        std::fs::create_dir(dir.path().join("c-js")).unwrap();
        std::fs::write(dir.path().join("c-js/app.js"), "").unwrap();
        std::fs::create_dir(dir.path().join("d-wat")).unwrap();
        std::fs::write(dir.path().join("d-wat/component.wat"), "").unwrap();
        std::fs::create_dir(dir.path().join("notes")).unwrap();
        std::fs::create_dir(dir.path().join("_shared")).unwrap();
        std::fs::write(dir.path().join("_shared/util.c"), "").unwrap();
        let all = discover(dir.path()).unwrap();
        let summary: Vec<_> = all.iter().map(|g| (g.name.as_str(), g.kind)).collect();
        assert_eq!(
            summary,
            [
                ("a-c", GuestKind::C),
                ("b-py", GuestKind::Python),
                ("c-js", GuestKind::JavaScript),
                ("d-wat", GuestKind::Wat)
            ]
        );

        let only = select(all.clone(), &["b-py".to_owned()]).unwrap();
        assert_eq!(only.len(), 1);
        let err = select(all, &["nope".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("unknown guest"), "{err}");
    }

    /// kv-py's own world resolves with the WASI WIT, declares exactly the
    /// keyvalue and config imports, and the combined WIT directory handed
    /// to componentize-py/-js resolves to the same world on its own.
    #[test]
    fn own_world_and_combined_wit() {
        let workspace = crate::workspace_root();
        let toolchains = match crate::toolchain::Toolchains::probe(
            &workspace,
            None,
            crate::toolchain::Needs::default(),
        ) {
            Ok(toolchains) => toolchains,
            Err(err) => {
                eprintln!("skipping: {err:#}");
                return;
            }
        };
        let all = discover(&workspace.join("examples")).unwrap();
        let guest = all.iter().find(|g| g.name == "kv-py").unwrap();
        let own = own_world(guest, &toolchains.wit).unwrap().unwrap();
        assert_eq!(own.name, "zerofn:kv-py/proxy");
        let declared: Vec<&str> = own.declared_imports.iter().map(String::as_str).collect();
        assert_eq!(
            declared,
            [
                "wasi:config/store",
                "wasi:keyvalue/atomics",
                "wasi:keyvalue/store"
            ]
        );

        let dir = tempfile::tempdir().unwrap();
        let combined = dir.path().join("wit");
        write_combined_wit(guest, &toolchains.wit, &combined).unwrap();
        let mut resolve = wit_parser::Resolve::default();
        let (package, _) = resolve.push_dir(&combined).unwrap();
        let world = resolve.select_world(&[package], Some(&own.name)).unwrap();
        let imports: BTreeSet<String> = resolve.worlds[world]
            .imports
            .keys()
            .map(|key| unversioned(&resolve.name_world_key(key)).to_owned())
            .collect();
        assert!(
            imports.contains("wasi:http/outgoing-handler"),
            "{imports:?}"
        );
        assert!(imports.contains("wasi:keyvalue/store"), "{imports:?}");
        // A second combination into the same place collides, loudly.
        let err = write_combined_wit(guest, &toolchains.wit, &combined).unwrap_err();
        assert!(err.to_string().contains("collides"), "{err}");

        // Guests without `wit/` and `world` have no own world.
        let hello = all.iter().find(|g| g.name == "hello-py").unwrap();
        assert!(own_world(hello, &toolchains.wit).unwrap().is_none());
    }

    #[test]
    fn two_languages_in_one_guest_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mixed")).unwrap();
        std::fs::write(dir.path().join("mixed/app.py"), "").unwrap();
        std::fs::write(dir.path().join("mixed/app.js"), "").unwrap();
        let err = discover(dir.path()).unwrap_err();
        assert!(err.to_string().contains("more than one"), "{err}");
    }
}
