//! C guests: wit-bindgen-c bindings + clang/wasi-libc + wit-component.
//!
//! 1. Generate C bindings for `wasi:http/proxy` with the `wit-bindgen-c`
//!    library: `proxy.h`, `proxy.c` and `proxy_component_type.o` (a custom
//!    section describing the world, which `wit-component` reads back).
//! 2. Compile the guest's `*.c`, the shared `examples/_c-common/*.c` and the
//!    generated `proxy.c` for `wasm32-wasi` in the reactor execution model
//!    (no `main`; `_initialize` runs libc constructors) and link them.
//! 3. Wrap the core module into a component with `wit-component`, using the
//!    WASI preview1 *proxy* adapter. That adapter implements preview1 on top
//!    of the proxy world only, so the component imports nothing beyond
//!    `wasi:http/proxy`; libc calls that need more (files, environment,
//!    exit) fail with an errno instead of pulling in extra imports. The
//!    general-purpose reactor adapter would import `wasi:filesystem` and
//!    `wasi:cli/environment` as soon as libc touches them, and a strict
//!    proxy-world host could then not instantiate the guest.
//!
//! A guest may bring its own WIT ([`GuestWit`]): `wit/` and a `world` file
//! naming a world that includes the proxy world and imports interfaces that
//! layers provide. Its world must be called `proxy` (so wit-bindgen-c still
//! writes the `proxy.h` the shared C code includes); its bindings are
//! generated for that world, and its imports may go beyond the proxy world
//! by exactly the interfaces the world declares.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_PROXY_ADAPTER,
};
use wit_bindgen_core::Files;
use wit_component::ComponentEncoder;

use crate::guests::{self, Guest};
use crate::toolchain::{self, unversioned, CToolchain, Toolchains, Wit};

/// Shared C sources (`examples/_c-common/`), compiled into every C guest.
pub const C_COMMON_DIR: &str = "_c-common";

/// The directory of shared C code next to `guest`'s directory.
pub fn common_dir(guest: &Guest) -> PathBuf {
    guest.dir.parent().unwrap_or(&guest.dir).join(C_COMMON_DIR)
}

/// A guest's own world, resolved together with the WASI WIT.
pub struct GuestWit {
    pub resolve: wit_parser::Resolve,
    pub world: wit_parser::WorldId,
    /// Unversioned names of the world's imports outside the proxy world
    /// (the interfaces layers provide).
    pub declared_imports: BTreeSet<String>,
}

/// World name every guest world must have: wit-bindgen-c names the header
/// after it and `examples/_c-common` includes `proxy.h`.
const GUEST_WORLD_NAME: &str = "proxy";

/// Loads `guest`'s `wit/` and `world`, if it has them.
pub fn guest_wit(guest: &Guest, wit: &Wit) -> Result<Option<GuestWit>> {
    let dir = guest.dir.join(guests::GUEST_WIT_DIR);
    let world_file = guest.dir.join(guests::GUEST_WORLD_FILE);
    match (dir.is_dir(), world_file.is_file()) {
        (false, false) => return Ok(None),
        (true, true) => {}
        _ => bail!(
            "{} needs both `{}/` and `{}` (the world to build), or neither",
            guest.dir.display(),
            guests::GUEST_WIT_DIR,
            guests::GUEST_WORLD_FILE
        ),
    }
    let world_name = std::fs::read_to_string(&world_file)
        .with_context(|| format!("cannot read {}", world_file.display()))?;
    let world_name = world_name.trim();
    if world_name.rsplit('/').next() != Some(GUEST_WORLD_NAME) {
        bail!(
            "{}: world `{world_name}` must be named `{GUEST_WORLD_NAME}` (the shared C code includes `proxy.h`)",
            world_file.display()
        );
    }
    let mut resolve = wit.resolve.clone();
    let (package, _) = resolve
        .push_dir(&dir)
        .with_context(|| format!("cannot parse the WIT in {}", dir.display()))?;
    let world = resolve
        .select_world(&[package], Some(world_name))
        .with_context(|| format!("no world `{world_name}` in {}", dir.display()))?;
    let proxy = wit.proxy_world_names();
    let mut declared_imports = BTreeSet::new();
    if let Some(w) = resolve.worlds.get(world) {
        for key in w.imports.keys() {
            let name = resolve.name_world_key(key);
            let name = unversioned(&name).to_owned();
            if !proxy.imports.contains(&name) {
                declared_imports.insert(name);
            }
        }
    }
    Ok(Some(GuestWit {
        resolve,
        world,
        declared_imports,
    }))
}

