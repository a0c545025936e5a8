//! Keyless verification against a private Sigstore instance built here: a Fulcio-like CA,
//! a CT log, a Rekor log and a trusted root naming them. Each test changes one thing and
//! expects the check that guards it to refuse; the public conformance data does not cover
//! these refusals (wrong identity or issuer, tampered artifact, certificate used outside
//! its validity, missing or altered log entry, untrusted CA, bad SCT, bad checkpoint).

use std::str::FromStr as _;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use const_oid::db::{rfc5280, rfc5912};
use der::asn1::{BitString, Ia5String, OctetString, UtcTime, Utf8StringRef};
use der::{Decode as _, Encode as _};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use sha2::{Digest as _, Sha256};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

use crate::{verify, AdmissionError, Bundle, Identity, TrustedRoot, VerificationPolicy};
use zerofn_types::Digest;

const SAN: &str = "https://github.com/acme/fn/.github/workflows/release.yml@refs/heads/main";
const ISSUER: &str = "https://token.actions.githubusercontent.com";
const ARTIFACT: &[u8] = b"\0asm a component";
/// 2025-01-01T00:00:00Z; the leaf is valid for ten minutes from here.
const NOT_BEFORE: u64 = 1_735_689_600;

fn key() -> SigningKey {
    SigningKey::random(&mut rand_core::OsRng)
}

fn spki_der(key: &SigningKey) -> Vec<u8> {
    key.verifying_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec()
}

fn utc(secs: u64) -> Time {
    Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(secs)).unwrap())
}

fn ext(oid: der::asn1::ObjectIdentifier, critical: bool, value: Vec<u8>) -> Extension {
    Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value).unwrap(),
    }
}

fn tbs(
    issuer: &str,
    subject: &str,
    key: &SigningKey,
    validity: (u64, u64),
    extensions: Vec<Extension>,
) -> x509_cert::TbsCertificate {
    x509_cert::TbsCertificate {
        version: x509_cert::Version::V3,
        serial_number: SerialNumber::new(&[0x01, 0x02]).unwrap(),
        signature: AlgorithmIdentifierOwned {
            oid: rfc5912::ECDSA_WITH_SHA_256,
            parameters: None,
        },
        issuer: Name::from_str(issuer).unwrap(),
        validity: Validity {
            not_before: utc(validity.0),
            not_after: utc(validity.1),
        },
        // Fulcio leaves have an empty subject.
        subject: if subject.is_empty() {
            Name::default()
        } else {
            Name::from_str(subject).unwrap()
        },
        subject_public_key_info: SubjectPublicKeyInfoOwned::from_der(&spki_der(key)).unwrap(),
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    }
}

fn sign_certificate(tbs: x509_cert::TbsCertificate, issuer_key: &SigningKey) -> Vec<u8> {
    let signature: Signature = issuer_key.sign(&tbs.to_der().unwrap());
    x509_cert::Certificate {
        tbs_certificate: tbs,
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: rfc5912::ECDSA_WITH_SHA_256,
            parameters: None,
        },
        signature: BitString::from_bytes(signature.to_der().as_bytes()).unwrap(),
    }
    .to_der()
    .unwrap()
}

/// A self-signed CA certificate.
fn ca_certificate(name: &str, key: &SigningKey) -> Vec<u8> {
    let extensions = vec![
        ext(
            rfc5280::ID_CE_BASIC_CONSTRAINTS,
            true,
            BasicConstraints {
                ca: true,
                path_len_constraint: None,
            }
            .to_der()
            .unwrap(),
        ),
        ext(
            rfc5280::ID_CE_KEY_USAGE,
            true,
            KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign)
                .to_der()
                .unwrap(),
        ),
    ];
    sign_certificate(
        tbs(
            name,
            name,
            key,
            (NOT_BEFORE - 86_400, NOT_BEFORE + 86_400 * 365),
            extensions,
        ),
        key,
    )
}

