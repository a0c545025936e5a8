//! `zerofn new NAME` and `zerofn build [DIR]`: a function directory from the
//! templates embedded in this binary, and its component built with the same
//! recipes as the example guests (the `zerofn-guest-build` library).
//!
//! `new` writes only files that do not exist yet (all or nothing: it checks
//! every target before writing the first). `build` trusts the toolchains it
//! finds (clang + wasi-libc, componentize-py, node + componentize-js) and
//! checks their output against the `wasi:http/proxy` world.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use zerofn_admission::{FunctionName, Manifest, TenantName};
use zerofn_guest_build::project::Project;

/// The language of a new function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// C with wasi-libc (clang, lld and wasi-libc installed).
    C,
    /// Python, packaged with componentize-py.
    #[value(alias = "py")]
    Python,
    /// JavaScript, packaged with componentize-js (node 20 or later).
    #[value(alias = "javascript")]
    Js,
}

#[derive(Args)]
pub struct NewArgs {
    /// The function's name (a DNS label: lowercase letters, digits, `-`).
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum, default_value = "c")]
    lang: Lang,
    /// The directory to write (default: ./NAME). Existing files are never overwritten.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The tenant that will own it (`zerofn dev` creates it on a local platform).
    #[arg(long, default_value = "dev")]
    tenant: String,
}

#[derive(Args)]
pub struct BuildArgs {
    /// The function directory (or its zerofn.toml); default the current directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// WIT directory to build against (default: the wasi:http WIT of the
    /// wasmtime-wasi-http crate zerofn was built with).
    #[arg(long)]
    wit: Option<PathBuf>,
    /// Rebuild even when the cached component is up to date.
    #[arg(long)]
    force: bool,
    /// Print what was built as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Files of one template: (path in the new directory, contents with
/// `{{name}}` and `{{tenant}}` to fill in).
fn template(lang: Lang) -> &'static [(&'static str, &'static str)] {
    const README: &str = include_str!("../templates/README.md");
    match lang {
        Lang::C => &[
            ("zerofn.toml", include_str!("../templates/c/zerofn.toml")),
            ("main.c", include_str!("../templates/c/main.c")),
            // The examples' helpers, so the project builds on its own.
            (
                "zerofn_http.h",
                include_str!("../../../examples/_c-common/zerofn_http.h"),
            ),
            (
                "zerofn_http.c",
                include_str!("../../../examples/_c-common/zerofn_http.c"),
            ),
            ("README.md", README),
            (".gitignore", "build/\n*.wasm\n*.sigstore.json\n"),
        ],
        Lang::Python => &[
            (
                "zerofn.toml",
                include_str!("../templates/python/zerofn.toml"),
            ),
            ("app.py", include_str!("../templates/python/app.py")),
            ("README.md", README),
            (".gitignore", "build/\n*.wasm\n*.sigstore.json\n"),
        ],
        Lang::Js => &[
            ("zerofn.toml", include_str!("../templates/js/zerofn.toml")),
            ("app.js", include_str!("../templates/js/app.js")),
            ("README.md", README),
            (".gitignore", "build/\n*.wasm\n*.sigstore.json\n"),
        ],
    }
}

fn lang_name(lang: Lang) -> &'static str {
    match lang {
        Lang::C => "c",
        Lang::Python => "python",
        Lang::Js => "js",
    }
}

/// `zerofn new`.
pub fn new(args: NewArgs) -> Result<()> {
    let name = FunctionName::parse(&args.name)
        .with_context(|| format!("`{}` cannot name a function", args.name.escape_debug()))?;
    let tenant = TenantName::parse(&args.tenant)
        .with_context(|| format!("`{}` cannot name a tenant", args.tenant.escape_debug()))?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(name.as_str()));
    let files = template(args.lang);
    let existing: Vec<String> = files
        .iter()
        .map(|(file, _)| dir.join(file))
        .filter(|path| path.symlink_metadata().is_ok())
        .map(|path| format!("`{}`", path.display()))
        .collect();
    if !existing.is_empty() {
        bail!(
            "not writing into `{}`: {} already exist(s); choose another directory with --dir DIR or move them away",
            dir.display(),
            existing.join(", ")
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    for (file, contents) in files {
        let path = dir.join(file);
        let text = contents
            .replace("{{name}}", name.as_str())
            .replace("{{tenant}}", tenant.as_str())
            .replace("{{lang}}", lang_name(args.lang));
        // `create_new`: a file that appeared since the check above is still not replaced.
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot create `{}`", path.display()))?;
        out.write_all(text.as_bytes())
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    println!(
        "wrote {} function {tenant}/{name} in {}",
        lang_name(args.lang),
        dir.display()
    );
    println!(
        "next: zerofn dev {}   (build, sign, deploy, and redeploy on every change)",
        dir.display()
    );
    Ok(())
}

/// The manifest of the function directory `dir` (or of the manifest file `dir`).
pub fn read_manifest(dir: &Path) -> Result<(PathBuf, Manifest)> {
    let dir = crate::admission::function_dir(dir).to_path_buf();
    let path = dir.join("zerofn.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read manifest `{}`", path.display()))?;
    let manifest = crate::diagnose::parse_manifest(&path, &text)?;
    Ok((dir, manifest))
}

/// `zerofn build`.
pub fn build(args: BuildArgs) -> Result<()> {
    let (dir, manifest) = read_manifest(&args.dir)?;
    let project = Project::open(&dir, &manifest.component, args.wit.as_deref())?;
    let spinner = crate::progress::Spinner::start(format!("building {}", dir.display()));
    let built = project.build(args.force);
    drop(spinner);
    let built = built?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "component": built.component.display().to_string(),
                "size": built.size,
                "cached": built.took.is_none(),
                "world": built.world,
            })
        );
    } else {
        println!("{}", describe(&built));
    }
    Ok(())
}

/// One line about a build, for `build` and `dev`.
pub fn describe(built: &zerofn_guest_build::project::Built) -> String {
    let how = match built.took {
        Some(took) => format!("built in {:.1}s", took.as_secs_f64()),
        None => "up to date".to_owned(),
    };
    format!(
        "{} ({} bytes, {how}; {})",
        built.component.display(),
        built.size,
        built.world
    )
}