/// Builds `guest` and returns the encoded component.
pub fn build(guest: &Guest, toolchains: &Toolchains) -> Result<Vec<u8>> {
    let cc = toolchains.c()?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("zerofn-guest-{}-", guest.name))
        .tempdir()
        .context("cannot create a temporary build directory")?;
    let bindings_dir = tmp.path().join("bindings");
    let objects_dir = tmp.path().join("obj");
    std::fs::create_dir_all(&objects_dir)
        .with_context(|| format!("cannot create {}", objects_dir.display()))?;

    let generated = match guest_wit(guest, &toolchains.wit)? {
        Some(own) => generate_bindings_for(&own.resolve, own.world, &bindings_dir)?,
        None => generate_bindings(&toolchains.wit, &bindings_dir)?,
    };
    let common = common_dir(guest);

    let mut objects = Vec::new();
    // Generated code: compiled without warnings, it is not ours to fix.
    for source in &generated.sources {
        objects.push(compile(cc, source, &objects_dir, &[&bindings_dir], false)?);
    }
    // Our code: strict warnings, so the examples stay clean.
    let mut ours = guests::c_sources(&guest.dir)?;
    if common.is_dir() {
        ours.extend(guests::c_sources(&common)?);
    }
    for source in &ours {
        objects.push(compile(
            cc,
            source,
            &objects_dir,
            &[&bindings_dir, &common],
            true,
        )?);
    }
    objects.extend(generated.objects);

    let core_path = tmp.path().join("core.wasm");
    link(cc, &objects, &core_path)?;
    let core = std::fs::read(&core_path)
        .with_context(|| format!("cannot read {}", core_path.display()))?;

    ComponentEncoder::default()
        .module(&core)
        .context("core module lacks a usable component-type section")?
        .validate(true)
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_PROXY_ADAPTER,
        )
        .context("cannot load the WASI preview1 proxy adapter")?
        .encode()
        .context("cannot encode the component")
}

/// Writes the C bindings to `dir` (for editors and for reading the API).
pub fn write_bindings(wit: &Wit, dir: &Path) -> Result<()> {
    generate_bindings(wit, dir).map(|_| ())
}

/// Files written by [`generate_bindings`].
struct Generated {
    sources: Vec<PathBuf>,
    objects: Vec<PathBuf>,
}

/// Writes wit-bindgen-c's output for the proxy world into `dir`.
fn generate_bindings(wit: &Wit, dir: &Path) -> Result<Generated> {
    generate_bindings_for(&wit.resolve, wit.world, dir)
}

/// Writes wit-bindgen-c's output for `world` into `dir`.
fn generate_bindings_for(
    resolve: &wit_parser::Resolve,
    world: wit_parser::WorldId,
    dir: &Path,
) -> Result<Generated> {
    // The generator may annotate the resolve; work on a copy.
    let mut resolve = resolve.clone();
    let mut files = Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .context("wit-bindgen-c failed to generate bindings")?;

    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut generated = Generated {
        sources: Vec::new(),
        objects: Vec::new(),
    };
    for (name, contents) in files.iter() {
        // Names are plain file names like `proxy.h`; refuse anything else
        // rather than writing outside `dir`.
        let path = Path::new(name);
        if path.components().count() != 1 {
            anyhow::bail!("wit-bindgen-c produced an unexpected file name {name:?}");
        }
        let path = dir.join(path);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("c") => generated.sources.push(path),
            Some("o") => generated.objects.push(path),
            _ => {}
        }
    }
    Ok(generated)
}

/// Flags shared by compiling and linking.
fn base_command(cc: &CToolchain) -> Command {
    let mut cmd = Command::new(&cc.clang);
    cmd.arg("--target=wasm32-wasi")
        .arg(format!("--sysroot={}", cc.sysroot.display()))
        .arg("-O2");
    cmd
}

