//! In-toto attestations in DSSE envelopes: signing ([`sign_attestation`]), parsing
//! ([`Attestation::parse_file`]) and verification against trusted keys
//! ([`Attestation::verify`]), whose only success value is a [`VerifiedAttestation`].
//!
//! * The statement is an in-toto Statement
//!   (<https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>): `_type`
//!   `https://in-toto.io/Statement/v1` (v0.1 is accepted when reading), `subject[]` with
//!   `name` and `digest`, `predicateType` and `predicate`.
//! * The envelope is DSSE v1
//!   (<https://github.com/secure-systems-lab/dsse/blob/master/protocol.md>), payload type
//!   `application/vnd.in-toto+json`, signed with ECDSA P-256 SHA-256 over the
//!   pre-authentication encoding ([`crate::dsse`] owns the PAE). Signatures are ASN.1 DER,
//!   as cosign writes them; the fixed 64-byte `r || s` form is read too.
//! * Files: a Sigstore bundle v0.3 with `dsseEnvelope` content (what [`sign_attestation`]
//!   writes, `<component>.<kind>.sigstore.json`), parsed by [`crate::Bundle::from_json`], or
//!   the legacy `*.intoto.jsonl`: one DSSE envelope JSON object per line.
//!
//! # What is verified
//! The payload type, then a signature by one of the trusted keys over the PAE (other
//! signatures in the envelope are ignored, as DSSE allows several signers), then the
//! statement's shape, then that a subject carries the component's sha256. Only then is the
//! predicate read. A bundle's verification material (key hint, certificate, log entries)
//! is not used: the signer must be a trusted key. Keyless (Fulcio) attestations and
//! transparency log checks are not supported here.

use base64::engine::general_purpose;
use base64::Engine as _;
use p256::ecdsa::Signature;
use serde::Deserialize;

use crate::bundle::{Bundle, BundleContent, DsseEnvelope};
use crate::dsse::{pae, IN_TOTO_PAYLOAD_TYPE};
use crate::encoding::decode_base64;
use crate::keys::{KeyId, PublicKey, SigningKey};
use crate::signers::TrustedSigners;
use crate::verify::SignerIdentity;
use crate::BUNDLE_MEDIA_TYPE_V03;
use zerofn_types::Digest;
use zerofn_types::{excerpt, sanitize_message};

/// The `_type` [`sign_attestation`] writes.
pub const IN_TOTO_STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

/// The earlier statement type, still written by slsa-github-generator and npm.
const IN_TOTO_STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";

/// Largest attestation file read. Real provenance is tens of KiB; the cap bounds the work a
/// hostile upload can cause.
const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// Most envelopes read from one `.intoto.jsonl` file.
const MAX_ENVELOPES: usize = 64;

/// Most signatures tried in one envelope (each costs a signature verification per key).
const MAX_SIGNATURES: usize = 16;

/// Longest quote of a JSON parser message (which may contain input text).
const PARSER_MESSAGE_CHARS: usize = 200;

/// Why an attestation was refused, or could not be made. One variant per failed check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestationError {
    /// The file is neither a Sigstore bundle with a DSSE envelope nor DSSE envelope lines.
    #[error("attestation is malformed: {reason}; provide a Sigstore bundle with a `dsseEnvelope` (as `zerofn attest` writes) or an `.intoto.jsonl` file")]
    Malformed {
        /// What is wrong with it (escaped and shortened).
        reason: String,
    },

    /// The envelope does not carry an in-toto statement.
    #[error("attestation payload type `{found}` is not `application/vnd.in-toto+json`; only in-toto statements are accepted")]
    PayloadTypeMismatch {
        /// The envelope's payload type (escaped and shortened).
        found: String,
    },

    /// No signature of the envelope verifies with a trusted key.
    #[error("keyless attestation refused: {reason}")]
    KeylessInvalid {
        /// The check that failed.
        reason: String,
    },

    #[error("attestation signature does not verify with any trusted key; sign it with a trusted key or trust the signer's public key")]
    SignatureInvalid,

    /// The signed payload is not an in-toto statement.
    #[error("attestation statement is invalid: {reason}")]
    StatementInvalid {
        /// What is wrong with it.
        reason: String,
    },

    /// No subject of the statement carries the component's sha256.
    #[error("attestation subject does not match the component `{digest}`; the attestation is for another artifact")]
    SubjectMismatch {
        /// The component's digest.
        digest: Digest,
    },

    /// A known predicate lacks a field or has one of the wrong type.
    #[error("attestation predicate `{predicate_type}` is invalid: {reason}")]
    PredicateInvalid {
        /// The predicate type.
        predicate_type: String,
        /// Which field is wrong and how.
        reason: String,
    },

    /// Two attestations of one kind, so which one holds is ambiguous.
    #[error("ambiguous attestations: more than one `{kind}` attestation (signers {first} and {second}); keep one")]
    Ambiguous {
        /// The kind, for example `slsa-provenance`.
        kind: &'static str,
        /// The first signer.
        first: KeyId,
        /// The second signer.
        second: KeyId,
    },

    /// A verified attestation is for another component than the one whose facts are read.
    #[error("attestation is for `{found}`, not for the component `{expected}`")]
    ComponentMismatch {
        /// The component.
        expected: Digest,
        /// What the attestation was verified for.
        found: Digest,
    },

    /// Signing failed.
    #[error("could not sign the attestation: {reason}")]
    SigningFailed {
        /// What failed.
        reason: String,
    },
}