/// What to vary in the generated instance.
struct Knobs {
    san: &'static str,
    issuer: &'static str,
    /// Seconds after [`NOT_BEFORE`] at which the entry was integrated.
    integrated_after: u64,
    /// The artifact the log entry records (normally [`ARTIFACT`]).
    logged_artifact: &'static [u8],
    /// Sign the leaf with a CA that is not in the trusted root.
    rogue_ca: bool,
    /// Sign the SCT with a CT key that is not in the trusted root.
    rogue_ct_log: bool,
    /// Sign the checkpoint with a key other than the log's.
    rogue_checkpoint_key: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            san: SAN,
            issuer: ISSUER,
            integrated_after: 60,
            logged_artifact: ARTIFACT,
            rogue_ca: false,
            rogue_ct_log: false,
            rogue_checkpoint_key: false,
        }
    }
}

/// A private instance and one bundle made with it, as JSON to edit.
struct Instance {
    trusted_root: serde_json::Value,
    bundle: serde_json::Value,
}

impl Instance {
    fn new(knobs: Knobs) -> Instance {
        let ca_key = key();
        let ca = ca_certificate("CN=test-fulcio,O=zerofn-test", &ca_key);
        let ct_key = key();
        let rekor_key = key();
        let signer_key = key();

        // The leaf: Fulcio's profile (EKU codeSigning, SAN, OIDC issuer v2), then the SCT
        // over the precertificate TBS (the same TBS without the SCT extension).
        let mut extensions = vec![
            ext(
                rfc5280::ID_CE_KEY_USAGE,
                true,
                KeyUsage(KeyUsages::DigitalSignature.into())
                    .to_der()
                    .unwrap(),
            ),
            ext(
                rfc5280::ID_CE_EXT_KEY_USAGE,
                false,
                ExtendedKeyUsage(vec![rfc5280::ID_KP_CODE_SIGNING])
                    .to_der()
                    .unwrap(),
            ),
            ext(
                rfc5280::ID_CE_SUBJECT_ALT_NAME,
                true,
                SubjectAltName(vec![GeneralName::UniformResourceIdentifier(
                    Ia5String::new(knobs.san).unwrap(),
                )])
                .to_der()
                .unwrap(),
            ),
            ext(
                der::asn1::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8"),
                false,
                Utf8StringRef::new(knobs.issuer).unwrap().to_der().unwrap(),
            ),
        ];
        let issuer_name = "CN=test-fulcio,O=zerofn-test";
        let leaf_validity = (NOT_BEFORE, NOT_BEFORE + 600);
        let precert = tbs(
            issuer_name,
            "",
            &signer_key,
            leaf_validity,
            extensions.clone(),
        )
        .to_der()
        .unwrap();
        let ct_signer = if knobs.rogue_ct_log {
            key()
        } else {
            ct_key.clone()
        };
        let ct_log_id: [u8; 32] = Sha256::digest(spki_der(&ct_signer)).into();
        let timestamp_ms = (NOT_BEFORE + 1) * 1000;
        let mut signed = vec![0u8, 0u8];
        signed.extend_from_slice(&timestamp_ms.to_be_bytes());
        signed.extend_from_slice(&1u16.to_be_bytes());
        signed.extend_from_slice(&Sha256::digest(spki_der(&ca_key)));
        signed.extend_from_slice(&(precert.len() as u32).to_be_bytes()[1..]);
        signed.extend_from_slice(&precert);
        signed.extend_from_slice(&0u16.to_be_bytes());
        let sct_signature: Signature = ct_signer.sign(&signed);
        let sct_signature = sct_signature.to_der();
        let mut sct = vec![0u8];
        sct.extend_from_slice(&ct_log_id);
        sct.extend_from_slice(&timestamp_ms.to_be_bytes());
        sct.extend_from_slice(&0u16.to_be_bytes());
        sct.extend_from_slice(&[4, 3]); // sha256, ecdsa
        sct.extend_from_slice(&(sct_signature.as_bytes().len() as u16).to_be_bytes());
        sct.extend_from_slice(sct_signature.as_bytes());
        let mut list = ((sct.len() + 2) as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&(sct.len() as u16).to_be_bytes());
        list.extend_from_slice(&sct);
        extensions.push(ext(
            crate::certificate::SCT_LIST,
            false,
            OctetString::new(list).unwrap().to_der().unwrap(),
        ));
        let leaf_issuer_key = if knobs.rogue_ca {
            key()
        } else {
            ca_key.clone()
        };
        let leaf = sign_certificate(
            tbs(issuer_name, "", &signer_key, leaf_validity, extensions),
            &leaf_issuer_key,
        );

        // The signature and its hashedrekord 0.0.1 entry.
        let digest = Digest::of(ARTIFACT);
        let signature: Signature = signer_key.sign(ARTIFACT);
        let signature = signature.to_der().as_bytes().to_vec();
        let pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &leaf).unwrap();
        let body = serde_json::json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": Digest::of(knobs.logged_artifact).hex()}},
                "signature": {"content": B64.encode(&signature), "publicKey": {"content": B64.encode(pem)}},
            },
        })
        .to_string();
        let log_id: [u8; 32] = Sha256::digest(spki_der(&rekor_key)).into();
        let integrated_time = NOT_BEFORE + knobs.integrated_after;
        let log_index = 7;
        let canonical = format!(
            "{{\"body\":\"{}\",\"integratedTime\":{integrated_time},\"logID\":\"{}\",\"logIndex\":{log_index}}}",
            B64.encode(&body),
            hex::encode(log_id)
        );
        let set: Signature = rekor_key.sign(canonical.as_bytes());

        // A two-leaf tree: our entry at index 0, another beside it.
        let leaf_hash = |data: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update([0]);
            h.update(data);
            h.finalize().into()
        };
        let sibling = leaf_hash(b"another entry");
        let mut node = Sha256::new();
        node.update([1]);
        node.update(leaf_hash(body.as_bytes()));
        node.update(sibling);
        let root_hash: [u8; 32] = node.finalize().into();
        let note = format!("rekor.test - 42\n2\n{}\n", B64.encode(root_hash));
        let checkpoint_key = if knobs.rogue_checkpoint_key {
            key()
        } else {
            rekor_key.clone()
        };
        let note_signature: Signature = checkpoint_key.sign(note.as_bytes());
        let mut hinted = log_id[..4].to_vec();
        hinted.extend_from_slice(note_signature.to_der().as_bytes());
        let envelope = format!("{note}\n\u{2014} rekor.test {}\n", B64.encode(hinted));

        let bundle = serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": B64.encode(&leaf)},
                "tlogEntries": [{
                    "logIndex": log_index.to_string(),
                    "logId": {"keyId": B64.encode(log_id)},
                    "kindVersion": {"kind": "hashedrekord", "version": "0.0.1"},
                    "integratedTime": integrated_time.to_string(),
                    "inclusionPromise": {"signedEntryTimestamp": B64.encode(set.to_der().as_bytes())},
                    "inclusionProof": {
                        "logIndex": "0",
                        "rootHash": B64.encode(root_hash),
                        "treeSize": "2",
                        "hashes": [B64.encode(sibling)],
                        "checkpoint": {"envelope": envelope},
                    },
                    "canonicalizedBody": B64.encode(&body),
                }],
            },
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": B64.encode(digest.as_bytes())},
                "signature": B64.encode(&signature),
            },
        });
        let start = "2024-01-01T00:00:00Z";
        let trusted_root = serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{
                "baseUrl": "https://rekor.test",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": B64.encode(spki_der(&rekor_key)), "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": {"start": start}},
                "logId": {"keyId": B64.encode(log_id)},
            }],
            "certificateAuthorities": [{
                "subject": {"organization": "zerofn-test", "commonName": "test-fulcio"},
                "uri": "https://fulcio.test",
                "certChain": {"certificates": [{"rawBytes": B64.encode(&ca)}]},
                "validFor": {"start": start},
            }],
            "ctlogs": [{
                "baseUrl": "https://ct.test",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": B64.encode(spki_der(&ct_key)), "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": {"start": start}},
                "logId": {"keyId": B64.encode(Sha256::digest(spki_der(&ct_key)))},
            }],
        });
        Instance {
            trusted_root,
            bundle,
        }
    }

    fn policy(&self, identity: Identity) -> VerificationPolicy {
        VerificationPolicy::Keyless {
            trusted_root: TrustedRoot::from_json(self.trusted_root.to_string().as_bytes()).unwrap(),
            identity,
        }
    }

    fn verify_with(
        &self,
        artifact: &[u8],
        identity: Identity,
    ) -> Result<crate::VerifiedSignature, AdmissionError> {
        let bundle = Bundle::from_json(self.bundle.to_string().as_bytes())?;
        verify(&Digest::of(artifact), &bundle, &self.policy(identity))
    }

    fn verify(&self) -> Result<crate::VerifiedSignature, AdmissionError> {
        self.verify_with(ARTIFACT, exact(SAN, ISSUER))
    }
}

