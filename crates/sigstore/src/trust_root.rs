//! [`TrustedRoot`]: the keys and certificates keyless verification trusts, read from a
//! Sigstore `trusted_root.json` (`TrustedRoot` in `protos/sigstore_trustroot.proto` of
//! <https://github.com/sigstore/protobuf-specs>, protobuf JSON mapping).
//!
//! # Trust
//! The file is the trust anchor: whoever supplies it decides which Fulcio CAs, Rekor logs,
//! CT logs and timestamp authorities are believed. It is parsed strictly: a missing
//! `validFor.start` is an error (`TimeRange.start` is required; treating it as "since
//! forever" would widen trust), and intervals are closed (`start <= t <= end`). A log whose
//! key is in a format this crate does not read (the deprecated `PKCS1_RSA_PKCS1V5` raw
//! RSAPublicKey) is kept but can verify nothing, so anything relying on it fails closed.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::anchor::{TimeRange, TransparencyLog};
use crate::certificate::Certificate;
use crate::encoding::decode_base64;
use crate::error::AdmissionError;
use crate::signature::{KeyError, VerifierKey};
use zerofn_types::{excerpt, sanitize_message};

/// Media types of trusted roots this crate reads.
const TRUSTED_ROOT_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
    "application/vnd.dev.sigstore.trustedroot.v0.2+json",
];

/// Largest trusted root read (real ones are under 20 KiB).
const MAX_TRUSTED_ROOT_BYTES: usize = 4 * 1024 * 1024;

/// RFC 3339 text of a time, for messages.
pub(crate) fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// A Fulcio CA or a timestamp authority: its chain (issuing certificate first, root last)
/// and when it is trusted.
#[derive(Clone, Debug)]
pub(crate) struct CertificateAuthority {
    pub uri: String,
    pub chain: Vec<Certificate>,
    pub valid_for: TimeRange,
}

/// A parsed Sigstore trusted root. Build it with [`TrustedRoot::from_json`].
#[derive(Clone)]
pub struct TrustedRoot {
    pub(crate) certificate_authorities: Vec<CertificateAuthority>,
    pub(crate) tlogs: Vec<TransparencyLog>,
    pub(crate) ctlogs: Vec<TransparencyLog>,
    pub(crate) timestamp_authorities: Vec<CertificateAuthority>,
}

impl fmt::Debug for TrustedRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedRoot")
            .field(
                "certificate_authorities",
                &self.certificate_authorities.len(),
            )
            .field("tlogs", &self.tlogs.len())
            .field("ctlogs", &self.ctlogs.len())
            .field("timestamp_authorities", &self.timestamp_authorities.len())
            .finish()
    }
}

fn invalid(reason: String) -> AdmissionError {
    AdmissionError::TrustedRootInvalid { reason }
}

