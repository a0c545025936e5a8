//! The admission pipeline: every check between a submitted function and an
//! [`AdmittedArtifact`], each recorded in an [`AdmissionReport`] that
//! `zerofn admission explain` and a refused deploy print.
//!
//! Order: the component's digest; its signature by one of the tenant's
//! trusted signers (keys, or keyless identities with their trusted roots);
//! every attestation submitted with it (each must verify, by a trusted
//! signer, about this component); the facts they carry (SLSA provenance,
//! test result, vulnerability scan, CycloneDX SBOM); the SBOM matched
//! against the OSV database with the tenant's severity threshold; and last
//! the tenant's Cedar admission policy over all verified facts. A failed
//! signature stops the pipeline (nothing after it would be trustworthy);
//! other failures are all reported, and any one refuses.
//!
//! Trusts the caller for the tenant's rules and the vulnerability database;
//! nothing in the submission.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{json, Value};
use zerofn_manifest::Manifest;
use zerofn_policy::{AdmissionQuery, Decision, Permit, PolicySet};
use zerofn_sigstore::{
    verify_signature, Attestation, Bundle, SignerIdentity, TrustedSigners, VerifiedAttestation,
};
use zerofn_types::{escape, Digest};
use zerofn_vulndb::{Finding, Sbom, Severity, VulnDb};

use crate::artifact::AdmittedArtifact;
use crate::intent::{check_intent, IntentError, Rollback, SignedIntent, VersionFloor};
use crate::slsa::{Facts, SeverityCounts, SLSA_PROVENANCE_V02, SLSA_PROVENANCE_V1};

/// CycloneDX predicate types as `cosign attest --type cyclonedx` and
/// `syft attest` write them (the spec version may follow, e.g. `/v1.5`).
pub const CYCLONEDX_PREDICATE_PREFIX: &str = "https://cyclonedx.org/bom";

/// Most attestation files and statements one submission may carry.
pub const MAX_ATTESTATIONS: usize = 32;

/// A tenant's admission rules.
#[derive(Clone, Debug)]
pub struct AdmissionRules {
    pub signers: TrustedSigners,
    /// The tenant's Cedar admission policy (the default permits anything
    /// whose signature verified).
    pub policy: PolicySet,
    /// Refuse when the SBOM has a finding at or above this severity.
    pub severity_threshold: Option<Severity>,
    /// Refuse a function submitted without a signed SBOM.
    pub require_sbom: bool,
}

/// One file submitted beside the component (an attestation bundle or an
/// `.intoto.jsonl`).
#[derive(Clone, Debug)]
pub struct SubmittedFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Everything submitted for admission.
#[derive(Clone, Debug)]
pub struct Submission {
    pub manifest: Manifest,
    pub component: Vec<u8>,
    pub bundle: Vec<u8>,
    pub attestations: Vec<SubmittedFile>,
    /// The highest manifest version ever deployed for this function, if any.
    pub floor: Option<VersionFloor>,
    /// Whether an operator allowed going below the floor.
    pub rollback: Rollback,
}

/// The result of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckResult {
    /// Checked and passed.
    Pass,
    /// Checked and failed: the function is refused.
    Fail,
    /// A verified fact, reported for the policy to decide on.
    Info,
    /// Not applicable or not run.
    Skip,
}

impl CheckResult {
    fn as_str(self) -> &'static str {
        match self {
            CheckResult::Pass => "pass",
            CheckResult::Fail => "FAIL",
            CheckResult::Info => "info",
            CheckResult::Skip => "skip",
        }
    }
}

/// One row of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub check: String,
    pub result: CheckResult,
    pub detail: String,
}

/// Every check admission ran, in order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AdmissionReport {
    pub checks: Vec<Check>,
}

impl AdmissionReport {
    fn push(&mut self, check: &str, result: CheckResult, detail: impl Into<String>) {
        self.checks.push(Check {
            check: check.to_owned(),
            result,
            detail: detail.into(),
        });
    }

    /// The first failed check.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| c.result == CheckResult::Fail)
    }

    /// Whether every check passed (none failed).
    pub fn passed(&self) -> bool {
        self.first_failure().is_none()
    }

    /// The report as an aligned text table (what the CLI prints).
    pub fn table(&self) -> String {
        render_table(
            self.checks
                .iter()
                .map(|c| (c.check.as_str(), c.result.as_str(), c.detail.as_str())),
        )
    }
}

/// Renders (check, result, detail) rows as an aligned table with a header.
pub fn render_table<'a>(rows: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> String {
    let rows: Vec<_> = rows.collect();
    let width = rows
        .iter()
        .map(|(c, _, _)| c.chars().count())
        .max()
        .unwrap_or(0)
        .max("CHECK".len());
    let mut out = String::new();
    let _ = writeln!(out, "{:<width$}  {:<6}  DETAIL", "CHECK", "RESULT");
    for (check, result, detail) in rows {
        let _ = writeln!(out, "{check:<width$}  {result:<6}  {detail}");
    }
    out
}

/// A function that passed admission, with the report that admitted it.
#[derive(Debug)]
pub struct Admitted {
    pub artifact: AdmittedArtifact,
    pub report: AdmissionReport,
    /// The admission policy's permit (its policy ids go to the audit log): an admitted
    /// function exists only with one.
    pub permit: Permit,
    /// The signed manifest it was admitted with: an admitted function exists only with one.
    pub intent: SignedIntent,
}

