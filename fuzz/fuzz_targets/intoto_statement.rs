//! Untrusted in-toto statements inside DSSE envelopes. The statement is read
//! only after the envelope's signature verifies, so the input is signed here
//! with a fixed key (as the payload of a DSSE envelope, over its PAE) and the
//! envelope verified: the statement parser then sees every input. Must never
//! panic.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use zerofn_sigstore::{sign_artifact, Attestation, SigningKey};
use zerofn_types::Digest;

const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(SigningKey::generate)
}

/// DSSE's pre-authentication encoding (DSSE protocol, "Signature definition").
fn pae(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {PAYLOAD_TYPE} {} ", PAYLOAD_TYPE.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

fuzz_target!(|data: &[u8]| {
    // A key-based Sigstore bundle signs sha256(bytes) with ECDSA P-256, which
    // is what a DSSE signature over the PAE is: take its signature.
    let Ok(bundle) = sign_artifact(&pae(data), key()) else {
        return;
    };
    let Ok(bundle) = serde_json::from_str::<serde_json::Value>(&bundle) else {
        return;
    };
    let Some(sig) = bundle["messageSignature"]["signature"].as_str() else {
        return;
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let envelope = serde_json::json!({
        "payloadType": PAYLOAD_TYPE,
        "payload": b64.encode(data),
        "signatures": [{"keyid": "", "sig": sig}],
    });
    if let Ok(attestation) = Attestation::from_envelope_json(envelope.to_string().as_bytes()) {
        let _ = attestation.verify(&Digest::of(b"component"), &[key().public_key()]);
    }
});
