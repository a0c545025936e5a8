//! Layers: shared library components a function links, each published once, immutable and
//! addressed by its digest, and verified exactly like a function (a Sigstore bundle by one of
//! the tenant's trusted signers).
//!
//! A function's manifest pins layers by the import each satisfies (`[layers]`, see
//! [`crate::Manifest`]). [`compose`] runs only after the function was admitted (an
//! [`AdmittedArtifact`]) and every pinned layer verified (a [`VerifiedLayer`]): it instantiates
//! each layer and plugs its export of that interface into the function's import, producing
//! one composed component that the sandbox compiles like any other. The composition is done
//! with `wac-graph` (the library behind `wac plug`), which type-checks every plug (subtyping
//! per the component model) and validates the encoded result.
//!
//! The composed component's digest differs from the function's: the artifact keeps the
//! function's own digest as its signed identity ([`AdmittedArtifact::signed_digest`]) and the
//! layer digests it was composed with ([`AdmittedArtifact::layers`]); its
//! [`AdmittedArtifact::digest`] is the sha256 of the bytes that run.
//!
//! Trusts nothing in either component beyond its verified signature: both are parsed and
//! validated here, and a layer not exporting what the manifest names, or a function not
//! importing it, is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use wac_graph::types::{Package, Types, WorldId};
use wac_graph::{CompositionGraph, EncodeOptions};

use crate::artifact::AdmittedArtifact;
use zerofn_manifest::InterfaceName;
use zerofn_sigstore::AdmissionError;
use zerofn_sigstore::Bundle;
use zerofn_sigstore::SignerIdentity;
use zerofn_sigstore::{verify_signature, TrustedSigners};
use zerofn_types::sanitize_message;
use zerofn_types::Digest;

/// Largest layer component accepted, in bytes (the control API caps bodies at 128 MiB).
pub const MAX_LAYER_BYTES: usize = 64 * 1024 * 1024;

/// A layer component whose bundle verified with one of its tenant's trusted signers over
/// exactly these bytes. Only [`verify_layer`] builds one.
#[derive(Clone)]
pub struct VerifiedLayer {
    // INVARIANT: `digest == Digest::of(&component)`, a bundle over `digest` verified with
    // `identity`, a signer the caller trusted for the tenant, and `component` is a valid
    // component exporting `exports`.
    component: Arc<[u8]>,
    digest: Digest,
    identity: SignerIdentity,
    exports: Vec<String>,
}

impl VerifiedLayer {
    /// The sha256 of the layer component.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Who signed it.
    pub fn signer_identity(&self) -> &SignerIdentity {
        &self.identity
    }

    /// The names the layer exports (interfaces such as `zerofn:greet/greeter`).
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// The verified bytes.
    pub fn component(&self) -> &[u8] {
        &self.component
    }
}

impl fmt::Debug for VerifiedLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedLayer")
            .field("digest", &self.digest)
            .field("signer", &self.identity.to_string())
            .field("exports", &self.exports)
            .finish_non_exhaustive()
    }
}

/// Why a layer, or the composition of a function with its layers, was refused. Messages
/// follow the same style as [`AdmissionError`]'s, which they wrap for a layer's bundle and
/// signature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The layer's bundle is malformed or its signature does not verify with a trusted
    /// signer of the tenant.
    #[error(transparent)]
    Signature(#[from] AdmissionError),

    /// A layer component is larger than allowed.
    #[error(
        "layer is {size} bytes, over the limit of {limit} bytes; split it into smaller layers"
    )]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },

    /// A layer's bytes are not a valid WebAssembly component.
    #[error("layer `{digest}` is not a valid WebAssembly component: {reason}; publish a component (not a core module)")]
    NotAComponent {
        /// The layer's digest.
        digest: Digest,
        /// What the parser said.
        reason: String,
    },

    /// The manifest pins a layer that is not published (or was not supplied).
    #[error("layer `{digest}` pinned for `{import}` is not published for this tenant; publish it with `zerofn layer publish` or pin a published digest (`zerofn layer list`)")]
    Missing {
        /// The import it was pinned for.
        import: String,
        /// The pinned digest.
        digest: Digest,
    },

    /// The function does not import an interface its manifest pins a layer for.
    #[error("the function `{digest}` does not import `{import}`, which its `[layers]` pins a layer for; remove the entry or import the interface")]
    ImportMissing {
        /// The pinned import.
        import: String,
        /// The function's signed digest.
        digest: Digest,
    },

    /// A pinned layer does not export the interface it is pinned for.
    #[error("layer `{digest}` does not export `{import}` (it exports: {exports}); pin a layer that exports it")]
    ExportMissing {
        /// The pinned import.
        import: String,
        /// The layer's digest.
        digest: Digest,
        /// What it does export.
        exports: String,
    },

    /// Composing the function with its layers failed (a type mismatch between an export and
    /// the import it is plugged into, or an invalid result).
    #[error("cannot compose function `{digest}` with its layers: {reason}")]
    CompositionFailed {
        /// The function's signed digest.
        digest: Digest,
        /// What failed.
        reason: String,
    },
}

