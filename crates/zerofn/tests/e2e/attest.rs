//! `zerofn attest` and `zerofn attest verify`, through the real binary: keys from `zerofn
//! keygen`, one attestation of each kind signed and verified, and the refusals (another
//! artifact, an untrusted key, a tampered payload, two provenances) naming the failed check.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;

const ZEROFN: &str = env!("CARGO_BIN_EXE_zerofn");

fn zerofn(dir: &Path, args: &[&str]) -> Output {
    Command::new(ZEROFN)
        .args(args)
        .current_dir(dir)
        .env("ZEROFN_DATA_DIR", dir.join("data"))
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = zerofn(dir, args);
    assert!(
        out.status.success(),
        "zerofn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let out = zerofn(dir, args);
    assert!(!out.status.success(), "zerofn {args:?} succeeded");
    assert!(
        out.stdout.is_empty(),
        "zerofn {args:?} printed {:?}",
        out.stdout
    );
    String::from_utf8(out.stderr).unwrap()
}

struct Setup {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    ok(&dir, &["keygen", "--out", "signer.key"]);
    ok(&dir, &["keygen", "--out", "stranger.key"]);
    std::fs::write(dir.join("fn.wasm"), b"\0asm\x0d\0\x01\0component").unwrap();
    std::fs::write(dir.join("other.wasm"), b"\0asm\x0d\0\x01\0other").unwrap();
    std::fs::write(
        dir.join("provenance.json"),
        r#"{"buildDefinition":{"buildType":"https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1","externalParameters":{"workflow":{"repository":"https://github.com/acme/fn","ref":"refs/tags/v1.2.0","path":".github/workflows/release.yml"}},"resolvedDependencies":[{"uri":"git+https://github.com/acme/fn@refs/tags/v1.2.0","digest":{"gitCommit":"0123abcd"}}]},"runDetails":{"builder":{"id":"https://github.com/actions/runner/github-hosted"}}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("vuln.json"),
        r#"{"scanner":{"uri":"pkg:github/aquasecurity/trivy@244fd47","version":"0.50.0","result":{"Results":[{"Vulnerabilities":[{"Severity":"HIGH"},{"Severity":"LOW"}]}]}}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("tests.json"),
        r#"{"result":"PASSED","passedTests":["unit","e2e"]}"#,
    )
    .unwrap();
    Setup { _tmp: tmp, dir }
}

#[test]
fn attest_then_verify_each_kind() {
    let s = setup();
    let dir = &s.dir;
    for (kind, predicate) in [
        ("slsa-provenance", "provenance.json"),
        ("vuln", "vuln.json"),
        ("test-result", "tests.json"),
    ] {
        let line = ok(
            dir,
            &[
                "attest",
                "fn.wasm",
                "--key",
                "signer.key",
                "--type",
                kind,
                "--predicate",
                predicate,
            ],
        );
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(
            line.ends_with(&format!("wrote fn.wasm.{kind}.sigstore.json\n")),
            "{line}"
        );
        let bundle: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("fn.wasm.{kind}.sigstore.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            bundle["mediaType"],
            "application/vnd.dev.sigstore.bundle.v0.3+json"
        );
        assert_eq!(
            bundle["dsseEnvelope"]["payloadType"],
            "application/vnd.in-toto+json"
        );
    }

    let out = ok(
        dir,
        &[
            "attest",
            "verify",
            "fn.wasm",
            "--attestation",
            "fn.wasm.slsa-provenance.sigstore.json",
            "--attestation",
            "fn.wasm.vuln.sigstore.json",
            "--attestation",
            "fn.wasm.test-result.sigstore.json",
            "--key",
            "signer.key.pub",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert!(
        lines[0].starts_with("verified https://slsa.dev/provenance/v1 over sha256:"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("verified https://cosign.sigstore.dev/attestation/vuln/v1 over"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("verified https://in-toto.io/attestation/test-result/v0.1 over"),
        "{out}"
    );
    assert_eq!(
        lines[3],
        "provenance: builder https://github.com/actions/runner/github-hosted build type https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1 source https://github.com/acme/fn ref refs/tags/v1.2.0 digest gitCommit:0123abcd entry point .github/workflows/release.yml"
    );
    assert_eq!(
        lines[4],
        "vulnerabilities: scanner pkg:github/aquasecurity/trivy@244fd47 version 0.50.0: critical 0 high 1 medium 0 low 1 unknown 0"
    );
    assert_eq!(lines[5], "tests: passed (2 passed, 0 warned, 0 failed)");
}

#[test]
fn attest_verify_refuses_with_the_failed_check() {
    let s = setup();
    let dir = &s.dir;
    ok(
        dir,
        &[
            "attest",
            "fn.wasm",
            "--key",
            "signer.key",
            "--type",
            "slsa-provenance",
            "--predicate",
            "provenance.json",
            "--out",
            "prov.json",
        ],
    );
    ok(
        dir,
        &[
            "attest",
            "fn.wasm",
            "--key",
            "stranger.key",
            "--type",
            "slsa-provenance",
            "--predicate",
            "provenance.json",
            "--out",
            "prov2.json",
        ],
    );
    // A tampered copy: the payload's builder id changed, the signature kept.
    let mut bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("prov.json")).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64
        .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    let tampered = String::from_utf8(payload)
        .unwrap()
        .replace("github-hosted", "self-hosted");
    bundle["dsseEnvelope"]["payload"] = b64.encode(tampered).into();
    std::fs::write(dir.join("tampered.json"), bundle.to_string()).unwrap();

    for (args, message) in [
        (
            vec![
                "other.wasm",
                "--attestation",
                "prov.json",
                "--key",
                "signer.key.pub",
            ],
            "attestation subject does not match the component",
        ),
        (
            vec![
                "fn.wasm",
                "--attestation",
                "prov.json",
                "--key",
                "stranger.key.pub",
            ],
            "attestation signature does not verify with any trusted key",
        ),
        (
            vec![
                "fn.wasm",
                "--attestation",
                "tampered.json",
                "--key",
                "signer.key.pub",
            ],
            "attestation signature does not verify with any trusted key",
        ),
        (
            vec![
                "fn.wasm",
                "--attestation",
                "prov.json",
                "--attestation",
                "prov2.json",
                "--key",
                "signer.key.pub",
                "--key",
                "stranger.key.pub",
            ],
            "ambiguous attestations: more than one `slsa-provenance` attestation",
        ),
        (
            vec![
                "fn.wasm",
                "--attestation",
                "provenance.json",
                "--key",
                "signer.key.pub",
            ],
            "attestation is malformed",
        ),
    ] {
        let mut full = vec!["attest", "verify"];
        full.extend(&args);
        let err = fails(dir, &full);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
}

#[test]
fn attest_refuses_unusable_predicates() {
    let s = setup();
    let dir = &s.dir;
    std::fs::write(dir.join("bad.json"), r#"{"result":"MAYBE"}"#).unwrap();
    let err = fails(
        dir,
        &[
            "attest",
            "fn.wasm",
            "--key",
            "signer.key",
            "--type",
            "test-result",
            "--predicate",
            "bad.json",
        ],
    );
    assert!(
        err.contains("`result` is `MAYBE`; expected `PASSED`, `WARNED` or `FAILED`"),
        "{err}"
    );
    assert!(!dir.join("fn.wasm.test-result.sigstore.json").exists());
    let err = fails(dir, &["attest", "fn.wasm", "--key", "signer.key"]);
    assert!(err.contains("--type"), "{err}");
}

#[test]
fn intoto_jsonl_files_verify_line_by_line() {
    let s = setup();
    let dir = &s.dir;
    ok(
        dir,
        &[
            "attest",
            "fn.wasm",
            "--key",
            "signer.key",
            "--type",
            "test-result",
            "--predicate",
            "tests.json",
        ],
    );
    let bundle: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("fn.wasm.test-result.sigstore.json")).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("fn.intoto.jsonl"),
        format!("{}\n", bundle["dsseEnvelope"]),
    )
    .unwrap();
    let out = ok(
        dir,
        &[
            "attest",
            "verify",
            "fn.wasm",
            "--attestation",
            "fn.intoto.jsonl",
            "--key",
            "signer.key.pub",
        ],
    );
    assert!(
        out.ends_with("tests: passed (2 passed, 0 warned, 0 failed)\n"),
        "{out}"
    );
}
