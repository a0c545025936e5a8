//! Sigstore bundles: parsing ([`Bundle::from_json`]) and key-based signing
//! ([`sign_artifact`]); [`crate::verify_bundle`] verifies them.
//!
//! The format is `Bundle` in `protos/sigstore_bundle.proto` of
//! <https://github.com/sigstore/protobuf-specs> (v0.3, media types from
//! `docs/bundle-media-types` there) in the protobuf JSON mapping
//! (<https://protobuf.dev/programming-guides/proto3/#json>): lowerCamelCase names (the
//! proto's snake_case names are accepted too), `bytes` as standard base64 (padding
//! optional), enums by name or number, `null` as absent. Unknown fields are ignored, as the
//! mapping's `ignore_unknown_fields` does, so newer bundles still parse; nothing in a bundle
//! is trusted because it parsed, it only selects what to verify.
//!
//! # What is verified here
//! Parsing only checks shape. [`crate::verify`] decides trust; [`crate::verify_bundle`] is its
//! key-based form for admission, which admits only message signatures over the component
//! itself (a DSSE envelope is refused with [`AdmissionError::DsseNotSupported`]).

use base64::engine::general_purpose;
use base64::Engine as _;

use zerofn_types::{excerpt, sanitize_message, Digest};

use crate::encoding::decode_base64;
use crate::error::AdmissionError;
use crate::keys::SigningKey;
use crate::tlog;

/// The media type [`sign_artifact`] writes (Sigstore bundle v0.3, new-style spelling).
pub const BUNDLE_MEDIA_TYPE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// Media types [`Bundle::from_json`] accepts: v0.1 to v0.3 in the old spelling, and v0.3 in
/// the new one. (`bundle-unknown-version_fail` in sigstore-conformance requires refusing
/// anything else.)
const ACCEPTED_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    BUNDLE_MEDIA_TYPE_V03,
];

/// Largest bundle read. Real bundles are a few KiB (one certificate chain, one log entry);
/// the cap bounds the work a hostile upload can cause.
const MAX_BUNDLE_BYTES: usize = 1024 * 1024;

/// Longest quote of a JSON parser message (which may contain input text).
const PARSER_MESSAGE_CHARS: usize = 200;

/// A parsed Sigstore bundle. Parsing checks shape only; [`crate::verify`] decides trust.
#[derive(Clone, Debug)]
pub struct Bundle {
    media_type: String,
    pub(crate) material: VerificationMaterial,
    tlog_entries: Vec<tlog::wire::Entry>,
    /// `timestampVerificationData.rfc3161Timestamps[].signedTimestamp`: DER TimeStampResp.
    rfc3161_timestamps: Vec<Vec<u8>>,
    pub(crate) content: Content,
}

/// The bundle format version, from the media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BundleVersion {
    V01,
    V02,
    V03,
}

/// Who the bundle says signed, for [`crate::verify`].
pub(crate) enum SignerMaterial<'a> {
    PublicKey { hint: Option<&'a str> },
    Certificates { chain: &'a [Vec<u8>] },
}

pub(crate) use Content as BundleContent;
pub(crate) use VerificationMaterial as BundleMaterial;

/// `Bundle.verification_material.content`: what the signature is checked against. One arm
/// per verifier.
#[derive(Clone, Debug)]
pub(crate) enum VerificationMaterial {
    /// `publicKey`: signed with a long-lived key the verifier already trusts; `hint` names it.
    PublicKey { hint: Option<String> },
    /// `certificate` (v0.3) or `x509CertificateChain` (v0.1, v0.2): a Fulcio-issued leaf, DER,
    /// leaf first.
    Certificates { chain: Vec<Vec<u8>> },
}

/// `Bundle.content`.
#[derive(Clone, Debug)]
pub(crate) enum Content {
    MessageSignature(MessageSignature),
    /// DSSE envelope (in-toto attestations).
    Dsse(DsseEnvelope),
}

/// `dev.sigstore.common.v1.MessageSignature`.
#[derive(Clone, Debug)]
pub(crate) struct MessageSignature {
    /// `messageDigest` when present (and SHA2_256). Unauthenticated: the signature is what
    /// proves the digest; this only tells "bundle for another artifact" from "bad signature".
    pub(crate) message_digest: Option<Digest>,
    /// ASN.1 DER ECDSA signature (what cosign writes), not yet parsed.
    pub(crate) signature: Vec<u8>,
}

/// `io.intoto.Envelope` (DSSE).
#[derive(Clone, Debug)]
pub(crate) struct DsseEnvelope {
    pub(crate) payload_type: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) signatures: Vec<DsseSignature>,
}

impl DsseEnvelope {
    /// Builds an envelope from its JSON fields (payloadType, payload,
    /// signatures as `(keyid, sig)`), refusing missing or empty ones. Shared by
    /// bundle content and standalone attestation envelopes, which differ only
    /// in how fields are named in messages (`prefix`), how lenient base64 is
    /// (`decode`) and their error type (`malformed`).
    pub(crate) fn from_fields<E>(
        payload_type: Option<String>,
        payload: Option<String>,
        signatures: Option<Vec<(Option<String>, Option<String>)>>,
        prefix: &str,
        decode: impl Fn(Option<String>, &str) -> Result<Vec<u8>, E>,
        malformed: impl Fn(String) -> E,
    ) -> Result<DsseEnvelope, E> {
        let payload_type =
            payload_type.ok_or_else(|| malformed(format!("`{prefix}payloadType` is missing")))?;
        let payload = decode(payload, &format!("{prefix}payload"))?;
        let sig_field = format!("{prefix}signatures.sig");
        let signatures = signatures
            .unwrap_or_default()
            .into_iter()
            .map(|(keyid, sig)| {
                Ok(DsseSignature {
                    keyid,
                    sig: decode(sig, &sig_field)?,
                })
            })
            .collect::<Result<Vec<_>, E>>()?;
        if signatures.is_empty() {
            return Err(malformed(format!("`{prefix}signatures` is empty")));
        }
        Ok(DsseEnvelope {
            payload_type,
            payload,
            signatures,
        })
    }
}