/// Verifies a layer: its bundle over the sha256 of `component` with one of `signers` (as
/// [`verify_signature`] does for functions), then that it is a valid component. CPU-bound:
/// async callers run it on a blocking thread.
pub fn verify_layer(
    component: Vec<u8>,
    bundle_json: &[u8],
    signers: &TrustedSigners,
    tenant: &str,
) -> Result<VerifiedLayer, LayerError> {
    if component.len() > MAX_LAYER_BYTES {
        return Err(LayerError::TooLarge {
            size: component.len(),
            limit: MAX_LAYER_BYTES,
        });
    }
    let bundle = Bundle::from_json(bundle_json)?;
    let digest = Digest::of(&component);
    let verified = verify_signature(&digest, &bundle, signers, tenant)?;
    let mut types = Types::default();
    let package = Package::from_bytes("zerofn:layer", None, component.clone(), &mut types)
        .map_err(|e| LayerError::NotAComponent {
            digest,
            reason: reason_of(&e),
        })?;
    let (_, exports) = world_names(&types, package.ty());
    Ok(VerifiedLayer {
        component: Arc::from(component),
        digest: verified.digest(),
        identity: verified.identity().clone(),
        exports: exports.into_iter().collect(),
    })
}

/// Composes an admitted function with the layers its manifest pins: `layers` must hold a
/// verified layer for every digest in `function.manifest().layers` (extra ones are ignored).
/// A function without `[layers]` is returned unchanged. CPU-bound.
///
/// Refusals: a pinned digest with no verified layer ([`LayerError::Missing`]); a
/// function that does not import a pinned interface
/// ([`LayerError::ImportMissing`]); a layer that does not export it
/// ([`LayerError::ExportMissing`]); an export whose type does not fit the import,
/// or a composition that does not validate ([`LayerError::CompositionFailed`]).
pub fn compose(
    function: AdmittedArtifact,
    layers: &[VerifiedLayer],
) -> Result<AdmittedArtifact, LayerError> {
    let pins = function.manifest().layers.clone();
    if pins.is_empty() {
        return Ok(function);
    }
    let mut plugs: Vec<(InterfaceName, &VerifiedLayer)> = Vec::with_capacity(pins.len());
    for (import, digest) in &pins {
        let layer =
            layers
                .iter()
                .find(|l| l.digest == *digest)
                .ok_or_else(|| LayerError::Missing {
                    import: import.as_str().to_owned(),
                    digest: *digest,
                })?;
        plugs.push((import.clone(), layer));
    }
    let composed = plug(function.component(), function.signed_digest(), &plugs)?;
    let pinned: BTreeMap<InterfaceName, Digest> = pins;
    Ok(function.with_layers(composed, pinned))
}

/// Builds the composition graph: the function instantiated with each pinned import taken
/// from the export of the same name of its layer's instance; every export of the function
/// exported again. Imports of the layers the graph does not satisfy become imports of the
/// composed component (wac-graph imports them implicitly), so the sandbox still links the
/// whole thing against its host world only.
fn plug(
    function: &[u8],
    function_digest: Digest,
    plugs: &[(InterfaceName, &VerifiedLayer)],
) -> Result<Vec<u8>, LayerError> {
    let failed = |reason: String| LayerError::CompositionFailed {
        digest: function_digest,
        reason,
    };
    let mut graph = CompositionGraph::new();
    let package = Package::from_bytes(
        "zerofn:function",
        None,
        function.to_vec(),
        graph.types_mut(),
    )
    .map_err(|e| failed(reason_of(&e)))?;
    let (imports, exports) = world_names(graph.types(), package.ty());
    for (import, _) in plugs {
        if !imports.contains(import.as_str()) {
            return Err(LayerError::ImportMissing {
                import: import.as_str().to_owned(),
                digest: function_digest,
            });
        }
    }
    let function_id = graph
        .register_package(package)
        .map_err(|e| failed(reason_of(&e)))?;
    let instance = graph.instantiate(function_id);
    for (index, (import, layer)) in plugs.iter().enumerate() {
        let name = format!("zerofn:layer{index}");
        let package = Package::from_bytes(&name, None, layer.component.to_vec(), graph.types_mut())
            .map_err(|e| failed(reason_of(&e)))?;
        let (_, layer_exports) = world_names(graph.types(), package.ty());
        if !layer_exports.contains(import.as_str()) {
            return Err(LayerError::ExportMissing {
                import: import.as_str().to_owned(),
                digest: layer.digest,
                exports: layer_exports.into_iter().collect::<Vec<_>>().join(", "),
            });
        }
        let layer_id = graph
            .register_package(package)
            .map_err(|e| failed(reason_of(&e)))?;
        let layer_instance = graph.instantiate(layer_id);
        let export = graph
            .alias_instance_export(layer_instance, import.as_str())
            .map_err(|e| failed(reason_of(&e)))?;
        graph
            .set_instantiation_argument(instance, import.as_str(), export)
            .map_err(|e| {
                failed(format!(
                    "layer `{}` export `{import}` does not fit the function's import: {}",
                    layer.digest,
                    reason_of(&e)
                ))
            })?;
    }
    for name in exports {
        let export = graph
            .alias_instance_export(instance, &name)
            .map_err(|e| failed(reason_of(&e)))?;
        graph
            .export(export, &name)
            .map_err(|e| failed(reason_of(&e)))?;
    }
    graph
        .encode(EncodeOptions::default())
        .map_err(|e| failed(reason_of(&e)))
}

