//! Typed facts from verified attestations ([`Facts::from_attestations`]): SLSA provenance,
//! vulnerability scans and test results. Unknown predicate types are ignored; a known one
//! that lacks a required field is refused, naming the field.
//!
//! * SLSA provenance v1 (<https://slsa.dev/spec/v1.0/provenance>): `runDetails.builder.id`
//!   and `buildDefinition.buildType` are required. For the GitHub Actions workflow build type
//!   (<https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1>) the source is
//!   `externalParameters.workflow.{repository,ref,path}`, and its digest comes from the
//!   `resolvedDependencies` entry for that repository; for other build types the source is
//!   the first `resolvedDependencies` entry (`uri` split as below, and `digest`).
//! * SLSA provenance v0.2 (<https://slsa.dev/spec/v0.2/provenance>): `builder.id` and
//!   `buildType` are required; the source is `invocation.configSource` (`uri`, `digest`,
//!   `entryPoint`). A `git+https://host/repo@refs/...` URI is split into the repository
//!   `https://host/repo` and the ref `refs/...`.
//! * Vulnerability scans, cosign's `https://cosign.sigstore.dev/attestation/vuln/v1`
//!   (<https://github.com/sigstore/cosign/blob/main/specs/COSIGN_VULN_ATTESTATION_SPEC.md>):
//!   `scanner.uri` is required, `scanner.version` optional. `scanner.result` is the scanner's
//!   own report, so [`SeverityCounts`] are extracted only from the two shapes known here:
//!   Trivy JSON (`Results[].Vulnerabilities[].Severity`) and Grype JSON
//!   (`matches[].vulnerability.severity`). Any other report gives no counts (`None`), never
//!   zeros. See [`SeverityCounts`] for how severities are bucketed.
//! * Test results, in-toto `https://in-toto.io/attestation/test-result/v0.1`
//!   (<https://github.com/in-toto/attestation/blob/main/spec/predicates/test-result.md>):
//!   `result` is required (`PASSED`, `WARNED` or `FAILED`); `passedTests`, `warnedTests` and
//!   `failedTests` are counted. A `PASSED` or `WARNED` result that lists failed tests is
//!   refused as inconsistent.
//!
//! Nothing here checks a signature: only [`crate::VerifiedAttestation`]s, which
//! [`crate::Attestation::verify`] alone makes, are read.

use serde_json::Value;

use zerofn_sigstore::{AttestationError, VerifiedAttestation};
use zerofn_types::excerpt;
use zerofn_types::Digest;

/// SLSA provenance v1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// SLSA provenance v0.2.
pub const SLSA_PROVENANCE_V02: &str = "https://slsa.dev/provenance/v0.2";
/// cosign's vulnerability scan predicate.
pub const VULN_V1: &str = "https://cosign.sigstore.dev/attestation/vuln/v1";
/// in-toto's test result predicate.
pub const TEST_RESULT_V01: &str = "https://in-toto.io/attestation/test-result/v0.1";

/// The GitHub Actions workflow build type of SLSA provenance v1.
const GITHUB_ACTIONS_WORKFLOW_V1: &str =
    "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1";

/// Where and by whom a component was built, from SLSA provenance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    builder_id: String,
    build_type: String,
    source_repository: Option<String>,
    source_ref: Option<String>,
    source_digest: Option<String>,
    entry_point: Option<String>,
}

impl Provenance {
    /// The builder's id (v1 `runDetails.builder.id`, v0.2 `builder.id`).
    pub fn builder_id(&self) -> &str {
        &self.builder_id
    }

    /// The build type (v1 `buildDefinition.buildType`, v0.2 `buildType`).
    pub fn build_type(&self) -> &str {
        &self.build_type
    }

    /// The source repository, for example `https://github.com/org/repo`.
    pub fn source_repository(&self) -> Option<&str> {
        self.source_repository.as_deref()
    }

    /// The source ref, for example `refs/tags/v1.0.1`.
    pub fn source_ref(&self) -> Option<&str> {
        self.source_ref.as_deref()
    }

    /// The source revision as `algorithm:value`, for example `gitCommit:5995...` or
    /// `sha1:f24a...`.
    pub fn source_digest(&self) -> Option<&str> {
        self.source_digest.as_deref()
    }

    /// The workflow or entry point (v1 GitHub Actions `workflow.path`, v0.2
    /// `configSource.entryPoint`).
    pub fn entry_point(&self) -> Option<&str> {
        self.entry_point.as_deref()
    }
}

/// Vulnerability counts by severity, from a scan report. Severities are matched without
/// regard to case: `CRITICAL` counts as critical; `HIGH` as high; `MEDIUM` and `MODERATE` as
/// medium; `LOW` and `NEGLIGIBLE` as low; anything else, or none, as unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeverityCounts {
    /// Critical findings.
    pub critical: u64,
    /// High findings.
    pub high: u64,
    /// Medium (moderate) findings.
    pub medium: u64,
    /// Low (negligible) findings.
    pub low: u64,
    /// Findings of unknown or unrecognised severity.
    pub unknown: u64,
}

