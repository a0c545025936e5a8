//! Locating the WIT files and the external toolchains, and fingerprinting
//! them so the cache notices when any of them changes.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use wit_parser::{Resolve, WorldId};

/// The world every guest targets.
pub const PROXY_WORLD: &str = "wasi:http/proxy";

/// The crate whose `wit/` directory is the source of truth for the WIT.
const WIT_CRATE: &str = "wasmtime-wasi-http";

/// The wasmtime release the host uses; the adapter crate is pinned to it too.
const WASMTIME_VERSION: &str = "48.0.8";

/// Library crates whose versions affect the C output.
const C_LIBRARY_CRATES: &[&str] = &[
    "wit-bindgen-c",
    "wit-bindgen-core",
    "wit-component",
    "wit-parser",
    "wasmparser",
    "wasi-preview1-component-adapter-provider",
];

/// Which external toolchains a run needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Needs {
    pub c: bool,
    pub python: bool,
    pub js: bool,
}

/// Everything the builds need, probed once up front.
pub struct Toolchains {
    pub wit: Wit,
    /// Import and export names (without `@version`) of the proxy world.
    pub proxy_world: ProxyWorld,
    /// Hex SHA-256 over the versions of [`C_LIBRARY_CRATES`].
    pub library_fingerprint: String,
    pub c: Option<CToolchain>,
    pub python: Option<PyToolchain>,
    pub js: Option<JsToolchain>,
}

/// The parsed WIT package set and the selected `wasi:http/proxy` world.
pub struct Wit {
    pub dir: PathBuf,
    pub resolve: Resolve,
    pub world: WorldId,
    /// Hex SHA-256 over every file under `dir`.
    pub fingerprint: String,
}

/// Interface names (without versions) of the proxy world.
#[derive(Clone, Debug, Default)]
pub struct ProxyWorld {
    pub imports: BTreeSet<String>,
    pub exports: BTreeSet<String>,
}

/// clang + wasi-libc.
pub struct CToolchain {
    pub clang: PathBuf,
    pub sysroot: PathBuf,
    /// `clang --version` output plus a hash of the wasi-libc libraries.
    pub fingerprint: String,
}

/// componentize-py.
pub struct PyToolchain {
    pub exe: PathBuf,
    /// `componentize-py --version` output.
    pub fingerprint: String,
}

/// node plus an npm prefix holding componentize-js (and jco).
pub struct JsToolchain {
    pub node: PathBuf,
    /// The npm prefix: `node_modules/@bytecodealliance/componentize-js` is
    /// below it.
    pub prefix: PathBuf,
    /// node's version, the componentize-js and jco versions, and a hash of
    /// npm's record of the whole installed dependency tree.
    pub fingerprint: String,
}

/// The npm packages a JavaScript build uses, relative to the prefix.
pub const COMPONENTIZE_JS_PACKAGE: &str = "node_modules/@bytecodealliance/componentize-js";
const JCO_PACKAGE: &str = "node_modules/@bytecodealliance/jco";

/// Where `scripts/install-test-deps` puts the npm packages, below `$HOME`.
const DEFAULT_NPM_PREFIX: &str = ".cache/zerofn-tools/npm";

impl Toolchains {
    /// Locates the WIT (from `wit_override` or the workspace's
    /// `wasmtime-wasi-http` crate) and the toolchains that are needed.
    pub fn probe(workspace: &Path, wit_override: Option<&Path>, needs: Needs) -> Result<Self> {
        let metadata = cargo_metadata(workspace);
        let wit_dir = match wit_override {
            Some(dir) => dir.to_path_buf(),
            None => find_wit_dir(metadata.as_ref())?,
        };
        let wit = Wit::load(&wit_dir)?;
        let proxy_world = wit.proxy_world();
        let library_fingerprint = library_fingerprint(metadata.as_ref().ok());

        let c = if needs.c {
            Some(CToolchain::probe()?)
        } else {
            None
        };
        let python = if needs.python {
            Some(PyToolchain::probe()?)
        } else {
            None
        };
        let js = if needs.js {
            Some(JsToolchain::probe()?)
        } else {
            None
        };
        Ok(Self {
            wit,
            proxy_world,
            library_fingerprint,
            c,
            python,
            js,
        })
    }

