//! A second, independent verifier: `sigstore-verify` (sigstore-rust) runs over every
//! sigstore-conformance `bundle-verify` case and over bundles this crate signs, and must
//! reach the same outcome as [`zerofn_sigstore::verify`] and as the case expects.
//!
//! The conformance rules are the suite's own (third-party data under `../shared/testdata`,
//! read in place; its README, section 1a): a case fails if its name ends in `_fail`; the
//! artifact is the case's `artifact` or the suite's `a.txt`; the identity is the case's
//! `identity`/`issuer` or the beacon's; `key.pub` means key-based verification; the trusted
//! root is the case's `trusted_root.json` or the public-good production root.
//!
//! Where the two verifiers disagree the case is listed in [`DISAGREEMENTS`] with which one
//! is right and why; an unlisted disagreement, or a listed one that no longer happens, fails
//! the test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use zerofn_sigstore::{
    sign_artifact, sign_attestation, verify, Bundle, Identity, PublicKey, SigningKey, TrustedRoot,
    VerificationPolicy,
};
use zerofn_types::Digest;

const TESTDATA: zerofn_testkit::testdata::Dir = zerofn_testkit::testdata::dir("");
const BEACON_SAN: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const GITHUB_ACTIONS: &str = "https://token.actions.githubusercontent.com";
const PRODUCTION_ROOT: &str =
    "sigstore/trusted-roots/sigstore-python-embedded/production/trusted_root.json";

/// Cases where the two verifiers disagree: (case, outcome of zerofn, outcome of
/// sigstore-verify, which is right and why). Empty when they agree everywhere.
const DISAGREEMENTS: &[(&str, bool, bool, &str)] = &[];

fn data(path: &str) -> PathBuf {
    TESTDATA.join(path)
}

/// One verification problem, as both verifiers get it.
struct Case {
    name: String,
    bundle: Vec<u8>,
    artifact: Vec<u8>,
    trusted_root: Vec<u8>,
    /// `key.pub` (PEM), or the identity and issuer.
    signer: Result<String, (String, String)>,
}

fn conformance_cases() -> Vec<Case> {
    let root = data("sigstore/conformance");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("bundle-verify"))
        .unwrap_or_else(|e| panic!("read {}: {e}", root.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let read = |name: &str| std::fs::read(dir.join(name)).ok();
            let text =
                |name: &str| read(name).map(|b| String::from_utf8(b).unwrap().trim().to_owned());
            let pem = read("key.pub").map(|b| String::from_utf8(b).unwrap());
            let signer = match pem {
                Some(pem) => Ok(pem),
                None => Err((
                    text("identity").unwrap_or_else(|| BEACON_SAN.to_owned()),
                    text("issuer").unwrap_or_else(|| GITHUB_ACTIONS.to_owned()),
                )),
            };
            Case {
                name: dir.file_name().unwrap().to_str().unwrap().to_owned(),
                bundle: read("bundle.sigstore.json").unwrap(),
                artifact: read("artifact")
                    .unwrap_or_else(|| std::fs::read(root.join("a.txt")).unwrap()),
                trusted_root: read("trusted_root.json")
                    .unwrap_or_else(|| std::fs::read(data(PRODUCTION_ROOT)).unwrap()),
                signer,
            }
        })
        .collect()
}