/// A parsed, unverified attestation: one DSSE envelope. Parsing checks shape only.
#[derive(Clone, Debug)]
pub struct Attestation {
    envelope: DsseEnvelope,
    /// The whole bundle when the attestation came in one: its certificate and log entries
    /// are what a keyless attestation is verified with.
    bundle: Option<Bundle>,
}

/// Proof that an attestation verified: signed by [`VerifiedAttestation::signer`], about
/// the component [`VerifiedAttestation::digest`]. Only [`Attestation::verify`] makes one.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedAttestation {
    predicate_type: String,
    predicate: serde_json::Value,
    signer: KeyId,
    identity: SignerIdentity,
    digest: Digest,
}

impl VerifiedAttestation {
    /// The statement's `predicateType`.
    pub fn predicate_type(&self) -> &str {
        &self.predicate_type
    }

    /// The statement's `predicate` (`null` if absent).
    pub fn predicate(&self) -> &serde_json::Value {
        &self.predicate
    }

    /// The trusted key whose signature verified (for a keyless attestation, the key in its
    /// certificate).
    pub fn signer(&self) -> &KeyId {
        &self.signer
    }

    /// Who signed: a trusted key or a certificate identity.
    pub fn identity(&self) -> &SignerIdentity {
        &self.identity
    }

    /// The component the statement names as a subject.
    pub fn digest(&self) -> Digest {
        self.digest
    }
}

/// The statement as read: every field optional so that a missing one gets a precise message.
#[derive(Deserialize)]
struct RawStatement {
    #[serde(rename = "_type")]
    type_: Option<String>,
    subject: Option<Vec<RawSubject>>,
    #[serde(rename = "predicateType")]
    predicate_type: Option<String>,
    #[serde(default)]
    predicate: serde_json::Value,
}

#[derive(Deserialize)]
struct RawSubject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A DSSE envelope as JSON (the `.intoto.jsonl` line form). `cert` (slsa-github-generator)
/// and other fields are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEnvelope {
    payload_type: Option<String>,
    payload: Option<String>,
    signatures: Option<Vec<RawSignature>>,
}

#[derive(Deserialize)]
struct RawSignature {
    keyid: Option<String>,
    sig: Option<String>,
}

