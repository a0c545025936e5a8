//! `zerofn attest`: sign an in-toto attestation about an artifact, and `zerofn attest
//! verify`: check one offline and print the facts read from it. Argument parsing and output
//! only; statements, DSSE and predicates are `zerofn_admission`'s.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use zerofn_admission::{
    sign_attestation, Attestation, Digest, Facts, PublicKey, Sbom, SigningKey, VerifiedAttestation,
    CYCLONEDX_PREDICATE_PREFIX, SLSA_PROVENANCE_V1, TEST_RESULT_V01, VULN_V1,
};
use zerofn_types::printable;

/// Sign an in-toto attestation about ARTIFACT (DSSE in a Sigstore bundle v0.3), or verify
/// one with `zerofn attest verify`.
///
/// Signing writes ARTIFACT.<TYPE>.sigstore.json: an in-toto Statement v1 whose subject is
/// the artifact's file name and sha256, with the predicate read from --predicate.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AttestArgs {
    #[command(subcommand)]
    command: Option<AttestCommand>,
    /// The artifact the attestation is about.
    #[arg(required = true)]
    artifact: Option<PathBuf>,
    /// The signing key (PEM), as written by `zerofn keygen`.
    #[arg(long, required = true)]
    key: Option<PathBuf>,
    /// The predicate kind.
    #[arg(long = "type", value_enum, required = true)]
    kind: Option<Kind>,
    /// The predicate: a JSON file.
    #[arg(long, required = true)]
    predicate: Option<PathBuf>,
    /// Where to write the bundle (default ARTIFACT.<TYPE>.sigstore.json).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AttestCommand {
    /// Verify attestations over ARTIFACT with trusted keys and print the facts they state;
    /// exits non-zero naming the failed check.
    Verify(VerifyArgs),
}

#[derive(Args)]
struct VerifyArgs {
    /// The artifact the attestation must be about.
    artifact: PathBuf,
    /// The attestation: a Sigstore bundle with a DSSE envelope, or an `.intoto.jsonl`
    /// file (every envelope in it must verify). Repeat for several.
    #[arg(long, required = true)]
    attestation: Vec<PathBuf>,
    /// A trusted public key (PEM). Repeat to trust several.
    #[arg(long, required = true)]
    key: Vec<PathBuf>,
}

/// The predicate kinds `zerofn attest` signs.
#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    /// SLSA provenance v1 (`https://slsa.dev/provenance/v1`).
    SlsaProvenance,
    /// A vulnerability scan (`https://cosign.sigstore.dev/attestation/vuln/v1`).
    Vuln,
    /// A test result (`https://in-toto.io/attestation/test-result/v0.1`).
    TestResult,
    /// A CycloneDX JSON SBOM (`https://cyclonedx.org/bom`, as `cosign attest --type
    /// cyclonedx` writes it): admission matches it against the OSV database.
    Cyclonedx,
}

impl Kind {
    fn predicate_type(self) -> &'static str {
        match self {
            Kind::SlsaProvenance => SLSA_PROVENANCE_V1,
            Kind::Vuln => VULN_V1,
            Kind::TestResult => TEST_RESULT_V01,
            Kind::Cyclonedx => CYCLONEDX_PREDICATE_PREFIX,
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Kind::SlsaProvenance => "slsa-provenance",
            Kind::Vuln => "vuln",
            Kind::TestResult => "test-result",
            Kind::Cyclonedx => "cyclonedx",
        }
    }
}

/// Runs `zerofn attest` or `zerofn attest verify`.
pub fn run(args: AttestArgs) -> Result<()> {
    if let Some(AttestCommand::Verify(verify)) = args.command {
        return run_verify(verify);
    }
    let (Some(artifact), Some(key), Some(kind), Some(predicate)) =
        (args.artifact, args.key, args.kind, args.predicate)
    else {
        bail!("`zerofn attest` needs ARTIFACT, `--key`, `--type` and `--predicate`");
    };
    sign(&artifact, &key, kind, &predicate, args.out)
}

