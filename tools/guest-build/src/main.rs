//! `zerofn-guest-build`: builds the example guests under `examples/` from
//! source into WebAssembly components targeting the `wasi:http/proxy` world.
//!
//! ```text
//! cargo run -q -p zerofn-guest-build -- --out DIR [--only NAME]... [--wit DIR] [--force]
//! cargo run -q -p zerofn-guest-build -- --c-bindings DIR   # proxy.h etc., for editors
//! ```
//!
//! Every directory `examples/<name>/` is one guest:
//!
//! * a directory holding `*.c` files is a **C guest**: C bindings for the
//!   `wasi:http/proxy` world are generated with the `wit-bindgen-c` library,
//!   everything is compiled with clang against wasi-libc into a core module
//!   (`wasm32-wasi`, reactor model), and the core module is wrapped into a
//!   component with `wit-component` and the WASI preview1 *proxy* adapter.
//!   The result is checked to import nothing beyond the proxy world.
//! * a directory holding `app.py` is a **Python guest**, built with
//!   `componentize-py` against the same WIT.
//! * a directory holding `app.js` is a **JavaScript guest**, built with
//!   `componentize-js` (npm, run by node) against the same WIT, with the
//!   StarlingMonkey features that need host interfaces left out. The result
//!   is checked to import nothing beyond the proxy world, like C guests.
//! * any of these may carry its own WIT (`wit/` and a `world` file naming a
//!   world that includes the proxy world and imports more, such as
//!   `wasi:keyvalue`); it is then built against that world, and C and
//!   JavaScript guests are checked to import exactly the proxy world plus
//!   what their world declares.
//!
//! The WIT comes from the `wasmtime-wasi-http` crate the workspace depends on
//! (found through `cargo metadata`), so guests and host always agree on the
//! interface versions.
//!
//! Outputs land in `DIR/<name>.wasm`. Next to each one, `DIR/<name>.inputs-sha256`
//! records a hash of everything that went into it (guest sources, WIT files,
//! toolchain versions and this tool's own recipe); a guest whose recorded hash
//! matches is not rebuilt, so reruns are instant.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use zerofn_guest_build::guests::{self, Guest, GuestKind};
use zerofn_guest_build::toolchain::{self, Needs, Toolchains};
use zerofn_guest_build::{build_one, cguest, check, workspace_root, Outcome};

const USAGE: &str = "\
usage: zerofn-guest-build --out DIR [--only NAME]... [--wit DIR] [--force]
       zerofn-guest-build --c-bindings DIR [--wit DIR]

Builds every example guest under examples/ into DIR/<name>.wasm
(WebAssembly components for the wasi:http/proxy world, a guest's own
world from its wit/ and world files, or a layer from component.wat).

options:
  --out DIR     output (and cache) directory; created if missing
  --only NAME   build only this guest; may be repeated
  --wit DIR     WIT directory to build against (default: the wit/ directory
                of the wasmtime-wasi-http crate this workspace uses)
  --force       rebuild even when the cached output is up to date
  --list        list the example guests and exit
  --c-bindings DIR
                write the generated C bindings (proxy.h, proxy.c,
                proxy_component_type.o) to DIR and exit
  -h, --help    show this help

environment:
  ZEROFN_CLANG            clang to use (default: clang-14, then clang)
  WASI_SYSROOT            wasi-libc sysroot (default: /usr, /usr/share/wasi-sysroot,
                          /opt/wasi-sdk/share/wasi-sysroot)
  ZEROFN_COMPONENTIZE_PY  componentize-py to use (default: $ZEROFN_TOOLS/py/bin/componentize-py,
                          where scripts/install-test-deps installs it, then componentize-py
                          on PATH)
  ZEROFN_TOOLS            the tool cache (default: ~/.cache/zerofn-tools)
  ZEROFN_NODE             node to run componentize-js with (default: node; version 20 or later)
  ZEROFN_COMPONENTIZE_JS  npm prefix holding @bytecodealliance/componentize-js
                          (default: ~/.cache/zerofn-tools/npm, where
                          scripts/install-test-deps installs it)";