impl SeverityCounts {
    fn add(&mut self, severity: Option<&str>) {
        let bucket = match severity.map(str::to_ascii_lowercase).as_deref() {
            Some("critical") => &mut self.critical,
            Some("high") => &mut self.high,
            Some("medium" | "moderate") => &mut self.medium,
            Some("low" | "negligible") => &mut self.low,
            _ => &mut self.unknown,
        };
        *bucket = bucket.saturating_add(1);
    }

    /// All findings.
    pub fn total(&self) -> u64 {
        self.critical
            .saturating_add(self.high)
            .saturating_add(self.medium)
            .saturating_add(self.low)
            .saturating_add(self.unknown)
    }
}

/// A vulnerability scan attestation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VulnerabilityScan {
    scanner: String,
    scanner_version: Option<String>,
    counts: Option<SeverityCounts>,
}

impl VulnerabilityScan {
    /// `scanner.uri`, for example `pkg:github/aquasecurity/trivy@244fd47`.
    pub fn scanner(&self) -> &str {
        &self.scanner
    }

    /// `scanner.version`.
    pub fn scanner_version(&self) -> Option<&str> {
        self.scanner_version.as_deref()
    }

    /// The counts, if the report's shape is one this crate reads (see the module docs).
    pub fn counts(&self) -> Option<&SeverityCounts> {
        self.counts.as_ref()
    }
}

/// The `result` of a test-result attestation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestOutcome {
    /// `PASSED`.
    Passed,
    /// `WARNED`: passed with warnings.
    Warned,
    /// `FAILED`.
    Failed,
}

/// A test-result attestation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestResult {
    outcome: TestOutcome,
    passed: usize,
    warned: usize,
    failed: usize,
}

impl TestResult {
    /// The overall result.
    pub fn outcome(&self) -> TestOutcome {
        self.outcome
    }

    /// How many tests `passedTests`, `warnedTests` and `failedTests` list.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.passed, self.warned, self.failed)
    }

    /// Whether the tests passed: `PASSED` or `WARNED` (with no failed test listed).
    pub fn passed(&self) -> bool {
        self.outcome != TestOutcome::Failed
    }
}

/// What a set of verified attestations about one component says. `None` means no
/// attestation of that kind was given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    provenance: Option<Provenance>,
    vulnerability_scan: Option<VulnerabilityScan>,
    test_result: Option<TestResult>,
}

/// The kinds [`Facts`] knows, for ambiguity checks and messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Provenance,
    Vulnerabilities,
    Tests,
}

impl Kind {
    fn of(predicate_type: &str) -> Option<Kind> {
        match predicate_type {
            SLSA_PROVENANCE_V1 | SLSA_PROVENANCE_V02 => Some(Kind::Provenance),
            VULN_V1 => Some(Kind::Vulnerabilities),
            TEST_RESULT_V01 => Some(Kind::Tests),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Provenance => "slsa-provenance",
            Kind::Vulnerabilities => "vuln",
            Kind::Tests => "test-result",
        }
    }
}

impl Facts {
    /// Reads the known predicates of `attestations`, all about `component`. Refuses an
    /// attestation about another component, a malformed known predicate, and two
    /// attestations of one kind unless they are the same statement from the same signer
    /// (which one would hold is ambiguous). Attestations of other predicate types are
    /// ignored.
    pub fn from_attestations(
        component: &Digest,
        attestations: &[VerifiedAttestation],
    ) -> Result<Facts, AttestationError> {
        let mut facts = Facts::default();
        let mut seen: Vec<(Kind, &VerifiedAttestation)> = Vec::new();
        for attestation in attestations {
            if attestation.digest() != *component {
                return Err(AttestationError::ComponentMismatch {
                    expected: *component,
                    found: attestation.digest(),
                });
            }
            let Some(kind) = Kind::of(attestation.predicate_type()) else {
                continue;
            };
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == kind) {
                if first.signer() == attestation.signer()
                    && first.predicate_type() == attestation.predicate_type()
                    && first.predicate() == attestation.predicate()
                {
                    continue;
                }
                return Err(AttestationError::Ambiguous {
                    kind: kind.name(),
                    first: first.signer().clone(),
                    second: attestation.signer().clone(),
                });
            }
            seen.push((kind, attestation));
            let predicate_type = attestation.predicate_type();
            let predicate = attestation.predicate();
            match kind {
                Kind::Provenance => facts.provenance = Some(provenance(predicate_type, predicate)?),
                Kind::Vulnerabilities => {
                    facts.vulnerability_scan = Some(vulnerability_scan(predicate)?)
                }
                Kind::Tests => facts.test_result = Some(test_result(predicate)?),
            }
        }
        Ok(facts)
    }

    /// The SLSA provenance, if one was given.
    pub fn provenance(&self) -> Option<&Provenance> {
        self.provenance.as_ref()
    }

    /// The vulnerability scan, if one was given.
    pub fn vulnerability_scan(&self) -> Option<&VulnerabilityScan> {
        self.vulnerability_scan.as_ref()
    }

    /// The vulnerability counts, if a scan was given and its report was read.
    pub fn vulnerabilities(&self) -> Option<&SeverityCounts> {
        self.vulnerability_scan
            .as_ref()
            .and_then(VulnerabilityScan::counts)
    }

    /// The test result, if one was given.
    pub fn test_result(&self) -> Option<&TestResult> {
        self.test_result.as_ref()
    }

    /// Whether the tests passed, if a test result was given.
    pub fn tests_passed(&self) -> Option<bool> {
        self.test_result.as_ref().map(TestResult::passed)
    }
}