#[derive(Clone, Debug)]
pub(crate) struct DsseSignature {
    /// Unauthenticated and unused: the signer is the bundle's certificate or a trusted key.
    #[allow(dead_code)]
    pub(crate) keyid: Option<String>,
    pub(crate) sig: Vec<u8>,
}

impl Bundle {
    /// Parses bundle JSON. Refuses, as [`AdmissionError::BundleMalformed`] with the reason,
    /// malformed JSON, a missing or unknown `mediaType` (named in the message), invalid
    /// base64, a missing verification material or content, and `oneof`s with two arms set.
    pub fn from_json(bytes: &[u8]) -> Result<Bundle, AdmissionError> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(malformed(format!(
                "it is {} bytes, over the limit of {MAX_BUNDLE_BYTES} bytes",
                bytes.len()
            )));
        }
        let raw: wire::Bundle = serde_json::from_slice(bytes).map_err(|e| {
            malformed(format!(
                "it is not bundle JSON ({})",
                sanitize_message(&e.to_string(), PARSER_MESSAGE_CHARS)
            ))
        })?;

        let media_type = raw
            .media_type
            .ok_or_else(|| malformed("`mediaType` is missing".to_owned()))?;
        if !ACCEPTED_MEDIA_TYPES.contains(&media_type.as_str()) {
            return Err(malformed(format!(
                "media type `{}` is not supported; use a Sigstore bundle v0.1 to v0.3, such as `{BUNDLE_MEDIA_TYPE_V03}`",
                excerpt(&media_type)
            )));
        }

        let raw_material = raw
            .verification_material
            .ok_or_else(|| malformed("`verificationMaterial` is missing".to_owned()))?;
        let tlog_entries = raw_material
            .tlog_entries
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, entry)| {
                serde_json::from_value::<tlog::wire::Entry>(entry).map_err(|e| {
                    malformed(format!(
                        "`verificationMaterial.tlogEntries[{i}]` is malformed ({})",
                        sanitize_message(&e.to_string(), PARSER_MESSAGE_CHARS)
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rfc3161_timestamps = rfc3161_timestamps(raw_material.timestamp_verification_data)?;
        let material = match (
            raw_material.public_key,
            raw_material.x509_certificate_chain,
            raw_material.certificate,
        ) {
            (Some(key), None, None) => VerificationMaterial::PublicKey { hint: key.hint },
            (None, Some(chain), None) => {
                let certificates = chain.certificates.unwrap_or_default();
                if certificates.is_empty() {
                    return Err(malformed(
                        "`verificationMaterial.x509CertificateChain.certificates` is empty"
                            .to_owned(),
                    ));
                }
                let chain = certificates
                    .into_iter()
                    .map(|c| certificate_der(c, "x509CertificateChain.certificates"))
                    .collect::<Result<Vec<_>, _>>()?;
                VerificationMaterial::Certificates { chain }
            }
            (None, None, Some(certificate)) => VerificationMaterial::Certificates {
                chain: vec![certificate_der(certificate, "certificate")?],
            },
            (None, None, None) => {
                return Err(malformed(
                    "`verificationMaterial` has none of `publicKey`, `certificate` and `x509CertificateChain`"
                        .to_owned(),
                ))
            }
            _ => {
                return Err(malformed(
                    "`verificationMaterial` sets more than one of `publicKey`, `certificate` and `x509CertificateChain`"
                        .to_owned(),
                ))
            }
        };

        let content = match (raw.message_signature, raw.dsse_envelope) {
            (Some(signature), None) => Content::MessageSignature(message_signature(signature)?),
            (None, Some(envelope)) => Content::Dsse(dsse_envelope(envelope)?),
            (None, None) => {
                return Err(malformed(
                    "it has no content (`messageSignature` or `dsseEnvelope`)".to_owned(),
                ))
            }
            (Some(_), Some(_)) => {
                return Err(malformed(
                    "it sets both `messageSignature` and `dsseEnvelope`".to_owned(),
                ))
            }
        };

        Ok(Bundle {
            media_type,
            material,
            tlog_entries,
            rfc3161_timestamps,
            content,
        })
    }

    pub(crate) fn version(&self) -> BundleVersion {
        match self.media_type.as_str() {
            "application/vnd.dev.sigstore.bundle+json;version=0.1" => BundleVersion::V01,
            "application/vnd.dev.sigstore.bundle+json;version=0.2" => BundleVersion::V02,
            _ => BundleVersion::V03,
        }
    }

    pub(crate) fn signer_material(&self) -> SignerMaterial<'_> {
        match &self.material {
            VerificationMaterial::PublicKey { hint } => SignerMaterial::PublicKey {
                hint: hint.as_deref(),
            },
            VerificationMaterial::Certificates { chain } => SignerMaterial::Certificates { chain },
        }
    }

    /// Whether the bundle is signed with a certificate (keyless) rather than a key.
    pub fn is_keyless(&self) -> bool {
        matches!(self.material, VerificationMaterial::Certificates { .. })
    }

    pub(crate) fn content(&self) -> &Content {
        &self.content
    }

    pub(crate) fn tlog_entries(&self) -> &[tlog::wire::Entry] {
        &self.tlog_entries
    }

    pub(crate) fn rfc3161_timestamps(&self) -> &[Vec<u8>] {
        &self.rfc3161_timestamps
    }

    /// The bundle's `mediaType` (one of the accepted ones).
    pub fn media_type(&self) -> &str {
        &self.media_type
    }
}

/// `timestampVerificationData.rfc3161Timestamps[].signedTimestamp`, decoded.
fn rfc3161_timestamps(data: Option<serde_json::Value>) -> Result<Vec<Vec<u8>>, AdmissionError> {
    let Some(data) = data.filter(|d| !d.is_null()) else {
        return Ok(Vec::new());
    };
    let field = "verificationMaterial.timestampVerificationData";
    let list = match data
        .get("rfc3161Timestamps")
        .or_else(|| data.get("rfc3161_timestamps"))
    {
        None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
        Some(serde_json::Value::Array(list)) => list,
        Some(_) => {
            return Err(malformed(format!(
                "`{field}.rfc3161Timestamps` is not a list"
            )))
        }
    };
    list.iter()
        .enumerate()
        .map(|(i, ts)| {
            ts.get("signedTimestamp")
                .or_else(|| ts.get("signed_timestamp"))
                .and_then(|v| v.as_str())
                .and_then(|text| decode_base64(text).ok())
                .filter(|der| !der.is_empty())
                .ok_or_else(|| {
                    malformed(format!(
                        "`{field}.rfc3161Timestamps[{i}].signedTimestamp` is missing or not base64"
                    ))
                })
        })
        .collect()
}

fn malformed(reason: String) -> AdmissionError {
    AdmissionError::BundleMalformed { reason }
}

fn base64_field(text: Option<String>, field: &str) -> Result<Vec<u8>, AdmissionError> {
    let text = text.ok_or_else(|| malformed(format!("`{field}` is missing")))?;
    let bytes = decode_base64(&text)
        .map_err(|e| malformed(format!("`{field}` is not valid base64 ({e})")))?;
    if bytes.is_empty() {
        return Err(malformed(format!("`{field}` is empty")));
    }
    Ok(bytes)
}

fn certificate_der(
    certificate: wire::X509Certificate,
    field: &str,
) -> Result<Vec<u8>, AdmissionError> {
    base64_field(
        certificate.raw_bytes,
        &format!("verificationMaterial.{field}.rawBytes"),
    )
}

fn message_signature(raw: wire::MessageSignature) -> Result<MessageSignature, AdmissionError> {
    let signature = base64_field(raw.signature, "messageSignature.signature")?;
    let message_digest = match raw.message_digest {
        None => None,
        Some(hash) => {
            match hash.algorithm {
                Some(wire::HashAlgorithm::Name(name)) if name == "SHA2_256" => {}
                Some(wire::HashAlgorithm::Number(1)) => {}
                other => {
                    let found = match other {
                        Some(wire::HashAlgorithm::Name(name)) => excerpt(&name),
                        Some(wire::HashAlgorithm::Number(n)) => n.to_string(),
                        None => "HASH_ALGORITHM_UNSPECIFIED".to_owned(),
                    };
                    return Err(malformed(format!(
                        "`messageSignature.messageDigest.algorithm` is `{found}`; only `SHA2_256` is supported"
                    )));
                }
            }
            let bytes = base64_field(hash.digest, "messageSignature.messageDigest.digest")?;
            let bytes: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
                malformed(format!(
                    "`messageSignature.messageDigest.digest` is {} bytes; a SHA2_256 digest is 32",
                    bytes.len()
                ))
            })?;
            Some(Digest::from_bytes(bytes))
        }
    };
    Ok(MessageSignature {
        message_digest,
        signature,
    })
}

