#![forbid(unsafe_code)]
//! Supply-chain scanning: CycloneDX SBOMs ([`Sbom`]), OSV records ([`Advisory`]), version
//! ordering per ecosystem ([`compare_versions`], [`VersionRange`]) and the local
//! vulnerability database ([`VulnDb`]) that matches an SBOM's packages against the records.
//! `zerofn scan`, `zerofn vulndb` and the admission pipeline use it.
//!
//! This crate checks no signature and imports nothing from signing: whether an SBOM is
//! trusted (it came in a verified attestation) is decided by the caller.
//!
//! # Trust
//! * Trusts the caller for the OSV records it imports (they are the platform's database) and
//!   for deciding whether an SBOM's producer is trusted. Trusts `semver` and `pep440_rs` for
//!   version precedence, `packageurl` for package URLs and `zip` for inflating exports.
//! * Trusts nothing in an SBOM, OSV record, zip or database file: each is parsed into a type
//!   that holds its rules, with size limits (records, import size, inflated bytes, directory
//!   depth), and refused with a [`ScanError`] otherwise. Outside text quoted in a message is
//!   escaped.
//! * Guarantees: a [`Finding`] names a package of the SBOM and the records whose ranges
//!   include its version, evaluated as the OSV schema's "Evaluation" section says, with the
//!   ecosystem's ordering (or the documented generic approximation, `version.rs`). A record
//!   without a rating is [`Severity::Unknown`], which never meets a threshold.
//! * Never panics on input.

mod error;
mod osv;
mod sbom;
mod version;
mod vulndb;

pub use error::ScanError;
pub use osv::{cvss3_base_score, cvss4_score, Advisory, Affected, Severity};
pub use sbom::{package_from_purl, Package, Sbom};
pub use version::{compare_versions, Ecosystem, Event, RangeKind, Scheme, VersionRange};
pub use vulndb::{findings_at_or_above, Finding, ImportReport, VulnDb, DB_FILE_NAME};
