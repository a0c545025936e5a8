//! Signed intent: the manifest a function is deployed with is the one its signer signed.
//!
//! `zerofn sign DIR` (or `cosign attest-blob --type` [`MANIFEST_PREDICATE_V1`]) writes an
//! in-toto statement in a DSSE envelope whose subject is the component's digest and whose
//! predicate is
//!
//! ```json
//! {"manifest": <the manifest's signed form>, "version": 7}
//! ```
//!
//! with the signed form of [`zerofn_manifest::signed`] (the security-relevant content of
//! `zerofn.toml`, canonical) and a version the signer chooses, higher for each release.
//! Admission ([`check_intent`]) verifies that statement like every attestation (a trusted
//! signer of the tenant, about this component), requires the submitted manifest to equal the
//! signed one field by field, and refuses a version below the highest ever deployed for the
//! function (TUF's rollback rule) unless the operator allows the rollback, with a reason.
//!
//! The predicate is versioned by its type: `…/manifest/v1` is the only one understood, and
//! a statement of any other `https://zerofn.dev/attestations/manifest/…` type is refused
//! rather than ignored, as is a `v1` predicate with a key this code does not know (a later
//! section signed but not enforced would be a grant nobody checked).
//!
//! # Trust
//! Reads only [`VerifiedAttestation`]s (signature and subject checked by
//! `zerofn-sigstore`). Trusts the caller for the version floor (the highest version the
//! platform has recorded for the function) and for whether a rollback was authorised.

use serde_json::{json, Value};
use zerofn_manifest::{first_difference, Manifest};
use zerofn_sigstore::{
    sign_attestation, Attestation, AttestationError, SignerIdentity, SigningKey, TrustedSigners,
    VerifiedAttestation,
};
use zerofn_types::{escape, Digest};

/// The predicate type of a signed manifest, version 1 of its format.
pub const MANIFEST_PREDICATE_V1: &str = "https://zerofn.dev/attestations/manifest/v1";

/// Every predicate type of this family starts so; versions other than v1 are refused.
const MANIFEST_PREDICATE_FAMILY: &str = "https://zerofn.dev/attestations/manifest/";

/// The highest `version` a signed manifest may carry: integers up to it are exact in JSON
/// numbers everywhere (RFC 8785, I-JSON) and in Cedar's `Long`.
pub const MAX_MANIFEST_VERSION: u64 = zerofn_manifest::MAX_VERSION;

/// The file name `zerofn sign DIR` writes the signed manifest to, beside `zerofn.toml`.
pub const MANIFEST_BUNDLE_FILE: &str = "zerofn.manifest.sigstore.json";

/// Why a signed manifest was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IntentError {
    #[error("no signed manifest was submitted; sign the function directory with `zerofn sign DIR --key KEY` (writes {MANIFEST_BUNDLE_FILE}) or attest the manifest with predicate type {MANIFEST_PREDICATE_V1}")]
    Missing,
    #[error("{count} signed manifests that differ were submitted; submit one")]
    Conflicting { count: usize },
    #[error(
        "predicate type `{found}` is not understood (this platform reads {MANIFEST_PREDICATE_V1})"
    )]
    UnsupportedType { found: String },
    #[error("the signed manifest's predicate is malformed: {reason}")]
    Malformed { reason: String },
    #[error("{0}")]
    Differs(zerofn_manifest::Difference),
    #[error("`version` differs from the signed manifest: signed {signed}, submitted {submitted}")]
    VersionDiffers { signed: u64, submitted: u64 },
    #[error("version {version} is below version {highest}, the highest deployed for this function; sign a higher version, or deploy with `--allow-rollback REASON`")]
    Rollback { version: u64, highest: u64 },
    #[error("version {version} was already deployed with different content (manifest or component); sign it as a higher version, or deploy with `--allow-rollback REASON`")]
    VersionReused { version: u64 },
    #[error("the stored signed manifest does not verify: {reason}")]
    Stored { reason: String },
}

