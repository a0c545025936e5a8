//! Python guests: `componentize-py` against the proxy-world WIT.
//!
//! The guest's files are copied into a scratch directory and packaged with
//!
//! ```text
//! componentize-py -q -d WIT -w wasi:http/proxy componentize app -p SCRATCH/app -o SCRATCH/out.wasm
//! ```
//!
//! componentize-py generates the `wit_world` bindings on the fly; `app.py`
//! subclasses `wit_world.exports.IncomingHandler`. The Python runtime inside
//! the component is built for the full WASI CLI world, so besides the proxy
//! world these components also import `wasi:cli`, `wasi:filesystem` and
//! `wasi:sockets` interfaces: a host must link those too (and grant nothing
//! through them) to run Python guests.
//!
//! A guest with its own WIT (`wit/` and `world`, see
//! [`crate::guests::own_world`]) is built against that world instead: its
//! WIT and the WASI WIT are laid out as one directory
//! ([`crate::guests::write_combined_wit`]) and `-w` names the guest's world,
//! e.g. `zerofn:kv-py/proxy`. The bindings for its extra imports then appear
//! under `wit_world.imports` like the WASI ones (an interface name used by
//! two packages, such as `wasi:keyvalue/store` and `wasi:config/store`, gets
//! the package in its module name: `wasi_keyvalue_store`,
//! `wasi_config_store`).

use std::process::Command;

use anyhow::{Context, Result};

use crate::guests::{self, Guest, PYTHON_APP_MODULE};
use crate::toolchain::{self, Toolchains, PROXY_WORLD};

/// Builds `guest` and returns the encoded component.
pub fn build(guest: &Guest, toolchains: &Toolchains) -> Result<Vec<u8>> {
    let py = toolchains.python()?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("zerofn-guest-{}-", guest.name))
        .tempdir()
        .context("cannot create a temporary build directory")?;

    // Copy the sources so componentize-py's caches (`__pycache__`) never
    // land in the source tree.
    let app_dir = tmp.path().join("app");
    guest.copy_inputs(&app_dir)?;

    // componentize-py adds the site-packages of the active Python (or of
    // `$VIRTUAL_ENV`) to the module search path. Point it at an empty
    // virtualenv so a guest can only use the standard library and its own
    // files, whatever happens to be installed on the build machine.
    let venv = tmp.path().join("empty-venv");
    let site_packages = venv.join("site-packages");
    std::fs::create_dir_all(&site_packages)
        .with_context(|| format!("cannot create {}", site_packages.display()))?;

    let (wit_dir, world) = match guests::own_world(guest, &toolchains.wit)? {
        Some(own) => {
            let combined = tmp.path().join("wit");
            guests::write_combined_wit(guest, &toolchains.wit, &combined)?;
            (combined, own.name)
        }
        None => (toolchains.wit.dir.clone(), PROXY_WORLD.to_owned()),
    };

    let out = tmp.path().join("out.wasm");
    let mut cmd = Command::new(&py.exe);
    cmd.arg("-q")
        .arg("-d")
        .arg(&wit_dir)
        .arg("-w")
        .arg(&world)
        .arg("componentize")
        .arg(PYTHON_APP_MODULE)
        .arg("-p")
        .arg(&app_dir)
        .arg("-o")
        .arg(&out)
        .current_dir(&app_dir)
        .env("VIRTUAL_ENV", &venv)
        .env_remove("PYTHONPATH");
    toolchain::run_for_stdout(&mut cmd).context("componentize-py failed")?;
    std::fs::read(&out).with_context(|| format!("cannot read {}", out.display()))
}
