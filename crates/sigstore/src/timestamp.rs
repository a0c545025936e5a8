//! RFC 3161 signed timestamps (`timestampVerificationData.rfc3161Timestamps`): a trusted
//! timestamp authority's signed statement that the bundle's signature existed at `genTime`.
//!
//! Parsing is RustCrypto's `x509-tsp` (`TimeStampResp`, `TSTInfo`) and `cms` (`SignedData`,
//! RFC 5652); the checks follow RFC 3161 §2.4.2 and RFC 5652 §5.4 and §11: exactly one
//! signer, signed attributes with the content type `id-ct-TSTInfo` and the message digest of
//! the encapsulated `TSTInfo`, a signature over the DER `SET OF` signed attributes by the
//! leaf of a timestamp authority in the trusted root, the `messageImprint` over the bundle's
//! signature bytes, and `genTime` within the authority's validity and its certificates'.
//! Certificates embedded in the token are ignored: only the trusted root's are believed.

use const_oid::db::rfc5911;
use const_oid::ObjectIdentifier;
use der::asn1::OctetString;
use der::{Decode as _, Encode as _};
use time::OffsetDateTime;
use x509_tsp::{TimeStampResp, TstInfo};

use crate::certificate::KP_TIME_STAMPING;
use crate::error::AdmissionError;
use crate::signature::{HashAlgorithm, SignatureAlgorithm};
use crate::trust_root::{format_time, TrustedRoot};
use zerofn_types::excerpt;

/// At most this many timestamps per bundle (sigstore-python's limit): each costs signature
/// checks, and real bundles carry one.
pub(crate) const MAX_TIMESTAMPS: usize = 32;

const ID_SIGNED_DATA: ObjectIdentifier = rfc5911::ID_SIGNED_DATA;
/// id-ct-TSTInfo, RFC 3161 §2.4.2 (not in `const-oid`'s database).
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_CONTENT_TYPE: ObjectIdentifier = rfc5911::ID_CONTENT_TYPE;
const ID_MESSAGE_DIGEST: ObjectIdentifier = rfc5911::ID_MESSAGE_DIGEST;

fn invalid(reason: impl Into<String>) -> AdmissionError {
    AdmissionError::TimestampInvalid {
        reason: reason.into(),
    }
}

