//! Post-build checks: the output must be a component that exports the
//! proxy world's handler; its imports are compared against the proxy world.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use wasmparser::{Encoding, Parser, Payload};

use crate::toolchain::{unversioned, ProxyWorld, Wit};

/// `\0asm`, then version 0x0d and layer 0x01: a component, not a core module.
const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// What a built component looks like from the outside.
#[derive(Debug)]
pub struct Summary {
    pub path: PathBuf,
    pub size: u64,
    /// Top-level import names, e.g. `wasi:io/poll@0.2.12`.
    pub imports: Vec<String>,
    /// Imports that are not part of the proxy world.
    pub extra_imports: Vec<String>,
}

impl Summary {
    /// Fails unless every import belongs to the proxy world.
    pub fn require_strict_proxy(&self) -> Result<()> {
        if self.extra_imports.is_empty() {
            Ok(())
        } else {
            bail!(
                "component imports interfaces outside {}: {}",
                crate::toolchain::PROXY_WORLD,
                self.extra_imports.join(", ")
            )
        }
    }

    /// Fails unless every import belongs to the proxy world or is one of
    /// `declared` (unversioned interface names a guest's own world imports,
    /// satisfied by layers at deploy).
    pub fn require_proxy_plus(&self, declared: &BTreeSet<String>) -> Result<()> {
        let undeclared: Vec<&String> = self
            .extra_imports
            .iter()
            .filter(|name| !declared.contains(unversioned(name)))
            .collect();
        if undeclared.is_empty() {
            Ok(())
        } else {
            bail!(
                "component imports interfaces outside {} and its own world: {}",
                crate::toolchain::PROXY_WORLD,
                undeclared
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }

    /// A short description for the build log, e.g. `strict proxy world` or
    /// `proxy world + wasi:cli(4) wasi:filesystem(2)` (the extra imports a
    /// host must also link, grouped by package).
    pub fn describe_world(&self) -> String {
        if self.extra_imports.is_empty() {
            let count = self.imports.len();
            let plural = if count == 1 { "" } else { "s" };
            return format!("strict proxy world ({count} import{plural})");
        }
        let mut packages: BTreeMap<&str, usize> = BTreeMap::new();
        for name in &self.extra_imports {
            let package = name.split_once('/').map_or(name.as_str(), |(pkg, _)| pkg);
            *packages.entry(package).or_default() += 1;
        }
        let extras: Vec<String> = packages
            .iter()
            .map(|(package, count)| format!("{package}({count})"))
            .collect();
        format!("proxy world + {}", extras.join(" "))
    }
}

/// Type-level check, stricter than comparing names: `component` must be
/// usable by a host that provides exactly the proxy world's imports and
/// expects its exports.
pub fn require_targets(wit: &Wit, component: &[u8]) -> Result<()> {
    wit_component::targets(&wit.resolve, wit.world, component).with_context(|| {
        format!(
            "component does not target {}",
            crate::toolchain::PROXY_WORLD
        )
    })
}

/// Type-level check for a guest with its own world (see
/// [`crate::cguest::GuestWit`]).
pub fn require_targets_world(
    resolve: &wit_parser::Resolve,
    world: wit_parser::WorldId,
    component: &[u8],
) -> Result<()> {
    wit_component::targets(resolve, world, component)
        .context("component does not target the guest's own world")
}

/// Parses the top level of `bytes` (without validating function bodies:
/// that already happened when the component was encoded) and compares it
/// with the proxy world.
pub fn summarize(path: &Path, bytes: &[u8], proxy: &ProxyWorld) -> Result<Summary> {
    if !bytes.starts_with(&COMPONENT_HEADER) {
        bail!(
            "{} is not a WebAssembly component (header {:02x?})",
            path.display(),
            bytes.get(..8).unwrap_or(bytes)
        );
    }
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    // Nested modules and components are parsed inline by `parse_all`; only
    // names at depth 0 are the component's own imports and exports.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.with_context(|| format!("cannot parse {}", path.display()))?;
        match payload {
            Payload::Version { encoding, .. } if depth == 0 && encoding != Encoding::Component => {
                bail!("{} is not a component", path.display())
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    imports.push(import?.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(export?.name.name.to_owned());
                }
            }
            _ => {}
        }
    }

    let missing: Vec<&String> = proxy
        .exports
        .iter()
        .filter(|wanted| !exports.iter().any(|e| unversioned(e) == wanted.as_str()))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} does not export {:?} (exports: {exports:?})",
            path.display(),
            missing
        );
    }
    let extra_imports = imports
        .iter()
        .filter(|name| !proxy.imports.contains(unversioned(name)))
        .cloned()
        .collect();
    Ok(Summary {
        path: path.to_path_buf(),
        size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
        imports,
        extra_imports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_core_modules() {
        let core = b"\0asm\x01\0\0\0";
        let err = summarize(Path::new("x.wasm"), core, &ProxyWorld::default()).unwrap_err();
        assert!(
            err.to_string().contains("not a WebAssembly component"),
            "{err}"
        );
    }

    #[test]
    fn groups_extra_imports() {
        let summary = Summary {
            path: PathBuf::from("x"),
            size: 0,
            imports: vec![],
            extra_imports: vec![
                "wasi:cli/environment@0.2.0".to_owned(),
                "wasi:cli/exit@0.2.0".to_owned(),
                "wasi:sockets/tcp@0.2.0".to_owned(),
            ],
        };
        assert_eq!(
            summary.describe_world(),
            "proxy world + wasi:cli(2) wasi:sockets(1)"
        );
        assert!(summary.require_strict_proxy().is_err());
    }

    #[test]
    fn only_declared_layer_imports_are_allowed_beyond_the_proxy_world() {
        let summary = Summary {
            path: PathBuf::from("x"),
            size: 0,
            imports: vec![],
            extra_imports: vec!["zerofn:greet/greeter@1.0.0".to_owned()],
        };
        let declared: BTreeSet<String> = ["zerofn:greet/greeter".to_owned()].into();
        summary.require_proxy_plus(&declared).unwrap();
        let err = summary
            .require_proxy_plus(&["zerofn:other/thing".to_owned()].into())
            .unwrap_err();
        assert!(err.to_string().contains("zerofn:greet/greeter"), "{err}");
        assert!(summary.require_strict_proxy().is_err());
    }
}