/// Compiles one C file to an object in `out_dir`.
fn compile(
    cc: &CToolchain,
    source: &Path,
    out_dir: &Path,
    include_dirs: &[&Path],
    strict: bool,
) -> Result<PathBuf> {
    let stem = source
        .file_stem()
        .and_then(|s| s.to_str())
        .with_context(|| format!("odd source file name {}", source.display()))?;
    // Prefix with the parent directory name so `a/x.c` and `b/x.c` differ.
    let parent = source
        .parent()
        .and_then(Path::file_name)
        .and_then(|s| s.to_str())
        .unwrap_or("src");
    let object = out_dir.join(format!("{parent}-{stem}.o"));

    let mut cmd = base_command(cc);
    // Only wasi-libc headers: never fall back to the host's /usr/include,
    // which clang would otherwise search when the sysroot is /usr.
    cmd.arg("-nostdlibinc")
        .arg("-isystem")
        .arg(cc.sysroot.join("include/wasm32-wasi"))
        .arg("-std=c11");
    for dir in include_dirs {
        cmd.arg("-I").arg(dir);
    }
    if strict {
        cmd.args(["-Wall", "-Wextra", "-Werror"]);
    } else {
        cmd.arg("-w");
    }
    cmd.arg("-c").arg(source).arg("-o").arg(&object);
    toolchain::run_for_stdout(&mut cmd)
        .with_context(|| format!("cannot compile {}", source.display()))?;
    Ok(object)
}

/// Links the objects into a reactor core module.
fn link(cc: &CToolchain, objects: &[PathBuf], out: &Path) -> Result<()> {
    let mut cmd = base_command(cc);
    // Reactor: no `main`; the crt exports `_initialize` (libc constructors),
    // which wit-component arranges to run when the component starts.
    cmd.arg("-mexec-model=reactor")
        .args(objects)
        // Keep the name section for readable traps; drop DWARF.
        .arg("-Wl,--strip-debug")
        .arg("-o")
        .arg(out);
    toolchain::run_for_stdout(&mut cmd).context(
        "cannot link the core module (is lld installed? Debian: apt-get install lld-14)",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check;
    use crate::toolchain::{unversioned, Needs};

    /// Builds examples/hello-c for real and inspects the result. Skipped
    /// (with a note) where clang or wasi-libc is not installed.
    #[test]
    fn hello_c_is_a_strict_proxy_component() {
        let workspace = crate::workspace_root();
        let toolchains = match Toolchains::probe(
            &workspace,
            None,
            Needs {
                c: true,
                ..Needs::default()
            },
        ) {
            Ok(toolchains) => toolchains,
            Err(err) => {
                eprintln!("skipping: {err:#}");
                return;
            }
        };
        let guest = guests::discover(&workspace.join("examples"))
            .unwrap()
            .into_iter()
            .find(|g| g.name == "hello-c")
            .unwrap();
        let component = build(&guest, &toolchains).unwrap();

        // Our own top-level parse: only the interfaces hello-c really uses.
        let summary = check::summarize(
            Path::new("hello-c.wasm"),
            &component,
            &toolchains.proxy_world,
        )
        .unwrap();
        summary.require_strict_proxy().unwrap();
        let mut imports: Vec<&str> = summary.imports.iter().map(|n| unversioned(n)).collect();
        imports.sort_unstable();
        assert_eq!(
            imports,
            ["wasi:http/types", "wasi:io/error", "wasi:io/streams"]
        );

        // wit-component's view: the component runs in exactly the proxy world...
        check::require_targets(&toolchains.wit, &component).unwrap();

        // ...and decoding it yields a world exporting the incoming handler.
        let decoded = wit_component::decode(&component).unwrap();
        let wit_parser::decoding::DecodedWasm::Component(resolve, world) = decoded else {
            panic!("hello-c.wasm decoded as a WIT package, not a component");
        };
        let exports: Vec<String> = resolve.worlds[world]
            .exports
            .keys()
            .map(|key| resolve.name_world_key(key))
            .collect();
        assert!(
            exports
                .iter()
                .any(|e| e.starts_with("wasi:http/incoming-handler@0.2.")),
            "{exports:?}"
        );
    }
}
