//! OSV vulnerability records (<https://ossf.github.io/osv-schema/>), reduced to what
//! matching needs: ids, affected packages, ranges, versions, and one [`Severity`].
//!
//! Records are untrusted input: size-limited, parsed with serde into private raw types and
//! checked (every event names exactly one of `introduced`, `fixed`, `last_affected`,
//! `limit`, as the schema's "Requirements" say) before an [`Advisory`] exists.
//!
//! The severity is the database's own rating when it gives one (GHSA's
//! `database_specific.severity`: `LOW`, `MODERATE`, `HIGH`, `CRITICAL`; the same key under
//! `affected[].ecosystem_specific` or `affected[].database_specific`), else the rating of the
//! highest CVSS v3.x base score among the record's vectors ([`cvss3_base_score`]), else the
//! rating of the highest CVSS v4.0 score ([`cvss4_score`]); the RustSec `cvss` crate
//! computes both. CVSS v2 vectors are not scored; a record with nothing else is
//! [`Severity::Unknown`].

use serde::Deserialize;

use crate::error::ScanError;
use crate::version::{Ecosystem, Event, RangeKind, VersionRange};
use zerofn_types::{excerpt, sanitize_message};

/// Largest single OSV record read (real ones are a few KiB; the largest distro advisories
/// are some hundred KiB).
pub const MAX_OSV_RECORD_BYTES: usize = 8 * 1024 * 1024;

/// A qualitative severity (CVSS v3.1 §5 "Qualitative Severity Rating Scale").
///
/// `Unknown` sorts lowest: a record without any rating never meets a threshold. Many
/// records (most PYSEC ones) carry no rating, and failing every scan on them would make
/// the threshold meaningless; `zerofn scan` still lists them.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// No rating could be found or computed.
    Unknown,
    /// CVSS 0.1–3.9 (and 0.0, "none"), GHSA `LOW`.
    Low,
    /// CVSS 4.0–6.9, GHSA `MODERATE`.
    Medium,
    /// CVSS 7.0–8.9, GHSA `HIGH`.
    High,
    /// CVSS 9.0–10.0, GHSA `CRITICAL`.
    Critical,
}

impl Severity {
    /// The rating of a CVSS base score (v3.1 §5). A score of 0.0 ("none") is `Low`: the
    /// record still names a vulnerability.
    pub fn from_score(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else {
            Severity::Low
        }
    }

    /// A database's textual rating (`LOW`, `MODERATE`/`MEDIUM`, `HIGH`, `CRITICAL`, any
    /// case); anything else is `None`.
    pub fn from_label(label: &str) -> Option<Severity> {
        match label.trim().to_ascii_lowercase().as_str() {
            "low" => Some(Severity::Low),
            "moderate" | "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    /// The lowercase name (`low`, …, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One checked OSV record.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Advisory {
    /// The record id (`GHSA-…`, `RUSTSEC-…`, `PYSEC-…`).
    pub id: String,
    /// Other ids of the same vulnerability (CVEs, GHSAs).
    pub aliases: Vec<String>,
    /// The one-line summary, if any.
    pub summary: Option<String>,
    /// When the record was withdrawn, if it was; a withdrawn record matches nothing.
    pub withdrawn: Option<String>,
    /// The affected packages.
    pub affected: Vec<Affected>,
    /// The record's severity (see the module docs for where it comes from).
    pub severity: Severity,
}

/// One `affected[]` entry that names a package.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Affected {
    /// The package's ecosystem.
    pub ecosystem: Ecosystem,
    /// The package name, normalised for its ecosystem ([`Ecosystem::normalize_name`]).
    pub name: String,
    /// The affected ranges.
    pub ranges: Vec<VersionRange>,
    /// The enumerated affected versions.
    pub versions: Vec<String>,
}

impl Advisory {
    /// Parses one OSV JSON record.
    pub fn from_json(bytes: &[u8]) -> Result<Advisory, ScanError> {
        if bytes.len() > MAX_OSV_RECORD_BYTES {
            return Err(ScanError::OsvTooLarge {
                size: bytes.len(),
                limit: MAX_OSV_RECORD_BYTES,
            });
        }
        let raw: RawRecord =
            serde_json::from_slice(bytes).map_err(|e| ScanError::OsvMalformed {
                id: None,
                reason: sanitize_message(&e.to_string(), 200),
            })?;
        raw.check()
    }