fn dsse_envelope(raw: wire::DsseEnvelope) -> Result<DsseEnvelope, AdmissionError> {
    let signatures = raw
        .signatures
        .map(|sigs| sigs.into_iter().map(|s| (s.keyid, s.sig)).collect());
    DsseEnvelope::from_fields(
        raw.payload_type,
        raw.payload,
        signatures,
        "dsseEnvelope.",
        base64_field,
        malformed,
    )
}

/// Signs `artifact` with `key` and returns the bundle JSON (pretty-printed UTF-8): a v0.3
/// key-based bundle with an empty transparency log, the shape
/// `cosign sign-blob --key <key> --new-bundle-format --bundle <file> --tlog-upload=false`
/// writes. The signature is ECDSA P-256 SHA-256, ASN.1 DER, over the artifact bytes.
pub fn sign_artifact(artifact: &[u8], key: &SigningKey) -> Result<String, AdmissionError> {
    let digest = Digest::of(artifact);
    let signature = key.sign_digest(&digest)?;
    let bundle = wire::Bundle {
        media_type: Some(BUNDLE_MEDIA_TYPE_V03.to_owned()),
        verification_material: Some(wire::VerificationMaterial {
            public_key: Some(wire::PublicKeyIdentifier {
                hint: Some(key.public_key().hint()),
            }),
            x509_certificate_chain: None,
            certificate: None,
            tlog_entries: Some(Vec::new()),
            timestamp_verification_data: None,
        }),
        message_signature: Some(wire::MessageSignature {
            message_digest: Some(wire::HashOutput {
                algorithm: Some(wire::HashAlgorithm::Name("SHA2_256".to_owned())),
                digest: Some(general_purpose::STANDARD.encode(digest.as_bytes())),
            }),
            signature: Some(general_purpose::STANDARD.encode(signature.to_der().as_bytes())),
        }),
        dsse_envelope: None,
    };
    serde_json::to_string_pretty(&bundle).map_err(|e| AdmissionError::SigningFailed {
        reason: format!("the bundle could not be written as JSON ({e})"),
    })
}