/// A refused function: the report, and the first failed check as one line.
#[derive(Debug)]
pub struct Refused {
    pub report: AdmissionReport,
    pub reason: String,
}

/// Runs every admission check on `submission` under `rules`; `vulndb` is
/// the platform's OSV database, if one was imported. CPU-bound (hashing,
/// signature checks): async callers run it on a blocking thread.
pub fn admit_submission(
    submission: Submission,
    rules: &AdmissionRules,
    vulndb: Option<&VulnDb>,
) -> Result<Admitted, Refused> {
    let mut report = AdmissionReport::default();
    let Submission {
        manifest,
        component,
        bundle,
        attestations,
        floor,
        rollback,
    } = submission;
    let tenant = manifest.tenant.as_str().to_owned();
    let digest = Digest::of(&component);
    report.push(
        "digest",
        CheckResult::Pass,
        format!(
            "{digest} ({} bytes) for {tenant}/{}",
            component.len(),
            manifest.name
        ),
    );

    // 1. The component's signature: nothing else is worth checking without it.
    let signature = Bundle::from_json(&bundle)
        .and_then(|bundle| verify_signature(&digest, &bundle, &rules.signers, &tenant));
    let signature = match signature {
        Ok(signature) => {
            let mut detail = format!("signed by {}", signature.identity());
            if let Some(time) = signature.signing_time_rfc3339() {
                let _ = write!(detail, ", logged at {time}");
            }
            report.push("signature", CheckResult::Pass, detail);
            signature
        }
        Err(e) => {
            report.push("signature", CheckResult::Fail, e.to_string());
            report.push(
                "remaining checks",
                CheckResult::Skip,
                "not run: the signature did not verify",
            );
            return Err(refused(report));
        }
    };

    // 2. Attestations: each must verify, by a trusted signer, about this component.
    let (verified, origins) =
        verify_attestations(&digest, &attestations, &rules.signers, &mut report);

    // 3. The signed manifest: the submitted one must be it, at an allowed version.
    let pairs: Vec<(&VerifiedAttestation, &[u8])> = verified
        .iter()
        .zip(&origins)
        .filter_map(|(v, i)| Some((v, attestations.get(*i)?.bytes.as_slice())))
        .collect();
    let intent = check_intent(&digest, &manifest, &pairs, floor.as_ref(), &rollback);
    report_intent(&intent, floor.as_ref(), &rollback, &mut report);

    // 4. What the other attestations say.
    let facts = match Facts::from_attestations(&digest, &verified) {
        Ok(facts) => facts,
        Err(e) => {
            report.push("attestations", CheckResult::Fail, e.to_string());
            Facts::default()
        }
    };
    report_facts(&facts, &mut report);

    // 5. The SBOM and its vulnerabilities.
    let sbom = read_sbom(&verified, rules, &mut report);
    let findings = match (&sbom, vulndb) {
        (Some((sbom, _)), Some(db)) => {
            let findings = db.scan(sbom);
            report_findings(&findings, rules.severity_threshold, db.len(), &mut report);
            Some(findings)
        }
        (Some(_), None) if rules.severity_threshold.is_some() || rules.require_sbom => {
            report.push(
                "vulnerabilities",
                CheckResult::Fail,
                "no vulnerability database to match the SBOM against; import one with `zerofn vulndb import`",
            );
            None
        }
        (Some(_), None) => {
            report.push(
                "vulnerabilities",
                CheckResult::Skip,
                "no vulnerability database imported",
            );
            None
        }
        (None, _) => None,
    };

    // 6. The tenant's policy over everything verified above.
    let version = intent.as_ref().map_or(0, |i| i.version);
    let context = admission_context(
        &digest,
        &manifest_context(&manifest, version),
        signature.identity(),
        &verified,
        &facts,
        sbom.as_ref(),
        findings.as_deref(),
    );
    let query = AdmissionQuery {
        tenant: tenant.clone(),
        function: manifest.name.as_str().to_owned(),
        signer: identity_string(signature.identity()),
        context,
    };
    let decision = match rules.policy.decide_admission(&query) {
        Ok(decision) => decision,
        Err(e) => Decision::error(e.to_string()),
    };
    report.push(
        "policy",
        if decision.is_allowed() {
            CheckResult::Pass
        } else {
            CheckResult::Fail
        },
        decision.explain(),
    );

    if !report.passed() {
        return Err(refused(report));
    }
    let (Decision::Allow(permit), Ok(intent)) = (decision, intent) else {
        return Err(refused(report));
    };
    Ok(Admitted {
        artifact: AdmittedArtifact::from_verified(manifest, component, &signature),
        report,
        permit,
        intent,
    })
}

fn refused(report: AdmissionReport) -> Refused {
    let reason = match report.first_failure() {
        Some(check) => format!("{}: {}", check.check, check.detail),
        None => "refused".to_owned(),
    };
    Refused { report, reason }
}