/// An edit of an instance, and of a JSON document, for the tables below.
type BundleEdit = Box<dyn Fn(&mut Instance)>;
type JsonEdit = Box<dyn Fn(&mut serde_json::Value)>;
/// The refusal a table row expects.
type Expect = fn(&AdmissionError) -> bool;

fn exact(san: &str, issuer: &str) -> Identity {
    Identity::Exact {
        san: san.to_owned(),
        issuer: issuer.to_owned(),
    }
}

#[test]
fn private_instance_bundle_verifies_with_identity_and_time() {
    let instance = Instance::new(Knobs::default());
    let verified = instance.verify().unwrap();
    assert_eq!(verified.digest(), Digest::of(ARTIFACT));
    assert_eq!(
        verified.identity(),
        &crate::SignerIdentity::Certificate {
            san: SAN.to_owned(),
            issuer: ISSUER.to_owned()
        }
    );
    assert_eq!(
        verified.signing_time_rfc3339().as_deref(),
        Some("2025-01-01T00:01:00Z")
    );
    assert_eq!(
        verified.identity().to_string(),
        format!("{SAN} (issuer {ISSUER})")
    );
    // The regex form matches the whole SAN, anchored.
    let regex = |re: &str| Identity::Regex {
        san_regex: re.to_owned(),
        issuer: ISSUER.to_owned(),
    };
    assert!(instance
        .verify_with(
            ARTIFACT,
            regex(r"https://github\.com/acme/.*@refs/heads/main")
        )
        .is_ok());
    for partial in [
        r"https://github\.com/acme/",
        r"refs/heads/main",
        r"github\.com",
    ] {
        let err = instance.verify_with(ARTIFACT, regex(partial)).unwrap_err();
        assert!(
            matches!(err, AdmissionError::CertificateIdentityMismatch { .. }),
            "{partial}: {err:?}"
        );
        // The refusal says the pattern matched only part, and how to widen it.
        let message = err.to_string();
        assert!(
            message.contains("the pattern matches only part of it")
                && message.contains(&format!("write `{partial}.*`")),
            "{partial}: {message}"
        );
    }
    // A pattern that matches nothing at all gets no such hint.
    let err = instance
        .verify_with(ARTIFACT, regex(r"https://gitlab\.com/.*"))
        .unwrap_err();
    assert!(!err.to_string().contains("matches only part"), "{err}");
    let err = instance.verify_with(ARTIFACT, regex("(")).unwrap_err();
    assert!(
        matches!(err, AdmissionError::IdentityRegexInvalid { .. }),
        "{err:?}"
    );
}