impl Attestation {
    /// Parses an attestation file: a Sigstore bundle whose content is a `dsseEnvelope`, or
    /// one DSSE envelope JSON per line (`.intoto.jsonl`; blank lines are skipped). Returns
    /// every envelope in the file, at least one.
    pub fn parse_file(bytes: &[u8]) -> Result<Vec<Attestation>, AttestationError> {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(malformed(format!(
                "it is {} bytes, over the limit of {MAX_FILE_BYTES} bytes",
                bytes.len()
            )));
        }
        let text =
            std::str::from_utf8(bytes).map_err(|_| malformed("it is not UTF-8 text".to_owned()))?;
        // A bundle is one JSON object with `mediaType`; an envelope has none, and may be
        // pretty-printed over several lines when it is the whole file.
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
            if value.get("mediaType").is_some() || value.get("media_type").is_some() {
                return Attestation::from_bundle_json(bytes).map(|a| vec![a]);
            }
            if value.is_object() {
                return Attestation::from_envelope_json(bytes).map(|a| vec![a]);
            }
        }
        Attestation::from_jsonl(text)
    }

    /// Parses a Sigstore bundle (v0.1 to v0.3) whose content is a DSSE envelope.
    pub fn from_bundle_json(bytes: &[u8]) -> Result<Attestation, AttestationError> {
        let bundle = Bundle::from_json(bytes).map_err(|e| malformed(e.to_string()))?;
        match bundle.content() {
            BundleContent::Dsse(envelope) => Ok(Attestation {
                envelope: envelope.clone(),
                bundle: Some(bundle.clone()),
            }),
            BundleContent::MessageSignature(_) => Err(malformed(
                "the bundle holds a message signature, not a `dsseEnvelope`".to_owned(),
            )),
        }
    }

    /// Parses `.intoto.jsonl`: one DSSE envelope JSON object per line, blank lines skipped.
    pub fn from_jsonl(text: &str) -> Result<Vec<Attestation>, AttestationError> {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if out.len() == MAX_ENVELOPES {
                return Err(malformed(format!(
                    "it has more than {MAX_ENVELOPES} envelopes"
                )));
            }
            let envelope =
                Attestation::from_envelope_json(line.as_bytes()).map_err(|e| match e {
                    AttestationError::Malformed { reason } => {
                        malformed(format!("line {}: {reason}", i.saturating_add(1)))
                    }
                    other => other,
                })?;
            out.push(envelope);
        }
        if out.is_empty() {
            return Err(malformed("it holds no DSSE envelope".to_owned()));
        }
        Ok(out)
    }

    /// Parses one DSSE envelope JSON object (`payloadType`, `payload`, `signatures[]`).
    pub fn from_envelope_json(bytes: &[u8]) -> Result<Attestation, AttestationError> {
        let raw: RawEnvelope = serde_json::from_slice(bytes).map_err(|e| {
            malformed(format!(
                "it is not a DSSE envelope ({})",
                sanitize_message(&e.to_string(), PARSER_MESSAGE_CHARS)
            ))
        })?;
        let signatures = raw
            .signatures
            .map(|sigs| sigs.into_iter().map(|s| (s.keyid, s.sig)).collect());
        let envelope = DsseEnvelope::from_fields(
            raw.payload_type,
            raw.payload,
            signatures,
            "",
            dsse_base64,
            malformed,
        )?;
        Ok(Attestation {
            envelope,
            bundle: None,
        })
    }

    /// The envelope's payload type (unauthenticated until verified).
    pub fn payload_type(&self) -> &str {
        &self.envelope.payload_type
    }

    /// Verifies the attestation as made by one of `trusted` about the component whose sha256
    /// is `component`. Checks, in order: the payload type, a signature by a trusted key over
    /// the PAE, the statement's `_type`, `subject` and `predicateType`, and that a subject's
    /// `digest.sha256` is the component's.
    pub fn verify(
        &self,
        component: &Digest,
        trusted: &[PublicKey],
    ) -> Result<VerifiedAttestation, AttestationError> {
        let envelope = &self.envelope;
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
            return Err(AttestationError::PayloadTypeMismatch {
                found: excerpt(&envelope.payload_type),
            });
        }
        let signer = verify_envelope(envelope, trusted)?;
        let statement = read_statement(&envelope.payload)?;
        let hex = component.hex();
        let named = statement.subjects.iter().any(|digest| {
            digest
                .get("sha256")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|d| d.eq_ignore_ascii_case(&hex))
        });
        if !named {
            return Err(AttestationError::SubjectMismatch { digest: *component });
        }
        Ok(VerifiedAttestation {
            predicate_type: statement.predicate_type,
            predicate: statement.predicate,
            identity: SignerIdentity::Key(signer.clone()),
            signer,
            digest: *component,
        })
    }

    /// Verifies the attestation as made by one of `signers` about `component`: a key-based
    /// one as [`Attestation::verify`] does, a keyless one (a bundle with a certificate) with
    /// the complete Sigstore check of [`crate::verify`] against each keyless signer in turn.
    pub fn verify_signed(
        &self,
        component: &Digest,
        signers: &TrustedSigners,
    ) -> Result<VerifiedAttestation, AttestationError> {
        let Some(bundle) = self.bundle.as_ref().filter(|b| b.is_keyless()) else {
            return self.verify(component, &signers.keys);
        };
        if self.envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
            return Err(AttestationError::PayloadTypeMismatch {
                found: excerpt(&self.envelope.payload_type),
            });
        }
        let mut first_error = None;
        for signer in &signers.keyless {
            match crate::verify::verify(component, bundle, &signer.policy()) {
                Ok(verified) => {
                    let statement = read_statement(&self.envelope.payload)?;
                    return Ok(VerifiedAttestation {
                        predicate_type: statement.predicate_type,
                        predicate: statement.predicate,
                        signer: verified.signer().clone(),
                        identity: verified.identity().clone(),
                        digest: *component,
                    });
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(AttestationError::KeylessInvalid {
            reason: match first_error {
                Some(e) => e.to_string(),
                None => "the attestation is signed keylessly and no signing identity is trusted"
                    .to_owned(),
            },
        })
    }
}

/// The id of the first trusted key that verifies a signature of `envelope` over its PAE.
fn verify_envelope(
    envelope: &DsseEnvelope,
    trusted: &[PublicKey],
) -> Result<KeyId, AttestationError> {
    if envelope.signatures.len() > MAX_SIGNATURES {
        return Err(malformed(format!(
            "the envelope has {} signatures, more than the {MAX_SIGNATURES} allowed",
            envelope.signatures.len()
        )));
    }
    let digest = Digest::of(&pae(&envelope.payload_type, &envelope.payload));
    envelope
        .signatures
        .iter()
        .filter_map(|s| {
            Signature::from_der(&s.sig)
                .or_else(|_| Signature::from_slice(&s.sig))
                .ok()
        })
        .find_map(|signature| {
            trusted
                .iter()
                .find(|key| key.verifies(&digest, &signature))
                .map(|key| key.key_id().clone())
        })
        .ok_or(AttestationError::SignatureInvalid)
}

/// A statement whose shape was checked.
struct Statement {
    /// Each subject's `digest` map.
    subjects: Vec<std::collections::BTreeMap<String, serde_json::Value>>,
    predicate_type: String,
    predicate: serde_json::Value,
}

fn read_statement(payload: &[u8]) -> Result<Statement, AttestationError> {
    let invalid = |reason: String| AttestationError::StatementInvalid { reason };
    let raw: RawStatement = serde_json::from_slice(payload).map_err(|e| {
        invalid(format!(
            "the payload is not an in-toto statement ({})",
            sanitize_message(&e.to_string(), PARSER_MESSAGE_CHARS)
        ))
    })?;
    match raw.type_.as_deref() {
        Some(IN_TOTO_STATEMENT_V1 | IN_TOTO_STATEMENT_V01) => {}
        Some(other) => {
            return Err(invalid(format!(
                "`_type` is `{}`, not `{IN_TOTO_STATEMENT_V1}`",
                excerpt(other)
            )))
        }
        None => return Err(invalid("`_type` is missing".to_owned())),
    }
    let subjects = raw.subject.unwrap_or_default();
    if subjects.is_empty() {
        return Err(invalid("`subject` is missing or empty".to_owned()));
    }
    let predicate_type = raw
        .predicate_type
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("`predicateType` is missing".to_owned()))?;
    Ok(Statement {
        subjects: subjects.into_iter().map(|s| s.digest).collect(),
        predicate_type,
        predicate: raw.predicate,
    })
}