fn verify_attestations(
    digest: &Digest,
    files: &[SubmittedFile],
    signers: &TrustedSigners,
    report: &mut AdmissionReport,
) -> (Vec<VerifiedAttestation>, Vec<usize>) {
    let mut verified = Vec::new();
    let mut origins = Vec::new();
    let mut statements = 0usize;
    if files.len() > MAX_ATTESTATIONS {
        report.push(
            "attestations",
            CheckResult::Fail,
            format!(
                "{} attestation files, more than the {MAX_ATTESTATIONS} allowed",
                files.len()
            ),
        );
        return (verified, origins);
    }
    for (index, file) in files.iter().enumerate() {
        let name = escape(&file.name);
        let parsed = match Attestation::parse_file(&file.bytes) {
            Ok(parsed) => parsed,
            Err(e) => {
                report.push(
                    &format!("attestation {name}"),
                    CheckResult::Fail,
                    e.to_string(),
                );
                continue;
            }
        };
        let many = parsed.len() > 1;
        for (i, attestation) in parsed.iter().enumerate() {
            statements = statements.saturating_add(1);
            let label = if many {
                format!("attestation {name}#{}", i.saturating_add(1))
            } else {
                format!("attestation {name}")
            };
            if statements > MAX_ATTESTATIONS {
                report.push(
                    &label,
                    CheckResult::Fail,
                    format!("more than {MAX_ATTESTATIONS} statements submitted"),
                );
                return (verified, origins);
            }
            match attestation.verify_signed(digest, signers) {
                Ok(v) => {
                    report.push(
                        &label,
                        CheckResult::Pass,
                        format!("{} signed by {}", escape(v.predicate_type()), v.identity()),
                    );
                    verified.push(v);
                    origins.push(index);
                }
                Err(e) => report.push(&label, CheckResult::Fail, e.to_string()),
            }
        }
    }
    if files.is_empty() {
        report.push("attestations", CheckResult::Skip, "none submitted");
    }
    (verified, origins)
}

fn report_intent(
    intent: &Result<SignedIntent, IntentError>,
    floor: Option<&VersionFloor>,
    rollback: &Rollback,
    report: &mut AdmissionReport,
) {
    match intent {
        Ok(intent) => {
            report.push(
                "manifest",
                CheckResult::Pass,
                format!(
                    "signed by {}, equal to the submitted manifest",
                    intent.signer
                ),
            );
            let highest = floor.map(|f| f.version);
            match (highest, rollback) {
                (Some(highest), Rollback::Allow { reason }) if intent.version < highest => report
                    .push(
                        "version",
                        CheckResult::Info,
                        format!(
                            "{} below {highest}, the highest deployed: rollback allowed ({})",
                            intent.version,
                            escape(reason)
                        ),
                    ),
                (Some(highest), _) => report.push(
                    "version",
                    CheckResult::Pass,
                    format!("{} (highest deployed: {highest})", intent.version),
                ),
                (None, _) => report.push(
                    "version",
                    CheckResult::Pass,
                    format!("{} (first deploy of this function)", intent.version),
                ),
            }
        }
        Err(e @ (IntentError::Rollback { .. } | IntentError::VersionReused { .. })) => {
            report.push(
                "manifest",
                CheckResult::Pass,
                "equal to the submitted manifest",
            );
            report.push("version", CheckResult::Fail, e.to_string());
        }
        Err(e) => report.push("manifest", CheckResult::Fail, e.to_string()),
    }
}

fn report_facts(facts: &Facts, report: &mut AdmissionReport) {
    match facts.provenance() {
        Some(p) => report.push(
            "provenance",
            CheckResult::Info,
            format!(
                "builder {}, source {}@{}",
                escape(p.builder_id()),
                escape(p.source_repository().unwrap_or("(none)")),
                escape(p.source_ref().unwrap_or("(none)"))
            ),
        ),
        None => report.push("provenance", CheckResult::Skip, "no SLSA provenance"),
    }
    match facts.test_result() {
        Some(t) => {
            let (passed, warned, failed) = t.counts();
            report.push(
                "tests",
                CheckResult::Info,
                format!(
                    "{} ({passed} passed, {warned} warned, {failed} failed)",
                    if t.passed() { "passed" } else { "failed" }
                ),
            );
        }
        None => report.push("tests", CheckResult::Skip, "no test-result attestation"),
    }
    if let Some(scan) = facts.vulnerability_scan() {
        let counts = scan
            .counts()
            .map(counts_text)
            .unwrap_or_else(|| "no counts in the report".to_owned());
        report.push(
            "vulnerability scan",
            CheckResult::Info,
            format!("{}: {counts}", escape(scan.scanner())),
        );
    }
}

fn counts_text(c: &SeverityCounts) -> String {
    format!(
        "{} critical, {} high, {} medium, {} low, {} unknown",
        c.critical, c.high, c.medium, c.low, c.unknown
    )
}