    pub fn c(&self) -> Result<&CToolchain> {
        self.c
            .as_ref()
            .context("internal error: C toolchain was not probed")
    }

    pub fn python(&self) -> Result<&PyToolchain> {
        self.python
            .as_ref()
            .context("internal error: Python toolchain was not probed")
    }

    pub fn js(&self) -> Result<&JsToolchain> {
        self.js
            .as_ref()
            .context("internal error: JavaScript toolchain was not probed")
    }
}

impl Wit {
    fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!("WIT directory {} does not exist", dir.display());
        }
        let mut resolve = Resolve::default();
        let (package, _) = resolve
            .push_dir(dir)
            .with_context(|| format!("cannot parse the WIT in {}", dir.display()))?;
        let world = resolve
            .select_world(&[package], Some(PROXY_WORLD))
            .with_context(|| format!("no `{PROXY_WORLD}` world in {}", dir.display()))?;
        let fingerprint = hash_tree(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            resolve,
            world,
            fingerprint,
        })
    }

    /// Interface names (without versions) of the proxy world.
    pub fn proxy_world_names(&self) -> ProxyWorld {
        self.proxy_world()
    }

    fn proxy_world(&self) -> ProxyWorld {
        let mut names = ProxyWorld::default();
        if let Some(world) = self.resolve.worlds.get(self.world) {
            for key in world.imports.keys() {
                names
                    .imports
                    .insert(unversioned(&self.resolve.name_world_key(key)).to_owned());
            }
            for key in world.exports.keys() {
                names
                    .exports
                    .insert(unversioned(&self.resolve.name_world_key(key)).to_owned());
            }
        }
        names
    }
}

/// `wasi:io/poll@0.2.12` -> `wasi:io/poll`.
pub fn unversioned(name: &str) -> &str {
    name.split_once('@').map_or(name, |(base, _)| base)
}

impl CToolchain {
    fn probe() -> Result<Self> {
        let clang = match std::env::var_os("ZEROFN_CLANG") {
            Some(clang) => PathBuf::from(clang),
            None => ["clang-14", "clang"]
                .iter()
                .find_map(|name| find_in_path(name))
                .ok_or_else(|| {
                    anyhow!(
                        "C toolchain missing: neither clang-14 nor clang is on PATH \
                         (Debian: apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32; \
                         or set ZEROFN_CLANG)"
                    )
                })?,
        };
        let version = run_for_stdout(Command::new(&clang).arg("--version")).context(
            "C toolchain missing (Debian: apt-get install clang-14 lld-14 wasi-libc \
             libclang-rt-14-dev-wasm32; or set ZEROFN_CLANG)",
        )?;

        // clang needs compiler-rt builtins for wasm32 to link anything.
        let builtins = run_for_stdout(
            Command::new(&clang)
                .arg("--target=wasm32-wasi")
                .arg("-print-libgcc-file-name"),
        )?;
        let builtins = PathBuf::from(builtins.trim());
        if !builtins.is_file() {
            bail!(
                "C toolchain incomplete: compiler-rt builtins for wasm32 not found at {} \
                 (Debian: apt-get install libclang-rt-14-dev-wasm32)",
                builtins.display()
            );
        }

        let sysroot = find_sysroot()?;
        // Hash the libraries rather than just a version string: the Debian
        // package and a wasi-sdk tarball can carry the same nominal version.
        let libs = hash_tree(&sysroot.join("lib/wasm32-wasi"))?;
        Ok(Self {
            clang,
            fingerprint: format!("{version}\nwasi-libc {} {libs}", sysroot.display()),
            sysroot,
        })
    }
}