impl TrustedRoot {
    /// Parses `trusted_root.json`. Refuses, as [`AdmissionError::TrustedRootInvalid`] naming
    /// the field: malformed JSON, an unknown `mediaType`, invalid base64 or certificates, a
    /// missing or unparsable `validFor.start`, and a log without `logId`.
    pub fn from_json(bytes: &[u8]) -> Result<TrustedRoot, AdmissionError> {
        if bytes.len() > MAX_TRUSTED_ROOT_BYTES {
            return Err(invalid(format!(
                "it is {} bytes, over the limit of {MAX_TRUSTED_ROOT_BYTES} bytes",
                bytes.len()
            )));
        }
        let raw: wire::TrustedRoot = serde_json::from_slice(bytes).map_err(|e| {
            invalid(format!(
                "it is not trusted root JSON ({})",
                sanitize_message(&e.to_string(), 200)
            ))
        })?;
        let media_type = raw.media_type.unwrap_or_default();
        if !TRUSTED_ROOT_MEDIA_TYPES.contains(&media_type.as_str()) {
            return Err(invalid(format!(
                "media type `{}` is not a Sigstore trusted root",
                excerpt(&media_type)
            )));
        }
        let authorities = |list: Option<Vec<wire::CertificateAuthority>>, field: &str| {
            list.unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, ca)| authority(ca, &format!("{field}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
        };
        let logs = |list: Option<Vec<wire::TransparencyLogInstance>>, field: &str| {
            list.unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, log)| transparency_log(log, &format!("{field}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(TrustedRoot {
            certificate_authorities: authorities(
                raw.certificate_authorities,
                "certificateAuthorities",
            )?,
            tlogs: logs(raw.tlogs, "tlogs")?,
            ctlogs: logs(raw.ctlogs, "ctlogs")?,
            timestamp_authorities: authorities(raw.timestamp_authorities, "timestampAuthorities")?,
        })
    }
}

fn authority(
    raw: wire::CertificateAuthority,
    field: &str,
) -> Result<CertificateAuthority, AdmissionError> {
    let certificates = raw
        .cert_chain
        .and_then(|c| c.certificates)
        .unwrap_or_default();
    if certificates.is_empty() {
        return Err(invalid(format!("`{field}.certChain` is empty")));
    }
    let chain = certificates
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let der = decode_base64(&c.raw_bytes.unwrap_or_default()).map_err(|_| {
                invalid(format!(
                    "`{field}.certChain.certificates[{i}].rawBytes` is not valid base64"
                ))
            })?;
            Certificate::from_der(&der).map_err(|reason| {
                invalid(format!("`{field}.certChain.certificates[{i}]`: {reason}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CertificateAuthority {
        uri: raw.uri.unwrap_or_default(),
        chain,
        valid_for: time_range(raw.valid_for, &format!("{field}.validFor"))?,
    })
}

fn transparency_log(
    raw: wire::TransparencyLogInstance,
    field: &str,
) -> Result<TransparencyLog, AdmissionError> {
    let key = raw
        .public_key
        .ok_or_else(|| invalid(format!("`{field}.publicKey` is missing")))?;
    let log_id = raw
        .log_id
        .and_then(|id| id.key_id)
        .ok_or_else(|| invalid(format!("`{field}.logId.keyId` is missing")))?;
    let log_id = decode_base64(&log_id)
        .map_err(|_| invalid(format!("`{field}.logId.keyId` is not valid base64")))?;
    let der = decode_base64(&key.raw_bytes.unwrap_or_default())
        .map_err(|_| invalid(format!("`{field}.publicKey.rawBytes` is not valid base64")))?;
    let key_details = key.key_details.unwrap_or_default();
    let parsed = if key_details == "PKCS1_RSA_PKCS1V5" {
        // The deprecated raw PKCS#1 RSAPublicKey form; no Sigstore log signs with it today.
        Err(KeyError::Pkcs1Unsupported)
    } else {
        VerifierKey::from_spki_der(&der)
    };
    Ok(TransparencyLog {
        base_url: raw.base_url.unwrap_or_default(),
        log_id,
        key: parsed,
        valid_for: time_range(key.valid_for, &format!("{field}.publicKey.validFor"))?,
    })
}

fn time_range(raw: Option<wire::TimeRange>, field: &str) -> Result<TimeRange, AdmissionError> {
    let raw = raw.ok_or_else(|| invalid(format!("`{field}` is missing")))?;
    let parse = |text: &str, which: &str| {
        OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
            invalid(format!(
                "`{field}.{which}` = `{}` is not an RFC 3339 time",
                excerpt(text)
            ))
        })
    };
    let start = raw.start.ok_or_else(|| {
        invalid(format!(
            "`{field}.start` is missing; a validity interval must have a start"
        ))
    })?;
    let start = parse(&start, "start")?;
    let end = raw
        .end
        .as_deref()
        .map(|end| parse(end, "end"))
        .transpose()?;
    if end.is_some_and(|end| end < start) {
        return Err(invalid(format!("`{field}` ends before it starts")));
    }
    Ok(TimeRange { start, end })
}

mod wire {
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct TrustedRoot {
        #[serde(alias = "media_type")]
        pub media_type: Option<String>,
        pub tlogs: Option<Vec<TransparencyLogInstance>>,
        #[serde(alias = "certificate_authorities")]
        pub certificate_authorities: Option<Vec<CertificateAuthority>>,
        pub ctlogs: Option<Vec<TransparencyLogInstance>>,
        #[serde(alias = "timestamp_authorities")]
        pub timestamp_authorities: Option<Vec<CertificateAuthority>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct TransparencyLogInstance {
        #[serde(alias = "base_url")]
        pub base_url: Option<String>,
        #[serde(alias = "public_key")]
        pub public_key: Option<PublicKey>,
        #[serde(alias = "log_id")]
        pub log_id: Option<LogId>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct PublicKey {
        #[serde(alias = "raw_bytes")]
        pub raw_bytes: Option<String>,
        #[serde(alias = "key_details")]
        pub key_details: Option<String>,
        #[serde(alias = "valid_for")]
        pub valid_for: Option<TimeRange>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct LogId {
        #[serde(alias = "key_id")]
        pub key_id: Option<String>,
    }

    #[derive(Deserialize)]
    pub(super) struct TimeRange {
        pub start: Option<String>,
        pub end: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct CertificateAuthority {
        pub uri: Option<String>,
        #[serde(alias = "cert_chain")]
        pub cert_chain: Option<CertChain>,
        #[serde(alias = "valid_for")]
        pub valid_for: Option<TimeRange>,
    }

    #[derive(Deserialize)]
    pub(super) struct CertChain {
        pub certificates: Option<Vec<Certificate>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(super) struct Certificate {
        #[serde(alias = "raw_bytes")]
        pub raw_bytes: Option<String>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn from_json_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = TrustedRoot::from_json(&bytes);
        }

        #[test]
        fn from_json_never_panics_on_root_like_json(start in proptest::option::of(".{0,30}"), raw in ".{0,60}", details in ".{0,20}") {
            let json = serde_json::json!({
                "mediaType": TRUSTED_ROOT_MEDIA_TYPES[0],
                "tlogs": [{"publicKey": {"rawBytes": raw, "keyDetails": details, "validFor": {"start": start}}, "logId": {"keyId": raw}}],
                "certificateAuthorities": [{"certChain": {"certificates": [{"rawBytes": raw}]}, "validFor": {"start": start}}],
            });
            let _ = TrustedRoot::from_json(json.to_string().as_bytes());
        }
    }

    #[test]
    fn time_ranges_are_closed() {
        let at = |s: &str| OffsetDateTime::parse(s, &Rfc3339).unwrap();
        let range = TimeRange {
            start: at("2025-01-01T00:00:00Z"),
            end: Some(at("2025-02-01T00:00:00Z")),
        };
        assert!(range.contains(at("2025-01-01T00:00:00Z")));
        assert!(range.contains(at("2025-02-01T00:00:00Z")));
        assert!(!range.contains(at("2024-12-31T23:59:59Z")));
        assert!(!range.contains(at("2025-02-01T00:00:01Z")));
    }
}