#[test]
fn wrong_identity_is_refused() {
    let instance = Instance::new(Knobs::default());
    let err = instance
        .verify_with(
            ARTIFACT,
            exact(
                "https://github.com/evil/fn/.github/workflows/release.yml@refs/heads/main",
                ISSUER,
            ),
        )
        .unwrap_err();
    assert!(
        matches!(err, AdmissionError::CertificateIdentityMismatch { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("certificate identity mismatch: expected `https://github.com/evil/"),
        "{err}"
    );
    // A certificate for another identity, verified with the expected one.
    let other = Instance::new(Knobs {
        san: "https://github.com/acme/fn/.github/workflows/release.yml@refs/heads/evil",
        ..Knobs::default()
    });
    assert!(matches!(
        other.verify().unwrap_err(),
        AdmissionError::CertificateIdentityMismatch { .. }
    ));
}

#[test]
fn wrong_issuer_is_refused() {
    let instance = Instance::new(Knobs {
        issuer: "https://accounts.google.com",
        ..Knobs::default()
    });
    let err = instance.verify().unwrap_err();
    assert!(
        matches!(&err, AdmissionError::CertificateIssuerMismatch { expected, found }
            if expected == ISSUER && found == "https://accounts.google.com"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("certificate oidc issuer mismatch: expected `{ISSUER}`, found `https://accounts.google.com`")
    );
}

#[test]
fn tampered_artifact_is_refused() {
    let instance = Instance::new(Knobs::default());
    let err = instance
        .verify_with(b"\0asm a c0mponent", exact(SAN, ISSUER))
        .unwrap_err();
    assert!(
        matches!(err, AdmissionError::ArtifactDigestMismatch { .. }),
        "{err:?}"
    );
    // Without the (unauthenticated) digest hint, the signature itself refuses it.
    let mut instance = instance;
    instance.bundle["messageSignature"]
        .as_object_mut()
        .unwrap()
        .remove("messageDigest");
    let err = instance
        .verify_with(b"\0asm a c0mponent", exact(SAN, ISSUER))
        .unwrap_err();
    assert!(
        matches!(err, AdmissionError::CertificateSignatureInvalid { .. }),
        "{err:?}"
    );
}

#[test]
fn certificate_used_outside_its_validity_is_refused() {
    // Logged eleven minutes after issuance: the ten-minute certificate had expired.
    let instance = Instance::new(Knobs {
        integrated_after: 660,
        ..Knobs::default()
    });
    let err = instance.verify().unwrap_err();
    assert!(
        matches!(&err, AdmissionError::SignatureTimeOutsideCertificateValidity { time, not_before, not_after }
            if time == "2025-01-01T00:11:00Z" && not_before == "2025-01-01T00:00:00Z" && not_after == "2025-01-01T00:10:00Z"),
        "{err:?}"
    );
    assert!(err
        .to_string()
        .starts_with("signature time outside certificate validity"));
}

#[test]
fn missing_log_entry_is_refused() {
    let mut instance = Instance::new(Knobs::default());
    instance.bundle["verificationMaterial"]["tlogEntries"] = serde_json::json!([]);
    let err = instance.verify().unwrap_err();
    assert!(matches!(err, AdmissionError::TlogEntryMissing), "{err:?}");
}

#[test]
fn altered_log_entry_is_refused() {
    let original = Instance::new(Knobs::default());
    fn entry(i: &mut Instance) -> &mut serde_json::Value {
        &mut i.bundle["verificationMaterial"]["tlogEntries"][0]
    }
    let cases: Vec<(&str, BundleEdit, Expect)> = vec![
        (
            "integrated time moved",
            Box::new(|i| entry(i)["integratedTime"] = "1735689601".into()),
            |e| matches!(e, AdmissionError::SignedEntryTimestampInvalid { .. }),
        ),
        (
            "log index changed",
            Box::new(|i| entry(i)["logIndex"] = "8".into()),
            |e| matches!(e, AdmissionError::SignedEntryTimestampInvalid { .. }),
        ),
        (
            "negative log index",
            Box::new(|i| entry(i)["logIndex"] = "-7".into()),
            |e| matches!(e, AdmissionError::TlogEntryInvalid { .. }),
        ),
        (
            "body replaced",
            Box::new(|i| {
                let body = B64.encode(br#"{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{}}"#);
                entry(i)["canonicalizedBody"] = body.into();
            }),
            |e| matches!(e, AdmissionError::TlogEntryMismatch { .. }),
        ),
        (
            "inclusion proof hash flipped",
            Box::new(|i| entry(i)["inclusionProof"]["hashes"][0] = B64.encode([7u8; 32]).into()),
            |e| matches!(e, AdmissionError::InclusionProofInvalid { .. }),
        ),
        (
            "inclusion proof removed",
            Box::new(|i| {
                entry(i).as_object_mut().unwrap().remove("inclusionProof");
            }),
            |e| matches!(e, AdmissionError::InclusionProofMissing),
        ),
        (
            "log id of an unknown log",
            Box::new(|i| entry(i)["logId"]["keyId"] = B64.encode([9u8; 32]).into()),
            |e| matches!(e, AdmissionError::UntrustedTransparencyLog { .. }),
        ),
        (
            "kind changed",
            Box::new(|i| entry(i)["kindVersion"]["version"] = "0.0.2".into()),
            |e| matches!(e, AdmissionError::TlogEntryMismatch { .. }),
        ),
    ];
    for (what, edit, expected) in cases {
        let mut instance = Instance {
            trusted_root: original.trusted_root.clone(),
            bundle: original.bundle.clone(),
        };
        edit(&mut instance);
        let err = instance.verify().unwrap_err();
        assert!(expected(&err), "{what}: {err:?}");
    }
    // A correctly signed and included entry for another artifact (CVE-2022-36056).
    let other = Instance::new(Knobs {
        logged_artifact: b"another artifact",
        ..Knobs::default()
    });
    let err = other.verify().unwrap_err();
    assert!(
        matches!(&err, AdmissionError::TlogEntryMismatch { reason } if reason == "the logged artifact digest differs"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "transparency log entry does not match artifact: the logged artifact digest differs"
    );
}

#[test]
fn untrusted_certificate_authority_is_refused() {
    let err = Instance::new(Knobs {
        rogue_ca: true,
        ..Knobs::default()
    })
    .verify()
    .unwrap_err();
    assert!(
        matches!(err, AdmissionError::UntrustedCertificateAuthority { .. }),
        "{err:?}"
    );
    // The right CA, but trusted only from after the signing time.
    let mut instance = Instance::new(Knobs::default());
    instance.trusted_root["certificateAuthorities"][0]["validFor"]["start"] =
        "2025-06-01T00:00:00Z".into();
    let err = instance.verify().unwrap_err();
    assert!(
        matches!(&err, AdmissionError::UntrustedCertificateAuthority { reason } if reason.contains("was not trusted at 2025-01-01T00:01:00Z")),
        "{err:?}"
    );
    // A bundle chain carrying a self-signed root is refused outright.
    let mut instance = Instance::new(Knobs::default());
    let root = instance.trusted_root["certificateAuthorities"][0]["certChain"]["certificates"][0]
        ["rawBytes"]
        .clone();
    let leaf = instance.bundle["verificationMaterial"]["certificate"]["rawBytes"].clone();
    let material = instance.bundle["verificationMaterial"]
        .as_object_mut()
        .unwrap();
    material.remove("certificate");
    material.insert(
        "x509CertificateChain".to_owned(),
        serde_json::json!({"certificates": [{"rawBytes": leaf}, {"rawBytes": root}]}),
    );
    instance.bundle["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.2".into();
    let err = instance.verify().unwrap_err();
    assert!(
        matches!(err, AdmissionError::CertificateChainIncludesRoot { .. }),
        "{err:?}"
    );
}

#[test]
fn sct_from_an_unknown_log_is_refused() {
    let err = Instance::new(Knobs {
        rogue_ct_log: true,
        ..Knobs::default()
    })
    .verify()
    .unwrap_err();
    assert!(matches!(err, AdmissionError::SctInvalid { .. }), "{err:?}");
    // And with no CT log in the trusted root at all.
    let mut instance = Instance::new(Knobs::default());
    instance.trusted_root["ctlogs"] = serde_json::json!([]);
    let err = instance.verify().unwrap_err();
    assert!(err.to_string().starts_with("sct invalid"), "{err}");
}

#[test]
fn checkpoint_signed_by_another_key_is_refused() {
    let err = Instance::new(Knobs {
        rogue_checkpoint_key: true,
        ..Knobs::default()
    })
    .verify()
    .unwrap_err();
    assert!(
        matches!(err, AdmissionError::CheckpointSignatureInvalid { .. }),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("checkpoint signature invalid"));
}

#[test]
fn set_signed_by_a_log_key_outside_its_validity_is_refused() {
    let mut instance = Instance::new(Knobs::default());
    instance.trusted_root["tlogs"][0]["publicKey"]["validFor"]["end"] =
        "2025-01-01T00:00:59Z".into();
    let err = instance.verify().unwrap_err();
    assert!(
        matches!(err, AdmissionError::SignedEntryTimestampInvalid { .. }),
        "{err:?}"
    );
    // The end is inclusive.
    instance.trusted_root["tlogs"][0]["publicKey"]["validFor"]["end"] =
        "2025-01-01T00:01:00Z".into();
    assert!(instance.verify().is_ok());
}

#[test]
fn policy_and_bundle_kinds_must_agree() {
    let instance = Instance::new(Knobs::default());
    let bundle = Bundle::from_json(instance.bundle.to_string().as_bytes()).unwrap();
    let key = crate::SigningKey::generate().public_key();
    let err = verify(
        &Digest::of(ARTIFACT),
        &bundle,
        &VerificationPolicy::Key(vec![key.clone()]),
    )
    .unwrap_err();
    assert!(
        matches!(err, AdmissionError::KeylessNotSupported),
        "{err:?}"
    );
    let keyed = Bundle::from_json(
        crate::sign_artifact(ARTIFACT, &crate::SigningKey::generate())
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let err = verify(
        &Digest::of(ARTIFACT),
        &keyed,
        &instance.policy(exact(SAN, ISSUER)),
    )
    .unwrap_err();
    assert!(
        matches!(err, AdmissionError::KeyedBundleNeedsKey),
        "{err:?}"
    );
}

#[test]
fn trusted_roots_are_parsed_strictly() {
    let instance = Instance::new(Knobs::default());
    let table: Vec<(JsonEdit, &str)> = vec![
        (
            Box::new(|r| {
                r["tlogs"][0]["publicKey"]["validFor"]
                    .as_object_mut()
                    .unwrap()
                    .remove("start");
            }),
            "`tlogs[0].publicKey.validFor.start` is missing",
        ),
        (
            Box::new(|r| r["mediaType"] = "application/json".into()),
            "media type `application/json` is not a Sigstore trusted root",
        ),
        (
            Box::new(|r| {
                r["certificateAuthorities"][0]["certChain"]["certificates"] = serde_json::json!([])
            }),
            "`certificateAuthorities[0].certChain` is empty",
        ),
        (
            Box::new(|r| r["certificateAuthorities"][0]["validFor"]["start"] = "yesterday".into()),
            "`certificateAuthorities[0].validFor.start` = `yesterday` is not an RFC 3339 time",
        ),
        (
            Box::new(|r| {
                r["ctlogs"][0]["publicKey"]
                    .as_object_mut()
                    .unwrap()
                    .remove("validFor");
            }),
            "`ctlogs[0].publicKey.validFor` is missing",
        ),
    ];
    for (edit, reason) in table {
        let mut root = instance.trusted_root.clone();
        edit(&mut root);
        match TrustedRoot::from_json(root.to_string().as_bytes()) {
            Err(AdmissionError::TrustedRootInvalid { reason: found }) => {
                assert!(found.starts_with(reason), "{found}")
            }
            Ok(_) => assert!(reason.is_empty(), "accepted; expected {reason}"),
            Err(other) => panic!("{other:?}"),
        }
    }
    // The sigstore-python fixtures: valid, and a wrong media type.
    let read = |p: &str| {
        std::fs::read(
            zerofn_testkit::testdata(&format!("sigstore/sigstore-python/trusted_root/{p}"))
                .display()
                .to_string(),
        )
        .unwrap()
    };
    assert!(TrustedRoot::from_json(&read("trustedroot.v1.json")).is_ok());
    assert!(
        TrustedRoot::from_json(&read("trustedroot.v1.local_tlog_ed25519_rekor-tiles.json")).is_ok()
    );
    assert!(matches!(
        TrustedRoot::from_json(&read("trustedroot.badtype.json")),
        Err(AdmissionError::TrustedRootInvalid { .. })
    ));
}
