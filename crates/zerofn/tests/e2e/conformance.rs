//! Sigstore verification conformance, through the real `zerofn verify` binary.
//!
//! * Every case of sigstore-conformance `bundle-verify` (third-party data under
//!   `../shared/testdata`, read in place; see its README, section 1a) runs twice: with the
//!   artifact file and with `sha256:<hex>` of it. A case passes unless its name ends in
//!   `_fail`; failures must name the check that failed.
//! * Bundles from sigstore-python, -go, -js and -rs run with the outcomes their upstream
//!   tests expect (README sections 1b to 1e).
//! * Bundles zerofn cannot verify are listed in [`UNSUPPORTED`] with the reason, and must be
//!   refused (fail closed), never skipped.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

const ZEROFN: &str = env!("CARGO_BIN_EXE_zerofn");

const BEACON_SAN: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const GITHUB_ACTIONS: &str = "https://token.actions.githubusercontent.com";
const GITHUB_OAUTH: &str = "https://github.com/login/oauth";
const PRODUCTION_ROOT: &str =
    "sigstore/trusted-roots/sigstore-python-embedded/production/trusted_root.json";
const STAGING_ROOT: &str =
    "sigstore/trusted-roots/sigstore-python-embedded/staging/trusted_root.json";

/// Bundles upstream expects to verify that zerofn refuses, and why. Each must be refused
/// with an error containing the given text. (No sigstore-conformance case is here: all 72
/// behave as the suite expects.)
const UNSUPPORTED: &[(&str, &str, &str)] = &[
    (
        "sigstore/sigstore-js/bundleV01-dsse-no-proof.sigstore",
        "the in-toto subject has only a sha512 digest; zerofn names artifacts by sha256",
        "dsse statement does not name the artifact",
    ),
    (
        "sigstore/sigstore-js/bundleV01-dsse-with-proof.sigstore",
        "the in-toto subject has only a sha512 digest; zerofn names artifacts by sha256",
        "dsse statement does not name the artifact",
    ),
    (
        "sigstore/sigstore-js/bundleV01-intoto-no-proof.sigstore",
        "the in-toto subject has only a sha512 digest; zerofn names artifacts by sha256",
        "dsse statement does not name the artifact",
    ),
    (
        "sigstore/sigstore-js/bundleV01-intoto-with-proof.sigstore",
        "the in-toto subject has only a sha512 digest; zerofn names artifacts by sha256",
        "dsse statement does not name the artifact",
    ),
    (
        "sigstore/sigstore-js/bundleV02-dsse.sigstore",
        "the in-toto subject has only a sha512 digest; zerofn names artifacts by sha256",
        "dsse statement does not name the artifact",
    ),
    (
        "sigstore/sigstore-js/bundleV02-intoto.sigstore",
        "the in-toto subject has only a sha512 digest; zerofn names artifacts by sha256",
        "dsse statement does not name the artifact",
    ),
    (
        "sigstore/sigstore-js/bundleV03-dsse.sigstore",
        "the in-toto subject has only a sha512 digest; zerofn names artifacts by sha256",
        "dsse statement does not name the artifact",
    ),
    (
        "sigstore/sigstore-js/bundleV03-intoto.sigstore",
        "the in-toto subject has only a sha512 digest; zerofn names artifacts by sha256",
        "dsse statement does not name the artifact",
    ),
    (
        "sigstore/sigstore-js/bundleV01-full-cert-chain.sigstore",
        "the bundle's chain includes the Fulcio root, which conformance case `bundle-with-root-cert_fail` requires refusing",
        "bundle certificate chain includes the root certificate",
    ),
    (
        "sigstore/sigstore-go/examples/bundle-provenance.json",
        "the bundle's chain includes the Fulcio root (refused as in `bundle-with-root-cert_fail`), and its subject is sha512 only",
        "bundle certificate chain includes the root certificate",
    ),
];

/// The result of one `zerofn verify` run.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

