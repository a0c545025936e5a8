//! Transparency log (Rekor) entries in a bundle: the signed entry timestamp, the Merkle
//! inclusion proof and its signed checkpoint, and the match between the logged body and
//! what the bundle signs.
//!
//! References: `TransparencyLogEntry` in `protos/sigstore_rekor.proto`
//! (<https://github.com/sigstore/protobuf-specs>); the Sigstore client specification,
//! "Verification" (<https://github.com/sigstore/architecture-docs>); RFC 9162 §2.1.3.2
//! (inclusion proof verification, identical to RFC 6962 §2.1.1); the signed note format
//! (<https://github.com/C2SP/C2SP/blob/main/signed-note.md>) and checkpoint format
//! (<https://github.com/C2SP/C2SP/blob/main/tlog-checkpoint.md>).
//!
//! No crate in the RustCrypto family verifies RFC 9162 proofs or signed notes, so both are
//! written here on top of `sha2` and [`VerifierKey`]; each is a few lines that follow the
//! cited algorithm step by step.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::anchor::{TimeRange, TransparencyLog};
use crate::certificate::pem_certificate_der;
use crate::encoding::decode_base64;
use crate::error::AdmissionError;
use crate::trust_root::TrustedRoot;
use zerofn_types::excerpt;
use zerofn_types::rfc6962::{leaf_hash, root_from_inclusion_path};
use zerofn_types::Digest;

/// What the bundle claims was logged, which the entry body must match exactly.
pub(crate) enum LoggedContent<'a> {
    /// A `messageSignature` over the artifact.
    Message {
        digest: &'a Digest,
        signature: &'a [u8],
    },
    /// A DSSE envelope with one signature.
    Dsse {
        payload_type: &'a str,
        payload: &'a [u8],
        signature: &'a [u8],
        /// SHA-256 of the envelope's PAE (Rekor v2 logs DSSE as a hashedrekord over it).
        pae_sha256: [u8; 32],
    },
}

/// Who signed: the leaf certificate (DER). (Key-based bundles are verified without a
/// trusted root, so their entries are not checked; a `PublicKey` arm would go here.)
pub(crate) enum LoggedSigner<'a> {
    Certificate(&'a [u8]),
}

/// A log entry that verified: its integrated time when a signed entry timestamp proves it
/// (Rekor v1), and the validity of the log key that signed it.
#[derive(Debug)]
pub(crate) struct VerifiedEntry {
    pub integrated_time: Option<OffsetDateTime>,
    pub log_valid_for: TimeRange,
}