/// The one verified CycloneDX SBOM attestation, parsed, and its signer.
fn read_sbom(
    verified: &[VerifiedAttestation],
    rules: &AdmissionRules,
    report: &mut AdmissionReport,
) -> Option<(Sbom, SignerIdentity)> {
    let boms: Vec<&VerifiedAttestation> = verified
        .iter()
        .filter(|v| v.predicate_type().starts_with(CYCLONEDX_PREDICATE_PREFIX))
        .collect();
    match boms.as_slice() {
        [] if rules.require_sbom => {
            report.push(
                "sbom",
                CheckResult::Fail,
                "the tenant requires a signed CycloneDX SBOM and none was submitted; attest one with `zerofn attest --type cyclonedx`",
            );
            None
        }
        [] => {
            report.push("sbom", CheckResult::Skip, "no SBOM attestation");
            None
        }
        [one] => {
            let bytes = serde_json::to_vec(one.predicate()).unwrap_or_default();
            match Sbom::from_json(&bytes) {
                Ok(sbom) => {
                    report.push(
                        "sbom",
                        CheckResult::Pass,
                        format!(
                            "CycloneDX, {} packages ({} components without a matchable purl), signed by {}",
                            sbom.packages.len(),
                            sbom.skipped,
                            one.identity()
                        ),
                    );
                    Some((sbom, one.identity().clone()))
                }
                Err(e) => {
                    report.push("sbom", CheckResult::Fail, e.to_string());
                    None
                }
            }
        }
        _ => {
            report.push(
                "sbom",
                CheckResult::Fail,
                format!("{} SBOM attestations; submit one", boms.len()),
            );
            None
        }
    }
}

/// Most findings listed in a refusal; the count says how many more.
const LISTED_FINDINGS: usize = 20;

fn report_findings(
    findings: &[Finding],
    threshold: Option<Severity>,
    db_records: usize,
    report: &mut AdmissionReport,
) {
    let counts = severity_counts(findings);
    let blocking: Vec<&Finding> = match threshold {
        Some(t) => findings.iter().filter(|f| f.severity >= t).collect(),
        None => Vec::new(),
    };
    if blocking.is_empty() {
        report.push(
            "vulnerabilities",
            CheckResult::Pass,
            format!(
                "{} findings against {db_records} OSV records ({}){}",
                findings.len(),
                counts_text(&counts),
                match threshold {
                    Some(t) => format!(", none at or above {}", severity_name(t)),
                    None => String::new(),
                }
            ),
        );
        return;
    }
    let mut detail = format!(
        "{} findings at or above {}:",
        blocking.len(),
        threshold.map(severity_name).unwrap_or("?")
    );
    for f in blocking.iter().take(LISTED_FINDINGS) {
        let _ = write!(
            detail,
            " {}@{} {} ({});",
            escape(&f.package.name),
            escape(&f.package.version),
            escape(&f.advisory_ids.join(",")),
            severity_name(f.severity)
        );
    }
    if blocking.len() > LISTED_FINDINGS {
        let _ = write!(detail, " and {} more", blocking.len() - LISTED_FINDINGS);
    }
    report.push(
        "vulnerabilities",
        CheckResult::Fail,
        detail.trim_end_matches(';').to_owned(),
    );
}

fn severity_counts(findings: &[Finding]) -> SeverityCounts {
    let mut c = SeverityCounts::default();
    for f in findings {
        let bucket = match f.severity {
            Severity::Critical => &mut c.critical,
            Severity::High => &mut c.high,
            Severity::Medium => &mut c.medium,
            Severity::Low => &mut c.low,
            Severity::Unknown => &mut c.unknown,
        };
        *bucket = bucket.saturating_add(1);
    }
    c
}

/// The name of a severity as operators write it (`--severity-threshold`).
pub fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "high",
        Severity::Medium => "medium",
        Severity::Low => "low",
        Severity::Unknown => "unknown",
    }
}

/// Parses a severity name (`critical`, `high`, `medium`, `low`, `unknown`).
pub fn parse_severity(name: &str) -> Option<Severity> {
    match name.to_ascii_lowercase().as_str() {
        "critical" => Some(Severity::Critical),
        "high" => Some(Severity::High),
        "medium" | "moderate" => Some(Severity::Medium),
        "low" => Some(Severity::Low),
        "unknown" => Some(Severity::Unknown),
        _ => None,
    }
}

fn identity_string(identity: &SignerIdentity) -> String {
    match identity {
        SignerIdentity::Key(key) => key.to_string(),
        SignerIdentity::Certificate { san, .. } => san.clone(),
    }
}

fn counts_json(c: &SeverityCounts) -> Value {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    json!({
        "critical": n(c.critical),
        "high": n(c.high),
        "medium": n(c.medium),
        "low": n(c.low),
        "unknown": n(c.unknown),
    })
}