/// The predicate `zerofn sign DIR` signs for `manifest` at `version`.
pub fn manifest_predicate(manifest: &Manifest, version: u64) -> Value {
    json!({
        "manifest": manifest.signed_content().as_value(),
        "version": version,
    })
}

/// Signs `manifest` at `version` as a statement about the component `digest` with `key`:
/// a Sigstore bundle v0.3 with a DSSE envelope, as [`sign_attestation`] writes.
pub fn sign_manifest(
    manifest: &Manifest,
    digest: &Digest,
    version: u64,
    key: &SigningKey,
) -> Result<String, AttestationError> {
    if !(1..=MAX_MANIFEST_VERSION).contains(&version) {
        return Err(AttestationError::SigningFailed {
            reason: format!("version {version} is not from 1 to {MAX_MANIFEST_VERSION}"),
        });
    }
    sign_attestation(
        &manifest.component,
        digest,
        MANIFEST_PREDICATE_V1,
        &manifest_predicate(manifest, version),
        key,
    )
}

/// What a deploy's signed manifest established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIntent {
    /// The signed version.
    pub version: u64,
    /// sha256 of the canonical `{"digest": <component>, "manifest": <signed form>}`: what a
    /// version stands for. Two deploys of one version must have the same.
    pub content_digest: Digest,
    /// Who signed it.
    pub signer: SignerIdentity,
    /// The submitted file that carried the statement (kept, so a restart verifies it again).
    pub bundle: Vec<u8>,
}

/// The highest version recorded for a function, and what it stood for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionFloor {
    pub version: u64,
    pub content_digest: Digest,
}

/// Whether a deploy may go below the floor: only with an operator's reason (the caller has
/// checked the operator may).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Rollback {
    #[default]
    Refuse,
    Allow {
        reason: String,
    },
}

/// One verified manifest statement, read.
struct Read {
    version: u64,
    manifest: Value,
}

/// Reads a verified manifest statement's predicate (the type was checked by the caller).
fn read_predicate(attestation: &VerifiedAttestation) -> Result<Read, IntentError> {
    if attestation.predicate_type() != MANIFEST_PREDICATE_V1 {
        return Err(IntentError::UnsupportedType {
            found: escape(attestation.predicate_type()),
        });
    }
    let malformed = |reason: &str| IntentError::Malformed {
        reason: reason.to_owned(),
    };
    let object = attestation
        .predicate()
        .as_object()
        .ok_or_else(|| malformed("it is not an object"))?;
    if let Some(unknown) = object
        .keys()
        .find(|k| k.as_str() != "manifest" && k.as_str() != "version")
    {
        return Err(IntentError::Malformed {
            reason: format!(
                "unknown key `{}` (a v1 predicate holds `manifest` and `version`)",
                escape(unknown)
            ),
        });
    }
    let version = object
        .get("version")
        .ok_or_else(|| malformed("`version` is missing"))?
        .as_i64()
        .and_then(|v| zerofn_manifest::check_version(v).ok())
        .ok_or_else(|| IntentError::Malformed {
            reason: format!("`version` must be an integer from 1 to {MAX_MANIFEST_VERSION}"),
        })?;
    let manifest = object
        .get("manifest")
        .filter(|m| m.is_object())
        .ok_or_else(|| malformed("`manifest` is missing or not an object"))?
        .clone();
    Ok(Read { version, manifest })
}

/// What a signed manifest of `manifest` about `component` stands for (the
/// [`SignedIntent::content_digest`] its deploy records), computed without signing: a signer
/// uses it to tell whether a version it is about to sign was already used for other content.
pub fn intent_content_digest(component: &Digest, manifest: &Manifest) -> Digest {
    content_digest(component, manifest.signed_content().as_value())
}

fn content_digest(component: &Digest, manifest: &Value) -> Digest {
    Digest::of(&zerofn_manifest::canonical_bytes(&json!({
        "digest": component.to_string(),
        "manifest": manifest,
    })))
}