/// Verifies one entry. `require_proof` is true for bundles v0.2 and later, which must carry
/// an inclusion proof with a checkpoint; v0.1 bundles must carry a signed entry timestamp.
pub(crate) fn verify_entry(
    entry: &wire::Entry,
    root: &TrustedRoot,
    content: &LoggedContent<'_>,
    signer: &LoggedSigner<'_>,
    require_proof: bool,
) -> Result<VerifiedEntry, AdmissionError> {
    let invalid = |reason: String| AdmissionError::TlogEntryInvalid { reason };
    let log_index = entry
        .log_index
        .as_ref()
        .ok_or_else(|| invalid("`logIndex` is missing".to_owned()))?
        .as_i64()
        .ok_or_else(|| invalid("`logIndex` is not an integer".to_owned()))?;
    if log_index < 0 {
        return Err(invalid(format!("log index {log_index} is negative")));
    }
    let log_id = entry
        .log_id
        .as_ref()
        .and_then(|id| id.key_id.as_deref())
        .ok_or_else(|| invalid("`logId.keyId` is missing".to_owned()))?;
    let log_id =
        decode_base64(log_id).map_err(|_| invalid("`logId.keyId` is not base64".to_owned()))?;
    let log = root
        .tlogs
        .iter()
        .find(|log| log.log_id == log_id)
        .ok_or_else(|| AdmissionError::UntrustedTransparencyLog {
            log_id: hex::encode(&log_id),
        })?;
    let body = entry
        .canonicalized_body
        .as_deref()
        .ok_or_else(|| invalid("`canonicalizedBody` is missing".to_owned()))?;
    let body =
        decode_base64(body).map_err(|_| invalid("`canonicalizedBody` is not base64".to_owned()))?;
    let (kind, version) = entry
        .kind_version
        .as_ref()
        .map(|kv| (kv.kind.as_deref(), kv.version.as_deref()))
        .unwrap_or_default();

    match_body(&body, kind, version, content, signer)?;

    let integrated_time = match (&entry.inclusion_promise, &entry.integrated_time) {
        (Some(promise), Some(time)) => {
            let time = time
                .as_i64()
                .ok_or_else(|| invalid("`integratedTime` is not an integer".to_owned()))?;
            let set = promise
                .signed_entry_timestamp
                .as_deref()
                .and_then(|s| decode_base64(s).ok())
                .ok_or_else(|| AdmissionError::SignedEntryTimestampInvalid {
                    reason: "`inclusionPromise.signedEntryTimestamp` is missing or not base64"
                        .to_owned(),
                })?;
            verify_signed_entry_timestamp(log, &body, time, &log_id, log_index, &set)?;
            let at = OffsetDateTime::from_unix_timestamp(time)
                .map_err(|_| invalid(format!("integrated time {time} is out of range")))?;
            if !log.valid_for.contains(at) {
                return Err(AdmissionError::SignedEntryTimestampInvalid {
                    reason: format!(
                        "integrated time {at} is outside the validity of log key `{}`",
                        excerpt(&log.base_url)
                    ),
                });
            }
            Some(at)
        }
        (Some(_), None) => {
            return Err(AdmissionError::SignedEntryTimestampInvalid {
                reason: "the entry has an inclusion promise but no integrated time".to_owned(),
            })
        }
        (None, _) => None,
    };

    match &entry.inclusion_proof {
        Some(proof) => verify_inclusion(log, &body, proof)?,
        None if require_proof => return Err(AdmissionError::InclusionProofMissing),
        None if integrated_time.is_none() => {
            return Err(invalid(
                "it has neither an inclusion proof nor a signed entry timestamp".to_owned(),
            ))
        }
        None => {}
    }

    Ok(VerifiedEntry {
        integrated_time,
        log_valid_for: log.valid_for,
    })
}

/// The SET is the log's signature over the RFC 8785 canonical JSON of
/// `{body, integratedTime, logID, logIndex}` (Rekor `pkg/api/entries.go`,
/// `VerifySignedEntryTimestamp`). Every value is a number, hex or base64, so no JSON string
/// escaping is involved and the keys are written in their canonical (sorted) order.
fn verify_signed_entry_timestamp(
    log: &TransparencyLog,
    body: &[u8],
    integrated_time: i64,
    log_id: &[u8],
    log_index: i64,
    set: &[u8],
) -> Result<(), AdmissionError> {
    let canonical = format!(
        "{{\"body\":\"{}\",\"integratedTime\":{integrated_time},\"logID\":\"{}\",\"logIndex\":{log_index}}}",
        base64::engine::general_purpose::STANDARD.encode(body),
        hex::encode(log_id),
    );
    let key = log
        .key
        .as_ref()
        .map_err(|reason| AdmissionError::SignedEntryTimestampInvalid {
            reason: format!("the log key is not usable: {reason}"),
        })?;
    if key.verifies_message(canonical.as_bytes(), set) {
        Ok(())
    } else {
        Err(AdmissionError::SignedEntryTimestampInvalid {
            reason: format!(
                "the signature does not verify with the key of log `{}`",
                excerpt(&log.base_url)
            ),
        })
    }
}

