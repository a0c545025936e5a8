//! One function directory (as `zerofn new` writes it) built into its
//! component with the same recipes as the example guests.
//!
//! The directory is the user's: the build never writes beside the sources
//! except the component the manifest names. Sources are staged into
//! `DIR/build/src/` first, so a toolchain that writes beside its inputs
//! (componentize-py's `__pycache__`) touches only the copy, the outputs of
//! earlier builds and signatures (`*.wasm`, `*.sigstore.json`) are not
//! inputs, and `examples/_c-common/` is never pulled in (a project carries
//! its own helpers). `DIR/build/` also holds the input hash, so an unchanged
//! directory is not rebuilt.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cache::is_guest_input;
use crate::guests::{self, Guest, GuestKind};
use crate::toolchain::{self, Needs, Toolchains};
use crate::{build_one, Outcome};

/// Where builds of a project keep their staging copy, cache and output.
pub const BUILD_DIR: &str = "build";

/// A function directory, with the toolchain for its language probed.
pub struct Project {
    dir: PathBuf,
    component: String,
    kind: GuestKind,
    toolchains: Toolchains,
}

/// What one build produced.
pub struct Built {
    /// The component, at the path the manifest names.
    pub component: PathBuf,
    pub size: u64,
    /// `None` when the cached output was up to date.
    pub took: Option<std::time::Duration>,
    /// The component's imports, for humans.
    pub world: String,
}

impl Project {
    /// Opens `dir`, whose manifest names `component` (a plain `NAME.wasm`),
    /// and probes its language's toolchain against `wit` (default: the WIT
    /// of the wasmtime-wasi-http crate of the workspace this tool was built
    /// in).
    pub fn open(dir: &Path, component: &str, wit: Option<&Path>) -> Result<Self> {
        if component.contains(['/', '\\']) || !component.ends_with(".wasm") {
            bail!("component `{component}` must be a plain file name ending in `.wasm`");
        }
        let kind = kind_of(dir)?;
        let needs = Needs {
            c: kind == GuestKind::C,
            python: kind == GuestKind::Python,
            js: kind == GuestKind::JavaScript,
        };
        let toolchains = Toolchains::probe(&crate::workspace_root(), wit, needs)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            component: component.to_owned(),
            kind,
            toolchains,
        })
    }

    /// The project's language.
    pub fn kind(&self) -> GuestKind {
        self.kind
    }

    /// Builds the component (or reuses the cached one) and puts it where
    /// the manifest says.
    pub fn build(&self, force: bool) -> Result<Built> {
        let build_dir = self.dir.join(BUILD_DIR);
        let staging = build_dir.join("src");
        if staging.exists() {
            std::fs::remove_dir_all(&staging)
                .with_context(|| format!("cannot clear {}", staging.display()))?;
        }
        for (relative, source) in toolchain::files_under(&self.dir, &is_project_input)? {
            let target = staging.join(&relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::copy(&source, &target).with_context(|| {
                format!("cannot copy {} to {}", source.display(), target.display())
            })?;
        }
        // The example recipe compiles `../_c-common/*.c` beside a C guest and
        // hashes that directory; a project carries its own helpers, so its
        // staging copy gets an empty one.
        let common = build_dir.join(crate::cguest::C_COMMON_DIR);
        if common.exists() {
            std::fs::remove_dir_all(&common)
                .with_context(|| format!("cannot clear {}", common.display()))?;
        }
        std::fs::create_dir_all(&common)
            .with_context(|| format!("cannot create {}", common.display()))?;
        let stem = self.component.trim_end_matches(".wasm");
        let guest = Guest {
            name: stem.to_owned(),
            dir: staging,
            kind: self.kind,
        };
        let (outcome, summary) = build_one(&guest, &self.toolchains, &build_dir, force)?;
        let built = build_dir.join(&self.component);
        let component = self.dir.join(&self.component);
        let bytes =
            std::fs::read(&built).with_context(|| format!("cannot read {}", built.display()))?;
        // Rewrite only on change, so the file's time says when it last changed.
        if std::fs::read(&component).ok().as_deref() != Some(&bytes[..]) {
            std::fs::write(&component, &bytes)
                .with_context(|| format!("cannot write {}", component.display()))?;
        }
        Ok(Built {
            component,
            size: summary.size,
            took: match outcome {
                Outcome::Built(took) => Some(took),
                Outcome::Cached => None,
            },
            world: summary.describe_world(),
        })
    }
}

/// Whether a file of a project is a build input: what the examples count
/// (not `build/`, `zerofn.toml`, docs, dot files), minus what builds and
/// signing write into the directory.
pub fn is_project_input(relative: &str) -> bool {
    let name = relative.rsplit('/').next().unwrap_or(relative);
    is_guest_input(relative)
        && relative != "target"
        && !name.ends_with(".wasm")
        && !name.ends_with(".sigstore.json")
        && !name.ends_with(".intoto.jsonl")
}

/// The language of the project in `dir`, as the examples are told apart.
pub fn kind_of(dir: &Path) -> Result<GuestKind> {
    if !dir.is_dir() {
        bail!("`{}` is not a directory", dir.display());
    }
    let has_c = !guests::c_sources(dir)?.is_empty();
    let has_py = dir
        .join(format!("{}.py", guests::PYTHON_APP_MODULE))
        .is_file();
    let has_js = dir.join(guests::JS_APP_FILE).is_file();
    match (has_c, has_py, has_js) {
        (true, false, false) => Ok(GuestKind::C),
        (false, true, false) => Ok(GuestKind::Python),
        (false, false, true) => Ok(GuestKind::JavaScript),
        (false, false, false) => bail!(
            "`{}` holds no function source: C files (`*.c`), `{}.py` or `{}`",
            dir.display(),
            guests::PYTHON_APP_MODULE,
            guests::JS_APP_FILE
        ),
        _ => bail!(
            "`{}` holds more than one of C sources, `{}.py` and `{}`; a function is written in one language",
            dir.display(),
            guests::PYTHON_APP_MODULE,
            guests::JS_APP_FILE
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_and_signatures_are_not_inputs() {
        assert!(is_project_input("main.c"));
        assert!(is_project_input("lib/util.h"));
        assert!(!is_project_input("hello.wasm"));
        assert!(!is_project_input("hello.wasm.sigstore.json"));
        assert!(!is_project_input("zerofn.manifest.sigstore.json"));
        assert!(!is_project_input("build"));
        assert!(!is_project_input("zerofn.toml"));
        assert!(!is_project_input(".git"));
    }

    #[test]
    fn a_directory_is_one_language() {
        let dir = tempfile::tempdir().unwrap();
        let err = kind_of(dir.path()).unwrap_err();
        assert!(err.to_string().contains("no function source"), "{err}");
        std::fs::write(dir.path().join("app.py"), "").unwrap();
        assert_eq!(kind_of(dir.path()).unwrap(), GuestKind::Python);
        std::fs::write(dir.path().join("main.c"), "").unwrap();
        let err = kind_of(dir.path()).unwrap_err();
        assert!(err.to_string().contains("more than one"), "{err}");
    }
}