/// zerofn's verdict, and its error if any.
fn zerofn_verifies(case: &Case) -> Result<(), String> {
    let bundle = Bundle::from_json(&case.bundle).map_err(|e| e.to_string())?;
    let policy = match &case.signer {
        // A key that does not parse is a refusal (`managed-key-wrong-key_fail`).
        Ok(pem) => {
            VerificationPolicy::Key(vec![PublicKey::from_pem(pem).map_err(|e| e.to_string())?])
        }
        Err((san, issuer)) => VerificationPolicy::Keyless {
            trusted_root: TrustedRoot::from_json(&case.trusted_root).map_err(|e| e.to_string())?,
            identity: Identity::Exact {
                san: san.clone(),
                issuer: issuer.clone(),
            },
        },
    };
    verify(&Digest::of(&case.artifact), &bundle, &policy)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// sigstore-verify's verdict, and its error if any. `skip_tlog` is for bundles without a
/// log entry (zerofn's own key-based bundles, which sigstore-verify otherwise refuses).
fn sigstore_rs_verifies(case: &Case, skip_tlog: bool) -> Result<(), String> {
    use sigstore_verify::trust_root::TrustedRoot as RsRoot;
    use sigstore_verify::types::{Bundle as RsBundle, DerPublicKey};
    use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy as RsPolicy};

    let json = std::str::from_utf8(&case.bundle).map_err(|e| e.to_string())?;
    let bundle = RsBundle::from_json(json).map_err(|e| e.to_string())?;
    let root = RsRoot::from_json(std::str::from_utf8(&case.trusted_root).unwrap())
        .map_err(|e| e.to_string())?;
    let artifact = case.artifact.as_slice();
    let result = match &case.signer {
        Ok(pem) => {
            let key = DerPublicKey::from_pem(pem).map_err(|e| e.to_string())?;
            let mut policy = PublicKeyVerificationPolicy::new(key);
            if skip_tlog {
                policy = policy.skip_tlog_unsafe();
            }
            sigstore_verify::verify(artifact, &bundle, &policy, &root)
        }
        Err((san, issuer)) => {
            let policy = RsPolicy::new(san.as_str(), issuer.as_str());
            sigstore_verify::verify(artifact, &bundle, &policy, &root)
        }
    };
    result.map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn both_verifiers_agree_with_every_conformance_case() {
    let cases = conformance_cases();
    assert_eq!(cases.len(), 70, "the 70 bundle-verify case directories");
    let mut wrong = Vec::new();
    let mut disagreements = Vec::new();
    for case in &cases {
        let expected = !case.name.ends_with("_fail");
        let ours = zerofn_verifies(case);
        let theirs = sigstore_rs_verifies(case, false);
        if ours.is_ok() != expected {
            wrong.push(format!(
                "{}: zerofn says {ours:?}, expected pass={expected}",
                case.name
            ));
        }
        if ours.is_ok() != theirs.is_ok() {
            disagreements.push((case.name.clone(), ours.is_ok(), theirs.is_ok()));
            eprintln!("{}: zerofn {ours:?}, sigstore-verify {theirs:?}", case.name);
        } else if theirs.is_ok() != expected {
            wrong.push(format!(
                "{}: both say pass={}, expected pass={expected}; sigstore-verify: {theirs:?}",
                case.name,
                theirs.is_ok()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let known: Vec<(String, bool, bool)> = DISAGREEMENTS
        .iter()
        .map(|(name, ours, theirs, _)| ((*name).to_owned(), *ours, *theirs))
        .collect();
    assert_eq!(disagreements, known, "disagreements changed");
}

/// What sigstore-verify says about every bundle without a log entry or a timestamp.
///
/// Disagreement, recorded: zerofn's own bundles are key-based with an empty
/// `tlogEntries` (what `cosign sign-blob --key … --new-bundle-format --tlog-upload=false`
/// writes, and what `zerofn sign` writes for tenants that trust keys). zerofn verifies them:
/// for a key-based policy the tenant's key is the trust anchor and no trusted root is
/// involved (the crate's `# Trust` section says transparency log entries are not checked for
/// key-based bundles). sigstore-verify refuses them before any signature check, in
/// sigstore-bundle's structural validation (`validate_common`: a bundle needs a log entry
/// or an RFC 3161 timestamp as evidence of signing time, even with `skip_tlog_unsafe`). Both
/// are right for what they verify: sigstore-verify implements the public-good client
/// profile (a signing time is always proven), zerofn's key-based admission deliberately does
/// not need one (its keys do not expire with a certificate). So on these bundles the second
/// verifier cannot confirm the signature; it must refuse them for this reason, and only for
/// it, and zerofn's own checks on them are covered by `bundle.rs`'s tests and by the
/// key-based conformance cases above (where both verifiers agree).
const NO_SIGNING_TIME_EVIDENCE: &str =
    "bundle must have at least one tlog entry or timestamp verification data";

#[test]
fn our_own_bundles_verify_with_zerofn_and_are_refused_only_for_lacking_a_log_entry() {
    let key = SigningKey::generate();
    let other = SigningKey::generate();
    let artifact = b"\0asm a component signed by zerofn".to_vec();
    let bundle = sign_artifact(&artifact, &key).unwrap().into_bytes();
    let trusted_root = std::fs::read(data(PRODUCTION_ROOT)).unwrap();
    let case = |bundle: &[u8], artifact: &[u8], signer: &SigningKey| Case {
        name: String::new(),
        bundle: bundle.to_vec(),
        artifact: artifact.to_vec(),
        trusted_root: trusted_root.clone(),
        signer: Ok(signer.public_key().to_pem()),
    };
    let refused_for_no_log_entry = |case: &Case| {
        let verdict = sigstore_rs_verifies(case, true);
        assert!(
            verdict
                .as_ref()
                .is_err_and(|e| e.contains(NO_SIGNING_TIME_EVIDENCE)),
            "sigstore-verify: {verdict:?}"
        );
    };

    let good = case(&bundle, &artifact, &key);
    assert_eq!(zerofn_verifies(&good), Ok(()));
    refused_for_no_log_entry(&good);

    for (what, altered) in [
        (
            "other artifact",
            case(&bundle, b"\0asm another component", &key),
        ),
        ("other key", case(&bundle, &artifact, &other)),
    ] {
        assert!(zerofn_verifies(&altered).is_err(), "zerofn accepted {what}");
        refused_for_no_log_entry(&altered);
    }

    // An attestation (a DSSE envelope in a bundle, also without a log entry).
    let digest = Digest::of(&artifact);
    let attestation = sign_attestation(
        "c.wasm",
        &digest,
        "https://in-toto.io/attestation/test-result/v0.1",
        &serde_json::json!({"result": "PASSED"}),
        &key,
    )
    .unwrap();
    refused_for_no_log_entry(&case(attestation.as_bytes(), &artifact, &key));
}
