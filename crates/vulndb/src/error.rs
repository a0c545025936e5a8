//! [`ScanError`]: the errors of SBOM and OSV parsing and of the vulnerability database, one
//! enum for the whole scan, so `zerofn scan` and admission report them alike.

/// Why an SBOM, an OSV record or the vulnerability database could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The SBOM is larger than the limit.
    #[error(
        "SBOM is {size} bytes, more than the limit of {limit}; split it or scan fewer components"
    )]
    SbomTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The SBOM is not JSON of the expected shape.
    #[error("SBOM is malformed: {reason}; provide a CycloneDX JSON document (1.4 to 1.7)")]
    SbomMalformed {
        /// What is wrong (escaped and shortened).
        reason: String,
    },
    /// The SBOM's `bomFormat` is not `CycloneDX`.
    #[error("SBOM format `{format}` is not supported; provide a CycloneDX JSON document (`bomFormat: CycloneDX`)")]
    SbomNotCycloneDx {
        /// The format it names.
        format: String,
    },
    /// The SBOM's `specVersion` is not one this code reads.
    #[error("CycloneDX spec version `{version}` is not supported; use 1.4, 1.5, 1.6 or 1.7")]
    SbomSpecVersionUnsupported {
        /// The version it names.
        version: String,
    },
    /// A component's package URL does not parse.
    #[error("package URL `{purl}` is invalid: {reason}; fix the SBOM generator's output")]
    PurlInvalid {
        /// The purl (escaped and shortened).
        purl: String,
        /// Why.
        reason: String,
    },
    /// An OSV record is larger than the limit.
    #[error("OSV record is {size} bytes, more than the limit of {limit}")]
    OsvTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// An OSV record is not a valid OSV record.
    #[error("OSV record{} is malformed: {reason}", id.as_ref().map(|id| format!(" `{id}`")).unwrap_or_default())]
    OsvMalformed {
        /// The record's id, if it got that far.
        id: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// A CVSS vector does not parse.
    #[error("CVSS vector `{vector}` is invalid: {reason}")]
    CvssInvalid {
        /// The vector (escaped and shortened).
        vector: String,
        /// Why.
        reason: String,
    },
    /// A file or directory could not be read or written.
    #[error("cannot access `{path}`: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A zip archive could not be read.
    #[error("cannot read zip archive `{path}`: {source}; provide an OSV export such as `<ecosystem>/all.zip`")]
    ZipInvalid {
        /// The archive.
        path: String,
        /// The zip error.
        #[source]
        source: zip::result::ZipError,
    },
    /// A zip archive inflates to more than the limit.
    #[error("zip archive `{path}` inflates to more than {limit} bytes; refusing it")]
    ZipTooLarge {
        /// The archive.
        path: String,
        /// The limit.
        limit: u64,
    },
    /// An import holds more records than the limit.
    #[error("import holds more than {limit} records; import one ecosystem at a time")]
    TooManyRecords {
        /// The limit.
        limit: usize,
    },
    /// An import path is neither a directory, a `.json` file nor a `.zip` file.
    #[error("`{path}` is not a directory, a `.json` OSV record or a `.zip` OSV export")]
    ImportSourceUnsupported {
        /// The path.
        path: String,
    },
    /// There is no database in the directory.
    #[error("no vulnerability database in `{dir}`; import OSV records first with `zerofn vulndb import <all.zip|dir>`")]
    DbMissing {
        /// The directory.
        dir: String,
    },
    /// The database file is not one this code wrote.
    #[error("vulnerability database `{path}` is corrupt: {reason}; import the OSV records again")]
    DbCorrupt {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}