/// Builds an in-toto Statement v1 about `subject_name` (whose sha256 is `digest`) with
/// `predicate`, signs it with `key` in a DSSE envelope, and returns a Sigstore bundle v0.3
/// (pretty-printed JSON) with that `dsseEnvelope`, a `publicKey` hint and no log entries, the
/// shape `cosign attest-blob --key <key> --new-bundle-format --tlog-upload=false` writes.
pub fn sign_attestation(
    subject_name: &str,
    digest: &Digest,
    predicate_type: &str,
    predicate: &serde_json::Value,
    key: &SigningKey,
) -> Result<String, AttestationError> {
    let statement = serde_json::json!({
        "_type": IN_TOTO_STATEMENT_V1,
        "subject": [{"name": subject_name, "digest": {"sha256": digest.hex()}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    });
    let payload = serde_json::to_vec(&statement).map_err(|e| AttestationError::SigningFailed {
        reason: format!("the statement could not be written as JSON ({e})"),
    })?;
    let signature = key
        .sign_digest(&Digest::of(&pae(IN_TOTO_PAYLOAD_TYPE, &payload)))
        .map_err(|e| AttestationError::SigningFailed {
            reason: e.to_string(),
        })?;
    let public = key.public_key();
    let bundle = serde_json::json!({
        "mediaType": BUNDLE_MEDIA_TYPE_V03,
        "verificationMaterial": {
            "publicKey": {"hint": public.hint()},
            "tlogEntries": [],
        },
        "dsseEnvelope": {
            "payload": general_purpose::STANDARD.encode(&payload),
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{
                "sig": general_purpose::STANDARD.encode(signature.to_der().as_bytes()),
                "keyid": public.key_id().as_str(),
            }],
        },
    });
    serde_json::to_string_pretty(&bundle).map_err(|e| AttestationError::SigningFailed {
        reason: format!("the bundle could not be written as JSON ({e})"),
    })
}

/// DSSE base64: standard or URL-safe, padding optional (protocol.md, "Envelope").
fn dsse_base64(text: Option<String>, field: &str) -> Result<Vec<u8>, AttestationError> {
    let text = text.ok_or_else(|| malformed(format!("`{field}` is missing")))?;
    let bytes = decode_base64(&text)
        .or_else(|_| general_purpose::URL_SAFE.decode(&text))
        .or_else(|_| general_purpose::URL_SAFE_NO_PAD.decode(&text))
        .map_err(|_| malformed(format!("`{field}` is not base64")))?;
    if bytes.is_empty() {
        return Err(malformed(format!("`{field}` is empty")));
    }
    Ok(bytes)
}

fn malformed(reason: String) -> AttestationError {
    AttestationError::Malformed { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SLSA_VERIFIER: zerofn_testkit::testdata::Dir =
        zerofn_testkit::testdata::dir("attestations/slsa-verifier");

    fn testdata(path: &str) -> Vec<u8> {
        let full = format!("{SLSA_VERIFIER}/{path}");
        std::fs::read(&full).unwrap_or_else(|e| panic!("read {full}: {e}"))
    }

    const PROVENANCE: &str = "https://slsa.dev/provenance/v1";

    fn predicate() -> serde_json::Value {
        serde_json::json!({"buildDefinition": {"buildType": "t"}, "runDetails": {"builder": {"id": "b"}}})
    }

    /// A signed attestation bundle as JSON, for editing.
    fn bundle_json(component: &[u8], key: &SigningKey) -> serde_json::Value {
        let bundle = sign_attestation(
            "c.wasm",
            &Digest::of(component),
            PROVENANCE,
            &predicate(),
            key,
        )
        .unwrap();
        serde_json::from_str(&bundle).unwrap()
    }

    fn envelope_of(json: &serde_json::Value) -> serde_json::Value {
        json["dsseEnvelope"].clone()
    }

    fn verify_json(
        json: &serde_json::Value,
        component: &[u8],
        keys: &[PublicKey],
    ) -> Result<VerifiedAttestation, AttestationError> {
        let parsed = Attestation::parse_file(&serde_json::to_vec(json).unwrap())?;
        parsed[0].verify(&Digest::of(component), keys)
    }

    /// Re-signs `statement` (any JSON) in a DSSE envelope with `key`.
    fn envelope_with(payload_type: &str, statement: &[u8], key: &SigningKey) -> serde_json::Value {
        let sig = key
            .sign_digest(&Digest::of(&pae(payload_type, statement)))
            .unwrap();
        serde_json::json!({
            "payloadType": payload_type,
            "payload": general_purpose::STANDARD.encode(statement),
            "signatures": [{"sig": general_purpose::STANDARD.encode(sig.to_der().as_bytes())}],
        })
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let key = SigningKey::generate();
        let component = b"\0asm component";
        let json = bundle_json(component, &key);
        assert_eq!(json["mediaType"], BUNDLE_MEDIA_TYPE_V03);
        assert_eq!(json["dsseEnvelope"]["payloadType"], IN_TOTO_PAYLOAD_TYPE);
        let verified = verify_json(&json, component, &[key.public_key()]).unwrap();
        assert_eq!(verified.predicate_type(), PROVENANCE);
        assert_eq!(verified.predicate(), &predicate());
        assert_eq!(verified.signer(), key.public_key().key_id());
        assert_eq!(verified.digest(), Digest::of(component));
        // The statement is v1 and names the component.
        let payload = general_purpose::STANDARD
            .decode(json["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap();
        let statement: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(statement["_type"], IN_TOTO_STATEMENT_V1);
        assert_eq!(
            statement["subject"],
            serde_json::json!([{"name": "c.wasm", "digest": {"sha256": Digest::of(component).hex()}}])
        );
        // The crate's bundle verifier accepts it too (same PAE, same subject rule).
        let bundle = Bundle::from_json(&serde_json::to_vec(&json).unwrap()).unwrap();
        let signature = crate::verify(
            &Digest::of(component),
            &bundle,
            &crate::VerificationPolicy::Key(vec![key.public_key()]),
        )
        .unwrap();
        assert_eq!(signature.signer(), key.public_key().key_id());
    }

    #[test]
    fn subject_digest_mismatch_is_refused() {
        let key = SigningKey::generate();
        let json = bundle_json(b"component", &key);
        let err = verify_json(&json, b"other component", &[key.public_key()]).unwrap_err();
        assert!(
            matches!(err, AttestationError::SubjectMismatch { digest } if digest == Digest::of(b"other component")),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .starts_with("attestation subject does not match the component `sha256:"));
    }

    #[test]
    fn untrusted_key_is_refused() {
        let key = SigningKey::generate();
        let other = SigningKey::generate();
        let json = bundle_json(b"component", &key);
        for keys in [vec![other.public_key()], vec![]] {
            let err = verify_json(&json, b"component", &keys).unwrap_err();
            assert!(matches!(err, AttestationError::SignatureInvalid), "{err:?}");
        }
    }

    #[test]
    fn tampered_payload_and_signature_are_refused() {
        let key = SigningKey::generate();
        let json = bundle_json(b"component", &key);
        let payload = general_purpose::STANDARD
            .decode(json["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap();
        let sig = json["dsseEnvelope"]["signatures"][0]["sig"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut flipped_sig = general_purpose::STANDARD.decode(&sig).unwrap();
        let last = flipped_sig.len() - 1;
        flipped_sig[last] ^= 1;
        let tampered_payload = String::from_utf8(payload)
            .unwrap()
            .replace("\"b\"", "\"evil\"");
        for (why, edit) in [
            (
                "payload edited",
                serde_json::json!({"payload": general_purpose::STANDARD.encode(&tampered_payload)}),
            ),
            (
                "signature bit flipped",
                serde_json::json!({"signatures": [{"sig": general_purpose::STANDARD.encode(&flipped_sig)}]}),
            ),
            (
                "signature not a signature",
                serde_json::json!({"signatures": [{"sig": "AAAA"}]}),
            ),
        ] {
            let mut edited = json.clone();
            for (k, v) in edit.as_object().unwrap() {
                edited["dsseEnvelope"][k] = v.clone();
            }
            let err = verify_json(&edited, b"component", &[key.public_key()]).unwrap_err();
            assert!(
                matches!(err, AttestationError::SignatureInvalid),
                "{why}: {err:?}"
            );
        }
    }

    #[test]
    fn wrong_payload_type_is_refused_even_if_signed() {
        let key = SigningKey::generate();
        let component = b"component";
        let json = bundle_json(component, &key);
        let payload = general_purpose::STANDARD
            .decode(json["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap();
        for payload_type in ["application/json", "text/plain", ""] {
            let envelope = envelope_with(payload_type, &payload, &key);
            let attestation =
                Attestation::from_envelope_json(&serde_json::to_vec(&envelope).unwrap()).unwrap();
            let err = attestation
                .verify(&Digest::of(component), &[key.public_key()])
                .unwrap_err();
            assert!(
                matches!(&err, AttestationError::PayloadTypeMismatch { found } if found == payload_type),
                "{err:?}"
            );
        }
        // Changing the payload type of a signed envelope breaks the PAE signature, too.
        let mut edited = json.clone();
        edited["dsseEnvelope"]["payloadType"] = "application/json".into();
        let err = verify_json(&edited, component, &[key.public_key()]).unwrap_err();
        assert!(
            matches!(err, AttestationError::PayloadTypeMismatch { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn one_trusted_signature_among_several_is_enough() {
        let trusted = SigningKey::generate();
        let stranger = SigningKey::generate();
        let component = b"component";
        let mut json = bundle_json(component, &trusted);
        let payload = general_purpose::STANDARD
            .decode(json["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap();
        let stranger_sig =
            envelope_with(IN_TOTO_PAYLOAD_TYPE, &payload, &stranger)["signatures"][0].clone();
        let trusted_sig = json["dsseEnvelope"]["signatures"][0].clone();
        json["dsseEnvelope"]["signatures"] =
            serde_json::json!([stranger_sig, {"sig": "bm90IGEgc2lnbmF0dXJl"}, trusted_sig]);
        let verified = verify_json(&json, component, &[trusted.public_key()]).unwrap();
        assert_eq!(verified.signer(), trusted.public_key().key_id());
        // With only the stranger trusted, the stranger is the signer.
        let verified = verify_json(&json, component, &[stranger.public_key()]).unwrap();
        assert_eq!(verified.signer(), stranger.public_key().key_id());
        // Too many signatures are refused before any is tried.
        let many: Vec<_> = (0..=MAX_SIGNATURES)
            .map(|_| json["dsseEnvelope"]["signatures"][2].clone())
            .collect();
        json["dsseEnvelope"]["signatures"] = many.into();
        let err = verify_json(&json, component, &[trusted.public_key()]).unwrap_err();
        assert!(matches!(err, AttestationError::Malformed { .. }), "{err:?}");
    }

    #[test]
    fn fixed_size_signatures_verify_too() {
        let key = SigningKey::generate();
        let statement = serde_json::json!({"_type": IN_TOTO_STATEMENT_V01, "subject": [{"name": "x", "digest": {"sha256": Digest::of(b"c").hex()}}], "predicateType": "p"});
        let payload = serde_json::to_vec(&statement).unwrap();
        let sig = key
            .sign_digest(&Digest::of(&pae(IN_TOTO_PAYLOAD_TYPE, &payload)))
            .unwrap();
        // URL-safe base64 without padding, and r || s: both allowed by DSSE implementations.
        let envelope = serde_json::json!({
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "payload": general_purpose::URL_SAFE_NO_PAD.encode(&payload),
            "signatures": [{"sig": general_purpose::STANDARD.encode(sig.to_bytes())}],
        });
        let attestation =
            Attestation::from_envelope_json(&serde_json::to_vec(&envelope).unwrap()).unwrap();
        let verified = attestation
            .verify(&Digest::of(b"c"), &[key.public_key()])
            .unwrap();
        assert_eq!(verified.predicate_type(), "p");
        assert_eq!(verified.predicate(), &serde_json::Value::Null);
    }

    #[test]
    fn malformed_statements_are_refused_after_the_signature() {
        let key = SigningKey::generate();
        let hex = Digest::of(b"c").hex();
        for (statement, reason) in [
            (
                "not json".to_owned(),
                "the payload is not an in-toto statement",
            ),
            (
                format!(
                    r#"{{"_type":"https://example.com/Other","subject":[{{"digest":{{"sha256":"{hex}"}}}}],"predicateType":"p"}}"#
                ),
                "`_type` is `https://example.com/Other`",
            ),
            (
                format!(r#"{{"subject":[{{"digest":{{"sha256":"{hex}"}}}}],"predicateType":"p"}}"#),
                "`_type` is missing",
            ),
            (
                r#"{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"p"}"#
                    .to_owned(),
                "`subject` is missing or empty",
            ),
            (
                format!(
                    r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"digest":{{"sha256":"{hex}"}}}}]}}"#
                ),
                "`predicateType` is missing",
            ),
        ] {
            let envelope = envelope_with(IN_TOTO_PAYLOAD_TYPE, statement.as_bytes(), &key);
            let attestation =
                Attestation::from_envelope_json(&serde_json::to_vec(&envelope).unwrap()).unwrap();
            let err = attestation
                .verify(&Digest::of(b"c"), &[key.public_key()])
                .unwrap_err();
            assert!(
                matches!(&err, AttestationError::StatementInvalid { reason: r } if r.starts_with(reason)),
                "{statement}: {err:?}"
            );
            // Unsigned, the same payload is refused for its signature first.
            let err = attestation
                .verify(&Digest::of(b"c"), &[SigningKey::generate().public_key()])
                .unwrap_err();
            assert!(matches!(err, AttestationError::SignatureInvalid), "{err:?}");
        }
    }

    #[test]
    fn intoto_jsonl_holds_one_envelope_per_line() {
        let a = SigningKey::generate();
        let b = SigningKey::generate();
        let component = b"component";
        let line = |key: &SigningKey| {
            serde_json::to_string(&envelope_of(&bundle_json(component, key))).unwrap()
        };
        let text = format!("{}\n\n{}\n", line(&a), line(&b));
        let parsed = Attestation::parse_file(text.as_bytes()).unwrap();
        assert_eq!(parsed.len(), 2);
        let signers: Vec<KeyId> = parsed
            .iter()
            .map(|p| {
                p.verify(&Digest::of(component), &[a.public_key(), b.public_key()])
                    .unwrap()
                    .signer()
                    .clone()
            })
            .collect();
        assert_eq!(
            signers,
            vec![
                a.public_key().key_id().clone(),
                b.public_key().key_id().clone()
            ]
        );
        for (text, reason) in [
            ("", "it holds no DSSE envelope"),
            ("\n\n", "it holds no DSSE envelope"),
            ("{}", "`payloadType` is missing"),
            (
                r#"{"payloadType":"x","payload":"eA==","signatures":[]}"#,
                "`signatures` is empty",
            ),
            (
                r#"{"payloadType":"x","payload":"!!","signatures":[{"sig":"eA=="}]}"#,
                "`payload` is not base64",
            ),
        ] {
            let err = Attestation::parse_file(text.as_bytes()).unwrap_err();
            assert!(
                matches!(&err, AttestationError::Malformed { reason: r } if r.starts_with(reason)),
                "{text:?}: {err:?}"
            );
        }
        // A whole-file envelope may be pretty-printed.
        let pretty =
            serde_json::to_string_pretty(&envelope_of(&bundle_json(component, &a))).unwrap();
        let parsed = Attestation::parse_file(pretty.as_bytes()).unwrap();
        assert_eq!(parsed.len(), 1);
        assert!(parsed[0]
            .verify(&Digest::of(component), &[a.public_key()])
            .is_ok_and(|v| v.signer() == a.public_key().key_id()));
        let err =
            Attestation::parse_file(format!("{}\nnot json\n", line(&a)).as_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .contains("line 2: it is not a DSSE envelope"),
            "{err}"
        );
    }

    #[test]
    fn bundles_with_a_message_signature_are_not_attestations() {
        let key = SigningKey::generate();
        let bundle = crate::sign_artifact(b"component", &key).unwrap();
        let err = Attestation::parse_file(bundle.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, AttestationError::Malformed { reason } if reason.contains("message signature")),
            "{err:?}"
        );
        let err = Attestation::parse_file(br#"{"mediaType":"application/x-other"}"#).unwrap_err();
        assert!(
            matches!(&err, AttestationError::Malformed { reason } if reason.contains("`application/x-other` is not supported")),
            "{err:?}"
        );
    }

    #[test]
    fn slsa_verifier_envelopes_and_bundles_parse() {
        // Third-party files: raw DSSE envelopes (one line, no trailing newline) and Sigstore
        // bundles v0.3 under the `.intoto.jsonl` name (slsa-github-generator v2.1.0).
        for path in [
            "annotated-tag.intoto.jsonl",
            "workflow-inputs.intoto.jsonl",
            "binary-linux-amd64-multi-subject-first.intoto.jsonl",
            "binary-linux-amd64-sharded.intoto.jsonl",
            "gha_generic-v2.1.0/binary-linux-amd64-workflow_dispatch.intoto.jsonl",
            "gha_generic-v2.1.0/binary-linux-amd64-push-v14.2.intoto.jsonl",
        ] {
            let parsed = Attestation::parse_file(&testdata(path)).unwrap();
            assert_eq!(parsed.len(), 1, "{path}");
            assert_eq!(parsed[0].payload_type(), IN_TOTO_PAYLOAD_TYPE, "{path}");
            // Signed by Fulcio certificates, not by a key we hold: refused, never trusted.
            let err = parsed[0]
                .verify(
                    &Digest::of(&testdata("annotated-tag")),
                    &[SigningKey::generate().public_key()],
                )
                .unwrap_err();
            assert!(
                matches!(err, AttestationError::SignatureInvalid),
                "{path}: {err:?}"
            );
            // The statement names the stored artifact (checked by the README's collector).
            let statement = read_statement(&parsed[0].envelope.payload).unwrap();
            assert_eq!(statement.predicate_type, "https://slsa.dev/provenance/v0.2");
        }
    }

    /// The npm registry's publish attestations are signed with the key that sigstore-go ships
    /// as `examples/publish_key.pub` (the README's hint `SHA256:jl3bwswu...`): their DSSE
    /// signatures verify here, and the `-invalidsigpub` copies do not.
    #[test]
    fn npm_publish_attestation_signatures_verify_with_the_registry_key() {
        let pem = std::fs::read_to_string(zerofn_testkit::testdata(
            "sigstore/sigstore-go/examples/publish_key.pub",
        ))
        .unwrap();
        // The file keeps its base64 on one line; PEM (RFC 7468) wraps it at 64 characters.
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let wrapped: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let key = PublicKey::from_pem(&format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            wrapped.join("\n")
        ))
        .unwrap();
        for (case, valid) in [
            ("gundam-visor-cli-v1-tag", true),
            ("provenance-npm-test-cli-v02-prega", true),
            ("supreme-googles-cli-v02-tag", true),
            ("gundam-visor-cli-v1-tag-invalidsigpub", false),
            ("supreme-googles-cli-v02-tag-invalidsigpub", false),
        ] {
            let file: serde_json::Value =
                serde_json::from_slice(&testdata(&format!("npm-gha/{case}.tgz.json"))).unwrap();
            let publish = file["attestations"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| {
                    a["predicateType"]
                        == "https://github.com/npm/attestation/tree/main/specs/publish/v0.1"
                })
                .unwrap();
            let attestation =
                Attestation::from_bundle_json(&serde_json::to_vec(&publish["bundle"]).unwrap())
                    .unwrap();
            let err = attestation
                .verify(&Digest::of(b"the tarball"), std::slice::from_ref(&key))
                .unwrap_err();
            // A valid signature gets as far as the subject (npm names a sha512 only).
            if valid {
                assert!(
                    matches!(err, AttestationError::SubjectMismatch { .. }),
                    "{case}: {err:?}"
                );
                assert_eq!(
                    verify_envelope(&attestation.envelope, std::slice::from_ref(&key)).unwrap(),
                    *key.key_id()
                );
            } else {
                assert!(
                    matches!(err, AttestationError::SignatureInvalid),
                    "{case}: {err:?}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn parse_file_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Attestation::parse_file(&bytes);
        }

        #[test]
        fn jsonl_lines_never_panic(text in "[{}\\[\\]\":,a-zA-Z0-9=+/ \n]{0,256}") {
            if let Ok(parsed) = Attestation::parse_file(text.as_bytes()) {
                for a in parsed {
                    let _ = a.verify(&Digest::of(b""), &[]);
                }
            }
        }

        #[test]
        fn signed_statements_with_any_payload_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..256)) {
            let key = SigningKey::generate();
            let envelope = envelope_with(IN_TOTO_PAYLOAD_TYPE, &payload, &key);
            if let Ok(a) = Attestation::from_envelope_json(&serde_json::to_vec(&envelope).unwrap()) {
                let _ = a.verify(&Digest::of(b""), &[key.public_key()]);
            }
        }
    }
}
