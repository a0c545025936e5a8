//! [`admit`] and the proof it returns, [`AdmittedArtifact`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use zerofn_manifest::{InterfaceName, Manifest};
use zerofn_sigstore::AdmissionError;
use zerofn_sigstore::{verify_bundle, Bundle};
use zerofn_sigstore::{verify_signature, TrustedSigners};
use zerofn_sigstore::{KeyId, PublicKey};
use zerofn_sigstore::{SignerIdentity, VerifiedSignature};
use zerofn_types::Digest;

/// A component that passed admission: its bundle verified with one of its tenant's trusted
/// keys over exactly these bytes. Nothing outside this crate can construct one (private
/// fields, no `Default`, `Deserialize` or public constructor), so holding one proves the
/// checks in [`admit`] ran. `Debug` prints the name, tenant, digest and signer, never the
/// bytes.
#[derive(Clone)]
pub struct AdmittedArtifact {
    manifest: Manifest,
    // INVARIANT: `digest == Digest::of(&component)`. Without layers `signed_digest ==
    // digest`; with layers `component` is the composition (`layers::compose`) of the
    // component whose sha256 is `signed_digest` with the verified layers in `layers`. A
    // bundle over `signed_digest` verified with `signer`, a key the caller trusted for
    // `manifest.tenant`.
    component: Arc<[u8]>,
    digest: Digest,
    signed_digest: Digest,
    layers: BTreeMap<InterfaceName, Digest>,
    signer: KeyId,
    identity: SignerIdentity,
}

impl AdmittedArtifact {
    /// The manifest the component was admitted with.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The component bytes that were verified.
    pub fn component(&self) -> &[u8] {
        &self.component
    }

    /// The component bytes, shared (for compilation on another thread).
    pub fn component_arc(&self) -> Arc<[u8]> {
        Arc::clone(&self.component)
    }

    /// The sha256 of the component that runs (for a function with layers, of the composed
    /// component; the sandbox names its compiled code after it).
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The sha256 of the component the deployer signed: the function's identity. Equal to
    /// [`AdmittedArtifact::digest`] unless the function links layers.
    pub fn signed_digest(&self) -> Digest {
        self.signed_digest
    }

    /// The layers composed in, by the import each satisfies (empty when none).
    pub fn layers(&self) -> &BTreeMap<InterfaceName, Digest> {
        &self.layers
    }

    /// The same function with its component replaced by its composition with `layers`.
    /// Only `layers::compose` calls this, after verifying every layer.
    pub(crate) fn with_layers(
        self,
        composed: Vec<u8>,
        layers: BTreeMap<InterfaceName, Digest>,
    ) -> AdmittedArtifact {
        AdmittedArtifact {
            digest: Digest::of(&composed),
            component: Arc::from(composed),
            layers,
            ..self
        }
    }

    /// The trusted key that signed it (for a keyless signature, the key in the
    /// certificate).
    pub fn signer(&self) -> &KeyId {
        &self.signer
    }

    /// Who signed it: a trusted key or a certificate identity.
    pub fn signer_identity(&self) -> &SignerIdentity {
        &self.identity
    }

    /// Built by the admission pipeline once every check passed.
    pub(crate) fn from_verified(
        manifest: Manifest,
        component: Vec<u8>,
        signature: &VerifiedSignature,
    ) -> AdmittedArtifact {
        AdmittedArtifact {
            manifest,
            component: Arc::from(component),
            digest: signature.digest(),
            signed_digest: signature.digest(),
            layers: BTreeMap::new(),
            signer: signature.signer().clone(),
            identity: signature.identity().clone(),
        }
    }
}

impl fmt::Debug for AdmittedArtifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmittedArtifact")
            .field("name", &self.manifest.name)
            .field("tenant", &self.manifest.tenant)
            .field("digest", &self.digest)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

/// Admits a component signed with a key. `tenant_keys` are the keys trusted for
/// `manifest.tenant` (the caller looked them up by that tenant, which is why the manifest
/// comes parsed); a key trusted only for another tenant is simply not among them.
///
/// Checks, in order, and the refusal for each:
/// 1. the bundle parses and has a known `mediaType`: [`AdmissionError::BundleMalformed`];
/// 2. the tenant has trusted keys: [`AdmissionError::NoTrustedKeys`];
/// 3. the bundle is key-based: [`AdmissionError::KeylessNotSupported`] /
///    [`AdmissionError::DsseNotSupported`];
/// 4. the bundle's message digest, if present, is the component's:
///    [`AdmissionError::ArtifactDigestMismatch`] (the bundle is for another artifact, or the
///    component was modified);
/// 5. the signature verifies with one of `tenant_keys`: [`AdmissionError::SignatureInvalid`]
///    naming the digest and the tenant.
///
/// Digesting the component is CPU-bound: async callers run this on a blocking thread.
pub fn admit(
    manifest: Manifest,
    component: Vec<u8>,
    bundle_json: &[u8],
    tenant_keys: &[PublicKey],
) -> Result<AdmittedArtifact, AdmissionError> {
    let bundle = Bundle::from_json(bundle_json)?;
    if tenant_keys.is_empty() {
        return Err(AdmissionError::NoTrustedKeys {
            tenant: manifest.tenant.clone(),
        });
    }
    let digest = Digest::of(&component);
    let verified = verify_bundle(&digest, &bundle, tenant_keys).map_err(|e| match e {
        AdmissionError::SignatureInvalid { digest, .. } => AdmissionError::SignatureInvalid {
            digest,
            tenant: Some(manifest.tenant.clone()),
        },
        other => other,
    })?;
    Ok(AdmittedArtifact {
        manifest,
        component: Arc::from(component),
        digest: verified.digest(),
        signed_digest: verified.digest(),
        layers: BTreeMap::new(),
        signer: verified.signer().clone(),
        identity: SignerIdentity::Key(verified.signer().clone()),
    })
}