    /// Checks an OSV record that is already a JSON value (for example one read from PyPA's
    /// YAML files).
    pub fn from_value(value: serde_json::Value) -> Result<Advisory, ScanError> {
        let raw: RawRecord =
            serde_json::from_value(value).map_err(|e| ScanError::OsvMalformed {
                id: None,
                reason: sanitize_message(&e.to_string(), 200),
            })?;
        raw.check()
    }

    /// The record id followed by its aliases, without duplicates.
    pub fn ids(&self) -> Vec<String> {
        let mut ids = vec![self.id.clone()];
        for alias in &self.aliases {
            if !ids.contains(alias) {
                ids.push(alias.clone());
            }
        }
        ids
    }

    /// Is this record withdrawn?
    pub fn is_withdrawn(&self) -> bool {
        self.withdrawn.is_some()
    }

    /// Is `version` of the package `name` (already normalised) in `ecosystem` affected?
    /// Always `false` for a withdrawn record.
    pub fn affects(&self, ecosystem: &Ecosystem, name: &str, version: &str) -> bool {
        !self.is_withdrawn()
            && self.affected.iter().any(|a| {
                a.ecosystem == *ecosystem
                    && a.name == name
                    && crate::version::is_affected(ecosystem, &a.ranges, &a.versions, version)
            })
    }
}

/// Longest id or alias kept; OSV ids are short (`GHSA-xxxx-xxxx-xxxx`).
const MAX_ID_CHARS: usize = 128;

#[derive(Deserialize)]
struct RawRecord {
    id: String,
    #[serde(default)]
    aliases: Option<Vec<String>>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    affected: Option<Vec<RawAffected>>,
    #[serde(default)]
    severity: Option<Vec<RawSeverity>>,
    #[serde(default)]
    database_specific: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawAffected {
    #[serde(default)]
    package: Option<RawPackage>,
    #[serde(default)]
    ranges: Option<Vec<RawRange>>,
    #[serde(default)]
    versions: Option<Vec<String>>,
    #[serde(default)]
    severity: Option<Vec<RawSeverity>>,
    #[serde(default)]
    ecosystem_specific: Option<serde_json::Value>,
    #[serde(default)]
    database_specific: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawPackage {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct RawRange {
    #[serde(rename = "type")]
    kind: String,
    events: Vec<RawEvent>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(default)]
    introduced: Option<String>,
    #[serde(default)]
    fixed: Option<String>,
    #[serde(default)]
    last_affected: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

#[derive(Deserialize)]
struct RawSeverity {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

impl RawRecord {
    fn check(self) -> Result<Advisory, ScanError> {
        let id = self.id.trim().to_owned();
        if id.is_empty() || id.chars().count() > MAX_ID_CHARS || id.chars().any(char::is_control) {
            return Err(ScanError::OsvMalformed {
                id: None,
                reason: format!(
                    "record id `{}` is empty, too long or has control characters",
                    excerpt(&id)
                ),
            });
        }
        let malformed = |reason: String| ScanError::OsvMalformed {
            id: Some(excerpt(&id)),
            reason,
        };

        let mut severity = self
            .database_specific
            .as_ref()
            .and_then(label_in)
            .unwrap_or(Severity::Unknown);
        let mut cvss_vectors = CvssVectors::default();
        cvss_vectors.extend(self.severity.unwrap_or_default());

        let mut affected = Vec::new();
        let mut package_severity = Severity::Unknown;
        for raw in self.affected.unwrap_or_default() {
            for value in [&raw.ecosystem_specific, &raw.database_specific]
                .into_iter()
                .flatten()
            {
                if let Some(s) = label_in(value) {
                    package_severity = package_severity.max(s);
                }
                // RUSTSEC keeps its vector at `affected[].database_specific.cvss`.
                if let Some(vector) = value.get("cvss").and_then(serde_json::Value::as_str) {
                    cvss_vectors.push_database_vector(vector);
                }
            }
            cvss_vectors.extend(raw.severity.unwrap_or_default());
            let mut ranges = Vec::new();
            for range in raw.ranges.unwrap_or_default() {
                let kind = match range.kind.as_str() {
                    "SEMVER" => RangeKind::Semver,
                    "ECOSYSTEM" => RangeKind::Ecosystem,
                    "GIT" => RangeKind::Git,
                    other => {
                        return Err(malformed(format!(
                            "range type `{}` is not `SEMVER`, `ECOSYSTEM` or `GIT`",
                            excerpt(other)
                        )))
                    }
                };
                let mut events = Vec::with_capacity(range.events.len());
                for event in range.events {
                    events.push(
                        event
                            .check()
                            .map_err(|reason| malformed(reason.to_owned()))?,
                    );
                }
                ranges.push(VersionRange { kind, events });
            }
            let Some(package) = raw.package else {
                // An entry without a package (GIT-only records) cannot match an SBOM entry.
                continue;
            };
            let ecosystem = Ecosystem::from_osv(&package.ecosystem);
            let name = ecosystem.normalize_name(&package.name);
            affected.push(Affected {
                ecosystem,
                name,
                ranges,
                versions: raw.versions.unwrap_or_default(),
            });
        }
        if severity == Severity::Unknown {
            severity = package_severity;
        }
        if severity == Severity::Unknown {
            if let Some(score) = cvss_vectors.best_score() {
                severity = Severity::from_score(score);
            }
        }

        let aliases = self
            .aliases
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty() && a.chars().count() <= MAX_ID_CHARS && a != &id)
            .collect();
        Ok(Advisory {
            id,
            aliases,
            summary: self.summary,
            withdrawn: self.withdrawn,
            affected,
            severity,
        })
    }
}

impl RawEvent {
    fn check(self) -> Result<Event, &'static str> {
        match (self.introduced, self.fixed, self.last_affected, self.limit) {
            (Some(v), None, None, None) => Ok(Event::Introduced(v)),
            (None, Some(v), None, None) => Ok(Event::Fixed(v)),
            (None, None, Some(v), None) => Ok(Event::LastAffected(v)),
            (None, None, None, Some(v)) => Ok(Event::Limit(v)),
            _ => Err("a range event must name exactly one of `introduced`, `fixed`, `last_affected`, `limit`"),
        }
    }
}

/// A `severity` label in a `database_specific` or `ecosystem_specific` object.
fn label_in(value: &serde_json::Value) -> Option<Severity> {
    value
        .get("severity")
        .and_then(serde_json::Value::as_str)
        .and_then(Severity::from_label)
}

/// A record's CVSS vectors, by version, in the order the record gives them.
#[derive(Default)]
struct CvssVectors {
    v3: Vec<String>,
    v4: Vec<String>,
}

impl CvssVectors {
    /// `severity[]` entries: `CVSS_V3` and `CVSS_V4` vectors (`CVSS_V2` and others are not
    /// scored).
    fn extend(&mut self, entries: Vec<RawSeverity>) {
        for entry in entries {
            if entry.kind.starts_with("CVSS_V3") {
                self.v3.push(entry.score);
            } else if entry.kind.starts_with("CVSS_V4") {
                self.v4.push(entry.score);
            }
        }
    }

    /// A vector a database keeps outside `severity[]` (RUSTSEC's
    /// `affected[].database_specific.cvss`), whose version only its prefix tells.
    fn push_database_vector(&mut self, vector: &str) {
        if vector.trim_start().starts_with(CVSS4_PREFIX) {
            self.v4.push(vector.to_owned());
        } else {
            self.v3.push(vector.to_owned());
        }
    }

    /// The highest CVSS v3.x base score among the vectors that score; only when no v3
    /// vector scores, the highest CVSS v4.0 score. A record with both keeps the rating it
    /// had before v4 vectors were read (v3), so adding v4 support changed no existing
    /// outcome; v4 fills in only where there was no score at all.
    fn best_score(&self) -> Option<f64> {
        let max = |scores: &mut dyn Iterator<Item = f64>| {
            scores.fold(None::<f64>, |acc, s| Some(acc.map_or(s, |a| a.max(s))))
        };
        max(&mut self.v3.iter().filter_map(|v| cvss3_base_score(v).ok()))
            .or_else(|| max(&mut self.v4.iter().filter_map(|v| cvss4_score(v).ok())))
    }
}

/// The prefix of a CVSS v4.0 vector.
const CVSS4_PREFIX: &str = "CVSS:4.0/";

/// The CVSS v3 base metrics, each required exactly once.
const CVSS3_BASE_METRICS: [cvss::v3::MetricType; 8] = {
    use cvss::v3::MetricType as M;
    [M::AV, M::AC, M::PR, M::UI, M::S, M::C, M::I, M::A]
};

/// The CVSS v3.0/v3.1 base score of a vector such as
/// `CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H`, per the FIRST CVSS v3.1 specification
/// §7.1 and Appendix A (v3.0 rounds up to one decimal, §7.1 of v3.0), computed by the
/// `cvss` crate. Temporal and environmental metrics may follow and are ignored; each base
/// metric must appear exactly once.
pub fn cvss3_base_score(vector: &str) -> Result<f64, ScanError> {
    let invalid = |reason: String| ScanError::CvssInvalid {
        vector: excerpt(vector),
        reason: sanitize_message(&reason, 200),
    };
    let vector = vector.trim();
    if !(vector.starts_with("CVSS:3.0/") || vector.starts_with("CVSS:3.1/")) {
        return Err(invalid(
            "it does not start with `CVSS:3.0/` or `CVSS:3.1/`".to_owned(),
        ));
    }
    // The crate upper-cases names and values before parsing; CVSS spells them in capitals,
    // and this parser accepted nothing else before the crate was used.
    if vector.chars().any(|c| c.is_ascii_lowercase()) {
        return Err(invalid(
            "metric names and values are written in capitals".to_owned(),
        ));
    }
    let parsed: cvss::v3::Vector = vector.parse().map_err(|e| invalid(format!("{e}")))?;
    // The crate scores a missing base metric as 0; the specification has no such vector.
    let present = parsed
        .metrics()
        .filter(|(metric, _)| CVSS3_BASE_METRICS.contains(metric))
        .count();
    if present != CVSS3_BASE_METRICS.len() {
        return Err(invalid(
            "a base metric (AV, AC, PR, UI, S, C, I, A) is missing".to_owned(),
        ));
    }
    Ok(parsed.base_score().value())
}

/// The CVSS v4.0 score of a vector such as
/// `CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N`, per the FIRST CVSS
/// v4.0 specification (macro vectors and FIRST's lookup table), computed by the `cvss`
/// crate. Threat and environmental metrics count when present (CVSS-B, -BT, -BE or -BTE,
/// as the vector is); every base metric is required. [`Severity::from_score`] rates the
/// result with the same thresholds as a v3 score.
pub fn cvss4_score(vector: &str) -> Result<f64, ScanError> {
    let invalid = |reason: String| ScanError::CvssInvalid {
        vector: excerpt(vector),
        reason: sanitize_message(&reason, 200),
    };
    let vector = vector.trim();
    if !vector.starts_with(CVSS4_PREFIX) {
        return Err(invalid(format!("it does not start with `{CVSS4_PREFIX}`")));
    }
    if vector.chars().any(|c| c.is_ascii_lowercase()) {
        return Err(invalid(
            "metric names and values are written in capitals".to_owned(),
        ));
    }
    let parsed: cvss::v4::Vector = vector.parse().map_err(|e| invalid(format!("{e}")))?;
    Ok(parsed.score().value())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OSV: zerofn_testkit::testdata::Dir = zerofn_testkit::testdata::dir("osv");

    pub(crate) fn read_json(rel: &str) -> Advisory {
        let bytes = std::fs::read(format!("{OSV}/{rel}")).unwrap();
        Advisory::from_json(&bytes).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub(crate) fn read_yaml(rel: &str) -> Advisory {
        let text = std::fs::read_to_string(format!("{OSV}/{rel}")).unwrap();
        let value: serde_json::Value = serde_norway::from_str(&text).unwrap();
        Advisory::from_value(value).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// Every OSV record in the test data parses (the GHSA GraphQL inputs and the schema are
    /// not OSV records and are skipped here).
    #[test]
    fn every_record_parses() {
        let mut count = 0;
        for dir in [
            "github-advisory-database",
            "osv-schema/ghsa-testdata",
            "osv-schema/osv-linter-testdata",
            "rustsec-advisory-db-osv",
            "pypa-advisory-database",
        ] {
            for entry in std::fs::read_dir(format!("{OSV}/{dir}")).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                let rel = format!("{dir}/{name}");
                let advisory = if name.ends_with(".yaml") {
                    read_yaml(&rel)
                } else if dir == "osv-schema/ghsa-testdata" && !name.ends_with(".osv.json") {
                    continue;
                } else {
                    read_json(&rel)
                };
                assert!(!advisory.id.is_empty(), "{rel}");
                count += 1;
            }
        }
        assert_eq!(count, 4 + 11 + 12 + 12 + 6);
    }

    #[test]
    fn ids_severity_and_fields() {
        let vm2 = read_json("github-advisory-database/GHSA-cchq-frgv-rjh5.json");
        assert_eq!(vm2.ids(), ["GHSA-cchq-frgv-rjh5", "CVE-2023-37466"]);
        assert_eq!(vm2.severity, Severity::Critical);
        assert_eq!(vm2.affected.len(), 1);
        assert_eq!(vm2.affected[0].ecosystem, Ecosystem::Npm);
        assert_eq!(
            vm2.affected[0].ranges[0].events,
            [
                Event::Introduced("0".into()),
                Event::LastAffected("3.9.19".into())
            ]
        );

        let pypi = read_json("osv-schema/ghsa-testdata/pypi_normalize.osv.json");
        assert_eq!(pypi.affected[0].ecosystem, Ecosystem::PyPi);
        assert_eq!(pypi.affected[0].name, "products-pluggableauthservice");

        let withdrawn = read_json("osv-schema/ghsa-testdata/withdrawn.osv.json");
        assert!(withdrawn.is_withdrawn());
        assert!(!withdrawn.affects(
            &withdrawn.affected[0].ecosystem.clone(),
            &withdrawn.affected[0].name.clone(),
            "0.0.1"
        ));

        // RUSTSEC: no database rating; the vector at affected[].database_specific.cvss.
        let h2 = read_json("rustsec-advisory-db-osv/RUSTSEC-2024-0003.json");
        assert_eq!(h2.severity, Severity::Unknown);
        let regex = read_json("rustsec-advisory-db-osv/RUSTSEC-2022-0013.json");
        assert_ne!(regex.severity, Severity::Unknown);

        let yaml = read_yaml("pypa-advisory-database/PYSEC-2022-202.yaml");
        assert_eq!(
            yaml.ids(),
            ["PYSEC-2022-202", "CVE-2022-29217", "GHSA-ffqj-6fqr-9h24"]
        );
        assert_eq!(yaml.affected[0].versions.len(), 17);
        assert_eq!(yaml.affected[0].ranges[0].kind, RangeKind::Git);
    }

    /// (file, package, [(version, affected?)]).
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, bool)]);