fn verify_inclusion(
    log: &TransparencyLog,
    body: &[u8],
    proof: &wire::InclusionProof,
) -> Result<(), AdmissionError> {
    let bad = |reason: &str| AdmissionError::InclusionProofInvalid {
        reason: reason.to_owned(),
    };
    let index = proof
        .log_index
        .as_ref()
        .and_then(wire::Int64::as_i64)
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| bad("`logIndex` is missing or negative"))?;
    let size = proof
        .tree_size
        .as_ref()
        .and_then(wire::Int64::as_i64)
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| bad("`treeSize` is missing or negative"))?;
    let root: [u8; 32] = proof
        .root_hash
        .as_deref()
        .and_then(|r| decode_base64(r).ok())
        .and_then(|r| r.try_into().ok())
        .ok_or_else(|| bad("`rootHash` is missing or not 32 bytes"))?;
    let hashes = proof
        .hashes
        .iter()
        .flatten()
        .map(|h| {
            decode_base64(h)
                .ok()
                .and_then(|h| <[u8; 32]>::try_from(h).ok())
        })
        .collect::<Option<Vec<[u8; 32]>>>()
        .ok_or_else(|| bad("a proof hash is not 32 bytes of base64"))?;
    let leaf = leaf_hash(body);
    match root_from_inclusion_path(index, size, leaf, &hashes) {
        Some(computed) if computed == root => {}
        _ => {
            return Err(bad(
                "the audit path does not lead from the entry to the root hash",
            ))
        }
    }
    let checkpoint = proof
        .checkpoint
        .as_ref()
        .and_then(|c| c.envelope.as_deref())
        .ok_or_else(|| AdmissionError::CheckpointInvalid {
            reason: "the inclusion proof has no checkpoint".to_owned(),
        })?;
    let note = Checkpoint::parse(checkpoint)?;
    if note.size != size || note.root_hash != root {
        return Err(AdmissionError::CheckpointInvalid {
            reason: "the checkpoint's tree size or root hash differs from the inclusion proof"
                .to_owned(),
        });
    }
    note.verify(log)
}

/// A checkpoint in signed note form: the signed text and its signature lines.
struct Checkpoint<'a> {
    /// The note text, every line with its `\n`: what the signatures cover.
    text: &'a str,
    size: u64,
    root_hash: [u8; 32],
    /// (key name, key hint, signature) of each signature line.
    signatures: Vec<(&'a str, [u8; 4], Vec<u8>)>,
}

impl<'a> Checkpoint<'a> {
    /// Parses a signed note (C2SP signed-note): text lines, a blank line, then lines of
    /// `— <name> <base64(key hint[4] || signature)>`; the text's first three lines are the
    /// origin, the decimal tree size and the base64 root hash (C2SP tlog-checkpoint).
    fn parse(envelope: &'a str) -> Result<Checkpoint<'a>, AdmissionError> {
        let bad = |reason: &str| AdmissionError::CheckpointInvalid {
            reason: reason.to_owned(),
        };
        let split = envelope
            .find("\n\n")
            .ok_or_else(|| bad("it has no blank line before its signatures"))?;
        let text = envelope
            .get(..split.saturating_add(1))
            .ok_or_else(|| bad("it is malformed"))?;
        let signatures_text = envelope
            .get(split.saturating_add(2)..)
            .ok_or_else(|| bad("it is malformed"))?;
        let mut lines = text.lines();
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(bad("it has no origin line"));
        }
        let size = lines
            .next()
            .and_then(|l| {
                (!l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| l.parse::<u64>().ok())
                    .flatten()
            })
            .ok_or_else(|| bad("its second line is not a tree size"))?;
        let root_hash = lines
            .next()
            .and_then(|l| base64::engine::general_purpose::STANDARD.decode(l).ok())
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
            .ok_or_else(|| bad("its third line is not a base64 SHA-256 root hash"))?;
        let mut signatures = Vec::new();
        for line in signatures_text.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return Err(bad("a signature line does not start with `\u{2014} `"));
            };
            let Some((name, encoded)) = rest.rsplit_once(' ') else {
                return Err(bad("a signature line has no key name"));
            };
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
                return Err(bad("a signature is not base64"));
            };
            let Some((hint, signature)) = decoded.split_first_chunk::<4>() else {
                return Err(bad("a signature is shorter than its key hint"));
            };
            signatures.push((name, *hint, signature.to_vec()));
        }
        if signatures.is_empty() {
            return Err(AdmissionError::CheckpointSignatureInvalid {
                reason: "the checkpoint has no signatures".to_owned(),
            });
        }
        Ok(Checkpoint {
            text,
            size,
            root_hash,
            signatures,
        })
    }

    /// Succeeds when a signature line whose key hint is the log's verifies over the text
    /// with the log's key; lines from other keys (witness cosignatures) are ignored. The key
    /// hint is the first 4 bytes of the log id: for Rekor v1 the log id is the SHA-256 of
    /// the key's DER SubjectPublicKeyInfo, which is also what Rekor v1 puts in its notes;
    /// for Rekor v2 the trusted root's log id *is* the signed-note key id,
    /// SHA-256(name || "\n" || type byte || key), and the hint is its prefix
    /// (sigstore-go `pkg/tlog`, C2SP signed-note "Signatures").
    fn verify(&self, log: &TransparencyLog) -> Result<(), AdmissionError> {
        let key =
            log.key
                .as_ref()
                .map_err(|reason| AdmissionError::CheckpointSignatureInvalid {
                    reason: format!("the log key is not usable: {reason}"),
                })?;
        let hint = log.log_id.get(..4).unwrap_or_default();
        let mut candidates = 0usize;
        for (_name, key_hint, signature) in &self.signatures {
            if key_hint.as_slice() != hint {
                continue;
            }
            candidates += 1;
            if key.verifies_message(self.text.as_bytes(), signature) {
                return Ok(());
            }
        }
        Err(AdmissionError::CheckpointSignatureInvalid {
            reason: if candidates == 0 {
                format!(
                    "no signature has the key hint of log `{}`",
                    excerpt(&log.base_url)
                )
            } else {
                format!(
                    "no signature verifies with the key of log `{}`",
                    excerpt(&log.base_url)
                )
            },
        })
    }
}