/// Parses the predicate of `predicate_type` (a provenance type) into [`Provenance`].
pub(crate) fn provenance(
    predicate_type: &str,
    predicate: &Value,
) -> Result<Provenance, AttestationError> {
    let field = Fields {
        predicate_type,
        predicate,
    };
    match predicate_type {
        SLSA_PROVENANCE_V1 => {
            let builder_id = field.required(&["runDetails", "builder", "id"])?;
            let build_type = field.required(&["buildDefinition", "buildType"])?;
            let dependencies = field.array(&["buildDefinition", "resolvedDependencies"])?;
            let (repository, git_ref, entry_point, digest) =
                if build_type == GITHUB_ACTIONS_WORKFLOW_V1 {
                    let workflow = ["buildDefinition", "externalParameters", "workflow"];
                    let repository = field.optional(&[&workflow[..], &["repository"]].concat())?;
                    let git_ref = field.optional(&[&workflow[..], &["ref"]].concat())?;
                    let path = field.optional(&[&workflow[..], &["path"]].concat())?;
                    let digest = dependencies.iter().find_map(|dependency| {
                        let (repo, _) = split_git_uri(dependency.get("uri")?.as_str()?);
                        (Some(repo.as_str()) == repository.as_deref())
                            .then(|| digest_text(dependency.get("digest")))
                            .flatten()
                    });
                    (repository, git_ref, path, digest)
                } else {
                    match dependencies.first() {
                        Some(first) => {
                            let (repository, git_ref) = first
                                .get("uri")
                                .and_then(Value::as_str)
                                .map(split_git_uri)
                                .map_or((None, None), |(r, g)| (Some(r), g));
                            (repository, git_ref, None, digest_text(first.get("digest")))
                        }
                        None => (None, None, None, None),
                    }
                };
            Ok(Provenance {
                builder_id,
                build_type,
                source_repository: repository,
                source_ref: git_ref,
                source_digest: digest,
                entry_point,
            })
        }
        SLSA_PROVENANCE_V02 => {
            let builder_id = field.required(&["builder", "id"])?;
            let build_type = field.required(&["buildType"])?;
            let uri = field.optional(&["invocation", "configSource", "uri"])?;
            let (repository, git_ref) = uri
                .as_deref()
                .map(split_git_uri)
                .map_or((None, None), |(r, g)| (Some(r), g));
            Ok(Provenance {
                builder_id,
                build_type,
                source_repository: repository,
                source_ref: git_ref,
                source_digest: digest_text(
                    predicate
                        .get("invocation")
                        .and_then(|i| i.get("configSource"))
                        .and_then(|c| c.get("digest")),
                ),
                entry_point: field.optional(&["invocation", "configSource", "entryPoint"])?,
            })
        }
        other => Err(AttestationError::PredicateInvalid {
            predicate_type: excerpt(other),
            reason: "it is not a SLSA provenance type this crate reads".to_owned(),
        }),
    }
}

fn vulnerability_scan(predicate: &Value) -> Result<VulnerabilityScan, AttestationError> {
    let field = Fields {
        predicate_type: VULN_V1,
        predicate,
    };
    let scanner = field.required(&["scanner", "uri"])?;
    let scanner_version = field.optional(&["scanner", "version"])?;
    let result = predicate.get("scanner").and_then(|s| s.get("result"));
    Ok(VulnerabilityScan {
        scanner,
        scanner_version,
        counts: result.and_then(severity_counts),
    })
}

/// Counts from a Trivy or Grype JSON report; `None` for any other shape.
fn severity_counts(report: &Value) -> Option<SeverityCounts> {
    let mut counts = SeverityCounts::default();
    if let Some(results) = report.get("Results").and_then(Value::as_array) {
        // Trivy: `Results[].Vulnerabilities[]` (absent when a target has none).
        for result in results {
            let Some(found) = result.get("Vulnerabilities") else {
                continue;
            };
            for vulnerability in found.as_array()? {
                counts.add(vulnerability.get("Severity").and_then(Value::as_str));
            }
        }
        return Some(counts);
    }
    if let Some(matches) = report.get("matches").and_then(Value::as_array) {
        // Grype: `matches[].vulnerability.severity`.
        for m in matches {
            counts.add(
                m.get("vulnerability")
                    .and_then(|v| v.get("severity"))
                    .and_then(Value::as_str),
            );
        }
        return Some(counts);
    }
    None
}