/// The import and export names of a package's world.
fn world_names(types: &Types, world: WorldId) -> (BTreeSet<String>, BTreeSet<String>) {
    // `types` is wac's arena and `world` an id it handed out for a package parsed into this
    // very arena a moment ago, so the lookup cannot miss.
    #[allow(clippy::indexing_slicing)]
    let world = &types[world];
    (
        world.imports.keys().cloned().collect(),
        world.exports.keys().cloned().collect(),
    )
}

/// A library error (with its causes, for `anyhow`'s alternate form), made safe to quote: it
/// may name items of the component.
fn reason_of<E: fmt::Display + ?Sized>(e: &E) -> String {
    sanitize_message(&format!("{e:#}"), 400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::admit;
    use zerofn_manifest::Manifest;
    use zerofn_sigstore::sign_artifact;
    use zerofn_sigstore::SigningKey;

    /// The example layer: exports `zerofn:greet/greeter`.
    const LAYER_WAT: &str = include_str!("../../../examples/greet-layer-wat/component.wat");

    /// A function importing `zerofn:greet/greeter` and exporting `zerofn:test/api`.
    const FUNCTION_WAT: &str = r#"(component
  (import "zerofn:greet/greeter" (instance $g
    (export "greet" (func (param "name" string) (result string)))))
  (core module $m (func (export "run") (result i32) i32.const 42))
  (core instance $i (instantiate $m))
  (func $run (result u32) (canon lift (core func $i "run")))
  (instance $api (export "run" (func $run)))
  (export "zerofn:test/api" (instance $api)))"#;

    /// A component exporting some other interface.
    const OTHER_WAT: &str = r#"(component
  (core module $m (func (export "run") (result i32) i32.const 7))
  (core instance $i (instantiate $m))
  (func $run (result u32) (canon lift (core func $i "run")))
  (instance $api (export "run" (func $run)))
  (export "zerofn:other/thing" (instance $api)))"#;

    fn wasm(text: &str) -> Vec<u8> {
        wat::parse_str(text).unwrap()
    }

    fn signers(key: &SigningKey) -> TrustedSigners {
        TrustedSigners {
            keys: vec![key.public_key()],
            keyless: Vec::new(),
        }
    }

    fn layer(text: &str, key: &SigningKey) -> VerifiedLayer {
        let bytes = wasm(text);
        let bundle = sign_artifact(&bytes, key).unwrap();
        verify_layer(bytes, bundle.as_bytes(), &signers(key), "acme").unwrap()
    }

    fn function(import: &str, pinned: Digest, text: &str, key: &SigningKey) -> AdmittedArtifact {
        let manifest = Manifest::from_toml(&format!(
            "name = \"hello\"\ntenant = \"acme\"\ncomponent = \"hello.wasm\"\nroutes = [\"/hello\"]\n\n[layers]\n\"{import}\" = \"{pinned}\"\n"
        ))
        .unwrap();
        let bytes = wasm(text);
        let bundle = sign_artifact(&bytes, key).unwrap();
        admit(manifest, bytes, bundle.as_bytes(), &[key.public_key()]).unwrap()
    }

    fn world_of(bytes: &[u8]) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut types = Types::default();
        let package = Package::from_bytes("t:t", None, bytes.to_vec(), &mut types).unwrap();
        world_names(&types, package.ty())
    }

    #[test]
    fn plugs_the_layer_into_the_import() {
        let key = SigningKey::generate();
        let greet = layer(LAYER_WAT, &key);
        assert_eq!(greet.exports(), ["zerofn:greet/greeter"]);
        let f = function("zerofn:greet/greeter", greet.digest(), FUNCTION_WAT, &key);
        let signed = f.digest();
        let composed = compose(f, std::slice::from_ref(&greet)).unwrap();
        assert_eq!(composed.signed_digest(), signed);
        assert_ne!(composed.digest(), signed);
        assert_eq!(composed.digest(), Digest::of(composed.component()));
        let pins: Vec<_> = composed
            .layers()
            .iter()
            .map(|(i, d)| (i.as_str().to_owned(), *d))
            .collect();
        assert_eq!(pins, [("zerofn:greet/greeter".to_owned(), greet.digest())]);
        // The import is satisfied inside; the function's export is kept.
        let (imports, exports) = world_of(composed.component());
        assert!(imports.is_empty(), "{imports:?}");
        assert_eq!(exports.into_iter().collect::<Vec<_>>(), ["zerofn:test/api"]);
        // Composition is deterministic (restart recomposes to the same digest).
        let again = compose(
            function("zerofn:greet/greeter", greet.digest(), FUNCTION_WAT, &key),
            std::slice::from_ref(&greet),
        )
        .unwrap();
        assert_eq!(again.digest(), composed.digest());
    }

    #[test]
    fn layer_without_the_export_is_refused() {
        let key = SigningKey::generate();
        let other = layer(OTHER_WAT, &key);
        let f = function("zerofn:greet/greeter", other.digest(), FUNCTION_WAT, &key);
        let err = compose(f, std::slice::from_ref(&other)).unwrap_err();
        assert!(
            matches!(&err, LayerError::ExportMissing { import, digest, exports }
                if import == "zerofn:greet/greeter" && *digest == other.digest() && exports == "zerofn:other/thing"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("layer `{}` does not export `zerofn:greet/greeter` (it exports: zerofn:other/thing); pin a layer that exports it", other.digest())
        );
    }

    #[test]
    fn function_not_importing_the_interface_is_refused() {
        let key = SigningKey::generate();
        let greet = layer(LAYER_WAT, &key);
        let f = function("zerofn:greet/greeter", greet.digest(), OTHER_WAT, &key);
        let signed = f.signed_digest();
        let err = compose(f, &[greet]).unwrap_err();
        assert!(
            matches!(&err, LayerError::ImportMissing { import, digest }
                if import == "zerofn:greet/greeter" && *digest == signed),
            "{err:?}"
        );
    }

    #[test]
    fn unpublished_pin_is_refused_naming_the_digest() {
        let key = SigningKey::generate();
        let greet = layer(LAYER_WAT, &key);
        let unknown = Digest::of(b"no such layer");
        let f = function("zerofn:greet/greeter", unknown, FUNCTION_WAT, &key);
        let err = compose(f, &[greet]).unwrap_err();
        assert!(
            matches!(&err, LayerError::Missing { digest, .. } if *digest == unknown),
            "{err:?}"
        );
        assert!(err.to_string().contains(&unknown.to_string()), "{err}");
    }

    #[test]
    fn layer_signed_by_an_untrusted_key_is_refused() {
        let trusted = SigningKey::generate();
        let stranger = SigningKey::generate();
        let bytes = wasm(LAYER_WAT);
        let bundle = sign_artifact(&bytes, &stranger).unwrap();
        let err = verify_layer(bytes, bundle.as_bytes(), &signers(&trusted), "acme").unwrap_err();
        assert!(
            matches!(
                err,
                LayerError::Signature(AdmissionError::SignatureInvalid { .. })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn core_module_is_not_a_layer() {
        let key = SigningKey::generate();
        let bytes = wasm("(module)");
        let bundle = sign_artifact(&bytes, &key).unwrap();
        let err = verify_layer(bytes, bundle.as_bytes(), &signers(&key), "acme").unwrap_err();
        assert!(matches!(err, LayerError::NotAComponent { .. }), "{err:?}");
    }

    #[test]
    fn function_without_layers_is_unchanged() {
        let key = SigningKey::generate();
        let manifest = Manifest::from_toml(
            "name = \"hello\"\ntenant = \"acme\"\ncomponent = \"hello.wasm\"\nroutes = [\"/hello\"]\n",
        )
        .unwrap();
        let bytes = wasm(OTHER_WAT);
        let bundle = sign_artifact(&bytes, &key).unwrap();
        let f = admit(
            manifest,
            bytes.clone(),
            bundle.as_bytes(),
            &[key.public_key()],
        )
        .unwrap();
        let same = compose(f, &[]).unwrap();
        assert_eq!(same.component(), bytes.as_slice());
        assert_eq!(same.digest(), same.signed_digest());
        assert!(same.layers().is_empty());
    }
}