/// Checks the logged body against the bundle, per entry kind. This is what ties the log
/// entry to *this* artifact, signature and signer (CVE-2022-36056).
fn match_body(
    body: &[u8],
    kind: Option<&str>,
    version: Option<&str>,
    content: &LoggedContent<'_>,
    signer: &LoggedSigner<'_>,
) -> Result<(), AdmissionError> {
    let mismatch = |reason: &str| AdmissionError::TlogEntryMismatch {
        reason: reason.to_owned(),
    };
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| mismatch("the logged body is not JSON"))?;
    let body_kind = json.get("kind").and_then(|v| v.as_str());
    let body_version = json.get("apiVersion").and_then(|v| v.as_str());
    if body_kind != kind || body_version != version {
        return Err(mismatch(
            "the entry's `kindVersion` differs from the logged body's kind and version",
        ));
    }
    let spec = json
        .get("spec")
        .ok_or_else(|| mismatch("the logged body has no `spec`"))?;
    let str_at = |value: &serde_json::Value, path: &[&str]| -> Option<String> {
        let mut v = value;
        for key in path {
            v = v.get(*key)?;
        }
        v.as_str().map(str::to_owned)
    };
    let b64_at = |value: &serde_json::Value, path: &[&str]| -> Option<Vec<u8>> {
        str_at(value, path).and_then(|s| decode_base64(&s).ok())
    };
    // The signer as logged, in the encoding of each kind, compared as DER.
    let signer_matches_pem = |pem_b64: Option<Vec<u8>>| -> bool {
        let Some(pem) = pem_b64.and_then(|p| String::from_utf8(p).ok()) else {
            return false;
        };
        match signer {
            LoggedSigner::Certificate(der) => pem_certificate_der(&pem).as_deref() == Some(*der),
        }
    };

    match (kind, version, content) {
        (Some("hashedrekord"), Some("0.0.1"), LoggedContent::Message { digest, signature }) => {
            if str_at(spec, &["data", "hash", "algorithm"]).as_deref() != Some("sha256")
                || str_at(spec, &["data", "hash", "value"]) != Some(digest.hex())
            {
                return Err(mismatch("the logged artifact digest differs"));
            }
            if b64_at(spec, &["signature", "content"]).as_deref() != Some(*signature) {
                return Err(mismatch("the logged signature differs"));
            }
            if !signer_matches_pem(b64_at(spec, &["signature", "publicKey", "content"])) {
                return Err(mismatch("the logged certificate or key differs"));
            }
        }
        (Some("hashedrekord"), Some("0.0.2"), _) => {
            let spec = spec
                .get("hashedRekordV002")
                .ok_or_else(|| mismatch("the logged body has no `hashedRekordV002`"))?;
            let (expected_digest, signature): (&[u8], &[u8]) = match content {
                LoggedContent::Message { digest, signature } => {
                    (digest.as_bytes().as_slice(), signature)
                }
                // Rekor v2 logs a DSSE envelope as a hashedrekord over SHA-256(PAE).
                LoggedContent::Dsse {
                    pae_sha256,
                    signature,
                    ..
                } => (pae_sha256.as_slice(), signature),
            };
            if str_at(spec, &["data", "algorithm"]).as_deref() != Some("SHA2_256")
                || b64_at(spec, &["data", "digest"]).as_deref() != Some(expected_digest)
            {
                return Err(mismatch("the logged artifact digest differs"));
            }
            if b64_at(spec, &["signature", "content"]).as_deref() != Some(signature) {
                return Err(mismatch("the logged signature differs"));
            }
            let logged_signer = match signer {
                LoggedSigner::Certificate(der) => b64_at(
                    spec,
                    &["signature", "verifier", "x509Certificate", "rawBytes"],
                )
                .is_some_and(|d| d == *der),
            };
            if !logged_signer {
                return Err(mismatch("the logged certificate or key differs"));
            }
        }
        (
            Some("dsse"),
            Some("0.0.1"),
            LoggedContent::Dsse {
                payload, signature, ..
            },
        ) => {
            if str_at(spec, &["payloadHash", "algorithm"]).as_deref() != Some("sha256")
                || str_at(spec, &["payloadHash", "value"])
                    != Some(hex::encode(Sha256::digest(payload)))
            {
                return Err(mismatch("the logged payload hash differs"));
            }
            let logged = spec
                .get("signatures")
                .and_then(|s| s.as_array())
                .ok_or_else(|| mismatch("the logged body has no signatures"))?;
            let [only] = logged.as_slice() else {
                return Err(mismatch(
                    "the logged envelope does not have exactly one signature",
                ));
            };
            if b64_at(only, &["signature"]).as_deref() != Some(*signature) {
                return Err(mismatch("the logged signature differs"));
            }
            if !signer_matches_pem(b64_at(only, &["verifier"])) {
                return Err(mismatch("the logged certificate or key differs"));
            }
        }
        (
            Some("intoto"),
            Some("0.0.2"),
            LoggedContent::Dsse {
                payload_type,
                payload,
                signature,
                ..
            },
        ) => {
            let content = spec
                .get("content")
                .ok_or_else(|| mismatch("the logged body has no `content`"))?;
            if str_at(content, &["payloadHash", "algorithm"]).as_deref() != Some("sha256")
                || str_at(content, &["payloadHash", "value"])
                    != Some(hex::encode(Sha256::digest(payload)))
            {
                return Err(mismatch("the logged payload hash differs"));
            }
            if str_at(content, &["envelope", "payloadType"]).as_deref() != Some(*payload_type) {
                return Err(mismatch("the logged payload type differs"));
            }
            let logged = content
                .get("envelope")
                .and_then(|e| e.get("signatures"))
                .and_then(|s| s.as_array())
                .ok_or_else(|| mismatch("the logged envelope has no signatures"))?;
            let [only] = logged.as_slice() else {
                return Err(mismatch(
                    "the logged envelope does not have exactly one signature",
                ));
            };
            // intoto 0.0.2 stores the signature base64-encoded twice.
            let sig = b64_at(only, &["sig"])
                .and_then(|inner| String::from_utf8(inner).ok())
                .and_then(|inner| decode_base64(inner.trim()).ok());
            if sig.as_deref() != Some(*signature) {
                return Err(mismatch("the logged signature differs"));
            }
            if !signer_matches_pem(b64_at(only, &["publicKey"])) {
                return Err(mismatch("the logged certificate or key differs"));
            }
        }
        (Some(kind), Some(version), _) => {
            return Err(mismatch(&format!(
                "entry kind `{}` version `{}` does not log this kind of bundle content",
                excerpt(kind),
                excerpt(version)
            )))
        }
        _ => return Err(mismatch("the entry has no `kindVersion`")),
    }
    Ok(())
}

