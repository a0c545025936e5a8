#![forbid(unsafe_code)]
//! Sigstore signing and verification: signing keys ([`SigningKey`], [`PublicKey`],
//! [`KeyId`]), Sigstore bundles ([`Bundle`], [`sign_artifact`]), their verification
//! ([`verify`] against a [`VerificationPolicy`]: trusted keys, or a keyless [`Identity`] and
//! a [`TrustedRoot`]; [`verify_bundle`] is the key-based form), in-toto attestations in DSSE
//! envelopes ([`Attestation`], [`sign_attestation`]), and the trusted-signer policy
//! ([`TrustedSigners`], [`verify_signature`]) that admission, attestations and layers share.
//! `zerofn verify` calls [`verify`] too.
//!
//! # Trust
//! * Trusts the caller for *which* keys and identities are trusted ([`TrustedSigners`],
//!   [`VerificationPolicy`]) and for the [`TrustedRoot`] of a keyless policy: the trusted root
//!   is the anchor for Fulcio CAs, Rekor and CT logs and timestamp authorities. It trusts
//!   RustCrypto (`p256`, `p384`, `ecdsa`, `ed25519-dalek`, `rsa`, `sha2`, `x509-cert`, `der`,
//!   `spki`, `cms`, `x509-tsp`) for cryptography and encodings; the RFC 9162 inclusion proof,
//!   the signed-note checkpoint and the RFC 6962 SCT input are assembled here from those
//!   primitives, because no such crate covers them.
//! * Trusts nothing in a bundle, envelope, trusted root or PEM: each is parsed here into a
//!   type that holds its rules ([`Bundle`], [`TrustedRoot`], [`Attestation`]), with size
//!   limits, and refused with a specific error otherwise. A bundle's key hint, message
//!   digest and embedded timestamp certificates are unauthenticated hints, never trusted.
//! * Guarantees: a key-based [`VerifiedSignature`] exists only if an ECDSA P-256 signature
//!   over the artifact's sha256 verified with one of the trusted keys. A keyless
//!   [`VerifiedSignature`] exists only if the whole Sigstore client-specification check
//!   passed (certificate chain to a trusted CA at a verified signing time, SCT, identity,
//!   transparency log entry with promise and/or proof and checkpoint, timestamps). A
//!   [`VerifiedAttestation`] exists only if its envelope's signature verified with a trusted
//!   signer and its statement names the component. Nothing outside this crate can build any
//!   of them.
//! * Does not check revocation (Sigstore has none) and, for key-based bundles, does not check
//!   transparency log entries (no trusted root is involved).
//! * Never panics on input, never puts key material in an error or `Debug` output, and
//!   escapes outside text quoted in error messages.

mod anchor;
mod attestation;
mod bundle;
mod certificate;
mod dsse;
mod encoding;
mod error;
#[cfg(test)]
mod keyless_tests;
mod keys;
mod signature;
mod signers;
mod timestamp;
mod tlog;
mod trust_root;
mod verify;

pub use attestation::{
    sign_attestation, Attestation, AttestationError, VerifiedAttestation, IN_TOTO_STATEMENT_V1,
};
pub use bundle::{sign_artifact, Bundle, BUNDLE_MEDIA_TYPE_V03};
pub use error::AdmissionError;
pub use keys::{KeyId, PublicKey, SigningKey};
pub use signers::{verify_signature, KeylessSigner, TrustedSigners};
pub use trust_root::TrustedRoot;
pub use verify::{
    verify, verify_bundle, Identity, SignerIdentity, VerificationPolicy, VerifiedSignature,
};