fn test_result(predicate: &Value) -> Result<TestResult, AttestationError> {
    let field = Fields {
        predicate_type: TEST_RESULT_V01,
        predicate,
    };
    let outcome = match field.required(&["result"])?.as_str() {
        "PASSED" => TestOutcome::Passed,
        "WARNED" => TestOutcome::Warned,
        "FAILED" => TestOutcome::Failed,
        other => {
            return Err(field.invalid(format!(
                "`result` is `{}`; expected `PASSED`, `WARNED` or `FAILED`",
                excerpt(other)
            )))
        }
    };
    let passed = field.array(&["passedTests"])?.len();
    let warned = field.array(&["warnedTests"])?.len();
    let failed = field.array(&["failedTests"])?.len();
    if outcome != TestOutcome::Failed && failed > 0 {
        return Err(field.invalid(format!(
            "`result` is not `FAILED` but `failedTests` lists {failed} tests"
        )));
    }
    Ok(TestResult {
        outcome,
        passed,
        warned,
        failed,
    })
}

/// Field access on a predicate, with errors naming the field's path.
struct Fields<'a> {
    predicate_type: &'a str,
    predicate: &'a Value,
}

impl Fields<'_> {
    fn invalid(&self, reason: String) -> AttestationError {
        AttestationError::PredicateInvalid {
            predicate_type: excerpt(self.predicate_type),
            reason,
        }
    }

    fn get(&self, path: &[&str]) -> Option<&Value> {
        path.iter()
            .try_fold(self.predicate, |value, key| value.get(key))
            .filter(|v| !v.is_null())
    }

    /// A string that must be present and non-empty.
    fn required(&self, path: &[&str]) -> Result<String, AttestationError> {
        self.optional(path)?
            .ok_or_else(|| self.invalid(format!("`{}` is missing", path.join("."))))
    }

    /// A string that may be absent (or `null`, or empty); present, it must be a string.
    fn optional(&self, path: &[&str]) -> Result<Option<String>, AttestationError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.invalid(format!("`{}` is not a string", path.join(".")))),
        }
    }

    /// A list that may be absent (empty); present, it must be a list.
    fn array(&self, path: &[&str]) -> Result<&[Value], AttestationError> {
        match self.get(path) {
            None => Ok(&[]),
            Some(Value::Array(list)) => Ok(list),
            Some(_) => Err(self.invalid(format!("`{}` is not a list", path.join(".")))),
        }
    }
}

/// `git+https://host/repo@refs/x` -> (`https://host/repo`, `refs/x`). The ref is the text
/// after the last `@` in the path (an `@` in the authority, as in `git@host`, is user info).
fn split_git_uri(uri: &str) -> (String, Option<String>) {
    let uri = uri.strip_prefix("git+").unwrap_or(uri);
    let path_start = uri
        .find("://")
        .and_then(|scheme_end| {
            let authority = scheme_end.checked_add(3)?;
            let rest = uri.get(authority..)?;
            Some(authority.saturating_add(rest.find('/').unwrap_or(rest.len())))
        })
        .unwrap_or(0);
    let split = uri
        .get(path_start..)
        .and_then(|path| path.rfind('@'))
        .map(|at| path_start.saturating_add(at));
    match split.and_then(|at| Some((uri.get(..at)?, uri.get(at.checked_add(1)?..)?))) {
        Some((repository, git_ref)) if !git_ref.is_empty() => {
            (repository.to_owned(), Some(git_ref.to_owned()))
        }
        _ => (uri.to_owned(), None),
    }
}

