#![forbid(unsafe_code)]
//! Admission of function artifacts: the only way into the platform for code.
//!
//! This crate runs the admission decision: [`admit`] (a manifest, component and bundle
//! against a tenant's keys), whose only success value is an [`AdmittedArtifact`], and the
//! full pipeline [`admit_submission`] (signature, attestations and the facts read from them,
//! SBOM scan against the vulnerability database, the tenant's Cedar admission policy), which
//! reports every check ([`AdmissionReport`]). The sandbox runs nothing else. Layers (shared
//! library components a manifest pins by digest under `[layers]`) are verified with
//! [`verify_layer`] and plugged into an admitted function by [`compose`] (`layers.rs`, with
//! `wac-graph`); the result is still an [`AdmittedArtifact`], whose
//! [`AdmittedArtifact::signed_digest`] is the function's own and whose
//! [`AdmittedArtifact::digest`] is the composed component's. The facts of verified in-toto
//! attestations (SLSA provenance, test results, vulnerability scans) are read in `slsa.rs`.
//!
//! The parts with their own trust anchors live in their own crates and are re-exported
//! here: the manifest (`zerofn-manifest`), Sigstore signing and verification
//! (`zerofn-sigstore`), the SBOM/OSV scan (`zerofn-vulndb`) and the shared identifiers
//! (`zerofn-types`).
//!
//! # Trust
//! * Trusts the caller for *which* signers a tenant trusts (`admit` is handed the keys stored
//!   for the manifest's tenant, `admit_submission` its [`TrustedSigners`] and admission
//!   policy) and for the vulnerability database. Trusts `zerofn-sigstore` for every
//!   signature decision ([`VerifiedSignature`], [`VerifiedAttestation`]), `zerofn-manifest`
//!   for the manifest's rules, `zerofn-vulndb` for findings, `zerofn-policy` (Cedar) for the
//!   policy decision and `wac-graph` for composition.
//! * Trusts nothing in a component or an attestation's predicate: facts are read only from
//!   [`VerifiedAttestation`]s, and each predicate is parsed into a type with its rules.
//! * Guarantees: an [`AdmittedArtifact`] exists only if an ECDSA P-256 signature over the
//!   sha256 of exactly its component bytes verified with one of the tenant's keys (or a
//!   keyless signature verified with one of its identities). Nothing outside this crate can
//!   build one. A composed [`AdmittedArtifact`] exists only if the function's signature and
//!   every pinned layer's signature verified with the tenant's signers, and each layer
//!   exports, with a fitting type, the import it is pinned for.
//! * Never panics on input, never puts key material or component bytes in an error or
//!   `Debug` output, and escapes outside text quoted in error messages.

mod artifact;
mod intent;
mod layers;
mod pipeline;
mod slsa;

pub use artifact::{admit, readmit, AdmittedArtifact};
pub use intent::{
    check_intent, intent_content_digest, is_manifest_statement, manifest_predicate,
    reverify_intent, sign_manifest, IntentError, Rollback, SignedIntent, VersionFloor,
    MANIFEST_BUNDLE_FILE, MANIFEST_PREDICATE_V1, MAX_MANIFEST_VERSION,
};
pub use layers::{compose, verify_layer, LayerError, VerifiedLayer, MAX_LAYER_BYTES};
pub use pipeline::{
    admit_submission, parse_severity, render_table, severity_name, AdmissionReport, AdmissionRules,
    Admitted, Check, CheckResult, Refused, Submission, SubmittedFile, CYCLONEDX_PREDICATE_PREFIX,
    MAX_ATTESTATIONS,
};
pub use slsa::{
    Facts, Provenance, SeverityCounts, TestOutcome, TestResult, VulnerabilityScan,
    SLSA_PROVENANCE_V02, SLSA_PROVENANCE_V1, TEST_RESULT_V01, VULN_V1,
};

// The moved items, re-exported so that `zerofn_admission::…` paths keep working.
pub use zerofn_manifest::{
    canonical_bytes, first_difference, normalize_path, Difference, InterfaceName, Limits, Manifest,
    ManifestError, Route, SignedContent, Trigger, MAX_CONCURRENCY, MAX_LAYERS, MAX_RATE,
};
pub use zerofn_policy::{Decision, PolicyError, PolicySet, SCHEMA_TEXT as POLICY_SCHEMA};
pub use zerofn_sigstore::{
    sign_artifact, sign_attestation, verify, verify_bundle, verify_signature, AdmissionError,
    Attestation, AttestationError, Bundle, Identity, KeyId, KeylessSigner, PublicKey,
    SignerIdentity, SigningKey, TrustedRoot, TrustedSigners, VerificationPolicy,
    VerifiedAttestation, VerifiedSignature, BUNDLE_MEDIA_TYPE_V03, IN_TOTO_STATEMENT_V1,
};
pub use zerofn_types::{Digest, FunctionName, TenantName};
pub use zerofn_vulndb::{
    compare_versions, cvss3_base_score, findings_at_or_above, package_from_purl, Advisory,
    Affected, Ecosystem, Event, Finding, ImportReport, Package, RangeKind, Sbom, ScanError, Scheme,
    Severity, VersionRange, VulnDb, DB_FILE_NAME,
};