/// Re-admits a component that passed the whole pipeline before (at restart): the
/// signature is verified again against the tenant's current signers, keys or keyless
/// identities. Attestations and policy were decided when it was deployed (recorded in the
/// audit log) and are not re-run.
pub fn readmit(
    manifest: Manifest,
    component: Vec<u8>,
    bundle_json: &[u8],
    signers: &TrustedSigners,
) -> Result<AdmittedArtifact, AdmissionError> {
    let bundle = Bundle::from_json(bundle_json)?;
    let digest = Digest::of(&component);
    let verified = verify_signature(&digest, &bundle, signers, manifest.tenant.as_str())?;
    Ok(AdmittedArtifact::from_verified(
        manifest, component, &verified,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerofn_sigstore::sign_artifact;
    use zerofn_sigstore::SigningKey;

    fn manifest(tenant: &str) -> Manifest {
        Manifest::from_toml(&format!(
            "name = \"hello\"\ntenant = \"{tenant}\"\ncomponent = \"hello.wasm\"\nroutes = [\"/hello\"]\n"
        ))
        .unwrap()
    }

    const COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00 a component";

    #[test]
    fn admits_a_component_signed_by_a_tenant_key() {
        let other = SigningKey::generate();
        let key = SigningKey::generate();
        let bundle = sign_artifact(COMPONENT, &key).unwrap();
        let artifact = admit(
            manifest("acme"),
            COMPONENT.to_vec(),
            bundle.as_bytes(),
            &[other.public_key(), key.public_key()],
        )
        .unwrap();
        assert_eq!(artifact.component(), COMPONENT);
        assert_eq!(&*artifact.component_arc(), COMPONENT);
        assert_eq!(artifact.digest(), Digest::of(COMPONENT));
        assert_eq!(artifact.signer(), key.public_key().key_id());
        assert_eq!(artifact.manifest(), &manifest("acme"));
        let debug = format!("{artifact:?}");
        assert_eq!(
            debug,
            format!(
                "AdmittedArtifact {{ name: FunctionName(\"hello\"), tenant: TenantName(\"acme\"), digest: {}, signer: KeyId({:?}), .. }}",
                Digest::of(COMPONENT),
                key.public_key().key_id().as_str()
            )
        );
        assert!(!debug.contains("asm"), "{debug}");
    }

    #[test]
    fn malformed_bundle_comes_first() {
        // Even with no keys, a broken bundle is reported as such.
        let err = admit(manifest("acme"), COMPONENT.to_vec(), b"{not json", &[]).unwrap_err();
        assert!(
            matches!(err, AdmissionError::BundleMalformed { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn tenant_without_keys_is_refused() {
        let key = SigningKey::generate();
        let bundle = sign_artifact(COMPONENT, &key).unwrap();
        let err = admit(manifest("acme"), COMPONENT.to_vec(), bundle.as_bytes(), &[]).unwrap_err();
        assert!(
            matches!(&err, AdmissionError::NoTrustedKeys { tenant } if tenant.as_str() == "acme"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "tenant `acme` has no trusted signing keys; add one with `zerofn tenant add-key`"
        );
    }

    #[test]
    fn key_of_another_tenant_is_signature_invalid() {
        // `globex` signed it; only acme's keys are passed for an acme manifest.
        let acme = SigningKey::generate();
        let globex = SigningKey::generate();
        let bundle = sign_artifact(COMPONENT, &globex).unwrap();
        let err = admit(
            manifest("acme"),
            COMPONENT.to_vec(),
            bundle.as_bytes(),
            &[acme.public_key()],
        )
        .unwrap_err();
        let digest = Digest::of(COMPONENT);
        assert!(
            matches!(&err, AdmissionError::SignatureInvalid { digest: d, tenant: Some(t) } if *d == digest && t.as_str() == "acme"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("signature over `{digest}` does not verify with any trusted key of tenant `acme`; sign the component with a trusted key or add the signer's public key with `zerofn tenant add-key`")
        );
    }

    #[test]
    fn tampered_component_is_a_digest_mismatch() {
        let key = SigningKey::generate();
        let bundle = sign_artifact(COMPONENT, &key).unwrap();
        let mut tampered = COMPONENT.to_vec();
        tampered[10] ^= 0x80;
        let err = admit(
            manifest("acme"),
            tampered.clone(),
            bundle.as_bytes(),
            &[key.public_key()],
        )
        .unwrap_err();
        assert!(
            matches!(err, AdmissionError::ArtifactDigestMismatch { expected, found }
                if expected == Digest::of(&tampered) && found == Digest::of(COMPONENT)),
            "{err:?}"
        );
    }

    #[test]
    fn keyless_bundle_is_refused() {
        let bundle = std::fs::read(zerofn_testkit::testdata(
            "sigstore/conformance/bundle-verify/happy-path-v0.3/bundle.sigstore.json",
        ))
        .unwrap();
        let key = SigningKey::generate();
        let err = admit(
            manifest("acme"),
            COMPONENT.to_vec(),
            &bundle,
            &[key.public_key()],
        )
        .unwrap_err();
        assert!(
            matches!(err, AdmissionError::KeylessNotSupported),
            "{err:?}"
        );
    }
}