/// A digest map as `algorithm:value`, preferring the git commit, then sha256, then sha1.
fn digest_text(digest: Option<&Value>) -> Option<String> {
    let map = digest?.as_object()?;
    ["gitCommit", "sha256", "sha1", "sha512"]
        .iter()
        .find_map(|alg| Some((*alg, map.get(*alg)?.as_str()?)))
        .or_else(|| {
            map.iter()
                .find_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
        })
        .map(|(alg, value)| format!("{alg}:{value}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;
    use zerofn_sigstore::{sign_attestation, Attestation, SigningKey};

    /// Signs and verifies a statement about `component`, returning the verified attestation.
    fn verified(
        component: &[u8],
        predicate_type: &str,
        predicate: serde_json::Value,
        key: &SigningKey,
    ) -> VerifiedAttestation {
        let digest = Digest::of(component);
        let bundle = sign_attestation("c.wasm", &digest, predicate_type, &predicate, key).unwrap();
        let parsed = Attestation::parse_file(bundle.as_bytes()).unwrap();
        assert_eq!(parsed.len(), 1);
        parsed[0].verify(&digest, &[key.public_key()]).unwrap()
    }

    fn base64_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
        base64::engine::general_purpose::STANDARD.decode(text)
    }

    const TESTDATA: zerofn_testkit::testdata::Dir = zerofn_testkit::testdata::dir("");

    fn read(path: &str) -> Vec<u8> {
        let full = format!("{TESTDATA}/{path}");
        std::fs::read(&full).unwrap_or_else(|e| panic!("read {full}: {e}"))
    }

    fn payload_statement(file: &[u8]) -> Value {
        // Raw envelope line or Sigstore bundle: both carry `payload` in base64.
        let json: Value = serde_json::from_slice(file).unwrap();
        let envelope = json.get("dsseEnvelope").unwrap_or(&json);
        let payload = base64_decode(envelope["payload"].as_str().unwrap()).unwrap();
        serde_json::from_slice(&payload).unwrap()
    }

    fn provenance_of(statement: &Value) -> Provenance {
        provenance(
            statement["predicateType"].as_str().unwrap(),
            &statement["predicate"],
        )
        .unwrap()
    }

    #[allow(clippy::too_many_arguments)]
    fn expect(
        p: &Provenance,
        builder_id: &str,
        build_type: &str,
        repository: &str,
        git_ref: &str,
        digest: &str,
        entry_point: &str,
    ) {
        assert_eq!(p.builder_id(), builder_id);
        assert_eq!(p.build_type(), build_type);
        assert_eq!(p.source_repository(), Some(repository));
        assert_eq!(p.source_ref(), Some(git_ref));
        assert_eq!(p.source_digest(), Some(digest));
        assert_eq!(p.entry_point(), Some(entry_point));
    }

    #[test]
    fn slsa_github_generator_v02_provenance_parses() {
        const GENERIC: &str = "https://github.com/slsa-framework/slsa-github-generator/generic@v1";
        for (path, builder, repository, git_ref, digest, entry_point) in [
            (
                "attestations/slsa-verifier/gha_generic-v2.1.0/binary-linux-amd64-workflow_dispatch.intoto.jsonl",
                "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_generic_slsa3.yml@refs/tags/v2.1.0",
                "https://github.com/slsa-framework/example-package",
                "refs/heads/main",
                "sha1:4d329c75e7ec1725f7c9ce917a8799d408d06be3",
                ".github/workflows/verifier-e2e.all.workflow_dispatch.main.all.slsa3.yml",
            ),
            (
                "attestations/slsa-verifier/gha_generic-v2.1.0/binary-linux-amd64-push-v14.2.intoto.jsonl",
                "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_generic_slsa3.yml@refs/tags/v2.1.0",
                "https://github.com/slsa-framework/example-package",
                "refs/tags/v14.2",
                "sha1:4d329c75e7ec1725f7c9ce917a8799d408d06be3",
                ".github/workflows/verifier-e2e.all.workflow_dispatch.main.all.slsa3.yml",
            ),
            (
                "attestations/slsa-verifier/annotated-tag.intoto.jsonl",
                "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_generic_slsa3.yml@refs/tags/v1.2.2",
                "https://github.com/asraa/slsa-on-github-test",
                "refs/tags/v1.5.0",
                "sha1:f24af35a7c714f1b4eeb53afefb57fa11bd5c95c",
                ".github/workflows/slsa-generic.yml",
            ),
            (
                "attestations/slsa-verifier/workflow-inputs.intoto.jsonl",
                "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_generic_slsa3.yml@refs/tags/v1.2.2",
                "https://github.com/laurentsimon/slsa-on-github-test",
                "refs/heads/main",
                "sha1:e52ca19ae4944c39dc6060b514ac496e62a9a077",
                ".github/workflows/slsa-generic.yml",
            ),
        ] {
            let file = read(path);
            // The file parses as an attestation, and its statement's predicate as provenance.
            assert_eq!(Attestation::parse_file(&file).unwrap().len(), 1);
            let statement = payload_statement(&file);
            assert_eq!(statement["predicateType"], SLSA_PROVENANCE_V02);
            let p = provenance_of(&statement);
            expect(&p, builder, GENERIC, repository, git_ref, digest, entry_point);
        }
        let p = provenance_of(&payload_statement(&read(
            "attestations/slsa-verifier/binary-linux-amd64-e2e-builder-repo.intoto.jsonl",
        )));
        expect(
            &p,
            "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/builder_go_slsa3.yml@refs/heads/main",
            "https://github.com/slsa-framework/slsa-github-generator/go@v1",
            "https://github.com/slsa-framework/example-package",
            "refs/heads/main",
            "sha1:497ddc0013b972c091ed4b184f350f996ed8cb0e",
            ".github/workflows/e2e.go.schedule.main.config-ldflags-main.slsa3.yml",
        );
    }

    #[test]
    fn npm_provenance_v1_and_v02_parse() {
        let npm = |case: &str| {
            let file: Value = serde_json::from_slice(&read(&format!(
                "attestations/slsa-verifier/npm-gha/{case}.tgz.json"
            )))
            .unwrap();
            let bundle = file["attestations"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| {
                    a["predicateType"]
                        .as_str()
                        .unwrap()
                        .starts_with("https://slsa.dev/provenance/")
                })
                .unwrap()["bundle"]
                .clone();
            let bytes = serde_json::to_vec(&bundle).unwrap();
            assert_eq!(Attestation::parse_file(&bytes).unwrap().len(), 1, "{case}");
            provenance_of(&payload_statement(&bytes))
        };
        expect(
            &npm("gundam-visor-cli-v1-tag"),
            "https://github.com/actions/runner/github-hosted",
            GITHUB_ACTIONS_WORKFLOW_V1,
            "https://github.com/ramonpetgrave64/gundam-visor",
            "refs/tags/v1.0.1",
            "gitCommit:599500821344b070902a7a5666064bfdaba715df",
            ".github/workflows/npm-publish.yml",
        );
        expect(
            &npm("provenance-npm-test-cli-v1-prega"),
            "https://github.com/actions/runner/github-hosted",
            GITHUB_ACTIONS_WORKFLOW_V1,
            "https://github.com/sigstore/sigstore-js",
            "refs/heads/main",
            "gitCommit:46e7056ff9912ebfee5298d94024895a9fea76c0",
            ".github/workflows/release.yml",
        );
        expect(
            &npm("supreme-googles-cli-v02-tag"),
            "https://github.com/actions/runner",
            "https://github.com/npm/cli/gha/v2",
            "https://github.com/trishankatdatadog/supreme-goggles",
            "refs/tags/v1.0.5",
            "sha1:38ebf99444e033b2f1550c9aaaeacd62d02a12ba",
            ".github/workflows/npm-publish.yml",
        );
        expect(
            &npm("provenance-npm-test-cli-v02-prega"),
            "https://github.com/actions/runner",
            "https://github.com/npm/cli/gha/v2",
            "https://github.com/laurentsimon/provenance-npm-test",
            "refs/heads/main",
            "sha1:b38894f2dda4355ea5606fccb166e61565e12a14",
            ".github/workflows/release.yml",
        );
    }

    #[test]
    fn v1_other_build_types_take_the_first_resolved_dependency() {
        let p = provenance(
            SLSA_PROVENANCE_V1,
            &serde_json::json!({
                "buildDefinition": {
                    "buildType": "https://example.com/build/v1",
                    "resolvedDependencies": [{"uri": "git+https://git.example.com/team/fn@refs/heads/release", "digest": {"sha1": "abc"}}]
                },
                "runDetails": {"builder": {"id": "https://ci.example.com/builder"}}
            }),
        )
        .unwrap();
        assert_eq!(
            p.source_repository(),
            Some("https://git.example.com/team/fn")
        );
        assert_eq!(p.source_ref(), Some("refs/heads/release"));
        assert_eq!(p.source_digest(), Some("sha1:abc"));
        assert_eq!(p.entry_point(), None);
    }

    #[test]
    fn git_uris_split_into_repository_and_ref() {
        for (uri, repository, git_ref) in [
            (
                "git+https://github.com/a/b@refs/tags/v1",
                "https://github.com/a/b",
                Some("refs/tags/v1"),
            ),
            ("https://github.com/a/b", "https://github.com/a/b", None),
            (
                "git+ssh://git@github.com/a/b",
                "ssh://git@github.com/a/b",
                None,
            ),
            (
                "git+ssh://git@github.com/a/b@main",
                "ssh://git@github.com/a/b",
                Some("main"),
            ),
            ("a@b", "a", Some("b")),
            ("trailing@", "trailing@", None),
            ("", "", None),
        ] {
            assert_eq!(
                split_git_uri(uri),
                (repository.to_owned(), git_ref.map(str::to_owned)),
                "{uri}"
            );
        }
    }

    #[test]
    fn malformed_provenance_names_the_field() {
        for (predicate_type, predicate, reason) in [
            (
                SLSA_PROVENANCE_V1,
                serde_json::json!({}),
                "`runDetails.builder.id` is missing",
            ),
            (
                SLSA_PROVENANCE_V1,
                serde_json::json!({"runDetails": {"builder": {"id": "b"}}}),
                "`buildDefinition.buildType` is missing",
            ),
            (
                SLSA_PROVENANCE_V1,
                serde_json::json!({"runDetails": {"builder": {"id": 7}}}),
                "`runDetails.builder.id` is not a string",
            ),
            (
                SLSA_PROVENANCE_V1,
                serde_json::json!({"runDetails": {"builder": {"id": "b"}}, "buildDefinition": {"buildType": "t", "resolvedDependencies": {}}}),
                "`buildDefinition.resolvedDependencies` is not a list",
            ),
            (
                SLSA_PROVENANCE_V02,
                serde_json::json!(null),
                "`builder.id` is missing",
            ),
            (
                SLSA_PROVENANCE_V02,
                serde_json::json!({"builder": {"id": "b"}, "buildType": "t", "invocation": {"configSource": {"uri": []}}}),
                "`invocation.configSource.uri` is not a string",
            ),
            (
                "https://example.com/other",
                serde_json::json!({}),
                "it is not a SLSA provenance type",
            ),
        ] {
            let err = provenance(predicate_type, &predicate).unwrap_err();
            assert!(
                matches!(&err, AttestationError::PredicateInvalid { reason: r, .. } if r.starts_with(reason)),
                "{predicate}: {err:?}"
            );
        }
    }

    fn trivy_report() -> Value {
        serde_json::json!({
            "SchemaVersion": 2,
            "Results": [
                {"Target": "a", "Vulnerabilities": [
                    {"VulnerabilityID": "CVE-1", "Severity": "CRITICAL"},
                    {"VulnerabilityID": "CVE-2", "Severity": "HIGH"},
                    {"VulnerabilityID": "CVE-3", "Severity": "high"},
                    {"VulnerabilityID": "CVE-4", "Severity": "UNKNOWN"},
                ]},
                {"Target": "b"},
                {"Target": "c", "Vulnerabilities": [{"Severity": "LOW"}, {"Severity": "MEDIUM"}, {}]},
            ]
        })
    }

    #[test]
    fn each_kind_signs_verifies_and_becomes_facts() {
        let key = SigningKey::generate();
        let component = b"\0asm";
        let provenance = verified(
            component,
            SLSA_PROVENANCE_V1,
            serde_json::json!({
                "buildDefinition": {
                    "buildType": GITHUB_ACTIONS_WORKFLOW_V1,
                    "externalParameters": {"workflow": {"repository": "https://github.com/o/r", "ref": "refs/tags/v1", "path": ".github/workflows/build.yml"}},
                    "resolvedDependencies": [{"uri": "git+https://github.com/o/r@refs/tags/v1", "digest": {"gitCommit": "c0ffee"}}]
                },
                "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}}
            }),
            &key,
        );
        let vuln = verified(
            component,
            VULN_V1,
            serde_json::json!({"scanner": {"uri": "pkg:github/aquasecurity/trivy@244fd47", "version": "0.50.0", "result": trivy_report()}}),
            &key,
        );
        let tests = verified(
            component,
            TEST_RESULT_V01,
            serde_json::json!({"result": "WARNED", "passedTests": ["a", "b"], "warnedTests": ["c"], "failedTests": []}),
            &key,
        );
        let unknown = verified(component, "https://example.com/other/v1", Value::Null, &key);
        let facts =
            Facts::from_attestations(&Digest::of(component), &[provenance, vuln, tests, unknown])
                .unwrap();
        let p = facts.provenance().unwrap();
        expect(
            p,
            "https://github.com/actions/runner/github-hosted",
            GITHUB_ACTIONS_WORKFLOW_V1,
            "https://github.com/o/r",
            "refs/tags/v1",
            "gitCommit:c0ffee",
            ".github/workflows/build.yml",
        );
        let scan = facts.vulnerability_scan().unwrap();
        assert_eq!(scan.scanner(), "pkg:github/aquasecurity/trivy@244fd47");
        assert_eq!(scan.scanner_version(), Some("0.50.0"));
        assert_eq!(
            facts.vulnerabilities(),
            Some(&SeverityCounts {
                critical: 1,
                high: 2,
                medium: 1,
                low: 1,
                unknown: 2
            })
        );
        assert_eq!(facts.vulnerabilities().unwrap().total(), 7);
        assert_eq!(facts.tests_passed(), Some(true));
        assert_eq!(facts.test_result().unwrap().outcome(), TestOutcome::Warned);
        assert_eq!(facts.test_result().unwrap().counts(), (2, 1, 0));

        // Nothing given: nothing known.
        let none = Facts::from_attestations(&Digest::of(component), &[]).unwrap();
        assert_eq!(none, Facts::default());
        assert_eq!(none.tests_passed(), None);
        assert_eq!(none.vulnerabilities(), None);
    }

    #[test]
    fn scan_reports_are_counted_only_when_their_shape_is_known() {
        let grype = serde_json::json!({"matches": [
            {"vulnerability": {"id": "GHSA-1", "severity": "Negligible"}},
            {"vulnerability": {"id": "GHSA-2", "severity": "Critical"}},
            {"vulnerability": {"id": "GHSA-3", "severity": "Moderate"}},
        ]});
        for (result, counts) in [
            (
                grype,
                Some(SeverityCounts {
                    critical: 1,
                    medium: 1,
                    low: 1,
                    ..SeverityCounts::default()
                }),
            ),
            (
                serde_json::json!({"Results": []}),
                Some(SeverityCounts::default()),
            ),
            (
                serde_json::json!({"Results": [{"Vulnerabilities": "x"}]}),
                None,
            ),
            (serde_json::json!({"runs": []}), None),
            (Value::Null, None),
        ] {
            let scan =
                vulnerability_scan(&serde_json::json!({"scanner": {"uri": "s", "result": result}}))
                    .unwrap();
            assert_eq!(scan.counts(), counts.as_ref(), "{result}");
        }
        let err = vulnerability_scan(&serde_json::json!({"scanner": {}})).unwrap_err();
        assert!(
            err.to_string().contains("`scanner.uri` is missing"),
            "{err}"
        );
    }

    #[test]
    fn test_results_must_be_consistent() {
        for (predicate, passed) in [
            (
                serde_json::json!({"result": "PASSED", "passedTests": ["a"]}),
                Ok(true),
            ),
            (
                serde_json::json!({"result": "FAILED", "failedTests": ["a"]}),
                Ok(false),
            ),
            (serde_json::json!({"result": "FAILED"}), Ok(false)),
            (
                serde_json::json!({"result": "PASSED", "failedTests": ["a"]}),
                Err("`result` is not `FAILED` but `failedTests` lists 1 tests"),
            ),
            (
                serde_json::json!({"result": "passed"}),
                Err("`result` is `passed`"),
            ),
            (serde_json::json!({}), Err("`result` is missing")),
            (
                serde_json::json!({"result": "PASSED", "passedTests": "a"}),
                Err("`passedTests` is not a list"),
            ),
        ] {
            match (test_result(&predicate), passed) {
                (Ok(result), Ok(expected)) => assert_eq!(result.passed(), expected, "{predicate}"),
                (Err(AttestationError::PredicateInvalid { reason, .. }), Err(expected)) => {
                    assert!(reason.starts_with(expected), "{predicate}: {reason}")
                }
                (other, _) => panic!("{predicate}: {other:?}"),
            }
        }
    }

    #[test]
    fn duplicates_of_one_kind_are_ambiguous() {
        let a = SigningKey::generate();
        let b = SigningKey::generate();
        let component = b"c";
        let digest = Digest::of(component);
        let pass = serde_json::json!({"result": "PASSED"});
        let fail = serde_json::json!({"result": "FAILED"});
        let v1 = serde_json::json!({"buildDefinition": {"buildType": "t"}, "runDetails": {"builder": {"id": "x"}}});
        let v02 = serde_json::json!({"buildType": "t", "builder": {"id": "x"}});
        for (why, first, second) in [
            (
                "same result, different signers",
                verified(component, TEST_RESULT_V01, pass.clone(), &a),
                verified(component, TEST_RESULT_V01, pass.clone(), &b),
            ),
            (
                "different results, same signer",
                verified(component, TEST_RESULT_V01, pass.clone(), &a),
                verified(component, TEST_RESULT_V01, fail.clone(), &a),
            ),
            (
                "provenance v1 and v0.2",
                verified(component, SLSA_PROVENANCE_V1, v1.clone(), &a),
                verified(component, SLSA_PROVENANCE_V02, v02.clone(), &b),
            ),
        ] {
            let err = Facts::from_attestations(&digest, &[first, second]).unwrap_err();
            assert!(
                matches!(err, AttestationError::Ambiguous { .. }),
                "{why}: {err:?}"
            );
            assert!(
                err.to_string()
                    .starts_with("ambiguous attestations: more than one `"),
                "{err}"
            );
        }
        // The same statement twice from the same signer is one fact.
        let once = verified(component, TEST_RESULT_V01, pass.clone(), &a);
        let facts = Facts::from_attestations(&digest, &[once.clone(), once]).unwrap();
        assert_eq!(facts.tests_passed(), Some(true));
    }

    #[test]
    fn attestations_about_another_component_are_refused() {
        let key = SigningKey::generate();
        let other = verified(
            b"other",
            TEST_RESULT_V01,
            serde_json::json!({"result": "PASSED"}),
            &key,
        );
        let err = Facts::from_attestations(&Digest::of(b"mine"), &[other]).unwrap_err();
        assert!(
            matches!(err, AttestationError::ComponentMismatch { .. }),
            "{err:?}"
        );
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-zA-Z@:/+.]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("builder".to_owned()),
                        Just("id".to_owned()),
                        Just("buildType".to_owned()),
                        Just("buildDefinition".to_owned()),
                        Just("runDetails".to_owned()),
                        Just("externalParameters".to_owned()),
                        Just("workflow".to_owned()),
                        Just("resolvedDependencies".to_owned()),
                        Just("uri".to_owned()),
                        Just("digest".to_owned()),
                        Just("invocation".to_owned()),
                        Just("configSource".to_owned()),
                        Just("scanner".to_owned()),
                        Just("result".to_owned()),
                        Just("Results".to_owned()),
                        Just("Vulnerabilities".to_owned()),
                        Just("matches".to_owned()),
                        Just("failedTests".to_owned()),
                        "[a-z]{1,4}",
                    ],
                    inner,
                    0..6,
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn predicate_parsers_never_panic(predicate in json_value()) {
            for predicate_type in [SLSA_PROVENANCE_V1, SLSA_PROVENANCE_V02, "x"] {
                let _ = provenance(predicate_type, &predicate);
            }
            let _ = vulnerability_scan(&predicate);
            let _ = test_result(&predicate);
        }

        #[test]
        fn git_uri_split_never_panics(uri in "[a-z+:/@.]{0,24}") {
            let (repository, git_ref) = split_git_uri(&uri);
            prop_assert!(repository.len() <= uri.len());
            prop_assert!(git_ref.is_none_or(|r| !r.is_empty()));
        }
    }
}
