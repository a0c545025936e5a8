//! Compiling admitted components, and the on-disk cache of precompiled
//! code.
//!
//! Precompiled code is native code wasmtime will jump into, so loading it is
//! `unsafe`: wasmtime trusts the bytes to be its own output. We uphold that
//! by loading only bytes whose SHA-256 equals the hash recorded (in the
//! store, by the caller) when this engine produced them; anything else in
//! the cache is ignored and the component is compiled again from its
//! admitted, signature-checked bytes.

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use zerofn_admission::AdmittedArtifact;

use crate::invoke::InvocationState;
use crate::{Sandbox, SandboxError};

/// A function ready to serve: admitted, compiled and pre-linked.
#[derive(Clone)]
pub struct LoadedFunction {
    pub(crate) pre: ProxyPre<InvocationState>,
    pub(crate) artifact: Arc<AdmittedArtifact>,
    precompiled_sha256: String,
}

impl std::fmt::Debug for LoadedFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedFunction")
            .field("artifact", &self.artifact)
            .finish_non_exhaustive()
    }
}

impl LoadedFunction {
    /// The admitted artifact this function runs.
    pub fn artifact(&self) -> &AdmittedArtifact {
        &self.artifact
    }

    /// SHA-256 (hex) of the precompiled code; the caller records it so a
    /// restart can check the cached file.
    pub fn precompiled_sha256(&self) -> &str {
        &self.precompiled_sha256
    }
}

impl Sandbox {
    /// Compile (or load from the cache) an admitted component and pre-link
    /// it against the proxy world. Blocking and CPU-heavy: call it from
    /// `spawn_blocking`.
    ///
    /// `expected_precompiled` is the hash a previous [`LoadedFunction`]
    /// reported for this digest; when the cached file matches it, it is
    /// loaded instead of compiling.
    pub fn load(
        &self,
        artifact: AdmittedArtifact,
        expected_precompiled: Option<&str>,
    ) -> Result<LoadedFunction, SandboxError> {
        let digest = artifact.digest().to_string();
        // Refused here, at deploy, rather than clamped at invocation: the
        // function would silently run with less memory than it declares.
        let memory_mb = artifact.manifest().limits.memory_mb;
        if memory_mb > self.config.max_memory_mb {
            return Err(SandboxError::MemoryTooLarge {
                memory_mb,
                max_mb: self.config.max_memory_mb,
            });
        }
        let path = self.cache_path(&artifact);
        let cached = expected_precompiled.and_then(|expected| {
            let bytes = std::fs::read(&path).ok()?;
            let actual = hex::encode(Sha256::digest(&bytes));
            if actual == expected {
                Some((bytes, actual))
            } else {
                tracing::warn!(%digest, "cached precompiled code does not match its recorded hash; recompiling");
                None
            }
        });
        let (bytes, sha) = match cached {
            Some(hit) => hit,
            None => {
                let bytes = self
                    .engine
                    .precompile_component(artifact.component())
                    .map_err(|e| SandboxError::Compile {
                        digest: digest.clone(),
                        reason: format!("{e:#}"),
                    })?;
                self.write_cache(&path, &bytes)?;
                let sha = hex::encode(Sha256::digest(&bytes));
                (bytes, sha)
            }
        };
        // SAFETY: `bytes` is either the output of `precompile_component` on
        // this very engine a moment ago, or a cache file whose SHA-256 equals
        // the hash recorded when this engine configuration (part of the file
        // name) produced it. Either way it is wasmtime's own, unmodified
        // output for this engine, which is what `deserialize` requires.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(&self.engine, &bytes) }.map_err(|e| {
            SandboxError::Compile {
                digest: digest.clone(),
                reason: format!("{e:#}"),
            }
        })?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(ProxyPre::new)
            .map_err(|e| SandboxError::NotProxyWorld {
                digest,
                reason: format!("{e:#}"),
            })?;
        Ok(LoadedFunction {
            pre,
            artifact: Arc::new(artifact),
            precompiled_sha256: sha,
        })
    }

    fn cache_path(&self, artifact: &AdmittedArtifact) -> PathBuf {
        self.config.cache_dir.join(format!(
            "{}-{}.cwasm",
            artifact.digest().hex(),
            self.engine_key
        ))
    }

    fn write_cache(&self, path: &std::path::Path, bytes: &[u8]) -> Result<(), SandboxError> {
        let err = |source| SandboxError::CacheDir {
            path: path.to_path_buf(),
            source,
        };
        // Write to a unique temporary name, then rename: readers never see
        // a half-written file, and concurrent loads cannot interleave.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}