    /// (version, affected?) per real record; the expectations come from the testdata
    /// README's tables.
    #[test]
    fn real_records_match_ecosystem_correctly() {
        let cases: &[Case<'_>] = &[
            (
                "rustsec-advisory-db-osv/RUSTSEC-2020-0071.json",
                "time",
                &[
                    ("0.1.45", true),
                    ("0.2.0", false),
                    ("0.2.3", false),
                    ("0.2.6", false),
                    ("0.2.7", true),
                    ("0.2.22", true),
                    ("0.2.23", false),
                    ("0.3.0", false),
                ],
            ),
            (
                "rustsec-advisory-db-osv/RUSTSEC-2021-0124.json",
                "tokio",
                &[
                    ("0.1.13", false),
                    ("0.1.14", true),
                    ("1.8.3", true),
                    ("1.8.4", false),
                    ("1.8.5", false),
                    ("1.9.0", true),
                    ("1.13.0", true),
                    ("1.13.1", false),
                ],
            ),
            (
                "rustsec-advisory-db-osv/RUSTSEC-2023-0071.json",
                "rsa",
                &[("0.1.0", true), ("0.9.6", true), ("99.0.0", true)],
            ),
            (
                "rustsec-advisory-db-osv/RUSTSEC-2024-0003.json",
                "h2",
                &[
                    ("0.3.23", true),
                    ("0.3.24", false),
                    ("0.4.0", true),
                    ("0.4.1", true),
                    ("0.4.2", false),
                    ("0.4.0-alpha.1", true),
                ],
            ),
            (
                "rustsec-advisory-db-osv/RUSTSEC-2024-0399.json",
                "rustls",
                &[
                    ("0.23.0", false),
                    ("0.23.12", false),
                    ("0.23.13", true),
                    ("0.23.17", true),
                    ("0.23.18", false),
                    ("0.22.4", false),
                ],
            ),
            (
                "rustsec-advisory-db-osv/RUSTSEC-2025-0007.json",
                "ring",
                &[("0.17.0", false)],
            ),
            (
                "rustsec-advisory-db-osv/RUSTSEC-2026-0098.json",
                "rustls-webpki",
                &[
                    ("0.103.11", true),
                    ("0.103.12", false),
                    ("0.104.0-alpha.1", true),
                    ("0.104.0-alpha.5", true),
                    ("0.104.0-alpha.6", false),
                    ("0.104.0", false),
                ],
            ),
            (
                "rustsec-advisory-db-osv/RUSTSEC-2026-0149.json",
                "wasmtime-wasi",
                &[
                    ("24.0.8", true),
                    ("24.0.9", false),
                    ("25.0.0", true),
                    ("36.0.10", false),
                    ("44.0.1", true),
                    ("45.0.0", false),
                    ("46.0.0", false),
                ],
            ),
            (
                "github-advisory-database/GHSA-cchq-frgv-rjh5.json",
                "vm2",
                &[("3.9.11", true), ("3.9.19", true), ("3.9.20", false)],
            ),
            (
                "github-advisory-database/GHSA-xvch-5gv4-984h.json",
                "minimist",
                &[
                    ("0.2.3", true),
                    ("0.2.4", false),
                    ("1.0.0", true),
                    ("1.2.5", true),
                    ("1.2.6", false),
                    ("1.2.8", false),
                ],
            ),
            (
                "github-advisory-database/GHSA-c7hr-j4mj-j2w6.json",
                "jsonwebtoken",
                &[("0.1.0", true), ("0.4.0", true), ("4.2.2", false)],
            ),
            (
                "github-advisory-database/GHSA-jf85-cpcp-j695.json",
                "lodash",
                &[
                    ("2.4.2", true),
                    ("4.17.11", true),
                    ("4.17.12", false),
                    ("4.17.21", false),
                ],
            ),
            (
                "osv-schema/ghsa-testdata/equals_with_patch.osv.json",
                "mixin-deep",
                &[
                    ("1.3.1", true),
                    ("1.3.2", false),
                    ("2.0.0", true),
                    ("2.0.1", false),
                ],
            ),
            (
                "osv-schema/osv-linter-testdata/nointroduced-CVE-2023-41045.json",
                "",
                &[],
            ),
        ];
        for (file, name, table) in cases {
            let advisory = read_json(file);
            for (version, want) in *table {
                let eco = advisory.affected[0].ecosystem.clone();
                assert_eq!(
                    advisory.affects(&eco, name, version),
                    *want,
                    "{file}: {name}@{version}"
                );
            }
        }

        let yaml_cases: &[Case<'_>] = &[
            (
                "pypa-advisory-database/PYSEC-2024-60.yaml",
                "idna",
                &[
                    ("3.6", true),
                    ("3.7", false),
                    ("3.11", false),
                    ("0.1", true),
                ],
            ),
            (
                "pypa-advisory-database/PYSEC-2022-202.yaml",
                "pyjwt",
                &[
                    ("1.4.2", false),
                    ("1.5.0", true),
                    ("2.0.0a1", true),
                    ("2.0.0a2", true),
                    ("2.0.0", true),
                    ("2.4.0", false),
                    ("2.3.0", true),
                ],
            ),
            (
                "pypa-advisory-database/PYSEC-2022-230.yaml",
                "lxml",
                &[
                    ("4.9.0", true),
                    ("4.9.1", false),
                    ("4.9.4", false),
                    ("6.0.2", false),
                ],
            ),
        ];
        for (file, name, table) in yaml_cases {
            let advisory = read_yaml(file);
            for (version, want) in *table {
                assert_eq!(
                    advisory.affects(&Ecosystem::PyPi, name, version),
                    *want,
                    "{file}: {name}@{version}"
                );
            }
        }
    }