/// Whether a verified statement claims to be a signed manifest (of any format version).
pub fn is_manifest_statement(attestation: &VerifiedAttestation) -> bool {
    attestation
        .predicate_type()
        .starts_with(MANIFEST_PREDICATE_FAMILY)
}

/// The signed manifest among `verified` (each paired with the bytes of the file it came
/// in), checked against the submitted `manifest`: exactly one (identical duplicates
/// allowed), equal field by field, at a version the floor allows.
pub fn check_intent(
    component: &Digest,
    manifest: &Manifest,
    verified: &[(&VerifiedAttestation, &[u8])],
    floor: Option<&VersionFloor>,
    rollback: &Rollback,
) -> Result<SignedIntent, IntentError> {
    let statements: Vec<&(&VerifiedAttestation, &[u8])> = verified
        .iter()
        .filter(|(v, _)| is_manifest_statement(v))
        .collect();
    let mut found: Option<(Read, &VerifiedAttestation, &[u8])> = None;
    for (attestation, bytes) in &statements {
        let read = read_predicate(attestation)?;
        match &found {
            Some((first, _, _))
                if first.version != read.version || first.manifest != read.manifest =>
            {
                return Err(IntentError::Conflicting {
                    count: statements.len(),
                })
            }
            Some(_) => {}
            None => found = Some((read, attestation, bytes)),
        }
    }
    let (read, attestation, bytes) = found.ok_or(IntentError::Missing)?;
    if let Some(difference) = first_difference(&read.manifest, manifest.signed_content().as_value())
    {
        return Err(IntentError::Differs(difference));
    }
    if let Some(submitted) = manifest.version {
        if submitted != read.version {
            return Err(IntentError::VersionDiffers {
                signed: read.version,
                submitted,
            });
        }
    }
    let content_digest = content_digest(component, &read.manifest);
    if let (Some(floor), Rollback::Refuse) = (floor, rollback) {
        if read.version < floor.version {
            return Err(IntentError::Rollback {
                version: read.version,
                highest: floor.version,
            });
        }
        if read.version == floor.version && content_digest != floor.content_digest {
            return Err(IntentError::VersionReused {
                version: read.version,
            });
        }
    }
    Ok(SignedIntent {
        version: read.version,
        content_digest,
        signer: attestation.identity().clone(),
        bundle: bytes.to_vec(),
    })
}