/// The schema's `SignedManifest`: the submitted manifest, which admission requires to equal
/// the signed one, at the signed `version` (0 when none verified).
fn manifest_context(manifest: &Manifest, version: u64) -> Value {
    let Manifest {
        name,
        tenant: _,
        component: _,
        routes,
        limits,
        layers,
        permissions,
        config,
        // Committed to by digest in the signed form; not an admission fact (yet).
        schema: _,
        version: _,
        // Only lower the platform's limits; signed, not an admission fact.
        egress_limits: _,
        // Their invoke grants are in `permissions.invoke_from`.
        triggers: _,
    } = manifest;
    let buckets = |write: bool| -> Vec<&str> {
        permissions
            .kv
            .iter()
            .filter(|g| g.mode.covers(write))
            .map(|g| g.bucket.as_str())
            .collect()
    };
    let long = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    json!({
        "version": long(version),
        "name": name.as_str(),
        "routes": routes.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "limits": {
            "memory_mb": long(u64::from(limits.memory_mb)),
            "timeout_ms": long(u64::from(limits.timeout_ms)),
            "max_body_kb": long(u64::from(limits.max_body_kb)),
        },
        "permissions": {
            "kv": permissions.kv.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "kv_read": buckets(false),
            "kv_write": buckets(true),
            "call": permissions.call.iter().collect::<Vec<_>>(),
        },
        "invoke": {
            "from": permissions.invoke_from.iter().map(ToString::to_string).collect::<Vec<_>>(),
        },
        "config": config.keys().collect::<Vec<_>>(),
        "layers": layers.keys().map(|i| i.as_str()).collect::<Vec<_>>(),
        "layer_digests": layers.values().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// The signer of the first verified attestation whose predicate type passes `kind`.
fn signer_of(verified: &[VerifiedAttestation], kind: impl Fn(&str) -> bool) -> String {
    verified
        .iter()
        .find(|v| kind(v.predicate_type()))
        .map(|v| identity_string(v.identity()))
        .unwrap_or_default()
}

/// The `AdmissionContext` of the Cedar schema, from verified facts only.
fn admission_context(
    digest: &Digest,
    manifest: &Value,
    signer: &SignerIdentity,
    verified: &[VerifiedAttestation],
    facts: &Facts,
    sbom: Option<&(Sbom, SignerIdentity)>,
    findings: Option<&[Finding]>,
) -> Value {
    let (kind, issuer) = match signer {
        SignerIdentity::Key(_) => ("key", String::new()),
        SignerIdentity::Certificate { issuer, .. } => ("certificate", issuer.clone()),
    };
    let mut context = json!({
        "digest": digest.to_string(),
        "manifest": manifest,
        "signer": {"kind": kind, "identity": identity_string(signer), "issuer": issuer},
        "attestations": i64::try_from(verified.len()).unwrap_or(i64::MAX),
    });
    let Some(object) = context.as_object_mut() else {
        return context;
    };
    if let Some(p) = facts.provenance() {
        object.insert(
            "provenance".into(),
            json!({
                "builder": p.builder_id(),
                "buildType": p.build_type(),
                "repository": p.source_repository().unwrap_or_default(),
                "ref": p.source_ref().unwrap_or_default(),
                "signer": signer_of(verified, |t| t == SLSA_PROVENANCE_V1 || t == SLSA_PROVENANCE_V02),
            }),
        );
    }
    if let (Some((sbom, sbom_signer)), Some(findings)) = (sbom, findings) {
        object.insert(
            "sbom".into(),
            json!({
                "components": i64::try_from(sbom.packages.len()).unwrap_or(i64::MAX),
                "findings": counts_json(&severity_counts(findings)),
                "signer": identity_string(sbom_signer),
            }),
        );
    }
    if let Some(scan) = facts.vulnerability_scan() {
        object.insert(
            "vulnerabilityScan".into(),
            json!({
                "scanner": scan.scanner(),
                "counts": counts_json(&scan.counts().copied().unwrap_or_default()),
                "signer": signer_of(verified, |t| t == crate::slsa::VULN_V1),
            }),
        );
    }
    if let Some(t) = facts.test_result() {
        let (passed, _warned, failed) = t.counts();
        object.insert(
            "tests".into(),
            json!({
                "passed": t.passed(),
                "passedCount": i64::try_from(passed).unwrap_or(i64::MAX),
                "failedCount": i64::try_from(failed).unwrap_or(i64::MAX),
                "signer": signer_of(verified, |t| t == crate::slsa::TEST_RESULT_V01),
            }),
        );
    }
    context
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slsa::TEST_RESULT_V01;
    use std::sync::Arc;
    use zerofn_sigstore::{
        sign_artifact, sign_attestation, Identity, KeylessSigner, SigningKey, TrustedRoot,
    };
    use zerofn_vulndb::Advisory;

    const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0 pretend component";

    fn manifest() -> Manifest {
        Manifest::from_toml(
            "name = \"hello\"\ntenant = \"acme\"\ncomponent = \"hello.wasm\"\nroutes = [\"/hello\"]\n",
        )
        .unwrap()
    }

    fn provenance(repository: &str) -> Value {
        json!({
            "buildDefinition": {
                "buildType": "https://example.com/build/v1",
                "resolvedDependencies": [{"uri": format!("git+{repository}@refs/heads/main"), "digest": {"sha1": "abc"}}]
            },
            "runDetails": {"builder": {"id": "https://ci.example.com/builder"}}
        })
    }

    /// An SBOM with lodash at `lodash` (vulnerable to GHSA-jf85-cpcp-j695 below 4.17.12).
    fn sbom(lodash: &str) -> Value {
        json!({
            "bomFormat": "CycloneDX",
            "specVersion": "1.5",
            "components": [
                {"type": "library", "name": "lodash", "version": lodash, "purl": format!("pkg:npm/lodash@{lodash}")},
                {"type": "library", "name": "serde", "version": "1.0.200", "purl": "pkg:cargo/serde@1.0.200"}
            ]
        })
    }

    /// GitHub's real advisory for lodash prototype pollution (CRITICAL), from the shared
    /// test data.
    fn lodash_advisory() -> VulnDb {
        let path =
            zerofn_testkit::testdata("osv/github-advisory-database/GHSA-jf85-cpcp-j695.json");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (../shared must be beside the checkout)",
                path.display()
            )
        });
        VulnDb::from_advisories([Advisory::from_json(&bytes).unwrap()])
    }

    struct Fixture {
        key: SigningKey,
        rules: AdmissionRules,
    }

    impl Fixture {
        fn new() -> Fixture {
            let key = SigningKey::generate();
            let rules = AdmissionRules {
                signers: TrustedSigners {
                    keys: vec![key.public_key()],
                    keyless: Vec::new(),
                },
                policy: PolicySet::default_admission().unwrap(),
                severity_threshold: None,
                require_sbom: false,
            };
            Fixture { key, rules }
        }

        fn attest(&self, predicate_type: &str, predicate: Value) -> SubmittedFile {
            let bundle = sign_attestation(
                "hello.wasm",
                &Digest::of(COMPONENT),
                predicate_type,
                &predicate,
                &self.key,
            )
            .unwrap();
            SubmittedFile {
                name: format!("hello.wasm.{}.sigstore.json", predicate_type.len()),
                bytes: bundle.into_bytes(),
            }
        }

        /// A submission with `attestations` and the manifest signed at version 1.
        fn submission(&self, attestations: Vec<SubmittedFile>) -> Submission {
            self.submission_of(manifest(), &manifest(), attestations)
        }

        /// Submits `submitted` with `signed` signed as the manifest (version 1).
        fn submission_of(
            &self,
            submitted: Manifest,
            signed: &Manifest,
            mut attestations: Vec<SubmittedFile>,
        ) -> Submission {
            let bundle =
                crate::sign_manifest(signed, &Digest::of(COMPONENT), 1, &self.key).unwrap();
            attestations.push(SubmittedFile {
                name: crate::MANIFEST_BUNDLE_FILE.to_owned(),
                bytes: bundle.into_bytes(),
            });
            Submission {
                manifest: submitted,
                component: COMPONENT.to_vec(),
                bundle: sign_artifact(COMPONENT, &self.key).unwrap().into_bytes(),
                attestations,
                floor: None,
                rollback: Rollback::Refuse,
            }
        }

        fn all_attestations(
            &self,
            repository: &str,
            tests: &str,
            lodash: &str,
        ) -> Vec<SubmittedFile> {
            vec![
                self.attest(SLSA_PROVENANCE_V1, provenance(repository)),
                self.attest(
                    TEST_RESULT_V01,
                    json!({"result": tests, "passedTests": ["a"], "failedTests": if tests == "FAILED" { json!(["b"]) } else { json!([]) }}),
                ),
                self.attest("https://cyclonedx.org/bom", sbom(lodash)),
            ]
        }
    }

    fn result_of<'a>(report: &'a AdmissionReport, check: &str) -> &'a Check {
        report
            .checks
            .iter()
            .find(|c| c.check == check)
            .unwrap_or_else(|| panic!("no `{check}` check in\n{}", report.table()))
    }

    const ACME_POLICY: &str = r#"
        @id("acme-ci")
        permit (principal, action == Zerofn::Action::"admit", resource in Zerofn::Tenant::"acme")
        when {
            context has provenance && context.provenance.repository == "https://git.example.com/acme/fn" &&
            context.provenance.ref == "refs/heads/main" &&
            context has tests && context.tests.passed &&
            context has sbom && context.sbom.findings.critical == 0
        };
    "#;

    #[test]
    fn signed_component_with_attestations_is_admitted_with_every_check_listed() {
        let mut f = Fixture::new();
        f.rules.policy = PolicySet::parse(ACME_POLICY).unwrap();
        let db = lodash_advisory();
        let admitted = admit_submission(
            f.submission(f.all_attestations(
                "https://git.example.com/acme/fn",
                "PASSED",
                "4.17.21",
            )),
            &f.rules,
            Some(&db),
        )
        .unwrap();
        let report = &admitted.report;
        assert!(report.passed(), "{}", report.table());
        assert_eq!(result_of(report, "signature").result, CheckResult::Pass);
        assert!(result_of(report, "provenance")
            .detail
            .contains("https://git.example.com/acme/fn@refs/heads/main"));
        assert!(result_of(report, "sbom").detail.contains("2 packages"));
        assert!(result_of(report, "vulnerabilities")
            .detail
            .contains("0 findings"));
        assert_eq!(admitted.permit.policies(), ["acme-ci"]);
        assert_eq!(admitted.artifact.digest(), Digest::of(COMPONENT));
        let table = report.table();
        assert!(table.starts_with("CHECK"), "{table}");
    }

    #[test]
    fn the_manifest_must_be_signed_and_equal_to_the_submitted_one() {
        let f = Fixture::new();
        let mut unsigned = f.submission(Vec::new());
        unsigned.attestations.clear();
        let refused = admit_submission(unsigned, &f.rules, None).unwrap_err();
        assert!(
            refused
                .reason
                .starts_with("manifest: no signed manifest was submitted"),
            "{}",
            refused.reason
        );
        let widened = Manifest::from_toml(
            "name = \"hello\"\ntenant = \"acme\"\ncomponent = \"hello.wasm\"\nroutes = [\"/hello\"]\n[permissions]\nkv = [\"secrets:read-write\"]\n",
        )
        .unwrap();
        let refused = admit_submission(
            f.submission_of(widened, &manifest(), Vec::new()),
            &f.rules,
            None,
        )
        .unwrap_err();
        assert_eq!(
            refused.reason,
            "manifest: `permissions.kv` differs from the signed manifest: signed [], submitted [\"secrets:read-write\"]"
        );
        // Signed by a key the tenant does not trust: the statement does not verify, so
        // there is no signed manifest.
        let stranger = Fixture::new();
        let mut foreign = f.submission(Vec::new());
        foreign.attestations = stranger.submission(Vec::new()).attestations;
        let refused = admit_submission(foreign, &f.rules, None).unwrap_err();
        assert_eq!(
            result_of(&refused.report, "manifest").result,
            CheckResult::Fail,
            "{}",
            refused.report.table()
        );
        let admitted = admit_submission(f.submission(Vec::new()), &f.rules, None).unwrap();
        assert_eq!(admitted.intent.version, 1);
        assert!(result_of(&admitted.report, "version")
            .detail
            .contains("first deploy"));
    }

    #[test]
    fn the_admission_policy_decides_on_the_signed_manifest() {
        let mut f = Fixture::new();
        f.rules.policy = PolicySet::parse(
            r#"
            @id("admit") permit (principal, action == Zerofn::Action::"admit", resource);
            @id("no-public-secrets")
            forbid (principal, action == Zerofn::Action::"admit", resource)
            when { context.manifest.invoke.from.contains("public") &&
                   context.manifest.permissions.kv_write.contains("secrets") };
            "#,
        )
        .unwrap();
        let with = |grants: &str| {
            Manifest::from_toml(&format!(
                "name = \"hello\"\ntenant = \"acme\"\ncomponent = \"hello.wasm\"\nroutes = [\"/hello\"]\n{grants}"
            ))
            .unwrap()
        };
        let writer = with("[permissions]\nkv = [\"secrets:read-write\"]\n");
        let refused = admit_submission(
            f.submission_of(writer.clone(), &writer, Vec::new()),
            &f.rules,
            None,
        )
        .unwrap_err();
        assert!(
            refused.reason.contains("no-public-secrets"),
            "{}",
            refused.reason
        );
        let internal =
            with("[permissions]\nkv = [\"secrets:read-write\"]\n[invoke]\nfrom = [\"checkout\"]\n");
        assert!(admit_submission(
            f.submission_of(internal.clone(), &internal, Vec::new()),
            &f.rules,
            None
        )
        .is_ok());
    }

    #[test]
    fn the_policy_refuses_on_facts_and_says_which_rule_was_missing() {
        let mut f = Fixture::new();
        f.rules.policy = PolicySet::parse(ACME_POLICY).unwrap();
        let db = lodash_advisory();
        for (repository, tests) in [
            ("https://git.example.com/evil/fn", "PASSED"),
            ("https://git.example.com/acme/fn", "FAILED"),
        ] {
            let refused = admit_submission(
                f.submission(f.all_attestations(repository, tests, "4.17.21")),
                &f.rules,
                Some(&db),
            )
            .unwrap_err();
            assert_eq!(
                refused.reason,
                "policy: denied: no permit policy matched",
                "{}",
                refused.report.table()
            );
        }
        // No attestations at all: the facts the policy needs are absent.
        let refused = admit_submission(f.submission(Vec::new()), &f.rules, Some(&db)).unwrap_err();
        assert!(refused.reason.starts_with("policy:"), "{}", refused.reason);
    }

    #[test]
    fn findings_at_the_threshold_refuse_and_are_listed() {
        let mut f = Fixture::new();
        f.rules.severity_threshold = Some(Severity::High);
        let db = lodash_advisory();
        let refused = admit_submission(
            f.submission(f.all_attestations(
                "https://git.example.com/acme/fn",
                "PASSED",
                "4.17.11",
            )),
            &f.rules,
            Some(&db),
        )
        .unwrap_err();
        let check = result_of(&refused.report, "vulnerabilities");
        assert_eq!(check.result, CheckResult::Fail);
        assert!(
            check.detail.contains("lodash@4.17.11")
                && check.detail.contains("GHSA-jf85-cpcp-j695")
                && check.detail.contains("CVE-2019-10744")
                && check.detail.contains("critical"),
            "{}",
            check.detail
        );
        // The fixed version passes the same threshold.
        admit_submission(
            f.submission(f.all_attestations(
                "https://git.example.com/acme/fn",
                "PASSED",
                "4.17.21",
            )),
            &f.rules,
            Some(&db),
        )
        .unwrap();
    }

    #[test]
    fn a_required_sbom_must_be_there_and_needs_a_database() {
        let mut f = Fixture::new();
        f.rules.require_sbom = true;
        let refused =
            admit_submission(f.submission(Vec::new()), &f.rules, Some(&lodash_advisory()))
                .unwrap_err();
        assert!(
            refused.reason.starts_with("sbom: the tenant requires"),
            "{}",
            refused.reason
        );
        let refused = admit_submission(
            f.submission(vec![
                f.attest("https://cyclonedx.org/bom/v1.5", sbom("4.17.21"))
            ]),
            &f.rules,
            None,
        )
        .unwrap_err();
        assert!(
            refused
                .reason
                .starts_with("vulnerabilities: no vulnerability database"),
            "{}",
            refused.reason
        );
    }

    #[test]
    fn bad_attestations_refuse_and_a_bad_signature_stops_everything() {
        let f = Fixture::new();
        // An attestation about another artifact.
        let other = sign_attestation(
            "other.wasm",
            &Digest::of(b"other"),
            TEST_RESULT_V01,
            &json!({"result": "PASSED", "passedTests": [], "failedTests": []}),
            &f.key,
        )
        .unwrap();
        // One signed by an untrusted key.
        let stranger = SigningKey::generate();
        let untrusted = sign_attestation(
            "hello.wasm",
            &Digest::of(COMPONENT),
            TEST_RESULT_V01,
            &json!({"result": "PASSED", "passedTests": [], "failedTests": []}),
            &stranger,
        )
        .unwrap();
        let garbage = SubmittedFile {
            name: "x.intoto.jsonl".into(),
            bytes: b"{not json".to_vec(),
        };
        let refused = admit_submission(
            f.submission(vec![
                SubmittedFile {
                    name: "other.sigstore.json".into(),
                    bytes: other.into_bytes(),
                },
                SubmittedFile {
                    name: "untrusted.sigstore.json".into(),
                    bytes: untrusted.into_bytes(),
                },
                garbage,
            ]),
            &f.rules,
            None,
        )
        .unwrap_err();
        let failed: Vec<&str> = refused
            .report
            .checks
            .iter()
            .filter(|c| c.result == CheckResult::Fail)
            .map(|c| c.check.as_str())
            .collect();
        assert_eq!(
            failed,
            [
                "attestation other.sigstore.json",
                "attestation untrusted.sigstore.json",
                "attestation x.intoto.jsonl"
            ],
            "{}",
            refused.report.table()
        );

        let mut tampered = f.submission(Vec::new());
        tampered.component.push(0);
        let refused = admit_submission(tampered, &f.rules, None).unwrap_err();
        assert!(
            refused.reason.starts_with("signature:"),
            "{}",
            refused.reason
        );
        assert_eq!(
            refused.report.checks.last().unwrap().result,
            CheckResult::Skip
        );
    }

    fn shared(path: &str) -> Vec<u8> {
        let full = zerofn_testkit::testdata(path).display().to_string();
        std::fs::read(&full)
            .unwrap_or_else(|e| panic!("{full}: {e} (../shared must be beside the checkout)"))
    }

    const GENERATOR: &str = "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_generic_slsa3.yml@refs/tags/v2.1.0";
    const GITHUB_ACTIONS: &str = "https://token.actions.githubusercontent.com";

    /// slsa-github-generator's real keyless provenance (public-good Fulcio and Rekor)
    /// verifies as an attestation when its identity is trusted, and only then.
    #[test]
    fn a_real_keyless_slsa_provenance_verifies_against_a_trusted_identity() {
        let file = shared(
            "attestations/slsa-verifier/gha_generic-v2.1.0/binary-linux-amd64-workflow_dispatch.intoto.jsonl",
        );
        let root = Arc::new(
            TrustedRoot::from_json(&shared(
                "sigstore/trusted-roots/sigstore-python-embedded/production/trusted_root.json",
            ))
            .unwrap(),
        );
        let subject: Digest =
            "sha256:376e7e01348585b6e6643bc6663146b9d525d9b41228bf180eaeb4d4a3706caa"
                .parse()
                .unwrap();
        let parsed = Attestation::parse_file(&file).unwrap();
        assert_eq!(parsed.len(), 1);
        let trusting = |san: &str, issuer: &str| TrustedSigners {
            keys: Vec::new(),
            keyless: vec![KeylessSigner {
                identity: Identity::Exact {
                    san: san.to_owned(),
                    issuer: issuer.to_owned(),
                },
                trusted_root: root.clone(),
            }],
        };
        let verified = parsed[0]
            .verify_signed(&subject, &trusting(GENERATOR, GITHUB_ACTIONS))
            .unwrap();
        assert_eq!(verified.predicate_type(), SLSA_PROVENANCE_V02);
        assert_eq!(
            verified.identity(),
            &SignerIdentity::Certificate {
                san: GENERATOR.to_owned(),
                issuer: GITHUB_ACTIONS.to_owned()
            }
        );
        let facts = Facts::from_attestations(&subject, &[verified]).unwrap();
        let provenance = facts.provenance().unwrap();
        assert!(provenance
            .source_repository()
            .unwrap()
            .contains("github.com/slsa-framework/example-package"));

        // Another identity, another issuer, another artifact: refused.
        let err = parsed[0]
            .verify_signed(
                &subject,
                &trusting(
                    "https://github.com/acme/x/.github/workflows/r.yml@refs/heads/main",
                    GITHUB_ACTIONS,
                ),
            )
            .unwrap_err();
        assert!(err.to_string().contains("identity"), "{err}");
        let err = parsed[0]
            .verify_signed(
                &subject,
                &trusting(GENERATOR, "https://accounts.google.com"),
            )
            .unwrap_err();
        assert!(err.to_string().contains("issuer"), "{err}");
        let err = parsed[0]
            .verify_signed(&Digest::of(b"other"), &trusting(GENERATOR, GITHUB_ACTIONS))
            .unwrap_err();
        assert!(
            matches!(
                err,
                zerofn_sigstore::AttestationError::KeylessInvalid { .. }
            ),
            "{err}"
        );
        // No keyless signer at all.
        let err = parsed[0]
            .verify_signed(&subject, &TrustedSigners::default())
            .unwrap_err();
        assert!(err.to_string().contains("no signing identity"), "{err}");
    }
}