/// Parsed command line.
#[derive(Debug, Default)]
struct Args {
    out: Option<PathBuf>,
    only: Vec<String>,
    wit: Option<PathBuf>,
    c_bindings: Option<PathBuf>,
    force: bool,
    list: bool,
    help: bool,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self> {
        let mut parsed = Self::default();
        while let Some(arg) = args.next() {
            // Accept both `--flag VALUE` and `--flag=VALUE`.
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value)),
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| -> Result<String> {
                match inline {
                    Some(v) => Ok(v.to_owned()),
                    None => args
                        .next()
                        .with_context(|| format!("{name} needs a value\n\n{USAGE}")),
                }
            };
            match flag.as_str() {
                "--out" => parsed.out = Some(PathBuf::from(value("--out")?)),
                "--only" => parsed.only.push(value("--only")?),
                "--wit" => parsed.wit = Some(PathBuf::from(value("--wit")?)),
                "--c-bindings" => {
                    parsed.c_bindings = Some(PathBuf::from(value("--c-bindings")?));
                }
                "--force" if inline.is_none() => parsed.force = true,
                "--list" if inline.is_none() => parsed.list = true,
                "-h" | "--help" if inline.is_none() => parsed.help = true,
                _ => bail!("unexpected argument `{arg}`\n\n{USAGE}"),
            }
        }
        Ok(parsed)
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    let args = Args::parse(std::env::args().skip(1))?;
    if args.help {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }

    let workspace = workspace_root();
    if let Some(dir) = &args.c_bindings {
        let toolchains = Toolchains::probe(&workspace, args.wit.as_deref(), Needs::default())?;
        cguest::write_bindings(&toolchains.wit, dir)?;
        println!(
            "wrote C bindings for {} to {}",
            toolchain::PROXY_WORLD,
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let examples_dir = workspace.join("examples");
    let all = guests::discover(&examples_dir)?;
    if args.list {
        for guest in &all {
            println!("{:<12} {}", guest.name, guest.kind);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let selected = guests::select(all, &args.only)?;

    let out_dir = args
        .out
        .clone()
        .with_context(|| format!("--out DIR is required\n\n{USAGE}"))?;
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create output directory {}", out_dir.display()))?;

    // Probe only the toolchains the selected guests need, and do it before
    // building anything so a missing toolchain fails fast and clearly.
    let needs = Needs {
        c: selected.iter().any(|g| g.kind == GuestKind::C),
        python: selected.iter().any(|g| g.kind == GuestKind::Python),
        js: selected.iter().any(|g| g.kind == GuestKind::JavaScript),
    };
    let toolchains = Toolchains::probe(&workspace, args.wit.as_deref(), needs)?;

    let failures = build_all(&selected, &toolchains, &out_dir, args.force);
    if failures == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {failures} of {} guest(s) failed to build",
            selected.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Builds the guests on a few worker threads and prints one line per guest,
/// in the order given (each as soon as it and all guests before it are
/// done). Returns the number of guests that failed.
fn build_all(guests: &[Guest], toolchains: &Toolchains, out_dir: &Path, force: bool) -> usize {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, guests.len().max(1));
    // Start the slow builds (componentize-py and componentize-js take
    // seconds, clang a fraction of one) first, so they overlap with
    // everything else.
    let mut queue: Vec<usize> = (0..guests.len()).collect();
    queue.sort_by_key(|&i| guests.get(i).map(|g| g.kind == GuestKind::C));
    let next = AtomicUsize::new(0);
    let failures = AtomicUsize::new(0);
    let printer = Mutex::new(OrderedPrinter::new(guests.len()));

    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while let Some(&index) = queue.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let Some(guest) = guests.get(index) else {
                        continue;
                    };
                    let line = match build_one(guest, toolchains, out_dir, force) {
                        Ok((outcome, summary)) => format_line(guest, &outcome, &summary),
                        Err(err) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            format!("{:<12} {:<6} FAILED: {err:#}", guest.name, guest.kind)
                        }
                    };
                    // A poisoned lock only means another worker panicked while
                    // printing; the printer's state is still consistent.
                    printer
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .finished(index, line);
                }
            });
        }
    });
    failures.into_inner()
}

/// Prints lines in index order although they complete in any order.
struct OrderedPrinter {
    lines: Vec<Option<String>>,
    next: usize,
}

impl OrderedPrinter {
    fn new(count: usize) -> Self {
        Self {
            lines: vec![None; count],
            next: 0,
        }
    }

    fn finished(&mut self, index: usize, line: String) {
        if let Some(slot) = self.lines.get_mut(index) {
            *slot = Some(line);
        }
        let mut out = std::io::stdout().lock();
        while let Some(line) = self.lines.get_mut(self.next).and_then(Option::take) {
            // Nothing sensible to do if stdout is gone.
            let _ = writeln!(out, "{line}");
            self.next += 1;
        }
        let _ = out.flush();
    }
}

fn format_line(guest: &Guest, outcome: &Outcome, summary: &check::Summary) -> String {
    let status = match outcome {
        Outcome::Built(took) => format!("built in {:.1}s", took.as_secs_f64()),
        Outcome::Cached => "cached".to_owned(),
    };
    format!(
        "{:<12} {:<6} {:>10}  {:<15} {}  {}",
        guest.name,
        guest.kind,
        human_size(summary.size),
        status,
        summary.path.display(),
        summary.describe_world(),
    )
}

fn human_size(bytes: u64) -> String {
    // Precision loss is irrelevant for a human-readable size.
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", b / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args> {
        Args::parse(list.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn parses_flags() {
        let parsed = args(&["--out", "x", "--only", "a", "--only=b", "--force"]).unwrap();
        assert_eq!(parsed.out, Some(PathBuf::from("x")));
        assert_eq!(parsed.only, ["a", "b"]);
        assert!(parsed.force);
    }

    #[test]
    fn rejects_bad_flags() {
        assert!(args(&["--bogus"]).is_err());
        assert!(args(&["--out"]).is_err());
        assert!(args(&["--force=yes"]).is_err());
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(2048), "2.0 KiB");
        assert_eq!(human_size(3 << 20), "3.0 MiB");
    }
}