fn zerofn_verify(args: &[String]) -> Run {
    let output = Command::new(ZEROFN)
        .arg("verify")
        .args(args)
        .env_remove("ZEROFN_DATA_DIR")
        .output()
        .expect("run zerofn");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn data(path: &str) -> PathBuf {
    zerofn_testkit::testdata(path)
}

fn sha256_of(path: &Path) -> String {
    format!(
        "sha256:{}",
        hex(&Sha256::digest(std::fs::read(path).unwrap()))
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn s(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

/// Checks a run: success prints exactly one `verified <digest> signed by ...` line;
/// failure prints exactly one `error: ...` line containing `fragment`.
fn check(run: &Run, expect: Result<&str, &str>, digest: &str) -> Result<(), String> {
    match expect {
        Ok(signer) => {
            let prefix = format!("verified {digest} signed by {signer}");
            if run.success
                && run.stdout.starts_with(&prefix)
                && run.stdout.lines().count() == 1
                && run.stderr.is_empty()
            {
                Ok(())
            } else {
                Err(format!(
                    "expected PASS ({prefix}), got success={} stdout={:?} stderr={:?}",
                    run.success, run.stdout, run.stderr
                ))
            }
        }
        Err(fragment) => {
            if !run.success
                && run.stdout.is_empty()
                && run.stderr.starts_with("error: ")
                && run.stderr.lines().count() == 1
                && run.stderr.contains(fragment)
            {
                Ok(())
            } else {
                Err(format!(
                    "expected FAIL containing {fragment:?}, got success={} stdout={:?} stderr={:?}",
                    run.success, run.stdout, run.stderr
                ))
            }
        }
    }
}

/// The check each `_fail` case must be refused by (the start of the error message).
const EXPECTED_FAILURES: &[(&str, &str)] = &[
    ("bundle-empty-certificate-chain_fail", "bundle is malformed: `verificationMaterial.x509CertificateChain.certificates` is empty"),
    ("bundle-from-wrong-instance_fail", "transparency log `d32f30a3c32d639c2b762205a21c7bb07788e68283a4ae6f42118723a1bea496` is not in the trusted root"),
    ("bundle-invalid-base64-signature_fail", "bundle is malformed: `messageSignature.signature` is not valid base64"),
    ("bundle-malformed-json_fail", "bundle is malformed: it is not bundle JSON"),
    ("bundle-negative-log-index_fail", "transparency log entry is invalid: log index -1 is negative"),
    ("bundle-unknown-version_fail", "bundle is malformed: media type `application/vnd.dev.sigstore.bundle+json;version=99.9` is not supported"),
    ("bundle-with-root-cert_fail", "bundle certificate chain includes the root certificate"),
    ("checkpoint-bad-keyhint_fail", "checkpoint signature invalid: no signature has the key hint"),
    ("checkpoint-wrong-roothash_fail", "checkpoint is invalid: the checkpoint's tree size or root hash differs"),
    ("dsse-invalid-sig_fail", "does not verify with the signing certificate's key"),
    ("dsse-mismatch-envelope_fail", "transparency log entry does not match artifact: the logged payload hash differs"),
    ("dsse-mismatch-sig_fail", "transparency log entry does not match artifact: the logged signature differs"),
    ("inclusion-proof-corrupted-hash_fail", "inclusion proof does not verify"),
    ("incorrect-public-key_fail", "transparency log entry does not match artifact: the logged certificate or key differs"),
    ("integrated-time-in-future_fail", "signature time outside certificate validity"),
    ("intoto-expired-certificate_fail", "signature time outside certificate validity"),
    ("intoto-log-entry-mismatch_fail", "transparency log entry does not match artifact: the logged signature differs"),
    ("intoto-missing-inclusion-proof_fail", "inclusion proof missing"),
    ("intoto-set-outside-signing-cert-validity_fail", "signature time outside certificate validity"),
    ("intoto-tsa-timestamp-outside-cert-validity_fail", "signature time outside certificate validity"),
    ("invalid-checkpoint-signature_fail", "checkpoint signature invalid: no signature verifies"),
    ("invalid-ct-key_fail", "sct invalid"),
    ("invalid-inclusion-proof_fail", "inclusion proof does not verify"),
    ("managed-key-no-key_fail", "bundle is signed with a key, not a certificate"),
    ("managed-key-wrong-key_fail", "public key is not usable"),
    ("message-digest-mismatch_fail", "bundle is for artifact `sha256:a1cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf`"),
    ("rekor2-checkpoint-missing-log-signature_fail", "checkpoint signature invalid: the checkpoint has no signatures"),
    ("rekor2-checkpoint-missing-origin_fail", "checkpoint is invalid"),
    ("rekor2-checkpoint-missing-root-hash_fail", "checkpoint is invalid"),
    ("rekor2-checkpoint-missing-size_fail", "checkpoint is invalid"),
    ("rekor2-checkpoint-no-matching-signature_fail", "checkpoint signature invalid: no signature verifies"),
    ("rekor2-dsse-invalid-sig_fail", "does not verify with the signing certificate's key"),
    ("rekor2-dsse-mismatch-envelope_fail", "transparency log entry does not match artifact: the logged artifact digest differs"),
    ("rekor2-dsse-mismatch-sig_fail", "transparency log entry does not match artifact: the logged signature differs"),
    ("rekor2-no-inclusion-proof_fail", "inclusion proof missing"),
    ("rekor2-no-timestamp_fail", "no verified signing time"),
    ("rekor2-timestamp-outside-trust-root-tsa-validity_fail", "no verified signing time"),
    ("rekor2-timestamp-outside-tsa-cert-validity_fail", "no verified signing time"),
    ("rekor2-timestamp-payload-mismatch_fail", "no verified signing time"),
    ("rekor2-timestamp-untrusted-tsa-with-embedded-cert_fail", "no verified signing time"),
    ("rekor2-timestamp-untrusted-tsa-without-embedded-cert_fail", "no verified signing time"),
    ("rekor2-timestamp-with-incorrect-time_fail", "signature time outside certificate validity"),
    ("set-invalid-signature_fail", "signed entry timestamp invalid"),
    ("signature-mismatch_fail", "does not verify with the signing certificate's key"),
    ("trust-root-tlog-missing-validity-start_fail", "trusted root is invalid: `tlogs[1].publicKey.validFor.start` is missing"),
    ("wrong-hashedrekord-artifact_fail", "transparency log entry does not match artifact: the logged artifact digest differs"),
    ("wrong-hashedrekord-cert-and-sig_fail", "transparency log entry does not match artifact"),
    ("wrong-hashedrekord-entry_fail", "transparency log entry does not match artifact"),
    ("wrong-material_fail", "bundle is for artifact `sha256:a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf`"),
];

#[test]
fn every_bundle_verify_case_behaves_as_the_suite_expects() {
    let root = data("sigstore/conformance/bundle-verify");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert_eq!(
        cases.len(),
        70,
        "the 70 bundle-verify case directories of sigstore-conformance"
    );

    let mut wrong = Vec::new();
    let mut passed = 0;
    let mut failed = 0;
    for dir in &cases {
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let artifact = if dir.join("artifact").exists() {
            dir.join("artifact")
        } else {
            data("sigstore/conformance/a.txt")
        };
        let digest = sha256_of(&artifact);
        let mut args = vec!["--bundle".to_owned(), s(&dir.join("bundle.sigstore.json"))];
        let trusted_root = if dir.join("trusted_root.json").exists() {
            dir.join("trusted_root.json")
        } else {
            data(PRODUCTION_ROOT)
        };
        args.extend(["--trusted-root".to_owned(), s(&trusted_root)]);
        let signer = if dir.join("key.pub").exists() {
            args.extend(["--key".to_owned(), s(&dir.join("key.pub"))]);
            "key sha256:".to_owned()
        } else {
            let read = |file: &str, default: &str| {
                std::fs::read_to_string(dir.join(file))
                    .map(|text| text.trim().to_owned())
                    .unwrap_or_else(|_| default.to_owned())
            };
            let san = read("identity", BEACON_SAN);
            let issuer = read("issuer", GITHUB_ACTIONS);
            args.extend([
                "--certificate-identity".to_owned(),
                san.clone(),
                "--certificate-oidc-issuer".to_owned(),
                issuer.clone(),
            ]);
            format!("{san} (issuer {issuer})")
        };
        let expect = if name.ends_with("_fail") {
            let fragment = EXPECTED_FAILURES
                .iter()
                .find(|(case, _)| *case == name)
                .map(|(_, fragment)| *fragment)
                .unwrap_or_else(|| panic!("{name}: add its expected failure to EXPECTED_FAILURES"));
            Err(fragment)
        } else {
            Ok(signer.as_str())
        };
        for form in [s(&artifact), digest.clone()] {
            let mut full = vec![form.clone()];
            full.extend(args.iter().cloned());
            let run = zerofn_verify(&full);
            match check(&run, expect, &digest) {
                Ok(()) if expect.is_ok() => passed += 1,
                Ok(()) => failed += 1,
                Err(e) => wrong.push(format!("{name} ({form}): {e}")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong outcomes:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(
        (passed, failed),
        (42, 98),
        "PASS and FAIL runs (two per case)"
    );
}

/// One bundle from another client's test suite.
struct Case {
    bundle: &'static str,
    /// A path under the test data, or a `sha256:` digest.
    artifact: &'static str,
    trusted_root: &'static str,
    san: &'static str,
    issuer: &'static str,
    /// `Ok(signer line prefix)` or `Err(error fragment)`.
    expect: Result<&'static str, &'static str>,
}

fn run_case(case: &Case, trusted_root: &Path) -> Result<(), String> {
    let (artifact, digest) = if case.artifact.starts_with("sha256:") {
        (case.artifact.to_owned(), case.artifact.to_owned())
    } else {
        let path = data(case.artifact);
        (s(&path), sha256_of(&path))
    };
    let args = vec![
        artifact,
        "--bundle".to_owned(),
        s(&data(case.bundle)),
        "--trusted-root".to_owned(),
        s(trusted_root),
        "--certificate-identity".to_owned(),
        case.san.to_owned(),
        "--certificate-oidc-issuer".to_owned(),
        case.issuer.to_owned(),
    ];
    check(&zerofn_verify(&args), case.expect, &digest).map_err(|e| format!("{}: {e}", case.bundle))
}

#[test]
fn other_clients_bundles_verify_as_upstream_expects() {
    let cases = [
        Case { bundle: "sigstore/sigstore-python/bundle.txt.sigstore", artifact: "sigstore/sigstore-python/bundle.txt", trusted_root: STAGING_ROOT, san: "a@tny.town", issuer: GITHUB_OAUTH, expect: Ok("a@tny.town (issuer https://github.com/login/oauth) at 2023-04-26T00:21:09Z") },
        Case { bundle: "sigstore/sigstore-python/bundle.txt.sigstore", artifact: "sigstore/sigstore-python/bundle.txt", trusted_root: STAGING_ROOT, san: "bad@ident.example.com", issuer: GITHUB_OAUTH, expect: Err("certificate identity mismatch") },
        Case { bundle: "sigstore/sigstore-python/bundle.txt.sigstore", artifact: "sigstore/sigstore-python/bundle.txt", trusted_root: STAGING_ROOT, san: "a@tny.town", issuer: "https://accounts.google.com", expect: Err("certificate oidc issuer mismatch") },
        Case { bundle: "sigstore/sigstore-python/bundle.txt.sigstore", artifact: "sigstore/sigstore-python/bundle.txt", trusted_root: PRODUCTION_ROOT, san: "a@tny.town", issuer: GITHUB_OAUTH, expect: Err("is not in the trusted root") },
        Case { bundle: "sigstore/sigstore-python/bundle_v3.txt.sigstore", artifact: "sigstore/sigstore-python/bundle_v3.txt", trusted_root: STAGING_ROOT, san: "william@yossarian.net", issuer: GITHUB_OAUTH, expect: Ok("william@yossarian.net") },
        Case { bundle: "sigstore/sigstore-python/bundle_v3_alt.txt.sigstore", artifact: "sigstore/sigstore-python/bundle_v3_alt.txt", trusted_root: STAGING_ROOT, san: "william@yossarian.net", issuer: GITHUB_OAUTH, expect: Ok("william@yossarian.net") },
        Case { bundle: "sigstore/sigstore-python/integration/bundle_v3.txt.sigstore", artifact: "sigstore/sigstore-python/integration/bundle_v3.txt", trusted_root: STAGING_ROOT, san: "william@yossarian.net", issuer: GITHUB_OAUTH, expect: Ok("william@yossarian.net") },
        Case { bundle: "sigstore/sigstore-python/staging-rekor-v2.txt.sigstore.json", artifact: "sigstore/sigstore-python/staging-rekor-v2.txt", trusted_root: STAGING_ROOT, san: "jku@goto.fi", issuer: GITHUB_OAUTH, expect: Ok("jku@goto.fi") },
        // The envelope's statement names a.txt (sha256 a0cf…), so that is the artifact.
        Case { bundle: "sigstore/sigstore-python/a.dsse.staging-rekor-v2.txt.sigstore.json", artifact: "sha256:a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf", trusted_root: STAGING_ROOT, san: BEACON_SAN, issuer: GITHUB_ACTIONS, expect: Ok(BEACON_SAN) },
        Case { bundle: "sigstore/sigstore-python/bundle_cve_2022_36056.txt.sigstore", artifact: "sigstore/sigstore-python/bundle_cve_2022_36056.txt", trusted_root: STAGING_ROOT, san: "william@yossarian.net", issuer: GITHUB_OAUTH, expect: Err("transparency log entry does not match artifact") },
        Case { bundle: "sigstore/sigstore-python/bundle_invalid_version.txt.sigstore", artifact: "sigstore/sigstore-python/bundle_invalid_version.txt", trusted_root: STAGING_ROOT, san: "william@yossarian.net", issuer: GITHUB_OAUTH, expect: Err("media type `this is completely wrong` is not supported") },
        Case { bundle: "sigstore/sigstore-python/bundle_no_cert_v1.txt.sigstore", artifact: "sigstore/sigstore-python/bundle_no_cert_v1.txt", trusted_root: PRODUCTION_ROOT, san: "william@yossarian.net", issuer: GITHUB_OAUTH, expect: Err("certificates` is empty") },
        Case { bundle: "sigstore/sigstore-python/bundle_no_log_entry.txt.sigstore", artifact: "sigstore/sigstore-python/bundle_no_log_entry.txt", trusted_root: PRODUCTION_ROOT, san: "alex.cameron@trailofbits.com", issuer: "https://accounts.google.com", expect: Err("transparency log entry missing") },
        Case { bundle: "sigstore/sigstore-python/bundle_no_checkpoint.txt.sigstore", artifact: "sigstore/sigstore-python/bundle_no_checkpoint.txt", trusted_root: STAGING_ROOT, san: "william@yossarian.net", issuer: GITHUB_OAUTH, expect: Err("the inclusion proof has no checkpoint") },
        Case { bundle: "sigstore/sigstore-python/bundle_v3_no_signed_time.txt.sigstore.json", artifact: "sigstore/sigstore-python/bundle_v3_no_signed_time.txt", trusted_root: PRODUCTION_ROOT, san: "william@yossarian.net", issuer: GITHUB_OAUTH, expect: Err("no verified signing time") },
        // The wheel itself is not stored; its digest is the logged one.
        Case { bundle: "sigstore/sigstore-python/bundle_v3_github.whl.sigstore", artifact: "sha256:c4e92e9ecc828bef2aa7dba1de8ac983511f7532a0df11c770d39099a25cf201", trusted_root: PRODUCTION_ROOT, san: "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2", issuer: GITHUB_ACTIONS, expect: Ok("https://github.com/trailofbits/rfc8785.py/") },
        // Strictly loaded (no `fix-bundle`), as upstream: its proof has no checkpoint.
        Case { bundle: "sigstore/sigstore-python/integration/Python-3.12.5.tgz.sigstore", artifact: "sha256:38dc4e2c261d49c661196066edbfb70fdb16be4a79cc8220c224dfeb5636d405", trusted_root: PRODUCTION_ROOT, san: "thomas@python.org", issuer: "https://accounts.google.com", expect: Err("the inclusion proof has no checkpoint") },
        Case { bundle: "sigstore/sigstore-rs/bundle_v03.json", artifact: "sha256:c811d58de79c92f03214e63aa339484e488d694ae8a6283b5f3f17a9faf50172", trusted_root: PRODUCTION_ROOT, san: "https://github.com/kubewarden/kubewarden-controller/.github/workflows/release.yml@refs/tags/v1.34.0", issuer: GITHUB_ACTIONS, expect: Ok("https://github.com/kubewarden/") },
        Case { bundle: "sigstore/sigstore-rs/bundle_v03.json", artifact: "sha256:c811d58de79c92f03214e63aa339484e488d694ae8a6283b5f3f17a9faf50172", trusted_root: PRODUCTION_ROOT, san: "https://github.com/kubewarden/kubewarden-controller/.github/workflows/release.yml@refs/tags/v1.33.0", issuer: GITHUB_ACTIONS, expect: Err("certificate identity mismatch") },
        Case { bundle: "sigstore/sigstore-rs/bundle_v03.json", artifact: "sha256:0000000000000000000000000000000000000000000000000000000000000000", trusted_root: PRODUCTION_ROOT, san: "https://github.com/kubewarden/kubewarden-controller/.github/workflows/release.yml@refs/tags/v1.34.0", issuer: GITHUB_ACTIONS, expect: Err("dsse statement does not name the artifact") },
        Case { bundle: "sigstore/sigstore-go/pkg-testing-data/bundles/othername.sigstore.json", artifact: "sha256:bc103b4a84971ef6459b294a2b98568a2bfb72cded09d4acd1e16366a401f95b", trusted_root: "sigstore/sigstore-go/pkg-testing-data/trusted-roots/scaffolding.json", san: "foo!oidc.local", issuer: "http://oidc.local:8080", expect: Ok("foo!oidc.local (issuer http://oidc.local:8080)") },
        Case { bundle: "sigstore/sigstore-go/pkg-testing-data/bundles/othername.sigstore.json", artifact: "sha256:bc103b4a84971ef6459b294a2b98568a2bfb72cded09d4acd1e16366a401f95b", trusted_root: "sigstore/sigstore-go/pkg-testing-data/trusted-roots/scaffolding.json", san: "foo@oidc.local", issuer: "http://oidc.local:8080", expect: Err("certificate identity mismatch") },
        Case { bundle: "sigstore/sigstore-go/pkg-testing-data/bundles/dsse-2sigs.sigstore.json", artifact: "sha256:bc103b4a84971ef6459b294a2b98568a2bfb72cded09d4acd1e16366a401f95b", trusted_root: "sigstore/sigstore-go/pkg-testing-data/trusted-roots/public-good.json", san: "brian@dehamer.com", issuer: GITHUB_OAUTH, expect: Err("error: ") },
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|case| run_case(case, &data(case.trusted_root)).err())
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn rfc3161_bundles_verify_with_their_timestamp_authority() {
    // sigstore-python's tsa/ tests add tsa/ca.json as the timestamp authority of the staging
    // root; the merged root is written to a temporary file, not into the repository.
    let mut root: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data(STAGING_ROOT)).unwrap()).unwrap();
    let ca: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data("sigstore/sigstore-python/tsa/ca.json")).unwrap(),
    )
    .unwrap();
    root["timestampAuthorities"] = serde_json::json!([ca]);
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("trusted_root.json");
    std::fs::write(&merged, serde_json::to_vec(&root).unwrap()).unwrap();

    let case = |bundle: &'static str, expect| Case {
        bundle,
        artifact: "sigstore/sigstore-python/tsa/bundle.txt",
        trusted_root: "",
        san: "alexis.challande@trailofbits.com",
        issuer: "https://accounts.google.com",
        expect,
    };
    let wrong: Vec<String> = [
        // Two timestamps, one over another message: the valid one is the verified time.
        (case("sigstore/sigstore-python/tsa/bundle.txt.sigstore", Ok("alexis.challande@trailofbits.com (issuer https://accounts.google.com) at 2024-10-31T10:23:39Z")), merged.clone()),
        // Without that authority neither timestamp verifies, and (unlike sigstore-python,
        // which then refuses) the log entry's signed integrated time still dates it.
        (case("sigstore/sigstore-python/tsa/bundle.txt.sigstore", Ok("alexis.challande@trailofbits.com")), data(STAGING_ROOT)),
        (case("sigstore/sigstore-python/tsa/bundle.duplicate.sigstore", Err("rfc 3161 timestamp invalid: the bundle has duplicate timestamps")), merged.clone()),
        (case("sigstore/sigstore-python/tsa/bundle.many_timestamp.sigstore", Err("rfc 3161 timestamp invalid: the bundle has 33 timestamps")), merged.clone()),
        (case("sigstore/sigstore-python/tsa/bundle.txt.late_timestamp.sigstore", Err("error: ")), merged.clone()),
    ]
    .iter()
    .filter_map(|(case, root)| run_case(case, root).err())
    .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn unsupported_bundles_are_refused_not_skipped() {
    for (bundle, why, fragment) in UNSUPPORTED {
        let is_js = bundle.contains("sigstore-js");
        let (artifact, root, san, issuer) = if is_js {
            (
                "sigstore/sigstore-js/statement.json",
                PRODUCTION_ROOT,
                "brian@dehamer.com",
                GITHUB_OAUTH,
            )
        } else {
            (
                "sigstore/sigstore-go/examples/statement-provenance-sigstorejs1.3.0.json",
                "sigstore/sigstore-go/examples/trusted-root-public-good.json",
                "https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main",
                GITHUB_ACTIONS,
            )
        };
        let artifact = data(artifact);
        let args = vec![
            s(&artifact),
            "--bundle".to_owned(),
            s(&data(bundle)),
            "--trusted-root".to_owned(),
            s(&data(root)),
            "--certificate-identity".to_owned(),
            san.to_owned(),
            "--certificate-oidc-issuer".to_owned(),
            issuer.to_owned(),
        ];
        let run = zerofn_verify(&args);
        if let Err(e) = check(&run, Err(fragment), &sha256_of(&artifact)) {
            panic!("{bundle} (unsupported: {why}) must be refused: {e}");
        }
    }
}

#[test]
fn usage_errors_are_one_line_and_name_the_problem() {
    let a_txt = s(&data("sigstore/conformance/a.txt"));
    let bundle = s(&data(
        "sigstore/conformance/bundle-verify/happy-path-v0.3/bundle.sigstore.json",
    ));
    for (args, fragment) in [
        (
            vec![
                a_txt.clone(),
                "--bundle".into(),
                bundle.clone(),
                "--certificate-identity".into(),
                BEACON_SAN.into(),
                "--certificate-oidc-issuer".into(),
                GITHUB_ACTIONS.into(),
            ],
            "error: keyless verification needs `--trusted-root FILE`",
        ),
        (
            vec![
                "sha256:abc".into(),
                "--bundle".into(),
                bundle.clone(),
                "--trusted-root".into(),
                s(&data(PRODUCTION_ROOT)),
                "--certificate-identity".into(),
                BEACON_SAN.into(),
                "--certificate-oidc-issuer".into(),
                GITHUB_ACTIONS.into(),
            ],
            "error: cannot read artifact `sha256:abc`",
        ),
        (
            vec![
                a_txt.clone(),
                "--bundle".into(),
                bundle.clone(),
                "--trusted-root".into(),
                s(&data(PRODUCTION_ROOT)),
                "--certificate-identity-regexp".into(),
                "(".into(),
                "--certificate-oidc-issuer".into(),
                GITHUB_ACTIONS.into(),
            ],
            "error: certificate identity regex is invalid",
        ),
        (
            vec![
                a_txt.clone(),
                "--bundle".into(),
                bundle.clone(),
                "--trusted-root".into(),
                s(&data(
                    "sigstore/sigstore-python/trusted_root/trustedroot.badtype.json",
                )),
                "--certificate-identity".into(),
                BEACON_SAN.into(),
                "--certificate-oidc-issuer".into(),
                GITHUB_ACTIONS.into(),
            ],
            "error: trusted root is invalid: media type",
        ),
        (
            vec![
                a_txt.clone(),
                "--bundle".into(),
                bundle.clone(),
                "--trusted-root".into(),
                s(&data(PRODUCTION_ROOT)),
                "--certificate-identity-regexp".into(),
                "https://github\\.com/sigstore-conformance/.*".into(),
                "--certificate-oidc-issuer".into(),
                GITHUB_ACTIONS.into(),
            ],
            "",
        ),
    ] {
        let run = zerofn_verify(&args);
        if fragment.is_empty() {
            assert!(run.success, "{args:?}: {}", run.stderr);
            assert!(run.stdout.starts_with("verified sha256:"), "{}", run.stdout);
        } else {
            assert!(!run.success, "{args:?}");
            assert!(run.stderr.starts_with(fragment), "{args:?}: {}", run.stderr);
            assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        }
    }
    // clap refuses a missing signer before anything is read.
    let run = zerofn_verify(&[a_txt, "--bundle".into(), bundle]);
    assert!(!run.success);
    assert!(run.stderr.contains("--key"), "{}", run.stderr);
}

/// `zerofn verify --json` prints the verified facts as one object: the digest, the signer's
/// identity and issuer, the verified signing time.
#[test]
fn verify_prints_the_verified_facts_as_json_on_request() {
    let artifact = data("sigstore/sigstore-python/bundle.txt");
    let run = zerofn_verify(&[
        s(&artifact),
        "--bundle".into(),
        s(&data("sigstore/sigstore-python/bundle.txt.sigstore")),
        "--trusted-root".into(),
        s(&data(STAGING_ROOT)),
        "--certificate-identity".into(),
        "a@tny.town".into(),
        "--certificate-oidc-issuer".into(),
        GITHUB_OAUTH.into(),
        "--json".into(),
    ]);
    assert!(run.success, "{}", run.stderr);
    let facts: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(
        facts,
        serde_json::json!({
            "digest": sha256_of(&artifact),
            "signer": { "san": "a@tny.town", "issuer": GITHUB_OAUTH },
            "signing_time": "2023-04-26T00:21:09Z",
        })
    );
}