/// The protobuf JSON of `TransparencyLogEntry`. Everything is optional so that a missing
/// field is reported by [`verify_entry`], naming it.
pub(crate) mod wire {
    use serde::{Deserialize, Serialize};

    /// protobuf JSON writes int64 as a string, but accepts a number too.
    #[derive(Clone, Debug, Deserialize, Serialize)]
    #[serde(untagged)]
    pub(crate) enum Int64 {
        Text(String),
        Number(i64),
    }

    impl Int64 {
        pub(crate) fn as_i64(&self) -> Option<i64> {
            match self {
                Int64::Number(n) => Some(*n),
                Int64::Text(text) => text.parse().ok(),
            }
        }
    }

    #[derive(Clone, Debug, Deserialize, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct Entry {
        #[serde(alias = "log_index", skip_serializing_if = "Option::is_none")]
        pub log_index: Option<Int64>,
        #[serde(alias = "log_id", skip_serializing_if = "Option::is_none")]
        pub log_id: Option<LogId>,
        #[serde(alias = "kind_version", skip_serializing_if = "Option::is_none")]
        pub kind_version: Option<KindVersion>,
        #[serde(alias = "integrated_time", skip_serializing_if = "Option::is_none")]
        pub integrated_time: Option<Int64>,
        #[serde(alias = "inclusion_promise", skip_serializing_if = "Option::is_none")]
        pub inclusion_promise: Option<InclusionPromise>,
        #[serde(alias = "inclusion_proof", skip_serializing_if = "Option::is_none")]
        pub inclusion_proof: Option<InclusionProof>,
        #[serde(alias = "canonicalized_body", skip_serializing_if = "Option::is_none")]
        pub canonicalized_body: Option<String>,
    }

    #[derive(Clone, Debug, Deserialize, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct LogId {
        #[serde(alias = "key_id")]
        pub key_id: Option<String>,
    }

    #[derive(Clone, Debug, Deserialize, Serialize)]
    pub(crate) struct KindVersion {
        pub kind: Option<String>,
        pub version: Option<String>,
    }

    #[derive(Clone, Debug, Deserialize, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct InclusionPromise {
        #[serde(alias = "signed_entry_timestamp")]
        pub signed_entry_timestamp: Option<String>,
    }

    #[derive(Clone, Debug, Deserialize, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct InclusionProof {
        #[serde(alias = "log_index")]
        pub log_index: Option<Int64>,
        #[serde(alias = "root_hash")]
        pub root_hash: Option<String>,
        #[serde(alias = "tree_size")]
        pub tree_size: Option<Int64>,
        pub hashes: Option<Vec<String>>,
        pub checkpoint: Option<Checkpoint>,
    }

    #[derive(Clone, Debug, Deserialize, Serialize)]
    pub(crate) struct Checkpoint {
        pub envelope: Option<String>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn checkpoint_parse_never_panics(text in "(?s).{0,300}") {
            let _ = Checkpoint::parse(&text);
        }
    }

    #[test]
    fn checkpoint_parse_refuses_malformed_notes() {
        for (note, reason) in [
            ("origin\n1\n", "no blank line"),
            ("\n\n", "no origin line"),
            ("o\nx\nAAAA\n\n\u{2014} o AAAAAA==\n", "not a tree size"),
            (
                "o\n1\nAAAA\n\n\u{2014} o AAAAAA==\n",
                "not a base64 SHA-256 root hash",
            ),
        ] {
            let err = Checkpoint::parse(note).err().unwrap();
            assert!(err.to_string().contains(reason), "{note:?}: {err}");
        }
    }
}