    #[test]
    fn cvss_base_scores() {
        for (vector, want) in [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:C/C:H/I:N/A:N", 6.8),
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
            ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:U/RL:O", 9.8),
        ] {
            let score = cvss3_base_score(vector).unwrap();
            assert!((score - want).abs() < 1e-9, "{vector}: {score} != {want}");
        }
        for bad in [
            "",
            "CVSS:2.0/AV:N",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",
            "CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/ZZ:1",
            "CVSS:3.1/AV:n/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        ] {
            assert!(
                matches!(cvss3_base_score(bad), Err(ScanError::CvssInvalid { .. })),
                "{bad}"
            );
        }
        // The `Roundup` of CVSS v3.1 Appendix A, now the `cvss` crate's.
        let roundup = |x: f64| cvss::v3::Score::new(x).roundup().value();
        assert_eq!(roundup(4.02), 4.1);
        assert_eq!(roundup(4.000_000_000_1), 4.0);
    }

    #[test]
    fn cvss4_scores() {
        // Scores as FIRST's CVSS v4.0 calculator (https://www.first.org/cvss/calculator/4.0)
        // and the CNAs publish them; the last is CVE-2025-47273 (setuptools, 7.7 High).
        for (vector, want) in [
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                9.3,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H",
                10.0,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N",
                0.0,
            ),
            (
                "CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                8.5,
            ),
            (
                "CVSS:4.0/AV:P/AC:H/AT:P/PR:H/UI:A/VC:N/VI:N/VA:L/SC:N/SI:N/SA:N",
                1.0,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:H/VA:N/SC:N/SI:N/SA:N/E:P",
                7.7,
            ),
        ] {
            let score = cvss4_score(vector).unwrap();
            assert!((score - want).abs() < 1e-9, "{vector}: {score} != {want}");
        }
        for bad in [
            "",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N",
            "CVSS:4.0/AV:N/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            "CVSS:4.0/AV:X/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/ZZ:1",
            "CVSS:4.0/av:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        ] {
            assert!(
                matches!(cvss4_score(bad), Err(ScanError::CvssInvalid { .. })),
                "{bad}"
            );
        }
    }