/// The protobuf JSON shapes, for reading and writing. Every field is optional here so that a
/// missing field gets a precise message in [`Bundle::from_json`] instead of serde's.
mod wire {
    use serde::{Deserialize, Serialize};

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct Bundle {
        #[serde(alias = "media_type", skip_serializing_if = "Option::is_none")]
        pub media_type: Option<String>,
        #[serde(
            alias = "verification_material",
            skip_serializing_if = "Option::is_none"
        )]
        pub verification_material: Option<VerificationMaterial>,
        #[serde(alias = "message_signature", skip_serializing_if = "Option::is_none")]
        pub message_signature: Option<MessageSignature>,
        #[serde(alias = "dsse_envelope", skip_serializing_if = "Option::is_none")]
        pub dsse_envelope: Option<DsseEnvelope>,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct VerificationMaterial {
        #[serde(alias = "public_key", skip_serializing_if = "Option::is_none")]
        pub public_key: Option<PublicKeyIdentifier>,
        #[serde(
            alias = "x509_certificate_chain",
            skip_serializing_if = "Option::is_none"
        )]
        pub x509_certificate_chain: Option<X509CertificateChain>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub certificate: Option<X509Certificate>,
        #[serde(alias = "tlog_entries", skip_serializing_if = "Option::is_none")]
        pub tlog_entries: Option<Vec<serde_json::Value>>,
        #[serde(
            alias = "timestamp_verification_data",
            skip_serializing_if = "Option::is_none"
        )]
        pub timestamp_verification_data: Option<serde_json::Value>,
    }

    #[derive(Deserialize, Serialize)]
    pub(super) struct PublicKeyIdentifier {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub hint: Option<String>,
    }

    #[derive(Deserialize, Serialize)]
    pub(super) struct X509CertificateChain {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub certificates: Option<Vec<X509Certificate>>,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct X509Certificate {
        #[serde(alias = "raw_bytes", skip_serializing_if = "Option::is_none")]
        pub raw_bytes: Option<String>,
    }

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct MessageSignature {
        #[serde(alias = "message_digest", skip_serializing_if = "Option::is_none")]
        pub message_digest: Option<HashOutput>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub signature: Option<String>,
    }

    #[derive(Deserialize, Serialize)]
    pub(super) struct HashOutput {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub algorithm: Option<HashAlgorithm>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub digest: Option<String>,
    }

    /// `dev.sigstore.common.v1.HashAlgorithm`: protobuf JSON allows the name or the number.
    #[derive(Deserialize, Serialize)]
    #[serde(untagged)]
    pub(super) enum HashAlgorithm {
        Name(String),
        Number(i64),
    }

    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct DsseEnvelope {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub payload: Option<String>,
        #[serde(alias = "payload_type", skip_serializing_if = "Option::is_none")]
        pub payload_type: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub signatures: Option<Vec<DsseSignature>>,
    }

    #[derive(Deserialize, Serialize)]
    pub(super) struct DsseSignature {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub sig: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub keyid: Option<String>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PublicKey;
    use crate::verify::verify_bundle;
    use p256::ecdsa::Signature;
    use proptest::prelude::*;

    const CONFORMANCE: zerofn_testkit::testdata::Dir =
        zerofn_testkit::testdata::dir("sigstore/conformance");

    fn conformance(path: &str) -> Vec<u8> {
        let full = format!("{CONFORMANCE}/{path}");
        std::fs::read(&full).unwrap_or_else(|e| panic!("read {full}: {e}"))
    }

    fn case_bundle(case: &str) -> Vec<u8> {
        conformance(&format!("bundle-verify/{case}/bundle.sigstore.json"))
    }

    fn case_key(case: &str) -> PublicKey {
        let pem = conformance(&format!("bundle-verify/{case}/key.pub"));
        PublicKey::from_pem(std::str::from_utf8(&pem).unwrap()).unwrap()
    }

    fn signed(artifact: &[u8], key: &SigningKey) -> Bundle {
        Bundle::from_json(sign_artifact(artifact, key).unwrap().as_bytes()).unwrap()
    }

    /// Edits the JSON of a bundle signed over `artifact` by `key`.
    fn edited(
        artifact: &[u8],
        key: &SigningKey,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Vec<u8> {
        let mut json: serde_json::Value =
            serde_json::from_str(&sign_artifact(artifact, key).unwrap()).unwrap();
        edit(&mut json);
        serde_json::to_vec(&json).unwrap()
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let key = SigningKey::generate();
        let artifact = b"\0asm component bytes";
        let bundle = signed(artifact, &key);
        assert_eq!(bundle.media_type(), BUNDLE_MEDIA_TYPE_V03);
        let digest = Digest::of(artifact);
        let verified = verify_bundle(&digest, &bundle, &[key.public_key()]).unwrap();
        assert_eq!(verified.digest(), digest);
        assert_eq!(verified.signer(), key.public_key().key_id());
    }

    #[test]
    fn signed_bundle_has_the_cosign_shape() {
        let key = SigningKey::generate();
        let artifact = b"hello";
        let json: serde_json::Value =
            serde_json::from_str(&sign_artifact(artifact, &key).unwrap()).unwrap();
        let digest = general_purpose::STANDARD.encode(Digest::of(artifact).as_bytes());
        assert_eq!(json["mediaType"], BUNDLE_MEDIA_TYPE_V03);
        assert_eq!(
            json["verificationMaterial"],
            serde_json::json!({"publicKey": {"hint": key.public_key().hint()}, "tlogEntries": []})
        );
        assert_eq!(
            json["messageSignature"]["messageDigest"],
            serde_json::json!({"algorithm": "SHA2_256", "digest": digest})
        );
        let der = general_purpose::STANDARD
            .decode(json["messageSignature"]["signature"].as_str().unwrap())
            .unwrap();
        assert!(Signature::from_der(&der).is_ok());
        assert_eq!(json.as_object().unwrap().len(), 3);
    }

    #[test]
    fn flipped_artifact_byte_is_a_digest_mismatch() {
        let key = SigningKey::generate();
        let mut artifact = b"component".to_vec();
        let bundle = signed(&artifact, &key);
        let signed_digest = Digest::of(&artifact);
        artifact[0] ^= 1;
        let tampered = Digest::of(&artifact);
        let err = verify_bundle(&tampered, &bundle, &[key.public_key()]).unwrap_err();
        assert!(
            matches!(err, AdmissionError::ArtifactDigestMismatch { expected, found } if expected == tampered && found == signed_digest),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("bundle is for artifact `{signed_digest}` but the component is `{tampered}`; the bundle belongs to another artifact or the component was modified, so sign this component and deploy its bundle")
        );
    }

    #[test]
    fn flipped_artifact_byte_without_message_digest_is_signature_invalid() {
        // With no messageDigest hint, only the signature can tell, and it does.
        let key = SigningKey::generate();
        let bundle = edited(b"component", &key, |json| {
            json["messageSignature"]
                .as_object_mut()
                .unwrap()
                .remove("messageDigest");
        });
        let bundle = Bundle::from_json(&bundle).unwrap();
        let digest = Digest::of(b"component");
        assert!(verify_bundle(&digest, &bundle, &[key.public_key()]).is_ok());
        let tampered = Digest::of(b"componenu");
        let err = verify_bundle(&tampered, &bundle, &[key.public_key()]).unwrap_err();
        assert!(
            matches!(err, AdmissionError::SignatureInvalid { digest, tenant: None } if digest == tampered),
            "{err:?}"
        );
    }

    #[test]
    fn bundle_for_another_artifact_is_a_digest_mismatch() {
        let key = SigningKey::generate();
        let other = signed(b"another artifact", &key);
        let digest = Digest::of(b"this artifact");
        let err = verify_bundle(&digest, &other, &[key.public_key()]).unwrap_err();
        assert!(
            matches!(err, AdmissionError::ArtifactDigestMismatch { expected, found }
                if expected == digest && found == Digest::of(b"another artifact")),
            "{err:?}"
        );
    }

    #[test]
    fn untrusted_key_is_signature_invalid() {
        let signer = SigningKey::generate();
        let trusted = SigningKey::generate().public_key();
        let bundle = signed(b"artifact", &signer);
        let digest = Digest::of(b"artifact");
        let err = verify_bundle(&digest, &bundle, &[trusted]).unwrap_err();
        assert!(
            matches!(err, AdmissionError::SignatureInvalid { digest: d, tenant: None } if d == digest),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("signature over `{digest}` does not verify with any trusted key; sign the component with a trusted key or add the signer's public key with `zerofn tenant add-key`")
        );
        // No trusted keys at all: the same refusal.
        let err = verify_bundle(&digest, &bundle, &[]).unwrap_err();
        assert!(
            matches!(err, AdmissionError::SignatureInvalid { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn second_trusted_key_signs() {
        let first = SigningKey::generate();
        let second = SigningKey::generate();
        let trusted = [first.public_key(), second.public_key()];
        let digest = Digest::of(b"artifact");
        let bundle = signed(b"artifact", &second);
        let verified = verify_bundle(&digest, &bundle, &trusted).unwrap();
        assert_eq!(verified.signer(), second.public_key().key_id());

        // Without a hint, or with a hint naming no trusted key, every key is tried.
        for hint in [None, Some("AAAA"), Some("not base64!")] {
            let bundle = edited(b"artifact", &second, |json| match hint {
                None => {
                    json["verificationMaterial"]["publicKey"]
                        .as_object_mut()
                        .unwrap()
                        .remove("hint");
                }
                Some(hint) => json["verificationMaterial"]["publicKey"]["hint"] = hint.into(),
            });
            let bundle = Bundle::from_json(&bundle).unwrap();
            let verified = verify_bundle(&digest, &bundle, &trusted).unwrap();
            assert_eq!(
                verified.signer(),
                second.public_key().key_id(),
                "hint {hint:?}"
            );
        }
    }

    #[test]
    fn hint_naming_a_trusted_key_that_did_not_sign_fails() {
        // The hint picks the key; a bundle claiming key A but signed by B does not verify.
        let a = SigningKey::generate();
        let b = SigningKey::generate();
        let bundle = edited(b"artifact", &b, |json| {
            json["verificationMaterial"]["publicKey"]["hint"] = a.public_key().hint().into();
        });
        let bundle = Bundle::from_json(&bundle).unwrap();
        let err = verify_bundle(
            &Digest::of(b"artifact"),
            &bundle,
            &[a.public_key(), b.public_key()],
        )
        .unwrap_err();
        assert!(
            matches!(err, AdmissionError::SignatureInvalid { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn tampered_signature_is_signature_invalid() {
        let key = SigningKey::generate();
        let digest = Digest::of(b"artifact");
        let json = sign_artifact(b"artifact", &key).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let der = general_purpose::STANDARD
            .decode(value["messageSignature"]["signature"].as_str().unwrap())
            .unwrap();
        // Flip a byte inside r (still DER), the last byte of s (still DER), and the DER
        // header (no longer DER): all three are the same refusal.
        for index in [8, der.len() - 1, 0] {
            let mut bad = der.clone();
            bad[index] ^= 0x01;
            let bundle = edited(b"artifact", &key, |json| {
                json["messageSignature"]["signature"] =
                    general_purpose::STANDARD.encode(&bad).into();
            });
            let bundle = Bundle::from_json(&bundle).unwrap();
            let err = verify_bundle(&digest, &bundle, &[key.public_key()]).unwrap_err();
            assert!(
                matches!(err, AdmissionError::SignatureInvalid { digest: d, .. } if d == digest),
                "byte {index}: {err:?}"
            );
        }
    }

    #[test]
    fn raw_r_s_signature_is_refused() {
        let key = SigningKey::generate();
        let digest = Digest::of(b"artifact");
        let fixed = key.sign_digest(&digest).unwrap().to_bytes();
        let bundle = edited(b"artifact", &key, |json| {
            json["messageSignature"]["signature"] = general_purpose::STANDARD.encode(fixed).into();
        });
        let bundle = Bundle::from_json(&bundle).unwrap();
        let err = verify_bundle(&digest, &bundle, &[key.public_key()]).unwrap_err();
        assert!(
            matches!(err, AdmissionError::SignatureInvalid { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn invalid_base64_is_malformed() {
        let key = SigningKey::generate();
        let bundle = edited(b"artifact", &key, |json| {
            json["messageSignature"]["signature"] = "INVALID!!!BASE64".into();
        });
        let err = Bundle::from_json(&bundle).unwrap_err();
        assert!(
            matches!(err, AdmissionError::BundleMalformed { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with(
                "bundle is malformed: `messageSignature.signature` is not valid base64"
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_media_type_is_named() {
        let key = SigningKey::generate();
        let bundle = edited(b"artifact", &key, |json| {
            json["mediaType"] = "application/vnd.dev.sigstore.bundle.v9.9+json".into();
        });
        let err = Bundle::from_json(&bundle).unwrap_err();
        assert!(
            matches!(&err, AdmissionError::BundleMalformed { reason }
                if reason.starts_with("media type `application/vnd.dev.sigstore.bundle.v9.9+json` is not supported")),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "bundle is malformed: media type `application/vnd.dev.sigstore.bundle.v9.9+json` is not supported; use a Sigstore bundle v0.1 to v0.3, such as `application/vnd.dev.sigstore.bundle.v0.3+json`; provide the Sigstore bundle JSON written by `zerofn sign` or `cosign sign-blob --key <key> --new-bundle-format --bundle <file>`"
        );
    }

    #[test]
    fn malformed_bundles_are_refused_with_a_reason() {
        let key = SigningKey::generate();
        let table: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "it is not bundle JSON"),
            (b"[]".to_vec(), "it is not bundle JSON"),
            (b"{}".to_vec(), "`mediaType` is missing"),
            (
                edited(b"a", &key, |j| { j.as_object_mut().unwrap().remove("verificationMaterial"); }),
                "`verificationMaterial` is missing",
            ),
            (
                edited(b"a", &key, |j| { j.as_object_mut().unwrap().remove("messageSignature"); }),
                "it has no content",
            ),
            (
                edited(b"a", &key, |j| {
                    j["dsseEnvelope"] = serde_json::json!({"payload": "YQ==", "payloadType": "t", "signatures": [{"sig": "YQ=="}]});
                }),
                "it sets both `messageSignature` and `dsseEnvelope`",
            ),
            (
                edited(b"a", &key, |j| {
                    j["verificationMaterial"]["certificate"] = serde_json::json!({"rawBytes": "YQ=="});
                }),
                "`verificationMaterial` sets more than one of",
            ),
            (
                edited(b"a", &key, |j| {
                    j["verificationMaterial"].as_object_mut().unwrap().remove("publicKey");
                }),
                "`verificationMaterial` has none of",
            ),
            (
                edited(b"a", &key, |j| j["messageSignature"]["signature"] = "".into()),
                "`messageSignature.signature` is empty",
            ),
            (
                edited(b"a", &key, |j| j["messageSignature"]["messageDigest"]["algorithm"] = "SHA2_512".into()),
                "`messageSignature.messageDigest.algorithm` is `SHA2_512`; only `SHA2_256` is supported",
            ),
            (
                edited(b"a", &key, |j| j["messageSignature"]["messageDigest"]["digest"] = "AAAA".into()),
                "`messageSignature.messageDigest.digest` is 3 bytes; a SHA2_256 digest is 32",
            ),
            (
                edited(b"a", &key, |j| {
                    j["verificationMaterial"] = serde_json::json!({"x509CertificateChain": {"certificates": []}});
                }),
                "`verificationMaterial.x509CertificateChain.certificates` is empty",
            ),
            (
                br#"{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "mediaType": "x"}"#.to_vec(),
                "it is not bundle JSON (duplicate field `mediaType`",
            ),
            (vec![b' '; MAX_BUNDLE_BYTES + 1], "it is 1048577 bytes, over the limit"),
        ];
        for (json, reason) in table {
            let err = Bundle::from_json(&json).unwrap_err();
            assert!(
                matches!(err, AdmissionError::BundleMalformed { .. }),
                "{reason}: {err:?}"
            );
            assert!(
                err.to_string()
                    .starts_with(&format!("bundle is malformed: {reason}")),
                "{reason}: {err}"
            );
        }
    }

    #[test]
    fn protobuf_json_variants_are_accepted() {
        // snake_case names, enum by number, unpadded base64, unknown fields, nulls.
        let key = SigningKey::generate();
        let digest = Digest::of(b"artifact");
        let bundle = edited(b"artifact", &key, |json| {
            let signature = json["messageSignature"]["signature"].take();
            let hint = json["verificationMaterial"]["publicKey"]["hint"].take();
            *json = serde_json::json!({
                "media_type": BUNDLE_MEDIA_TYPE_V03,
                "verification_material": {"public_key": {"hint": hint}, "tlog_entries": null},
                "message_signature": {
                    "message_digest": {
                        "algorithm": 1,
                        "digest": general_purpose::STANDARD_NO_PAD.encode(digest.as_bytes()),
                    },
                    "signature": signature,
                },
                "dsse_envelope": null,
                "futureField": {"x": 1},
            });
        });
        let bundle = Bundle::from_json(&bundle).unwrap();
        let verified = verify_bundle(&digest, &bundle, &[key.public_key()]).unwrap();
        assert_eq!(verified.signer(), key.public_key().key_id());
    }

    #[test]
    fn dsse_with_a_key_is_refused_as_dsse() {
        let key = SigningKey::generate();
        let bundle = edited(b"a", &key, |j| {
            j.as_object_mut().unwrap().remove("messageSignature");
            j["dsseEnvelope"] = serde_json::json!({"payload": "YQ==", "payloadType": "application/vnd.in-toto+json", "signatures": [{"sig": "YQ==", "keyid": ""}]});
        });
        let bundle = Bundle::from_json(&bundle).unwrap();
        let err = verify_bundle(&Digest::of(b"a"), &bundle, &[key.public_key()]).unwrap_err();
        assert!(matches!(err, AdmissionError::DsseNotSupported), "{err:?}");
    }

    // --- sigstore-conformance (third-party data; see ../shared/testdata/README.md) ---

    #[test]
    fn conformance_managed_key_happy_path_verifies() {
        let artifact = conformance("a.txt");
        let digest = Digest::of(&artifact);
        for case in ["managed-key-happy-path", "managed-key-and-trusted-root"] {
            let key = case_key(case);
            let bundle = Bundle::from_json(&case_bundle(case)).unwrap();
            assert_eq!(bundle.media_type(), BUNDLE_MEDIA_TYPE_V03);
            // The hint cosign wrote is our key id.
            let VerificationMaterial::PublicKey { hint: Some(hint) } = &bundle.material else {
                panic!("{case}: not a key-based bundle: {:?}", bundle.material);
            };
            assert!(key.matches_hint(hint), "{case}");
            assert_eq!(&key.hint(), hint, "{case}");
            // Unchecked for now, but present: the bundle carries a Rekor entry.
            assert_eq!(bundle.tlog_entries.len(), 1, "{case}");
            let verified = verify_bundle(&digest, &bundle, std::slice::from_ref(&key)).unwrap();
            assert_eq!(verified.signer(), key.key_id(), "{case}");
            assert_eq!(verified.digest(), digest, "{case}");
            // And not over any other artifact.
            let err = verify_bundle(&Digest::of(b"a.txt"), &bundle, &[key]).unwrap_err();
            assert!(
                matches!(err, AdmissionError::ArtifactDigestMismatch { .. }),
                "{err:?}"
            );
        }
    }

    #[test]
    fn conformance_managed_key_wrong_key_fails() {
        // The case's key.pub is corrupted (its base64 ends `/++++wrongkey==`): reading it fails...
        let pem = conformance("bundle-verify/managed-key-wrong-key_fail/key.pub");
        let err = PublicKey::from_pem(std::str::from_utf8(&pem).unwrap()).unwrap_err();
        assert!(
            matches!(&err, AdmissionError::PublicKeyInvalid { reason }
                if reason == "the PEM block does not decode (PEM Base64 error: invalid Base64 encoding)"),
            "{err:?}"
        );
        // ...and the bundle does not verify with a key other than its signer's.
        let bundle = Bundle::from_json(&case_bundle("managed-key-wrong-key_fail")).unwrap();
        let digest = Digest::of(&conformance("a.txt"));
        let other = SigningKey::generate().public_key();
        let err = verify_bundle(&digest, &bundle, &[other]).unwrap_err();
        assert!(
            matches!(err, AdmissionError::SignatureInvalid { digest: d, .. } if d == digest),
            "{err:?}"
        );
    }

    #[test]
    fn conformance_message_digest_mismatch_fails() {
        // Keyless, so with keys only it is refused before the digest is compared.
        let bundle = Bundle::from_json(&case_bundle("message-digest-mismatch_fail")).unwrap();
        let digest = Digest::of(&conformance("a.txt"));
        let err = verify_bundle(&digest, &bundle, &[]).unwrap_err();
        assert!(
            matches!(err, AdmissionError::KeylessNotSupported),
            "{err:?}"
        );
    }

    #[test]
    fn conformance_malformed_json_fails_to_parse() {
        let err = Bundle::from_json(&case_bundle("bundle-malformed-json_fail")).unwrap_err();
        assert!(
            matches!(err, AdmissionError::BundleMalformed { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("bundle is malformed: it is not bundle JSON (EOF while parsing"),
            "{err}"
        );
    }

    #[test]
    fn conformance_unknown_version_fails_to_parse() {
        let err = Bundle::from_json(&case_bundle("bundle-unknown-version_fail")).unwrap_err();
        assert!(
            matches!(&err, AdmissionError::BundleMalformed { reason }
                if reason.starts_with("media type `application/vnd.dev.sigstore.bundle+json;version=99.9` is not supported")),
            "{err:?}"
        );
    }

    #[test]
    fn conformance_invalid_base64_signature_fails_to_parse() {
        let err =
            Bundle::from_json(&case_bundle("bundle-invalid-base64-signature_fail")).unwrap_err();
        assert!(
            matches!(err, AdmissionError::BundleMalformed { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with(
                "bundle is malformed: `messageSignature.signature` is not valid base64"
            ),
            "{err}"
        );
    }

    #[test]
    fn conformance_keyless_bundles_are_refused_as_keyless() {
        let digest = Digest::of(&conformance("a.txt"));
        let key = case_key("managed-key-happy-path");
        for (case, media_type) in [
            (
                "happy-path-v0.3",
                "application/vnd.dev.sigstore.bundle+json;version=0.3",
            ),
            (
                "happy-path-v0.1",
                "application/vnd.dev.sigstore.bundle+json;version=0.1",
            ),
            (
                "happy-path-v0.2",
                "application/vnd.dev.sigstore.bundle+json;version=0.2",
            ),
            ("happy-path-v0.3-new-mediaType", BUNDLE_MEDIA_TYPE_V03),
            ("happy-path-intoto-in-dsse-v3", BUNDLE_MEDIA_TYPE_V03),
        ] {
            let bundle = Bundle::from_json(&case_bundle(case)).unwrap();
            assert_eq!(bundle.media_type(), media_type, "{case}");
            let err = verify_bundle(&digest, &bundle, std::slice::from_ref(&key)).unwrap_err();
            assert!(
                matches!(err, AdmissionError::KeylessNotSupported),
                "{case}: {err:?}"
            );
            assert!(
                err.to_string().starts_with(
                    "bundle is signed with a certificate (keyless), but only signing keys are trusted here"
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn conformance_bundles_parse_or_fail_without_panicking() {
        // Every case's bundle either parses or gives BundleMalformed; none verifies with a
        // key it was not signed with.
        let dir = CONFORMANCE.join("bundle-verify");
        let digest = Digest::of(&conformance("a.txt"));
        let stranger = SigningKey::generate().public_key();
        let mut parsed = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path().join("bundle.sigstore.json");
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            match Bundle::from_json(&bytes) {
                Ok(bundle) => {
                    parsed += 1;
                    assert!(
                        verify_bundle(&digest, &bundle, std::slice::from_ref(&stranger)).is_err(),
                        "{path:?}"
                    );
                }
                Err(err) => assert!(
                    matches!(err, AdmissionError::BundleMalformed { .. }),
                    "{path:?}: {err:?}"
                ),
            }
        }
        assert!(parsed > 60, "only {parsed} conformance bundles parsed");
    }

    proptest! {
        #[test]
        fn from_json_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Bundle::from_json(&bytes);
        }

        #[test]
        fn from_json_never_panics_on_bundle_like_json(
            media in prop_oneof![Just(BUNDLE_MEDIA_TYPE_V03.to_owned()), ".*"],
            hint in proptest::option::of(".*"),
            signature in proptest::option::of("[A-Za-z0-9+/=!]{0,100}"),
            digest in proptest::option::of("[A-Za-z0-9+/=]{0,60}"),
            algorithm in prop_oneof![Just(serde_json::json!("SHA2_256")), any::<i64>().prop_map(serde_json::Value::from), ".*".prop_map(serde_json::Value::from)],
        ) {
            let json = serde_json::json!({
                "mediaType": media,
                "verificationMaterial": {"publicKey": {"hint": hint}},
                "messageSignature": {"messageDigest": {"algorithm": algorithm, "digest": digest}, "signature": signature},
            });
            if let Ok(bundle) = Bundle::from_json(json.to_string().as_bytes()) {
                let key = SigningKey::generate().public_key();
                prop_assert!(verify_bundle(&Digest::of(b""), &bundle, &[key]).is_err());
            }
        }
    }
}