/// Verifies one DER `TimeStampResp` over `signature` (the bytes the bundle's signature
/// consists of) and returns its verified `genTime`.
pub(crate) fn verify_timestamp(
    response: &[u8],
    signature: &[u8],
    root: &TrustedRoot,
) -> Result<OffsetDateTime, AdmissionError> {
    let response = TimeStampResp::from_der(response)
        .map_err(|e| invalid(format!("it is not a DER TimeStampResp ({e})")))?;
    if !matches!(
        response.status.status,
        cmpv2::status::PkiStatus::Accepted | cmpv2::status::PkiStatus::GrantedWithMods
    ) {
        return Err(invalid("the timestamp authority did not grant it"));
    }
    let token = response
        .time_stamp_token
        .ok_or_else(|| invalid("the response has no token"))?;
    if token.content_type != ID_SIGNED_DATA {
        return Err(invalid("the token is not CMS SignedData"));
    }
    let signed_data = token
        .content
        .decode_as::<cms::signed_data::SignedData>()
        .map_err(|e| invalid(format!("the token is not CMS SignedData ({e})")))?;
    let encapsulated = &signed_data.encap_content_info;
    if encapsulated.econtent_type != ID_CT_TST_INFO {
        return Err(invalid("the token does not contain a TSTInfo"));
    }
    let tst_der = encapsulated
        .econtent
        .as_ref()
        .ok_or_else(|| invalid("the token's TSTInfo is missing"))?
        .decode_as::<OctetString>()
        .map_err(|e| invalid(format!("the token's TSTInfo is not an OCTET STRING ({e})")))?;
    let tst_der = tst_der.as_bytes();
    let tst_info = TstInfo::from_der(tst_der)
        .map_err(|e| invalid(format!("the TSTInfo is malformed ({e})")))?;

    // messageImprint: the hash of exactly the bundle's signature bytes.
    let imprint_hash = HashAlgorithm::from_digest_oid(&tst_info.message_imprint.hash_algorithm.oid)
        .ok_or_else(|| invalid("the message imprint uses an unsupported hash"))?;
    if tst_info.message_imprint.hashed_message.as_bytes()
        != imprint_hash.digest(signature).as_slice()
    {
        return Err(invalid(
            "its message imprint is not the hash of the bundle's signature",
        ));
    }

    let [signer] = signed_data.signer_infos.0.as_slice() else {
        return Err(invalid("the token does not have exactly one signer"));
    };
    let digest_alg = HashAlgorithm::from_digest_oid(&signer.digest_alg.oid)
        .ok_or_else(|| invalid("the signer uses an unsupported digest algorithm"))?;
    let attributes = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| invalid("the signer has no signed attributes"))?;
    let single_value = |oid: ObjectIdentifier| {
        let mut matching = attributes.iter().filter(|a| a.oid == oid);
        match (matching.next(), matching.next()) {
            (Some(attribute), None) => match attribute.values.as_slice() {
                [value] => Some(value),
                _ => None,
            },
            _ => None,
        }
    };
    let content_type = single_value(ID_CONTENT_TYPE)
        .and_then(|v| v.decode_as::<ObjectIdentifier>().ok())
        .ok_or_else(|| invalid("the signed attributes have no single content type"))?;
    if content_type != ID_CT_TST_INFO {
        return Err(invalid("the signed content type is not id-ct-TSTInfo"));
    }
    let message_digest = single_value(ID_MESSAGE_DIGEST)
        .and_then(|v| v.decode_as::<OctetString>().ok())
        .ok_or_else(|| invalid("the signed attributes have no single message digest"))?;
    if message_digest.as_bytes() != digest_alg.digest(tst_der).as_slice() {
        return Err(invalid(
            "the signed message digest is not the digest of the TSTInfo",
        ));
    }
    // RFC 5652 §5.4: the signature covers the DER encoding of the signed attributes with
    // the SET OF tag (`der` decodes and re-encodes SET OF in canonical DER order).
    let signed_bytes = attributes
        .to_der()
        .map_err(|e| invalid(format!("the signed attributes do not encode ({e})")))?;
    let algorithm = SignatureAlgorithm::from_oid(&signer.signature_algorithm.oid, Some(digest_alg))
        .ok_or_else(|| invalid("the token's signature algorithm is not supported"))?;

    let gen_time = OffsetDateTime::from_unix_timestamp(
        i64::try_from(tst_info.gen_time.to_unix_duration().as_secs())
            .map_err(|_| invalid("its genTime is out of range"))?,
    )
    .map_err(|_| invalid("its genTime is out of range"))?;

    let mut reasons = Vec::new();
    for authority in &root.timestamp_authorities {
        let Some(leaf) = authority.chain.first() else {
            continue;
        };
        let Ok(key) = leaf.key() else { continue };
        if !key.verifies_with(algorithm, &signed_bytes, signer.signature.as_bytes()) {
            continue;
        }
        // Signed by this authority's key: every remaining check must pass for it.
        let name = excerpt(&authority.uri);
        if !authority.valid_for.contains(gen_time) {
            reasons.push(format!(
                "genTime {} is outside the validity of timestamp authority `{name}`",
                format_time(gen_time)
            ));
            continue;
        }
        if let Err(reason) = leaf.check_end_entity(KP_TIME_STAMPING) {
            reasons.push(format!(
                "the certificate of `{name}` is not for timestamping: {reason}"
            ));
            continue;
        }
        let chain_ok = authority
            .chain
            .windows(2)
            .try_for_each(|pair| match pair {
                [child, parent] => child.verify_issued_by(parent),
                _ => Ok(()),
            })
            .map_err(|e| e.to_string())
            .and_then(
                |()| match authority.chain.iter().find(|c| !c.is_valid_at(gen_time)) {
                    Some(cert) => Err(format!(
                        "certificate `{}` is not valid at genTime {}",
                        cert.subject(),
                        format_time(gen_time)
                    )),
                    None => Ok(()),
                },
            );
        match chain_ok {
            Ok(()) => return Ok(gen_time),
            Err(reason) => reasons.push(format!("timestamp authority `{name}`: {reason}")),
        }
    }
    Err(invalid(if reasons.is_empty() {
        "it is not signed by a timestamp authority in the trusted root".to_owned()
    } else {
        reasons.join("; ")
    }))
}
