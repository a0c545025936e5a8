//! DSSE envelopes (<https://github.com/secure-systems-lab/dsse/blob/master/protocol.md>)
//! and the in-toto statements they carry
//! (<https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>).

use serde::Deserialize;

use crate::error::AdmissionError;
use zerofn_types::Digest;

/// The payload type of an in-toto statement.
pub(crate) const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// The DSSE v1 pre-authentication encoding, "Signature definition":
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal.
pub(crate) fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

#[derive(Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    type_: String,
    subject: Vec<Subject>,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// Checks that `payload` is an in-toto statement (v0.1 or v1) naming `artifact` (its sha256)
/// among its subjects. Any other payload type cannot be tied to the artifact and is refused.
pub(crate) fn check_statement_subject(
    payload_type: &str,
    payload: &[u8],
    artifact: &Digest,
) -> Result<(), AdmissionError> {
    if payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(AdmissionError::DsseSubjectMismatch {
            reason: format!(
                "the payload type is not `{IN_TOTO_PAYLOAD_TYPE}`, so it names no artifact"
            ),
        });
    }
    let statement: Statement =
        serde_json::from_slice(payload).map_err(|_| AdmissionError::DsseSubjectMismatch {
            reason: "the payload is not an in-toto statement".to_owned(),
        })?;
    if !matches!(
        statement.type_.as_str(),
        "https://in-toto.io/Statement/v1" | "https://in-toto.io/Statement/v0.1"
    ) {
        return Err(AdmissionError::DsseSubjectMismatch {
            reason: "the payload's `_type` is not an in-toto statement".to_owned(),
        });
    }
    let hex = artifact.hex();
    if statement.subject.iter().any(|s| {
        s.digest
            .get("sha256")
            .is_some_and(|d| d.eq_ignore_ascii_case(&hex))
    }) {
        Ok(())
    } else {
        Err(AdmissionError::DsseSubjectMismatch {
            reason: format!("no subject of the statement has sha256 digest `{artifact}`"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_protocol_example() {
        // The example in protocol.md ("Signature definition").
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn statement_subject_must_name_the_artifact() {
        let artifact = Digest::of(b"a");
        let statement = |digest: &str| {
            format!(
                r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"name":"x","digest":{{"sha256":"{digest}"}}}}],"predicateType":"p"}}"#
            )
        };
        assert!(check_statement_subject(
            IN_TOTO_PAYLOAD_TYPE,
            statement(&artifact.hex()).as_bytes(),
            &artifact
        )
        .is_ok());
        let other = Digest::of(b"b").hex();
        for (payload_type, payload) in [
            (IN_TOTO_PAYLOAD_TYPE, statement(&other)),
            ("text/plain", statement(&artifact.hex())),
            (IN_TOTO_PAYLOAD_TYPE, "not json".to_owned()),
            (
                IN_TOTO_PAYLOAD_TYPE,
                statement(&artifact.hex()).replace("Statement/v1", "Other"),
            ),
        ] {
            let err =
                check_statement_subject(payload_type, payload.as_bytes(), &artifact).unwrap_err();
            assert!(
                matches!(err, AdmissionError::DsseSubjectMismatch { .. }),
                "{err:?}"
            );
        }
    }
}