/// The wasi-libc sysroot: `$WASI_SYSROOT` or the first well-known location
/// holding a wasm32-wasi libc.
fn find_sysroot() -> Result<PathBuf> {
    let is_sysroot = |dir: &Path| {
        dir.join("lib/wasm32-wasi/libc.a").is_file()
            && dir.join("include/wasm32-wasi/stdlib.h").is_file()
    };
    if let Some(dir) = std::env::var_os("WASI_SYSROOT") {
        let dir = PathBuf::from(dir);
        if !is_sysroot(&dir) {
            bail!(
                "WASI_SYSROOT={} does not hold lib/wasm32-wasi/libc.a and include/wasm32-wasi/",
                dir.display()
            );
        }
        return Ok(dir);
    }
    ["/usr", "/usr/share/wasi-sysroot", "/opt/wasi-sdk/share/wasi-sysroot"]
        .iter()
        .map(PathBuf::from)
        .find(|dir| is_sysroot(dir))
        .context(
            "C toolchain incomplete: no wasi-libc sysroot found in /usr, /usr/share/wasi-sysroot \
             or /opt/wasi-sdk/share/wasi-sysroot (Debian: apt-get install wasi-libc; or set WASI_SYSROOT)",
        )
}

impl PyToolchain {
    fn probe() -> Result<Self> {
        // The install script's virtual environment first (scripts/install-test-deps puts
        // componentize-py there), then PATH.
        let tools_venv = std::env::var_os("ZEROFN_TOOLS")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/zerofn-tools"))
            })
            .map(|tools| tools.join("py/bin/componentize-py"))
            .filter(|exe| exe.is_file());
        let exe = match std::env::var_os("ZEROFN_COMPONENTIZE_PY") {
            Some(exe) => PathBuf::from(exe),
            None => match tools_venv {
                Some(exe) => exe,
                None => find_in_path("componentize-py").context(
                    "Python toolchain missing: componentize-py is neither in \
                     ~/.cache/zerofn-tools/py nor on PATH (run scripts/install-test-deps; \
                     or set ZEROFN_COMPONENTIZE_PY)",
                )?,
            },
        };
        let version = run_for_stdout(Command::new(&exe).arg("--version")).context(
            "Python toolchain missing (run scripts/install-test-deps; or set ZEROFN_COMPONENTIZE_PY)",
        )?;
        Ok(Self {
            exe,
            fingerprint: version.trim().to_owned(),
        })
    }
}

impl JsToolchain {
    fn probe() -> Result<Self> {
        const INSTALL: &str = "run scripts/install-test-deps, or set ZEROFN_COMPONENTIZE_JS \
                               to an npm prefix holding @bytecodealliance/componentize-js";
        let node = match std::env::var_os("ZEROFN_NODE") {
            Some(node) => PathBuf::from(node),
            None => find_in_path("node").context(
                "JavaScript toolchain missing: node is not on PATH \
                 (Debian: apt-get install nodejs, version 20 or later; or set ZEROFN_NODE)",
            )?,
        };
        let node_version = run_for_stdout(Command::new(&node).arg("--version"))
            .context("JavaScript toolchain missing: node does not run (or set ZEROFN_NODE)")?;
        let prefix = match std::env::var_os("ZEROFN_COMPONENTIZE_JS") {
            Some(prefix) => PathBuf::from(prefix),
            None => std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(DEFAULT_NPM_PREFIX))
                .with_context(|| {
                    format!("JavaScript toolchain missing: HOME is not set; {INSTALL}")
                })?,
        };
        let componentize_js = npm_package_version(&prefix.join(COMPONENTIZE_JS_PACKAGE))
            .with_context(|| format!("JavaScript toolchain missing: {INSTALL}"))?;
        let jco = npm_package_version(&prefix.join(JCO_PACKAGE))
            .with_context(|| format!("JavaScript toolchain incomplete: {INSTALL}"))?;
        // npm records the exact version of every installed package here;
        // hashing it notices a changed transitive dependency too.
        let lock = prefix.join("node_modules/.package-lock.json");
        let tree = match std::fs::read(&lock) {
            Ok(bytes) => hex::encode(Sha256::digest(bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => "unknown".to_owned(),
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", lock.display())),
        };
        Ok(Self {
            node,
            fingerprint: format!(
                "node {}\ncomponentize-js {componentize_js}\njco {jco}\nnpm tree {tree}",
                node_version.trim()
            ),
            prefix,
        })
    }
}

/// The `version` field of the npm package installed in `dir`.
fn npm_package_version(dir: &Path) -> Result<String> {
    let manifest = dir.join("package.json");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", manifest.display()))?;
    json.get("version")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("{} has no version", manifest.display()))
}