fn sign(
    artifact: &Path,
    key_path: &Path,
    kind: Kind,
    predicate_path: &Path,
    out: Option<PathBuf>,
) -> Result<()> {
    let pem = std::fs::read_to_string(key_path)
        .with_context(|| format!("cannot read signing key `{}`", key_path.display()))?;
    let key = SigningKey::from_pem(&pem)?;
    let bytes = std::fs::read(artifact)
        .with_context(|| format!("cannot read artifact `{}`", artifact.display()))?;
    let digest = Digest::of(&bytes);
    let predicate_json = std::fs::read(predicate_path)
        .with_context(|| format!("cannot read predicate `{}`", predicate_path.display()))?;
    let predicate: serde_json::Value = serde_json::from_slice(&predicate_json)
        .with_context(|| format!("predicate `{}` is not JSON", predicate_path.display()))?;
    let name = artifact
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| artifact.display().to_string());
    let bundle = sign_attestation(&name, &digest, kind.predicate_type(), &predicate, &key)?;
    // Refuse to sign a predicate that verifiers would refuse: read it back as facts.
    let attestation = Attestation::from_bundle_json(bundle.as_bytes())?
        .verify(&digest, &[key.public_key()])
        .context("the attestation just signed does not verify")?;
    Facts::from_attestations(&digest, std::slice::from_ref(&attestation))
        .with_context(|| format!("predicate `{}` is not usable", predicate_path.display()))?;
    if let Kind::Cyclonedx = kind {
        Sbom::from_json(&predicate_json).with_context(|| {
            format!(
                "predicate `{}` is not a usable CycloneDX SBOM",
                predicate_path.display()
            )
        })?;
    }
    let out = out.unwrap_or_else(|| {
        let mut s = artifact.as_os_str().to_owned();
        s.push(format!(".{}.sigstore.json", kind.slug()));
        PathBuf::from(s)
    });
    std::fs::write(&out, bundle).with_context(|| format!("writing `{}`", out.display()))?;
    println!(
        "attested {} ({digest}) as {} with key {}: wrote {}",
        artifact.display(),
        kind.predicate_type(),
        key.public_key().key_id(),
        out.display()
    );
    Ok(())
}

fn run_verify(args: VerifyArgs) -> Result<()> {
    let bytes = std::fs::read(&args.artifact)
        .with_context(|| format!("cannot read artifact `{}`", args.artifact.display()))?;
    let digest = Digest::of(&bytes);
    let keys = args
        .key
        .iter()
        .map(|path| {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read public key `{}`", path.display()))?;
            Ok(PublicKey::from_pem(&pem)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut verified: Vec<VerifiedAttestation> = Vec::new();
    for path in &args.attestation {
        let file = std::fs::read(path)
            .with_context(|| format!("cannot read attestation `{}`", path.display()))?;
        for attestation in Attestation::parse_file(&file)? {
            let attestation = attestation
                .verify(&digest, &keys)
                .with_context(|| format!("attestation `{}` does not verify", path.display()))?;
            verified.push(attestation);
        }
    }
    let facts = Facts::from_attestations(&digest, &verified)?;
    for attestation in &verified {
        println!(
            "verified {} over {digest} signed by key {}",
            printable(attestation.predicate_type()),
            attestation.signer()
        );
    }
    print_facts(&facts);
    Ok(())
}

fn print_facts(facts: &Facts) {
    if let Some(p) = facts.provenance() {
        println!(
            "provenance: builder {} build type {} source {} ref {} digest {} entry point {}",
            printable(p.builder_id()),
            printable(p.build_type()),
            optional(p.source_repository()),
            optional(p.source_ref()),
            optional(p.source_digest()),
            optional(p.entry_point()),
        );
    }
    if let Some(scan) = facts.vulnerability_scan() {
        let counts = match scan.counts() {
            Some(c) => format!(
                "critical {} high {} medium {} low {} unknown {}",
                c.critical, c.high, c.medium, c.low, c.unknown
            ),
            None => "counts unknown (report shape not read)".to_owned(),
        };
        println!(
            "vulnerabilities: scanner {} version {}: {counts}",
            printable(scan.scanner()),
            optional(scan.scanner_version()),
        );
    }
    if let Some(tests) = facts.test_result() {
        let (passed, warned, failed) = tests.counts();
        println!(
            "tests: {} ({passed} passed, {warned} warned, {failed} failed)",
            if tests.passed() { "passed" } else { "failed" }
        );
    }
}

fn optional(text: Option<&str>) -> String {
    text.map_or_else(|| "-".to_owned(), printable)
}
