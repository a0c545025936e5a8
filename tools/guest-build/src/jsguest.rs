//! JavaScript guests: `componentize-js` (StarlingMonkey, SpiderMonkey
//! compiled to WebAssembly) against the proxy-world WIT.
//!
//! The guest's files are copied into a scratch directory, which also gets a
//! `node_modules` link to the npm prefix holding componentize-js, and
//! packaged with a small node script (`componentize.mjs`, embedded in this
//! tool) calling the componentize-js API:
//!
//! ```text
//! node componentize.mjs app/app.js WIT wasi:http/proxy out.wasm stdio,random,clocks,http,fetch-event
//! ```
//!
//! `app.js` exports `incomingHandler` (`handle(request, responseOut)`) and
//! uses the `wasi:http/types` bindings componentize-js generates from the
//! WIT, the same low-level API the C and Python guests use. StarlingMonkey's
//! built-in Web APIs that need host interfaces (console on stdio,
//! `Math.random`/`crypto` on random, `Date`/timers on clocks, `fetch`
//! and the `fetch` event on http) are left out: they are built against an
//! older `wasi:*@0.2.10` and would add nothing a handler here needs. The
//! result imports only proxy-world interfaces at the WIT's version.
//!
//! A guest with its own WIT (`wit/` and `world`, see
//! [`crate::guests::own_world`]) is built against that world: its WIT and
//! the WASI WIT are laid out as one directory
//! ([`crate::guests::write_combined_wit`]; componentize-js takes a single
//! WIT path) and the world argument names the guest's world, e.g.
//! `zerofn:kv-js/proxy`. `app.js` reaches the extra imports as ES modules
//! named by interface and version, such as
//! `import { open } from "wasi:keyvalue/store@0.2.0-draft"`.
//!
//! `jco componentize` is not used: in jco 1.35 it fails before building,
//! in the probe that picks a componentize-js version for the WIT's
//! `wasi:http` version ("failed to get path metadata" reading the WIT
//! directory, relative or absolute), while the componentize-js API it wraps
//! works.

use std::process::Command;

use anyhow::{Context, Result};

use crate::guests::{self, Guest, JS_APP_FILE};
use crate::toolchain::{self, Toolchains, COMPONENTIZE_JS_PACKAGE, PROXY_WORLD};

/// The node script that calls componentize-js.
pub const COMPONENTIZE_SCRIPT: &str = include_str!("componentize.mjs");

/// StarlingMonkey features left out of every JavaScript guest; see the
/// module documentation.
pub const DISABLED_FEATURES: &[&str] = &["stdio", "random", "clocks", "http", "fetch-event"];

/// Builds `guest` and returns the encoded component.
pub fn build(guest: &Guest, toolchains: &Toolchains) -> Result<Vec<u8>> {
    let js = toolchains.js()?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("zerofn-guest-{}-", guest.name))
        .tempdir()
        .context("cannot create a temporary build directory")?;
    let scratch = tmp.path();

    let app_dir = scratch.join("app");
    guest.copy_inputs(&app_dir)?;

    // Bare `import "@bytecodealliance/componentize-js"` in the script
    // resolves through this link; componentize-js and its dependencies then
    // resolve from their real location in the prefix.
    let modules = js.prefix.join("node_modules");
    if !js.prefix.join(COMPONENTIZE_JS_PACKAGE).is_dir() {
        anyhow::bail!(
            "componentize-js is not installed under {} (run scripts/install-test-deps)",
            js.prefix.display()
        );
    }
    std::os::unix::fs::symlink(&modules, scratch.join("node_modules")).with_context(|| {
        format!(
            "cannot link {} into {}",
            modules.display(),
            scratch.display()
        )
    })?;
    let script = scratch.join("componentize.mjs");
    std::fs::write(&script, COMPONENTIZE_SCRIPT)
        .with_context(|| format!("cannot write {}", script.display()))?;

    let (wit_dir, world) = match guests::own_world(guest, &toolchains.wit)? {
        Some(own) => {
            let combined = scratch.join("wit");
            guests::write_combined_wit(guest, &toolchains.wit, &combined)?;
            (combined, own.name)
        }
        None => (toolchains.wit.dir.clone(), PROXY_WORLD.to_owned()),
    };

    let out = scratch.join("out.wasm");
    let mut cmd = Command::new(&js.node);
    cmd.arg(&script)
        .arg(app_dir.join(JS_APP_FILE))
        .arg(&wit_dir)
        .arg(&world)
        .arg(&out)
        .arg(DISABLED_FEATURES.join(","))
        .current_dir(scratch)
        .env_remove("NODE_OPTIONS")
        .env_remove("NODE_PATH");
    toolchain::run_for_stdout(&mut cmd).context("componentize-js failed")?;
    std::fs::read(&out).with_context(|| format!("cannot read {}", out.display()))
}