/// Runs `cargo metadata` for the workspace.
fn cargo_metadata(workspace: &Path) -> Result<serde_json::Value> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let stdout = run_for_stdout(
        Command::new(cargo)
            .args(["metadata", "--format-version", "1"])
            .current_dir(workspace),
    )
    .context("`cargo metadata` failed")?;
    serde_json::from_str(&stdout).context("`cargo metadata` printed invalid JSON")
}

/// `(name, version, manifest_path)` of every package in the metadata.
fn packages(metadata: &serde_json::Value) -> impl Iterator<Item = (&str, &str, &str)> {
    metadata
        .get("packages")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p.get("name")?.as_str()?,
                p.get("version")?.as_str()?,
                p.get("manifest_path")?.as_str()?,
            ))
        })
}

/// The `wit/` directory beside the workspace's `wasmtime-wasi-http` manifest,
/// falling back to the cargo registry if `cargo metadata` is unavailable.
fn find_wit_dir(metadata: Result<&serde_json::Value, &anyhow::Error>) -> Result<PathBuf> {
    let metadata = match metadata {
        Ok(metadata) => metadata,
        Err(err) => {
            return find_wit_in_registry().with_context(|| {
                format!("cannot locate the WIT ({err:#}); pass --wit DIR to choose one")
            })
        }
    };
    let candidates: Vec<(&str, &str)> = packages(metadata)
        .filter(|(name, _, _)| *name == WIT_CRATE)
        .map(|(_, version, manifest)| (version, manifest))
        .collect();
    let manifest = match candidates.as_slice() {
        [] => bail!("the workspace does not depend on {WIT_CRATE}; pass --wit DIR"),
        [(_, manifest)] => *manifest,
        several => several
            .iter()
            .find(|(version, _)| *version == WASMTIME_VERSION)
            .map(|(_, manifest)| *manifest)
            .with_context(|| {
                format!("several versions of {WIT_CRATE} and none is {WASMTIME_VERSION}; pass --wit DIR")
            })?,
    };
    let dir = Path::new(manifest)
        .parent()
        .map(|p| p.join("wit"))
        .with_context(|| format!("odd manifest path {manifest}"))?;
    if !dir.is_dir() {
        bail!("{WIT_CRATE} has no wit/ directory at {}", dir.display());
    }
    Ok(dir)
}

/// `$CARGO_HOME/registry/src/*/wasmtime-wasi-http-<version>/wit`.
fn find_wit_in_registry() -> Result<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let src = cargo_home.join("registry/src");
    let wanted = format!("{WIT_CRATE}-{WASMTIME_VERSION}");
    for index in
        std::fs::read_dir(&src).with_context(|| format!("cannot read {}", src.display()))?
    {
        let candidate = index?.path().join(&wanted).join("wit");
        if candidate.is_dir() {
            return Ok(candidate);
        }
    }
    bail!("{wanted} is not unpacked under {}", src.display())
}