    fn record_with_severity(severity: serde_json::Value) -> Advisory {
        Advisory::from_value(serde_json::json!({
            "id": "GHSA-test-cvss-v4",
            "severity": severity,
            "affected": [{"package": {"ecosystem": "npm", "name": "x"}, "versions": ["1.0.0"]}]
        }))
        .unwrap()
    }

    #[test]
    fn cvss4_vectors_rate_records_without_v3() {
        let v4_critical = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N";
        let v4_high = "CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N";
        let v3_medium = "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N";
        let only_v4 = record_with_severity(serde_json::json!([
            {"type": "CVSS_V4", "score": v4_high},
            {"type": "CVSS_V4", "score": v4_critical}
        ]));
        assert_eq!(only_v4.severity, Severity::Critical);
        // With a v3 vector, v3 decides, as before v4 vectors were read.
        let both = record_with_severity(serde_json::json!([
            {"type": "CVSS_V3", "score": v3_medium},
            {"type": "CVSS_V4", "score": v4_critical}
        ]));
        assert_eq!(both.severity, Severity::Medium);
        // A v3 vector that does not score leaves the decision to v4.
        let bad_v3 = record_with_severity(serde_json::json!([
            {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N"},
            {"type": "CVSS_V4", "score": v4_high}
        ]));
        assert_eq!(bad_v3.severity, Severity::High);
        let bad_v4 = record_with_severity(serde_json::json!([
            {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N"}
        ]));
        assert_eq!(bad_v4.severity, Severity::Unknown);
        let none = record_with_severity(serde_json::json!([
            {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N"}
        ]));
        assert_eq!(none.severity, Severity::Low);
    }

    #[test]
    fn malformed_records_are_errors() {
        for (bad, why) in [
            (&b"{"[..], "truncated"),
            (b"[]", "not an object"),
            (b"{\"aliases\":[]}", "no id"),
            (b"{\"id\":\"\"}", "empty id"),
            (
                br#"{"id":"X","affected":[{"package":{"ecosystem":"npm","name":"a"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0","fixed":"1"}]}]}]}"#,
                "two keys in one event",
            ),
            (
                br#"{"id":"X","affected":[{"package":{"ecosystem":"npm","name":"a"},"ranges":[{"type":"SEMVERX","events":[]}]}]}"#,
                "unknown range type",
            ),
        ] {
            assert!(
                matches!(Advisory::from_json(bad), Err(ScanError::OsvMalformed { .. })),
                "{why}"
            );
        }
        let big = vec![b' '; MAX_OSV_RECORD_BYTES + 1];
        assert!(matches!(
            Advisory::from_json(&big),
            Err(ScanError::OsvTooLarge { .. })
        ));
        // A GHSA GraphQL advisory (the converter's input) is not an OSV record.
        let graphql =
            std::fs::read(format!("{OSV}/osv-schema/ghsa-testdata/withdrawn.json")).unwrap();
        assert!(Advisory::from_json(&graphql).is_err());
    }

    proptest::proptest! {
        #[test]
        fn record_parser_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = Advisory::from_json(&bytes);
        }

        #[test]
        fn cvss_parser_never_panics(text in "(CVSS:3\\.[01]/)?([A-Z]{1,3}:[A-Z]/){0,10}") {
            let _ = cvss3_base_score(&text);
            let _ = cvss4_score(&text);
        }
    }
}
