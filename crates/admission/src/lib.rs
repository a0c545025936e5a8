#![forbid(unsafe_code)]
//! Admission of function artifacts: the only way into the platform for code.
//!
//! This crate owns the function manifest (`zerofn.toml`, [`Manifest`]), signing keys
//! ([`SigningKey`], [`PublicKey`], [`KeyId`]), Sigstore bundles ([`Bundle`],
//! [`sign_artifact`]), their verification ([`verify`] against a [`VerificationPolicy`]:
//! trusted keys, or a keyless [`Identity`] and a [`TrustedRoot`]; [`verify_bundle`] is the
//! key-based form) and the admission decision ([`admit`]), whose only success value is an
//! [`AdmittedArtifact`]. The sandbox runs nothing else. `zerofn verify` calls [`verify`] too.
//! Layers (shared library components a manifest pins by digest under `[layers]`) are verified
//! with [`verify_layer`] and plugged into an admitted function by [`compose`] (`layers.rs`,
//! with `wac-graph`); the result is still an [`AdmittedArtifact`], whose
//! [`AdmittedArtifact::signed_digest`] is the function's own and whose
//! [`AdmittedArtifact::digest`] is the composed component's.
//!
//! # Trust
//! * Trusts the caller for *which* keys a tenant trusts (`admit` is handed the keys stored for
//!   the manifest's tenant) and for the [`TrustedRoot`] and [`Identity`] of a keyless policy:
//!   the trusted root is the anchor for Fulcio CAs, Rekor and CT logs and timestamp
//!   authorities. It trusts RustCrypto (`p256`, `p384`, `ecdsa`, `ed25519-dalek`, `rsa`,
//!   `sha2`, `x509-cert`, `der`, `spki`, `cms`, `x509-tsp`) for cryptography and encodings;
//!   the RFC 9162 inclusion proof, the signed-note checkpoint and the RFC 6962 SCT input are
//!   assembled here from those primitives, because no such crate covers them.
//! * Trusts nothing in a manifest, bundle, trusted root, component or PEM: each is parsed
//!   here into a type that holds its rules ([`Digest`], [`FunctionName`], [`TenantName`],
//!   [`Route`], [`Bundle`], [`TrustedRoot`]), with size limits, and refused with a specific
//!   error otherwise. A bundle's key hint, message digest and embedded timestamp
//!   certificates are unauthenticated hints, never trusted.
//! * Guarantees: an [`AdmittedArtifact`] exists only if an ECDSA P-256 signature over the
//!   sha256 of exactly its component bytes verified with one of the tenant's keys. A keyless
//!   [`VerifiedSignature`] exists only if the whole Sigstore client-specification check
//!   passed (certificate chain to a trusted CA at a verified signing time, SCT, identity,
//!   transparency log entry with promise and/or proof and checkpoint, timestamps). Nothing
//!   outside this crate can build either. A composed [`AdmittedArtifact`] exists only if the
//!   function's signature and every pinned layer's signature verified with the tenant's
//!   signers, and each layer exports, with a fitting type, the import it is pinned for.
//! * Does not check revocation (Sigstore has none) and, for key-based bundles, does not check
//!   transparency log entries (no trusted root is involved).
//! * Never panics on input, never puts key material or component bytes in an error or
//!   `Debug` output, and escapes outside text quoted in error messages.

mod artifact;
mod attestation;
mod bundle;
mod certificate;
mod digest;
mod dsse;
mod error;
#[cfg(test)]
mod keyless_tests;
mod keys;
mod layers;
mod manifest;
mod osv;
mod pipeline;
mod sbom;
mod signature;
mod slsa;
mod timestamp;
mod tlog;
mod trust_root;
mod verify;
mod version;
mod vulndb;

pub use artifact::{admit, readmit, AdmittedArtifact};
pub use attestation::{
    sign_attestation, Attestation, AttestationError, VerifiedAttestation, IN_TOTO_STATEMENT_V1,
};
pub use bundle::{sign_artifact, verify_bundle, Bundle, BUNDLE_MEDIA_TYPE_V03};
pub use digest::Digest;
pub use error::{AdmissionError, ManifestError};
pub use keys::{KeyId, PublicKey, SigningKey};
pub use layers::{compose, verify_layer, VerifiedLayer, MAX_LAYER_BYTES};
pub use manifest::{
    normalize_path, FunctionName, InterfaceName, Limits, Manifest, Route, TenantName, MAX_LAYERS,
};
pub use osv::{cvss3_base_score, Advisory, Affected, Severity};
pub use pipeline::{
    admit_submission, parse_severity, render_table, severity_name, verify_signature,
    AdmissionReport, AdmissionRules, Admitted, Check, CheckResult, KeylessSigner, Refused,
    Submission, SubmittedFile, TrustedSigners, CYCLONEDX_PREDICATE_PREFIX, MAX_ATTESTATIONS,
};
pub use sbom::{package_from_purl, Package, Sbom};
pub use slsa::{
    Facts, Provenance, SeverityCounts, TestOutcome, TestResult, VulnerabilityScan,
    SLSA_PROVENANCE_V02, SLSA_PROVENANCE_V1, TEST_RESULT_V01, VULN_V1,
};
pub use trust_root::TrustedRoot;
pub use verify::{verify, Identity, SignerIdentity, VerificationPolicy, VerifiedSignature};
pub use version::{compare_versions, Ecosystem, Event, RangeKind, Scheme, VersionRange};
pub use vulndb::{findings_at_or_above, Finding, ImportReport, ScanError, VulnDb, DB_FILE_NAME};
pub use zerofn_policy::{Decision, PolicyError, PolicySet, SCHEMA_TEXT as POLICY_SCHEMA};