/// Verifies a stored signed manifest again (at start-up): the statement in `bundle` must
/// verify with the tenant's current `signers` about `component`, and equal `manifest`. No
/// floor applies: the version was checked when it was deployed.
pub fn reverify_intent(
    component: &Digest,
    manifest: &Manifest,
    bundle: &[u8],
    signers: &TrustedSigners,
) -> Result<SignedIntent, IntentError> {
    let stored = |reason: String| IntentError::Stored { reason };
    let parsed = Attestation::parse_file(bundle).map_err(|e| stored(e.to_string()))?;
    let mut verified = Vec::new();
    for attestation in &parsed {
        verified.push(
            attestation
                .verify_signed(component, signers)
                .map_err(|e| stored(e.to_string()))?,
        );
    }
    let pairs: Vec<(&VerifiedAttestation, &[u8])> = verified.iter().map(|v| (v, bundle)).collect();
    check_intent(component, manifest, &pairs, None, &Rollback::Refuse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerofn_sigstore::PublicKey;

    const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0 pretend component";

    fn manifest(extra: &str) -> Manifest {
        Manifest::from_toml(&format!(
            "name = \"hello\"\ntenant = \"acme\"\ncomponent = \"hello.wasm\"\nroutes = [\"/hello\"]\n{extra}"
        ))
        .unwrap()
    }

    fn signers(key: &SigningKey) -> TrustedSigners {
        let keys: Vec<PublicKey> = vec![key.public_key()];
        TrustedSigners {
            keys,
            keyless: Vec::new(),
        }
    }

    fn verified(bundle: &str, key: &SigningKey) -> VerifiedAttestation {
        Attestation::from_bundle_json(bundle.as_bytes())
            .unwrap()
            .verify_signed(&Digest::of(COMPONENT), &signers(key))
            .unwrap()
    }

    fn check(
        submitted: &Manifest,
        statements: &[VerifiedAttestation],
        floor: Option<&VersionFloor>,
        rollback: &Rollback,
    ) -> Result<SignedIntent, IntentError> {
        let pairs: Vec<(&VerifiedAttestation, &[u8])> =
            statements.iter().map(|v| (v, &b"bundle"[..])).collect();
        check_intent(&Digest::of(COMPONENT), submitted, &pairs, floor, rollback)
    }

    #[test]
    fn a_signed_manifest_admits_only_itself() {
        let key = SigningKey::generate();
        let signed = manifest("[permissions]\nkv = [\"orders:read\"]\n");
        let bundle = sign_manifest(&signed, &Digest::of(COMPONENT), 3, &key).unwrap();
        let statement = verified(&bundle, &key);
        let intent = check(
            &signed,
            std::slice::from_ref(&statement),
            None,
            &Rollback::Refuse,
        )
        .unwrap();
        assert_eq!(intent.version, 3);

        let widened = manifest("[permissions]\nkv = [\"orders:read\", \"secrets:read-write\"]\n");
        let e = check(
            &widened,
            std::slice::from_ref(&statement),
            None,
            &Rollback::Refuse,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "`permissions.kv` differs from the signed manifest: signed [\"orders:read\"], submitted [\"orders:read\",\"secrets:read-write\"]"
        );
        let renamed = Manifest::from_toml(
            "name = \"payments\"\ntenant = \"acme\"\ncomponent = \"hello.wasm\"\nroutes = [\"/hello\"]\n[permissions]\nkv = [\"orders:read\"]\n",
        )
        .unwrap();
        let e = check(
            &renamed,
            std::slice::from_ref(&statement),
            None,
            &Rollback::Refuse,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("`name` differs"), "{e}");
        let configured =
            manifest("[permissions]\nkv = [\"orders:read\"]\n[config]\ntoken = \"x\"\n");
        let e = check(
            &configured,
            std::slice::from_ref(&statement),
            None,
            &Rollback::Refuse,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "`config.token` differs from the signed manifest: signed (absent), submitted (not shown)"
        );
        let versioned = manifest("version = 4\n[permissions]\nkv = [\"orders:read\"]\n");
        let e = check(&versioned, &[statement], None, &Rollback::Refuse).unwrap_err();
        assert_eq!(
            e,
            IntentError::VersionDiffers {
                signed: 3,
                submitted: 4
            }
        );
    }

    #[test]
    fn missing_conflicting_and_unknown_statements_are_refused() {
        let key = SigningKey::generate();
        let m = manifest("");
        let digest = Digest::of(COMPONENT);
        assert_eq!(
            check(&m, &[], None, &Rollback::Refuse).unwrap_err(),
            IntentError::Missing
        );
        let v1 = verified(&sign_manifest(&m, &digest, 1, &key).unwrap(), &key);
        let v2 = verified(&sign_manifest(&m, &digest, 2, &key).unwrap(), &key);
        assert!(check(&m, &[v1.clone(), v1.clone()], None, &Rollback::Refuse).is_ok());
        assert_eq!(
            check(&m, &[v1.clone(), v2], None, &Rollback::Refuse).unwrap_err(),
            IntentError::Conflicting { count: 2 }
        );
        let v9 = |predicate: Value, kind: &str| {
            verified(
                &sign_attestation("hello.wasm", &digest, kind, &predicate, &key).unwrap(),
                &key,
            )
        };
        let future = v9(
            manifest_predicate(&m, 1),
            "https://zerofn.dev/attestations/manifest/v2",
        );
        assert!(matches!(
            check(&m, &[future], None, &Rollback::Refuse).unwrap_err(),
            IntentError::UnsupportedType { .. }
        ));
        let mut extra = manifest_predicate(&m, 1);
        extra["egress"] = json!({"allow": ["https://evil.example"]});
        let e = check(
            &m,
            &[v9(extra, MANIFEST_PREDICATE_V1)],
            None,
            &Rollback::Refuse,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown key `egress`"), "{e}");
        for bad in [
            json!(0),
            json!(-1),
            json!(1.5),
            json!("1"),
            json!(9007199254740992u64),
        ] {
            let mut p = manifest_predicate(&m, 1);
            p["version"] = bad;
            let e =
                check(&m, &[v9(p, MANIFEST_PREDICATE_V1)], None, &Rollback::Refuse).unwrap_err();
            assert!(
                e.to_string().contains("`version` must be an integer"),
                "{e}"
            );
        }
        // An unrelated attestation is not a manifest.
        let other = v9(
            json!({"result": "PASSED"}),
            "https://in-toto.io/attestation/test-result/v0.1",
        );
        assert_eq!(
            check(&m, &[other], None, &Rollback::Refuse).unwrap_err(),
            IntentError::Missing
        );
    }

    #[test]
    fn versions_below_the_floor_need_an_allowed_rollback() {
        let key = SigningKey::generate();
        let m = manifest("");
        let digest = Digest::of(COMPONENT);
        let at = |version: u64, m: &Manifest| {
            verified(&sign_manifest(m, &digest, version, &key).unwrap(), &key)
        };
        let five = check(&m, &[at(5, &m)], None, &Rollback::Refuse).unwrap();
        assert_eq!(five.content_digest, intent_content_digest(&digest, &m));
        let floor = VersionFloor {
            version: 5,
            content_digest: five.content_digest,
        };
        // The same version again, same content: a redeploy.
        assert!(check(&m, &[at(5, &m)], Some(&floor), &Rollback::Refuse).is_ok());
        assert!(check(&m, &[at(6, &m)], Some(&floor), &Rollback::Refuse).is_ok());
        assert_eq!(
            check(&m, &[at(4, &m)], Some(&floor), &Rollback::Refuse).unwrap_err(),
            IntentError::Rollback {
                version: 4,
                highest: 5
            }
        );
        let changed = manifest("[limits]\nmemory_mb = 32\n");
        assert_eq!(
            check(
                &changed,
                &[at(5, &changed)],
                Some(&floor),
                &Rollback::Refuse
            )
            .unwrap_err(),
            IntentError::VersionReused { version: 5 }
        );
        let allowed = Rollback::Allow {
            reason: "CVE in 5".to_owned(),
        };
        assert_eq!(
            check(&m, &[at(4, &m)], Some(&floor), &allowed)
                .unwrap()
                .version,
            4
        );
    }

    #[test]
    fn a_statement_about_another_component_or_from_another_signer_does_not_verify() {
        let key = SigningKey::generate();
        let m = manifest("");
        let other_digest = Digest::of(b"another component");
        let bundle = sign_manifest(&m, &other_digest, 1, &key).unwrap();
        assert!(reverify_intent(
            &Digest::of(COMPONENT),
            &m,
            bundle.as_bytes(),
            &signers(&key)
        )
        .is_err());
        let bundle = sign_manifest(&m, &Digest::of(COMPONENT), 1, &key).unwrap();
        let stranger = SigningKey::generate();
        assert!(matches!(
            reverify_intent(
                &Digest::of(COMPONENT),
                &m,
                bundle.as_bytes(),
                &signers(&stranger)
            ),
            Err(IntentError::Stored { .. })
        ));
        let intent = reverify_intent(
            &Digest::of(COMPONENT),
            &m,
            bundle.as_bytes(),
            &signers(&key),
        )
        .unwrap();
        assert_eq!(intent.bundle, bundle.as_bytes());
    }
}
