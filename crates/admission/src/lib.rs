#![forbid(unsafe_code)]
//! Admission of function artifacts: the only way into the platform for code.
//!
//! This crate owns the function manifest (`zerofn.toml`, [`Manifest`]), signing keys
//! ([`SigningKey`], [`PublicKey`], [`KeyId`]), Sigstore bundles ([`Bundle`],
//! [`sign_artifact`], [`verify_bundle`]) and the admission decision ([`admit`]), whose
//! only success value is an [`AdmittedArtifact`]. The sandbox runs nothing else.
//!
//! # Trust
//! * Trusts the caller for *which* keys a tenant trusts: `admit` is handed the keys stored for
//!   the manifest's tenant and does not look them up. It trusts `p256`, `sha2` and `base64`
//!   for the cryptography and encodings (no hand-rolled crypto).
//! * Trusts nothing in a manifest, bundle, component or PEM: each is parsed here into a
//!   type that holds its rules ([`Digest`], [`FunctionName`], [`TenantName`], [`Route`],
//!   [`Bundle`]), with size limits, and refused with a specific error otherwise. Unknown
//!   manifest keys are refused. A bundle's hint and message digest are treated as the
//!   unauthenticated hints they are.
//! * Guarantees: an [`AdmittedArtifact`] exists only if an ECDSA P-256 signature over the
//!   sha256 of exactly its component bytes verified with one of the tenant's keys. Nothing
//!   outside this crate can build one, or a [`VerifiedSignature`].
//! * Does not yet verify keyless (Fulcio certificate) bundles, DSSE envelopes, transparency
//!   log entries or timestamps: the first two are refused
//!   ([`AdmissionError::KeylessNotSupported`], [`AdmissionError::DsseNotSupported`]), and
//!   log entries in a key-based bundle are ignored, so admission does not prove a signature
//!   was logged.
//! * Never panics on input, never puts key material or component bytes in an error or
//!   `Debug` output, and escapes outside text quoted in error messages.

mod artifact;
mod bundle;
mod certificate;
mod digest;
mod dsse;
mod error;
mod keys;
mod manifest;
mod signature;
mod timestamp;
mod tlog;
mod trust_root;
mod verify;

pub use artifact::{admit, AdmittedArtifact};
pub use bundle::{sign_artifact, verify_bundle, Bundle, BUNDLE_MEDIA_TYPE_V03};
pub use trust_root::TrustedRoot;
pub use verify::{verify, Identity, SignerIdentity, VerificationPolicy, VerifiedSignature};
pub use digest::Digest;
pub use error::{AdmissionError, ManifestError};
pub use keys::{KeyId, PublicKey, SigningKey};
pub use manifest::{FunctionName, Limits, Manifest, Route, TenantName};