/// Hash of the versions of the library crates that shape the C output.
fn library_fingerprint(metadata: Option<&serde_json::Value>) -> String {
    let mut hasher = Sha256::new();
    match metadata {
        Some(metadata) => {
            let mut versions: Vec<String> = packages(metadata)
                .filter(|(name, _, _)| C_LIBRARY_CRATES.contains(name))
                .map(|(name, version, _)| format!("{name} {version}\n"))
                .collect();
            versions.sort();
            for line in versions {
                hasher.update(line.as_bytes());
            }
        }
        // Without metadata the exact versions are unknown; the pinned ones
        // in this crate's manifest (hashed into the recipe) still count.
        None => hasher.update(b"unknown"),
    }
    hex::encode(hasher.finalize())
}

/// Hex SHA-256 over every regular file under `root` (relative path, length
/// and contents, in sorted order), so renames and edits both change it.
pub fn hash_tree(root: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    for (relative, path) in files_under(root, &|_| true)? {
        let contents =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        hash_entry(&mut hasher, &relative, &contents);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Feeds one named blob into `hasher` unambiguously (length-prefixed).
pub fn hash_entry(hasher: &mut Sha256, name: &str, contents: &[u8]) {
    hasher.update((name.len() as u64).to_le_bytes());
    hasher.update(name.as_bytes());
    hasher.update((contents.len() as u64).to_le_bytes());
    hasher.update(contents);
}

/// Every regular file below `root` whose path (relative, `/`-separated)
/// passes `keep`, sorted by relative path. Directories failing `keep` are
/// not descended into.
pub fn files_under(root: &Path, keep: &dyn Fn(&str) -> bool) -> Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let mut pending = vec![(String::new(), root.to_path_buf())];
    while let Some((prefix, dir)) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
            let name = entry.file_name();
            let name = name
                .to_str()
                .with_context(|| format!("non-UTF-8 file name in {}", dir.display()))?;
            let relative = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            if !keep(&relative) {
                continue;
            }
            // Follow symlinks: the registry and sysroots may use them.
            let path = entry.path();
            if path.is_dir() {
                pending.push((relative, path));
            } else if path.is_file() {
                found.push((relative, path));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// `name` resolved against `$PATH`, if it is an existing file there.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs `cmd`, returning its stdout, or an error carrying its stderr.
pub fn run_for_stdout(cmd: &mut Command) -> Result<String> {
    let output = cmd
        .output()
        .with_context(|| format!("cannot run {}", describe(cmd)))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}):\n{}",
            describe(cmd),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    String::from_utf8(output.stdout)
        .with_context(|| format!("{} printed non-UTF-8 output", describe(cmd)))
}

/// A shell-like rendering of `cmd` for error messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_versions() {
        assert_eq!(unversioned("wasi:io/poll@0.2.12"), "wasi:io/poll");
        assert_eq!(unversioned("wasi:io/poll"), "wasi:io/poll");
    }

    #[test]
    fn tree_hash_sees_names_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), "x").unwrap();
        let first = hash_tree(dir.path()).unwrap();
        std::fs::write(dir.path().join("sub/a"), "y").unwrap();
        let second = hash_tree(dir.path()).unwrap();
        std::fs::rename(dir.path().join("sub/a"), dir.path().join("sub/b")).unwrap();
        let third = hash_tree(dir.path()).unwrap();
        assert_ne!(first, second);
        assert_ne!(second, third);
    }

    #[test]
    fn reads_npm_package_versions() {
        let dir = tempfile::tempdir().unwrap();
        let err = npm_package_version(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("package.json"), "{err:#}");
        std::fs::write(
            dir.path().join("package.json"),
            r#"{"name":"x","version":"1.2.3"}"#,
        )
        .unwrap();
        assert_eq!(npm_package_version(dir.path()).unwrap(), "1.2.3");
    }

    #[test]
    fn failing_commands_report_stderr() {
        let err =
            run_for_stdout(Command::new("sh").args(["-c", "echo oops >&2; exit 3"])).unwrap_err();
        assert!(format!("{err:#}").contains("oops"), "{err:#}");
    }
}
